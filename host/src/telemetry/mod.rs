//! OpenTelemetry traces: one span per request, following the GenAI semantic
//! conventions, with child spans for the translator calls and the upstream
//! call; exported over OTLP/HTTP (protobuf) by [`otlp`].
//!
//! A request's [`Recorder`] is made with its log record
//! ([`crate::access::AccessLog`]), which writes the request's span when it
//! is written itself; child spans are recorded into it on the way. The
//! operations run inside [`scope`], so that the translator and the upstream
//! client find the recorder without it being passed down every call.
//!
//! What spans hold: model names, backend, routing glob, status, outcome,
//! token counts, timings, the upstream host. Never a secret (error messages
//! stay out: they can quote the client's request); prompt and completion
//! text only with `capture_content = true`.
//!
//! The client's W3C `traceparent` is honoured: the request's span is its
//! child, and its sampling decision is followed. The upstream is sent a
//! `traceparent` naming the upstream call's span, so that a trace crosses
//! the proxy.

#[cfg(feature = "telemetry")]
pub(crate) mod otlp;

use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

/// A span's kind (OTLP `Span.SpanKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Internal = 1,
    Server = 2,
    Client = 3,
}

/// An attribute's value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}

impl From<u64> for Value {
    fn from(n: u64) -> Self {
        Value::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

/// One finished span.
#[derive(Debug, Clone)]
pub(crate) struct SpanData {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent: Option<[u8; 8]>,
    pub name: String,
    pub kind: Kind,
    pub start_ns: u64,
    pub end_ns: u64,
    pub attributes: Vec<(&'static str, Value)>,
    /// The span ended in error (status `ERROR`).
    pub error: bool,
}

/// A W3C `traceparent`: the trace, the caller's span and whether the
/// caller records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TraceParent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
}

impl TraceParent {
    /// Reads a `traceparent` header (version `00`, or a later version's
    /// first four fields); `None` when it is not one, as the W3C spec says
    /// to treat an invalid one.
    pub(crate) fn parse(header: &str) -> Option<TraceParent> {
        let fields = header.get(..55)?;
        let rest = &header[55..];
        let mut parts = fields.split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if version.len() != 2
            || !hex(version)
            || version == "ff"
            || !(hex(trace) && hex(span) && hex(flags))
            || (version == "00" && !rest.is_empty())
            || (!rest.is_empty() && !rest.starts_with('-'))
        {
            return None;
        }
        let mut trace_id = [0u8; 16];
        let mut span_id = [0u8; 8];
        decode_hex(trace, &mut trace_id)?;
        decode_hex(span, &mut span_id)?;
        let mut flag = [0u8; 1];
        decode_hex(flags, &mut flag)?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(TraceParent {
            trace_id,
            span_id,
            sampled: flag[0] & 1 == 1,
        })
    }

    /// The header's text.
    pub(crate) fn header(&self) -> String {
        format!(
            "00-{}-{}-{}",
            hex(&self.trace_id),
            hex(&self.span_id),
            if self.sampled { "01" } else { "00" }
        )
    }
}

/// A `tracestate` worth passing on: printable ASCII, at most 512
/// characters (what the W3C spec asks a vendor to keep at least).
fn acceptable_tracestate(state: &str) -> bool {
    !state.is_empty() && state.len() <= 512 && state.bytes().all(|b| (0x20..0x7f).contains(&b))
}

fn decode_hex(text: &str, out: &mut [u8]) -> Option<()> {
    if text.len() != out.len() * 2 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn random<const N: usize>() -> [u8; N] {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; N];
    loop {
        if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
            // Never seen on a supported OS; ids need not be secret.
            let id = crate::ids::new_id("");
            for (b, c) in bytes.iter_mut().zip(id.bytes().skip(1)) {
                *b = c;
            }
        }
        if bytes.iter().any(|&b| b != 0) {
            return bytes;
        }
    }
}

/// The semantic conventions' `gen_ai.provider.name` for a backend kind
/// (the kind itself where they name none; `None` for a translator file).
pub(crate) fn provider_name(kind: &str) -> Option<String> {
    match kind {
        "" => None,
        "gcp-vertex" => Some("gcp.vertex_ai".into()),
        other => Some(other.into()),
    }
}

/// The tracing side of a proxy: how requests are sampled, whether content
/// is recorded, and where finished spans go.
#[derive(Debug)]
pub(crate) struct Tracer {
    /// Root requests are recorded when the low half of their trace id is
    /// below this (`u64::MAX`: all).
    threshold: u64,
    capture_content: bool,
    #[cfg(feature = "telemetry")]
    exporter: otlp::Exporter,
}

impl Tracer {
    /// Starts the exporter of `config` (inside a Tokio runtime).
    #[cfg(feature = "telemetry")]
    pub(crate) fn start(
        config: &crate::config::TelemetryConfig,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<Tracer, crate::config::ConfigError> {
        let ratio = config.sampling_ratio.clamp(0.0, 1.0);
        Ok(Tracer {
            threshold: if ratio >= 1.0 {
                u64::MAX
            } else {
                // Exact enough: the ratio of ids below it.
                (ratio * u64::MAX as f64) as u64
            },
            capture_content: config.capture_content,
            exporter: otlp::Exporter::start(config, metrics)?,
        })
    }

    /// The recorder of a new request, a child of the client's `traceparent`
    /// (in `headers`) when it sent a valid one, whose `tracestate` then goes
    /// on upstream.
    pub(crate) fn begin(self: &Arc<Self>, headers: Option<&http::HeaderMap>) -> Arc<Recorder> {
        let header = |name: &str| {
            headers
                .and_then(|h| h.get(name))
                .and_then(|v| v.to_str().ok())
        };
        let parent = header("traceparent").and_then(TraceParent::parse);
        let tracestate = parent
            .and(header("tracestate"))
            .filter(|s| acceptable_tracestate(s))
            .map(str::to_string);
        let trace_id = parent.map_or_else(random::<16>, |p| p.trace_id);
        let sampled = match parent {
            Some(p) => p.sampled,
            None => {
                let low = u64::from_be_bytes([
                    trace_id[8],
                    trace_id[9],
                    trace_id[10],
                    trace_id[11],
                    trace_id[12],
                    trace_id[13],
                    trace_id[14],
                    trace_id[15],
                ]);
                self.threshold == u64::MAX || low < self.threshold
            }
        };
        Arc::new(Recorder {
            tracer: self.clone(),
            trace_id,
            span_id: random::<8>(),
            parent: parent.map(|p| p.span_id),
            tracestate,
            sampled,
            wall: SystemTime::now(),
            started: Instant::now(),
            children: Mutex::new(Vec::new()),
            content: Mutex::new((None, None)),
        })
    }

    /// Sends what is waiting to the collector (for a shutdown).
    pub(crate) async fn flush(&self) {
        #[cfg(feature = "telemetry")]
        self.exporter.flush().await;
    }

    fn export(&self, spans: Vec<SpanData>) {
        #[cfg(feature = "telemetry")]
        self.exporter.export(spans);
        #[cfg(not(feature = "telemetry"))]
        drop(spans);
    }
}

/// The most text of a prompt or completion a span carries.
const MAX_CONTENT: usize = 64 * 1024;

/// One request's trace: its ids, and the child spans recorded so far.
#[derive(Debug)]
pub(crate) struct Recorder {
    tracer: Arc<Tracer>,
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent: Option<[u8; 8]>,
    /// The caller's `tracestate`, passed on upstream.
    tracestate: Option<String>,
    sampled: bool,
    wall: SystemTime,
    started: Instant,
    children: Mutex<Vec<SpanData>>,
    /// Prompt and completion text (with `capture_content`).
    content: Mutex<(Option<String>, Option<String>)>,
}

impl Recorder {
    /// Nanoseconds since the Unix epoch at `at`.
    fn unix_ns(&self, at: Instant) -> u64 {
        let base = self
            .wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let offset = at.saturating_duration_since(self.started);
        u64::try_from((base + offset).as_nanos()).unwrap_or(u64::MAX)
    }

