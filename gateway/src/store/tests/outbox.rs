//! Commit, de-duplication, pending, publishing, seen retention, stats.

use std::time::Duration;

use super::super::quota::row_size;
use super::{db_path, message, open, quick, raw};
use crate::store::{CommitOutcome, StoreError, StoreOptions, SEEN_ROW_BYTES};

fn stored_seq(outcome: CommitOutcome) -> u64 {
    match outcome {
        CommitOutcome::Stored { seq } => seq,
        other => panic!("expected Stored, got {other:?}"),
    }
}

#[tokio::test]
async fn commit_assigns_increasing_seqs_in_batch_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&db_path(&dir), quick());
    let batch: Vec<_> = (0..5).map(|n| message(n, "transaction", 1)).collect();
    let outcomes = store.commit(batch).await.unwrap();
    let seqs: Vec<u64> = outcomes.into_iter().map(stored_seq).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
    assert!(store.commit(Vec::new()).await.unwrap().is_empty());
    store.close().await.unwrap();
}

#[tokio::test]
async fn duplicates_are_recognised_within_and_across_batches() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&db_path(&dir), quick());
    let a = message(1, "transaction", 1);
    let b = message(2, "transaction", 1);
    let outcomes = store
        .commit(vec![a.clone(), a.clone(), b.clone()])
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        vec![
            CommitOutcome::Stored { seq: 1 },
            CommitOutcome::Duplicate,
            CommitOutcome::Stored { seq: 2 }
        ]
    );
    // A retry with different reception metadata is still the same message.
    let mut retry = b.clone();
    retry.rx_json = r#"{"rssi":-120}"#.into();
    assert_eq!(
        store.commit(vec![retry]).await.unwrap(),
        vec![CommitOutcome::Duplicate]
    );
    let stats = store.stats();
    assert_eq!(stats.stored_total, 2);
    assert_eq!(stats.duplicates_total, 2);
    assert_eq!(stats.backlog, 2);
    assert_eq!(store.pending(0, 10).await.unwrap().len(), 2);
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_retry_after_publishing_is_still_a_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = open(&path, quick());
    let msg = message(1, "transaction", 1);
    let seq = stored_seq(store.commit(vec![msg.clone()]).await.unwrap()[0]);
    store.mark_published(vec![seq]).await.unwrap();
    assert_eq!(store.stats().backlog, 0);
    assert_eq!(
        store.commit(vec![msg.clone()]).await.unwrap(),
        vec![CommitOutcome::Duplicate]
    );
    store.close().await.unwrap();
    // ... also after a restart.
    let store = open(&path, quick());
    assert_eq!(
        store.commit(vec![msg]).await.unwrap(),
        vec![CommitOutcome::Duplicate]
    );
    assert_eq!(store.stats().backlog, 0);
    store.close().await.unwrap();
}

#[tokio::test]
async fn pending_pages_in_seq_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&db_path(&dir), quick());
    for chunk in 0..5u32 {
        let batch = (0..10)
            .map(|n| message(chunk * 10 + n, "transaction", (n % 3) as u8))
            .collect();
        store.commit(batch).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor = 0;
    loop {
        let page = store.pending(cursor, 7).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 7);
        cursor = page.last().unwrap().seq;
        seen.extend(page);
    }
    let seqs: Vec<u64> = seen.iter().map(|entry| entry.seq).collect();
    assert_eq!(seqs, (1..=50).collect::<Vec<u64>>());
    for (entry, n) in seen.iter().zip(0u32..) {
        let original = message(n, "transaction", (n % 10 % 3) as u8);
        assert_eq!(entry.msg_id, original.msg_id);
        assert_eq!(entry.device_id, original.device_id);
        assert_eq!(entry.frame, original.frame);
        assert_eq!(entry.message_json, original.message_json);
        assert_eq!(entry.rx_json, original.rx_json);
        assert_eq!(entry.received_at_ms, original.received_at_ms);
        assert_eq!(entry.compacted_count, 0);
    }
    assert!(store.pending(50, 10).await.unwrap().is_empty());
    assert!(store.pending(u64::MAX, 10).await.unwrap().is_empty());
    assert_eq!(store.pending(45, 0).await.unwrap().len(), 0);
    store.close().await.unwrap();
}

#[tokio::test]
async fn mark_published_removes_only_those_and_ignores_unknown_seqs() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&db_path(&dir), quick());
    let batch = (0..6).map(|n| message(n, "transaction", 1)).collect();
    store.commit(batch).await.unwrap();
    store
        .mark_published(vec![2, 4, 4, 99, u64::MAX])
        .await
        .unwrap();
    let left: Vec<u64> = store
        .pending(0, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(left, vec![1, 3, 5, 6]);
    let stats = store.stats();
    assert_eq!(stats.published_total, 2);
    assert_eq!(stats.backlog, 4);
    store.mark_published(Vec::new()).await.unwrap();
    store.close().await.unwrap();
}

