//! The gateway as the web UI sees it: snapshots of the shared state, the
//! store and the uplink in the web-ui crate's model, plus the admin actions.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use radio_bridge::duty_cycle::Band;
use radio_bridge::fragment::ReassemblyCounters;
use radio_bridge::link::{unix_millis, LinkState as RadioLinkState};
use tokio::sync::{broadcast, watch};
use web_ui::{
    AdminAction, BandView, DiagnosticBundle, EventLevel, EventView, FragmentCounters,
    FrameCounters, GatewayView, Identity, LatencyHistogram, LinkState, LinkView, Liveness,
    MailboxView, Neighbor, Queue, QueueItem, QuotaState, Status, StorageView, UpdateView,
    UplinkView,
};

use super::downlinks::Mailbox;
use super::supervisor::{LinkControl, RestartError};
use super::uplink_events::UplinkEvents;
use crate::config::Config;
use crate::logs;
use crate::neighbors::{self, NeighborTable};
use crate::ota::OtaHandle;
use crate::scheduler::SchedulerHandle;
use crate::state::{Event, GatewayState};
use crate::store::{self, Store};
use crate::uplink::{PublishLatency, UplinkStatus};

/// How often the live feed checks whether anything changed.
const LIVE_CHECK: Duration = Duration::from_secs(1);

pub struct GatewayViewImpl {
    state: Arc<GatewayState>,
    store: Store,
    scheduler: SchedulerHandle,
    uplink: Option<watch::Receiver<UplinkStatus>>,
    mailbox: Mailbox,
    links: LinkControl,
    config: Config,
    live: broadcast::Sender<web_ui::LiveEvent>,
    reassembly: Arc<ReassemblyCounters>,
    ota: Option<OtaHandle>,
    peering: Option<Arc<crate::peering::PeeringState>>,
}

impl GatewayViewImpl {
    pub fn new(
        state: Arc<GatewayState>,
        store: Store,
        scheduler: SchedulerHandle,
        uplink: Option<watch::Receiver<UplinkStatus>>,
        mailbox: Mailbox,
        links: LinkControl,
        config: Config,
    ) -> GatewayViewImpl {
        let (live, _) = broadcast::channel(256);
        let view = GatewayViewImpl {
            state,
            store,
            scheduler,
            uplink,
            mailbox,
            links,
            config,
            live,
            reassembly: Arc::default(),
            ota: None,
            peering: None,
        };
        view.spawn_live_feed();
        view
    }

