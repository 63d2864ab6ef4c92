//! Master keys and the keyring: where keys come from (environment, key file, passphrase), how they
//! are named, and how rotation adds and retires them.
//!
//! A key's id is derived from the key itself (HKDF-SHA256, 8 bytes, hex), so the same key always has
//! the same id wherever it is loaded from, and the id reveals nothing about the key.

use std::fmt;
use std::fs;
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::{Zeroize as _, Zeroizing};

use crate::encode;
use crate::error::{random_fill, Result, VaultError};

/// The environment variable that holds the master key(s); named in every error about it.
pub const ENV_VAR: &str = "ORCHEO_VAULT_KEY";
/// Length of a master key in bytes (AES-256).
pub const KEY_LEN: usize = 32;
/// Shortest salt accepted for passphrase derivation, so one passphrase never yields a guessable key.
pub const MIN_SALT_LEN: usize = 16;
/// Shortest passphrase accepted: the passphrase guards every stored secret.
pub const MIN_PASSPHRASE_LEN: usize = 8;
/// Argon2id memory cost in KiB (OWASP's minimum recommendation for Argon2id).
pub const ARGON2_MEMORY_KIB: u32 = 19_456;
/// Argon2id passes over memory.
pub const ARGON2_ITERATIONS: u32 = 2;
/// Argon2id lanes.
pub const ARGON2_PARALLELISM: u32 = 1;
/// Key file format version this code reads and writes.
pub const KEY_FILE_VERSION: u32 = 1;
/// Largest key file read: a key file holds a handful of keys, anything bigger is not one.
const MAX_KEY_FILE_BYTES: u64 = 1 << 20;

/// One 256-bit master key and its derived id; the bytes are wiped from memory when dropped.
#[derive(Clone)]
pub struct MasterKey {
    id: String,
    bytes: Zeroizing<[u8; KEY_LEN]>,
    created_at: Option<DateTime<Utc>>,
}

impl MasterKey {
    /// Wraps raw key bytes (the caller should wipe its own copy).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> MasterKey {
        let bytes = Zeroizing::new(bytes);
        MasterKey {
            id: key_id(&bytes),
            bytes,
            created_at: None,
        }
    }

    /// A fresh random key from the operating system's CSPRNG.
    pub fn generate() -> Result<MasterKey> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        random_fill(bytes.as_mut())?;
        let mut key = MasterKey::from_bytes(*bytes);
        key.created_at = Some(Utc::now());
        Ok(key)
    }

    /// Derives a key from a passphrase with Argon2id (m=19456 KiB, t=2, p=1); the same passphrase
    /// and salt always give the same key.
    pub fn from_passphrase(passphrase: &str, salt: &[u8]) -> Result<MasterKey> {
        if passphrase.chars().count() < MIN_PASSPHRASE_LEN {
            return Err(VaultError::KeySource(format!(
                "the vault passphrase is too short: use at least {MIN_PASSPHRASE_LEN} characters \
                 (a long random phrase is best)"
            )));
        }
        if salt.len() < MIN_SALT_LEN {
            return Err(VaultError::KeySource(format!(
                "the vault passphrase salt is {} bytes; it must be at least {MIN_SALT_LEN} random bytes",
                salt.len()
            )));
        }
        let params = argon2::Params::new(
            ARGON2_MEMORY_KIB,
            ARGON2_ITERATIONS,
            ARGON2_PARALLELISM,
            Some(KEY_LEN),
        )
        .map_err(|e| VaultError::KeySource(format!("Argon2id parameters rejected: {e}")))?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = Zeroizing::new([0u8; KEY_LEN]);
        argon
            .hash_password_into(passphrase.as_bytes(), salt, out.as_mut())
            .map_err(|e| VaultError::KeySource(format!("Argon2id derivation failed: {e}")))?;
        Ok(MasterKey::from_bytes(*out))
    }

    /// The key's stable id (16 hex characters), recorded in every value sealed under it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// When the key was generated, where known (keys from the key file and [`MasterKey::generate`]).
    pub fn created_at(&self) -> Option<DateTime<Utc>> {
        self.created_at
    }

    /// The key as standard base64, for an operator to copy into `ORCHEO_VAULT_KEY` or a backup.
    pub fn export_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(encode::b64(self.bytes.as_ref()))
    }

    /// The raw key bytes, for subkey derivation inside this crate only.
    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("id", &self.id)
            .field("bytes", &"<redacted>")
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// The id of a key: hex of the first 8 bytes of HKDF-SHA256 over it (one-way, so safe to show).
fn key_id(bytes: &[u8; KEY_LEN]) -> String {
    let hk = Hkdf::<Sha256>::new(Some(b"orcheo-vault"), bytes);
    let mut out = [0u8; 8];
    // 8 bytes is far below HKDF-SHA256's 8160-byte limit, so expand cannot fail.
    let _ = hk.expand(b"orcheo-vault/v1/key-id", &mut out);
    encode::hex(&out)
}

