//! The HTTP surface: the router (Responses and stored responses in
//! `responses`, Chat Completions in `chat`, models, health), client
//! authentication, body limits and the JSON checks made before parsing;
//! `connections` serves it with per-connection deadlines and a cap. The
//! endpoints render canonical output in the client's format.

mod chat;
mod connections;
mod messages;
mod responses;

pub use connections::{raise_open_files_limit, serve};

use crate::access::AccessLog;
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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use subtle::ConstantTimeEq;

/// The proxy a router serves. A reload replaces it as a whole: each request
/// runs on the proxy current when it arrived, to its end.
#[derive(Debug, Clone)]
pub(crate) struct Live(Arc<LiveInner>);

#[derive(Debug)]
struct LiveInner {
    proxy: RwLock<Proxy>,
    /// Shutting down: `/healthz` says so (503).
    draining: AtomicBool,
    /// The shutdown deadline passed: in-flight requests end.
    cutoff: tokio::sync::watch::Sender<bool>,
}

impl Live {
    pub fn new(proxy: Proxy) -> Self {
        let (cutoff, rx) = tokio::sync::watch::channel(false);
        Live(Arc::new(LiveInner {
            proxy: RwLock::new(proxy.with_cutoff(rx)),
            draining: AtomicBool::new(false),
            cutoff,
        }))
    }

    pub fn current(&self) -> Proxy {
        match self.0.proxy.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn replace(&self, proxy: Proxy) {
        let proxy = proxy.with_cutoff(self.0.cutoff.subscribe());
        match self.0.proxy.write() {
            Ok(mut p) => *p = proxy,
            Err(poisoned) => *poisoned.into_inner() = proxy,
        }
    }

    /// Marks the server as shutting down (`/healthz` answers 503).
    pub fn drain(&self) {
        self.0.draining.store(true, Ordering::Relaxed);
    }

    /// Ends every in-flight request: streams with an error event, others
    /// with a 503.
    pub fn cut_off(&self) {
        self.drain();
        self.0.cutoff.send_replace(true);
    }
}

impl FromRef<Live> for Proxy {
    fn from_ref(live: &Live) -> Proxy {
        live.current()
    }
}

/// The router: `/v1/responses`, `/v1/chat/completions`, `/v1/messages`,
/// `/v1/models` (and `/metrics` when `server.metrics_on_main_listener` is
/// set), behind client auth when a key is configured, and `/healthz`
/// (never authenticated). The `/v1` prefix is optional.
pub(crate) fn router(proxy: Live) -> Router {
    let mut api = Router::new();
    if proxy.current().inner.metrics_on_main {
        api = api.route("/metrics", get(metrics));
    }
    let api = api
        .route("/v1/responses", post(responses::handle))
        .route("/responses", post(responses::handle))
        .route(
            "/v1/responses/{id}",
            get(responses::retrieve).delete(responses::delete),
        )
        .route(
            "/responses/{id}",
            get(responses::retrieve).delete(responses::delete),
        )
        .route(
            "/v1/responses/{id}/input_items",
            get(responses::input_items),
        )
        .route("/responses/{id}/input_items", get(responses::input_items))
        .route("/v1/messages", post(messages::handle))
        .route("/messages", post(messages::handle))
        .route("/v1/messages/count_tokens", post(messages::count_tokens))
        .route("/messages/count_tokens", post(messages::count_tokens))
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

/// `GET /metrics` alone, unauthenticated (a listener of its own).
pub(crate) fn metrics_router(proxy: Live) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(proxy)
}

/// The Prometheus text format of the current proxy's metrics.
async fn metrics(State(proxy): State<Proxy>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        proxy.metrics().render(),
    )
        .into_response()
}

/// Readiness: 200 once the translators are loaded and the listener is up
/// (it is not up before), 503 from the start of a shutdown.
async fn healthz(State(live): State<Live>) -> Response {
    if live.0.draining.load(Ordering::Relaxed) {
        let body = json!({"status": "shutting_down"});
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    }
    let backends = live.current().inner.backends.len();
    axum::Json(json!({"status": "ok", "backends": backends})).into_response()
}

