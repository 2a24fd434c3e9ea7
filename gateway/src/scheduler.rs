//! The one transmit scheduler: everything the gateway puts on air goes
//! through here, so priorities and the legal duty cycle hold for all of it.
//!
//! Priorities, highest first: radio acks (a device is waiting, and a missed
//! ack costs a retransmission of the whole message), downlinks, ledger-sync
//! offers, the gateway's own heartbeat. Each frame's airtime is computed from
//! the link's modulation and checked against the EU868 sub-band ledger
//! (rolling hour) before it is sent; a frame that does not fit waits until it
//! does. With a journal ([`Scheduler::keep_ledger_in`]) each admitted frame
//! is on disk before it goes to its link, charged as if it started as late
//! as a link may hold it ([`MAX_TX_HOLD`]), so neither a restart nor a held
//! frame can stretch a band's hour. A link transmits one frame at a time (LoRa is half duplex): it is
//! busy for the frame's airtime after each send.
//!
//! Priority alone would let a steady stream of downlinks keep the gateway's
//! heartbeat and sync offers off the air for good. So a frame below downlink
//! priority that has waited [`PROMOTE_AFTER`] goes next after the acks. Acks
//! are never overtaken: a device is waiting for each one.
//!
//! Acks are batched: ids arriving within [`ACK_BATCH_WINDOW`] share a frame,
//! up to [`ACKS_PER_FRAME`] ids, so one downlink covers many messages. An id
//! whose ack frame is already queued is not queued again when the device
//! repeats its message: devices retransmit while their ack waits for
//! airtime, and re-acking every repeat would grow the queue faster than the
//! link drains it (each repeat adding airtime that delays the next ack).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::airtime_journal::{AirtimeJournal, BootClock, Restored};

use radio_bridge::airtime::time_on_air;
use radio_bridge::duty_cycle::{DutyCycleDenied, DutyCycleLedger, DutyCycleSnapshot, Region};
use radio_bridge::frame::{Ack, Envelope, Frame, Message, MsgId, ProtocolVersion};
use radio_bridge::identity::Identity;
use radio_bridge::link::{RadioParams, Transmit, MAX_TX_HOLD};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long the first ack of a batch waits for company.
pub const ACK_BATCH_WINDOW: Duration = Duration::from_millis(50);

/// Ids per ack frame: 8 × 17 bytes keeps the signed frame under 255 bytes,
/// one LoRa packet.
pub const ACKS_PER_FRAME: usize = 8;

/// Most ack ids waiting for airtime on one route. Acks are airtime-bound
/// (8 ids per frame, about one frame a second at SF9), so under a flood
/// the ids arrive far faster than they can go on air; unbounded, they
/// were the gateway's memory growing with the load. At the bound the
/// oldest id is let go: its device has been waiting for minutes, has
/// retransmitted meanwhile (the store answers the repeat as a duplicate
/// and it is acked again) or will, so nothing is lost, only an ack.
pub const MAX_PENDING_ACKS: usize = 4096;

/// How long a link waits before trying again when the airtime journal
/// could not record a transmission (nothing is sent unrecorded).
const JOURNAL_RETRY: Duration = Duration::from_secs(1);

/// How long a sync offer or the gateway's heartbeat waits behind
/// downlinks before it goes next after the acks.
pub const PROMOTE_AFTER: Duration = Duration::from_secs(120);

/// Transmission priority, highest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    Ack = 0,
    Downlink = 1,
    SyncOffer = 2,
    Heartbeat = 3,
}

/// What the rest of the gateway asks the scheduler to send.
#[derive(Debug, Clone)]
pub enum TxRequest {
    /// Acknowledge a durable message over the link it came from, and
    /// through the concentrator that heard it (`via`, from its `RxMeta`).
    Ack {
        link: String,
        via: Option<String>,
        msg_id: MsgId,
    },
    /// A ready frame; `link: None` sends it on every link. `via` names the
    /// concentrator that heard the device it is for (see `Transmit::via`).
    Frame {
        link: Option<String>,
        via: Option<String>,
        priority: Priority,
        bytes: Vec<u8>,
        /// Echoed in [`TxReport`]s so the sender can follow delivery.
        tag: u64,
    },
}

/// Told to interested parties after a frame went on air (or could not).
#[derive(Debug, Clone, PartialEq)]
pub struct TxReport {
    pub tag: u64,
    pub link: String,
    pub sent: bool,
}

