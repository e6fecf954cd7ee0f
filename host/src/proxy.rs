//! The proxy: backends, routing, and one request's way through a translator
//! and an upstream, producing canonical Responses output.

use crate::access::{AccessLog, Cutoff};
use crate::canonical::{self, RequestHead, ResponseMeta, StreamGuard};
use crate::config::{Auth, BackendConfig, Config, ConfigError, ResponsesConfig, StateKeeper};
use crate::credentials::{Credentials, Secret, gcp};
use crate::error::Error;
use crate::media::MediaFetcher;
use crate::routing::Routes;
use crate::signatures::{Learner, SignatureCache};
use crate::store::Store;
use crate::translator::{
    self, Context, Limits, Requested, Runtime, StreamInstance, Translator, UpstreamResponse, budget,
};
use crate::upstream::{self, SseEvent, SseParser, Upstream};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// A configured, running proxy. Cheap to clone; clones share everything.
#[derive(Clone, Debug)]
pub struct Proxy {
    pub(crate) inner: Arc<Inner>,
    /// Set by a server at its shutdown deadline.
    pub(crate) cutoff: Cutoff,
}

impl Proxy {
    /// This proxy, ending its in-flight requests when `rx` turns true.
    #[cfg(feature = "server")]
    pub(crate) fn with_cutoff(mut self, rx: tokio::sync::watch::Receiver<bool>) -> Proxy {
        self.cutoff = Cutoff(Some(rx));
        self
    }
}

#[derive(Debug)]
// The HTTP side reads the server settings.
#[cfg_attr(not(feature = "server"), allow(dead_code))]
pub(crate) struct Inner {
    pub backends: Vec<Arc<Backend>>,
    pub routes: Routes,
    pub max_body_bytes: usize,
    pub max_body_mib: u32,
    /// How long a request body may take to arrive.
    pub body_timeout: Duration,
    pub api_key: Option<Secret>,
    /// Shared by the configurations a reload replaces.
    pub signatures: Arc<SignatureCache>,
    /// Stored responses; shared by the configurations a reload replaces.
    pub store: Arc<Store>,
    /// The settings `store` was opened with.
    responses: ResponsesConfig,
    media: MediaFetcher,
    /// Receives every canonical response and event (`llmproxy translate`).
    pub tap: Option<Tap>,
    _runtime: Runtime,
}

/// Where a dry run collects the canonical output.
pub(crate) type Tap = Arc<std::sync::Mutex<Vec<Value>>>;

/// The API a client spoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientApi<'a> {
    /// The Responses API: the canonical format itself.
    Responses,
    /// Chat Completions. `extras` is the translator's `context.extras`:
    /// `{"chat": <the client's request>}`, for what the canonical request
    /// cannot carry.
    Chat { extras: &'a str },
}

impl<'a> ClientApi<'a> {
    fn is_chat(self) -> bool {
        matches!(self, ClientApi::Chat { .. })
    }

    /// The translator's `context.extras` (`{}` for Responses clients).
    fn extras(self) -> &'a str {
        match self {
            ClientApi::Responses => "{}",
            ClientApi::Chat { extras } => extras,
        }
    }
}

/// One configured backend.
#[derive(Debug)]
pub(crate) struct Backend {
    pub name: String,
    pub models: Vec<String>,
    /// The translators of the backend's kind, chosen by upstream model name
    /// (first match). `None`: a translator this build does not have.
    translators: Vec<(globset::GlobMatcher, String, Option<Arc<Translator>>)>,
    pub upstream: Arc<Upstream>,
    /// Who keeps its Responses conversations.
    pub state: StateKeeper,
    settings: String,
    model_map: BTreeMap<String, String>,
    /// What `GET /v1/models` lists for the globs.
    pub catalog: crate::catalog::Catalog,
    /// Its items can be referenced by id (see `BackendConfig::mints_item_ids`).
    pub mints_item_ids: bool,
}

impl Backend {
    fn upstream_model(&self, model: &str) -> String {
        self.model_map
            .get(model)
            .cloned()
            .unwrap_or_else(|| model.to_string())
    }

    /// The translator for an upstream model.
    fn translator(&self, upstream_model: &str) -> Result<&Arc<Translator>, Error> {
        match self
            .translators
            .iter()
            .find(|(glob, _, _)| glob.is_match(upstream_model))
        {
            Some((_, _, Some(t))) => Ok(t),
            Some((_, kind, None)) => Err(Error::Unsupported {
                message: format!(
                    "model {upstream_model:?} needs the {kind} translator, which this build of llmproxy does not include"
                ),
                param: Some("model".into()),
                code: Some("model_not_supported".into()),
            }),
            None => Err(Error::ModelNotFound(upstream_model.to_string())),
        }
    }

