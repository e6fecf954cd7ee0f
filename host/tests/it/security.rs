//! The credential boundary, tried as a hostile client, upstream or
//! translator would: nothing a client sends chooses where the proxy's
//! credentials go, and no secret leaves the process.

use crate::fake_vertex::{FakeVertex, LOCATION, PROJECT};
use crate::support::*;
use serde_json::{Value, json};

/// A Vertex backend serving `gemini-*` and `claude-*` only, as an operator
/// would configure it.
fn vertex_config(fake: &FakeVertex) -> String {
    format!(
        "[[backends]]\nname = \"vertex\"\nkind = \"gcp-vertex\"\nbase_url = \"{}\"\nmodels = [\"gemini-*\", \"claude-*\"]\nauth = {{ gcp_credentials_file = {:?} }}\nsettings = {{ project = \"{PROJECT}\", location = \"{LOCATION}\" }}\n",
        fake.base_url,
        fake.credentials_file().display().to_string()
    )
}

/// Model names that tried to steer the Vertex URL.
fn hostile_models() -> Vec<String> {
    vec![
        "gemini-2.5-flash/../../../../../../../../projects/victim-project/locations/europe-west4/publishers/google/models/gemini-2.5-pro".into(),
        "gemini-2.5-flash:countTokens#".into(),
        "gemini-2.5-flash:countTokens?".into(),
        "gemini-2.5-flash?alt=json#".into(),
        "gemini-2.5-flash\\..\\..\\x".into(),
        "gemini-x/../v1beta1/projects/test-proj/locations/us-east5/publishers/google/models/gemini-2.5-pro".into(),
        "gemini-x/../../../endpoints/123:rawPredict?".into(),
        "gemini-x\n../../y".into(),
        "gemini-x\r\n../y".into(),
        "gemini-x\t../y".into(),
        "gemini-%2e%2e%2fx".into(),
        "claude-x/../../anthropic/models/claude-opus-4-6".into(),
        format!("gemini-{}", "a".repeat(100 * 1024)),
    ]
}

fn assert_invalid_model(status: u16, v: &Value, model: &str) {
    let short: String = model.chars().take(40).collect();
    assert_eq!(status, 400, "{short:?}: {v}");
    assert_eq!(v["error"]["code"], "invalid_model", "{short:?}: {v}");
    assert_eq!(v["error"]["param"], "model", "{short:?}: {v}");
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.len() < 400, "the message quotes a bounded part");
    assert!(!message.contains('\n'), "{message}");
}

