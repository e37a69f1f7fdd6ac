//! Submission requests as users send them ([`SubmitRequest`]) and their validation into an
//! [`AllocationSpec`]. Every refusal names the field at fault.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::allocation::{AllocationSpec, Constraints};
use crate::array::{parse_array, ArraySpec};
use crate::checkpoint::{
    parse_signal, CheckpointMode, CheckpointSpec, MAX_CHECKPOINT_INTERVAL_SECONDS,
    MAX_CHECKPOINT_TIMEOUT_SECONDS, MIN_CHECKPOINT_INTERVAL_SECONDS,
};
use crate::dependency::{parse_dependencies, DependencyRef};
use crate::error::Rejection;

pub const DEFAULT_TENANT: &str = "default";
pub const DEFAULT_VCLUSTER: &str = "default";
pub const DEFAULT_WALLTIME_SECONDS: u64 = 3600;
pub const DEFAULT_PRIORITY: u8 = 5;
pub const MAX_PRIORITY: i64 = 10;
/// One year: longer walltimes are almost certainly a unit mistake.
pub const MAX_WALLTIME_SECONDS: i64 = 366 * 24 * 3600;
pub const MAX_NODES: i64 = 100_000;
pub const MAX_NAME_LEN: usize = 128;
pub const MAX_SCRIPT_BYTES: usize = 256 * 1024;
pub const MAX_ARGS: usize = 4096;
pub const MAX_ENV_VARS: usize = 1024;

/// The body of `POST /api/v1/allocations`. Numbers are signed so that a negative value gets a
/// clear range error naming the field instead of a type error.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub vcluster: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub command: Option<Vec<String>>,
    #[serde(default)]
    pub script: Option<String>,
    #[serde(default)]
    pub nodes: Option<i64>,
    #[serde(default)]
    pub walltime_seconds: Option<i64>,
    #[serde(default)]
    pub priority: Option<i64>,
    #[serde(default)]
    pub constraints: Option<Constraints>,
    #[serde(default)]
    pub env: Option<BTreeMap<String, String>>,
    /// Job array: `0-999%50` (see [`crate::array`]).
    #[serde(default)]
    pub array: Option<String>,
    /// Dependencies: `41:success,40:any` or `afterok:41` (see [`crate::dependency`]).
    #[serde(default)]
    pub depends_on: Option<String>,
    /// Submit held: not scheduled until released.
    #[serde(default)]
    pub hold: Option<bool>,
    /// `false` (`--no-preempt`): never preempted. Default true.
    #[serde(default)]
    pub preemptible: Option<bool>,
    /// `signal` or `none` (default).
    #[serde(default)]
    pub checkpoint: Option<String>,
    /// Default `SIGUSR1`; only with `checkpoint: signal`.
    #[serde(default)]
    pub checkpoint_signal: Option<String>,
    /// How long the agent waits for the acknowledgement; default 60.
    #[serde(default)]
    pub checkpoint_timeout_seconds: Option<i64>,
    /// Checkpoint every N seconds while running.
    #[serde(default)]
    pub checkpoint_interval_seconds: Option<i64>,
}

/// What a submission asks for besides the allocation itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitOptions {
    pub array: Option<ArraySpec>,
    pub depends_on: Vec<DependencyRef>,
    pub hold: bool,
    /// Create the tenant with default settings when it does not exist (the server's
    /// `auto_create_tenants`); otherwise an unknown tenant is refused.
    pub create_tenant: bool,
    /// Who submitted it when that is not `spec.user`: an admin submitting on a user's behalf.
    pub submitted_by: Option<String>,
}

/// Names of tenants, vClusters and users: 1-63 chars of `[A-Za-z0-9_.-]`, starting alphanumeric.
pub fn validate_name(field: &str, value: &str) -> Result<(), Rejection> {
    let ok_len = !value.is_empty() && value.len() <= 63;
    let ok_first = value
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let ok_chars = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok_len && ok_first && ok_chars {
        Ok(())
    } else {
        Err(Rejection::invalid(
            field,
            format!("{value:?} must be 1-63 characters of A-Z a-z 0-9 _ . - starting with a letter or digit"),
        ))
    }
}

