//! Quota: heartbeat compaction, refusal when full, recovery after draining.

use super::super::quota::row_size;
use super::{db_path, message, open, quick};
use crate::store::{CommitOutcome, OutboxEntry, QuotaState, Store, StoreOptions, SEEN_ROW_BYTES};

fn with_quota(quota_bytes: u64, compact_at_percent: u8) -> StoreOptions {
    StoreOptions {
        quota_bytes,
        compact_at_percent,
        ..quick()
    }
}

/// What one message costs against the quota (its row plus its seen record).
fn cost(kind: &str) -> u64 {
    // n in 10..100 keeps every message of a kind the same size.
    row_size(&message(10, kind, 1)) + SEEN_ROW_BYTES
}

async fn all_pending(store: &Store) -> Vec<OutboxEntry> {
    store.pending(0, 1000).await.unwrap()
}

async fn fill_with_transactions(store: &Store, first_n: u32) -> u32 {
    for n in first_n..100 {
        match store
            .commit(vec![message(n, "transaction", 1)])
            .await
            .unwrap()[0]
        {
            CommitOutcome::Stored { .. } => {}
            CommitOutcome::Refused => return n - first_n,
            CommitOutcome::Duplicate => panic!("unexpected duplicate"),
        }
    }
    panic!("the store never filled up");
}

#[tokio::test]
async fn below_the_threshold_every_heartbeat_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&db_path(&dir), quick());
    store
        .commit((10..15).map(|n| message(n, "heartbeat", 1)).collect())
        .await
        .unwrap();
    assert_eq!(all_pending(&store).await.len(), 5);
    assert_eq!(store.stats().quota_state, QuotaState::Ok);
    assert_eq!(store.stats().heartbeats_compacted_total, 0);
    store.close().await.unwrap();
}

