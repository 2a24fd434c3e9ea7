//! Custodian side of the custody receipt (`docs/peering.md` §4): the
//! origin seqs of rows our broker acknowledged on a neighbour's topics,
//! waiting to be reported to that neighbour in a `published` message on
//! its link to us.
//!
//! Kept in memory only: a report lost to a restart or a dropped link costs
//! the origin nothing but space for a while, since it also deletes what it
//! handed to us when our `status` says we hold nothing of its own, and
//! publishes the rest itself once its uplink is back (a duplicate at
//! worst, which the backend drops by msg_id).

use std::sync::Mutex;

use tokio::sync::Notify;

/// Reports waiting per neighbour beyond this are dropped (see above for
/// why that is safe); about 8 MiB of seqs.
const MAX_WAITING: usize = 1 << 20;

pub(super) struct Receipts {
    /// Per neighbour (config order): seqs not yet reported.
    waiting: Mutex<Vec<Vec<u64>>>,
    ready: Vec<Notify>,
}

impl Receipts {
    pub fn new(peers: usize) -> Receipts {
        Receipts {
            waiting: Mutex::new(vec![Vec::new(); peers]),
            ready: (0..peers).map(|_| Notify::new()).collect(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u64>>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Rows of neighbour `index` that our broker acknowledged.
    pub fn add(&self, index: usize, seqs: impl IntoIterator<Item = u64>) {
        let mut waiting = self.lock();
        let Some(list) = waiting.get_mut(index) else {
            return;
        };
        list.extend(seqs);
        if list.len() > MAX_WAITING {
            let excess = list.len() - MAX_WAITING;
            list.drain(..excess);
        }
        if !list.is_empty() {
            self.ready[index].notify_one();
        }
    }

    /// Waits for reports for neighbour `index` and takes them all.
    /// Cancel-safe: nothing is taken until it returns.
    pub async fn next(&self, index: usize) -> Vec<u64> {
        let Some(ready) = self.ready.get(index) else {
            return std::future::pending().await;
        };
        loop {
            let woken = ready.notified();
            let seqs = std::mem::take(&mut self.lock()[index]);
            if !seqs.is_empty() {
                return seqs;
            }
            woken.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reports_wait_for_their_neighbour_and_are_taken_once() {
        let receipts = Receipts::new(2);
        receipts.add(1, [3, 4]);
        receipts.add(1, [5]);
        assert_eq!(receipts.next(1).await, vec![3, 4, 5]);
        let nothing =
            tokio::time::timeout(std::time::Duration::from_millis(50), receipts.next(1)).await;
        assert!(nothing.is_err(), "reports were taken twice");
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), receipts.next(0))
                .await
                .is_err(),
            "another neighbour's reports"
        );
    }
}
