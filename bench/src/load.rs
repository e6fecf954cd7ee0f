//! The load generator: open-loop requests at a fixed rate (latency counted
//! from when each request was due, so a stall is not hidden), closed-loop
//! maximum throughput, and stream timing.

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// One kind of request to one server.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub body: Bytes,
    pub headers: Vec<(&'static str, String)>,
}

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(4096)
        .build(connector)
}

/// The request `target` describes.
fn request(target: &Target) -> Result<Request<Full<Bytes>>, String> {
    let mut request = Request::post(&target.url).header("content-type", "application/json");
    for (name, value) in &target.headers {
        request = request.header(*name, value);
    }
    request
        .body(Full::new(target.body.clone()))
        .map_err(|e| e.to_string())
}

/// Sends `target` once and reads the whole answer; `Err` for a failure or
/// a status other than 200.
pub async fn send(client: &HttpClient, target: &Target) -> Result<Bytes, String> {
    let response = client
        .request(request(target)?)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if status != 200 {
        return Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&body)));
    }
    Ok(body)
}

/// Latencies of a run, and how many requests failed.
#[derive(Debug, Clone, Default)]
pub struct Run {
    pub latencies: Vec<Duration>,
    pub errors: usize,
    pub first_error: Option<String>,
}

impl Run {
    pub fn percentile(&self, p: f64) -> Duration {
        let mut t = self.latencies.clone();
        t.sort();
        if t.is_empty() {
            return Duration::ZERO;
        }
        t[(((t.len() - 1) as f64) * p).round() as usize]
    }
}

/// Open loop: `rate` requests per second for `secs` seconds. A dedicated
/// thread paces the requests with the OS clock (tokio's timer ticks in whole
/// milliseconds, which would add up to 1 ms of lateness to every request)
/// and hands each one to the runtime when it is due.
pub async fn fixed_rate(client: &HttpClient, target: &Target, rate: u32, secs: u32) -> Run {
    let total = rate * secs;
    let (client, target) = (client.clone(), target.clone());
    let runtime = tokio::runtime::Handle::current();
    let tasks = tokio::task::spawn_blocking(move || {
        let start = std::time::Instant::now() + Duration::from_millis(20);
        let mut tasks = Vec::with_capacity(total as usize);
        for i in 0..total {
            let due = start + Duration::from_secs_f64(f64::from(i) / f64::from(rate));
            if let Some(wait) = due.checked_duration_since(std::time::Instant::now()) {
                std::thread::sleep(wait);
            }
            let (client, target) = (client.clone(), target.clone());
            tasks.push(runtime.spawn(async move {
                let result = send(&client, &target).await;
                (due.elapsed(), result.err())
            }));
        }
        tasks
    })
    .await
    .unwrap_or_default();
    let mut run = Run::default();
    for task in tasks {
        match task.await {
            Ok((latency, None)) => run.latencies.push(latency),
            Ok((_, Some(e))) => {
                run.errors += 1;
                run.first_error.get_or_insert(e);
            }
            Err(e) => {
                run.errors += 1;
                run.first_error.get_or_insert(e.to_string());
            }
        }
    }
    run
}

/// Closed loop: `concurrency` clients back to back for `secs` seconds;
/// returns completed requests per second and the errors.
pub async fn max_rps(
    client: &HttpClient,
    target: &Target,
    concurrency: usize,
    secs: u64,
) -> (f64, usize) {
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, target, done, errors) =
                (client.clone(), target.clone(), done.clone(), errors.clone());
            tokio::spawn(async move {
                while Instant::now() < end {
                    match send(&client, &target).await {
                        Ok(_) => done.fetch_add(1, Ordering::Relaxed),
                        Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.await;
    }
    let secs = start.elapsed().as_secs_f64();
    (
        done.load(Ordering::Relaxed) as f64 / secs,
        errors.load(Ordering::Relaxed) as usize,
    )
}

/// One streamed request: time to the first frame carrying `token`, to the
/// end, and how many times `token` arrived.
pub async fn stream_once(
    client: &HttpClient,
    target: &Target,
    token: &str,
) -> Result<(Duration, Duration, usize), String> {
    let start = Instant::now();
    let response = client
        .request(request(target)?)
        .await
        .map_err(|e| e.to_string())?;
    if response.status() != 200 {
        return Err(format!("HTTP {}", response.status()));
    }
    let mut body = response.into_body();
    let (mut first, mut count, mut tail) = (None, 0, Vec::<u8>::new());
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        // Count tokens across frame boundaries.
        tail.extend_from_slice(data);
        let text = String::from_utf8_lossy(&tail).into_owned();
        let found = text.matches(token).count();
        if found > 0 && first.is_none() {
            first = Some(start.elapsed());
        }
        count += found;
        let keep = text.rfind(token).map_or(0, |i| i + token.len());
        tail.drain(..keep.min(tail.len()));
    }
    Ok((first.unwrap_or_default(), start.elapsed(), count))
}

/// Opens a streamed request and returns its body once the first piece has
/// arrived (the stream stays open while the body is kept).
pub async fn open_stream(
    client: &HttpClient,
    target: &Target,
) -> Result<hyper::body::Incoming, String> {
    let response = client
        .request(request(target)?)
        .await
        .map_err(|e| e.to_string())?;
    let mut body = response.into_body();
    match body.frame().await {
        Some(Ok(_)) => Ok(body),
        other => Err(format!("no first piece: {other:?}")),
    }
}
