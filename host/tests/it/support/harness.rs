//! The proxy under test, clients, and what a test needs installed.

use super::*;

/// A running proxy.
pub struct TestProxy {
    pub url: String,
    pub http: reqwest::Client,
}

impl TestProxy {
    /// Starts a proxy from TOML on an ephemeral port.
    pub async fn start(toml: &str) -> TestProxy {
        Self::start_with_key(toml, None).await
    }

    pub async fn start_with_key(toml: &str, key: Option<&str>) -> TestProxy {
        let mut config = llmproxy::Config::from_toml(toml).expect("config");
        config.server.api_key = key.map(llmproxy::Secret::new);
        let server = config.server.clone();
        let proxy = llmproxy::Proxy::new(config).await.expect("proxy");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            llmproxy::serve(listener, proxy.router(), &server, std::future::pending())
                .await
                .unwrap();
        });
        TestProxy {
            url: format!("http://{addr}"),
            http: reqwest::Client::builder()
                .tls_backend_preconfigured(no_tls())
                .build()
                .unwrap(),
        }
    }

    async fn send(&self, path: &str, body: &Value) -> (StatusCode, HeaderMap, String) {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        (status, headers, r.text().await.unwrap())
    }

    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, HeaderMap, Value) {
        let (status, headers, text) = self.send(path, body).await;
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() && path.ends_with("responses") {
            dump("response", &value);
        }
        (status, headers, value)
    }

    /// Sends a request without a body: (status, the JSON answer).
    pub async fn call(&self, method: reqwest::Method, path: &str) -> (u16, Value) {
        let r = self
            .http
            .request(method, format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json::<Value>().await.unwrap())
    }

    /// `GET /metrics` (the config must set
    /// `server.metrics_on_main_listener`).
    pub async fn scrape(&self) -> String {
        let r = self
            .http
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "metrics_on_main_listener set?");
        r.text().await.unwrap()
    }

    /// POSTs raw bytes as JSON: (status, the JSON answer).
    pub async fn post_raw(&self, path: &str, body: Vec<u8>) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json::<Value>().await.unwrap())
    }

    /// POSTs and reads an SSE answer: (status, events, saw `[DONE]`).
    pub async fn post_stream(&self, path: &str, body: &Value) -> (StatusCode, Vec<Value>, bool) {
        let (status, _, text) = self.send(path, body).await;
        let (events, done) = parse_sse(&text);
        if path.ends_with("responses") {
            dump("events", &Value::Array(events.clone()));
        }
        (status, events, done)
    }
}

/// With `LLMPROXY_IT_DUMP=<dir>`, writes what the proxy answered to files, so
/// that it can be checked against the full OpenResponses JSON schema.
fn dump(kind: &str, value: &Value) {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    if let Some(dir) = std::env::var_os("LLMPROXY_IT_DUMP") {
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::path::Path::new(&dir).join(format!("{kind}-{}-{n}.json", std::process::id()));
        std::fs::write(path, value.to_string()).unwrap();
    }
}

/// An async-openai client for the proxy at `url`.
pub fn openai_client(url: &str) -> async_openai::Client<async_openai::config::OpenAIConfig> {
    // async-openai builds a default reqwest client before ours replaces it;
    // that needs a process-wide TLS provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = async_openai::config::OpenAIConfig::new()
        .with_api_base(format!("{url}/v1"))
        .with_api_key("unused");
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(no_tls())
        .build()
        .unwrap();
    async_openai::Client::with_config(config).with_http_client(http)
}

/// A rustls config for plain-HTTP test clients (no provider installed
/// globally, no TLS used).
pub fn no_tls() -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth()
}

/// Parses an SSE body into JSON events; `true` if `data: [DONE]` ended it.
/// Checks that every `event:` name equals the data's `type`.
pub fn parse_sse(text: &str) -> (Vec<Value>, bool) {
    let mut events = Vec::new();
    let mut done = false;
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let mut name = None;
        let mut data = String::new();
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event: ") {
                name = Some(v.to_string());
            } else if let Some(v) = line.strip_prefix("data: ") {
                data.push_str(v);
            }
        }
        if data == "[DONE]" {
            assert!(!done, "two [DONE]s");
            done = true;
            continue;
        }
        assert!(!done, "event after [DONE]: {data}");
        let value: Value = serde_json::from_str(&data).unwrap_or_else(|e| panic!("{e}: {data}"));
        if let Some(name) = name {
            assert_eq!(
                Some(name.as_str()),
                value["type"].as_str(),
                "event: name vs type"
            );
        }
        events.push(value);
    }
    (events, done)
}

