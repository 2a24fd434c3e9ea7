//! The outbox: messages waiting for the broker's PUBACK, in seq order.
//! Every stored message's msg_id is also recorded in `seen` (`seen.rs`),
//! which de-duplicates device retries.

use rusqlite::{params, Connection};

use bytes::Bytes;

use super::quota::{self, Quota, HEARTBEAT, SEEN_ROW_BYTES};
use super::recent::Publishable;
use super::seen::{self, SeenIds};
use super::tally::Tallies;
use super::{CommitOutcome, Inbound, OutboxEntry, StoreError};

/// The highest seq in the outbox (0 when empty).
pub(super) fn newest_seq(conn: &Connection) -> Result<u64, StoreError> {
    Ok(
        conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM outbox", [], |row| {
            row.get(0)
        })?,
    )
}

/// A message just stored under `seq`, as the uplink will publish it. A
/// stored heartbeat that replaced older ones (`compacted_count > 0`) never
/// reaches the uplink this way: compaction makes the writer drop the
/// in-memory rows (`recent.rs`), so its count is read from SQLite.
pub(super) fn publishable(seq: u64, msg: Inbound, up: Option<Bytes>) -> Publishable {
    let (frame, message_json, rx_json) = match up {
        Some(_) => (Vec::new(), String::new(), String::new()),
        None => (msg.frame, msg.message_json, msg.rx_json),
    };
    Publishable {
        entry: OutboxEntry {
            seq,
            msg_id: msg.msg_id,
            device_id: msg.device_id,
            message_type: msg.message_type,
            frame,
            message_json,
            rx_json,
            received_at_ms: msg.received_at_ms,
            compacted_count: 0,
        },
        up,
    }
}

/// Waiting messages per message type (one GROUP BY over `outbox_by_type`).
pub(super) fn counts_by_type(
    conn: &Connection,
) -> Result<std::collections::BTreeMap<String, u64>, StoreError> {
    let mut statement =
        conn.prepare_cached("SELECT message_type, COUNT(*) FROM outbox GROUP BY message_type")?;
    let counts = statement
        .query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, u64>(1)?))
        })?
        .collect::<Result<_, _>>()?;
    Ok(counts)
}

/// Stores one message inside the writer's transaction (see `quota` for what
/// happens when it does not fit).
pub(super) fn insert(
    conn: &Connection,
    tallies: &mut Tallies,
    quota: &Quota,
    seen: &mut SeenIds,
    msg: &Inbound,
    now_ms: u64,
) -> Result<CommitOutcome, StoreError> {
    if seen.contains(&msg.msg_id) {
        tallies.duplicates_total += 1;
        return Ok(CommitOutcome::Duplicate);
    }

    let size = quota::row_size(msg);
    let need = size + SEEN_ROW_BYTES;
    let is_heartbeat = msg.message_type == HEARTBEAT;
    let mut compacted_count = 0;
    if !quota.fits(tallies, need) {
        quota.make_room(conn, tallies, seen, need, now_ms)?;
        if !quota.fits(tallies, need) {
            let replaceable = if is_heartbeat {
                quota::latest_heartbeat(conn, &msg.device_id)?
                    .filter(|old| tallies.bytes_used() - old.size_bytes + need <= quota.quota_bytes)
            } else {
                None
            };
            let Some(old) = replaceable else {
                tallies.refused_total += 1;
                tallies.full_latched = true;
                return Ok(CommitOutcome::Refused);
            };
            quota::fold_away(conn, tallies, &old, now_ms)?;
            compacted_count = old.compacted_count + 1;
        }
    }

    conn.prepare_cached(
        "INSERT INTO outbox (msg_id, device_id, message_type, frame, message_json, rx_json,
                             received_at_ms, compacted_count, size_bytes)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        msg.msg_id,
        msg.device_id,
        msg.message_type,
        msg.frame,
        msg.message_json,
        msg.rx_json,
        // Clamped rather than failing the whole group on an absurd clock.
        msg.received_at_ms.min(i64::MAX as u64),
        compacted_count,
        size,
    ])?;
    let seq = conn.last_insert_rowid() as u64;
    seen.record(conn, tallies, &msg.msg_id, seq)?;

    tallies.outbox_rows += 1;
    tallies.outbox_bytes += size;
    tallies.stored_total += 1;
    if !is_heartbeat {
        // A message that must not be dropped fitted: we are not full.
        tallies.full_latched = false;
    }
    Ok(CommitOutcome::Stored { seq })
}

