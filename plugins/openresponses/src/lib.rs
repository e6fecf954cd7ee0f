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
use llmproxy_sdk::passthrough;
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

impl Translator for OpenResponses {
    type Stream = Stream;

    fn validate_settings(settings: &str) -> Result<(), String> {
        Settings::parse(settings).map(drop)
    }

    fn request(ctx: &Context, body: &[u8]) -> Result<UpstreamRequest, Error> {
        let settings = Settings::parse(&ctx.settings).map_err(Error::internal)?;
        // Chat clients' `stop`, `seed`, `n`, ... have no Responses field.
        llmproxy_sdk::refuse_chat_only(
            &llmproxy_sdk::extras(ctx)?,
            &[],
            "an OpenResponses backend",
        )?;
        let mut obj = RawObject::parse(body)
            .map_err(|e| Error::invalid(format!("the request is not a JSON object: {e}"), None))?;
        let bad = |e: serde_json::Error| Error::internal(e.to_string());
        obj.set("model", &ctx.upstream_model).map_err(bad)?;
        if ctx.streaming || obj.get("stream").is_some() {
            obj.set("stream", ctx.streaming).map_err(bad)?;
        }
        passthrough::normalise_effort(&mut obj)?;
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
        passthrough::response_body(response.status, response.body)
    }

    fn stream(_: Context, _: String, _: u16, _: Headers) -> Stream {
        Stream
    }
}

/// Stream mapping: OpenResponses events are already canonical.
#[derive(Debug)]
pub struct Stream;

impl EventStream for Stream {
    fn push(&mut self, event: &str, data: &str) -> Result<Vec<String>, Error> {
        passthrough::event(event, data)
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
