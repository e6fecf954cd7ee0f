//! Startup of the real `llmproxy` binary (bundled translators, precompiled),
//! side by side with the process floor: spawn to `/healthz` 200 and spawn to
//! the first proxied response, against an in-process OpenResponses upstream.
//!
//! Run with `just bench` (or `cargo bench -p llmproxy --bench startup`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_llmproxy");

/// A minimal upstream answering every request with one Responses object.
fn fake_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                let mut got = Vec::new();
                // Read the head and the body announced by content-length.
                loop {
                    let n = match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got);
                    if let Some(head_end) = text.find("\r\n\r\n") {
                        let len = text[..head_end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if got.len() >= head_end + 4 + len {
                            break;
                        }
                    }
                }
                let body = r#"{"id":"resp_1","object":"response","created_at":1,"status":"completed","model":"m","output":[{"type":"message","id":"msg_1","status":"completed","role":"assistant","content":[{"type":"output_text","text":"hi","annotations":[]}]}]}"#;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(reply.as_bytes());
            });
        }
    });
    addr
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends one HTTP/1.1 request; returns the status code, if any.
fn http(port: u16, request: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(request.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_whitespace().nth(1)?.parse().ok()
}

/// Spawns the proxy and returns (time to /healthz 200, time to first
/// proxied 200).
fn one_start(upstream: SocketAddr) -> (Duration, Duration) {
    let port = free_port();
    let start = Instant::now();
    let mut child = Command::new(BIN)
        .args([
            "--backend",
            "openresponses",
            "--base-url",
            &format!("http://{upstream}/v1"),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let healthz = "GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
    let ready = loop {
        if http(port, healthz) == Some(200) {
            break start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "proxy did not start"
        );
        std::thread::sleep(Duration::from_micros(200));
    };
    let body = r#"{"model":"m","input":"hi"}"#;
    let post = format!(
        "POST /v1/responses HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(http(port, &post), Some(200));
    let first = start.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    (ready, first)
}

fn main() {
    let upstream = fake_upstream();
    let runs = 30;
    let floor = common::time("`llmproxy --version` (process floor)", 2, runs, || {
        let ok = Command::new(BIN)
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok);
    });
    one_start(upstream);
    let (mut ready, mut first) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let (r, f) = one_start(upstream);
        ready.push(r);
        first.push(f);
    }
    common::table(
        &format!(
            "llmproxy startup ({runs} runs, openresponses backend, binary {})",
            BIN
        ),
        &[
            floor,
            common::Sample {
                name: "spawn → GET /healthz 200 (ready)".into(),
                times: ready,
            },
            common::Sample {
                name: "spawn → first proxied POST /v1/responses 200".into(),
                times: first,
            },
        ],
    );
}
