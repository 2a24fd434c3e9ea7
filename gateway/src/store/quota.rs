//! Space accounting and what to give up when space runs short.
//!
//! # Measuring
//!
//! An SQLite file does not shrink when rows are deleted (freed pages are
//! reused, not returned), so the file size cannot tell whether publishing has
//! made room. The quota therefore counts *accounted bytes*: every outbox row
//! records, in `size_bytes`, its payload (frame, JSON, rx JSON, type, ids)
//! plus [`OUTBOX_ROW_OVERHEAD_BYTES`] for the row header, the B-tree and the
//! heartbeat index; every `seen` record counts [`SEEN_ROW_BYTES`]. The sum
//! drops the moment a row is deleted. The overheads were calibrated against
//! real files (`examples/bench_store.rs` prints accounted bytes, file bytes
//! and bytes per table), so the file stays close to the quota: for
//! ~500-byte messages the accounted figure is ~5 % above the file size.
//!
//! # Giving up space, in order
//!
//! 1. Above `compact_at_percent` of the quota, heartbeats are *compacted*:
//!    for every device only the newest unpublished heartbeat stays, and its
//!    `compacted_count` says how many older ones it replaced. A heartbeat is
//!    a "still alive, here is my state" report; the newest one carries it.
//! 2. If a message still does not fit, the oldest remembered msg_ids of
//!    *published* messages are forgotten (a lost de-duplication hint costs at
//!    worst a duplicate the backend filters; refusing a transaction costs a
//!    retry over the air).
//! 3. If a heartbeat still does not fit but its device already has one
//!    waiting, the new one replaces the old one (folding it in).
//! 4. Otherwise the message is **refused**: not stored, not acked, the
//!    device keeps it and retries later. Transactions, ledger syncs and every
//!    type other than heartbeats are never dropped to make room; a heartbeat
//!    that cannot fit is refused too (not silently dropped) so ingest treats
//!    all types alike and the count shows in `refused_total`.
//!
//! # States
//!
//! `Ok` below the compaction threshold, `Compacting` above it, `Full` from
//! the moment a message was refused until a non-heartbeat message is stored
//! again or publishing brings usage back below the threshold.

use rusqlite::{params, Connection, OptionalExtension};

use super::seen::{self, SeenIds};
use super::tally::Tallies;
use super::{outbox, Inbound, QuotaState, StoreError, StoreOptions};

/// Accounted bytes per outbox row on top of its payload: SQLite's record
/// header and cell pointer, the heartbeat-index entry, and above all the
/// slack of partly filled 4 KiB pages (a ~700-byte row leaves ~120 bytes of
/// its page unused on average). Measured with `examples/bench_store.rs`:
/// 20,000 realistic messages took 729 bytes each in the outbox table and
/// index, for 563 payload bytes.
pub const OUTBOX_ROW_OVERHEAD_BYTES: u64 = 160;

/// Accounted bytes per `seen` record. Measured: 68 bytes per retired record
/// (row plus retirement-index entry), 26 while its message is still queued;
/// counting the larger figure keeps the quota an upper bound.
pub const SEEN_ROW_BYTES: u64 = 72;

pub(super) const HEARTBEAT: &str = "heartbeat";

/// The accounted size of a message's outbox row (without its `seen` record).
pub(super) fn row_size(msg: &Inbound) -> u64 {
    (msg.frame.len()
        + msg.message_json.len()
        + msg.rx_json.len()
        + msg.message_type.len()
        + msg.msg_id.len()
        + msg.device_id.len()) as u64
        + OUTBOX_ROW_OVERHEAD_BYTES
}

/// The quota limits and the decisions made against them.
#[derive(Debug, Clone)]
pub(super) struct Quota {
    pub quota_bytes: u64,
    compact_at_bytes: u64,
}

impl Quota {
    pub fn new(options: &StoreOptions) -> Quota {
        Quota {
            quota_bytes: options.quota_bytes,
            compact_at_bytes: options.quota_bytes / 100 * u64::from(options.compact_at_percent)
                + options.quota_bytes % 100 * u64::from(options.compact_at_percent) / 100,
        }
    }

    pub fn fits(&self, tallies: &Tallies, need: u64) -> bool {
        tallies.bytes_used().saturating_add(need) <= self.quota_bytes
    }

    pub fn should_compact(&self, tallies: &Tallies) -> bool {
        tallies.bytes_used() >= self.compact_at_bytes
    }

