//! An upstream event stream mapped, event by event, to a canonical event
//! stream that always ends with a terminal event.

use crate::access::Cutoff;
use crate::backend::Backend;
use crate::canonical::StreamGuard;
use crate::error::Error;
use crate::signatures::{Learner, SignatureCache};
use crate::translator::StreamInstance;
use crate::upstream::{SseEvent, SseParser};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::time::Instant;

/// State of one streamed exchange.
struct StreamState {
    backend: Arc<Backend>,
    /// Set for Chat clients: where to remember provider reasoning state.
    learn: Option<Arc<SignatureCache>>,
    /// Reasoning seen since the last call.
    learner: Learner,
    body: BoxStream<'static, reqwest::Result<Bytes>>,
    parser: SseParser,
    translator: StreamInstance,
    guard: StreamGuard,
    /// Upstream events read but not yet translated: one read can bring many,
    /// and each is passed on as soon as it is translated.
    upstream: VecDeque<SseEvent>,
    /// The upstream body has ended (its last events may still be queued).
    upstream_ended: bool,
    pending: VecDeque<Value>,
    deadline: Instant,
    cutoff: Cutoff,
    done: bool,
}

impl StreamState {
    fn fail(&mut self, err: Error) {
        let err = err.redacted();
        tracing::warn!(backend = %self.backend.name, "stream failed: {err}");
        self.pending.extend(self.guard.fail(&err));
        self.done = true;
    }

    fn accept(&mut self, events: Vec<String>) {
        for text in events {
            match self.guard.accept(&text) {
                Ok(out) => {
                    if self.learn.is_some() {
                        self.learn_from(&out);
                    }
                    self.pending.extend(out)
                }
                Err(detail) => {
                    let translator = self.translator.translator().to_string();
                    return self.fail(Error::Translator { translator, detail });
                }
            }
            if self.guard.is_done() {
                // Nothing may follow the terminal event.
                self.done = true;
                return;
            }
        }
    }

    /// Remembers provider reasoning state from finished items.
    fn learn_from(&mut self, events: &[Value]) {
        let Some(signatures) = &self.learn else {
            return;
        };
        for e in events {
            if e.get("type").and_then(Value::as_str) == Some("response.output_item.done")
                && let Some(item) = e.get("item")
            {
                self.learner.item(signatures, item);
            }
        }
    }

    /// Reads the next piece of the upstream body and maps it.
    /// Translates one queued upstream event, or reads more of the upstream
    /// body, or - at its end - finishes the stream.
    async fn step(&mut self) {
        if let Some(sse) = self.upstream.pop_front() {
            // Scrubbed before the translator sees it (see `run`).
            let event = crate::redact::redact(&sse.event);
            let data = crate::redact::redact(&sse.data);
            match self.translator.push(&event, &data).await {
                Ok(out) => self.accept(out),
                Err(e) => self.fail(e),
            }
            return;
        }
        if self.upstream_ended {
            match self.translator.finish().await {
                Ok(out) => self.accept(out),
                Err(e) => return self.fail(e),
            }
            if !self.done {
                let name = self.backend.name.clone();
                self.pending.extend(self.guard.end(&name));
                self.done = true;
            }
            return;
        }
        let idle = self.backend.upstream.timeouts.idle;
        let left = self.deadline.saturating_duration_since(Instant::now());
        let wait = idle.min(left);
        let mut events = Vec::new();
        let next = tokio::select! {
            next = tokio::time::timeout(wait, self.body.next()) => next,
            () = self.cutoff.reached() => return self.fail(Error::ShuttingDown),
        };
        let parsed = match next {
            Err(_) => {
                return self.fail(Error::UpstreamTimeout {
                    backend: self.backend.name.clone(),
                    detail: self
                        .backend
                        .upstream
                        .timeouts
                        .stalled("the event stream", wait, left),
                });
            }
            Ok(Some(Err(e))) => {
                let err = match self.backend.upstream.transport_error(&e) {
                    Error::UpstreamUnreachable { backend, detail } => Error::BadUpstream {
                        backend,
                        detail: format!("the event stream broke off: {detail}"),
                    },
                    other => other,
                };
                return self.fail(err);
            }
            Ok(Some(Ok(chunk))) => self.parser.feed(&chunk, &mut events),
            Ok(None) => {
                self.upstream_ended = true;
                self.parser.finish(&mut events)
            }
        };
        if let Err(detail) = parsed {
            return self.fail(Error::BadUpstream {
                backend: self.backend.name.clone(),
                detail,
            });
        }
        self.upstream.extend(events);
    }
}

/// The canonical events of an upstream SSE stream, mapped by `translator`.
pub(crate) fn canonical_stream(
    backend: Arc<Backend>,
    translator: StreamInstance,
    response: reqwest::Response,
    guard: StreamGuard,
    (deadline, cutoff): (Instant, Cutoff),
    learn: Option<Arc<SignatureCache>>,
) -> BoxStream<'static, Value> {
    let state = StreamState {
        backend,
        learn,
        learner: Learner::default(),
        body: response.bytes_stream().boxed(),
        parser: SseParser::default(),
        translator,
        guard,
        upstream: VecDeque::new(),
        upstream_ended: false,
        pending: VecDeque::new(),
        deadline,
        cutoff,
        done: false,
    };
    futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(event) = st.pending.pop_front() {
                return Some((event, st));
            }
            if st.done {
                return None;
            }
            st.step().await;
        }
    })
    .boxed()
}
