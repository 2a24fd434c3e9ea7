//! What the peering tasks know about each neighbour, for the status page,
//! `/api/v1/peers` and `/metrics`. Written by the link tasks, read by the
//! web UI as snapshots; the mutex is never held across an `.await`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use radio_bridge::link::unix_millis;
use serde::Serialize;

/// One direction of the link with a neighbour.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct LinkView {
    pub connected: bool,
    /// When `connected` last changed, ms since the Unix epoch.
    pub since_ms: Option<u64>,
    /// Why the link is down or last went down, as a sentence.
    pub last_error: Option<String>,
    pub last_error_ms: Option<u64>,
}

/// One neighbour as the status page shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PeerView {
    pub name: String,
    pub gateway_id: String,
    pub address: String,
    /// The link we dial: our rows go to the neighbour over it.
    pub outbound: LinkView,
    /// The link the neighbour dials: its rows come to us over it.
    pub inbound: LinkView,
    /// The neighbour's uplink as it last told us; `None` before it did.
    pub peer_uplink_up: Option<bool>,
    /// The neighbour is holding this many of our rows (as it last told us).
    pub held_by_peer: u64,
    /// We hold this many rows for the neighbour, not yet published.
    pub held_for_peer: u64,
    /// Our rows the neighbour took into custody (acknowledged).
    pub handed_over_total: u64,
    /// Our rows the neighbour refused (e.g. its store was full).
    pub refused_by_peer_total: u64,
    /// The neighbour's rows our broker acknowledged on its topics.
    pub relayed_for_peer_total: u64,
    /// Of our rows, we are streaming them to this neighbour now.
    pub custody_active: bool,
}

/// A connection that was turned away.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Refusal {
    pub at_ms: u64,
    pub from: String,
    /// `unlisted_key`, `wrong_key`, `handshake`, `unsupported_version`.
    pub reason: &'static str,
    pub text: String,
}

/// Everything the peering layer shows.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct PeeringView {
    /// Where neighbours connect to us; `None` when `[peering] bind` is unset.
    pub bind: Option<String>,
    pub peers: Vec<PeerView>,
    /// Connections refused, by reason.
    pub refused_total: BTreeMap<&'static str, u64>,
    pub last_refusal: Option<Refusal>,
}

#[derive(Debug, Default)]
pub struct PeeringState {
    view: Mutex<PeeringView>,
}

fn now_ms() -> u64 {
    unix_millis(std::time::SystemTime::now())
}

impl PeeringState {
    pub fn new(bind: Option<SocketAddr>, peers: Vec<(String, String, String)>) -> PeeringState {
        let peers = peers
            .into_iter()
            .map(|(name, gateway_id, address)| PeerView {
                name,
                gateway_id,
                address,
                outbound: LinkView::default(),
                inbound: LinkView::default(),
                peer_uplink_up: None,
                held_by_peer: 0,
                held_for_peer: 0,
                handed_over_total: 0,
                refused_by_peer_total: 0,
                relayed_for_peer_total: 0,
                custody_active: false,
            })
            .collect();
        PeeringState {
            view: Mutex::new(PeeringView {
                bind: bind.map(|b| b.to_string()),
                peers,
                ..PeeringView::default()
            }),
        }
    }

    pub fn snapshot(&self) -> PeeringView {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PeeringView> {
        self.view.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes one neighbour's entry (by index in the config's order).
    pub fn update(&self, peer: usize, change: impl FnOnce(&mut PeerView)) {
        if let Some(view) = self.lock().peers.get_mut(peer) {
            change(view);
        }
    }

    pub fn link_up(&self, peer: usize, outbound: bool) {
        self.update(peer, |v| {
            let link = if outbound {
                &mut v.outbound
            } else {
                &mut v.inbound
            };
            if !link.connected {
                link.connected = true;
                link.since_ms = Some(now_ms());
            }
        });
    }

    pub fn link_down(&self, peer: usize, outbound: bool, why: String) {
        self.update(peer, |v| {
            let link = if outbound {
                &mut v.outbound
            } else {
                &mut v.inbound
            };
            if link.connected || link.since_ms.is_none() {
                link.since_ms = Some(now_ms());
            }
            link.connected = false;
            link.last_error = Some(why);
            link.last_error_ms = Some(now_ms());
            if outbound {
                v.custody_active = false;
            }
        });
    }

    pub fn refused(&self, from: String, reason: &'static str, text: String) {
        let mut view = self.lock();
        *view.refused_total.entry(reason).or_default() += 1;
        view.last_refusal = Some(Refusal {
            at_ms: now_ms(),
            from,
            reason,
            text,
        });
    }

    pub fn set_held(&self, counts: &BTreeMap<[u8; 32], u64>, keys: &[[u8; 32]]) {
        let mut view = self.lock();
        for (peer, key) in view.peers.iter_mut().zip(keys) {
            peer.held_for_peer = counts.get(key).copied().unwrap_or(0);
        }
    }
}
