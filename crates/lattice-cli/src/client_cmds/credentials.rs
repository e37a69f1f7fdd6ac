//! Where the CLI finds its API token: `LATTICE_TOKEN`, else the token file
//! (`$XDG_CONFIG_HOME/lattice/token`, by default `~/.config/lattice/token`), which must not be
//! readable by group or others.

use std::path::PathBuf;

use lattice_client::{read_token_file, write_token_file, TokenFileError};

use super::CmdError;

/// The token file's path, if a home or config directory is known.
pub fn token_file() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty())?).join(".config"),
    };
    Some(base.join("lattice").join("token"))
}

/// The token to send, if any. A token file readable by others is refused (exit 2), as ssh
/// refuses such a key.
pub fn token() -> Result<Option<String>, CmdError> {
    if let Ok(t) = std::env::var("LATTICE_TOKEN") {
        let t = t.trim().to_string();
        if !t.is_empty() {
            return Ok(Some(t));
        }
    }
    let Some(path) = token_file() else {
        return Ok(None);
    };
    match read_token_file(&path) {
        Ok(t) => Ok(Some(t)),
        Err(TokenFileError::Missing(_) | TokenFileError::Empty(_)) => Ok(None),
        Err(e) => Err(CmdError::Usage(e.to_string())),
    }
}

/// Writes `secret` to the token file with mode 0600 (creating its directory).
pub fn save(secret: &str) -> Result<PathBuf, CmdError> {
    let path = token_file()
        .ok_or_else(|| CmdError::Usage("neither HOME nor XDG_CONFIG_HOME is set".into()))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| CmdError::Io(format!("cannot create {}: {e}", dir.display())))?;
    }
    write_token_file(&path, secret)
        .map_err(|e| CmdError::Io(format!("cannot write {}: {e}", path.display())))?;
    Ok(path)
}

/// [`token`] with the error as text (for callers outside the client commands).
pub fn token_text() -> Result<Option<String>, String> {
    token().map_err(|e| match e {
        CmdError::Usage(m) | CmdError::Io(m) | CmdError::Failed(m) => m,
        other => format!("{other:?}"),
    })
}
