//! llmproxy translator for Gemini models on Vertex AI.
//!
//! Canonical Responses requests become `generateContent` /
//! `streamGenerateContent?alt=sse` calls on
//! `/v1/projects/{project}/locations/{location}/publishers/google/models/{model}`
//! (the host supplies the regional base URL and the Google access token):
//! messages become `user`/`model` turns (system and developer text in
//! `systemInstruction`), function calls and their outputs `functionCall` /
//! `functionResponse` parts paired turn by turn, tools
//! `functionDeclarations` with their schemas cleaned, and `reasoning.effort`
//! a `thinkingConfig` fitting the model generation. Thought signatures
//! round-trip through reasoning-item envelopes (see [`answer`]).
//!
//! Settings: see [`llmproxy_sdk::api::vertex::Settings`].

pub mod answer;
pub mod request;
pub mod schema;

use answer::{ChunkError, Mapper};
use llmproxy_sdk::api::ids::IdGen;
use llmproxy_sdk::api::messages::MessagesRequest;
use llmproxy_sdk::api::messages::request::messages_to_responses;
use llmproxy_sdk::api::responses::CreateResponse;
use llmproxy_sdk::api::responses::Response;
use llmproxy_sdk::api::tools::{self, ToolNames};
use llmproxy_sdk::api::vertex::Settings;
use llmproxy_sdk::mapped::{self, AnswerMapper, MappedStream};
use llmproxy_sdk::{
    Api as ClientApi, Context, Error, Headers, Passthrough, Translator, UpstreamError,
    UpstreamRequest, UpstreamResponse,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The Vertex Gemini translator.
#[derive(Debug)]
pub struct VertexGemini;

/// What the answer's mapping needs from the request.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    /// `parallel_tool_calls: false`.
    #[serde(default)]
    single_call: bool,
    /// Tools renamed for Gemini, whose calls are lifted back.
    #[serde(default, skip_serializing_if = "ToolNames::is_empty")]
    tools: ToolNames,
}

fn settings(ctx: &Context) -> Result<Settings, Error> {
    Settings::parse(&ctx.settings).map_err(Error::internal)
}

fn parse_state(s: &str) -> State {
    serde_json::from_str(s).unwrap_or_default()
}

fn chunk_error(e: ChunkError) -> Error {
    Error::Upstream(UpstreamError {
        status: e.code.unwrap_or(502),
        message: e.message,
        error_type: None,
        code: e.status.map(|s| s.to_ascii_lowercase()),
        param: None,
        retry_after: None,
    })
}

impl Translator for VertexGemini {
    type Stream = Stream;

    fn validate_settings(settings: &str) -> Result<(), String> {
        Settings::parse(settings).map(drop)
    }

    /// Anthropic `count_tokens` requests go to Gemini's `countTokens`.
    fn passthrough(_settings: &str) -> Vec<Passthrough> {
        vec![Passthrough {
            api: ClientApi::MessagesCountTokens,
            method: "POST".into(),
            path: String::new(),
            headers: Vec::new(),
            adapt: true,
        }]
    }

    /// A Messages token count as Gemini's `countTokens`: the request Gemini
    /// would get for the conversation, its contents, system instruction and
    /// tools.
    fn adapt(ctx: &Context, api: ClientApi, body: &[u8]) -> Result<UpstreamRequest, Error> {
        if api != ClientApi::MessagesCountTokens {
            return Err(Error::unsupported(
                format!("Gemini takes no {api:?} requests as they are"),
                None,
            ));
        }
        let mut messages: MessagesRequest = serde_json::from_slice(body)
            .map_err(|e| Error::invalid(format!("invalid Messages request: {e}"), None))?;
        messages.max_tokens.get_or_insert(1);
        let (canonical, extras) = messages_to_responses(&messages).map_err(Error::from)?;
        let canonical =
            serde_json::to_vec(&canonical).map_err(|e| Error::internal(e.to_string()))?;
        let mut counted = ctx.clone();
        counted.streaming = false;
        counted.extras = serde_json::json!({ "messages": extras }).to_string();
        let generate = Self::request(&counted, &canonical)?;
        let full: serde_json::Map<String, Value> =
            serde_json::from_slice(&generate.body).map_err(|e| Error::internal(e.to_string()))?;
        let body: serde_json::Map<String, Value> = full
            .into_iter()
            .filter(|(k, _)| matches!(k.as_str(), "contents" | "systemInstruction" | "tools"))
            .collect();
        Ok(UpstreamRequest {
            method: "POST".into(),
            path: settings(ctx)?
                .model_path("google", &ctx.upstream_model, "countTokens")
                .map_err(Error::invalid_model)?,
            headers: vec![("content-type".into(), "application/json".into())],
            body: serde_json::to_vec(&body).map_err(|e| Error::internal(e.to_string()))?,
            state: COUNT_STATE.into(),
        })
    }

