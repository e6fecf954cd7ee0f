//! Conversation turns for providers that alternate two roles (Gemini's
//! `user`/`model`, Claude's `user`/`assistant`) and pair every tool call of a
//! turn with a result in the turn right after it.

use crate::ConvertError;
use serde_json::Value;

/// One provider turn: its role, its parts (content blocks), and which of
/// them are tool calls (model side) or tool results (user side).
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    pub role: &'static str,
    pub parts: Vec<Value>,
    /// `(part index, call id)` of the turn's tool calls or tool results.
    pub calls: Vec<(usize, String)>,
}

impl Turn {
    /// The turn as a provider message: `{"role": ..., <parts_key>: [...]}`,
    /// moving the parts rather than copying them.
    pub fn into_message(self, parts_key: &str) -> Value {
        let mut message = serde_json::Map::with_capacity(2);
        message.insert("role".into(), Value::from(self.role));
        message.insert(parts_key.into(), Value::Array(self.parts));
        Value::Object(message)
    }
}

/// The turns of a conversation, built item by item.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Turns(pub Vec<Turn>);

impl Turns {
    /// Appends a part to the last turn if it has `role`, else to a new turn
    /// (consecutive same-role items merge). `call` marks a tool call or tool
    /// result with its id.
    pub fn push(&mut self, role: &'static str, part: Value, call: Option<String>) {
        if self.0.last().is_none_or(|t| t.role != role) {
            self.0.push(Turn {
                role,
                parts: Vec::new(),
                calls: Vec::new(),
            });
        }
        if let Some(turn) = self.0.last_mut() {
            if let Some(id) = call {
                turn.calls.push((turn.parts.len(), id));
            }
            turn.parts.push(part);
        }
    }

    /// The last turn, if it has `role`.
    pub fn last_with_role(&mut self, role: &str) -> Option<&mut Turn> {
        self.0.last_mut().filter(|t| t.role == role)
    }

    /// Checks that every tool call of a `model_role` turn has exactly one
    /// result in the next turn and no result answers anything else, and puts
    /// the results first in that turn, in call order (other parts follow).
    /// Errors name `provider`, which rejects such conversations.
    pub fn pair_calls(&mut self, model_role: &str, provider: &str) -> Result<(), ConvertError> {
        for i in 0..self.0.len() {
            if self.0[i].role != model_role || self.0[i].calls.is_empty() {
                continue;
            }
            let calls: Vec<String> = self.0[i].calls.iter().map(|(_, id)| id.clone()).collect();
            let Some(next) = self.0.get_mut(i + 1) else {
                return Err(ConvertError::invalid(
                    format!(
                        "the function call {:?} has no function_call_output; send every tool result before continuing",
                        calls[0]
                    ),
                    "input",
                ));
            };
            let answered: Vec<&str> = next.calls.iter().map(|(_, id)| id.as_str()).collect();
            if let Some(missing) = calls.iter().find(|c| !answered.contains(&c.as_str())) {
                return Err(ConvertError::invalid(
                    format!(
                        "the function call {missing:?} has no function_call_output right after it; {provider} needs one result per call"
                    ),
                    "input",
                ));
            }
            if let Some(extra) = answered.iter().find(|a| !calls.iter().any(|c| c == *a)) {
                return Err(ConvertError::invalid(
                    format!(
                        "the function_call_output for {extra:?} does not answer the function calls right before it"
                    ),
                    "input",
                ));
            }
            if answered.len() != calls.len() {
                return Err(ConvertError::invalid(
                    "a function call has more than one function_call_output",
                    "input",
                ));
            }
            let positions: Vec<usize> = next.calls.iter().map(|(p, _)| *p).collect();
            let mut results: Vec<(usize, Value)> = next
                .calls
                .iter()
                .map(|(pos, id)| {
                    let order = calls.iter().position(|c| c == id).unwrap_or(usize::MAX);
                    (order, next.parts[*pos].clone())
                })
                .collect();
            results.sort_by_key(|(o, _)| *o);
            let others = next
                .parts
                .iter()
                .enumerate()
                .filter(|(p, _)| !positions.contains(p))
                .map(|(_, v)| v.clone());
            next.parts = results.into_iter().map(|(_, v)| v).chain(others).collect();
            next.calls = calls.into_iter().enumerate().collect();
        }
        // A result whose call is not in the turn before it.
        for (i, turn) in self.0.iter().enumerate() {
            if turn.role == model_role || turn.calls.is_empty() {
                continue;
            }
            let before = i.checked_sub(1).map(|j| &self.0[j]);
            if before.is_none_or(|b| b.calls.is_empty()) {
                return Err(ConvertError::invalid(
                    format!(
                        "the function_call_output for {:?} does not follow its function call; {provider} needs each result right after the turn that made the call",
                        turn.calls[0].1
                    ),
                    "input",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn turns(items: &[(&'static str, &str, Option<&str>)]) -> Turns {
        let mut t = Turns::default();
        for (role, part, call) in items {
            t.push(role, json!(part), call.map(str::to_string));
        }
        t
    }

    #[test]
    fn results_go_first_in_call_order() {
        let mut t = turns(&[
            ("user", "q", None),
            ("model", "call a", Some("a")),
            ("model", "call b", Some("b")),
            ("user", "note", None),
            ("user", "result b", Some("b")),
            ("user", "result a", Some("a")),
        ]);
        t.pair_calls("model", "X").unwrap();
        assert_eq!(t.0.len(), 3);
        assert_eq!(
            t.0[2].parts,
            [json!("result a"), json!("result b"), json!("note")]
        );
        assert_eq!(t.0[2].calls, [(0, "a".to_string()), (1, "b".to_string())]);
    }

    #[test]
    fn unpaired_calls_and_results_are_refused() {
        for (items, needle) in [
            (
                vec![("user", "q", None), ("model", "c", Some("a"))],
                "has no function_call_output",
            ),
            (
                vec![
                    ("user", "q", None),
                    ("model", "c", Some("a")),
                    ("user", "r", Some("b")),
                ],
                "\"a\" has no function_call_output right after it; X needs",
            ),
            (
                vec![("user", "q", None), ("user", "r", Some("a"))],
                "does not follow its function call",
            ),
            (
                vec![
                    ("user", "q", None),
                    ("model", "c", Some("a")),
                    ("user", "r", Some("a")),
                    ("user", "r2", Some("a")),
                ],
                "more than one",
            ),
        ] {
            let e = turns(&items).pair_calls("model", "X").unwrap_err();
            assert!(e.message.contains(needle), "{}", e.message);
        }
    }
}
