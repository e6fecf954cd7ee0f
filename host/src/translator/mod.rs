//! The Wasm host: one engine, translators compiled once and pre-instantiated,
//! a sandboxed instance per client request.
//!
//! Isolation: a client request runs in one instance (a `Store` with its own
//! linear memory, from an `InstancePre`); a stream keeps its instance for
//! the stream's life. For a custom translator it is a fresh instance each
//! time, so nothing survives from one request to the next. The bundled
//! translators - which keep no state between requests - reuse warm
//! instances instead (a small pool per translator, an instance that grew
//! large not kept): that saves the setup and the first call's page faults,
//! at the price that memory a request freed is not cleared before the next
//! (`Limits::reuse`; the README's "Custom translators" says when to opt in).
//! Each store has a memory cap, each call an epoch deadline; a trap or an
//! exceeded limit poisons that instance - it is discarded, never reused -
//! and fails only that request.
//! Translators get WASI with nothing granted: no environment, arguments,
//! files, sockets or stdin; what they print to stderr is captured (bounded)
//! and logged when a call fails.

pub(crate) mod budget;
mod engine_config;

use crate::error::Error;
use crate::metrics::Metrics;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::component::{Component, Linker, ResourceAny, ResourceTable};
use wasmtime::{Engine, ResourceLimiter, Store};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

#[allow(missing_debug_implementations, clippy::all)]
mod bindings {
    wasmtime::component::bindgen!({
        world: "translator-component",
        path: "wit",
        exports: { default: async },
    });
}

use bindings::exports::llmproxy::translator::translator as wit;
pub use wit::{Api, Context, Media, Passthrough, UpstreamRequest, UpstreamResponse};

/// Why a translator could not be loaded, when a config loads.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoadError {
    /// The Wasm engine could not be set up.
    #[error("{0}")]
    Engine(String),
    /// The translator (bundled kind or file) is unusable.
    #[error("translator {name}: {detail}")]
    Translator { name: String, detail: String },
    /// The translator refused the backend's settings.
    #[error("settings rejected by the {translator} translator: {message}")]
    Settings { translator: String, message: String },
}

/// What `request` produced: the upstream request, or the URLs the
/// translator needs downloaded first (`error::needs-media`).
#[derive(Debug)]
pub(crate) enum Requested {
    Ready(UpstreamRequest),
    NeedsMedia(Vec<String>),
}

/// The WIT interface every translator must export, at this exact version.
pub(crate) const INTERFACE: &str = "llmproxy:translator/translator";
/// The contract version this host implements.
pub const CONTRACT_VERSION: &str = "0.3.0";

/// How often the epoch ticks; call deadlines are counted in ticks.
const TICK: Duration = Duration::from_millis(5);
/// Bytes of linear memory kept resident in a pooled slot between instances.
const KEEP_RESIDENT: usize = 2 << 20;
/// Bytes of a translator's stderr kept for the log.
const STDERR_CAPTURE: usize = 4096;

include!(concat!(env!("OUT_DIR"), "/bundled.rs"));

/// A translator built into the binary.
#[derive(Debug)]
pub(crate) struct Bundled {
    pub kind: &'static str,
    pub wasm: &'static [u8],
    pub cwasm: &'static [u8],
}

/// The kinds of the bundled translators.
pub(crate) fn bundled_kinds() -> impl Iterator<Item = &'static str> {
    BUNDLED.iter().map(|b| b.kind)
}

/// Sandbox limits for one translator.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub memory_bytes: usize,
    pub call_timeout: Duration,
    /// Reuse warm instances across requests.
    pub reuse: bool,
}

/// The engine shared by all translators of one proxy, and its epoch ticker.
pub(crate) struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    _ticker: Ticker,
    /// Where the translators' call times and faults are counted.
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").finish_non_exhaustive()
    }
}

