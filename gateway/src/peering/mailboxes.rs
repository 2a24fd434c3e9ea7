//! Mailboxes that follow roaming devices (`docs/peering.md` §7): our
//! downlinks offered to neighbours, and neighbours' downlinks held here.
//!
//! Everything travels on the link the accepting gateway dials (the same
//! direction as custody: the gateway whose messages they are dials), from
//! version 2 of the protocol on:
//!
//! - `Offering` runs in our outbound session: it offers our pending
//!   downlinks, records which the neighbour took, settles the neighbour's
//!   deliveries through our own mailbox (which writes the one receipt) and
//!   withdraws copies of downlinks that are finished.
//! - `Holding` runs in the inbound session: it takes copies into our
//!   mailbox (durably, before `taken`), drops them when withdrawn, and
//!   tells the accepting gateway what the device acked.
//!
//! Both sides keep what is in flight on this connection only; after a
//! dropped link everything not settled in the store is sent again, and
//! each message is idempotent on the receiving side.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use tokio::io::AsyncWrite;

use super::wire::{self, hex_array, Delivery, Mail, Message};
use super::Shared;

/// At most this many downlinks per `offer` or `withdraw`.
const BATCH: usize = 64;
/// Without a wake-up from the mailbox, look at the store this often.
const RECHECK: Duration = Duration::from_secs(1);
/// After a neighbour declined copies (its mailbox is full), offer again
/// after this long.
const DECLINE_PAUSE: Duration = Duration::from_secs(10);

/// What the peering layer needs from the gateway's mailbox.
pub trait PeerDeliveries: Send + Sync {
    /// Neighbour `by` delivered our downlink `request_id` to `device_id`
    /// after `attempts` transmissions. Resolves once the downlink is
    /// settled: its one receipt durable in our outbox, or it was already
    /// finished (then nothing is written).
    fn delivered_by_peer(
        &self,
        request_id: [u8; 16],
        device_id: [u8; 32],
        by: [u8; 32],
        attempts: u32,
    ) -> oneshot::Receiver<Result<(), String>>;
}

/// The mailbox, as the peering layer sees it.
#[derive(Clone)]
pub struct MailboxLink {
    /// Bumped whenever a downlink is accepted, finished or delivered for a
    /// neighbour, so offers, withdrawals and notes go out without delay.
    pub changes: watch::Receiver<u64>,
    pub deliveries: Arc<dyn PeerDeliveries>,
}

/// Whether it is time to look at the store again.
struct Due {
    changes: watch::Receiver<u64>,
    last: Option<Instant>,
    recheck: tokio::time::Interval,
}

impl Due {
    fn new(link: &MailboxLink) -> Due {
        let mut recheck = tokio::time::interval(RECHECK);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Due {
            changes: link.changes.clone(),
            last: None,
            recheck,
        }
    }

    fn now(&mut self) -> bool {
        let changed = self.changes.has_changed().unwrap_or(false);
        let stale = self.last.is_none_or(|t| t.elapsed() >= RECHECK);
        if changed || stale {
            self.changes.borrow_and_update();
            self.last = Some(Instant::now());
            return true;
        }
        false
    }

    /// Resolves when the mailbox changed or a recheck is due (both
    /// cancel-safe, for `select!`).
    async fn wait(&mut self) {
        tokio::select! {
            changed = self.changes.changed() => {
                if changed.is_err() {
                    self.recheck.tick().await;
                }
            }
            _ = self.recheck.tick() => {}
        }
        self.last = None;
    }
}

/// Resolves when `due` may have something to send; never without it.
async fn wait(due: Option<&mut Due>) {
    match due {
        Some(due) => due.wait().await,
        None => std::future::pending().await,
    }
}

