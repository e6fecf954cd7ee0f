//! Serving connections: the accept loop, a cap on open connections, and the
//! deadlines that keep slow or idle clients - authenticated or not - from
//! holding the server.
//!
//! Each connection is in one of three phases, and its reads are bounded by
//! the phase's deadline (`[server]`):
//!
//! - waiting for its first request: `header_read_timeout_secs` from the
//!   moment it was accepted, until the whole request head has arrived;
//! - waiting for the next request (keep-alive): `idle_timeout_secs`, then
//!   `header_read_timeout_secs` from its first byte;
//! - serving a request (until its response has been sent): no read
//!   deadline; the handler bounds the body (`body_timeout_secs`) and the
//!   upstream timeouts bound the rest.
//!
//! A write that makes no progress for `write_timeout_secs` (a client that
//! stopped reading) ends the connection too. Connections speak HTTP/1.1
//! only, so each holds at most one request (and one upstream connection). At `max_connections` the
//! connection idle longest is closed to make room (connections serving a
//! request are never closed); when none is idle, new connections wait in the
//! listen backlog until one ends.

use crate::config::ServerConfig;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::time::{Instant, Sleep};
use tower_service::Service;

/// The most connections the automatic cap allows.
const AUTO_CAP_MAX: u64 = 10_000;
/// File descriptors kept for everything but client connections (upstream
/// connections are counted with each client connection).
const RESERVED_FILES: u64 = 128;

/// The connection limits of `[server]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionLimits {
    pub header_read: Duration,
    pub idle: Duration,
    pub write: Duration,
    pub max_connections: usize,
}

impl ConnectionLimits {
    pub(crate) fn of(server: &ServerConfig) -> Self {
        let secs = Duration::from_secs_f64;
        ConnectionLimits {
            header_read: secs(server.header_read_timeout_secs),
            idle: secs(server.idle_timeout_secs),
            write: secs(server.write_timeout_secs),
            max_connections: server
                .max_connections
                .map(|n| n as usize)
                .unwrap_or_else(auto_cap),
        }
    }
}

/// The cap when `max_connections` is not set: half of the open-files
/// limit left after [`RESERVED_FILES`] (each client connection may hold an
/// upstream connection too), at most [`AUTO_CAP_MAX`].
fn auto_cap() -> usize {
    let files = open_files_limit().unwrap_or(1024);
    let cap = (files.saturating_sub(RESERVED_FILES) / 2).clamp(16, AUTO_CAP_MAX);
    usize::try_from(cap).unwrap_or(1024)
}

/// The soft limit on open files.
#[cfg(target_os = "linux")]
fn open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit struct, which `limit` is.
    #[allow(unsafe_code)]
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    ok.then_some(limit.rlim_cur)
}

#[cfg(not(target_os = "linux"))]
fn open_files_limit() -> Option<u64> {
    None
}

/// Raises the soft limit on open files to the hard limit, as servers do;
/// returns the limit now in force. The `llmproxy` binary calls this at
/// startup.
#[cfg(target_os = "linux")]
pub fn raise_open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit struct, which `limit` is;
    // setrlimit reads one.
    #[allow(unsafe_code)]
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return Some(raised.rlim_cur);
            }
        }
    }
    Some(limit.rlim_cur)
}

/// Raises the soft limit on open files (nothing to do on this platform).
#[cfg(not(target_os = "linux"))]
pub fn raise_open_files_limit() -> Option<u64> {
    None
}

/// Where a connection is in its life (see the module docs).
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for a request since `since`: the first one (since it was
    /// accepted) or the next one.
    Waiting { since: Instant, first: bool },
    /// A request head is arriving; its deadline counts from `since`.
    Head { since: Instant },
    /// Serving requests.
    Busy,
}

