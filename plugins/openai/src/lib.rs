//! llmproxy translator for OpenAI and every OpenAI-compatible server.
//!
//! Two upstream APIs, chosen by the setting `api`:
//!
//! - `"chat"` (default): `POST {base_url}/chat/completions`, which vLLM,
//!   Ollama, llama.cpp, Groq, DeepSeek, xAI and OpenAI all serve. Requests
//!   from Chat clients pass through (declared in [`Translator::passthrough`]:
//!   the host sends them as the client wrote them - every field, known or
//!   not - with only `model` rewritten and, for streams, usage requested,
//!   and passes the answers back). A Responses request is converted
//!   (`llmproxy_api::chat_request`), and its answers (and
//!   `reasoning_content`) mapped to canonical Responses output.
//! - `"responses"`: `POST {base_url}/responses` (OpenAI's Responses API), a
//!   pass-through like the openresponses translator. Reasoning items carrying
//!   another provider's state are dropped, and Chat-only parameters refused.
//!
//! Settings: `api` (`chat` | `responses`), `path` (endpoint relative to
//! `base_url`), `max_tokens_param` (`max_completion_tokens` | `max_tokens`,
//! for converted requests), `instructions_role` (`system` | `developer`),
//! `hosted_tools` (`drop` | `reject`: what a converted request does with
//! hosted tools such as `web_search`, which Chat Completions has not).
//!
//! Converted requests get namespace and custom tools as function tools, and
//! their calls back as the client offered them (`llmproxy_api::tools`).

use llmproxy_sdk::api::ENVELOPE_PREFIX;
use llmproxy_sdk::api::chat_request::{ChatOptions, responses_to_chat};
use llmproxy_sdk::api::responses::CreateResponse;
use llmproxy_sdk::api::tools::{self, HostedTools, Restorer, ToolNames};
use llmproxy_sdk::chat::{self, ChatStream};
use llmproxy_sdk::json::RawObject;
use llmproxy_sdk::{
    Api as ClientApi, Context, Error, EventStream, Headers, Passthrough, Translator,
    UpstreamRequest, UpstreamResponse, passthrough,
};
use serde::Deserialize;
use serde_json::Value;

/// The OpenAI translator.
#[derive(Debug)]
pub struct OpenAi;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    api: Option<String>,
    path: Option<String>,
    max_tokens_param: Option<String>,
    instructions_role: Option<String>,
    #[serde(default)]
    hosted_tools: HostedTools,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    Chat,
    Responses,
}

impl Settings {
    fn parse(settings: &str) -> Result<Self, String> {
        let s: Settings = serde_json::from_str(settings).map_err(|e| e.to_string())?;
        let check = |key: &str, value: &Option<String>, allowed: &[&str]| match value {
            Some(v) if !allowed.contains(&v.as_str()) => Err(format!(
                "setting `{key}` = {v:?} is not one of {}",
                allowed.join(", ")
            )),
            _ => Ok(()),
        };
        check("api", &s.api, &["chat", "responses"])?;
        check(
            "max_tokens_param",
            &s.max_tokens_param,
            &["max_completion_tokens", "max_tokens"],
        )?;
        check(
            "instructions_role",
            &s.instructions_role,
            &["system", "developer"],
        )?;
        if let Some(path) = &s.path
            && !path.starts_with('/')
        {
            return Err(format!("setting `path` must start with '/', got {path:?}"));
        }
        Ok(s)
    }

    fn api(&self) -> Api {
        match self.api.as_deref() {
            Some("responses") => Api::Responses,
            _ => Api::Chat,
        }
    }

    fn path(&self) -> String {
        self.path.clone().unwrap_or_else(|| match self.api() {
            Api::Chat => "/chat/completions".into(),
            Api::Responses => "/responses".into(),
        })
    }
}

fn settings(ctx: &Context) -> Result<Settings, Error> {
    Settings::parse(&ctx.settings).map_err(Error::internal)
}

fn json_error(e: serde_json::Error) -> Error {
    Error::internal(e.to_string())
}

fn post(ctx: &Context, path: String, body: Vec<u8>) -> UpstreamRequest {
    let accept = if ctx.streaming {
        "text/event-stream"
    } else {
        "application/json"
    };
    UpstreamRequest {
        method: "POST".into(),
        path,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("accept".into(), accept.into()),
        ],
        body,
        state: String::new(),
    }
}

impl Translator for OpenAi {
    type Stream = Stream;

    fn validate_settings(settings: &str) -> Result<(), String> {
        Settings::parse(settings).map(drop)
    }

    fn passthrough(settings: &str) -> Vec<Passthrough> {
        match Settings::parse(settings) {
            Ok(s) if s.api() == Api::Chat => vec![Passthrough {
                api: ClientApi::ChatCompletions,
                method: "POST".into(),
                path: s.path(),
                headers: Vec::new(),
                adapt: false,
            }],
            _ => Vec::new(),
        }
    }