/// Where a link's transmissions go and how it modulates them.
#[derive(Debug, Clone)]
pub struct TxLink {
    pub name: String,
    pub transmit: mpsc::Sender<Transmit>,
    pub params: RadioParams,
}

/// Numbers for the status page and `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct SchedulerStats {
    pub frames_sent: u64,
    pub acks_sent: u64,
    pub airtime_ms_total: u64,
    /// Frames held back by the duty cycle at least once.
    pub deferred_total: u64,
    /// Frames dropped because they could never fit (outside every band,
    /// longer than the band's hourly budget).
    pub impossible_total: u64,
    /// Ack ids let go unsent because [`MAX_PENDING_ACKS`] were already
    /// waiting on their route (their devices retransmit and are acked then).
    pub acks_overflowed_total: u64,
    pub queued: usize,
    pub duty_cycle: Option<DutyCycleSnapshot>,
}

/// Cheap handle used to submit requests and read the statistics.
#[derive(Clone)]
pub struct SchedulerHandle {
    requests: mpsc::UnboundedSender<TxRequest>,
    stats: Arc<Mutex<SchedulerStats>>,
}

impl SchedulerHandle {
    pub fn submit(&self, request: TxRequest) {
        // The scheduler outlives every submitter except during shutdown, when
        // nothing more needs to go on air.
        let _ = self.requests.send(request);
    }

    pub fn stats(&self) -> SchedulerStats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// Where a frame goes: a link, and the concentrator within it that heard
/// the device being answered, if the link has several.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Route {
    link: String,
    via: Option<String>,
}

struct Queued {
    priority: Priority,
    route: Route,
    bytes: Vec<u8>,
    tag: u64,
    deferred: bool,
    /// The ids an ack frame carries (empty for other frames).
    acked: Vec<MsgId>,
    queued_at: Instant,
    /// Waited [`PROMOTE_AFTER`] below downlink priority: goes after acks only.
    promoted: bool,
}

impl Queued {
    /// The queue's order: acks, then promoted frames, then by priority;
    /// within each, oldest first.
    fn turn(&self) -> (bool, bool, Priority, Instant) {
        (
            self.priority != Priority::Ack,
            !self.promoted,
            self.priority,
            self.queued_at,
        )
    }
}

/// Ack ids waiting to go on air for one link. Ids become frames only when
/// the link is free to send one, so under a flood the batch keeps growing
/// instead of turning into thousands of pre-signed frames.
struct PendingAcks {
    since: Instant,
    ids: VecDeque<MsgId>,
    seen: HashSet<MsgId>,
}

/// The scheduler task's state.
pub struct Scheduler {
    identity: Identity,
    links: HashMap<String, TxLink>,
    ledger: DutyCycleLedger,
    /// The ledger on disk; `None` keeps it in memory only (tests, and
    /// regions where nothing is denied).
    journal: Option<AirtimeJournal>,
    /// Acks waiting for their batch window or for the link, per route: one
    /// ack frame goes out through one concentrator.
    acks: BTreeMap<Route, PendingAcks>,
    queue: VecDeque<Queued>,
    busy_until: HashMap<String, Instant>,
    /// (link, id) of every ack waiting in `queue`, not yet on air.
    acks_queued: HashSet<(String, MsgId)>,
    stats: Arc<Mutex<SchedulerStats>>,
    reports: Option<mpsc::UnboundedSender<TxReport>>,
    next_id: u64,
}

impl Scheduler {
    pub fn new(
        identity: Identity,
        links: Vec<TxLink>,
        region: Region,
    ) -> (
        Scheduler,
        SchedulerHandle,
        mpsc::UnboundedReceiver<TxRequest>,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(Mutex::new(SchedulerStats::default()));
        let scheduler = Scheduler {
            identity,
            links: links.into_iter().map(|l| (l.name.clone(), l)).collect(),
            ledger: DutyCycleLedger::new(region),
            journal: None,
            acks: BTreeMap::new(),
            queue: VecDeque::new(),
            busy_until: HashMap::new(),
            acks_queued: HashSet::new(),
            stats: stats.clone(),
            reports: None,
            next_id: 1,
        };
        (
            scheduler,
            SchedulerHandle {
                requests: tx,
                stats,
            },
            rx,
        )
    }

    /// Delivery reports for tagged frames go here.
    pub fn report_to(&mut self, reports: mpsc::UnboundedSender<TxReport>) {
        self.reports = Some(reports);
    }

