//! `POST /v1/chat/completions`: the request's head read, then passed through
//! to an upstream that speaks Chat, or converted to the canonical request;
//! the answer written as a `chat.completion` or as SSE chunks.

use crate::access::AccessLog;
use crate::egress::chat::{ChatBody, Frame};
use crate::error::Error;
use crate::ingress::chat::ChatHead;
use crate::proxy::Proxy;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

/// `POST /v1/chat/completions`
pub(super) async fn handle(State(proxy): State<Proxy>, request: Request) -> Response {
    let mut log = super::access_log(&proxy, "chat", request.headers());
    let result = run(&proxy, request, &mut log).await;
    super::respond(result, &mut log)
}

async fn run(proxy: &Proxy, request: Request, log: &mut AccessLog) -> Result<Response, Error> {
    let body = super::read_body(proxy, request).await?;
    let head = ChatHead::parse(&body)?;
    let answer = proxy.chat(body, &head, log).await?;
    let response = match answer.body {
        ChatBody::Whole(body) => {
            ([(http::header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        ChatBody::Stream(frames) => sse(frames),
    };
    Ok(super::with_upstream_id(response, answer.upstream_id))
}

/// Writes Chat frames as SSE (`data: <chunk>`, then `data: [DONE]`, or an
/// error frame and no `[DONE]`), a batch of ready frames at a time.
fn sse(frames: BoxStream<'static, Frame>) -> Response {
    let bytes = frames.ready_chunks(64).map(|batch| {
        let mut buf = Vec::with_capacity(batch.len() * 200);
        for frame in &batch {
            frame.write_sse(&mut buf);
        }
        Bytes::from(buf)
    });
    super::sse_response(bytes)
}
