//! Sealing and opening secrets: AES-256-GCM under a per-purpose subkey, with a random 96-bit nonce
//! and associated data that binds each ciphertext to the row (and version) it belongs to.

use std::fmt;
use std::str::FromStr;

use aes_gcm::aead::{Aead as _, KeyInit as _, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::encode;
use crate::error::{random_fill, Result, VaultError};
use crate::keys::{Keyring, MasterKey, KEY_LEN};

/// The purpose under which credential data is sealed (subkey info `orcheo-vault/v1/credentials`).
pub const PURPOSE_CREDENTIALS: &str = "credentials";
/// Prefix of the sealed text form; a new format gets a new prefix.
pub const SEALED_VERSION: &str = "v1";
/// Nonce length in bytes (96 bits, GCM's native size).
pub const NONCE_LEN: usize = 12;
/// GCM authentication tag length in bytes.
pub const TAG_LEN: usize = 16;

/// What a ciphertext is bound to: a purpose and the parts that name its row. Opening with any other
/// `Aad` fails, so a ciphertext copied to another row or version is useless.
#[derive(Clone, PartialEq, Eq)]
pub struct Aad {
    purpose: String,
    bytes: Vec<u8>,
    subject: String,
}

impl Aad {
    /// Binds a credential's ciphertext to its id and version.
    pub fn credential(id: &str, version: i64) -> Aad {
        let mut aad = Aad::new(PURPOSE_CREDENTIALS, &[id, &version.to_string()]);
        aad.subject = format!("credential {id} version {version}");
        aad
    }

    /// Binds a ciphertext to another purpose (e.g. `Aad::new("webhook-secret", &[trigger_id])`);
    /// each purpose also gets its own subkey.
    pub fn new(purpose: &str, parts: &[&str]) -> Aad {
        // Length-prefixed fields, so ("ab","c") and ("a","bc") can never collide.
        let mut bytes = b"orcheo-vault/v1".to_vec();
        for field in std::iter::once(purpose).chain(parts.iter().copied()) {
            push_field(&mut bytes, field.as_bytes());
        }
        let subject = if parts.is_empty() {
            purpose.to_string()
        } else {
            format!("{purpose} {}", parts.join("/"))
        };
        Aad {
            purpose: purpose.to_string(),
            bytes,
            subject,
        }
    }

    /// The purpose, which selects the subkey.
    pub fn purpose(&self) -> &str {
        &self.purpose
    }

    /// A readable name of what is bound, used in error messages.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The exact bytes given to GCM (for a key id appended by [`Keyring::seal`]).
    fn with_key_id(&self, key_id: &str) -> Vec<u8> {
        let mut out = self.bytes.clone();
        push_field(&mut out, key_id.as_bytes());
        out
    }
}

impl fmt::Debug for Aad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Aad").field(&self.subject).finish()
    }
}

fn push_field(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(&(field.len() as u64).to_be_bytes());
    out.extend_from_slice(field);
}

/// A sealed secret: the key it was sealed under, its nonce, and ciphertext with the GCM tag.
/// Text form: `v1.<key_id>.<base64url nonce>.<base64url ciphertext+tag>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    /// Id of the master key (see [`MasterKey::id`]); lets rotation find what to reseal.
    pub key_id: String,
    /// The random 96-bit nonce.
    pub nonce: [u8; NONCE_LEN],
    /// Ciphertext followed by the 16-byte tag.
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealed")
            .field("key_id", &self.key_id)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish()
    }
}

impl fmt::Display for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{SEALED_VERSION}.{}.{}.{}",
            self.key_id,
            encode::b64url(&self.nonce),
            encode::b64url(&self.ciphertext)
        )
    }
}

impl FromStr for Sealed {
    type Err = VaultError;

    fn from_str(text: &str) -> Result<Sealed> {
        let parts: Vec<&str> = text.split('.').collect();
        let [version, key_id, nonce, ciphertext] = parts.as_slice() else {
            return Err(VaultError::Malformed(format!(
                "expected 4 dot-separated fields `v1.<key id>.<nonce>.<ciphertext>`, found {}",
                parts.len()
            )));
        };
        if *version != SEALED_VERSION {
            return Err(VaultError::Malformed(format!(
                "format {version:?} is not one this Orcheo reads (only {SEALED_VERSION:?})"
            )));
        }
        if key_id.is_empty()
            || key_id.len() > 64
            || !key_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(VaultError::Malformed(
                "the key id must be 1-64 letters, digits, '-' or '_'".into(),
            ));
        }
        let nonce: [u8; NONCE_LEN] = encode::unb64url(nonce)
            .and_then(|n| n.try_into().ok())
            .ok_or_else(|| {
                VaultError::Malformed(format!(
                    "the nonce is not unpadded base64url of {NONCE_LEN} bytes"
                ))
            })?;
        let ciphertext = encode::unb64url(ciphertext).ok_or_else(|| {
            VaultError::Malformed("the ciphertext is not unpadded base64url".into())
        })?;
        if ciphertext.len() < TAG_LEN {
            return Err(VaultError::Malformed(format!(
                "the ciphertext is {} bytes, shorter than the {TAG_LEN}-byte tag",
                ciphertext.len()
            )));
        }
        Ok(Sealed {
            key_id: key_id.to_string(),
            nonce,
            ciphertext,
        })
    }
}

