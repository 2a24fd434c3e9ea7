//! Mailboxes: backend → device messages held until the device is heard.
//!
//! A downlink published on `…/down/{device_id}` is signed (or checked, if
//! the backend signed it), stored durably in that device's mailbox, and only
//! then PUBACKed: a crash in between means the broker delivers it again, and
//! the mailbox recognises the repeat (its key is a hash of device and
//! payload). When the device is next heard, its pending messages go out in
//! its receive window, in order. The device acks them like any message; an
//! unacked one is retried with exponential backoff, but only when the device
//! is heard again (sending to a device that is away only burns airtime). A
//! NACK naming sequence numbers or message ids redelivers exactly those.
//!
//! Every downlink ends in exactly one receipt on `…/receipt`: `delivered`,
//! `expired` (TTL passed), `failed` (attempts used up) or `rejected`
//! (mailbox full, or a payload that is not a valid message). Receipts travel
//! through the store's outbox, so they are as durable as device messages,
//! and their outbox ids are derived from the downlink, so writing one twice
//! (after a crash between receipt and clean-up) publishes it once.
//!
//! All decisions about one device happen on one task ([`Mailbox::run`]), in
//! the order frames were heard, and expiry runs on the same task: a
//! downlink can never be both delivered and expired.
//!
//! An attempt counts when the scheduler reports the frame on air, not when
//! it is queued: under a busy duty cycle a frame may wait, and queueing it
//! again meanwhile would only spend airtime on copies. While a downlink is
//! in flight (queued, not yet reported) it is not queued again.
//!
//! Downlinks are shared with trusted neighbour gateways (`peers.rs`,
//! docs/peering.md §7): a neighbour's copy is served here like our own but
//! ends without a receipt, and a neighbour's delivery of ours is settled on
//! this task, which alone writes receipts.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use radio_bridge::frame::json::{from_json, parse_text};
use radio_bridge::frame::{DeviceId, Envelope, Frame, Message, MessageType, MsgId};
use radio_bridge::identity::Identity;
use radio_bridge::link::{unix_millis, RxMeta};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::MailboxSection;
use crate::ingest::IngestObserver;
use crate::scheduler::{Priority, SchedulerHandle, TxReport, TxRequest};
use crate::state::GatewayState;
use crate::store::{
    Inbound, MailboxEntry, MailboxMark, MailboxPutOutcome, MailboxState, NewMail, Store,
};
use crate::uplink::incoming::{IncomingKind, IncomingMessage};
use crate::uplink::topics::GATEWAY_RECEIPT;

/// Longest a LoRa packet can be. Downlinks are not fragmented (yet), so a
/// frame must fit one packet; longer ones are rejected when they arrive.
pub const MAX_DOWNLINK_FRAME: usize = 255;

/// At most this many downlinks go out per "device heard": a device listens
/// for a short while after it transmits, and the rest wait for its next
/// transmission (its ack of these is one).
pub const DOWNLINKS_PER_WINDOW: usize = 8;

/// A downlink queued this long without the scheduler reporting it is
/// assumed lost in the queue and may be queued again.
const IN_FLIGHT_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Expiry is checked this often at most (more often for short TTLs).
const EXPIRY_CHECK_MAX: Duration = Duration::from_secs(15);
const EXPIRY_CHECK_MIN: Duration = Duration::from_millis(250);

/// Wall-clock milliseconds since the Unix epoch; injectable for tests.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Counters for the status page and benchmarks.
#[derive(Debug, Default)]
pub struct MailboxCounters {
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
    pub expired: AtomicU64,
    pub rejected: AtomicU64,
    /// Downlink frames handed to the transmit scheduler, retries included.
    pub transmissions: AtomicU64,
    /// Of those, sent because a device's NACK named them.
    pub nack_redeliveries: AtomicU64,
}

