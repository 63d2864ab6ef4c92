//! Masking: replaces every secret value, and the common encodings of it, with `***` in text, bytes
//! and JSON before anything is persisted or streamed.
//!
//! For each secret of at least [`MIN_SUBSTRING_LEN`] bytes the masker looks for:
//! - the raw text;
//! - its JSON string escaping, once and twice (a secret with `"` or `\` inside serialised JSON, or
//!   inside a JSON string that was itself serialised);
//! - standard and URL-safe base64, with and without padding;
//! - base64 *inside a longer base64 string* (`Basic base64("user:" + secret)`): the secret is encoded
//!   at each of the three byte alignments and only the characters wholly determined by the secret's
//!   own bytes are kept (when at least 8 remain);
//! - percent-encoding: form style (`+` for space), RFC 3986 (`%20`), RFC 3986 keeping `/` (URL paths),
//!   JavaScript's `encodeURIComponent`, each with upper- and lowercase hex; and form-encoded base64.
//!
//! Matching is leftmost-longest over all patterns at once (Aho-Corasick), repeated until nothing
//! matches, so overlapping secrets or variants never leave a fragment that still matches.
//!
//! Secrets shorter than [`MIN_SUBSTRING_LEN`] bytes (or only whitespace) are masked only where a
//! whole string equals them: masking every `on`, `42` or `abc` inside ordinary text would corrupt
//! logs and outputs while protecting almost nothing, since a 1–3 character secret is guessable anyway.
//! Base64 alignment leftovers: up to two characters on each side of a masked base64 core depend
//! partly on the secret's first or last byte; they reveal at most a few bits and stay.

use std::borrow::Cow;
use std::fmt;

use aho_corasick::{AhoCorasick, MatchKind};
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::Value;
use zeroize::Zeroizing;

/// What every masked secret becomes.
pub const REPLACEMENT: &str = "***";
/// Secrets at least this long are masked wherever they occur inside text; shorter ones only as whole
/// strings.
pub const MIN_SUBSTRING_LEN: usize = 4;
/// Shortest base64 core (secret inside a longer base64 string) worth matching: shorter cores would
/// match ordinary base64 by chance.
const MIN_BASE64_CORE: usize = 8;

/// Masks a fixed set of secrets; cheap to clone and share across threads.
#[derive(Clone, Default)]
pub struct Masker {
    /// Secrets masked wherever they occur (and their encodings).
    secrets: Vec<Zeroizing<String>>,
    /// Secrets masked only when a whole string equals them.
    whole: Vec<Zeroizing<String>>,
    matcher: Option<AhoCorasick>,
    patterns: usize,
    /// The matcher could not be built (absurdly many patterns): fail closed and mask everything.
    broken: bool,
}

impl fmt::Debug for Masker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Masker")
            .field("secrets", &(self.secrets.len() + self.whole.len()))
            .field("patterns", &self.patterns)
            .finish()
    }
}