impl Serialize for Sealed {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Sealed {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Sealed, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The AES-256-GCM cipher for `purpose` under `key`: HKDF-SHA256(master, info =
/// `orcheo-vault/v1/<purpose>`), so the master key itself never touches data.
fn subcipher(key: &MasterKey, purpose: &str) -> Aes256Gcm {
    let hk = Hkdf::<Sha256>::new(Some(b"orcheo-vault"), key.bytes());
    let mut sub = Zeroizing::new([0u8; KEY_LEN]);
    let info = format!("orcheo-vault/v1/{purpose}");
    // 32 bytes is far below HKDF-SHA256's 8160-byte limit, so expand cannot fail.
    let _ = hk.expand(info.as_bytes(), sub.as_mut());
    Aes256Gcm::new(sub.as_ref().into())
}

impl Keyring {
    /// Encrypts `plaintext` under the active key with a fresh random nonce, bound to `aad`.
    pub fn seal(&self, aad: &Aad, plaintext: &[u8]) -> Result<Sealed> {
        let key = self.active();
        let mut nonce = [0u8; NONCE_LEN];
        random_fill(&mut nonce)?;
        let bound = aad.with_key_id(key.id());
        let ciphertext = subcipher(key, aad.purpose())
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: &bound,
                },
            )
            // AES-GCM encryption fails only past 64 GiB of plaintext.
            .map_err(|_| {
                VaultError::Malformed(format!(
                    "cannot seal {} bytes for {}: too large",
                    plaintext.len(),
                    aad.subject()
                ))
            })?;
        Ok(Sealed {
            key_id: key.id().to_string(),
            nonce,
            ciphertext,
        })
    }

    /// Decrypts and authenticates `sealed`; fails closed unless the key, the bytes and `aad` all
    /// match what was sealed. The plaintext is wiped when dropped.
    pub fn open(&self, aad: &Aad, sealed: &Sealed) -> Result<Zeroizing<Vec<u8>>> {
        let key = self
            .get(&sealed.key_id)
            .ok_or_else(|| VaultError::UnknownKey {
                key_id: sealed.key_id.clone(),
            })?;
        let bound = aad.with_key_id(key.id());
        subcipher(key, aad.purpose())
            .decrypt(
                &Nonce::from(sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: &bound,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| VaultError::Decrypt {
                key_id: sealed.key_id.clone(),
                subject: aad.subject().to_string(),
            })
    }

    /// For rotation: a new `Sealed` under the active key when `sealed` is under another key, or
    /// `None` when it already is (not re-verified then). Fails like [`Keyring::open`].
    pub fn reseal(&self, aad: &Aad, sealed: &Sealed) -> Result<Option<Sealed>> {
        if sealed.key_id == self.active().id() {
            return Ok(None);
        }
        let plaintext = self.open(aad, sealed)?;
        self.seal(aad, &plaintext).map(Some)
    }

    /// Seals a JSON value (a credential's data) as its compact serialisation.
    pub fn seal_json(&self, aad: &Aad, value: &serde_json::Value) -> Result<Sealed> {
        let text = Zeroizing::new(serde_json::to_vec(value).map_err(|e| {
            VaultError::Malformed(format!("cannot serialise {}: {e}", aad.subject()))
        })?);
        self.seal(aad, &text)
    }

    /// Opens a value sealed by [`Keyring::seal_json`].
    pub fn open_json(&self, aad: &Aad, sealed: &Sealed) -> Result<serde_json::Value> {
        let plaintext = self.open(aad, sealed)?;
        serde_json::from_slice(&plaintext).map_err(|_| {
            VaultError::Malformed(format!(
                "{} opened but is not JSON (it was not sealed with seal_json)",
                aad.subject()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aad_encoding_is_unambiguous() {
        assert_ne!(Aad::new("p", &["ab", "c"]), Aad::new("p", &["a", "bc"]));
        assert_ne!(Aad::new("p", &["a"]), Aad::new("pa", &[]));
        assert_ne!(Aad::credential("c1", 1), Aad::credential("c1", 11));
        assert_eq!(Aad::credential("c1", 3).purpose(), PURPOSE_CREDENTIALS);
        assert_eq!(
            Aad::credential("c1", 3).subject(),
            "credential c1 version 3"
        );
        assert_eq!(
            Aad::new("webhook-secret", &["t1"]).subject(),
            "webhook-secret t1"
        );
    }

    #[test]
    fn purposes_use_different_subkeys() {
        let ring = Keyring::new(MasterKey::from_bytes([5; KEY_LEN]));
        let a = Aad::new("one", &["x"]);
        let sealed = ring.seal(&a, b"hello").unwrap();
        // Same nonce and plaintext under another purpose yields different bytes (another subkey).
        let other = subcipher(ring.active(), "two")
            .encrypt(
                &Nonce::from(sealed.nonce),
                Payload {
                    msg: b"hello",
                    aad: &a.with_key_id(ring.active().id()),
                },
            )
            .unwrap();
        assert_ne!(other, sealed.ciphertext);
    }

    #[test]
    fn sealed_text_parse_errors() {
        let cases = [
            ("v1.a.b", "4 dot-separated"),
            (
                "v2.abc.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA",
                "only \"v1\"",
            ),
            ("v1..AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA", "key id"),
            ("v1.a b.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA", "key id"),
            ("v1.abc.AAAA.AAAAAAAAAAAAAAAAAAAAAA", "nonce"),
            (
                "v1.abc.AAAAAAAAAAAAAAAA.AA+AAAAAAAAAAAAAAAAAAA",
                "base64url",
            ),
            ("v1.abc.AAAAAAAAAAAAAAAA.AAAA", "shorter than"),
        ];
        for (text, needle) in cases {
            let err = text.parse::<Sealed>().unwrap_err();
            assert!(matches!(err, VaultError::Malformed(_)), "{text}");
            assert!(err.to_string().contains(needle), "{text}: {err}");
        }
    }
}
