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
//! through the store's outbox, so they are as durable as device messages.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use radio_bridge::frame::json::from_json;
use radio_bridge::frame::{DeviceId, Envelope, Frame, Message, MsgId};
use radio_bridge::identity::Identity;
use radio_bridge::link::{unix_millis, RxMeta};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::MailboxSection;
use crate::ingest::IngestObserver;
use crate::scheduler::{Priority, SchedulerHandle, TxRequest};
use crate::state::GatewayState;
use crate::store::{
    Inbound, MailboxEntry, MailboxMark, MailboxPutOutcome, MailboxState, NewMail, Store,
};
use crate::uplink::incoming::{IncomingKind, IncomingMessage};
use crate::uplink::topics::GATEWAY_RECEIPT;

/// First retry after this long; doubles per attempt up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(600);
const EXPIRY_CHECK: Duration = Duration::from_secs(15);

/// Counters for the status page.
#[derive(Debug, Default)]
pub struct MailboxCounters {
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
    pub expired: AtomicU64,
    pub rejected: AtomicU64,
}

/// Work for the mailbox task, in arrival order.
enum Work {
    Heard { frame: Frame, link: String },
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
    work: mpsc::UnboundedSender<Work>,
    work_rx: std::sync::Mutex<Option<mpsc::UnboundedReceiver<Work>>>,
}