    /// Steps 1 and 2 above: compaction, then forgetting published msg_ids,
    /// until `need` more bytes fit or there is nothing left to give.
    pub fn make_room(
        &self,
        conn: &Connection,
        tallies: &mut Tallies,
        seen: &mut SeenIds,
        need: u64,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        compact_heartbeats(conn, tallies, now_ms)?;
        if self.fits(tallies, need) {
            return Ok(());
        }
        let excess = (tallies.bytes_used() + need).saturating_sub(self.quota_bytes);
        let records = excess.div_ceil(SEEN_ROW_BYTES).min(tallies.seen_retired);
        seen.forget_oldest(conn, tallies, records)?;
        Ok(())
    }

    /// Works out the quota state after a transaction; returns the change, if
    /// any, so the writer can say so in the log.
    pub fn settle(&self, tallies: &mut Tallies) -> Option<(QuotaState, QuotaState)> {
        let below_threshold = tallies.bytes_used() < self.compact_at_bytes;
        if tallies.full_latched && below_threshold && tallies.space_freed {
            tallies.full_latched = false;
        }
        let state = if tallies.full_latched {
            QuotaState::Full
        } else if below_threshold {
            QuotaState::Ok
        } else {
            QuotaState::Compacting
        };
        let before = std::mem::replace(&mut tallies.quota_state, state);
        (before != state).then_some((before, state))
    }
}

/// Keeps only the newest unpublished heartbeat of every device, adding to its
/// `compacted_count` the heartbeats it replaces (and those they had replaced).
/// The msg_ids of removed heartbeats stay in `seen`, so a retry of one is
/// still a duplicate.
pub(super) fn compact_heartbeats(
    conn: &Connection,
    tallies: &mut Tallies,
    now_ms: u64,
) -> Result<(), StoreError> {
    let devices: Vec<(Vec<u8>, u64)> = conn
        .prepare_cached(
            "SELECT device_id, MAX(seq) FROM outbox WHERE message_type = 'heartbeat'
             GROUP BY device_id HAVING COUNT(*) > 1",
        )?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<_, _>>()?;

    for (device_id, keep_seq) in devices {
        let (rows, folded, freed): (u64, u64, u64) = conn
            .prepare_cached(
                "SELECT COUNT(*), COALESCE(SUM(compacted_count + 1), 0), COALESCE(SUM(size_bytes), 0)
                 FROM outbox WHERE message_type = 'heartbeat' AND device_id = ?1 AND seq < ?2",
            )?
            .query_row(params![device_id, keep_seq], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })?;
        let removed: Vec<i64> = conn
            .prepare_cached(
                "DELETE FROM outbox WHERE message_type = 'heartbeat' AND device_id = ?1 AND seq < ?2
                 RETURNING seq",
            )?
            .query_map(params![device_id, keep_seq], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        seen::retire(conn, tallies, removed.into_iter(), now_ms)?;
        conn.prepare_cached(
            "UPDATE outbox SET compacted_count = compacted_count + ?2 WHERE seq = ?1",
        )?
        .execute(params![keep_seq, folded])?;

        tallies.outbox_rows -= rows;
        tallies.outbox_bytes -= freed;
        tallies.heartbeats_compacted_total += rows;
        tallies.space_freed = true;
    }
    Ok(())
}

/// A waiting heartbeat that a newer one of the same device may replace.
pub(super) struct WaitingHeartbeat {
    pub seq: u64,
    pub size_bytes: u64,
    pub compacted_count: u64,
}

pub(super) fn latest_heartbeat(
    conn: &Connection,
    device_id: &[u8; 32],
) -> Result<Option<WaitingHeartbeat>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT seq, size_bytes, compacted_count FROM outbox
             WHERE message_type = 'heartbeat' AND device_id = ?1
             ORDER BY seq DESC LIMIT 1",
        )?
        .query_row([device_id], |row| {
            Ok(WaitingHeartbeat {
                seq: row.get(0)?,
                size_bytes: row.get(1)?,
                compacted_count: row.get(2)?,
            })
        })
        .optional()?)
}

/// Removes a heartbeat that a newer one replaces (step 3 above).
pub(super) fn fold_away(
    conn: &Connection,
    tallies: &mut Tallies,
    old: &WaitingHeartbeat,
    now_ms: u64,
) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM outbox WHERE seq = ?1")?
        .execute([old.seq])?;
    seen::retire(conn, tallies, outbox::stored_seqs(&[old.seq]), now_ms)?;
    tallies.outbox_rows -= 1;
    tallies.outbox_bytes -= old.size_bytes;
    tallies.heartbeats_compacted_total += 1;
    tallies.space_freed = true;
    Ok(())
}
