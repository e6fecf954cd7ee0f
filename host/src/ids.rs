//! Identifiers and timestamps.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh id such as `resp_3f9c...` (24 hex digits, unpredictable).
pub(crate) fn new_id(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // `RandomState` is seeded from the OS; hashing a counter with two
    // independently seeded hashers gives 128 unpredictable bits.
    let mut a = std::collections::hash_map::RandomState::new().build_hasher();
    a.write_u64(n);
    let mut b = std::collections::hash_map::RandomState::new().build_hasher();
    b.write_u64(n);
    let (a, b) = (a.finish(), b.finish());
    format!("{prefix}_{a:016x}{:08x}", b >> 32)
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_prefixed_and_distinct() {
        let a = super::new_id("resp");
        let b = super::new_id("resp");
        assert!(a.starts_with("resp_") && a.len() == 5 + 24, "{a}");
        assert_ne!(a, b);
    }
}
