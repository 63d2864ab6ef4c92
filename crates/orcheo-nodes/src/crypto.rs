//! `crypto`: hashes, HMAC signatures, UUIDs and random bytes.

use async_trait::async_trait;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use orcheo_core::node::{Node, NodeContext, NodeError, NodeOutput, NodeResult, NodeSpec};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Digest;

/// Most random bytes one call may produce.
const MAX_RANDOM_BYTES: usize = 1024;

/// Hashes, HMACs, UUIDs and random bytes.
pub struct Crypto;

/// What `crypto` does.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum CryptoOperation {
    /// Digest of `data`.
    Hash,
    /// HMAC of `data` with the `key` credential or the `key` field.
    Hmac,
    /// A new UUID (`version`).
    Uuid,
    /// `bytes` random bytes.
    Random,
}

/// A digest algorithm.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Default)]
#[serde(rename_all = "snake_case")]
pub enum HashAlgorithm {
    /// SHA-256.
    #[default]
    Sha256,
    /// SHA-512.
    Sha512,
    /// SHA-1 (legacy checksums and signatures only).
    Sha1,
    /// MD5 (legacy checksums only; not for HMAC).
    Md5,
}

/// How bytes are written as text.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// Lower-case hexadecimal.
    #[default]
    Hex,
    /// Standard base64 with padding.
    Base64,
    /// URL-safe base64 without padding.
    Base64url,
}

/// A UUID version.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Default)]
#[serde(rename_all = "snake_case")]
pub enum UuidVersion {
    /// Random.
    #[default]
    V4,
    /// Time-ordered.
    V7,
}

/// Config of `crypto`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CryptoConfig {
    /// The operation.
    pub operation: CryptoOperation,
    /// For `hash` and `hmac`: the data (text as UTF-8; other values as compact JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// For `hash` and `hmac` (default sha256; hmac takes sha256, sha512 or sha1).
    #[serde(default)]
    pub algorithm: HashAlgorithm,
    /// For `hmac` without a `key` credential: a non-secret key (secrets belong in the vault).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Output encoding for `hash`, `hmac` and `random` (default hex).
    #[serde(default)]
    pub encoding: Encoding,
    /// For `uuid` (default v4).
    #[serde(default)]
    pub version: UuidVersion,
    /// For `random`: how many bytes (1 to 1024, default 32).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<usize>,
}

/// Output of `crypto`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CryptoOutput {
    /// The digest, signature, UUID or random bytes as text.
    pub result: String,
}

fn encode(bytes: &[u8], e: Encoding) -> String {
    match e {
        Encoding::Hex => bytes.iter().map(|b| format!("{b:02x}")).collect(),
        Encoding::Base64 => base64::engine::general_purpose::STANDARD.encode(bytes),
        Encoding::Base64url => base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
    }
}

fn data_bytes(v: &Option<Value>) -> Vec<u8> {
    match v {
        Some(Value::String(s)) => s.as_bytes().to_vec(),
        Some(other) => other.to_string().into_bytes(),
        None => Vec::new(),
    }
}

fn digest(alg: HashAlgorithm, data: &[u8]) -> Vec<u8> {
    match alg {
        HashAlgorithm::Sha256 => sha2::Sha256::digest(data).to_vec(),
        HashAlgorithm::Sha512 => sha2::Sha512::digest(data).to_vec(),
        HashAlgorithm::Sha1 => sha1::Sha1::digest(data).to_vec(),
        HashAlgorithm::Md5 => md5::Md5::digest(data).to_vec(),
    }
}

fn hmac_of(alg: HashAlgorithm, key: &[u8], data: &[u8]) -> Result<Vec<u8>, String> {
    fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Result<Vec<u8>, String> {
        let mut m = <M as hmac::digest::KeyInit>::new_from_slice(key)
            .map_err(|e| format!("invalid HMAC key: {e}"))?;
        m.update(data);
        Ok(m.finalize().into_bytes().to_vec())
    }
    match alg {
        HashAlgorithm::Sha256 => run::<Hmac<sha2::Sha256>>(key, data),
        HashAlgorithm::Sha512 => run::<Hmac<sha2::Sha512>>(key, data),
        HashAlgorithm::Sha1 => run::<Hmac<sha1::Sha1>>(key, data),
        HashAlgorithm::Md5 => Err("hmac takes sha256, sha512 or sha1, not md5".into()),
    }
}

