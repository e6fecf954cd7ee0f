//! Translators loaded from files, and the sandbox around them, proven with
//! a translator that misbehaves on purpose (`host/tests/translators/hostile`).

use crate::spec::check_stream;
use crate::support::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn sha256(path: &str) -> String {
    sha256_hex(&std::fs::read(path).unwrap())
}

/// A backend `name` serving `name-*` with the hostile translator in `mode`,
/// and a well-behaved bundled backend serving everything else.
fn config(base_url: &str, modes: &[&str]) -> String {
    let mut toml = String::new();
    for mode in modes {
        toml.push_str(&format!(
            "[[backends]]\nname = \"{mode}\"\ntranslator = {{ path = {HOSTILE:?} }}\nbase_url = \"{base_url}\"\nmodels = [\"{mode}-*\"]\nsettings = {{ mode = \"{mode}\" }}\nlimits = {{ call_timeout_ms = 200, memory_limit_mib = 32 }}\n\n"
        ));
    }
    toml.push_str(&format!(
        "[[backends]]\nname = \"fine\"\nkind = \"openresponses\"\nbase_url = \"{base_url}\"\nmodels = [\"*\"]\n"
    ));
    toml
}

async fn proxy_error(toml: &str) -> String {
    let config = llmproxy::Config::from_toml(toml).expect("the config parses");
    llmproxy::Proxy::new(config).await.unwrap_err().to_string()
}

#[tokio::test]
async fn a_translator_file_serves_requests_with_its_checksum_pinned() {
    let up = FakeUpstream::start().await;
    let key = std::env::temp_dir().join(format!("llmproxy-it-mine-{}", std::process::id()));
    std::fs::write(&key, "sk-mine\n").unwrap();
    let toml = format!(
        "[[backends]]\nname = \"mine\"\ntranslator = {{ path = {HOSTILE:?}, sha256 = \"{}\" }}\nbase_url = \"{}\"\nmodels = [\"*\"]\nauth = {{ bearer_file = {key:?} }}\n",
        sha256(hostile_wasm()).to_uppercase(),
        up.base_url
    );
    let proxy = TestProxy::start(&toml).await;
    let (status, _, v) = proxy
        .post("/v1/responses", &json!({"model": "m", "input": "hi"}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["output"][0]["content"][0]["text"], "Hello from m");
    let sent = up.last();
    assert_eq!(sent.path, "/v1/responses");
    assert_eq!(
        sent.headers["authorization"], "Bearer sk-mine",
        "the host adds the configured credentials"
    );
    let (status, _, v) = proxy
        .post(
            "/v1/chat/completions",
            &json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], "Hello from m");
    let _ = std::fs::remove_file(key);
}

