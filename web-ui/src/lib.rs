//! The Seed gateway's local web interface: status page, JSON API, live events, metrics and
//! the technician's admin pages.
//!
//! The gateway depends on this crate, not the other way round: web-ui defines what it shows
//! ([`model`]) and what it needs from a running gateway ([`GatewayView`]), and the gateway
//! implements that trait. Module map:
//!
//! - [`model`]: the serde structs behind every page and JSON document.
//! - [`provider`]: the [`GatewayView`] trait and the admin actions.
//! - [`wording`]: the status in a kiosk keeper's words ("Internet: offline for 3 h, ...").
//! - `routes`: the URL map, security headers, [`bind`] and [`serve`].
//! - `api`: `/api/v1/status`, `/api/v1/neighbors`, `/api/v1/queue`, `/healthz`.
//! - [`peers`]: `/api/v1/peers`, trusted neighbour gateways.
//! - `events`: `/api/v1/events`, server-sent events for the live page.
//! - [`metrics`]: `/metrics` in the Prometheus text format.
//! - `page` (+ `page/`): the status page's HTML, JS and CSS, compiled in.
//! - [`auth`]: password hashes, sessions, CSRF tokens, login rate limit.
//! - `admin`: `/admin`, its login and its actions.
//!
//! The JSON documents are described field by field in `API.md`.

mod admin;
mod api;
pub mod auth;
mod events;
pub mod metrics;
pub mod model;
mod page;
pub mod peers;
pub mod provider;
mod routes;
pub mod wording;

pub use api::{strip_credentials, NeighborsDocument, QueueDocument, StatusDocument};
pub use auth::password::{hash_password, HashError};
pub use model::*;
pub use peers::{Peer, PeerLink, PeerMail, PeerRefusal, Peers};
pub use provider::{AdminAction, DiagnosticBundle, GatewayView};
pub use routes::{bind, router, serve, FORM_BODY_LIMIT};
