//! The RNode command vocabulary: which byte follows the opening FEND, what
//! payload it carries, and how the values are encoded.
//!
//! Both directions live here because the host driver ([`super::rnode`]) and
//! the device emulator (`simulator::rnode_device`) must agree on every byte;
//! keeping one table makes a disagreement impossible rather than unlikely.
//!
//! Values come from the RNode firmware (`Framing.h`) and Reticulum's
//! `RNodeInterface`: configuration commands are echoed back by the device
//! with the value it actually applied, statistics (`STAT_*`) arrive
//! unsolicited, and `ERROR` carries a one-byte code.

use super::framing::KissFrame;

/// A received LoRa packet (device → host) or a packet to send (host → device).
pub const CMD_DATA: u8 = 0x00;
/// Centre frequency, 4-byte big-endian Hz.
pub const CMD_FREQUENCY: u8 = 0x01;
/// Bandwidth, 4-byte big-endian Hz.
pub const CMD_BANDWIDTH: u8 = 0x02;
/// Transmit power, one byte (dBm, two's complement on newer firmware).
pub const CMD_TXPOWER: u8 = 0x03;
/// Spreading factor, one byte.
pub const CMD_SF: u8 = 0x04;
/// Coding rate denominator (5..=8), one byte.
pub const CMD_CR: u8 = 0x05;
/// Radio on/off, one byte ([`RADIO_STATE_OFF`], [`RADIO_STATE_ON`]).
pub const CMD_RADIO_STATE: u8 = 0x06;
pub const CMD_RADIO_LOCK: u8 = 0x07;
/// Handshake: host sends [`DETECT_REQ`], an RNode answers [`DETECT_RESP`].
pub const CMD_DETECT: u8 = 0x08;
pub const CMD_IMPLICIT: u8 = 0x09;
/// Host detaches; the firmware goes back to standalone behaviour.
pub const CMD_LEAVE: u8 = 0x0A;
pub const CMD_ST_ALOCK: u8 = 0x0B;
pub const CMD_LT_ALOCK: u8 = 0x0C;
pub const CMD_PROMISC: u8 = 0x0E;
/// Flow control: the firmware sends `READY 0x01` after it queued a DATA frame
/// and still has room.
pub const CMD_READY: u8 = 0x0F;
pub const CMD_STAT_RX: u8 = 0x21;
pub const CMD_STAT_TX: u8 = 0x22;
/// RSSI of the next DATA frame: dBm = byte − [`RSSI_OFFSET`].
pub const CMD_STAT_RSSI: u8 = 0x23;
/// SNR of the next DATA frame: signed byte × 0.25 dB.
pub const CMD_STAT_SNR: u8 = 0x24;
pub const CMD_STAT_CHTM: u8 = 0x25;
pub const CMD_STAT_PHYPRM: u8 = 0x26;
pub const CMD_STAT_BAT: u8 = 0x27;
pub const CMD_STAT_CSMA: u8 = 0x28;
pub const CMD_STAT_TEMP: u8 = 0x29;
pub const CMD_BLINK: u8 = 0x30;
pub const CMD_RANDOM: u8 = 0x40;
pub const CMD_BOARD: u8 = 0x47;
/// Platform byte (AVR 0x90, ESP32 0x80, NRF52 0x70).
pub const CMD_PLATFORM: u8 = 0x48;
/// MCU byte.
pub const CMD_MCU: u8 = 0x49;
/// Firmware version: major, minor.
pub const CMD_FW_VERSION: u8 = 0x50;
pub const CMD_ROM_READ: u8 = 0x51;
/// The device announces a reset (ESP32 boards send `0xF8`).
pub const CMD_RESET: u8 = 0x55;
/// A device-side error; one byte code (see [`error_name`]).
pub const CMD_ERROR: u8 = 0x90;

pub const DETECT_REQ: u8 = 0x73;
pub const DETECT_RESP: u8 = 0x46;
pub const RADIO_STATE_OFF: u8 = 0x00;
pub const RADIO_STATE_ON: u8 = 0x01;
/// Payload of [`CMD_LEAVE`] as hosts send it.
pub const LEAVE_REQ: u8 = 0xFF;
/// Payload of [`CMD_RESET`] that ESP32 firmware sends after booting.
pub const RESET_ANNOUNCE: u8 = 0xF8;

