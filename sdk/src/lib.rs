//! Building blocks for llmproxy translators.
//!
//! A translator is a WebAssembly component that maps between llmproxy's
//! canonical format (the OpenAI Responses API, as JSON) and one upstream
//! provider's wire format. The contract is the WIT package
//! `llmproxy:translator`; this crate wraps its generated bindings in two plain
//! Rust traits so that the mapping can be written - and unit-tested natively -
//! without touching the component model:
//!
//! ```ignore
//! struct MyBackend;
//! impl llmproxy_sdk::Translator for MyBackend { /* ... */ }
//! llmproxy_sdk::export_translator!(MyBackend);
//! ```
//!
//! Build the component with `cargo build --release --target wasm32-wasip2`.

// Lets the generated bindings name this crate by its public path.
extern crate self as llmproxy_sdk;

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

pub mod chat;
pub mod json;
pub mod mapped;
pub mod passthrough;
pub mod vertex;

/// Wire types and conversions (the `llmproxy-api` crate).
pub use llmproxy_api as api;

/// The bindings generated from `wit/translator.wit`.
#[doc(hidden)]
#[allow(unsafe_code, missing_debug_implementations, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "translator-component",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "__export_component",
        default_bindings_module: "::llmproxy_sdk::bindings",
        runtime_path: "::llmproxy_sdk::__wit_bindgen::rt",
    });
}

pub use bindings::exports::llmproxy::translator::translator::{
    Api, Context, Error, ErrorInfo, Headers, Media, Passthrough, UpstreamError, UpstreamRequest,
    UpstreamResponse,
};

/// The WIT package version this SDK implements.
pub const CONTRACT_VERSION: &str = "0.3.0";

/// A translator: request and response mapping for one upstream wire format.
///
/// For each client request the host calls [`Translator::request`] and then
/// either [`Translator::response`] or [`Translator::stream`] on one instance,
/// which it may reuse for a later request: keep no state between requests.
pub trait Translator {
    /// The state kept while mapping one upstream event stream.
    type Stream: EventStream;

    /// Checks the backend's `settings` (a JSON object) when the host loads its
    /// config. The default accepts only an empty table.
    fn validate_settings(settings: &str) -> Result<(), String> {
        match json::RawObject::parse(settings.as_bytes()) {
            Ok(obj) => match obj.keys().next() {
                None => Ok(()),
                Some(key) => Err(format!(
                    "unknown setting `{key}`: this translator takes no settings"
                )),
            },
            Err(e) => Err(format!("settings are not a JSON object: {e}")),
        }
    }

    /// The client APIs the backend's upstream speaks itself (given its
    /// checked `settings`): the host passes such requests through unchanged
    /// but for the model name, without calling [`Translator::request`] (see
    /// the WIT package's `configure`). The default: none.
    fn passthrough(settings: &str) -> Vec<Passthrough> {
        let _ = settings;
        Vec::new()
    }

    /// For a passthrough declared with `adapt`: the upstream request for a
    /// client's request in `api`, as the client wrote it (see the WIT
    /// package's `adapt`). The default refuses: declare no adapted
    /// passthrough without overriding it.
    fn adapt(ctx: &Context, api: Api, body: &[u8]) -> Result<UpstreamRequest, Error> {
        let _ = (ctx, body);
        Err(Error::unsupported(
            format!("this translator does not adapt {api:?} requests"),
            None,
        ))
    }

    /// Maps a canonical Responses request (JSON bytes) to the upstream request.
    fn request(ctx: &Context, body: &[u8]) -> Result<UpstreamRequest, Error>;

    /// Maps a complete upstream response of any status to a canonical
    /// Responses object (JSON bytes) or an error. `state` is what
    /// [`Translator::request`] put in [`UpstreamRequest::state`].
    fn response(ctx: &Context, state: &str, response: UpstreamResponse) -> Result<Vec<u8>, Error>;

