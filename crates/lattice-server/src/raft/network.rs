//! Raft traffic between members: openraft's RPCs as HTTP POSTs with bincode bodies to the
//! peer's `/raft/{append,vote,snapshot}`, authenticated by the shared cluster secret in the
//! `x-lattice-cluster-secret` header. The receiving side is `api::raft`.

use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{MemberId, TypeConfig};

pub const SECRET_HEADER: &str = "x-lattice-cluster-secret";

#[derive(Clone)]
pub struct Network {
    http: reqwest::Client,
    secret: String,
}

impl Network {
    /// `http` trusts the CA of `server.tls_ca_file` when members serve HTTPS (see
    /// `crate::tls::http_client`).
    pub fn new(secret: String, http: reqwest::Client) -> Self {
        Network { http, secret }
    }

    /// How long a member may take to accept a connection before it counts as unreachable.
    pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Conn;

    async fn new_client(&mut self, target: MemberId, node: &BasicNode) -> Conn {
        Conn {
            net: self.clone(),
            target,
            addr: node.addr.trim_end_matches('/').to_string(),
        }
    }
}

pub struct Conn {
    net: Network,
    target: MemberId,
    addr: String,
}

type RpcErr<E = openraft::error::Infallible> =
    RPCError<MemberId, BasicNode, RaftError<MemberId, E>>;

impl Conn {
    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        req: &Req,
        ttl: Duration,
    ) -> Result<Resp, RpcErr<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let body = bincode::serialize(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let resp = self
            .net
            .http
            .post(format!("{}/raft/{path}", self.addr))
            .header(SECRET_HEADER, &self.net.secret)
            .header("content-type", "application/octet-stream")
            .timeout(ttl)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    RPCError::Unreachable(Unreachable::new(&e))
                } else {
                    RPCError::Network(NetworkError::new(&e))
                }
            })?;
        if !resp.status().is_success() {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            let e =
                std::io::Error::other(format!("member {} answered {status}: {text}", self.target));
            return Err(RPCError::Network(NetworkError::new(&e)));
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let res: Result<Resp, RaftError<MemberId, E>> =
            bincode::deserialize(&bytes).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        res.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Conn {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<MemberId>, RpcErr> {
        self.call("append", &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<MemberId>, RpcErr<InstallSnapshotError>> {
        self.call("snapshot", &rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<MemberId>,
        option: RPCOption,
    ) -> Result<VoteResponse<MemberId>, RpcErr> {
        self.call("vote", &rpc, option.hard_ttl()).await
    }
}
