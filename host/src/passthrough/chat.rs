//! Chat Completions passthrough: a Chat client's request to a backend whose
//! upstream speaks Chat Completions itself goes on as the client wrote it -
//! every field, known or not, byte for byte - with only `model` set to the
//! upstream model (and, for a stream, usage asked for: the access log reads
//! it); the upstream's 2xx answer comes back as it is, its `model` the one
//! the client asked for.

use super::{Route, Whole};
use crate::access::{AccessLog, Cutoff};
use crate::backend::Backend;
use crate::egress::chat::{ChatAnswer, ChatBody, Frame};
use crate::error::Error;
use crate::ingress::chat::ChatHead;
use crate::media::MediaFetcher;
use crate::stream::UpstreamEvents;
use bytes::Bytes;
use futures_util::StreamExt;
use llmproxy_api::json::RawObject;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use std::sync::Arc;
use tokio::time::Instant;

/// The client's Chat request as it goes upstream: `model` set and, for a
/// stream whose client did not ask for usage, `stream_options.include_usage`
/// set (its other stream options kept).
pub(crate) fn upstream_body(body: &[u8], model: &str, ask_usage: bool) -> Result<Vec<u8>, Error> {
    let invalid = |e: serde_json::Error| Error::InvalidRequest {
        message: format!("The request body is not valid JSON: {e}."),
        param: None,
        code: Some("invalid_json".into()),
    };
    let mut obj = RawObject::parse(body).map_err(invalid)?;
    obj.set("model", model).map_err(invalid)?;
    if ask_usage {
        let mut options = match obj.get_as::<Value>("stream_options") {
            Ok(Some(Value::Object(o))) => o,
            _ => serde_json::Map::new(),
        };
        options.insert("include_usage".into(), Value::Bool(true));
        obj.set("stream_options", options).map_err(invalid)?;
    }
    Ok(obj.to_vec())
}

/// The token counts of a Chat `usage`.
#[derive(Debug, Default, Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<Details>,
    #[serde(default)]
    completion_tokens_details: Option<Details>,
}

#[derive(Debug, Default, Deserialize)]
struct Details {
    #[serde(default)]
    cached_tokens: u64,
    #[serde(default)]
    reasoning_tokens: u64,
}

impl Usage {
    /// Tells the log (and the metrics) what the answer used.
    fn log(&self, log: &mut AccessLog) {
        log.usage(self.prompt_tokens, self.completion_tokens);
        log.token_details(
            self.prompt_tokens_details
                .as_ref()
                .map_or(0, |d| d.cached_tokens),
            self.completion_tokens_details
                .as_ref()
                .map_or(0, |d| d.reasoning_tokens),
        );
    }
}

/// What a chunk or completion says that the host acts on.
#[derive(Debug, Deserialize)]
struct Head<'a> {
    #[serde(borrow)]
    choices: Option<&'a RawValue>,
    usage: Option<Usage>,
    #[serde(borrow)]
    error: Option<&'a RawValue>,
}

/// A whole answer with `model` set to the client's; its usage for the log.
fn whole(body: &[u8], model: &str, log: &mut AccessLog, backend: &str) -> Result<Bytes, Error> {
    let bad = |e: serde_json::Error| Error::BadUpstream {
        backend: backend.to_string(),
        detail: format!("the answer is not a JSON object ({e})"),
    };
    let mut obj = RawObject::parse(body).map_err(bad)?;
    if let Some(Ok(usage)) = obj
        .get("usage")
        .map(|raw| serde_json::from_str::<Option<Usage>>(raw.get()))
    {
        usage.unwrap_or_default().log(log);
    }
    if let Some(choices) = obj.get("choices")
        && log.wants_completion()
    {
        log.completion(choices.get());
    }
    if obj.get("model").is_some() {
        obj.set("model", model).map_err(bad)?;
    }
    if let Some(choices) = obj.get("choices")
        && let Some(fixed) = with_empty_arguments_as_object(choices)
    {
        obj.set("choices", fixed).map_err(bad)?;
    }
    Ok(Bytes::from(obj.to_vec()))
}

/// `choices` of a whole answer with each tool call's empty `arguments`
/// made `"{}"` (some servers send `""` for a call without arguments, which
/// clients cannot parse); `None` when none is empty.
fn with_empty_arguments_as_object(choices: &RawValue) -> Option<Value> {
    let raw = choices.get();
    if !raw.contains("\"arguments\"") {
        return None;
    }
    let mut choices: Value = serde_json::from_str(raw).ok()?;
    let mut fixed = false;
    for choice in choices.as_array_mut().into_iter().flatten() {
        let calls = choice
            .pointer_mut("/message/tool_calls")
            .and_then(Value::as_array_mut);
        for call in calls.into_iter().flatten() {
            if let Some(args) = call.pointer_mut("/function/arguments")
                && args.as_str().is_some_and(|a| a.trim().is_empty())
            {
                *args = Value::String("{}".into());
                fixed = true;
            }
        }
    }
    fixed.then_some(choices)
}

