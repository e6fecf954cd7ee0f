//! Anthropic Messages answers → canonical output. One state machine serves
//! both the SSE events of `streamRawPredict` and the single `Message` of
//! `rawPredict` (which is replayed as the events it would have streamed).
//!
//! Thinking blocks become reasoning items whose summary is the thinking text
//! and whose `encrypted_content` is an envelope holding the signature
//! (`{"p":"anthropic","m":model,"k":"thinking","sig":..}`); redacted
//! thinking keeps its data the same way (`"k":"redacted"`). The request
//! side turns them back into the blocks byte for byte.

use llmproxy_sdk::api::envelope;
use llmproxy_sdk::api::ids::IdGen;
use llmproxy_sdk::api::responses::{Item, Reasoning, Response, Usage};
use llmproxy_sdk::api::stream::{Finish, StreamBuilder};
use serde_json::{Map, Value, json};
use std::collections::HashMap;

/// An `error` event, or an answer that is not a Messages event.
#[derive(Debug, Clone, PartialEq)]
pub struct EventError {
    /// Anthropic's error type, e.g. `overloaded_error`.
    pub kind: String,
    pub message: String,
}

impl EventError {
    /// The HTTP status Anthropic uses for this error type.
    pub fn status(&self) -> u16 {
        match self.kind.as_str() {
            "invalid_request_error" => 400,
            "authentication_error" => 401,
            "permission_error" => 403,
            "not_found_error" => 404,
            "request_too_large" => 413,
            "rate_limit_error" => 429,
            "overloaded_error" => 529,
            "timeout_error" => 504,
            _ => 500,
        }
    }
}

#[derive(Debug)]
enum Block {
    Text,
    Thinking {
        signature: String,
    },
    Tool {
        key: String,
    },
    /// The structured-output tool: its input is the answer's text.
    Json,
    /// Server-tool blocks and other kinds the proxy does not map.
    Ignored,
}

/// Maps Anthropic events to canonical events.
#[derive(Debug)]
pub struct Mapper {
    builder: StreamBuilder,
    model: String,
    json_tool: Option<String>,
    blocks: HashMap<u64, Block>,
    usage: Map<String, Value>,
    stop_reason: Option<String>,
    /// `stop_details.explanation` of a refusal.
    refusal: Option<String>,
    stopped: bool,
}

impl Mapper {
    pub fn new(ids: IdGen, model: &str, json_tool: Option<String>) -> Self {
        Mapper {
            builder: StreamBuilder::new(ids),
            model: model.to_string(),
            json_tool,
            blocks: HashMap::new(),
            usage: Map::new(),
            stop_reason: None,
            refusal: None,
            stopped: false,
        }
    }

    fn seal(&self, kind: &str, key: &str, value: &str) -> String {
        let mut f = Map::new();
        f.insert("m".into(), json!(self.model));
        f.insert("k".into(), json!(kind));
        f.insert(key.into(), json!(value));
        envelope::seal("anthropic", f)
    }

    fn merge_usage(&mut self, usage: Option<&Value>) {
        if let Some(Value::Object(u)) = usage {
            for (k, v) in u {
                if !v.is_null() {
                    self.usage.insert(k.clone(), v.clone());
                }
            }
        }
    }

