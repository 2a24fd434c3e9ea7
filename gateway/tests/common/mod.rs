//! A whole gateway in the test process: real SQLite store in a temp dir, a
//! GWMP link on a real UDP port fed by the emulated packet forwarder, and
//! the status page on a real TCP port, spoken to with plain HTTP/1.1.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use radio_bridge::frame::{Ack, Envelope, Frame, Message, MsgId, ProtocolVersion, Transaction};
use radio_bridge::gwmp::{Eui, GwmpConfig};
use radio_bridge::identity::Identity;
use radio_bridge::link::RadioParams;
use radio_bridge::simulator::packet_forwarder::{PacketForwarder, PacketForwarderConfig};
use seed_gateway::config::Config;
use seed_gateway::daemon::{self, Running};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Every wait in these tests is bounded by this.
pub const LIMIT: Duration = Duration::from_secs(20);

/// The admin password of the test gateways.
pub const PASSWORD: &str = "test-admin-password-5521";

pub const LINK: &str = "gwmp-test";

pub struct Rig {
    pub running: Running,
    pub http: SocketAddr,
    pub gwmp: SocketAddr,
    pub forwarder: PacketForwarder,
    pub device: Identity,
    next_counter: u32,
    _dir: tempfile::TempDir,
}

/// A config for a test gateway in `dir`; change it before [`Rig::start`].
pub fn config(dir: &std::path::Path) -> Config {
    let mut config = Config::default();
    config.gateway.data_dir = dir.join("data");
    config.http.bind = "127.0.0.1:0".parse().unwrap();
    config.http.admin_password_hash = Some(web_ui::hash_password(PASSWORD).unwrap());
    config
}

impl Rig {
    pub async fn start() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        Rig::start_with(dir, cfg).await
    }

    pub async fn start_with(dir: tempfile::TempDir, config: Config) -> Rig {
        let (spec, gwmp) = daemon::bound_gwmp_link(
            GwmpConfig::new(LINK, "127.0.0.1:0".parse().unwrap()),
            RadioParams::default(),
        )
        .await
        .unwrap();
        let running = daemon::start(&config, vec![spec]).await.unwrap();
        let http = running.http_addr.expect("status page enabled");
        let forwarder = PacketForwarder::start(PacketForwarderConfig::new(gwmp, Eui([7; 8])))
            .await
            .unwrap();
        Rig {
            running,
            http,
            gwmp,
            forwarder,
            device: Identity::from_seed([42; 32]),
            next_counter: 1,
            _dir: dir,
        }
    }

    /// A signed transaction from the test device.
    pub fn transaction(&mut self, text: &str) -> Frame {
        let counter = self.next_counter;
        self.next_counter += 1;
        Frame::sign(
            Envelope {
                version: ProtocolVersion::CURRENT,
                device_id: self.device.device_id(),
                to: None,
                seq: None,
                message: Message::Transaction(Transaction {
                    payload: text.as_bytes().to_vec(),
                    timestamp_counter: Some(counter),
                }),
            },
            self.device.signing_key(),
        )
        .unwrap()
    }

    /// Sends a transaction over the air and waits for the gateway's radio
    /// ack of it: proof it was stored and that transmitting works.
    pub async fn send_and_await_ack(&mut self, text: &str) -> MsgId {
        let frame = self.transaction(text);
        let mut downlinks = self.forwarder.subscribe_downlinks();
        let token = self
            .forwarder
            .inject(&frame.bytes, -80.0, 7.5)
            .await
            .unwrap();
        timeout(LIMIT, self.forwarder.wait_push_ack(token))
            .await
            .expect("PUSH_ACK from the gateway");
        timeout(LIMIT, async {
            loop {
                let heard = downlinks.recv().await.expect("downlink stream open");
                if let Ok(f) = Frame::decode(&heard.bytes) {
                    if let Message::Ack(Ack { acked, .. }) = &f.envelope.message {
                        if acked.contains(&frame.msg_id) {
                            return;
                        }
                    }
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no radio ack for {text:?} within {LIMIT:?}"));
        frame.msg_id
    }

    pub async fn stop(self) {
        self.running.shutdown_token().cancel();
        timeout(LIMIT, self.running.wait()).await.expect("stops");
    }
}

/// A signed first heartbeat from `device`.
pub fn heartbeat(device: &Identity) -> Frame {
    use radio_bridge::frame::{Capabilities, DeviceClass, Heartbeat, PowerState};
    Frame::sign(
        Envelope {
            version: ProtocolVersion::CURRENT,
            device_id: device.device_id(),
            to: None,
            seq: None,
            message: Message::Heartbeat(Heartbeat {
                device_class: DeviceClass::Handheld,
                timestamp_counter: 1,
                power_state: PowerState::Normal,
                ledger_height: 0,
                sync_capable: true,
                capabilities: Capabilities::default(),
            }),
        },
        device.signing_key(),
    )
    .unwrap()
}

// ------------------------------------------------------------------ HTTP

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .find_map(|(_, line)| {
                let (key, value) = line.split(';').next()?.split_once('=')?;
                (key.trim() == name).then(|| value.to_string())
            })
    }
}

/// One request on its own connection (HTTP/1.0, so the body is never chunked).
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    form: &[(&str, &str)],
) -> Reply {
    timeout(LIMIT, async {
        let body = form
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut head = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
        if let Some(cookie) = cookie {
            head.push_str(&format!("Cookie: {cookie}\r\n"));
        }
        if method == "POST" {
            head.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        head.push_str(&body);
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("reply head");
        let head = String::from_utf8_lossy(&raw[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        Reply {
            status,
            headers,
            body: raw[end + 4..].to_vec(),
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{method} {path}: no reply within {LIMIT:?}"))
}

pub async fn get(addr: SocketAddr, path: &str, cookie: Option<&str>) -> Reply {
    request(addr, "GET", path, cookie, &[]).await
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The hidden CSRF field of a form page.
pub fn csrf_in(reply: &Reply) -> String {
    let html = reply.text();
    let marker = "name=\"csrf\" value=\"";
    let start = html
        .find(marker)
        .unwrap_or_else(|| panic!("no csrf field in {html}"))
        + marker.len();
    html[start..].split('"').next().unwrap().to_string()
}

/// Logs in to `/admin`; returns (session cookie, session CSRF token).
pub async fn log_in(addr: SocketAddr) -> (String, String) {
    let form = get(addr, "/admin/login", None).await;
    assert_eq!(form.status, 200);
    let login_cookie = format!(
        "seed_login={}",
        form.cookie("seed_login").expect("login cookie")
    );
    let reply = request(
        addr,
        "POST",
        "/admin/login",
        Some(&login_cookie),
        &[("password", PASSWORD), ("csrf", &csrf_in(&form))],
    )
    .await;
    assert_eq!(reply.status, 303, "login: {}", reply.text());
    let session = format!(
        "seed_session={}",
        reply.cookie("seed_session").expect("session")
    );
    let page = get(addr, "/admin", Some(&session)).await;
    assert_eq!(page.status, 200);
    (session, csrf_in(&page))
}

/// Runs an admin action and returns the admin page that shows its outcome.
pub async fn admin_post(
    addr: SocketAddr,
    session: &(String, String),
    path: &str,
    fields: &[(&str, &str)],
) -> Reply {
    let mut form = vec![("csrf", session.1.as_str())];
    form.extend_from_slice(fields);
    let reply = request(addr, "POST", path, Some(&session.0), &form).await;
    assert_eq!(reply.status, 303, "{path}: {}", reply.text());
    get(addr, "/admin", Some(&session.0)).await
}
