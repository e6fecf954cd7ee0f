//! `POST /v1/messages` (Anthropic Messages) on every backend kind - an
//! OpenAI-style Chat upstream, Vertex Gemini 2.5 and 3, Vertex Claude and an
//! OpenResponses server - streamed and not: text, system prompts, a
//! multi-turn conversation, a tool loop with parallel calls, thinking whose
//! signatures are replayed, images, errors in Anthropic's shape, and a
//! stream that fails midway.

use crate::fake_vertex::FakeVertex;
use crate::support::*;
use serde_json::{Value, json};

const KEY: &str = "messages-client-key";
const CHAT: &str = "gpt-4.1";
const GEMINI_25: &str = "gemini-2.5-flash";
const GEMINI_3: &str = "gemini-3-pro-preview";
/// Claude Code's name for the model; the config maps it to Vertex's id.
const CLAUDE: &str = "claude-sonnet-4-5-20250929";
const OPENRESPONSES: &str = "or-model";
const EVERY: [&str; 5] = [CHAT, GEMINI_25, GEMINI_3, CLAUDE, OPENRESPONSES];

struct Setup {
    chat: FakeUpstream,
    responses: FakeUpstream,
    vertex: FakeVertex,
    proxy: TestProxy,
}

async fn setup() -> Setup {
    setup_with("").await
}

/// [`setup`] with more config (`[media]`, ...) before the backends.
async fn setup_with(extra: &str) -> Setup {
    let chat = FakeUpstream::start().await;
    let responses = FakeUpstream::start().await;
    let vertex = FakeVertex::start().await;
    let toml = format!(
        "{extra}[[backends]]\nname = \"chat\"\nkind = \"openai\"\nbase_url = \"{}\"\nauth = \"none\"\nmodels = [\"gpt-*\"]\n\n\
         [[backends]]\nname = \"responses\"\nkind = \"openresponses\"\nbase_url = \"{}\"\nmodels = [\"or-*\"]\n\n{}\
         model_map = {{ \"{CLAUDE}\" = \"claude-sonnet-4-5@20250929\" }}\n",
        chat.base_url,
        responses.base_url,
        vertex
            .config("")
            .replace("models = [\"*\"]", "models = [\"gemini-*\", \"claude-*\"]")
    );
    let proxy = TestProxy::start_with_key(&toml, Some(KEY)).await;
    Setup {
        chat,
        responses,
        vertex,
        proxy,
    }
}

/// POSTs a Messages request as Anthropic's SDKs do (`x-api-key`,
/// `anthropic-version`, `?beta=true`): (status, headers, body text).
async fn send(proxy: &TestProxy, path: &str, body: &Value) -> (u16, http::HeaderMap, String) {
    let r = proxy
        .http
        .post(format!("{}{path}", proxy.url))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .header(
            "anthropic-beta",
            "claude-code-20250219,interleaved-thinking-2025-05-14",
        )
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.unwrap())
}

