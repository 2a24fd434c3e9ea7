//! The admin page's actions against a whole gateway in this process.

mod common;

use common::{admin_post, get, log_in, Rig, LINK};

/// Restarting a radio link from the admin page: the in-flight work
/// finishes, the link comes back on the same UDP port, frames are stored
/// and acked over the air again, and its totals keep counting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_a_link_from_the_admin_page_keeps_frames_flowing() {
    let mut rig = Rig::start().await;
    rig.send_and_await_ack("before restart").await;

    let session = log_in(rig.http).await;
    let page = admin_post(rig.http, &session, "/admin/restart-link", &[("link", LINK)]).await;
    assert!(
        page.text().contains(&format!("Radio {LINK} restarted")),
        "admin page after restart: {}",
        page.text()
    );

    // The new driver learns the downlink path from the forwarder's next
    // PULL_DATA, as after any reconnect; send it now instead of waiting.
    let token = rig.forwarder.pull_data().await.unwrap();
    tokio::time::timeout(common::LIMIT, rig.forwarder.wait_pull_ack(token))
        .await
        .expect("the restarted link answers PULL_DATA on the same port");
    rig.send_and_await_ack("after restart").await;

    let status = get(rig.http, "/api/v1/status", None).await.json();
    let link = status["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == LINK)
        .expect("link listed");
    assert_eq!(
        link["frames_received"], 2,
        "totals carry over the restart: {link}"
    );
    let events = status["events"].as_array().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["text"] == format!("Radio {LINK} restarted by admin")),
        "restart event in {events:?}"
    );
    let stored = rig.running.store.pending(0, 100).await.unwrap();
    let transactions = stored
        .iter()
        .filter(|e| e.message_type == "transaction")
        .count();
    assert_eq!(transactions, 2, "both transactions stored");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_an_unknown_link_says_not_found() {
    let rig = Rig::start().await;
    let session = log_in(rig.http).await;
    let page = admin_post(
        rig.http,
        &session,
        "/admin/restart-link",
        &[("link", "no-such-radio")],
    )
    .await;
    let text = page.text();
    assert!(
        text.contains("Not found: there is no radio called"),
        "{text}"
    );
    assert!(text.contains("no-such-radio"), "{text}");
    // Nothing else was disturbed.
    let status = get(rig.http, "/api/v1/status", None).await.json();
    assert!(!status["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["text"]
            .as_str()
            .unwrap_or("")
            .contains("restarted by admin")));
    rig.stop().await;
}

/// `by_type` counts the whole backlog, not only the 20 listed in `recent`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_counts_every_waiting_message_by_type() {
    let mut rig = Rig::start().await;
    for n in 0..25 {
        let frame = rig.transaction(&format!("queued {n}"));
        rig.forwarder
            .inject(&frame.bytes, -85.0, 6.0)
            .await
            .unwrap();
    }
    for seed in 0..3u8 {
        let frame = common::heartbeat(&radio_bridge::identity::Identity::from_seed(
            [seed + 100; 32],
        ));
        rig.forwarder
            .inject(&frame.bytes, -85.0, 6.0)
            .await
            .unwrap();
    }
    let deadline = tokio::time::Instant::now() + common::LIMIT;
    let queue = loop {
        let queue = get(rig.http, "/api/v1/queue", None).await.json();
        if queue["by_type"]["transaction"] == 25 && queue["by_type"]["heartbeat"] == 3 {
            break queue;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "queue never counted 25 transactions and 3 heartbeats: {queue}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(queue["recent"].as_array().unwrap().len(), 20, "{queue}");
    let counted: u64 = queue["by_type"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(counted, queue["backlog"].as_u64().unwrap(), "{queue}");
    rig.stop().await;
}

/// Ingest's reassembly counters reach the status document, its words and
/// `/metrics` of the real gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_messages_are_counted_on_the_status_page_and_metrics() {
    use radio_bridge::fragment::{fragment, sender_tag, MARKER};
    let mut rig = Rig::start().await;
    let frame = rig.transaction("a message split in three pieces");
    let pieces = fragment(&frame.bytes, sender_tag(&rig.device.device_id()), 1, 60).unwrap();
    assert!(pieces.len() >= 2);
    for piece in &pieces {
        rig.forwarder.inject(piece, -85.0, 6.0).await.unwrap();
    }
    // A piece too short to be a fragment.
    rig.forwarder
        .inject(&[MARKER, 1, 2, 3], -85.0, 6.0)
        .await
        .unwrap();

    let deadline = tokio::time::Instant::now() + common::LIMIT;
    let status = loop {
        let status = get(rig.http, "/api/v1/status", None).await.json();
        if status["fragments"]["completed"] == 1 && status["fragments"]["malformed"] == 1 {
            break status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "fragments never counted: {}",
            status["fragments"]
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(
        status["summary"]["fragments"]["text"],
        "1 broken message piece ignored."
    );
    let metrics = get(rig.http, "/metrics", None).await.text();
    assert!(
        metrics
            .lines()
            .any(|l| l == "seed_fragments_total{outcome=\"completed\"} 1"),
        "{metrics}"
    );
    rig.stop().await;
}
