//! `POST /v1/chat/completions`: a Chat request is converted to the canonical
//! Responses request, runs like any other, and its canonical output is
//! rendered back as a `chat.completion` or as `chat.completion.chunk`s.

use crate::access::AccessLog;
use crate::error::Error;
use crate::exchange::Outcome;
use crate::ops::failed_as_error;
use crate::proxy::Proxy;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use llmproxy_api::chat_response::response_to_chat;
use llmproxy_api::chat_stream::{ChatFrame, ChunkRenderer};
use serde_json::Value;

/// `POST /v1/chat/completions`
pub(super) async fn handle(State(proxy): State<Proxy>, request: Request) -> Response {
    let mut log = super::access_log("chat", request.headers());
    let result = run(&proxy, request, &mut log).await;
    super::respond(result, &mut log)
}

async fn run(proxy: &Proxy, request: Request, log: &mut AccessLog) -> Result<Response, Error> {
    let body = super::read_body(proxy, request).await?;
    let chat = crate::ingress::chat::parse(&body)?;
    let model = chat.model.clone().unwrap_or_default();
    let include_usage = chat.include_usage();
    // The client's own bytes go to the translator: a Chat backend sends
    // them on as they are.
    match proxy.execute_chat(&chat, &body, log).await? {
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
