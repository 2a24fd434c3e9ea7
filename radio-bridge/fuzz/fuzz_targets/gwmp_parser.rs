//! Any bytes a UDP socket can deliver go through the GWMP datagram parser:
//! it must return `Ok` or a typed error, never panic, and whatever it
//! accepts must serialise into a datagram that parses again.
//!
//! Run: `cargo +nightly fuzz run gwmp_parser` in `radio-bridge/fuzz`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use radio_bridge::gwmp::parse;

fuzz_target!(|data: &[u8]| {
    if let Ok(datagram) = parse(data) {
        let again = parse(&datagram.to_bytes());
        assert!(again.is_ok(), "{datagram:?} re-parsed as {again:?}");
    }
});
