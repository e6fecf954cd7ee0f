//! `POST /v1/responses`: canonical output as Responses JSON or SSE; and the
//! stored responses: `GET`/`DELETE /v1/responses/{id}`,
//! `GET /v1/responses/{id}/input_items`.

use crate::access::AccessLog;
use crate::config::StateKeeper;
use crate::conversation::{ListQuery, Record, page, response_not_found};
use crate::error::Error;
use crate::proxy::{Backend, ClientApi, Outcome, Proxy};
use crate::translator::UpstreamRequest;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use http::HeaderMap;
use serde_json::{Value, json};
use std::sync::Arc;

/// `POST /v1/responses`
pub(super) async fn handle(State(proxy): State<Proxy>, request: Request) -> Response {
    let mut log = super::access_log("responses", request.headers());
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

/// A response id as it may appear in a path: what the proxy and OpenAI
/// mint (letters, digits, `_`, `-`), so it is safe to pass upstream.
fn checked_id(id: &str) -> Result<&str, Error> {
    let plain = (1..=200).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if plain {
        Ok(id)
    } else {
        Err(response_not_found(id, ": that is not a response id"))
    }
}

/// The query sent on to a stateful upstream: rebuilt from the parsed
/// parameters (item ids as plain as response ids), never the client's text.
fn forwarded_query(query: &ListQuery) -> Result<String, Error> {
    let invalid = |param: &str| Error::InvalidRequest {
        message: format!(
            "`{param}` is not valid: use after and before with item ids, limit (1-100) and order (asc or desc)."
        ),
        param: Some(param.into()),
        code: Some("invalid_value".into()),
    };
    let mut parts = Vec::new();
    for (name, value) in [("after", &query.after), ("before", &query.before)] {
        if let Some(v) = value {
            checked_id(v).map_err(|_| invalid(name))?;
            parts.push(format!("{name}={v}"));
        }
    }
    if let Some(limit) = query.limit {
        if !(1..=100).contains(&limit) {
            return Err(invalid("limit"));
        }
        parts.push(format!("limit={limit}"));
    }
    if let Some(order) = &query.order {
        if !matches!(order.as_str(), "asc" | "desc") {
            return Err(invalid("order"));
        }
        parts.push(format!("order={order}"));
    }
    Ok(if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    })
}

/// Where a stored response is.
enum Holder {
    /// Kept by the proxy.
    Local(Record),
    /// Kept by this backend's upstream.
    Upstream(Arc<Backend>),
}

/// Finds who keeps `id`. A response the proxy knows nothing about is asked
/// of the upstream when exactly one backend keeps its own state.
async fn locate(proxy: &Proxy, id: &str) -> Result<Holder, Error> {
    let stateful = || {
        let mut found = proxy
            .inner
            .backends
            .iter()
            .filter(|b| b.state == StateKeeper::Upstream);
        match (found.next(), found.next()) {
            (Some(only), None) => Some(only.clone()),
            _ => None,
        }
    };
    match proxy.stored(id).await {
        Ok(record) if record.upstream => proxy
            .inner
            .backends
            .iter()
            .find(|b| b.name == record.backend)
            .cloned()
            .map(Holder::Upstream)
            .ok_or_else(|| {
                response_not_found(
                    id,
                    &format!(
                        " here: it is kept by the upstream of backend {:?}, which is no longer configured",
                        record.backend
                    ),
                )
            }),
        Ok(record) => Ok(Holder::Local(record)),
        Err(e @ Error::NotFound { .. }) => stateful().map(Holder::Upstream).ok_or(e),
        Err(e) => Err(e),
    }
}

/// Sends a `GET`/`DELETE` on to a stateful backend's upstream and passes its
/// answer back (credentials scrubbed).
async fn forward(backend: &Backend, method: &str, path: String) -> Result<Response, Error> {
    let request = UpstreamRequest {
        method: method.into(),
        path,
        headers: vec![("accept".into(), "application/json".into())],
        body: Vec::new(),
        state: String::new(),
    };
    let deadline = tokio::time::Instant::now() + backend.upstream.timeouts.total;
    let answer = backend
        .upstream
        .send("passthrough", request, deadline)
        .await?;
    let status = answer.status();
    let body = backend.upstream.read_body(answer, deadline).await?;
    let body = crate::redact::redact_owned(String::from_utf8_lossy(&body).into_owned());
    Ok((
        status,
        [(http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

/// `GET /v1/responses/{id}`
pub(super) async fn retrieve(
    State(proxy): State<Proxy>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut log = super::access_log("responses.retrieve", &headers);
    let result = async {
        let id = checked_id(&id)?;
        match locate(&proxy, id).await? {
            Holder::Local(record) => {
                Ok(axum::Json(record.response.unwrap_or_default()).into_response())
            }
            Holder::Upstream(backend) => forward(&backend, "GET", format!("/responses/{id}")).await,
        }
    }
    .await;
    super::respond(result, &mut log)
}

/// `DELETE /v1/responses/{id}`
pub(super) async fn delete(
    State(proxy): State<Proxy>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut log = super::access_log("responses.delete", &headers);
    let result = async {
        let id = checked_id(&id)?;
        match locate(&proxy, id).await? {
            Holder::Local(_) => {
                proxy.forget(id).await?;
                Ok(
                    axum::Json(json!({"id": id, "object": "response.deleted", "deleted": true}))
                        .into_response(),
                )
            }
            Holder::Upstream(backend) => {
                let answer = forward(&backend, "DELETE", format!("/responses/{id}")).await?;
                if answer.status().is_success() {
                    proxy.forget(id).await?;
                }
                Ok(answer)
            }
        }
    }
    .await;
    super::respond(result, &mut log)
}

/// `GET /v1/responses/{id}/input_items`
pub(super) async fn input_items(
    State(proxy): State<Proxy>,
    Path(id): Path<String>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let mut log = super::access_log("responses.input_items", &headers);
    let result = async {
        let id = checked_id(&id)?;
        let Ok(Query(query)) = query else {
            return Err(Error::InvalidRequest {
                message: "The query is not valid: use after, before, limit (1-100) and order (asc or desc).".into(),
                param: None,
                code: Some("invalid_value".into()),
            });
        };
        match locate(&proxy, id).await? {
            Holder::Local(_) => {
                let items = proxy.input_items(id).await?;
                Ok(axum::Json(page(items, &query)?).into_response())
            }
            Holder::Upstream(backend) => {
                let query = forwarded_query(&query)?;
                forward(&backend, "GET", format!("/responses/{id}/input_items{query}")).await
            }
        }
    }
    .await;
    super::respond(result, &mut log)
}
