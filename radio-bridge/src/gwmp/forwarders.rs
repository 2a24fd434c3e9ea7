//! The packet forwarders a [`GwmpLink`](super::GwmpLink) has heard, keyed by
//! gateway EUI, and the two questions asked of them: is anyone alive, and
//! where does a downlink go.
//!
//! A Semtech forwarder talks from two sockets: PUSH_DATA from its "up" port,
//! PULL_DATA from its "down" port. Only the PULL_DATA source address can
//! receive PULL_RESP (the forwarder listens for downlinks on that socket
//! alone, and it may sit behind a NAT that only that keep-alive keeps open),
//! so that is the address remembered as the downlink path.
//!
//! Entries silent for longer than the keep-alive window are forgotten, so a
//! stream of spoofed EUIs cannot grow the table without bound.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use super::packet::Eui;

#[derive(Debug)]
struct Forwarder {
    /// Last valid datagram of any kind.
    last_heard: Instant,
    /// Source of the last PULL_DATA, and when it came.
    downlink: Option<(SocketAddr, Instant)>,
}

#[derive(Debug)]
pub(crate) struct Forwarders {
    window: Duration,
    /// If set, downlinks go only to this gateway.
    pinned: Option<Eui>,
    known: HashMap<Eui, Forwarder>,
}

impl Forwarders {
    pub fn new(window: Duration, pinned: Option<Eui>) -> Forwarders {
        Forwarders {
            window,
            pinned,
            known: HashMap::new(),
        }
    }

    /// Any valid datagram from `gateway` arrived.
    pub fn heard(&mut self, gateway: Eui, now: Instant) {
        self.known
            .entry(gateway)
            .and_modify(|f| f.last_heard = now)
            .or_insert(Forwarder {
                last_heard: now,
                downlink: None,
            });
    }

    /// A PULL_DATA from `gateway` arrived from `from`.
    pub fn pulled(&mut self, gateway: Eui, from: SocketAddr, now: Instant) {
        self.heard(gateway, now);
        if let Some(forwarder) = self.known.get_mut(&gateway) {
            forwarder.downlink = Some((from, now));
        }
    }

    fn fresh(&self, at: Instant, now: Instant) -> bool {
        now.saturating_duration_since(at) < self.window
    }

    /// Whether some forwarder was heard within the window.
    pub fn any_alive(&self, now: Instant) -> bool {
        self.known.values().any(|f| self.fresh(f.last_heard, now))
    }

    /// When the last forwarder still alive falls silent, if none speaks again.
    pub fn silent_at(&self) -> Option<Instant> {
        self.known
            .values()
            .map(|f| f.last_heard + self.window)
            .max()
    }

    /// Where to send a downlink: the pinned gateway if configured; else
    /// `preferred` (the forwarder that heard the device being answered) if
    /// it can still be reached; else the one whose PULL_DATA is most
    /// recent. Only forwarders whose PULL_DATA is within the window count.
    pub fn downlink_target(
        &self,
        preferred: Option<Eui>,
        now: Instant,
    ) -> Option<(Eui, SocketAddr)> {
        self.reachable(now)
            .find(|(eui, _, _)| Some(*eui) == preferred)
            .or_else(|| self.reachable(now).max_by_key(|(_, _, at)| *at))
            .map(|(eui, addr, _)| (eui, addr))
    }

    /// Where a frame for everyone goes: every forwarder whose PULL_DATA is
    /// within the window (only the pinned gateway, if configured).
    pub fn broadcast_targets(&self, now: Instant) -> Vec<(Eui, SocketAddr)> {
        let mut targets: Vec<(Eui, SocketAddr)> = self
            .reachable(now)
            .map(|(eui, addr, _)| (eui, addr))
            .collect();
        targets.sort();
        targets
    }

