//! The `datr` field: a LoRa data rate such as `"SF7BW125"`, or an FSK bit
//! rate given as a plain number.
//!
//! The string form packs spreading factor and bandwidth (in kHz) into one
//! token; the concentrator never sends anything else for LoRa, but a broken
//! forwarder might, so reading it back yields `None` rather than an error
//! and the frame is still delivered (without that metadata).

use serde::{Deserialize, Serialize};

/// A GWMP data rate, as it appears in `rxpk.datr` and `txpk.datr`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DataRate {
    /// LoRa: `"SF<sf>BW<kHz>"`.
    Lora(String),
    /// FSK: bits per second.
    Fsk(u32),
}

impl DataRate {
    /// The LoRa data rate for a spreading factor and a bandwidth in Hz.
    pub fn lora(sf: u8, bandwidth_hz: u32) -> DataRate {
        DataRate::Lora(format!("SF{sf}BW{}", bandwidth_hz / 1000))
    }

    /// Spreading factor and bandwidth in Hz, if this is a well-formed LoRa
    /// data rate (SF 5..=12, a whole positive number of kHz).
    pub fn lora_params(&self) -> Option<(u8, u32)> {
        let DataRate::Lora(text) = self else {
            return None;
        };
        let rest = text.strip_prefix("SF")?;
        let (sf, bw_khz) = rest.split_once("BW")?;
        let sf: u8 = parse_digits(sf)?;
        let bw_khz: u32 = parse_digits(bw_khz)?;
        if !(5..=12).contains(&sf) || bw_khz == 0 {
            return None;
        }
        Some((sf, bw_khz.checked_mul(1000)?))
    }
}

/// `str::parse` also accepts a leading `+`; the wire format does not.
fn parse_digits<T: std::str::FromStr>(text: &str) -> Option<T> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The `codr` string for a coding-rate denominator: 5 → `"4/5"`.
pub fn coding_rate_text(denominator: u8) -> String {
    format!("4/{denominator}")
}

/// The coding-rate denominator of a `codr` string: `"4/5"` → 5.
pub fn coding_rate_denominator(text: &str) -> Option<u8> {
    let denominator: u8 = parse_digits(text.strip_prefix("4/")?)?;
    (5..=8).contains(&denominator).then_some(denominator)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lora_data_rates_read_back() {
        assert_eq!(
            DataRate::lora(7, 125_000),
            DataRate::Lora("SF7BW125".into())
        );
        assert_eq!(
            DataRate::Lora("SF12BW500".into()).lora_params(),
            Some((12, 500_000))
        );
        assert_eq!(DataRate::lora(9, 250_000).lora_params(), Some((9, 250_000)));
    }

    #[test]
    fn malformed_data_rates_yield_none() {
        for bad in [
            "",
            "SF7",
            "BW125",
            "SF13BW125",
            "SF4BW125",
            "SF7BW0",
            "SF+7BW125",
            "sf7bw125",
            "SF7BW12.5",
        ] {
            assert_eq!(DataRate::Lora(bad.into()).lora_params(), None, "{bad}");
        }
        assert_eq!(DataRate::Fsk(50_000).lora_params(), None);
    }

    #[test]
    fn fsk_data_rate_is_a_json_number() {
        let rate: DataRate = serde_json::from_str("50000").unwrap();
        assert_eq!(rate, DataRate::Fsk(50_000));
        let rate: DataRate = serde_json::from_str("\"SF7BW125\"").unwrap();
        assert_eq!(rate, DataRate::Lora("SF7BW125".into()));
    }

    #[test]
    fn coding_rates() {
        assert_eq!(coding_rate_text(5), "4/5");
        assert_eq!(coding_rate_denominator("4/8"), Some(8));
        assert_eq!(coding_rate_denominator("4/9"), None);
        assert_eq!(coding_rate_denominator("2/3"), None);
        assert_eq!(coding_rate_denominator("off"), None);
    }
}
