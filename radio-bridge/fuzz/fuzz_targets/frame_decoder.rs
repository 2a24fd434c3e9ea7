//! Any bytes heard on air go to the Seed frame decoder: it must return an
//! error for junk, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = radio_bridge::frame::Frame::decode(data);
});
