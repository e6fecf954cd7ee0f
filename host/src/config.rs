//! Configuration: the TOML file, and the single-backend mode built from flags.
//!
//! Everything is checked when it loads - unknown keys, bad globs, unknown
//! kinds, model names, base URLs, credentials (each backend's secret is
//! read here to check it, and once more when the proxy is built) - with a
//! message that names the key and the fix.
//! Translator-specific `settings` are checked by the translator itself when
//! the proxy starts (see [`crate::Proxy::new`]).

use crate::credentials::Secret;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A configuration problem, with a message that says what to fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub(crate) String);

impl ConfigError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        ConfigError(message.into())
    }
}

/// The whole configuration (`llmproxy.toml`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// The HTTP server.
    #[serde(default)]
    pub server: ServerConfig,
    /// Sandbox limits for translators.
    #[serde(default)]
    pub translators: TranslatorLimits,
    /// Downloading of images and files linked by URL, for backends that
    /// only take them inline.
    #[serde(default)]
    pub media: MediaConfig,
    /// Stored responses: `previous_response_id` and `GET /v1/responses/{id}`
    /// for backends that keep no state themselves.
    #[serde(default)]
    pub responses: ResponsesConfig,
    /// Backends, in routing order: the first whose `models` match wins.
    #[serde(default)]
    pub backends: Vec<BackendConfig>,
}

/// `[media]`: when a translator needs a linked image or file inline (Claude
/// on Vertex takes no image URLs), the proxy downloads it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct MediaConfig {
    /// Whether to download at all; when off, such requests get 400.
    /// Default true.
    #[serde(default = "default_true")]
    pub fetch: bool,
    /// Largest file downloaded, in MiB. Default 20.
    #[serde(default = "default_media_mib")]
    pub max_mib: u32,
    /// Most bytes downloaded for one request, in MiB, all its files
    /// together. A request is also held to what its backend's translator
    /// can take along with it (about 9 bytes of translator memory per byte
    /// downloaded). Default 32.
    #[serde(default = "default_media_request_mib")]
    pub max_request_mib: u32,
    /// Most bytes being downloaded or held for all requests at once, in
    /// MiB; past it requests that need downloads get 503. Default 256.
    #[serde(default = "default_media_inflight_mib")]
    pub max_inflight_mib: u32,
    /// Seconds for one download. Default 30.
    #[serde(default = "default_media_timeout")]
    pub timeout_secs: f64,
    /// Allow URLs on loopback, private and link-local addresses. Default
    /// false: clients could otherwise make the proxy fetch from services
    /// only it can reach (a cloud metadata server, say).
    #[serde(default)]
    pub allow_private_networks: bool,
}

fn default_true() -> bool {
    true
}
fn default_media_mib() -> u32 {
    20
}
fn default_media_request_mib() -> u32 {
    32
}
fn default_media_inflight_mib() -> u32 {
    256
}
fn default_media_timeout() -> f64 {
    30.0
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            fetch: true,
            max_mib: default_media_mib(),
            max_request_mib: default_media_request_mib(),
            max_inflight_mib: default_media_inflight_mib(),
            timeout_secs: default_media_timeout(),
            allow_private_networks: false,
        }
    }
}

/// `[responses]`: where the proxy keeps the responses of backends that
/// keep none themselves (Chat upstreams, Vertex Gemini, Vertex Claude), so
/// that clients can continue them with `previous_response_id`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ResponsesConfig {
    /// `"memory"` (default), `"disk"`, `"redis"` or `"off"`.
    #[serde(default)]
    pub store: StoreKind,
    /// Seconds a response is kept after it was last used (created, read or
    /// continued). Default 86400 (a day).
    #[serde(default = "default_responses_ttl")]
    pub ttl_secs: f64,
    /// `store = "memory"`: the most it holds, in MiB; the least recently
    /// used responses go first. Default 256.
    #[serde(default = "default_responses_mib")]
    pub max_mib: u32,
    /// `store = "disk"`: the database file (created if missing).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// `store = "redis"`: `redis://[:password@]host:port[/db]`,
    /// `rediss://...` (TLS) or `redis+unix:///path` (kept out of `Debug`
    /// output: it may hold a password).
    #[serde(default)]
    pub url: Option<Secret>,
    /// `store = "redis"` with `rediss://`: a PEM file of the CA that signed
    /// the server's certificate, instead of the system's trusted roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// `store = "redis"`: the environment variable holding the URL instead
    /// (when it carries a password).
    #[serde(default)]
    pub url_env: Option<String>,
    /// `store = "redis"`: prefix of every key. Default `llmproxy:`.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
}

