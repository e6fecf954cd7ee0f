//! Configuration: the TOML file, and the single-backend mode built from flags.
//!
//! Everything is checked when it loads - unknown keys, bad globs, unknown
//! kinds, model names, base URLs, the form of `auth` - with a message that
//! names the key and the fix. Secrets are read once, when the proxy is built
//! ([`crate::Proxy::new`]), and so are translator-specific `settings`,
//! which each translator checks itself.
//!
//! - `server`: `[server]`, `[translators]`, `[media]`, `[responses]`.
//! - `backend`: `[[backends]]`, its timeouts and the kinds' defaults.
//! - `auth`: a backend's `auth`, as written and as resolved.

mod auth;
mod backend;
mod server;
mod telemetry;

pub(crate) use auth::Auth;
#[cfg(feature = "telemetry")]
pub(crate) use auth::read as read_secret;
pub use auth::{AuthConfig, KeySource};
use backend::vertex_kind;
pub use backend::{BackendConfig, BackendLimits, StateKeeper, TranslatorFile};
pub(crate) use backend::{KindDefaults, Timeouts};
pub use server::{MediaConfig, ResponsesConfig, ServerConfig, StoreKind, TranslatorLimits};
pub use telemetry::{HeaderSource, TelemetryConfig};

use crate::credentials::Secret;
use serde::Deserialize;
use std::path::Path;

/// A configuration problem, with a message that says what to fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub(crate) String);

impl ConfigError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        ConfigError(message.into())
    }

    /// A load-time failure of part `at` of the config (`backend "x"`).
    pub(crate) fn at(at: &str, e: impl std::fmt::Display) -> Self {
        ConfigError(format!("{at}: {e}"))
    }
}

impl From<crate::translator::LoadError> for ConfigError {
    fn from(e: crate::translator::LoadError) -> Self {
        ConfigError(e.to_string())
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
    /// OpenTelemetry traces (off when absent).
    #[serde(default)]
    pub telemetry: Option<TelemetryConfig>,
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

    /// Sends OpenTelemetry traces as `telemetry` says (`[telemetry]`).
    pub fn with_telemetry(mut self, telemetry: TelemetryConfig) -> Self {
        self.telemetry = Some(telemetry);
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
        if let Some(telemetry) = &self.telemetry {
            telemetry.check()?;
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

#[cfg(test)]
mod tests;
