//! Key sources: the environment variable, the key file and passphrases.

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use orcheo_vault::{Aad, KeySource, Keyring, MasterKey, VaultError};
use zeroize::Zeroizing;

/// A fresh empty directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "orcheo-vault-test-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn key_file_is_created_private_and_reloads_with_the_same_key() {
    let dir = TempDir::new();
    let path = dir.0.join("nested").join("vault.key");
    let (ring, created) = Keyring::load_or_create_file(&path).unwrap();
    assert!(created);
    #[cfg(unix)]
    assert_eq!(mode(&path), 0o600);
    let doc: serde_json::Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["active"], ring.active().id());
    assert_eq!(doc["keys"][0]["id"], ring.active().id());
    assert!(doc["keys"][0]["created_at"]
        .as_str()
        .unwrap()
        .ends_with('Z'));

    let (again, created) = Keyring::load_or_create_file(&path).unwrap();
    assert!(!created);
    assert_eq!(again.active().id(), ring.active().id());
    // Same key, not just same id: what one seals the other opens.
    let aad = Aad::credential("c", 1);
    let sealed = ring.seal(&aad, b"s").unwrap();
    assert_eq!(&again.open(&aad, &sealed).unwrap()[..], b"s");
    // Through KeySource too.
    let loaded = Keyring::load(&KeySource::File(path.clone())).unwrap();
    assert_eq!(loaded.active().id(), ring.active().id());
    // No temporary files left behind.
    let names: Vec<_> = fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("vault.key")]);
}

#[cfg(unix)]
#[test]
fn group_or_world_accessible_key_file_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new();
    let path = dir.0.join("vault.key");
    Keyring::load_or_create_file(&path).unwrap();
    for bad in [0o640, 0o604, 0o620, 0o660] {
        fs::set_permissions(&path, fs::Permissions::from_mode(bad)).unwrap();
        let err = Keyring::load_file(&path).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, VaultError::KeyFile { .. }), "{msg}");
        assert!(msg.contains("chmod 600"), "{msg}");
        assert!(msg.contains(&format!("{bad:04o}")), "{msg}");
        assert!(Keyring::load_or_create_file(&path).is_err());
    }
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    assert!(Keyring::load_file(&path).is_ok());
    fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
    assert!(
        Keyring::load_file(&path).is_ok(),
        "read-only for the owner is fine"
    );
}

#[test]
fn save_file_replaces_atomically_and_keeps_rotation_state() {
    let dir = TempDir::new();
    let path = dir.0.join("vault.key");
    let (mut ring, _) = Keyring::load_or_create_file(&path).unwrap();
    let first = ring.active().id().to_string();
    ring.add(MasterKey::generate().unwrap(), true);
    ring.save_file(&path).unwrap();
    #[cfg(unix)]
    assert_eq!(mode(&path), 0o600);
    let back = Keyring::load_file(&path).unwrap();
    assert_eq!(back.active().id(), ring.active().id());
    assert_ne!(back.active().id(), first);
    assert!(back.get(&first).is_some());
    assert_eq!(fs::read_dir(&dir.0).unwrap().count(), 1);
}

#[test]
fn corrupt_or_missing_key_files_give_clear_errors() {
    let dir = TempDir::new();
    let missing = dir.0.join("none.key");
    let err = Keyring::load_file(&missing).unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
    assert!(err.to_string().contains("none.key"), "{err}");

    let path = dir.0.join("bad.key");
    {
        use std::io::Write;
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&path).unwrap();
        f.write_all(br#"{"version":1,"active":"a","keys":[{"id":"a","key":"bm90LWEta2V5"}]}"#)
            .unwrap();
    }
    let err = Keyring::load_file(&path).unwrap_err();
    assert!(err.to_string().contains("not base64 of 32 bytes"), "{err}");
    assert!(!err.to_string().contains("bm90LWEta2V5"), "{err}");
    // An existing bad file is never overwritten by load_or_create.
    assert!(Keyring::load_or_create_file(&path).is_err());
    assert!(fs::read_to_string(&path).unwrap().contains("bm90LWEta2V5"));

    let err = Keyring::load_file(&dir.0).unwrap_err();
    assert!(matches!(err, VaultError::KeyFile { .. }), "{err}");
}

#[test]
fn concurrent_first_start_agrees_on_one_key() {
    let dir = TempDir::new();
    let path = dir.0.join("vault.key");
    let ids: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| Keyring::load_or_create_file(&path).unwrap().0))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().active().id().to_string())
            .collect()
    });
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    let on_disk = Keyring::load_file(&path).unwrap();
    assert_eq!(on_disk.active().id(), ids[0]);
}

