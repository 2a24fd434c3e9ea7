//! The one seam between the gateway and its web interface.
//!
//! The gateway depends on web-ui, not the other way round, so web-ui states what it needs as
//! a trait and the gateway implements it. Methods are synchronous and return snapshots: the
//! handlers call them on tokio's blocking pool (`spawn_blocking`), so an implementation may
//! take a mutex or run a short SQLite query without stalling the HTTP server.

use tokio::sync::broadcast;

use crate::model::{Health, LiveEvent, Neighbor, Queue, Status};

/// What the web interface can see of, and ask of, a running gateway.
pub trait GatewayView: Send + Sync + 'static {
    /// A snapshot of everything on the status page except the neighbor table.
    fn status(&self) -> Status;

    /// Every device in the neighbor table, `gone` ones included (the page hides them).
    fn neighbors(&self) -> Vec<Neighbor>;

    /// The uplink backlog.
    fn queue(&self) -> Queue;

    /// Trusted neighbour gateways; none unless the gateway has `[[peer]]`s.
    fn peers(&self) -> crate::peers::Peers {
        crate::peers::Peers::default()
    }

    /// Whether the appliance works. The default is healthy when the store is writable and not
    /// full and every configured link is up; override to add checks the status can't show.
    fn health(&self) -> Health {
        Health::from_status(&self.status())
    }

    /// A new receiver for live changes. Each open status page holds one; a receiver that falls
    /// behind is caught up with a full snapshot, so a small channel capacity (e.g. 64) is fine.
    fn subscribe(&self) -> broadcast::Receiver<LiveEvent>;

    /// The admin password as an argon2 PHC string (see [`crate::hash_password`]), or None to
    /// keep the admin pages switched off. Read on every login, so a change applies at once.
    fn admin_password_hash(&self) -> Option<String>;

    /// One sentence telling a technician how to set the admin password on this gateway,
    /// shown while admin is switched off.
    fn admin_setup_hint(&self) -> String {
        "Set an admin password in the gateway's configuration file, then restart the gateway."
            .to_string()
    }

    /// Carries out an admin action. Ok holds a short confirmation and Err a short reason,
    /// both shown to the technician as they are.
    fn admin_action(&self, action: AdminAction) -> Result<String, String>;

    /// Where an uploaded update bundle is to be written (on the gateway's data partition), or
    /// None when over-the-air updates are off. The upload route streams the file there, then
    /// asks for [`AdminAction::InstallUpdate`].
    fn update_upload_dir(&self) -> Option<std::path::PathBuf> {
        None
    }

    /// Bytes an uploaded bundle may take in [`GatewayView::update_upload_dir`] while leaving
    /// the store its room; None when unknown. An upload larger than this is refused before
    /// (or as soon as) it would exceed it.
    fn update_upload_room(&self) -> Option<u64> {
        None
    }

    /// Logs and configuration with every secret removed, for a technician to send to support.
    fn diagnostic_bundle(&self) -> DiagnosticBundle;
}

/// Things a logged-in technician can ask the gateway to do.
///
/// Non-exhaustive because the admin page grows; match with a fallback arm.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AdminAction {
    /// Close and reopen the named radio link.
    RestartLink(String),
    /// Reconnect to the broker if needed and publish the backlog now, without waiting for the
    /// next retry.
    FlushUplink,
    /// Check and install the update bundle uploaded to this file (in
    /// [`GatewayView::update_upload_dir`]); the gateway owns the file from here on.
    InstallUpdate {
        bundle: std::path::PathBuf,
        allow_downgrade: bool,
    },
}

/// A file for the technician to download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiagnosticBundle {
    /// Suggested file name, e.g. `seed-gateway-<id>-diagnostics.tar`. Characters other than
    /// letters, digits, `.`, `-` and `_` are replaced before it reaches the browser.
    pub file_name: String,
    /// MIME type, e.g. `application/x-tar` or `text/plain; charset=utf-8`.
    pub content_type: String,
    pub bytes: Vec<u8>,
}
