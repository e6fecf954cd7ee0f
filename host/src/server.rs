//! The HTTP surface: routes, client authentication, body limits, and
//! rendering canonical output as Responses JSON or SSE.

use crate::error::Error;
use crate::proxy::{Outcome, Proxy};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use http::{HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::{Value, json};
use std::convert::Infallible;
use subtle::ConstantTimeEq;

/// The router: `/v1/responses`, `/v1/models` (behind client auth when a key
/// is configured) and `/healthz` (never authenticated). The `/v1` prefix is
/// optional.
pub(crate) fn router(proxy: Proxy) -> Router {
    let api = Router::new()
        .route("/v1/responses", post(responses))
        .route("/responses", post(responses))
        .route("/v1/models", get(models))
        .route("/models", get(models))
        .route_layer(middleware::from_fn_with_state(proxy.clone(), authenticate));
    Router::new()
        .merge(api)
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(proxy)
}

async fn healthz() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

async fn not_found(request: Request) -> Error {
    Error::Route {
        status: StatusCode::NOT_FOUND,
        message: format!(
            "Unknown request URL: {} {}. This proxy serves POST /v1/responses, GET /v1/models and GET /healthz.",
            request.method(),
            request.uri().path()
        ),
    }
}

async fn method_not_allowed(request: Request) -> Error {
    Error::Route {
        status: StatusCode::METHOD_NOT_ALLOWED,
        message: format!(
            "{} is not allowed on {}.",
            request.method(),
            request.uri().path()
        ),
    }
}

/// Requires `Authorization: Bearer <LLMPROXY_API_KEY>` when a key is set.
async fn authenticate(State(proxy): State<Proxy>, request: Request, next: Next) -> Response {
    if let Some(key) = &proxy.inner.api_key {
        let provided = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            });
        let ok = provided.is_some_and(|p| bool::from(p.as_bytes().ct_eq(key.expose().as_bytes())));
        if !ok {
            let message = if provided.is_some() {
                "Incorrect API key: the bearer token does not match this proxy's key (LLMPROXY_API_KEY)."
            } else {
                "Missing API key: send `Authorization: Bearer <key>` with the key this proxy was started with (LLMPROXY_API_KEY)."
            };
            return Error::Unauthorized(message.into()).into_response();
        }
    }
    next.run(request).await
}

/// Reads a request body, enforcing the size limit with a 413.
async fn read_body(proxy: &Proxy, request: Request) -> Result<Bytes, Error> {
    let limit = proxy.inner.max_body_bytes;
    let too_large = Error::PayloadTooLarge {
        limit_mib: proxy.inner.max_body_mib,
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large);
    }
    match Limited::new(request.into_body(), limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(too_large),
        Err(e) => Err(Error::InvalidRequest {
            message: format!("Could not read the request body: {e}."),
            param: None,
            code: None,
        }),
    }
}

/// `POST /v1/responses`
async fn responses(State(proxy): State<Proxy>, request: Request) -> Response {
    let body = match read_body(&proxy, request).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    match proxy.execute(body, "{}").await {
        Ok(Outcome::Complete {
            response,
            upstream_id,
        }) => with_upstream_id(axum::Json(response).into_response(), upstream_id),
        Ok(Outcome::Stream {
            events,
            upstream_id,
        }) => with_upstream_id(sse(events), upstream_id),
        Err(e) => {
            tracing::info!(status = e.status().as_u16(), "request failed: {e}");
            e.into_response()
        }
    }
}

fn with_upstream_id(mut response: Response, id: Option<String>) -> Response {
    if let Some(value) = id.and_then(|id| HeaderValue::from_str(&id).ok()) {
        response
            .headers_mut()
            .insert("x-upstream-request-id", value);
    }
    response
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
        Ok::<_, Infallible>(Bytes::from(buf))
    });
    let mut response = Response::new(Body::from_stream(frames));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Ask intermediaries (nginx and friends) not to buffer the stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// `GET /v1/models`: the configured model names and globs, in routing order.
async fn models(State(proxy): State<Proxy>) -> impl IntoResponse {
    let mut seen = std::collections::HashSet::new();
    let mut data = Vec::new();
    for backend in &proxy.inner.backends {
        for model in &backend.models {
            if seen.insert(model.as_str()) {
                data.push(json!({
                    "id": model,
                    "object": "model",
                    "created": 0,
                    "owned_by": backend.name,
                }));
            }
        }
    }
    axum::Json(json!({"object": "list", "data": data}))
}