/// The columns an outbox entry is read from, from `first` on, in this
/// order: seq, msg_id, device_id, message_type, frame, message_json,
/// rx_json, received_at_ms, compacted_count. The custody table keeps the
/// same columns after its own, so both read entries here.
pub(super) fn entry_at(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<OutboxEntry> {
    Ok(OutboxEntry {
        seq: row.get(first)?,
        msg_id: row.get(first + 1)?,
        device_id: row.get(first + 2)?,
        message_type: row.get(first + 3)?,
        frame: row.get(first + 4)?,
        message_json: row.get(first + 5)?,
        rx_json: row.get(first + 6)?,
        received_at_ms: row.get(first + 7)?,
        compacted_count: row.get(first + 8)?,
    })
}

/// Unpublished entries after `after_seq`, in seq order.
pub(super) fn pending(
    conn: &Connection,
    after_seq: u64,
    limit: usize,
) -> Result<Vec<OutboxEntry>, StoreError> {
    let Ok(after_seq) = i64::try_from(after_seq) else {
        return Ok(Vec::new()); // no seq is that large
    };
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut statement = conn.prepare_cached(
        "SELECT seq, msg_id, device_id, message_type, frame, message_json, rx_json,
                received_at_ms, compacted_count
         FROM outbox WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let entries = statement
        .query_map(params![after_seq, limit], |row| entry_at(row, 0))?
        .collect::<Result<_, _>>()?;
    Ok(entries)
}

/// Removes published rows and starts the retention clock of their msg_ids.
///
/// PUBACKs come back in the order the rows were published, so the seqs
/// mostly form runs of consecutive numbers: each run is one `DELETE` of a
/// seq range and one `UPDATE` of `seen`, instead of two statements per row.
/// Only rows still in the outbox are retired (a seq of the run may have
/// been handed to a neighbour meanwhile; its id stays held).
pub(super) fn mark_published(
    conn: &Connection,
    tallies: &mut Tallies,
    seqs: &[u64],
    now_ms: u64,
) -> Result<(), StoreError> {
    let mut delete = conn.prepare_cached(
        "DELETE FROM outbox WHERE seq BETWEEN ?1 AND ?2 RETURNING seq, size_bytes",
    )?;
    for (first, last) in runs(stored_seqs(seqs)) {
        let removed = delete
            .query_map(params![first, last], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, u64>(1)?))
            })?
            .collect::<Result<Vec<(i64, u64)>, _>>()?;
        seen::retire(conn, tallies, removed.iter().map(|&(seq, _)| seq), now_ms)?;
        let count = removed.len() as u64;
        tallies.outbox_rows -= count;
        tallies.outbox_bytes -= removed.iter().map(|&(_, size)| size).sum::<u64>();
        tallies.published_total += count;
        tallies.space_freed |= count > 0;
    }
    Ok(())
}

/// Seqs as SQLite stores them: one beyond i64 cannot exist and is skipped,
/// so one bad value cannot fail the whole group transaction.
pub(super) fn stored_seqs(seqs: &[u64]) -> impl Iterator<Item = i64> + '_ {
    seqs.iter().filter_map(|&seq| i64::try_from(seq).ok())
}

/// `seqs` as ranges of consecutive numbers, sorted and without duplicates.
pub(super) fn runs(seqs: impl Iterator<Item = i64>) -> Vec<(i64, i64)> {
    let mut sorted: Vec<i64> = seqs.collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut runs: Vec<(i64, i64)> = Vec::new();
    for seq in sorted {
        match runs.last_mut() {
            Some((_, last)) if *last + 1 == seq => *last = seq,
            _ => runs.push((seq, seq)),
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    #[test]
    fn seqs_fold_into_runs() {
        assert_eq!(super::runs(super::stored_seqs(&[])), vec![]);
        assert_eq!(
            super::runs(super::stored_seqs(&[7, 3, 4, 5, 9, 8, 5, 20, u64::MAX])),
            vec![(3, 5), (7, 9), (20, 20)]
        );
    }
}
