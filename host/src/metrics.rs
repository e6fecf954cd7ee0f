//! Prometheus metrics: counters, gauges and histograms with bounded label
//! sets (endpoint, backend, the configured model glob that routed a
//! request - never the client's model string -, status class, outcome,
//! translator kind), rendered in the Prometheus text format.
//!
//! One [`Metrics`] per proxy. Recording is a map lookup under a short lock
//! and atomic adds; rendering takes the locks one at a time.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histograms' buckets.
const SECONDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
];
/// Upper bounds (seconds) of the translator-time histogram's buckets.
const TRANSLATOR_SECONDS: [f64; 10] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25,
];

/// Label values, in the order of a family's label names.
type Labels = Vec<String>;

/// The entry for `labels` in `values`, added with `new` if missing. A
/// linear scan: a family has few label sets (they are bounded), and a hit
/// allocates nothing.
fn entry<'v, V>(
    values: &'v mut Vec<(Labels, V)>,
    labels: &[&str],
    new: impl FnOnce() -> V,
) -> &'v mut V {
    let found = values
        .iter()
        .position(|(k, _)| k.len() == labels.len() && k.iter().zip(labels).all(|(a, b)| a == b));
    let i = match found {
        Some(i) => i,
        None => {
            values.push((labels.iter().map(|l| l.to_string()).collect(), new()));
            values.len() - 1
        }
    };
    &mut values[i].1
}

