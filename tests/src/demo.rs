//! `seed-gateway demo` as a child process: the real gateway with its
//! simulated packet forwarder and devices, exactly as a person trying the
//! gateway on a laptop runs it.
//!
//! [`DemoProcess::start`] reads the banner the demo prints on stdout (the
//! gateway id, the status page and the simulated concentrator's GWMP port,
//! which tests use to put frames "on air" from devices of their own), then
//! waits until the status page answers. Logs go to a file in the data
//! directory and are shown when something fails. Dropping the value kills
//! the process.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

use crate::gateway::{binary, http_get};
use crate::mosquitto::unused_port;

/// How long the demo may take to print its banner and serve its page.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How the demo is started.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub data_dir: PathBuf,
    pub devices: usize,
    pub speed: f64,
    pub mqtt_url: Option<String>,
}

impl DemoOptions {
    pub fn new(data_dir: &Path) -> DemoOptions {
        DemoOptions {
            data_dir: data_dir.to_path_buf(),
            devices: 4,
            speed: 20.0,
            mqtt_url: None,
        }
    }
}

/// A running `seed-gateway demo`.
pub struct DemoProcess {
    child: Child,
    log_path: PathBuf,
    /// The gateway's id (64 hex digits), from the banner.
    pub gateway_id: String,
    /// The status page's address.
    pub http: SocketAddr,
    /// The simulated concentrator's GWMP (UDP) address, from the banner.
    pub gwmp: SocketAddr,
}

impl DemoProcess {
    /// Starts the demo on a free HTTP port and waits until its page answers.
    pub async fn start(options: &DemoOptions) -> DemoProcess {
        std::fs::create_dir_all(&options.data_dir).expect("demo data dir");
        let http = SocketAddr::from(([127, 0, 0, 1], unused_port()));
        let log_path = options.data_dir.join("demo.log");
        let log = std::fs::File::create(&log_path).expect("demo log file");
        let mut command = Command::new(binary());
        command
            .arg("demo")
            .arg("--http")
            .arg(http.to_string())
            .arg("--data-dir")
            .arg(&options.data_dir)
            .arg("--devices")
            .arg(options.devices.to_string())
            .arg("--speed")
            .arg(options.speed.to_string())
            .env_remove("SEED_MQTT_URL")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        if let Some(url) = &options.mqtt_url {
            command.arg("--mqtt").arg(url);
        }
        let mut child = command.spawn().expect("seed-gateway demo starts");
        let stdout = child.stdout.take().expect("stdout piped");

        // The banner is read on a thread: a blocking pipe read cannot be
        // bounded otherwise, and a demo that hangs must fail the test, not
        // hang it.
        let (banner_tx, banner_rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut banner_tx = Some(banner_tx);
            let mut banner = Vec::new();
            // Reads to the end, so the demo never writes into a closed pipe.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if banner_tx.is_none() {
                    continue;
                }
                let done = line.starts_with("Press Ctrl-C");
                banner.push(line);
                if done {
                    if let Some(tx) = banner_tx.take() {
                        let _ = tx.send(std::mem::take(&mut banner));
                    }
                }
            }
        });
        let banner = match tokio::time::timeout(START_TIMEOUT, banner_rx).await {
            Ok(Ok(lines)) => lines,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "seed-gateway demo printed no banner within {START_TIMEOUT:?}; log:\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
        };
        let field = |prefix: &str| {
            banner
                .iter()
                .find_map(|l| l.trim().strip_prefix(prefix).map(|v| v.trim().to_string()))
                .unwrap_or_else(|| panic!("no `{prefix}` in the demo's banner: {banner:#?}"))
        };
        let gateway_id = field("gateway id:");
        let page = field("status page:");
        assert_eq!(
            page,
            format!("http://{http}/"),
            "the demo names the status page it serves"
        );
        let devices = field("devices:");
        let gwmp = devices
            .rsplit(' ')
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no GWMP address in the banner line `{devices}`"));

        let demo = DemoProcess {
            child,
            log_path,
            gateway_id,
            http,
            gwmp,
        };
        demo.wait_ready().await;
        demo
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        while http_get(self.http, "/healthz").await.is_none() {
            assert!(
                Instant::now() < deadline,
                "the demo's status page did not answer within {START_TIMEOUT:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `http://ADDR` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// The demo's stderr log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for DemoProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
