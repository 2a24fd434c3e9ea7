//! Downlinks shared with neighbour gateways (`docs/peering.md` §7).
//!
//! Two sides of one agreement, both in this file because each is a few
//! statements over the same two tables:
//!
//! - **accepting gateway** (the downlink came from our broker): the
//!   `mailbox_offers` table records, per neighbour, that it holds a copy
//!   (`held`) or must be told to drop it (`withdraw`). Removing our own
//!   mailbox entry (its one receipt is written) turns every `held` into
//!   `withdraw` in the same transaction, so no copy is forgotten.
//! - **holding gateway**: a neighbour's downlink is an ordinary mailbox
//!   row with `origin` set, so the device is served exactly as for our own
//!   downlinks. When the device acks it, the row stays with state
//!   `delivered`: that is the durable note for the origin, dropped only
//!   when the origin withdraws the downlink.

use std::collections::BTreeMap;

use rusqlite::{params, Connection};

use super::mailbox::{self, MailboxEntry, MailboxLimits, MailboxPutOutcome, NewMail};
use super::tally::Tallies;
use super::StoreError;

/// What a write of the agreement answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerMailAnswer {
    /// `Take`: per mail, held (stored now or already) or not (a limit);
    /// and how many were stored now.
    Held {
        held: Vec<bool>,
        new: u64,
    },
    /// `Taken`: how many copies were not recorded before.
    Recorded {
        new: u64,
    },
    /// `Withdraw`: copies dropped undelivered, and delivery notes dropped.
    Dropped {
        copies: u64,
        notes: u64,
    },
    Done,
}

/// A write of the peer-mailbox agreement, applied by the writer thread.
#[derive(Debug)]
pub(super) enum Op {
    /// Holding side: keep copies of `origin`'s downlinks.
    Take {
        origin: [u8; 32],
        mails: Vec<NewMail>,
    },
    /// Accepting side: `peer` holds these of our downlinks.
    Taken { peer: [u8; 32], ids: Vec<[u8; 16]> },
    /// Holding side: drop `origin`'s copies (and delivery notes).
    Withdraw {
        origin: [u8; 32],
        ids: Vec<[u8; 16]>,
    },
    /// Accepting side: `peer` confirmed it dropped these.
    Withdrawn { peer: [u8; 32], ids: Vec<[u8; 16]> },
}

pub(super) fn apply(
    conn: &Connection,
    tallies: &mut Tallies,
    limits: MailboxLimits,
    op: Op,
) -> Result<PeerMailAnswer, StoreError> {
    match op {
        Op::Take { origin, mails } => {
            // Our own downlinks come first: copies are taken only while the
            // mailbox is under half its byte budget.
            let limits = MailboxLimits {
                total_bytes: limits.total_bytes / 2,
                ..limits
            };
            let (mut held, mut new) = (Vec::with_capacity(mails.len()), 0);
            for mail in mails {
                let outcome = mailbox::put(conn, tallies, limits, mail)?;
                if let MailboxPutOutcome::Stored { id: row } = outcome {
                    conn.prepare_cached("UPDATE mailbox SET origin = ?2 WHERE id = ?1")?
                        .execute(params![row as i64, origin])?;
                    new += 1;
                }
                held.push(!matches!(outcome, MailboxPutOutcome::Full { .. }));
            }
            Ok(PeerMailAnswer::Held { held, new })
        }
        Op::Taken { peer, ids } => {
            // A downlink finished while the offer was in flight is withdrawn
            // at once: its entry is already gone, so nothing would turn
            // `held` into `withdraw` later.
            let mut insert = conn.prepare_cached(
                "INSERT OR IGNORE INTO mailbox_offers (down_msg_id, peer, state)
                 VALUES (?1, ?2, CASE WHEN EXISTS (
                     SELECT 1 FROM mailbox WHERE down_msg_id = ?1 AND origin IS NULL)
                   THEN 'held' ELSE 'withdraw' END)",
            )?;
            let mut new = 0;
            for id in ids {
                new += insert.execute(params![id, peer])? as u64;
            }
            Ok(PeerMailAnswer::Recorded { new })
        }
        Op::Withdraw { origin, ids } => {
            let mut delete = conn.prepare_cached(
                "DELETE FROM mailbox WHERE down_msg_id = ?1 AND origin = ?2
                 RETURNING size_bytes, state",
            )?;
            let (mut copies, mut notes) = (0, 0);
            for id in ids {
                let mut rows = delete.query(params![id, origin])?;
                let Some(row) = rows.next()? else { continue };
                let (size, state): (u64, String) = (row.get(0)?, row.get(1)?);
                tallies.mailbox_rows -= 1;
                tallies.mailbox_bytes -= size;
                if state == "delivered" {
                    notes += 1;
                } else {
                    copies += 1;
                }
            }
            Ok(PeerMailAnswer::Dropped { copies, notes })
        }
        Op::Withdrawn { peer, ids } => {
            let mut delete = conn.prepare_cached(
                "DELETE FROM mailbox_offers
                 WHERE down_msg_id = ?1 AND peer = ?2 AND state = 'withdraw'",
            )?;
            for id in ids {
                delete.execute(params![id, peer])?;
            }
            Ok(PeerMailAnswer::Done)
        }
    }
}

