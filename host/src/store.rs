//! Where stored responses live: in memory (the default), in a file (redb),
//! or in Redis/Valkey shared by several proxies. Records are opaque bytes
//! here; the conversation module gives them meaning.
//!
//! Every store forgets a record `ttl` after it was last written or read, so
//! a conversation in use never expires midway.

use crate::config::{ResponsesConfig, StoreKind};
use redb::{ReadableDatabase, ReadableTable};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The store could not be reached or failed; the message is safe to show
/// (it names the store, never its credentials).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub(crate) struct StoreError(pub String);

/// A response store.
#[derive(Debug)]
pub(crate) enum Store {
    /// `store = "off"`: nothing is kept.
    Off,
    Memory(Memory),
    Disk(Arc<Disk>),
    Redis(Redis),
}

impl Store {
    /// Opens the store a config names.
    pub(crate) fn open(config: &ResponsesConfig) -> Result<Store, String> {
        let ttl = Duration::from_secs_f64(config.ttl_secs);
        Ok(match config.store {
            StoreKind::Off => Store::Off,
            StoreKind::Memory => {
                Store::Memory(Memory::new(ttl, config.max_mib as usize * 1024 * 1024))
            }
            StoreKind::Disk => {
                let path = config
                    .path
                    .as_deref()
                    .ok_or("responses.path is required with store = \"disk\"")?;
                Store::Disk(Arc::new(Disk::open(path, ttl)?))
            }
            StoreKind::Redis => Store::Redis(Redis::open(config, ttl)?),
        })
    }

    /// Where responses are kept, for the startup log (no credentials).
    pub(crate) fn describe(&self) -> String {
        match self {
            Store::Off => "not kept ([responses] store = \"off\")".into(),
            Store::Memory(m) => format!(
                "kept in memory (at most {} MiB, {} s after last use)",
                m.cap / (1024 * 1024),
                m.ttl.as_secs_f64()
            ),
            Store::Disk(d) => format!(
                "kept in {} ({} s after last use)",
                d.path.display(),
                d.ttl.as_secs_f64()
            ),
            Store::Redis(r) => format!(
                "kept in Redis at {} ({} s after last use)",
                r.shown,
                r.ttl_ms as f64 / 1000.0
            ),
        }
    }

    /// Drops expired records now and then (every `ttl`, at most a minute
    /// apart), so that nothing outstays it on an idle proxy. Ends when the
    /// store is dropped.
    pub(crate) fn sweep_regularly(store: &Arc<Store>) {
        let every = match &**store {
            Store::Memory(m) => m.ttl,
            Store::Disk(d) => d.ttl,
            Store::Redis(_) | Store::Off => return,
        }
        .clamp(Duration::from_secs(1), Duration::from_secs(60));
        let store = Arc::downgrade(store);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(store) = store.upgrade() else { return };
                let swept = match &*store {
                    Store::Memory(m) => {
                        m.sweep();
                        Ok(())
                    }
                    Store::Disk(d) => {
                        let d = d.clone();
                        blocking(move || d.sweep()).await
                    }
                    Store::Redis(_) | Store::Off => Ok(()),
                };
                if let Err(e) = swept {
                    tracing::warn!("sweeping expired responses: {e}");
                }
            }
        });
    }

    /// Whether responses can be kept at all.
    pub(crate) fn is_on(&self) -> bool {
        !matches!(self, Store::Off)
    }

    /// Keeps `record` under `id` (replacing what was there).
    pub(crate) async fn put(&self, id: &str, record: Vec<u8>) -> Result<(), StoreError> {
        match self {
            Store::Off => Ok(()),
            Store::Memory(m) => m.put(id, record),
            Store::Disk(d) => {
                let (d, id) = (d.clone(), id.to_string());
                blocking(move || d.put(&id, &record)).await
            }
            Store::Redis(r) => r.put(id, record).await,
        }
    }

    /// Follows a chain of records from `id`: each record found, newest
    /// first, until `previous` says there is none before it; and the id
    /// that was missing, if the chain broke. Every record read is kept
    /// another full `ttl`.
    pub(crate) async fn chain(
        &self,
        id: &str,
        previous: fn(&[u8]) -> Option<String>,
    ) -> Result<Chain, StoreError> {
        match self {
            Store::Off => Ok(Chain {
                missing: Some(id.to_string()),
                ..Chain::default()
            }),
            Store::Memory(m) => Ok(walk(id, |id| Ok(m.get(id)), previous)?),
            Store::Disk(d) => {
                let (d, id) = (d.clone(), id.to_string());
                blocking(move || d.chain(&id, previous)).await
            }
            Store::Redis(r) => {
                // One round trip per link: Redis cannot follow them itself.
                let mut chain = Chain::default();
                let mut next = Some(id.to_string());
                while let Some(id) = next {
                    let found = r.get(&id).await?;
                    next = chain.add(id, found, previous);
                }
                Ok(chain)
            }
        }
    }

    /// Forgets `id`; whether it was there.
    pub(crate) async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        match self {
            Store::Off => Ok(false),
            Store::Memory(m) => Ok(m.delete(id)),
            Store::Disk(d) => {
                let (d, id) = (d.clone(), id.to_string());
                blocking(move || d.delete(&id)).await
            }
            Store::Redis(r) => r.delete(id).await,
        }
    }
}