/// Work for the mailbox task, in arrival order.
// `Heard` is the large, frequent one (every frame heard); boxing it to suit
// the rare small one would cost an allocation per frame.
#[allow(clippy::large_enum_variant)]
enum Work {
    Heard {
        frame: Frame,
        rx: RxMeta,
    },
    /// A neighbour delivered a copy of one of our downlinks (`peers.rs`).
    DeliveredByPeer(peers::PeerDelivery),
}

#[derive(Clone)]
pub struct Mailbox {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    state: Arc<GatewayState>,
    scheduler: SchedulerHandle,
    identity: Identity,
    settings: MailboxSection,
    counters: MailboxCounters,
    clock: Clock,
    work: mpsc::UnboundedSender<Work>,
    work_rx: std::sync::Mutex<Option<mpsc::UnboundedReceiver<Work>>>,
    /// Mailbox entry id → when it was queued, for entries the scheduler has
    /// not reported yet. Only the [`Mailbox::run`] task touches it.
    in_flight: std::sync::Mutex<HashMap<u64, u64>>,
    /// Bumped when neighbours may have something new to hear about: a
    /// downlink accepted or finished, a neighbour's copy delivered.
    peer_changes: tokio::sync::watch::Sender<u64>,
}

/// A final outcome of one downlink, as its receipt names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Delivered,
    Expired,
    Failed,
    Rejected,
}

impl Outcome {
    fn name(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Expired => "expired",
            Outcome::Failed => "failed",
            Outcome::Rejected => "rejected",
        }
    }
}

/// What a receipt says besides its outcome.
struct ReceiptFacts {
    /// The neighbour gateway that delivered it, if not this one.
    delivered_by: Option<DeviceId>,
    device_id: DeviceId,
    request_id: MsgId,
    msg_id: Option<MsgId>,
    seq: Option<u64>,
    attempts: u32,
    accepted_at_ms: u64,
    reason: Option<String>,
}

impl Mailbox {
    pub fn new(
        store: Store,
        state: Arc<GatewayState>,
        scheduler: SchedulerHandle,
        identity: Identity,
        settings: MailboxSection,
    ) -> Mailbox {
        Self::with_clock(
            store,
            state,
            scheduler,
            identity,
            settings,
            Arc::new(|| unix_millis(SystemTime::now())),
        )
    }

    /// Like [`Mailbox::new`], with a clock the caller controls.
    pub fn with_clock(
        store: Store,
        state: Arc<GatewayState>,
        scheduler: SchedulerHandle,
        identity: Identity,
        settings: MailboxSection,
        clock: Clock,
    ) -> Mailbox {
        let (work, work_rx) = mpsc::unbounded_channel();
        Mailbox {
            inner: Arc::new(Inner {
                store,
                state,
                scheduler,
                identity,
                settings,
                counters: MailboxCounters::default(),
                clock,
                work,
                work_rx: std::sync::Mutex::new(Some(work_rx)),
                in_flight: std::sync::Mutex::new(HashMap::new()),
                peer_changes: tokio::sync::watch::channel(0).0,
            }),
        }
    }

    pub fn counters(&self) -> &MailboxCounters {
        &self.inner.counters
    }

    fn now(&self) -> u64 {
        (self.inner.clock)()
    }

    /// Stores backend publishes (downlinks) and acks each once stored.
    pub async fn accept(
        self,
        mut incoming: mpsc::UnboundedReceiver<IncomingMessage>,
        ota_commands: mpsc::UnboundedSender<IncomingMessage>,
        stop: CancellationToken,
    ) {
        loop {
            let message = tokio::select! {
                _ = stop.cancelled() => return,
                m = incoming.recv() => match m {
                    Some(m) => m,
                    None => return,
                },
            };
            let IncomingKind::Downlink { device_id } = message.kind else {
                // The OTA agent acks its commands itself, once noted.
                if ota_commands.send(message).is_err() {
                    tracing::warn!("the OTA agent has stopped; update command left unacknowledged");
                }
                continue;
            };
            match self.put(device_id, &message.payload).await {
                Ok(()) => {
                    if let Err(e) = message.ack.ack().await {
                        tracing::info!("downlink stored but not acked: {e}");
                    }
                }
                // Not stored and not acked: the broker redelivers it.
                Err(e) => self.inner.state.event(
                    "mailbox",
                    "error",
                    format!("Could not store a message for a device: {e}"),
                ),
            }
        }
    }

