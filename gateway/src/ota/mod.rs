//! Over-the-air updates: the gateway's side of RAUC's A/B scheme.
//!
//! Module map:
//! - [`command`]: the backend's update command (`…/ota/command`).
//! - [`download`]: resumable HTTP(S) download of the bundle.
//! - [`rauc`]: `rauc info/install/status/mark-good`, system.conf, os-release.
//! - [`version`]: version ordering, to refuse downgrades.
//! - [`note`]: the update in progress, kept on `/data` across reboots.
//! - [`health`]: is the updated system healthy (judged against before)?
//! - [`report`]: progress and outcomes on `…/ota/progress` and the status page.
//! - this file: the agent that runs one update from command to verdict.
//!
//! The path of an update (docs/ota.md tells it for operators):
//! command → note written, command acked → download (resumable) → SHA-256
//! checked → `rauc info` (signature, compatible, version; downgrade refused)
//! → `rauc install` into the other slot → note says "rebooting" → the
//! gateway stops cleanly (store committed, radio quiet, MQTT session closed)
//! and reboots → the bootloader tries the new slot → the new gateway finds
//! the note and checks its health → `rauc status mark-good` and `installed`
//! reported; or, unhealthy, `health_check_failed` and a reboot, until the
//! bootloader's tries run out and the old slot boots again, whose gateway
//! finds the note, sees it is not on the new slot, and reports `rolled_back`.
//! Each verdict needs a new boot: the note names the boot that asked for the
//! reboot, and a gateway started again within it only asks again.

pub mod command;
pub mod download;
pub mod health;
pub mod note;
pub mod rauc;
pub mod report;
pub mod version;

use std::cmp::Ordering;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::Duration;

use radio_bridge::link::LinkState;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::config::OtaSection;
use crate::state::GatewayState;
use crate::store::Store;
use crate::uplink::{IncomingMessage, UplinkStatus};
use command::UpdateCommand;
use download::DownloadError;
use health::HealthFacts;
use note::{AfterRestart, NoteFile, Phase, UpdateNote};
use rauc::Rauc;
pub use report::{OtaReport, Reporter};

/// How often the health of an updated system is looked at.
const HEALTH_POLL: Duration = Duration::from_secs(2);
/// Progress is published at most this often (and at each whole 10 %).
const PROGRESS_INTERVAL: Duration = Duration::from_secs(5);
/// A reboot into an update that did not happen is asked for again after
/// this long (the gateway serves meanwhile), at most [`REBOOT_ASKS`] times
/// in one boot.
const REBOOT_RETRY_AFTER: Duration = Duration::from_secs(60);
const REBOOT_ASKS: u32 = 3;
/// Meta key written to prove the store takes writes.
const HEALTH_PROBE_KEY: &str = "ota_health_probe";

/// Set when the gateway should reboot once it has stopped; the daemon's
/// caller runs the reboot command after the orderly shutdown.
#[derive(Debug, Clone, Default)]
pub struct RebootRequest(Arc<AtomicBool>);

impl RebootRequest {
    pub fn is_requested(&self) -> bool {
        self.0.load(AtomicOrdering::SeqCst)
    }

    /// Asks for a reboot at the next safe point: the shutdown `token` stops
    /// every task in order first.
    pub fn request(&self, token: &CancellationToken) {
        self.0.store(true, AtomicOrdering::SeqCst);
        token.cancel();
    }
}

/// Where the agent finds RAUC and the system's facts.
#[derive(Debug, Clone)]
pub struct OtaSettings {
    pub rauc: Rauc,
    pub system_conf: PathBuf,
    pub release_file: PathBuf,
    pub dir: PathBuf,
    pub health_timeout: Duration,
}

impl OtaSettings {
    pub fn from_config(section: &OtaSection, data_dir: &Path) -> OtaSettings {
        OtaSettings {
            rauc: Rauc {
                command: section.rauc.clone(),
                keyring: section.keyring.clone(),
            },
            system_conf: section.system_conf.clone(),
            release_file: section.release_file.clone(),
            dir: section.download_dir(data_dir),
            health_timeout: Duration::from_secs(section.health_timeout_s),
        }
    }

    /// The running version, or a placeholder that says why it is unknown.
    pub fn running_version(&self) -> String {
        rauc::running_version(&self.release_file).unwrap_or_else(|_| "unknown".into())
    }
}

