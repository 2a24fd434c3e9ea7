//! The holding side of shared mailboxes against a hand-driven accepting
//! gateway: a real peering listener, a real store, real TLS over loopback,
//! and a client that speaks the wire protocol message by message, so what
//! goes over the link (and in which version) is what is checked.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use radio_bridge::identity::Identity;
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::mailboxes::{MailboxLink, PeerDeliveries};
use super::wire::{self, Mail, Message, PeerState};
use super::{start, tls, PeeringSetup};
use crate::config::{PeerSection, PeeringSection};
use crate::store::{MailboxMark, MailboxState, Store, StoreOptions};

/// No mailbox task here: the holding side never settles deliveries.
struct NoDeliveries;

impl PeerDeliveries for NoDeliveries {
    fn delivered_by_peer(
        &self,
        _: [u8; 16],
        _: [u8; 32],
        _: [u8; 32],
        _: u32,
    ) -> oneshot::Receiver<Result<(), String>> {
        oneshot::channel().1
    }
}

struct Holder {
    store: Store,
    address: SocketAddr,
    changes: watch::Sender<u64>,
    _tasks: JoinSet<()>,
}

async fn holder(
    dir: &std::path::Path,
    me: &Identity,
    accepting: &Identity,
    stop: &CancellationToken,
) -> Holder {
    let store = Store::open(
        &dir.join("store.sqlite"),
        StoreOptions {
            group_commit_delay: Duration::ZERO,
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let (changes, watch) = watch::channel(0);
    let mut tasks = JoinSet::new();
    start(
        PeeringSetup {
            identity: me.clone(),
            settings: PeeringSection {
                bind: Some(address),
                custody_after_s: 1,
                window: 8,
            },
            peers: vec![PeerSection {
                name: "market".into(),
                // Nobody listens there: only the link the market dials matters.
                address: "127.0.0.1:9".into(),
                gateway_id: accepting.id_hex(),
            }],
            store: store.clone(),
            uplink_status: None,
            publisher: None,
            mqtt_prefix: "seed/v1".into(),
            mailboxes: Some(MailboxLink {
                changes: watch,
                deliveries: Arc::new(NoDeliveries),
            }),
        },
        &mut tasks,
        stop.clone(),
    )
    .await
    .unwrap();
    Holder {
        store,
        address,
        changes,
        _tasks: tasks,
    }
}

type Link = tokio_rustls::client::TlsStream<TcpStream>;

/// Dials `holder` as `me`, says hello with `versions`, reads its hello.
async fn dial(holder: &Holder, me: &Identity, key: [u8; 32], versions: Vec<u16>) -> Link {
    let connector = tokio_rustls::TlsConnector::from(tls::client_config(me, key).unwrap());
    let tcp = TcpStream::connect(holder.address).await.unwrap();
    let mut link = connector.connect(tls::server_name(), tcp).await.unwrap();
    let hello = Message::Hello {
        versions,
        software: "test".into(),
        status: PeerState {
            uplink_up: true,
            holding_for_you: 0,
        },
        store_id: Some("5e".repeat(16)),
    };
    wire::write_message(&mut link, &hello).await.unwrap();
    assert!(matches!(read(&mut link).await, Some(Message::Hello { .. })));
    link
}

/// The next message other than `status`; `None` once the link closed.
async fn read(link: &mut Link) -> Option<Message> {
    loop {
        match tokio::time::timeout(Duration::from_secs(20), wire::read_message(link))
            .await
            .expect("an answer within 20 s")
        {
            Ok(Message::Status { .. }) => continue,
            Ok(message) => return Some(message),
            Err(_) => return None,
        }
    }
}

fn mail(n: u8, device: &Identity) -> Mail {
    Mail {
        request_id: hex::encode([n; 16]),
        device_id: device.id_hex(),
        frame: "AQID".into(),
        accepted_at_ms: 1,
        expires_at_ms: u64::MAX / 2,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_are_on_disk_before_taken_and_notes_go_until_withdrawn() {
    let dir = tempfile::tempdir().unwrap();
    let (market, school, device) = (
        Identity::from_seed([1; 32]),
        Identity::from_seed([2; 32]),
        Identity::from_seed([3; 32]),
    );
    let stop = CancellationToken::new();
    let h = holder(dir.path(), &school, &market, &stop).await;
    let mut link = dial(&h, &market, school.device_id(), vec![2]).await;

    let offer = Message::Offer {
        mail: vec![mail(1, &device), mail(2, &device)],
    };
    wire::write_message(&mut link, &offer).await.unwrap();
    let ids = vec![hex::encode([1u8; 16]), hex::encode([2u8; 16])];
    assert_eq!(
        read(&mut link).await,
        Some(Message::Taken { ids: ids.clone() })
    );
    let held = h.store.mailbox_for(device.device_id()).await.unwrap();
    assert_eq!(held.len(), 2, "taken means held");
    assert!(held.iter().all(|e| e.origin == Some(market.device_id())));
    // Offered again (the answer was lost): taken again, still two copies.
    wire::write_message(&mut link, &offer).await.unwrap();
    assert_eq!(read(&mut link).await, Some(Message::Taken { ids }));
    assert_eq!(h.store.stats().mailbox_entries, 2);

    // The device acked the first copy here: the market hears of it.
    let first = &held[0];
    let mark = MailboxMark {
        state: MailboxState::Delivered,
        attempted_at_ms: None,
    };
    h.store.mailbox_mark(first.id, mark).await.unwrap();
    h.changes.send_modify(|n| *n += 1);
    let delivered = Message::Delivered {
        deliveries: vec![wire::Delivery {
            request_id: hex::encode([1u8; 16]),
            device_id: device.id_hex(),
            attempts: 0,
        }],
    };
    assert_eq!(read(&mut link).await, Some(delivered.clone()));

    // A new connection (the market restarted) hears it again.
    drop(link);
    let mut link = dial(&h, &market, school.device_id(), vec![2]).await;
    assert_eq!(read(&mut link).await, Some(delivered));

    let all = vec![hex::encode([1u8; 16]), hex::encode([2u8; 16])];
    wire::write_message(&mut link, &Message::Withdraw { ids: all.clone() })
        .await
        .unwrap();
    assert_eq!(read(&mut link).await, Some(Message::Withdrawn { ids: all }));
    assert_eq!(h.store.stats().mailbox_entries, 0);
    stop.cancel();
}
