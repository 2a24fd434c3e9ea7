//! The subcommands of the `seed-gateway` binary. Each file is one concern;
//! this one only parses arguments and dispatches, so `main.rs` stays a page.

mod admin;
mod codec;
mod demo;
mod run;
mod simulate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "seed-gateway",
    version,
    about = "Seed LoRa gateway: keeps every message safe on disk and delivers it to MQTT"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The appliance daemon.
    Run {
        /// Configuration file.
        #[arg(long, default_value = crate::config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// The gateway with a simulated concentrator and devices: no hardware, no config needed.
    Demo(demo::DemoArgs),
    /// Decode and verify radio packets (whole frames or fragments, which are
    /// reassembled); prints the JSON form of each frame, one per line.
    Decode {
        /// Input is base64 instead of hex.
        #[arg(long, conflicts_with = "hex")]
        base64: bool,
        /// Input is hex (the default).
        #[arg(long)]
        hex: bool,
        /// One packet per argument; when absent, one packet per line of stdin.
        packets: Vec<String>,
    },
    /// Sign the JSON form read on stdin; prints the frame.
    Encode {
        /// Key file of the sender: its public key is the `device_id` (filled
        /// in when the JSON has none, which must otherwise be equal).
        #[arg(long)]
        key: PathBuf,
        /// Output base64 instead of hex.
        #[arg(long, conflicts_with = "hex")]
        base64: bool,
        /// Output hex (the default).
        #[arg(long)]
        hex: bool,
    },
    /// Create a new ed25519 identity; prints its device/gateway id.
    Keygen {
        /// Where to write the key (refuses to overwrite).
        #[arg(long)]
        out: PathBuf,
    },
    /// Validate a configuration file; errors name the key and the line.
    CheckConfig { file: PathBuf },
    /// Simulated Seed devices behind a simulated RNode (serial) or packet forwarder (UDP).
    Simulate(simulate::SimulateArgs),
    /// Set the password of the admin pages (read from stdin, one line); only
    /// its hash is stored, in DATA_DIR/admin.hash.
    SetAdminPassword(admin::SetAdminPasswordArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => run::run(&config),
        Command::Demo(args) => demo::demo(args),
        Command::Decode {
            base64, packets, ..
        } => codec::decode(packets, base64),
        Command::Encode { key, base64, .. } => codec::encode(&key, base64),
        Command::Keygen { out } => codec::keygen(&out),
        Command::CheckConfig { file } => check_config(&file),
        Command::Simulate(args) => simulate::simulate(args),
        Command::SetAdminPassword(args) => admin::set_admin_password(args),
    }
}

fn check_config(file: &std::path::Path) -> ExitCode {
    match crate::config::Config::load(file) {
        Ok(config) => {
            println!(
                "{}: ok ({} link(s), uplink {})",
                file.display(),
                config.links.len(),
                config
                    .mqtt
                    .as_ref()
                    .map(|m| m.url.as_str())
                    .unwrap_or("none: messages queue")
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints a one-line error and returns the failure exit code.
pub(crate) fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("seed-gateway: {message}");
    ExitCode::FAILURE
}
