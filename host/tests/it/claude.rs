//! The gcp-vertex backend with Claude models, through both endpoints,
//! streamed and not, against the strict fake Claude on Vertex.

use crate::fake_vertex::FakeVertex;
use crate::spec::{check_response, check_stream};
use crate::support::*;
use serde_json::{Value, json};

pub const MODEL: &str = "claude-sonnet-4-5@20250929";

async fn setup(prefix: &str) -> (FakeVertex, TestProxy) {
    let vertex = FakeVertex::start().await;
    let proxy = TestProxy::start(&format!("{prefix}{}", vertex.config(""))).await;
    (vertex, proxy)
}

pub fn weather_tools() -> Value {
    json!([{"type": "function", "name": "get_weather", "description": "Weather by city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
           {"type": "function", "name": "get_time", "description": "The time",
            "parameters": {"type": "object", "properties": {}}}])
}

fn chat_tools() -> Value {
    json!(weather_tools()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| json!({"type": "function", "function": {"name": t["name"], "description": t["description"], "parameters": t["parameters"]}}))
        .collect::<Vec<_>>())
}

#[tokio::test]
async fn text_system_multi_turn_and_cache_usage_through_both_endpoints() {
    let (vertex, proxy) = setup("").await;
    let req = json!({"model": MODEL, "instructions": "Be brief.", "input": [
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
        {"role": "developer", "content": "Answer in French."}, {"role": "user", "content": "How are you?"}]});
    let (status, _, v) = proxy.post("/v1/responses", &req).await;
    assert_eq!(status, 200, "{v}");
    check_response(&v).unwrap();
    assert_eq!(v["output"][0]["content"][0]["text"], "Hello from Claude");
    assert_eq!(v["model"], MODEL);
    // input 10 uncached + 50 written + 100 read from the prompt cache.
    assert_eq!(
        v["usage"],
        json!({"input_tokens": 160, "input_tokens_details": {"cached_tokens": 100}, "output_tokens": 7,
               "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 167})
    );
    let (path, body) = vertex.last();
    assert_eq!(
        path,
        format!(
            "/v1/projects/test-proj/locations/us-east5/publishers/anthropic/models/{MODEL}:rawPredict"
        )
    );
    assert_eq!(body["system"][0]["text"], "Be brief.\n\nAnswer in French.");
    assert_eq!(body["messages"].as_array().unwrap().len(), 3);
    assert_eq!(body["max_tokens"], 64000, "the model's maximum by default");

    let mut s = req.clone();
    s["stream"] = json!(true);
    let (status, events, done) = proxy.post_stream("/v1/responses", &s).await;
    assert_eq!(status, 200);
    check_stream(&events).unwrap();
    assert!(done);
    assert_eq!(text_of(&events), "Hello from Claude");
    assert_eq!(
        events.last().unwrap()["response"]["usage"]["input_tokens_details"]["cached_tokens"],
        100
    );
    assert!(vertex.last().0.ends_with(":streamRawPredict"));
    assert_eq!(vertex.last().1["stream"], true);

    let chat = json!({"model": MODEL, "max_tokens": 300, "messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]});
    let (status, _, v) = proxy.post("/v1/chat/completions", &chat).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], "Hello from Claude");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 100);
    assert_eq!(vertex.last().1["max_tokens"], 300);
    let mut c = chat.clone();
    c["stream"] = json!(true);
    c["stream_options"] = json!({"include_usage": true});
    let (text, finish, _, _, done) = chat_chunks(&chat_stream_raw(&proxy, &c).await);
    assert_eq!(
        (text.as_str(), finish, done),
        ("Hello from Claude", vec!["stop".to_string()], true)
    );
}

/// The headline: a tool loop with extended thinking, the thinking block
/// replayed byte for byte by a Responses client (as Codex does).
#[tokio::test]
async fn thinking_tool_loop_for_responses_clients() {
    let (vertex, proxy) = setup("").await;
    for stream in [false, true] {
        let mut input = vec![json!({"role": "user", "content": "weather in Paris?"})];
        let req = |input: &Vec<Value>| {
            json!({"model": MODEL, "input": input, "tools": weather_tools(), "stream": stream,
                   "reasoning": {"effort": "low", "summary": "auto"}, "max_output_tokens": 16000,
                   "include": ["reasoning.encrypted_content"], "store": false})
        };
        let output = if stream {
            let (status, events, _) = proxy.post_stream("/v1/responses", &req(&input)).await;
            assert_eq!(status, 200);
            check_stream(&events).unwrap();
            events.last().unwrap()["response"]["output"].clone()
        } else {
            let (status, _, v) = proxy.post("/v1/responses", &req(&input)).await;
            assert_eq!(status, 200, "{v}");
            check_response(&v).unwrap();
            v["output"].clone()
        };
        let kinds: Vec<&str> = output
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["type"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["reasoning", "message", "function_call"], "{output}");
        assert_eq!(
            output[0]["summary"][0]["text"],
            "Thinking about weather in Paris?."
        );
        assert!(
            output[0]["encrypted_content"]
                .as_str()
                .unwrap()
                .starts_with("pxy1.")
        );
        assert_eq!(vertex.last().1["thinking"]["budget_tokens"], 1600);
        let call = output[2].clone();
        assert_eq!(call["arguments"], "{\"city\":\"Paris\"}");
        input.extend(output.as_array().unwrap().iter().cloned());
        input.push(
            json!({"type": "function_call_output", "call_id": call["call_id"], "output": "18C"}),
        );
        let replayed = vertex.claude_replayed().len();
        let (status, _, v) = proxy
            .post(
                "/v1/responses",
                &json!({"model": MODEL, "input": input, "tools": weather_tools(),
                        "reasoning": {"effort": "low"}, "max_output_tokens": 16000}),
            )
            .await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["output"][1]["content"][0]["text"], "Results: 18C");
        assert_eq!(
            vertex.claude_replayed().len(),
            replayed + 1,
            "the signature came back"
        );
        let sent = vertex.last().1;
        assert_eq!(sent["messages"][1]["content"][0]["type"], "thinking");
        assert!(sent.get("thinking").is_some(), "thinking stays on");
    }
}

