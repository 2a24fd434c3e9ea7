//! The real `seed-gateway` binary as a child process.
//!
//! Tests run the release binary that `tests/run.sh` builds before the tests
//! (building it here once if it is missing), with a config file written
//! into the test's own data directory. [`GatewayProcess`] waits until the
//! status page answers, reads the JSON API, and can be stopped with SIGTERM
//! or killed with SIGKILL like a power cut. Dropping it kills the process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use tokio::time::Instant;

use crate::mosquitto::unused_port;

/// How long the gateway may take to serve its status page after start.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Path of the `seed-gateway` binary, building it once if needed.
pub fn binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // Benchmarks compare builds: `SEED_GATEWAY_BIN` runs another one.
        if let Some(bin) = std::env::var_os("SEED_GATEWAY_BIN") {
            return PathBuf::from(bin);
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        let bin = target.join("release").join("seed-gateway");
        if !bin.exists() {
            let status = Command::new(env!("CARGO"))
                .args(["build", "--release", "-p", "seed-gateway"])
                .current_dir(&root)
                .status()
                .expect("cargo runs");
            assert!(status.success(), "building seed-gateway failed");
        }
        bin
    })
    .clone()
}

/// Runs `seed-gateway ARGS` to completion and returns (exit ok, stdout, stderr).
pub fn run_cli(args: &[&str], stdin: Option<&[u8]>) -> (bool, String, String) {
    use std::io::Write;
    let mut child = Command::new(binary())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("seed-gateway starts");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin piped")
            .write_all(input)
            .expect("stdin written");
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("seed-gateway finishes");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Radio settings with the shortest airtime (SF5, 500 kHz) for a `[[link]]`:
/// a full ack frame (8 ids) then takes about 30 ms on air instead of about
/// 1.2 s at the default SF9/125 kHz. The gateway models airtime for real, so
/// at the default its acks (under 7 ids a second) would throttle tests that
/// push hundreds of messages through the simulator at a raised `--speed`.
pub const FAST_RADIO: &str = "spreading_factor = 5\nbandwidth_hz = 500000\n";

/// A gateway config for tests: one GWMP link on a free UDP port, the status
/// page on a free TCP port, everything else at its default.
#[derive(Debug, Clone)]
pub struct TestConfig {
    pub data_dir: PathBuf,
    pub http: SocketAddr,
    pub gwmp: SocketAddr,
    /// Extra lines inside the GWMP `[[link]]` (e.g. [`FAST_RADIO`]).
    pub link_extra: String,
    pub mqtt_url: Option<String>,
    /// Extra lines inside `[mqtt]` (e.g. `username = "gw"`), when `mqtt_url` is set.
    pub mqtt_extra: String,
    /// Extra TOML appended verbatim (e.g. `[storage]\nquota_mb = 1`).
    pub extra: String,
    /// `[region] name`: `unrestricted` unless a test checks the duty cycle.
    pub region: String,
    /// Environment variables the process starts with (e.g. libfaketime's).
    pub env: Vec<(String, String)>,
}

impl TestConfig {
    pub fn new(data_dir: &Path) -> TestConfig {
        TestConfig {
            data_dir: data_dir.to_path_buf(),
            http: SocketAddr::from(([127, 0, 0, 1], unused_port())),
            gwmp: SocketAddr::from(([127, 0, 0, 1], unused_udp_port())),
            link_extra: String::new(),
            mqtt_url: None,
            mqtt_extra: String::new(),
            extra: String::new(),
            region: "unrestricted".into(),
            env: Vec::new(),
        }
    }

    pub fn toml(&self) -> String {
        let mut t = format!(
            "[gateway]\ndata_dir = {:?}\nlog_level = \"info\"\n\n[http]\nbind = \"{}\"\n\n[region]\nname = \"{}\"\n\n[[link]]\nname = \"gwmp0\"\ntype = \"gwmp\"\nbind = \"{}\"\n{}\n",
            self.data_dir.join("data"),
            self.http,
            self.region,
            self.gwmp,
            self.link_extra
        );
        if let Some(url) = &self.mqtt_url {
            t.push_str(&format!(
                "[mqtt]\nurl = \"{url}\"\nreconnect_min_ms = 200\nreconnect_max_ms = 1000\n{}\n",
                self.mqtt_extra
            ));
        }
        t.push_str(&self.extra);
        t
    }

    /// Writes the config file and returns its path.
    pub fn write(&self) -> PathBuf {
        std::fs::create_dir_all(&self.data_dir).expect("test data dir");
        let path = self.data_dir.join("config.toml");
        std::fs::write(&path, self.toml()).expect("config written");
        path
    }
}

/// A free UDP port on 127.0.0.1 (bound and released; racy only against
/// other processes picking ports at the same instant).
pub fn unused_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free UDP port")
}

