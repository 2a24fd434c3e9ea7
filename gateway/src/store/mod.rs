//! The durable store: every verified message lands here before anything is
//! acknowledged over the radio, and leaves only when the MQTT broker has
//! acknowledged it (PUBACK).
//!
//! # The promise
//!
//! Nothing a device was told is safe may ever be lost, whatever happens to
//! power, process or broker. So:
//!
//! - [`Store::commit`] answers [`CommitOutcome::Stored`] only after the SQLite
//!   transaction holding the message has committed with `synchronous=FULL`,
//!   i.e. after the write-ahead log was fsynced. Only then may ingest ack the
//!   device over the radio.
//! - A message leaves the outbox only through [`Store::mark_published`], which
//!   the uplink calls after the broker's PUBACK, or by heartbeat compaction
//!   (newer heartbeats of the same device replace older ones, see `quota.rs`),
//!   or by [`Store::hand_over`] to the `handed_over` table when a neighbour
//!   gateway took it into custody: still on our disk until that neighbour
//!   reports it published (see `handover.rs`).
//!   A group holding only publish marks is the one write committed without an
//!   fsync: losing it to a power cut means the rows are published again (a
//!   QoS-1 duplicate), never that anything is lost (see `writer.rs`).
//!   Transactions, ledger syncs and every other type are never dropped; when
//!   there is no room for them they are [`CommitOutcome::Refused`] (not acked,
//!   so the device keeps them).
//! - Every stored msg_id is also kept in a `seen` table, remembered for a
//!   while after publishing, so a device that resends because its ack got
//!   lost gets [`CommitOutcome::Duplicate`] and the backend does not get the
//!   message twice (see `seen.rs`).
//!
//! # Shape
//!
//! One SQLite file in WAL mode, two connections:
//!
//! - a **writer thread** (`writer.rs`) owns the only write connection and does
//!   *group commit*: requests arriving within `group_commit_delay` of the first
//!   one (up to `max_batch` messages) are written in one transaction and share
//!   one fsync, so 64 devices heard at once cost one disk flush, not 64;
//! - a **read connection** behind a mutex serves [`Store::pending`],
//!   [`Store::mailbox_for`] and [`Store::get_meta`]. WAL lets it read while the
//!   writer writes.
//!
//! [`Store`] is a cheap handle (an `Arc`) that tokio tasks clone freely.
//!
//! Files: `schema.rs` (pragmas and versioned migrations), `writer.rs` (group
//! commit), `outbox.rs` (the queue towards MQTT), `seen.rs` (the msg_ids
//! that de-duplicate retries, in the table and in the writer's memory),
//! `quota.rs` (space accounting and heartbeat compaction), `mailbox.rs` (held
//! downlinks), `peer_mail.rs` (downlinks shared with neighbours),
//! `custody.rs` (rows held for neighbours), `handover.rs` (our rows a
//! neighbour holds until it reports them published), `meta.rs` (small
//! key/value facts), `tally.rs` (the in-memory counters behind
//! [`Store::stats`]), `recent.rs` (rows just committed, kept in memory for
//! the uplink), `error.rs`, and `tests/`.

mod custody;
mod error;
mod handover;
mod mailbox;
mod meta;
mod outbox;
mod peer_mail;
mod quota;
mod recent;
mod schema;
mod seen;
mod tally;
mod writer;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

pub use custody::CustodyRow;
pub use error::StoreError;
pub use handover::{Custodian, Reclaim, STORE_ID_KEY};
pub use mailbox::{
    MailboxEntry, MailboxLimit, MailboxMark, MailboxPutOutcome, MailboxState, NewMail,
    MAILBOX_ROW_OVERHEAD_BYTES,
};
pub use peer_mail::{DeliveryNote, PeerMailAnswer, PeerMailCounts};
pub use quota::{OUTBOX_ROW_OVERHEAD_BYTES, SEEN_ROW_BYTES};
pub use recent::Publishable;
pub use schema::SCHEMA_VERSION;

use writer::Request;

