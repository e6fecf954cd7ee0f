//! The `llmproxy` binary as a user runs it.

use crate::support::*;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) struct Running {
    child: Child,
    pub(crate) url: String,
    /// Every line the proxy logged so far.
    pub(crate) log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary and waits for its "listening on" line.
pub(crate) fn spawn(args: &[&str], envs: &[(&str, &str)]) -> Running {
    spawn_with(Command::new(env!("CARGO_BIN_EXE_llmproxy")), args, envs)
}

/// [`spawn`] through a shell that first runs `ulimit` with `limits`.
fn spawn_with_ulimit(limits: &str, args: &[&str], envs: &[(&str, &str)]) -> Running {
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        &format!("ulimit {limits} && exec \"$0\" \"$@\""),
        env!("CARGO_BIN_EXE_llmproxy"),
    ]);
    spawn_with(cmd, args, envs)
}

fn spawn_with(mut cmd: Command, args: &[&str], envs: &[(&str, &str)]) -> Running {
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
        out.contains("=== no canonical form: the upstream speaks the client's API"),
        "a Chat request to a Chat upstream passes through: {out}"
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

    // Backend flags work after the subcommand as well as before it.
    for args in [
        vec![
            "--backend",
            "openresponses",
            "--base-url",
            "http://127.0.0.1:9/v1",
            "translate",
            &responses,
        ],
        vec![
            "translate",
            &responses,
            "--backend",
            "openresponses",
            "--base-url",
            "http://127.0.0.1:9/v1",
        ],
    ] {
        let (ok, out, err) = run(&args, &[]);
        assert!(ok, "{args:?}: {err}");
        assert!(
            out.starts_with("=== upstream request\nPOST http://127.0.0.1:9/v1/responses\n"),
            "{out}"
        );
    }
    // The help names every API served.
    let (ok, out, _) = run(&["--help"], &[]);
    assert!(ok && out.contains("POST /v1/chat/completions"), "{out}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn sighup_and_file_changes_reload_the_config_and_bad_ones_are_refused() {
    let (a, b) = (FakeUpstream::start().await, FakeUpstream::start().await);
    let dir = std::env::temp_dir().join(format!("llmproxy-it-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A pinned translator file, loaded relative to the config.
    let hostile = std::fs::read(hostile_wasm()).unwrap();
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
pub(crate) fn stop(proxy: &mut Running, signal: &str) -> (Option<i32>, Duration) {
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

/// Secrets an upstream or a token endpoint quotes back - as they are,
/// percent-encoded or JSON-escaped - reach neither the client (errors,
/// stream events, on both endpoints) nor the log.
#[tokio::test]
async fn quoted_secrets_reach_neither_client_nor_log() {
    const KEY: &str = "sk-or-SECRET/key+x=y~z";
    const KEY_URL: &str = "sk-or-SECRET%2Fkey%2Bx%3Dy~z";
    const KEY_JSON: &str = r"sk-or-SECRET\/key+x=y~z";
    const CLIENT_SECRET: &str = "cs-SECRET/client+secret";
    const REFRESH: &str = "1//0g-REFRESH/token+x";
    const CLIENT_KEY: &str = "proxy-client-SECRET-9d3e";
    let up = FakeUpstream::start().await;
    let vertex = crate::fake_vertex::FakeVertex::start().await;
    let root = up.base_url.trim_end_matches("/v1").to_string();
    let dir = config_file("leaks", "").parent().unwrap().to_path_buf();
    let write = |name: &str, contents: String| {
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path.display().to_string()
    };
    let key_file = write("key", KEY.into());
    let user = write(
        "user.json",
        json!({"type": "authorized_user", "client_id": "cid", "client_secret": CLIENT_SECRET,
               "refresh_token": REFRESH, "token_uri": format!("{root}/token")})
        .to_string(),
    );
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/fixtures");
    let pem = std::fs::read_to_string(fixtures.join("test-service-account-key.pem")).unwrap();
    let service = write(
        "sa.json",
        json!({"type": "service_account", "private_key": pem, "client_email": "sa@p.iam.gserviceaccount.com",
               "token_uri": format!("{root}/token")})
        .to_string(),
    );
    let vertex_creds = vertex.credentials_file().display().to_string();
    let settings = "settings = { project = \"p\", location = \"us-east5\" }";
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\
         [[backends]]\nname = \"vx\"\nkind = \"gcp-vertex\"\nbase_url = \"{root}\"\nmodels = [\"gemini-*\"]\nauth = {{ gcp_credentials_file = {vertex_creds:?} }}\n{settings}\n\
         [[backends]]\nname = \"vc\"\nkind = \"gcp-vertex\"\nbase_url = \"{root}\"\nmodels = [\"claude-vc-*\"]\nauth = {{ gcp_credentials_file = {vertex_creds:?} }}\n{settings}\n\
         [[backends]]\nname = \"au\"\nkind = \"gcp-vertex\"\nbase_url = \"{root}\"\nmodels = [\"claude-au-*\"]\nauth = {{ gcp_credentials_file = {user:?} }}\n{settings}\n\
         [[backends]]\nname = \"sa\"\nkind = \"gcp-vertex\"\nbase_url = \"{root}\"\nmodels = [\"claude-sa-*\"]\nauth = {{ gcp_credentials_file = {service:?} }}\n{settings}\n\
         [[backends]]\nname = \"oa\"\nkind = \"openai\"\nbase_url = \"{}\"\nmodels = [\"gpt-*\"]\nauth = {{ bearer_file = {key_file:?} }}\n\
         [[backends]]\nname = \"or\"\nkind = \"openresponses\"\nbase_url = \"{}\"\nmodels = [\"*\"]\nauth = {{ bearer_file = {key_file:?} }}\n",
        up.base_url, up.base_url
    );
    let path = config_file("leaks", &toml);
    let mut proxy = spawn(
        &["--config", path.to_str().unwrap()],
        &[("RUST_LOG", "debug"), ("LLMPROXY_API_KEY", CLIENT_KEY)],
    );
    let http = client();
    let mut answers = Vec::new();
    let mut ask = async |path: &str, body: Value| {
        let r = http
            .post(format!("{}{path}", proxy.url))
            .bearer_auth(CLIENT_KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        answers.push(text.clone());
        (status, text)
    };
    let chat = |model: &str, stream: bool| json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]});
    let responses =
        |model: &str, stream: bool| json!({"model": model, "stream": stream, "input": "hi"});

    // 1. Vertex answers SSE text, or HTML, where JSON was expected, echoing
    // the access token.
    let echoed = "data: not json; you sent {auth} ({bearer_url})\n\n";
    for (path, body) in [
        ("/v1/chat/completions", chat("gemini-2.5-flash", true)),
        ("/v1/responses", responses("gemini-2.5-flash", true)),
    ] {
        up.script([Reply::Echo(200, "text/event-stream", echoed.into())]);
        let (status, text) = ask(path, body).await;
        assert_eq!(status, 200, "{text}");
        assert!(text.contains("[redacted]"), "{text}");
    }
    up.script([Reply::Echo(
        200,
        "text/html",
        "<p>token {bearer}</p>".into(),
    )]);
    let (status, text) = ask("/v1/responses", responses("gemini-2.5-flash", false)).await;
    assert_eq!(status, 502, "{text}");
    assert!(text.contains("[redacted]"), "{text}");
    let token = up.last().headers["authorization"]
        .to_str()
        .unwrap()
        .trim_start_matches("Bearer ")
        .to_string();
    assert!(token.starts_with("ya29."), "{token}");

    // 2. An OpenResponses stream whose error events quote the key.
    let failed = format!(
        "event: error\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"invalid_request_error\",\"code\":\"invalid_api_key\",\"message\":\"bad key {KEY} ({KEY_URL})\",\"param\":null}}}}\n\n\
         event: response.failed\ndata: {{\"type\":\"response.failed\",\"response\":{{\"id\":\"r1\",\"status\":\"failed\",\"output\":[],\"error\":{{\"code\":\"invalid_api_key\",\"message\":\"key {KEY_JSON}\"}}}}}}\n\n"
    );
    for (path, body) in [
        ("/v1/responses", responses("or-m", true)),
        ("/v1/chat/completions", chat("or-m", true)),
    ] {
        up.script([Reply::Echo(200, "text/event-stream", failed.clone())]);
        let (_, text) = ask(path, body).await;
        assert!(text.contains("[redacted]"), "{text}");
    }
    up.script([Reply::Echo(
        401,
        "application/json",
        format!("{{\"error\":{{\"message\":\"key {KEY_JSON} / {{auth}}\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"invalid_api_key\"}}}}"),
    )]);
    let (status, text) = ask("/v1/chat/completions", chat("or-m", false)).await;
    assert_eq!(status, 401, "{text}");

    // 3. A Chat upstream the Chat requests pass through to, quoting the key
    // in 2xx answers - whole, in stream chunks, in a stream's error frame -
    // and in an error status.
    let quoted = "{auth} / {bearer_url} / {bearer}";
    for (stream, reply) in [
        (
            false,
            Reply::Echo(
                200,
                "application/json",
                format!(
                    "{{\"id\":\"c\",\"object\":\"chat.completion\",\"model\":\"m\",\"choices\":[{{\"index\":0,\"message\":{{\"role\":\"assistant\",\"content\":\"{quoted} {KEY_JSON}\"}},\"finish_reason\":\"stop\"}}]}}"
                ),
            ),
        ),
        (
            true,
            Reply::Echo(
                200,
                "text/event-stream",
                format!(
                    "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{quoted}\"}},\"finish_reason\":null}}]}}\n\ndata: {{\"error\":{{\"message\":\"{quoted} {KEY_JSON}\",\"type\":\"server_error\"}}}}\n\n"
                ),
            ),
        ),
        (
            false,
            Reply::Echo(
                500,
                "application/json",
                format!(
                    "{{\"error\":{{\"message\":\"{quoted} {KEY_JSON}\",\"type\":\"server_error\"}}}}"
                ),
            ),
        ),
    ] {
        up.script([reply]);
        let (_, text) = ask("/v1/chat/completions", chat("gpt-4o", stream)).await;
        assert!(text.contains("[redacted]"), "{text}");
    }

    // 4. Anthropic Messages clients: Claude (passthrough) quoting the
    // access token in a whole answer, in stream events, in an error event
    // and in an error status; a Chat upstream's failing stream rendered as
    // Messages events.
    let messages = |model: &str, stream: bool| json!({"model": model, "max_tokens": 10, "stream": stream, "messages": [{"role": "user", "content": "hi"}]});
    let message = format!(
        "{{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"m\",\"content\":[{{\"type\":\"text\",\"text\":\"{quoted} {KEY_JSON}\"}}],\"stop_reason\":\"end_turn\",\"stop_sequence\":null,\"usage\":{{\"input_tokens\":1,\"output_tokens\":1}}}}"
    );
    let events = format!(
        "event: message_start\ndata: {{\"type\":\"message_start\",\"message\":{{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"{quoted}\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{{\"input_tokens\":1,\"output_tokens\":1}}}}}}\n\n\
         event: content_block_start\ndata: {{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{{\"type\":\"text\",\"text\":\"\"}}}}\n\n\
         event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"{quoted}\"}}}}\n\n\
         event: error\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"overloaded_error\",\"message\":\"{quoted} {KEY_JSON}\"}}}}\n\n"
    );
    for (stream, reply) in [
        (false, Reply::Echo(200, "application/json", message)),
        (true, Reply::Echo(200, "text/event-stream", events)),
        (
            false,
            Reply::Echo(
                529,
                "application/json",
                format!(
                    "{{\"type\":\"error\",\"error\":{{\"type\":\"overloaded_error\",\"message\":\"{quoted} {KEY_JSON}\"}}}}"
                ),
            ),
        ),
    ] {
        up.script([reply]);
        let (_, text) = ask("/v1/messages", messages("claude-vc-x", stream)).await;
        assert!(text.contains("[redacted]"), "{text}");
    }
    up.script([Reply::Echo(
        200,
        "text/event-stream",
        format!(
            "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{quoted}\"}},\"finish_reason\":null}}]}}\n\ndata: {{\"error\":{{\"message\":\"{quoted} {KEY_JSON}\",\"type\":\"server_error\"}}}}\n\n"
        ),
    )]);
    let (_, text) = ask("/v1/messages", messages("gpt-4o", true)).await;
    assert!(text.contains("event: error"), "{text}");
    assert!(text.contains("[redacted]"), "{text}");

    // 5. Token endpoints that answer 400 quoting the form they were sent.
    let quoting = r#"{"error":"invalid_grant","error_description":"bad form: {body_json}"}"#;
    for model in ["claude-au-x", "claude-sa-x"] {
        for reply in [
            Reply::Echo(400, "application/json", quoting.into()),
            Reply::Echo(400, "text/html", "<pre>{body}</pre>".into()),
        ] {
            up.script([reply]);
            let (status, text) = ask("/v1/responses", responses(model, false)).await;
            assert_eq!(status, 502, "{text}");
            assert!(text.contains("upstream_credentials_error"), "{text}");
            assert!(text.contains("HTTP 400"), "{text}");
        }
    }
    let assertion = up
        .received()
        .iter()
        .rev()
        .find(|r| r.path == "/token" && r.raw.starts_with(b"grant_type=urn"))
        .map(|r| String::from_utf8_lossy(&r.raw).into_owned())
        .unwrap();
    let assertion = assertion.split("assertion=").nth(1).unwrap().to_string();
    let signature = assertion.rsplit('.').next().unwrap().to_string();
    let form_encoded = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b if b.is_ascii_alphanumeric() || b"-._~".contains(&b) => char::from(b).to_string(),
                b => format!("%{b:02X}"),
            })
            .collect::<String>()
    };

    let (code, _) = stop(&mut proxy, "-INT");
    assert_eq!(code, Some(0));
    let lines = proxy.log.lock().unwrap().clone();
    let mut secrets = vec![
        KEY.to_string(),
        KEY_URL.into(),
        KEY_JSON.into(),
        token.clone(),
        form_encoded(&token),
        CLIENT_SECRET.into(),
        form_encoded(CLIENT_SECRET),
        REFRESH.into(),
        form_encoded(REFRESH),
        assertion.clone(),
        signature,
        CLIENT_KEY.into(),
    ];
    secrets.push("ya29.fake-token-".into());
    assert!(lines.iter().any(|l| l.contains("[redacted]")), "{lines:#?}");
    for secret in &secrets {
        for answer in &answers {
            assert!(
                !answer.contains(secret.as_str()),
                "{secret} reached the client: {answer}"
            );
        }
        for line in &lines {
            assert!(
                !line.contains(secret.as_str()),
                "{secret} reached the log: {line}"
            );
        }
    }
}

/// The "Max open files" soft and hard limits of a process.
fn open_files(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<u64> = line
        .split_whitespace()
        .skip(3)
        .take(2)
        .map(|w| w.parse().unwrap_or(u64::MAX))
        .collect();
    (numbers[0], numbers[1])
}

/// Idle sockets, more than the open-files limit allows, do not take the
/// server down: it raises its soft limit to the hard one, caps connections
/// below it and closes the idle ones to make room.
#[tokio::test]
async fn idle_sockets_beyond_the_file_limit_leave_the_server_serving() {
    let up = FakeUpstream::start().await;
    let args = [
        "--backend",
        "openresponses",
        "--base-url",
        &up.base_url,
        "--listen",
        "127.0.0.1:0",
    ];
    // The soft limit is raised to the hard one at startup.
    let raised = spawn_with_ulimit("-Sn 256", &args, &[]);
    let (soft, hard) = open_files(raised.child.id());
    assert_eq!(soft, hard, "the soft limit is raised to the hard limit");
    assert!(soft > 256);
    drop(raised);

    // At 512 files (soft and hard), 600 idle sockets.
    llmproxy::raise_open_files_limit();
    let mut proxy = spawn_with_ulimit("-n 512", &args, &[]);
    assert_eq!(open_files(proxy.child.id()), (512, 512));
    let addr = proxy.url.trim_start_matches("http://").to_string();
    let mut idle = Vec::new();
    for _ in 0..600 {
        match tokio::net::TcpStream::connect(&addr).await {
            Ok(s) => idle.push(s),
            Err(e) => panic!("connect: {e}"),
        }
    }
    let http = client();
    for _ in 0..3 {
        let started = Instant::now();
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            http.get(format!("{}/healthz", proxy.url)).send(),
        )
        .await
        .expect("/healthz answers while 600 idle sockets are open")
        .unwrap();
        assert_eq!(r.status(), 200);
        assert!(started.elapsed() < Duration::from_secs(5));
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            http.post(format!("{}/v1/responses", proxy.url))
                .json(&json!({"model": "m", "input": "hi"}))
                .send(),
        )
        .await
        .expect("requests are served")
        .unwrap();
        assert_eq!(r.status(), 200);
    }
    drop(idle);
    let (code, _) = stop(&mut proxy, "-TERM");
    assert_eq!(code, Some(0));
    let log = proxy.log.lock().unwrap().join("\n");
    assert!(log.contains("at most 192 connections"), "{log}");
}