fn in_range(field: &str, value: i64, min: i64, max: i64) -> Result<i64, Rejection> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(Rejection::invalid(
            field,
            format!("{value} is out of range {min}..={max}"),
        ))
    }
}

impl SubmitRequest {
    /// Validates the request and fills in defaults. `default_user` is used when the request
    /// names no user.
    pub fn into_spec(self, default_user: &str) -> Result<AllocationSpec, Rejection> {
        self.into_submission(default_user).map(|(spec, _)| spec)
    }

    /// Validates the request into the allocation and the submission's options
    /// (`create_tenant` is left `false`: the server decides it).
    pub fn into_submission(
        mut self,
        default_user: &str,
    ) -> Result<(AllocationSpec, SubmitOptions), Rejection> {
        let array = self
            .array
            .take()
            .map(|a| parse_array(&a).map_err(|e| Rejection::invalid("array", e)))
            .transpose()?;
        let depends_on = match self.depends_on.take() {
            Some(d) => parse_dependencies(&d).map_err(|e| Rejection::invalid("depends_on", e))?,
            None => Vec::new(),
        };
        let options = SubmitOptions {
            array,
            depends_on,
            hold: self.hold.take().unwrap_or(false),
            create_tenant: false,
            submitted_by: None,
        };
        Ok((self.spec(default_user)?, options))
    }

    fn spec(self, default_user: &str) -> Result<AllocationSpec, Rejection> {
        let tenant = self.tenant.unwrap_or_else(|| DEFAULT_TENANT.into());
        validate_name("tenant", &tenant)?;
        let vcluster = self.vcluster.unwrap_or_else(|| DEFAULT_VCLUSTER.into());
        validate_name("vcluster", &vcluster)?;
        let user = self.user.unwrap_or_else(|| default_user.into());
        validate_name("user", &user)?;

        let (command, script) = match (self.command, self.script) {
            (Some(_), Some(_)) => {
                return Err(Rejection::invalid(
                    "command",
                    "give either command or script, not both",
                ))
            }
            (None, None) => {
                return Err(Rejection::invalid(
                    "command",
                    "one of command (argv array) or script is required",
                ))
            }
            (Some(argv), None) => {
                if argv.is_empty() || argv[0].is_empty() {
                    return Err(Rejection::invalid(
                        "command",
                        "must be a non-empty argv array",
                    ));
                }
                if argv.len() > MAX_ARGS {
                    return Err(Rejection::invalid(
                        "command",
                        format!("at most {MAX_ARGS} arguments"),
                    ));
                }
                if argv.iter().any(|a| a.contains('\0')) {
                    return Err(Rejection::invalid(
                        "command",
                        "arguments may not contain NUL",
                    ));
                }
                (Some(argv), None)
            }
            (None, Some(script)) => {
                if script.trim().is_empty() {
                    return Err(Rejection::invalid("script", "must not be empty"));
                }
                if script.len() > MAX_SCRIPT_BYTES {
                    return Err(Rejection::invalid(
                        "script",
                        format!("at most {MAX_SCRIPT_BYTES} bytes"),
                    ));
                }
                if script.contains('\0') {
                    return Err(Rejection::invalid("script", "may not contain NUL"));
                }
                (None, Some(script))
            }
        };

        let name = match self.name {
            Some(n) => {
                if n.is_empty() || n.len() > MAX_NAME_LEN || n.chars().any(char::is_control) {
                    return Err(Rejection::invalid(
                        "name",
                        format!("must be 1-{MAX_NAME_LEN} printable characters"),
                    ));
                }
                n
            }
            None => default_name(command.as_deref()),
        };

        let nodes = in_range("nodes", self.nodes.unwrap_or(1), 1, MAX_NODES)? as u32;
        let walltime_seconds = in_range(
            "walltime_seconds",
            self.walltime_seconds
                .unwrap_or(DEFAULT_WALLTIME_SECONDS as i64),
            1,
            MAX_WALLTIME_SECONDS,
        )? as u64;
        let priority = in_range(
            "priority",
            self.priority.unwrap_or(i64::from(DEFAULT_PRIORITY)),
            0,
            MAX_PRIORITY,
        )? as u8;

        let constraints = self.constraints.unwrap_or_default();
        for f in &constraints.features {
            if f.is_empty() || f.len() > 63 {
                return Err(Rejection::invalid(
                    "constraints.features",
                    format!("feature {f:?} must be 1-63 characters"),
                ));
            }
        }
        if let Some(g) = &constraints.gpu_type {
            if g.is_empty() {
                return Err(Rejection::invalid(
                    "constraints.gpu_type",
                    "must not be empty",
                ));
            }
        }

        let env = self.env.unwrap_or_default();
        if env.len() > MAX_ENV_VARS {
            return Err(Rejection::invalid(
                "env",
                format!("at most {MAX_ENV_VARS} variables"),
            ));
        }
        for (k, v) in &env {
            let valid = !k.is_empty()
                && !k.starts_with(|c: char| c.is_ascii_digit())
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid || v.contains('\0') {
                return Err(Rejection::invalid(
                    "env",
                    format!("{k:?} is not a valid environment variable name"),
                ));
            }
            if k.starts_with("LATTICE_") {
                return Err(Rejection::invalid(
                    "env",
                    format!("{k:?}: LATTICE_* variables are set by the agent"),
                ));
            }
        }

        let checkpoint = checkpoint_spec(
            self.checkpoint,
            self.checkpoint_signal,
            self.checkpoint_timeout_seconds,
            self.checkpoint_interval_seconds,
        )?;

        Ok(AllocationSpec {
            preemptible: self.preemptible.unwrap_or(true),
            checkpoint,
            name,
            tenant,
            vcluster,
            user,
            command,
            script,
            nodes,
            walltime_seconds,
            priority,
            constraints,
            env: crate::allocation::env_of(env),
        })
    }
}

