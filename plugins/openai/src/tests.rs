use super::*;
use serde_json::{Value, json};

fn ctx(streaming: bool, settings: &str, extras: Option<Value>) -> Context {
    Context {
        backend: "oai".into(),
        model: "gpt-x".into(),
        upstream_model: "gpt-x-2026".into(),
        streaming,
        settings: settings.into(),
        extras: extras.map_or_else(|| "{}".into(), |e| e.to_string()),
        media: Vec::new(),
    }
}

fn body_json(req: &UpstreamRequest) -> Value {
    serde_json::from_slice(&req.body).unwrap()
}

#[test]
fn chat_clients_pass_through_to_chat_upstreams_only() {
    let chat = |settings: &str| OpenAi::passthrough(settings);
    let declared = chat("{}");
    assert_eq!(declared.len(), 1);
    assert!(matches!(declared[0].api, ClientApi::ChatCompletions));
    assert_eq!(
        (declared[0].method.as_str(), declared[0].path.as_str()),
        ("POST", "/chat/completions")
    );
    assert!(declared[0].headers.is_empty());
    assert_eq!(chat(r#"{"path":"/v2/chat"}"#)[0].path, "/v2/chat");
    // OpenAI's Responses API is not Chat: Chat clients are converted.
    assert!(chat(r#"{"api":"responses"}"#).is_empty());
}

#[test]
fn responses_client_request_is_converted_to_chat() {
    let body = json!({"model": "gpt-x", "instructions": "be brief", "input": "hi", "max_output_tokens": 50, "stream": true});
    let req = OpenAi::request(&ctx(true, "{}", None), body.to_string().as_bytes()).unwrap();
    assert_eq!(
        body_json(&req),
        json!({"model": "gpt-x-2026", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
               "stream": true, "stream_options": {"include_usage": true}, "max_completion_tokens": 50})
    );
    let legacy = ctx(
        false,
        r#"{"max_tokens_param":"max_tokens","instructions_role":"developer"}"#,
        None,
    );
    let req = OpenAi::request(&legacy, body.to_string().as_bytes()).unwrap();
    let sent = body_json(&req);
    assert_eq!(sent["max_tokens"], 50);
    assert_eq!(sent["messages"][0]["role"], "developer");
    // Hosted tools are left out by default, refused when configured so.
    let hosted = json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}]});
    let req = OpenAi::request(&ctx(false, "{}", None), hosted.to_string().as_bytes()).unwrap();
    assert!(
        body_json(&req).get("tools").is_none(),
        "{}",
        body_json(&req)
    );
    let reject = r#"{"hosted_tools":"reject"}"#;
    let err =
        OpenAi::request(&ctx(false, reject, None), hosted.to_string().as_bytes()).unwrap_err();
    assert!(matches!(err, Error::Unsupported(_)), "{err:?}");
    assert!(OpenAi::validate_settings(r#"{"hosted_tools":"maybe"}"#).is_err());
}

#[test]
fn namespace_and_custom_calls_come_back_as_offered() {
    let body = json!({"model": "m", "stream": true, "input": [
        {"role": "user", "content": "go"},
        {"type": "function_call", "call_id": "c0", "namespace": "multi_agent_v1", "name": "wait_agent", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c0", "output": "ok"}],
        "tools": [{"type": "namespace", "name": "multi_agent_v1", "description": "d", "tools": [
            {"type": "function", "name": "wait_agent", "parameters": {"type": "object"}}]},
            {"type": "custom", "name": "apply_patch", "format": {"type": "grammar", "syntax": "lark", "definition": "start: x"}}]});
    let c = ctx(true, "{}", None);
    let req = OpenAi::request(&c, body.to_string().as_bytes()).unwrap();
    let sent = body_json(&req);
    let names: Vec<&str> = sent["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["multi_agent_v1__wait_agent", "apply_patch"]);
    assert_eq!(
        sent["messages"][1]["tool_calls"][0]["function"]["name"],
        "multi_agent_v1__wait_agent"
    );
    // The answer's calls regain their namespace, or become custom calls.
    let mut stream = OpenAi::stream(c, req.state.clone(), 200, vec![]);
    let chunk = |delta: Value| {
        json!({"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": null}]})
        .to_string()
    };
    let mut events = Vec::new();
    for data in [
        chunk(
            json!({"role": "assistant", "tool_calls": [{"index": 0, "id": "c1", "type": "function", "function": {"name": "multi_agent_v1__wait_agent", "arguments": "{}"}}]}),
        ),
        chunk(
            json!({"tool_calls": [{"index": 1, "id": "c2", "type": "function", "function": {"name": "apply_patch", "arguments": "{\"input\":\"*** Begin"}}]}),
        ),
        chunk(json!({"tool_calls": [{"index": 1, "function": {"arguments": " Patch\"}"}}]})),
        json!({"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
        .to_string(),
    ] {
        events.extend(stream.push("", &data).unwrap());
    }
    events.extend(stream.finish().unwrap());
    let events: Vec<Value> = events
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let done: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "response.output_item.done")
        .map(|e| &e["item"])
        .collect();
    assert_eq!(done[0]["namespace"], "multi_agent_v1");
    assert_eq!(done[0]["name"], "wait_agent");
    assert_eq!(done[1]["type"], "custom_tool_call");
    assert_eq!(done[1]["input"], "*** Begin Patch");
    assert!(
        !events.iter().any(|e| e["type"]
            .as_str()
            .unwrap()
            .starts_with("response.function_call_arguments")
            && e["item_id"] == done[1]["id"]),
        "no argument events for a custom call"
    );
    let completed = events
        .iter()
        .find(|e| e["type"] == "response.completed")
        .unwrap();
    assert_eq!(
        completed["response"]["output"][1]["type"],
        "custom_tool_call"
    );
    // Not streamed: the same.
    let answer = json!({"id": "x", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "multi_agent_v1__wait_agent", "arguments": "{}"}},
                           {"id": "c2", "type": "function", "function": {"name": "apply_patch", "arguments": "{\"input\":\"P\"}"}}]}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}});
    let up = UpstreamResponse {
        status: 200,
        headers: vec![],
        body: answer.to_string().into_bytes(),
    };
    let out = OpenAi::response(&ctx(false, "{}", None), &req.state, up).unwrap();
    let out: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(out["output"][0]["namespace"], "multi_agent_v1");
    assert_eq!(out["output"][1]["type"], "custom_tool_call");
    assert_eq!(out["output"][1]["input"], "P");
}

