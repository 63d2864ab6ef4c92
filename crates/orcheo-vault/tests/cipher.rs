//! Sealing and opening: round trips, tampering, binding to row and version, wrong keys, rotation.

use orcheo_vault::{Aad, Keyring, MasterKey, Sealed, VaultError};

fn ring(byte: u8) -> Keyring {
    Keyring::new(MasterKey::from_bytes([byte; 32]))
}

fn aad() -> Aad {
    Aad::credential("cred-42", 3)
}

#[test]
fn round_trip_through_text_form() {
    let ring = ring(1);
    for plaintext in [
        &b""[..],
        b"x",
        b"{\"api_key\":\"sk-123\"}",
        &[0u8; 4096][..],
    ] {
        let sealed = ring.seal(&aad(), plaintext).unwrap();
        assert_eq!(sealed.key_id, ring.active().id());
        assert_eq!(sealed.ciphertext.len(), plaintext.len() + 16);
        let text = sealed.to_string();
        assert!(text.starts_with(&format!("v1.{}.", ring.active().id())));
        let parsed: Sealed = text.parse().unwrap();
        assert_eq!(parsed, sealed);
        assert_eq!(&ring.open(&aad(), &parsed).unwrap()[..], plaintext);
    }
}

#[test]
fn nonces_are_fresh() {
    let ring = ring(1);
    let a = ring.seal(&aad(), b"same").unwrap();
    let b = ring.seal(&aad(), b"same").unwrap();
    assert_ne!(a.nonce, b.nonce);
    assert_ne!(a.ciphertext, b.ciphertext);
}

#[test]
fn ciphertext_does_not_contain_plaintext() {
    let ring = ring(1);
    let sealed = ring.seal(&aad(), b"plain-secret-value").unwrap();
    let text = sealed.to_string();
    assert!(!text.contains("plain-secret-value"));
    assert!(!sealed
        .ciphertext
        .windows(18)
        .any(|w| w == b"plain-secret-value"));
}

fn assert_decrypt(err: VaultError) {
    match &err {
        VaultError::Decrypt { key_id, subject } => {
            let msg = err.to_string();
            assert!(msg.contains(key_id.as_str()), "{msg}");
            assert!(msg.contains(subject.as_str()), "{msg}");
            assert!(msg.contains("tampered with"), "{msg}");
        }
        other => panic!("expected Decrypt, got {other:?}"),
    }
}

#[test]
fn tampered_ciphertext_nonce_or_tag_fails_closed() {
    let ring = ring(1);
    let sealed = ring.seal(&aad(), b"the secret").unwrap();
    let body_len = sealed.ciphertext.len() - 16;

    let mut t = sealed.clone();
    t.ciphertext[0] ^= 1;
    assert_decrypt(ring.open(&aad(), &t).unwrap_err());

    let mut t = sealed.clone();
    t.nonce[11] ^= 0x80;
    assert_decrypt(ring.open(&aad(), &t).unwrap_err());

    let mut t = sealed.clone();
    t.ciphertext[body_len + 15] ^= 1; // last tag byte
    assert_decrypt(ring.open(&aad(), &t).unwrap_err());

    let mut t = sealed.clone();
    t.ciphertext.truncate(body_len); // tag cut off, replaced by body bytes
    t.ciphertext.extend_from_slice(&[0; 16]);
    assert_decrypt(ring.open(&aad(), &t).unwrap_err());

    let mut t = sealed.clone();
    t.ciphertext.push(0); // appended byte
    assert_decrypt(ring.open(&aad(), &t).unwrap_err());

    // The untouched value still opens.
    assert_eq!(&ring.open(&aad(), &sealed).unwrap()[..], b"the secret");
}

#[test]
fn ciphertext_moved_to_another_row_or_version_fails() {
    let ring = ring(1);
    let sealed = ring.seal(&Aad::credential("cred-1", 1), b"secret").unwrap();
    for other in [
        Aad::credential("cred-2", 1),
        Aad::credential("cred-1", 2),
        Aad::credential("cred-1", 0),
        Aad::credential("cred-", 11),
        Aad::new("webhook-secret", &["cred-1"]),
        Aad::new("credentials", &["cred-1"]),
    ] {
        let err = ring.open(&other, &sealed).unwrap_err();
        assert!(
            err.to_string().contains(other.subject()),
            "{err} should name {}",
            other.subject()
        );
        assert_decrypt(err);
    }
    assert!(ring.open(&Aad::credential("cred-1", 1), &sealed).is_ok());
}

