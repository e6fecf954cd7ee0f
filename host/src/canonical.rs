//! The canonical Responses output, made spec-valid whatever the translator
//! produced.
//!
//! Translators may return as little as `{"status","output","usage"}`; this
//! module fills every field the OpenResponses `ResponseResource` requires
//! (echoing the request's parameters), and [`StreamGuard`] keeps every
//! canonical stream well-formed: one `sequence_number` counter from 0,
//! `response.created` first, consistent response ids, full snapshots, and
//! always exactly one terminal event - `response.failed` (after an `error`
//! event) when anything goes wrong.

use crate::error::Error;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

/// What the host reads from a canonical request: routing fields, and the
/// parameters a `ResponseResource` echoes back.
///
/// The echoed parameters are kept as raw JSON until a response needs them
/// (a pass-through upstream usually echoes them itself).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RequestHead {
    pub model: Option<String>,
    stream: Option<Box<RawValue>>,
    input: Option<Box<RawValue>>,
    instructions: Option<Box<RawValue>>,
    previous_response_id: Option<Box<RawValue>>,
    store: Option<Box<RawValue>>,
    tools: Option<Box<RawValue>>,
    tool_choice: Option<Box<RawValue>>,
    truncation: Option<Box<RawValue>>,
    parallel_tool_calls: Option<Box<RawValue>>,
    text: Option<Box<RawValue>>,
    top_p: Option<Box<RawValue>>,
    presence_penalty: Option<Box<RawValue>>,
    frequency_penalty: Option<Box<RawValue>>,
    top_logprobs: Option<Box<RawValue>>,
    temperature: Option<Box<RawValue>>,
    reasoning: Option<Box<RawValue>>,
    max_output_tokens: Option<Box<RawValue>>,
    max_tool_calls: Option<Box<RawValue>>,
    background: Option<Box<RawValue>>,
    service_tier: Option<Box<RawValue>>,
    metadata: Option<Box<RawValue>>,
    safety_identifier: Option<Box<RawValue>>,
    prompt_cache_key: Option<Box<RawValue>>,
}

