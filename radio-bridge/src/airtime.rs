//! LoRa time-on-air, per Semtech application note AN1200.13
//! ("LoRa Modem Designer's Guide").
//!
//! Airtime is what the duty-cycle ledger charges for every transmission and
//! what the scheduler uses to know when the radio is free again, so it must
//! never be under-estimated. The note's formula:
//!
//! ```text
//! Tsym      = 2^SF / BW
//! Tpreamble = (n_preamble + 4.25) · Tsym
//! n_payload = 8 + max(ceil((8·PL − 4·SF + 28 + 16·CRC − 20·IH) / (4·(SF − 2·DE))) · (CR + 4), 0)
//! Tpacket   = Tpreamble + n_payload · Tsym
//! ```
//!
//! where PL is the payload length in bytes, CRC is 1 when the payload CRC is
//! on, IH is 1 for an implicit header, DE is 1 when low-data-rate optimisation
//! is on (mandatory when a symbol lasts longer than 16 ms) and CR is 1..=4
//! for coding rates 4/5..=4/8.
//!
//! The result is computed in whole quarter-symbols and then converted to
//! nanoseconds with integer arithmetic, so it is exact for the standard
//! 125/250/500 kHz bandwidths (no floating-point rounding to argue about).
//!
//! Limits worth knowing:
//! - A single LoRa packet carries at most 255 bytes. Longer payloads are
//!   computed by the same formula (useful for a quick estimate), but a real
//!   radio would send them as several packets, each with its own preamble.
//! - SX126x-family chips at SF5/SF6 use a slightly different variant
//!   (6.25-symbol preamble overhead); this module applies AN1200.13 at every
//!   spreading factor.

use std::time::Duration;

use crate::link::RadioParams;

/// Symbol duration above which low-data-rate optimisation is mandatory.
const LOW_DATA_RATE_SYMBOL_MS: u64 = 16;

/// Whether the PHY header is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// The packet starts with a header carrying length, coding rate and CRC
    /// presence. What Seed devices and LoRaWAN uplinks use.
    Explicit,
    /// Both ends agree on length and settings in advance; saves ~20 bits.
    Implicit,
}

/// Low-data-rate optimisation (the `DE` bit in AN1200.13).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LowDataRate {
    /// On exactly when a symbol lasts longer than 16 ms (SF11 and SF12 at
    /// 125 kHz, SF12 at 250 kHz): what radios are configured with in practice.
    Auto,
    /// On regardless of symbol time (some firmware forces it).
    On,
    /// Off regardless of symbol time.
    Off,
}

/// The packet settings beyond [`RadioParams`] that change airtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketShape {
    /// Programmed preamble length in symbols (the radio adds 4.25 more).
    pub preamble_symbols: u16,
    pub header: Header,
    /// Whether the 16-bit payload CRC is sent.
    pub crc: bool,
    pub low_data_rate: LowDataRate,
}

impl Default for PacketShape {
    /// 8-symbol preamble, explicit header, CRC on, automatic low-data-rate
    /// optimisation: the RNode and Semtech packet forwarder defaults.
    fn default() -> Self {
        PacketShape {
            preamble_symbols: 8,
            header: Header::Explicit,
            crc: true,
            low_data_rate: LowDataRate::Auto,
        }
    }
}

/// Modulation settings the formula cannot be applied to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidModulation {
    #[error("spreading factor {0} is outside 5..=12")]
    SpreadingFactor(u8),
    #[error("bandwidth must be above 0 Hz")]
    ZeroBandwidth,
    #[error("coding rate 4/{0} is outside 4/5..=4/8")]
    CodingRate(u8),
}

/// Checks that `params` describes a LoRa modulation airtime can be computed
/// for. Config loading should call this so bad settings fail at start-up.
pub fn check_modulation(params: &RadioParams) -> Result<(), InvalidModulation> {
    if !(5..=12).contains(&params.sf) {
        return Err(InvalidModulation::SpreadingFactor(params.sf));
    }
    if params.bandwidth_hz == 0 {
        return Err(InvalidModulation::ZeroBandwidth);
    }
    if !(5..=8).contains(&params.coding_rate) {
        return Err(InvalidModulation::CodingRate(params.coding_rate));
    }
    Ok(())
}