/// Chat clients send back only the tool-call ids: the proxy restores the
/// thinking so that Claude keeps thinking through the loop. Parallel calls
/// and a call without arguments, streamed and not.
#[tokio::test]
async fn thinking_tool_loop_for_chat_clients() {
    let (vertex, proxy) = setup("").await;
    for stream in [false, true] {
        let mut messages = vec![json!({"role": "user", "content": "weather and time, both"})];
        let req = |messages: &Vec<Value>| {
            json!({"model": MODEL, "messages": messages, "tools": chat_tools(),
                   "reasoning_effort": "medium", "stream": stream})
        };
        let (content, reasoning, calls) = if stream {
            let (text, finish, reasoning, calls, done) =
                chat_chunks(&chat_stream_raw(&proxy, &req(&messages)).await);
            assert!(done);
            assert_eq!(finish, ["tool_calls"]);
            (text, reasoning, calls)
        } else {
            let (status, _, v) = proxy.post("/v1/chat/completions", &req(&messages)).await;
            assert_eq!(status, 200, "{v}");
            assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
            let m = &v["choices"][0]["message"];
            (
                m["content"].as_str().unwrap_or("").to_string(),
                m["reasoning_content"].as_str().unwrap_or("").to_string(),
                m["tool_calls"].as_array().unwrap().clone(),
            )
        };
        assert_eq!(content, "Let me check.");
        assert!(reasoning.starts_with("Thinking about"), "{reasoning}");
        assert_eq!(calls.len(), 2, "parallel calls");
        assert_eq!(calls[0]["function"]["arguments"], "{\"city\":\"Paris\"}");
        assert_eq!(calls[1]["function"]["arguments"], "{}", "no-argument call");
        messages.push(json!({"role": "assistant", "content": content, "tool_calls": calls}));
        for (i, c) in calls.iter().enumerate() {
            messages
                .push(json!({"role": "tool", "tool_call_id": c["id"], "content": format!("r{i}")}));
        }
        let replayed = vertex.claude_replayed().len();
        let (status, _, v) = proxy
            .post(
                "/v1/chat/completions",
                &json!({"model": MODEL, "messages": messages, "tools": chat_tools(), "reasoning_effort": "medium"}),
            )
            .await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["choices"][0]["message"]["content"], "Results: r0, r1");
        assert_eq!(
            vertex.claude_replayed().len(),
            replayed + 1,
            "restored by the proxy"
        );
        let sent = vertex.last().1;
        assert!(sent.get("thinking").is_some(), "thinking stays on");
        let turn = &sent["messages"][1]["content"];
        assert_eq!(turn[0]["type"], "thinking");
        assert_eq!(turn[1], json!({"type": "text", "text": "Let me check."}));
    }
}

