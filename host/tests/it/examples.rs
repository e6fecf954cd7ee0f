//! The example translators of `examples/`, built as their authors would
//! build them (`.ci/run` does), loaded from files through config: the Rust
//! template (Mistral) and the Python one (Ollama's native API).

use crate::spec::check_stream;
use crate::support::*;
use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// An example translator's component, built by `.ci/run` into the shared
/// target directory; `None` (test skipped) outside CI when not built.
fn example(file: &str) -> Option<PathBuf> {
    built(
        target_dir().join("examples").join(file),
        "see .ci/run or `just examples`",
    )
}

fn key_file(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("llmproxy-it-{name}-{}", std::process::id()));
    std::fs::write(&path, "sk-example\n").unwrap();
    path
}

#[tokio::test]
async fn the_rust_template_serves_mistral_requests() {
    let Some(wasm) = example("wasm32-wasip2/release/mistral_translator.wasm") else {
        return;
    };
    let up = FakeUpstream::start().await;
    let key = key_file("mistral");
    let toml = format!(
        "[[backends]]\nname = \"mistral\"\ntranslator = {{ path = {wasm:?} }}\nbase_url = {:?}\nauth = {{ bearer_file = {key:?} }}\nmodels = [\"mistral-*\"]\nsettings = {{ api_version = \"v1\" }}\n",
        up.base_url.trim_end_matches("/v1")
    );
    let proxy = TestProxy::start(&toml).await;
    let (status, _, v) = proxy
        .post(
            "/v1/responses",
            &json!({"model": "mistral-large", "max_output_tokens": 64, "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
                    "input": [{"type": "message", "role": "user", "content": "hi"},
                              {"type": "function_call", "call_id": "call_from_elsewhere_1", "name": "f", "arguments": "{}"},
                              {"type": "function_call_output", "call_id": "call_from_elsewhere_1", "output": "42"}]}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["output"][0]["content"][0]["text"], "Results: 42");
    let sent = up.last();
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(sent.headers["authorization"], "Bearer sk-example");
    assert_eq!(sent.body["max_tokens"], 64);
    let id = sent.body["messages"][1]["tool_calls"][0]["id"]
        .as_str()
        .unwrap();
    assert!(
        id.len() == 9 && id.chars().all(|c| c.is_ascii_alphanumeric()),
        "{id}"
    );
    assert_eq!(sent.body["messages"][2]["tool_call_id"], id);

    // A streaming Chat client with Chat-only parameters.
    let raw = chat_stream_raw(
        &proxy,
        &json!({"model": "mistral-small", "stream": true, "stop": ["END"], "seed": 3,
                "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    let (text, finish, _, _, done) = chat_chunks(&raw);
    assert_eq!(
        (text.as_str(), finish, done),
        ("Hello from mistral-small", vec!["stop".to_string()], true)
    );
    let sent = up.last().body;
    assert_eq!(
        (&sent["stop"], &sent["random_seed"]),
        (&json!(["END"]), &json!(3))
    );
    assert!(
        sent.get("stream_options").is_none() && sent.get("seed").is_none(),
        "{sent}"
    );

    let (status, _, v) = proxy
        .post(
            "/v1/chat/completions",
            &json!({"model": "mistral-small", "logit_bias": {"1": 1}, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["param"], "logit_bias");
    let _ = std::fs::remove_file(key);
}

/// What the fake Ollama received, and the answers it gives in turn.
#[derive(Clone, Default)]
struct Ollama {
    received: Arc<Mutex<Vec<Value>>>,
    answers: Arc<Mutex<Vec<(u16, Value)>>>,
}

async fn ollama_chat(
    State(state): State<Ollama>,
    Json(body): Json<Value>,
) -> (http::StatusCode, Json<Value>) {
    state.received.lock().unwrap().push(body);
    let (status, answer) = state.answers.lock().unwrap().remove(0);
    (http::StatusCode::from_u16(status).unwrap(), Json(answer))
}

#[tokio::test]
async fn the_python_translator_serves_ollama_requests() {
    let Some(wasm) = example("ollama.wasm") else {
        return;
    };
    let state = Ollama::default();
    let app = axum::Router::new()
        .route("/api/chat", axum::routing::post(ollama_chat))
        .route(
            "/cat.png",
            axum::routing::get(|| async { b"\x89PNG\r\n\x1a\nfake".to_vec() }),
        )
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let toml = format!(
        "[media]\nallow_private_networks = true\n\n[[backends]]\nname = \"ollama\"\ntranslator = {{ path = {wasm:?} }}\nbase_url = \"{base}\"\nmodels = [\"*\"]\nsettings = {{ options = {{ num_ctx = 8192 }}, keep_alive = \"5m\" }}\nlimits = {{ memory_limit_mib = 256 }}\n"
    );
    let proxy = TestProxy::start(&toml).await;

    // A tool call with thinking, streamed to the client.
    state.answers.lock().unwrap().push((200, json!({
        "model": "qwen3", "created_at": "2026-01-01T00:00:00Z", "done": true, "done_reason": "stop",
        "message": {"role": "assistant", "content": "", "thinking": "The user wants weather.",
                    "tool_calls": [{"function": {"name": "weather", "arguments": {"city": "Paris"}}}]},
        "prompt_eval_count": 20, "eval_count": 7
    })));
    let tools = json!([{"type": "function", "name": "weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]);
    let (status, events, _) = proxy
        .post_stream(
            "/v1/responses",
            &json!({"model": "qwen3", "stream": true, "instructions": "Be brief.", "reasoning": {"effort": "high"},
                    "temperature": 0.2, "tools": tools,
                    "input": [{"type": "message", "role": "user", "content": [
                        {"type": "input_text", "text": "Weather where this cat is?"},
                        {"type": "input_image", "image_url": format!("{base}/cat.png")}]}]}),
        )
        .await;
    assert_eq!(status, 200);
    check_stream(&events).unwrap();
    let done = &events.last().unwrap()["response"];
    assert_eq!(done["status"], "completed", "{done}");
    let call = &done["output"][1];
    assert_eq!(
        (&call["type"], &call["name"]),
        (&json!("function_call"), &json!("weather"))
    );
    assert_eq!(call["arguments"], r#"{"city": "Paris"}"#);
    assert_eq!(
        done["output"][0]["summary"][0]["text"],
        "The user wants weather."
    );
    assert_eq!(done["usage"]["total_tokens"], 27);
    let sent = state.received.lock().unwrap().last().cloned().unwrap();
    assert_eq!(sent["stream"], false);
    assert_eq!(sent["think"], true);
    assert_eq!(sent["keep_alive"], "5m");
    assert_eq!(
        sent["options"],
        json!({"num_ctx": 8192, "temperature": 0.2})
    );
    assert_eq!(
        sent["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(
        sent["messages"][1]["images"],
        json!(["iVBORw0KGgpmYWtl"]),
        "the host fetched the image the translator asked for"
    );

    // The tool result goes back; a Chat client this time.
    state.answers.lock().unwrap().push((200, json!({
        "model": "qwen3", "done": true, "done_reason": "length",
        "message": {"role": "assistant", "content": "Sunny in"}, "prompt_eval_count": 30, "eval_count": 2
    })));
    let call_id = call["call_id"].as_str().unwrap();
    let (status, _, v) = proxy
        .post(
            "/v1/chat/completions",
            &json!({"model": "qwen3", "seed": 9, "stop": "\n\n", "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "tool_calls": [{"id": call_id, "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": call_id, "content": "sunny"}]}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], "Sunny in");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    let sent = state.received.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        sent["messages"][1]["tool_calls"][0]["function"]["arguments"],
        json!({"city": "Paris"})
    );
    assert_eq!(
        sent["messages"][2],
        json!({"role": "tool", "content": "sunny", "tool_name": "weather"})
    );
    assert_eq!(
        (&sent["options"]["seed"], &sent["options"]["stop"]),
        (&json!(9), &json!(["\n\n"]))
    );

    // Ollama's errors keep their status and message.
    state.answers.lock().unwrap().push((
        404,
        json!({"error": "model \"nope\" not found, try pulling it first"}),
    ));
    let (status, _, v) = proxy
        .post("/v1/responses", &json!({"model": "nope", "input": "hi"}))
        .await;
    assert_eq!(status, 404, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("try pulling it first"),
        "{v}"
    );
    let (status, _, v) = proxy
        .post(
            "/v1/responses",
            &json!({"model": "qwen3", "input": "hi", "tools": [{"type": "web_search"}]}),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["param"], "tools");
}
