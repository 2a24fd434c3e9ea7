//! The writer thread and group commit.
//!
//! One OS thread owns the only write connection. Every write (commits,
//! publish marks, meta, mailbox) reaches it as a [`Request`] over a channel
//! and is answered through a oneshot.
//!
//! Group commit: when a request arrives, the writer keeps collecting requests
//! until `group_commit_delay` has passed since that first one or the group
//! holds `max_batch` messages, then applies the whole group in ONE
//! transaction, commits (one fsync of the WAL), and only then answers every
//! caller. Under load, one disk flush covers many devices' messages; with a
//! single caller it adds at most `group_commit_delay` to the ack.
//!
//! One kind of group skips the fsync: publish marks alone (see
//! [`Request::must_survive_power_loss`]). Draining a backlog marks rows as
//! fast as PUBACKs arrive, and on an SD card an fsync per mark batch made the
//! drain disk-bound. The WAL is append-only, so the next fsynced commit makes
//! those frames durable too; until then a power cut can only undo marks, and
//! the rows are published again.
//!
//! A failed transaction is rolled back as a whole and every caller in the
//! group gets the error: nothing of it is acked, devices retry. The running
//! counts ([`Tallies`]) are changed on a working copy that is kept only if
//! the commit succeeded.
//!
//! A plain thread (not a tokio task) because every SQLite call blocks, and a
//! commit blocks on fsync for milliseconds; the async side only awaits the
//! oneshot.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::oneshot;

use super::handover::{self, Custodian, Reclaim};
use super::mailbox::{self, MailboxEntry, MailboxLimits, MailboxMark, MailboxPutOutcome, NewMail};
use super::quota::{self, Quota};
use super::recent::{Publishable, Recent};
use super::seen::SeenIds;
use super::tally::Tallies;
use super::{custody, lock, meta, now_ms, outbox, peer_mail};
use super::{
    CommitOutcome, Inbound, OutboxEntry, QuotaState, StoreError, StoreOptions, StoreStats,
};

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// A write for the writer thread, with where to send its answer.
pub(super) enum Request {
    Commit {
        batch: Vec<Inbound>,
        /// The `up` payload of each message, built at ingest (empty when
        /// the caller built none); kept in memory for the uplink.
        payloads: Vec<Option<Bytes>>,
        reply: Reply<Vec<CommitOutcome>>,
    },
    MarkPublished {
        seqs: Vec<u64>,
        reply: Reply<()>,
    },
    SetMeta {
        key: String,
        value: String,
        reply: Reply<()>,
    },
    MailboxPut {
        mail: NewMail,
        reply: Reply<MailboxPutOutcome>,
    },
    MailboxMark {
        id: u64,
        mark: MailboxMark,
        reply: Reply<bool>,
    },
    MailboxRemove {
        ids: Vec<u64>,
        reply: Reply<u64>,
    },
    MailboxExpire {
        now_ms: u64,
        reply: Reply<Vec<MailboxEntry>>,
    },
    CustodyAccept {
        origin: [u8; 32],
        rows: Vec<OutboxEntry>,
        reply: Reply<Vec<CommitOutcome>>,
    },
    CustodyRelease {
        ids: Vec<u64>,
        reply: Reply<()>,
    },
    HandOver {
        custodian: Custodian,
        seqs: Vec<u64>,
        reply: Reply<u64>,
    },
    HandedOverPublished {
        custodian: Custodian,
        /// `None`: every row handed to that store.
        seqs: Option<Vec<u64>>,
        reply: Reply<u64>,
    },
    Reclaim {
        which: Reclaim,
        reply: Reply<u64>,
    },
    PeerMail {
        op: peer_mail::Op,
        reply: Reply<peer_mail::PeerMailAnswer>,
    },
    /// Finish what came before, checkpoint, stop.
    Close {
        reply: Reply<()>,
    },
}

impl Request {
    /// How much of `max_batch` this request takes.
    fn messages(&self) -> usize {
        match self {
            Request::Commit { batch, .. } => batch.len(),
            Request::CustodyAccept { rows, .. } => rows.len(),
            _ => 1,
        }
    }

    /// Whether losing this write in a power cut would lose something. Only
    /// publish marks (ours, and the release of rows relayed for a
    /// neighbour) can be lost: the rows are then published again, an
    /// ordinary QoS-1 duplicate the backend drops by msg_id. Everything
    /// else (acked radio messages, downlinks acked to the broker, mailbox
    /// states, meta) must be on disk before the caller hears "done".
    /// Moving rows to and from `handed_over` only changes who publishes
    /// them: undone by a power cut, a row is offered or published again.
    fn must_survive_power_loss(&self) -> bool {
        !matches!(
            self,
            Request::MarkPublished { .. }
                | Request::CustodyRelease { .. }
                | Request::HandOver { .. }
                | Request::HandedOverPublished { .. }
                | Request::Reclaim { .. }
        )
    }

