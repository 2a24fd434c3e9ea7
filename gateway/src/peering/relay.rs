//! Publishes rows held for neighbours on their own topics
//! (`{prefix}/gw/{origin}/up/...`), each with a `relayed_by` field naming
//! this gateway, and drops a row only when the broker acknowledged it.
//!
//! Rows go out in the order they were taken, which per origin is the
//! origin's seq order, so per-device order holds. A few publishes are kept
//! outstanding all the time, enqueued in order on the one MQTT connection:
//! waiting for each small batch to be acknowledged before sending the next
//! left the connection idle between batches, and Nagle's algorithm with
//! delayed ACKs then cost ~40 ms a batch (86 rows/s). The uplink keeps the
//! rest of its one-off slots for the gateway's own heartbeat and receipts.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::store::CustodyRow;
use crate::uplink::payload::up_payload;
use crate::uplink::{ExtraPublisher, ExtraTopic, PublishError, Topics};

/// Relayed publishes awaiting their PUBACK at once.
const IN_FLIGHT: usize = 6;
/// Acknowledged rows are dropped from custody in groups of this size (or
/// sooner when nothing else is outstanding).
const RELEASE_BATCH: usize = 64;
/// Without a wake-up, look for held rows this often; also the pause after
/// a failed publish.
const POLL: Duration = Duration::from_secs(1);

type Acknowledged = Pin<Box<dyn Future<Output = Result<(), PublishError>> + Send>>;

pub(super) async fn run(
    shared: Arc<Shared>,
    publisher: ExtraPublisher,
    prefix: String,
    shutdown: CancellationToken,
) {
    let relayed_by = shared.identity.id_hex();
    // Taken ids above this were enqueued already.
    let mut cursor = 0u64;
    let mut outstanding: VecDeque<(CustodyRow, Acknowledged)> = VecDeque::new();
    let mut done: Vec<CustodyRow> = Vec::new();
    loop {
        if outstanding.len() < IN_FLIGHT && shared.uplink.is_up() {
            let room = IN_FLIGHT - outstanding.len();
            match shared.store.custody_pending(cursor, room).await {
                Ok(rows) => {
                    for row in rows {
                        let (topic, payload) = topic_and_payload(&row, &prefix, &relayed_by);
                        match publisher.enqueue(ExtraTopic::Exact(topic), payload).await {
                            Ok(acknowledged) => {
                                cursor = row.id;
                                outstanding.push_back((row, Box::pin(acknowledged)));
                            }
                            Err(_) => break,
                        }
                    }
                }
                Err(e) => tracing::warn!("reading rows held for neighbours: {e}"),
            }
        }
        if (outstanding.is_empty() || done.len() >= RELEASE_BATCH)
            && !release(&shared, &mut done).await
        {
            cursor = 0;
        }
        let Some((row, acknowledged)) = outstanding.front_mut() else {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = shared.relay_wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
            }
            continue;
        };
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            result = acknowledged => result,
        };
        let row = row.clone();
        outstanding.pop_front();
        if result.is_ok() {
            done.push(row);
            continue;
        }
        // Keep order: everything after a failure is sent again from the
        // first unacknowledged row (a QoS-1 duplicate at worst).
        for (_, rest) in outstanding.drain(..) {
            let _ = rest.await;
        }
        let _ = release(&shared, &mut done).await;
        cursor = 0;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

/// Drops acknowledged rows from custody and counts them per neighbour.
/// False if the store failed: the rows stay held and must be read again.
async fn release(shared: &Shared, done: &mut Vec<CustodyRow>) -> bool {
    if done.is_empty() {
        return true;
    }
    for row in done.iter() {
        if let Some(index) = shared.peer_index(&row.origin) {
            shared
                .state
                .update(index, |v| v.relayed_for_peer_total += 1);
        }
    }
    let ids = done.iter().map(|row| row.id).collect();
    match shared.store.custody_release(ids).await {
        Ok(()) => {
            // Tell each origin (docs/peering.md §4: the custody receipt).
            for row in done.drain(..) {
                if let Some(index) = shared.peer_index(&row.origin) {
                    shared.receipts.add(index, [row.entry.seq]);
                }
            }
            true
        }
        Err(e) => {
            done.clear();
            tracing::warn!("dropping relayed rows: {e}; they will be published again");
            false
        }
    }
}

