//! A GWMP load generator: one emulated packet forwarder sending signed Seed
//! frames at a fixed rate, one `rxpk` per PUSH_DATA datagram (how a real
//! concentrator reports packets it hears one at a time).
//!
//! ```text
//! cargo run --release -p radio-bridge --example gwmp_flood -- \
//!     --server 127.0.0.1:1700 --rate 8000 --seconds 20 [--kind transaction|heartbeat] \
//!     [--devices 64] [--first 0]
//! ```
//!
//! Every frame is signed before the clock starts (not timed, printed as
//! `signed`), so the sending itself costs little CPU. Frames are unique per
//! run and `--first` (e.g. a counter base) keeps them unique across runs into
//! the same data directory; heartbeat counters grow with it so the gateway's
//! replay check passes. The forwarder is the simulator's
//! (`PacketForwarder`): it sends PULL_DATA keep-alives and takes the
//! server's PUSH_ACKs like `lora_pkt_fwd`, so any GWMP server works, the
//! gateway's `gwmp` link as well as ChirpStack's MQTT forwarder.
//!
//! Prints one line, `sent N in S s (R/s)`, when done.

use std::net::SocketAddr;
use std::time::Duration;

use radio_bridge::frame::{
    Capabilities, DeviceClass, Envelope, Frame, Heartbeat, Message, PowerState, ProtocolVersion,
    Transaction,
};
use radio_bridge::gwmp::{CrcStatus, Datagram, Eui, PushPayload, RxPk};
use radio_bridge::identity::Identity;
use radio_bridge::link::RadioParams;
use radio_bridge::simulator::packet_forwarder::{PacketForwarder, PacketForwarderConfig};
use tokio::time::{Instant, MissedTickBehavior};

/// Sending happens in ticks of this length, `rate × tick` datagrams each.
const TICK: Duration = Duration::from_millis(2);

struct Args {
    server: SocketAddr,
    rate: u64,
    seconds: u64,
    heartbeats: bool,
    devices: usize,
    first: u64,
}

fn usage() -> ! {
    eprintln!(
        "usage: gwmp_flood --server ADDR --rate PER_S --seconds S \
         [--kind transaction|heartbeat] [--devices N] [--first N]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut args = Args {
        server: SocketAddr::from(([127, 0, 0, 1], 1700)),
        rate: 1000,
        seconds: 10,
        heartbeats: false,
        devices: 64,
        first: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--server" => args.server = value.parse().unwrap_or_else(|_| usage()),
            "--rate" => args.rate = value.parse().unwrap_or_else(|_| usage()),
            "--seconds" => args.seconds = value.parse().unwrap_or_else(|_| usage()),
            "--devices" => args.devices = value.parse().unwrap_or_else(|_| usage()),
            "--first" => args.first = value.parse().unwrap_or_else(|_| usage()),
            "--kind" => match value.as_str() {
                "transaction" => args.heartbeats = false,
                "heartbeat" => args.heartbeats = true,
                _ => usage(),
            },
            _ => usage(),
        }
    }
    if args.devices == 0 || args.rate == 0 {
        usage();
    }
    args
}

/// The `n`-th frame of the run, from device `n % devices`.
fn frame(ids: &[Identity], n: u64, heartbeats: bool) -> Vec<u8> {
    let id = &ids[(n % ids.len() as u64) as usize];
    let counter = (n / ids.len() as u64) as u32;
    let message = if heartbeats {
        Message::Heartbeat(Heartbeat {
            device_class: DeviceClass::Handheld,
            timestamp_counter: counter,
            power_state: PowerState::Normal,
            ledger_height: n,
            sync_capable: true,
            capabilities: Capabilities::default(),
        })
    } else {
        Message::Transaction(Transaction {
            payload: format!("flood transaction {n:010} with a typical payload size").into_bytes(),
            timestamp_counter: Some(counter),
        })
    };
    let envelope = Envelope {
        version: ProtocolVersion::CURRENT,
        device_id: id.device_id(),
        to: None,
        seq: None,
        message,
    };
    Frame::sign(envelope, id.signing_key())
        .expect("a generated frame signs")
        .bytes
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = parse_args();
    let ids: Vec<Identity> = (0..args.devices)
        .map(|i| Identity::from_seed([(i % 251) as u8 + 1; 32]))
        .collect();
    let gateway = Eui([0xaa, 0x55, 0, 0, 0, 0, 0, 1]);
    let radio = RadioParams::default();
    let total = args.rate * args.seconds;
    // Started first: its PULL_DATA lets a server learn the gateway (and
    // ChirpStack's forwarder connect to its broker) while we sign.
    let forwarder = PacketForwarder::start(PacketForwarderConfig::new(args.server, gateway))
        .await
        .expect("the forwarder's sockets open");
    let signing = std::time::Instant::now();
    let datagrams: Vec<Vec<u8>> = (0..total)
        .map(|i| {
            let bytes = frame(&ids, args.first + i, args.heartbeats);
            let rxpk = RxPk::lora(&bytes, &radio, -80.0, 7.5, CrcStatus::Ok, i as u32);
            Datagram::PushData {
                token: i as u16,
                gateway,
                payload: PushPayload {
                    rxpk: vec![rxpk],
                    stat: None,
                },
            }
            .to_bytes()
        })
        .collect();
    eprintln!(
        "signed {total} frames in {:.1} s",
        signing.elapsed().as_secs_f64()
    );

    let start = Instant::now();
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut sent: u64 = 0;
    let mut failed: u64 = 0;
    let mut queue = datagrams.iter();
    while sent + failed < total {
        ticks.tick().await;
        // Catch up to where the clock says we should be: a late tick sends more.
        let due = (start.elapsed().as_secs_f64() * args.rate as f64) as u64;
        while sent + failed < due.min(total) {
            let Some(datagram) = queue.next() else { break };
            match forwarder.send_raw(datagram).await {
                Ok(()) => sent += 1,
                Err(_) => failed += 1,
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "sent {sent} in {elapsed:.2} s ({:.0}/s){}",
        sent as f64 / elapsed,
        if failed > 0 {
            format!(", {failed} send errors")
        } else {
            String::new()
        }
    );
}
