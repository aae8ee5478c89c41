//! Secrets at rest: the master key, AES-256-GCM encryption of API keys, and the admin
//! token.
//!
//! Ciphertexts are `v1:` + base64(nonce ‖ ciphertext ‖ tag), with a fresh random
//! 96-bit nonce per value. A wrong master key fails authentication, so it is reported
//! as [`SecretError::WrongKey`] and never yields garbage.

use std::{fmt, io::Write, path::Path};

use aes_gcm::{
    Aes256Gcm, KeyInit, Nonce,
    aead::{Aead, AeadCore, OsRng},
};
use base64::{Engine, engine::general_purpose::STANDARD as B64};
use rand::RngCore;

const PREFIX: &str = "v1:";
const NONCE_LEN: usize = 12;

/// Why a secret could not be loaded, encrypted or decrypted.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The master key is not base64 of exactly 32 bytes.
    #[error("master key must be base64 of 32 bytes ({0})")]
    BadKey(String),
    /// A ciphertext did not authenticate under this master key.
    #[error("cannot decrypt: the master key is not the one this value was encrypted with")]
    WrongKey,
    /// A stored ciphertext is not in the `v1:` format.
    #[error("stored secret is not in the v1 format")]
    Malformed,
    /// A token is too short to be a credential (an empty file after a crashed first
    /// start, an empty mounted secret).
    #[error(
        "the token in {path} has {len} characters; at least {MIN_TOKEN_CHARS} are needed (remove the file to have one generated)"
    )]
    WeakToken {
        /// The file.
        path: String,
        /// How many characters it holds.
        len: usize,
    },
    /// Reading or writing a key file failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// The 256-bit master key that encrypts API keys at rest.
#[derive(Clone)]
pub struct MasterKey {
    cipher: Aes256Gcm,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(…)")
    }
}

impl MasterKey {
    /// A new random key and its base64 form (to be stored by the caller).
    pub fn generate() -> (Self, String) {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let encoded = B64.encode(bytes);
        (Self::from_bytes(&bytes), encoded)
    }

    /// Parses base64 of 32 bytes (surrounding whitespace ignored).
    ///
    /// # Errors
    /// [`SecretError::BadKey`].
    pub fn from_base64(text: &str) -> Result<Self, SecretError> {
        let bytes = B64
            .decode(text.trim())
            .map_err(|e| SecretError::BadKey(format!("not base64: {e}")))?;
        if bytes.len() != 32 {
            return Err(SecretError::BadKey(format!(
                "decodes to {} bytes",
                bytes.len()
            )));
        }
        Ok(Self::from_bytes(&bytes))
    }

    fn from_bytes(bytes: &[u8]) -> Self {
        let key = aes_gcm::Key::<Aes256Gcm>::from_slice(bytes);
        Self {
            cipher: Aes256Gcm::new(key),
        }
    }

    /// Encrypts `plaintext` with a fresh nonce.
    pub fn encrypt(&self, plaintext: &str) -> String {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        // Encryption with a valid key and nonce cannot fail for inputs this small.
        let ciphertext = self
            .cipher
            .encrypt(&nonce, plaintext.as_bytes())
            .unwrap_or_default();
        let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        format!("{PREFIX}{}", B64.encode(out))
    }

    /// Decrypts a value made by [`MasterKey::encrypt`].
    ///
    /// # Errors
    /// [`SecretError::Malformed`] or [`SecretError::WrongKey`].
    pub fn decrypt(&self, stored: &str) -> Result<String, SecretError> {
        let body = stored.strip_prefix(PREFIX).ok_or(SecretError::Malformed)?;
        let bytes = B64.decode(body).map_err(|_| SecretError::Malformed)?;
        if bytes.len() < NONCE_LEN + 16 {
            return Err(SecretError::Malformed);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let plaintext = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|_| SecretError::WrongKey)?;
        String::from_utf8(plaintext).map_err(|_| SecretError::Malformed)
    }

    /// Reads the key from `path`, or, when the file is missing and `may_generate`,
    /// generates one and writes it with mode 0600. Returns the key and whether it
    /// was generated.
    ///
    /// # Errors
    /// [`SecretError::Io`] or [`SecretError::BadKey`].
    pub fn load_or_generate(path: &Path, may_generate: bool) -> Result<(Self, bool), SecretError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok((Self::from_base64(&text)?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && may_generate => {
                let (key, encoded) = Self::generate();
                write_private_file(path, &encoded)?;
                Ok((key, true))
            }
            Err(source) => Err(SecretError::Io {
                path: path.display().to_string(),
                source,
            }),
        }
    }
}

