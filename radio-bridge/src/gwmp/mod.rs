//! Semtech UDP packet forwarder protocol (GWMP v2), server side: the path
//! to SX1301/SX1302 concentrators running Semtech's `lora_pkt_fwd` (or a
//! compatible forwarder).
//!
//! # Why hand-written, not the `semtech-udp` crate
//! `semtech-udp` 0.12 (Helium) was judged and not used:
//! - its server runtime `panic!`s when its socket task errors, and hides
//!   junk behind its own event enum: counting malformed datagrams and
//!   per-packet rejects the way [`LinkCounters`](crate::link::LinkCounters)
//!   wants would mean re-implementing the runtime anyway;
//! - its typed `rxpk` makes fields such as `lsnr` mandatory, so one odd
//!   packet makes the whole datagram (and its good packets) unreadable;
//!   here the payload is decoded per packet and rejects are counted alone;
//! - it pulls eight crates we do not otherwise build (thiserror 1 beside
//!   our 2, lora-modulation, macaddr, num_enum, serde_repr, arrayref,
//!   triggered, ...) on a 2-core build machine, for ~500 lines of framing
//!   that serde already does most of.
//!
//! The protocol is small and frozen, so owning it costs little.
//!
//! # Layout
//! - [`packet`]: datagram header, EUI, [`parse`] and serialisation.
//! - [`rxpk`]: PUSH_DATA body; `rxpk` → [`RxFrame`](crate::link::RxFrame).
//! - [`txpk`]: PULL_RESP and TX_ACK bodies; [`Transmit`](crate::link::Transmit) → `txpk`.
//! - [`datr`]: the `"SF7BW125"` data-rate notation.
//! - `forwarders`: which forwarders are alive and where downlinks go.
//! - `server`: [`GwmpLink`], the [`Link`](crate::link::Link) driver; its
//!   docs state the ack, CRC, TX_ACK-timeout and Up/Down rules.
//!
//! The client side (a packet-forwarder emulator for tests and the
//! simulator) is [`crate::simulator::packet_forwarder`].

pub mod datr;
mod forwarders;
pub mod packet;
pub mod rxpk;
mod server;
pub mod txpk;

pub use packet::{parse, Datagram, Eui, Identifier, ParseError, PROTOCOL_VERSION};
pub use rxpk::{CrcStatus, PushPayload, RxPk, Stat};
pub use server::{GwmpConfig, GwmpLink, NO_TX_ACK};
pub use txpk::{PullRespPayload, TxAckCode, TxAckPayload, TxPk};

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