impl Runtime {
    /// The metrics the translators (and their backends) count in.
    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Creates the engine: pooling allocator sized for `max_instances`
    /// concurrent instances of at most `max_memory_bytes` each.
    pub(crate) fn new(
        max_instances: u32,
        max_memory_bytes: usize,
        metrics: Arc<Metrics>,
    ) -> Result<Self, LoadError> {
        let mut pooling = wasmtime::PoolingAllocationConfig::new();
        pooling
            .total_component_instances(max_instances)
            // A Rust component has a few core instances (main module and
            // adapter shims); other languages have more.
            .total_core_instances(max_instances.saturating_mul(8))
            .total_memories(max_instances.saturating_mul(2))
            .total_tables(max_instances.saturating_mul(8))
            .total_stacks(max_instances)
            .max_memory_size(max_memory_bytes)
            // Reset a reused slot by zeroing the pages the last instance
            // touched (found with PAGEMAP_SCAN on Linux >= 6.7) instead of
            // handing them back to the OS: the next instance then takes no
            // page faults. Measured with `just bench`.
            .pagemap_scan(wasmtime::Enabled::Auto)
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(64 * 1024);
        let mut config = engine_config::code_config();
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pooling));
        let engine = Engine::new(&config)
            .map_err(|e| LoadError::Engine(format!("cannot create the Wasm engine: {e:#}")))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| LoadError::Engine(format!("cannot link WASI: {e:#}")))?;
        let ticker = Ticker::start(engine.clone());
        Ok(Runtime {
            engine,
            linker,
            _ticker: ticker,
            metrics,
        })
    }

    /// Loads a bundled translator: the precompiled artifact when this machine
    /// can run it, else compiles the embedded `.wasm` (slow, logged).
    pub(crate) fn load_bundled(&self, kind: &str, limits: Limits) -> Result<Translator, LoadError> {
        self.load_bundled_with(kind, limits, true)
    }

    /// [`Runtime::load_bundled`], optionally skipping the precompiled
    /// artifact (to measure what it saves).
    pub(crate) fn load_bundled_with(
        &self,
        kind: &str,
        limits: Limits,
        precompiled: bool,
    ) -> Result<Translator, LoadError> {
        let bundled =
            BUNDLED
                .iter()
                .find(|b| b.kind == kind)
                .ok_or_else(|| LoadError::Translator {
                    name: format!("{kind:?}"),
                    detail: "no such bundled translator".into(),
                })?;
        let loaded = if precompiled {
            // SAFETY: `cwasm` was produced by `Engine::precompile_component`
            // in this crate's build script, from a committed translator
            // built from this repository's `plugins/`, with the code
            // settings of `engine_config` (or is empty, after a cross build
            // wasmtime could not precompile for); wasmtime checks version,
            // target and settings and refuses a mismatch.
            #[allow(unsafe_code)]
            unsafe {
                Component::deserialize(&self.engine, bundled.cwasm)
            }
        } else {
            Err(wasmtime::Error::msg("precompiled artifact not requested"))
        };
        let component = match loaded {
            Ok(c) => {
                release_pages(bundled.cwasm);
                c
            }
            Err(e) => {
                tracing::warn!(
                    translator = kind,
                    "precompiled translator not usable here ({e:#}); compiling it"
                );
                Component::new(&self.engine, bundled.wasm).map_err(|e| LoadError::Translator {
                    name: format!("{kind:?}"),
                    detail: format!("cannot compile it: {e:#}"),
                })?
            }
        };
        self.prepare(kind, &component, limits)
    }

    /// Loads a translator component file: checks its SHA-256 against
    /// `sha256` when pinned, compiles it and checks its contract.
    pub(crate) fn load_file(
        &self,
        path: &std::path::Path,
        sha256: Option<&str>,
        limits: Limits,
    ) -> Result<Translator, LoadError> {
        let shown = path.display();
        let fail = |detail: String| LoadError::Translator {
            name: shown.to_string(),
            detail,
        };
        let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
        if let Some(want) = sha256 {
            let got = sha256_hex(&bytes);
            if !got.eq_ignore_ascii_case(want) {
                return Err(fail(format!(
                    "its SHA-256 is {got}, but the config pins {want}: the file changed; if the new file is trusted, update translator.sha256"
                )));
            }
        }
        if !bytes.starts_with(b"\0asm") {
            return Err(fail("not a WebAssembly file".into()));
        }
        if bytes.get(4..8) == Some(&[1, 0, 0, 0]) {
            return Err(fail(
                "a core WebAssembly module, not a component: build for wasm32-wasip2 (cargo build --target wasm32-wasip2) or wrap it with `wasm-tools component new`".into(),
            ));
        }
        let component = Component::new(&self.engine, &bytes)
            .map_err(|e| fail(format!("not a valid component: {e:#}")))?;
        // Clients see errors naming the file, not where it lives.
        let name = path
            .file_name()
            .unwrap_or(path.as_os_str())
            .to_string_lossy();
        self.prepare(&name, &component, limits)
    }

    /// Checks that `component` exports the translator interface at this
    /// host's version and pre-instantiates it.
    fn prepare(
        &self,
        name: &str,
        component: &Component,
        limits: Limits,
    ) -> Result<Translator, LoadError> {
        let wanted = format!("{INTERFACE}@{CONTRACT_VERSION}");
        let ty = component.component_type();
        let exports: Vec<String> = ty
            .exports(&self.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        if !exports.contains(&wanted) {
            let found = exports.iter().find(|e| e.starts_with(INTERFACE));
            let detail = match found {
                Some(other) => format!(
                    "it exports {other}, but this llmproxy supports {wanted}; rebuild it \
                     against llmproxy-sdk {CONTRACT_VERSION}"
                ),
                None => format!(
                    "it does not export {wanted} (exports: {}); is it an llmproxy translator?",
                    if exports.is_empty() {
                        "none".to_string()
                    } else {
                        exports.join(", ")
                    }
                ),
            };
            return Err(LoadError::Translator {
                name: format!("{name:?}"),
                detail,
            });
        }
        let pre = self
            .linker
            .instantiate_pre(component)
            .map_err(|e| LoadError::Translator {
                name: format!("{name:?}"),
                detail: format!("it needs imports this host does not grant: {e:#}"),
            })?;
        let pre =
            bindings::TranslatorComponentPre::new(pre).map_err(|e| LoadError::Translator {
                name: format!("{name:?}"),
                detail: format!("{e:#}"),
            })?;
        // The epoch may tick right after a call starts, so one tick more
        // than the timeout spans guarantees the call at least its budget.
        let ticks = limits.call_timeout.as_nanos().div_ceil(TICK.as_nanos()) + 1;
        Ok(Translator {
            name: name.into(),
            pre,
            limits,
            deadline_ticks: u64::try_from(ticks).unwrap_or(u64::MAX),
            warm: limits.reuse.then(std::sync::Mutex::default),
            metrics: self.metrics.clone(),
        })
    }
}