    /// The caller's `tracestate`, to send upstream with the `traceparent`.
    pub(crate) fn tracestate(&self) -> Option<String> {
        self.tracestate.clone()
    }

    /// A new span id for a child, and the `traceparent` that names it.
    pub(crate) fn child_parent(&self) -> TraceParent {
        TraceParent {
            trace_id: self.trace_id,
            span_id: random::<8>(),
            sampled: self.sampled,
        }
    }

    /// Records a finished child span of the request's span.
    pub(crate) fn child(
        &self,
        span_id: Option<[u8; 8]>,
        name: String,
        kind: Kind,
        started: Instant,
        attributes: Vec<(&'static str, Value)>,
        error: bool,
    ) {
        if !self.sampled {
            return;
        }
        let span = SpanData {
            trace_id: self.trace_id,
            span_id: span_id.unwrap_or_else(random::<8>),
            parent: Some(self.span_id),
            name,
            kind,
            start_ns: self.unix_ns(started),
            end_ns: self.unix_ns(Instant::now()),
            attributes,
            error,
        };
        if let Ok(mut children) = self.children.lock() {
            children.push(span);
        }
    }

    /// Whether prompt and completion text is recorded.
    pub(crate) fn captures_content(&self) -> bool {
        self.sampled && self.tracer.capture_content
    }

    /// The prompt (`input`) or the completion (`output`), with
    /// `capture_content`: redacted of secrets and cut to
    /// [`MAX_CONTENT`] bytes.
    pub(crate) fn content(&self, output: bool, text: &str) {
        if !self.captures_content() {
            return;
        }
        let mut text = crate::redact::redact(text).into_owned();
        if text.len() > MAX_CONTENT {
            let mut cut = MAX_CONTENT;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str("...[truncated]");
        }
        if let Ok(mut content) = self.content.lock() {
            if output {
                content.1 = Some(text);
            } else {
                content.0 = Some(text);
            }
        }
    }

    /// Ends the request's span, named `name`, with `attributes`, and
    /// hands it and its children to the exporter.
    pub(crate) fn finish(
        &self,
        name: String,
        mut attributes: Vec<(&'static str, Value)>,
        error: bool,
    ) {
        if !self.sampled {
            return;
        }
        if let Ok(mut content) = self.content.lock() {
            if let Some(input) = content.0.take() {
                attributes.push(("gen_ai.input.messages", Value::Str(input)));
            }
            if let Some(output) = content.1.take() {
                attributes.push(("gen_ai.output.messages", Value::Str(output)));
            }
        }
        let mut spans = self
            .children
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default();
        spans.push(SpanData {
            trace_id: self.trace_id,
            span_id: self.span_id,
            parent: self.parent,
            name,
            kind: Kind::Server,
            start_ns: self.unix_ns(self.started),
            end_ns: self.unix_ns(Instant::now()),
            attributes,
            error,
        });
        self.tracer.export(spans);
    }
}

tokio::task_local! {
    static CURRENT: Arc<Recorder>;
}

/// Runs `work` with `trace` as the request's recorder (see [`current`]).
pub(crate) async fn scope<F: Future>(trace: Option<Arc<Recorder>>, work: F) -> F::Output {
    match trace {
        Some(trace) => CURRENT.scope(trace, work).await,
        None => work.await,
    }
}

/// The recorder of the request being run, inside [`scope`].
pub(crate) fn current() -> Option<Arc<Recorder>> {
    CURRENT.try_with(Arc::clone).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_plain_tracestate_is_passed_on() {
        assert!(acceptable_tracestate("vendor=opaque,other=t61rcWkgMzE"));
        for bad in [
            "",
            "a=b\tc",
            "a=\u{e9}",
            "a=b\r\nx-injected: 1",
            &"k=v,".repeat(200),
        ] {
            assert!(!acceptable_tracestate(bad), "{bad:?}");
        }
    }

    #[test]
    fn every_bundled_kind_names_its_provider() {
        for kind in crate::kinds::kinds() {
            let name = provider_name(kind).unwrap_or_default();
            assert!(!name.is_empty(), "{kind}");
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'.' || b == b'_'),
                "{kind}: {name}"
            );
        }
        assert_eq!(
            provider_name("gcp-vertex").as_deref(),
            Some("gcp.vertex_ai")
        );
        assert_eq!(provider_name(""), None);
    }

    #[test]
    fn traceparents_are_read_as_the_w3c_spec_says() {
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let p = TraceParent::parse(ok).expect("valid");
        assert!(p.sampled);
        assert_eq!(p.header(), ok);
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        assert!(!TraceParent::parse(unsampled).expect("valid").sampled);
        // A later version may add fields after a dash.
        assert!(
            TraceParent::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra")
                .is_some()
        );
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00-4bf92f3577b34da6a3ce929d0e0e473\u{e9}-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
    }
}
