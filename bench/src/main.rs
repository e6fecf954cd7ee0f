//! `just bench`: llmproxy side by side with the floor (the mock called
//! directly), a plain reverse-proxy hop, LiteLLM and the Portkey gateway,
//! all on one mock
//! upstream, interleaved in one run. Prints Markdown tables and writes them
//! to BENCHMARKS.md.
//!
//! ```text
//! llmproxy-bench run [--quick] [--no-litellm] [--no-portkey] [--out FILE]
//! llmproxy-bench mock --port P [--latency-ms N] [--chunks N] [--chunk-delay-ms N]
//! llmproxy-bench relay --port P --upstream HOST:PORT
//! llmproxy-bench load --url URL [--model M] [--kib N] [--tools] [--secs S] [--rate R | --concurrency C]
//! ```
//!
//! `load` drives one server with Chat requests, for profiling it (e.g. under
//! `perf record -p`): open loop at `--rate` (prints percentiles) or closed
//! loop with `--concurrency` clients (prints requests per second).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod load;
mod mock;
mod relay;
mod report;
mod soak;

use hyper::body::Incoming;
use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

/// Serves HTTP/1.1 on `listener` with `handler`, one task per connection.
pub async fn serve_http<F, Fut, B>(listener: tokio::net::TcpListener, handler: F)
where
    F: Fn(http::Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<http::Response<B>, Infallible>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(handler);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match args.first().map(String::as_str) {
        Some("mock") => runtime.block_on(async {
            let port: u16 = arg(&args, "--port").unwrap_or(0);
            let knobs = mock::Knobs {
                latency: Duration::from_millis(arg(&args, "--latency-ms").unwrap_or(0)),
                chunks: arg(&args, "--chunks").unwrap_or(20),
                chunk_delay: Duration::from_millis(arg(&args, "--chunk-delay-ms").unwrap_or(0)),
            };
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .expect("bind");
            mock::serve(listener, knobs).await;
        }),
        Some("relay") => runtime.block_on(async {
            let port: u16 = arg(&args, "--port").unwrap_or(0);
            let upstream: String = arg(&args, "--upstream").expect("--upstream HOST:PORT");
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .expect("bind");
            relay::serve(listener, upstream).await;
        }),
        Some("load") => runtime.block_on(async {
            let url: String = arg(&args, "--url").expect("--url URL");
            let model: String = arg(&args, "--model").unwrap_or_else(|| "gpt-4o".into());
            let kib: usize = arg(&args, "--kib").unwrap_or(1);
            let secs: u32 = arg(&args, "--secs").unwrap_or(10);
            let target = load::Target {
                url,
                body: report::chat_body(&model, kib, args.iter().any(|a| a == "--tools"), false),
                headers: Vec::new(),
            };
            let client = load::client();
            if let Some(rate) = arg::<u32>(&args, "--rate") {
                let run = load::fixed_rate(&client, &target, rate, secs).await;
                println!(
                    "{rate} RPS: p50 {:?} p90 {:?} p99 {:?}, {} errors {:?}",
                    run.percentile(0.5),
                    run.percentile(0.9),
                    run.percentile(0.99),
                    run.errors,
                    run.first_error
                );
            } else {
                let concurrency = arg(&args, "--concurrency").unwrap_or(32);
                let (rps, errors) =
                    load::max_rps(&client, &target, concurrency, u64::from(secs)).await;
                println!("{rps:.0} requests/s, {errors} errors");
            }
        }),
        Some("soak") => runtime.block_on(soak::run(soak::Options {
            secs: arg(&args, "--secs").unwrap_or(600),
            rate: arg(&args, "--rate").unwrap_or(300),
            streams: arg(&args, "--streams").unwrap_or(1000),
        })),
        Some("run") => runtime.block_on(report::run(report::Options {
            quick: args.iter().any(|a| a == "--quick"),
            litellm: !args.iter().any(|a| a == "--no-litellm"),
            portkey: !args.iter().any(|a| a == "--no-portkey"),
            out: arg(&args, "--out").unwrap_or_else(|| "BENCHMARKS.md".into()),
        })),
        _ => {
            eprintln!(
                "usage: llmproxy-bench run [--quick] [--no-litellm] [--no-portkey] [--out FILE] | mock --port P [--latency-ms N] [--chunks N] [--chunk-delay-ms N] | relay --port P --upstream HOST:PORT | load --url URL [--model M] [--kib N] [--tools] [--secs S] [--rate R | --concurrency C] | soak [--secs S] [--rate R] [--streams N]"
            );
            std::process::exit(2);
        }
    }
}