/// One open connection, shared by its IO, its service and the tracker.
#[derive(Debug)]
struct Conn {
    /// Requests whose response has not been sent completely.
    in_flight: AtomicUsize,
    phase: Mutex<Phase>,
    /// Told to close (to make room, or at shutdown).
    closing: AtomicBool,
    close: Notify,
    /// A request ended (or a stalled write moved on): the read deadline is
    /// armed at the connection's next flush, in its own task, rather than
    /// by waking it.
    rearm: AtomicBool,
    /// A write is waiting for the client to read: the last response may
    /// still be on its way, so the connection is not idle.
    writing: AtomicBool,
}

impl Conn {
    fn new() -> Self {
        Conn {
            in_flight: AtomicUsize::new(0),
            phase: Mutex::new(Phase::Waiting {
                since: Instant::now(),
                first: true,
            }),
            closing: AtomicBool::new(false),
            close: Notify::new(),
            rearm: AtomicBool::new(false),
            writing: AtomicBool::new(false),
        }
    }

    fn phase(&self) -> Phase {
        match self.phase.lock() {
            Ok(p) => *p,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }

    fn set_phase(&self, f: impl FnOnce(Phase) -> Phase) {
        let mut phase = match self.phase.lock() {
            Ok(p) => p,
            Err(poisoned) => poisoned.into_inner(),
        };
        *phase = f(*phase);
    }

    /// Bytes arrived: a waiting connection starts reading a request head.
    fn bytes_arrived(&self) {
        self.set_phase(|phase| match phase {
            // The first request's head counts from the accept.
            Phase::Waiting { since, first: true } => Phase::Head { since },
            Phase::Waiting { first: false, .. } => Phase::Head {
                since: Instant::now(),
            },
            other => other,
        });
    }

    /// When reads must have completed, if they are bounded now (a stalled
    /// write is bounded by `write_timeout_secs` instead).
    fn read_deadline(&self, limits: &ConnectionLimits) -> Option<Instant> {
        if self.writing.load(Ordering::SeqCst) {
            return None;
        }
        match self.phase() {
            Phase::Waiting { since, first: true } => Some(since + limits.header_read),
            Phase::Waiting {
                since,
                first: false,
            } => Some(since + limits.idle),
            Phase::Head { since } => Some(since + limits.header_read),
            Phase::Busy => None,
        }
    }

    /// Since when it has been idle (`None` while it serves a request).
    fn idle_since(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::SeqCst) > 0 || self.writing.load(Ordering::SeqCst) {
            return None;
        }
        match self.phase() {
            Phase::Waiting { since, .. } | Phase::Head { since } => Some(since),
            Phase::Busy => None,
        }
    }
}

/// Counts a request in flight from its head until its response is sent.
#[derive(Debug)]
struct InFlight(Arc<Conn>);

impl InFlight {
    fn start(conn: &Arc<Conn>) -> InFlight {
        conn.in_flight.fetch_add(1, Ordering::SeqCst);
        conn.set_phase(|_| Phase::Busy);
        InFlight(conn.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.set_phase(|_| Phase::Waiting {
                since: Instant::now(),
                first: false,
            });
            // The reader may be waiting without a deadline: the flush that
            // follows the response's end arms one (see `Guarded`).
            self.0.rearm.store(true, Ordering::SeqCst);
        }
    }
}

/// A response body that keeps its request counted until it is sent.
struct Tracked {
    body: axum::body::Body,
    _in_flight: InFlight,
}

impl http_body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

fn timed_out(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, what.to_string())
}

/// A client connection whose reads and writes are bounded (module docs).
struct Guarded {
    io: TcpStream,
    conn: Arc<Conn>,
    limits: ConnectionLimits,
    read_timer: Pin<Box<Sleep>>,
    read_armed: Option<Instant>,
    write_timer: Pin<Box<Sleep>>,
    /// Since when writes have made no progress.
    write_stalled: Option<Instant>,
}

