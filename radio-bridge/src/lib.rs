//! radio-bridge: everything between the LoRa air and verified Seed messages.
//!
//! Module map:
//! - [`frame`]: the Seed frame codec (CBOR body, ed25519 signature, message id,
//!   JSON form), normative in `docs/protocol.md`.
//! - [`identity`]: ed25519 identity keys and their files.
//! - [`fragment`]: splitting frames larger than the radio MTU, and bounded reassembly.
//! - [`packets`]: a run of packets (frames and fragments) decoded offline, for
//!   the command line and the test vectors.
//! - [`link`]: the one trait every radio source implements, and the rx/tx types.
//! - [`kiss`]: KISS framing and the RNode serial link driver.
//! - [`gwmp`]: Semtech UDP packet forwarder protocol (GWMP v2), server side.
//! - [`airtime`]: LoRa time-on-air (Semtech AN1200.13).
//! - [`duty_cycle`]: EU868 sub-band duty-cycle ledger over a rolling hour.
//! - [`simulator`]: simulated Seed devices behind a simulated RNode or packet
//!   forwarder, speaking the real wire protocols.

pub mod airtime;
pub mod duty_cycle;
pub mod fragment;
pub mod frame;
pub mod gwmp;
pub mod identity;
pub mod kiss;
pub mod link;
pub mod packets;
pub mod simulator;
