//! Mailbox decisions against a real SQLite store, with a clock the test
//! moves and the scheduler's request queue read directly (what the mailbox
//! asks to transmit is what matters here, not the air).

use std::sync::atomic::AtomicU64;

use radio_bridge::duty_cycle::Region;
use radio_bridge::frame::{
    Ack, Capabilities, DeviceClass, Heartbeat, Nack, PowerState, ProtocolVersion,
};
use radio_bridge::link::RxMeta;
use tokio::sync::mpsc::UnboundedReceiver;

use super::*;
use crate::neighbors::NeighborTable;
use crate::scheduler::{Scheduler, TxReport};
use crate::store::StoreOptions;

const START_MS: u64 = 1_700_000_000_000;

struct Rig {
    mailbox: Mailbox,
    store: Store,
    requests: UnboundedReceiver<TxRequest>,
    clock: Arc<AtomicU64>,
    device: Identity,
    _dir: tempfile::TempDir,
}

fn settings() -> MailboxSection {
    MailboxSection {
        ttl_s: 3600,
        max_attempts: 3,
        max_per_device: 4,
        max_total: 100,
        retry_base_ms: 1000,
        retry_max_ms: 60_000,
        sync_offer_interval_s: 600,
    }
}

fn rig(settings: MailboxSection) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("gw.db"), StoreOptions::default()).unwrap();
    rig_on(store, dir, settings)
}

fn rig_on(store: Store, dir: tempfile::TempDir, settings: MailboxSection) -> Rig {
    let gateway = Identity::from_seed([7; 32]);
    let state = Arc::new(GatewayState::new(gateway.id_hex(), NeighborTable::new()));
    let (_scheduler, handle, requests) = Scheduler::new(gateway.clone(), vec![], Region::Eu868);
    let clock = Arc::new(AtomicU64::new(START_MS));
    let c = clock.clone();
    let mailbox = Mailbox::with_clock(
        store.clone(),
        state,
        handle,
        gateway,
        settings,
        Arc::new(move || c.load(Ordering::SeqCst)),
    );
    Rig {
        mailbox,
        store,
        requests,
        clock,
        device: Identity::from_seed([9; 32]),
        _dir: dir,
    }
}

impl Rig {
    fn advance(&self, ms: u64) {
        self.clock.fetch_add(ms, Ordering::SeqCst);
    }

    fn device_frame(&self, message: Message) -> Frame {
        Frame::sign(
            Envelope {
                version: ProtocolVersion::CURRENT,
                device_id: self.device.device_id(),
                to: None,
                seq: None,
                message,
            },
            self.device.signing_key(),
        )
        .unwrap()
    }

    async fn heard(&self, message: Message) {
        let frame = self.device_frame(message);
        self.mailbox
            .on_heard(&frame, &RxMeta::now("r0"))
            .await
            .unwrap();
    }

    async fn heartbeat(&self) {
        self.heard(Message::Heartbeat(Heartbeat {
            device_class: DeviceClass::Handheld,
            timestamp_counter: 1,
            power_state: PowerState::Normal,
            ledger_height: 0,
            sync_capable: true,
            capabilities: Capabilities::default(),
        }))
        .await
    }

    async fn put_tx(&self, text: &str) {
        let payload = json!({
            "message_type": "transaction",
            "payload": BASE64.encode(text),
        });
        self.mailbox
            .put(self.device.device_id(), payload.to_string().as_bytes())
            .await
            .unwrap();
    }

    /// Downlink frames asked for since the last call, without reporting
    /// them on air: they stay in the scheduler's queue.
    fn queued(&mut self) -> Vec<(u64, Frame)> {
        let mut out = Vec::new();
        while let Ok(r) = self.requests.try_recv() {
            match r {
                TxRequest::Frame {
                    bytes,
                    priority,
                    tag,
                    ..
                } => {
                    assert_eq!(priority, Priority::Downlink);
                    out.push((tag, Frame::decode(&bytes).unwrap()));
                }
                other => panic!("unexpected request {other:?}"),
            }
        }
        out
    }