/// Time on air of a `payload_len`-byte packet with the default
/// [`PacketShape`] (8-symbol preamble, explicit header, CRC on, automatic
/// low-data-rate optimisation).
///
/// For modulation settings that fail [`check_modulation`] this returns
/// [`Duration::MAX`]: a transmission that can never fit a duty-cycle budget
/// is refused, whereas a made-up small airtime would be silently
/// under-charged.
pub fn time_on_air(payload_len: usize, params: &RadioParams) -> Duration {
    time_on_air_with(payload_len, params, &PacketShape::default()).unwrap_or(Duration::MAX)
}

/// Time on air of a `payload_len`-byte packet with explicit packet settings.
pub fn time_on_air_with(
    payload_len: usize,
    params: &RadioParams,
    shape: &PacketShape,
) -> Result<Duration, InvalidModulation> {
    check_modulation(params)?;
    let quarter_symbols = quarter_symbols(payload_len, params, shape);
    Ok(quarter_symbols_to_duration(
        quarter_symbols,
        params.sf,
        params.bandwidth_hz,
    ))
}

/// Duration of one LoRa symbol, 2^SF / BW.
pub fn symbol_time(params: &RadioParams) -> Result<Duration, InvalidModulation> {
    check_modulation(params)?;
    Ok(quarter_symbols_to_duration(
        4,
        params.sf,
        params.bandwidth_hz,
    ))
}

/// Whether low-data-rate optimisation is mandatory: a symbol lasts longer
/// than 16 ms. Compared in integers: 2^SF / BW > 16 ms ⇔ 2^SF · 1000 > 16 · BW.
pub fn low_data_rate_required(sf: u8, bandwidth_hz: u32) -> bool {
    let chips_ms = (1u64 << sf.min(12)) * 1000;
    chips_ms > LOW_DATA_RATE_SYMBOL_MS * u64::from(bandwidth_hz)
}

/// Total packet length in quarter-symbols (the preamble adds 4.25 symbols,
/// so quarters keep everything integral). `params` must be valid.
fn quarter_symbols(payload_len: usize, params: &RadioParams, shape: &PacketShape) -> u128 {
    let sf = i128::from(params.sf);
    let cr = i128::from(params.coding_rate) - 4;
    let crc = i128::from(shape.crc);
    let ih = i128::from(shape.header == Header::Implicit);
    let de = match shape.low_data_rate {
        LowDataRate::Auto => low_data_rate_required(params.sf, params.bandwidth_hz),
        LowDataRate::On => true,
        LowDataRate::Off => false,
    };
    let de = i128::from(de);

    // usize always fits in i128; the arithmetic below cannot overflow it.
    let pl = payload_len as i128;
    let numerator = 8 * pl - 4 * sf + 28 + 16 * crc - 20 * ih;
    // SF − 2·DE ≥ 3 for SF ≥ 5, so the divisor is positive.
    let divisor = 4 * (sf - 2 * de);
    let blocks = if numerator > 0 {
        (numerator + divisor - 1) / divisor
    } else {
        0
    };
    let payload_symbols = 8 + blocks * (cr + 4);
    let preamble_quarters = 4 * i128::from(shape.preamble_symbols) + 17; // + 4.25 symbols
    (preamble_quarters + 4 * payload_symbols) as u128
}

