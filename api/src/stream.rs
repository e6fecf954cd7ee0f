//! [`StreamBuilder`]: turns provider deltas (text, reasoning, tool-call
//! fragments, signatures) into a well-formed canonical Responses event
//! stream, following the OpenResponses rules: every item announced with
//! `response.output_item.added` before its deltas, streamable content inside
//! content parts, `*.done` events carrying the full text, one `output_index`
//! per item, and a terminal event listing every item.
//!
//! Events carry no `sequence_number`: the host numbers them. Response
//! snapshots are minimal; the host completes them.

use crate::ids::IdGen;
use crate::responses::ContentPart;
use crate::responses::{
    FunctionCall, Item, Message, MessageContent, OutputText, Reasoning, Refusal, Response, Role,
    SummaryText, Usage,
};
use serde_json::{Map, Value, json};

/// How a response ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Finish {
    /// `response.completed`.
    Completed,
    /// `response.incomplete` with `incomplete_details.reason`
    /// (`max_output_tokens`, `content_filter`, ...).
    Incomplete(String),
    /// `error` + `response.failed`, with an OpenAI-style `{code, message}`.
    Failed { code: String, message: String },
}

#[derive(Debug)]
enum Slot {
    Message {
        id: String,
        parts: Vec<ContentPart>,
    },
    Call {
        key: String,
        id: String,
        call_id: String,
        name: String,
        arguments: String,
        extra: Map<String, Value>,
    },
    Reasoning {
        id: String,
        summary: Vec<String>,
        encrypted: Option<String>,
        extra: Map<String, Value>,
    },
    /// Closed: the final item.
    Done(Item),
}

/// Builds a canonical event stream; see the module docs.
#[derive(Debug)]
pub struct StreamBuilder {
    ids: IdGen,
    slots: Vec<Slot>,
    open_message: Option<usize>,
    open_reasoning: Option<usize>,
    started: bool,
    finished: bool,
    /// The terminal event's response snapshot, once emitted.
    terminal: Option<Value>,
}

impl StreamBuilder {
    /// A builder minting ids from `ids`.
    pub fn new(ids: IdGen) -> Self {
        StreamBuilder {
            ids,
            slots: Vec::new(),
            open_message: None,
            open_reasoning: None,
            started: false,
            finished: false,
            terminal: None,
        }
    }

    /// A fresh id with `prefix` from this builder's generator (so ids minted
    /// outside the builder never collide with its own).
    pub fn next_id(&mut self, prefix: &str) -> String {
        self.ids.next(prefix)
    }

    /// Whether the terminal event has been emitted.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Whether any output item has been started.
    pub fn has_output(&self) -> bool {
        !self.slots.is_empty()
    }

    /// Whether any function call has been started.
    pub fn has_calls(&self) -> bool {
        self.slots.iter().any(|s| {
            matches!(s, Slot::Call { .. }) || matches!(s, Slot::Done(Item::FunctionCall(_)))
        })
    }

    /// `response.created` and `response.in_progress`, once.
    pub fn start(&mut self, out: &mut Vec<Value>) {
        if !self.started {
            self.started = true;
            let snapshot = json!({"status": "in_progress", "output": []});
            out.push(json!({"type": "response.created", "response": snapshot}));
            out.push(json!({"type": "response.in_progress", "response": snapshot}));
        }
    }

    fn add(&mut self, out: &mut Vec<Value>, slot: Slot) -> usize {
        self.start(out);
        let index = self.slots.len();
        let item = match &slot {
            Slot::Message { id, .. } => json!({
                "type": "message", "id": id, "status": "in_progress", "role": "assistant", "content": []
            }),
            Slot::Call {
                id, call_id, name, ..
            } => json!({
                "type": "function_call", "id": id, "call_id": call_id, "name": name,
                "arguments": "", "status": "in_progress"
            }),
            Slot::Reasoning { id, .. } => json!({"type": "reasoning", "id": id, "summary": []}),
            Slot::Done(item) => serde_json::to_value(item).unwrap_or(Value::Null),
        };
        out.push(
            json!({"type": "response.output_item.added", "output_index": index, "item": item}),
        );
        self.slots.push(slot);
        index
    }

    /// Appends text to the open message (opening one, and an `output_text`
    /// part, if needed). Empty deltas are ignored.
    pub fn text(&mut self, out: &mut Vec<Value>, delta: &str) {
        self.message_delta(out, delta, false);
    }

