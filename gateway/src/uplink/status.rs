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
    /// Successful connections since start.
    pub connects_total: u64,
    /// Outbox messages sent and waiting for their PUBACK.
    pub inflight: u64,
}
