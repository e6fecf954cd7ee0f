//! Per-request translator cost: the bundled openresponses translator called
//! natively (the baseline) and inside the sandbox with a fresh instance per
//! request, for a 5 KB Responses request and a 1.4 KB response; plus what
//! precompiling the bundled translators saves at startup.
//!
//! Run with `just bench` (or `cargo bench -p llmproxy --features internals
//! --bench translator`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use llmproxy::internals::{Sandbox, TranslatorContext};
use llmproxy_plugin_openresponses::OpenResponses;
use llmproxy_sdk::{Translator, UpstreamResponse};
use serde_json::json;

/// A 5 KB agent-style request: instructions, a few turns, tool definitions.
fn request_5kb() -> Vec<u8> {
    let tool = |name: &str| {
        json!({"type": "function", "name": name, "description": format!("{name}: run a shell command in the sandbox and return stdout"),
               "parameters": {"type": "object", "properties": {"command": {"type": "string", "description": "the command"},
               "timeout_ms": {"type": "integer"}, "workdir": {"type": "string"}}, "required": ["command"]}, "strict": false})
    };
    let mut input = Vec::new();
    for i in 0..8 {
        input.push(json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": format!("Step {i}: please look at src/main.rs and tell me what the function parse_args does, then fix the off-by-one error.")}]}));
        input.push(json!({"type": "function_call", "call_id": format!("call_{i}"), "name": "shell", "arguments": "{\"command\":\"sed -n 1,80p src/main.rs\"}"}));
        input.push(json!({"type": "function_call_output", "call_id": format!("call_{i}"), "output": "fn parse_args(args: &[String]) -> Config { let n = args.len() - 1; /* ... */ }"}));
    }
    let body = json!({
        "model": "qwen3", "instructions": "You are a coding agent. Be concise and precise.",
        "input": input, "tools": [tool("shell"), tool("apply_patch"), tool("read_file")],
        "tool_choice": "auto", "parallel_tool_calls": true, "temperature": 0.2,
        "reasoning": {"effort": "medium"}, "store": false, "stream": false
    });
    let bytes = serde_json::to_vec(&body).unwrap();
    assert!(
        (4500..6000).contains(&bytes.len()),
        "request is {} bytes",
        bytes.len()
    );
    bytes
}

fn response_body() -> Vec<u8> {
    let text = "The function parse_args subtracts one from the argument count before indexing, which skips the last argument. ".repeat(8);
    serde_json::to_vec(&json!({
        "id": "resp_1", "object": "response", "created_at": 1767000000, "status": "completed", "model": "qwen3",
        "output": [{"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": []}]}],
        "usage": {"input_tokens": 1200, "input_tokens_details": {"cached_tokens": 800}, "output_tokens": 180,
                  "output_tokens_details": {"reasoning_tokens": 40}, "total_tokens": 1380}
    }))
    .unwrap()
}

fn main() {
    let request = request_5kb();
    let response = response_body();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sandbox = Sandbox::load("openresponses", true).unwrap();
    let host_ctx = TranslatorContext {
        backend: "local".into(),
        model: "qwen3".into(),
        upstream_model: "qwen3:8b".into(),
        streaming: false,
        settings: "{}".into(),
        extras: "{}".into(),
        media: Vec::new(),
    };
    let guest_ctx = llmproxy_sdk::Context {
        backend: host_ctx.backend.clone(),
        model: host_ctx.model.clone(),
        upstream_model: host_ctx.upstream_model.clone(),
        streaming: false,
        settings: "{}".into(),
        extras: "{}".into(),
        media: Vec::new(),
    };
    let (warmup, iters) = (2_000, 20_000);
    let native = common::time(
        "native Rust, same mapping code (baseline)",
        warmup,
        iters,
        || {
            let up = OpenResponses::request(&guest_ctx, &request).unwrap();
            std::hint::black_box(up);
            let out = OpenResponses::response(
                &guest_ctx,
                "",
                UpstreamResponse {
                    status: 200,
                    headers: vec![("content-type".into(), "application/json".into())],
                    body: response.clone(),
                },
            )
            .unwrap();
            std::hint::black_box(out);
        },
    );
    let wasm = common::time(
        "Wasm: fresh instance + request + response",
        warmup,
        iters,
        || {
            let out = rt
                .block_on(sandbox.round_trip(&host_ctx, &request, &response))
                .unwrap();
            std::hint::black_box(out);
        },
    );
    let instantiate = common::time("Wasm: instantiate + drop only", warmup, iters, || {
        rt.block_on(sandbox.instantiate()).unwrap();
    });
    common::table(
        &format!(
            "openresponses translator, {} B request + {} B response, per request",
            request.len(),
            response.len()
        ),
        &[native, wasm, instantiate],
    );

    let precompiled = common::time(
        "load precompiled (.cwasm, what llmproxy does)",
        3,
        50,
        || {
            std::hint::black_box(Sandbox::load("openresponses", true).unwrap());
        },
    );
    let compiled = common::time("compile from .wasm (baseline)", 1, 5, || {
        std::hint::black_box(Sandbox::load("openresponses", false).unwrap());
    });
    common::table(
        "loading a bundled translator at startup (engine + component + pre-instantiation)",
        &[compiled, precompiled],
    );
}
