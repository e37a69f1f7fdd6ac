//! Reading the Prometheus text exposition of `/metrics` (only what the bench needs: sample
//! lines with their labels; comments and timestamps are skipped) and picking out histograms
//! and counters by name and label values.

use super::stats::Histogram;

/// One sample line: `name{label="value",...} value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether every `(key, value)` of `filter` is one of its labels.
    fn matches(&self, filter: &[(&str, &str)]) -> bool {
        filter.iter().all(|(k, v)| self.label(k) == Some(*v))
    }
}

/// The samples of an exposition; lines that cannot be read are skipped.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (parsed, tail) = parse_labels(after)?;
        labels = parsed;
        rest = tail;
    }
    let value = rest.split_whitespace().next()?.parse::<f64>().ok()?;
    (!name.is_empty()).then(|| Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// `key="value",...}` (after the `{`); returns the labels and what follows the `}`.
fn parse_labels(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start_matches([' ', ',']);
        if let Some(tail) = s.strip_prefix('}') {
            return Some((labels, tail));
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim().to_string();
        s = s[eq + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '"' => break i,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                c => value.push(c),
            }
        };
        labels.push((key, value));
        s = &s[end + 1..];
    }
}

/// The histogram `name` (its `name_bucket` series), summing every series whose labels match
/// `filter`. Empty when there is none.
pub fn histogram(samples: &[Sample], name: &str, filter: &[(&str, &str)]) -> Histogram {
    let bucket = format!("{name}_bucket");
    let mut h = Histogram::default();
    for s in samples
        .iter()
        .filter(|s| s.name == bucket && s.matches(filter))
    {
        if let Some(le) = s.label("le").and_then(|v| v.parse::<f64>().ok()) {
            h.add_bucket(le, s.value);
        }
    }
    h
}

/// The sum of the series `name` whose labels match `filter` (0 when there is none).
pub fn sum(samples: &[Sample], name: &str, filter: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name && s.matches(filter))
        .map(|s| s.value)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"
# HELP lattice_scheduling_cycle_duration_seconds Scheduling cycles.
# TYPE lattice_scheduling_cycle_duration_seconds histogram
lattice_scheduling_cycle_duration_seconds_bucket{vcluster="default",le="0.0005"} 3
lattice_scheduling_cycle_duration_seconds_bucket{vcluster="default",le="0.001"} 7
lattice_scheduling_cycle_duration_seconds_bucket{vcluster="default",le="+Inf"} 9
lattice_scheduling_cycle_duration_seconds_sum{vcluster="default"} 0.012
lattice_scheduling_cycle_duration_seconds_count{vcluster="default"} 9
lattice_scheduling_cycle_duration_seconds_bucket{vcluster="gpu",le="0.0005"} 100
lattice_scheduling_cycle_duration_seconds_bucket{vcluster="gpu",le="0.001"} 100
lattice_scheduling_cycle_duration_seconds_bucket{vcluster="gpu",le="+Inf"} 100
lattice_allocations_total{state="completed",tenant="default",vcluster="default"} 40
lattice_allocations_total{state="failed",tenant="default",vcluster="default"} 2
lattice_allocations_total{state="completed",tenant="other",vcluster="default"} 5
lattice_raft_is_leader 1
weird{msg="a \"quoted\", {braced} \\ value\n"} 1.5 1700000000000
not a sample line
"#;

    #[test]
    fn samples_with_and_without_labels() {
        let s = parse(TEXT);
        let leader = s.iter().find(|x| x.name == "lattice_raft_is_leader");
        assert_eq!(leader.map(|x| x.value), Some(1.0));
        let weird = s.iter().find(|x| x.name == "weird").unwrap();
        assert_eq!(
            weird.label("msg"),
            Some("a \"quoted\", {braced} \\ value\n")
        );
        assert_eq!(weird.value, 1.5);
        assert!(!s.iter().any(|x| x.name == "not"));
    }

    #[test]
    fn a_histogram_by_label() {
        let s = parse(TEXT);
        let h = histogram(
            &s,
            "lattice_scheduling_cycle_duration_seconds",
            &[("vcluster", "default")],
        );
        assert_eq!(
            h,
            Histogram::from_buckets([(0.0005, 3.0), (0.001, 7.0), (f64::INFINITY, 9.0)])
        );
        let all = histogram(&s, "lattice_scheduling_cycle_duration_seconds", &[]);
        assert_eq!(all.count(), 109.0);
        assert_eq!(histogram(&s, "nothing", &[]).count(), 0.0);
    }

    #[test]
    fn counters_by_label() {
        let s = parse(TEXT);
        let f = [("tenant", "default"), ("vcluster", "default")];
        assert_eq!(sum(&s, "lattice_allocations_total", &f), 42.0);
        let done = [("state", "completed")];
        assert_eq!(sum(&s, "lattice_allocations_total", &done), 45.0);
        assert_eq!(sum(&s, "absent_total", &[]), 0.0);
    }
}
