//! `GET /metrics` on `server.metrics_listen`: after a known mix of
//! requests through the real binary, every counter moved by exactly what
//! was sent, and `promtool check metrics` accepts the text.

use crate::binary::spawn;
use crate::support::*;
use serde_json::json;
use std::time::Duration;

const KEY: &str = "metrics-client-key-0123456789";

/// The value of the sample `line_start` (a metric name with its labels).
fn sample(text: &str, line_start: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(line_start) && l[line_start.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_count_what_was_sent() {
    let chat = FakeUpstream::start().await;
    let responses = FakeUpstream::start().await;
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\n\n\
         [[backends]]\nname = \"chat\"\nkind = \"openai\"\nbase_url = \"{}\"\nauth = \"none\"\nmodels = [\"gpt-*\"]\n\n\
         [[backends]]\nname = \"or\"\nkind = \"openresponses\"\nbase_url = \"{}\"\nmodels = [\"or-*\"]\n",
        chat.base_url, responses.base_url
    );
    let dir = std::env::temp_dir().join(format!("llmproxy-metrics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("llmproxy.toml");
    std::fs::write(&config, toml).unwrap();
    let proxy = spawn(
        &["--config", config.to_str().unwrap()],
        &[("LLMPROXY_API_KEY", KEY)],
    );
    // The metrics listener logs its address just after the main one.
    let mut metrics_url = None;
    for _ in 0..100 {
        metrics_url = proxy.log.lock().unwrap().iter().find_map(|l| {
            l.split("metrics on ")
                .nth(1)
                .map(|r| r.split_whitespace().next().unwrap_or("").to_string())
        });
        if metrics_url.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let metrics_url = metrics_url.expect("the metrics listener's address is logged");
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(no_tls())
        .build()
        .unwrap();
    let post = |path: &str, body: serde_json::Value, key: Option<&str>| {
        let mut r = http.post(format!("{}{path}", proxy.url)).json(&body);
        if let Some(key) = key {
            r = r.bearer_auth(key);
        }
        async move {
            let r = r.send().await.unwrap();
            let status = r.status().as_u16();
            let _ = r.text().await.unwrap();
            status
        }
    };
    let hi = json!([{"role": "user", "content": "hi"}]);
    // Three Chat requests to the Chat upstream (one streamed), one
    // Responses request to the OpenResponses server, one Messages request
    // to the Chat upstream.
    for body in [
        json!({"model": "gpt-4o", "messages": hi}),
        json!({"model": "gpt-4o", "messages": hi}),
        json!({"model": "gpt-4o", "messages": hi, "stream": true}),
    ] {
        assert_eq!(post("/v1/chat/completions", body, Some(KEY)).await, 200);
    }
    assert_eq!(
        post(
            "/v1/responses",
            json!({"model": "or-m", "input": "hi"}),
            Some(KEY)
        )
        .await,
        200
    );
    assert_eq!(
        post(
            "/v1/messages",
            json!({"model": "gpt-4o", "max_tokens": 10, "messages": hi}),
            Some(KEY)
        )
        .await,
        200
    );
    // A Responses request the proxy keeps (its upstream keeps no state),
    // read back once.
    let kept = http
        .post(format!("{}/v1/responses", proxy.url))
        .bearer_auth(KEY)
        .json(&json!({"model": "gpt-4o", "input": "hi"}))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let id = kept["id"].as_str().unwrap();
    let r = http
        .get(format!("{}/v1/responses/{id}", proxy.url))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Three refused: no key, a model nobody serves, a body that is not JSON.
    assert_eq!(
        post(
            "/v1/chat/completions",
            json!({"model": "gpt-4o", "messages": hi}),
            None
        )
        .await,
        401
    );
    assert_eq!(
        post(
            "/v1/chat/completions",
            json!({"model": "claude-x", "messages": hi}),
            Some(KEY)
        )
        .await,
        404
    );
    assert_eq!(
        post("/v1/chat/completions", json!("not an object"), Some(KEY)).await,
        400
    );

    let r = http.get(&metrics_url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
        "{:?}",
        r.headers()
    );
    let text = r.text().await.unwrap();
    let expect = [
        (
            "llmproxy_requests_total{endpoint=\"chat\",backend=\"chat\",model=\"gpt-*\",status=\"2xx\",outcome=\"completed\"}",
            3.0,
        ),
        (
            "llmproxy_requests_total{endpoint=\"responses\",backend=\"or\",model=\"or-*\",status=\"2xx\",outcome=\"completed\"}",
            1.0,
        ),
        (
            "llmproxy_requests_total{endpoint=\"messages\",backend=\"chat\",model=\"gpt-*\",status=\"2xx\",outcome=\"completed\"}",
            1.0,
        ),
        (
            "llmproxy_requests_total{endpoint=\"chat\",backend=\"-\",model=\"-\",status=\"4xx\",outcome=\"error\"}",
            3.0,
        ),
        (
            "llmproxy_request_duration_seconds_count{endpoint=\"chat\",backend=\"chat\",model=\"gpt-*\"}",
            3.0,
        ),
        (
            "llmproxy_stream_first_token_seconds_count{endpoint=\"chat\",backend=\"chat\",model=\"gpt-*\"}",
            1.0,
        ),
        (
            "llmproxy_stream_duration_seconds_count{endpoint=\"chat\",backend=\"chat\",model=\"gpt-*\"}",
            1.0,
        ),
        (
            "llmproxy_upstream_first_byte_seconds_count{endpoint=\"chat\",backend=\"chat\",model=\"gpt-*\"}",
            3.0,
        ),
        // The Chat fake's usage, five times: 11 in (3 cached), 7 out (2
        // reasoning).
        (
            "llmproxy_tokens_total{backend=\"chat\",model=\"gpt-*\",kind=\"input\"}",
            55.0,
        ),
        (
            "llmproxy_tokens_total{backend=\"chat\",model=\"gpt-*\",kind=\"output\"}",
            35.0,
        ),
        (
            "llmproxy_tokens_total{backend=\"chat\",model=\"gpt-*\",kind=\"cached\"}",
            15.0,
        ),
        (
            "llmproxy_tokens_total{backend=\"chat\",model=\"gpt-*\",kind=\"reasoning\"}",
            10.0,
        ),
        ("llmproxy_open_streams", 0.0),
        // The Messages and the kept Responses request went through the
        // openai translator, the other Responses request through the
        // openresponses one.
        (
            "llmproxy_translator_call_seconds_count{translator=\"openai\",call=\"request\"}",
            2.0,
        ),
        (
            "llmproxy_translator_call_seconds_count{translator=\"openresponses\",call=\"request\"}",
            1.0,
        ),
        (
            "llmproxy_requests_total{endpoint=\"responses\",backend=\"chat\",model=\"gpt-*\",status=\"2xx\",outcome=\"completed\"}",
            1.0,
        ),
        (
            "llmproxy_requests_total{endpoint=\"responses.retrieve\",backend=\"-\",model=\"-\",status=\"2xx\",outcome=\"completed\"}",
            1.0,
        ),
        // The kept response: its record and its items' keys; read once.
        (
            "llmproxy_store_operations_total{operation=\"write\",result=\"ok\"}",
            3.0,
        ),
        (
            "llmproxy_store_operations_total{operation=\"read\",result=\"ok\"}",
            1.0,
        ),
    ];
    for (line, value) in expect {
        assert_eq!(sample(&text, line), Some(value), "{line}\n{text}");
    }
    eprintln!("SCRAPE\n{text}");
    assert!(text.contains("llmproxy_build_info{version=\""), "{text}");
    assert!(
        !text.contains("claude-x"),
        "client model strings are never labels"
    );
    assert!(!text.contains(KEY));
    // The main listener does not serve it, and the metrics one nothing else.
    let r = http
        .get(format!("{}/metrics", proxy.url))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let other = metrics_url.replace("/metrics", "/v1/models");
    assert_eq!(http.get(other).send().await.unwrap().status(), 404);
    // promtool (Debian's `prometheus` package; .ci/run installs it).
    let file = dir.join("metrics.txt");
    std::fs::write(&file, &text).unwrap();
    match std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "promtool: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => assert!(
            std::env::var_os("CI").is_none(),
            "CI must install promtool: {e}"
        ),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `server.metrics_on_main_listener`: `/metrics` on the main port too,
/// behind the client key; and the library renders the same text.
#[tokio::test]
async fn metrics_on_the_main_listener_need_the_key() {
    let up = FakeUpstream::start().await;
    let toml = format!(
        "[server]\nmetrics_on_main_listener = true\n\n{}",
        backend("openresponses", &up.base_url, "")
    );
    let proxy = TestProxy::start_with_key(&toml, Some(KEY)).await;
    let url = format!("{}/metrics", proxy.url);
    let r = proxy.http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = proxy.http.get(&url).bearer_auth(KEY).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains("llmproxy_requests_total"), "{text}");
    // The 401 above was counted.
    assert!(
        text.lines()
            .any(|l| l.starts_with("llmproxy_requests_total{")
                && l.contains("status=\"4xx\"")
                && l.ends_with(" 1")),
        "{text}"
    );
    let library = llmproxy::Proxy::from_toml(&toml).await.unwrap();
    assert!(library.metrics().render().contains("llmproxy_build_info"));
}
