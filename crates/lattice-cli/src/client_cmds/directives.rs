//! Script directives: `#LATTICE` and `#SBATCH` lines at the top of a batch script, read the way
//! `sbatch` reads them. Scanning starts after an optional `#!` line and stops at the first line
//! that is neither blank nor a comment.
//!
//! `#LATTICE` lines hold `lattice submit` flags verbatim (`#LATTICE --walltime=2h -N 4`). The
//! common `#SBATCH` options are translated to their Lattice flags (`--time` to `--walltime`,
//! `--partition` to `--vcluster`, `--account` to `--tenant`, `--array`, `--dependency` to
//! `--depends-on`, `--hold`, ...); other `#SBATCH` options produce a warning and are ignored. Words are split like a shell does (quotes, backslashes, a `#` word
//! starts a trailing comment).

/// One directive line, already in `lattice submit` flag syntax.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Directive {
    /// 1-based line number in the script.
    pub line: usize,
    /// `#LATTICE` or `#SBATCH`.
    pub tag: &'static str,
    pub args: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scan {
    pub directives: Vec<Directive>,
    /// Complete warning lines (without the `warning: ` prefix).
    pub warnings: Vec<String>,
}

const LATTICE: &str = "#LATTICE";
const SBATCH: &str = "#SBATCH";

/// Reads the directives of `script`. The error names the line.
pub fn scan(script: &str) -> Result<Scan, String> {
    let mut scan = Scan::default();
    for (idx, raw) in script.lines().enumerate() {
        let line = idx + 1;
        if line == 1 && raw.starts_with("#!") {
            continue;
        }
        let text = raw.trim_start();
        if text.is_empty() {
            continue;
        }
        if !text.starts_with('#') {
            break;
        }
        let (tag, rest) = if let Some(rest) = tagged(text, LATTICE) {
            (LATTICE, rest)
        } else if let Some(rest) = tagged(text, SBATCH) {
            (SBATCH, rest)
        } else {
            continue; // an ordinary comment
        };
        let words =
            split_words(rest).map_err(|e| format!("{tag} directive on line {line}: {e}"))?;
        let args = if tag == SBATCH {
            translate_sbatch(&words, line, &mut scan.warnings)?
        } else {
            words
        };
        if !args.is_empty() {
            scan.directives.push(Directive { line, tag, args });
        }
    }
    Ok(scan)
}

/// `text` without `tag` when it starts with it followed by a space or the end of the line.
fn tagged<'a>(text: &'a str, tag: &str) -> Option<&'a str> {
    let rest = text.strip_prefix(tag)?;
    (rest.is_empty() || rest.starts_with(char::is_whitespace)).then_some(rest)
}

/// `#SBATCH` options that have a Lattice equivalent, and that flag.
fn sbatch_equivalent(option: &str) -> Option<&'static str> {
    Some(match option {
        "--nodes" | "-N" => "--nodes",
        "--time" | "-t" => "--walltime",
        "--job-name" | "-J" => "--name",
        "--partition" | "-p" => "--vcluster",
        "--account" | "-A" => "--tenant",
        "--constraint" | "-C" => "--constraint",
        "--array" | "-a" => "--array",
        "--dependency" | "-d" => "--depends-on",
        _ => return None,
    })
}

/// `#SBATCH` options that take no value and have a Lattice equivalent.
fn sbatch_flag(option: &str) -> Option<&'static str> {
    match option {
        "--hold" | "-H" => Some("--hold"),
        _ => None,
    }
}

/// Turns `#SBATCH` words into `--flag=value` words; unsupported options become warnings.
fn translate_sbatch(
    words: &[String],
    line: usize,
    warnings: &mut Vec<String>,
) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let word = &words[i];
        i += 1;
        let (option, inline) = if let Some(long) = word.strip_prefix("--") {
            match long.split_once('=') {
                Some((k, v)) => (format!("--{k}"), Some(v.to_string())),
                None => (word.clone(), None),
            }
        } else if let Some(short) = word.strip_prefix('-').filter(|s| !s.is_empty()) {
            let mut chars = short.chars();
            let letter = chars.next().unwrap_or('-');
            let rest = chars.as_str();
            let rest = rest.strip_prefix('=').unwrap_or(rest);
            (
                format!("-{letter}"),
                (!rest.is_empty()).then(|| rest.to_string()),
            )
        } else {
            warnings.push(format!(
                "ignoring unexpected word {word:?} in #SBATCH directive (line {line})"
            ));
            continue;
        };
        if let Some(flag) = sbatch_flag(&option) {
            if inline.is_some() {
                return Err(format!(
                    "#SBATCH option {option} takes no value (line {line})"
                ));
            }
            out.push(flag.to_string());
            continue;
        }
        match sbatch_equivalent(&option) {
            Some(flag) => {
                let value = match inline {
                    Some(v) => v,
                    None if i < words.len() => {
                        i += 1;
                        words[i - 1].clone()
                    }
                    None => {
                        return Err(format!(
                            "#SBATCH option {option} needs a value (line {line})"
                        ))
                    }
                };
                out.push(format!("{flag}={value}"));
            }
            None => {
                warnings.push(format!(
                    "ignoring unsupported #SBATCH option {option} (line {line})"
                ));
                // `--mem 4G`: the next word is this option's value, not an option of its own.
                if inline.is_none() && i < words.len() && !words[i].starts_with('-') {
                    i += 1;
                }
            }
        }
    }
    Ok(out)
}

