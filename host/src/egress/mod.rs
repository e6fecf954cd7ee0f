//! Egress: canonical output rendered in the client's format - Chat
//! Completions ([`chat`]) or Anthropic Messages ([`messages`]). Responses
//! clients get canonical output as it is (`server::responses`).

pub(crate) mod chat;
pub(crate) mod messages;

use crate::error::Error;
use serde_json::{Map, Value};

/// A failed canonical response is an error for a Chat or Messages client.
pub(crate) fn failed_as_error(response: &Map<String, Value>) -> Result<(), Error> {
    if response.get("status").and_then(Value::as_str) != Some("failed") {
        return Ok(());
    }
    let error = response.get("error");
    let field = |k: &str| {
        error
            .and_then(|e| e.get(k))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let code = field("code");
    let status = match code.as_deref() {
        Some("rate_limit_exceeded" | "insufficient_quota") => 429,
        Some("context_length_exceeded" | "invalid_prompt" | "invalid_request_error") => 400,
        _ => 502,
    };
    Err(Error::Upstream {
        status,
        message: field("message").unwrap_or_else(|| "The response failed.".into()),
        error_type: None,
        code,
        param: None,
        retry_after: None,
    })
}
