//! The benchmark run: starts the mock, the relay, llmproxy and the peers
//! (LiteLLM, the Portkey gateway) as separate processes, measures them interleaved, prints the tables and
//! writes them to a Markdown file.

use crate::load::{self, HttpClient, Run, Target};
use crate::mock::TOKEN;
use bytes::Bytes;
use serde_json::json;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Options {
    pub quick: bool,
    pub litellm: bool,
    pub portkey: bool,
    pub out: String,
}

/// A child process, killed when dropped.
pub(crate) struct Proc {
    pub(crate) child: Child,
    pub(crate) port: u16,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_ready(port: u16, what: &str, timeout: Duration) {
    let start = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            start.elapsed() < timeout,
            "{what} did not start on port {port}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn spawn(mut cmd: Command, port: u16, what: &str, timeout: Duration) -> Proc {
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let proc = Proc { child, port };
    wait_ready(port, what, timeout).await;
    proc
}

pub(crate) async fn spawn_self(args: &[&str], what: &str) -> Proc {
    let port = free_port();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(args).args(["--port", &port.to_string()]);
    spawn(cmd, port, what, Duration::from_secs(10)).await
}

pub(crate) async fn start_llmproxy(bin: &Path, config: &Path) -> Proc {
    let port = free_port();
    let mut cmd = Command::new(bin);
    cmd.arg("--config")
        .arg(config)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "warn");
    spawn(cmd, port, "llmproxy", Duration::from_secs(30)).await
}

/// A `Key:   123 kB` line of a /proc file, in MiB.
fn proc_mib(file: &str, key: &str) -> f64 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

pub(crate) fn rss_mib(pid: u32) -> f64 {
    proc_mib(&format!("/proc/{pid}/status"), "VmRSS:")
}

/// Proportional set size: like RSS, but a page mapped several times (the
/// translator's data image, copy-on-write in every Wasm instance) counts once.
fn pss_mib(pid: u32) -> f64 {
    proc_mib(&format!("/proc/{pid}/smaps_rollup"), "Pss:")
}

