//! `[[backends]]`: one upstream, its translator, credentials and timeouts.

use super::{Auth, AuthConfig, ConfigError, KeySource, TranslatorLimits};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// `[[backends]]`: one upstream and the translator that speaks to it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BackendConfig {
    /// Unique name, used in logs and errors.
    pub name: String,
    /// Bundled translator kind, e.g. `openresponses`; empty when
    /// `translator` names a component file instead.
    #[serde(default)]
    pub kind: String,
    /// A translator component file instead of a bundled kind.
    #[serde(default)]
    pub translator: Option<TranslatorFile>,
    /// Sandbox limits for this backend's translator, overriding
    /// `[translators]`.
    #[serde(default)]
    pub limits: Option<BackendLimits>,
    /// Model-name globs this backend serves (`*`, `?`, `[a-z]`, `{a,b}`).
    pub models: Vec<String>,
    /// Base URL the translator's paths are joined to.
    pub base_url: Option<String>,
    /// Upstream credentials: `"none"`, `"gcp"` (Google Application Default
    /// Credentials), `{ bearer_env = "VAR" }`, `{ bearer_file = "path" }`,
    /// `{ header = "x-api-key", env = "VAR" }`,
    /// `{ header = "x-api-key", file = "path" }` or
    /// `{ gcp_credentials_file = "path" }`.
    pub auth: Option<AuthConfig>,
    /// Extra static headers sent upstream (not secrets: use `auth`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Client model name -> upstream model name. Unlisted names pass as-is.
    #[serde(default)]
    pub model_map: BTreeMap<String, String>,
    /// The model ids `GET /v1/models` lists for this backend's globs,
    /// instead of the upstream's own list (see the README, "Models").
    #[serde(default)]
    pub model_list: Option<Vec<String>>,
    /// Free-form settings handed to the translator as JSON.
    #[serde(default)]
    pub settings: toml::Table,
    /// Seconds to establish the TCP/TLS connection. Default 10.
    pub connect_timeout_secs: Option<f64>,
    /// Seconds until the upstream's response headers arrive. Default 600.
    pub first_byte_timeout_secs: Option<f64>,
    /// Seconds of silence allowed between two pieces of a streamed body.
    /// Default 300.
    pub idle_timeout_secs: Option<f64>,
    /// Seconds for the whole exchange. Default 3600.
    pub total_timeout_secs: Option<f64>,
    /// How many times to send a request again when the upstream failed
    /// before answering anything: the connection failed, or it answered
    /// 408, 409, 429 or 5xx. Default 0 (off). A streamed answer that has
    /// begun is never retried.
    pub retries: Option<u32>,
    /// Seconds before the first retry, doubling for each further one
    /// (a `Retry-After` from the upstream wins). Default 0.5.
    pub retry_backoff_secs: Option<f64>,
    /// Who keeps Responses conversations (`previous_response_id`, stored
    /// responses): `"upstream"` (passed through) or `"proxy"` (the
    /// `[responses]` store). Default: `"upstream"` for `openresponses` and
    /// for `openai` with `settings.api = "responses"`, else `"proxy"`.
    #[serde(default)]
    pub state: Option<StateKeeper>,
}

/// Who keeps a backend's Responses conversations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum StateKeeper {
    /// The upstream stores responses itself; the proxy passes
    /// `previous_response_id` and `store` through.
    Upstream,
    /// The upstream answers each request anew; the proxy stores responses.
    Proxy,
}

/// `translator = { path, sha256 }`: a translator component of one's own.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TranslatorFile {
    /// The component (`.wasm`); a relative path is relative to the config
    /// file's directory.
    pub path: PathBuf,
    /// The file's expected SHA-256, in hex: the proxy refuses to start (or
    /// reload) with any other file.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Serve requests from warm instances reused across requests, as the
    /// bundled translators do, instead of a fresh instance for each: only
    /// for a translator trusted to keep no state between requests (what one
    /// request leaves in an instance's memory is there for the next).
    /// Default false.
    #[serde(default)]
    pub reuse_instances: bool,
}