/// Validates the checkpoint fields: the signal, timeout and interval only make sense with
/// `checkpoint: signal`.
fn checkpoint_spec(
    mode: Option<String>,
    signal: Option<String>,
    timeout: Option<i64>,
    interval: Option<i64>,
) -> Result<CheckpointSpec, Rejection> {
    let mut spec = CheckpointSpec::default();
    if let Some(m) = mode {
        spec.mode = CheckpointMode::parse(&m).ok_or_else(|| {
            Rejection::invalid(
                "checkpoint",
                format!("{m:?} must be \"signal\" or \"none\""),
            )
        })?;
    }
    if !spec.enabled() {
        for (field, given) in [
            ("checkpoint_signal", signal.is_some()),
            ("checkpoint_timeout_seconds", timeout.is_some()),
            ("checkpoint_interval_seconds", interval.is_some()),
        ] {
            if given {
                return Err(Rejection::invalid(
                    field,
                    "only applies with checkpoint: signal",
                ));
            }
        }
        return Ok(spec);
    }
    if let Some(s) = signal {
        spec.signal = parse_signal(&s)
            .map_err(|e| Rejection::invalid("checkpoint_signal", e))?
            .to_string();
    }
    if let Some(t) = timeout {
        spec.timeout_seconds = in_range(
            "checkpoint_timeout_seconds",
            t,
            1,
            MAX_CHECKPOINT_TIMEOUT_SECONDS,
        )? as u64;
    }
    if let Some(i) = interval {
        spec.interval_seconds = Some(in_range(
            "checkpoint_interval_seconds",
            i,
            MIN_CHECKPOINT_INTERVAL_SECONDS,
            MAX_CHECKPOINT_INTERVAL_SECONDS,
        )? as u64);
    }
    Ok(spec)
}

