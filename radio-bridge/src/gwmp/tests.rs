//! The GWMP link over real UDP sockets on 127.0.0.1, driven by the packet
//! forwarder emulator (and by raw sockets where a test needs to send what
//! no forwarder would).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::link::{
    Link, LinkCounters, LinkCountersSnapshot, LinkEvent, LinkState, RadioParams, RxFrame, Transmit,
    TxError,
};
use crate::simulator::packet_forwarder::{PacketForwarder, PacketForwarderConfig};

/// Bound for every wait: generous, since it only matters when a test fails.
const WAIT: Duration = Duration::from_secs(5);

const GW_A: Eui = Eui([0xA0, 0, 0, 0, 0, 0, 0, 0x0A]);
const GW_B: Eui = Eui([0xB0, 0, 0, 0, 0, 0, 0, 0x0B]);

fn config() -> GwmpConfig {
    GwmpConfig::new("gw-test", "127.0.0.1:0".parse().unwrap())
}

/// A running link and the ends of its channels.
struct Running {
    addr: SocketAddr,
    counters: Arc<LinkCounters>,
    events: mpsc::Receiver<LinkEvent>,
    transmit: mpsc::Sender<Transmit>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

async fn start(config: GwmpConfig) -> Running {
    let link = GwmpLink::bind(config).await.expect("bind 127.0.0.1:0");
    let addr = link.local_addr().expect("bound link knows its address");
    start_link(link, addr)
}

fn start_link(link: GwmpLink, addr: SocketAddr) -> Running {
    let counters = link.counters();
    let (events_tx, events) = mpsc::channel(64);
    let (transmit, transmit_rx) = mpsc::channel(16);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(Box::new(link).run(events_tx, transmit_rx, shutdown.clone()));
    Running {
        addr,
        counters,
        events,
        transmit,
        shutdown,
        task,
    }
}

impl Running {
    async fn forwarder(&self, gateway: Eui) -> PacketForwarder {
        self.forwarder_with(gateway, |_| {}).await
    }

    async fn forwarder_with(
        &self,
        gateway: Eui,
        adjust: impl FnOnce(&mut PacketForwarderConfig),
    ) -> PacketForwarder {
        let mut config = PacketForwarderConfig::new(self.addr, gateway);
        // Tests send keep-alives explicitly; the automatic one at start
        // is enough to open the downlink path.
        config.keepalive = Duration::from_secs(3600);
        adjust(&mut config);
        let forwarder = PacketForwarder::start(config)
            .await
            .expect("start emulator");
        // Its first PULL_DATA is acked: the link knows the downlink path.
        timeout(WAIT, forwarder.wait_until(|s| s.pull_acks >= 1))
            .await
            .expect("PULL_ACK for the forwarder's first PULL_DATA");
        forwarder
    }

    async fn next_event(&mut self, waiting_for: &str) -> LinkEvent {
        match timeout(WAIT, self.events.recv()).await {
            Ok(Some(event)) => event,
            Ok(None) => panic!("link stopped while waiting for {waiting_for}"),
            Err(_) => panic!("no event within {WAIT:?} while waiting for {waiting_for}"),
        }
    }

    async fn next_frame(&mut self) -> RxFrame {
        loop {
            match self.next_event("a received frame").await {
                LinkEvent::Received(frame) => return frame,
                LinkEvent::State { .. } => continue,
                other => panic!("expected a frame, got {other:?}"),
            }
        }
    }

    async fn state(&mut self, wanted: &LinkState) {
        loop {
            if let LinkEvent::State { state, .. } = self.next_event(&format!("{wanted:?}")).await {
                if &state == wanted {
                    return;
                }
            }
        }
    }

    /// Sends a frame for everyone (no `via`) and waits for its answer.
    async fn send(&mut self, id: u64, bytes: &[u8]) -> Result<(), TxError> {
        self.send_via(id, bytes, None).await
    }

