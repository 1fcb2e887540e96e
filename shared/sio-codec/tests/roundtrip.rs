//! Property tests: decode(encode(x)) == x for every packet kind, and no decoder panics.

use bytes::Bytes;
use duet_sio_codec::limits::{MAX_ACK_ID, MAX_ATTACHMENTS};
use duet_sio_codec::sio::{self, Encoded, Limits, Packet, PacketKind};
use duet_sio_codec::{engine, polling, Payload};
use proptest::prelude::*;
use serde_json::{Map, Value};

/// JSON values that survive a text round trip exactly: integers rather than arbitrary floats
/// (serde_json's default float parsing is not guaranteed round-trip exact), and no `_` keys so a
/// random object is never mistaken for an attachment placeholder.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1000i32..1000).prop_map(|n| Value::from(f64::from(n) / 4.0)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(("[a-z][a-z0-9 ]{0,6}", inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn namespace() -> impl Strategy<Value = String> {
    prop_oneof![Just("/".to_owned()), "/[a-zA-Z0-9_-]{1,12}"]
}

fn payload() -> impl Strategy<Value = Payload> {
    (
        prop::collection::vec(json_value(), 0..4),
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..16), 0..3),
    )
        .prop_map(|(args, bins)| {
            let mut p = Payload::args(args);
            for b in bins {
                p.push_binary(b);
            }
            p
        })
}

fn ack_id() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..1000, Just(MAX_ACK_ID)]
}

fn packet() -> impl Strategy<Value = Packet> {
    let kind = prop_oneof![
        prop::option::of(
            prop::collection::vec(("[a-z]{1,6}", json_value()), 0..3)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>()))
        )
        .prop_map(PacketKind::Connect),
        Just(PacketKind::Disconnect),
        ("[a-zA-Z_:-]{1,16}", payload(), prop::option::of(ack_id()))
            .prop_map(|(name, payload, id)| PacketKind::Event { name, payload, id }),
        (ack_id(), payload()).prop_map(|(id, payload)| PacketKind::Ack { id, payload }),
        ".{0,20}".prop_map(|m| PacketKind::ConnectError(serde_json::json!({ "message": m }))),
    ];
    (namespace(), kind).prop_map(|(ns, kind)| Packet { ns, kind })
}

proptest! {
    #[test]
    fn sio_roundtrip(p in packet(), prefix in any::<bool>()) {
        let enc = Encoded::packet(&p, prefix);
        let text = if prefix {
            let engine::Packet::Message(m) = engine::decode_text(&enc.text).unwrap() else {
                panic!("not a message: {}", enc.text)
            };
            m
        } else {
            enc.text.as_str()
        };
        let limits = Limits { max_attachments: MAX_ATTACHMENTS, max_attachment_bytes: 1 << 20 };
        let back = sio::decode_with_attachments(text, &enc.attachments, &limits).unwrap();
        prop_assert_eq!(back, p);
    }

    #[test]
    fn polling_roundtrip(items in prop::collection::vec(prop_oneof![
        "[^\u{1e}]{0,20}".prop_map(|s| (Some(s), None)),
        prop::collection::vec(any::<u8>(), 0..20).prop_map(|b| (None, Some(b))),
    ], 1..6)) {
        let packets: Vec<engine::Packet<'_>> = items.iter().map(|(s, b)| match (s, b) {
            (Some(s), _) => engine::Packet::Message(s.as_str()),
            (None, Some(b)) => engine::Packet::Binary(Bytes::from(b.clone())),
            _ => unreachable!(),
        }).collect();
        let body = polling::encode_payload(&packets);
        let back: Vec<_> = polling::decode_payload(body.as_bytes(), usize::MAX)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        prop_assert_eq!(back, packets);
    }

    #[test]
    fn engine_text_roundtrip(kind in 0u8..7, data in "[^\u{1e}]{0,20}") {
        let p = match kind {
            0 => engine::Packet::Open(&data),
            1 => engine::Packet::Close,
            2 => engine::Packet::Ping(&data),
            3 => engine::Packet::Pong(&data),
            4 => engine::Packet::Message(&data),
            5 => engine::Packet::Upgrade,
            _ => engine::Packet::Noop,
        };
        let text = p.encode();
        prop_assert_eq!(engine::decode_text(&text).unwrap(), p);
    }

    #[test]
    fn decoders_never_panic(s in ".{0,64}", bins in prop::collection::vec(any::<u8>(), 0..8)) {
        let _ = engine::decode_text(&s);
        let _ = sio::decode(&s, &Limits::default());
        let _ = sio::decode_with_attachments(&s, &[Bytes::from(bins.clone())], &Limits::default());
        if let Ok(iter) = polling::decode_payload(s.as_bytes(), 1000) {
            for _ in iter {}
        }
        if let Ok(iter) = polling::decode_payload(&bins, 1000) {
            for _ in iter {}
        }
    }

    #[test]
    fn structured_garbage_never_panics(
        head in "[0-6]{1,2}[0-9]{0,3}-?(/[a-z,]{0,5})?[0-9]{0,20}",
        tail in prop_oneof![Just(String::new()), Just("[".to_owned()), Just("[\"x\"".to_owned()),
            Just(r#"["x",{"_placeholder":true,"num":0}]"#.to_owned()), Just("{}".to_owned())],
    ) {
        let s = format!("{head}{tail}");
        let _ = sio::decode_with_attachments(&s, &[Bytes::from_static(b"a")], &Limits::default());
    }
}
