//! The configuration file (TOML), its defaults, and errors that name the key
//! and the line.
//!
//! Every section and key is optional except the links a real appliance needs;
//! `docs/operations.md` lists each key with its default. Unknown keys are
//! errors: a misspelt `pasword` silently ignored would cost a site visit.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use radio_bridge::link::RadioParams;
use serde::Deserialize;

pub use crate::uplink::MqttConfig;

/// Where the appliance looks when `run` is given no `--config`.
pub const DEFAULT_PATH: &str = "/etc/seed-gateway/config.toml";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub gateway: GatewaySection,
    #[serde(default)]
    pub http: HttpSection,
    /// Absent: no uplink; everything queues in the store until one is set.
    pub mqtt: Option<MqttConfig>,
    #[serde(default, rename = "link")]
    pub links: Vec<LinkSection>,
    #[serde(default)]
    pub region: RegionSection,
    #[serde(default)]
    pub storage: StorageSection,
    #[serde(default)]
    pub power: PowerSection,
    #[serde(default)]
    pub mailbox: MailboxSection,
    /// Absent: over-the-air updates are off; update commands are refused
    /// with a reason on `ota/progress`.
    pub ota: Option<OtaSection>,
    /// Trusted neighbour gateways (`docs/peering.md`).
    #[serde(default)]
    pub peering: PeeringSection,
    #[serde(default, rename = "peer")]
    pub peers: Vec<PeerSection>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySection {
    /// SQLite store, gateway key and admin password hash live here.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// The gateway's ed25519 identity; created on first start if missing.
    /// Default: `<data_dir>/gateway.key`.
    pub key_file: Option<PathBuf>,
    /// `error`, `warn`, `info`, `debug` or `trace`, or a tracing filter.
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// The system log file whose tail goes into the diagnostic bundle
    /// (the appliance's syslogd writes `/data/log/messages`).
    pub system_log: Option<PathBuf>,
}

impl Default for GatewaySection {
    fn default() -> Self {
        GatewaySection {
            data_dir: default_data_dir(),
            key_file: None,
            log_level: default_log_level(),
            system_log: None,
        }
    }
}

impl GatewaySection {
    pub fn key_path(&self) -> PathBuf {
        self.key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("gateway.key"))
    }

    /// Where `seed-gateway set-admin-password` puts the admin password's hash.
    pub fn admin_hash_path(&self) -> PathBuf {
        admin_hash_path(&self.data_dir)
    }
}

/// The admin password's hash file inside a data directory.
pub fn admin_hash_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.hash")
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("/data/seed-gateway")
}

fn default_log_level() -> String {
    "info".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    /// Address of the status page and API.
    #[serde(default = "default_http_bind")]
    pub bind: SocketAddr,
    /// argon2 PHC string of the admin password. When absent, the hash in
    /// `<data_dir>/admin.hash` is used (set with `seed-gateway set-admin-password`);
    /// with neither, `/admin` is disabled.
    pub admin_password_hash: Option<String>,
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            bind: default_http_bind(),
            admin_password_hash: None,
        }
    }
}

fn default_http_bind() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8080))
}

/// One radio source. `type` selects the driver.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum LinkSection {
    /// An RNode LoRa modem on a serial port (KISS).
    Rnode {
        name: String,
        port: PathBuf,
        #[serde(default = "default_frequency")]
        frequency_hz: u32,
        #[serde(default = "default_bandwidth")]
        bandwidth_hz: u32,
        #[serde(default = "default_sf")]
        spreading_factor: u8,
        #[serde(default = "default_cr")]
        coding_rate: u8,
        #[serde(default = "default_tx_power")]
        tx_power_dbm: i8,
    },
    /// A Semtech UDP packet forwarder (GWMP v2) sending to this address.
    Gwmp {
        name: String,
        #[serde(default = "default_gwmp_bind")]
        bind: SocketAddr,
        /// Downlink frequency and data rate (the forwarder reports its own
        /// for uplinks).
        #[serde(default = "default_frequency")]
        frequency_hz: u32,
        #[serde(default = "default_bandwidth")]
        bandwidth_hz: u32,
        #[serde(default = "default_sf")]
        spreading_factor: u8,
        #[serde(default = "default_cr")]
        coding_rate: u8,
        #[serde(default = "default_tx_power")]
        tx_power_dbm: i8,
    },
}

