//! One configured backend: its translators (chosen by upstream model name),
//! its upstream and credentials, and what it does with conversation state.

use crate::config::{Auth, BackendConfig, ConfigError, StateKeeper, TranslatorLimits};
use crate::credentials::{Credentials, gcp};
use crate::error::Error;
use crate::passthrough::Route;
use crate::translator::{self, Api, Context, Limits, Runtime, Translator};
use crate::upstream::Upstream;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// One configured backend.
#[derive(Debug)]
pub(crate) struct Backend {
    pub name: String,
    pub models: Vec<String>,
    /// The translators of the backend's kind, chosen by upstream model name
    /// (first match).
    parts: Vec<Part>,
    pub upstream: Arc<Upstream>,
    /// Who keeps its Responses conversations.
    pub state: StateKeeper,
    settings: String,
    model_map: BTreeMap<String, String>,
    /// What `GET /v1/models` lists for the globs.
    pub catalog: crate::catalog::Catalog,
    /// Its items can be referenced by id (see `BackendConfig::mints_item_ids`).
    pub mints_item_ids: bool,
    /// Who serves it, as traces name it (`gen_ai.provider.name`).
    pub provider: Option<String>,
}

/// One translator of a backend, for the upstream models its glob matches.
#[derive(Debug)]
struct Part {
    glob: globset::GlobMatcher,
    /// A bundled kind, or a translator file.
    name: String,
    /// `None`: a translator this build does not have.
    translator: Option<Arc<Translator>>,
    /// The client APIs the upstream speaks itself, for these models, as the
    /// translator declared them (`configure`).
    passthrough: Vec<Route>,
}

impl Backend {
    pub(crate) fn upstream_model(&self, model: &str) -> String {
        self.model_map
            .get(model)
            .cloned()
            .unwrap_or_else(|| model.to_string())
    }

    /// The translator for an upstream model.
    pub(crate) fn translator(&self, upstream_model: &str) -> Result<&Arc<Translator>, Error> {
        match self.parts.iter().find(|p| p.glob.is_match(upstream_model)) {
            Some(Part {
                translator: Some(t),
                ..
            }) => Ok(t),
            Some(Part { name, .. }) => Err(Error::Unsupported {
                message: format!(
                    "model {upstream_model:?} needs the {name} translator, which this build of llmproxy does not include"
                ),
                param: Some("model".into()),
                code: Some("model_not_supported".into()),
            }),
            None => Err(Error::ModelNotFound(upstream_model.to_string())),
        }
    }

    /// Where a client request in `api` for an upstream model passes through
    /// to, when the upstream speaks that API itself.
    pub(crate) fn passthrough(&self, api: Api, upstream_model: &str) -> Option<&Route> {
        let part = self
            .parts
            .iter()
            .find(|p| p.glob.is_match(upstream_model))?;
        part.passthrough.iter().find(|r| r.api == api)
    }

    pub(crate) fn context(
        &self,
        model: &str,
        upstream_model: String,
        streaming: bool,
        extras: &str,
    ) -> Context {
        Context {
            backend: self.name.clone(),
            model: model.to_string(),
            upstream_model,
            streaming,
            settings: self.settings.clone(),
            extras: extras.to_string(),
            media: Vec::new(),
        }
    }

    /// Fills in the upstream's `Retry-After` when the translator gave none.
    pub(crate) fn with_retry_after(mut err: Error, upstream_retry_after: Option<u32>) -> Error {
        if let Error::Upstream { retry_after, .. } = &mut err {
            *retry_after = retry_after.or(upstream_retry_after);
        }
        err
    }
}

/// Loads the backends of one config: translators with equal limits are
/// loaded once, Google credentials once per credentials file.
pub(crate) struct Loader<'a> {
    runtime: &'a Runtime,
    defaults: &'a TranslatorLimits,
    translators: HashMap<(String, u32, u64, bool), Arc<Translator>>,
    google: HashMap<Option<std::path::PathBuf>, Arc<gcp::GcpAuth>>,
}

impl<'a> Loader<'a> {
    pub(crate) fn new(runtime: &'a Runtime, defaults: &'a TranslatorLimits) -> Self {
        Loader {
            runtime,
            defaults,
            translators: HashMap::new(),
            google: HashMap::new(),
        }
    }

