//! Talking to upstreams: the HTTP client, credentials, timeouts, and the SSE
//! parser for upstream event streams.

use crate::config::{BackendConfig, ConfigError, Timeouts};
use crate::credentials::Credentials;
use crate::error::Error;
use crate::translator::UpstreamRequest;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderName, HeaderValue, Method};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

mod fence;
pub(crate) use crate::credentials::is_credential_header;
pub(crate) use fence::Fence;

/// Largest non-streamed upstream body the proxy reads (it goes through a
/// translator, whose memory is capped anyway).
const MAX_UPSTREAM_BODY: usize = 64 * 1024 * 1024;

/// How long listing an upstream's models may take.
const LIST_TIMEOUT: Duration = Duration::from_secs(10);

/// Pages of a Vertex AI publisher model list read at most.
const MAX_LIST_PAGES: usize = 20;
/// Largest single SSE event accepted from an upstream.
const MAX_SSE_EVENT: usize = 16 * 1024 * 1024;

/// Headers the host owns: hop-by-hop fields (RFC 9110 §7.6.1) and framing.
fn is_host_owned_header(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
            // Trace context is the host's (with `[telemetry]`).
            | "traceparent"
            | "tracestate"
    )
}

/// The client span of one upstream call in a traced request, recorded when
/// dropped: with the answer's status, or as `cancelled` when the request
/// was dropped before the upstream answered (its `traceparent` was sent).
struct UpstreamSpan {
    trace: std::sync::Arc<crate::telemetry::Recorder>,
    context: crate::telemetry::TraceParent,
    started: std::time::Instant,
    method: &'static str,
    attributes: Vec<(&'static str, crate::telemetry::Value)>,
    error: Option<String>,
}

impl UpstreamSpan {
    fn start(
        trace: std::sync::Arc<crate::telemetry::Recorder>,
        method: &str,
        upstream: &Upstream,
    ) -> UpstreamSpan {
        use crate::telemetry::Value;
        // The semantic conventions' known methods; a translator's odd one
        // is not echoed.
        let method = match method {
            "GET" => "GET",
            "POST" => "POST",
            "PUT" => "PUT",
            "DELETE" => "DELETE",
            "PATCH" => "PATCH",
            "HEAD" => "HEAD",
            "OPTIONS" => "OPTIONS",
            _ => "_OTHER",
        };
        let mut attributes = vec![
            ("http.request.method", Value::from(method)),
            ("llmproxy.backend", upstream.backend.as_str().into()),
        ];
        if let Some(host) = upstream.base_url.host_str() {
            attributes.push(("server.address", host.into()));
        }
        if let Some(port) = upstream.base_url.port_or_known_default() {
            attributes.push(("server.port", u64::from(port).into()));
        }
        UpstreamSpan {
            context: trace.child_parent(),
            trace,
            started: std::time::Instant::now(),
            method,
            attributes,
            error: Some("cancelled".into()),
        }
    }

    fn ended(&mut self, result: &Result<reqwest::Response, Error>) {
        self.error = match result {
            Ok(response) => {
                let status = response.status().as_u16();
                self.attributes
                    .push(("http.response.status_code", u64::from(status).into()));
                (status >= 400).then(|| status.to_string())
            }
            Err(e) => Some(
                crate::access::upstream_class(e)
                    .unwrap_or("_OTHER")
                    .to_string(),
            ),
        };
    }
}

impl Drop for UpstreamSpan {
    fn drop(&mut self) {
        let error = self.error.take();
        let mut attributes = std::mem::take(&mut self.attributes);
        if let Some(kind) = &error {
            attributes.push(("error.type", kind.clone().into()));
        }
        let name = if self.method == "_OTHER" {
            "HTTP"
        } else {
            self.method
        };
        self.trace.child(
            Some(self.context.span_id),
            name.to_string(),
            crate::telemetry::Kind::Client,
            self.started,
            attributes,
            error.is_some(),
        );
    }
}

/// Why an attempt may be worth repeating.
enum Failure {
    /// Connecting or sending failed.
    Transport(Error),
    /// The upstream answered with a retryable status.
    Status(reqwest::Response),
}

/// One backend's upstream: base URL, credentials, static headers, timeouts.
pub(crate) struct Upstream {
    backend: String,
    base: String,
    /// `base`, parsed: every request URL keeps its origin and path prefix.
    base_url: reqwest::Url,
    /// What the translator's paths may be.
    fence: Fence,
    client: reqwest::Client,
    credentials: Credentials,
    headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) timeouts: Timeouts,
    /// The URLs of recent paths, checked and parsed (most requests of a
    /// backend go to a few paths; parsing one costs more than the lookup).
    urls: std::sync::Mutex<HashMap<String, reqwest::Url>>,
    /// Where retries are counted.
    metrics: std::sync::Arc<crate::metrics::Metrics>,
}

