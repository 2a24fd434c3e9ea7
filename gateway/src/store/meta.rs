//! A small key/value table for facts the gateway must remember across
//! restarts (best known ledger height, gateway state, ...). Values are text;
//! callers store numbers or JSON as they like.

use rusqlite::{params, Connection, OptionalExtension};

use super::StoreError;

pub(super) fn get(conn: &Connection, key: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([key], |row| row.get(0))
        .optional()?)
}

pub(super) fn set(conn: &Connection, key: &str, value: &str) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![key, value])?;
    Ok(())
}
