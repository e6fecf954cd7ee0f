//! One structured log line per request (target `llmproxy::request`): id,
//! endpoint, model, backend, status, outcome, latency, upstream latency and
//! token usage. Written when the request is over: for a stream, when it
//! ends or the client goes away.

use crate::backend::Backend;
use crate::error::Error;
use crate::metrics::{Finished, Metrics, Usage};
use crate::telemetry::{Recorder, Value as Attr};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use llmproxy_api::events::ResponseEvent;
use llmproxy_api::responses::Response;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one request did, logged when dropped.
#[derive(Debug)]
pub(crate) struct AccessLog {
    pub id: String,
    endpoint: &'static str,
    started: Instant,
    model: Option<String>,
    backend: Option<String>,
    stream: bool,
    upstream: Option<Duration>,
    upstream_status: Option<u16>,
    status: u16,
    outcome: &'static str,
    usage: Option<(u64, u64)>,
    error: Option<String>,
    /// The server's shutdown deadline, to tell a request it ended from one
    /// whose client went away.
    cutoff: Option<Cutoff>,
    /// Nothing to log: this record was moved into a stream.
    moved: bool,
    /// Where the record is counted, once written.
    metrics: Option<Arc<Metrics>>,
    /// The configured glob that routed the request.
    glob: Option<String>,
    /// When the first piece of a streamed answer went out.
    first_token: Option<Duration>,
    /// Cached and reasoning tokens, beside `usage`.
    token_details: (u64, u64),
    /// This record goes with an open stream (counted in the open-streams
    /// gauge until it is written).
    open_stream: bool,
    /// The upstream failure the request met, by class.
    upstream_error: Option<&'static str>,
    /// The request's trace, when the proxy traces (written with the record).
    trace: Option<Box<Traced>>,
}

/// What a traced request's span says beyond the log record.
#[derive(Debug)]
struct Traced {
    recorder: Arc<Recorder>,
    /// `gen_ai.provider.name` and the upstream model, once routed.
    provider: Option<String>,
    upstream_model: Option<String>,
}

/// What a request that ended before any answer is logged as: its client
/// went away (nginx's 499), unless the shutdown deadline ended it.
const NO_ANSWER: (u16, &str) = (499, "client_closed");

/// A client-supplied `x-request-id` is used when it is short and plain.
fn acceptable_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

impl AccessLog {
    /// Starts the record of a request to `endpoint` (`responses`, `chat`),
    /// with the client's request id when it gave a usable one.
    pub fn start(endpoint: &'static str, client_id: Option<&str>) -> AccessLog {
        let id = match client_id {
            Some(id) if acceptable_id(id) => id.to_string(),
            _ => crate::ids::request_id(),
        };
        let mut log = AccessLog::blank(endpoint, Instant::now());
        log.id = id;
        log
    }

    /// A record with nothing learnt yet: no answer (499) until one is.
    fn blank(endpoint: &'static str, started: Instant) -> AccessLog {
        AccessLog {
            id: String::new(),
            endpoint,
            started,
            model: None,
            backend: None,
            stream: false,
            upstream: None,
            upstream_status: None,
            status: NO_ANSWER.0,
            outcome: NO_ANSWER.1,
            usage: None,
            error: None,
            cutoff: None,
            moved: false,
            metrics: None,
            glob: None,
            first_token: None,
            token_details: (0, 0),
            open_stream: false,
            upstream_error: None,
            trace: None,
        }
    }

    /// Traces the request into `recorder` (its span is written with the
    /// record).
    pub(crate) fn traced(&mut self, recorder: Arc<Recorder>) {
        self.trace = Some(Box::new(Traced {
            recorder,
            provider: None,
            upstream_model: None,
        }));
    }

    /// The request's trace, for [`crate::telemetry::scope`].
    pub(crate) fn trace(&self) -> Option<Arc<Recorder>> {
        self.trace.as_ref().map(|t| t.recorder.clone())
    }

    /// The prompt (the request's `input` or `messages`, and its
    /// instructions), recorded in the trace when the operator opted in.
    pub(crate) fn prompt(&self, body: &[u8]) {
        if let Some(t) = &self.trace
            && t.recorder.captures_content()
            && let Ok(prompt) = serde_json::from_slice::<Prompt>(body)
        {
            let text = match (prompt.system, prompt.input) {
                (Some(system), Some(input)) => {
                    format!("{{\"system\":{},\"input\":{}}}", system.get(), input.get())
                }
                (None, Some(input)) => input.get().to_string(),
                (Some(system), None) => system.get().to_string(),
                (None, None) => return,
            };
            t.recorder.content(false, &text);
        }
    }

