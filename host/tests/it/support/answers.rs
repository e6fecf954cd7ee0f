//! Readers of what the proxy or a fake received: texts, turns, chunks.

use super::*;

/// The text of a canonical event stream.
pub fn text_of(events: &[Value]) -> String {
    events
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .map(|e| e["delta"].as_str().unwrap())
        .collect()
}

/// The text of a Chat message or a Gemini content: a string or its parts.
pub fn text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect(),
        _ => String::new(),
    }
}

/// (role, text) of every message a Chat upstream received.
pub fn chat_turns(body: &Value) -> Vec<(String, String)> {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["role"].as_str().unwrap().to_string(), text(&m["content"])))
        .collect()
}

pub fn turns(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(r, t)| (r.to_string(), t.to_string()))
        .collect()
}

/// Chat chunks reassembled: (content, finish reasons, reasoning, tool calls).
pub fn chat_chunks(body: &str) -> (String, Vec<String>, String, Vec<Value>, bool) {
    let (mut text, mut finish, mut reasoning, mut calls, mut done) = (
        String::new(),
        Vec::new(),
        String::new(),
        Vec::<Value>::new(),
        false,
    );
    for block in body.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let data = block.strip_prefix("data: ").unwrap();
        if data == "[DONE]" {
            done = true;
            continue;
        }
        let v: Value = serde_json::from_str(data).unwrap();
        let Some(c) = v["choices"].get(0) else {
            continue;
        };
        text.push_str(c["delta"]["content"].as_str().unwrap_or(""));
        reasoning.push_str(c["delta"]["reasoning_content"].as_str().unwrap_or(""));
        if let Some(f) = c["finish_reason"].as_str() {
            finish.push(f.to_string());
        }
        for tc in c["delta"]["tool_calls"].as_array().into_iter().flatten() {
            let i = tc["index"].as_u64().unwrap() as usize;
            if tc.get("id").is_some() {
                calls.push(json!({"id": tc["id"], "type": "function", "function": {"name": tc["function"]["name"], "arguments": ""}}));
            }
            let args = calls[i]["function"]["arguments"]
                .as_str()
                .unwrap()
                .to_string()
                + tc["function"]["arguments"].as_str().unwrap_or("");
            calls[i]["function"]["arguments"] = json!(args);
        }
    }
    (text, finish, reasoning, calls, done)
}
