//! The real coding agents - Codex CLI, OpenCode with its Chat
//! (`@ai-sdk/openai-compatible`) and Responses (`@ai-sdk/openai`) providers,
//! and Claude Code (Anthropic Messages) - through the real `llmproxy` binary
//! and the bundled translators, on every backend kind: an OpenAI-style Chat
//! upstream, Vertex Gemini 2.5 and 3, Vertex Claude with thinking, and an
//! OpenResponses server.
//!
//! Each agent gets one task: run a shell command (the fakes call its shell
//! tool with [`AGENT_COMMAND`], which leaves a file behind) and finish with a
//! message. The agents run offline, from `host/tests/node` (installed by
//! `.ci/run`), with throw-away homes; the tests check what the agent
//! reported, that the file exists, and what each upstream received.

use crate::binary::{Running, spawn};
use crate::fake_vertex::FakeVertex;
use crate::support::*;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Command, Stdio};

const KEY: &str = "agent-client-key";

/// Model names per backend kind, as the agents ask for them.
const GEMINI_25: &str = "gemini-2.5-flash";
const GEMINI_3: &str = "gemini-3-pro-preview";
const CLAUDE: &str = "claude-sonnet-4-5@20250929";
const OPENRESPONSES: &str = "or-agent-model";
/// Codex knows nothing about this name, so it offers its default tools
/// (the `multi_agent_v1` namespace and web search among them).
const CHAT: &str = "gpt-4.1";
/// A model in Codex's own catalog: it offers the freeform `apply_patch`.
const CHAT_FREEFORM: &str = "gpt-5.5";

struct Setup {
    chat: FakeUpstream,
    responses: FakeUpstream,
    vertex: FakeVertex,
    proxy: Running,
    dir: PathBuf,
}

/// An agent installed in `host/tests/node`: Codex's launcher, or
/// OpenCode's binary for x86-64 Linux (the package `opencode-ai`'s
/// installer picks; that wrapper's other platform packages are not all on
/// the registry this suite installs from, so `npm ci` could not take it).
fn program(name: &str) -> Option<PathBuf> {
    let path = match name {
        "opencode" => "node_modules/opencode-linux-x64/bin/opencode",
        _ => "node_modules/.bin/codex",
    };
    let path = match name {
        "claude" => "node_modules/@anthropic-ai/claude-code-linux-x64/claude",
        _ => path,
    };
    let bin = node_dir()?.join(path);
    assert!(
        bin.exists(),
        "{} is missing: run npm ci --prefix host/tests/node",
        bin.display()
    );
    Some(bin)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("llmproxy-agents-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn setup(name: &str) -> Setup {
    let chat = FakeUpstream::start().await;
    let responses = FakeUpstream::start().await;
    let vertex = FakeVertex::start().await;
    let dir = scratch(name);
    let toml = format!(
        "[[backends]]\nname = \"chat\"\nkind = \"openai\"\nbase_url = \"{}\"\nauth = \"none\"\nmodels = [\"gpt-*\"]\n\n\
         [[backends]]\nname = \"responses\"\nkind = \"openresponses\"\nbase_url = \"{}\"\nmodels = [\"or-*\"]\n\n{}",
        chat.base_url,
        responses.base_url,
        vertex.config("")
    );
    // Claude Code's name for the model, as the README's config maps it.
    let toml = format!("{toml}model_map = {{ \"{CLAUDE_CODE_NAME}\" = \"{CLAUDE}\" }}\n");
    let config = dir.join("llmproxy.toml");
    std::fs::write(&config, toml).unwrap();
    let proxy = spawn(
        &["--config", config.to_str().unwrap(), "-l", "127.0.0.1:0"],
        &[("LLMPROXY_API_KEY", KEY)],
    );
    Setup {
        chat,
        responses,
        vertex,
        proxy,
        dir,
    }
}

/// `program` under coreutils' `timeout`: killed after two minutes.
fn command(program: PathBuf) -> Command {
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "5", "120"]).arg(program);
    cmd
}

