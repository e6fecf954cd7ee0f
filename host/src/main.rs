//! The `llmproxy` binary: command line, logging, and the HTTP server.

use anyhow::{Context as _, bail};
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};
use llmproxy::{
    AuthConfig, BackendConfig, Config, KeySource, Proxy, ReloadableProxy, Secret, StoreKind,
};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

/// An OpenAI-format LLM proxy with sandboxed WebAssembly translators.
///
/// Serves the Responses API (POST /v1/responses, and GET/DELETE of stored
/// responses), Chat Completions (POST /v1/chat/completions), GET /v1/models
/// and GET /healthz. Run it with a config file (--config) for several
/// backends routed by model glob, or with --backend KIND for a single
/// backend serving every model. The config and backend flags may also
/// follow `translate`.
///
/// Clients must send `Authorization: Bearer <key>` when LLMPROXY_API_KEY is
/// set. Logging follows RUST_LOG (default: info).
#[derive(Debug, Parser)]
#[command(version, max_term_width = 100)]
struct Cli {
    /// TOML config file (see llmproxy.example.toml).
    #[arg(
        short,
        long,
        env = "LLMPROXY_CONFIG",
        value_name = "FILE",
        global = true
    )]
    config: Option<PathBuf>,

    /// Address to listen on [default: the config's server.listen, else 0.0.0.0:8080].
    #[arg(short, long, env = "LLMPROXY_LISTEN", value_name = "ADDR")]
    listen: Option<SocketAddr>,

    /// Single-backend mode: the translator kind to use (e.g. openresponses).
    #[arg(
        long,
        env = "LLMPROXY_BACKEND",
        global = true,
        value_name = "KIND",
        conflicts_with = "config"
    )]
    backend: Option<String>,

    /// Single-backend mode: the upstream base URL, e.g. http://127.0.0.1:11434/v1.
    #[arg(
        long,
        env = "LLMPROXY_BASE_URL",
        global = true,
        value_name = "URL",
        requires = "backend"
    )]
    base_url: Option<String>,

    /// Single-backend mode: model globs to serve, comma-separated.
    #[arg(
        long,
        env = "LLMPROXY_MODELS",
        global = true,
        value_name = "GLOBS",
        default_value = "*",
        value_delimiter = ','
    )]
    models: Vec<String>,

    /// Single-backend mode: name of the environment variable holding the
    /// upstream API key, sent as `Authorization: Bearer <key>`.
    #[arg(
        long,
        env = "LLMPROXY_UPSTREAM_KEY_ENV",
        global = true,
        value_name = "VAR",
        requires = "backend"
    )]
    api_key_env: Option<String>,

    /// Single-backend mode: send no upstream credentials (for servers that
    /// need no key; the openai kind otherwise reads OPENAI_API_KEY).
    #[arg(
        long,
        requires = "backend",
        conflicts_with = "api_key_env",
        global = true
    )]
    no_api_key: bool,

    /// Single-backend mode, gcp-vertex: the Google Cloud project.
    #[arg(
        long,
        env = "GOOGLE_CLOUD_PROJECT",
        value_name = "PROJECT",
        global = true
    )]
    project: Option<String>,

    /// Single-backend mode, gcp-vertex: the Vertex AI location (e.g. us-east5, global).
    #[arg(long, env = "VERTEX_LOCATION", value_name = "LOCATION", global = true)]
    location: Option<String>,

    /// Single-backend mode: a translator setting, KEY=VALUE (VALUE is read as
    /// TOML when it parses, else as a string). Repeatable.
    #[arg(
        long = "setting",
        value_name = "KEY=VALUE",
        requires = "backend",
        global = true
    )]
    settings: Vec<String>,

    /// Check the configuration (including translator settings and
    /// credentials), print a summary and exit.
    #[arg(long)]
    check_config: bool,

    /// Log format: `text` (default) or `json` (one JSON object per line).
    /// Every request is logged once at info (target `llmproxy::request`)
    /// with id, model, backend, status, latency, upstream latency and token
    /// usage.
    #[arg(
        long,
        env = "LLMPROXY_LOG_FORMAT",
        value_name = "FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Dry run of a backend's translator, offline: print the upstream request
    /// the proxy would send for REQUEST (credentials shown as [redacted]),
    /// and with --response what a recorded upstream answer becomes, in
    /// canonical (Responses) and in the client's format. Uses the config or
    /// backend flags (before or after `translate`); sends nothing anywhere.
    Translate {
        /// The client's request: a JSON file (Chat Completions with
        /// `messages`, or Responses with `input`); `-` reads stdin.
        #[arg(value_name = "REQUEST")]
        request: PathBuf,
        /// Use this model instead of the request's `model`.
        #[arg(long)]
        model: Option<String>,
        /// A recorded upstream answer: a JSON body, or an SSE stream.
        #[arg(long, value_name = "FILE")]
        response: Option<PathBuf>,
        /// The HTTP status of the recorded answer.
        #[arg(long, default_value_t = 200, requires = "response")]
        status: u16,
    },
}