    /// Loads `cfg`'s translators (each checks the backend's settings), reads
    /// its credentials and makes its upstream client.
    pub(crate) async fn backend(&mut self, cfg: &BackendConfig) -> Result<Backend, ConfigError> {
        let at = format!("backend {:?}", cfg.name);
        let (memory_mib, timeout_ms) = cfg.limits(self.defaults);
        let reuse = match &cfg.translator {
            Some(file) => file.reuse_instances,
            None => self.defaults.reuse_bundled,
        };
        let limits = Limits {
            memory_bytes: memory_mib as usize * 1024 * 1024,
            call_timeout: Duration::from_millis(timeout_ms),
            reuse,
        };
        let parts: Vec<(&str, String)> = match &cfg.translator {
            Some(file) => vec![("*", file.path.display().to_string())],
            None => crate::kinds::kind_translators(&cfg.kind)
                .ok_or_else(|| {
                    ConfigError::new(format!(
                        "{at}: unknown kind {:?}; available kinds: {}",
                        cfg.kind,
                        crate::kinds::kinds().join(", ")
                    ))
                })?
                .into_iter()
                .map(|(glob, kind)| (glob, kind.to_string()))
                .collect(),
        };
        let settings = cfg.settings_json();
        let mut translators = Vec::new();
        for (glob, name) in parts {
            let matcher = globset::Glob::new(glob)
                .map_err(|e| ConfigError::new(e.to_string()))?
                .compile_matcher();
            let bundled = translator::bundled_kinds().any(|k| k == name);
            if cfg.translator.is_none() && !bundled {
                // A part of a kind this build does not include.
                translators.push(Part {
                    glob: matcher,
                    name,
                    translator: None,
                    passthrough: Vec::new(),
                });
                continue;
            }
            let key = (name.clone(), memory_mib, timeout_ms, reuse);
            let t = match self.translators.get(&key) {
                Some(t) => t.clone(),
                None => {
                    let t = match &cfg.translator {
                        Some(file) => {
                            self.runtime
                                .load_file(&file.path, file.sha256.as_deref(), limits)
                        }
                        None => self.runtime.load_bundled(&name, limits),
                    }
                    .map_err(|e| ConfigError::at(&at, e))?;
                    let t = Arc::new(t);
                    self.translators.insert(key, t.clone());
                    t
                }
            };
            let declared = t
                .configure(&settings)
                .await
                .map_err(|e| ConfigError::at(&at, e))?;
            let passthrough = Route::checked(declared)
                .map_err(|e| ConfigError::at(&at, format!("the {name} translator {e}")))?;
            translators.push(Part {
                glob: matcher,
                name,
                translator: Some(t),
                passthrough,
            });
        }
        let credentials = credentials(cfg, &mut self.google).await?;
        let upstream = Arc::new(Upstream::new(
            cfg,
            credentials,
            self.runtime.metrics().clone(),
        )?);
        Ok(Backend {
            provider: crate::telemetry::provider_name(&cfg.kind),
            name: cfg.name.clone(),
            models: cfg.models.clone(),
            parts: translators,
            upstream,
            state: cfg.state(),
            settings,
            model_map: cfg.model_map.clone(),
            catalog: crate::catalog::Catalog::new(cfg),
            mints_item_ids: cfg.mints_item_ids(),
        })
    }
}

/// The credentials of a backend, read once, when its config loads; Google
/// credentials are discovered once per credentials file and shared
/// (`google`).
async fn credentials(
    cfg: &BackendConfig,
    google: &mut HashMap<Option<std::path::PathBuf>, Arc<gcp::GcpAuth>>,
) -> Result<Credentials, ConfigError> {
    Ok(match cfg.resolve_auth()? {
        Auth::None => Credentials::None,
        Auth::Header { name, value } => {
            if crate::redact::too_short(value.expose()) {
                tracing::warn!(
                    backend = %cfg.name,
                    "the upstream key is shorter than {} characters: it cannot be told apart from ordinary text, so it is not redacted from messages; use a longer key",
                    crate::redact::MIN_LEN
                );
            }
            Credentials::Header { name, value }
        }
        Auth::Gcp { file } => {
            if let Some(auth) = google.get(&file) {
                return Ok(Credentials::Gcp(auth.clone()));
            }
            let tls = crate::upstream::tls_config().map_err(ConfigError::new)?;
            let http = reqwest::Client::builder()
                .tls_backend_preconfigured(tls)
                // The token request carries a signed assertion or a refresh
                // token: it goes nowhere but the token endpoint.
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .build()
                .map_err(|e| ConfigError::new(format!("cannot build the HTTP client: {e}")))?;
            let env = gcp::AdcEnv::from_process();
            let auth = gcp::GcpAuth::discover(file.as_deref(), &env, http)
                .await
                .map_err(|e| ConfigError::new(format!("backend {:?}: {e}", cfg.name)))?;
            tracing::info!(backend = %cfg.name, "Google credentials: {}", auth.origin());
            let auth = Arc::new(auth);
            google.insert(file, auth.clone());
            Credentials::Gcp(auth)
        }
    })
}
