//! Typed canonical stream events (the Responses API's streaming events).
//!
//! The events a client most often acts on are typed; every other event type
//! (content parts, `*.done` of text, refusals, annotations, events this crate
//! does not know) is kept as [`ResponseEvent::Other`]. Fields a typed event
//! does not model are kept in its `extra` map, so an event survives a
//! parse/serialize round trip unchanged.

use crate::responses::{Item, Response};
use serde::de::{Error as _, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// One event of a canonical Responses stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type")]
#[non_exhaustive]
pub enum ResponseEvent {
    /// `response.created`: the first event.
    #[serde(rename = "response.created")]
    Created(ResponseSnapshot),
    /// `response.in_progress`.
    #[serde(rename = "response.in_progress")]
    InProgress(ResponseSnapshot),
    /// `response.completed`: terminal, the whole response.
    #[serde(rename = "response.completed")]
    Completed(ResponseSnapshot),
    /// `response.incomplete`: terminal (e.g. the token limit was reached).
    #[serde(rename = "response.incomplete")]
    Incomplete(ResponseSnapshot),
    /// `response.failed`: terminal; `response.error` says why.
    #[serde(rename = "response.failed")]
    Failed(ResponseSnapshot),
    /// `response.output_item.added`: an item starts.
    #[serde(rename = "response.output_item.added")]
    OutputItemAdded(OutputItemEvent),
    /// `response.output_item.done`: an item is complete (a function call
    /// with all its arguments, a message with all its text).
    #[serde(rename = "response.output_item.done")]
    OutputItemDone(OutputItemEvent),
    /// `response.output_text.delta`: a piece of answer text.
    #[serde(rename = "response.output_text.delta")]
    OutputTextDelta(DeltaEvent),
    /// `response.reasoning_summary_text.delta`: a piece of reasoning summary.
    #[serde(rename = "response.reasoning_summary_text.delta")]
    ReasoningSummaryTextDelta(DeltaEvent),
    /// `response.reasoning_text.delta`: a piece of raw reasoning text.
    #[serde(rename = "response.reasoning_text.delta")]
    ReasoningTextDelta(DeltaEvent),
    /// `response.function_call_arguments.delta`: a piece of a call's
    /// arguments.
    #[serde(rename = "response.function_call_arguments.delta")]
    FunctionCallArgumentsDelta(DeltaEvent),
    /// `error`: the stream failed; `response.failed` follows.
    #[serde(rename = "error")]
    Error(ErrorEvent),
    /// Any other event, as-is.
    #[serde(untagged)]
    Other(Value),
}

/// An event carrying the whole response so far.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResponseSnapshot {
    pub response: Response,
    #[serde(default)]
    pub sequence_number: u64,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

crate::wire::deserialize_with_extra!(ResponseSnapshot {
    req response: "response",
    opt sequence_number: "sequence_number",
});

/// An output item starting or complete.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutputItemEvent {
    pub output_index: u32,
    pub item: Item,
    #[serde(default)]
    pub sequence_number: u64,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

crate::wire::deserialize_with_extra!(OutputItemEvent {
    req output_index: "output_index",
    req item: "item",
    opt sequence_number: "sequence_number",
});

/// A piece of text (answer, reasoning, or a call's arguments).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeltaEvent {
    pub item_id: String,
    pub output_index: u32,
    /// The content part (text) or summary part (reasoning summary) index;
    /// absent for arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_index: Option<u32>,
    pub delta: String,
    #[serde(default)]
    pub sequence_number: u64,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

crate::wire::deserialize_with_extra!(DeltaEvent {
    req item_id: "item_id",
    req output_index: "output_index",
    opt content_index: "content_index",
    req delta: "delta",
    opt sequence_number: "sequence_number",
});

/// The `error` event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorEvent {
    /// `{"message", "type", "code", "param"}`.
    pub error: Value,
    #[serde(default)]
    pub sequence_number: u64,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

crate::wire::deserialize_with_extra!(ErrorEvent {
    req error: "error",
    opt sequence_number: "sequence_number",
});

impl ResponseEvent {
    /// The event's `type`.
    pub fn kind(&self) -> &str {
        match self {
            ResponseEvent::Created(_) => "response.created",
            ResponseEvent::InProgress(_) => "response.in_progress",
            ResponseEvent::Completed(_) => "response.completed",
            ResponseEvent::Incomplete(_) => "response.incomplete",
            ResponseEvent::Failed(_) => "response.failed",
            ResponseEvent::OutputItemAdded(_) => "response.output_item.added",
            ResponseEvent::OutputItemDone(_) => "response.output_item.done",
            ResponseEvent::OutputTextDelta(_) => "response.output_text.delta",
            ResponseEvent::ReasoningSummaryTextDelta(_) => "response.reasoning_summary_text.delta",
            ResponseEvent::ReasoningTextDelta(_) => "response.reasoning_text.delta",
            ResponseEvent::FunctionCallArgumentsDelta(_) => {
                "response.function_call_arguments.delta"
            }
            ResponseEvent::Error(_) => "error",
            ResponseEvent::Other(v) => v.get("type").and_then(Value::as_str).unwrap_or(""),
        }
    }

    /// The final response, to change, when this is the terminal event.
    pub fn terminal_mut(&mut self) -> Option<&mut Response> {
        match self {
            ResponseEvent::Completed(s)
            | ResponseEvent::Incomplete(s)
            | ResponseEvent::Failed(s) => Some(&mut s.response),
            _ => None,
        }
    }

    /// The final response, when this is the terminal event (completed,
    /// incomplete or failed).
    pub fn terminal(&self) -> Option<&Response> {
        match self {
            ResponseEvent::Completed(s)
            | ResponseEvent::Incomplete(s)
            | ResponseEvent::Failed(s) => Some(&s.response),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for ResponseEvent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ResponseEvent;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an event: an object with a string `type`")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ResponseEvent, A::Error> {
                crate::wire::tagged(map, ResponseEvent::from_fields, |v| {
                    match v.get("type").and_then(Value::as_str).map(str::to_string) {
                        Some(kind) => ResponseEvent::from_value(&kind, v),
                        None => Err(A::Error::custom("an event needs a string `type`")),
                    }
                })
            }
        }
        d.deserialize_any(V)
    }
}