impl Masker {
    /// A masker for these secrets (empty strings are ignored).
    pub fn new<I, S>(secrets: I) -> Masker
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut masker = Masker::default();
        masker.extend(secrets);
        masker
    }

    /// Adds more secrets and rebuilds the matcher.
    pub fn extend<I, S>(&mut self, secrets: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for secret in secrets {
            let secret = secret.as_ref();
            if secret.is_empty() {
                continue;
            }
            let list = if secret.len() < MIN_SUBSTRING_LEN || secret.trim().is_empty() {
                &mut self.whole
            } else {
                &mut self.secrets
            };
            if !list.iter().any(|s| s.as_str() == secret) {
                list.push(Zeroizing::new(secret.to_string()));
            }
        }
        self.rebuild();
    }

    /// A masker for the secrets of both.
    pub fn merge(&self, other: &Masker) -> Masker {
        let mut out = self.clone();
        out.extend(
            other
                .secrets
                .iter()
                .chain(other.whole.iter())
                .map(|s| s.as_str()),
        );
        out
    }

    /// Whether there is nothing to mask.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty() && self.whole.is_empty()
    }

    /// How many distinct secrets are masked.
    pub fn secret_count(&self) -> usize {
        self.secrets.len() + self.whole.len()
    }

    fn rebuild(&mut self) {
        let mut patterns: Vec<Zeroizing<String>> = Vec::new();
        for secret in &self.secrets {
            for v in variants(secret) {
                if v.len() >= MIN_SUBSTRING_LEN && !patterns.iter().any(|p| **p == *v) {
                    patterns.push(v);
                }
            }
        }
        self.patterns = patterns.len();
        if patterns.is_empty() {
            self.matcher = None;
            self.broken = false;
            return;
        }
        match AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(patterns.iter().map(|p| p.as_bytes()))
        {
            Ok(ac) => {
                self.matcher = Some(ac);
                self.broken = false;
            }
            Err(_) => {
                self.matcher = None;
                self.broken = true;
            }
        }
    }

    /// `text` with every secret (and encoding of one) replaced by `***`; borrowed when unchanged.
    pub fn mask_str<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if self.broken {
            return fail_closed(text);
        }
        if self.whole.iter().any(|s| s.as_str() == text) {
            return Cow::Owned(REPLACEMENT.to_string());
        }
        let Some(ac) = &self.matcher else {
            return Cow::Borrowed(text);
        };
        let mut current = Cow::Borrowed(text);
        // Each pass strictly shortens the text (patterns are longer than the replacement), so this
        // ends; a second pass only runs when replacements joined into a new match.
        while ac.is_match(current.as_ref()) {
            let mut out = String::with_capacity(current.len());
            let mut last = 0;
            for m in ac.find_iter(current.as_ref()) {
                out.push_str(&current[last..m.start()]);
                out.push_str(REPLACEMENT);
                last = m.end();
            }
            out.push_str(&current[last..]);
            current = Cow::Owned(out);
        }
        current
    }

    /// Bytes with every secret (and encoding of one) replaced by `***`; borrowed when unchanged.
    pub fn mask_bytes<'a>(&self, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        if self.broken {
            return if bytes.is_empty() {
                Cow::Borrowed(bytes)
            } else {
                Cow::Owned(REPLACEMENT.as_bytes().to_vec())
            };
        }
        if self.whole.iter().any(|s| s.as_bytes() == bytes) {
            return Cow::Owned(REPLACEMENT.as_bytes().to_vec());
        }
        let Some(ac) = &self.matcher else {
            return Cow::Borrowed(bytes);
        };
        let mut current = Cow::Borrowed(bytes);
        while ac.is_match(current.as_ref()) {
            let mut out = Vec::with_capacity(current.len());
            let mut last = 0;
            for m in ac.find_iter(current.as_ref()) {
                out.extend_from_slice(&current[last..m.start()]);
                out.extend_from_slice(REPLACEMENT.as_bytes());
                last = m.end();
            }
            out.extend_from_slice(&current[last..]);
            current = Cow::Owned(out);
        }
        current
    }

    /// Masks a JSON value in place: every string, every object key, and numbers whose text holds a
    /// secret (those become the string `***`).
    pub fn mask_value(&self, value: &mut Value) {
        if self.is_empty() {
            return;
        }
        match value {
            Value::String(s) => {
                if let Cow::Owned(masked) = self.mask_str(s) {
                    *s = masked;
                }
            }
            Value::Number(n) => {
                let text = n.to_string();
                if let Cow::Owned(masked) = self.mask_str(&text) {
                    *value = Value::String(masked);
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.mask_value(v)),
            Value::Object(map) => {
                map.values_mut().for_each(|v| self.mask_value(v));
                if map
                    .keys()
                    .any(|k| matches!(self.mask_str(k), Cow::Owned(_)))
                {
                    let old = std::mem::take(map);
                    let entries: Vec<(String, Option<String>, Value)> = old
                        .into_iter()
                        .map(|(key, v)| match self.mask_str(&key) {
                            Cow::Owned(masked) => (key, Some(masked), v),
                            Cow::Borrowed(_) => (key, None, v),
                        })
                        .collect();
                    // Keys without secrets keep their names; a masked key that would collide
                    // with another gets a suffix, so no entry is lost.
                    let kept: std::collections::HashSet<String> = entries
                        .iter()
                        .filter(|(_, masked, _)| masked.is_none())
                        .map(|(key, _, _)| key.clone())
                        .collect();
                    for (key, masked, v) in entries {
                        let key = match masked {
                            None => key,
                            Some(base) => {
                                let mut name = base.clone();
                                let mut n = 2;
                                while kept.contains(&name) || map.contains_key(&name) {
                                    name = format!("{base} ({n})");
                                    n += 1;
                                }
                                name
                            }
                        };
                        map.insert(key, v);
                    }
                }
            }
            Value::Null | Value::Bool(_) => {}
        }
    }

    /// A masked copy of a JSON value.
    pub fn masked(&self, value: &Value) -> Value {
        let mut copy = value.clone();
        self.mask_value(&mut copy);
        copy
    }
}

