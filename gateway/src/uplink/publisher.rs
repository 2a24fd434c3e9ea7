//! The publisher task: outbox → QoS 1 publish → PUBACK → mark published.
//!
//! The one rule: a message leaves the store only when the broker has
//! acknowledged it. The task reads the outbox in `seq` order into a bounded
//! window (`max_inflight`), learns each publish's packet id from rumqttc's
//! events (`window.rs`), and marks seqs published in batches as their PUBACKs
//! arrive. When a connection dies, every unacknowledged seq is fetched again
//! and re-sent, lowest first, on the next connection (counted as
//! `republished_total`); after a process restart the cursor starts at 0, so
//! everything unmarked is sent again.
//!
//! Two invariants keep the bookkeeping simple:
//! - A fetch never returns a seq that was already acknowledged. Fetches
//!   start above every seq sent on the connection, so normally no mark can
//!   be in their way and marking runs beside publishing (one batch of marks
//!   at a time, awaited in the task's loop): under a flood of radio frames
//!   the store writer is busy with fsynced commits and a mark waits for one,
//!   and publishing must not wait with it. Only after a rewind (connection
//!   lost) can a fetch reach back below an unmarked seq; then the marks are
//!   written first.
//! - Only this task sends publishes on a connection, so request order equals
//!   packet-id assignment order.
//!
//! The task also publishes the retained state, subscribes to downlinks, hands
//! incoming publishes to the consumer, and runs the shutdown sequence.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use rumqttc::SubscribeReasonCode;
use rumqttc::{AsyncClient, Event, Outgoing, Packet, Publish, QoS, SubscribeFilter};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::connection::DriverEvent;
use super::incoming::{AckHandle, IncomingKind, IncomingMessage};
use super::outbox::Outbox;
use super::payload::{up_payload, StatePayload, Versions};
use super::status::UplinkStatus;
use super::topics::{IncomingTopic, Topics};
use super::window::{Tag, Window};
use super::{ExtraTopic, PublishError};
use crate::store::Publishable;

/// Without a wake-up, look at the outbox this often anyway (a missed
/// `wake()` then costs latency, never messages).
const FALLBACK_POLL: Duration = Duration::from_secs(5);
/// After a failed store call, wait this long before the next one.
const STORE_RETRY: Duration = Duration::from_secs(1);
/// Events handled per round before marks and fetches get a turn.
const EVENT_BATCH: usize = 512;
/// One-off publishes (heartbeat, receipts, OTA progress) outstanding at once.
const MAX_EXTRAS_OUTSTANDING: usize = 8;

/// A batch of publish marks the store is writing, and its seqs (kept to
/// retry them if the write fails).
struct Marking {
    seqs: Vec<u64>,
    write: Pin<Box<dyn Future<Output = Result<(), super::outbox::OutboxError>> + Send>>,
}

/// The answer to the marks being written; never ready when there are none.
async fn marks_written(marking: &mut Option<Marking>) -> Result<(), super::outbox::OutboxError> {
    match marking {
        Some(m) => m.write.as_mut().await,
        None => std::future::pending().await,
    }
}

/// A one-off publish waiting for its PUBACK.
pub(crate) struct ExtraRequest {
    pub topic: ExtraTopic,
    pub payload: Vec<u8>,
    pub done: oneshot::Sender<Result<(), PublishError>>,
}

pub(crate) struct Publisher<O: Outbox> {
    pub outbox: O,
    pub topics: Topics,
    pub versions: Versions,
    pub started: Instant,
    pub state_interval: Duration,
    pub shutdown_grace: Duration,
    pub window: Window,
    pub status: watch::Sender<UplinkStatus>,
    pub incoming: mpsc::UnboundedSender<IncomingMessage>,
    /// Outbox entries read ahead of the window, so a freed slot is refilled
    /// at once from memory while store reads come in batches.
    pub read_ahead: usize,
    /// Acknowledged seqs are marked in batches of this size (or sooner when
    /// nothing else is waiting).
    pub mark_batch: usize,
}