    fn request(ctx: &Context, body: &[u8]) -> Result<UpstreamRequest, Error> {
        let settings = settings(ctx)?;
        let mut req: CreateResponse = serde_json::from_slice(body)
            .map_err(|e| Error::invalid(format!("invalid Responses request: {e}"), None))?;
        let extras = llmproxy_sdk::extras(ctx)?;
        // Google Search grounding stands in for web search, but Vertex
        // takes it only without function declarations.
        let search = !tools::offers_functions(&req);
        let lowered = tools::lower(&mut req, "Gemini", settings.hosted_tools, |t| {
            search && tools::is_web_search(t)
        })?;
        let target = request::Target {
            model: &ctx.upstream_model,
            settings: &settings,
            chat: extras.chat.as_ref(),
            messages: extras.messages.as_ref(),
        };
        let mut gemini = request::build(&req, &target)?;
        request::add_hosted(&mut gemini, &lowered.hosted);
        let method = if ctx.streaming {
            "streamGenerateContent?alt=sse"
        } else {
            "generateContent"
        };
        let state = State {
            single_call: req.parallel_tool_calls == Some(false),
            tools: lowered.names,
        };
        Ok(UpstreamRequest {
            method: "POST".into(),
            path: settings
                .model_path("google", &ctx.upstream_model, method)
                .map_err(Error::invalid_model)?,
            headers: vec![("content-type".into(), "application/json".into())],
            body: serde_json::to_vec(&gemini).map_err(|e| Error::internal(e.to_string()))?,
            state: serde_json::to_string(&state).unwrap_or_default(),
        })
    }

    fn response(ctx: &Context, state: &str, response: UpstreamResponse) -> Result<Vec<u8>, Error> {
        if !(200..300).contains(&response.status) {
            return Err(llmproxy_sdk::vertex::error(response.status, &response.body));
        }
        if state == COUNT_STATE {
            return count(&response.body);
        }
        let state = parse_state(state);
        let mapper = Mapper::new(IdGen::new(), &ctx.upstream_model, state.single_call);
        mapped::whole(mapper, &state.tools, &response.body, "Vertex")
    }

    fn stream(ctx: Context, state: String, _: u16, _: Headers) -> Stream {
        let state = parse_state(&state);
        let mapper = Mapper::new(IdGen::new(), &ctx.upstream_model, state.single_call);
        MappedStream::new(mapper, state.tools, "Vertex")
    }
}

/// The `state` of a token count.
const COUNT_STATE: &str = "count-tokens";

/// Gemini's `countTokens` answer (`{"totalTokens": N, ...}`) as
/// `{"input_tokens": N}`.
fn count(body: &[u8]) -> Result<Vec<u8>, Error> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Count {
        total_tokens: u64,
    }
    let count: Count = serde_json::from_slice(body).map_err(|e| {
        Error::internal(format!(
            "Vertex answered countTokens without totalTokens: {e}"
        ))
    })?;
    Ok(serde_json::json!({"input_tokens": count.total_tokens})
        .to_string()
        .into_bytes())
}

/// Maps the SSE chunks of `streamGenerateContent`.
pub type Stream = MappedStream<Mapper>;

impl AnswerMapper for Mapper {
    fn map(&mut self, value: &Value, _whole: bool, out: &mut Vec<Value>) -> Result<(), Error> {
        self.chunk(value, out).map_err(chunk_error)
    }

    fn end(&mut self, out: &mut Vec<Value>) {
        Mapper::end(self, out, true);
    }

    fn response(self) -> Response {
        Mapper::response(self)
    }
}

llmproxy_sdk::export_translator!(VertexGemini);

#[cfg(test)]
mod tests;
