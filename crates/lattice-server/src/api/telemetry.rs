//! Reading telemetry back from the TSDB the agents push to (see docs/telemetry.md):
//! `GET /api/v1/allocations/{id}/metrics` (a job's current CPU, memory and GPU use per node,
//! for `lattice top`) and `GET /api/v1/telemetry/nodes` (current utilization of every node,
//! for `lattice nodes -o wide`). Both run PromQL instant queries against the Prometheus query
//! API at `telemetry.tsdb_query_endpoint` (POST `/api/v1/query`). Reads use this member's
//! state as is: figures that are seconds old anyway need no linearizable read.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use lattice_core::telemetry::{GpuUse, NodeUse, NodeUtilization};

use super::error::ApiError;
use super::extract::alloc_id;
use super::App;
use crate::config::TsdbQuery;

/// Bound on one query to the TSDB.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// One element of an instant vector.
#[derive(Clone, Debug, PartialEq)]
struct Point {
    labels: BTreeMap<String, String>,
    value: f64,
}

impl Point {
    fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}

#[derive(Deserialize)]
struct QueryAnswer {
    status: String,
    #[serde(default)]
    data: Option<QueryData>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct QueryData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<VectorElement>,
}

#[derive(Deserialize)]
struct VectorElement {
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

/// The points of a Prometheus `/api/v1/query` answer (an instant vector); non-finite values
/// are left out.
fn parse_answer(text: &str) -> Result<Vec<Point>, String> {
    let a: QueryAnswer =
        serde_json::from_str(text).map_err(|e| format!("not a query answer: {e}"))?;
    if a.status != "success" {
        return Err(a.error.unwrap_or_else(|| format!("status {}", a.status)));
    }
    let data = a.data.ok_or("answer without data")?;
    if data.result_type != "vector" {
        return Err(format!("expected a vector, got {}", data.result_type));
    }
    Ok(data
        .result
        .into_iter()
        .filter_map(|e| {
            let value: f64 = e.value.1.parse().ok()?;
            value.is_finite().then_some(Point {
                labels: e.metric,
                value,
            })
        })
        .collect())
}

/// A string as a PromQL double-quoted literal.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The PromQL queries of one allocation, in the order [`allocation_queries`] names them.
fn allocation_queries(id: u64, window_seconds: u64) -> Vec<(&'static str, String)> {
    let sel = format!("{{allocation={}}}", quoted(&id.to_string()));
    // Node series of the nodes where this allocation has series.
    let on_nodes = format!("and on(node) lattice_allocation_processes{sel}");
    vec![
        (
            "cpu_cores",
            format!("sum by (node) (rate(lattice_allocation_cpu_seconds_total{sel}[{window_seconds}s]))"),
        ),
        ("cpu_seconds", format!("sum by (node) (lattice_allocation_cpu_seconds_total{sel})")),
        ("memory_bytes", format!("sum by (node) (lattice_allocation_resident_memory_bytes{sel})")),
        ("processes", format!("sum by (node) (lattice_allocation_processes{sel})")),
        ("node_cpu", format!("lattice_node_cpu_utilization_ratio {on_nodes}")),
        ("node_mem_used", format!("lattice_node_memory_used_bytes {on_nodes}")),
        ("node_mem_total", format!("lattice_node_memory_total_bytes {on_nodes}")),
        ("gpu_util", format!("lattice_node_gpu_utilization_ratio {on_nodes}")),
        ("gpu_mem_used", format!("lattice_node_gpu_memory_used_bytes {on_nodes}")),
        ("gpu_mem_total", format!("lattice_node_gpu_memory_total_bytes {on_nodes}")),
    ]
}

const NODE_QUERIES: [(&str, &str); 4] = [
    ("cpu", "lattice_node_cpu_utilization_ratio"),
    ("mem_used", "lattice_node_memory_used_bytes"),
    ("mem_total", "lattice_node_memory_total_bytes"),
    ("gpu", "avg by (node) (lattice_node_gpu_utilization_ratio)"),
];

/// Assembles the per-node answer from the query results (pure).
fn assemble_allocation(nodes: &[String], results: &BTreeMap<&str, Vec<Point>>) -> Vec<NodeUse> {
    let by_node = |key: &str, node: &str| {
        results
            .get(key)
            .and_then(|v| v.iter().find(|p| p.label("node") == node))
            .map(|p| p.value)
    };
    nodes
        .iter()
        .map(|node| {
            let mut gpus: BTreeMap<(String, String), GpuUse> = BTreeMap::new();
            for (key, field) in [("gpu_util", 0), ("gpu_mem_used", 1), ("gpu_mem_total", 2)] {
                for p in results
                    .get(key)
                    .into_iter()
                    .flatten()
                    .filter(|p| p.label("node") == node)
                {
                    let g = gpus
                        .entry((p.label("gpu").to_string(), p.label("model").to_string()))
                        .or_insert_with(|| GpuUse {
                            gpu: p.label("gpu").to_string(),
                            model: p.label("model").to_string(),
                            ..GpuUse::default()
                        });
                    let slot = match field {
                        0 => &mut g.utilization,
                        1 => &mut g.memory_used_bytes,
                        _ => &mut g.memory_total_bytes,
                    };
                    *slot = Some(p.value);
                }
            }
            let mut gpus: Vec<GpuUse> = gpus.into_values().collect();
            gpus.sort_by_key(|g| (g.gpu.parse::<u64>().unwrap_or(u64::MAX), g.gpu.clone()));
            NodeUse {
                node: node.clone(),
                cpu_cores: by_node("cpu_cores", node),
                cpu_seconds: by_node("cpu_seconds", node),
                memory_bytes: by_node("memory_bytes", node),
                processes: by_node("processes", node),
                node_cpu_utilization: by_node("node_cpu", node),
                node_memory_used_bytes: by_node("node_mem_used", node),
                node_memory_total_bytes: by_node("node_mem_total", node),
                gpus,
            }
        })
        .collect()
}

fn assemble_nodes(nodes: &[String], results: &BTreeMap<&str, Vec<Point>>) -> Vec<NodeUtilization> {
    let by_node = |key: &str, node: &str| {
        results
            .get(key)
            .and_then(|v| v.iter().find(|p| p.label("node") == node))
            .map(|p| p.value)
    };
    nodes
        .iter()
        .map(|n| NodeUtilization {
            node: n.clone(),
            cpu_utilization: by_node("cpu", n),
            memory_used_bytes: by_node("mem_used", n),
            memory_total_bytes: by_node("mem_total", n),
            gpu_utilization: by_node("gpu", n),
        })
        .collect()
}

fn not_configured() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "telemetry is not configured on this member: set telemetry.tsdb_endpoint (or \
         telemetry.tsdb_query_endpoint) in its configuration",
    )
    .with_detail(json!({ "tsdb": null }))
}

