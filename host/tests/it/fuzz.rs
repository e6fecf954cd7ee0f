//! Structure-aware fuzzing (proptest) of the ingress parsers and of each
//! bundled translator's mapping (natively: the same Rust the components are
//! built from), plus the Chat -> canonical -> Chat round trip.
//!
//! The corpus is the repository's golden files: each case takes one and
//! mutates it (values replaced by arbitrary JSON, fields removed or added,
//! types changed). Failures proptest found are kept in
//! `host/tests/it/fuzz.proptest-regressions` and replayed first.
//!
//! In `cargo test` each target runs a few hundred cases. `just fuzz`
//! runs every target for as long as `LLMPROXY_FUZZ_SECS` says (the release
//! profile, for more cases per second).

use llmproxy::api::chat::ChatRequest;
use llmproxy::api::chat_request::chat_to_responses;
use llmproxy_sdk::{Context, EventStream, Translator, UpstreamResponse};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestRunner};
use serde_json::{Map, Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

/// The `input` of every golden file under `dir` (relative to the repo).
fn golden(dir: &str) -> Vec<Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| {
            let v: Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
            v["input"].clone()
        })
        .collect()
}

/// Field names and values the mappings look at, so that mutations hit them.
const KEYS: &[&str] = &[
    "type",
    "role",
    "content",
    "text",
    "name",
    "arguments",
    "call_id",
    "id",
    "output",
    "input",
    "tools",
    "tool_choice",
    "parameters",
    "items",
    "parts",
    "functionCall",
    "functionResponse",
    "candidates",
    "delta",
    "index",
    "finishReason",
    "usage",
    "usageMetadata",
    "messages",
    "tool_calls",
    "function",
    "image_url",
    "url",
    "summary",
    "encrypted_content",
    "status",
    "stop_reason",
    "content_block",
    "message",
    "model",
    "stream",
    "reasoning",
    "effort",
    "max_output_tokens",
    "instructions",
    "format",
    "schema",
    "thoughtSignature",
    "thought",
    "inlineData",
    "data",
    "mimeType",
    "error",
    "code",
    "response",
    "choices",
    "finish_reason",
];
const STRINGS: &[&str] = &[
    "",
    "user",
    "assistant",
    "system",
    "developer",
    "tool",
    "model",
    "function",
    "function_call",
    "function_call_output",
    "message",
    "reasoning",
    "input_text",
    "output_text",
    "input_image",
    "input_file",
    "text",
    "image_url",
    "tool_use",
    "tool_result",
    "thinking",
    "auto",
    "none",
    "required",
    "json_schema",
    "json_object",
    "STOP",
    "MAX_TOKENS",
    "SAFETY",
    "end_turn",
    "max_tokens",
    "data:image/png;base64,iVBORw0KGgo=",
    "https://example.invalid/a.png",
    "{\"city\":\"Paris\"}",
    "{not json",
    "llmproxy:v1:AAAA",
    "\u{0}\u{feff}é✓",
    "call_1",
];

fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1e6f64..1e6).prop_map(|n| json!(n)),
        proptest::sample::select(STRINGS).prop_map(|s| json!(s)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((proptest::sample::select(KEYS), inner), 0..4).prop_map(
                |fields| {
                    Value::Object(
                        fields
                            .into_iter()
                            .map(|(k, v)| (k.to_string(), v))
                            .collect::<Map<_, _>>(),
                    )
                }
            ),
        ]
    })
}

