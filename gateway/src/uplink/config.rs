//! The `[mqtt]` settings and the broker address they name.
//!
//! Plain serde structs with documented defaults (the ChirpStack forwarder's
//! shape): the daemon folds [`MqttConfig`] into its config file, `check-config`
//! calls [`MqttConfig::validate`], and nothing else parses these values.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

/// How the gateway reaches its MQTT broker.
///
/// Only `url` is required; every other key has the default named in its doc.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// `mqtt://host[:port]` (plain TCP, default port 1883) or
    /// `mqtts://host[:port]` (TLS, default port 8883). Required.
    pub url: String,
    /// MQTT client id. Default: `seed-gw-{gateway_id}`. It must stay the same
    /// across restarts: the broker keeps the persistent session (queued
    /// downlinks) under this id.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Topic prefix. Default: `seed/v1`.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Login name. Default: none (anonymous).
    #[serde(default)]
    pub username: Option<String>,
    /// Login password; only valid together with `username`. Default: none.
    #[serde(default)]
    pub password: Option<String>,
    /// PEM file with the CA certificate(s) the broker's certificate must chain
    /// to. Default: the system's trust store. `mqtts://` only.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) for brokers that require one. Needs
    /// `key_file`. Default: none. `mqtts://` only.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `cert_file`. Default: none.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// MQTT keep-alive in seconds (0 disables it). Default: 30.
    #[serde(default = "default_keep_alive_secs")]
    pub keep_alive_secs: u16,
    /// Most outbox messages published but not yet acknowledged (PUBACK) at
    /// once. Default: 64.
    #[serde(default = "default_max_inflight")]
    pub max_inflight: u16,
    /// First wait before reconnecting, in ms; doubles per failed attempt
    /// (with jitter). Default: 1000.
    #[serde(default = "default_reconnect_min_ms")]
    pub reconnect_min_ms: u64,
    /// Longest wait between reconnect attempts, in ms. Default: 60000.
    #[serde(default = "default_reconnect_max_ms")]
    pub reconnect_max_ms: u64,
    /// How often the retained `online` state is refreshed (uptime, queue
    /// depth), in seconds. Default: 60.
    #[serde(default = "default_state_interval_secs")]
    pub state_interval_secs: u64,
    /// On shutdown, how long to wait for outstanding PUBACKs and the
    /// `offline` state before disconnecting, in ms. Default: 5000.
    #[serde(default = "default_shutdown_grace_ms")]
    pub shutdown_grace_ms: u64,
}

fn default_prefix() -> String {
    "seed/v1".to_string()
}
fn default_keep_alive_secs() -> u16 {
    30
}
fn default_max_inflight() -> u16 {
    64
}
fn default_reconnect_min_ms() -> u64 {
    1_000
}
fn default_reconnect_max_ms() -> u64 {
    60_000
}
fn default_state_interval_secs() -> u64 {
    60
}
fn default_shutdown_grace_ms() -> u64 {
    5_000
}

/// Largest accepted `max_inflight`: rumqttc keeps a slot per packet id and we
/// add a few for state and extra publishes, all within u16 packet ids.
const MAX_INFLIGHT_LIMIT: u16 = 10_000;

impl MqttConfig {
    /// A config with every default and the given broker URL (what
    /// `demo --mqtt URL` uses).
    pub fn from_url(url: impl Into<String>) -> MqttConfig {
        MqttConfig {
            url: url.into(),
            client_id: None,
            prefix: default_prefix(),
            username: None,
            password: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
            keep_alive_secs: default_keep_alive_secs(),
            max_inflight: default_max_inflight(),
            reconnect_min_ms: default_reconnect_min_ms(),
            reconnect_max_ms: default_reconnect_max_ms(),
            state_interval_secs: default_state_interval_secs(),
            shutdown_grace_ms: default_shutdown_grace_ms(),
        }
    }

