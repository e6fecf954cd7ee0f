use super::*;
use llmproxy_sdk::api::chat::ChatRequest;
use llmproxy_sdk::api::golden;
use serde_json::Value;
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

/// Request cases: `{request, model, settings?, chat?}` → the Gemini body.
#[test]
fn request_golden() {
    golden::check_dir(dir("request"), |input| {
        let req: CreateResponse = serde_json::from_value(input["request"].clone()).unwrap();
        let chat: Option<ChatRequest> = input
            .get("chat")
            .map(|c| serde_json::from_value(c.clone()).unwrap());
        let s = settings(input);
        let target = request::Target {
            model: input["model"].as_str().unwrap(),
            settings: &s,
            chat: chat.as_ref(),
            messages: None,
        };
        match request::build(&req, &target) {
            Ok(body) => body,
            Err(e) => llmproxy_sdk::api::golden::error(&e),
        }
    });
}

/// Response cases: `{model, body, single_call?}` → the canonical response.
#[test]
fn response_golden() {
    golden::check_dir(dir("response"), |input| {
        let mut m = Mapper::new(
            IdGen::with_stem("t"),
            input["model"].as_str().unwrap(),
            input["single_call"] == true,
        );
        match m.chunk(&input["body"], &mut Vec::new()) {
            Ok(()) => serde_json::to_value(m.response()).unwrap(),
            Err(e) => json!({"chunk_error": e.message}),
        }
    });
}

/// Stream cases: `{model, chunks}` → canonical events (then `end`).
#[test]
fn stream_golden() {
    golden::check_dir(dir("stream"), |input| {
        let mut m = Mapper::new(
            IdGen::with_stem("t"),
            input["model"].as_str().unwrap(),
            false,
        );
        let mut out = Vec::new();
        for c in input["chunks"].as_array().unwrap() {
            if let Err(e) = m.chunk(c, &mut out) {
                out.push(json!({"chunk_error": e.message, "status": e.status}));
                return Value::Array(out);
            }
        }
        m.end(&mut out, true);
        Value::Array(out)
    });
}

fn ctx(streaming: bool) -> Context {
    Context {
        backend: "vertex".into(),
        model: "gemini-fast".into(),
        upstream_model: "gemini-3-flash".into(),
        streaming,
        settings: r#"{"project":"proj","location":"global"}"#.into(),
        extras: "{}".into(),
        media: Vec::new(),
    }
}