/// SHA-256 of `bytes`, in lowercase hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Takes the binary's pages holding `bytes`, a precompiled translator that
/// wasmtime has just copied out, out of the process's resident set: about
/// 2.5 MB per loaded translator that would otherwise count against the
/// proxy's memory for as long as it runs (measured with `just bench`).
#[cfg(target_os = "linux")]
fn release_pages(bytes: &'static [u8]) {
    // SAFETY: sysconf has no preconditions.
    #[allow(unsafe_code)]
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    let start = (bytes.as_ptr() as usize).next_multiple_of(page);
    let end = (bytes.as_ptr() as usize + bytes.len()) / page * page;
    if end > start {
        // SAFETY: the whole pages in [start, end) lie inside `bytes`, a
        // read-only static in the binary's private file mapping that nothing
        // writes to. MADV_DONTNEED drops them from this process; a later read
        // (a reload) faults them back in from the file, unchanged.
        #[allow(unsafe_code)]
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn release_pages(_: &'static [u8]) {}

/// Increments the engine's epoch every [`TICK`] until dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Ticker {
    fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let spawned = std::thread::Builder::new()
            .name("llmproxy-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    engine.increment_epoch();
                }
            });
        if let Err(e) = spawned {
            // Without a ticker, deadlines never fire; calls still run.
            tracing::error!("cannot start the translator deadline thread: {e}");
        }
        Ticker { stop }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Per-store host state: an empty WASI context and the store's limits.
struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
    stderr: MemoryOutputPipe,
    /// Epoch ticks the running call has left.
    ticks_left: u64,
}