/// Where stored responses live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum StoreKind {
    /// In this process, bounded by `max_mib`; gone on restart.
    #[default]
    Memory,
    /// A redb file at `path`, surviving restarts (one process per file).
    Disk,
    /// A Redis or Valkey server shared by several proxies.
    Redis,
    /// Nothing is kept; `previous_response_id` is refused for backends
    /// that keep no state themselves.
    Off,
}

fn default_responses_ttl() -> f64 {
    86400.0
}
fn default_responses_mib() -> u32 {
    256
}
fn default_key_prefix() -> String {
    "llmproxy:".into()
}

impl Default for ResponsesConfig {
    fn default() -> Self {
        ResponsesConfig {
            store: StoreKind::default(),
            ttl_secs: default_responses_ttl(),
            max_mib: default_responses_mib(),
            path: None,
            url: None,
            url_env: None,
            ca_file: None,
            key_prefix: default_key_prefix(),
        }
    }
}

impl ResponsesConfig {
    /// The Redis URL, from `url` or the variable `url_env` names.
    pub(crate) fn redis_url(&self) -> Result<Secret, String> {
        match (&self.url, &self.url_env) {
            (Some(url), None) => Ok(url.clone()),
            (None, Some(var)) => std::env::var(var)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .map(Secret::new)
                .ok_or_else(|| format!("responses.url_env: the environment variable {var} is not set")),
            (Some(_), Some(_)) => Err("set responses.url or responses.url_env, not both".into()),
            (None, None) => Err("store = \"redis\" needs responses.url (e.g. \"redis://127.0.0.1:6379\") or responses.url_env".into()),
        }
    }

    fn check(&self) -> Result<(), ConfigError> {
        if !(self.ttl_secs > 0.0 && self.ttl_secs.is_finite() && self.ttl_secs < 1e9) {
            return Err(ConfigError::new(format!(
                "responses.ttl_secs = {} must be a positive number of seconds",
                self.ttl_secs
            )));
        }
        if self.max_mib == 0 {
            return Err(ConfigError::new("responses.max_mib must be at least 1"));
        }
        match self.store {
            StoreKind::Disk if self.path.is_none() => Err(ConfigError::new(
                "responses: store = \"disk\" needs path = \"/var/lib/llmproxy/responses.redb\" (or another file)",
            )),
            StoreKind::Redis => self
                .redis_url()
                .map(drop)
                .map_err(|e| ConfigError::new(format!("responses: {e}"))),
            _ => Ok(()),
        }
    }
}

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Address to listen on. Default `0.0.0.0:8080`.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Largest request body accepted, in MiB (413 above). Default 32.
    #[serde(default = "default_max_body_mib")]
    pub max_body_mib: u32,
    /// The key clients must send as `Authorization: Bearer <key>`. Not read
    /// from the file: the binary takes it from `LLMPROXY_API_KEY`.
    #[serde(skip)]
    pub api_key: Option<Secret>,
    /// Seconds the binary lets in-flight requests run after SIGTERM or
    /// SIGINT; streams still running then end with an error event.
    /// Default 30.
    #[serde(default = "default_shutdown_timeout_secs")]
    pub shutdown_timeout_secs: f64,
    /// Seconds a new connection has to send its first request head, and a
    /// kept-alive one to finish a head it started. Default 10.
    #[serde(default = "default_header_read_timeout_secs")]
    pub header_read_timeout_secs: f64,
    /// Seconds a kept-alive connection may wait for its next request.
    /// Default 75.
    #[serde(default = "default_idle_timeout_secs")]
    pub idle_timeout_secs: f64,
    /// Seconds a request's body has to arrive in full (408 after).
    /// Default 120.
    #[serde(default = "default_body_timeout_secs")]
    pub body_timeout_secs: f64,
    /// Seconds a write to a client may make no progress (a client that
    /// stopped reading) before its connection is closed. Default 120.
    #[serde(default = "default_write_timeout_secs")]
    pub write_timeout_secs: f64,
    /// Most client connections open at once. Past it the connection idle
    /// longest is closed, or new ones wait. Default: half the open-files
    /// limit less 128 (each connection may hold an upstream one too), at
    /// most 10000.
    #[serde(default)]
    pub max_connections: Option<u32>,
}