/// CPU time (user + system) a process has used so far.
fn cpu_time(pid: u32) -> Duration {
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the command name, which is in parentheses.
            let rest = s.rsplit_once(')')?.1.split_whitespace().collect::<Vec<_>>();
            Some(rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn fmt_us(v: f64) -> String {
    if v.abs() >= 10_000.0 {
        format!("{:.1} ms", v / 1000.0)
    } else {
        format!("{v:.0} µs")
    }
}

/// A Chat request of about `kib` KiB, optionally with tools.
pub fn chat_body(model: &str, kib: usize, tools: bool, stream: bool) -> Bytes {
    let mut messages = vec![
        json!({"role": "system", "content": "You are a careful coding agent. Answer briefly."}),
    ];
    let filler = "The quick brown fox jumps over the lazy dog while the build runs. ";
    let mut body = json!({"model": model, "messages": messages.clone(), "max_tokens": 256});
    while body.to_string().len() < kib * 1024 {
        messages.push(json!({"role": "user", "content": filler.repeat(4)}));
        messages.push(json!({"role": "assistant", "content": "Noted."}));
        body["messages"] = json!(messages);
    }
    messages.push(json!({"role": "user", "content": "What now?"}));
    body["messages"] = json!(messages);
    if tools {
        body["tools"] = json!(["read_file", "write_file", "run_shell"].iter().map(|name| json!({"type": "function", "function": {
            "name": name, "description": format!("{name} in the workspace"),
            "parameters": {"type": "object", "properties": {"path": {"type": "string"}, "content": {"type": "string"}}, "required": ["path"]}}})).collect::<Vec<_>>());
    }
    if stream {
        body["stream"] = json!(true);
    }
    Bytes::from(body.to_string())
}

/// A `[[backends]]` table: an openai backend on a mock.
pub(crate) fn openai_backend(name: &str, port: u16, models: &str) -> String {
    format!(
        "[[backends]]\nname = \"{name}\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:{port}/v1\"\nauth = \"none\"\nmodels = [\"{models}\"]\n"
    )
}

/// A gcp-vertex backend on a mock (Gemini and Claude), with Google
/// credentials in `dir` whose token endpoint is the mock.
pub(crate) fn vertex_backend(dir: &Path, port: u16) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let adc = dir.join("adc.json");
    std::fs::write(&adc, json!({"type": "authorized_user", "client_id": "c", "client_secret": "s", "refresh_token": "r",
        "token_uri": format!("http://127.0.0.1:{port}/token")}).to_string()).unwrap();
    format!(
        "[[backends]]\nname = \"vertex\"\nkind = \"gcp-vertex\"\nbase_url = \"http://127.0.0.1:{port}\"\nmodels = [\"gemini-*\", \"claude-*\"]\n\
         auth = {{ gcp_credentials_file = {adc:?} }}\nsettings = {{ project = \"bench\", location = \"global\" }}\n"
    )
}

/// Writes `dir/llmproxy.toml` with the backends, in order.
pub(crate) fn write_config(dir: &Path, max_instances: u32, backends: &[String]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("llmproxy.toml");
    let toml = format!(
        "[translators]\nmax_instances = {max_instances}\n\n{}",
        backends.join("\n")
    );
    std::fs::write(&config, toml).unwrap();
    config
}

pub(crate) fn target(port: u16, path: &str, body: Bytes) -> Target {
    Target {
        url: format!("http://127.0.0.1:{port}{path}"),
        body,
        headers: Vec::new(),
    }
}

const GEMINI_PATH: &str =
    "/v1/projects/bench/locations/global/publishers/google/models/gemini-2.5-flash";
const CLAUDE_PATH: &str =
    "/v1/projects/bench/locations/global/publishers/anthropic/models/claude-sonnet-4-5";

/// Runs each target at `rate` for `secs`, `rounds` times, interleaved.
async fn interleaved(
    client: &HttpClient,
    targets: &[(&str, &Target)],
    rate: u32,
    secs: u32,
    rounds: usize,
) -> Vec<Run> {
    let mut runs = vec![Run::default(); targets.len()];
    for _ in 0..rounds {
        for (i, (_, t)) in targets.iter().enumerate() {
            let r = load::fixed_rate(client, t, rate, secs).await;
            runs[i].latencies.extend(r.latencies);
            runs[i].errors += r.errors;
            if runs[i].first_error.is_none() {
                runs[i].first_error = r.first_error;
            }
        }
    }
    runs
}

struct Goal {
    what: &'static str,
    goal: &'static str,
    measured: String,
    met: bool,
}

pub async fn run(opts: Options) {
    let started = Instant::now();
    let exe = std::env::current_exe().unwrap();
    let llmproxy = exe.with_file_name("llmproxy");
    assert!(
        llmproxy.exists(),
        "{} is missing: cargo build --release -p llmproxy",
        llmproxy.display()
    );
    let (secs, rounds, stream_runs) = if opts.quick { (1, 1, 30) } else { (3, 2, 200) };
    let mut md = String::new();
    let mut goals = Vec::new();

    let mock = spawn_self(&["mock", "--chunks", "100"], "the mock").await;
    let mock60 = spawn_self(
        &["mock", "--chunks", "100", "--latency-ms", "60"],
        "the 60 ms mock",
    )
    .await;
    let slow = spawn_self(
        &["mock", "--chunks", "2", "--chunk-delay-ms", "600000"],
        "the slow mock",
    )
    .await;
    let relay_port = free_port();
    let relay = spawn(
        {
            let mut c = Command::new(&exe);
            c.args([
                "relay",
                "--port",
                &relay_port.to_string(),
                "--upstream",
                &format!("127.0.0.1:{}", mock.port),
            ]);
            c
        },
        relay_port,
        "the relay",
        Duration::from_secs(10),
    )
    .await;

    let dir = std::env::temp_dir().join(format!("llmproxy-bench-{}", std::process::id()));
    let config = write_config(
        &dir,
        4000,
        &[
            openai_backend("chat", mock.port, "gpt-*"),
            openai_backend("chat60", mock60.port, "slow60-*"),
            openai_backend("open", slow.port, "open-*"),
            vertex_backend(&dir, mock.port),
        ],
    );

    // Startup and size.
    let mut ready = Vec::new();
    let mut first = Vec::new();
    let client = load::client();
    for _ in 0..if opts.quick { 3 } else { 15 } {
        let t0 = Instant::now();
        let proc = start_llmproxy(&llmproxy, &config).await;
        ready.push(t0.elapsed());
        load::send(
            &client,
            &target(
                proc.port,
                "/v1/chat/completions",
                chat_body("gpt-4o", 1, false, false),
            ),
        )
        .await
        .unwrap();
        first.push(t0.elapsed());
    }
    ready.sort();
    first.sort();
    let startup_first = first[first.len() / 2];
    let size_mib = std::fs::metadata(&llmproxy).map_or(0.0, |m| m.len() as f64 / 1048576.0);

    let proxy = start_llmproxy(&llmproxy, &config).await;
    let one = chat_body("gpt-4o", 1, false, false);
    load::send(&client, &target(proxy.port, "/v1/chat/completions", one))
        .await
        .unwrap();
    let fresh_rss = rss_mib(proxy.child.id());
    // The same with one openai backend: one translator loaded.
    let single = dir.join("openai-only.toml");
    std::fs::write(
        &single,
        format!(
            "[[backends]]\nname = \"chat\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:{}/v1\"\nauth = \"none\"\nmodels = [\"*\"]\n",
            mock.port
        ),
    )
    .unwrap();
    let single_rss = {
        let p = start_llmproxy(&llmproxy, &single).await;
        let one = chat_body("gpt-4o", 1, false, false);
        load::send(&client, &target(p.port, "/v1/chat/completions", one))
            .await
            .unwrap();
        rss_mib(p.child.id())
    };
    let mut peers = Vec::new();
    if opts.litellm {
        peers.extend(litellm(mock.port).await);
    }
    if opts.portkey {
        peers.extend(portkey(mock.port).await);
    }

    // Requests.
    let chat1 = target(
        mock.port,
        "/v1/chat/completions",
        chat_body("gpt-4o", 1, false, false),
    );
    let relay1 = target(
        relay.port,
        "/v1/chat/completions",
        chat_body("gpt-4o", 1, false, false),
    );
    let proxy1 = target(
        proxy.port,
        "/v1/chat/completions",
        chat_body("gpt-4o", 1, false, false),
    );
    let gemini_direct = target(
        mock.port,
        &format!("{GEMINI_PATH}:generateContent"),
        chat_body("gemini-2.5-flash", 5, true, false),
    );
    let gemini5 = target(
        proxy.port,
        "/v1/chat/completions",
        chat_body("gemini-2.5-flash", 5, true, false),
    );
    let peer_targets: Vec<(String, Target)> = peers
        .iter()
        .map(|p| {
            let t = Target {
                url: format!("http://127.0.0.1:{}/v1/chat/completions", p.port),
                body: chat_body("gpt-4o", 1, false, false),
                headers: p.headers.clone(),
            };
            (format!("{} Chat → openai", p.name), t)
        })
        .collect();
    // Warm up every path (connections, token, instances).
    for t in [&chat1, &relay1, &proxy1, &gemini_direct, &gemini5]
        .into_iter()
        .chain(peer_targets.iter().map(|(_, t)| t))
    {
        for _ in 0..50 {
            load::send(&client, t)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", t.url));
        }
    }
    let idle_rss = rss_mib(proxy.child.id());

    // Added latency at fixed rates.
    let _ = writeln!(
        md,
        "### Added latency, open loop (vs B0, the mock called directly)\n"
    );
    let _ = writeln!(
        md,
        "Each row: {secs} s × {rounds} rounds at the given rate, interleaved with the other rows. Latency counts from when a request was due. Non-streaming Chat requests (1 KiB; Gemini: 5 KiB with 3 tools), mock answering at once.\n"
    );
    let _ = writeln!(
        md,
        "| rate | path | p50 | p90 | p99 | added p50 | added p90 | added p99 | errors |"
    );
    let _ = writeln!(md, "|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for rate in [100u32, 1000] {
        let mut targets: Vec<(&str, &Target)> = vec![
            ("B0 mock direct (Chat)", &chat1),
            ("B1 plain relay → mock (Chat)", &relay1),
            ("llmproxy Chat → openai", &proxy1),
            ("B0 mock direct (Gemini)", &gemini_direct),
            ("llmproxy Chat → Gemini (Wasm)", &gemini5),
        ];
        for (name, t) in &peer_targets {
            targets.push((name.as_str(), t));
        }
        let runs = interleaved(&client, &targets, rate, secs, rounds).await;
        for (i, (name, _)) in targets.iter().enumerate() {
            let base = if name.contains("Gemini") {
                &runs[3]
            } else {
                &runs[0]
            };
            let r = &runs[i];
            let added = |p: f64| us(r.percentile(p)) - us(base.percentile(p));
            let _ = writeln!(
                md,
                "| {rate} | {name} | {} | {} | {} | {} | {} | {} | {}{} |",
                fmt_us(us(r.percentile(0.5))),
                fmt_us(us(r.percentile(0.9))),
                fmt_us(us(r.percentile(0.99))),
                if i == 0 || i == 3 {
                    "-".into()
                } else {
                    fmt_us(added(0.5))
                },
                if i == 0 || i == 3 {
                    "-".into()
                } else {
                    fmt_us(added(0.9))
                },
                if i == 0 || i == 3 {
                    "-".into()
                } else {
                    fmt_us(added(0.99))
                },
                r.errors,
                r.first_error
                    .as_deref()
                    .map(|e| format!(" ({})", e.chars().take(60).collect::<String>()))
                    .unwrap_or_default()
            );
            if rate == 1000 && i == 4 {
                goals.push(Goal {
                    what: "Gemini path, added p50 at 1000 RPS",
                    goal: "≤ 150 µs",
                    measured: fmt_us(added(0.5)),
                    met: added(0.5) <= 150.0,
                });
                goals.push(Goal {
                    what: "Gemini path, added p99 at 1000 RPS",
                    goal: "≤ 1 ms",
                    measured: fmt_us(added(0.99)),
                    met: added(0.99) <= 1000.0,
                });
            }
        }
    }

    // What a request costs the proxy in CPU.
    let _ = writeln!(
        md,
        "\n### Proxy CPU per request (1000 RPS, {} s each)\n",
        secs * rounds as u32
    );
    let _ = writeln!(
        md,
        "CPU time (user + system, all threads) llmproxy used during the run, divided by the requests. On 2 shared cores this, not queueing, sets most of the added latency above.\n"
    );
    let _ = writeln!(md, "| path | CPU per request |");
    let _ = writeln!(md, "|---|---:|");
    for (name, t, pid, goal) in [
        (
            "B1 plain relay → mock (Chat)",
            &relay1,
            relay.child.id(),
            None,
        ),
        (
            "llmproxy Chat → openai",
            &proxy1,
            proxy.child.id(),
            Some(("CPU per request, Chat → openai (1 KiB)", "≤ 60 µs", 60.0)),
        ),
        (
            "llmproxy Chat → Gemini (Wasm)",
            &gemini5,
            proxy.child.id(),
            Some((
                "CPU per request, Chat → Gemini (5 KiB, 3 tools)",
                "≤ 150 µs",
                150.0,
            )),
        ),
    ] {
        let before = cpu_time(pid);
        let run = load::fixed_rate(&client, t, 1000, secs * rounds as u32).await;
        let spent = cpu_time(pid) - before;
        let n = (run.latencies.len() + run.errors).max(1);
        let per = us(spent) / n as f64;
        let _ = writeln!(md, "| {name} | {} |", fmt_us(per));
        if let Some((what, goal, limit)) = goal {
            goals.push(Goal {
                what,
                goal,
                measured: fmt_us(per),
                met: per <= limit,
            });
        }
    }

    // Request size, and a 60 ms upstream.
    let _ = writeln!(
        md,
        "\n### Request size and upstream latency (100 RPS, Chat → openai)\n"
    );
    let _ = writeln!(
        md,
        "| request | B0 p50 | llmproxy p50 | added p50 | added p99 |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|");
    for (label, kib, slow60) in [
        ("1 KiB", 1, false),
        ("5 KiB", 5, false),
        ("50 KiB", 50, false),
        ("1 KiB, upstream 60 ms", 1, true),
    ] {
        let (direct_port, model) = if slow60 {
            (mock60.port, "slow60-x")
        } else {
            (mock.port, "gpt-4o")
        };
        let direct = target(
            direct_port,
            "/v1/chat/completions",
            chat_body(model, kib, false, false),
        );
        let via = target(
            proxy.port,
            "/v1/chat/completions",
            chat_body(model, kib, false, false),
        );
        let runs = interleaved(
            &client,
            &[("B0", &direct), ("llmproxy", &via)],
            100,
            secs,
            rounds,
        )
        .await;
        let _ = writeln!(
            md,
            "| {label} | {} | {} | {} | {} |",
            fmt_us(us(runs[0].percentile(0.5))),
            fmt_us(us(runs[1].percentile(0.5))),
            fmt_us(us(runs[1].percentile(0.5)) - us(runs[0].percentile(0.5))),
            fmt_us(us(runs[1].percentile(0.99)) - us(runs[0].percentile(0.99)))
        );
    }

    // Throughput, with the proxy's memory under load.
    let _ = writeln!(
        md,
        "\n### Maximum throughput (closed loop, 32 concurrent clients, {} s)\n",
        secs * 2
    );
    let _ = writeln!(md, "| path | requests/s | errors | vs B0 |");
    let _ = writeln!(md, "|---|---:|---:|---:|");
    let mut throughput = vec![
        ("B0 mock direct (Chat)", &chat1),
        ("B1 plain relay → mock (Chat)", &relay1),
        ("llmproxy Chat → openai", &proxy1),
        ("llmproxy Chat → Gemini (Wasm)", &gemini5),
    ];
    for (name, t) in &peer_targets {
        throughput.push((name.as_str(), t));
    }
    let pid = proxy.child.id();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(
                    (rss_mib(pid) * 1024.0) as u64,
                    std::sync::atomic::Ordering::Relaxed,
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let mut rps = Vec::new();
    for (name, t) in &throughput {
        let (r, errors) = load::max_rps(&client, t, 32, u64::from(secs) * 2).await;
        rps.push((name.to_string(), r, errors));
    }
    sampler.abort();
    let load_rss = peak.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1024.0;
    let b0 = rps[0].1;
    for (name, r, errors) in &rps {
        let _ = writeln!(md, "| {name} | {r:.0} | {errors} | {:.2}× |", r / b0);
    }
    let relay_rps = rps[1].1;
    let ours = rps[2].1;
    goals.push(Goal {
        what: "max RPS, Chat → openai vs B1 plain relay (same run)",
        goal: "≥ 50%",
        measured: format!(
            "{:.0}% ({ours:.0} vs {relay_rps:.0})",
            100.0 * ours / relay_rps
        ),
        met: ours >= 0.5 * relay_rps,
    });
    if let Some((_, lite_rps, _)) = rps.iter().find(|(n, _, _)| n.starts_with("LiteLLM")) {
        let ours = rps[3].1;
        goals.push(Goal {
            what: "max RPS, Gemini path vs LiteLLM (openai path)",
            goal: "≥ 20×",
            measured: format!("{:.1}×", ours / lite_rps),
            met: ours / lite_rps >= 20.0,
        });
    }

    // Streams: time to first token and per-event overhead.
    let _ = writeln!(
        md,
        "\n### Streams (100 text events, mock sending them back to back; {stream_runs} runs each, interleaved)\n"
    );
    let _ = writeln!(
        md,
        "| path | TTFT p50 | TTFT delta | total p50 | per-event delta |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|");
    // `store` true (the API default) keeps each response in the proxy's
    // memory store; the store: false row shows what that costs.
    let responses_stream = |model: &str, store: bool| {
        Bytes::from(json!({"model": model, "stream": true, "store": store, "input": [{"role": "user", "content": "Write."}], "max_output_tokens": 256}).to_string())
    };
    // Anthropic Messages clients: to Claude as written (passthrough), to
    // Gemini through the canonical format.
    let messages_stream = |model: &str| {
        Bytes::from(json!({"model": model, "stream": true, "max_tokens": 256, "messages": [{"role": "user", "content": "Write."}]}).to_string())
    };
    let pairs = [
        (
            "Responses → Gemini",
            target(
                mock.port,
                &format!("{GEMINI_PATH}:streamGenerateContent?alt=sse"),
                chat_body("x", 1, false, false),
            ),
            target(
                proxy.port,
                "/v1/responses",
                responses_stream("gemini-2.5-flash", true),
            ),
        ),
        (
            "Responses → Gemini, store: false",
            target(
                mock.port,
                &format!("{GEMINI_PATH}:streamGenerateContent?alt=sse"),
                chat_body("x", 1, false, false),
            ),
            target(
                proxy.port,
                "/v1/responses",
                responses_stream("gemini-2.5-flash", false),
            ),
        ),
        (
            "Responses → Claude",
            target(
                mock.port,
                &format!("{CLAUDE_PATH}:streamRawPredict"),
                chat_body("x", 1, false, false),
            ),
            target(
                proxy.port,
                "/v1/responses",
                responses_stream("claude-sonnet-4-5", true),
            ),
        ),
        (
            "Messages → Claude (passthrough)",
            target(
                mock.port,
                &format!("{CLAUDE_PATH}:streamRawPredict"),
                chat_body("x", 1, false, false),
            ),
            target(
                proxy.port,
                "/v1/messages",
                messages_stream("claude-sonnet-4-5"),
            ),
        ),
        (
            "Messages → Gemini",
            target(
                mock.port,
                &format!("{GEMINI_PATH}:streamGenerateContent?alt=sse"),
                chat_body("x", 1, false, false),
            ),
            target(
                proxy.port,
                "/v1/messages",
                messages_stream("gemini-2.5-flash"),
            ),
        ),
        (
            "Chat → openai",
            target(
                mock.port,
                "/v1/chat/completions",
                chat_body("gpt-4o", 1, false, true),
            ),
            target(
                proxy.port,
                "/v1/chat/completions",
                chat_body("gpt-4o", 1, false, true),
            ),
        ),
    ];
    let mut worst_ttft: f64 = 0.0;
    let mut worst_event: f64 = 0.0;
    for (name, direct, via) in &pairs {
        let (mut d_first, mut d_total, mut v_first, mut v_total) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..stream_runs {
            let (f, t, n) = load::stream_once(&client, direct, TOKEN).await.unwrap();
            assert_eq!(n, 100, "{name}: direct");
            d_first.push(us(f));
            d_total.push(us(t));
            let (f, t, n) = load::stream_once(&client, via, TOKEN).await.unwrap();
            assert!(n >= 100, "{name}: {n} tokens through the proxy");
            v_first.push(us(f));
            v_total.push(us(t));
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (df, dt, vf, vt) = (
            median(&mut d_first),
            median(&mut d_total),
            median(&mut v_first),
            median(&mut v_total),
        );
        let ttft = vf - df;
        let per_event = ((vt - vf) - (dt - df)) / 99.0;
        worst_ttft = worst_ttft.max(ttft);
        worst_event = worst_event.max(per_event);
        let _ = writeln!(
            md,
            "| llmproxy {name} | {} | {} | {} | {} |",
            fmt_us(vf),
            fmt_us(ttft),
            fmt_us(vt),
            fmt_us(per_event)
        );
    }
    goals.push(Goal {
        what: "TTFT delta (worst stream path)",
        goal: "≤ 150 µs",
        measured: fmt_us(worst_ttft),
        met: worst_ttft <= 150.0,
    });
    goals.push(Goal {
        what: "per-event overhead (worst stream path)",
        goal: "≤ 5 µs",
        measured: fmt_us(worst_event),
        met: worst_event <= 5.0,
    });

    // 1000 open streams.
    let open_target = target(
        proxy.port,
        "/v1/chat/completions",
        chat_body("open-model", 1, false, true),
    );
    let mut open = Vec::new();
    for _ in 0..1000 {
        open.push(load::open_stream(&client, &open_target));
    }
    let open: Vec<_> = futures_util::future::join_all(open).await;
    let opened = open.iter().filter(|o| o.is_ok()).count();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let streams_rss = rss_mib(proxy.child.id());
    let streams_pss = pss_mib(proxy.child.id());
    drop(open);

    let _ = writeln!(md, "\n### Memory, startup, size\n");
    let _ = writeln!(md, "| | llmproxy |");
    let _ = writeln!(md, "|---|---:|");
    let _ = writeln!(
        md,
        "| RSS idle: started, one request served | {fresh_rss:.1} MiB |"
    );
    let _ = writeln!(
        md,
        "| RSS idle: after warm-up (50 requests on each path) | {idle_rss:.1} MiB |"
    );
    let _ = writeln!(
        md,
        "| RSS idle: a config with one openai backend, one request served | {single_rss:.1} MiB |"
    );
    let _ = writeln!(md, "| RSS peak under maximum load | {load_rss:.1} MiB |");
    let _ = writeln!(
        md,
        "| RSS with {opened} open streams | {streams_rss:.1} MiB |"
    );
    let _ = writeln!(
        md,
        "| PSS with {opened} open streams (shared pages counted once) | {streams_pss:.1} MiB |"
    );
    let _ = writeln!(
        md,
        "| startup: spawn → port open, p50 | {} |",
        fmt_us(us(ready[ready.len() / 2]))
    );
    let _ = writeln!(
        md,
        "| startup: spawn → first proxied 200, p50 | {} |",
        fmt_us(us(startup_first))
    );
    let _ = writeln!(md, "| binary size (release) | {size_mib:.1} MiB |");
    for p in &peers {
        let _ = writeln!(
            md,
            "| {} RSS idle (for comparison) | {:.1} MiB |",
            p.name, p.idle_rss
        );
        let _ = writeln!(
            md,
            "| {} startup to first 200 | {:.1} s |",
            p.name,
            p.startup.as_secs_f64()
        );
    }
    goals.push(Goal {
        what: "idle RSS (three bundled translators loaded, one request served)",
        goal: "≤ 20 MiB",
        measured: format!("{fresh_rss:.1} MiB (one openai backend: {single_rss:.1} MiB)"),
        met: fresh_rss <= 20.0,
    });
    goals.push(Goal {
        what: "RSS with 1000 open streams",
        goal: "≤ 100 MiB",
        measured: format!("{streams_rss:.1} MiB ({opened} opened; PSS {streams_pss:.1} MiB)"),
        met: opened == 1000 && streams_rss <= 100.0,
    });
    goals.push(Goal {
        what: "startup to first 200",
        goal: "≤ 100 ms",
        measured: fmt_us(us(startup_first)),
        met: us(startup_first) <= 100_000.0,
    });

    let mut head = String::new();
    let _ = writeln!(
        head,
        "## Goals\n\n| goal | target | measured | met |\n|---|---|---:|:-:|"
    );
    for g in &goals {
        let _ = writeln!(
            head,
            "| {} | {} | {} | {} |",
            g.what,
            g.goal,
            g.measured,
            if g.met { "yes" } else { "**no**" }
        );
    }
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let text = format!(
        "# llmproxy benchmarks\n\nGenerated by `just bench` ({}) on {cores} cores ({cpu}); every process - load generator, mock, relay, llmproxy, LiteLLM - shares them. Run took {:.0} s. llmproxy serves four backends here: openai (twice, on two mocks), a third openai on a mock that never finishes its streams, and gcp-vertex (Gemini and Claude translators, Google credentials from a file whose token endpoint is the mock).\n\n{head}\n## Results\n\n{md}\n{}",
        if opts.quick { "quick mode" } else { "full" },
        started.elapsed().as_secs_f64(),
        include_str!("../analysis.md")
    );
    println!("{text}");
    std::fs::write(&opts.out, &text).unwrap();
    eprintln!("wrote {}", opts.out);
    let _ = std::fs::remove_dir_all(&dir);
    drop((mock, mock60, slow, relay, proxy, peers));
}

/// Another gateway measured beside llmproxy, on the same mock.
struct Peer {
    name: &'static str,
    _proc: Proc,
    port: u16,
    /// What its requests carry (key, routing).
    headers: Vec<(&'static str, String)>,
    idle_rss: f64,
    startup: Duration,
}

/// LiteLLM's proxy on the mock, from a venv under target/bench (installed
/// on first use); `None` when it cannot be installed.
async fn litellm(mock_port: u16) -> Option<Peer> {
    let venv = PathBuf::from(
        std::env::var("LITELLM_VENV").unwrap_or_else(|_| "target/bench/litellm-venv".into()),
    );
    let bin = venv.join("bin/litellm");
    if !bin.exists() {
        eprintln!("installing LiteLLM into {} ...", venv.display());
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success())
            && Command::new(venv.join("bin/pip"))
                .args(["install", "-q", "litellm[proxy]==1.106.2"])
                .status()
                .is_ok_and(|s| s.success());
        if !ok {
            eprintln!(
                "LiteLLM could not be installed: skipping it (pass --no-litellm to skip on purpose)"
            );
            return None;
        }
    }
    let dir = std::env::temp_dir().join(format!("llmproxy-bench-litellm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let config = dir.join("config.yaml");
    std::fs::write(&config, format!(
        "model_list:\n  - model_name: gpt-4o\n    litellm_params:\n      model: openai/gpt-4o\n      api_base: http://127.0.0.1:{mock_port}/v1\n      api_key: sk-mock\ngeneral_settings:\n  master_key: sk-bench\nlitellm_settings:\n  telemetry: false\n"
    )).ok()?;
    let port = free_port();
    let start = Instant::now();
    let mut cmd = Command::new(&bin);
    cmd.args([
        "--config",
        config.to_str()?,
        "--port",
        &port.to_string(),
        "--host",
        "127.0.0.1",
        "--num_workers",
        "1",
    ])
    .env("LITELLM_LOG", "ERROR")
    .env("LITELLM_TELEMETRY", "False")
    .env("NO_DOCS", "True");
    let proc = spawn(cmd, port, "LiteLLM", Duration::from_secs(180)).await;
    let headers = vec![("authorization", "Bearer sk-bench".to_string())];
    peer("LiteLLM", proc, headers, start).await
}

/// The Portkey gateway (Node) on the mock, from target/bench/portkey
/// (installed with npm on first use); `None` when it cannot be installed.
async fn portkey(mock_port: u16) -> Option<Peer> {
    let dir = PathBuf::from(
        std::env::var("PORTKEY_DIR").unwrap_or_else(|_| "target/bench/portkey".into()),
    );
    let server = dir.join("node_modules/@portkey-ai/gateway/build/start-server.js");
    if !server.exists() {
        eprintln!("installing the Portkey gateway into {} ...", dir.display());
        let ok = std::fs::create_dir_all(&dir).is_ok()
            && Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--prefix"])
                .arg(&dir)
                .arg("@portkey-ai/gateway@1.15.2")
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
        if !ok {
            eprintln!(
                "the Portkey gateway could not be installed: skipping it (pass --no-portkey to skip on purpose)"
            );
            return None;
        }
    }
    let port = free_port();
    let start = Instant::now();
    let mut cmd = Command::new("node");
    // 1.15.2 reads `--port=P` (a separate `--port P` is ignored).
    cmd.arg(&server)
        .arg(format!("--port={port}"))
        .arg("--headless");
    let proc = spawn(cmd, port, "Portkey", Duration::from_secs(60)).await;
    let headers = vec![
        ("authorization", "Bearer sk-mock".to_string()),
        ("x-portkey-provider", "openai".to_string()),
        (
            "x-portkey-custom-host",
            format!("http://127.0.0.1:{mock_port}/v1"),
        ),
    ];
    peer("Portkey", proc, headers, start).await
}

/// `proc` as a peer once it answers a Chat request through the mock.
async fn peer(
    name: &'static str,
    proc: Proc,
    headers: Vec<(&'static str, String)>,
    start: Instant,
) -> Option<Peer> {
    let client = load::client();
    let t = Target {
        url: format!("http://127.0.0.1:{}/v1/chat/completions", proc.port),
        body: chat_body("gpt-4o", 1, false, false),
        headers: headers.clone(),
    };
    let mut ok = false;
    for _ in 0..600 {
        if load::send(&client, &t).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !ok {
        eprintln!("{name} did not answer: skipping it");
        return None;
    }
    let startup = start.elapsed();
    let idle_rss = rss_mib(proc.child.id()) + children_rss(proc.child.id());
    Some(Peer {
        name,
        port: proc.port,
        _proc: proc,
        headers,
        idle_rss,
        startup,
    })
}

/// RSS of a process's children (LiteLLM runs its server in a child).
fn children_rss(pid: u32) -> f64 {
    let path = format!("/proc/{pid}/task/{pid}/children");
    std::fs::read_to_string(Path::new(&path))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|c| c.parse::<u32>().ok())
        .map(|c| rss_mib(c) + children_rss(c))
        .sum()
}
