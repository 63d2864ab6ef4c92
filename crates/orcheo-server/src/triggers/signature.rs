//! Verifying that a webhook request comes from who it claims, over the raw request bytes and
//! in constant time: the Standard Webhooks scheme, GitHub, Stripe, Slack, and a plain shared
//! secret in a header. Each failure names what was wrong so the sender's owner can fix it.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// How a webhook's sender signs its requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Scheme {
    /// Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>`),
    /// with a `whsec_<base64>` secret. Svix and many providers use it.
    StandardWebhooks,
    /// GitHub: `X-Hub-Signature-256: sha256=<hex>` over the body.
    Github,
    /// Stripe: `Stripe-Signature: t=<unix>,v1=<hex>` over `t.body`.
    Stripe,
    /// Slack: `X-Slack-Signature: v0=<hex>` over `v0:timestamp:body`, with
    /// `X-Slack-Request-Timestamp`.
    Slack,
    /// A shared secret the sender puts verbatim in a header.
    SharedSecret {
        /// The header (default `X-Webhook-Secret`).
        #[serde(default = "default_secret_header")]
        header: String,
    },
}

fn default_secret_header() -> String {
    "x-webhook-secret".into()
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// A header the scheme needs is absent.
    #[error("the request lacks the `{0}` header this webhook's signature scheme needs")]
    Missing(&'static str),
    /// A header is present but not in the scheme's format.
    #[error("the `{header}` header is malformed: {why}")]
    Malformed {
        /// Which header.
        header: &'static str,
        /// What is wrong.
        why: String,
    },
    /// The signed timestamp is too far from now (a replay or a wrong clock).
    #[error("the request's timestamp is {age_secs} s away from the server's clock; at most {tolerance_secs} s is accepted (a replayed request, or a sender with a wrong clock)")]
    Stale {
        /// Distance from now, in seconds.
        age_secs: i64,
        /// The tolerance.
        tolerance_secs: i64,
    },
    /// No signature matches: a tampered body or a different secret.
    #[error("the signature does not match the body: the body was changed, or the sender signs with a different secret")]
    Mismatch,
    /// The configured secret cannot be used with this scheme.
    #[error("the webhook's secret is unusable: {0}")]
    BadSecret(String),
}

/// What a verified request says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The sender's message id, for replay protection (when the scheme has one).
    pub message_id: Option<String>,
}

/// The request parts verification needs: a header lookup (case-insensitive) and the raw body.
pub struct Request<'a> {
    /// Returns a header's value by lowercase name.
    pub header: &'a dyn Fn(&str) -> Option<String>,
    /// The body exactly as received.
    pub body: &'a [u8],
}

