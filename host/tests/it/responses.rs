//! `POST /v1/responses` through the openresponses translator.

use crate::spec::{check_response, check_stream};
use crate::support::*;
use serde_json::{Value, json};
use std::time::Duration;

#[tokio::test]
async fn non_stream_answer_is_spec_valid_and_keeps_unknown_fields() {
    let up = FakeUpstream::start().await;
    let proxy = TestProxy::start(&single(&up.base_url)).await;
    let (status, headers, body) = proxy
        .post("/v1/responses", &json!({"model": "qwen3", "input": "hi"}))
        .await;
    assert_eq!(status, 200, "{body}");
    check_response(&body).unwrap();
    assert_eq!(body["output"][0]["content"][0]["text"], "Hello from qwen3");
    assert_eq!(body["id"], "resp_upstream_1", "the upstream's id is kept");
    assert_eq!(
        body["x_vendor"],
        json!({"kept": true}),
        "unknown response field kept"
    );
    assert_eq!(body["usage"]["input_tokens_details"]["cached_tokens"], 1);
    assert_eq!(headers["x-upstream-request-id"], "req_fake_1");
    let got = up.last();
    assert_eq!(
        (got.method.as_str(), got.path.as_str()),
        ("POST", "/v1/responses")
    );
    assert_eq!(got.headers["content-type"], "application/json");
}

#[tokio::test]
async fn request_fields_arrive_verbatim_including_unknown_ones() {
    let up = FakeUpstream::start().await;
    let proxy = TestProxy::start(&single(&up.base_url)).await;
    let request = json!({
        "model": "qwen3",
        "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
        "instructions": "be brief",
        "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        "temperature": 0.25,
        "x_custom": {"nested": [1, {"deep": null}], "float": 1.5e-7},
        "metadata": {"k": "v"}
    });
    let (status, _, body) = proxy.post("/v1/responses", &request).await;
    assert_eq!(status, 200, "{body}");
    let got = up.last();
    assert_eq!(got.body, request, "the upstream got what the client sent");
    assert_eq!(
        got.raw,
        serde_json::to_vec(&request).unwrap(),
        "byte for byte: numbers, order and unknown fields untouched"
    );
}

