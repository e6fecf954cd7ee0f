//! llmproxy: an OpenAI-format LLM proxy whose backend translators run as
//! sandboxed WebAssembly components - as an HTTP server (the `llmproxy`
//! binary) or inside your own program.
//!
//! A [`Proxy`] routes each request by model name (globs, first match wins)
//! to a backend - OpenAI or an OpenAI-compatible server, Gemini or Claude on
//! Google Vertex AI, an OpenResponses server, or a translator component of
//! your own - and speaks the **Responses API** to its caller, or **Chat
//! Completions**. The mapping to each upstream's wire format runs in a
//! sandboxed Wasm component; the host adds credentials, which translators
//! never see.
//!
//! # Build a proxy
//!
//! From TOML (the format of `llmproxy.example.toml`), from a file
//! ([`Proxy::from_file`]), or in code:
//!
//! ```
//! # async fn demo() -> Result<(), llmproxy::ConfigError> {
//! use llmproxy::{BackendConfig, Config, Proxy};
//!
//! let proxy = Proxy::from_toml(r#"
//!     [[backends]]
//!     name = "local"
//!     kind = "openai"
//!     base_url = "http://127.0.0.1:11434/v1"
//!     auth = "none"
//!     models = ["qwen*", "llama*"]
//! "#).await?;
//! assert_eq!(proxy.models()[0], ("qwen*".to_string(), "local".to_string()));
//!
//! let config = Config::default()
//!     .with_backend(
//!         BackendConfig::new("vertex", "gcp-vertex")
//!             .with_models(["gemini-*", "claude-*"])
//!             .with_setting("project", "my-project")
//!             .with_setting("location", "global")
//!             .with_google_auth(),
//!     )
//!     .with_backend(BackendConfig::new("openai", "openai").with_bearer_env("OPENAI_API_KEY"));
//! # let _ = config;
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
//! ```
//!
//! Building checks everything it can - settings, credentials, translator
//! files - and fails with a [`ConfigError`] that says what to fix.
//! [`Proxy::new`] takes a [`Config`].
//!
//! # Call it
//!
//! The request and answer types are [`api`]'s (serde-backed, every unknown
//! field kept through a round trip):
//!
//! - [`Proxy::create_response`] and [`Proxy::stream_response`]: Responses
//!   requests; the stream yields typed [`api::events::ResponseEvent`]s and
//!   always ends with a terminal event.
//! - [`Proxy::create_chat_completion`] and [`Proxy::stream_chat_completion`]:
//!   Chat Completions.
//!
//! ```
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use llmproxy::api::responses::CreateResponse;
//! use llmproxy::{Error, ErrorKind, Proxy};
//!
//! let proxy = Proxy::from_toml(r#"
//!     [[backends]]
//!     name = "nowhere"
//!     kind = "openresponses"
//!     base_url = "http://127.0.0.1:9/v1"
//!     models = ["*"]
//! "#).await?;
//! let request: CreateResponse = serde_json::from_value(serde_json::json!({
//!     "model": "qwen3", "input": "Hello!"
//! }))?;
//! match proxy.create_response(request).await {
//!     Ok(response) => println!("{:?}", response.output),
//!     // Nothing listens on port 9: the upstream is unreachable.
//!     Err(e) => {
//!         assert!(matches!(e, Error::UpstreamUnreachable { .. }));
//!         assert_eq!(e.kind(), ErrorKind::Upstream);
//!         assert_eq!(e.status().as_u16(), 502);
//!     }
//! }
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
//! ```
//!
//! A `Proxy` is cheap to clone (an `Arc`) and `Send + Sync`: share it
//! across tasks. It runs on the caller's tokio runtime and keeps no global
//! state, so proxies with different configs can live side by side.
//!
//! # Serve it
//!
//! With the `server` feature (on by default), [`Proxy::router`] is an axum
//! `Router` with `POST /v1/responses`, `POST /v1/chat/completions`,
//! `GET /v1/models` and `GET /healthz`. [`serve`] serves it as the binary
//! does, with the connection limits of [`ServerConfig`] (deadlines for slow
//! and idle clients, a cap on connections); or merge it into an
//! application's own router, whose server then bounds the connections.
//! Clients must send the key set with [`Config::with_api_key`], if any.
//! [`ReloadableProxy`] swaps the whole configuration while serving.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = llmproxy::Config::from_file("llmproxy.toml".as_ref())?;
//! let server = config.server.clone();
//! let proxy = llmproxy::Proxy::new(config).await?;
//! let app = axum::Router::new()
//!     .route("/", axum::routing::get(|| async { "my app" }))
//!     .nest("/llm", proxy.router());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! // TCP_NODELAY, [server]'s deadlines and connection cap; until Ctrl-C.
//! let shutdown = async {
//!     let _ = tokio::signal::ctrl_c().await;
//! };
//! llmproxy::serve(listener, app, &server, shutdown).await?;
//! # Ok(()) }
//! ```
//!
//! Without the `server` feature the crate is the in-process API alone, and
//! builds without axum, clap and a logger.

