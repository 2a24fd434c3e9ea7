//! Opening the database: pragmas that make commits durable, and schema
//! migrations versioned in code.
//!
//! The schema version lives in `PRAGMA user_version`. [`MIGRATIONS`] lists
//! every step ever shipped, in order; step `i` (0-based) takes the database
//! from version `i` to `i + 1`, each in its own transaction, so a power cut
//! mid-upgrade leaves the file at a whole version and the next start resumes.
//! Steps are append-only: never edit a shipped one, add a new one.
//!
//! A database whose version is newer than the last step was written by a
//! newer seed-gateway (for example before a rollback to the other RAUC slot);
//! opening it could misread data, so it is refused with an error saying so.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;

/// `PRAGMA application_id` of a seed-gateway store ("SEED" in ASCII), so we
/// never mistake another program's SQLite file for ours, or the reverse.
const APPLICATION_ID: i64 = 0x5345_4544;

/// How long a connection waits for a lock held by the other connection
/// (the reader during a checkpoint, say) before reporting "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// One schema step.
pub(super) struct Migration {
    pub description: &'static str,
    pub sql: &'static str,
}

/// Every schema step, oldest first. Append only.
pub(super) const MIGRATIONS: &[Migration] = &[
    Migration {
        description: "outbox, seen msg_ids, meta",
        sql: "
            -- AUTOINCREMENT: seq values are never reused, even after the
            -- newest rows were published and deleted, so a seq names one
            -- message forever (the uplink and logs may refer to it).
            CREATE TABLE outbox (
                seq             INTEGER PRIMARY KEY AUTOINCREMENT,
                msg_id          BLOB    NOT NULL,
                device_id       BLOB    NOT NULL,
                message_type    TEXT    NOT NULL,
                frame           BLOB    NOT NULL,
                message_json    TEXT    NOT NULL,
                rx_json         TEXT    NOT NULL,
                received_at_ms  INTEGER NOT NULL,
                compacted_count INTEGER NOT NULL DEFAULT 0,
                -- what this row counts against the quota (see quota.rs)
                size_bytes      INTEGER NOT NULL
            );
            -- heartbeat compaction looks up heartbeats per device
            CREATE INDEX outbox_heartbeats ON outbox (device_id, seq)
                WHERE message_type = 'heartbeat';

            -- Every msg_id we hold or recently held: the UNIQUE key that
            -- de-duplicates retries, also after the message left the outbox.
            -- retired_at_ms is NULL while the message is in the outbox.
            CREATE TABLE seen (
                msg_id        BLOB    PRIMARY KEY NOT NULL,
                seq           INTEGER NOT NULL,
                retired_at_ms INTEGER
            ) WITHOUT ROWID;
            CREATE INDEX seen_retired ON seen (retired_at_ms, seq)
                WHERE retired_at_ms IS NOT NULL;

            CREATE TABLE meta (
                key   TEXT PRIMARY KEY NOT NULL,
                value TEXT NOT NULL
            ) WITHOUT ROWID;
        ",
    },
    Migration {
        description: "downlink mailbox",
        sql: "
            CREATE TABLE mailbox (
                id                 INTEGER PRIMARY KEY AUTOINCREMENT,
                device_id          BLOB    NOT NULL,
                -- a QoS-1 redelivery of the same downlink is a duplicate
                down_msg_id        BLOB    NOT NULL UNIQUE,
                payload_frame      BLOB    NOT NULL,
                created_at_ms      INTEGER NOT NULL,
                expires_at_ms      INTEGER NOT NULL,
                state              TEXT    NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'delivered', 'expired', 'failed')),
                attempts           INTEGER NOT NULL DEFAULT 0,
                last_attempt_at_ms INTEGER,
                size_bytes         INTEGER NOT NULL
            );
            CREATE INDEX mailbox_device ON mailbox (device_id, id);
            CREATE INDEX mailbox_expiry ON mailbox (expires_at_ms)
                WHERE state = 'pending';
        ",
    },
    Migration {
        description: "outbox index by message type",
        // The status page counts the backlog per type; with this index the
        // GROUP BY reads the small index, not every row's frame and JSON.
        sql: "CREATE INDEX outbox_by_type ON outbox (message_type);",
    },
    Migration {
        description: "rows held in custody for neighbour gateways",
        // See custody.rs. `msg_id` is UNIQUE so a row handed over again
        // (its ack was lost) is recognised and acknowledged again.
        sql: "
            CREATE TABLE custody (
                id              INTEGER PRIMARY KEY AUTOINCREMENT,
                origin          BLOB    NOT NULL,
                origin_seq      INTEGER NOT NULL,
                msg_id          BLOB    NOT NULL UNIQUE,
                device_id       BLOB    NOT NULL,
                message_type    TEXT    NOT NULL,
                frame           BLOB    NOT NULL,
                message_json    TEXT    NOT NULL,
                rx_json         TEXT    NOT NULL,
                received_at_ms  INTEGER NOT NULL,
                compacted_count INTEGER NOT NULL DEFAULT 0,
                accepted_at_ms  INTEGER NOT NULL,
                size_bytes      INTEGER NOT NULL
            );
            CREATE INDEX custody_by_origin ON custody (origin);
        ",
    },
    Migration {
        description: "rows handed to a neighbour until it reports them published; store id",
        // See handover.rs. `seq` is the outbox seq the row had. The store
        // id lets a neighbour tell that this store was replaced (a wiped
        // SD card) and that what it handed to us is gone.
        sql: "
            CREATE TABLE handed_over (
                seq             INTEGER PRIMARY KEY,
                peer            BLOB    NOT NULL,
                peer_store_id   TEXT    NOT NULL,
                msg_id          BLOB    NOT NULL,
                device_id       BLOB    NOT NULL,
                message_type    TEXT    NOT NULL,
                frame           BLOB    NOT NULL,
                message_json    TEXT    NOT NULL,
                rx_json         TEXT    NOT NULL,
                received_at_ms  INTEGER NOT NULL,
                compacted_count INTEGER NOT NULL DEFAULT 0,
                size_bytes      INTEGER NOT NULL,
                handed_at_ms    INTEGER NOT NULL
            );
            CREATE INDEX handed_over_by_peer ON handed_over (peer, peer_store_id);
            INSERT OR IGNORE INTO meta (key, value)
                VALUES ('store_id', lower(hex(randomblob(16))));
        ",
    },
    Migration {
        description: "downlinks shared with neighbour gateways",
        // See peer_mail.rs. `origin` is NULL for our own downlinks and the
        // accepting neighbour's id for a copy it offered us.
        sql: "
            ALTER TABLE mailbox ADD COLUMN origin BLOB;
            CREATE INDEX mailbox_by_origin ON mailbox (origin) WHERE origin IS NOT NULL;
            CREATE TABLE mailbox_offers (
                down_msg_id BLOB NOT NULL,
                peer        BLOB NOT NULL,
                state       TEXT NOT NULL CHECK (state IN ('held', 'withdraw')),
                PRIMARY KEY (down_msg_id, peer)
            ) WITHOUT ROWID;
            CREATE INDEX mailbox_offers_by_peer ON mailbox_offers (peer, state);
        ",
    },
    Migration {
        description: "seen msg_ids kept in arrival order",
        // See seen.rs: keyed by seq, a flood appends to `seen` instead of
        // dirtying a random page per message; look-ups by msg_id are served
        // from the writer's memory, so no index on msg_id is kept. Every
        // record has its own seq (outbox seqs are never reused); OR IGNORE
        // only guards the migration against a file that broke that.
        sql: "
            CREATE TABLE seen_by_seq (
                seq           INTEGER PRIMARY KEY,
                msg_id        BLOB    NOT NULL,
                retired_at_ms INTEGER
            );
            INSERT OR IGNORE INTO seen_by_seq (seq, msg_id, retired_at_ms)
                SELECT seq, msg_id, retired_at_ms FROM seen ORDER BY seq;
            DROP TABLE seen;
            ALTER TABLE seen_by_seq RENAME TO seen;
            CREATE INDEX seen_retired ON seen (retired_at_ms)
                WHERE retired_at_ms IS NOT NULL;
        ",
    },
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Opens the write connection and migrates the schema to [`SCHEMA_VERSION`].
pub(super) fn open_and_migrate(path: &Path) -> Result<Connection, StoreError> {
    open_and_migrate_to(path, MIGRATIONS.len())
}

