//! A strict in-process OpenAI-style upstream (Responses and Chat
//! Completions) and the configs that point at it.

use super::*;

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
    /// An upstream that quotes what it was sent: `body` (raw, or SSE with a
    /// `text/event-stream` type) with `{auth}` (the authorization or
    /// api-key header), `{bearer}` (its token), `{bearer_url}` (the token
    /// percent-encoded), `{body}` (the request body) and `{body_json}` (it
    /// JSON-escaped) filled in.
    Echo(u16, &'static str, String),
}

fn percent_encoded(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b if b.is_ascii_alphanumeric() || b"-._~".contains(&b) => char::from(b).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// Fills in an [`Reply::Echo`] template.
fn echo(template: &str, headers: &HeaderMap, raw: &[u8]) -> String {
    let auth = headers
        .get("authorization")
        .or_else(|| headers.get("api-key"))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let bearer = auth.strip_prefix("Bearer ").unwrap_or(auth);
    let body = String::from_utf8_lossy(raw);
    let body_json = serde_json::to_string(&body).unwrap();
    template
        .replace("{auth}", auth)
        .replace("{bearer_url}", &percent_encoded(bearer))
        .replace("{bearer}", bearer)
        .replace("{body_json}", &body_json[1..body_json.len() - 1])
        .replace("{body}", &body)
}

#[derive(Clone, Default)]
struct FakeState {
    received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<Reply>>>,
    /// Replies that were still running when the proxy went away.
    cancelled: Arc<std::sync::atomic::AtomicUsize>,
}

/// Counts a reply as cancelled when it is dropped before finishing.
struct Unfinished(Option<Arc<std::sync::atomic::AtomicUsize>>);

impl Unfinished {
    fn done(mut self) {
        self.0 = None;
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if let Some(n) = &self.0 {
            n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// A strict in-process OpenAI-style server: `POST /v1/responses` (an
/// OpenResponses server) and `POST /v1/chat/completions`.
///
/// `/v1/responses`, like a real server, rejects bodies that are not JSON
/// objects, a missing or non-string `model`, `input` of the wrong type and
/// `reasoning.effort` values outside the OpenResponses enum. Unless a reply
/// is scripted, it answers `Hello from <model>` (JSON or SSE with `[DONE]`),
/// adding an unknown field `x_vendor` to the response and to one event.
///
/// `/v1/chat/completions` is described at [`chat`].
pub struct FakeUpstream {
    pub base_url: String,
    state: FakeState,
}

impl FakeUpstream {
    pub async fn start() -> FakeUpstream {
        let state = FakeState::default();
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeUpstream {
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

    /// How many replies the proxy abandoned midway (closed the connection).
    pub fn cancelled(&self) -> usize {
        self.state
            .cancelled
            .load(std::sync::atomic::Ordering::SeqCst)
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
        raw: raw.clone(),
    });
    let next = state.script.lock().unwrap().pop_front();
    if let Some(reply) = next {
        let reply = match reply {
            Reply::Echo(_, "text/event-stream", template) => Reply::Sse {
                chunks: vec![echo(&template, &headers, &raw)],
                delay: Duration::ZERO,
                then_hang: false,
            },
            Reply::Echo(status, content_type, template) => {
                Reply::Raw(status, content_type, echo(&template, &headers, &raw))
            }
            other => other,
        };
        return scripted(reply, &state).await;
    }
    if method == "POST" && path == "/v1/chat/completions" {
        return chat(&headers, &body).await;
    }
    if method == "GET" && path == "/v1/models" {
        let ids = ["gpt-4o", "gpt-4o-mini", "o4-mini", "text-embedding-3-small"];
        let data: Vec<Value> = ids
            .iter()
            .map(|id| json!({"id": id, "object": "model", "created": 1767000000, "owned_by": "fake"}))
            .collect();
        return scripted(
            Reply::Json(200, json!({"object": "list", "data": data}), vec![]),
            &state,
        )
        .await;
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
    // An agent's turn: call its shell tool, then report what it printed.
    let items = obj.get("input").and_then(Value::as_array);
    let last = items.and_then(|i| i.last());
    let shell = obj
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|t| t["type"] == "function")
        .find_map(|t| {
            t["name"]
                .as_str()
                .and_then(|n| shell_call(n).map(|a| (n, a)))
        });
    let after_call = last.is_some_and(|i| i["type"] == "function_call_output");
    if let (Some((name, args)), false) = (shell, after_call) {
        let stream = obj.get("stream") == Some(&Value::Bool(true));
        return scripted(call_reply(model, name, &args.to_string(), stream), &state).await;
    }
    let text = match last {
        Some(i) if after_call => format!("Results: {}", i["output"].as_str().unwrap_or_default()),
        _ => format!("Hello from {model}"),
    };
    if obj.get("stream") == Some(&Value::Bool(true)) {
        let chunks = text_stream_events(model, &text)
            .into_iter()
            .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
            .chain(std::iter::once("data: [DONE]\n\n".to_string()))
            .collect();
        return scripted(
            Reply::Sse {
                chunks,
                delay: Duration::ZERO,
                then_hang: false,
            },
            &state,
        )
        .await;
    }
    let mut response = response_object(model, "completed", &text);
    response["x_vendor"] = json!({"kept": true});
    scripted(
        Reply::Json(200, response, vec![("x-request-id", "req_fake_1")]),
        &state,
    )
    .await
}

async fn scripted(reply: Reply, state: &FakeState) -> Response {
    let unfinished = || Unfinished(Some(state.cancelled.clone()));
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
            let unfinished = unfinished();
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
                    unfinished.done();
                    Ok(Bytes::new())
                }));
            Response::builder()
                .status(200)
                .header("content-type", "text/event-stream")
                .body(Body::from_stream(stream))
                .unwrap()
        }
        Reply::Hang => {
            let _unfinished = unfinished();
            std::future::pending::<()>().await;
            unreachable!()
        }
        Reply::Echo(..) => unreachable!("filled in by the handler"),
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

/// An OpenResponses answer that calls function `name` with `args`.
fn call_reply(model: &str, name: &str, args: &str, stream: bool) -> Reply {
    let item = |status: &str, arguments: &str| {
        json!({"type": "function_call", "id": "fc_up_1", "call_id": "call_up_1", "name": name,
               "arguments": arguments, "status": status})
    };
    let mut done = response_object(model, "completed", "");
    done["output"] = json!([item("completed", args)]);
    if !stream {
        return Reply::Json(200, done, vec![]);
    }
    let snapshot = json!({"id": "resp_upstream_1", "object": "response", "created_at": 1767000000, "status": "in_progress", "model": model, "output": []});
    let events = [
        json!({"type": "response.created", "sequence_number": 0, "response": snapshot}),
        json!({"type": "response.output_item.added", "sequence_number": 1, "output_index": 0, "item": item("in_progress", "")}),
        json!({"type": "response.function_call_arguments.delta", "sequence_number": 2, "item_id": "fc_up_1", "output_index": 0, "delta": args}),
        json!({"type": "response.function_call_arguments.done", "sequence_number": 3, "item_id": "fc_up_1", "output_index": 0, "arguments": args}),
        json!({"type": "response.output_item.done", "sequence_number": 4, "output_index": 0, "item": item("completed", args)}),
        json!({"type": "response.completed", "sequence_number": 5, "response": done}),
    ];
    Reply::Sse {
        chunks: events
            .iter()
            .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
            .collect(),
        delay: Duration::ZERO,
        then_hang: false,
    }
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

/// `POST /v1/chat/completions`, strict like OpenAI: `model` and non-empty
/// `messages` required, known roles only, every assistant `tool_calls` id
/// answered by a `tool` message right after it and no `tool` message without
/// its call, `stream_options` only with `stream`, `content` of user and
/// system messages present.
///
/// Unscripted behaviour: with tools and a user message last, it calls the
/// first tool (`{"city":"Paris"}`, or no arguments when the tool takes none),
/// or both of the first two tools when the user says "both"; after tool
/// results it answers `Results: <outputs>`; otherwise `Hello from <model>`.
/// With `reasoning_effort` it adds `reasoning_content`. Streams come in
/// OpenAI's chunk shapes (usage chunk only with `include_usage`).
async fn chat(headers: &HeaderMap, body: &Value) -> Response {
    if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/json") {
        return openai_error(415, "content-type must be application/json", None);
    }
    let Some(model) = body.get("model").and_then(Value::as_str) else {
        return openai_error(400, "you must provide a model parameter", Some("model"));
    };
    let messages = match body.get("messages").and_then(Value::as_array) {
        Some(m) if !m.is_empty() => m,
        _ => {
            return openai_error(
                400,
                "'messages' must be a non-empty array",
                Some("messages"),
            );
        }
    };
    let stream = body.get("stream") == Some(&Value::Bool(true));
    if body.get("stream_options").is_some() && !stream {
        return openai_error(
            400,
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            Some("stream_options"),
        );
    }
    let mut pending: Vec<String> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        if !pending.is_empty() && role != "tool" {
            return openai_error(
                400,
                &format!(
                    "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: {}",
                    pending.join(", ")
                ),
                Some(&format!("messages.[{i}].role")),
            );
        }
        match role {
            "system" | "developer" | "user" => {
                if m.get("content").is_none_or(Value::is_null) {
                    return openai_error(
                        400,
                        "content is required",
                        Some(&format!("messages.[{i}].content")),
                    );
                }
            }
            "assistant" => {
                for call in m
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    pending.push(call["id"].as_str().unwrap_or_default().to_string());
                }
            }
            "tool" => {
                let id = m
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                match pending.iter().position(|p| p == id) {
                    Some(p) => {
                        pending.remove(p);
                    }
                    None => {
                        return openai_error(
                            400,
                            &format!(
                                "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls' ({id})."
                            ),
                            Some(&format!("messages.[{i}].role")),
                        );
                    }
                }
            }
            other => {
                return openai_error(
                    400,
                    &format!(
                        "Invalid value: '{other}'. Supported values are: 'system', 'assistant', 'user', 'tool', 'developer'."
                    ),
                    Some(&format!("messages[{i}].role")),
                );
            }
        }
    }
    let last = messages.last().unwrap();
    let tools: Vec<&Value> = body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    for (i, tool) in tools.iter().enumerate() {
        let name = tool
            .pointer("/function/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !openai_name(name) {
            return openai_error(
                400,
                &format!(
                    "Invalid 'tools[{i}].function.name': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'."
                ),
                Some(&format!("tools[{i}].function.name")),
            );
        }
    }
    let mut calls = Vec::new();
    let mut text = format!("Hello from {model}");
    let shell = tools.iter().find_map(|t| {
        t.pointer("/function/name")
            .and_then(Value::as_str)
            .and_then(|n| shell_call(n).map(|a| (n, a)))
    });
    // After the shell command, an agent offering Codex's freeform
    // `apply_patch` is asked to patch a file once.
    let patch_offered = tools
        .iter()
        .any(|t| t.pointer("/function/name") == Some(&json!("apply_patch")));
    let patched = messages
        .iter()
        .flat_map(|m| m["tool_calls"].as_array().into_iter().flatten())
        .any(|c| c.pointer("/function/name") == Some(&json!("apply_patch")));
    if last["role"] == "user"
        && let Some((name, args)) = shell
    {
        calls.push(("call_sh1".to_string(), name.to_string(), args.to_string()));
        text.clear();
    } else if last["role"] == "tool" && patch_offered && !patched {
        let args = json!({"input": AGENT_PATCH});
        calls.push((
            "call_patch1".to_string(),
            "apply_patch".into(),
            args.to_string(),
        ));
        text.clear();
    } else if last["role"] == "user" && !tools.is_empty() {
        let both = last["content"].to_string().contains("both");
        for (i, tool) in tools.iter().take(if both { 2 } else { 1 }).enumerate() {
            let f = &tool["function"];
            let takes_args = f
                .pointer("/parameters/properties")
                .and_then(Value::as_object)
                .is_some_and(|p| !p.is_empty());
            let args = if takes_args {
                "{\"city\":\"Paris\"}"
            } else {
                ""
            };
            calls.push((
                format!("call_{}", i + 1),
                f["name"].as_str().unwrap().to_string(),
                args.to_string(),
            ));
        }
        text.clear();
    } else if last["role"] == "tool" {
        let outputs: Vec<String> = messages
            .iter()
            .rev()
            .take_while(|m| m["role"] == "tool")
            .map(|m| m["content"].as_str().unwrap_or("").to_string())
            .collect();
        text = format!(
            "Results: {}",
            outputs.into_iter().rev().collect::<Vec<_>>().join(", ")
        );
    }
    let reasoning = body
        .get("reasoning_effort")
        .is_some()
        .then_some("Thinking about it.");
    let finish = if calls.is_empty() {
        "stop"
    } else {
        "tool_calls"
    };
    let usage = json!({"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18,
        "prompt_tokens_details": {"cached_tokens": 3}, "completion_tokens_details": {"reasoning_tokens": 2}});
    let n = body.get("n").and_then(Value::as_u64).unwrap_or(1);
    if !stream {
        let tool_calls: Vec<Value> = calls.iter().map(|(id, name, args)| json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}})).collect();
        let mut message = json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { json!(text) }, "refusal": null});
        if !tool_calls.is_empty() {
            message["tool_calls"] = json!(tool_calls);
        }
        if let Some(r) = reasoning {
            message["reasoning_content"] = json!(r);
        }
        let choices: Vec<Value> = (0..n)
            .map(|i| {
                let mut m = message.clone();
                if i > 0 {
                    m["content"] = json!(format!("{text} #{i}"));
                }
                json!({"index": i, "message": m, "logprobs": null, "finish_reason": finish})
            })
            .collect();
        let answer = json!({"id": "chatcmpl-fake", "object": "chat.completion", "created": 1767000000, "model": model,
            "choices": choices, "usage": usage, "system_fingerprint": "fp_fake"});
        return scripted(
            Reply::Json(200, answer, vec![("x-request-id", "req_chat_1")]),
            &FakeState::default(),
        )
        .await;
    }
    let chunk = |delta: Value, finish: Option<&str>| {
        format!(
            "data: {}\n\n",
            json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1767000000, "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
        )
    };
    let mut chunks = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
    if let Some(r) = reasoning {
        chunks.push(chunk(json!({"reasoning_content": r}), None));
    }
    for word in text.split_inclusive(' ') {
        chunks.push(chunk(json!({"content": word}), None));
    }
    for (i, (id, name, args)) in calls.iter().enumerate() {
        chunks.push(chunk(json!({"tool_calls": [{"index": i, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}]}), None));
        let (a, b) = args.split_at(args.len() / 2);
        for piece in [a, b] {
            if !piece.is_empty() {
                chunks.push(chunk(
                    json!({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}),
                    None,
                ));
            }
        }
    }
    chunks.push(chunk(json!({}), Some(finish)));
    // Further choices (`n`), each whole in one chunk, as OpenAI may send them.
    for i in 1..n {
        chunks.push(format!(
            "data: {}\n\n",
            json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1767000000, "model": model,
            "choices": [{"index": i, "delta": {"role": "assistant", "content": format!("{text} #{i}")}, "logprobs": null, "finish_reason": finish}]})
        ));
    }
    if body.pointer("/stream_options/include_usage") == Some(&Value::Bool(true)) {
        chunks.push(format!("data: {}\n\n", json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1767000000, "model": model, "choices": [], "usage": usage})));
    }
    chunks.push("data: [DONE]\n\n".into());
    scripted(
        Reply::Sse {
            chunks,
            delay: Duration::ZERO,
            then_hang: false,
        },
        &FakeState::default(),
    )
    .await
}

