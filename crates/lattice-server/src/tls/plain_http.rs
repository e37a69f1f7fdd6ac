//! [`RefusePlainHttp`]: the first step of accepting a connection on the HTTPS port. A TLS
//! client's first byte is a handshake record (`0x16`); anything else is a plain-HTTP client
//! using an `http://` URL by mistake. It gets a `400` with the JSON error body every API error
//! has, saying to use `https://`, instead of TLS alert bytes it cannot read; the connection is
//! then closed and the member keeps serving.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::time::Duration;

use axum_server::accept::Accept;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The content type of a TLS handshake record: the first byte of every TLS client.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// What a plain-HTTP client gets.
pub const REFUSAL_BODY: &str =
    r#"{"error":"this port serves HTTPS: use an https:// URL","detail":null}"#;

/// How long the refused client may take to close after the answer (its request is drained).
const DRAIN_FOR: Duration = Duration::from_secs(2);

/// Passes TLS connections on (with `TCP_NODELAY`); answers anything else with a 400.
#[derive(Clone, Copy, Debug, Default)]
pub struct RefusePlainHttp;

impl<S: Send + 'static> Accept<TcpStream, S> for RefusePlainHttp {
    type Stream = TcpStream;
    type Service = S;
    type Future = Pin<Box<dyn Future<Output = io::Result<(TcpStream, S)>> + Send>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        Box::pin(async move {
            // Small RPCs (Raft, heartbeats) should not wait for Nagle.
            let _ = stream.set_nodelay(true);
            let mut first = [0u8; 1];
            let n = tokio::time::timeout(super::HANDSHAKE_TIMEOUT, stream.peek(&mut first))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no TLS handshake"))??;
            if n == 1 && first[0] != TLS_HANDSHAKE_RECORD {
                refuse(stream).await;
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "plain HTTP on the HTTPS port (answered 400)",
                ));
            }
            Ok((stream, service))
        })
    }
}

/// Writes the 400, closes the sending side, and reads what the client still sends until it
/// closes (bounded): closing a socket with unread input would reset the connection and could
/// destroy the answer before the client reads it.
async fn refuse(mut stream: TcpStream) {
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{REFUSAL_BODY}",
        REFUSAL_BODY.len()
    );
    let _ = tokio::time::timeout(DRAIN_FOR, async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut left = 1usize << 20;
        while left > 0 {
            match stream.read(&mut sink).await? {
                0 => break,
                n => left = left.saturating_sub(n),
            }
        }
        Ok::<(), io::Error>(())
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// Accepts one connection through the guard, returning its verdict, while `client` runs.
    async fn through_guard(client_sends: &'static [u8]) -> (io::Result<()>, Vec<u8>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            s.write_all(client_sends).await.expect("write");
            let mut got = Vec::new();
            // A TLS client would wait for the server's hello; stop after a short while.
            let _ = tokio::time::timeout(Duration::from_millis(300), s.read_to_end(&mut got)).await;
            got
        });
        let (stream, _) = listener.accept().await.expect("accept");
        let verdict = RefusePlainHttp.accept(stream, ()).await.map(|_| ());
        (verdict, client.await.expect("client"))
    }

    #[tokio::test]
    async fn plain_http_gets_a_400_naming_https() {
        let (verdict, got) = through_guard(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await;
        let e = verdict.expect_err("refused");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let text = String::from_utf8(got).expect("utf-8");
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
        assert!(text.ends_with(REFUSAL_BODY), "{text}");
        let body: serde_json::Value = serde_json::from_str(REFUSAL_BODY).expect("JSON body");
        assert!(body["error"].as_str().unwrap_or("").contains("https://"));
    }

    #[tokio::test]
    async fn a_tls_client_hello_is_passed_on_untouched() {
        // The start of a TLS 1.2 record header carrying a ClientHello.
        let (verdict, got) = through_guard(&[0x16, 0x03, 0x01, 0x00, 0x05]).await;
        assert!(verdict.is_ok(), "{verdict:?}");
        assert!(got.is_empty(), "nothing written to a TLS client");
    }
}
