//! An in-memory [`Outbox`] for uplink tests and benchmarks: the store's
//! contract (ascending seqs, idempotent marks) without SQLite, plus knobs to
//! make marking fail and a way to await "everything published".

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use radio_bridge::link::RxMeta;
use seed_gateway::store::OutboxEntry;
use seed_gateway::uplink::{Outbox, OutboxError};
use tokio::sync::Notify;

#[derive(Clone, Default)]
pub struct MemoryOutbox {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    state: Mutex<State>,
    /// Fires whenever rows are marked.
    marked: Notify,
}

#[derive(Default)]
struct State {
    next_seq: u64,
    pending: BTreeMap<u64, OutboxEntry>,
    marked_total: u64,
    mark_calls: u64,
    /// While true, `mark_published` fails (a store that cannot write).
    fail_marks: bool,
}

impl MemoryOutbox {
    pub fn new() -> MemoryOutbox {
        MemoryOutbox::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().expect("outbox lock")
    }

    /// Stores one entry under the next seq (the entry's own `seq` is
    /// replaced) and returns it.
    pub fn push(&self, mut entry: OutboxEntry) -> u64 {
        let mut state = self.state();
        state.next_seq += 1;
        entry.seq = state.next_seq;
        let seq = entry.seq;
        state.pending.insert(seq, entry);
        seq
    }

    /// Stores `count` test messages from `devices` devices, round robin;
    /// returns their msg_ids in seq order.
    pub fn push_many(&self, start: u32, count: u32, devices: u8) -> Vec<[u8; 16]> {
        (start..start + count)
            .map(|n| {
                let entry = test_entry((n % u32::from(devices.max(1))) as u8, n);
                let id = entry.msg_id;
                self.push(entry);
                id
            })
            .collect()
    }

    /// Rows not yet marked published.
    pub fn unpublished(&self) -> usize {
        self.state().pending.len()
    }

    pub fn marked_total(&self) -> u64 {
        self.state().marked_total
    }

    pub fn mark_calls(&self) -> u64 {
        self.state().mark_calls
    }

    pub fn set_fail_marks(&self, fail: bool) {
        self.state().fail_marks = fail;
    }

    /// Waits until every row is marked published; panics after `timeout`
    /// saying how many are left.
    pub async fn wait_drained(&self, timeout: Duration) {
        let wait = async {
            loop {
                let marked = self.inner.marked.notified();
                if self.unpublished() == 0 {
                    return;
                }
                marked.await;
            }
        };
        if tokio::time::timeout(timeout, wait).await.is_err() {
            panic!(
                "outbox not drained within {timeout:?}: {} row(s) still unpublished",
                self.unpublished()
            );
        }
    }

    /// Waits until at least `n` rows were marked in total.
    pub async fn wait_marked(&self, n: u64, timeout: Duration) {
        let wait = async {
            loop {
                let marked = self.inner.marked.notified();
                if self.marked_total() >= n {
                    return;
                }
                marked.await;
            }
        };
        if tokio::time::timeout(timeout, wait).await.is_err() {
            panic!(
                "expected {n} rows marked within {timeout:?}, got {}",
                self.marked_total()
            );
        }
    }
}

impl Outbox for MemoryOutbox {
    async fn pending(&self, after_seq: u64, limit: usize) -> Result<Vec<OutboxEntry>, OutboxError> {
        let state = self.state();
        Ok(state
            .pending
            .range(after_seq.saturating_add(1)..)
            .take(limit)
            .map(|(_, e)| e.clone())
            .collect())
    }

    async fn mark_published(&self, seqs: Vec<u64>) -> Result<(), OutboxError> {
        {
            let mut state = self.state();
            state.mark_calls += 1;
            if state.fail_marks {
                return Err(OutboxError::new("test store refuses to write"));
            }
            for seq in seqs {
                if state.pending.remove(&seq).is_some() {
                    state.marked_total += 1;
                }
            }
        }
        self.inner.marked.notify_waiters();
        Ok(())
    }

    fn backlog(&self) -> u64 {
        self.state().pending.len() as u64
    }
}

/// A plausible stored heartbeat: device `device`, message number `n`
/// (both recoverable from the msg_id: byte 0 is the device, bytes 1..5 `n`).
pub fn test_entry(device: u8, n: u32) -> OutboxEntry {
    let mut msg_id = [0u8; 16];
    msg_id[0] = device;
    msg_id[1..5].copy_from_slice(&n.to_be_bytes());
    let mut device_id = [0u8; 32];
    device_id[0] = device;
    device_id[31] = 0xd0;
    let meta = RxMeta {
        link: "sim0".to_string(),
        rssi: Some(-90.0),
        snr: Some(7.5),
        freq_hz: Some(869_525_000),
        sf: Some(9),
        bandwidth_hz: Some(125_000),
        received_at_ms: 1_700_000_000_000 + u64::from(n),
        via: None,
    };
    OutboxEntry {
        seq: 0,
        msg_id,
        device_id,
        message_type: "heartbeat".to_string(),
        frame: (0..64u8).map(|b| b ^ device).collect(),
        message_json: format!(
            r#"{{"msg_type":"heartbeat","counter":{n},"battery_pct":80,"peers":[]}}"#
        ),
        rx_json: serde_json::to_string(&meta).expect("rx meta serializes"),
        received_at_ms: meta.received_at_ms,
        compacted_count: 0,
    }
}

/// Device and message number from a msg_id made by [`test_entry`].
pub fn decode_test_msg_id(msg_id: &[u8]) -> Option<(u8, u32)> {
    if msg_id.len() != 16 {
        return None;
    }
    let n = u32::from_be_bytes(msg_id[1..5].try_into().ok()?);
    Some((msg_id[0], n))
}