/// Longest chain followed: a guard, far beyond any real conversation.
const MAX_CHAIN: usize = 10_000;

/// Records of a conversation, newest first.
#[derive(Debug, Default)]
pub(crate) struct Chain {
    pub records: Vec<Vec<u8>>,
    /// The id whose record was not found (expired, deleted or never kept).
    pub missing: Option<String>,
    seen: std::collections::HashSet<String>,
}

impl Chain {
    /// Adds what was found for `id`; the id to read next, if any.
    fn add(
        &mut self,
        id: String,
        found: Option<Vec<u8>>,
        previous: fn(&[u8]) -> Option<String>,
    ) -> Option<String> {
        let Some(record) = found else {
            self.missing = Some(id);
            return None;
        };
        let next = previous(&record);
        self.records.push(record);
        self.seen.insert(id);
        match next {
            // A loop, or longer than any real conversation: reported as a
            // break, never followed forever nor silently cut short.
            Some(next) if self.seen.contains(&next) || self.records.len() >= MAX_CHAIN => {
                self.missing = Some(next);
                None
            }
            next => next,
        }
    }
}

fn walk(
    id: &str,
    mut get: impl FnMut(&str) -> Result<Option<Vec<u8>>, StoreError>,
    previous: fn(&[u8]) -> Option<String>,
) -> Result<Chain, StoreError> {
    let mut chain = Chain::default();
    let mut next = Some(id.to_string());
    while let Some(id) = next {
        let found = get(&id)?;
        next = chain.add(id, found, previous);
    }
    Ok(chain)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError(format!("the response store task failed: {e}")))?
}

/// The bounded in-memory store: at most `cap` bytes of records; when full,
/// those used longest ago go first.
#[derive(Debug)]
pub(crate) struct Memory {
    inner: Mutex<MemoryInner>,
    ttl: Duration,
    cap: usize,
}

/// When a record expires, and a sequence number that makes it unique.
type Slot = (Instant, u64);

#[derive(Debug, Default)]
struct MemoryInner {
    records: HashMap<String, (Arc<[u8]>, Slot)>,
    /// Expiry order: the first entry expires (and is evicted) first.
    by_expiry: BTreeMap<Slot, String>,
    bytes: usize,
    seq: u64,
}

impl MemoryInner {
    fn remove(&mut self, id: &str) -> bool {
        match self.records.remove(id) {
            Some((record, key)) => {
                self.by_expiry.remove(&key);
                self.bytes -= record.len() + id.len();
                true
            }
            None => false,
        }
    }

    fn next_key(&mut self, ttl: Duration) -> Slot {
        self.seq += 1;
        (Instant::now() + ttl, self.seq)
    }
}