    /// Checks everything that can be checked without touching the network or
    /// files. Errors name the key.
    pub fn validate(&self) -> Result<BrokerUrl, ConfigError> {
        let broker = BrokerUrl::parse(&self.url)?;
        let bad = |key: &'static str, reason: String| ConfigError::Invalid { key, reason };
        if let Some(id) = &self.client_id {
            if id.is_empty() {
                return Err(bad("client_id", "must not be empty".into()));
            }
            if id.len() > 65_535 {
                return Err(bad("client_id", "longer than 65535 bytes".into()));
            }
        }
        check_topic_level_path("prefix", &self.prefix)?;
        if self.password.is_some() && self.username.is_none() {
            return Err(bad(
                "password",
                "given without `username`; MQTT 3.1.1 sends a password only with a user name"
                    .into(),
            ));
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(bad(
                if self.cert_file.is_some() {
                    "key_file"
                } else {
                    "cert_file"
                },
                "`cert_file` and `key_file` must be given together".into(),
            ));
        }
        if !broker.tls {
            for (key, value) in [
                ("ca_file", &self.ca_file),
                ("cert_file", &self.cert_file),
                ("key_file", &self.key_file),
            ] {
                if value.is_some() {
                    return Err(bad(
                        key,
                        format!(
                            "only used with TLS, but `url` is {} (use mqtts://)",
                            broker.display()
                        ),
                    ));
                }
            }
        }
        if self.max_inflight == 0 || self.max_inflight > MAX_INFLIGHT_LIMIT {
            return Err(bad(
                "max_inflight",
                format!("must be between 1 and {MAX_INFLIGHT_LIMIT}"),
            ));
        }
        if self.reconnect_min_ms == 0 {
            return Err(bad("reconnect_min_ms", "must be at least 1".into()));
        }
        if self.reconnect_max_ms < self.reconnect_min_ms {
            return Err(bad(
                "reconnect_max_ms",
                format!(
                    "{} is less than reconnect_min_ms ({})",
                    self.reconnect_max_ms, self.reconnect_min_ms
                ),
            ));
        }
        if self.state_interval_secs == 0 {
            return Err(bad("state_interval_secs", "must be at least 1".into()));
        }
        Ok(broker)
    }

    /// The client id actually used: the configured one or `seed-gw-{gateway_id}`.
    pub fn effective_client_id(&self, gateway_id: &str) -> String {
        self.client_id
            .clone()
            .unwrap_or_else(|| format!("seed-gw-{gateway_id}"))
    }

    pub(crate) fn reconnect_min(&self) -> Duration {
        Duration::from_millis(self.reconnect_min_ms)
    }
    pub(crate) fn reconnect_max(&self) -> Duration {
        Duration::from_millis(self.reconnect_max_ms)
    }
    pub(crate) fn state_interval(&self) -> Duration {
        Duration::from_secs(self.state_interval_secs)
    }
    pub(crate) fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}

/// A topic prefix or id must be usable as literal topic levels: no wildcards
/// (they would subscribe to, or be refused for, other gateways' topics), no
/// empty levels, no NUL.
pub(crate) fn check_topic_level_path(key: &'static str, value: &str) -> Result<(), ConfigError> {
    let reason = if value.is_empty() {
        Some("must not be empty")
    } else if value.contains(['+', '#']) {
        Some("must not contain the MQTT wildcards `+` or `#`")
    } else if value.contains('\0') {
        Some("must not contain NUL")
    } else if value.split('/').any(str::is_empty) {
        Some("must not start or end with `/` or contain `//`")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(ConfigError::Invalid {
            key,
            reason: format!("{reason} (got {value:?})"),
        }),
        None => Ok(()),
    }
}

/// Why an MQTT setting is unusable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    #[error("mqtt.{key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

/// The broker endpoint parsed from `url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// `mqtts://`: connect with TLS.
    pub tls: bool,
}

