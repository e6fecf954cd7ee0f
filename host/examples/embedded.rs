//! llmproxy inside a program: build a proxy from TOML, ask one question,
//! then run a streamed tool loop - no sidecar, no HTTP between the two.
//!
//! ```sh
//! # Against Ollama's OpenAI-compatible API (the defaults):
//! cargo run --example embedded
//! # Against another server:
//! UPSTREAM_BASE_URL=http://127.0.0.1:8000/v1 MODEL=Qwen/Qwen3-8B cargo run --example embedded
//! ```

use futures_util::StreamExt;
use llmproxy::Proxy;
use llmproxy::api::events::ResponseEvent;
use llmproxy::api::responses::{CreateResponse, Item};
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let base_url =
        std::env::var("UPSTREAM_BASE_URL").unwrap_or_else(|_| "http://127.0.0.1:11434/v1".into());
    let model = std::env::var("MODEL").unwrap_or_else(|_| "qwen3".into());
    let proxy = Proxy::from_toml(&format!(
        r#"
        [[backends]]
        name = "local"
        kind = "openai"
        base_url = "{base_url}"
        auth = "none"
        models = ["*"]
        "#
    ))
    .await?;

    // One question, one answer.
    let request: CreateResponse = serde_json::from_value(json!({
        "model": model,
        "input": "Say hello in French.",
    }))?;
    let response = proxy.create_response(request).await?;
    println!("answer: {}", response.output_text());

    // A tool loop, streamed: print text as it comes, run the tools the
    // model calls, send their results back, until it answers.
    let tools = json!([{
        "type": "function",
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    }]);
    let mut input = vec![json!({"role": "user", "content": "What is the weather in Paris?"})];
    for _turn in 0..5 {
        let request: CreateResponse = serde_json::from_value(json!({
            "model": model, "input": input, "tools": tools,
        }))?;
        let mut events = proxy.stream_response(request).await?;
        let mut calls = Vec::new();
        while let Some(event) = events.next().await {
            match event {
                ResponseEvent::OutputTextDelta(d) => print!("{}", d.delta),
                ResponseEvent::OutputItemDone(done) => {
                    if let Item::FunctionCall(call) = &done.item {
                        calls.push(call.clone());
                    }
                    // The model's turn goes back as input, as it came.
                    input.push(serde_json::to_value(&done.item)?);
                }
                ResponseEvent::Error(e) => return Err(format!("stream failed: {}", e.error).into()),
                _ => {}
            }
        }
        if calls.is_empty() {
            println!();
            return Ok(());
        }
        for call in calls {
            let args: serde_json::Value = serde_json::from_str(&call.arguments)?;
            let result = format!("sunny, 21 C in {}", args["city"].as_str().unwrap_or("?"));
            println!("tool: {}({}) -> {result}", call.name, call.arguments);
            input.push(
                json!({"type": "function_call_output", "call_id": call.call_id, "output": result}),
            );
        }
    }
    Err("the model kept calling tools".into())
}