/// One change at a path (each step picks a child by index modulo its size).
#[derive(Debug, Clone)]
enum Mutation {
    Replace(Vec<u16>, Value),
    Remove(Vec<u16>),
    Insert(Vec<u16>, &'static str, Value),
}

fn arb_mutations() -> impl Strategy<Value = Vec<Mutation>> {
    let path = || proptest::collection::vec(any::<u16>(), 0..7);
    let one = prop_oneof![
        (path(), arb_value()).prop_map(|(p, v)| Mutation::Replace(p, v)),
        path().prop_map(Mutation::Remove),
        (path(), proptest::sample::select(KEYS), arb_value())
            .prop_map(|(p, k, v)| Mutation::Insert(p, k, v)),
    ];
    proptest::collection::vec(one, 0..5)
}

/// The container holding the node a path leads to, and the key or index
/// of that node in it (`None`: the path ended at the root or a leaf).
fn walk<'a>(node: &'a mut Value, path: &[u16]) -> (&'a mut Value, Option<Step>) {
    let Some((&sel, rest)) = path.split_first() else {
        return (node, None);
    };
    let step = match &*node {
        Value::Object(m) if !m.is_empty() => {
            Step::Key(m.keys().nth(usize::from(sel) % m.len()).cloned().unwrap())
        }
        Value::Array(a) if !a.is_empty() => Step::Index(usize::from(sel) % a.len()),
        _ => return (node, None),
    };
    let child_is_container = match (&*node, &step) {
        (Value::Object(m), Step::Key(k)) => m[k].is_object() || m[k].is_array(),
        (Value::Array(a), Step::Index(i)) => a[*i].is_object() || a[*i].is_array(),
        _ => false,
    };
    if rest.is_empty() || !child_is_container {
        return (node, Some(step));
    }
    match (node, step) {
        (Value::Object(m), Step::Key(k)) => walk(m.get_mut(&k).unwrap(), rest),
        (Value::Array(a), Step::Index(i)) => walk(&mut a[i], rest),
        (n, s) => (n, Some(s)),
    }
}

#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

fn mutate(mut doc: Value, mutations: &[Mutation]) -> Value {
    for m in mutations {
        match m {
            Mutation::Replace(path, value) => match walk(&mut doc, path) {
                (Value::Object(o), Some(Step::Key(k))) => {
                    o.insert(k, value.clone());
                }
                (Value::Array(a), Some(Step::Index(i))) => a[i] = value.clone(),
                (node, _) => *node = value.clone(),
            },
            Mutation::Remove(path) => match walk(&mut doc, path) {
                (Value::Object(o), Some(Step::Key(k))) => {
                    o.remove(&k);
                }
                (Value::Array(a), Some(Step::Index(i))) => {
                    a.remove(i);
                }
                _ => {}
            },
            Mutation::Insert(path, key, value) => match walk(&mut doc, path).0 {
                Value::Object(o) => {
                    o.insert(key.to_string(), value.clone());
                }
                Value::Array(a) => a.push(value.clone()),
                _ => {}
            },
        }
    }
    doc
}

/// Runs `check` on mutated seeds: a few hundred cases, or until
/// `LLMPROXY_FUZZ_SECS` (split across the targets) have passed.
fn fuzz(target: &str, seeds: Vec<Value>, check: impl Fn(Value) -> Result<(), String>) {
    assert!(!seeds.is_empty(), "{target}: no seeds");
    let budget = std::env::var("LLMPROXY_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .map(|s| Duration::from_secs_f64(s / TARGETS as f64));
    let started = Instant::now();
    let mut cases = 0u64;
    loop {
        let config = Config {
            cases: if budget.is_some() { 5_000 } else { 300 },
            failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/it/fuzz.proptest-regressions"
            )))),
            ..Config::default()
        };
        let mut runner = if budget.is_some() {
            TestRunner::new(config)
        } else {
            // Deterministic in CI: the same cases every run.
            TestRunner::new_with_rng(
                config,
                proptest::test_runner::TestRng::deterministic_rng(
                    proptest::test_runner::RngAlgorithm::ChaCha,
                ),
            )
        };
        let strategy = (0..seeds.len(), arb_mutations());
        let result = runner.run(&strategy, |(seed, mutations)| {
            let doc = mutate(seeds[seed].clone(), &mutations);
            check(doc).map_err(TestCaseError::fail)
        });
        if let Err(e) = result {
            panic!("{target}: {e}");
        }
        cases += u64::from(runner.config().cases);
        match budget {
            Some(b) if started.elapsed() < b => continue,
            _ => break,
        }
    }
    eprintln!(
        "fuzz {target}: {cases} cases in {:.1} s, no failure",
        started.elapsed().as_secs_f64()
    );
}

/// How many targets share `LLMPROXY_FUZZ_SECS`.
const TARGETS: usize = 10;

/// Every canonical event or response a translator returns is a JSON object.
fn objects(out: &[String]) -> Result<(), String> {
    for text in out {
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(_)) => {}
            _ => return Err(format!("not a JSON object: {text}")),
        }
    }
    Ok(())
}

fn ctx(streaming: bool, settings: &str, extras: &str) -> Context {
    Context {
        backend: "fuzz".into(),
        model: "m".into(),
        upstream_model: "m-upstream".into(),
        streaming,
        settings: settings.into(),
        extras: extras.into(),
        media: Vec::new(),
    }
}

