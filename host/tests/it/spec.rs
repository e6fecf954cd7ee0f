//! What the OpenResponses spec (2026-04-24) requires of `/v1/responses`
//! output, encoded from its OpenAPI document: required fields of the
//! response object, items, usage and every streaming event, and the stream
//! invariants (responses.md §6.1).

use serde_json::Value;

const RESPONSE_REQUIRED: [&str; 31] = [
    "id",
    "object",
    "created_at",
    "completed_at",
    "status",
    "incomplete_details",
    "model",
    "previous_response_id",
    "instructions",
    "output",
    "error",
    "tools",
    "tool_choice",
    "truncation",
    "parallel_tool_calls",
    "text",
    "top_p",
    "presence_penalty",
    "frequency_penalty",
    "top_logprobs",
    "temperature",
    "reasoning",
    "usage",
    "max_output_tokens",
    "max_tool_calls",
    "store",
    "background",
    "service_tier",
    "metadata",
    "safety_identifier",
    "prompt_cache_key",
];

fn require(v: &Value, keys: &[&str], what: &str) -> Result<(), String> {
    let obj = v
        .as_object()
        .ok_or_else(|| format!("{what} is not an object: {v}"))?;
    for key in keys {
        if !obj.contains_key(*key) {
            return Err(format!("{what} lacks required `{key}`: {v}"));
        }
    }
    Ok(())
}

fn kind<'a>(v: &'a Value, field: &str, what: &str) -> Result<&'a str, String> {
    v.get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{what}.{field} is not a string: {v}"))
}

fn non_null(v: &Value, keys: &[&str], what: &str, pred: fn(&Value) -> bool) -> Result<(), String> {
    for key in keys {
        if !v.get(*key).is_some_and(pred) {
            return Err(format!("{what}.{key} has the wrong type: {v}"));
        }
    }
    Ok(())
}

/// Checks a `ResponseResource`.
pub fn check_response(v: &Value) -> Result<(), String> {
    require(v, &RESPONSE_REQUIRED, "response")?;
    if v["object"] != "response" {
        return Err(format!("response.object must be \"response\": {v}"));
    }
    non_null(
        v,
        &["id", "status", "model", "service_tier"],
        "response",
        Value::is_string,
    )?;
    non_null(
        v,
        &["created_at", "top_logprobs"],
        "response",
        Value::is_i64,
    )?;
    non_null(
        v,
        &[
            "top_p",
            "presence_penalty",
            "frequency_penalty",
            "temperature",
        ],
        "response",
        Value::is_number,
    )?;
    non_null(
        v,
        &["parallel_tool_calls", "store", "background"],
        "response",
        Value::is_boolean,
    )?;
    non_null(v, &["output", "tools"], "response", Value::is_array)?;
    require(&v["text"], &["format"], "response.text")?;
    if v["text"]["format"]["type"] == "json_schema" {
        require(
            &v["text"]["format"],
            &["name", "description", "schema", "strict"],
            "response.text.format",
        )?;
    }
    if !v["reasoning"].is_null() {
        require(
            &v["reasoning"],
            &["effort", "summary"],
            "response.reasoning",
        )?;
    }
    for tool in v["tools"].as_array().into_iter().flatten() {
        if tool["type"] == "function" {
            require(
                tool,
                &["type", "name", "description", "parameters", "strict"],
                "tool",
            )?;
        }
    }
    if !v["usage"].is_null() {
        check_usage(&v["usage"])?;
    }
    if !v["error"].is_null() {
        require(&v["error"], &["code", "message"], "response.error")?;
        non_null(
            &v["error"],
            &["code", "message"],
            "response.error",
            Value::is_string,
        )?;
    }
    if !v["incomplete_details"].is_null() {
        require(&v["incomplete_details"], &["reason"], "incomplete_details")?;
    }
    for item in v["output"].as_array().into_iter().flatten() {
        check_item(item)?;
    }
    Ok(())
}

fn check_usage(u: &Value) -> Result<(), String> {
    require(
        u,
        &[
            "input_tokens",
            "output_tokens",
            "total_tokens",
            "input_tokens_details",
            "output_tokens_details",
        ],
        "usage",
    )?;
    non_null(
        u,
        &["input_tokens", "output_tokens", "total_tokens"],
        "usage",
        Value::is_u64,
    )?;
    require(
        &u["input_tokens_details"],
        &["cached_tokens"],
        "usage.input_tokens_details",
    )?;
    require(
        &u["output_tokens_details"],
        &["reasoning_tokens"],
        "usage.output_tokens_details",
    )
}