fn default_frequency() -> u32 {
    RadioParams::default().freq_hz
}
fn default_bandwidth() -> u32 {
    RadioParams::default().bandwidth_hz
}
fn default_sf() -> u8 {
    RadioParams::default().sf
}
fn default_cr() -> u8 {
    RadioParams::default().coding_rate
}
fn default_tx_power() -> i8 {
    RadioParams::default().tx_power_dbm
}
fn default_gwmp_bind() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 1700))
}

impl LinkSection {
    pub fn name(&self) -> &str {
        match self {
            LinkSection::Rnode { name, .. } | LinkSection::Gwmp { name, .. } => name,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            LinkSection::Rnode { .. } => "rnode",
            LinkSection::Gwmp { .. } => "gwmp",
        }
    }

    pub fn radio_params(&self) -> RadioParams {
        match *self {
            LinkSection::Rnode {
                frequency_hz,
                bandwidth_hz,
                spreading_factor,
                coding_rate,
                tx_power_dbm,
                ..
            }
            | LinkSection::Gwmp {
                frequency_hz,
                bandwidth_hz,
                spreading_factor,
                coding_rate,
                tx_power_dbm,
                ..
            } => RadioParams {
                freq_hz: frequency_hz,
                sf: spreading_factor,
                bandwidth_hz,
                coding_rate,
                tx_power_dbm,
            },
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionSection {
    /// `EU868` enforces the ETSI sub-band duty cycles on everything the
    /// gateway transmits; `unrestricted` only records airtime.
    #[serde(default = "default_region")]
    pub name: String,
}

impl Default for RegionSection {
    fn default() -> Self {
        RegionSection {
            name: default_region(),
        }
    }
}

fn default_region() -> String {
    "EU868".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    /// Disk the store may use. Near it heartbeats are compacted; at it,
    /// new transactions are refused (not acked) until the uplink drains.
    #[serde(default = "default_quota_mb")]
    pub quota_mb: u64,
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection {
            quota_mb: default_quota_mb(),
        }
    }
}

fn default_quota_mb() -> u64 {
    512
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerSection {
    /// Linux `power_supply` class directory read for the gateway's own power state.
    #[serde(default = "default_supply_path")]
    pub supply_path: PathBuf,
    /// A discharging battery below this charge (percent) puts the gateway in
    /// `low_power`: its own heartbeat slows to one every 7.5 minutes.
    #[serde(default = "default_low_battery")]
    pub low_battery_percent: u8,
}

impl Default for PowerSection {
    fn default() -> Self {
        PowerSection {
            supply_path: default_supply_path(),
            low_battery_percent: default_low_battery(),
        }
    }
}

fn default_supply_path() -> PathBuf {
    PathBuf::from("/sys/class/power_supply")
}

fn default_low_battery() -> u8 {
    30
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailboxSection {
    /// How long a downlink waits for its device before an `expired` receipt.
    #[serde(default = "default_ttl")]
    pub ttl_s: u64,
    /// Delivery attempts before a `failed` receipt.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// Pending downlinks per device; more get a `rejected` receipt.
    #[serde(default = "default_per_device")]
    pub max_per_device: u32,
    /// Pending downlinks in total.
    #[serde(default = "default_total")]
    pub max_total: u32,
    /// Wait before the first retry of an unacknowledged downlink; it doubles
    /// with every attempt up to `retry_max_ms`. Retries happen only when
    /// the device is heard again, never into silence.
    #[serde(default = "default_retry_base")]
    pub retry_base_ms: u64,
    /// Longest wait between retries.
    #[serde(default = "default_retry_max")]
    pub retry_max_ms: u64,
    /// Least time between two ledger-sync offers to the same device; 0
    /// turns offers off.
    #[serde(default = "default_sync_offer_interval")]
    pub sync_offer_interval_s: u64,
}

impl Default for MailboxSection {
    fn default() -> Self {
        MailboxSection {
            ttl_s: default_ttl(),
            max_attempts: default_attempts(),
            max_per_device: default_per_device(),
            max_total: default_total(),
            retry_base_ms: default_retry_base(),
            retry_max_ms: default_retry_max(),
            sync_offer_interval_s: default_sync_offer_interval(),
        }
    }
}

fn default_ttl() -> u64 {
    7 * 24 * 3600
}
fn default_attempts() -> u32 {
    8
}
fn default_per_device() -> u32 {
    32
}
fn default_total() -> u32 {
    10_000
}
fn default_retry_base() -> u64 {
    10_000
}
fn default_retry_max() -> u64 {
    600_000
}
fn default_sync_offer_interval() -> u64 {
    600
}

/// Over-the-air updates through RAUC (`docs/ota.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtaSection {
    /// The `rauc` command (a path, or a name looked up in `PATH`).
    #[serde(default = "default_rauc")]
    pub rauc: PathBuf,
    /// RAUC's system configuration: its `compatible` must match a bundle's.
    #[serde(default = "default_rauc_system_conf")]
    pub system_conf: PathBuf,
    /// The CA certificates a bundle's signature must chain to.
    #[serde(default = "default_rauc_keyring")]
    pub keyring: PathBuf,
    /// `VERSION_ID=` in this file is the running system's version.
    #[serde(default = "default_release_file")]
    pub release_file: PathBuf,
    /// Downloaded bundles and the update's notes. Default: `<data_dir>/ota`.
    pub download_dir: Option<PathBuf>,
    /// Run after an installed update, once the gateway has stopped cleanly.
    #[serde(default = "default_reboot_command")]
    pub reboot_command: Vec<String>,
    /// After booting an update: how long the new system has to show it is
    /// healthy (store writable, radios that were up before are up again,
    /// broker reached if it was reached before) before it gives up.
    #[serde(default = "default_health_timeout")]
    pub health_timeout_s: u64,
}

impl OtaSection {
    pub fn download_dir(&self, data_dir: &Path) -> PathBuf {
        self.download_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("ota"))
    }
}

fn default_rauc() -> PathBuf {
    PathBuf::from("rauc")
}
fn default_rauc_system_conf() -> PathBuf {
    PathBuf::from("/etc/rauc/system.conf")
}
fn default_rauc_keyring() -> PathBuf {
    PathBuf::from("/etc/rauc/keyring.pem")
}
fn default_release_file() -> PathBuf {
    PathBuf::from("/etc/os-release")
}
fn default_reboot_command() -> Vec<String> {
    vec!["reboot".into()]
}
fn default_health_timeout() -> u64 {
    300
}

/// `[peering]`: how this gateway meets its trusted neighbours.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeeringSection {
    /// Where neighbours connect to hand this gateway their messages.
    /// Absent: no neighbour can hand messages to us (we can still hand
    /// ours to them).
    pub bind: Option<SocketAddr>,
    /// How long our own uplink must have been down before the outbox is
    /// handed to a neighbour whose uplink is up.
    #[serde(default = "default_custody_after")]
    pub custody_after_s: u64,
    /// Messages handed over and not yet acknowledged, at most.
    #[serde(default = "default_custody_window")]
    pub window: u32,
}

impl Default for PeeringSection {
    fn default() -> Self {
        PeeringSection {
            bind: None,
            custody_after_s: default_custody_after(),
            window: default_custody_window(),
        }
    }
}

fn default_custody_after() -> u64 {
    60
}
fn default_custody_window() -> u32 {
    64
}

/// `[[peer]]`: one trusted neighbour gateway.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerSection {
    /// Shown on the status page and in logs.
    pub name: String,
    /// `host:port` of the neighbour's `[peering] bind`.
    pub address: String,
    /// The neighbour's gateway id: its ed25519 public key, 64 hex digits
    /// (`seed-gateway keygen` prints it; the status page shows it).
    pub gateway_id: String,
}

