//! # orcheo-vault
//!
//! The pure core of Orcheo's credential vault: master keys, authenticated encryption of secrets,
//! credential types with their schemas, and the masking layer that keeps secret values out of
//! everything persisted or streamed. It does no storage and no networking; `orcheo-store` keeps the
//! sealed bytes and `orcheo-server` runs the OAuth flows and credential tests this crate describes.
//!
//! ## Threat model of this layer
//!
//! - **A stolen database** (backup, replica, SQL injection) must not reveal secrets: every credential
//!   is sealed with AES-256-GCM under a key that is never stored in the database.
//! - **A tampered or shuffled database** must not trick the server into using the wrong secret: the
//!   ciphertext is bound (GCM associated data) to the credential's id *and* version, so a ciphertext
//!   copied to another row or rolled back to another version fails to open, as does any flipped bit.
//!   Failure is closed and explicit ([`VaultError::Decrypt`]), never a garbage plaintext.
//! - **Key compromise or loss** is bounded by rotation: keys carry ids, values record the id they were
//!   sealed under, and [`Keyring::reseal`] moves values to a new active key while old ones still open.
//! - **Leaks through the side door**: run state, events, logs and errors are passed through a
//!   [`Masker`] that replaces each secret, and its base64, URL-encoded and JSON-escaped forms, with
//!   `***`. Error messages and `Debug` output in this crate never contain key material or secrets.
//!
//! Out of scope here: an attacker who can read the server's memory or its key file/environment (they
//! hold the key), and secrets a node transforms beyond recognition (hashing, encrypting) before output.
//!
//! ## Keys ([`keys`])
//!
//! - [`MasterKey`]: 32 bytes (wiped on drop) with a derived, stable [`MasterKey::id`] (16 hex chars of
//!   HKDF-SHA256 over the key). [`MasterKey::generate`], [`MasterKey::from_bytes`],
//!   [`MasterKey::from_passphrase`] (Argon2id m=19456 KiB, t=2, p=1; salt ≥ 16 bytes),
//!   [`MasterKey::export_base64`]. `Debug` never prints the bytes.
//! - [`Keyring`]: one active key plus older ones. [`Keyring::new`], [`Keyring::active`],
//!   [`Keyring::get`], [`Keyring::add`]`(key, make_active) -> bool`, [`Keyring::set_active`],
//!   [`Keyring::retire`] (refuses the active key), [`Keyring::ids`], [`Keyring::keys`].
//! - Loading: [`Keyring::load`]`(&KeySource)` with [`KeySource`]`::{Env, File, Passphrase { passphrase,
//!   salt }}`; [`Keyring::from_env_value`] (`ORCHEO_VAULT_KEY`: comma-separated base64 or hex keys,
//!   first active); [`Keyring::load_file`], [`Keyring::load_or_create_file`]`(path) -> (Keyring,
//!   created)` (mode 0600, refuses group/other access), [`Keyring::save_file`] (atomic).
//!   Key file: `{"version":1,"active":"<id>","keys":[{"id":..,"key":"<base64>","created_at":..}]}`.
//!
//! ## Sealing ([`cipher`])
//!
//! - [`Aad::credential`]`(id, version)` and [`Aad::new`]`(purpose, parts)` say what a ciphertext is
//!   bound to (length-prefixed, unambiguous). Each purpose gets its own subkey,
//!   HKDF-SHA256(master, info = `orcheo-vault/v1/<purpose>`), so the master key never touches data.
//! - [`Keyring::seal`]`(&Aad, &[u8]) -> Sealed`, [`Keyring::open`]`(&Aad, &Sealed) ->
//!   Zeroizing<Vec<u8>>`, [`Keyring::reseal`]`(&Aad, &Sealed) -> Option<Sealed>` (rotation),
//!   [`Keyring::seal_json`] / [`Keyring::open_json`].
//! - [`Sealed`] `{ key_id, nonce, ciphertext }` with text form `v1.<key_id>.<b64url nonce>.<b64url
//!   ciphertext+tag>` (`Display`/`FromStr`/serde).
//! - Errors ([`VaultError`]): `UnknownKey`, `Decrypt`, `Malformed`, `KeyFile`, `KeySource`,
//!   `Keyring`, `Random`.
//!
//! ## Masking ([`mask`])
//!
//! [`Masker::new`]`(secrets)`, [`Masker::mask_str`], [`Masker::mask_bytes`], [`Masker::mask_value`]
//! (strings, object keys, numbers), [`Masker::masked`], [`Masker::extend`], [`Masker::merge`],
//! [`Masker::is_empty`]; [`secret_strings`]`(data, secret_fields)` collects a credential's secret
//! leaves. See the module docs for the encodings covered and why secrets under 4 bytes are masked
//! only as whole strings.
//!
//! ## Credential types ([`types`])
//!
//! [`catalog()`], [`types::get`], [`types::validate`]`(type_id, &Value) -> Result<Value /* defaults
//! applied */, ValidationError>`, [`types::public_view`]. Each [`CredentialType`] has a draft 2020-12
//! JSON Schema, `secret_fields`, a [`TestKind`] and [`ApplyRule`]s, with
//! [`CredentialType::http_auth`] and [`CredentialType::test_request`] rendering them for a request.
//! Types: `api_key`, `bearer`, `basic`, `custom_headers`, `oauth2`, `openai`, `anthropic`, `slack`,
//! `telegram`, `discord`, `smtp`, `postgresql`, `mongodb`, `github`, `http`.
//!
//! ## PKCE ([`pkce`])
//!
//! [`Pkce::new`], [`Pkce::from_verifier`], [`pkce::challenge_for`], [`pkce::random_state`].
//!
//! ## Example
//!
//! ```
//! use orcheo_vault::{Aad, Keyring, Masker, MasterKey};
//!
//! let ring = Keyring::new(MasterKey::generate()?);
//! let aad = Aad::credential("cred-1", 1);
//! let sealed = ring.seal(&aad, b"sk-live-123456")?;
//! let text = sealed.to_string(); // store this
//! let back = ring.open(&aad, &text.parse()?)?;
//! assert_eq!(&back[..], b"sk-live-123456");
//! // The same bytes will not open as another credential or version.
//! assert!(ring.open(&Aad::credential("cred-1", 2), &sealed).is_err());
//!
//! let masker = Masker::new(["sk-live-123456"]);
//! assert_eq!(masker.mask_str("key=sk-live-123456"), "key=***");
//! # Ok::<(), orcheo_vault::VaultError>(())
//! ```

#![warn(missing_docs)]

pub mod cipher;
mod encode;
pub mod error;
pub mod keys;
pub mod mask;
pub mod pkce;
pub mod types;

pub use cipher::{Aad, Sealed};
pub use error::{Result, VaultError};
pub use keys::{KeySource, Keyring, MasterKey};
pub use mask::{secret_strings, Masker};
pub use pkce::Pkce;
pub use types::{
    catalog, ApplyRule, Category, CredentialType, Expect, HttpAuth, HttpTest, Problem, Target,
    TestKind, TestRequest, ValidationError, When,
};
