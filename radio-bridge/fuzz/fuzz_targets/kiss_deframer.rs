//! Fuzz the KISS deframer and the RNode message parser behind it: any byte
//! stream from a serial port, in any chunking, must yield frames and counted
//! drops, never a panic, and the buffered body must stay bounded.

#![no_main]

use libfuzzer_sys::fuzz_target;
use radio_bridge::kiss::commands::parse_device_frame;
use radio_bridge::kiss::framing::{Deframed, Deframer, MAX_FRAME_BODY};

fuzz_target!(|data: &[u8]| {
    // The first byte picks a chunk size so partial reads are explored too.
    let Some((&chunk, bytes)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    let mut deframer = Deframer::new();
    for part in bytes.chunks(chunk) {
        for item in deframer.feed(part) {
            if let Deframed::Frame(frame) = item {
                assert!(frame.data.len() < MAX_FRAME_BODY);
                let _ = parse_device_frame(&frame);
            }
        }
    }
    deframer.expire_partial();
    assert!(!deframer.has_partial());
});