    /// The completion (a response's `output`, a Chat answer's `choices`, a
    /// Message's `content`), recorded as [`AccessLog::prompt`] is.
    pub(crate) fn completion(&self, json: &str) {
        if let Some(t) = &self.trace {
            t.recorder.content(true, json);
        }
    }

    /// Whether [`AccessLog::completion`] records anything (to skip
    /// serializing what it would not keep).
    pub(crate) fn wants_completion(&self) -> bool {
        self.trace
            .as_ref()
            .is_some_and(|t| t.recorder.captures_content())
    }

    /// Counts the record in `metrics` when it is written.
    pub(crate) fn meter(&mut self, metrics: Arc<Metrics>) {
        self.metrics = Some(metrics);
    }

    /// The first piece of a streamed answer went out (only the first call
    /// counts).
    pub(crate) fn first_token(&mut self) {
        if self.first_token.is_none() {
            self.first_token = Some(self.started.elapsed());
        }
    }

    /// Lets the record tell a request the shutdown deadline ended.
    pub(crate) fn watch(&mut self, cutoff: Cutoff) {
        self.cutoff = Some(cutoff);
    }

    /// The client was sent an answer with `status` (its outcome stays
    /// what a response said, if one did).
    #[cfg(feature = "server")]
    pub fn answered(&mut self, status: u16) {
        self.status = status;
        if self.outcome == NO_ANSWER.1 {
            self.outcome = if status < 400 { "completed" } else { "error" };
        }
    }

    /// The request was routed to `backend` by `glob`.
    pub(crate) fn routed(&mut self, model: &str, backend: &Backend, glob: &str, stream: bool) {
        self.model = Some(model.to_string());
        self.backend = Some(backend.name.clone());
        self.glob = Some(glob.to_string());
        self.stream = stream;
        if let Some(t) = &mut self.trace {
            t.provider.clone_from(&backend.provider);
            t.upstream_model = Some(backend.upstream_model(model));
        }
    }

    /// The upstream's response head arrived.
    pub fn upstream_answered(&mut self, status: u16) {
        self.upstream = Some(self.started.elapsed());
        self.upstream_status = Some(status);
    }

    /// The request failed with `error` (sent to the client as its status).
    pub fn failed(&mut self, error: &Error) {
        self.status = error.status().as_u16();
        self.outcome = "error";
        self.error = Some(crate::redact::redact_owned(error.to_string()));
        self.upstream_error = upstream_class(error);
    }

    /// A stream's terminal response.
    pub fn terminal(&mut self, response: &Response) {
        if self.wants_completion()
            && let Ok(output) = serde_json::to_string(&response.output)
        {
            self.completion(&output);
        }
        self.status = 200;
        self.outcome = match response.status.as_deref() {
            Some("incomplete") => "incomplete",
            Some("failed") => "failed",
            _ => "completed",
        };
        if let Some(usage) = &response.usage {
            self.usage = Some((usage.input_tokens, usage.output_tokens));
            self.token_details = (
                usage.input_tokens_details.cached_tokens,
                usage.output_tokens_details.reasoning_tokens,
            );
        }
        if self.outcome == "failed" {
            self.error = response
                .error
                .as_ref()
                .and_then(|e| e.get("message"))
                .and_then(Value::as_str)
                .map(|m| crate::redact::redact(m).into_owned());
        }
    }

    /// A complete response object.
    pub fn response(&mut self, response: &serde_json::Map<String, Value>) {
        if self.wants_completion()
            && let Some(output) = response.get("output")
        {
            self.completion(&output.to_string());
        }
        self.status = 200;
        self.outcome = match response.get("status").and_then(Value::as_str) {
            Some("incomplete") => "incomplete",
            Some("failed") => "failed",
            _ => "completed",
        };
        if let Some(usage) = response.get("usage") {
            let n = |k: &str| usage.get(k).and_then(Value::as_u64).unwrap_or(0);
            let detail = |d: &str, k: &str| {
                usage
                    .get(d)
                    .and_then(|d| d.get(k))
                    .and_then(Value::as_u64)
                    .unwrap_or(0)
            };
            self.usage = Some((n("input_tokens"), n("output_tokens")));
            self.token_details = (
                detail("input_tokens_details", "cached_tokens"),
                detail("output_tokens_details", "reasoning_tokens"),
            );
        }
        if self.outcome == "failed" {
            self.error = response
                .get("error")
                .and_then(|e| e.get("message"))
                .and_then(Value::as_str)
                .map(|m| crate::redact::redact(m).into_owned());
        }
    }