    /// Whether this write leaves the outbox as the uplink's in-memory rows
    /// (`recent.rs`) expect: new rows only through `Commit` (handed over
    /// with the group), removals only of rows the uplink already took and
    /// had acknowledged. Anything else that inserts, moves or deletes
    /// outbox rows must answer false, so the writer drops those rows and
    /// the uplink reads SQLite. No wildcard on purpose: a new request must
    /// be classified here.
    fn keeps_recent_rows_true(&self) -> bool {
        match self {
            Request::Commit { .. } | Request::MarkPublished { .. } => true,
            Request::SetMeta { .. }
            | Request::MailboxPut { .. }
            | Request::MailboxMark { .. }
            | Request::MailboxRemove { .. }
            | Request::MailboxExpire { .. } => true,
            // The custody table, not the outbox.
            Request::CustodyAccept { .. } | Request::CustodyRelease { .. } => true,
            Request::Close { .. } => true,
            // Move rows out of the outbox and back in under new seqs (the
            // receipt only touches `handed_over`, but reading SQLite after
            // it costs little and needs no argument).
            Request::HandOver { .. }
            | Request::HandedOverPublished { .. }
            | Request::Reclaim { .. } => false,
            // Mailbox tables only; a receipt is committed through `Commit`.
            Request::PeerMail { .. } => true,
        }
    }
}

/// Sends a request's answer once the fate of its transaction is known.
type Answer = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// Pairs a reply with the value computed inside the transaction; the value is
/// delivered only if the transaction commits. Returns the error, if the
/// operation itself failed, so the group can be aborted.
fn finish<T: Send + 'static>(
    reply: Reply<T>,
    result: Result<T, StoreError>,
) -> (Answer, Option<StoreError>) {
    let (value, error) = match result {
        Ok(value) => (Some(value), None),
        Err(error) => (None, Some(error)),
    };
    let answer: Answer = Box::new(move |outcome| {
        // The caller may have given up waiting; nothing to do then.
        let _ = reply.send(outcome.and_then(|()| value.ok_or(StoreError::Closed)));
    });
    (answer, error)
}

/// What the writer shares with the store handles.
pub(super) struct Shared {
    pub requests: Sender<Request>,
    pub stats: Arc<Mutex<StoreStats>>,
    pub recent: Arc<Mutex<Recent>>,
}

/// Starts the writer thread.
pub(super) fn start(
    conn: Connection,
    path: PathBuf,
    options: StoreOptions,
) -> Result<Shared, StoreError> {
    tune(&conn)?;
    let quota = Quota::new(&options);
    let mut tallies = Tallies::load(&conn)?;
    quota.settle(&mut tallies);
    if tallies.quota_state != QuotaState::Ok {
        tracing::warn!(
            bytes_used = tallies.bytes_used(),
            quota_bytes = quota.quota_bytes,
            "store opened above {}% of its quota: heartbeats will be compacted",
            options.compact_at_percent
        );
    }
    let stats = Arc::new(Mutex::new(
        tallies.snapshot(quota.quota_bytes, file_bytes(&path)),
    ));
    let recent = Arc::new(Mutex::new(Recent::new(outbox::newest_seq(&conn)?)));
    let seen = SeenIds::load(&conn)?;
    let writer = Writer {
        recent: Arc::clone(&recent),
        seen,
        conn,
        path,
        options,
        quota,
        tallies,
        stats: Arc::clone(&stats),
        synchronous_full: true,
    };
    let (requests, inbox) = mpsc::channel();
    std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || writer.run(inbox))
        .map_err(|e| StoreError::Database(format!("cannot start the store writer thread: {e}")))?;
    Ok(Shared {
        requests,
        stats,
        recent,
    })
}

/// WAL pages between automatic checkpoints (SQLite's default is 1,000).
/// Under a flood the same pages (the tails of the outbox and of `seen`) are
/// written to the WAL again and again; checkpointing less often copies each
/// into the database once for many commits. The WAL file grows to about
/// 16 MiB before it is reused (and is truncated on a clean stop).
const WRITER_AUTOCHECKPOINT_PAGES: i64 = 4000;

fn tune(conn: &Connection) -> Result<(), StoreError> {
    conn.pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES)?;
    Ok(())
}