/// Mutable state of a running publisher beyond its configuration.
struct Run {
    client: Option<AsyncClient>,
    /// Fetched from the outbox, not yet sent; seqs ascending and all above
    /// `window.cursor()`.
    ready: VecDeque<Publishable>,
    /// PUBACKed seqs not yet marked in the store.
    acked: Vec<u64>,
    /// Marks being written now (at most one batch at a time).
    marking: Option<Marking>,
    /// A wake-up or a full page says the outbox may hold more than we sent.
    outbox_may_have_more: bool,
    /// No store calls before this instant (after a store error).
    store_retry_at: Option<Instant>,
    /// Consecutive failed store writes, and when one was last logged.
    store_failures: u64,
    store_error_logged_at: Option<Instant>,
    next_state_at: Instant,
    extra_waiters: HashMap<u64, oneshot::Sender<Result<(), PublishError>>>,
    next_extra_id: u64,
    stopping: bool,
    /// `status` has changes not yet sent to watchers.
    status_dirty: bool,
    st: UplinkStatus,
    /// When each outbox message sent and not yet PUBACKed was stored, by
    /// seq: its PUBACK observes the publish latency.
    stored_at_ms: HashMap<u64, u64>,
}

impl<O: Outbox> Publisher<O> {
    pub(crate) async fn run(
        mut self,
        mut events: mpsc::Receiver<DriverEvent>,
        mut extras: mpsc::Receiver<ExtraRequest>,
        wake: Arc<Notify>,
        shutdown: CancellationToken,
        driver_stop: CancellationToken,
        driver: JoinHandle<()>,
    ) {
        let mut run = Run {
            client: None,
            ready: VecDeque::new(),
            acked: Vec::new(),
            marking: None,
            outbox_may_have_more: true,
            store_retry_at: None,
            store_failures: 0,
            store_error_logged_at: None,
            next_state_at: Instant::now() + self.state_interval,
            extra_waiters: HashMap::new(),
            next_extra_id: 0,
            stopping: false,
            status_dirty: false,
            st: self.status.borrow().clone(),
            stored_at_ms: HashMap::new(),
        };
        let mut extras_open = true;
        let mut fallback = tokio::time::interval(FALLBACK_POLL);
        fallback.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let idle = events.is_empty();
            self.settle(&mut run, idle).await;
            let retry_at = run.store_retry_at;
            let state_due = run.client.is_some();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                event = events.recv() => match event {
                    Some(event) => {
                        self.handle(&mut run, event);
                        for _ in 1..EVENT_BATCH {
                            match events.try_recv() {
                                Ok(event) => self.handle(&mut run, event),
                                Err(_) => break,
                            }
                        }
                    }
                    None => {
                        error!("MQTT connection driver stopped unexpectedly; uplink stops");
                        break;
                    }
                },
                request = extras.recv(), if extras_open => match request {
                    Some(request) => self.start_extra(&mut run, request),
                    None => extras_open = false,
                },
                written = marks_written(&mut run.marking) => {
                    if let Some(marking) = run.marking.take() {
                        self.marked(&mut run, marking.seqs, written);
                    }
                }
                _ = wake.notified() => run.outbox_may_have_more = true,
                _ = fallback.tick() => run.outbox_may_have_more = true,
                _ = tokio::time::sleep_until(run.next_state_at), if state_due => {
                    self.publish_state(&mut run);
                }
                _ = sleep_until_opt(retry_at), if retry_at.is_some() => {
                    run.store_retry_at = None;
                }
            }
        }
        extras.close();
        while let Ok(request) = extras.try_recv() {
            let _ = request.done.send(Err(PublishError::Stopped));
        }
        self.shutdown(&mut run, events, driver_stop, driver).await;
    }

    /// Everything that is not an event reaction: refill the window, show
    /// the status, mark acknowledged seqs, read ahead from the outbox.
    /// `idle`: no driver events are waiting (a good moment to mark).
    async fn settle(&mut self, run: &mut Run, idle: bool) {
        // Refill first: a slot freed by a PUBACK is used at once, so the
        // connection never idles while there is work (an idle sender also
        // meets Nagle and delayed ACKs and slows to a crawl).
        self.send_ready(run);
        self.publish_status(run);
        if run.acked.len() >= self.mark_batch || (idle && !run.acked.is_empty()) {
            self.start_marks(run);
        }
        self.read_ahead(run).await;
        self.send_ready(run);
        self.publish_status(run);
    }

    fn publish_status(&mut self, run: &mut Run) {
        run.st.inflight = self.window.outbox_outstanding() as u64;
        if run.status_dirty || self.status.borrow().inflight != run.st.inflight {
            self.status.send_replace(run.st.clone());
            run.status_dirty = false;
        }
    }

    fn store_blocked(run: &Run) -> bool {
        run.store_retry_at.is_some_and(|at| Instant::now() < at)
    }

    /// Starts writing the acknowledged seqs, unless a write is under way;
    /// its answer comes back through the task's loop.
    fn start_marks(&mut self, run: &mut Run) {
        if run.marking.is_some() || run.acked.is_empty() || Self::store_blocked(run) {
            return;
        }
        let seqs = std::mem::take(&mut run.acked);
        let outbox = self.outbox.clone();
        let batch = seqs.clone();
        run.marking = Some(Marking {
            seqs,
            write: Box::pin(async move { outbox.mark_published(batch).await }),
        });
    }

    /// Writes every acknowledged seq and waits for it (shutdown, rewinds).
    async fn flush_marks(&mut self, run: &mut Run) {
        if let Some(marking) = run.marking.take() {
            let written = marking.write.await;
            self.marked(run, marking.seqs, written);
        }
        if run.acked.is_empty() || Self::store_blocked(run) {
            return;
        }
        let seqs = std::mem::take(&mut run.acked);
        let written = self.outbox.mark_published(seqs.clone()).await;
        self.marked(run, seqs, written);
    }

    /// Acts on the store's answer to a batch of marks.
    fn marked(
        &mut self,
        run: &mut Run,
        seqs: Vec<u64>,
        written: Result<(), super::outbox::OutboxError>,
    ) {
        match written {
            Ok(()) => {
                if run.store_failures > 0 {
                    info!(
                        failures = run.store_failures,
                        "the store accepts writes again"
                    );
                    run.store_failures = 0;
                    run.store_error_logged_at = None;
                }
            }
            Err(e) => {
                // First failure and then once a minute: a broken store
                // should not flood the log.
                let quiet = run
                    .store_error_logged_at
                    .is_some_and(|at| at.elapsed() < Duration::from_secs(60));
                if !quiet {
                    run.store_error_logged_at = Some(Instant::now());
                    error!(
                        "could not mark {} MQTT-acknowledged message(s) as published: {e}; \
                         retrying every {} s (they stay in the store; nothing is lost)",
                        seqs.len(),
                        STORE_RETRY.as_secs()
                    );
                }
                run.store_failures += 1;
                run.acked.extend(seqs);
                run.store_retry_at = Some(Instant::now() + STORE_RETRY);
            }
        }
    }

    /// Reads the next outbox entries into `ready` when it runs low.
    async fn read_ahead(&mut self, run: &mut Run) {
        let wanted = run.client.is_some()
            && run.outbox_may_have_more
            && !run.stopping
            && !Self::store_blocked(run)
            && run.ready.len() <= self.read_ahead / 2;
        if !wanted {
            return;
        }
        let after = run
            .ready
            .back()
            .map_or(self.window.cursor(), |e| e.entry.seq);
        let unmarked_above = |seqs: &[u64]| seqs.iter().any(|seq| *seq > after);
        if unmarked_above(&run.acked)
            || run
                .marking
                .as_ref()
                .is_some_and(|m| unmarked_above(&m.seqs))
        {
            // After a rewind: marks first, a fetch must never return an
            // acknowledged seq.
            self.flush_marks(run).await;
            if !run.acked.is_empty() || Self::store_blocked(run) {
                return;
            }
        }
        let limit = self.read_ahead - run.ready.len();
        let entries = match self.outbox.pending_publishable(after, limit).await {
            Ok(entries) => entries,
            Err(e) => {
                error!(
                    "could not read the outbox: {e}; retrying in {} s",
                    STORE_RETRY.as_secs()
                );
                run.store_retry_at = Some(Instant::now() + STORE_RETRY);
                return;
            }
        };
        let exhausted = entries.len() < limit;
        run.outbox_may_have_more = !exhausted;
        let seqs: Vec<u64> = entries.iter().map(|e| e.entry.seq).collect();
        self.window.fetched(&seqs, exhausted);
        run.ready
            .extend(entries.into_iter().filter(|e| e.entry.seq > after));
    }

    /// Publishes ready entries while the window has room.
    fn send_ready(&mut self, run: &mut Run) {
        let Some(client) = run.client.as_ref() else {
            return;
        };
        if run.stopping {
            return;
        }
        while self.window.room() > 0 {
            let Some(publishable) = run.ready.pop_front() else {
                break;
            };
            let entry = &publishable.entry;
            let (topic, json, damaged) = match self.topics.gateway_topic(&entry.message_type) {
                // The gateway's own messages (receipts, its heartbeat) travel
                // through the outbox too, so they are as durable as device
                // messages; their stored JSON is the payload itself.
                Some(topic) => (topic, Bytes::from(entry.message_json.clone()), false),
                None => {
                    let valid_type = Topics::is_valid_message_type(&entry.message_type);
                    let (json, damaged) = match &publishable.up {
                        // Built at ingest from the frame itself.
                        Some(up) => (up.clone(), !valid_type),
                        None => {
                            let compacted =
                                (entry.compacted_count > 0).then_some(entry.compacted_count);
                            let payload = up_payload(entry, compacted);
                            (Bytes::from(payload.json), payload.damaged || !valid_type)
                        }
                    };
                    (self.topics.up(&entry.message_type), json, damaged)
                }
            };
            if client
                .try_publish(topic, QoS::AtLeastOnce, false, json)
                .is_err()
            {
                // rumqttc's request channel is full: try again after the
                // next event.
                run.ready.push_front(publishable);
                break;
            }
            let entry = &publishable.entry;
            if damaged {
                run.st.damaged_total += 1;
                warn!(
                    seq = entry.seq,
                    msg_id = %hex::encode(entry.msg_id),
                    "stored message has damaged JSON or message type; published it with its raw frame"
                );
            }
            // The row's receive time is its store time: ingest commits
            // within one group commit (milliseconds) of hearing a frame.
            run.stored_at_ms.insert(entry.seq, entry.received_at_ms);
            if self.window.requested(Tag::Outbox(entry.seq)) {
                run.st.republished_total += 1;
            }
            run.status_dirty = true;
        }
    }

    fn handle(&mut self, run: &mut Run, event: DriverEvent) {
        match event {
            DriverEvent::Connected {
                client,
                session_present,
            } => {
                debug!(session_present, "uplink connected");
                run.st.connected = true;
                run.st.since_ms = now_ms();
                run.st.connects_total += 1;
                run.status_dirty = true;
                run.outbox_may_have_more = true;
                let filters = [
                    SubscribeFilter::new(self.topics.down_filter(), QoS::AtLeastOnce),
                    SubscribeFilter::new(self.topics.ota_command(), QoS::AtLeastOnce),
                ];
                if let Err(e) = client.try_subscribe_many(filters) {
                    error!("could not subscribe to downlink topics: {e}");
                }
                run.client = Some(client);
                if run.stopping {
                    return;
                }
                self.publish_state(run);
            }
            DriverEvent::Disconnected { reason } => {
                run.client = None;
                // Everything unacknowledged is fetched again from the lowest seq.
                run.ready.clear();
                // They are sent (and recorded) again.
                run.stored_at_ms.clear();
                run.outbox_may_have_more = true;
                for tag in self.window.connection_lost() {
                    if let Tag::Extra(id) = tag {
                        if let Some(done) = run.extra_waiters.remove(&id) {
                            let _ = done.send(Err(PublishError::ConnectionLost));
                        }
                    }
                }
                run.st.connected = false;
                run.st.downlinks_subscribed = false;
                run.st.since_ms = now_ms();
                run.st.last_error = Some(reason);
                run.st.last_error_ms = Some(run.st.since_ms);
                run.status_dirty = true;
            }
            DriverEvent::ConnectFailed { reason, .. } => {
                run.st.last_error = Some(reason);
                run.st.last_error_ms = Some(now_ms());
                run.status_dirty = true;
            }
            DriverEvent::Mqtt(event) => self.handle_mqtt(run, event),
        }
    }

    fn handle_mqtt(&mut self, run: &mut Run, event: Event) {
        match event {
            Event::Outgoing(Outgoing::Publish(pkid)) => {
                if let Err(anomaly) = self.window.on_outgoing_publish(pkid) {
                    warn!(
                        ?anomaly,
                        "unexpected MQTT packet id bookkeeping; the message will be re-sent"
                    );
                    run.outbox_may_have_more = true;
                }
            }
            Event::Incoming(Packet::PubAck(ack)) => match self.window.on_puback(ack.pkid) {
                Some(Tag::Outbox(seq)) => {
                    run.acked.push(seq);
                    run.st.published_total += 1;
                    let now = now_ms();
                    run.st.last_publish_ms = Some(now);
                    if let Some(stored) = run.stored_at_ms.remove(&seq) {
                        run.st.publish_latency.observe(now.saturating_sub(stored));
                    }
                    run.status_dirty = true;
                }
                Some(Tag::State) => {}
                Some(Tag::Extra(id)) => {
                    if let Some(done) = run.extra_waiters.remove(&id) {
                        let _ = done.send(Ok(()));
                    }
                }
                None => debug!(pkid = ack.pkid, "PUBACK for a packet id we do not track"),
            },
            Event::Incoming(Packet::Publish(publish)) => self.deliver(run, publish),
            Event::Incoming(Packet::SubAck(suback)) => {
                run.st.downlinks_subscribed = true;
                run.status_dirty = true;
                if suback
                    .return_codes
                    .iter()
                    .any(|code| matches!(code, SubscribeReasonCode::Failure))
                {
                    let reason = format!(
                        "MQTT broker refused the subscription to {} or {} (check its ACL): \
                         downlinks will not arrive",
                        self.topics.down_filter(),
                        self.topics.ota_command()
                    );
                    error!("{reason}");
                    run.st.downlinks_subscribed = false;
                    run.st.last_error = Some(reason);
                    run.st.last_error_ms = Some(now_ms());
                    run.status_dirty = true;
                }
            }
            _ => {}
        }
    }

    /// Hands a backend publish to the consumer with its ack handle.
    fn deliver(&mut self, run: &mut Run, publish: Publish) {
        let Some(client) = run.client.clone() else {
            return;
        };
        let kind = match self.topics.parse_incoming(&publish.topic) {
            Some(IncomingTopic::OtaCommand) => Some(IncomingKind::OtaCommand),
            Some(IncomingTopic::Downlink { device_id }) => {
                parse_device_id(&device_id).map(|device_id| IncomingKind::Downlink { device_id })
            }
            None => None,
        };
        let ack = AckHandle::new(client.clone(), &publish);
        let Some(kind) = kind else {
            run.st.incoming_malformed_total += 1;
            run.status_dirty = true;
            warn!(
                topic = %publish.topic,
                "dropping MQTT message on a malformed topic (device ids are 64 hex digits)"
            );
            // Ack it anyway: unacked, it would come back on every connect.
            let mut ack_req = Publish::new("", publish.qos, Vec::new());
            ack_req.pkid = publish.pkid;
            let _ = client.try_ack(&ack_req);
            return;
        };
        let message = IncomingMessage {
            kind,
            topic: publish.topic.clone(),
            payload: publish.payload.to_vec(),
            redelivered: publish.dup,
            ack,
        };
        if self.incoming.send(message).is_err() {
            debug!("no consumer for incoming MQTT messages; leaving it unacknowledged");
        }
    }

    fn start_extra(&mut self, run: &mut Run, request: ExtraRequest) {
        let Some(client) = run.client.as_ref() else {
            let _ = request.done.send(Err(PublishError::NotConnected));
            return;
        };
        if run.stopping {
            let _ = request.done.send(Err(PublishError::Stopped));
            return;
        }
        if run.extra_waiters.len() >= MAX_EXTRAS_OUTSTANDING {
            let _ = request.done.send(Err(PublishError::Busy));
            return;
        }
        let topic = match request.topic {
            ExtraTopic::Heartbeat => self.topics.heartbeat(),
            ExtraTopic::Receipt => self.topics.receipt(),
            ExtraTopic::OtaProgress => self.topics.ota_progress(),
            ExtraTopic::Exact(topic) => topic,
        };
        if client
            .try_publish(topic, QoS::AtLeastOnce, false, request.payload)
            .is_err()
        {
            let _ = request.done.send(Err(PublishError::Busy));
            return;
        }
        let id = run.next_extra_id;
        run.next_extra_id += 1;
        self.window.requested(Tag::Extra(id));
        run.extra_waiters.insert(id, request.done);
    }

    fn publish_state(&mut self, run: &mut Run) {
        run.next_state_at = Instant::now() + self.state_interval;
        let payload = StatePayload::online(
            &self.versions,
            self.started.elapsed().as_secs(),
            self.outbox.backlog(),
        );
        self.publish_retained_state(run, payload);
    }

    fn publish_retained_state(&mut self, run: &mut Run, payload: StatePayload) {
        let Some(client) = run.client.as_ref() else {
            return;
        };
        match client.try_publish(
            self.topics.state(),
            QoS::AtLeastOnce,
            true,
            payload.to_json(),
        ) {
            Ok(()) => {
                self.window.requested(Tag::State);
            }
            Err(e) => warn!("could not queue the MQTT state message: {e}"),
        }
    }

    /// Stop taking outbox rows, wait (bounded) for outstanding PUBACKs,
    /// publish `offline`, disconnect cleanly, stop the driver.
    async fn shutdown(
        mut self,
        run: &mut Run,
        mut events: mpsc::Receiver<DriverEvent>,
        driver_stop: CancellationToken,
        driver: JoinHandle<()>,
    ) {
        run.stopping = true;
        let deadline = Instant::now() + self.shutdown_grace;
        if run.client.is_some() {
            info!(
                inflight = self.window.outbox_outstanding(),
                "uplink stopping: waiting for outstanding acknowledgements"
            );
            self.wait_events(run, &mut events, deadline, |p, run| {
                run.client.is_none() || p.window.is_idle()
            })
            .await;
            self.flush_marks(run).await;
        }
        if run.client.is_some() {
            let offline = StatePayload::shutdown(
                &self.versions,
                self.started.elapsed().as_secs(),
                self.outbox.backlog(),
            );
            self.publish_retained_state(run, offline);
            self.wait_events(run, &mut events, deadline, |p, run| {
                run.client.is_none() || p.window.is_idle()
            })
            .await;
        }
        if let Some(client) = run.client.clone() {
            if client.try_disconnect().is_ok() {
                // A last short wait for the DISCONNECT to be written, even
                // when the grace period is used up.
                let until = deadline.max(Instant::now() + Duration::from_millis(500));
                let mut disconnected = false;
                while !disconnected {
                    match tokio::time::timeout_at(until, events.recv()).await {
                        Ok(Some(DriverEvent::Mqtt(Event::Outgoing(Outgoing::Disconnect)))) => {
                            disconnected = true
                        }
                        Ok(Some(event)) => self.handle(run, event),
                        Ok(None) | Err(_) => break,
                    }
                }
            }
        }
        self.flush_marks(run).await;
        if !run.acked.is_empty() {
            warn!(
                count = run.acked.len(),
                "could not mark some acknowledged messages as published; they will be sent again after restart"
            );
        }
        driver_stop.cancel();
        // Dropping the receiver unblocks a driver waiting to send.
        drop(events);
        if let Err(e) = driver.await {
            error!("MQTT connection driver ended abnormally: {e}");
        }
        for (_, done) in run.extra_waiters.drain() {
            let _ = done.send(Err(PublishError::Stopped));
        }
        run.client = None;
        run.st.connected = false;
        run.st.stopped = true;
        run.st.downlinks_subscribed = false;
        run.st.since_ms = now_ms();
        run.st.inflight = 0;
        self.status.send_replace(run.st.clone());
        info!("uplink stopped");
    }

    /// Handles events until `done` holds, the deadline passes, or the driver
    /// goes away.
    async fn wait_events(
        &mut self,
        run: &mut Run,
        events: &mut mpsc::Receiver<DriverEvent>,
        deadline: Instant,
        done: impl Fn(&Self, &Run) -> bool,
    ) {
        while !done(self, run) {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(event)) => self.handle(run, event),
                Ok(None) | Err(_) => return,
            }
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn parse_device_id(hex_id: &str) -> Option<[u8; 32]> {
    let mut id = [0u8; 32];
    hex::decode_to_slice(hex_id, &mut id).ok()?;
    Some(id)
}

fn now_ms() -> u64 {
    radio_bridge::link::unix_millis(SystemTime::now())
}