fn main() -> anyhow::Result<()> {
    let started = Instant::now();
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches)?;
    init_logging(
        if cli.command.is_some() {
            "warn"
        } else {
            "info"
        },
        cli.log_format,
    );
    let from_flag = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
    // A dry run reads no secrets: it checks the config with placeholders.
    let config = build_config(&cli, &from_flag, cli.command.is_none())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match cli.command {
        Some(Command::Translate {
            request,
            model,
            response,
            status,
        }) => runtime.block_on(translate(config, &request, model, response, status)),
        None => runtime.block_on(run(config, &cli, started)),
    }
}

fn init_logging(default: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let logger = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| Scrubbed(std::io::stderr()));
    match format {
        LogFormat::Text => logger.init(),
        LogFormat::Json => logger.json().flatten_event(true).init(),
    }
}

/// A log writer that removes every secret the process holds from each line
/// (the formatter writes one event per `write`) before it reaches stderr.
struct Scrubbed(std::io::Stderr);

impl std::io::Write for Scrubbed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0
            .write_all(llmproxy::redact::redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// The config from --config, or the single backend described by flags.
fn build_config(
    cli: &Cli,
    from_flag: &dyn Fn(&str) -> bool,
    check: bool,
) -> anyhow::Result<Config> {
    let mut config = match (&cli.config, &cli.backend) {
        (Some(path), _) if check => Config::from_file(path)?,
        (Some(path), _) => Config::read_file(path)?,
        (None, Some(kind)) => single_backend(cli, kind, from_flag, check)?,
        (None, None) => bail!(
            "nothing to serve: pass --config FILE (or LLMPROXY_CONFIG), or --backend KIND \
             (or LLMPROXY_BACKEND) with --base-url; see --help"
        ),
    };
    if let Some(listen) = cli.listen {
        config.server.listen = listen;
    }
    match std::env::var("LLMPROXY_API_KEY") {
        Ok(key) if key.trim().is_empty() => {
            bail!(
                "LLMPROXY_API_KEY is set but empty: set it to the key clients must send, or unset it"
            )
        }
        Ok(key) => config.server.api_key = Some(Secret::new(key.trim())),
        Err(_) => {}
    }
    Ok(config)
}

fn single_backend(
    cli: &Cli,
    kind: &str,
    from_flag: &dyn Fn(&str) -> bool,
    check: bool,
) -> anyhow::Result<Config> {
    let mut settings = toml::Table::new();
    for (flag, key, value) in [
        ("project", "project", &cli.project),
        ("location", "location", &cli.location),
    ] {
        let Some(value) = value else { continue };
        if kind == "gcp-vertex" {
            settings.insert(key.into(), toml::Value::String(value.clone()));
        } else if from_flag(flag) {
            bail!("--{flag} only applies to --backend gcp-vertex");
        }
    }
    for setting in &cli.settings {
        let Some((key, value)) = setting.split_once('=') else {
            bail!("--setting {setting:?} must look like KEY=VALUE");
        };
        let value = toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.to_string()));
        settings.insert(key.trim().to_string(), value);
    }
    let auth = match (&cli.api_key_env, cli.no_api_key) {
        (Some(var), _) => Some(AuthConfig::Key {
            header: None,
            source: KeySource::Env(var.clone()),
        }),
        (None, true) => Some(AuthConfig::None),
        (None, false) => None,
    };
    let mut backend = BackendConfig::new(kind, kind).with_models(cli.models.clone());
    backend.base_url = cli.base_url.clone();
    backend.auth = auth;
    backend.settings = settings;
    let config = Config::default().with_backend(backend);
    if check {
        config.check()?;
    }
    Ok(config)
}

