//! [`AuditSigner`]: the member's Ed25519 key that signs audit chain heads, so an exported
//! log can be checked against a public key instead of against a live cluster.
//!
//! The key comes from `server.audit.signing_key_file` (64 hex characters: the 32-byte secret
//! key; mode 0600 or stricter, like API token files), or, when that is unset, from
//! `data_dir/audit-signing.key`, generated on the member's first start. What is signed is
//! [`head_message`]`(seq, hash)`; signatures and keys travel as lower-case hex.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use lattice_core::audit::head_message;
use serde::Serialize;

use crate::config::AuditConfig;

/// Name of the generated key file under `data_dir`.
pub const DEFAULT_KEY_FILE: &str = "audit-signing.key";

/// Why the signing key cannot be used; the member refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum SigningKeyError {
    #[error("server.audit.signing_key_file: cannot read {0}: {1}")]
    Unreadable(String, std::io::Error),
    #[error("server.audit.signing_key_file: refusing {path}: its mode is {mode:04o}, readable by others; run `chmod 600 {path}`")]
    Exposed { path: String, mode: u32 },
    #[error("server.audit.signing_key_file: {0} must hold the 32-byte Ed25519 secret key as 64 hex characters")]
    Malformed(String),
    #[error("cannot create the audit signing key {0}: {1}")]
    Create(String, std::io::Error),
    #[error("no random source for a new audit signing key: {0}")]
    Random(String),
}

/// A chain head with this member's signature, as the API answers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SignedHead {
    pub seq: u64,
    pub hash: String,
    pub signature: String,
    pub public_key: String,
}

pub struct AuditSigner {
    key: SigningKey,
    public_hex: String,
}

impl AuditSigner {
    /// The configured key, or the generated one under `data_dir` (created when missing).
    pub fn load_or_create(cfg: &AuditConfig, data_dir: &Path) -> Result<Self, SigningKeyError> {
        if let Some(path) = &cfg.signing_key_file {
            return Self::from_file(path);
        }
        let path = data_dir.join(DEFAULT_KEY_FILE);
        if path.exists() {
            return Self::from_file(&path);
        }
        let signer = Self::generate()?;
        write_key_file(&path, &signer.key).map_err(|e| SigningKeyError::Create(shown(&path), e))?;
        tracing::info!(
            path = %path.display(),
            public_key = %signer.public_hex,
            "generated the audit signing key; members of a multi-member cluster should share one \
             key file (server.audit.signing_key_file) so that every member signs with the same key"
        );
        Ok(signer)
    }

    /// Reads a key file: private (no group or other permission bits), 64 hex characters.
    pub fn from_file(path: &Path) -> Result<Self, SigningKeyError> {
        let meta =
            std::fs::metadata(path).map_err(|e| SigningKeyError::Unreadable(shown(path), e))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(SigningKeyError::Exposed {
                path: shown(path),
                mode,
            });
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| SigningKeyError::Unreadable(shown(path), e))?;
        let bytes: [u8; 32] = from_hex(text.trim())
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| SigningKeyError::Malformed(shown(path)))?;
        Ok(Self::from_secret(&bytes))
    }

    /// A new random key.
    pub fn generate() -> Result<Self, SigningKeyError> {
        let mut secret = [0u8; 32];
        getrandom::getrandom(&mut secret).map_err(|e| SigningKeyError::Random(e.to_string()))?;
        Ok(Self::from_secret(&secret))
    }

    pub fn from_secret(secret: &[u8; 32]) -> Self {
        let key = SigningKey::from_bytes(secret);
        let public_hex = to_hex(key.verifying_key().as_bytes());
        AuditSigner { key, public_hex }
    }

    /// The public key, hex.
    pub fn public_key(&self) -> &str {
        &self.public_hex
    }

    /// Signs the chain head `(seq, hash)`.
    pub fn sign_head(&self, seq: u64, hash: &str) -> SignedHead {
        let sig = self.key.sign(&head_message(seq, hash));
        SignedHead {
            seq,
            hash: hash.to_string(),
            signature: to_hex(&sig.to_bytes()),
            public_key: self.public_hex.clone(),
        }
    }
}

/// Whether `signature` (hex) is `public_key`'s (hex) signature of the head `(seq, hash)`.
pub fn verify_head(public_key: &str, seq: u64, hash: &str, signature: &str) -> bool {
    let Some(pk) = from_hex(public_key).and_then(|b| <[u8; 32]>::try_from(b).ok()) else {
        return false;
    };
    let Some(sig) = from_hex(signature).and_then(|b| <[u8; 64]>::try_from(b).ok()) else {
        return false;
    };
    let Ok(vk) = VerifyingKey::from_bytes(&pk) else {
        return false;
    };
    vk.verify(&head_message(seq, hash), &Signature::from_bytes(&sig))
        .is_ok()
}

fn write_key_file(path: &PathBuf, key: &SigningKey) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    writeln!(f, "{}", to_hex(key.as_bytes()))?;
    f.sync_all()
}

fn shown(path: &Path) -> String {
    path.display().to_string()
}

pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_head_verifies_with_the_public_key_and_nothing_else_does() {
        let s = AuditSigner::generate().unwrap();
        let h = s.sign_head(7, &"ab".repeat(32));
        assert_eq!(h.public_key, s.public_key());
        assert!(verify_head(&h.public_key, 7, &h.hash, &h.signature));
        assert!(!verify_head(&h.public_key, 8, &h.hash, &h.signature));
        assert!(!verify_head(
            &h.public_key,
            7,
            &"cd".repeat(32),
            &h.signature
        ));
        let other = AuditSigner::generate().unwrap();
        assert!(!verify_head(other.public_key(), 7, &h.hash, &h.signature));
        assert!(!verify_head(&h.public_key, 7, &h.hash, "zz"));
    }

    #[test]
    fn the_key_file_is_generated_private_then_reused_and_bad_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = AuditConfig::default();
        let a = AuditSigner::load_or_create(&cfg, dir.path()).unwrap();
        let path = dir.path().join(DEFAULT_KEY_FILE);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = AuditSigner::load_or_create(&cfg, dir.path()).unwrap();
        assert_eq!(a.public_key(), b.public_key());

        // The same key through signing_key_file.
        let with_file = AuditConfig {
            signing_key_file: Some(path.clone()),
            ..AuditConfig::default()
        };
        let c = AuditSigner::load_or_create(&with_file, Path::new("/nonexistent")).unwrap();
        assert_eq!(c.public_key(), a.public_key());

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = AuditSigner::from_file(&path).err().unwrap().to_string();
        assert!(e.contains("chmod 600"), "{e}");

        let bad = dir.path().join("bad.key");
        for text in ["", "xyz", &"0".repeat(62), &"g".repeat(64)] {
            std::fs::write(&bad, text).unwrap();
            std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).unwrap();
            let e = AuditSigner::from_file(&bad).err().unwrap().to_string();
            assert!(e.contains("64 hex characters"), "{text:?}: {e}");
        }
        let e = AuditSigner::from_file(&dir.path().join("missing"))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("cannot read"), "{e}");
    }
}
