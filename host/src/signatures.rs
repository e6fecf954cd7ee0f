//! Provider reasoning state for Chat clients.
//!
//! Gemini 3 wants each function call's thought signature back, and Claude
//! wants the thinking blocks of the turn that made a tool call back, byte
//! for byte, at the start of that turn. Responses clients carry both
//! themselves, in the reasoning items llmproxy puts in the output; Chat
//! clients only send back the assistant's text and the call ids. For them
//! the proxy remembers, per function call, the reasoning items that came
//! before it in the answer (and where they stood relative to the answer's
//! text), and puts them back in place when the history comes back. Bounded
//! (entries and bytes) and kept 24 h. Call ids come from the provider or
//! from random bits, so one client cannot pick up another's state.

use llmproxy_api::ENVELOPE_PREFIX;
use llmproxy_api::responses::{Item, Role};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const MAX_ENTRIES: usize = 20_000;
const MAX_BYTES: usize = 64 << 20;
const TTL: Duration = Duration::from_secs(24 * 3600);

/// The reasoning items before one call: `Some(item)`, or `None` where an
/// assistant message stood between them and the call.
type Run = Vec<Option<Value>>;

/// The call ids and reasoning runs remembered.
#[derive(Debug, Default)]
pub(crate) struct SignatureCache {
    inner: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    map: HashMap<String, (Run, usize, Instant)>,
    order: VecDeque<String>,
    bytes: usize,
}

/// Whether an output item is a reasoning item carrying llmproxy provider
/// state.
fn carries_state(item: &Value) -> bool {
    item.get("type").and_then(Value::as_str) == Some("reasoning")
        && item
            .get("encrypted_content")
            .and_then(Value::as_str)
            .is_some_and(|e| e.starts_with(ENVELOPE_PREFIX))
}

/// Collects runs from a sequence of finished output items.
#[derive(Debug, Default)]
pub(crate) struct Learner {
    run: Run,
}

impl Learner {
    /// Takes the next finished item; remembers the run before a call.
    pub(crate) fn item(&mut self, cache: &SignatureCache, item: &Value) {
        match item.get("type").and_then(Value::as_str) {
            Some("reasoning") if carries_state(item) => {
                let mut item = item.clone();
                if let Some(obj) = item.as_object_mut() {
                    // Ids belong to the answer they came in.
                    obj.remove("id");
                }
                self.run.push(Some(item));
            }
            Some("message") if !self.run.is_empty() => self.run.push(None),
            Some("function_call") => {
                let run = std::mem::take(&mut self.run);
                if let Some(call_id) = item.get("call_id").and_then(Value::as_str)
                    && run.iter().any(Option::is_some)
                {
                    cache.insert(call_id, run);
                }
            }
            _ => {}
        }
    }
}

impl SignatureCache {
    /// Remembers the runs of a complete output.
    pub(crate) fn learn(&self, output: &[Value]) {
        let mut learner = Learner::default();
        for item in output {
            learner.item(self, item);
        }
    }

    fn insert(&self, call_id: &str, run: Run) {
        let Ok(mut e) = self.inner.lock() else {
            return;
        };
        let now = Instant::now();
        let size = call_id.len()
            + run
                .iter()
                .flatten()
                .map(|v| v.to_string().len())
                .sum::<usize>();
        if let Some((_, old, _)) = e.map.insert(call_id.to_string(), (run, size, now + TTL)) {
            e.bytes -= old;
        } else {
            e.order.push_back(call_id.to_string());
        }
        e.bytes += size;
        while e.order.len() > MAX_ENTRIES
            || e.bytes > MAX_BYTES
            || e.order
                .front()
                .and_then(|k| e.map.get(k))
                .is_some_and(|(_, _, exp)| *exp <= now)
        {
            let Some(old) = e.order.pop_front() else {
                break;
            };
            if let Some((_, size, _)) = e.map.remove(&old) {
                e.bytes -= size;
            }
        }
    }

    fn get(&self, call_id: &str) -> Option<Run> {
        let e = self.inner.lock().ok()?;
        e.map
            .get(call_id)
            .filter(|(_, _, exp)| *exp > Instant::now())
            .map(|(run, _, _)| run.clone())
    }

