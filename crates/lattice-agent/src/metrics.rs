//! The agent's own metrics, served at `GET /metrics` in the classic Prometheus text format.
//! This module owns every one of them: name, type, help text and buckets; call sites use the
//! typed methods of [`AgentMetrics`]. (The series the agent *pushes* are listed in
//! `telemetry::series`.)

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
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        String::from_utf8_lossy(&buf).into_owned()
    }
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
}