    fn context(
        &self,
        model: &str,
        upstream_model: String,
        streaming: bool,
        extras: &str,
    ) -> Context {
        Context {
            backend: self.name.clone(),
            model: model.to_string(),
            upstream_model,
            streaming,
            settings: self.settings.clone(),
            extras: extras.to_string(),
            media: Vec::new(),
        }
    }

    /// Fills in the upstream's `Retry-After` when the translator gave none.
    fn with_retry_after(mut err: Error, upstream_retry_after: Option<u32>) -> Error {
        if let Error::Upstream { retry_after, .. } = &mut err {
            *retry_after = retry_after.or(upstream_retry_after);
        }
        err
    }
}

impl Proxy {
    /// Builds a proxy from a checked config: loads the translators the
    /// backends use, asks each to validate its backend's settings, and reads
    /// the credentials.
    pub async fn new(config: Config) -> Result<Proxy, ConfigError> {
        Self::build(config, None, None).await
    }

    /// [`Proxy::new`], handing every canonical response and event to `tap`.
    /// A reload passes the proxy it replaces (`previous`), whose remembered
    /// reasoning state and response store carry over.
    pub(crate) async fn build(
        config: Config,
        tap: Option<Tap>,
        previous: Option<Arc<Inner>>,
    ) -> Result<Proxy, ConfigError> {
        config.check()?;
        let (signatures, store, responses) = match &previous {
            Some(p) => {
                if p.responses != config.responses {
                    tracing::warn!(
                        "the [responses] settings changed; they take effect when llmproxy restarts"
                    );
                }
                (p.signatures.clone(), p.store.clone(), p.responses.clone())
            }
            None => {
                let store = Arc::new(Store::open(&config.responses).map_err(ConfigError::new)?);
                tracing::info!("stored responses: {}", store.describe());
                Store::sweep_regularly(&store);
                (Arc::default(), store, config.responses.clone())
            }
        };
        if let Some(key) = &config.server.api_key
            && crate::redact::too_short(key.expose())
        {
            tracing::warn!(
                "the client key (LLMPROXY_API_KEY) is shorter than {} characters: it is not redacted from messages; use a long random key",
                crate::redact::MIN_LEN
            );
        }
        let defaults = &config.translators;
        // The pool's slots fit the largest memory cap any backend has.
        let pool_mib = config
            .backends
            .iter()
            .map(|b| b.limits(defaults).0)
            .chain([defaults.memory_limit_mib])
            .max()
            .unwrap_or(defaults.memory_limit_mib);
        let runtime = Runtime::new(defaults.max_instances, pool_mib as usize * 1024 * 1024)
            .map_err(|e| ConfigError::new(e.to_string()))?;
        let mut loaded: HashMap<(String, u32, u64), Arc<Translator>> = HashMap::new();
        let mut google: HashMap<Option<std::path::PathBuf>, Arc<gcp::GcpAuth>> = HashMap::new();
        let mut backends = Vec::new();
        for cfg in &config.backends {
            let at = format!("backend {:?}", cfg.name);
            let (memory_mib, timeout_ms) = cfg.limits(defaults);
            let limits = Limits {
                memory_bytes: memory_mib as usize * 1024 * 1024,
                call_timeout: Duration::from_millis(timeout_ms),
            };
            let parts: Vec<(&str, String)> = match &cfg.translator {
                Some(file) => vec![("*", file.path.display().to_string())],
                None => crate::kinds::kind_translators(&cfg.kind)
                    .ok_or_else(|| {
                        ConfigError::new(format!(
                            "{at}: unknown kind {:?}; available kinds: {}",
                            cfg.kind,
                            crate::kinds::kinds().join(", ")
                        ))
                    })?
                    .into_iter()
                    .map(|(glob, kind)| (glob, kind.to_string()))
                    .collect(),
            };
            let settings = cfg.settings_json();
            let mut translators = Vec::new();
            for (glob, name) in parts {
                let matcher = globset::Glob::new(glob)
                    .map_err(|e| ConfigError::new(e.to_string()))?
                    .compile_matcher();
                let bundled = translator::bundled_kinds().any(|k| k == name);
                if cfg.translator.is_none() && !bundled {
                    // A part of a kind this build does not include.
                    translators.push((matcher, name, None));
                    continue;
                }
                let key = (name.clone(), memory_mib, timeout_ms);
                let t = match loaded.get(&key) {
                    Some(t) => t.clone(),
                    None => {
                        let t = match &cfg.translator {
                            Some(file) => {
                                runtime.load_file(&file.path, file.sha256.as_deref(), limits)
                            }
                            None => runtime.load_bundled(&name, limits),
                        }
                        .map_err(|e| ConfigError::new(format!("{at}: {e}")))?;
                        let t = Arc::new(t);
                        loaded.insert(key, t.clone());
                        t
                    }
                };
                t.validate_settings(&settings).await.map_err(|e| match e {
                    Error::InvalidRequest { message, .. } => ConfigError::new(format!(
                        "{at}: settings rejected by the {name} translator: {message}"
                    )),
                    other => ConfigError::new(format!("{at}: {other}")),
                })?;
                translators.push((matcher, name, Some(t)));
            }
            let credentials = credentials(cfg, &mut google).await?;
            let upstream = Arc::new(Upstream::new(cfg, credentials)?);
            backends.push(Arc::new(Backend {
                name: cfg.name.clone(),
                models: cfg.models.clone(),
                translators,
                upstream,
                state: cfg.state(),
                settings,
                model_map: cfg.model_map.clone(),
                catalog: crate::catalog::Catalog::new(cfg),
                mints_item_ids: cfg.mints_item_ids(),
            }));
        }
        let media = MediaFetcher::new(
            &config.media,
            upstream::tls_config().map_err(|e| ConfigError::new(format!("media: {e}")))?,
        )
        .map_err(|e| ConfigError::new(e.to_string()))?;
        let routes = Routes::new(config.backends.iter().map(|b| b.models.as_slice()))
            .map_err(|e| ConfigError::new(format!("invalid model glob: {e}")))?;
        Ok(Proxy {
            cutoff: Cutoff(None),
            inner: Arc::new(Inner {
                backends,
                routes,
                max_body_bytes: config.server.max_body_mib as usize * 1024 * 1024,
                max_body_mib: config.server.max_body_mib,
                body_timeout: Duration::from_secs_f64(config.server.body_timeout_secs),
                api_key: config.server.api_key.clone(),
                signatures,
                store,
                responses,
                media,
                tap,
                _runtime: runtime,
            }),
        })
    }