    /// Sends a frame meant for a device heard through `via` and waits for
    /// its answer.
    async fn send_via(&mut self, id: u64, bytes: &[u8], via: Option<Eui>) -> Result<(), TxError> {
        let request = Transmit {
            id,
            bytes: bytes.to_vec(),
            params: RadioParams::default(),
            via: via.map(|eui| eui.to_string()),
        };
        self.transmit
            .send(request)
            .await
            .expect("link takes requests");
        self.tx_done(id).await
    }

    /// Hands a frame for everyone to the link without waiting for its answer.
    async fn hand_over(&mut self, id: u64, bytes: &[u8]) {
        let request = Transmit {
            id,
            bytes: bytes.to_vec(),
            params: RadioParams::default(),
            via: None,
        };
        self.transmit
            .send(request)
            .await
            .expect("link takes requests");
    }

    /// Closes the transmit queue, as a stopping gateway does.
    fn close_transmit(&mut self) {
        let (closed, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.transmit, closed));
    }

    async fn tx_done(&mut self, wanted: u64) -> Result<(), TxError> {
        loop {
            match self.next_event(&format!("TxDone {wanted}")).await {
                LinkEvent::TxDone { id, result, link } if id == wanted => {
                    assert_eq!(link, "gw-test");
                    return result;
                }
                LinkEvent::TxDone { id, .. } => panic!("TxDone for {id}, expected {wanted}"),
                _ => continue,
            }
        }
    }

    fn counters(&self) -> LinkCountersSnapshot {
        self.counters.snapshot()
    }

    async fn stop(self) {
        self.shutdown.cancel();
        timeout(WAIT, self.task)
            .await
            .expect("link stops on shutdown")
            .expect("link task did not panic");
    }
}

async fn acked(forwarder: &PacketForwarder, token: std::io::Result<u16>) {
    let token = token.expect("emulator sends");
    timeout(WAIT, forwarder.wait_push_ack(token))
        .await
        .unwrap_or_else(|_| panic!("no PUSH_ACK for token {token}"));
}

#[tokio::test]
async fn push_data_is_acked_with_its_token_and_delivered_with_metadata() {
    let mut link = start(config()).await;
    let forwarder = link.forwarder(GW_A).await;

    let before = crate::link::unix_millis(std::time::SystemTime::now());
    let token = forwarder.inject(b"seed frame", -87.0, 6.25).await;
    acked(&forwarder, token).await;
    let frame = link.next_frame().await;

    assert_eq!(frame.bytes, b"seed frame");
    let meta = frame.meta;
    assert_eq!(meta.link, "gw-test");
    assert_eq!(meta.rssi, Some(-87.0));
    assert_eq!(meta.snr, Some(6.25));
    assert_eq!(meta.freq_hz, Some(869_525_000));
    assert_eq!(meta.sf, Some(9));
    assert_eq!(meta.bandwidth_hz, Some(125_000));
    assert!(
        meta.received_at_ms >= before,
        "reception time is the gateway clock"
    );
    assert_eq!(forwarder.stats().push_acks, 1);
    assert_eq!(link.counters().frames_received, 1);
    link.stop().await;
}

#[tokio::test]
async fn bad_crc_is_counted_and_dropped() {
    let mut link = start(config()).await;
    let forwarder = link.forwarder(GW_A).await;

    acked(
        &forwarder,
        forwarder.inject_bad_crc(b"corrupt", -120.0, -15.0).await,
    )
    .await;
    acked(&forwarder, forwarder.inject(b"fine", -60.0, 9.0).await).await;

    // Frames leave in order, so the first one seen proves the bad one was dropped.
    assert_eq!(link.next_frame().await.bytes, b"fine");
    let counters = link.counters();
    assert_eq!(counters.bad_crc, 1);
    assert_eq!(counters.frames_received, 1);
    assert_eq!(counters.malformed, 0);
    link.stop().await;
}

