//! One exchange: a canonical request through its backend's translator and
//! upstream, to a complete canonical response or the start of a canonical
//! event stream.

use crate::access::AccessLog;
use crate::backend::Backend;
use crate::canonical::{self, ResponseMeta, StreamGuard};
use crate::error::Error;
use crate::ingress::RequestHead;
use crate::proxy::{ClientApi, Proxy, Tap};
use crate::stream::canonical_stream;
use crate::translator::{Requested, Translator, UpstreamResponse, budget};
use crate::upstream;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use llmproxy_api::events::ResponseEvent;
use serde_json::{Map, Value};
use tokio::time::Instant;

impl Proxy {
    /// Runs one canonical Responses request (JSON bytes) to completion or to
    /// the start of its stream, for a client that spoke `client`.
    ///
    /// `log` learns what happened; a stream takes it along and writes it
    /// when the stream ends.
    pub(crate) async fn execute(
        &self,
        body: Bytes,
        client: ClientApi<'_>,
        log: &mut AccessLog,
    ) -> Result<Outcome, Error> {
        log.watch(self.cutoff.clone());
        let trace = log.trace();
        let result = tokio::select! {
            result = crate::telemetry::scope(trace, self.run(body, client, log)) => result,
            () = self.cutoff.reached() => Err(Error::ShuttingDown),
        };
        let outcome = match result {
            Ok(Outcome::Complete {
                response,
                upstream_id,
            }) => {
                log.response(&response);
                Outcome::Complete {
                    response,
                    upstream_id,
                }
            }
            Ok(Outcome::Stream {
                events,
                upstream_id,
            }) => Outcome::Stream {
                events: log.follow(events),
                upstream_id,
            },
            Err(e) => {
                let e = e.redacted();
                log.failed(&e);
                return Err(e);
            }
        };
        let Some(tap) = &self.inner.tap else {
            return Ok(outcome);
        };
        let record = |tap: &Tap, value: &Value| {
            if let Ok(mut seen) = tap.lock() {
                seen.push(value.clone());
            }
        };
        Ok(match outcome {
            Outcome::Complete {
                response,
                upstream_id,
            } => {
                record(tap, &Value::Object(response.clone()));
                Outcome::Complete {
                    response,
                    upstream_id,
                }
            }
            Outcome::Stream {
                events,
                upstream_id,
            } => {
                let tap = tap.clone();
                Outcome::Stream {
                    events: events
                        .inspect(move |e| {
                            if let Ok(v) = serde_json::to_value(e) {
                                record(&tap, &v);
                            }
                        })
                        .boxed(),
                    upstream_id,
                }
            }
        })
    }

