//! Dependencies between allocations, and references to allocations as users write them.
//!
//! A [`JobRef`] is `42` (allocation 42; for an array's ID, the whole array) or `42_7` (task
//! index 7 of array 42). A dependency list is written `41:success,40:any` or, as Slurm's
//! `--dependency`, `afterok:41:42,afterany:40`. `success` waits until the target completed
//! (and cancels the dependent when it fails or is cancelled); `any` waits until it ended in any
//! way. A dependency on a whole array waits for every element.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::allocation::AllocId;

/// Most dependencies of one submission.
pub const MAX_DEPENDENCIES: usize = 128;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DepKind {
    /// The target must complete successfully (Slurm's `afterok`).
    Success,
    /// The target must end, in any state (Slurm's `afterany`).
    Any,
}

impl DepKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DepKind::Success => "success",
            DepKind::Any => "any",
        }
    }
}

/// An allocation or array as a user names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum JobRef {
    /// `42`: an allocation, or the whole array whose ID it is.
    Id(AllocId),
    /// `42_7`: task index 7 of array 42.
    Task { array: AllocId, index: u32 },
}

impl JobRef {
    /// Parses `42` or `42_7`.
    pub fn parse(text: &str) -> Result<JobRef, String> {
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let bad = || format!("{text:?} is not an allocation ID (N, or N_I for task I of array N)");
        match text.split_once('_') {
            None if digits(text) => match text.parse::<u64>() {
                Ok(id) if id > 0 => Ok(JobRef::Id(id)),
                _ => Err(bad()),
            },
            Some((a, i)) if digits(a) && digits(i) => match (a.parse::<u64>(), i.parse::<u32>()) {
                (Ok(array), Ok(index)) if array > 0 => Ok(JobRef::Task { array, index }),
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for JobRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobRef::Id(id) => write!(f, "{id}"),
            JobRef::Task { array, index } => write!(f, "{array}_{index}"),
        }
    }
}

impl std::str::FromStr for JobRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        JobRef::parse(s)
    }
}

/// A dependency as submitted (resolved against the state on apply).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DependencyRef {
    pub job: JobRef,
    pub kind: DepKind,
}

/// A resolved dependency, as an allocation records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Dependency {
    /// The allocation waited for, or the array's ID when `array` is set.
    pub on: AllocId,
    /// `on` is an array: wait for every element.
    pub array: bool,
    pub kind: DepKind,
}

/// Where a dependency stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DepStatus {
    Met,
    Waiting,
    /// A `success` dependency whose target failed or was cancelled: it can never be met.
    Broken,
}

fn kind_of(word: &str) -> Option<DepKind> {
    match word {
        "success" | "ok" | "afterok" => Some(DepKind::Success),
        "any" | "afterany" => Some(DepKind::Any),
        _ => None,
    }
}

/// Parses a dependency list: `41:success,40:any,42_7` (the kind defaults to `success`) or
/// Slurm's `afterok:41:42,afterany:40` (`?` as a separator works like `,`).
pub fn parse_dependencies(text: &str) -> Result<Vec<DependencyRef>, String> {
    let mut out = Vec::new();
    for item in text.split([',', '?']) {
        let item = item.trim();
        if item.is_empty() {
            return Err(format!(
                "{text:?}: expected ID[:success|any], ... or afterok:ID[:ID...]"
            ));
        }
        let mut words = item.split(':');
        let first = words.next().unwrap_or_default();
        if first.starts_with("after") {
            let kind = kind_of(first)
                .ok_or_else(|| format!("{first:?} is not supported (use afterok or afterany)"))?;
            let mut any = false;
            for w in words {
                // Slurm allows `afterok:41+5` (a delay); Lattice does not.
                out.push(DependencyRef {
                    job: JobRef::parse(w)?,
                    kind,
                });
                any = true;
            }
            if !any {
                return Err(format!("{item:?} names no allocation"));
            }
        } else {
            let job = JobRef::parse(first)?;
            let kind = match (words.next(), words.next()) {
                (None, _) => DepKind::Success,
                (Some(k), None) => kind_of(k)
                    .ok_or_else(|| format!("{k:?} is not a dependency type (success or any)"))?,
                _ => return Err(format!("{item:?}: expected ID:success or ID:any")),
            };
            out.push(DependencyRef { job, kind });
        }
    }
    if out.len() > MAX_DEPENDENCIES {
        return Err(format!("at most {MAX_DEPENDENCIES} dependencies"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_refs() {
        assert_eq!(JobRef::parse("42"), Ok(JobRef::Id(42)));
        assert_eq!(
            JobRef::parse("42_7"),
            Ok(JobRef::Task {
                array: 42,
                index: 7
            })
        );
        for bad in [
            "", "0", "x", "-3", "42_", "_7", "4_2_1", "0_1", "42_x", "1.5",
        ] {
            assert!(JobRef::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(JobRef::parse("42_7").unwrap().to_string(), "42_7");
    }

    #[test]
    fn lattice_and_slurm_syntax() {
        let d = parse_dependencies("41:success,40:any,42_7").unwrap();
        assert_eq!(
            d,
            vec![
                DependencyRef {
                    job: JobRef::Id(41),
                    kind: DepKind::Success
                },
                DependencyRef {
                    job: JobRef::Id(40),
                    kind: DepKind::Any
                },
                DependencyRef {
                    job: JobRef::Task {
                        array: 42,
                        index: 7
                    },
                    kind: DepKind::Success
                },
            ]
        );
        let s = parse_dependencies("afterok:41:42,afterany:40").unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[1].job, JobRef::Id(42));
        assert_eq!(s[2].kind, DepKind::Any);
        for bad in [
            "",
            "41:maybe",
            "afternotok:3",
            "afterok",
            "41,,42",
            "x:any",
            "1:any:2",
        ] {
            assert!(parse_dependencies(bad).is_err(), "{bad:?}");
        }
    }
}
