//! OpenTelemetry traces (`[telemetry]`): what arrives at an OTLP/HTTP
//! collector in the test, decoded with the OpenTelemetry project's own
//! generated protobuf classes (Python `opentelemetry-proto`).

use crate::binary::{spawn, stop};
use crate::support::*;
use base64::Engine;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const KEY: &str = "tracing-client-key-0123456789abcdef";
const UPSTREAM_KEY: &str = "sk-upstream-secret-for-traces-0123456789";
const COLLECTOR_KEY: &str = "collector-secret-token-0123456789";
const PROMPT: &str = "PROMPT-CANARY-tell-nobody";
const COMPLETION: &str = "COMPLETION-CANARY-keep-quiet";
/// A client's trace context (sampled).
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";
/// A client's trace that it does not sample.
const UNSAMPLED: &str = "0af7651916cd43dd8448eb211c80319c";
/// Traces of a request that goes away, and of one without the key.
const CANCELLED: &str = "11111111111111111111111111111111";
const NO_KEY: &str = "22222222222222222222222222222222";

/// An OTLP/HTTP collector: keeps each export's body and headers.
#[derive(Clone, Default)]
struct Collector {
    exports: Arc<Mutex<Vec<(http::HeaderMap, axum::body::Bytes)>>>,
}

impl Collector {
    async fn start() -> (Collector, String) {
        let collector = Collector::default();
        let kept = collector.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(
                move |headers: http::HeaderMap, body: axum::body::Bytes| async move {
                    kept.exports.lock().unwrap().push((headers, body));
                    ""
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (collector, format!("http://{addr}"))
    }

    /// Every span received, decoded, with its resource's attributes.
    fn spans(&self) -> Option<(Vec<Span>, Vec<Value>)> {
        let (python, dir) = python_venv()?;
        let exports = self.exports.lock().unwrap().clone();
        let tmp = std::env::temp_dir().join(format!(
            "llmproxy-otlp-{}-{}",
            std::process::id(),
            exports.len()
        ));
        std::fs::create_dir_all(&tmp).unwrap();
        let mut files = Vec::new();
        for (i, (headers, body)) in exports.iter().enumerate() {
            assert_eq!(headers["content-type"], "application/x-protobuf");
            let file = tmp.join(format!("{i}.pb"));
            std::fs::write(&file, body).unwrap();
            files.push(file);
        }
        let out = std::process::Command::new(python)
            .arg(dir.join("otlp_decode.py"))
            .args(&files)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let decoded: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        let mut spans = Vec::new();
        let mut resources = Vec::new();
        for export in &decoded {
            for rs in export["resourceSpans"].as_array().unwrap() {
                resources.push(rs["resource"].clone());
                for ss in rs["scopeSpans"].as_array().unwrap() {
                    assert_eq!(ss["scope"]["name"], "llmproxy");
                    for span in ss["spans"].as_array().unwrap() {
                        spans.push(Span(span.clone()));
                    }
                }
            }
        }
        Some((spans, resources))
    }

    /// The raw bytes of every export, for secret scans.
    fn raw(&self) -> Vec<u8> {
        let exports = self.exports.lock().unwrap();
        exports.iter().flat_map(|(_, b)| b.to_vec()).collect()
    }
}

/// One decoded span (proto3 JSON: ids in base64).
#[derive(Debug, Clone)]
struct Span(Value);

fn hex_of(b64: &Value) -> String {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.as_str().unwrap_or_default())
        .unwrap();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Span {
    fn trace_id(&self) -> String {
        hex_of(&self.0["traceId"])
    }
    fn span_id(&self) -> String {
        hex_of(&self.0["spanId"])
    }
    fn parent(&self) -> Option<String> {
        self.0.get("parentSpanId").map(hex_of)
    }
    fn name(&self) -> &str {
        self.0["name"].as_str().unwrap()
    }
    fn kind(&self) -> &str {
        self.0["kind"].as_str().unwrap()
    }
    /// An attribute's value, as text.
    fn attr(&self, key: &str) -> Option<String> {
        let kv = self.0["attributes"]
            .as_array()?
            .iter()
            .find(|kv| kv["key"] == key)?;
        let v = &kv["value"];
        Some(
            match (v.get("stringValue"), v.get("intValue"), v.get("boolValue")) {
                (Some(s), _, _) => s.as_str().unwrap().to_string(),
                (_, Some(n), _) => n.as_str().unwrap().to_string(),
                (_, _, Some(b)) => b.to_string(),
                _ => panic!("unexpected value {v}"),
            },
        )
    }
    fn nanos(&self, field: &str) -> u128 {
        self.0[field].as_str().unwrap().parse().unwrap()
    }
}

/// A Chat Completion with `content` and known usage.
fn chat_answer(content: &str) -> Reply {
    Reply::Json(
        200,
        json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1767000000, "model": "gpt-4o-2024",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
        }),
        vec![],
    )
}