fn default_header_read_timeout_secs() -> f64 {
    10.0
}
fn default_idle_timeout_secs() -> f64 {
    75.0
}
fn default_body_timeout_secs() -> f64 {
    120.0
}
fn default_write_timeout_secs() -> f64 {
    120.0
}

fn default_shutdown_timeout_secs() -> f64 {
    30.0
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8080))
}

fn default_max_body_mib() -> u32 {
    32
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            max_body_mib: default_max_body_mib(),
            api_key: None,
            shutdown_timeout_secs: default_shutdown_timeout_secs(),
            header_read_timeout_secs: default_header_read_timeout_secs(),
            idle_timeout_secs: default_idle_timeout_secs(),
            body_timeout_secs: default_body_timeout_secs(),
            write_timeout_secs: default_write_timeout_secs(),
            max_connections: None,
        }
    }
}

/// `[translators]`: sandbox limits applied to every translator instance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TranslatorLimits {
    /// Linear memory cap per instance, in MiB. Default 384: enough to map
    /// a request of `server.max_body_mib` (32) text; larger or very
    /// fragmented requests are refused with 413 before they run.
    #[serde(default = "default_memory_mib")]
    pub memory_limit_mib: u32,
    /// Wall-clock budget of one call into a translator, in milliseconds.
    /// Default 1000.
    #[serde(default = "default_call_timeout_ms")]
    pub call_timeout_ms: u64,
    /// Most translator instances alive at once (each in-flight request or
    /// stream holds one); requests beyond it get 503. Default 1000.
    #[serde(default = "default_max_instances")]
    pub max_instances: u32,
}

fn default_memory_mib() -> u32 {
    384
}
fn default_call_timeout_ms() -> u64 {
    1000
}
fn default_max_instances() -> u32 {
    1000
}

impl Default for TranslatorLimits {
    fn default() -> Self {
        TranslatorLimits {
            memory_limit_mib: default_memory_mib(),
            call_timeout_ms: default_call_timeout_ms(),
            max_instances: default_max_instances(),
        }
    }
}

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
    pub auth: Option<toml::Value>,
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

/// How the host authenticates to a backend.
#[derive(Debug, Clone)]
pub(crate) enum Auth {
    None,
    /// A header carrying a secret, e.g. `authorization: Bearer <key>`.
    Header {
        name: http::HeaderName,
        value: Secret,
    },
    /// Google Application Default Credentials, or an explicit credentials
    /// file (resolved when the proxy starts).
    Gcp {
        file: Option<PathBuf>,
    },
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

impl Config {
    /// Adds a backend after those already configured (routing order).
    pub fn with_backend(mut self, backend: BackendConfig) -> Self {
        self.backends.push(backend);
        self
    }

    /// Sets the key clients of the HTTP endpoints must send as
    /// `Authorization: Bearer <key>` (the in-process calls need none).
    pub fn with_api_key(mut self, key: impl Into<String>) -> Self {
        self.server.api_key = Some(Secret::new(key));
        self
    }