#[tokio::test]
async fn one_push_data_with_mixed_packets_keeps_the_good_ones() {
    let mut link = start(config()).await;
    let forwarder = link.forwarder(GW_A).await;
    let params = RadioParams::default();
    let packet = |bytes: &[u8], crc| RxPk::lora(bytes, &params, -70.0, 3.0, crc, 1);

    let mut bad_base64 = packet(b"x", CrcStatus::Ok);
    bad_base64.data = "not base64!".into();
    let mut wrong_size = packet(b"abc", CrcStatus::Ok);
    wrong_size.size = Some(4);
    let payload = PushPayload {
        rxpk: vec![
            packet(b"first", CrcStatus::Ok),
            bad_base64,
            packet(b"bad crc", CrcStatus::Bad),
            wrong_size,
            packet(b"no crc", CrcStatus::None),
        ],
        stat: Some(Stat {
            rxnb: Some(5),
            ..Stat::default()
        }),
    };
    acked(&forwarder, forwarder.push(payload).await).await;

    assert_eq!(link.next_frame().await.bytes, b"first");
    assert_eq!(
        link.next_frame().await.bytes,
        b"no crc",
        "stat 0 (no CRC) is accepted"
    );
    let counters = link.counters();
    assert_eq!(counters.frames_received, 2);
    assert_eq!(counters.bad_crc, 1);
    assert_eq!(counters.malformed, 2);
    link.stop().await;
}

#[tokio::test]
async fn junk_datagrams_are_counted_and_the_link_keeps_working() {
    let mut link = start(config()).await;
    let forwarder = link.forwarder(GW_A).await;
    let stranger = UdpSocket::bind("127.0.0.1:0").await.unwrap();

    let mut push_header = vec![2, 0, 1, 0];
    push_header.extend_from_slice(&GW_A.0);
    let junk: Vec<Vec<u8>> = vec![
        vec![],
        vec![2],
        vec![1, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0],
        vec![2, 0, 0, 0x42],
        vec![2, 0, 0, 2, 0xA0],
        [push_header.as_slice(), b"{\"rxpk\":[".as_slice()].concat(),
        [push_header.as_slice(), b"\xc3\x28".as_slice()].concat(),
        push_header.clone(),
        // Datagrams only a server sends.
        Datagram::PushAck { token: 1 }.to_bytes(),
        Datagram::PullAck { token: 2 }.to_bytes(),
        vec![0xFF; 2000],
    ];
    for bytes in &junk {
        forwarder.send_raw(bytes).await.unwrap();
        stranger.send_to(bytes, link.addr).await.unwrap();
    }
    acked(
        &forwarder,
        forwarder.inject(b"still here", -50.0, 10.0).await,
    )
    .await;

    assert_eq!(link.next_frame().await.bytes, b"still here");
    let counters = link.counters();
    assert_eq!(counters.malformed, 2 * junk.len() as u64);
    assert_eq!(counters.frames_received, 1);
    assert_eq!(forwarder.stats().push_acks, 1, "junk is never acked");
    link.stop().await;
}

#[tokio::test]
async fn two_forwarders_at_once() {
    let mut link = start(config()).await;
    let a = link.forwarder(GW_A).await;
    let b = link.forwarder(GW_B).await;

    acked(&a, a.inject(b"via a", -40.0, 8.0).await).await;
    acked(&b, b.inject(b"via b", -90.0, -2.0).await).await;
    acked(&a, a.inject(b"via a again", -41.0, 7.5).await).await;

    let mut heard = Vec::new();
    for _ in 0..3 {
        let frame = link.next_frame().await;
        heard.push((frame.bytes, frame.meta.rssi));
    }
    heard.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        heard,
        vec![
            (b"via a".to_vec(), Some(-40.0)),
            (b"via a again".to_vec(), Some(-41.0)),
            (b"via b".to_vec(), Some(-90.0)),
        ]
    );
    assert_eq!(a.stats().push_acks, 2);
    assert_eq!(b.stats().push_acks, 1);
    link.stop().await;
}