    /// Turns gateway events into live events, notices uplink and quota
    /// changes (which become events too), and says "changed" when counters move.
    fn spawn_live_feed(&self) {
        let state = self.state.clone();
        let store = self.store.clone();
        let live = self.live.clone();
        let mut events = state.subscribe();
        let mut uplink = self.uplink.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(LIVE_CHECK);
            let mut last_fingerprint = 0u64;
            let mut uplink_events = UplinkEvents::default();
            let mut last_quota = store.stats().quota_state;
            loop {
                tokio::select! {
                    e = events.recv() => match e {
                        Ok(e) => { let _ = live.send(web_ui::LiveEvent::Event(event_view(&e))); }
                        Err(broadcast::error::RecvError::Lagged(_)) => { let _ = live.send(web_ui::LiveEvent::Changed); }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = tick.tick() => {
                        if let Some(u) = uplink.as_mut() {
                            let status = u.borrow_and_update().clone();
                            for (kind, level, text) in uplink_events.notice(&status) {
                                state.event(kind, level, text);
                            }
                        }
                        let stats = store.stats();
                        if stats.quota_state != last_quota {
                            let text = match stats.quota_state {
                                store::QuotaState::Ok => "Storage has room again".to_string(),
                                store::QuotaState::Compacting => "Storage nearly full: old heartbeats are being summarised".to_string(),
                                store::QuotaState::Full => "Storage full: new transactions are refused until the internet uplink drains the queue; nothing stored is lost".to_string(),
                            };
                            state.event("quota", if stats.quota_state == store::QuotaState::Ok { "info" } else { "warn" }, text);
                            last_quota = stats.quota_state;
                        }
                        let fingerprint = stats.stored_total
                            .wrapping_mul(31).wrapping_add(stats.published_total)
                            .wrapping_mul(31).wrapping_add(state.frames.get("duplicate"))
                            .wrapping_mul(31).wrapping_add(state.neighbors().len() as u64);
                        if fingerprint != last_fingerprint {
                            last_fingerprint = fingerprint;
                            let _ = live.send(web_ui::LiveEvent::Changed);
                        }
                    }
                }
            }
        });
    }

    fn link_views(&self) -> Vec<LinkView> {
        self.state
            .links()
            .iter()
            .map(|(name, l)| {
                let c = l.counters.snapshot();
                let (state, detail) = match &l.state {
                    RadioLinkState::Up => (LinkState::Up, String::new()),
                    RadioLinkState::Connecting => (LinkState::Connecting, String::new()),
                    RadioLinkState::Down(why) => (LinkState::Down, why.clone()),
                };
                LinkView {
                    name: name.clone(),
                    kind: match l.kind {
                        "rnode" => "rnode-serial".into(),
                        "gwmp" => "gwmp-udp".into(),
                        other => other.into(),
                    },
                    state,
                    detail,
                    since_ms: None,
                    frames_received: c.frames_received,
                    malformed: c.malformed,
                    bad_crc: c.bad_crc,
                    device_errors: c.device_errors,
                    tx_held: c.tx_held,
                    tx_too_late: c.tx_too_late,
                    last_rssi: l.last_rssi,
                    last_snr: l.last_snr,
                    last_frame_ms: None,
                    frames: frame_counters(&l.frames),
                }
            })
            .collect()
    }
}

impl GatewayViewImpl {
    /// Shows ingest's fragment-reassembly counters (zeros until given).
    pub fn with_reassembly(mut self, counters: Arc<ReassemblyCounters>) -> Self {
        self.reassembly = counters;
        self
    }

    /// Shows the trusted neighbour gateways.
    pub fn with_peering(mut self, peering: Arc<crate::peering::PeeringState>) -> Self {
        self.peering = Some(peering);
        self
    }

    /// Shows the update agent's reports and lets the admin page upload bundles.
    pub fn with_ota(mut self, ota: OtaHandle) -> Self {
        self.ota = Some(ota);
        self
    }

    /// Runs on web-ui's blocking pool, so waiting for the restart (bounded
    /// by the supervisor's drain and stop limits) stalls no async task.
    fn restart_link(&self, name: &str) -> Result<String, String> {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| "The gateway is not running.".to_string())?;
        match handle.block_on(self.links.restart(name)) {
            Ok(()) => Ok(format!(
                "Radio {name} restarted. It reconnects to its device now."
            )),
            Err(RestartError::UnknownLink(_)) => Err(format!(
                "Not found: there is no radio called \u{201c}{name}\u{201d} on this gateway. Nothing was restarted."
            )),
            Err(e) => Err(format!("Radio {name} was not restarted: {e}.")),
        }
    }
}

fn event_view(e: &Event) -> EventView {
    EventView {
        at_ms: e.at_ms,
        level: match e.level {
            "error" => EventLevel::Error,
            "warn" => EventLevel::Warning,
            _ => EventLevel::Info,
        },
        kind: e.kind.to_string(),
        text: e.text.clone(),
    }
}

/// A sub-band as the page names it: by its frequencies, which a technician
/// can match with the radio's settings (the ETSI letter means nothing to a
/// kiosk keeper).
fn band_name(band: Band) -> String {
    let (low, high) = band.freq_range_hz();
    format!("{}–{} MHz", mhz(low), mhz(high))
}

/// "869.4", "869.65", "863.0".
fn mhz(hz: u32) -> String {
    let text = format!("{:.3}", f64::from(hz) / 1e6);
    let trimmed = text.trim_end_matches('0');
    if trimmed.ends_with('.') {
        format!("{trimmed}0")
    } else {
        trimmed.to_string()
    }
}