struct Writer {
    conn: Connection,
    path: PathBuf,
    options: StoreOptions,
    quota: Quota,
    tallies: Tallies,
    seen: SeenIds,
    stats: Arc<Mutex<StoreStats>>,
    recent: Arc<Mutex<Recent>>,
    /// The connection's `synchronous` setting: FULL (fsync at commit) or,
    /// for groups of publish marks only, NORMAL (see [`Writer::write_group`]).
    synchronous_full: bool,
}

impl Writer {
    fn run(mut self, inbox: Receiver<Request>) {
        loop {
            let Ok(first) = inbox.recv() else {
                // Every Store handle was dropped without `close`: the queue is
                // already drained (recv returns queued requests first).
                if let Err(error) = self.shut_down() {
                    tracing::warn!(%error, "store writer stopping: {error}");
                }
                return;
            };
            let (group, close) = self.collect(first, &inbox);
            self.write_group(group);
            if let Some(reply) = close {
                let _ = reply.send(self.shut_down());
                return;
            }
        }
    }

    /// Gathers the group that starts with `first` (see the module docs).
    /// A `Close` ends the group; its reply is returned separately.
    fn collect(
        &self,
        first: Request,
        inbox: &Receiver<Request>,
    ) -> (Vec<Request>, Option<Reply<()>>) {
        // Only device messages wait for company: their radio acks are what
        // group commit batches. Anything else (marking rows published, meta,
        // mailbox updates) is written at once with whatever already queued,
        // so the uplink's drain rate is not bound by the group delay.
        let delay = match first {
            Request::Commit { .. } => self.options.group_commit_delay,
            _ => std::time::Duration::ZERO,
        };
        let deadline = Instant::now() + delay;
        let mut group = Vec::new();
        let mut messages = 0;
        let mut next = first;
        loop {
            if let Request::Close { reply } = next {
                return (group, Some(reply));
            }
            messages += next.messages();
            group.push(next);
            if messages >= self.options.max_batch {
                break;
            }
            match inbox.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(request) => next = request,
                Err(_) => break, // delay over (or every handle dropped)
            }
        }
        (group, None)
    }

    fn write_group(&mut self, group: Vec<Request>) {
        if group.is_empty() {
            return;
        }
        // Publish marks alone skip the fsync (module docs). SQLite still
        // syncs the WAL before any checkpoint copies these frames.
        let synchronous =
            self.set_synchronous_full(group.iter().any(Request::must_survive_power_loss));
        let rules = Rules {
            quota: &self.quota,
            options: &self.options,
            now: now_ms(),
        };
        let mut working = self.tallies.clone();
        working.space_freed = false;
        let mut answers: Vec<Answer> = Vec::with_capacity(group.len());
        let mut fresh: Vec<Publishable> = Vec::new();
        let outbox_rewritten = !group.iter().all(Request::keeps_recent_rows_true);
        let mut requests = group.into_iter();

        let outcome = match synchronous.and_then(|()| {
            self.conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(StoreError::from)
        }) {
            Err(error) => Err(error),
            Ok(tx) => {
                let mut failure = None;
                for request in requests.by_ref() {
                    let (answer, error) = apply(
                        &tx,
                        &rules,
                        &mut working,
                        &mut self.seen,
                        request,
                        &mut fresh,
                    );
                    answers.push(answer);
                    if error.is_some() {
                        failure = error;
                        break;
                    }
                }
                if failure.is_none() {
                    failure = upkeep(&tx, &rules, &mut working, &mut self.seen).err();
                }
                match failure {
                    // Dropping `tx` rolls the whole group back.
                    Some(error) => Err(error),
                    None => tx.commit().map_err(StoreError::from),
                }
            }
        };

        match &outcome {
            Ok(()) => {
                self.seen.commit();
                self.hand_to_uplink(&working, fresh, outbox_rewritten);
                working.transactions_total += 1;
                if !self.synchronous_full {
                    working.unsynced_transactions_total += 1;
                }
                if let Some((before, after)) = self.quota.settle(&mut working) {
                    log_quota_change(before, after, &working, &self.quota, &self.options);
                }
                self.tallies = working;
                *lock(&self.stats) = self
                    .tallies
                    .snapshot(self.quota.quota_bytes, file_bytes(&self.path));
            }
            Err(error) => {
                self.seen.rollback();
                tracing::error!(
                    %error,
                    "store transaction failed and was rolled back; none of its messages are acknowledged: {error}"
                );
            }
        }
        for answer in answers {
            answer(outcome.clone());
        }
        for request in requests {
            let (answer, _) = apply_nothing(request);
            answer(outcome.clone());
        }
    }

    /// After a commit: the group's new rows go to the uplink's in-memory
    /// queue (`recent.rs`), unless the group (or heartbeat compaction)
    /// changed the outbox otherwise.
    fn hand_to_uplink(&self, working: &Tallies, fresh: Vec<Publishable>, outbox_rewritten: bool) {
        let mut recent = lock(&self.recent);
        if outbox_rewritten
            || working.heartbeats_compacted_total != self.tallies.heartbeats_compacted_total
        {
            recent.invalidate(fresh.last().map_or(0, |row| row.entry.seq));
        } else if !fresh.is_empty() {
            recent.committed(fresh);
        }
    }

    /// Switches `synchronous` between FULL and NORMAL. Failing to leave
    /// FULL is harmless (the marks are fsynced after all); failing to get
    /// back to FULL is an error for the group, since its commit would not
    /// be on disk when its callers are told it is.
    fn set_synchronous_full(&mut self, full: bool) -> Result<(), StoreError> {
        if full == self.synchronous_full {
            return Ok(());
        }
        let level = if full { "FULL" } else { "NORMAL" };
        match self.conn.pragma_update(None, "synchronous", level) {
            Ok(()) => {
                self.synchronous_full = full;
                Ok(())
            }
            Err(error) if full => Err(StoreError::from(error)),
            Err(error) => {
                tracing::warn!(%error, "store: publish marks stay fsynced: {error}");
                Ok(())
            }
        }
    }

    /// Checkpoints the WAL into the main file (so a copy of the `.db` file
    /// alone is complete) and hands freed pages back to the file system.
    fn shut_down(self) -> Result<(), StoreError> {
        // Each step of this pragma frees one page: step it to the end.
        let mut vacuum = self.conn.prepare("PRAGMA incremental_vacuum")?;
        let mut steps = vacuum.query([])?;
        while steps.next()?.is_some() {}
        drop(steps);
        drop(vacuum);
        let busy: i64 = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))?;
        if busy != 0 {
            // Not an error: the data is safe in the WAL, the next open or
            // checkpoint finishes the job.
            tracing::info!(
                "store closed; the WAL checkpoint was incomplete because a reader was active"
            );
        }
        drop(self.conn);
        Ok(())
    }
}

