//! The message types a Seed frame can carry, as plain Rust values.
//!
//! These types know nothing about bytes or JSON; [`super::cbor`] and
//! [`super::json`] translate them. Enumerations keep an `Other` arm where the
//! spec expects growth, so a newer device's value survives decoding instead of
//! failing the whole frame.

/// A 32-byte ed25519 public key. It doubles as the pseudonymous device id:
/// carrying the key itself lets any gateway verify any frame on first contact
/// (see "Device identity" in docs/protocol.md for the airtime trade-off).
pub type DeviceId = [u8; 32];

/// First 16 bytes of SHA-256 over the signed content: the end-to-end
/// de-duplication key.
pub type MsgId = [u8; 16];

/// Protocol version, carried on air as one byte `major << 4 | minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProtocolVersion {
    pub major: u8,
    pub minor: u8,
}

impl ProtocolVersion {
    /// The version this implementation speaks.
    pub const CURRENT: ProtocolVersion = ProtocolVersion { major: 1, minor: 0 };

    pub fn from_wire(byte: u64) -> Option<ProtocolVersion> {
        let byte = u8::try_from(byte).ok()?;
        Some(ProtocolVersion {
            major: byte >> 4,
            minor: byte & 0x0f,
        })
    }

    pub fn to_wire(self) -> u8 {
        (self.major << 4) | (self.minor & 0x0f)
    }

    /// Frames of another major version cannot be decoded past the envelope.
    pub fn is_supported(self) -> bool {
        self.major == Self::CURRENT.major
    }

    /// Parses the spec's text form, e.g. `"1.0"`: decimal numbers without
    /// leading zeros, so that a version has exactly one text (the one
    /// [`Display`](std::fmt::Display) prints).
    pub fn parse(text: &str) -> Option<ProtocolVersion> {
        let (major, minor) = text.split_once('.')?;
        let version = ProtocolVersion {
            major: major.parse().ok()?,
            minor: minor.parse().ok()?,
        };
        (version.major < 16 && version.minor < 16 && version.to_string() == text).then_some(version)
    }
}

impl std::fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Message type codes on air (envelope element 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    Heartbeat = 1,
    Transaction = 2,
    LedgerSync = 3,
    Ack = 4,
    Nack = 5,
    Receipt = 6,
}

impl MessageType {
    pub const ALL: [MessageType; 6] = [
        MessageType::Heartbeat,
        MessageType::Transaction,
        MessageType::LedgerSync,
        MessageType::Ack,
        MessageType::Nack,
        MessageType::Receipt,
    ];

    pub fn from_code(code: u64) -> Option<MessageType> {
        Self::ALL.into_iter().find(|t| *t as u64 == code)
    }

    /// The `message_type` string of the JSON form and of MQTT topics.
    pub fn name(self) -> &'static str {
        match self {
            MessageType::Heartbeat => "heartbeat",
            MessageType::Transaction => "transaction",
            MessageType::LedgerSync => "ledger_sync",
            MessageType::Ack => "ack",
            MessageType::Nack => "nack",
            MessageType::Receipt => "receipt",
        }
    }

    pub fn from_name(name: &str) -> Option<MessageType> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Whether the gateway acknowledges this type over the radio once it is
    /// durable. Heartbeats are periodic and replaced by the next one, so
    /// acking them would only burn airtime.
    pub fn needs_ack(self) -> bool {
        matches!(self, MessageType::Transaction | MessageType::LedgerSync)
    }
}

/// What kind of Seed node sent a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceClass {
    SeedDevice,
    Handheld,
    Kiosk,
    Gateway,
    /// A code this implementation does not know (a newer device).
    Other(u8),
}

impl DeviceClass {
    pub fn code(self) -> u8 {
        match self {
            DeviceClass::SeedDevice => 0,
            DeviceClass::Handheld => 1,
            DeviceClass::Kiosk => 2,
            DeviceClass::Gateway => 3,
            DeviceClass::Other(code) => code,
        }
    }

