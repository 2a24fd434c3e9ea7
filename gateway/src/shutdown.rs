//! The shutdown signal shared by every task.
//!
//! One `CancellationToken` is cancelled on SIGTERM or SIGINT. Each task
//! watches it and winds down in its own way: links stop taking frames,
//! ingest finishes the commit in flight, the uplink waits (bounded) for
//! outstanding PUBACKs and publishes `offline`, the store checkpoints. The
//! daemon then waits for the tasks, up to [`GRACE`], and exits. A kill -9
//! skips all of this and loses nothing acked: acks only ever follow commits.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How long tasks get to finish after the signal.
pub const GRACE: Duration = Duration::from_secs(10);

/// Cancels `token` when the process receives SIGTERM or SIGINT.
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!("cannot listen for SIGTERM: {e}");
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: shutting down"),
            _ = token.cancelled() => return,
        }
        token.cancel();
    });
}