/// The agent. `settings` is `None` when `[ota]` is not configured: then
/// every command is refused with that reason (and acknowledged, so the
/// broker does not keep it for ever).
pub struct OtaAgent {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Option<OtaSettings>,
    reporter: Reporter,
    store: Store,
    state: Arc<GatewayState>,
    uplink: Option<watch::Receiver<UplinkStatus>>,
    reboot: RebootRequest,
    shutdown: CancellationToken,
    /// The kernel's id of this boot, read once: it cannot change while the
    /// process runs.
    this_boot: Option<String>,
}

type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Why an update stopped before the reboot.
enum Stop {
    /// Checked and not acceptable (`refused`).
    Refused(String),
    /// Something broke (`failed`).
    Failed(String),
    /// The gateway is shutting down; the note stays and the update resumes.
    ShuttingDown,
}

impl OtaAgent {
    pub fn new(
        settings: Option<OtaSettings>,
        reporter: Reporter,
        store: Store,
        state: Arc<GatewayState>,
        uplink: Option<watch::Receiver<UplinkStatus>>,
        reboot: RebootRequest,
        shutdown: CancellationToken,
    ) -> OtaAgent {
        OtaAgent {
            inner: Arc::new(Inner {
                settings,
                reporter,
                store,
                state,
                uplink,
                reboot,
                shutdown,
                this_boot: note::this_boot(),
            }),
        }
    }

    /// Resumes an update found in the note, then takes commands and
    /// uploads, one update at a time, until shutdown.
    pub async fn run(
        self,
        mut commands: mpsc::UnboundedReceiver<IncomingMessage>,
        mut uploads: mpsc::Receiver<Upload>,
    ) {
        let inner = self.inner;
        let mut job: Option<Job> = None;
        let mut busy_with: Option<UpdateCommand> = None;
        let mut uploads_open = true;
        let mut commands_open = true;
        if let Some(settings) = &inner.settings {
            let notes = NoteFile::new(&settings.dir);
            match notes.load() {
                Ok(Some(note)) => {
                    busy_with = Some(note.command.clone());
                    job = Some(Box::pin(inner.clone().resume(note)));
                }
                Ok(None) => inner.clone().confirm_ordinary_boot().await,
                Err(e) => {
                    inner.state.event("ota", "warn", e);
                    notes.remove();
                }
            }
        }
        loop {
            let accepted = tokio::select! {
                _ = inner.shutdown.cancelled() => {
                    // Let the job see the shutdown and leave its note in order.
                    if let Some(job) = job.take() {
                        let _ = tokio::time::timeout(Duration::from_secs(5), job).await;
                    }
                    return;
                }
                _ = async { job.as_mut().expect("guarded").await }, if job.is_some() => {
                    job = None;
                    busy_with = None;
                    continue;
                }
                message = commands.recv(), if commands_open => {
                    // No broker configured: no commands, but uploads and a
                    // resumed update still run.
                    let Some(message) = message else {
                        commands_open = false;
                        continue;
                    };
                    let Some(command) = inner.accept(&message.payload, busy_with.as_ref()).await else {
                        ack(message).await;
                        continue;
                    };
                    match inner.start(command.clone()) {
                        Ok(started) => {
                            ack(message).await;
                            Some((command, started))
                        }
                        // Not acked: the broker offers it again later.
                        Err(e) => {
                            inner.state.event("ota", "error", format!("Cannot accept an update: {e}"));
                            None
                        }
                    }
                }
                upload = uploads.recv(), if uploads_open => {
                    let Some(upload) = upload else {
                        uploads_open = false;
                        continue;
                    };
                    let outcome = inner.accept_upload(&upload, busy_with.as_ref()).await;
                    let started = outcome.and_then(|command| {
                        let started = inner.start(command.clone())?;
                        Ok((command, started))
                    });
                    if let Err(reason) = &started {
                        inner.state.event("ota", "warn", format!("Uploaded update refused: {reason}"));
                    }
                    let reply = started.as_ref().map(|(c, _)| format!("Update to version {} started", c.version));
                    let _ = upload.reply.send(reply.map_err(Clone::clone));
                    started.ok()
                }
            };
            if let Some((command, started)) = accepted {
                busy_with = Some(command);
                job = Some(started);
            }
        }
    }
}

/// A bundle uploaded on the admin page, waiting in the download directory.
pub struct Upload {
    pub file: PathBuf,
    pub allow_downgrade: bool,
    /// `Ok(sentence)` once the update started; `Err(reason)` if refused.
    pub reply: tokio::sync::oneshot::Sender<Result<String, String>>,
}