fn latency_view(l: &PublishLatency) -> LatencyHistogram {
    LatencyHistogram {
        bounds_s: l.bounds_ms.iter().map(|ms| *ms as f64 / 1000.0).collect(),
        counts: l.counts.clone(),
        sum_s: l.sum_ms as f64 / 1000.0,
    }
}

fn quota_view(q: store::QuotaState) -> QuotaState {
    match q {
        store::QuotaState::Ok => QuotaState::Ok,
        store::QuotaState::Compacting => QuotaState::Warning,
        store::QuotaState::Full => QuotaState::Full,
    }
}

impl GatewayView for GatewayViewImpl {
    fn peers(&self) -> web_ui::Peers {
        self.peering
            .as_ref()
            .map(|p| p.snapshot())
            .unwrap_or_default()
    }

    fn status(&self) -> Status {
        let stats = self.store.stats();
        let uplink = self.uplink.as_ref().map(|u| u.borrow().clone());
        let frames = &self.state.frames;
        let counters = self.mailbox.counters();
        let duty_cycle = self
            .scheduler
            .stats()
            .duty_cycle
            .map(|d| {
                // Only bands the gateway transmitted in: it sends on one or
                // two channels, and six "0 % used" lines would only bury them.
                d.bands
                    .iter()
                    .filter(|b| b.used_ms > 0)
                    .map(|b| BandView::new(band_name(b.band), b.used_ms, b.budget_ms, 3600))
                    .collect()
            })
            .unwrap_or_default();
        Status {
            gateway: Identity {
                id: self.state.gateway_id.clone(),
                version: self.state.version.to_string(),
                uptime_s: self.state.uptime_s(),
            },
            uplink: UplinkView {
                configured: uplink.is_some(),
                connected: uplink.as_ref().is_some_and(|u| u.connected),
                broker: uplink.as_ref().map(|u| u.broker.clone()),
                since_ms: uplink.as_ref().map(|u| u.since_ms),
                last_publish_ms: uplink.as_ref().and_then(|u| u.last_publish_ms),
                last_error: uplink.as_ref().and_then(|u| u.last_error.clone()),
                backlog: stats.backlog,
                oldest_pending_ms: stats.oldest_pending_ms,
                published_total: uplink.as_ref().map_or(0, |u| u.published_total),
                dropped_total: 0,
                publish_latency: uplink
                    .as_ref()
                    .map(|u| latency_view(&u.publish_latency))
                    .unwrap_or_default(),
            },
            links: self.link_views(),
            duty_cycle,
            storage: StorageView {
                bytes_used: stats.bytes_used,
                quota_bytes: stats.quota_bytes,
                quota_state: quota_view(stats.quota_state),
                writable: true,
            },
            frames: frame_counters(frames),
            mailboxes: MailboxView {
                pending: stats.mailbox_entries,
                devices_waiting: 0,
                delivered: counters.delivered.load(Ordering::Relaxed),
                failed: counters.failed.load(Ordering::Relaxed),
                expired: counters.expired.load(Ordering::Relaxed),
                receipts_waiting: 0,
            },
            events: self.state.recent_events().iter().map(event_view).collect(),
            traffic_24h: self
                .state
                .traffic()
                .last_24h(unix_millis(SystemTime::now())),
            update: self
                .ota
                .as_ref()
                .filter(|o| o.upload_dir().is_some())
                .map(|o| {
                    let r = o.report();
                    UpdateView {
                        state: r.state,
                        version: r.version,
                        running_version: r.running_version,
                        percent: r.percent,
                        reason: r.reason,
                        at_ms: r.at_ms,
                    }
                }),
            fragments: {
                let r = self.reassembly.snapshot();
                FragmentCounters {
                    completed: r.completed,
                    timed_out: r.timed_out,
                    evicted_for_memory: r.evicted_for_memory,
                    malformed: r.malformed,
                    duplicates: r.duplicates,
                }
            },
        }
    }

