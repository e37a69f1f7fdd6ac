//! `--constraint` / `-C` values into [`Constraints`]: `key=value` pairs (`features=a,b`,
//! `gpu_type=H100`, `min_gpus=4`, `min_memory_gb=512`, `min_cpus=64`) or, as with Slurm's `-C`,
//! bare feature names joined by `&` (or `,`). Accepted key aliases: `feature`, `gpu`, `gpus`,
//! `cpus`, `memory_gb`, `mem_gb`.

use lattice_core::Constraints;

/// Longest feature name the server accepts.
const MAX_FEATURE_LEN: usize = 63;

/// Adds one `--constraint` value to `c`. Later values of a scalar key replace earlier ones;
/// features accumulate. The error is a phrase without the flag name.
pub fn apply_constraint(c: &mut Constraints, text: &str) -> Result<(), String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty constraint".into());
    }
    let Some((key, value)) = text.split_once('=') else {
        return add_features(c, text);
    };
    let value = value.trim();
    match key.trim() {
        "features" | "feature" => add_features(c, value),
        "gpu_type" | "gpu" => {
            if value.is_empty() || value.chars().any(char::is_control) {
                return Err("gpu_type needs a GPU model, e.g. gpu_type=H100".into());
            }
            c.gpu_type = Some(value.to_string());
            Ok(())
        }
        "min_gpus" | "gpus" => {
            c.min_gpus = Some(count(key, value)?);
            Ok(())
        }
        "min_cpus" | "cpus" => {
            c.min_cpus = Some(count(key, value)?);
            Ok(())
        }
        "min_memory_gb" | "memory_gb" | "mem_gb" => {
            c.min_memory_gb = Some(count(key, value)?);
            Ok(())
        }
        other => Err(format!(
            "unknown constraint key {other:?}: use features, gpu_type, min_gpus, min_memory_gb \
             or min_cpus (a word without = is a feature)"
        )),
    }
}

fn count<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, String> {
    if !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{}={value:?}: expected a whole number", key.trim()));
    }
    value
        .parse()
        .map_err(|_| format!("{}={value:?}: expected a whole number", key.trim()))
}

/// `a&b`, `a,b` or `a`: every listed feature is required.
fn add_features(c: &mut Constraints, list: &str) -> Result<(), String> {
    if list.contains(['|', '[', ']', '*', '(', ')', '!']) {
        return Err("only AND of features (a&b) is supported, not OR, counts or grouping".into());
    }
    for f in list.split(['&', ',']).map(str::trim) {
        if f.is_empty() {
            return Err("empty feature name".into());
        }
        if f.len() > MAX_FEATURE_LEN || f.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
            return Err(format!(
                "feature {f:?} must be 1-{MAX_FEATURE_LEN} characters without spaces"
            ));
        }
        if !c.features.iter().any(|have| have == f) {
            c.features.push(f.to_string());
        }
    }
    Ok(())
}

/// One-line summary (`features=a,b gpu_type=H100 min_gpus=4`), `-` when empty.
pub fn describe(c: &Constraints) -> String {
    let mut parts = Vec::new();
    if !c.features.is_empty() {
        parts.push(format!("features={}", c.features.join(",")));
    }
    if let Some(g) = &c.gpu_type {
        parts.push(format!("gpu_type={g}"));
    }
    if let Some(n) = c.min_gpus {
        parts.push(format!("min_gpus={n}"));
    }
    if let Some(n) = c.min_memory_gb {
        parts.push(format!("min_memory_gb={n}"));
    }
    if let Some(n) = c.min_cpus {
        parts.push(format!("min_cpus={n}"));
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(values: &[&str]) -> Result<Constraints, String> {
        let mut c = Constraints::default();
        for v in values {
            apply_constraint(&mut c, v)?;
        }
        Ok(c)
    }

    #[test]
    fn keys_and_values() {
        let c = parse(&[
            "features=ib,nvme",
            "gpu_type=H100",
            "min_gpus=4",
            "min_memory_gb=512",
            "min_cpus=64",
        ])
        .unwrap();
        assert_eq!(c.features, ["ib", "nvme"]);
        assert_eq!(c.gpu_type.as_deref(), Some("H100"));
        assert_eq!(c.min_gpus, Some(4));
        assert_eq!(c.min_memory_gb, Some(512));
        assert_eq!(c.min_cpus, Some(64));
    }

    #[test]
    fn slurm_style_features() {
        assert_eq!(parse(&["ib&nvme"]).unwrap().features, ["ib", "nvme"]);
        assert_eq!(parse(&["gpu"]).unwrap().features, ["gpu"]);
        assert_eq!(
            parse(&["feature=a", "b", "a"]).unwrap().features,
            ["a", "b"]
        );
        assert_eq!(parse(&[" a & b "]).unwrap().features, ["a", "b"]);
    }

    #[test]
    fn later_scalars_win() {
        let c = parse(&["min_gpus=2", "min_gpus=8"]).unwrap();
        assert_eq!(c.min_gpus, Some(8));
    }

    #[test]
    fn bad_values_are_refused() {
        for bad in [
            "",
            "min_gpus=",
            "min_gpus=-1",
            "min_gpus=two",
            "min_gpus=99999999999",
            "min_memory_gb=1.5",
            "min_cpus=+4",
            "gpu_type=",
            "colour=blue",
            "a|b",
            "[a&b]",
            "a*2",
            "a&&b",
            "a,",
            "features=",
            "has space",
        ] {
            assert!(parse(&[bad]).is_err(), "{bad:?} should be refused");
        }
        let long = "x".repeat(64);
        assert!(parse(&[&long]).is_err());
        let e = parse(&["colour=blue"]).unwrap_err();
        assert!(e.contains("colour") && e.contains("min_gpus"), "{e}");
    }

    #[test]
    fn describes_constraints() {
        assert_eq!(describe(&Constraints::default()), "-");
        let c = parse(&["a&b", "gpu_type=H100", "min_gpus=2"]).unwrap();
        assert_eq!(describe(&c), "features=a,b gpu_type=H100 min_gpus=2");
    }
}