impl PeerSection {
    /// The 32-byte public key (valid after [`Config::parse`]).
    pub fn key(&self) -> Option<[u8; 32]> {
        parse_gateway_id(&self.gateway_id)
    }
}

/// A gateway id as 32 bytes: 64 hex digits naming an ed25519 point.
pub fn parse_gateway_id(text: &str) -> Option<[u8; 32]> {
    let bytes: [u8; 32] = hex::decode(text).ok()?.try_into().ok()?;
    ed25519_dalek::VerifyingKey::from_bytes(&bytes).ok()?;
    Some(bytes)
}

/// A configuration problem, located in the file.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {key}: {message}")]
pub struct ConfigError {
    pub file: String,
    /// 1-based; 0 when the problem is not tied to a line (unreadable file).
    pub line: usize,
    /// Dotted key path, e.g. `mqtt.url` or `link[1].port`.
    pub key: String,
    pub message: String,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            line: 0,
            key: "(file)".into(),
            message: format!("cannot read: {e}"),
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parses and validates config text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let (line, key) = match e.span() {
                Some(span) => locate_span(text, span.start),
                None => (0, "(document)".into()),
            };
            ConfigError {
                file: file.into(),
                line,
                key,
                message: e.message().trim().to_string(),
            }
        })?;
        config.validate(text, file)?;
        Ok(config)
    }

    /// Checks what serde cannot: values that parse but make no sense.
    fn validate(&self, text: &str, file: &str) -> Result<(), ConfigError> {
        let fail = |table: &str, key: &str, message: String| ConfigError {
            file: file.into(),
            line: find_key_line(text, table, key),
            key: if table.is_empty() {
                key.to_string()
            } else {
                format!("{table}.{key}")
            },
            message,
        };
        if let Some(mqtt) = &self.mqtt {
            if let Err(crate::uplink::ConfigError::Invalid { key, reason }) = mqtt.validate() {
                return Err(fail("mqtt", key, reason));
            }
        }
        if !["EU868", "unrestricted"].contains(&self.region.name.as_str()) {
            return Err(fail(
                "region",
                "name",
                format!(
                    "{:?} is not a known region (EU868, unrestricted)",
                    self.region.name
                ),
            ));
        }
        if self.storage.quota_mb == 0 {
            return Err(fail("storage", "quota_mb", "must be at least 1".into()));
        }
        if let Some(ota) = &self.ota {
            if ota.reboot_command.is_empty() {
                return Err(fail(
                    "ota",
                    "reboot_command",
                    "must name a command, e.g. [\"reboot\"]".into(),
                ));
            }
            if ota.health_timeout_s == 0 {
                return Err(fail("ota", "health_timeout_s", "must be at least 1".into()));
            }
        }
        let m = &self.mailbox;
        for (key, value) in [
            ("ttl_s", m.ttl_s),
            ("max_attempts", m.max_attempts.into()),
            ("max_per_device", m.max_per_device.into()),
            ("max_total", m.max_total.into()),
            ("retry_base_ms", m.retry_base_ms),
        ] {
            if value == 0 {
                return Err(fail("mailbox", key, "must be at least 1".into()));
            }
        }
        if m.retry_max_ms < m.retry_base_ms {
            return Err(fail(
                "mailbox",
                "retry_max_ms",
                format!(
                    "{} is less than retry_base_ms ({})",
                    m.retry_max_ms, m.retry_base_ms
                ),
            ));
        }
        if self.power.low_battery_percent > 100 {
            return Err(fail(
                "power",
                "low_battery_percent",
                format!("{} is not a percentage", self.power.low_battery_percent),
            ));
        }
        self.validate_peers(&fail)?;
        let mut names = std::collections::HashSet::new();
        for link in &self.links {
            if !names.insert(link.name()) {
                return Err(fail(
                    "link",
                    "name",
                    format!("two links are named {:?}", link.name()),
                ));
            }
            let p = link.radio_params();
            if !(5..=12).contains(&p.sf) {
                return Err(fail(
                    "link",
                    "spreading_factor",
                    format!("{} is not 5..=12", p.sf),
                ));
            }
            if ![125_000, 250_000, 500_000].contains(&p.bandwidth_hz) {
                return Err(fail(
                    "link",
                    "bandwidth_hz",
                    format!("{} is not 125000, 250000 or 500000", p.bandwidth_hz),
                ));
            }
            if !(5..=8).contains(&p.coding_rate) {
                return Err(fail(
                    "link",
                    "coding_rate",
                    format!("{} is not 5..=8 (4/5 .. 4/8)", p.coding_rate),
                ));
            }
        }
        Ok(())
    }
}

