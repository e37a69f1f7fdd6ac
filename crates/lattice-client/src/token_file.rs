//! Reading and writing API token files: readable by their owner only, as ssh insists for keys.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Why a token file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("{0} does not exist")]
    Missing(String),
    #[error("cannot read {0}: {1}")]
    Unreadable(String, std::io::Error),
    #[error("refusing {path}: its mode is {mode:04o}, readable by others; run `chmod 600 {path}`")]
    Exposed { path: String, mode: u32 },
    #[error("{0} is empty")]
    Empty(String),
}

/// The token in `path` (trimmed). Refused when the file's group or other permission bits
/// are set.
pub fn read_token_file(path: &Path) -> Result<String, TokenFileError> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => TokenFileError::Missing(shown.clone()),
        _ => TokenFileError::Unreadable(shown.clone(), e),
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(TokenFileError::Exposed { path: shown, mode });
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| TokenFileError::Unreadable(shown.clone(), e))?;
    match text.trim() {
        "" => Err(TokenFileError::Empty(shown)),
        t => Ok(t.to_string()),
    }
}

/// Writes `secret` to `path` with mode 0600 (an existing file is truncated and tightened).
pub fn write_token_file(path: &Path, secret: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // An existing file keeps its mode on open.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    writeln!(f, "{secret}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_private_files_are_read() {
        let dir = std::env::temp_dir().join(format!("lattice-token-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        assert!(matches!(
            read_token_file(&path),
            Err(TokenFileError::Missing(_))
        ));
        write_token_file(&path, "lat_abc").unwrap();
        assert_eq!(read_token_file(&path).unwrap(), "lat_abc");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_token_file(&path).unwrap_err();
        assert!(e.to_string().contains("chmod 600"), "{e}");
        write_token_file(&path, "  ").unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(matches!(
            read_token_file(&path),
            Err(TokenFileError::Empty(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
