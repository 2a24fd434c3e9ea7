//! The durable store: every verified message lands here before anything is
//! acknowledged over the radio, and leaves only when the MQTT broker has
//! acknowledged it (PUBACK).
//!
//! INTERFACE SKETCH (agreed between ingest, store and uplink; the store
//! implementation fills in the bodies and may add to it).

use serde::{Deserialize, Serialize};

/// A verified message ready to be kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    /// Seed message id (truncated hash of the signed content): the end-to-end
    /// de-duplication key.
    pub msg_id: [u8; 16],
    /// The sender's 32-byte ed25519 public key (its device id).
    pub device_id: [u8; 32],
    /// `heartbeat`, `transaction`, `ledger_sync`, `ack`, `nack`, `receipt`.
    pub message_type: String,
    /// The raw signed frame as heard.
    pub frame: Vec<u8>,
    /// The JSON form of the message (spec field names).
    pub message_json: String,
    /// Reception metadata as JSON (`radio_bridge::link::RxMeta`).
    pub rx_json: String,
    /// Wall-clock reception time, ms since the Unix epoch.
    pub received_at_ms: u64,
}

/// What happened to one message of a committed batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Newly stored and durable (fsynced) under this outbox sequence number.
    Stored { seq: u64 },
    /// Already stored earlier (same msg_id): nothing written. Safe to ack again.
    Duplicate,
    /// Not stored: the quota is exhausted by data that must not be dropped.
    /// Do NOT ack over the radio; the device keeps the message and retries.
    Refused,
}

/// A stored message waiting for (or being) published.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    /// Monotonic sequence number; publishing in `seq` order keeps per-device order.
    pub seq: u64,
    pub msg_id: [u8; 16],
    pub device_id: [u8; 32],
    pub message_type: String,
    pub frame: Vec<u8>,
    pub message_json: String,
    pub rx_json: String,
    pub received_at_ms: u64,
}

/// How close the store is to its quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuotaState {
    /// Plenty of room.
    Ok,
    /// Near the quota: heartbeats are being compacted.
    Compacting,
    /// Only data that must not be dropped is left and the quota is reached:
    /// new transactions/ledger-sync messages are refused (not acked).
    Full,
}

/// Numbers for the status page, `/metrics` and the MQTT state message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreStats {
    /// Messages stored but not yet acknowledged by the broker.
    pub backlog: u64,
    /// Reception time of the oldest unpublished message (ms since epoch).
    pub oldest_pending_ms: Option<u64>,
    pub bytes_used: u64,
    pub quota_bytes: u64,
    pub quota_state: QuotaState,
    pub stored_total: u64,
    pub duplicates_total: u64,
    pub refused_total: u64,
    pub published_total: u64,
    pub heartbeats_compacted_total: u64,
}
