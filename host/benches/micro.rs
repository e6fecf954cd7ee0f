//! Micro-benchmarks (criterion): model routing, the Chat ⇄ Responses
//! conversions, and each bundled translator natively vs in the Wasm sandbox
//! (fresh instance + request + response, and + a 20-event stream), and
//! what the metrics cost a request.
//!
//! Run with `just bench-micro` (or `cargo bench -p llmproxy --features
//! internals --bench micro`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use llmproxy::api::chat::ChatRequest;
use llmproxy::api::chat_request::{ChatOptions, chat_to_responses, responses_to_chat};
use llmproxy::api::chat_response::response_to_chat;
use llmproxy::api::responses::CreateResponse;
use llmproxy::internals::{Router, Sandbox, TranslatorContext};
use llmproxy_sdk::{EventStream, Translator, UpstreamResponse};
use serde_json::{Value, json};
use std::hint::black_box;

/// A 5 KB agent-style Chat request: system prompt, turns, tool calls, tools.
fn chat_request() -> Value {
    let mut messages = vec![
        json!({"role": "system", "content": "You are a coding agent. Be concise and precise."}),
    ];
    for i in 0..8 {
        messages.push(json!({"role": "user", "content": format!("Step {i}: look at src/main.rs and fix the off-by-one error in parse_args.")}));
        messages.push(json!({"role": "assistant", "tool_calls": [{"id": format!("call_{i}"), "type": "function",
            "function": {"name": "shell", "arguments": "{\"command\":\"sed -n 1,80p src/main.rs\"}"}}]}));
        messages.push(json!({"role": "tool", "tool_call_id": format!("call_{i}"), "content": "fn parse_args(args: &[String]) -> Config { let n = args.len() - 1; }"}));
    }
    let tool = |name: &str| {
        json!({"type": "function", "function": {"name": name, "description": format!("{name} in the sandbox"),
        "parameters": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}})
    };
    json!({"model": "m", "messages": messages, "tools": [tool("shell"), tool("apply_patch"), tool("read_file")], "temperature": 0.2})
}

fn canonical_request() -> Vec<u8> {
    let chat: ChatRequest = serde_json::from_value(chat_request()).unwrap();
    serde_json::to_vec(&chat_to_responses(&chat).unwrap()).unwrap()
}

const TEXT: &str = "The function subtracts one before indexing, which skips the last argument. ";

/// What each upstream answers: a whole body, and the events of a stream.
fn upstream(kind: &str) -> (Vec<u8>, Vec<(String, String)>) {
    let data = |v: Value| (String::new(), v.to_string());
    let named = |e: &str, v: Value| (e.to_string(), v.to_string());
    match kind {
        "openai" => {
            let whole = json!({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": TEXT.repeat(8)}}],
                "usage": {"prompt_tokens": 900, "completion_tokens": 80, "total_tokens": 980}});
            let mut events: Vec<_> = (0..20).map(|_| data(json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                "choices": [{"index": 0, "delta": {"content": TEXT}, "finish_reason": null}]}))).collect();
            events.push(data(json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 900, "completion_tokens": 80, "total_tokens": 980}})));
            events.push((String::new(), "[DONE]".into()));
            (whole.to_string().into_bytes(), events)
        }
        "openresponses" => {
            let message = json!({"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": TEXT.repeat(8), "annotations": []}]});
            let done = json!({"id": "resp_1", "object": "response", "created_at": 1, "status": "completed", "model": "m", "output": [message],
                "usage": {"input_tokens": 900, "output_tokens": 80, "total_tokens": 980, "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}}});
            let mut events = vec![
                named(
                    "response.created",
                    json!({"type": "response.created", "sequence_number": 0, "response": {"id": "resp_1", "status": "in_progress", "output": []}}),
                ),
                named(
                    "response.output_item.added",
                    json!({"type": "response.output_item.added", "sequence_number": 1, "output_index": 0,
                    "item": {"type": "message", "id": "msg_1", "status": "in_progress", "role": "assistant", "content": []}}),
                ),
            ];
            for i in 0..20 {
                events.push(named(
                    "response.output_text.delta",
                    json!({"type": "response.output_text.delta", "sequence_number": 2 + i,
                    "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": TEXT}),
                ));
            }
            events.push(named(
                "response.completed",
                json!({"type": "response.completed", "sequence_number": 22, "response": done}),
            ));
            (done.to_string().into_bytes(), events)
        }
        "vertex-gemini" => {
            let usage = json!({"promptTokenCount": 900, "candidatesTokenCount": 80, "totalTokenCount": 980});
            let whole = json!({"candidates": [{"content": {"role": "model", "parts": [{"text": TEXT.repeat(8)}]}, "finishReason": "STOP"}], "usageMetadata": usage});
            let events = (0..20).map(|i| {
                let mut c = json!({"candidates": [{"content": {"role": "model", "parts": [{"text": TEXT}]}}]});
                if i == 19 {
                    c["candidates"][0]["finishReason"] = json!("STOP");
                    c["usageMetadata"] = usage.clone();
                }
                data(c)
            }).collect();
            (whole.to_string().into_bytes(), events)
        }
        _ => {
            let whole = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude", "content": [{"type": "text", "text": TEXT.repeat(8)}],
                "stop_reason": "end_turn", "stop_sequence": null, "usage": {"input_tokens": 900, "output_tokens": 80}});
            let mut events = vec![
                named(
                    "message_start",
                    json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
                    "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 900, "output_tokens": 1}}}),
                ),
                named(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                ),
            ];
            for _ in 0..20 {
                events.push(named("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": TEXT}})));
            }
            events.push(named(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 0}),
            ));
            events.push(named("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 80}})));
            events.push(named("message_stop", json!({"type": "message_stop"})));
            (whole.to_string().into_bytes(), events)
        }
    }
}