    /// Keeps the airtime ledger in `dir` (see [`crate::airtime_journal`]):
    /// what earlier runs sent still counts, and every transmission is on
    /// disk before it goes to the radio.
    pub fn keep_ledger_in(&mut self, dir: &Path) -> std::io::Result<Restored> {
        let (journal, restored) = AirtimeJournal::open(dir, &mut self.ledger, BootClock::now())?;
        self.journal = Some(journal);
        self.publish_usage(Instant::now());
        Ok(restored)
    }

    pub async fn run(
        mut self,
        mut requests: mpsc::UnboundedReceiver<TxRequest>,
        shutdown: CancellationToken,
    ) {
        loop {
            let wake = self.next_wake(Instant::now());
            tokio::select! {
                _ = shutdown.cancelled() => break,
                request = requests.recv() => match request {
                    Some(r) => {
                        self.accept(r, Instant::now());
                        // Take everything already waiting, so one pump sees
                        // it all and priorities decide, not arrival timing.
                        while let Ok(r) = requests.try_recv() {
                            self.accept(r, Instant::now());
                        }
                    }
                    None => break,
                },
                _ = sleep_until(wake) => {}
            }
            self.pump(Instant::now()).await;
        }
    }

    fn accept(&mut self, request: TxRequest, now: Instant) {
        match request {
            TxRequest::Ack { link, via, msg_id } => {
                if self.acks_queued.contains(&(link.clone(), msg_id)) {
                    // Its ack is already waiting for airtime.
                    return;
                }
                let route = Route { link, via };
                let entry = self.acks.entry(route).or_insert_with(|| PendingAcks {
                    since: now,
                    ids: VecDeque::new(),
                    seen: HashSet::new(),
                });
                if entry.seen.insert(msg_id) {
                    entry.ids.push_back(msg_id);
                }
                let overflowed = entry.ids.len() > MAX_PENDING_ACKS;
                if overflowed {
                    if let Some(oldest) = entry.ids.pop_front() {
                        entry.seen.remove(&oldest);
                    }
                    self.bump(|s| s.acks_overflowed_total += 1);
                }
            }
            TxRequest::Frame {
                link,
                via,
                priority,
                bytes,
                tag,
            } => {
                let targets: Vec<String> = match link {
                    Some(l) => vec![l],
                    None => self.links.keys().cloned().collect(),
                };
                for link in targets {
                    let route = Route {
                        link,
                        via: via.clone(),
                    };
                    self.enqueue(priority, route, bytes.clone(), tag, Vec::new(), now);
                }
            }
        }
    }

    fn enqueue(
        &mut self,
        priority: Priority,
        route: Route,
        bytes: Vec<u8>,
        tag: u64,
        acked: Vec<MsgId>,
        now: Instant,
    ) {
        for id in &acked {
            self.acks_queued.insert((route.link.clone(), *id));
        }
        let queued = Queued {
            priority,
            route,
            bytes,
            tag,
            deferred: false,
            acked,
            queued_at: now,
            promoted: false,
        };
        // After everything of its turn or earlier: equal turns keep arrival order.
        let pos = self
            .queue
            .iter()
            .position(|q| q.turn() > queued.turn())
            .unwrap_or(self.queue.len());
        self.queue.insert(pos, queued);
    }

    /// Moves frames that waited [`PROMOTE_AFTER`] below downlink priority up
    /// to right after the acks.
    fn promote_waiting(&mut self, now: Instant) {
        let overdue = |q: &Queued| {
            !q.promoted
                && q.priority > Priority::Downlink
                && now.duration_since(q.queued_at) >= PROMOTE_AFTER
        };
        if !self.queue.iter().any(overdue) {
            return;
        }
        for q in self.queue.iter_mut() {
            if overdue(q) {
                q.promoted = true;
            }
        }
        // Stable, and every other entry's turn is unchanged, so only the
        // promoted ones move.
        self.queue.make_contiguous().sort_by_key(Queued::turn);
    }

    /// Takes entry `i` off the queue; its acks are no longer waiting.
    fn dequeue(&mut self, i: usize) -> Option<Queued> {
        let q = self.queue.remove(i)?;
        for id in &q.acked {
            self.acks_queued.remove(&(q.route.link.clone(), *id));
        }
        Some(q)
    }

