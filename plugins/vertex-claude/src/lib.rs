//! llmproxy translator for Claude models on Vertex AI.
//!
//! Canonical Responses requests become Anthropic Messages bodies posted to
//! `/v1/projects/{project}/locations/{location}/publishers/anthropic/models/{model}:rawPredict`
//! (`:streamRawPredict` for streams); the host supplies the regional base
//! URL and the Google access token. Vertex differences from the first-party
//! API: no `model` in the body, `anthropic_version: "vertex-2023-10-16"`
//! in it, betas in `anthropic_beta`, no URL image sources (the host
//! downloads linked images, see [`request`]). Thinking blocks round-trip
//! through reasoning-item envelopes (see [`answer`]).
//!
//! Settings: see [`llmproxy_sdk::api::vertex::Settings`].

pub mod answer;
pub mod messages;
pub mod request;

use answer::{EventError, Mapper};
use llmproxy_sdk::api::ids::IdGen;
use llmproxy_sdk::api::responses::{CreateResponse, Response, Tool};
use llmproxy_sdk::api::tools;
use llmproxy_sdk::api::vertex::Settings;
use llmproxy_sdk::mapped::{self, AnswerMapper, MappedStream};
use llmproxy_sdk::{
    Api as ClientApi, Context, Error, Headers, Passthrough, Translator, UpstreamRequest,
    UpstreamResponse,
};
use request::{Built, State};
use serde_json::Value;

/// The Vertex Claude translator.
#[derive(Debug)]
pub struct VertexClaude;

fn settings(ctx: &Context) -> Result<Settings, Error> {
    Settings::parse(&ctx.settings).map_err(Error::internal)
}

fn parse_state(s: &str) -> State {
    serde_json::from_str(s).unwrap_or_default()
}

/// Claude's 529 "overloaded" is a 503 to OpenAI clients.
fn client_status(status: u16) -> u16 {
    if status == 529 { 503 } else { status }
}

/// An error Vertex answered with: Anthropic's shape
/// (`{"type":"error","error":{"type","message"}}`, from Claude itself) or
/// Google's (from Vertex in front of it: quota, permissions, regions).
pub fn claude_error(status: u16, body: &[u8]) -> Error {
    let anthropic = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
        let err = v.get("error")?;
        let kind = err.get("type")?.as_str()?.to_string();
        let message = err.get("message")?.as_str()?.to_string();
        Some((kind, message))
    });
    match anthropic {
        Some((kind, message)) => {
            llmproxy_sdk::vertex::upstream(client_status(status), message, Some(kind), None)
        }
        None => llmproxy_sdk::vertex::error(client_status(status), body),
    }
}

fn event_error(e: EventError) -> Error {
    llmproxy_sdk::vertex::upstream(client_status(e.status()), e.message, Some(e.kind), None)
}

impl Translator for VertexClaude {
    type Stream = Stream;

    fn validate_settings(settings: &str) -> Result<(), String> {
        Settings::parse(settings).map(drop)
    }

    /// Anthropic Messages clients (and their token counts) go to Claude as
    /// they are, adapted to Vertex ([`messages`]).
    fn passthrough(_settings: &str) -> Vec<Passthrough> {
        [ClientApi::Messages, ClientApi::MessagesCountTokens]
            .into_iter()
            .map(|api| Passthrough {
                api,
                method: "POST".into(),
                path: String::new(),
                headers: Vec::new(),
                adapt: true,
            })
            .collect()
    }

    fn adapt(ctx: &Context, api: ClientApi, body: &[u8]) -> Result<UpstreamRequest, Error> {
        messages::adapt(ctx, &settings(ctx)?, api, body)
    }

    fn request(ctx: &Context, body: &[u8]) -> Result<UpstreamRequest, Error> {
        let settings = settings(ctx)?;
        let mut req: CreateResponse = serde_json::from_slice(body)
            .map_err(|e| Error::invalid(format!("invalid Responses request: {e}"), None))?;
        let extras = llmproxy_sdk::extras(ctx)?;
        // Claude's web search server tool stands in for web search, unless
        // a tool of the client's already has its name.
        let search = settings.claude_web_search != Some(false)
            && request::has_web_search(&ctx.upstream_model)
            && !named(&req, request::WEB_SEARCH);
        let lowered = tools::lower(&mut req, "Claude on Vertex", settings.hosted_tools, |t| {
            // Codex's cached-only search has no live equivalent.
            search
                && tools::is_web_search(t)
                && t.get("external_web_access") != Some(&Value::Bool(false))
        })?;
        let target = request::Target {
            model: &ctx.upstream_model,
            settings: &settings,
            chat: extras.chat.as_ref(),
            messages: extras.messages.as_ref(),
            media: &ctx.media,
            streaming: ctx.streaming,
        };
        let (mut body, mut state) = match request::build(&req, &target)? {
            Built::Request { body, state } => (body, state),
            Built::NeedsMedia(urls) => return Err(Error::NeedsMedia(urls)),
        };
        request::add_hosted(&mut body, &lowered.hosted);
        state.tools = lowered.names;
        let method = if ctx.streaming {
            "streamRawPredict"
        } else {
            "rawPredict"
        };
        Ok(UpstreamRequest {
            method: "POST".into(),
            path: settings
                .model_path("anthropic", &ctx.upstream_model, method)
                .map_err(Error::invalid_model)?,
            headers: vec![("content-type".into(), "application/json".into())],
            body: serde_json::to_vec(&body).map_err(|e| Error::internal(e.to_string()))?,
            state: serde_json::to_string(&state).unwrap_or_default(),
        })
    }

    fn response(ctx: &Context, state: &str, response: UpstreamResponse) -> Result<Vec<u8>, Error> {
        if !(200..300).contains(&response.status) {
            return Err(claude_error(response.status, &response.body));
        }
        if state == messages::COUNT_STATE {
            // Vertex's count is Anthropic's `{"input_tokens": N}` already.
            return Ok(response.body);
        }
        let state = parse_state(state);
        let mapper = Mapper::new(IdGen::new(), &ctx.upstream_model, state.json_tool);
        mapped::whole(mapper, &state.tools, &response.body, "Vertex")
    }

    fn stream(ctx: Context, state: String, _: u16, _: Headers) -> Stream {
        let state = parse_state(&state);
        let mapper = Mapper::new(IdGen::new(), &ctx.upstream_model, state.json_tool);
        MappedStream::new(mapper, state.tools, "Vertex")
    }
}

/// Maps the SSE events of `streamRawPredict`.
pub type Stream = MappedStream<Mapper>;

impl AnswerMapper for Mapper {
    fn map(&mut self, value: &Value, whole: bool, out: &mut Vec<Value>) -> Result<(), Error> {
        if whole {
            self.message(value, out).map_err(event_error)
        } else {
            self.event(value, out).map_err(event_error)
        }
    }

    fn end(&mut self, out: &mut Vec<Value>) {
        Mapper::end(self, out);
    }

    fn response(self) -> Response {
        Mapper::response(self)
    }
}

/// Whether a function or custom tool of `req` is called `name`.
fn named(req: &CreateResponse, name: &str) -> bool {
    req.tools.iter().flatten().any(|t| match t {
        Tool::Function(f) => f.name == name,
        Tool::Other(v) => v.get("name").and_then(Value::as_str) == Some(name),
    })
}

llmproxy_sdk::export_translator!(VertexClaude);

#[cfg(test)]
mod tests;