/// A running `seed-gateway run --config FILE`.
pub struct GatewayProcess {
    child: Child,
    pub config: TestConfig,
    log_path: PathBuf,
}

impl GatewayProcess {
    /// Starts the gateway and waits until its status page answers.
    pub async fn start(config: &TestConfig) -> GatewayProcess {
        let path = config.write();
        let log_path = config.data_dir.join(format!(
            "gateway-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        let log = std::fs::File::create(&log_path).expect("log file");
        let child = Command::new(binary())
            .args(["run", "--config"])
            .arg(&path)
            .env("RUST_LOG", "info")
            .envs(config.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("seed-gateway starts");
        let mut gw = GatewayProcess {
            child,
            config: config.clone(),
            log_path,
        };
        gw.wait_ready().await;
        gw
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "seed-gateway exited during start-up ({status}); log:\n{}",
                    self.log()
                );
            }
            if http_get(self.config.http, "/healthz").await.is_some() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "seed-gateway did not serve its status page within {START_TIMEOUT:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The gateway's stderr log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// `GET path` on the status page's server, parsed as JSON.
    pub async fn api(&self, path: &str) -> serde_json::Value {
        let body = http_get(self.config.http, path)
            .await
            .unwrap_or_else(|| panic!("GET {path} failed; log:\n{}", self.log()));
        serde_json::from_str(&body.1)
            .unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {}", body.1))
    }

    /// The process id, for reading its CPU time and memory in /proc.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running (not exited, not killed).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then wait (bounded) for a clean exit. Returns whether it exited 0.
    pub async fn stop(mut self) -> bool {
        let pid = self.child.id() as i32;
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc_kill(pid, 15);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            assert!(
                Instant::now() < deadline,
                "seed-gateway did not stop within 20 s of SIGTERM; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// [`stop`](Self::stop), then the whole log, shutdown included.
    pub async fn stop_and_log(self) -> (bool, String) {
        let path = self.log_path.clone();
        let clean = self.stop().await;
        (clean, std::fs::read_to_string(path).unwrap_or_default())
    }

    /// SIGKILL: what a power cut does to the process.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// A minimal HTTP/1.1 GET on loopback: (status code, body), or `None` when
/// nothing answers. Enough for the JSON API without an HTTP client crate.
pub async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream =
        tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
            .await
            .ok()?
            .ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Some((code, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Gives the gateway of `config` a key before its first start, so its
/// neighbour's config can list it; returns its gateway id.
pub fn keygen(config: &TestConfig) -> String {
    let key_dir = config.data_dir.join("data");
    std::fs::create_dir_all(&key_dir).expect("data dir");
    let key = key_dir.join("gateway.key");
    let (ok, out, err) = run_cli(&["keygen", "--out", &key.display().to_string()], None);
    assert!(ok, "keygen failed: {err}");
    out.trim().to_string()
}

pub fn peer_entry(name: &str, port: u16, gateway_id: &str) -> String {
    format!("[[peer]]\nname = \"{name}\"\naddress = \"127.0.0.1:{port}\"\ngateway_id = \"{gateway_id}\"\n")
}