/// Most URLs kept parsed per backend.
const URL_CACHE: usize = 64;

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("backend", &self.backend)
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// A TLS configuration using the platform's trust store and the `ring`
/// provider, built without touching process-global state.
pub(crate) fn tls_config() -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls_platform_verifier::Verifier::new(provider.clone())
        .map_err(|e| format!("cannot load the platform's TLS roots: {e}"))?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(config)
}

impl Upstream {
    pub(crate) fn new(
        config: &BackendConfig,
        credentials: Credentials,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
    ) -> Result<Self, ConfigError> {
        let at = format!("backend {:?}", config.name);
        let base = config
            .base_url()
            .ok_or_else(|| {
                ConfigError::new(format!(
                    "{at}: base_url is required for kind {:?}, e.g. base_url = \"http://127.0.0.1:11434/v1\"",
                    config.kind
                ))
            })?
            .trim_end_matches('/')
            .to_string();
        let base_url = reqwest::Url::parse(&base)
            .map_err(|e| ConfigError::new(format!("{at}: base_url {base:?} is not a URL: {e}")))?;
        let fence = match &credentials {
            Credentials::Gcp(_) => {
                let setting = |key: &str| {
                    config
                        .settings
                        .get(key)
                        .and_then(toml::Value::as_str)
                        .filter(|v| !v.is_empty())
                        .map(str::to_string)
                        .ok_or_else(|| {
                            ConfigError::new(format!(
                                "{at}: it uses Google credentials, which the proxy only sends to Vertex AI model methods of one project and location: set settings.{key}"
                            ))
                        })
                };
                Fence::Vertex {
                    project: setting("project")?,
                    location: setting("location")?,
                }
            }
            _ => Fence::Base,
        };
        let timeouts = config.timeouts();
        let tls = tls_config().map_err(|e| ConfigError::new(format!("{at}: {e}")))?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            // A redirect would carry the credentials and the prompt to
            // wherever the upstream points: never followed (a 3xx is a 502).
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeouts.connect)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .no_proxy()
            .build()
            .map_err(|e| ConfigError::new(format!("{at}: cannot build the HTTP client: {e}")))?;
        let mut headers = Vec::new();
        for (name, value) in &config.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| ConfigError::new(format!("{at}: bad header name {name:?}")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| ConfigError::new(format!("{at}: bad value for header {name}")))?;
            headers.push((name, value));
        }
        Ok(Upstream {
            backend: config.name.clone(),
            base,
            base_url,
            fence,
            client,
            credentials,
            headers,
            timeouts,
            urls: std::sync::Mutex::default(),
            metrics,
        })
    }

    fn translator_fault(&self, translator: &str, detail: String) -> Error {
        Error::Translator {
            translator: translator.into(),
            detail,
        }
    }

    /// A 400 unless `model` (the upstream name, after `model_map`) may be
    /// sent to this backend: on Vertex AI it becomes a URL path segment.
    pub(crate) fn check_model(&self, model: &str) -> Result<(), Error> {
        let checked = match self.fence {
            Fence::Base => llmproxy_api::model::check(model),
            Fence::Vertex { .. } => llmproxy_api::model::check_path_segment(model),
        };
        checked.map_err(crate::ingress::invalid_model)
    }

    /// The URL for a translator's `path`, checked against the fence and
    /// joined to the base URL, keeping its origin and path prefix.
    fn url(&self, method: &Method, path: &str) -> Result<reqwest::Url, String> {
        self.fence.check(method, path)?;
        if let Some(url) = self.urls.lock().ok().and_then(|u| u.get(path).cloned()) {
            return Ok(url);
        }
        let url = self.joined(path)?;
        if let Ok(mut urls) = self.urls.lock() {
            if urls.len() >= URL_CACHE {
                urls.clear();
            }
            urls.insert(path.to_string(), url.clone());
        }
        Ok(url)
    }

    /// `path` joined to the base URL; refused when it leaves it.
    fn joined(&self, path: &str) -> Result<reqwest::Url, String> {
        let url = reqwest::Url::parse(&format!("{}{path}", self.base)).map_err(|e| {
            format!(
                "asked for the upstream path {path:?}, which makes no URL ({e}); nothing was sent"
            )
        })?;
        let base = &self.base_url;
        let prefix = base.path().trim_end_matches('/');
        let under = url.path() == prefix
            || url
                .path()
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/'));
        if url.scheme() != base.scheme()
            || url.host() != base.host()
            || url.port_or_known_default() != base.port_or_known_default()
            || !under
        {
            return Err(format!(
                "asked for the upstream path {path:?}, which leaves the base URL {}; nothing was sent",
                self.base
            ));
        }
        Ok(url)
    }

    /// Sends a translated request: joins the path to the base URL, adds the
    /// static headers and the credentials, and waits for the response head
    /// (bounded by the first-byte timeout and the total deadline). In a
    /// traced request, the call is a client span whose context goes
    /// upstream as `traceparent`.
    pub(crate) async fn send(
        &self,
        translator: &str,
        request: UpstreamRequest,
        deadline: Instant,
    ) -> Result<reqwest::Response, Error> {
        let Some(trace) = crate::telemetry::current() else {
            return self.send_as(translator, request, deadline, None).await;
        };
        let mut span = UpstreamSpan::start(trace, &request.method, self);
        let result = self
            .send_as(translator, request, deadline, Some(&span.context))
            .await;
        span.ended(&result);
        result
    }

    async fn send_as(
        &self,
        translator: &str,
        request: UpstreamRequest,
        deadline: Instant,
        trace: Option<&crate::telemetry::TraceParent>,
    ) -> Result<reqwest::Response, Error> {
        let method = Method::from_bytes(request.method.as_bytes()).map_err(|_| {
            self.translator_fault(
                translator,
                format!("asked for HTTP method {:?}", request.method),
            )
        })?;
        let url = self
            .url(&method, &request.path)
            .map_err(|rule| self.translator_fault(translator, rule))?;
        let mut headers = http::HeaderMap::new();
        for (name, value) in &request.headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                self.translator_fault(translator, format!("set an invalid header name {name:?}"))
            })?;
            if is_credential_header(&name) {
                return Err(self.translator_fault(
                    translator,
                    format!(
                        "tried to set the credential header {name}; only the host adds credentials"
                    ),
                ));
            }
            if is_host_owned_header(&name) {
                continue;
            }
            self.fence
                .check_header(&name)
                .map_err(|rule| self.translator_fault(translator, rule))?;
            let value = HeaderValue::from_str(value).map_err(|_| {
                self.translator_fault(
                    translator,
                    format!("set an invalid value for header {name}"),
                )
            })?;
            headers.append(name, value);
        }
        if !headers.contains_key(http::header::CONTENT_TYPE) {
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        for (name, value) in &self.headers {
            headers.insert(name, value.clone());
        }
        if let Some(context) = trace
            && let Ok(value) = HeaderValue::from_str(&context.header())
        {
            headers.insert(HeaderName::from_static("traceparent"), value);
            if let Some(state) = crate::telemetry::current().and_then(|t| t.tracestate())
                && let Ok(value) = HeaderValue::from_str(&state)
            {
                headers.insert(HeaderName::from_static("tracestate"), value);
            }
        }
        let body = Bytes::from(request.body);
        let mut retried = 0;
        let mut refreshed = false;
        loop {
            let failure = match self
                .attempt(&method, &url, &headers, body.clone(), deadline)
                .await?
            {
                Ok((response, applied)) => {
                    let status = response.status();
                    if status.is_redirection() {
                        return Err(self.redirected(&response));
                    }
                    if status == http::StatusCode::UNAUTHORIZED
                        && !refreshed
                        && self.credentials.rejected(&applied)
                    {
                        // A Google token Vertex no longer accepts: fetch a
                        // new one and try once more.
                        tracing::info!(backend = %self.backend, "upstream rejected the access token; refreshing it and retrying once");
                        refreshed = true;
                        continue;
                    }
                    if !is_retryable(status) {
                        return Ok(response);
                    }
                    Failure::Status(response)
                }
                Err(e) => Failure::Transport(e),
            };
            // The upstream failed before answering anything usable.
            let hint = match &failure {
                Failure::Status(response) => retry_after(response.headers()),
                Failure::Transport(_) => None,
            };
            let wait = (retried < self.timeouts.retries)
                .then(|| self.retry_wait(retried, hint, deadline))
                .flatten();
            let Some(wait) = wait else {
                return match failure {
                    Failure::Transport(error) => Err(error),
                    Failure::Status(response) => Ok(response),
                };
            };
            retried += 1;
            self.metrics.retry(&self.backend);
            let why = match failure {
                Failure::Transport(error) => error.redacted().to_string(),
                Failure::Status(response) => format!("HTTP {}", response.status().as_u16()),
            };
            tracing::warn!(
                backend = %self.backend,
                attempt = retried,
                "upstream failed before answering ({why}); retrying in {} ms",
                wait.as_millis()
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// The 502 for a redirect, which is never followed: it would carry the
    /// credentials, the static headers and the prompt elsewhere.
    fn redirected(&self, response: &reqwest::Response) -> Error {
        let to = response
            .headers()
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(|l| format!(" to {:?}", l.chars().take(200).collect::<String>()))
            .unwrap_or_default();
        Error::BadUpstream {
            backend: self.backend.clone(),
            detail: format!(
                "it answered HTTP {} with a redirect{to}, which llmproxy does not follow (a redirect would take the credentials and the request elsewhere); set the backend's base_url to the address that answers",
                response.status().as_u16()
            ),
        }
    }

    /// How long to wait before retry number `retried + 1`, or `None` when
    /// the wait would not end well before the deadline. The upstream's
    /// `Retry-After` wins over the backoff; waits above a minute are not
    /// worth holding the client for.
    fn retry_wait(
        &self,
        retried: u32,
        retry_after: Option<u32>,
        deadline: Instant,
    ) -> Option<Duration> {
        let wait = match retry_after {
            Some(secs) => Duration::from_secs(u64::from(secs)),
            None => self.timeouts.backoff.saturating_mul(1 << retried.min(16)),
        };
        let left = deadline.saturating_duration_since(Instant::now());
        (wait <= Duration::from_secs(60) && wait < left / 2).then_some(wait)
    }

    /// One try: adds the credentials and waits for the response head.
    async fn attempt(
        &self,
        method: &Method,
        url: &reqwest::Url,
        headers: &http::HeaderMap,
        body: Bytes,
        deadline: Instant,
    ) -> Result<Result<(reqwest::Response, crate::credentials::Applied), Error>, Error> {
        let applied = self.credentials.headers().await?;
        let mut headers = headers.clone();
        for (name, value) in &applied.headers {
            headers.insert(name, value.clone());
        }
        let request = self
            .client
            .request(method.clone(), url.clone())
            .headers(headers)
            .body(body)
            .build()
            .map_err(|e| Error::Internal(format!("cannot build the upstream request: {e}")))?;
        let left = deadline.saturating_duration_since(Instant::now());
        let wait = self.timeouts.first_byte.min(left);
        match tokio::time::timeout(wait, self.client.execute(request)).await {
            Err(_) if wait < self.timeouts.first_byte => Err(Error::UpstreamTimeout {
                backend: self.backend.clone(),
                detail: format!(
                    "no response from {} before the exchange's limit of {:.1}s (total_timeout_secs)",
                    self.base,
                    self.timeouts.total.as_secs_f64()
                ),
            }),
            Err(_) => Err(Error::UpstreamTimeout {
                backend: self.backend.clone(),
                detail: format!(
                    "no response from {} within {:.1}s (first_byte_timeout_secs)",
                    self.base,
                    wait.as_secs_f64()
                ),
            }),
            // Failed to connect or to send: nothing was answered, a retry
            // may help.
            Ok(Err(e)) => Ok(Err(self.transport_error(&e))),
            Ok(Ok(response)) => Ok(Ok((response, applied))),
        }
    }

    /// Describes a transport failure (connect, TLS, reset) without secrets.
    pub(crate) fn transport_error(&self, e: &reqwest::Error) -> Error {
        if e.is_timeout() {
            return Error::UpstreamTimeout {
                backend: self.backend.clone(),
                detail: format!("connecting to {} timed out", self.base),
            };
        }
        // reqwest's own message repeats the URL; the causes say what failed.
        let mut causes = Vec::new();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            causes.push(s.to_string());
            source = s.source();
        }
        let detail = if causes.is_empty() {
            e.to_string()
        } else {
            causes.join(": ")
        };
        Error::UpstreamUnreachable {
            backend: self.backend.clone(),
            detail: format!("cannot reach {}: {detail}", self.base),
        }
    }

    /// The model ids the upstream lists (`GET /v1/models` of the proxy):
    /// `GET {base_url}/models` of an OpenAI-style server, or Vertex AI's
    /// publisher model lists (Google's and Anthropic's). The paths are the
    /// host's own; nothing of a client's is in them.
    pub(crate) async fn list_models(&self, vertex: bool) -> Result<Vec<String>, Error> {
        let deadline = Instant::now() + LIST_TIMEOUT.min(self.timeouts.total);
        let mut ids = Vec::new();
        if !vertex && matches!(self.fence, Fence::Vertex { .. }) {
            // Google credentials go to Vertex AI's own lists only.
            return Err(Error::Internal(
                "a backend with Google credentials lists models only as gcp-vertex".into(),
            ));
        }
        if !vertex {
            let body = self
                .get_json(&format!("{}/models", self.base), deadline)
                .await?;
            for m in body
                .get("data")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(id) = m.get("id").and_then(Value::as_str) {
                    ids.push(id.to_string());
                }
            }
            return Ok(ids);
        }
        for publisher in ["google", "anthropic"] {
            let mut token = String::new();
            for _ in 0..MAX_LIST_PAGES {
                // Under the base URL, prefix kept, like every request.
                let mut url = format!(
                    "{}/v1beta1/publishers/{publisher}/models?pageSize=100",
                    self.base
                );
                if !token.is_empty() {
                    url.push_str("&pageToken=");
                    url.push_str(&token);
                }
                let body = self.get_json(&url, deadline).await?;
                let models = body.get("publisherModels").and_then(Value::as_array);
                for m in models.into_iter().flatten() {
                    if let Some(name) = m.get("name").and_then(Value::as_str)
                        && let Some(id) = name.rsplit('/').next()
                    {
                        ids.push(id.to_string());
                    }
                }
                token = page_token(&body);
                if token.is_empty() {
                    break;
                }
            }
        }
        Ok(ids)
    }

    /// `GET url` with the backend's credentials: the JSON body of a 2xx
    /// answer, or an error naming the status.
    async fn get_json(&self, url: &str, deadline: Instant) -> Result<Value, Error> {
        let url = reqwest::Url::parse(url)
            .map_err(|e| Error::Internal(format!("cannot build the model list URL: {e}")))?;
        let mut headers = http::HeaderMap::new();
        for (name, value) in &self.headers {
            headers.insert(name, value.clone());
        }
        headers.insert(
            http::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        let response = match self
            .attempt(&Method::GET, &url, &headers, Bytes::new(), deadline)
            .await?
        {
            Ok((response, _)) => response,
            Err(e) => return Err(e),
        };
        let status = response.status();
        let body = self.read_body(response, deadline).await?;
        if !status.is_success() {
            return Err(Error::UpstreamUnreachable {
                backend: self.backend.clone(),
                detail: format!(
                    "listing models got HTTP {}: {}",
                    status.as_u16(),
                    // Scrubbed whole, then cut: no secret is half-shown.
                    crate::redact::redact(&String::from_utf8_lossy(&body))
                        .chars()
                        .take(200)
                        .collect::<String>()
                ),
            });
        }
        serde_json::from_slice(&body).map_err(|e| Error::UpstreamUnreachable {
            backend: self.backend.clone(),
            detail: format!("the model list is not JSON: {e}"),
        })
    }

    /// Reads a whole (non-streamed) body, bounded in size and time.
    pub(crate) async fn read_body(
        &self,
        response: reqwest::Response,
        deadline: Instant,
    ) -> Result<Bytes, Error> {
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let wait = self.timeouts.idle.min(left);
            match tokio::time::timeout(wait, stream.next()).await {
                Err(_) => {
                    return Err(Error::UpstreamTimeout {
                        backend: self.backend.clone(),
                        detail: self.timeouts.stalled("the response body", wait, left),
                    });
                }
                Ok(None) => return Ok(Bytes::from(body)),
                Ok(Some(Err(e))) => return Err(self.transport_error(&e)),
                Ok(Some(Ok(chunk))) => {
                    if body.len() + chunk.len() > MAX_UPSTREAM_BODY {
                        return Err(Error::UpstreamUnreachable {
                            backend: self.backend.clone(),
                            detail: format!(
                                "the response body is larger than {} MiB",
                                MAX_UPSTREAM_BODY / (1024 * 1024)
                            ),
                        });
                    }
                    body.extend_from_slice(&chunk);
                }
            }
        }
    }
}