#[tokio::test]
async fn model_names_cannot_steer_the_vertex_url() {
    let fake = FakeVertex::start().await;
    let proxy = TestProxy::start(&vertex_config(&fake)).await;
    for model in hostile_models() {
        for stream in [false, true] {
            let chat = json!({"model": model, "stream": stream,
                "messages": [{"role": "user", "content": "hi"}]});
            let (status, _, v) = proxy.post("/v1/chat/completions", &chat).await;
            assert_invalid_model(status.as_u16(), &v, &model);
            let responses = json!({"model": model, "stream": stream, "input": "hi"});
            let (status, _, v) = proxy.post("/v1/responses", &responses).await;
            assert_invalid_model(status.as_u16(), &v, &model);
        }
    }
    assert_eq!(fake.hits(), Vec::<String>::new(), "nothing reached Vertex");
    assert_eq!(fake.token_requests(), 0, "no token was even fetched");
    // A plain name still works, and reaches exactly the configured path.
    let (status, _, v) = proxy
        .post(
            "/v1/responses",
            &json!({"model": "gemini-2.5-flash", "input": "hi"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        fake.hits(),
        [format!(
            "POST /v1/projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/gemini-2.5-flash:generateContent"
        )]
    );
}

#[tokio::test]
async fn model_names_are_identifiers_on_every_backend() {
    let up = FakeUpstream::start().await;
    let base = &up.base_url;
    let toml = format!(
        "[[backends]]\nname = \"o\"\nkind = \"openai\"\nbase_url = \"{base}\"\nmodels = [\"gpt-*\", \"org/*\"]\nauth = \"none\"\n\n[[backends]]\nname = \"r\"\nkind = \"openresponses\"\nbase_url = \"{base}\"\nmodels = [\"*\"]\n"
    );
    let proxy = TestProxy::start(&toml).await;
    for model in [
        "gpt-5\nx",
        "gpt-5 ",
        "gpt-5?x",
        "gpt-5#x",
        "org/../x",
        "/etc/passwd",
        "a//b",
        "gpt-5\u{0}",
        "gpt-\u{e9}",
    ] {
        let chat = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
        let (status, _, v) = proxy.post("/v1/chat/completions", &chat).await;
        assert_invalid_model(status.as_u16(), &v, model);
        let (status, _, v) = proxy
            .post("/v1/responses", &json!({"model": model, "input": "hi"}))
            .await;
        assert_invalid_model(status.as_u16(), &v, model);
    }
    let huge = "m".repeat(100 * 1024);
    let (status, _, v) = proxy
        .post("/v1/responses", &json!({"model": huge, "input": "hi"}))
        .await;
    assert_invalid_model(status.as_u16(), &v, &huge);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("longer than 256"),
        "{v}"
    );
    assert!(up.received().is_empty(), "nothing was sent upstream");
    // Names with a namespace and a tag, as vLLM, Ollama and Fireworks use.
    for model in ["org/Llama-3.1-8B-Instruct", "qwen3:8b", "gpt-5@2025-08-07"] {
        let chat = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
        let (status, _, v) = proxy.post("/v1/chat/completions", &chat).await;
        assert_eq!(status, 200, "{model}: {v}");
        assert_eq!(up.last().body["model"], model);
        let (status, _, v) = proxy
            .post("/v1/responses", &json!({"model": model, "input": "hi"}))
            .await;
        assert_eq!(status, 200, "{model}: {v}");
        assert_eq!(up.last().body["model"], model);
    }
}

#[tokio::test]
async fn model_maps_are_checked_when_the_config_loads() {
    for (kind, map, needle) in [
        ("openai", "\"gpt\" = \"a b\"", "contains ' '"),
        ("openai", "\"x\\ny\" = \"gpt-5\"", "contains '\\n'"),
        ("gcp-vertex", "\"g\" = \"gemini/x\"", "contains '/'"),
        (
            "gcp-vertex",
            "\"g\" = \"gemini:countTokens\"",
            "contains ':'",
        ),
    ] {
        let toml = format!(
            "[[backends]]\nname = \"b\"\nkind = \"{kind}\"\nbase_url = \"http://127.0.0.1:9\"\nmodels = [\"*\"]\nauth = \"none\"\nmodel_map = {{ {map} }}\nsettings = {{ project = \"p\", location = \"us-east5\" }}\n"
        );
        let e = llmproxy::Config::from_toml(&toml).unwrap_err().to_string();
        assert!(e.contains("model_map") && e.contains(needle), "{map}: {e}");
    }
}

/// A backend whose (hostile) translator asks for `path` with `method`.
fn hostile_path(name: &str, base_url: &str, method: &str, path: &str, extra: &str) -> String {
    format!(
        "[[backends]]\nname = \"{name}\"\ntranslator = {{ path = {HOSTILE:?} }}\nbase_url = \"{base_url}\"\nmodels = [\"{name}-*\"]\nsettings = {{ mode = \"path\", method = \"{method}\", path = {path:?}{extra} }}\n"
    )
}

#[tokio::test]
async fn translators_paths_stay_under_the_base_url() {
    let up = FakeUpstream::start().await;
    let cases = [
        ("POST", "/../admin", "\"..\" segment"),
        ("POST", "/x/%2e%2e/admin", "%2E"),
        ("POST", "/x%2F..%2Fadmin", "%2F"),
        ("POST", "/x%5C..%5Cadmin", "%5C"),
        ("POST", "/a\\..\\admin", "backslash"),
        ("POST", "//evil.example/x", "single '/'"),
        ("POST", "@evil.example/x", "single '/'"),
        ("POST", "/responses#frag", "fragment"),
        ("POST", "/resp\r\nHost: evil", "0x0d"),
        ("POST", "/a//b", "empty segment"),
    ];
    let mut toml = String::new();
    for (i, (method, path, _)) in cases.iter().enumerate() {
        toml.push_str(&hostile_path(
            &format!("h{i}"),
            &up.base_url,
            method,
            path,
            "",
        ));
    }
    let proxy = TestProxy::start(&toml).await;
    for (i, (_, path, rule)) in cases.iter().enumerate() {
        for stream in [false, true] {
            let body = json!({"model": format!("h{i}-x"), "input": "hi", "stream": stream});
            let (status, _, v) = proxy.post("/v1/responses", &body).await;
            assert_eq!(status, 502, "{path:?}: {v}");
            assert_eq!(v["error"]["code"], "translator_error", "{path:?}: {v}");
            let message = v["error"]["message"].as_str().unwrap();
            assert!(message.contains(rule), "{path:?}: {message}");
            assert!(message.contains("nothing was sent"), "{message}");
        }
    }
    assert!(up.received().is_empty(), "{:?}", up.received());
}

#[tokio::test]
async fn google_credentials_reach_only_the_configured_project_location_and_methods() {
    let fake = FakeVertex::start().await;
    let creds = fake.credentials_file().display().to_string();
    let vertex = |project: &str, location: &str, publisher: &str, rpc: &str| {
        format!(
            "/v1/projects/{project}/locations/{location}/publishers/{publisher}/models/gemini-2.5-flash:{rpc}"
        )
    };
    let cases = [
        (
            "POST",
            vertex("victim-project", LOCATION, "google", "generateContent"),
            "project \"victim-project\"",
        ),
        (
            "POST",
            vertex(PROJECT, "europe-west4", "google", "generateContent"),
            "location \"europe-west4\"",
        ),
        (
            "POST",
            vertex(PROJECT, LOCATION, "google", "predictLongRunning"),
            "method \"predictLongRunning\"",
        ),
        (
            "POST",
            vertex(PROJECT, LOCATION, "meta", "rawPredict"),
            "publisher \"meta\"",
        ),
        (
            "POST",
            format!("/v1/projects/{PROJECT}/locations/{LOCATION}/endpoints/123:rawPredict"),
            "must be /{v1",
        ),
        (
            "POST",
            format!("/v1/projects/{PROJECT}/locations/{LOCATION}/datasets"),
            "must be /{v1",
        ),
        (
            "GET",
            vertex(PROJECT, LOCATION, "google", "generateContent"),
            "only POSTs",
        ),
        (
            "POST",
            format!(
                "{}?key=x",
                vertex(PROJECT, LOCATION, "google", "generateContent")
            ),
            "alt=sse",
        ),
    ];
    let extra = format!(", project = \"{PROJECT}\", location = \"{LOCATION}\"");
    let mut toml = String::new();
    for (i, (method, path, _)) in cases.iter().enumerate() {
        toml.push_str(&hostile_path(
            &format!("g{i}"),
            &fake.base_url,
            method,
            path,
            &extra,
        ));
        toml.push_str(&format!(
            "auth = {{ gcp_credentials_file = {creds:?} }}\n\n"
        ));
    }
    let proxy = TestProxy::start(&toml).await;
    for (i, (_, path, rule)) in cases.iter().enumerate() {
        let body = json!({"model": format!("g{i}-x"), "input": "hi"});
        let (status, _, v) = proxy.post("/v1/responses", &body).await;
        assert_eq!(status, 502, "{path}: {v}");
        assert_eq!(v["error"]["code"], "translator_error", "{path}: {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(rule), "{path}: {message}");
    }
    assert_eq!(fake.hits(), Vec::<String>::new(), "nothing reached Vertex");

    // Without a project and location to fence it to, a backend holding
    // Google credentials does not start.
    let toml = format!(
        "[[backends]]\nname = \"g\"\ntranslator = {{ path = {HOSTILE:?} }}\nbase_url = \"{}\"\nmodels = [\"*\"]\nauth = {{ gcp_credentials_file = {creds:?} }}\n",
        fake.base_url
    );
    let config = llmproxy::Config::from_toml(&toml).unwrap();
    let e = llmproxy::Proxy::new(config).await.unwrap_err().to_string();
    assert!(e.contains("set settings.project"), "{e}");
}

/// A temporary file holding `contents`.
fn temp_file(name: &str, contents: &str) -> String {
    let path = std::env::temp_dir().join(format!("llmproxy-sec-{}-{name}", std::process::id()));
    std::fs::write(&path, contents).unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn redirects_are_never_followed() {
    let up = FakeUpstream::start().await;
    let elsewhere = FakeUpstream::start().await;
    let key = temp_file("redirect-key", "azure-SECRET-key-0001");
    let toml = format!(
        "[[backends]]\nname = \"b\"\nkind = \"openai\"\nbase_url = \"{}\"\nmodels = [\"*\"]\nauth = {{ header = \"api-key\", file = {key:?} }}\nheaders = {{ x-static = \"static-value\" }}\nretries = 2\nretry_backoff_secs = 0.01\n",
        up.base_url
    );
    let proxy = TestProxy::start(&toml).await;
    let stolen = format!("{}/stolen", elsewhere.base_url);
    for (status, location) in [
        (307, stolen.as_str()),
        (308, stolen.as_str()),
        (302, stolen.as_str()),
        (301, "/v1/elsewhere"),
    ] {
        for stream in [false, true] {
            let location: &'static str = Box::leak(location.to_string().into_boxed_str());
            up.script([Reply::Json(status, json!({}), vec![("location", location)])]);
            let chat = json!({"model": "gpt-5", "stream": stream,
                "messages": [{"role": "user", "content": "secret prompt"}]});
            let (code, _, v) = proxy.post("/v1/chat/completions", &chat).await;
            assert_eq!(code, 502, "{status} {location}: {v}");
            assert_eq!(v["error"]["code"], "bad_upstream_response", "{v}");
            let message = v["error"]["message"].as_str().unwrap();
            assert!(
                message.contains(&format!("HTTP {status} with a redirect to \"{location}\""))
                    && message.contains("does not follow"),
                "{message}"
            );
        }
    }
    assert!(
        elsewhere.received().is_empty(),
        "{:?}",
        elsewhere.received()
    );
    let paths: Vec<String> = up.received().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        paths.len(),
        8,
        "one request each, never retried or followed: {paths:?}"
    );
    assert!(
        paths.iter().all(|p| p == "/v1/chat/completions"),
        "{paths:?}"
    );
}

#[tokio::test]
async fn token_requests_are_never_redirected() {
    let up = FakeUpstream::start().await;
    let elsewhere = FakeUpstream::start().await;
    let root = up.base_url.trim_end_matches("/v1").to_string();
    let creds = temp_file(
        "redirect-adc.json",
        &json!({"type": "authorized_user", "client_id": "cid", "client_secret": "client-SECRET-redirect",
                "refresh_token": "refresh-SECRET-redirect", "token_uri": format!("{root}/token")})
        .to_string(),
    );
    let toml = format!(
        "[[backends]]\nname = \"v\"\nkind = \"gcp-vertex\"\nbase_url = \"{root}\"\nmodels = [\"*\"]\nauth = {{ gcp_credentials_file = {creds:?} }}\nsettings = {{ project = \"p\", location = \"us-east5\" }}\n"
    );
    let proxy = TestProxy::start(&toml).await;
    let location: &'static str =
        Box::leak(format!("{}/token", elsewhere.base_url).into_boxed_str());
    up.script([Reply::Json(307, json!({}), vec![("location", location)])]);
    let (status, _, v) = proxy
        .post(
            "/v1/responses",
            &json!({"model": "gemini-2.5-flash", "input": "hi"}),
        )
        .await;
    assert_eq!(status, 502, "{v}");
    assert_eq!(v["error"]["code"], "upstream_credentials_error", "{v}");
    assert!(
        elsewhere.received().is_empty(),
        "{:?}",
        elsewhere.received()
    );
    assert_eq!(up.received().len(), 1);
}

/// A proxy with short client deadlines in front of `up`.
async fn strict_proxy(up: &FakeUpstream, server: &str) -> (TestProxy, String) {
    let toml = format!("[server]\n{server}\n{}", single(&up.base_url));
    let proxy = TestProxy::start_with_key(&toml, Some("client-key-deadlines")).await;
    let addr = proxy.url.trim_start_matches("http://").to_string();
    (proxy, addr)
}

/// Reads until the server closes the connection; what it sent.
async fn read_to_close(stream: &mut tokio::net::TcpStream, within: Duration) -> String {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the server kept the connection open for {within:?}"
    );
    String::from_utf8_lossy(&out).into_owned()
}

use std::time::{Duration, Instant};

#[tokio::test]
async fn idle_and_slow_clients_are_cut_off() {
    use tokio::io::AsyncWriteExt;
    let up = FakeUpstream::start().await;
    let (proxy, addr) = strict_proxy(
        &up,
        "header_read_timeout_secs = 0.5\nidle_timeout_secs = 1.5\nbody_timeout_secs = 0.5",
    )
    .await;

    // A connection that sends nothing.
    let started = Instant::now();
    let mut silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    read_to_close(&mut silent, Duration::from_secs(3)).await;
    assert!(
        started.elapsed() >= Duration::from_millis(450),
        "{:?}",
        started.elapsed()
    );

    // A request head at one byte per 50 ms: bytes keep coming, yet the head
    // is not complete within the deadline.
    let started = Instant::now();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut closed = false;
    for b in head {
        if slow.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !closed {
        let answer = read_to_close(&mut slow, Duration::from_secs(3)).await;
        assert!(!answer.contains("200 OK"), "{answer}");
    }
    assert!(started.elapsed() < Duration::from_secs(4));

    // Keep-alive: the next request may come after more than the header
    // deadline (the idle deadline is longer), but not after the idle one.
    let mut kept = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let get = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    kept.write_all(get).await.unwrap();
    let mut buf = [0u8; 1024];
    let n = tokio::io::AsyncReadExt::read(&mut kept, &mut buf)
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    tokio::time::sleep(Duration::from_millis(900)).await;
    kept.write_all(get).await.unwrap();
    let n = tokio::io::AsyncReadExt::read(&mut kept, &mut buf)
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "a request 0.9 s after the last one is served on the same connection"
    );
    let started = Instant::now();
    read_to_close(&mut kept, Duration::from_secs(4)).await;
    assert!(
        started.elapsed() >= Duration::from_millis(1300),
        "{:?}",
        started.elapsed()
    );

    // A body at one byte per 100 ms, from an authenticated client: 408.
    let mut body = tokio::net::TcpStream::connect(&addr).await.unwrap();
    body.write_all(
        b"POST /v1/responses HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer client-key-deadlines\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
    )
    .await
    .unwrap();
    let trickle = async {
        for _ in 0..40 {
            if body.write_all(b" ").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(1500), trickle).await;
    let answer = read_to_close(&mut body, Duration::from_secs(3)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(up.received().is_empty());

    // HTTP/2 is not spoken: its preface gets no session.
    let mut h2 = tokio::net::TcpStream::connect(&addr).await.unwrap();
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut h2, Duration::from_secs(3)).await;
    assert!(!answer.contains("HTTP/1.1 200"), "{answer}");

    // The connections above carried no key: the deadlines hold before
    // authentication. Ordinary requests still work.
    let (status, _) = proxy.call(reqwest::Method::GET, "/healthz").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_full_house_keeps_healthz_and_busy_connections_working() {
    use tokio::io::AsyncReadExt;
    let up = FakeUpstream::start().await;
    let (proxy, addr) =
        strict_proxy(&up, "max_connections = 8\nheader_read_timeout_secs = 60").await;
    // A stream in progress on a connection of its own.
    let chunks: Vec<String> = text_stream_events("m", "one two three four five six")
        .into_iter()
        .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
        .collect();
    up.script([Reply::Sse {
        chunks,
        delay: Duration::from_millis(150),
        then_hang: false,
    }]);
    let streaming = {
        let http = proxy.http.clone();
        let url = format!("{}/v1/responses", proxy.url);
        tokio::spawn(async move {
            let r = http
                .post(url)
                .bearer_auth("client-key-deadlines")
                .json(&json!({"model": "m", "input": "hi", "stream": true}))
                .send()
                .await
                .unwrap();
            r.text().await.unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Idle sockets, far more than the cap.
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..3 {
        let started = Instant::now();
        let fresh = reqwest::Client::builder()
            .tls_backend_preconfigured(no_tls())
            .build()
            .unwrap();
        let r = tokio::time::timeout(
            Duration::from_secs(3),
            fresh.get(format!("{}/healthz", proxy.url)).send(),
        )
        .await
        .expect("/healthz answers with the house full")
        .unwrap();
        assert_eq!(r.status(), 200);
        assert!(started.elapsed() < Duration::from_secs(3));
    }
    let text = streaming.await.unwrap();
    assert!(
        text.contains("response.completed"),
        "the busy connection finished: {text}"
    );
    // The idle ones were closed to make room.
    let mut closed = 0;
    for mut s in idle {
        let mut buf = [0u8; 16];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(20), s.read(&mut buf)).await {
            closed += 1;
        }
    }
    assert!(closed >= 30, "{closed} of 40 idle connections were closed");
}

/// A proxy in front of Vertex (Gemini and Claude) and an OpenAI-style
/// upstream, with `extra` config on top.
async fn sized_proxy(fake: &FakeVertex, up: &FakeUpstream, extra: &str) -> TestProxy {
    let toml = format!(
        "{extra}\n{}\n[[backends]]\nname = \"oa\"\nkind = \"openai\"\nbase_url = \"{}\"\nmodels = [\"gpt-*\"]\nauth = \"none\"\n",
        vertex_config(fake),
        up.base_url
    );
    TestProxy::start(&toml).await
}

fn tiny_items(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"type": "message", "role": if i % 2 == 0 {"user"} else {"assistant"}, "content": "hi"}))
        .collect()
}

#[tokio::test]
async fn requests_a_translator_cannot_map_are_refused_up_front() {
    let fake = FakeVertex::start().await;
    let up = FakeUpstream::start().await;
    let big = "x".repeat(12 << 20);
    let cases = [
        json!({"model": "gpt-5", "input": big}),
        json!({"model": "gpt-5", "input": tiny_items(100_000)}),
        json!({"model": "gemini-2.5-flash", "input": big}),
    ];
    // An operator's small translator limit: refused with 413 naming it,
    // before anything runs.
    let small = sized_proxy(&fake, &up, "[translators]\nmemory_limit_mib = 64\n").await;
    for body in &cases {
        let (status, _, v) = small.post("/v1/responses", body).await;
        assert_eq!(status, 413, "{}: {v}", body["model"]);
        assert_eq!(v["error"]["code"], "request_too_large", "{v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("translators.memory_limit_mib"),
            "{message}"
        );
        assert!(message.contains("64.0 MiB"), "{message}");
    }
    let chat = json!({"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": big}]});
    let (status, _, v) = small.post("/v1/chat/completions", &chat).await;
    assert_eq!(status, 413, "{v}");
    // A Messages request to Claude passes through, but its translator
    // adapts it: the same limit, in Anthropic's shape.
    let messages = json!({"model": "claude-sonnet-4-5@20250929", "max_tokens": 10, "messages": [{"role": "user", "content": big}]});
    let (status, _, v) = small.post("/v1/messages", &messages).await;
    assert_eq!(status, 413, "{v}");
    assert_eq!(v["error"]["type"], "request_too_large", "{v}");
    assert!(up.received().is_empty());
    assert!(fake.hits().is_empty());
    // A Chat request to a Chat upstream passes through: no translator maps
    // it, so no translator limit applies (the body limit does).
    let chat = json!({"model": "gpt-5", "messages": [{"role": "user", "content": big}]});
    let (status, _, v) = small.post("/v1/chat/completions", &chat).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(up.received().len(), 1);

    // The default limits agree: what the body limit lets in is mapped.
    let proxy = sized_proxy(&fake, &up, "").await;
    for body in &cases {
        let (status, _, v) = proxy.post("/v1/responses", body).await;
        assert_eq!(status, 200, "{}: {v}", body["model"]);
    }
    let edge = "x".repeat(30 << 20);
    for (path, body) in [
        (
            "/v1/responses",
            json!({"model": "gemini-2.5-flash", "input": edge}),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": edge}]}),
        ),
    ] {
        let (status, _, v) = proxy.post(path, &body).await;
        assert_eq!(status, 200, "30 MiB at {path}: {v}");
    }
}

