//! Helpers for translators whose upstream speaks Chat Completions (OpenAI
//! and the many servers compatible with it, Mistral, ...).
//!
//! Build the upstream request with
//! [`api::chat_request::responses_to_chat`](crate::api::chat_request::responses_to_chat),
//! adjust what your server does differently, and map its answers back with
//! [`response`] and [`ChatStream`].

use crate::api::chat::ChatCompletion;
use crate::api::chat_response::chat_to_response;
use crate::api::chat_stream::ChunkParser;
use crate::api::ids::IdGen;
use crate::{Error, EventStream, UpstreamError, UpstreamResponse};

/// Maps a Chat Completions answer of any status to a canonical Responses
/// object, or the upstream's error (OpenAI error format).
pub fn response(response: UpstreamResponse) -> Result<Vec<u8>, Error> {
    if !(200..300).contains(&response.status) {
        return Err(crate::openai_style_error(response.status, &response.body));
    }
    let chat: ChatCompletion = serde_json::from_slice(&response.body).map_err(|e| {
        Error::internal(format!(
            "upstream answered with a body that is not a chat.completion ({e}): {}",
            crate::snippet(&String::from_utf8_lossy(&response.body), 200)
        ))
    })?;
    let canonical = chat_to_response(&chat, &mut IdGen::new());
    serde_json::to_vec(&canonical).map_err(|e| Error::internal(e.to_string()))
}

/// Maps a stream of `chat.completion.chunk`s to canonical events. An error
/// object in the stream becomes an upstream error.
#[derive(Debug)]
pub struct ChatStream(ChunkParser);

impl ChatStream {
    /// A stream with fresh ids.
    pub fn new() -> Self {
        ChatStream(ChunkParser::new(IdGen::new()))
    }
}

impl Default for ChatStream {
    fn default() -> Self {
        Self::new()
    }
}

impl EventStream for ChatStream {
    fn push(&mut self, _event: &str, data: &str) -> Result<Vec<String>, Error> {
        self.0.push(data).map(crate::event_strings).map_err(|e| {
            Error::Upstream(UpstreamError {
                status: 502,
                message: e.message,
                error_type: e.error_type,
                code: e.code,
                param: None,
                retry_after: None,
            })
        })
    }

    fn finish(&mut self) -> Result<Vec<String>, Error> {
        Ok(crate::event_strings(self.0.end()))
    }
}
