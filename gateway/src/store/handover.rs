//! Our own outbox rows that a neighbour took into custody and has not yet
//! reported published (`docs/peering.md` §4), origin side.
//!
//! A neighbour's `ack` says a row is on its disk; that is not yet on the
//! broker. If the neighbour then lost its store (a wiped or replaced SD
//! card) and we had deleted the row, nobody would hold it. So on `ack` the
//! row moves from the outbox into `handed_over`, naming the neighbour and
//! the id of its store; we neither publish nor offer it while it is there,
//! and delete it only when the neighbour reports it published. When the
//! neighbour comes back with another store, or does not publish while our
//! own uplink is up, the row returns to the outbox under a new seq (so the
//! uplink and the hand-over, whose cursors only move forward, see it) and
//! is published or offered again: at least once, never none.
//!
//! Handed-over rows still count against our quota (they are on our disk);
//! their msg_ids stay in `seen` as if they were in the outbox, so a device
//! retry is still a duplicate.

use rusqlite::{params, Connection, OptionalExtension};

use super::outbox::stored_seqs;
use super::seen;
use super::tally::Tallies;
use super::StoreError;

/// One neighbour's store: the key of the gateway and the id its store
/// gave itself when it was created (`meta` key [`STORE_ID_KEY`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Custodian {
    pub key: [u8; 32],
    pub store_id: String,
}

/// The `meta` key of this store's own random id (created by the migration that
/// created `handed_over`, or with a new store).
pub const STORE_ID_KEY: &str = "store_id";

/// Moves acknowledged rows from the outbox to `handed_over`. Seqs no
/// longer in the outbox (already handed over, published or compacted) are
/// skipped. Returns how many moved.
pub(super) fn hand_over(
    conn: &Connection,
    tallies: &mut Tallies,
    custodian: &Custodian,
    seqs: &[u64],
    now_ms: u64,
) -> Result<u64, StoreError> {
    let mut copy = conn.prepare_cached(
        "INSERT INTO handed_over (seq, peer, peer_store_id, msg_id, device_id, message_type,
                                  frame, message_json, rx_json, received_at_ms,
                                  compacted_count, size_bytes, handed_at_ms)
         SELECT seq, ?2, ?3, msg_id, device_id, message_type, frame, message_json, rx_json,
                received_at_ms, compacted_count, size_bytes, ?4
         FROM outbox WHERE seq = ?1",
    )?;
    let mut delete =
        conn.prepare_cached("DELETE FROM outbox WHERE seq = ?1 RETURNING size_bytes")?;
    let mut moved = 0;
    for seq in stored_seqs(seqs) {
        if copy.execute(params![
            seq,
            custodian.key,
            custodian.store_id,
            now_ms.min(i64::MAX as u64)
        ])? == 0
        {
            continue;
        }
        let size: u64 = delete.query_row([seq], |row| row.get(0))?;
        tallies.outbox_rows -= 1;
        tallies.outbox_bytes -= size;
        tallies.handed_over_rows += 1;
        tallies.handed_over_bytes += size;
        moved += 1;
    }
    Ok(moved)
}

/// The custodian published these rows: they leave us for good, and their
/// msg_ids start their retention like after our own PUBACK. Only rows
/// handed to that very store are touched. Returns how many were deleted.
pub(super) fn published(
    conn: &Connection,
    tallies: &mut Tallies,
    custodian: &Custodian,
    seqs: &[u64],
    now_ms: u64,
) -> Result<u64, StoreError> {
    let mut delete = conn.prepare_cached(
        "DELETE FROM handed_over WHERE seq = ?1 AND peer = ?2 AND peer_store_id = ?3
         RETURNING size_bytes",
    )?;
    let mut deleted = 0;
    for seq in stored_seqs(seqs) {
        let size: Option<u64> = delete
            .query_row(params![seq, custodian.key, custodian.store_id], |row| {
                row.get(0)
            })
            .optional()?;
        if let Some(size) = size {
            seen::retire(conn, tallies, std::iter::once(seq), now_ms)?;
            tallies.handed_over_rows -= 1;
            tallies.handed_over_bytes -= size;
            tallies.published_total += 1;
            tallies.space_freed = true;
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// Everything handed to this store is published (the custodian holds
/// nothing of ours any more, see `docs/peering.md` §4).
pub(super) fn all_published(
    conn: &Connection,
    tallies: &mut Tallies,
    custodian: &Custodian,
    now_ms: u64,
) -> Result<u64, StoreError> {
    let seqs: Vec<u64> = seqs_where(
        conn,
        "SELECT seq FROM handed_over WHERE peer = ?1 AND peer_store_id = ?2 ORDER BY seq",
        params![custodian.key, custodian.store_id],
    )?
    .into_iter()
    .filter_map(|seq| u64::try_from(seq).ok())
    .collect();
    published(conn, tallies, custodian, &seqs, now_ms)
}

/// Which rows go back to the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reclaim {
    /// Rows handed to this neighbour under any store but this one (it came
    /// back with another store: those rows are gone there).
    OtherStoresOf(Custodian),
    /// Every row handed to this neighbour (it did not publish them while
    /// our own uplink was up).
    AllOf([u8; 32]),
}

/// Returns rows to the outbox, oldest first, each under a new seq. Returns
/// how many.
pub(super) fn reclaim(
    conn: &Connection,
    tallies: &mut Tallies,
    which: &Reclaim,
) -> Result<u64, StoreError> {
    let seqs = match which {
        Reclaim::OtherStoresOf(custodian) => seqs_where(
            conn,
            "SELECT seq FROM handed_over WHERE peer = ?1 AND peer_store_id <> ?2 ORDER BY seq",
            params![custodian.key, custodian.store_id],
        )?,
        Reclaim::AllOf(key) => seqs_where(
            conn,
            "SELECT seq FROM handed_over WHERE peer = ?1 ORDER BY seq",
            params![key],
        )?,
    };
    let mut back = conn.prepare_cached(
        "INSERT INTO outbox (msg_id, device_id, message_type, frame, message_json, rx_json,
                             received_at_ms, compacted_count, size_bytes)
         SELECT msg_id, device_id, message_type, frame, message_json, rx_json,
                received_at_ms, compacted_count, size_bytes
         FROM handed_over WHERE seq = ?1",
    )?;
    let mut delete =
        conn.prepare_cached("DELETE FROM handed_over WHERE seq = ?1 RETURNING size_bytes")?;
    for &seq in &seqs {
        back.execute([seq])?;
        let new_seq = conn.last_insert_rowid();
        let size: u64 = delete.query_row([seq], |row| row.get(0))?;
        seen::renumber(conn, seq, new_seq)?;
        tallies.handed_over_rows -= 1;
        tallies.handed_over_bytes -= size;
        tallies.outbox_rows += 1;
        tallies.outbox_bytes += size;
    }
    Ok(seqs.len() as u64)
}

fn seqs_where(
    conn: &Connection,
    sql: &str,
    parameters: &[&dyn rusqlite::ToSql],
) -> Result<Vec<i64>, StoreError> {
    let seqs = conn
        .prepare_cached(sql)?
        .query_map(parameters, |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(seqs)
}

/// Rows handed over and not yet reported published, per neighbour key.
pub(super) fn counts(
    conn: &Connection,
) -> Result<std::collections::BTreeMap<[u8; 32], u64>, StoreError> {
    super::custody::count_per_gateway(conn, "SELECT peer, COUNT(*) FROM handed_over GROUP BY peer")
}