/// The `nextPageToken` of a Vertex AI list page, when it is one that can go
/// in a query as it is (letters, digits, `-_=`); anything else ends the
/// listing rather than reach the URL.
fn page_token(page: &Value) -> String {
    page.get("nextPageToken")
        .and_then(Value::as_str)
        .filter(|t| {
            t.len() <= 1024
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_=".contains(&b))
        })
        .unwrap_or("")
        .to_string()
}

/// The headers of an upstream response as (name, value) strings, for a
/// translator: values scrubbed of secrets.
pub(crate) fn header_pairs(headers: &http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(n, v)| {
            let value = crate::redact::redact(v.to_str().ok()?).into_owned();
            Some((n.as_str().to_string(), value))
        })
        .collect()
}

/// The upstream's id for a request (`x-request-id` or `request-id`),
/// scrubbed of secrets.
pub(crate) fn request_id(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get("x-request-id")
        .or_else(|| headers.get("request-id"))
        .and_then(|v| v.to_str().ok())
        .map(|id| crate::redact::redact(id).into_owned())
}

/// Whether a response is an event stream (`text/event-stream`).
pub(crate) fn is_event_stream(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"))
}

/// Statuses worth a retry when the backend has `retries` (as the OpenAI
/// client libraries do): timeout, conflict, rate limit, server errors.
fn is_retryable(status: http::StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 409 | 429) || status.is_server_error()
}

