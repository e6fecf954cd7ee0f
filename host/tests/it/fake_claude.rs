//! A strict in-process Claude on Vertex (`rawPredict` / `streamRawPredict`
//! on `publishers/anthropic`), served by [`crate::fake_vertex::FakeVertex`]
//! behind the same token check.
//!
//! Like Vertex and the Messages API it rejects: `model` in the body, a wrong
//! or missing `anthropic_version`, a missing `max_tokens`, unknown fields,
//! betas Vertex does not know, URL image sources and unsupported image
//! types, empty text blocks, a conversation not starting with the user or
//! repeating a role, `tool_use` ids outside `^[a-zA-Z0-9_-]+$`, `tool_use`
//! without `tool_result`s at the start of the next message, orphan
//! `tool_result`s, thinking budgets out of range, sampling parameters or a
//! forced tool with thinking, a tool loop whose last assistant turn does not
//! start with its thinking, thinking blocks whose text or signature differs
//! from what it issued, and thinking in a final assistant turn without
//! thinking on; `context_management` and deferred tools without their betas,
//! and `output_config.effort` (its beta is not on Vertex). It counts tokens
//! at `count-tokens:rawPredict`, which wants Vertex's model id in the body.

use crate::fake_vertex::{FakeVertex, LOCATION, PROJECT};
use axum::body::Body;
use axum::response::Response;
use serde_json::{Value, json};

/// The betas Vertex takes (a sample of them).
const BETAS: [&str; 5] = [
    "context-1m-2025-08-07",
    "interleaved-thinking-2025-05-14",
    "context-management-2025-06-27",
    "tool-search-tool-2025-10-19",
    "web-search-2025-03-05",
];

fn anthropic_error(status: u16, kind: &str, message: &str) -> Response {
    let body = json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_vrtx_test"});
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn bad(message: &str) -> Response {
    anthropic_error(400, "invalid_request_error", message)
}

/// Serves one request to `…/publishers/anthropic/models/{model}:{method}`.
pub fn handle(fake: &FakeVertex, model: &str, method: &str, raw: &[u8]) -> Response {
    let stream = match method {
        "rawPredict" => false,
        "streamRawPredict" => true,
        other => return bad(&format!("unknown method {other}")),
    };
    let body: Value = match serde_json::from_slice(raw) {
        Ok(v) => v,
        Err(e) => return bad(&format!("invalid JSON: {e}")),
    };
    if model == "count-tokens" {
        return count_tokens(fake, &body, stream);
    }
    // A string is one text block, as the Messages API reads it.
    let mut body = body;
    for m in body["messages"].as_array_mut().into_iter().flatten() {
        if let Some(text) = m["content"].as_str() {
            m["content"] = json!([{"type": "text", "text": text}]);
        }
    }
    if let Err(message) = validate(fake, &body, stream) {
        return bad(&message);
    }
    fake.record(
        &format!("/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/anthropic/models/{model}:{method}"),
        &body,
    );
    answer(fake, model, &body, stream)
}

fn unknown(obj: &Value, allowed: &[&str], at: &str) -> Result<(), String> {
    let o = obj.as_object().ok_or(format!("{at}: expected an object"))?;
    match o.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!("{at}.{k}: Extra inputs are not permitted")),
        None => Ok(()),
    }
}

