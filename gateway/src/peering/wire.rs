//! The peer-link protocol (`docs/peering.md`): length-prefixed JSON
//! messages inside the TLS stream.
//!
//! A frame is a 4-byte big-endian length and that many bytes of one UTF-8
//! JSON object whose `type` names the message. JSON rather than CBOR
//! because the rows it carries are already JSON (message and reception
//! metadata, kept byte for byte) and a technician can read a captured
//! exchange; the raw radio frame travels as base64.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::store::{MailboxEntry, NewMail, OutboxEntry};

/// Versions of the peer-link protocol this build speaks, oldest first.
/// Version 2 added `hello.store_id` and `published` (custody lasts until
/// the custodian published) and the shared-mailbox messages (`offer` …
/// `withdrawn`); a version-1 gateway would delete rows on `ack`, so it is
/// not spoken any more.
pub const VERSIONS: &[u16] = &[2];

/// The first version with shared mailboxes.
pub const MAILBOX_VERSION: u16 = 2;

/// Largest frame accepted (a `rows` message of a full window of the
/// largest rows fits with room to spare).
pub const MAX_FRAME: usize = 4 * 1024 * 1024;

/// One message of the peer link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Message {
    /// First message each way: the versions the sender speaks, and its state.
    Hello {
        versions: Vec<u16>,
        software: String,
        status: PeerState,
        /// The random id of the sender's store (32 hex digits); a new one
        /// after the store was wiped. Absent only in a version-1 hello,
        /// which negotiation then refuses.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        store_id: Option<String>,
    },
    /// The sender's state, whenever it changes and at least every keepalive.
    Status { status: PeerState },
    /// Origin → custodian: outbox rows to take into custody, oldest first.
    Rows { rows: Vec<Row> },
    /// Custodian → origin: these rows (by origin seq) are committed to the
    /// custodian's disk (or were already); the origin may delete them.
    Ack { seqs: Vec<u64> },
    /// Custodian → origin: these rows (by origin seq) were published and
    /// acknowledged by the custodian's broker; the origin deletes its copies.
    Published { seqs: Vec<u64> },
    /// Custodian → origin: these rows were not taken; the origin keeps them.
    Refused { seqs: Vec<u64>, reason: String },
    /// The sender closes the link for this reason.
    Error { code: String, text: String },
    /// Version 2, accepting gateway → neighbour: hold copies of these
    /// downlinks and deliver them if the device is heard there.
    Offer { mail: Vec<Mail> },
    /// Version 2, neighbour → accepting gateway: these copies (by request
    /// id) are on the neighbour's disk, or were already.
    Taken { ids: Vec<String> },
    /// Version 2, neighbour → accepting gateway: these copies were not
    /// taken (its mailbox is full); offered again later.
    Declined { ids: Vec<String>, reason: String },
    /// Version 2, neighbour → accepting gateway: the device acked these
    /// copies; the accepting gateway publishes the one receipt.
    Delivered { deliveries: Vec<Delivery> },
    /// Version 2, accepting gateway → neighbour: drop these copies (and
    /// delivery notes), with no receipt.
    Withdraw { ids: Vec<String> },
    /// Version 2, neighbour → accepting gateway: dropped (or never held).
    Withdrawn { ids: Vec<String> },
}

/// A downlink offered to a neighbour; what its mailbox needs to deliver it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mail {
    /// The downlink's request id (32 hex), as its receipt names it.
    pub request_id: String,
    /// 64 hex digits.
    pub device_id: String,
    /// Base64 of the signed frame to transmit.
    pub frame: String,
    /// When the accepting gateway took it (its clock).
    pub accepted_at_ms: u64,
    /// After this (the accepting gateway's clock) the neighbour stops
    /// offering it to the device and drops it, with no receipt.
    pub expires_at_ms: u64,
}

/// A delivery of a neighbour's downlink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delivery {
    pub request_id: String,
    pub device_id: String,
    /// Transmissions it took.
    pub attempts: u32,
}

impl Mail {
    pub fn from_entry(entry: &MailboxEntry) -> Mail {
        Mail {
            request_id: hex::encode(entry.down_msg_id),
            device_id: hex::encode(entry.device_id),
            frame: base64::engine::general_purpose::STANDARD.encode(&entry.payload_frame),
            accepted_at_ms: entry.created_at_ms,
            expires_at_ms: entry.expires_at_ms,
        }
    }

