//! seed-e2e: black-box test harnesses built from real parts.
//!
//! - [`qemu`]: the appliance test image booted in QEMU (status page port
//!   forward, RNode port, debug shell, power cut).

pub mod qemu;