    /// Appends to a `refusal` part of the open message.
    pub fn refusal(&mut self, out: &mut Vec<Value>, delta: &str) {
        self.message_delta(out, delta, true);
    }

    fn message_delta(&mut self, out: &mut Vec<Value>, delta: &str, refusal: bool) {
        if delta.is_empty() {
            return;
        }
        self.close_reasoning(out);
        let index = match self.open_message {
            Some(i) => i,
            None => {
                let id = self.ids.next("msg");
                let i = self.add(
                    out,
                    Slot::Message {
                        id,
                        parts: Vec::new(),
                    },
                );
                self.open_message = Some(i);
                i
            }
        };
        let Some(Slot::Message { id, parts }) = self.slots.get_mut(index) else {
            return;
        };
        let id = id.clone();
        let needs_part = !matches!(
            (parts.last(), refusal),
            (Some(ContentPart::OutputText(_)), false) | (Some(ContentPart::Refusal(_)), true)
        );
        if needs_part {
            if let Some(last) = parts.last() {
                out.extend(part_done(&id, index, parts.len() - 1, last));
            }
            let part = if refusal {
                ContentPart::Refusal(Refusal {
                    refusal: String::new(),
                    extra: Map::new(),
                })
            } else {
                ContentPart::OutputText(OutputText::new(String::new()))
            };
            out.push(json!({
                "type": "response.content_part.added", "item_id": id, "output_index": index,
                "content_index": parts.len(), "part": part
            }));
            parts.push(part);
        }
        let content_index = parts.len() - 1;
        match parts.last_mut() {
            Some(ContentPart::OutputText(t)) => {
                t.text.push_str(delta);
                out.push(json!({
                    "type": "response.output_text.delta", "item_id": id, "output_index": index,
                    "content_index": content_index, "delta": delta, "logprobs": []
                }));
            }
            Some(ContentPart::Refusal(r)) => {
                r.refusal.push_str(delta);
                out.push(json!({
                    "type": "response.refusal.delta", "item_id": id, "output_index": index,
                    "content_index": content_index, "delta": delta
                }));
            }
            _ => {}
        }
    }

    /// Appends reasoning summary text (opening a reasoning item if needed).
    pub fn reasoning(&mut self, out: &mut Vec<Value>, delta: &str) {
        if delta.is_empty() {
            return;
        }
        self.close_message(out);
        let index = self.reasoning_slot(out);
        let Some(Slot::Reasoning { id, summary, .. }) = self.slots.get_mut(index) else {
            return;
        };
        let id = id.clone();
        if summary.is_empty() {
            summary.push(String::new());
            out.push(json!({
                "type": "response.reasoning_summary_part.added", "item_id": id, "output_index": index,
                "summary_index": 0, "part": {"type": "summary_text", "text": ""}
            }));
        }
        if let Some(text) = summary.last_mut() {
            text.push_str(delta);
        }
        out.push(json!({
            "type": "response.reasoning_summary_text.delta", "item_id": id, "output_index": index,
            "summary_index": summary.len() - 1, "delta": delta
        }));
    }

    fn reasoning_slot(&mut self, out: &mut Vec<Value>) -> usize {
        match self.open_reasoning {
            Some(i) => i,
            None => {
                let id = self.ids.next("rs");
                let i = self.add(
                    out,
                    Slot::Reasoning {
                        id,
                        summary: Vec::new(),
                        encrypted: None,
                        extra: Map::new(),
                    },
                );
                self.open_reasoning = Some(i);
                i
            }
        }
    }

    /// Sets the open reasoning item's `encrypted_content` (opening an empty
    /// reasoning item if none is open). A later call replaces it.
    pub fn reasoning_encrypted(&mut self, out: &mut Vec<Value>, value: String) {
        self.close_message(out);
        let index = self.reasoning_slot(out);
        if let Some(Slot::Reasoning { encrypted, .. }) = self.slots.get_mut(index) {
            *encrypted = Some(value);
        }
    }

    /// Adds a field to the open reasoning item (provider extensions).
    pub fn reasoning_extra(&mut self, out: &mut Vec<Value>, key: &str, value: Value) {
        self.close_message(out);
        let index = self.reasoning_slot(out);
        if let Some(Slot::Reasoning { extra, .. }) = self.slots.get_mut(index) {
            extra.insert(key.to_string(), value);
        }
    }

