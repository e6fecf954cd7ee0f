//! Canonical response ⇄ `chat.completion`.
//!
//! [`response_to_chat`] renders a canonical response for a Chat client (host
//! egress); [`chat_to_response`] maps a Chat backend's answer to the
//! canonical response (translator).

use crate::chat::{
    ChatChoice, ChatCompletion, ChatFunctionCall, ChatResponseMessage, ChatToolCall, ChatUsage,
};
use crate::ids::IdGen;
use crate::responses::{
    ContentPart, FunctionCall, Item, Message, MessageContent, OutputText, Reasoning, Refusal,
    Response, Role, SummaryText, Usage,
};
use serde_json::{Map, Value, json};

/// Extension field of a canonical response carrying the extra choices of a
/// Chat backend's answer to `n > 1` (raw `chat.completion` choices 1..n).
pub const EXTRA_CHOICES: &str = "llmproxy_chat_choices";

/// `finish_reason` for a canonical response: `tool_calls` if it called a
/// function, `content_filter` / `length` if it is incomplete for that reason,
/// else `stop`.
pub fn finish_reason(
    status: Option<&str>,
    incomplete_reason: Option<&str>,
    called: bool,
) -> &'static str {
    if called {
        return "tool_calls";
    }
    match (status, incomplete_reason) {
        (Some("incomplete"), Some("content_filter")) => "content_filter",
        (Some("incomplete"), _) => "length",
        _ => "stop",
    }
}

