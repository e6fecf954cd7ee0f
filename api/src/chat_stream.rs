//! Streaming in Chat form.
//!
//! [`ChunkRenderer`] renders canonical events as `chat.completion.chunk`s for
//! a Chat client (host egress); [`ChunkParser`] maps a Chat backend's chunks
//! to canonical events (translator).

use crate::chat::ChatChunk;
use crate::chat_response::{
    canonical_usage, chat_id, chat_usage, finish_reason, status_for_finish,
};
use crate::events::ResponseEvent;
use crate::ids::IdGen;
use crate::responses::Usage;
use crate::stream::{Finish, StreamBuilder};
use serde_json::{Value, json};
use std::collections::HashMap;

/// One frame of a Chat stream.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatFrame {
    /// `data: <chunk>`.
    Chunk(Value),
    /// `data: {"error":{...}}` - the stream failed; nothing follows.
    Error(Value),
    /// `data: [DONE]`.
    Done,
}

/// Renders canonical events as Chat chunks (chat-completions.md §8).
#[derive(Debug)]
pub struct ChunkRenderer {
    id: String,
    created: i64,
    model: String,
    include_usage: bool,
    started: bool,
    /// Tool-call index (ordinal among calls) by item id.
    tool_index: HashMap<String, u64>,
    /// Items whose arguments were streamed (non-empty).
    args_streamed: HashMap<String, bool>,
    saw_tool_call: bool,
    ended: bool,
}

