//! One small task per radio link that owns the link's place in the gateway
//! and can swap the driver underneath it: the admin's "restart radio link".
//!
//! A link's driver consumes its transmit queue and its event sender when it
//! runs, so they cannot simply be handed to a new driver. The supervisor
//! keeps both ends the rest of the gateway holds (the scheduler's transmit
//! channel, the shared event channel into ingest) for the gateway's whole
//! life and gives each incarnation of the driver a private pair, relaying
//! between them. A restart therefore changes nothing anyone else can see
//! except the event "Radio X restarted by admin".
//!
//! A restart is gentle, in three steps:
//! 1. drain: stop handing the driver new transmissions (they wait in the
//!    scheduler's channel) and wait, bounded by [`DRAIN_LIMIT`], until
//!    every transmission already handed over is answered with `TxDone`, so
//!    nothing is cut off on air;
//! 2. stop: cancel the driver and relay whatever it still reports until it
//!    has dropped its event sender (a GWMP socket or a serial port is then
//!    closed, so the new driver can open the same one);
//! 3. rebuild the driver from its recipe ([`Rebuild`]), carry its counters
//!    over (the page's totals must not fall back to zero) and start it.
//!
//! A shutdown (SIGTERM, or the reboot into an installed update) does steps
//! 1 and 2 too, with a shorter bound ([`SHUTDOWN_DRAIN_LIMIT`]): the gateway
//! stops only once nothing it sent is still on air.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use radio_bridge::link::{emit, Link, LinkCounters, LinkEvent, Transmit, TxError};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use crate::state::GatewayState;

/// How long a restart waits for transmissions already handed to the driver.
/// Longer than any driver's own verdict timeout (GWMP waits 5 s for a
/// TX_ACK, an RNode 0.5 s for READY), so it only bites on a wedged driver.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// How long a shutdown waits for transmissions already handed to a driver:
/// a frame on air is answered within milliseconds (an RNode's READY, a
/// forwarder's TX_ACK); this only bites on a silent concentrator, and it
/// keeps the whole shutdown within [`crate::shutdown::GRACE`].
const SHUTDOWN_DRAIN_LIMIT: Duration = Duration::from_secs(3);

/// How long a stopped driver may take to let go of its device.
const STOP_LIMIT: Duration = Duration::from_secs(5);

/// Transmissions handed to one driver at a time; the rest wait in the
/// scheduler's channel, where a restart does not disturb them.
const DRIVER_TRANSMIT_QUEUE: usize = 4;

/// Events a driver may report before the supervisor relays them on.
const DRIVER_EVENT_QUEUE: usize = 256;

/// Events relayed per wake-up of the supervisor at most.
const RELAY_BATCH: usize = 64;

/// Builds a fresh driver for a restart, from the same settings as the first.
pub type Rebuild = Box<dyn Fn() -> Box<dyn Link> + Send + Sync>;

/// Why a restart did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestartError {
    #[error("there is no radio link called \u{201c}{0}\u{201d} on this gateway")]
    UnknownLink(String),
    #[error("radio link \u{201c}{0}\u{201d} cannot be restarted: it was not built from the configuration")]
    NotRestartable(String),
    #[error("the gateway is shutting down")]
    ShuttingDown,
}

type RestartRequest = oneshot::Sender<Result<(), RestartError>>;

/// The handle the admin page uses: restart a link by name.
#[derive(Clone, Default)]
pub struct LinkControl {
    links: Arc<BTreeMap<String, mpsc::Sender<RestartRequest>>>,
}

impl LinkControl {
    /// Restarts the named link and returns once the new driver runs.
    pub async fn restart(&self, name: &str) -> Result<(), RestartError> {
        let Some(supervisor) = self.links.get(name) else {
            return Err(RestartError::UnknownLink(name.to_string()));
        };
        let (reply, answer) = oneshot::channel();
        supervisor
            .send(reply)
            .await
            .map_err(|_| RestartError::ShuttingDown)?;
        answer.await.unwrap_or(Err(RestartError::ShuttingDown))
    }
}

/// Collects supervisors while the daemon starts them, then becomes a [`LinkControl`].
#[derive(Default)]
pub struct LinkControlBuilder {
    links: BTreeMap<String, mpsc::Sender<RestartRequest>>,
}

impl LinkControlBuilder {
    pub fn build(self) -> LinkControl {
        LinkControl {
            links: Arc::new(self.links),
        }
    }
}

/// A supervised link, ready to run.
pub struct Supervisor {
    name: String,
    rebuild: Option<Rebuild>,
    state: Arc<GatewayState>,
    events: mpsc::Sender<LinkEvent>,
    transmit: mpsc::Receiver<Transmit>,
    restarts: mpsc::Receiver<RestartRequest>,
    shutdown: CancellationToken,
}

