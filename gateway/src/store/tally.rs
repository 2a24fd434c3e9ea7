//! The writer's running counts: what the quota decisions read and what
//! [`Store::stats`](super::Store::stats) shows.
//!
//! Counting in memory (instead of `SELECT COUNT(*)` on demand) keeps stats
//! free and quota checks O(1) per message. The counts are loaded from the
//! database at open, changed only inside a write transaction on a working
//! copy, and that copy replaces the real one only if the transaction
//! committed, so they never drift from the file.

use rusqlite::{Connection, OptionalExtension};

use super::quota::SEEN_ROW_BYTES;
use super::{QuotaState, StoreError, StoreStats};

#[derive(Debug, Clone, Default)]
pub(super) struct Tallies {
    pub outbox_rows: u64,
    /// Sum of `outbox.size_bytes`.
    pub outbox_bytes: u64,
    pub seen_rows: u64,
    /// `seen` rows whose message left the outbox (published or compacted).
    pub seen_retired: u64,
    pub mailbox_rows: u64,
    pub mailbox_bytes: u64,
    /// Rows a neighbour took into custody and has not reported published
    /// (`handover.rs`); still on our disk, so the quota counts them.
    pub handed_over_rows: u64,
    pub handed_over_bytes: u64,
    pub oldest_pending_ms: Option<u64>,

    pub stored_total: u64,
    pub duplicates_total: u64,
    pub refused_total: u64,
    pub published_total: u64,
    pub heartbeats_compacted_total: u64,
    pub transactions_total: u64,
    pub unsynced_transactions_total: u64,

    pub quota_state: QuotaState,
    /// Set when a message is refused for lack of room; see `Quota::settle`.
    pub full_latched: bool,
    /// Whether the current transaction freed accounted space (published,
    /// compacted or forgotten rows).
    pub space_freed: bool,
}

impl Tallies {
    pub fn load(conn: &Connection) -> Result<Tallies, StoreError> {
        let (outbox_rows, outbox_bytes): (u64, u64) = conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(size_bytes), 0) FROM outbox",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        let (seen_rows, seen_retired): (u64, u64) = conn.query_row(
            "SELECT COUNT(*), COUNT(retired_at_ms) FROM seen",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        let (mailbox_rows, mailbox_bytes): (u64, u64) = conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(size_bytes), 0) FROM mailbox",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        let (handed_over_rows, handed_over_bytes): (u64, u64) = conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(size_bytes), 0) FROM handed_over",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        let mut tallies = Tallies {
            outbox_rows,
            outbox_bytes,
            seen_rows,
            seen_retired,
            mailbox_rows,
            mailbox_bytes,
            handed_over_rows,
            handed_over_bytes,
            oldest_pending_ms: None,
            stored_total: 0,
            duplicates_total: 0,
            refused_total: 0,
            published_total: 0,
            heartbeats_compacted_total: 0,
            transactions_total: 0,
            unsynced_transactions_total: 0,
            quota_state: QuotaState::Ok,
            full_latched: false,
            space_freed: false,
        };
        tallies.refresh_oldest_pending(conn)?;
        Ok(tallies)
    }

    /// What the quota counts (see [`StoreStats::bytes_used`]).
    pub fn bytes_used(&self) -> u64 {
        self.outbox_bytes + self.handed_over_bytes + self.seen_rows * SEEN_ROW_BYTES
    }

    /// The first message in outbox order is the one waiting longest.
    pub fn refresh_oldest_pending(&mut self, conn: &Connection) -> Result<(), StoreError> {
        self.oldest_pending_ms = conn
            .prepare_cached("SELECT received_at_ms FROM outbox ORDER BY seq LIMIT 1")?
            .query_row([], |row| row.get(0))
            .optional()?;
        Ok(())
    }

    pub fn snapshot(&self, quota_bytes: u64, file_bytes: u64) -> StoreStats {
        StoreStats {
            backlog: self.outbox_rows,
            oldest_pending_ms: self.oldest_pending_ms,
            bytes_used: self.bytes_used(),
            quota_bytes,
            quota_state: self.quota_state,
            stored_total: self.stored_total,
            duplicates_total: self.duplicates_total,
            refused_total: self.refused_total,
            published_total: self.published_total,
            heartbeats_compacted_total: self.heartbeats_compacted_total,
            transactions_total: self.transactions_total,
            unsynced_transactions_total: self.unsynced_transactions_total,
            file_bytes,
            seen_ids: self.seen_rows,
            mailbox_entries: self.mailbox_rows,
            mailbox_bytes: self.mailbox_bytes,
        }
    }
}