#[tokio::test]
async fn pull_data_is_answered_with_pull_ack() {
    let link = start(config()).await;
    let forwarder = link.forwarder(GW_A).await;
    let token = forwarder.pull_data().await.unwrap();
    timeout(WAIT, forwarder.wait_pull_ack(token))
        .await
        .expect("PULL_ACK with the PULL_DATA token");
    assert!(forwarder.stats().pull_acks >= 1);
    link.stop().await;
}

#[tokio::test]
async fn transmit_reaches_the_forwarder_and_tx_ack_none_is_success() {
    let mut link = start(config()).await;
    let forwarder = link.forwarder(GW_A).await;
    let mut air = forwarder.subscribe_downlinks();

    assert_eq!(link.send(7, b"answer for a device").await, Ok(()));

    let heard = timeout(WAIT, air.recv())
        .await
        .expect("downlink on air")
        .expect("downlink channel open");
    assert_eq!(heard.bytes, b"answer for a device");
    let txpk = heard.txpk;
    assert!(txpk.imme);
    assert_eq!(txpk.ipol, Some(false), "Seed devices listen with normal IQ");
    assert_eq!(txpk.radio_params(), Some(RadioParams::default()));
    assert_eq!(txpk.datr, datr::DataRate::Lora("SF9BW125".into()));
    assert_eq!(txpk.codr.as_deref(), Some("4/5"));
    assert_eq!(forwarder.stats().tx_acks_sent, 1);
    let counters = link.counters();
    assert_eq!((counters.tx_ok, counters.tx_failed), (1, 0));
    link.stop().await;
}

#[tokio::test]
async fn tx_ack_too_late_is_a_rejection() {
    let mut link = start(config()).await;
    let forwarder = link
        .forwarder_with(GW_A, |c| c.tx_ack = Some(TxAckCode::TooLate))
        .await;

    assert_eq!(
        link.send(8, b"late").await,
        Err(TxError::Rejected("TOO_LATE".into()))
    );
    let counters = link.counters();
    assert_eq!(counters.device_errors, 1);
    assert_eq!(counters.tx_failed, 1);
    assert_eq!(counters.tx_ok, 0);

    forwarder.set_tx_ack(Some(TxAckCode::None));
    assert_eq!(link.send(9, b"on time").await, Ok(()));
    link.stop().await;
}

#[tokio::test]
async fn what_comes_before_the_first_pull_data_is_held_and_then_sent() {
    let mut link = start(config()).await;
    for id in [1, 2] {
        let request = Transmit {
            id,
            bytes: b"ack before any forwarder".to_vec(),
            params: RadioParams::default(),
            via: (id == 2).then(|| GW_A.to_string()),
        };
        link.transmit.send(request).await.unwrap();
    }
    // The forwarder's first PULL_DATA, a moment after the (re)start.
    let forwarder = link.forwarder(GW_A).await;
    assert_eq!(link.tx_done(1).await, Ok(()));
    assert_eq!(link.tx_done(2).await, Ok(()));
    assert_eq!(forwarder.stats().pull_resps, 2);
    let counters = link.counters();
    assert_eq!((counters.tx_held, counters.tx_too_late), (2, 0));
    assert_eq!((counters.tx_ok, counters.tx_failed), (2, 0));
    link.stop().await;
}