#![warn(missing_docs)]

mod access;
mod backend;
mod canonical;
mod catalog;
mod config;
mod conversation;
mod credentials;
#[cfg(feature = "server")]
mod dry_run;
mod egress;
mod error;
mod exchange;
mod ids;
mod ingress;
mod kinds;
mod media;
mod metrics;
mod ops;
mod passthrough;
mod proxy;
pub mod redact;
mod routing;
#[cfg(feature = "server")]
mod server;
mod signatures;
mod store;
mod stream;
// Without the `telemetry` feature no span is made: the recording side stays
// (requests carry no recorder), the exporter goes.
#[cfg_attr(not(feature = "telemetry"), allow(dead_code))]
mod telemetry;
mod translator;
mod upstream;

pub use config::{
    AuthConfig, BackendConfig, BackendLimits, Config, ConfigError, HeaderSource, KeySource,
    MediaConfig, ResponsesConfig, ServerConfig, StateKeeper, StoreKind, TelemetryConfig,
    TranslatorFile, TranslatorLimits,
};
pub use credentials::Secret;
#[cfg(feature = "server")]
pub use dry_run::{
    ClientAnswer, DryRun, DryRunError, DryRunInput, REDACTED, Recorded, UpstreamCall, dry_run,
};
pub use error::{Error, ErrorKind};
pub use metrics::Metrics;
pub use ops::{ChatCompletionStream, MessageStream, ResponseStream, TokenCount};
#[cfg(feature = "server")]
pub use server::{raise_open_files_limit, serve};

/// The wire types: Responses (canonical) and Chat Completions requests,
/// responses and stream events (the `llmproxy-api` crate).
pub use llmproxy_api as api;
pub use proxy::Proxy;
pub use translator::CONTRACT_VERSION;

#[cfg(feature = "server")]
impl Proxy {
    /// The axum router serving this proxy's endpoints.
    pub fn router(&self) -> axum::Router {
        server::router(server::Live::new(self.clone()))
    }

    /// An axum router serving `GET /metrics` (the Prometheus text format)
    /// of this proxy, without client auth: serve it on a listener agents
    /// cannot reach (`server.metrics_listen`), or merge it behind auth.
    pub fn metrics_router(&self) -> axum::Router {
        server::metrics_router(server::Live::new(self.clone()))
    }
}

impl Proxy {
    /// Builds a proxy from a TOML config (see [`Config::from_toml`]).
    pub async fn from_toml(text: &str) -> Result<Proxy, ConfigError> {
        Proxy::new(Config::from_toml(text)?).await
    }

    /// Builds a proxy from a TOML config file (see [`Config::from_file`]).
    pub async fn from_file(path: impl AsRef<std::path::Path>) -> Result<Proxy, ConfigError> {
        Proxy::new(Config::from_file(path.as_ref())?).await
    }

    /// The kinds of the translators built into this binary.
    pub fn bundled_kinds() -> Vec<&'static str> {
        translator::bundled_kinds().collect()
    }
}

/// A proxy whose configuration can be replaced while it serves (what
/// SIGHUP does to the `llmproxy` binary).
#[cfg(feature = "server")]
#[derive(Debug, Clone)]
pub struct ReloadableProxy(server::Live);

#[cfg(feature = "server")]
impl ReloadableProxy {
    /// Serves `proxy` until the first [`ReloadableProxy::reload`].
    pub fn new(proxy: Proxy) -> Self {
        ReloadableProxy(server::Live::new(proxy))
    }

    /// The axum router serving whichever configuration is current.
    pub fn router(&self) -> axum::Router {
        server::router(self.0.clone())
    }

    /// `GET /metrics` (see [`Proxy::metrics_router`]); the metrics carry
    /// over reloads.
    pub fn metrics_router(&self) -> axum::Router {
        server::metrics_router(self.0.clone())
    }

    /// The configuration serving new requests.
    pub fn current(&self) -> Proxy {
        self.0.current()
    }

    /// Starts a shutdown: `/healthz` answers 503 `shutting_down` so that
    /// load balancers stop sending; requests keep being served.
    pub fn drain(&self) {
        self.0.drain()
    }

    /// Ends every request still running (the shutdown deadline): streams
    /// end with an error event (`response.failed`, or a Chat error frame),
    /// requests waiting for an upstream get a 503 `shutting_down`.
    pub fn cut_off(&self) {
        self.0.cut_off()
    }