/// Chat usage from canonical usage.
pub fn chat_usage(u: &Usage) -> Value {
    json!({
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.total_tokens,
        "prompt_tokens_details": {"cached_tokens": u.input_tokens_details.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": u.output_tokens_details.reasoning_tokens},
    })
}

/// Canonical usage from Chat usage.
pub fn canonical_usage(u: &ChatUsage) -> Usage {
    let mut usage = Usage::new(
        u.prompt_tokens,
        u.cached_tokens(),
        u.completion_tokens,
        u.reasoning_tokens(),
    );
    if u.total_tokens > 0 {
        usage.total_tokens = u.total_tokens;
    }
    usage
}

/// The `chatcmpl-…` id for a response id.
pub fn chat_id(response_id: &str) -> String {
    let suffix = response_id.strip_prefix("resp_").unwrap_or(response_id);
    format!("chatcmpl-{suffix}")
}

/// Renders a complete canonical response (`ResponseResource` JSON) as a
/// `chat.completion`. `model` is the name the client asked for.
pub fn response_to_chat(response: &Map<String, Value>, model: &str) -> Value {
    let parsed: Response =
        serde_json::from_value(Value::Object(response.clone())).unwrap_or_default();
    let mut content = String::new();
    let mut refusal = String::new();
    let mut reasoning = Vec::new();
    let mut tool_calls = Vec::new();
    let mut annotations = Vec::new();
    let mut logprobs = Vec::new();
    for item in &parsed.output {
        match item {
            Item::Message(m) => {
                for part in m.content.parts(Role::Assistant) {
                    match part {
                        ContentPart::OutputText(t) => {
                            let offset = content.chars().count() as u64;
                            for a in &t.annotations {
                                annotations.push(chat_annotation(a, offset));
                            }
                            logprobs.extend(t.logprobs.iter().flatten().cloned());
                            content.push_str(&t.text);
                        }
                        ContentPart::Refusal(r) => refusal.push_str(&r.refusal),
                        _ => {}
                    }
                }
            }
            Item::FunctionCall(c) => tool_calls.push(json!({
                "id": c.call_id, "type": "function",
                "function": {"name": c.name, "arguments": c.arguments}
            })),
            Item::Reasoning(r) => {
                let text = r.summary_text();
                if !text.is_empty() {
                    reasoning.push(text);
                }
            }
            _ => {}
        }
    }
    let mut message = json!({
        "role": "assistant",
        "content": if content.is_empty() && (!tool_calls.is_empty() || !refusal.is_empty()) { Value::Null } else { json!(content) },
        "refusal": if refusal.is_empty() { Value::Null } else { json!(refusal) },
    });
    if !tool_calls.is_empty() {
        message["tool_calls"] = Value::Array(tool_calls.clone());
    }
    if !reasoning.is_empty() {
        message["reasoning_content"] = json!(reasoning.join("\n\n"));
    }
    if !annotations.is_empty() {
        message["annotations"] = Value::Array(annotations);
    }
    let finish = finish_reason(
        parsed.status.as_deref(),
        parsed.incomplete_reason(),
        !tool_calls.is_empty(),
    );
    let mut choices = vec![json!({
        "index": 0,
        "message": message,
        "finish_reason": finish,
        "logprobs": if logprobs.is_empty() { Value::Null } else { json!({"content": logprobs, "refusal": null}) },
    })];
    if let Some(Value::Array(more)) = response.get(EXTRA_CHOICES) {
        choices.extend(more.iter().cloned());
    }
    let id = parsed.id.as_deref().unwrap_or("resp_0");
    let mut out = json!({
        "id": chat_id(id),
        "object": "chat.completion",
        "created": parsed.created_at.unwrap_or(0),
        "model": model,
        "choices": choices,
        "usage": parsed.usage.as_ref().map(chat_usage),
        "system_fingerprint": null,
    });
    if let Some(tier) = response.get("service_tier").and_then(Value::as_str) {
        out["service_tier"] = json!(tier);
    }
    out
}

/// A Responses `url_citation` annotation in Chat form, with offsets moved by
/// `offset` characters (Chat offsets count from the start of the whole
/// content).
fn chat_annotation(a: &Value, offset: u64) -> Value {
    if a.get("type").and_then(Value::as_str) != Some("url_citation") {
        return a.clone();
    }
    let num = |k: &str| a.get(k).and_then(Value::as_u64).unwrap_or(0) + offset;
    json!({
        "type": "url_citation",
        "url_citation": {
            "url": a.get("url").cloned().unwrap_or(Value::Null),
            "title": a.get("title").cloned().unwrap_or(Value::Null),
            "start_index": num("start_index"),
            "end_index": num("end_index"),
        }
    })
}

/// A Chat `url_citation` annotation in Responses form.
fn responses_annotation(a: &Value) -> Value {
    match a.get("url_citation") {
        Some(c) if a.get("type").and_then(Value::as_str) == Some("url_citation") => {
            let mut out = c.clone();
            out["type"] = json!("url_citation");
            out
        }
        _ => a.clone(),
    }
}

/// The canonical status and incomplete reason for a Chat `finish_reason`.
pub fn status_for_finish(finish: Option<&str>) -> (&'static str, Option<&'static str>) {
    match finish {
        Some("length") => ("incomplete", Some("max_output_tokens")),
        Some("content_filter") => ("incomplete", Some("content_filter")),
        _ => ("completed", None),
    }
}

/// Maps a Chat backend's `chat.completion` to a canonical response: the
/// reasoning (`reasoning_content` or `reasoning`) as a reasoning item, the
/// content and refusal as one message item, each tool call as a
/// `function_call` item (arguments `{}` when empty). Choices after the first
/// ride along under [`EXTRA_CHOICES`].
pub fn chat_to_response(chat: &ChatCompletion, ids: &mut IdGen) -> Response {
    let mut output = Vec::new();
    let first = chat
        .choices
        .iter()
        .find(|c| c.index == 0)
        .or(chat.choices.first());
    let mut finish = None;
    if let Some(choice) = first {
        finish = choice.finish_reason.clone();
        output = choice_items(choice, ids);
    }
    let (status, reason) = status_for_finish(finish.as_deref());
    let mut extra = Map::new();
    let more: Vec<Value> = chat
        .choices
        .iter()
        .filter(|c| Some(*c) != first)
        .filter_map(|c| serde_json::to_value(c).ok())
        .collect();
    if !more.is_empty() {
        extra.insert(EXTRA_CHOICES.into(), Value::Array(more));
    }
    Response {
        id: None,
        status: Some(status.into()),
        output,
        usage: chat.usage.as_ref().map(canonical_usage),
        incomplete_details: reason.map(|r| json!({"reason": r})),
        error: None,
        created_at: (chat.created > 0).then_some(chat.created),
        model: None,
        extra,
    }
}

fn choice_items(choice: &ChatChoice, ids: &mut IdGen) -> Vec<Item> {
    let m: &ChatResponseMessage = &choice.message;
    let mut items = Vec::new();
    let reasoning = m
        .reasoning_content
        .as_deref()
        .or(m.reasoning.as_deref())
        .unwrap_or("");
    if !reasoning.is_empty() {
        items.push(Item::Reasoning(Reasoning {
            id: Some(ids.next("rs")),
            summary: vec![SummaryText::new(reasoning.to_string())],
            content: None,
            encrypted_content: None,
            status: None,
            extra: Map::new(),
        }));
    }
    let mut parts = Vec::new();
    if let Some(text) = m.content.as_deref().filter(|t| !t.is_empty()) {
        let mut part = OutputText::new(text.to_string());
        part.annotations = m
            .annotations
            .iter()
            .flatten()
            .map(responses_annotation)
            .collect();
        part.logprobs = choice
            .logprobs
            .as_ref()
            .and_then(|l| l.get("content"))
            .and_then(Value::as_array)
            .cloned();
        parts.push(ContentPart::OutputText(part));
    }
    if let Some(r) = m.refusal.as_deref().filter(|r| !r.is_empty()) {
        parts.push(ContentPart::Refusal(Refusal {
            refusal: r.to_string(),
            extra: Map::new(),
        }));
    }
    if !parts.is_empty() {
        items.push(Item::Message(Message {
            id: Some(ids.next("msg")),
            role: Role::Assistant,
            content: MessageContent::Parts(parts),
            status: Some("completed".into()),
            extra: Map::new(),
        }));
    }
    let legacy = m.function_call.as_ref().map(|f| ChatToolCall {
        id: String::new(),
        kind: "function".into(),
        function: ChatFunctionCall {
            name: f.name.clone(),
            arguments: f.arguments.clone(),
        },
        extra: Map::new(),
    });
    for call in m.tool_calls.iter().flatten().chain(legacy.iter()) {
        let args = if call.function.arguments.trim().is_empty() {
            "{}".to_string()
        } else {
            call.function.arguments.clone()
        };
        let call_id = if call.id.is_empty() {
            ids.next("call")
        } else {
            call.id.clone()
        };
        items.push(Item::FunctionCall(FunctionCall {
            id: Some(ids.next("fc")),
            call_id,
            name: call.function.name.clone(),
            arguments: args,
            status: Some("completed".into()),
            extra: Map::new(),
        }));
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_answer_to_canonical_and_back() {
        let chat: ChatCompletion = serde_json::from_value(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1767000000, "model": "m",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": null, "message": {
                "role": "assistant", "content": "Let me check.", "reasoning_content": "The user wants weather.",
                "tool_calls": [
                    {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_b", "type": "function", "function": {"name": "now", "arguments": ""}}
                ]}}],
            "usage": {"prompt_tokens": 50, "completion_tokens": 18, "total_tokens": 68,
                      "prompt_tokens_details": {"cached_tokens": 20}, "completion_tokens_details": {"reasoning_tokens": 5}}
        }))
        .unwrap();
        let resp = chat_to_response(&chat, &mut IdGen::with_stem("t"));
        let v = serde_json::to_value(&resp).unwrap();
        assert_eq!(v["status"], "completed");
        assert_eq!(v["output"][0]["type"], "reasoning");
        assert_eq!(v["output"][1]["content"][0]["text"], "Let me check.");
        assert_eq!(v["output"][2]["call_id"], "call_a");
        assert_eq!(v["output"][3]["arguments"], "{}");
        assert_eq!(v["usage"]["input_tokens_details"]["cached_tokens"], 20);

        let mut obj = v.as_object().unwrap().clone();
        obj.insert("id".into(), json!("resp_abc"));
        let back = response_to_chat(&obj, "client-model");
        assert_eq!(back["id"], "chatcmpl-abc");
        assert_eq!(back["model"], "client-model");
        assert_eq!(back["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(back["choices"][0]["message"]["content"], "Let me check.");
        assert_eq!(
            back["choices"][0]["message"]["reasoning_content"],
            "The user wants weather."
        );
        assert_eq!(
            back["choices"][0]["message"]["tool_calls"][1]["function"]["arguments"],
            "{}"
        );
        assert_eq!(back["usage"]["prompt_tokens_details"]["cached_tokens"], 20);
        assert_eq!(
            back["usage"]["completion_tokens_details"]["reasoning_tokens"],
            5
        );
    }

    #[test]
    fn finish_reasons() {
        assert_eq!(finish_reason(Some("completed"), None, false), "stop");
        assert_eq!(finish_reason(Some("completed"), None, true), "tool_calls");
        assert_eq!(
            finish_reason(Some("incomplete"), Some("max_output_tokens"), false),
            "length"
        );
        assert_eq!(
            finish_reason(Some("incomplete"), Some("content_filter"), false),
            "content_filter"
        );
        assert_eq!(
            status_for_finish(Some("length")),
            ("incomplete", Some("max_output_tokens"))
        );
        assert_eq!(status_for_finish(Some("tool_calls")), ("completed", None));
    }

    #[test]
    fn extra_choices_ride_along() {
        let chat: ChatCompletion = serde_json::from_value(json!({
            "choices": [
                {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "a"}},
                {"index": 1, "finish_reason": "stop", "message": {"role": "assistant", "content": "b"}}
            ]
        }))
        .unwrap();
        let resp = chat_to_response(&chat, &mut IdGen::with_stem("t"));
        let obj = serde_json::to_value(&resp)
            .unwrap()
            .as_object()
            .unwrap()
            .clone();
        let back = response_to_chat(&obj, "m");
        assert_eq!(back["choices"][1]["index"], 1);
        assert_eq!(back["choices"][1]["message"]["content"], "b");
    }

    #[test]
    fn citations_are_shifted_to_whole_content_offsets() {
        let obj = json!({"id": "resp_1", "status": "completed", "output": [
        {"type": "message", "id": "m1", "role": "assistant", "status": "completed", "content": [
            {"type": "output_text", "text": "abc", "annotations": []},
            {"type": "output_text", "text": "def", "annotations": [
                {"type": "url_citation", "url": "https://x", "title": "X", "start_index": 0, "end_index": 3}]}
        ]}]});
        let back = response_to_chat(obj.as_object().unwrap(), "m");
        let a = &back["choices"][0]["message"]["annotations"][0]["url_citation"];
        assert_eq!(
            (a["start_index"].as_u64(), a["end_index"].as_u64()),
            (Some(3), Some(6))
        );
        assert_eq!(back["choices"][0]["message"]["content"], "abcdef");
    }
}
