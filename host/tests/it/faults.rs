//! Upstream faults and bad client input: every failure reaches the client
//! as an explicit, OpenAI-shaped error - never as an answer that looks
//! complete.

use crate::spec::check_stream;
use crate::support::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn chat_body(stream: bool) -> Value {
    json!({"model": "m", "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

fn responses_body(stream: bool) -> Value {
    json!({"model": "m", "input": "hi", "stream": stream})
}

fn error_json(status: u16, message: &str, headers: Vec<(&'static str, &'static str)>) -> Reply {
    Reply::Json(
        status,
        json!({"error": {"message": message, "type": "rate_limit_error", "param": null, "code": "rate_limit_exceeded"}}),
        headers,
    )
}

#[tokio::test]
async fn rate_limits_and_server_errors_keep_status_and_retry_after_on_both_endpoints() {
    let up = FakeUpstream::start().await;
    let proxy = TestProxy::start(&single(&up.base_url)).await;
    for (path, body) in [
        ("/v1/responses", responses_body(false)),
        ("/v1/responses", responses_body(true)),
        ("/v1/chat/completions", chat_body(false)),
        ("/v1/chat/completions", chat_body(true)),
    ] {
        up.script([error_json(
            429,
            "Rate limit reached",
            vec![("retry-after", "12")],
        )]);
        let r = proxy
            .http
            .post(format!("{}{path}", proxy.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 429, "{path}");
        assert_eq!(r.headers()["retry-after"], "12", "{path}");
        assert!(r.headers().contains_key("x-request-id"), "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["message"], "Rate limit reached", "{path}");
        assert_eq!(v["error"]["code"], "rate_limit_exceeded", "{path}");

        up.script([Reply::Raw(
            503,
            "text/html",
            "<html>Service Unavailable</html>".into(),
        )]);
        let (status, _, v) = proxy.post(path, &body).await;
        assert_eq!(status, 503, "{path}: {v}");
        for field in ["message", "type", "param", "code"] {
            assert!(v["error"].get(field).is_some(), "{path}: {v}");
        }
    }
}

#[tokio::test]
async fn retries_are_off_by_default_and_cover_failures_before_the_answer() {
    let up = FakeUpstream::start().await;
    let proxy = TestProxy::start(&single(&up.base_url)).await;
    up.script([Reply::Json(
        502,
        json!({"error": {"message": "bad gateway"}}),
        vec![],
    )]);
    let (status, _, _) = proxy.post("/v1/responses", &responses_body(false)).await;
    assert_eq!(status, 502);
    assert_eq!(up.received().len(), 1, "no retry unless configured");

    let up = FakeUpstream::start().await;
    let config = format!(
        "[server]\nmetrics_on_main_listener = true\n{}retries = 2\nretry_backoff_secs = 0.05\n",
        single(&up.base_url)
    );
    let proxy = TestProxy::start(&config).await;
    for stream in [false, true] {
        let before = up.received().len();
        up.script([
            Reply::Json(503, json!({"error": {"message": "overloaded"}}), vec![]),
            error_json(429, "slow down", vec![("retry-after", "0")]),
        ]);
        let (status, _, body) = proxy.post("/v1/responses", &responses_body(stream)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(up.received().len() - before, 3, "two retries, then success");
    }
    let metrics = proxy.scrape().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("llmproxy_upstream_retries_total{") && l.ends_with(" 4")),
        "{metrics}"
    );
    // More failures than retries: the last one is passed on.
    let before = up.received().len();
    up.script([
        Reply::Json(500, json!({"error": {"message": "one"}}), vec![]),
        Reply::Json(500, json!({"error": {"message": "two"}}), vec![]),
        Reply::Json(500, json!({"error": {"message": "three"}}), vec![]),
    ]);
    let (status, _, body) = proxy.post("/v1/responses", &responses_body(false)).await;
    assert_eq!(
        (status.as_u16(), body["error"]["message"].as_str()),
        (500, Some("three"))
    );
    assert_eq!(up.received().len() - before, 3);
    // A Retry-After longer than a minute is the client's business.
    let before = up.received().len();
    up.script([error_json(
        429,
        "come back later",
        vec![("retry-after", "120")],
    )]);
    let started = Instant::now();
    let r = proxy
        .http
        .post(format!("{}/v1/responses", proxy.url))
        .json(&responses_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "120");
    assert_eq!(up.received().len() - before, 1);
    assert!(started.elapsed() < Duration::from_secs(5));
    // Client errors are never retried.
    let before = up.received().len();
    up.script([Reply::Json(
        400,
        json!({"error": {"message": "bad"}}),
        vec![],
    )]);
    let (status, _, _) = proxy.post("/v1/responses", &responses_body(false)).await;
    assert_eq!(status, 400);
    assert_eq!(up.received().len() - before, 1);
}

#[tokio::test]
async fn refused_connections_are_retried_when_configured_then_502() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let config = format!(
        "{}retries = 3\nretry_backoff_secs = 0.2\n",
        single(&format!("http://{addr}/v1"))
    );
    let proxy = TestProxy::start(&config).await;
    // The upstream comes up while the proxy is backing off.
    let revive = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let _ = tokio::io::AsyncReadExt::read(&mut socket, &mut buf).await;
        let body = response_object("m", "completed", "back").to_string();
        let reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        tokio::io::AsyncWriteExt::write_all(&mut socket, reply.as_bytes())
            .await
            .unwrap();
    });
    let (status, _, body) = proxy.post("/v1/responses", &responses_body(false)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["output"][0]["content"][0]["text"], "back");
    revive.await.unwrap();
}

#[tokio::test]
async fn connect_timeout_is_a_504() {
    // A listener whose accept queue is full: the kernel drops further SYNs,
    // so connecting hangs like a black-holed host.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut held = Vec::new();
    loop {
        match tokio::time::timeout(
            Duration::from_millis(300),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            Ok(Ok(s)) => held.push(s),
            _ => break,
        }
        assert!(held.len() < 64, "the accept queue never filled");
    }
    let config = format!(
        "{}connect_timeout_secs = 0.4\n",
        single(&format!("http://{addr}/v1"))
    );
    let proxy = TestProxy::start(&config).await;
    for (path, body) in [
        ("/v1/responses", responses_body(true)),
        ("/v1/chat/completions", chat_body(false)),
    ] {
        let started = Instant::now();
        let (status, _, v) = proxy.post(path, &body).await;
        assert_eq!(status, 504, "{path}: {v}");
        assert_eq!(v["error"]["code"], "upstream_timeout", "{v}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    drop(listener);
}

#[tokio::test]
async fn total_timeout_ends_a_trickling_stream_with_a_terminal_error() {
    let up = FakeUpstream::start().await;
    let events = text_stream_events("m", "one two three four five");
    up.script([Reply::Sse {
        chunks: sse_body(&events),
        delay: Duration::from_millis(250),
        then_hang: false,
    }]);
    let config = format!(
        "{}idle_timeout_secs = 5\ntotal_timeout_secs = 0.6\n",
        single(&up.base_url)
    );
    let proxy = TestProxy::start(&config).await;
    let started = Instant::now();
    let (status, events, done) = proxy
        .post_stream("/v1/responses", &responses_body(true))
        .await;
    assert_eq!(status, 200);
    assert!(started.elapsed() < Duration::from_secs(3));
    check_stream(&events).unwrap();
    let last = events.last().unwrap();
    assert_eq!(last["type"], "response.failed", "{last}");
    assert_eq!(last["response"]["error"]["code"], "upstream_timeout");
    // The message names the limit that fired, not a silence that was not.
    let message = last["response"]["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("limit of 0.6s (total_timeout_secs)") && !message.contains("silent"),
        "{message}"
    );
    // [DONE] still closes the stream (OpenResponses), after the failure.
    assert!(done);
}

#[tokio::test]
async fn garbage_from_the_upstream_is_an_explicit_error() {
    let up = FakeUpstream::start().await;
    let proxy = TestProxy::start(&single(&up.base_url)).await;
    // Non-streamed bodies that are not a response.
    for reply in [
        Reply::Raw(
            200,
            "application/json",
            "{\"id\": \"resp_1\", \"outp".into(),
        ),
        Reply::Raw(200, "text/html", "<html>captive portal</html>".into()),
        Reply::Raw(200, "application/json", "[1, 2, 3]".into()),
    ] {
        up.script([reply.clone()]);
        let (status, _, v) = proxy.post("/v1/responses", &responses_body(false)).await;
        assert_eq!(status, 502, "{reply:?}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().len() > 10, "{v}");
        up.script([reply.clone()]);
        let (status, _, v) = proxy.post("/v1/chat/completions", &chat_body(false)).await;
        assert_eq!(status, 502, "{reply:?}: {v}");
    }
    // Streams that go wrong after a good start.
    let good = sse_body(&text_stream_events("m", "partial answer")[..4]);
    let broken: Vec<Vec<String>> = vec![
        // Invalid JSON in an event.
        [good.clone(), vec!["event: response.output_text.delta\ndata: {\"type\": \"response.output_text.del\n\n".into()]].concat(),
        // Not SSE at all.
        [good.clone(), vec!["<html><body>502 Bad Gateway</body></html>\n\n".into()]].concat(),
        // Dropped without a terminal event.
        good.clone(),
    ];
    for chunks in broken {
        for path in ["/v1/responses", "/v1/chat/completions"] {
            up.script([Reply::Sse {
                chunks: chunks.clone(),
                delay: Duration::ZERO,
                then_hang: false,
            }]);
            if path == "/v1/responses" {
                let (_, events, _) = proxy.post_stream(path, &responses_body(true)).await;
                check_stream(&events).unwrap();
                let last = events.last().unwrap();
                assert_eq!(last["type"], "response.failed", "{chunks:?}: {last}");
                assert!(last["response"]["error"]["message"].is_string());
            } else {
                let text = chat_stream_raw(&proxy, &chat_body(true)).await;
                let (_, finish, _, _, done) = chat_chunks(&text);
                assert!(!done, "no [DONE] after a broken stream: {text}");
                assert!(finish.is_empty(), "{text}");
                let errors = text.matches("data: {\"error\"").count();
                assert_eq!(errors, 1, "one error frame: {text}");
                assert!(
                    !text.contains("\"finish_reason\":\"stop\""),
                    "no finish pretending success: {text}"
                );
            }
        }
    }
    // Bytes that are not UTF-8.
    up.script([Reply::Sse {
        chunks: vec![String::from_utf8_lossy(b"data: \xff\xfe\n\n").into_owned()],
        delay: Duration::ZERO,
        then_hang: false,
    }]);
    let (_, events, _) = proxy
        .post_stream("/v1/responses", &responses_body(true))
        .await;
    assert_eq!(events.last().unwrap()["type"], "response.failed");
}

/// Waits until the upstream saw `n` abandoned replies.
async fn until_cancelled(up: &FakeUpstream, n: usize) -> Duration {
    let started = Instant::now();
    while up.cancelled() < n {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the upstream request was not cancelled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

#[tokio::test]
async fn a_client_that_goes_away_cancels_the_upstream_request() {
    let up = FakeUpstream::start().await;
    let proxy = TestProxy::start(&single(&up.base_url)).await;
    // Waiting for the upstream's answer.
    for (path, body) in [
        ("/v1/responses", responses_body(false)),
        ("/v1/chat/completions", chat_body(true)),
    ] {
        up.script([Reply::Hang]);
        let before = up.cancelled();
        let r = proxy
            .http
            .post(format!("{}{path}", proxy.url))
            .json(&body)
            .timeout(Duration::from_millis(300))
            .send()
            .await;
        assert!(r.is_err(), "the client gave up");
        let took = until_cancelled(&up, before + 1).await;
        eprintln!(
            "{path}: upstream cancelled {} ms after the client left",
            took.as_millis()
        );
    }
    // In the middle of a stream.
    let events = text_stream_events("m", "a long answer");
    up.script([Reply::Sse {
        chunks: sse_body(&events[..3]),
        delay: Duration::ZERO,
        then_hang: true,
    }]);
    let before = up.cancelled();
    let mut r = proxy
        .http
        .post(format!("{}/v1/responses", proxy.url))
        .json(&responses_body(true))
        .send()
        .await
        .unwrap();
    let first = r.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("response.created"));
    drop(r);
    let took = until_cancelled(&up, before + 1).await;
    eprintln!(
        "stream: upstream cancelled {} ms after the client left",
        took.as_millis()
    );
}

#[tokio::test]
async fn bad_input_is_a_4xx_saying_what_to_fix() {
    let up = FakeUpstream::start().await;
    let config = format!("[server]\nmax_body_mib = 1\n{}", single(&up.base_url));
    let proxy = TestProxy::start(&config).await;
    let deep = |n: usize| {
        format!(
            r#"{{"model":"m","input":{}"x"{}}}"#,
            "[".repeat(n),
            "]".repeat(n)
        )
    };
    let deep_chat = |n: usize| {
        format!(
            r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}}],"metadata":{}1{}}}"#,
            "{\"a\":".repeat(n),
            "}".repeat(n)
        )
    };
    type Case = (&'static str, Vec<u8>, u16, &'static str);
    let cases: Vec<Case> = vec![
        (
            "/v1/responses",
            b"\xff\xfe{\"model\":\"m\"}".to_vec(),
            400,
            "JSON",
        ),
        (
            "/v1/responses",
            b"{\"model\":\"m\",\"input\":\"caf\xe9\"}".to_vec(),
            400,
            "JSON",
        ),
        (
            "/v1/chat/completions",
            b"{\"model\":\"\xc3\x28\",\"messages\":[]}".to_vec(),
            400,
            "JSON",
        ),
        ("/v1/responses", deep(10_000).into_bytes(), 400, "nest"),
        (
            "/v1/chat/completions",
            deep_chat(10_000).into_bytes(),
            400,
            "nest",
        ),
        ("/v1/responses", br#"{"model":"m"}"#.to_vec(), 400, "input"),
        (
            "/v1/responses",
            br#"{"model":"m","input":5}"#.to_vec(),
            400,
            "input",
        ),
        (
            "/v1/responses",
            br#"{"model":"m","input":"hi","stream":"yes"}"#.to_vec(),
            400,
            "stream",
        ),
        (
            "/v1/responses",
            br#"{"model":"m","input":"hi","tools":{}}"#.to_vec(),
            400,
            "tools",
        ),
        (
            "/v1/responses",
            br#"{"model":"m","input":"hi","temperature":"hot"}"#.to_vec(),
            400,
            "temperature",
        ),
        (
            "/v1/chat/completions",
            br#"{"model":"m"}"#.to_vec(),
            400,
            "messages",
        ),
        (
            "/v1/chat/completions",
            br#"{"model":"m","messages":"hi"}"#.to_vec(),
            400,
            "messages",
        ),
        (
            "/v1/chat/completions",
            br#"{"model":"m","messages":[{"role":"user","content":7}]}"#.to_vec(),
            400,
            "content",
        ),
        (
            "/v1/chat/completions",
            br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":-3}"#
                .to_vec(),
            400,
            "max_tokens",
        ),
        (
            "/v1/chat/completions",
            br#"{"messages":[{"role":"user","content":"hi"}]}"#.to_vec(),
            400,
            "model",
        ),
        ("/v1/chat/completions", b"".to_vec(), 400, "JSON"),
        ("/v1/responses", b"null".to_vec(), 400, "JSON object"),
    ];
    for (path, body, want, mentions) in cases {
        let shown = String::from_utf8_lossy(&body)
            .chars()
            .take(80)
            .collect::<String>();
        let (status, v) = proxy.post_raw(path, body).await;
        assert_eq!(status, want, "{path} {shown}: {v}");
        let error = &v["error"];
        for field in ["message", "type", "param", "code"] {
            assert!(error.get(field).is_some(), "{path} {shown}: {v}");
        }
        let said = format!("{} {}", error["message"], error["param"]);
        assert!(
            said.contains(mentions),
            "{path} {shown}: the error should mention {mentions:?}: {v}"
        );
    }
    // Unknown model, in both endpoints.
    let config = format!(
        "[[backends]]\nname = \"only\"\nkind = \"openresponses\"\nbase_url = \"{}\"\nmodels = [\"qwen*\"]\n",
        up.base_url
    );
    let proxy = TestProxy::start(&config).await;
    for (path, body) in [
        ("/v1/responses", responses_body(false)),
        ("/v1/chat/completions", chat_body(true)),
    ] {
        let (status, _, v) = proxy.post(path, &body).await;
        assert_eq!(status, 404, "{v}");
        assert_eq!(v["error"]["code"], "model_not_found");
        assert_eq!(v["error"]["param"], "model");
    }
    assert!(up.received().is_empty(), "nothing bad reached the upstream");
}
