//! Tests of the store, all on real SQLite files in temporary directories.

mod custody;
mod durability;
mod group_commit;
mod handover;
mod mailbox;
mod outbox;
mod quota;
mod schema;

use std::path::{Path, PathBuf};

use super::{Inbound, Store, StoreOptions};

/// A message whose msg_id is derived from `n` and `kind`, so tests can
/// re-create the same message to provoke duplicates.
pub(super) fn message(n: u32, kind: &str, device: u8) -> Inbound {
    let mut msg_id = [0u8; 16];
    msg_id[..4].copy_from_slice(&n.to_be_bytes());
    msg_id[4] = device;
    for (slot, byte) in msg_id[5..].iter_mut().zip(kind.bytes()) {
        *slot = byte;
    }
    Inbound {
        msg_id,
        device_id: [device; 32],
        message_type: kind.to_owned(),
        frame: vec![0xA5; 100],
        message_json: format!(r#"{{"n":{n},"type":"{kind}"}}"#),
        rx_json: r#"{"link":"test","rssi":-90}"#.to_owned(),
        received_at_ms: 1_700_000_000_000 + u64::from(n),
    }
}

pub(super) fn db_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("store.sqlite")
}

pub(super) fn open(path: &Path, options: StoreOptions) -> Store {
    Store::open(path, options).expect("store opens")
}

/// Options that commit every request at once, for tests that are not about batching.
pub(super) fn quick() -> StoreOptions {
    StoreOptions {
        group_commit_delay: std::time::Duration::ZERO,
        ..StoreOptions::default()
    }
}

/// A plain connection for looking at the file behind the store's back.
pub(super) fn raw(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).expect("raw connection opens")
}