    /// Puts remembered reasoning back before each function call whose
    /// reasoning the client did not send, in the layout of the original
    /// answer (relative to the assistant messages before the call).
    pub(crate) fn restore(&self, items: &mut Vec<Item>) {
        let mut i = 0;
        while i < items.len() {
            let Item::FunctionCall(call) = &items[i] else {
                i += 1;
                continue;
            };
            let Some(run) = self.get(&call.call_id) else {
                i += 1;
                continue;
            };
            let messages = run.iter().filter(|r| r.is_none()).count();
            let is_assistant_message =
                |item: &Item| matches!(item, Item::Message(m) if m.role == Role::Assistant);
            // The answer's messages must be right before the call, with no
            // reasoning of the client's own before them.
            let start = i.checked_sub(messages);
            let fits = start.is_some_and(|s| {
                items[s..i].iter().all(is_assistant_message)
                    && (s == 0 || !matches!(items[s - 1], Item::Reasoning(_)))
            });
            let Some(start) = start.filter(|_| fits) else {
                i += 1;
                continue;
            };
            let mut own = items.drain(start..i).collect::<Vec<_>>().into_iter();
            let mut rebuilt = Vec::new();
            for entry in run {
                match entry {
                    Some(v) => {
                        if let Ok(item) = serde_json::from_value::<Item>(v) {
                            rebuilt.push(item);
                        }
                    }
                    None => rebuilt.extend(own.next()),
                }
            }
            rebuilt.extend(own);
            let added = rebuilt.len() - messages;
            items.splice(start..start, rebuilt);
            i += added + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn restore(cache: &SignatureCache, items: Value) -> Value {
        let mut items: Vec<Item> = serde_json::from_value(items).unwrap();
        cache.restore(&mut items);
        serde_json::to_value(&items).unwrap()
    }

    #[test]
    fn gemini_carriers_go_back_before_their_call() {
        let cache = SignatureCache::default();
        cache.learn(&[
            json!({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hi"}]}),
            json!({"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "pxy1.AAA"}),
            json!({"type": "function_call", "call_id": "call_x", "name": "f", "arguments": "{}"}),
            json!({"type": "function_call", "call_id": "call_y", "name": "f", "arguments": "{}"}),
        ]);
        let v = restore(
            &cache,
            json!([
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "Hi"},
                {"type": "function_call", "call_id": "call_x", "name": "f", "arguments": "{}"},
                {"type": "function_call", "call_id": "call_y", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "call_x", "output": "1"}
            ]),
        );
        assert_eq!(v[1]["role"], "assistant");
        assert_eq!(v[2]["encrypted_content"], "pxy1.AAA");
        assert!(v[2].get("id").is_none(), "ids are not replayed");
        assert_eq!(v[3]["call_id"], "call_x");
        assert_eq!(v[4]["call_id"], "call_y");
        assert_eq!(v.as_array().unwrap().len(), 6);
    }

    #[test]
    fn claude_thinking_goes_back_before_the_answer_text() {
        let cache = SignatureCache::default();
        let thinking = json!({"type": "reasoning", "summary": [{"type": "summary_text", "text": "t"}], "encrypted_content": "pxy1.T"});
        cache.learn(&[
            thinking.clone(),
            json!({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]}),
            json!({"type": "function_call", "call_id": "toolu_1", "name": "f", "arguments": "{}"}),
        ]);
        let history = json!([
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "Checking."},
            {"type": "function_call", "call_id": "toolu_1", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "toolu_1", "output": "1"}
        ]);
        let v = restore(&cache, history.clone());
        assert_eq!(v[1], thinking);
        assert_eq!(v[2]["role"], "assistant");
        assert_eq!(v[3]["call_id"], "toolu_1");
        // Restoring twice (the client resends the same history) is stable.
        let mut items: Vec<Item> = serde_json::from_value(v.clone()).unwrap();
        cache.restore(&mut items);
        assert_eq!(serde_json::to_value(&items).unwrap(), v);
        // A history whose layout differs gets nothing.
        let v = restore(
            &cache,
            json!([{"role": "user", "content": "q"},
                {"type": "function_call", "call_id": "toolu_1", "name": "f", "arguments": "{}"}]),
        );
        assert_eq!(v.as_array().unwrap().len(), 2);
    }

    #[test]
    fn is_bounded() {
        let cache = SignatureCache::default();
        let run = || vec![Some(json!({"type": "reasoning"}))];
        for i in 0..MAX_ENTRIES + 10 {
            cache.insert(&format!("call_{i}"), run());
        }
        assert!(cache.get("call_0").is_none());
        assert!(cache.get(&format!("call_{}", MAX_ENTRIES + 9)).is_some());
        let e = cache.inner.lock().unwrap();
        assert_eq!(e.map.len(), MAX_ENTRIES);
        assert_eq!(e.bytes, e.map.values().map(|(_, s, _)| s).sum::<usize>());
    }
}