/// What the fakes make an agent run: it leaves a file behind, so that a test
/// can tell the command really ran.
pub const AGENT_COMMAND: &str = "echo agent-ran > agent-proof.txt && cat agent-proof.txt";

/// The patch the Chat fake applies through Codex's freeform `apply_patch`.
pub const AGENT_PATCH: &str =
    "*** Begin Patch\n*** Add File: patched.txt\n+patched by the model\n*** End Patch\n";

/// The arguments with which the fakes call an agent's shell tool, when
/// `name` is one: Codex's `exec_command`, OpenCode's `bash`, Claude Code's
/// `Bash`.
pub fn shell_call(name: &str) -> Option<Value> {
    match name {
        "exec_command" => Some(json!({"cmd": AGENT_COMMAND})),
        "bash" | "Bash" => Some(json!({"command": AGENT_COMMAND})),
        _ => None,
    }
}

/// A function name OpenAI accepts: `^[a-zA-Z0-9_-]{1,64}$`.
pub fn openai_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A backend of `kind` at `base_url` serving every model.
pub fn backend(kind: &str, base_url: &str, extra: &str) -> String {
    format!(
        "[[backends]]\nname = \"{kind}\"\nkind = \"{kind}\"\nbase_url = \"{base_url}\"\nmodels = [\"*\"]\n{extra}\n"
    )
}
