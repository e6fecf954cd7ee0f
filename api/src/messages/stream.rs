//! Canonical stream events → Messages stream events.
//!
//! `message_start` (then a `ping`) when the response starts; one content
//! block per text part, reasoning item and function call, each opened with
//! `content_block_start`, filled with `text_delta`, `thinking_delta` and
//! `signature_delta`, or `input_json_delta`, and closed with
//! `content_block_stop`; then `message_delta` with the `stop_reason` and
//! the usage, and `message_stop`. A failed response ends the stream with an
//! `error` event instead.

use super::response::{
    Signature, arguments_input, encrypted_to_signature, stop_reason, trails_text, usage,
};
use super::{Block, Message, RedactedThinking, TextBlock, ThinkingBlock, ToolUse, Usage};
use crate::events::ResponseEvent;
use crate::responses::{Item, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// One event of a Messages stream; the SSE `event:` name is its `type`
/// ([`StreamEvent::name`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    MessageStart {
        message: Message,
    },
    ContentBlockStart {
        index: u32,
        content_block: Block,
    },
    ContentBlockDelta {
        index: u32,
        delta: Delta,
    },
    ContentBlockStop {
        index: u32,
    },
    MessageDelta {
        delta: MessageDeltaBody,
        usage: Usage,
    },
    MessageStop,
    Ping,
    Error {
        error: ErrorBody,
    },
    /// An event this crate does not know (an upstream's newer kind), as it
    /// came.
    #[serde(untagged)]
    Other(Value),
}

impl StreamEvent {
    /// The event's `type`, which is also its SSE event name.
    pub fn name(&self) -> &str {
        match self {
            StreamEvent::MessageStart { .. } => "message_start",
            StreamEvent::ContentBlockStart { .. } => "content_block_start",
            StreamEvent::ContentBlockDelta { .. } => "content_block_delta",
            StreamEvent::ContentBlockStop { .. } => "content_block_stop",
            StreamEvent::MessageDelta { .. } => "message_delta",
            StreamEvent::MessageStop => "message_stop",
            StreamEvent::Ping => "ping",
            StreamEvent::Error { .. } => "error",
            StreamEvent::Other(v) => v.get("type").and_then(Value::as_str).unwrap_or("unknown"),
        }
    }
}

/// A whole `message` as the events of a stream (for an upstream that
/// answered a streaming request at once): `message_start`, each block
/// started with its empty form, filled with one delta and stopped, then
/// `message_delta` and `message_stop`.
pub fn message_events(message: &Message) -> Vec<StreamEvent> {
    let mut start = message.clone();
    start.content = Vec::new();
    start.stop_reason = None;
    start.stop_sequence = None;
    let mut out = vec![StreamEvent::MessageStart { message: start }];
    for (index, block) in message.content.iter().enumerate() {
        let index = index as u32;
        let (empty, deltas) = match block {
            Block::Text(t) => (
                Block::Text(TextBlock::default()),
                vec![Delta::TextDelta {
                    text: t.text.clone(),
                }],
            ),
            Block::Thinking(t) => (
                empty_thinking(),
                vec![
                    Delta::ThinkingDelta {
                        thinking: t.thinking.clone(),
                    },
                    Delta::SignatureDelta {
                        signature: t.signature.clone(),
                    },
                ],
            ),
            Block::ToolUse(call) => (
                tool_block(&call.id, &call.name),
                vec![Delta::InputJsonDelta {
                    partial_json: call.input.to_string(),
                }],
            ),
            other => (other.clone(), Vec::new()),
        };
        out.push(StreamEvent::ContentBlockStart {
            index,
            content_block: empty,
        });
        for delta in deltas {
            out.push(StreamEvent::ContentBlockDelta { index, delta });
        }
        out.push(StreamEvent::ContentBlockStop { index });
    }
    out.push(StreamEvent::MessageDelta {
        delta: MessageDeltaBody {
            stop_reason: message.stop_reason.clone(),
            stop_sequence: message.stop_sequence.clone(),
        },
        usage: message.usage.clone(),
    });
    out.push(StreamEvent::MessageStop);
    out
}

