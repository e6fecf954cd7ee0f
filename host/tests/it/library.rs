//! llmproxy as a library: the same scenarios through HTTP and through the
//! in-process API give the same results, for every backend kind; and the
//! crate's examples run as documented.

use crate::fake_vertex::FakeVertex;
use crate::support::*;
use futures_util::StreamExt;
use llmproxy::api::chat::ChatRequest;
use llmproxy::api::responses::CreateResponse;
use serde_json::{Value, json};

/// Drops what differs between two runs of the same request: ids, times,
/// and nulls (a typed value leaves out what the JSON spelled `null`).
fn normalize(v: &Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(k, v)| {
                    !v.is_null()
                        && !matches!(
                            k.as_str(),
                            "id" | "item_id"
                                | "call_id"
                                | "created_at"
                                | "completed_at"
                                | "created"
                        )
                })
                .map(|(k, v)| (k.clone(), normalize(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(normalize).collect()),
        other => other.clone(),
    }
}

fn weather() -> Value {
    json!({"type": "function", "name": "get_weather", "description": "Weather by city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}})
}

/// The shared scenarios: Responses requests, then Chat requests.
fn scenarios(model: &str) -> (Vec<Value>, Vec<Value>) {
    let f = &weather();
    let responses = vec![
        json!({"model": model, "instructions": "Be brief.", "input": "Hi", "x_unknown_field": {"kept": true}}),
        json!({"model": model, "input": [{"role": "user", "content": "Weather in Paris?"}], "tools": [f]}),
        json!({"model": model, "input": [
            {"role": "user", "content": "Weather in Paris?"},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"}], "tools": [f]}),
    ];
    let chat_tool = json!({"type": "function", "function": {"name": f["name"], "description": f["description"], "parameters": f["parameters"]}});
    let chat = vec![
        json!({"model": model, "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]}),
        json!({"model": model, "messages": [{"role": "user", "content": "Weather in Paris?"}], "tools": [chat_tool]}),
        json!({"model": model, "tools": [chat_tool], "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]}),
    ];
    (responses, chat)
}

/// Runs every scenario, with and without streaming, over HTTP and in
/// process, and checks both give the same.
async fn parity(toml: &str, model: &str) {
    let http = TestProxy::start(toml).await;
    let lib = llmproxy::Proxy::from_toml(toml).await.unwrap();
    let (responses, chats) = scenarios(model);
    for request in &responses {
        let (status, _, over_http) = http.post("/v1/responses", request).await;
        assert_eq!(status, 200, "{over_http}");
        let typed: CreateResponse = serde_json::from_value(request.clone()).unwrap();
        let in_process = lib.create_response(typed.clone()).await.unwrap();
        let in_process = serde_json::to_value(&in_process).unwrap();
        assert_eq!(
            normalize(&in_process),
            normalize(&over_http),
            "{model}: {request}"
        );
        assert!(
            !in_process["output"].as_array().unwrap().is_empty(),
            "{in_process}"
        );

        let mut streamed = request.clone();
        streamed["stream"] = json!(true);
        let (status, events, _) = http.post_stream("/v1/responses", &streamed).await;
        assert_eq!(status, 200);
        let typed_events: Vec<Value> = lib
            .stream_response(typed)
            .await
            .unwrap()
            .map(|e| serde_json::to_value(&e).unwrap())
            .collect()
            .await;
        assert_eq!(
            normalize(&json!(typed_events)),
            normalize(&json!(events)),
            "{model}: streamed {request}"
        );
        assert_eq!(typed_events.last().unwrap()["type"], "response.completed");
    }
    for request in &chats {
        let (status, _, over_http) = http.post("/v1/chat/completions", request).await;
        assert_eq!(status, 200, "{over_http}");
        let typed: ChatRequest = serde_json::from_value(request.clone()).unwrap();
        let in_process = lib.create_chat_completion(typed.clone()).await.unwrap();
        assert_eq!(
            normalize(&serde_json::to_value(&in_process).unwrap()),
            normalize(&over_http),
            "{model}: {request}"
        );

        let mut streamed = request.clone();
        streamed["stream"] = json!(true);
        streamed["stream_options"] = json!({"include_usage": true});
        let typed: ChatRequest = serde_json::from_value(streamed.clone()).unwrap();
        let raw = chat_stream_raw(&http, &streamed).await;
        let over_http: Vec<Value> = raw
            .split("\n\n")
            .filter_map(|b| b.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        let chunks: Vec<Value> = lib
            .stream_chat_completion(typed)
            .await
            .unwrap()
            .map(|c| serde_json::to_value(c.unwrap()).unwrap())
            .collect()
            .await;
        assert_eq!(
            normalize(&json!(chunks)),
            normalize(&json!(over_http)),
            "{model}: streamed {request}"
        );
    }
}

#[tokio::test]
async fn http_and_in_process_agree_for_openresponses_and_openai() {
    let up = FakeUpstream::start().await;
    let base = &up.base_url;
    parity(
        &format!("[[backends]]\nname = \"or\"\nkind = \"openresponses\"\nbase_url = \"{base}\"\nmodels = [\"*\"]\n"),
        "m",
    )
    .await;
    parity(
        &format!("[[backends]]\nname = \"oai\"\nkind = \"openai\"\nbase_url = \"{base}\"\nauth = \"none\"\nmodels = [\"*\"]\n"),
        "m",
    )
    .await;
}

#[tokio::test]
async fn http_and_in_process_agree_for_gemini_and_claude_on_vertex() {
    let vertex = FakeVertex::start().await;
    parity(&vertex.config(""), "gemini-2.5-flash").await;
    parity(&vertex.config(""), "claude-sonnet-4-5@20250929").await;
}

#[tokio::test]
async fn in_process_errors_are_typed_and_unknown_fields_survive() {
    let up = FakeUpstream::start().await;
    let proxy = llmproxy::Proxy::from_toml(&format!(
        "[[backends]]\nname = \"or\"\nkind = \"openresponses\"\nbase_url = \"{}\"\nmodels = [\"m*\"]\n",
        up.base_url
    ))
    .await
    .unwrap();
    let request: CreateResponse =
        serde_json::from_value(json!({"model": "m", "input": "hi", "x_vendor_knob": 7})).unwrap();
    let response = proxy.create_response(request).await.unwrap();
    assert_eq!(
        up.last().body["x_vendor_knob"],
        7,
        "unknown request fields reach the upstream"
    );
    assert_eq!(response.output_text(), "Hello from m");
    assert!(
        response.extra.contains_key("x_vendor"),
        "unknown response fields reach the caller: {:?}",
        response.extra
    );

    let request: CreateResponse =
        serde_json::from_value(json!({"model": "other", "input": "hi"})).unwrap();
    let e = proxy.create_response(request).await.unwrap_err();
    assert!(
        matches!(&e, llmproxy::Error::ModelNotFound(m) if m == "other"),
        "{e:?}"
    );
    assert_eq!(e.kind(), llmproxy::ErrorKind::Client);

    up.script([Reply::Json(
        429,
        json!({"error": {"message": "slow down", "type": "rate_limit"}}),
        vec![("retry-after", "3")],
    )]);
    let request: CreateResponse =
        serde_json::from_value(json!({"model": "m", "input": "hi"})).unwrap();
    match proxy.create_response(request).await.unwrap_err() {
        e @ llmproxy::Error::Upstream {
            status: 429,
            retry_after: Some(3),
            ..
        } => {
            assert_eq!(e.kind(), llmproxy::ErrorKind::Upstream);
            assert_eq!(e.to_string(), "slow down");
        }
        other => panic!("{other:?}"),
    }

    // Shared across tasks; two proxies with different configs side by side.
    fn shareable<T: Send + Sync + Clone + 'static>() {}
    shareable::<llmproxy::Proxy>();
    fn sendable<T: Send + 'static>() {}
    sendable::<llmproxy::ResponseStream>();
    sendable::<llmproxy::ChatCompletionStream>();
    let other = llmproxy::Proxy::from_toml(
        "[[backends]]\nname = \"x\"\nkind = \"openresponses\"\nbase_url = \"http://127.0.0.1:9/v1\"\nmodels = [\"x*\"]\n",
    )
    .await
    .unwrap();
    assert_eq!(other.models(), vec![("x*".to_string(), "x".to_string())]);
    assert_eq!(proxy.models(), vec![("m*".to_string(), "or".to_string())]);
    let shared = proxy.clone();
    let task = tokio::spawn(async move {
        let request: CreateResponse =
            serde_json::from_value(json!({"model": "m2", "input": "hi"})).unwrap();
        shared
            .create_response(request)
            .await
            .map(|r| r.output_text())
    });
    assert_eq!(task.await.unwrap().unwrap(), "Hello from m2");
}

/// An example program built by `cargo test` (next to the binary); `None`
/// (skipped) outside CI when only this test target was built.
fn example(name: &str) -> Option<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_BIN_EXE_llmproxy")).with_file_name("examples");
    built(
        dir.join(name),
        "`cargo test` with all targets builds the examples",
    )
}

#[tokio::test]
async fn the_embedded_example_runs_its_tool_loop() {
    let Some(program) = example("embedded") else {
        return;
    };
    let up = FakeUpstream::start().await;
    let base_url = up.base_url.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(program)
            .env("UPSTREAM_BASE_URL", base_url)
            .env("MODEL", "m")
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout,
        "answer: Hello from m\ntool: get_weather({\"city\":\"Paris\"}) -> sunny, 21 C in Paris\nResults: sunny, 21 C in Paris\n"
    );
    let sent = up.received();
    assert_eq!(sent.len(), 3);
    assert_eq!(
        sent[2].body["messages"][2]["role"], "tool",
        "{}",
        sent[2].body
    );
}

#[tokio::test]
async fn the_mount_example_serves_the_proxy_beside_its_own_routes() {
    let Some(program) = example("mount") else {
        return;
    };
    let up = FakeUpstream::start().await;
    let dir = std::env::temp_dir().join(format!("llmproxy-it-mount-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("llmproxy.toml");
    std::fs::write(
        &config,
        format!("[[backends]]\nname = \"or\"\nkind = \"openresponses\"\nbase_url = \"{}\"\nmodels = [\"*\"]\n", up.base_url),
    )
    .unwrap();
    let mut child = std::process::Command::new(program)
        .env("LLMPROXY_CONFIG", &config)
        .env("APP_KEY", "app-secret")
        .env("LISTEN", "127.0.0.1:0")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).map(|_| line)
    })
    .await
    .unwrap()
    .unwrap();
    let line = line.trim_end();
    let url = line.strip_prefix("listening on ").unwrap().to_string();
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(no_tls())
        .build()
        .unwrap();
    let home = http.get(format!("{url}/")).send().await.unwrap();
    assert_eq!(home.text().await.unwrap(), "my application");
    let refused = http
        .get(format!("{url}/llm/v1/models"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401, "the proxy's routes need the key");
    let answer: Value = http
        .post(format!("{url}/llm/v1/responses"))
        .bearer_auth("app-secret")
        .json(&json!({"model": "m", "input": "hi"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["output"][0]["content"][0]["text"], "Hello from m");
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(dir);
}

/// Anthropic Messages in-process, on Claude (passthrough) and Gemini
/// (converted): the same answers as over HTTP, the stream's events adding
/// up to the whole answer, and token counts from the upstreams' counting
/// endpoints.
#[tokio::test]
async fn messages_through_the_library_and_http_agree() {
    use llmproxy::api::messages::MessagesRequest;
    use llmproxy::api::messages::stream::{Delta, StreamEvent};
    let vertex = FakeVertex::start().await;
    let toml = vertex.config("");
    let proxy = llmproxy::Proxy::from_toml(&toml).await.unwrap();
    let http = TestProxy::start(&toml).await;
    for model in ["claude-sonnet-4-5@20250929", "gemini-2.5-flash"] {
        let body = json!({"model": model, "max_tokens": 200, "system": "Be brief.",
            "messages": [{"role": "user", "content": "Weather in Paris?"}],
            "tools": [{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]});
        let request: MessagesRequest = serde_json::from_value(body.clone()).unwrap();
        let typed = proxy.create_message(request.clone()).await.unwrap();
        let (status, _, over_http) = http.post("/v1/messages", &body).await;
        assert_eq!(status, 200, "{over_http}");
        assert_eq!(
            normalize(&serde_json::to_value(&typed).unwrap()),
            normalize(&over_http),
            "{model}"
        );
        assert_eq!(typed.stop_reason.as_deref(), Some("tool_use"), "{model}");
        let mut events = proxy.stream_message(request.clone()).await.unwrap();
        let (mut first, mut last, mut json_parts) = (None, None, String::new());
        while let Some(event) = events.next().await {
            if let StreamEvent::ContentBlockDelta {
                delta: Delta::InputJsonDelta { partial_json },
                ..
            } = &event
            {
                json_parts.push_str(partial_json);
            }
            first.get_or_insert_with(|| event.name().to_string());
            last = Some(event.name().to_string());
        }
        assert_eq!(first.as_deref(), Some("message_start"), "{model}");
        assert_eq!(last.as_deref(), Some("message_stop"), "{model}");
        assert_eq!(
            serde_json::from_str::<Value>(&json_parts).unwrap(),
            json!({"city": "Paris"}),
            "{model}"
        );
        let count = proxy.count_message_tokens(&request).await.unwrap();
        assert!(
            count.input_tokens > 0 && !count.estimated,
            "{model}: {count:?}"
        );
    }
}
