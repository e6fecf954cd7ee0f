//! `[server]`, `[translators]`, `[media]` and `[responses]`.

use super::ConfigError;
use crate::credentials::Secret;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

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

    pub(super) fn check(&self) -> Result<(), ConfigError> {
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
            // The URL itself, a secret, is read once: when the store opens.
            StoreKind::Redis => match (&self.url, &self.url_env) {
                (Some(_), None) | (None, Some(_)) => Ok(()),
                _ => self
                    .redis_url()
                    .map(drop)
                    .map_err(|e| ConfigError::new(format!("responses: {e}"))),
            },
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
    /// Where to serve `GET /metrics` (Prometheus text format), e.g.
    /// `127.0.0.1:9464`: a listener of its own, without client auth, which
    /// the agents' sandbox should not reach. Default: off.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// Also serve `GET /metrics` on the main listener, behind the client
    /// key like every endpoint there. Default false. Read at startup (a
    /// reload does not change it).
    #[serde(default)]
    pub metrics_on_main_listener: bool,
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
            metrics_listen: None,
            metrics_on_main_listener: false,
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
    /// Whether the bundled translators serve requests from warm instances
    /// reused across requests (they keep no state between requests; a
    /// fault discards the instance) instead of a fresh instance each time.
    /// Default true; custom translators opt in with
    /// `translator = { ..., reuse_instances = true }`.
    #[serde(default = "default_true")]
    pub reuse_bundled: bool,
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
            reuse_bundled: true,
        }
    }
}