/// A Chat request passed through `route` of `backend` to `upstream_model`.
pub(crate) async fn send(
    backend: Arc<Backend>,
    route: &Route,
    media: &MediaFetcher,
    body: &[u8],
    head: &ChatHead,
    upstream_model: &str,
    (log, cutoff): (&mut AccessLog, Cutoff),
) -> Result<ChatAnswer, Error> {
    let ask_usage = head.stream && !head.include_usage;
    let translator = backend.translator(upstream_model)?.clone();
    let (request, held) = if route.adapt {
        let ctx = backend.context(&head.model, upstream_model.to_string(), head.stream, "{}");
        super::adapted(&backend, media, ctx, route.api, body).await?
    } else {
        let sent = upstream_body(body, upstream_model, ask_usage)?;
        (route.request(sent, head.stream), None)
    };
    let deadline = Instant::now() + backend.upstream.timeouts.total;
    let response = backend
        .upstream
        .send(translator.name(), request, deadline)
        .await?;
    drop(held);
    let status = response.status().as_u16();
    log.upstream_answered(status);
    let upstream_id = crate::upstream::request_id(response.headers());
    let is_sse = crate::upstream::is_event_stream(response.headers());
    if (200..300).contains(&status) && head.stream && is_sse {
        let relay = Relay {
            events: UpstreamEvents::new(backend, response, (deadline, cutoff)),
            model: head.model.clone(),
            hide_usage: ask_usage,
            log: log.take_for_stream(),
            calls: Vec::new(),
            pending: std::collections::VecDeque::new(),
            finished: false,
            done: false,
        };
        return Ok(ChatAnswer {
            body: ChatBody::Stream(relay.frames()),
            upstream_id,
        });
    }
    let read = Whole::read(&backend, response, deadline).await?;
    if !read.is_success() {
        let ctx = backend.context(&head.model, upstream_model.to_string(), head.stream, "{}");
        return Err(read.error(&backend, &ctx).await);
    }
    let whole = whole(&read.answer.body, &head.model, log, &backend.name)?;
    let body = if head.stream {
        // A whole answer to a streaming request: sent as a stream.
        ChatBody::Stream(futures_util::stream::iter(as_chunks(&whole, head.include_usage)).boxed())
    } else {
        ChatBody::Whole(whole)
    };
    Ok(ChatAnswer { body, upstream_id })
}

/// A whole `chat.completion` as the chunks of a stream: the message of each
/// choice in one chunk, then its finish reason, the usage when asked for
/// (`include_usage`), then `[DONE]`.
fn as_chunks(completion: &[u8], include_usage: bool) -> Vec<Frame> {
    let Ok(Value::Object(mut c)) = serde_json::from_slice::<Value>(completion) else {
        return vec![Frame::Done];
    };
    let choices = match c.remove("choices") {
        Some(Value::Array(choices)) => choices,
        _ => Vec::new(),
    };
    c.insert(
        "object".into(),
        Value::String("chat.completion.chunk".into()),
    );
    let usage = c.remove("usage").filter(|_| include_usage);
    let chunk = |choices: Vec<Value>, usage: Option<Value>| {
        let mut chunk = c.clone();
        chunk.insert("choices".into(), Value::Array(choices));
        if let Some(u) = usage {
            chunk.insert("usage".into(), u);
        }
        Frame::Chunk(Bytes::from(Value::Object(chunk).to_string()))
    };
    let mut frames = Vec::new();
    let mut finals = Vec::new();
    for choice in choices {
        let Value::Object(mut choice) = choice else {
            continue;
        };
        let mut message = choice.remove("message").unwrap_or(Value::Null);
        // Tool-call deltas carry their index among the calls.
        if let Some(calls) = message.get_mut("tool_calls").and_then(Value::as_array_mut) {
            for (i, call) in calls.iter_mut().enumerate() {
                if let Some(call) = call.as_object_mut() {
                    call.entry("index").or_insert(Value::from(i));
                }
            }
        }
        let finish = choice.remove("finish_reason").unwrap_or(Value::Null);
        let mut delta = choice.clone();
        delta.insert("delta".into(), message);
        delta.insert("finish_reason".into(), Value::Null);
        frames.push(chunk(vec![Value::Object(delta)], None));
        let mut last = choice;
        last.insert("delta".into(), Value::Object(serde_json::Map::new()));
        last.insert("finish_reason".into(), finish);
        finals.push(Value::Object(last));
    }
    frames.push(chunk(finals, None));
    if let Some(u) = usage {
        frames.push(chunk(Vec::new(), Some(u)));
    }
    frames.push(Frame::Done);
    frames
}

