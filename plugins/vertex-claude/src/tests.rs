use super::*;
use llmproxy_sdk::Media;
use llmproxy_sdk::api::chat::ChatRequest;
use llmproxy_sdk::api::golden;
use serde_json::json;
use std::path::PathBuf;

fn dir(suite: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(suite)
}

fn settings(input: &Value) -> Settings {
    let mut s = json!({"project": "proj", "location": "us-east5"});
    if let Some(Value::Object(extra)) = input.get("settings") {
        for (k, v) in extra {
            s[k] = v.clone();
        }
    }
    Settings::parse(&s.to_string()).unwrap()
}

/// Request cases: `{request, model, settings?, chat?, media?, streaming?}`
/// → `{body, state}`, `{needs_media}` or an error.
#[test]
fn request_golden() {
    golden::check_dir(dir("request"), |input| {
        let req: CreateResponse = serde_json::from_value(input["request"].clone()).unwrap();
        let chat: Option<ChatRequest> = input
            .get("chat")
            .map(|c| serde_json::from_value(c.clone()).unwrap());
        let media: Vec<Media> = input
            .get("media")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|m| Media {
                url: m["url"].as_str().unwrap().into(),
                mime_type: m["mime_type"].as_str().unwrap().into(),
                data_base64: m["data_base64"].as_str().unwrap().into(),
            })
            .collect();
        let s = settings(input);
        let target = request::Target {
            model: input["model"].as_str().unwrap(),
            settings: &s,
            chat: chat.as_ref(),
            messages: None,
            media: &media,
            streaming: input["streaming"] == true,
        };
        match request::build(&req, &target) {
            Ok(Built::Request { body, state }) => json!({"body": body, "state": state}),
            Ok(Built::NeedsMedia(urls)) => json!({"needs_media": urls}),
            Err(e) => golden::error(&e),
        }
    });
}

fn mapper(input: &Value) -> Mapper {
    Mapper::new(
        IdGen::with_stem("t"),
        input["model"].as_str().unwrap(),
        input["json_tool"].as_str().map(str::to_string),
    )
}

/// Response cases: `{model, json_tool?, body}` → the canonical response.
#[test]
fn response_golden() {
    golden::check_dir(dir("response"), |input| {
        let mut m = mapper(input);
        match m.message(&input["body"], &mut Vec::new()) {
            Ok(()) => serde_json::to_value(m.response()).unwrap(),
            Err(e) => json!({"event_error": e.message, "kind": e.kind}),
        }
    });
}

/// Stream cases: `{model, json_tool?, events}` → canonical events (then
/// `end`, as when the upstream body ends).
#[test]
fn stream_golden() {
    golden::check_dir(dir("stream"), |input| {
        let mut m = mapper(input);
        let mut out = Vec::new();
        for e in input["events"].as_array().unwrap() {
            if let Err(e) = m.event(e, &mut out) {
                out.push(json!({"event_error": e.message, "kind": e.kind}));
                return Value::Array(out);
            }
        }
        m.end(&mut out);
        Value::Array(out)
    });
}

fn ctx(streaming: bool) -> Context {
    Context {
        backend: "vertex".into(),
        model: "claude".into(),
        upstream_model: "claude-sonnet-4-5@20250929".into(),
        streaming,
        settings: r#"{"project":"proj","location":"us-east5"}"#.into(),
        extras: "{}".into(),
        media: Vec::new(),
    }
}

#[test]
fn request_paths_and_body() {
    let body = br#"{"model":"claude","input":"hi"}"#;
    let up = VertexClaude::request(&ctx(false), body).unwrap();
    assert_eq!(
        up.path,
        "/v1/projects/proj/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929:rawPredict"
    );
    let sent: Value = serde_json::from_slice(&up.body).unwrap();
    assert_eq!(sent["anthropic_version"], "vertex-2023-10-16");
    assert!(sent.get("model").is_none() && sent.get("stream").is_none());
    assert_eq!(sent["max_tokens"], 64000);
    let up = VertexClaude::request(&ctx(true), body).unwrap();
    assert!(up.path.ends_with(":streamRawPredict"), "{}", up.path);
    let sent: Value = serde_json::from_slice(&up.body).unwrap();
    assert_eq!(sent["stream"], true);
}