impl BrokerUrl {
    /// Parses `mqtt://host[:port]` or `mqtts://host[:port]` (IPv6 hosts in
    /// brackets). `tcp://` and `ssl://` are accepted as their aliases. No path,
    /// query or user info: credentials belong in `username`/`password`.
    pub fn parse(url: &str) -> Result<BrokerUrl, ConfigError> {
        let bad = |reason: String| ConfigError::Invalid {
            key: "url",
            reason: format!(
                "{reason} (got {url:?}; expected mqtt://host[:port] or mqtts://host[:port])"
            ),
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("missing scheme".into()))?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "mqtt" | "tcp" => false,
            "mqtts" | "ssl" => true,
            other => return Err(bad(format!("unsupported scheme `{other}`"))),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#']) {
            return Err(bad("paths and queries are not supported".into()));
        }
        if rest.contains('@') {
            return Err(bad(
                "user info in the URL is not supported; use `username` and `password`".into(),
            ));
        }
        let default_port = if tls { 8883 } else { 1883 };
        let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| bad("unclosed `[` in IPv6 address".into()))?;
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| bad("expected `:port` after `]`".into()))?,
                ),
            };
            (host, port)
        } else {
            match rest.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            }
        };
        if host.is_empty() {
            return Err(bad("missing host".into()));
        }
        let port = match port {
            None => default_port,
            Some(p) => match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err(bad(format!("invalid port `{p}`"))),
                Ok(port) => port,
            },
        };
        Ok(BrokerUrl {
            host: host.to_string(),
            port,
            tls,
        })
    }

    /// `mqtt://host:port` / `mqtts://host:port`, for logs and the status page.
    pub fn display(&self) -> String {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            format!("{scheme}://[{}]:{}", self.host, self.port)
        } else {
            format!("{scheme}://{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls_with_default_ports() {
        let u = BrokerUrl::parse("mqtt://broker.example").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.tls),
            ("broker.example", 1883, false)
        );
        let u = BrokerUrl::parse("mqtts://broker.example").unwrap();
        assert_eq!((u.port, u.tls), (8883, true));
        let u = BrokerUrl::parse("mqtt://127.0.0.1:18830/").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 18830));
        let u = BrokerUrl::parse("ssl://[::1]:8884").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.tls), ("::1", 8884, true));
        assert_eq!(u.display(), "mqtts://[::1]:8884");
    }

    #[test]
    fn rejects_bad_urls_naming_the_key() {
        for bad in [
            "broker:1883",
            "http://broker",
            "mqtt://",
            "mqtt://broker:0",
            "mqtt://broker:99999",
            "mqtt://user:pw@broker",
            "mqtt://broker/topic",
            "mqtt://[::1",
        ] {
            let err = BrokerUrl::parse(bad).unwrap_err().to_string();
            assert!(err.starts_with("mqtt.url: "), "{bad}: {err}");
        }
    }

    #[test]
    fn defaults_fill_everything_but_url() {
        let cfg: MqttConfig = toml::from_str(r#"url = "mqtt://localhost""#).unwrap();
        assert_eq!(cfg, MqttConfig::from_url("mqtt://localhost"));
        assert_eq!(cfg.prefix, "seed/v1");
        assert_eq!(cfg.max_inflight, 64);
        assert_eq!(cfg.effective_client_id("ab12"), "seed-gw-ab12");
        cfg.validate().unwrap();
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = toml::from_str::<MqttConfig>("url = \"mqtt://x\"\npasword = \"typo\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("pasword"), "{err}");
    }

    #[test]
    fn validation_names_the_offending_key() {
        let check = |f: &dyn Fn(&mut MqttConfig), key: &str| {
            let mut cfg = MqttConfig::from_url("mqtts://broker");
            f(&mut cfg);
            let err = cfg.validate().unwrap_err().to_string();
            assert!(err.starts_with(&format!("mqtt.{key}:")), "{err}");
        };
        check(&|c| c.prefix = "seed/+/v1".into(), "prefix");
        check(&|c| c.prefix = "/seed".into(), "prefix");
        check(&|c| c.password = Some("pw".into()), "password");
        check(&|c| c.cert_file = Some("c.pem".into()), "key_file");
        check(&|c| c.max_inflight = 0, "max_inflight");
        check(&|c| c.reconnect_max_ms = 10, "reconnect_max_ms");
        check(&|c| c.client_id = Some(String::new()), "client_id");
        check(
            &|c| {
                c.url = "mqtt://broker".into();
                c.ca_file = Some("ca.pem".into());
            },
            "ca_file",
        );
    }
}