impl Config {
    fn validate_peers(
        &self,
        fail: &dyn Fn(&str, &str, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        let p = &self.peering;
        if p.custody_after_s == 0 {
            return Err(fail(
                "peering",
                "custody_after_s",
                "must be at least 1".into(),
            ));
        }
        if !(1..=4096).contains(&p.window) {
            return Err(fail(
                "peering",
                "window",
                format!("{} is not 1..=4096", p.window),
            ));
        }
        let mut names = std::collections::HashSet::new();
        let mut keys = std::collections::HashSet::new();
        for peer in &self.peers {
            if peer.name.trim().is_empty() {
                return Err(fail("peer", "name", "must not be empty".into()));
            }
            if !names.insert(peer.name.as_str()) {
                return Err(fail(
                    "peer",
                    "name",
                    format!("two peers are named {:?}", peer.name),
                ));
            }
            let port_ok = peer
                .address
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !port_ok {
                return Err(fail(
                    "peer",
                    "address",
                    format!("{:?} is not host:port", peer.address),
                ));
            }
            let Some(key) = peer.key() else {
                return Err(fail(
                    "peer",
                    "gateway_id",
                    format!(
                        "{:?} is not a gateway id (64 hex digits of an ed25519 public key)",
                        peer.gateway_id
                    ),
                ));
            };
            if !keys.insert(key) {
                return Err(fail(
                    "peer",
                    "gateway_id",
                    format!("two peers have the gateway id {}", peer.gateway_id),
                ));
            }
        }
        Ok(())
    }
}

/// Line (1-based) and dotted key path of the item at byte `offset`.
fn locate_span(text: &str, offset: usize) -> (usize, String) {
    let offset = offset.min(text.len());
    let line = text[..offset].matches('\n').count() + 1;
    let line_text = text.lines().nth(line - 1).unwrap_or("");
    let table = current_table(text, line);
    let key = line_text
        .split('=')
        .next()
        .map(str::trim)
        .filter(|k| !k.is_empty() && !k.starts_with('['))
        .map(|k| k.trim_matches('"').to_string());
    let path = match (table.as_deref(), key) {
        (Some(t), Some(k)) => format!("{t}.{k}"),
        (None, Some(k)) => k,
        (Some(t), None) => t.to_string(),
        (None, None) => "(document)".into(),
    };
    (line, path)
}

/// The `[table]` or `[[table]]` header in force at `line`.
fn current_table(text: &str, line: usize) -> Option<String> {
    text.lines()
        .take(line)
        .filter_map(|l| {
            let l = l.trim();
            l.starts_with('[')
                .then(|| l.trim_matches(|c| c == '[' || c == ']').trim().to_string())
        })
        .last()
}

/// Line of `key = ...` inside `[table]` (or at top level when `table` is
/// empty); 0 when the key is not written out (a default was used).
fn find_key_line(text: &str, table: &str, key: &str) -> usize {
    let mut in_table = table.is_empty();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.starts_with('[') {
            in_table = l.trim_matches(|c| c == '[' || c == ']').trim() == table;
            continue;
        }
        if in_table && l.split('=').next().map(str::trim) == Some(key) {
            return i + 1;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::parse("", "c.toml").unwrap();
        assert_eq!(c.gateway.data_dir, PathBuf::from("/data/seed-gateway"));
        assert_eq!(c.http.bind.port(), 8080);
        assert!(c.mqtt.is_none());
        assert_eq!(c.storage.quota_mb, 512);
    }

    #[test]
    fn full_file_parses() {
        let text = r#"
[gateway]
data_dir = "/tmp/x"
[mqtt]
url = "mqtts://broker:8883"
username = "gw"
password = "secret"
[[link]]
name = "rnode0"
type = "rnode"
port = "/dev/ttyACM0"
spreading_factor = 12
[[link]]
name = "sx1302"
type = "gwmp"
bind = "127.0.0.1:1700"
"#;
        let c = Config::parse(text, "c.toml").unwrap();
        assert_eq!(c.links.len(), 2);
        assert_eq!(c.links[0].radio_params().sf, 12);
        assert_eq!(c.links[1].kind(), "gwmp");
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let text =
            "[gateway]\ndata_dir = \"/x\"\n\n[mqtt]\nurl = \"mqtt://a:1\"\npasword = \"x\"\n";
        let e = Config::parse(text, "c.toml").unwrap_err();
        assert_eq!(e.line, 6, "{e}");
        assert_eq!(e.key, "mqtt.pasword", "{e}");
        assert!(e.message.contains("pasword"), "{e}");
    }

    #[test]
    fn wrong_type_names_key_and_line() {
        let text = "[storage]\nquota_mb = \"lots\"\n";
        let e = Config::parse(text, "c.toml").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (2, "storage.quota_mb"), "{e}");
    }