    pub fn from_code(code: u8) -> DeviceClass {
        match code {
            0 => DeviceClass::SeedDevice,
            1 => DeviceClass::Handheld,
            2 => DeviceClass::Kiosk,
            3 => DeviceClass::Gateway,
            other => DeviceClass::Other(other),
        }
    }

    pub fn name(self) -> String {
        match self {
            DeviceClass::SeedDevice => "seed_device".into(),
            DeviceClass::Handheld => "handheld".into(),
            DeviceClass::Kiosk => "kiosk".into(),
            DeviceClass::Gateway => "gateway".into(),
            DeviceClass::Other(code) => format!("class_{code}"),
        }
    }

    /// The inverse of [`DeviceClass::name`]: `class_N` only for codes
    /// without a name (4–23), written without leading zeros, so every class
    /// has exactly one text.
    pub fn from_name(name: &str) -> Option<DeviceClass> {
        Some(match name {
            "seed_device" => DeviceClass::SeedDevice,
            "handheld" => DeviceClass::Handheld,
            "kiosk" => DeviceClass::Kiosk,
            "gateway" => DeviceClass::Gateway,
            other => {
                let code: u8 = other.strip_prefix("class_")?.parse().ok()?;
                let class = DeviceClass::from_code(code);
                (code < 24 && class.name() == other).then_some(class)?
            }
        })
    }
}

/// The sender's power state; it sets how often heartbeats come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PowerState {
    LowPower = 0,
    Normal = 1,
    Charging = 2,
}

impl PowerState {
    pub const ALL: [PowerState; 3] = [
        PowerState::LowPower,
        PowerState::Normal,
        PowerState::Charging,
    ];

    pub fn from_code(code: u64) -> Option<PowerState> {
        Self::ALL.into_iter().find(|p| *p as u64 == code)
    }

    pub fn name(self) -> &'static str {
        match self {
            PowerState::LowPower => "low_power",
            PowerState::Normal => "normal",
            PowerState::Charging => "charging",
        }
    }

    pub fn from_name(name: &str) -> Option<PowerState> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// Feature flags of a heartbeat; on air a bit mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Capabilities {
    pub supports_groups: bool,
    pub supports_trust_scores: bool,
    pub supports_ai_assistant: bool,
    /// Bits this implementation does not know, kept so they re-encode.
    pub unknown_bits: u64,
}

impl Capabilities {
    const GROUPS: u64 = 1;
    const TRUST_SCORES: u64 = 2;
    const AI_ASSISTANT: u64 = 4;
    /// The bits this version names.
    pub const KNOWN: u64 = Self::GROUPS | Self::TRUST_SCORES | Self::AI_ASSISTANT;

    pub fn from_bits(bits: u64) -> Capabilities {
        Capabilities {
            supports_groups: bits & Self::GROUPS != 0,
            supports_trust_scores: bits & Self::TRUST_SCORES != 0,
            supports_ai_assistant: bits & Self::AI_ASSISTANT != 0,
            unknown_bits: bits & !Self::KNOWN,
        }
    }

    pub fn bits(self) -> u64 {
        let flag = |set: bool, bit: u64| if set { bit } else { 0 };
        flag(self.supports_groups, Self::GROUPS)
            | flag(self.supports_trust_scores, Self::TRUST_SCORES)
            | flag(self.supports_ai_assistant, Self::AI_ASSISTANT)
            | self.unknown_bits
    }
}

/// The spec's heartbeat (shared/seeds/004), less the envelope fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    pub device_class: DeviceClass,
    /// Monotonic across reboots (see "Replay" in docs/protocol.md).
    pub timestamp_counter: u32,
    pub power_state: PowerState,
    pub ledger_height: u64,
    pub sync_capable: bool,
    pub capabilities: Capabilities,
}

/// An opaque signed payload the gateway carries but does not interpret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub payload: Vec<u8>,
    pub timestamp_counter: Option<u32>,
}

