//! llmproxy translator for OpenResponses-compatible servers.
//!
//! The canonical format *is* the Responses API, so this is a pass-through:
//! the request goes to `POST {base_url}/responses` with `model` rewritten,
//! `stream` set from the client's choice and `reasoning.effort` values outside
//! the OpenResponses enum mapped onto it; every other field - known or not -
//! is forwarded byte for byte. Answers come back unchanged apart from
//! OpenAI-only event names, which are renamed to their OpenResponses
//! equivalents. Non-2xx answers become upstream errors with the upstream's
//! status and message.
//!
//! Settings: `path` (default `/responses`), the endpoint relative to the
//! backend's `base_url`.

use llmproxy_sdk::json::RawObject;
use llmproxy_sdk::{
    Context, Error, EventStream, Headers, Translator, UpstreamRequest, UpstreamResponse,
};
use serde::Deserialize;

/// The OpenResponses translator.
#[derive(Debug)]
pub struct OpenResponses;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// Endpoint path relative to the backend's base URL.
    path: Option<String>,
}

impl Settings {
    fn parse(settings: &str) -> Result<Self, String> {
        let settings: Settings = serde_json::from_str(settings).map_err(|e| e.to_string())?;
        if let Some(path) = &settings.path
            && !path.starts_with('/')
        {
            return Err(format!("setting `path` must start with '/', got {path:?}"));
        }
        Ok(settings)
    }
}

/// `reasoning.effort` values OpenAI accepts but the OpenResponses enum
/// (`none, low, medium, high, xhigh`) does not, and their nearest OR value.
const EFFORT_MAP: [(&str, &str); 2] = [("minimal", "low"), ("max", "xhigh")];

impl Translator for OpenResponses {
    type Stream = Stream;

    fn validate_settings(settings: &str) -> Result<(), String> {
        Settings::parse(settings).map(drop)
    }

    fn request(ctx: &Context, body: &[u8]) -> Result<UpstreamRequest, Error> {
        let settings = Settings::parse(&ctx.settings).map_err(Error::internal)?;
        let mut obj = RawObject::parse(body)
            .map_err(|e| Error::invalid(format!("the request is not a JSON object: {e}"), None))?;
        let bad = |e: serde_json::Error| Error::internal(e.to_string());
        obj.set("model", &ctx.upstream_model).map_err(bad)?;
        if ctx.streaming || obj.get("stream").is_some() {
            obj.set("stream", ctx.streaming).map_err(bad)?;
        }
        normalise_effort(&mut obj)?;
        let accept = if ctx.streaming {
            "text/event-stream"
        } else {
            "application/json"
        };
        Ok(UpstreamRequest {
            method: "POST".into(),
            path: settings.path.unwrap_or_else(|| "/responses".into()),
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("accept".into(), accept.into()),
            ],
            body: obj.to_vec(),
            state: String::new(),
        })
    }

    fn response(_: &Context, _: &str, response: UpstreamResponse) -> Result<Vec<u8>, Error> {
        if !(200..300).contains(&response.status) {
            return Err(llmproxy_sdk::openai_style_error(
                response.status,
                &response.body,
            ));
        }
        // Only check that it is an object: the host completes and validates
        // the Responses object, and everything else passes through.
        RawObject::parse(&response.body).map_err(|e| {
            Error::internal(format!(
                "upstream answered {} with a body that is not a JSON object ({e}): {}",
                response.status,
                llmproxy_sdk::snippet(&String::from_utf8_lossy(&response.body), 200)
            ))
        })?;
        Ok(response.body)
    }

    fn stream(_: Context, _: String, _: u16, _: Headers) -> Stream {
        Stream
    }
}

/// Maps OpenAI-only `reasoning.effort` values onto the OpenResponses enum.
fn normalise_effort(obj: &mut RawObject<'_>) -> Result<(), Error> {
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

/// Stream mapping: OpenResponses events are already canonical.
#[derive(Debug)]
pub struct Stream;

#[derive(Deserialize)]
struct EventHead<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
}

/// OpenAI names for raw reasoning events, and the OpenResponses names.
const EVENT_RENAMES: [(&str, &str); 2] = [
    ("response.reasoning_text.delta", "response.reasoning.delta"),
    ("response.reasoning_text.done", "response.reasoning.done"),
];

impl EventStream for Stream {
    fn push(&mut self, event: &str, data: &str) -> Result<Vec<String>, Error> {
        let data = data.trim();
        // OpenResponses servers end with `data: [DONE]`; OpenAI does not.
        if data.is_empty() || data == "[DONE]" {
            return Ok(Vec::new());
        }
        let head: EventHead = serde_json::from_str(data).map_err(|e| {
            Error::internal(format!(
                "upstream sent an event that is not a JSON object ({e}): {}",
                llmproxy_sdk::snippet(data, 200)
            ))
        })?;
        let kind = match head.kind.as_deref() {
            Some(kind) => kind,
            None if !event.is_empty() => event,
            None => {
                return Err(Error::internal(format!(
                    "upstream sent an event without a type: {}",
                    llmproxy_sdk::snippet(data, 200)
                )));
            }
        };
        let rename = EVENT_RENAMES.iter().find(|(from, _)| *from == kind);
        if rename.is_none() && head.kind.is_some() {
            return Ok(vec![data.to_owned()]);
        }
        let mut obj =
            RawObject::parse(data.as_bytes()).map_err(|e| Error::internal(e.to_string()))?;
        let kind = rename.map_or(kind, |(_, to)| to);
        obj.set("type", kind)
            .map_err(|e| Error::internal(e.to_string()))?;
        String::from_utf8(obj.to_vec())
            .map(|s| vec![s])
            .map_err(|e| Error::internal(e.to_string()))
    }

    fn finish(&mut self) -> Result<Vec<String>, Error> {
        // An OpenResponses stream carries its own terminal event; if it never
        // came, the host ends the canonical stream with `response.failed`.
        Ok(Vec::new())
    }
}

llmproxy_sdk::export_translator!(OpenResponses);

#[cfg(test)]
mod tests;
