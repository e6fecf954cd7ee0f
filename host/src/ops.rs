//! The operations: what the proxy's endpoints do, as typed methods - create
//! and stream responses and chat completions; retrieve, delete and list the
//! input items of stored responses (kept here, or by a stateful upstream);
//! list models. The HTTP layer (`server`) and programs embedding the proxy
//! both call these.

use crate::access::AccessLog;
use crate::backend::Backend;
use crate::config::StateKeeper;
use crate::conversation::{ListQuery, Record, page, response_not_found};
use crate::egress::chat::{self as chat_egress, ChatAnswer, ChatBody, Frame};
use crate::egress::messages::{self as messages_egress, MessagesAnswer, MessagesBody};
use crate::error::Error;
use crate::exchange::Outcome;
use crate::ingress::{self, chat::ChatHead};
use crate::passthrough;
use crate::proxy::{ClientApi, Proxy};
use crate::translator::Api;
use crate::translator::UpstreamRequest;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use http::StatusCode;
use llmproxy_api::chat::{ChatChunk, ChatCompletion, ChatRequest};
use llmproxy_api::events::ResponseEvent;
use llmproxy_api::messages::stream::StreamEvent;
use llmproxy_api::messages::{Message, MessagesRequest};
use llmproxy_api::responses::{CreateResponse, Response};
use serde_json::{Value, json};
use std::sync::Arc;

/// The events of a streamed response, in order; the last one is always
/// terminal (`response.completed`, `response.incomplete` or
/// `response.failed` - a failure midway is an [`ResponseEvent::Error`]
/// followed by `response.failed`).
pub type ResponseStream = BoxStream<'static, ResponseEvent>;

/// The events of a streamed Messages answer, from `message_start` to
/// `message_stop`, or to an `error` event when it failed midway.
pub type MessageStream = BoxStream<'static, StreamEvent>;

/// The input tokens of a Messages request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenCount {
    /// The number of input tokens.
    pub input_tokens: u64,
    /// Whether the count is the proxy's estimate (the upstream has no
    /// counting endpoint) rather than the upstream's own count.
    pub estimated: bool,
}

/// The chunks of a streamed chat completion. A failure midway ends the
/// stream with an `Err`.
pub type ChatCompletionStream = BoxStream<'static, Result<ChatChunk, Error>>;

impl Proxy {
    /// Runs a Responses request to completion: `POST /v1/responses` without
    /// HTTP. `request.stream` is ignored.
    ///
    /// A response the upstream ended early or failed is returned as it is,
    /// with `status` `incomplete` or `failed`; errors before the answer (a
    /// bad request, an unknown model, an upstream error status) are `Err`.
    pub async fn create_response(&self, mut request: CreateResponse) -> Result<Response, Error> {
        request.stream = Some(false);
        let mut log = self.access_log("responses", None, None);
        match self
            .execute(to_bytes(&request)?, ClientApi::Responses, &mut log)
            .await
            .inspect_err(|e| log.failed(e))?
        {
            Outcome::Complete { response, .. } => typed(Value::Object(response)),
            Outcome::Stream { mut events, .. } => {
                // Not expected without streaming; take the terminal event.
                let mut last = None;
                while let Some(event) = events.next().await {
                    last = Some(event);
                }
                match last.as_ref().and_then(ResponseEvent::terminal) {
                    Some(response) => Ok(response.clone()),
                    None => Err(Error::Internal(
                        "the stream ended without a response".into(),
                    )),
                }
            }
        }
    }

    /// Runs a Responses request with streaming: the canonical events as
    /// typed values. `request.stream` is ignored.
    pub async fn stream_response(
        &self,
        mut request: CreateResponse,
    ) -> Result<ResponseStream, Error> {
        request.stream = Some(true);
        let mut log = self.access_log("responses", None, None);
        let events = match self
            .execute(to_bytes(&request)?, ClientApi::Responses, &mut log)
            .await
            .inspect_err(|e| log.failed(e))?
        {
            Outcome::Stream { events, .. } => events,
            Outcome::Complete { .. } => return Err(not_streamed()),
        };
        Ok(events)
    }

    /// Runs a Chat Completions request to completion:
    /// `POST /v1/chat/completions` without HTTP. `request.stream` is ignored.
    pub async fn create_chat_completion(
        &self,
        mut request: ChatRequest,
    ) -> Result<ChatCompletion, Error> {
        request.stream = None;
        request.stream_options = None;
        let mut log = self.access_log("chat", None, None);
        let answer = self
            .chat(to_bytes(&request)?, &ChatHead::of(&request), &mut log)
            .await
            .inspect_err(|e| log.failed(e))?;
        match answer.body {
            ChatBody::Whole(body) => typed_bytes(&body),
            ChatBody::Stream(_) => Err(streamed_unasked()),
        }
    }