/// Gives the next call into the store `ticks` epoch ticks.
fn arm(store: &mut Store<HostState>, ticks: u64) {
    store.data_mut().ticks_left = ticks;
    store.set_epoch_deadline(1);
}

/// Caps linear memory (and tables) and remembers whether the cap was hit,
/// so that the resulting trap can be reported as what it is.
struct Limiter {
    memory_bytes: usize,
    hit: bool,
    /// The linear memory the instance has grown to.
    size: usize,
}

/// Most table elements one instance may have.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.hit = true;
            return Err(wasmtime::Error::msg("translator memory limit exceeded"));
        }
        self.size = self.size.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A loaded translator, ready to instantiate.
pub(crate) struct Translator {
    name: String,
    pre: bindings::TranslatorComponentPre<HostState>,
    limits: Limits,
    deadline_ticks: u64,
    /// Instances kept warm between requests; `None`: a fresh instance for
    /// every request.
    warm: Option<std::sync::Mutex<Vec<Live>>>,
    metrics: Arc<Metrics>,
}

/// Most instances of one translator kept warm.
const MAX_WARM: usize = 16;
/// An instance whose linear memory grew beyond this is not kept warm (a
/// large request's memory is handed back, not held while idle).
const MAX_WARM_MEMORY: usize = 8 << 20;

/// A live instance: its store and its exports.
struct Live {
    store: Store<HostState>,
    bindings: bindings::TranslatorComponent,
}