    /// As a mailbox entry to hold; `None` if an id or the frame is malformed.
    pub fn to_new_mail(&self) -> Option<NewMail> {
        Some(NewMail {
            device_id: hex_array(&self.device_id)?,
            down_msg_id: hex_array(&self.request_id)?,
            payload_frame: base64::engine::general_purpose::STANDARD
                .decode(&self.frame)
                .ok()?,
            created_at_ms: self.accepted_at_ms,
            expires_at_ms: self.expires_at_ms,
        })
    }
}

/// Fixed-size bytes from hex; `None` if malformed or of another length.
pub fn hex_array<const N: usize>(text: &str) -> Option<[u8; N]> {
    hex::decode(text).ok()?.try_into().ok()
}

/// What one gateway tells the other about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerState {
    /// Connected to its MQTT broker now.
    pub uplink_up: bool,
    /// Rows of the receiver's that the sender holds, not yet published.
    pub holding_for_you: u64,
}

/// One outbox row in transit; field for field what the origin stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Row {
    pub seq: u64,
    /// 32 hex digits.
    pub msg_id: String,
    /// 64 hex digits.
    pub device_id: String,
    pub message_type: String,
    /// Base64 of the raw signed frame.
    pub frame: String,
    pub message_json: String,
    pub rx_json: String,
    pub received_at_ms: u64,
    #[serde(default)]
    pub compacted_count: u64,
}

impl Row {
    pub fn from_entry(entry: &OutboxEntry) -> Row {
        Row {
            seq: entry.seq,
            msg_id: hex::encode(entry.msg_id),
            device_id: hex::encode(entry.device_id),
            message_type: entry.message_type.clone(),
            frame: base64::engine::general_purpose::STANDARD.encode(&entry.frame),
            message_json: entry.message_json.clone(),
            rx_json: entry.rx_json.clone(),
            received_at_ms: entry.received_at_ms,
            compacted_count: entry.compacted_count,
        }
    }

    /// Back to an outbox entry; `None` if an id or the frame is malformed.
    pub fn to_entry(&self) -> Option<OutboxEntry> {
        Some(OutboxEntry {
            seq: self.seq,
            msg_id: hex::decode(&self.msg_id).ok()?.try_into().ok()?,
            device_id: hex::decode(&self.device_id).ok()?.try_into().ok()?,
            message_type: self.message_type.clone(),
            frame: base64::engine::general_purpose::STANDARD
                .decode(&self.frame)
                .ok()?,
            message_json: self.message_json.clone(),
            rx_json: self.rx_json.clone(),
            received_at_ms: self.received_at_ms,
            compacted_count: self.compacted_count,
        })
    }
}

/// The highest version both sides speak.
pub fn negotiate(theirs: &[u16]) -> Option<u16> {
    VERSIONS.iter().rev().find(|v| theirs.contains(v)).copied()
}

/// Why reading a message failed.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("the link closed")]
    Closed,
    #[error("link error: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {0} bytes is over the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("malformed message: {0}")]
    Malformed(String),
}

pub async fn write_message<W: AsyncWrite + Unpin>(
    out: &mut W,
    message: &Message,
) -> Result<(), WireError> {
    let json = serde_json::to_vec(message).map_err(|e| WireError::Malformed(e.to_string()))?;
    if json.len() > MAX_FRAME {
        return Err(WireError::TooLarge(json.len()));
    }
    let mut frame = Vec::with_capacity(4 + json.len());
    frame.extend_from_slice(&(json.len() as u32).to_be_bytes());
    frame.extend_from_slice(&json);
    out.write_all(&frame).await?;
    out.flush().await?;
    Ok(())
}

pub async fn read_message<R: AsyncRead + Unpin>(input: &mut R) -> Result<Message, WireError> {
    let mut length = [0u8; 4];
    match input.read_exact(&mut length).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(WireError::Closed),
        Err(e) => return Err(e.into()),
    }
    let length = u32::from_be_bytes(length) as usize;
    if length > MAX_FRAME {
        return Err(WireError::TooLarge(length));
    }
    let mut body = vec![0u8; length];
    input.read_exact(&mut body).await?;
    serde_json::from_slice(&body)
        .or_else(|strict| later_hello(&body).ok_or(strict))
        .map_err(|e| WireError::Malformed(e.to_string()))
}

