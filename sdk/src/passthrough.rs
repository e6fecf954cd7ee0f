//! Helpers for translators whose upstream speaks the Responses API itself
//! (OpenResponses servers, OpenAI's `/v1/responses`).

use crate::json::RawObject;
use crate::{Error, snippet};
use serde::Deserialize;

/// `reasoning.effort` values OpenAI accepts but the OpenResponses enum
/// (`none, low, medium, high, xhigh`) does not, and their nearest OR value.
pub const EFFORT_MAP: [(&str, &str); 2] = [("minimal", "low"), ("max", "xhigh")];

/// Maps OpenAI-only `reasoning.effort` values onto the OpenResponses enum.
pub fn normalise_effort(obj: &mut RawObject<'_>) -> Result<(), Error> {
    let Some(Ok(serde_json::Value::Object(mut reasoning))) = obj
        .get("reasoning")
        .map(|raw| serde_json::from_str::<serde_json::Value>(raw.get()))
    else {
        return Ok(());
    };
    let effort = reasoning.get("effort").and_then(|e| e.as_str());
    if let Some((_, to)) = EFFORT_MAP.iter().find(|(from, _)| Some(*from) == effort) {
        reasoning.insert("effort".into(), (*to).into());
        obj.set("reasoning", reasoning)
            .map_err(|e| Error::internal(e.to_string()))?;
    }
    Ok(())
}

/// Checks that a 2xx body is a JSON object and returns it unchanged, or the
/// upstream's error for a non-2xx status.
pub fn response_body(status: u16, body: Vec<u8>) -> Result<Vec<u8>, Error> {
    if !(200..300).contains(&status) {
        return Err(crate::openai_style_error(status, &body));
    }
    // Only check that it is an object: the host completes and validates the
    // Responses object, and everything else passes through.
    RawObject::parse(&body).map_err(|e| {
        Error::internal(format!(
            "upstream answered {status} with a body that is not a JSON object ({e}): {}",
            snippet(&String::from_utf8_lossy(&body), 200)
        ))
    })?;
    Ok(body)
}

#[derive(Deserialize)]
struct EventHead<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
}

/// OpenAI names for raw reasoning events, and the OpenResponses names.
pub const EVENT_RENAMES: [(&str, &str); 2] = [
    ("response.reasoning_text.delta", "response.reasoning.delta"),
    ("response.reasoning_text.done", "response.reasoning.done"),
];

/// Maps one upstream Responses SSE event to the canonical event: skips
/// `[DONE]`, takes the type from the SSE `event:` name when the data lacks
/// one, renames OpenAI-only event names; everything else passes byte for
/// byte (the host renumbers and completes what it must).
pub fn event(event: &str, data: &str) -> Result<Vec<String>, Error> {
    let data = data.trim();
    // OpenResponses servers end with `data: [DONE]`; OpenAI does not.
    if data.is_empty() || data == "[DONE]" {
        return Ok(Vec::new());
    }
    let not_object = |e: &dyn std::fmt::Display| {
        Error::internal(format!(
            "upstream sent an event that is not a JSON object ({e}): {}",
            snippet(data, 200)
        ))
    };
    // A struct also deserializes from an array: insist on an object.
    if !data.starts_with('{') {
        return Err(not_object(&"it does not start with '{'"));
    }
    let head: EventHead = serde_json::from_str(data).map_err(|e| not_object(&e))?;
    let kind = match head.kind.as_deref() {
        Some(kind) => kind,
        None if !event.is_empty() => event,
        None => {
            return Err(Error::internal(format!(
                "upstream sent an event without a type: {}",
                snippet(data, 200)
            )));
        }
    };
    let rename = EVENT_RENAMES.iter().find(|(from, _)| *from == kind);
    if rename.is_none() && head.kind.is_some() {
        return Ok(vec![data.to_owned()]);
    }
    let mut obj = RawObject::parse(data.as_bytes()).map_err(|e| Error::internal(e.to_string()))?;
    let kind = rename.map_or(kind, |(_, to)| to);
    obj.set("type", kind)
        .map_err(|e| Error::internal(e.to_string()))?;
    String::from_utf8(obj.to_vec())
        .map(|s| vec![s])
        .map_err(|e| Error::internal(e.to_string()))
}
