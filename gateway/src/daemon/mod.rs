//! Wires the gateway together: links → ingest → store → uplink, the
//! transmit scheduler, and the web UI; and takes it apart again on shutdown.
//!
//! `run` (the appliance) and `demo` (the embedded default) both end up in
//! [`start`]; they differ only in where the links come from.
//!
//! Shutdown order matters for the "nothing acked is lost" promise, though a
//! kill -9 at any instant keeps it too: the links stop handing up frames,
//! ingest finishes the commit it is in (and the acks it releases), the
//! uplink waits a bounded time for outstanding PUBACKs and publishes
//! `offline`, the neighbor table is saved, and the store checkpoints.

mod downlinks;
mod links;
mod supervisor;
mod sync_offers;
mod uplink_events;
mod view;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use radio_bridge::duty_cycle::Region;
use radio_bridge::identity::Identity;
use radio_bridge::link::{Link, LinkEvent, RadioParams};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::airtime_journal::Restored;
use crate::config::Config;
use crate::heartbeat::{self, HeartbeatSender, PowerSource};
use crate::ingest::Ingest;
use crate::neighbors::NeighborTable;
use crate::ota::{OtaAgent, OtaHandle, OtaSettings, RebootRequest, Reporter};
use crate::scheduler::{Scheduler, SchedulerHandle, SchedulerStats, TxLink};
use crate::state::GatewayState;
use crate::store::{Store, StoreOptions};
use crate::uplink::Uplink;

pub use downlinks::{request_id, MailboxCounters, DOWNLINKS_PER_WINDOW, MAX_DOWNLINK_FRAME};
pub use links::{bound_gwmp_link, links_from_config};
pub use supervisor::{LinkControl, Rebuild, RestartError};
pub use view::GatewayViewImpl;

/// Store key of the persisted neighbor table.
const NEIGHBORS_META_KEY: &str = "neighbors";

/// How often the neighbor table is saved (it is also saved at shutdown).
const NEIGHBORS_SAVE_INTERVAL: Duration = Duration::from_secs(30);

/// A link ready to start, with what the scheduler needs to transmit on it.
pub struct LinkSpec {
    pub link: Box<dyn Link>,
    pub kind: &'static str,
    pub params: RadioParams,
    /// How to build the link again when the admin restarts it; `None`
    /// answers a restart with "cannot be restarted".
    pub rebuild: Option<Rebuild>,
}

/// A running gateway.
pub struct Running {
    pub gateway_id: String,
    pub data_dir: PathBuf,
    /// Where the status page listens, when enabled.
    pub http_addr: Option<SocketAddr>,
    pub state: Arc<GatewayState>,
    pub store: Store,
    scheduler: SchedulerHandle,
    mailbox: downlinks::Mailbox,
    links: LinkControl,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
    uplink: Option<Uplink>,
    reboot: RebootRequest,
    ota: OtaHandle,
    peering: Arc<crate::peering::PeeringState>,
}

impl Running {
    /// A token that stops the gateway when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// What the transmit scheduler has sent, and the duty cycle it used.
    pub fn scheduler_stats(&self) -> SchedulerStats {
        self.scheduler.stats()
    }

    /// Set once an installed update wants the machine rebooted; check it
    /// after [`Running::wait`] returns.
    pub fn reboot_request(&self) -> RebootRequest {
        self.reboot.clone()
    }

    /// The over-the-air update agent: its latest report, uploads.
    pub fn ota(&self) -> &OtaHandle {
        &self.ota
    }

    /// Restarts radio links by name (what the admin page's button does).
    pub fn link_control(&self) -> &LinkControl {
        &self.links
    }

    /// Trusted neighbour gateways: links, custody figures, refusals.
    pub fn peering(&self) -> web_ui::Peers {
        self.peering.snapshot()
    }

    /// Downlink outcomes and transmissions so far.
    pub fn mailbox_counters(&self) -> &MailboxCounters {
        self.mailbox.counters()
    }

    /// Waits until the shutdown token is cancelled, then stops everything in
    /// order, each step bounded.
    pub async fn wait(mut self) {
        self.shutdown.cancelled().await;
        let grace = crate::shutdown::GRACE;
        if tokio::time::timeout(grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            tracing::warn!("some tasks did not stop within {grace:?}; stopping anyway");
            self.tasks.abort_all();
        }
        if let Some(uplink) = self.uplink.take() {
            let _ = tokio::time::timeout(grace, uplink.finished()).await;
        }
        save_neighbors(&self.store, &self.state).await;
        if let Err(e) = self.store.clone().close().await {
            tracing::error!("closing the store: {e}");
        }
        tracing::info!("stopped");
    }
}