/// Where the master key(s) come from; `Debug` never shows the key or passphrase.
pub enum KeySource {
    /// The value of `ORCHEO_VAULT_KEY`: comma-separated keys, the first one active.
    Env(Zeroizing<String>),
    /// A key file; created with a fresh random key (mode 0600) when it does not exist.
    File(PathBuf),
    /// A passphrase stretched with Argon2id over `salt` (at least 16 bytes).
    Passphrase {
        /// The operator's passphrase.
        passphrase: Zeroizing<String>,
        /// Random salt stored beside the data (not secret, but must not change).
        salt: Vec<u8>,
    },
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Env(_) => f.write_str("KeySource::Env(<redacted>)"),
            KeySource::File(path) => f.debug_tuple("KeySource::File").field(path).finish(),
            KeySource::Passphrase { salt, .. } => f
                .debug_struct("KeySource::Passphrase")
                .field("passphrase", &"<redacted>")
                .field("salt_len", &salt.len())
                .finish(),
        }
    }
}

/// The keys a process holds: one active key that seals, plus older keys kept to open what they sealed.
#[derive(Clone)]
pub struct Keyring {
    active: String,
    keys: Vec<MasterKey>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("active", &self.active)
            .field("keys", &self.ids().collect::<Vec<_>>())
            .finish()
    }
}

impl Keyring {
    /// A keyring holding one key, which is active.
    pub fn new(key: MasterKey) -> Keyring {
        Keyring {
            active: key.id.clone(),
            keys: vec![key],
        }
    }

    /// The key new secrets are sealed under.
    pub fn active(&self) -> &MasterKey {
        // The active id always names a held key: `new` starts that way, `add`/`set_active` only
        // point at held keys and `retire` refuses the active one. The fallback is unreachable.
        self.get(&self.active).unwrap_or(&self.keys[0])
    }

    /// The key with this id, if held.
    pub fn get(&self, id: &str) -> Option<&MasterKey> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// Every held key, the order they were added in.
    pub fn keys(&self) -> impl Iterator<Item = &MasterKey> {
        self.keys.iter()
    }