    /// Stores one downlink. `Ok` means it was handled for good: held, a
    /// repeat of one held, or rejected with a receipt.
    pub async fn put(&self, device_id: DeviceId, payload: &[u8]) -> Result<(), String> {
        let inner = &self.inner;
        let key = request_id(&device_id, payload);
        let now = self.now();
        let reject = |reason: String, msg_id: Option<MsgId>, seq: Option<u64>| ReceiptFacts {
            delivered_by: None,
            device_id,
            request_id: key,
            msg_id,
            seq,
            attempts: 0,
            accepted_at_ms: now,
            reason: Some(reason),
        };
        // Checked before a sequence number is spent on it: a broker
        // redelivery of a held message must not open a gap the device
        // would NACK, and neither should a message refused for room.
        let held = inner
            .store
            .mailbox_for(device_id)
            .await
            .map_err(|e| e.to_string())?;
        if held.iter().any(|e| e.down_msg_id == key) {
            return Ok(());
        }
        if held.len() >= inner.settings.max_per_device as usize {
            let reason = format!(
                "mailbox full: {} messages already wait for this device (limit {})",
                held.len(),
                inner.settings.max_per_device
            );
            return self
                .receipt(Outcome::Rejected, reject(reason, None, None))
                .await;
        }
        let total = inner.store.stats().mailbox_entries;
        if total >= u64::from(inner.settings.max_total) {
            let reason = format!(
                "mailbox full: {total} messages wait on this gateway (limit {})",
                inner.settings.max_total
            );
            return self
                .receipt(Outcome::Rejected, reject(reason, None, None))
                .await;
        }
        let frame = match self.build_frame(device_id, payload).await {
            Ok(f) => f,
            Err(reason) => {
                return self
                    .receipt(Outcome::Rejected, reject(reason, None, None))
                    .await;
            }
        };
        let ttl_ms = inner.settings.ttl_s.saturating_mul(1000);
        let outcome = inner
            .store
            .mailbox_put(NewMail {
                device_id,
                down_msg_id: key,
                payload_frame: frame.bytes.clone(),
                created_at_ms: now,
                expires_at_ms: now.saturating_add(ttl_ms),
            })
            .await
            .map_err(|e| e.to_string())?;
        match outcome {
            MailboxPutOutcome::Stored { .. } => {
                self.tell_peers();
                Ok(())
            }
            MailboxPutOutcome::Duplicate => Ok(()),
            MailboxPutOutcome::Full { limit } => {
                let reason = format!("mailbox full ({limit:?} limit of the store)");
                self.receipt(
                    Outcome::Rejected,
                    reject(reason, Some(frame.msg_id), frame.envelope.seq),
                )
                .await
            }
        }
    }