/// A piece of a content block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Delta {
    TextDelta {
        text: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    ThinkingDelta {
        thinking: String,
    },
    SignatureDelta {
        signature: String,
    },
    #[serde(untagged)]
    Other(Value),
}

/// `message_delta.delta`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MessageDeltaBody {
    pub stop_reason: Option<String>,
    pub stop_sequence: Option<String>,
}

/// An `error` event's `error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
}

/// The block being streamed.
#[derive(Debug)]
enum Open {
    /// A text part: the item and its content index.
    Text(String, Option<u32>),
    Thinking(String),
    /// A call, and whether any of its arguments were sent.
    Tool(String, bool),
}

/// Renders a canonical event stream as Messages events.
#[derive(Debug)]
pub struct MessageRenderer {
    id: String,
    model: String,
    started: bool,
    ended: bool,
    open: Option<(u32, Open)>,
    next_index: u32,
    saw_call: bool,
    saw_text: bool,
    /// Events held back while a call's block is open: Messages blocks
    /// cannot interleave, so what arrives for other items (a parallel
    /// call's arguments, text) waits until the call is complete.
    deferred: Vec<ResponseEvent>,
}

impl MessageRenderer {
    /// `model` is the name the client asked for, `id` the message id.
    pub fn new(model: &str, id: &str) -> Self {
        MessageRenderer {
            id: id.to_string(),
            model: model.to_string(),
            started: false,
            ended: false,
            open: None,
            next_index: 0,
            saw_call: false,
            saw_text: false,
            deferred: Vec::new(),
        }
    }