/// What the rest of the gateway (the admin page) may ask of the agent.
#[derive(Clone)]
pub struct OtaHandle {
    uploads: mpsc::Sender<Upload>,
    report: watch::Receiver<OtaReport>,
    upload_dir: Option<PathBuf>,
}

impl OtaHandle {
    pub fn new(
        uploads: mpsc::Sender<Upload>,
        report: watch::Receiver<OtaReport>,
        upload_dir: Option<PathBuf>,
    ) -> OtaHandle {
        OtaHandle {
            uploads,
            report,
            upload_dir,
        }
    }

    /// The latest report (progress or outcome).
    pub fn report(&self) -> OtaReport {
        self.report.borrow().clone()
    }

    /// Where an uploaded bundle must be written (`None`: updates are off).
    /// On the data partition, so installing needs no second copy.
    pub fn upload_dir(&self) -> Option<&Path> {
        self.upload_dir.as_deref()
    }

    /// Starts an update from an uploaded bundle file.
    pub async fn install_upload(
        &self,
        file: PathBuf,
        allow_downgrade: bool,
    ) -> Result<String, String> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let upload = Upload {
            file,
            allow_downgrade,
            reply,
        };
        self.uploads
            .send(upload)
            .await
            .map_err(|_| "the update agent has stopped".to_string())?;
        answer
            .await
            .unwrap_or_else(|_| Err("the update agent has stopped".into()))
    }
}

async fn ack(message: IncomingMessage) {
    if let Err(e) = message.ack.ack().await {
        tracing::info!("OTA command handled but not acked: {e}");
    }
}

impl Inner {
    fn settings(&self) -> &OtaSettings {
        self.settings.as_ref().expect("jobs run only with settings")
    }

    fn running_version(&self) -> String {
        self.settings
            .as_ref()
            .map_or_else(|| "unknown".into(), OtaSettings::running_version)
    }

    /// Decides about a command: `Some` to carry it out; otherwise it was
    /// refused (with an outcome) or is a repeat of the one in progress.
    async fn accept(
        &self,
        payload: &[u8],
        busy_with: Option<&UpdateCommand>,
    ) -> Option<UpdateCommand> {
        let running = self.running_version();
        let command = match UpdateCommand::parse(payload) {
            Ok(c) => c,
            Err(reason) => {
                let id = hex::encode(&Sha256::digest(payload)[..8]);
                self.reporter
                    .outcome(
                        OtaReport::new(&id, "refused", None, &running).reason(reason),
                        0,
                    )
                    .await;
                return None;
            }
        };
        let refuse = |reason: String| {
            OtaReport::new(&command.id, "refused", Some(&command.version), &running).reason(reason)
        };
        // The broker delivering the update in progress again is no news.
        if busy_with.is_some_and(|current| current.id == command.id) {
            return None;
        }
        if let Some(reason) = self.cannot_start(busy_with) {
            self.reporter.outcome(refuse(reason), 0).await;
            return None;
        }
        Some(command)
    }

    /// Why no update can start now, whatever it is.
    fn cannot_start(&self, busy_with: Option<&UpdateCommand>) -> Option<String> {
        if self.settings.is_none() {
            return Some(
                "updates are not enabled on this gateway (no [ota] section in its configuration)"
                    .into(),
            );
        }
        busy_with.map(|current| {
            format!(
                "another update (id {}, version {}) is in progress",
                current.id, current.version
            )
        })
    }

    /// Notes an accepted command on disk and returns the job that carries
    /// it out; the note is what an acknowledgement promises.
    fn start(self: &Arc<Self>, command: UpdateCommand) -> Result<Job, String> {
        let settings = self.settings();
        let note = UpdateNote {
            command,
            phase: Phase::Accepted,
            from_version: settings.running_version(),
            from_slot: None,
            target_slot: None,
            links_up: Vec::new(),
            uplink_connected: false,
            failed_health_checks: 0,
            reboot_asked: None,
        };
        NoteFile::new(&settings.dir).save(&note)?;
        Ok(Box::pin(self.clone().carry_out(note)))
    }