#[test]
fn env_value_accepts_base64_and_hex_first_is_active() {
    let k1 = [0x11u8; 32];
    let k2: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(7).wrapping_add(250));
    let id1 = MasterKey::from_bytes(k1).id().to_string();
    let id2 = MasterKey::from_bytes(k2).id().to_string();
    use base64::Engine;
    let e = base64::engine::general_purpose::STANDARD;
    let u = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let hex: String = k2.iter().map(|b| format!("{b:02X}")).collect();
    for value in [
        e.encode(k1),
        format!("{},{}", e.encode(k1), e.encode(k2)),
        format!(" {} , {} ", u.encode(k1), hex),
        format!("{},{}", e.encode(k1), hex.to_lowercase()),
        format!("{},{},", e.encode(k1), u.encode(k2)),
    ] {
        let ring = Keyring::from_env_value(&value).unwrap();
        assert_eq!(ring.active().id(), id1, "{value}");
        if value.contains(',') && value.split(',').filter(|s| !s.trim().is_empty()).count() > 1 {
            assert!(ring.get(&id2).is_some(), "{value}");
        }
    }
    // Reversed order: the other key is active.
    let ring = Keyring::from_env_value(&format!("{hex},{}", e.encode(k1))).unwrap();
    assert_eq!(ring.active().id(), id2);
    let ring = Keyring::load(&KeySource::Env(Zeroizing::new(e.encode(k1)))).unwrap();
    assert_eq!(ring.active().id(), id1);
}

#[test]
fn env_value_errors_name_the_variable_and_format_but_not_the_value() {
    use base64::Engine;
    let good = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
    let short = base64::engine::general_purpose::STANDARD.encode(b"sixteen-byte-key");
    for (value, entry) in [
        ("hunter2-not-a-key".to_string(), "entry 1 of 1"),
        (short.clone(), "entry 1 of 1"),
        (format!("{good},{short}"), "entry 2 of 2"),
        (format!("{good},zzzz{}", "g".repeat(60)), "entry 2 of 2"),
        ("".to_string(), "empty"),
        (" , ".to_string(), "empty"),
    ] {
        let err = Keyring::from_env_value(&value).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, VaultError::KeySource(_)), "{msg}");
        assert!(msg.contains("ORCHEO_VAULT_KEY"), "{msg}");
        assert!(msg.contains(entry), "{msg}");
        if !value.trim().trim_matches(',').trim().is_empty() {
            assert!(msg.contains("base64") && msg.contains("64 hex"), "{msg}");
        }
        for part in value.split(',') {
            let part = part.trim();
            if part.len() >= 4 {
                assert!(!msg.contains(part), "message echoes the value: {msg}");
            }
        }
    }
}

#[test]
fn passphrase_derivation_is_deterministic_per_salt() {
    let salt_a = [1u8; 16];
    let salt_b = [2u8; 16];
    let a1 = MasterKey::from_passphrase("correct horse battery", &salt_a).unwrap();
    let a2 = MasterKey::from_passphrase("correct horse battery", &salt_a).unwrap();
    let b = MasterKey::from_passphrase("correct horse battery", &salt_b).unwrap();
    let c = MasterKey::from_passphrase("correct horse battery!", &salt_a).unwrap();
    assert_eq!(a1.id(), a2.id());
    assert_eq!(a1.export_base64().as_str(), a2.export_base64().as_str());
    assert_ne!(a1.id(), b.id());
    assert_ne!(a1.id(), c.id());
    // Not a bare hash: the derived key differs from SHA-256 of the passphrase.
    let ring = Keyring::load(&KeySource::Passphrase {
        passphrase: Zeroizing::new("correct horse battery".into()),
        salt: salt_a.to_vec(),
    })
    .unwrap();
    assert_eq!(ring.active().id(), a1.id());

    let err = MasterKey::from_passphrase("correct horse battery", &[0u8; 15]).unwrap_err();
    assert!(err.to_string().contains("at least 16"), "{err}");
    let err = MasterKey::from_passphrase("short", &salt_a).unwrap_err();
    assert!(err.to_string().contains("too short"), "{err}");
    assert!(!err.to_string().contains("short\""));
}

#[test]
fn generated_keys_differ_and_export_round_trips() {
    let a = MasterKey::generate().unwrap();
    let b = MasterKey::generate().unwrap();
    assert_ne!(a.id(), b.id());
    assert!(a.created_at().is_some());
    let exported = a.export_base64();
    assert_eq!(exported.len(), 44);
    let ring = Keyring::from_env_value(&exported).unwrap();
    assert_eq!(ring.active().id(), a.id());
    assert!(!format!("{a:?}").contains(exported.as_str()));
    assert!(!format!("{ring:?}").contains(exported.as_str()));
}