#[test]
fn other_purposes_round_trip_and_are_separated() {
    let ring = ring(1);
    let aad = Aad::new("webhook-secret", &["trigger-9"]);
    let sealed = ring.seal(&aad, b"whsec").unwrap();
    assert_eq!(&ring.open(&aad, &sealed).unwrap()[..], b"whsec");
    assert_decrypt(
        ring.open(&Aad::new("webhook-secret", &["trigger-8"]), &sealed)
            .unwrap_err(),
    );
}

#[test]
fn keyring_without_the_key_reports_unknown_key() {
    let sealed = ring(1).seal(&aad(), b"secret").unwrap();
    let other = ring(2);
    match other.open(&aad(), &sealed).unwrap_err() {
        err @ VaultError::UnknownKey { .. } => {
            let msg = err.to_string();
            assert!(msg.contains(&sealed.key_id), "{msg}");
            assert!(msg.contains("rotated"), "{msg}");
        }
        other => panic!("expected UnknownKey, got {other:?}"),
    }
}

#[test]
fn wrong_key_under_a_forged_key_id_fails_to_decrypt() {
    // Someone relabels a value with the id of a key the keyring does hold: it still must not open.
    let sealed = ring(1).seal(&aad(), b"secret").unwrap();
    let other = ring(2);
    let mut forged = sealed.clone();
    forged.key_id = other.active().id().to_string();
    assert_decrypt(other.open(&aad(), &forged).unwrap_err());
}

#[test]
fn rotation_reseals_under_the_new_key_and_retiring_the_old_locks_old_values() {
    let k1 = MasterKey::from_bytes([1; 32]);
    let k2 = MasterKey::from_bytes([2; 32]);
    let (id1, id2) = (k1.id().to_string(), k2.id().to_string());
    let mut ring = Keyring::new(k1);
    let old = ring.seal(&aad(), b"rotate me").unwrap();
    assert_eq!(old.key_id, id1);

    assert!(ring.add(k2, true));
    assert_eq!(ring.active().id(), id2);
    // Old values still open while both keys are held.
    assert_eq!(&ring.open(&aad(), &old).unwrap()[..], b"rotate me");

    let new = ring.reseal(&aad(), &old).unwrap().expect("resealed");
    assert_eq!(new.key_id, id2);
    assert_eq!(&ring.open(&aad(), &new).unwrap()[..], b"rotate me");
    // Already under the active key: nothing to do.
    assert!(ring.reseal(&aad(), &new).unwrap().is_none());
    // Reseal checks the binding too.
    assert!(matches!(
        ring.reseal(&Aad::credential("cred-42", 4), &old),
        Err(VaultError::Decrypt { .. })
    ));

    assert!(
        ring.retire(&id2).is_err(),
        "the active key cannot be retired"
    );
    ring.retire(&id1).unwrap();
    assert!(matches!(
        ring.open(&aad(), &old),
        Err(VaultError::UnknownKey { key_id }) if key_id == id1
    ));
    assert_eq!(&ring.open(&aad(), &new).unwrap()[..], b"rotate me");
}

#[test]
fn json_helpers_round_trip() {
    let ring = ring(7);
    let value = serde_json::json!({ "token": "abc", "n": 1 });
    let sealed = ring.seal_json(&aad(), &value).unwrap();
    assert_eq!(ring.open_json(&aad(), &sealed).unwrap(), value);
    let not_json = ring.seal(&aad(), b"\xff not json").unwrap();
    assert!(matches!(
        ring.open_json(&aad(), &not_json),
        Err(VaultError::Malformed(_))
    ));
}

#[test]
fn sealed_serde_uses_text_form() {
    let ring = ring(3);
    let sealed = ring.seal(&aad(), b"v").unwrap();
    let json = serde_json::to_value(&sealed).unwrap();
    assert_eq!(json, serde_json::Value::String(sealed.to_string()));
    let back: Sealed = serde_json::from_value(json).unwrap();
    assert_eq!(back, sealed);
    assert!(serde_json::from_value::<Sealed>(serde_json::json!("v1.x.y")).is_err());
    let debug = format!("{sealed:?}");
    assert!(debug.contains(&sealed.key_id));
}