    /// Runs a Chat Completions request with streaming: typed chunks, the
    /// last one with `usage` when `stream_options.include_usage` is set.
    /// `request.stream` is ignored.
    pub async fn stream_chat_completion(
        &self,
        mut request: ChatRequest,
    ) -> Result<ChatCompletionStream, Error> {
        request.stream = Some(true);
        let mut log = self.access_log("chat", None, None);
        let answer = self
            .chat(to_bytes(&request)?, &ChatHead::of(&request), &mut log)
            .await
            .inspect_err(|e| log.failed(e))?;
        let ChatBody::Stream(frames) = answer.body else {
            return Err(not_streamed());
        };
        Ok(frames
            .filter_map(|frame| async move {
                match frame {
                    Frame::Chunk(chunk) => Some(typed_bytes(&chunk)),
                    Frame::Error(error) => Some(Err(chat_egress::stream_error(&error))),
                    Frame::Done => None,
                }
            })
            .boxed())
    }

    /// Runs an Anthropic Messages request to completion: `POST /v1/messages`
    /// without HTTP. `request.stream` is ignored.
    pub async fn create_message(&self, mut request: MessagesRequest) -> Result<Message, Error> {
        request.stream = Some(false);
        let mut log = self.access_log("messages", None, None);
        let answer = self
            .messages(to_bytes(&request)?, &request, &[], &mut log)
            .await
            .inspect_err(|e| log.failed(e))?;
        match answer.body {
            MessagesBody::Whole(message) => Ok(*message),
            MessagesBody::Stream(_) => Err(streamed_unasked()),
        }
    }

    /// Runs an Anthropic Messages request with streaming: the Messages
    /// events, from `message_start` to `message_stop` (or an `error` event
    /// when the answer failed midway). `request.stream` is ignored.
    pub async fn stream_message(
        &self,
        mut request: MessagesRequest,
    ) -> Result<MessageStream, Error> {
        request.stream = Some(true);
        let mut log = self.access_log("messages", None, None);
        let answer = self
            .messages(to_bytes(&request)?, &request, &[], &mut log)
            .await
            .inspect_err(|e| log.failed(e))?;
        match answer.body {
            MessagesBody::Stream(events) => Ok(events),
            MessagesBody::Whole(_) => Err(not_streamed()),
        }
    }

    /// Counts the input tokens of a Messages request
    /// (`POST /v1/messages/count_tokens` without HTTP), for the backend its
    /// model routes to: the upstream's count where it has a counting
    /// endpoint, else an estimate.
    pub async fn count_message_tokens(
        &self,
        request: &MessagesRequest,
    ) -> Result<TokenCount, Error> {
        self.count_tokens(to_bytes(request)?, request, &[]).await
    }

    /// `count_tokens`: `body` is the client's JSON, `betas` its
    /// `anthropic-beta`.
    pub(crate) async fn count_tokens(
        &self,
        body: Bytes,
        request: &MessagesRequest,
        betas: &[String],
    ) -> Result<TokenCount, Error> {
        let model = request.model.as_deref().unwrap_or_default();
        ingress::require_model(Some(model))?;
        let backend = self.route(model)?;
        // Checked as a request would be (a count has no `max_tokens`), so
        // that a count never succeeds for a conversation the model would
        // refuse.
        let mut checked = request.clone();
        checked.max_tokens.get_or_insert(1);
        llmproxy_api::messages::request::messages_to_responses(&checked)?;
        let upstream_model = backend.upstream_model(model);
        if let Some(route) = backend
            .passthrough(Api::MessagesCountTokens, &upstream_model)
            .cloned()
        {
            backend.upstream.check_model(&upstream_model)?;
            let call = passthrough::messages::Call {
                body: &body,
                model,
                upstream_model: &upstream_model,
                stream: false,
                betas,
                media: &self.inner.media,
            };
            let input_tokens = passthrough::messages::count_tokens(backend, &route, call)
                .await
                .map_err(Error::redacted)?;
            return Ok(TokenCount {
                input_tokens,
                estimated: false,
            });
        }
        Ok(TokenCount {
            input_tokens: ingress::messages::estimate_tokens(request),
            estimated: true,
        })
    }