/// Runs `cmd` in `dir`; its stdout as JSON lines.
async fn run(mut cmd: Command, dir: &std::path::Path, what: &str) -> Vec<Value> {
    // OpenCode (Bun) takes its project folder from PWD.
    cmd.current_dir(dir).env("PWD", dir);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        out.status,
        stderr
            .chars()
            .rev()
            .take(4000)
            .collect::<String>()
            .chars()
            .rev()
            .collect::<String>()
    );
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The Codex `config.toml` the README gives (its Clients section).
fn readme_codex_config() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    let readme = std::fs::read_to_string(path).unwrap();
    let from = readme
        .find("**Codex CLI**")
        .expect("the README shows Codex's config");
    let block = &readme[from..];
    let start = block.find("```toml\n").unwrap() + "```toml\n".len();
    let end = start + block[start..].find("```").unwrap();
    block[start..end].to_string()
}

/// One `codex exec` turn with Codex's default tools.
async fn codex(s: &Setup, model: &str) -> Vec<Value> {
    let Some(bin) = program("codex") else {
        return Vec::new();
    };
    let work = s
        .dir
        .join(format!("codex-{}", model.replace(['@', '.'], "_")));
    let home = work.join(".codex");
    std::fs::create_dir_all(&home).unwrap();
    // The README's config as written, pointed at this proxy and the model,
    // with nothing asked (the test runs unattended).
    let readme = readme_codex_config()
        .replace("http://127.0.0.1:8080/v1", &format!("{}/v1", s.proxy.url))
        .replace(
            "model = \"gemini-2.5-pro\"",
            &format!("model = \"{model}\""),
        );
    let config = format!(
        "approval_policy = \"never\"\nsandbox_mode = \"danger-full-access\"\ncheck_for_update_on_startup = false\n\
         {readme}\n[history]\npersistence = \"none\"\n"
    );
    assert!(
        config.contains(&s.proxy.url) && config.contains(model),
        "{config}"
    );
    std::fs::write(home.join("config.toml"), config).unwrap();
    let mut cmd = command(bin);
    cmd.args([
        "exec",
        "--skip-git-repo-check",
        "--ephemeral",
        "--json",
        "--color",
        "never",
    ])
    // No retries: a failure shows at once.
    .args(["-c", "model_providers.llmproxy.request_max_retries=0"])
    .args(["-c", "model_providers.llmproxy.stream_max_retries=0"])
    .arg("Run the command that proves you work, then report its output.")
    .env("CODEX_HOME", &home)
    .env("HOME", &work)
    .env("LLMPROXY_API_KEY", KEY);
    let events = run(cmd, &work, &format!("codex on {model}")).await;
    let ran = events.iter().any(|e| {
        e["type"] == "item.completed"
            && e["item"]["type"] == "command_execution"
            && e["item"]["exit_code"] == 0
            && e["item"]["aggregated_output"]
                .as_str()
                .is_some_and(|o| o.contains("agent-ran"))
    });
    assert!(ran, "codex on {model} ran no command: {events:#?}");
    let said = events.iter().any(|e| {
        e["type"] == "item.completed"
            && e["item"]["type"] == "agent_message"
            && e["item"]["text"]
                .as_str()
                .is_some_and(|t| t.contains("Results:"))
    });
    assert!(
        said,
        "codex on {model} ended without the answer: {events:#?}"
    );
    assert_eq!(
        events.last().map(|e| e["type"].clone()),
        Some(json!("turn.completed")),
        "codex on {model}: {events:#?}"
    );
    assert!(
        work.join("agent-proof.txt").exists(),
        "the command did not run in {}",
        work.display()
    );
    events
}