    /// The backend serving `model`, or a 404 naming it.
    pub(crate) fn route(&self, model: &str) -> Result<Arc<Backend>, Error> {
        self.inner
            .routes
            .route(model)
            .and_then(|i| self.inner.backends.get(i).cloned())
            .ok_or_else(|| Error::ModelNotFound(model.to_string()))
    }

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
        let result = tokio::select! {
            result = self.run(body, client, log) => result,
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
                    events: events.inspect(move |e| record(&tap, e)).boxed(),
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
        log.routed(&model, &backend.name, streaming);
        let plan = self
            .plan(body, &mut head, &backend, !client.is_chat())
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
        // Chat clients cannot carry thought signatures; the proxy keeps them.
        let learn = client.is_chat().then(|| self.inner.signatures.clone());
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
        let upstream_id = response
            .headers()
            .get("x-request-id")
            .or_else(|| response.headers().get("request-id"))
            .and_then(|v| v.to_str().ok())
            .map(|id| crate::redact::redact(id).into_owned());
        let headers = upstream::header_pairs(response.headers());
        let retry_after = upstream::retry_after(response.headers());
        let is_sse = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/event-stream"));
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
                Some(record) => self.keep_stream(record, events),
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
                    Some(record) => self.keep_stream(record, events),
                    None => events,
                },
                upstream_id,
            });
        }
        if let Some(record) = &keep {
            self.keep(record, &mut object).await;
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
fn fits(
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
        events: BoxStream<'static, Value>,
        upstream_id: Option<String>,
    },
}

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
fn canonical_stream(
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

/// The credentials of a backend; Google credentials are discovered once per
/// credentials file and shared.
async fn credentials(
    cfg: &BackendConfig,
    google: &mut HashMap<Option<std::path::PathBuf>, Arc<gcp::GcpAuth>>,
) -> Result<Credentials, ConfigError> {
    Ok(match cfg.resolve_auth()? {
        Auth::None => Credentials::None,
        Auth::Header { name, value } => {
            if crate::redact::too_short(value.expose()) {
                tracing::warn!(
                    backend = %cfg.name,
                    "the upstream key is shorter than {} characters: it cannot be told apart from ordinary text, so it is not redacted from messages; use a longer key",
                    crate::redact::MIN_LEN
                );
            }
            Credentials::Header { name, value }
        }
        Auth::Gcp { file } => {
            if let Some(auth) = google.get(&file) {
                return Ok(Credentials::Gcp(auth.clone()));
            }
            let tls = upstream::tls_config().map_err(ConfigError::new)?;
            let http = reqwest::Client::builder()
                .tls_backend_preconfigured(tls)
                // The token request carries a signed assertion or a refresh
                // token: it goes nowhere but the token endpoint.
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .build()
                .map_err(|e| ConfigError::new(format!("cannot build the HTTP client: {e}")))?;
            let env = gcp::AdcEnv::from_process();
            let auth = gcp::GcpAuth::discover(file.as_deref(), &env, http)
                .await
                .map_err(|e| ConfigError::new(format!("backend {:?}: {e}", cfg.name)))?;
            tracing::info!(backend = %cfg.name, "Google credentials: {}", auth.origin());
            let auth = Arc::new(auth);
            google.insert(file, auth.clone());
            Credentials::Gcp(auth)
        }
    })
}