    /// Turns an uploaded bundle into a command: its version is what its
    /// (signature-checked) manifest says, its hash is computed here. The
    /// file is moved to where a downloaded bundle would be, so the rest of
    /// the path is the same as for the backend's commands.
    async fn accept_upload(
        &self,
        upload: &Upload,
        busy_with: Option<&UpdateCommand>,
    ) -> Result<UpdateCommand, String> {
        let remove = || {
            let _ = std::fs::remove_file(&upload.file);
        };
        if let Some(reason) = self.cannot_start(busy_with) {
            remove();
            return Err(reason);
        }
        let settings = self.settings();
        let checked = async {
            let info = settings
                .rauc
                .info(&upload.file)
                .await
                .map_err(|e| format!("RAUC does not accept the bundle: {e}"))?;
            let sha256 = sha256_of(&upload.file).await?;
            let bundle = settings.dir.join(format!("{}.raucb", &sha256[..16]));
            std::fs::rename(&upload.file, &bundle)
                .map_err(|e| format!("cannot keep the bundle: {e}"))?;
            Ok::<_, String>(UpdateCommand {
                id: format!("upload-{}", &sha256[..16]),
                url: "upload:".into(),
                version: info.version.unwrap_or_default(),
                sha256,
                allow_downgrade: upload.allow_downgrade,
            })
        };
        let command = checked.await;
        if command.is_err() {
            remove();
        }
        command
    }

    /// Picks an interrupted update up where the note says it was.
    async fn resume(self: Arc<Self>, note: UpdateNote) {
        match note.phase {
            Phase::Accepted | Phase::Installing => self.carry_out(note).await,
            Phase::Rebooting => self.after_boot(note).await,
        }
    }

    /// No update in progress: this boot is an ordinary one, and the slot
    /// we run from is good (a no-op unless a note was lost).
    async fn confirm_ordinary_boot(self: Arc<Self>) {
        if let Err(e) = self.settings().rauc.mark_good().await {
            tracing::info!("rauc status mark-good: {e}");
        }
    }

    /// From an accepted command to the reboot.
    async fn carry_out(self: Arc<Self>, mut note: UpdateNote) {
        let running = self.running_version();
        let command = note.command.clone();
        let outcome = match self.download_check_install(&mut note).await {
            Ok(()) => return self.reboot_into(note).await,
            Err(Stop::ShuttingDown) => return,
            Err(Stop::Refused(reason)) => {
                OtaReport::new(&command.id, "refused", Some(&command.version), &running)
                    .reason(reason)
            }
            Err(Stop::Failed(reason)) => {
                OtaReport::new(&command.id, "failed", Some(&command.version), &running)
                    .reason(reason)
            }
        };
        self.reporter.outcome(outcome, 0).await;
        let settings = self.settings();
        remove_bundles(&settings.dir);
        NoteFile::new(&settings.dir).remove();
    }