/// POSTs a streamed Chat request; the raw SSE body.
pub async fn chat_stream_raw(proxy: &TestProxy, body: &Value) -> String {
    proxy
        .http
        .post(format!("{}/v1/chat/completions", proxy.url))
        .json(body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Runs a client script against the proxy; returns the JSON line it prints.
pub async fn run_client(
    program: &str,
    script: &std::path::Path,
    url: &str,
    env: &[(&str, &str)],
) -> Value {
    let (program, script, url) = (program.to_string(), script.to_path_buf(), url.to_string());
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(program)
            .arg(script)
            .env("PROXY_URL", url)
            .envs(env)
            .output()
    })
    .await
    .unwrap()
    .expect("the client program runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The Python of `host/tests/python/.venv` (made by `.ci/run`) and that
/// folder, for the tests driving official Python SDKs; `None` (test
/// skipped) outside CI.
pub fn python_venv() -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python");
    let python = dir.join(".venv/bin/python");
    if !python.exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must create host/tests/python/.venv first"
        );
        eprintln!("skipped: create host/tests/python/.venv with requirements.txt to enable");
        return None;
    }
    Some((python, dir))
}

/// `host/tests/node` when its packages are installed (`npm ci`, done by
/// `.ci/run`); `None` (test skipped) outside CI.
pub fn node_dir() -> Option<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node");
    if dir.join("node_modules").exists() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must run `npm ci --prefix host/tests/node` first"
    );
    eprintln!("skipped: run `npm ci --prefix host/tests/node` to enable");
    None
}

/// A Chat request's `finish_reason`, asked once without and once with
/// streaming (whose reasons are collected and which must end with
/// `[DONE]`).
pub async fn chat_finish_reasons(proxy: &TestProxy, chat: &Value) -> (Value, Vec<String>) {
    let (_, _, v) = proxy.post("/v1/chat/completions", chat).await;
    let mut s = chat.clone();
    s["stream"] = json!(true);
    let (_, finish, _, _, done) = chat_chunks(&chat_stream_raw(proxy, &s).await);
    assert!(done, "the stream ends with [DONE]");
    (v["choices"][0]["finish_reason"].clone(), finish)
}

/// SHA-256 of `bytes` in hex, as `sha256sum` prints it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The workspace's target directory (`CARGO_TARGET_DIR` when set).
pub fn target_dir() -> std::path::PathBuf {
    // A relative one is taken from the workspace root, as .ci/run sets it.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    root.join(std::env::var_os("CARGO_TARGET_DIR").unwrap_or_else(|| "target".into()))
}

/// The misbehaving test translator (`host/tests/translators/hostile`),
/// built with the bundled ones by `.ci/translators` on first use (a no-op
/// when they are built already).
pub fn hostile_wasm() -> &'static str {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut build = std::process::Command::new("bash");
        build.arg(root.join(".ci/translators")).arg("--build-only");
        // The outer build's flags and wrappers stay out of the Wasm build.
        for var in [
            "CARGO_BUILD_TARGET",
            "CARGO_ENCODED_RUSTFLAGS",
            "CARGO_BUILD_RUSTFLAGS",
            "RUSTFLAGS",
            "RUSTC_WORKSPACE_WRAPPER",
            "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
            "CARGO_LLVM_COV",
            "LLVM_PROFILE_FILE",
        ] {
            build.env_remove(var);
        }
        let out = build.output().expect("bash runs .ci/translators");
        assert!(
            out.status.success(),
            "building the hostile test translator failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        target_dir()
            .join("translators/wasm32-wasip2/release/llmproxy_test_hostile.wasm")
            .display()
            .to_string()
    })
}

/// Prints as the hostile test translator's path (`{HOSTILE:?}` in a
/// config), building it first.
pub struct Hostile;
pub const HOSTILE: Hostile = Hostile;

impl std::fmt::Debug for Hostile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(hostile_wasm(), f)
    }
}

/// `path` when it was built; `None` (test skipped) outside CI, where
/// `how` says how to build it. CI (`CI` set) must have built it.
pub fn built(path: std::path::PathBuf, how: &str) -> Option<std::path::PathBuf> {
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must build {} first ({how})",
        path.display()
    );
    eprintln!("skipped: {} is not built ({how})", path.display());
    None
}

/// Whether `program` runs (asked its version with `arg`); in CI it must.
pub(crate) fn installed(program: &str, arg: &str, package: &str) -> bool {
    if std::process::Command::new(program)
        .arg(arg)
        .output()
        .is_ok()
    {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must install {program} (apt-get install {package})"
    );
    eprintln!("skipped: install {package} to enable");
    false
}
