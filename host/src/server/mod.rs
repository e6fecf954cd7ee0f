//! The HTTP surface: routes, client authentication, body limits; the
//! endpoints render canonical output in the client's format.

mod chat;
mod responses;

use crate::error::Error;
use crate::proxy::Proxy;
use axum::Router;
use axum::body::Body;
use axum::extract::{FromRef, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::json;
use std::convert::Infallible;
use std::sync::{Arc, RwLock};
use subtle::ConstantTimeEq;

/// The proxy a router serves. A reload replaces it as a whole: each request
/// runs on the proxy current when it arrived, to its end.
#[derive(Debug, Clone)]
pub(crate) struct Live(Arc<RwLock<Proxy>>);

impl Live {
    pub fn new(proxy: Proxy) -> Self {
        Live(Arc::new(RwLock::new(proxy)))
    }

    pub fn current(&self) -> Proxy {
        match self.0.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn replace(&self, proxy: Proxy) {
        match self.0.write() {
            Ok(mut p) => *p = proxy,
            Err(poisoned) => *poisoned.into_inner() = proxy,
        }
    }
}

impl FromRef<Live> for Proxy {
    fn from_ref(live: &Live) -> Proxy {
        live.current()
    }
}

/// The router: `/v1/responses`, `/v1/models` (behind client auth when a key
/// is configured) and `/healthz` (never authenticated). The `/v1` prefix is
/// optional.
pub(crate) fn router(proxy: Live) -> Router {
    let api = Router::new()
        .route("/v1/responses", post(responses::handle))
        .route("/responses", post(responses::handle))
        .route("/v1/chat/completions", post(chat::handle))
        .route("/chat/completions", post(chat::handle))
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
            "Unknown request URL: {} {}. This proxy serves POST /v1/responses, POST /v1/chat/completions, GET /v1/models and GET /healthz.",
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
pub(crate) async fn read_body(proxy: &Proxy, request: Request) -> Result<Bytes, Error> {
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

/// Adds the upstream's request id, if it sent one.
fn with_upstream_id(mut response: Response, id: Option<String>) -> Response {
    if let Some(value) = id.and_then(|id| HeaderValue::from_str(&id).ok()) {
        response
            .headers_mut()
            .insert("x-upstream-request-id", value);
    }
    response
}

/// A streamed response with SSE headers; `frames` yields ready-made bytes.
fn sse_response<S>(frames: S) -> Response
where
    S: futures_util::Stream<Item = Bytes> + Send + 'static,
{
    let body = Body::from_stream(frames.map(Ok::<_, Infallible>));
    let mut response = Response::new(body);
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
    let data: Vec<_> = proxy
        .models()
        .into_iter()
        .map(|(model, backend)| {
            json!({
                "id": model,
                "object": "model",
                "created": 0,
                "owned_by": backend,
            })
        })
        .collect();
    axum::Json(json!({"object": "list", "data": data}))
}