fn bad_gateway(tsdb: &TsdbQuery, message: String) -> ApiError {
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        format!("TSDB at {}: {message}", tsdb.url),
    )
    .with_detail(json!({ "tsdb": tsdb.url }))
}

/// One instant query (POST, so that long queries fit).
async fn query(app: &App, tsdb: &TsdbQuery, promql: &str) -> Result<Vec<Point>, ApiError> {
    let mut req = app
        .http
        .post(format!("{}/api/v1/query", tsdb.url))
        .timeout(QUERY_TIMEOUT)
        // `nocache` is VictoriaMetrics' switch for its rollup cache; Prometheus ignores it.
        .form(&[("query", promql), ("nocache", "1")]);
    if let Some(t) = &tsdb.bearer_token {
        req = req.bearer_auth(t);
    } else if let Some((u, p)) = &tsdb.basic_auth {
        req = req.basic_auth(u, Some(p));
    }
    let resp = req
        .send()
        .await
        .map_err(|e| bad_gateway(tsdb, format!("cannot reach it: {e}")))?;
    let status = resp.status();
    let text = resp
        .text()
        .await
        .map_err(|e| bad_gateway(tsdb, format!("cannot read its answer: {e}")))?;
    if !status.is_success() {
        let short: String = text.trim().chars().take(300).collect();
        return Err(bad_gateway(
            tsdb,
            format!("answered {status} to {promql:?}: {short}"),
        ));
    }
    parse_answer(&text).map_err(|e| bad_gateway(tsdb, format!("query {promql:?}: {e}")))
}

async fn run_all<'a>(
    app: &App,
    tsdb: &TsdbQuery,
    queries: &[(&'a str, String)],
) -> Result<BTreeMap<&'a str, Vec<Point>>, ApiError> {
    let answers = futures::future::join_all(queries.iter().map(|(_, q)| query(app, tsdb, q))).await;
    let mut results = BTreeMap::new();
    for ((key, _), answer) in queries.iter().zip(answers) {
        results.insert(*key, answer?);
    }
    Ok(results)
}

/// `GET /api/v1/allocations/{id}/metrics`.
pub async fn allocation_metrics(
    State(app): State<App>,
    axum::Extension(caller): axum::Extension<crate::auth::Caller>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = alloc_id(&id)?;
    let found = {
        let d = app.state.read();
        d.state.allocation(id).map(|a| {
            (
                caller.sees_tenant(&a.tenant),
                a.assigned_nodes.clone(),
                a.state.as_str(),
            )
        })
    };
    let (nodes, state) = match found {
        Some((true, nodes, state)) => (nodes, state),
        Some((false, ..)) => {
            super::access::denied(&app, &caller, id, "GET /api/v1/allocations/{id}/metrics")
                .await?;
            return Err(ApiError::not_found("allocation", id));
        }
        None => return Err(ApiError::not_found("allocation", id)),
    };
    super::access::read(
        &app,
        &caller,
        id,
        lattice_core::audit::AuditAction::MetricsRead,
        "metrics".into(),
    )
    .await?;
    if nodes.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("allocation {id} has not started; it has no metrics yet"),
        ));
    }
    let tsdb = app.cfg.tsdb.clone().ok_or_else(not_configured)?;
    let queries = allocation_queries(id, tsdb.rate_window_seconds);
    let results = run_all(&app, &tsdb, &queries).await?;
    Ok(Json(json!({
        "allocation_id": id,
        "state": state,
        "tsdb": tsdb.url,
        "rate_window_seconds": tsdb.rate_window_seconds,
        "nodes": assemble_allocation(&nodes, &results),
    })))
}

