//! Durable ingest throughput: frames/s through decode + verify + SQLite
//! commit (fsync) + ack scheduling, the gateway's real pipeline on one core.
//!
//!     cargo run --release -p seed-gateway --example bench_ingest [FRAMES] [DEVICES]
//!
//! Signs FRAMES transactions from DEVICES keys (not timed), pushes them into
//! the ingest pipeline as link events as fast as the channel takes them, and
//! times until the store reports every one stored. Runs on a current-thread
//! runtime, so decode, verify and the async side share one core; the store's
//! writer thread does the SQLite work and fsyncs beside it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use radio_bridge::duty_cycle::Region;
use radio_bridge::frame::*;
use radio_bridge::identity::Identity;
use radio_bridge::link::{LinkEvent, RxFrame, RxMeta};
use seed_gateway::ingest::Ingest;
use seed_gateway::neighbors::NeighborTable;
use seed_gateway::scheduler::Scheduler;
use seed_gateway::state::GatewayState;
use seed_gateway::store::{Store, StoreOptions};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn main() {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(50_000);
    let devices: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(64);
    let ids: Vec<Identity> = (0..devices)
        .map(|i| Identity::from_seed([(i % 251) as u8 + 1; 32]))
        .collect();
    let frames: Vec<Vec<u8>> = (0..count)
        .map(|i| {
            let id = &ids[i % devices];
            let env = Envelope {
                version: ProtocolVersion::CURRENT,
                device_id: id.device_id(),
                to: None,
                seq: None,
                message: Message::Transaction(Transaction {
                    payload: format!("bench transaction {i:08} with a typical payload size")
                        .into_bytes(),
                    timestamp_counter: Some(i as u32),
                }),
            };
            Frame::sign(env, id.signing_key()).expect("sign").bytes
        })
        .collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let store = Store::open(&dir.path().join("bench.db"), StoreOptions::default()).expect("store");
        let state = Arc::new(GatewayState::new("bench".into(), NeighborTable::new()));
        state.add_link("bench", "gwmp", Arc::default());
        let (tx_link, mut tx_rx) = mpsc::channel(1024);
        // Drain what the scheduler transmits (the acks) so it never blocks.
        tokio::spawn(async move { while tx_rx.recv().await.is_some() {} });
        let (scheduler, handle, requests) = Scheduler::new(
            Identity::from_seed([0xee; 32]),
            vec![seed_gateway::scheduler::TxLink {
                name: "bench".into(),
                transmit: tx_link,
                params: Default::default(),
            }],
            Region::Unrestricted,
        );
        let stop = CancellationToken::new();
        tokio::spawn(scheduler.run(requests, stop.clone()));
        let ingest = Ingest::new(store.clone(), state.clone(), handle.clone());
        let (events, events_rx) = mpsc::channel(4096);
        tokio::spawn(ingest.run(events_rx, stop.clone()));

        let start = Instant::now();
        let feeder = tokio::spawn(async move {
            for bytes in frames {
                let rx = RxFrame {
                    bytes,
                    meta: RxMeta::now("bench"),
                };
                if events.send(LinkEvent::Received(rx)).await.is_err() {
                    break;
                }
            }
        });
        while store.stats().stored_total < count as u64 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let elapsed = start.elapsed();
        let _ = feeder.await;
        let stats = store.stats();
        println!(
            "frames: {count} from {devices} devices\nstored: {}\ntransactions (fsyncs): {}\nelapsed: {:.2} s\ndurable ingest: {:.0} frames/s\nacks sent: {} frames",
            stats.stored_total,
            stats.transactions_total,
            elapsed.as_secs_f64(),
            count as f64 / elapsed.as_secs_f64(),
            handle.stats().acks_sent,
        );
        stop.cancel();
    });
}
