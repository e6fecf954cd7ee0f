//! OTLP/HTTP export of finished spans: batched by a background task and
//! POSTed as protobuf (`application/x-protobuf`) to the collector's
//! `/v1/traces`.
//!
//! The few OTLP messages the proxy sends are encoded here by hand (field
//! numbers from `opentelemetry/proto/trace/v1/trace.proto`,
//! `common/v1/common.proto`, `resource/v1/resource.proto` and
//! `collector/trace/v1/trace_service.proto`); the tests decode what
//! arrives with the OpenTelemetry project's own generated Python classes.
//!
//! A slow or absent collector never holds a request: spans go into a
//! bounded queue, and are dropped (and counted) when it is full.

use super::{SpanData, Value};
use crate::config::{ConfigError, TelemetryConfig};
use crate::credentials::Secret;
use crate::metrics::Metrics;
use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Batches of spans waiting for the exporter task.
const QUEUE: usize = 1024;
/// The most spans sent in one export.
const BATCH: usize = 512;
/// About the most bytes sent in one export (spans carrying content are
/// large; collectors refuse big bodies - the OpenTelemetry Collector's
/// default limit is 20 MiB).
const BATCH_BYTES: usize = 4 * 1024 * 1024;
/// How long one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
enum Message {
    Spans(Vec<SpanData>),
    Flush(oneshot::Sender<()>),
}

/// The handle of the exporter task; the task ends (after a last export)
/// when the handle is dropped.
#[derive(Debug)]
pub(crate) struct Exporter {
    tx: mpsc::Sender<Message>,
    metrics: Arc<Metrics>,
}