fn settings(kind: &str) -> String {
    if kind.starts_with("vertex") {
        r#"{"project":"p","location":"global"}"#.into()
    } else {
        "{}".into()
    }
}

/// The plugin's own code, called natively: request, then the whole answer
/// or the stream.
fn native<T: Translator>(
    ctx: &llmproxy_sdk::Context,
    request: &[u8],
    whole: &[u8],
    events: Option<&[(String, String)]>,
) -> usize {
    let up = T::request(ctx, request).unwrap();
    match events {
        None => T::response(
            ctx,
            &up.state,
            UpstreamResponse {
                status: 200,
                headers: vec![],
                body: whole.to_vec(),
            },
        )
        .unwrap()
        .len(),
        Some(events) => {
            let mut stream = T::stream(ctx.clone(), up.state, 200, vec![]);
            let mut n = 0;
            for (event, data) in events {
                n += stream.push(event, data).unwrap().len();
            }
            n + stream.finish().unwrap().len()
        }
    }
}

fn translators(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let request = canonical_request();
    type Native = fn(&llmproxy_sdk::Context, &[u8], &[u8], Option<&[(String, String)]>) -> usize;
    let kinds: [(&str, &str, Native); 4] = [
        ("openai", "gpt-5", native::<llmproxy_plugin_openai::OpenAi>),
        (
            "openresponses",
            "qwen3",
            native::<llmproxy_plugin_openresponses::OpenResponses>,
        ),
        (
            "vertex-gemini",
            "gemini-2.5-flash",
            native::<llmproxy_plugin_vertex_gemini::VertexGemini>,
        ),
        (
            "vertex-claude",
            "claude-sonnet-4-5",
            native::<llmproxy_plugin_vertex_claude::VertexClaude>,
        ),
    ];
    for (kind, model, call) in kinds {
        let (whole, events) = upstream(kind);
        let sandbox = Sandbox::load(kind, true).unwrap();
        let host_ctx = |streaming| TranslatorContext {
            backend: "b".into(),
            model: model.into(),
            upstream_model: model.into(),
            streaming,
            settings: settings(kind),
            extras: "{}".into(),
            media: Vec::new(),
        };
        let guest_ctx = |streaming| llmproxy_sdk::Context {
            backend: "b".into(),
            model: model.into(),
            upstream_model: model.into(),
            streaming,
            settings: settings(kind),
            extras: "{}".into(),
            media: Vec::new(),
        };
        let mut group = c.benchmark_group(format!("translator/{kind}"));
        let (g, h) = (guest_ctx(false), host_ctx(false));
        group.bench_function("native: request + response", |b| {
            b.iter(|| black_box(call(&g, &request, &whole, None)))
        });
        group.bench_function("wasm: instance + request + response", |b| {
            b.iter(|| {
                black_box(
                    rt.block_on(sandbox.round_trip(&h, &request, &whole))
                        .unwrap(),
                )
            })
        });
        let (g, h) = (guest_ctx(true), host_ctx(true));
        group.bench_function("native: request + 20-event stream", |b| {
            b.iter(|| black_box(call(&g, &request, &whole, Some(&events))))
        });
        group.bench_function("wasm: instance + request + 20-event stream", |b| {
            b.iter(|| {
                black_box(
                    rt.block_on(sandbox.stream_round_trip(&h, &request, &events))
                        .unwrap(),
                )
            })
        });
        group.finish();
    }
}

fn routing_and_conversions(c: &mut Criterion) {
    let backends: Vec<Vec<String>> = (0..10)
        .map(|i| vec![format!("model-{i}-*"), format!("family{i}/{{a,b}}-*")])
        .chain([vec!["*".to_string()]])
        .collect();
    let router = Router::new(&backends).unwrap();
    assert_eq!(router.route("family7/b-large"), Some(7));
    c.bench_function("router: match among 21 globs", |b| {
        b.iter(|| black_box(router.route(black_box("family7/b-large"))))
    });

    let chat: ChatRequest = serde_json::from_value(chat_request()).unwrap();
    let canonical: CreateResponse = serde_json::from_slice(&canonical_request()).unwrap();
    let (whole, _) = upstream("openresponses");
    let response: serde_json::Map<String, Value> = serde_json::from_slice(&whole).unwrap();
    c.bench_function("convert: Chat request -> Responses (5 KB)", |b| {
        b.iter(|| black_box(chat_to_responses(black_box(&chat)).unwrap()))
    });
    c.bench_function("convert: Responses request -> Chat (5 KB)", |b| {
        b.iter(|| {
            black_box(
                responses_to_chat(black_box(&canonical), "m", false, ChatOptions::default())
                    .unwrap(),
            )
        })
    });
    c.bench_function("convert: Responses response -> Chat completion", |b| {
        b.iter(|| black_box(response_to_chat(black_box(&response), "m")))
    });
}

/// What the metrics cost a request: one finished request recorded (the
/// label lookups, counter adds and five histogram observations).
fn metrics(c: &mut Criterion) {
    let m = llmproxy::Metrics::new();
    c.bench_function("metrics: record one finished request", |b| {
        b.iter(|| llmproxy::internals::record_request(black_box(&m)))
    });
    c.bench_function("metrics: render (one label set each)", |b| {
        b.iter(|| black_box(m.render()))
    });
}

criterion_group!(benches, routing_and_conversions, translators, metrics);
criterion_main!(benches);