    /// Turns ripe ack batches into signed ack frames at ack priority: at
    /// most one frame per route, and only when its link is free and the
    /// route has no ack frame queued already.
    fn flush_acks(&mut self, now: Instant) {
        let ripe: Vec<Route> = self
            .acks
            .iter()
            .filter(|(_, p)| p.ids.len() >= ACKS_PER_FRAME || now >= p.since + ACK_BATCH_WINDOW)
            .map(|(route, _)| route.clone())
            .filter(|route| self.busy_until.get(&route.link).is_none_or(|t| *t <= now))
            .filter(|route| {
                !self
                    .queue
                    .iter()
                    .any(|q| q.priority == Priority::Ack && &q.route == route)
            })
            .collect();
        for route in ripe {
            let Some(pending) = self.acks.get_mut(&route) else {
                continue;
            };
            let take = pending.ids.len().min(ACKS_PER_FRAME);
            let chunk: Vec<MsgId> = pending.ids.drain(..take).collect();
            for id in &chunk {
                pending.seen.remove(id);
            }
            if pending.ids.is_empty() {
                self.acks.remove(&route);
            }
            let envelope = Envelope {
                version: ProtocolVersion::CURRENT,
                device_id: self.identity.device_id(),
                to: None,
                seq: None,
                message: Message::Ack(Ack {
                    acked: chunk.clone(),
                    timestamp_counter: None,
                }),
            };
            if let Ok(frame) = Frame::sign(envelope, self.identity.signing_key()) {
                self.enqueue(Priority::Ack, route, frame.bytes, 0, chunk, now);
            }
        }
    }

    /// Sends every queued frame whose link is free and whose band has room,
    /// highest priority first.
    async fn pump(&mut self, now: Instant) {
        self.flush_acks(now);
        self.promote_waiting(now);
        let mut i = 0;
        while i < self.queue.len() {
            let q = &self.queue[i];
            let Some(link) = self.links.get(&q.route.link).cloned() else {
                self.dequeue(i);
                continue;
            };
            if self.busy_until.get(&link.name).is_some_and(|t| *t > now) {
                i += 1;
                continue;
            }
            let airtime = time_on_air(q.bytes.len(), &link.params);
            match self
                .ledger
                .can_transmit(link.params.freq_hz, airtime, now.into_std())
            {
                Ok(()) => {}
                Err(DutyCycleDenied::Busy { wait, .. }) => {
                    // Nothing else on this link goes before the band frees:
                    // treat the link as busy until then.
                    self.busy_until.insert(link.name.clone(), now + wait);
                    if !self.queue[i].deferred {
                        self.queue[i].deferred = true;
                        self.bump(|s| s.deferred_total += 1);
                    }
                    i += 1;
                    continue;
                }
                Err(impossible) => {
                    tracing::warn!(link = %link.name, "cannot transmit: {impossible}");
                    let q = self.dequeue(i).expect("index checked");
                    self.bump(|s| s.impossible_total += 1);
                    self.report(q.tag, &link.name, false);
                    continue;
                }
            }
            if !self.charge(link.params.freq_hz, airtime, now) {
                self.busy_until
                    .insert(link.name.clone(), now + JOURNAL_RETRY);
                i += 1;
                continue;
            }
            let q = self.dequeue(i).expect("index checked");
            self.busy_until.insert(link.name.clone(), now + airtime);
            let id = self.next_id;
            self.next_id += 1;
            let sent = link
                .transmit
                .send(Transmit {
                    id,
                    bytes: q.bytes,
                    params: link.params,
                    via: q.route.via,
                })
                .await
                .is_ok();
            let is_ack = q.priority == Priority::Ack;
            self.bump(|s| {
                s.frames_sent += 1;
                s.acks_sent += is_ack as u64;
                s.airtime_ms_total += airtime.as_millis() as u64;
            });
            self.report(q.tag, &link.name, sent);
        }
        self.publish_usage(now);
    }

    fn publish_usage(&self, now: Instant) {
        let snapshot = self.ledger.snapshot(now.into_std());
        let queued = self.queue.len();
        self.bump(|s| {
            s.duty_cycle = Some(snapshot);
            s.queued = queued;
        });
    }

