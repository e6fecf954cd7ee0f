//! Egress for Chat Completions clients: a `chat.completion`, or a stream of
//! `chat.completion.chunk` frames - rendered from canonical output, or
//! relayed as the upstream sent it ([`crate::passthrough`]). The HTTP layer
//! writes these bytes; the in-process calls parse them into typed values.

use crate::error::Error;
use crate::exchange::Outcome;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use llmproxy_api::chat_response::response_to_chat;
use llmproxy_api::chat_stream::{ChatFrame, ChunkRenderer};
use serde_json::{Map, Value};

/// A Chat client's answer.
pub(crate) struct ChatAnswer {
    pub body: ChatBody,
    /// The upstream's request id, if it sent one.
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub upstream_id: Option<String>,
}

/// A `chat.completion` or a stream of chunks.
pub(crate) enum ChatBody {
    /// A `chat.completion` (JSON).
    Whole(Bytes),
    /// The frames of a stream: it ends with [`Frame::Done`], or with
    /// [`Frame::Error`] when it failed (so that a broken answer never looks
    /// complete).
    Stream(BoxStream<'static, Frame>),
}

/// One frame of a Chat stream.
#[derive(Debug)]
pub(crate) enum Frame {
    /// `data: <chunk>` (JSON).
    Chunk(Bytes),
    /// `data: {"error": {...}}`: the stream failed; nothing follows.
    Error(Value),
    /// `data: [DONE]`.
    Done,
}

impl Frame {
    /// The error frame for `err`.
    pub(crate) fn error(err: &Error) -> Frame {
        let mut body = Map::new();
        body.insert("error".into(), err.body());
        Frame::Error(Value::Object(body))
    }

    /// Appends the frame as SSE: `data: ...` and a blank line.
    #[cfg(feature = "server")]
    pub(crate) fn write_sse(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(b"data: ");
        match self {
            Frame::Chunk(chunk) => buf.extend_from_slice(chunk),
            // Serializing a Value into a Vec cannot fail.
            Frame::Error(error) => drop(serde_json::to_writer(&mut *buf, error)),
            Frame::Done => buf.extend_from_slice(b"[DONE]"),
        }
        buf.extend_from_slice(b"\n\n");
    }
}

/// The Chat answer for a canonical outcome: `model` is the name the client
/// asked for, `include_usage` whether its stream gets the usage chunk.
pub(crate) fn from_canonical(
    outcome: Outcome,
    model: &str,
    include_usage: bool,
) -> Result<ChatAnswer, Error> {
    Ok(match outcome {
        Outcome::Complete {
            response,
            upstream_id,
        } => {
            super::failed_as_error(&response)?;
            let chat = response_to_chat(&response, model);
            let body = serde_json::to_vec(&chat)
                .map_err(|e| Error::Internal(format!("cannot serialize the answer: {e}")))?;
            ChatAnswer {
                body: ChatBody::Whole(Bytes::from(body)),
                upstream_id,
            }
        }
        Outcome::Stream {
            events,
            upstream_id,
        } => {
            let mut renderer = ChunkRenderer::new(model, include_usage);
            let frames = events
                .flat_map(move |event| futures_util::stream::iter(renderer.event(&event)))
                .map(|frame| match frame {
                    ChatFrame::Chunk(chunk) => {
                        Frame::Chunk(Bytes::from(serde_json::to_vec(&chunk).unwrap_or_default()))
                    }
                    ChatFrame::Error(error) => Frame::Error(error),
                    ChatFrame::Done => Frame::Done,
                })
                .boxed();
            ChatAnswer {
                body: ChatBody::Stream(frames),
                upstream_id,
            }
        }
    })
}

/// The error a Chat stream's error frame (`{"error": {...}}`) reports.
pub(crate) fn stream_error(frame: &Value) -> Error {
    let field = |k: &str| {
        frame
            .get("error")
            .and_then(|e| e.get(k))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    Error::Upstream {
        status: 502,
        message: field("message").unwrap_or_else(|| "The stream failed.".into()),
        error_type: field("type"),
        code: field("code"),
        param: field("param"),
        retry_after: None,
    }
}
