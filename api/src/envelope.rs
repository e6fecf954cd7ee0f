//! Reasoning envelopes.
//!
//! Opaque provider state that a client must send back - Gemini thought
//! signatures, Claude thinking signatures and redacted thinking - rides in a
//! canonical `reasoning` item's `encrypted_content` as `pxy1.` followed by
//! base64url (unpadded) JSON: `{"p": "<provider>", ...provider fields}`.
//! Every provider recognises its own envelopes and ignores the others'.

use crate::ENVELOPE_PREFIX;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

/// Wraps provider state: `{"p": provider, ...fields}`.
pub fn seal(provider: &str, fields: Map<String, Value>) -> String {
    let mut obj = Map::new();
    obj.insert("p".into(), Value::String(provider.into()));
    obj.extend(fields);
    let json = serde_json::to_vec(&obj).unwrap_or_default();
    format!("{ENVELOPE_PREFIX}{}", URL_SAFE_NO_PAD.encode(json))
}

/// The fields of an envelope sealed by `provider`, or `None` when
/// `encrypted_content` is not an llmproxy envelope or belongs to another
/// provider.
pub fn open(provider: &str, encrypted_content: &str) -> Option<Map<String, Value>> {
    let b64 = encrypted_content.strip_prefix(ENVELOPE_PREFIX)?;
    let bytes = URL_SAFE_NO_PAD.decode(b64.trim_end_matches('=')).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(obj) if obj.get("p").and_then(Value::as_str) == Some(provider) => Some(obj),
        _ => None,
    }
}

/// [`open`], but only when the envelope was sealed for `model` (field `m`):
/// signatures are valid only for the model that made them.
pub fn open_for_model(
    provider: &str,
    encrypted_content: &str,
    model: &str,
) -> Option<Map<String, Value>> {
    open(provider, encrypted_content).filter(|env| {
        env.get("m")
            .and_then(Value::as_str)
            .is_none_or(|m| m == model)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn seal_and_open() {
        let mut f = Map::new();
        f.insert(
            "sigs".into(),
            json!([{"a": {"call": "call_1"}, "s": "Sig+/=="}]),
        );
        let e = seal("gemini", f);
        assert!(e.starts_with("pxy1.") && !e.contains('+') && !e.contains('='));
        let opened = open("gemini", &e).unwrap();
        assert_eq!(opened["sigs"][0]["s"], "Sig+/==");
        assert!(
            open("anthropic", &e).is_none(),
            "other providers' envelopes are ignored"
        );
        assert!(open("gemini", "gAAAAB-openai-blob").is_none());
        assert!(open("gemini", "pxy1.!!!").is_none());
        let mut f = Map::new();
        f.insert("m".into(), json!("gemini-3-pro"));
        let e = seal("gemini", f);
        assert!(open_for_model("gemini", &e, "gemini-3-pro").is_some());
        assert!(open_for_model("gemini", &e, "gemini-3-flash").is_none());
    }
}
