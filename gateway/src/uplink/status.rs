//! What the uplink tells the status page, `/metrics` and the logs.

use serde::Serialize;

/// A snapshot of the uplink, published through a `tokio::sync::watch`
/// channel ([`super::Uplink::status`]). Only the publisher task writes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UplinkStatus {
    /// Connected to the broker (CONNACK accepted, connection not lost since).
    pub connected: bool,
    /// The broker confirmed our downlink and OTA subscriptions on the
    /// current connection.
    pub downlinks_subscribed: bool,
    /// When `connected` last changed, ms since the Unix epoch.
    pub since_ms: u64,
    /// When the broker last acknowledged an outbox message, ms since epoch.
    pub last_publish_ms: Option<u64>,
    /// Why the last connection attempt failed or the last connection ended,
    /// as a sentence for a technician. Kept after reconnecting (see
    /// `last_error_ms`).
    pub last_error: Option<String>,
    pub last_error_ms: Option<u64>,
    /// `mqtt://host:port` or `mqtts://host:port`.
    pub broker: String,
    /// Outbox messages acknowledged by the broker (PUBACK), re-sends included.
    pub published_total: u64,
    /// Outbox messages sent again because the connection was lost before
    /// their PUBACK (the backend may see these twice; QoS 1 allows it).
    /// Counts re-sends within this process; after a restart the previous
    /// process's unacknowledged messages are sent again without being counted
    /// here (the store does not record attempts).
    pub republished_total: u64,
    /// Outbox messages whose stored JSON (message or reception metadata) was
    /// damaged; published anyway with the raw frame.
    pub damaged_total: u64,
    /// Downlink/OTA publishes dropped because their topic was malformed.
    pub incoming_malformed_total: u64,
    /// The uplink was stopped on purpose (the gateway is shutting down):
    /// `connected` is false because we closed the connection, not because
    /// it was lost.
    pub stopped: bool,
    /// Successful connections since start.
    pub connects_total: u64,
    /// Outbox messages sent and waiting for their PUBACK.
    pub inflight: u64,
    /// Time from a message being stored to the broker's PUBACK for it.
    pub publish_latency: PublishLatency,
}

/// A histogram of publish latencies in whole milliseconds (integers, so the
/// status stays `Eq` and sums never lose precision).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublishLatency {
    /// Bucket upper bounds, ascending; the `+Inf` bucket is implicit.
    pub bounds_ms: Vec<u64>,
    /// Observations per bucket, not cumulative; one more than `bounds_ms`.
    pub counts: Vec<u64>,
    pub sum_ms: u64,
}

impl Default for PublishLatency {
    /// From well under a second (broker on the LAN, link idle) to minutes
    /// (a backlog draining after an outage); longer goes to `+Inf`.
    fn default() -> Self {
        let bounds_ms = vec![
            50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 300_000,
        ];
        let counts = vec![0; bounds_ms.len() + 1];
        PublishLatency {
            bounds_ms,
            counts,
            sum_ms: 0,
        }
    }
}

impl PublishLatency {
    pub fn observe(&mut self, ms: u64) {
        let index = self
            .bounds_ms
            .iter()
            .position(|bound| ms <= *bound)
            .unwrap_or(self.bounds_ms.len());
        if let Some(count) = self.counts.get_mut(index) {
            *count += 1;
        }
        self.sum_ms = self.sum_ms.saturating_add(ms);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}