/// A verified message ready to be kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    /// Seed message id (truncated hash of the signed content): the end-to-end
    /// de-duplication key.
    pub msg_id: [u8; 16],
    /// The sender's 32-byte ed25519 public key (its device id).
    pub device_id: [u8; 32],
    /// `heartbeat`, `transaction`, `ledger_sync`, `ack`, `nack`, `receipt`.
    pub message_type: String,
    /// The raw signed frame as heard.
    pub frame: Vec<u8>,
    /// The JSON form of the message (spec field names).
    pub message_json: String,
    /// Reception metadata as JSON (`radio_bridge::link::RxMeta`).
    pub rx_json: String,
    /// Wall-clock reception time, ms since the Unix epoch.
    pub received_at_ms: u64,
}

impl Inbound {
    /// A message the gateway itself publishes through the outbox (its own
    /// heartbeat, a downlink receipt, an update report), so that it is as
    /// durable as a device's: it was heard on no link, and `message_json`
    /// is the payload exactly as published.
    pub fn own(
        msg_id: [u8; 16],
        device_id: [u8; 32],
        message_type: &str,
        frame: Vec<u8>,
        message_json: String,
        at_ms: u64,
    ) -> Inbound {
        Inbound {
            msg_id,
            device_id,
            message_type: message_type.to_string(),
            frame,
            message_json,
            rx_json: "{}".into(),
            received_at_ms: at_ms,
        }
    }
}

/// What happened to one message of a committed batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Newly stored and durable (fsynced) under this outbox sequence number.
    Stored { seq: u64 },
    /// Already stored earlier (same msg_id): nothing written. Safe to ack again.
    Duplicate,
    /// Not stored: the quota is exhausted by data that must not be dropped.
    /// Do NOT ack over the radio; the device keeps the message and retries.
    Refused,
}

/// A stored message waiting for (or being) published.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    /// Monotonic sequence number; publishing in `seq` order keeps per-device order.
    pub seq: u64,
    pub msg_id: [u8; 16],
    pub device_id: [u8; 32],
    pub message_type: String,
    pub frame: Vec<u8>,
    pub message_json: String,
    pub rx_json: String,
    pub received_at_ms: u64,
    /// How many older unpublished heartbeats of this device were folded into
    /// this one by quota compaction (0 for everything else). The uplink can
    /// tell the backend "N heartbeats were summarised by this one".
    pub compacted_count: u64,
}

/// How close the store is to its quota.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuotaState {
    /// Plenty of room.
    #[default]
    Ok,
    /// Near the quota: heartbeats are being compacted.
    Compacting,
    /// Only data that must not be dropped is left and the quota is reached:
    /// new transactions/ledger-sync messages are refused (not acked).
    Full,
}

/// Numbers for the status page, `/metrics` and the MQTT state message.
///
/// The `*_total` counters count since this process opened the store (like
/// Prometheus counters, they restart at zero; `seq` numbers do not).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreStats {
    /// Messages stored but not yet acknowledged by the broker.
    pub backlog: u64,
    /// Reception time of the oldest unpublished message (ms since epoch): the
    /// first one in outbox (`seq`) order.
    pub oldest_pending_ms: Option<u64>,
    /// Space the quota counts: payload bytes of every outbox row plus a fixed
    /// per-row overhead, plus the `seen` de-duplication records. Unlike the
    /// file size, this goes down as soon as the uplink drains the outbox.
    pub bytes_used: u64,
    pub quota_bytes: u64,
    pub quota_state: QuotaState,
    pub stored_total: u64,
    pub duplicates_total: u64,
    pub refused_total: u64,
    pub published_total: u64,
    pub heartbeats_compacted_total: u64,
    /// Write transactions committed: with group commit this grows much
    /// slower than `stored_total` under load.
    pub transactions_total: u64,
    /// Of those, the ones committed without an fsync because they held only
    /// publish marks (a lost mark means a re-publish, never a lost message);
    /// every other transaction fsyncs the WAL.
    pub unsynced_transactions_total: u64,
    /// Size on disk of the database file plus its write-ahead log. SQLite
    /// reuses freed pages, so this stays near its high-water mark.
    pub file_bytes: u64,
    /// msg_ids remembered for de-duplication (in the outbox or recently published).
    pub seen_ids: u64,
    /// Downlink mailbox entries held (any state) and their accounted bytes.
    pub mailbox_entries: u64,
    pub mailbox_bytes: u64,
}

