//! The one error type of the key and cipher layers.

use std::path::PathBuf;

/// Why a key could not be loaded or a secret could not be sealed or opened; every message says what
/// to do next and never contains key material or plaintext.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The sealed value names a key this keyring does not hold.
    #[error(
        "the secret was sealed under vault key {key_id}, which is not loaded: it may have been rotated \
         away and retired; add that key back (ORCHEO_VAULT_KEY or the key file) to read it"
    )]
    UnknownKey {
        /// The id recorded in the sealed value.
        key_id: String,
    },
    /// Authentication failed: wrong key, tampered bytes, or a ciphertext moved to another row.
    #[error(
        "the ciphertext does not open under key {key_id} for {subject}: it was tampered with, moved \
         from another row, or the key is wrong"
    )]
    Decrypt {
        /// The key the ciphertext claims to be sealed under.
        key_id: String,
        /// What the ciphertext is bound to, e.g. `credential 7f3a version 2`.
        subject: String,
    },
    /// A sealed value's text form does not parse.
    #[error("malformed sealed value: {0}")]
    Malformed(String),
    /// The key file cannot be read, written or trusted.
    #[error("vault key file {}: {reason}", path.display())]
    KeyFile {
        /// The key file's path.
        path: PathBuf,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// The environment variable or passphrase does not give a usable key.
    #[error("{0}")]
    KeySource(String),
    /// A keyring operation that would lose access to data (retiring the active key, say).
    #[error("{0}")]
    Keyring(String),
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
}

/// Shorthand for results of the key and cipher layers.
pub type Result<T, E = VaultError> = std::result::Result<T, E>;

/// Fills `buf` from the operating system's CSPRNG.
pub(crate) fn random_fill(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|e| VaultError::Random(e.to_string()))
}
