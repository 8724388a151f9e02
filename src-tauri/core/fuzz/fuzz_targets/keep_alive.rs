//! `keep_alive` / `ttl` / `idle_timeout` as people write them. A value that parses prints as
//! text that parses back to the same value (the settings file stores it that way).
#![no_main]

use headroom_core::vocab::{parse_idle_timeout, IdleTimeout};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(timeout) = parse_idle_timeout(text) {
            let printed = timeout.to_string();
            let again = parse_idle_timeout(&printed).unwrap_or_else(|e| {
                panic!("{text:?} printed as {printed:?}, which does not parse: {e}")
            });
            assert_eq!(again, timeout, "{text:?} → {printed:?}");
        }
    }
    // A number of seconds, as a JSON request sends it.
    if let Some(bytes) = data.get(..8) {
        let mut seconds = [0u8; 8];
        seconds.copy_from_slice(bytes);
        let _ = IdleTimeout::from_seconds(f64::from_le_bytes(seconds));
    }
});