impl Supervisor {
    /// A supervisor for the link called `name` (already registered in
    /// `state`), its restart handle registered in `control`.
    pub fn new(
        name: &str,
        rebuild: Option<Rebuild>,
        state: Arc<GatewayState>,
        events: mpsc::Sender<LinkEvent>,
        transmit: mpsc::Receiver<Transmit>,
        control: &mut LinkControlBuilder,
        shutdown: CancellationToken,
    ) -> Supervisor {
        let name = name.to_string();
        let (restart_tx, restarts) = mpsc::channel(4);
        control.links.insert(name.clone(), restart_tx);
        Supervisor {
            name,
            rebuild,
            state,
            events,
            transmit,
            restarts,
            shutdown,
        }
    }

    /// Runs `first`, and its successors, until shutdown.
    pub async fn run(mut self, first: Box<dyn Link>) {
        let mut driver = self.launch(first);
        let mut transmit_open = true;
        // Events are relayed in batches: under a flood this task then wakes
        // once per batch rather than once per frame.
        let mut relaying = Vec::with_capacity(RELAY_BATCH);
        loop {
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break,
                Some(reply) = self.restarts.recv() => {
                    let outcome = self.restart(&mut driver).await;
                    let _ = reply.send(outcome);
                }
                n = driver.events.recv_many(&mut relaying, RELAY_BATCH), if !driver.ended => {
                    // The contract says drivers run until shutdown; if one
                    // ends anyway, answer its transmissions ourselves.
                    driver.ended = n == 0;
                    for event in relaying.drain(..) {
                        self.relay(&mut driver, event).await;
                    }
                }
                request = self.transmit.recv(), if transmit_open && driver.has_room() => match request {
                    Some(request) => self.hand_over(&mut driver, request).await,
                    None => transmit_open = false,
                },
            }
        }
        // A shutdown (SIGTERM, or the reboot into an update) is a safe
        // point only once nothing is on air: the driver keeps running until
        // what it was handed is answered (bounded), then stops. Closing its
        // transmit queue first tells it nothing more is coming, so it
        // answers at once what it only held back for later and never put
        // on air (GWMP: acks waiting for a forwarder to ask for them).
        driver.transmit = None;
        self.finish_transmissions(&mut driver, SHUTDOWN_DRAIN_LIMIT, false)
            .await;
        self.stop_driver(&mut driver).await;
    }

    fn launch(&self, link: Box<dyn Link>) -> Driver {
        let (transmit_tx, transmit_rx) = mpsc::channel(DRIVER_TRANSMIT_QUEUE);
        let (events_tx, events_rx) = mpsc::channel(DRIVER_EVENT_QUEUE);
        // Not a child of `shutdown`: the supervisor stops the driver itself,
        // after its transmissions in flight are answered.
        let stop = CancellationToken::new();
        let counters = link.counters();
        let task = tokio::spawn(link.run(events_tx, transmit_rx, stop.clone()));
        Driver {
            stop,
            task,
            transmit: Some(transmit_tx),
            events: events_rx,
            in_flight: HashSet::new(),
            counters,
            ended: false,
        }
    }

    /// Passes a driver's event on to ingest, noting answered transmissions.
    async fn relay(&self, driver: &mut Driver, event: LinkEvent) {
        if let LinkEvent::TxDone { id, .. } = &event {
            driver.in_flight.remove(id);
        }
        emit(&self.events, &self.shutdown, event).await;
    }

    async fn hand_over(&self, driver: &mut Driver, request: Transmit) {
        let id = request.id;
        let handed = driver
            .transmit
            .as_ref()
            .is_some_and(|transmit| transmit.try_send(request).is_ok());
        if driver.ended || !handed {
            // Only a driver that stopped refuses (the room was checked and
            // the supervisor is the only sender): answer as it would have.
            let event = LinkEvent::TxDone {
                link: self.name.clone(),
                id,
                result: Err(TxError::NotConnected),
            };
            emit(&self.events, &self.shutdown, event).await;
            return;
        }
        driver.in_flight.insert(id);
    }

    /// Relays the driver's events until every transmission handed to it is
    /// answered, or `limit` passes. With `yield_to_shutdown`, a shutdown
    /// interrupts the wait (returns false).
    async fn finish_transmissions(
        &self,
        driver: &mut Driver,
        limit: Duration,
        yield_to_shutdown: bool,
    ) -> bool {
        let deadline = Instant::now() + limit;
        while !driver.in_flight.is_empty() && !driver.ended {
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled(), if yield_to_shutdown => return false,
                event = driver.events.recv() => match event {
                    Some(event) => self.relay(driver, event).await,
                    None => driver.ended = true,
                },
                _ = sleep_until(deadline) => {
                    tracing::warn!(link = %self.name, open = driver.in_flight.len(),
                        "transmissions still unanswered after {limit:?}; stopping the driver anyway");
                    break;
                }
            }
        }
        true
    }

    /// Cancels the driver and relays what it still reports until it lets go
    /// of its device (bounded by [`STOP_LIMIT`], then aborted).
    async fn stop_driver(&self, driver: &mut Driver) {
        driver.stop.cancel();
        let stopped = tokio::time::timeout(STOP_LIMIT, async {
            while let Some(event) = driver.events.recv().await {
                self.relay(driver, event).await;
            }
            let _ = (&mut driver.task).await;
        })
        .await;
        if stopped.is_err() {
            tracing::warn!(link = %self.name, "driver did not stop within {STOP_LIMIT:?}; aborting it");
            driver.task.abort();
        }
    }

    async fn restart(&self, driver: &mut Driver) -> Result<(), RestartError> {
        let Some(rebuild) = &self.rebuild else {
            return Err(RestartError::NotRestartable(self.name.clone()));
        };
        tracing::info!(link = %self.name, "restart asked for: finishing transmissions in flight");
        if !self.finish_transmissions(driver, DRAIN_LIMIT, true).await {
            return Err(RestartError::ShuttingDown);
        }
        self.stop_driver(driver).await;
        let link = rebuild();
        carry_over(&driver.counters, &link.counters());
        self.state
            .replace_link_counters(&self.name, link.counters());
        *driver = self.launch(link);
        self.state.event(
            "link_restart",
            "info",
            format!("Radio {} restarted by admin", self.name),
        );
        Ok(())
    }
}

