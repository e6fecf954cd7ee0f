use super::*;
use crate::ingress::RequestHead;
use serde_json::{Map, Value, json};

fn head(json: &str) -> RequestHead {
    let mut request: Value = serde_json::from_str(json).unwrap();
    if request["input"].is_null() {
        request["input"] = json!("hi");
    }
    RequestHead::parse(request.to_string().as_bytes()).unwrap()
}

const REQUIRED: [&str; 31] = [
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

#[test]
fn completes_a_minimal_translator_answer_with_request_echo() {
    let h = head(
        r#"{"model":"gemini-x","input":"hi","temperature":0.3,"tools":[{"type":"function","name":"f"}],
            "reasoning":{"effort":"low"},"metadata":{"a":"b"},"max_output_tokens":100}"#,
    );
    let mut meta = ResponseMeta::new("gemini-x");
    let mut obj: Map<String, Value> = serde_json::from_str(
        r#"{"status":"completed","output":[],"usage":{"input_tokens":3,"output_tokens":2}}"#,
    )
    .unwrap();
    complete_response(&mut obj, &mut meta, &h, "completed");
    for key in REQUIRED {
        assert!(obj.contains_key(key), "missing {key}");
    }
    assert!(obj["id"].as_str().unwrap().starts_with("resp_"));
    assert_eq!(obj["model"], "gemini-x");
    assert_eq!(obj["temperature"], 0.3);
    assert_eq!(obj["top_p"], 1.0);
    assert_eq!(
        obj["tools"],
        json!([{"type":"function","name":"f","description":null,"parameters":null,"strict":null}])
    );
    assert_eq!(obj["reasoning"], json!({"effort":"low","summary":null}));
    assert_eq!(obj["text"], json!({"format":{"type":"text"}}));
    assert_eq!(obj["metadata"], json!({"a":"b"}));
    assert_eq!(obj["max_output_tokens"], 100);
    assert_eq!(obj["usage"]["total_tokens"], 5);
    assert_eq!(
        obj["usage"]["input_tokens_details"],
        json!({"cached_tokens":0})
    );
    assert!(obj["completed_at"].is_i64());
    assert_eq!(obj["store"], false);
}

#[test]
fn keeps_what_the_upstream_said_and_fills_nulls_that_are_not_allowed() {
    let h = head(r#"{"model":"m","temperature":0.5}"#);
    let mut meta = ResponseMeta::new("m");
    let mut obj: Map<String, Value> = serde_json::from_str(
        r#"{"id":"resp_up","status":"incomplete","incomplete_details":{"reason":"max_output_tokens"},
            "temperature":0.7,"top_p":null,"store":true,"x_extra":[1],"model":"upstream-name"}"#,
    )
    .unwrap();
    complete_response(&mut obj, &mut meta, &h, "completed");
    assert_eq!(obj["id"], "resp_up");
    assert_eq!(meta.id, "resp_up");
    assert_eq!(obj["temperature"], 0.7);
    assert_eq!(obj["top_p"], 1.0);
    assert_eq!(obj["store"], true);
    assert_eq!(obj["x_extra"], json!([1]));
    assert_eq!(obj["model"], "m");
    assert_eq!(obj["completed_at"], Value::Null, "not completed");
}

#[test]
fn request_head_errors_are_actionable() {
    for (body, needle) in [
        ("", "JSON object"),
        ("[]", "JSON object"),
        ("{\"model\":\"m\"", "not valid JSON"),
        ("{\"input\":\"hi\"}", "no `model`"),
        ("{\"model\":\"  \"}", "empty"),
        ("{\"model\":1}", "invalid type"),
        ("{\"model\":\"m\"}", "no `input`"),
        (
            "{\"model\":\"m\",\"input\":\"hi\",\"stream\":\"yes\"}",
            "`stream` must be a boolean, not a string",
        ),
        (
            "{\"model\":\"m\",\"input\":{}}",
            "`input` must be a string or an array, not an object",
        ),
        (
            "{\"model\":\"m\",\"input\":\"hi\",\"temperature\":\"hot\"}",
            "`temperature` must be a number",
        ),
    ] {
        let e = RequestHead::parse(body.as_bytes()).unwrap_err();
        assert!(e.to_string().contains(needle), "{body}: {e}");
        assert_eq!(e.status(), 400);
    }
}

