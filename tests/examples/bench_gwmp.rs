//! End-to-end throughput through the real release binary: a GWMP flood
//! (`gwmp_flood`, one rxpk per datagram) into `seed-gateway run` with a
//! real Mosquitto, counting what arrives at the broker. Optionally the same
//! load, in the same run, into ChirpStack's MQTT forwarder (Semtech UDP
//! backend, JSON, QoS 1) as the anchor figure.
//!
//! ```text
//! cargo build --release -p seed-gateway --bin seed-gateway \
//!     -p radio-bridge --example gwmp_flood -p seed-e2e --example bench_gwmp
//! target/release/examples/bench_gwmp [--rates 4000,8000,16000] [--seconds 20] \
//!     [--reps 3] [--kind transaction|heartbeat] [--max-inflight N] \
//!     [--chirpstack PATH/TO/chirpstack-mqtt-forwarder]
//! ```
//!
//! Per offered rate and target it prints: what the generator sent,
//! delivered/s while the load ran, how long the rest took to arrive after
//! it stopped (drain), CPU seconds of the target per 10,000 delivered
//! messages (user + system, from the start of sending to the last
//! delivery) and peak RSS (`VmHWM`). The target processes get fresh data
//! directories every run; the broker is shared.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use seed_e2e::gateway::{unused_udp_port, GatewayProcess, TestConfig};
use seed_e2e::mosquitto::{Mosquitto, MosquittoOptions};
use tokio::io::{AsyncBufReadExt, BufReader};

/// After the load, a target that delivers nothing new for this long is done.
const DRAIN_QUIET: Duration = Duration::from_secs(5);
/// Never wait longer than this for a drain.
const DRAIN_LIMIT: Duration = Duration::from_secs(180);

struct Args {
    rates: Vec<u64>,
    seconds: u64,
    reps: u32,
    heartbeats: bool,
    max_inflight: Option<u16>,
    chirpstack: Option<PathBuf>,
}