impl Memory {
    pub(crate) fn new(ttl: Duration, cap: usize) -> Memory {
        Memory {
            inner: Mutex::default(),
            ttl,
            cap,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn put(&self, id: &str, record: Vec<u8>) -> Result<(), StoreError> {
        let size = record.len() + id.len();
        let mut inner = self.lock();
        inner.remove(id);
        if size > self.cap {
            return Err(StoreError(format!(
                "it is larger ({} KiB) than the whole memory store (responses.max_mib)",
                size / 1024
            )));
        }
        let now = Instant::now();
        while let Some(((expires, _), _)) = inner.by_expiry.first_key_value() {
            if *expires > now && inner.bytes + size <= self.cap {
                break;
            }
            if let Some((_, old)) = inner.by_expiry.pop_first() {
                inner.remove(&old);
            }
        }
        let key = inner.next_key(self.ttl);
        inner.by_expiry.insert(key, id.to_string());
        inner.records.insert(id.to_string(), (record.into(), key));
        inner.bytes += size;
        Ok(())
    }

    /// Drops expired records.
    fn sweep(&self) {
        let mut inner = self.lock();
        let now = Instant::now();
        while let Some(((expires, _), _)) = inner.by_expiry.first_key_value() {
            if *expires > now {
                break;
            }
            if let Some((_, old)) = inner.by_expiry.pop_first() {
                inner.remove(&old);
            }
        }
    }

    fn get(&self, id: &str) -> Option<Vec<u8>> {
        let mut inner = self.lock();
        let (record, old) = inner.records.get(id).cloned()?;
        if old.0 <= Instant::now() {
            inner.remove(id);
            return None;
        }
        let key = inner.next_key(self.ttl);
        inner.by_expiry.remove(&old);
        inner.by_expiry.insert(key, id.to_string());
        if let Some(entry) = inner.records.get_mut(id) {
            entry.1 = key;
        }
        Some(record.to_vec())
    }

    fn delete(&self, id: &str) -> bool {
        let mut inner = self.lock();
        let expired = inner
            .records
            .get(id)
            .is_some_and(|(_, (expires, _))| *expires <= Instant::now());
        inner.remove(id) && !expired
    }
}

/// A redb file: each value is the expiry (Unix milliseconds, 8 bytes big
/// endian) followed by the record. Expired records are swept when the file
/// opens and every [`SWEEP_EVERY`] writes.
pub(crate) struct Disk {
    db: redb::Database,
    path: std::path::PathBuf,
    ttl: Duration,
    writes: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Disk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Disk").field("path", &self.path).finish()
    }
}

const TABLE: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("responses");
const SWEEP_EVERY: u64 = 1000;

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Disk {
    fn open(path: &std::path::Path, ttl: Duration) -> Result<Disk, String> {
        let db = redb::Database::create(path).map_err(|e| {
            let hint = match e {
                redb::DatabaseError::DatabaseAlreadyOpen => {
                    " (another llmproxy uses it: one llmproxy process per file; share conversations between replicas with store = \"redis\")"
                }
                _ => " (responses.path)",
            };
            format!(
                "cannot open the response store {}: {e}{hint}",
                path.display()
            )
        })?;
        let disk = Disk {
            db,
            path: path.to_path_buf(),
            ttl,
            writes: Default::default(),
        };
        disk.sweep().map_err(|e| e.0)?;
        Ok(disk)
    }

    fn fail(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError(format!(
            "the response store {} failed: {e}",
            self.path.display()
        ))
    }

    fn expiry(&self) -> [u8; 8] {
        (unix_ms() + self.ttl.as_millis() as u64).to_be_bytes()
    }

    fn live(value: &[u8], now: u64) -> Option<&[u8]> {
        let (expires, record) = value.split_first_chunk::<8>()?;
        (u64::from_be_bytes(*expires) > now).then_some(record)
    }

    fn put(&self, id: &str, record: &[u8]) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(|e| self.fail(e))?;
        {
            let mut table = tx.open_table(TABLE).map_err(|e| self.fail(e))?;
            let mut value = Vec::with_capacity(8 + record.len());
            value.extend_from_slice(&self.expiry());
            value.extend_from_slice(record);
            table
                .insert(id, value.as_slice())
                .map_err(|e| self.fail(e))?;
        }
        tx.commit().map_err(|e| self.fail(e))?;
        let n = self
            .writes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep()?;
        }
        Ok(())
    }

    /// Pushes back the expiry of records read with expiry `seen`, unless
    /// they changed (or went) since.
    fn renew(&self, seen: &[(String, [u8; 8])]) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().map_err(|e| self.fail(e))?;
        // Only expiries: losing them in a crash costs nothing.
        tx.set_durability(redb::Durability::None)
            .map_err(|e| self.fail(e))?;
        {
            let mut table = tx.open_table(TABLE).map_err(|e| self.fail(e))?;
            let expiry = self.expiry();
            for (id, seen) in seen {
                let current = table.get(id.as_str()).map_err(|e| self.fail(e))?;
                let Some(mut value) = current.map(|v| v.value().to_vec()) else {
                    continue;
                };
                if value.first_chunk::<8>() == Some(seen) {
                    value[..8].copy_from_slice(&expiry);
                    table
                        .insert(id.as_str(), value.as_slice())
                        .map_err(|e| self.fail(e))?;
                }
            }
        }
        tx.commit().map_err(|e| self.fail(e))
    }

    fn chain(&self, id: &str, previous: fn(&[u8]) -> Option<String>) -> Result<Chain, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.fail(e))?;
        let table = match tx.open_table(TABLE) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => {
                return Ok(Chain {
                    missing: Some(id.to_string()),
                    ..Chain::default()
                });
            }
            Err(e) => return Err(self.fail(e)),
        };
        let now = unix_ms();
        let ttl = self.ttl.as_millis() as u64;
        // Records whose expiry to push back: only those a tenth of the ttl
        // older than fresh, so a long conversation is not rewritten on
        // every turn.
        let mut stale = Vec::new();
        let chain = walk(
            id,
            |id| {
                let value = table.get(id).map_err(|e| self.fail(e))?;
                let Some(value) = value else { return Ok(None) };
                let value = value.value();
                let Some(record) = Disk::live(value, now) else {
                    return Ok(None);
                };
                if let Some(expires) = value.first_chunk::<8>()
                    && u64::from_be_bytes(*expires).saturating_sub(now) < ttl - ttl / 10
                {
                    stale.push((id.to_string(), *expires));
                }
                Ok(Some(record.to_vec()))
            },
            previous,
        )?;
        drop(table);
        drop(tx);
        if !stale.is_empty() {
            self.renew(&stale)?;
        }
        Ok(chain)
    }

    fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let tx = self.db.begin_write().map_err(|e| self.fail(e))?;
        let found = {
            let mut table = tx.open_table(TABLE).map_err(|e| self.fail(e))?;
            let old = table.remove(id).map_err(|e| self.fail(e))?;
            old.is_some_and(|v| Disk::live(v.value(), unix_ms()).is_some())
        };
        tx.commit().map_err(|e| self.fail(e))?;
        Ok(found)
    }

    /// Removes expired records.
    fn sweep(&self) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(|e| self.fail(e))?;
        {
            let mut table = tx.open_table(TABLE).map_err(|e| self.fail(e))?;
            let now = unix_ms();
            table
                .retain(|_, value| Disk::live(value, now).is_some())
                .map_err(|e| self.fail(e))?;
        }
        tx.commit().map_err(|e| self.fail(e))
    }
}