#[tokio::test]
async fn compaction_keeps_the_newest_heartbeat_per_device_and_every_other_message() {
    let dir = tempfile::tempdir().unwrap();
    // Compact as soon as 1 % of 100 kB is used.
    let store = open(&db_path(&dir), with_quota(100_000, 1));
    let (a, b) = (1u8, 2u8);
    let batch = vec![
        message(10, "heartbeat", a),
        message(50, "transaction", a),
        message(20, "heartbeat", b),
        message(11, "heartbeat", a),
        message(12, "heartbeat", a),
        message(60, "ledger_sync", b),
        message(21, "heartbeat", b),
        message(13, "heartbeat", a),
        message(51, "transaction", a),
        message(14, "heartbeat", a),
        message(22, "heartbeat", b),
    ];
    store.commit(batch.clone()).await.unwrap();

    let pending = all_pending(&store).await;
    let kept: Vec<(u32, &str, u64)> = pending
        .iter()
        .map(|e| {
            let n = u32::from_be_bytes(e.msg_id[..4].try_into().unwrap());
            (n, e.message_type.as_str(), e.compacted_count)
        })
        .collect();
    assert_eq!(
        kept,
        vec![
            (50, "transaction", 0),
            (60, "ledger_sync", 0),
            (51, "transaction", 0),
            (14, "heartbeat", 4),
            (22, "heartbeat", 2),
        ]
    );
    let stats = store.stats();
    assert_eq!(stats.heartbeats_compacted_total, 6);
    assert_eq!(stats.quota_state, QuotaState::Compacting);
    assert_eq!(stats.backlog, 5);
    let expected_bytes: u64 = [1usize, 5, 8, 9, 10]
        .iter()
        .map(|&i| row_size(&batch[i]))
        .sum::<u64>()
        + 11 * SEEN_ROW_BYTES;
    assert_eq!(stats.bytes_used, expected_bytes);

    // Later heartbeats fold the earlier counts in.
    store
        .commit(vec![message(15, "heartbeat", a)])
        .await
        .unwrap();
    store
        .commit(vec![message(16, "heartbeat", a)])
        .await
        .unwrap();
    let newest_a: Vec<_> = all_pending(&store)
        .await
        .into_iter()
        .filter(|e| e.message_type == "heartbeat" && e.device_id == [a; 32])
        .collect();
    assert_eq!(newest_a.len(), 1);
    assert_eq!(newest_a[0].msg_id, message(16, "heartbeat", a).msg_id);
    assert_eq!(newest_a[0].compacted_count, 6);
    assert_eq!(store.stats().heartbeats_compacted_total, 8);

    // A folded heartbeat's retry is still recognised.
    assert_eq!(
        store
            .commit(vec![message(10, "heartbeat", a)])
            .await
            .unwrap(),
        vec![CommitOutcome::Duplicate]
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn full_of_transactions_refuses_then_recovers_when_drained() {
    let dir = tempfile::tempdir().unwrap();
    let per = cost("transaction");
    let store = open(&db_path(&dir), with_quota(10 * per + per / 2, 90));

    let stored = fill_with_transactions(&store, 10).await;
    assert_eq!(stored, 10, "exactly as many as fit");
    let stats = store.stats();
    assert_eq!(stats.quota_state, QuotaState::Full);
    assert_eq!(stats.refused_total, 1);
    assert_eq!(stats.backlog, 10, "nothing stored was dropped");
    assert!(stats.bytes_used <= stats.quota_bytes);

    // Nothing to compact: a heartbeat of a new device is refused too.
    assert_eq!(
        store
            .commit(vec![message(90, "heartbeat", 9)])
            .await
            .unwrap(),
        vec![CommitOutcome::Refused]
    );
    assert_eq!(store.stats().refused_total, 2);
    // The refused transaction was not remembered: its retry is refused, not a duplicate.
    assert_eq!(
        store
            .commit(vec![message(20, "transaction", 1)])
            .await
            .unwrap(),
        vec![CommitOutcome::Refused]
    );

    // The uplink drains part of the backlog.
    store.mark_published((1..=6).collect()).await.unwrap();
    let stats = store.stats();
    assert_eq!(stats.quota_state, QuotaState::Ok);
    assert_eq!(stats.bytes_used, 4 * per + 6 * SEEN_ROW_BYTES);
    assert!(matches!(
        store
            .commit(vec![message(20, "transaction", 1)])
            .await
            .unwrap()[0],
        CommitOutcome::Stored { .. }
    ));
    assert_eq!(all_pending(&store).await.len(), 5);
    store.close().await.unwrap();
}

#[tokio::test]
async fn published_ids_are_forgotten_before_a_transaction_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let per = cost("transaction");
    let store = open(&db_path(&dir), with_quota(10 * per, 90));
    assert_eq!(fill_with_transactions(&store, 10).await, 10);
    store.mark_published((1..=10).collect()).await.unwrap();
    assert_eq!(store.stats().seen_ids, 10);

    for n in 30..40 {
        let outcome = store
            .commit(vec![message(n, "transaction", 1)])
            .await
            .unwrap();
        assert!(
            matches!(outcome[0], CommitOutcome::Stored { .. }),
            "{n}: {outcome:?}"
        );
    }
    let stats = store.stats();
    assert_eq!(stats.backlog, 10);
    assert_eq!(stats.seen_ids, 10, "the ten published ids made room");
    assert!(stats.bytes_used <= stats.quota_bytes);
    store.close().await.unwrap();
}

#[tokio::test]
async fn when_full_a_heartbeat_replaces_its_devices_waiting_one() {
    let dir = tempfile::tempdir().unwrap();
    // Room for one more seen record: the replaced heartbeat's msg_id is kept.
    let quota = cost("heartbeat") + 5 * cost("transaction") + SEEN_ROW_BYTES + 10;
    let store = open(&db_path(&dir), with_quota(quota, 90));
    let h = 7u8;
    store
        .commit(vec![message(10, "heartbeat", h)])
        .await
        .unwrap();
    assert_eq!(fill_with_transactions(&store, 10).await, 5);
    assert_eq!(store.stats().quota_state, QuotaState::Full);

    let outcome = store
        .commit(vec![message(11, "heartbeat", h)])
        .await
        .unwrap();
    assert!(
        matches!(outcome[0], CommitOutcome::Stored { .. }),
        "{outcome:?}"
    );
    let heartbeats: Vec<_> = all_pending(&store)
        .await
        .into_iter()
        .filter(|e| e.message_type == "heartbeat")
        .collect();
    assert_eq!(heartbeats.len(), 1);
    assert_eq!(heartbeats[0].msg_id, message(11, "heartbeat", h).msg_id);
    assert_eq!(heartbeats[0].compacted_count, 1);
    let stats = store.stats();
    assert_eq!(stats.heartbeats_compacted_total, 1);
    assert_eq!(stats.backlog, 6, "all five transactions are still there");
    assert_eq!(
        stats.quota_state,
        QuotaState::Full,
        "transactions would still be refused"
    );

    // A device with no waiting heartbeat has nothing to replace.
    assert_eq!(
        store
            .commit(vec![message(12, "heartbeat", 8)])
            .await
            .unwrap(),
        vec![CommitOutcome::Refused]
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn after_compaction_the_uplink_reads_the_folded_rows_from_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    // Compact as soon as 1 % of 100 kB is used.
    let store = open(&db_path(&dir), with_quota(100_000, 1));
    let batch: Vec<_> = (10..14).map(|n| message(n, "heartbeat", 1)).collect();
    let payloads = vec![Some(bytes::Bytes::from_static(b"built at ingest")); batch.len()];
    store
        .start_commit_with_payloads(batch, payloads)
        .await
        .unwrap();
    // Only the newest heartbeat is left, carrying the three it replaced:
    // the rows ingest handed over in memory are stale, so none is served.
    let rows = store.pending_publishable(0, 100).await.unwrap();
    let seen: Vec<(u64, Option<bytes::Bytes>)> = rows
        .iter()
        .map(|p| (p.entry.compacted_count, p.up.clone()))
        .collect();
    assert_eq!(seen, [(3, None)]);
    let last = rows[0].entry.seq;
    assert!(store
        .pending_publishable(last, 100)
        .await
        .unwrap()
        .is_empty());
    store.close().await.unwrap();
}