#[test]
fn linked_images_are_asked_for_then_inlined() {
    let body = br#"{"model":"claude","input":[{"role":"user","content":[
        {"type":"input_image","image_url":"https://example.com/cat.png"}]}]}"#;
    let Err(Error::NeedsMedia(urls)) = VertexClaude::request(&ctx(false), body) else {
        panic!("expected a media request");
    };
    assert_eq!(urls, ["https://example.com/cat.png"]);
    let mut c = ctx(false);
    c.media = vec![Media {
        url: urls[0].clone(),
        mime_type: "image/png".into(),
        data_base64: "iVBORw0KGgo=".into(),
    }];
    let up = VertexClaude::request(&c, body).unwrap();
    let sent: Value = serde_json::from_slice(&up.body).unwrap();
    assert_eq!(
        sent["messages"][0]["content"][0]["source"],
        json!({"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="})
    );
}

fn up(status: u16, body: &str) -> UpstreamResponse {
    UpstreamResponse {
        status,
        headers: vec![],
        body: body.as_bytes().to_vec(),
    }
}

#[test]
fn errors_in_both_shapes() {
    let overloaded = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_vrtx_1"}"#;
    let Error::Upstream(e) =
        VertexClaude::response(&ctx(false), "", up(529, overloaded)).unwrap_err()
    else {
        panic!()
    };
    assert_eq!(
        (e.status, e.code.as_deref(), e.message.as_str()),
        (503, Some("overloaded_error"), "Overloaded")
    );
    let quota = r#"[{"error":{"code":429,"message":"Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"30s"}]}}]"#;
    let Error::Upstream(e) = VertexClaude::response(&ctx(false), "", up(429, quota)).unwrap_err()
    else {
        panic!()
    };
    assert_eq!(
        (e.status, e.code.as_deref(), e.retry_after),
        (429, Some("resource_exhausted"), Some(30))
    );
    assert!(e.message.starts_with("Quota exceeded"), "{}", e.message);
    let bad = r#"{"type":"error","error":{"type":"invalid_request_error","message":"messages.1.content.0: unexpected `tool_use_id`"}}"#;
    let Error::Upstream(e) = VertexClaude::response(&ctx(false), "", up(400, bad)).unwrap_err()
    else {
        panic!()
    };
    assert_eq!(e.status, 400);
    assert!(e.message.contains("tool_use_id"));
    let denied = r#"{"error":{"code":403,"message":"Permission denied on resource project proj.","status":"PERMISSION_DENIED"}}"#;
    let Error::Upstream(e) = VertexClaude::response(&ctx(false), "", up(403, denied)).unwrap_err()
    else {
        panic!()
    };
    assert_eq!(e.status, 502, "the proxy's credentials, not the client's");
}

