//! The read-only JSON API (`/api/v1/*`) and `/healthz`.
//!
//! Each document is the gateway's snapshot plus `now_ms`, the gateway's clock, so clients
//! compute ages against the clock that stamped the data rather than their own. The same
//! documents travel over the live event stream, so the page renders one shape either way.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::model::{now_ms, Health, Neighbor, Queue, Status};
use crate::routes::{AppState, ProviderFailed};
use crate::wording::{summarize, Summary};

/// `/api/v1/status`: the status snapshot with its sentences.
#[derive(Debug, Serialize)]
pub struct StatusDocument {
    pub now_ms: u64,
    pub summary: Summary,
    #[serde(flatten)]
    pub status: Status,
}

/// `/api/v1/neighbors`: the neighbor table, most alive and most recently seen first.
#[derive(Debug, Serialize)]
pub struct NeighborsDocument {
    pub now_ms: u64,
    pub neighbors: Vec<Neighbor>,
}

/// `/api/v1/queue`.
#[derive(Debug, Serialize)]
pub struct QueueDocument {
    pub now_ms: u64,
    #[serde(flatten)]
    pub queue: Queue,
}

/// Builds both page documents from one pair of snapshots so the sentences (which count
/// neighbors) and the table never disagree.
pub(crate) fn documents(
    mut status: Status,
    mut neighbors: Vec<Neighbor>,
    now_ms: u64,
) -> (StatusDocument, NeighborsDocument) {
    status.uplink.broker = status.uplink.broker.as_deref().map(strip_credentials);
    sort_neighbors(&mut neighbors);
    let summary = summarize(&status, &neighbors, now_ms);
    (
        StatusDocument {
            now_ms,
            summary,
            status,
        },
        NeighborsDocument { now_ms, neighbors },
    )
}

/// Active before stale before gone; within each, the most recently heard first.
fn sort_neighbors(neighbors: &mut [Neighbor]) {
    neighbors.sort_by(|a, b| {
        (a.liveness as u8)
            .cmp(&(b.liveness as u8))
            .then(b.last_seen_ms.cmp(&a.last_seen_ms))
            .then(a.device_id.cmp(&b.device_id))
    });
}

/// Takes one consistent snapshot of status and neighbors.
pub(crate) async fn snapshot(
    state: &AppState,
) -> Result<(StatusDocument, NeighborsDocument), ProviderFailed> {
    let (status, neighbors) = state.ask(|view| (view.status(), view.neighbors())).await?;
    Ok(documents(status, neighbors, now_ms()))
}

pub async fn status(State(state): State<AppState>) -> Result<Json<StatusDocument>, ProviderFailed> {
    let (status, _) = snapshot(&state).await?;
    Ok(Json(status))
}

pub async fn neighbors(
    State(state): State<AppState>,
) -> Result<Json<NeighborsDocument>, ProviderFailed> {
    let mut neighbors = state.ask(|view| view.neighbors()).await?;
    sort_neighbors(&mut neighbors);
    Ok(Json(NeighborsDocument {
        now_ms: now_ms(),
        neighbors,
    }))
}

pub async fn queue(State(state): State<AppState>) -> Result<Json<QueueDocument>, ProviderFailed> {
    let queue = state.ask(|view| view.queue()).await?;
    Ok(Json(QueueDocument {
        now_ms: now_ms(),
        queue,
    }))
}

/// 200 with `{"ok":true,"reasons":[]}` when healthy, otherwise 503 with the reasons, so a
/// watchdog or a load balancer needs only the status code and a human gets the why.
pub async fn healthz(State(state): State<AppState>) -> Response {
    match state.ask(|view| view.health()).await {
        Ok(health) => {
            let code = if health.ok {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            (code, Json(health)).into_response()
        }
        Err(ProviderFailed) => {
            let health = Health {
                ok: false,
                reasons: vec!["the gateway did not answer the health check".to_string()],
            };
            (StatusCode::SERVICE_UNAVAILABLE, Json(health)).into_response()
        }
    }
}

/// Removes a `user:password@` part from a URL. The gateway should never hand one over, but a
/// leaked broker password on a page anyone on the Wi-Fi can open is bad enough to check twice.
pub fn strip_credentials(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(index) => url.split_at(index + 3),
        None => ("", url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::strip_credentials;

    #[test]
    fn credentials_are_removed_from_broker_urls() {
        assert_eq!(
            strip_credentials("mqtts://user:pw@broker.example:8883/x"),
            "mqtts://broker.example:8883/x"
        );
        assert_eq!(strip_credentials("mqtt://a@b@host"), "mqtt://host");
        assert_eq!(strip_credentials("tcp://host:1883"), "tcp://host:1883");
        assert_eq!(strip_credentials("user:pw@host:1883"), "host:1883");
        assert_eq!(
            strip_credentials("mqtt://host/path@thing"),
            "mqtt://host/path@thing"
        );
    }
}