/// `Retry-After` in whole seconds, when given as seconds.
pub(crate) fn retry_after(headers: &http::HeaderMap) -> Option<u32> {
    headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// The `event:` field, or "" when absent.
    pub event: String,
    /// The `data:` lines joined with "\n".
    pub data: String,
}

/// An incremental SSE parser (WHATWG event-stream rules): `\n`, `\r\n` or
/// `\r` line ends, comments, multi-line data, events split anywhere across
/// network reads.
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    buf: Vec<u8>,
    event: String,
    data: String,
    has_data: bool,
    /// The previous chunk ended in `\r`: a leading `\n` belongs to it.
    skip_lf: bool,
    started: bool,
}

impl SseParser {
    /// Feeds bytes; complete events are appended to `out`.
    pub(crate) fn feed(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), String> {
        let mut chunk = chunk;
        if self.skip_lf && chunk.first() == Some(&b'\n') {
            chunk = &chunk[1..];
        }
        self.skip_lf = false;
        self.buf.extend_from_slice(chunk);
        if !self.started && self.buf.len() >= 3 {
            self.started = true;
            if self.buf.starts_with(b"\xEF\xBB\xBF") {
                self.buf.drain(..3);
            }
        }
        // Work on a taken buffer so lines can be handed to `self.line`
        // without copying them out.
        let buf = std::mem::take(&mut self.buf);
        let mut start = 0;
        let mut i = 0;
        let mut result = Ok(());
        while i < buf.len() {
            let b = buf[i];
            if b != b'\n' && b != b'\r' {
                i += 1;
                continue;
            }
            let line_end = i;
            i += 1;
            if b == b'\r' {
                if i < buf.len() {
                    if buf[i] == b'\n' {
                        i += 1;
                    }
                } else {
                    self.skip_lf = true;
                }
            }
            match std::str::from_utf8(&buf[start..line_end]) {
                Ok(line) => self.line(line, out),
                Err(_) => {
                    result = Err("the event stream is not valid UTF-8".to_string());
                    break;
                }
            }
            start = i;
        }
        self.buf = buf;
        self.buf.drain(..start);
        result?;
        if self.buf.len() + self.data.len() > MAX_SSE_EVENT {
            return Err(format!(
                "an event is larger than {} MiB",
                MAX_SSE_EVENT / (1024 * 1024)
            ));
        }
        Ok(())
    }