    /// A Messages request - the client's JSON `body`, parsed as `request`,
    /// and the betas it asked for: passed through where the backend's
    /// upstream speaks Messages itself (Claude), else converted and run
    /// through the canonical path.
    pub(crate) async fn messages(
        &self,
        body: Bytes,
        request: &MessagesRequest,
        betas: &[String],
        log: &mut AccessLog,
    ) -> Result<MessagesAnswer, Error> {
        let model = request.model.clone().unwrap_or_default();
        ingress::require_model(Some(&model))?;
        let backend = self.route(&model)?;
        let upstream_model = backend.upstream_model(&model);
        if let Some(route) = backend.passthrough(Api::Messages, &upstream_model).cloned() {
            // Checked as the canonical path would check it, so that a bad
            // request is a 400 naming the field before anything is sent.
            llmproxy_api::messages::request::messages_to_responses(request)?;
            backend.upstream.check_model(&upstream_model)?;
            let stream = request.stream.unwrap_or(false);
            log.routed(&model, &backend, self.glob(&model), stream);
            log.prompt(&body);
            log.watch(self.cutoff.clone());
            let cutoff = self.cutoff.clone();
            let call = passthrough::messages::Call {
                body: &body,
                model: &model,
                upstream_model: &upstream_model,
                stream,
                betas,
                media: &self.inner.media,
            };
            let trace = log.trace();
            let result = tokio::select! {
                result = crate::telemetry::scope(trace, passthrough::messages::send(backend, &route, call, (&mut *log, cutoff))) => result,
                () = self.cutoff.reached() => Err(Error::ShuttingDown),
            };
            return result.map_err(|e| {
                let e = e.redacted();
                log.failed(&e);
                e
            });
        }
        let (canonical, extras) = ingress::messages::to_canonical(request, &self.inner.signatures)?;
        let outcome = self
            .execute(canonical, ClientApi::Messages { extras: &extras }, log)
            .await?;
        messages_egress::from_canonical(outcome, &model)
    }

    /// A stored response (`GET /v1/responses/{id}` without HTTP): one the
    /// proxy keeps, or one a stateful upstream keeps (asked of it). A 404
    /// [`Error`] when nobody keeps it.
    pub async fn retrieve_response(&self, id: &str) -> Result<Response, Error> {
        typed(self.retrieve(id).await?.into_value()?)
    }

