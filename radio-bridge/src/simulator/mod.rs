//! In progress.
pub mod packet_forwarder;
