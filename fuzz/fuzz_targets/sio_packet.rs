//! Socket.IO packets with attachments: `sio::decode` and `Partial::push` must never panic; the
//! first byte picks how many of the remaining bytes are split off as attachment frames; a
//! decoded packet must survive encode → decode.
#![no_main]
use bytes::Bytes;
use duet_sio_codec::sio::{self, Decoded, Encoded, Limits, Step};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else { return };
    let cut = (split as usize).min(rest.len());
    let (text, bins) = rest.split_at(cut);
    let Ok(text) = std::str::from_utf8(text) else { return };
    let limits = Limits { max_attachments: 10, max_attachment_bytes: 4096 };
    let packet = match sio::decode(text, &limits) {
        Err(_) => return,
        Ok(Decoded::Complete(p)) => p,
        Ok(Decoded::NeedsAttachments(mut partial)) => {
            let mut chunks = bins.chunks(3);
            loop {
                let Some(chunk) = chunks.next() else { return };
                match partial.push(Bytes::copy_from_slice(chunk)) {
                    Err(_) => return,
                    Ok(Step::Pending(p)) => partial = p,
                    Ok(Step::Complete(p)) => break p,
                }
            }
        }
    };
    let enc = Encoded::packet(&packet, false);
    let back = sio::decode_with_attachments(&enc.text, &enc.attachments, &Limits {
        max_attachments: 10,
        max_attachment_bytes: usize::MAX,
    });
    // JSON numbers may be re-formatted (1e2 -> 100.0), so compare structure, not floats.
    let back = back.expect("re-encoded packet decodes");
    assert_eq!(back.ns, packet.ns);
    assert_eq!(std::mem::discriminant(&back.kind), std::mem::discriminant(&packet.kind));
});
