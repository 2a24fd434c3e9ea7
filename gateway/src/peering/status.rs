//! What the peering tasks know about each neighbour, for the status page,
//! `/api/v1/peers` and `/metrics` (the shapes are web-ui's [`Peers`]).
//! Written by the link tasks, read as snapshots; the mutex is never held
//! across an `.await`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use radio_bridge::link::unix_millis;
use web_ui::{Peer, PeerRefusal, Peers};

use crate::store::PeerMailCounts;

#[derive(Debug, Default)]
pub struct PeeringState {
    view: Mutex<Peers>,
}

fn now_ms() -> u64 {
    unix_millis(std::time::SystemTime::now())
}

impl PeeringState {
    /// `peers`: (name, gateway id, address) in config order.
    pub fn new(bind: Option<SocketAddr>, peers: Vec<(String, String, String)>) -> PeeringState {
        let peers = peers
            .into_iter()
            .map(|(name, gateway_id, address)| Peer {
                name,
                gateway_id,
                address,
                ..Peer::default()
            })
            .collect();
        PeeringState {
            view: Mutex::new(Peers {
                bind: bind.map(|b| b.to_string()),
                peers,
                ..Peers::default()
            }),
        }
    }

    pub fn snapshot(&self) -> Peers {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Peers> {
        self.view.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes one neighbour's entry (by index in the config's order).
    pub fn update(&self, peer: usize, change: impl FnOnce(&mut Peer)) {
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

    pub fn refused(&self, from: String, reason: &str, text: String) {
        let mut view = self.lock();
        *view.refused_total.entry(reason.to_string()).or_default() += 1;
        view.last_refusal = Some(PeerRefusal {
            at_ms: now_ms(),
            from,
            reason: reason.to_string(),
            text,
        });
    }

    pub fn set_held(&self, counts: &BTreeMap<[u8; 32], u64>, keys: &[[u8; 32]]) {
        let mut view = self.lock();
        for (peer, key) in view.peers.iter_mut().zip(keys) {
            peer.held_for_peer = counts.get(key).copied().unwrap_or(0);
        }
    }

    /// The shared-mailbox gauges, from the store.
    pub fn set_mail_held(&self, counts: &BTreeMap<[u8; 32], PeerMailCounts>, keys: &[[u8; 32]]) {
        let mut view = self.lock();
        for (peer, key) in view.peers.iter_mut().zip(keys) {
            let counts = counts.get(key).copied().unwrap_or_default();
            peer.mail.held_for_peer = counts.held_for_peer;
            peer.mail.delivered_unsettled = counts.delivered_unsettled;
            peer.mail.held_by_peer = counts.held_by_peer;
        }
    }
}
