//! An llmproxy translator for Mistral's chat API (`api.mistral.ai`), and a
//! template for your own: copy this crate, change the mapping, then
//!
//! ```sh
//! cargo build --release --target wasm32-wasip2
//! ```
//!
//! and point a backend's `translator = { path = ".../mistral_translator.wasm" }`
//! at the result. Mistral speaks Chat Completions with a few differences,
//! handled here on top of the SDK's Chat helpers:
//!
//! - the path carries the API version (setting `api_version`, default `v1`);
//! - `max_tokens`, not `max_completion_tokens`; `random_seed`, not `seed`;
//!   no `stream_options` (usage always comes with the last chunk), and no
//!   OpenAI bookkeeping fields (`store`, `metadata`, `user`, ...);
//! - `tool_choice: "any"` where OpenAI says `"required"`;
//! - tool-call ids must be 9 letters or digits, so ids another provider made
//!   (`call_...`) are mapped to such ids, the same way every time;
//! - the setting `safe_prompt` turns on Mistral's safety prompt.

use llmproxy_sdk::api::chat_request::{ChatOptions, responses_to_chat};
use llmproxy_sdk::api::responses::CreateResponse;
use llmproxy_sdk::chat::{self, ChatStream};
use llmproxy_sdk::{Context, Error, Headers, Translator, UpstreamRequest, UpstreamResponse};
use serde::Deserialize;
use serde_json::{Value, json};

/// The backend's `settings`, checked when llmproxy loads its config.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    api_version: Option<String>,
    #[serde(default)]
    safe_prompt: bool,
}

impl Settings {
    fn parse(settings: &str) -> Result<Self, String> {
        let s: Settings = serde_json::from_str(settings).map_err(|e| e.to_string())?;
        match &s.api_version {
            Some(v) if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric()) => Err(
                format!("setting `api_version` must be like \"v1\", got {v:?}"),
            ),
            _ => Ok(s),
        }
    }
}

/// The translator.
#[derive(Debug)]
pub struct Mistral;

impl Translator for Mistral {
    type Stream = ChatStream;

    fn validate_settings(settings: &str) -> Result<(), String> {
        Settings::parse(settings).map(drop)
    }

    fn request(ctx: &Context, body: &[u8]) -> Result<UpstreamRequest, Error> {
        let settings = Settings::parse(&ctx.settings).map_err(Error::internal)?;
        let request: CreateResponse = serde_json::from_slice(body)
            .map_err(|e| Error::invalid(format!("invalid Responses request: {e}"), None))?;
        let options = ChatOptions {
            legacy_max_tokens: true,
            ..ChatOptions::default()
        };
        let mut chat = responses_to_chat(&request, &ctx.upstream_model, ctx.streaming, options)?;
        // A Chat client's own `stop` and `seed` have no Responses equivalent:
        // they arrive in the extras. Anything else Chat-only is refused.
        let extras = llmproxy_sdk::extras(ctx)?;
        llmproxy_sdk::refuse_chat_only(&extras, &["stop", "seed"], "Mistral")?;
        if let Some(client) = &extras.chat {
            chat.stop = client.stop.clone();
            if let Some(seed) = client.seed {
                chat.extra.insert("random_seed".into(), json!(seed));
            }
        }
        chat.stream_options = None;
        (chat.store, chat.metadata, chat.user) = (None, None, None);
        (
            chat.safety_identifier,
            chat.prompt_cache_key,
            chat.service_tier,
        ) = (None, None, None);
        if chat.tool_choice == Some(json!("required")) {
            chat.tool_choice = Some(json!("any"));
        }
        for message in chat.messages.iter_mut().flatten() {
            for call in message.tool_calls.iter_mut().flatten() {
                call.id = mistral_id(&call.id);
            }
            if let Some(id) = &mut message.tool_call_id {
                *id = mistral_id(id);
            }
        }
        if settings.safe_prompt {
            chat.extra.insert("safe_prompt".into(), Value::Bool(true));
        }
        let version = settings.api_version.as_deref().unwrap_or("v1");
        Ok(UpstreamRequest {
            method: "POST".into(),
            path: format!("/{version}/chat/completions"),
            headers: vec![("content-type".into(), "application/json".into())],
            body: serde_json::to_vec(&chat).map_err(|e| Error::internal(e.to_string()))?,
            state: String::new(),
        })
    }

    fn response(_: &Context, _: &str, response: UpstreamResponse) -> Result<Vec<u8>, Error> {
        chat::response(response)
    }

    fn stream(_: Context, _: String, _: u16, _: Headers) -> ChatStream {
        ChatStream::new()
    }
}

/// A tool-call id Mistral accepts: `id` itself when it is 9 letters or
/// digits, else 9 base-62 digits of its FNV-1a hash.
fn mistral_id(id: &str) -> String {
    if id.len() == 9 && id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return id.to_string();
    }
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut hash = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (0..9)
        .map(|_| {
            let digit = DIGITS[(hash % 62) as usize];
            hash /= 62;
            char::from(digit)
        })
        .collect()
}

llmproxy_sdk::export_translator!(Mistral);

#[cfg(test)]
mod tests;