/// One `opencode run` turn through `npm` (its provider package).
async fn opencode(s: &Setup, npm: &str, model: &str, options: Value) -> Vec<Value> {
    let Some(bin) = program("opencode") else {
        return Vec::new();
    };
    let short = if npm.ends_with("compatible") {
        "chat"
    } else {
        "responses"
    };
    let work = s.dir.join(format!(
        "opencode-{short}-{}",
        model.replace(['@', '.'], "_")
    ));
    let xdg = work.join(".xdg");
    // OpenCode installs its plugin package into its config folder unless
    // it is there already: say it is, so that nothing is fetched.
    let plugin_dir = xdg.join("config/opencode");
    std::fs::create_dir_all(plugin_dir.join("node_modules")).unwrap();
    let deps = json!({"dependencies": {"@opencode-ai/plugin": "1.18.33"}});
    std::fs::write(plugin_dir.join("package.json"), deps.to_string()).unwrap();
    let lock = json!({"lockfileVersion": 3, "packages": {"": deps}});
    std::fs::write(plugin_dir.join("package-lock.json"), lock.to_string()).unwrap();
    let config = json!({
        "$schema": "https://opencode.ai/config.json",
        "autoupdate": false, "share": "disabled", "lsp": false, "formatter": false,
        "permission": {"bash": "allow"},
        "provider": {"llmproxy": {
            "npm": npm, "name": "llmproxy",
            "options": {"baseURL": format!("{}/v1", s.proxy.url), "apiKey": "{env:LLMPROXY_API_KEY}"},
            "models": {model: options}
        }},
        "model": format!("llmproxy/{model}")
    });
    std::fs::write(work.join("opencode.json"), config.to_string()).unwrap();
    let mut cmd = command(bin);
    cmd.args(["run", "--print-logs", "--format", "json"])
        .arg("Run the command that proves you work, then report its output.")
        // Not the project folder: OpenCode reads no project config there.
        .env("HOME", xdg.join("home"))
        .env("XDG_CONFIG_HOME", xdg.join("config"))
        .env("XDG_DATA_HOME", xdg.join("data"))
        .env("XDG_CACHE_HOME", xdg.join("cache"))
        .env("XDG_STATE_HOME", xdg.join("state"))
        .env("OPENCODE_DISABLE_MODELS_FETCH", "1")
        .env("OPENCODE_DISABLE_AUTOUPDATE", "1")
        .env("OPENCODE_DISABLE_SHARE", "1")
        .env("OPENCODE_DISABLE_LSP_DOWNLOAD", "1")
        .env("OPENCODE_DISABLE_CLAUDE_CODE", "1")
        .env("OPENCODE_DISABLE_EXTERNAL_SKILLS", "1")
        .env("OPENCODE_PURE", "1")
        .env("LLMPROXY_API_KEY", KEY);
    let what = format!("opencode ({npm}) on {model}");
    let events = run(cmd, &work, &what).await;
    let ran = events.iter().any(|e| {
        e["type"] == "tool_use"
            && e["part"]["tool"] == "bash"
            && e["part"]["state"]["status"] == "completed"
            && e["part"]["state"]["output"]
                .as_str()
                .is_some_and(|o| o.contains("agent-ran"))
    });
    assert!(ran, "{what} ran no command: {events:#?}");
    let said = events.iter().any(|e| {
        e["type"] == "text"
            && e["part"]["text"]
                .as_str()
                .is_some_and(|t| t.contains("Results:"))
    });
    assert!(said, "{what} ended without the answer: {events:#?}");
    assert!(
        !events.iter().any(|e| e["type"] == "error"),
        "{what}: {events:#?}"
    );
    let last_finish = events.iter().rev().find(|e| e["type"] == "step_finish");
    assert_eq!(
        last_finish.map(|e| e["part"]["reason"].clone()),
        Some(json!("stop")),
        "{what}: {events:#?}"
    );
    assert!(
        work.join("agent-proof.txt").exists(),
        "{what}: the command did not run"
    );
    events
}

/// Claude Code's name for Claude Sonnet 4.5 (Anthropic's, not Vertex's).
const CLAUDE_CODE_NAME: &str = "claude-sonnet-4-5-20250929";

/// The environment the README gives Claude Code (its Clients section), as
/// (name, value) pairs, the values as written.
fn readme_claude_env() -> Vec<(String, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    let readme = std::fs::read_to_string(path).unwrap();
    let from = readme
        .find("**Claude Code**")
        .expect("the README shows Claude Code's environment");
    let block = &readme[from..];
    let start = block.find("```sh\n").unwrap() + "```sh\n".len();
    let end = start + block[start..].find("```").unwrap();
    block[start..end]
        .split_whitespace()
        .filter_map(|word| {
            let (name, value) = word.split_once('=')?;
            let upper = name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_');
            upper.then(|| (name.to_string(), value.trim_matches('"').to_string()))
        })
        .collect()
}