#[tokio::test]
async fn seqs_are_never_reused_after_deletes_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = open(&path, quick());
    store
        .commit((0..3).map(|n| message(n, "ack", 1)).collect())
        .await
        .unwrap();
    store.mark_published(vec![1, 2, 3]).await.unwrap();
    store.close().await.unwrap();
    let store = open(&path, quick());
    let outcome = store.commit(vec![message(10, "ack", 1)]).await.unwrap();
    assert_eq!(outcome, vec![CommitOutcome::Stored { seq: 4 }]);
    store.close().await.unwrap();
}

#[tokio::test]
async fn stats_follow_commits_and_publishing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&db_path(&dir), quick());
    let empty = store.stats();
    assert_eq!(empty.backlog, 0);
    assert_eq!(empty.bytes_used, 0);
    assert_eq!(empty.oldest_pending_ms, None);
    assert_eq!(empty.quota_bytes, StoreOptions::default().quota_bytes);
    assert_eq!(empty.quota_state, crate::store::QuotaState::Ok);

    let batch: Vec<_> = (0..4).map(|n| message(n, "transaction", 1)).collect();
    let row_bytes: u64 = batch.iter().map(row_size).sum();
    store.commit(batch.clone()).await.unwrap();
    store.commit(vec![batch[0].clone()]).await.unwrap();
    let stats = store.stats();
    assert_eq!(stats.backlog, 4);
    assert_eq!(stats.stored_total, 4);
    assert_eq!(stats.duplicates_total, 1);
    assert_eq!(stats.seen_ids, 4);
    assert_eq!(stats.bytes_used, row_bytes + 4 * SEEN_ROW_BYTES);
    assert_eq!(stats.oldest_pending_ms, Some(batch[0].received_at_ms));
    assert_eq!(stats.transactions_total, 2);
    assert!(stats.file_bytes > 0);

    store.mark_published(vec![1, 2]).await.unwrap();
    let stats = store.stats();
    assert_eq!(stats.backlog, 2);
    assert_eq!(stats.published_total, 2);
    assert_eq!(
        stats.bytes_used,
        row_size(&batch[2]) + row_size(&batch[3]) + 4 * SEEN_ROW_BYTES,
        "publishing must lower the accounted bytes"
    );
    assert_eq!(stats.oldest_pending_ms, Some(batch[2].received_at_ms));
    assert_eq!(stats.transactions_total, 3);
    store.close().await.unwrap();
}

#[tokio::test]
async fn only_groups_of_publish_marks_skip_the_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&db_path(&dir), StoreOptions::default());
    store
        .commit((0..4).map(|n| message(n, "transaction", 1)).collect())
        .await
        .unwrap();
    assert_eq!(
        store.stats().unsynced_transactions_total,
        0,
        "acked messages are fsynced"
    );
    store.mark_published(vec![1, 2]).await.unwrap();
    assert_eq!(
        store.stats().unsynced_transactions_total,
        1,
        "marks alone are not"
    );
    // After a group of marks, the next messages are fsynced again (and with
    // them the marks' frames of the WAL).
    store
        .commit(vec![message(9, "transaction", 1)])
        .await
        .unwrap();
    store.set_meta("k", "v").await.unwrap();
    let stats = store.stats();
    assert_eq!(stats.transactions_total, 4);
    assert_eq!(stats.unsynced_transactions_total, 1);
    store.close().await.unwrap();

    // What the marks did is on disk once the file is reopened.
    let store = open(&db_path(&dir), StoreOptions::default());
    assert_eq!(store.stats().backlog, 3);
    store.close().await.unwrap();
}

#[tokio::test]
async fn published_ids_beyond_seen_max_are_forgotten_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        seen_max: 5,
        ..quick()
    };
    let store = open(&db_path(&dir), options);
    let batch: Vec<_> = (0..10).map(|n| message(n, "transaction", 1)).collect();
    store.commit(batch.clone()).await.unwrap();
    assert_eq!(
        store.stats().seen_ids,
        10,
        "ids in the outbox are never forgotten"
    );
    store.mark_published((1..=10).collect()).await.unwrap();
    assert_eq!(store.stats().seen_ids, 5);
    // The five oldest are forgotten: a late retry of one is stored again.
    let outcomes = store.commit(batch.clone()).await.unwrap();
    for (n, outcome) in outcomes.iter().enumerate() {
        if n < 5 {
            assert!(
                matches!(outcome, CommitOutcome::Stored { .. }),
                "{n}: {outcome:?}"
            );
        } else {
            assert_eq!(*outcome, CommitOutcome::Duplicate, "{n}");
        }
    }
    store.close().await.unwrap();
}