/// Checks `req` against `scheme` with `secret`, at `now` (unix seconds), accepting timestamps
/// within `tolerance_secs` of it.
pub fn verify(
    scheme: &Scheme,
    secret: &str,
    req: &Request<'_>,
    now: i64,
    tolerance_secs: i64,
) -> Result<Verified, SignatureError> {
    match scheme {
        Scheme::StandardWebhooks => standard(secret, req, now, tolerance_secs),
        Scheme::Github => {
            let sig = need(req, "x-hub-signature-256")?;
            let hex = sig
                .strip_prefix("sha256=")
                .ok_or(SignatureError::Malformed {
                    header: "x-hub-signature-256",
                    why: "expected `sha256=<hex digest>`".into(),
                })?;
            let want = orcheo_store::unhex(hex).ok_or(SignatureError::Malformed {
                header: "x-hub-signature-256",
                why: "the digest is not hexadecimal".into(),
            })?;
            check(secret.as_bytes(), &[req.body], &[want])?;
            Ok(Verified {
                message_id: (req.header)("x-github-delivery"),
            })
        }
        Scheme::Stripe => {
            let header = need(req, "stripe-signature")?;
            let mut t = None;
            let mut sigs = Vec::new();
            for part in header.split(',') {
                match part.trim().split_once('=') {
                    Some(("t", v)) => t = v.trim().parse::<i64>().ok(),
                    Some(("v1", v)) => {
                        if let Some(s) = orcheo_store::unhex(v.trim()) {
                            sigs.push(s)
                        }
                    }
                    _ => {}
                }
            }
            let t = t.ok_or(SignatureError::Malformed {
                header: "stripe-signature",
                why: "no `t=<unix time>` element".into(),
            })?;
            if sigs.is_empty() {
                return Err(SignatureError::Malformed {
                    header: "stripe-signature",
                    why: "no `v1=<hex>` signature".into(),
                });
            }
            fresh(t, now, tolerance_secs)?;
            check(
                secret.as_bytes(),
                &[t.to_string().as_bytes(), b".", req.body],
                &sigs,
            )?;
            // Stripe's event id is in the body; the timestamp and signature identify a delivery.
            let id = serde_json::from_slice::<serde_json::Value>(req.body)
                .ok()
                .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(String::from));
            Ok(Verified { message_id: id })
        }
        Scheme::Slack => {
            let ts = need(req, "x-slack-request-timestamp")?;
            let t: i64 = ts.trim().parse().map_err(|_| SignatureError::Malformed {
                header: "x-slack-request-timestamp",
                why: "not a unix time in seconds".into(),
            })?;
            let sig = need(req, "x-slack-signature")?;
            let hex = sig.strip_prefix("v0=").ok_or(SignatureError::Malformed {
                header: "x-slack-signature",
                why: "expected `v0=<hex digest>`".into(),
            })?;
            let want = orcheo_store::unhex(hex).ok_or(SignatureError::Malformed {
                header: "x-slack-signature",
                why: "the digest is not hexadecimal".into(),
            })?;
            fresh(t, now, tolerance_secs)?;
            check(
                secret.as_bytes(),
                &[b"v0:", ts.trim().as_bytes(), b":", req.body],
                &[want],
            )?;
            Ok(Verified { message_id: None })
        }
        Scheme::SharedSecret { header } => {
            let name = header.to_ascii_lowercase();
            let got = (req.header)(&name).ok_or(SignatureError::Missing("shared secret"))?;
            // Hash both so the comparison takes the same time whatever the lengths.
            let (a, b) = (
                Sha256::digest(got.as_bytes()),
                Sha256::digest(secret.as_bytes()),
            );
            if orcheo_store::constant_time_eq(&a, &b) {
                Ok(Verified { message_id: None })
            } else {
                Err(SignatureError::Mismatch)
            }
        }
    }
}

fn standard(
    secret: &str,
    req: &Request<'_>,
    now: i64,
    tolerance_secs: i64,
) -> Result<Verified, SignatureError> {
    let key = standard_key(secret)?;
    let id = need(req, "webhook-id")?;
    let ts = need(req, "webhook-timestamp")?;
    let t: i64 = ts.trim().parse().map_err(|_| SignatureError::Malformed {
        header: "webhook-timestamp",
        why: "not a unix time in seconds".into(),
    })?;
    let header = need(req, "webhook-signature")?;
    let sigs: Vec<Vec<u8>> = header
        .split_whitespace()
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .collect();
    if sigs.is_empty() {
        return Err(SignatureError::Malformed {
            header: "webhook-signature",
            why: "no `v1,<base64>` signature".into(),
        });
    }
    fresh(t, now, tolerance_secs)?;
    check(
        &key,
        &[id.as_bytes(), b".", ts.trim().as_bytes(), b".", req.body],
        &sigs,
    )?;
    Ok(Verified {
        message_id: Some(id),
    })
}

/// The key bytes of a Standard Webhooks secret (`whsec_` + base64; the prefix is optional).
pub fn standard_key(secret: &str) -> Result<Vec<u8>, SignatureError> {
    let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| {
            SignatureError::BadSecret(format!(
                "a Standard Webhooks secret is `whsec_` followed by base64 ({e})"
            ))
        })
}

/// Signs like a Standard Webhooks sender (tests, and senders that want to call us).
pub fn standard_sign(
    secret: &str,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, SignatureError> {
    let key = standard_key(secret)?;
    let mac = mac(
        &key,
        &[
            id.as_bytes(),
            b".",
            timestamp.to_string().as_bytes(),
            b".",
            body,
        ],
    )?;
    Ok(format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac)
    ))
}

/// HMAC-SHA256 of the concatenated parts, as hex (how GitHub, Stripe and Slack write theirs).
pub fn hmac_hex(key: &[u8], parts: &[&[u8]]) -> Result<String, SignatureError> {
    Ok(orcheo_store::hex(&mac(key, parts)?))
}

/// HMAC-SHA256 of the concatenated parts.
fn mac(key: &[u8], parts: &[&[u8]]) -> Result<Vec<u8>, SignatureError> {
    let mut m = <HmacSha256 as Mac>::new_from_slice(key)
        .map_err(|e| SignatureError::BadSecret(e.to_string()))?;
    for p in parts {
        m.update(p);
    }
    Ok(m.finalize().into_bytes().to_vec())
}

