//! [`StreamGuard`]: keeps a canonical event stream well-formed.

use super::complete::{ResponseMeta, complete_response};
use crate::error::Error;
use crate::ingress::RequestHead;
use llmproxy_api::events::ResponseEvent;
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// A canonical event as the host passes it on: typed where a kind is
/// modelled and its fields are there, else as it is.
fn typed(event: Value) -> ResponseEvent {
    match ResponseEvent::deserialize(&event) {
        Ok(e) => e,
        Err(_) => ResponseEvent::Other(event),
    }
}

fn all_typed(events: Vec<Value>) -> Vec<ResponseEvent> {
    events.into_iter().map(typed).collect()
}

/// The `error` payload of a stream `error` event for `err`.
fn error_payload(err: &Error) -> Value {
    err.body()
}

/// A `ResponseResource.error` (`{code, message}`, both strings) from an
/// `error` event payload.
fn response_error(payload: &Value) -> Value {
    json!({
        "code": payload.get("code").and_then(Value::as_str).unwrap_or("server_error"),
        "message": payload
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("The response failed."),
    })
}

/// Keeps one canonical event stream well-formed (see the module docs).
#[derive(Debug)]
pub(crate) struct StreamGuard {
    meta: ResponseMeta,
    echo: RequestHead,
    seq: u64,
    started: bool,
    terminal: bool,
    /// The last event emitted was an `error` event.
    error_emitted: Option<Value>,
    /// Final items from `response.output_item.done`, by `output_index`.
    items: Vec<Option<Value>>,
}

/// Events that carry a response snapshot.
fn is_lifecycle(kind: &str) -> bool {
    matches!(
        kind,
        "response.created"
            | "response.queued"
            | "response.in_progress"
            | "response.completed"
            | "response.incomplete"
            | "response.failed"
    )
}

/// An event that is not about the response as a whole: a piece of an item
/// (text, arguments, parts) or an item itself.
fn is_piece(event: &ResponseEvent) -> bool {
    match event {
        ResponseEvent::Other(v) => v
            .get("type")
            .and_then(Value::as_str)
            .is_some_and(|kind| kind != "error" && !is_lifecycle(kind)),
        ResponseEvent::OutputItemAdded(_)
        | ResponseEvent::OutputItemDone(_)
        | ResponseEvent::OutputTextDelta(_)
        | ResponseEvent::ReasoningSummaryTextDelta(_)
        | ResponseEvent::ReasoningTextDelta(_)
        | ResponseEvent::FunctionCallArgumentsDelta(_) => true,
        _ => false,
    }
}

/// The status a terminal event's snapshot must carry.
fn terminal_status(kind: &str) -> Option<&'static str> {
    match kind {
        "response.completed" => Some("completed"),
        "response.incomplete" => Some("incomplete"),
        "response.failed" => Some("failed"),
        _ => None,
    }
}

impl StreamGuard {
    pub(crate) fn new(meta: ResponseMeta, echo: RequestHead) -> Self {
        StreamGuard {
            meta,
            echo,
            seq: 0,
            started: false,
            terminal: false,
            error_emitted: None,
            items: Vec::new(),
        }
    }

    /// Whether the terminal event has been emitted.
    pub(crate) fn is_done(&self) -> bool {
        self.terminal
    }

    fn stamp(&mut self, mut event: Map<String, Value>) -> Value {
        event.insert("sequence_number".into(), json!(self.seq));
        self.seq += 1;
        Value::Object(event)
    }

    fn snapshot(&mut self, status: &str) -> Map<String, Value> {
        let mut snap = Map::new();
        snap.insert("status".into(), json!(status));
        complete_response(&mut snap, &mut self.meta, &self.echo, status);
        snap
    }

    fn lifecycle(&mut self, kind: &str, response: Map<String, Value>) -> Value {
        let mut event = Map::new();
        event.insert("type".into(), json!(kind));
        event.insert("response".into(), Value::Object(response));
        self.stamp(event)
    }

    /// `response.created` and `response.in_progress`, if not sent yet.
    fn start(&mut self, out: &mut Vec<Value>) {
        if !self.started {
            self.started = true;
            let created = self.snapshot("in_progress");
            out.push(self.lifecycle("response.created", created));
            let progress = self.snapshot("in_progress");
            out.push(self.lifecycle("response.in_progress", progress));
        }
    }

    /// Takes one event from the translator and returns what to emit. Most
    /// events are pieces of text or arguments: read once into their type,
    /// numbered and passed on. Lifecycle and error events are completed
    /// through their JSON.
    pub(crate) fn accept(&mut self, text: &str) -> Result<Vec<ResponseEvent>, String> {
        if self.terminal {
            return Ok(Vec::new());
        }
        if let Ok(mut event) = serde_json::from_str::<ResponseEvent>(text)
            && is_piece(&event)
        {
            let mut out = Vec::new();
            if !self.started {
                let mut start = Vec::new();
                self.start(&mut start);
                out.extend(all_typed(start));
            }
            if let ResponseEvent::OutputItemDone(done) = &event
                && let Ok(index) = usize::try_from(done.output_index)
                && index < 1 << 16
                && let Ok(item) = serde_json::to_value(&done.item)
            {
                if self.items.len() <= index {
                    self.items.resize(index + 1, None);
                }
                self.items[index] = Some(item);
            }
            event.set_sequence_number(self.seq);
            self.seq += 1;
            out.push(event);
            return Ok(out);
        }
        self.accept_value(text).map(all_typed)
    }