    /// Starts mapping an upstream event stream that answered with `status`.
    fn stream(ctx: Context, state: String, status: u16, headers: Headers) -> Self::Stream;
}

/// Maps one upstream event stream to canonical Responses events.
pub trait EventStream {
    /// Maps one upstream SSE event (`event` is "" when the event had no name)
    /// to zero or more canonical events, each a JSON object.
    fn push(&mut self, event: &str, data: &str) -> Result<Vec<String>, Error>;

    /// The upstream stream ended: returns the events still owed.
    fn finish(&mut self) -> Result<Vec<String>, Error>;
}

impl Error {
    /// A translator fault with a message (HTTP 502 for the client).
    pub fn internal(message: impl Into<String>) -> Self {
        Error::Internal(message.into())
    }

    /// An invalid request (HTTP 400), optionally naming the field at fault.
    pub fn invalid(message: impl Into<String>, param: Option<&str>) -> Self {
        Error::InvalidRequest(ErrorInfo {
            message: message.into(),
            param: param.map(str::to_owned),
            code: None,
        })
    }

    /// A model name this backend cannot use (HTTP 400, `invalid_model`).
    pub fn invalid_model(e: api::model::InvalidModel) -> Self {
        Error::InvalidRequest(ErrorInfo {
            message: e.0,
            param: Some("model".into()),
            code: Some("invalid_model".into()),
        })
    }

    /// A feature this backend cannot provide (HTTP 400, `unsupported_parameter`).
    pub fn unsupported(message: impl Into<String>, param: Option<&str>) -> Self {
        Error::Unsupported(ErrorInfo {
            message: message.into(),
            param: param.map(str::to_owned),
            code: None,
        })
    }
}

