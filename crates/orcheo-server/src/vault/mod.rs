//! The server's vault: the keyring loaded from `ORCHEO_VAULT_KEY`, a passphrase or the key
//! file; sealing and opening credential versions; the start-up check that this server holds the
//! key the database's credentials are sealed under; and the per-run credential provider the
//! worker gives the engine (docs/design/0005-vault.md).

pub mod api;
pub mod oauth;
pub mod provider;
pub mod readiness;

use crate::config::Config;
use crate::error::ApiError;
use orcheo_store::{SealedVersion, Store, StoreError};
use orcheo_vault::{Aad, Keyring, MasterKey, Sealed, VaultError};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::RwLock;

const CANARY: &str = "orcheo vault canary";
const SALT: &str = "passphrase_salt";

/// Where the keyring came from (a key file is re-read when an unknown key id shows up, so a
/// rotation made by `orcheo vault rotate-key` reaches running servers without a restart).
#[derive(Debug, Clone)]
enum Origin {
    Env,
    Passphrase,
    File(PathBuf),
}

/// The keyring and the store, for sealing and opening credentials.
pub struct Vault {
    store: Store,
    ring: RwLock<Keyring>,
    origin: Origin,
    /// The key file's modification time when it was last read.
    seen_mtime: std::sync::Mutex<Option<std::time::SystemTime>>,
    /// Outbound requests (OAuth2 token endpoints), guarded by the SSRF policy.
    http: orcheo_nodes::net::GuardedClient,
    /// One lock per OAuth2 credential being refreshed.
    refresh_locks: oauth::RefreshLocks,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl Vault {
    /// Loads the keyring (`ORCHEO_VAULT_KEY`, else `ORCHEO_VAULT_PASSPHRASE`, else the key file,
    /// created on first start) and checks it against the database.
    pub async fn load(
        store: Store,
        config: &Config,
        http: orcheo_nodes::net::GuardedClient,
    ) -> anyhow::Result<Vault> {
        let (ring, origin) = if let Some(k) = config.vault_key.as_ref() {
            (Keyring::from_env_value(k.expose())?, Origin::Env)
        } else if let Some(p) = config.vault_passphrase.as_ref() {
            let fresh = orcheo_store::hex(&random_bytes(16)?);
            let salt = store.put_vault_meta(SALT, &fresh, true).await?;
            let salt = orcheo_store::unhex(&salt)
                .ok_or_else(|| anyhow::anyhow!("the vault's passphrase salt is damaged"))?;
            let key = MasterKey::from_passphrase(p.expose(), &salt)?;
            (Keyring::new(key), Origin::Passphrase)
        } else {
            let path = config.vault_key_path();
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let (ring, created) = Keyring::load_or_create_file(&path)?;
            if created {
                tracing::info!(path = %path.display(), "created the vault key file (keep it safe and back it up: without it stored credentials cannot be read)");
            }
            (ring, Origin::File(path))
        };
        let seen = match &origin {
            Origin::File(p) => mtime(p),
            _ => None,
        };
        let vault = Vault {
            store,
            ring: RwLock::new(ring),
            origin,
            seen_mtime: std::sync::Mutex::new(seen),
            http,
            refresh_locks: Default::default(),
        };
        vault.check_canary().await?;
        Ok(vault)
    }

    /// Refuses to start when the database's credentials are sealed under keys this server does
    /// not hold; records a canary for the active key otherwise.
    async fn check_canary(&self) -> anyhow::Result<()> {
        let canaries = self.store.vault_meta_prefixed("canary:").await?;
        let (active, sealed) = self.verify_canaries(&canaries)?;
        self.store
            .put_vault_meta(&format!("canary:{active}"), &sealed.to_string(), true)
            .await?;
        Ok(())
    }

    /// Checks the stored canaries against the keyring; returns a canary for the active key.
    fn verify_canaries(&self, canaries: &[(String, String)]) -> anyhow::Result<(String, Sealed)> {
        let ring = self.ring_read();
        let id_of = |n: &str| n["canary:".len()..].to_string();
        let held: Vec<&(String, String)> = canaries
            .iter()
            .filter(|(n, _)| ring.get(&id_of(n)).is_some())
            .collect();
        if !canaries.is_empty() && held.is_empty() {
            let theirs: Vec<String> = canaries.iter().map(|(n, _)| id_of(n)).collect();
            anyhow::bail!(
                "this database's credentials are sealed under vault key {}, but this server holds key {}: give every server the same key (the same ORCHEO_VAULT_KEY, passphrase or key file)",
                theirs.join(", "),
                ring.ids().collect::<Vec<_>>().join(", ")
            );
        }
        for (name, value) in held {
            let id = id_of(name);
            let sealed: Sealed = value
                .parse()
                .map_err(|e: VaultError| anyhow::anyhow!("vault canary for key {id}: {e}"))?;
            ring.open(&Aad::new("canary", &[&id]), &sealed)
                .map_err(|e| anyhow::anyhow!("vault canary for key {id} does not open: {e}"))?;
        }
        let active = ring.active().id().to_string();
        let sealed = ring.seal(&Aad::new("canary", &[&active]), CANARY.as_bytes())?;
        Ok((active, sealed))
    }

    fn ring_read(&self) -> std::sync::RwLockReadGuard<'_, Keyring> {
        self.ring.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The active key's id.
    pub fn active_key_id(&self) -> String {
        self.ring_read().active().id().to_string()
    }

    /// Seals a credential version's data under the active key (re-reading a key file that
    /// changed, so a rotation's new key is used at once).
    pub fn seal(&self, id: &str, version: i64, data: &Value) -> Result<Sealed, ApiError> {
        if let Origin::File(p) = &self.origin {
            let now = mtime(p);
            let changed = {
                let seen = self.seen_mtime.lock().unwrap_or_else(|e| e.into_inner());
                now.is_some() && *seen != now
            };
            if changed {
                self.reload().map_err(ApiError::internal)?;
            }
        }
        self.ring_read()
            .seal_json(&Aad::credential(id, version), data)
            .map_err(ApiError::internal)
    }

    /// The outbound client.
    pub fn http(&self) -> &orcheo_nodes::net::GuardedClient {
        &self.http
    }

    /// Seals a value that is not a credential version (pending OAuth2 authorizations).
    pub fn seal_other(&self, aad: &Aad, value: &Value) -> Result<String, VaultError> {
        Ok(self.ring_read().seal_json(aad, value)?.to_string())
    }

    /// Opens what [`Vault::seal_other`] sealed.
    pub fn open_other(&self, aad: &Aad, text: &str) -> Result<Value, VaultError> {
        let sealed: Sealed = text.parse()?;
        match self.ring_read().open_json(aad, &sealed) {
            Err(VaultError::UnknownKey { .. }) => {}
            other => return other,
        }
        // Sealed under a key this server has not loaded yet (a rotation): re-read the file.
        if let Err(OpenError::Vault(e)) = self.reload() {
            return Err(e);
        }
        self.ring_read().open_json(aad, &sealed)
    }

    /// Seals a trigger's secret (a webhook signing secret, a polling credential) bound to the
    /// trigger's id, for the `triggers.secret` column.
    pub fn seal_trigger_secret(&self, trigger_id: &str, secret: &str) -> Result<String, ApiError> {
        self.seal_other(
            &Aad::new("trigger-secret", &[trigger_id]),
            &Value::String(secret.to_string()),
        )
        .map_err(ApiError::internal)
    }

    /// Opens a trigger's secret. A value that is not sealed text is a secret stored before the
    /// vault existed and is used as it is.
    pub fn open_trigger_secret(
        &self,
        trigger_id: &str,
        stored: &str,
    ) -> Result<String, VaultError> {
        if stored.parse::<Sealed>().is_err() {
            return Ok(stored.to_string());
        }
        match self.open_other(&Aad::new("trigger-secret", &[trigger_id]), stored)? {
            Value::String(s) => Ok(s),
            _ => Err(VaultError::Malformed("a trigger secret is not text".into())),
        }
    }

    /// One secret string of a credential, for triggers that take their secret from the vault:
    /// `field` names it, or the type's only secret field that is set is used. The error says
    /// what is wrong without the value.
    pub async fn credential_secret(
        &self,
        name: &str,
        field: Option<&str>,
    ) -> Result<String, String> {
        let rec = self
            .store
            .credential_by_name(name)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("credential `{name}` does not exist"))?;
        if rec.expires_at.is_some_and(|e| e <= chrono::Utc::now()) {
            return Err(format!("credential `{name}` has expired"));
        }
        let data = self
            .open(&rec.id, rec.version)
            .await
            .map_err(|e| format!("credential `{name}` cannot be opened: {e}"))?;
        let ty = orcheo_vault::types::get(&rec.kind)
            .ok_or_else(|| format!("credential `{name}` has an unknown type"))?;
        let pick = |f: &str| {
            data.get(f)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        match field {
            Some(f) => pick(f)
                .map(str::to_string)
                .ok_or_else(|| format!("credential `{name}` has no text field `{f}`")),
            None => {
                let set: Vec<&str> = ty
                    .secret_fields
                    .iter()
                    .copied()
                    .filter(|f| pick(f).is_some())
                    .collect();
                match set.as_slice() {
                    [one] => Ok(pick(one).unwrap_or_default().to_string()),
                    [] => Err(format!("credential `{name}` has no secret set")),
                    many => Err(format!(
                        "credential `{name}` has several secrets ({}); say which with secret_field",
                        many.join(", ")
                    )),
                }
            }
        }
    }

    /// Opens one stored version. An unknown key id makes a file-based keyring re-read its file
    /// once (another process may have rotated the key).
    pub async fn open(&self, id: &str, version: i64) -> Result<Value, OpenError> {
        let v = self
            .store
            .credential_version(id, version)
            .await?
            .ok_or(OpenError::Retired { version })?;
        self.open_sealed(&v)
    }

    /// Opens a sealed version already read from the store.
    pub fn open_sealed(&self, v: &SealedVersion) -> Result<Value, OpenError> {
        let sealed: Sealed = v.sealed.parse().map_err(OpenError::Vault)?;
        let aad = Aad::credential(&v.credential_id, v.version);
        match self.ring_read().open_json(&aad, &sealed) {
            Err(VaultError::UnknownKey { .. }) => {}
            other => return other.map_err(OpenError::Vault),
        }
        self.reload()?;
        self.ring_read()
            .open_json(&aad, &sealed)
            .map_err(OpenError::Vault)
    }

    /// Re-reads the key file (rotation by another process).
    pub fn reload(&self) -> Result<(), OpenError> {
        if let Origin::File(path) = &self.origin {
            let before = mtime(path);
            let ring = Keyring::load_file(path).map_err(OpenError::Vault)?;
            *self.ring.write().unwrap_or_else(|p| p.into_inner()) = ring;
            *self.seen_mtime.lock().unwrap_or_else(|e| e.into_inner()) = before;
        }
        Ok(())
    }
}

/// Why a credential version did not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The version was retired after a rotation (its sealed text erased).
    #[error("version {version} was retired after a rotation")]
    Retired {
        /// Which.
        version: i64,
    },
    /// Decryption failed (wrong key, tampering, a moved row).
    #[error(transparent)]
    Vault(VaultError),
}