async fn send_all<W: AsyncWrite + Unpin>(
    writer: &mut W,
    messages: Vec<Message>,
) -> Result<(), String> {
    for message in &messages {
        wire::write_message(writer, message)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn ids_of(texts: &[String]) -> Result<Vec<[u8; 16]>, String> {
    texts
        .iter()
        .map(|t| hex_array(t).ok_or_else(|| format!("malformed request id {t:?}")))
        .collect()
}

fn store_error(e: impl std::fmt::Display) -> String {
    format!("store: {e}")
}

/// Our side of the link we dial: our downlinks offered to the neighbour.
pub(super) struct Offering {
    index: usize,
    peer: [u8; 32],
    link: MailboxLink,
    due: Due,
    /// Offered on this connection, not yet answered.
    offered: HashSet<[u8; 16]>,
    /// Withdrawals sent on this connection, not yet confirmed.
    withdrawing: HashSet<[u8; 16]>,
    paused_until: Option<Instant>,
}

impl Offering {
    /// `None` on a link without shared mailboxes (version 1, or no
    /// mailbox in this process).
    pub(super) fn new(shared: &Shared, index: usize, version: u16) -> Option<Offering> {
        let link = shared.mailboxes.clone()?;
        (version >= super::wire::MAILBOX_VERSION).then(|| Offering {
            index,
            peer: shared.peers[index].key,
            due: Due::new(&link),
            link,
            offered: HashSet::new(),
            withdrawing: HashSet::new(),
            paused_until: None,
        })
    }

    /// Resolves when there may be offers or withdrawals to send (never on
    /// a link without shared mailboxes).
    pub(super) async fn next_due(this: &mut Option<Offering>) {
        wait(this.as_mut().map(|o| &mut o.due)).await
    }

    /// Sends the offers and withdrawals due (rate-limited: after a change
    /// in the mailbox, or once per recheck period).
    pub(super) async fn send_due<W: AsyncWrite + Unpin>(
        this: &mut Option<Offering>,
        shared: &Shared,
        writer: &mut W,
    ) -> Result<(), String> {
        let Some(offering) = this else {
            return Ok(());
        };
        let messages = offering.due(shared).await?;
        send_all(writer, messages).await
    }

    /// Handles one of the neighbour's answers; false if `message` is none
    /// of the mailbox messages a version-2 link carries this way.
    pub(super) async fn answer(
        this: &mut Option<Offering>,
        shared: &Shared,
        message: &Message,
    ) -> Result<bool, String> {
        match this {
            Some(offering) => offering.on_answer(shared, message).await,
            None => Ok(false),
        }
    }

    async fn due(&mut self, shared: &Shared) -> Result<Vec<Message>, String> {
        if !self.due.now() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let withdraw: Vec<[u8; 16]> = shared
            .store
            .peer_mail_to_withdraw(self.peer, BATCH + self.withdrawing.len())
            .await
            .map_err(store_error)?
            .into_iter()
            .filter(|id| self.withdrawing.insert(*id))
            .take(BATCH)
            .collect();
        if !withdraw.is_empty() {
            out.push(Message::Withdraw {
                ids: withdraw.iter().map(hex::encode).collect(),
            });
        }
        if self.paused_until.is_some_and(|t| Instant::now() < t) {
            return Ok(out);
        }
        self.paused_until = None;
        let mail: Vec<Mail> = shared
            .store
            .peer_mail_to_offer(self.peer, BATCH + self.offered.len())
            .await
            .map_err(store_error)?
            .iter()
            .filter(|entry| self.offered.insert(entry.down_msg_id))
            .take(BATCH)
            .map(Mail::from_entry)
            .collect();
        if !mail.is_empty() {
            out.push(Message::Offer { mail });
        }
        Ok(out)
    }

    async fn on_answer(&mut self, shared: &Shared, message: &Message) -> Result<bool, String> {
        match message {
            Message::Taken { ids } => {
                let ids = ids_of(ids)?;
                for id in &ids {
                    self.offered.remove(id);
                }
                let count = shared
                    .store
                    .peer_mail_taken(self.peer, ids)
                    .await
                    .map_err(store_error)?;
                shared
                    .state
                    .update(self.index, |v| v.mail.offered_total += count);
            }
            Message::Declined { ids, reason } => {
                for id in ids_of(ids)? {
                    self.offered.remove(&id);
                }
                let peer = &shared.peers[self.index].name;
                tracing::info!(peer = %peer, count = ids.len(), "neighbour declined downlink copies: {reason}");
                self.paused_until = Some(Instant::now() + DECLINE_PAUSE);
            }
            Message::Delivered { deliveries } => {
                for delivery in deliveries {
                    self.settle(shared, delivery).await?;
                }
            }
            Message::Withdrawn { ids } => {
                let ids = ids_of(ids)?;
                for id in &ids {
                    self.withdrawing.remove(id);
                }
                shared
                    .store
                    .peer_mail_withdrawn(self.peer, ids)
                    .await
                    .map_err(store_error)?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The neighbour delivered one of our downlinks: our mailbox writes the
    /// receipt (or finds the downlink already finished), then every copy,
    /// this neighbour's note included, is withdrawn.
    async fn settle(&mut self, shared: &Shared, delivery: &Delivery) -> Result<(), String> {
        let request_id: [u8; 16] = hex_array(&delivery.request_id)
            .ok_or_else(|| format!("malformed request id {:?}", delivery.request_id))?;
        let device_id: [u8; 32] = hex_array(&delivery.device_id)
            .ok_or_else(|| format!("malformed device id {:?}", delivery.device_id))?;
        self.link
            .deliveries
            .delivered_by_peer(request_id, device_id, self.peer, delivery.attempts)
            .await
            .map_err(|_| "the mailbox has stopped".to_string())??;
        // Our entry is gone now, so this records a withdrawal.
        shared
            .store
            .peer_mail_taken(self.peer, vec![request_id])
            .await
            .map_err(store_error)?;
        self.withdrawing.remove(&request_id);
        shared
            .state
            .update(self.index, |v| v.mail.delivered_by_peer_total += 1);
        self.due.last = None;
        Ok(())
    }
}

/// Our side of the link a neighbour dials: copies of its downlinks.
pub(super) struct Holding {
    index: usize,
    origin: [u8; 32],
    due: Due,
    /// Delivery notes sent on this connection.
    told: HashSet<[u8; 16]>,
}

impl Holding {
    pub(super) fn new(shared: &Shared, index: usize, version: u16) -> Option<Holding> {
        let link = shared.mailboxes.as_ref()?;
        (version >= super::wire::MAILBOX_VERSION).then(|| Holding {
            index,
            origin: shared.peers[index].key,
            due: Due::new(link),
            told: HashSet::new(),
        })
    }

    /// Resolves when there may be delivery notes to send.
    pub(super) async fn next_due(this: &mut Option<Holding>) {
        wait(this.as_mut().map(|h| &mut h.due)).await
    }

    /// Sends the delivery notes not yet sent on this connection.
    pub(super) async fn send_due<W: AsyncWrite + Unpin>(
        this: &mut Option<Holding>,
        shared: &Shared,
        writer: &mut W,
    ) -> Result<(), String> {
        let Some(holding) = this else {
            return Ok(());
        };
        let messages = holding.due(shared).await?;
        send_all(writer, messages).await
    }

    /// Handles an offer or a withdrawal and sends the answer; false if
    /// `message` is neither (or the link has no shared mailboxes).
    pub(super) async fn answer<W: AsyncWrite + Unpin>(
        this: &mut Option<Holding>,
        shared: &Shared,
        message: &Message,
        writer: &mut W,
    ) -> Result<bool, String> {
        let Some(holding) = this else {
            return Ok(false);
        };
        match holding.on_message(shared, message).await? {
            Some(replies) => send_all(writer, replies).await.map(|()| true),
            None => Ok(false),
        }
    }

    async fn due(&mut self, shared: &Shared) -> Result<Vec<Message>, String> {
        if !self.due.now() {
            return Ok(Vec::new());
        }
        let deliveries: Vec<Delivery> = shared
            .store
            .peer_mail_delivered(self.origin)
            .await
            .map_err(store_error)?
            .into_iter()
            .filter(|note| self.told.insert(note.down_msg_id))
            .take(BATCH)
            .map(|note| Delivery {
                request_id: hex::encode(note.down_msg_id),
                device_id: hex::encode(note.device_id),
                attempts: note.attempts,
            })
            .collect();
        Ok(if deliveries.is_empty() {
            Vec::new()
        } else {
            vec![Message::Delivered { deliveries }]
        })
    }

    async fn on_message(
        &mut self,
        shared: &Shared,
        message: &Message,
    ) -> Result<Option<Vec<Message>>, String> {
        match message {
            Message::Offer { mail } => {
                let mut mails = Vec::with_capacity(mail.len());
                for m in mail {
                    mails.push(m.to_new_mail().ok_or_else(|| {
                        format!("offered downlink {} is malformed", m.request_id)
                    })?);
                }
                let (held, new) = shared
                    .store
                    .peer_mail_take(self.origin, mails)
                    .await
                    .map_err(store_error)?;
                let (mut taken, mut declined) = (Vec::new(), Vec::new());
                for (m, held) in mail.iter().zip(held) {
                    if held {
                        taken.push(m.request_id.clone());
                    } else {
                        declined.push(m.request_id.clone());
                    }
                }
                shared
                    .state
                    .update(self.index, |v| v.mail.taken_total += new);
                let mut replies = Vec::new();
                if !taken.is_empty() {
                    replies.push(Message::Taken { ids: taken });
                }
                if !declined.is_empty() {
                    replies.push(Message::Declined {
                        ids: declined,
                        reason: "this gateway's mailbox is full".into(),
                    });
                }
                Ok(Some(replies))
            }
            Message::Withdraw { ids } => {
                let parsed = ids_of(ids)?;
                for id in &parsed {
                    self.told.remove(id);
                }
                let (copies, notes) = shared
                    .store
                    .peer_mail_withdraw(self.origin, parsed)
                    .await
                    .map_err(store_error)?;
                shared.state.update(self.index, |v| {
                    v.mail.withdrawn_total += copies;
                    v.mail.delivered_for_peer_total += notes;
                });
                Ok(Some(vec![Message::Withdrawn { ids: ids.clone() }]))
            }
            _ => Ok(None),
        }
    }
}