    fn request(ctx: &Context, body: &[u8]) -> Result<UpstreamRequest, Error> {
        let settings = settings(ctx)?;
        let mut state = String::new();
        let body = match settings.api() {
            Api::Chat => {
                let mut request: CreateResponse = serde_json::from_slice(body)
                    .map_err(|e| Error::invalid(format!("invalid Responses request: {e}"), None))?;
                // Chat Completions takes function tools only.
                let lowered = tools::lower(
                    &mut request,
                    "Chat Completions upstreams",
                    settings.hosted_tools,
                    |_| false,
                )?;
                if !lowered.names.is_empty() {
                    state = serde_json::to_string(&lowered.names).map_err(json_error)?;
                }
                let options = ChatOptions {
                    legacy_max_tokens: settings.max_tokens_param.as_deref() == Some("max_tokens"),
                    developer_instructions: settings.instructions_role.as_deref()
                        == Some("developer"),
                };
                let mut chat =
                    responses_to_chat(&request, &ctx.upstream_model, ctx.streaming, options)?;
                // A Messages client's stop sequences (a Chat client's own
                // request goes through unconverted).
                let stop = llmproxy_sdk::extras(ctx)?.stop_sequences();
                if !stop.is_empty() {
                    chat.stop = Some(serde_json::json!(stop));
                }
                serde_json::to_vec(&chat).map_err(json_error)?
            }
            Api::Responses => {
                let extras = llmproxy_sdk::extras(ctx)?;
                llmproxy_sdk::refuse_chat_only(&extras, &[], "the OpenAI Responses API")?;
                responses_passthrough(ctx, body)?
            }
        };
        let mut request = post(ctx, settings.path(), body);
        request.state = state;
        Ok(request)
    }

    fn response(ctx: &Context, state: &str, response: UpstreamResponse) -> Result<Vec<u8>, Error> {
        match settings(ctx)?.api() {
            Api::Responses => passthrough::response_body(response.status, response.body),
            Api::Chat => {
                chat::response(response).map(|b| tool_names(state).restore_response_bytes(b))
            }
        }
    }

    fn stream(ctx: Context, state: String, _: u16, _: Headers) -> Stream {
        match Settings::parse(&ctx.settings).map(|s| s.api()) {
            Ok(Api::Responses) => Stream::Responses,
            _ => Stream::Chat(Box::default(), Restorer::new(tool_names(&state))),
        }
    }
}

/// The canonical request for OpenAI's Responses API: `model` and `stream`
/// set, and reasoning items holding another provider's state (llmproxy
/// envelopes) removed - OpenAI would reject them.
fn responses_passthrough(ctx: &Context, body: &[u8]) -> Result<Vec<u8>, Error> {
    let mut obj = RawObject::parse(body)
        .map_err(|e| Error::invalid(format!("the request is not a JSON object: {e}"), None))?;
    obj.set("model", &ctx.upstream_model).map_err(json_error)?;
    if ctx.streaming || obj.get("stream").is_some() {
        obj.set("stream", ctx.streaming).map_err(json_error)?;
    }
    if obj
        .get("input")
        .is_some_and(|raw| raw.get().contains(ENVELOPE_PREFIX))
        && let Ok(Some(Value::Array(items))) = obj.get_as::<Value>("input")
    {
        let kept: Vec<Value> = items
            .into_iter()
            .filter(|item| {
                !(item.get("type").and_then(Value::as_str) == Some("reasoning")
                    && item
                        .get("encrypted_content")
                        .and_then(Value::as_str)
                        .is_some_and(|e| e.starts_with(ENVELOPE_PREFIX)))
            })
            .collect();
        obj.set("input", kept).map_err(json_error)?;
    }
    Ok(obj.to_vec())
}

/// The tools renamed for a Chat upstream (the request's `state`).
fn tool_names(state: &str) -> ToolNames {
    serde_json::from_str(state).unwrap_or_default()
}

/// Stream state: Chat chunks (with the calls of renamed tools lifted back),
/// or Responses events passed through.
#[derive(Debug)]
pub enum Stream {
    Chat(Box<ChatStream>, Restorer),
    Responses,
}

impl EventStream for Stream {
    fn push(&mut self, event: &str, data: &str) -> Result<Vec<String>, Error> {
        match self {
            Stream::Responses => passthrough::event(event, data),
            Stream::Chat(chat, tools) => chat.push(event, data).map(|e| tools.event_texts(e)),
        }
    }

    fn finish(&mut self) -> Result<Vec<String>, Error> {
        match self {
            Stream::Responses => Ok(Vec::new()),
            Stream::Chat(chat, tools) => chat.finish().map(|e| tools.event_texts(e)),
        }
    }
}

llmproxy_sdk::export_translator!(OpenAi);

#[cfg(test)]
mod tests;
