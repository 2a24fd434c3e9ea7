//! The downlink mailbox: backend → device messages held until the device is
//! heard and the message delivered (or it expires).
//!
//! The store only keeps entries and their delivery bookkeeping; deciding when
//! to transmit, how often to retry and what receipt to send belongs to the
//! downlink logic.
//!
//! A put is durable before it returns, because the gateway PUBACKs the MQTT
//! downlink on the strength of it. The `down_msg_id` is unique, so a QoS-1
//! redelivery of the same downlink is a `Duplicate` (for as long as the entry
//! exists; remove entries only once their outcome is reported).
//!
//! Limits: at most `mailbox_max_per_device` entries per device and
//! `mailbox_max_total_bytes` accounted bytes in all (payload plus
//! [`MAILBOX_ROW_OVERHEAD_BYTES`] per entry), counting entries in every state:
//! an entry occupies space until it is removed. The mailbox has its own
//! limits and does not count against the outbox quota, so downlinks can never
//! make the gateway refuse uplinks.

use rusqlite::{params, Connection, Row};

use super::tally::Tallies;
use super::StoreError;

/// Accounted bytes per mailbox entry on top of its payload frame.
pub const MAILBOX_ROW_OVERHEAD_BYTES: u64 = 128;

/// A downlink to hold.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMail {
    pub device_id: [u8; 32],
    /// The downlink's Seed msg_id: the de-duplication key.
    pub down_msg_id: [u8; 16],
    /// The signed frame to transmit.
    pub payload_frame: Vec<u8>,
    pub created_at_ms: u64,
    /// After this moment (ms since epoch) the entry should no longer be sent.
    pub expires_at_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailboxPutOutcome {
    /// Held durably under this id.
    Stored { id: u64 },
    /// The same `down_msg_id` is already held: nothing written.
    Duplicate,
    /// Not held: a limit is reached. Do not PUBACK as if it were kept.
    Full { limit: MailboxLimit },
}

/// Which mailbox limit refused a put.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailboxLimit {
    PerDevice,
    Total,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailboxState {
    /// Waiting to be (re)delivered.
    Pending,
    Delivered,
    Expired,
    Failed,
}

impl MailboxState {
    fn as_str(self) -> &'static str {
        match self {
            MailboxState::Pending => "pending",
            MailboxState::Delivered => "delivered",
            MailboxState::Expired => "expired",
            MailboxState::Failed => "failed",
        }
    }

    fn parse(text: &str) -> Option<MailboxState> {
        Some(match text {
            "pending" => MailboxState::Pending,
            "delivered" => MailboxState::Delivered,
            "expired" => MailboxState::Expired,
            "failed" => MailboxState::Failed,
            _ => return None,
        })
    }
}

/// An update to one entry: its new state, and whether a delivery attempt was
/// made (which increments `attempts` and sets `last_attempt_at_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxMark {
    pub state: MailboxState,
    pub attempted_at_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MailboxEntry {
    pub id: u64,
    pub device_id: [u8; 32],
    pub down_msg_id: [u8; 16],
    pub payload_frame: Vec<u8>,
    pub created_at_ms: u64,
    pub expires_at_ms: u64,
    pub state: MailboxState,
    pub attempts: u32,
    pub last_attempt_at_ms: Option<u64>,
    /// The neighbour gateway that accepted this downlink and offered us a
    /// copy (`peer_mail.rs`); `None` for our own.
    pub origin: Option<[u8; 32]>,
}

/// The mailbox limits from `StoreOptions`.
#[derive(Debug, Clone, Copy)]
pub(super) struct MailboxLimits {
    pub per_device: u64,
    pub total_bytes: u64,
}

const COLUMNS: &str = "id, device_id, down_msg_id, payload_frame, created_at_ms, expires_at_ms, \
                       state, attempts, last_attempt_at_ms, origin";
/// [`COLUMNS`] of a table aliased `m`.
pub(super) const COLUMNS_OF_M: &str =
    "m.id, m.device_id, m.down_msg_id, m.payload_frame, m.created_at_ms, m.expires_at_ms, \
     m.state, m.attempts, m.last_attempt_at_ms, m.origin";

pub(super) fn entry_from_row(row: &Row<'_>) -> rusqlite::Result<MailboxEntry> {
    let state: String = row.get(6)?;
    let state = MailboxState::parse(&state).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            6,
            rusqlite::types::Type::Text,
            format!("unknown mailbox state {state:?}").into(),
        )
    })?;
    Ok(MailboxEntry {
        id: row.get(0)?,
        device_id: row.get(1)?,
        down_msg_id: row.get(2)?,
        payload_frame: row.get(3)?,
        created_at_ms: row.get(4)?,
        expires_at_ms: row.get(5)?,
        state,
        attempts: row.get(7)?,
        last_attempt_at_ms: row.get(8)?,
        origin: row.get(9)?,
    })
}