    /// Forgets a stored response (`DELETE /v1/responses/{id}` without
    /// HTTP), here and at a stateful upstream that keeps it; whether it was
    /// kept.
    pub async fn delete_response(&self, id: &str) -> Result<bool, Error> {
        match self.delete(id).await {
            Ok(answer) => answer.into_value().map(|_| true),
            Err(Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every input item of a stored response, oldest first: those of the
    /// responses it continues (input and output) and its own
    /// (`GET /v1/responses/{id}/input_items` without paging). For a response
    /// a stateful upstream keeps, the first page it lists.
    pub async fn response_input_items(&self, id: &str) -> Result<Vec<Value>, Error> {
        let query = ListQuery {
            order: Some("asc".into()),
            ..ListQuery::default()
        };
        match self.list_input_items(id, &query, false).await? {
            Answer::Local(Value::Array(items)) => Ok(items),
            other => match other.into_value()? {
                Value::Object(mut page) => match page.remove("data") {
                    Some(Value::Array(items)) => Ok(items),
                    _ => Ok(Vec::new()),
                },
                _ => Ok(Vec::new()),
            },
        }
    }

    /// The model ids clients can use, each with the name of the backend
    /// that serves it, in routing order (what `GET /v1/models` lists): see
    /// the README, "Models".
    pub async fn model_ids(&self) -> Vec<(String, String)> {
        let backends = &self.inner.backends;
        let lists = futures_util::future::join_all(
            backends.iter().map(|b| b.catalog.ids(&b.name, &b.upstream)),
        )
        .await;
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for (i, ids) in lists.into_iter().enumerate() {
            for id in ids {
                let serves = self.inner.routes.route(&id) == Some(i);
                if serves && llmproxy_api::model::check(&id).is_ok() && seen.insert(id.clone()) {
                    out.push((id, backends[i].name.clone()));
                }
            }
        }
        out
    }

    /// The model names and globs this proxy is configured to serve, in
    /// routing order, each with the name of its backend. `GET /v1/models`
    /// lists [`Proxy::model_ids`] instead: real ids, never globs.
    pub fn models(&self) -> Vec<(String, String)> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for backend in &self.inner.backends {
            for model in &backend.models {
                if seen.insert(model.as_str()) {
                    out.push((model.clone(), backend.name.clone()));
                }
            }
        }
        out
    }

    /// `GET /v1/responses/{id}`: the stored response.
    pub(crate) async fn retrieve(&self, id: &str) -> Result<Answer, Error> {
        let id = checked_id(id)?;
        match self.locate(id).await? {
            Holder::Local(record) => Ok(Answer::Local(Value::Object(
                record.response.unwrap_or_default(),
            ))),
            Holder::Upstream(backend) => forward(&backend, "GET", format!("/responses/{id}")).await,
        }
    }

    /// `DELETE /v1/responses/{id}`: forgets it, here and upstream.
    pub(crate) async fn delete(&self, id: &str) -> Result<Answer, Error> {
        let id = checked_id(id)?;
        let conversations = &self.inner.conversations;
        match self.locate(id).await? {
            Holder::Local(_) => {
                conversations.forget(id).await?;
                Ok(Answer::Local(
                    json!({"id": id, "object": "response.deleted", "deleted": true}),
                ))
            }
            Holder::Upstream(backend) => {
                let answer = forward(&backend, "DELETE", format!("/responses/{id}")).await?;
                if answer.is_success() {
                    conversations.forget(id).await?;
                }
                Ok(answer)
            }
        }
    }

    /// `GET /v1/responses/{id}/input_items`: one page (`paged`) or, for the
    /// library, every item kept here.
    pub(crate) async fn list_input_items(
        &self,
        id: &str,
        query: &ListQuery,
        paged: bool,
    ) -> Result<Answer, Error> {
        let id = checked_id(id)?;
        match self.locate(id).await? {
            Holder::Local(_) => {
                let items = self.inner.conversations.input_items(id).await?;
                Ok(Answer::Local(if paged {
                    page(items, query)?
                } else {
                    Value::Array(items)
                }))
            }
            Holder::Upstream(backend) => {
                let query = forwarded_query(query)?;
                forward(
                    &backend,
                    "GET",
                    format!("/responses/{id}/input_items{query}"),
                )
                .await
            }
        }
    }

    /// A Chat request - the client's JSON `body`, its `head` read: passed
    /// through where the backend's upstream speaks Chat itself, else
    /// converted and run through the canonical path.
    pub(crate) async fn chat(
        &self,
        body: Bytes,
        head: &ChatHead,
        log: &mut AccessLog,
    ) -> Result<ChatAnswer, Error> {
        let backend = self.route(&head.model)?;
        let upstream_model = backend.upstream_model(&head.model);
        let Some(route) = backend
            .passthrough(Api::ChatCompletions, &upstream_model)
            .cloned()
        else {
            let chat = ingress::chat::parse(&body)?;
            let (canonical, extras) =
                ingress::chat::to_canonical(&chat, &body, &self.inner.signatures)?;
            let outcome = self
                .execute(canonical, ClientApi::Chat { extras: &extras }, log)
                .await?;
            return chat_egress::from_canonical(outcome, &head.model, head.include_usage);
        };
        backend.upstream.check_model(&upstream_model)?;
        log.routed(&head.model, &backend, self.glob(&head.model), head.stream);
        log.prompt(&body);
        log.watch(self.cutoff.clone());
        let cutoff = self.cutoff.clone();
        let trace = log.trace();
        let result = tokio::select! {
            result = crate::telemetry::scope(trace, passthrough::chat::send(backend, &route, &self.inner.media, &body, head, &upstream_model, (&mut *log, cutoff))) => result,
            () = self.cutoff.reached() => Err(Error::ShuttingDown),
        };
        result.map_err(|e| {
            let e = e.redacted();
            log.failed(&e);
            e
        })
    }
}

/// A stream came back where a whole answer was asked for (never expected).
fn streamed_unasked() -> Error {
    Error::Internal("a stream came back for a request without streaming".into())
}

/// The proxy always streams a streaming request (replaying a whole answer
/// as events when the upstream sent one).
fn not_streamed() -> Error {
    Error::Internal("a whole answer came back for a streaming request".into())
}

fn to_bytes<T: serde::Serialize>(value: &T) -> Result<Bytes, Error> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| Error::Internal(format!("cannot serialize the request: {e}")))
}

fn typed<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, Error> {
    serde_json::from_value(value)
        .map_err(|e| Error::Internal(format!("the proxy produced an answer it cannot type: {e}")))
}

fn typed_bytes<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(body)
        .map_err(|e| Error::Internal(format!("the proxy produced an answer it cannot type: {e}")))
}

/// What a stored-response operation answered.
#[derive(Debug)]
pub(crate) enum Answer {
    /// The proxy's own answer.
    Local(Value),
    /// A stateful upstream's answer, passed on as it is (secrets scrubbed).
    Upstream { status: StatusCode, body: String },
}