    fn neighbors(&self) -> Vec<Neighbor> {
        let now = unix_millis(SystemTime::now());
        let table = self.state.neighbors();
        let mut out: Vec<Neighbor> = table
            .all()
            .map(|n| {
                let hint = table.sync_hint(&n.device_id).and_then(|h| {
                    (h.behind_by > 0).then(|| {
                        if h.would_help {
                            format!("behind by {}: a sync would help", h.behind_by)
                        } else {
                            format!("behind by {} (cannot sync now)", h.behind_by)
                        }
                    })
                });
                Neighbor {
                    device_id: hex::encode(n.device_id),
                    device_class: n.device_class.clone(),
                    power_state: n.power_state.clone(),
                    last_seen_ms: n.last_seen_ms,
                    rssi: n.rssi,
                    snr: n.snr,
                    ledger_height: n.ledger_height,
                    protocol_version: if n.outdated {
                        format!("{} (outdated)", n.protocol_version)
                    } else {
                        n.protocol_version.clone()
                    },
                    sync_capable: n.sync_capable && !n.outdated,
                    sync_hint: hint,
                    liveness: match NeighborTable::liveness(n, now) {
                        neighbors::Liveness::Active => Liveness::Active,
                        neighbors::Liveness::Stale => Liveness::Stale,
                        neighbors::Liveness::Gone => Liveness::Gone,
                    },
                    link: Some(n.last_link.clone()),
                }
            })
            .collect();
        out.sort_by_key(|n| std::cmp::Reverse(n.last_seen_ms));
        out
    }

