//! Ledger-sync offers: telling a device that is behind how far the ledger
//! has grown, so it can decide to sync.
//!
//! The heartbeat spec is explicit that hearing a heartbeat never starts a
//! sync by itself (§7); the gateway only *offers*. It does so when the
//! neighbor table says a sync would help (the device is behind the best
//! known height, sync_capable, not low on power, and speaks our protocol
//! major version) and at most once per `sync_offer_interval_s` per device,
//! since a device that declines keeps sending heartbeats and every offer
//! costs airtime. Offers go out at [`Priority::SyncOffer`], after acks and
//! downlinks, straight after the heartbeat that showed the device behind
//! (its receive window).
//!
//! Limit: the offer carries the best known height but an all-zero
//! `head_hash`. The gateway holds no ledger, and no backend message tells it
//! the head hash yet; a device must treat a zero hash as "unknown" and learn
//! the head from the sync itself.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use radio_bridge::frame::{DeviceId, Envelope, Frame, LedgerSync, Message, ProtocolVersion};
use radio_bridge::identity::Identity;
use radio_bridge::link::RxMeta;
use tokio::time::Instant;

use crate::ingest::IngestObserver;
use crate::scheduler::{Priority, SchedulerHandle, TxRequest};
use crate::state::GatewayState;

/// Remembered offer times beyond this many devices are pruned.
const REMEMBERED_DEVICES: usize = 10_000;

pub struct SyncOffers {
    identity: Identity,
    state: Arc<GatewayState>,
    scheduler: SchedulerHandle,
    /// Least time between two offers to one device; zero disables offers.
    interval: Duration,
    last_offer: Mutex<HashMap<DeviceId, Instant>>,
    pub offered: AtomicU64,
}

impl SyncOffers {
    pub fn new(
        identity: Identity,
        state: Arc<GatewayState>,
        scheduler: SchedulerHandle,
        interval: Duration,
    ) -> SyncOffers {
        SyncOffers {
            identity,
            state,
            scheduler,
            interval,
            last_offer: Mutex::new(HashMap::new()),
            offered: AtomicU64::new(0),
        }
    }

    /// Whether this device may get an offer now; records it if so.
    fn take_turn(&self, device: DeviceId, now: Instant) -> bool {
        let mut last = self
            .last_offer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if last
            .get(&device)
            .is_some_and(|t| now.duration_since(*t) < self.interval)
        {
            return false;
        }
        if last.len() >= REMEMBERED_DEVICES {
            let interval = self.interval;
            last.retain(|_, t| now.duration_since(*t) < interval);
        }
        last.insert(device, now);
        true
    }
}

impl IngestObserver for SyncOffers {
    fn heard(&self, frame: &Frame, rx: &RxMeta) {
        if self.interval.is_zero() || !matches!(frame.envelope.message, Message::Heartbeat(_)) {
            return;
        }
        let device = frame.envelope.device_id;
        let (hint, best) = {
            let table = self.state.neighbors();
            (table.sync_hint(&device), table.best_height())
        };
        if !hint.is_some_and(|h| h.would_help) || !self.take_turn(device, Instant::now()) {
            return;
        }
        let envelope = Envelope {
            version: ProtocolVersion::CURRENT,
            device_id: self.identity.device_id(),
            to: Some(device),
            seq: None,
            message: Message::LedgerSync(LedgerSync::Offer {
                ledger_height: best,
                head_hash: [0; 32],
                timestamp_counter: None,
            }),
        };
        let Ok(offer) = Frame::sign(envelope, self.identity.signing_key()) else {
            return;
        };
        self.offered.fetch_add(1, Ordering::Relaxed);
        self.scheduler.submit(TxRequest::Frame {
            link: Some(rx.link.clone()),
            via: rx.via.clone(),
            priority: Priority::SyncOffer,
            bytes: offer.bytes,
            tag: 0,
        });
    }
}

