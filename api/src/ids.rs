//! Item and response ids.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// 16 unpredictable hex digits (from the standard library's randomly seeded
/// hasher; on `wasm32-wasip2` it is seeded through WASI).
pub fn random_hex() -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    format!("{:016x}", h.finish())
}

/// Mints `msg_…`, `fc_…`, `rs_…` ids: a fixed stem plus a counter, so the
/// ids of one response are distinct and, with a fixed stem, reproducible in
/// tests.
#[derive(Debug, Clone)]
pub struct IdGen {
    stem: String,
    next: u32,
}

impl IdGen {
    /// Ids with a random stem.
    pub fn new() -> Self {
        IdGen::with_stem(random_hex())
    }

    /// Ids with a fixed stem (tests).
    pub fn with_stem(stem: impl Into<String>) -> Self {
        IdGen {
            stem: stem.into(),
            next: 0,
        }
    }

    /// The next id with `prefix`, e.g. `msg_3f2a…_0`.
    pub fn next(&mut self, prefix: &str) -> String {
        let n = self.next;
        self.next += 1;
        format!("{prefix}_{}{n}", self.stem)
    }
}

impl Default for IdGen {
    fn default() -> Self {
        IdGen::new()
    }
}