async fn not_found(request: Request) -> Error {
    Error::Route {
        status: StatusCode::NOT_FOUND,
        message: format!(
            "Unknown request URL: {} {}. This proxy serves POST /v1/responses, GET and DELETE /v1/responses/{{id}}, GET /v1/responses/{{id}}/input_items, POST /v1/chat/completions, POST /v1/messages, POST /v1/messages/count_tokens, GET /v1/models and GET /healthz.",
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

/// Requires the client key (`LLMPROXY_API_KEY`) when one is set, as
/// `Authorization: Bearer <key>` or as `x-api-key: <key>` (Anthropic's
/// clients send one or the other).
async fn authenticate(State(proxy): State<Proxy>, request: Request, next: Next) -> Response {
    if let Some(key) = &proxy.inner.api_key {
        let headers = request.headers();
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            });
        let api_key = headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::trim);
        let matches = |p: Option<&str>| {
            p.is_some_and(|p| bool::from(p.as_bytes().ct_eq(key.expose().as_bytes())))
        };
        if !(matches(bearer) || matches(api_key)) {
            let message = if bearer.is_some() || api_key.is_some() {
                "Incorrect API key: the key sent (Authorization: Bearer or x-api-key) does not match this proxy's key (LLMPROXY_API_KEY)."
            } else {
                "Missing API key: send `Authorization: Bearer <key>` (or `x-api-key: <key>`) with the key this proxy was started with (LLMPROXY_API_KEY)."
            };
            let path = request.uri().path();
            let endpoint = match () {
                _ if path.ends_with("/chat/completions") => "chat",
                _ if path.contains("/responses") => "responses",
                _ if is_messages(path) => "messages",
                _ => "models",
            };
            // Without the key, a client's trace context is not taken: it
            // could force every such request into the exported traces.
            let client_id = request
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok());
            let mut log = proxy.access_log(endpoint, client_id, None);
            let error = Error::Unauthorized(message.into());
            log.failed(&error);
            let response = if endpoint == "messages" {
                messages::error_response(&error)
            } else {
                error.into_response()
            };
            return with_request_id(response, &log);
        }
    }
    next.run(request).await
}

/// Whether `path` is one of the Messages endpoints, whose errors are in
/// Anthropic's shape.
fn is_messages(path: &str) -> bool {
    path.strip_prefix("/v1")
        .unwrap_or(path)
        .starts_with("/messages")
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
    // A compressed body parsed as if it were plain JSON would fail in
    // confusing ways (or slip past checks): refused instead.
    if let Some(encoding) = request.headers().get(header::CONTENT_ENCODING) {
        let encoding = encoding.to_str().unwrap_or("?").trim();
        if !encoding.eq_ignore_ascii_case("identity") {
            return Err(Error::UnsupportedEncoding(
                encoding.chars().take(40).collect(),
            ));
        }
    }
    let collect = Limited::new(request.into_body(), limit).collect();
    let Ok(collected) = tokio::time::timeout(proxy.inner.body_timeout, collect).await else {
        return Err(Error::RequestTimeout {
            limit_secs: proxy.inner.body_timeout.as_secs_f64(),
        });
    };
    match collected {
        Ok(collected) => {
            let body = collected.to_bytes();
            crate::ingress::check_nesting(&body)?;
            Ok(body)
        }
        Err(e) if e.is::<LengthLimitError>() => Err(too_large),
        Err(e) => Err(Error::InvalidRequest {
            message: format!("Could not read the request body: {e}."),
            param: None,
            code: None,
        }),
    }
}

/// The log record of a request, with the client's `x-request-id` if usable.
fn access_log(proxy: &Proxy, endpoint: &'static str, headers: &http::HeaderMap) -> AccessLog {
    let client_id = headers.get("x-request-id").and_then(|v| v.to_str().ok());
    proxy.access_log(endpoint, client_id, Some(headers))
}

/// The client's response for what an endpoint produced, with the log told
/// of a failure and the request id added.
fn respond(result: Result<Response, Error>, log: &mut AccessLog) -> Response {
    let response = match result {
        Ok(response) => {
            log.answered(response.status().as_u16());
            response
        }
        Err(e) => {
            log.failed(&e);
            e.into_response()
        }
    };
    with_request_id(response, log)
}

/// Tells the client the id its request is logged under.
fn with_request_id(mut response: Response, log: &AccessLog) -> Response {
    if let Ok(value) = HeaderValue::from_str(&log.id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// What an endpoint checks of a body before running it (for the fuzzer).
#[cfg(feature = "internals")]
pub(crate) fn check_request(endpoint: &str, body: &[u8]) -> Result<(), Error> {
    crate::ingress::check_nesting(body)?;
    match endpoint {
        "chat" => crate::ingress::chat::parse(body).map(drop),
        "messages" => {
            let request = crate::ingress::messages::parse(body)?;
            llmproxy_api::messages::request::messages_to_responses(&request)
                .map(drop)
                .map_err(Error::from)
        }
        _ => crate::ingress::RequestHead::parse(body).map(drop),
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

/// `GET /v1/models`: the model ids clients can use (see `catalog`).
async fn models(State(proxy): State<Proxy>) -> impl IntoResponse {
    let data: Vec<_> = proxy
        .model_ids()
        .await
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