fn config(collector: &str, extra: &str, upstream: &str) -> String {
    format!(
        "[telemetry]\notlp_endpoint = \"{collector}\"\nservice_name = \"proxy-under-test\"\n{extra}\n\
         headers = {{ x-collector-key = {{ env = \"TEST_COLLECTOR_KEY\" }} }}\n\n\
         [[backends]]\nname = \"chat\"\nkind = \"openai\"\nbase_url = \"{upstream}\"\n\
         auth = {{ bearer_env = \"TEST_UPSTREAM_KEY\" }}\nmodels = [\"gpt-*\"]\n"
    )
}

/// Polls until `ready` holds (or 10 s).
async fn until(what: &str, ready: impl Fn() -> bool) {
    for _ in 0..500 {
        if ready() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn requests_are_traced_across_the_proxy_without_secrets_or_prompts() {
    if python_venv().is_none() {
        return;
    }
    let (collector, collector_url) = Collector::start().await;
    let up = FakeUpstream::start().await;
    // A long export interval: only the shutdown flush sends these spans.
    let toml = config(&collector_url, "export_interval_ms = 600000", &up.base_url);
    let dir = std::env::temp_dir().join(format!("llmproxy-tracing-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("llmproxy.toml");
    std::fs::write(&path, toml).unwrap();
    let mut proxy = spawn(
        &["--config", path.to_str().unwrap(), "-l", "127.0.0.1:0"],
        &[
            ("LLMPROXY_API_KEY", KEY),
            ("TEST_UPSTREAM_KEY", UPSTREAM_KEY),
            ("TEST_COLLECTOR_KEY", COLLECTOR_KEY),
        ],
    );
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(no_tls())
        .build()
        .unwrap();
    let post = |path: &str, body: Value, traceparent: Option<String>| {
        let mut r = http
            .post(format!("{}{path}", proxy.url))
            .bearer_auth(KEY)
            .json(&body);
        if let Some(tp) = traceparent {
            r = r
                .header("traceparent", tp)
                .header("tracestate", "vendor=opaque-value");
        }
        async move {
            let r = r.send().await.unwrap();
            let status = r.status().as_u16();
            let _ = r.text().await.unwrap();
            status
        }
    };
    let prompt = json!([{"role": "user", "content": PROMPT}]);
    up.script([
        chat_answer(COMPLETION),
        chat_answer(COMPLETION),
        chat_answer(COMPLETION),
        // An upstream failure quoting the credentials it was sent.
        Reply::Echo(
            500,
            "application/json",
            r#"{"error": {"message": "bad key {auth} / {bearer_url}"}}"#.into(),
        ),
        chat_answer(COMPLETION),
        // Never answered (request 6).
        Reply::Hang,
    ]);
    // 1. Chat (passed through to the Chat upstream) in the client's trace.
    let sampled = format!("00-{TRACE}-{PARENT}-01");
    let chat = json!({"model": "gpt-4o", "messages": prompt});
    assert_eq!(
        post("/v1/chat/completions", chat.clone(), Some(sampled)).await,
        200
    );
    // 2. Responses (through the openai translator), a trace of its own.
    let responses = json!({"model": "gpt-4o", "input": PROMPT, "instructions": PROMPT});
    assert_eq!(post("/v1/responses", responses, None).await, 200);
    // 3. A trace its caller does not sample.
    assert_eq!(
        post(
            "/v1/chat/completions",
            chat.clone(),
            Some(format!("00-{UNSAMPLED}-{PARENT}-00"))
        )
        .await,
        200
    );
    // 4. An upstream error.
    let status = post("/v1/chat/completions", chat.clone(), None).await;
    assert!(status >= 500, "{status}");
    // 5. A malformed traceparent (uppercase hex) starts a new trace.
    let bad = format!("00-{}-{PARENT}-01", TRACE.to_uppercase());
    assert_eq!(
        post("/v1/chat/completions", chat.clone(), Some(bad)).await,
        200
    );
    // 6. A client that gives up while the upstream has not answered.
    let gave_up = http
        .post(format!("{}/v1/chat/completions", proxy.url))
        .bearer_auth(KEY)
        .header("traceparent", format!("00-{CANCELLED}-{PARENT}-01"))
        .timeout(Duration::from_millis(500))
        .json(&json!({"model": "gpt-4o", "messages": prompt}))
        .send()
        .await;
    assert!(gave_up.is_err());
    // 7. A stream (the fake's own answer): its span ends with the stream.
    let mut streamed = chat;
    streamed["stream"] = json!(true);
    assert_eq!(post("/v1/chat/completions", streamed, None).await, 200);

    // 8. Without the key: answered 401, its trace context not taken.
    let r = http
        .post(format!("{}/v1/chat/completions", proxy.url))
        .header("traceparent", format!("00-{NO_KEY}-{PARENT}-01"))
        .json(&json!({"model": "gpt-4o", "messages": prompt}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let received = up.received();
    assert_eq!(received.len(), 7);
    // The caller's tracestate goes on with its trace, and only then.
    assert_eq!(received[0].headers["tracestate"], "vendor=opaque-value");
    assert!(received[1].headers.get("tracestate").is_none());
    let upstream_tp: Vec<String> = received
        .iter()
        .map(|r| r.headers["traceparent"].to_str().unwrap().to_string())
        .collect();
    // Nothing is exported before the interval or the shutdown.
    assert!(collector.exports.lock().unwrap().is_empty());
    let (code, _) = stop(&mut proxy, "-TERM");
    assert_eq!(code, Some(0));
    until("the shutdown flush", || {
        !collector.exports.lock().unwrap().is_empty()
    })
    .await;
    for (headers, _) in collector.exports.lock().unwrap().iter() {
        assert_eq!(headers["x-collector-key"], COLLECTOR_KEY);
    }
    let (spans, resources) = collector.spans().unwrap();
    let resource = resources[0].to_string();
    assert!(resource.contains("proxy-under-test"), "{resource}");

    // The client's trace: the request's span is the child of the client's
    // span, and the upstream saw the upstream call's span as its parent.
    let server: Vec<&Span> = spans
        .iter()
        .filter(|s| s.kind() == "SPAN_KIND_SERVER")
        .collect();
    assert_eq!(server.len(), 7, "one span per sampled request: {spans:#?}");
    let first = server
        .iter()
        .find(|s| s.trace_id() == TRACE)
        .expect("the request in the client's trace");
    assert_eq!(first.parent().as_deref(), Some(PARENT));
    assert_eq!(first.name(), "chat gpt-4o");
    for (key, value) in [
        ("gen_ai.operation.name", "chat"),
        ("gen_ai.request.model", "gpt-4o"),
        ("gen_ai.response.model", "gpt-4o"),
        ("gen_ai.provider.name", "openai"),
        ("gen_ai.usage.input_tokens", "11"),
        ("gen_ai.usage.output_tokens", "7"),
        ("http.route", "/v1/chat/completions"),
        ("http.response.status_code", "200"),
        ("llmproxy.backend", "chat"),
        ("llmproxy.route", "gpt-*"),
    ] {
        assert_eq!(first.attr(key).as_deref(), Some(value), "{key}: {first:?}");
    }
    let children: Vec<&Span> = spans
        .iter()
        .filter(|s| s.parent().as_deref() == Some(first.span_id().as_str()))
        .collect();
    let client = children
        .iter()
        .find(|s| s.kind() == "SPAN_KIND_CLIENT")
        .expect("the upstream call's span");
    assert_eq!(client.trace_id(), TRACE);
    assert_eq!(
        upstream_tp[0],
        format!("00-{TRACE}-{}-01", client.span_id())
    );
    assert_eq!(client.attr("http.request.method").as_deref(), Some("POST"));
    assert_eq!(client.attr("server.address").as_deref(), Some("127.0.0.1"));
    assert!(first.nanos("startTimeUnixNano") <= client.nanos("startTimeUnixNano"));
    assert!(client.nanos("endTimeUnixNano") <= first.nanos("endTimeUnixNano"));

    // The Responses request: a root span with translator spans under it.
    let second = server
        .iter()
        .find(|s| s.attr("http.route").as_deref() == Some("/v1/responses"))
        .unwrap();
    assert_eq!(second.parent(), None);
    assert_ne!(second.trace_id(), TRACE);
    let mut under: Vec<String> = spans
        .iter()
        .filter(|s| s.parent().as_deref() == Some(second.span_id().as_str()))
        .map(|s| s.name().to_string())
        .collect();
    under.sort();
    assert_eq!(under, ["POST", "translator request", "translator response"]);
    assert!(upstream_tp[1].starts_with(&format!("00-{}-", second.trace_id())));

    // Not sampled by its caller: nothing exported, the decision passed on.
    assert!(spans.iter().all(|s| s.trace_id() != UNSAMPLED));
    assert!(upstream_tp[2].starts_with(&format!("00-{UNSAMPLED}-")));
    assert!(upstream_tp[2].ends_with("-00"));

    // The failure: an error status, its class, and no message.
    let failed = server
        .iter()
        .find(|s| s.attr("http.response.status_code").as_deref() == Some("500"))
        .unwrap();
    assert_eq!(failed.0["status"]["code"], "STATUS_CODE_ERROR");
    assert_eq!(failed.attr("error.type").as_deref(), Some("500"));
    assert_eq!(
        failed.attr("llmproxy.upstream.error").as_deref(),
        Some("5xx")
    );

    // The malformed parent was ignored.
    assert_eq!(
        server
            .iter()
            .filter(|s| s.trace_id() != CANCELLED && (s.trace_id() == TRACE || s.parent().is_some()))
            .count(),
        1
    );
    assert!(!upstream_tp[4].contains(&TRACE.to_uppercase()));

    let stream = server
        .iter()
        .find(|s| s.attr("llmproxy.stream").as_deref() == Some("true"))
        .unwrap();
    assert_eq!(
        stream.attr("llmproxy.outcome").as_deref(),
        Some("completed")
    );
    assert!(stream.attr("llmproxy.time_to_first_token_us").is_some());

    // The request that went away: its upstream call is a span too (the
    // upstream was told of it), ended as cancelled.
    let gone = server.iter().find(|s| s.trace_id() == CANCELLED).unwrap();
    assert_eq!(
        gone.attr("http.response.status_code").as_deref(),
        Some("499")
    );
    let call = spans
        .iter()
        .find(|s| s.parent().as_deref() == Some(gone.span_id().as_str()))
        .unwrap();
    assert_eq!(call.kind(), "SPAN_KIND_CLIENT");
    assert_eq!(call.attr("error.type").as_deref(), Some("cancelled"));
    assert!(upstream_tp[5].contains(&call.span_id()));
    // The unauthenticated request: traced, but not in the trace it named.
    assert!(spans.iter().all(|s| s.trace_id() != NO_KEY));
    assert!(
        server
            .iter()
            .any(|s| s.attr("http.response.status_code").as_deref() == Some("401"))
    );

    // No secret in any form, and no prompt or completion text.
    let raw = collector.raw();
    let text = String::from_utf8_lossy(&raw);
    for secret in [
        UPSTREAM_KEY,
        KEY,
        COLLECTOR_KEY,
        "sk-upstream-secret",
        PROMPT,
        COMPLETION,
    ] {
        assert!(!text.contains(secret), "{secret} in an exported span");
    }
}

#[tokio::test]
async fn prompts_and_completions_are_recorded_only_when_the_operator_opts_in() {
    if python_venv().is_none() {
        return;
    }
    let (collector, collector_url) = Collector::start().await;
    let up = FakeUpstream::start().await;
    up.script([chat_answer(COMPLETION), chat_answer(COMPLETION)]);
    let dir = std::env::temp_dir().join(format!("llmproxy-tracing-lib-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (key_file, collector_file) = (dir.join("upstream.key"), dir.join("collector.key"));
    std::fs::write(&key_file, UPSTREAM_KEY).unwrap();
    std::fs::write(&collector_file, COLLECTOR_KEY).unwrap();
    let toml = config(
        &collector_url,
        "capture_content = true\nexport_interval_ms = 20",
        &up.base_url,
    )
    .replace(
        "env = \"TEST_COLLECTOR_KEY\"",
        &format!("file = {:?}", collector_file.display().to_string()),
    )
    .replace(
        "bearer_env = \"TEST_UPSTREAM_KEY\"",
        &format!("bearer_file = {:?}", key_file.display().to_string()),
    );
    let proxy = llmproxy::Proxy::from_toml(&toml).await.unwrap();
    let chat = proxy
        .create_chat_completion(
            serde_json::from_value(
                json!({"model": "gpt-4o", "messages": [{"role": "user", "content": PROMPT}]}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(chat.choices[0].message.content.as_deref(), Some(COMPLETION));
    let response = proxy
        .create_response(
            serde_json::from_value(json!({"model": "gpt-4o", "input": PROMPT})).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status.as_deref(), Some("completed"));
    proxy.flush_traces().await;
    let (spans, _) = collector.spans().unwrap();
    let server: Vec<&Span> = spans
        .iter()
        .filter(|s| s.kind() == "SPAN_KIND_SERVER")
        .collect();
    assert_eq!(server.len(), 2);
    for span in server {
        let input = span.attr("gen_ai.input.messages").unwrap();
        let output = span.attr("gen_ai.output.messages").unwrap();
        assert!(input.contains(PROMPT), "{input}");
        assert!(output.contains(COMPLETION), "{output}");
    }
    // The exporter's own counter.
    let metrics = proxy.metrics().render();
    assert!(
        metrics.contains(&format!(
            "llmproxy_trace_spans_total{{result=\"exported\"}} {}",
            spans.len()
        )),
        "{metrics}"
    );
    // Secrets stay out even so.
    let text = String::from_utf8_lossy(&collector.raw()).to_string();
    assert!(!text.contains(UPSTREAM_KEY) && !text.contains(COLLECTOR_KEY));
}

#[tokio::test]
async fn a_collector_that_hangs_or_is_gone_never_holds_a_request() {
    let up = FakeUpstream::start().await;
    // A collector that accepts and never answers.
    let hanging = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hanging_url = format!("http://{}", hanging.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = hanging.accept().await {
            held.push(socket);
        }
    });
    // And one that is not there at all.
    let gone = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gone_url = format!("http://{}", gone.local_addr().unwrap());
    drop(gone);
    for (collector, flush) in [(hanging_url, false), (gone_url, true)] {
        let toml = format!(
            "[telemetry]\notlp_endpoint = \"{collector}\"\nexport_interval_ms = 10\n\n\
             [[backends]]\nname = \"chat\"\nkind = \"openai\"\nbase_url = \"{}\"\nauth = \"none\"\nmodels = [\"gpt-*\"]\n",
            up.base_url
        );
        let proxy = llmproxy::Proxy::from_toml(&toml).await.unwrap();
        for _ in 0..20 {
            let request = serde_json::from_value(
                json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}),
            )
            .unwrap();
            tokio::time::timeout(
                Duration::from_secs(5),
                proxy.create_chat_completion(request),
            )
            .await
            .expect("the request is not held by the collector")
            .unwrap();
        }
        if flush {
            proxy.flush_traces().await;
            let metrics = proxy.metrics().render();
            let failed = metrics
                .lines()
                .find(|l| l.starts_with("llmproxy_trace_spans_total{result=\"failed\"}"))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|n| n.parse::<u64>().ok());
            // Each request: its span and the upstream call's.
            assert_eq!(failed, Some(40), "{metrics}");
        }
    }
}