impl std::fmt::Debug for Translator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Translator")
            .field("name", &self.name)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Translator {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The linear memory one instance may use.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.limits.memory_bytes
    }

    /// An instance for one client request: a warm one when the translator
    /// reuses instances and one is idle, else a fresh one.
    pub(crate) async fn instantiate(self: &Arc<Self>) -> Result<Instance, Error> {
        let warm = self
            .warm
            .as_ref()
            .and_then(|w| w.lock().ok().and_then(|mut idle| idle.pop()));
        let live = match warm {
            Some(live) => live,
            None => self.fresh().await?,
        };
        Ok(Instance {
            live: Some(live),
            translator: self.clone(),
            poisoned: false,
        })
    }

    /// Keeps `live` warm for a later request, if the translator reuses
    /// instances, the pool has room and the instance stayed small.
    fn give_back(&self, mut live: Live) {
        let Some(warm) = &self.warm else { return };
        if live.store.data().limiter.size > MAX_WARM_MEMORY {
            return;
        }
        live.store.data_mut().limiter.hit = false;
        if let Ok(mut idle) = warm.lock()
            && idle.len() < MAX_WARM
        {
            idle.push(live);
        }
    }

    /// A fresh, isolated instance.
    async fn fresh(self: &Arc<Self>) -> Result<Live, Error> {
        let stderr = MemoryOutputPipe::new(STDERR_CAPTURE);
        let wasi = WasiCtx::builder()
            .stdout(stderr.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let mut store = Store::new(
            self.pre.engine(),
            HostState {
                wasi,
                table: ResourceTable::new(),
                limiter: Limiter {
                    memory_bytes: self.limits.memory_bytes,
                    hit: false,
                    size: 0,
                },
                stderr,
                ticks_left: self.deadline_ticks,
            },
        );
        store.limiter(|s| &mut s.limiter);
        // Each tick past a call's start yields to the executor (so a
        // spinning translator does not hold a worker thread) until the
        // call's budget is spent; then the call traps.
        store.epoch_deadline_callback(|mut ctx| {
            let state = ctx.data_mut();
            if state.ticks_left <= 1 {
                return Ok(wasmtime::UpdateDeadline::Interrupt);
            }
            state.ticks_left -= 1;
            Ok(wasmtime::UpdateDeadline::YieldCustom(
                1,
                Box::pin(tokio::task::yield_now()),
            ))
        });
        arm(&mut store, self.deadline_ticks);
        let bindings = self.pre.instantiate_async(&mut store).await.map_err(|e| {
            if e.is::<wasmtime::PoolConcurrencyLimitError>() {
                Error::Overloaded(
                    "too many requests in flight: every translator instance is busy \
                     (the limit is translators.max_instances); retry shortly"
                        .into(),
                )
            } else {
                self.fault(&store, "could not be instantiated", &e)
            }
        })?;
        Ok(Live { store, bindings })
    }

    /// Asks the translator whether it accepts a backend's settings, and
    /// which client APIs that backend's upstream speaks itself.
    pub(crate) async fn configure(
        self: &Arc<Self>,
        settings: &str,
    ) -> Result<Vec<Passthrough>, LoadError> {
        let fault = |e: Error| LoadError::Translator {
            name: format!("{:?}", self.name),
            detail: e.to_string(),
        };
        let mut instance = self.instantiate().await.map_err(fault)?;
        let live = instance.live().map_err(fault)?;
        let guest = live.bindings.llmproxy_translator_translator();
        arm(&mut live.store, self.deadline_ticks);
        match guest.call_configure(&mut live.store, settings).await {
            Ok(Ok(passthrough)) => Ok(passthrough),
            Ok(Err(message)) => Err(LoadError::Settings {
                translator: self.name.clone(),
                message,
            }),
            Err(e) => Err(fault(instance.trap("trapped while checking settings", &e))),
        }
    }

    /// Describes a trap or limit hit as a translator fault.
    fn fault(&self, store: &Store<HostState>, what: &str, e: &wasmtime::Error) -> Error {
        let (kind, detail) = match e.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::Interrupt) => (
                "timeout",
                format!(
                    "exceeded its time limit of {} ms",
                    self.limits.call_timeout.as_millis()
                ),
            ),
            _ if store.data().limiter.hit => (
                "memory",
                format!(
                    "exceeded its memory limit of {} MiB",
                    self.limits.memory_bytes / (1024 * 1024)
                ),
            ),
            _ => ("trap", format!("{what}: {}", first_line(&format!("{e:#}")))),
        };
        self.metrics.translator_fault(&self.name, kind);
        let captured = store.data().stderr.contents();
        if captured.is_empty() {
            tracing::warn!(translator = %self.name, "translator fault: {detail}");
        } else {
            tracing::warn!(
                translator = %self.name,
                stderr = %crate::redact::redact(&String::from_utf8_lossy(&captured)),
                "translator fault: {detail}"
            );
        }
        Error::Translator {
            translator: self.name.clone(),
            detail,
        }
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// One sandboxed instance serving one client request. Dropped after a
/// request that went well, it goes back to its translator's warm pool (if
/// the translator keeps one); after a fault it is discarded.
pub(crate) struct Instance {
    /// `None` once given back.
    live: Option<Live>,
    translator: Arc<Translator>,
    poisoned: bool,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("translator", &self.translator.name)
            .finish_non_exhaustive()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(live) = self.live.take()
            && !self.poisoned
        {
            self.translator.give_back(live);
        }
    }
}

impl Instance {
    /// The live instance, unless a fault poisoned it.
    fn live(&mut self) -> Result<&mut Live, Error> {
        match &mut self.live {
            Some(live) if !self.poisoned => {
                arm(&mut live.store, self.translator.deadline_ticks);
                Ok(live)
            }
            _ => Err(Error::Translator {
                translator: self.translator.name.clone(),
                detail: "called again after a fault".into(),
            }),
        }
    }