    /// The stream ended: dispatches a last event that had no blank line.
    pub(crate) fn finish(&mut self, out: &mut Vec<SseEvent>) -> Result<(), String> {
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            let line = std::str::from_utf8(&rest)
                .map_err(|_| "the event stream is not valid UTF-8".to_string())?
                .to_owned();
            self.line(&line, out);
        }
        self.line("", out);
        Ok(())
    }

    fn line(&mut self, line: &str, out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            if self.has_data {
                out.push(SseEvent {
                    event: std::mem::take(&mut self.event),
                    data: std::mem::take(&mut self.data),
                });
            }
            self.event.clear();
            self.data.clear();
            self.has_data = false;
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => value.clone_into(&mut self.event),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_page_tokens_reach_the_list_url() {
        let token = |t: &str| page_token(&serde_json::json!({ "nextPageToken": t }));
        assert_eq!(token("CgVnZW1pbmk="), "CgVnZW1pbmk=");
        for hostile in [
            "p2&pageSize=1",
            "../../projects/x",
            "a\r\nHost: evil",
            "a b",
            "%2F",
            "a#b",
            "ü",
        ] {
            assert_eq!(token(hostile), "", "{hostile:?}");
        }
        assert_eq!(token(&"a".repeat(2000)), "");
        assert_eq!(page_token(&serde_json::json!({"nextPageToken": 7})), "");
    }

    fn parse_in_pieces(input: &[u8], piece: usize) -> Vec<SseEvent> {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        for chunk in input.chunks(piece) {
            p.feed(chunk, &mut out).unwrap();
        }
        p.finish(&mut out).unwrap();
        out
    }

    fn ev(event: &str, data: &str) -> SseEvent {
        SseEvent {
            event: event.into(),
            data: data.into(),
        }
    }

    #[test]
    fn parses_events_split_anywhere() {
        let input = "\u{feff}: keep-alive\nevent: response.created\ndata: {\"a\":1}\n\ndata: {\"b\":\ndata: 2}\r\n\r\nevent:x\rdata:[DONE]\r\r";
        let want = vec![
            ev("response.created", "{\"a\":1}"),
            ev("", "{\"b\":\n2}"),
            ev("x", "[DONE]"),
        ];
        for piece in 1..input.len() {
            assert_eq!(
                parse_in_pieces(input.as_bytes(), piece),
                want,
                "piece size {piece}"
            );
        }
    }

    #[test]
    fn flushes_a_last_event_without_blank_line() {
        assert_eq!(
            parse_in_pieces(b"data: {\"x\":1}", 4),
            vec![ev("", "{\"x\":1}")]
        );
    }

    #[test]
    fn ignores_events_without_data_and_unknown_fields() {
        assert_eq!(
            parse_in_pieces(b"event: ping\n\nid: 7\nretry: 10\ndata\n\n", 3),
            vec![ev("", "")]
        );
    }

    #[test]
    fn keeps_multibyte_characters_split_across_reads() {
        let input = "data: {\"t\":\"héllo ✓\"}\n\n".as_bytes();
        assert_eq!(
            parse_in_pieces(input, 1),
            vec![ev("", "{\"t\":\"héllo ✓\"}")]
        );
    }

    #[test]
    fn rejects_invalid_utf8() {
        let mut p = SseParser::default();
        assert!(p.feed(b"data: \xff\xfe\n\n", &mut Vec::new()).is_err());
    }

    fn upstream() -> Upstream {
        let config = crate::config::Config::from_toml(
            "[[backends]]\nname = \"b\"\nkind = \"k\"\nbase_url = \"http://127.0.0.1:9/v1\"\nmodels = [\"*\"]\n",
        )
        .unwrap();
        Upstream::new(&config.backends[0], Credentials::None, Default::default()).unwrap()
    }

    fn request(path: &str, headers: &[(&str, &str)]) -> UpstreamRequest {
        UpstreamRequest {
            method: "POST".into(),
            path: path.into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: b"{}".to_vec(),
            state: String::new(),
        }
    }

    #[tokio::test]
    async fn translators_cannot_set_credentials_or_escape_the_base_url() {
        let up = upstream();
        let deadline = Instant::now() + Duration::from_secs(5);
        for header in [
            "Authorization",
            "x-api-key",
            "Proxy-Authorization",
            "x-goog-api-key",
            "api-key",
            "cookie",
        ] {
            let err = up
                .send(
                    "evil",
                    request("/responses", &[(header, "Bearer stolen")]),
                    deadline,
                )
                .await
                .unwrap_err();
            match err {
                Error::Translator { translator, detail } => {
                    assert_eq!(translator, "evil");
                    assert!(detail.contains("credential header"), "{detail}");
                }
                other => panic!("{header}: {other:?}"),
            }
        }
        for path in ["responses", "//evil.example/x", "@evil.example/x"] {
            let err = up
                .send("evil", request(path, &[]), deadline)
                .await
                .unwrap_err();
            assert!(matches!(err, Error::Translator { .. }), "{path}: {err:?}");
        }
        let err = up
            .send(
                "t",
                UpstreamRequest {
                    method: "GE T".into(),
                    ..request("/x", &[])
                },
                deadline,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Translator { .. }), "{err:?}");
    }
}