/// Tuning of the store. [`Default`] gives the values the daemon uses when the
/// configuration says nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreOptions {
    /// The most space (as accounted in [`StoreStats::bytes_used`]) the outbox
    /// and the `seen` record may use.
    pub quota_bytes: u64,
    /// Above this share of the quota, heartbeats are compacted (percent, 1..=100).
    pub compact_at_percent: u8,
    /// How long the writer waits, from the first request of a group, for more
    /// requests to share the transaction. Adds at most this much latency to
    /// every radio ack; buys one fsync per group instead of per message.
    pub group_commit_delay: Duration,
    /// A group is committed as soon as it holds this many messages.
    pub max_batch: usize,
    /// How long the msg_id of a published (or compacted) message is remembered
    /// so that a device retrying after a lost ack is recognised as a duplicate.
    pub seen_retention: Duration,
    /// At most this many published msg_ids are remembered (oldest forgotten first).
    pub seen_max: u64,
    /// Mailbox entries (any state) one device may have waiting.
    pub mailbox_max_per_device: u64,
    /// Accounted bytes the whole mailbox may hold.
    pub mailbox_max_total_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            quota_bytes: 256 * 1024 * 1024,
            compact_at_percent: 90,
            group_commit_delay: Duration::from_millis(20),
            max_batch: 512,
            // A device retries a lost ack within minutes; a week covers a
            // device that was switched off in between.
            seen_retention: Duration::from_secs(7 * 24 * 3600),
            // ~14 MiB of accounted space at SEEN_ROW_BYTES each.
            seen_max: 200_000,
            mailbox_max_per_device: 32,
            mailbox_max_total_bytes: 8 * 1024 * 1024,
        }
    }
}

/// A handle to the store. Clone it for every task that needs it.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    requests: mpsc::Sender<Request>,
    /// The read connection. One is enough: readers are the uplink (paging
    /// through the outbox) and occasional mailbox/meta lookups.
    reader: Arc<Mutex<Connection>>,
    /// Refreshed by the writer after every transaction, so `stats()` is a copy.
    stats: Arc<Mutex<StoreStats>>,
    /// Rows the writer just committed, for the uplink (`recent.rs`).
    recent: Arc<Mutex<recent::Recent>>,
}