impl ResponseEvent {
    /// The event of type `kind` from the rest of its object.
    fn from_fields<'de, A: MapAccess<'de>>(kind: &str, map: A) -> Result<ResponseEvent, A::Error> {
        use ResponseEvent as E;
        let typed = |e: A::Error| A::Error::custom(format!("{kind} event: {e}"));
        match kind {
            "response.created" => ResponseSnapshot::visit_fields(map).map(E::Created),
            "response.in_progress" => ResponseSnapshot::visit_fields(map).map(E::InProgress),
            "response.completed" => ResponseSnapshot::visit_fields(map).map(E::Completed),
            "response.incomplete" => ResponseSnapshot::visit_fields(map).map(E::Incomplete),
            "response.failed" => ResponseSnapshot::visit_fields(map).map(E::Failed),
            "response.output_item.added" => {
                OutputItemEvent::visit_fields(map).map(E::OutputItemAdded)
            }
            "response.output_item.done" => {
                OutputItemEvent::visit_fields(map).map(E::OutputItemDone)
            }
            "response.output_text.delta" => DeltaEvent::visit_fields(map).map(E::OutputTextDelta),
            "response.reasoning_summary_text.delta" => {
                DeltaEvent::visit_fields(map).map(E::ReasoningSummaryTextDelta)
            }
            "response.reasoning_text.delta" => {
                DeltaEvent::visit_fields(map).map(E::ReasoningTextDelta)
            }
            "response.function_call_arguments.delta" => {
                DeltaEvent::visit_fields(map).map(E::FunctionCallArgumentsDelta)
            }
            "error" => ErrorEvent::visit_fields(map).map(E::Error),
            _ => return crate::wire::rest_as_value(kind, map).map(E::Other),
        }
        .map_err(typed)
    }

    /// The event a whole object is (its `type` did not come first).
    fn from_value<E: serde::de::Error>(kind: &str, mut v: Value) -> Result<ResponseEvent, E> {
        fn typed<T: serde::de::DeserializeOwned, E: serde::de::Error>(
            kind: &str,
            v: Value,
            wrap: fn(T) -> ResponseEvent,
        ) -> Result<ResponseEvent, E> {
            serde_json::from_value(v)
                .map(wrap)
                .map_err(|e| E::custom(format!("{kind} event: {e}")))
        }
        let known = [
            "response.created",
            "response.in_progress",
            "response.completed",
            "response.incomplete",
            "response.failed",
            "response.output_item.added",
            "response.output_item.done",
            "response.output_text.delta",
            "response.reasoning_summary_text.delta",
            "response.reasoning_text.delta",
            "response.function_call_arguments.delta",
            "error",
        ];
        if !known.contains(&kind) {
            return Ok(ResponseEvent::Other(v));
        }
        if let Value::Object(o) = &mut v {
            o.remove("type");
        }
        match kind {
            "response.created" => typed(kind, v, ResponseEvent::Created),
            "response.in_progress" => typed(kind, v, ResponseEvent::InProgress),
            "response.completed" => typed(kind, v, ResponseEvent::Completed),
            "response.incomplete" => typed(kind, v, ResponseEvent::Incomplete),
            "response.failed" => typed(kind, v, ResponseEvent::Failed),
            "response.output_item.added" => typed(kind, v, ResponseEvent::OutputItemAdded),
            "response.output_item.done" => typed(kind, v, ResponseEvent::OutputItemDone),
            "response.output_text.delta" => typed(kind, v, ResponseEvent::OutputTextDelta),
            "response.reasoning_summary_text.delta" => {
                typed(kind, v, ResponseEvent::ReasoningSummaryTextDelta)
            }
            "response.reasoning_text.delta" => typed(kind, v, ResponseEvent::ReasoningTextDelta),
            "response.function_call_arguments.delta" => {
                typed(kind, v, ResponseEvent::FunctionCallArgumentsDelta)
            }
            _ => typed(kind, v, ResponseEvent::Error),
        }
    }

