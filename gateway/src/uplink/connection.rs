//! The connection driver: one task that owns rumqttc's `EventLoop`, connects,
//! polls, and reconnects with backoff, forwarding every event in order to the
//! publisher task.
//!
//! Why a task of its own: `EventLoop::poll` must be polled continuously and is
//! not safe to cancel mid-way (it may have updated its state but not yet
//! written the packet), so nothing else may share a `select!` with it. The
//! only time the driver drops a `poll` future is when it drops the whole
//! `EventLoop` with it (stop, or a dead connection).
//!
//! Why a fresh `EventLoop` per connection: rumqttc would otherwise replay its
//! unacknowledged publishes on reconnect (or silently drop them when the
//! broker lost the session), and leftover packet-id state such as a pending
//! collision would carry over. With one `EventLoop` per connection the
//! publisher's view of what is in flight is exactly one connection's, and the
//! publisher re-sends from the store itself (see `window.rs`). Each
//! connection gets its own `AsyncClient`; handles tied to a dead connection
//! (downlink acks) then fail instead of acking on the wrong connection.

use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, LastWill, MqttOptions, NetworkOptions,
    Outgoing, Packet, QoS, StateError, TlsConfiguration, Transport,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::backoff::Backoff;
use super::config::{BrokerUrl, MqttConfig};
use super::tls;

/// Packet-id slots beyond `max_inflight` for state and extra publishes, so
/// rumqttc's own in-flight limit never stops it from reading its request
/// channel (which also carries downlink acks).
pub(crate) const EXTRA_INFLIGHT_SLOTS: u16 = 16;

/// TCP connect + TLS handshake + CONNACK must complete within this.
const CONNECT_TIMEOUT_SECS: u64 = 10;

/// Incoming and outgoing packets larger than this are refused by rumqttc.
const MAX_PACKET_BYTES: usize = 256 * 1024;

/// What the driver reports, in order.
#[derive(Debug)]
pub(crate) enum DriverEvent {
    /// CONNACK accepted. `client` sends on this connection only.
    Connected {
        client: AsyncClient,
        session_present: bool,
    },
    /// An event of the current connection.
    Mqtt(Event),
    /// The current connection is gone; no more events of it follow.
    Disconnected { reason: String },
    /// A connection attempt failed; the driver waits and tries again.
    /// `config_problem`: refused login, TLS or certificate trouble, which
    /// only a person can fix (logged as an error, not a warning).
    ConnectFailed {
        reason: String,
        config_problem: bool,
    },
}

/// Everything needed to open a connection.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionSettings {
    pub config: MqttConfig,
    pub broker: BrokerUrl,
    pub client_id: String,
    pub will_topic: String,
    pub will_payload: Vec<u8>,
}

impl ConnectionSettings {
    /// rumqttc options for one attempt. TLS files are read here, on every
    /// attempt, so a fixed certificate is picked up without a restart.
    fn options(&self) -> Result<MqttOptions, String> {
        let config = &self.config;
        let mut options = MqttOptions::new(&self.client_id, &self.broker.host, self.broker.port);
        options
            .set_keep_alive(Duration::from_secs(config.keep_alive_secs.into()))
            // A persistent session: the broker queues downlinks while we are away.
            .set_clean_session(false)
            // Downlinks are acked by their consumer once stored.
            .set_manual_acks(true)
            .set_inflight(config.max_inflight.saturating_add(EXTRA_INFLIGHT_SLOTS))
            .set_request_channel_capacity(usize::from(config.max_inflight) + 64)
            .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES)
            .set_last_will(LastWill::new(
                &self.will_topic,
                self.will_payload.clone(),
                QoS::AtLeastOnce,
                true,
            ));
        if let Some(user) = &config.username {
            options.set_credentials(user, config.password.clone().unwrap_or_default());
        }
        if self.broker.tls {
            let tls = tls::client_config(config)?;
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
        }
        Ok(options)
    }

    /// One sentence a technician can act on.
    pub(crate) fn explain(&self, err: &ConnectionError) -> String {
        let broker = self.broker.display();
        let user = self.config.username.as_deref();
        match err {
            ConnectionError::ConnectionRefused(code) => match (code, user) {
                (ConnectReturnCode::BadUserNamePassword, Some(user)) => format!(
                    "MQTT broker {broker} refused login for user '{user}': bad username or password"
                ),
                (ConnectReturnCode::BadUserNamePassword, None) => format!(
                    "MQTT broker {broker} refused the anonymous login: bad username or password \
                     (set mqtt.username and mqtt.password)"
                ),
                (ConnectReturnCode::NotAuthorized, Some(user)) => format!(
                    "MQTT broker {broker} refused login for user '{user}': not authorized \
                     (bad username or password, or the user may not connect)"
                ),
                (ConnectReturnCode::NotAuthorized, None) => format!(
                    "MQTT broker {broker} refused the anonymous login: not authorized \
                     (set mqtt.username and mqtt.password)"
                ),
                (ConnectReturnCode::BadClientId, _) => format!(
                    "MQTT broker {broker} rejected client id '{}'",
                    self.client_id
                ),
                (ConnectReturnCode::ServiceUnavailable, _) => {
                    format!("MQTT broker {broker} is unavailable (CONNACK: server unavailable)")
                }
                (ConnectReturnCode::RefusedProtocolVersion, _) => {
                    format!("MQTT broker {broker} does not accept MQTT 3.1.1")
                }
                (ConnectReturnCode::Success, _) => {
                    format!("MQTT broker {broker} refused the connection")
                }
            },
            ConnectionError::Io(e) => io_sentence(&broker, e),
            ConnectionError::MqttState(StateError::Io(e))
            | ConnectionError::MqttState(StateError::Deserialization(
                rumqttc::mqttbytes::Error::Io(e),
            )) => io_sentence(&broker, e),
            ConnectionError::Tls(e) => {
                let (detail, hint) = match e {
                    rumqttc::TlsError::Io(io) => {
                        let bad_cert = io
                            .get_ref()
                            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                            .is_some_and(|r| matches!(r, rustls::Error::InvalidCertificate(_)));
                        let hint = if bad_cert {
                            " (is mqtt.ca_file the CA that signed the broker's certificate, \
                             and does the host in mqtt.url match the certificate?)"
                        } else {
                            ""
                        };
                        (io.to_string(), hint)
                    }
                    other => (other.to_string(), ""),
                };
                format!("TLS handshake with MQTT broker {broker} failed: {detail}{hint}")
            }
            ConnectionError::NetworkTimeout => {
                format!("no answer from MQTT broker {broker} within {CONNECT_TIMEOUT_SECS} s")
            }
            ConnectionError::FlushTimeout => {
                format!("MQTT broker {broker} stopped reading (write timed out)")
            }
            ConnectionError::MqttState(StateError::ConnectionAborted) => {
                format!("MQTT broker {broker} closed the connection")
            }
            ConnectionError::MqttState(StateError::AwaitPingResp) => {
                format!("MQTT broker {broker} stopped answering keep-alive pings")
            }
            ConnectionError::MqttState(other) => {
                format!("MQTT protocol error with broker {broker}: {other}")
            }
            ConnectionError::NotConnAck(packet) => {
                format!("MQTT broker {broker} answered CONNECT with {packet:?} instead of CONNACK")
            }
            ConnectionError::RequestsDone => "MQTT client stopped".to_string(),
        }
    }
}

