//! `llmproxy-bench soak`: one llmproxy instance under (1) 1000 concurrent
//! streams that each run to their end, then (2) a steady mixed load for
//! minutes, sampling its memory. Prints tables; not part of `just bench`.

use crate::load::{self, Run};
use crate::mock::TOKEN;
use crate::report::{
    chat_body, openai_backend, rss_mib, spawn_self, start_llmproxy, target, vertex_backend,
    write_config,
};
use bytes::Bytes;
use serde_json::json;
use std::time::{Duration, Instant};

pub struct Options {
    pub secs: u32,
    pub rate: u32,
    pub streams: usize,
}

pub async fn run(opts: Options) {
    let exe = std::env::current_exe().unwrap();
    let llmproxy = exe.with_file_name("llmproxy");
    assert!(
        llmproxy.exists(),
        "{} is missing: cargo build --release -p llmproxy",
        llmproxy.display()
    );
    // Streams of 50 events 20 ms apart: each lasts about a second, so that
    // the 1000 overlap.
    let mock = spawn_self(
        &["mock", "--chunks", "50", "--chunk-delay-ms", "20"],
        "the mock",
    )
    .await;
    let dir = std::env::temp_dir().join(format!("llmproxy-soak-{}", std::process::id()));
    let config = write_config(
        &dir,
        2000,
        &[
            openai_backend("chat", mock.port, "gpt-*"),
            vertex_backend(&dir, mock.port),
        ],
    );
    let proxy = start_llmproxy(&llmproxy, &config).await;
    let pid = proxy.child.id();
    let client = load::client();
    let gemini_stream = target(
        proxy.port,
        "/v1/responses",
        Bytes::from(json!({"model": "gemini-2.5-flash", "stream": true, "input": "Write.", "max_output_tokens": 256}).to_string()),
    );
    let claude_stream = target(
        proxy.port,
        "/v1/chat/completions",
        chat_body("claude-sonnet-4-5", 1, false, true),
    );
    let chat = target(
        proxy.port,
        "/v1/chat/completions",
        chat_body("gpt-4o", 5, true, false),
    );
    // Warm up every path.
    for t in [&gemini_stream, &claude_stream, &chat] {
        load::send(&client, t).await.unwrap();
    }
    let idle = rss_mib(pid);

    println!(
        "## {} concurrent streams (Gemini via Responses, Claude via Chat, half each)\n",
        opts.streams
    );
    let started = Instant::now();
    let peak = std::sync::Arc::new(std::sync::Mutex::new(0f64));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                let rss = rss_mib(pid);
                if let Ok(mut p) = peak.lock() {
                    *p = p.max(rss);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let streams: Vec<_> = (0..opts.streams)
        .map(|i| {
            let (client, t) = (
                client.clone(),
                if i % 2 == 0 {
                    gemini_stream.clone()
                } else {
                    claude_stream.clone()
                },
            );
            tokio::spawn(async move { load::stream_once(&client, &t, TOKEN).await })
        })
        .collect();
    let (mut ok, mut short, mut errors, mut first_error) = (0, 0, 0, None);
    for s in streams {
        match s.await {
            Ok(Ok((_, _, tokens))) if tokens >= 50 => ok += 1,
            Ok(Ok((_, _, tokens))) => {
                short += 1;
                first_error.get_or_insert(format!("only {tokens} tokens"));
            }
            Ok(Err(e)) => {
                errors += 1;
                first_error.get_or_insert(e);
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    sampler.abort();
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let peak = peak.lock().map_or(0.0, |p| *p);
    println!(
        "| streams | complete (every token) | cut short | errors | took | RSS before | RSS peak | RSS after |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {ok} | {short} | {errors} | {:.1} s | {idle:.1} MiB | {peak:.1} MiB | {:.1} MiB |",
        opts.streams,
        took.as_secs_f64(),
        rss_mib(pid)
    );
    if let Some(e) = first_error {
        println!("\nfirst problem: {e}");
    }

    println!(
        "\n## Soak: {} s at {} requests/s (a third each: Chat -> openai with 5 KB and tools, Responses stream -> Gemini, Chat stream -> Claude)\n",
        opts.secs, opts.rate
    );
    println!("| minute | requests | errors | p50 | p99 | RSS |");
    println!("|---:|---:|---:|---:|---:|---:|");
    let window = 60u32.min(opts.secs.max(1));
    let per = (opts.rate / 3).max(1);
    let mut total = Run::default();
    let mut samples = Vec::new();
    let mut elapsed = 0;
    while elapsed < opts.secs {
        let (a, b, c) = tokio::join!(
            load::fixed_rate(&client, &chat, per, window),
            load::fixed_rate(&client, &gemini_stream, per, window),
            load::fixed_rate(&client, &claude_stream, per, window),
        );
        let mut run = Run::default();
        for r in [a, b, c] {
            run.latencies.extend(r.latencies);
            run.errors += r.errors;
            if run.first_error.is_none() {
                run.first_error = r.first_error;
            }
        }
        elapsed += window;
        let rss = rss_mib(pid);
        samples.push(rss);
        println!(
            "| {:.0} | {} | {} | {:.1} ms | {:.1} ms | {rss:.1} MiB |",
            f64::from(elapsed) / 60.0,
            run.latencies.len() + run.errors,
            run.errors,
            run.percentile(0.5).as_secs_f64() * 1000.0,
            run.percentile(0.99).as_secs_f64() * 1000.0,
        );
        if let Some(e) = &run.first_error {
            println!("|  | first error: {e} | | | | |");
        }
        total.errors += run.errors;
        total.latencies.extend(run.latencies);
    }
    let (first, last) = (
        samples.first().copied().unwrap_or(0.0),
        samples.last().copied().unwrap_or(0.0),
    );
    let max = samples.iter().copied().fold(0.0, f64::max);
    println!(
        "\n{} requests, {} errors; RSS after the first minute {first:.1} MiB, at the end {last:.1} MiB, highest {max:.1} MiB",
        total.latencies.len() + total.errors,
        total.errors
    );
    let _ = std::fs::remove_dir_all(&dir);
}