    /// Closes the open reasoning item, if any.
    pub fn close_reasoning(&mut self, out: &mut Vec<Value>) {
        if let Some(index) = self.open_reasoning.take() {
            self.close(out, index, "completed");
        }
    }

    /// Closes the open message item, if any.
    pub fn close_message(&mut self, out: &mut Vec<Value>) {
        self.close_message_as(out, "completed");
    }

    /// Closes the open message item, if any, with `status` (`completed` or
    /// `incomplete`).
    pub fn close_message_as(&mut self, out: &mut Vec<Value>, status: &str) {
        if let Some(index) = self.open_message.take() {
            self.close(out, index, status);
        }
    }

    /// Starts a function call, identified by `key` (the provider's index or
    /// id) for the fragments that follow. Closes open text and reasoning;
    /// other calls stay open, so fragments of parallel calls may interleave.
    pub fn call_start(&mut self, out: &mut Vec<Value>, key: &str, call_id: &str, name: &str) {
        self.close_message(out);
        self.close_reasoning(out);
        let id = self.ids.next("fc");
        self.add(
            out,
            Slot::Call {
                key: key.to_string(),
                id,
                call_id: call_id.to_string(),
                name: name.to_string(),
                arguments: String::new(),
                extra: Map::new(),
            },
        );
    }

    fn call_index(&self, key: &str) -> Option<usize> {
        self.slots
            .iter()
            .rposition(|s| matches!(s, Slot::Call { key: k, .. } if k == key))
    }

    /// Whether a call with this key is open.
    pub fn has_call(&self, key: &str) -> bool {
        self.call_index(key).is_some()
    }

    /// Appends argument text to the open call `key`. Empty fragments are
    /// skipped; unknown keys are ignored.
    pub fn call_args(&mut self, out: &mut Vec<Value>, key: &str, delta: &str) {
        if delta.is_empty() {
            return;
        }
        let Some(index) = self.call_index(key) else {
            return;
        };
        if let Some(Slot::Call { id, arguments, .. }) = self.slots.get_mut(index) {
            arguments.push_str(delta);
            out.push(json!({
                "type": "response.function_call_arguments.delta", "item_id": id,
                "output_index": index, "delta": delta
            }));
        }
    }

    /// Adds a field to the open call `key` (provider extensions).
    pub fn call_extra(&mut self, key: &str, field: &str, value: Value) {
        if let Some(index) = self.call_index(key)
            && let Some(Slot::Call { extra, .. }) = self.slots.get_mut(index)
        {
            extra.insert(field.to_string(), value);
        }
    }

    /// Closes the call `key`.
    pub fn call_done(&mut self, out: &mut Vec<Value>, key: &str) {
        if let Some(index) = self.call_index(key) {
            self.close(out, index, "completed");
        }
    }

    /// Adds a complete item in one go (`added` then `done`).
    pub fn item(&mut self, out: &mut Vec<Value>, item: Item) {
        self.close_message(out);
        self.close_reasoning(out);
        let index = self.add(out, Slot::Done(item.clone()));
        out.push(json!({"type": "response.output_item.done", "output_index": index, "item": item}));
    }

