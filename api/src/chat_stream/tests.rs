use super::*;
use crate::golden;

fn frames(f: &[ChatFrame]) -> Vec<Value> {
    f.iter()
        .map(|f| match f {
            ChatFrame::Chunk(c) => c.clone(),
            ChatFrame::Error(e) => json!({"error_frame": e}),
            ChatFrame::Done => json!("[DONE]"),
        })
        .collect()
}

#[test]
fn chunks_to_events_golden() {
    golden::check("chunks_to_events", |input| {
        let mut p = ChunkParser::new(IdGen::with_stem("t"));
        let mut events = Vec::new();
        for data in input["data"].as_array().unwrap() {
            match p.push(data.as_str().unwrap()) {
                Ok(evs) => events.extend(evs),
                Err(e) => {
                    events.push(json!({"push_error": e.message, "code": e.code}));
                    return Value::Array(events);
                }
            }
        }
        events.extend(p.end());
        Value::Array(events)
    });
}

#[test]
fn events_to_chunks_golden() {
    golden::check("events_to_chunks", |input| {
        let mut r = ChunkRenderer::new("client-model", input["include_usage"] == true);
        let mut out = Vec::new();
        for e in input["events"].as_array().unwrap() {
            let typed: ResponseEvent = serde_json::from_value(e.clone()).unwrap();
            out.extend(frames(&r.event(&typed)));
        }
        Value::Array(out)
    });
}

/// Chunks parsed to canonical events and rendered back keep the Chat
/// semantics: the same text, tool calls (index, id, name, arguments),
/// finish reason and usage.
#[test]
fn chunk_round_trip() {
    let data = [
        r#"{"id":"x","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
        r#"{"id":"x","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"#,
        r#"{"id":"x","created":1,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"f","arguments":""}}]},"finish_reason":null}]}"#,
        r#"{"id":"x","created":1,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"g","arguments":"{\"x\":"}}]},"finish_reason":null}]}"#,
        r#"{"id":"x","created":1,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"2}"}}]},"finish_reason":null}]}"#,
        r#"{"id":"x","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
        r#"{"id":"x","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":5,"total_tokens":12}}"#,
        "[DONE]",
    ];
    let mut p = ChunkParser::new(IdGen::with_stem("t"));
    let mut r = ChunkRenderer::new("m", true);
    let mut out = Vec::new();
    for d in data {
        for e in p.push(d).unwrap() {
            out.extend(frames(&r.event_value(&e)));
        }
    }
    assert_eq!(out.last().unwrap(), &json!("[DONE]"));
    let content: String = out
        .iter()
        .filter_map(|c| {
            c.pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
        })
        .collect();
    assert_eq!(content, "Hi");
    let mut calls: Vec<(u64, String)> = Vec::new();
    for c in &out {
        for tc in c
            .pointer("/choices/0/delta/tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let i = tc["index"].as_u64().unwrap();
            if tc.get("id").is_some() {
                calls.push((
                    i,
                    format!(
                        "{}:{}:",
                        tc["id"].as_str().unwrap(),
                        tc["function"]["name"].as_str().unwrap()
                    ),
                ));
            }
            if let Some(a) = tc.pointer("/function/arguments").and_then(Value::as_str) {
                calls[i as usize].1.push_str(a);
            }
        }
    }
    assert_eq!(
        calls,
        [
            (0, "call_a:f:{}".to_string()),
            (1, "call_b:g:{\"x\":2}".to_string())
        ]
    );
    let finish: Vec<&str> = out
        .iter()
        .filter_map(|c| {
            c.pointer("/choices/0/finish_reason")
                .and_then(Value::as_str)
        })
        .collect();
    assert_eq!(finish, ["tool_calls"]);
    let usage = &out[out.len() - 2];
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["total_tokens"], 12);
}
