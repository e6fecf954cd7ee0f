//! Test harness: the proxy on 127.0.0.1:0, fake upstreams that record what
//! they receive, and an SSE reader.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A running proxy.
pub struct TestProxy {
    pub url: String,
    pub http: reqwest::Client,
}

impl TestProxy {
    /// Starts a proxy from TOML on an ephemeral port.
    pub async fn start(toml: &str) -> TestProxy {
        Self::start_with_key(toml, None).await
    }

    pub async fn start_with_key(toml: &str, key: Option<&str>) -> TestProxy {
        let mut config = llmproxy::Config::from_toml(toml).expect("config");
        config.server.api_key = key.map(llmproxy::Secret::new);
        let proxy = llmproxy::Proxy::new(config).await.expect("proxy");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, proxy.router()).await.unwrap();
        });
        TestProxy {
            url: format!("http://{addr}"),
            http: reqwest::Client::builder()
                .tls_backend_preconfigured(no_tls())
                .build()
                .unwrap(),
        }
    }

    async fn send(&self, path: &str, body: &Value) -> (StatusCode, HeaderMap, String) {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        (status, headers, r.text().await.unwrap())
    }

    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, HeaderMap, Value) {
        let (status, headers, text) = self.send(path, body).await;
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() && path.ends_with("responses") {
            dump("response", &value);
        }
        (status, headers, value)
    }

    /// POSTs and reads an SSE answer: (status, events, saw `[DONE]`).
    pub async fn post_stream(&self, path: &str, body: &Value) -> (StatusCode, Vec<Value>, bool) {
        let (status, _, text) = self.send(path, body).await;
        let (events, done) = parse_sse(&text);
        if path.ends_with("responses") {
            dump("events", &Value::Array(events.clone()));
        }
        (status, events, done)
    }
}

/// With `LLMPROXY_IT_DUMP=<dir>`, writes what the proxy answered to files, so
/// that it can be checked against the full OpenResponses JSON schema.
fn dump(kind: &str, value: &Value) {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    if let Some(dir) = std::env::var_os("LLMPROXY_IT_DUMP") {
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::path::Path::new(&dir).join(format!("{kind}-{}-{n}.json", std::process::id()));
        std::fs::write(path, value.to_string()).unwrap();
    }
}

/// A rustls config for plain-HTTP test clients (no provider installed
/// globally, no TLS used).
pub fn no_tls() -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth()
}

/// Parses an SSE body into JSON events; `true` if `data: [DONE]` ended it.
/// Checks that every `event:` name equals the data's `type`.
pub fn parse_sse(text: &str) -> (Vec<Value>, bool) {
    let mut events = Vec::new();
    let mut done = false;
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let mut name = None;
        let mut data = String::new();
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event: ") {
                name = Some(v.to_string());
            } else if let Some(v) = line.strip_prefix("data: ") {
                data.push_str(v);
            }
        }
        if data == "[DONE]" {
            assert!(!done, "two [DONE]s");
            done = true;
            continue;
        }
        assert!(!done, "event after [DONE]: {data}");
        let value: Value = serde_json::from_str(&data).unwrap_or_else(|e| panic!("{e}: {data}"));
        if let Some(name) = name {
            assert_eq!(
                Some(name.as_str()),
                value["type"].as_str(),
                "event: name vs type"
            );
        }
        events.push(value);
    }
    (events, done)
}

/// What a fake upstream received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
    pub raw: Bytes,
}

/// A scripted answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A JSON body with a status and extra headers.
    Json(u16, Value, Vec<(&'static str, &'static str)>),
    /// A raw body.
    Raw(u16, &'static str, String),
    /// An SSE body sent in pieces, optionally cut off without an end.
    Sse {
        chunks: Vec<String>,
        delay: Duration,
        then_hang: bool,
    },
    /// Accept the request and never answer.
    Hang,
}

#[derive(Clone, Default)]
struct FakeState {
    received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<Reply>>>,
}

/// A strict in-process OpenResponses server: `POST /v1/responses`.
///
/// Like a real one it rejects bodies that are not JSON objects, a missing or
/// non-string `model`, `input` of the wrong type and `reasoning.effort`
/// values outside the OpenResponses enum. Unless a reply is scripted, it
/// answers `Hello from <model>` (JSON or SSE with `[DONE]`), adding an
/// unknown field `x_vendor` to the response and to one event.
pub struct FakeOpenResponses {
    pub base_url: String,
    state: FakeState,
}

impl FakeOpenResponses {
    pub async fn start() -> FakeOpenResponses {
        let state = FakeState::default();
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeOpenResponses {
            base_url: format!("http://{addr}/v1"),
            state,
        }
    }

    /// Queues replies for the next requests (then the default behaviour).
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.script.lock().unwrap().extend(replies);
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    pub fn last(&self) -> Received {
        self.received()
            .pop()
            .expect("the fake upstream received nothing")
    }
}

