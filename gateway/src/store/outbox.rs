//! The outbox (messages waiting for the broker's PUBACK) and the `seen`
//! record of msg_ids that de-duplicates device retries.
//!
//! # Why `seen` outlives the outbox
//!
//! A device whose radio ack got lost sends the same message again, possibly
//! after the first copy was already published and removed. `seen` keeps the
//! msg_id of every stored message (inserted in the same transaction as the
//! outbox row, so it is exactly as durable) and, once the message leaves the
//! outbox, remembers it for `seen_retention` (default 7 days) and at most
//! `seen_max` (default 200,000) such ids, oldest forgotten first. Both bounds
//! keep the table small on an SD card; a retry arriving later than that is
//! published again and the backend sees a duplicate msg_id, which it must
//! tolerate anyway under MQTT QoS 1. Retention is measured on the wall clock;
//! a clock that jumps backwards only keeps ids longer, and `seen_max` still
//! bounds them.

use rusqlite::{params, Connection};

use bytes::Bytes;

use super::quota::{self, Quota, HEARTBEAT, SEEN_ROW_BYTES};
use super::recent::Publishable;
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
    msg: &Inbound,
    now_ms: u64,
) -> Result<CommitOutcome, StoreError> {
    let seen: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM seen WHERE msg_id = ?1)")?
        .query_row([&msg.msg_id], |row| row.get(0))?;
    if seen {
        tallies.duplicates_total += 1;
        return Ok(CommitOutcome::Duplicate);
    }

    let size = quota::row_size(msg);
    let need = size + SEEN_ROW_BYTES;
    let is_heartbeat = msg.message_type == HEARTBEAT;
    let mut compacted_count = 0;
    if !quota.fits(tallies, need) {
        quota.make_room(conn, tallies, need, now_ms)?;
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
    conn.prepare_cached("INSERT INTO seen (msg_id, seq) VALUES (?1, ?2)")?
        .execute(params![msg.msg_id, seq])?;

    tallies.outbox_rows += 1;
    tallies.outbox_bytes += size;
    tallies.seen_rows += 1;
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
/// mostly form runs of consecutive numbers: each run is one `UPDATE` of
/// `seen` and one `DELETE` of a seq range, instead of two statements per row.
pub(super) fn mark_published(
    conn: &Connection,
    tallies: &mut Tallies,
    seqs: &[u64],
    now_ms: u64,
) -> Result<(), StoreError> {
    let mut retire = conn.prepare_cached(
        "UPDATE seen SET retired_at_ms = ?3 WHERE msg_id IN
             (SELECT msg_id FROM outbox WHERE seq BETWEEN ?1 AND ?2)",
    )?;
    let mut delete =
        conn.prepare_cached("DELETE FROM outbox WHERE seq BETWEEN ?1 AND ?2 RETURNING size_bytes")?;
    for (first, last) in runs(seqs) {
        retire.execute(params![first, last, now_ms])?;
        let sizes = delete
            .query_map(params![first, last], |row| row.get::<_, u64>(0))?
            .collect::<Result<Vec<u64>, _>>()?;
        let removed = sizes.len() as u64;
        tallies.outbox_rows -= removed;
        tallies.outbox_bytes -= sizes.iter().sum::<u64>();
        tallies.seen_retired += removed;
        tallies.published_total += removed;
        tallies.space_freed |= removed > 0;
    }
    Ok(())
}

/// `seqs` as ranges of consecutive numbers, sorted and without duplicates.
/// A seq beyond i64 cannot exist and is skipped, so one bad value cannot
/// fail the whole group transaction.
fn runs(seqs: &[u64]) -> Vec<(i64, i64)> {
    let mut sorted: Vec<i64> = seqs.iter().filter_map(|&s| i64::try_from(s).ok()).collect();
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

/// Applies the retention bounds of `seen` (age, then count).
pub(super) fn prune_seen(
    conn: &Connection,
    tallies: &mut Tallies,
    retention_ms: u64,
    seen_max: u64,
    now_ms: u64,
) -> Result<(), StoreError> {
    if tallies.seen_retired == 0 {
        return Ok(());
    }
    let cutoff = now_ms.saturating_sub(retention_ms).min(i64::MAX as u64);
    let expired = conn
        .prepare_cached("DELETE FROM seen WHERE retired_at_ms <= ?1")?
        .execute([cutoff])? as u64;
    tallies.seen_rows -= expired;
    tallies.seen_retired -= expired;
    tallies.space_freed |= expired > 0;
    if tallies.seen_retired > seen_max {
        forget_oldest_seen(conn, tallies, tallies.seen_retired - seen_max)?;
    }
    Ok(())
}

/// Forgets the `count` longest-retired msg_ids (never those still in the outbox).
pub(super) fn forget_oldest_seen(
    conn: &Connection,
    tallies: &mut Tallies,
    count: u64,
) -> Result<(), StoreError> {
    if count == 0 {
        return Ok(());
    }
    let forgotten = conn
        .prepare_cached(
            "DELETE FROM seen WHERE msg_id IN (
                 SELECT msg_id FROM seen WHERE retired_at_ms IS NOT NULL
                 ORDER BY retired_at_ms, seq LIMIT ?1)",
        )?
        .execute([count.min(i64::MAX as u64)])? as u64;
    tallies.seen_rows -= forgotten;
    tallies.seen_retired -= forgotten;
    tallies.space_freed |= forgotten > 0;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn seqs_fold_into_runs() {
        assert_eq!(super::runs(&[]), vec![]);
        assert_eq!(
            super::runs(&[7, 3, 4, 5, 9, 8, 5, 20, u64::MAX]),
            vec![(3, 5), (7, 9), (20, 20)]
        );
    }
}