    /// Downlink frames asked for since the last call, each reported on air
    /// as the scheduler does once it transmitted them.
    async fn sent(&mut self) -> Vec<Frame> {
        let mut out = Vec::new();
        for (tag, frame) in self.queued() {
            self.report(tag, true).await;
            out.push(frame);
        }
        out
    }

    async fn report(&self, tag: u64, sent: bool) {
        self.mailbox
            .on_report(TxReport {
                tag,
                link: "r0".into(),
                sent,
            })
            .await
            .unwrap();
    }

    async fn receipts(&self) -> Vec<Value> {
        self.store
            .pending(0, 1000)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.message_type == GATEWAY_RECEIPT)
            .map(|e| serde_json::from_str(&e.message_json).unwrap())
            .collect()
    }

    async fn statuses(&self) -> Vec<String> {
        self.receipts()
            .await
            .iter()
            .map(|r| r["status"].as_str().unwrap().to_string())
            .collect()
    }
}

fn ack(ids: &[&Frame]) -> Message {
    Message::Ack(Ack {
        acked: ids.iter().map(|f| f.msg_id).collect(),
        timestamp_counter: None,
    })
}

#[tokio::test]
async fn held_until_heard_then_delivered_on_ack() {
    let mut r = rig(settings());
    r.put_tx("one").await;
    r.put_tx("two").await;
    assert!(
        r.sent().await.is_empty(),
        "nothing goes out before the device is heard"
    );
    r.heartbeat().await;
    let sent = r.sent().await;
    assert_eq!(sent.len(), 2);
    assert_eq!(
        sent.iter().map(|f| f.envelope.seq).collect::<Vec<_>>(),
        vec![Some(1), Some(2)],
        "in order, consecutive sequence numbers"
    );
    for f in &sent {
        assert_eq!(f.envelope.to, Some(r.device.device_id()));
        assert_eq!(f.envelope.device_id, r.mailbox.inner.identity.device_id());
    }
    r.heard(ack(&[&sent[0]])).await;
    assert_eq!(r.statuses().await, vec!["delivered"]);
    let receipt = &r.receipts().await[0];
    assert_eq!(receipt["msg_id"], hex::encode(sent[0].msg_id));
    assert_eq!(receipt["seq"], 1);
    assert_eq!(receipt["attempts"], 1);
    assert_eq!(
        receipt["request_id"],
        hex::encode(request_id(
            &r.device.device_id(),
            json!({"message_type": "transaction", "payload": BASE64.encode("one")})
                .to_string()
                .as_bytes()
        ))
    );
    assert_eq!(
        r.store
            .mailbox_for(r.device.device_id())
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn retries_wait_for_backoff_and_end_in_failed() {
    let mut r = rig(settings());
    r.put_tx("x").await;
    r.heartbeat().await;
    assert_eq!(r.sent().await.len(), 1, "attempt 1");
    r.advance(999);
    r.heartbeat().await;
    assert!(r.sent().await.is_empty(), "within the first backoff (1 s)");
    r.advance(1);
    r.heartbeat().await;
    assert_eq!(r.sent().await.len(), 1, "attempt 2 after 1 s");
    r.advance(1999);
    r.heartbeat().await;
    assert!(r.sent().await.is_empty(), "backoff doubled to 2 s");
    r.advance(1);
    r.heartbeat().await;
    assert_eq!(r.sent().await.len(), 1, "attempt 3");
    r.advance(4000);
    r.heartbeat().await;
    assert!(r.sent().await.is_empty());
    assert_eq!(r.statuses().await, vec!["failed"]);
    assert_eq!(r.receipts().await[0]["attempts"], 3);
    assert!(r
        .store
        .mailbox_for(r.device.device_id())
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn nack_redelivers_exactly_what_it_names() {
    let mut r = rig(settings());
    for t in ["a", "b", "c"] {
        r.put_tx(t).await;
    }
    r.heartbeat().await;
    let first = r.sent().await;
    assert_eq!(first.len(), 3);
    r.advance(10);
    r.heard(Message::Nack(Nack {
        missing_ids: vec![],
        missing_ranges: vec![(2, 2)],
        timestamp_counter: None,
    }))
    .await;
    let again = r.sent().await;
    assert_eq!(again.len(), 1, "only the named one, though not due");
    assert_eq!(again[0].envelope.seq, Some(2));
    assert_eq!(again[0].bytes, first[1].bytes, "the same frame again");
    r.heard(Message::Nack(Nack {
        missing_ids: vec![first[2].msg_id],
        missing_ranges: vec![],
        timestamp_counter: None,
    }))
    .await;
    let again = r.sent().await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].envelope.seq, Some(3));
    assert_eq!(
        r.mailbox
            .counters()
            .nack_redeliveries
            .load(Ordering::Relaxed),
        2
    );
}

#[tokio::test]
async fn overdue_downlinks_expire_instead_of_going_out() {
    let mut s = settings();
    s.ttl_s = 60;
    let mut r = rig(s);
    r.put_tx("late").await;
    r.advance(60_000);
    r.heartbeat().await;
    assert!(r.sent().await.is_empty(), "past its time to live");
    assert_eq!(r.statuses().await, vec!["expired"]);

    // And without the device ever being heard: the periodic check.
    r.put_tx("never heard").await;
    r.advance(60_000);
    r.mailbox.expire_overdue().await.unwrap();
    assert_eq!(r.statuses().await, vec!["expired", "expired"]);
    assert_eq!(r.store.stats().mailbox_entries, 0);
}

#[tokio::test]
async fn full_mailbox_rejects_with_a_receipt_and_spends_no_sequence_number() {
    let mut r = rig(settings());
    for i in 0..5 {
        r.put_tx(&format!("m{i}")).await;
    }
    assert_eq!(r.statuses().await, vec!["rejected"]);
    let reason = r.receipts().await[0]["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.contains("mailbox full"), "{reason}");
    r.heartbeat().await;
    let seqs: Vec<_> = r.sent().await.iter().map(|f| f.envelope.seq).collect();
    assert_eq!(seqs, vec![Some(1), Some(2), Some(3), Some(4)]);
}

#[tokio::test]
async fn a_broker_redelivery_is_held_once() {
    let mut r = rig(settings());
    r.put_tx("same").await;
    r.put_tx("same").await;
    r.put_tx("other").await;
    r.heartbeat().await;
    let seqs: Vec<_> = r.sent().await.iter().map(|f| f.envelope.seq).collect();
    assert_eq!(seqs, vec![Some(1), Some(2)], "no gap from the repeat");
    assert!(r.statuses().await.is_empty());
}

#[tokio::test]
async fn the_same_payload_later_is_a_new_downlink_with_its_own_receipt() {
    let mut r = rig(settings());
    r.put_tx("ping").await;
    r.heartbeat().await;
    let first = r.sent().await;
    r.heard(ack(&[&first[0]])).await;
    r.advance(5);
    r.put_tx("ping").await;
    r.heartbeat().await;
    let second = r.sent().await;
    assert_eq!(second.len(), 1);
    r.heard(ack(&[&second[0]])).await;
    assert_eq!(r.statuses().await, vec!["delivered", "delivered"]);
}

#[tokio::test]
async fn backend_signed_frames_are_carried_unchanged_and_checked() {
    let mut r = rig(settings());
    let backend = Identity::from_seed([3; 32]);
    let signed = |to: DeviceId, payload: Vec<u8>| {
        Frame::sign(
            Envelope {
                version: ProtocolVersion::CURRENT,
                device_id: backend.device_id(),
                to: Some(to),
                seq: Some(41),
                message: Message::Transaction(radio_bridge::frame::Transaction {
                    payload,
                    timestamp_counter: None,
                }),
            },
            backend.signing_key(),
        )
        .unwrap()
    };
    let device = r.device.device_id();
    let good = signed(device, b"from the backend".to_vec());
    let body = json!({ "frame": BASE64.encode(&good.bytes) }).to_string();
    r.mailbox.put(device, body.as_bytes()).await.unwrap();
    // The JSON form with its signature is the same frame.
    let as_json = radio_bridge::frame::json::to_json(&signed(device, b"json form".to_vec()));
    r.mailbox
        .put(device, as_json.to_string().as_bytes())
        .await
        .unwrap();
    let elsewhere = signed([1; 32], b"not for this device".to_vec());
    let body = json!({ "frame": BASE64.encode(&elsewhere.bytes) }).to_string();
    r.mailbox.put(device, body.as_bytes()).await.unwrap();
    let huge = json!({
        "message_type": "transaction",
        "payload": BASE64.encode(vec![b'x'; 300]),
    });
    r.mailbox
        .put(device, huge.to_string().as_bytes())
        .await
        .unwrap();
    r.mailbox.put(device, b"not json").await.unwrap();
    let statuses = r.statuses().await;
    assert_eq!(statuses, vec!["rejected", "rejected", "rejected"]);
    let reasons: Vec<String> = r
        .receipts()
        .await
        .iter()
        .map(|v| v["reason"].as_str().unwrap().to_string())
        .collect();
    assert!(reasons[0].contains("addressed to"), "{reasons:?}");
    assert!(reasons[1].contains("one LoRa packet"), "{reasons:?}");
    assert!(reasons[2].contains("not JSON"), "{reasons:?}");
    r.heartbeat().await;
    let sent = r.sent().await;
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].bytes, good.bytes, "carried byte for byte");
    assert_eq!(sent[1].envelope.device_id, backend.device_id());
}

#[tokio::test]
async fn decided_but_unreported_outcomes_are_reported_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.db");
    let mut s = settings();
    s.ttl_s = 1;
    {
        let r = rig_on(
            Store::open(&path, StoreOptions::default()).unwrap(),
            tempfile::tempdir().unwrap(),
            s.clone(),
        );
        r.put_tx("lost receipt").await;
        // As if the process died right after marking it expired.
        let marked = r.store.mailbox_expire(START_MS + 10_000).await.unwrap();
        assert_eq!(marked.len(), 1);
        r.store.clone().close().await.unwrap();
    }
    let r = rig_on(Store::open(&path, StoreOptions::default()).unwrap(), dir, s);
    r.mailbox.recover().await.unwrap();
    assert_eq!(r.statuses().await, vec!["expired"]);
    assert_eq!(r.store.stats().mailbox_entries, 0);
    // Recovering again finds nothing and writes nothing twice.
    r.mailbox.recover().await.unwrap();
    assert_eq!(r.statuses().await.len(), 1);
}

