//! `seed-gateway simulate` as a child process: simulated Seed devices behind
//! an emulated packet forwarder (GWMP over UDP) or RNode (KISS on a pty),
//! talking to a gateway from outside, exactly as a test bench would.
//!
//! With `--messages M` the simulator sends exactly M transactions per device,
//! retransmits each until the gateway's radio ack arrives (or its deadline
//! passes), and prints one JSON summary line. A message id in
//! [`Summary::acked_ids`] is one the gateway declared safe on its disk: the
//! end-to-end tests then check that each of them reaches MQTT.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::gateway::binary;

/// Where the simulated devices' radio traffic goes.
#[derive(Debug, Clone)]
pub enum Radio {
    /// An emulated Semtech packet forwarder sending GWMP to this address.
    Gwmp(SocketAddr),
    /// An emulated RNode on a pseudo-terminal, reachable at this symlink.
    Serial(PathBuf),
}

/// The arguments of one `simulate --messages` run.
#[derive(Debug, Clone)]
pub struct Simulation {
    pub radio: Radio,
    pub devices: usize,
    /// Transactions per device.
    pub messages: u64,
    /// Time factor for heartbeat intervals and retransmission backoff.
    pub speed: f64,
    /// Seed of the devices' keys and of the air's randomness.
    pub seed: u64,
    /// How long the simulator waits for acks before giving up.
    pub deadline_s: u64,
    pub heartbeats: bool,
    pub loss: f64,
    pub duplicate: f64,
    pub corrupt: f64,
}

impl Simulation {
    /// `devices` × `messages` transactions over GWMP to `gwmp`, with
    /// heartbeats, on a perfect air, at 10× speed.
    pub fn gwmp(gwmp: SocketAddr, devices: usize, messages: u64) -> Simulation {
        Simulation::new(Radio::Gwmp(gwmp), devices, messages)
    }

    /// The same behind an emulated RNode whose pty is linked at `path`.
    pub fn serial(path: &Path, devices: usize, messages: u64) -> Simulation {
        Simulation::new(Radio::Serial(path.to_path_buf()), devices, messages)
    }

    fn new(radio: Radio, devices: usize, messages: u64) -> Simulation {
        Simulation {
            radio,
            devices,
            messages,
            speed: 10.0,
            seed: 1,
            deadline_s: 60,
            heartbeats: true,
            loss: 0.0,
            duplicate: 0.0,
            corrupt: 0.0,
        }
    }

    pub fn speed(mut self, speed: f64) -> Simulation {
        self.speed = speed;
        self
    }

    pub fn seed(mut self, seed: u64) -> Simulation {
        self.seed = seed;
        self
    }

    pub fn deadline_s(mut self, seconds: u64) -> Simulation {
        self.deadline_s = seconds;
        self
    }

    pub fn no_heartbeats(mut self) -> Simulation {
        self.heartbeats = false;
        self
    }

    /// The command-line arguments after `seed-gateway`.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec!["simulate".to_string()];
        match &self.radio {
            Radio::Gwmp(addr) => args.extend(["--gwmp".into(), addr.to_string()]),
            Radio::Serial(path) => args.extend(["--serial".into(), path.display().to_string()]),
        }
        for (flag, value) in [
            ("--devices", self.devices.to_string()),
            ("--messages", self.messages.to_string()),
            ("--speed", self.speed.to_string()),
            ("--seed", self.seed.to_string()),
            ("--deadline-s", self.deadline_s.to_string()),
            ("--loss", self.loss.to_string()),
            ("--duplicate", self.duplicate.to_string()),
            ("--corrupt", self.corrupt.to_string()),
        ] {
            args.extend([flag.to_string(), value]);
        }
        if !self.heartbeats {
            args.push("--no-heartbeats".into());
        }
        args
    }

    /// Starts the simulator. It runs until it has its acks or its deadline
    /// passes; dropping the handle kills it.
    pub fn spawn(&self) -> SimulatorProcess {
        let child = tokio::process::Command::new(binary())
            .args(self.args())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("seed-gateway simulate starts");
        SimulatorProcess {
            child,
            args: self.args(),
        }
    }
}

/// A running `seed-gateway simulate`.
pub struct SimulatorProcess {
    child: tokio::process::Child,
    args: Vec<String>,
}

impl SimulatorProcess {
    /// Waits (at most `timeout`) for the simulator to finish and returns its
    /// summary. Panics, with its stderr, if it fails or prints no summary.
    pub async fn finish(self, timeout: Duration) -> Summary {
        let args = self.args.join(" ");
        let output = match tokio::time::timeout(timeout, self.child.wait_with_output()).await {
            Ok(Ok(output)) => output,
            Ok(Err(e)) => panic!("waiting for `seed-gateway {args}` failed: {e}"),
            // Dropping the child (kill_on_drop) stops it.
            Err(_) => panic!("`seed-gateway {args}` did not finish within {timeout:?}"),
        };
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "`seed-gateway {args}` failed ({}); stderr:\n{stderr}",
            output.status
        );
        let line = stdout.lines().rev().find(|l| l.starts_with('{')).unwrap_or_else(|| {
            panic!("`seed-gateway {args}` printed no JSON summary; stdout:\n{stdout}\nstderr:\n{stderr}")
        });
        Summary::parse(line)
            .unwrap_or_else(|e| panic!("`seed-gateway {args}`: bad summary ({e}): {line}"))
    }
}

/// The simulator's summary line.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Transactions sent (first transmissions, not retransmissions).
    pub sent: u64,
    /// Distinct transactions the gateway acked.
    pub acked: u64,
    /// Their message ids, lowercase hex.
    pub acked_ids: BTreeSet<String>,
    /// Heartbeats sent.
    pub heartbeats: u64,
}

impl Summary {
    pub fn parse(line: &str) -> Result<Summary, String> {
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
        let number = |key: &str| {
            v[key]
                .as_u64()
                .ok_or_else(|| format!("`{key}` is not a number"))
        };
        let acked_ids = v["acked_ids"]
            .as_array()
            .ok_or("`acked_ids` is not an array")?
            .iter()
            .map(|id| {
                id.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("acked id {id} is not a string"))
            })
            .collect::<Result<BTreeSet<_>, _>>()?;
        Ok(Summary {
            sent: number("sent")?,
            acked: number("acked")?,
            acked_ids,
            heartbeats: number("heartbeats")?,
        })
    }
}

/// `seed-gateway simulate --gwmp …` without `--messages`: devices (keys
/// from `seed`) that send heartbeats and hear, ack and NACK downlinks until
/// stopped. Dropping it kills the process.
pub struct Devices {
    child: Option<std::process::Child>,
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

impl Devices {
    /// `extra`: further `simulate` flags (`--loss 0.3`, `--no-ack-downlinks`).
    pub fn start(gwmp: SocketAddr, devices: usize, seed: u64, extra: &[&str]) -> Devices {
        let child = std::process::Command::new(binary())
            .args(["simulate", "--gwmp", &gwmp.to_string()])
            .args(["--devices", &devices.to_string()])
            .args(["--seed", &seed.to_string()])
            .args(["--speed", "20", "--transaction-interval-s", "0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("simulator starts");
        Devices { child: Some(child) }
    }

    /// SIGTERM; returns the summary line it prints on the way out.
    pub fn stop(mut self) -> serde_json::Value {
        let child = self.child.take().expect("running");
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc_kill(child.id() as i32, 15);
        }
        let out = child.wait_with_output().expect("simulator exits");
        let text = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(text.trim())
            .unwrap_or_else(|e| panic!("simulator summary is not JSON ({e}): {text:?}"))
    }
}

impl Drop for Devices {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