/// The peak resident memory of a process, in MiB.
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb / 1024
}

/// Small requests linking many large images cannot make the proxy hold
/// them all: four at once, each linking sixteen 19 MiB images, keep the
/// proxy's peak memory far below the 1.2 GB they link.
#[tokio::test]
async fn linked_images_cannot_amplify_memory() {
    let vertex = crate::fake_vertex::FakeVertex::start().await;
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[media]\nallow_private_networks = true\n{}",
        vertex.config("")
    );
    let path = config_file("amplify", &toml);
    let mut proxy = spawn(&["--config", path.to_str().unwrap()], &[]);
    let before = peak_rss_mib(proxy.child.id());
    let http = client();
    let request = |k: usize| {
        let mut content = vec![json!({"type": "input_text", "text": "describe"})];
        content.extend((0..16).map(|i| {
            json!({"type": "input_image",
                   "image_url": format!("{}/media/big-{}.png", vertex.base_url, (19 << 20) + k * 16 + i)})
        }));
        http.post(format!("{}/v1/responses", proxy.url))
            .json(&json!({"model": "claude-sonnet-4-5", "input": [{"role": "user", "content": content}]}))
            .send()
    };
    let answers = futures_util::future::join_all((0..4).map(request)).await;
    for answer in answers {
        let answer = answer.unwrap();
        assert_eq!(answer.status(), 400);
        let v: Value = answer.json().await.unwrap();
        assert_eq!(v["error"]["code"], "media_too_large", "{v}");
    }
    let peak = peak_rss_mib(proxy.child.id());
    assert!(
        peak < before + 400,
        "peak RSS {peak} MiB (from {before} MiB) for 4 requests linking 1.2 GB"
    );
    let (code, _) = stop(&mut proxy, "-TERM");
    assert_eq!(code, Some(0));
}

