//! argon2id password hashes in PHC string form (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`).
//!
//! The gateway stores only the PHC string; the parameters travel inside it, so a hash made
//! with stronger settings later still verifies here.

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;

/// Why a password could not be hashed (in practice: the OS random source failed).
#[derive(Debug)]
pub struct HashError(String);

impl std::fmt::Display for HashError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "could not hash the password: {}", self.0)
    }
}

impl std::error::Error for HashError {}

/// Hashes an admin password with argon2id, default parameters and a fresh random salt, for
/// the gateway to store (first boot, config, or a CLI command).
pub fn hash_password(plain: &str) -> Result<String, HashError> {
    Argon2::default()
        .hash_password(plain.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|error| HashError(error.to_string()))
}

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Match,
    Mismatch,
    /// The stored string is not a PHC hash this build understands; nobody can log in until
    /// it is set again.
    UnusableHash,
}

/// Whether a stored string looks like an argon2 PHC hash this build can verify; cheap, so
/// the admin pages can say "set the password again" before anyone types one.
pub fn is_usable_hash(phc: &str) -> bool {
    argon2::PasswordHash::new(phc)
        .is_ok_and(|hash| hash.algorithm.as_str().starts_with("argon2") && hash.hash.is_some())
}

/// Checks `plain` against a PHC string. CPU-heavy by design: call it off the async workers.
pub fn verify_password(plain: &str, phc: &str) -> Verdict {
    let hash = match argon2::PasswordHash::new(phc) {
        Ok(hash) => hash,
        Err(_) => return Verdict::UnusableHash,
    };
    match Argon2::default().verify_password(plain.as_bytes(), &hash) {
        Ok(()) => Verdict::Match,
        Err(argon2::password_hash::Error::PasswordInvalid) => Verdict::Mismatch,
        Err(_) => Verdict::UnusableHash,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(is_usable_hash(&hash));
        assert!(!hash.contains("correct horse"));
        assert_eq!(verify_password("correct horse", &hash), Verdict::Match);
        assert_eq!(verify_password("wrong horse", &hash), Verdict::Mismatch);
    }

    #[test]
    fn garbage_hashes_are_unusable_not_a_match() {
        assert!(!is_usable_hash("plaintext"));
        assert!(!is_usable_hash(
            "$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo"
        ));
        assert_eq!(verify_password("x", "plaintext"), Verdict::UnusableHash);
        assert_eq!(verify_password("x", ""), Verdict::UnusableHash);
        assert_eq!(
            verify_password("x", "$argon2id$v=19$m=19456,t=2,p=1$bad"),
            Verdict::UnusableHash
        );
    }
}
