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
use llmproxy_api::events::ResponseEvent;
use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::time::Instant;

/// The events of an upstream's SSE body, in order, read within the
/// backend's idle timeout and the exchange's deadline, and ended early by
/// the server's shutdown cutoff. Event names and data are scrubbed of
/// secrets before anything reads them.
pub(crate) struct UpstreamEvents {
    backend: Arc<Backend>,
    body: BoxStream<'static, reqwest::Result<Bytes>>,
    parser: SseParser,
    /// Events read but not yet taken: one read can bring many, and each is
    /// passed on as soon as it is handled.
    queue: VecDeque<SseEvent>,
    /// The upstream body has ended (its last events may still be queued).
    ended: bool,
    deadline: Instant,
    cutoff: Cutoff,
}

impl UpstreamEvents {
    pub(crate) fn new(
        backend: Arc<Backend>,
        response: reqwest::Response,
        (deadline, cutoff): (Instant, Cutoff),
    ) -> Self {
        UpstreamEvents {
            backend,
            body: response.bytes_stream().boxed(),
            parser: SseParser::default(),
            queue: VecDeque::new(),
            ended: false,
            deadline,
            cutoff,
        }
    }

    /// The backend the events come from.
    pub(crate) fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The next event; `None` once the body has ended.
    pub(crate) async fn next(&mut self) -> Result<Option<SseEvent>, Error> {
        loop {
            if let Some(mut sse) = self.queue.pop_front() {
                // Scrubbed before a translator or a client sees it.
                if let Cow::Owned(clean) = crate::redact::redact(&sse.event) {
                    sse.event = clean;
                }
                if let Cow::Owned(clean) = crate::redact::redact(&sse.data) {
                    sse.data = clean;
                }
                return Ok(Some(sse));
            }
            if self.ended {
                return Ok(None);
            }
            self.read().await?;
        }
    }

    /// Reads the next piece of the body into the queue.
    async fn read(&mut self) -> Result<(), Error> {
        let timeouts = &self.backend.upstream.timeouts;
        let left = self.deadline.saturating_duration_since(Instant::now());
        let wait = timeouts.idle.min(left);
        let next = tokio::select! {
            next = tokio::time::timeout(wait, self.body.next()) => next,
            () = self.cutoff.reached() => return Err(Error::ShuttingDown),
        };
        let mut events = Vec::new();
        let parsed = match next {
            Err(_) => {
                return Err(Error::UpstreamTimeout {
                    backend: self.backend.name.clone(),
                    detail: timeouts.stalled("the event stream", wait, left),
                });
            }
            Ok(Some(Err(e))) => {
                return Err(match self.backend.upstream.transport_error(&e) {
                    Error::UpstreamUnreachable { backend, detail } => Error::BadUpstream {
                        backend,
                        detail: format!("the event stream broke off: {detail}"),
                    },
                    other => other,
                });
            }
            Ok(Some(Ok(chunk))) => self.parser.feed(&chunk, &mut events),
            Ok(None) => {
                self.ended = true;
                self.parser.finish(&mut events)
            }
        };
        parsed.map_err(|detail| Error::BadUpstream {
            backend: self.backend.name.clone(),
            detail,
        })?;
        self.queue.extend(events);
        Ok(())
    }
}

/// State of one streamed exchange.
struct StreamState {
    upstream: UpstreamEvents,
    /// Set for Chat clients: where to remember provider reasoning state.
    learn: Option<Arc<SignatureCache>>,
    /// Reasoning seen since the last call.
    learner: Learner,
    /// `None` once closed, at the stream's end.
    translator: Option<StreamInstance>,
    guard: StreamGuard,
    pending: VecDeque<ResponseEvent>,
    done: bool,
}

impl StreamState {
    fn fail(&mut self, err: Error) {
        let err = err.redacted();
        tracing::warn!(backend = %self.upstream.backend().name, "stream failed: {err}");
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
                    let translator = self
                        .translator
                        .as_ref()
                        .map(|t| t.translator().to_string())
                        .unwrap_or_default();
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
    fn learn_from(&mut self, events: &[ResponseEvent]) {
        let Some(signatures) = &self.learn else {
            return;
        };
        for e in events {
            if let ResponseEvent::OutputItemDone(done) = e
                && let Ok(item) = serde_json::to_value(&done.item)
            {
                self.learner.item(signatures, &item);
            }
        }
    }

    /// Translates the next upstream event or - at the body's end - finishes
    /// the stream.
    async fn step(&mut self) {
        let Some(translator) = &mut self.translator else {
            self.done = true;
            return;
        };
        match self.upstream.next().await {
            Ok(Some(sse)) => match translator.push(&sse.event, &sse.data).await {
                Ok(out) => self.accept(out),
                Err(e) => self.fail(e),
            },
            Ok(None) => {
                match translator.finish().await {
                    Ok(out) => self.accept(out),
                    Err(e) => return self.fail(e),
                }
                if !self.done {
                    let name = self.upstream.backend().name.clone();
                    self.pending.extend(self.guard.end(&name));
                    self.done = true;
                }
            }
            Err(e) => self.fail(e),
        }
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
) -> BoxStream<'static, ResponseEvent> {
    let state = StreamState {
        upstream: UpstreamEvents::new(backend, response, (deadline, cutoff)),
        learn,
        learner: Learner::default(),
        translator: Some(translator),
        guard,
        pending: VecDeque::new(),
        done: false,
    };
    futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if st.done
                && let Some(translator) = st.translator.take()
            {
                // The stream is over: the instance may serve another request.
                translator.close().await;
            }
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