    /// Sets the sandbox limits of every translator.
    pub fn with_translator_limits(mut self, memory_limit_mib: u32, call_timeout_ms: u64) -> Self {
        self.translators.memory_limit_mib = memory_limit_mib;
        self.translators.call_timeout_ms = call_timeout_ms;
        self
    }

    /// Reads and checks a TOML config file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let config = Config::read_file(path)?;
        config
            .check()
            .map_err(|e| ConfigError::new(format!("{}: {}", path.display(), e.0)))?;
        Ok(config)
    }

    /// Reads a TOML config file without checking it (nor reading the
    /// secrets it names): [`Config::check`] and [`crate::Proxy::new`] do.
    pub fn read_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(format!("cannot read config file {}: {e}", path.display()))
        })?;
        let mut config: Config = toml::from_str(&text)
            .map_err(|e| ConfigError::new(format!("{}: {e}", path.display())))?;
        // Translator files are found relative to the config file.
        let dir = path.parent().unwrap_or(Path::new(""));
        for backend in &mut config.backends {
            if let Some(t) = &mut backend.translator
                && t.path.is_relative()
            {
                t.path = dir.join(&t.path);
            }
        }
        for file in [&mut config.responses.path, &mut config.responses.ca_file] {
            if let Some(file) = file
                && file.is_relative()
            {
                *file = dir.join(&*file);
            }
        }
        Ok(config)
    }

    /// Parses and checks a TOML config.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::new(e.to_string()))?;
        config.check()?;
        Ok(config)
    }

    /// Checks what can be checked without loading translators.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.backends.is_empty() {
            return Err(ConfigError::new(
                "no backends configured: add a [[backends]] table (see llmproxy.example.toml) \
                 or run with --backend KIND",
            ));
        }
        let limits = &self.translators;
        check_limits(
            "translators",
            Some(limits.memory_limit_mib),
            Some(limits.call_timeout_ms),
        )?;
        if limits.max_instances == 0 {
            return Err(ConfigError::new(
                "translators.max_instances must be at least 1",
            ));
        }
        if self.server.max_body_mib == 0 {
            return Err(ConfigError::new("server.max_body_mib must be at least 1"));
        }
        let grace = self.server.shutdown_timeout_secs;
        if !(0.0..1e6).contains(&grace) {
            return Err(ConfigError::new(format!(
                "server.shutdown_timeout_secs = {grace} must be a number of seconds, 0 or more"
            )));
        }
        for (key, value) in [
            (
                "header_read_timeout_secs",
                self.server.header_read_timeout_secs,
            ),
            ("idle_timeout_secs", self.server.idle_timeout_secs),
            ("body_timeout_secs", self.server.body_timeout_secs),
            ("write_timeout_secs", self.server.write_timeout_secs),
        ] {
            if !(value > 0.0 && value < 1e6) {
                return Err(ConfigError::new(format!(
                    "server.{key} = {value} must be a positive number of seconds"
                )));
            }
        }
        if self.server.max_connections == Some(0) {
            return Err(ConfigError::new(
                "server.max_connections must be at least 1",
            ));
        }
        let media = &self.media;
        if media.max_mib == 0 || media.max_mib > 1024 {
            return Err(ConfigError::new("media.max_mib must be between 1 and 1024"));
        }
        if !(media.max_mib <= media.max_request_mib
            && media.max_request_mib <= media.max_inflight_mib)
        {
            return Err(ConfigError::new(format!(
                "media limits disagree: max_mib = {} (one file) must be at most max_request_mib = {} (one request), and that at most max_inflight_mib = {} (all requests)",
                media.max_mib, media.max_request_mib, media.max_inflight_mib
            )));
        }
        if !(self.media.timeout_secs > 0.0 && self.media.timeout_secs <= 3600.0) {
            return Err(ConfigError::new(
                "media.timeout_secs must be more than 0 and at most 3600",
            ));
        }
        self.responses.check()?;
        let mut names = std::collections::HashSet::new();
        for (i, backend) in self.backends.iter().enumerate() {
            let at = format!("backends[{i}] (name {:?})", backend.name);
            if backend.name.trim().is_empty() {
                return Err(ConfigError::new(format!(
                    "backends[{i}].name is empty: give every backend a name"
                )));
            }
            if !names.insert(backend.name.as_str()) {
                return Err(ConfigError::new(format!(
                    "{at}: another backend already uses this name; names must be unique"
                )));
            }
            if backend.models.is_empty() {
                return Err(ConfigError::new(format!(
                    "{at}: `models` is empty; list the model globs it serves, e.g. models = [\"*\"]"
                )));
            }
            for (j, glob) in backend.models.iter().enumerate() {
                globset::Glob::new(glob).map_err(|e| {
                    ConfigError::new(format!(
                        "{at}: models[{j}] = {glob:?} is not a valid glob ({}); \
                         use *, ?, [abc] or {{a,b}}",
                        e.kind()
                    ))
                })?;
            }
            match (backend.kind.is_empty(), &backend.translator) {
                (true, None) => {
                    return Err(ConfigError::new(format!(
                        "{at}: set `kind` to a bundled translator ({}) or `translator = {{ path = \"...wasm\" }}` to a component of your own",
                        crate::kinds::kinds().join(", ")
                    )));
                }
                (false, Some(_)) => {
                    return Err(ConfigError::new(format!(
                        "{at}: set either `kind` or `translator`, not both"
                    )));
                }
                (true, Some(t)) => {
                    if let Some(sum) = &t.sha256
                        && !(sum.len() == 64 && sum.chars().all(|c| c.is_ascii_hexdigit()))
                    {
                        return Err(ConfigError::new(format!(
                            "{at}: translator.sha256 must be 64 hex digits (the output of `sha256sum {}`)",
                            t.path.display()
                        )));
                    }
                }
                (false, None) => {}
            }
            if let Some(l) = &backend.limits {
                check_limits(
                    &format!("{at}: limits"),
                    l.memory_limit_mib,
                    l.call_timeout_ms,
                )?;
            }
            for (client, upstream) in &backend.model_map {
                let checked = llmproxy_api::model::check(client)
                    .and_then(|()| llmproxy_api::model::check(upstream))
                    .and_then(|()| match vertex_kind(&backend.kind) {
                        true => llmproxy_api::model::check_path_segment(upstream),
                        false => Ok(()),
                    });
                checked.map_err(|e| {
                    ConfigError::new(format!("{at}: model_map.{client:?} = {upstream:?}: {e}"))
                })?;
            }
            for id in backend.model_list.iter().flatten() {
                llmproxy_api::model::check(id)
                    .map_err(|e| ConfigError::new(format!("{at}: model_list entry {id:?}: {e}")))?;
            }
            if let Some(url) = &backend.base_url {
                check_base_url(url)
                    .map_err(|e| ConfigError::new(format!("{at}: base_url = {url:?} {e}")))?;
            }
            for name in backend.headers.keys() {
                let parsed = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                    ConfigError::new(format!("{at}: headers.{name} is not a valid header name"))
                })?;
                if crate::credentials::is_credential_header(&parsed) {
                    return Err(ConfigError::new(format!(
                        "{at}: headers.{name} carries credentials; use `auth` so the secret \
                         comes from an environment variable or file"
                    )));
                }
            }
            for (name, value) in &backend.headers {
                http::HeaderValue::from_str(value).map_err(|_| {
                    ConfigError::new(format!("{at}: headers.{name} has an invalid value"))
                })?;
            }
            for (key, value) in [
                ("connect_timeout_secs", backend.connect_timeout_secs),
                ("first_byte_timeout_secs", backend.first_byte_timeout_secs),
                ("idle_timeout_secs", backend.idle_timeout_secs),
                ("total_timeout_secs", backend.total_timeout_secs),
                ("retry_backoff_secs", backend.retry_backoff_secs),
            ] {
                if let Some(v) = value
                    && !(v > 0.0 && v.is_finite() && v < 1e9)
                {
                    return Err(ConfigError::new(format!(
                        "{at}: {key} = {v} must be a positive number of seconds"
                    )));
                }
            }
            if let Some(r) = backend.retries
                && r > 10
            {
                return Err(ConfigError::new(format!(
                    "{at}: retries = {r} is too many; at most 10"
                )));
            }
            backend.resolve_auth()?;
        }
        Ok(())
    }
}