impl Guarded {
    fn new(io: TcpStream, conn: Arc<Conn>, limits: ConnectionLimits) -> Self {
        let far = Instant::now() + Duration::from_secs(86400 * 365);
        Guarded {
            io,
            conn,
            limits,
            read_timer: Box::pin(tokio::time::sleep_until(far)),
            read_armed: None,
            write_timer: Box::pin(tokio::time::sleep_until(far)),
            write_stalled: None,
        }
    }

    /// Arms the read timer for the connection's current deadline, with the
    /// task's waker; whether it has passed.
    fn arm(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(deadline) = self.conn.read_deadline(&self.limits) else {
            return false;
        };
        if self.read_armed != Some(deadline) {
            self.read_timer.as_mut().reset(deadline);
            self.read_armed = Some(deadline);
        }
        self.read_timer.as_mut().poll(cx).is_ready()
    }

    /// A write returned `result`: tracks stalls and ends one that lasts.
    fn wrote(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<std::io::Result<usize>>,
    ) -> Poll<std::io::Result<usize>> {
        match result {
            Poll::Pending => {
                if self.write_stalled.is_none() {
                    let now = Instant::now();
                    self.write_stalled = Some(now);
                    self.write_timer.as_mut().reset(now + self.limits.write);
                    self.conn.writing.store(true, Ordering::SeqCst);
                }
                match self.write_timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(timed_out(
                        "the client read nothing for write_timeout_secs",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
            done => {
                if self.write_stalled.take().is_some() {
                    self.conn.writing.store(false, Ordering::SeqCst);
                    self.conn.rearm.store(true, Ordering::SeqCst);
                }
                done
            }
        }
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.conn.bytes_arrived();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                if this.arm(cx) {
                    return Poll::Ready(Err(timed_out(
                        "no complete request within header_read_timeout_secs / idle_timeout_secs",
                    )));
                }
                Poll::Pending
            }
            failed => failed,
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_write(cx, buf);
        this.wrote(cx, result)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.wrote(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let flushed = Pin::new(&mut this.io).poll_flush(cx);
        // hyper flushes after every response: the moment to arm the read
        // deadline of a connection that went idle, without an extra wakeup.
        if this.conn.rearm.swap(false, Ordering::SeqCst) && this.arm(cx) {
            // Already past: let the reader see it.
            cx.waker().wake_by_ref();
        }
        flushed
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// The open connections.
#[derive(Debug, Default)]
struct Tracker {
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    next: AtomicU64,
    /// Told whenever a connection ends.
    ended: Notify,
}

impl Tracker {
    fn conns(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        match self.conns.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn add(&self) -> (u64, Arc<Conn>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn::new());
        self.conns().insert(id, conn.clone());
        (id, conn)
    }

    fn remove(&self, id: u64) {
        self.conns().remove(&id);
        self.ended.notify_waiters();
    }

    fn len(&self) -> usize {
        self.conns().len()
    }

    /// Connections told to close that are still idle: about to end.
    fn closing(&self) -> usize {
        self.conns()
            .values()
            .filter(|c| c.closing.load(Ordering::SeqCst) && c.idle_since().is_some())
            .count()
    }

    /// Tells the connection idle longest to close; false if none is idle.
    fn evict_idle(&self) -> bool {
        let conns = self.conns();
        let victim = conns
            .values()
            .filter(|c| !c.closing.load(Ordering::SeqCst))
            .filter_map(|c| c.idle_since().map(|since| (since, c)))
            .min_by_key(|(since, _)| *since);
        match victim {
            Some((_, conn)) => {
                conn.closing.store(true, Ordering::SeqCst);
                conn.close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// A connection's place in the tracker, given up when dropped.
struct Entry(Arc<Tracker>, u64);

impl Drop for Entry {
    fn drop(&mut self) {
        self.0.remove(self.1);
    }
}

/// Serves `router` on `listener` with the connection limits of `server`
/// (see [the module docs](self)) until `shutdown` completes; then stops
/// accepting, lets the requests in flight finish, and returns when every
/// connection has ended.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    server: &ServerConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let limits = ConnectionLimits::of(server);
    let tracker = Arc::new(Tracker::default());
    let (stop, stopping) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    tracing::info!(
        "accepting at most {} connections at once (server.max_connections)",
        limits.max_connections
    );
    // When the house was last said to be full of busy connections (at most
    // once a minute).
    let mut said_full: Option<Instant> = None;
    'accept: loop {
        // Room for one more connection.
        while tracker.len() >= limits.max_connections {
            let ended = tracker.ended.notified();
            let mut ended = pin!(ended);
            ended.as_mut().enable();
            if tracker.len() - tracker.closing() < limits.max_connections {
                // One already told to close makes the room.
            } else if tracker.evict_idle() {
                tracing::debug!(
                    "{} connections open (server.max_connections): closing the one idle longest",
                    limits.max_connections
                );
            } else if said_full.is_none_or(|at| at.elapsed() > Duration::from_secs(60)) {
                said_full = Some(Instant::now());
                tracing::warn!(
                    "{} connections open, all serving requests (server.max_connections): new connections wait",
                    limits.max_connections
                );
            }
            // A connection told to close may have turned busy (it then
            // finishes its request first): look again soon.
            tokio::select! {
                () = ended => {}
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
                () = &mut shutdown => break 'accept,
            }
        }
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, or a connection reset before it
                // was accepted: wait a little rather than spin.
                tracing::warn!("cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Streamed answers are many small writes: without TCP_NODELAY each
        // waits for the client's delayed ACK (40 ms stalls between events).
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
        let (id, conn) = tracker.add();
        let task = connection(stream, conn, limits, router.clone(), stopping.clone());
        // Removed when the task ends, also by a panic.
        let entry = Entry(tracker.clone(), id);
        tokio::spawn(async move {
            let _entry = entry;
            task.await;
        });
    }
    drop(listener);
    let _ = stop.send(true);
    loop {
        let ended = tracker.ended.notified();
        let mut ended = pin!(ended);
        ended.as_mut().enable();
        if tracker.len() == 0 {
            return Ok(());
        }
        ended.await;
    }
}

/// Serves one connection until it ends, is told to close, or the server
/// stops (then it finishes the request in flight first).
async fn connection(
    stream: TcpStream,
    conn: Arc<Conn>,
    limits: ConnectionLimits,
    router: Router,
    mut stopping: watch::Receiver<bool>,
) {
    let service_conn = conn.clone();
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let in_flight = InFlight::start(&service_conn);
        let mut router = router.clone();
        async move {
            std::future::poll_fn(|cx| {
                Service::<hyper::Request<Incoming>>::poll_ready(&mut router, cx)
            })
            .await?;
            let response = router.call(request).await?;
            Ok::<_, Infallible>(response.map(|body| {
                axum::body::Body::new(Tracked {
                    body,
                    _in_flight: in_flight,
                })
            }))
        }
    });
    let io = TokioIo::new(Guarded::new(stream, conn.clone(), limits));
    // HTTP/1.1 only: every client of the proxy speaks it, and one
    // connection is then one request at a time, which the connection cap
    // (and the open-files limit behind it) counts on. An HTTP/2 preface is
    // refused.
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder = builder.http1_only();
    let mut served = pin!(builder.serve_connection_with_upgrades(io, service));
    let mut graceful = false;
    loop {
        tokio::select! {
            result = served.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!("connection ended: {e}");
                }
                return;
            }
            () = conn.close.notified(), if !graceful => {
                if conn.idle_since().is_some() {
                    return;
                }
                served.as_mut().graceful_shutdown();
                graceful = true;
            }
            _ = stopping.wait_for(|stop| *stop), if !graceful => {
                served.as_mut().graceful_shutdown();
                graceful = true;
            }
        }
    }
}
