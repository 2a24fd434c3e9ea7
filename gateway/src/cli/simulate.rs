//! `simulate`: Seed devices behind a simulated concentrator, for testing a
//! gateway from outside (another process, another machine).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use radio_bridge::simulator::devices::{AirConditions, FleetOptions};
use radio_bridge::simulator::{fleet_over_gwmp, fleet_over_rnode};
use tokio_util::sync::CancellationToken;

use super::fail;

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("radio").required(true).args(["serial", "gwmp"])))]
pub struct SimulateArgs {
    /// Act as an RNode on a pseudo-terminal reachable at PATH (a symlink).
    #[arg(long)]
    serial: Option<PathBuf>,
    /// Act as a Semtech packet forwarder sending GWMP to ADDR.
    #[arg(long)]
    gwmp: Option<SocketAddr>,
    /// Number of simulated devices.
    #[arg(long, default_value_t = 8)]
    devices: usize,
    /// Send exactly M transactions per device, wait for acks, print a JSON
    /// summary and exit. Without it, run until interrupted.
    #[arg(long)]
    messages: Option<u64>,
    /// Probability (0..1) that a packet is lost on air.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Probability that a packet is heard twice.
    #[arg(long, default_value_t = 0.0)]
    duplicate: f64,
    /// Probability that a packet is corrupted.
    #[arg(long, default_value_t = 0.0)]
    corrupt: f64,
    /// Seed of keys and randomness.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Time factor for heartbeat intervals and retransmissions.
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// With --messages: give up waiting for acks after this many seconds.
    #[arg(long, default_value_t = 120)]
    deadline_s: u64,
    /// Do not send heartbeats.
    #[arg(long)]
    no_heartbeats: bool,
}

pub fn simulate(args: SimulateArgs) -> ExitCode {
    crate::daemon::init_logging("warn");
    for (name, p) in [
        ("loss", args.loss),
        ("duplicate", args.duplicate),
        ("corrupt", args.corrupt),
    ] {
        if !(0.0..=1.0).contains(&p) {
            return fail(format!("--{name} must be between 0 and 1, not {p}"));
        }
    }
    let options = FleetOptions {
        devices: args.devices,
        messages: args.messages,
        speed: args.speed,
        conditions: AirConditions {
            loss: args.loss,
            duplicate: args.duplicate,
            corrupt: args.corrupt,
        },
        seed: args.seed,
        deadline: Duration::from_secs(args.deadline_s),
        heartbeats: !args.no_heartbeats,
        transaction_interval: args.messages.is_none().then_some(Duration::from_secs(60)),
        ..FleetOptions::default()
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => return fail(format!("cannot start the runtime: {e}")),
    };
    runtime.block_on(async move {
        let stop = CancellationToken::new();
        crate::shutdown::cancel_on_signal(stop.clone());
        let summary = match (args.gwmp, args.serial) {
            (Some(addr), _) => fleet_over_gwmp(addr, options, stop).await,
            (None, Some(path)) => fleet_over_rnode(path, options, stop).await,
            (None, None) => return fail("give --serial PATH or --gwmp ADDR"),
        };
        match summary {
            Ok(s) => {
                if args.messages.is_some() {
                    println!("{}", serde_json::to_string(&s).unwrap_or_default());
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        }
    })
}
