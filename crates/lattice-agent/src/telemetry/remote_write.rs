//! Prometheus remote write 1.0: the protobuf messages (derived by hand with prost: only the
//! four that the protocol needs), the encoding of a [`Batch`], block snappy, and [`Pusher`],
//! which POSTs one request with the standard headers and optional authentication.

use std::time::Duration;

use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE};
use reqwest::StatusCode;

use super::config::{BasicAuth, TelemetryConfig};
use super::series::Batch;

#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// The batch as a `WriteRequest`: one time series per sample, labels sorted by name with
/// `__name__` first, empty label values left out (Prometheus treats them as absent).
pub fn to_write_request(batch: &Batch) -> WriteRequest {
    let timeseries = batch
        .samples
        .iter()
        .map(|s| {
            let mut labels: Vec<Label> = std::iter::once(Label {
                name: "__name__".into(),
                value: s.name.into(),
            })
            .chain(
                s.labels
                    .iter()
                    .filter(|(_, v)| !v.is_empty())
                    .map(|(k, v)| Label {
                        name: (*k).into(),
                        value: v.clone(),
                    }),
            )
            .collect();
            labels.sort_by(|a, b| a.name.cmp(&b.name));
            TimeSeries {
                labels,
                samples: vec![Sample {
                    value: s.value,
                    timestamp: batch.timestamp_ms,
                }],
            }
        })
        .collect();
    WriteRequest { timeseries }
}

/// The protobuf encoding of the batch (uncompressed). Encodings of several batches
/// concatenated are the encoding of one request holding all their series (protobuf merges
/// repeated fields), which is how the queue sends a backlog in one request.
pub fn encode(batch: &Batch) -> Vec<u8> {
    prost::Message::encode_to_vec(&to_write_request(batch))
}

/// Block (raw) snappy, as remote write requires; framed snappy is refused by receivers.
pub fn compress(protobuf: &[u8]) -> Result<Vec<u8>, snap::Error> {
    snap::raw::Encoder::new().compress_vec(protobuf)
}

/// Why a push failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// Worth retrying later: no connection, timeout, 5xx, 429.
    #[error("{0}")]
    Retry(String),
    /// The receiver refused the data itself (other 4xx): retrying cannot help.
    #[error("{0}")]
    Rejected(String),
}

#[derive(Clone, Debug)]
enum Auth {
    None,
    Bearer(String),
    Basic(BasicAuth),
}

/// Sends remote-write requests to one URL.
#[derive(Clone, Debug)]
pub struct Pusher {
    http: reqwest::Client,
    url: String,
    auth: Auth,
}