impl RequestHead {
    /// Parses the head of a Responses request, with client-facing errors.
    pub(crate) fn parse(body: &[u8]) -> Result<RequestHead, Error> {
        let head: RequestHead = parse_body(body, r#"{"model":"...","input":"Hello"}"#)?;
        require_model(head.model.as_deref())?;
        if head.input.is_none() {
            return Err(Error::InvalidRequest {
                message: "The request has no `input`: give the text or the items to respond to, e.g. \"input\":\"Hello\".".into(),
                param: Some("input".into()),
                code: Some("missing_required_parameter".into()),
            });
        }
        head.check_types()?;
        Ok(head)
    }

    /// The response this request continues (`previous_response_id`).
    pub(crate) fn previous_response_id(&self) -> Option<String> {
        raw(&self.previous_response_id).and_then(|v| v.as_str().map(str::to_string))
    }

    /// Whether the client lets the response be stored (`store`, default
    /// true as in the OpenAI API).
    pub(crate) fn store(&self) -> bool {
        raw(&self.store).and_then(|v| v.as_bool()).unwrap_or(true)
    }

    /// Whether `input` may hold `item_reference` items (a quick look at
    /// the raw text).
    pub(crate) fn may_reference_items(&self) -> bool {
        self.input
            .as_ref()
            .is_some_and(|r| r.get().contains("item_reference"))
    }

    /// Replaces `input` with `items`.
    pub(crate) fn set_input(&mut self, items: &[Value]) {
        self.input = serde_json::value::to_raw_value(items).ok();
    }

    /// Drops the request's `input` (the echo does not need it).
    pub(crate) fn forget_input(&mut self) {
        self.input = None;
    }

    /// Takes the request's `input` out (the echo does not need it) as
    /// items: a string is one user message.
    pub(crate) fn take_input(&mut self) -> Vec<Value> {
        match raw(&self.input.take()) {
            Some(Value::Array(items)) => items,
            Some(Value::String(text)) => {
                vec![json!({"type": "message", "role": "user", "content": text})]
            }
            _ => Vec::new(),
        }
    }

    /// Whether the client asked for a stream.
    pub(crate) fn streaming(&self) -> bool {
        self.stream.as_ref().is_some_and(|s| s.get() == "true")
    }

    /// A 400 naming the field when a parameter has the wrong JSON type
    /// (`null` is always accepted), before anything is sent upstream.
    fn check_types(&self) -> Result<(), Error> {
        use JsonType::*;
        type Field<'a> = (&'a str, &'a Option<Box<RawValue>>, &'a [JsonType]);
        let fields: [Field; 21] = [
            ("input", &self.input, &[Str, Array]),
            ("stream", &self.stream, &[Bool]),
            ("instructions", &self.instructions, &[Str, Array]),
            ("previous_response_id", &self.previous_response_id, &[Str]),
            ("store", &self.store, &[Bool]),
            ("tools", &self.tools, &[Array]),
            ("tool_choice", &self.tool_choice, &[Str, Object]),
            ("truncation", &self.truncation, &[Str]),
            ("parallel_tool_calls", &self.parallel_tool_calls, &[Bool]),
            ("text", &self.text, &[Object]),
            ("top_p", &self.top_p, &[Number]),
            ("presence_penalty", &self.presence_penalty, &[Number]),
            ("frequency_penalty", &self.frequency_penalty, &[Number]),
            ("top_logprobs", &self.top_logprobs, &[Number]),
            ("temperature", &self.temperature, &[Number]),
            ("reasoning", &self.reasoning, &[Object]),
            ("max_output_tokens", &self.max_output_tokens, &[Number]),
            ("max_tool_calls", &self.max_tool_calls, &[Number]),
            ("background", &self.background, &[Bool]),
            ("service_tier", &self.service_tier, &[Str]),
            ("metadata", &self.metadata, &[Object]),
        ];
        for (name, value, allowed) in fields {
            let Some(value) = value else { continue };
            let found = JsonType::of(value.get());
            if found == Null || allowed.contains(&found) {
                continue;
            }
            let allowed: Vec<&str> = allowed.iter().map(|t| t.name()).collect();
            return Err(Error::InvalidRequest {
                message: format!(
                    "`{name}` must be {}, not {}.",
                    allowed.join(" or "),
                    found.name()
                ),
                param: Some(name.into()),
                code: Some("invalid_type".into()),
            });
        }
        Ok(())
    }
}

/// The type of a JSON value, from its first character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JsonType {
    Null,
    Bool,
    Number,
    Str,
    Array,
    Object,
}

impl JsonType {
    fn of(raw: &str) -> JsonType {
        match raw.trim_start().as_bytes().first() {
            Some(b'"') => JsonType::Str,
            Some(b'[') => JsonType::Array,
            Some(b'{') => JsonType::Object,
            Some(b't' | b'f') => JsonType::Bool,
            Some(b'n') => JsonType::Null,
            _ => JsonType::Number,
        }
    }

    fn name(self) -> &'static str {
        match self {
            JsonType::Null => "null",
            JsonType::Bool => "a boolean",
            JsonType::Number => "a number",
            JsonType::Str => "a string",
            JsonType::Array => "an array",
            JsonType::Object => "an object",
        }
    }
}

/// Parses a client's JSON object body into `T`, with 400s that say what is
/// wrong; `example` shows a minimal valid body.
pub(crate) fn parse_body<T: serde::de::DeserializeOwned>(
    body: &[u8],
    example: &str,
) -> Result<T, Error> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(Error::InvalidRequest {
            message: format!("The request body must be a JSON object, e.g. {example}."),
            param: None,
            code: Some("invalid_json".into()),
        });
    }
    let invalid = |e: serde_json::Error| Error::InvalidRequest {
        message: format!("The request body is not valid JSON: {e}."),
        param: None,
        code: Some("invalid_json".into()),
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || inner.is_syntax() || inner.is_eof() {
            return invalid(inner);
        }
        Error::InvalidRequest {
            message: format!("`{path}` is not valid here: {inner}."),
            param: Some(path),
            code: Some("invalid_type".into()),
        }
    })?;
    de.end().map_err(invalid)?;
    Ok(parsed)
}

