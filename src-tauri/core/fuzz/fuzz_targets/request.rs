//! The request decoders of `/v1/chat/completions`, `/v1/completions` and `/v1/responses`: body
//! to checked call, everything the endpoints do before they look for the model. Any body gets
//! an answer.
#![no_main]

use headroom_core::api::openai::{chat, completions, responses};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = chat::decode(data);
    let _ = completions::decode(data);
    let _ = responses::decode(data);
});
