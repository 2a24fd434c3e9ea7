//! The ingest pipeline: link event → reassembly → decode + verify →
//! replay check → durable commit → radio ack.
//!
//! The order is the product's core promise. A message is acked over the
//! radio only after the store says it is on disk (fsynced); until then the
//! device keeps it and retries. Everything that arrives while one commit is
//! in flight queues in the link channel and goes into the next commit, so
//! the batch grows with the load (group commit) and per-device order is the
//! order frames were heard.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use radio_bridge::fragment::{self, Reassembler, ReassemblerConfig};
use radio_bridge::frame::json::to_json;
use radio_bridge::frame::{Frame, FrameError, KeyCache, Message};
use radio_bridge::link::{LinkEvent, RxMeta};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::neighbors::HeartbeatVerdict;
use crate::scheduler::{SchedulerHandle, TxRequest};
use crate::state::GatewayState;
use crate::store::{CommitOutcome, Inbound, PendingCommit, Store, StoreError};
use crate::uplink::payload::up_payload_at_ingest;

/// Most events taken into one commit; bounds commit latency under a flood.
const MAX_BATCH: usize = 512;

/// A verified frame waiting for its commit.
struct Pending {
    frame: Frame,
    link: String,
}

/// A batch the store is writing, and the frames waiting on its answer.
struct InFlight {
    commit: PendingCommit,
    frames: Vec<(Pending, RxMeta)>,
}

/// What woke the ingest loop.
enum Step {
    Committed(Result<Vec<CommitOutcome>, StoreError>),
    Heard(usize),
}

/// The answer to the commit in flight; never ready when there is none.
async fn answer_of(in_flight: &mut Option<InFlight>) -> Result<Vec<CommitOutcome>, StoreError> {
    match in_flight {
        Some(flight) => (&mut flight.commit).await,
        None => std::future::pending().await,
    }
}

/// Observers of ingest results besides the store (mailbox delivery hooks
/// on "device heard", NACK handling).
pub trait IngestObserver: Send + Sync + 'static {
    /// A verified frame from a device was received (after the commit).
    fn heard(&self, frame: &Frame, rx: &RxMeta);
}

pub struct Ingest {
    store: Store,
    state: Arc<GatewayState>,
    scheduler: SchedulerHandle,
    reassembler: Reassembler,
    /// Devices' keys, decompressed once rather than for every frame.
    keys: KeyCache,
    observers: Vec<Arc<dyn IngestObserver>>,
}

impl Ingest {
    pub fn new(store: Store, state: Arc<GatewayState>, scheduler: SchedulerHandle) -> Ingest {
        let reassembler = Reassembler::new(ReassemblerConfig::default());
        Ingest {
            store,
            state,
            scheduler,
            reassembler,
            keys: KeyCache::default(),
            observers: Vec::new(),
        }
    }

    pub fn observe(&mut self, observer: Arc<dyn IngestObserver>) {
        self.observers.push(observer);
    }

    /// What became of split messages; the status page and `/metrics` read it.
    pub fn reassembly_counters(&self) -> Arc<radio_bridge::fragment::ReassemblyCounters> {
        self.reassembler.counters()
    }