    /// The tokens the answer used.
    pub fn usage(&mut self, input: u64, output: u64) {
        self.usage = Some((input, output));
    }

    /// Of the tokens the answer used, those read from a cache and those
    /// spent reasoning.
    pub(crate) fn token_details(&mut self, cached: u64, reasoning: u64) {
        self.token_details = (cached, reasoning);
    }

    /// How the answer ended (`completed`, `incomplete`, `failed`), or why
    /// not: an error the client was told of midway.
    pub fn ended(&mut self, outcome: &'static str, error: Option<&Error>) {
        self.outcome = outcome;
        if let Some(e) = error {
            self.error = Some(crate::redact::redact_owned(e.to_string()));
            self.upstream_error = upstream_class(e);
        }
    }

    /// The record, taken out to go with a stream that writes it when it is
    /// dropped: as a 200 whose outcome the stream sets, `client_closed`
    /// until it does.
    pub fn take_for_stream(&mut self) -> AccessLog {
        // Written by nobody: the stream's record is the one that counts.
        let mut placeholder = AccessLog::blank(self.endpoint, self.started);
        placeholder.moved = true;
        let mut log = std::mem::replace(self, placeholder);
        log.status = 200;
        log.outcome = NO_ANSWER.1;
        if let Some(m) = &log.metrics {
            m.stream_open(1);
            log.open_stream = true;
        }
        log
    }

    /// Follows a canonical event stream: the record is written when the
    /// stream is dropped, with what its terminal event said, or as
    /// `client_closed` when it never got there.
    pub fn follow(
        &mut self,
        events: BoxStream<'static, ResponseEvent>,
    ) -> BoxStream<'static, ResponseEvent> {
        let mut log = self.take_for_stream();
        events
            .inspect(move |event| {
                if let Some(response) = event.terminal() {
                    log.terminal(response);
                } else if matches!(
                    event,
                    ResponseEvent::OutputTextDelta(_)
                        | ResponseEvent::ReasoningSummaryTextDelta(_)
                        | ResponseEvent::ReasoningTextDelta(_)
                        | ResponseEvent::FunctionCallArgumentsDelta(_)
                        | ResponseEvent::OutputItemDone(_)
                ) {
                    log.first_token();
                }
            })
            .boxed()
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        if self.moved {
            return;
        }
        if self.outcome == NO_ANSWER.1 && self.cutoff.as_ref().is_some_and(|c| c.is_reached()) {
            self.outcome = "shutdown";
            if self.status == NO_ANSWER.0 {
                self.status = 503;
            }
        }
        let latency_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        let upstream_ms = self.upstream.map(|d| d.as_secs_f64() * 1000.0);
        tracing::info!(
            target: "llmproxy::request",
            id = %self.id,
            endpoint = self.endpoint,
            model = self.model.as_deref(),
            backend = self.backend.as_deref(),
            stream = self.stream,
            status = self.status,
            outcome = self.outcome,
            latency_ms = (latency_ms * 10.0).round() / 10.0,
            upstream_ms = upstream_ms.map(|ms| (ms * 10.0).round() / 10.0),
            upstream_status = self.upstream_status,
            input_tokens = self.usage.map(|u| u.0),
            output_tokens = self.usage.map(|u| u.1),
            error = self.error.as_deref(),
            "request"
        );
        if let Some(trace) = self.trace.take() {
            self.write_span(&trace);
        }
        if let Some(metrics) = &self.metrics {
            if self.open_stream {
                metrics.stream_open(-1);
            }
            metrics.finished(&Finished {
                endpoint: self.endpoint,
                backend: self.backend.as_deref().unwrap_or("-"),
                model: self.glob.as_deref().unwrap_or("-"),
                status: self.status,
                outcome: self.outcome,
                stream: self.stream,
                latency: self.started.elapsed(),
                upstream_first_byte: self.upstream,
                first_token: self.first_token,
                usage: self.usage.map(|(input, output)| Usage {
                    input,
                    output,
                    cached: self.token_details.0,
                    reasoning: self.token_details.1,
                }),
                upstream_error: self.upstream_error.or(match self.upstream_status {
                    Some(s) if s >= 400 => Some(crate::metrics::class(s)),
                    _ => None,
                }),
            });
        }
    }
}

/// The parts of a request body that are its prompt.
#[derive(serde::Deserialize)]
struct Prompt<'a> {
    #[serde(borrow, alias = "messages")]
    input: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow, alias = "instructions")]
    system: Option<&'a serde_json::value::RawValue>,
}