/// A 400 unless `model` names a model: present, and an identifier
/// ([`llmproxy_api::model::check`]), before it is routed or sent anywhere.
pub(crate) fn require_model(model: Option<&str>) -> Result<(), Error> {
    let message = match model {
        Some(m) if !m.trim().is_empty() => {
            return llmproxy_api::model::check(m).map_err(invalid_model);
        }
        Some(_) => "`model` is empty: say which model to use.",
        None => "The request has no `model`: say which model to use, e.g. \"model\":\"gpt-5\".",
    };
    Err(Error::InvalidRequest {
        message: message.into(),
        param: Some("model".into()),
        code: Some("missing_required_parameter".into()),
    })
}

/// The 400 for a model name that is not an identifier.
pub(crate) fn invalid_model(e: llmproxy_api::model::InvalidModel) -> Error {
    Error::InvalidRequest {
        message: e.0,
        param: Some("model".into()),
        code: Some("invalid_model".into()),
    }
}

fn raw(v: &Option<Box<RawValue>>) -> Option<Value> {
    v.as_ref()
        .and_then(|r| serde_json::from_str::<Value>(r.get()).ok())
        .filter(|v| !v.is_null())
}

impl RequestHead {
    /// The value a `ResponseResource` must carry for `key`, taken from the
    /// request or defaulted. `None` for keys that are not echoed.
    fn value(&self, key: &str) -> Option<Value> {
        let v = match key {
            "instructions" => raw(&self.instructions).unwrap_or(Value::Null),
            "previous_response_id" => raw(&self.previous_response_id).unwrap_or(Value::Null),
            "tools" => match raw(&self.tools) {
                Some(Value::Array(tools)) => {
                    Value::Array(tools.into_iter().map(echo_tool).collect())
                }
                _ => json!([]),
            },
            "tool_choice" => raw(&self.tool_choice).unwrap_or_else(|| json!("auto")),
            "truncation" => raw(&self.truncation).unwrap_or_else(|| json!("disabled")),
            "parallel_tool_calls" => raw(&self.parallel_tool_calls)
                .filter(Value::is_boolean)
                .unwrap_or(Value::Bool(true)),
            "text" => {
                let mut text = match raw(&self.text) {
                    Some(Value::Object(t)) => t,
                    _ => Map::new(),
                };
                match text.get_mut("format") {
                    // The spec requires every json_schema field in the echo.
                    Some(Value::Object(format))
                        if format.get("type") == Some(&json!("json_schema")) =>
                    {
                        format.entry("description").or_insert(Value::Null);
                        format.entry("strict").or_insert(Value::Bool(false));
                    }
                    Some(Value::Object(_)) => {}
                    _ => {
                        text.insert("format".into(), json!({"type": "text"}));
                    }
                }
                Value::Object(text)
            }
            "top_p" => number_or(raw(&self.top_p), 1.0),
            "presence_penalty" => number_or(raw(&self.presence_penalty), 0.0),
            "frequency_penalty" => number_or(raw(&self.frequency_penalty), 0.0),
            "top_logprobs" => raw(&self.top_logprobs)
                .filter(Value::is_u64)
                .unwrap_or(json!(0)),
            "temperature" => number_or(raw(&self.temperature), 1.0),
            "reasoning" => {
                let mut r = match raw(&self.reasoning) {
                    Some(Value::Object(r)) => r,
                    _ => Map::new(),
                };
                r.entry("effort").or_insert(Value::Null);
                r.entry("summary").or_insert(Value::Null);
                Value::Object(r)
            }
            "max_output_tokens" => raw(&self.max_output_tokens).unwrap_or(Value::Null),
            "max_tool_calls" => raw(&self.max_tool_calls).unwrap_or(Value::Null),
            "background" => raw(&self.background)
                .filter(Value::is_boolean)
                .unwrap_or(Value::Bool(false)),
            "service_tier" => raw(&self.service_tier)
                .filter(Value::is_string)
                .unwrap_or_else(|| json!("default")),
            "metadata" => raw(&self.metadata).unwrap_or_else(|| json!({})),
            "safety_identifier" => raw(&self.safety_identifier).unwrap_or(Value::Null),
            "prompt_cache_key" => raw(&self.prompt_cache_key).unwrap_or(Value::Null),
            _ => return None,
        };
        Some(v)
    }
}