/// `limits = { memory_limit_mib, call_timeout_ms }` on a backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BackendLimits {
    /// Linear memory cap per instance, in MiB.
    #[serde(default)]
    pub memory_limit_mib: Option<u32>,
    /// Wall-clock budget of one call into the translator, in milliseconds.
    #[serde(default)]
    pub call_timeout_ms: Option<u64>,
}

/// Per-backend timeouts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub connect: Duration,
    pub first_byte: Duration,
    pub idle: Duration,
    pub total: Duration,
    /// Extra attempts for failures before the upstream answered.
    pub retries: u32,
    /// Wait before the first retry (doubling).
    pub backoff: Duration,
}

impl Timeouts {
    /// What timed out while waiting `waited` for more of `what` with `left`
    /// of the exchange's total time remaining.
    pub(crate) fn stalled(&self, what: &str, waited: Duration, left: Duration) -> String {
        if waited < self.idle || left.is_zero() {
            format!(
                "{what} did not finish within the exchange's limit of {:.1}s (total_timeout_secs)",
                self.total.as_secs_f64()
            )
        } else {
            format!(
                "{what} was silent for {:.1}s (idle_timeout_secs)",
                waited.as_secs_f64()
            )
        }
    }
}

/// What a bundled kind assumes when the config leaves it out.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct KindDefaults {
    /// Environment variable holding a bearer key when `auth` is not set.
    pub key_env: Option<&'static str>,
    /// Google credentials when `auth` is not set.
    pub gcp: bool,
}

/// Kinds that talk to Vertex AI.
pub(super) fn vertex_kind(kind: &str) -> bool {
    kind == "gcp-vertex"
}

impl KindDefaults {
    pub(crate) fn of(kind: &str) -> Self {
        match kind {
            "openai" => KindDefaults {
                key_env: Some("OPENAI_API_KEY"),
                gcp: false,
            },
            k if vertex_kind(k) => KindDefaults {
                key_env: None,
                gcp: true,
            },
            _ => KindDefaults::default(),
        }
    }
}

impl BackendConfig {
    /// A backend named `name` using the bundled translator `kind`
    /// (`openai`, `openresponses`, `gcp-vertex`) and serving every model;
    /// narrow it with [`BackendConfig::with_models`].
    pub fn new(name: impl Into<String>, kind: impl Into<String>) -> Self {
        BackendConfig {
            name: name.into(),
            kind: kind.into(),
            translator: None,
            limits: None,
            models: vec!["*".into()],
            base_url: None,
            auth: None,
            headers: BTreeMap::new(),
            model_map: BTreeMap::new(),
            model_list: None,
            settings: toml::Table::new(),
            connect_timeout_secs: None,
            first_byte_timeout_secs: None,
            idle_timeout_secs: None,
            total_timeout_secs: None,
            retries: None,
            retry_backoff_secs: None,
            state: None,
        }
    }

    /// A backend using a translator component file instead of a bundled
    /// kind, optionally pinned to its SHA-256 (hex).
    pub fn with_translator_file(
        name: impl Into<String>,
        path: impl Into<PathBuf>,
        sha256: Option<&str>,
    ) -> Self {
        let mut backend = BackendConfig::new(name, "");
        backend.translator = Some(TranslatorFile {
            path: path.into(),
            sha256: sha256.map(str::to_string),
            reuse_instances: false,
        });
        backend
    }

    /// The model-name globs this backend serves.
    pub fn with_models<S: Into<String>>(mut self, globs: impl IntoIterator<Item = S>) -> Self {
        self.models = globs.into_iter().map(Into::into).collect();
        self
    }