fn kind(block: &Value) -> &str {
    block["type"].as_str().unwrap_or("")
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn validate(fake: &FakeVertex, body: &Value, stream: bool) -> Result<(), String> {
    if body.get("model").is_some() {
        return Err("model: Extra inputs are not permitted".into());
    }
    if body["anthropic_version"] != "vertex-2023-10-16" {
        return Err(format!(
            "anthropic_version: Input should be 'vertex-2023-10-16' (got {})",
            body["anthropic_version"]
        ));
    }
    unknown(
        body,
        &[
            "anthropic_version",
            "max_tokens",
            "messages",
            "system",
            "tools",
            "tool_choice",
            "thinking",
            "temperature",
            "top_p",
            "top_k",
            "stop_sequences",
            "metadata",
            "stream",
            "anthropic_beta",
            "context_management",
            "output_config",
        ],
        "body",
    )?;
    let has_beta = |beta: &str| {
        body["anthropic_beta"]
            .as_array()
            .is_some_and(|b| b.iter().any(|b| b == beta))
    };
    if body.get("context_management").is_some() && !has_beta("context-management-2025-06-27") {
        return Err("context_management: Extra inputs are not permitted".into());
    }
    if let Some(config) = body.get("output_config") {
        unknown(config, &["format"], "output_config")?;
    }
    let max_tokens = body["max_tokens"]
        .as_u64()
        .filter(|n| *n > 0)
        .ok_or("max_tokens: Field required")?;
    if body.get("stream").is_some_and(|s| s != true) || (body["stream"] == true) != stream {
        return Err("stream must be true exactly on streamRawPredict".into());
    }
    for beta in body["anthropic_beta"].as_array().into_iter().flatten() {
        if !BETAS.contains(&beta.as_str().unwrap_or("")) {
            return Err(format!(
                "Unexpected value(s) `{}` for the `anthropic-beta` header.",
                beta.as_str().unwrap_or("")
            ));
        }
    }
    let thinking = match body.get("thinking") {
        None => false,
        Some(t) => {
            unknown(t, &["type", "budget_tokens"], "thinking")?;
            let budget = t["budget_tokens"].as_u64().unwrap_or(0);
            if t["type"] != "enabled" || budget < 1024 || budget >= max_tokens {
                return Err(
                    "thinking.budget_tokens: must be at least 1024 and less than max_tokens".into(),
                );
            }
            true
        }
    };
    if thinking {
        if body.get("temperature").is_some() || body.get("top_p").is_some() {
            return Err("temperature and top_p may not be set when thinking is enabled".into());
        }
        if matches!(
            body.pointer("/tool_choice/type").and_then(Value::as_str),
            Some("any" | "tool")
        ) {
            return Err("Thinking may not be enabled when tool_choice forces tool use.".into());
        }
    }
    let mut breakpoints = 0;
    if let Some(system) = body.get("system") {
        match system {
            Value::String(_) => {}
            Value::Array(blocks) => {
                for b in blocks {
                    unknown(b, &["type", "text", "cache_control"], "system")?;
                    breakpoints += usize::from(b.get("cache_control").is_some());
                }
            }
            _ => return Err("system: must be a string or a list of text blocks".into()),
        }
    }
    for (i, t) in body["tools"].as_array().into_iter().flatten().enumerate() {
        if t.get("type").is_some() {
            // A server tool: only web search exists here.
            unknown(
                t,
                &["type", "name", "max_uses", "cache_control"],
                &format!("tools.{i}"),
            )?;
            if t["type"] != "web_search_20250305" || t["name"] != "web_search" {
                return Err(format!(
                    "tools.{i}: Input tag {} does not match any of the expected tags",
                    t["type"]
                ));
            }
            continue;
        }
        unknown(
            t,
            &[
                "name",
                "description",
                "input_schema",
                "cache_control",
                "defer_loading",
            ],
            &format!("tools.{i}"),
        )?;
        if t.get("defer_loading").is_some() && !has_beta("tool-search-tool-2025-10-19") {
            return Err(format!(
                "tools.{i}.defer_loading: Extra inputs are not permitted"
            ));
        }
        let name = t["name"].as_str().unwrap_or("");
        if !(1..=128).contains(&name.len())
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(format!(
                "tools.{i}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'"
            ));
        }
        if t["input_schema"]["type"] != "object" {
            return Err(format!(
                "tools.{i}.input_schema.type: Input should be 'object'"
            ));
        }
        breakpoints += usize::from(t.get("cache_control").is_some());
    }
    if let Some(tc) = body.get("tool_choice") {
        unknown(
            tc,
            &["type", "name", "disable_parallel_tool_use"],
            "tool_choice",
        )?;
    }
    let messages = body["messages"]
        .as_array()
        .filter(|m| !m.is_empty())
        .ok_or("messages: at least one message is required")?;
    let mut prev_uses: Vec<String> = Vec::new();
    let mut prev_role = "";
    for (i, m) in messages.iter().enumerate() {
        unknown(m, &["role", "content"], &format!("messages.{i}"))?;
        let role = m["role"].as_str().unwrap_or("");
        if role != "user" && role != "assistant" {
            return Err(format!(
                "messages.{i}.role: Input should be 'user' or 'assistant'"
            ));
        }
        if i == 0 && role != "user" {
            return Err("messages: the first message must use the \"user\" role".into());
        }
        if role == prev_role {
            return Err(format!("messages.{i}: roles must alternate"));
        }
        prev_role = role;
        let blocks = m["content"]
            .as_array()
            .filter(|c| !c.is_empty())
            .ok_or(format!("messages.{i}: content must be a non-empty list"))?;
        let mut uses = Vec::new();
        let mut results = Vec::new();
        let mut results_first = true;
        for (j, b) in blocks.iter().enumerate() {
            let at = format!("messages.{i}.content.{j}");
            breakpoints += usize::from(b.get("cache_control").is_some());
            match (role, kind(b)) {
                (_, "text") => {
                    unknown(b, &["type", "text", "cache_control"], &at)?;
                    if b["text"].as_str().unwrap_or("").is_empty() {
                        return Err(format!("{at}: text content blocks must be non-empty"));
                    }
                }
                ("user", "image") => {
                    unknown(b, &["type", "source", "cache_control"], &at)?;
                    if b["source"]["type"] != "base64" {
                        return Err(format!(
                            "{at}.image.source.base64.data: URL sources are not supported"
                        ));
                    }
                    let mt = b["source"]["media_type"].as_str().unwrap_or("");
                    if !["image/jpeg", "image/png", "image/gif", "image/webp"].contains(&mt) {
                        return Err(format!("{at}.image.source.base64.media_type: {mt}"));
                    }
                }
                ("user", "document") => {
                    unknown(b, &["type", "source", "title", "cache_control"], &at)?;
                }
                ("user", "tool_result") => {
                    unknown(
                        b,
                        &[
                            "type",
                            "tool_use_id",
                            "content",
                            "is_error",
                            "cache_control",
                        ],
                        &at,
                    )?;
                    if !results_first {
                        return Err(format!(
                            "messages.{i}: tool_result blocks must come first in the message"
                        ));
                    }
                    results.push(b["tool_use_id"].as_str().unwrap_or("").to_string());
                }
                ("assistant", "tool_use") => {
                    unknown(b, &["type", "id", "name", "input", "cache_control"], &at)?;
                    let id = b["id"].as_str().unwrap_or("");
                    if !valid_id(id) {
                        return Err(format!(
                            "{at}.tool_use.id: String should match pattern '^[a-zA-Z0-9_-]+$'"
                        ));
                    }
                    if !b["input"].is_object() {
                        return Err(format!("{at}.input: must be an object"));
                    }
                    uses.push(id.to_string());
                }
                ("assistant", "thinking") => {
                    unknown(b, &["type", "thinking", "signature"], &at)?;
                    let sig = b["signature"].as_str().unwrap_or("");
                    if fake.claude_thinking(sig).as_deref() != b["thinking"].as_str() {
                        return Err(format!("{at}: Invalid `signature` in `thinking` block"));
                    }
                    fake.note_replayed(sig);
                }
                ("assistant", "redacted_thinking") => {
                    unknown(b, &["type", "data"], &at)?;
                    fake.note_replayed(b["data"].as_str().unwrap_or(""));
                }
                (r, k) => return Err(format!("{at}: {k} blocks are not allowed in {r} turns")),
            }
            if kind(b) != "tool_result" {
                results_first = false;
            }
        }
        if role == "user" {
            if let Some(orphan) = results.iter().find(|r| !prev_uses.contains(r)) {
                return Err(format!(
                    "messages.{i}.content.0: unexpected `tool_use_id` found in `tool_result` blocks: {orphan}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
                ));
            }
            if results.len() != prev_uses.len() {
                return Err(format!(
                    "messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: {}",
                    prev_uses.join(", ")
                ));
            }
        }
        prev_uses = uses;
    }
    if !prev_uses.is_empty() {
        return Err("the last message has tool_use blocks without results".into());
    }
    if breakpoints > 4 {
        return Err("A maximum of 4 blocks with cache_control may be provided.".into());
    }
    let last = messages.last().unwrap();
    if last["role"] == "assistant" {
        let has_thinking = last["content"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| matches!(kind(b), "thinking" | "redacted_thinking"));
        if !thinking && has_thinking {
            return Err("When thinking is disabled, an `assistant` message in the final position cannot contain `thinking`.".into());
        }
    }
    if thinking && messages.len() >= 2 && last["role"] == "user" {
        let in_loop = last["content"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| kind(b) == "tool_result");
        let turn = &messages[messages.len() - 2];
        let starts_thinking = turn["content"][0]["type"]
            .as_str()
            .is_some_and(|k| k == "thinking" || k == "redacted_thinking");
        if in_loop && !starts_thinking {
            return Err("messages.1.content.0.type: Expected `thinking` or `redacted_thinking`, but found `tool_use`. When `thinking` is enabled, a final `assistant` message must start with a thinking block.".into());
        }
    }
    Ok(())
}