    /// The signed frame for a downlink payload:
    ///
    /// - `{"frame": "<base64>"}`: a frame the backend signed, carried unchanged;
    /// - the JSON form with a `signature`: likewise, signed by the backend;
    /// - the JSON form without one: signed by the gateway, which fills in
    ///   `device_id` (itself), `to` (the device) and the next `seq`.
    ///
    /// Either way the frame must be addressed to the topic's device and fit
    /// one LoRa packet.
    async fn build_frame(&self, device_id: DeviceId, payload: &[u8]) -> Result<Frame, String> {
        let text = std::str::from_utf8(payload)
            .map_err(|e| format!("payload is not JSON: not UTF-8 ({e})"))?;
        // A field named twice is refused, as by `encode` (protocol.md §5).
        let json = parse_text(text).map_err(|e| format!("payload: {e}"))?;
        let obj = json
            .as_object()
            .ok_or("payload must be a JSON object (the JSON form, or {\"frame\": base64})")?;
        let frame = if let Some(frame) = obj.get("frame") {
            if obj.len() != 1 {
                return Err("a {\"frame\": …} downlink carries nothing else".into());
            }
            let text = frame.as_str().ok_or("frame: expected a base64 string")?;
            let bytes = BASE64
                .decode(text)
                .map_err(|e| format!("frame: not base64: {e}"))?;
            let frame = Frame::decode(&bytes).map_err(|e| format!("frame: {e}"))?;
            check_addressed(&frame, &device_id)?;
            frame
        } else if obj.contains_key("signature") {
            let frame = from_json(&json)
                .and_then(|p| p.into_frame())
                .map_err(|e| format!("signed JSON form: {e}"))?;
            check_addressed(&frame, &device_id)?;
            frame
        } else {
            self.sign_for(device_id, json).await?
        };
        if frame.bytes.len() > MAX_DOWNLINK_FRAME {
            return Err(format!(
                "the signed frame is {} bytes; a downlink must fit one LoRa packet ({MAX_DOWNLINK_FRAME} bytes)",
                frame.bytes.len()
            ));
        }
        Ok(frame)
    }

    /// Signs the JSON form of a one-to-one message with the gateway's key.
    async fn sign_for(&self, device_id: DeviceId, mut json: Value) -> Result<Frame, String> {
        let gateway = self.inner.identity.device_id();
        let Some(obj) = json.as_object_mut() else {
            return Err("payload must be a JSON object".into());
        };
        if let Some(to) = obj.get("to") {
            if to.as_str() != Some(hex::encode(device_id).as_str()) {
                return Err("to: differs from the device of the topic".into());
            }
        }
        obj.insert("device_id".into(), hex::encode(gateway).into());
        obj.insert("to".into(), hex::encode(device_id).into());
        obj.remove("seq");
        let parsed = from_json(&json).map_err(|e| e.to_string())?;
        let kind = parsed.envelope.message.message_type();
        if !matches!(
            kind,
            MessageType::Transaction | MessageType::LedgerSync | MessageType::Receipt
        ) {
            return Err(format!(
                "message_type: a downlink is a transaction, ledger_sync or receipt, not {}",
                kind.name()
            ));
        }
        let seq = self.next_seq(&device_id).await?;
        let envelope = Envelope {
            seq: Some(seq),
            ..parsed.envelope
        };
        Frame::sign(envelope, self.inner.identity.signing_key()).map_err(|e| e.to_string())
    }

    /// Per-device downlink sequence numbers, consecutive so devices can see
    /// gaps. Persisted before use: a crash may skip a number (the device
    /// NACKs it and learns nothing is there) but never reuses one.
    async fn next_seq(&self, device_id: &DeviceId) -> Result<u64, String> {
        let key = format!("mailbox_seq/{}", hex::encode(device_id));
        let store = &self.inner.store;
        let last: u64 = store
            .get_meta(&key)
            .await
            .map_err(|e| e.to_string())?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let next = last + 1;
        store
            .set_meta(&key, &next.to_string())
            .await
            .map_err(|e| e.to_string())?;
        Ok(next)
    }

