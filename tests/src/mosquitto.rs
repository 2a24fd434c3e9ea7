//! A real Mosquitto broker for tests, and a subscriber that watches it.
//!
//! [`Mosquitto::start`] runs the Debian `mosquitto` binary on free 127.0.0.1
//! ports with a config generated into its own temp dir:
//! - the main listener (`port()`): anonymous, or password-protected when
//!   `users` are given;
//! - an optional TLS listener (`tls_port()`), same login rules;
//! - an observer listener (`observer_port()`), always anonymous, for
//!   [`Subscriber`]s, so tests can watch traffic without knowing passwords.
//!
//! Persistence is on: [`Mosquitto::stop`] (SIGTERM) saves retained messages
//! and persistent sessions, [`Mosquitto::restart`] brings the broker back on
//! the same ports with them. [`Mosquitto::kill`] is the abrupt variant.
//! Dropping the value kills the broker.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Where Debian installs the broker.
pub const MOSQUITTO_BIN: &str = "/usr/sbin/mosquitto";
const MOSQUITTO_PASSWD_BIN: &str = "mosquitto_passwd";
/// How long a (re)start may take before the test fails.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a graceful stop may take before the broker is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct MosquittoOptions {
    /// `(user, password)` logins; empty means anonymous access.
    pub users: Vec<(String, String)>,
    /// Also open a TLS listener.
    pub tls: Option<TlsListener>,
    /// Keep retained messages and persistent sessions across `restart()`.
    /// On by default (see [`MosquittoOptions::new`]).
    pub persistence: bool,
}

impl MosquittoOptions {
    /// Anonymous, no TLS, persistence on.
    pub fn new() -> MosquittoOptions {
        MosquittoOptions {
            users: Vec::new(),
            tls: None,
            persistence: true,
        }
    }

    pub fn with_user(mut self, user: &str, password: &str) -> MosquittoOptions {
        self.users.push((user.to_string(), password.to_string()));
        self
    }

    pub fn with_tls(mut self, tls: TlsListener) -> MosquittoOptions {
        self.tls = Some(tls);
        self
    }
}

/// Certificate files of the TLS listener (PEM).
#[derive(Debug, Clone)]
pub struct TlsListener {
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Clients must present a certificate signed by `ca_file`.
    pub require_certificate: bool,
}

impl TlsListener {
    /// The listener of a broker with `pki`'s server certificate that wants
    /// a client certificate from `pki`'s CA.
    pub fn requiring_client_certificates(pki: &crate::pki::TestPki) -> TlsListener {
        TlsListener {
            ca_file: pki.ca_cert.clone(),
            cert_file: pki.server_cert.clone(),
            key_file: pki.server_key.clone(),
            require_certificate: true,
        }
    }
}

/// A running (or stopped) broker.
pub struct Mosquitto {
    dir: tempfile::TempDir,
    options: MosquittoOptions,
    port: u16,
    tls_port: Option<u16>,
    observer_port: u16,
    child: Option<Child>,
}

impl Mosquitto {
    /// Starts a broker and waits until every listener accepts connections.
    /// Panics (with the broker's log) if it does not come up.
    pub async fn start(options: MosquittoOptions) -> Mosquitto {
        assert!(
            Path::new(MOSQUITTO_BIN).exists(),
            "{MOSQUITTO_BIN} not found: apt-get install -y mosquitto mosquitto-clients"
        );
        let dir = tempfile::Builder::new()
            .prefix("seed-mosquitto-")
            .tempdir()
            .expect("create broker temp dir");
        let mut broker = Mosquitto {
            dir,
            port: 0,
            observer_port: 0,
            tls_port: None,
            options,
            child: None,
        };
        broker.write_password_file();
        // A port found free can be taken by another test before the broker
        // binds it; then the broker says so and we pick new ones.
        let mut attempts = 0;
        loop {
            let ports = free_ports(if broker.options.tls.is_some() { 3 } else { 2 });
            broker.port = ports[0];
            broker.observer_port = ports[1];
            broker.tls_port = broker.options.tls.as_ref().map(|_| ports[2]);
            broker.write_config();
            match broker.try_spawn().await {
                Ok(()) => return broker,
                Err(why) if why.contains("Address already in use") && attempts < 5 => {
                    attempts += 1;
                    broker.kill();
                }
                Err(why) => panic!("{why}"),
            }
        }
    }