#[test]
fn responses_api_drops_foreign_reasoning_and_refuses_chat_only_params() {
    let settings = r#"{"api":"responses"}"#;
    let body = json!({"model": "gpt-x", "input": [
        {"type": "reasoning", "id": "rs_g", "summary": [], "encrypted_content": "pxy1.eyJwIjoiZ2VtaW5pIn0"},
        {"type": "reasoning", "id": "rs_o", "summary": [], "encrypted_content": "gAAAAopenai"},
        {"role": "user", "content": "hi"}], "x_keep": 1});
    let req = OpenAi::request(&ctx(false, settings, None), body.to_string().as_bytes()).unwrap();
    assert_eq!(req.path, "/responses");
    let sent = body_json(&req);
    assert_eq!(sent["model"], "gpt-x-2026");
    assert_eq!(sent["input"].as_array().unwrap().len(), 2);
    assert_eq!(sent["input"][0]["id"], "rs_o");
    assert_eq!(sent["x_keep"], 1);
    let chat = json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": "END"});
    let err = OpenAi::request(
        &ctx(false, settings, Some(json!({"chat": chat}))),
        body.to_string().as_bytes(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::Unsupported(i) if i.param.as_deref() == Some("stop")),
        "{err:?}"
    );
}

#[test]
fn settings_are_checked() {
    assert!(OpenAi::validate_settings("{}").is_ok());
    assert!(OpenAi::validate_settings(r#"{"api":"responses","path":"/v1/responses"}"#).is_ok());
    for (bad, needle) in [
        (r#"{"api":"completions"}"#, "api"),
        (r#"{"max_tokens_param":"tokens"}"#, "max_tokens_param"),
        (r#"{"organization":"x"}"#, "organization"),
        (r#"{"path":"x"}"#, "path"),
    ] {
        let e = OpenAi::validate_settings(bad).unwrap_err();
        assert!(e.contains(needle), "{bad}: {e}");
    }
}

fn upstream(status: u16, body: Value) -> UpstreamResponse {
    UpstreamResponse {
        status,
        headers: vec![],
        body: body.to_string().into_bytes(),
    }
}

#[test]
fn chat_answer_becomes_canonical_and_errors_keep_status() {
    let answer = json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-x-2026",
        "choices": [{"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": "trunc", "reasoning_content": "hm"}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}});
    let out = OpenAi::response(&ctx(false, "{}", None), "", upstream(200, answer)).unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["status"], "incomplete");
    assert_eq!(v["incomplete_details"]["reason"], "max_output_tokens");
    assert_eq!(v["output"][0]["type"], "reasoning");
    assert_eq!(v["output"][1]["content"][0]["text"], "trunc");
    assert_eq!(v["usage"]["total_tokens"], 7);

    let err = json!({"error": {"message": "Unsupported parameter: 'max_tokens' is not supported with this model.", "type": "invalid_request_error", "param": "max_tokens", "code": "unsupported_parameter"}});
    let Error::Upstream(e) =
        OpenAi::response(&ctx(false, "{}", None), "", upstream(400, err)).unwrap_err()
    else {
        panic!()
    };
    assert_eq!(
        (e.status, e.param.as_deref(), e.code.as_deref()),
        (400, Some("max_tokens"), Some("unsupported_parameter"))
    );
    let bad = OpenAi::response(&ctx(false, "{}", None), "", upstream(200, json!([1]))).unwrap_err();
    assert!(matches!(bad, Error::Internal(_)));
}

#[test]
fn chat_stream_maps_chunks_and_mid_stream_errors() {
    let mut s = OpenAi::stream(ctx(true, "{}", None), String::new(), 200, vec![]);
    let mut events = Vec::new();
    for data in [
        r#"{"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
        r#"{"id":"c","choices":[{"index":0,"delta":{"content":"Hi"}}]}"#,
        r#"{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
        r#"{"id":"c","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#,
        "[DONE]",
    ] {
        events.extend(s.push("", data).unwrap());
    }
    events.extend(s.finish().unwrap());
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["type"], "response.completed");
    assert_eq!(last["response"]["usage"]["total_tokens"], 2);

    let mut s = OpenAi::stream(ctx(true, "{}", None), String::new(), 200, vec![]);
    let err = s
        .push(
            "",
            r#"{"error":{"message":"overloaded","type":"server_error","code":"server_error"}}"#,
        )
        .unwrap_err();
    assert!(
        matches!(&err, Error::Upstream(e) if e.message == "overloaded"),
        "{err:?}"
    );
}

#[test]
fn responses_stream_passes_through() {
    let mut s = OpenAi::stream(
        ctx(true, r#"{"api":"responses"}"#, None),
        String::new(),
        200,
        vec![],
    );
    let ev = r#"{"type":"response.output_text.delta","item_id":"m","output_index":0,"content_index":0,"delta":"x"}"#;
    assert_eq!(
        s.push("response.output_text.delta", ev).unwrap(),
        vec![ev.to_string()]
    );
    assert!(s.finish().unwrap().is_empty());
}
