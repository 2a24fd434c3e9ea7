//! The mailbox's side of downlinks shared with neighbour gateways
//! (`docs/peering.md` §7).
//!
//! This gateway decides the one receipt of every downlink it accepted: a
//! neighbour that delivered a copy says so (the peering layer hands it
//! here, onto the mailbox task, so it is ordered with this gateway's own
//! deliveries and expiry), and the receipt goes out as if delivered here,
//! naming the neighbour. A copy of a neighbour's downlink never gets a
//! receipt from us: delivered, it stays as a note until the neighbour
//! withdraws it; expired or out of attempts, it is simply dropped.

use std::sync::Arc;

use radio_bridge::frame::{DeviceId, Frame, MsgId};
use tokio::sync::oneshot;

use super::{Mailbox, Outcome, ReceiptFacts, Work};
use crate::peering::mailboxes::{MailboxLink, PeerDeliveries};
use crate::store::{MailboxEntry, MailboxMark, MailboxState};

/// A neighbour's word that it delivered one of our downlinks.
pub(super) struct PeerDelivery {
    pub(super) request_id: MsgId,
    pub(super) device_id: DeviceId,
    pub(super) by: DeviceId,
    pub(super) attempts: u32,
    pub(super) done: oneshot::Sender<Result<(), String>>,
}

impl PeerDeliveries for Mailbox {
    fn delivered_by_peer(
        &self,
        request_id: [u8; 16],
        device_id: [u8; 32],
        by: [u8; 32],
        attempts: u32,
    ) -> oneshot::Receiver<Result<(), String>> {
        let (done, answer) = oneshot::channel();
        // If the mailbox task is gone, `done` is dropped with the work and
        // the caller hears so.
        let _ = self.inner.work.send(Work::DeliveredByPeer(PeerDelivery {
            request_id,
            device_id,
            by,
            attempts,
            done,
        }));
        answer
    }
}

impl Mailbox {
    /// What the peering layer needs to share downlinks with neighbours.
    pub fn peer_link(&self) -> MailboxLink {
        MailboxLink {
            changes: self.inner.peer_changes.subscribe(),
            deliveries: Arc::new(self.clone()),
        }
    }

    /// Neighbours may have something new to hear about.
    pub(super) fn tell_peers(&self) {
        self.inner
            .peer_changes
            .send_modify(|n| *n = n.wrapping_add(1));
    }

    pub(super) async fn on_delivered_by_peer(&self, delivery: PeerDelivery) {
        let result = self.settle_peer_delivery(&delivery).await;
        if let Err(e) = &result {
            tracing::warn!("mailbox: a neighbour's delivery: {e}");
        }
        let _ = delivery.done.send(result);
    }

    async fn settle_peer_delivery(&self, delivery: &PeerDelivery) -> Result<(), String> {
        let held = self
            .inner
            .store
            .mailbox_for(delivery.device_id)
            .await
            .map_err(|e| e.to_string())?;
        let Some(entry) = held
            .into_iter()
            .find(|e| e.down_msg_id == delivery.request_id && e.origin.is_none())
        else {
            // Already finished here (delivered by us or another neighbour
            // first, or expired): its one receipt is written already.
            return Ok(());
        };
        let down = Frame::decode(&entry.payload_frame).ok();
        let facts = ReceiptFacts {
            delivered_by: Some(delivery.by),
            device_id: entry.device_id,
            request_id: entry.down_msg_id,
            msg_id: down.as_ref().map(|f| f.msg_id),
            seq: down.as_ref().and_then(|f| f.envelope.seq),
            attempts: delivery.attempts,
            accepted_at_ms: entry.created_at_ms,
            reason: None,
        };
        self.settle(&entry, Outcome::Delivered, facts).await
    }

    /// A neighbour's copy ends here. Delivered: kept (state `delivered`) as
    /// the durable note the peering layer sends until the neighbour
    /// withdraws it. Otherwise dropped: the neighbour decides its receipt.
    pub(super) async fn finish_copy(
        &self,
        entry: &MailboxEntry,
        outcome: Outcome,
    ) -> Result<(), String> {
        let store = &self.inner.store;
        let result = if outcome == Outcome::Delivered {
            let mark = MailboxMark {
                state: MailboxState::Delivered,
                attempted_at_ms: None,
            };
            store.mailbox_mark(entry.id, mark).await.map(drop)
        } else {
            store.mailbox_remove(vec![entry.id]).await.map(drop)
        };
        result.map_err(|e| e.to_string())?;
        self.in_flight().remove(&entry.id);
        self.tell_peers();
        Ok(())
    }
}