/// The three steps of ledger synchronisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerSync {
    /// "I have a ledger of this height with this head."
    Offer {
        ledger_height: u64,
        head_hash: [u8; 32],
        timestamp_counter: Option<u32>,
    },
    /// "Send me entries starting at this height."
    Request {
        from_height: u64,
        max_entries: u64,
        timestamp_counter: Option<u32>,
    },
    /// A batch of ledger entries, usually fragmented on air.
    Entries {
        from_height: u64,
        entries: Vec<Vec<u8>>,
        timestamp_counter: Option<u32>,
    },
}

impl LedgerSync {
    /// The optional shared key 2, whichever the kind.
    pub fn timestamp_counter(&self) -> Option<u32> {
        match self {
            LedgerSync::Offer {
                timestamp_counter, ..
            }
            | LedgerSync::Request {
                timestamp_counter, ..
            }
            | LedgerSync::Entries {
                timestamp_counter, ..
            } => *timestamp_counter,
        }
    }
}

/// Acknowledges that messages are durable at the sender of the ack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub acked: Vec<MsgId>,
    pub timestamp_counter: Option<u32>,
}

/// Names what the sender is missing, by message id or by downlink sequence
/// number range (inclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nack {
    pub missing_ids: Vec<MsgId>,
    pub missing_ranges: Vec<(u64, u64)>,
    pub timestamp_counter: Option<u32>,
}

/// End-to-end outcome of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptStatus {
    Delivered = 0,
    Applied = 1,
    Rejected = 2,
}

impl ReceiptStatus {
    pub const ALL: [ReceiptStatus; 3] = [
        ReceiptStatus::Delivered,
        ReceiptStatus::Applied,
        ReceiptStatus::Rejected,
    ];

    pub fn from_code(code: u64) -> Option<ReceiptStatus> {
        Self::ALL.into_iter().find(|s| *s as u64 == code)
    }

    pub fn name(self) -> &'static str {
        match self {
            ReceiptStatus::Delivered => "delivered",
            ReceiptStatus::Applied => "applied",
            ReceiptStatus::Rejected => "rejected",
        }
    }

    pub fn from_name(name: &str) -> Option<ReceiptStatus> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    pub receipt_for: MsgId,
    pub status: ReceiptStatus,
    pub timestamp_counter: Option<u32>,
}

/// The body of a frame, by type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Heartbeat(Heartbeat),
    Transaction(Transaction),
    LedgerSync(LedgerSync),
    Ack(Ack),
    Nack(Nack),
    Receipt(Receipt),
}

impl Message {
    pub fn message_type(&self) -> MessageType {
        match self {
            Message::Heartbeat(_) => MessageType::Heartbeat,
            Message::Transaction(_) => MessageType::Transaction,
            Message::LedgerSync(_) => MessageType::LedgerSync,
            Message::Ack(_) => MessageType::Ack,
            Message::Nack(_) => MessageType::Nack,
            Message::Receipt(_) => MessageType::Receipt,
        }
    }

    /// Shared body key 2: required in heartbeats, optional in every other
    /// type (where it makes a repeated message, e.g. the same NACK sent
    /// again, a new message with its own `msg_id`).
    pub fn timestamp_counter(&self) -> Option<u32> {
        match self {
            Message::Heartbeat(hb) => Some(hb.timestamp_counter),
            Message::Transaction(tx) => tx.timestamp_counter,
            Message::LedgerSync(sync) => sync.timestamp_counter(),
            Message::Ack(ack) => ack.timestamp_counter,
            Message::Nack(nack) => nack.timestamp_counter,
            Message::Receipt(receipt) => receipt.timestamp_counter,
        }
    }
}

/// Everything that is signed: who sent what, to whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub version: ProtocolVersion,
    pub device_id: DeviceId,
    /// Addressee of a one-to-one message; `None` is a broadcast.
    pub to: Option<DeviceId>,
    /// Per-addressee sequence number of one-to-one messages, so the receiver
    /// can detect gaps and NACK them.
    pub seq: Option<u64>,
    pub message: Message,
}
