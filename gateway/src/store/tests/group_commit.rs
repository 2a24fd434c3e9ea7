//! Group commit: many concurrent callers share few transactions.
//!
//! These tests assert on the transaction counter, not on time: the delay is
//! set far longer than the test could take, so a group closes only when it
//! reaches `max_batch` messages. Each test finishes as soon as the groups fill.

use std::collections::HashSet;
use std::time::Duration;

use super::{db_path, message, open};
use crate::store::{CommitOutcome, Store, StoreOptions};

async fn concurrent_single_message_commits(store: &Store, callers: u32) -> Vec<u64> {
    let tasks: Vec<_> = (0..callers)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .commit(vec![message(n, "transaction", (n % 7) as u8)])
                    .await
            })
        })
        .collect();
    let mut seqs = Vec::new();
    for task in tasks {
        match task.await.unwrap().unwrap()[..] {
            [CommitOutcome::Stored { seq }] => seqs.push(seq),
            ref other => panic!("expected one Stored, got {other:?}"),
        }
    }
    seqs
}

fn long_delay(max_batch: usize) -> StoreOptions {
    StoreOptions {
        group_commit_delay: Duration::from_secs(60),
        max_batch,
        ..StoreOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_callers_share_one_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&db_path(&dir), long_delay(64));
    let seqs = concurrent_single_message_commits(&store, 64).await;
    let distinct: HashSet<u64> = seqs.iter().copied().collect();
    assert_eq!(distinct.len(), 64, "every caller gets its own seq");
    let stats = store.stats();
    assert_eq!(stats.stored_total, 64);
    assert_eq!(
        stats.transactions_total, 1,
        "64 callers, one group, one fsync"
    );
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_batch_splits_groups() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&db_path(&dir), long_delay(16));
    concurrent_single_message_commits(&store, 64).await;
    let stats = store.stats();
    assert_eq!(stats.stored_total, 64);
    assert_eq!(stats.transactions_total, 4, "64 messages in groups of 16");
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_batch_larger_than_max_batch_is_kept_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&db_path(&dir), long_delay(4));
    let batch = (0..10).map(|n| message(n, "transaction", 1)).collect();
    let outcomes = store.commit(batch).await.unwrap();
    assert_eq!(outcomes.len(), 10);
    assert_eq!(store.stats().transactions_total, 1);
    store.close().await.unwrap();
}