/// Splits a directive into words like a POSIX shell: single quotes keep everything, double
/// quotes allow `\"` and `\\`, a backslash outside quotes escapes the next character, and a word
/// that starts with `#` begins a comment that runs to the end of the line.
pub fn split_words(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '#' if !in_word => break,
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(x) => cur.push(x),
                        None => return Err("unterminated ' quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(x @ ('"' | '\\' | '$' | '`')) => cur.push(x),
                            Some(x) => {
                                cur.push('\\');
                                cur.push(x);
                            }
                            None => return Err("unterminated \" quote".into()),
                        },
                        Some(x) => cur.push(x),
                        None => return Err("unterminated \" quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(x) = chars.next() {
                    cur.push(x);
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(scan: &Scan) -> Vec<(usize, Vec<&str>)> {
        scan.directives
            .iter()
            .map(|d| (d.line, d.args.iter().map(String::as_str).collect()))
            .collect()
    }

    #[test]
    fn lattice_directives_pass_through() {
        let s =
            scan("#!/bin/sh\n#LATTICE --walltime=2h -N 4\n#LATTICE --name \"my job\"\nhostname\n")
                .unwrap();
        assert_eq!(
            args(&s),
            [
                (2, vec!["--walltime=2h", "-N", "4"]),
                (3, vec!["--name", "my job"])
            ]
        );
        assert!(s.warnings.is_empty());
        assert_eq!(s.directives[0].tag, "#LATTICE");
    }

    #[test]
    fn sbatch_options_are_translated() {
        let script = "#!/bin/bash\n\
            #SBATCH --nodes=2\n\
            #SBATCH -t 1:30:00\n\
            #SBATCH -J train\n\
            #SBATCH --partition gpu\n\
            #SBATCH -Aphysics\n\
            #SBATCH -C ib&nvme\n\
            #SBATCH --time=10 --job-name=x\n\
            srun hostname\n";
        let s = scan(script).unwrap();
        assert_eq!(
            args(&s),
            [
                (2, vec!["--nodes=2"]),
                (3, vec!["--walltime=1:30:00"]),
                (4, vec!["--name=train"]),
                (5, vec!["--vcluster=gpu"]),
                (6, vec!["--tenant=physics"]),
                (7, vec!["--constraint=ib&nvme"]),
                (8, vec!["--walltime=10", "--name=x"]),
            ]
        );
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    }

    #[test]
    fn unsupported_sbatch_options_warn_and_are_skipped() {
        let script = "#!/bin/sh\n\n# a comment\n#SBATCH --mem 4G\n#SBATCH --exclusive\n\
                      #SBATCH -o out.%j --nodes 3\n#SBATCH --gres=gpu:4\n";
        let s = scan(script).unwrap();
        assert_eq!(args(&s), [(6, vec!["--nodes=3"])]);
        assert_eq!(
            s.warnings,
            [
                "ignoring unsupported #SBATCH option --mem (line 4)",
                "ignoring unsupported #SBATCH option --exclusive (line 5)",
                "ignoring unsupported #SBATCH option -o (line 6)",
                "ignoring unsupported #SBATCH option --gres (line 7)",
            ]
        );
    }

    #[test]
    fn sbatch_requeue_options_are_not_preemption_options() {
        // `--no-requeue` is about node failures in Slurm, not preemption: never mapped.
        let s = scan("#SBATCH --no-requeue\n#SBATCH --requeue\n").unwrap();
        assert!(s.directives.is_empty());
        assert_eq!(
            s.warnings,
            [
                "ignoring unsupported #SBATCH option --no-requeue (line 1)",
                "ignoring unsupported #SBATCH option --requeue (line 2)",
            ]
        );
    }

    #[test]
    fn scanning_stops_at_the_first_command() {
        let script = "#!/bin/sh\n#LATTICE -N 2\necho hi\n#LATTICE -N 8\n#SBATCH --bogus\n";
        let s = scan(script).unwrap();
        assert_eq!(args(&s), [(2, vec!["-N", "2"])]);
        assert!(s.warnings.is_empty());
    }

    #[test]
    fn only_exact_tags_count() {
        let script =
            "# SBATCH -N 9\n#SBATCHX -N 9\n#lattice -N 9\n##LATTICE -N 9\n  #LATTICE -N 1\n";
        let s = scan(script).unwrap();
        assert_eq!(args(&s), [(5, vec!["-N", "1"])]);
    }

    #[test]
    fn shebang_only_on_the_first_line() {
        // Without a shebang, line 1 may already be a directive.
        let s = scan("#LATTICE -N 3\r\n#LATTICE -t 5\r\n").unwrap();
        assert_eq!(args(&s), [(1, vec!["-N", "3"]), (2, vec!["-t", "5"])]);
    }

    #[test]
    fn trailing_comments_and_empty_directives() {
        let s = scan("#SBATCH -N 2 # two nodes\n#LATTICE\n#LATTICE # nothing\n").unwrap();
        assert_eq!(args(&s), [(1, vec!["--nodes=2"])]);
    }

    #[test]
    fn errors_name_the_line() {
        let e = scan("#!/bin/sh\n#LATTICE --name 'oops\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("quote"), "{e}");
        let e = scan("#SBATCH -t\n").unwrap_err();
        assert_eq!(e, "#SBATCH option -t needs a value (line 1)");
        let s = scan("#SBATCH stray\n").unwrap();
        assert!(s.warnings[0].contains("stray") && s.warnings[0].contains("line 1"));
    }

    #[test]
    fn shell_like_words() {
        let w = |t: &str| split_words(t).unwrap();
        assert_eq!(
            w(r#"a 'b c' "d \"e\"" f\ g"#),
            ["a", "b c", "d \"e\"", "f g"]
        );
        assert_eq!(w("--env=A='x y'"), ["--env=A=x y"]);
        assert_eq!(w("a#b #c"), ["a#b"]);
        assert_eq!(w(r#""\n""#), [r"\n"]);
        assert_eq!(w("''"), [""]);
        assert!(w("   ").is_empty());
        assert!(split_words("\"abc").is_err());
    }
}