/// A translator's three mappings on mutated inputs: requests from the
/// canonical seeds, complete answers and stream events from its own.
fn translator<T: Translator>(name: &str, settings: &str, answers: Vec<Value>, streams: Vec<Value>) {
    fuzz(&format!("{name}-request"), requests(), |doc| {
        let body = serde_json::to_vec(&doc).unwrap();
        let streaming = doc["stream"] == json!(true);
        let _ = T::request(&ctx(streaming, settings, "{}"), &body);
        Ok(())
    });
    let events = streams;
    fuzz(
        &format!("{name}-answer"),
        answers.into_iter().chain(events.clone()).collect(),
        |doc| {
            for status in [200, 400, 429, 500] {
                let body = serde_json::to_vec(&doc).unwrap();
                let up = UpstreamResponse {
                    status,
                    headers: vec![],
                    body,
                };
                if let Ok(out) = T::response(&ctx(false, settings, "{}"), "", up) {
                    objects(&[String::from_utf8_lossy(&out).into_owned()])?;
                }
            }
            // The same document as a stream: each array element an event.
            let mut stream = T::stream(ctx(true, settings, "{}"), String::new(), 200, vec![]);
            let items = match doc {
                Value::Array(items) => items,
                other => vec![other],
            };
            for item in items {
                let kind = item
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                match stream.push(&kind, &item.to_string()) {
                    Ok(out) => objects(&out)?,
                    Err(_) => return Ok(()),
                }
            }
            if let Ok(out) = stream.finish() {
                objects(&out)?;
            }
            Ok(())
        },
    );
}

/// Canonical requests: the Responses-side golden inputs of every mapping.
fn requests() -> Vec<Value> {
    let mut seeds = golden("api/tests/golden/responses_to_chat");
    for p in ["vertex-gemini", "vertex-claude"] {
        seeds.extend(
            golden(&format!("plugins/{p}/tests/golden/request"))
                .into_iter()
                .map(|v| v["request"].clone()),
        );
    }
    seeds
}

/// Upstream answers and event lists from a plugin's golden files.
fn plugin_answers(plugin: &str) -> (Vec<Value>, Vec<Value>) {
    let answers = golden(&format!("plugins/{plugin}/tests/golden/response"))
        .into_iter()
        .map(|v| v["body"].clone())
        .collect();
    let streams = golden(&format!("plugins/{plugin}/tests/golden/stream"))
        .into_iter()
        .map(|v| v.get("chunks").or(v.get("events")).cloned().unwrap_or(v))
        .collect();
    (answers, streams)
}

#[test]
fn ingress_parsers_never_panic_and_refuse_with_4xx() {
    let chats = golden("api/tests/golden/chat_to_responses");
    let messages = golden("api/tests/golden/messages_to_responses");
    let mut seeds = requests();
    seeds.extend(chats.clone());
    seeds.extend(messages.clone());
    fuzz("ingress", seeds, |doc| {
        let whole = serde_json::to_vec(&doc).unwrap();
        let cut = whole[..whole.len() / 2].to_vec();
        for body in [whole, cut] {
            for endpoint in ["responses", "chat", "messages"] {
                if let Err(e) = llmproxy::internals::ingress(endpoint, &body) {
                    let status = e.status().as_u16();
                    if !(400..500).contains(&status) {
                        return Err(format!("{endpoint}: {status} {e}"));
                    }
                }
            }
        }
        Ok(())
    });
    fuzz("chat-conversions", chats, |doc| {
        if let Ok(chat) = serde_json::from_value::<ChatRequest>(doc) {
            let _ = chat_to_responses(&chat);
        }
        Ok(())
    });
    fuzz("messages-conversions", messages, |doc| {
        use llmproxy::api::messages::MessagesRequest;
        use llmproxy::api::messages::request::messages_to_responses;
        if let Ok(request) = serde_json::from_value::<MessagesRequest>(doc) {
            let _ = messages_to_responses(&request);
        }
        Ok(())
    });
}

