//! Telling the backend and the status page how an update goes.
//!
//! Two kinds of message go to `…/ota/progress`:
//! - progress (`downloading`, `verifying`, `installing`, `rebooting`,
//!   `health_check`): sent straight to the broker when connected, and
//!   dropped otherwise — the next one says more anyway;
//! - outcomes (`refused`, `failed`, `installed`, `rolled_back`,
//!   `health_check_failed`): written to the store's outbox like a device
//!   message, so they reach the backend even if the broker is away for a
//!   week or the box reboots first. Their outbox id is derived from the
//!   update and the outcome, so an outcome written twice (a crash between
//!   writing it and removing the note) is published once.
//!
//! Every message is a JSON object: `id`, `state`, `version` (the bundle's),
//! `running_version`, `at_ms`, and as applicable `percent`, `bytes`,
//! `total`, `slot`, `reason`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use radio_bridge::link::unix_millis;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::state::GatewayState;
use crate::store::{CommitOutcome, Inbound, Store};
use crate::uplink::topics::GATEWAY_OTA;
use crate::uplink::{ExtraPublisher, ExtraTopic};

/// How long a progress message may wait for its PUBACK before we move on.
const PROGRESS_PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// One message on `ota/progress`, and what the status page shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OtaReport {
    pub id: String,
    /// `idle` on the status page when nothing has happened since start.
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub running_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percent: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub at_ms: u64,
}

impl OtaReport {
    pub fn new(id: &str, state: &str, version: Option<&str>, running_version: &str) -> OtaReport {
        OtaReport {
            id: id.to_string(),
            state: state.to_string(),
            version: version.map(str::to_string),
            running_version: running_version.to_string(),
            at_ms: unix_millis(SystemTime::now()),
            ..OtaReport::default()
        }
    }

    pub fn reason(mut self, reason: impl Into<String>) -> OtaReport {
        self.reason = Some(reason.into());
        self
    }

    pub fn slot(mut self, slot: Option<String>) -> OtaReport {
        self.slot = slot;
        self
    }

    /// A sentence for the event list of the status page.
    pub fn sentence(&self) -> String {
        let version = self.version.as_deref().unwrap_or("?");
        let because = self
            .reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        match self.state.as_str() {
            "refused" => format!("Update to version {version} refused{because}"),
            "failed" => format!("Update to version {version} failed{because}"),
            "installed" => {
                format!("Updated to version {version}; the new system is healthy and kept")
            }
            "rolled_back" => format!(
                "Update to version {version} was undone: back on version {}{because}",
                self.running_version
            ),
            "health_check_failed" => format!(
                "Version {version} is not healthy{because}; restarting to try again or to go back"
            ),
            "rebooting" => format!("Update to version {version} installed; restarting into it"),
            other => format!("Update to version {version}: {other}{because}"),
        }
    }
}

/// Sends reports; cheap to clone.
#[derive(Clone)]
pub struct Reporter {
    store: Store,
    state: Arc<GatewayState>,
    device_id: [u8; 32],
    publisher: Option<ExtraPublisher>,
    current: Arc<watch::Sender<OtaReport>>,
}

impl Reporter {
    pub fn new(
        store: Store,
        state: Arc<GatewayState>,
        device_id: [u8; 32],
        publisher: Option<ExtraPublisher>,
        running_version: &str,
    ) -> Reporter {
        let idle = OtaReport::new("", "idle", None, running_version);
        Reporter {
            store,
            state,
            device_id,
            publisher,
            current: Arc::new(watch::channel(idle).0),
        }
    }

    /// The latest report, for the status page.
    pub fn subscribe(&self) -> watch::Receiver<OtaReport> {
        self.current.subscribe()
    }

    /// A progress step: shown at once, published if the broker is there.
    pub fn progress(&self, report: OtaReport) {
        let phase_changed = self.current.borrow().state != report.state;
        if phase_changed {
            self.state.event("ota", "info", report.sentence());
        }
        self.current.send_replace(report.clone());
        if let (Some(publisher), Ok(payload)) =
            (self.publisher.clone(), serde_json::to_vec(&report))
        {
            tokio::spawn(async move {
                let sent = tokio::time::timeout(
                    PROGRESS_PUBLISH_TIMEOUT,
                    publisher.publish(ExtraTopic::OtaProgress, payload),
                )
                .await;
                if !matches!(sent, Ok(Ok(()))) {
                    tracing::debug!("OTA progress not published (the broker is not reachable)");
                }
            });
        }
    }

    /// An outcome: kept in the outbox until the broker has it. `attempt`
    /// tells apart outcomes of one update that may legitimately repeat
    /// (a failed health check on each boot try).
    pub async fn outcome(&self, report: OtaReport, attempt: u32) {
        let level = match report.state.as_str() {
            "installed" => "info",
            _ => "warn",
        };
        self.state.event("ota", level, report.sentence());
        self.current.send_replace(report.clone());
        let mut hash = Sha256::new();
        hash.update(b"seed-gateway ota outcome\0");
        hash.update(report.id.as_bytes());
        hash.update([0]);
        hash.update(report.state.as_bytes());
        hash.update(attempt.to_be_bytes());
        let mut msg_id = [0u8; 16];
        msg_id.copy_from_slice(&hash.finalize()[..16]);
        let json = match serde_json::to_string(&report) {
            Ok(json) => json,
            Err(e) => return tracing::error!("cannot encode an OTA report: {e}"),
        };
        let stored = self
            .store
            .commit(vec![Inbound::own(
                msg_id,
                self.device_id,
                GATEWAY_OTA,
                Vec::new(),
                json,
                report.at_ms,
            )])
            .await;
        match stored.as_deref() {
            Ok([CommitOutcome::Refused, ..]) => tracing::error!(
                "the store is full: the OTA outcome {:?} is only in the log",
                report.state
            ),
            Err(e) => tracing::error!("cannot store the OTA outcome {:?}: {e}", report.state),
            Ok(_) => self.state.wake_uplink(),
        }
    }
}
