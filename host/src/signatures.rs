//! Thought signatures for Chat clients.
//!
//! Gemini 3 needs the signature of each function call back on that call in
//! the next request. Responses clients carry it themselves, in the reasoning
//! item llmproxy puts before the call; Chat clients only send back the
//! call's id. For them the proxy remembers `call_id → reasoning envelope`
//! (bounded, 24 h) and puts the reasoning item back in front of the call
//! when the history comes back. Call ids are minted by the translator from
//! random bits, so one client cannot pick up another's signatures.

use llmproxy_api::ENVELOPE_PREFIX;
use llmproxy_api::responses::{Item, Reasoning};
use serde_json::{Map, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const MAX_ENTRIES: usize = 20_000;
const TTL: Duration = Duration::from_secs(24 * 3600);

/// The call ids and envelopes remembered.
#[derive(Debug, Default)]
pub(crate) struct SignatureCache {
    inner: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    map: HashMap<String, (String, Instant)>,
    order: VecDeque<String>,
}

/// The envelope of a signature-only reasoning item.
fn carrier_envelope(item: &Value) -> Option<&str> {
    if item.get("type").and_then(Value::as_str) != Some("reasoning") {
        return None;
    }
    let summary_empty = item
        .get("summary")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    item.get("encrypted_content")
        .and_then(Value::as_str)
        .filter(|e| summary_empty && e.starts_with(ENVELOPE_PREFIX))
}

impl SignatureCache {
    /// Remembers the envelope of every carrier that directly precedes a
    /// function call in `output`.
    pub(crate) fn learn(&self, output: &[Value]) {
        for pair in output.windows(2) {
            if let (Some(env), Some("function_call")) = (
                carrier_envelope(&pair[0]),
                pair[1].get("type").and_then(Value::as_str),
            ) && let Some(call_id) = pair[1].get("call_id").and_then(Value::as_str)
            {
                self.insert(call_id, env);
            }
        }
    }

    fn insert(&self, call_id: &str, envelope: &str) {
        let Ok(mut e) = self.inner.lock() else {
            return;
        };
        let now = Instant::now();
        if e.map
            .insert(call_id.to_string(), (envelope.to_string(), now + TTL))
            .is_none()
        {
            e.order.push_back(call_id.to_string());
        }
        while e.order.len() > MAX_ENTRIES
            || e.order
                .front()
                .and_then(|k| e.map.get(k))
                .is_some_and(|(_, exp)| *exp <= now)
        {
            if let Some(old) = e.order.pop_front() {
                e.map.remove(&old);
            }
        }
    }

    fn get(&self, call_id: &str) -> Option<String> {
        let e = self.inner.lock().ok()?;
        e.map
            .get(call_id)
            .filter(|(_, exp)| *exp > Instant::now())
            .map(|(env, _)| env.clone())
    }

    /// Puts a remembered carrier in front of each function call that has
    /// none.
    pub(crate) fn restore(&self, items: &mut Vec<Item>) {
        let mut i = 0;
        while i < items.len() {
            if let Item::FunctionCall(call) = &items[i] {
                let has_carrier = i > 0 && matches!(&items[i - 1], Item::Reasoning(_));
                if !has_carrier && let Some(env) = self.get(&call.call_id) {
                    items.insert(
                        i,
                        Item::Reasoning(Reasoning {
                            id: None,
                            summary: Vec::new(),
                            content: None,
                            encrypted_content: Some(env),
                            status: None,
                            extra: Map::new(),
                        }),
                    );
                    i += 1;
                }
            }
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn learns_carriers_and_restores_them() {
        let cache = SignatureCache::default();
        cache.learn(&[
            json!({"type": "reasoning", "summary": [], "encrypted_content": "pxy1.AAA"}),
            json!({"type": "function_call", "call_id": "call_x", "name": "f", "arguments": "{}"}),
            json!({"type": "reasoning", "summary": [{"type": "summary_text", "text": "t"}], "encrypted_content": "pxy1.BBB"}),
            json!({"type": "function_call", "call_id": "call_y", "name": "f", "arguments": "{}"}),
        ]);
        let mut items: Vec<Item> = serde_json::from_value(json!([
            {"role": "user", "content": "q"},
            {"type": "function_call", "call_id": "call_x", "name": "f", "arguments": "{}"},
            {"type": "function_call", "call_id": "call_y", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_x", "output": "1"}
        ]))
        .unwrap();
        cache.restore(&mut items);
        let v = serde_json::to_value(&items).unwrap();
        assert_eq!(v[1]["encrypted_content"], "pxy1.AAA");
        assert_eq!(v[2]["call_id"], "call_x");
        assert_eq!(
            v[3]["call_id"], "call_y",
            "only signature-only carriers are remembered"
        );
        assert_eq!(items.len(), 5);
    }

    #[test]
    fn is_bounded() {
        let cache = SignatureCache::default();
        for i in 0..MAX_ENTRIES + 10 {
            cache.insert(&format!("call_{i}"), "pxy1.X");
        }
        assert!(cache.get("call_0").is_none());
        assert!(cache.get(&format!("call_{}", MAX_ENTRIES + 9)).is_some());
        assert_eq!(cache.inner.lock().unwrap().map.len(), MAX_ENTRIES);
    }
}
