//! Origin side of the custody receipt (`docs/peering.md` §4): what we do
//! with rows a neighbour acknowledged until it reports them published.
//!
//! - On `ack` the rows move out of our outbox into `handed_over` (the
//!   store's `handover.rs`), naming the neighbour's store.
//! - On `published`, or when its `status` says it holds nothing of ours,
//!   they are deleted: its broker has them.
//! - When it comes back with another store (wiped), every row handed to
//!   the old store returns to our outbox and is offered or published
//!   again.
//! - When our own uplink is up and the neighbour has reported nothing for
//!   `custody_after_s` (the patience that made us hand rows over makes us
//!   take them back), what it still has of ours returns to our outbox and
//!   we publish it ourselves: at least once beats waiting on a neighbour
//!   that may be gone.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::wire::PeerState;
use super::Shared;
use crate::store::{Custodian, Reclaim};

const TICK: Duration = Duration::from_secs(1);

/// When each neighbour last took or published rows of ours.
pub(super) struct Progress {
    last: Mutex<Vec<Option<Instant>>>,
}

impl Progress {
    pub fn new(peers: usize) -> Progress {
        Progress {
            last: Mutex::new(vec![None; peers]),
        }
    }

    fn touch(&self, index: usize) {
        if let Some(last) = self
            .last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(index)
        {
            *last = Some(Instant::now());
        }
    }

    /// Whether the neighbour has been quiet for `patience` (a neighbour
    /// not heard of since we started starts its wait now).
    fn stalled(&self, index: usize, patience: Duration) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match last.get_mut(index) {
            Some(Some(at)) => at.elapsed() >= patience,
            Some(slot) => {
                *slot = Some(Instant::now());
                false
            }
            None => false,
        }
    }
}

/// After the neighbour's `hello`: which of its stores we hand to now, and
/// what we handed to an earlier one comes back.
pub(super) async fn on_hello(
    shared: &Shared,
    index: usize,
    store_id: Option<String>,
) -> Result<Custodian, String> {
    let peer = &shared.peers[index];
    let store_id = store_id.ok_or("protocol error: the neighbour's hello has no store_id")?;
    let custodian = Custodian {
        key: peer.key,
        store_id,
    };
    let returned = shared
        .store
        .reclaim(Reclaim::OtherStoresOf(custodian.clone()))
        .await
        .map_err(|e| format!("store: {e}"))?;
    if returned > 0 {
        let why = format!(
            "the neighbour's store was replaced (now {}): {returned} of our messages it had \
             taken and not yet published are gone there; they are back in our outbox",
            custodian.store_id
        );
        tracing::warn!(peer = %peer.name, returned, "{why}");
        reclaimed(shared, index, returned, why);
    }
    shared.progress.touch(index);
    Ok(custodian)
}

/// The neighbour acknowledged these rows (they are on its disk).
pub(super) async fn on_ack(
    shared: &Shared,
    index: usize,
    custodian: &Custodian,
    seqs: Vec<u64>,
) -> Result<u64, String> {
    shared.progress.touch(index);
    shared
        .store
        .hand_over(custodian.clone(), seqs)
        .await
        .map_err(|e| format!("store: {e}"))
}

/// The neighbour's broker acknowledged these rows.
pub(super) async fn on_published(
    shared: &Shared,
    index: usize,
    custodian: &Custodian,
    seqs: Vec<u64>,
) -> Result<(), String> {
    shared.progress.touch(index);
    shared
        .store
        .handed_over_published(custodian.clone(), Some(seqs))
        .await
        .map(|_| ())
        .map_err(|e| format!("store: {e}"))
}

/// A neighbour that holds nothing of ours has published everything we
/// handed to this store of its (it deletes a row only after its broker's
/// PUBACK, and every `ack` we acted on was sent before this status).
pub(super) async fn on_status(
    shared: &Shared,
    custodian: &Custodian,
    status: PeerState,
) -> Result<(), String> {
    if status.holding_for_you > 0 {
        return Ok(());
    }
    shared
        .store
        .handed_over_published(custodian.clone(), None)
        .await
        .map(|_| ())
        .map_err(|e| format!("store: {e}"))
}

fn reclaimed(shared: &Shared, index: usize, count: u64, why: String) {
    shared.state.update(index, |v| {
        v.reclaimed_total += count;
        v.last_reclaim = Some(why);
    });
}

/// Keeps the "handed over, not yet published" figures current and takes
/// rows back from neighbours that stall while our uplink is up.
pub(super) async fn run(shared: std::sync::Arc<Shared>, shutdown: CancellationToken) {
    reclaim_from_unlisted(&shared).await;
    let patience = Duration::from_secs(shared.settings.custody_after_s);
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Ok(counts) = shared.store.handed_over_counts().await else {
            continue;
        };
        for (index, peer) in shared.peers.iter().enumerate() {
            let unpublished = counts.get(&peer.key).copied().unwrap_or(0);
            shared
                .state
                .update(index, |v| v.handed_over_unpublished = unpublished);
            if unpublished == 0
                || !shared.uplink.is_up()
                || !shared.progress.stalled(index, patience)
            {
                continue;
            }
            match shared.store.reclaim(Reclaim::AllOf(peer.key)).await {
                Ok(0) => {}
                Ok(returned) => {
                    let why = format!(
                        "the neighbour reported nothing published for {patience:?} while \
                         our uplink is up: {returned} of our messages it had taken are back in \
                         our outbox and published by us (the backend may see some twice)"
                    );
                    tracing::warn!(peer = %peer.name, returned, "{why}");
                    reclaimed(&shared, index, returned, why);
                    shared.progress.touch(index);
                }
                Err(e) => tracing::warn!(peer = %peer.name, "taking rows back: {e}"),
            }
        }
    }
}

/// Rows handed to a gateway that is no longer a `[[peer]]` (re-paired
/// under a new key after its SD card was replaced, or removed) can never
/// be reported published: they come back to our outbox at start.
async fn reclaim_from_unlisted(shared: &Shared) {
    let Ok(counts) = shared.store.handed_over_counts().await else {
        return;
    };
    for key in counts.keys().filter(|k| shared.peer_index(k).is_none()) {
        match shared.store.reclaim(Reclaim::AllOf(*key)).await {
            Ok(returned) => tracing::warn!(
                gateway_id = %hex::encode(key),
                returned,
                "messages handed to a gateway that is no longer a listed neighbour are back in our outbox"
            ),
            Err(e) => tracing::warn!("taking rows back from an unlisted gateway: {e}"),
        }
    }
}