/// What every request of a group is written under.
struct Rules<'a> {
    quota: &'a Quota,
    options: &'a StoreOptions,
    /// One clock reading for the whole group.
    now: u64,
}

/// Applies one request inside the group's transaction.
fn apply(
    conn: &Connection,
    rules: &Rules<'_>,
    tallies: &mut Tallies,
    seen: &mut SeenIds,
    request: Request,
    fresh: &mut Vec<Publishable>,
) -> (Answer, Option<StoreError>) {
    let Rules {
        quota,
        options,
        now,
    } = *rules;
    match request {
        Request::Commit {
            batch,
            payloads,
            reply,
        } => {
            let mut payloads = payloads.into_iter();
            let outcomes = batch
                .into_iter()
                .map(|msg| {
                    let payload = payloads.next().flatten();
                    let outcome = outbox::insert(conn, tallies, quota, seen, &msg, now)?;
                    if let CommitOutcome::Stored { seq } = outcome {
                        fresh.push(outbox::publishable(seq, msg, payload));
                    }
                    Ok(outcome)
                })
                .collect();
            finish(reply, outcomes)
        }
        Request::MarkPublished { seqs, reply } => {
            finish(reply, outbox::mark_published(conn, tallies, &seqs, now))
        }
        Request::SetMeta { key, value, reply } => finish(reply, meta::set(conn, &key, &value)),
        Request::MailboxPut { mail, reply } => {
            let limits = MailboxLimits {
                per_device: options.mailbox_max_per_device,
                total_bytes: options.mailbox_max_total_bytes,
            };
            finish(reply, mailbox::put(conn, tallies, limits, mail))
        }
        Request::MailboxMark { id, mark, reply } => finish(reply, mailbox::mark(conn, id, mark)),
        Request::MailboxRemove { ids, reply } => {
            finish(reply, mailbox::remove(conn, tallies, &ids))
        }
        Request::MailboxExpire { now_ms, reply } => finish(reply, mailbox::expire(conn, now_ms)),
        Request::CustodyAccept {
            origin,
            rows,
            reply,
        } => finish(
            reply,
            custody::accept(conn, tallies, quota, &origin, rows, now),
        ),
        Request::CustodyRelease { ids, reply } => finish(reply, custody::release(conn, &ids)),
        Request::HandOver {
            custodian,
            seqs,
            reply,
        } => finish(
            reply,
            handover::hand_over(conn, tallies, &custodian, &seqs, now),
        ),
        Request::HandedOverPublished {
            custodian,
            seqs,
            reply,
        } => finish(
            reply,
            match seqs {
                Some(seqs) => handover::published(conn, tallies, &custodian, &seqs, now),
                None => handover::all_published(conn, tallies, &custodian, now),
            },
        ),
        Request::Reclaim { which, reply } => {
            finish(reply, handover::reclaim(conn, tallies, &which))
        }
        Request::PeerMail { op, reply } => {
            let limits = MailboxLimits {
                per_device: options.mailbox_max_per_device,
                total_bytes: options.mailbox_max_total_bytes,
            };
            finish(reply, peer_mail::apply(conn, tallies, limits, op))
        }
        Request::Close { reply } => finish(reply, Ok(())),
    }
}

