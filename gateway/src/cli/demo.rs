//! `demo`: the gateway on its embedded default. A simulated concentrator
//! (an emulated Semtech packet forwarder talking real GWMP over UDP on
//! loopback) with simulated Seed devices, each with its own key; the status
//! page; and the MQTT uplink only if a broker is named. Without one,
//! everything queues on disk, exactly as on an appliance whose internet is down.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use radio_bridge::gwmp::GwmpConfig;
use radio_bridge::link::RadioParams;
use radio_bridge::simulator::devices::FleetOptions;
use radio_bridge::simulator::fleet_over_gwmp;

use super::fail;
use crate::config::{Config, MqttConfig};
use crate::daemon;

/// Where the simulated devices keep their counters in the data directory.
const DEVICE_COUNTERS_FILE: &str = "demo-devices.txt";

#[derive(clap::Args)]
pub struct DemoArgs {
    /// MQTT broker to publish to, e.g. mqtt://127.0.0.1:1883. Without it,
    /// messages queue on disk.
    #[arg(long, env = "SEED_MQTT_URL")]
    mqtt: Option<String>,
    /// Address of the status page.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// Data directory; default: a fresh directory under the system's temp
    /// dir. Started again on the same directory, the demo carries on: the
    /// gateway keeps its store, and the simulated devices their counters
    /// (demo-devices.txt), so they send new frames rather than repeat old ones.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Number of simulated devices.
    #[arg(long, default_value_t = 8)]
    devices: usize,
    /// Simulated time runs this many times faster (heartbeats, transactions).
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Seed of the simulated devices' keys.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Village kiosks to run, each with its own data directory, devices
    /// and status page (on the following ports). Only the first uses
    /// `--mqtt`; the others have no internet and hand their messages to
    /// it as trusted neighbours (docs/peering.md).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=4))]
    kiosks: u8,
}

pub fn demo(args: DemoArgs) -> ExitCode {
    daemon::init_logging("info");
    let data_dir = match args.data_dir.clone() {
        Some(d) => d,
        None => {
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            std::env::temp_dir().join(format!("seed-gateway-demo-{stamp}-{}", std::process::id()))
        }
    };
    let mqtt = match &args.mqtt {
        Some(url) => {
            let mqtt = MqttConfig::from_url(url.clone());
            if let Err(e) = mqtt.validate() {
                return fail(format!("--mqtt: {e}"));
            }
            Some(mqtt)
        }
        None => None,
    };
    let configs = match kiosk_configs(&args, &data_dir, mqtt) {
        Ok(configs) => configs,
        Err(e) => return fail(e),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => return fail(format!("cannot start the runtime: {e}")),
    };
    runtime.block_on(async move {
        let stop = tokio_util::sync::CancellationToken::new();
        crate::shutdown::cancel_on_signal(stop.clone());
        let mut kiosks = Vec::new();
        for (index, config) in configs.iter().enumerate() {
            let (spec, gwmp_addr) = match daemon::bound_gwmp_link(
                GwmpConfig::new(
                    "sim-concentrator",
                    "127.0.0.1:0".parse().expect("literal address"),
                ),
                RadioParams::default(),
            )
            .await
            {
                Ok(bound) => bound,
                Err(e) => {
                    return fail(format!(
                        "cannot open the simulated concentrator's UDP port: {e}"
                    ))
                }
            };
            let running = match daemon::start(config, vec![spec]).await {
                Ok(r) => r,
                Err(e) => return fail(e),
            };
            let own_stop = running.shutdown_token();
            let all_stop = stop.clone();
            tokio::spawn(async move {
                all_stop.cancelled().await;
                own_stop.cancel();
            });
            print_kiosk(&args, index, &running, config, gwmp_addr);
            let fleet = FleetOptions {
                devices: args.devices,
                speed: args.speed,
                // Each kiosk its own devices.
                seed: args.seed + index as u64 * 1000,
                transaction_interval: Some(Duration::from_secs(60)),
                counters_file: Some(config.gateway.data_dir.join(DEVICE_COUNTERS_FILE)),
                ..FleetOptions::default()
            };
            let fleet_stop = stop.clone();
            tokio::spawn(async move {
                if let Err(e) = fleet_over_gwmp(gwmp_addr, fleet, fleet_stop).await {
                    tracing::error!("simulated devices stopped: {e}");
                }
            });
            kiosks.push(running);
        }
        println!("Press Ctrl-C to stop.");
        for running in kiosks {
            running.wait().await;
        }
        ExitCode::SUCCESS
    })
}

/// One config per kiosk. Kiosk 1 is the one with `--mqtt` (if given);
/// every other kiosk has no uplink and is paired with kiosk 1 (each lists
/// the other, each listens on a free loopback port).
fn kiosk_configs(
    args: &DemoArgs,
    data_dir: &std::path::Path,
    mqtt: Option<MqttConfig>,
) -> Result<Vec<Config>, String> {
    let count = usize::from(args.kiosks);
    let mut configs = Vec::with_capacity(count);
    let mut ids = Vec::with_capacity(count);
    for index in 0..count {
        let mut config = Config::default();
        config.gateway.data_dir = if count == 1 {
            data_dir.to_path_buf()
        } else {
            data_dir.join(format!("kiosk{}", index + 1))
        };
        config.http.bind = SocketAddr::new(args.http.ip(), args.http.port() + index as u16);
        config.region.name = "EU868".into();
        if index == 0 {
            config.mqtt = mqtt.clone();
        }
        // The neighbours' configs need each other's ids before either starts.
        let identity = radio_bridge::identity::Identity::load_or_create(&config.gateway.key_path())
            .map_err(|e| e.to_string())?;
        ids.push(identity.id_hex());
        configs.push(config);
    }
    if count > 1 {
        let mut ports = Vec::with_capacity(count);
        for _ in 0..count {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| format!("no free port for the kiosks' links: {e}"))?
                .port();
            ports.push(port);
        }
        let peer = |i: usize| crate::config::PeerSection {
            name: format!("kiosk{}", i + 1),
            address: format!("127.0.0.1:{}", ports[i]),
            gateway_id: ids[i].clone(),
        };
        for (index, config) in configs.iter_mut().enumerate() {
            config.peering.bind = Some(SocketAddr::from(([127, 0, 0, 1], ports[index])));
            if index == 0 {
                config.peers.extend((1..count).map(peer));
            } else {
                config.peers.push(peer(0));
                config.peering.custody_after_s = 10;
            }
        }
    }
    Ok(configs)
}

fn print_kiosk(
    args: &DemoArgs,
    index: usize,
    running: &daemon::Running,
    config: &Config,
    gwmp_addr: SocketAddr,
) {
    if args.kiosks > 1 {
        println!("seed-gateway demo, kiosk {} of {}", index + 1, args.kiosks);
    } else {
        println!("seed-gateway demo");
    }
    println!("  gateway id:  {}", running.gateway_id);
    println!("  data dir:    {}", running.data_dir.display());
    if let Some(addr) = running.http_addr {
        println!("  status page: http://{addr}/");
    }
    match (&args.mqtt, index) {
        (Some(url), 0) => println!(
            "  uplink:      {url} (topics seed/v1/gw/{}/#)",
            running.gateway_id
        ),
        (None, 0) => {
            println!("  uplink:      none: messages queue on disk (give --mqtt URL to publish)")
        }
        _ => println!(
            "  uplink:      none: after {} s its messages go through kiosk 1 when kiosk 1 has one",
            config.peering.custody_after_s
        ),
    }
    println!(
        "  devices:     {} simulated, behind a packet forwarder on {gwmp_addr}",
        args.devices
    );
}
