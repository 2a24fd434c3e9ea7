//! Fills a gateway data directory with queued (unpublished) transactions, to
//! measure the daemon with a large backlog (memory, idle CPU, drain time).
//!
//!     cargo run --release -p seed-gateway --example fill_store -- DATA_DIR [COUNT]
//!
//! Then `seed-gateway run` with `data_dir = DATA_DIR` sees COUNT messages
//! waiting. The messages are real signed frames from 64 simulated devices.

use radio_bridge::frame::json::to_json;
use radio_bridge::frame::*;
use radio_bridge::identity::Identity;
use radio_bridge::link::RxMeta;
use seed_gateway::store::{Inbound, Store, StoreOptions};

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().expect("usage: fill_store DATA_DIR [COUNT]"));
    let count: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    std::fs::create_dir_all(&dir).expect("data dir");
    let ids: Vec<Identity> = (0..64u8)
        .map(|i| Identity::from_seed([i + 1; 32]))
        .collect();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let store =
            Store::open(&dir.join("seed-gateway.db"), StoreOptions::default()).expect("store");
        for chunk_start in (0..count).step_by(1000) {
            let batch: Vec<Inbound> = (chunk_start..(chunk_start + 1000).min(count))
                .map(|i| {
                    let id = &ids[i % ids.len()];
                    let env = Envelope {
                        version: ProtocolVersion::CURRENT,
                        device_id: id.device_id(),
                        to: None,
                        seq: None,
                        message: Message::Transaction(Transaction {
                            payload: format!("queued transaction {i:08} with a typical payload")
                                .into_bytes(),
                            timestamp_counter: Some(i as u32),
                        }),
                    };
                    let frame = Frame::sign(env, id.signing_key()).expect("sign");
                    let rx = RxMeta::now("fill");
                    Inbound {
                        msg_id: frame.msg_id,
                        device_id: id.device_id(),
                        message_type: "transaction".into(),
                        message_json: to_json(&frame).to_string(),
                        frame: frame.bytes,
                        rx_json: serde_json::to_string(&rx).expect("rx json"),
                        received_at_ms: rx.received_at_ms,
                    }
                })
                .collect();
            store.commit(batch).await.expect("commit");
        }
        println!(
            "{} messages queued in {}",
            store.stats().backlog,
            dir.display()
        );
        store.close().await.expect("close");
    });
}
