//! Decode + verify throughput of Seed frames on one core.
//!
//!     cargo run --release -p radio-bridge --example bench_decode [FRAMES]
//!
//! Signs FRAMES heartbeats from 64 device keys (not timed), then decodes and
//! verifies them all on the calling thread (timed), one at a time and as
//! batches of 64 (ed25519 batch verification). Prints frames/s for both.

use std::time::Instant;

use radio_bridge::frame::*;
use radio_bridge::identity::Identity;

fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let devices: Vec<Identity> = (0..64u8).map(|i| Identity::from_seed([i; 32])).collect();
    let frames: Vec<Vec<u8>> = (0..count)
        .map(|i| {
            let id = &devices[i % devices.len()];
            let env = Envelope {
                version: ProtocolVersion::CURRENT,
                device_id: id.device_id(),
                to: None,
                seq: None,
                message: Message::Heartbeat(Heartbeat {
                    device_class: DeviceClass::Handheld,
                    timestamp_counter: i as u32,
                    power_state: PowerState::Normal,
                    ledger_height: 1000 + i as u64,
                    sync_capable: true,
                    capabilities: Capabilities::default(),
                }),
            };
            Frame::sign(env, id.signing_key()).expect("sign").bytes
        })
        .collect();

    let start = Instant::now();
    let ok = frames.iter().filter(|f| Frame::decode(f).is_ok()).count();
    let single = start.elapsed();
    assert_eq!(ok, count);

    let start = Instant::now();
    let mut ok = 0;
    for chunk in frames.chunks(64) {
        let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
        ok += Frame::decode_batch(&refs)
            .iter()
            .filter(|r| r.is_ok())
            .count();
    }
    let batched = start.elapsed();
    assert_eq!(ok, count);

    let rate = |d: std::time::Duration| count as f64 / d.as_secs_f64();
    println!(
        "frames: {count} ({} bytes each)\none at a time: {:.0} frames/s\nbatches of 64: {:.0} frames/s",
        frames[0].len(),
        rate(single),
        rate(batched)
    );
}