/// The relay of an upstream Chat stream to the client.
struct Relay {
    events: UpstreamEvents,
    /// The model name the client asked for.
    model: String,
    /// The client did not ask for usage: the host did, for its log.
    hide_usage: bool,
    log: AccessLog,
    /// Tool calls seen, by (choice, call index), and whether any of their
    /// argument deltas held text.
    calls: Vec<(u64, u64, bool)>,
    /// Frames made but not yet taken.
    pending: std::collections::VecDeque<Frame>,
    /// A choice has finished.
    finished: bool,
    done: bool,
}

impl Relay {
    fn frames(self) -> futures_util::stream::BoxStream<'static, Frame> {
        futures_util::stream::unfold(self, |mut relay| async move {
            loop {
                if let Some(frame) = relay.pending.pop_front() {
                    return Some((frame, relay));
                }
                if relay.done {
                    return None;
                }
                if let Some(frame) = relay.step().await {
                    relay.pending.push_back(frame);
                }
            }
        })
        .boxed()
    }

    /// The next frame, if the next upstream event makes one.
    async fn step(&mut self) -> Option<Frame> {
        match self.events.next().await {
            Ok(Some(sse)) => self.chunk(&sse.data),
            Ok(None) if self.finished => {
                // Ended without `[DONE]`, but complete.
                self.done = true;
                self.log.ended("completed", None);
                Some(Frame::Done)
            }
            Ok(None) => self.fail(Error::BadUpstream {
                backend: self.events.backend().name.clone(),
                detail: "the event stream ended before the response was complete".into(),
            }),
            Err(e) => self.fail(e),
        }
    }

    fn fail(&mut self, err: Error) -> Option<Frame> {
        let err = err.redacted();
        tracing::warn!(backend = %self.events.backend().name, "stream failed: {err}");
        self.done = true;
        self.log.ended("failed", Some(&err));
        Some(Frame::error(&err))
    }

    /// One upstream chunk as the client gets it.
    fn chunk(&mut self, data: &str) -> Option<Frame> {
        let data = data.trim();
        if data.is_empty() {
            return None;
        }
        if data == "[DONE]" {
            self.done = true;
            self.log.ended("completed", None);
            return Some(Frame::Done);
        }
        let backend = &self.events.backend().name;
        let bad = |e: serde_json::Error| Error::BadUpstream {
            backend: backend.clone(),
            detail: format!("it sent a chunk that is not a JSON object ({e})"),
        };
        let head: Head = match serde_json::from_str(data) {
            Ok(head) => head,
            Err(e) => return self.fail(bad(e)),
        };
        if head.error.is_some() && head.choices.is_none() {
            // The upstream's own error frame ends the stream.
            self.done = true;
            self.log.ended("failed", None);
            return match serde_json::from_str(data) {
                Ok(error) => Some(Frame::Error(error)),
                Err(e) => self.fail(bad(e)),
            };
        }
        if let Some(usage) = &head.usage {
            usage.log(&mut self.log);
        }
        let no_choices = head.choices.is_none_or(|c| {
            let c = c.get().trim();
            c == "[]" || c == "null"
        });
        if !no_choices {
            self.log.first_token();
        }
        if self.hide_usage && no_choices && head.usage.is_some() {
            // The usage chunk the client did not ask for.
            return None;
        }
        let mut obj = match RawObject::parse(data.as_bytes()) {
            Ok(obj) => obj,
            Err(e) => return self.fail(bad(e)),
        };
        if let Some(choices) = head.choices {
            if choices.get().contains("\"tool_calls\"") {
                self.track_calls(choices);
            }
            if !self.finished
                && choices.get().contains("\"finish_reason\"")
                && finish_reason_set(Some(choices))
            {
                self.finished = true;
                // Calls that streamed no arguments get "{}" before the end.
                for frame in self.empty_arguments(&obj) {
                    self.pending.push_back(frame);
                }
            }
        }
        if obj.get("model").is_some() && obj.set("model", &self.model).is_err() {
            return None;
        }
        if self.hide_usage {
            obj.remove("usage");
        }
        Some(Frame::Chunk(Bytes::from(obj.to_vec())))
    }
}

