use super::request::{messages_to_responses, signature_to_encrypted};
use super::response::response_to_message;
use super::stream::MessageRenderer;
use super::*;
use crate::events::ResponseEvent;
use crate::golden;
use crate::responses::Response;
use serde_json::json;

#[test]
fn request_golden() {
    golden::check("messages_to_responses", |input| {
        let req: MessagesRequest = serde_json::from_value(input.clone()).unwrap();
        match messages_to_responses(&req) {
            Ok((canonical, extras)) => json!({"canonical": canonical, "extras": extras}),
            Err(e) => golden::error(&e),
        }
    });
}

#[test]
fn response_golden() {
    golden::check("response_to_message", |input| {
        let response: Response = serde_json::from_value(input.clone()).unwrap();
        serde_json::to_value(response_to_message(&response, "claude-sonnet-4-5", "msg_1")).unwrap()
    });
}

#[test]
fn stream_golden() {
    golden::check("events_to_messages", |input| {
        let mut renderer = MessageRenderer::new("claude-sonnet-4-5", "msg_1");
        let mut out = Vec::new();
        for event in input.as_array().unwrap() {
            let event: ResponseEvent = serde_json::from_value(event.clone()).unwrap();
            out.extend(renderer.event(&event));
        }
        serde_json::to_value(out).unwrap()
    });
}

/// A thinking signature goes out and comes back unchanged, whoever made it:
/// Claude's own, another provider's llmproxy envelope, OpenAI's opaque blob.
#[test]
fn signatures_round_trip() {
    use super::response::{Signature, encrypted_to_signature};
    let claude = signature_to_encrypted("EqQBsig+/==", "thinking").unwrap();
    assert!(claude.starts_with("pxy1."));
    let opened = crate::envelope::open("anthropic", &claude).unwrap();
    assert_eq!(opened["sig"], "EqQBsig+/==");
    for encrypted in [
        claude.as_str(),
        "pxy1.eyJwIjoiZ2VtaW5pIn0",
        "gAAAAB-openai-blob",
    ] {
        let Signature::Thinking(sig) = encrypted_to_signature(encrypted) else {
            panic!("{encrypted}: not a thinking signature");
        };
        assert_eq!(
            signature_to_encrypted(&sig, "thinking").as_deref(),
            Some(encrypted),
            "{encrypted} via {sig}"
        );
    }
    assert_eq!(signature_to_encrypted("", "thinking"), None);
    let redacted = signature_to_encrypted("EmwKAhgB", "redacted").unwrap();
    let Signature::Redacted(data) = encrypted_to_signature(&redacted) else {
        panic!("redacted thinking came back as thinking");
    };
    assert_eq!(data, "EmwKAhgB");
}

/// Unknown fields and block types survive a parse/serialize round trip.
#[test]
fn request_round_trips() {
    let body = json!({
        "model": "m", "max_tokens": 10, "context_management": {"edits": []},
        "system": [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
            {"type": "container_upload", "file_id": "f"}
        ]}],
        "tools": [{"name": "t", "input_schema": {"type": "object"}, "defer_loading": true}]
    });
    let req: MessagesRequest = serde_json::from_value(body.clone()).unwrap();
    assert_eq!(serde_json::to_value(&req).unwrap(), body);
}