/// Checks an output item (the kinds the spec defines; others pass).
pub fn check_item(item: &Value) -> Result<(), String> {
    match kind(item, "type", "item")? {
        "message" => {
            require(
                item,
                &["type", "id", "status", "role", "content"],
                "message",
            )?;
            for part in item["content"].as_array().into_iter().flatten() {
                match kind(part, "type", "content part")? {
                    "output_text" => {
                        require(part, &["type", "text", "annotations"], "output_text")?
                    }
                    "refusal" => require(part, &["type", "refusal"], "refusal")?,
                    _ => {}
                }
            }
            Ok(())
        }
        "function_call" => require(
            item,
            &["type", "id", "call_id", "name", "arguments", "status"],
            "function_call",
        ),
        "function_call_output" => require(
            item,
            &["type", "id", "call_id", "output", "status"],
            "function_call_output",
        ),
        "reasoning" => require(item, &["type", "id", "summary"], "reasoning"),
        _ => Ok(()),
    }
}

/// Required fields of each event type besides `type` and `sequence_number`.
fn event_fields(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "response.created"
        | "response.queued"
        | "response.in_progress"
        | "response.completed"
        | "response.incomplete"
        | "response.failed" => &["response"],
        "response.output_item.added" | "response.output_item.done" => &["output_index", "item"],
        "response.content_part.added" | "response.content_part.done" => {
            &["item_id", "output_index", "content_index", "part"]
        }
        "response.output_text.delta" | "response.refusal.delta" | "response.reasoning.delta" => {
            &["item_id", "output_index", "content_index", "delta"]
        }
        "response.output_text.done" | "response.reasoning.done" => {
            &["item_id", "output_index", "content_index", "text"]
        }
        "response.refusal.done" => &["item_id", "output_index", "content_index", "refusal"],
        "response.output_text.annotation.added" => &[
            "item_id",
            "output_index",
            "content_index",
            "annotation_index",
            "annotation",
        ],
        "response.reasoning_summary_part.added" | "response.reasoning_summary_part.done" => {
            &["item_id", "output_index", "summary_index", "part"]
        }
        "response.reasoning_summary_text.delta" => {
            &["item_id", "output_index", "summary_index", "delta"]
        }
        "response.reasoning_summary_text.done" => {
            &["item_id", "output_index", "summary_index", "text"]
        }
        "response.function_call_arguments.delta" => &["item_id", "output_index", "delta"],
        "response.function_call_arguments.done" => &["item_id", "output_index", "arguments"],
        "error" => &["error"],
        _ => return None,
    })
}

/// Checks one streaming event.
pub fn check_event(v: &Value) -> Result<(), String> {
    let k = kind(v, "type", "event")?;
    if !v.get("sequence_number").is_some_and(Value::is_u64) {
        return Err(format!("event without an integer sequence_number: {v}"));
    }
    let fields = event_fields(k).ok_or_else(|| format!("event type {k} is not in the spec"))?;
    require(v, fields, k)?;
    if fields.contains(&"response") {
        check_response(&v["response"])?;
    }
    if k.starts_with("response.output_item.") {
        check_item(&v["item"])?;
    }
    if k == "error" {
        require(
            &v["error"],
            &["type", "code", "message", "param"],
            "error.error",
        )?;
    }
    Ok(())
}

/// Checks a whole stream: every event valid, `sequence_number` 0, 1, 2, ...,
/// `response.created` first, exactly one terminal event and it is last,
/// deltas only for announced items, an `error` only right before
/// `response.failed`.
pub fn check_stream(events: &[Value]) -> Result<(), String> {
    let first = events.first().ok_or("empty stream")?;
    if first["type"] != "response.created" {
        return Err(format!("first event is not response.created: {first}"));
    }
    let mut announced = std::collections::HashSet::new();
    for (i, e) in events.iter().enumerate() {
        check_event(e)?;
        if e["sequence_number"].as_u64() != Some(i as u64) {
            return Err(format!(
                "event {i} has sequence_number {}",
                e["sequence_number"]
            ));
        }
        let k = e["type"].as_str().unwrap_or_default();
        let terminal = matches!(
            k,
            "response.completed" | "response.incomplete" | "response.failed"
        );
        if terminal != (i + 1 == events.len()) {
            return Err(format!("terminal event {k} at {i} of {}", events.len()));
        }
        if k == "response.output_item.added" {
            announced.insert(e["item"]["id"].as_str().unwrap_or_default().to_string());
        } else if let Some(item_id) = e.get("item_id").and_then(Value::as_str)
            && !announced.contains(item_id)
        {
            return Err(format!("{k} for item {item_id} before output_item.added"));
        }
        if k == "error" && events.get(i + 1).map(|n| &n["type"]) != Some(&"response.failed".into())
        {
            return Err("an error event not followed by response.failed".into());
        }
    }
    Ok(())
}
