//! The Seed gateway's local web interface (being built up; see the module map in the
//! following commits).
//!
//! - [`model`]: the serde structs behind every page and JSON document.
//! - [`provider`]: the [`GatewayView`] trait the gateway implements.
//! - [`wording`]: the status in a kiosk keeper's words.

pub mod model;
pub mod provider;
pub mod wording;

pub use model::*;
pub use provider::{AdminAction, DiagnosticBundle, GatewayView};