/// An answer for a request that was never applied because an earlier one in
/// its group failed; it only ever delivers that failure.
fn apply_nothing(request: Request) -> (Answer, Option<StoreError>) {
    fn never<T>() -> Result<T, StoreError> {
        Err(StoreError::Closed)
    }
    match request {
        Request::Commit { reply, .. } => finish(reply, never()),
        Request::MarkPublished { reply, .. } => finish(reply, never()),
        Request::SetMeta { reply, .. } => finish(reply, never()),
        Request::MailboxPut { reply, .. } => finish(reply, never()),
        Request::MailboxMark { reply, .. } => finish(reply, never()),
        Request::MailboxRemove { reply, .. } => finish(reply, never()),
        Request::MailboxExpire { reply, .. } => finish(reply, never()),
        Request::CustodyAccept { reply, .. } => finish(reply, never()),
        Request::CustodyRelease { reply, .. } => finish(reply, never()),
        Request::HandOver { reply, .. } => finish(reply, never()),
        Request::HandedOverPublished { reply, .. } => finish(reply, never()),
        Request::Reclaim { reply, .. } => finish(reply, never()),
        Request::PeerMail { reply, .. } => finish(reply, never()),
        Request::Close { reply } => finish(reply, never()),
    }
}

/// Housekeeping at the end of every group, in the same transaction.
fn upkeep(
    conn: &Connection,
    rules: &Rules<'_>,
    tallies: &mut Tallies,
    seen: &mut SeenIds,
) -> Result<(), StoreError> {
    let Rules {
        quota,
        options,
        now,
    } = *rules;
    if quota.should_compact(tallies) {
        quota::compact_heartbeats(conn, tallies, now)?;
    }
    let retention_ms = u64::try_from(options.seen_retention.as_millis()).unwrap_or(u64::MAX);
    seen.prune(conn, tallies, retention_ms, options.seen_max, now)?;
    tallies.refresh_oldest_pending(conn)
}

fn log_quota_change(
    before: QuotaState,
    after: QuotaState,
    tallies: &Tallies,
    quota: &Quota,
    options: &StoreOptions,
) {
    let used = tallies.bytes_used();
    let limit = quota.quota_bytes;
    match after {
        QuotaState::Full => tracing::warn!(
            bytes_used = used,
            quota_bytes = limit,
            backlog = tallies.outbox_rows,
            "store is full: {used} of {limit} bytes hold messages that must not be dropped. \
             New messages are refused and NOT acknowledged over the radio, so devices keep \
             them and retry. This clears when the uplink publishes the backlog \
             (is the MQTT broker reachable?)"
        ),
        QuotaState::Compacting if before == QuotaState::Ok => tracing::info!(
            bytes_used = used,
            quota_bytes = limit,
            "store above {}% of its quota: keeping only the newest waiting heartbeat per device",
            options.compact_at_percent
        ),
        QuotaState::Compacting | QuotaState::Ok => tracing::info!(
            bytes_used = used,
            quota_bytes = limit,
            backlog = tallies.outbox_rows,
            "store has room again ({used} of {limit} bytes used): accepting every message"
        ),
    }
}

/// Database file plus WAL, as the file system counts them.
fn file_bytes(path: &Path) -> u64 {
    let mut wal = OsString::from(path.as_os_str());
    wal.push("-wal");
    [path.as_os_str(), wal.as_os_str()]
        .iter()
        .filter_map(|file| std::fs::metadata(file).ok())
        .map(|metadata| metadata.len())
        .sum()
}