#[tokio::test]
async fn altered_thinking_is_refused_by_claude_and_the_message_passed_on() {
    let (_vertex, proxy) = setup("").await;
    let (_, _, v) = proxy
        .post(
            "/v1/responses",
            &json!({"model": MODEL, "input": "weather?", "tools": weather_tools(), "reasoning": {"effort": "low"}}),
        )
        .await;
    let mut output = v["output"].as_array().unwrap().clone();
    output[0]["summary"][0]["text"] = json!("I changed my mind.");
    let call_id = output[2]["call_id"].clone();
    let mut input = vec![json!({"role": "user", "content": "weather?"})];
    input.extend(output);
    input.push(json!({"type": "function_call_output", "call_id": call_id, "output": "1"}));
    let (status, _, v) = proxy
        .post(
            "/v1/responses",
            &json!({"model": MODEL, "input": input, "tools": weather_tools(), "reasoning": {"effort": "low"}}),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Invalid `signature`"),
        "{v}"
    );
}

#[tokio::test]
async fn images_inline_and_downloaded() {
    let (vertex, proxy) = setup(
        "[server]\nmetrics_on_main_listener = true\n[media]\nallow_private_networks = true\n",
    )
    .await;
    let req = json!({"model": MODEL, "input": [{"role": "user", "content": [
        {"type": "input_text", "text": "What is this?"},
        {"type": "input_image", "image_url": "data:image/gif;base64,R0lGODlh"},
        {"type": "input_image", "image_url": format!("{}/media/cat.png", vertex.base_url)},
        {"type": "input_image", "image_url": format!("{}/media/photo", vertex.base_url)}]}]});
    let (status, _, v) = proxy.post("/v1/responses", &req).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["output"][0]["content"][0]["text"],
        "I see image/gif and image/png and image/jpeg"
    );
    let sent = vertex.last().1;
    assert_eq!(
        sent["messages"][0]["content"][2]["source"]["data"],
        "iVBORw0KGgpmYWtlLXBuZw=="
    );
    // Chat clients' image_url parts too.
    let chat = json!({"model": MODEL, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "and this?"},
        {"type": "image_url", "image_url": {"url": format!("{}/media/cat.png", vertex.base_url)}}]}]});
    let (status, _, v) = proxy.post("/v1/chat/completions", &chat).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], "I see image/png");
    // A missing file is the client's problem, named.
    let bad = json!({"model": MODEL, "input": [{"role": "user", "content": [
        {"type": "input_image", "image_url": format!("{}/media/nope.png", vertex.base_url)}]}]});
    let (status, _, v) = proxy.post("/v1/responses", &bad).await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["code"], "invalid_image_url");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nope.png: the server answered HTTP 404"),
        "{v}"
    );
    // Counted: three files downloaded (cat.png twice, photo), one refused.
    let metrics = proxy.scrape().await;
    for line in [
        "llmproxy_media_downloads_total{result=\"ok\"} 3",
        "llmproxy_media_downloads_total{result=\"refused\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line}\n{metrics}");
    }
}

/// By default the proxy does not fetch from loopback, private or
/// link-local addresses (the metadata server, say) for a client, and it
/// caps the size.
#[tokio::test]
async fn downloads_are_fenced() {
    let (vertex, proxy) = setup("[media]\nmax_mib = 1\n").await;
    for url in [
        format!("{}/media/cat.png", vertex.base_url),
        "http://169.254.169.254/computeMetadata/v1/instance/service-accounts/default/token"
            .to_string(),
        "http://localhost:1/x.png".to_string(),
    ] {
        let req = json!({"model": MODEL, "input": [{"role": "user", "content": [
            {"type": "input_image", "image_url": url}]}]});
        let (status, _, v) = proxy.post("/v1/responses", &req).await;
        assert_eq!(status, 400, "{url}: {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("public address") && message.contains(&url),
            "{message}"
        );
    }
    let (vertex, proxy) = setup("[media]\nmax_mib = 1\nallow_private_networks = true\n").await;
    let req = json!({"model": MODEL, "input": [{"role": "user", "content": [
        {"type": "input_image", "image_url": format!("{}/media/huge.png", vertex.base_url)}]}]});
    let (status, _, v) = proxy.post("/v1/responses", &req).await;
    assert_eq!(status, 400);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("larger than 1 MiB"),
        "{v}"
    );
    assert!(vertex.received().is_empty(), "nothing reached Claude");
}

