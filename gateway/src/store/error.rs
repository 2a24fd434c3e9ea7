//! What can go wrong with the store, in words a technician can act on.
//!
//! The error is `Clone` because one failed group-commit transaction must be
//! reported to every caller whose request was in it.

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StoreError {
    #[error("cannot open the store database {path}: {message}")]
    Open { path: PathBuf, message: String },

    #[error(
        "the store database {path} has schema version {found}, but this seed-gateway \
         understands versions up to {supported}: it was written by a newer seed-gateway. \
         Install that newer version again, or move the file aside to start with an empty store"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },

    #[error(
        "{path} is an SQLite database of some other program (application_id {application_id:#x}), \
         not a seed-gateway store; refusing to touch it"
    )]
    NotAStore { path: PathBuf, application_id: i64 },

    #[error("the disk holding the store is full: {0}")]
    DiskFull(String),

    #[error("store database error: {0}")]
    Database(String),

    #[error("invalid store options: {0}")]
    BadOptions(String),

    #[error("the store is closed (its writer has stopped)")]
    Closed,
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        if error.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
            StoreError::DiskFull(error.to_string())
        } else {
            StoreError::Database(error.to_string())
        }
    }
}
