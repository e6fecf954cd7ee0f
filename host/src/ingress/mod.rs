//! Ingress: what the host checks and reads of a client's request before it
//! is routed - JSON shape and nesting, the model name, and the head of a
//! Responses request (routing fields and the parameters a response echoes).
//! Chat Completions requests are converted to the canonical request in
//! [`chat`].

pub(crate) mod chat;
pub(crate) mod messages;

use crate::error::Error;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

/// What the host reads from a canonical request: routing fields, and the
/// parameters a `ResponseResource` echoes back.
///
/// The echoed parameters are kept as raw JSON until a response needs them
/// (a pass-through upstream usually echoes them itself).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RequestHead {
    pub model: Option<String>,
    pub stream: Option<Box<RawValue>>,
    pub input: Option<Box<RawValue>>,
    pub instructions: Option<Box<RawValue>>,
    pub previous_response_id: Option<Box<RawValue>>,
    pub store: Option<Box<RawValue>>,
    pub tools: Option<Box<RawValue>>,
    pub tool_choice: Option<Box<RawValue>>,
    pub truncation: Option<Box<RawValue>>,
    pub parallel_tool_calls: Option<Box<RawValue>>,
    pub text: Option<Box<RawValue>>,
    pub top_p: Option<Box<RawValue>>,
    pub presence_penalty: Option<Box<RawValue>>,
    pub frequency_penalty: Option<Box<RawValue>>,
    pub top_logprobs: Option<Box<RawValue>>,
    pub temperature: Option<Box<RawValue>>,
    pub reasoning: Option<Box<RawValue>>,
    pub max_output_tokens: Option<Box<RawValue>>,
    pub max_tool_calls: Option<Box<RawValue>>,
    pub background: Option<Box<RawValue>>,
    pub service_tier: Option<Box<RawValue>>,
    pub metadata: Option<Box<RawValue>>,
    pub safety_identifier: Option<Box<RawValue>>,
    pub prompt_cache_key: Option<Box<RawValue>>,
    /// The echoed parameters, once parsed (see `canonical::complete`).
    #[serde(skip)]
    pub echo: std::cell::OnceCell<serde_json::Map<String, Value>>,
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

/// A parameter of the request, parsed; `None` when absent or null.
pub(crate) fn raw(v: &Option<Box<RawValue>>) -> Option<Value> {
    v.as_ref()
        .and_then(|r| serde_json::from_str::<Value>(r.get()).ok())
        .filter(|v| !v.is_null())
}

/// Deepest JSON nesting accepted in a request body (tool schemas included).
#[cfg(feature = "server")]
const MAX_NESTING: usize = 64;

/// Refuses bodies nested deeper than [`MAX_NESTING`], before any parser
/// (the host's or a translator's) recurses into them, and strings with a
/// `\u` escape of half a surrogate pair (which the host's raw pass-through
/// parsing would let through, and a translator refuse in other words).
#[cfg(feature = "server")]
pub(crate) fn check_nesting(body: &[u8]) -> Result<(), Error> {
    let invalid = |message: String| Error::InvalidRequest {
        message,
        param: None,
        code: Some("invalid_json".into()),
    };
    let hex = |at: usize| {
        body.get(at..at + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u16::from_str_radix(h, 16).ok())
    };
    let lone = |at: usize| {
        invalid(format!(
            "The request body is not valid JSON: the escape at byte {at} is half of a UTF-16 surrogate pair (\\ud800-\\udfff must come as a high-low pair)."
        ))
    };
    let (mut depth, mut in_string) = (0usize, false);
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        i += 1;
        if in_string {
            match b {
                b'\\' if body.get(i) == Some(&b'u') => {
                    let at = i - 1;
                    match hex(i + 1) {
                        Some(0xd800..=0xdbff) => {
                            let low = (body.get(i + 5..i + 7) == Some(&b"\\u"[..]))
                                .then(|| hex(i + 7))
                                .flatten();
                            if !matches!(low, Some(0xdc00..=0xdfff)) {
                                return Err(lone(at));
                            }
                            i += 11;
                        }
                        Some(0xdc00..=0xdfff) => return Err(lone(at)),
                        _ => i += 5,
                    }
                }
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(invalid(format!(
                        "The request body nests JSON arrays and objects more than {MAX_NESTING} levels deep; flatten it."
                    )));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(all(test, feature = "server"))]
mod tests {
    use super::*;

    #[test]
    fn nesting_is_counted_outside_strings_only() {
        let deep = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
        assert!(check_nesting(deep(MAX_NESTING).as_bytes()).is_ok());
        assert!(check_nesting(deep(MAX_NESTING + 1).as_bytes()).is_err());
        let quoted = format!(r#"{{"a":"{}\"{}"}}"#, "[".repeat(500), "{".repeat(500));
        assert!(check_nesting(quoted.as_bytes()).is_ok());
    }

    #[test]
    fn half_surrogate_pairs_are_refused() {
        for ok in [
            r#"{"a":"\ud83d\ude00"}"#,
            r#"{"a":"\u00e9\\ud800"}"#,
            r#"{"a":"\\\u0041"}"#,
        ] {
            assert!(check_nesting(ok.as_bytes()).is_ok(), "{ok}");
        }
        for bad in [
            r#"{"a":"\ud800"}"#,
            r#"{"a":"\ud800x"}"#,
            r#"{"a":"\ud800\u0041"}"#,
            r#"{"a":"\udc00"}"#,
            r#"{"a":"x\udfff"}"#,
        ] {
            let e = check_nesting(bad.as_bytes()).unwrap_err();
            assert_eq!(e.code(), Some("invalid_json"), "{bad}");
            assert!(e.to_string().contains("surrogate"), "{bad}: {e}");
        }
    }
}