/// `llmproxy translate`: prints the dry run's findings.
async fn translate(
    config: Config,
    request: &std::path::Path,
    model: Option<String>,
    response: Option<PathBuf>,
    status: u16,
) -> anyhow::Result<()> {
    let read = |path: &std::path::Path| -> anyhow::Result<Vec<u8>> {
        if path == std::path::Path::new("-") {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
                .context("cannot read the request from stdin")?;
            return Ok(buf);
        }
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    };
    let recorded = match &response {
        Some(path) => Some(llmproxy::Recorded {
            status,
            body: read(path)?,
        }),
        None => None,
    };
    let input = llmproxy::DryRunInput {
        request: read(request)?,
        model,
        recorded,
    };
    let run = llmproxy::dry_run(config, input).await?;
    let pretty = |body: &[u8]| match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_default(),
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    match &run.upstream {
        Some(call) => {
            println!("=== upstream request\n{} {}", call.method, call.url);
            for (name, value) in &call.headers {
                println!("{name}: {value}");
            }
            println!("\n{}\n", pretty(&call.body));
        }
        None => println!("=== no upstream request: the proxy refused the request\n"),
    }
    if response.is_some() && run.canonical.is_empty() && run.upstream.is_some() {
        println!(
            "=== no canonical form: the upstream speaks the client's API, so the request and its answer passed through\n"
        );
    }
    if response.is_some() && !run.canonical.is_empty() {
        match run.canonical.as_slice() {
            [one] if one.get("object").is_some() => {
                println!(
                    "=== canonical response (Responses)\n{}\n",
                    pretty(one.to_string().as_bytes())
                );
            }
            events => {
                println!("=== canonical events (Responses)");
                for event in events {
                    println!("{event}");
                }
                println!();
            }
        }
    }
    if let Some(client) = &run.client {
        println!(
            "=== {} client gets HTTP {} ({})\n{}",
            client.format,
            client.status,
            client.content_type,
            if client.content_type.starts_with("application/json") {
                pretty(client.body.as_bytes())
            } else {
                client.body.trim_end().to_string()
            }
        );
    }
    if run.upstream.is_none() {
        bail!("the proxy would send nothing upstream for this request");
    }
    Ok(())
}

