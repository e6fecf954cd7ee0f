//! `POST /v1/responses`: canonical output as Responses JSON or SSE.

use crate::access::AccessLog;
use crate::error::Error;
use crate::proxy::{Outcome, Proxy};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use serde_json::Value;

/// `POST /v1/responses`
pub(super) async fn handle(State(proxy): State<Proxy>, request: Request) -> Response {
    let mut log = super::access_log("responses", &request);
    let result = run(&proxy, request, &mut log).await;
    super::respond(result, &mut log)
}

async fn run(proxy: &Proxy, request: Request, log: &mut AccessLog) -> Result<Response, Error> {
    let body = super::read_body(proxy, request).await?;
    Ok(match proxy.execute(body, "{}", log).await? {
        Outcome::Complete {
            response,
            upstream_id,
        } => super::with_upstream_id(axum::Json(response).into_response(), upstream_id),
        Outcome::Stream {
            events,
            upstream_id,
        } => super::with_upstream_id(sse(events), upstream_id),
    })
}

fn is_terminal(kind: &str) -> bool {
    matches!(
        kind,
        "response.completed" | "response.incomplete" | "response.failed"
    )
}

/// Renders canonical events as Responses SSE: `event:`/`data:` pairs, and
/// `data: [DONE]` after the terminal event (OpenResponses requires it;
/// OpenAI clients ignore it).
fn sse(events: BoxStream<'static, Value>) -> Response {
    let frames = events.ready_chunks(64).map(|batch| {
        let mut buf = Vec::with_capacity(batch.len() * 256);
        for event in &batch {
            let kind = event.get("type").and_then(Value::as_str).unwrap_or("");
            buf.extend_from_slice(b"event: ");
            buf.extend_from_slice(kind.as_bytes());
            buf.extend_from_slice(b"\ndata: ");
            // Serializing a Value into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut buf, event);
            buf.extend_from_slice(b"\n\n");
            if is_terminal(kind) {
                buf.extend_from_slice(b"data: [DONE]\n\n");
            }
        }
        Bytes::from(buf)
    });
    super::sse_response(frames)
}
