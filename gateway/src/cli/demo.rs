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
    let mut config = Config::default();
    config.gateway.data_dir = data_dir.clone();
    config.http.bind = args.http;
    config.region.name = "EU868".into();
    if let Some(url) = &args.mqtt {
        let mqtt = MqttConfig::from_url(url.clone());
        if let Err(e) = mqtt.validate() {
            return fail(format!("--mqtt: {e}"));
        }
        config.mqtt = Some(mqtt);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => return fail(format!("cannot start the runtime: {e}")),
    };
    runtime.block_on(async move {
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
        let links = vec![spec];
        let running = match daemon::start(&config, links).await {
            Ok(r) => r,
            Err(e) => return fail(e),
        };
        let stop = running.shutdown_token();
        crate::shutdown::cancel_on_signal(stop.clone());
        println!("seed-gateway demo");
        println!("  gateway id:  {}", running.gateway_id);
        println!("  data dir:    {}", data_dir.display());
        if let Some(addr) = running.http_addr {
            println!("  status page: http://{addr}/");
        }
        match &args.mqtt {
            Some(url) => println!(
                "  uplink:      {url} (topics seed/v1/gw/{}/#)",
                running.gateway_id
            ),
            None => {
                println!("  uplink:      none: messages queue on disk (give --mqtt URL to publish)")
            }
        }
        println!(
            "  devices:     {} simulated, behind a packet forwarder on {gwmp_addr}",
            args.devices
        );
        println!("Press Ctrl-C to stop.");
        let fleet = FleetOptions {
            devices: args.devices,
            speed: args.speed,
            seed: args.seed,
            transaction_interval: Some(Duration::from_secs(60)),
            counters_file: Some(data_dir.join(DEVICE_COUNTERS_FILE)),
            ..FleetOptions::default()
        };
        let fleet_stop = stop.clone();
        tokio::spawn(async move {
            if let Err(e) = fleet_over_gwmp(gwmp_addr, fleet, fleet_stop).await {
                tracing::error!("simulated devices stopped: {e}");
            }
        });
        running.wait().await;
        ExitCode::SUCCESS
    })
}
