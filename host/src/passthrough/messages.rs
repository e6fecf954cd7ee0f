//! Anthropic Messages passthrough: a Messages client's request to a backend
//! whose upstream is Claude goes on as the client wrote it - cache
//! breakpoints, thinking blocks and their signatures, unknown fields and
//! block types - as the translator adapts it (Claude on Vertex: the model in
//! the URL, `anthropic_version` in the body, the betas Vertex takes); the
//! answer comes back as Claude sent it, its `model` the client's. Token
//! counts go to the upstream's counting endpoint the same way.

use super::{Route, Whole};
use crate::access::{AccessLog, Cutoff};
use crate::backend::Backend;
use crate::egress::messages::{MessagesAnswer, MessagesBody, anthropic_type};
use crate::error::Error;
use crate::media::{Held, MediaFetcher};
use crate::stream::UpstreamEvents;
use crate::translator::{Context, UpstreamRequest};
use futures_util::StreamExt;
use llmproxy_api::messages::stream::{ErrorBody, StreamEvent, message_events};
use llmproxy_api::messages::{Message, Usage};
use std::sync::Arc;
use tokio::time::Instant;

/// What one passthrough call needs to know of the client's request.
pub(crate) struct Call<'a> {
    /// The client's JSON body, as it wrote it.
    pub body: &'a [u8],
    /// The model name the client asked for.
    pub model: &'a str,
    pub upstream_model: &'a str,
    pub stream: bool,
    /// The betas the client asked for (`anthropic-beta`).
    pub betas: &'a [String],
    /// Downloads the files an adapted request asks for.
    pub media: &'a MediaFetcher,
}

impl Call<'_> {
    /// The upstream request: adapted by the translator, or the client's
    /// body with `model` set.
    async fn request(
        &self,
        backend: &Backend,
        route: &Route,
    ) -> Result<(UpstreamRequest, Option<Held>), Error> {
        if route.adapt {
            let extras = serde_json::json!({ "anthropic_beta": self.betas }).to_string();
            let ctx = backend.context(
                self.model,
                self.upstream_model.to_string(),
                self.stream,
                &extras,
            );
            return super::adapted(backend, self.media, ctx, route.api, self.body).await;
        }
        let sent = super::chat::upstream_body(self.body, self.upstream_model, false)?;
        Ok((route.request(sent, self.stream), None))
    }

    /// The translator's context for reading the upstream's answer.
    fn context(&self, backend: &Backend) -> Context {
        backend.context(
            self.model,
            self.upstream_model.to_string(),
            self.stream,
            "{}",
        )
    }
}

/// A Messages request passed through `route` of `backend`.
pub(crate) async fn send(
    backend: Arc<Backend>,
    route: &Route,
    call: Call<'_>,
    (log, cutoff): (&mut AccessLog, Cutoff),
) -> Result<MessagesAnswer, Error> {
    let (request, held) = call.request(&backend, route).await?;
    let translator = backend.translator(call.upstream_model)?.name().to_string();
    let deadline = Instant::now() + backend.upstream.timeouts.total;
    let response = backend
        .upstream
        .send(&translator, request, deadline)
        .await?;
    drop(held);
    let status = response.status().as_u16();
    log.upstream_answered(status);
    let upstream_id = crate::upstream::request_id(response.headers());
    if (200..300).contains(&status)
        && call.stream
        && crate::upstream::is_event_stream(response.headers())
    {
        let relay = Relay {
            events: UpstreamEvents::new(backend, response, (deadline, cutoff)),
            model: call.model.to_string(),
            log: log.take_for_stream(),
            usage: Usage::default(),
            done: false,
        };
        return Ok(MessagesAnswer {
            body: MessagesBody::Stream(relay.events()),
            upstream_id,
        });
    }
    let read = Whole::read(&backend, response, deadline).await?;
    if !read.is_success() {
        return Err(read.error(&backend, &call.context(&backend)).await);
    }
    let mut message: Message =
        serde_json::from_slice(&read.answer.body).map_err(|e| Error::BadUpstream {
            backend: backend.name.clone(),
            detail: format!("the answer is not a Messages `message` ({e})"),
        })?;
    message.model = call.model.to_string();
    log_usage(log, &message.usage);
    if log.wants_completion()
        && let Ok(content) = serde_json::to_string(&message.content)
    {
        log.completion(&content);
    }
    let body = if call.stream {
        // A whole answer to a streaming request: sent as a stream.
        MessagesBody::Stream(futures_util::stream::iter(message_events(&message)).boxed())
    } else {
        MessagesBody::Whole(Box::new(message))
    };
    Ok(MessagesAnswer { body, upstream_id })
}