/// A neighbour's downlink we delivered, to tell it about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryNote {
    pub down_msg_id: [u8; 16],
    pub device_id: [u8; 32],
    pub attempts: u32,
}

/// Called by the mailbox's removal, in its transaction: every neighbour
/// holding a copy of this (our own) downlink must now drop it.
pub(super) fn withdraw_copies(conn: &Connection, down_msg_id: &[u8]) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE mailbox_offers SET state = 'withdraw' WHERE down_msg_id = ?1")?
        .execute([down_msg_id])?;
    Ok(())
}

/// Accepting side: our own pending downlinks `peer` holds no copy of (nor
/// was asked to drop), oldest first.
pub(super) fn to_offer(
    conn: &Connection,
    peer: &[u8; 32],
    limit: usize,
) -> Result<Vec<MailboxEntry>, StoreError> {
    let sql = format!(
        "SELECT {} FROM mailbox m
         WHERE m.origin IS NULL AND m.state = 'pending' AND NOT EXISTS (
             SELECT 1 FROM mailbox_offers o WHERE o.down_msg_id = m.down_msg_id AND o.peer = ?1)
         ORDER BY m.id LIMIT ?2",
        mailbox::COLUMNS_OF_M
    );
    let entries = conn
        .prepare_cached(&sql)?
        .query_map(params![peer, limit as i64], mailbox::entry_from_row)?
        .collect::<Result<_, _>>()?;
    Ok(entries)
}

/// Accepting side: downlinks `peer` must be told to drop.
pub(super) fn to_withdraw(
    conn: &Connection,
    peer: &[u8; 32],
    limit: usize,
) -> Result<Vec<[u8; 16]>, StoreError> {
    let ids = conn
        .prepare_cached(
            "SELECT down_msg_id FROM mailbox_offers WHERE peer = ?1 AND state = 'withdraw'
             LIMIT ?2",
        )?
        .query_map(params![peer, limit as i64], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(ids)
}

/// Holding side: `origin`'s downlinks we delivered and have not yet heard
/// it settle, oldest first.
pub(super) fn delivered_for(
    conn: &Connection,
    origin: &[u8; 32],
) -> Result<Vec<DeliveryNote>, StoreError> {
    let notes = conn
        .prepare_cached(
            "SELECT down_msg_id, device_id, attempts FROM mailbox
             WHERE origin = ?1 AND state = 'delivered' ORDER BY id",
        )?
        .query_map([origin], |row| {
            Ok(DeliveryNote {
                down_msg_id: row.get(0)?,
                device_id: row.get(1)?,
                attempts: row.get(2)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(notes)
}

/// What is shared with one neighbour, as the store knows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerMailCounts {
    /// Copies of its downlinks we hold (delivery notes included).
    pub held_for_peer: u64,
    /// Of those, delivered here and not yet settled by it.
    pub delivered_unsettled: u64,
    /// Copies of ours it holds or must still drop, as far as we know.
    pub held_by_peer: u64,
}

/// Per neighbour gateway id.
pub(super) fn counts(conn: &Connection) -> Result<BTreeMap<[u8; 32], PeerMailCounts>, StoreError> {
    let mut counts: BTreeMap<[u8; 32], PeerMailCounts> = BTreeMap::new();
    let mut held_for = conn.prepare_cached(
        "SELECT origin, COUNT(*), COUNT(*) FILTER (WHERE state = 'delivered') FROM mailbox
         WHERE origin IS NOT NULL GROUP BY origin",
    )?;
    for row in held_for.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))? {
        let (peer, held, delivered): ([u8; 32], u64, u64) = row?;
        let entry = counts.entry(peer).or_default();
        entry.held_for_peer = held;
        entry.delivered_unsettled = delivered;
    }
    let mut held_by =
        conn.prepare_cached("SELECT peer, COUNT(*) FROM mailbox_offers GROUP BY peer")?;
    for row in held_by.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))? {
        let (peer, n): ([u8; 32], u64) = row?;
        counts.entry(peer).or_default().held_by_peer = n;
    }
    Ok(counts)
}
