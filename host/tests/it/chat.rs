//! `POST /v1/chat/completions` against every backend kind, and Responses
//! clients against the openai backend.

use crate::spec::{check_response, check_stream};
use crate::support::*;
use serde_json::{Value, json};
use std::time::Duration;

const WEATHER: &str = r#"{"type":"function","function":{"name":"get_weather","description":"Weather by city","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}"#;
const NOW: &str = r#"{"type":"function","function":{"name":"now","parameters":{"type":"object","properties":{}}}}"#;

fn tools() -> Value {
    json!([
        serde_json::from_str::<Value>(WEATHER).unwrap(),
        serde_json::from_str::<Value>(NOW).unwrap()
    ])
}

async fn openai_proxy(extra: &str) -> (FakeUpstream, TestProxy) {
    let up = FakeUpstream::start().await;
    let proxy = TestProxy::start(&backend(
        "openai",
        &up.base_url,
        &format!("auth = \"none\"\n{extra}"),
    ))
    .await;
    (up, proxy)
}

/// Reassembles streamed chunks: (role on first delta, text, tool calls as
/// (index, id, name, arguments), finish reasons, usage chunks, reasoning).
#[derive(Debug, Default)]
struct Assembled {
    first_role: Option<String>,
    text: String,
    reasoning: String,
    calls: Vec<(u64, String, String, String)>,
    finish: Vec<String>,
    usage: Vec<Value>,
    usage_nulls: usize,
    errors: Vec<Value>,
    done: bool,
    chunks: usize,
}

fn assemble(body: &str) -> Assembled {
    let mut a = Assembled::default();
    for block in body.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let data = block
            .strip_prefix("data: ")
            .unwrap_or_else(|| panic!("not a data frame: {block}"));
        assert!(!a.done, "frame after [DONE]: {data}");
        if data == "[DONE]" {
            a.done = true;
            continue;
        }
        let v: Value = serde_json::from_str(data).unwrap();
        if v.get("error").is_some() {
            a.errors.push(v);
            continue;
        }
        a.chunks += 1;
        assert_eq!(v["object"], "chat.completion.chunk");
        if v.get("usage").is_some_and(Value::is_null) {
            a.usage_nulls += 1;
        }
        let choices = v["choices"].as_array().unwrap();
        if choices.is_empty() {
            a.usage.push(v["usage"].clone());
            continue;
        }
        let c = &choices[0];
        let d = &c["delta"];
        if a.chunks == 1 {
            a.first_role = d["role"].as_str().map(str::to_string);
        } else {
            assert!(d.get("role").is_none(), "role only on the first delta");
        }
        if let Some(t) = d["content"].as_str() {
            a.text.push_str(t);
        }
        if let Some(t) = d["reasoning_content"].as_str() {
            a.reasoning.push_str(t);
        }
        for tc in d["tool_calls"].as_array().into_iter().flatten() {
            let i = tc["index"].as_u64().expect("index on every fragment");
            if let Some(id) = tc.get("id") {
                assert_eq!(a.calls.len() as u64, i, "a new call gets the next index");
                a.calls.push((
                    i,
                    id.as_str().unwrap().into(),
                    tc["function"]["name"].as_str().unwrap().into(),
                    String::new(),
                ));
                assert_eq!(tc["type"], "function");
            } else {
                assert!(
                    tc.pointer("/function/name").is_none(),
                    "name only on a call's first delta"
                );
            }
            if let Some(args) = tc.pointer("/function/arguments").and_then(Value::as_str) {
                a.calls[i as usize].3.push_str(args);
            }
        }
        if let Some(f) = c["finish_reason"].as_str() {
            a.finish.push(f.to_string());
        }
    }
    a
}

async fn chat_stream(proxy: &TestProxy, body: &Value) -> (u16, Assembled) {
    let r = proxy
        .http
        .post(format!("{}/v1/chat/completions", proxy.url))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    if status == 200 {
        assert_eq!(r.headers()["content-type"], "text/event-stream");
    }
    (status, assemble(&r.text().await.unwrap()))
}