/// Redis or Valkey: `SET ... PX ttl` and `GETEX ... PX ttl`, so the server
/// does the expiring. The connection is made on first use and remade after
/// a failure; while the server is away, operations fail within about a
/// second.
pub(crate) struct Redis {
    conn: redis::aio::ConnectionManager,
    /// The server, without credentials, for messages.
    shown: String,
    prefix: String,
    ttl_ms: u64,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("server", &self.shown)
            .finish()
    }
}

impl Redis {
    fn open(config: &ResponsesConfig, ttl: Duration) -> Result<Redis, String> {
        let url = config.redis_url()?;
        let client = match &config.ca_file {
            Some(file) => {
                let root_cert = std::fs::read(file).map_err(|e| {
                    format!(
                        "responses.ca_file = {}: cannot read it: {e}",
                        file.display()
                    )
                })?;
                let certificates = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root_cert),
                };
                redis::Client::build_with_tls(url.expose(), certificates)
            }
            None => redis::Client::open(url.expose()),
        }
        .map_err(|e| format!("responses.url is not a usable Redis URL: {e}"))?;
        let info = client.get_connection_info();
        let shown = match info.addr() {
            redis::ConnectionAddr::Tcp(host, port) => format!("{host}:{port}"),
            redis::ConnectionAddr::TcpTls { host, port, .. } => format!("{host}:{port} over TLS"),
            redis::ConnectionAddr::Unix(path) => path.display().to_string(),
            _ => "the configured server".to_string(),
        };
        let manager = redis::aio::ConnectionManagerConfig::new()
            .set_number_of_retries(1)
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)));
        let conn = redis::aio::ConnectionManager::new_lazy_with_config(client, manager)
            .map_err(|e| format!("cannot set up the Redis connection to {shown}: {e}"))?;
        Ok(Redis {
            conn,
            shown,
            prefix: config.key_prefix.clone(),
            ttl_ms: (ttl.as_millis() as u64).max(1),
        })
    }

    fn key(&self, id: &str) -> String {
        format!("{}resp:{id}", self.prefix)
    }

    fn fail(&self, e: redis::RedisError) -> StoreError {
        // Redis error texts do not carry the URL or its password.
        StoreError(format!(
            "the response store (Redis at {}) is unavailable: {e}",
            self.shown
        ))
    }

    async fn put(&self, id: &str, record: Vec<u8>) -> Result<(), StoreError> {
        redis::cmd("SET")
            .arg(self.key(id))
            .arg(record)
            .arg("PX")
            .arg(self.ttl_ms)
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(|e| self.fail(e))
    }

    async fn get(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        redis::cmd("GETEX")
            .arg(self.key(id))
            .arg("PX")
            .arg(self.ttl_ms)
            .query_async::<Option<Vec<u8>>>(&mut self.conn.clone())
            .await
            .map_err(|e| self.fail(e))
    }

    async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        redis::cmd("DEL")
            .arg(self.key(id))
            .query_async::<u64>(&mut self.conn.clone())
            .await
            .map(|n| n > 0)
            .map_err(|e| self.fail(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn previous(record: &[u8]) -> Option<String> {
        std::str::from_utf8(record)
            .ok()?
            .strip_prefix("after:")
            .map(str::to_string)
    }

    #[test]
    fn memory_evicts_the_least_recently_used_when_full() {
        let m = Memory::new(Duration::from_secs(60), 3 * 12);
        for id in ["a", "b", "c"] {
            m.put(id, vec![b'x'; 10]).unwrap();
        }
        // Reading `a` makes `b` the oldest.
        assert!(m.get("a").is_some());
        m.put("d", vec![b'x'; 10]).unwrap();
        assert!(m.get("b").is_none());
        for id in ["a", "c", "d"] {
            assert!(m.get(id).is_some(), "{id}");
        }
        assert!(
            m.put("big", vec![b'x'; 100]).is_err(),
            "larger than the cap"
        );
        assert!(m.get("big").is_none());
        assert!(m.delete("a") && !m.delete("a"));
    }

    #[test]
    fn memory_forgets_after_the_ttl_since_last_use() {
        let m = Memory::new(Duration::from_millis(400), 1 << 20);
        m.put("a", b"after:b".to_vec()).unwrap();
        m.put("b", b"root".to_vec()).unwrap();
        std::thread::sleep(Duration::from_millis(250));
        let chain = walk("a", |id| Ok(m.get(id)), previous).unwrap();
        assert_eq!((chain.records.len(), chain.missing), (2, None));
        std::thread::sleep(Duration::from_millis(250));
        assert!(m.get("b").is_some(), "the walk kept it alive");
        std::thread::sleep(Duration::from_millis(600));
        m.sweep();
        assert_eq!(m.lock().bytes, 0, "swept");
        assert!(m.get("a").is_none() && m.get("b").is_none());
    }

    #[test]
    fn disk_keeps_chains_across_reopening_and_expires_them() {
        let dir = std::env::temp_dir().join(format!("llmproxy-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("unit.redb");
        let _ = std::fs::remove_file(&path);
        {
            let d = Disk::open(&path, Duration::from_secs(60)).unwrap();
            d.put("a", b"after:b").unwrap();
            d.put("b", b"root").unwrap();
            let chain = d.chain("a", previous).unwrap();
            assert_eq!(chain.records, [b"after:b".to_vec(), b"root".to_vec()]);
            let err = Disk::open(&path, Duration::from_secs(60)).unwrap_err();
            assert!(err.contains("one llmproxy process per file"), "{err}");
        }
        let d = Disk::open(&path, Duration::from_millis(400)).unwrap();
        let chain = d.chain("a", previous).unwrap();
        assert_eq!(chain.records.len(), 2, "kept across reopening");
        assert!(d.delete("b").unwrap() && !d.delete("b").unwrap());
        let chain = d.chain("a", previous).unwrap();
        assert_eq!(
            (chain.records.len(), chain.missing.as_deref()),
            (1, Some("b"))
        );
        d.put("c", b"root").unwrap();
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(d.chain("c", previous).unwrap().records.len(), 1);
        std::thread::sleep(Duration::from_millis(250));
        // 500 ms after it was written and still there: the read at 250 ms
        // renewed it.
        assert_eq!(d.chain("c", previous).unwrap().records.len(), 1);
        std::thread::sleep(Duration::from_millis(600));
        let chain = d.chain("c", previous).unwrap();
        assert_eq!(
            (chain.records.len(), chain.missing.as_deref()),
            (0, Some("c"))
        );
        drop(d);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
