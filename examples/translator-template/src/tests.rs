//! The mapping, tested natively: `cargo test`.

use super::*;
use llmproxy_sdk::EventStream;

fn ctx(streaming: bool, settings: Value, chat: Option<Value>) -> Context {
    Context {
        backend: "mistral".into(),
        model: "mistral-large".into(),
        upstream_model: "mistral-large-latest".into(),
        streaming,
        settings: settings.to_string(),
        extras: chat.map_or_else(|| "{}".into(), |c| json!({ "chat": c }).to_string()),
        media: Vec::new(),
    }
}

fn sent(ctx: &Context, request: Value) -> (String, Value) {
    let up = Mistral::request(ctx, request.to_string().as_bytes()).unwrap();
    (up.path, serde_json::from_slice(&up.body).unwrap())
}

#[test]
fn requests_follow_mistral_conventions() {
    let request = json!({
        "model": "mistral-large", "instructions": "Be brief.", "max_output_tokens": 50,
        "store": false, "metadata": {"a": "b"}, "tool_choice": "required",
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
        "input": [
            {"type": "message", "role": "user", "content": "hi"},
            {"type": "function_call", "call_id": "call_Zx81ab", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_Zx81ab", "output": "ok"},
            {"type": "function_call", "call_id": "a1B2c3D4e", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "a1B2c3D4e", "output": "ok"}
        ]
    });
    let (path, body) = sent(&ctx(true, json!({}), None), request);
    assert_eq!(path, "/v1/chat/completions");
    assert_eq!(body["model"], "mistral-large-latest");
    assert_eq!(body["max_tokens"], 50);
    assert_eq!(body["tool_choice"], "any");
    assert_eq!(body["stream"], true);
    for absent in [
        "max_completion_tokens",
        "stream_options",
        "store",
        "metadata",
        "safe_prompt",
    ] {
        assert!(body.get(absent).is_none(), "{absent}: {body}");
    }
    let messages = body["messages"].as_array().unwrap();
    let mapped = messages[2]["tool_calls"][0]["id"].as_str().unwrap();
    assert_eq!(mapped.len(), 9);
    assert!(mapped.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(
        messages[3]["tool_call_id"], mapped,
        "call and result still pair"
    );
    assert_eq!(
        messages[4]["tool_calls"][0]["id"], "a1B2c3D4e",
        "Mistral's own ids kept"
    );
    assert_eq!(mistral_id("call_Zx81ab"), mapped, "the same every time");
}

#[test]
fn settings_and_chat_parameters() {
    let chat = json!({"model": "m", "messages": [], "stop": ["END"], "seed": 7});
    let c = ctx(
        false,
        json!({"api_version": "v2", "safe_prompt": true}),
        Some(chat),
    );
    let (path, body) = sent(&c, json!({"model": "m", "input": "hi"}));
    assert_eq!(path, "/v2/chat/completions");
    assert_eq!(
        (&body["stop"], &body["random_seed"]),
        (&json!(["END"]), &json!(7))
    );
    assert_eq!(body["safe_prompt"], true);
    assert!(body.get("seed").is_none());

    let logit_bias = json!({"model": "m", "messages": [], "logit_bias": {"1": 2}});
    let refused = Mistral::request(&ctx(false, json!({}), Some(logit_bias)), b"{}").unwrap_err();
    assert!(
        matches!(refused, Error::Unsupported(ref e) if e.param.as_deref() == Some("logit_bias"))
    );

    assert!(Mistral::validate_settings(r#"{"api_version": "v1"}"#).is_ok());
    assert!(Mistral::validate_settings(r#"{"api_version": "../x"}"#).is_err());
    assert!(Mistral::validate_settings(r#"{"region": "eu"}"#).is_err());
}

#[test]
fn answers_errors_and_streams_map_back() {
    let answer = json!({
        "id": "cmpl-1", "object": "chat.completion", "created": 1, "model": "mistral-large-latest",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": "",
            "tool_calls": [{"id": "Xy7kP2mQa", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]}}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}
    });
    let ok = UpstreamResponse {
        status: 200,
        headers: vec![],
        body: answer.to_string().into_bytes(),
    };
    let out: Value =
        serde_json::from_slice(&Mistral::response(&ctx(false, json!({}), None), "", ok).unwrap())
            .unwrap();
    let call = out["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "function_call")
        .unwrap();
    assert_eq!(
        (&call["call_id"], &call["arguments"]),
        (&json!("Xy7kP2mQa"), &json!("{\"a\":1}"))
    );
    assert_eq!(out["usage"]["total_tokens"], 13);

    let body = br#"{"object":"error","message":"Invalid model: mistral-nope","type":"invalid_model","code":"1500"}"#;
    let bad = UpstreamResponse {
        status: 400,
        headers: vec![],
        body: body.to_vec(),
    };
    match Mistral::response(&ctx(false, json!({}), None), "", bad) {
        Err(Error::Upstream(e)) => assert_eq!(
            (e.status, e.message.as_str()),
            (400, "Invalid model: mistral-nope")
        ),
        other => panic!("{other:?}"),
    }

    let mut stream = Mistral::stream(ctx(true, json!({}), None), String::new(), 200, vec![]);
    let mut events = Vec::new();
    for chunk in [
        json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Bonjour"}, "finish_reason": null}]}),
        json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}),
    ] {
        events.extend(stream.push("", &chunk.to_string()).unwrap());
    }
    events.extend(stream.push("", "[DONE]").unwrap());
    events.extend(stream.finish().unwrap());
    let events: Vec<Value> = events
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let last = events.last().unwrap();
    assert_eq!(last["type"], "response.completed");
    assert_eq!(
        last["response"]["output"][0]["content"][0]["text"],
        "Bonjour"
    );
    assert_eq!(last["response"]["usage"]["total_tokens"], 6);
}