    async fn download_check_install(&self, note: &mut UpdateNote) -> Result<(), Stop> {
        let settings = self.settings();
        let command = note.command.clone();
        let running = settings.running_version();
        let report =
            |state: &str| OtaReport::new(&command.id, state, Some(&command.version), &running);
        let bundle = settings
            .dir
            .join(format!("{}.raucb", &command.sha256[..16]));
        if !bundle.exists() {
            // A new update: drop what another one left behind.
            remove_bundles(&settings.dir);
            let part = bundle.with_extension("raucb.part");
            self.reporter.progress(report("downloading"));
            let mut throttle = ProgressThrottle::default();
            let size = download::download(&command.url, &part, &self.shutdown, |bytes, total| {
                if throttle.due(bytes, total) {
                    let mut r = report("downloading");
                    r.bytes = Some(bytes);
                    r.total = total;
                    r.percent = total.filter(|t| *t > 0).map(|t| (bytes * 100 / t) as u8);
                    self.reporter.progress(r);
                }
            })
            .await
            .map_err(|e| match e {
                DownloadError::Stopped => Stop::ShuttingDown,
                DownloadError::Failed(reason) => Stop::Failed(reason),
            })?;
            self.reporter.progress(report("verifying"));
            let digest = sha256_of(&part).await.map_err(Stop::Failed)?;
            if digest != command.sha256 {
                let _ = std::fs::remove_file(&part);
                return Err(Stop::Refused(format!(
                    "the downloaded file ({size} bytes) has SHA-256 {digest}, not {} as the command says; it was deleted",
                    command.sha256
                )));
            }
            std::fs::rename(&part, &bundle)
                .map_err(|e| Stop::Failed(format!("cannot keep the bundle: {e}")))?;
        }
        self.reporter.progress(report("verifying"));
        let compatible = rauc::system_compatible(&settings.system_conf).map_err(Stop::Failed)?;
        let info = settings
            .rauc
            .info(&bundle)
            .await
            .map_err(|e| Stop::Refused(format!("RAUC does not accept the bundle: {e}")))?;
        if info.compatible != compatible {
            return Err(Stop::Refused(format!(
                "the bundle is for {:?}, this gateway is {compatible:?}",
                info.compatible
            )));
        }
        let bundle_version = info.version.unwrap_or_default();
        if bundle_version != command.version {
            return Err(Stop::Refused(format!(
                "the bundle is version {bundle_version:?}, the command said {:?}",
                command.version
            )));
        }
        if version::compare(&bundle_version, &running) != Ordering::Greater
            && !command.allow_downgrade
        {
            return Err(Stop::Refused(format!(
                "version {bundle_version} is not newer than the running version {running}; \
                 send \"allow_downgrade\": true to install it anyway"
            )));
        }
        self.reporter.progress(report("installing"));
        let status = settings
            .rauc
            .status()
            .await
            .map_err(|e| Stop::Failed(format!("installing failed: {e}")))?;
        note.from_slot = Some(status.booted.clone());
        note.target_slot = status.other_rootfs().and_then(|s| s.bootname.clone());
        note.phase = Phase::Installing;
        NoteFile::new(&settings.dir)
            .save(note)
            .map_err(Stop::Failed)?;
        let mut last = None;
        let installed = settings
            .rauc
            .install(&bundle, |percent| {
                if last.is_none_or(|l: u8| percent >= l.saturating_add(10) || percent == 100) {
                    last = Some(percent);
                    let mut r = report("installing").slot(note.target_slot.clone());
                    r.percent = Some(percent);
                    self.reporter.progress(r);
                }
            })
            .await;
        installed.map_err(|e| Stop::Failed(format!("installing failed: {e}")))
    }

    /// Installed: remember what works now, then stop cleanly and reboot.
    async fn reboot_into(self: Arc<Self>, mut note: UpdateNote) {
        let settings = self.settings();
        note.phase = Phase::Rebooting;
        note.links_up = self.links_up();
        note.uplink_connected = self.uplink.as_ref().is_some_and(|u| u.borrow().connected);
        self.save_reboot_asked(&mut note);
        remove_bundles(&settings.dir);
        let running = settings.running_version();
        let report = OtaReport::new(
            &note.command.id,
            "rebooting",
            Some(&note.command.version),
            &running,
        )
        .slot(note.target_slot.clone());
        self.reporter.outcome(report, 0).await;
        // Give the outcome a moment to reach a connected broker; the
        // outbox keeps it for the next system otherwise.
        tokio::time::sleep(Duration::from_secs(1)).await;
        self.reboot.request(&self.shutdown);
    }

    /// First boot(s) after an update, or back on the old slot.
    async fn after_boot(self: Arc<Self>, mut note: UpdateNote) {
        let settings = self.settings();
        let notes = NoteFile::new(&settings.dir);
        let running = settings.running_version();
        let booted = settings.rauc.status().await.map(|s| s.booted);
        match note.after_restart(
            self.this_boot.as_deref(),
            booted.as_ref().ok().map(String::as_str),
        ) {
            AfterRestart::RebootPending => return self.reboot_again(note).await,
            AfterRestart::RolledBack { target, booted } => {
                let reason = format!(
                    "version {} on slot {target} did not prove healthy; the bootloader went back to slot {booted}",
                    note.command.version,
                );
                let report = OtaReport::new(
                    &note.command.id,
                    "rolled_back",
                    Some(&note.command.version),
                    &running,
                )
                .slot(Some(booted))
                .reason(reason);
                self.reporter.outcome(report, 0).await;
                notes.remove();
                self.clone().confirm_ordinary_boot().await;
                return;
            }
            AfterRestart::CheckHealth => {}
        }
        let report = |state: &str| {
            OtaReport::new(
                &note.command.id,
                state,
                Some(&note.command.version),
                &running,
            )
            .slot(note.target_slot.clone())
        };
        self.reporter.progress(report("health_check"));
        let deadline = tokio::time::Instant::now() + settings.health_timeout;
        let mut problems;
        loop {
            problems = health::problems(&note, &self.health_facts().await);
            if let Err(e) = &booted {
                problems.push(format!("rauc status: {e}"));
            }
            if problems.is_empty() {
                match settings.rauc.mark_good().await {
                    Ok(()) => {
                        self.reporter.outcome(report("installed"), 0).await;
                        notes.remove();
                        return;
                    }
                    Err(e) => problems.push(format!("rauc status mark-good: {e}")),
                }
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(HEALTH_POLL) => {}
            }
        }
        let failed = report("health_check_failed").reason(format!(
            "after {} s: {}",
            settings.health_timeout.as_secs(),
            problems.join("; ")
        ));
        note.failed_health_checks += 1;
        self.save_reboot_asked(&mut note);
        self.reporter
            .outcome(failed, note.failed_health_checks)
            .await;
        self.reboot.request(&self.shutdown);
    }