    /// Every held key's id, the order they were added in.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.id.as_str())
    }

    /// Adds a key (a no-op when one with the same id is held) and optionally makes it active;
    /// returns whether the key was new.
    pub fn add(&mut self, key: MasterKey, make_active: bool) -> bool {
        let id = key.id.clone();
        let new = self.get(&id).is_none();
        if new {
            self.keys.push(key);
        }
        if make_active {
            self.active = id;
        }
        new
    }

    /// Makes a held key the one new secrets are sealed under.
    pub fn set_active(&mut self, id: &str) -> Result<()> {
        if self.get(id).is_none() {
            return Err(VaultError::Keyring(format!(
                "cannot make vault key {id} active: the keyring does not hold it (held: {})",
                self.ids().collect::<Vec<_>>().join(", ")
            )));
        }
        self.active = id.to_string();
        Ok(())
    }

    /// Removes a key after everything sealed under it has been resealed; refuses the active key.
    pub fn retire(&mut self, id: &str) -> Result<MasterKey> {
        if id == self.active {
            return Err(VaultError::Keyring(format!(
                "refusing to retire vault key {id}: it is the active key; add and activate a new key \
                 first, reseal every secret, then retire this one"
            )));
        }
        match self.keys.iter().position(|k| k.id == id) {
            Some(i) => Ok(self.keys.remove(i)),
            None => Err(VaultError::Keyring(format!(
                "cannot retire vault key {id}: the keyring does not hold it"
            ))),
        }
    }

    /// Loads the keyring from any source; a `File` source that does not exist yet is created.
    pub fn load(source: &KeySource) -> Result<Keyring> {
        match source {
            KeySource::Env(value) => Keyring::from_env_value(value),
            KeySource::File(path) => Keyring::load_or_create_file(path).map(|(k, _)| k),
            KeySource::Passphrase { passphrase, salt } => {
                Ok(Keyring::new(MasterKey::from_passphrase(passphrase, salt)?))
            }
        }
    }

    /// Parses the `ORCHEO_VAULT_KEY` value: comma-separated keys, each standard or URL-safe base64
    /// (padded or not) or 64 hex characters of 32 bytes, the first active. Errors never echo it.
    pub fn from_env_value(value: &str) -> Result<Keyring> {
        // Empty entries (a trailing comma, say) are skipped.
        let entries: Vec<&str> = value
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect();
        if entries.is_empty() {
            return Err(VaultError::KeySource(format!(
                "{ENV_VAR} is set but empty: {}",
                ENV_FORMAT
            )));
        }
        let count = entries.len();
        let mut ring: Option<Keyring> = None;
        for (i, entry) in entries.iter().enumerate() {
            let key = parse_env_key(entry).ok_or_else(|| {
                VaultError::KeySource(format!(
                    "{ENV_VAR} entry {} of {count} is not a 32-byte key ({} characters): {}",
                    i + 1,
                    entry.chars().count(),
                    ENV_FORMAT
                ))
            })?;
            match ring.as_mut() {
                None => ring = Some(Keyring::new(key)),
                Some(ring) => {
                    ring.add(key, false);
                }
            }
        }
        ring.ok_or_else(|| VaultError::KeySource(format!("{ENV_VAR} holds no key: {ENV_FORMAT}")))
    }

    /// Reads a key file, refusing one that group or other users may read or write.
    pub fn load_file(path: &Path) -> Result<Keyring> {
        let bad = |reason: String| VaultError::KeyFile {
            path: path.to_path_buf(),
            reason,
        };
        let file = fs::File::open(path).map_err(|e| bad(io_reason("cannot be opened", &e)))?;
        let meta = file
            .metadata()
            .map_err(|e| bad(io_reason("cannot be inspected", &e)))?;
        if !meta.is_file() {
            return Err(bad(
                "is not a regular file; point the key file setting at a file".into(),
            ));
        }
        check_private(path, &meta)?;
        if meta.len() > MAX_KEY_FILE_BYTES {
            return Err(bad(format!(
                "is {} bytes, too large to be an Orcheo key file",
                meta.len()
            )));
        }
        let mut text = Zeroizing::new(String::new());
        file.take(MAX_KEY_FILE_BYTES)
            .read_to_string(&mut text)
            .map_err(|e| bad(io_reason("cannot be read", &e)))?;
        parse_key_file(&text).map_err(bad)
    }

    /// Loads the key file, or creates it (mode 0600, fresh random key) when it does not exist;
    /// returns the keyring and whether the file was created now (worth telling the operator to
    /// back it up).
    pub fn load_or_create_file(path: &Path) -> Result<(Keyring, bool)> {
        match fs::symlink_metadata(path) {
            Ok(_) => return Keyring::load_file(path).map(|k| (k, false)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(VaultError::KeyFile {
                    path: path.to_path_buf(),
                    reason: io_reason("cannot be inspected", &e),
                });
            }
        }
        let ring = Keyring::new(MasterKey::generate()?);
        let text = ring.key_file_text()?;
        match create_new_file(path, text.as_bytes()) {
            Ok(()) => Ok((ring, true)),
            // Another process created it between our check and our write: use theirs.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                Keyring::load_file(path).map(|k| (k, false))
            }
            Err(e) => Err(VaultError::KeyFile {
                path: path.to_path_buf(),
                reason: io_reason("cannot be created", &e),
            }),
        }
    }

    /// Writes the keyring to a key file atomically (temporary file with mode 0600, then rename).
    pub fn save_file(&self, path: &Path) -> Result<()> {
        let text = self.key_file_text()?;
        replace_file(path, text.as_bytes()).map_err(|e| VaultError::KeyFile {
            path: path.to_path_buf(),
            reason: io_reason("cannot be written", &e),
        })
    }

    /// The key file's JSON text (holds key material, so wiped on drop).
    fn key_file_text(&self) -> Result<Zeroizing<String>> {
        let doc = KeyFileDoc {
            version: KEY_FILE_VERSION,
            active: self.active.clone(),
            keys: self
                .keys
                .iter()
                .map(|k| KeyFileEntry {
                    id: k.id.clone(),
                    key: encode::b64(k.bytes.as_ref()),
                    created_at: Some(
                        k.created_at
                            .unwrap_or_else(Utc::now)
                            .to_rfc3339_opts(SecondsFormat::Secs, true),
                    ),
                })
                .collect(),
        };
        let text = serde_json::to_string_pretty(&doc);
        let mut doc = doc;
        for entry in &mut doc.keys {
            entry.key.zeroize();
        }
        text.map(|mut t| {
            t.push('\n');
            Zeroizing::new(t)
        })
        .map_err(|e| VaultError::KeySource(format!("cannot serialise the key file: {e}")))
    }
}