fn openai_error(status: u16, message: &str, param: Option<&str>) -> Response {
    let body = json!({"error": {"message": message, "type": "invalid_request_error", "param": param, "code": null}});
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

async fn handle(State(state): State<FakeState>, request: Request) -> Response {
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    let headers = request.headers().clone();
    let raw = axum::body::to_bytes(request.into_body(), usize::MAX)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    state.received.lock().unwrap().push(Received {
        method: method.clone(),
        path: path.clone(),
        headers: headers.clone(),
        body: body.clone(),
        raw,
    });
    let next = state.script.lock().unwrap().pop_front();
    if let Some(reply) = next {
        return scripted(reply).await;
    }
    if method != "POST" || path != "/v1/responses" {
        return openai_error(404, &format!("no route {method} {path}"), None);
    }
    if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/json") {
        return openai_error(415, "content-type must be application/json", None);
    }
    let Some(obj) = body.as_object() else {
        return openai_error(400, "body must be a JSON object", None);
    };
    let Some(model) = obj.get("model").and_then(Value::as_str) else {
        return openai_error(400, "model is required", Some("model"));
    };
    if let Some(input) = obj.get("input")
        && !(input.is_string() || input.is_array())
    {
        return openai_error(400, "input must be a string or an array", Some("input"));
    }
    if let Some(effort) = body.pointer("/reasoning/effort")
        && !["none", "low", "medium", "high", "xhigh"].contains(&effort.as_str().unwrap_or("?"))
    {
        return openai_error(
            400,
            &format!("invalid reasoning.effort {effort}"),
            Some("reasoning.effort"),
        );
    }
    let text = format!("Hello from {model}");
    if obj.get("stream") == Some(&Value::Bool(true)) {
        let chunks = text_stream_events(model, &text)
            .into_iter()
            .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
            .chain(std::iter::once("data: [DONE]\n\n".to_string()))
            .collect();
        return scripted(Reply::Sse {
            chunks,
            delay: Duration::ZERO,
            then_hang: false,
        })
        .await;
    }
    let mut response = response_object(model, "completed", &text);
    response["x_vendor"] = json!({"kept": true});
    scripted(Reply::Json(
        200,
        response,
        vec![("x-request-id", "req_fake_1")],
    ))
    .await
}

async fn scripted(reply: Reply) -> Response {
    match reply {
        Reply::Json(status, body, headers) => {
            let mut b = Response::builder()
                .status(status)
                .header("content-type", "application/json");
            for (n, v) in headers {
                b = b.header(n, v);
            }
            b.body(Body::from(body.to_string())).unwrap()
        }
        Reply::Raw(status, content_type, body) => Response::builder()
            .status(status)
            .header("content-type", content_type)
            .body(Body::from(body))
            .unwrap(),
        Reply::Sse {
            chunks,
            delay,
            then_hang,
        } => {
            let stream = futures_util::stream::iter(chunks)
                .then(move |c| async move {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    Ok::<_, std::convert::Infallible>(Bytes::from(c))
                })
                .chain(futures_util::stream::once(async move {
                    if then_hang {
                        std::future::pending::<()>().await;
                    }
                    Ok(Bytes::new())
                }));
            Response::builder()
                .status(200)
                .header("content-type", "text/event-stream")
                .body(Body::from_stream(stream))
                .unwrap()
        }
        Reply::Hang => {
            std::future::pending::<()>().await;
            unreachable!()
        }
    }
}

/// A complete upstream response object with one text message.
pub fn response_object(model: &str, status: &str, text: &str) -> Value {
    json!({
        "id": "resp_upstream_1", "object": "response", "created_at": 1767000000,
        "completed_at": 1767000001, "status": status, "model": model,
        "output": [{"type": "message", "id": "msg_up_1", "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": []}]}],
        "usage": {"input_tokens": 5, "input_tokens_details": {"cached_tokens": 1},
                  "output_tokens": 3, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 8},
        "error": null, "incomplete_details": null
    })
}

/// The events of a text answer as an OpenResponses server streams them
/// (partial snapshots, as some servers send).
pub fn text_stream_events(model: &str, text: &str) -> Vec<(String, String)> {
    let item = json!({"type": "message", "id": "msg_up_1", "status": "in_progress", "role": "assistant", "content": []});
    let snapshot = json!({"id": "resp_upstream_1", "object": "response", "created_at": 1767000000, "status": "in_progress", "model": model, "output": []});
    let mut events = vec![
        json!({"type": "response.created", "sequence_number": 0, "response": snapshot}),
        json!({"type": "response.in_progress", "sequence_number": 1, "response": snapshot}),
        json!({"type": "response.output_item.added", "sequence_number": 2, "output_index": 0, "item": item}),
        json!({"type": "response.content_part.added", "sequence_number": 3, "item_id": "msg_up_1", "output_index": 0, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}}),
    ];
    for (i, word) in text.split_inclusive(' ').enumerate() {
        let mut delta = json!({"type": "response.output_text.delta", "sequence_number": 4 + i, "item_id": "msg_up_1", "output_index": 0, "content_index": 0, "delta": word, "logprobs": []});
        if i == 0 {
            delta["x_vendor"] = json!("event-extra");
        }
        events.push(delta);
    }
    let part = json!({"type": "output_text", "text": text, "annotations": []});
    let done_item = json!({"type": "message", "id": "msg_up_1", "status": "completed", "role": "assistant", "content": [part]});
    let mut final_response = response_object(model, "completed", text);
    final_response["x_vendor"] = json!({"kept": true});
    events.extend([
        json!({"type": "response.output_text.done", "sequence_number": 90, "item_id": "msg_up_1", "output_index": 0, "content_index": 0, "text": text, "logprobs": []}),
        json!({"type": "response.content_part.done", "sequence_number": 91, "item_id": "msg_up_1", "output_index": 0, "content_index": 0, "part": part}),
        json!({"type": "response.output_item.done", "sequence_number": 92, "output_index": 0, "item": done_item}),
        json!({"type": "response.completed", "sequence_number": 93, "response": final_response}),
    ]);
    events
        .into_iter()
        .map(|e| (e["type"].as_str().unwrap().to_string(), e.to_string()))
        .collect()
}

/// An SSE body from (event, data) pairs.
pub fn sse_body(events: &[(String, String)]) -> Vec<String> {
    events
        .iter()
        .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
        .collect()
}

/// A one-backend config pointing at `base_url`.
pub fn single(base_url: &str) -> String {
    format!(
        r#"
[[backends]]
name = "local"
kind = "openresponses"
base_url = "{base_url}"
models = ["*"]
"#
    )
}
