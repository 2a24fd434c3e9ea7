//! Signed Seed frames for tests that inject straight into an emulated
//! concentrator (the simulator's devices build their own).

use radio_bridge::frame::{Envelope, Frame, Message, ProtocolVersion, Transaction};
use radio_bridge::identity::Identity;

/// A signed transaction from `device` whose payload and counter are `counter`.
pub fn transaction(device: &Identity, counter: u32) -> Vec<u8> {
    Frame::sign(
        Envelope {
            version: ProtocolVersion::CURRENT,
            device_id: device.device_id(),
            to: None,
            seq: None,
            message: Message::Transaction(Transaction {
                payload: format!("tx {counter}").into_bytes(),
                timestamp_counter: Some(counter),
            }),
        },
        device.signing_key(),
    )
    .expect("a test frame signs")
    .bytes
}