/// The accepted `ORCHEO_VAULT_KEY` format, quoted in every error about it.
const ENV_FORMAT: &str =
    "expected one or more comma-separated keys (the first is active), each 32 \
    random bytes written as base64 (44 characters, standard or URL-safe, e.g. from `openssl rand \
    -base64 32`) or as 64 hex characters";

fn parse_env_key(entry: &str) -> Option<MasterKey> {
    let bytes = Zeroizing::new(if entry.len() == 2 * KEY_LEN {
        encode::unhex(entry).or_else(|| encode::unb64_any(entry))?
    } else {
        encode::unb64_any(entry)?
    });
    let array: [u8; KEY_LEN] = bytes.as_slice().try_into().ok()?;
    Some(MasterKey::from_bytes(array))
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFileDoc {
    version: u32,
    active: String,
    keys: Vec<KeyFileEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFileEntry {
    id: String,
    key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    created_at: Option<String>,
}

/// Parses a key file's text; the error is the reason only (the caller adds the path).
fn parse_key_file(text: &str) -> std::result::Result<Keyring, String> {
    let mut doc: KeyFileDoc = serde_json::from_str(text).map_err(|e| {
        // serde's messages can quote the offending value, which may be key material: say only
        // what kind of problem it is and where.
        let what = match e.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                "is not valid JSON"
            }
            _ => "does not have the key file's shape",
        };
        format!(
            "{what} (line {}, column {}); expected {{\"version\":1,\"active\":\"<id>\",\"keys\":[{{\"id\":\"<id>\",\"key\":\"<base64>\",\"created_at\":\"<RFC 3339>\"}}]}}",
            e.line(),
            e.column()
        )
    })?;
    let result = key_file_to_ring(&doc);
    for entry in &mut doc.keys {
        entry.key.zeroize();
    }
    result
}