/// Like [`open_and_migrate`], but stops after `steps` migrations (tests use it
/// to build databases of older versions).
pub(super) fn open_and_migrate_to(path: &Path, steps: usize) -> Result<Connection, StoreError> {
    let open_error = |e: rusqlite::Error| StoreError::Open {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let mut conn = Connection::open(path).map_err(open_error)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open_error)?;

    // Identify the file before changing anything in it.
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(open_error)?;
    let application_id: i64 = conn
        .pragma_query_value(None, "application_id", |row| row.get(0))
        .map_err(open_error)?;
    let has_tables: bool = conn
        .query_row("SELECT EXISTS (SELECT 1 FROM sqlite_master)", [], |row| {
            row.get(0)
        })
        .map_err(open_error)?;
    let foreign = if version == 0 {
        application_id != 0 || has_tables
    } else {
        application_id != APPLICATION_ID
    };
    if foreign {
        return Err(StoreError::NotAStore {
            path: path.to_path_buf(),
            application_id,
        });
    }
    if version > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }

    if !has_tables {
        // Only possible before the first table exists. Lets `close` hand
        // freed pages back to the file system (`PRAGMA incremental_vacuum`)
        // after a large backlog drained, instead of keeping the file at its
        // high-water mark forever.
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
            .map_err(open_error)?;
    }
    set_durability_pragmas(&conn, path)?;

    for (index, step) in MIGRATIONS
        .iter()
        .enumerate()
        .take(steps)
        .skip(version as usize)
    {
        let to = index as i64 + 1;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(step.sql).map_err(|e| StoreError::Open {
            path: path.to_path_buf(),
            message: format!(
                "schema migration to version {to} ({}) failed: {e}",
                step.description
            ),
        })?;
        tx.pragma_update(None, "application_id", APPLICATION_ID)?;
        tx.pragma_update(None, "user_version", to)?;
        tx.commit()?;
        tracing::info!(version = to, "store schema migrated: {}", step.description);
    }
    Ok(conn)
}