impl Relay {
    /// Notes the tool calls of a chunk's `choices` and whether their
    /// argument deltas held text.
    fn track_calls(&mut self, choices: &RawValue) {
        #[derive(Deserialize)]
        struct Choice {
            #[serde(default)]
            index: u64,
            delta: Option<Delta>,
        }
        #[derive(Deserialize)]
        struct Delta {
            tool_calls: Option<Vec<Call>>,
        }
        #[derive(Deserialize)]
        struct Call {
            #[serde(default)]
            index: u64,
            function: Option<Function>,
        }
        #[derive(Deserialize)]
        struct Function {
            arguments: Option<String>,
        }
        let Ok(choices) = serde_json::from_str::<Vec<Choice>>(choices.get()) else {
            return;
        };
        for choice in choices {
            for call in choice
                .delta
                .and_then(|d| d.tool_calls)
                .into_iter()
                .flatten()
            {
                let text = call
                    .function
                    .and_then(|f| f.arguments)
                    .is_some_and(|a| !a.trim().is_empty());
                match self
                    .calls
                    .iter_mut()
                    .find(|(c, i, _)| (*c, *i) == (choice.index, call.index))
                {
                    Some(seen) => seen.2 |= text,
                    None => self.calls.push((choice.index, call.index, text)),
                }
            }
        }
    }

    /// Chunks giving each call that streamed no arguments `"{}"`, in the
    /// shape of `chunk` (its id, created, model).
    fn empty_arguments(&mut self, chunk: &RawObject) -> Vec<Frame> {
        let mut frames = Vec::new();
        for (choice, index, _) in self.calls.iter().filter(|(_, _, text)| !text) {
            let mut out = RawObject::default();
            for key in ["id", "object", "created", "model", "system_fingerprint"] {
                if let Some(v) = chunk.get(key) {
                    let _ = out.set(key, v);
                }
            }
            let _ = out.set("model", &self.model);
            let delta = serde_json::json!([{"index": choice, "delta": {"tool_calls": [
                {"index": index, "function": {"arguments": "{}"}}]}, "finish_reason": null}]);
            if out.set("choices", delta).is_ok() {
                frames.push(Frame::Chunk(Bytes::from(out.to_vec())));
            }
        }
        self.calls.clear();
        frames
    }
}

/// Whether a choice in `choices` has a non-null `finish_reason`.
fn finish_reason_set(choices: Option<&RawValue>) -> bool {
    #[derive(Deserialize)]
    struct Choice<'a> {
        #[serde(borrow)]
        finish_reason: Option<&'a RawValue>,
    }
    choices
        .and_then(|c| serde_json::from_str::<Vec<Choice>>(c.get()).ok())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.finish_reason.is_some_and(|f| f.get() != "null"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_body_goes_on_byte_for_byte_but_for_the_model() {
        let body = br#"{"model":"fast","messages":[{"role":"user","content":"hi","x":1.50}],"top_k":40,"stream_options":{"include_obfuscation":false}}"#;
        let sent = upstream_body(body, "gpt-x-2026", false).unwrap();
        assert_eq!(
            String::from_utf8(sent).unwrap(),
            r#"{"model":"gpt-x-2026","messages":[{"role":"user","content":"hi","x":1.50}],"top_k":40,"stream_options":{"include_obfuscation":false}}"#
        );
        let sent = upstream_body(body, "m", true).unwrap();
        let sent: Value = serde_json::from_slice(&sent).unwrap();
        assert_eq!(
            sent["stream_options"],
            json!({"include_obfuscation": false, "include_usage": true})
        );
    }

    #[test]
    fn a_whole_answer_streams_as_chunks() {
        let completion = json!({"id": "c1", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}});
        let frames = as_chunks(completion.to_string().as_bytes(), true);
        let chunks: Vec<Value> = frames
            .iter()
            .filter_map(|f| match f {
                Frame::Chunk(b) => Some(serde_json::from_slice(b).unwrap()),
                _ => None,
            })
            .collect();
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[0]["object"], "chat.completion.chunk");
        assert_eq!(chunks[0]["choices"][0]["delta"]["content"], "Hi");
        assert_eq!(chunks[1]["choices"][0]["finish_reason"], "stop");
        assert_eq!(chunks[2]["usage"]["total_tokens"], 3);
        assert!(matches!(frames.last(), Some(Frame::Done)));
    }

    #[test]
    fn finish_reasons_are_found_only_when_set() {
        let raw = |s: &str| {
            serde_json::value::to_raw_value(&serde_json::from_str::<Value>(s).unwrap()).unwrap()
        };
        assert!(!finish_reason_set(Some(&raw(
            r#"[{"index":0,"delta":{},"finish_reason":null}]"#
        ))));
        assert!(finish_reason_set(Some(&raw(
            r#"[{"index":0,"delta":{},"finish_reason":"stop"}]"#
        ))));
        assert!(!finish_reason_set(None));
    }
}