/// A thinking + tool-call answer, mapped to canonical output and sent back
/// as history, replays the thinking block byte for byte, first in its turn.
#[test]
fn thinking_round_trips_byte_for_byte() {
    let thinking = "Need the forecast.\n\n  Then answer — briefly. ";
    let signature = "EqQBCkYIBxgCKkD+/=sig";
    let answer = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
        "content": [
            {"type": "thinking", "thinking": thinking, "signature": signature},
            {"type": "redacted_thinking", "data": "EmwKAhgBEgy+redacted"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}}
        ],
        "stop_reason": "tool_use", "usage": {"input_tokens": 10, "output_tokens": 20}});
    let model = "claude-sonnet-4-5@20250929";
    let mut m = Mapper::new(IdGen::with_stem("t"), model, None);
    m.message(&answer, &mut Vec::new()).unwrap();
    let output = serde_json::to_value(m.response()).unwrap()["output"].clone();
    let mut input = vec![json!({"role": "user", "content": "Weather in Paris?"})];
    input.extend(output.as_array().unwrap().iter().cloned());
    input.push(json!({"type": "function_call_output", "call_id": "toolu_01A", "output": "18C"}));
    let req: CreateResponse = serde_json::from_value(
        json!({"model": "c", "input": input, "reasoning": {"effort": "low"}, "max_output_tokens": 4096,
            "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]}),
    )
    .unwrap();
    let s = settings(&json!({}));
    let Built::Request { body, .. } = request::build(
        &req,
        &request::Target {
            model,
            settings: &s,
            chat: None,
            messages: None,
            media: &[],
            streaming: false,
        },
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(
        body["messages"][1]["content"],
        json!([
            {"type": "thinking", "thinking": thinking, "signature": signature},
            {"type": "redacted_thinking", "data": "EmwKAhgBEgy+redacted"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}}
        ])
    );
    assert_eq!(
        body["thinking"],
        json!({"type": "enabled", "budget_tokens": 1024})
    );
    assert_eq!(
        body["messages"][2]["content"][0]["tool_use_id"],
        "toolu_01A"
    );
}

#[test]
fn foreign_tool_ids_are_made_valid_and_stay_distinct() {
    let a = request::tool_id("functions.Bash:0");
    let b = request::tool_id("functions.Bash_0");
    assert!(
        a.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    );
    assert_ne!(a, b);
    assert_eq!(a, request::tool_id("functions.Bash:0"), "deterministic");
    assert_eq!(request::tool_id("toolu_01A"), "toolu_01A");
}

#[test]
fn settings_validation_names_the_key() {
    assert!(VertexClaude::validate_settings(r#"{"project":"p","location":"us-east5"}"#).is_ok());
    let e = VertexClaude::validate_settings(
        r#"{"project":"p","location":"us-east5","claude_max_tokens":-1}"#,
    )
    .unwrap_err();
    assert!(e.contains("claude_max_tokens"), "{e}");
}

#[test]
fn web_search_becomes_the_server_tool_and_namespaced_calls_come_back() {
    let body = json!({"model": "claude", "input": "look it up", "tools": [
        {"type": "function", "name": "exec_command", "parameters": {"type": "object"}},
        {"type": "namespace", "name": "multi_agent_v1", "description": "d", "tools": [
            {"type": "function", "name": "spawn_agent", "parameters": {"type": "object"}}]},
        {"type": "web_search", "external_web_access": true}]});
    let up = VertexClaude::request(&ctx(false), body.to_string().as_bytes()).unwrap();
    let sent: Value = serde_json::from_slice(&up.body).unwrap();
    let tools = sent["tools"].as_array().unwrap();
    assert_eq!(
        tools[0],
        json!({"type": "web_search_20250305", "name": "web_search"})
    );
    assert_eq!(tools[2]["name"], "multi_agent_v1__spawn_agent");
    // Cache mark on the last function tool, not on the server tool.
    assert!(tools[0].get("cache_control").is_none() && tools[2].get("cache_control").is_some());
    // Claude 3 models have no web search: the offer is left out.
    let mut old = ctx(false);
    old.upstream_model = "claude-3-5-haiku@20241022".into();
    let up3 = VertexClaude::request(&old, body.to_string().as_bytes()).unwrap();
    let sent3: Value = serde_json::from_slice(&up3.body).unwrap();
    assert!(
        sent3["tools"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t.get("type").is_none()),
        "{sent3}"
    );
    // The call of the flattened tool comes back under its namespace.
    let answer = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "m",
        "content": [{"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "q"}},
                    {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
                    {"type": "text", "text": "Found it.", "citations": []},
                    {"type": "tool_use", "id": "toolu_1", "name": "multi_agent_v1__spawn_agent", "input": {}}],
        "stop_reason": "tool_use", "usage": {"input_tokens": 3, "output_tokens": 2}});
    let out = VertexClaude::response(&ctx(false), &up.state, up_json(&answer)).unwrap();
    let out: Value = serde_json::from_slice(&out).unwrap();
    let items = out["output"].as_array().unwrap();
    let call = items.iter().find(|i| i["type"] == "function_call").unwrap();
    assert_eq!(
        (call["namespace"].as_str(), call["name"].as_str()),
        (Some("multi_agent_v1"), Some("spawn_agent"))
    );
    assert!(items.iter().any(|i| i["type"] == "message"));
    // Restrictions carry over; cached-only search and claude_web_search =
    // false leave it out.
    let restricted = json!({"model": "claude", "input": "x", "tools": [{"type": "web_search",
        "filters": {"allowed_domains": ["docs.rs"]}, "user_location": {"type": "approximate", "country": "DE", "x": 1}}]});
    let sent: Value = serde_json::from_slice(
        &VertexClaude::request(&ctx(false), restricted.to_string().as_bytes())
            .unwrap()
            .body,
    )
    .unwrap();
    assert_eq!(sent["tools"][0]["allowed_domains"], json!(["docs.rs"]));
    assert_eq!(
        sent["tools"][0]["user_location"],
        json!({"type": "approximate", "country": "DE"})
    );
    let cached = json!({"model": "claude", "input": "x", "tools": [{"type": "web_search", "external_web_access": false}]});
    let sent: Value = serde_json::from_slice(
        &VertexClaude::request(&ctx(false), cached.to_string().as_bytes())
            .unwrap()
            .body,
    )
    .unwrap();
    assert!(sent.get("tools").is_none(), "{sent}");
    let mut off = ctx(false);
    off.settings = r#"{"project":"proj","location":"us-east5","claude_web_search":false}"#.into();
    let sent: Value = serde_json::from_slice(
        &VertexClaude::request(&off, restricted.to_string().as_bytes())
            .unwrap()
            .body,
    )
    .unwrap();
    assert!(sent.get("tools").is_none(), "{sent}");
    // hosted_tools = "reject" refuses instead.
    let mut strict = ctx(false);
    strict.upstream_model = "claude-3-5-haiku@20241022".into();
    strict.settings = r#"{"project":"proj","location":"us-east5","hosted_tools":"reject"}"#.into();
    assert!(matches!(
        VertexClaude::request(&strict, body.to_string().as_bytes()),
        Err(Error::Unsupported(_))
    ));
}

fn up_json(v: &Value) -> UpstreamResponse {
    UpstreamResponse {
        status: 200,
        headers: vec![],
        body: v.to_string().into_bytes(),
    }
}

/// The passthrough: a Messages request adapted to Vertex, everything else
/// as written.
#[test]
fn messages_are_adapted_for_vertex() {
    use crate::messages::adapt;
    use llmproxy_sdk::Api;
    let settings = llmproxy_sdk::api::vertex::Settings::parse(&ctx(false).settings).unwrap();
    let body = json!({
        "model": "claude-sonnet-4-5-20250929", "max_tokens": 100, "stream": true,
        "system": "Base.",
        "messages": [
            {"role": "system", "content": "Mid-conversation rules."},
            {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}
        ],
        "output_config": {"effort": "high"},
        "context_management": {"edits": []},
        "future_field": {"kept": true}
    });
    let mut c = ctx(true);
    c.extras = json!({"anthropic_beta": ["claude-code-20250219", "advanced-tool-use-2025-11-20", "interleaved-thinking-2025-05-14", "effort-2025-11-24"]}).to_string();
    let req = adapt(&c, &settings, Api::Messages, body.to_string().as_bytes()).unwrap();
    assert!(
        req.path
            .ends_with("/models/claude-sonnet-4-5@20250929:streamRawPredict"),
        "{}",
        req.path
    );
    let sent: Value = serde_json::from_slice(&req.body).unwrap();
    assert!(sent.get("model").is_none());
    assert_eq!(sent["anthropic_version"], "vertex-2023-10-16");
    assert_eq!(
        sent["anthropic_beta"],
        json!([
            "tool-search-tool-2025-10-19",
            "interleaved-thinking-2025-05-14"
        ])
    );
    assert!(sent.get("output_config").is_none(), "{sent}");
    assert_eq!(sent["future_field"], json!({"kept": true}));
    assert_eq!(sent["context_management"], json!({"edits": []}));
    assert_eq!(
        sent["system"],
        json!([{"type": "text", "text": "Base."}, {"type": "text", "text": "Mid-conversation rules."}])
    );
    assert_eq!(sent["messages"], json!([body["messages"][1]]));
    // Token counting: Vertex's endpoint, its model id in the body.
    let req = adapt(
        &ctx(false),
        &settings,
        Api::MessagesCountTokens,
        br#"{"model":"x","messages":[{"role":"user","content":"hi"}]}"#,
    )
    .unwrap();
    assert!(
        req.path.ends_with("/models/count-tokens:rawPredict"),
        "{}",
        req.path
    );
    let sent: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(sent["model"], "claude-sonnet-4-5@20250929");
    // URL sources: the host downloads them, then they go inline.
    let url = json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}]}]}]});
    let Err(llmproxy_sdk::Error::NeedsMedia(urls)) = adapt(
        &ctx(false),
        &settings,
        Api::Messages,
        url.to_string().as_bytes(),
    ) else {
        panic!("a URL source went through");
    };
    assert_eq!(urls, ["https://x/y.png"]);
    let mut with_media = ctx(false);
    with_media.media = vec![llmproxy_sdk::Media {
        url: "https://x/y.png".into(),
        mime_type: "image/png".into(),
        data_base64: "iVBO".into(),
    }];
    let req = adapt(
        &with_media,
        &settings,
        Api::Messages,
        url.to_string().as_bytes(),
    )
    .unwrap();
    let sent: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(
        sent["messages"][0]["content"][0]["content"][0]["source"],
        json!({"type": "base64", "media_type": "image/png", "data": "iVBO"})
    );
}
