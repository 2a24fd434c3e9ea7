//! Simulated devices and concentrators speaking the real wire protocols.
//!
//! - [`devices`]: Seed devices with their own keys, heartbeat schedules and
//!   retransmission, talking to an abstract [`devices::Air`].
//! - [`packet_forwarder`]: a Semtech packet forwarder (GWMP over UDP) that
//!   puts the air's packets in front of the gateway.

pub mod devices;
pub mod packet_forwarder;
