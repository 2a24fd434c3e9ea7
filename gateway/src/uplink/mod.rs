//! The MQTT uplink: drains the store's outbox to the broker with QoS 1,
//! keeps the retained gateway state, and receives downlinks.
//!
//! Shape (one job per file):
//! - [`config`]: `[mqtt]` settings and the broker URL.
//! - [`topics`]: the only place topic strings are built or parsed.
//! - [`payload`]: the JSON bodies (contract field names).
//! - [`outbox`]: the trait the store implements for us.
//! - `connection`: the task that owns rumqttc's event loop; reconnect with
//!   backoff (`backoff`), TLS (`tls`), error sentences.
//! - `publisher`: outbox → publish → PUBACK → mark published, state, shutdown;
//!   `window` maps packet ids to outbox seqs.
//! - [`incoming`]: downlinks/OTA commands with their ack handles.
//! - [`status`]: what the status page shows.
//!
//! Wiring (the daemon):
//! ```ignore
//! let (uplink, mut incoming) = Uplink::start(&cfg.mqtt, &gateway_id, system_version, store.clone(), shutdown.clone())?;
//! let waker = uplink.waker();            // ingest: waker.wake() after each commit
//! let status = uplink.status();          // web UI: watch::Receiver<UplinkStatus>
//! while let Some(msg) = incoming.recv().await { store it; msg.ack.ack().await }
//! uplink.finished().await;               // after `shutdown` is cancelled
//! ```

mod backoff;
pub mod config;
mod connection;
pub mod incoming;
pub mod outbox;
pub mod payload;
mod publisher;
pub mod status;
mod tls;
pub mod topics;
mod window;

use std::sync::Arc;

use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use config::{BrokerUrl, ConfigError, MqttConfig};
pub use incoming::{AckError, AckHandle, IncomingKind, IncomingMessage};
pub use outbox::{Outbox, OutboxError};
pub use status::{PublishLatency, UplinkStatus};
pub use topics::Topics;

pub(crate) use tls::https_client_config;

use connection::ConnectionSettings;
use payload::{StatePayload, Versions};
use publisher::{ExtraRequest, Publisher};
use window::Window;

/// The gateway software version reported in the state message.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Driver → publisher events buffered before the driver waits.
const DRIVER_EVENT_CAPACITY: usize = 4096;

/// Topics for one-off publishes outside the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtraTopic {
    /// `heartbeat`: the gateway's own signed heartbeat.
    Heartbeat,
    /// `receipt`: downlink delivery receipts / failures.
    Receipt,
    /// `ota/progress`.
    OtaProgress,
    /// A topic the caller built with [`Topics`]: rows relayed for a
    /// neighbour gateway go to that gateway's tree (`crate::peering`).
    Exact(String),
}

/// Why a one-off publish was not acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PublishError {
    #[error("not connected to the MQTT broker")]
    NotConnected,
    #[error("the MQTT connection was lost before the broker acknowledged it")]
    ConnectionLost,
    #[error("too many one-off publishes waiting for acknowledgement")]
    Busy,
    #[error("the uplink is stopping")]
    Stopped,
}

/// Wakes the publisher when new outbox rows exist (cheap, never blocks;
/// wake-ups coalesce).
#[derive(Debug, Clone)]
pub struct UplinkWaker(Arc<Notify>);

