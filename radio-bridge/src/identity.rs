//! ed25519 identities and their key files.
//!
//! A key file holds the 32-byte ed25519 secret seed as 64 lowercase hex
//! digits and a newline, readable only by its owner (mode 0600). Text rather
//! than raw bytes so a technician can tell an empty or truncated file from a
//! good one with `cat`, and so a stray newline added by an editor does no harm.

use std::fs;
use std::io::Write;
use std::path::Path;

use ed25519_dalek::SigningKey;

use crate::frame::DeviceId;

/// A device's or the gateway's signing identity.
#[derive(Clone)]
pub struct Identity {
    key: SigningKey,
}

impl std::fmt::Debug for Identity {
    /// Shows only the public id, so a debug print never leaks the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity({})", self.id_hex())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("key file {path} is not a key: expected 64 hex digits (an ed25519 secret seed)")]
    Format { path: String },
    #[error("cannot write key file {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

impl Identity {
    /// A fresh identity from the operating system's random source.
    pub fn generate() -> Identity {
        let seed: [u8; 32] = rand::random();
        Identity::from_seed(seed)
    }

    /// A deterministic identity; used by the simulator so that runs with
    /// the same `--seed` produce the same device ids.
    pub fn from_seed(seed: [u8; 32]) -> Identity {
        Identity {
            key: SigningKey::from_bytes(&seed),
        }
    }

    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    pub fn device_id(&self) -> DeviceId {
        self.key.verifying_key().to_bytes()
    }

    pub fn id_hex(&self) -> String {
        hex::encode(self.device_id())
    }

    pub fn load(path: &Path) -> Result<Identity, IdentityError> {
        let text = fs::read_to_string(path).map_err(|source| IdentityError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let seed = hex::decode(text.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
            .ok_or_else(|| IdentityError::Format {
                path: path.display().to_string(),
            })?;
        Ok(Identity::from_seed(seed))
    }

    /// Writes the key file, refusing to overwrite an existing one: replacing
    /// an identity by accident would orphan every device that trusts it.
    pub fn save_new(&self, path: &Path) -> Result<(), IdentityError> {
        let err = |source| IdentityError::Write {
            path: path.display().to_string(),
            source,
        };
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(err)?;
        writeln!(file, "{}", hex::encode(self.key.to_bytes())).map_err(err)?;
        file.sync_all().map_err(err)
    }

    /// Loads the key file, creating it with a new identity on first boot.
    pub fn load_or_create(path: &Path) -> Result<Identity, IdentityError> {
        if path.exists() {
            return Identity::load(path);
        }
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|source| IdentityError::Write {
                path: path.display().to_string(),
                source,
            })?;
        }
        let identity = Identity::generate();
        identity.save_new(path)?;
        Ok(identity)
    }
}
