//! The agent's own metrics, served at `GET /metrics` in the classic Prometheus text format.
//! This module owns every one of them: name, type, help text and buckets; call sites use the
//! typed methods of [`AgentMetrics`] (a simulating agent: [`SimMetrics`]). (The series the
//! agent *pushes* are listed in `telemetry::series`.)

use prometheus::{Encoder, Histogram, HistogramOpts, IntCounter, IntGauge, Registry, TextEncoder};

/// Seconds; pushes are milliseconds on a LAN and up to the timeout when the TSDB hangs.
const PUSH_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Seconds; a collection reads a few files (and NVML).
const COLLECT_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

pub struct AgentMetrics {
    registry: Registry,
    samples_sent: IntCounter,
    samples_dropped: IntCounter,
    queue_length: IntGauge,
    push_duration: Histogram,
    push_failures: IntCounter,
    collect_duration: Histogram,
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid counter name");
    r.register(Box::new(c.clone())).expect("registered once");
    c
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: &[f64]) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
        .expect("valid histogram");
    r.register(Box::new(h.clone())).expect("registered once");
    h
}

impl Default for AgentMetrics {
    fn default() -> Self {
        let r = Registry::new();
        let queue_length = IntGauge::new(
            "lattice_telemetry_queue_length",
            "Telemetry samples collected but not yet accepted by the TSDB.",
        )
        .expect("valid gauge");
        r.register(Box::new(queue_length.clone()))
            .expect("registered once");
        AgentMetrics {
            samples_sent: counter(
                &r,
                "lattice_telemetry_samples_sent_total",
                "Telemetry samples the TSDB accepted.",
            ),
            samples_dropped: counter(
                &r,
                "lattice_telemetry_samples_dropped_total",
                "Telemetry samples given up: the queue was full, or the TSDB refused them (4xx).",
            ),
            push_failures: counter(
                &r,
                "lattice_telemetry_push_failures_total",
                "Remote-write requests that failed (they are retried unless refused).",
            ),
            push_duration: histogram(
                &r,
                "lattice_telemetry_push_duration_seconds",
                "Duration of remote-write requests, failed ones included.",
                PUSH_BUCKETS,
            ),
            collect_duration: histogram(
                &r,
                "lattice_telemetry_collect_duration_seconds",
                "Duration of one telemetry collection (reading /proc, /sys and NVML) and its encoding.",
                COLLECT_BUCKETS,
            ),
            queue_length,
            registry: r,
        }
    }
}

impl AgentMetrics {
    pub fn samples_sent(&self, n: usize) {
        self.samples_sent.inc_by(n as u64);
    }

    pub fn samples_dropped(&self, n: usize) {
        self.samples_dropped.inc_by(n as u64);
    }

    pub fn queue_length(&self, samples: usize) {
        self.queue_length
            .set(i64::try_from(samples).unwrap_or(i64::MAX));
    }

    pub fn push_finished(&self, seconds: f64, ok: bool) {
        self.push_duration.observe(seconds);
        if !ok {
            self.push_failures.inc();
        }
    }

    pub fn collect_finished(&self, seconds: f64) {
        self.collect_duration.observe(seconds);
    }

    /// The classic text exposition of every metric.
    pub fn render(&self) -> String {
        render(&self.registry)
    }
}

/// The metrics of a simulating agent (`sim`): the load it puts on the control plane and the
/// jobs it runs.
pub struct SimMetrics {
    registry: Registry,
    nodes: IntGauge,
    nodes_registered: IntGauge,
    heartbeats: IntCounter,
    heartbeat_failures: IntCounter,
    work_polls: IntCounter,
    work_poll_failures: IntCounter,
    exit_reports: IntCounter,
    ranks_running: IntGauge,
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid gauge name");
    r.register(Box::new(g.clone())).expect("registered once");
    g
}