impl Mailbox {
    pub fn new(
        store: Store,
        state: Arc<GatewayState>,
        scheduler: SchedulerHandle,
        identity: Identity,
        settings: MailboxSection,
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
                work,
                work_rx: std::sync::Mutex::new(Some(work_rx)),
            }),
        }
    }

    pub fn counters(&self) -> &MailboxCounters {
        &self.inner.counters
    }

    /// Stores backend publishes (downlinks) and acks each once stored.
    pub async fn accept(
        self,
        mut incoming: mpsc::UnboundedReceiver<IncomingMessage>,
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
                // OTA commands are not handled by this build; leaving them
                // unacked lets the broker keep them for one that does.
                tracing::warn!(topic = %message.topic, "OTA commands are not supported yet; left unacknowledged");
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
    async fn put(&self, device_id: DeviceId, payload: &[u8]) -> Result<(), String> {
        let inner = &self.inner;
        let key = request_id(&device_id, payload);
        let frame = match self.build_frame(device_id, payload).await {
            Ok(f) => f,
            Err(reason) => {
                inner.counters.rejected.fetch_add(1, Ordering::Relaxed);
                return self
                    .receipt(&device_id, key, None, "rejected", 0, Some(reason))
                    .await;
            }
        };
        let now = now_ms();
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
            MailboxPutOutcome::Stored { .. } | MailboxPutOutcome::Duplicate => Ok(()),
            MailboxPutOutcome::Full { limit } => {
                inner.counters.rejected.fetch_add(1, Ordering::Relaxed);
                self.receipt(
                    &device_id,
                    key,
                    Some(frame.msg_id),
                    "rejected",
                    0,
                    Some(format!("mailbox full ({limit:?} limit)")),
                )
                .await
            }
        }
    }

    /// The signed frame for a downlink payload: the backend's own signed
    /// frame carried unchanged (`{"frame": base64}`), or the JSON form
    /// signed by the gateway, addressed to the device with the next
    /// sequence number.
    async fn build_frame(&self, device_id: DeviceId, payload: &[u8]) -> Result<Frame, String> {
        let json: Value =
            serde_json::from_slice(payload).map_err(|e| format!("payload is not JSON: {e}"))?;
        if let Some(frame) = json.get("frame") {
            let text = frame.as_str().ok_or("frame: expected a base64 string")?;
            let bytes = BASE64
                .decode(text)
                .map_err(|e| format!("frame: not base64: {e}"))?;
            return Frame::decode(&bytes).map_err(|e| format!("frame: {e}"));
        }
        let mut json = json;
        let gateway = self.inner.identity.device_id();
        if let Some(obj) = json.as_object_mut() {
            obj.insert("device_id".into(), hex::encode(gateway).into());
            obj.insert("to".into(), hex::encode(device_id).into());
            obj.remove("seq");
            obj.remove("signature");
        }
        let parsed = from_json(&json).map_err(|e| e.to_string())?;
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
    async fn receipt(
        &self,
        device_id: &DeviceId,
        request: MsgId,
        msg_id: Option<MsgId>,
        status: &str,
        attempts: u32,
        reason: Option<String>,
    ) -> Result<(), String> {
        let at = now_ms();
        let body = json!({
            "status": status,
            "device_id": hex::encode(device_id),
            "request_id": hex::encode(request),
            "msg_id": msg_id.map(hex::encode),
            "attempts": attempts,
            "reason": reason,
            "at": crate::uplink::payload::rfc3339_utc_millis(at),
        });
        let receipt_id: MsgId = {
            let d = Sha256::new()
                .chain_update(b"receipt")
                .chain_update(request)
                .chain_update(status.as_bytes())
                .finalize();
            let mut id = [0u8; 16];
            id.copy_from_slice(&d[..16]);
            id
        };
        let outcomes = self
            .inner
            .store
            .commit(vec![Inbound {
                msg_id: receipt_id,
                device_id: self.inner.identity.device_id(),
                message_type: GATEWAY_RECEIPT.into(),
                frame: Vec::new(),
                message_json: body.to_string(),
                rx_json: "{}".into(),
                received_at_ms: at,
            }])
            .await
            .map_err(|e| e.to_string())?;
        self.inner.state.wake_uplink();
        match outcomes.first() {
            Some(crate::store::CommitOutcome::Refused) => {
                Err("the store is full; the receipt could not be kept".into())
            }
            _ => Ok(()),
        }
    }

    /// Processes "device heard" work in order, one device at a time.
    pub async fn deliveries(self, stop: CancellationToken) {
        let Some(mut work) = self.inner.work_rx.lock().ok().and_then(|mut w| w.take()) else {
            return;
        };
        loop {
            let item = tokio::select! {
                _ = stop.cancelled() => return,
                w = work.recv() => match w {
                    Some(w) => w,
                    None => return,
                },
            };
            let Work::Heard { frame, link } = item;
            if let Err(e) = self.on_heard(&frame, &link).await {
                tracing::warn!("mailbox: {e}");
            }
        }
    }

    async fn on_heard(&self, frame: &Frame, link: &str) -> Result<(), String> {
        let device_id = frame.envelope.device_id;
        let store = &self.inner.store;
        let entries = store
            .mailbox_for(device_id)
            .await
            .map_err(|e| e.to_string())?;
        if entries.is_empty() {
            return Ok(());
        }
        let decoded: Vec<(MailboxEntry, Option<Frame>)> = entries
            .into_iter()
            .map(|e| {
                let f = Frame::decode(&e.payload_frame).ok();
                (e, f)
            })
            .collect();
        // What the device says it has, or lacks.
        let mut acked: HashSet<MsgId> = HashSet::new();
        let mut nacked_ids: HashSet<MsgId> = HashSet::new();
        let mut nacked_ranges: Vec<(u64, u64)> = Vec::new();
        match &frame.envelope.message {
            Message::Ack(a) => acked.extend(a.acked.iter().copied()),
            Message::Nack(n) => {
                nacked_ids.extend(n.missing_ids.iter().copied());
                nacked_ranges.extend(n.missing_ranges.iter().copied());
            }
            _ => {}
        }
        let now = now_ms();
        for (entry, down) in decoded {
            if entry.state != MailboxState::Pending {
                continue;
            }
            let Some(down) = down else {
                // A stored frame that no longer decodes cannot be sent.
                self.finish(
                    &entry,
                    None,
                    "failed",
                    Some("stored frame is damaged".into()),
                )
                .await?;
                continue;
            };
            if acked.contains(&down.msg_id) {
                self.inner
                    .counters
                    .delivered
                    .fetch_add(1, Ordering::Relaxed);
                self.finish(&entry, Some(down.msg_id), "delivered", None)
                    .await?;
                continue;
            }
            let named = nacked_ids.contains(&down.msg_id)
                || down
                    .envelope
                    .seq
                    .is_some_and(|s| nacked_ranges.iter().any(|(a, b)| (*a..=*b).contains(&s)));
            let due = entry.last_attempt_at_ms.is_none_or(|last| {
                let backoff = FIRST_BACKOFF
                    .saturating_mul(1 << entry.attempts.saturating_sub(1).min(16))
                    .min(MAX_BACKOFF);
                now >= last + backoff.as_millis() as u64
            });
            if !(named || due) {
                continue;
            }
            if entry.attempts >= self.inner.settings.max_attempts {
                self.inner.counters.failed.fetch_add(1, Ordering::Relaxed);
                self.finish(
                    &entry,
                    Some(down.msg_id),
                    "failed",
                    Some(format!("no ack after {} attempts", entry.attempts)),
                )
                .await?;
                continue;
            }
            store
                .mailbox_mark(
                    entry.id,
                    MailboxMark {
                        state: MailboxState::Pending,
                        attempted_at_ms: Some(now),
                    },
                )
                .await
                .map_err(|e| e.to_string())?;
            self.inner.scheduler.submit(TxRequest::Frame {
                link: Some(link.to_string()),
                priority: Priority::Downlink,
                bytes: entry.payload_frame.clone(),
                tag: entry.id,
            });
        }
        Ok(())
    }

    /// Ends a downlink: receipt first (durable), then the mailbox entry goes.
    async fn finish(
        &self,
        entry: &MailboxEntry,
        msg_id: Option<MsgId>,
        status: &str,
        reason: Option<String>,
    ) -> Result<(), String> {
        self.receipt(
            &entry.device_id,
            entry.down_msg_id,
            msg_id,
            status,
            entry.attempts,
            reason,
        )
        .await?;
        self.inner
            .store
            .mailbox_remove(vec![entry.id])
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Expires downlinks whose time-to-live has passed.
    pub async fn housekeeping(self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(EXPIRY_CHECK);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let expired = match self.inner.store.mailbox_expire(now_ms()).await {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!("mailbox expiry: {e}");
                    continue;
                }
            };
            for entry in expired {
                self.inner.counters.expired.fetch_add(1, Ordering::Relaxed);
                let msg_id = Frame::decode(&entry.payload_frame).ok().map(|f| f.msg_id);
                if let Err(e) = self
                    .finish(
                        &entry,
                        msg_id,
                        "expired",
                        Some("time to live passed".into()),
                    )
                    .await
                {
                    tracing::warn!("mailbox expiry receipt: {e}");
                }
            }
        }
    }
}

impl IngestObserver for Mailbox {
    fn heard(&self, frame: &Frame, rx: &RxMeta) {
        // Queued so store work happens off the ingest path, in order.
        let _ = self.inner.work.send(Work::Heard {
            frame: frame.clone(),
            link: rx.link.clone(),
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

fn now_ms() -> u64 {
    unix_millis(SystemTime::now())
}
