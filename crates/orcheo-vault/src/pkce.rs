//! PKCE (RFC 7636) for the OAuth2 authorization code flow, and the random `state` that ties a
//! callback to the request that started it.

use std::fmt;

use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::encode;
use crate::error::{random_fill, Result, VaultError};

/// Shortest verifier RFC 7636 allows.
pub const VERIFIER_MIN_LEN: usize = 43;
/// Longest verifier RFC 7636 allows.
pub const VERIFIER_MAX_LEN: usize = 128;
/// The only challenge method Orcheo sends (`plain` offers no protection).
pub const CHALLENGE_METHOD: &str = "S256";

/// A PKCE verifier (kept server-side until the callback) and its S256 challenge (sent to the
/// provider); `Debug` hides the verifier.
#[derive(Clone)]
pub struct Pkce {
    verifier: Zeroizing<String>,
    challenge: String,
}

impl fmt::Debug for Pkce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkce")
            .field("verifier", &"<redacted>")
            .field("challenge", &self.challenge)
            .finish()
    }
}

impl Pkce {
    /// A fresh pair: 32 random bytes as a 43-character base64url verifier, and its challenge.
    pub fn new() -> Result<Pkce> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        random_fill(bytes.as_mut())?;
        Pkce::from_verifier(&encode::b64url(bytes.as_ref()))
    }

    /// Rebuilds the pair from a stored verifier, checking RFC 7636's length and alphabet.
    pub fn from_verifier(verifier: &str) -> Result<Pkce> {
        let len = verifier.len();
        let alphabet_ok = verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
        if !(VERIFIER_MIN_LEN..=VERIFIER_MAX_LEN).contains(&len) || !alphabet_ok {
            return Err(VaultError::Malformed(format!(
                "a PKCE code verifier must be {VERIFIER_MIN_LEN}-{VERIFIER_MAX_LEN} characters of \
                 A-Z a-z 0-9 - . _ ~ (got {len} characters)"
            )));
        }
        Ok(Pkce {
            challenge: challenge_for(verifier),
            verifier: Zeroizing::new(verifier.to_string()),
        })
    }

    /// The verifier, sent with the token request.
    pub fn verifier(&self) -> &str {
        &self.verifier
    }

    /// The S256 challenge, sent with the authorization request.
    pub fn challenge(&self) -> &str {
        &self.challenge
    }

    /// Always `S256`.
    pub fn method(&self) -> &'static str {
        CHALLENGE_METHOD
    }
}

/// The S256 challenge of a verifier: base64url (no padding) of its SHA-256.
pub fn challenge_for(verifier: &str) -> String {
    encode::b64url(&Sha256::digest(verifier.as_bytes()))
}

/// A random OAuth `state` value (32 bytes, base64url), unguessable so a forged callback is refused.
pub fn random_state() -> Result<String> {
    let mut bytes = [0u8; 32];
    random_fill(&mut bytes)?;
    Ok(encode::b64url(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b() {
        // The appendix's 32 octets, their base64url verifier, and its S256 challenge.
        let octets = [
            116, 24, 223, 180, 151, 153, 224, 37, 79, 250, 96, 125, 216, 173, 187, 186, 22, 212,
            37, 77, 105, 214, 191, 240, 91, 88, 5, 88, 83, 132, 141, 121,
        ];
        let verifier = encode::b64url(&octets);
        assert_eq!(verifier, "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
        let p = Pkce::from_verifier(&verifier).unwrap();
        assert_eq!(p.challenge(), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        assert_eq!(p.method(), "S256");
    }

    #[test]
    fn fresh_pairs_are_valid_and_distinct() {
        let a = Pkce::new().unwrap();
        let b = Pkce::new().unwrap();
        assert_ne!(a.verifier(), b.verifier());
        assert_eq!(a.verifier().len(), 43);
        assert!(Pkce::from_verifier(a.verifier()).is_ok());
        assert_eq!(challenge_for(a.verifier()), a.challenge());
        assert!(!format!("{a:?}").contains(a.verifier()));
        let s1 = random_state().unwrap();
        assert_eq!(s1.len(), 43);
        assert_ne!(s1, random_state().unwrap());
    }

    #[test]
    fn verifier_rules() {
        assert!(Pkce::from_verifier(&"a".repeat(42)).is_err());
        assert!(Pkce::from_verifier(&"a".repeat(43)).is_ok());
        assert!(Pkce::from_verifier(&"a".repeat(128)).is_ok());
        assert!(Pkce::from_verifier(&"a".repeat(129)).is_err());
        assert!(Pkce::from_verifier(&format!("{}+", "a".repeat(43))).is_err());
    }
}
