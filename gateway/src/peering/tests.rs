//! Two peering layers in one process, with real stores, real TLS over
//! loopback and no MQTT: what the origin does when its neighbour cannot
//! take everything.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use radio_bridge::identity::Identity;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{start, PeeringSetup, PeeringState};
use crate::config::{PeerSection, PeeringSection};
use crate::store::{Inbound, Store, StoreOptions};
use crate::uplink::UplinkStatus;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn message(n: u32) -> Inbound {
    let mut msg_id = [0u8; 16];
    msg_id[..4].copy_from_slice(&n.to_be_bytes());
    Inbound {
        msg_id,
        device_id: [(n % 4) as u8; 32],
        message_type: "transaction".into(),
        frame: vec![0x5a; 120],
        message_json: format!(r#"{{"n":{n}}}"#),
        rx_json: r#"{"link":"test","received_at_ms":1}"#.into(),
        received_at_ms: 1,
    }
}

struct Gateway {
    store: Store,
    state: Arc<PeeringState>,
    /// Kept so the peering tasks see a live uplink status.
    _uplink: watch::Sender<UplinkStatus>,
    _tasks: JoinSet<()>,
}

async fn gateway(
    dir: &std::path::Path,
    identity: &Identity,
    peer: (&Identity, u16),
    bind: Option<SocketAddr>,
    uplink: UplinkStatus,
    quota_bytes: u64,
    stop: &CancellationToken,
) -> Gateway {
    std::fs::create_dir_all(dir).unwrap();
    let store = Store::open(
        &dir.join("store.sqlite"),
        StoreOptions {
            quota_bytes,
            group_commit_delay: Duration::ZERO,
            ..StoreOptions::default()
        },
    )
    .expect("store opens");
    let mut tasks = JoinSet::new();
    let (uplink, status) = watch::channel(uplink);
    let state = start(
        PeeringSetup {
            identity: identity.clone(),
            settings: PeeringSection {
                bind,
                custody_after_s: 1,
                window: 8,
            },
            peers: vec![PeerSection {
                name: "other".into(),
                address: format!("127.0.0.1:{}", peer.1),
                gateway_id: peer.0.id_hex(),
            }],
            store: store.clone(),
            uplink_status: Some(status),
            publisher: None,
            mqtt_prefix: "seed/v1".into(),
            mailboxes: None,
        },
        &mut tasks,
        stop.clone(),
    )
    .await
    .expect("peering starts");
    Gateway {
        store,
        state,
        _uplink: uplink,
        _tasks: tasks,
    }
}

/// Polls `done` every 20 ms for at most 20 s.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited 20 s for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_custodian_refuses_and_the_origin_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let (origin_id, custodian_id) = (Identity::from_seed([1; 32]), Identity::from_seed([2; 32]));
    let custodian_port = free_port();
    let stop = CancellationToken::new();
    let custodian = gateway(
        &dir.path().join("custodian"),
        &custodian_id,
        (&origin_id, free_port()),
        Some(SocketAddr::from(([127, 0, 0, 1], custodian_port))),
        UplinkStatus {
            connected: true,
            ..UplinkStatus::default()
        },
        // Room for a few rows only.
        6_000,
        &stop,
    )
    .await;
    let origin = gateway(
        &dir.path().join("origin"),
        &origin_id,
        (&custodian_id, custodian_port),
        None,
        // Down for an hour already.
        UplinkStatus {
            connected: false,
            since_ms: radio_bridge::link::unix_millis(std::time::SystemTime::now()) - 3_600_000,
            ..UplinkStatus::default()
        },
        64 * 1024 * 1024,
        &stop,
    )
    .await;
    let outcomes = origin
        .store
        .commit((0..40).map(message).collect())
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 40);

    let peer = |g: &Gateway| g.state.snapshot().peers[0].clone();
    eventually("the custodian to refuse rows", || {
        peer(&origin).refused_by_peer_total > 0
    })
    .await;
    let handed = peer(&origin).handed_over_total;
    let held = custodian.store.custody_pending(0, 100).await.unwrap();
    assert!(handed > 0 && handed < 40, "handed over {handed}");
    assert_eq!(held.len() as u64, handed, "what was acked is what is held");
    assert_eq!(
        origin.store.stats().backlog,
        40 - handed,
        "the origin keeps every row that was refused"
    );
    let seqs: Vec<u64> = held.iter().map(|r| r.entry.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "custody keeps the origin's order: {seqs:?}"
    );
    assert!(peer(&origin).outbound.connected && peer(&custodian).inbound.connected);
    stop.cancel();
}