#[tokio::test]
async fn a_kept_conversation_that_grew_too_large_says_so() {
    let fake = FakeVertex::start().await;
    let up = FakeUpstream::start().await;
    let proxy = sized_proxy(&fake, &up, "[translators]\nmemory_limit_mib = 24\n").await;
    let turn = "y".repeat(2 << 20);
    let (status, _, first) = proxy
        .post("/v1/responses", &json!({"model": "gpt-5", "input": turn}))
        .await;
    assert_eq!(status, 200, "{first}");
    let id = first["id"].as_str().unwrap();
    let (status, _, v) = proxy
        .post(
            "/v1/responses",
            &json!({"model": "gpt-5", "input": turn, "previous_response_id": id}),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["code"], "conversation_too_large", "{v}");
    assert_eq!(v["error"]["param"], "previous_response_id", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(id) && message.contains("4.0 MiB"),
        "{message}"
    );
    assert!(message.contains("Start a new conversation"), "{message}");
    assert_eq!(up.received().len(), 1, "only the first turn went upstream");
}

/// A Responses request to Claude linking `n` images at `url(i)`.
fn images(n: usize, url: impl Fn(usize) -> String) -> Value {
    let mut content = vec![json!({"type": "input_text", "text": "describe"})];
    content.extend((0..n).map(|i| json!({"type": "input_image", "image_url": url(i)})));
    json!({"model": "claude-sonnet-4-5", "input": [{"role": "user", "content": content}]})
}