impl Answer {
    fn is_success(&self) -> bool {
        match self {
            Answer::Local(_) => true,
            Answer::Upstream { status, .. } => status.is_success(),
        }
    }

    /// The answer as a value; an upstream's error status as an [`Error`].
    fn into_value(self) -> Result<Value, Error> {
        match self {
            Answer::Local(v) => Ok(v),
            Answer::Upstream { status, body } => {
                let value: Value = serde_json::from_str(&body).unwrap_or(Value::String(body));
                if status.is_success() {
                    return Ok(value);
                }
                let field = |k: &str| {
                    value
                        .get("error")
                        .and_then(|e| e.get(k))
                        .and_then(Value::as_str)
                        .map(str::to_string)
                };
                Err(Error::Upstream {
                    status: status.as_u16(),
                    message: field("message")
                        .unwrap_or_else(|| format!("the upstream answered {status}")),
                    error_type: field("type"),
                    code: field("code"),
                    param: field("param"),
                    retry_after: None,
                })
            }
        }
    }
}

/// A response id as it may appear in a path: what the proxy and OpenAI
/// mint (letters, digits, `_`, `-`), so it is safe to pass upstream.
fn checked_id(id: &str) -> Result<&str, Error> {
    let plain = (1..=200).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if plain {
        Ok(id)
    } else {
        Err(response_not_found(id, ": that is not a response id"))
    }
}

/// The query sent on to a stateful upstream: rebuilt from the parsed
/// parameters (item ids as plain as response ids), never the client's text.
fn forwarded_query(query: &ListQuery) -> Result<String, Error> {
    let invalid = |param: &str| Error::InvalidRequest {
        message: format!(
            "`{param}` is not valid: use after and before with item ids, limit (1-100) and order (asc or desc)."
        ),
        param: Some(param.into()),
        code: Some("invalid_value".into()),
    };
    let mut parts = Vec::new();
    for (name, value) in [("after", &query.after), ("before", &query.before)] {
        if let Some(v) = value {
            checked_id(v).map_err(|_| invalid(name))?;
            parts.push(format!("{name}={v}"));
        }
    }
    if let Some(limit) = query.limit {
        if !(1..=100).contains(&limit) {
            return Err(invalid("limit"));
        }
        parts.push(format!("limit={limit}"));
    }
    if let Some(order) = &query.order {
        if !matches!(order.as_str(), "asc" | "desc") {
            return Err(invalid("order"));
        }
        parts.push(format!("order={order}"));
    }
    Ok(if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    })
}

/// Where a stored response is.
enum Holder {
    /// Kept by the proxy.
    Local(Record),
    /// Kept by this backend's upstream.
    Upstream(Arc<Backend>),
}

impl Proxy {
    /// Finds who keeps `id`. A response the proxy knows nothing about is asked
    /// of the upstream when exactly one backend keeps its own state.
    async fn locate(&self, id: &str) -> Result<Holder, Error> {
        let proxy = self;
        let stateful = || {
            let mut found = proxy
                .inner
                .backends
                .iter()
                .filter(|b| b.state == StateKeeper::Upstream);
            match (found.next(), found.next()) {
                (Some(only), None) => Some(only.clone()),
                _ => None,
            }
        };
        match proxy.inner.conversations.stored(id).await {
        Ok(record) if record.upstream => proxy
            .inner
            .backends
            .iter()
            .find(|b| b.name == record.backend)
            .cloned()
            .map(Holder::Upstream)
            .ok_or_else(|| {
                response_not_found(
                    id,
                    &format!(
                        " here: it is kept by the upstream of backend {:?}, which is no longer configured",
                        record.backend
                    ),
                )
            }),
        Ok(record) => Ok(Holder::Local(record)),
        Err(e @ Error::NotFound { .. }) => stateful().map(Holder::Upstream).ok_or(e),
        Err(e) => Err(e),
    }
    }
}

/// Sends a `GET`/`DELETE` on to a stateful backend's upstream and passes its
/// answer back (credentials scrubbed).
async fn forward(backend: &Backend, method: &str, path: String) -> Result<Answer, Error> {
    let request = UpstreamRequest {
        method: method.into(),
        path,
        headers: vec![("accept".into(), "application/json".into())],
        body: Vec::new(),
        state: String::new(),
    };
    let deadline = tokio::time::Instant::now() + backend.upstream.timeouts.total;
    let answer = backend
        .upstream
        .send("passthrough", request, deadline)
        .await?;
    let status = answer.status();
    let body = backend.upstream.read_body(answer, deadline).await?;
    let body = crate::redact::redact_owned(String::from_utf8_lossy(&body).into_owned());
    Ok(Answer::Upstream { status, body })
}
