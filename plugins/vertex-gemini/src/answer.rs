//! Gemini answers → canonical output. One state machine serves both the
//! streamed chunks of `streamGenerateContent` and the single body of
//! `generateContent` (which is mapped as a one-chunk stream).
//!
//! Thought signatures are kept: a thought part's signature goes into its
//! reasoning item's envelope; a function call's signature into a
//! signature-only reasoning item right before the call; a text part's
//! signature (often on a trailing empty part) into a signature-only
//! reasoning item right after the message.

use llmproxy_sdk::api::envelope;
use llmproxy_sdk::api::ids::IdGen;
use llmproxy_sdk::api::responses::{Item, Reasoning, Response, Usage};
use llmproxy_sdk::api::stream::{Finish, StreamBuilder};
use serde_json::{Map, Value, json};

/// A mid-stream error Gemini sent.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkError {
    pub message: String,
    pub status: Option<String>,
    pub code: Option<u16>,
}

/// Maps Gemini chunks to canonical events.
#[derive(Debug)]
pub struct Mapper {
    builder: StreamBuilder,
    model: String,
    /// `parallel_tool_calls: false`: keep only the first call.
    single_call: bool,
    calls: usize,
    /// A signature for the last text part, not yet emitted.
    text_signature: Option<String>,
    finish: Option<String>,
    finish_message: Option<String>,
    usage: Option<Value>,
    blocked: Option<String>,
}

impl Mapper {
    pub fn new(ids: IdGen, model: &str, single_call: bool) -> Self {
        Mapper {
            builder: StreamBuilder::new(ids),
            model: model.to_string(),
            single_call,
            calls: 0,
            text_signature: None,
            finish: None,
            finish_message: None,
            usage: None,
            blocked: None,
        }
    }

    fn seal(&self, anchor: Value, signature: &str) -> String {
        let mut f = Map::new();
        f.insert("m".into(), json!(self.model));
        f.insert("sigs".into(), json!([{"a": anchor, "s": signature}]));
        envelope::seal("gemini", f)
    }

    /// A reasoning item that only carries a signature.
    fn carrier(&mut self, anchor: Value, signature: &str, out: &mut Vec<Value>) {
        let item = Item::Reasoning(Reasoning {
            id: Some(self.builder.next_id("rs")),
            summary: Vec::new(),
            content: None,
            encrypted_content: Some(self.seal(anchor, signature)),
            status: None,
            extra: Map::new(),
        });
        self.builder.item(out, item);
    }

    /// Closes the open message (as `status`), then emits its pending text
    /// signature.
    fn close_text(&mut self, out: &mut Vec<Value>) {
        self.close_text_as(out, "completed");
    }

    fn close_text_as(&mut self, out: &mut Vec<Value>, status: &str) {
        self.builder.close_message_as(out, status);
        if let Some(sig) = self.text_signature.take() {
            self.carrier(json!({"text": "last"}), &sig, out);
        }
    }

    /// Maps one `GenerateContentResponse` (a chunk, or the whole answer).
    pub fn chunk(&mut self, chunk: &Value, out: &mut Vec<Value>) -> Result<(), ChunkError> {
        if let Some(err) = chunk.get("error") {
            return Err(ChunkError {
                message: err
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("Gemini reported an error")
                    .to_string(),
                status: err
                    .get("status")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                code: err
                    .get("code")
                    .and_then(Value::as_u64)
                    .and_then(|c| u16::try_from(c).ok()),
            });
        }
        self.builder.start(out);
        if let Some(u) = chunk.get("usageMetadata").filter(|u| u.is_object()) {
            // A running total in streams: keep the last.
            self.usage = Some(u.clone());
        }
        if let Some(reason) = chunk
            .pointer("/promptFeedback/blockReason")
            .and_then(Value::as_str)
        {
            self.blocked = Some(reason.to_string());
        }
        let Some(candidate) = chunk
            .get("candidates")
            .and_then(Value::as_array)
            .and_then(|c| c.first())
        else {
            return Ok(());
        };
        let parts = candidate
            .pointer("/content/parts")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for part in &parts {
            self.part(part, out);
        }
        if let Some(f) = candidate.get("finishReason").and_then(Value::as_str) {
            self.finish = Some(f.to_string());
        }
        if let Some(m) = candidate.get("finishMessage").and_then(Value::as_str) {
            self.finish_message = Some(m.to_string());
        }
        Ok(())
    }

