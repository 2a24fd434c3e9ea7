//! Trusted neighbour gateways (`docs/peering.md`): a mutually
//! authenticated link between kiosks and custody of each other's outbox.
//!
//! Shape (one job per file):
//! - [`tls`]: TLS 1.3 with the gateways' ed25519 identities as raw public
//!   keys; only listed keys are accepted.
//! - [`wire`]: the versioned peer-link protocol (framing and messages).
//! - `outbound`: the link we dial to each neighbour; hands our outbox to it
//!   when our uplink has been down long enough and its uplink is up.
//! - `inbound`: the listener; takes a neighbour's rows into custody, acks
//!   each only once it is on our disk.
//! - `relay`: publishes held rows on the origin's topics, deletes them on
//!   the broker's PUBACK.
//! - `receipts`, `handback`: the custody receipt; the custodian reports
//!   what it published, and the origin keeps what it handed over until
//!   then (and takes it back when the custodian's store was replaced).
//! - [`status`]: what the page, the API and `/metrics` show.
//! - [`mailboxes`]: our downlinks offered to neighbours and theirs held
//!   here, so whichever gateway hears the device first delivers it.
//!
//! Each pair of gateways uses two TCP connections, one per direction of
//! custody: the origin always dials, the custodian always listens. So
//! neither side has to decide who is the client, and a link in one
//! direction works even where only one side can be reached.

mod handback;
mod inbound;
pub mod mailboxes;
mod outbound;
mod receipts;
mod relay;
pub mod status;
pub mod tls;
pub mod wire;

#[cfg(test)]
mod mailbox_tests;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use radio_bridge::identity::Identity;
use radio_bridge::link::unix_millis;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{PeerSection, PeeringSection};
use crate::store::Store;
use crate::uplink::{ExtraPublisher, UplinkStatus};

pub use status::PeeringState;

/// Either side sends its status at least this often; a link silent for
/// [`SILENCE_LIMIT`] is considered dead.
const KEEPALIVE: Duration = Duration::from_secs(10);
const SILENCE_LIMIT: Duration = Duration::from_secs(30);
/// TCP connect plus TLS handshake plus hello, at most.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// One configured neighbour.
#[derive(Debug, Clone)]
struct Peer {
    name: String,
    address: String,
    key: [u8; 32],
}

/// Our own uplink, as custody decisions need it.
#[derive(Clone)]
struct OwnUplink {
    status: Option<watch::Receiver<UplinkStatus>>,
    started_ms: u64,
}

impl OwnUplink {
    fn is_up(&self) -> bool {
        self.status.as_ref().is_some_and(|s| s.borrow().connected)
    }

    /// How long it has been down (zero while up). Without any uplink
    /// configured, it has been down since the gateway started.
    fn down_for(&self) -> Duration {
        let since = match &self.status {
            Some(status) => {
                let status = status.borrow();
                if status.connected {
                    return Duration::ZERO;
                }
                status.since_ms
            }
            None => self.started_ms,
        };
        Duration::from_millis(unix_millis(std::time::SystemTime::now()).saturating_sub(since))
    }
}

/// What every peering task shares.
struct Shared {
    identity: Identity,
    peers: Vec<Peer>,
    settings: PeeringSection,
    store: Store,
    uplink: OwnUplink,
    state: Arc<PeeringState>,
    /// Index of the neighbour our outbox is being handed to, or
    /// `usize::MAX`: one custodian at a time, so a row is not relayed by
    /// two neighbours at once.
    custodian: AtomicUsize,
    /// Wakes the relay when rows were taken into custody.
    relay_wake: Notify,
    /// Our store's id, sent in `hello`.
    store_id: String,
    /// Custodian side: `published` reports waiting per neighbour.
    receipts: receipts::Receipts,
    /// Origin side: when each neighbour last took or published our rows.
    progress: handback::Progress,
    /// `None` without a mailbox (downlinks are then not shared).
    mailboxes: Option<mailboxes::MailboxLink>,
}

