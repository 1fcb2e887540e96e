//! HTTP long-polling bodies: `polling::decode_payload` must never panic on any bytes, and a
//! fully valid payload must survive a re-encode.
#![no_main]
use duet_sio_codec::{engine, polling};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(iter) = polling::decode_payload(data, 1_000_000) else { return };
    let packets: Result<Vec<engine::Packet<'_>>, _> = iter.collect();
    if let Ok(packets) = packets {
        let body = polling::encode_payload(&packets);
        let back: Vec<_> = polling::decode_payload(body.as_bytes(), usize::MAX)
            .expect("re-encoded payload is UTF-8")
            .collect::<Result<_, _>>()
            .expect("re-encoded payload decodes");
        assert_eq!(back.len(), packets.len());
    }
});