/// Checks sandbox limits (`at` names the table).
fn check_limits(
    at: &str,
    memory_mib: Option<u32>,
    timeout_ms: Option<u64>,
) -> Result<(), ConfigError> {
    if memory_mib.is_some_and(|m| m == 0 || m > 4096) {
        return Err(ConfigError::new(format!(
            "{at}.memory_limit_mib must be between 1 and 4096"
        )));
    }
    if timeout_ms.is_some_and(|t| t == 0 || t > 600_000) {
        return Err(ConfigError::new(format!(
            "{at}.call_timeout_ms must be between 1 and 600000"
        )));
    }
    Ok(())
}

/// Checks that a base URL is an absolute http(s) URL.
fn check_base_url(url: &str) -> Result<(), String> {
    let parsed: http::Uri = url
        .parse()
        .map_err(|e| format!("is not a valid URL ({e})"))?;
    match parsed.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err("must start with http:// or https://".into()),
    }
    if parsed.host().is_none() {
        return Err("has no host".into());
    }
    if parsed.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(
            "must not carry credentials (user:password@): they would show in messages; use `auth`"
                .into(),
        );
    }
    if parsed.query().is_some() {
        return Err("must not have a query string".into());
    }
    Ok(())
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
fn vertex_kind(kind: &str) -> bool {
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
        self.auth = Some(toml::Value::Table(toml::Table::from_iter([(
            "bearer_env".to_string(),
            toml::Value::String(var.into()),
        )])));
        self
    }

    /// Sends header `name` with the value of environment variable `var`.
    pub fn with_header_env(mut self, name: impl Into<String>, var: impl Into<String>) -> Self {
        self.auth = Some(toml::Value::Table(toml::Table::from_iter([
            ("header".to_string(), toml::Value::String(name.into())),
            ("env".to_string(), toml::Value::String(var.into())),
        ])));
        self
    }

    /// Sends no credentials.
    pub fn with_no_auth(mut self) -> Self {
        self.auth = Some(toml::Value::String("none".into()));
        self
    }

    /// Uses Google Application Default Credentials.
    pub fn with_google_auth(mut self) -> Self {
        self.auth = Some(toml::Value::String("gcp".into()));
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

    /// Resolves `auth` to a header and reads the secret it names.
    pub(crate) fn resolve_auth(&self) -> Result<Auth, ConfigError> {
        let at = self.at();
        let Some(value) = &self.auth else {
            let defaults = KindDefaults::of(&self.kind);
            if defaults.gcp {
                return Ok(Auth::Gcp { file: None });
            }
            let Some(var) = defaults.key_env else {
                return Ok(Auth::None);
            };
            let key = std::env::var(var)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| {
                    ConfigError::new(format!(
                        "{at}: no `auth` is set, so the {kind} backend reads its key from {var}, \
                     which is not set; export {var}=<key>, point `auth` elsewhere, or set \
                     auth = \"none\" for a server that needs no key",
                        kind = self.kind
                    ))
                })?;
            return bearer(&at, &format!("environment variable {var}"), key.trim());
        };
        let table = match value {
            toml::Value::String(s) if s == "none" => return Ok(Auth::None),
            toml::Value::String(s) if s == "gcp" => return Ok(Auth::Gcp { file: None }),
            toml::Value::Table(t) => t,
            other => {
                return Err(ConfigError::new(format!(
                    "{at}: auth = {other} is not understood; use \"none\", \"gcp\", \
                     {{ bearer_env = \"VAR\" }}, {{ bearer_file = \"path\" }}, \
                     {{ header = \"name\", env = \"VAR\" }}, {{ header = \"name\", file = \"path\" }} \
                     or {{ gcp_credentials_file = \"path\" }}"
                )));
            }
        };
        let get = |key: &str| -> Result<Option<&str>, ConfigError> {
            match table.get(key) {
                None => Ok(None),
                Some(toml::Value::String(s)) => Ok(Some(s)),
                Some(_) => Err(ConfigError::new(format!(
                    "{at}: auth.{key} must be a string"
                ))),
            }
        };
        for key in table.keys() {
            if ![
                "bearer_env",
                "bearer_file",
                "header",
                "env",
                "file",
                "gcp_credentials_file",
            ]
            .contains(&key.as_str())
            {
                return Err(ConfigError::new(format!(
                    "{at}: unknown key auth.{key}; expected bearer_env, bearer_file, header with env or file, or gcp_credentials_file"
                )));
            }
        }
        if let Some(path) = get("gcp_credentials_file")? {
            if table.len() > 1 {
                return Err(ConfigError::new(format!(
                    "{at}: auth.gcp_credentials_file cannot be combined with other auth keys"
                )));
            }
            return Ok(Auth::Gcp {
                file: Some(PathBuf::from(path)),
            });
        }
        let (header, prefix, source) = match (
            get("bearer_env")?,
            get("bearer_file")?,
            get("header")?,
            get("env")?,
            get("file")?,
        ) {
            (Some(var), None, None, None, None) => ("authorization", "Bearer ", Source::Env(var)),
            (None, Some(path), None, None, None) => {
                ("authorization", "Bearer ", Source::File(path))
            }
            (None, None, Some(h), Some(var), None) => (h, "", Source::Env(var)),
            (None, None, Some(h), None, Some(path)) => (h, "", Source::File(path)),
            _ => {
                return Err(ConfigError::new(format!(
                    "{at}: auth needs exactly one of bearer_env, bearer_file, \
                     or header together with env or file"
                )));
            }
        };
        let name = http::HeaderName::from_bytes(header.as_bytes()).map_err(|_| {
            ConfigError::new(format!(
                "{at}: auth.header = {header:?} is not a valid header name"
            ))
        })?;
        let secret = source.read(&at)?;
        header_auth(&at, &source.describe(), name, format!("{prefix}{secret}"))
    }
}

