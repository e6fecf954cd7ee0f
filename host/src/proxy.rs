//! The proxy: its configuration loaded (backends, routes, store, media
//! policy) and shared by every request. A request's way through it is in
//! `exchange` (translator and upstream) and `stream` (event streams).

use crate::access::{AccessLog, Cutoff};
use crate::backend::Backend;
use crate::config::{Config, ConfigError, ResponsesConfig};
use crate::conversation::Conversations;
use crate::credentials::Secret;
use crate::error::Error;
use crate::media::MediaFetcher;
use crate::metrics::Metrics;
use crate::routing::Routes;
use crate::signatures::SignatureCache;
use crate::store::Store;
use crate::translator::Runtime;
use crate::upstream;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// A configured, running proxy. Cheap to clone; clones share everything.
#[derive(Clone, Debug)]
pub struct Proxy {
    pub(crate) inner: Arc<Inner>,
    /// Set by a server at its shutdown deadline.
    pub(crate) cutoff: Cutoff,
}

impl Proxy {
    /// This proxy, ending its in-flight requests when `rx` turns true.
    #[cfg(feature = "server")]
    pub(crate) fn with_cutoff(mut self, rx: tokio::sync::watch::Receiver<bool>) -> Proxy {
        self.cutoff = Cutoff(Some(rx));
        self
    }
}

#[derive(Debug)]
// The HTTP side reads the server settings.
#[cfg_attr(not(feature = "server"), allow(dead_code))]
pub(crate) struct Inner {
    pub backends: Vec<Arc<Backend>>,
    pub routes: Routes,
    pub max_body_bytes: usize,
    pub max_body_mib: u32,
    /// How long a request body may take to arrive.
    pub body_timeout: Duration,
    pub api_key: Option<Secret>,
    /// Shared by the configurations a reload replaces.
    pub signatures: Arc<SignatureCache>,
    /// Stored responses and conversations; shared by the configurations a
    /// reload replaces.
    pub conversations: Conversations,
    /// The settings `store` was opened with.
    responses: ResponsesConfig,
    pub media: MediaFetcher,
    /// Receives every canonical response and event (`llmproxy translate`).
    pub tap: Option<Tap>,
    /// Shared by the configurations a reload replaces.
    pub metrics: Arc<Metrics>,
    /// `GET /metrics` on the main listener too (behind the client key).
    pub metrics_on_main: bool,
    /// Traces (`[telemetry]`).
    pub tracer: Option<Arc<crate::telemetry::Tracer>>,
    _runtime: Runtime,
}

/// Where a dry run collects the canonical output.
pub(crate) type Tap = Arc<std::sync::Mutex<Vec<Value>>>;

/// The API a client spoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientApi<'a> {
    /// The Responses API: the canonical format itself.
    Responses,
    /// Chat Completions. `extras` is the translator's `context.extras`:
    /// `{"chat": <the client's request>}`, for what the canonical request
    /// cannot carry.
    Chat { extras: &'a str },
    /// Anthropic Messages. `extras` is `{"messages": {...}}`: its
    /// Messages-only parameters.
    Messages { extras: &'a str },
}

impl<'a> ClientApi<'a> {
    /// Whether the client sends the whole conversation each time and drops
    /// what it does not know of earlier answers (Chat, Messages): the
    /// proxy stores nothing for it, and keeps thought signatures for it.
    pub(crate) fn resends_history(self) -> bool {
        !matches!(self, ClientApi::Responses)
    }

    /// The translator's `context.extras` (`{}` for Responses clients).
    pub(crate) fn extras(self) -> &'a str {
        match self {
            ClientApi::Responses => "{}",
            ClientApi::Chat { extras } | ClientApi::Messages { extras } => extras,
        }
    }
}

impl Proxy {
    /// Builds a proxy from a checked config: loads the translators the
    /// backends use, asks each to validate its backend's settings, and reads
    /// the credentials.
    pub async fn new(config: Config) -> Result<Proxy, ConfigError> {
        Self::build(config, None, None).await
    }