fn number_or(v: Option<Value>, default: f64) -> Value {
    v.filter(Value::is_number).unwrap_or_else(|| json!(default))
}

/// A request tool as a `ResponseResource` echoes it: function tools get
/// every required key.
fn echo_tool(tool: Value) -> Value {
    match tool {
        Value::Object(mut t) if t.get("type").and_then(Value::as_str) == Some("function") => {
            for key in ["description", "parameters", "strict"] {
                t.entry(key).or_insert(Value::Null);
            }
            Value::Object(t)
        }
        other => other,
    }
}

/// Keys of `ResponseResource` echoed from the request (all required by the
/// OpenResponses schema; `user` is kept for OpenAI clients).
const ECHOED: [&str; 20] = [
    "instructions",
    "previous_response_id",
    "tools",
    "tool_choice",
    "truncation",
    "parallel_tool_calls",
    "text",
    "top_p",
    "presence_penalty",
    "frequency_penalty",
    "top_logprobs",
    "temperature",
    "reasoning",
    "max_output_tokens",
    "max_tool_calls",
    "background",
    "service_tier",
    "metadata",
    "safety_identifier",
    "prompt_cache_key",
];

/// Identity of one response: fixed for its whole life, across snapshots.
#[derive(Debug, Clone)]
pub(crate) struct ResponseMeta {
    pub id: String,
    pub created_at: i64,
    /// The model name the client asked for (echoed, even when the backend
    /// maps it to another upstream name).
    pub model: String,
    /// The proxy stores this response (`store: true` in every snapshot).
    pub stored: bool,
}

impl ResponseMeta {
    pub(crate) fn new(model: &str) -> Self {
        ResponseMeta {
            // Taken from the upstream's first snapshot, or minted.
            id: String::new(),
            created_at: crate::ids::unix_now(),
            model: model.to_string(),
            stored: false,
        }
    }
}

/// Fills every required `ResponseResource` field the translator left out or
/// nulled. `status_hint` is used when there is no `status`.
pub(crate) fn complete_response(
    obj: &mut Map<String, Value>,
    meta: &mut ResponseMeta,
    echo: &RequestHead,
    status_hint: &str,
) {
    match obj.get("id").and_then(Value::as_str) {
        // The upstream's id is what the client may send back later.
        Some(id) if !id.is_empty() && meta.id.is_empty() => meta.id = id.to_string(),
        _ => {}
    }
    if meta.id.is_empty() {
        meta.id = crate::ids::new_id("resp");
    }
    obj.insert("id".into(), Value::String(meta.id.clone()));
    obj.insert("object".into(), json!("response"));
    if !obj.get("created_at").is_some_and(Value::is_i64) {
        obj.insert("created_at".into(), json!(meta.created_at));
    }
    obj.insert("model".into(), Value::String(meta.model.clone()));
    if !obj.get("status").is_some_and(Value::is_string) {
        obj.insert("status".into(), json!(status_hint));
    }
    let status = obj
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or(status_hint)
        .to_string();
    if !obj.get("output").is_some_and(Value::is_array) {
        obj.insert("output".into(), json!([]));
    }
    let completed_at = match obj.get("completed_at") {
        Some(Value::Number(n)) if n.is_i64() => Value::Number(n.clone()),
        _ if status == "completed" => json!(crate::ids::unix_now()),
        _ => Value::Null,
    };
    obj.insert("completed_at".into(), completed_at);
    for key in ["incomplete_details", "usage", "user"] {
        obj.entry(key).or_insert(Value::Null);
    }
    match obj.get_mut("error") {
        Some(Value::Object(err)) => {
            if !err.get("code").is_some_and(Value::is_string) {
                err.insert("code".into(), json!("server_error"));
            }
            if !err.get("message").is_some_and(Value::is_string) {
                err.insert("message".into(), json!("The response failed."));
            }
        }
        _ => {
            obj.insert("error".into(), Value::Null);
        }
    }
    if let Some(Value::Object(usage)) = obj.get_mut("usage") {
        complete_usage(usage);
    }
    // `store`: whether the proxy keeps it; otherwise a stateful upstream
    // says whether it did.
    if meta.stored {
        obj.insert("store".into(), Value::Bool(true));
    } else if !obj.get("store").is_some_and(Value::is_boolean) {
        obj.insert("store".into(), Value::Bool(false));
    }
    for key in ECHOED {
        let present = match obj.get(key) {
            None => false,
            // Nullable fields may stay null; the others must be filled.
            Some(Value::Null) => matches!(
                key,
                "instructions"
                    | "previous_response_id"
                    | "max_output_tokens"
                    | "max_tool_calls"
                    | "safety_identifier"
                    | "prompt_cache_key"
            ),
            Some(_) => true,
        };
        if !present && let Some(v) = echo.value(key) {
            obj.insert(key.to_string(), v);
        }
    }
    normalise_effort(obj);
}