#[tokio::test]
async fn what_is_held_is_answered_at_once_when_the_transmit_queue_closes() {
    // A stopping gateway closes the queue; a held frame never went on air,
    // so waiting out the hold (an hour here) would only delay the stop.
    let mut config = config();
    config.hold_without_forwarder = Duration::from_secs(3600);
    let mut link = start(config).await;
    link.hand_over(1, b"held").await;
    timeout(WAIT, async {
        while link.counters().tx_held == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the frame is held: no forwarder has asked");
    link.close_transmit();
    assert_eq!(link.tx_done(1).await, Err(TxError::NotConnected));
    assert_eq!(link.counters().tx_too_late, 1);
    link.stop().await;
}

#[tokio::test]
async fn no_forwarder_within_the_hold_means_not_connected_and_counted() {
    let mut config = config();
    config.hold_without_forwarder = Duration::from_millis(100);
    let mut link = start(config).await;
    assert_eq!(link.send(1, b"nobody").await, Err(TxError::NotConnected));
    assert_eq!(link.counters().tx_too_late, 1);

    // Heard through PUSH_DATA only: still no downlink path.
    let pusher = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let push = Datagram::PushData {
        token: 3,
        gateway: GW_A,
        payload: PushPayload {
            rxpk: vec![RxPk::lora(
                b"up",
                &RadioParams::default(),
                -1.0,
                1.0,
                CrcStatus::Ok,
                0,
            )],
            stat: None,
        },
    };
    pusher.send_to(&push.to_bytes(), link.addr).await.unwrap();
    link.next_frame().await;
    assert_eq!(
        link.send(2, b"still nobody").await,
        Err(TxError::NotConnected)
    );
    let counters = link.counters();
    assert_eq!(
        (counters.tx_failed, counters.tx_held, counters.tx_too_late),
        (2, 2, 2)
    );
    link.stop().await;
}

#[tokio::test]
async fn a_frame_for_a_device_goes_through_the_forwarder_that_heard_it() {
    let mut link = start(config()).await;
    let a = link.forwarder(GW_A).await;
    let b = link.forwarder(GW_B).await; // started (and pulled) after A

    assert_eq!(link.send_via(1, b"to a", Some(GW_A)).await, Ok(()));
    assert_eq!((a.stats().pull_resps, b.stats().pull_resps), (1, 0));
    link.stop().await;
}

#[tokio::test]
async fn a_frame_via_an_unknown_forwarder_follows_the_most_recent_pull_data() {
    let mut link = start(config()).await;
    let a = link.forwarder(GW_A).await;
    let b = link.forwarder(GW_B).await; // started (and pulled) after A
    let gone = Some(Eui([0xC0, 0, 0, 0, 0, 0, 0, 0x0C]));

    assert_eq!(link.send_via(1, b"to b", gone).await, Ok(()));
    assert_eq!((a.stats().pull_resps, b.stats().pull_resps), (0, 1));

    let token = a.pull_data().await.unwrap();
    timeout(WAIT, a.wait_pull_ack(token))
        .await
        .expect("PULL_ACK");
    assert_eq!(link.send_via(2, b"to a", gone).await, Ok(()));
    assert_eq!((a.stats().pull_resps, b.stats().pull_resps), (1, 1));
    link.stop().await;
}

#[tokio::test]
async fn a_frame_for_everyone_goes_through_every_forwarder_and_is_answered_once() {
    let mut link = start(config()).await;
    let a = link.forwarder(GW_A).await;
    let b = link.forwarder(GW_B).await;

    assert_eq!(link.send(1, b"hello all").await, Ok(()));
    assert_eq!((a.stats().pull_resps, b.stats().pull_resps), (1, 1));
    assert_eq!((a.stats().tx_acks_sent, b.stats().tx_acks_sent), (1, 1));
    // One request, one answer: the next answer is for the next request.
    assert_eq!(link.send(2, b"hello again").await, Ok(()));
    let counters = link.counters();
    assert_eq!((counters.tx_ok, counters.tx_failed), (2, 0));
    link.stop().await;
}

#[tokio::test]
async fn a_frame_for_everyone_is_sent_if_any_forwarder_sends_it() {
    let mut link = start(config()).await;
    let a = link
        .forwarder_with(GW_A, |c| c.tx_ack = Some(TxAckCode::TooLate))
        .await;
    let b = link.forwarder(GW_B).await;

    assert_eq!(link.send(1, b"hello all").await, Ok(()));
    let counters = link.counters();
    assert_eq!(counters.device_errors, 1, "A's refusal is counted");
    assert_eq!((counters.tx_ok, counters.tx_failed), (1, 0));

    b.set_tx_ack(Some(TxAckCode::TooLate));
    assert_eq!(
        link.send(2, b"nobody takes it").await,
        Err(TxError::Rejected("TOO_LATE".into()))
    );
    assert_eq!(link.counters().tx_failed, 1);
    drop(a);
    link.stop().await;
}

#[tokio::test]
async fn a_pinned_gateway_gets_every_downlink() {
    let mut config = config();
    config.downlink_gateway = Some(GW_A);
    let mut link = start(config).await;
    let a = link.forwarder(GW_A).await;
    let b = link.forwarder(GW_B).await;

    assert_eq!(link.send(1, b"pinned").await, Ok(()));
    assert_eq!((a.stats().pull_resps, b.stats().pull_resps), (1, 0));
    link.stop().await;
}

#[tokio::test]
async fn a_missing_tx_ack_fails_after_the_timeout() {
    let mut config = config();
    config.tx_ack_timeout = Duration::from_millis(50);
    let mut link = start(config).await;
    let forwarder = link.forwarder_with(GW_A, |c| c.tx_ack = None).await;

    assert_eq!(
        link.send(1, b"into the void").await,
        Err(TxError::Rejected(NO_TX_ACK.into()))
    );
    timeout(WAIT, forwarder.wait_until(|s| s.pull_resps == 1))
        .await
        .expect("the PULL_RESP did arrive");
    let counters = link.counters();
    assert_eq!((counters.tx_failed, counters.device_errors), (1, 0));
    link.stop().await;
}

#[tokio::test]
async fn a_stopping_gateway_waits_for_a_tx_ack_only_briefly() {
    let mut config = config();
    config.tx_ack_timeout = Duration::from_secs(3600);
    let mut link = start(config).await;
    let forwarder = link.forwarder_with(GW_A, |c| c.tx_ack = None).await;
    link.hand_over(1, b"no answer").await;
    timeout(WAIT, forwarder.wait_until(|s| s.pull_resps == 1))
        .await
        .expect("the PULL_RESP went out");
    link.close_transmit();
    assert_eq!(
        link.tx_done(1).await,
        Err(TxError::Rejected(NO_TX_ACK.into()))
    );
    link.stop().await;
}

#[tokio::test]
async fn a_missing_tx_ack_can_be_assumed_sent() {
    let mut config = config();
    config.tx_ack_timeout = Duration::from_millis(50);
    config.assume_sent_without_tx_ack = true;
    let mut link = start(config).await;
    let _forwarder = link.forwarder_with(GW_A, |c| c.tx_ack = None).await;

    assert_eq!(link.send(1, b"hopefully").await, Ok(()));
    assert_eq!(link.counters().tx_ok, 1);
    link.stop().await;
}

#[tokio::test]
async fn unsendable_requests_are_rejected_with_a_reason() {
    let mut link = start(config()).await;
    let _forwarder = link.forwarder(GW_A).await;
    let Err(TxError::Rejected(reason)) = link.send(1, &[0; 256]).await else {
        panic!("a 256-byte payload cannot be sent");
    };
    assert!(reason.contains("255"), "{reason}");
    link.stop().await;
}

#[tokio::test]
async fn shutdown_answers_a_transmission_still_awaiting_tx_ack() {
    let mut link = start(config()).await; // 5 s TX_ACK timeout
    let forwarder = link.forwarder_with(GW_A, |c| c.tx_ack = None).await;
    let mut air_side = forwarder.subscribe_downlinks();
    link.transmit
        .send(Transmit {
            id: 4,
            bytes: b"pending".to_vec(),
            params: RadioParams::default(),
            via: None,
        })
        .await
        .unwrap();
    timeout(WAIT, forwarder.wait_until(|s| s.pull_resps == 1))
        .await
        .expect("PULL_RESP reached the forwarder");
    assert!(air_side.try_recv().is_err(), "not acked, not transmitted");

    link.shutdown.cancel();
    assert_eq!(
        link.tx_done(4).await,
        Err(TxError::Rejected(NO_TX_ACK.into()))
    );
    link.stop().await;
}

#[tokio::test]
async fn link_is_up_while_a_forwarder_is_heard_and_down_after_silence() {
    let mut config = config();
    config.keepalive_window = Duration::from_millis(300);
    let mut link = start(config).await;
    link.state(&LinkState::Connecting).await;

    let forwarder = link.forwarder(GW_A).await;
    link.state(&LinkState::Up).await;
    drop(forwarder); // pulled plug: no more keep-alives

    link.state(&LinkState::Down(
        "no packet forwarder heard for 300 ms".into(),
    ))
    .await;
    assert_eq!(link.counters().disconnects, 1);

    let _back = link.forwarder(GW_A).await;
    link.state(&LinkState::Up).await;
    link.stop().await;
}

#[tokio::test]
async fn link_is_down_when_no_forwarder_ever_calls() {
    let mut config = config();
    config.keepalive_window = Duration::from_millis(100);
    let mut link = start(config).await;
    link.state(&LinkState::Connecting).await;
    link.state(&LinkState::Down(format!(
        "no packet forwarder has contacted {} in 100 ms",
        link.addr
    )))
    .await;
    assert_eq!(link.counters().disconnects, 0, "never was up");
    link.stop().await;
}

#[tokio::test]
async fn an_unavailable_port_is_down_and_retried() {
    let blocker = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = blocker.local_addr().unwrap();
    let mut config = GwmpConfig::new("gw-test", addr);
    config.rebind_interval = Duration::from_millis(20);
    let mut link = start_link(GwmpLink::new(config), addr);

    loop {
        match link.next_event("Down(cannot bind)").await {
            LinkEvent::State {
                state: LinkState::Down(reason),
                ..
            } => {
                assert!(
                    reason.starts_with(&format!("cannot bind UDP {addr}")),
                    "{reason}"
                );
                break;
            }
            LinkEvent::State { .. } => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(link.send(1, b"early").await, Err(TxError::NotConnected));

    drop(blocker);
    link.state(&LinkState::Connecting).await;
    let forwarder = link.forwarder(GW_A).await;
    link.state(&LinkState::Up).await;
    acked(
        &forwarder,
        forwarder.inject(b"after rebind", -30.0, 5.0).await,
    )
    .await;
    assert_eq!(link.next_frame().await.bytes, b"after rebind");
    assert_eq!(link.counters().frames_received, 1);
    link.stop().await;
}

#[tokio::test]
async fn only_the_asked_gateway_can_answer_a_pull_resp() {
    let mut link = start(config()).await;
    let forwarder = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    forwarder.connect(link.addr).await.unwrap();
    let mut buf = [0u8; 2048];

    let pull = Datagram::PullData {
        token: 0x0102,
        gateway: GW_A,
    };
    forwarder.send(&pull.to_bytes()).await.unwrap();
    let len = timeout(WAIT, forwarder.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..len], [2, 0x01, 0x02, 4], "PULL_ACK echoes the token");

    link.transmit
        .send(Transmit {
            id: 11,
            bytes: b"for a".to_vec(),
            params: RadioParams::default(),
            via: None,
        })
        .await
        .unwrap();
    let len = timeout(WAIT, forwarder.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let Ok(Datagram::PullResp { token, payload }) = parse(&buf[..len]) else {
        panic!("expected PULL_RESP, got {:?}", &buf[..len]);
    };
    assert_eq!(payload.txpk.payload().unwrap(), b"for a");

    let ack = |gateway, code| Datagram::TxAck {
        token,
        gateway,
        payload: Some(TxAckPayload::with_error(code)),
    };
    forwarder
        .send(&ack(GW_B, TxAckCode::TooLate).to_bytes())
        .await
        .unwrap();
    forwarder
        .send(&ack(GW_A, TxAckCode::None).to_bytes())
        .await
        .unwrap();
    assert_eq!(link.tx_done(11).await, Ok(()), "GW_B's refusal was ignored");
    assert_eq!(link.counters().device_errors, 0);
    link.stop().await;
}
