//! Where the CLI finds its API token: `LATTICE_TOKEN`, else the token file
//! (`$XDG_CONFIG_HOME/lattice/token`, by default `~/.config/lattice/token`), which must not be
//! readable by group or others.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

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
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(CmdError::Usage(format!(
                "cannot read token file {}: {e}",
                path.display()
            )))
        }
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(CmdError::Usage(format!(
            "refusing token file {}: its mode is {mode:04o}, readable by others; run `chmod 600 {}`",
            path.display(),
            path.display()
        )));
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| CmdError::Usage(format!("cannot read token file {}: {e}", path.display())))?;
    let t = text.trim().to_string();
    Ok((!t.is_empty()).then_some(t))
}

/// Writes `secret` to the token file with mode 0600 (creating its directory).
pub fn save(secret: &str) -> Result<PathBuf, CmdError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = token_file()
        .ok_or_else(|| CmdError::Usage("neither HOME nor XDG_CONFIG_HOME is set".into()))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| CmdError::Io(format!("cannot create {}: {e}", dir.display())))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| CmdError::Io(format!("cannot write {}: {e}", path.display())))?;
    // An existing file keeps its mode on open: tighten it.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| CmdError::Io(format!("cannot chmod {}: {e}", path.display())))?;
    writeln!(f, "{secret}")
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
