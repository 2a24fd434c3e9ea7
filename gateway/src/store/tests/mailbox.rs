//! The downlink mailbox.

use super::super::mailbox::MAILBOX_ROW_OVERHEAD_BYTES;
use super::{db_path, open, quick};
use crate::store::{
    MailboxLimit, MailboxMark, MailboxPutOutcome, MailboxState, NewMail, StoreOptions,
};

fn mail(n: u8, device: u8, expires_at_ms: u64) -> NewMail {
    NewMail {
        device_id: [device; 32],
        down_msg_id: [n; 16],
        payload_frame: vec![n; 50],
        created_at_ms: 1_000 + u64::from(n),
        expires_at_ms,
    }
}

fn stored_id(outcome: MailboxPutOutcome) -> u64 {
    match outcome {
        MailboxPutOutcome::Stored { id } => id,
        other => panic!("expected Stored, got {other:?}"),
    }
}

#[tokio::test]
async fn put_is_durable_ordered_and_deduplicated() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = open(&path, quick());
    let first = stored_id(store.mailbox_put(mail(1, 5, 10_000)).await.unwrap());
    let second = stored_id(store.mailbox_put(mail(2, 5, 10_000)).await.unwrap());
    stored_id(store.mailbox_put(mail(3, 6, 10_000)).await.unwrap());
    assert!(first < second);
    assert_eq!(
        store.mailbox_put(mail(1, 5, 10_000)).await.unwrap(),
        MailboxPutOutcome::Duplicate
    );
    store.close().await.unwrap();

    let store = open(&path, quick());
    let held = store.mailbox_for([5; 32]).await.unwrap();
    assert_eq!(
        held.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![first, second]
    );
    assert_eq!(held[0].down_msg_id, [1; 16]);
    assert_eq!(held[0].payload_frame, vec![1; 50]);
    assert_eq!(held[0].created_at_ms, 1_001);
    assert_eq!(held[0].expires_at_ms, 10_000);
    assert_eq!(held[0].state, MailboxState::Pending);
    assert_eq!(held[0].attempts, 0);
    assert_eq!(held[0].last_attempt_at_ms, None);
    assert!(store.mailbox_for([7; 32]).await.unwrap().is_empty());
    let stats = store.stats();
    assert_eq!(stats.mailbox_entries, 3);
    assert_eq!(stats.mailbox_bytes, 3 * (50 + MAILBOX_ROW_OVERHEAD_BYTES));
    store.close().await.unwrap();
}

#[tokio::test]
async fn marks_count_attempts_and_change_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&db_path(&dir), quick());
    let id = stored_id(store.mailbox_put(mail(1, 5, 10_000)).await.unwrap());
    let other = stored_id(store.mailbox_put(mail(2, 5, 10_000)).await.unwrap());
    let attempt = |at| MailboxMark {
        state: MailboxState::Pending,
        attempted_at_ms: Some(at),
    };
    assert!(store.mailbox_mark(id, attempt(2_000)).await.unwrap());
    assert!(store.mailbox_mark(id, attempt(3_000)).await.unwrap());
    let held = store.mailbox_for([5; 32]).await.unwrap();
    assert_eq!(held[0].attempts, 2);
    assert_eq!(held[0].last_attempt_at_ms, Some(3_000));

    let delivered = MailboxMark {
        state: MailboxState::Delivered,
        attempted_at_ms: None,
    };
    assert!(store.mailbox_mark(id, delivered).await.unwrap());
    let held = store.mailbox_for([5; 32]).await.unwrap();
    assert_eq!(held.iter().map(|e| e.id).collect::<Vec<_>>(), vec![other]);
    assert!(!store.mailbox_mark(999, delivered).await.unwrap());
    assert!(!store.mailbox_mark(u64::MAX, delivered).await.unwrap());
    store.close().await.unwrap();
}

#[tokio::test]
async fn expire_marks_and_returns_overdue_entries() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&db_path(&dir), quick());
    let soon = stored_id(store.mailbox_put(mail(1, 5, 5_000)).await.unwrap());
    let later = stored_id(store.mailbox_put(mail(2, 5, 9_000)).await.unwrap());
    let soon_too = stored_id(store.mailbox_put(mail(3, 6, 5_000)).await.unwrap());
    assert!(store.mailbox_expire(4_999).await.unwrap().is_empty());
    let expired = store.mailbox_expire(5_000).await.unwrap();
    assert_eq!(
        expired.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![soon, soon_too]
    );
    assert!(expired.iter().all(|e| e.state == MailboxState::Expired));
    let held = store.mailbox_for([5; 32]).await.unwrap();
    assert_eq!(held.iter().map(|e| e.id).collect::<Vec<_>>(), vec![later]);
    assert!(
        store.mailbox_expire(6_000).await.unwrap().is_empty(),
        "expired only once"
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn limits_refuse_and_removal_makes_room() {
    let dir = tempfile::tempdir().unwrap();
    let per_entry = 50 + MAILBOX_ROW_OVERHEAD_BYTES;
    let options = StoreOptions {
        mailbox_max_per_device: 2,
        mailbox_max_total_bytes: 3 * per_entry,
        ..quick()
    };
    let store = open(&db_path(&dir), options);
    let a1 = stored_id(store.mailbox_put(mail(1, 5, 10_000)).await.unwrap());
    stored_id(store.mailbox_put(mail(2, 5, 10_000)).await.unwrap());
    assert_eq!(
        store.mailbox_put(mail(3, 5, 10_000)).await.unwrap(),
        MailboxPutOutcome::Full {
            limit: MailboxLimit::PerDevice
        }
    );
    stored_id(store.mailbox_put(mail(4, 6, 10_000)).await.unwrap());
    assert_eq!(
        store.mailbox_put(mail(5, 7, 10_000)).await.unwrap(),
        MailboxPutOutcome::Full {
            limit: MailboxLimit::Total
        }
    );
    // Delivered entries still occupy space until removed.
    let delivered = MailboxMark {
        state: MailboxState::Delivered,
        attempted_at_ms: Some(2_000),
    };
    store.mailbox_mark(a1, delivered).await.unwrap();
    assert!(matches!(
        store.mailbox_put(mail(3, 5, 10_000)).await.unwrap(),
        MailboxPutOutcome::Full { .. }
    ));
    assert_eq!(
        store
            .mailbox_remove(vec![a1, 12345, u64::MAX])
            .await
            .unwrap(),
        1
    );
    stored_id(store.mailbox_put(mail(3, 5, 10_000)).await.unwrap());
    let stats = store.stats();
    assert_eq!(stats.mailbox_entries, 3);
    assert_eq!(stats.mailbox_bytes, 3 * per_entry);
    assert_eq!(
        stats.bytes_used, 0,
        "the mailbox does not count against the outbox quota"
    );
    store.close().await.unwrap();
}
