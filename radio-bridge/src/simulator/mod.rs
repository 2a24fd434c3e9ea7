//! In progress.

pub mod rnode_device;
