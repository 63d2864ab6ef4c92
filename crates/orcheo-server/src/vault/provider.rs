//! The credentials of one run: resolved by name when a node asks, checked for scope and expiry,
//! opened from the vault, recorded in the audit log, and added to the run's masker so the engine
//! can scrub them from everything the run persists or streams.

use super::{OpenError, Vault};
use async_trait::async_trait;
use chrono::Utc;
use orcheo_core::{CredentialValue, Credentials, NodeError};
use orcheo_store::{CredentialRecord, Store};
use orcheo_vault::Masker;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

/// Who a run belongs to, for scope checks.
#[derive(Debug, Clone)]
pub struct RunOwner {
    /// The run.
    pub run_id: String,
    /// Its workflow.
    pub workflow_id: String,
    /// Who started it (`name (ok_prefix)` for API keys).
    pub created_by: String,
}

/// A run's credential provider.
pub struct RunCredentials {
    vault: Arc<Vault>,
    store: Store,
    owner: RunOwner,
    cache: tokio::sync::Mutex<HashMap<String, Arc<CredentialValue>>>,
    masker: RwLock<Masker>,
    active: AtomicBool,
}

impl RunCredentials {
    /// A provider for one run.
    pub fn new(vault: Arc<Vault>, store: Store, owner: RunOwner) -> Self {
        Self {
            vault,
            store,
            owner,
            cache: Default::default(),
            masker: RwLock::new(Masker::new(Vec::<String>::new())),
            active: AtomicBool::new(false),
        }
    }

    fn masker(&self) -> std::sync::RwLockReadGuard<'_, Masker> {
        self.masker.read().unwrap_or_else(|p| p.into_inner())
    }

    async fn load(&self, node: &str, name: &str) -> Result<Arc<CredentialValue>, NodeError> {
        let fail = |m: String| NodeError::new("credential", m);
        let rec = self
            .store
            .credential_by_name(name)
            .await
            .map_err(|e| NodeError::transient("credential", format!("looking up credential `{name}`: {e}")))?
            .ok_or_else(|| {
                fail(format!(
                    "node `{node}` uses credential `{name}`, which does not exist: create it (orcheo credential create, or POST /api/credentials) or fix the name"
                ))
            })?;
        if let Some(why) = refusal(&self.store, &rec, &self.owner).await {
            return Err(fail(format!(
                "node `{node}` may not use credential `{name}`: {why}"
            )));
        }
        let data = self
            .vault
            .open(&rec.id, rec.version)
            .await
            .map_err(|e| match e {
                OpenError::Store(e) => {
                    NodeError::transient("credential", format!("reading credential `{name}`: {e}"))
                }
                e => fail(format!("credential `{name}` cannot be opened: {e}")),
            })?;
        let (rec, data) = if rec.kind == "oauth2" {
            super::oauth::fresh(&self.store, &self.vault, rec, data)
                .await
                .map_err(fail)?
        } else {
            (rec, data)
        };
        let secrets = orcheo_vault::types::get(&rec.kind)
            .ok_or_else(|| {
                fail(format!(
                    "credential `{name}` has an unknown type `{}`",
                    rec.kind
                ))
            })?
            .secret_strings(&data);
        {
            let mut m = self.masker.write().unwrap_or_else(|p| p.into_inner());
            m.extend(secrets.iter().map(|s| s.as_str()));
        }
        self.active.store(true, Ordering::Release);
        let audit = self
            .store
            .audit(
                &format!("run {}", self.owner.run_id),
                "credential.use",
                &rec.id,
                json!({"name": rec.name, "version": rec.version, "run_id": self.owner.run_id,
                       "workflow_id": self.owner.workflow_id, "node": node}),
            )
            .await;
        if let Err(e) = audit {
            tracing::warn!(error = %e, "recording a credential use failed");
        }
        let _ = self.store.mark_credential_used(&rec.id).await;
        Ok(Arc::new(CredentialValue {
            name: rec.name,
            kind: rec.kind,
            version: rec.version,
            data,
        }))
    }
}

/// Why `owner` may not use `rec` now, if it may not.
pub async fn refusal(store: &Store, rec: &CredentialRecord, owner: &RunOwner) -> Option<String> {
    if let Some(at) = rec.expires_at {
        if at <= Utc::now() {
            return Some(format!(
                "it expired at {}; rotate it with a new secret or extend its expiry",
                at.to_rfc3339()
            ));
        }
    }
    match rec.scope["kind"].as_str() {
        Some("shared") | None => None,
        Some("workflows") => {
            let ok = rec.scope["ids"]
                .as_array()
                .is_some_and(|ids| ids.iter().any(|i| i == owner.workflow_id.as_str()));
            (!ok).then(|| {
                format!(
                    "it is restricted to other workflows (add `{}` to its scope)",
                    owner.workflow_id
                )
            })
        }
        Some("roles") => {
            let wanted: Vec<&str> = rec.scope["scopes"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let prefix = owner
                .created_by
                .rsplit_once("(ok_")
                .map(|(_, p)| p.trim_end_matches(')'));
            let held = match prefix {
                Some(p) => store
                    .list_api_keys()
                    .await
                    .ok()
                    .and_then(|keys| keys.into_iter().find(|k| k.prefix == p))
                    .map(|k| k.scopes)
                    .unwrap_or_default(),
                None => Vec::new(),
            };
            let ok = held
                .iter()
                .any(|s| s.as_str() == "admin" || wanted.contains(&s.as_str()));
            (!ok).then(|| {
                format!(
                    "it is restricted to runs started by API keys with scope {} (this run was started by {})",
                    wanted.join(" or "),
                    owner.created_by
                )
            })
        }
        Some(other) => Some(format!("its scope kind `{other}` is unknown")),
    }
}

#[async_trait]
impl Credentials for RunCredentials {
    async fn resolve(&self, node: &str, name: &str) -> Result<Arc<CredentialValue>, NodeError> {
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.get(name) {
            return Ok(c.clone());
        }
        let c = self.load(node, name).await?;
        cache.insert(name.to_string(), c.clone());
        Ok(c)
    }

    fn mask_value(&self, value: &mut Value) {
        self.masker().mask_value(value);
    }

    fn mask_text(&self, text: &str) -> String {
        self.masker().mask_str(text).into_owned()
    }

    fn active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }
}