    #[test]
    fn bad_value_names_key_and_line() {
        let text = "[mqtt]\n\nurl = \"http://broker\"\n";
        let e = Config::parse(text, "c.toml").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (3, "mqtt.url"), "{e}");
        assert!(e.to_string().starts_with("c.toml:3: mqtt.url:"), "{e}");
    }

    #[test]
    fn unknown_link_type_is_an_error() {
        let text = "[[link]]\nname = \"x\"\ntype = \"carrier-pigeon\"\n";
        let e = Config::parse(text, "c.toml").unwrap_err();
        assert!(e.message.contains("carrier-pigeon"), "{e}");
        assert_eq!(e.key, "link.type", "{e}");
    }

    #[test]
    fn mailbox_and_power_keys_parse_and_validate() {
        let c = Config::parse("", "c.toml").unwrap();
        assert_eq!(c.mailbox.retry_base_ms, 10_000);
        assert_eq!(c.mailbox.sync_offer_interval_s, 600);
        assert_eq!(c.power.low_battery_percent, 30);
        let text = "[mailbox]\nretry_base_ms = 200\nretry_max_ms = 1000\n[power]\nsupply_path = \"/tmp/ps\"\n";
        let c = Config::parse(text, "c.toml").unwrap();
        assert_eq!(
            (c.mailbox.retry_base_ms, c.mailbox.retry_max_ms),
            (200, 1000)
        );
        assert_eq!(c.power.supply_path, PathBuf::from("/tmp/ps"));
        let e = Config::parse("[mailbox]\nretry_base_ms = 0\n", "c.toml").unwrap_err();
        assert_eq!(
            (e.line, e.key.as_str()),
            (2, "mailbox.retry_base_ms"),
            "{e}"
        );
        let e = Config::parse("[mailbox]\nretry_max_ms = 5\n", "c.toml").unwrap_err();
        assert_eq!(e.key, "mailbox.retry_max_ms", "{e}");
    }

    const PEER_ID: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    #[test]
    fn peers_parse_with_defaults() {
        let c = Config::parse("", "c.toml").unwrap();
        assert!(c.peers.is_empty());
        assert_eq!(c.peering.bind, None);
        assert_eq!((c.peering.custody_after_s, c.peering.window), (60, 64));
        let text = format!(
            "[peering]\nbind = \"0.0.0.0:7700\"\n[[peer]]\nname = \"school\"\naddress = \"10.0.0.2:7700\"\ngateway_id = \"{PEER_ID}\"\n"
        );
        let c = Config::parse(&text, "c.toml").unwrap();
        assert_eq!(c.peering.bind.unwrap().port(), 7700);
        assert_eq!(c.peers[0].name, "school");
        assert_eq!(hex::encode(c.peers[0].key().unwrap()), PEER_ID);
    }

    #[test]
    fn bad_peers_name_key_and_line() {
        let text = "[[peer]]\nname = \"a\"\naddress = \"h:1\"\ngateway_id = \"abcd\"\n";
        let e = Config::parse(text, "c.toml").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (4, "peer.gateway_id"), "{e}");
        let text =
            format!("[[peer]]\nname = \"a\"\naddress = \"nowhere\"\ngateway_id = \"{PEER_ID}\"\n");
        let e = Config::parse(&text, "c.toml").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (3, "peer.address"), "{e}");
        let text =
            format!("[[peer]]\nname = \"a\"\naddres = \"h:1\"\ngateway_id = \"{PEER_ID}\"\n");
        let e = Config::parse(&text, "c.toml").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (3, "peer.addres"), "{e}");
        let e = Config::parse("[peering]\nwindow = 0\n", "c.toml").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (2, "peering.window"), "{e}");
        let twice = format!(
            "[[peer]]\nname = \"a\"\naddress = \"h:1\"\ngateway_id = \"{PEER_ID}\"\n[[peer]]\nname = \"b\"\naddress = \"h:2\"\ngateway_id = \"{PEER_ID}\"\n"
        );
        let e = Config::parse(&twice, "c.toml").unwrap_err();
        assert_eq!(e.key, "peer.gateway_id", "{e}");
    }

    #[test]
    fn syntax_error_names_line() {
        let e = Config::parse("[http]\nbind = \n", "c.toml").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
    }
}
