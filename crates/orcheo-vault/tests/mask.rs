//! Masking of raw and encoded secrets in text, bytes and JSON.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use orcheo_vault::{secret_strings, Masker};
use proptest::prelude::*;
use serde_json::json;

const SECRET: &str = "s3cr3t-T0ken/with+chars&more";

#[test]
fn raw_secret_is_masked_everywhere_it_appears() {
    let m = Masker::new([SECRET]);
    assert_eq!(
        m.mask_str(&format!("a {SECRET} b {SECRET}{SECRET}")),
        "a *** b ******"
    );
    assert_eq!(m.mask_str("nothing here"), "nothing here");
    assert!(matches!(
        m.mask_str("nothing here"),
        std::borrow::Cow::Borrowed(_)
    ));
    assert_eq!(
        m.mask_bytes(format!("x{SECRET}y").as_bytes()).as_ref(),
        b"x***y"
    );
}

#[test]
fn whole_value_base64_forms_are_masked() {
    let m = Masker::new([SECRET]);
    for encoded in [
        STANDARD.encode(SECRET),
        STANDARD_NO_PAD.encode(SECRET),
        URL_SAFE.encode(SECRET),
        URL_SAFE_NO_PAD.encode(SECRET),
    ] {
        let text = format!("token={encoded};");
        let out = m.mask_str(&text);
        assert_eq!(out, "token=***;", "{encoded}");
    }
}

#[test]
fn secret_inside_longer_base64_is_masked_at_every_alignment() {
    let secret = "hunter2hunter2-pass";
    let m = Masker::new([secret]);
    // Prefix lengths 5, 3 and 4 put the secret at byte offsets 2, 0 and 1 mod 3.
    for prefix in ["user:", "ab:", "abc:", "", "x", "xy"] {
        for suffix in ["", "!", "!!", ":tail"] {
            let plain = format!("{prefix}{secret}{suffix}");
            for engine in [&STANDARD, &URL_SAFE_NO_PAD] {
                let header = format!("Authorization: Basic {}", engine.encode(&plain));
                let out = m.mask_str(&header).into_owned();
                assert!(out.contains("***"), "{prefix:?}/{suffix:?}: {out}");
                // Decoding what is left must not give the secret back.
                let token = out.trim_start_matches("Authorization: Basic ");
                for piece in token.split("***") {
                    let decoded = STANDARD_NO_PAD
                        .decode(piece.trim_end_matches('='))
                        .or_else(|_| URL_SAFE_NO_PAD.decode(piece.trim_end_matches('=')))
                        .unwrap_or_default();
                    assert!(
                        !String::from_utf8_lossy(&decoded).contains("hunter2"),
                        "{prefix:?}/{suffix:?}: {out}"
                    );
                }
            }
        }
    }
}

#[test]
fn basic_auth_header_is_masked() {
    let m = Masker::new(["p@ssw0rd-long"]);
    for user in ["user", "ab", "abc", "a"] {
        let header = format!("Basic {}", STANDARD.encode(format!("{user}:p@ssw0rd-long")));
        let out = m.mask_str(&header);
        assert_ne!(out, header, "user {user}");
        assert!(out.contains("***"));
    }
}

#[test]
fn url_encoded_forms_are_masked() {
    let secret = "pa ss&wo/rd+x=y";
    let m = Masker::new([secret]);
    for encoded in [
        "pa+ss%26wo%2Frd%2Bx%3Dy",   // form
        "pa%20ss%26wo%2Frd%2Bx%3Dy", // RFC 3986
        "pa%20ss%26wo/rd%2Bx%3Dy",   // path
        "pa%20ss%26wo%2frd%2bx%3dy", // lowercase hex
    ] {
        let url = format!("https://h/cb?token={encoded}&next=1");
        assert_eq!(
            m.mask_str(&url),
            "https://h/cb?token=***&next=1",
            "{encoded}"
        );
    }
}

