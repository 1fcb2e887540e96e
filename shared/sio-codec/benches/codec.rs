//! Encode/decode throughput of the codec on packets shaped like Duet's traffic.
//!
//! Run: `cargo bench -p duet-sio-codec` (figures in docs/BENCHMARKS.md, "Socket.IO").

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use duet_sio_codec::{engine, polling, sio, Payload};
use serde_json::json;

fn code_change_text() -> String {
    // A seed-style `code_change` with ~1 KB of code.
    let code = "fn main() {\n    println!(\"hello\");\n}\n".repeat(28);
    sio::Encoded::event(
        "/",
        "code_change",
        &Payload::json(json!({ "code": code })),
        None,
        true,
    )
    .text
}

fn bench(c: &mut Criterion) {
    let limits = sio::Limits::default();
    let small = r#"42["message",1,"2",{"3":[true]}]"#.to_owned();
    let large = code_change_text();
    let ack = r#"4312["ok",{"saved":true,"seq":42}]"#.to_owned();
    let bin_header = r#"451-["yjs_update",{"_placeholder":true,"num":0}]"#.to_owned();
    let update = Bytes::from(vec![7u8; 64]);

    let mut g = c.benchmark_group("decode");
    for (name, text) in [
        ("event_small", &small),
        ("event_1kb", &large),
        ("ack", &ack),
    ] {
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let engine::Packet::Message(m) = engine::decode_text(black_box(text)).unwrap()
                else {
                    unreachable!()
                };
                black_box(sio::decode(m, &limits).unwrap())
            })
        });
    }
    g.bench_function("binary_event_64b", |b| {
        b.iter(|| {
            let engine::Packet::Message(m) = engine::decode_text(black_box(&bin_header)).unwrap()
            else {
                unreachable!()
            };
            let sio::Decoded::NeedsAttachments(p) = sio::decode(m, &limits).unwrap() else {
                unreachable!()
            };
            black_box(p.push(update.clone()).unwrap())
        })
    });
    let body = [small.as_str(), "3", large.as_str(), "bAQIDBA=="].join("\x1e");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("polling_payload_4_packets", |b| {
        b.iter(|| {
            polling::decode_payload(black_box(body.as_bytes()), 1_000_000)
                .unwrap()
                .filter(|p| p.is_ok())
                .count()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("encode");
    let payload_small = Payload::args(vec![json!(1), json!("2"), json!({"3": [true]})]);
    let code = "fn main() {\n    println!(\"hello\");\n}\n".repeat(28);
    let payload_large = Payload::json(json!({ "code": code, "user_id": "u1" }));
    let payload_bin = Payload::empty().with_binary(update.clone());
    g.bench_function("event_small", |b| {
        b.iter(|| sio::Encoded::event("/", "message-back", black_box(&payload_small), None, true))
    });
    g.bench_function("event_1kb", |b| {
        b.iter(|| sio::Encoded::event("/", "code_updated", black_box(&payload_large), None, true))
    });
    g.bench_function("binary_event_64b", |b| {
        b.iter(|| sio::Encoded::event("/", "yjs_update", black_box(&payload_bin), None, true))
    });
    g.bench_function("ack", |b| {
        b.iter(|| sio::Encoded::ack("/", 12, black_box(&payload_small), true))
    });
    g.bench_function("polling_payload_4_packets", |b| {
        b.iter(|| {
            let mut enc = polling::PayloadEncoder::with_capacity(2048);
            enc.push_encoded_text(black_box(&small));
            enc.push_encoded_text("2");
            enc.push_encoded_text(black_box(&large));
            enc.push_binary(black_box(&update));
            enc.finish()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