impl Store {
    /// Opens (creating if needed) the store at `path`, brings its schema up to
    /// date, and starts the writer thread.
    ///
    /// Blocking: call it at start-up (or from `spawn_blocking`).
    pub fn open(path: &Path, options: StoreOptions) -> Result<Store, StoreError> {
        let options = validated(options)?;
        let write_conn = schema::open_and_migrate(path)?;
        let reader = schema::open_reader(path)?;
        let shared = writer::start(write_conn, path.to_path_buf(), options)?;
        Ok(Store {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                requests: shared.requests,
                reader: Arc::new(Mutex::new(reader)),
                stats: shared.stats,
                recent: shared.recent,
            }),
        })
    }

    /// The database file this store lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Stores a batch durably (group commit). One outcome per message, in order.
    ///
    /// `Stored` and `Duplicate` mean the message is on disk (fsynced) and the
    /// device may be acked; `Refused` means it is not and must not be acked.
    /// On `Err`, nothing of the batch may be acked either.
    pub async fn commit(&self, batch: Vec<Inbound>) -> Result<Vec<CommitOutcome>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        self.start_commit(batch).await
    }

    /// Hands a batch to the writer now and returns its answer to await
    /// later, so the caller can prepare the next batch while this one is
    /// written. Batches are written in the order they were started. What the
    /// answer means is as for [`Store::commit`].
    pub fn start_commit(&self, batch: Vec<Inbound>) -> PendingCommit {
        self.start_commit_with_payloads(batch, Vec::new())
    }

    /// [`Store::start_commit`], with the `up` payload of each message as
    /// the uplink will publish it (one per message, in order; built once at
    /// ingest). The committed rows then reach the uplink from memory.
    pub fn start_commit_with_payloads(
        &self,
        batch: Vec<Inbound>,
        payloads: Vec<Option<bytes::Bytes>>,
    ) -> PendingCommit {
        PendingCommit {
            answer: self.send(|reply| Request::Commit {
                batch,
                payloads,
                reply,
            }),
        }
    }

    /// Unpublished entries with `seq > after_seq`, in `seq` order, at most `limit`.
    pub async fn pending(
        &self,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        self.read(move |conn| outbox::pending(conn, after_seq, limit))
            .await
    }

    /// [`Store::pending`] for the uplink: rows committed since it last
    /// asked come from memory with the payload built at ingest; anything
    /// memory cannot vouch for (after a restart or a lost connection) is
    /// read from SQLite.
    pub async fn pending_publishable(
        &self,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<Publishable>, StoreError> {
        if let Some(rows) = lock(&self.inner.recent).take(after_seq, limit) {
            return Ok(rows);
        }
        let entries = self.pending(after_seq, limit).await?;
        Ok(entries.into_iter().map(Publishable::from).collect())
    }

    /// How many messages of each type wait in the outbox.
    pub async fn pending_by_type(
        &self,
    ) -> Result<std::collections::BTreeMap<String, u64>, StoreError> {
        self.read(outbox::counts_by_type).await
    }

    /// Removes published messages from the outbox (after the broker's PUBACK).
    /// Unknown seqs (already removed, or folded by compaction) are ignored.
    ///
    /// Durability is not needed here: if a crash loses this, the messages are
    /// published again, which is an ordinary QoS-1 duplicate the backend
    /// de-duplicates by msg_id. It still returns only after the writer's
    /// transaction committed; pass many seqs at once rather than awaiting one
    /// call per PUBACK, since each call may wait up to `group_commit_delay`.
    pub async fn mark_published(&self, seqs: Vec<u64>) -> Result<(), StoreError> {
        if seqs.is_empty() {
            return Ok(());
        }
        self.ask(|reply| Request::MarkPublished { seqs, reply })
            .await
    }

    /// The current numbers. Cheap: a copy of counters the writer keeps.
    pub fn stats(&self) -> StoreStats {
        lock(&self.inner.stats).clone()
    }

    /// Reads a value from the small key/value table (`None` if unset).
    pub async fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        let key = key.to_owned();
        self.read(move |conn| meta::get(conn, &key)).await
    }

    /// Sets a value in the key/value table, durably.
    pub async fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.ask(|reply| Request::SetMeta { key, value, reply })
            .await
    }

    /// Holds a downlink for a device. Durable before it returns, because the
    /// MQTT PUBACK for the downlink is sent on the strength of it.
    pub async fn mailbox_put(&self, mail: NewMail) -> Result<MailboxPutOutcome, StoreError> {
        self.ask(|reply| Request::MailboxPut { mail, reply }).await
    }

    /// The device's `Pending` mailbox entries, oldest first.
    pub async fn mailbox_for(&self, device_id: [u8; 32]) -> Result<Vec<MailboxEntry>, StoreError> {
        self.read(move |conn| mailbox::pending_for(conn, &device_id))
            .await
    }

    /// Entries whose state is no longer `Pending` but which are still held
    /// (their receipt may not have been written before a crash).
    pub async fn mailbox_unfinished(&self) -> Result<Vec<MailboxEntry>, StoreError> {
        self.read(mailbox::unfinished).await
    }

    /// Records a delivery attempt and/or a new state for one entry, durably.
    /// Returns false if there is no such entry.
    pub async fn mailbox_mark(&self, id: u64, mark: MailboxMark) -> Result<bool, StoreError> {
        self.ask(|reply| Request::MailboxMark { id, mark, reply })
            .await
    }

    /// Deletes entries (whatever their state); returns how many existed.
    pub async fn mailbox_remove(&self, ids: Vec<u64>) -> Result<u64, StoreError> {
        self.ask(|reply| Request::MailboxRemove { ids, reply })
            .await
    }

    /// Marks every `Pending` entry whose `expires_at_ms <= now_ms` as
    /// `Expired` and returns them (so the caller can report the failures).
    pub async fn mailbox_expire(&self, now_ms: u64) -> Result<Vec<MailboxEntry>, StoreError> {
        self.ask(|reply| Request::MailboxExpire { now_ms, reply })
            .await
    }

    /// Takes a neighbour's outbox rows into custody (`docs/peering.md`),
    /// durably: `Stored` and `Duplicate` are on disk when this returns and
    /// the origin may delete its copies; `Refused` (no room within the
    /// quota) are not, and the origin keeps them.
    pub async fn custody_accept(
        &self,
        origin: [u8; 32],
        rows: Vec<OutboxEntry>,
    ) -> Result<Vec<CommitOutcome>, StoreError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        self.ask(|reply| Request::CustodyAccept {
            origin,
            rows,
            reply,
        })
        .await
    }

    /// Rows held for neighbours with `id > after_id`, in the order taken.
    pub async fn custody_pending(
        &self,
        after_id: u64,
        limit: usize,
    ) -> Result<Vec<CustodyRow>, StoreError> {
        self.read(move |conn| custody::pending(conn, after_id, limit))
            .await
    }

    /// Rows held per origin gateway.
    pub async fn custody_counts(
        &self,
    ) -> Result<std::collections::BTreeMap<[u8; 32], u64>, StoreError> {
        self.read(custody::counts).await
    }

    /// This store's own random id, created with it (`docs/peering.md`):
    /// a neighbour that sees it change knows what it handed to us is gone.
    pub async fn store_id(&self) -> Result<String, StoreError> {
        self.get_meta(STORE_ID_KEY)
            .await?
            .ok_or_else(|| StoreError::Database("the store has no store_id".into()))
    }

    /// A neighbour acknowledged these rows: they leave the outbox (we no
    /// longer publish nor offer them) but stay on our disk until it
    /// reports them published. Returns how many moved.
    pub async fn hand_over(&self, custodian: Custodian, seqs: Vec<u64>) -> Result<u64, StoreError> {
        if seqs.is_empty() {
            return Ok(0);
        }
        self.ask(|reply| Request::HandOver {
            custodian,
            seqs,
            reply,
        })
        .await
    }

    /// The neighbour published these rows handed to it (`None`: all of
    /// them); they are deleted. Returns how many.
    pub async fn handed_over_published(
        &self,
        custodian: Custodian,
        seqs: Option<Vec<u64>>,
    ) -> Result<u64, StoreError> {
        self.ask(|reply| Request::HandedOverPublished {
            custodian,
            seqs,
            reply,
        })
        .await
    }

    /// Returns handed-over rows to the outbox (under new seqs) to be
    /// published or offered again. Returns how many.
    pub async fn reclaim(&self, which: Reclaim) -> Result<u64, StoreError> {
        self.ask(|reply| Request::Reclaim { which, reply }).await
    }

    /// Rows handed over and not yet reported published, per neighbour.
    pub async fn handed_over_counts(
        &self,
    ) -> Result<std::collections::BTreeMap<[u8; 32], u64>, StoreError> {
        self.read(handover::counts).await
    }

    /// Drops held rows once the broker acknowledged their relay.
    pub async fn custody_release(&self, ids: Vec<u64>) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.ask(|reply| Request::CustodyRelease { ids, reply })
            .await
    }

    /// Holds copies of a neighbour's downlinks (`docs/peering.md` §7),
    /// durably; per mail, whether it is held (now or already) or did not
    /// fit (the mailbox limits, with copies kept to half its byte budget);
    /// and how many were stored now.
    pub async fn peer_mail_take(
        &self,
        origin: [u8; 32],
        mails: Vec<NewMail>,
    ) -> Result<(Vec<bool>, u64), StoreError> {
        let op = peer_mail::Op::Take { origin, mails };
        match self.ask(|reply| Request::PeerMail { op, reply }).await? {
            PeerMailAnswer::Held { held, new } => Ok((held, new)),
            _ => Ok((Vec::new(), 0)),
        }
    }

    /// Records that `peer` holds copies of these of our downlinks (a copy of
    /// one already finished is marked for withdrawal at once); returns how
    /// many were not recorded before.
    pub async fn peer_mail_taken(
        &self,
        peer: [u8; 32],
        ids: Vec<[u8; 16]>,
    ) -> Result<u64, StoreError> {
        let op = peer_mail::Op::Taken { peer, ids };
        match self.ask(|reply| Request::PeerMail { op, reply }).await? {
            PeerMailAnswer::Recorded { new } => Ok(new),
            _ => Ok(0),
        }
    }

    /// Drops `origin`'s copies (and our notes of delivering them); returns
    /// (copies dropped undelivered, delivery notes dropped).
    pub async fn peer_mail_withdraw(
        &self,
        origin: [u8; 32],
        ids: Vec<[u8; 16]>,
    ) -> Result<(u64, u64), StoreError> {
        let op = peer_mail::Op::Withdraw { origin, ids };
        match self.ask(|reply| Request::PeerMail { op, reply }).await? {
            PeerMailAnswer::Dropped { copies, notes } => Ok((copies, notes)),
            _ => Ok((0, 0)),
        }
    }

    /// Forgets copies `peer` confirmed it dropped.
    pub async fn peer_mail_withdrawn(
        &self,
        peer: [u8; 32],
        ids: Vec<[u8; 16]>,
    ) -> Result<(), StoreError> {
        let op = peer_mail::Op::Withdrawn { peer, ids };
        self.ask(|reply| Request::PeerMail { op, reply })
            .await
            .map(drop)
    }

    /// Our own pending downlinks `peer` holds no copy of, oldest first.
    pub async fn peer_mail_to_offer(
        &self,
        peer: [u8; 32],
        limit: usize,
    ) -> Result<Vec<MailboxEntry>, StoreError> {
        self.read(move |conn| peer_mail::to_offer(conn, &peer, limit))
            .await
    }

    /// Downlinks `peer` must be told to drop.
    pub async fn peer_mail_to_withdraw(
        &self,
        peer: [u8; 32],
        limit: usize,
    ) -> Result<Vec<[u8; 16]>, StoreError> {
        self.read(move |conn| peer_mail::to_withdraw(conn, &peer, limit))
            .await
    }

    /// `origin`'s downlinks we delivered, not yet settled.
    pub async fn peer_mail_delivered(
        &self,
        origin: [u8; 32],
    ) -> Result<Vec<DeliveryNote>, StoreError> {
        self.read(move |conn| peer_mail::delivered_for(conn, &origin))
            .await
    }

    /// What is shared with each neighbour, by its gateway id.
    pub async fn peer_mail_counts(
        &self,
    ) -> Result<std::collections::BTreeMap<[u8; 32], PeerMailCounts>, StoreError> {
        self.read(peer_mail::counts).await
    }

    /// Finishes every request queued before this call, checkpoints the WAL
    /// into the database file, and stops the writer. Requests sent afterwards
    /// through other clones fail with [`StoreError::Closed`].
    pub async fn close(self) -> Result<(), StoreError> {
        self.ask(|reply| Request::Close { reply }).await
    }

    /// Sends a request to the writer thread and waits for its answer.
    async fn ask<T>(
        &self,
        request: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Request,
    ) -> Result<T, StoreError> {
        answered(self.send(request)?.await)
    }

    /// Queues a request for the writer; the receiver gets its answer.
    fn send<T>(
        &self,
        request: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Request,
    ) -> Result<Answer<T>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .requests
            .send(request(reply))
            .map_err(|_| StoreError::Closed)?;
        Ok(answer)
    }

    /// Runs a query on the read connection off the async runtime.
    async fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let reader = Arc::clone(&self.inner.reader);
        tokio::task::spawn_blocking(move || query(&lock(&reader)))
            .await
            .map_err(|_| StoreError::Closed)?
    }
}