    /// Started again in the boot that asked for the reboot into the
    /// update: the system did not go down (the reboot command failed, or
    /// the gateway was started again while the system stopped). The gateway
    /// serves meanwhile and asks again after [`REBOOT_RETRY_AFTER`], at most
    /// [`REBOOT_ASKS`] times in one boot; whenever the next boot comes, it
    /// judges the update as usual.
    async fn reboot_again(self: Arc<Self>, mut note: UpdateNote) {
        let asked = note.reboot_asked.as_ref().map_or(0, |asked| asked.times);
        let update = format!(
            "The update to {} is installed in slot {}",
            note.command.version,
            note.target_slot.as_deref().unwrap_or("?")
        );
        if asked >= REBOOT_ASKS {
            self.state.event(
                "ota",
                "error",
                format!("{update}, but the system did not reboot when asked {asked} times; the update starts at the next power-on"),
            );
            // Still this update's turn: others are refused until that boot.
            self.shutdown.cancelled().await;
            return;
        }
        self.state.event(
            "ota",
            "warn",
            format!(
                "{update} and waits for the reboot; asking again in {} s",
                REBOOT_RETRY_AFTER.as_secs()
            ),
        );
        tokio::select! {
            _ = self.shutdown.cancelled() => return,
            _ = tokio::time::sleep(REBOOT_RETRY_AFTER) => {}
        }
        self.save_reboot_asked(&mut note);
        self.reboot.request(&self.shutdown);
    }

    /// Notes on disk that this boot asks for a reboot, before it is asked.
    fn save_reboot_asked(&self, note: &mut UpdateNote) {
        note.ask_reboot(self.this_boot.clone());
        if let Err(e) = NoteFile::new(&self.settings().dir).save(note) {
            // Without the note the new system cannot judge itself; the
            // bootloader would still roll back a dead one, so carry on.
            tracing::error!("{e}");
        }
    }

    fn links_up(&self) -> Vec<String> {
        self.state
            .links()
            .iter()
            .filter(|(_, link)| link.state == LinkState::Up)
            .map(|(name, _)| name.clone())
            .collect()
    }

    async fn health_facts(&self) -> HealthFacts {
        HealthFacts {
            store_writable: self
                .store
                .set_meta(
                    HEALTH_PROBE_KEY,
                    &radio_bridge::link::unix_millis(std::time::SystemTime::now()).to_string(),
                )
                .await
                .is_ok(),
            links_up: self.links_up(),
            uplink_configured: self.uplink.is_some(),
            uplink_connected: self.uplink.as_ref().is_some_and(|u| u.borrow().connected),
        }
    }
}

/// Publishes download progress every whole 10 % or [`PROGRESS_INTERVAL`].
#[derive(Default)]
struct ProgressThrottle {
    last_at: Option<std::time::Instant>,
    last_tenth: Option<u64>,
}

impl ProgressThrottle {
    fn due(&mut self, bytes: u64, total: Option<u64>) -> bool {
        let tenth = total.filter(|t| *t > 0).map(|t| bytes * 10 / t);
        let now = std::time::Instant::now();
        let due = tenth != self.last_tenth
            || self
                .last_at
                .is_none_or(|at| now.duration_since(at) >= PROGRESS_INTERVAL);
        if due {
            self.last_at = Some(now);
            self.last_tenth = tenth;
        }
        due
    }
}

async fn sha256_of(path: &Path) -> Result<String, String> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut file = std::fs::File::open(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut hash = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = file
                .read(&mut buf)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            if n == 0 {
                return Ok(hex::encode(hash.finalize()));
            }
            hash.update(&buf[..n]);
        }
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Deletes downloaded bundles and partial downloads (never the note).
fn remove_bundles(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".raucb") || name.ends_with(".raucb.part") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