pub const ERROR_INITRADIO: u8 = 0x01;
pub const ERROR_TXFAILED: u8 = 0x02;
pub const ERROR_EEPROM_LOCKED: u8 = 0x03;
pub const ERROR_QUEUE_FULL: u8 = 0x04;
pub const ERROR_MEMORY_LOW: u8 = 0x05;
pub const ERROR_MODEM_TIMEOUT: u8 = 0x06;

/// Subtracted from the STAT_RSSI byte to get dBm.
pub const RSSI_OFFSET: i16 = 157;

/// Largest LoRa payload an RNode accepts or delivers in one DATA frame.
pub const HARDWARE_MTU: usize = 508;

/// Command bytes the firmware may send that this gateway has no use for.
/// They are part of the protocol, so they are ignored rather than counted
/// as malformed (newer firmware sends channel statistics every few seconds).
const INFORMATIONAL: &[u8] = &[
    CMD_RADIO_LOCK,
    CMD_IMPLICIT,
    CMD_LEAVE,
    CMD_ST_ALOCK,
    CMD_LT_ALOCK,
    CMD_PROMISC,
    CMD_STAT_RX,
    CMD_STAT_TX,
    CMD_STAT_CHTM,
    CMD_STAT_PHYPRM,
    CMD_STAT_BAT,
    CMD_STAT_CSMA,
    CMD_STAT_TEMP,
    CMD_BLINK,
    CMD_RANDOM,
    CMD_BOARD,
    CMD_ROM_READ,
];

/// The symbolic name of an RNode error code, for logs and TxError reasons.
pub fn error_name(code: u8) -> &'static str {
    match code {
        ERROR_INITRADIO => "INITRADIO",
        ERROR_TXFAILED => "TXFAILED",
        ERROR_EEPROM_LOCKED => "EEPROM_LOCKED",
        ERROR_QUEUE_FULL => "QUEUE_FULL",
        ERROR_MEMORY_LOW => "MEMORY_LOW",
        ERROR_MODEM_TIMEOUT => "MODEM_TIMEOUT",
        _ => "UNKNOWN",
    }
}

/// What an error code means, for an operator reading the log.
pub fn error_description(code: u8) -> &'static str {
    match code {
        ERROR_INITRADIO => "radio initialisation failed",
        ERROR_TXFAILED => "transmission failed",
        ERROR_EEPROM_LOCKED => "EEPROM locked",
        ERROR_QUEUE_FULL => "transmit queue full",
        ERROR_MEMORY_LOW => "memory low",
        ERROR_MODEM_TIMEOUT => "modem timeout",
        _ => "unknown error code",
    }
}

/// Human name of a platform byte.
pub fn platform_name(platform: u8) -> &'static str {
    match platform {
        0x90 => "AVR",
        0x80 => "ESP32",
        0x70 => "NRF52",
        _ => "unknown",
    }
}

/// dBm from a STAT_RSSI byte.
pub fn rssi_from_byte(byte: u8) -> f32 {
    (byte as i16 - RSSI_OFFSET) as f32
}

/// STAT_RSSI byte for a dBm value, saturating at the byte's range
/// (−157..=98 dBm) as the firmware does.
pub fn rssi_to_byte(dbm: f32) -> u8 {
    (dbm.round() + RSSI_OFFSET as f32).clamp(0.0, 255.0) as u8
}

/// dB from a STAT_SNR byte (signed, quarter-dB steps).
pub fn snr_from_byte(byte: u8) -> f32 {
    (byte as i8) as f32 * 0.25
}

/// STAT_SNR byte for a dB value, saturating at −32..=31.75 dB.
pub fn snr_to_byte(db: f32) -> u8 {
    ((db * 4.0).round().clamp(i8::MIN as f32, i8::MAX as f32) as i8) as u8
}

/// A frame the device sent, understood.
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceMessage {
    /// A received LoRa packet.
    Data(Vec<u8>),
    /// Answer to DETECT; `true` when it carried [`DETECT_RESP`].
    Detect(bool),
    FwVersion {
        major: u8,
        minor: u8,
    },
    Platform(u8),
    Mcu(u8),
    /// Echo of the configured frequency (Hz).
    Frequency(u32),
    /// Echo of the configured bandwidth (Hz).
    Bandwidth(u32),
    /// Echo of the configured TX power (dBm).
    TxPower(i8),
    SpreadingFactor(u8),
    CodingRate(u8),
    RadioState(u8),
    /// RSSI (dBm) of the next DATA frame.
    StatRssi(f32),
    /// SNR (dB) of the next DATA frame.
    StatSnr(f32),
    /// `READY`: 1 when the device accepted a frame and has room for more.
    Ready(u8),
    /// The device reported an error; the byte is the code.
    Error(u8),
    /// The device announced a reset (rebooted, radio off, config lost).
    Reset,
    /// A command the protocol defines that the gateway does not use.
    Informational(u8),
}

