//! [`PlainClient`]: a lean HTTP/1.1 keep-alive client for the agent calls a process makes
//! thousands of times a second against one plain-HTTP endpoint: heartbeats and work polls of
//! the simulating agent (`lattice agent --simulate`).
//!
//! It sends exactly the requests [`Client`](crate::Client) sends (same method, path, headers
//! that matter, JSON body) and reads the answers the same way, so the control plane cannot
//! tell them apart. It skips what a general client does per request and these calls do not
//! need: parsing the URL again, the redirect and decompression layers, a pool keyed by URL.
//! The URL is parsed and the headers are built once; idle connections wait in a plain stack.
//!
//! Retries follow [`Client`](crate::Client) for a single endpoint: `503` (no leader yet) is
//! retried until `retry_for` runs out; an unreachable endpoint fails at once. A request whose
//! reused connection turns out closed is sent once more on a new connection (these calls are
//! safe to repeat). HTTPS and several endpoints are not served here: [`Client::plain`] then
//! returns `None` and the caller keeps its [`Client`](crate::Client).
//!
//! [`Client::plain`]: crate::Client::plain

use std::sync::Mutex;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use lattice_core::agent::{HeartbeatRequest, HeartbeatResponse, WorkRequest, WorkResponse};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Client, ClientError};

/// Pause between `503` answers (as [`Client`](crate::Client) pauses between rounds).
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// Idle connections kept for reuse; more are closed when their request ends.
const MAX_IDLE: usize = 256;

type Sender = SendRequest<Full<Bytes>>;

/// Why one attempt got no answer.
enum Failure {
    Http(hyper::Error),
    Timeout,
}

/// See the module documentation. Cheap to share behind an `Arc`.
pub struct PlainClient {
    /// `http://host:port`, for error messages.
    base: String,
    /// `host:port` to connect to.
    addr: String,
    host: HeaderValue,
    auth: Option<HeaderValue>,
    retry_for: Duration,
    idle: Mutex<Vec<Sender>>,
}