fn fail_closed(text: &str) -> Cow<'_, str> {
    if text.is_empty() {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(REPLACEMENT.to_string())
    }
}

/// Every text form of `secret` the masker looks for.
fn variants(secret: &str) -> Vec<Zeroizing<String>> {
    let bytes = secret.as_bytes();
    let mut out: Vec<Zeroizing<String>> = Vec::new();
    let mut push = |s: String| {
        let s = Zeroizing::new(s);
        if !out.contains(&s) {
            out.push(s);
        }
    };
    push(secret.to_string());
    // JSON string escaping, once and twice.
    let once = json_escape(secret);
    push(json_escape(&once));
    push(once);
    // Whole-value base64.
    let std_padded = STANDARD.encode(bytes);
    push(STANDARD_NO_PAD.encode(bytes));
    push(URL_SAFE.encode(bytes));
    push(URL_SAFE_NO_PAD.encode(bytes));
    // Base64 inside a longer base64 string, at each alignment.
    for core in base64_cores(bytes) {
        push(core.replace('+', "-").replace('/', "_"));
        push(core);
    }
    // Percent-encodings (and form-encoded base64, as in a query string).
    push(percent(std_padded.as_bytes(), keep_form, true, true));
    push(std_padded);
    for upper in [true, false] {
        push(percent(bytes, keep_form, true, upper));
        push(percent(bytes, keep_rfc3986, false, upper));
        push(percent(bytes, keep_path, false, upper));
        push(percent(bytes, keep_uri_component, false, upper));
    }
    out
}

/// The base64 characters of `bytes` at byte offsets 0, 1 and 2 of a longer stream that depend only
/// on `bytes` (standard alphabet), keeping those at least [`MIN_BASE64_CORE`] long.
fn base64_cores(bytes: &[u8]) -> Vec<String> {
    let mut cores = Vec::new();
    for lead in 0..3usize {
        let mut buf = vec![0u8; lead];
        buf.extend_from_slice(bytes);
        let encoded = STANDARD_NO_PAD.encode(&buf);
        // Character i covers bits [6i, 6i+6); the secret's bits are [8*lead, 8*(lead+n)).
        let start = (8 * lead).div_ceil(6);
        let end = (8 * (lead + bytes.len())) / 6;
        if end > start && end - start >= MIN_BASE64_CORE {
            cores.push(encoded[start..end].to_string());
        }
        buf.iter_mut().for_each(|b| *b = 0);
    }
    cores
}

/// The secret as it appears between the quotes of a JSON string.
fn json_escape(s: &str) -> String {
    let quoted = Value::String(s.to_string()).to_string();
    quoted[1..quoted.len() - 1].to_string()
}

fn percent(bytes: &[u8], keep: fn(u8) -> bool, space_plus: bool, upper: bool) -> String {
    let digits: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if keep(b) {
            out.push(b as char);
        } else if b == b' ' && space_plus {
            out.push('+');
        } else {
            out.push('%');
            out.push(digits[(b >> 4) as usize] as char);
            out.push(digits[(b & 15) as usize] as char);
        }
    }
    out
}