/// `len` random characters of `[0-9A-Za-z]` (request ids, tenant keys).
pub fn random_alphanumeric(len: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// The fewest characters an admin token may have, whatever its source.
pub const MIN_TOKEN_CHARS: usize = 16;

/// Reads a token from `path`, or generates a random one (0600) when it is missing.
/// Returns the token and whether it was generated. A file holding fewer than
/// [`MIN_TOKEN_CHARS`] characters is refused, never taken as "no token".
///
/// # Errors
/// [`SecretError::Io`], or [`SecretError::WeakToken`].
pub fn load_or_generate_token(path: &Path) -> Result<(String, bool), SecretError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let token = text.trim().to_owned();
            let len = token.chars().count();
            if len < MIN_TOKEN_CHARS {
                return Err(SecretError::WeakToken {
                    path: path.display().to_string(),
                    len,
                });
            }
            Ok((token, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 24];
            rand::rng().fill_bytes(&mut bytes);
            let token = format!(
                "sya_{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
            );
            write_private_file(path, &token)?;
            Ok((token, true))
        }
        Err(source) => Err(SecretError::Io {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// Writes `contents` to a new file readable only by its owner: into a temporary file
/// beside it (0600, flushed to disk), then renamed into place, so a crash leaves either
/// no file or the whole one — never an empty token file.
fn write_private_file(path: &Path, contents: &str) -> Result<(), SecretError> {
    let io = |source| SecretError::Io {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".tmp-{}", random_alphanumeric(8)));
    let temporary = std::path::PathBuf::from(temporary);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = (|| {
        let mut file = options.open(&temporary)?;
        file.write_all(contents.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written.map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_fresh_nonces() {
        let (key, _) = MasterKey::generate();
        let a = key.encrypt("sk-secret-value-1234");
        let b = key.encrypt("sk-secret-value-1234");
        assert_ne!(a, b, "every encryption uses a fresh nonce");
        assert!(!a.contains("sk-secret"));
        assert_eq!(key.decrypt(&a).unwrap(), "sk-secret-value-1234");
    }

    #[test]
    fn wrong_key_is_a_clear_error_never_garbage() {
        let (key, _) = MasterKey::generate();
        let (other, _) = MasterKey::generate();
        let stored = key.encrypt("sk-secret-value-1234");
        assert!(matches!(other.decrypt(&stored), Err(SecretError::WrongKey)));
        assert!(matches!(
            key.decrypt("plaintext"),
            Err(SecretError::Malformed)
        ));
        assert!(matches!(
            key.decrypt("v1:AAAA"),
            Err(SecretError::Malformed)
        ));
    }

    #[test]
    fn key_parsing_checks_length() {
        let err = MasterKey::from_base64("AAAA").unwrap_err().to_string();
        assert_eq!(
            err,
            "master key must be base64 of 32 bytes (decodes to 3 bytes)"
        );
        let (_, encoded) = MasterKey::generate();
        assert!(MasterKey::from_base64(&format!("{encoded}\n")).is_ok());
    }

    #[test]
    fn token_files_are_written_whole_and_short_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.token");
        let (token, generated) = load_or_generate_token(&path).unwrap();
        assert!(generated && token.len() >= MIN_TOKEN_CHARS);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Only the token file is left (the temporary one was renamed into place).
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert_eq!(load_or_generate_token(&path).unwrap(), (token, false));
        for short in ["", "\n", "   \n", "short-token"] {
            std::fs::write(&path, short).unwrap();
            let error = load_or_generate_token(&path).unwrap_err();
            assert!(matches!(error, SecretError::WeakToken { .. }), "{short:?}");
            assert!(error.to_string().contains("at least 16"), "{error}");
        }
    }

    #[test]
    fn generated_key_file_is_private_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/master.key");
        let (key, generated) = MasterKey::load_or_generate(&path, true).unwrap();
        assert!(generated);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (again, generated) = MasterKey::load_or_generate(&path, true).unwrap();
        assert!(!generated);
        assert_eq!(again.decrypt(&key.encrypt("x")).unwrap(), "x");
        let missing = dir.path().join("none.key");
        assert!(matches!(
            MasterKey::load_or_generate(&missing, false),
            Err(SecretError::Io { .. })
        ));
    }
}