#[tokio::test]
async fn chat_to_openresponses_backend_non_stream_and_stream() {
    let up = FakeUpstream::start().await;
    let proxy = TestProxy::start(&single(&up.base_url)).await;
    let body = json!({"model": "qwen3", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}], "max_tokens": 100});
    let (status, _, v) = proxy.post("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "qwen3");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(
        v["choices"][0]["message"],
        json!({"role": "assistant", "content": "Hello from qwen3", "refusal": null})
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8,
               "prompt_tokens_details": {"cached_tokens": 1}, "completion_tokens_details": {"reasoning_tokens": 0}})
    );
    // The OpenResponses server got a Responses request.
    let got = up.last().body;
    assert_eq!(
        got["input"][0],
        json!({"type": "message", "role": "system", "content": "be brief"})
    );
    assert_eq!(got["max_output_tokens"], 100);

    let mut body = body;
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let (status, a) = chat_stream(&proxy, &body).await;
    assert_eq!(status, 200);
    assert_eq!(a.first_role.as_deref(), Some("assistant"));
    assert_eq!(a.text, "Hello from qwen3");
    assert_eq!(a.finish, ["stop"]);
    assert_eq!(a.usage.len(), 1, "one usage chunk");
    assert_eq!(a.usage[0]["total_tokens"], 8);
    assert_eq!(
        a.usage_nulls,
        a.chunks - 1,
        "usage: null on every other chunk"
    );
    assert!(a.done);

    body.as_object_mut().unwrap().remove("stream_options");
    let (_, a) = chat_stream(&proxy, &body).await;
    assert!(
        a.usage.is_empty() && a.usage_nulls == 0,
        "no usage unless asked"
    );
    assert!(a.done);
}

#[tokio::test]
async fn chat_only_parameters_are_refused_by_a_responses_backend() {
    let up = FakeUpstream::start().await;
    let proxy = TestProxy::start(&single(&up.base_url)).await;
    for (param, value) in [
        ("stop", json!(["END"])),
        ("n", json!(2)),
        ("seed", json!(1)),
        ("logit_bias", json!({"1": 5})),
    ] {
        let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        body[param] = value;
        let (status, _, v) = proxy.post("/v1/chat/completions", &body).await;
        assert_eq!(status, 400, "{param}: {v}");
        assert_eq!(v["error"]["param"], param);
        assert_eq!(v["error"]["code"], "unsupported_parameter");
        assert!(v["error"]["message"].as_str().unwrap().contains(param));
    }
    assert!(up.received().is_empty());
}

#[tokio::test]
async fn chat_arrives_at_a_chat_backend_exactly_as_sent() {
    let (up, proxy) = openai_proxy("[backends.model_map]\ngpt-x = \"gpt-x-2026\"\n").await;
    let body = json!({
        "model": "gpt-x",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}], "name": "ann"}],
        "stop": ["END"], "seed": 7, "logit_bias": {"50256": -100}, "top_k": 40, "max_tokens": 64,
        "chat_template_kwargs": {"enable_thinking": false}, "temperature": 0.2
    });
    let (status, headers, v) = proxy.post("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{v}");
    let got = up.last();
    assert_eq!(got.path, "/v1/chat/completions");
    let mut want = body.clone();
    want["model"] = json!("gpt-x-2026");
    assert_eq!(got.body, want);
    assert_eq!(got.raw, serde_json::to_vec(&want).unwrap(), "byte for byte");
    assert_eq!(v["model"], "gpt-x");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello from gpt-x-2026"
    );
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 3);
    assert_eq!(
        v["usage"]["completion_tokens_details"]["reasoning_tokens"],
        2
    );
    assert_eq!(headers["x-upstream-request-id"], "req_chat_1");
}