/// `application/x-www-form-urlencoded` (WHATWG): alphanumerics and `*-._` stay.
fn keep_form(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'*' | b'-' | b'.' | b'_')
}

/// RFC 3986 unreserved characters stay.
fn keep_rfc3986(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 unreserved plus `/` (path segments, Python's `quote` default).
fn keep_path(b: u8) -> bool {
    keep_rfc3986(b) || b == b'/'
}

/// JavaScript's `encodeURIComponent`.
fn keep_uri_component(b: u8) -> bool {
    keep_rfc3986(b) || matches!(b, b'!' | b'*' | b'\'' | b'(' | b')')
}

/// The secret leaf strings of a credential's data, to feed a [`Masker`]: every string (and number,
/// as text) under each secret field (dotted paths such as `auth.token` reach into nested objects),
/// plus the password inside any `scheme://user:password@host` URL among them.
pub fn secret_strings(data: &Value, secret_fields: &[&str]) -> Vec<Zeroizing<String>> {
    let mut out = Vec::new();
    for field in secret_fields {
        let mut node = Some(data);
        for part in field.split('.') {
            node = node.and_then(|n| n.get(part));
        }
        if let Some(node) = node {
            collect_leaves(node, &mut out);
        }
    }
    let mut extra = Vec::new();
    for s in &out {
        if let Some(password) = url_password(s) {
            extra.push(password);
        }
    }
    for s in extra {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

fn collect_leaves(node: &Value, out: &mut Vec<Zeroizing<String>>) {
    match node {
        Value::String(s) if !s.is_empty() => {
            let s = Zeroizing::new(s.clone());
            if !out.contains(&s) {
                out.push(s);
            }
        }
        Value::Number(n) => {
            let s = Zeroizing::new(n.to_string());
            if !out.contains(&s) {
                out.push(s);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_leaves(v, out)),
        Value::Object(map) => map.values().for_each(|v| collect_leaves(v, out)),
        _ => {}
    }
}

/// The percent-decoded password of a `scheme://user:password@host...` URL.
fn url_password(s: &str) -> Option<Zeroizing<String>> {
    let rest = &s[s.find("://")? + 3..];
    let authority = rest.split(['/', '?', '#']).next()?;
    let userinfo = &authority[..authority.rfind('@')?];
    let password = &userinfo[userinfo.find(':')? + 1..];
    if password.is_empty() {
        return None;
    }
    Some(Zeroizing::new(percent_decode(password)))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex_val(bytes[i + 1]), hex_val(bytes[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_core_lengths_follow_alignment() {
        // 9 bytes at lead 0: chars [0, 12) all determined.
        let cores = base64_cores(b"123456789");
        assert_eq!(cores[0], STANDARD_NO_PAD.encode(b"123456789"));
        assert_eq!(cores.len(), 3);
        // lead 1: chars [2, 13); lead 2: chars [3, 14) → 11 chars each.
        assert_eq!(cores[1].len(), 11);
        assert_eq!(cores[2].len(), 11);
    }

    #[test]
    fn percent_forms() {
        assert_eq!(percent(b"a b/&+", keep_form, true, true), "a+b%2F%26%2B");
        assert_eq!(
            percent(b"a b/&+", keep_rfc3986, false, true),
            "a%20b%2F%26%2B"
        );
        assert_eq!(percent(b"a b/", keep_path, false, false), "a%20b/");
    }

    #[test]
    fn url_password_extraction() {
        assert_eq!(
            url_password("postgres://u:p%40ss@host:5432/db")
                .as_deref()
                .map(String::as_str),
            Some("p@ss")
        );
        assert_eq!(
            url_password("mongodb+srv://user:pw@a,b/x?y=1")
                .as_deref()
                .map(String::as_str),
            Some("pw")
        );
        assert!(url_password("https://host/path?x=a:b@c").is_none());
        assert!(url_password("https://user@host").is_none());
        assert!(url_password("no url").is_none());
    }

    #[test]
    fn percent_decode_is_lenient() {
        assert_eq!(percent_decode("a%2Fb%zz%4"), "a/b%zz%4");
    }
}
