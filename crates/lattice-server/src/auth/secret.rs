//! Token secrets and IDs: generation, and the checks on a secret a caller chooses. Hashing
//! and comparison are `lattice_core::acl::{secret_hash, same_secret}`.

/// A new random secret: `lat_` and 64 hex digits (256 bits from the OS).
pub fn generate() -> Result<String, getrandom::Error> {
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b)?;
    Ok(format!("lat_{}", hex(&b)))
}

/// A new public token ID: `tok-` and 16 hex digits.
pub fn new_id() -> Result<String, getrandom::Error> {
    let mut b = [0u8; 8];
    getrandom::getrandom(&mut b)?;
    Ok(format!("tok-{}", hex(&b)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Secrets a caller chooses (bootstrap with a given token) must be hard to guess.
pub fn check_chosen(secret: &str) -> Result<(), String> {
    if secret.len() < 16 || secret.len() > 256 {
        return Err("a token must be 16 to 256 characters".into());
    }
    if !secret.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("a token must be printable ASCII without spaces".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_ids_hashes() {
        let a = generate().unwrap();
        assert!(a.starts_with("lat_") && a.len() == 68);
        assert_ne!(a, generate().unwrap());
        let id = new_id().unwrap();
        assert!(id.starts_with("tok-") && id.len() == 20);
        assert!(check_chosen("short").is_err());
        assert!(check_chosen("with space inside!!").is_err());
        assert!(check_chosen(&a).is_ok());
    }
}