#[tokio::test]
async fn chat_stream_with_parallel_and_no_argument_tool_calls() {
    let (up, proxy) = openai_proxy("").await;
    let body = json!({"model": "m", "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "weather and time, both"}], "tools": tools()});
    let (status, a) = chat_stream(&proxy, &body).await;
    assert_eq!(status, 200);
    assert_eq!(a.text, "");
    assert_eq!(
        a.calls,
        [
            (
                0,
                "call_1".into(),
                "get_weather".into(),
                r#"{"city":"Paris"}"#.into()
            ),
            (1, "call_2".into(), "now".into(), "{}".into())
        ]
    );
    assert_eq!(a.finish, ["tool_calls"]);
    assert_eq!(a.usage[0]["prompt_tokens"], 11);
    assert!(a.done);
    let sent = up.last().body;
    assert_eq!(sent["stream_options"], json!({"include_usage": true}));
    assert_eq!(
        sent["tools"],
        tools(),
        "tool schemas passed through untouched"
    );
}

/// A Chat stream to a Chat upstream passes through: the client's model name
/// on every chunk, usage asked of the upstream for the log but shown only
/// to a client that asked for it, and an upstream's error frame ends it.
#[tokio::test]
async fn passthrough_streams_show_usage_only_when_asked() {
    let (up, proxy) = openai_proxy("[backends.model_map]\nfast = \"gpt-x-2026\"\n").await;
    let body =
        json!({"model": "fast", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let raw = chat_stream_raw(&proxy, &body).await;
    let sent = up.last().body;
    assert_eq!(sent["model"], "gpt-x-2026");
    assert_eq!(sent["stream_options"], json!({"include_usage": true}));
    let a = assemble(&raw);
    assert_eq!(a.text, "Hello from gpt-x-2026");
    assert!(a.usage.is_empty() && a.usage_nulls == 0, "{raw}");
    assert!(!raw.contains("\"usage\""), "{raw}");
    assert!(
        !raw.contains("gpt-x-2026\","),
        "the client's model name: {raw}"
    );
    assert!(raw.contains("\"model\":\"fast\""), "{raw}");
    assert!(a.done);

    let mut asked = body.clone();
    asked["stream_options"] = json!({"include_usage": true});
    let (_, a) = chat_stream(&proxy, &asked).await;
    assert_eq!(a.usage.len(), 1);
    assert_eq!(a.usage[0]["total_tokens"], 18);

    // The upstream's own error frame ends the stream: no [DONE].
    up.script([Reply::Sse {
        chunks: vec![
            "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-x-2026\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"par\"},\"finish_reason\":null}]}\n\n".into(),
            "data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\",\"code\":\"overloaded\"}}\n\n".into(),
            "data: [DONE]\n\n".into(),
        ],
        delay: Duration::ZERO,
        then_hang: false,
    }]);
    let (status, a) = chat_stream(&proxy, &body).await;
    assert_eq!(status, 200);
    assert_eq!(a.text, "par");
    assert_eq!(a.errors.len(), 1);
    assert_eq!(a.errors[0]["error"]["code"], "overloaded");
    assert!(!a.done, "no [DONE] after the error frame");
}

/// A Chat upstream that answers a streaming request with one whole
/// `chat.completion` is streamed to the client all the same.
#[tokio::test]
async fn a_whole_answer_to_a_stream_comes_as_chunks() {
    let (up, proxy) = openai_proxy("").await;
    up.script([Reply::Json(
        200,
        json!({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": "Whole", "tool_calls": [
                   {"id": "call_1", "type": "function", "function": {"name": "now", "arguments": ""}}]},
                   "finish_reason": "tool_calls"}],
               "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}),
        vec![],
    )]);
    let body =
        json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let (status, a) = chat_stream(&proxy, &body).await;
    assert_eq!(status, 200);
    assert_eq!(a.text, "Whole");
    assert_eq!(a.calls, [(0, "call_1".into(), "now".into(), "{}".into())]);
    assert_eq!(a.finish, ["tool_calls"]);
    assert!(a.usage.is_empty(), "not asked for");
    assert!(a.done);
}

#[tokio::test]
async fn chat_n_above_one_gets_every_choice_from_a_chat_backend() {
    let (_up, proxy) = openai_proxy("").await;
    let body = json!({"model": "m", "n": 2, "messages": [{"role": "user", "content": "hi"}]});
    let (status, _, v) = proxy.post("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{v}");
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2);
    assert_eq!(choices[1]["index"], 1);
    assert_eq!(choices[1]["message"]["content"], "Hello from m #1");
    // Streamed too: the chunks of every choice pass through.
    let mut body = body;
    body["stream"] = json!(true);
    let raw = chat_stream_raw(&proxy, &body).await;
    let indexes: std::collections::BTreeSet<u64> = raw
        .split("\n\n")
        .filter_map(|b| b.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .flat_map(|d| {
            let v: Value = serde_json::from_str(d).unwrap();
            v["choices"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["index"].as_u64().unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(indexes, [0, 1].into(), "{raw}");
    assert!(raw.ends_with("data: [DONE]\n\n"), "{raw}");
}

#[tokio::test]
async fn upstream_reasoning_content_surfaces_for_both_client_kinds() {
    let (_up, proxy) = openai_proxy("").await;
    let body = json!({"model": "deepseek", "reasoning_effort": "high", "messages": [{"role": "user", "content": "hi"}]});
    let (_, _, v) = proxy.post("/v1/chat/completions", &body).await;
    assert_eq!(
        v["choices"][0]["message"]["reasoning_content"],
        "Thinking about it."
    );
    let mut s = body.clone();
    s["stream"] = json!(true);
    let (_, a) = chat_stream(&proxy, &s).await;
    assert_eq!(a.reasoning, "Thinking about it.");
    assert_eq!(a.text, "Hello from deepseek");

    let r = json!({"model": "deepseek", "input": "hi", "reasoning": {"effort": "high"}});
    let (_, _, v) = proxy.post("/v1/responses", &r).await;
    check_response(&v).unwrap();
    assert_eq!(v["output"][0]["type"], "reasoning");
    assert_eq!(v["output"][0]["summary"][0]["text"], "Thinking about it.");
    let mut r = r;
    r["stream"] = json!(true);
    let (_, events, done) = proxy.post_stream("/v1/responses", &r).await;
    check_stream(&events).unwrap();
    assert!(done);
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "response.reasoning_summary_text.delta")
    );
}

#[tokio::test]
async fn responses_clients_through_a_chat_backend() {
    let (up, proxy) = openai_proxy("").await;
    let req = json!({"model": "m", "instructions": "be brief", "input": "weather?", "tools": [
        {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        "max_output_tokens": 200});
    let (status, _, v) = proxy.post("/v1/responses", &req).await;
    assert_eq!(status, 200, "{v}");
    check_response(&v).unwrap();
    assert_eq!(v["output"][0]["type"], "function_call");
    assert_eq!(v["output"][0]["call_id"], "call_1");
    assert_eq!(v["output"][0]["arguments"], r#"{"city":"Paris"}"#);
    let sent = up.last().body;
    assert_eq!(
        sent["messages"],
        json!([{"role": "system", "content": "be brief"}, {"role": "user", "content": "weather?"}])
    );
    assert_eq!(sent["max_completion_tokens"], 200);
    assert_eq!(sent["tools"][0]["function"]["name"], "get_weather");

    // Second turn: the call and its output go back as Chat messages.
    let mut turn2 = req.clone();
    turn2["input"] = json!([
        {"role": "user", "content": "weather?"},
        v["output"][0].clone(),
        {"type": "function_call_output", "call_id": "call_1", "output": "18C"}
    ]);
    turn2["stream"] = json!(true);
    let (status, events, done) = proxy.post_stream("/v1/responses", &turn2).await;
    assert_eq!(status, 200);
    check_stream(&events).unwrap();
    assert!(done);
    let text: String = events
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    assert_eq!(text, "Results: 18C");
    let last = events.last().unwrap();
    assert_eq!(last["response"]["usage"]["input_tokens"], 11);
    let sent = up.last().body;
    assert_eq!(sent["messages"][2]["role"], "assistant");
    assert_eq!(sent["messages"][2]["tool_calls"][0]["id"], "call_1");
    assert_eq!(
        sent["messages"][3],
        json!({"role": "tool", "content": "18C", "tool_call_id": "call_1"})
    );
    assert_eq!(sent["stream_options"], json!({"include_usage": true}));
}

#[tokio::test]
async fn openai_responses_api_mode_passes_through() {
    let (up, proxy) = openai_proxy("settings = { api = \"responses\" }\n").await;
    let req = json!({"model": "gpt-x", "input": "hi", "x_vendor": 1});
    let (status, _, v) = proxy.post("/v1/responses", &req).await;
    assert_eq!(status, 200, "{v}");
    check_response(&v).unwrap();
    let got = up.last();
    assert_eq!(got.path, "/v1/responses");
    assert_eq!(got.body, req);
    // Chat clients can use it too.
    let (status, _, v) = proxy
        .post(
            "/v1/chat/completions",
            &json!({"model": "gpt-x", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], "Hello from gpt-x");
}

#[tokio::test]
async fn upstream_chat_errors_keep_status_and_body() {
    let (up, proxy) = openai_proxy("").await;
    let err = json!({"error": {"message": "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.",
        "type": "invalid_request_error", "param": "max_tokens", "code": "unsupported_parameter"}});
    up.script([Reply::Json(400, err.clone(), vec![])]);
    let (status, _, v) = proxy
        .post("/v1/chat/completions", &json!({"model": "o3", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(v, err);
    // The strict fake's own validation errors come back the same way.
    let (status, _, v) = proxy
        .post("/v1/chat/completions", &json!({"model": "m", "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_x", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "user", "content": "no tool answer"}]}))
        .await;
    assert_eq!(status, 400);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("call_x"),
        "{v}"
    );
}

#[tokio::test]
async fn a_chat_stream_that_breaks_ends_with_an_error_frame_not_done() {
    let (up, proxy) = openai_proxy("").await;
    up.script([Reply::Sse {
        chunks: vec![
            "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n".into(),
            "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"partial\"}}]}\n\n".into(),
        ],
        delay: Duration::ZERO,
        then_hang: false,
    }]);
    let body =
        json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let (status, a) = chat_stream(&proxy, &body).await;
    assert_eq!(status, 200);
    assert_eq!(a.text, "partial");
    assert!(a.finish.is_empty(), "no finish_reason pretending success");
    assert!(!a.done, "no [DONE] after a failure");
    assert_eq!(a.errors.len(), 1);
    assert_eq!(a.errors[0]["error"]["code"], "bad_upstream_response");
}

#[tokio::test]
async fn chat_request_errors_are_openai_shaped() {
    // A converting backend (Chat clients to OpenAI's Responses API): the
    // proxy checks the request itself, and sends nothing.
    let (up, proxy) = openai_proxy("settings = { api = \"responses\" }\n").await;
    for (body, status, param) in [
        (
            json!({"messages": [{"role": "user", "content": "hi"}]}),
            400,
            Some("model"),
        ),
        (json!({"model": "m"}), 400, Some("messages")),
        (
            json!({"model": "m", "messages": [{"role": "robot", "content": "hi"}]}),
            400,
            Some("messages[0].role"),
        ),
        (
            json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]}),
            400,
            Some("messages[0].tool_call_id"),
        ),
        (
            json!({"model": "m", "messages": "hi"}),
            400,
            Some("messages"),
        ),
        (
            json!({"model": "m", "stream": "yes", "messages": []}),
            400,
            Some("stream"),
        ),
    ] {
        let (s, _, v) = proxy.post("/v1/chat/completions", &body).await;
        assert_eq!(s, status, "{body}: {v}");
        assert_eq!(v["error"]["param"].as_str(), param, "{v}");
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }
    assert!(up.received().is_empty());
    // A Chat upstream judges a Chat request itself (it passes through), and
    // its 400 comes back OpenAI-shaped; what the proxy reads - the model,
    // `stream` - it still checks first.
    let (up, proxy) = openai_proxy("").await;
    for (body, param, sent) in [
        (
            json!({"messages": [{"role": "user", "content": "hi"}]}),
            Some("model"),
            false,
        ),
        (
            json!({"model": "m", "stream": 1, "messages": []}),
            Some("stream"),
            false,
        ),
        (json!({"model": "m"}), Some("messages"), true),
    ] {
        let before = up.received().len();
        let (s, _, v) = proxy.post("/v1/chat/completions", &body).await;
        assert_eq!(s, 400, "{body}: {v}");
        assert_eq!(v["error"]["param"].as_str(), param, "{v}");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(up.received().len() > before, sent, "{body}");
    }
}

#[tokio::test]
async fn async_openai_two_turn_tool_loop_streaming_and_not() {
    use async_openai::types::chat::{
        ChatCompletionMessageToolCalls, ChatCompletionRequestAssistantMessageArgs,
        ChatCompletionRequestMessage, ChatCompletionRequestToolMessageArgs,
        ChatCompletionRequestUserMessageArgs, ChatCompletionTool, ChatCompletionTools,
        CreateChatCompletionRequestArgs, FinishReason, FunctionObject,
    };
    let (_up, proxy) = openai_proxy("").await;
    let client = openai_client(&proxy.url);
    let tools = vec![ChatCompletionTools::Function(ChatCompletionTool {
        function: FunctionObject {
            name: "get_weather".into(),
            description: Some("Weather by city".into()),
            parameters: Some(json!({"type": "object", "properties": {"city": {"type": "string"}}})),
            strict: None,
        },
    })];
    let user: ChatCompletionRequestMessage = ChatCompletionRequestUserMessageArgs::default()
        .content("weather in Paris?")
        .build()
        .unwrap()
        .into();
    let request = CreateChatCompletionRequestArgs::default()
        .model("gpt-x")
        .messages(vec![user.clone()])
        .tools(tools.clone())
        .build()
        .unwrap();
    let first = client.chat().create(request).await.unwrap();
    let choice = &first.choices[0];
    assert_eq!(choice.finish_reason, Some(FinishReason::ToolCalls));
    let calls = choice.message.tool_calls.clone().unwrap();
    let ChatCompletionMessageToolCalls::Function(call) = &calls[0] else {
        panic!()
    };
    assert_eq!(call.function.name, "get_weather");
    assert_eq!(call.function.arguments, r#"{"city":"Paris"}"#);

    let assistant: ChatCompletionRequestMessage =
        ChatCompletionRequestAssistantMessageArgs::default()
            .tool_calls(calls.clone())
            .build()
            .unwrap()
            .into();
    let tool: ChatCompletionRequestMessage = ChatCompletionRequestToolMessageArgs::default()
        .tool_call_id(call.id.clone())
        .content("18C and sunny")
        .build()
        .unwrap()
        .into();
    let request = CreateChatCompletionRequestArgs::default()
        .model("gpt-x")
        .messages(vec![user, assistant, tool])
        .tools(tools)
        .stream(true)
        .build()
        .unwrap();
    let mut stream = client.chat().create_stream(request).await.unwrap();
    let mut text = String::new();
    let mut finish = None;
    while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
        let chunk = chunk.unwrap();
        for c in chunk.choices {
            if let Some(t) = c.delta.content {
                text.push_str(&t);
            }
            if c.finish_reason.is_some() {
                finish = c.finish_reason;
            }
        }
    }
    assert_eq!(text, "Results: 18C and sunny");
    assert_eq!(finish, Some(FinishReason::Stop));
}

#[tokio::test]
async fn openai_kind_requires_its_key_unless_auth_says_otherwise() {
    let toml = "[[backends]]\nname = \"o\"\nkind = \"openai\"\nmodels = [\"*\"]\nbase_url = \"http://127.0.0.1:9/v1\"\n";
    let had_key = std::env::var_os("OPENAI_API_KEY").is_some();
    // The key is read once, when the proxy is built.
    let result = llmproxy::Proxy::from_toml(toml).await;
    if had_key {
        assert!(result.is_ok());
    } else {
        let e = result.unwrap_err().to_string();
        assert!(
            e.contains("OPENAI_API_KEY") && e.contains("auth = \"none\""),
            "{e}"
        );
    }
    let ok = llmproxy::Proxy::from_toml(&format!("{toml}auth = \"none\"\n")).await;
    assert!(ok.is_ok());
}

/// OpenCode's client: the Vercel AI SDK with `@ai-sdk/openai-compatible`
/// (installed by `.ci/run` with `npm ci` in `host/tests/node`), a plain call
/// and a streamed two-step tool loop.
#[tokio::test]
async fn vercel_ai_sdk_openai_compatible() {
    let Some(dir) = node_dir() else { return };
    let (_up, proxy) = openai_proxy("").await;
    let v = run_client("node", &dir.join("ai-sdk.mjs"), &proxy.url, &[]).await;
    assert_eq!(v["plain"], "Hello from gpt-x");
    assert_eq!(v["plainFinish"], "stop");
    assert_eq!(v["calls"], json!(["Paris"]), "{v}");
    assert_eq!(v["toolCalls"], json!([["get_weather", {"city": "Paris"}]]));
    assert_eq!(v["steps"], json!(["tool-calls", "stop"]));
    assert_eq!(v["streamed"], "Results: 18C in Paris");
    assert_eq!(v["inputTokens"], 22, "usage of both steps");
}

/// The README's OpenAI Python SDK usage (installed by `.ci/run` into
/// `host/tests/python/.venv`): Chat plain, streamed with usage, a tool loop,
/// and Responses, with a conversation continued by `previous_response_id`.
#[tokio::test]
async fn openai_python_sdk() {
    let Some((python, dir)) = python_venv() else {
        return;
    };
    let (_up, proxy) = openai_proxy("").await;
    let v = run_client(
        python.to_str().unwrap(),
        &dir.join("openai_sdk.py"),
        &proxy.url,
        &[],
    )
    .await;
    assert_eq!(
        v,
        json!({"plain": "Hello from gpt-x", "streamed": "Hello from gpt-x", "usage": 18,
               "call": ["get_weather", {"city": "Paris"}], "after_tool": "Results: 18C",
               "responses": "Hello from gpt-x", "last_event": "response.completed",
               "followup": [true, "Hello from gpt-x"], "input_items": ["message", "message", "message"],
               "deleted": 404})
    );
}
