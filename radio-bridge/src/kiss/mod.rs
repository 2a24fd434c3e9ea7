//! The RNode serial link: an RNode LoRa modem speaking KISS over a serial
//! port (USB CDC/UART at 115200 8N1).
//!
//! - [`framing`]: KISS byte-stuffing, the encoder and the streaming deframer
//!   (pure, fuzzed, property-tested).
//! - [`commands`]: the RNode command bytes and how their payloads encode,
//!   shared by the host driver and the device emulator.
//! - [`rnode`]: [`RnodeLink`], the [`crate::link::Link`] driver: detect
//!   handshake, configuration with echo checks, receive with RSSI/SNR,
//!   transmit, and reconnecting by itself when the port disappears.

pub mod commands;
pub mod framing;
pub mod rnode;

pub use framing::{encode, Deframed, Deframer, DropReason, KissFrame};
pub use rnode::{RnodeConfig, RnodeLink};