    /// Closes the item at `index` with `status`, emitting its `done` events.
    fn close(&mut self, out: &mut Vec<Value>, index: usize, status: &str) {
        let Some(slot) = self.slots.get_mut(index) else {
            return;
        };
        let slot = std::mem::replace(slot, Slot::Done(Item::Other(Value::Null)));
        let item = match slot {
            Slot::Done(item) => {
                self.slots[index] = Slot::Done(item);
                return;
            }
            Slot::Message { id, parts } => {
                if let Some(last) = parts.last() {
                    out.extend(part_done(&id, index, parts.len() - 1, last));
                }
                Item::Message(Message {
                    id: Some(id),
                    role: Role::Assistant,
                    content: MessageContent::Parts(parts),
                    status: Some(status.to_string()),
                    extra: Map::new(),
                })
            }
            Slot::Call {
                id,
                call_id,
                name,
                arguments,
                extra,
                ..
            } => {
                // A call without arguments still streams "{}" (clients
                // JSON-parse the arguments).
                let arguments = if arguments.trim().is_empty() {
                    out.push(json!({
                        "type": "response.function_call_arguments.delta", "item_id": id,
                        "output_index": index, "delta": "{}"
                    }));
                    "{}".to_string()
                } else {
                    arguments
                };
                out.push(json!({
                    "type": "response.function_call_arguments.done", "item_id": id,
                    "output_index": index, "arguments": arguments, "name": name
                }));
                Item::FunctionCall(FunctionCall {
                    id: Some(id),
                    call_id,
                    name,
                    arguments,
                    status: Some(status.to_string()),
                    extra,
                })
            }
            Slot::Reasoning {
                id,
                summary,
                encrypted,
                extra,
            } => {
                for (i, text) in summary.iter().enumerate() {
                    out.push(json!({
                        "type": "response.reasoning_summary_text.done", "item_id": id,
                        "output_index": index, "summary_index": i, "text": text
                    }));
                    out.push(json!({
                        "type": "response.reasoning_summary_part.done", "item_id": id,
                        "output_index": index, "summary_index": i,
                        "part": {"type": "summary_text", "text": text}
                    }));
                }
                Item::Reasoning(Reasoning {
                    id: Some(id),
                    summary: summary.into_iter().map(SummaryText::new).collect(),
                    content: None,
                    encrypted_content: encrypted,
                    status: None,
                    extra,
                })
            }
        };
        out.push(json!({"type": "response.output_item.done", "output_index": index, "item": item}));
        self.slots[index] = Slot::Done(item);
    }

    /// Closes every open item and emits the terminal event. An incomplete
    /// or failed response closes its open items as `incomplete`.
    pub fn finish(&mut self, out: &mut Vec<Value>, finish: Finish, usage: Option<Usage>) {
        if self.finished {
            return;
        }
        self.start(out);
        let item_status = match finish {
            Finish::Completed => "completed",
            _ => "incomplete",
        };
        self.open_message = None;
        self.open_reasoning = None;
        for index in 0..self.slots.len() {
            self.close(out, index, item_status);
        }
        let output: Vec<Item> = self.output();
        let mut response = json!({"output": output, "usage": usage});
        let event = match finish {
            Finish::Completed => {
                response["status"] = json!("completed");
                "response.completed"
            }
            Finish::Incomplete(reason) => {
                response["status"] = json!("incomplete");
                response["incomplete_details"] = json!({"reason": reason});
                "response.incomplete"
            }
            Finish::Failed { code, message } => {
                response["status"] = json!("failed");
                response["error"] = json!({"code": code, "message": message});
                out.push(json!({"type": "error", "error": {
                    "type": "server_error", "code": code, "message": message, "param": null
                }}));
                "response.failed"
            }
        };
        out.push(json!({"type": event, "response": response}));
        self.terminal = Some(response);
        self.finished = true;
    }

    /// The response of a finished stream, as a non-streamed answer: the
    /// terminal event's status, details, usage and every item.
    pub fn response(&self) -> Response {
        let field = |k: &str| self.terminal.as_ref().and_then(|r| r.get(k)).cloned();
        Response {
            id: None,
            status: field("status").and_then(|s| s.as_str().map(str::to_string)),
            output: self.output(),
            usage: field("usage").and_then(|u| serde_json::from_value(u).ok()),
            incomplete_details: field("incomplete_details").filter(|v| !v.is_null()),
            error: field("error").filter(|v| !v.is_null()),
            created_at: None,
            model: None,
            extra: Map::new(),
        }
    }

    /// The items closed so far, in `output_index` order.
    pub fn output(&self) -> Vec<Item> {
        self.slots
            .iter()
            .filter_map(|s| match s {
                Slot::Done(item) if !matches!(item, Item::Other(Value::Null)) => Some(item.clone()),
                _ => None,
            })
            .collect()
    }
}