/// The one secret field of a credential, as the HMAC key.
fn credential_secret(cred: &orcheo_core::node::CredentialValue) -> Result<String, String> {
    let fields: Vec<&str> = orcheo_vault::types::get(&cred.kind)
        .map(|t| t.secret_fields.to_vec())
        .unwrap_or_default();
    let secrets: Vec<&str> = fields
        .iter()
        .filter_map(|f| cred.data.get(*f).and_then(Value::as_str))
        .collect();
    match secrets.as_slice() {
        [one] => Ok(one.to_string()),
        _ => Err(format!(
            "credential `{}` (type {}) does not hold exactly one secret field, so it cannot be an HMAC key; use an `api_key` or `bearer` credential",
            cred.name, cred.kind
        )),
    }
}

#[async_trait]
impl Node for Crypto {
    fn spec(&self) -> NodeSpec {
        NodeSpec::new::<CryptoConfig, CryptoOutput>(
            "crypto",
            "Crypto",
            "utility",
            "Hashes data (sha256/sha512/sha1/md5), signs it with HMAC (key from the `key` credential's secret, or a non-secret `key` field), makes UUIDs (v4/v7) or random bytes; hex or base64. Outputs `{ \"result\": ... }`.",
        )
        .icon("key")
        .credential(
            "key",
            &[],
            false,
            "HMAC key: a credential with one secret field (e.g. `api_key` or `bearer`)",
        )
        .example("Checksum", json!({ "operation": "hash", "data": "{{ state.report }}", "algorithm": "sha256" }))
        .example("Sign a webhook body", json!({ "operation": "hmac", "data": "{{ input.body }}", "algorithm": "sha256", "encoding": "base64" }))
        .example("Request id", json!({ "operation": "uuid", "version": "v7" }))
        .example("Token", json!({ "operation": "random", "bytes": 24, "encoding": "base64url" }))
    }
    async fn run(&self, ctx: &NodeContext) -> Result<NodeResult, NodeError> {
        let c: CryptoConfig = ctx.config_as()?;
        let cfg = |m: String| NodeError::config(format!("node `{}`: {m}", ctx.node_id));
        let result = match c.operation {
            CryptoOperation::Hash => encode(&digest(c.algorithm, &data_bytes(&c.data)), c.encoding),
            CryptoOperation::Hmac => {
                let has_slot = ctx.credential_slots.iter().any(|(s, _)| s == "key");
                let key = match (has_slot, &c.key) {
                    (true, Some(_)) => {
                        return Err(cfg(
                            "give the HMAC key either as the `key` credential or as the `key` field, not both".into(),
                        ))
                    }
                    (true, None) => credential_secret(&*ctx.credential("key").await?).map_err(cfg)?,
                    (false, Some(k)) => k.clone(),
                    (false, None) => {
                        return Err(cfg(
                            "hmac needs a key: add \"credentials\": {\"key\": \"<credential name>\"} (or a non-secret `key` field)".into(),
                        ))
                    }
                };
                let mac =
                    hmac_of(c.algorithm, key.as_bytes(), &data_bytes(&c.data)).map_err(cfg)?;
                encode(&mac, c.encoding)
            }
            CryptoOperation::Uuid => match c.version {
                UuidVersion::V4 => uuid::Uuid::new_v4(),
                UuidVersion::V7 => uuid::Uuid::now_v7(),
            }
            .to_string(),
            CryptoOperation::Random => {
                let n = c.bytes.unwrap_or(32);
                if n == 0 || n > MAX_RANDOM_BYTES {
                    return Err(cfg(format!(
                        "`bytes` must be between 1 and {MAX_RANDOM_BYTES}, not {n}"
                    )));
                }
                let mut buf = vec![0u8; n];
                getrandom::fill(&mut buf).map_err(|e| {
                    NodeError::new("crypto", format!("no randomness available: {e}"))
                })?;
                encode(&buf, c.encoding)
            }
        };
        Ok(NodeOutput::output(json!({ "result": result })).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        let hex = |alg| encode(&digest(alg, b"abc"), Encoding::Hex);
        assert_eq!(
            hex(HashAlgorithm::Sha256),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex(HashAlgorithm::Sha1),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(hex(HashAlgorithm::Md5), "900150983cd24fb0d6963f7d28e17f72");
        assert!(hex(HashAlgorithm::Sha512).starts_with("ddaf35a193617aba"));
        assert_eq!(encode(&[0xfb, 0xff], Encoding::Base64), "+/8=");
        assert_eq!(encode(&[0xfb, 0xff], Encoding::Base64url), "-_8");
    }

    #[test]
    fn known_hmac() {
        // RFC 4231 test case 2.
        let mac = hmac_of(
            HashAlgorithm::Sha256,
            b"Jefe",
            b"what do ya want for nothing?",
        )
        .unwrap();
        assert_eq!(
            encode(&mac, Encoding::Hex),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(hmac_of(HashAlgorithm::Md5, b"k", b"d").is_err());
    }
}