#[tokio::test]
async fn model_is_rewritten_per_config_and_echoed_as_sent() {
    let up = FakeUpstream::start().await;
    let config = format!(
        "{}\n[backends.model_map]\nqwen3 = \"qwen3:8b-instruct\"\n",
        single(&up.base_url)
    );
    let proxy = TestProxy::start(&config).await;
    let (status, _, body) = proxy
        .post("/v1/responses", &json!({"model": "qwen3", "input": "hi"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(up.last().body["model"], "qwen3:8b-instruct");
    assert_eq!(
        body["model"], "qwen3",
        "the client sees the name it asked for"
    );
    assert_eq!(
        body["output"][0]["content"][0]["text"],
        "Hello from qwen3:8b-instruct"
    );
}

#[tokio::test]
async fn openai_only_reasoning_effort_is_mapped_for_strict_servers() {
    let up = FakeUpstream::start().await;
    let proxy = TestProxy::start(&single(&up.base_url)).await;
    let (status, _, body) = proxy
        .post(
            "/v1/responses",
            &json!({"model": "m", "input": "hi", "reasoning": {"effort": "minimal"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(up.last().body["reasoning"]["effort"], "low");
    assert_eq!(
        body["reasoning"]["effort"], "low",
        "echoed in OpenResponses terms"
    );
}

#[tokio::test]
async fn stream_is_spec_valid_renumbered_and_ends_with_done() {
    let up = FakeUpstream::start().await;
    let proxy = TestProxy::start(&single(&up.base_url)).await;
    let (status, events, done) = proxy
        .post_stream(
            "/v1/responses",
            &json!({"model": "qwen3", "input": "hi", "stream": true}),
        )
        .await;
    assert_eq!(status, 200);
    check_stream(&events).unwrap();
    assert!(done, "data: [DONE] follows the terminal event");
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    let text: String = events
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    assert_eq!(text, "Hello from qwen3");
    let last = events.last().unwrap();
    assert_eq!(last["response"]["x_vendor"], json!({"kept": true}));
    assert_eq!(last["response"]["usage"]["total_tokens"], 8);
    assert_eq!(
        events[4]["x_vendor"], "event-extra",
        "unknown event field kept"
    );
    // Every snapshot carries the same id.
    for e in events.iter().filter(|e| e.get("response").is_some()) {
        assert_eq!(e["response"]["id"], "resp_upstream_1");
    }
    assert_eq!(up.last().body["stream"], true);
}

#[tokio::test]
async fn stream_cut_off_midway_ends_with_response_failed() {
    let up = FakeUpstream::start().await;
    let events = text_stream_events("m", "one two three");
    up.script([Reply::Sse {
        chunks: sse_body(&events[..6]),
        delay: Duration::ZERO,
        then_hang: false,
    }]);
    let proxy = TestProxy::start(&single(&up.base_url)).await;
    let (status, events, done) = proxy
        .post_stream(
            "/v1/responses",
            &json!({"model": "m", "input": "hi", "stream": true}),
        )
        .await;
    assert_eq!(status, 200);
    check_stream(&events).unwrap();
    let n = events.len();
    assert_eq!(events[n - 2]["type"], "error");
    assert_eq!(events[n - 2]["error"]["code"], "bad_upstream_response");
    assert_eq!(events[n - 1]["type"], "response.failed");
    let failed = &events[n - 1]["response"];
    assert_eq!(failed["status"], "failed");
    assert!(
        failed["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ended before"),
        "{failed}"
    );
    assert!(done);
}

#[tokio::test]
async fn stream_idle_upstream_times_out_with_a_terminal_event() {
    let up = FakeUpstream::start().await;
    let events = text_stream_events("m", "one two");
    up.script([Reply::Sse {
        chunks: sse_body(&events[..4]),
        delay: Duration::ZERO,
        then_hang: true,
    }]);
    let config = format!("{}idle_timeout_secs = 0.3\n", single(&up.base_url));
    let proxy = TestProxy::start(&config).await;
    let started = std::time::Instant::now();
    let (_, events, _) = proxy
        .post_stream(
            "/v1/responses",
            &json!({"model": "m", "input": "hi", "stream": true}),
        )
        .await;
    assert!(started.elapsed() < Duration::from_secs(5));
    check_stream(&events).unwrap();
    let last = events.last().unwrap();
    assert_eq!(last["type"], "response.failed");
    assert_eq!(last["response"]["error"]["code"], "upstream_timeout");
}

#[tokio::test]
async fn upstream_error_event_becomes_error_then_response_failed() {
    let up = FakeUpstream::start().await;
    let events = text_stream_events("m", "x");
    let mut chunks = sse_body(&events[..2]);
    // OpenAI's flat error-event shape.
    chunks.push(
        "event: error\ndata: {\"type\":\"error\",\"sequence_number\":2,\"code\":\"rate_limit_exceeded\",\"message\":\"slow down\",\"param\":null}\n\n".into(),
    );
    up.script([Reply::Sse {
        chunks,
        delay: Duration::ZERO,
        then_hang: false,
    }]);
    let proxy = TestProxy::start(&single(&up.base_url)).await;
    let (_, events, _) = proxy
        .post_stream(
            "/v1/responses",
            &json!({"model": "m", "input": "hi", "stream": true}),
        )
        .await;
    check_stream(&events).unwrap();
    let n = events.len();
    assert_eq!(events[n - 2]["error"]["code"], "rate_limit_exceeded");
    assert_eq!(events[n - 2]["error"]["message"], "slow down");
    assert_eq!(
        events[n - 1]["response"]["error"]["code"],
        "rate_limit_exceeded"
    );
    assert_eq!(
        events.iter().filter(|e| e["type"] == "error").count(),
        1,
        "one error event only"
    );
}

#[tokio::test]
async fn upstream_answering_a_stream_request_with_json_is_replayed_as_a_stream() {
    let up = FakeUpstream::start().await;
    up.script([Reply::Json(
        200,
        response_object("m", "completed", "whole answer"),
        vec![],
    )]);
    let proxy = TestProxy::start(&single(&up.base_url)).await;
    let (status, events, done) = proxy
        .post_stream(
            "/v1/responses",
            &json!({"model": "m", "input": "hi", "stream": true}),
        )
        .await;
    assert_eq!(status, 200);
    check_stream(&events).unwrap();
    assert!(done);
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "response.output_text.delta" && e["delta"] == "whole answer")
    );
    assert_eq!(events.last().unwrap()["type"], "response.completed");
}

#[tokio::test]
async fn routing_first_matching_backend_wins() {
    let (a, b, c) = (
        FakeUpstream::start().await,
        FakeUpstream::start().await,
        FakeUpstream::start().await,
    );
    let config = format!(
        r#"
[[backends]]
name = "a"
kind = "openresponses"
base_url = "{}"
models = ["gpt-4o-mini"]

[[backends]]
name = "b"
kind = "openresponses"
base_url = "{}"
models = ["gpt-*", "o[0-9]*"]

[[backends]]
name = "c"
kind = "openresponses"
base_url = "{}"
models = ["*"]
"#,
        a.base_url, b.base_url, c.base_url
    );
    let proxy = TestProxy::start(&config).await;
    for model in ["gpt-4o-mini", "gpt-5", "o3", "qwen3"] {
        let (status, _, body) = proxy
            .post("/v1/responses", &json!({"model": model, "input": "hi"}))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let models = |f: &FakeUpstream| -> Vec<String> {
        f.received()
            .iter()
            .map(|r| r.body["model"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(models(&a), ["gpt-4o-mini"]);
    assert_eq!(models(&b), ["gpt-5", "o3"]);
    assert_eq!(models(&c), ["qwen3"]);
}

#[tokio::test]
async fn unrouted_model_is_404_model_not_found() {
    let up = FakeUpstream::start().await;
    let config = single(&up.base_url).replace("[\"*\"]", "[\"gemini-*\"]");
    let proxy = TestProxy::start(&config).await;
    let (status, _, body) = proxy
        .post("/v1/responses", &json!({"model": "gpt-5", "input": "hi"}))
        .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "model_not_found");
    assert_eq!(body["error"]["param"], "model");
    assert!(body["error"]["message"].as_str().unwrap().contains("gpt-5"));
    assert!(up.received().is_empty());
}

#[tokio::test]
async fn client_auth_when_a_key_is_set() {
    let up = FakeUpstream::start().await;
    let proxy = TestProxy::start_with_key(&single(&up.base_url), Some("s3cret-key")).await;
    let url = format!("{}/v1/responses", proxy.url);
    let body = json!({"model": "m", "input": "hi"});
    let cases = [
        (None, 401),
        (Some("Bearer wrong"), 401),
        (Some("s3cret-key"), 401),
        (Some("Bearer s3cret-key"), 200),
    ];
    for (auth, want) in cases {
        let mut req = proxy.http.post(&url).json(&body);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), want, "{auth:?}");
        if want == 401 {
            assert_eq!(r.headers()["www-authenticate"], "Bearer");
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"]["type"], "authentication_error");
            assert_eq!(v["error"]["code"], "invalid_api_key");
            assert!(!v.to_string().contains("s3cret"), "the key is never echoed");
        }
    }
    let r = proxy
        .http
        .get(format!("{}/v1/models", proxy.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "/v1/models is authenticated too");
    let r = proxy
        .http
        .get(format!("{}/healthz", proxy.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "/healthz never needs auth");
    assert_eq!(
        up.received().len(),
        1,
        "only the authenticated request went upstream"
    );
    assert!(
        up.last().headers.get("authorization").is_none(),
        "the client's key is never forwarded"
    );
}

#[tokio::test]
async fn upstream_credentials_come_from_config_not_the_client() {
    let up = FakeUpstream::start().await;
    let key_file = std::env::temp_dir().join(format!("llmproxy-it-key-{}", std::process::id()));
    std::fs::write(&key_file, "sk-up-987654\n").unwrap();
    let config = format!(
        "{}auth = {{ bearer_file = {:?} }}\n[backends.headers]\nOpenAI-Organization = \"org-1\"\n",
        single(&up.base_url),
        key_file.display().to_string()
    );
    let proxy = TestProxy::start_with_key(&config, Some("client-key")).await;
    let r = proxy
        .http
        .post(format!("{}/v1/responses", proxy.url))
        .header("authorization", "Bearer client-key")
        .json(&json!({"model": "m", "input": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let got = up.last();
    assert_eq!(got.headers["authorization"], "Bearer sk-up-987654");
    assert_eq!(got.headers["openai-organization"], "org-1");
    // An upstream error quoting the key never shows it to the client.
    up.script([Reply::Json(
        401,
        json!({"error": {"message": "Incorrect API key provided: sk-up-987654.", "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}}),
        vec![],
    )]);
    let r = proxy
        .http
        .post(format!("{}/v1/responses", proxy.url))
        .header("authorization", "Bearer client-key")
        .json(&json!({"model": "m", "input": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let text = r.text().await.unwrap();
    assert!(!text.contains("sk-up-987654"), "{text}");
    assert!(text.contains("[redacted]"), "{text}");
}

#[tokio::test]
async fn healthz_and_models_lists_real_ids_never_globs() {
    let up = FakeUpstream::start().await;
    let hangs = FakeUpstream::start().await;
    hangs.script([Reply::Hang]);
    let vertex = crate::fake_vertex::FakeVertex::start().await;
    // Vertex serves the Gemini and Claude globs; its config block comes last.
    let vertex_block = vertex
        .config("")
        .replace("models = [\"*\"]", "models = [\"gemini-*\", \"claude-*\"]");
    let config = format!(
        r#"
[[backends]]
name = "a"
kind = "openresponses"
base_url = "{0}"
models = ["qwen3", "llama-*"]

[[backends]]
name = "b"
kind = "openai"
base_url = "{0}"
auth = "none"
models = ["gpt-4o*", "qwen3", "fast"]
model_map = {{ fast = "gpt-4o-mini" }}

[[backends]]
name = "listed"
kind = "openresponses"
base_url = "{0}"
models = ["o*", "llama-*"]
model_list = ["o4-mini", "o3", "llama-3"]

[[backends]]
name = "down"
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
auth = "none"
models = ["mistral-*", "mistral-small"]

[[backends]]
name = "hangs"
kind = "openai"
base_url = "{2}"
auth = "none"
models = ["slow-*", "slow-1"]

{1}"#,
        up.base_url, vertex_block, hangs.base_url
    );
    let proxy = TestProxy::start(&config).await;
    let r = proxy
        .http
        .get(format!("{}/healthz", proxy.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let list = || async {
        let v: Value = proxy
            .http
            .get(format!("{}/v1/models", proxy.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["object"], "list");
        assert!(
            v["data"]
                .as_array()
                .unwrap()
                .iter()
                .all(|m| m["object"] == "model")
        );
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["id"].as_str().unwrap().to_string(),
                    m["owned_by"].as_str().unwrap().to_string(),
                )
            })
            .collect::<Vec<_>>()
    };
    let started = std::time::Instant::now();
    let ids = list().await;
    // An upstream that never answers delays the list a few seconds, no more.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    let ids: Vec<(&str, &str)> = ids.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(
        ids,
        [
            // Literal names; the upstream lists no llama model.
            ("qwen3", "a"),
            // Its `qwen3` is served by "a" (first match); its mapped name
            // and the upstream's ids matching its glob.
            ("fast", "b"),
            ("gpt-4o", "b"),
            ("gpt-4o-mini", "b"),
            // The configured list, without what another backend serves.
            ("o4-mini", "listed"),
            ("o3", "listed"),
            // Upstreams that cannot be listed: their literal names only.
            ("mistral-small", "down"),
            ("slow-1", "hangs"),
            // Vertex AI's publisher lists (two pages of Google's).
            ("gemini-2.5-pro", "vertex"),
            ("gemini-2.5-flash", "vertex"),
            ("gemini-3-pro-preview", "vertex"),
            ("claude-sonnet-4-5", "vertex"),
            ("claude-opus-4-1", "vertex"),
        ]
    );
    // The lists are cached: asking again asks no upstream.
    let hits = vertex.hits().len();
    let listed = up.received().len();
    list().await;
    assert_eq!((vertex.hits().len(), up.received().len()), (hits, listed));
    assert!(
        up.received()
            .iter()
            .all(|r| r.method == "GET" && r.path == "/v1/models"),
        "{:?}",
        up.received().iter().map(|r| &r.path).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn upstream_4xx_and_5xx_pass_through_with_status_and_message() {
    let up = FakeUpstream::start().await;
    let proxy = TestProxy::start(&single(&up.base_url)).await;
    // The strict fake rejects an effort outside the OpenResponses enum.
    let (status, _, body) = proxy
        .post(
            "/v1/responses",
            &json!({"model": "m", "input": "hi", "reasoning": {"effort": "extreme"}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["error"]["message"],
        "invalid reasoning.effort \"extreme\""
    );
    assert_eq!(body["error"]["param"], "reasoning.effort");
    assert_eq!(body["error"]["type"], "invalid_request_error");

    up.script([
        Reply::Json(
            429,
            json!({"error": {"message": "You exceeded your current quota.", "type": "insufficient_quota", "param": null, "code": "insufficient_quota"}}),
            vec![("retry-after", "7")],
        ),
        Reply::Raw(503, "text/html", "<html>upstream overloaded</html>".into()),
    ]);
    let r = proxy
        .http
        .post(format!("{}/v1/responses", proxy.url))
        .json(&json!({"model": "m", "input": "hi", "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        429,
        "a streaming request fails before the stream starts"
    );
    assert_eq!(r.headers()["retry-after"], "7");
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["error"],
        json!({"message": "You exceeded your current quota.", "type": "insufficient_quota", "param": null, "code": "insufficient_quota"})
    );
    let (status, _, body) = proxy
        .post("/v1/responses", &json!({"model": "m", "input": "hi"}))
        .await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["type"], "overloaded_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("upstream overloaded")
    );
}

#[tokio::test]
async fn upstream_unreachable_is_502_and_slow_upstream_is_504() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/v1", closed.local_addr().unwrap());
    drop(closed);
    let proxy = TestProxy::start(&single(&dead)).await;
    for stream in [false, true] {
        let (status, _, body) = proxy
            .post(
                "/v1/responses",
                &json!({"model": "m", "input": "hi", "stream": stream}),
            )
            .await;
        assert_eq!(status, 502, "{body}");
        assert_eq!(body["error"]["code"], "upstream_unreachable");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("local"),
            "{body}"
        );
    }

    let up = FakeUpstream::start().await;
    up.script([Reply::Hang]);
    let config = format!("{}first_byte_timeout_secs = 0.3\n", single(&up.base_url));
    let proxy = TestProxy::start(&config).await;
    let started = std::time::Instant::now();
    let (status, _, body) = proxy
        .post("/v1/responses", &json!({"model": "m", "input": "hi"}))
        .await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error"]["code"], "upstream_timeout");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn bad_requests_get_openai_shaped_4xx() {
    let up = FakeUpstream::start().await;
    let config = format!("[server]\nmax_body_mib = 1\n{}", single(&up.base_url));
    let proxy = TestProxy::start(&config).await;
    let (s, v) = proxy
        .post_raw("/v1/responses", b"{\"model\": \"m\", ".to_vec())
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_json")),
        "{v}"
    );
    let (s, v) = proxy.post_raw("/v1/responses", b"[1, 2]".to_vec()).await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("JSON object")
    );
    let (s, v) = proxy
        .post_raw("/v1/responses", br#"{"input": "hi"}"#.to_vec())
        .await;
    assert_eq!(
        (s, v["error"]["param"].as_str()),
        (400, Some("model")),
        "{v}"
    );
    let (s, v) = proxy
        .post_raw("/v1/responses", br#"{"model": 7, "input": "hi"}"#.to_vec())
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid type"),
        "{v}"
    );
    let big = format!(
        r#"{{"model":"m","input":"{}"}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    let (s, v) = proxy.post_raw("/v1/responses", big.into_bytes()).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (413, Some("request_too_large")),
        "{v}"
    );
    let r = proxy
        .http
        .get(format!("{}/v2/nothing", proxy.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/v2/nothing")
    );
    for e in ["message", "type", "param", "code"] {
        assert!(v["error"].get(e).is_some(), "error.{e} present");
    }
    assert!(up.received().is_empty(), "nothing bad reached the upstream");
}

#[tokio::test]
async fn translator_limits_fail_only_that_request() {
    let up = FakeUpstream::start().await;
    // A budget of a few ms cannot parse a 12 MB body of 300 000 small
    // values inside the sandbox.
    let config = format!(
        "[translators]\ncall_timeout_ms = 1\n[server]\nmax_body_mib = 64\n{}",
        single(&up.base_url)
    );
    let proxy = TestProxy::start(&config).await;
    let big = json!({"model": "m", "input": "x".repeat(12 * 1024 * 1024), "x_many": vec![[1, 2]; 100_000]});
    let (status, _, body) = proxy.post("/v1/responses", &big).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "translator_error");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("openresponses") && msg.contains("time limit"),
        "{msg}"
    );
    let (status, _, body) = proxy
        .post("/v1/responses", &json!({"model": "m", "input": "hi"}))
        .await;
    assert_eq!(status, 200, "the proxy keeps serving: {body}");

    let config = format!(
        "[translators]\nmemory_limit_mib = 8\n[server]\nmax_body_mib = 64\n{}",
        single(&up.base_url)
    );
    let proxy = TestProxy::start(&config).await;
    // More than the memory limit can map: refused before it runs (a
    // translator that blows its limit anyway is in sandbox.rs).
    let (status, _, body) = proxy.post("/v1/responses", &big).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "request_too_large");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("8.0 MiB (translators.memory_limit_mib)"),
        "{msg}"
    );
    let (status, _, _) = proxy
        .post("/v1/responses", &json!({"model": "m", "input": "hi"}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        up.received().len(),
        2,
        "failed translations sent nothing upstream"
    );
}

#[tokio::test]
async fn bad_settings_are_rejected_at_startup() {
    let up = FakeUpstream::start().await;
    let config = format!(
        "{}[backends.settings]\nprojcet = \"x\"\n",
        single(&up.base_url)
    );
    let err = llmproxy::Proxy::new(llmproxy::Config::from_toml(&config).unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("projcet") && err.contains("local"), "{err}");
}

#[tokio::test]
async fn real_openai_client_non_stream_and_stream() {
    use async_openai::types::responses::{CreateResponseArgs, ResponseStreamEvent};
    let up = FakeUpstream::start().await;
    let proxy = TestProxy::start(&single(&up.base_url)).await;
    let client = openai_client(&proxy.url);

    let request = CreateResponseArgs::default()
        .model("qwen3")
        .input("hi")
        .build()
        .unwrap();
    let response = client.responses().create(request).await.unwrap();
    assert_eq!(response.output_text().as_deref(), Some("Hello from qwen3"));

    let request = CreateResponseArgs::default()
        .model("qwen3")
        .input("hi")
        .stream(true)
        .build()
        .unwrap();
    let mut stream = client.responses().create_stream(request).await.unwrap();
    let mut text = String::new();
    let mut completed = false;
    while let Some(event) = futures_util::StreamExt::next(&mut stream).await {
        match event.unwrap() {
            ResponseStreamEvent::ResponseOutputTextDelta(d) => text.push_str(&d.delta),
            ResponseStreamEvent::ResponseCompleted(_) => completed = true,
            _ => {}
        }
    }
    assert_eq!(text, "Hello from qwen3");
    assert!(completed);
}

#[tokio::test]
async fn busy_translators_mean_503_with_retry_after() {
    let up = FakeUpstream::start().await;
    up.script([Reply::Hang]);
    let config = format!("[translators]\nmax_instances = 1\n{}", single(&up.base_url));
    let proxy = TestProxy::start(&config).await;
    let http = proxy.http.clone();
    let url = format!("{}/v1/responses", proxy.url);
    let first = tokio::spawn(async move {
        http.post(url)
            .json(&json!({"model": "m", "input": "hi"}))
            .send()
            .await
    });
    // The first request holds the only instance while the upstream hangs.
    while up.received().is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (status, headers, body) = proxy
        .post("/v1/responses", &json!({"model": "m", "input": "hi"}))
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(body["error"]["code"], "overloaded");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_instances")
    );
    first.abort();
}
