//! A canonical response → a Messages `message`.
//!
//! Output text and refusals become `text` blocks; reasoning items become
//! `thinking` blocks (or `redacted_thinking` for Claude's redacted
//! thinking) whose signature the client sends back unchanged
//! ([`encrypted_to_signature`]); function calls become `tool_use` blocks.
//! A reasoning item with no text of another provider's that follows the
//! answer's text (Gemini's signature of its last text part, which Gemini
//! does not require back) is left out: clients take an answer's last block
//! for its text.
//! Hosted-tool items (a search the upstream ran) are left out: the answer
//! that follows them says what they found.

use super::request::OPAQUE;
use super::{
    Block, Message, RedactedThinking, TextBlock, ThinkingBlock, ToolUse, Usage as MessagesUsage,
};
use crate::envelope;
use crate::responses::{ContentPart, Item, MessageContent, Reasoning, Response, Usage};
use serde_json::{Map, Value, json};

/// The `message` for a canonical response; `model` is the name the client
/// asked for, `id` the message id.
pub fn response_to_message(response: &Response, model: &str, id: &str) -> Message {
    let mut content: Vec<Block> = Vec::new();
    for item in &response.output {
        match item {
            Item::Message(m) => content.extend(message_blocks(&m.content)),
            Item::Reasoning(r)
                if trails_text(r, content.iter().any(|b| matches!(b, Block::Text(_)))) => {}
            Item::Reasoning(r) => content.push(reasoning_block(r)),
            Item::FunctionCall(call) => content.push(Block::ToolUse(ToolUse {
                id: call.call_id.clone(),
                name: call.name.clone(),
                input: arguments_input(&call.arguments),
                extra: Map::new(),
            })),
            _ => {}
        }
    }
    let has_calls = content.iter().any(|b| matches!(b, Block::ToolUse(_)));
    Message {
        id: id.to_string(),
        kind: "message".into(),
        role: "assistant".into(),
        model: model.to_string(),
        content,
        stop_reason: Some(stop_reason(response, has_calls).into()),
        stop_sequence: None,
        usage: response.usage.as_ref().map(usage).unwrap_or_default(),
        extra: Map::new(),
    }
}

fn message_blocks(content: &MessageContent) -> Vec<Block> {
    let text = |text: &str| {
        Block::Text(TextBlock {
            text: text.to_string(),
            extra: Map::new(),
        })
    };
    match content {
        MessageContent::Text(t) if t.is_empty() => Vec::new(),
        MessageContent::Text(t) => vec![text(t)],
        MessageContent::Parts(parts) => parts
            .iter()
            .filter_map(|p| match p {
                ContentPart::OutputText(t) if !t.text.is_empty() => Some(text(&t.text)),
                ContentPart::Refusal(r) if !r.refusal.is_empty() => Some(text(&r.refusal)),
                _ => None,
            })
            .collect(),
    }
}

/// Whether a reasoning item is another provider's textless state that
/// follows the answer's text (`after_text`), and is left out.
pub(crate) fn trails_text(r: &Reasoning, after_text: bool) -> bool {
    after_text
        && r.summary_text().is_empty()
        && r.encrypted_content
            .as_deref()
            .is_none_or(|e| envelope::open("anthropic", e).is_none())
}

/// The block for a reasoning item.
pub(crate) fn reasoning_block(r: &Reasoning) -> Block {
    let encrypted = r.encrypted_content.as_deref().unwrap_or("");
    match encrypted_to_signature(encrypted) {
        Signature::Redacted(data) => Block::RedactedThinking(RedactedThinking {
            data,
            extra: Map::new(),
        }),
        Signature::Thinking(signature) => Block::Thinking(ThinkingBlock {
            thinking: r.summary_text(),
            signature,
            extra: Map::new(),
        }),
    }
}

/// What a reasoning item's `encrypted_content` is in a Messages answer.
pub(crate) enum Signature {
    /// A `thinking` block's `signature`.
    Thinking(String),
    /// A `redacted_thinking` block's `data`.
    Redacted(String),
}

/// A reasoning item's `encrypted_content` as the client will send it back
/// ([`super::request::signature_to_encrypted`] reverses it): Claude's own
/// signature or redacted data unwrapped, another provider's llmproxy
/// envelope as it is, and any other opaque state wrapped in an envelope.
pub(crate) fn encrypted_to_signature(encrypted: &str) -> Signature {
    if encrypted.is_empty() {
        return Signature::Thinking(String::new());
    }
    if let Some(fields) = envelope::open("anthropic", encrypted) {
        let field = |k: &str| fields.get(k).and_then(Value::as_str).map(str::to_string);
        if field("k").as_deref() == Some("redacted")
            && let Some(data) = field("data")
        {
            return Signature::Redacted(data);
        }
        if let Some(sig) = field("sig") {
            return Signature::Thinking(sig);
        }
    }
    if encrypted.starts_with(crate::ENVELOPE_PREFIX) {
        return Signature::Thinking(encrypted.to_string());
    }
    let mut fields = Map::new();
    fields.insert("ec".into(), json!(encrypted));
    Signature::Thinking(envelope::seal(OPAQUE, fields))
}

/// A call's arguments as a `tool_use` input: the object they hold (`{}`
/// when empty; a non-object is kept under `input`).
pub(crate) fn arguments_input(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return json!({});
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        Ok(other) => json!({ "input": other }),
        Err(_) => json!({ "input": arguments }),
    }
}

/// The `stop_reason` for a finished response.
pub(crate) fn stop_reason(response: &Response, has_calls: bool) -> &'static str {
    match (response.status.as_deref(), response.incomplete_reason()) {
        (Some("incomplete"), Some("content_filter")) => "refusal",
        (Some("incomplete"), _) => "max_tokens",
        _ if has_calls => "tool_use",
        _ => "end_turn",
    }
}

/// Canonical usage in Messages terms: `input_tokens` excludes the cached
/// (and cache-written) ones.
pub fn usage(u: &Usage) -> MessagesUsage {
    let cached = u.input_tokens_details.cached_tokens;
    let written = u
        .input_tokens_details
        .extra
        .get("cache_write_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    MessagesUsage {
        input_tokens: u.input_tokens.saturating_sub(cached + written),
        cache_creation_input_tokens: written,
        cache_read_input_tokens: cached,
        output_tokens: u.output_tokens,
        extra: Map::new(),
    }
}