#[test]
fn json_escaped_secret_is_masked_in_serialized_json() {
    let secret = r#"quote"back\slash"#;
    let m = Masker::new([secret]);
    let doc = json!({ "output": format!("the key is {secret}!") });
    let text = serde_json::to_string(&doc).unwrap();
    assert!(!text.contains(secret), "escaping changes the text");
    let masked = m.mask_str(&text);
    assert_eq!(masked, r#"{"output":"the key is ***!"}"#);
    // Serialized twice (a JSON string holding JSON).
    let twice = serde_json::to_string(&json!({ "log": text })).unwrap();
    let masked = m.mask_str(&twice);
    assert!(!masked.contains("quote"), "{masked}");
    assert!(!masked.contains("slash"), "{masked}");
}

#[test]
fn nested_values_including_object_keys_and_numbers() {
    let m = Masker::new(["tok-123456", "98765432"]);
    let mut v = json!({
        "a": ["x tok-123456 y", { "deep": "tok-123456" }],
        "tok-123456": "as a key",
        "n": 98765432,
        "m": 198765432_u64,
        "keep": 42,
        "flag": true,
        "nothing": null,
        "***": "existing",
    });
    m.mask_value(&mut v);
    assert_eq!(v["a"][0], "x *** y");
    assert_eq!(v["a"][1]["deep"], "***");
    assert_eq!(v["n"], "***");
    assert_eq!(v["m"], "1***");
    assert_eq!(v["keep"], 42);
    assert_eq!(v["flag"], true);
    assert_eq!(v["***"], "existing");
    assert_eq!(v["*** (2)"], "as a key", "{v}");
    assert!(!v.to_string().contains("tok-123456"));
    // Key order is preserved.
    let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys[0], "a");
    assert_eq!(keys[1], "*** (2)");
    // `masked` leaves the original alone.
    let orig = json!({ "s": "tok-123456" });
    assert_eq!(m.masked(&orig), json!({ "s": "***" }));
    assert_eq!(orig["s"], "tok-123456");
}

#[test]
fn overlapping_secrets_leave_no_fragment() {
    let m = Masker::new(["abcdefgh", "efghijkl"]);
    let out = m.mask_str("xx abcdefghijkl yy");
    assert!(!out.contains("efgh"), "{out}");
    assert!(!out.contains("abcd"), "{out}");
    // A secret that contains another.
    let m = Masker::new(["key-1234", "my-key-1234-long"]);
    assert_eq!(m.mask_str("[my-key-1234-long]"), "[***]");
    assert_eq!(m.mask_str("[key-1234]"), "[***]");
    // Replacements that join into a new match are masked again.
    let m = Masker::new(["****"]);
    assert_eq!(m.mask_str("*****"), "***");
}

#[test]
fn short_secrets_are_masked_only_as_whole_strings() {
    let m = Masker::new(["abc", "7", "    "]);
    assert_eq!(m.mask_str("abc"), "***");
    assert_eq!(m.mask_str("7"), "***");
    assert_eq!(m.mask_str("    "), "***");
    assert_eq!(m.mask_str("abcdef and 1776"), "abcdef and 1776");
    assert_eq!(m.mask_str("a    b"), "a    b");
    let mut v = json!({ "pin": "abc", "text": "abc def", "n": 7, "m": 17 });
    m.mask_value(&mut v);
    assert_eq!(
        v,
        json!({ "pin": "***", "text": "abc def", "n": "***", "m": 17 })
    );
    assert_eq!(m.mask_bytes(b"abc").as_ref(), b"***");
    assert_eq!(m.mask_bytes(b"abcd").as_ref(), b"abcd");
}

#[test]
fn empty_masker_and_extend_merge() {
    let m = Masker::new(Vec::<String>::new());
    assert!(m.is_empty());
    assert_eq!(m.mask_str("anything"), "anything");
    let m = Masker::new([""]);
    assert!(m.is_empty());

    let mut a = Masker::new(["first-secret"]);
    let b = Masker::new(["second-secret", "xy"]);
    let both = a.merge(&b);
    assert_eq!(both.secret_count(), 3);
    assert_eq!(both.mask_str("first-secret second-secret"), "*** ***");
    assert_eq!(both.mask_str("xy"), "***");
    assert_eq!(a.mask_str("second-secret"), "second-secret");
    a.extend(["second-secret"]);
    assert_eq!(a.mask_str("second-secret"), "***");
    a.extend(["second-secret"]);
    assert_eq!(a.secret_count(), 2, "duplicates are ignored");
    let debug = format!("{a:?}");
    assert!(!debug.contains("secret-"), "{debug}");
}

#[test]
fn secret_strings_collects_leaves_under_secret_fields() {
    let data = json!({
        "username": "alice",
        "password": "pw-1",
        "tokens": { "access": "at-1", "nested": ["rt-1", 12345] },
        "url": "postgres://alice:p%40ss-word@db:5432/app",
        "auth": { "type": "bearer", "token": "bt-1" },
        "empty": "",
    });
    let got: Vec<String> = secret_strings(
        &data,
        &[
            "password",
            "tokens",
            "url",
            "auth.token",
            "missing",
            "empty",
        ],
    )
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(
        got,
        vec![
            "pw-1",
            "at-1",
            "rt-1",
            "12345",
            "postgres://alice:p%40ss-word@db:5432/app",
            "bt-1",
            "p@ss-word"
        ]
    );
    assert!(!got.contains(&"alice".to_string()));
    assert!(!got.contains(&"bearer".to_string()));
    // The extracted URL password is masked when it shows up alone.
    let m = Masker::new(&got);
    assert_eq!(
        m.mask_str("auth failed for p@ss-word"),
        "auth failed for ***"
    );
}

