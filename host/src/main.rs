//! The `llmproxy` binary: command line, logging, and the HTTP server.

use anyhow::{Context as _, bail};
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};
use llmproxy::{BackendConfig, Config, Proxy, Secret};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

/// An OpenAI-format LLM proxy with sandboxed WebAssembly translators.
///
/// Serves POST /v1/responses, GET /v1/models and GET /healthz. Run it with a
/// config file (--config) for several backends routed by model glob, or with
/// --backend KIND for a single backend serving every model.
///
/// Clients must send `Authorization: Bearer <key>` when LLMPROXY_API_KEY is
/// set. Logging follows RUST_LOG (default: info).
#[derive(Debug, Parser)]
#[command(version, max_term_width = 100)]
struct Cli {
    /// TOML config file (see llmproxy.example.toml).
    #[arg(short, long, env = "LLMPROXY_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Address to listen on [default: the config's server.listen, else 0.0.0.0:8080].
    #[arg(short, long, env = "LLMPROXY_LISTEN", value_name = "ADDR")]
    listen: Option<SocketAddr>,

    /// Single-backend mode: the translator kind to use (e.g. openresponses).
    #[arg(
        long,
        env = "LLMPROXY_BACKEND",
        value_name = "KIND",
        conflicts_with = "config"
    )]
    backend: Option<String>,

    /// Single-backend mode: the upstream base URL, e.g. http://127.0.0.1:11434/v1.
    #[arg(
        long,
        env = "LLMPROXY_BASE_URL",
        value_name = "URL",
        requires = "backend"
    )]
    base_url: Option<String>,

    /// Single-backend mode: model globs to serve, comma-separated.
    #[arg(
        long,
        env = "LLMPROXY_MODELS",
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
        value_name = "VAR",
        requires = "backend"
    )]
    api_key_env: Option<String>,

    /// Single-backend mode: send no upstream credentials (for servers that
    /// need no key; the openai kind otherwise reads OPENAI_API_KEY).
    #[arg(long, requires = "backend", conflicts_with = "api_key_env")]
    no_api_key: bool,

    /// Single-backend mode, gcp-vertex: the Google Cloud project.
    #[arg(long, env = "GOOGLE_CLOUD_PROJECT", value_name = "PROJECT")]
    project: Option<String>,

    /// Single-backend mode, gcp-vertex: the Vertex AI location (e.g. us-east5, global).
    #[arg(long, env = "VERTEX_LOCATION", value_name = "LOCATION")]
    location: Option<String>,

    /// Single-backend mode: a translator setting, KEY=VALUE (VALUE is read as
    /// TOML when it parses, else as a string). Repeatable.
    #[arg(long = "setting", value_name = "KEY=VALUE", requires = "backend")]
    settings: Vec<String>,

    /// Check the configuration (including translator settings and
    /// credentials), print a summary and exit.
    #[arg(long)]
    check_config: bool,
}

fn main() -> anyhow::Result<()> {
    let started = Instant::now();
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches)?;
    init_logging();
    let from_flag = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
    let config = build_config(&cli, &from_flag)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run(config, cli.check_config, started))
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// The config from --config, or the single backend described by flags.
fn build_config(cli: &Cli, from_flag: &dyn Fn(&str) -> bool) -> anyhow::Result<Config> {
    let mut config = match (&cli.config, &cli.backend) {
        (Some(path), _) => Config::from_file(path)?,
        (None, Some(kind)) => single_backend(cli, kind, from_flag)?,
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
        (Some(var), _) => {
            let mut table = toml::Table::new();
            table.insert("bearer_env".into(), toml::Value::String(var.clone()));
            Some(toml::Value::Table(table))
        }
        (None, true) => Some(toml::Value::String("none".into())),
        (None, false) => None,
    };
    let config = Config {
        backends: vec![BackendConfig {
            name: kind.to_string(),
            kind: kind.to_string(),
            models: cli.models.clone(),
            base_url: cli.base_url.clone(),
            auth,
            headers: Default::default(),
            model_map: Default::default(),
            settings,
            connect_timeout_secs: None,
            first_byte_timeout_secs: None,
            idle_timeout_secs: None,
            total_timeout_secs: None,
        }],
        ..Config::default()
    };
    config.check()?;
    Ok(config)
}

async fn run(config: Config, check_only: bool, started: Instant) -> anyhow::Result<()> {
    let listen = config.server.listen;
    let summary: Vec<String> = config
        .backends
        .iter()
        .map(|b| format!("{} ({}) <- {}", b.name, b.kind, b.models.join(", ")))
        .collect();
    let auth = config.server.api_key.is_some();
    let proxy = Proxy::new(config).await?;
    if check_only {
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
    axum::serve(listener, proxy.router())
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("server error")?;
    tracing::info!("shut down");
    Ok(())
}

async fn shutdown_signal() {
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
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
