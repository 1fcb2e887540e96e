//! Engine.IO text frames: `engine::decode_text` must never panic, and re-encoding a decoded
//! packet must decode to the same packet.
#![no_main]
use duet_sio_codec::engine;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(p) = engine::decode_text(text) {
            let again = p.encode();
            let q = engine::decode_text(&again).expect("re-encoded packet decodes");
            assert_eq!(p, q);
        }
    }
});