/// A `hello` of a later version may carry members we do not know; it is
/// still read (unknown members ignored) so that negotiation can answer
/// `unsupported_version` with our versions instead of `malformed`. Its
/// `status` must still hold both members we know: a made-up
/// `holding_for_you: 0` would tell the origin its rows were published.
fn later_hello(body: &[u8]) -> Option<Message> {
    #[derive(Deserialize)]
    struct LaterState {
        uplink_up: bool,
        holding_for_you: u64,
    }
    #[derive(Deserialize)]
    struct LaterHello {
        #[serde(rename = "type")]
        kind: String,
        versions: Vec<u16>,
        software: String,
        status: LaterState,
        #[serde(default)]
        store_id: Option<String>,
    }
    let hello: LaterHello = serde_json::from_slice(body).ok()?;
    (hello.kind == "hello").then_some(Message::Hello {
        versions: hello.versions,
        software: hello.software,
        status: PeerState {
            uplink_up: hello.status.uplink_up,
            holding_for_you: hello.status.holding_for_you,
        },
        store_id: hello.store_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> OutboxEntry {
        OutboxEntry {
            seq: 42,
            msg_id: [0xab; 16],
            device_id: [0x01; 32],
            message_type: "transaction".into(),
            frame: vec![0, 1, 2, 250],
            message_json: r#"{"msg_type":"transaction"}"#.into(),
            rx_json: r#"{"link":"rnode0","received_at_ms":5}"#.into(),
            received_at_ms: 5,
            compacted_count: 0,
        }
    }

    #[test]
    fn rows_carry_entries_unchanged() {
        let row = Row::from_entry(&entry());
        assert_eq!(row.to_entry(), Some(entry()));
        let mut bad = row.clone();
        bad.msg_id = "zz".into();
        assert_eq!(bad.to_entry(), None);
    }

    /// The test vector of docs/peering.md §3.
    #[tokio::test]
    async fn hello_matches_the_documented_bytes() {
        let hello = Message::Hello {
            versions: vec![2],
            software: "0.1.0".into(),
            status: PeerState {
                uplink_up: true,
                holding_for_you: 0,
            },
            store_id: Some("5eed0000000000000000000000000001".into()),
        };
        let mut frame = Vec::new();
        write_message(&mut frame, &hello).await.unwrap();
        let body = r#"{"type":"hello","versions":[2],"software":"0.1.0","status":{"uplink_up":true,"holding_for_you":0},"store_id":"5eed0000000000000000000000000001"}"#;
        assert_eq!(&frame[..4], &[0, 0, 0, 0x90]);
        assert_eq!(std::str::from_utf8(&frame[4..]).unwrap(), body);
    }

    /// The `published` vector of docs/peering.md §3.
    #[tokio::test]
    async fn published_matches_the_documented_bytes() {
        let mut frame = Vec::new();
        write_message(
            &mut frame,
            &Message::Published {
                seqs: vec![7, 8, 9],
            },
        )
        .await
        .unwrap();
        assert_eq!(&frame[..4], &[0, 0, 0, 0x23]);
        assert_eq!(
            std::str::from_utf8(&frame[4..]).unwrap(),
            r#"{"type":"published","seqs":[7,8,9]}"#
        );
    }

    /// A version-1 hello (no `store_id`) still reads, so that negotiation
    /// can refuse it with `unsupported_version` rather than `malformed`.
    #[test]
    fn a_version_1_hello_reads() {
        let v1 = r#"{"type":"hello","versions":[1],"software":"0.1.0","status":{"uplink_up":true,"holding_for_you":0}}"#;
        let Ok(Message::Hello {
            versions, store_id, ..
        }) = serde_json::from_str(v1)
        else {
            panic!("a version-1 hello must parse");
        };
        assert_eq!((versions, store_id), (vec![1], None));
        assert_eq!(negotiate(&[1]), None);
    }

    #[tokio::test]
    async fn frames_round_trip_and_oversize_is_refused() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let message = Message::Rows {
            rows: vec![Row::from_entry(&entry())],
        };
        write_message(&mut a, &message).await.unwrap();
        assert_eq!(read_message(&mut b).await.unwrap(), message);
        a.write_all(&(MAX_FRAME as u32 + 1).to_be_bytes())
            .await
            .unwrap();
        assert!(matches!(
            read_message(&mut b).await,
            Err(WireError::TooLarge(_))
        ));
        a.write_all(&3u32.to_be_bytes()).await.unwrap();
        a.write_all(b"{x}").await.unwrap();
        assert!(matches!(
            read_message(&mut b).await,
            Err(WireError::Malformed(_))
        ));
        drop(a);
        assert!(matches!(read_message(&mut b).await, Err(WireError::Closed)));
    }

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(body);
        frame
    }

    #[tokio::test]
    async fn a_later_versions_hello_with_unknown_members_still_reads() {
        let body = br#"{"type":"hello","versions":[7],"software":"9.0.0","status":{"uplink_up":true,"holding_for_you":0,"mood":"good"},"features":["x"]}"#;
        let frame = framed(body);
        let Ok(Message::Hello {
            versions, status, ..
        }) = read_message(&mut frame.as_slice()).await
        else {
            panic!("a later hello must read");
        };
        assert_eq!(versions, vec![7]);
        assert!(status.uplink_up);
        // Without the status members we rely on, it does not.
        let body =
            br#"{"type":"hello","versions":[7],"software":"9.0.0","status":{"uplink_up":true}}"#;
        let frame = framed(body);
        assert!(matches!(
            read_message(&mut frame.as_slice()).await,
            Err(WireError::Malformed(_))
        ));
        // Other messages keep the strict rule.
        let body = br#"{"type":"ack","seqs":[1],"extra":1}"#;
        let frame = framed(body);
        assert!(matches!(
            read_message(&mut frame.as_slice()).await,
            Err(WireError::Malformed(_))
        ));
    }

    #[test]
    fn negotiation_picks_the_highest_common_version() {
        assert_eq!(negotiate(&[1, 2, 9]), Some(2));
        assert_eq!(negotiate(&[1]), None);
        assert_eq!(negotiate(&[3]), None);
    }

    /// The `delivered` test vector of docs/peering.md §7.
    #[tokio::test]
    async fn delivered_matches_the_documented_bytes() {
        let delivered = Message::Delivered {
            deliveries: vec![Delivery {
                request_id: "0f".repeat(16),
                device_id: "ab".repeat(32),
                attempts: 2,
            }],
        };
        let mut frame = Vec::new();
        write_message(&mut frame, &delivered).await.unwrap();
        let body = format!(
            r#"{{"type":"delivered","deliveries":[{{"request_id":"{}","device_id":"{}","attempts":2}}]}}"#,
            "0f".repeat(16),
            "ab".repeat(32)
        );
        assert_eq!(&frame[..4], &[0, 0, 0, 0xb1]);
        assert_eq!(std::str::from_utf8(&frame[4..]).unwrap(), body);
        let (mut a, mut b) = tokio::io::duplex(1 << 12);
        a.write_all(&frame).await.unwrap();
        assert_eq!(read_message(&mut b).await.unwrap(), delivered);
    }

    #[test]
    fn offered_mail_carries_the_entry_and_refuses_bad_ids() {
        let entry = MailboxEntry {
            id: 7,
            device_id: [3; 32],
            down_msg_id: [4; 16],
            payload_frame: vec![1, 2, 3],
            created_at_ms: 10,
            expires_at_ms: 20,
            state: crate::store::MailboxState::Pending,
            attempts: 1,
            last_attempt_at_ms: None,
            origin: None,
        };
        let mail = Mail::from_entry(&entry).to_new_mail().unwrap();
        assert_eq!(
            (mail.device_id, mail.down_msg_id, mail.payload_frame),
            ([3; 32], [4; 16], vec![1, 2, 3])
        );
        assert_eq!((mail.created_at_ms, mail.expires_at_ms), (10, 20));
        let mut bad = Mail::from_entry(&entry);
        bad.request_id = "04".repeat(15);
        assert_eq!(bad.to_new_mail(), None);
    }
}