impl ChunkRenderer {
    /// `model` is the name the client asked for; `include_usage` is its
    /// `stream_options.include_usage`.
    pub fn new(model: &str, include_usage: bool) -> Self {
        ChunkRenderer {
            id: "chatcmpl-0".into(),
            created: 0,
            model: model.to_string(),
            include_usage,
            started: false,
            tool_index: HashMap::new(),
            args_streamed: HashMap::new(),
            saw_tool_call: false,
            ended: false,
        }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>, logprobs: Value) -> ChatFrame {
        let mut c = json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model, "system_fingerprint": null,
            "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}],
        });
        if self.include_usage {
            c["usage"] = Value::Null;
        }
        ChatFrame::Chunk(c)
    }

    fn first(&mut self, out: &mut Vec<ChatFrame>) {
        if !self.started {
            self.started = true;
            out.push(self.chunk(
                json!({"role": "assistant", "content": ""}),
                None,
                Value::Null,
            ));
        }
    }

    /// Renders one canonical event. The pieces of text and arguments - most
    /// of a stream - are rendered from the typed event; the rest from its
    /// JSON.
    pub fn event(&mut self, event: &ResponseEvent) -> Vec<ChatFrame> {
        let mut out = Vec::new();
        if self.ended {
            return out;
        }
        match event {
            ResponseEvent::OutputTextDelta(d) => {
                self.first(&mut out);
                let logprobs = match d.extra.get("logprobs").and_then(Value::as_array) {
                    Some(l) if !l.is_empty() => json!({"content": l, "refusal": null}),
                    _ => Value::Null,
                };
                if !d.delta.is_empty() {
                    out.push(self.chunk(json!({"content": d.delta}), None, logprobs));
                }
                out
            }
            ResponseEvent::ReasoningSummaryTextDelta(d) => {
                self.first(&mut out);
                if !d.delta.is_empty() {
                    out.push(self.chunk(json!({"reasoning_content": d.delta}), None, Value::Null));
                }
                out
            }
            ResponseEvent::FunctionCallArgumentsDelta(d) => {
                if let (Some(index), false) =
                    (self.tool_index.get(&d.item_id).copied(), d.delta.is_empty())
                {
                    self.args_streamed.insert(d.item_id.clone(), true);
                    out.push(self.chunk(
                        json!({"tool_calls": [{"index": index, "function": {"arguments": d.delta}}]}),
                        None,
                        Value::Null,
                    ));
                }
                out
            }
            ResponseEvent::Other(v) => self.event_value(v),
            typed => match serde_json::to_value(typed) {
                Ok(v) => self.event_value(&v),
                Err(_) => out,
            },
        }
    }

    /// Renders one canonical event given as JSON.
    pub fn event_value(&mut self, event: &Value) -> Vec<ChatFrame> {
        let mut out = Vec::new();
        if self.ended {
            return out;
        }
        let kind = event.get("type").and_then(Value::as_str).unwrap_or("");
        let item_id = event
            .get("item_id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        match kind {
            "response.created" => {
                if let Some(r) = event.get("response") {
                    if let Some(id) = r.get("id").and_then(Value::as_str) {
                        self.id = chat_id(id);
                    }
                    if let Some(c) = r.get("created_at").and_then(Value::as_i64) {
                        self.created = c;
                    }
                }
                self.first(&mut out);
            }
            "response.output_text.delta" => {
                self.first(&mut out);
                let delta = event.get("delta").and_then(Value::as_str).unwrap_or("");
                let logprobs = match event.get("logprobs").and_then(Value::as_array) {
                    Some(l) if !l.is_empty() => json!({"content": l, "refusal": null}),
                    _ => Value::Null,
                };
                if !delta.is_empty() {
                    out.push(self.chunk(json!({"content": delta}), None, logprobs));
                }
            }
            "response.refusal.delta" => {
                self.first(&mut out);
                let delta = event.get("delta").cloned().unwrap_or(Value::Null);
                out.push(self.chunk(json!({"refusal": delta}), None, Value::Null));
            }
            "response.reasoning_summary_text.delta" | "response.reasoning.delta" => {
                self.first(&mut out);
                let delta = event.get("delta").and_then(Value::as_str).unwrap_or("");
                if !delta.is_empty() {
                    out.push(self.chunk(json!({"reasoning_content": delta}), None, Value::Null));
                }
            }
            "response.output_item.added" => {
                let item = event.get("item").cloned().unwrap_or(Value::Null);
                if item.get("type").and_then(Value::as_str) == Some("function_call") {
                    self.first(&mut out);
                    let id = item
                        .get("id")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    let index = self.tool_index.len() as u64;
                    self.tool_index.insert(id, index);
                    self.saw_tool_call = true;
                    out.push(self.chunk(
                        json!({"tool_calls": [{
                            "index": index, "id": item.get("call_id"), "type": "function",
                            "function": {"name": item.get("name"), "arguments": ""}
                        }]}),
                        None,
                        Value::Null,
                    ));
                }
            }
            "response.function_call_arguments.delta" => {
                let delta = event.get("delta").and_then(Value::as_str).unwrap_or("");
                if let (Some(index), false) =
                    (self.tool_index.get(&item_id).copied(), delta.is_empty())
                {
                    self.args_streamed.insert(item_id, true);
                    out.push(self.chunk(
                        json!({"tool_calls": [{"index": index, "function": {"arguments": delta}}]}),
                        None,
                        Value::Null,
                    ));
                }
            }
            "response.function_call_arguments.done" => {
                if let Some(index) = self.tool_index.get(&item_id).copied()
                    && !self.args_streamed.contains_key(&item_id)
                {
                    let args = match event.get("arguments").and_then(Value::as_str) {
                        Some(a) if !a.is_empty() => a.to_string(),
                        _ => "{}".to_string(),
                    };
                    self.args_streamed.insert(item_id, true);
                    out.push(self.chunk(
                        json!({"tool_calls": [{"index": index, "function": {"arguments": args}}]}),
                        None,
                        Value::Null,
                    ));
                }
            }
            "response.completed" | "response.incomplete" => {
                self.first(&mut out);
                let r = event.get("response").cloned().unwrap_or(Value::Null);
                let status = r.get("status").and_then(Value::as_str);
                let reason = r
                    .pointer("/incomplete_details/reason")
                    .and_then(Value::as_str);
                let finish = finish_reason(status, reason, self.saw_tool_call);
                out.push(self.chunk(json!({}), Some(finish), Value::Null));
                if self.include_usage {
                    let usage = r
                        .get("usage")
                        .and_then(|u| serde_json::from_value::<Usage>(u.clone()).ok())
                        .map(|u| chat_usage(&u))
                        .unwrap_or(Value::Null);
                    out.push(ChatFrame::Chunk(json!({
                        "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                        "model": self.model, "system_fingerprint": null, "choices": [], "usage": usage,
                    })));
                }
                out.push(ChatFrame::Done);
                self.ended = true;
            }
            "error" => {
                let e = event.get("error").cloned().unwrap_or(Value::Null);
                out.push(ChatFrame::Error(json!({"error": {
                    "message": e.get("message").cloned().unwrap_or(json!("The response failed.")),
                    "type": e.get("type").cloned().unwrap_or(json!("server_error")),
                    "param": e.get("param").cloned().unwrap_or(Value::Null),
                    "code": e.get("code").cloned().unwrap_or(Value::Null),
                }})));
                self.ended = true;
            }
            "response.failed" => {
                let e = event
                    .pointer("/response/error")
                    .cloned()
                    .unwrap_or(Value::Null);
                out.push(ChatFrame::Error(json!({"error": {
                    "message": e.get("message").cloned().unwrap_or(json!("The response failed.")),
                    "type": "server_error",
                    "param": null,
                    "code": e.get("code").cloned().unwrap_or(Value::Null),
                }})));
                self.ended = true;
            }
            _ => {}
        }
        out
    }
}

/// A mid-stream error a Chat backend sent (`{"error":{...}}`).
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkError {
    pub message: String,
    pub error_type: Option<String>,
    pub code: Option<String>,
}

