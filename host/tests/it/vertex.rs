//! The gcp-vertex backend with Gemini models, through both endpoints,
//! streamed and not, against the strict fake Vertex.

use crate::fake_vertex::{FakeVertex, PLACEHOLDER};
use crate::spec::{check_response, check_stream};
use crate::support::*;
use serde_json::{Value, json};

async fn setup(settings_extra: &str) -> (FakeVertex, TestProxy) {
    let vertex = FakeVertex::start().await;
    let proxy = TestProxy::start(&vertex.config(settings_extra)).await;
    (vertex, proxy)
}

#[tokio::test]
async fn text_system_and_multi_turn_through_both_endpoints() {
    let (vertex, proxy) = setup("").await;
    let req = json!({"model": "gemini-2.5-flash", "instructions": "Be brief.", "input": [
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
        {"role": "system", "content": "Answer in French."}, {"role": "user", "content": "How are you?"}]});
    let (status, _, v) = proxy.post("/v1/responses", &req).await;
    assert_eq!(status, 200, "{v}");
    check_response(&v).unwrap();
    assert_eq!(
        v["output"][0]["content"][0]["text"],
        "Hello from gemini-2.5-flash"
    );
    assert_eq!(v["model"], "gemini-2.5-flash");
    assert_eq!(
        v["usage"],
        json!({"input_tokens": 20, "input_tokens_details": {"cached_tokens": 5}, "output_tokens": 7,
               "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 27})
    );
    let (path, body) = vertex.last();
    assert_eq!(
        path,
        "/v1/projects/test-proj/locations/us-east5/publishers/google/models/gemini-2.5-flash:generateContent"
    );
    assert_eq!(
        body["systemInstruction"],
        json!({"parts": [{"text": "Be brief.\n\nAnswer in French."}]})
    );
    assert_eq!(body["contents"].as_array().unwrap().len(), 3);

    let mut s = req.clone();
    s["stream"] = json!(true);
    let (status, events, done) = proxy.post_stream("/v1/responses", &s).await;
    assert_eq!(status, 200);
    check_stream(&events).unwrap();
    assert!(done);
    assert_eq!(text_of(&events), "Hello from gemini-2.5-flash");
    assert_eq!(
        events.last().unwrap()["response"]["usage"]["input_tokens_details"]["cached_tokens"],
        5
    );
    assert!(vertex.last().0.ends_with(":streamGenerateContent"));

    let chat = json!({"model": "gemini-2.5-flash", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]});
    let (status, _, v) = proxy.post("/v1/chat/completions", &chat).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello from gemini-2.5-flash"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 5);
    let mut c = chat.clone();
    c["stream"] = json!(true);
    let (text, finish, _, _, done) = chat_chunks(&chat_stream_raw(&proxy, &c).await);
    assert_eq!(
        (text.as_str(), finish, done),
        (
            "Hello from gemini-2.5-flash",
            vec!["stop".to_string()],
            true
        )
    );
    assert_eq!(vertex.token_requests(), 1, "one token for every request");
}

const WEATHER: &str = r#"{"type": "function", "name": "get_weather", "description": "Weather by city", "parameters": {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}"#;
const NOW: &str =
    r#"{"type": "function", "name": "now", "parameters": {"type": "object", "properties": {}}}"#;

pub fn tools() -> Value {
    json!([
        serde_json::from_str::<Value>(WEATHER).unwrap(),
        serde_json::from_str::<Value>(NOW).unwrap()
    ])
}

fn chat_tools() -> Value {
    Value::Array(
        tools()
            .as_array()
            .unwrap()
            .iter()
            .map(|t| json!({"type": "function", "function": {"name": t["name"], "parameters": t["parameters"]}}))
            .collect(),
    )
}

#[tokio::test]
async fn gemini3_tool_loop_with_signatures_for_responses_clients() {
    let (vertex, proxy) = setup("").await;
    for stream in [false, true] {
        let req = json!({"model": "gemini-3-flash", "input": [{"role": "user", "content": "weather and time, both"}], "tools": tools(), "stream": stream});
        let output: Vec<Value> = if stream {
            let (status, events, _) = proxy.post_stream("/v1/responses", &req).await;
            assert_eq!(status, 200);
            check_stream(&events).unwrap();
            events.last().unwrap()["response"]["output"]
                .as_array()
                .unwrap()
                .clone()
        } else {
            let (status, _, v) = proxy.post("/v1/responses", &req).await;
            assert_eq!(status, 200, "{v}");
            check_response(&v).unwrap();
            v["output"].as_array().unwrap().clone()
        };
        let kinds: Vec<&str> = output.iter().map(|i| i["type"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            ["reasoning", "function_call", "function_call"],
            "{output:?}"
        );
        assert!(
            output[0]["encrypted_content"]
                .as_str()
                .unwrap()
                .starts_with("pxy1.")
        );
        assert_eq!(output[1]["arguments"], r#"{"city":"Paris"}"#);
        assert_eq!(output[2]["name"], "now");
        assert_eq!(output[2]["arguments"], "{}", "a call without arguments");
        for c in &output[1..] {
            let id = c["call_id"].as_str().unwrap();
            assert!(id.starts_with("call_") && id.len() <= 64, "{id}");
        }
        // Turn two: the client sends everything back.
        let mut input = vec![json!({"role": "user", "content": "weather and time, both"})];
        input.extend(output.iter().cloned());
        input.push(json!({"type": "function_call_output", "call_id": output[1]["call_id"], "output": "18C"}));
        input.push(json!({"type": "function_call_output", "call_id": output[2]["call_id"], "output": "{\"time\":\"12:00\"}"}));
        let before = vertex.replayed().len();
        let req =
            json!({"model": "gemini-3-flash", "input": input, "tools": tools(), "stream": stream});
        let text = if stream {
            let (status, events, _) = proxy.post_stream("/v1/responses", &req).await;
            assert_eq!(status, 200, "{events:?}");
            check_stream(&events).unwrap();
            text_of(&events)
        } else {
            let (status, _, v) = proxy.post("/v1/responses", &req).await;
            assert_eq!(status, 200, "{v}");
            v["output"][0]["content"][0]["text"]
                .as_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(text, r#"Results: 18C, {"time":"12:00"}"#);
        let replayed = vertex.replayed()[before..].to_vec();
        assert_eq!(replayed.len(), 1, "the first call's signature came back");
        assert!(
            replayed[0].starts_with("SIG-call-"),
            "the real signature, not {:?}",
            replayed[0]
        );
    }
}

#[tokio::test]
async fn gemini3_tool_loop_with_signatures_for_chat_clients() {
    let (vertex, proxy) = setup("").await;
    for stream in [false, true] {
        let mut messages = vec![json!({"role": "user", "content": "weather in Paris?"})];
        let req = json!({"model": "gemini-3-flash", "messages": messages, "tools": chat_tools(), "stream": stream});
        let calls = if stream {
            let (text, finish, _, calls, done) = chat_chunks(&chat_stream_raw(&proxy, &req).await);
            assert_eq!(
                (text.as_str(), finish, done),
                ("", vec!["tool_calls".to_string()], true)
            );
            calls
        } else {
            let (status, _, v) = proxy.post("/v1/chat/completions", &req).await;
            assert_eq!(status, 200, "{v}");
            assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
            v["choices"][0]["message"]["tool_calls"]
                .as_array()
                .unwrap()
                .clone()
        };
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0]["function"]["arguments"], r#"{"city":"Paris"}"#);
        // Chat clients send back only the call's id.
        messages.push(json!({"role": "assistant", "content": null, "tool_calls": calls}));
        messages.push(json!({"role": "tool", "tool_call_id": calls[0]["id"], "content": "18C"}));
        let before = vertex.replayed().len();
        let req = json!({"model": "gemini-3-flash", "messages": messages, "tools": chat_tools(), "stream": stream});
        let text = if stream {
            chat_chunks(&chat_stream_raw(&proxy, &req).await).0
        } else {
            let (status, _, v) = proxy.post("/v1/chat/completions", &req).await;
            assert_eq!(status, 200, "{v}");
            v["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(text, "Results: 18C");
        let replayed = vertex.replayed()[before..].to_vec();
        assert!(
            replayed.len() == 1 && replayed[0].starts_with("SIG-call-"),
            "{replayed:?}"
        );
    }
    // History the proxy never saw (another provider's calls) gets Google's
    // placeholder instead of a 400.
    let messages = json!([
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "toolu_01", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}]},
        {"role": "tool", "tool_call_id": "toolu_01", "content": "20C"}
    ]);
    let (status, _, v) = proxy
        .post(
            "/v1/chat/completions",
            &json!({"model": "gemini-3-flash", "messages": messages, "tools": chat_tools()}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(vertex.replayed().last().unwrap(), PLACEHOLDER);
}

#[tokio::test]
async fn thinking_summaries_become_reasoning() {
    let (vertex, proxy) = setup("").await;
    let req = json!({"model": "gemini-2.5-flash", "input": "think", "reasoning": {"effort": "low", "summary": "auto"}});
    let (status, _, v) = proxy.post("/v1/responses", &req).await;
    assert_eq!(status, 200, "{v}");
    check_response(&v).unwrap();
    assert_eq!(v["output"][0]["type"], "reasoning");
    assert_eq!(v["output"][0]["summary"][0]["text"], "Thinking about it.");
    assert_eq!(v["usage"]["output_tokens_details"]["reasoning_tokens"], 3);
    assert_eq!(v["usage"]["output_tokens"], 10);
    assert_eq!(v["reasoning"], json!({"effort": "low", "summary": "auto"}));
    assert_eq!(
        vertex.last().1["generationConfig"]["thinkingConfig"],
        json!({"thinkingBudget": 1024, "includeThoughts": true})
    );
    let mut s = req.clone();
    s["stream"] = json!(true);
    let (_, events, _) = proxy.post_stream("/v1/responses", &s).await;
    check_stream(&events).unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "response.reasoning_summary_text.delta"
                && e["delta"] == "Thinking about it.")
    );

    // Chat clients see it as reasoning_content when thoughts are on.
    let (_, proxy) = setup(", include_thoughts = \"always\"").await;
    let chat = json!({"model": "gemini-3-flash", "reasoning_effort": "high", "messages": [{"role": "user", "content": "think"}]});
    let (_, _, v) = proxy.post("/v1/chat/completions", &chat).await;
    assert_eq!(
        v["choices"][0]["message"]["reasoning_content"],
        "Thinking about it."
    );
    let mut c = chat.clone();
    c["stream"] = json!(true);
    let (text, _, reasoning, _, _) = chat_chunks(&chat_stream_raw(&proxy, &c).await);
    assert_eq!(
        (reasoning.as_str(), text.as_str()),
        ("Thinking about it.", "Hello from gemini-3-flash")
    );
}

#[tokio::test]
async fn images_structured_output_and_generation_settings() {
    let (vertex, proxy) = setup("").await;
    let chat = json!({"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what are these?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]}],
        "temperature": 0.4, "max_tokens": 100, "stop": ["END"], "seed": 7});
    let (status, _, v) = proxy.post("/v1/chat/completions", &chat).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "I see image/png and image/jpeg"
    );
    let sent = vertex.last().1;
    assert_eq!(
        sent["contents"][0]["parts"][1],
        json!({"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}})
    );
    assert_eq!(
        sent["contents"][0]["parts"][2],
        json!({"fileData": {"fileUri": "https://example.com/cat.jpg", "mimeType": "image/jpeg"}})
    );
    assert_eq!(
        sent["generationConfig"],
        json!({"temperature": 0.4, "maxOutputTokens": 100, "stopSequences": ["END"], "seed": 7})
    );

    let req = json!({"model": "gemini-2.5-flash", "input": "answer",
        "text": {"format": {"type": "json_schema", "name": "answer", "schema": {"type": "object", "properties": {"answer": {"type": "string"}}}}}});
    let (_, _, v) = proxy.post("/v1/responses", &req).await;
    assert_eq!(v["output"][0]["content"][0]["text"], "{\"answer\":\"42\"}");
    assert_eq!(
        vertex.last().1["generationConfig"]["responseMimeType"],
        "application/json"
    );
    check_response(&v).unwrap();
    assert_eq!(v["text"]["format"]["name"], "answer", "echoed");
    assert_eq!(v["text"]["format"]["strict"], false, "defaulted");
    let (status, _, v) = proxy
        .post("/v1/chat/completions", &json!({"model": "gemini-2.5-flash", "n": 2, "messages": [{"role": "user", "content": "x"}]}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["param"], "n");
}

#[tokio::test]
async fn safety_block_is_a_content_filter_result() {
    let (_vertex, proxy) = setup("").await;
    let req = json!({"model": "gemini-2.5-flash", "input": "BLOCKME please"});
    let (status, _, v) = proxy.post("/v1/responses", &req).await;
    assert_eq!(status, 200, "{v}");
    check_response(&v).unwrap();
    assert_eq!(v["status"], "incomplete");
    assert_eq!(v["incomplete_details"]["reason"], "content_filter");
    let mut s = req.clone();
    s["stream"] = json!(true);
    let (_, events, done) = proxy.post_stream("/v1/responses", &s).await;
    check_stream(&events).unwrap();
    assert!(done);
    assert_eq!(events.last().unwrap()["type"], "response.incomplete");
    let chat =
        json!({"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "BLOCKME"}]});
    assert_eq!(
        chat_finish_reasons(&proxy, &chat).await,
        (json!("content_filter"), vec!["content_filter".to_string()])
    );
}

#[tokio::test]
async fn vertex_errors_keep_status_message_and_retry_after() {
    let (_vertex, proxy) = setup("").await;
    for stream in [false, true] {
        let r = proxy
            .http
            .post(format!("{}/v1/chat/completions", proxy.url))
            .json(&json!({"model": "gemini-2.5-flash", "stream": stream, "messages": [{"role": "user", "content": "RATELIMIT"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "7");
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            v["error"]["message"],
            "Resource exhausted. Please try again later."
        );
        assert_eq!(v["error"]["type"], "rate_limit_error");
        assert_eq!(v["error"]["code"], "resource_exhausted");
    }
    let (status, _, v) = proxy
        .post(
            "/v1/responses",
            &json!({"model": "gemini-2.5-flash", "input": "FORBIDME"}),
        )
        .await;
    assert_eq!(status, 502, "the proxy's credentials, not the client's");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Permission"),
        "{v}"
    );
    // Vertex's own validation errors come back with their message.
    let (status, _, v) = proxy
        .post(
            "/v1/responses",
            &json!({"model": "gemini-2.5-flash", "input": [
            {"role": "user", "content": "x"},
            {"type": "function_call_output", "call_id": "nope", "output": "1"}]}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("nope"),
        "{v}"
    );
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once_and_the_request_retried() {
    let (vertex, proxy) = setup("").await;
    let req = json!({"model": "gemini-2.5-flash", "input": "hi"});
    assert_eq!(proxy.post("/v1/responses", &req).await.0, 200);
    assert_eq!(vertex.token_requests(), 1);
    vertex.revoke_tokens();
    let (status, _, v) = proxy.post("/v1/responses", &req).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(vertex.token_requests(), 2, "one refresh");
    for _ in 0..5 {
        assert_eq!(proxy.post("/v1/responses", &req).await.0, 200);
    }
    assert_eq!(vertex.token_requests(), 2, "the new token is cached");
}