#[tokio::test]
async fn media_downloads_are_bounded_per_request_and_in_flight() {
    let fake = FakeVertex::start().await;
    let up = FakeUpstream::start().await;
    let media = format!("{}/media", fake.base_url);
    let proxy = sized_proxy(&fake, &up, "[media]\nallow_private_networks = true\n").await;
    // One 8 MiB image, under media.max_mib = 20: mapped, not a 502.
    let (status, _, v) = proxy
        .post(
            "/v1/responses",
            &images(1, |_| format!("{media}/big-{}.png", 8 << 20)),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    // Sixteen of 19 MiB: refused once the total passes the request's share.
    let started = Instant::now();
    let (status, _, v) = proxy
        .post(
            "/v1/responses",
            &images(16, |i| format!("{media}/big-{}.png", (19 << 20) + i)),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["code"], "media_too_large", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("more than 32 MiB") && message.contains("media.max_request_mib"),
        "{message}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    // A small translator limit lowers the share further.
    let small = sized_proxy(
        &fake,
        &up,
        "[media]\nallow_private_networks = true\n[translators]\nmemory_limit_mib = 48\n",
    )
    .await;
    let (status, _, v) = small
        .post(
            "/v1/responses",
            &images(1, |_| format!("{media}/big-{}.png", 8 << 20)),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("translators.memory_limit_mib"),
        "{message}"
    );

    // All requests together: past media.max_inflight_mib, a 503 to retry.
    let tight = sized_proxy(
        &fake,
        &up,
        "[media]\nallow_private_networks = true\nmax_mib = 10\nmax_request_mib = 20\nmax_inflight_mib = 24\n",
    )
    .await;
    let body = images(2, |i| format!("{media}/slow-{}.png", (8 << 20) + i));
    let (a, b) = tokio::join!(tight.post("/v1/responses", &body), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        tight.post("/v1/responses", &body).await
    });
    let mut statuses = [a.0.as_u16(), b.0.as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 503], "{} / {}", a.2, b.2);
    let overloaded = if a.0 == 503 { &a.2 } else { &b.2 };
    assert_eq!(overloaded["error"]["code"], "overloaded", "{overloaded}");
    assert!(
        overloaded["error"]["message"]
            .as_str()
            .unwrap()
            .contains("media.max_inflight_mib"),
        "{overloaded}"
    );
    // Once the first is done, its share is back.
    let (status, _, v) = tight.post("/v1/responses", &body).await;
    assert_eq!(status, 200, "{v}");
}