#[test]
fn translators_never_panic_on_mutated_requests_answers_and_events() {
    let (answers, streams) = plugin_answers("vertex-gemini");
    translator::<llmproxy_plugin_vertex_gemini::VertexGemini>(
        "vertex-gemini",
        r#"{"project":"p","location":"global"}"#,
        answers,
        streams,
    );
    let (answers, streams) = plugin_answers("vertex-claude");
    translator::<llmproxy_plugin_vertex_claude::VertexClaude>(
        "vertex-claude",
        r#"{"project":"p","location":"us-east5"}"#,
        answers,
        streams,
    );
    // The OpenAI-shaped backends: Chat completions and chunks, Responses
    // objects and events.
    let answers = vec![
        crate::support::response_object("m", "completed", "hello"),
        json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi",
               "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
               "finish_reason": "tool_calls"}], "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}),
    ];
    let streams: Vec<Value> = golden("api/tests/golden/chunks_to_events")
        .into_iter()
        .chain(golden("api/tests/golden/events_to_chunks"))
        .map(|v| v.get("chunks").or(v.get("events")).cloned().unwrap_or(v))
        .collect();
    translator::<llmproxy_plugin_openai::OpenAi>("openai", "{}", answers.clone(), streams.clone());
    translator::<llmproxy_plugin_openresponses::OpenResponses>(
        "openresponses",
        "{}",
        answers,
        streams,
    );
}

/// Chat requests made of what the canonical request can carry: every role,
/// text and image parts, tool calls and results, tools, tool choice,
/// structured output, sampling and the other shared parameters. Chat-only
/// parameters (`n`, `logprobs`, `seed`, `stop`, `store`, ...) are not in
/// the canonical form: they travel in the translator's extras, and reach a
/// Chat backend verbatim (`chat_arrives_at_a_chat_backend_exactly_as_sent`).
fn arb_chat() -> impl Strategy<Value = Value> {
    let text = "[a-zA-Z0-9 é✓{}\":,.]{1,16}";
    let id = "call_[a-z0-9]{1,8}";
    let name = "[a-z][a-z_]{0,10}";
    let args = prop_oneof![
        Just("{}".to_string()),
        Just(r#"{"city":"Paris"}"#.to_string())
    ];
    let user_content = prop_oneof![
        text.prop_map(|t| json!(t)),
        proptest::collection::vec(
            prop_oneof![
                text.prop_map(|t| json!({"type": "text", "text": t})),
                Just(json!({"type": "image_url", "image_url": {"url": "https://example.invalid/a.png", "detail": "low"}})),
            ],
            1..3
        )
        .prop_map(Value::Array),
    ];
    let call = (id, name, args).prop_map(|(id, name, arguments)| {
        json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}})
    });
    // A conversation: system, then turns; each assistant turn with tool
    // calls is followed by one tool message per call.
    let turn = prop_oneof![
        user_content.prop_map(|c| vec![json!({"role": "user", "content": c})]),
        text.prop_map(|t| vec![json!({"role": "assistant", "content": t})]),
        (
            proptest::option::of(text),
            proptest::collection::vec(call, 1..3),
            text
        )
            .prop_map(|(content, calls, output)| {
                let mut assistant = json!({"role": "assistant", "tool_calls": calls.clone()});
                if let Some(c) = content {
                    assistant["content"] = json!(c);
                }
                let mut turn = vec![assistant];
                // Ids must be distinct within the turn.
                let mut seen = std::collections::HashSet::new();
                for call in &calls {
                    if !seen.insert(call["id"].clone()) {
                        continue;
                    }
                    turn.push(
                        json!({"role": "tool", "tool_call_id": call["id"], "content": output}),
                    );
                }
                turn
            }),
    ];
    let messages = (
        proptest::option::of(text),
        proptest::collection::vec(turn, 1..5),
        user_content_last(),
    )
        .prop_map(|(system, turns, last)| {
            let mut m: Vec<Value> = system
                .map(|s| json!({"role": "system", "content": s}))
                .into_iter()
                .collect();
            for t in turns {
                // Chat conversations alternate: two assistant messages in a
                // row are one turn in the canonical form.
                let after_assistant = m
                    .last()
                    .is_some_and(|l| l["role"] == "assistant" || l["role"] == "tool");
                if after_assistant && t[0]["role"] == "assistant" {
                    m.push(json!({"role": "user", "content": "go on"}));
                }
                m.extend(t);
            }
            m.push(json!({"role": "user", "content": last}));
            m
        });
    let tool = (name, proptest::option::of(text)).prop_map(|(name, description)| {
        let mut f = json!({"name": name, "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}});
        if let Some(d) = description {
            f["description"] = json!(d);
        }
        json!({"type": "function", "function": f})
    });
    let params = (
        proptest::option::of((0u32..=20).prop_map(|t| f64::from(t) / 10.0)),
        proptest::option::of((1u32..=10).prop_map(|t| f64::from(t) / 10.0)),
        proptest::option::of(1u64..5000),
        proptest::option::of(any::<bool>()),
        proptest::option::of(proptest::sample::select(vec!["low", "medium", "high"])),
        proptest::option::of(prop_oneof![
            Just(json!({"type": "text"})),
            Just(json!({"type": "json_object"})),
            Just(
                json!({"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": true}})
            ),
        ]),
    );
    let more = (
        proptest::option::of("[a-z]{1,6}".prop_map(|v| json!({"tag": v}))),
        proptest::option::of(proptest::sample::select(vec!["auto", "default", "flex"])),
        proptest::option::of("[a-z0-9]{1,10}"),
        proptest::option::of("[a-z0-9]{1,10}"),
        proptest::option::of(proptest::sample::select(vec!["low", "medium", "high"])),
    );
    (
        messages,
        proptest::collection::vec(tool, 0..3),
        proptest::option::of(prop_oneof![
            Just(json!("auto")),
            Just(json!("none")),
            Just(json!("required"))
        ]),
        params,
        more,
    )
        .prop_map(
            |(
                messages,
                tools,
                choice,
                (temperature, top_p, max, parallel, effort, format),
                (metadata, tier, cache_key, safety, verbosity),
            )| {
                let mut chat = json!({"model": "m", "messages": messages});
                if !tools.is_empty() {
                    chat["tools"] = json!(tools);
                    if let Some(c) = choice {
                        chat["tool_choice"] = c;
                    }
                    if let Some(p) = parallel {
                        chat["parallel_tool_calls"] = json!(p);
                    }
                }
                for (key, value) in [
                    ("temperature", temperature.map(|v| json!(v))),
                    ("top_p", top_p.map(|v| json!(v))),
                    ("max_completion_tokens", max.map(|v| json!(v))),
                    ("reasoning_effort", effort.map(|v| json!(v))),
                    ("response_format", format),
                    ("metadata", metadata),
                    ("service_tier", tier.map(|v| json!(v))),
                    ("prompt_cache_key", cache_key.map(|v| json!(v))),
                    ("safety_identifier", safety.map(|v| json!(v))),
                    ("verbosity", verbosity.map(|v| json!(v))),
                ] {
                    if let Some(v) = value {
                        chat[key] = v;
                    }
                }
                chat
            },
        )
}

