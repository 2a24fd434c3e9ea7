//! The `seen` record: every msg_id we hold or recently held, so that a
//! device retry is answered [`CommitOutcome::Duplicate`](super::CommitOutcome)
//! instead of being published twice.
//!
//! # Why it outlives the outbox
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
//!
//! # Why two forms
//!
//! msg_ids are hashes, so a table keyed by them is written at random: every
//! stored message dirtied a random page of it three times (insert, retire,
//! forget), and under a flood each commit wrote hundreds of such pages to
//! the WAL. The table is therefore keyed by the outbox `seq` (the order
//! messages arrive in: inserts append, retiring touches the recent tail,
//! forgetting trims the head), and the look-up by msg_id is served by a set
//! of the same ids in the writer's memory, loaded from the table when the
//! store opens.
//!
//! The set is a B-tree, not a hash set: ids come and go all the time, and a
//! hash set that is mostly full doubles itself now and then, holding the old
//! and the new table at once (a flood took peak RSS from 25 to 32 MiB that
//! way). The tree grows and shrinks a node at a time, about 30 bytes per id
//! (6 MiB at the default `seen_max`), and a look-up is ~18 comparisons: no
//! hashing, so no msg_ids a sender could grind to collide.
//!
//! The set follows the transaction: changes made while a group is written
//! are undone if the group rolls back ([`SeenIds::rollback`]), so set and
//! table never disagree.

use std::collections::BTreeSet;

use rusqlite::{params, Connection};

use super::outbox::runs;
use super::tally::Tallies;
use super::StoreError;

/// The writer's in-memory copy of the msg_ids in `seen`.
pub(super) struct SeenIds {
    ids: BTreeSet<[u8; 16]>,
    /// Changes made by the transaction being written, to undo on rollback.
    undo: Vec<Change>,
}

enum Change {
    Added([u8; 16]),
    Removed([u8; 16]),
}

impl SeenIds {
    /// Reads every id from the table (see [`msg_id_at`] for ids of another
    /// length).
    pub fn load(conn: &Connection) -> Result<SeenIds, StoreError> {
        let mut statement = conn.prepare("SELECT msg_id FROM seen")?;
        let mut rows = statement.query([])?;
        let mut ids = BTreeSet::new();
        while let Some(row) = rows.next()? {
            if let Some(id) = msg_id_at(row)? {
                ids.insert(id);
            }
        }
        Ok(SeenIds {
            ids,
            undo: Vec::new(),
        })
    }

    pub fn contains(&self, msg_id: &[u8; 16]) -> bool {
        self.ids.contains(msg_id)
    }

    /// Records the msg_id of a message just stored under `seq`, inside the
    /// writer's transaction.
    pub fn record(
        &mut self,
        conn: &Connection,
        tallies: &mut Tallies,
        msg_id: &[u8; 16],
        seq: u64,
    ) -> Result<(), StoreError> {
        conn.prepare_cached("INSERT INTO seen (seq, msg_id) VALUES (?1, ?2)")?
            .execute(params![seq, msg_id])?;
        if self.ids.insert(*msg_id) {
            self.undo.push(Change::Added(*msg_id));
        }
        tallies.seen_rows += 1;
        Ok(())
    }

    /// Applies the retention bounds (age, then count).
    pub fn prune(
        &mut self,
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
        let expired = self.forget(
            conn,
            tallies,
            "DELETE FROM seen WHERE retired_at_ms <= ?1 RETURNING msg_id",
            cutoff,
        )?;
        tallies.space_freed |= expired > 0;
        if tallies.seen_retired > seen_max {
            self.forget_oldest(conn, tallies, tallies.seen_retired - seen_max)?;
        }
        Ok(())
    }

    /// Forgets the `count` longest-retired msg_ids (never those of rows
    /// still held, in the outbox or handed over).
    pub fn forget_oldest(
        &mut self,
        conn: &Connection,
        tallies: &mut Tallies,
        count: u64,
    ) -> Result<(), StoreError> {
        if count == 0 {
            return Ok(());
        }
        let forgotten = self.forget(
            conn,
            tallies,
            "DELETE FROM seen WHERE seq IN (
                 SELECT seq FROM seen WHERE retired_at_ms IS NOT NULL
                 ORDER BY retired_at_ms, seq LIMIT ?1)
             RETURNING msg_id",
            count.min(i64::MAX as u64),
        )?;
        tallies.space_freed |= forgotten > 0;
        Ok(())
    }

    /// Runs a `DELETE … RETURNING msg_id` of retired rows and drops the
    /// returned ids from the set. Returns how many rows went.
    fn forget(
        &mut self,
        conn: &Connection,
        tallies: &mut Tallies,
        sql: &str,
        parameter: u64,
    ) -> Result<u64, StoreError> {
        let mut statement = conn.prepare_cached(sql)?;
        let mut rows = statement.query([parameter])?;
        let mut gone = 0;
        while let Some(row) = rows.next()? {
            gone += 1;
            if let Some(id) = msg_id_at(row)? {
                if self.ids.remove(&id) {
                    self.undo.push(Change::Removed(id));
                }
            }
        }
        tallies.seen_rows -= gone;
        tallies.seen_retired -= gone;
        Ok(gone)
    }

    /// The transaction committed: its changes stay.
    pub fn commit(&mut self) {
        self.undo.clear();
    }

    /// The transaction rolled back: the set returns to what the table holds.
    pub fn rollback(&mut self) {
        for change in self.undo.drain(..).rev() {
            match change {
                Change::Added(id) => self.ids.remove(&id),
                Change::Removed(id) => self.ids.insert(id),
            };
        }
    }
}

