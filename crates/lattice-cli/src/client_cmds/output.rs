//! Output plumbing shared by the client commands: the `-o` format, writing to stdout (a closed
//! pipe, as in `lattice status | head`, ends the command quietly instead of panicking), JSON,
//! one-line messages on stderr, and the local clock.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use lattice_core::Timestamp;
use serde::Serialize;

use super::CmdError;

/// `-o` of the listing commands.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns
    #[default]
    Table,
    /// JSON, as the API returns it
    Json,
    /// Aligned columns with extra fields
    Wide,
}

/// Writes `text` to stdout as is.
pub fn out(text: &str) -> Result<(), CmdError> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(CmdError::Closed),
        Err(e) => Err(CmdError::Io(format!(
            "cannot write to standard output: {e}"
        ))),
    }
}

/// Writes `value` as pretty JSON and a newline.
pub fn out_json<T: Serialize>(value: &T) -> Result<(), CmdError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CmdError::Io(format!("cannot encode JSON: {e}")))?;
    out(&format!("{text}\n"))
}

/// `warning: <msg>` on stderr.
pub fn warn(msg: &str) {
    let _ = writeln!(std::io::stderr().lock(), "warning: {}", one_line(msg));
}

/// `error: <msg>` on stderr, always a single line.
pub fn error_line(msg: &str) {
    let _ = writeln!(std::io::stderr().lock(), "error: {}", one_line(msg));
}

/// `message` prefixed with `subject: ` unless it already names the subject (the server's
/// `allocation 42 not found` needs no `allocation 42: ` in front).
pub fn about(subject: &str, message: &str) -> String {
    let names_it = message.match_indices(subject).any(|(at, _)| {
        !message[at + subject.len()..]
            .starts_with(|c: char| c.is_alphanumeric() || c == '-' || c == '_' || c == '.')
    });
    if names_it {
        message.to_string()
    } else {
        format!("{subject}: {message}")
    }
}

/// `text` with line breaks and other control characters turned into spaces, so that a
/// message or a table cell stays on one line and cannot drive the terminal.
pub fn one_line(text: &str) -> String {
    text.trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The local wall clock.
pub fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    Timestamp::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_flattens_control_characters() {
        assert_eq!(one_line(" bad\nthing\x1b[2J\t! \n"), "bad thing [2J !");
    }

    #[test]
    fn about_names_the_subject_once() {
        assert_eq!(
            about("allocation 4", "allocation 4 not found (HTTP 404)"),
            "allocation 4 not found (HTTP 404)"
        );
        assert_eq!(
            about("allocation 4", "cannot reach the server"),
            "allocation 4: cannot reach the server"
        );
        assert_eq!(
            about("allocation 4", "allocation 42 is busy"),
            "allocation 4: allocation 42 is busy"
        );
        assert_eq!(
            about("node dev-1", "node dev-1 not found"),
            "node dev-1 not found"
        );
        assert_eq!(
            about("node dev-1", "node dev-10 not found"),
            "node dev-1: node dev-10 not found"
        );
    }
}