/// One `claude -p` turn, run with the README's environment: only the
/// proxy's address, the client key and the model names, no non-essential
/// traffic and no auto-update.
async fn claude_code(s: &Setup, model: &str) -> Vec<Value> {
    let Some(bin) = program("claude") else {
        return Vec::new();
    };
    let work = s
        .dir
        .join(format!("claude-{}", model.replace(['@', '.'], "_")));
    let home = work.join(".home");
    std::fs::create_dir_all(home.join(".claude")).unwrap();
    let mut cmd = command(bin);
    cmd.env_clear()
        .args([
            "-p",
            "Run the command that proves you work, then report its output.",
        ])
        .args(["--output-format", "stream-json", "--verbose"])
        .args(["--dangerously-skip-permissions", "--no-session-persistence"])
        // `--dangerously-skip-permissions` as root, in a sandbox.
        .env("IS_SANDBOX", "1");
    let env = readme_claude_env();
    assert!(
        env.iter()
            .any(|(n, v)| n == "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC" && v == "1"),
        "{env:?}"
    );
    for (name, value) in env {
        let value = value
            .replace("$HOME/.claude-sandbox", &home.display().to_string())
            .replace("$PATH", "/usr/local/bin:/usr/bin:/bin")
            .replace("$LLMPROXY_API_KEY", KEY)
            .replace("http://127.0.0.1:8080", &s.proxy.url)
            .replace(CLAUDE_CODE_NAME, model);
        assert!(!value.contains('$'), "{name}={value}: not replaced");
        cmd.env(name, value);
    }
    let what = format!("claude on {model}");
    let events = run(cmd, &work, &what).await;
    let ran = events.iter().any(|e| {
        e["type"] == "user"
            && e["message"]["content"].as_array().is_some_and(|c| {
                c.iter().any(|b| {
                    b["type"] == "tool_result"
                        && b["is_error"] != json!(true)
                        && b["content"].to_string().contains("agent-ran")
                })
            })
    });
    assert!(ran, "{what} ran no command: {events:#?}");
    let result = events
        .iter()
        .rfind(|e| e["type"] == "result")
        .unwrap_or_else(|| panic!("{what}: no result: {events:#?}"));
    // `subtype` says success even after an API error: `is_error` tells.
    assert_eq!(result["is_error"], false, "{what}: {events:#?}");
    assert!(
        result["result"]
            .as_str()
            .is_some_and(|t| t.contains("Results:")),
        "{what} ended without the answer: {events:#?}"
    );
    assert!(
        work.join("agent-proof.txt").exists(),
        "{what}: the command did not run"
    );
    events
}