fn last_user(body: &Value) -> &Value {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .unwrap()
}

fn text_of(message: &Value) -> String {
    message["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["text"].as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The blocks of the answer.
fn answer_blocks(fake: &FakeVertex, body: &Value) -> (Vec<Value>, &'static str) {
    let user = last_user(body);
    let text = text_of(user);
    let mut blocks = Vec::new();
    if body.get("thinking").is_some() {
        let thought = format!(
            "Thinking about {}.",
            text.chars().take(20).collect::<String>()
        );
        let sig = fake.issue_claude_signature(&thought);
        blocks.push(json!({"type": "thinking", "thinking": thought, "signature": sig}));
        if text.contains("REDACT") {
            blocks.push(json!({"type": "redacted_thinking", "data": "EmwKAhgBEgy-redacted"}));
        }
    }
    let results: Vec<String> = user["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| kind(b) == "tool_result")
        .map(|b| match &b["content"] {
            Value::String(s) => s.clone(),
            Value::Array(a) => a.iter().filter_map(|x| x["text"].as_str()).collect(),
            _ => String::new(),
        })
        .collect();
    // Function tools only (server tools have a `type`).
    let tools: Vec<&Value> = body["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t.get("type").is_none())
        .collect();
    let choice = body.pointer("/tool_choice/type").and_then(Value::as_str);
    let shell = tools.iter().find_map(|t| {
        let name = t["name"].as_str()?;
        crate::support::shell_call(name).map(|args| (name, args))
    });
    if results.is_empty()
        && choice != Some("none")
        && let Some((name, input)) = shell
    {
        blocks.push(json!({"type": "tool_use", "id": format!("toolu_{:02}sh", fake.next()), "name": name, "input": input}));
        return (blocks, "tool_use");
    }
    let forced = body.pointer("/tool_choice/name").and_then(Value::as_str);
    if let Some(json_tool) = forced.filter(|n| *n == "json_response") {
        blocks.push(json!({"type": "tool_use", "id": "toolu_json", "name": json_tool, "input": {"answer": "42"}}));
        return (blocks, "tool_use");
    }
    if results.is_empty() && !tools.is_empty() && choice != Some("none") {
        let single = body.pointer("/tool_choice/disable_parallel_tool_use") == Some(&json!(true));
        let n = if text.contains("both") && !single {
            2
        } else {
            1
        };
        blocks.push(json!({"type": "text", "text": "Let me check."}));
        for (i, t) in tools.iter().take(n).enumerate() {
            let takes_args = t["input_schema"]["properties"]
                .as_object()
                .is_some_and(|p| !p.is_empty());
            let input = if takes_args {
                json!({"city": "Paris"})
            } else {
                json!({})
            };
            blocks.push(json!({"type": "tool_use", "id": format!("toolu_{:02}{}", fake.next(), i), "name": t["name"], "input": input}));
        }
        return (blocks, "tool_use");
    }
    if text.contains("REFUSE") {
        return (blocks, "refusal");
    }
    let reply = if !results.is_empty() {
        format!("Results: {}", results.join(", "))
    } else {
        let images: Vec<&str> = user["content"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| kind(b) == "image")
            .filter_map(|b| b["source"]["media_type"].as_str())
            .collect();
        if images.is_empty() {
            "Hello from Claude".to_string()
        } else {
            format!("I see {}", images.join(" and "))
        }
    };
    blocks.push(json!({"type": "text", "text": reply}));
    (blocks, "end_turn")
}

fn usage(body: &Value) -> Value {
    // Pretend the cached prefix is read back when it was marked.
    let cached = body.pointer("/system/0/cache_control").is_some();
    json!({"input_tokens": 10, "cache_creation_input_tokens": if cached { 50 } else { 0 },
           "cache_read_input_tokens": if cached { 100 } else { 0 }, "output_tokens": 7})
}

fn answer(fake: &FakeVertex, model: &str, body: &Value, stream: bool) -> Response {
    let text = text_of(last_user(body));
    if text.contains("RATELIMIT") {
        let err = json!([{"error": {"code": 429, "message": "Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model with base model: anthropic-claude-sonnet-4-5.", "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}]}}]);
        return Response::builder()
            .status(429)
            .header("content-type", "application/json")
            .body(Body::from(err.to_string()))
            .unwrap();
    }
    if text.contains("OVERLOAD") && !text.contains("MIDSTREAM") {
        let mut r = anthropic_error(529, "overloaded_error", "Overloaded");
        r.headers_mut().insert("retry-after", "3".parse().unwrap());
        return r;
    }
    let (blocks, stop) = answer_blocks(fake, body);
    let mut message = json!({"id": "msg_vrtx_01", "type": "message", "role": "assistant",
        "model": model.split('@').next().unwrap(), "content": blocks, "stop_reason": stop,
        "stop_sequence": null, "usage": usage(body)});
    if stop == "refusal" {
        message["stop_details"] = json!({"type": "refusal", "category": "cyber", "explanation": "This request was blocked by the usage policy."});
    }
    if !stream {
        return Response::builder()
            .header("content-type", "application/json")
            .body(Body::from(message.to_string()))
            .unwrap();
    }
    let mut events = Vec::new();
    let mut head = message.clone();
    head["content"] = json!([]);
    head["stop_reason"] = Value::Null;
    head["usage"]["output_tokens"] = json!(1);
    events.push(json!({"type": "message_start", "message": head}));
    events.push(json!({"type": "ping"}));
    for (i, b) in message["content"].as_array().unwrap().iter().enumerate() {
        let mut start = b.clone();
        let mut deltas = Vec::new();
        match kind(b) {
            "text" => {
                start["text"] = json!("");
                for w in b["text"].as_str().unwrap().split_inclusive(' ') {
                    deltas.push(json!({"type": "text_delta", "text": w}));
                }
            }
            "thinking" => {
                start["thinking"] = json!("");
                start["signature"] = json!("");
                for w in b["thinking"].as_str().unwrap().split_inclusive(' ') {
                    deltas.push(json!({"type": "thinking_delta", "thinking": w}));
                }
                deltas.push(json!({"type": "signature_delta", "signature": b["signature"]}));
            }
            "tool_use" => {
                start["input"] = json!({});
                let input = b["input"].to_string();
                deltas.push(json!({"type": "input_json_delta", "partial_json": ""}));
                if input != "{}" {
                    let (a, z) = input.split_at(input.len() / 2);
                    deltas.push(json!({"type": "input_json_delta", "partial_json": a}));
                    deltas.push(json!({"type": "input_json_delta", "partial_json": z}));
                }
            }
            _ => {}
        }
        events.push(json!({"type": "content_block_start", "index": i, "content_block": start}));
        for d in deltas {
            events.push(json!({"type": "content_block_delta", "index": i, "delta": d}));
        }
        if text.contains("CUTOFF") {
            // The connection drops mid-answer.
            return sse(&events);
        }
        if text.contains("MIDSTREAM") {
            events.push(json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}));
            return sse(&events);
        }
        events.push(json!({"type": "content_block_stop", "index": i}));
    }
    let mut delta = json!({"stop_reason": stop, "stop_sequence": null});
    if let Some(d) = message.get("stop_details") {
        delta["stop_details"] = d.clone();
    }
    events.push(json!({"type": "message_delta", "delta": delta, "usage": {"output_tokens": 7}}));
    events.push(json!({"type": "message_stop"}));
    sse(&events)
}

fn sse(events: &[Value]) -> Response {
    let body: String = events
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
        .collect();
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from(body))
        .unwrap()
}

/// `count-tokens:rawPredict`: Vertex's model id in the body, and a count
/// of four bytes of the conversation per token.
fn count_tokens(fake: &FakeVertex, body: &Value, stream: bool) -> Response {
    if stream {
        return bad("count-tokens takes rawPredict only");
    }
    if body["anthropic_version"] != "vertex-2023-10-16" {
        return bad("anthropic_version: Input should be 'vertex-2023-10-16'");
    }
    let model = body["model"].as_str().unwrap_or("");
    if !model.contains('@') {
        return bad(&format!("model: {model:?} is not a Vertex model id"));
    }
    let allowed = [
        "anthropic_version",
        "model",
        "messages",
        "system",
        "tools",
        "thinking",
        "anthropic_beta",
        "context_management",
        "tool_choice",
    ];
    if let Err(message) = unknown(body, &allowed, "body") {
        return bad(&message);
    }
    if body["messages"].as_array().is_none_or(Vec::is_empty) {
        return bad("messages: at least one message is required");
    }
    fake.record(
        &format!("/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/anthropic/models/count-tokens:rawPredict"),
        body,
    );
    let tokens = (body["messages"].to_string().len() + body["system"].to_string().len()) / 4;
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(Body::from(json!({"input_tokens": tokens}).to_string()))
        .unwrap()
}
