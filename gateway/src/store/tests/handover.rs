//! Rows handed to a neighbour: out of the outbox but still ours (quota,
//! de-duplication) until it reports them published; back in the outbox,
//! under new seqs, when its store was replaced or it stalled.

use super::{db_path, message, open, quick, raw};
use crate::store::{CommitOutcome, Custodian, Reclaim};

fn custodian(store_id: &str) -> Custodian {
    Custodian {
        key: [0xcc; 32],
        store_id: store_id.into(),
    }
}

#[tokio::test]
async fn handed_over_rows_stay_ours_until_published_and_come_back_from_a_replaced_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = open(&path, quick());
    let own_id = store.store_id().await.unwrap();
    assert_eq!(own_id.len(), 32, "{own_id}");
    let batch = (1..=4).map(|n| message(n, "transaction", 1)).collect();
    store.commit(batch).await.unwrap();
    let used_before = store.stats().bytes_used;

    assert_eq!(
        store
            .hand_over(custodian("s1"), vec![1, 2, 3])
            .await
            .unwrap(),
        3
    );
    let stats = store.stats();
    assert_eq!(stats.backlog, 1, "handed-over rows are not ours to publish");
    assert_eq!(
        stats.bytes_used, used_before,
        "but they still take our space"
    );
    assert_eq!(
        store
            .pending(0, 10)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect::<Vec<_>>(),
        vec![4]
    );
    assert_eq!(
        store
            .commit(vec![message(2, "transaction", 1)])
            .await
            .unwrap(),
        vec![CommitOutcome::Duplicate],
        "a device retry of a handed-over message"
    );

    // Another store's report, or another gateway's, deletes nothing.
    assert_eq!(
        store
            .handed_over_published(custodian("other"), Some(vec![1]))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .handed_over_published(custodian("s1"), Some(vec![1, 99]))
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.handed_over_counts().await.unwrap()[&[0xcc; 32]], 2);
    let used_at_close = store.stats().bytes_used;
    store.close().await.unwrap();

    // Across a restart; then the neighbour returns with a new store.
    let store = open(&path, quick());
    assert_eq!(store.store_id().await.unwrap(), own_id, "the id is kept");
    assert_eq!(
        store.stats().bytes_used,
        used_at_close,
        "handed-over rows are counted again after a restart"
    );
    assert_eq!(
        store
            .reclaim(Reclaim::OtherStoresOf(custodian("s1")))
            .await
            .unwrap(),
        0,
        "same store: nothing comes back"
    );
    assert_eq!(
        store
            .reclaim(Reclaim::OtherStoresOf(custodian("s2")))
            .await
            .unwrap(),
        2
    );
    let back: Vec<_> = store.pending(0, 10).await.unwrap();
    let seqs: Vec<u64> = back.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![4, 5, 6], "returned rows follow, under new seqs");
    assert_eq!(
        back[1].message_json,
        message(2, "transaction", 1).message_json
    );
    assert_eq!(store.stats().backlog, 3);
    assert!(store.handed_over_counts().await.unwrap().is_empty());

    // Published by us now; the old store's late report changes nothing.
    store.mark_published(vec![4, 5, 6]).await.unwrap();
    assert_eq!(
        store
            .handed_over_published(custodian("s1"), Some(vec![2, 3]))
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.stats().backlog, 0);
    // Every id followed its row (renumbered when it came back) and retired.
    let records: Vec<(u64, bool)> = raw(&path)
        .prepare("SELECT seq, retired_at_ms IS NOT NULL FROM seen ORDER BY seq")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(records, [(1, true), (4, true), (5, true), (6, true)]);
    assert_eq!(
        store
            .commit(vec![message(3, "transaction", 1)])
            .await
            .unwrap(),
        vec![CommitOutcome::Duplicate]
    );
}

#[tokio::test]
async fn all_of_a_store_is_published_or_taken_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&db_path(&dir), quick());
    let batch = (1..=6).map(|n| message(n, "transaction", 2)).collect();
    store.commit(batch).await.unwrap();
    store.hand_over(custodian("s1"), vec![1, 2]).await.unwrap();
    store.hand_over(custodian("s2"), vec![3, 4]).await.unwrap();
    assert_eq!(
        store
            .handed_over_published(custodian("s2"), None)
            .await
            .unwrap(),
        2
    );
    assert_eq!(store.reclaim(Reclaim::AllOf([0xcc; 32])).await.unwrap(), 2);
    assert_eq!(store.stats().backlog, 4);
    assert_eq!(store.stats().published_total, 2);
}