/// The collector's traces URL: `endpoint` itself when it has a path, else
/// `endpoint` + `/v1/traces` (as `OTEL_EXPORTER_OTLP_ENDPOINT` is read).
pub(crate) fn traces_url(endpoint: &str) -> Result<reqwest::Url, ConfigError> {
    let url = reqwest::Url::parse(endpoint).map_err(|e| {
        ConfigError::new(format!(
            "telemetry.otlp_endpoint = {endpoint:?} is not a URL ({e}); use e.g. \"http://127.0.0.1:4318\""
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(ConfigError::new(format!(
            "telemetry.otlp_endpoint = {endpoint:?} must be an http:// or https:// URL (OTLP over HTTP)"
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::new(
            "telemetry.otlp_endpoint must not carry credentials; put them in telemetry.headers (read from the environment or a file)",
        ));
    }
    if url.path() == "/" || url.path().is_empty() {
        return url
            .join("/v1/traces")
            .map_err(|e| ConfigError::new(format!("telemetry.otlp_endpoint: {e}")));
    }
    Ok(url)
}

/// The collector URL as logged: without a query, which may hold a key.
fn shown(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

impl Exporter {
    /// Reads the headers' secrets and starts the exporter task.
    pub(crate) fn start(
        config: &TelemetryConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Exporter, ConfigError> {
        let url = traces_url(&config.otlp_endpoint)?;
        let mut headers = Vec::new();
        let mut secrets = Vec::new();
        for (name, source) in &config.headers {
            let at = format!("telemetry.headers.{name}");
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| ConfigError::new(format!("{at}: not a header name")))?;
            // Registered for redaction, like every other secret, while the
            // exporter holds it.
            let secret = Secret::new(crate::config::read_secret(&at, &source.source(&at)?)?);
            let mut value = HeaderValue::from_str(secret.expose()).map_err(|_| {
                ConfigError::new(format!(
                    "{at}: the value contains characters not allowed in a header"
                ))
            })?;
            value.set_sensitive(true);
            headers.push((header, value));
            secrets.push(secret);
        }
        let tls = crate::upstream::tls_config()
            .map_err(|e| ConfigError::new(format!("telemetry: {e}")))?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(EXPORT_TIMEOUT)
            .no_proxy()
            .build()
            .map_err(|e| {
                ConfigError::new(format!("telemetry: cannot build the HTTP client: {e}"))
            })?;
        let resource = resource(&config.service_name);
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = Task {
            rx,
            client,
            shown: shown(&url),
            url,
            headers,
            _secrets: secrets,
            resource,
            metrics: metrics.clone(),
            buffer: Vec::new(),
            warned: None,
        };
        tokio::spawn(task.run(Duration::from_millis(config.export_interval_ms)));
        Ok(Exporter { tx, metrics })
    }

    /// Queues finished spans; drops them (counted) when the queue is full.
    pub(crate) fn export(&self, spans: Vec<SpanData>) {
        let n = spans.len() as u64;
        if self.tx.try_send(Message::Spans(spans)).is_err() {
            self.metrics.spans("dropped", n);
        }
    }

    /// Exports what is queued now, and waits until it is sent or failed:
    /// each batch is bounded by the export timeout (and one retry), not the
    /// whole; callers that must not wait long bound it themselves.
    pub(crate) async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

struct Task {
    rx: mpsc::Receiver<Message>,
    client: reqwest::Client,
    url: reqwest::Url,
    /// The URL as logged: without a query, which may hold a key.
    shown: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    _secrets: Vec<Secret>,
    /// The encoded `Resource` message (service name and version).
    resource: Vec<u8>,
    metrics: Arc<Metrics>,
    buffer: Vec<SpanData>,
    /// When a failed export was last logged (at most one line a minute;
    /// the metrics count every one).
    warned: Option<std::time::Instant>,
}

impl Task {
    fn warn(&mut self, what: std::fmt::Arguments<'_>) {
        if self
            .warned
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(60))
        {
            self.warned = Some(std::time::Instant::now());
            tracing::warn!("{what} (logged at most once a minute; see llmproxy_trace_spans_total)");
        }
    }

    async fn run(mut self, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                message = self.rx.recv() => match message {
                    Some(Message::Spans(spans)) => {
                        self.buffer.extend(spans);
                        if self.buffer.len() >= BATCH {
                            self.send().await;
                        }
                    }
                    Some(Message::Flush(done)) => {
                        self.send().await;
                        let _ = done.send(());
                    }
                    None => {
                        self.send().await;
                        return;
                    }
                },
                _ = tick.tick() => self.send().await,
            }
        }
    }

    /// Exports the buffered spans, in batches.
    async fn send(&mut self) {
        while !self.buffer.is_empty() {
            let mut take = 0;
            let mut bytes = 0;
            while take < self.buffer.len().min(BATCH) && (take == 0 || bytes < BATCH_BYTES) {
                bytes += approximate_size(&self.buffer[take]);
                take += 1;
            }
            let batch: Vec<SpanData> = self.buffer.drain(..take).collect();
            let body = Bytes::from(encode(&self.resource, &batch));
            let n = batch.len() as u64;
            let mut answer = self.post(body.clone()).await;
            // Once more after a pause when the collector says so (OTLP's
            // retryable answers) or could not be reached.
            let retryable = match &answer {
                Ok(response) => matches!(response.status().as_u16(), 429 | 502 | 503 | 504),
                Err(_) => true,
            };
            if retryable {
                tokio::time::sleep(Duration::from_secs(1)).await;
                answer = self.post(body).await;
            }
            match answer {
                Ok(response) if response.status().is_success() => {
                    self.metrics.spans("exported", n);
                }
                Ok(response) => {
                    self.metrics.spans("failed", n);
                    let url = self.shown.clone();
                    self.warn(format_args!(
                        "the OTLP collector at {url} refused {n} spans: HTTP {}",
                        response.status().as_u16()
                    ));
                }
                Err(e) => {
                    self.metrics.spans("failed", n);
                    let url = self.shown.clone();
                    let cause = crate::redact::redact_owned(crate::credentials::gcp::cause(&e));
                    self.warn(format_args!(
                        "cannot send {n} spans to the OTLP collector at {url}: {cause}"
                    ));
                }
            }
        }
    }
}

impl Task {
    async fn post(&self, body: Bytes) -> Result<reqwest::Response, reqwest::Error> {
        let mut request = self
            .client
            .post(self.url.clone())
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .body(body);
        for (name, value) in &self.headers {
            request = request.header(name, value.clone());
        }
        request.send().await
    }
}

/// About the bytes a span takes encoded.
fn approximate_size(span: &SpanData) -> usize {
    let value = |v: &Value| match v {
        Value::Str(s) => s.len(),
        Value::Int(_) | Value::Bool(_) => 10,
    };
    64 + span.name.len()
        + span
            .attributes
            .iter()
            .map(|(k, v)| 8 + k.len() + value(v))
            .sum::<usize>()
}

// Protobuf wire format: a field's key is (number << 3) | wire type.
const VARINT: u64 = 0;
const FIXED64: u64 = 1;
const LEN: u64 = 2;
const FIXED32: u64 = 5;

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(out: &mut Vec<u8>, field: u64, wire: u64) {
    varint(out, (field << 3) | wire);
}

fn bytes_field(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    key(out, field, LEN);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn varint_field(out: &mut Vec<u8>, field: u64, v: u64) {
    key(out, field, VARINT);
    varint(out, v);
}

/// A nested message, written by `write`.
fn message(out: &mut Vec<u8>, field: u64, write: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    write(&mut inner);
    bytes_field(out, field, &inner);
}

/// A `KeyValue` (`key` = 1, `value` = 2, an `AnyValue`: string 1, bool 2,
/// int 3).
fn attribute(out: &mut Vec<u8>, field: u64, name: &str, value: &Value) {
    message(out, field, |kv| {
        bytes_field(kv, 1, name.as_bytes());
        message(kv, 2, |any| match value {
            Value::Str(s) => bytes_field(any, 1, s.as_bytes()),
            Value::Bool(b) => varint_field(any, 2, u64::from(*b)),
            Value::Int(n) => varint_field(any, 3, *n as u64),
        });
    });
}

/// The `Resource` (attributes = 1) every export carries.
fn resource(service_name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in [
        ("service.name", service_name),
        ("service.version", env!("CARGO_PKG_VERSION")),
        ("telemetry.sdk.name", "llmproxy"),
        ("telemetry.sdk.language", "rust"),
        ("telemetry.sdk.version", env!("CARGO_PKG_VERSION")),
    ] {
        attribute(&mut out, 1, name, &Value::from(value));
    }
    out
}

/// An `ExportTraceServiceRequest` (`resource_spans` = 1) of one
/// `ResourceSpans` (`resource` = 1, `scope_spans` = 2) of one `ScopeSpans`
/// (`scope` = 1, `spans` = 2).
pub(crate) fn encode(resource: &[u8], spans: &[SpanData]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 * spans.len() + resource.len() + 64);
    message(&mut out, 1, |rs| {
        bytes_field(rs, 1, resource);
        message(rs, 2, |ss| {
            // InstrumentationScope: name = 1, version = 2.
            message(ss, 1, |scope| {
                bytes_field(scope, 1, b"llmproxy");
                bytes_field(scope, 2, env!("CARGO_PKG_VERSION").as_bytes());
            });
            for span in spans {
                message(ss, 2, |out| encode_span(out, span));
            }
        });
    });
    out
}

/// A `Span`: trace_id 1, span_id 2, parent_span_id 4, name 5, kind 6,
/// start 7 and end 8 (fixed64 ns), attributes 9, status 15 (code = 3),
/// flags 16 (fixed32; bit 8: the parent's context is known, bit 9: it is
/// remote).
fn encode_span(out: &mut Vec<u8>, span: &SpanData) {
    bytes_field(out, 1, &span.trace_id);
    bytes_field(out, 2, &span.span_id);
    if let Some(parent) = &span.parent {
        bytes_field(out, 4, parent);
    }
    bytes_field(out, 5, span.name.as_bytes());
    varint_field(out, 6, span.kind as u64);
    key(out, 7, FIXED64);
    out.extend_from_slice(&span.start_ns.to_le_bytes());
    key(out, 8, FIXED64);
    out.extend_from_slice(&span.end_ns.to_le_bytes());
    for (name, value) in &span.attributes {
        attribute(out, 9, name, value);
    }
    if span.error {
        // Status.code = ERROR (2).
        message(out, 15, |status| varint_field(status, 3, 2));
    }
    let remote = span.kind == super::Kind::Server && span.parent.is_some();
    let flags: u32 = 0x01 | 0x100 | if remote { 0x200 } else { 0 };
    key(out, 16, FIXED32);
    out.extend_from_slice(&flags.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_gets_the_traces_path_when_it_has_none() {
        let url = |e: &str| traces_url(e).map(|u| u.to_string());
        assert_eq!(
            url("http://collector:4318").ok().as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        assert_eq!(
            url("https://otlp.example/api/v1/traces").ok().as_deref(),
            Some("https://otlp.example/api/v1/traces")
        );
        assert!(url("grpc://collector:4317").is_err());
        assert!(url("http://user:pw@collector:4318").is_err());
        assert!(url("collector:4318").is_err());
    }

    #[test]
    fn the_logged_url_has_no_query() {
        let url = traces_url("https://otlp.example/v1/traces?api_key=sk-collector-123#x");
        assert_eq!(
            url.map(|u| shown(&u)).ok().as_deref(),
            Some("https://otlp.example/v1/traces")
        );
    }

    #[test]
    fn varints_are_little_endian_groups_of_seven_bits() {
        let mut out = Vec::new();
        varint(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
        out.clear();
        varint(&mut out, u64::MAX);
        assert_eq!(out.len(), 10);
    }
}
