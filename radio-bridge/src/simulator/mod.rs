//! Simulated devices and concentrators speaking the real wire protocols.

pub mod devices;