/// Ok when one of `wanted` is the HMAC of `parts` (each compared in constant time).
fn check(key: &[u8], parts: &[&[u8]], wanted: &[Vec<u8>]) -> Result<(), SignatureError> {
    let got = mac(key, parts)?;
    // Check every candidate (no early exit on the first match's position).
    let mut ok = false;
    for w in wanted {
        ok |= orcheo_store::constant_time_eq(&got, w);
    }
    if ok {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

fn fresh(t: i64, now: i64, tolerance: i64) -> Result<(), SignatureError> {
    let age = (now - t).abs();
    if age > tolerance {
        Err(SignatureError::Stale {
            age_secs: age,
            tolerance_secs: tolerance,
        })
    } else {
        Ok(())
    }
}

fn need(req: &Request<'_>, name: &'static str) -> Result<String, SignatureError> {
    (req.header)(name).ok_or(SignatureError::Missing(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn req<'a>(
        headers: &'a HashMap<&'static str, String>,
        body: &'a [u8],
    ) -> (impl Fn(&str) -> Option<String> + 'a, &'a [u8]) {
        (move |n: &str| headers.get(n).cloned(), body)
    }

    fn run(
        scheme: &Scheme,
        secret: &str,
        headers: &[(&'static str, String)],
        body: &[u8],
        now: i64,
    ) -> Result<Verified, SignatureError> {
        let h: HashMap<&'static str, String> = headers.iter().cloned().collect();
        let (f, b) = req(&h, body);
        verify(
            scheme,
            secret,
            &Request {
                header: &f,
                body: b,
            },
            now,
            300,
        )
    }

    const VECTOR_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const VECTOR_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const VECTOR_TS: i64 = 1614265330;
    const VECTOR_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const VECTOR_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn vector_headers(sig: &str, ts: i64) -> Vec<(&'static str, String)> {
        vec![
            ("webhook-id", VECTOR_ID.into()),
            ("webhook-timestamp", ts.to_string()),
            ("webhook-signature", sig.into()),
        ]
    }

    #[test]
    fn standard_webhooks_official_vector() {
        assert_eq!(
            standard_sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TS, VECTOR_BODY).expect("sign"),
            VECTOR_SIG
        );
        let ok = run(
            &Scheme::StandardWebhooks,
            VECTOR_SECRET,
            &vector_headers(VECTOR_SIG, VECTOR_TS),
            VECTOR_BODY,
            VECTOR_TS + 10,
        )
        .expect("the official vector verifies");
        assert_eq!(ok.message_id.as_deref(), Some(VECTOR_ID));
        // Several signatures (key rotation): any one matching is enough.
        let many = format!("v1,bm9wZQ== {VECTOR_SIG}");
        assert!(run(
            &Scheme::StandardWebhooks,
            VECTOR_SECRET,
            &vector_headers(&many, VECTOR_TS),
            VECTOR_BODY,
            VECTOR_TS
        )
        .is_ok());
    }

    #[test]
    fn standard_webhooks_rejections() {
        let s = &Scheme::StandardWebhooks;
        let h = vector_headers(VECTOR_SIG, VECTOR_TS);
        assert_eq!(
            run(s, VECTOR_SECRET, &h, br#"{"test": 2432232315}"#, VECTOR_TS),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            run(
                s,
                "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                &h,
                VECTOR_BODY,
                VECTOR_TS
            ),
            Err(SignatureError::Mismatch)
        );
        assert!(matches!(
            run(s, VECTOR_SECRET, &h, VECTOR_BODY, VECTOR_TS + 301),
            Err(SignatureError::Stale { age_secs: 301, .. })
        ));
        assert!(matches!(
            run(s, VECTOR_SECRET, &h, VECTOR_BODY, VECTOR_TS - 400),
            Err(SignatureError::Stale { .. })
        ));
        assert_eq!(
            run(s, VECTOR_SECRET, &h[..2], VECTOR_BODY, VECTOR_TS),
            Err(SignatureError::Missing("webhook-signature"))
        );
        assert!(matches!(
            run(
                s,
                VECTOR_SECRET,
                &vector_headers("v2,abc", VECTOR_TS),
                VECTOR_BODY,
                VECTOR_TS
            ),
            Err(SignatureError::Malformed { .. })
        ));
        assert!(matches!(
            run(s, "whsec_not base64!", &h, VECTOR_BODY, VECTOR_TS),
            Err(SignatureError::BadSecret(_))
        ));
        // The message says what to do.
        let e = run(s, VECTOR_SECRET, &h, VECTOR_BODY, VECTOR_TS + 1000).expect_err("stale");
        assert!(e.to_string().contains("replayed"), "{e}");
    }

    #[test]
    fn github_signature() {
        let secret = "It's a Secret to Everybody";
        let body = b"Hello, World!";
        // GitHub's documented example for this secret and payload.
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(
            format!(
                "sha256={}",
                hmac_hex(secret.as_bytes(), &[body]).expect("hmac")
            ),
            sig
        );
        let h = vec![
            ("x-hub-signature-256", sig.to_string()),
            ("x-github-delivery", "d-1".to_string()),
        ];
        let ok = run(&Scheme::Github, secret, &h, body, 0).expect("verifies");
        assert_eq!(ok.message_id.as_deref(), Some("d-1"));
        assert_eq!(
            run(&Scheme::Github, secret, &h, b"Hello, World?", 0),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            run(&Scheme::Github, "other", &h, body, 0),
            Err(SignatureError::Mismatch)
        );
        assert!(matches!(
            run(
                &Scheme::Github,
                secret,
                &[("x-hub-signature-256", "md5=00".into())],
                body,
                0
            ),
            Err(SignatureError::Malformed { .. })
        ));
    }

    #[test]
    fn stripe_signature() {
        let secret = "whsec_test_stripe";
        let body = br#"{"id":"evt_1","type":"charge.succeeded"}"#;
        let t = 1_700_000_000;
        let v1 =
            hmac_hex(secret.as_bytes(), &[t.to_string().as_bytes(), b".", body]).expect("hmac");
        let h = vec![("stripe-signature", format!("t={t},v1={v1},v0=ignored"))];
        let ok = run(&Scheme::Stripe, secret, &h, body, t + 5).expect("verifies");
        assert_eq!(ok.message_id.as_deref(), Some("evt_1"));
        assert_eq!(
            run(&Scheme::Stripe, secret, &h, br#"{"id":"evt_2"}"#, t),
            Err(SignatureError::Mismatch)
        );
        assert!(matches!(
            run(&Scheme::Stripe, secret, &h, body, t + 3600),
            Err(SignatureError::Stale { .. })
        ));
        assert!(matches!(
            run(
                &Scheme::Stripe,
                secret,
                &[("stripe-signature", format!("v1={v1}"))],
                body,
                t
            ),
            Err(SignatureError::Malformed { .. })
        ));
    }

    #[test]
    fn slack_signature() {
        // Slack's documented example.
        let secret = "8f742231b10e8888abcd99yyyzzz85a5";
        let ts = "1531420618";
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let expected = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
        assert_eq!(
            format!(
                "v0={}",
                hmac_hex(secret.as_bytes(), &[b"v0:", ts.as_bytes(), b":", body]).expect("hmac")
            ),
            expected
        );
        let h = vec![
            ("x-slack-request-timestamp", ts.to_string()),
            ("x-slack-signature", expected.to_string()),
        ];
        let now: i64 = 1531420618 + 60;
        assert!(run(&Scheme::Slack, secret, &h, body, now).is_ok());
        assert_eq!(
            run(&Scheme::Slack, secret, &h, b"token=changed", now),
            Err(SignatureError::Mismatch)
        );
        assert!(matches!(
            run(&Scheme::Slack, secret, &h, body, now + 600),
            Err(SignatureError::Stale { .. })
        ));
    }

    #[test]
    fn shared_secret_header() {
        let s = Scheme::SharedSecret {
            header: "X-Token".into(),
        };
        assert!(run(&s, "hunter2", &[("x-token", "hunter2".into())], b"", 0).is_ok());
        assert_eq!(
            run(&s, "hunter2", &[("x-token", "hunter3".into())], b"", 0),
            Err(SignatureError::Mismatch)
        );
        assert!(matches!(
            run(&s, "hunter2", &[], b"", 0),
            Err(SignatureError::Missing(_))
        ));
        let parsed: Scheme =
            serde_json::from_str(r#"{"type": "shared_secret"}"#).expect("default header");
        assert_eq!(
            parsed,
            Scheme::SharedSecret {
                header: "x-webhook-secret".into()
            }
        );
    }
}