    /// [`Proxy::new`], handing every canonical response and event to `tap`.
    /// A reload passes the proxy it replaces (`previous`), whose remembered
    /// reasoning state and response store carry over.
    pub(crate) async fn build(
        config: Config,
        tap: Option<Tap>,
        previous: Option<Arc<Inner>>,
    ) -> Result<Proxy, ConfigError> {
        config.check()?;
        let (signatures, conversations, responses, metrics) = match &previous {
            Some(p) => {
                if p.responses != config.responses {
                    tracing::warn!(
                        "the [responses] settings changed; they take effect when llmproxy restarts"
                    );
                }
                (
                    p.signatures.clone(),
                    p.conversations.clone(),
                    p.responses.clone(),
                    p.metrics.clone(),
                )
            }
            None => {
                let store = Arc::new(Store::open(&config.responses).map_err(ConfigError::new)?);
                tracing::info!("stored responses: {}", store.describe());
                Store::sweep_regularly(&store);
                let metrics = Arc::new(Metrics::new());
                (
                    Arc::default(),
                    Conversations {
                        store,
                        metrics: metrics.clone(),
                    },
                    config.responses.clone(),
                    metrics,
                )
            }
        };
        if let Some(key) = &config.server.api_key
            && crate::redact::too_short(key.expose())
        {
            tracing::warn!(
                "the client key (LLMPROXY_API_KEY) is shorter than {} characters: it is not redacted from messages; use a long random key",
                crate::redact::MIN_LEN
            );
        }
        let defaults = &config.translators;
        // The pool's slots fit the largest memory cap any backend has.
        let pool_mib = config
            .backends
            .iter()
            .map(|b| b.limits(defaults).0)
            .chain([defaults.memory_limit_mib])
            .max()
            .unwrap_or(defaults.memory_limit_mib);
        let runtime = Runtime::new(
            defaults.max_instances,
            pool_mib as usize * 1024 * 1024,
            metrics.clone(),
        )?;
        let mut loader = crate::backend::Loader::new(&runtime, defaults);
        let mut backends = Vec::new();
        for cfg in &config.backends {
            backends.push(Arc::new(loader.backend(cfg).await?));
        }
        let media = MediaFetcher::new(
            &config.media,
            upstream::tls_config().map_err(|e| ConfigError::new(format!("media: {e}")))?,
            metrics.clone(),
        )
        .map_err(|e| ConfigError::new(e.to_string()))?;
        #[cfg(feature = "telemetry")]
        let tracer = match &config.telemetry {
            Some(t) => Some(Arc::new(crate::telemetry::Tracer::start(
                t,
                metrics.clone(),
            )?)),
            None => None,
        };
        #[cfg(not(feature = "telemetry"))]
        let tracer = None;
        let routes = Routes::new(config.backends.iter().map(|b| b.models.as_slice()))
            .map_err(|e| ConfigError::new(format!("invalid model glob: {e}")))?;
        Ok(Proxy {
            cutoff: Cutoff(None),
            inner: Arc::new(Inner {
                backends,
                routes,
                max_body_bytes: config.server.max_body_mib as usize * 1024 * 1024,
                max_body_mib: config.server.max_body_mib,
                body_timeout: Duration::from_secs_f64(config.server.body_timeout_secs),
                api_key: config.server.api_key.clone(),
                signatures,
                conversations,
                responses,
                media,
                tap,
                metrics,
                metrics_on_main: config.server.metrics_on_main_listener,
                tracer,
                _runtime: runtime,
            }),
        })
    }

    /// The proxy's metrics (what `GET /metrics` on `server.metrics_listen`
    /// renders); they carry over a reload.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The log record (and metrics, and trace) of a request to `endpoint`,
    /// under the client's `x-request-id` when it gave a usable one, traced
    /// as a child of the `traceparent` in its `headers`.
    pub(crate) fn access_log(
        &self,
        endpoint: &'static str,
        client_id: Option<&str>,
        headers: Option<&http::HeaderMap>,
    ) -> AccessLog {
        let mut log = AccessLog::start(endpoint, client_id);
        log.meter(self.inner.metrics.clone());
        if let Some(tracer) = &self.inner.tracer {
            log.traced(tracer.begin(headers));
        }
        log
    }

    /// Sends the spans waiting for the OpenTelemetry collector now, and
    /// waits until they are sent (at shutdown; a no-op without
    /// `[telemetry]`).
    pub async fn flush_traces(&self) {
        if let Some(tracer) = &self.inner.tracer {
            tracer.flush().await;
        }
    }

    /// The configured glob that routes `model` (`-` when none does).
    pub(crate) fn glob(&self, model: &str) -> &str {
        self.inner.routes.glob(model).unwrap_or("-")
    }

    /// The backend serving `model`, or a 404 naming it.
    pub(crate) fn route(&self, model: &str) -> Result<Arc<Backend>, Error> {
        self.inner
            .routes
            .route(model)
            .and_then(|i| self.inner.backends.get(i).cloned())
            .ok_or_else(|| Error::ModelNotFound(model.to_string()))
    }
}