    async fn run(
        &self,
        body: Bytes,
        client: ClientApi<'_>,
        log: &mut AccessLog,
    ) -> Result<Outcome, Error> {
        let extras = client.extras();
        let mut head = RequestHead::parse(&body)?;
        let model = head.model.clone().unwrap_or_default();
        let streaming = head.streaming();
        let backend = self.route(&model)?;
        log.routed(&model, &backend, self.glob(&model), streaming);
        log.prompt(&body);
        let plan = self
            .inner
            .conversations
            .plan(body, &mut head, &backend, !client.resends_history())
            .await?;
        let body = plan.body;
        let upstream_model = backend.upstream_model(&model);
        backend.upstream.check_model(&upstream_model)?;
        let translator = backend.translator(&upstream_model)?.clone();
        let need = fits(
            &backend,
            &translator,
            &body,
            extras,
            plan.continued.as_deref(),
        )?;
        let mut ctx = backend.context(&model, upstream_model, streaming, extras);
        // Chat clients cannot carry thought signatures (Messages clients may
        // drop them); the proxy keeps them.
        let learn = client
            .resends_history()
            .then(|| self.inner.signatures.clone());
        let deadline = Instant::now() + backend.upstream.timeouts.total;
        let mut instance = translator.instantiate().await?;
        // Downloaded files count against media.max_inflight_mib until the
        // upstream request that carries them has been sent.
        let mut held = None;
        let mut request = match instance.request(&ctx, &body).await? {
            Requested::Ready(request) => request,
            Requested::NeedsMedia(urls) => {
                let room = budget::media_room(translator.memory_bytes(), need);
                let (media, files) = self
                    .inner
                    .media
                    .fetch_all(&urls, room, &backend.name)
                    .await?;
                held = Some(files);
                ctx.media = media;
                let requested = instance.request(&ctx, &body).await;
                // The files are in the upstream request now.
                ctx.media = Vec::new();
                match requested? {
                    Requested::Ready(request) => request,
                    Requested::NeedsMedia(urls) => {
                        return Err(Error::Translator {
                            translator: translator.name().to_string(),
                            detail: format!(
                                "asked for media again after the host fetched it ({})",
                                urls.join(", ")
                            ),
                        });
                    }
                }
            }
        };
        let state = std::mem::take(&mut request.state);
        let response = backend
            .upstream
            .send(translator.name(), request, deadline)
            .await?;
        drop(held);
        let status = response.status().as_u16();
        log.upstream_answered(status);
        let upstream_id = upstream::request_id(response.headers());
        let headers = upstream::header_pairs(response.headers());
        let retry_after = upstream::retry_after(response.headers());
        let is_sse = upstream::is_event_stream(response.headers());
        let mut meta = ResponseMeta::new(&model);
        if plan.mint_id {
            // Upstream ids are not unique enough to key stored responses.
            meta.id = crate::ids::new_id("resp");
            meta.stored = true;
        }
        let echo = head;
        let keep = plan.keep;

        if streaming && is_sse && (200..300).contains(&status) {
            let stream = instance.into_stream(&ctx, &state, status, &headers).await?;
            let events = canonical_stream(
                backend,
                stream,
                response,
                StreamGuard::new(meta, echo),
                (deadline, self.cutoff.clone()),
                learn,
            );
            let events = match keep {
                Some(record) => self.inner.conversations.keep_stream(record, events),
                None => events,
            };
            return Ok(Outcome::Stream {
                events,
                upstream_id,
            });
        }

        let body = backend.upstream.read_body(response, deadline).await?;
        // What the upstream quotes back is scrubbed before the translator
        // sees it - the one place upstream text enters a translator, whose
        // output then holds no secret (a scrub of the output could be
        // dodged anyway: a custom translator may re-encode what it got).
        let upstream_response = UpstreamResponse {
            status,
            headers,
            body: crate::redact::redact_bytes(body.to_vec()),
        };
        let out = instance
            .response(&ctx, &state, &upstream_response)
            .await
            .map_err(|e| Backend::with_retry_after(e, retry_after))?;
        let mut object = match serde_json::from_slice::<Value>(&out) {
            Ok(Value::Object(o)) => o,
            _ => {
                return Err(Error::Translator {
                    translator: translator.name().to_string(),
                    detail: "returned a response that is not a JSON object".into(),
                });
            }
        };
        if let (Some(signatures), Some(Value::Array(output))) = (&learn, object.get("output")) {
            signatures.learn(output);
        }
        canonical::complete_response(&mut object, &mut meta, &echo, "completed");
        if streaming {
            // The upstream answered a streaming request in one piece:
            // replay it as a canonical stream.
            let events = canonical::events_from_response(&object);
            let mut guard = StreamGuard::new(meta, echo);
            let mut out = Vec::new();
            for event in &events {
                match guard.accept(event) {
                    Ok(evs) => out.extend(evs),
                    Err(detail) => {
                        out.extend(guard.fail(&Error::Internal(detail)));
                        break;
                    }
                }
            }
            out.extend(guard.end(&backend.name));
            let events = futures_util::stream::iter(out).boxed();
            return Ok(Outcome::Stream {
                events: match keep {
                    Some(record) => self.inner.conversations.keep_stream(record, events),
                    None => events,
                },
                upstream_id,
            });
        }
        if let Some(record) = &keep {
            self.inner.conversations.keep(record, &mut object).await;
        }
        Ok(Outcome::Complete {
            response: object,
            upstream_id,
        })
    }
}

/// Whether `translator` can map `body` (with `extras`) in its memory
/// limit, by [`budget`]'s estimate: the memory it needs, or a 413 naming
/// the limit (a 400 when a kept conversation, `continued`, grew too large).
pub(crate) fn fits(
    backend: &Backend,
    translator: &Translator,
    body: &[u8],
    extras: &str,
    continued: Option<&str>,
) -> Result<usize, Error> {
    let size = budget::Size::of(body);
    let need = size.need(budget::Size::of(extras.as_bytes()));
    let memory = translator.memory_bytes();
    if need <= memory {
        return Ok(need);
    }
    let limit = format!(
        "the translator of backend {:?} can map about {} of text, or fewer parts, in its {} (translators.memory_limit_mib)",
        backend.name,
        budget::mib(budget::largest_body(memory)),
        budget::mib(memory),
    );
    Err(match continued {
        Some(previous) => Error::InvalidRequest {
            message: format!(
                "The conversation that previous_response_id '{previous}' continues has grown too large to continue here: with this request it is {} in {} JSON values, and {limit}. Start a new conversation, or send a shorter one in `input`.",
                budget::mib(size.bytes),
                size.values
            ),
            param: Some("previous_response_id".into()),
            code: Some("conversation_too_large".into()),
        },
        None => Error::TooLargeToTranslate(format!(
            "The request is too large to translate: it is {} in {} JSON values, and {limit}. Send less at once, or raise the limit.",
            budget::mib(size.bytes),
            size.values
        )),
    })
}

/// What a canonical request produced.
pub(crate) enum Outcome {
    /// A complete `ResponseResource`.
    Complete {
        response: Map<String, Value>,
        upstream_id: Option<String>,
    },
    /// A canonical event stream that always ends with a terminal event.
    Stream {
        events: BoxStream<'static, ResponseEvent>,
        upstream_id: Option<String>,
    },
}