fn io_sentence(broker: &str, e: &std::io::Error) -> String {
    if let Some(sentence) = tls_alert_sentence(broker, e) {
        return sentence;
    }
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => {
            format!("cannot reach MQTT broker {broker}: connection refused (is it running?)")
        }
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof => {
            format!("MQTT broker {broker} closed the connection ({e})")
        }
        _ => format!("connection to MQTT broker {broker} failed: {e}"),
    }
}

/// With TLS 1.3 the broker judges our client certificate after the
/// handshake, so its verdict arrives as an alert on the first read. Say what
/// it means.
fn tls_alert_sentence(broker: &str, e: &std::io::Error) -> Option<String> {
    use rustls::AlertDescription as Alert;
    let alert = match e.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::AlertReceived(alert) => *alert,
        _ => return None,
    };
    Some(match alert {
        Alert::CertificateRequired | Alert::HandshakeFailure => format!(
            "MQTT broker {broker} requires a client certificate (TLS alert {alert:?}); \
             set mqtt.cert_file and mqtt.key_file"
        ),
        Alert::BadCertificate
        | Alert::UnknownCA
        | Alert::CertificateUnknown
        | Alert::CertificateExpired
        | Alert::CertificateRevoked
        | Alert::UnsupportedCertificate
        | Alert::AccessDenied => format!(
            "MQTT broker {broker} rejected our client certificate (TLS alert {alert:?}); \
             check mqtt.cert_file and mqtt.key_file"
        ),
        other => format!("MQTT broker {broker} ended the TLS session (alert {other:?})"),
    })
}

/// Whether only a person can fix this failure (logged as an error).
fn is_config_problem(e: &ConnectionError) -> bool {
    let io = match e {
        ConnectionError::ConnectionRefused(_) | ConnectionError::Tls(_) => return true,
        ConnectionError::Io(io)
        | ConnectionError::MqttState(StateError::Io(io))
        | ConnectionError::MqttState(StateError::Deserialization(rumqttc::mqttbytes::Error::Io(
            io,
        ))) => io,
        _ => return false,
    };
    io.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some()
}

/// "48 ms" / "2.5 s".
fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f32())
    }
}