fn default_name(command: Option<&[String]>) -> String {
    let first = command
        .and_then(|argv| argv.first())
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string());
    match first {
        Some(n) if !n.is_empty() && n.len() <= MAX_NAME_LEN => n,
        _ => "script".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: &str) -> Result<AllocationSpec, Rejection> {
        serde_json::from_str::<SubmitRequest>(json)
            .unwrap()
            .into_spec("alice")
    }

    #[test]
    fn defaults_are_filled() {
        let s = req(r#"{"command":["/bin/echo","hi"]}"#).unwrap();
        assert_eq!(s.name, "echo");
        assert_eq!(s.tenant, "default");
        assert_eq!(s.vcluster, "default");
        assert_eq!(s.user, "alice");
        assert_eq!(s.nodes, 1);
        assert_eq!(s.walltime_seconds, 3600);
        assert_eq!(s.priority, 5);
    }

    #[test]
    fn bad_fields_are_named() {
        let field = |json: &str| match req(json) {
            Err(Rejection::Invalid { field, .. }) => field,
            other => panic!("expected invalid, got {other:?}"),
        };
        assert_eq!(field(r#"{"command":["x"],"nodes":0}"#), "nodes");
        assert_eq!(
            field(r#"{"command":["x"],"walltime_seconds":-5}"#),
            "walltime_seconds"
        );
        assert_eq!(field(r#"{"command":["x"],"priority":11}"#), "priority");
        assert_eq!(field(r#"{"command":[]}"#), "command");
        assert_eq!(field(r#"{}"#), "command");
        assert_eq!(field(r#"{"script":"  "}"#), "script");
        assert_eq!(field(r#"{"command":["x"],"tenant":"a b"}"#), "tenant");
        assert_eq!(field(r#"{"command":["x"],"env":{"1A":"x"}}"#), "env");
        assert_eq!(field(r#"{"command":["x"],"array":"5-1"}"#), "array");
        assert_eq!(
            field(r#"{"command":["x"],"depends_on":"1:maybe"}"#),
            "depends_on"
        );
    }

    #[test]
    fn options_are_parsed() {
        let (spec, o) = serde_json::from_str::<SubmitRequest>(
            r#"{"command":["x"],"array":"0-3%2","depends_on":"4:any","hold":true}"#,
        )
        .unwrap()
        .into_submission("bob")
        .unwrap();
        assert_eq!(spec.user, "bob");
        let a = o.array.unwrap();
        assert_eq!((a.indices, a.max_running), (vec![0, 1, 2, 3], Some(2)));
        assert_eq!(o.depends_on.len(), 1);
        assert!(o.hold && !o.create_tenant);
    }

    #[test]
    fn checkpoint_fields_validate() {
        let s = req(r#"{"command":["x"]}"#).unwrap();
        assert!(s.preemptible);
        assert_eq!(s.checkpoint, CheckpointSpec::default());
        let s = req(
            r#"{"command":["x"],"preemptible":false,"checkpoint":"signal",
                "checkpoint_signal":"usr2","checkpoint_timeout_seconds":5,
                "checkpoint_interval_seconds":30}"#,
        )
        .unwrap();
        assert!(!s.preemptible);
        assert_eq!(
            s.checkpoint,
            CheckpointSpec {
                mode: CheckpointMode::Signal,
                signal: "SIGUSR2".into(),
                timeout_seconds: 5,
                interval_seconds: Some(30),
            }
        );
        let field = |json: &str| match req(json) {
            Err(Rejection::Invalid { field, .. }) => field,
            other => panic!("expected invalid, got {other:?}"),
        };
        assert_eq!(
            field(r#"{"command":["x"],"checkpoint":"cr"}"#),
            "checkpoint"
        );
        assert_eq!(
            field(r#"{"command":["x"],"checkpoint_interval_seconds":10}"#),
            "checkpoint_interval_seconds"
        );
        assert_eq!(
            field(r#"{"command":["x"],"checkpoint":"signal","checkpoint_signal":"TERM"}"#),
            "checkpoint_signal"
        );
        assert_eq!(
            field(r#"{"command":["x"],"checkpoint":"signal","checkpoint_timeout_seconds":0}"#),
            "checkpoint_timeout_seconds"
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_json::from_str::<SubmitRequest>(r#"{"command":["x"],"nodez":2}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("nodez"), "{err}");
    }
}
