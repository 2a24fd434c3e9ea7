//! How fast the uplink drains a backlog into a local Mosquitto, next to a
//! plain rumqttc QoS-1 publisher sending the same messages.
//!
//! ```text
//! cargo run --release -p seed-e2e --example bench_drain -- [MESSAGES] [ROUNDS]
//! ```
//! Defaults: 100000 messages, 2 rounds (alternating plain/uplink, best of
//! each reported). The uplink's time includes building every JSON payload
//! and the outbox reads and marks (in memory here); the plain publisher gets
//! its payloads pre-built. Both use the same in-flight window (64).
//! With `BENCH_SAMPLE=1` the uplink's window and progress are printed every
//! 200 ms.

use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use seed_e2e::memory_outbox::{test_entry, MemoryOutbox};
use seed_e2e::mosquitto::{Mosquitto, MosquittoOptions};
use seed_gateway::uplink::payload::up_payload;
use seed_gateway::uplink::{MqttConfig, Uplink};
use tokio_util::sync::CancellationToken;

const MAX_INFLIGHT: u16 = 64;
const DEVICES: u8 = 16;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let messages: u32 = args
        .next()
        .map_or(100_000, |a| a.parse().expect("MESSAGES"));
    let rounds: u32 = args.next().map_or(2, |a| a.parse().expect("ROUNDS"));
    let broker = Mosquitto::start(MosquittoOptions {
        persistence: false,
        ..MosquittoOptions::new()
    })
    .await;
    println!(
        "draining {messages} messages into mosquitto at {}",
        broker.url()
    );

    let mut best_plain = Duration::MAX;
    let mut best_uplink = Duration::MAX;
    for round in 0..rounds {
        let plain = plain_rumqttc(&broker, messages, round).await;
        let uplink = uplink_drain(&broker, messages, round).await;
        println!(
            "round {round}: plain rumqttc {:>8.0} msg/s ({:.2} s)   uplink {:>8.0} msg/s ({:.2} s)",
            rate(messages, plain),
            plain.as_secs_f64(),
            rate(messages, uplink),
            uplink.as_secs_f64()
        );
        best_plain = best_plain.min(plain);
        best_uplink = best_uplink.min(uplink);
    }
    println!(
        "best: plain rumqttc {:.0} msg/s, uplink {:.0} msg/s, ratio uplink/plain = {:.2}, uplink drain time {:.2} s",
        rate(messages, best_plain),
        rate(messages, best_uplink),
        best_plain.as_secs_f64() / best_uplink.as_secs_f64(),
        best_uplink.as_secs_f64()
    );
}

fn rate(messages: u32, took: Duration) -> f64 {
    f64::from(messages) / took.as_secs_f64()
}

/// The uplink from a full outbox to every message marked published.
async fn uplink_drain(broker: &Mosquitto, messages: u32, round: u32) -> Duration {
    let gateway_id = format!("bench{round}");
    let outbox = MemoryOutbox::new();
    outbox.push_many(0, messages, DEVICES);
    let mut config = MqttConfig::from_url(broker.url());
    config.max_inflight = MAX_INFLIGHT;
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let (uplink, _incoming) =
        Uplink::start(&config, &gateway_id, None, outbox.clone(), shutdown.clone()).expect("start");
    let sampler = if std::env::var_os("BENCH_SAMPLE").is_some() {
        let status = uplink.status();
        let outbox = outbox.clone();
        Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let s = status.borrow().clone();
                eprintln!(
                    "inflight={} published={} unpublished={} marks={}",
                    s.inflight,
                    s.published_total,
                    outbox.unpublished(),
                    outbox.mark_calls()
                );
            }
        }))
    } else {
        None
    };
    outbox.wait_drained(Duration::from_secs(600)).await;
    let took = started.elapsed();
    if let Some(s) = sampler {
        s.abort();
    }
    let status = uplink.status().borrow().clone();
    assert_eq!(status.published_total, u64::from(messages));
    shutdown.cancel();
    uplink.finished().await;
    took
}

/// A bare rumqttc client publishing pre-built payloads at QoS 1 until every
/// PUBACK is in.
async fn plain_rumqttc(broker: &Mosquitto, messages: u32, round: u32) -> Duration {
    let payloads: Vec<(String, Vec<u8>)> = (0..messages)
        .map(|n| {
            let entry = test_entry((n % u32::from(DEVICES)) as u8, n);
            (
                format!("seed/v1/gw/plain{round}/up/{}", entry.message_type),
                up_payload(&entry, None).json,
            )
        })
        .collect();
    let mut options = MqttOptions::new(format!("bench-plain-{round}"), "127.0.0.1", broker.port());
    options
        .set_inflight(MAX_INFLIGHT)
        .set_max_packet_size(256 * 1024, 256 * 1024);
    let started = Instant::now();
    let (client, mut eventloop) = AsyncClient::new(options, usize::from(MAX_INFLIGHT) + 64);
    let sender = tokio::spawn(async move {
        for (topic, payload) in payloads {
            client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .expect("queue publish");
        }
        client
    });
    let mut acked = 0;
    while acked < messages {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
            Ok(_) => {}
            Err(e) => panic!("plain publisher lost its connection: {e}"),
        }
    }
    let took = started.elapsed();
    let client = sender.await.expect("sender");
    let _ = client.try_disconnect();
    took
}