/// Function names the upstream was offered in its Chat requests for `model`.
fn chat_tool_names(up: &FakeUpstream, model: &str) -> Vec<String> {
    up.received()
        .iter()
        .filter(|r| r.body["model"] == model)
        .flat_map(|r| r.body["tools"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| {
            t.pointer("/function/name")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect()
}

/// The Vertex request bodies for `model`.
fn vertex_bodies(v: &FakeVertex, model: &str) -> Vec<Value> {
    v.received()
        .into_iter()
        .filter(|(path, _)| path.contains(&format!("/models/{model}:")))
        .map(|(_, body)| body)
        .collect()
}

fn gemini_names(bodies: &[Value]) -> Vec<String> {
    bodies
        .iter()
        .flat_map(|b| b["tools"].as_array().cloned().unwrap_or_default())
        .flat_map(|t| {
            t["functionDeclarations"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|d| d["name"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn codex_completes_a_turn_on_every_backend() {
    if program("codex").is_none() {
        return;
    }
    let s = setup("codex").await;

    // Chat upstream: the namespace flattened, web search left out, and the
    // call and its output replayed on the next request.
    codex(&s, CHAT).await;
    let names = chat_tool_names(&s.chat, CHAT);
    assert!(
        names.iter().any(|n| n == "multi_agent_v1__spawn_agent"),
        "{names:?}"
    );
    assert!(names.iter().all(|n| openai_name(n)), "{names:?}");
    let last = s
        .chat
        .received()
        .into_iter()
        .rfind(|r| r.body["model"] == CHAT)
        .unwrap();
    let messages = last.body["messages"].as_array().unwrap();
    assert!(
        messages
            .iter()
            .any(|m| m["role"] == "tool" && m["tool_call_id"] == "call_sh1")
    );
    assert!(
        messages
            .iter()
            .any(|m| m["role"] == "developer" || m["role"] == "system")
    );

    // A catalog model offers the freeform apply_patch: the fake asks for a
    // patch through it, and Codex applies it.
    let events = codex(&s, CHAT_FREEFORM).await;
    assert!(
        events.iter().any(|e| e["item"]["type"] == "file_change"),
        "no patch applied: {events:#?}"
    );
    let patched = s.dir.join("codex-gpt-5_5/patched.txt");
    assert_eq!(
        std::fs::read_to_string(&patched).unwrap(),
        "patched by the model\n"
    );
    let last = s
        .chat
        .received()
        .into_iter()
        .rfind(|r| r.body["model"] == CHAT_FREEFORM)
        .unwrap();
    let patch_call = last.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["tool_calls"].as_array().cloned().unwrap_or_default())
        .find(|c| c["function"]["name"] == "apply_patch")
        .expect("the patch call is replayed as a function call");
    let args: Value =
        serde_json::from_str(patch_call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args["input"], AGENT_PATCH);

    // Gemini 2.5 and 3: flattened names; on 3, the signatures replayed.
    for model in [GEMINI_25, GEMINI_3] {
        codex(&s, model).await;
        let bodies = vertex_bodies(&s.vertex, model);
        assert!(bodies.len() >= 2, "{model}: {bodies:#?}");
        let names = gemini_names(&bodies);
        assert!(
            names.iter().any(|n| n == "multi_agent_v1__spawn_agent"),
            "{names:?}"
        );
    }
    assert!(
        !s.vertex.replayed().is_empty(),
        "Gemini 3 signatures came back"
    );

    // Claude with thinking: web search as Claude's server tool, thinking
    // signatures replayed in the tool loop.
    codex(&s, CLAUDE).await;
    let bodies = vertex_bodies(&s.vertex, CLAUDE);
    let tools = bodies[0]["tools"].as_array().unwrap();
    assert!(
        tools.iter().any(|t| t["type"] == "web_search_20250305"),
        "{tools:#?}"
    );
    assert!(
        tools
            .iter()
            .any(|t| t["name"] == "multi_agent_v1__spawn_agent")
    );
    assert!(
        bodies.iter().any(|b| b.get("thinking").is_some()),
        "thinking was asked for"
    );
    assert!(
        !s.vertex.claude_replayed().is_empty(),
        "thinking signatures came back"
    );

    // OpenResponses: the tools as Codex sent them.
    codex(&s, OPENRESPONSES).await;
    let first = &s.responses.received()[0].body;
    let kinds: Vec<&str> = first["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["type"].as_str())
        .collect();
    assert!(
        kinds.contains(&"namespace") && kinds.contains(&"web_search"),
        "{kinds:?}"
    );
}

#[tokio::test]
async fn opencode_completes_a_turn_through_chat_completions_on_every_backend() {
    if program("opencode").is_none() {
        return;
    }
    let s = setup("opencode-chat").await;
    let npm = "@ai-sdk/openai-compatible";
    for model in ["gpt-4o", GEMINI_25, GEMINI_3, CLAUDE, OPENRESPONSES] {
        opencode(&s, npm, model, json!({})).await;
    }
    assert!(
        chat_tool_names(&s.chat, "gpt-4o")
            .iter()
            .any(|n| n == "bash")
    );
    assert!(
        !s.vertex.replayed().is_empty(),
        "Gemini 3 signatures came back"
    );
    assert!(
        gemini_names(&vertex_bodies(&s.vertex, GEMINI_25))
            .iter()
            .any(|n| n == "bash")
    );
}

#[tokio::test]
async fn opencode_completes_a_turn_through_responses_on_every_backend() {
    if program("opencode").is_none() {
        return;
    }
    let s = setup("opencode-responses").await;
    let npm = "@ai-sdk/openai";
    for model in ["gpt-4o", GEMINI_25, CLAUDE, OPENRESPONSES] {
        opencode(&s, npm, model, json!({})).await;
    }
    // Stored responses: the AI SDK refers to its earlier reasoning items
    // by id (`item_reference`), which the proxy resolves for Gemini, whose
    // signatures must come back.
    let stored = json!({"options": {"store": true}});
    opencode(&s, npm, GEMINI_3, stored).await;
    assert!(
        !s.vertex.replayed().is_empty(),
        "Gemini 3 signatures came back"
    );
    let bodies = vertex_bodies(&s.vertex, GEMINI_3);
    assert!(bodies.len() >= 2, "{bodies:#?}");
}

#[tokio::test]
async fn claude_code_completes_a_turn_on_every_backend() {
    if program("claude").is_none() {
        return;
    }
    let s = setup("claude").await;
    for model in [CHAT, GEMINI_25, GEMINI_3, CLAUDE_CODE_NAME, OPENRESPONSES] {
        claude_code(&s, model).await;
    }
    // Claude got the thinking of its own earlier turn back, signed.
    assert!(
        !s.vertex.claude_replayed().is_empty(),
        "Claude's thinking was not replayed"
    );
    let _ = (&s.chat, &s.responses);
}