    /// The upstream base URL.
    pub fn with_base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }

    /// A translator setting (`value`: a string, number, bool, array or table).
    pub fn with_setting(mut self, key: impl Into<String>, value: impl Into<toml::Value>) -> Self {
        self.settings.insert(key.into(), value.into());
        self
    }

    /// Sends `Authorization: Bearer <the value of environment variable var>`.
    pub fn with_bearer_env(mut self, var: impl Into<String>) -> Self {
        self.auth = Some(AuthConfig::Key {
            header: None,
            source: KeySource::Env(var.into()),
        });
        self
    }

    /// Sends header `name` with the value of environment variable `var`.
    pub fn with_header_env(mut self, name: impl Into<String>, var: impl Into<String>) -> Self {
        self.auth = Some(AuthConfig::Key {
            header: Some(name.into()),
            source: KeySource::Env(var.into()),
        });
        self
    }

    /// Sends no credentials.
    pub fn with_no_auth(mut self) -> Self {
        self.auth = Some(AuthConfig::None);
        self
    }

    /// Uses Google Application Default Credentials.
    pub fn with_google_auth(mut self) -> Self {
        self.auth = Some(AuthConfig::Gcp);
        self
    }

    /// Maps a client model name to the name sent upstream.
    pub fn with_model_alias(
        mut self,
        client: impl Into<String>,
        upstream: impl Into<String>,
    ) -> Self {
        self.model_map.insert(client.into(), upstream.into());
        self
    }

    fn at(&self) -> String {
        format!("backend {:?}", self.name)
    }

    /// What translates for this backend: its kind, or its component file.
    pub fn translator_name(&self) -> String {
        match &self.translator {
            Some(t) => t.path.display().to_string(),
            None => self.kind.clone(),
        }
    }

    /// The sandbox limits for this backend.
    pub(crate) fn limits(&self, defaults: &TranslatorLimits) -> (u32, u64) {
        let l = self.limits.unwrap_or_default();
        (
            l.memory_limit_mib.unwrap_or(defaults.memory_limit_mib),
            l.call_timeout_ms.unwrap_or(defaults.call_timeout_ms),
        )
    }

    /// The base URL: configured, or the kind's default (OpenAI's API; for
    /// Vertex the endpoint of the `location` setting).
    pub(crate) fn base_url(&self) -> Option<String> {
        if let Some(url) = &self.base_url {
            return Some(url.clone());
        }
        match self.kind.as_str() {
            "openai" => Some("https://api.openai.com/v1".into()),
            k if vertex_kind(k) => self
                .settings
                .get("location")
                .and_then(toml::Value::as_str)
                .filter(|l| !l.is_empty())
                .map(llmproxy_api::vertex::base_url),
            _ => None,
        }
    }

    /// Who keeps this backend's conversations.
    pub(crate) fn state(&self) -> StateKeeper {
        self.state.unwrap_or_else(|| {
            let api = self.settings.get("api").and_then(toml::Value::as_str);
            match (self.kind.as_str(), api) {
                ("openresponses", _) | ("openai", Some("responses")) => StateKeeper::Upstream,
                _ => StateKeeper::Proxy,
            }
        })
    }

    /// Whether the backend's translator makes its own unguessable item ids
    /// (the bundled converting ones), rather than passing on an upstream's
    /// or a custom translator's, which may repeat: only those items can be
    /// found again by id (`item_reference`).
    pub(crate) fn mints_item_ids(&self) -> bool {
        let api = self.settings.get("api").and_then(toml::Value::as_str);
        self.translator.is_none()
            && match (self.kind.as_str(), api) {
                ("openai", Some("responses")) => false,
                (kind, _) => kind == "openai" || vertex_kind(kind),
            }
    }

    /// The backend's settings as a JSON object string.
    pub(crate) fn settings_json(&self) -> String {
        serde_json::to_string(&self.settings).unwrap_or_else(|_| "{}".into())
    }

    pub(crate) fn timeouts(&self) -> Timeouts {
        let secs = |v: Option<f64>, default: f64| Duration::from_secs_f64(v.unwrap_or(default));
        Timeouts {
            connect: secs(self.connect_timeout_secs, 10.0),
            first_byte: secs(self.first_byte_timeout_secs, 600.0),
            idle: secs(self.idle_timeout_secs, 300.0),
            total: secs(self.total_timeout_secs, 3600.0),
            retries: self.retries.unwrap_or(0),
            backoff: secs(self.retry_backoff_secs, 0.5),
        }
    }

    /// Resolves `auth` and reads the secret it names: once, when the proxy
    /// is built.
    pub(crate) fn resolve_auth(&self) -> Result<Auth, ConfigError> {
        Auth::resolve(&self.at(), &self.kind, self.auth.as_ref())
    }
}