/// How a secret is embedded into text in the property test.
#[derive(Debug, Clone, Copy)]
enum Embed {
    Raw,
    B64Std,
    B64Url,
    Form,
    Rfc3986,
    Json,
    InsideB64(usize),
}

fn form(s: &str) -> String {
    let mut out = String::new();
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn rfc3986(s: &str) -> String {
    let mut out = String::new();
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Base64 characters wholly determined by `secret` when it sits `lead` bytes into a stream
/// (independent re-derivation of what the masker must catch).
fn b64_core(secret: &[u8], lead: usize) -> String {
    let mut buf = vec![b'Q'; lead];
    buf.extend_from_slice(secret);
    let enc = STANDARD_NO_PAD.encode(&buf);
    let start = (8 * lead).div_ceil(6);
    let end = 8 * (lead + secret.len()) / 6;
    enc[start..end].to_string()
}

fn secret_strategy() -> impl Strategy<Value = String> {
    // Printable ASCII without `*` (the replacement itself), plus some non-ASCII.
    let ch = prop_oneof![
        8 => (0x20u8..0x7f).prop_filter("no *", |b| *b != b'*').prop_map(|b| b as char),
        1 => prop::sample::select(vec!['é', 'ß', '€', '中', '🔑', '\n', '\t']),
    ];
    prop::collection::vec(ch, 8..32).prop_map(|v| v.into_iter().collect())
}

fn embed_strategy() -> impl Strategy<Value = Embed> {
    prop_oneof![
        Just(Embed::Raw),
        Just(Embed::B64Std),
        Just(Embed::B64Url),
        Just(Embed::Form),
        Just(Embed::Rfc3986),
        Just(Embed::Json),
        (0usize..9).prop_map(Embed::InsideB64),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn masked_output_never_contains_the_secret_or_its_encodings(
        secret in secret_strategy(),
        before in "[ -)+-~]{0,24}",
        after in "[ -)+-~]{0,24}",
        embed in embed_strategy(),
    ) {
        let m = Masker::new([&secret]);
        let inner = match embed {
            Embed::Raw => secret.clone(),
            Embed::B64Std => STANDARD.encode(&secret),
            Embed::B64Url => URL_SAFE_NO_PAD.encode(&secret),
            Embed::Form => form(&secret),
            Embed::Rfc3986 => rfc3986(&secret),
            Embed::Json => {
                let q = serde_json::to_string(&secret).unwrap();
                q[1..q.len() - 1].to_string()
            }
            Embed::InsideB64(lead) => {
                let mut bytes = before.as_bytes()[..lead.min(before.len())].to_vec();
                bytes.extend_from_slice(secret.as_bytes());
                bytes.extend_from_slice(after.as_bytes());
                STANDARD.encode(&bytes)
            }
        };
        let text = format!("{before}{inner}{after}");
        let out = m.mask_str(&text);
        prop_assert!(out.contains("***"), "nothing masked in {:?}", text);
        let json_escaped = {
            let q = serde_json::to_string(&secret).unwrap();
            q[1..q.len() - 1].to_string()
        };
        let mut forms = vec![
            secret.clone(),
            STANDARD.encode(&secret),
            STANDARD_NO_PAD.encode(&secret),
            URL_SAFE.encode(&secret),
            URL_SAFE_NO_PAD.encode(&secret),
            form(&secret),
            rfc3986(&secret),
            json_escaped,
        ];
        for lead in 0..3 {
            forms.push(b64_core(secret.as_bytes(), lead));
        }
        for f in &forms {
            prop_assert!(!out.contains(f.as_str()), "{:?} still in {:?} (from {:?})", f, out, text);
        }
        // The same holds for bytes and for JSON values.
        let bytes_out = m.mask_bytes(text.as_bytes());
        prop_assert_eq!(bytes_out.as_ref(), out.as_bytes());
        let mut v = json!({ "k": text, text.clone(): [text] });
        m.mask_value(&mut v);
        let rendered = v.to_string();
        prop_assert!(!rendered.contains(secret.as_str()));
    }
}