    fn queue(&self) -> Queue {
        let stats = self.store.stats();
        // The page shows a handful; a blocking read is fine here (web-ui
        // calls views on the blocking pool).
        let handle = tokio::runtime::Handle::try_current().ok();
        let recent = handle
            .as_ref()
            .and_then(|h| h.block_on(self.store.pending(0, 20)).ok())
            .unwrap_or_default();
        let by_type = handle
            .as_ref()
            .and_then(|h| h.block_on(self.store.pending_by_type()).ok())
            .unwrap_or_default();
        Queue {
            backlog: stats.backlog,
            oldest_pending_ms: stats.oldest_pending_ms,
            by_type,
            recent: recent
                .into_iter()
                .map(|e| QueueItem {
                    seq: e.seq,
                    msg_id: hex::encode(e.msg_id),
                    device_id: hex::encode(e.device_id),
                    message_type: e.message_type,
                    received_at_ms: e.received_at_ms,
                })
                .collect(),
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<web_ui::LiveEvent> {
        self.live.subscribe()
    }

    fn admin_password_hash(&self) -> Option<String> {
        self.config.http.admin_password_hash.clone().or_else(|| {
            std::fs::read_to_string(self.config.gateway.admin_hash_path())
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        })
    }

    fn admin_setup_hint(&self) -> String {
        format!(
            "Set a password with `seed-gateway set-admin-password --data-dir {}` on the gateway, \
             or put an argon2 hash in `http.admin_password_hash` of the config file.",
            self.config.gateway.data_dir.display()
        )
    }

    fn admin_action(&self, action: AdminAction) -> Result<String, String> {
        match action {
            AdminAction::FlushUplink => {
                if self.uplink.is_none() {
                    return Err("No internet uplink is configured; messages stay here.".into());
                }
                self.state.wake_uplink();
                Ok("Sending waiting messages now.".into())
            }
            AdminAction::RestartLink(name) => self.restart_link(&name),
            AdminAction::InstallUpdate {
                bundle,
                allow_downgrade,
            } => {
                let Some(ota) = &self.ota else {
                    let _ = std::fs::remove_file(&bundle);
                    return Err("Updates are not enabled on this gateway.".into());
                };
                let handle = tokio::runtime::Handle::try_current()
                    .map_err(|_| "The gateway is not running.".to_string())?;
                handle.block_on(ota.install_upload(bundle, allow_downgrade))
            }
            _ => Err("This action is not available in this version.".into()),
        }
    }

    fn update_upload_dir(&self) -> Option<std::path::PathBuf> {
        self.ota
            .as_ref()?
            .upload_dir()
            .map(std::path::Path::to_path_buf)
    }

    fn update_upload_room(&self) -> Option<u64> {
        let dir = self.ota.as_ref()?.upload_dir()?;
        let free = crate::ota::download::free_bytes(dir).ok()?;
        Some(free.saturating_sub(crate::ota::download::SPACE_MARGIN_BYTES))
    }

    fn diagnostic_bundle(&self) -> DiagnosticBundle {
        let status = serde_json::to_string_pretty(&self.status()).unwrap_or_default();
        let neighbors = serde_json::to_string_pretty(&self.neighbors()).unwrap_or_default();
        let config = redacted_config(&self.config);
        let ring = logs::global();
        let mut own_log = ring.lines().join("\n");
        if ring.missed() > 0 {
            own_log.push_str(&format!(
                "\n({} lines not kept: logging was busy)",
                ring.missed()
            ));
        }
        let system_log = match &self.config.gateway.system_log {
            Some(path) => format!(
                "== system log ({}, last {} KiB)\n{}",
                path.display(),
                logs::SYSTEM_LOG_TAIL / 1024,
                logs::system_log_tail(path)
            ),
            None => "== system log\n(no system log file configured: gateway.system_log)\n".into(),
        };
        let text = format!(
            "seed-gateway diagnostics\n\n== status\n{status}\n\n== neighbors\n{neighbors}\n\n\
             == config (secrets removed)\n{config}\n\n\
             == gateway log (last {} lines kept in memory)\n{own_log}\n\n{system_log}",
            logs::MAX_LINES
        );
        // The logs may quote a secret (a broker URL with its password, say).
        let text = logs::redact(&text, &self.secrets());
        DiagnosticBundle {
            file_name: format!(
                "seed-gateway-{}-diagnostics.txt",
                &self.state.gateway_id[..16]
            ),
            content_type: "text/plain; charset=utf-8".into(),
            bytes: text.into_bytes(),
        }
    }
}

impl GatewayViewImpl {
    /// Strings that must never leave the gateway in a bundle.
    fn secrets(&self) -> Vec<&str> {
        let mut secrets = Vec::new();
        if let Some(password) = self
            .config
            .mqtt
            .as_ref()
            .and_then(|m| m.password.as_deref())
        {
            secrets.push(password);
        }
        if let Some(hash) = self.config.http.admin_password_hash.as_deref() {
            secrets.push(hash);
        }
        secrets
    }
}

/// The effective configuration without passwords, keys or hashes.
fn redacted_config(config: &Config) -> String {
    let mut c = config.clone();
    if let Some(m) = c.mqtt.as_mut() {
        if m.password.is_some() {
            m.password = Some("(removed)".into());
        }
    }
    if c.http.admin_password_hash.is_some() {
        c.http.admin_password_hash = Some("(removed)".into());
    }
    format!("{c:#?}")
}

/// The status page's view of a set of receive-outcome counters.
fn frame_counters(frames: &crate::state::FrameCounters) -> FrameCounters {
    FrameCounters {
        accepted: frames.get("accepted"),
        duplicates: frames.get("duplicate"),
        bad_signature: frames.get("bad_signature"),
        malformed: frames.get("malformed") + frames.get("oversize"),
        unsupported_version: frames.get("unsupported_version"),
        replayed: frames.get("replayed"),
        refused_full: frames.get("refused"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_are_named_by_their_frequencies() {
        assert_eq!(band_name(Band::P), "869.4–869.65 MHz");
        assert_eq!(band_name(Band::K), "863.0–865.0 MHz");
        assert_eq!(band_name(Band::M), "868.0–868.6 MHz");
    }
}