#[tokio::test]
async fn bad_translator_files_are_refused_at_startup() {
    let base =
        "[[backends]]\nname = \"mine\"\nbase_url = \"http://127.0.0.1:9\"\nmodels = [\"*\"]\n";
    let e = proxy_error(&format!(
        "{base}translator = {{ path = {HOSTILE:?}, sha256 = \"{}\" }}\n",
        "0".repeat(64)
    ))
    .await;
    assert!(
        e.contains(&format!("its SHA-256 is {}", sha256(hostile_wasm())))
            && e.contains("the config pins 0000"),
        "{e}"
    );
    let e = proxy_error(&format!(
        "{base}translator = {{ path = \"/nonexistent/x.wasm\" }}\n"
    ))
    .await;
    assert!(e.contains("/nonexistent/x.wasm: cannot read it"), "{e}");

    let dir = std::env::temp_dir().join(format!("llmproxy-it-sandbox-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A core module (what `--target wasm32-unknown-unknown` builds).
    let core = dir.join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let e = proxy_error(&format!("{base}translator = {{ path = {core:?} }}\n")).await;
    assert!(
        e.contains("a core WebAssembly module, not a component"),
        "{e}"
    );
    // A component exporting the contract at another version.
    let name = b"llmproxy:translator/translator@0.0.1";
    let mut other = b"\0asm\x0d\0\x01\0".to_vec();
    other.extend([5, 3, 1, 1, 0]);
    other.extend([11, 6 + name.len() as u8, 1, 0, name.len() as u8]);
    other.extend(name);
    other.extend([5, 0, 0]);
    let other_path = dir.join("other.wasm");
    std::fs::write(&other_path, &other).unwrap();
    let e = proxy_error(&format!("{base}translator = {{ path = {other_path:?} }}\n")).await;
    assert!(
        e.contains("it exports llmproxy:translator/translator@0.0.1, but this llmproxy supports llmproxy:translator/translator@0.3.0"),
        "{e}"
    );
    // Not a translator at all.
    let empty = dir.join("empty.wasm");
    std::fs::write(&empty, b"\0asm\x0d\0\x01\0").unwrap();
    let e = proxy_error(&format!("{base}translator = {{ path = {empty:?} }}\n")).await;
    assert!(e.contains("is it an llmproxy translator?"), "{e}");

    let e = llmproxy::Config::from_toml(&format!(
        "{base}translator = {{ path = \"x.wasm\", sha256 = \"abc\" }}\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("64 hex digits"), "{e}");
    let e = llmproxy::Config::from_toml(&format!(
        "{base}kind = \"openai\"\ntranslator = {{ path = \"x.wasm\" }}\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("either `kind` or `translator`"), "{e}");
    let e = llmproxy::Config::from_toml(base).unwrap_err().to_string();
    assert!(e.contains("set `kind` to a bundled translator"), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}

fn translator_error(status: http::StatusCode, v: &Value, needle: &str) {
    assert_eq!(status, 502, "{v}");
    assert_eq!(v["error"]["code"], "translator_error", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("translator \"llmproxy_test_hostile.wasm\"")
            && !message.contains("/target/")
            && message.contains(needle),
        "{message}"
    );
}

#[tokio::test]
async fn a_spinning_translator_is_stopped_and_others_keep_serving() {
    let up = FakeUpstream::start().await;
    let proxy = TestProxy::start(&config(&up.base_url, &["loop", "stream-loop"])).await;
    let started = Instant::now();
    let loop_request = json!({"model": "loop-1", "input": "hi"});
    let spinning = proxy.post("/v1/responses", &loop_request);
    let others = async {
        // Meanwhile, other requests are answered - many of them.
        let started = Instant::now();
        for _ in 0..20 {
            let (status, _, _) = proxy
                .post("/v1/responses", &json!({"model": "m", "input": "hi"}))
                .await;
            assert_eq!(status, 200);
        }
        started.elapsed()
    };
    let ((status, _, v), others) = tokio::join!(spinning, others);
    translator_error(status, &v, "exceeded its time limit of 200 ms");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopped promptly: {:?}",
        started.elapsed()
    );
    assert!(others < Duration::from_secs(5), "{others:?}");

    // In a stream, the client gets a proper ending.
    let (status, events, _) = proxy
        .post_stream(
            "/v1/responses",
            &json!({"model": "stream-loop-1", "input": "hi", "stream": true}),
        )
        .await;
    assert_eq!(status, 200);
    check_stream(&events).unwrap();
    assert_eq!(events.last().unwrap()["type"], "response.failed");
    let error = events.iter().find(|e| e["type"] == "error").unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("time limit"),
        "{error}"
    );
}

#[tokio::test]
async fn memory_traps_huge_output_and_credentials_are_contained() {
    let up = FakeUpstream::start().await;
    let toml = format!(
        "[server]\nmetrics_on_main_listener = true\n\n{}",
        config(&up.base_url, &["memory", "huge", "trap", "auth"])
    );
    let proxy = TestProxy::start(&toml).await;
    let ask = async |model: &str| {
        proxy
            .post(
                "/v1/responses",
                &json!({"model": format!("{model}-1"), "input": "hi"}),
            )
            .await
    };
    let (status, _, v) = ask("memory").await;
    translator_error(status, &v, "exceeded its memory limit of 32 MiB");
    let (status, _, v) = ask("huge").await;
    translator_error(status, &v, "exceeded its memory limit of 32 MiB");
    let (status, _, v) = ask("trap").await;
    translator_error(status, &v, "trapped in request");
    let before = up.received().len();
    let (status, _, v) = ask("auth").await;
    translator_error(
        status,
        &v,
        "tried to set the credential header authorization",
    );
    assert_eq!(up.received().len(), before, "nothing was sent upstream");
    // The proxy is unharmed.
    let (status, _, _) = ask("fine").await;
    assert_eq!(status, 200);
    // The metrics counted each fault by kind.
    let metrics = proxy.scrape().await;
    let faults = |kind: &str| -> u64 {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with("llmproxy_translator_faults_total{")
                    && l.contains(&format!("kind=\"{kind}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    assert_eq!(faults("memory"), 2, "{metrics}");
    assert_eq!(faults("trap"), 1, "{metrics}");
}

#[tokio::test]
async fn a_translator_gets_no_environment_files_network_or_credentials() {
    let up = FakeUpstream::start().await;
    let key = std::env::temp_dir().join(format!("llmproxy-it-snoop-{}", std::process::id()));
    std::fs::write(&key, "sk-snooped-upstream-key\n").unwrap();
    let toml = config(&up.base_url, &["snoop"]).replacen(
        "limits =",
        &format!("auth = {{ bearer_file = {key:?} }}\nlimits ="),
        1,
    );
    let proxy = TestProxy::start_with_key(&toml, Some("sk-snooped-client-key")).await;
    let r = proxy
        .http
        .post(format!("{}/v1/chat/completions", proxy.url))
        .bearer_auth("sk-snooped-client-key")
        .json(&json!({"model": "snoop-1", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    drop(r);
    let seen = up.last().body;
    assert_eq!(
        up.last().headers["authorization"],
        "Bearer sk-snooped-upstream-key",
        "the host adds the key after the translator"
    );
    // The Chat request's own parameters, not its conversation again.
    let extras = seen["given"]["extras"].as_str().unwrap();
    assert!(
        extras.contains("\"chat\"") && !extras.contains("messages"),
        "{seen}"
    );
    let text = seen.to_string();
    assert!(
        !text.contains("sk-snooped"),
        "a credential reached the translator: {text}"
    );
    assert_eq!(seen["env"], json!([]), "{seen}");
    assert_eq!(seen["args"], json!([]), "{seen}");
    // wasi-libc reports "/" as the directory, but nothing is mounted there.
    for key in ["passwd", "root", "write", "tcp", "dns"] {
        assert!(seen[key].get("error").is_some(), "{key}: {seen}");
    }
    assert!(
        std::env::vars().next().is_some(),
        "the proxy's own environment is not empty"
    );
}

/// Isolation between requests: a custom translator gets a fresh instance
/// for every request, so nothing one request leaves behind reaches the
/// next; an operator who trusts it can let it reuse warm instances (as the
/// bundled translators do), and then what a request leaves is there for
/// the next - but never after a fault, which discards the instance.
#[tokio::test]
async fn custom_translators_get_fresh_instances_unless_the_operator_opts_in() {
    let up = FakeUpstream::start().await;
    let previous = async |proxy: &TestProxy, input: &str| {
        let body = json!({"model": "remember-1", "input": input});
        let (status, _, v) = proxy.post("/v1/responses", &body).await;
        (status, v, up.last().body["x_previous"].clone())
    };
    let fresh = TestProxy::start(&config(&up.base_url, &["remember"])).await;
    for input in ["first secret", "second", "third"] {
        let (status, v, seen) = previous(&fresh, input).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(seen, Value::Null, "a fresh instance saw {seen}");
    }
    let toml = config(&up.base_url, &["remember"]).replacen(
        "}\nbase_url",
        ", reuse_instances = true }\nbase_url",
        1,
    );
    let warm = TestProxy::start(&toml).await;
    // An instance that mapped a whole stream serves the next request too.
    let (status, events, _) = warm
        .post_stream(
            "/v1/responses",
            &json!({"model": "remember-1", "input": "streamed", "stream": true}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(events.last().unwrap()["type"], "response.completed");
    let (_, _, seen) = previous(&warm, "first secret").await;
    assert!(
        seen.as_str().is_some_and(|s| s.contains("streamed")),
        "the stream's instance was kept warm: {seen}"
    );
    let (_, _, seen) = previous(&warm, "second").await;
    assert!(
        seen.as_str().is_some_and(|s| s.contains("first secret")),
        "a reused instance remembers: {seen}"
    );
    let (status, _, _) = previous(&warm, "trap-now").await;
    assert_eq!(status, 502);
    let (status, v, seen) = previous(&warm, "after the trap").await;
    assert_eq!(status, 200, "{v}");
    assert!(
        !seen.to_string().contains("trap-now") && !seen.to_string().contains("second"),
        "the faulted instance was discarded: {seen}"
    );
}
