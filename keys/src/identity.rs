//! `Identity`: a node's secret key, and the key file that holds it.
//!
//! A key file is two lines of text: a comment, then `tidings-secret-key-v1 ` and
//! the 32-byte ed25519 seed in base32. It is written with mode 0600 and, on Unix,
//! refused on load when its group or others may read or write it, as ssh does:
//! a secret key that others can read is no longer secret.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer, SigningKey};
use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

use crate::base32;
use crate::node_id::NodeId;
use crate::signing::{signed_message, Domain, FederationId, Signature};

const KEY_FILE_TAG: &str = "tidings-secret-key-v1";

/// Largest key file we read; a real one is under 200 bytes.
const MAX_KEY_FILE_BYTES: u64 = 4096;

/// A node's ed25519 secret key. Signs on the node's behalf; never printed.
pub struct Identity {
    key: SigningKey,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.node_id().short())
    }
}

/// Why a key file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file could not be opened, read or written.
    #[error("key file {path}: {error}")]
    Io { path: PathBuf, error: io::Error },
    /// The file is readable or writable by group or others.
    #[error(
        "key file {path} has mode {mode:04o}, so other users can read it; \
         a secret key must be private: run `chmod 600 {path}`"
    )]
    TooOpen { path: PathBuf, mode: u32 },
    /// The file is not a tidings key file.
    #[error("key file {path} is not a tidings secret key: {reason}")]
    Malformed { path: PathBuf, reason: String },
    /// Refusing to replace an existing key.
    #[error("key file {path} already exists; refusing to overwrite a secret key (move it away first, or pass --force)")]
    Exists { path: PathBuf },
}

impl Identity {
    /// A new random identity.
    pub fn generate<R: CryptoRngCore + ?Sized>(rng: &mut R) -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(seed.as_mut());
        Self::from_seed(&seed)
    }

    /// The identity with this ed25519 seed (for test fixtures and key files).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(seed),
        }
    }

    /// The public identity.
    pub fn node_id(&self) -> NodeId {
        NodeId::from_bytes(self.key.verifying_key().to_bytes())
    }

    /// The secret seed, for exporting to other formats (TLS keys). Handle with care.
    pub fn seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.key.to_bytes())
    }

    /// Signs `message` for `domain` in `federation`.
    pub fn sign(&self, domain: Domain, federation: &FederationId, message: &[u8]) -> Signature {
        let signed = signed_message(domain, federation, message);
        Signature(self.key.sign(&signed).to_bytes())
    }

    /// Loads a key file, refusing one that others may read.
    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        let io_error = |error| KeyFileError::Io {
            path: path.to_path_buf(),
            error,
        };
        let metadata = fs::metadata(path).map_err(io_error)?;
        check_private(path, &metadata)?;
        if metadata.len() > MAX_KEY_FILE_BYTES {
            return Err(malformed(path, "file is too large to be a key"));
        }
        let text = Zeroizing::new(fs::read_to_string(path).map_err(io_error)?);
        let seed = parse_key_text(&text).map_err(|reason| malformed(path, reason))?;
        Ok(Self::from_seed(&seed))
    }

    /// Writes the key file with mode 0600. Refuses to replace a file unless `overwrite`.
    pub fn save(&self, path: &Path, overwrite: bool) -> Result<(), KeyFileError> {
        let io_error = |error| KeyFileError::Io {
            path: path.to_path_buf(),
            error,
        };
        let mut options = fs::OpenOptions::new();
        options.write(true);
        if overwrite {
            options.create(true).truncate(true);
        } else {
            options.create_new(true);
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(|error| {
            if error.kind() == io::ErrorKind::AlreadyExists {
                KeyFileError::Exists {
                    path: path.to_path_buf(),
                }
            } else {
                io_error(error)
            }
        })?;
        // An existing file keeps its old mode when truncated: tighten it.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(fs::Permissions::from_mode(0o600))
                .map_err(io_error)?;
        }
        let seed = self.seed();
        let text = Zeroizing::new(format!(
            "# tidings node secret key for {} (keep private: mode 0600)\n{KEY_FILE_TAG} {}\n",
            self.node_id(),
            base32::encode(seed.as_ref())
        ));
        file.write_all(text.as_bytes()).map_err(io_error)?;
        file.sync_all().map_err(io_error)
    }
}

fn malformed(path: &Path, reason: &str) -> KeyFileError {
    KeyFileError::Malformed {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

#[cfg(unix)]
fn check_private(path: &Path, metadata: &fs::Metadata) -> Result<(), KeyFileError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::TooOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path, _metadata: &fs::Metadata) -> Result<(), KeyFileError> {
    Ok(())
}

fn parse_key_text(text: &str) -> Result<[u8; 32], &'static str> {
    let mut found = None;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some(encoded) = line.strip_prefix(KEY_FILE_TAG) else {
            return Err("expected a line starting with `tidings-secret-key-v1`");
        };
        if found.is_some() {
            return Err("more than one key line");
        }
        found = Some(
            base32::decode_exact::<32>(encoded.trim())
                .map_err(|_| "the key is not 52 base32 characters")?,
        );
    }
    found.ok_or("no key line")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;

    fn identity() -> Identity {
        Identity::generate(&mut rand_chacha::ChaCha20Rng::seed_from_u64(1))
    }

    #[test]
    fn save_then_load_gives_the_same_identity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        let original = identity();
        original.save(&path, false).unwrap();
        let loaded = Identity::load(&path).unwrap();
        assert_eq!(loaded.node_id(), original.node_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn refuses_to_overwrite_without_permission() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        identity().save(&path, false).unwrap();
        let error = identity().save(&path, false).unwrap_err();
        assert!(matches!(error, KeyFileError::Exists { .. }), "{error}");
        identity().save(&path, true).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn refuses_a_world_readable_key_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        identity().save(&path, false).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let error = Identity::load(&path).unwrap_err();
        assert!(matches!(error, KeyFileError::TooOpen { mode: 0o644, .. }));
        let message = error.to_string();
        assert!(message.contains("chmod 600"), "{message}");
        assert!(message.contains("node.key"), "{message}");
        // Group-writable is refused as well.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o620)).unwrap();
        assert!(matches!(
            Identity::load(&path),
            Err(KeyFileError::TooOpen { .. })
        ));
    }

    #[test]
    fn missing_and_malformed_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("absent.key");
        let error = Identity::load(&missing).unwrap_err();
        assert!(matches!(error, KeyFileError::Io { .. }));
        assert!(error.to_string().contains("absent.key"));

        let garbage = dir.path().join("garbage.key");
        identity().save(&garbage, false).unwrap();
        fs::write(&garbage, "hello\n").unwrap();
        assert!(matches!(
            Identity::load(&garbage),
            Err(KeyFileError::Malformed { .. })
        ));
    }

    #[test]
    fn key_text_parsing() {
        let seed = [3u8; 32];
        let line = format!("{KEY_FILE_TAG} {}", base32::encode(&seed));
        assert_eq!(parse_key_text(&format!("# c\n{line}\n")), Ok(seed));
        assert!(parse_key_text("").is_err());
        assert!(parse_key_text(&format!("{line}\n{line}")).is_err());
        assert!(parse_key_text(&format!("{KEY_FILE_TAG} abc")).is_err());
    }
}