fn user_content_last() -> impl Strategy<Value = String> {
    "[a-z ]{1,12}"
}

/// Tool-call ids are unique across a conversation.
fn unique_call_ids(chat: &Value) -> bool {
    let mut seen = std::collections::HashSet::new();
    chat["messages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["tool_calls"].as_array().cloned().unwrap_or_default())
        .all(|c| seen.insert(c["id"].clone()))
}

/// Representations that mean the same in Chat: text parts and a string;
/// `content: null` and no content.
fn normalized(mut chat: Value) -> Value {
    for m in chat["messages"].as_array_mut().unwrap() {
        if m["content"].is_null()
            && let Some(m) = m.as_object_mut()
        {
            m.remove("content");
        }
        if let Some(parts) = m["content"].as_array()
            && parts.iter().all(|p| p["type"] == "text")
        {
            let text: String = parts.iter().map(|p| p["text"].as_str().unwrap()).collect();
            m["content"] = json!(text);
        }
    }
    chat
}

#[test]
fn chat_to_canonical_to_chat_keeps_every_field() {
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases: 500,
            failure_persistence: None,
            ..Config::default()
        },
        proptest::test_runner::TestRng::deterministic_rng(
            proptest::test_runner::RngAlgorithm::ChaCha,
        ),
    );
    runner
        .run(&arb_chat(), |chat| {
            if !unique_call_ids(&chat) {
                return Ok(());
            }
            let request: ChatRequest = serde_json::from_value(chat.clone()).unwrap();
            let canonical = chat_to_responses(&request)
                .map_err(|e| TestCaseError::fail(format!("refused: {}", e.message)))?;
            let back = llmproxy::api::chat_request::responses_to_chat(
                &canonical,
                "m",
                false,
                Default::default(),
            )
            .map_err(|e| TestCaseError::fail(format!("refused back: {}", e.message)))?;
            let back = serde_json::to_value(&back).unwrap();
            prop_assert_eq!(normalized(back), normalized(chat));
            Ok(())
        })
        .unwrap();
}
