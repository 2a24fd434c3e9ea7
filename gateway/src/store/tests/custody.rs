//! Custody: rows held for a neighbour survive a reopen, duplicates are
//! recognised, and a full quota refuses rather than drops.

use super::{db_path, open, quick};
use crate::store::{CommitOutcome, OutboxEntry, StoreOptions};

fn row(seq: u64, device: u8) -> OutboxEntry {
    let mut msg_id = [0u8; 16];
    msg_id[..8].copy_from_slice(&seq.to_be_bytes());
    msg_id[8] = device;
    OutboxEntry {
        seq,
        msg_id,
        device_id: [device; 32],
        message_type: "transaction".into(),
        frame: vec![0x5a; 100],
        message_json: format!(r#"{{"n":{seq}}}"#),
        rx_json: r#"{"link":"test","received_at_ms":7}"#.into(),
        received_at_ms: 7,
        compacted_count: 0,
    }
}

const ORIGIN: [u8; 32] = [0xee; 32];

#[tokio::test]
async fn held_rows_survive_a_reopen_in_order_and_keep_their_origin() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = open(&path, quick());
    let outcomes = store
        .custody_accept(ORIGIN, vec![row(5, 1), row(9, 2), row(5, 1)])
        .await
        .unwrap();
    assert!(matches!(outcomes[0], CommitOutcome::Stored { .. }));
    assert!(matches!(outcomes[1], CommitOutcome::Stored { .. }));
    assert_eq!(outcomes[2], CommitOutcome::Duplicate, "same msg_id twice");
    store.close().await.unwrap();

    let store = open(&path, quick());
    let held = store.custody_pending(0, 10).await.unwrap();
    assert_eq!(held.len(), 2);
    assert_eq!(held[0].origin, ORIGIN);
    assert_eq!(
        (held[0].entry.clone(), held[1].entry.clone()),
        (row(5, 1), row(9, 2))
    );
    assert_eq!(store.custody_counts().await.unwrap()[&ORIGIN], 2);
    assert_eq!(store.stats().backlog, 0, "custody is not our own outbox");

    store.custody_release(vec![held[0].id]).await.unwrap();
    let held = store.custody_pending(0, 10).await.unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].entry.seq, 9);

    // Offered again under the origin's new seq: one copy, the new seq.
    let mut again = row(9, 2);
    again.seq = 40;
    let outcomes = store.custody_accept(ORIGIN, vec![again]).await.unwrap();
    assert_eq!(outcomes, vec![CommitOutcome::Duplicate]);
    let held = store.custody_pending(0, 10).await.unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(
        held[0].entry.seq, 40,
        "the receipt names the seq the origin uses now"
    );
}

#[tokio::test]
async fn a_full_quota_refuses_what_does_not_fit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(
        &db_path(&dir),
        StoreOptions {
            quota_bytes: 1_000,
            ..quick()
        },
    );
    let outcomes = store
        .custody_accept(ORIGIN, (1..=5).map(|n| row(n, 1)).collect())
        .await
        .unwrap();
    let stored = outcomes
        .iter()
        .filter(|o| matches!(o, CommitOutcome::Stored { .. }))
        .count();
    assert!((1..5).contains(&stored), "{outcomes:?}");
    assert!(
        outcomes[stored..]
            .iter()
            .all(|o| *o == CommitOutcome::Refused),
        "{outcomes:?}"
    );
    assert_eq!(store.custody_pending(0, 10).await.unwrap().len(), stored);
}
