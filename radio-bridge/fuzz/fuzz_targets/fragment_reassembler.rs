//! Drives one `Reassembler` with a stream of packets decoded from the input,
//! with time moving forward between them, and checks that the memory bounds
//! hold after every packet. Then fragments the whole input and checks it
//! comes back intact from fragments pushed in reverse order.
//!
//! Input layout, repeated: `control, step, len, len bytes`.
//! - `control` bit 0 set: the bytes become a well-formed header over a tiny
//!   space of sender tags and set ids (so sets really collide, grow, get
//!   evicted and complete): tag `[control >> 1 & 3; 8]`, set id
//!   `control >> 3 & 3`, then the first two bytes as index and count (both
//!   taken modulo 8), the rest as payload.
//!   Bit 0 clear: the bytes go to `push` exactly as they are.
//! - `step`: clock advance in units of 250 ms (a full byte spans ~64 s, just
//!   over the 60 s timeout).
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use radio_bridge::fragment::{
    fragment, Reassembler, ReassemblerConfig, HEADER_LEN, MARKER, MAX_FRAGMENTS,
    PER_FRAGMENT_OVERHEAD,
};

fuzz_target!(|data: &[u8]| {
    feed_stream(data);
    round_trip(data);
});

fn feed_stream(data: &[u8]) {
    let config = ReassemblerConfig {
        timeout: Duration::from_secs(60),
        max_bytes_per_sender: 1024,
        max_bytes_total: 3000,
        max_sets_per_sender: 3,
    };
    let mut reassembler = Reassembler::new(config);
    let mut now = Instant::now();
    let mut rest = data;
    while let [control, step, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (bytes, next) = tail.split_at(len);
        rest = next;
        now += Duration::from_millis(250 * u64::from(*step));

        let packet = if control & 1 == 1 {
            shaped_packet(*control, bytes)
        } else {
            bytes.to_vec()
        };
        if let Ok(Some(frame)) = reassembler.push(&packet, now) {
            assert!(frame.len() <= config.max_bytes_per_sender.max(packet.len()));
        }
        assert!(reassembler.buffered_bytes() <= config.max_bytes_total);
        // Every buffered fragment costs at least the overhead.
        assert!(reassembler.pending_sets() <= config.max_bytes_total / PER_FRAGMENT_OVERHEAD);
    }
    reassembler.expire(now + Duration::from_secs(61));
    assert_eq!(reassembler.pending_sets(), 0);
    assert_eq!(reassembler.buffered_bytes(), 0);
}

fn shaped_packet(control: u8, bytes: &[u8]) -> Vec<u8> {
    let (index, count, payload) = match bytes {
        [index, count, payload @ ..] => (index % 8, count % 8, payload),
        _ => (0, 1, bytes),
    };
    let mut packet = Vec::with_capacity(HEADER_LEN + payload.len());
    packet.push(MARKER);
    packet.extend_from_slice(&[(control >> 1) & 3; 8]);
    packet.extend_from_slice(&u16::from((control >> 3) & 3).to_be_bytes());
    packet.extend_from_slice(&[index, count]);
    packet.extend_from_slice(payload);
    packet
}

fn round_trip(data: &[u8]) {
    let Some(&mtu_byte) = data.first() else {
        return;
    };
    let mtu = (HEADER_LEN + 1 + usize::from(mtu_byte))
        .max(HEADER_LEN + data.len().div_ceil(MAX_FRAGMENTS));
    let packets = fragment(data, [7; 8], 42, mtu).expect("MTU chosen to fit");
    let mut reassembler = Reassembler::new(ReassemblerConfig {
        max_bytes_per_sender: usize::MAX,
        max_bytes_total: usize::MAX,
        ..ReassemblerConfig::default()
    });
    let now = Instant::now();
    let mut frames = Vec::new();
    for packet in packets.iter().rev() {
        assert!(packet.len() <= mtu);
        if let Some(frame) = reassembler
            .push(packet, now)
            .expect("own fragments are valid")
        {
            frames.push(frame);
        }
    }
    assert_eq!(frames, vec![data.to_vec()]);
}