fn key_file_to_ring(doc: &KeyFileDoc) -> std::result::Result<Keyring, String> {
    if doc.version != KEY_FILE_VERSION {
        return Err(format!(
            "has format version {}, but this Orcheo reads version {KEY_FILE_VERSION}",
            doc.version
        ));
    }
    if doc.keys.is_empty() {
        return Err("holds no keys".into());
    }
    let mut keys = Vec::with_capacity(doc.keys.len());
    for (i, entry) in doc.keys.iter().enumerate() {
        let bytes = Zeroizing::new(encode::unb64_any(&entry.key).unwrap_or_default());
        let array: [u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| {
            format!(
                "key entry {} (id {}) is not base64 of {KEY_LEN} bytes",
                i + 1,
                entry.id
            )
        })?;
        let mut key = MasterKey::from_bytes(array);
        if key.id != entry.id {
            return Err(format!(
                "key entry {} says id {} but its key has id {}: the file was edited or corrupted",
                i + 1,
                entry.id,
                key.id
            ));
        }
        if let Some(created) = &entry.created_at {
            let at = DateTime::parse_from_rfc3339(created).map_err(|_| {
                format!(
                    "key entry {} (id {}) has created_at {created:?}, which is not an RFC 3339 time",
                    i + 1,
                    entry.id
                )
            })?;
            key.created_at = Some(at.with_timezone(&Utc));
        }
        keys.push(key);
    }
    let mut ring: Option<Keyring> = None;
    for key in keys {
        match ring.as_mut() {
            None => ring = Some(Keyring::new(key)),
            Some(r) => {
                r.add(key, false);
            }
        }
    }
    let mut ring = ring.ok_or_else(|| "holds no keys".to_string())?;
    ring.set_active(&doc.active).map_err(|_| {
        format!(
            "names {} as the active key, but holds no key with that id",
            doc.active
        )
    })?;
    Ok(ring)
}

fn io_reason(what: &str, e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => format!("{what}: it does not exist"),
        io::ErrorKind::PermissionDenied => {
            format!("{what}: permission denied (the server's user must own the file)")
        }
        _ => format!("{what}: {e}"),
    }
}

#[cfg(unix)]
fn check_private(path: &Path, meta: &fs::Metadata) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(VaultError::KeyFile {
            path: path.to_path_buf(),
            reason: format!(
                "is accessible by group or other users (mode {mode:04o}); a key file must be \
                 private to its owner: run `chmod 600 {}`",
                path.display()
            ),
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path, _meta: &fs::Metadata) -> Result<()> {
    Ok(())
}

/// Opens a new file that only the owner may read and write; fails if it exists.
fn open_private_new(path: &Path) -> io::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options.open(path)
}

/// Makes the parent directory (mode 0700 where created) so a first start in a fresh data dir works.
fn ensure_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.exists() => {
            let mut builder = fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::DirBuilderExt as _;
                builder.mode(0o700);
            }
            builder.create(dir)
        }
        _ => Ok(()),
    }
}

/// A temporary sibling of `path`, unique per call, so a crash never leaves a half-written key file.
fn temp_sibling(path: &Path) -> io::Result<PathBuf> {
    let mut tag = [0u8; 8];
    random_fill(&mut tag).map_err(io::Error::other)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "vault-key".into());
    Ok(path.with_file_name(format!(".{name}.tmp-{}", encode::hex(&tag))))
}