/// Turns a non-2xx upstream answer in the OpenAI error format into
/// [`Error::Upstream`], keeping the upstream status and message.
///
/// Understands `{"error":{"message","type","code","param"}}` (OpenAI,
/// OpenResponses), `{"message","type","code"}` at the top level (vLLM and
/// friends) and `{"detail": ...}`; anything else becomes a message quoting the
/// start of the body.
pub fn openai_style_error(status: u16, body: &[u8]) -> Error {
    #[derive(serde::Deserialize)]
    struct Envelope {
        error: Option<Fields>,
        #[serde(flatten)]
        top: Fields,
        detail: Option<serde_json::Value>,
    }
    #[derive(serde::Deserialize)]
    struct Fields {
        message: Option<String>,
        #[serde(rename = "type")]
        kind: Option<String>,
        code: Option<serde_json::Value>,
        param: Option<String>,
    }
    let parsed: Option<Envelope> = serde_json::from_slice(body).ok();
    let (fields, detail) = match parsed {
        Some(Envelope { error: Some(f), .. }) => (Some(f), None),
        Some(Envelope { top, detail, .. }) => (Some(top), detail),
        None => (None, None),
    };
    let code = |v: Option<serde_json::Value>| match v {
        Some(serde_json::Value::String(s)) => Some(s),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let message = fields
        .as_ref()
        .and_then(|f| f.message.clone())
        .or_else(|| {
            detail.map(|d| match d {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            })
        })
        .unwrap_or_else(|| {
            format!(
                "upstream answered HTTP {status}: {}",
                snippet(&String::from_utf8_lossy(body), 300)
            )
        });
    let (error_type, code, param) = match fields {
        Some(f) => (f.kind, code(f.code), f.param),
        None => (None, None, None),
    };
    Error::Upstream(UpstreamError {
        status,
        message,
        error_type,
        code,
        param,
        retry_after: None,
    })
}

impl From<api::ConvertError> for Error {
    fn from(e: api::ConvertError) -> Self {
        let info = ErrorInfo {
            message: e.message,
            param: e.param,
            code: None,
        };
        if e.unsupported {
            Error::Unsupported(info)
        } else {
            Error::InvalidRequest(info)
        }
    }
}

/// The context's extras: the parameters of a Chat client's original
/// request, or a Messages client's Messages-only parameters.
///
/// Its conversation and tools (`messages`, `tools`, `functions`) are left out:
/// the canonical request already carries them, and parsing the client's
/// whole request a second time would double a translator's work on every
/// call. `ctx.extras` keeps the complete Chat request as JSON text
/// (`{"chat": {...}}`) for a translator that wants it verbatim.
pub fn extras(ctx: &Context) -> Result<api::Extras, Error> {
    let invalid =
        |e: serde_json::Error| Error::invalid(format!("the Chat request is not valid: {e}"), None);
    if ctx.extras.is_empty() || ctx.extras == "{}" {
        return Ok(api::Extras::default());
    }
    let outer = json::RawObject::parse(ctx.extras.as_bytes()).map_err(invalid)?;
    if let Some(raw) = outer.get("messages").filter(|raw| raw.get() != "null") {
        let messages = serde_json::from_str(raw.get())
            .map_err(|e| Error::invalid(format!("the Messages request is not valid: {e}"), None))?;
        return Ok(api::Extras {
            chat: None,
            messages: Some(messages),
        });
    }
    let Some(raw) = outer.get("chat").filter(|raw| raw.get() != "null") else {
        return Ok(api::Extras::default());
    };
    let mut chat = json::RawObject::parse(raw.get().as_bytes()).map_err(invalid)?;
    for conversation in ["messages", "tools", "functions"] {
        chat.remove(conversation);
    }
    let chat = serde_json::from_slice(&chat.to_vec()).map_err(invalid)?;
    Ok(api::Extras {
        chat: Some(chat),
        messages: None,
    })
}

/// Refuses a Chat client's request that uses Chat-only parameters this
/// backend cannot honour (all those of
/// [`api::chat::ChatRequest::chat_only_params`] not in `supported`):
/// dropping them silently would change what the client asked for.
pub fn refuse_chat_only(
    extras: &api::Extras,
    supported: &[&str],
    backend: &str,
) -> Result<(), Error> {
    let Some(chat) = &extras.chat else {
        return Ok(());
    };
    match chat
        .chat_only_params()
        .into_iter()
        .find(|p| !supported.contains(p))
    {
        None => Ok(()),
        Some(param) => Err(Error::unsupported(
            format!("`{param}` is not supported by {backend}; remove it from the request"),
            Some(param),
        )),
    }
}

/// Canonical events as the JSON texts [`EventStream`] returns.
pub fn event_strings(events: Vec<serde_json::Value>) -> Vec<String> {
    events.into_iter().map(|e| e.to_string()).collect()
}

/// Parses an upstream's JSON answer; a body that is not JSON is a
/// translator error quoting its start and naming `upstream`.
pub fn json_body(body: &[u8], upstream: &str) -> Result<serde_json::Value, Error> {
    serde_json::from_slice(body).map_err(|e| {
        Error::internal(format!(
            "{upstream} answered with a body that is not JSON ({e}): {}",
            snippet(&String::from_utf8_lossy(body), 200)
        ))
    })
}

/// Parses the data of one upstream SSE event as JSON; `None` when it is
/// empty.
pub fn json_event(data: &str, upstream: &str) -> Result<Option<serde_json::Value>, Error> {
    let data = data.trim();
    if data.is_empty() {
        return Ok(None);
    }
    serde_json::from_str(data).map(Some).map_err(|e| {
        Error::internal(format!(
            "{upstream} sent a stream event that is not JSON ({e}): {}",
            snippet(data, 200)
        ))
    })
}

/// The first `max` characters of `text`, with an ellipsis when cut.
pub fn snippet(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Looks up a header by case-insensitive name.
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Exports a [`Translator`] implementation as the component's
/// `llmproxy:translator/translator` interface. Expands to nothing when not
/// compiling for WebAssembly, so the mapping stays testable natively.
#[macro_export]
macro_rules! export_translator {
    ($translator:ty) => {
        #[cfg(target_family = "wasm")]
        const _: () = {
            use $crate::bindings::exports::llmproxy::translator::translator as wit;

            struct Component;
            struct StreamResource(
                ::core::cell::RefCell<<$translator as $crate::Translator>::Stream>,
            );

            impl wit::Guest for Component {
                type EventStream = StreamResource;

                fn configure(
                    settings: ::std::string::String,
                ) -> ::core::result::Result<
                    ::std::vec::Vec<wit::Passthrough>,
                    ::std::string::String,
                > {
                    <$translator as $crate::Translator>::validate_settings(&settings)?;
                    ::core::result::Result::Ok(
                        <$translator as $crate::Translator>::passthrough(&settings),
                    )
                }

                fn adapt(
                    ctx: wit::Context,
                    api: wit::Api,
                    body: ::std::vec::Vec<u8>,
                ) -> ::core::result::Result<wit::UpstreamRequest, wit::Error> {
                    <$translator as $crate::Translator>::adapt(&ctx, api, &body)
                }

                fn request(
                    ctx: wit::Context,
                    body: ::std::vec::Vec<u8>,
                ) -> ::core::result::Result<wit::UpstreamRequest, wit::Error> {
                    <$translator as $crate::Translator>::request(&ctx, &body)
                }

                fn response(
                    ctx: wit::Context,
                    state: ::std::string::String,
                    response: wit::UpstreamResponse,
                ) -> ::core::result::Result<::std::vec::Vec<u8>, wit::Error> {
                    <$translator as $crate::Translator>::response(&ctx, &state, response)
                }
            }

            impl wit::GuestEventStream for StreamResource {
                fn new(
                    ctx: wit::Context,
                    state: ::std::string::String,
                    status: u16,
                    headers: wit::Headers,
                ) -> Self {
                    StreamResource(::core::cell::RefCell::new(
                        <$translator as $crate::Translator>::stream(ctx, state, status, headers),
                    ))
                }

                fn push(
                    &self,
                    event: ::std::string::String,
                    data: ::std::string::String,
                ) -> ::core::result::Result<::std::vec::Vec<::std::string::String>, wit::Error>
                {
                    $crate::EventStream::push(&mut *self.0.borrow_mut(), &event, &data)
                }

                fn finish(
                    &self,
                ) -> ::core::result::Result<::std::vec::Vec<::std::string::String>, wit::Error>
                {
                    $crate::EventStream::finish(&mut *self.0.borrow_mut())
                }
            }

    $crate::bindings::__export_component!(Component with_types_in $crate::bindings);
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(extras: &str) -> Context {
        Context {
            backend: "b".into(),
            model: "m".into(),
            upstream_model: "m".into(),
            streaming: false,
            settings: "{}".into(),
            extras: extras.into(),
            media: Vec::new(),
        }
    }

    #[test]
    fn extras_keep_the_chat_parameters_and_skip_the_conversation() {
        let extras = extras(&ctx(
            r#"{"chat":{"model":"m","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f"}}],"functions":[{"name":"g"}],"stop":["END"],"seed":7,"n":2,"x_vendor":1}}"#,
        ))
        .unwrap();
        let chat = extras.chat.unwrap();
        assert_eq!(chat.stop_sequences(), ["END"]);
        assert_eq!((chat.seed, chat.n), (Some(7), Some(2)));
        assert_eq!(chat.chat_only_params(), ["n", "stop", "seed"]);
        assert!(chat.messages.is_none() && chat.tools.is_none() && chat.functions.is_none());
        assert_eq!(chat.extra.get("x_vendor"), Some(&serde_json::json!(1)));
    }

    #[test]
    fn extras_without_a_chat_request() {
        for empty in ["", "{}", r#"{"chat":null}"#] {
            assert!(extras(&ctx(empty)).unwrap().chat.is_none(), "{empty}");
        }
        let bad = extras(&ctx(r#"{"chat":{"seed":"seven"}}"#)).unwrap_err();
        assert!(matches!(bad, Error::InvalidRequest(_)), "{bad:?}");
    }
}