/// Starts a gateway from a validated config and ready links.
pub async fn start(config: &Config, links: Vec<LinkSpec>) -> Result<Running, String> {
    let data_dir = config.gateway.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .map_err(|e| format!("cannot create data directory {}: {e}", data_dir.display()))?;
    let identity =
        Identity::load_or_create(&config.gateway.key_path()).map_err(|e| e.to_string())?;
    let gateway_id = identity.id_hex();
    let store = Store::open(
        &data_dir.join("seed-gateway.db"),
        StoreOptions {
            quota_bytes: config.storage.quota_mb * 1024 * 1024,
            mailbox_max_per_device: config.mailbox.max_per_device.into(),
            // The mailbox enforces `max_total` as a count; this byte limit
            // (every frame fits one LoRa packet) only backs it up.
            mailbox_max_total_bytes: u64::from(config.mailbox.max_total)
                * (MAX_DOWNLINK_FRAME as u64 + crate::store::MAILBOX_ROW_OVERHEAD_BYTES),
            ..StoreOptions::default()
        },
    )
    .map_err(|e| format!("cannot open the store in {}: {e}", data_dir.display()))?;
    let neighbors = match store.get_meta(NEIGHBORS_META_KEY).await {
        Ok(Some(json)) => NeighborTable::from_json(&json),
        _ => NeighborTable::new(),
    };
    let state = Arc::new(GatewayState::new(gateway_id.clone(), neighbors));
    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();

    // Links: each gets its own transmit queue; all share one event channel.
    // Each runs under a supervisor that can restart it (admin page).
    let (events_tx, events_rx) = mpsc::channel::<LinkEvent>(4096);
    let mut tx_links = Vec::new();
    let mut link_control = supervisor::LinkControlBuilder::default();
    for spec in links {
        let name = spec.link.name().to_string();
        state.add_link(&name, spec.kind, spec.link.counters());
        let (transmit_tx, transmit_rx) = mpsc::channel(64);
        tx_links.push(TxLink {
            name: name.clone(),
            transmit: transmit_tx,
            params: spec.params,
        });
        let supervisor = supervisor::Supervisor::new(
            &name,
            spec.rebuild,
            state.clone(),
            events_tx.clone(),
            transmit_rx,
            &mut link_control,
            shutdown.clone(),
        );
        tasks.spawn(supervisor.run(spec.link));
    }
    drop(events_tx);
    let link_control = link_control.build();

    let region = match config.region.name.as_str() {
        "unrestricted" => Region::Unrestricted,
        _ => Region::Eu868,
    };
    let (mut scheduler, scheduler_handle, requests) =
        Scheduler::new(identity.clone(), tx_links, region);
    if region == Region::Eu868 {
        let restored = scheduler.keep_ledger_in(&data_dir).map_err(|e| {
            format!(
                "cannot keep the airtime journal in {}: {e}",
                data_dir.display()
            )
        })?;
        note_restored_airtime(&state, &restored);
    }
    // The mailbox counts a delivery attempt when its frame is on air.
    let (reports_tx, reports_rx) = mpsc::unbounded_channel();
    scheduler.report_to(reports_tx);
    tasks.spawn(scheduler.run(requests, shutdown.clone()));

    let ota_settings = config
        .ota
        .as_ref()
        .map(|section| OtaSettings::from_config(section, &data_dir));
    if let Some(settings) = &ota_settings {
        std::fs::create_dir_all(&settings.dir).map_err(|e| {
            format!(
                "cannot create the update directory {}: {e}",
                settings.dir.display()
            )
        })?;
    }
    let (uplink, incoming) = match &config.mqtt {
        Some(mqtt) => {
            let system_version = ota_settings.as_ref().map(OtaSettings::running_version);
            let (uplink, incoming) = Uplink::start(
                mqtt,
                &gateway_id,
                system_version,
                store.clone(),
                shutdown.clone(),
            )
            .map_err(|e| e.to_string())?;
            (Some(uplink), Some(incoming))
        }
        None => {
            state.event(
                "uplink",
                "info",
                "No internet uplink is configured: messages are kept on this gateway".into(),
            );
            (None, None)
        }
    };
    if let Some(u) = &uplink {
        state.set_uplink_waker(u.waker());
    }

    let mut ingest = Ingest::new(store.clone(), state.clone(), scheduler_handle.clone());
    let mailbox = downlinks::Mailbox::new(
        store.clone(),
        state.clone(),
        scheduler_handle.clone(),
        identity.clone(),
        config.mailbox.clone(),
    );
    ingest.observe(Arc::new(mailbox.clone()));
    ingest.observe(Arc::new(sync_offers::SyncOffers::new(
        identity.clone(),
        state.clone(),
        scheduler_handle.clone(),
        Duration::from_secs(config.mailbox.sync_offer_interval_s),
    )));
    let reassembly = ingest.reassembly_counters();
    tasks.spawn(ingest.run(events_rx, shutdown.clone()));

    let running_version = ota_settings.as_ref().map_or_else(
        || crate::uplink::VERSION.to_string(),
        OtaSettings::running_version,
    );
    let reporter = Reporter::new(
        store.clone(),
        state.clone(),
        identity.device_id(),
        uplink.as_ref().map(Uplink::publisher),
        &running_version,
    );
    let reboot = RebootRequest::default();
    let (ota_commands_tx, ota_commands_rx) = mpsc::unbounded_channel();
    let (uploads_tx, uploads_rx) = mpsc::channel(1);
    let ota = OtaHandle::new(
        uploads_tx,
        reporter.subscribe(),
        ota_settings.as_ref().map(|s| s.dir.clone()),
    );
    tasks.spawn(
        OtaAgent::new(
            ota_settings,
            reporter,
            store.clone(),
            state.clone(),
            uplink.as_ref().map(Uplink::status),
            reboot.clone(),
            shutdown.clone(),
        )
        .run(ota_commands_rx, uploads_rx),
    );
    if let Some(incoming) = incoming {
        tasks.spawn(
            mailbox
                .clone()
                .accept(incoming, ota_commands_tx, shutdown.clone()),
        );
    }
    tasks.spawn(mailbox.clone().run(reports_rx, shutdown.clone()));

    // The gateway's own heartbeat: the pacer decides when, the sender signs
    // and sends; link and uplink events make it speak up sooner.
    let (beats_tx, beats_rx) = mpsc::unbounded_channel();
    let (changes_tx, changes_rx) = mpsc::unbounded_channel();
    tasks.spawn(heartbeat::watch_changes(
        state.subscribe(),
        changes_tx,
        shutdown.clone(),
    ));
    tasks.spawn(heartbeat::pace(
        PowerSource {
            supply_path: config.power.supply_path.clone(),
            low_battery_percent: config.power.low_battery_percent,
        },
        changes_rx,
        beats_tx,
        shutdown.clone(),
    ));
    tasks.spawn(
        HeartbeatSender::new(
            identity.clone(),
            store.clone(),
            state.clone(),
            scheduler_handle.clone(),
            uplink.as_ref().map(Uplink::status),
        )
        .run(beats_rx),
    );
    tasks.spawn(save_neighbors_periodically(
        store.clone(),
        state.clone(),
        shutdown.clone(),
    ));

    let peering = crate::peering::start(
        crate::peering::PeeringSetup {
            identity: identity.clone(),
            settings: config.peering.clone(),
            peers: config.peers.clone(),
            store: store.clone(),
            uplink_status: uplink.as_ref().map(Uplink::status),
            publisher: uplink.as_ref().map(Uplink::publisher),
            mqtt_prefix: config
                .mqtt
                .as_ref()
                .map_or_else(String::new, |m| m.prefix.clone()),
            mailboxes: Some(mailbox.peer_link()),
        },
        &mut tasks,
        shutdown.clone(),
    )
    .await?;

    let view = Arc::new(
        GatewayViewImpl::new(
            state.clone(),
            store.clone(),
            scheduler_handle.clone(),
            uplink.as_ref().map(Uplink::status),
            mailbox.clone(),
            link_control.clone(),
            config.clone(),
        )
        .with_reassembly(reassembly)
        .with_ota(ota.clone())
        .with_peering(peering.clone()),
    );
    let http_addr = {
        let (listener, addr) = web_ui::bind(config.http.bind).await.map_err(|e| {
            format!(
                "cannot listen on {} for the status page: {e}",
                config.http.bind
            )
        })?;
        let stop = shutdown.clone();
        tasks.spawn(async move {
            if let Err(e) = web_ui::serve(listener, view, stop).await {
                tracing::error!("status page server stopped: {e}");
            }
        });
        Some(addr)
    };

    state.event(
        "started",
        "info",
        format!("Gateway {} started", &gateway_id[..16]),
    );
    Ok(Running {
        gateway_id,
        data_dir,
        http_addr,
        state,
        store,
        scheduler: scheduler_handle,
        mailbox,
        links: link_control,
        shutdown,
        tasks,
        uplink,
        reboot,
        ota,
        peering,
    })
}

