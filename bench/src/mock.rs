//! The mock upstream: OpenAI Chat, Responses, Vertex Gemini and Vertex
//! Claude answers, whole or streamed, from bodies serialised at startup.
//! Knobs: latency before the answer, chunks per stream, delay between them.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

/// How the mock answers.
#[derive(Debug, Clone, Copy)]
pub struct Knobs {
    pub latency: Duration,
    pub chunks: usize,
    pub chunk_delay: Duration,
}

/// The answers of one wire format: whole, and as stream frames.
struct Shape {
    whole: Bytes,
    frames: Vec<Bytes>,
}

struct Answers {
    chat: Shape,
    responses: Shape,
    gemini: Shape,
    claude: Shape,
    knobs: Knobs,
}

/// The text every stream delta carries (what time-to-first-token looks for).
pub const TOKEN: &str = "tok ";

fn sse(data: &serde_json::Value) -> Bytes {
    Bytes::from(format!("data: {data}\n\n"))
}

fn named(event: &str, data: &serde_json::Value) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

fn answers(knobs: Knobs) -> Answers {
    use serde_json::json;
    let n = knobs.chunks.max(1);
    let text = TOKEN.repeat(n);
    let chat_whole = json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": n, "total_tokens": 10 + n}});
    let mut chat_frames: Vec<Bytes> = (0..n)
        .map(|i| {
            let delta = if i == 0 { json!({"role": "assistant", "content": TOKEN}) } else { json!({"content": TOKEN}) };
            sse(&json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                "choices": [{"index": 0, "delta": delta, "finish_reason": null}]}))
        })
        .collect();
    chat_frames.push(sse(
        &json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": n, "total_tokens": 10 + n}}),
    ));
    chat_frames.push(Bytes::from_static(b"data: [DONE]\n\n"));

    let message = json!({"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}]});
    let usage = json!({"input_tokens": 10, "output_tokens": n, "total_tokens": 10 + n,
        "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}});
    let done = json!({"id": "resp_1", "object": "response", "created_at": 1, "status": "completed", "model": "m",
        "output": [message], "usage": usage});
    let mut responses_frames = vec![
        named(
            "response.created",
            &json!({"type": "response.created", "sequence_number": 0,
            "response": {"id": "resp_1", "object": "response", "created_at": 1, "status": "in_progress", "model": "m", "output": []}}),
        ),
        named(
            "response.output_item.added",
            &json!({"type": "response.output_item.added", "sequence_number": 1, "output_index": 0,
            "item": {"type": "message", "id": "msg_1", "status": "in_progress", "role": "assistant", "content": []}}),
        ),
        named(
            "response.content_part.added",
            &json!({"type": "response.content_part.added", "sequence_number": 2,
            "item_id": "msg_1", "output_index": 0, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}}),
        ),
    ];
    for i in 0..n {
        responses_frames.push(named("response.output_text.delta", &json!({"type": "response.output_text.delta",
            "sequence_number": 3 + i, "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": TOKEN, "logprobs": []})));
    }
    responses_frames.push(named(
        "response.completed",
        &json!({"type": "response.completed", "sequence_number": 3 + n, "response": done}),
    ));

    let gemini_usage =
        json!({"promptTokenCount": 10, "candidatesTokenCount": n, "totalTokenCount": 10 + n});
    let gemini_whole = json!({"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}],
        "usageMetadata": gemini_usage, "modelVersion": "gemini-2.5-flash"});
    let gemini_frames = (0..n)
        .map(|i| {
            let mut chunk = json!({"candidates": [{"content": {"role": "model", "parts": [{"text": TOKEN}]}}],
                "modelVersion": "gemini-2.5-flash"});
            if i + 1 == n {
                chunk["candidates"][0]["finishReason"] = json!("STOP");
                chunk["usageMetadata"] = gemini_usage.clone();
            }
            sse(&chunk)
        })
        .collect();

    let claude_whole = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 10, "output_tokens": n}});
    let mut claude_frames = vec![
        named(
            "message_start",
            &json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
            "model": "claude-sonnet-4-5", "content": [], "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 10, "output_tokens": 1}}}),
        ),
        named(
            "content_block_start",
            &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
    ];
    for _ in 0..n {
        claude_frames.push(named(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": TOKEN}}),
        ));
    }
    claude_frames.push(named(
        "content_block_stop",
        &json!({"type": "content_block_stop", "index": 0}),
    ));
    claude_frames.push(named("message_delta", &json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
        "usage": {"output_tokens": n}})));
    claude_frames.push(named("message_stop", &json!({"type": "message_stop"})));

    let bytes = |v: serde_json::Value| Bytes::from(v.to_string());
    Answers {
        chat: Shape {
            whole: bytes(chat_whole),
            frames: chat_frames,
        },
        responses: Shape {
            whole: bytes(done),
            frames: responses_frames,
        },
        gemini: Shape {
            whole: bytes(gemini_whole),
            frames: gemini_frames,
        },
        claude: Shape {
            whole: bytes(claude_whole),
            frames: claude_frames,
        },
        knobs,
    }
}

type Body = BoxBody<Bytes, Infallible>;

async fn answer(
    answers: Arc<Answers>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path().to_string();
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if path == "/token" {
        let token = r#"{"access_token":"mock-token","expires_in":3600,"token_type":"Bearer"}"#;
        return Ok(whole(
            StatusCode::OK,
            "application/json",
            Bytes::from_static(token.as_bytes()),
        ));
    }
    let wants_stream = || body.windows(13).any(|w| w == b"\"stream\":true");
    let (shape, stream) = if path.ends_with("/chat/completions") {
        (&answers.chat, wants_stream())
    } else if path.ends_with("/responses") {
        (&answers.responses, wants_stream())
    } else if path.contains("publishers/anthropic") {
        (&answers.claude, path.ends_with(":streamRawPredict"))
    } else if path.contains(":streamGenerateContent") || path.contains(":generateContent") {
        (&answers.gemini, path.contains(":streamGenerateContent"))
    } else {
        return Ok(whole(
            StatusCode::NOT_FOUND,
            "text/plain",
            Bytes::from(format!("no mock for {path}")),
        ));
    };
    let knobs = answers.knobs;
    if !knobs.latency.is_zero() {
        tokio::time::sleep(knobs.latency).await;
    }
    if !stream {
        return Ok(whole(
            StatusCode::OK,
            "application/json",
            shape.whole.clone(),
        ));
    }
    let frames = shape.frames.clone();
    let delay = knobs.chunk_delay;
    let body = futures_util::stream::unfold(
        (frames.into_iter(), true),
        move |(mut rest, first)| async move {
            let frame = rest.next()?;
            if !first && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Some((Ok::<_, Infallible>(Frame::data(frame)), (rest, false)))
        },
    );
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(body)));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream"),
    );
    Ok(response)
}

fn whole(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut response = Response::new(BodyExt::boxed(Full::new(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}

/// Serves the mock on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, knobs: Knobs) {
    let answers = Arc::new(answers(knobs));
    crate::serve_http(listener, move |request| answer(answers.clone(), request)).await;
}
