//! How much linear memory a translator needs for one request, estimated
//! before it runs, so that a request it cannot map is refused up front
//! (413, or 400 for a kept conversation that grew too large) instead of
//! failing inside the sandbox with a 502.
//!
//! The factors are the worst measured on the bundled translators (their
//! mappers build `serde_json::Value` trees), with a margin: the canonical
//! body costs up to 7.4 bytes of translator memory per byte (a 12 MiB
//! string to Gemini: 89 MB), a Chat client's request in the extras 2 more
//! per byte (12 MiB Chat -> Gemini: 114 MB), every JSON value about 110
//! bytes (100 000 tiny input items, 5 MB: 120 MB), a downloaded file 8.4
//! bytes per byte (a 16 MiB image to Claude: 135 MB), on top of 1.1 MiB for
//! an empty request.

/// Memory any request needs.
pub(crate) const BASE: usize = 4 << 20;
/// Per byte of the canonical request.
pub(crate) const PER_BYTE: usize = 8;
/// Per byte of the extras (a Chat client's own request).
pub(crate) const PER_EXTRAS_BYTE: usize = 3;
/// Per JSON value (object, array, string) in the request and extras.
pub(crate) const PER_VALUE: usize = 128;
/// Per byte of downloaded media.
pub(crate) const PER_MEDIA_BYTE: usize = 9;

/// The size of a request as the estimate sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Size {
    pub bytes: usize,
    /// Objects, arrays, strings (keys included), numbers, booleans, nulls.
    pub values: usize,
}

impl Size {
    /// Measures JSON text in one pass (strings are skipped with memchr:
    /// most of a request's bytes are inside them).
    pub(crate) fn of(json: &[u8]) -> Size {
        let mut values = 0usize;
        // A scalar may start here (after `[`, `,` or `:`, or at the top).
        let mut value_next = true;
        let mut i = 0;
        while let Some(&b) = json.get(i) {
            i += 1;
            match b {
                b'"' => {
                    values += 1;
                    value_next = false;
                    // To the closing quote, past escapes.
                    while let Some(k) = json
                        .get(i..)
                        .and_then(|rest| memchr::memchr2(b'"', b'\\', rest))
                    {
                        i += k;
                        if json[i] == b'"' {
                            i += 1;
                            break;
                        }
                        i += 2;
                    }
                    if i > json.len() {
                        break;
                    }
                }
                b'{' | b'[' => {
                    values += 1;
                    value_next = true;
                }
                b',' | b':' => value_next = true,
                b' ' | b'\t' | b'\n' | b'\r' => {}
                b'}' | b']' => value_next = false,
                _ if value_next => {
                    values += 1;
                    value_next = false;
                }
                _ => {}
            }
        }
        Size {
            bytes: json.len(),
            values,
        }
    }

    /// The translator memory a request of this size (`self`, the
    /// canonical body) and `extras` needs, media aside.
    pub(crate) fn need(self, extras: Size) -> usize {
        BASE.saturating_add(self.bytes.saturating_mul(PER_BYTE))
            .saturating_add(extras.bytes.saturating_mul(PER_EXTRAS_BYTE))
            .saturating_add((self.values.saturating_add(extras.values)).saturating_mul(PER_VALUE))
    }
}

/// The media bytes a translator with `memory` bytes can take along with a
/// request that needs `need`.
pub(crate) fn media_room(memory: usize, need: usize) -> u64 {
    (memory.saturating_sub(need) / PER_MEDIA_BYTE) as u64
}

/// The largest body of plain text a translator with `memory` bytes maps.
pub(crate) fn largest_body(memory: usize) -> usize {
    memory.saturating_sub(BASE) / PER_BYTE
}

/// `bytes` in MiB, for messages.
pub(crate) fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_counted_outside_strings() {
        let size = Size::of(br#"{"a":["x","y\"{[",{"b":1}],"c":"}"}"#);
        assert_eq!(size.values, 10);
        assert_eq!(Size::of(b"[0, 1.5e3,true , null,-2]").values, 6);
        assert_eq!(Size::of(br#"["a\\","b\\\"c",1]"#).values, 4);
        // Cut off anywhere, it still counts without reading past the end.
        let text = br#"{"k":["x\"y",{"z":[1,2]}]}"#;
        for cut in 0..text.len() {
            let _ = Size::of(&text[..cut]);
        }
        assert_eq!(Size::of(br#""unterminated \"#).values, 1);
        assert_eq!(
            Size::of(b"{}").need(Size::default()),
            BASE + 2 * PER_BYTE + PER_VALUE
        );
    }

    #[test]
    fn the_default_limits_agree() {
        let memory =
            crate::config::TranslatorLimits::default().memory_limit_mib as usize * 1024 * 1024;
        let server = crate::config::ServerConfig::default();
        // A body of text at the body limit, as Responses and as Chat (whose
        // request the translator also gets in the extras).
        let body = Size {
            bytes: server.max_body_mib as usize * 1024 * 1024,
            values: 10,
        };
        assert!(largest_body(memory) >= body.bytes);
        assert!(body.need(Size::default()) <= memory);
        assert!(body.need(body) <= memory);
        let media = crate::config::MediaConfig::default();
        assert!(media.max_mib <= media.max_request_mib);
        let small = Size::of(br#"{"model":"m","input":"hi"}"#).need(Size::default());
        assert!(media_room(memory, small) >= u64::from(media.max_request_mib) << 20);
    }
}
