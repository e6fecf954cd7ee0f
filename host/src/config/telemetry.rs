//! `[telemetry]`: OpenTelemetry traces, exported over OTLP/HTTP.

use super::{ConfigError, KeySource};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// `[telemetry]`: where spans go, how many requests are traced, and
/// whether prompt and completion text is recorded.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TelemetryConfig {
    /// The collector's OTLP/HTTP endpoint (protobuf): a base URL such as
    /// `http://collector:4318`, to which `/v1/traces` is added, or the
    /// traces URL itself.
    pub otlp_endpoint: String,
    /// `service.name` of the spans (default `llmproxy`).
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// The share of requests traced (0 to 1, default 1), for requests
    /// without a `traceparent`; one with it follows its caller's decision.
    #[serde(default = "one")]
    pub sampling_ratio: f64,
    /// Record prompt and completion text in spans (`gen_ai.input.messages`,
    /// `gen_ai.output.messages`; default false).
    #[serde(default)]
    pub capture_content: bool,
    /// Headers sent to the collector (an API key, say), each read from
    /// `{ env = "VAR" }` or `{ file = "path" }`.
    #[serde(default)]
    pub headers: BTreeMap<String, HeaderSource>,
    /// How often queued spans are sent, in milliseconds (default 1000).
    #[serde(default = "default_interval")]
    pub export_interval_ms: u64,
}

/// Where a collector header's value is read from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct HeaderSource {
    /// An environment variable.
    pub env: Option<String>,
    /// A file (its content, trimmed).
    pub file: Option<PathBuf>,
}

impl HeaderSource {
    pub(crate) fn source(&self, at: &str) -> Result<KeySource, ConfigError> {
        match (&self.env, &self.file) {
            (Some(var), None) => Ok(KeySource::Env(var.clone())),
            (None, Some(path)) => Ok(KeySource::File(path.clone())),
            _ => Err(ConfigError::new(format!(
                "{at}: give exactly one of {{ env = \"VAR\" }} or {{ file = \"path\" }}"
            ))),
        }
    }
}

fn default_service_name() -> String {
    "llmproxy".into()
}

fn one() -> f64 {
    1.0
}

fn default_interval() -> u64 {
    1000
}

impl TelemetryConfig {
    /// A config sending every request's spans to `otlp_endpoint`.
    pub fn new(otlp_endpoint: impl Into<String>) -> Self {
        TelemetryConfig {
            otlp_endpoint: otlp_endpoint.into(),
            service_name: default_service_name(),
            sampling_ratio: 1.0,
            capture_content: false,
            headers: BTreeMap::new(),
            export_interval_ms: default_interval(),
        }
    }

    /// Checks what can be checked before the proxy is built.
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        if !cfg!(feature = "telemetry") {
            return Err(ConfigError::new(
                "[telemetry] is set, but this llmproxy was built without the `telemetry` feature",
            ));
        }
        #[cfg(feature = "telemetry")]
        crate::telemetry::otlp::traces_url(&self.otlp_endpoint)?;
        if !(0.0..=1.0).contains(&self.sampling_ratio) {
            return Err(ConfigError::new(format!(
                "telemetry.sampling_ratio = {} must be between 0 and 1",
                self.sampling_ratio
            )));
        }
        if self.service_name.is_empty() {
            return Err(ConfigError::new("telemetry.service_name must not be empty"));
        }
        if !(10..=600_000).contains(&self.export_interval_ms) {
            return Err(ConfigError::new(
                "telemetry.export_interval_ms must be between 10 and 600000",
            ));
        }
        for (name, source) in &self.headers {
            let at = format!("telemetry.headers.{name}");
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(ConfigError::new(format!("{at}: not a header name")));
            }
            source.source(&at)?;
        }
        Ok(())
    }
}
