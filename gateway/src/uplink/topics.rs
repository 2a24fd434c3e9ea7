//! Every MQTT topic the gateway uses, and the only place their strings are
//! built or parsed (the contract's MQTT table lives here in code).
//!
//! All topics hang under `{prefix}/gw/{gateway_id}/`:
//!
//! | suffix | direction |
//! |---|---|
//! | `up/{message_type}` | up, QoS 1, one per stored message |
//! | `state` | up, retained; `offline` is the Last Will |
//! | `heartbeat` | up, the gateway's own signed heartbeat |
//! | `down/{device_id}` | down, QoS 1, subscribed as `down/+` |
//! | `receipt` | up, downlink delivery receipts |
//! | `ota/command` | down, QoS 1 |
//! | `ota/progress` | up |

use super::config::{check_topic_level_path, ConfigError};

/// Outbox message type of a downlink receipt the gateway publishes.
pub const GATEWAY_RECEIPT: &str = "gateway_receipt";
/// Outbox message type of the gateway's own heartbeat.
pub const GATEWAY_HEARTBEAT: &str = "gateway_heartbeat";
/// Outbox message type of an update's outcome (published on `ota/progress`).
pub const GATEWAY_OTA: &str = "gateway_ota";

/// The topic tree of one gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// `{prefix}/gw/{gateway_id}`, without a trailing slash.
    base: String,
}

/// What an incoming publish is, judged by its topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncomingTopic {
    /// `down/{device_id}`: the raw topic level (validated by the caller).
    Downlink { device_id: String },
    /// `ota/command`.
    OtaCommand,
}

/// Message type used in `up/{message_type}` when the stored type cannot be a
/// topic level (it would otherwise be refused by the broker or, worse, land
/// on another topic).
pub const UNKNOWN_MESSAGE_TYPE: &str = "unknown";

impl Topics {
    /// Checks that prefix and gateway id are literal topic levels.
    pub fn new(prefix: &str, gateway_id: &str) -> Result<Topics, ConfigError> {
        check_topic_level_path("prefix", prefix)?;
        check_topic_level_path("gateway_id", gateway_id)?;
        if gateway_id.contains('/') {
            return Err(ConfigError::Invalid {
                key: "gateway_id",
                reason: format!("must be a single topic level (got {gateway_id:?})"),
            });
        }
        Ok(Topics {
            base: format!("{prefix}/gw/{gateway_id}"),
        })
    }

    /// `…/up/{message_type}`; a type that is not a plain lowercase word
    /// becomes [`UNKNOWN_MESSAGE_TYPE`] (the payload still carries the frame).
    pub fn up(&self, message_type: &str) -> String {
        let level = if is_plain_level(message_type) {
            message_type
        } else {
            UNKNOWN_MESSAGE_TYPE
        };
        format!("{}/up/{level}", self.base)
    }

    /// The topic of an outbox entry the gateway itself originated (message
    /// types [`GATEWAY_RECEIPT`], [`GATEWAY_HEARTBEAT`], [`GATEWAY_OTA`]); `None` for
    /// messages heard from devices, which go to [`Topics::up`].
    pub fn gateway_topic(&self, message_type: &str) -> Option<String> {
        match message_type {
            GATEWAY_RECEIPT => Some(self.receipt()),
            GATEWAY_HEARTBEAT => Some(self.heartbeat()),
            GATEWAY_OTA => Some(self.ota_progress()),
            _ => None,
        }
    }

    /// Whether [`Topics::up`] keeps this message type as given.
    pub fn is_valid_message_type(message_type: &str) -> bool {
        is_plain_level(message_type)
    }

    pub fn state(&self) -> String {
        format!("{}/state", self.base)
    }

    pub fn heartbeat(&self) -> String {
        format!("{}/heartbeat", self.base)
    }

    pub fn receipt(&self) -> String {
        format!("{}/receipt", self.base)
    }

    pub fn ota_progress(&self) -> String {
        format!("{}/ota/progress", self.base)
    }

    pub fn ota_command(&self) -> String {
        format!("{}/ota/command", self.base)
    }

    /// The topic a backend publishes a downlink for `device_id` (hex) to.
    pub fn down(&self, device_id: &str) -> String {
        format!("{}/down/{device_id}", self.base)
    }

    /// Subscription filter for every device's downlinks.
    pub fn down_filter(&self) -> String {
        format!("{}/down/+", self.base)
    }

    /// Classifies an incoming publish; `None` for topics we did not
    /// subscribe to (or malformed ones).
    pub fn parse_incoming(&self, topic: &str) -> Option<IncomingTopic> {
        let rest = topic.strip_prefix(&self.base)?.strip_prefix('/')?;
        if rest == "ota/command" {
            return Some(IncomingTopic::OtaCommand);
        }
        let device_id = rest.strip_prefix("down/")?;
        if device_id.is_empty() || device_id.contains('/') {
            return None;
        }
        Some(IncomingTopic::Downlink {
            device_id: device_id.to_string(),
        })
    }
}

/// A short lowercase word: safe as one topic level.
fn is_plain_level(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics() -> Topics {
        Topics::new("seed/v1", "a1b2").unwrap()
    }

    #[test]
    fn builds_the_contract_topics() {
        let t = topics();
        assert_eq!(t.up("heartbeat"), "seed/v1/gw/a1b2/up/heartbeat");
        assert_eq!(t.up("ledger_sync"), "seed/v1/gw/a1b2/up/ledger_sync");
        assert_eq!(t.state(), "seed/v1/gw/a1b2/state");
        assert_eq!(t.heartbeat(), "seed/v1/gw/a1b2/heartbeat");
        assert_eq!(t.receipt(), "seed/v1/gw/a1b2/receipt");
        assert_eq!(t.down("ff00"), "seed/v1/gw/a1b2/down/ff00");
        assert_eq!(t.down_filter(), "seed/v1/gw/a1b2/down/+");
        assert_eq!(t.ota_command(), "seed/v1/gw/a1b2/ota/command");
        assert_eq!(t.ota_progress(), "seed/v1/gw/a1b2/ota/progress");
    }

    #[test]
    fn message_types_cannot_escape_their_level() {
        let t = topics();
        for bad in ["", "a/b", "+", "#", "Heartbeat", "x\0"] {
            assert_eq!(t.up(bad), "seed/v1/gw/a1b2/up/unknown", "{bad:?}");
        }
    }

    #[test]
    fn parses_incoming_topics() {
        let t = topics();
        assert_eq!(
            t.parse_incoming("seed/v1/gw/a1b2/down/00ff"),
            Some(IncomingTopic::Downlink {
                device_id: "00ff".into()
            })
        );
        assert_eq!(
            t.parse_incoming("seed/v1/gw/a1b2/ota/command"),
            Some(IncomingTopic::OtaCommand)
        );
        for other in [
            "seed/v1/gw/a1b2/down/",
            "seed/v1/gw/a1b2/down/a/b",
            "seed/v1/gw/a1b2x/down/00",
            "seed/v1/gw/other/down/00",
            "seed/v1/gw/a1b2/state",
        ] {
            assert_eq!(t.parse_incoming(other), None, "{other}");
        }
    }

    #[test]
    fn gateway_id_must_be_one_level() {
        for bad in ["", "a/b", "a+", "#"] {
            assert!(Topics::new("seed/v1", bad).is_err(), "{bad:?}");
        }
        assert!(Topics::new("a//b", "gw").is_err());
    }
}