/// `GET /api/v1/telemetry/nodes`. Without a TSDB it answers `configured: false` and no nodes
/// (listing nodes must not fail because telemetry is off).
pub async fn nodes_utilization(
    State(app): State<App>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Some(tsdb) = app.cfg.tsdb.clone() else {
        return Ok(Json(
            json!({ "configured": false, "tsdb": null, "nodes": [] }),
        ));
    };
    let nodes: Vec<String> = app.state.read().state.nodes().keys().cloned().collect();
    let queries: Vec<(&str, String)> = NODE_QUERIES
        .iter()
        .map(|(k, q)| (*k, q.to_string()))
        .collect();
    let results = run_all(&app, &tsdb, &queries).await?;
    Ok(Json(json!({
        "configured": true,
        "tsdb": tsdb.url,
        "nodes": assemble_nodes(&nodes, &results),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(labels: &[(&str, &str)], value: f64) -> Point {
        Point {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value,
        }
    }

    #[test]
    fn parses_prometheus_answers() {
        let ok = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"node":"a"},"value":[1700000000.5,"0.25"]},
            {"metric":{"node":"b"},"value":[1700000000.5,"NaN"]}]}}"#;
        assert_eq!(parse_answer(ok), Ok(vec![point(&[("node", "a")], 0.25)]));
        let err = r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        assert_eq!(parse_answer(err), Err("parse error".to_string()));
        let matrix = r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert!(parse_answer(matrix).is_err());
        assert!(parse_answer("<html>").is_err());
    }

    #[test]
    fn queries_quote_the_allocation_and_scale_the_window() {
        let q = allocation_queries(42, 120);
        assert_eq!(
            q[0].1,
            r#"sum by (node) (rate(lattice_allocation_cpu_seconds_total{allocation="42"}[120s]))"#
        );
        assert_eq!(
            q[7].1,
            r#"lattice_node_gpu_utilization_ratio and on(node) lattice_allocation_processes{allocation="42"}"#
        );
        assert_eq!(quoted(r#"a"b\c"#), r#""a\"b\\c""#);
    }

    #[test]
    fn assembles_per_node_answers_with_gpus_in_index_order() {
        let mut r: BTreeMap<&str, Vec<Point>> = BTreeMap::new();
        r.insert("cpu_cores", vec![point(&[("node", "n1")], 0.98)]);
        r.insert(
            "memory_bytes",
            vec![point(&[("node", "n1")], 1e6), point(&[("node", "n2")], 2e6)],
        );
        r.insert(
            "gpu_util",
            vec![
                point(&[("node", "n1"), ("gpu", "10"), ("model", "H100")], 0.5),
                point(&[("node", "n1"), ("gpu", "2"), ("model", "H100")], 0.9),
            ],
        );
        r.insert(
            "gpu_mem_total",
            vec![point(
                &[("node", "n1"), ("gpu", "2"), ("model", "H100")],
                8e10,
            )],
        );
        let got = assemble_allocation(&["n1".into(), "n2".into(), "n3".into()], &r);
        assert_eq!(got[0].cpu_cores, Some(0.98));
        assert_eq!(got[0].memory_bytes, Some(1e6));
        let gpus: Vec<(&str, Option<f64>, Option<f64>)> = got[0]
            .gpus
            .iter()
            .map(|g| (g.gpu.as_str(), g.utilization, g.memory_total_bytes))
            .collect();
        assert_eq!(
            gpus,
            [("2", Some(0.9), Some(8e10)), ("10", Some(0.5), None)]
        );
        assert_eq!(got[1].memory_bytes, Some(2e6));
        assert_eq!(got[1].cpu_cores, None);
        assert_eq!(
            got[2],
            NodeUse {
                node: "n3".into(),
                ..NodeUse::default()
            }
        );
        let mut r: BTreeMap<&str, Vec<Point>> = BTreeMap::new();
        r.insert("cpu", vec![point(&[("node", "n1")], 0.5)]);
        let u = assemble_nodes(&["n1".into(), "n2".into()], &r);
        assert_eq!(u[0].cpu_utilization, Some(0.5));
        assert_eq!(u[1].cpu_utilization, None);
    }
}