/// A request that ends before any answer is logged as what happened: its
/// client went away (499 `client_closed`), or the shutdown ended it.
#[tokio::test]
async fn requests_without_an_answer_are_logged_as_such() {
    let up = FakeUpstream::start().await;
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_timeout_secs = 0.3\n{}",
        single(&up.base_url)
    );
    let path = config_file("no-answer", &toml);
    let mut proxy = spawn(
        &["--config", path.to_str().unwrap(), "--log-format", "json"],
        &[],
    );
    let http = client();
    // The upstream never answers; the client gives up.
    up.script([Reply::Hang]);
    let gave_up = http
        .post(format!("{}/v1/responses", proxy.url))
        .header("x-request-id", "gave-up")
        .json(&json!({"model": "m", "input": "hi"}))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(gave_up.is_err());
    // The upstream never answers; the proxy shuts down.
    up.script([Reply::Hang]);
    let url = format!("{}/v1/responses", proxy.url);
    let waiting = tokio::spawn(async move {
        client()
            .post(url)
            .header("x-request-id", "at-shutdown")
            .json(&json!({"model": "m", "input": "hi"}))
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (code, _) = stop(&mut proxy, "-TERM");
    assert_eq!(code, Some(0));
    assert_eq!(waiting.await.unwrap().unwrap(), 503);
    let records: Vec<Value> = proxy
        .log
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "llmproxy::request")
        .collect();
    let record = |id: &str| {
        records
            .iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("no record {id}: {records:#?}"))
            .clone()
    };
    let gave_up = record("gave-up");
    assert_eq!(gave_up["status"], 499, "{gave_up}");
    assert_eq!(gave_up["outcome"], "client_closed", "{gave_up}");
    assert!(gave_up["upstream_status"].is_null(), "{gave_up}");
    let at_shutdown = record("at-shutdown");
    assert_eq!(at_shutdown["status"], 503, "{at_shutdown}");
    assert_eq!(at_shutdown["outcome"], "error", "{at_shutdown}");
    assert!(
        at_shutdown["error"]
            .as_str()
            .unwrap()
            .contains("shutting down"),
        "{at_shutdown}"
    );
}