/// Maps a Chat backend's chunks to canonical events (chat-completions.md §9).
#[derive(Debug)]
pub struct ChunkParser {
    builder: StreamBuilder,
    finish: Option<String>,
    usage: Option<Usage>,
    /// Builder key of the most recent call, for servers that omit `index`.
    last_call: Option<String>,
}

impl ChunkParser {
    pub fn new(ids: IdGen) -> Self {
        ChunkParser {
            builder: StreamBuilder::new(ids),
            finish: None,
            usage: None,
            last_call: None,
        }
    }

    /// Maps one SSE `data:` payload: a chunk, `[DONE]`, or an error object.
    pub fn push(&mut self, data: &str) -> Result<Vec<Value>, ChunkError> {
        let mut out = Vec::new();
        let data = data.trim();
        if data.is_empty() || self.builder.is_finished() {
            return Ok(out);
        }
        if data == "[DONE]" {
            self.finish_now(&mut out);
            return Ok(out);
        }
        let chunk: ChatChunk = serde_json::from_str(data).map_err(|e| ChunkError {
            message: format!("the upstream sent a chunk that is not valid JSON ({e})"),
            error_type: None,
            code: Some("bad_upstream_response".into()),
        })?;
        if let Some(err) = &chunk.error {
            let text = |k: &str| err.get(k).and_then(Value::as_str).map(str::to_string);
            return Err(ChunkError {
                message: text("message").unwrap_or_else(|| err.to_string()),
                error_type: text("type"),
                code: text("code").or_else(|| {
                    err.get("code")
                        .and_then(Value::as_i64)
                        .map(|n| n.to_string())
                }),
            });
        }
        self.builder.start(&mut out);
        if let Some(u) = &chunk.usage {
            self.usage = Some(canonical_usage(u));
        }
        for choice in chunk.choices.iter().filter(|c| c.index == 0) {
            let d = &choice.delta;
            if let Some(r) = d.reasoning_content.as_deref().or(d.reasoning.as_deref()) {
                self.builder.reasoning(&mut out, r);
            }
            if let Some(t) = d.content.as_deref() {
                self.builder.text(&mut out, t);
            }
            if let Some(r) = d.refusal.as_deref() {
                self.builder.refusal(&mut out, r);
            }
            for call in d.tool_calls.iter().flatten() {
                let key = match (call.index, &call.id) {
                    (Some(i), _) => i.to_string(),
                    (None, Some(id)) if !id.is_empty() => id.clone(),
                    (None, _) => self.last_call.clone().unwrap_or_else(|| "0".into()),
                };
                let function = call.function.clone().unwrap_or_default();
                if !self.builder.has_call(&key) {
                    let call_id = call
                        .id
                        .clone()
                        .filter(|i| !i.is_empty())
                        .unwrap_or_else(|| self.builder.next_id("call"));
                    let name = function.name.clone().unwrap_or_default();
                    self.builder.call_start(&mut out, &key, &call_id, &name);
                }
                self.last_call = Some(key.clone());
                if let Some(args) = function.arguments.as_deref() {
                    self.builder.call_args(&mut out, &key, args);
                }
            }
            if let Some(f) = &d.function_call {
                if !self.builder.has_call("legacy") {
                    let call_id = self.builder.next_id("call");
                    let name = f.name.clone().unwrap_or_default();
                    self.builder.call_start(&mut out, "legacy", &call_id, &name);
                }
                if let Some(args) = f.arguments.as_deref() {
                    self.builder.call_args(&mut out, "legacy", args);
                }
            }
            if let Some(u) = &choice.usage {
                self.usage = Some(canonical_usage(u));
            }
            if let Some(f) = &choice.finish_reason {
                self.finish = Some(f.clone());
            }
        }
        Ok(out)
    }

    fn finish_now(&mut self, out: &mut Vec<Value>) {
        let (status, reason) = status_for_finish(self.finish.as_deref());
        let finish = match (status, reason) {
            ("incomplete", Some(r)) => Finish::Incomplete(r.to_string()),
            _ => Finish::Completed,
        };
        self.builder.finish(out, finish, self.usage.take());
    }

    /// The upstream stream ended. Without `[DONE]` and without a
    /// `finish_reason` the answer was cut off: the response fails.
    pub fn end(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        if self.builder.is_finished() {
            return out;
        }
        if self.finish.is_some() {
            self.finish_now(&mut out);
        } else {
            self.builder.finish(
                &mut out,
                Finish::Failed {
                    code: "bad_upstream_response".into(),
                    message: "the upstream's stream ended before the answer was complete (no finish_reason, no [DONE])".into(),
                },
                None,
            );
        }
        out
    }
}

#[cfg(test)]
mod tests;