    /// Builds a proxy from `config` - translators loaded, settings and
    /// credentials checked - and, only if that succeeds, makes it serve new
    /// requests. Requests already running finish on the old one; reasoning
    /// state remembered for Chat clients carries over. On error nothing
    /// changes.
    pub async fn reload(&self, config: Config) -> Result<(), ConfigError> {
        let current = self.current().inner;
        // Compiling translator files takes a while: not on a worker thread.
        let runtime = tokio::runtime::Handle::current();
        let next = tokio::task::spawn_blocking(move || {
            runtime.block_on(Proxy::build(config, None, Some(current)))
        })
        .await
        .map_err(|e| ConfigError::new(format!("the reload failed: {e}")))??;
        self.0.replace(next);
        Ok(())
    }
}

/// Benchmark hooks: the translator sandbox without HTTP. Not a stable API.
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod internals {
    use crate::translator::{Context, Limits, Runtime, Translator, UpstreamResponse};
    use std::sync::Arc;

    pub use crate::translator::Context as TranslatorContext;

    /// Records one finished streamed request, with usage, in `metrics`:
    /// what every request costs the metrics.
    pub fn record_request(metrics: &crate::Metrics) {
        let d = std::time::Duration::from_micros(900);
        metrics.finished(&crate::metrics::Finished {
            endpoint: "chat",
            backend: "openai",
            model: "gpt-*",
            status: 200,
            outcome: "completed",
            stream: true,
            latency: d * 3,
            upstream_first_byte: Some(d),
            first_token: Some(d * 2),
            usage: Some(crate::metrics::Usage {
                input: 1200,
                output: 300,
                cached: 1000,
                reasoning: 20,
            }),
            upstream_error: None,
        });
    }

    /// The checks `POST /v1/responses` (`endpoint` "responses") or
    /// `POST /v1/chat/completions` ("chat") make of a request body before
    /// anything runs: nesting, JSON, required fields and their types.
    #[cfg(feature = "server")]
    pub fn ingress(endpoint: &str, body: &[u8]) -> Result<(), crate::Error> {
        crate::server::check_request(endpoint, body)
    }

    /// Model routing by glob, first matching backend wins.
    #[derive(Debug)]
    pub struct Router(crate::routing::Routes);

    impl Router {
        /// Routes for backends serving these globs, in order.
        pub fn new(backends: &[Vec<String>]) -> Result<Router, String> {
            crate::routing::Routes::new(backends.iter().map(Vec::as_slice))
                .map(Router)
                .map_err(|e| e.to_string())
        }

        /// The index of the backend serving `model`.
        pub fn route(&self, model: &str) -> Option<usize> {
            self.0.route(model)
        }
    }

    /// An engine with one bundled translator loaded.
    #[derive(Debug)]
    pub struct Sandbox {
        _runtime: Runtime,
        translator: Arc<Translator>,
    }

    impl Sandbox {
        /// Loads the bundled translator `kind` (precompiled if `precompiled`,
        /// else compiled from its `.wasm`).
        pub fn load(kind: &str, precompiled: bool) -> Result<Sandbox, crate::ConfigError> {
            let runtime = Runtime::new(64, 64 << 20, Default::default())?;
            let limits = Limits {
                memory_bytes: 64 << 20,
                call_timeout: std::time::Duration::from_secs(1),
                reuse: false,
            };
            let translator = Arc::new(runtime.load_bundled_with(kind, limits, precompiled)?);
            Ok(Sandbox {
                _runtime: runtime,
                translator,
            })
        }

        /// A fresh instance maps `request`, then `response` (status 200).
        pub async fn round_trip(
            &self,
            ctx: &Context,
            request: &[u8],
            response: &[u8],
        ) -> Result<Vec<u8>, crate::Error> {
            let mut instance = self.translator.instantiate().await?;
            instance.request(ctx, request).await?;

            let answer = UpstreamResponse {
                status: 200,
                headers: vec![("content-type".into(), "application/json".into())],
                body: response.to_vec(),
            };
            instance.response(ctx, "", &answer).await
        }

        /// A fresh instance maps `request`, then an upstream stream of
        /// `events` (`(event name, data)`, status 200) to its end; returns
        /// how many canonical events came out.
        pub async fn stream_round_trip(
            &self,
            ctx: &Context,
            request: &[u8],
            events: &[(String, String)],
        ) -> Result<usize, crate::Error> {
            let mut instance = self.translator.instantiate().await?;
            let state = match instance.request(ctx, request).await? {
                crate::translator::Requested::Ready(r) => r.state,
                crate::translator::Requested::NeedsMedia(_) => {
                    return Err(crate::Error::Internal(
                        "the translator asked for media".into(),
                    ));
                }
            };
            let mut stream = instance.into_stream(ctx, &state, 200, &[]).await?;
            let mut count = 0;
            for (event, data) in events {
                count += stream.push(event, data).await?.len();
            }
            Ok(count + stream.finish().await?.len())
        }

        /// Instantiates and drops a fresh instance.
        pub async fn instantiate(&self) -> Result<(), crate::Error> {
            self.translator.instantiate().await.map(drop)
        }
    }
}
