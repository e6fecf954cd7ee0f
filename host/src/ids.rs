//! Identifiers and timestamps.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh id such as `resp_3f9c...`: 32 hex digits, 128 bits from the
/// operating system's random generator (stored responses are readable by
/// whoever knows their id).
pub(crate) fn new_id(prefix: &str) -> String {
    use ring::rand::SecureRandom;
    use std::fmt::Write;
    let mut bits = [0u8; 16];
    if ring::rand::SystemRandom::new().fill(&mut bits).is_err() {
        // Never seen on a supported OS; `RandomState` is seeded from the OS
        // too (per thread), and the counter keeps ids distinct.
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        for (i, chunk) in bits.chunks_mut(8).enumerate() {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(n);
            h.write_usize(i);
            chunk.copy_from_slice(&h.finish().to_le_bytes());
        }
    }
    let mut id = String::with_capacity(prefix.len() + 33);
    id.push_str(prefix);
    id.push('_');
    for b in bits {
        let _ = write!(id, "{b:02x}");
    }
    id
}

/// An id for a request's log record (`req_...`): unique in the process and
/// across restarts (a random prefix drawn once), but not secret, so it
/// costs no call into the operating system's random generator.
pub(crate) fn request_id() -> String {
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let prefix = PREFIX.get_or_init(|| new_id("req")[..20].to_string());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{n:012x}")
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
        assert!(a.starts_with("resp_") && a.len() == 5 + 32, "{a}");
        assert_ne!(a, b);
        let (a, b) = (super::request_id(), super::request_id());
        assert!(a.starts_with("req_") && a.len() == 32, "{a}");
        assert_ne!(a, b);
    }
}