#[test]
fn request_paths_and_state() {
    let body = br#"{"model":"gemini-fast","input":"hi","parallel_tool_calls":false}"#;
    let up = VertexGemini::request(&ctx(false), body).unwrap();
    assert_eq!(
        up.path,
        "/v1/projects/proj/locations/global/publishers/google/models/gemini-3-flash:generateContent"
    );
    assert_eq!(up.state, r#"{"single_call":true}"#);
    let up = VertexGemini::request(&ctx(true), body).unwrap();
    assert!(
        up.path.ends_with(":streamGenerateContent?alt=sse"),
        "{}",
        up.path
    );
    assert!(
        up.headers
            .iter()
            .all(|(n, _)| !n.eq_ignore_ascii_case("authorization"))
    );
}

#[test]
fn settings_validation_names_the_key() {
    assert!(VertexGemini::validate_settings(r#"{"project":"p","location":"us-east5"}"#).is_ok());
    let e = VertexGemini::validate_settings(r#"{"location":"us-east5"}"#).unwrap_err();
    assert!(e.contains("project"), "{e}");
}

fn up(status: u16, body: &str) -> UpstreamResponse {
    UpstreamResponse {
        status,
        headers: vec![],
        body: body.as_bytes().to_vec(),
    }
}

#[test]
fn vertex_errors_keep_status_message_and_retry_delay() {
    let body = r#"[{"error":{"code":429,"message":"Resource exhausted. Please try again later.","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"12s"}]}}]"#;
    let Error::Upstream(e) = VertexGemini::response(&ctx(false), "", up(429, body)).unwrap_err()
    else {
        panic!()
    };
    assert_eq!(
        (e.status, e.retry_after, e.code.as_deref()),
        (429, Some(12), Some("resource_exhausted"))
    );
    assert_eq!(e.message, "Resource exhausted. Please try again later.");
    let body = r#"{"error":{"code":403,"message":"Permission 'aiplatform.endpoints.predict' denied","status":"PERMISSION_DENIED"}}"#;
    let Error::Upstream(e) = VertexGemini::response(&ctx(false), "", up(403, body)).unwrap_err()
    else {
        panic!()
    };
    assert_eq!(e.status, 502, "the proxy's credentials, not the client's");
    assert!(
        e.message.contains("Permission") && e.message.contains("credentials"),
        "{}",
        e.message
    );
    let body = r#"{"error":{"code":404,"message":"Publisher Model `gemini-9` was not found","status":"NOT_FOUND"}}"#;
    let Error::Upstream(e) = VertexGemini::response(&ctx(false), "", up(404, body)).unwrap_err()
    else {
        panic!()
    };
    assert_eq!((e.status, e.code.as_deref()), (404, Some("not_found")));
}

/// A signed answer, mapped to canonical output and sent back as history,
/// puts every signature back on the part it came on.
#[test]
fn signatures_round_trip() {
    let answer = json!({"candidates": [{"content": {"role": "model", "parts": [
        {"text": "Let me think.", "thought": true, "thoughtSignature": "SIG_THOUGHT"},
        {"text": "Checking both."},
        {"text": "", "thoughtSignature": "SIG_TEXT"},
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "SIG_CALL"},
        {"functionCall": {"name": "get_time", "args": {}}}
    ]}, "finishReason": "STOP"}]});
    let mut m = Mapper::new(IdGen::with_stem("t"), "gemini-3-flash", false);
    m.chunk(&answer, &mut Vec::new()).unwrap();
    let output = serde_json::to_value(m.response()).unwrap()["output"].clone();
    let calls: Vec<&Value> = output
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "function_call")
        .collect();
    let mut input = vec![json!({"role": "user", "content": "weather and time?"})];
    input.extend(output.as_array().unwrap().iter().cloned());
    for (c, out) in calls.iter().zip(["18C", "{\"time\":\"12:00\"}"]) {
        input.push(json!({"type": "function_call_output", "call_id": c["call_id"], "output": out}));
    }
    let req: CreateResponse =
        serde_json::from_value(json!({"model": "g", "input": input})).unwrap();
    let s = Settings::parse(r#"{"project":"p","location":"us-east5"}"#).unwrap();
    let body = request::build(
        &req,
        &request::Target {
            model: "gemini-3-flash",
            settings: &s,
            chat: None,
            messages: None,
        },
    )
    .unwrap();
    assert_eq!(
        body["contents"],
        json!([
            {"role": "user", "parts": [{"text": "weather and time?"}]},
            {"role": "model", "parts": [
                {"text": "Let me think.", "thought": true, "thoughtSignature": "SIG_THOUGHT"},
                {"text": "Checking both.", "thoughtSignature": "SIG_TEXT"},
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "SIG_CALL"},
                {"functionCall": {"name": "get_time", "args": {}}}
            ]},
            {"role": "user", "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"output": "18C"}}},
                {"functionResponse": {"name": "get_time", "response": {"output": {"time": "12:00"}}}}
            ]}
        ])
    );
    // Another model's signatures are not valid here: the placeholder goes in.
    let body = request::build(
        &req,
        &request::Target {
            model: "gemini-3-pro",
            settings: &s,
            chat: None,
            messages: None,
        },
    )
    .unwrap();
    assert_eq!(
        body["contents"][1]["parts"],
        json!([
            {"text": "Checking both."},
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": request::SKIP_SIGNATURE},
            {"functionCall": {"name": "get_time", "args": {}}}
        ]),
        "thoughts of another model are dropped, only the first call gets the placeholder"
    );
}

#[test]
fn web_search_is_grounding_only_without_functions() {
    let search = json!({"model": "g", "input": "news?", "tools": [{"type": "web_search"}]});
    let up = VertexGemini::request(&ctx(false), search.to_string().as_bytes()).unwrap();
    let sent: Value = serde_json::from_slice(&up.body).unwrap();
    assert_eq!(sent["tools"], json!([{"googleSearch": {}}]));
    assert!(sent.get("toolConfig").is_none());
    // With functions, Vertex refuses search: it is left out.
    let mixed = json!({"model": "g", "input": "x", "tools": [{"type": "web_search"},
        {"type": "custom", "name": "apply_patch", "description": "Patch."}]});
    let up = VertexGemini::request(&ctx(false), mixed.to_string().as_bytes()).unwrap();
    let sent: Value = serde_json::from_slice(&up.body).unwrap();
    let decls = sent["tools"].as_array().unwrap();
    assert_eq!(decls.len(), 1, "{sent}");
    assert_eq!(decls[0]["functionDeclarations"][0]["name"], "apply_patch");
    // A call of the custom tool comes back as a custom tool call.
    let answer = json!({"candidates": [{"content": {"role": "model", "parts": [
        {"functionCall": {"name": "apply_patch", "args": {"input": "*** Begin Patch"}}, "thoughtSignature": "S"}]},
        "finishReason": "STOP"}], "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 1, "totalTokenCount": 2}});
    let resp = UpstreamResponse {
        status: 200,
        headers: vec![],
        body: answer.to_string().into_bytes(),
    };
    let out = VertexGemini::response(&ctx(false), &up.state, resp).unwrap();
    let out: Value = serde_json::from_slice(&out).unwrap();
    let call = out["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "custom_tool_call")
        .unwrap();
    assert_eq!(call["input"], "*** Begin Patch");
    assert_eq!(call["name"], "apply_patch");
    assert!(call.get("arguments").is_none());
}

/// A Messages token count becomes `countTokens` with the conversation as
/// Gemini would get it, and its answer `{"input_tokens": N}`.
#[test]
fn messages_count_tokens() {
    use llmproxy_sdk::{Api, Translator, UpstreamResponse};
    let body = json!({"model": "gemini-2.5-flash", "system": "Be brief.",
        "messages": [{"role": "user", "content": "Hello"}],
        "tools": [{"name": "now", "input_schema": {"type": "object", "properties": {}}}]});
    let req = crate::VertexGemini::adapt(
        &ctx(false),
        Api::MessagesCountTokens,
        body.to_string().as_bytes(),
    )
    .unwrap();
    assert!(req.path.ends_with(":countTokens"), "{}", req.path);
    let sent: Value = serde_json::from_slice(&req.body).unwrap();
    let keys: Vec<&String> = sent.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["contents", "systemInstruction", "tools"]);
    let answer = UpstreamResponse {
        status: 200,
        headers: Vec::new(),
        body: br#"{"totalTokens": 31, "totalBillableCharacters": 120}"#.to_vec(),
    };
    let out = crate::VertexGemini::response(&ctx(false), &req.state, answer).unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&out).unwrap(),
        json!({"input_tokens": 31})
    );
}