    /// Renders one canonical event.
    pub fn event(&mut self, event: &ResponseEvent) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        if self.ended {
            return out;
        }
        if let Some((_, Open::Tool(id, _))) = &self.open {
            let of_call = match event {
                ResponseEvent::FunctionCallArgumentsDelta(d) => d.item_id == *id,
                ResponseEvent::OutputItemDone(e) => {
                    matches!(&e.item, Item::FunctionCall(c) if c.id.as_deref() == Some(id))
                }
                _ => false,
            };
            let ends = event.terminal().is_some() || matches!(event, ResponseEvent::Error(_));
            if ends {
                self.close(&mut out);
                self.replay(&mut out);
            } else if !of_call {
                self.deferred.push(event.clone());
                return out;
            }
        }
        self.render(&mut out, event);
        out
    }

    /// Renders the events held back while a call was open.
    fn replay(&mut self, out: &mut Vec<StreamEvent>) {
        for event in std::mem::take(&mut self.deferred) {
            out.extend(self.event(&event));
        }
    }

    fn render(&mut self, out: &mut Vec<StreamEvent>, event: &ResponseEvent) {
        let out = &mut *out;
        match event {
            ResponseEvent::Created(_) | ResponseEvent::InProgress(_) => self.start(out),
            ResponseEvent::OutputItemAdded(e) => {
                self.start(out);
                if let Item::FunctionCall(call) = &e.item {
                    self.close(out);
                    let item_id = call.id.clone().unwrap_or_default();
                    self.open_block(out, tool_block(&call.call_id, &call.name), || {
                        Open::Tool(item_id, false)
                    });
                    self.saw_call = true;
                } else if matches!(e.item, Item::Reasoning(_)) {
                    self.close(out);
                }
            }
            ResponseEvent::OutputTextDelta(d) => {
                self.text(out, &d.item_id, d.content_index, &d.delta)
            }
            ResponseEvent::ReasoningSummaryTextDelta(d) => {
                self.start(out);
                if !matches!(&self.open, Some((_, Open::Thinking(id))) if *id == d.item_id) {
                    self.close(out);
                    let id = d.item_id.clone();
                    self.open_block(out, empty_thinking(), || Open::Thinking(id));
                }
                if !d.delta.is_empty() {
                    self.delta(
                        out,
                        Delta::ThinkingDelta {
                            thinking: d.delta.clone(),
                        },
                    );
                }
            }
            ResponseEvent::FunctionCallArgumentsDelta(d) => {
                if let Some((index, Open::Tool(id, sent))) = &mut self.open
                    && *id == d.item_id
                    && !d.delta.is_empty()
                {
                    *sent = true;
                    out.push(StreamEvent::ContentBlockDelta {
                        index: *index,
                        delta: Delta::InputJsonDelta {
                            partial_json: d.delta.clone(),
                        },
                    });
                }
            }
            ResponseEvent::OutputItemDone(e) => self.item_done(out, &e.item),
            ResponseEvent::Completed(s) | ResponseEvent::Incomplete(s) => {
                self.finish(out, &s.response)
            }
            ResponseEvent::Failed(s) => {
                let error = s.response.error.as_ref();
                let field = |k: &str| error.and_then(|e| e.get(k)).and_then(Value::as_str);
                let message = field("message").unwrap_or("The response failed.");
                self.fail(out, error_type(field("code"), field("type")), message);
            }
            ResponseEvent::Error(e) => {
                let field = |k: &str| e.error.get(k).and_then(Value::as_str);
                let message = field("message").unwrap_or("The stream failed.");
                self.fail(out, error_type(field("code"), field("type")), message);
            }
            ResponseEvent::Other(v)
                if v.get("type").and_then(Value::as_str) == Some("response.refusal.delta") =>
            {
                let field = |k: &str| v.get(k);
                let item_id = field("item_id").and_then(Value::as_str).unwrap_or("");
                let index = field("content_index")
                    .and_then(Value::as_u64)
                    .map(|i| i as u32);
                let delta = field("delta").and_then(Value::as_str).unwrap_or("");
                self.text(out, item_id, index, delta);
            }
            _ => {}
        }
    }

    fn start(&mut self, out: &mut Vec<StreamEvent>) {
        if self.started {
            return;
        }
        self.started = true;
        out.push(StreamEvent::MessageStart {
            message: Message {
                id: self.id.clone(),
                kind: "message".into(),
                role: "assistant".into(),
                model: self.model.clone(),
                content: Vec::new(),
                stop_reason: None,
                stop_sequence: None,
                usage: Usage::default(),
                extra: Map::new(),
            },
        });
        out.push(StreamEvent::Ping);
    }

    fn open_block(
        &mut self,
        out: &mut Vec<StreamEvent>,
        content_block: Block,
        open: impl FnOnce() -> Open,
    ) {
        let index = self.next_index;
        self.next_index += 1;
        out.push(StreamEvent::ContentBlockStart {
            index,
            content_block,
        });
        self.open = Some((index, open()));
    }

    fn delta(&self, out: &mut Vec<StreamEvent>, delta: Delta) {
        if let Some((index, _)) = &self.open {
            out.push(StreamEvent::ContentBlockDelta {
                index: *index,
                delta,
            });
        }
    }

    fn close(&mut self, out: &mut Vec<StreamEvent>) {
        if let Some((index, _)) = self.open.take() {
            out.push(StreamEvent::ContentBlockStop { index });
        }
    }

    fn text(&mut self, out: &mut Vec<StreamEvent>, item_id: &str, part: Option<u32>, text: &str) {
        self.start(out);
        if !matches!(&self.open, Some((_, Open::Text(id, p))) if id == item_id && *p == part) {
            self.close(out);
            let id = item_id.to_string();
            let block = Block::Text(TextBlock::default());
            self.open_block(out, block, || Open::Text(id, part));
            self.saw_text = true;
        }
        if !text.is_empty() {
            self.delta(
                out,
                Delta::TextDelta {
                    text: text.to_string(),
                },
            );
        }
    }

    fn item_done(&mut self, out: &mut Vec<StreamEvent>, item: &Item) {
        self.start(out);
        match item {
            Item::Reasoning(r) => {
                let item_id = r.id.clone().unwrap_or_default();
                let streamed =
                    matches!(&self.open, Some((_, Open::Thinking(id))) if *id == item_id);
                if !streamed && trails_text(r, self.saw_text) {
                    return;
                }
                let signature =
                    encrypted_to_signature(r.encrypted_content.as_deref().unwrap_or(""));
                if !streamed {
                    self.close(out);
                    match &signature {
                        Signature::Redacted(data) => {
                            let block = Block::RedactedThinking(RedactedThinking {
                                data: data.clone(),
                                extra: Map::new(),
                            });
                            self.open_block(out, block, || Open::Thinking(item_id));
                            self.close(out);
                            return;
                        }
                        Signature::Thinking(_) => {
                            self.open_block(out, empty_thinking(), || Open::Thinking(item_id));
                            let text = r.summary_text();
                            if !text.is_empty() {
                                self.delta(out, Delta::ThinkingDelta { thinking: text });
                            }
                        }
                    }
                }
                if let Signature::Thinking(signature) = signature
                    && !signature.is_empty()
                {
                    self.delta(out, Delta::SignatureDelta { signature });
                }
                self.close(out);
            }
            Item::FunctionCall(call) => {
                let item_id = call.id.clone().unwrap_or_default();
                let sent = match &self.open {
                    Some((_, Open::Tool(id, sent))) if *id == item_id => *sent,
                    _ => {
                        self.close(out);
                        let id = item_id.clone();
                        self.open_block(out, tool_block(&call.call_id, &call.name), || {
                            Open::Tool(id, false)
                        });
                        self.saw_call = true;
                        false
                    }
                };
                if !sent && !call.arguments.trim().is_empty() {
                    // Arguments that came whole, normalised to an object.
                    let partial_json = arguments_input(&call.arguments).to_string();
                    self.delta(out, Delta::InputJsonDelta { partial_json });
                }
                self.close(out);
                self.replay(out);
            }
            Item::Message(_) => {
                if matches!(&self.open, Some((_, Open::Text(..)))) {
                    self.close(out);
                }
            }
            _ => {}
        }
    }

    fn finish(&mut self, out: &mut Vec<StreamEvent>, response: &Response) {
        self.start(out);
        self.close(out);
        let has_calls = self.saw_call
            || response
                .output
                .iter()
                .any(|i| matches!(i, Item::FunctionCall(_)));
        out.push(StreamEvent::MessageDelta {
            delta: MessageDeltaBody {
                stop_reason: Some(stop_reason(response, has_calls).into()),
                stop_sequence: None,
            },
            usage: response.usage.as_ref().map(usage).unwrap_or_default(),
        });
        out.push(StreamEvent::MessageStop);
        self.ended = true;
    }

    fn fail(&mut self, out: &mut Vec<StreamEvent>, kind: &str, message: &str) {
        out.push(StreamEvent::Error {
            error: ErrorBody {
                kind: kind.into(),
                message: message.into(),
            },
        });
        self.ended = true;
    }
}

fn tool_block(call_id: &str, name: &str) -> Block {
    Block::ToolUse(ToolUse {
        id: call_id.to_string(),
        name: name.to_string(),
        input: json!({}),
        extra: Map::new(),
    })
}

fn empty_thinking() -> Block {
    Block::Thinking(ThinkingBlock::default())
}

/// The Anthropic error type for a canonical error's `code` / `type`.
fn error_type(code: Option<&str>, kind: Option<&str>) -> &'static str {
    match (code, kind) {
        (Some("rate_limit_exceeded" | "insufficient_quota"), _) | (_, Some("rate_limit_error")) => {
            "rate_limit_error"
        }
        (Some("overloaded" | "server_is_overloaded"), _) | (_, Some("overloaded_error")) => {
            "overloaded_error"
        }
        (Some("context_length_exceeded" | "invalid_prompt"), _)
        | (_, Some("invalid_request_error")) => "invalid_request_error",
        _ => "api_error",
    }
}
