//! `POST /v1/responses`: canonical output as Responses JSON or SSE; and the
//! stored responses: `GET`/`DELETE /v1/responses/{id}`,
//! `GET /v1/responses/{id}/input_items`.

use crate::access::AccessLog;
use crate::conversation::ListQuery;
use crate::error::Error;
use crate::exchange::Outcome;
use crate::ops::Answer;
use crate::proxy::{ClientApi, Proxy};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use http::HeaderMap;
use llmproxy_api::events::ResponseEvent;

/// `POST /v1/responses`
pub(super) async fn handle(State(proxy): State<Proxy>, request: Request) -> Response {
    let mut log = super::access_log(&proxy, "responses", request.headers());
    let result = run(&proxy, request, &mut log).await;
    super::respond(result, &mut log)
}

async fn run(proxy: &Proxy, request: Request, log: &mut AccessLog) -> Result<Response, Error> {
    let body = super::read_body(proxy, request).await?;
    Ok(
        match proxy.execute(body, ClientApi::Responses, log).await? {
            Outcome::Complete {
                response,
                upstream_id,
            } => super::with_upstream_id(axum::Json(response).into_response(), upstream_id),
            Outcome::Stream {
                events,
                upstream_id,
            } => super::with_upstream_id(sse(events), upstream_id),
        },
    )
}

/// Renders canonical events as Responses SSE: `event:`/`data:` pairs, and
/// `data: [DONE]` after the terminal event (OpenResponses requires it;
/// OpenAI clients ignore it).
fn sse(events: BoxStream<'static, ResponseEvent>) -> Response {
    let frames = events.ready_chunks(64).map(|batch| {
        let mut buf = Vec::with_capacity(batch.len() * 256);
        for event in &batch {
            buf.extend_from_slice(b"event: ");
            buf.extend_from_slice(event.kind().as_bytes());
            buf.extend_from_slice(b"\ndata: ");
            // Serializing an event into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut buf, event);
            buf.extend_from_slice(b"\n\n");
            if event.terminal().is_some() {
                buf.extend_from_slice(b"data: [DONE]\n\n");
            }
        }
        Bytes::from(buf)
    });
    super::sse_response(frames)
}

/// `GET /v1/responses/{id}`
pub(super) async fn retrieve(
    State(proxy): State<Proxy>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut log = super::access_log(&proxy, "responses.retrieve", &headers);
    let result = proxy.retrieve(&id).await.map(render);
    super::respond(result, &mut log)
}

/// `DELETE /v1/responses/{id}`
pub(super) async fn delete(
    State(proxy): State<Proxy>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut log = super::access_log(&proxy, "responses.delete", &headers);
    let result = proxy.delete(&id).await.map(render);
    super::respond(result, &mut log)
}

/// `GET /v1/responses/{id}/input_items`
pub(super) async fn input_items(
    State(proxy): State<Proxy>,
    Path(id): Path<String>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let mut log = super::access_log(&proxy, "responses.input_items", &headers);
    let result = match query {
        Ok(Query(query)) => proxy.list_input_items(&id, &query, true).await.map(render),
        Err(_) => Err(Error::InvalidRequest {
            message:
                "The query is not valid: use after, before, limit (1-100) and order (asc or desc)."
                    .into(),
            param: None,
            code: Some("invalid_value".into()),
        }),
    };
    super::respond(result, &mut log)
}

/// A stored-response operation's answer as HTTP.
fn render(answer: Answer) -> Response {
    match answer {
        Answer::Local(value) => axum::Json(value).into_response(),
        Answer::Upstream { status, body } => (
            status,
            [(http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
    }
}