pub(super) fn put(
    conn: &Connection,
    tallies: &mut Tallies,
    limits: MailboxLimits,
    mail: NewMail,
) -> Result<MailboxPutOutcome, StoreError> {
    let exists: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM mailbox WHERE down_msg_id = ?1)")?
        .query_row([&mail.down_msg_id], |row| row.get(0))?;
    if exists {
        return Ok(MailboxPutOutcome::Duplicate);
    }
    let held_for_device: u64 = conn
        .prepare_cached("SELECT COUNT(*) FROM mailbox WHERE device_id = ?1")?
        .query_row([&mail.device_id], |row| row.get(0))?;
    if held_for_device >= limits.per_device {
        return Ok(MailboxPutOutcome::Full {
            limit: MailboxLimit::PerDevice,
        });
    }
    let size = mail.payload_frame.len() as u64 + MAILBOX_ROW_OVERHEAD_BYTES;
    if tallies.mailbox_bytes + size > limits.total_bytes {
        return Ok(MailboxPutOutcome::Full {
            limit: MailboxLimit::Total,
        });
    }
    conn.prepare_cached(
        "INSERT INTO mailbox (device_id, down_msg_id, payload_frame, created_at_ms,
                              expires_at_ms, size_bytes)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        mail.device_id,
        mail.down_msg_id,
        mail.payload_frame,
        mail.created_at_ms.min(i64::MAX as u64),
        mail.expires_at_ms.min(i64::MAX as u64),
        size,
    ])?;
    tallies.mailbox_rows += 1;
    tallies.mailbox_bytes += size;
    Ok(MailboxPutOutcome::Stored {
        id: conn.last_insert_rowid() as u64,
    })
}

/// The device's pending entries, oldest first.
pub(super) fn pending_for(
    conn: &Connection,
    device_id: &[u8; 32],
) -> Result<Vec<MailboxEntry>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM mailbox WHERE device_id = ?1 AND state = 'pending' ORDER BY id"
    );
    let entries = conn
        .prepare_cached(&sql)?
        .query_map([device_id], entry_from_row)?
        .collect::<Result<_, _>>()?;
    Ok(entries)
}

/// Entries no longer `Pending` (marked expired, delivered or failed) that
/// are still held: their outcome was decided but, after a crash, perhaps
/// never reported. Oldest first.
pub(super) fn unfinished(conn: &Connection) -> Result<Vec<MailboxEntry>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM mailbox WHERE state != 'pending' ORDER BY id");
    let entries = conn
        .prepare_cached(&sql)?
        .query_map([], entry_from_row)?
        .collect::<Result<_, _>>()?;
    Ok(entries)
}

pub(super) fn mark(conn: &Connection, id: u64, mark: MailboxMark) -> Result<bool, StoreError> {
    let Ok(id) = i64::try_from(id) else {
        return Ok(false);
    };
    let changed = conn
        .prepare_cached(
            "UPDATE mailbox SET state = ?2,
                 attempts = attempts + (?3 IS NOT NULL),
                 last_attempt_at_ms = COALESCE(?3, last_attempt_at_ms)
             WHERE id = ?1",
        )?
        .execute(params![
            id,
            mark.state.as_str(),
            mark.attempted_at_ms.map(|at| at.min(i64::MAX as u64)),
        ])?;
    Ok(changed > 0)
}

pub(super) fn remove(
    conn: &Connection,
    tallies: &mut Tallies,
    ids: &[u64],
) -> Result<u64, StoreError> {
    let mut delete =
        conn.prepare_cached("DELETE FROM mailbox WHERE id = ?1 RETURNING size_bytes, down_msg_id")?;
    let mut removed = 0;
    for &id in ids {
        let Ok(id) = i64::try_from(id) else { continue };
        let mut rows = delete.query([id])?;
        if let Some(row) = rows.next()? {
            let size: u64 = row.get(0)?;
            let down_msg_id: Vec<u8> = row.get(1)?;
            super::peer_mail::withdraw_copies(conn, &down_msg_id)?;
            tallies.mailbox_rows -= 1;
            tallies.mailbox_bytes -= size;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Marks overdue pending entries `Expired` and returns them, oldest first.
pub(super) fn expire(conn: &Connection, now_ms: u64) -> Result<Vec<MailboxEntry>, StoreError> {
    let sql = format!(
        "UPDATE mailbox SET state = 'expired'
         WHERE state = 'pending' AND expires_at_ms <= ?1 RETURNING {COLUMNS}"
    );
    let mut expired: Vec<MailboxEntry> = conn
        .prepare_cached(&sql)?
        .query_map([now_ms.min(i64::MAX as u64)], entry_from_row)?
        .collect::<Result<_, _>>()?;
    // RETURNING gives no order guarantee.
    expired.sort_by_key(|entry| entry.id);
    Ok(expired)
}
