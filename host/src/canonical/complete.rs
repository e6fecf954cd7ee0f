//! Completing a `ResponseResource`: every field the OpenResponses schema
//! requires, filled from the request's echo or defaulted.

use crate::ingress::{RequestHead, raw};
use serde_json::{Map, Value, json};

impl RequestHead {
    /// Every parameter a `ResponseResource` echoes, parsed once per request
    /// (each snapshot of a stream echoes them all).
    pub(crate) fn echoed(&self) -> &Map<String, Value> {
        self.echo.get_or_init(|| {
            ECHOED
                .iter()
                .filter_map(|key| Some((key.to_string(), self.value(key)?)))
                .collect()
        })
    }

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
        if !present && let Some(v) = echo.echoed().get(key) {
            obj.insert(key.to_string(), v.clone());
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
