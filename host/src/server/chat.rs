//! `POST /v1/chat/completions`: a Chat request is converted to the canonical
//! Responses request, runs like any other, and its canonical output is
//! rendered back as a `chat.completion` or as `chat.completion.chunk`s.

use crate::canonical::{parse_body, require_model};
use crate::error::Error;
use crate::proxy::{Outcome, Proxy};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use llmproxy_api::chat::ChatRequest;
use llmproxy_api::chat_request::chat_to_responses;
use llmproxy_api::chat_response::response_to_chat;
use llmproxy_api::chat_stream::{ChatFrame, ChunkRenderer};
use serde_json::{Map, Value};

/// `POST /v1/chat/completions`
pub(super) async fn handle(State(proxy): State<Proxy>, request: Request) -> Response {
    match run(&proxy, request).await {
        Ok(response) => response,
        Err(e) => {
            tracing::info!(status = e.status().as_u16(), "chat request failed: {e}");
            e.into_response()
        }
    }
}

async fn run(proxy: &Proxy, request: Request) -> Result<Response, Error> {
    let body = super::read_body(proxy, request).await?;
    let chat = parse(&body)?;
    let model = chat.model.clone().unwrap_or_default();
    let include_usage = chat.include_usage();
    let canonical = chat_to_responses(&chat).map_err(|e| {
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
    let mut canonical = canonical;
    if let Some(llmproxy_api::responses::Input::Items(items)) = &mut canonical.input {
        // Thought signatures of earlier answers, which Chat clients cannot
        // send back themselves.
        proxy.inner.signatures.restore(items);
    }
    let canonical = serde_json::to_vec(&canonical)
        .map_err(|e| Error::Internal(format!("cannot serialize the canonical request: {e}")))?;
    // Translators get the client's own request too: its Chat-only
    // parameters have no canonical field, and a Chat backend sends it on.
    let mut extras = String::with_capacity(body.len() + 10);
    extras.push_str("{\"chat\":");
    extras.push_str(std::str::from_utf8(&body).unwrap_or("{}"));
    extras.push('}');
    match proxy.execute(Bytes::from(canonical), &extras).await? {
        Outcome::Complete {
            response,
            upstream_id,
        } => {
            failed_as_error(&response)?;
            let chat = response_to_chat(&response, &model);
            Ok(super::with_upstream_id(
                axum::Json(chat).into_response(),
                upstream_id,
            ))
        }
        Outcome::Stream {
            events,
            upstream_id,
        } => Ok(super::with_upstream_id(
            chunks(events, ChunkRenderer::new(&model, include_usage)),
            upstream_id,
        )),
    }
}

/// Parses a Chat request, with client-facing errors.
fn parse(body: &[u8]) -> Result<ChatRequest, Error> {
    let chat: ChatRequest = parse_body(
        body,
        r#"{"model":"...","messages":[{"role":"user","content":"Hello"}]}"#,
    )?;
    require_model(chat.model.as_deref())?;
    Ok(chat)
}

/// A failed canonical response is an HTTP error for a Chat client.
fn failed_as_error(response: &Map<String, Value>) -> Result<(), Error> {
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

/// Renders canonical events as Chat chunks: `data: <chunk>` frames, then
/// `data: [DONE]` - or, when the response failed, an error frame and no
/// `[DONE]`, so that a broken answer never looks complete.
fn chunks(events: BoxStream<'static, Value>, mut renderer: ChunkRenderer) -> Response {
    let frames = events.ready_chunks(64).map(move |batch| {
        let mut buf = Vec::with_capacity(batch.len() * 200);
        for event in &batch {
            for frame in renderer.event(event) {
                let payload = match &frame {
                    ChatFrame::Chunk(v) | ChatFrame::Error(v) => v,
                    ChatFrame::Done => {
                        buf.extend_from_slice(b"data: [DONE]\n\n");
                        continue;
                    }
                };
                buf.extend_from_slice(b"data: ");
                // Serializing a Value into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut buf, payload);
                buf.extend_from_slice(b"\n\n");
            }
        }
        Bytes::from(buf)
    });
    super::sse_response(frames)
}
