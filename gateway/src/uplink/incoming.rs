//! Publishes from the backend (downlinks, OTA commands) handed to the rest of
//! the gateway, each with the handle that acknowledges it.
//!
//! The uplink runs rumqttc with manual acks: a downlink must be stored before
//! the broker hears PUBACK, otherwise a crash between the two loses it. So
//! the consumer stores the message and only then calls [`AckHandle::ack`].
//! If it never acks (or the connection drops first), the broker keeps the
//! message in our persistent session and delivers it again after the next
//! connect, so consumers must store idempotently (same device + payload).

use rumqttc::{AsyncClient, Publish, QoS};
use thiserror::Error;

/// What arrived, by topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncomingKind {
    /// `down/{device_id}`: a message for this device's mailbox.
    Downlink { device_id: [u8; 32] },
    /// `ota/command`.
    OtaCommand,
}

/// One publish from the backend.
#[derive(Debug)]
pub struct IncomingMessage {
    pub kind: IncomingKind,
    pub topic: String,
    pub payload: Vec<u8>,
    /// The broker marked it as a re-delivery (DUP): it may have been handed
    /// over before.
    pub redelivered: bool,
    /// Acknowledge after the message is durably stored.
    pub ack: AckHandle,
}

/// Sends the PUBACK for one incoming publish, on the connection it came from.
#[derive(Debug)]
pub struct AckHandle {
    client: AsyncClient,
    pkid: u16,
    qos: QoS,
}

/// The PUBACK could not be sent.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum AckError {
    #[error("the MQTT connection this message came on is gone; the broker will deliver it again")]
    ConnectionGone,
}

impl AckHandle {
    pub(crate) fn new(client: AsyncClient, publish: &Publish) -> AckHandle {
        AckHandle {
            client,
            pkid: publish.pkid,
            qos: publish.qos,
        }
    }

    /// Sends PUBACK. Call only once the message is stored.
    pub async fn ack(self) -> Result<(), AckError> {
        let mut publish = Publish::new("", self.qos, Vec::new());
        publish.pkid = self.pkid;
        self.client
            .ack(&publish)
            .await
            .map_err(|_| AckError::ConnectionGone)
    }
}