/// The `done` events of a content part.
fn part_done(id: &str, index: usize, content_index: usize, part: &ContentPart) -> Vec<Value> {
    let done = match part {
        ContentPart::OutputText(t) => json!({
            "type": "response.output_text.done", "item_id": id, "output_index": index,
            "content_index": content_index, "text": t.text, "logprobs": []
        }),
        ContentPart::Refusal(r) => json!({
            "type": "response.refusal.done", "item_id": id, "output_index": index,
            "content_index": content_index, "refusal": r.refusal
        }),
        _ => return Vec::new(),
    };
    vec![
        done,
        json!({
            "type": "response.content_part.done", "item_id": id, "output_index": index,
            "content_index": content_index, "part": part
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(events: &[Value]) -> Vec<String> {
        events
            .iter()
            .map(|e| {
                let k = e["type"].as_str().unwrap().trim_start_matches("response.");
                match e.get("output_index") {
                    Some(i) => format!("{k}@{i}"),
                    None => k.to_string(),
                }
            })
            .collect()
    }

    #[test]
    fn reasoning_text_and_parallel_calls() {
        let mut b = StreamBuilder::new(IdGen::with_stem("t"));
        let mut out = Vec::new();
        b.reasoning(&mut out, "think");
        b.reasoning_encrypted(&mut out, "sig".into());
        b.text(&mut out, "Hi");
        b.text(&mut out, "!");
        b.call_start(&mut out, "0", "call_a", "f");
        b.call_start(&mut out, "1", "call_b", "g");
        b.call_args(&mut out, "0", "{\"x\":");
        b.call_args(&mut out, "1", "");
        b.call_args(&mut out, "0", "1}");
        b.finish(&mut out, Finish::Completed, Some(Usage::new(3, 0, 4, 1)));
        assert_eq!(
            kinds(&out),
            [
                "created",
                "in_progress",
                "output_item.added@0",
                "reasoning_summary_part.added@0",
                "reasoning_summary_text.delta@0",
                "reasoning_summary_text.done@0",
                "reasoning_summary_part.done@0",
                "output_item.done@0",
                "output_item.added@1",
                "content_part.added@1",
                "output_text.delta@1",
                "output_text.delta@1",
                "output_text.done@1",
                "content_part.done@1",
                "output_item.done@1",
                "output_item.added@2",
                "output_item.added@3",
                "function_call_arguments.delta@2",
                "function_call_arguments.delta@2",
                "function_call_arguments.done@2",
                "output_item.done@2",
                "function_call_arguments.delta@3",
                "function_call_arguments.done@3",
                "output_item.done@3",
                "completed"
            ]
        );
        let last = out.last().unwrap();
        let output = &last["response"]["output"];
        assert_eq!(output[0]["encrypted_content"], "sig");
        assert_eq!(
            output[0]["summary"],
            json!([{"type": "summary_text", "text": "think"}])
        );
        assert_eq!(output[1]["content"][0]["text"], "Hi!");
        assert_eq!(output[2]["arguments"], "{\"x\":1}");
        assert_eq!(output[3]["arguments"], "{}", "no-argument call");
        assert_eq!(output[3]["id"], "fc_t3");
        assert_eq!(
            last["response"]["usage"]["output_tokens_details"]["reasoning_tokens"],
            1
        );
        assert!(b.is_finished());
    }

    #[test]
    fn incomplete_closes_items_as_incomplete() {
        let mut b = StreamBuilder::new(IdGen::with_stem("t"));
        let mut out = Vec::new();
        b.text(&mut out, "partial");
        b.finish(
            &mut out,
            Finish::Incomplete("max_output_tokens".into()),
            None,
        );
        let last = out.last().unwrap();
        assert_eq!(last["type"], "response.incomplete");
        assert_eq!(
            last["response"]["incomplete_details"]["reason"],
            "max_output_tokens"
        );
        assert_eq!(last["response"]["output"][0]["status"], "incomplete");
    }

    #[test]
    fn failure_emits_error_then_failed() {
        let mut b = StreamBuilder::new(IdGen::with_stem("t"));
        let mut out = Vec::new();
        b.finish(
            &mut out,
            Finish::Failed {
                code: "server_error".into(),
                message: "boom".into(),
            },
            None,
        );
        assert_eq!(kinds(&out), ["created", "in_progress", "error", "failed"]);
    }

    #[test]
    fn text_and_refusal_parts_in_one_message() {
        let mut b = StreamBuilder::new(IdGen::with_stem("t"));
        let mut out = Vec::new();
        b.text(&mut out, "a");
        b.refusal(&mut out, "no");
        b.finish(&mut out, Finish::Completed, None);
        let content = &out.last().unwrap()["response"]["output"][0]["content"];
        assert_eq!(content[0]["text"], "a");
        assert_eq!(content[1], json!({"type": "refusal", "refusal": "no"}));
    }
}