    /// [`StreamGuard::accept`] for an event read as JSON.
    fn accept_value(&mut self, text: &str) -> Result<Vec<Value>, String> {
        let mut out = Vec::new();
        let mut event: Map<String, Value> = match serde_json::from_str(text) {
            Ok(Value::Object(o)) => o,
            Ok(_) => return Err("emitted an event that is not a JSON object".into()),
            Err(e) => return Err(format!("emitted an event that is not JSON ({e})")),
        };
        let kind = match event.get("type").and_then(Value::as_str) {
            Some(k) => k.to_string(),
            None => return Err("emitted an event without a `type`".into()),
        };
        if kind == "error" {
            normalise_error_event(&mut event);
            self.start(&mut out);
            let payload = event.get("error").cloned();
            out.push(self.stamp(event));
            self.error_emitted = payload;
            return Ok(out);
        }
        if is_lifecycle(&kind) {
            let terminal = terminal_status(&kind);
            let mut snap = match event.remove("response") {
                Some(Value::Object(s)) => s,
                _ => Map::new(),
            };
            match terminal {
                None if kind == "response.created" && self.started => {
                    // A second `created` would confuse clients; drop it.
                    return Ok(out);
                }
                None => {
                    if !self.started && kind != "response.created" {
                        let mut created = snap.clone();
                        complete_response(&mut created, &mut self.meta, &self.echo, "in_progress");
                        out.push(self.lifecycle("response.created", created));
                    }
                    self.started = true;
                }
                Some(status) => {
                    self.start(&mut out);
                    snap.insert("status".into(), json!(status));
                    let empty = snap
                        .get("output")
                        .and_then(Value::as_array)
                        .is_none_or(Vec::is_empty);
                    if empty && self.items.iter().any(Option::is_some) {
                        let items = self.items.iter().flatten().cloned().collect();
                        snap.insert("output".into(), Value::Array(items));
                    }
                    if status == "failed" && !snap.get("error").is_some_and(Value::is_object) {
                        let payload = self.error_emitted.clone().unwrap_or(Value::Null);
                        snap.insert("error".into(), response_error(&payload));
                    }
                    self.terminal = true;
                }
            }
            complete_response(
                &mut snap,
                &mut self.meta,
                &self.echo,
                terminal.unwrap_or("in_progress"),
            );
            event.insert("response".into(), Value::Object(snap));
            out.push(self.stamp(event));
            return Ok(out);
        }
        self.start(&mut out);
        if kind == "response.output_item.done"
            && let (Some(index), Some(item)) = (
                event.get("output_index").and_then(Value::as_u64),
                event.get("item"),
            )
            && let Ok(index) = usize::try_from(index)
            && index < 1 << 16
        {
            if self.items.len() <= index {
                self.items.resize(index + 1, None);
            }
            self.items[index] = Some(item.clone());
        }
        out.push(self.stamp(event));
        Ok(out)
    }

    /// Ends the stream because of `err`: an `error` event (unless the
    /// translator just sent one) and `response.failed`.
    pub(crate) fn fail(&mut self, err: &Error) -> Vec<ResponseEvent> {
        all_typed(self.fail_value(err))
    }

    fn fail_value(&mut self, err: &Error) -> Vec<Value> {
        let mut out = Vec::new();
        if self.terminal {
            return out;
        }
        self.start(&mut out);
        let payload = match self.error_emitted.take() {
            Some(p) => p,
            None => {
                let p = error_payload(err);
                let mut event = Map::new();
                event.insert("type".into(), json!("error"));
                event.insert("error".into(), p.clone());
                out.push(self.stamp(event));
                p
            }
        };
        let mut snap = Map::new();
        snap.insert("status".into(), json!("failed"));
        snap.insert("error".into(), response_error(&payload));
        let items: Vec<Value> = self.items.iter().flatten().cloned().collect();
        snap.insert("output".into(), Value::Array(items));
        complete_response(&mut snap, &mut self.meta, &self.echo, "failed");
        out.push(self.lifecycle("response.failed", snap));
        self.terminal = true;
        out
    }

    /// The upstream and translator are done: fails the stream if it has no
    /// terminal event yet.
    pub(crate) fn end(&mut self, backend: &str) -> Vec<ResponseEvent> {
        self.fail(&Error::BadUpstream {
            backend: backend.into(),
            detail: "the event stream ended before the response was complete".into(),
        })
    }
}

/// Brings an `error` event to the OpenResponses shape
/// `{"type":"error","error":{"type","code","message","param"}}`, accepting
/// OpenAI's flat `{"type":"error","code","message","param"}` too.
fn normalise_error_event(event: &mut Map<String, Value>) {
    let mut payload = match event.remove("error") {
        Some(Value::Object(p)) => p,
        _ => Map::new(),
    };
    for key in ["code", "message", "param"] {
        if !payload.contains_key(key)
            && let Some(v) = event.remove(key)
        {
            payload.insert(key.into(), v);
        }
    }
    if !payload.get("message").is_some_and(Value::is_string) {
        payload.insert("message".into(), json!("The upstream reported an error."));
    }
    if !payload.get("type").is_some_and(Value::is_string) {
        payload.insert("type".into(), json!("server_error"));
    }
    for key in ["code", "param"] {
        match payload.get(key) {
            Some(Value::String(_)) | Some(Value::Null) => {}
            Some(Value::Number(n)) => {
                let s = n.to_string();
                payload.insert(key.into(), Value::String(s));
            }
            _ => {
                payload.insert(key.into(), Value::Null);
            }
        }
    }
    event.insert("error".into(), Value::Object(payload));
}
