//! Job arrays: one submission that creates many allocations (elements), one per task index,
//! in one Raft entry. Elements get consecutive IDs; the array's ID is its first element's.
//! `%N` caps how many elements run at once.
//!
//! Syntax (as Slurm's `--array`): `LIST[%CAP]`, where `LIST` is comma-separated items `N`,
//! `N-M` or `N-M:STEP`, e.g. `0-999%50`, `1,3,5-7`, `0-15:4`.

use serde::{Deserialize, Serialize};

use crate::allocation::AllocId;
use crate::time::Timestamp;

/// Most elements in one array.
pub const MAX_ARRAY_SIZE: usize = 10_000;
/// Largest task index.
pub const MAX_TASK_INDEX: u32 = 1_000_000;

/// A validated `--array` value: task indices (ascending, distinct) and the cap.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArraySpec {
    pub indices: Vec<u32>,
    pub max_running: Option<u32>,
    /// The text it was parsed from, for display.
    pub text: String,
}

/// What the cluster keeps about an array besides its elements.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArrayInfo {
    /// The array's ID: its first element's allocation ID.
    pub id: AllocId,
    /// Elements created at submission.
    pub size: u32,
    pub max_running: Option<u32>,
    /// The `--array` text, e.g. `0-999%50`.
    pub text: String,
    pub submitted_at: Timestamp,
}

fn number(text: &str, what: &str) -> Result<u32, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{what} {text:?} is not a whole number"));
    }
    text.parse::<u32>()
        .ok()
        .filter(|n| *n <= MAX_TASK_INDEX)
        .ok_or_else(|| format!("{what} {text} is larger than {MAX_TASK_INDEX}"))
}

/// Parses an `--array` value. The error says what is wrong, without naming the flag.
pub fn parse_array(text: &str) -> Result<ArraySpec, String> {
    let trimmed = text.trim();
    let (list, cap) = match trimmed.split_once('%') {
        Some((l, c)) => (l, Some(c)),
        None => (trimmed, None),
    };
    let max_running = match cap {
        None => None,
        Some(c) => {
            let n = number(c, "the % limit")?;
            if n == 0 {
                return Err("the % limit must be at least 1".into());
            }
            Some(n)
        }
    };
    if list.is_empty() {
        return Err("expected task indices such as 0-99 or 1,3,5-7".into());
    }
    let mut indices = Vec::new();
    for item in list.split(',') {
        let (range, step) = match item.split_once(':') {
            Some((r, s)) => (r, number(s, "step")?),
            None => (item, 1),
        };
        if step == 0 {
            return Err("step must be at least 1".into());
        }
        let (lo, hi) = match range.split_once('-') {
            Some((a, b)) => (number(a, "index")?, number(b, "index")?),
            None => {
                let n = number(range, "index")?;
                (n, n)
            }
        };
        if hi < lo {
            return Err(format!("range {lo}-{hi} runs backwards"));
        }
        let count = (hi - lo) / step + 1;
        if indices.len() + count as usize > MAX_ARRAY_SIZE {
            return Err(format!("at most {MAX_ARRAY_SIZE} tasks in one array"));
        }
        indices.extend((lo..=hi).step_by(step as usize));
    }
    indices.sort_unstable();
    indices.dedup();
    Ok(ArraySpec {
        indices,
        max_running,
        text: trimmed.to_string(),
    })
}

/// Task indices as compact ranges: `[0, 1, 2, 5, 7, 8]` is `0-2,5,7-8`.
pub fn compress(indices: &[u32]) -> String {
    let mut sorted = indices.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slurm_syntax() {
        let a = parse_array("0-999%50").unwrap();
        assert_eq!(a.indices.len(), 1000);
        assert_eq!((a.indices[0], a.indices[999]), (0, 999));
        assert_eq!(a.max_running, Some(50));
        assert_eq!(a.text, "0-999%50");
        assert_eq!(parse_array("1,3,5-7").unwrap().indices, [1, 3, 5, 6, 7]);
        assert_eq!(parse_array("0-15:4").unwrap().indices, [0, 4, 8, 12]);
        assert_eq!(parse_array("7,2,7").unwrap().indices, [2, 7]);
        assert_eq!(parse_array("4").unwrap().max_running, None);
    }

    #[test]
    fn bad_arrays_say_why() {
        for (text, want) in [
            ("", "expected task indices"),
            ("5-1", "backwards"),
            ("0-9%0", "at least 1"),
            ("0-9%x", "whole number"),
            ("a-b", "whole number"),
            ("0-10:0", "step"),
            ("0-20000", "at most 10000"),
            ("2000000", "larger than"),
            ("1,,2", "whole number"),
        ] {
            let e = parse_array(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn compresses_ranges() {
        assert_eq!(compress(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
        assert_eq!(compress(&[3]), "3");
        assert_eq!(compress(&[]), "");
    }
}
