//! Live updates over server-sent events (`/api/v1/events`).
//!
//! Each open page gets its own small task that turns the gateway's change notices into
//! SSE messages:
//!
//! - `event: status` carries the `/api/v1/status` document and `event: neighbors` the
//!   `/api/v1/neighbors` document. Both are sent on connect (so a page that reconnects after
//!   a gateway restart is complete again at once), within about a second after the gateway
//!   reports a change, and every few seconds anyway so ages like "3 min ago" stay true.
//! - `event: event` carries one [`EventView`](crate::model::EventView) as it happens.
//!
//! Change notices are coalesced: a burst of frames costs one snapshot per tick, not one per
//! frame. A page that falls behind the broadcast channel loses nothing that matters: it gets
//! a fresh full snapshot, which includes the recent events list.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header::RETRY_AFTER;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use tokio::sync::{broadcast, mpsc};
use tokio::time::{interval, Instant, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;

use crate::api::snapshot;
use crate::model::LiveEvent;
use crate::routes::AppState;

/// How often pending changes are turned into a snapshot: the page feels live, and a storm of
/// changes costs at most one snapshot per tick per open page.
const TICK: Duration = Duration::from_secs(1);
/// A snapshot is sent at least this often even when nothing was reported.
const REFRESH: Duration = Duration::from_secs(5);
/// What the browser waits before reconnecting after the gateway went away.
const RECONNECT_AFTER: Duration = Duration::from_secs(2);
/// Open streams allowed at once. Each costs a task and a snapshot every few seconds; a kiosk
/// has a handful of phones, and anything beyond this is a misbehaving client.
pub const MAX_STREAMS: usize = 32;

/// One of the [`MAX_STREAMS`] places, given back when the stream's task ends.
pub(crate) struct StreamSlot(Arc<AtomicUsize>);

impl StreamSlot {
    fn take(open: &Arc<AtomicUsize>) -> Option<StreamSlot> {
        open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < MAX_STREAMS).then_some(n + 1)
        })
        .ok()
        .map(|_| StreamSlot(Arc::clone(open)))
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

pub async fn stream(State(state): State<AppState>) -> Response {
    let Some(slot) = StreamSlot::take(&state.live_streams) else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(RETRY_AFTER, "10")],
            "Too many status pages are open. Close one and reload.\n",
        )
            .into_response();
    };
    let changes = state.view.subscribe();
    let (out, events) = mpsc::channel(8);
    tokio::spawn(async move {
        feed(state, changes, out).await;
        drop(slot);
    });
    let events = ReceiverStream::new(events).map(Ok::<_, Infallible>);
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// Runs until the page goes away, the gateway stops broadcasting, or the server shuts down.
async fn feed(
    state: AppState,
    mut changes: broadcast::Receiver<LiveEvent>,
    out: mpsc::Sender<Event>,
) {
    let hello = Event::default()
        .comment("seed-gateway live status")
        .retry(RECONNECT_AFTER);
    if out.send(hello).await.is_err() {
        return;
    }

    let mut tick = interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut dirty = true;
    let mut last_snapshot = Instant::now();

    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = out.closed() => return,
            _ = tick.tick() => {
                if dirty || last_snapshot.elapsed() >= REFRESH {
                    dirty = false;
                    last_snapshot = Instant::now();
                    if !send_snapshot(&state, &out).await {
                        return;
                    }
                }
            }
            change = changes.recv() => match change {
                Ok(LiveEvent::Changed) => dirty = true,
                Ok(LiveEvent::Event(event)) => {
                    dirty = true;
                    if !send_json(&out, "event", &event).await {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "live page fell behind; sending a full snapshot");
                    dirty = true;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

/// Sends status then neighbors; false when the page has gone.
async fn send_snapshot(state: &AppState, out: &mpsc::Sender<Event>) -> bool {
    match snapshot(state).await {
        Ok((status, neighbors)) => {
            send_json(out, "status", &status).await && send_json(out, "neighbors", &neighbors).await
        }
        // The view failed this once (already logged); the next refresh tries again.
        Err(_) => true,
    }
}

async fn send_json<T: serde::Serialize>(out: &mpsc::Sender<Event>, kind: &str, value: &T) -> bool {
    match Event::default().event(kind).json_data(value) {
        Ok(event) => out.send(event).await.is_ok(),
        Err(error) => {
            tracing::error!(%error, kind, "could not encode a live event");
            true
        }
    }
}