/// OpenAI's `reasoning.effort` values outside the OpenResponses enum, and
/// the nearest value inside it.
const EFFORT_MAP: [(&str, &str); 2] = [("minimal", "low"), ("max", "xhigh")];

/// Maps OpenAI-only effort values (from the request echo or an OpenAI
/// upstream) onto the OpenResponses enum.
fn normalise_effort(obj: &mut Map<String, Value>) {
    if let Some(effort) = obj.get_mut("reasoning").and_then(|r| r.get_mut("effort"))
        && let Some((_, to)) = EFFORT_MAP.iter().find(|(from, _)| effort == from)
    {
        *effort = json!(to);
    }
}

/// Makes a usage object carry all five required fields.
fn complete_usage(usage: &mut Map<String, Value>) {
    let int = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
    let input = int(usage.get("input_tokens"));
    let output = int(usage.get("output_tokens"));
    usage.insert("input_tokens".into(), json!(input));
    usage.insert("output_tokens".into(), json!(output));
    if !usage.get("total_tokens").is_some_and(Value::is_u64) {
        usage.insert("total_tokens".into(), json!(input + output));
    }
    for (key, inner) in [
        ("input_tokens_details", "cached_tokens"),
        ("output_tokens_details", "reasoning_tokens"),
    ] {
        let details = usage.entry(key).or_insert_with(|| json!({}));
        if !details.is_object() {
            *details = json!({});
        }
        if let Value::Object(d) = details
            && !d.get(inner).is_some_and(Value::is_u64)
        {
            d.insert(inner.into(), json!(0));
        }
    }
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

    /// Takes one event from the translator and returns what to emit.
    pub(crate) fn accept(&mut self, text: &str) -> Result<Vec<Value>, String> {
        let mut out = Vec::new();
        if self.terminal {
            return Ok(out);
        }
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
    pub(crate) fn fail(&mut self, err: &Error) -> Vec<Value> {
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
    pub(crate) fn end(&mut self, backend: &str) -> Vec<Value> {
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

/// The canonical event stream of a complete response, for an upstream that
/// answered a streaming request in one piece.
pub(crate) fn events_from_response(response: &Map<String, Value>) -> Vec<String> {
    let mut events: Vec<Value> = Vec::new();
    let mut push = |v: Value| events.push(v);
    let status = response
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("completed");
    let output = response
        .get("output")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (index, item) in output.iter().enumerate() {
        let Some(obj) = item.as_object() else {
            continue;
        };
        let id = obj.get("id").cloned().unwrap_or(Value::Null);
        let mut added = obj.clone();
        added.insert("status".into(), json!("in_progress"));
        match obj.get("type").and_then(Value::as_str) {
            Some("message") => {
                added.insert("content".into(), json!([]));
            }
            Some("function_call") => {
                added.insert("arguments".into(), json!(""));
            }
            Some("reasoning") => {
                added.insert("summary".into(), json!([]));
                added.remove("status");
            }
            _ => {}
        }
        push(json!({"type": "response.output_item.added", "output_index": index, "item": added}));
        match obj.get("type").and_then(Value::as_str) {
            Some("message") => {
                let parts = obj
                    .get("content")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                for (ci, part) in parts.iter().enumerate() {
                    let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
                    let (empty, delta_type, done_type, field) = match kind {
                        "output_text" => (
                            json!({"type": "output_text", "text": "", "annotations": []}),
                            "response.output_text.delta",
                            "response.output_text.done",
                            "text",
                        ),
                        "refusal" => (
                            json!({"type": "refusal", "refusal": ""}),
                            "response.refusal.delta",
                            "response.refusal.done",
                            "refusal",
                        ),
                        _ => continue,
                    };
                    let text = part.get(field).cloned().unwrap_or(json!(""));
                    push(
                        json!({"type": "response.content_part.added", "item_id": id, "output_index": index, "content_index": ci, "part": empty}),
                    );
                    let mut delta = json!({"type": delta_type, "item_id": id, "output_index": index, "content_index": ci, "delta": text});
                    let mut done = json!({"type": done_type, "item_id": id, "output_index": index, "content_index": ci, field: text});
                    if kind == "output_text" {
                        delta["logprobs"] = json!([]);
                        done["logprobs"] = json!([]);
                    }
                    push(delta);
                    push(done);
                    push(
                        json!({"type": "response.content_part.done", "item_id": id, "output_index": index, "content_index": ci, "part": part}),
                    );
                }
            }
            Some("function_call") => {
                let args = match obj.get("arguments").and_then(Value::as_str) {
                    Some(a) if !a.is_empty() => a.to_string(),
                    _ => "{}".to_string(),
                };
                push(
                    json!({"type": "response.function_call_arguments.delta", "item_id": id, "output_index": index, "delta": args}),
                );
                push(
                    json!({"type": "response.function_call_arguments.done", "item_id": id, "output_index": index, "arguments": args}),
                );
            }
            Some("reasoning") => {
                let summary = obj
                    .get("summary")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                for (si, part) in summary.iter().enumerate() {
                    let text = part.get("text").cloned().unwrap_or(json!(""));
                    push(
                        json!({"type": "response.reasoning_summary_part.added", "item_id": id, "output_index": index, "summary_index": si, "part": {"type": "summary_text", "text": ""}}),
                    );
                    push(
                        json!({"type": "response.reasoning_summary_text.delta", "item_id": id, "output_index": index, "summary_index": si, "delta": text}),
                    );
                    push(
                        json!({"type": "response.reasoning_summary_text.done", "item_id": id, "output_index": index, "summary_index": si, "text": text}),
                    );
                    push(
                        json!({"type": "response.reasoning_summary_part.done", "item_id": id, "output_index": index, "summary_index": si, "part": part}),
                    );
                }
            }
            _ => {}
        }
        push(json!({"type": "response.output_item.done", "output_index": index, "item": item}));
    }
    let terminal = match status {
        "incomplete" => "response.incomplete",
        "failed" => "response.failed",
        _ => "response.completed",
    };
    if terminal == "response.failed" {
        let error = response.get("error").cloned().unwrap_or(Value::Null);
        push(json!({"type": "error", "error": {
            "type": "server_error",
            "code": error.get("code").cloned().unwrap_or(Value::Null),
            "message": error.get("message").cloned().unwrap_or(json!("The response failed.")),
            "param": null,
        }}));
    }
    push(json!({"type": terminal, "response": response}));
    events.into_iter().map(|e| e.to_string()).collect()
}

#[cfg(test)]
mod tests;