#[tokio::test]
async fn zero_retention_forgets_published_ids_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        seen_retention: Duration::ZERO,
        ..quick()
    };
    let store = open(&db_path(&dir), options);
    let msg = message(1, "transaction", 1);
    let keep = message(2, "transaction", 1);
    store.commit(vec![msg.clone(), keep.clone()]).await.unwrap();
    store.mark_published(vec![1]).await.unwrap();
    assert_eq!(store.stats().seen_ids, 1);
    let outcomes = store.commit(vec![msg, keep]).await.unwrap();
    assert_eq!(
        outcomes,
        vec![CommitOutcome::Stored { seq: 3 }, CommitOutcome::Duplicate]
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn close_finishes_queued_commits_and_later_requests_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    // A long delay: without close ending the group early, this would wait.
    let options = StoreOptions {
        group_commit_delay: Duration::from_secs(30),
        ..StoreOptions::default()
    };
    let store = open(&path, options);
    let other_handle = store.clone();
    let (a, b, closed) = tokio::join!(
        store.commit(vec![message(1, "transaction", 1)]),
        store.commit(vec![message(2, "receipt", 2)]),
        store.clone().close(),
    );
    assert_eq!(a.unwrap(), vec![CommitOutcome::Stored { seq: 1 }]);
    assert_eq!(b.unwrap(), vec![CommitOutcome::Stored { seq: 2 }]);
    closed.unwrap();
    assert_eq!(
        other_handle
            .commit(vec![message(3, "transaction", 1)])
            .await,
        Err(StoreError::Closed)
    );
    // Checkpointed: the WAL is empty and the rows are in the main file.
    let wal = dir.path().join("store.sqlite-wal");
    assert_eq!(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0), 0);
    drop(store);
    drop(other_handle);
    let count: u64 = raw(&path)
        .query_row("SELECT COUNT(*) FROM outbox", [], |row| row.get(0))
        .unwrap();
    assert_eq!(count, 2);
}

#[tokio::test]
async fn close_hands_the_space_of_a_drained_backlog_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let options = StoreOptions {
        seen_retention: Duration::ZERO,
        ..quick()
    };
    let store = open(&path, options.clone());
    for chunk in 0..20u32 {
        let batch = (0..100)
            .map(|n| message(chunk * 100 + n, "transaction", 1))
            .collect();
        store.commit(batch).await.unwrap();
    }
    store.close().await.unwrap();
    let full_size = std::fs::metadata(&path).unwrap().len();

    let store = open(&path, options);
    store.mark_published((1..=2000).collect()).await.unwrap();
    assert_eq!(store.stats().backlog, 0);
    store.close().await.unwrap();
    let drained_size = std::fs::metadata(&path).unwrap().len();
    assert!(
        drained_size < full_size / 4,
        "file should shrink after draining: {full_size} -> {drained_size} bytes"
    );
}

#[tokio::test]
async fn pending_by_type_counts_the_whole_backlog_with_the_type_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&db_path(&dir), quick());
    let mut batch: Vec<_> = (0..30).map(|n| message(n, "transaction", 1)).collect();
    batch.extend((100..107).map(|n| message(n, "heartbeat", 2)));
    store.commit(batch).await.unwrap();
    let counts = store.pending_by_type().await.unwrap();
    assert_eq!(counts.get("transaction"), Some(&30));
    assert_eq!(counts.get("heartbeat"), Some(&7));
    assert_eq!(counts.len(), 2);
    // Published messages no longer count.
    store.mark_published(vec![1, 2, 3]).await.unwrap();
    let counts = store.pending_by_type().await.unwrap();
    assert_eq!(counts.get("transaction"), Some(&27));
    // SQLite answers from the index, not by reading every row.
    let plan: String = raw(&db_path(&dir))
        .query_row(
            "EXPLAIN QUERY PLAN SELECT message_type, COUNT(*) FROM outbox GROUP BY message_type",
            [],
            |row| row.get(3),
        )
        .unwrap();
    assert!(plan.contains("outbox_by_type"), "{plan}");
    store.close().await.unwrap();
}

#[tokio::test]
async fn rows_just_committed_reach_the_uplink_from_memory_and_the_rest_from_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = open(&path, quick());
    // Before this open's first commit: on disk only.
    store
        .commit(vec![message(1, "transaction", 1)])
        .await
        .unwrap();
    store.close().await.unwrap();

    let store = open(&path, quick());
    let batch: Vec<_> = (2..=4).map(|n| message(n, "transaction", 1)).collect();
    let payloads = (2..=4)
        .map(|n| Some(bytes::Bytes::from(format!("payload {n}"))))
        .collect();
    store
        .start_commit_with_payloads(batch, payloads)
        .await
        .unwrap();

    let from_disk = store.pending_publishable(0, 10).await.unwrap();
    let seqs: Vec<u64> = from_disk.iter().map(|p| p.entry.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4], "the row from before the open is there");
    assert!(from_disk.iter().all(|p| p.up.is_none()), "read from SQLite");

    let from_memory = store.pending_publishable(1, 2).await.unwrap();
    let ups: Vec<_> = from_memory.iter().map(|p| p.up.clone()).collect();
    assert_eq!(
        ups,
        [Some("payload 2".into()), Some("payload 3".into())],
        "the payloads built at ingest, within the limit"
    );
    assert_eq!(
        from_memory[0].entry.msg_id,
        message(2, "transaction", 1).msg_id
    );

    // Published rows are deleted in runs, and the rest still come back.
    store.mark_published(vec![3, 1, 2]).await.unwrap();
    let left = store.pending(0, 10).await.unwrap();
    assert_eq!(left.iter().map(|e| e.seq).collect::<Vec<_>>(), [4]);
    let stats = store.stats();
    assert_eq!((stats.backlog, stats.published_total), (1, 3));
    store.close().await.unwrap();
}