impl Shared {
    fn peer_index(&self, key: &[u8; 32]) -> Option<usize> {
        self.peers.iter().position(|p| &p.key == key)
    }

    /// What we tell a neighbour about ourselves.
    fn own_state(&self, holding_for_you: u64) -> wire::PeerState {
        wire::PeerState {
            uplink_up: self.uplink.is_up(),
            holding_for_you,
        }
    }
}

/// Everything the peering layer needs from the daemon.
pub struct PeeringSetup {
    pub identity: Identity,
    pub settings: PeeringSection,
    pub peers: Vec<PeerSection>,
    pub store: Store,
    /// `None` when no `[mqtt]` is configured.
    pub uplink_status: Option<watch::Receiver<UplinkStatus>>,
    pub publisher: Option<ExtraPublisher>,
    /// The MQTT topic prefix relayed rows are published under.
    pub mqtt_prefix: String,
    /// The mailbox, to share downlinks with neighbours; `None`: not shared.
    pub mailboxes: Option<mailboxes::MailboxLink>,
}

/// Starts the listener, one dialler per neighbour and the relay. Returns
/// the state the web UI shows. Nothing is started without `[[peer]]`s.
pub async fn start(
    setup: PeeringSetup,
    tasks: &mut JoinSet<()>,
    shutdown: CancellationToken,
) -> Result<Arc<PeeringState>, String> {
    let own_key = setup.identity.device_id();
    let mut peers = Vec::new();
    for section in &setup.peers {
        let key = section
            .key()
            .ok_or_else(|| format!("peer {:?}: gateway_id is not a gateway id", section.name))?;
        if key == own_key {
            return Err(format!(
                "peer {:?} has this gateway's own id; list the neighbour's id",
                section.name
            ));
        }
        peers.push(Peer {
            name: section.name.clone(),
            address: section.address.clone(),
            key,
        });
    }
    let state = Arc::new(PeeringState::new(
        setup.settings.bind,
        peers
            .iter()
            .map(|p| (p.name.clone(), hex::encode(p.key), p.address.clone()))
            .collect(),
    ));
    if peers.is_empty() {
        return Ok(state);
    }
    let listed: HashMap<[u8; 32], String> = peers.iter().map(|p| (p.key, p.name.clone())).collect();
    let server_tls = tls::server_config(&setup.identity, &listed)?;
    let listener = match setup.settings.bind {
        Some(bind) => Some(
            tokio::net::TcpListener::bind(bind)
                .await
                .map_err(|e| format!("cannot listen on {bind} for neighbour gateways: {e}"))?,
        ),
        None => None,
    };
    let store_id = setup
        .store
        .store_id()
        .await
        .map_err(|e| format!("peering needs the store's id: {e}"))?;
    let peer_count = peers.len();
    let shared = Arc::new(Shared {
        identity: setup.identity,
        peers,
        settings: setup.settings,
        store: setup.store,
        uplink: OwnUplink {
            status: setup.uplink_status,
            started_ms: unix_millis(std::time::SystemTime::now()),
        },
        state: state.clone(),
        custodian: AtomicUsize::new(usize::MAX),
        relay_wake: Notify::new(),
        store_id,
        receipts: receipts::Receipts::new(peer_count),
        progress: handback::Progress::new(peer_count),
        mailboxes: setup.mailboxes,
    });
    if let Some(listener) = listener {
        tasks.spawn(inbound::listen(
            shared.clone(),
            listener,
            server_tls,
            shutdown.clone(),
        ));
    }
    for index in 0..shared.peers.len() {
        tasks.spawn(outbound::dial(shared.clone(), index, shutdown.clone()));
    }
    if let Some(publisher) = setup.publisher {
        tasks.spawn(relay::run(
            shared.clone(),
            publisher,
            setup.mqtt_prefix,
            shutdown.clone(),
        ));
    }
    tasks.spawn(handback::run(shared.clone(), shutdown.clone()));
    tasks.spawn(refresh_held(shared, shutdown));
    Ok(state)
}