#[tokio::test]
async fn odd_bodies_and_addresses_get_precise_refusals() {
    let up = FakeUpstream::start().await;
    let proxy = TestProxy::start(&single(&up.base_url)).await;
    // Half a surrogate pair: a 400 with its code, on both endpoints.
    for (path, body) in [
        ("/v1/responses", r#"{"model":"m","input":"\ud800"}"#),
        (
            "/v1/responses",
            r#"{"model":"m","input":[{"role":"user","content":"x\udc00"}]}"#,
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"m","messages":[{"role":"user","content":"\ud800"}]}"#,
        ),
    ] {
        let (status, v) = proxy.post_raw(path, body.as_bytes().to_vec()).await;
        assert_eq!(status, 400, "{body}: {v}");
        assert_eq!(v["error"]["code"], "invalid_json", "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("surrogate"),
            "{v}"
        );
    }
    // A compressed body: 415, not parsed as if it were plain.
    for path in ["/v1/responses", "/v1/chat/completions"] {
        for encoding in ["gzip", "br", "zstd, gzip"] {
            let r = proxy
                .http
                .post(format!("{}{path}", proxy.url))
                .header("content-type", "application/json")
                .header("content-encoding", encoding)
                .body(r#"{"model":"m","input":"hi","messages":[{"role":"user","content":"hi"}]}"#)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 415, "{path} {encoding}");
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"]["code"], "unsupported_content_encoding", "{v}");
        }
    }
    assert!(up.received().is_empty());

    // Image URLs on addresses that reach the host or private networks
    // through IPv6 forms are not downloaded.
    let fake = FakeVertex::start().await;
    let port = fake.base_url.rsplit(':').next().unwrap().to_string();
    let vertex = TestProxy::start(&vertex_config(&fake)).await;
    for host in [
        "[::127.0.0.1]",
        "[::ffff:127.0.0.1]",
        "[fec0::1]",
        "[2002:7f00:1::1]",
        "[64:ff9b::7f00:1]",
    ] {
        let url = format!("http://{host}:{port}/media/cat.png");
        let (status, _, v) = vertex
            .post("/v1/responses", &images(1, |_| url.clone()))
            .await;
        assert_eq!(status, 400, "{host}: {v}");
        assert_eq!(v["error"]["code"], "invalid_image_url", "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("not a public address"),
            "{v}"
        );
    }
    assert!(fake.hits().is_empty());
}

#[tokio::test]
async fn translators_cannot_set_headers_that_redirect_billing_or_the_method() {
    let fake = FakeVertex::start().await;
    let up = FakeUpstream::start().await;
    let creds = fake.credentials_file().display().to_string();
    let header = |name: &str, header: &str, value: &str, base: &str, extra: &str| {
        format!(
            "[[backends]]\nname = \"{name}\"\ntranslator = {{ path = {HOSTILE:?} }}\nbase_url = \"{base}\"\nmodels = [\"{name}-*\"]\nsettings = {{ mode = \"header\", header = \"{header}\", value = \"{value}\"{extra} }}\n"
        )
    };
    let vertex_extra = format!(
        ", project = \"{PROJECT}\", location = \"{LOCATION}\", path = \"/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/gemini-2.5-flash:generateContent\""
    );
    let mut toml = String::new();
    for (i, (name, value)) in [
        ("x-goog-user-project", "victim-project"),
        ("x-http-method-override", "DELETE"),
        ("x-goog-request-params", "project=victim"),
    ]
    .iter()
    .enumerate()
    {
        toml.push_str(&header(
            &format!("g{i}"),
            name,
            value,
            &fake.base_url,
            &vertex_extra,
        ));
        toml.push_str(&format!(
            "auth = {{ gcp_credentials_file = {creds:?} }}\n\n"
        ));
    }
    for (i, name) in ["x-http-method-override", "x-method-override"]
        .iter()
        .enumerate()
    {
        toml.push_str(&header(&format!("b{i}"), name, "DELETE", &up.base_url, ""));
    }
    let proxy = TestProxy::start(&toml).await;
    for model in ["g0-x", "g1-x", "g2-x", "b0-x", "b1-x"] {
        let (status, _, v) = proxy
            .post("/v1/responses", &json!({"model": model, "input": "hi"}))
            .await;
        assert_eq!(status, 502, "{model}: {v}");
        assert_eq!(v["error"]["code"], "translator_error", "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("set the header"),
            "{v}"
        );
    }
    assert!(fake.hits().is_empty(), "{:?}", fake.hits());
    assert!(up.received().is_empty());
}

#[tokio::test]
async fn a_translator_cannot_re_encode_a_secret_past_the_redactor() {
    let up = FakeUpstream::start().await;
    let key = temp_file("reencode-key", "sk-reencode-SECRET-5521");
    let toml = format!(
        "[[backends]]\nname = \"h\"\ntranslator = {{ path = {HOSTILE:?} }}\nbase_url = \"{}\"\nmodels = [\"*\"]\nauth = {{ bearer_file = {key:?} }}\nsettings = {{ mode = \"reencode\" }}\n",
        up.base_url
    );
    let proxy = TestProxy::start(&toml).await;
    up.script([Reply::Echo(
        400,
        "application/json",
        "you sent {auth}".into(),
    )]);
    let (status, _, v) = proxy
        .post("/v1/responses", &json!({"model": "m", "input": "hi"}))
        .await;
    assert_eq!(status, 200, "{v}");
    let text = v["output"][0]["content"][0]["text"].as_str().unwrap();
    assert_eq!(text, "you sent [redacted]", "{v}");
    assert!(!v.to_string().contains("SECRET"), "{v}");
}

#[tokio::test]
async fn media_arriving_in_tiny_pieces_counts_its_bytes_not_its_pieces() {
    let fake = FakeVertex::start().await;
    let up = FakeUpstream::start().await;
    let proxy = sized_proxy(
        &fake,
        &up,
        "[media]\nallow_private_networks = true\nmax_mib = 1\nmax_request_mib = 1\nmax_inflight_mib = 1\n",
    )
    .await;
    let url = format!("{}/media/trickle-4000.png", fake.base_url);
    let (status, _, v) = proxy
        .post("/v1/responses", &images(2, |_| url.clone()))
        .await;
    assert_eq!(status, 200, "4000 bytes in 1-byte pieces: {v}");
}

#[tokio::test]
async fn an_upstream_request_id_quoting_the_key_is_scrubbed() {
    const KEY: &str = "sk-reqid-SECRET-8831";
    let up = FakeUpstream::start().await;
    let key = temp_file("reqid-key", KEY);
    let toml = format!(
        "{}auth = {{ bearer_file = {key:?} }}\n",
        single(&up.base_url)
    );
    let proxy = TestProxy::start(&toml).await;
    for stream in [false, true] {
        up.script([Reply::Json(
            200,
            response_object("m", "completed", "hi"),
            vec![("x-request-id", KEY)],
        )]);
        let r = proxy
            .http
            .post(format!("{}/v1/responses", proxy.url))
            .json(&json!({"model": "m", "input": "hi", "stream": stream}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let id = r.headers()["x-upstream-request-id"]
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(id, "[redacted]", "stream {stream}");
        assert!(!r.text().await.unwrap().contains(KEY));
    }
}