fn guard() -> StreamGuard {
    StreamGuard::new(ResponseMeta::new("m"), head(r#"{"model":"m"}"#))
}

fn feed(g: &mut StreamGuard, events: &[Value]) -> Vec<Value> {
    events
        .iter()
        .flat_map(|e| values(g.accept(&e.to_string()).unwrap()))
        .collect()
}

/// Events as JSON, as the client gets them.
fn values(events: Vec<llmproxy_api::events::ResponseEvent>) -> Vec<Value> {
    events
        .iter()
        .map(|e| serde_json::to_value(e).unwrap())
        .collect()
}

fn kinds(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

#[test]
fn guard_synthesises_the_start_renumbers_and_fills_the_final_output() {
    let mut g = guard();
    let item = json!({"type":"message","id":"msg_1","status":"completed","role":"assistant","content":[{"type":"output_text","text":"hi","annotations":[]}]});
    let out = feed(
        &mut g,
        &[
            json!({"type":"response.output_item.added","sequence_number":40,"output_index":0,"item":{"type":"message","id":"msg_1","status":"in_progress","role":"assistant","content":[]}}),
            json!({"type":"response.output_item.done","output_index":0,"item":item}),
            json!({"type":"response.completed","response":{"usage":{"input_tokens":1,"output_tokens":1}}}),
            json!({"type":"response.output_text.delta","delta":"late"}),
        ],
    );
    assert_eq!(
        kinds(&out),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.output_item.done",
            "response.completed"
        ]
    );
    for (i, e) in out.iter().enumerate() {
        assert_eq!(e["sequence_number"], i);
    }
    let done = &out[4]["response"];
    assert_eq!(done["status"], "completed");
    assert_eq!(done["output"], json!([item]));
    assert_eq!(done["id"], out[0]["response"]["id"]);
    assert!(g.is_done());
    assert!(g.end("b").is_empty(), "nothing after the terminal event");
}

#[test]
fn guard_turns_an_in_progress_first_into_created_and_drops_a_second_created() {
    let mut g = guard();
    let out = feed(
        &mut g,
        &[
            json!({"type":"response.in_progress","response":{"id":"resp_x","status":"in_progress"}}),
            json!({"type":"response.created","response":{"id":"resp_x"}}),
        ],
    );
    assert_eq!(kinds(&out), ["response.created", "response.in_progress"]);
    assert_eq!(out[0]["response"]["id"], "resp_x");
}

#[test]
fn guard_fails_a_stream_that_ends_early() {
    let mut g = guard();
    let out = feed(&mut g, &[json!({"type":"response.created","response":{}})]);
    assert_eq!(out.len(), 1);
    let end = values(g.end("vertex"));
    assert_eq!(kinds(&end), ["error", "response.failed"]);
    assert_eq!(end[0]["sequence_number"], 1);
    assert_eq!(end[0]["error"]["code"], "bad_upstream_response");
    assert_eq!(end[1]["response"]["status"], "failed");
    assert_eq!(end[1]["response"]["error"]["code"], "bad_upstream_response");
    assert!(g.is_done());
}

#[test]
fn guard_normalises_openai_error_events_and_follows_with_failed() {
    let mut g = guard();
    let out = feed(
        &mut g,
        &[json!({"type":"error","code":"rate_limit_exceeded","message":"slow down","param":null})],
    );
    assert_eq!(
        kinds(&out),
        ["response.created", "response.in_progress", "error"]
    );
    assert_eq!(
        out[2]["error"],
        json!({"code":"rate_limit_exceeded","message":"slow down","param":null,"type":"server_error"})
    );
    let end = values(g.end("b"));
    assert_eq!(kinds(&end), ["response.failed"], "no second error event");
    assert_eq!(end[0]["response"]["error"]["message"], "slow down");
}

#[test]
fn guard_rejects_garbage_from_translators() {
    let mut g = guard();
    assert!(g.accept("nope").is_err());
    assert!(g.accept("[1]").is_err());
    assert!(g.accept("{\"no_type\":1}").is_err());
}

#[test]
fn replays_a_complete_response_as_a_valid_event_sequence() {
    let response: Map<String, Value> = serde_json::from_value(json!({
        "status": "completed",
        "output": [
            {"type":"reasoning","id":"rs_1","summary":[{"type":"summary_text","text":"think"}],"encrypted_content":"e"},
            {"type":"message","id":"msg_1","status":"completed","role":"assistant","content":[{"type":"output_text","text":"hi","annotations":[]}]},
            {"type":"function_call","id":"fc_1","call_id":"call_1","name":"f","arguments":"","status":"completed"}
        ]
    }))
    .unwrap();
    let mut g = guard();
    let out: Vec<Value> = events_from_response(&response)
        .iter()
        .flat_map(|e| values(g.accept(e).unwrap()))
        .collect();
    assert_eq!(
        kinds(&out),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.reasoning_summary_part.added",
            "response.reasoning_summary_text.delta",
            "response.reasoning_summary_text.done",
            "response.reasoning_summary_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    assert_eq!(out[15]["delta"], "{}", "no-argument calls stream \"{{}}\"");
    assert_eq!(out[8]["item"]["content"], json!([]));
    assert_eq!(
        out.last().unwrap()["response"]["output"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

#[test]
fn replays_a_failed_response_with_an_error_event() {
    let response: Map<String, Value> = serde_json::from_value(json!({
        "status": "failed", "output": [], "error": {"code": "server_error", "message": "boom"}
    }))
    .unwrap();
    let mut g = guard();
    let out: Vec<Value> = events_from_response(&response)
        .iter()
        .flat_map(|e| values(g.accept(e).unwrap()))
        .collect();
    assert_eq!(kinds(&out)[2..], ["error", "response.failed"]);
    assert_eq!(out[3]["response"]["error"]["message"], "boom");
}