impl Pusher {
    /// `None` when telemetry is off.
    pub fn new(cfg: &TelemetryConfig) -> Result<Option<Self>, reqwest::Error> {
        let Some(url) = cfg.write_url() else {
            return Ok(None);
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(cfg.push_timeout_seconds.min(5)))
            .timeout(Duration::from_secs(cfg.push_timeout_seconds))
            .pool_idle_timeout(Duration::from_secs(90))
            .build()?;
        let auth = match (&cfg.bearer_token, &cfg.basic_auth) {
            (Some(t), _) => Auth::Bearer(t.clone()),
            (None, Some(b)) => Auth::Basic(b.clone()),
            (None, None) => Auth::None,
        };
        Ok(Some(Pusher { http, url, auth }))
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// POSTs `protobuf` (an encoded `WriteRequest`), snappy-compressed.
    pub async fn push(&self, protobuf: &[u8]) -> Result<(), PushError> {
        let body = compress(protobuf).map_err(|e| PushError::Rejected(format!("snappy: {e}")))?;
        let mut req = self
            .http
            .post(&self.url)
            .header(CONTENT_ENCODING, "snappy")
            .header(CONTENT_TYPE, "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .header(
                reqwest::header::USER_AGENT,
                concat!("lattice-agent/", env!("CARGO_PKG_VERSION")),
            )
            .body(body);
        req = match &self.auth {
            Auth::None => req,
            Auth::Bearer(t) => req.bearer_auth(t),
            Auth::Basic(b) => req.basic_auth(&b.username, Some(&b.password)),
        };
        let resp = req
            .send()
            .await
            .map_err(|e| PushError::Retry(format!("{}: {e}", self.url)))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let text = resp.text().await.unwrap_or_default();
        let text: String = text.trim().chars().take(300).collect();
        let msg = format!("{} answered {status}: {text}", self.url);
        if status.is_server_error()
            || status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
        {
            Err(PushError::Retry(msg))
        } else {
            Err(PushError::Rejected(msg))
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    fn batch() -> Batch {
        let mut b = Batch::new(1_700_000_000_123);
        b.push(
            "lattice_allocation_cpu_seconds_total",
            vec![
                ("node", "dev-1".into()),
                ("allocation", "7".into()),
                ("tenant", "physics".into()),
                ("vcluster", String::new()),
            ],
            12.5,
        );
        b.push(
            "lattice_node_memory_total_bytes",
            vec![("node", "dev-1".into())],
            1024.0,
        );
        b
    }

    #[test]
    fn round_trips_through_prost_with_sorted_labels() {
        let decoded = WriteRequest::decode(encode(&batch()).as_slice()).expect("decode");
        assert_eq!(decoded.timeseries.len(), 2);
        let names: Vec<(&str, &str)> = decoded.timeseries[0]
            .labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("__name__", "lattice_allocation_cpu_seconds_total"),
                ("allocation", "7"),
                ("node", "dev-1"),
                ("tenant", "physics"),
            ],
            "sorted, and the empty vcluster left out"
        );
        assert_eq!(
            decoded.timeseries[0].samples,
            vec![Sample {
                value: 12.5,
                timestamp: 1_700_000_000_123
            }]
        );
    }

    /// The wire bytes, assembled by hand from the protobuf spec (not by prost), so that an
    /// encoder bug shared by encode and decode cannot hide.
    #[test]
    fn wire_format_matches_a_hand_assembled_message() {
        let mut b = Batch::new(1000);
        b.push("up", vec![("node", "n".into())], 1.0);
        let label = |name: &str, value: &str| -> Vec<u8> {
            let mut v = vec![0x0a, name.len() as u8];
            v.extend_from_slice(name.as_bytes());
            v.extend([0x12, value.len() as u8]);
            v.extend_from_slice(value.as_bytes());
            v
        };
        let l1 = label("__name__", "up");
        let l2 = label("node", "n");
        // Sample: field 1 double (tag 0x09) 1.0 little-endian; field 2 varint (0x10) 1000.
        let mut sample = vec![0x09];
        sample.extend(1.0f64.to_le_bytes());
        sample.extend([0x10, 0xe8, 0x07]);
        let mut ts = Vec::new();
        for l in [&l1, &l2] {
            ts.push(0x0a);
            ts.push(l.len() as u8);
            ts.extend_from_slice(l);
        }
        ts.push(0x12);
        ts.push(sample.len() as u8);
        ts.extend(&sample);
        let mut want = vec![0x0a, ts.len() as u8];
        want.extend(ts);
        assert_eq!(encode(&b), want);
    }

    #[test]
    fn concatenated_batches_are_one_request() {
        let mut two = encode(&batch());
        two.extend(encode(&batch()));
        let decoded = WriteRequest::decode(two.as_slice()).expect("decode");
        assert_eq!(decoded.timeseries.len(), 4);
    }

    #[test]
    fn snappy_is_the_block_format() {
        let pb = encode(&batch());
        let z = compress(&pb).expect("compress");
        // Framed snappy would start with the stream identifier chunk 0xff 06 00 00 sNaPpY.
        assert_ne!(z.first(), Some(&0xff));
        assert_eq!(
            snap::raw::Decoder::new().decompress_vec(&z).expect("raw"),
            pb
        );
    }

    #[test]
    fn pusher_only_with_an_endpoint() {
        assert!(Pusher::new(&TelemetryConfig::default())
            .expect("client")
            .is_none());
        let cfg = TelemetryConfig {
            tsdb_endpoint: Some("http://127.0.0.1:1".into()),
            ..TelemetryConfig::default()
        };
        let p = Pusher::new(&cfg).expect("client").expect("enabled");
        assert_eq!(p.url(), "http://127.0.0.1:1/api/v1/write");
    }
}