fn mtime(p: &std::path::Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// What `orcheo vault rotate-key` did.
#[derive(Debug, serde::Serialize)]
pub struct Rotation {
    /// The key everything is sealed under now.
    pub active_key: String,
    /// Whether a new key was made (key files) or the configured first key used (environment).
    pub new_key: bool,
    /// Credential versions and trigger secrets re-encrypted.
    pub resealed: usize,
    /// Keys removed from the key file and their canaries.
    pub retired: Vec<String>,
}

/// Re-encrypts every stored credential version under a new key, without stopping servers.
///
/// With a key file: a new key is added as the active key and the file saved (running servers
/// re-read it when they seal or meet the new key id), every version is resealed (twice, to catch
/// one a server sealed under the old key while the first pass ran), then, unless `keep_old`, the
/// old keys leave the file, so they no longer open anything. With `ORCHEO_VAULT_KEY`, the
/// operator lists the new key first and the old after it; this reseals under the first and
/// drops the old keys' canaries; the old key can then leave the variable. A passphrase cannot be
/// rotated in place.
pub async fn rotate_key(
    store: &Store,
    config: &Config,
    keep_old: bool,
) -> anyhow::Result<Rotation> {
    let (mut ring, path, new_key) = if let Some(k) = &config.vault_key {
        (Keyring::from_env_value(k.expose())?, None, false)
    } else if config.vault_passphrase.is_some() {
        anyhow::bail!("a passphrase-derived vault key cannot be rotated in place: set ORCHEO_VAULT_KEY to a new key followed by the current one (or move to a key file), then rotate");
    } else {
        let path = config.vault_key_path();
        let mut ring = Keyring::load_file(&path)?;
        ring.add(MasterKey::generate()?, true);
        ring.save_file(&path)?;
        (ring, Some(path), true)
    };
    let active = ring.active().id().to_string();
    let canary = ring.seal(&Aad::new("canary", &[&active]), CANARY.as_bytes())?;
    store
        .put_vault_meta(&format!("canary:{active}"), &canary.to_string(), false)
        .await?;
    let mut resealed = 0;
    for _pass in 0..2 {
        for v in store.sealed_versions().await? {
            if v.key_id == active {
                continue;
            }
            let sealed: Sealed = v.sealed.parse()?;
            let aad = Aad::credential(&v.credential_id, v.version);
            let Some(new) = ring.reseal(&aad, &sealed).map_err(|e| {
                anyhow::anyhow!("credential {} version {}: {e}", v.credential_id, v.version)
            })?
            else {
                continue;
            };
            if store
                .reseal_version(&v, &new.to_string(), &new.key_id)
                .await?
            {
                resealed += 1;
            }
        }
    }
    // Trigger secrets (webhook signing secrets, polling credentials) too.
    for _pass in 0..2 {
        for (id, stored) in store.trigger_secrets().await? {
            let Ok(sealed) = stored.parse::<Sealed>() else {
                continue; // stored before the vault: left as it is
            };
            if sealed.key_id == active {
                continue;
            }
            let aad = Aad::new("trigger-secret", &[&id]);
            let new = ring
                .reseal(&aad, &sealed)
                .map_err(|e| anyhow::anyhow!("trigger {id}'s secret: {e}"))?;
            if let Some(new) = new {
                if store
                    .reseal_trigger_secret(&id, &stored, &new.to_string())
                    .await?
                {
                    resealed += 1;
                }
            }
        }
    }
    let mut retired = Vec::new();
    if !keep_old {
        let old: Vec<String> = ring
            .ids()
            .filter(|i| *i != active)
            .map(str::to_string)
            .collect();
        for id in old {
            ring.retire(&id)?;
            retired.push(id);
        }
        if let Some(p) = &path {
            ring.save_file(p)?;
        }
        for (name, _) in store.vault_meta_prefixed("canary:").await? {
            if name != format!("canary:{active}") {
                store.delete_vault_meta(&name).await?;
                if path.is_none() {
                    retired.push(name["canary:".len()..].to_string());
                }
            }
        }
        retired.sort();
        retired.dedup();
    }
    store
        .audit(
            "cli",
            "vault.rotate_key",
            &active,
            serde_json::json!({"resealed": resealed, "retired": retired}),
        )
        .await?;
    Ok(Rotation {
        active_key: active,
        new_key,
        resealed,
        retired,
    })
}

fn random_bytes(n: usize) -> anyhow::Result<Vec<u8>> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(b)
}
