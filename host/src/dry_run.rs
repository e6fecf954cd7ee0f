//! `llmproxy translate`: one request through the real proxy and a backend's
//! translator, offline. The upstream is a capture server on 127.0.0.1 that
//! records what the proxy sends and answers with a recorded response; the
//! credentials are placeholders, so no secret is read or shown.

use crate::config::{AuthConfig, Config, KeySource, KindDefaults};
use crate::proxy::{Proxy, Tap};
use axum::extract::State;
use serde_json::Value;
use std::sync::{Arc, Mutex};

/// What the placeholder credentials read.
pub const REDACTED: &str = "[redacted]";

/// A dry run's input.
#[derive(Debug, Clone)]
pub struct DryRunInput {
    /// A Chat Completions (`messages`) or Responses (`input`) request, JSON.
    pub request: Vec<u8>,
    /// Replaces the request's `model` when set.
    pub model: Option<String>,
    /// The upstream's answer to replay: JSON, or an SSE stream (text starting
    /// with `event:`, `data:`, `id:` or `:`).
    pub recorded: Option<Recorded>,
}

/// A recorded upstream answer.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Its HTTP status.
    pub status: u16,
    /// Its body.
    pub body: Vec<u8>,
}

/// What a dry run found.
#[derive(Debug, Clone)]
pub struct DryRun {
    /// The request the proxy would send upstream; `None` when it refused the
    /// request before sending anything (see `client`).
    pub upstream: Option<UpstreamCall>,
    /// The canonical output: one Responses object, or the stream's events;
    /// empty when the request passed through (the upstream speaks the
    /// client's API, see the README, "Passthrough").
    pub canonical: Vec<Value>,
    /// What the client gets (only without a recorded answer is it absent).
    pub client: Option<ClientAnswer>,
}