#[tokio::test]
async fn structured_output_and_refusal() {
    let (vertex, proxy) = setup("").await;
    let req = json!({"model": MODEL, "input": "6*7?", "text": {"format": {"type": "json_schema", "name": "answer",
        "schema": {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}}}});
    let (status, _, v) = proxy.post("/v1/responses", &req).await;
    assert_eq!(status, 200, "{v}");
    check_response(&v).unwrap();
    assert_eq!(v["output"][0]["content"][0]["text"], "{\"answer\":\"42\"}");
    assert_eq!(v["status"], "completed");
    assert_eq!(
        vertex.last().1["tool_choice"],
        json!({"type": "tool", "name": "json_response"})
    );
    let chat = json!({"model": MODEL, "messages": [{"role": "user", "content": "6*7?"}],
        "response_format": {"type": "json_object"}, "stream": true});
    let (text, finish, _, calls, _) = chat_chunks(&chat_stream_raw(&proxy, &chat).await);
    assert_eq!(
        (text.as_str(), finish, calls.len()),
        ("{\"answer\":\"42\"}", vec!["stop".to_string()], 0)
    );

    let (status, _, v) = proxy
        .post(
            "/v1/responses",
            &json!({"model": MODEL, "input": "REFUSE this"}),
        )
        .await;
    assert_eq!(status, 200);
    check_response(&v).unwrap();
    assert_eq!(v["status"], "incomplete");
    assert_eq!(v["incomplete_details"]["reason"], "content_filter");
    assert_eq!(
        v["output"][0]["content"][0]["refusal"],
        "This request was blocked by the usage policy."
    );
    let chat = json!({"model": MODEL, "messages": [{"role": "user", "content": "REFUSE this"}]});
    assert_eq!(
        chat_finish_reasons(&proxy, &chat).await,
        (json!("content_filter"), vec!["content_filter".to_string()])
    );
}

#[tokio::test]
async fn errors_in_both_shapes_keep_status_and_retry_after() {
    let (_vertex, proxy) = setup("").await;
    for stream in [false, true] {
        for (prompt, status, retry, code) in [
            ("OVERLOAD", 503, "3", "overloaded_error"),
            ("RATELIMIT", 429, "7", "resource_exhausted"),
        ] {
            let r = proxy
                .http
                .post(format!("{}/v1/chat/completions", proxy.url))
                .json(&json!({"model": MODEL, "stream": stream, "messages": [{"role": "user", "content": prompt}]}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), status, "{prompt}");
            assert_eq!(r.headers()["retry-after"], retry, "{prompt}");
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"]["code"], code, "{v}");
        }
    }
}

#[tokio::test]
async fn streams_that_fail_midway_end_with_response_failed() {
    let (_vertex, proxy) = setup("").await;
    for (prompt, code) in [
        ("OVERLOAD MIDSTREAM", "overloaded_error"),
        ("CUTOFF", "bad_upstream_response"),
    ] {
        let req = json!({"model": MODEL, "input": prompt, "stream": true});
        let (status, events, _) = proxy.post_stream("/v1/responses", &req).await;
        assert_eq!(status, 200);
        check_stream(&events).unwrap();
        let n = events.len();
        assert_eq!(events[n - 2]["type"], "error", "{prompt}");
        assert_eq!(events[n - 2]["error"]["code"], code, "{prompt}");
        assert_eq!(events[n - 1]["type"], "response.failed");
        let chat = json!({"model": MODEL, "stream": true, "messages": [{"role": "user", "content": prompt}]});
        let raw = chat_stream_raw(&proxy, &chat).await;
        assert!(raw.contains(code), "{prompt}: {raw}");
    }
}

/// OpenCode's client library against Claude: a plain call and a streamed
/// tool loop with thinking (`reasoning_effort`).
#[tokio::test]
async fn vercel_ai_sdk_with_thinking() {
    let Some(dir) = node_dir() else { return };
    let (vertex, proxy) = setup("").await;
    let v = run_client(
        "node",
        &dir.join("ai-sdk.mjs"),
        &proxy.url,
        &[("MODEL", MODEL), ("REASONING_EFFORT", "low")],
    )
    .await;
    assert_eq!(v["plain"], "Hello from Claude", "{v}");
    assert_eq!(v["calls"], json!(["Paris"]), "{v}");
    assert_eq!(v["steps"], json!(["tool-calls", "stop"]), "{v}");
    assert_eq!(v["streamed"], "Let me check.Results: 18C in Paris", "{v}");
    assert!(
        v["reasoning"][0]
            .as_str()
            .unwrap()
            .starts_with("Thinking about"),
        "{v}"
    );
    assert!(
        !vertex.claude_replayed().is_empty(),
        "the thinking went back to Claude"
    );
}