    /// Forwarders a downlink may go to (the pinned one alone, if set), with
    /// the address and time of their last PULL_DATA, if it is current.
    fn reachable(&self, now: Instant) -> impl Iterator<Item = (Eui, SocketAddr, Instant)> + '_ {
        self.known
            .iter()
            .filter(|(eui, _)| self.pinned.is_none_or(|pinned| pinned == **eui))
            .filter_map(|(eui, f)| f.downlink.map(|(addr, at)| (*eui, addr, at)))
            .filter(move |(_, _, at)| self.fresh(*at, now))
    }

    /// Forgets forwarders silent for longer than the window.
    pub fn prune(&mut self, now: Instant) {
        let window = self.window;
        self.known
            .retain(|_, f| now.saturating_duration_since(f.last_heard) < window);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.known.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Eui = Eui([0xA; 8]);
    const B: Eui = Eui([0xB; 8]);
    const WINDOW: Duration = Duration::from_secs(30);

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn alive_only_within_the_window() {
        let t0 = Instant::now();
        let mut table = Forwarders::new(WINDOW, None);
        assert!(!table.any_alive(t0));
        assert_eq!(table.silent_at(), None);
        table.heard(A, t0);
        assert!(table.any_alive(t0 + Duration::from_secs(29)));
        assert!(!table.any_alive(t0 + WINDOW));
        assert_eq!(table.silent_at(), Some(t0 + WINDOW));
        table.heard(B, t0 + Duration::from_secs(10));
        assert_eq!(table.silent_at(), Some(t0 + Duration::from_secs(40)));
        assert!(table.any_alive(t0 + Duration::from_secs(35)));
    }

    #[test]
    fn downlink_needs_a_fresh_pull_data() {
        let t0 = Instant::now();
        let mut table = Forwarders::new(WINDOW, None);
        table.heard(A, t0);
        assert_eq!(
            table.downlink_target(None, t0),
            None,
            "PUSH_DATA is not a downlink path"
        );
        table.pulled(A, addr(1), t0);
        assert_eq!(table.downlink_target(None, t0), Some((A, addr(1))));
        assert_eq!(table.downlink_target(None, t0 + WINDOW), None);
    }

    #[test]
    fn most_recent_pull_data_wins_unless_pinned() {
        let t0 = Instant::now();
        let mut table = Forwarders::new(WINDOW, None);
        table.pulled(A, addr(1), t0);
        table.pulled(B, addr(2), t0 + Duration::from_secs(1));
        let now = t0 + Duration::from_secs(2);
        assert_eq!(table.downlink_target(None, now), Some((B, addr(2))));
        table.pulled(A, addr(3), now);
        assert_eq!(
            table.downlink_target(None, now),
            Some((A, addr(3))),
            "address follows the latest PULL_DATA"
        );

        let mut pinned = Forwarders::new(WINDOW, Some(A));
        pinned.pulled(A, addr(1), t0);
        pinned.pulled(B, addr(2), now);
        assert_eq!(pinned.downlink_target(None, now), Some((A, addr(1))));
        assert_eq!(
            pinned.downlink_target(None, t0 + WINDOW),
            None,
            "never falls back to another gateway"
        );
    }

    #[test]
    fn the_forwarder_that_heard_the_device_is_preferred_while_reachable() {
        let t0 = Instant::now();
        let mut table = Forwarders::new(WINDOW, None);
        table.pulled(A, addr(1), t0);
        table.pulled(B, addr(2), t0 + Duration::from_secs(5));
        let now = t0 + Duration::from_secs(6);
        assert_eq!(table.downlink_target(Some(A), now), Some((A, addr(1))));
        assert_eq!(table.downlink_target(Some(B), now), Some((B, addr(2))));
        let unknown = Eui([0xC; 8]);
        assert_eq!(
            table.downlink_target(Some(unknown), now),
            Some((B, addr(2))),
            "an unknown forwarder falls back to the latest PULL_DATA"
        );
        // A's PULL_DATA is out of the window, B's is not.
        assert_eq!(
            table.downlink_target(Some(A), t0 + WINDOW),
            Some((B, addr(2))),
            "a forwarder gone silent is not used"
        );

        let mut pinned = Forwarders::new(WINDOW, Some(A));
        pinned.pulled(A, addr(1), t0);
        pinned.pulled(B, addr(2), now);
        assert_eq!(
            pinned.downlink_target(Some(B), now),
            Some((A, addr(1))),
            "the configured gateway wins"
        );
    }

    #[test]
    fn silent_forwarders_are_forgotten() {
        let t0 = Instant::now();
        let mut table = Forwarders::new(WINDOW, None);
        table.pulled(A, addr(1), t0);
        table.heard(B, t0 + Duration::from_secs(20));
        table.prune(t0 + Duration::from_secs(31));
        assert_eq!(table.len(), 1);
        assert_eq!(
            table.downlink_target(None, t0 + Duration::from_secs(31)),
            None
        );
    }
}
