//! A complete response replayed as a canonical event stream.

use serde_json::{Map, Value, json};

/// The canonical event stream of a complete response, for an upstream that
/// answered a streaming request in one piece.
pub(crate) fn events_from_response(response: &Map<String, Value>) -> Vec<String> {
    let mut events: Vec<Value> = Vec::new();
    let mut push = |v: Value| events.push(v);
    let status = response
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("completed");
    let output = response
        .get("output")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (index, item) in output.iter().enumerate() {
        let Some(obj) = item.as_object() else {
            continue;
        };
        let id = obj.get("id").cloned().unwrap_or(Value::Null);
        let mut added = obj.clone();
        added.insert("status".into(), json!("in_progress"));
        match obj.get("type").and_then(Value::as_str) {
            Some("message") => {
                added.insert("content".into(), json!([]));
            }
            Some("function_call") => {
                added.insert("arguments".into(), json!(""));
            }
            Some("reasoning") => {
                added.insert("summary".into(), json!([]));
                added.remove("status");
            }
            _ => {}
        }
        push(json!({"type": "response.output_item.added", "output_index": index, "item": added}));
        match obj.get("type").and_then(Value::as_str) {
            Some("message") => {
                let parts = obj
                    .get("content")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                for (ci, part) in parts.iter().enumerate() {
                    let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
                    let (empty, delta_type, done_type, field) = match kind {
                        "output_text" => (
                            json!({"type": "output_text", "text": "", "annotations": []}),
                            "response.output_text.delta",
                            "response.output_text.done",
                            "text",
                        ),
                        "refusal" => (
                            json!({"type": "refusal", "refusal": ""}),
                            "response.refusal.delta",
                            "response.refusal.done",
                            "refusal",
                        ),
                        _ => continue,
                    };
                    let text = part.get(field).cloned().unwrap_or(json!(""));
                    push(
                        json!({"type": "response.content_part.added", "item_id": id, "output_index": index, "content_index": ci, "part": empty}),
                    );
                    let mut delta = json!({"type": delta_type, "item_id": id, "output_index": index, "content_index": ci, "delta": text});
                    let mut done = json!({"type": done_type, "item_id": id, "output_index": index, "content_index": ci, field: text});
                    if kind == "output_text" {
                        delta["logprobs"] = json!([]);
                        done["logprobs"] = json!([]);
                    }
                    push(delta);
                    push(done);
                    push(
                        json!({"type": "response.content_part.done", "item_id": id, "output_index": index, "content_index": ci, "part": part}),
                    );
                }
            }
            Some("function_call") => {
                let args = match obj.get("arguments").and_then(Value::as_str) {
                    Some(a) if !a.is_empty() => a.to_string(),
                    _ => "{}".to_string(),
                };
                push(
                    json!({"type": "response.function_call_arguments.delta", "item_id": id, "output_index": index, "delta": args}),
                );
                push(
                    json!({"type": "response.function_call_arguments.done", "item_id": id, "output_index": index, "arguments": args}),
                );
            }
            Some("reasoning") => {
                let summary = obj
                    .get("summary")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                for (si, part) in summary.iter().enumerate() {
                    let text = part.get("text").cloned().unwrap_or(json!(""));
                    push(
                        json!({"type": "response.reasoning_summary_part.added", "item_id": id, "output_index": index, "summary_index": si, "part": {"type": "summary_text", "text": ""}}),
                    );
                    push(
                        json!({"type": "response.reasoning_summary_text.delta", "item_id": id, "output_index": index, "summary_index": si, "delta": text}),
                    );
                    push(
                        json!({"type": "response.reasoning_summary_text.done", "item_id": id, "output_index": index, "summary_index": si, "text": text}),
                    );
                    push(
                        json!({"type": "response.reasoning_summary_part.done", "item_id": id, "output_index": index, "summary_index": si, "part": part}),
                    );
                }
            }
            _ => {}
        }
        push(json!({"type": "response.output_item.done", "output_index": index, "item": item}));
    }
    let terminal = match status {
        "incomplete" => "response.incomplete",
        "failed" => "response.failed",
        _ => "response.completed",
    };
    if terminal == "response.failed" {
        let error = response.get("error").cloned().unwrap_or(Value::Null);
        push(json!({"type": "error", "error": {
            "type": "server_error",
            "code": error.get("code").cloned().unwrap_or(Value::Null),
            "message": error.get("message").cloned().unwrap_or(json!("The response failed.")),
            "param": null,
        }}));
    }
    push(json!({"type": terminal, "response": response}));
    events.into_iter().map(|e| e.to_string()).collect()
}