    fn part(&mut self, part: &Value, out: &mut Vec<Value>) {
        let signature = part.get("thoughtSignature").and_then(Value::as_str);
        let text = part.get("text").and_then(Value::as_str).unwrap_or("");
        let thought = part
            .get("thought")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if let Some(call) = part.get("functionCall") {
            self.close_text(out);
            self.builder.close_reasoning(out);
            if self.single_call && self.calls > 0 {
                return;
            }
            self.calls += 1;
            let call_id = call
                .get("id")
                .and_then(Value::as_str)
                .filter(|id| !id.is_empty() && id.len() <= 64)
                .map(str::to_string)
                .unwrap_or_else(|| self.builder.next_id("call"));
            if let Some(sig) = signature {
                self.carrier(json!({"call": call_id}), sig, out);
            }
            let name = call.get("name").and_then(Value::as_str).unwrap_or("");
            let args = match call.get("args") {
                Some(Value::Object(a)) => Value::Object(a.clone()).to_string(),
                _ => "{}".to_string(),
            };
            self.builder.call_start(out, &call_id, &call_id, name);
            self.builder.call_args(out, &call_id, &args);
            self.builder.call_done(out, &call_id);
        } else if thought {
            if !text.is_empty() {
                self.close_text(out);
                self.builder.reasoning(out, text);
            }
            if let Some(sig) = signature {
                let sealed = self.seal(json!({"thought": 0}), sig);
                self.builder.reasoning_encrypted(out, sealed);
            }
        } else if !text.is_empty() {
            self.builder.text(out, text);
            if let Some(sig) = signature {
                self.text_signature = Some(sig.to_string());
            }
        } else if let Some(sig) = signature {
            // A signature on an otherwise empty part belongs to the text
            // before it.
            self.text_signature = Some(sig.to_string());
        }
    }

    /// Canonical usage from the last `usageMetadata`.
    fn usage(&self) -> Option<Usage> {
        let u = self.usage.as_ref()?;
        let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
        let input = n("promptTokenCount") + n("toolUsePromptTokenCount");
        let thoughts = n("thoughtsTokenCount");
        let output = n("candidatesTokenCount") + thoughts;
        let mut usage = Usage::new(input, n("cachedContentTokenCount"), output, thoughts);
        if let Some(total) = u.get("totalTokenCount").and_then(Value::as_u64) {
            usage.total_tokens = total;
        }
        Some(usage)
    }

    fn finish_kind(&self, truncated_if_unfinished: bool) -> Finish {
        if self.blocked.is_some() && self.finish.is_none() {
            return Finish::Incomplete("content_filter".into());
        }
        let message = |default: &str| {
            self.finish_message
                .clone()
                .unwrap_or_else(|| default.to_string())
        };
        match self.finish.as_deref() {
            Some("STOP") => Finish::Completed,
            Some("MAX_TOKENS") => Finish::Incomplete("max_output_tokens".into()),
            Some(
                "SAFETY"
                | "RECITATION"
                | "BLOCKLIST"
                | "PROHIBITED_CONTENT"
                | "SPII"
                | "IMAGE_SAFETY"
                | "IMAGE_PROHIBITED_CONTENT"
                | "IMAGE_RECITATION",
            ) => Finish::Incomplete("content_filter".into()),
            Some(
                r @ ("MALFORMED_FUNCTION_CALL" | "UNEXPECTED_TOOL_CALL" | "TOO_MANY_TOOL_CALLS"),
            ) => Finish::Failed {
                code: "model_error".into(),
                message: message(&format!("Gemini stopped with {r}; retrying may help")),
            },
            Some(_) if self.builder.has_output() => Finish::Completed,
            Some(r) => Finish::Failed {
                code: "model_error".into(),
                message: message(&format!("Gemini stopped with {r} and no output")),
            },
            None if truncated_if_unfinished => Finish::Failed {
                code: "bad_upstream_response".into(),
                message: "the Gemini stream ended before a finishReason: the answer is incomplete"
                    .into(),
            },
            None => Finish::Completed,
        }
    }

    /// Closes everything and emits the terminal event. `truncated` says the
    /// stream ended without a `finishReason` being a failure (streams) or
    /// not (whole answers always carry one unless blocked).
    pub fn end(&mut self, out: &mut Vec<Value>, truncated_if_unfinished: bool) {
        if self.builder.is_finished() {
            return;
        }
        let finish = self.finish_kind(truncated_if_unfinished);
        let status = if finish == Finish::Completed {
            "completed"
        } else {
            "incomplete"
        };
        self.close_text_as(out, status);
        let usage = self.usage();
        self.builder.finish(out, finish, usage);
    }

    /// The canonical response for a whole (non-streamed) answer.
    pub fn response(mut self) -> Response {
        self.end(&mut Vec::new(), false);
        self.builder.response()
    }
}
