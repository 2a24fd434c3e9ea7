//! Rows just committed, kept in memory for the uplink.
//!
//! Under load the uplink publishes what ingest committed a few milliseconds
//! earlier. Reading those rows back through the read connection (pages out
//! of the WAL, a blocking-pool hop, the JSON parsed again to build the `up`
//! payload) cost more than building the payload once at ingest and handing
//! the committed batch over in memory. The store stays the source of truth:
//! this is only a shortcut for rows that are certainly in the outbox, and
//! anything it cannot vouch for is read from SQLite as before.
//!
//! The invariant: every outbox row with `seq > covered` is in `rows` (in
//! `seq` order), except those the uplink already took from here. So a read
//! of `pending(after, ..)` with `after >= covered` may be answered from
//! memory; any other read (a restart, a rewind after a lost connection, a
//! publisher that fell behind the bound) goes to SQLite.
//!
//! The writer keeps it true: it appends a group's new rows only after the
//! group committed, raises `covered` past rows it drops to stay within
//! [`CAPACITY`], and forgets everything (raising `covered` to the newest
//! seq) whenever a transaction removed or rewrote outbox rows other than
//! by publish marks (heartbeat compaction).

use std::collections::VecDeque;

use bytes::Bytes;

use super::OutboxEntry;

/// Rows held at most. When the uplink is this far behind (no broker, say),
/// it reads from SQLite like after a restart.
pub(super) const CAPACITY: usize = 2048;

/// An outbox entry ready to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Publishable {
    pub entry: OutboxEntry,
    /// The `up` payload, built once at ingest from the frame and its
    /// reception metadata. When set, `entry.frame`, `entry.message_json`
    /// and `entry.rx_json` are left empty: the payload holds them. `None`
    /// for rows read from SQLite, the gateway's own messages and compacted
    /// heartbeats; the uplink builds those from the stored columns.
    pub up: Option<Bytes>,
}

impl From<OutboxEntry> for Publishable {
    fn from(entry: OutboxEntry) -> Publishable {
        Publishable { entry, up: None }
    }
}

#[derive(Debug, Default)]
pub(super) struct Recent {
    covered: u64,
    rows: VecDeque<Publishable>,
}

impl Recent {
    /// Starts with nothing in memory: every row up to `newest_seq` (the
    /// outbox at open) is read from SQLite.
    pub fn new(newest_seq: u64) -> Recent {
        Recent {
            covered: newest_seq,
            rows: VecDeque::new(),
        }
    }

    /// Rows a committed group added, in seq order.
    pub fn committed(&mut self, rows: Vec<Publishable>) {
        for row in rows {
            if self.rows.len() == CAPACITY {
                if let Some(dropped) = self.rows.pop_front() {
                    self.covered = self.covered.max(dropped.entry.seq);
                }
            }
            self.rows.push_back(row);
        }
    }

    /// A committed transaction changed outbox rows behind our back: forget
    /// them all, SQLite answers for everything up to the newest row (held
    /// here, or `newest_seq` from that transaction).
    pub fn invalidate(&mut self, newest_seq: u64) {
        let held = self.rows.back().map_or(0, |r| r.entry.seq);
        self.rows.clear();
        self.covered = self.covered.max(newest_seq).max(held);
    }

    /// Up to `limit` rows with `seq > after`, taken out of memory, or
    /// `None` when memory cannot vouch for every such row.
    pub fn take(&mut self, after: u64, limit: usize) -> Option<Vec<Publishable>> {
        if after < self.covered {
            return None;
        }
        // Rows at or below `after` were published from a SQLite read
        // (after a rewind): they are not wanted again.
        while self.rows.front().is_some_and(|r| r.entry.seq <= after) {
            self.rows.pop_front();
        }
        let n = limit.min(self.rows.len());
        let taken: Vec<Publishable> = self.rows.drain(..n).collect();
        let last = taken.last().map_or(after, |r| r.entry.seq);
        self.covered = self.covered.max(last);
        Some(taken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: u64) -> Publishable {
        Publishable::from(OutboxEntry {
            seq,
            msg_id: [seq as u8; 16],
            device_id: [1; 32],
            message_type: "transaction".into(),
            frame: vec![],
            message_json: String::new(),
            rx_json: String::new(),
            received_at_ms: 0,
            compacted_count: 0,
        })
    }

    fn seqs(rows: &[Publishable]) -> Vec<u64> {
        rows.iter().map(|r| r.entry.seq).collect()
    }

    #[test]
    fn rows_older_than_the_open_come_from_sqlite() {
        let mut recent = Recent::new(10);
        recent.committed(vec![row(11), row(12)]);
        assert!(recent.take(5, 100).is_none(), "6..=10 are only on disk");
        assert_eq!(seqs(&recent.take(10, 100).unwrap()), [11, 12]);
        assert_eq!(seqs(&recent.take(12, 100).unwrap()), Vec::<u64>::new());
    }

    #[test]
    fn taking_respects_the_limit_and_a_rewind_goes_to_sqlite() {
        let mut recent = Recent::new(0);
        recent.committed((1..=5).map(row).collect());
        assert_eq!(seqs(&recent.take(0, 2).unwrap()), [1, 2]);
        // A lost connection rewinds the publisher below what it took.
        assert!(recent.take(0, 10).is_none());
        // It re-read 1..=3 from SQLite; memory skips what it already has.
        assert_eq!(seqs(&recent.take(3, 10).unwrap()), [4, 5]);
    }

    #[test]
    fn rows_dropped_at_capacity_are_left_to_sqlite() {
        let mut recent = Recent::new(0);
        recent.committed((1..=CAPACITY as u64 + 3).map(row).collect());
        assert!(recent.take(0, 10).is_none(), "1..=3 were dropped");
        let taken = recent.take(3, 10).unwrap();
        assert_eq!(taken.first().map(|r| r.entry.seq), Some(4));
    }

    #[test]
    fn invalidation_hands_everything_to_sqlite() {
        let mut recent = Recent::new(0);
        recent.committed((1..=5).map(row).collect());
        recent.invalidate(5);
        assert!(recent.take(2, 10).is_none());
        recent.committed(vec![row(6)]);
        assert_eq!(seqs(&recent.take(5, 10).unwrap()), [6]);
    }
}