#[tokio::test]
async fn at_most_a_window_of_downlinks_per_hearing() {
    let mut s = settings();
    s.max_per_device = 20;
    let mut r = rig(s);
    for i in 0..(DOWNLINKS_PER_WINDOW + 3) {
        r.put_tx(&format!("n{i}")).await;
    }
    r.heartbeat().await;
    let first = r.sent().await;
    assert_eq!(first.len(), DOWNLINKS_PER_WINDOW);
    // The device's ack is a transmission too: the rest follow it.
    let refs: Vec<&Frame> = first.iter().collect();
    r.heard(ack(&refs)).await;
    let rest = r.sent().await;
    assert_eq!(rest.len(), 3);
    assert_eq!(rest[0].envelope.seq, Some(DOWNLINKS_PER_WINDOW as u64 + 1));
}

#[tokio::test]
async fn a_queued_downlink_is_not_queued_again_and_counts_once_on_air() {
    let mut r = rig(settings());
    r.put_tx("slow air").await;
    r.heartbeat().await;
    let queued = r.queued();
    assert_eq!(queued.len(), 1);
    let tag = queued[0].0;
    // Heard again long after: the frame still waits for the air (duty
    // cycle), so no copy is queued.
    r.advance(600_000);
    r.heartbeat().await;
    assert!(r.queued().is_empty(), "in flight: not queued again");
    // The scheduler could not send it: not an attempt, and free to retry.
    r.report(tag, false).await;
    let entry = &r.store.mailbox_for(r.device.device_id()).await.unwrap()[0];
    assert_eq!(entry.attempts, 0);
    r.heartbeat().await;
    let again = r.queued();
    assert_eq!(again.len(), 1);
    r.report(again[0].0, true).await;
    let entry = &r.store.mailbox_for(r.device.device_id()).await.unwrap()[0];
    assert_eq!(entry.attempts, 1);
    assert_eq!(
        r.mailbox.counters().transmissions.load(Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn heard_every_minute_a_lost_downlink_gets_five_tries_in_five_minutes() {
    // The default timings, a device heard once a minute that never gets
    // (or never acks) the message: when do the attempts happen?
    let mut r = rig(MailboxSection {
        max_attempts: 100,
        ..MailboxSection::default()
    });
    r.put_tx("are you there").await;
    let mut attempts_at_minute = Vec::new();
    for minute in 0..25 {
        r.heartbeat().await;
        if !r.sent().await.is_empty() {
            attempts_at_minute.push(minute);
        }
        r.advance(60_000);
    }
    assert_eq!(attempts_at_minute, vec![0, 1, 2, 3, 5, 8, 14, 24]);
}

#[test]
fn retry_wait_doubles_up_to_the_cap() {
    let s = settings();
    let waits: Vec<u64> = (1..=8).map(|a| retry_wait(&s, a)).collect();
    assert_eq!(
        waits,
        vec![1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000]
    );
    assert_eq!(retry_wait(&s, u32::MAX), 60_000);
}

#[test]
fn observer_queues_work_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("gw.db"), StoreOptions::default()).unwrap();
    let r = rig_on(store, dir, settings());
    let frame = r.device_frame(Message::Ack(Ack {
        acked: vec![],
        timestamp_counter: None,
    }));
    r.mailbox.heard(&frame, &RxMeta::now("r0"));
    let queued = r
        .mailbox
        .inner
        .work_rx
        .lock()
        .unwrap()
        .as_mut()
        .unwrap()
        .try_recv();
    assert!(queued.is_ok());
}

/// Downlinks shared with neighbours (docs/peering.md §7): this rig is the
/// accepting gateway, or the neighbour holding a copy.
mod shared_with_neighbours {
    use super::*;
    use crate::peering::wire::Mail;

    const NEIGHBOUR: [u8; 32] = [0x4e; 32];

    /// The one pending downlink of the rig's device.
    async fn only_entry(r: &Rig) -> MailboxEntry {
        let held = r.store.mailbox_for(r.device.device_id()).await.unwrap();
        assert_eq!(held.len(), 1, "{held:?}");
        held[0].clone()
    }

    async fn neighbour_took(r: &Rig, entry: &MailboxEntry) {
        r.store
            .peer_mail_taken(NEIGHBOUR, vec![entry.down_msg_id])
            .await
            .unwrap();
    }

    async fn to_withdraw(r: &Rig) -> Vec<[u8; 16]> {
        r.store.peer_mail_to_withdraw(NEIGHBOUR, 10).await.unwrap()
    }

    async fn neighbour_delivered(r: &Rig, entry: &MailboxEntry, attempts: u32) {
        let (done, answer) = tokio::sync::oneshot::channel();
        r.mailbox
            .on_delivered_by_peer(peers::PeerDelivery {
                request_id: entry.down_msg_id,
                device_id: entry.device_id,
                by: NEIGHBOUR,
                attempts,
                done,
            })
            .await;
        answer.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_neighbours_delivery_gets_the_one_receipt_and_withdraws_every_copy() {
        let r = rig(settings());
        r.put_tx("for a walker").await;
        let entry = only_entry(&r).await;
        neighbour_took(&r, &entry).await;
        assert!(to_withdraw(&r).await.is_empty());

        neighbour_delivered(&r, &entry, 2).await;
        let receipts = r.receipts().await;
        assert_eq!(receipts.len(), 1, "{receipts:?}");
        assert_eq!(receipts[0]["status"], "delivered");
        assert_eq!(receipts[0]["delivered_by"], hex::encode(NEIGHBOUR));
        assert_eq!(receipts[0]["attempts"], 2);
        assert_eq!(receipts[0]["request_id"], hex::encode(entry.down_msg_id));
        assert_eq!(receipts[0]["seq"], 1);
        assert_eq!(r.store.stats().mailbox_entries, 0);
        assert_eq!(to_withdraw(&r).await, vec![entry.down_msg_id]);

        // The same word again (a note resent after a dropped link), or the
        // race of two deliveries: still one receipt.
        neighbour_delivered(&r, &entry, 3).await;
        assert_eq!(r.receipts().await.len(), 1);

        r.store
            .peer_mail_withdrawn(NEIGHBOUR, vec![entry.down_msg_id])
            .await
            .unwrap();
        assert!(to_withdraw(&r).await.is_empty());
        assert_eq!(r.store.peer_mail_counts().await.unwrap().len(), 0);
    }

    #[tokio::test]
    async fn expiry_is_decided_by_the_accepting_gateway_and_withdraws_every_copy() {
        let r = rig(settings());
        r.put_tx("too late").await;
        let entry = only_entry(&r).await;
        neighbour_took(&r, &entry).await;
        r.advance(3_600_000);
        r.mailbox.expire_overdue().await.unwrap();
        assert_eq!(r.statuses().await, vec!["expired"]);
        assert_eq!(to_withdraw(&r).await, vec![entry.down_msg_id]);
        // The neighbour's delivery arriving after the expiry changes nothing.
        neighbour_delivered(&r, &entry, 1).await;
        assert_eq!(r.statuses().await, vec!["expired"]);
    }

    #[tokio::test]
    async fn an_offer_taken_after_the_downlink_finished_is_withdrawn_at_once() {
        let r = rig(settings());
        r.put_tx("short-lived").await;
        let entry = only_entry(&r).await;
        r.advance(3_600_000);
        r.mailbox.expire_overdue().await.unwrap();
        neighbour_took(&r, &entry).await;
        assert_eq!(to_withdraw(&r).await, vec![entry.down_msg_id]);
    }

    /// A copy of `r`'s one downlink, as a neighbour would be offered it.
    async fn copy_of(r: &Rig) -> NewMail {
        Mail::from_entry(&only_entry(r).await)
            .to_new_mail()
            .unwrap()
    }

    #[tokio::test]
    async fn a_neighbours_copy_is_delivered_without_a_receipt_and_noted_until_withdrawn() {
        let accepting = rig(settings());
        accepting.put_tx("hello from the market").await;
        let copy = copy_of(&accepting).await;
        let mut r = rig(settings());
        assert_eq!(
            r.store
                .peer_mail_take(NEIGHBOUR, vec![copy.clone(), copy.clone()])
                .await
                .unwrap(),
            (vec![true, true], 1),
            "taken, and taken again (already held)"
        );
        assert!(
            r.store
                .peer_mail_to_offer(NEIGHBOUR, 10)
                .await
                .unwrap()
                .is_empty(),
            "a copy is never offered on"
        );
        r.heartbeat().await;
        let sent = r.sent().await;
        assert_eq!(sent.len(), 1, "the copy goes out like our own downlinks");
        r.heard(ack(&[&sent[0]])).await;
        assert!(r.receipts().await.is_empty(), "no receipt of our own");
        let notes = r.store.peer_mail_delivered(NEIGHBOUR).await.unwrap();
        assert_eq!(notes.len(), 1);
        assert_eq!(notes[0].down_msg_id, copy.down_msg_id);
        assert_eq!(notes[0].attempts, 1);
        // The note survives a restart's recovery.
        r.mailbox.recover().await.unwrap();
        assert!(r.receipts().await.is_empty());
        assert_eq!(
            r.store.peer_mail_delivered(NEIGHBOUR).await.unwrap().len(),
            1
        );

        assert_eq!(
            r.store
                .peer_mail_withdraw([0x11; 32], vec![copy.down_msg_id])
                .await
                .unwrap(),
            (0, 0),
            "only the accepting gateway can withdraw its downlink"
        );
        assert_eq!(
            r.store
                .peer_mail_withdraw(NEIGHBOUR, vec![copy.down_msg_id])
                .await
                .unwrap(),
            (0, 1)
        );
        assert_eq!(r.store.stats().mailbox_entries, 0);
    }

    #[tokio::test]
    async fn a_neighbours_copy_past_its_time_is_dropped_silently() {
        let accepting = rig(settings());
        accepting.put_tx("soon stale").await;
        let copy = copy_of(&accepting).await;
        let mut r = rig(settings());
        r.store
            .peer_mail_take(NEIGHBOUR, vec![copy.clone()])
            .await
            .unwrap();
        r.advance(3_600_000);
        r.heartbeat().await;
        assert!(r.sent().await.is_empty(), "nothing sent past its time");
        assert!(
            r.receipts().await.is_empty(),
            "the neighbour decides expiry"
        );
        assert_eq!(r.store.stats().mailbox_entries, 0);
        assert_eq!(
            r.store
                .peer_mail_withdraw(NEIGHBOUR, vec![copy.down_msg_id])
                .await
                .unwrap(),
            (0, 0)
        );
    }

    #[tokio::test]
    async fn a_full_mailbox_declines_copies() {
        let accepting = rig(settings());
        accepting.put_tx("one too many").await;
        let copy = copy_of(&accepting).await;
        // The daemon gives the store the configured per-device limit.
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            mailbox_max_per_device: settings().max_per_device.into(),
            ..StoreOptions::default()
        };
        let store = Store::open(&dir.path().join("gw.db"), options).unwrap();
        let r = rig_on(store, dir, settings());
        for n in 0..settings().max_per_device {
            r.put_tx(&format!("own {n}")).await;
        }
        assert_eq!(
            r.store.peer_mail_take(NEIGHBOUR, vec![copy]).await.unwrap(),
            (vec![false], 0)
        );
    }

    #[tokio::test]
    async fn copies_fill_at_most_half_the_mailbox_and_our_own_come_first() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            // Four entries of 100-byte frames (228 accounted bytes each).
            mailbox_max_total_bytes: 4 * 228,
            ..StoreOptions::default()
        };
        let store = Store::open(&dir.path().join("gw.db"), options).unwrap();
        let mail = |n: u8| NewMail {
            device_id: [n; 32],
            down_msg_id: [n; 16],
            payload_frame: vec![n; 100],
            created_at_ms: 1,
            expires_at_ms: u64::MAX / 2,
        };
        assert_eq!(
            store
                .peer_mail_take(NEIGHBOUR, vec![mail(1), mail(2), mail(3)])
                .await
                .unwrap(),
            (vec![true, true, false], 2)
        );
        for n in [4, 5] {
            assert!(matches!(
                store.mailbox_put(mail(n)).await.unwrap(),
                MailboxPutOutcome::Stored { .. }
            ));
        }
    }
}