/// The entries, sorted by their labels (for a stable rendering).
fn sorted<V: Clone>(values: &[(Labels, V)]) -> Vec<(Labels, V)> {
    let mut out = values.to_vec();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// A family of counters.
#[derive(Debug)]
struct Counters {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    values: Mutex<Vec<(Labels, u64)>>,
}

impl Counters {
    const fn new(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Self {
        Counters {
            name,
            help,
            labels,
            values: Mutex::new(Vec::new()),
        }
    }

    fn add(&self, labels: &[&str], n: u64) {
        if let Ok(mut values) = self.values.lock() {
            *entry(&mut values, labels, || 0) += n;
        }
    }

    fn render(&self, out: &mut String) {
        header(out, self.name, self.help, "counter");
        let values = match self.values.lock() {
            Ok(v) => sorted(&v),
            Err(_) => return,
        };
        {
            for (labels, n) in values.iter() {
                let _ = writeln!(
                    out,
                    "{}{} {n}",
                    self.name,
                    label_text(self.labels, labels, None)
                );
            }
        }
    }
}

/// A family of histograms.
#[derive(Debug)]
struct Histograms {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    bounds: &'static [f64],
    values: Mutex<Vec<(Labels, Histogram)>>,
}

#[derive(Debug, Clone)]
struct Histogram {
    /// Observations per bucket (not cumulative), the last one `+Inf`.
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histograms {
    const fn new(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        bounds: &'static [f64],
    ) -> Self {
        Histograms {
            name,
            help,
            labels,
            bounds,
            values: Mutex::new(Vec::new()),
        }
    }

    fn observe(&self, labels: &[&str], seconds: f64) {
        if let Ok(mut values) = self.values.lock() {
            let h = entry(&mut values, labels, || Histogram {
                buckets: vec![0; self.bounds.len() + 1],
                sum: 0.0,
                count: 0,
            });
            let slot = self
                .bounds
                .iter()
                .position(|b| seconds <= *b)
                .unwrap_or(self.bounds.len());
            h.buckets[slot] += 1;
            h.sum += seconds;
            h.count += 1;
        }
    }

    fn render(&self, out: &mut String) {
        header(out, self.name, self.help, "histogram");
        let values = match self.values.lock() {
            Ok(v) => sorted(&v),
            Err(_) => return,
        };
        for (labels, h) in values.iter() {
            let mut cumulative = 0;
            for (i, n) in h.buckets.iter().enumerate() {
                cumulative += n;
                let le = match self.bounds.get(i) {
                    Some(b) => format!("{b}"),
                    None => "+Inf".into(),
                };
                let _ = writeln!(
                    out,
                    "{}_bucket{} {cumulative}",
                    self.name,
                    label_text(self.labels, labels, Some(&le))
                );
            }
            let plain = label_text(self.labels, labels, None);
            let _ = writeln!(out, "{}_sum{plain} {}", self.name, h.sum);
            let _ = writeln!(out, "{}_count{plain} {}", self.name, h.count);
        }
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// `{a="x",b="y"}` (with `le` last for a bucket), or nothing without labels.
fn label_text(names: &[&str], values: &[String], le: Option<&str>) -> String {
    let mut pairs: Vec<String> = names
        .iter()
        .zip(values)
        .map(|(n, v)| format!("{n}=\"{}\"", escape(v)))
        .collect();
    if let Some(le) = le {
        pairs.push(format!("le=\"{le}\""));
    }
    if pairs.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", pairs.join(","))
    }
}

/// A label value as the text format wants it.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The HTTP status class of a status: `2xx`, `4xx`, ...
pub(crate) fn class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// What one request did, for the metrics (read from its access-log record).
#[derive(Debug)]
pub(crate) struct Finished<'a> {
    pub endpoint: &'a str,
    pub backend: &'a str,
    /// The configured glob that routed it (`-` when it was not routed).
    pub model: &'a str,
    pub status: u16,
    pub outcome: &'a str,
    pub stream: bool,
    pub latency: Duration,
    pub upstream_first_byte: Option<Duration>,
    pub first_token: Option<Duration>,
    pub usage: Option<Usage>,
    /// The upstream failure the request met, by class (a status class,
    /// `timeout`, `unreachable`, `bad_response`, `credentials`).
    pub upstream_error: Option<&'a str>,
}

/// Token counts of an answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    pub input: u64,
    pub output: u64,
    pub cached: u64,
    pub reasoning: u64,
}

/// The proxy's metrics.
#[derive(Debug)]
pub struct Metrics {
    requests: Counters,
    latency: Histograms,
    upstream_first_byte: Histograms,
    first_token: Histograms,
    stream_duration: Histograms,
    tokens: Counters,
    open_streams: AtomicI64,
    translator_seconds: Histograms,
    translator_faults: Counters,
    retries: Counters,
    upstream_errors: Counters,
    store_operations: Counters,
    media_downloads: Counters,
    media_bytes: AtomicU64,
    trace_spans: Counters,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

const REQUEST_LABELS: &[&str] = &["endpoint", "backend", "model", "status", "outcome"];
const ROUTE_LABELS: &[&str] = &["endpoint", "backend", "model"];

impl Metrics {
    /// Empty metrics.
    pub fn new() -> Metrics {
        Metrics {
            requests: Counters::new(
                "llmproxy_requests_total",
                "Requests answered, by endpoint, backend, configured model glob, status class and outcome.",
                REQUEST_LABELS,
            ),
            latency: Histograms::new(
                "llmproxy_request_duration_seconds",
                "Time from a request's arrival to its answer's end (for a stream, the stream's end).",
                ROUTE_LABELS,
                &SECONDS,
            ),
            upstream_first_byte: Histograms::new(
                "llmproxy_upstream_first_byte_seconds",
                "Time from a request's arrival to the upstream's response head.",
                ROUTE_LABELS,
                &SECONDS,
            ),
            first_token: Histograms::new(
                "llmproxy_stream_first_token_seconds",
                "Streams: time from a request's arrival to the first piece of the answer sent.",
                ROUTE_LABELS,
                &SECONDS,
            ),
            stream_duration: Histograms::new(
                "llmproxy_stream_duration_seconds",
                "Streams: time from a request's arrival to the stream's end.",
                ROUTE_LABELS,
                &SECONDS,
            ),
            tokens: Counters::new(
                "llmproxy_tokens_total",
                "Tokens the upstreams reported, by backend, configured model glob and kind (input, output, cached, reasoning).",
                &["backend", "model", "kind"],
            ),
            open_streams: AtomicI64::new(0),
            translator_seconds: Histograms::new(
                "llmproxy_translator_call_seconds",
                "Time spent in translator calls, by translator and call.",
                &["translator", "call"],
                &TRANSLATOR_SECONDS,
            ),
            translator_faults: Counters::new(
                "llmproxy_translator_faults_total",
                "Translator calls that failed in the sandbox, by translator and kind (trap, timeout, memory).",
                &["translator", "kind"],
            ),
            retries: Counters::new(
                "llmproxy_upstream_retries_total",
                "Upstream requests sent again, by backend.",
                &["backend"],
            ),
            upstream_errors: Counters::new(
                "llmproxy_upstream_errors_total",
                "Upstream failures, by backend and class (status class, timeout, unreachable, bad_response, credentials).",
                &["backend", "class"],
            ),
            store_operations: Counters::new(
                "llmproxy_store_operations_total",
                "Response store operations, by operation and result (ok, error).",
                &["operation", "result"],
            ),
            media_downloads: Counters::new(
                "llmproxy_media_downloads_total",
                "Files downloaded for translators, by result (ok, refused).",
                &["result"],
            ),
            media_bytes: AtomicU64::new(0),
            trace_spans: Counters::new(
                "llmproxy_trace_spans_total",
                "Spans for the OTLP collector, by result (exported; dropped: the export queue was full; failed: the collector refused them or was unreachable).",
                &["result"],
            ),
        }
    }

    /// Records a finished request.
    pub(crate) fn finished(&self, r: &Finished) {
        let status = class(r.status);
        self.requests
            .add(&[r.endpoint, r.backend, r.model, status, r.outcome], 1);
        let route = [r.endpoint, r.backend, r.model];
        self.latency.observe(&route, r.latency.as_secs_f64());
        if let Some(d) = r.upstream_first_byte {
            self.upstream_first_byte.observe(&route, d.as_secs_f64());
        }
        if r.stream && r.status == 200 {
            if let Some(d) = r.first_token {
                self.first_token.observe(&route, d.as_secs_f64());
            }
            self.stream_duration
                .observe(&route, r.latency.as_secs_f64());
        }
        if let Some(class) = r.upstream_error {
            self.upstream_errors.add(&[r.backend, class], 1);
        }
        if let Some(u) = r.usage {
            for (kind, n) in [
                ("input", u.input),
                ("output", u.output),
                ("cached", u.cached),
                ("reasoning", u.reasoning),
            ] {
                self.tokens.add(&[r.backend, r.model, kind], n);
            }
        }
    }

    /// A stream opened (`+1`) or closed (`-1`).
    pub(crate) fn stream_open(&self, delta: i64) {
        self.open_streams.fetch_add(delta, Ordering::Relaxed);
    }

    /// A translator call took `elapsed`.
    pub(crate) fn translator_call(&self, translator: &str, call: &str, elapsed: Duration) {
        self.translator_seconds
            .observe(&[translator, call], elapsed.as_secs_f64());
    }

    /// A translator call failed in the sandbox (`trap`, `timeout`,
    /// `memory`).
    pub(crate) fn translator_fault(&self, translator: &str, kind: &str) {
        self.translator_faults.add(&[translator, kind], 1);
    }

    /// An upstream request was sent again.
    pub(crate) fn retry(&self, backend: &str) {
        self.retries.add(&[backend], 1);
    }

    /// A store operation and whether it worked.
    pub(crate) fn store(&self, operation: &str, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.store_operations.add(&[operation, result], 1);
    }

    /// A media download: its bytes, or refused.
    pub(crate) fn media(&self, bytes: Option<u64>) {
        match bytes {
            Some(n) => {
                self.media_downloads.add(&["ok"], 1);
                self.media_bytes.fetch_add(n, Ordering::Relaxed);
            }
            None => self.media_downloads.add(&["refused"], 1),
        }
    }

    /// `n` spans were exported, dropped or failed (`result`).
    #[cfg_attr(not(feature = "telemetry"), allow(dead_code))]
    pub(crate) fn spans(&self, result: &str, n: u64) {
        self.trace_spans.add(&[result], n);
    }

    /// Everything, in the Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        header(
            &mut out,
            "llmproxy_build_info",
            "The running llmproxy's version and translator contract.",
            "gauge",
        );
        let _ = writeln!(
            out,
            "llmproxy_build_info{{version=\"{}\",contract=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION"),
            crate::translator::CONTRACT_VERSION
        );
        self.requests.render(&mut out);
        self.latency.render(&mut out);
        self.upstream_first_byte.render(&mut out);
        self.first_token.render(&mut out);
        self.stream_duration.render(&mut out);
        self.tokens.render(&mut out);
        header(
            &mut out,
            "llmproxy_open_streams",
            "Streamed answers being sent now.",
            "gauge",
        );
        let _ = writeln!(
            out,
            "llmproxy_open_streams {}",
            self.open_streams.load(Ordering::Relaxed).max(0)
        );
        self.translator_seconds.render(&mut out);
        self.translator_faults.render(&mut out);
        self.retries.render(&mut out);
        self.upstream_errors.render(&mut out);
        self.store_operations.render(&mut out);
        self.media_downloads.render(&mut out);
        header(
            &mut out,
            "llmproxy_media_download_bytes_total",
            "Bytes of files downloaded for translators.",
            "counter",
        );
        let _ = writeln!(
            out,
            "llmproxy_media_download_bytes_total {}",
            self.media_bytes.load(Ordering::Relaxed)
        );
        self.trace_spans.render(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_histograms() {
        let m = Metrics::new();
        m.finished(&Finished {
            endpoint: "chat",
            backend: "b",
            model: "gpt-*",
            status: 200,
            outcome: "completed",
            stream: true,
            latency: Duration::from_millis(3),
            upstream_first_byte: Some(Duration::from_millis(1)),
            first_token: Some(Duration::from_millis(2)),
            usage: Some(Usage {
                input: 10,
                output: 5,
                cached: 2,
                reasoning: 1,
            }),
            upstream_error: None,
        });
        let text = m.render();
        assert!(text.contains(
            "llmproxy_requests_total{endpoint=\"chat\",backend=\"b\",model=\"gpt-*\",status=\"2xx\",outcome=\"completed\"} 1"
        ), "{text}");
        assert!(text.contains(
            "llmproxy_request_duration_seconds_bucket{endpoint=\"chat\",backend=\"b\",model=\"gpt-*\",le=\"0.005\"} 1"
        ), "{text}");
        assert!(text.contains(
            "llmproxy_request_duration_seconds_bucket{endpoint=\"chat\",backend=\"b\",model=\"gpt-*\",le=\"0.0025\"} 0"
        ), "{text}");
        assert!(
            text.contains("llmproxy_tokens_total{backend=\"b\",model=\"gpt-*\",kind=\"cached\"} 2")
        );
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