    /// Publishes (through the outbox) the one receipt a downlink gets.
    async fn receipt(&self, outcome: Outcome, facts: ReceiptFacts) -> Result<(), String> {
        let at = self.now();
        let status = outcome.name();
        let mut body = json!({
            "status": status,
            "device_id": hex::encode(facts.device_id),
            "request_id": hex::encode(facts.request_id),
            "msg_id": facts.msg_id.map(hex::encode),
            "seq": facts.seq,
            "attempts": facts.attempts,
            "reason": facts.reason,
            "accepted_at": crate::uplink::payload::rfc3339_utc_millis(facts.accepted_at_ms),
            "at": crate::uplink::payload::rfc3339_utc_millis(at),
        });
        if let Some(by) = facts.delivered_by {
            body["delivered_by"] = hex::encode(by).into();
        }
        // The same downlink (request id and acceptance time) ending the same
        // way always gets the same id, so a receipt written again after a
        // crash is recognised by the store and published once; the same
        // payload sent again later is a new downlink with its own receipt.
        let receipt_id: MsgId = {
            let d = Sha256::new()
                .chain_update(b"receipt")
                .chain_update(facts.request_id)
                .chain_update(facts.accepted_at_ms.to_be_bytes())
                .chain_update(status.as_bytes())
                .finalize();
            let mut id = [0u8; 16];
            id.copy_from_slice(&d[..16]);
            id
        };
        let outcomes = self
            .inner
            .store
            .commit(vec![Inbound::own(
                receipt_id,
                self.inner.identity.device_id(),
                GATEWAY_RECEIPT,
                Vec::new(),
                body.to_string(),
                at,
            )])
            .await
            .map_err(|e| e.to_string())?;
        match outcomes.first() {
            Some(crate::store::CommitOutcome::Refused) => {
                return Err("the store is full; the receipt could not be kept".into())
            }
            Some(crate::store::CommitOutcome::Stored { .. }) => {
                let counter = match outcome {
                    Outcome::Delivered => &self.inner.counters.delivered,
                    Outcome::Expired => &self.inner.counters.expired,
                    Outcome::Failed => &self.inner.counters.failed,
                    Outcome::Rejected => &self.inner.counters.rejected,
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        self.inner.state.wake_uplink();
        Ok(())
    }

    /// Processes "device heard" work and the scheduler's reports in order,
    /// and expires overdue downlinks, on one task. Call once; `reports` is
    /// the channel given to [`crate::scheduler::Scheduler::report_to`].
    pub async fn run(
        self,
        mut reports: mpsc::UnboundedReceiver<TxReport>,
        stop: CancellationToken,
    ) {
        let Some(mut work) = self.inner.work_rx.lock().ok().and_then(|mut w| w.take()) else {
            return;
        };
        if let Err(e) = self.recover().await {
            tracing::warn!("mailbox recovery: {e}");
        }
        let ttl = Duration::from_secs(self.inner.settings.ttl_s);
        let check = (ttl / 4).clamp(EXPIRY_CHECK_MIN, EXPIRY_CHECK_MAX);
        let mut tick = tokio::time::interval(check);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                w = work.recv() => match w {
                    Some(Work::Heard { frame, rx }) => {
                        if let Err(e) = self.on_heard(&frame, &rx).await {
                            tracing::warn!("mailbox: {e}");
                        }
                    }
                    Some(Work::DeliveredByPeer(delivery)) => self.on_delivered_by_peer(delivery).await,
                    None => return,
                },
                Some(report) = reports.recv() => {
                    if let Err(e) = self.on_report(report).await {
                        tracing::warn!("mailbox: {e}");
                    }
                }
                _ = tick.tick() => {
                    if let Err(e) = self.expire_overdue().await {
                        tracing::warn!("mailbox expiry: {e}");
                    }
                }
            }
        }
    }

    /// A downlink went on air (or could not): that is the attempt.
    async fn on_report(&self, report: TxReport) -> Result<(), String> {
        let queued = self.in_flight().remove(&report.tag);
        if queued.is_none() || !report.sent {
            return Ok(());
        }
        self.inner
            .counters
            .transmissions
            .fetch_add(1, Ordering::Relaxed);
        // False when the entry is gone meanwhile (acked, expired): fine.
        self.inner
            .store
            .mailbox_mark(
                report.tag,
                MailboxMark {
                    state: MailboxState::Pending,
                    attempted_at_ms: Some(self.now()),
                },
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashMap<u64, u64>> {
        self.inner
            .in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether an entry is queued for the air and not yet reported.
    fn is_in_flight(&self, id: u64, now: u64) -> bool {
        let mut in_flight = self.in_flight();
        match in_flight.get(&id) {
            Some(queued) if now < queued.saturating_add(IN_FLIGHT_TIMEOUT.as_millis() as u64) => {
                true
            }
            Some(_) => {
                in_flight.remove(&id);
                false
            }
            None => false,
        }
    }

    /// Reports downlinks whose outcome was decided before a crash but whose
    /// receipt may not have been written (their entry is still held).
    async fn recover(&self) -> Result<(), String> {
        let unfinished = self
            .inner
            .store
            .mailbox_unfinished()
            .await
            .map_err(|e| e.to_string())?;
        for entry in unfinished {
            let outcome = match entry.state {
                MailboxState::Delivered => Outcome::Delivered,
                MailboxState::Failed => Outcome::Failed,
                MailboxState::Expired | MailboxState::Pending => Outcome::Expired,
            };
            let reason = (outcome == Outcome::Expired).then(|| "time to live passed".to_string());
            let down = Frame::decode(&entry.payload_frame).ok();
            self.finish(&entry, down.as_ref(), outcome, reason).await?;
        }
        Ok(())
    }

    async fn expire_overdue(&self) -> Result<(), String> {
        let expired = self
            .inner
            .store
            .mailbox_expire(self.now())
            .await
            .map_err(|e| e.to_string())?;
        for entry in expired {
            let down = Frame::decode(&entry.payload_frame).ok();
            self.finish(
                &entry,
                down.as_ref(),
                Outcome::Expired,
                Some("time to live passed".into()),
            )
            .await?;
        }
        Ok(())
    }

    /// A device was heard (`rx`: where): what waits for it goes out the
    /// same way, and what it acked or NACKed is settled.
    async fn on_heard(&self, frame: &Frame, rx: &RxMeta) -> Result<(), String> {
        let store = &self.inner.store;
        if store.stats().mailbox_entries == 0 {
            // The common case: nothing waits for anyone.
            return Ok(());
        }
        let device_id = frame.envelope.device_id;
        let mut entries = store
            .mailbox_for(device_id)
            .await
            .map_err(|e| e.to_string())?;
        let now = self.now();
        if entries.iter().any(|e| e.expires_at_ms <= now) {
            // Never send a message past its time; report it instead.
            self.expire_overdue().await?;
            entries.retain(|e| e.expires_at_ms > now);
        }
        if entries.is_empty() {
            return Ok(());
        }
        // What the device says it has, or lacks.
        let mut acked: HashSet<MsgId> = HashSet::new();
        let mut nacked_ids: HashSet<MsgId> = HashSet::new();
        let mut nacked_ranges: Vec<(u64, u64)> = Vec::new();
        let is_nack = match &frame.envelope.message {
            Message::Ack(a) => {
                acked.extend(a.acked.iter().copied());
                false
            }
            Message::Nack(n) => {
                nacked_ids.extend(n.missing_ids.iter().copied());
                nacked_ranges.extend(n.missing_ranges.iter().copied());
                true
            }
            _ => false,
        };
        let settings = &self.inner.settings;
        let mut sent = 0;
        for entry in entries {
            if entry.state != MailboxState::Pending {
                continue;
            }
            let Ok(down) = Frame::decode(&entry.payload_frame) else {
                // A stored frame that no longer decodes cannot be sent.
                self.finish(
                    &entry,
                    None,
                    Outcome::Failed,
                    Some("stored frame is damaged".into()),
                )
                .await?;
                continue;
            };
            if acked.contains(&down.msg_id) {
                self.finish(&entry, Some(&down), Outcome::Delivered, None)
                    .await?;
                continue;
            }
            let named = nacked_ids.contains(&down.msg_id)
                || down
                    .envelope
                    .seq
                    .is_some_and(|s| nacked_ranges.iter().any(|(a, b)| (*a..=*b).contains(&s)));
            // A NACK asks for exactly what it names, nothing else; and
            // what is already queued for the air goes out anyway.
            if (is_nack && !named) || self.is_in_flight(entry.id, now) {
                continue;
            }
            let due = entry.last_attempt_at_ms.is_none_or(|last| {
                now >= last.saturating_add(retry_wait(settings, entry.attempts))
            });
            if !(named || due) {
                continue;
            }
            if entry.attempts >= settings.max_attempts {
                self.finish(
                    &entry,
                    Some(&down),
                    Outcome::Failed,
                    Some(format!("no ack after {} attempts", entry.attempts)),
                )
                .await?;
                continue;
            }
            if sent >= DOWNLINKS_PER_WINDOW {
                continue;
            }
            sent += 1;
            self.in_flight().insert(entry.id, now);
            if named {
                let counters = &self.inner.counters;
                counters.nack_redeliveries.fetch_add(1, Ordering::Relaxed);
            }
            self.inner.scheduler.submit(TxRequest::Frame {
                link: Some(rx.link.clone()),
                via: rx.via.clone(),
                priority: Priority::Downlink,
                bytes: entry.payload_frame.clone(),
                tag: entry.id,
            });
        }
        Ok(())
    }

    /// Ends a downlink: receipt first (durable), then the mailbox entry goes
    /// (and with it, in the same transaction, the neighbours' copies are
    /// marked for withdrawal). A neighbour's copy ends without a receipt.
    async fn finish(
        &self,
        entry: &MailboxEntry,
        down: Option<&Frame>,
        outcome: Outcome,
        reason: Option<String>,
    ) -> Result<(), String> {
        if entry.origin.is_some() {
            return self.finish_copy(entry, outcome).await;
        }
        let facts = ReceiptFacts {
            delivered_by: None,
            device_id: entry.device_id,
            request_id: entry.down_msg_id,
            msg_id: down.map(|f| f.msg_id),
            seq: down.and_then(|f| f.envelope.seq),
            attempts: entry.attempts,
            accepted_at_ms: entry.created_at_ms,
            reason,
        };
        self.settle(entry, outcome, facts).await
    }

    async fn settle(
        &self,
        entry: &MailboxEntry,
        outcome: Outcome,
        facts: ReceiptFacts,
    ) -> Result<(), String> {
        self.receipt(outcome, facts).await?;
        self.inner
            .store
            .mailbox_remove(vec![entry.id])
            .await
            .map_err(|e| e.to_string())?;
        self.in_flight().remove(&entry.id);
        self.tell_peers();
        Ok(())
    }
}

/// How long after attempt number `attempts` (1-based) the next one may go:
/// `retry_base_ms` doubled per attempt, capped at `retry_max_ms`.
pub fn retry_wait(settings: &MailboxSection, attempts: u32) -> u64 {
    let doublings = attempts.saturating_sub(1).min(32);
    settings
        .retry_base_ms
        .saturating_mul(1u64 << doublings)
        .min(settings.retry_max_ms)
}

fn check_addressed(frame: &Frame, device_id: &DeviceId) -> Result<(), String> {
    match frame.envelope.to {
        Some(to) if to == *device_id => Ok(()),
        Some(to) => Err(format!(
            "the signed frame is addressed to {}, not to the device of the topic",
            hex::encode(to)
        )),
        None => Err("the signed frame has no `to`: a downlink is addressed to its device".into()),
    }
}

impl IngestObserver for Mailbox {
    fn heard(&self, frame: &Frame, rx: &RxMeta) {
        // Queued so store work happens off the ingest path, in order.
        let _ = self.inner.work.send(Work::Heard {
            frame: frame.clone(),
            rx: rx.clone(),
        });
    }
}

/// The mailbox key of a downlink: first 16 bytes of
/// SHA-256(device_id ‖ MQTT payload). The same publish delivered twice by the
/// broker maps to the same entry; receipts carry it as `request_id`.
pub fn request_id(device_id: &DeviceId, payload: &[u8]) -> MsgId {
    let d = Sha256::new()
        .chain_update(device_id)
        .chain_update(payload)
        .finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&d[..16]);
    id
}

mod peers;
#[cfg(test)]
mod tests;