/// The origin's topic for a held row and its payload with `relayed_by`.
fn topic_and_payload(row: &CustodyRow, prefix: &str, relayed_by: &str) -> (String, Vec<u8>) {
    let origin = hex::encode(row.origin);
    let entry = &row.entry;
    let topics = Topics::new(prefix, &origin).ok();
    let gateway_topic = topics
        .as_ref()
        .and_then(|t| t.gateway_topic(&entry.message_type));
    let (topic, payload) = match (topics, gateway_topic) {
        (_, Some(topic)) => (topic, entry.message_json.clone().into_bytes()),
        (topics, None) => {
            let compacted = (entry.compacted_count > 0).then_some(entry.compacted_count);
            let topic = match topics {
                Some(t) => t.up(&entry.message_type),
                None => format!("{prefix}/gw/{origin}/up/unknown"),
            };
            (topic, up_payload(entry, compacted).json)
        }
    };
    (topic, with_relayed_by(payload, relayed_by))
}

/// Adds `"relayed_by": "<gateway id>"` to a JSON object payload; anything
/// else goes out as it is.
fn with_relayed_by(mut payload: Vec<u8>, relayed_by: &str) -> Vec<u8> {
    let trimmed_end = payload.iter().rposition(|b| !b.is_ascii_whitespace());
    let is_object =
        payload.first() == Some(&b'{') && trimmed_end.is_some_and(|i| payload[i] == b'}');
    let Some(end) = trimmed_end.filter(|_| is_object) else {
        return payload;
    };
    let empty = payload[1..end].iter().all(u8::is_ascii_whitespace);
    let field = format!(
        "{}\"relayed_by\":\"{relayed_by}\"}}",
        if empty { "" } else { "," }
    );
    payload.truncate(end);
    payload.extend_from_slice(field.as_bytes());
    payload
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::OutboxEntry;

    #[test]
    fn relayed_payloads_name_the_relay_and_keep_the_rest() {
        let v: serde_json::Value =
            serde_json::from_slice(&with_relayed_by(br#"{"a":1} "#.to_vec(), "bb")).unwrap();
        assert_eq!(v, serde_json::json!({"a": 1, "relayed_by": "bb"}));
        let v: serde_json::Value =
            serde_json::from_slice(&with_relayed_by(b"{}".to_vec(), "bb")).unwrap();
        assert_eq!(v, serde_json::json!({"relayed_by": "bb"}));
        assert_eq!(with_relayed_by(b"[1]".to_vec(), "bb"), b"[1]".to_vec());
    }

    #[test]
    fn rows_go_to_the_origins_topics() {
        let row = CustodyRow {
            id: 1,
            origin: [0xaa; 32],
            entry: OutboxEntry {
                seq: 3,
                msg_id: [1; 16],
                device_id: [2; 32],
                message_type: "transaction".into(),
                frame: vec![1, 2, 3],
                message_json: "{}".into(),
                rx_json: r#"{"link":"r","received_at_ms":1}"#.into(),
                received_at_ms: 1,
                compacted_count: 0,
            },
        };
        let (topic, payload) = topic_and_payload(&row, "seed/v1", "bb");
        assert_eq!(
            topic,
            format!("seed/v1/gw/{}/up/transaction", "aa".repeat(32))
        );
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(v["relayed_by"], "bb");
        assert_eq!(v["msg_id"], "01".repeat(16));
        assert_eq!(v["rx"]["link"], "r");
    }
}
