//! Every secret the process holds, and its removal from text that leaves
//! the process.
//!
//! Each [`Secret`](crate::Secret) registers itself here when it is made:
//! upstream keys, Google access tokens, signed JWT assertions, refresh
//! tokens, client secrets, the client key, the Redis URL. Upstream text goes
//! through [`redact`] before a translator sees it (bodies, stream events,
//! headers), so what translators produce holds no secret; so does text bound
//! for a client or a log that did not pass a translator - error messages,
//! the upstream's request id, passthrough bodies, log lines. [`redact`]
//! replaces each secret with `[redacted]` in every form it can take there:
//! as is, without a `Bearer ` prefix, URL-encoded (upper- and lowercase
//! escapes, `+` for spaces), JSON-escaped (also with `\/` and `\uXXXX`) and,
//! for a JWT, its signature part. One automaton matches them all in a
//! single pass; text without a secret costs one scan and no copy.
//!
//! Secrets shorter than [`MIN_LEN`] are not matched (they would match
//! ordinary text); the proxy warns about such keys at startup.
//!
//! A secret stays registered while anything holds it, and for at least
//! [`RETAIN`] after it was registered: an access token replaced in the cache
//! is still valid for a while, and an upstream answering a request made with
//! it may quote it after the request's copy is gone.
//!
//! The registry is process-wide: text from one proxy is scrubbed of the
//! secrets of every proxy in the process.

use aho_corasick::{AhoCorasick, MatchKind};
use std::borrow::Cow;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// The shortest secret that is matched.
pub const MIN_LEN: usize = 8;

/// What a secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// How long a secret stays registered after it was, even when nothing
/// holds it any more (longer than a Google access token lives).
pub const RETAIN: Duration = Duration::from_secs(2 * 3600);

#[derive(Default)]
struct Registry {
    /// Every secret registered, and when. One that only the registry holds
    /// is pruned at the next change once [`RETAIN`] has passed.
    secrets: Vec<(Arc<str>, Instant)>,
    matcher: Option<Arc<AhoCorasick>>,
}

static REGISTRY: RwLock<Registry> = RwLock::new(Registry {
    secrets: Vec::new(),
    matcher: None,
});

/// Adds a secret to the registry.
pub(crate) fn register(secret: &Arc<str>) {
    if secret.len() < MIN_LEN {
        return;
    }
    let mut registry = match REGISTRY.write() {
        Ok(r) => r,
        Err(poisoned) => poisoned.into_inner(),
    };
    let now = Instant::now();
    registry
        .secrets
        .retain(|(s, at)| Arc::strong_count(s) > 1 || now.duration_since(*at) < RETAIN);
    registry.secrets.push((secret.clone(), now));
    let mut needles: Vec<String> = registry
        .secrets
        .iter()
        .flat_map(|(s, _)| forms(s))
        .filter(|n| n.len() >= MIN_LEN)
        .collect();
    needles.sort_unstable();
    needles.dedup();
    registry.matcher = AhoCorasick::builder()
        .match_kind(MatchKind::LeftmostLongest)
        .build(&needles)
        .ok()
        .map(Arc::new);
}

fn matcher() -> Option<Arc<AhoCorasick>> {
    match REGISTRY.read() {
        Ok(r) => r.matcher.clone(),
        Err(poisoned) => poisoned.into_inner().matcher.clone(),
    }
}

/// `text` with every registered secret replaced by `[redacted]`.
pub fn redact(text: &str) -> Cow<'_, str> {
    match matcher() {
        Some(m) if m.is_match(text) => {
            let mut clean = String::with_capacity(text.len());
            m.replace_all_with(text, &mut clean, |_, _, out| {
                out.push_str(REDACTED);
                true
            });
            Cow::Owned(clean)
        }
        _ => Cow::Borrowed(text),
    }
}

/// Whether `secret` (or its key without `Bearer `) is too short to be
/// redacted.
pub(crate) fn too_short(secret: &str) -> bool {
    secret.strip_prefix("Bearer ").unwrap_or(secret).len() < MIN_LEN
}

