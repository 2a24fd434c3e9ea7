//! What the publisher needs from the store, as a trait so the uplink can be
//! built and tested without SQLite (the store implements it for `Store`).

use std::future::Future;

use thiserror::Error;

use crate::store::{OutboxEntry, Publishable};

/// The durable queue the uplink drains.
///
/// Contract the publisher relies on:
/// - `pending(after_seq, limit)` returns entries not yet marked published with
///   `seq > after_seq`, in ascending `seq` order, at most `limit` of them.
/// - `mark_published(seqs)` is idempotent: marking an already-marked (or
///   compacted away) seq is not an error. Only after it returns `Ok` may the
///   rows be gone; until then they must come back from `pending`.
/// - Errors are transient from the uplink's point of view: it logs them and
///   retries, never drops the seqs.
pub trait Outbox: Clone + Send + Sync + 'static {
    fn pending(
        &self,
        after_seq: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<OutboxEntry>, OutboxError>> + Send;

    /// `pending`, with payloads already built where the outbox has them
    /// (the store's rows just committed).
    fn pending_publishable(
        &self,
        after_seq: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Publishable>, OutboxError>> + Send {
        let entries = self.pending(after_seq, limit);
        async move {
            let entries = entries.await?;
            Ok(entries.into_iter().map(Publishable::from).collect())
        }
    }

    fn mark_published(
        &self,
        seqs: Vec<u64>,
    ) -> impl Future<Output = Result<(), OutboxError>> + Send;

    /// Messages stored but not yet acknowledged by the broker (the `queue_depth`
    /// of the state message). Cheap: called on every state publish.
    fn backlog(&self) -> u64;
}

/// A store failure, carried as its source error.
#[derive(Debug, Error)]
#[error("{0}")]
pub struct OutboxError(Box<dyn std::error::Error + Send + Sync>);

impl OutboxError {
    pub fn new(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> OutboxError {
        OutboxError(source.into())
    }
}

/// The real outbox: the SQLite store.
impl Outbox for crate::store::Store {
    async fn pending(&self, after_seq: u64, limit: usize) -> Result<Vec<OutboxEntry>, OutboxError> {
        crate::store::Store::pending(self, after_seq, limit)
            .await
            .map_err(OutboxError::new)
    }

    async fn pending_publishable(
        &self,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<Publishable>, OutboxError> {
        crate::store::Store::pending_publishable(self, after_seq, limit)
            .await
            .map_err(OutboxError::new)
    }

    async fn mark_published(&self, seqs: Vec<u64>) -> Result<(), OutboxError> {
        crate::store::Store::mark_published(self, seqs)
            .await
            .map_err(OutboxError::new)
    }

    fn backlog(&self) -> u64 {
        self.stats().backlog
    }
}
