//! Trusted neighbour gateways as the web interface shows them:
//! `/api/v1/peers`, the page's "Neighbour gateways" card and the
//! `seed_peer_*` metrics. The gateway fills [`Peers`]
//! (`GatewayView::peers`); docs/peering.md explains the figures.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use serde::Serialize;

use crate::model::now_ms;
use crate::routes::{AppState, ProviderFailed};

/// One direction of the link with a neighbour.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct PeerLink {
    pub connected: bool,
    /// When `connected` last changed, ms since the Unix epoch.
    pub since_ms: Option<u64>,
    /// Why the link is down or last went down, as a sentence.
    pub last_error: Option<String>,
    pub last_error_ms: Option<u64>,
}

/// One neighbour gateway.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    pub gateway_id: String,
    pub address: String,
    /// The link we dial: our messages go to the neighbour over it.
    pub outbound: PeerLink,
    /// The link the neighbour dials: its messages come to us over it.
    pub inbound: PeerLink,
    /// The neighbour's internet as it last told us; `None` before it did.
    pub peer_uplink_up: Option<bool>,
    /// Our messages the neighbour holds, not yet published (as it last told us).
    pub held_by_peer: u64,
    /// The neighbour's messages we hold, not yet published.
    pub held_for_peer: u64,
    /// Our messages the neighbour took into custody.
    pub handed_over_total: u64,
    /// Our messages the neighbour refused (its store was full); we kept them.
    pub refused_by_peer_total: u64,
    /// The neighbour's messages our broker acknowledged on its topics.
    pub relayed_for_peer_total: u64,
    /// Our messages are being handed to this neighbour now.
    pub custody_active: bool,
    /// Our messages the neighbour took and has not yet reported published:
    /// kept on our disk (and counted in our quota) until it does.
    pub handed_over_unpublished: u64,
    /// Our handed-over messages that came back to our outbox: the
    /// neighbour's store was replaced, or it published nothing while our
    /// own uplink was up.
    pub reclaimed_total: u64,
    /// Why messages last came back, as a sentence.
    pub last_reclaim: Option<String>,
    /// Downlinks shared with this neighbour (docs/peering.md §7).
    pub mail: PeerMail,
}

/// Downlinks shared with one neighbour, so whichever gateway hears the
/// device first delivers it.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct PeerMail {
    /// Copies of the neighbour's downlinks this gateway holds (delivery
    /// notes not yet settled included).
    pub held_for_peer: u64,
    /// Of those, delivered by this gateway and not yet settled by the
    /// neighbour (it is told whenever the link is up).
    pub delivered_unsettled: u64,
    /// Copies of our downlinks the neighbour holds or must still drop, as
    /// far as this gateway knows.
    pub held_by_peer: u64,
    /// Our downlinks the neighbour took a copy of.
    pub offered_total: u64,
    /// The neighbour's downlinks this gateway took a copy of.
    pub taken_total: u64,
    /// Our downlinks the neighbour delivered (we published the receipt).
    pub delivered_by_peer_total: u64,
    /// The neighbour's downlinks this gateway delivered (it published the
    /// receipt).
    pub delivered_for_peer_total: u64,
    /// Copies of the neighbour's downlinks dropped undelivered because it
    /// withdrew them (delivered elsewhere, or expired).
    pub withdrawn_total: u64,
}

/// A connection that was turned away.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PeerRefusal {
    pub at_ms: u64,
    /// The remote address.
    pub from: String,
    /// `unlisted_key`, `handshake` or `unsupported_version`.
    pub reason: String,
    pub text: String,
}

/// `/api/v1/peers` without its `now_ms`.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Peers {
    /// Where neighbours connect to us; `None` when not listening.
    pub bind: Option<String>,
    pub peers: Vec<Peer>,
    /// Connections refused, by reason.
    pub refused_total: BTreeMap<String, u64>,
    pub last_refusal: Option<PeerRefusal>,
}

/// `/api/v1/peers`.
#[derive(Debug, Serialize)]
pub struct PeersDocument {
    pub now_ms: u64,
    #[serde(flatten)]
    pub peers: Peers,
}

pub async fn handler(State(state): State<AppState>) -> Result<Json<PeersDocument>, ProviderFailed> {
    let peers = state.ask(|view| view.peers()).await?;
    Ok(Json(PeersDocument {
        now_ms: now_ms(),
        peers,
    }))
}