/// Says on the status page what the airtime journal brought back.
fn note_restored_airtime(state: &GatewayState, restored: &Restored) {
    if let Some(reason) = &restored.unreadable {
        state.event(
            "radio",
            "warn",
            format!(
                "The airtime journal could not be read ({reason}): every sub-band counts as \
                 fully used for the next hour, so nothing is transmitted until then"
            ),
        );
    } else if restored.entries > 0 {
        state.event(
            "radio",
            "info",
            format!(
                "Airtime of the last hour carried over from before the restart: {} \
                 transmissions ({} from before a reboot, counted as if just before it)",
                restored.entries, restored.from_earlier_boot
            ),
        );
    }
}

async fn save_neighbors(store: &Store, state: &GatewayState) {
    let json = state.neighbors().to_json();
    if let Err(e) = store.set_meta(NEIGHBORS_META_KEY, &json).await {
        tracing::warn!("could not save the neighbor table: {e}");
    }
}

async fn save_neighbors_periodically(
    store: Store,
    state: Arc<GatewayState>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(NEIGHBORS_SAVE_INTERVAL);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => save_neighbors(&store, &state).await,
        }
    }
}

/// Starts logging at `level` (or `RUST_LOG`), to stderr and into the
/// in-memory ring the diagnostic bundle reads ([`crate::logs`]).
pub fn init_logging(level: &str) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(crate::logs::RingLayer)
        .try_init();
}