impl std::fmt::Debug for PlainClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl PlainClient {
    /// A client for `base` (`http://host[:port]`, no path), or `None` when `base` is not
    /// such a URL (HTTPS included). The token must be a valid header value.
    pub(crate) fn new(base: &str, token: Option<&str>, retry_for: Duration) -> Option<Self> {
        let url = reqwest::Url::parse(base).ok()?;
        if url.scheme() != "http" || url.path() != "/" || url.query().is_some() {
            return None;
        }
        let host = url.host_str()?;
        let port = url.port_or_known_default()?;
        let authority = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        let auth = match token {
            Some(t) => {
                let mut v = HeaderValue::from_str(&format!("Bearer {t}")).ok()?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        Some(PlainClient {
            base: base.to_string(),
            addr: format!("{host}:{port}"),
            host: HeaderValue::from_str(&authority).ok()?,
            auth,
            retry_for,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// `POST /api/v1/agent/heartbeat`, as [`Client::heartbeat`](crate::Client::heartbeat).
    pub async fn heartbeat(&self, hb: &HeartbeatRequest) -> Result<HeartbeatResponse, ClientError> {
        self.post("/api/v1/agent/heartbeat", hb, Client::HEARTBEAT_TIMEOUT)
            .await
    }

    /// `POST /api/v1/agent/work`, as [`Client::work`](crate::Client::work).
    pub async fn work(&self, req: &WorkRequest) -> Result<WorkResponse, ClientError> {
        let timeout = Duration::from_millis(req.wait_ms) + Client::TIMEOUT;
        self.post("/api/v1/agent/work", req, timeout).await
    }

    async fn post<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &'static str,
        body: &B,
        timeout: Duration,
    ) -> Result<R, ClientError> {
        let body =
            Bytes::from(serde_json::to_vec(body).map_err(|e| ClientError::Decode(e.to_string()))?);
        let deadline = Instant::now() + self.retry_for;
        loop {
            let (status, bytes) = self.exchange(path, &body, timeout).await?;
            if status.is_success() {
                return serde_json::from_slice(&bytes)
                    .map_err(|e| ClientError::Decode(e.to_string()));
            }
            if status != StatusCode::SERVICE_UNAVAILABLE || Instant::now() >= deadline {
                let text = String::from_utf8_lossy(&bytes);
                return Err(ClientError::from_status_text(status.as_u16(), &text));
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    /// One request and its whole answer, on an idle connection or a new one.
    async fn exchange(
        &self,
        path: &'static str,
        body: &Bytes,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let (mut sender, reused) = match self.take_idle() {
            Some(s) => (s, true),
            None => (self.connect().await?, false),
        };
        let mut answer = self.timed_send(&mut sender, path, body, timeout).await;
        if reused && matches!(answer, Err(Failure::Http(_))) {
            // The server closed a kept-alive connection: once more on a new one.
            sender = self.connect().await?;
            answer = self.timed_send(&mut sender, path, body, timeout).await;
        }
        match answer {
            Ok(r) => {
                self.put_idle(sender);
                Ok(r)
            }
            Err(Failure::Http(e)) => Err(self.transport(&e)),
            Err(Failure::Timeout) => Err(ClientError::Transport(format!(
                "{}: no answer to {path} within {timeout:?}",
                self.base
            ))),
        }
    }

    async fn timed_send(
        &self,
        sender: &mut Sender,
        path: &'static str,
        body: &Bytes,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), Failure> {
        match tokio::time::timeout(timeout, self.send(sender, path, body)).await {
            Ok(r) => r.map_err(Failure::Http),
            Err(_) => Err(Failure::Timeout),
        }
    }

    async fn send(
        &self,
        sender: &mut Sender,
        path: &'static str,
        body: &Bytes,
    ) -> Result<(StatusCode, Bytes), hyper::Error> {
        sender.ready().await?;
        let mut req = Request::new(Full::new(body.clone()));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = hyper::Uri::from_static(path);
        let h = req.headers_mut();
        h.insert(HOST, self.host.clone());
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(a) = &self.auth {
            h.insert(AUTHORIZATION, a.clone());
        }
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }

    async fn connect(&self) -> Result<Sender, ClientError> {
        let stream = tokio::net::TcpStream::connect(&self.addr)
            .await
            .map_err(|e| ClientError::Transport(format!("{}: {e}", self.base)))?;
        // Small requests and answers: do not wait to coalesce them.
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.transport(&e))?;
        tokio::spawn(async move {
            // Ends when the server or the last sender closes it; nothing to report.
            let _ = conn.await;
        });
        Ok(sender)
    }

    fn transport(&self, e: &hyper::Error) -> ClientError {
        ClientError::Transport(format!("{}: {e}", self.base))
    }

    fn take_idle(&self) -> Option<Sender> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(s) = idle.pop() {
            if !s.is_closed() {
                return Some(s);
            }
        }
        None
    }

    fn put_idle(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(sender);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// One request as the test server read it.
    #[derive(Clone, Debug)]
    struct Seen {
        head: String,
        body: Vec<u8>,
    }

    /// How the test server answers request number `n` (from 0): status, body, and whether
    /// it closes the connection after answering (without saying so in a header). Status 0:
    /// it closes the connection without answering.
    type Script = dyn Fn(usize) -> (u16, &'static str, bool) + Send + Sync;

    struct Server {
        base: String,
        seen: Arc<Mutex<Vec<Seen>>>,
        connections: Arc<AtomicUsize>,
    }

    async fn server(
        script: impl Fn(usize) -> (u16, &'static str, bool) + Send + Sync + 'static,
    ) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let script: Arc<Script> = Arc::new(script);
        let (s, c) = (seen.clone(), connections.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                c.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream, s.clone(), script.clone()));
            }
        });
        Server {
            base,
            seen,
            connections,
        }
    }

    /// Appends what the peer sent next to `buf`; false once it closed (or failed).
    async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    async fn serve(mut stream: TcpStream, seen: Arc<Mutex<Vec<Seen>>>, script: Arc<Script>) {
        let mut buf = Vec::new();
        loop {
            // Read one request: the head, then content-length bytes.
            let head_end = loop {
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                if !read_more(&mut stream, &mut buf).await {
                    return;
                }
            };
            let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            while buf.len() < head_end + len {
                if !read_more(&mut stream, &mut buf).await {
                    return;
                }
            }
            let body = buf[head_end..head_end + len].to_vec();
            buf.drain(..head_end + len);
            let n = {
                let mut s = seen.lock().unwrap();
                s.push(Seen { head, body });
                s.len() - 1
            };
            let (status, answer, close) = script(n);
            if status == 0 {
                return;
            }
            let resp = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
                answer.len()
            );
            if stream.write_all(resp.as_bytes()).await.is_err() || close {
                return;
            }
        }
    }

    fn beat() -> HeartbeatRequest {
        HeartbeatRequest {
            nodes: vec!["node-7".into()],
            ..Default::default()
        }
    }

    fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    #[test]
    fn only_one_plain_http_endpoint_gets_a_plain_client() {
        let plain = |e: &[&str]| Client::new(e).unwrap().plain().is_some();
        assert!(plain(&["http://127.0.0.1:8080"]));
        assert!(plain(&["http://cp.example:80/"]));
        assert!(!plain(&["https://127.0.0.1:8443"]), "TLS stays with Client");
        assert!(
            !plain(&["http://a:1", "http://b:2"]),
            "failover stays with Client"
        );
        assert!(
            !plain(&["http://a:1/prefix"]),
            "a path prefix stays with Client"
        );
    }

    #[tokio::test]
    async fn sends_what_client_sends_and_reads_the_answer() {
        let srv = server(|_| (200, r#"{"unknown_nodes":["node-7"]}"#, false)).await;
        let client = Client::new(&[srv.base.as_str()])
            .unwrap()
            .with_token(Some("lat_secret".into()));
        let plain = client.plain().unwrap();
        let a = client.heartbeat(&beat()).await.unwrap();
        let b = plain.heartbeat(&beat()).await.unwrap();
        assert_eq!(a, b);
        assert_eq!(b.unknown_nodes, vec!["node-7".to_string()]);
        let seen = srv.seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 2);
        let (general, lean) = (&seen[0], &seen[1]);
        assert_eq!(lean.body, general.body, "the same JSON body");
        assert!(
            lean.head
                .starts_with("POST /api/v1/agent/heartbeat HTTP/1.1\r\n"),
            "{}",
            lean.head
        );
        for h in ["host", "authorization", "content-type", "content-length"] {
            assert_eq!(
                header(&lean.head, h),
                header(&general.head, h),
                "header {h}"
            );
        }
        assert_eq!(
            header(&lean.head, "authorization"),
            Some("Bearer lat_secret")
        );
    }

    #[tokio::test]
    async fn keeps_the_connection_alive_between_calls() {
        let srv = server(|_| (200, r#"{"unknown_nodes":[]}"#, false)).await;
        let plain = Client::new(&[srv.base.as_str()]).unwrap().plain().unwrap();
        for _ in 0..5 {
            plain.heartbeat(&beat()).await.unwrap();
        }
        assert_eq!(srv.connections.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_replaced() {
        // The server closes every connection after its answer without a `connection:
        // close` header, as a restarted or idle-closing server would.
        let srv = server(|_| (200, r#"{"unknown_nodes":[]}"#, true)).await;
        let plain = Client::new(&[srv.base.as_str()]).unwrap().plain().unwrap();
        for i in 0..5 {
            plain
                .heartbeat(&beat())
                .await
                .unwrap_or_else(|e| panic!("call {i}: {e}"));
        }
        assert_eq!(srv.seen.lock().unwrap().len(), 5, "each call answered once");
        assert_eq!(srv.connections.load(Ordering::SeqCst), 5);

        // The server drops a kept-alive connection just as the next request arrives on it
        // (an idle timeout racing the request): that request goes again on a new one.
        let srv = server(|n| match n {
            1 => (0, "", true),
            _ => (200, r#"{"unknown_nodes":[]}"#, false),
        })
        .await;
        let plain = Client::new(&[srv.base.as_str()]).unwrap().plain().unwrap();
        plain.heartbeat(&beat()).await.unwrap();
        plain.heartbeat(&beat()).await.unwrap();
        assert_eq!(
            srv.seen.lock().unwrap().len(),
            3,
            "the dropped request was sent again"
        );
        assert_eq!(srv.connections.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn no_leader_is_retried_within_the_window_then_reported() {
        let srv = server(|n| {
            if n < 2 {
                (503, r#"{"error":"no leader"}"#, false)
            } else {
                (200, r#"{"unknown_nodes":[]}"#, false)
            }
        })
        .await;
        let client = Client::new(&[srv.base.as_str()]).unwrap();
        let plain = client
            .clone()
            .with_retry_for(Duration::from_secs(10))
            .plain()
            .unwrap();
        plain.heartbeat(&beat()).await.unwrap();
        assert_eq!(
            srv.seen.lock().unwrap().len(),
            3,
            "two 503s, then the answer"
        );

        let srv = server(|_| (503, r#"{"error":"no leader"}"#, false)).await;
        let client = Client::new(&[srv.base.as_str()]).unwrap();
        let plain = client.with_retry_for(Duration::ZERO).plain().unwrap();
        match plain.heartbeat(&beat()).await {
            Err(ClientError::Api {
                status: 503,
                message,
                ..
            }) => assert_eq!(message, "no leader"),
            other => panic!("expected the 503, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn errors_name_what_went_wrong() {
        let srv = server(|n| match n {
            0 => (400, r#"{"error":"nodes: must not be empty"}"#, false),
            1 => (404, "", false),
            _ => (200, "not json", false),
        })
        .await;
        let plain = Client::new(&[srv.base.as_str()]).unwrap().plain().unwrap();
        match plain.heartbeat(&beat()).await {
            Err(ClientError::Api {
                status: 400,
                message,
                ..
            }) => {
                assert_eq!(message, "nodes: must not be empty")
            }
            other => panic!("{other:?}"),
        }
        match plain.heartbeat(&beat()).await {
            Err(ClientError::Api {
                status: 404,
                message,
                ..
            }) => assert_eq!(message, "no error body"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            plain.heartbeat(&beat()).await,
            Err(ClientError::Decode(_))
        ));

        // Nothing listens there (a port just freed): fails at once, naming the endpoint.
        let port = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let base = format!("http://127.0.0.1:{port}");
        let plain = Client::new(&[base.as_str()]).unwrap().plain().unwrap();
        match plain.heartbeat(&beat()).await {
            Err(ClientError::Transport(m)) => assert!(m.contains(&base), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