/// An upstream request as the proxy would send it.
#[derive(Debug, Clone)]
pub struct UpstreamCall {
    /// The HTTP method.
    pub method: String,
    /// The full URL: the backend's base URL and the translator's path.
    pub url: String,
    /// Every header, credentials as [`REDACTED`].
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// The proxy's answer to the client.
#[derive(Debug, Clone)]
pub struct ClientAnswer {
    /// The HTTP status.
    pub status: u16,
    /// `Chat Completions` or `Responses`.
    pub format: &'static str,
    /// `application/json` or `text/event-stream`.
    pub content_type: String,
    /// The body: JSON, or the SSE stream.
    pub body: String,
}

/// A dry run that could not run.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DryRunError(String);

fn fail(message: impl Into<String>) -> DryRunError {
    DryRunError(message.into())
}

#[derive(Clone)]
struct Capture {
    seen: Arc<Mutex<Vec<UpstreamCall>>>,
    recorded: Option<Recorded>,
}

/// Runs `input` through the proxy `config` describes. Backends' base URLs
/// point at a capture server and their credentials are placeholders.
pub async fn dry_run(mut config: Config, input: DryRunInput) -> Result<DryRun, DryRunError> {
    let mut request: serde_json::Map<String, Value> = serde_json::from_slice(&input.request)
        .map_err(|e| fail(format!("the request is not a JSON object: {e}")))?;
    let (path, format) = if request.contains_key("messages") {
        ("/v1/chat/completions", "Chat Completions")
    } else if request.contains_key("input") {
        ("/v1/responses", "Responses")
    } else {
        return Err(fail(
            "the request has neither `messages` (Chat Completions) nor `input` (Responses)",
        ));
    };
    if let Some(model) = input.model {
        request.insert("model".into(), Value::String(model));
    }
    if !request.get("model").is_some_and(Value::is_string) {
        return Err(fail(
            "the request names no model: add \"model\" to it or pass --model",
        ));
    }

    let capture = Capture {
        seen: Arc::default(),
        recorded: input.recorded,
    };
    let upstream_addr = serve(
        axum::Router::new()
            .fallback(record)
            .with_state(capture.clone()),
    )
    .await?;
    let placeholders = tempdir()?;
    let mut origins = Vec::new();
    for (i, backend) in config.backends.iter_mut().enumerate() {
        let base = backend.base_url().ok_or_else(|| {
            fail(format!(
                "backend {:?} has no base_url (and its kind none by default)",
                backend.name
            ))
        })?;
        let uri: http::Uri = base.parse().map_err(|e| {
            fail(format!(
                "backend {:?}: base_url {base:?}: {e}",
                backend.name
            ))
        })?;
        let origin = format!(
            "{}://{}",
            uri.scheme_str().unwrap_or("https"),
            uri.authority().map(|a| a.as_str()).unwrap_or_default()
        );
        let prefix = format!("/llmproxy-dry-run-{i}");
        backend.base_url = Some(format!(
            "http://{upstream_addr}{prefix}{}",
            uri.path().trim_end_matches('/')
        ));
        backend.auth = placeholder_auth(backend, &placeholders.0)?;
        origins.push((prefix, origin));
    }
    config.server.api_key = None;
    // A dry run keeps nothing, and must not open the server's store.
    config.responses = crate::config::ResponsesConfig::default();

    let tap: Tap = Arc::default();
    let proxy = Proxy::build(config, Some(tap.clone()), None)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let proxy_addr = serve(proxy.router()).await?;
    let tls = crate::upstream::tls_config().map_err(fail)?;
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .no_proxy()
        .build()
        .map_err(|e| fail(format!("cannot build an HTTP client: {e}")))?;
    let answer = http
        .post(format!("http://{proxy_addr}{path}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Value::Object(request).to_string())
        .send()
        .await
        .map_err(|e| fail(format!("the proxy did not answer: {e}")))?;
    let status = answer.status().as_u16();
    let content_type = answer
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = answer
        .text()
        .await
        .map_err(|e| fail(format!("the proxy's answer broke off: {e}")))?;

    let upstream = capture
        .seen
        .lock()
        .ok()
        .and_then(|seen| seen.first().cloned())
        .map(|mut call| {
            if let Some((prefix, origin)) = origins.iter().find(|(p, _)| call.url.starts_with(p)) {
                call.url = format!("{origin}{}", &call.url[prefix.len()..]);
                let host = origin.split_once("://").map_or(origin.as_str(), |(_, h)| h);
                for (name, value) in &mut call.headers {
                    if name == "host" {
                        *value = host.to_string();
                    }
                }
            }
            call
        });
    let canonical = tap.lock().map(|t| t.clone()).unwrap_or_default();
    let client = (upstream.is_none() || capture.recorded.is_some()).then_some(ClientAnswer {
        status,
        format,
        content_type,
        body,
    });
    Ok(DryRun {
        upstream,
        canonical,
        client,
    })
}

/// The capture server's handler: remembers the request, replays the
/// recorded answer (or says there is none).
async fn record(
    State(capture): State<Capture>,
    request: axum::extract::Request,
) -> axum::response::Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let call = UpstreamCall {
        method: parts.method.to_string(),
        url: parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_string(), |p| p.to_string()),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    };
    if let Ok(mut seen) = capture.seen.lock() {
        seen.push(call);
    }
    let (status, body) = match &capture.recorded {
        Some(r) => (r.status, r.body.clone()),
        None => (
            400,
            br#"{"error":{"message":"dry run: no recorded answer"}}"#.to_vec(),
        ),
    };
    let text = String::from_utf8_lossy(&body);
    let first = text.trim_start();
    let sse = ["event:", "data:", "id:", ":"]
        .iter()
        .any(|p| first.starts_with(p));
    let content_type = if sse {
        "text/event-stream"
    } else {
        "application/json"
    };
    axum::response::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(axum::body::Body::from(body))
        .unwrap_or_default()
}

/// Serves `router` on 127.0.0.1 (a random port) in the background.
async fn serve(router: axum::Router) -> Result<std::net::SocketAddr, DryRunError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| fail(format!("cannot listen on 127.0.0.1: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| fail(format!("cannot listen on 127.0.0.1: {e}")))?;
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(addr)
}

/// A directory with the placeholder credential files, removed when dropped.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempdir() -> Result<TempDir, DryRunError> {
    let dir = std::env::temp_dir().join(format!(
        "llmproxy-translate-{}-{}",
        std::process::id(),
        crate::ids::new_id("d")
    ));
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("key"), REDACTED)?;
        std::fs::write(dir.join("bearer"), format!("Bearer {REDACTED}"))
    };
    write().map_err(|e| fail(format!("cannot write to {}: {e}", dir.display())))?;
    Ok(TempDir(dir))
}

/// The backend's `auth`, reading a placeholder instead of the secret: the
/// same header, the value `[redacted]`.
fn placeholder_auth(
    backend: &crate::BackendConfig,
    dir: &std::path::Path,
) -> Result<Option<AuthConfig>, DryRunError> {
    let key = |header: Option<String>, name: &str| AuthConfig::Key {
        header,
        source: KeySource::File(dir.join(name)),
    };
    let bearer = || key(None, "key");
    let google = || key(Some("authorization".into()), "bearer");
    Ok(Some(match &backend.auth {
        None => {
            let defaults = KindDefaults::of(&backend.kind);
            if defaults.gcp {
                google()
            } else if defaults.key_env.is_some() {
                bearer()
            } else {
                return Ok(None);
            }
        }
        Some(AuthConfig::Gcp | AuthConfig::GcpFile(_)) => google(),
        Some(AuthConfig::Key {
            header: Some(h), ..
        }) => key(Some(h.clone()), "key"),
        Some(AuthConfig::Key { header: None, .. }) => bearer(),
        Some(other) => other.clone(),
    }))
}
