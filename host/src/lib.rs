//! llmproxy: an OpenAI-format LLM proxy whose backend translators run as
//! sandboxed WebAssembly components.
//!
//! Clients speak the Responses API (`POST /v1/responses`); requests are routed
//! by model-name glob (first match wins) to a backend, whose translator - a
//! Wasm component behind the `llmproxy:translator` WIT contract - maps the
//! canonical Responses request to the upstream's wire format and the answer
//! back. The host does HTTP, client auth, routing, credentials, timeouts and
//! streaming; translators never see a secret.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = llmproxy::Config::from_toml(r#"
//!     [[backends]]
//!     name = "local"
//!     kind = "openresponses"
//!     base_url = "http://127.0.0.1:11434/v1"
//!     models = ["*"]
//! "#)?;
//! let proxy = llmproxy::Proxy::new(config).await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, proxy.router()).await?;
//! # Ok(()) }
//! ```

mod canonical;
mod config;
mod credentials;
mod dry_run;
mod error;
mod ids;
mod media;
mod proxy;
mod routing;
mod server;
mod signatures;
mod translator;
mod upstream;

pub use config::{
    BackendConfig, Config, ConfigError, MediaConfig, Secret, ServerConfig, TranslatorLimits,
};
pub use dry_run::{
    ClientAnswer, DryRun, DryRunError, DryRunInput, REDACTED, Recorded, UpstreamCall, dry_run,
};
pub use error::Error;
pub use proxy::Proxy;
pub use translator::CONTRACT_VERSION;

impl Proxy {
    /// The axum router serving this proxy's endpoints.
    pub fn router(&self) -> axum::Router {
        server::router(server::Live::new(self.clone()))
    }

    /// The kinds of the translators built into this binary.
    pub fn bundled_kinds() -> Vec<&'static str> {
        translator::bundled_kinds().collect()
    }
}

/// A proxy whose configuration can be replaced while it serves (what
/// SIGHUP does to the `llmproxy` binary).
#[derive(Debug, Clone)]
pub struct ReloadableProxy(server::Live);

impl ReloadableProxy {
    pub fn new(proxy: Proxy) -> Self {
        ReloadableProxy(server::Live::new(proxy))
    }

    /// The axum router serving whichever configuration is current.
    pub fn router(&self) -> axum::Router {
        server::router(self.0.clone())
    }

    /// The configuration serving new requests.
    pub fn current(&self) -> Proxy {
        self.0.current()
    }

    /// Builds a proxy from `config` - translators loaded, settings and
    /// credentials checked - and, only if that succeeds, makes it serve new
    /// requests. Requests already running finish on the old one; reasoning
    /// state remembered for Chat clients carries over. On error nothing
    /// changes.
    pub async fn reload(&self, config: Config) -> Result<(), ConfigError> {
        let signatures = self.current().inner.signatures.clone();
        // Compiling translator files takes a while: not on a worker thread.
        let runtime = tokio::runtime::Handle::current();
        let next = tokio::task::spawn_blocking(move || {
            runtime.block_on(Proxy::build(config, None, signatures))
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

    /// An engine with one bundled translator loaded.
    #[derive(Debug)]
    pub struct Sandbox {
        _runtime: Runtime,
        translator: Arc<Translator>,
    }

    impl Sandbox {
        /// Loads the bundled translator `kind` (precompiled if `precompiled`,
        /// else compiled from its `.wasm`).
        pub fn load(kind: &str, precompiled: bool) -> Result<Sandbox, crate::Error> {
            let runtime = Runtime::new(64, 64 << 20)?;
            let limits = Limits {
                memory_bytes: 64 << 20,
                call_timeout: std::time::Duration::from_secs(1),
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

        /// Instantiates and drops a fresh instance.
        pub async fn instantiate(&self) -> Result<(), crate::Error> {
            self.translator.instantiate().await.map(drop)
        }
    }
}