/// WAL: readers (the uplink paging through the outbox) never block the writer
/// and the writer never blocks them; a commit appends to the log instead of
/// rewriting pages in place.
///
/// `synchronous=FULL`, not NORMAL: ingest acks a message over the radio as
/// soon as `commit` returns, and the device then forgets it. With NORMAL, a
/// WAL commit is not fsynced (only checkpoints are), so a power cut right
/// after the ack could roll the message back: acked, yet gone. FULL fsyncs
/// the WAL at every commit; group commit keeps that to one fsync per group.
/// (The writer lowers it to NORMAL for groups of publish marks alone, whose
/// loss costs only a re-publish; see `writer.rs`.)
fn set_durability_pragmas(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let open_error = |message: String| StoreError::Open {
        path: path.to_path_buf(),
        message,
    };
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(|e| open_error(e.to_string()))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(open_error(format!(
            "the file system refused write-ahead logging (journal_mode stayed {mode})"
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(|e| open_error(e.to_string()))?;
    Ok(())
}

/// Opens the read connection. `query_only` makes any accidental write on it
/// fail loudly: all writes go through the writer thread.
pub(super) fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let open_error = |e: rusqlite::Error| StoreError::Open {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let conn = Connection::open(path).map_err(open_error)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open_error)?;
    conn.pragma_update(None, "query_only", true)
        .map_err(open_error)?;
    Ok(conn)
}