/// quarter_symbols · Tsym / 4, with Tsym = 2^SF / BW, in exact integer
/// nanoseconds (rounded up, so airtime is never under-stated).
fn quarter_symbols_to_duration(quarter_symbols: u128, sf: u8, bandwidth_hz: u32) -> Duration {
    let numerator = quarter_symbols * (1u128 << sf) * 1_000_000_000;
    let denominator = 4 * u128::from(bandwidth_hz);
    let nanos = numerator.div_ceil(denominator);
    let secs = nanos / 1_000_000_000;
    let sub_nanos = (nanos % 1_000_000_000) as u32;
    match u64::try_from(secs) {
        Ok(secs) => Duration::new(secs, sub_nanos),
        Err(_) => Duration::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn params(sf: u8, bandwidth_hz: u32, coding_rate: u8) -> RadioParams {
        RadioParams {
            sf,
            bandwidth_hz,
            coding_rate,
            ..RadioParams::default()
        }
    }

    fn ms(micros: u64) -> Duration {
        Duration::from_micros(micros)
    }

    /// reference.md check value. Tsym = 128/125000 = 1.024 ms;
    /// preamble 12.25 · 1.024 = 12.544 ms;
    /// ceil((800 − 28 + 28 + 16) / 28) = ceil(29.14) = 30 → 8 + 30·5 = 158 symbols
    /// = 161.792 ms; total 174.336 ms.
    #[test]
    fn sf7_100_bytes_matches_reference() {
        assert_eq!(time_on_air(100, &params(7, 125_000, 5)), ms(174_336));
    }

    /// reference.md check value. Tsym = 4096/125000 = 32.768 ms (> 16 ms, so DE = 1);
    /// preamble 12.25 · 32.768 = 401.408 ms;
    /// ceil((800 − 48 + 28 + 16) / 40) = ceil(19.9) = 20 → 8 + 20·5 = 108 symbols
    /// = 3538.944 ms; total 3940.352 ms.
    #[test]
    fn sf12_100_bytes_matches_reference() {
        assert_eq!(time_on_air(100, &params(12, 125_000, 5)), ms(3_940_352));
    }

    /// By hand: Tsym = 512/125000 = 4.096 ms, DE = 0; preamble 50.176 ms;
    /// ceil((1024 − 36 + 28 + 16) / 36) = ceil(28.67) = 29 → 8 + 29·5 = 153
    /// symbols = 626.688 ms; total 676.864 ms.
    #[test]
    fn sf9_128_bytes() {
        assert_eq!(time_on_air(128, &params(9, 125_000, 5)), ms(676_864));
    }

    /// By hand: Tsym = 32.768 ms, DE = 1; preamble 401.408 ms;
    /// ceil((1024 − 48 + 28 + 16) / 40) = ceil(25.5) = 26 → 8 + 26·5 = 138
    /// symbols = 4521.984 ms; total 4923.392 ms.
    #[test]
    fn sf12_128_bytes() {
        assert_eq!(time_on_air(128, &params(12, 125_000, 5)), ms(4_923_392));
    }

    /// By hand, SF10/250 kHz, CR 4/8, implicit header, CRC off, 12-symbol
    /// preamble, 20 bytes: Tsym = 1024/250000 = 4.096 ms, DE = 0;
    /// preamble (12 + 4.25) · 4.096 = 66.56 ms;
    /// ceil((160 − 40 + 28 − 20) / 40) = ceil(3.2) = 4 → 8 + 4·8 = 40 symbols
    /// = 163.84 ms; total 230.4 ms.
    #[test]
    fn explicit_shape_settings_are_applied() {
        let shape = PacketShape {
            preamble_symbols: 12,
            header: Header::Implicit,
            crc: false,
            low_data_rate: LowDataRate::Auto,
        };
        let toa = time_on_air_with(20, &params(10, 250_000, 8), &shape).unwrap();
        assert_eq!(toa, ms(230_400));
    }

    /// Forcing DE at SF9 (normally off): divisor 4·(9 − 2) = 28;
    /// ceil(1032 / 28) = ceil(36.86) = 37 → 8 + 37·5 = 193 symbols = 790.528 ms;
    /// plus preamble 50.176 ms = 840.704 ms. Forcing it off at SF12 100 bytes:
    /// ceil(796 / 48) = 17 → 93 symbols = 3047.424 ms + 401.408 = 3448.832 ms.
    #[test]
    fn low_data_rate_can_be_forced() {
        let forced_on = PacketShape {
            low_data_rate: LowDataRate::On,
            ..PacketShape::default()
        };
        let forced_off = PacketShape {
            low_data_rate: LowDataRate::Off,
            ..PacketShape::default()
        };
        assert_eq!(
            time_on_air_with(128, &params(9, 125_000, 5), &forced_on).unwrap(),
            ms(840_704)
        );
        assert_eq!(
            time_on_air_with(100, &params(12, 125_000, 5), &forced_off).unwrap(),
            ms(3_448_832)
        );
    }

    /// Tiny payloads hit the max(…, 0) floor: SF12, implicit header, CRC off,
    /// 0 bytes: 0 − 48 + 28 − 20 < 0 → 8 payload symbols only.
    #[test]
    fn payload_symbols_never_drop_below_eight() {
        let shape = PacketShape {
            header: Header::Implicit,
            crc: false,
            ..PacketShape::default()
        };
        let p = params(12, 125_000, 5);
        let tsym = symbol_time(&p).unwrap();
        let expected = tsym * 20 + tsym / 4; // preamble 8 + 4.25, payload 8 symbols
        assert_eq!(time_on_air_with(0, &p, &shape).unwrap(), expected);
    }

    #[test]
    fn low_data_rate_threshold_is_sixteen_ms() {
        assert!(!low_data_rate_required(10, 125_000)); // 8.192 ms
        assert!(low_data_rate_required(11, 125_000)); // 16.384 ms
        assert!(low_data_rate_required(12, 250_000)); // 16.384 ms
        assert!(!low_data_rate_required(12, 500_000)); // 8.192 ms
        assert!(!low_data_rate_required(12, 256_000)); // exactly 16 ms: not above
    }

    #[test]
    fn symbol_time_is_two_to_the_sf_over_bandwidth() {
        assert_eq!(
            symbol_time(&params(7, 125_000, 5)).unwrap(),
            Duration::from_micros(1_024)
        );
        assert_eq!(
            symbol_time(&params(12, 500_000, 5)).unwrap(),
            Duration::from_micros(8_192)
        );
    }

    #[test]
    fn invalid_modulation_is_rejected_not_guessed() {
        assert_eq!(
            check_modulation(&params(13, 125_000, 5)),
            Err(InvalidModulation::SpreadingFactor(13))
        );
        assert_eq!(
            check_modulation(&params(4, 125_000, 5)),
            Err(InvalidModulation::SpreadingFactor(4))
        );
        assert_eq!(
            check_modulation(&params(7, 0, 5)),
            Err(InvalidModulation::ZeroBandwidth)
        );
        assert_eq!(
            check_modulation(&params(7, 125_000, 9)),
            Err(InvalidModulation::CodingRate(9))
        );
        assert_eq!(time_on_air(10, &params(7, 0, 5)), Duration::MAX);
        assert!(check_modulation(&RadioParams::default()).is_ok());
    }

    #[test]
    fn huge_payloads_do_not_overflow() {
        let toa = time_on_air(usize::MAX, &params(12, 125_000, 8));
        assert!(toa > Duration::from_secs(3600));
    }

    fn valid_params() -> impl Strategy<Value = RadioParams> {
        (
            5u8..=12,
            prop::sample::select(vec![7_800u32, 62_500, 125_000, 250_000, 500_000]),
            5u8..=8,
        )
            .prop_map(|(sf, bw, cr)| params(sf, bw, cr))
    }

    proptest! {
        #[test]
        fn airtime_is_monotonic_in_payload_length(p in valid_params(), len in 0usize..600, extra in 0usize..50) {
            prop_assert!(time_on_air(len, &p) <= time_on_air(len + extra, &p));
        }

        #[test]
        fn airtime_is_monotonic_in_spreading_factor(p in valid_params(), len in 0usize..600) {
            prop_assume!(p.sf < 12);
            let slower = RadioParams { sf: p.sf + 1, ..p };
            prop_assert!(time_on_air(len, &p) < time_on_air(len, &slower));
        }

        #[test]
        fn more_redundancy_never_shortens_airtime(p in valid_params(), len in 0usize..600) {
            prop_assume!(p.coding_rate < 8);
            let stronger = RadioParams { coding_rate: p.coding_rate + 1, ..p };
            prop_assert!(time_on_air(len, &p) <= time_on_air(len, &stronger));
        }
    }
}
