//! Opening, pragmas and migrations.

use super::super::schema::{open_and_migrate, open_and_migrate_to, MIGRATIONS};
use super::super::{StoreError, SCHEMA_VERSION};
use super::{db_path, message, open, quick, raw};
use crate::store::{CommitOutcome, Store};

fn pragma(conn: &rusqlite::Connection, name: &str) -> i64 {
    conn.pragma_query_value(None, name, |row| row.get(0))
        .unwrap()
}

#[test]
fn every_older_version_upgrades_step_by_step_to_the_latest() {
    assert_eq!(SCHEMA_VERSION, MIGRATIONS.len() as i64);
    for steps in 0..=MIGRATIONS.len() {
        let dir = tempfile::tempdir().unwrap();
        let path = db_path(&dir);
        let conn = open_and_migrate_to(&path, steps).unwrap();
        assert_eq!(pragma(&conn, "user_version"), steps as i64);
        drop(conn);
        let conn = open_and_migrate(&path).unwrap();
        assert_eq!(
            pragma(&conn, "user_version"),
            SCHEMA_VERSION,
            "from version {steps}"
        );
        let tables: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'
                 AND name IN ('outbox', 'seen', 'meta', 'mailbox')",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(tables, 4, "from version {steps}");
    }
}

#[test]
fn empty_file_is_migrated_with_durable_pragmas() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let conn = open_and_migrate(&path).unwrap();
    assert_eq!(pragma(&conn, "user_version"), SCHEMA_VERSION);
    assert_eq!(pragma(&conn, "application_id"), 0x5345_4544);
    assert_eq!(pragma(&conn, "synchronous"), 2, "synchronous must be FULL");
    assert_eq!(
        pragma(&conn, "auto_vacuum"),
        2,
        "auto_vacuum must be INCREMENTAL"
    );
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    for table in ["outbox", "seen", "meta", "mailbox"] {
        let exists: bool = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
                [table],
                |row| row.get(0),
            )
            .unwrap();
        assert!(exists, "table {table} missing");
    }
}

#[tokio::test]
async fn reopen_keeps_data_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = open(&path, quick());
    let outcome = store
        .commit(vec![message(1, "transaction", 1)])
        .await
        .unwrap();
    assert_eq!(outcome, vec![CommitOutcome::Stored { seq: 1 }]);
    store.set_meta("ledger_height", "42").await.unwrap();
    store.close().await.unwrap();

    let store = open(&path, quick());
    assert_eq!(pragma(&raw(&path), "user_version"), SCHEMA_VERSION);
    let pending = store.pending(0, 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].msg_id, message(1, "transaction", 1).msg_id);
    assert_eq!(
        store.get_meta("ledger_height").await.unwrap().as_deref(),
        Some("42")
    );
    assert_eq!(store.get_meta("unset").await.unwrap(), None);
    assert_eq!(store.stats().backlog, 1);
    store.close().await.unwrap();
}

#[tokio::test]
async fn older_version_is_upgraded_keeping_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    {
        let conn = open_and_migrate_to(&path, 1).unwrap();
        assert_eq!(pragma(&conn, "user_version"), 1);
        let msg = message(7, "ledger_sync", 3);
        conn.execute(
            "INSERT INTO outbox (msg_id, device_id, message_type, frame, message_json, rx_json,
                                 received_at_ms, size_bytes)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 500)",
            rusqlite::params![
                msg.msg_id,
                msg.device_id,
                msg.message_type,
                msg.frame,
                msg.message_json,
                msg.rx_json,
                msg.received_at_ms
            ],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO seen (msg_id, seq) VALUES (?1, 1)",
            [msg.msg_id],
        )
        .unwrap();
    }
    let store = open(&path, quick());
    assert_eq!(pragma(&raw(&path), "user_version"), SCHEMA_VERSION);
    let pending = store.pending(0, 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].message_type, "ledger_sync");
    assert_eq!(store.stats().bytes_used, 500 + crate::store::SEEN_ROW_BYTES);
    // The version-2 table works.
    let put = store
        .mailbox_put(crate::store::NewMail {
            device_id: [3; 32],
            down_msg_id: [9; 16],
            payload_frame: vec![1, 2, 3],
            created_at_ms: 1,
            expires_at_ms: 2,
        })
        .await
        .unwrap();
    assert!(matches!(
        put,
        crate::store::MailboxPutOutcome::Stored { .. }
    ));
    store.close().await.unwrap();
}