fn bearer(at: &str, source: &str, key: &str) -> Result<Auth, ConfigError> {
    header_auth(
        at,
        source,
        http::header::AUTHORIZATION,
        format!("Bearer {key}"),
    )
}

fn header_auth(
    at: &str,
    source: &str,
    name: http::HeaderName,
    value: String,
) -> Result<Auth, ConfigError> {
    if http::HeaderValue::from_str(&value).is_err() {
        return Err(ConfigError::new(format!(
            "{at}: the credential from {source} contains characters not allowed in a header"
        )));
    }
    Ok(Auth::Header {
        name,
        value: Secret::new(value),
    })
}

enum Source<'a> {
    Env(&'a str),
    File(&'a str),
}

impl Source<'_> {
    fn describe(&self) -> String {
        match self {
            Source::Env(var) => format!("environment variable {var}"),
            Source::File(path) => format!("file {path}"),
        }
    }

    fn read(&self, at: &str) -> Result<String, ConfigError> {
        let value = match self {
            Source::Env(var) => std::env::var(var).map_err(|_| {
                ConfigError::new(format!(
                    "{at}: auth reads the environment variable {var}, which is not set; \
                     export {var}=<key> or change `auth`"
                ))
            })?,
            Source::File(path) => std::fs::read_to_string(PathBuf::from(path)).map_err(|e| {
                ConfigError::new(format!(
                    "{at}: auth reads the file {path}, which cannot be read ({e}); \
                     create it or change `auth`"
                ))
            })?,
        };
        let value = value.trim().to_string();
        if value.is_empty() {
            return Err(ConfigError::new(format!(
                "{at}: the credential in {} is empty",
                self.describe()
            )));
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests;