/// Writes `bytes` to a new private temporary file beside `path` and syncs it.
fn write_temp(path: &Path, bytes: &[u8]) -> io::Result<PathBuf> {
    ensure_parent(path)?;
    let tmp = temp_sibling(path)?;
    let written = open_private_new(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    match written {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Creates `path` with `bytes`, complete or not at all, and never over an existing file: the full
/// temporary file is hard-linked into place (atomic, fails if `path` exists). Where hard links are
/// unsupported it falls back to an exclusive create.
fn create_new_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = write_temp(path, bytes)?;
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            sync_parent(path);
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
        Err(_) => {
            let mut f = open_private_new(path)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            sync_parent(path);
            Ok(())
        }
    }
}

/// Replaces `path` with `bytes` atomically (temporary file, then rename).
fn replace_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = write_temp(path, bytes)?;
    match fs::rename(&tmp, path) {
        Ok(()) => {
            sync_parent(path);
            Ok(())
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Flushes the directory entry so the new name survives a crash (best effort: not every platform
/// can open a directory).
fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> MasterKey {
        MasterKey::from_bytes([byte; KEY_LEN])
    }

    #[test]
    fn id_is_stable_and_distinct() {
        assert_eq!(key(1).id(), key(1).id());
        assert_ne!(key(1).id(), key(2).id());
        assert_eq!(key(1).id().len(), 16);
        assert!(key(1).id().bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn debug_hides_bytes() {
        let k = MasterKey::from_bytes([0xab; KEY_LEN]);
        let text = format!("{k:?}");
        assert!(text.contains(k.id()));
        assert!(!text.to_lowercase().contains("abab"));
        assert!(!text.contains("171"));
        let src = KeySource::Env(Zeroizing::new("super-secret-value".into()));
        assert!(!format!("{src:?}").contains("super-secret"));
        let src = KeySource::Passphrase {
            passphrase: Zeroizing::new("correct horse".into()),
            salt: vec![0; 16],
        };
        assert!(!format!("{src:?}").contains("horse"));
    }

    #[test]
    fn add_set_active_retire() {
        let mut ring = Keyring::new(key(1));
        assert_eq!(ring.active().id(), key(1).id());
        assert!(ring.add(key(2), false));
        assert!(!ring.add(key(2), false), "same key twice is a no-op");
        assert_eq!(ring.ids().count(), 2);
        assert_eq!(ring.active().id(), key(1).id());
        ring.set_active(key(2).id()).unwrap();
        assert_eq!(ring.active().id(), key(2).id());
        let err = ring.retire(key(2).id()).unwrap_err();
        assert!(err.to_string().contains("active key"), "{err}");
        assert_eq!(ring.retire(key(1).id()).unwrap().id(), key(1).id());
        assert!(ring.get(key(1).id()).is_none());
        assert!(ring.retire(key(1).id()).is_err());
        assert!(ring.set_active(key(1).id()).is_err());
    }

    #[test]
    fn key_file_text_round_trips() {
        let mut ring = Keyring::new(key(1));
        ring.add(key(2), true);
        let text = ring.key_file_text().unwrap();
        let back = parse_key_file(&text).unwrap();
        assert_eq!(back.active().id(), key(2).id());
        assert_eq!(
            back.ids().collect::<Vec<_>>(),
            ring.ids().collect::<Vec<_>>()
        );
        assert_eq!(back.get(key(1).id()).unwrap().bytes(), key(1).bytes());
    }

    #[test]
    fn key_file_errors_are_specific_and_do_not_echo_keys() {
        let k = key(3);
        let good_b64 = encode::b64(k.bytes());
        let cases = [
            ("{", "not valid JSON"),
            (r#"{"version":1,"active":"x","keys":[],"extra":1}"#, "shape"),
            (r#"{"version":2,"active":"x","keys":[]}"#, "version 2"),
            (r#"{"version":1,"active":"x","keys":[]}"#, "no keys"),
        ];
        for (text, needle) in cases {
            let err = parse_key_file(text).err().unwrap();
            assert!(err.contains(needle), "{text}: {err}");
        }
        let wrong_id = format!(
            r#"{{"version":1,"active":"0000000000000000","keys":[{{"id":"0000000000000000","key":"{good_b64}"}}]}}"#
        );
        let err = parse_key_file(&wrong_id).err().unwrap();
        assert!(err.contains("edited or corrupted"), "{err}");
        assert!(!err.contains(&good_b64));
        let short = r#"{"version":1,"active":"a","keys":[{"id":"a","key":"c2hvcnQtc2VjcmV0"}]}"#;
        let err = parse_key_file(short).err().unwrap();
        assert!(err.contains("not base64 of 32 bytes"), "{err}");
        assert!(!err.contains("c2hvcnQtc2VjcmV0"));
        let bad_active = format!(
            r#"{{"version":1,"active":"ffff","keys":[{{"id":"{}","key":"{good_b64}"}}]}}"#,
            k.id()
        );
        let err = parse_key_file(&bad_active).err().unwrap();
        assert!(err.contains("active"), "{err}");
        let typed = r#"{"version":1,"active":"a","keys":[{"id":"a","key":12345678901}]}"#;
        let err = parse_key_file(typed).err().unwrap();
        assert!(!err.contains("12345678901"), "{err}");
    }
}