impl Default for SimMetrics {
    fn default() -> Self {
        let r = Registry::new();
        SimMetrics {
            nodes: gauge(&r, "lattice_sim_nodes", "Virtual nodes this agent presents."),
            nodes_registered: gauge(
                &r,
                "lattice_sim_nodes_registered",
                "Virtual nodes registered with the control plane so far.",
            ),
            heartbeats: counter(
                &r,
                "lattice_sim_heartbeats_total",
                "Heartbeat requests sent (one virtual node each), failed ones included.",
            ),
            heartbeat_failures: counter(
                &r,
                "lattice_sim_heartbeat_failures_total",
                "Heartbeat requests that failed.",
            ),
            work_polls: counter(
                &r,
                "lattice_sim_work_polls_total",
                "Work long-polls sent (one batch of virtual nodes each), failed ones included.",
            ),
            work_poll_failures: counter(
                &r,
                "lattice_sim_work_poll_failures_total",
                "Work long-polls that failed.",
            ),
            exit_reports: counter(
                &r,
                "lattice_sim_exit_reports_delivered_total",
                "Exit reports of simulated ranks the control plane accepted (resent ones count again).",
            ),
            ranks_running: gauge(
                &r,
                "lattice_sim_ranks_running",
                "Simulated ranks running now.",
            ),
            registry: r,
        }
    }
}

impl SimMetrics {
    pub fn nodes(&self, n: usize) {
        self.nodes.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub fn node_registered(&self) {
        self.nodes_registered.inc();
    }

    pub fn heartbeat(&self, ok: bool, exit_reports: usize) {
        self.heartbeats.inc();
        if ok {
            self.exit_reports.inc_by(exit_reports as u64);
        } else {
            self.heartbeat_failures.inc();
        }
    }

    pub fn work_poll(&self, ok: bool) {
        self.work_polls.inc();
        if !ok {
            self.work_poll_failures.inc();
        }
    }

    pub fn ranks_running(&self, n: u64) {
        self.ranks_running.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The classic text exposition of every metric.
    pub fn render(&self) -> String {
        render(&self.registry)
    }
}

fn render(registry: &Registry) -> String {
    let mut buf = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&registry.gather(), &mut buf) {
        tracing::warn!(error = %e, "cannot encode metrics");
    }
    String::from_utf8_lossy(&buf).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_every_metric_with_help_and_type() {
        let m = AgentMetrics::default();
        m.samples_sent(5);
        m.samples_dropped(0);
        m.queue_length(3);
        m.push_finished(0.01, false);
        m.collect_finished(0.001);
        let text = m.render();
        for (name, kind) in [
            ("lattice_telemetry_samples_sent_total", "counter"),
            ("lattice_telemetry_samples_dropped_total", "counter"),
            ("lattice_telemetry_queue_length", "gauge"),
            ("lattice_telemetry_push_failures_total", "counter"),
            ("lattice_telemetry_push_duration_seconds", "histogram"),
            ("lattice_telemetry_collect_duration_seconds", "histogram"),
        ] {
            assert!(text.contains(&format!("# HELP {name} ")), "{name}\n{text}");
            assert!(
                text.contains(&format!("# TYPE {name} {kind}\n")),
                "{name}\n{text}"
            );
        }
        assert!(
            text.contains("lattice_telemetry_samples_sent_total 5\n"),
            "{text}"
        );
        assert!(
            text.contains("lattice_telemetry_queue_length 3\n"),
            "{text}"
        );
        assert!(
            text.contains("lattice_telemetry_push_failures_total 1\n"),
            "{text}"
        );
        assert!(!text.contains("# EOF"), "classic format, not OpenMetrics");
    }

    #[test]
    fn sim_exposition_names_every_metric() {
        let m = SimMetrics::default();
        m.nodes(3);
        m.node_registered();
        m.heartbeat(true, 2);
        m.heartbeat(false, 5);
        m.work_poll(false);
        m.ranks_running(4);
        let text = m.render();
        for line in [
            "lattice_sim_nodes 3\n",
            "lattice_sim_nodes_registered 1\n",
            "lattice_sim_heartbeats_total 2\n",
            "lattice_sim_heartbeat_failures_total 1\n",
            "lattice_sim_work_polls_total 1\n",
            "lattice_sim_work_poll_failures_total 1\n",
            "lattice_sim_exit_reports_delivered_total 2\n",
            "lattice_sim_ranks_running 4\n",
        ] {
            assert!(text.contains(line), "{line}{text}");
        }
    }
}
