//! [`Registrar`]: registers the agent's nodes with the control plane, retrying with backoff
//! until it answers (the agent may well start before the server), and again whenever the
//! control plane says it does not know one of them.

use lattice_client::Client;
use lattice_core::{NodeId, NodeRegistration};
use tokio::sync::watch;

use crate::discovery::HostInfo;
use crate::wait;

/// What the agent tells the control plane about the node with a given ID.
type Describe = dyn Fn(&str) -> NodeRegistration + Send + Sync;

pub struct Registrar {
    client: Client,
    describe: Box<Describe>,
}

impl Registrar {
    /// A registrar for nodes of this host: each offers the host's CPUs, memory and GPUs.
    pub fn new(client: Client, host: HostInfo, features: Vec<String>, agent_url: String) -> Self {
        Registrar::describing(client, move |id| NodeRegistration {
            id: id.to_string(),
            hostname: host.hostname.clone(),
            cpus: host.cpus,
            memory_bytes: host.memory_bytes,
            gpus: host.gpus.clone(),
            features: features.clone(),
            agent_url: agent_url.clone(),
            agent_token: None,
        })
    }

    /// A registrar whose nodes `describe` says what they are (virtual nodes: `sim`).
    pub fn describing(
        client: Client,
        describe: impl Fn(&str) -> NodeRegistration + Send + Sync + 'static,
    ) -> Self {
        Registrar {
            client,
            describe: Box::new(describe),
        }
    }

    /// What the agent tells the control plane about node `id`.
    pub fn registration(&self, id: &str) -> NodeRegistration {
        (self.describe)(id)
    }

    /// Registers every node in `ids`, one after the other, retrying each until it succeeds.
    /// Returns false if `shutdown` was raised first.
    pub async fn register(&self, ids: &[NodeId], shutdown: &mut watch::Receiver<bool>) -> bool {
        for id in ids {
            if !self.register_one(id, shutdown).await {
                return false;
            }
            tracing::info!(node = %id, "node registered");
        }
        true
    }

    /// Registers node `id`, retrying with backoff until it succeeds. Returns false if
    /// `shutdown` was raised first.
    pub async fn register_one(&self, id: &str, shutdown: &mut watch::Receiver<bool>) -> bool {
        let reg = self.registration(id);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let result = tokio::select! {
                r = self.client.register(&reg) => r,
                () = wait::raised(shutdown) => return false,
            };
            let e = match result {
                Ok(_) => return true,
                Err(e) => e,
            };
            let delay = wait::backoff(attempt);
            if attempt.is_power_of_two() {
                tracing::warn!(node = %id, attempt, error = %e, retry_in = ?delay, "cannot register node; retrying");
            } else {
                tracing::debug!(node = %id, attempt, error = %e, "cannot register node; retrying");
            }
            if wait::sleep_or_raised(delay, shutdown).await {
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use lattice_core::GpuInfo;

    use super::*;

    #[test]
    fn registration_carries_host_facts_and_url() {
        let host = HostInfo {
            hostname: "h1".into(),
            cpus: 8,
            memory_bytes: 1 << 30,
            gpus: GpuInfo {
                count: 2,
                model: Some("NVIDIA H100".into()),
            },
        };
        let client = Client::new(&["http://127.0.0.1:1"]).expect("client");
        let r = Registrar::new(client, host, vec!["ib".into()], "http://h1:8081".into());
        let reg = r.registration("dev-2");
        assert_eq!(reg.id, "dev-2");
        assert_eq!(reg.hostname, "h1");
        assert_eq!((reg.cpus, reg.memory_bytes), (8, 1 << 30));
        assert_eq!(reg.gpus.count, 2);
        assert_eq!(reg.features, vec!["ib"]);
        assert_eq!(reg.agent_url, "http://h1:8081");
    }
}