/// An upstream whose model list answers with the key quoted back, plain and
/// percent-encoded: the log line about it shows neither.
#[tokio::test]
async fn a_model_list_error_quoting_the_key_is_logged_scrubbed() {
    let up = FakeUpstream::start().await;
    up.script([Reply::Echo(
        401,
        "application/json",
        r#"{"error":{"message":"bad key {bearer} ({bearer_url}), header {auth}"}}"#.into(),
    )]);
    let dir = std::env::temp_dir().join(format!("llmproxy-it-list-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("llmproxy.toml");
    let toml = format!(
        "[[backends]]\nname = \"listed\"\nkind = \"openai\"\nbase_url = \"{}\"\nauth = {{ bearer_env = \"LIST_KEY\" }}\nmodels = [\"gpt-*\", \"gpt-fixed\"]\n",
        up.base_url
    );
    std::fs::write(&config, toml).unwrap();
    let secret = "sk-list/secret+7788=abc";
    let proxy = spawn(
        &["--config", config.to_str().unwrap(), "-l", "127.0.0.1:0"],
        &[("LIST_KEY", secret)],
    );
    let v: Value = client()
        .get(format!("{}/v1/models", proxy.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"][0]["id"], "gpt-fixed", "{v}");
    assert_eq!(up.received()[0].path, "/v1/models");
    let deadline = Instant::now() + Duration::from_secs(5);
    let line = loop {
        let log = proxy.log.lock().unwrap().clone();
        if let Some(l) = log
            .iter()
            .find(|l| l.contains("cannot list the upstream's models"))
        {
            break l.clone();
        }
        assert!(Instant::now() < deadline, "{log:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let encoded = "sk-list%2Fsecret%2B7788%3Dabc";
    assert!(!line.contains(secret) && !line.contains(encoded), "{line}");
    assert!(
        line.contains("HTTP 401") && line.contains("[redacted]"),
        "{line}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