    /// Maps one event (its `type` decides; the SSE event name is the same).
    pub fn event(&mut self, event: &Value, out: &mut Vec<Value>) -> Result<(), EventError> {
        let kind = event.get("type").and_then(Value::as_str).unwrap_or("");
        let index = event.get("index").and_then(Value::as_u64).unwrap_or(0);
        match kind {
            "message_start" => {
                self.builder.start(out);
                self.merge_usage(event.pointer("/message/usage"));
            }
            "content_block_start" => {
                let block = event.get("content_block").cloned().unwrap_or(Value::Null);
                self.block_start(index, &block, out);
            }
            "content_block_delta" => {
                let delta = event.get("delta").cloned().unwrap_or(Value::Null);
                self.block_delta(index, &delta, out);
            }
            "content_block_stop" => self.block_stop(index, out),
            "message_delta" => {
                if let Some(r) = event.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    self.stop_reason = Some(r.to_string());
                }
                if let Some(e) = event
                    .pointer("/delta/stop_details/explanation")
                    .and_then(Value::as_str)
                {
                    self.refusal = Some(e.to_string());
                }
                self.merge_usage(event.get("usage"));
            }
            "message_stop" => {
                self.stopped = true;
                self.end(out);
            }
            "error" => {
                let field = |k: &str| {
                    event
                        .pointer(&format!("/error/{k}"))
                        .and_then(Value::as_str)
                        .map(str::to_string)
                };
                return Err(EventError {
                    kind: field("type").unwrap_or_else(|| "api_error".into()),
                    message: field("message").unwrap_or_else(|| "Claude reported an error".into()),
                });
            }
            // `ping` and event kinds added later carry nothing to map.
            _ => {}
        }
        Ok(())
    }

    fn block_start(&mut self, index: u64, block: &Value, out: &mut Vec<Value>) {
        let field = |k: &str| block.get(k).and_then(Value::as_str).unwrap_or("");
        let mapped = match field("type") {
            "text" => {
                self.builder.text(out, field("text"));
                Block::Text
            }
            "thinking" => {
                self.builder.close_reasoning(out);
                self.builder.reasoning(out, field("thinking"));
                Block::Thinking {
                    signature: field("signature").to_string(),
                }
            }
            "redacted_thinking" => {
                let sealed = self.seal("redacted", "data", field("data"));
                let id = self.builder.next_id("rs");
                self.builder.item(
                    out,
                    Item::Reasoning(Reasoning {
                        id: Some(id),
                        summary: Vec::new(),
                        content: None,
                        encrypted_content: Some(sealed),
                        status: None,
                        extra: Map::new(),
                    }),
                );
                Block::Ignored
            }
            "tool_use" if self.json_tool.as_deref() == Some(field("name")) => Block::Json,
            "tool_use" => {
                let key = index.to_string();
                let id = field("id").to_string();
                let id = if id.is_empty() {
                    self.builder.next_id("toolu")
                } else {
                    id
                };
                self.builder.call_start(out, &key, &id, field("name"));
                Block::Tool { key }
            }
            _ => Block::Ignored,
        };
        self.blocks.insert(index, mapped);
    }

    fn block_delta(&mut self, index: u64, delta: &Value, out: &mut Vec<Value>) {
        let field = |k: &str| delta.get(k).and_then(Value::as_str).unwrap_or("");
        match (self.blocks.get_mut(&index), field("type")) {
            (Some(Block::Text), "text_delta") => self.builder.text(out, field("text")),
            (Some(Block::Thinking { .. }), "thinking_delta") => {
                self.builder.reasoning(out, field("thinking"));
            }
            (Some(Block::Thinking { signature }), "signature_delta") => {
                signature.push_str(field("signature"));
            }
            (Some(Block::Tool { key }), "input_json_delta") => {
                let key = key.clone();
                self.builder.call_args(out, &key, field("partial_json"));
            }
            (Some(Block::Json), "input_json_delta") => {
                self.builder.text(out, field("partial_json"));
            }
            // citations_delta and deltas of ignored blocks.
            _ => {}
        }
    }

    fn block_stop(&mut self, index: u64, out: &mut Vec<Value>) {
        match self.blocks.remove(&index) {
            Some(Block::Thinking { signature }) => {
                if !signature.is_empty() {
                    let sealed = self.seal("thinking", "sig", &signature);
                    self.builder.reasoning_encrypted(out, sealed);
                }
                self.builder.close_reasoning(out);
            }
            Some(Block::Tool { key }) => self.builder.call_done(out, &key),
            _ => {}
        }
    }

    /// Canonical usage: input counts cache reads and writes too.
    fn usage(&self) -> Option<Usage> {
        if self.usage.is_empty() {
            return None;
        }
        let n = |k: &str| self.usage.get(k).and_then(Value::as_u64).unwrap_or(0);
        let cached = n("cache_read_input_tokens");
        let input = n("input_tokens") + n("cache_creation_input_tokens") + cached;
        let thinking = self
            .usage
            .get("output_tokens_details")
            .and_then(|d| d.get("thinking_tokens"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        Some(Usage::new(input, cached, n("output_tokens"), thinking))
    }

    fn finish_kind(&self) -> Finish {
        if !self.stopped {
            return Finish::Failed {
                code: "bad_upstream_response".into(),
                message: "the Claude stream ended before message_stop: the answer is incomplete"
                    .into(),
            };
        }
        match self.stop_reason.as_deref() {
            Some("max_tokens" | "model_context_window_exceeded") => {
                Finish::Incomplete("max_output_tokens".into())
            }
            Some("refusal") => Finish::Incomplete("content_filter".into()),
            // end_turn, stop_sequence, tool_use, pause_turn, none, or new.
            _ => Finish::Completed,
        }
    }

    /// Closes everything and emits the terminal event.
    pub fn end(&mut self, out: &mut Vec<Value>) {
        if self.builder.is_finished() {
            return;
        }
        let finish = self.finish_kind();
        if self.stopped && self.stop_reason.as_deref() == Some("refusal") {
            // Say why, as OpenAI models do in a refusal part.
            let why = self.refusal.take().unwrap_or_else(|| {
                "Claude declined to answer this request (stop_reason: refusal).".into()
            });
            self.builder.refusal(out, &why);
        }
        let usage = self.usage();
        self.builder.finish(out, finish, usage);
    }

    /// Maps a whole `Message` (the answer of `rawPredict`) by replaying it
    /// as the events a stream would have carried.
    pub fn message(&mut self, message: &Value, out: &mut Vec<Value>) -> Result<(), EventError> {
        if message.get("type").and_then(Value::as_str) == Some("error") {
            return self.event(message, out);
        }
        if message.get("type").and_then(Value::as_str) != Some("message") {
            return Err(EventError {
                kind: "api_error".into(),
                message: format!(
                    "Claude answered with something that is not a message: {}",
                    llmproxy_sdk::snippet(&message.to_string(), 200)
                ),
            });
        }
        let mut head = message.clone();
        head["content"] = json!([]);
        self.event(&json!({"type": "message_start", "message": head}), out)?;
        let blocks = message.get("content").and_then(Value::as_array);
        for (i, block) in blocks.into_iter().flatten().enumerate() {
            let index = i as u64;
            let mut start = block.clone();
            let delta = match block.get("type").and_then(Value::as_str) {
                Some("tool_use") => {
                    start["input"] = json!({});
                    let input = block.get("input").cloned().unwrap_or(json!({}));
                    Some(json!({"type": "input_json_delta", "partial_json": input.to_string()}))
                }
                Some("thinking") => {
                    start["signature"] = json!("");
                    let sig = block.get("signature").cloned().unwrap_or(json!(""));
                    Some(json!({"type": "signature_delta", "signature": sig}))
                }
                _ => None,
            };
            self.event(
                &json!({"type": "content_block_start", "index": index, "content_block": start}),
                out,
            )?;
            if let Some(delta) = delta {
                self.event(
                    &json!({"type": "content_block_delta", "index": index, "delta": delta}),
                    out,
                )?;
            }
            self.event(&json!({"type": "content_block_stop", "index": index}), out)?;
        }
        self.event(
            &json!({"type": "message_delta",
                "delta": {"stop_reason": message.get("stop_reason"),
                    "stop_details": message.get("stop_details")},
                "usage": message.get("usage")}),
            out,
        )?;
        self.event(&json!({"type": "message_stop"}), out)
    }

    /// The canonical response once the answer is complete.
    pub fn response(mut self) -> Response {
        self.end(&mut Vec::new());
        self.builder.response()
    }
}