/// Why a deframed message is not a valid RNode message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("unknown command byte 0x{0:02x}")]
    UnknownCommand(u8),
    #[error("command 0x{command:02x} carries {got} byte(s), expected {expected}")]
    BadLength {
        command: u8,
        got: usize,
        expected: usize,
    },
    #[error("DATA frame of {0} bytes exceeds the RNode MTU of {HARDWARE_MTU}")]
    Oversize(usize),
}

fn exact<const N: usize>(frame: &KissFrame) -> Result<[u8; N], MessageError> {
    <[u8; N]>::try_from(frame.data.as_slice()).map_err(|_| MessageError::BadLength {
        command: frame.command,
        got: frame.data.len(),
        expected: N,
    })
}

/// Interpret a frame from the device. Payload lengths are checked exactly:
/// a wrong length means the line is corrupt, and a guessed value would be
/// worse than a counted drop.
pub fn parse_device_frame(frame: &KissFrame) -> Result<DeviceMessage, MessageError> {
    let msg = match frame.command {
        CMD_DATA => {
            if frame.data.len() > HARDWARE_MTU {
                return Err(MessageError::Oversize(frame.data.len()));
            }
            DeviceMessage::Data(frame.data.clone())
        }
        CMD_DETECT => DeviceMessage::Detect(exact::<1>(frame)?[0] == DETECT_RESP),
        CMD_FW_VERSION => {
            let [major, minor] = exact::<2>(frame)?;
            DeviceMessage::FwVersion { major, minor }
        }
        CMD_PLATFORM => DeviceMessage::Platform(exact::<1>(frame)?[0]),
        CMD_MCU => DeviceMessage::Mcu(exact::<1>(frame)?[0]),
        CMD_FREQUENCY => DeviceMessage::Frequency(u32::from_be_bytes(exact::<4>(frame)?)),
        CMD_BANDWIDTH => DeviceMessage::Bandwidth(u32::from_be_bytes(exact::<4>(frame)?)),
        CMD_TXPOWER => DeviceMessage::TxPower(exact::<1>(frame)?[0] as i8),
        CMD_SF => DeviceMessage::SpreadingFactor(exact::<1>(frame)?[0]),
        CMD_CR => DeviceMessage::CodingRate(exact::<1>(frame)?[0]),
        CMD_RADIO_STATE => DeviceMessage::RadioState(exact::<1>(frame)?[0]),
        CMD_STAT_RSSI => DeviceMessage::StatRssi(rssi_from_byte(exact::<1>(frame)?[0])),
        CMD_STAT_SNR => DeviceMessage::StatSnr(snr_from_byte(exact::<1>(frame)?[0])),
        CMD_READY => DeviceMessage::Ready(exact::<1>(frame)?[0]),
        CMD_ERROR => DeviceMessage::Error(exact::<1>(frame)?[0]),
        CMD_RESET => DeviceMessage::Reset,
        other if INFORMATIONAL.contains(&other) => DeviceMessage::Informational(other),
        other => return Err(MessageError::UnknownCommand(other)),
    };
    Ok(msg)
}

/// A frame the host sent, as the device emulator understands it.
#[derive(Debug, Clone, PartialEq)]
pub enum HostMessage {
    /// Bytes to put on air.
    Data(Vec<u8>),
    /// DETECT with its payload byte (an RNode only answers [`DETECT_REQ`]).
    Detect(u8),
    /// Queries (payload 0x00) for firmware version, platform and MCU.
    QueryFwVersion,
    QueryPlatform,
    QueryMcu,
    SetFrequency(u32),
    SetBandwidth(u32),
    SetTxPower(i8),
    SetSpreadingFactor(u8),
    SetCodingRate(u8),
    SetRadioState(u8),
    Leave,
    /// Anything else: the firmware ignores it.
    Other(u8),
}

