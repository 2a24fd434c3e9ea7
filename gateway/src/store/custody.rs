//! Rows held in custody for neighbour gateways (`docs/peering.md`).
//!
//! A neighbour whose uplink is down hands us its outbox rows; we keep them
//! here, apart from our own outbox, until our broker acknowledged them on
//! the neighbour's topics. They keep the origin's msg_id, seq and
//! reception metadata. They count against our quota (with everything
//! else the quota counts), and a row that does not fit is refused, so the
//! origin keeps it: our own devices' messages come first.

use std::collections::BTreeMap;

use rusqlite::{params, Connection};

use super::quota::{Quota, OUTBOX_ROW_OVERHEAD_BYTES};
use super::tally::Tallies;
use super::{CommitOutcome, OutboxEntry, StoreError};

/// A row held for a neighbour.
#[derive(Debug, Clone, PartialEq)]
pub struct CustodyRow {
    /// Our order of taking it (the relay publishes in this order, which is
    /// the origin's seq order per origin).
    pub id: u64,
    /// The gateway id of the origin.
    pub origin: [u8; 32],
    /// As the origin stored it (`seq` is the origin's).
    pub entry: OutboxEntry,
}

fn row_size(entry: &OutboxEntry) -> u64 {
    (entry.frame.len()
        + entry.message_json.len()
        + entry.rx_json.len()
        + entry.message_type.len()
        + entry.msg_id.len()
        + entry.device_id.len()
        + 32) as u64
        + OUTBOX_ROW_OVERHEAD_BYTES
}

fn held_bytes(conn: &Connection) -> Result<u64, StoreError> {
    Ok(conn
        .prepare_cached("SELECT COALESCE(SUM(size_bytes), 0) FROM custody")?
        .query_row([], |row| row.get(0))?)
}

pub(super) fn accept(
    conn: &Connection,
    tallies: &Tallies,
    quota: &Quota,
    origin: &[u8; 32],
    rows: Vec<OutboxEntry>,
    now_ms: u64,
) -> Result<Vec<CommitOutcome>, StoreError> {
    let mut used = tallies.bytes_used() + held_bytes(conn)?;
    let mut exists =
        conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM custody WHERE msg_id = ?1)")?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO custody (origin, origin_seq, msg_id, device_id, message_type, frame,
                              message_json, rx_json, received_at_ms, compacted_count,
                              accepted_at_ms, size_bytes)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?;
    // The origin may offer a row again under a new seq (it took the row
    // back and lost its uplink again); the custody receipt must name the
    // seq it knows the row by now.
    let mut renumber =
        conn.prepare_cached("UPDATE custody SET origin_seq = ?2 WHERE msg_id = ?1")?;
    let mut outcomes = Vec::with_capacity(rows.len());
    for entry in rows {
        if exists.query_row([&entry.msg_id], |row| row.get::<_, bool>(0))? {
            renumber.execute(params![entry.msg_id, entry.seq.min(i64::MAX as u64)])?;
            outcomes.push(CommitOutcome::Duplicate);
            continue;
        }
        let size = row_size(&entry);
        if used + size > quota.quota_bytes {
            outcomes.push(CommitOutcome::Refused);
            continue;
        }
        insert.execute(params![
            origin,
            entry.seq.min(i64::MAX as u64),
            entry.msg_id,
            entry.device_id,
            entry.message_type,
            entry.frame,
            entry.message_json,
            entry.rx_json,
            entry.received_at_ms.min(i64::MAX as u64),
            entry.compacted_count.min(i64::MAX as u64),
            now_ms.min(i64::MAX as u64),
            size,
        ])?;
        used += size;
        outcomes.push(CommitOutcome::Stored {
            seq: conn.last_insert_rowid() as u64,
        });
    }
    Ok(outcomes)
}

pub(super) fn release(conn: &Connection, ids: &[u64]) -> Result<(), StoreError> {
    let mut delete = conn.prepare_cached("DELETE FROM custody WHERE id = ?1")?;
    for &id in ids {
        if let Ok(id) = i64::try_from(id) {
            delete.execute([id])?;
        }
    }
    Ok(())
}

pub(super) fn pending(
    conn: &Connection,
    after_id: u64,
    limit: usize,
) -> Result<Vec<CustodyRow>, StoreError> {
    let Ok(after_id) = i64::try_from(after_id) else {
        return Ok(Vec::new());
    };
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut statement = conn.prepare_cached(
        "SELECT id, origin, origin_seq, msg_id, device_id, message_type, frame, message_json,
                rx_json, received_at_ms, compacted_count
         FROM custody WHERE id > ?1 ORDER BY id LIMIT ?2",
    )?;
    let rows = statement
        .query_map(params![after_id, limit], |row| {
            Ok(CustodyRow {
                id: row.get(0)?,
                origin: row.get(1)?,
                entry: super::outbox::entry_at(row, 2)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

pub(super) fn counts(conn: &Connection) -> Result<BTreeMap<[u8; 32], u64>, StoreError> {
    count_per_gateway(conn, "SELECT origin, COUNT(*) FROM custody GROUP BY origin")
}

/// Runs `sql`, which yields (gateway id, count) rows.
pub(super) fn count_per_gateway(
    conn: &Connection,
    sql: &str,
) -> Result<BTreeMap<[u8; 32], u64>, StoreError> {
    let counts = conn
        .prepare_cached(sql)?
        .query_map([], |row| {
            Ok((row.get::<_, [u8; 32]>(0)?, row.get::<_, u64>(1)?))
        })?
        .collect::<Result<_, _>>()?;
    Ok(counts)
}