/// A Messages `count_tokens` request passed through `route`: the input
/// tokens the upstream counted.
pub(crate) async fn count_tokens(
    backend: Arc<Backend>,
    route: &Route,
    call: Call<'_>,
) -> Result<u64, Error> {
    let (request, held) = call.request(&backend, route).await?;
    let state = request.state.clone();
    let translator = backend.translator(call.upstream_model)?.clone();
    let deadline = Instant::now() + backend.upstream.timeouts.total;
    let response = backend
        .upstream
        .send(translator.name(), request, deadline)
        .await?;
    drop(held);
    let read = Whole::read(&backend, response, deadline).await?;
    let ctx = call.context(&backend);
    let answer = if route.adapt {
        // The translator reads its upstream's count (or error) into
        // `{"input_tokens": N}`.
        read.translated(&backend, &ctx, &state).await?
    } else if read.is_success() {
        read.answer.body
    } else {
        return Err(read.error(&backend, &ctx).await);
    };
    #[derive(serde::Deserialize)]
    struct Count {
        input_tokens: u64,
    }
    serde_json::from_slice::<Count>(&answer)
        .map(|c| c.input_tokens)
        .map_err(|e| Error::BadUpstream {
            backend: backend.name.clone(),
            detail: format!("the token count is not {{\"input_tokens\": N}} ({e})"),
        })
}

fn log_usage(log: &mut AccessLog, usage: &Usage) {
    let input =
        usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens;
    log.usage(input, usage.output_tokens);
    log.token_details(usage.cache_read_input_tokens, 0);
}

/// The relay of an upstream Messages stream to the client: each event read
/// once, its `model` the client's, its usage noted for the log.
struct Relay {
    events: UpstreamEvents,
    model: String,
    log: AccessLog,
    /// The usage so far (`message_start`, then `message_delta`).
    usage: Usage,
    done: bool,
}

impl Relay {
    fn events(self) -> futures_util::stream::BoxStream<'static, StreamEvent> {
        futures_util::stream::unfold(self, |mut relay| async move {
            loop {
                if relay.done {
                    return None;
                }
                if let Some(event) = relay.step().await {
                    return Some((event, relay));
                }
            }
        })
        .boxed()
    }

    /// The next event for the client, if the next upstream event makes one.
    async fn step(&mut self) -> Option<StreamEvent> {
        let sse = match self.events.next().await {
            Ok(Some(sse)) => sse,
            Ok(None) => {
                return self.fail(Error::BadUpstream {
                    backend: self.events.backend().name.clone(),
                    detail: "the event stream ended before the message was complete".into(),
                });
            }
            Err(e) => return self.fail(e),
        };
        let data = sse.data.trim();
        if data.is_empty() {
            return None;
        }
        let mut event: StreamEvent = match serde_json::from_str(data) {
            Ok(event) => event,
            Err(e) => {
                return self.fail(Error::BadUpstream {
                    backend: self.events.backend().name.clone(),
                    detail: format!("it sent an event that is not a Messages event ({e})"),
                });
            }
        };
        match &mut event {
            StreamEvent::MessageStart { message } => {
                message.model = self.model.clone();
                self.usage = message.usage.clone();
            }
            StreamEvent::MessageDelta { usage, .. } => {
                // Later counts supersede earlier ones; absent ones stay.
                let u = &mut self.usage;
                u.output_tokens = usage.output_tokens;
                for (mine, theirs) in [
                    (&mut u.input_tokens, usage.input_tokens),
                    (
                        &mut u.cache_creation_input_tokens,
                        usage.cache_creation_input_tokens,
                    ),
                    (
                        &mut u.cache_read_input_tokens,
                        usage.cache_read_input_tokens,
                    ),
                ] {
                    if theirs > 0 {
                        *mine = theirs;
                    }
                }
            }
            StreamEvent::ContentBlockDelta { .. } => self.log.first_token(),
            StreamEvent::MessageStop => {
                self.done = true;
                log_usage(&mut self.log, &self.usage);
                self.log.ended("completed", None);
            }
            StreamEvent::Error { error } => {
                // The upstream's own error event ends the stream.
                self.done = true;
                log_usage(&mut self.log, &self.usage);
                let e = Error::Upstream {
                    status: 502,
                    message: error.message.clone(),
                    error_type: Some(error.kind.clone()),
                    code: None,
                    param: None,
                    retry_after: None,
                };
                self.log.ended("failed", Some(&e));
            }
            _ => {}
        }
        Some(event)
    }

    fn fail(&mut self, err: Error) -> Option<StreamEvent> {
        let err = err.redacted();
        tracing::warn!(backend = %self.events.backend().name, "stream failed: {err}");
        self.done = true;
        log_usage(&mut self.log, &self.usage);
        self.log.ended("failed", Some(&err));
        Some(StreamEvent::Error {
            error: ErrorBody {
                kind: anthropic_type(&err).into(),
                message: err.to_string(),
            },
        })
    }
}
