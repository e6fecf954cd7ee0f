//! The `llmproxy` binary as a user runs it.

use crate::support::*;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Running {
    child: Child,
    url: String,
    /// Every line the proxy logged so far.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary and waits for its "listening on" line.
fn spawn(args: &[&str], envs: &[(&str, &str)]) -> Running {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_llmproxy"));
    cmd.args(args)
        .env_remove("LLMPROXY_API_KEY")
        .env_remove("LLMPROXY_CONFIG")
        .env_remove("LLMPROXY_BACKEND")
        .env_remove("OPENAI_API_KEY")
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env_remove("GCE_METADATA_HOST")
        .env_remove("CLOUDSDK_CONFIG")
        .env_remove("VERTEX_LOCATION")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .stdout(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let lines = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            lines.lock().unwrap().push(line.clone());
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let addr = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                let _ = tx.send(Ok(addr));
            } else if line.contains("Error") || line.contains("error:") {
                let _ = tx.send(Err(line));
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(Ok(addr)) => Running {
            child,
            url: format!("http://{addr}"),
            log,
        },
        other => panic!("llmproxy did not start: {other:?}"),
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(no_tls())
        .build()
        .unwrap()
}

#[tokio::test]
async fn single_backend_mode_from_flags_streams() {
    let up = FakeUpstream::start().await;
    let started = Instant::now();
    let proxy = spawn(
        &[
            "--backend",
            "openresponses",
            "--base-url",
            &up.base_url,
            "-l",
            "127.0.0.1:0",
        ],
        &[],
    );
    let http = client();
    let r = http
        .post(format!("{}/v1/responses", proxy.url))
        .json(&json!({"model": "qwen3", "input": "hi", "stream": true}))
        .send()
        .await
        .unwrap();
    eprintln!(
        "binary: first streamed answer {} ms after spawn",
        started.elapsed().as_millis()
    );
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let (events, done) = parse_sse(&r.text().await.unwrap());
    crate::spec::check_stream(&events).unwrap();
    assert!(done);
}

#[tokio::test]
async fn config_file_mode_with_env_and_client_key() {
    let up = FakeUpstream::start().await;
    let dir = std::env::temp_dir().join(format!("llmproxy-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("llmproxy.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n{}",
            single(&up.base_url)
        ),
    )
    .unwrap();
    let proxy = spawn(
        &[],
        &[
            ("LLMPROXY_CONFIG", path.to_str().unwrap()),
            ("LLMPROXY_API_KEY", "k-123"),
        ],
    );
    let http = client();
    let r = http
        .post(format!("{}/v1/responses", proxy.url))
        .json(&json!({"model": "m", "input": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .post(format!("{}/v1/responses", proxy.url))
        .bearer_auth("k-123")
        .json(&json!({"model": "m", "input": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["output"][0]["content"][0]["text"], "Hello from m");
    let _ = std::fs::remove_dir_all(dir);
}

fn run(args: &[&str], envs: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_llmproxy"));
    cmd.args(args)
        .env_remove("LLMPROXY_API_KEY")
        .env_remove("LLMPROXY_CONFIG")
        .env_remove("LLMPROXY_BACKEND")
        .env_remove("GOOGLE_CLOUD_PROJECT")
        .env_remove("OPENAI_API_KEY")
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env_remove("GCE_METADATA_HOST")
        .env_remove("CLOUDSDK_CONFIG")
        .env_remove("VERTEX_LOCATION")
        .env("NO_COLOR", "1");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_documents_every_flag_and_env_var() {
    let (ok, out, _) = run(&["--help"], &[]);
    assert!(ok);
    for needle in [
        "--config",
        "LLMPROXY_CONFIG",
        "--listen",
        "LLMPROXY_LISTEN",
        "--backend",
        "LLMPROXY_BACKEND",
        "--base-url",
        "LLMPROXY_BASE_URL",
        "--models",
        "--api-key-env",
        "--no-api-key",
        "--project",
        "GOOGLE_CLOUD_PROJECT",
        "--location",
        "VERTEX_LOCATION",
        "--setting",
        "--check-config",
        "LLMPROXY_API_KEY",
        "RUST_LOG",
    ] {
        assert!(out.contains(needle), "--help lacks {needle}:\n{out}");
    }
}

#[test]
fn startup_errors_name_the_problem_and_the_fix() {
    let dir = std::env::temp_dir().join(format!("llmproxy-it-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        (
            "[[backends]]\nname = \"a\"\nkind = \"openresponses\"\nbase_url = \"http://x/v1\"\nmodels = [\"*\"]\nmodles = 1\n",
            "modles",
        ),
        (
            "[[backends]]\nname = \"a\"\nkind = \"openresponses\"\nbase_url = \"http://x/v1\"\nmodels = [\"gpt-[\"]\n",
            "models[0]",
        ),
        (
            "[[backends]]\nname = \"a\"\nkind = \"nonesuch\"\nbase_url = \"http://x/v1\"\nmodels = [\"*\"]\n",
            "available kinds: gcp-vertex, openai, openresponses\n",
        ),
        (
            "[[backends]]\nname = \"a\"\nkind = \"openresponses\"\nbase_url = \"http://x/v1\"\nmodels = [\"*\"]\nauth = { bearer_env = \"LLMPROXY_IT_SURELY_UNSET\" }\n",
            "LLMPROXY_IT_SURELY_UNSET, which is not set",
        ),
        (
            "[[backends]]\nname = \"a\"\nkind = \"openresponses\"\nmodels = [\"*\"]\n",
            "base_url is required",
        ),
        ("", "no backends configured"),
        (
            "[responses]\nstore = \"redis\"\n[[backends]]\nname = \"a\"\nkind = \"openresponses\"\nbase_url = \"http://x/v1\"\nmodels = [\"*\"]\n",
            "needs responses.url",
        ),
        (
            "[responses]\nstore = \"disk\"\n[[backends]]\nname = \"a\"\nkind = \"openresponses\"\nbase_url = \"http://x/v1\"\nmodels = [\"*\"]\n",
            "store = \"disk\" needs path",
        ),
        (
            "[responses]\nstore = \"disk\"\npath = \"/nonexistent-dir/r.redb\"\n[[backends]]\nname = \"a\"\nkind = \"openresponses\"\nbase_url = \"http://x/v1\"\nmodels = [\"*\"]\n",
            "the directory does not exist",
        ),
        (
            "[responses]\nstore = \"sqlite\"\n[[backends]]\nname = \"a\"\nkind = \"openresponses\"\nbase_url = \"http://x/v1\"\nmodels = [\"*\"]\n",
            "expected one of `memory`, `disk`, `redis`, `off`",
        ),
    ];
    for (i, (toml, needle)) in cases.iter().enumerate() {
        let path = dir.join(format!("c{i}.toml"));
        std::fs::write(&path, toml).unwrap();
        let (ok, _, err) = run(&["--check-config", "-c", path.to_str().unwrap()], &[]);
        assert!(!ok, "case {i} should fail");
        assert!(err.contains(needle), "case {i}: {err}");
    }
    let path = dir.join("good.toml");
    std::fs::write(&path, single("http://127.0.0.1:9/v1")).unwrap();
    let (ok, out, err) = run(&["--check-config", "-c", path.to_str().unwrap()], &[]);
    assert!(ok, "{err}");
    assert!(out.contains("config OK"), "{out}");
    let (ok, _, err) = run(
        &[
            "--project",
            "p",
            "--backend",
            "openresponses",
            "--base-url",
            "http://x/v1",
            "--check-config",
        ],
        &[],
    );
    assert!(!ok);
    assert!(
        err.contains("--project only applies to --backend gcp-vertex"),
        "{err}"
    );
    let (ok, _, err) = run(&[], &[]);
    assert!(!ok);
    assert!(
        err.contains("--config") && err.contains("--backend"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn example_config_is_valid() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../llmproxy.example.toml");
    let adc =
        std::env::temp_dir().join(format!("llmproxy-example-adc-{}.json", std::process::id()));
    std::fs::write(
        &adc,
        r#"{"type":"authorized_user","client_id":"c","client_secret":"s","refresh_token":"r"}"#,
    )
    .unwrap();
    let (ok, out, err) = run(
        &["--check-config", "-c", example],
        &[
            ("LAB_API_KEY", "example-key"),
            ("OPENAI_API_KEY", "sk-example"),
            ("GOOGLE_APPLICATION_CREDENTIALS", adc.to_str().unwrap()),
        ],
    );
    let _ = std::fs::remove_file(adc);
    assert!(ok, "{err}");
    assert!(out.contains("backend local (openresponses)"), "{out}");
    assert!(
        out.contains("backend openai (openai) <- gpt-*, o[0-9]*"),
        "{out}"
    );
    assert!(out.contains("backend vllm (openai)"), "{out}");
    assert!(
        out.contains("backend vertex (gcp-vertex) <- gemini-*"),
        "{out}"
    );
    assert!(out.contains("backend lab (openresponses) <- *"), "{out}");
}

#[tokio::test]
async fn openai_single_backend_mode_serves_chat_clients() {
    let up = FakeUpstream::start().await;
    let (ok, _, err) = run(&["--backend", "openai", "--check-config"], &[]);
    assert!(!ok);
    assert!(err.contains("OPENAI_API_KEY, which is not set"), "{err}");
    let proxy = spawn(
        &[
            "--backend",
            "openai",
            "--base-url",
            &up.base_url,
            "--no-api-key",
            "-l",
            "127.0.0.1:0",
        ],
        &[],
    );
    let r = client()
        .post(format!("{}/v1/chat/completions", proxy.url))
        .json(&json!({"model": "gpt-x", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "Hello from gpt-x");
    assert!(up.last().headers.get("authorization").is_none());
}

/// The README's Vertex command, with every ADC source Google's libraries
/// use: GOOGLE_APPLICATION_CREDENTIALS (an authorized_user file, as gcloud
/// writes it), gcloud's well-known file under HOME, and the metadata server
/// at GCE_METADATA_HOST; project and location from flags or environment.
#[tokio::test]
async fn gcp_vertex_single_backend_mode_with_each_credential_source() {
    let vertex = crate::fake_vertex::FakeVertex::start().await;
    let adc = vertex.credentials_file();
    let home = std::env::temp_dir().join(format!("llmproxy-home-{}", std::process::id()));
    let gcloud = home.join(".config/gcloud");
    std::fs::create_dir_all(&gcloud).unwrap();
    std::fs::copy(&adc, gcloud.join("application_default_credentials.json")).unwrap();
    let empty_home =
        std::env::temp_dir().join(format!("llmproxy-empty-home-{}", std::process::id()));
    std::fs::create_dir_all(&empty_home).unwrap();
    let flags = [
        "--backend",
        "gcp-vertex",
        "--base-url",
        &vertex.base_url,
        "-l",
        "127.0.0.1:0",
    ];
    let project_flags = [
        "--project",
        crate::fake_vertex::PROJECT,
        "--location",
        crate::fake_vertex::LOCATION,
    ];
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, String)>);
    let cases: Vec<Case> = vec![
        (
            [&flags[..], &project_flags[..]].concat(),
            vec![
                ("GOOGLE_APPLICATION_CREDENTIALS", adc.display().to_string()),
                ("HOME", empty_home.display().to_string()),
            ],
        ),
        (
            flags.to_vec(),
            vec![
                ("HOME", home.display().to_string()),
                (
                    "GOOGLE_CLOUD_PROJECT",
                    crate::fake_vertex::PROJECT.to_string(),
                ),
                ("VERTEX_LOCATION", crate::fake_vertex::LOCATION.to_string()),
            ],
        ),
        (
            [&flags[..], &project_flags[..]].concat(),
            vec![
                ("GCE_METADATA_HOST", vertex.host.clone()),
                ("HOME", empty_home.display().to_string()),
            ],
        ),
    ];
    for (i, (args, envs)) in cases.iter().enumerate() {
        let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let proxy = spawn(args, &envs);
        let r = client()
            .post(format!("{}/v1/chat/completions", proxy.url))
            .json(&json!({"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "case {i}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            v["choices"][0]["message"]["content"], "Hello from gemini-2.5-flash",
            "case {i}"
        );
    }
    assert_eq!(vertex.token_requests(), 3);

    let (ok, _, err) = run(
        &[
            "--backend",
            "gcp-vertex",
            "--project",
            "p",
            "--location",
            "us-east5",
            "--check-config",
        ],
        &[
            ("HOME", empty_home.to_str().unwrap()),
            ("NO_GCE_CHECK", "true"),
        ],
    );
    assert!(!ok);
    for needle in [
        "no Google credentials found",
        "GOOGLE_APPLICATION_CREDENTIALS (not set)",
        "application_default_credentials.json (not found)",
        "gcloud auth application-default login",
    ] {
        assert!(err.contains(needle), "{needle}: {err}");
    }
    let (ok, _, err) = run(
        &[
            "--backend",
            "gcp-vertex",
            "--location",
            "us-east5",
            "--check-config",
        ],
        &[],
    );
    assert!(!ok);
    assert!(
        err.contains("project") && err.contains("GOOGLE_CLOUD_PROJECT"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(home);
}

#[test]
fn translate_shows_the_upstream_request_and_the_mapped_answer_offline() {
    let dir = std::env::temp_dir().join(format!("llmproxy-it-translate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    // No secret is set: the dry run reads none.
    let config = file(
        "llmproxy.toml",
        "[[backends]]\nname = \"oai\"\nkind = \"openai\"\nauth = { bearer_env = \"NOT_SET_ANYWHERE\" }\nmodels = [\"gpt-*\"]\n\n\
         [[backends]]\nname = \"vertex\"\nkind = \"gcp-vertex\"\nmodels = [\"gemini-*\"]\nsettings = { project = \"p1\", location = \"global\" }\n",
    );
    let chat = file(
        "chat.json",
        r#"{"model": "gpt-5", "messages": [{"role": "user", "content": "hi"}], "seed": 4}"#,
    );
    let answer = file(
        "answer.json",
        r#"{"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-5",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Hello!"}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}"#,
    );
    let (ok, out, err) = run(
        &[
            "--config",
            &config,
            "translate",
            &chat,
            "--response",
            &answer,
        ],
        &[],
    );
    assert!(ok, "{err}");
    assert!(
        out.starts_with("=== upstream request\nPOST https://api.openai.com/v1/chat/completions\n"),
        "{out}"
    );
    assert!(out.contains("authorization: Bearer [redacted]\n"), "{out}");
    assert!(out.contains("host: api.openai.com\n"), "{out}");
    assert!(
        out.contains("\"seed\": 4"),
        "the Chat request as sent: {out}"
    );
    assert!(
        out.contains("=== canonical response (Responses)\n{\n  \"status\": \"completed\""),
        "{out}"
    );
    assert!(
        out.contains("=== Chat Completions client gets HTTP 200 (application/json)"),
        "{out}"
    );
    assert!(out.contains("\"content\": \"Hello!\""), "{out}");

    // A Responses request for Vertex, streaming, with a recorded SSE answer
    // and the model chosen on the command line; Google credentials are
    // never looked up.
    let responses = file(
        "responses.json",
        r#"{"model": "x", "input": "hi", "stream": true}"#,
    );
    let sse = file(
        "answer.sse",
        "data: {\"candidates\": [{\"content\": {\"role\": \"model\", \"parts\": [{\"text\": \"Hi there\"}]}, \"finishReason\": \"STOP\"}], \"usageMetadata\": {\"promptTokenCount\": 2, \"candidatesTokenCount\": 2, \"totalTokenCount\": 4}}\n\n",
    );
    let (ok, out, err) = run(
        &[
            "--config",
            &config,
            "translate",
            &responses,
            "--model",
            "gemini-2.5-pro",
            "--response",
            &sse,
        ],
        &[],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("POST https://aiplatform.googleapis.com/v1/projects/p1/locations/global/publishers/google/models/gemini-2.5-pro:streamGenerateContent?alt=sse\n"),
        "{out}"
    );
    assert!(out.contains("authorization: Bearer [redacted]\n"), "{out}");
    assert!(
        out.contains("=== canonical events (Responses)\n{\"type\":\"response.created\""),
        "{out}"
    );
    assert!(
        out.contains(
            "=== Responses client gets HTTP 200 (text/event-stream)\nevent: response.created"
        ),
        "{out}"
    );
    assert!(out.contains("\"delta\":\"Hi there\""), "{out}");

    // Bad input: clear errors, non-zero exit.
    let broken = file("broken.json", r#"{"model": "gpt-5", "input": "#);
    let (ok, _, err) = run(&["--config", &config, "translate", &broken], &[]);
    assert!(
        !ok && err.contains("the request is not a JSON object"),
        "{err}"
    );
    let neither = file("neither.json", r#"{"model": "gpt-5"}"#);
    let (ok, _, err) = run(&["--config", &config, "translate", &neither], &[]);
    assert!(!ok && err.contains("neither `messages`"), "{err}");
    let unknown = file("unknown.json", r#"{"model": "llama", "input": "hi"}"#);
    let (ok, out, err) = run(&["--config", &config, "translate", &unknown], &[]);
    assert!(!ok && err.contains("would send nothing upstream"), "{err}");
    assert!(
        out.contains("HTTP 404") && out.contains("model_not_found"),
        "{out}"
    );
    let (ok, _, err) = run(
        &[
            "--config",
            &config,
            "translate",
            &chat,
            "--response",
            "/nonexistent.sse",
        ],
        &[],
    );
    assert!(!ok && err.contains("cannot read /nonexistent.sse"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn sighup_and_file_changes_reload_the_config_and_bad_ones_are_refused() {
    let (a, b) = (FakeUpstream::start().await, FakeUpstream::start().await);
    let dir = std::env::temp_dir().join(format!("llmproxy-it-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A pinned translator file, loaded relative to the config.
    let hostile = std::fs::read(env!("LLMPROXY_TEST_HOSTILE_WASM")).unwrap();
    std::fs::write(dir.join("mine.wasm"), &hostile).unwrap();
    let pinned = format!(
        "[[backends]]\nname = \"pinned\"\ntranslator = {{ path = \"mine.wasm\", sha256 = \"{}\" }}\nbase_url = \"{}\"\nmodels = [\"p*\"]\n\n",
        sha256_hex(&hostile),
        a.base_url
    );
    let config = dir.join("llmproxy.toml");
    let write = |upstream: &str, models: &str| {
        let text = format!(
            "{pinned}[[backends]]\nname = \"main\"\nkind = \"openresponses\"\nbase_url = \"{upstream}\"\nmodels = [{models}]\n"
        );
        std::fs::write(&config, text).unwrap();
    };
    write(&a.base_url, "\"m*\"");
    let proxy = spawn(
        &[
            "--config",
            config.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    let http = client();
    let ask = async |model: &str| {
        let r = http
            .post(format!("{}/v1/responses", proxy.url))
            .json(&json!({"model": model, "input": "hi"}))
            .send()
            .await
            .unwrap();
        r.status().as_u16()
    };
    let until = async |what: &str, check: &dyn Fn() -> bool| {
        let start = Instant::now();
        while !check() {
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "timed out: {what}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let logged = |needle: &str| {
        proxy
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    };
    assert_eq!(ask("m1").await, 200);
    assert_eq!(ask("p1").await, 200);
    assert_eq!(ask("n1").await, 404);
    assert_eq!(a.received().len(), 2);

    // SIGHUP: a new upstream and a new model glob.
    write(&b.base_url, "\"m*\", \"n*\"");
    let hup = || {
        let status = Command::new("kill")
            .args(["-HUP", &proxy.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    hup();
    until("the SIGHUP reload", &|| logged("reloaded") == 1).await;
    assert_eq!(ask("n1").await, 200);
    assert_eq!(b.received().len(), 1, "served by the new upstream");

    // A broken config is refused; the running one keeps serving.
    std::fs::write(
        &config,
        "[[backends]]\nname = \"x\"\nkind = \"nope\"\nmodels = [\"*\"]\n",
    )
    .unwrap();
    hup();
    until("the refused reload", &|| {
        logged("failed, still serving the previous config") >= 1
    })
    .await;
    assert!(
        logged("unknown kind \"nope\"") >= 1,
        "{:?}",
        proxy.log.lock().unwrap()
    );
    assert_eq!(ask("n1").await, 200);
    assert_eq!(b.received().len(), 2);

    // A changed file is noticed without a signal.
    write(&a.base_url, "\"m*\", \"n*\", \"o*\"");
    until("the file-watch reload", &|| logged("reloaded") == 2).await;
    assert_eq!(ask("o1").await, 200);
    assert_eq!(a.received().len(), 3);

    // So is a translator file replaced behind the config's back: its
    // checksum no longer matches, and the loaded one keeps serving.
    let mut tampered = hostile.clone();
    tampered.extend_from_slice(b"\0tampered");
    std::fs::write(dir.join("mine.wasm"), &tampered).unwrap();
    until("the refused translator", &|| logged("its SHA-256 is") >= 1).await;
    assert_eq!(ask("p1").await, 200);
    assert_eq!(logged("reloaded"), 2);
    let _ = std::fs::remove_dir_all(dir);
}

/// Writes a config file for one test; the path.
fn config_file(name: &str, toml: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("llmproxy-it-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("llmproxy.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

/// Sends `signal` to the proxy and waits for it to exit: (exit code, time).
fn stop(proxy: &mut Running, signal: &str) -> (Option<i32>, Duration) {
    let pid = proxy.child.id().to_string();
    let status = Command::new("kill").args([signal, &pid]).status().unwrap();
    assert!(status.success());
    let started = Instant::now();
    loop {
        if let Some(status) = proxy.child.try_wait().unwrap() {
            return (status.code(), started.elapsed());
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "llmproxy did not exit after {signal}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn sigterm_finishes_short_streams_and_ends_long_ones_at_the_deadline() {
    let up = FakeUpstream::start().await;
    let events = text_stream_events("m", "a slow but finite answer");
    // First request: a stream that never ends. Second: one that ends
    // within the grace period.
    up.script([
        Reply::Sse {
            chunks: sse_body(&events[..3]),
            delay: Duration::ZERO,
            then_hang: true,
        },
        Reply::Sse {
            chunks: sse_body(&events),
            delay: Duration::from_millis(60),
            then_hang: false,
        },
    ]);
    let path = config_file(
        "shutdown",
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_timeout_secs = 1.5\n{}",
            single(&up.base_url)
        ),
    );
    let mut proxy = spawn(&["--config", path.to_str().unwrap()], &[]);
    let http = client();
    let mut endless = http
        .post(format!("{}/v1/chat/completions", proxy.url))
        .json(
            &json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    let first = endless.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("chat.completion.chunk"));
    let finite = http
        .post(format!("{}/v1/responses", proxy.url))
        .json(&json!({"model": "m", "input": "hi", "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(finite.status(), 200);

    let stopper = tokio::task::spawn_blocking(move || {
        let stopped = stop(&mut proxy, "-TERM");
        (stopped, proxy)
    });
    let finite = finite.text().await.unwrap();
    let mut rest = String::from_utf8_lossy(&first).into_owned();
    while let Some(chunk) = endless.chunk().await.unwrap() {
        rest.push_str(&String::from_utf8_lossy(&chunk));
    }
    let ((code, took), proxy) = stopper.await.unwrap();

    // The stream that could finish did, normally.
    let (events, done) = parse_sse(&finite);
    crate::spec::check_stream(&events).unwrap();
    assert_eq!(events.last().unwrap()["type"], "response.completed");
    assert!(done);
    // The endless one was ended at the deadline with an error, not [DONE].
    let frames: Vec<&str> = rest.split("\n\n").filter(|f| !f.is_empty()).collect();
    let last = frames.last().unwrap();
    assert!(last.contains("\"code\":\"shutting_down\""), "{rest}");
    assert!(!rest.contains("[DONE]"), "{rest}");
    assert_eq!(code, Some(0), "clean exit");
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(8),
        "exit {took:?} after SIGTERM (deadline 1.5 s)"
    );
    let log = proxy.log.lock().unwrap().join("\n");
    assert!(log.contains("SIGTERM: shutting down"), "{log}");
    assert!(log.contains("shutdown deadline reached"), "{log}");
    // Nothing is listening any more.
    assert!(
        http.get(format!("{}/healthz", proxy.url))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn trace_logs_never_show_a_secret_and_each_request_is_one_json_record() {
    const UPSTREAM_KEY: &str = "sk-upstream-SECRET-4f2a9c";
    const CLIENT_KEY: &str = "proxy-key-SECRET-77e1b0";
    let up = FakeUpstream::start().await;
    let vertex = crate::fake_vertex::FakeVertex::start().await;
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\
         [[backends]]\nname = \"oa\"\nkind = \"openai\"\nbase_url = \"{}\"\nmodels = [\"gpt-*\"]\nauth = {{ bearer_env = \"UP_KEY\" }}\n{}",
        up.base_url,
        vertex
            .config("")
            .replace("models = [\"*\"]", "models = [\"gemini-*\"]")
    );
    let path = config_file("secrets", &toml);
    let mut proxy = spawn(
        &["--config", path.to_str().unwrap(), "--log-format", "json"],
        &[
            ("RUST_LOG", "trace"),
            ("UP_KEY", UPSTREAM_KEY),
            ("LLMPROXY_API_KEY", CLIENT_KEY),
        ],
    );
    let http = client();
    let post = |path: &str, body: Value| {
        http.post(format!("{}{path}", proxy.url))
            .bearer_auth(CLIENT_KEY)
            .header("x-request-id", "it-trace-1")
            .json(&body)
            .send()
    };
    let chat = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    let r = post("/v1/chat/completions", chat.clone()).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], "it-trace-1");
    let mut streamed = chat.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let r = post("/v1/chat/completions", streamed).await.unwrap();
    assert!(r.text().await.unwrap().contains("[DONE]"));
    let r = post(
        "/v1/responses",
        json!({"model": "gemini-2.5-flash", "input": "hi", "stream": true}),
    )
    .await
    .unwrap();
    assert!(r.text().await.unwrap().contains("response.completed"));
    // An upstream error that quotes the key back.
    up.script([Reply::Json(
        401,
        json!({"error": {"message": format!("Incorrect API key provided: {UPSTREAM_KEY}."), "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}}),
        vec![],
    )]);
    let r = post("/v1/chat/completions", chat.clone()).await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(!r.text().await.unwrap().contains(UPSTREAM_KEY));
    // A client with the wrong key.
    let r = http
        .post(format!("{}/v1/chat/completions", proxy.url))
        .bearer_auth("wrong")
        .json(&chat)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        up.last().headers["authorization"],
        format!("Bearer {UPSTREAM_KEY}")
    );

    let (code, _) = stop(&mut proxy, "-INT");
    assert_eq!(code, Some(0));
    let lines = proxy.log.lock().unwrap().clone();
    let trace = lines.iter().filter(|l| l.contains("\"TRACE\"")).count();
    assert!(trace > 20, "RUST_LOG=trace logged {trace} trace lines");
    let credentials = std::fs::read_to_string(
        toml.split("gcp_credentials_file = \"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap(),
    )
    .unwrap();
    assert!(credentials.contains("rt-secret-refresh"));
    for line in &lines {
        for secret in [UPSTREAM_KEY, CLIENT_KEY, "fake-token-", "rt-secret-refresh"] {
            assert!(!line.contains(secret), "a secret in the log: {line}");
        }
    }
    // One record per request, every line JSON.
    let records: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .filter(|v| v["target"] == "llmproxy::request")
        .collect();
    assert_eq!(records.len(), 5, "{records:#?}");
    let ok = &records[0];
    assert_eq!(ok["id"], "it-trace-1");
    assert_eq!(ok["endpoint"], "chat");
    assert_eq!(ok["model"], "gpt-4o");
    assert_eq!(ok["backend"], "oa");
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["outcome"], "completed");
    assert!(ok["latency_ms"].as_f64().unwrap() > 0.0);
    assert!(ok["upstream_ms"].as_f64().unwrap() > 0.0);
    assert!(ok["input_tokens"].as_u64().unwrap() > 0);
    assert!(ok["output_tokens"].as_u64().unwrap() > 0);
    assert_eq!(records[1]["stream"], true);
    assert!(records[1]["output_tokens"].as_u64().unwrap() > 0);
    assert_eq!(records[2]["backend"], "vertex");
    assert_eq!(records[2]["outcome"], "completed");
    assert_eq!(records[3]["status"], 401);
    assert_eq!(records[3]["outcome"], "error");
    assert_eq!(records[4]["status"], 401);
    assert!(records[4]["backend"].is_null());
}

/// A disk store as a user runs it: the file (relative to the config file)
/// outlives the process, `--check-config` leaves it to the running proxy,
/// and a second proxy on the same file is refused.
#[tokio::test]
async fn a_disk_store_keeps_conversations_across_restarts() {
    let up = FakeUpstream::start().await;
    let path = config_file(
        "disk-store",
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[responses]\nstore = \"disk\"\npath = \"responses.redb\"\n\n{}auth = \"none\"\n",
            backend("openai", &up.base_url, "")
        ),
    );
    let _ = std::fs::remove_file(path.with_file_name("responses.redb"));
    let config = path.to_str().unwrap();
    let ask = |url: String, body: Value| async move {
        let r = client()
            .post(format!("{url}/v1/responses"))
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    let mut first = spawn(&["-c", config], &[]);
    assert!(
        first
            .log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("stored responses: kept in") && l.contains("responses.redb")),
        "the store is logged at startup"
    );
    let (status, r1) = ask(first.url.clone(), json!({"model": "gpt-4o", "input": "Hi"})).await;
    assert_eq!(status, 200, "{r1}");
    let (ok, out, err) = run(&["--check-config", "-c", config], &[]);
    assert!(ok && out.contains("config OK"), "{err}");
    let (ok, _, err) = run(&["-c", config, "--listen", "127.0.0.1:0"], &[]);
    assert!(
        !ok && err.contains("one llmproxy process per file"),
        "{err}"
    );
    assert_eq!(stop(&mut first, "-TERM").0, Some(0));

    let second = spawn(&["-c", config], &[]);
    let (status, r2) = ask(
        second.url.clone(),
        json!({"model": "gpt-4o", "previous_response_id": r1["id"], "input": "Still there?"}),
    )
    .await;
    assert_eq!(status, 200, "{r2}");
    assert_eq!(
        chat_turns(&up.last().body),
        turns(&[
            ("user", "Hi"),
            ("assistant", "Hello from gpt-4o"),
            ("user", "Still there?")
        ])
    );
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}
