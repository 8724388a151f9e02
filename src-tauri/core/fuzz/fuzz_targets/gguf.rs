//! The GGUF header reader, which sees every model file before llama.cpp does. Whatever the
//! bytes, it must answer (a summary or an error) without panicking, looping or allocating more
//! than the input could justify.
#![no_main]

use headroom_core::models::gguf::parse_summary;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Every type unknown: sizes unchecked, the rest of the reader fuzzed as the MLX engine uses it.
    let _ = parse_summary(std::io::Cursor::new(data), data.len() as u64, |_| None);
});