    /// Charges a transmission starting at `now` to the ledger, as if it
    /// might start as late as a link may hold it, and writes it to the
    /// journal. `false`: the journal could not record it, so it must not be
    /// sent (it stays charged in memory: over-counted, never under).
    fn charge(&mut self, freq_hz: u32, airtime: Duration, now: Instant) -> bool {
        let Some((band, end)) =
            self.ledger
                .record_delayed(freq_hz, airtime, now.into_std(), MAX_TX_HOLD)
        else {
            return true;
        };
        let Some(journal) = &mut self.journal else {
            return true;
        };
        match journal.append(&self.ledger, band, end, airtime) {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(
                    "cannot record a transmission in the airtime journal: {error}; not sending it"
                );
                false
            }
        }
    }

    fn report(&self, tag: u64, link: &str, sent: bool) {
        if tag == 0 {
            return;
        }
        if let Some(r) = &self.reports {
            let _ = r.send(TxReport {
                tag,
                link: link.to_string(),
                sent,
            });
        }
    }

    fn bump(&self, f: impl FnOnce(&mut SchedulerStats)) {
        if let Ok(mut s) = self.stats.lock() {
            f(&mut s);
        }
    }

    /// When something may become sendable: a batch window closing, or a
    /// link becoming free (after a transmission or when its band has room).
    fn next_wake(&self, now: Instant) -> Option<Instant> {
        let acks = self.acks.iter().map(|(route, p)| {
            let window = p.since + ACK_BATCH_WINDOW;
            match self.busy_until.get(&route.link) {
                Some(free) if *free > window => *free,
                _ => window.max(now),
            }
        });
        let links = self.busy_until.values().copied().filter(|t| *t > now);
        acks.chain(links).min()
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(name: &str, freq: u32) -> (TxLink, mpsc::Receiver<Transmit>) {
        let (tx, rx) = mpsc::channel(1024);
        (
            TxLink {
                name: name.into(),
                transmit: tx,
                params: RadioParams {
                    freq_hz: freq,
                    ..RadioParams::default()
                },
            },
            rx,
        )
    }

    /// A ready frame of `len` bytes for link r0.
    fn frame_on_r0(priority: Priority, len: usize, tag: u64) -> TxRequest {
        TxRequest::Frame {
            link: Some("r0".into()),
            via: None,
            priority,
            bytes: vec![0x85; len],
            tag,
        }
    }

    fn acked_ids(t: &Transmit) -> Vec<MsgId> {
        match Frame::decode(&t.bytes).unwrap().envelope.message {
            Message::Ack(a) => a.acked,
            other => panic!("not an ack: {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn acks_are_batched_into_few_frames() {
        let (l, mut rx) = link("r0", 869_525_000);
        let (s, handle, requests) =
            Scheduler::new(Identity::from_seed([1; 32]), vec![l], Region::Eu868);
        let stop = CancellationToken::new();
        tokio::spawn(s.run(requests, stop.clone()));
        for i in 0..20u8 {
            handle.submit(TxRequest::Ack {
                link: "r0".into(),
                via: None,
                msg_id: [i; 16],
            });
        }
        let mut ids = Vec::new();
        let mut frames = 0;
        while ids.len() < 20 {
            let t = tokio::time::timeout(Duration::from_secs(60), rx.recv())
                .await
                .expect("ack frames within a minute")
                .expect("link channel open");
            assert!(t.bytes.len() <= 255, "ack frame fits one packet");
            ids.extend(acked_ids(&t));
            frames += 1;
        }
        assert_eq!(frames, 3, "20 ids in frames of 8");
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 20);
        stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_ack_ids_are_bounded_and_the_oldest_let_go() {
        let (l, mut rx) = link("r0", 869_525_000);
        let (s, handle, requests) =
            Scheduler::new(Identity::from_seed([1; 32]), vec![l], Region::Eu868);
        let id = |i: u32| {
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&i.to_be_bytes());
            id
        };
        let extra = 100;
        // Queued before the scheduler runs, so all arrive in one take.
        for i in 0..(MAX_PENDING_ACKS as u32 + extra) {
            handle.submit(TxRequest::Ack {
                link: "r0".into(),
                via: None,
                msg_id: id(i),
            });
        }
        let stop = CancellationToken::new();
        tokio::spawn(s.run(requests, stop.clone()));
        let first = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .expect("an ack frame within a minute")
            .expect("link channel open");
        assert_eq!(
            acked_ids(&first),
            (extra..extra + 8).map(id).collect::<Vec<_>>(),
            "the oldest ids beyond the bound were let go"
        );
        assert_eq!(handle.stats().acks_overflowed_total, u64::from(extra));
        stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn acks_go_before_heartbeats() {
        let (l, mut rx) = link("r0", 869_525_000);
        let (s, handle, requests) =
            Scheduler::new(Identity::from_seed([1; 32]), vec![l], Region::Eu868);
        let stop = CancellationToken::new();
        // Queue both before the task starts, so priority alone decides.
        handle.submit(frame_on_r0(Priority::Heartbeat, 100, 1));
        handle.submit(frame_on_r0(Priority::Ack, 50, 2));
        tokio::spawn(s.run(requests, stop.clone()));
        let first = rx.recv().await.unwrap();
        let second = rx.recv().await.unwrap();
        assert_eq!((first.bytes.len(), second.bytes.len()), (50, 100));
        stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn duty_cycle_holds_back_a_flood() {
        // Band M (868.0–868.6 MHz) allows 36 s per hour.
        let (l, mut rx) = link("r0", 868_100_000);
        let params = l.params;
        let (s, handle, requests) =
            Scheduler::new(Identity::from_seed([1; 32]), vec![l], Region::Eu868);
        let stop = CancellationToken::new();
        tokio::spawn(s.run(requests, stop.clone()));
        for tag in 1..=500 {
            handle.submit(frame_on_r0(Priority::Downlink, 200, tag));
        }
        let per_frame = time_on_air(200, &params);
        let mut sent = 0u32;
        // Within the first simulated hour, only what fits the budget goes out.
        let hour = Instant::now() + Duration::from_secs(3599);
        while let Ok(Some(_)) = tokio::time::timeout_at(hour, rx.recv()).await {
            sent += 1;
        }
        let budget = Duration::from_secs(36);
        assert!(sent > 0);
        assert!(
            per_frame * sent <= budget,
            "{sent} frames of {per_frame:?} exceed {budget:?}"
        );
        assert!(handle.stats().deferred_total > 0);
        stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_downlink_flood_does_not_silence_the_gateway_heartbeat() {
        // Band M allows 36 s of airtime per hour: 500 downlinks of 200
        // bytes take hours to drain, and they were queued first.
        let (l, mut rx) = link("r0", 868_100_000);
        let per_frame = time_on_air(200, &l.params);
        let (s, handle, requests) =
            Scheduler::new(Identity::from_seed([1; 32]), vec![l], Region::Eu868);
        let stop = CancellationToken::new();
        for tag in 1..=500 {
            handle.submit(frame_on_r0(Priority::Downlink, 200, tag));
        }
        handle.submit(frame_on_r0(Priority::Heartbeat, 100, 999));
        tokio::spawn(s.run(requests, stop.clone()));
        let flood_hours = (per_frame * 500).as_secs_f64() / 36.0;
        assert!(flood_hours > 4.0, "the flood lasts {flood_hours:.1} h");

        let started = Instant::now();
        let deadline = started + Duration::from_secs(3 * 3600);
        let mut downlinks_before = 0;
        loop {
            let sent = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .expect("the heartbeat went on air within 3 simulated hours")
                .expect("scheduler running");
            if sent.bytes.len() == 100 {
                break;
            }
            downlinks_before += 1;
        }
        assert!(
            Instant::now() >= started + PROMOTE_AFTER,
            "the heartbeat waits its turn first"
        );
        assert!(
            (1..500).contains(&downlinks_before),
            "{downlinks_before} downlinks went before the heartbeat"
        );
        stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn repeats_of_a_message_whose_ack_waits_are_not_acked_twice() {
        let (l, mut rx) = link("r0", 869_525_000);
        let (s, handle, requests) =
            Scheduler::new(Identity::from_seed([1; 32]), vec![l], Region::Unrestricted);
        let stop = CancellationToken::new();
        tokio::spawn(s.run(requests, stop.clone()));
        let ack = |i: u8| {
            handle.submit(TxRequest::Ack {
                link: "r0".into(),
                via: None,
                msg_id: [i; 16],
            })
        };
        // A full batch goes on air at once and keeps the link busy...
        (0..8).for_each(ack);
        let first = rx.recv().await.unwrap();
        assert_eq!(acked_ids(&first).len(), 8);
        // ...so the next batch waits, while its devices repeat themselves.
        (8..16).for_each(ack);
        for _ in 0..5 {
            tokio::time::sleep(ACK_BATCH_WINDOW * 2).await;
            (8..16).for_each(ack);
        }
        let second = rx.recv().await.unwrap();
        assert_eq!(
            acked_ids(&second),
            (8..16).map(|i| [i; 16]).collect::<Vec<_>>()
        );
        let more = tokio::time::timeout(Duration::from_secs(60), rx.recv()).await;
        assert!(more.is_err(), "repeats were acked again: {more:?}");
        // Once its ack went out, a repeat means the device missed it: ack again.
        ack(8);
        let third = rx.recv().await.unwrap();
        assert_eq!(acked_ids(&third), vec![[8; 16]]);
        stop.cancel();
    }
}
