//! `POST /v1/messages` and `POST /v1/messages/count_tokens`: the Anthropic
//! Messages API. The request is converted to the canonical request, and
//! the answer written as a `message` or as Messages SSE events. Errors -
//! also those of client authentication - are in Anthropic's shape:
//! `{"type":"error","error":{"type","message"}}`.

use crate::access::AccessLog;
use crate::egress::messages::{MessagesBody, anthropic_type};
use crate::error::Error;
use crate::proxy::Proxy;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use http::{HeaderValue, StatusCode};
use llmproxy_api::messages::error_body;
use llmproxy_api::messages::stream::StreamEvent;
use serde_json::Value;

/// `POST /v1/messages`
pub(super) async fn handle(State(proxy): State<Proxy>, request: Request) -> Response {
    let mut log = super::access_log(&proxy, "messages", request.headers());
    let result = run(&proxy, request, &mut log).await;
    respond(result, &mut log)
}

async fn run(proxy: &Proxy, request: Request, log: &mut AccessLog) -> Result<Response, Error> {
    let betas = betas(request.headers());
    let body = super::read_body(proxy, request).await?;
    let request = crate::ingress::messages::parse(&body)?;
    let answer = proxy.messages(body, &request, &betas, log).await?;
    let response = match answer.body {
        MessagesBody::Whole(message) => axum::Json(message).into_response(),
        MessagesBody::Stream(events) => sse(events),
    };
    Ok(super::with_upstream_id(response, answer.upstream_id))
}

/// `POST /v1/messages/count_tokens`: `{"input_tokens": N}`; the header
/// `x-llmproxy-token-count: estimate` says when the count is the proxy's
/// estimate rather than the upstream's.
pub(super) async fn count_tokens(State(proxy): State<Proxy>, request: Request) -> Response {
    let mut log = super::access_log(&proxy, "messages", request.headers());
    let result = async {
        let betas = betas(request.headers());
        let body = super::read_body(&proxy, request).await?;
        let request = crate::ingress::messages::parse(&body)?;
        let count = proxy.count_tokens(body, &request, &betas).await?;
        let mut response =
            axum::Json(serde_json::json!({"input_tokens": count.input_tokens})).into_response();
        let source = if count.estimated {
            "estimate"
        } else {
            "upstream"
        };
        response
            .headers_mut()
            .insert("x-llmproxy-token-count", HeaderValue::from_static(source));
        Ok(response)
    }
    .await;
    respond(result, &mut log)
}

/// The betas a client asked for: every `anthropic-beta` header's
/// comma-separated values (at most 64, each an identifier).
fn betas(headers: &http::HeaderMap) -> Vec<String> {
    headers
        .get_all("anthropic-beta")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|b| {
            !b.is_empty()
                && b.len() <= 100
                && b.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.')
        })
        .take(64)
        .map(str::to_string)
        .collect()
}

/// Writes Messages events as SSE (`event: <type>` and `data: <json>`), a
/// batch of ready events at a time.
fn sse(events: BoxStream<'static, StreamEvent>) -> Response {
    let frames = events.ready_chunks(64).map(|batch| {
        let mut buf = Vec::with_capacity(batch.len() * 200);
        for event in &batch {
            buf.extend_from_slice(b"event: ");
            buf.extend_from_slice(event.name().as_bytes());
            buf.extend_from_slice(b"\ndata: ");
            // Serializing an event into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut buf, event);
            buf.extend_from_slice(b"\n\n");
        }
        Bytes::from(buf)
    });
    super::sse_response(frames)
}

/// The client's response, errors in Anthropic's shape.
fn respond(result: Result<Response, Error>, log: &mut AccessLog) -> Response {
    let response = match result {
        Ok(response) => {
            log.answered(response.status().as_u16());
            response
        }
        Err(e) => {
            log.failed(&e);
            error_response(&e)
        }
    };
    super::with_request_id(response, log)
}

/// An error as Anthropic's API answers it: its status (an upstream's 529
/// stays 529), its body, and `retry-after` when known.
pub(super) fn error_response(error: &Error) -> Response {
    let kind = anthropic_type(error);
    // Claude's "overloaded" is 529, which OpenAI-shaped answers make 503.
    let status = match error {
        Error::Upstream { status: 503, .. } if kind == "overloaded_error" => {
            StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
        }
        _ => error.status(),
    };
    error.response(status, error_json(error))
}

/// The Anthropic-shaped body of an error:
/// `{"type":"error","error":{"type","message"}}`, without any secret the
/// process holds.
fn error_json(error: &Error) -> Value {
    let message = crate::redact::redact(&error.to_string()).into_owned();
    error_body(anthropic_type(error), &message)
}