    /// Counts a call's time (started at `started`), and records it as a
    /// span of a traced request (an error when it `trapped`).
    fn timed(&self, call: &'static str, started: std::time::Instant, trapped: bool) {
        self.translator
            .metrics
            .translator_call(&self.translator.name, call, started.elapsed());
        if let Some(trace) = crate::telemetry::current() {
            use crate::telemetry::Value;
            trace.child(
                None,
                format!("translator {call}"),
                crate::telemetry::Kind::Internal,
                started,
                vec![
                    (
                        "llmproxy.translator",
                        Value::from(self.translator.name.as_str()),
                    ),
                    ("llmproxy.translator.call", Value::from(call)),
                ],
                trapped,
            );
        }
    }

    /// A trap or limit hit: the instance is discarded.
    fn trap(&mut self, what: &str, e: &wasmtime::Error) -> Error {
        self.poisoned = true;
        match &self.live {
            Some(live) => self.translator.fault(&live.store, what, e),
            None => Error::Translator {
                translator: self.translator.name.clone(),
                detail: what.into(),
            },
        }
    }

    /// `request`: canonical Responses request -> upstream request.
    pub(crate) async fn request(&mut self, ctx: &Context, body: &[u8]) -> Result<Requested, Error> {
        let started = std::time::Instant::now();
        let live = self.live()?;
        let guest = live.bindings.llmproxy_translator_translator();
        let result = guest.call_request(&mut live.store, ctx, body).await;
        self.timed("request", started, result.is_err());
        match result {
            Ok(Ok(request)) => Ok(Requested::Ready(request)),
            Ok(Err(wit::Error::NeedsMedia(urls))) => Ok(Requested::NeedsMedia(urls)),
            Ok(Err(e)) => Err(self.guest_error(e)),
            Err(e) => Err(self.trap("trapped in request", &e)),
        }
    }

    /// `adapt`: a client's request in an API the upstream speaks itself ->
    /// the upstream request. What the translator notes on stderr (features
    /// it left out) is logged at debug level.
    pub(crate) async fn adapt(
        &mut self,
        ctx: &Context,
        api: Api,
        body: &[u8],
    ) -> Result<Requested, Error> {
        let started = std::time::Instant::now();
        let live = self.live()?;
        let noted = live.store.data().stderr.contents().len();
        let guest = live.bindings.llmproxy_translator_translator();
        let result = guest.call_adapt(&mut live.store, ctx, api, body).await;
        let notes = live.store.data().stderr.contents();
        self.timed("adapt", started, result.is_err());
        if notes.len() > noted && tracing::enabled!(tracing::Level::DEBUG) {
            let notes = String::from_utf8_lossy(&notes[noted..]);
            tracing::debug!(
                translator = %self.translator.name,
                backend = %ctx.backend,
                "adapted: {}",
                crate::redact::redact(notes.trim())
            );
        }
        match result {
            Ok(Ok(request)) => Ok(Requested::Ready(request)),
            Ok(Err(wit::Error::NeedsMedia(urls))) => Ok(Requested::NeedsMedia(urls)),
            Ok(Err(e)) => Err(self.guest_error(e)),
            Err(e) => Err(self.trap("trapped in adapt", &e)),
        }
    }

    /// `response`: complete upstream response -> canonical Responses JSON.
    pub(crate) async fn response(
        &mut self,
        ctx: &Context,
        state: &str,
        response: &UpstreamResponse,
    ) -> Result<Vec<u8>, Error> {
        let started = std::time::Instant::now();
        let live = self.live()?;
        let guest = live.bindings.llmproxy_translator_translator();
        let result = guest
            .call_response(&mut live.store, ctx, state, response)
            .await;
        self.timed("response", started, result.is_err());
        match result {
            Ok(result) => result.map_err(|e| self.guest_error(e)),
            Err(e) => Err(self.trap("trapped in response", &e)),
        }
    }

