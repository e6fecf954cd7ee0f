//! In-process calls: the proxy's endpoints as typed Rust methods (create and
//! stream responses and chat completions; retrieve, delete and list the
//! input items of stored responses), and the Chat Completions path the HTTP
//! endpoint shares with them.

use crate::access::AccessLog;
use crate::error::Error;
use crate::proxy::{ClientApi, Outcome, Proxy};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use llmproxy_api::chat::{ChatChunk, ChatCompletion, ChatRequest};
use llmproxy_api::chat_request::chat_to_responses;
use llmproxy_api::chat_response::response_to_chat;
use llmproxy_api::chat_stream::{ChatFrame, ChunkRenderer};
use llmproxy_api::events::ResponseEvent;
use llmproxy_api::responses::{CreateResponse, Input, Response};
use serde_json::{Map, Value};

/// The events of a streamed response, in order; the last one is always
/// terminal (`response.completed`, `response.incomplete` or
/// `response.failed` - a failure midway is an [`ResponseEvent::Error`]
/// followed by `response.failed`).
pub type ResponseStream = BoxStream<'static, ResponseEvent>;

/// The chunks of a streamed chat completion. A failure midway ends the
/// stream with an `Err`.
pub type ChatCompletionStream = BoxStream<'static, Result<ChatChunk, Error>>;

impl Proxy {
    /// Runs a Responses request to completion: `POST /v1/responses` without
    /// HTTP. `request.stream` is ignored.
    ///
    /// A response the upstream ended early or failed is returned as it is,
    /// with `status` `incomplete` or `failed`; errors before the answer (a
    /// bad request, an unknown model, an upstream error status) are `Err`.
    pub async fn create_response(&self, mut request: CreateResponse) -> Result<Response, Error> {
        request.stream = Some(false);
        let mut log = AccessLog::start("responses", None);
        match self
            .execute(to_bytes(&request)?, ClientApi::Responses, &mut log)
            .await
            .inspect_err(|e| log.failed(e))?
        {
            Outcome::Complete { response, .. } => typed(Value::Object(response)),
            Outcome::Stream { mut events, .. } => {
                // Not expected without streaming; take the terminal event.
                let mut last = None;
                while let Some(event) = events.next().await {
                    last = Some(event);
                }
                match last.map(|e| e.get("response").cloned()) {
                    Some(Some(response)) => typed(response),
                    _ => Err(Error::Internal(
                        "the stream ended without a response".into(),
                    )),
                }
            }
        }
    }

    /// Runs a Responses request with streaming: the canonical events as
    /// typed values. `request.stream` is ignored.
    pub async fn stream_response(
        &self,
        mut request: CreateResponse,
    ) -> Result<ResponseStream, Error> {
        request.stream = Some(true);
        let mut log = AccessLog::start("responses", None);
        let events = match self
            .execute(to_bytes(&request)?, ClientApi::Responses, &mut log)
            .await
            .inspect_err(|e| log.failed(e))?
        {
            Outcome::Stream { events, .. } => events,
            Outcome::Complete { .. } => return Err(not_streamed()),
        };
        Ok(events
            .map(|event| {
                serde_json::from_value(event.clone()).unwrap_or(ResponseEvent::Other(event))
            })
            .boxed())
    }

    /// Runs a Chat Completions request to completion:
    /// `POST /v1/chat/completions` without HTTP. `request.stream` is ignored.
    pub async fn create_chat_completion(
        &self,
        mut request: ChatRequest,
    ) -> Result<ChatCompletion, Error> {
        request.stream = None;
        request.stream_options = None;
        let raw = to_bytes(&request)?;
        let model = request.model.clone().unwrap_or_default();
        let mut log = AccessLog::start("chat", None);
        match self
            .execute_chat(&request, &raw, &mut log)
            .await
            .inspect_err(|e| log.failed(e))?
        {
            Outcome::Complete { response, .. } => {
                failed_as_error(&response)?;
                typed(response_to_chat(&response, &model))
            }
            Outcome::Stream { .. } => Err(Error::Internal(
                "a stream came back for a request without streaming".into(),
            )),
        }
    }