#[cfg(test)]
mod tests {
    use radio_bridge::duty_cycle::Region;
    use radio_bridge::frame::{Capabilities, DeviceClass, Heartbeat, PowerState};

    use super::*;
    use crate::neighbors::NeighborTable;
    use crate::scheduler::Scheduler;

    fn heartbeat(id: &Identity, counter: u32, height: u64, power: PowerState) -> Frame {
        Frame::sign(
            Envelope {
                version: ProtocolVersion::CURRENT,
                device_id: id.device_id(),
                to: None,
                seq: None,
                message: Message::Heartbeat(Heartbeat {
                    device_class: DeviceClass::Handheld,
                    timestamp_counter: counter,
                    power_state: power,
                    ledger_height: height,
                    sync_capable: true,
                    capabilities: Capabilities::default(),
                }),
            },
            id.signing_key(),
        )
        .unwrap()
    }

    /// Feeds a heartbeat through the neighbor table, as ingest does, then
    /// to the observer.
    fn hear(state: &GatewayState, offers: &SyncOffers, frame: &Frame) {
        let rx = RxMeta::now("r0");
        if let Message::Heartbeat(hb) = &frame.envelope.message {
            state
                .neighbors()
                .heartbeat(frame.envelope.device_id, frame.envelope.version, hb, &rx);
        }
        offers.heard(frame, &rx);
    }

    #[tokio::test(start_paused = true)]
    async fn offers_only_when_it_helps_and_not_too_often() {
        let gateway = Identity::from_seed([1; 32]);
        let state = Arc::new(GatewayState::new(gateway.id_hex(), NeighborTable::new()));
        let (_s, handle, mut requests) = Scheduler::new(gateway.clone(), vec![], Region::Eu868);
        let offers = SyncOffers::new(
            gateway.clone(),
            state.clone(),
            handle,
            Duration::from_secs(600),
        );
        let ahead = Identity::from_seed([2; 32]);
        let behind = Identity::from_seed([3; 32]);
        let sleepy = Identity::from_seed([4; 32]);
        hear(
            &state,
            &offers,
            &heartbeat(&ahead, 1, 300, PowerState::Normal),
        );
        hear(
            &state,
            &offers,
            &heartbeat(&sleepy, 1, 100, PowerState::LowPower),
        );
        assert!(
            requests.try_recv().is_err(),
            "up to date / low power: no offer"
        );

        hear(
            &state,
            &offers,
            &heartbeat(&behind, 1, 280, PowerState::Normal),
        );
        let Ok(TxRequest::Frame {
            priority,
            bytes,
            link,
            ..
        }) = requests.try_recv()
        else {
            panic!("an offer for the device that is behind");
        };
        assert_eq!(priority, Priority::SyncOffer);
        assert_eq!(link.as_deref(), Some("r0"));
        let offer = Frame::decode(&bytes).unwrap();
        assert_eq!(offer.envelope.to, Some(behind.device_id()));
        assert_eq!(
            offer.envelope.message,
            Message::LedgerSync(LedgerSync::Offer {
                ledger_height: 300,
                head_hash: [0; 32],
                timestamp_counter: None,
            })
        );

        tokio::time::advance(Duration::from_secs(599)).await;
        hear(
            &state,
            &offers,
            &heartbeat(&behind, 2, 280, PowerState::Normal),
        );
        assert!(requests.try_recv().is_err(), "rate-limited per device");
        tokio::time::advance(Duration::from_secs(1)).await;
        hear(
            &state,
            &offers,
            &heartbeat(&behind, 3, 280, PowerState::Normal),
        );
        assert!(
            requests.try_recv().is_ok(),
            "offered again after the interval"
        );
        tokio::time::advance(Duration::from_secs(600)).await;
        hear(
            &state,
            &offers,
            &heartbeat(&behind, 4, 300, PowerState::Normal),
        );
        assert!(requests.try_recv().is_err(), "caught up: nothing to offer");
        assert_eq!(offers.offered.load(Ordering::Relaxed), 2);
    }
}
