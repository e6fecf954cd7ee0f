//! Wire types of the OpenAI **Responses** API (llmproxy's canonical format,
//! as standardised by OpenResponses) and of **Chat Completions**, and the
//! conversions between them.
//!
//! Every struct keeps the fields it does not know in an `extra` map, so a
//! request or response survives a parse/serialize round trip unchanged.
//! Nothing here does I/O; the crate builds for `wasm32-wasip2` too, where the
//! bundled translators use it.
//!
//! - [`responses`]: the canonical request, items, content parts, response.
//! - [`chat`]: Chat Completions request, response and chunk.
//! - [`chat_request`]: Chat request ⇄ canonical request.
//! - [`chat_response`]: canonical response ⇄ Chat completion.
//! - [`chat_stream`]: canonical events → Chat chunks, and Chat chunks →
//!   canonical events.
//! - [`messages`]: the Anthropic Messages API's request, answer and stream
//!   events, and their conversions from and to the canonical format.
//! - [`events`]: typed canonical stream events.
//! - [`stream`]: [`stream::StreamBuilder`], which emits a well-formed canonical
//!   event stream from provider deltas.
//! - [`envelope`]: provider state (thought and thinking signatures) carried in
//!   reasoning items.
//! - [`tools`]: namespace, custom and hosted tools lowered to function tools
//!   for providers that take only those, and their calls lifted back.
//! - [`turns`]: two-role conversation turns with tool calls paired to their
//!   results (Gemini, Claude).
//! - [`media`]: data URLs and MIME types of images and files.
//! - [`model`]: which model names are accepted (identifiers, never paths).
//! - [`vertex`]: settings and URLs shared by the Vertex AI translators.
//! - [`json`]: [`json::RawObject`], top-level surgery on a JSON object that
//!   keeps every other value as the exact text it was.
//! - [`golden`]: a golden-file test helper.

pub mod chat;
pub mod chat_request;
pub mod chat_response;
pub mod chat_stream;
pub mod envelope;
pub mod events;
pub mod golden;
pub mod ids;
pub mod json;
pub mod media;
pub mod messages;
pub mod model;
pub mod responses;
pub mod stream;
pub mod tools;
pub mod turns;
pub mod vertex;
mod wire;

/// Prefix of llmproxy's reasoning envelopes: `encrypted_content` of a
/// reasoning item that carries another provider's opaque state (Gemini
/// thought signatures, Claude thinking signatures) is `pxy1.` followed by
/// base64url JSON naming the provider. Such items mean nothing to OpenAI.
pub const ENVELOPE_PREFIX: &str = "pxy1.";

/// What the host passes to translators besides the canonical request
/// (`context.extras`): for Chat clients, the original Chat request, whose
/// Chat-only parameters (`stop`, `n`, `seed`, ...) the canonical request
/// cannot carry; for Messages clients, the Messages-only parameters
/// (`stop_sequences`, `top_k`, `thinking`, `metadata`).
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct Extras {
    /// The client's Chat Completions request, when it spoke Chat.
    #[serde(default)]
    pub chat: Option<chat::ChatRequest>,
    /// The client's Messages-only parameters, when it spoke Messages.
    #[serde(default)]
    pub messages: Option<messages::MessagesExtras>,
}

impl Extras {
    /// The stop sequences the client asked for (Chat `stop`, Messages
    /// `stop_sequences`).
    pub fn stop_sequences(&self) -> Vec<String> {
        match (&self.chat, &self.messages) {
            (Some(chat), _) => chat.stop_sequences(),
            (None, Some(m)) => m.stop_sequences.clone().unwrap_or_default(),
            (None, None) => Vec::new(),
        }
    }
}

/// Why a conversion failed: the client sent something invalid, or something
/// the target format cannot express.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertError {
    /// What is wrong and how to fix it.
    pub message: String,
    /// The offending field, e.g. `messages[2].content`.
    pub param: Option<String>,
    /// Whether the input was invalid (false) or valid but unsupported (true).
    pub unsupported: bool,
}

impl ConvertError {
    /// The input is invalid.
    pub fn invalid(message: impl Into<String>, param: impl Into<String>) -> Self {
        ConvertError {
            message: message.into(),
            param: Some(param.into()),
            unsupported: false,
        }
    }

    /// The input is valid but the target cannot express it.
    pub fn unsupported(message: impl Into<String>, param: impl Into<String>) -> Self {
        ConvertError {
            message: message.into(),
            param: Some(param.into()),
            unsupported: true,
        }
    }
}

impl std::fmt::Display for ConvertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConvertError {}
