//! llmproxy's endpoints inside an existing axum application, beside its own
//! routes: `/llm/v1/responses`, `/llm/v1/chat/completions`, ... next to `/`.
//! The application's own routes need no key; the proxy's do.
//!
//! ```sh
//! LLMPROXY_CONFIG=llmproxy.toml APP_KEY=secret cargo run --example mount
//! curl localhost:3000/llm/v1/models -H "Authorization: Bearer secret"
//! ```

use llmproxy::{Config, Proxy};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::var("LLMPROXY_CONFIG").unwrap_or_else(|_| "llmproxy.toml".into());
    let mut config = Config::from_file(path.as_ref())?;
    if let Ok(key) = std::env::var("APP_KEY") {
        config = config.with_api_key(key);
    }
    let server = config.server.clone();
    let proxy = Proxy::new(config).await?;
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { "my application" }))
        .nest("/llm", proxy.router());
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    // Served as the llmproxy binary serves: TCP_NODELAY, and the config's
    // [server] deadlines and connection cap for the whole application.
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    llmproxy::serve(listener, app, &server, shutdown).await?;
    Ok(())
}