impl AccessLog {
    /// Writes the request's span: GenAI semantic conventions where they
    /// have a name, `llmproxy.*` for the rest. No error message (it can
    /// quote the request) and no content unless opted in.
    fn write_span(&self, trace: &Traced) {
        let (operation, method, route) = match self.endpoint {
            "responses" => ("chat", "POST", "/v1/responses"),
            "chat" => ("chat", "POST", "/v1/chat/completions"),
            "messages" => ("chat", "POST", "/v1/messages"),
            "responses.retrieve" => ("retrieve_response", "GET", "/v1/responses/{id}"),
            "responses.delete" => ("delete_response", "DELETE", "/v1/responses/{id}"),
            "responses.input_items" => {
                ("list_input_items", "GET", "/v1/responses/{id}/input_items")
            }
            other => (other, "GET", "/v1/models"),
        };
        let mut attributes: Vec<(&'static str, Attr)> = Vec::with_capacity(20);
        let mut add = |name: &'static str, value: Attr| attributes.push((name, value));
        add("gen_ai.operation.name", operation.into());
        add("http.request.method", method.into());
        add("http.route", route.into());
        add("http.response.status_code", u64::from(self.status).into());
        add("llmproxy.request_id", self.id.as_str().into());
        add("llmproxy.outcome", self.outcome.into());
        if let Some(model) = &self.model {
            add("gen_ai.request.model", model.as_str().into());
            add("llmproxy.stream", self.stream.into());
        }
        if let Some(provider) = &trace.provider {
            add("gen_ai.provider.name", provider.as_str().into());
        }
        if let Some(model) = &trace.upstream_model
            && self.status < 400
        {
            add("gen_ai.response.model", model.as_str().into());
        }
        if let Some(backend) = &self.backend {
            add("llmproxy.backend", backend.as_str().into());
        }
        if let Some(glob) = &self.glob {
            add("llmproxy.route", glob.as_str().into());
        }
        if let Some((input, output)) = self.usage {
            add("gen_ai.usage.input_tokens", input.into());
            add("gen_ai.usage.output_tokens", output.into());
            let (cached, reasoning) = self.token_details;
            if cached > 0 {
                add("gen_ai.usage.cache_read.input_tokens", cached.into());
            }
            if reasoning > 0 {
                add("llmproxy.usage.reasoning_tokens", reasoning.into());
            }
        }
        if let Some(status) = self.upstream_status {
            add("llmproxy.upstream.status_code", u64::from(status).into());
        }
        if let Some(first) = self.first_token {
            let us = u64::try_from(first.as_micros()).unwrap_or(u64::MAX);
            add("llmproxy.time_to_first_token_us", us.into());
        }
        if self.status >= 400 {
            add("error.type", self.status.to_string().into());
        } else if matches!(self.outcome, "failed" | "error") {
            add("error.type", self.outcome.into());
        }
        if let Some(class) = self.upstream_error {
            add("llmproxy.upstream.error", class.into());
        }
        let name = match &self.model {
            Some(model) => format!("{operation} {model}"),
            None => operation.to_string(),
        };
        let error = self.status >= 500 || self.outcome == "failed";
        trace.recorder.finish(name, attributes, error);
    }
}

/// The class of an upstream failure, for the metrics; `None` for errors
/// that are not the upstream's.
pub(crate) fn upstream_class(error: &Error) -> Option<&'static str> {
    Some(match error {
        Error::Upstream { status, .. } => crate::metrics::class(*status),
        Error::UpstreamUnreachable { .. } => "unreachable",
        Error::UpstreamTimeout { .. } => "timeout",
        Error::BadUpstream { .. } => "bad_response",
        Error::Credentials(_) => "credentials",
        _ => return None,
    })
}

/// Ends in-flight requests early: the server's shutdown deadline.
#[derive(Clone, Debug)]
pub(crate) struct Cutoff(pub(crate) Option<tokio::sync::watch::Receiver<bool>>);

impl Cutoff {
    /// Whether the cutoff has been given.
    pub(crate) fn is_reached(&self) -> bool {
        self.0.as_ref().is_some_and(|rx| *rx.borrow())
    }

    /// Completes once the cutoff is given; never, without a server.
    pub(crate) async fn reached(&self) {
        if let Some(rx) = &self.0 {
            let mut rx = rx.clone();
            if rx.wait_for(|cut| *cut).await.is_ok() {
                return;
            }
        }
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_used_only_when_plain() {
        assert_eq!(AccessLog::start("chat", Some("abc-123")).id, "abc-123");
        let evil = AccessLog::start("chat", Some("a\nb")).id.clone();
        assert!(evil.starts_with("req_"), "{evil}");
        let long = "x".repeat(200);
        assert!(AccessLog::start("chat", Some(&long)).id.starts_with("req_"));
    }
}