    /// Sets the event's `sequence_number`.
    pub fn set_sequence_number(&mut self, n: u64) {
        match self {
            ResponseEvent::Created(s)
            | ResponseEvent::InProgress(s)
            | ResponseEvent::Completed(s)
            | ResponseEvent::Incomplete(s)
            | ResponseEvent::Failed(s) => s.sequence_number = n,
            ResponseEvent::OutputItemAdded(e) | ResponseEvent::OutputItemDone(e) => {
                e.sequence_number = n
            }
            ResponseEvent::OutputTextDelta(e)
            | ResponseEvent::ReasoningSummaryTextDelta(e)
            | ResponseEvent::ReasoningTextDelta(e)
            | ResponseEvent::FunctionCallArgumentsDelta(e) => e.sequence_number = n,
            ResponseEvent::Error(e) => e.sequence_number = n,
            ResponseEvent::Other(v) => {
                if let Value::Object(o) = v {
                    o.insert("sequence_number".into(), Value::from(n));
                }
            }
        }
    }

    /// A field of the event as JSON (for the kinds kept as values, and the
    /// fields a typed kind keeps in `extra`).
    pub fn field(&self, key: &str) -> Option<&Value> {
        match self {
            ResponseEvent::Other(v) => v.get(key),
            ResponseEvent::Created(s)
            | ResponseEvent::InProgress(s)
            | ResponseEvent::Completed(s)
            | ResponseEvent::Incomplete(s)
            | ResponseEvent::Failed(s) => s.extra.get(key),
            ResponseEvent::OutputItemAdded(e) | ResponseEvent::OutputItemDone(e) => {
                e.extra.get(key)
            }
            ResponseEvent::OutputTextDelta(e)
            | ResponseEvent::ReasoningSummaryTextDelta(e)
            | ResponseEvent::ReasoningTextDelta(e)
            | ResponseEvent::FunctionCallArgumentsDelta(e) => e.extra.get(key),
            ResponseEvent::Error(e) => e.extra.get(key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_round_trip_typed_with_unknown_fields_and_kinds() {
        let events = json!([
            {"type": "response.created", "sequence_number": 0, "response": {"id": "r", "status": "in_progress", "output": [], "x_vendor": 1}},
            {"type": "response.output_item.added", "sequence_number": 1, "output_index": 0,
             "item": {"type": "function_call", "id": "fc_1", "call_id": "c", "name": "f", "arguments": "", "status": "in_progress"}},
            {"type": "response.function_call_arguments.delta", "sequence_number": 2, "item_id": "fc_1", "output_index": 0, "delta": "{}", "obfuscation": "x"},
            {"type": "response.output_text.delta", "sequence_number": 3, "item_id": "m", "output_index": 1, "content_index": 0, "delta": "Hi", "logprobs": []},
            {"type": "response.content_part.added", "sequence_number": 4, "item_id": "m", "output_index": 1, "content_index": 0, "part": {"type": "output_text", "text": ""}},
            {"type": "error", "sequence_number": 5, "error": {"message": "boom", "type": "server_error", "code": null, "param": null}},
            {"type": "response.failed", "sequence_number": 6, "response": {"id": "r", "status": "failed", "output": [], "error": {"code": "server_error", "message": "boom"}}}
        ]);
        let typed: Vec<ResponseEvent> = serde_json::from_value(events.clone()).unwrap();
        assert!(
            matches!(&typed[2], ResponseEvent::FunctionCallArgumentsDelta(d) if d.delta == "{}" && d.content_index.is_none())
        );
        assert!(matches!(&typed[3], ResponseEvent::OutputTextDelta(d) if d.delta == "Hi"));
        assert!(matches!(typed[4], ResponseEvent::Other(_)));
        assert_eq!(typed[4].kind(), "response.content_part.added");
        assert_eq!(
            typed[6].terminal().and_then(|r| r.status.as_deref()),
            Some("failed")
        );
        assert!(typed[0].terminal().is_none());
        // Snapshots gain the fields the schema requires, null.
        let mut expected = events.clone();
        for i in [0, 6] {
            for key in ["usage", "incomplete_details", "error"] {
                let response = expected[i]["response"].as_object_mut().unwrap();
                response.entry(key).or_insert(Value::Null);
            }
        }
        assert_eq!(serde_json::to_value(&typed).unwrap(), expected);
    }

    #[test]
    fn malformed_known_events_are_errors() {
        let e = serde_json::from_value::<ResponseEvent>(
            json!({"type": "response.output_text.delta", "delta": 3}),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("response.output_text.delta event"), "{e}");
    }
}