    /// Runs a Chat Completions request with streaming: typed chunks, the
    /// last one with `usage` when `stream_options.include_usage` is set.
    /// `request.stream` is ignored.
    pub async fn stream_chat_completion(
        &self,
        mut request: ChatRequest,
    ) -> Result<ChatCompletionStream, Error> {
        request.stream = Some(true);
        let raw = to_bytes(&request)?;
        let model = request.model.clone().unwrap_or_default();
        let mut renderer = ChunkRenderer::new(&model, request.include_usage());
        let mut log = AccessLog::start("chat", None);
        let events = match self
            .execute_chat(&request, &raw, &mut log)
            .await
            .inspect_err(|e| log.failed(e))?
        {
            Outcome::Stream { events, .. } => events,
            Outcome::Complete { .. } => return Err(not_streamed()),
        };
        Ok(events
            .flat_map(move |event| futures_util::stream::iter(renderer.event(&event)))
            .filter_map(|frame| async move {
                match frame {
                    ChatFrame::Chunk(chunk) => Some(typed(chunk)),
                    ChatFrame::Error(error) => Some(Err(stream_error(&error))),
                    ChatFrame::Done => None,
                }
            })
            .boxed())
    }

    /// A response the proxy stored (`GET /v1/responses/{id}` without HTTP):
    /// one made on a backend that keeps no state, with `store` not false.
    /// A 404 [`Error`] when it is not kept (or is kept by an upstream).
    pub async fn retrieve_response(&self, id: &str) -> Result<Response, Error> {
        let record = self.stored(id).await?;
        match record.response {
            Some(response) if !record.upstream => typed(Value::Object(response)),
            _ => Err(crate::conversation::response_not_found(
                id,
                &format!(
                    " here: it is kept by the upstream of backend {:?}; retrieve it over HTTP",
                    record.backend
                ),
            )),
        }
    }

    /// Forgets a stored response (`DELETE /v1/responses/{id}` without
    /// HTTP); whether it was kept.
    pub async fn delete_response(&self, id: &str) -> Result<bool, Error> {
        self.forget(id).await
    }

    /// Every input item of a stored response, oldest first: those of the
    /// responses it continues (input and output) and its own
    /// (`GET /v1/responses/{id}/input_items` without paging).
    pub async fn response_input_items(&self, id: &str) -> Result<Vec<Value>, Error> {
        self.input_items(id).await
    }

    /// A Chat request through the canonical path: converted, reasoning state
    /// the client cannot carry restored, and run with the client's own
    /// request (`raw`) as extras, for Chat-only parameters.
    pub(crate) async fn execute_chat(
        &self,
        chat: &ChatRequest,
        raw: &[u8],
        log: &mut AccessLog,
    ) -> Result<Outcome, Error> {
        crate::canonical::require_model(chat.model.as_deref())?;
        let mut canonical = chat_to_responses(chat).map_err(|e| {
            let (message, param) = (e.message, e.param);
            if e.unsupported {
                Error::Unsupported {
                    message,
                    param,
                    code: None,
                }
            } else {
                Error::InvalidRequest {
                    message,
                    param,
                    code: None,
                }
            }
        })?;
        if let Some(Input::Items(items)) = &mut canonical.input {
            // Thought signatures of earlier answers, which Chat clients cannot
            // send back themselves.
            self.inner.signatures.restore(items);
        }
        let canonical = to_bytes(&canonical)?;
        let mut extras = String::with_capacity(raw.len() + 10);
        extras.push_str("{\"chat\":");
        extras.push_str(std::str::from_utf8(raw).unwrap_or("{}"));
        extras.push('}');
        self.execute(canonical, ClientApi::Chat { extras: &extras }, log)
            .await
    }
}

/// The proxy always streams a streaming request (replaying a whole answer
/// as events when the upstream sent one).
fn not_streamed() -> Error {
    Error::Internal("a whole answer came back for a streaming request".into())
}

fn to_bytes<T: serde::Serialize>(value: &T) -> Result<Bytes, Error> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| Error::Internal(format!("cannot serialize the request: {e}")))
}

fn typed<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, Error> {
    serde_json::from_value(value)
        .map_err(|e| Error::Internal(format!("the proxy produced an answer it cannot type: {e}")))
}

/// The error a Chat stream's error frame (`{"error": {...}}`) reports.
fn stream_error(frame: &Value) -> Error {
    let field = |k: &str| {
        frame
            .get("error")
            .and_then(|e| e.get(k))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    Error::Upstream {
        status: 502,
        message: field("message").unwrap_or_else(|| "The stream failed.".into()),
        error_type: field("type"),
        code: field("code"),
        param: field("param"),
        retry_after: None,
    }
}

/// A failed canonical response is an error for a Chat client.
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