    /// Turns this instance into a stream mapper for one upstream event stream.
    pub(crate) async fn into_stream(
        mut self,
        ctx: &Context,
        state: &str,
        status: u16,
        headers: &[(String, String)],
    ) -> Result<StreamInstance, Error> {
        let live = self.live()?;
        let guest = live.bindings.llmproxy_translator_translator();
        let headers = headers.to_vec();
        match guest
            .event_stream()
            .call_constructor(&mut live.store, ctx, state, status, &headers)
            .await
        {
            Ok(resource) => Ok(StreamInstance {
                instance: self,
                resource: Some(resource),
            }),
            Err(e) => Err(self.trap("trapped starting a stream", &e)),
        }
    }

    fn guest_error(&self, e: wit::Error) -> Error {
        let translator = &self.translator.name;
        match e {
            wit::Error::InvalidRequest(info) => Error::InvalidRequest {
                message: info.message,
                param: info.param,
                code: info.code,
            },
            wit::Error::Unsupported(info) => Error::Unsupported {
                message: info.message,
                param: info.param,
                code: info.code,
            },
            wit::Error::Upstream(up) => Error::Upstream {
                status: up.status,
                message: up.message,
                error_type: up.error_type,
                code: up.code,
                param: up.param,
                retry_after: up.retry_after,
            },
            wit::Error::Internal(detail) => Error::Translator {
                translator: translator.clone(),
                detail,
            },
            wit::Error::NeedsMedia(_) => Error::Translator {
                translator: translator.clone(),
                detail: "asked for media outside `request`".into(),
            },
        }
    }
}

/// An instance mapping one upstream event stream; lives as long as the
/// stream. Closed after the stream's end, it can serve another request;
/// dropped before, it is discarded (its guest still holds the stream).
pub(crate) struct StreamInstance {
    instance: Instance,
    /// `None` once closed.
    resource: Option<ResourceAny>,
}

impl std::fmt::Debug for StreamInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.instance.fmt(f)
    }
}

impl Drop for StreamInstance {
    fn drop(&mut self) {
        if self.resource.is_some() {
            self.instance.poisoned = true;
        }
    }
}

impl StreamInstance {
    pub(crate) fn translator(&self) -> &str {
        &self.instance.translator.name
    }

    fn resource(&self) -> Result<ResourceAny, Error> {
        self.resource.ok_or_else(|| Error::Translator {
            translator: self.instance.translator.name.clone(),
            detail: "called after its stream was closed".into(),
        })
    }

    /// Maps one upstream SSE event to canonical events (JSON texts).
    pub(crate) async fn push(&mut self, event: &str, data: &str) -> Result<Vec<String>, Error> {
        let resource = self.resource()?;
        let inst = &mut self.instance;
        let live = inst.live()?;
        let guest = live.bindings.llmproxy_translator_translator();
        match guest
            .event_stream()
            .call_push(&mut live.store, resource, event, data)
            .await
        {
            Ok(result) => result.map_err(|e| inst.guest_error(e)),
            Err(e) => Err(inst.trap("trapped in push", &e)),
        }
    }

    /// The upstream stream ended: the events still owed.
    pub(crate) async fn finish(&mut self) -> Result<Vec<String>, Error> {
        let resource = self.resource()?;
        let inst = &mut self.instance;
        let live = inst.live()?;
        let guest = live.bindings.llmproxy_translator_translator();
        match guest
            .event_stream()
            .call_finish(&mut live.store, resource)
            .await
        {
            Ok(result) => result.map_err(|e| inst.guest_error(e)),
            Err(e) => Err(inst.trap("trapped in finish", &e)),
        }
    }

    /// The stream is over: the guest drops its state, and the instance can
    /// serve another request.
    pub(crate) async fn close(mut self) {
        let Some(resource) = self.resource.take() else {
            return;
        };
        let inst = &mut self.instance;
        let Ok(live) = inst.live() else { return };
        if resource.resource_drop_async(&mut live.store).await.is_err() {
            inst.poisoned = true;
        }
    }
}