    /// The main listener's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `mqtt://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    pub fn tls_port(&self) -> Option<u16> {
        self.tls_port
    }

    /// `mqtts://localhost:{tls_port}` (the test certificates name both
    /// `localhost` and `127.0.0.1`).
    pub fn tls_url(&self) -> String {
        let port = self
            .tls_port
            .expect("broker started without a TLS listener");
        format!("mqtts://localhost:{port}")
    }

    /// The anonymous listener for observers.
    pub fn observer_port(&self) -> u16 {
        self.observer_port
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Graceful stop (SIGTERM): the broker saves its persistence file.
    /// Connected clients see their connection closed.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "mosquitto did not stop within {STOP_TIMEOUT:?} after SIGTERM; log:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Abrupt stop (SIGKILL): nothing is saved since the last save.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) the broker: clients stay
    /// connected but nothing is answered, like a broker behind a link that
    /// silently stopped carrying packets.
    pub fn freeze(&self, frozen: bool) {
        if let Some(child) = &self.child {
            let signal = if frozen { "-STOP" } else { "-CONT" };
            let status = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status();
            assert!(
                status.is_ok_and(|s| s.success()),
                "kill {signal} mosquitto failed"
            );
        }
    }

    /// Starts the broker again on the same ports (stopping it first if it
    /// runs), with its persisted state.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.write_password_file();
        self.write_config();
        self.spawn().await;
    }

    /// Replaces (or adds) a login; takes effect at the next `restart()`.
    pub fn set_password(&mut self, user: &str, password: &str) {
        self.options.users.retain(|(u, _)| u != user);
        self.options
            .users
            .push((user.to_string(), password.to_string()));
    }

    /// The broker's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    /// The directory holding config, password file, log and persistence.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn password_file(&self) -> PathBuf {
        self.dir.path().join("passwd")
    }

    fn write_password_file(&self) {
        let path = self.password_file();
        let _ = std::fs::remove_file(&path);
        for (user, password) in &self.options.users {
            if !path.exists() {
                std::fs::write(&path, "").expect("create password file");
            }
            let out = Command::new(MOSQUITTO_PASSWD_BIN)
                .arg("-b")
                .arg(&path)
                .arg(user)
                .arg(password)
                .output()
                .expect("run mosquitto_passwd (apt-get install -y mosquitto)");
            assert!(
                out.status.success(),
                "mosquitto_passwd failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    fn write_config(&self) {
        let dir = self.dir.path();
        let mut conf = String::new();
        // As root, mosquitto would switch to the `mosquitto` user and could
        // not read our temp dir.
        let _ = writeln!(conf, "user root");
        let _ = writeln!(conf, "per_listener_settings true");
        let _ = writeln!(
            conf,
            "log_dest file {}",
            dir.join("mosquitto.log").display()
        );
        for kind in ["error", "warning", "notice", "information"] {
            let _ = writeln!(conf, "log_type {kind}");
        }
        let _ = writeln!(conf, "connection_messages true");
        // Tests queue thousands of messages for offline subscribers.
        let _ = writeln!(conf, "max_queued_messages 0");
        if self.options.persistence {
            let _ = writeln!(conf, "persistence true");
            let _ = writeln!(conf, "persistence_location {}/", dir.display());
        }
        let auth = |conf: &mut String| {
            if self.options.users.is_empty() {
                let _ = writeln!(conf, "allow_anonymous true");
            } else {
                let _ = writeln!(conf, "allow_anonymous false");
                let _ = writeln!(conf, "password_file {}", self.password_file().display());
            }
        };
        let _ = writeln!(conf, "\nlistener {} 127.0.0.1", self.port);
        auth(&mut conf);
        if let (Some(port), Some(tls)) = (self.tls_port, &self.options.tls) {
            let _ = writeln!(conf, "\nlistener {port} 127.0.0.1");
            auth(&mut conf);
            let _ = writeln!(conf, "cafile {}", tls.ca_file.display());
            let _ = writeln!(conf, "certfile {}", tls.cert_file.display());
            let _ = writeln!(conf, "keyfile {}", tls.key_file.display());
            let _ = writeln!(conf, "require_certificate {}", tls.require_certificate);
        }
        let _ = writeln!(conf, "\nlistener {} 127.0.0.1", self.observer_port);
        let _ = writeln!(conf, "allow_anonymous true");
        std::fs::write(dir.join("mosquitto.conf"), conf).expect("write mosquitto.conf");
    }

    async fn spawn(&mut self) {
        if let Err(why) = self.try_spawn().await {
            panic!("{why}");
        }
    }

    /// Starts the broker and waits for its listeners; the error is what
    /// went wrong, with the broker's log.
    async fn try_spawn(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("mosquitto.stderr"))
            .expect("open stderr log");
        let child = Command::new(MOSQUITTO_BIN)
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn mosquitto");
        self.child = Some(child);
        let mut ports = vec![self.port, self.observer_port];
        ports.extend(self.tls_port);
        let deadline = Instant::now() + START_TIMEOUT;
        for port in ports {
            loop {
                if tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
                    .await
                    .is_ok()
                {
                    break;
                }
                if !self.is_running() {
                    return Err(format!(
                        "mosquitto exited during start-up; stderr:\n{}\nlog:\n{}",
                        std::fs::read_to_string(self.dir.path().join("mosquitto.stderr"))
                            .unwrap_or_default(),
                        self.log()
                    ));
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "mosquitto did not accept connections on port {port} within {START_TIMEOUT:?}; log:\n{}",
                        self.log()
                    ));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        Ok(())
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Distinct free TCP ports on 127.0.0.1 (held together while choosing, so
/// they differ; another process could still grab one before the broker
/// binds, which the start-up check would report).
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

/// A free port on 127.0.0.1 with nothing listening (for "broker absent").
pub fn unused_port() -> u16 {
    free_ports(1)[0]
}

/// A rumqttc client subscribed to one filter, collecting what arrives.
///
/// It reconnects by itself when the broker restarts; with
/// [`Subscriber::persistent`] the broker queues messages for it meanwhile.
pub struct Subscriber {
    filter: String,
    received: mpsc::UnboundedReceiver<Publish>,
    task: JoinHandle<()>,
}

impl Subscriber {
    /// A clean-session subscriber on `port` (use the broker's observer port).
    /// Returns once the broker confirmed the subscription.
    pub async fn connect(port: u16, filter: &str) -> Subscriber {
        let id = format!("test-sub-{}", rand_suffix());
        Subscriber::start(port, &id, filter, true).await
    }

    /// A persistent-session subscriber: messages published while it is
    /// disconnected (e.g. across a broker restart) are queued for it.
    pub async fn persistent(port: u16, client_id: &str, filter: &str) -> Subscriber {
        Subscriber::start(port, client_id, filter, false).await
    }

    async fn start(port: u16, client_id: &str, filter: &str, clean: bool) -> Subscriber {
        let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
        options
            .set_clean_session(clean)
            .set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let (tx, received) = mpsc::unbounded_channel();
        let (subscribed_tx, subscribed_rx) = oneshot::channel();
        let filter_owned = filter.to_string();
        let task = tokio::spawn(async move {
            let mut subscribed = Some(subscribed_tx);
            let mut requested = false;
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) if !requested => {
                        requested = true;
                        let _ = client.try_subscribe(filter_owned.clone(), QoS::AtLeastOnce);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(s) = subscribed.take() {
                            let _ = s.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if tx.send(p).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    // Broker gone (restart): try again shortly, forever;
                    // the test decides how long it waits.
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        });
        match tokio::time::timeout(START_TIMEOUT, subscribed_rx).await {
            Ok(Ok(())) => {}
            _ => panic!(
                "subscriber to {filter:?} on port {port} got no SUBACK within {START_TIMEOUT:?}"
            ),
        }
        Subscriber {
            filter: filter.to_string(),
            received,
            task,
        }
    }

    /// The next message, or `None` after `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<Publish> {
        tokio::time::timeout(timeout, self.received.recv())
            .await
            .ok()
            .flatten()
    }

    /// The next `n` messages, in arrival order. Panics, listing what did
    /// arrive, if they are not all in within `timeout`.
    pub async fn wait_for(&mut self, n: usize, timeout: Duration) -> Vec<Publish> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::with_capacity(n);
        while got.len() < n {
            match tokio::time::timeout_at(deadline, self.received.recv()).await {
                Ok(Some(p)) => got.push(p),
                Ok(None) => panic!("subscriber to {:?} stopped", self.filter),
                Err(_) => panic!(
                    "expected {n} message(s) on {:?} within {timeout:?}, got {}: {:?}",
                    self.filter,
                    got.len(),
                    summarize(&got)
                ),
            }
        }
        got
    }

    /// Collects messages until `done(all so far)` holds and returns them all.
    /// Panics with `what` and a summary of what arrived after `timeout`.
    pub async fn collect_until(
        &mut self,
        timeout: Duration,
        what: &str,
        mut done: impl FnMut(&[Publish]) -> bool,
    ) -> Vec<Publish> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        while !done(&got) {
            match tokio::time::timeout_at(deadline, self.received.recv()).await {
                Ok(Some(p)) => got.push(p),
                Ok(None) => panic!("subscriber to {:?} stopped", self.filter),
                Err(_) => panic!(
                    "waited {timeout:?} on {:?} for {what}; got {} message(s): {:?}",
                    self.filter,
                    got.len(),
                    summarize(&got)
                ),
            }
        }
        got
    }

    /// Panics if anything arrives within `window` (for "must not be
    /// redelivered" checks; a pass only means nothing came that soon).
    pub async fn expect_nothing(&mut self, window: Duration) {
        if let Some(p) = self.next(window).await {
            panic!(
                "expected no message on {:?}, got one on {}: {}",
                self.filter,
                p.topic,
                String::from_utf8_lossy(&p.payload)
            );
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Topic and the start of the payload of each message, capped, for panics.
fn summarize(got: &[Publish]) -> Vec<String> {
    const SHOW: usize = 10;
    let mut lines: Vec<String> = got
        .iter()
        .take(SHOW)
        .map(|p| {
            let body = String::from_utf8_lossy(&p.payload);
            let body: String = body.chars().take(120).collect();
            format!("{} {}", p.topic, body)
        })
        .collect();
    if got.len() > SHOW {
        lines.push(format!("... and {} more", got.len() - SHOW));
    }
    lines
}

/// Unique within this process, and unlikely to collide across processes.
fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{SystemTime, UNIX_EPOCH};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{}-{n}-{nanos}", std::process::id())
}

/// Backends started in this process, for unique client ids.
static BACKENDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// An MQTT client playing the backend.
pub struct Backend {
    client: AsyncClient,
    pubacks: mpsc::UnboundedReceiver<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    /// Connects (on the anonymous observer listener) as the backend.
    pub async fn connect(broker: &Mosquitto) -> Backend {
        let mut options = MqttOptions::new(
            format!(
                "test-backend-{}-{}",
                std::process::id(),
                BACKENDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ),
            "127.0.0.1",
            broker.observer_port(),
        );
        options.set_keep_alive(Duration::from_secs(5));
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let (tx, pubacks) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        let _ = tx.send(());
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        });
        Backend {
            client,
            pubacks,
            task,
        }
    }

    /// Publishes with QoS 1 and waits for the broker's PUBACK.
    pub async fn publish(&mut self, topic: &str, payload: &[u8]) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.to_vec())
            .await
            .expect("publish queued");
        tokio::time::timeout(START_TIMEOUT * 6, self.pubacks.recv())
            .await
            .expect("broker PUBACK")
            .expect("backend client running");
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}