async fn create(proxy: &TestProxy, body: &Value) -> (u16, Value) {
    let (status, _, text) = send(proxy, "/v1/messages?beta=true", body).await;
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Streams a request and checks the Messages event grammar: `message_start`
/// first; every block started, filled and stopped in index order; then
/// `message_delta` and `message_stop` - or an `error` event last. Returns
/// the events and the message they add up to.
async fn stream(proxy: &TestProxy, body: &Value) -> (Vec<Value>, Value) {
    let mut body = body.clone();
    body["stream"] = json!(true);
    let (status, headers, text) = send(proxy, "/v1/messages?beta=true", &body).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(headers["content-type"], "text/event-stream");
    let mut events = Vec::new();
    for frame in text.split("\n\n").filter(|f| !f.trim().is_empty()) {
        let mut lines = frame.lines();
        let name = lines.next().unwrap().strip_prefix("event: ").unwrap();
        let data: Value =
            serde_json::from_str(lines.next().unwrap().strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(data["type"], name, "the event name is its type: {frame}");
        events.push(data);
    }
    (events.clone(), assemble(&events))
}

/// The message a stream adds up to, checking its grammar on the way.
fn assemble(events: &[Value]) -> Value {
    assert_eq!(events[0]["type"], "message_start", "{events:#?}");
    let mut message = events[0]["message"].clone();
    let mut open: Option<u64> = None;
    let mut json_parts = String::new();
    let last = events.last().unwrap()["type"].as_str().unwrap().to_string();
    assert!(
        last == "message_stop" || last == "error",
        "a stream ends with message_stop or error: {events:#?}"
    );
    for e in &events[1..] {
        match e["type"].as_str().unwrap() {
            "ping" => {}
            "content_block_start" => {
                assert!(open.is_none(), "a block starts while another is open");
                let index = e["index"].as_u64().unwrap();
                assert_eq!(index as usize, message["content"].as_array().unwrap().len());
                open = Some(index);
                json_parts.clear();
                message["content"]
                    .as_array_mut()
                    .unwrap()
                    .push(e["content_block"].clone());
            }
            "content_block_delta" => {
                assert_eq!(e["index"].as_u64(), open, "a delta for the open block");
                let block = message["content"]
                    .as_array_mut()
                    .unwrap()
                    .last_mut()
                    .unwrap();
                let d = &e["delta"];
                let append = |block: &mut Value, key: &str, piece: &Value| {
                    let text = block[key].as_str().unwrap_or("").to_string();
                    block[key] = json!(text + piece.as_str().unwrap());
                };
                match d["type"].as_str().unwrap() {
                    "text_delta" => append(block, "text", &d["text"]),
                    "thinking_delta" => append(block, "thinking", &d["thinking"]),
                    "signature_delta" => append(block, "signature", &d["signature"]),
                    "input_json_delta" => json_parts.push_str(d["partial_json"].as_str().unwrap()),
                    other => panic!("unknown delta {other}"),
                }
            }
            "content_block_stop" => {
                assert_eq!(e["index"].as_u64(), open, "the open block stops");
                let block = message["content"]
                    .as_array_mut()
                    .unwrap()
                    .last_mut()
                    .unwrap();
                if block["type"] == "tool_use" {
                    block["input"] = if json_parts.is_empty() {
                        json!({})
                    } else {
                        serde_json::from_str(&json_parts).unwrap()
                    };
                }
                open = None;
            }
            "message_delta" => {
                assert!(open.is_none(), "message_delta with a block open");
                message["stop_reason"] = e["delta"]["stop_reason"].clone();
                message["usage"] = e["usage"].clone();
            }
            "message_stop" => {}
            "error" => message["error"] = e["error"].clone(),
            other => panic!("unknown event {other}"),
        }
    }
    message
}

fn text_of(message: &Value) -> String {
    message["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "text")
        .map(|b| b["text"].as_str().unwrap())
        .collect()
}

fn tool_uses(message: &Value) -> Vec<Value> {
    message["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "tool_use")
        .cloned()
        .collect()
}

/// Text, a system prompt (also as a `system` message, as Claude Code sends
/// it to non-Claude models) and a multi-turn conversation, on every
/// backend, streamed and not: the same answer both ways, in Messages shape.
#[tokio::test]
async fn text_and_conversation_on_every_backend() {
    let s = setup().await;
    for model in EVERY {
        let body = json!({
            "model": model, "max_tokens": 1000,
            "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "system", "content": "You are a test."},
                {"role": "user", "content": "Hello"},
                {"role": "assistant", "content": [{"type": "text", "text": "Hi."}]},
                {"role": "user", "content": [{"type": "text", "text": "Say hello again", "cache_control": {"type": "ephemeral"}}]}
            ],
            "metadata": {"user_id": "user_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef_account__session_x"}
        });
        let (status, whole) = create(&s.proxy, &body).await;
        assert_eq!(status, 200, "{model}: {whole}");
        assert_eq!(whole["type"], "message", "{model}");
        assert_eq!(whole["role"], "assistant", "{model}");
        assert_eq!(whole["model"], model, "{model}: the client's name");
        assert!(whole["id"].as_str().unwrap().starts_with("msg_"), "{whole}");
        assert_eq!(whole["stop_reason"], "end_turn", "{model}: {whole}");
        assert!(
            whole["usage"]["output_tokens"].as_u64().unwrap() > 0,
            "{model}: {whole}"
        );
        if model != OPENRESPONSES {
            // Each fake reports cached input: it comes back as Anthropic's
            // `cache_read_input_tokens`, apart from `input_tokens`.
            assert!(
                whole["usage"]["cache_read_input_tokens"].as_u64().unwrap() > 0,
                "{model}: {whole}"
            );
        }
        let text = text_of(&whole);
        assert!(!text.is_empty(), "{model}: {whole}");
        let (_, streamed) = stream(&s.proxy, &body).await;
        assert_eq!(
            text_of(&streamed),
            text,
            "{model}: streamed and whole agree"
        );
        assert_eq!(streamed["stop_reason"], "end_turn", "{model}: {streamed}");
        assert!(
            streamed["usage"]["output_tokens"].as_u64().unwrap() > 0,
            "{model}"
        );
    }
    // The system prompt reached each upstream as its system instruction.
    let chat = s.chat.last().body;
    assert_eq!(chat["messages"][0]["role"], "system", "{chat}");
    assert!(
        chat["messages"][0]["content"]
            .to_string()
            .contains("Be brief."),
        "{chat}"
    );
    let gemini = s
        .vertex
        .received()
        .into_iter()
        .find(|(path, _)| path.contains("gemini-2.5"))
        .unwrap()
        .1;
    assert!(
        gemini["systemInstruction"]
            .to_string()
            .contains("You are a test."),
        "{gemini}"
    );
    let claude = s
        .vertex
        .received()
        .into_iter()
        .rfind(|(path, _)| path.contains("anthropic"))
        .unwrap();
    assert!(
        claude.0.contains("claude-sonnet-4-5@20250929"),
        "mapped: {}",
        claude.0
    );
    assert!(
        claude.1["system"].to_string().contains("Be brief."),
        "{}",
        claude.1
    );
    assert_eq!(
        claude.1["metadata"]["user_id"],
        body_user_id(),
        "metadata.user_id reaches Claude"
    );
    let or = s.responses.last().body;
    assert_eq!(
        or["store"], false,
        "a Messages request is never stored: {or}"
    );
}

fn body_user_id() -> &'static str {
    "user_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef_account__session_x"
}

/// A tool loop with two parallel calls on every backend with tools (the
/// OpenResponses fake only calls shell tools), streamed and not: both
/// calls come back as `tool_use` blocks, and their results as the answer.
#[tokio::test]
async fn tool_loop_with_parallel_calls() {
    let s = setup().await;
    let tools = json!([
        {"name": "get_weather", "description": "Weather by city", "input_schema": {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": false}},
        {"name": "now", "description": "The time", "input_schema": {"type": "object", "properties": {}}, "cache_control": {"type": "ephemeral"}}
    ]);
    for model in [CHAT, GEMINI_25, GEMINI_3, CLAUDE] {
        for streamed in [false, true] {
            let mut body = json!({
                "model": model, "max_tokens": 2000, "tools": tools,
                "messages": [{"role": "user", "content": "Call both tools"}]
            });
            let first = if streamed {
                stream(&s.proxy, &body).await.1
            } else {
                let (status, first) = create(&s.proxy, &body).await;
                assert_eq!(status, 200, "{model}: {first}");
                first
            };
            assert_eq!(
                first["stop_reason"], "tool_use",
                "{model} {streamed}: {first}"
            );
            let calls = tool_uses(&first);
            assert_eq!(calls.len(), 2, "{model} {streamed}: {first}");
            assert_eq!(calls[0]["name"], "get_weather");
            assert_eq!(calls[0]["input"], json!({"city": "Paris"}), "{first}");
            assert_eq!(calls[1]["name"], "now");
            assert_eq!(calls[1]["input"], json!({}), "{first}");
            // The client runs them and sends the whole turn back.
            let results: Vec<Value> = calls
                .iter()
                .zip(["18C", "noon"])
                .map(|(c, out)| json!({"type": "tool_result", "tool_use_id": c["id"], "content": out}))
                .collect();
            body["messages"] = json!([
                {"role": "user", "content": "Call both tools"},
                {"role": "assistant", "content": first["content"]},
                {"role": "user", "content": results}
            ]);
            let (status, second) = create(&s.proxy, &body).await;
            assert_eq!(status, 200, "{model} {streamed}: {second}");
            let text = text_of(&second);
            assert!(
                text.contains("18C") && text.contains("noon"),
                "{model} {streamed}: {second}"
            );
        }
    }
}

/// Thinking with signatures through a tool loop: Claude gets its thinking
/// blocks back byte for byte, Gemini 3 its thought signatures (the fakes
/// refuse anything else).
#[tokio::test]
async fn thinking_signatures_survive_a_tool_loop() {
    let s = setup().await;
    let tools = json!([{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]);
    for model in [CLAUDE, GEMINI_3] {
        for streamed in [false, true] {
            let mut body = json!({
                "model": model, "max_tokens": 32000, "tools": tools,
                "thinking": {"type": "enabled", "budget_tokens": 31999},
                "messages": [{"role": "user", "content": "Weather in Paris?"}]
            });
            let first = if streamed {
                stream(&s.proxy, &body).await.1
            } else {
                create(&s.proxy, &body).await.1
            };
            let thinking: Vec<&Value> = first["content"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|b| b["type"] == "thinking")
                .collect();
            assert!(!thinking.is_empty(), "{model} {streamed}: {first}");
            assert!(
                thinking
                    .iter()
                    .all(|t| !t["signature"].as_str().unwrap().is_empty()),
                "{first}"
            );
            let call = &tool_uses(&first)[0];
            body["messages"] = json!([
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": first["content"]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call["id"], "content": "18C"}]}
            ]);
            let (status, second) = create(&s.proxy, &body).await;
            assert_eq!(status, 200, "{model} {streamed}: {second}");
            assert!(text_of(&second).contains("18C"), "{second}");
        }
    }
    // Claude's signatures came back exactly as it issued them.
    let replayed = s.vertex.claude_replayed();
    assert_eq!(replayed.len(), 2, "{replayed:?}");
    assert!(
        replayed
            .iter()
            .all(|sig| s.vertex.claude_thinking(sig).is_some())
    );
    // Claude was given the client's own thinking budget.
    let claude = s
        .vertex
        .received()
        .into_iter()
        .rfind(|(path, _)| path.contains("anthropic"))
        .unwrap()
        .1;
    assert_eq!(claude["thinking"]["budget_tokens"], 31999, "{claude}");
    assert!(
        s.vertex
            .replayed()
            .iter()
            .any(|sig| sig.starts_with("SIG-call")),
        "Gemini 3 got its call signature back: {:?}",
        s.vertex.replayed()
    );
}

/// Images (inline and linked) reach Claude and Gemini.
#[tokio::test]
async fn images_map_to_every_vertex_model() {
    let s = setup().await;
    // A 1x1 PNG.
    let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";
    for model in [CLAUDE, GEMINI_25] {
        let body = json!({"model": model, "max_tokens": 100, "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}},
            {"type": "text", "text": "What is this?"}
        ]}]});
        let (status, answer) = create(&s.proxy, &body).await;
        assert_eq!(status, 200, "{model}: {answer}");
    }
    let claude = s
        .vertex
        .received()
        .into_iter()
        .rfind(|(path, _)| path.contains("anthropic"))
        .unwrap()
        .1;
    assert_eq!(
        claude["messages"][0]["content"][0]["source"]["data"], png,
        "{claude}"
    );
    let gemini = s
        .vertex
        .received()
        .into_iter()
        .rfind(|(path, _)| path.contains("gemini"))
        .unwrap()
        .1;
    assert_eq!(
        gemini["contents"][0]["parts"][0]["inlineData"]["data"], png,
        "{gemini}"
    );
}

/// Errors are in Anthropic's shape with Anthropic's statuses, before
/// anything is sent upstream when the request is at fault.
#[tokio::test]
async fn errors_are_anthropic_shaped() {
    let s = setup().await;
    let check = |status: u16, body: &Value, want_status: u16, want_type: &str, mention: &str| {
        assert_eq!(status, want_status, "{body}");
        assert_eq!(body["type"], "error", "{body}");
        assert_eq!(body["error"]["type"], want_type, "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(mention), "{mention:?} in {body}");
    };
    let hits = s.vertex.hits().len() + s.chat.received().len();
    // Bad input: the field is named.
    let (status, body) = create(&s.proxy, &json!({"model": CHAT, "max_tokens": 10})).await;
    check(status, &body, 400, "invalid_request_error", "messages");
    let orphan = json!({"model": CLAUDE, "max_tokens": 10, "messages": [
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x", "content": "x"}]}]});
    let (status, body) = create(&s.proxy, &orphan).await;
    check(status, &body, 400, "invalid_request_error", "tool_use_id");
    let unknown = json!({"model": GEMINI_25, "max_tokens": 10, "messages": [
        {"role": "user", "content": [{"type": "container_upload", "file_id": "f"}]}]});
    let (status, body) = create(&s.proxy, &unknown).await;
    check(
        status,
        &body,
        400,
        "invalid_request_error",
        "messages.0.content.0",
    );
    let (status, body) = create(
        &s.proxy,
        &json!({"model": CHAT, "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    check(status, &body, 400, "invalid_request_error", "max_tokens");
    let (status, body) = create(&s.proxy, &json!({"model": "nobody-serves-this", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]})).await;
    check(status, &body, 404, "not_found_error", "nobody-serves-this");
    assert_eq!(
        s.vertex.hits().len() + s.chat.received().len(),
        hits,
        "nothing was sent upstream"
    );
    // Client authentication: either header, errors in this shape.
    let body =
        json!({"model": CHAT, "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]});
    let r = s
        .proxy
        .http
        .post(format!("{}/v1/messages", s.proxy.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    check(
        status,
        &r.json().await.unwrap(),
        401,
        "authentication_error",
        "API key",
    );
    let r = s
        .proxy
        .http
        .post(format!("{}/v1/messages", s.proxy.url))
        .header("x-api-key", "wrong")
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    check(
        status,
        &r.json().await.unwrap(),
        401,
        "authentication_error",
        "Incorrect",
    );
    let r = s
        .proxy
        .http
        .post(format!("{}/v1/messages", s.proxy.url))
        .bearer_auth(KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "Authorization: Bearer works too");
    // Upstream errors keep their status: 429 (with retry-after), 529, 500.
    let (status, headers, text) = send(
        &s.proxy,
        "/v1/messages",
        &json!({"model": GEMINI_25, "max_tokens": 10, "messages": [{"role": "user", "content": "RATELIMIT"}]}),
    )
    .await;
    check(
        status,
        &serde_json::from_str(&text).unwrap(),
        429,
        "rate_limit_error",
        "exhausted",
    );
    assert_eq!(headers["retry-after"], "7");
    for (code, kind, message) in [
        (529, "overloaded_error", "Overloaded"),
        (500, "api_error", "internal"),
        (403, "permission_error", "denied"),
    ] {
        s.chat.script([Reply::Raw(
            code,
            "application/json",
            json!({"error": {"message": message, "type": "server_error", "code": null}})
                .to_string(),
        )]);
        let (status, body) = create(&s.proxy, &body).await;
        check(status, &body, code, kind, message);
    }
    // A stream that stops midway ends with an error event.
    let events = text_stream_events(OPENRESPONSES, "a long answer");
    s.responses.script([Reply::Sse {
        chunks: sse_body(&events[..4]),
        delay: std::time::Duration::ZERO,
        then_hang: false,
    }]);
    let (events, message) = stream(
        &s.proxy,
        &json!({"model": OPENRESPONSES, "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(events.last().unwrap()["type"], "error", "{events:#?}");
    assert!(message["error"]["message"].as_str().is_some(), "{message}");
}

/// `count_tokens` asks Gemini's `countTokens`, estimates where the upstream
/// cannot count (and says so), and 404s for a model nobody serves.
#[tokio::test]
async fn count_tokens() {
    let s = setup().await;
    let body = json!({"model": GEMINI_25, "system": "Be brief.", "messages": [{"role": "user", "content": "Hello there, how many tokens is this?"}],
        "tools": [{"name": "now", "input_schema": {"type": "object"}}]});
    let (status, headers, text) =
        send(&s.proxy, "/v1/messages/count_tokens?beta=true", &body).await;
    assert_eq!(status, 200, "{text}");
    let count: Value = serde_json::from_str(&text).unwrap();
    assert!(count["input_tokens"].as_u64().unwrap() > 10, "{count}");
    assert_eq!(headers["x-llmproxy-token-count"], "upstream");
    let (path, sent) = s.vertex.last();
    assert!(
        path.ends_with("/models/gemini-2.5-flash:countTokens"),
        "{path}"
    );
    assert!(
        sent["systemInstruction"].to_string().contains("Be brief."),
        "{sent}"
    );
    assert_eq!(
        sent["tools"][0]["functionDeclarations"][0]["name"], "now",
        "{sent}"
    );
    // No counting endpoint (an OpenAI Chat upstream): an estimate, said so.
    let mut chat = body.clone();
    chat["model"] = json!(CHAT);
    let (status, headers, text) = send(&s.proxy, "/v1/messages/count_tokens", &chat).await;
    assert_eq!(status, 200, "{text}");
    let count: Value = serde_json::from_str(&text).unwrap();
    assert!(count["input_tokens"].as_u64().unwrap() > 10, "{count}");
    assert_eq!(headers["x-llmproxy-token-count"], "estimate");
    let mut unknown = body.clone();
    unknown["model"] = json!("nobody-serves-this");
    let (status, _, text) = send(&s.proxy, "/v1/messages/count_tokens", &unknown).await;
    assert_eq!(status, 404, "{text}");
}

/// A Messages request to Claude on Vertex arrives as the client wrote it:
/// cache breakpoints on system, tools and messages, `context_management`,
/// deferred tools, metadata and the thinking budget unchanged, thinking
/// blocks replayed byte for byte - adapted only where Vertex differs (no
/// `model`, `anthropic_version`, betas in the body and only those Vertex
/// takes, no `output_config.effort`). The answer comes back as Claude sent
/// it, under the client's model name.
#[tokio::test]
async fn claude_gets_messages_as_written() {
    let s = setup().await;
    let betas = "claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27,advanced-tool-use-2025-11-20,effort-2025-11-24";
    let post = |body: Value| {
        let proxy = &s.proxy;
        async move {
            let r = proxy
                .http
                .post(format!("{}/v1/messages?beta=true", proxy.url))
                .header("x-api-key", KEY)
                .header("anthropic-version", "2023-06-01")
                .header("anthropic-beta", betas)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let headers = r.headers().clone();
            (status, headers, r.text().await.unwrap())
        }
    };
    let system = json!([
        {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Environment.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    ]);
    let tools = json!([
        {"name": "Bash", "description": "Runs a command", "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}},
        {"name": "Read", "description": "Reads", "input_schema": {"type": "object", "properties": {}}, "defer_loading": true, "cache_control": {"type": "ephemeral"}}
    ]);
    let first_turn = json!({"role": "user", "content": [{"type": "text", "text": "Run ls", "cache_control": {"type": "ephemeral"}}]});
    let mut body = json!({
        "model": CLAUDE, "max_tokens": 32000, "system": system, "tools": tools,
        "messages": [first_turn],
        "metadata": {"user_id": "user_x_account__session_y"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "high"},
        "thinking": {"type": "enabled", "budget_tokens": 31999}
    });
    let (status, _, text) = post(body.clone()).await;
    assert_eq!(status, 200, "{text}");
    let first: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(first["model"], CLAUDE, "the client's name: {first}");
    assert_eq!(first["id"], "msg_vrtx_01", "Claude's own answer: {first}");
    let (path, sent) = s.vertex.last();
    assert!(
        path.ends_with("/models/claude-sonnet-4-5@20250929:rawPredict"),
        "{path}"
    );
    assert!(sent.get("model").is_none(), "{sent}");
    assert_eq!(sent["anthropic_version"], "vertex-2023-10-16");
    assert_eq!(
        sent["anthropic_beta"],
        json!([
            "interleaved-thinking-2025-05-14",
            "context-management-2025-06-27",
            "tool-search-tool-2025-10-19"
        ]),
        "only betas Vertex takes, under its names"
    );
    assert!(
        sent.get("output_config").is_none(),
        "effort left out: {sent}"
    );
    for field in [
        "system",
        "tools",
        "messages",
        "metadata",
        "context_management",
        "thinking",
        "max_tokens",
    ] {
        assert_eq!(sent[field], body[field], "{field} arrives as written");
    }
    // The tool loop: the thinking block goes back byte for byte.
    let call = &tool_uses(&first)[0];
    body["messages"] = json!([
        first_turn,
        {"role": "assistant", "content": first["content"]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call["id"], "content": "a.txt"}]}
    ]);
    body["stream"] = json!(true);
    let (status, _, text) = post(body.clone()).await;
    assert_eq!(status, 200, "{text}");
    let events: Vec<Value> = text
        .split("\n\n")
        .filter_map(|f| f.lines().nth(1)?.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let message = assemble(&events);
    assert_eq!(events[0]["message"]["model"], CLAUDE, "{events:#?}");
    assert_eq!(events[0]["message"]["id"], "msg_vrtx_01");
    assert!(text_of(&message).contains("a.txt"), "{message}");
    let (path, sent) = s.vertex.last();
    assert!(path.ends_with(":streamRawPredict"), "{path}");
    assert_eq!(
        sent["messages"][1]["content"], first["content"],
        "replayed as it came"
    );
    assert_eq!(s.vertex.claude_replayed().len(), 1);
    // Token counting: Vertex's endpoint, with its model id in the body.
    let count =
        json!({"model": CLAUDE, "system": system, "messages": [first_turn], "tools": tools});
    let (status, headers, text) =
        send(&s.proxy, "/v1/messages/count_tokens?beta=true", &count).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(headers["x-llmproxy-token-count"], "upstream");
    let (path, sent) = s.vertex.last();
    assert!(path.ends_with("/models/count-tokens:rawPredict"), "{path}");
    assert_eq!(sent["model"], "claude-sonnet-4-5@20250929");
    let counted: Value = serde_json::from_str(&text).unwrap();
    assert!(counted["input_tokens"].as_u64().unwrap() > 0, "{counted}");
}

/// Claude's errors through the passthrough: 529 stays 529
/// (`overloaded_error`, with its retry-after), an `error` event midway and
/// a stream cut off both end the client's stream with an `error` event; a
/// URL image (which Vertex does not fetch) is downloaded by the proxy under
/// its media policy and sent inline.
#[tokio::test]
async fn claude_errors_keep_anthropic_semantics() {
    let s = setup().await;
    let ask = |text: &str| json!({"model": CLAUDE, "max_tokens": 100, "messages": [{"role": "user", "content": text}]});
    let (status, headers, text) = send(&s.proxy, "/v1/messages", &ask("OVERLOAD")).await;
    assert_eq!(status, 529, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"]["type"], "overloaded_error", "{body}");
    assert_eq!(headers["retry-after"], "3");
    for (trigger, kind) in [
        ("OVERLOAD MIDSTREAM", "overloaded_error"),
        ("CUTOFF", "api_error"),
    ] {
        let (events, message) = stream(&s.proxy, &ask(trigger)).await;
        assert_eq!(
            events.last().unwrap()["type"],
            "error",
            "{trigger}: {events:#?}"
        );
        assert_eq!(message["error"]["type"], kind, "{trigger}: {message}");
    }
    // A URL image: Vertex fetches none, so the proxy downloads it (under
    // its media policy; here a private address, allowed for the test).
    let image = json!({"model": CLAUDE, "max_tokens": 100, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "url", "url": format!("{}/media/cat.png", s.vertex.base_url)}},
        {"type": "text", "text": "What is it?"}]}]});
    let (status, _, text) = send(&s.proxy, "/v1/messages", &image).await;
    assert_eq!(
        status, 400,
        "private addresses are refused by default: {text}"
    );
    let allowed = setup_with("[media]\nallow_private_networks = true\n").await;
    let (status, _, text) = send(&allowed.proxy, "/v1/messages", &image).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("I see image/png"), "{text}");
    let (_, sent) = allowed.vertex.last();
    assert_eq!(
        sent["messages"][0]["content"][0]["source"]["type"], "base64",
        "{sent}"
    );
}

/// The official Anthropic Python SDK (`anthropic`, installed by `.ci/run`
/// into `host/tests/python/.venv`) on Claude (passthrough) and Gemini
/// (converted): create, stream (the SDK accumulates the events itself),
/// a tool loop with parallel calls, count_tokens.
#[tokio::test]
async fn anthropic_python_sdk() {
    let Some((python, dir)) = python_venv() else {
        return;
    };
    let s = setup().await;
    for (model, hello) in [(CLAUDE, "Hello from Claude"), (GEMINI_25, "Hello")] {
        let v = run_client(
            python.to_str().unwrap(),
            &dir.join("anthropic_sdk.py"),
            &s.proxy.url,
            &[("MODEL", model), ("LLMPROXY_API_KEY", KEY)],
        )
        .await;
        assert!(
            v["plain"][0].as_str().unwrap().starts_with(hello),
            "{model}: {v}"
        );
        assert_eq!(v["plain"][1], "end_turn", "{model}: {v}");
        assert_eq!(v["plain"][2], model, "{model}: {v}");
        assert_eq!(v["streamed"][0], v["plain"][0], "{model}: {v}");
        assert_eq!(v["streamed"][1], "end_turn", "{model}: {v}");
        assert_eq!(v["streamed"][2], true, "{model}: {v}");
        assert_eq!(
            v["calls"],
            json!([["get_weather", {"city": "Paris"}], ["now", {}]]),
            "{model}: {v}"
        );
        assert_eq!(v["first_stop"], "tool_use", "{model}: {v}");
        let after = v["after_tools"].as_str().unwrap();
        assert!(
            after.contains("18C") && after.contains("noon"),
            "{model}: {v}"
        );
        assert_eq!(v["counted"], true, "{model}: {v}");
    }
}

/// Hostile input on the Messages endpoints: model names that would steer
/// the Vertex URL are refused before anything is sent, and `anthropic-beta`
/// values reach Vertex only as the betas it takes (never as text that
/// could leave the body field they go in).
#[tokio::test]
async fn hostile_models_and_betas_go_nowhere() {
    let s = setup().await;
    let hits = s.vertex.hits().len();
    for model in [
        "claude-x/../../../../projects/other/locations/x/publishers/anthropic/models/y",
        "claude-x%2F..%2Fother",
        "claude-x:streamRawPredict?alt=sse",
        "claude-x\u{0}",
        "claude-x\nHost: evil",
    ] {
        let body = json!({"model": model, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
        for path in ["/v1/messages", "/v1/messages/count_tokens"] {
            let (status, _, text) = send(&s.proxy, path, &body).await;
            assert_eq!(status, 400, "{path} {model:?}: {text}");
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["error"]["type"], "invalid_request_error", "{text}");
        }
    }
    assert_eq!(s.vertex.hits().len(), hits, "nothing reached Vertex");
    let r = s
        .proxy
        .http
        .post(format!("{}/v1/messages", s.proxy.url))
        .header("x-api-key", KEY)
        .header(
            "anthropic-beta",
            "../../x, a\"b, interleaved-thinking-2025-05-14 ,%2e%2e,context-1m-2025-08-07",
        )
        .json(&json!({"model": CLAUDE, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, sent) = s.vertex.last();
    assert_eq!(
        sent["anthropic_beta"],
        json!(["interleaved-thinking-2025-05-14", "context-1m-2025-08-07"])
    );
}