/// Interpret a frame from the host (emulator side).
pub fn parse_host_frame(frame: &KissFrame) -> Result<HostMessage, MessageError> {
    let msg = match frame.command {
        CMD_DATA => {
            if frame.data.len() > HARDWARE_MTU {
                return Err(MessageError::Oversize(frame.data.len()));
            }
            HostMessage::Data(frame.data.clone())
        }
        CMD_DETECT => HostMessage::Detect(exact::<1>(frame)?[0]),
        CMD_FW_VERSION => HostMessage::QueryFwVersion,
        CMD_PLATFORM => HostMessage::QueryPlatform,
        CMD_MCU => HostMessage::QueryMcu,
        CMD_FREQUENCY => HostMessage::SetFrequency(u32::from_be_bytes(exact::<4>(frame)?)),
        CMD_BANDWIDTH => HostMessage::SetBandwidth(u32::from_be_bytes(exact::<4>(frame)?)),
        CMD_TXPOWER => HostMessage::SetTxPower(exact::<1>(frame)?[0] as i8),
        CMD_SF => HostMessage::SetSpreadingFactor(exact::<1>(frame)?[0]),
        CMD_CR => HostMessage::SetCodingRate(exact::<1>(frame)?[0]),
        CMD_RADIO_STATE => HostMessage::SetRadioState(exact::<1>(frame)?[0]),
        CMD_LEAVE => HostMessage::Leave,
        other => HostMessage::Other(other),
    };
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(command: u8, data: &[u8]) -> KissFrame {
        KissFrame {
            command,
            data: data.to_vec(),
        }
    }

    #[test]
    fn rssi_byte_is_offset_by_157() {
        assert_eq!(rssi_from_byte(0), -157.0);
        assert_eq!(rssi_from_byte(77), -80.0);
        assert_eq!(rssi_to_byte(-80.0), 77);
        assert_eq!(rssi_to_byte(-300.0), 0);
        assert_eq!(rssi_to_byte(200.0), 255);
    }

    #[test]
    fn snr_byte_is_signed_quarter_db() {
        assert_eq!(snr_from_byte(0xF6), -2.5);
        assert_eq!(snr_from_byte(29), 7.25);
        assert_eq!(snr_to_byte(-2.5), 0xF6);
        assert_eq!(snr_to_byte(7.25), 29);
        assert_eq!(snr_to_byte(100.0), 0x7F);
        assert_eq!(snr_to_byte(-100.0), 0x80);
    }

    #[test]
    fn config_echoes_decode_big_endian() {
        let f = frame(CMD_FREQUENCY, &869_525_000u32.to_be_bytes());
        assert_eq!(
            parse_device_frame(&f),
            Ok(DeviceMessage::Frequency(869_525_000))
        );
        let f = frame(CMD_TXPOWER, &[0xFE]);
        assert_eq!(parse_device_frame(&f), Ok(DeviceMessage::TxPower(-2)));
    }

    #[test]
    fn wrong_payload_length_is_an_error_not_a_guess() {
        let f = frame(CMD_FREQUENCY, &[1, 2, 3]);
        assert_eq!(
            parse_device_frame(&f),
            Err(MessageError::BadLength {
                command: CMD_FREQUENCY,
                got: 3,
                expected: 4
            })
        );
        assert!(parse_device_frame(&frame(CMD_STAT_RSSI, &[])).is_err());
    }

    #[test]
    fn unknown_commands_are_errors_but_protocol_statistics_are_not() {
        assert_eq!(
            parse_device_frame(&frame(0x6A, b"unk")),
            Err(MessageError::UnknownCommand(0x6A))
        );
        assert_eq!(
            parse_device_frame(&frame(CMD_STAT_CHTM, &[0; 11])),
            Ok(DeviceMessage::Informational(CMD_STAT_CHTM))
        );
    }

    #[test]
    fn oversize_data_is_rejected() {
        let f = frame(CMD_DATA, &[0; HARDWARE_MTU + 1]);
        assert_eq!(
            parse_device_frame(&f),
            Err(MessageError::Oversize(HARDWARE_MTU + 1))
        );
        let f = frame(CMD_DATA, &[0; HARDWARE_MTU]);
        assert!(parse_device_frame(&f).is_ok());
    }

    #[test]
    fn error_codes_have_names() {
        assert_eq!(error_name(ERROR_QUEUE_FULL), "QUEUE_FULL");
        assert_eq!(error_name(ERROR_INITRADIO), "INITRADIO");
        assert_eq!(error_name(0x77), "UNKNOWN");
    }
}