impl UplinkWaker {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// A running uplink. Stops when the `shutdown` token given to
/// [`Uplink::start`] is cancelled; await [`Uplink::finished`] then.
pub struct Uplink {
    waker: UplinkWaker,
    status: watch::Receiver<UplinkStatus>,
    extras: mpsc::Sender<ExtraRequest>,
    task: JoinHandle<()>,
}

impl Uplink {
    /// Validates the config and starts the connection driver and publisher
    /// tasks (needs a tokio runtime). Returns the uplink and the stream of
    /// backend publishes (downlinks, OTA commands); each must be acked by the
    /// consumer once stored.
    ///
    /// Does not wait for the broker: with no broker, messages stay in the
    /// outbox and the status says why.
    ///
    /// `system_version` is the appliance image's version for the `state`
    /// message (see [`Versions::system`]).
    pub fn start<O: Outbox>(
        config: &MqttConfig,
        gateway_id: &str,
        system_version: Option<String>,
        outbox: O,
        shutdown: CancellationToken,
    ) -> Result<(Uplink, mpsc::UnboundedReceiver<IncomingMessage>), ConfigError> {
        let broker = config.validate()?;
        let topics = Topics::new(&config.prefix, gateway_id)?;
        let versions = Versions {
            software: VERSION.to_string(),
            system: system_version,
        };
        let settings = ConnectionSettings {
            config: config.clone(),
            client_id: config.effective_client_id(gateway_id),
            will_topic: topics.state(),
            will_payload: StatePayload::last_will(&versions).to_json(),
            broker: broker.clone(),
        };
        let (status_tx, status_rx) = watch::channel(UplinkStatus {
            broker: broker.display(),
            since_ms: radio_bridge::link::unix_millis(std::time::SystemTime::now()),
            ..UplinkStatus::default()
        });
        let (incoming_tx, incoming_rx) = mpsc::unbounded_channel();
        let (driver_tx, driver_rx) = mpsc::channel(DRIVER_EVENT_CAPACITY);
        let (extras_tx, extras_rx) = mpsc::channel(64);
        let wake = Arc::new(Notify::new());
        let driver_stop = CancellationToken::new();
        let driver = tokio::spawn(connection::drive(settings, driver_tx, driver_stop.clone()));
        let max_inflight = usize::from(config.max_inflight);
        let publisher = Publisher {
            outbox,
            topics,
            versions,
            started: Instant::now(),
            state_interval: config.state_interval(),
            shutdown_grace: config.shutdown_grace(),
            window: Window::new(max_inflight),
            status: status_tx,
            incoming: incoming_tx,
            // Reads in pages of a few hundred rows: one read per message
            // window was a store round trip every 64 messages.
            read_ahead: (2 * max_inflight).max(256),
            mark_batch: (max_inflight / 4).max(1),
        };
        let task = tokio::spawn(publisher.run(
            driver_rx,
            extras_rx,
            wake.clone(),
            shutdown,
            driver_stop,
            driver,
        ));
        Ok((
            Uplink {
                waker: UplinkWaker(wake),
                status: status_rx,
                extras: extras_tx,
                task,
            },
            incoming_rx,
        ))
    }

    /// A handle for ingest to say "new rows in the outbox".
    pub fn waker(&self) -> UplinkWaker {
        self.waker.clone()
    }

    pub fn wake(&self) {
        self.waker.wake();
    }

    /// Connection state and counters; `changed()` fires on every update.
    pub fn status(&self) -> watch::Receiver<UplinkStatus> {
        self.status.clone()
    }

    /// A cloneable handle for one-off publishes.
    pub fn publisher(&self) -> ExtraPublisher {
        ExtraPublisher(self.extras.clone())
    }

    /// Publishes one message outside the outbox (QoS 1, not retained) and
    /// waits for its PUBACK. Not durable: on error, the caller decides
    /// whether to retry.
    pub async fn publish(&self, topic: ExtraTopic, payload: Vec<u8>) -> Result<(), PublishError> {
        self.publisher().publish(topic, payload).await
    }

    /// Waits until the uplink has stopped (after the shutdown token fired):
    /// outstanding PUBACKs awaited (bounded), `offline` published,
    /// disconnected.
    pub async fn finished(self) {
        if let Err(e) = self.task.await {
            tracing::error!("uplink task ended abnormally: {e}");
        }
    }
}

/// Sends one-off publishes through a running uplink.
#[derive(Debug, Clone)]
pub struct ExtraPublisher(mpsc::Sender<ExtraRequest>);

impl ExtraPublisher {
    /// See [`Uplink::publish`].
    pub async fn publish(&self, topic: ExtraTopic, payload: Vec<u8>) -> Result<(), PublishError> {
        self.enqueue(topic, payload).await?.await
    }

    /// Hands a publish to the uplink and returns the wait for its PUBACK,
    /// so a caller can keep several outstanding that are sent in the order
    /// they were enqueued (the relay of `crate::peering` does).
    pub async fn enqueue(
        &self,
        topic: ExtraTopic,
        payload: Vec<u8>,
    ) -> Result<impl std::future::Future<Output = Result<(), PublishError>>, PublishError> {
        let (done, result) = oneshot::channel();
        let request = ExtraRequest {
            topic,
            payload,
            done,
        };
        self.0
            .send(request)
            .await
            .map_err(|_| PublishError::Stopped)?;
        Ok(async move { result.await.unwrap_or(Err(PublishError::Stopped)) })
    }
}

impl std::fmt::Debug for ExtraRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtraRequest")
            .field("topic", &self.topic)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}