/// Keeps the "held for" figures current.
async fn refresh_held(shared: Arc<Shared>, shutdown: CancellationToken) {
    let keys: Vec<[u8; 32]> = shared.peers.iter().map(|p| p.key).collect();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Ok(counts) = shared.store.custody_counts().await {
            shared.state.set_held(&counts, &keys);
        }
        if let Ok(counts) = shared.store.peer_mail_counts().await {
            shared.state.set_mail_held(&counts, &keys);
        }
    }
}

/// Sends our `hello`.
async fn send_hello<W>(out: &mut W, status: wire::PeerState, store_id: &str) -> Result<(), String>
where
    W: tokio::io::AsyncWrite + Unpin,
{
    let hello = wire::Message::Hello {
        versions: wire::VERSIONS.to_vec(),
        software: crate::uplink::VERSION.to_string(),
        status,
        store_id: Some(store_id.to_string()),
    };
    wire::write_message(out, &hello)
        .await
        .map_err(|e| e.to_string())
}

/// What the other side's `hello` told us.
struct PeerHello {
    status: wire::PeerState,
    /// The version both sides speak on this connection.
    version: u16,
    /// The other side's store (a new id means its store was replaced).
    store_id: Option<String>,
}

/// Reads the other side's `hello` and agrees on a version; on no common
/// version tells the other side why before giving up.
async fn receive_hello<S>(stream: &mut S) -> Result<PeerHello, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match wire::read_message(stream)
        .await
        .map_err(|e| e.to_string())?
    {
        wire::Message::Hello {
            versions,
            status,
            store_id,
            ..
        } => match wire::negotiate(&versions) {
            Some(version) => Ok(PeerHello {
                status,
                version,
                store_id,
            }),
            None => {
                let text = format!(
                    "no common peer-link version (we speak {:?}, the neighbour {versions:?})",
                    wire::VERSIONS
                );
                let _ = wire::write_message(
                    stream,
                    &wire::Message::Error {
                        code: "unsupported_version".into(),
                        text: text.clone(),
                    },
                )
                .await;
                Err(text)
            }
        },
        wire::Message::Error { code, text } => {
            Err(format!("the neighbour refused the link: {code}: {text}"))
        }
        other => Err(format!("protocol error: {} before hello", kind(&other))),
    }
}

/// Reads messages on their own task (reading a frame is not cancel-safe,
/// so it must not sit in a `select!`); a link silent for longer than
/// [`SILENCE_LIMIT`] ends with an error.
fn spawn_reader<R>(mut reader: R) -> tokio::sync::mpsc::Receiver<Result<wire::Message, String>>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let result =
                match tokio::time::timeout(SILENCE_LIMIT, wire::read_message(&mut reader)).await {
                    Ok(Ok(message)) => Ok(message),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("the neighbour was silent for {SILENCE_LIMIT:?}")),
                };
            let failed = result.is_err();
            if tx.send(result).await.is_err() || failed {
                return;
            }
        }
    });
    rx
}

/// A message's `type`, for error sentences.
fn kind(message: &wire::Message) -> &'static str {
    match message {
        wire::Message::Hello { .. } => "hello",
        wire::Message::Status { .. } => "status",
        wire::Message::Rows { .. } => "rows",
        wire::Message::Ack { .. } => "ack",
        wire::Message::Refused { .. } => "refused",
        wire::Message::Published { .. } => "published",
        wire::Message::Error { .. } => "error",
        wire::Message::Offer { .. } => "offer",
        wire::Message::Taken { .. } => "taken",
        wire::Message::Declined { .. } => "declined",
        wire::Message::Delivered { .. } => "delivered",
        wire::Message::Withdraw { .. } => "withdraw",
        wire::Message::Withdrawn { .. } => "withdrawn",
    }
}