async fn run(mut config: Config, cli: &Cli, started: Instant) -> anyhow::Result<()> {
    let listen = config.server.listen;
    let server = config.server.clone();
    let grace = config.server.shutdown_timeout_secs;
    let summary = summary(&config);
    let auth = config.server.api_key.is_some();
    let watched = watched_files(&config);
    if cli.check_config
        && config.responses.store == StoreKind::Disk
        && let Some(path) = config.responses.path.take()
    {
        // The file belongs to the running proxy (one process per file):
        // check only that it can be created.
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        if dir.is_some_and(|d| !d.is_dir()) {
            bail!(
                "responses.path = {}: the directory does not exist",
                path.display()
            );
        }
        config.responses.store = StoreKind::Memory;
    }
    // Connections are capped below the open-files limit: as high as the
    // system lets this process go.
    if let Some(files) = llmproxy::raise_open_files_limit() {
        tracing::debug!("open files limit: {files}");
    }
    let proxy = Proxy::new(config).await?;
    if cli.check_config {
        println!("config OK");
        for line in &summary {
            println!("  backend {line}");
        }
        return Ok(());
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr().unwrap_or(listen);
    for line in &summary {
        tracing::info!("backend {line}");
    }
    tracing::info!(
        "listening on http://{addr} (client auth {}), ready in {} ms",
        if auth { "on" } else { "off" },
        started.elapsed().as_millis()
    );
    let proxy = ReloadableProxy::new(proxy);
    if let Some(path) = cli.config.clone() {
        tokio::spawn(reload_on_change(
            proxy.clone(),
            path,
            cli.listen,
            listen,
            watched,
        ));
    }
    let signalled = std::sync::Arc::new(tokio::sync::Notify::new());
    let on_signal = {
        let (proxy, signalled) = (proxy.clone(), signalled.clone());
        async move {
            let name = shutdown_signal().await;
            tracing::info!(
                "{name}: shutting down; finishing in-flight requests for up to {grace:.0} s"
            );
            proxy.drain();
            signalled.notify_one();
        }
    };
    if let Some(metrics_addr) = server.metrics_listen {
        let metrics = tokio::net::TcpListener::bind(metrics_addr)
            .await
            .with_context(|| format!("cannot listen on {metrics_addr} (server.metrics_listen)"))?;
        let addr = metrics.local_addr().unwrap_or(metrics_addr);
        tracing::info!("metrics on http://{addr}/metrics");
        let (router, config) = (proxy.metrics_router(), server.clone());
        tokio::spawn(async move {
            if let Err(e) = llmproxy::serve(metrics, router, &config, std::future::pending()).await
            {
                tracing::error!("metrics listener: {e}");
            }
        });
    }
    let serve = llmproxy::serve(listener, proxy.router(), &server, on_signal);
    tokio::pin!(serve);
    tokio::select! {
        served = &mut serve => served.context("server error")?,
        () = async {
            signalled.notified().await;
            tokio::time::sleep(std::time::Duration::from_secs_f64(grace)).await;
        } => {
            tracing::warn!("shutdown deadline reached: ending the requests still running");
            proxy.cut_off();
            // Let the streams write their final event.
            match tokio::time::timeout(std::time::Duration::from_secs(5), &mut serve).await {
                Ok(served) => served.context("server error")?,
                Err(_) => tracing::warn!("connections still open after the deadline; closing them"),
            }
        }
    }
    // The spans of the last requests go out before the process does.
    let flush = proxy.current();
    if tokio::time::timeout(std::time::Duration::from_secs(5), flush.flush_traces())
        .await
        .is_err()
    {
        tracing::warn!("the OpenTelemetry collector took over 5 s; the last spans are lost");
    }
    tracing::info!("shut down");
    Ok(())
}

/// One line per backend: name, translator, models.
fn summary(config: &Config) -> Vec<String> {
    config
        .backends
        .iter()
        .map(|b| {
            format!(
                "{} ({}) <- {}",
                b.name,
                b.translator_name(),
                b.models.join(", ")
            )
        })
        .collect()
}

/// How often the config file and translator files are checked for changes.
const WATCH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// The files a config depends on: itself and its translator files.
fn watched_files(config: &Config) -> Vec<PathBuf> {
    config
        .backends
        .iter()
        .filter_map(|b| b.translator.as_ref().map(|t| t.path.clone()))
        .collect()
}

/// What a file looks like from outside: modification time and size.
type Stamp = Vec<Option<(std::time::SystemTime, u64)>>;

fn stamp(files: &[PathBuf]) -> Stamp {
    files
        .iter()
        .map(|f| {
            let meta = std::fs::metadata(f).ok()?;
            Some((meta.modified().ok()?, meta.len()))
        })
        .collect()
}

/// Reloads the config file (and the translators it names) on SIGHUP and
/// whenever one of those files changes. A config that fails to load is
/// logged and the running one keeps serving.
async fn reload_on_change(
    proxy: ReloadableProxy,
    path: PathBuf,
    listen_flag: Option<SocketAddr>,
    listening: SocketAddr,
    translators: Vec<PathBuf>,
) {
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut files: Vec<PathBuf> = std::iter::once(path.clone()).chain(translators).collect();
    let mut seen = stamp(&files);
    let mut tick = tokio::time::interval(WATCH_INTERVAL);
    loop {
        #[cfg(unix)]
        let signal = async {
            match &mut hangup {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let signal = std::future::pending::<Option<()>>();
        let why = tokio::select! {
            _ = signal => "SIGHUP",
            _ = tick.tick() => {
                let now = stamp(&files);
                if now == seen {
                    continue;
                }
                seen = now;
                "a changed file"
            }
        };
        let config = match Config::from_file(&path) {
            Ok(mut c) => {
                if let Some(listen) = listen_flag {
                    c.server.listen = listen;
                }
                if let Some(key) = std::env::var("LLMPROXY_API_KEY")
                    .ok()
                    .filter(|k| !k.trim().is_empty())
                {
                    c.server.api_key = Some(Secret::new(key.trim()));
                }
                c
            }
            Err(e) => {
                tracing::error!("reload ({why}) failed, still serving the previous config: {e}");
                continue;
            }
        };
        files = std::iter::once(path.clone())
            .chain(watched_files(&config))
            .collect();
        seen = stamp(&files);
        if config.server.listen != listening {
            tracing::warn!(
                "server.listen changed to {}; still listening on {listening} until restarted",
                config.server.listen
            );
        }
        let lines = summary(&config);
        match proxy.reload(config).await {
            Ok(()) => {
                tracing::info!("reloaded {} ({why})", path.display());
                for line in &lines {
                    tracing::info!("backend {line}");
                }
            }
            Err(e) => {
                tracing::error!("reload ({why}) failed, still serving the previous config: {e}");
            }
        }
    }
}

/// Waits for SIGTERM or SIGINT and names it.
async fn shutdown_signal() -> &'static str {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => "SIGINT",
        _ = term => "SIGTERM",
    }
}