/// [`redact`] for an owned string, without copying when it holds no secret.
pub(crate) fn redact_owned(text: String) -> String {
    match redact(&text) {
        Cow::Borrowed(_) => text,
        Cow::Owned(clean) => clean,
    }
}

/// [`redact`] for bytes (a translator's JSON output).
pub(crate) fn redact_bytes(bytes: Vec<u8>) -> Vec<u8> {
    match matcher() {
        Some(m) if m.is_match(&bytes) => {
            let mut clean = Vec::with_capacity(bytes.len());
            m.replace_all_with_bytes(&bytes, &mut clean, |_, _, out| {
                out.extend_from_slice(REDACTED.as_bytes());
                true
            });
            clean
        }
        _ => bytes,
    }
}

/// The forms a secret can take in text that leaves the process.
fn forms(secret: &str) -> Vec<String> {
    let mut bases = vec![secret.to_string()];
    if let Some(bare) = secret.strip_prefix("Bearer ") {
        bases.push(bare.to_string());
    }
    // A JWT: its signature alone is enough to replay it.
    for base in bases.clone() {
        let parts: Vec<&str> = base.split('.').collect();
        if let [_, _, signature] = parts.as_slice()
            && signature
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            bases.push((*signature).to_string());
        }
    }
    let mut out = Vec::new();
    for base in bases {
        out.push(url_encoded(&base, false, false));
        out.push(url_encoded(&base, true, false));
        out.push(url_encoded(&base, false, true));
        let json = serde_json::to_string(&base).unwrap_or_default();
        let json = json
            .strip_prefix('"')
            .and_then(|j| j.strip_suffix('"'))
            .unwrap_or(&json)
            .to_string();
        out.push(json.replace('/', "\\/"));
        out.push(ascii_json(&json).replace('/', "\\/"));
        out.push(ascii_json(&json));
        out.push(json);
        out.push(base);
    }
    out
}

/// Percent-encoding of everything but unreserved characters, with upper-
/// or lowercase hex digits, and `+` for spaces when `plus`.
fn url_encoded(s: &str, lower: bool, plus: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b' ' if plus => out.push('+'),
            b if b.is_ascii_alphanumeric() || b"-._~".contains(&b) => out.push(char::from(b)),
            b if lower => out.push_str(&format!("%{b:02x}")),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A JSON-escaped string with every non-ASCII character as `\uXXXX`.
fn ascii_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::Secret;

    #[test]
    fn every_form_of_a_secret_is_redacted() {
        let key = Secret::new("Bearer sk-live/abc+def ghi\"é-0123");
        let bare = "sk-live/abc+def ghi\"é-0123";
        let texts = [
            format!("bad key {bare} sent"),
            format!("header was {}", key.expose()),
            format!("form: key={}", url_encoded(bare, false, false)),
            format!("form: key={}", url_encoded(bare, true, false)),
            format!("form: key={}", url_encoded(bare, false, true)),
            format!("{{\"echo\":{}}}", serde_json::to_string(bare).unwrap()),
            r#"{"echo":"sk-live\/abc+def ghi\"\u00e9-0123"}"#.to_string(),
        ];
        for text in texts {
            let clean = redact(&text);
            assert!(clean.contains(REDACTED), "{text} -> {clean}");
            assert!(!clean.contains("abc"), "{text} -> {clean}");
        }
        assert!(matches!(redact("nothing secret here"), Cow::Borrowed(_)));
        drop(key);
    }

    #[test]
    fn a_jwt_signature_is_redacted_alone() {
        let _jwt =
            Secret::new("eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.c2lnbmF0dXJlLXBhcnQtb2YtdGhlLWp3dA");
        let clean = redact("invalid signature c2lnbmF0dXJlLXBhcnQtb2YtdGhlLWp3dA for x");
        assert_eq!(clean, "invalid signature [redacted] for x");
    }

    #[test]
    fn short_secrets_are_not_matched() {
        let _short = Secret::new("abc");
        assert_eq!(redact("abcdef abc"), "abcdef abc");
    }
}