/// One incarnation of a link's driver.
struct Driver {
    stop: CancellationToken,
    task: JoinHandle<()>,
    /// `None` once shutdown began: nothing more is handed over.
    transmit: Option<mpsc::Sender<Transmit>>,
    events: mpsc::Receiver<LinkEvent>,
    /// Transmissions handed over and not yet answered with `TxDone`.
    in_flight: HashSet<u64>,
    counters: Arc<LinkCounters>,
    /// The driver dropped its event sender (it stopped).
    ended: bool,
}

/// A driver whose supervisor is gone (aborted after the shutdown grace)
/// must not outlive it holding the device.
impl Drop for Driver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Driver {
    /// Whether a transmission can be handed over without waiting. Waiting
    /// here would stop the relaying of events, which a driver blocked on a
    /// full event queue needs before it reads transmissions again.
    fn has_room(&self) -> bool {
        self.ended || self.transmit.as_ref().is_some_and(|t| t.capacity() > 0)
    }
}

/// Adds a stopped driver's totals to its successor's fresh counters, so
/// totals on the page and in `/metrics` keep counting up across a restart.
fn carry_over(from: &LinkCounters, to: &LinkCounters) {
    let pairs = [
        (&from.frames_received, &to.frames_received),
        (&from.bad_crc, &to.bad_crc),
        (&from.malformed, &to.malformed),
        (&from.partial_dropped, &to.partial_dropped),
        (&from.device_errors, &to.device_errors),
        (&from.tx_ok, &to.tx_ok),
        (&from.tx_failed, &to.tx_failed),
        (&from.disconnects, &to.disconnects),
        (&from.tx_held, &to.tx_held),
        (&from.tx_too_late, &to.tx_too_late),
    ];
    for (old, new) in pairs {
        new.fetch_add(old.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use radio_bridge::gwmp::{parse, Datagram, Eui, GwmpConfig};
    use radio_bridge::link::RadioParams;
    use tokio::time::timeout;

    use super::*;
    use crate::daemon::bound_gwmp_link;
    use crate::neighbors::NeighborTable;

    const LIMIT: Duration = Duration::from_secs(10);

    /// A supervised GWMP driver on a real UDP port, one frame handed to it
    /// and on air, and the forwarder's socket, by hand: the test decides
    /// when the TX_ACK goes back.
    struct OnAir {
        control: LinkControl,
        shutdown: CancellationToken,
        supervised: JoinHandle<()>,
        events: mpsc::Receiver<LinkEvent>,
        forwarder: tokio::net::UdpSocket,
        gateway: Eui,
        token: u16,
        _transmit: mpsc::Sender<Transmit>,
    }

    impl OnAir {
        async fn start() -> OnAir {
            let (spec, addr) = bound_gwmp_link(
                GwmpConfig::new("g", "127.0.0.1:0".parse().unwrap()),
                RadioParams::default(),
            )
            .await
            .unwrap();
            let state = Arc::new(GatewayState::new("gw".into(), NeighborTable::new()));
            state.add_link("g", "gwmp", spec.link.counters());
            let (events_tx, events) = mpsc::channel(64);
            let (transmit, transmit_rx) = mpsc::channel(8);
            let mut control = LinkControlBuilder::default();
            let shutdown = CancellationToken::new();
            let supervisor = Supervisor::new(
                "g",
                spec.rebuild,
                state.clone(),
                events_tx,
                transmit_rx,
                &mut control,
                shutdown.clone(),
            );
            let control = control.build();
            let supervised = tokio::spawn(supervisor.run(spec.link));
            let gateway = Eui([3; 8]);
            let forwarder = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            forwarder.connect(addr).await.unwrap();
            forwarder
                .send(&Datagram::PullData { token: 1, gateway }.to_bytes())
                .await
                .unwrap();
            assert!(matches!(
                receive(&forwarder).await,
                Datagram::PullAck { token: 1 }
            ));
            transmit
                .send(Transmit {
                    id: 9,
                    bytes: vec![1, 2, 3],
                    params: RadioParams::default(),
                    via: None,
                })
                .await
                .unwrap();
            let Datagram::PullResp { token, .. } = receive(&forwarder).await else {
                panic!("expected the PULL_RESP");
            };
            OnAir {
                control,
                shutdown,
                supervised,
                events,
                forwarder,
                gateway,
                token,
                _transmit: transmit,
            }
        }

        async fn tx_ack(&self) {
            let ack = Datagram::TxAck {
                token: self.token,
                gateway: self.gateway,
                payload: None,
            };
            self.forwarder.send(&ack.to_bytes()).await.unwrap();
        }

        /// The outcome the driver reported for the frame on air.
        fn outcome(&mut self) -> Option<Result<(), TxError>> {
            let mut outcome = None;
            while let Ok(event) = self.events.try_recv() {
                if let LinkEvent::TxDone { id: 9, result, .. } = event {
                    outcome = Some(result);
                }
            }
            outcome
        }
    }

    async fn receive(forwarder: &tokio::net::UdpSocket) -> Datagram {
        let mut buf = vec![0u8; 65_535];
        let len = timeout(LIMIT, forwarder.recv(&mut buf))
            .await
            .expect("a datagram from the gateway")
            .unwrap();
        parse(&buf[..len]).unwrap()
    }

    /// Single-threaded runtime: lets every ready task run its course.
    async fn settle() {
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
    }

    /// The forwarder holds back its TX_ACK: the restart must wait for it.
    #[tokio::test]
    async fn a_restart_waits_for_the_transmission_in_flight() {
        let mut on_air = OnAir::start().await;
        let control = on_air.control.clone();
        let restart = tokio::spawn({
            let control = control.clone();
            async move { control.restart("g").await }
        });
        settle().await;
        assert!(
            !restart.is_finished(),
            "the restart went ahead while a transmission was on air"
        );
        on_air.tx_ack().await;
        timeout(LIMIT, restart)
            .await
            .expect("restart finishes once the transmission is answered")
            .unwrap()
            .expect("restart succeeds");
        assert_eq!(
            on_air.outcome(),
            Some(Ok(())),
            "the old driver saw its TX_ACK before it stopped"
        );
        assert_eq!(
            control.restart("nope").await,
            Err(RestartError::UnknownLink("nope".into()))
        );
        on_air.shutdown.cancel();
        timeout(LIMIT, on_air.supervised).await.unwrap().unwrap();
    }

    /// A shutdown (SIGTERM, or the reboot into an update) is a safe point
    /// only once the frame on air is answered.
    #[tokio::test]
    async fn a_shutdown_waits_for_the_transmission_in_flight() {
        let mut on_air = OnAir::start().await;
        on_air.shutdown.cancel();
        settle().await;
        assert!(
            !on_air.supervised.is_finished(),
            "the link stopped while a transmission was on air"
        );
        on_air.tx_ack().await;
        timeout(LIMIT, &mut on_air.supervised)
            .await
            .expect("the link stops once the transmission is answered")
            .unwrap();
        assert_eq!(
            on_air.outcome(),
            Some(Ok(())),
            "the TX_ACK was heard before the stop"
        );
    }

    #[test]
    fn counters_carry_over_to_the_new_driver() {
        let old = LinkCounters::default();
        LinkCounters::bump(&old.frames_received);
        LinkCounters::bump(&old.frames_received);
        LinkCounters::bump(&old.tx_failed);
        let new = LinkCounters::default();
        LinkCounters::bump(&new.frames_received);
        carry_over(&old, &new);
        let s = new.snapshot();
        assert_eq!(s.frames_received, 3);
        assert_eq!(s.tx_failed, 1);
        assert_eq!(s.bad_crc, 0);
    }
}