    /// Runs until shutdown. On shutdown it stops taking radio frames but
    /// finishes the commit in flight, so nothing acked is lost.
    ///
    /// One commit is in flight at a time. While the store writes it, the
    /// next batch is taken and decoded: verifying signatures and writing
    /// SQLite then run on different cores, so throughput is the slower of
    /// the two rather than their sum. A commit is settled (acks, observers)
    /// as soon as its answer comes, whether or not more frames arrive.
    pub async fn run(mut self, mut events: mpsc::Receiver<LinkEvent>, shutdown: CancellationToken) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut in_flight: Option<InFlight> = None;
        loop {
            let step = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                outcome = answer_of(&mut in_flight) => Step::Committed(outcome),
                n = events.recv_many(&mut batch, MAX_BATCH) => Step::Heard(n),
            };
            match step {
                Step::Committed(outcome) => {
                    if let Some(done) = in_flight.take() {
                        self.settle(done.frames, outcome);
                    }
                }
                Step::Heard(0) => break,
                Step::Heard(_) => {
                    let verified = self.verify(std::mem::take(&mut batch));
                    if verified.is_empty() {
                        continue;
                    }
                    // Batches are committed one after the other, so
                    // per-device order is the order frames were heard.
                    self.finish(in_flight.take()).await;
                    in_flight = Some(self.start_commit(verified));
                }
            }
        }
        self.finish(in_flight.take()).await;
    }

    /// Waits for the commit in flight, if any, and settles it.
    async fn finish(&self, in_flight: Option<InFlight>) {
        if let Some(done) = in_flight {
            let outcome = done.commit.await;
            self.settle(done.frames, outcome);
        }
    }

    /// Reassembles, decodes and verifies a batch of link events, and admits
    /// what passes to the neighbor table; returns the frames to commit.
    fn verify(&mut self, events: Vec<LinkEvent>) -> Vec<(Pending, RxMeta)> {
        let mut heard: Vec<(Vec<u8>, RxMeta)> = Vec::new();
        for event in events {
            match event {
                LinkEvent::Received(rx) => {
                    if let Some(bytes) = self.unfragment(rx.bytes, &rx.meta) {
                        heard.push((bytes, rx.meta));
                    }
                }
                LinkEvent::State { link, state } => self.state.set_link_state(&link, state),
                LinkEvent::TxDone { link, id, result } => {
                    if let Err(e) = result {
                        tracing::debug!(%link, id, "transmission failed: {e:?}");
                    }
                }
            }
        }
        self.reassembler.expire(Instant::now());
        // One batch verification for everything heard since the last commit:
        // about twice as fast per frame as verifying one by one.
        let packets: Vec<&[u8]> = heard.iter().map(|(b, _)| b.as_slice()).collect();
        let decoded = Frame::decode_batch_with(&packets, &mut self.keys);
        let mut pending = Vec::new();
        for ((_, meta), result) in heard.iter().zip(decoded) {
            match result {
                Ok(frame) => {
                    if let Some(p) = self.admit(frame, meta) {
                        pending.push(p);
                    }
                }
                Err(e) => self.rejected(&e, meta),
            }
        }
        pending
    }

    /// The whole frame a packet carries: itself, or (for a fragment) the
    /// reassembled frame once its last fragment arrives.
    fn unfragment(&mut self, bytes: Vec<u8>, meta: &RxMeta) -> Option<Vec<u8>> {
        self.state
            .heard_on_link(&meta.link, meta.rssi, meta.snr, meta.received_at_ms);
        if !fragment::is_fragment(&bytes) {
            return Some(bytes);
        }
        match self.reassembler.push(&bytes, Instant::now()) {
            Ok(frame) => frame,
            Err(e) => {
                tracing::debug!(link = %meta.link, "fragment dropped: {e}");
                None
            }
        }
    }

    /// Applies a verified frame to the neighbor table; `None` when it is a
    /// replayed heartbeat.
    fn admit(&mut self, frame: Frame, meta: &RxMeta) -> Option<(Pending, RxMeta)> {
        let device_id = frame.envelope.device_id;
        if let Message::Heartbeat(hb) = &frame.envelope.message {
            let verdict =
                self.state
                    .neighbors()
                    .heartbeat(device_id, frame.envelope.version, hb, meta);
            if let HeartbeatVerdict::Replayed { last, got } = verdict {
                // An identical retransmission is a duplicate, not a replay:
                // the store tells them apart by message id.
                if got != last {
                    self.state.count_frame(&meta.link, "replayed");
                    tracing::debug!(
                        device = %hex::encode(device_id),
                        last, got, "heartbeat counter went backwards: replay dropped"
                    );
                    return None;
                }
            }
        } else {
            self.state.neighbors().heard(&device_id, meta);
        }
        Some((
            Pending {
                frame,
                link: meta.link.clone(),
            },
            meta.clone(),
        ))
    }

    fn rejected(&self, error: &FrameError, rx: &RxMeta) {
        self.state.count_frame(&rx.link, error.outcome());
        match error {
            FrameError::UnsupportedVersion {
                version,
                device,
                signature_ok,
            } => {
                tracing::info!(%device, %version, "unsupported protocol version: logged, not synced");
                if *signature_ok {
                    if let Some(id) = hex::decode(device)
                        .ok()
                        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
                    {
                        self.state.neighbors().outdated(id, *version, rx);
                    }
                }
            }
            FrameError::BadSignature { device } => {
                tracing::debug!(%device, link = %rx.link, "invalid signature: rejected")
            }
            other => tracing::debug!(link = %rx.link, "dropped: {other}"),
        }
    }

    /// Hands verified frames to the store; their acks wait for the answer.
    /// Each message's MQTT payload is built here, once, from the frame in
    /// hand; the store passes it on to the uplink with the committed rows.
    fn start_commit(&self, frames: Vec<(Pending, RxMeta)>) -> InFlight {
        let mut payloads = Vec::with_capacity(frames.len());
        let inbound: Vec<Inbound> = frames
            .iter()
            .map(|(p, rx)| {
                let message_json = to_json(&p.frame).to_string();
                payloads.push(
                    up_payload_at_ingest(
                        &p.frame.msg_id,
                        &p.frame.envelope.device_id,
                        &p.frame.bytes,
                        &message_json,
                        rx,
                    )
                    .map(Bytes::from),
                );
                Inbound {
                    msg_id: p.frame.msg_id,
                    device_id: p.frame.envelope.device_id,
                    message_type: p.frame.message_type().name().to_string(),
                    frame: p.frame.bytes.clone(),
                    message_json,
                    rx_json: serde_json::to_string(rx).unwrap_or_else(|_| "{}".into()),
                    received_at_ms: rx.received_at_ms,
                }
            })
            .collect();
        InFlight {
            commit: self.store.start_commit_with_payloads(inbound, payloads),
            frames,
        }
    }

    /// Acts on a commit's answer: acks what is on disk, tells the observers.
    fn settle(
        &self,
        pending: Vec<(Pending, RxMeta)>,
        outcome: Result<Vec<CommitOutcome>, StoreError>,
    ) {
        let outcomes = match outcome {
            Ok(o) => o,
            Err(e) => {
                // Nothing is acked, so the devices keep their messages and
                // retry; the store error is what the keeper must see.
                self.state
                    .event("storage", "error", format!("Storage failed: {e}"));
                return;
            }
        };
        let mut stored_any = false;
        for ((p, rx), outcome) in pending.iter().zip(outcomes) {
            let ack = match outcome {
                CommitOutcome::Stored { .. } => {
                    stored_any = true;
                    self.state.count_frame(&p.link, "accepted");
                    true
                }
                CommitOutcome::Duplicate => {
                    self.state.count_frame(&p.link, "duplicate");
                    // The sender evidently missed our ack: send it again.
                    true
                }
                CommitOutcome::Refused => {
                    self.state.count_frame(&p.link, "refused");
                    false
                }
            };
            if ack && p.frame.message_type().needs_ack() {
                self.scheduler.submit(TxRequest::Ack {
                    link: p.link.clone(),
                    via: rx.via.clone(),
                    msg_id: p.frame.msg_id,
                });
            }
            if !matches!(outcome, CommitOutcome::Refused) {
                for o in &self.observers {
                    o.heard(&p.frame, rx);
                }
            }
        }
        if stored_any {
            // The uplink publishes without polling.
            self.state.wake_uplink();
        }
    }
}