/// Starts the retention clock of the ids of the rows `seqs`, which the
/// caller has just removed for good (published, compacted, reported
/// published by a neighbour). Removed rows mostly have consecutive seqs:
/// one `UPDATE` per run of them.
pub(super) fn retire(
    conn: &Connection,
    tallies: &mut Tallies,
    seqs: impl Iterator<Item = i64>,
    now_ms: u64,
) -> Result<(), StoreError> {
    let mut update = conn.prepare_cached(
        "UPDATE seen SET retired_at_ms = ?3
         WHERE seq BETWEEN ?1 AND ?2 AND retired_at_ms IS NULL",
    )?;
    for (first, last) in runs(seqs) {
        let retired = update.execute(params![first, last, now_ms.min(i64::MAX as u64)])?;
        tallies.seen_retired += retired as u64;
    }
    Ok(())
}

/// The msg_id in a row's first column, read in place; `None` for a value
/// that is not 16 bytes (never written by this program, and no look-up
/// could match it).
fn msg_id_at(row: &rusqlite::Row<'_>) -> Result<Option<[u8; 16]>, StoreError> {
    Ok(row
        .get_ref(0)?
        .as_blob()
        .ok()
        .and_then(|blob| blob.try_into().ok()))
}

/// A row handed over comes back to the outbox under a new seq; its record
/// follows it, so retiring by seq keeps finding it.
pub(super) fn renumber(conn: &Connection, old_seq: i64, new_seq: i64) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE seen SET seq = ?2 WHERE seq = ?1")?
        .execute(params![old_seq, new_seq])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store file migrated to the current schema, kept alive with it.
    fn table() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().expect("temp dir");
        let conn = super::super::schema::open_and_migrate(&dir.path().join("store.db"))
            .expect("migrated store");
        (dir, conn)
    }

    fn tallies() -> Tallies {
        Tallies::default()
    }

    #[test]
    fn a_rolled_back_transaction_leaves_the_set_as_the_table() {
        let (_dir, mut conn) = table();
        let mut counts = tallies();
        let mut seen = SeenIds::load(&conn).expect("load");
        let tx = conn.transaction().expect("begin");
        seen.record(&tx, &mut counts, &[1; 16], 1).expect("record");
        seen.commit();
        tx.commit().expect("commit");

        let tx = conn.transaction().expect("begin");
        retire(&tx, &mut counts, [1].into_iter(), 10).expect("retire");
        seen.record(&tx, &mut counts, &[2; 16], 2).expect("record");
        seen.forget_oldest(&tx, &mut counts, 1).expect("forget");
        assert!(!seen.contains(&[1; 16]) && seen.contains(&[2; 16]));
        drop(tx); // rolls back
        seen.rollback();

        assert!(seen.contains(&[1; 16]), "a forgotten id is back");
        assert!(!seen.contains(&[2; 16]), "an added id is gone");
        let reloaded = SeenIds::load(&conn).expect("reload");
        assert_eq!(reloaded.ids, seen.ids);
    }

    #[test]
    fn forgetting_takes_the_longest_retired_and_never_a_held_id() {
        let (_dir, mut conn) = table();
        let mut counts = tallies();
        let mut seen = SeenIds::load(&conn).expect("load");
        let tx = conn.transaction().expect("begin");
        for seq in 1..=4u8 {
            seen.record(&tx, &mut counts, &[seq; 16], u64::from(seq))
                .expect("record");
        }
        retire(&tx, &mut counts, [3].into_iter(), 100).expect("retire 3");
        retire(&tx, &mut counts, [1].into_iter(), 200).expect("retire 1");
        seen.forget_oldest(&tx, &mut counts, 5).expect("forget");
        tx.commit().expect("commit");
        seen.commit();

        assert!(!seen.contains(&[1; 16]) && !seen.contains(&[3; 16]));
        assert!(seen.contains(&[2; 16]) && seen.contains(&[4; 16]));
        assert_eq!((counts.seen_rows, counts.seen_retired), (2, 0));
    }

    #[test]
    fn an_id_of_another_length_in_the_file_is_left_out_not_a_failure() {
        let (_dir, conn) = table();
        conn.execute(
            "INSERT INTO seen (seq, msg_id) VALUES (1, x'0102'), (2, ?1)",
            [[7u8; 16]],
        )
        .expect("insert");
        let seen = SeenIds::load(&conn).expect("load");
        assert!(seen.contains(&[7; 16]));
        assert_eq!(seen.ids.len(), 1);
    }
}