/// Runs until `stop` is cancelled, the publisher goes away, or the publisher
/// disconnects cleanly (`Outgoing::Disconnect`).
pub(crate) async fn drive(
    settings: ConnectionSettings,
    events: mpsc::Sender<DriverEvent>,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::new(
        settings.config.reconnect_min(),
        settings.config.reconnect_max(),
    );
    let broker = settings.broker.display();
    loop {
        let failure = match settings.options() {
            Err(reason) => DriverEvent::ConnectFailed {
                reason,
                config_problem: true,
            },
            Ok(options) => {
                let capacity = options.request_channel_capacity();
                let (client, mut eventloop) = AsyncClient::new(options, capacity);
                let mut network = NetworkOptions::new();
                // Small packets, latency matters: do not let Nagle hold them.
                network.set_tcp_nodelay(true);
                network.set_connection_timeout(CONNECT_TIMEOUT_SECS);
                eventloop.set_network_options(network);
                let first = tokio::select! {
                    biased;
                    _ = stop.cancelled() => return,
                    first = eventloop.poll() => first,
                };
                match first {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        backoff.reset();
                        info!(broker = %broker, session_present = ack.session_present, "MQTT connected");
                        let connected = DriverEvent::Connected {
                            client,
                            session_present: ack.session_present,
                        };
                        if events.send(connected).await.is_err() {
                            return;
                        }
                        match run_connection(&settings, &mut eventloop, &events, &stop).await {
                            Some(lost) => lost,
                            None => return,
                        }
                    }
                    Ok(other) => DriverEvent::ConnectFailed {
                        reason: format!(
                            "MQTT broker {broker} answered CONNECT with {other:?} instead of CONNACK"
                        ),
                        config_problem: false,
                    },
                    Err(e) => DriverEvent::ConnectFailed {
                        reason: settings.explain(&e),
                        config_problem: is_config_problem(&e),
                    },
                }
            }
        };
        let delay = backoff.next_delay();
        match &failure {
            DriverEvent::ConnectFailed {
                reason,
                config_problem: true,
            } => error!("{reason}; retrying in {}", human(delay)),
            DriverEvent::ConnectFailed { reason, .. } => {
                warn!("{reason}; retrying in {}", human(delay))
            }
            DriverEvent::Disconnected { reason } => {
                warn!(
                    "MQTT connection lost: {reason}; reconnecting in {}",
                    human(delay)
                )
            }
            _ => {}
        }
        if events.send(failure).await.is_err() {
            return;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// Polls one established connection. Returns the `Disconnected` event when it
/// dies, `None` when the driver should stop.
async fn run_connection(
    settings: &ConnectionSettings,
    eventloop: &mut rumqttc::EventLoop,
    events: &mpsc::Sender<DriverEvent>,
    stop: &CancellationToken,
) -> Option<DriverEvent> {
    loop {
        let polled = tokio::select! {
            biased;
            _ = stop.cancelled() => return None,
            polled = eventloop.poll() => polled,
        };
        match polled {
            Ok(event) => {
                let clean_disconnect = matches!(event, Event::Outgoing(Outgoing::Disconnect));
                if events.send(DriverEvent::Mqtt(event)).await.is_err() || clean_disconnect {
                    return None;
                }
            }
            Err(e) => {
                // Events rumqttc read before the error (e.g. PUBACKs earlier
                // in the same read batch) are still true: deliver them first.
                let buffered: Vec<Event> = eventloop.state.events.drain(..).collect();
                for event in buffered {
                    if events.send(DriverEvent::Mqtt(event)).await.is_err() {
                        return None;
                    }
                }
                return Some(DriverEvent::Disconnected {
                    reason: settings.explain(&e),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(user: Option<&str>) -> ConnectionSettings {
        let mut config = MqttConfig::from_url("mqtt://127.0.0.1:1883");
        config.username = user.map(str::to_string);
        ConnectionSettings {
            broker: config.validate().unwrap(),
            config,
            client_id: "seed-gw-test".into(),
            will_topic: "seed/v1/gw/test/state".into(),
            will_payload: b"{}".to_vec(),
        }
    }

    #[test]
    fn refused_logins_name_the_user() {
        let s = settings(Some("gw"));
        let msg = s.explain(&ConnectionError::ConnectionRefused(
            ConnectReturnCode::BadUserNamePassword,
        ));
        assert_eq!(
            msg,
            "MQTT broker mqtt://127.0.0.1:1883 refused login for user 'gw': bad username or password"
        );
        let msg = s.explain(&ConnectionError::ConnectionRefused(
            ConnectReturnCode::NotAuthorized,
        ));
        assert!(
            msg.contains("refused login for user 'gw': not authorized"),
            "{msg}"
        );
        let msg = settings(None).explain(&ConnectionError::ConnectionRefused(
            ConnectReturnCode::NotAuthorized,
        ));
        assert!(msg.contains("set mqtt.username"), "{msg}");
    }

    #[test]
    fn unreachable_broker_is_explained() {
        let e = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let msg = settings(None).explain(&ConnectionError::Io(e));
        assert!(
            msg.starts_with("cannot reach MQTT broker mqtt://127.0.0.1:1883: connection refused")
        );
    }

    #[test]
    fn options_are_persistent_with_manual_acks_and_a_retained_will() {
        let options = settings(Some("gw")).options().unwrap();
        assert!(!options.clean_session());
        assert!(options.manual_acks());
        assert_eq!(options.client_id(), "seed-gw-test");
        let will = options.last_will().unwrap();
        assert!(will.retain);
        assert_eq!(will.qos, QoS::AtLeastOnce);
        assert_eq!(options.inflight(), 64 + EXTRA_INFLIGHT_SLOTS);
    }
}