/// Version 7 re-keyed `seen` by seq: ids recorded before it (one queued,
/// one already published) must still make their retries duplicates, and
/// the queued one must still retire when published.
#[tokio::test]
async fn seen_ids_recorded_before_the_rekeying_still_catch_retries() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let (queued, published) = (message(1, "transaction", 3), message(2, "transaction", 3));
    {
        let store = open(&path, quick());
        store
            .commit(vec![published.clone(), queued.clone()])
            .await
            .unwrap();
        store.mark_published(vec![1]).await.unwrap();
        store.close().await.unwrap();
        // Back to the version-6 layout, rows and all.
        let conn = raw(&path);
        conn.execute_batch(
            "CREATE TABLE seen_v6 (msg_id BLOB PRIMARY KEY NOT NULL, seq INTEGER NOT NULL,
                                   retired_at_ms INTEGER) WITHOUT ROWID;
             INSERT INTO seen_v6 SELECT msg_id, seq, retired_at_ms FROM seen;
             DROP TABLE seen;
             ALTER TABLE seen_v6 RENAME TO seen;
             CREATE INDEX seen_retired ON seen (retired_at_ms, seq)
                 WHERE retired_at_ms IS NOT NULL;
             PRAGMA user_version = 6;",
        )
        .unwrap();
    }
    let store = open(&path, quick());
    assert_eq!(pragma(&raw(&path), "user_version"), SCHEMA_VERSION);
    assert_eq!(store.stats().seen_ids, 2);
    let again = store
        .commit(vec![published.clone(), queued.clone()])
        .await
        .unwrap();
    assert_eq!(again, [CommitOutcome::Duplicate, CommitOutcome::Duplicate]);

    store.mark_published(vec![2]).await.unwrap();
    let retired: i64 = raw(&path)
        .query_row(
            "SELECT COUNT(*) FROM seen WHERE retired_at_ms IS NOT NULL",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(
        retired, 2,
        "the queued id retired when its row was published"
    );
    assert_eq!(store.stats().backlog, 0);
    store.close().await.unwrap();
}

#[test]
fn newer_version_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    drop(open_and_migrate(&path).unwrap());
    raw(&path)
        .pragma_update(None, "user_version", SCHEMA_VERSION + 5)
        .unwrap();

    let error = Store::open(&path, quick())
        .err()
        .expect("a newer database is refused");
    assert_eq!(
        error,
        StoreError::TooNew {
            path: path.clone(),
            found: SCHEMA_VERSION + 5,
            supported: SCHEMA_VERSION
        }
    );
    let text = error.to_string();
    assert!(text.contains("newer seed-gateway"), "{text}");
    assert!(
        text.contains(&format!("schema version {}", SCHEMA_VERSION + 5)),
        "{text}"
    );
    assert_eq!(pragma(&raw(&path), "user_version"), SCHEMA_VERSION + 5);
}

#[test]
fn another_programs_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    raw(&path)
        .execute_batch("CREATE TABLE notes (text TEXT); INSERT INTO notes VALUES ('mine');")
        .unwrap();
    let error = Store::open(&path, quick()).err().expect("refused");
    assert!(matches!(error, StoreError::NotAStore { .. }), "{error}");
    let still_there: String = raw(&path)
        .query_row("SELECT text FROM notes", [], |row| row.get(0))
        .unwrap();
    assert_eq!(still_there, "mine");
}

#[test]
fn a_file_that_is_not_sqlite_gives_an_open_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    std::fs::write(&path, vec![b'x'; 4096]).unwrap();
    let error = Store::open(&path, quick()).err().expect("refused");
    assert!(matches!(error, StoreError::Open { .. }), "{error}");
    assert!(error.to_string().contains("store.sqlite"), "{error}");
}

#[test]
fn bad_options_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let options = crate::store::StoreOptions {
        compact_at_percent: 0,
        ..quick()
    };
    assert!(matches!(
        Store::open(&path, options).err(),
        Some(StoreError::BadOptions(_))
    ));
}
