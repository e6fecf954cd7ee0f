use super::*;
use std::path::PathBuf;
use std::time::Duration;

const GOOD: &str = r#"
[server]
listen = "127.0.0.1:9000"
max_body_mib = 8

[translators]
memory_limit_mib = 32
call_timeout_ms = 250

[[backends]]
name = "local"
kind = "openresponses"
base_url = "http://127.0.0.1:11434/v1/"
models = ["qwen*", "llama-{3,4}*"]
model_map = { qwen3 = "qwen3:8b" }
settings = { path = "/responses" }
idle_timeout_secs = 2.5
"#;

#[test]
fn parses_a_full_config() {
    let c = Config::from_toml(GOOD).unwrap();
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:9000");
    assert_eq!(c.server.max_body_mib, 8);
    assert_eq!(c.translators.memory_limit_mib, 32);
    assert_eq!(c.translators.max_instances, 1000);
    let b = &c.backends[0];
    assert_eq!(b.model_map["qwen3"], "qwen3:8b");
    assert_eq!(b.settings_json(), r#"{"path":"/responses"}"#);
    assert_eq!(b.timeouts().idle, Duration::from_millis(2500));
    assert_eq!(b.timeouts().connect, Duration::from_secs(10));
    assert!(matches!(b.resolve_auth().unwrap(), Auth::None));
}

#[test]
fn defaults_apply() {
    let c = Config::from_toml(
        "[[backends]]\nname = \"a\"\nkind = \"openresponses\"\nmodels = [\"*\"]\nbase_url = \"http://h\"\n",
    )
    .unwrap();
    assert_eq!(c.server.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(c.server.max_body_mib, 32);
    assert_eq!(c.translators.call_timeout_ms, 1000);
    assert!(c.media.fetch && !c.media.allow_private_networks);
    assert_eq!(c.media.max_mib, 20);
}

fn err(toml: &str) -> String {
    Config::from_toml(toml).unwrap_err().to_string()
}

const B: &str =
    "[[backends]]\nname = \"a\"\nkind = \"openresponses\"\nbase_url = \"http://h/v1\"\n";

#[test]
fn unknown_keys_are_named() {
    let e = err(&format!("{B}models = [\"*\"]\ntimeout = 3\n"));
    assert!(e.contains("unknown field `timeout`"), "{e}");
    let e = err(&format!(
        "[server]\nlisten_addr = \"x\"\n{B}models = [\"*\"]\n"
    ));
    assert!(e.contains("listen_addr"), "{e}");
}

#[test]
fn bad_globs_urls_and_names_are_explained() {
    let e = err(&format!("{B}models = [\"ok\", \"[unclosed\"]\n"));
    assert!(e.contains("models[1]") && e.contains("[unclosed"), "{e}");
    let e =
        err("[[backends]]\nname = \"a\"\nkind = \"k\"\nbase_url = \"ftp://h\"\nmodels = [\"*\"]\n");
    assert!(e.contains("http://"), "{e}");
    let e = err(&format!("{B}models = []\n"));
    assert!(e.contains("`models` is empty"), "{e}");
    let e = err(&format!("{B}models = [\"*\"]\n{B}models = [\"*\"]\n"));
    assert!(e.contains("already uses this name"), "{e}");
    let e = err(&format!("{B}models = [\"*\"]\nidle_timeout_secs = -1\n"));
    assert!(e.contains("idle_timeout_secs"), "{e}");
}

#[test]
fn credentials_must_not_hide_in_static_headers() {
    let e = err(&format!(
        "{B}models = [\"*\"]\nheaders = {{ Authorization = \"Bearer x\" }}\n"
    ));
    assert!(e.contains("use `auth`"), "{e}");
}

#[test]
fn auth_forms() {
    // PATH is set wherever tests run; no need to mutate the environment.
    let path = std::env::var("PATH").unwrap();
    let path = path.trim();
    let dir = std::env::temp_dir().join(format!("llmproxy-ut-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("key");
    std::fs::write(&file, "file-key\n").unwrap();
    let cases = [
        (
            "{ bearer_env = \"PATH\" }".to_string(),
            "authorization",
            &*format!("Bearer {path}"),
        ),
        (
            format!("{{ bearer_file = {:?} }}", file.display().to_string()),
            "authorization",
            "Bearer file-key",
        ),
        (
            "{ header = \"x-api-key\", env = \"PATH\" }".to_string(),
            "x-api-key",
            path,
        ),
        (
            format!(
                "{{ header = \"api-key\", file = {:?} }}",
                file.display().to_string()
            ),
            "api-key",
            "file-key",
        ),
    ];
    for (auth, header, value) in cases {
        let c = Config::from_toml(&format!("{B}models = [\"*\"]\nauth = {auth}\n")).unwrap();
        match c.backends[0].resolve_auth().unwrap() {
            Auth::Header { name, value: v } => {
                assert_eq!(name.as_str(), header);
                assert_eq!(v.expose(), value);
                assert_eq!(format!("{v:?}"), "Secret(***)");
            }
            other => panic!("{auth}: {other:?}"),
        }
    }
    // Secrets are read when the proxy is built, not when the config parses.
    let unread = |auth: &str| {
        let c = Config::from_toml(&format!("{B}models = [\"*\"]\nauth = {auth}\n")).unwrap();
        c.backends[0].resolve_auth().unwrap_err().to_string()
    };
    let e = unread("{ bearer_env = \"LLMPROXY_UT_UNSET_VAR\" }");
    assert!(
        e.contains("LLMPROXY_UT_UNSET_VAR, which is not set") && e.contains("export"),
        "{e}"
    );
    let e = unread("{ bearer_file = \"/nonexistent/key\" }");
    assert!(e.contains("/nonexistent/key"), "{e}");
    let e = err(&format!(
        "{B}models = [\"*\"]\nauth = {{ header = \"x\" }}\n"
    ));
    assert!(e.contains("exactly one of"), "{e}");
    let e = err(&format!(
        "{B}models = [\"*\"]\nauth = {{ bearer = \"x\" }}\n"
    ));
    assert!(e.contains("unknown key auth.bearer"), "{e}");
    let e = err(&format!("{B}models = [\"*\"]\nauth = \"gcp-magic\"\n"));
    assert!(e.contains("not understood"), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn limits_are_checked() {
    let e = err(&format!(
        "[translators]\nmemory_limit_mib = 0\n{B}models = [\"*\"]\n"
    ));
    assert!(e.contains("memory_limit_mib"), "{e}");
    let e = err(&format!(
        "[translators]\nmax_instances = 0\n{B}models = [\"*\"]\n"
    ));
    assert!(e.contains("max_instances"), "{e}");
    let e = err(&format!("[media]\nmax_mib = 0\n{B}models = [\"*\"]\n"));
    assert!(e.contains("media.max_mib"), "{e}");
    let e = err(&format!(
        "[media]\ntimeout_secs = -1\n{B}models = [\"*\"]\n"
    ));
    assert!(e.contains("media.timeout_secs"), "{e}");
    let e = err(&format!(
        "[media]\nallow_private = true\n{B}models = [\"*\"]\n"
    ));
    assert!(e.contains("allow_private"), "{e}");
}

#[test]
fn google_auth_forms_and_vertex_defaults() {
    let vertex = "[[backends]]\nname = \"v\"\nkind = \"gcp-vertex\"\nmodels = [\"*\"]\nsettings = { project = \"p\", location = \"europe-west4\" }\n";
    let c = Config::from_toml(vertex).unwrap();
    let b = &c.backends[0];
    assert!(
        matches!(b.resolve_auth().unwrap(), Auth::Gcp { file: None }),
        "Vertex defaults to ADC"
    );
    assert_eq!(
        b.base_url().as_deref(),
        Some("https://europe-west4-aiplatform.googleapis.com")
    );
    let c = Config::from_toml(&format!(
        "{vertex}auth = {{ gcp_credentials_file = \"/etc/key.json\" }}\n"
    ))
    .unwrap();
    match c.backends[0].resolve_auth().unwrap() {
        Auth::Gcp { file: Some(f) } => assert_eq!(f, PathBuf::from("/etc/key.json")),
        other => panic!("{other:?}"),
    }
    let c = Config::from_toml(&format!("{B}models = [\"*\"]\nauth = \"gcp\"\n")).unwrap();
    assert!(matches!(
        c.backends[0].resolve_auth().unwrap(),
        Auth::Gcp { file: None }
    ));
    let e = err(&format!(
        "{vertex}auth = {{ gcp_credentials_file = \"/k\", bearer_env = \"X\" }}\n"
    ));
    assert!(e.contains("cannot be combined"), "{e}");
}

#[cfg(feature = "telemetry")]
#[test]
fn telemetry_is_checked_when_it_loads() {
    let with = |table: &str| Config::from_toml(&format!("[telemetry]\n{table}\n{GOOD}"));
    let c = with("otlp_endpoint = \"http://127.0.0.1:4318\"").unwrap();
    let t = c.telemetry.unwrap();
    assert_eq!(
        (t.service_name.as_str(), t.sampling_ratio),
        ("llmproxy", 1.0)
    );
    assert!(!t.capture_content);
    for (table, says) in [
        ("otlp_endpoint = \"grpc://c:4317\"", "http:// or https://"),
        (
            "otlp_endpoint = \"http://u:p@c:4318\"",
            "must not carry credentials",
        ),
        (
            "otlp_endpoint = \"http://c\"\nsampling_ratio = 1.5",
            "between 0 and 1",
        ),
        (
            "otlp_endpoint = \"http://c\"\nheaders = { k = { env = \"A\", file = \"b\" } }",
            "exactly one of",
        ),
        (
            "otlp_endpoint = \"http://c\"\nheaders = { k = \"inline\" }",
            "headers",
        ),
        (
            "otlp_endpoint = \"http://c\"\nexport_interval_ms = 0",
            "export_interval_ms",
        ),
        ("otlp = \"http://c\"", "unknown field"),
    ] {
        let e = with(table).unwrap_err().to_string();
        assert!(e.contains(says), "{table}: {e}");
    }
}