/// The writer's answer to one request, once its transaction's fate is known.
type Answer<T> = oneshot::Receiver<Result<T, StoreError>>;

/// A dropped reply means the writer stopped before answering: nothing of
/// that request may be assumed durable.
fn answered<T>(
    received: Result<Result<T, StoreError>, oneshot::error::RecvError>,
) -> Result<T, StoreError> {
    received.map_err(|_| StoreError::Closed)?
}

/// A commit the writer has been handed (see [`Store::start_commit`]); await
/// it for the outcomes. Dropping it does not undo the commit, it only stops
/// listening for the answer.
pub struct PendingCommit {
    answer: Result<Answer<Vec<CommitOutcome>>, StoreError>,
}

impl Future for PendingCommit {
    type Output = Result<Vec<CommitOutcome>, StoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.answer {
            Ok(answer) => Pin::new(answer).poll(cx).map(answered),
            Err(error) => Poll::Ready(Err(error.clone())),
        }
    }
}

fn validated(options: StoreOptions) -> Result<StoreOptions, StoreError> {
    if !(1..=100).contains(&options.compact_at_percent) {
        return Err(StoreError::BadOptions(format!(
            "compact_at_percent must be between 1 and 100, not {}",
            options.compact_at_percent
        )));
    }
    if options.max_batch == 0 {
        return Err(StoreError::BadOptions(
            "max_batch must be at least 1".into(),
        ));
    }
    Ok(options)
}

/// Locks a mutex, carrying on if another thread panicked while holding it:
/// the data behind these mutexes (a connection, a stats copy) stays valid.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Wall-clock now, ms since the Unix epoch (0 if the clock is before 1970).
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