fn parse_args() -> Args {
    let mut args = Args {
        rates: vec![4000, 8000, 16000],
        seconds: 20,
        reps: 3,
        heartbeats: false,
        max_inflight: None,
        chirpstack: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().expect("every flag takes a value");
        match flag.as_str() {
            "--rates" => {
                args.rates = value
                    .split(',')
                    .map(|r| r.parse().expect("--rates: numbers"))
                    .collect()
            }
            "--seconds" => args.seconds = value.parse().expect("--seconds"),
            "--reps" => args.reps = value.parse().expect("--reps"),
            "--kind" => args.heartbeats = value == "heartbeat",
            "--max-inflight" => args.max_inflight = Some(value.parse().expect("--max-inflight")),
            "--chirpstack" => args.chirpstack = Some(PathBuf::from(value)),
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

/// Counts messages on `filter` at the broker, and when the last came.
struct Counter {
    count: Arc<AtomicU64>,
    /// Milliseconds since `origin` of the last message counted.
    last_ms: Arc<AtomicU64>,
    origin: Instant,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Counter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Counter {
    async fn start(port: u16, filter: &str) -> Counter {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let id = format!(
            "bench-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options
            .set_keep_alive(Duration::from_secs(30))
            .set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        client
            .subscribe(filter, QoS::AtMostOnce)
            .await
            .expect("subscribe queued");
        let count = Arc::new(AtomicU64::new(0));
        let last_ms = Arc::new(AtomicU64::new(0));
        let origin = Instant::now();
        let (c, l) = (count.clone(), last_ms.clone());
        let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut subscribed = Some(subscribed_tx);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(s) = subscribed.take() {
                            let _ = s.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) if !p.retain => {
                        c.fetch_add(1, Ordering::Relaxed);
                        l.store(origin.elapsed().as_millis() as u64, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(e) => panic!("bench subscriber lost the broker: {e}"),
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), subscribed_rx)
            .await
            .expect("SUBACK within 10 s")
            .expect("subscriber running");
        Counter {
            count,
            last_ms,
            origin,
            task,
        }
    }

    fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn last(&self) -> Instant {
        self.origin + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// User + system CPU time of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum())
        .unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { sysconf(2) } as f64; // _SC_CLK_TCK
    ticks / hz
}

/// Peak resident set size (VmHWM) in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

extern "C" {
    fn sysconf(name: i32) -> i64;
}

struct Outcome {
    sent: u64,
    during: f64,
    delivered: u64,
    drain: f64,
    cpu_per_10k: f64,
    rss_mib: f64,
}

/// Runs the flood against `server`, watching process `pid` and `counter`.
async fn flood(
    flood_bin: &Path,
    server: std::net::SocketAddr,
    rate: u64,
    args: &Args,
    first: u64,
    pid: u32,
    counter: &Counter,
) -> Outcome {
    let mut child = tokio::process::Command::new(flood_bin)
        .args(["--server", &server.to_string()])
        .args(["--rate", &rate.to_string()])
        .args(["--seconds", &args.seconds.to_string()])
        .args([
            "--kind",
            if args.heartbeats {
                "heartbeat"
            } else {
                "transaction"
            },
        ])
        .args(["--first", &first.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gwmp_flood starts");
    // The generator signs everything first and says so on stderr; sending
    // (and our measuring) starts right after.
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr piped")).lines();
    let _signed = stderr.next_line().await.expect("gwmp_flood stderr");
    let base = counter.count();
    let cpu0 = cpu_seconds(pid);
    let t0 = Instant::now();
    let out = child.wait_with_output().await.expect("gwmp_flood runs");
    let t1 = Instant::now();
    let during = counter.count() - base;
    let line = String::from_utf8_lossy(&out.stdout);
    eprint!("  gwmp_flood: {line}");
    let sent: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("gwmp_flood said {line:?}"));
    // Drain: until everything sent arrived, or nothing new for a while.
    let mut seen = counter.count();
    let mut quiet_since = Instant::now();
    while counter.count() - base < sent && t1.elapsed() < DRAIN_LIMIT {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = counter.count();
        if now != seen {
            seen = now;
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() > DRAIN_QUIET {
            break;
        }
    }
    let delivered = counter.count() - base;
    let last = counter.last().max(t1);
    let cpu = cpu_seconds(pid) - cpu0;
    Outcome {
        sent,
        during: during as f64 / (t1 - t0).as_secs_f64(),
        delivered,
        drain: (last - t1).as_secs_f64(),
        cpu_per_10k: cpu / delivered.max(1) as f64 * 10_000.0,
        rss_mib: peak_rss_mib(pid),
    }
}

fn print(target: &str, rate: u64, rep: u32, o: &Outcome) {
    println!(
        "{target:<10} offered {rate:>6}/s rep {rep}: sent {:>7}  delivered {:>7} ({:>5.1} %)  \
         during load {:>7.0}/s  drain {:>5.1} s  CPU {:>5.2} s/10k  peak RSS {:>5.1} MiB",
        o.sent,
        o.delivered,
        o.delivered as f64 * 100.0 / o.sent.max(1) as f64,
        o.during,
        o.drain,
        o.cpu_per_10k,
        o.rss_mib
    );
}

async fn run_seed(
    broker: &Mosquitto,
    flood_bin: &Path,
    rate: u64,
    rep: u32,
    args: &Args,
) -> Outcome {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = TestConfig::new(dir.path());
    config.mqtt_url = Some(broker.url());
    if let Some(n) = args.max_inflight {
        config.mqtt_extra = format!("max_inflight = {n}\n");
    }
    let counter = Counter::start(broker.port(), "seed/v1/gw/+/up/#").await;
    let gateway = GatewayProcess::start(&config).await;
    let outcome = flood(
        flood_bin,
        config.gwmp,
        rate,
        args,
        0,
        gateway.pid(),
        &counter,
    )
    .await;
    print("seed", rate, rep, &outcome);
    // SIGTERM to exit: the forwarder sends no PULL_DATA, so the acks it
    // was due are held in the GWMP link when the stop comes.
    let stopping = Instant::now();
    let clean = gateway.stop().await;
    eprintln!(
        "  seed-gateway stopped in {:.2} s{}",
        stopping.elapsed().as_secs_f64(),
        if clean { "" } else { ", NOT cleanly" }
    );
    outcome
}

async fn run_chirpstack(
    broker: &Mosquitto,
    flood_bin: &Path,
    binary: &Path,
    rate: u64,
    rep: u32,
    args: &Args,
) -> Outcome {
    let dir = tempfile::tempdir().expect("temp dir");
    let udp = std::net::SocketAddr::from(([127, 0, 0, 1], unused_udp_port()));
    let config = dir.path().join("chirpstack-mqtt-forwarder.toml");
    std::fs::write(
        &config,
        format!(
            "[logging]\nlevel = \"info\"\n\n[mqtt]\ntopic_prefix = \"eu868\"\njson = true\n\
             server = \"tcp://127.0.0.1:{}\"\nqos = 1\nclean_session = true\n\n\
             [backend]\nenabled = \"semtech_udp\"\n\n[backend.semtech_udp]\nbind = \"{udp}\"\n",
            broker.port()
        ),
    )
    .expect("config written");
    let counter = Counter::start(broker.port(), "eu868/gateway/+/event/up").await;
    let mut child: Child = Command::new(binary)
        .arg("-c")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chirpstack-mqtt-forwarder starts");
    // It binds its socket and connects to the broker at start; no readiness
    // signal to wait for, so give it a moment (a benchmark, not a test).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let outcome = flood(flood_bin, udp, rate, args, 0, child.id(), &counter).await;
    print("chirpstack", rate, rep, &outcome);
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
    outcome
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn summary(target: &str, rate: u64, outcomes: &[Outcome]) {
    let pick = |f: fn(&Outcome) -> f64| median(outcomes.iter().map(f).collect());
    println!(
        "MEDIAN {target:<10} offered {rate:>6}/s: during load {:>7.0}/s  delivered {:>5.1} %  \
         drain {:>5.1} s  CPU {:>5.2} s/10k  peak RSS {:>5.1} MiB",
        pick(|o| o.during),
        pick(|o| o.delivered as f64 * 100.0 / o.sent.max(1) as f64),
        pick(|o| o.drain),
        pick(|o| o.cpu_per_10k),
        pick(|o| o.rss_mib),
    );
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let flood_bin = std::env::current_exe()
        .expect("own path")
        .with_file_name("gwmp_flood");
    assert!(
        flood_bin.exists(),
        "{} missing: cargo build --release -p radio-bridge --example gwmp_flood",
        flood_bin.display()
    );
    let broker = Mosquitto::start(MosquittoOptions {
        persistence: false,
        ..MosquittoOptions::new()
    })
    .await;
    for &rate in &args.rates {
        let mut seed = Vec::new();
        let mut anchor = Vec::new();
        for rep in 0..args.reps {
            seed.push(run_seed(&broker, &flood_bin, rate, rep, &args).await);
            if let Some(binary) = &args.chirpstack {
                anchor.push(run_chirpstack(&broker, &flood_bin, binary, rate, rep, &args).await);
            }
        }
        summary("seed", rate, &seed);
        if !anchor.is_empty() {
            summary("chirpstack", rate, &anchor);
        }
    }
}
