//! EU868 duty-cycle ledger: how much each ETSI EN 300 220 sub-band has been
//! used over the last hour, and whether one more transmission still fits.
//!
//! In Europe a transmitter may occupy each sub-band for only a fraction of
//! any one hour (0.1 %, 1 % or 10 %, see [`Band`]). The gateway answers
//! devices over the air, so it must keep account before every transmission;
//! the scheduler asks [`DutyCycleLedger::can_transmit`] and, when told to
//! wait, knows exactly how long ([`DutyCycleDenied::Busy`]).
//!
//! # The rule, and why it is safe
//!
//! A transmission of airtime `a` starting at `now` on band `b` is allowed
//! when
//!
//! ```text
//! a + Σ airtime of every earlier transmission on b that was still on air
//!     at some point in the hour before now (end + 1 h > now)  ≤  budget(b)
//! ```
//!
//! Earlier transmissions are counted in full even if only their tail falls in
//! the window. That makes the guarantee hold for *every* one-hour window, not
//! only the ones the ledger happens to look at: take any window and the
//! latest-starting transmission `X` overlapping it; every other transmission
//! overlapping the window ended after the window's start, which is later than
//! `X.start − 1 h`, so it was counted in full when `X` was admitted. The cost
//! is at most one transmission's worth of conservatism at the window edge.
//!
//! # Time
//!
//! Nothing here reads the clock: every method takes `now`. The scheduler
//! passes the planned start of a transmission, and tests drive hours of
//! simulated time in microseconds.
//!
//! # Memory
//!
//! Entries are pruned once they can no longer count (an hour after they
//! ended). In [`Region::Unrestricted`] nothing limits the number of entries
//! within an hour, so beyond [`MAX_ENTRIES_PER_BAND`] the two oldest entries
//! are merged into one that lasts as long as the later of the two and weighs
//! their sum: usage may be over-stated a little, never under-stated.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The rolling window every budget is measured over.
pub const WINDOW: Duration = Duration::from_secs(3600);

/// Bound on ledger entries kept per band (see the module docs, "Memory").
pub const MAX_ENTRIES_PER_BAND: usize = 4096;

/// An EU868 sub-band from ETSI EN 300 220 (letters as in the ERC 70-03
/// annex). Frequencies outside all of them are not usable by the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Band {
    /// 863.0–865.0 MHz, 0.1 %.
    K,
    /// 865.0–868.0 MHz, 1 %.
    L,
    /// 868.0–868.6 MHz, 1 % (the three LoRaWAN default channels).
    M,
    /// 868.7–869.2 MHz, 0.1 %.
    N,
    /// 869.4–869.65 MHz, 10 % (the high-power band; Seed's default channel).
    P,
    /// 869.7–870.0 MHz, 1 %.
    Q,
}

impl Band {
    pub const ALL: [Band; 6] = [Band::K, Band::L, Band::M, Band::N, Band::P, Band::Q];

    /// Frequencies of the band as a half-open range `[low, high)` in Hz:
    /// a boundary frequency belongs to the band above it (865.0 MHz is L).
    /// Only the centre frequency is classified; channel width is not.
    pub fn freq_range_hz(self) -> (u32, u32) {
        match self {
            Band::K => (863_000_000, 865_000_000),
            Band::L => (865_000_000, 868_000_000),
            Band::M => (868_000_000, 868_600_000),
            Band::N => (868_700_000, 869_200_000),
            Band::P => (869_400_000, 869_650_000),
            Band::Q => (869_700_000, 870_000_000),
        }
    }

    /// Allowed share of any hour, in thousandths (1 = 0.1 %).
    pub fn duty_cycle_permille(self) -> u32 {
        match self {
            Band::K | Band::N => 1,
            Band::L | Band::M | Band::Q => 10,
            Band::P => 100,
        }
    }

    /// Airtime allowed per [`WINDOW`]: 3.6 s, 36 s or 360 s.
    pub fn budget(self) -> Duration {
        WINDOW * self.duty_cycle_permille() / 1000
    }

    fn slot(self) -> usize {
        self as usize
    }
}

/// The sub-band a centre frequency falls in, or `None` outside all of them
/// (the gateway then refuses to transmit there in [`Region::Eu868`]).
pub fn band_for(freq_hz: u32) -> Option<Band> {
    Band::ALL.into_iter().find(|band| {
        let (low, high) = band.freq_range_hz();
        (low..high).contains(&freq_hz)
    })
}

/// Which regulation the ledger enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Region {
    /// ETSI EN 300 220: per-sub-band budgets, no transmitting outside them.
    #[default]
    Eu868,
    /// No duty-cycle limit (other regions, lab tests): usage is still
    /// recorded and reported for EU868 sub-band frequencies, nothing is denied.
    Unrestricted,
}

/// Why a transmission may not go out now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DutyCycleDenied {
    #[error("{freq_hz} Hz is outside every EU868 sub-band")]
    OutsideBands { freq_hz: u32 },
    #[error("sub-band {band:?} budget used up for now; fits in {wait:?}")]
    Busy { band: Band, wait: Duration },
    #[error(
        "{airtime:?} of airtime is more than sub-band {band:?} allows in an hour ({budget:?})"
    )]
    LongerThanBudget {
        band: Band,
        airtime: Duration,
        budget: Duration,
    },
}

impl DutyCycleDenied {
    /// How long until the same transmission would fit, if it ever will.
    pub fn wait(&self) -> Option<Duration> {
        match self {
            DutyCycleDenied::Busy { wait, .. } => Some(*wait),
            _ => None,
        }
    }
}

/// One band's usage, for the status page and `/metrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BandUsage {
    pub band: Band,
    /// Airtime counted against the band in the last hour.
    pub used_ms: u64,
    /// Airtime the band allows per hour.
    pub budget_ms: u64,
    /// `used_ms` as a percentage of `budget_ms` (may exceed 100 in
    /// [`Region::Unrestricted`]).
    pub used_percent: f64,
    /// The regulatory duty cycle, e.g. 1.0 for 1 %.
    pub limit_percent: f64,
}

/// All bands' usage at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DutyCycleSnapshot {
    pub region: Region,
    pub bands: Vec<BandUsage>,
}

/// A past transmission as the ledger needs it: when it stopped counting
/// starts from its end, and how much it weighs.
#[derive(Debug, Clone, Copy)]
struct Entry {
    end: Instant,
    airtime: Duration,
}

impl Entry {
    /// Whether the entry still counts against a transmission starting `now`.
    fn counts_at(&self, now: Instant) -> bool {
        self.end
            .checked_add(WINDOW)
            .is_none_or(|expiry| expiry > now)
    }

    fn expiry(&self) -> Option<Instant> {
        self.end.checked_add(WINDOW)
    }
}

/// Per-band record of recent transmissions. Not thread-safe by itself: the
/// scheduler owns it (behind a mutex if the status page reads it too).
#[derive(Debug)]
pub struct DutyCycleLedger {
    region: Region,
    /// Indexed by [`Band::slot`]; entries in the order they were recorded.
    entries: [VecDeque<Entry>; 6],
}

impl DutyCycleLedger {
    pub fn new(region: Region) -> Self {
        DutyCycleLedger {
            region,
            entries: Default::default(),
        }
    }

    pub fn region(&self) -> Region {
        self.region
    }

    /// Whether `airtime` starting at `now` on `freq_hz` fits the region's
    /// rules. Does not record anything; call [`record`](Self::record) when
    /// the transmission really goes out, or use
    /// [`try_record`](Self::try_record) to do both.
    pub fn can_transmit(
        &self,
        freq_hz: u32,
        airtime: Duration,
        now: Instant,
    ) -> Result<(), DutyCycleDenied> {
        if self.region == Region::Unrestricted {
            return Ok(());
        }
        let band = band_for(freq_hz).ok_or(DutyCycleDenied::OutsideBands { freq_hz })?;
        let budget = band.budget();
        if airtime > budget {
            return Err(DutyCycleDenied::LongerThanBudget {
                band,
                airtime,
                budget,
            });
        }
        let used = self.used(band, now);
        let Some(excess) = (used + airtime)
            .checked_sub(budget)
            .filter(|e| !e.is_zero())
        else {
            return Ok(());
        };
        Err(DutyCycleDenied::Busy {
            band,
            wait: self.wait_to_free(band, excess, now),
        })
    }

    /// Charges `airtime` starting at `now` to the band of `freq_hz` and
    /// returns that band (`None` for a frequency outside every band: nothing
    /// to charge). Records even if [`can_transmit`](Self::can_transmit)
    /// would refuse: the ledger reports what went on air.
    pub fn record(&mut self, freq_hz: u32, airtime: Duration, now: Instant) -> Option<Band> {
        // Nothing is on air for more than an hour; the clamp (in
        // record_delayed) keeps an absurd airtime (Duration::MAX from
        // invalid modulation) from overflowing.
        self.record_delayed(freq_hz, airtime, now, Duration::ZERO)
            .map(|(band, _)| band)
    }

    /// Like [`record`](Self::record), for a transmission checked at `now`
    /// that may start as late as `now + max_delay` (a link that holds a
    /// frame until it can send it): the entry counts until an hour after
    /// the latest possible end, so a late start can never make an hour
    /// look emptier than it was. Returns the band and the entry's end.
    pub fn record_delayed(
        &mut self,
        freq_hz: u32,
        airtime: Duration,
        now: Instant,
        max_delay: Duration,
    ) -> Option<(Band, Instant)> {
        let band = band_for(freq_hz)?;
        let on_air = airtime.min(WINDOW).saturating_add(max_delay.min(WINDOW));
        let end = now.checked_add(on_air).unwrap_or(now);
        self.restore(band, end, airtime, now);
        Some((band, end))
    }

    /// Charges an entry known by its end, as read back from a journal after
    /// a restart (see the gateway's `airtime_journal`). `now` prunes what no
    /// longer counts.
    pub fn restore(&mut self, band: Band, end: Instant, airtime: Duration, now: Instant) {
        let entries = &mut self.entries[band.slot()];
        entries.retain(|entry| entry.counts_at(now));
        if airtime.is_zero() {
            return;
        }
        entries.push_back(Entry { end, airtime });
        while entries.len() > MAX_ENTRIES_PER_BAND {
            merge_two_oldest(entries);
        }
    }

    /// Every entry that still counts at `now`: `(band, end, airtime)`, for
    /// writing the ledger back to disk.
    pub fn entries(&self, now: Instant) -> Vec<(Band, Instant, Duration)> {
        Band::ALL
            .into_iter()
            .flat_map(|band| {
                self.entries[band.slot()]
                    .iter()
                    .filter(move |entry| entry.counts_at(now))
                    .map(move |entry| (band, entry.end, entry.airtime))
            })
            .collect()
    }

    /// [`can_transmit`](Self::can_transmit) and, if allowed,
    /// [`record`](Self::record), so check and charge cannot drift apart.
    pub fn try_record(
        &mut self,
        freq_hz: u32,
        airtime: Duration,
        now: Instant,
    ) -> Result<(), DutyCycleDenied> {
        self.can_transmit(freq_hz, airtime, now)?;
        self.record(freq_hz, airtime, now);
        Ok(())
    }

    /// `(used, allowed)` airtime for `band` as seen by a transmission
    /// starting at `now`; the headroom is their difference.
    pub fn usage(&self, band: Band, now: Instant) -> (Duration, Duration) {
        (self.used(band, now), band.budget())
    }

    /// Usage of every band, for the status page and metrics.
    pub fn snapshot(&self, now: Instant) -> DutyCycleSnapshot {
        let bands = Band::ALL
            .into_iter()
            .map(|band| {
                let (used, budget) = self.usage(band, now);
                let used_ms = duration_ms(used);
                let budget_ms = duration_ms(budget);
                BandUsage {
                    band,
                    used_ms,
                    budget_ms,
                    used_percent: used.as_secs_f64() / budget.as_secs_f64() * 100.0,
                    limit_percent: f64::from(band.duty_cycle_permille()) / 10.0,
                }
            })
            .collect();
        DutyCycleSnapshot {
            region: self.region,
            bands,
        }
    }

    fn used(&self, band: Band, now: Instant) -> Duration {
        self.entries[band.slot()]
            .iter()
            .filter(|entry| entry.counts_at(now))
            .fold(Duration::ZERO, |sum, entry| {
                sum.saturating_add(entry.airtime)
            })
    }

    /// The shortest wait after which entries weighing at least `excess` have
    /// stopped counting. Entries stop counting one window after they end, so
    /// walk them in order of end time.
    fn wait_to_free(&self, band: Band, excess: Duration, now: Instant) -> Duration {
        let mut live: Vec<Entry> = self.entries[band.slot()]
            .iter()
            .copied()
            .filter(|entry| entry.counts_at(now))
            .collect();
        live.sort_by_key(|entry| entry.end);
        let mut freed = Duration::ZERO;
        for entry in live {
            freed = freed.saturating_add(entry.airtime);
            if freed >= excess {
                return match entry.expiry() {
                    Some(expiry) => expiry.saturating_duration_since(now),
                    None => Duration::MAX,
                };
            }
        }
        // Unreachable while airtime ≤ budget (checked by the caller), but a
        // wrong answer here must err towards waiting.
        WINDOW
    }
}

/// Merges the two oldest entries into one that counts until the later of
/// their ends and weighs their sum: never less than the two did.
fn merge_two_oldest(entries: &mut VecDeque<Entry>) {
    if let (Some(first), Some(second)) = (entries.pop_front(), entries.pop_front()) {
        entries.push_front(Entry {
            end: first.end.max(second.end),
            airtime: first.airtime.saturating_add(second.airtime),
        });
    }
}

/// The most airtime (in ms) inside any one rolling hour, given what was on
/// air as `(start, end)` pairs in ms on one band: the figure the regulation
/// limits, against which tests check the ledger. The overlap sum is
/// piecewise linear in the window's start, so its maximum sits where a
/// window edge meets a transmission edge.
pub fn busiest_hour_ms(sent: &[(i128, i128)]) -> i128 {
    let hour = WINDOW.as_millis() as i128;
    let mut starts = Vec::new();
    for &(start, end) in sent {
        starts.extend([start, end, start - hour, end - hour]);
    }
    starts
        .into_iter()
        .map(|w0| {
            let w1 = w0 + hour;
            sent.iter()
                .map(|&(s, e)| (e.min(w1) - s.max(w0)).max(0))
                .sum::<i128>()
        })
        .max()
        .unwrap_or(0)
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const N_FREQ: u32 = 868_900_000;
    const P_FREQ: u32 = 869_525_000;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn frequencies_map_to_the_etsi_table() {
        let cases = [
            (862_999_999, None),
            (863_000_000, Some(Band::K)),
            (864_999_999, Some(Band::K)),
            (865_000_000, Some(Band::L)),
            (867_900_000, Some(Band::L)),
            (868_100_000, Some(Band::M)),
            (868_500_000, Some(Band::M)),
            (868_600_000, None),
            (868_650_000, None),
            (868_700_000, Some(Band::N)),
            (869_199_999, Some(Band::N)),
            (869_300_000, None),
            (869_525_000, Some(Band::P)),
            (869_650_000, None),
            (869_850_000, Some(Band::Q)),
            (870_000_000, None),
            (433_920_000, None),
            (915_000_000, None),
        ];
        for (freq, band) in cases {
            assert_eq!(band_for(freq), band, "{freq} Hz");
        }
    }

    #[test]
    fn budgets_are_the_regulatory_shares_of_an_hour() {
        assert_eq!(Band::K.budget(), Duration::from_millis(3_600));
        assert_eq!(Band::N.budget(), Duration::from_millis(3_600));
        assert_eq!(Band::L.budget(), secs(36));
        assert_eq!(Band::M.budget(), secs(36));
        assert_eq!(Band::Q.budget(), secs(36));
        assert_eq!(Band::P.budget(), secs(360));
    }

    #[test]
    fn outside_every_band_is_refused_in_eu868() {
        let ledger = DutyCycleLedger::new(Region::Eu868);
        let now = Instant::now();
        assert_eq!(
            ledger.can_transmit(868_650_000, Duration::from_millis(50), now),
            Err(DutyCycleDenied::OutsideBands {
                freq_hz: 868_650_000
            })
        );
    }

    #[test]
    fn a_full_band_says_exactly_how_long_to_wait() {
        let mut ledger = DutyCycleLedger::new(Region::Eu868);
        let t0 = Instant::now();
        // Band N allows 3.6 s per hour: three 1 s transmissions fit …
        for i in 0..3 {
            ledger
                .try_record(N_FREQ, secs(1), t0 + secs(10 * i))
                .unwrap();
        }
        // … a fourth does not: 0.4 s are left, so the first transmission
        // (ended at t0 + 1 s) must leave the window first.
        let now = t0 + secs(100);
        let denied = ledger.can_transmit(N_FREQ, secs(1), now).unwrap_err();
        let expected_wait = (t0 + secs(1) + WINDOW) - now;
        assert_eq!(
            denied,
            DutyCycleDenied::Busy {
                band: Band::N,
                wait: expected_wait
            }
        );
        // A shorter one still fits the remaining 0.6 s.
        assert!(ledger
            .can_transmit(N_FREQ, Duration::from_millis(600), now)
            .is_ok());
        // The wait is exact: a nanosecond earlier it is still refused.
        let later = now + expected_wait;
        assert!(ledger.can_transmit(N_FREQ, secs(1), later).is_ok());
        let just_before = later - Duration::from_nanos(1);
        assert!(ledger.can_transmit(N_FREQ, secs(1), just_before).is_err());
        // Other bands are untouched.
        assert!(ledger.can_transmit(P_FREQ, secs(100), now).is_ok());
    }

    #[test]
    fn a_transmission_longer_than_the_budget_never_fits() {
        let ledger = DutyCycleLedger::new(Region::Eu868);
        let denied = ledger
            .can_transmit(N_FREQ, secs(4), Instant::now())
            .unwrap_err();
        assert_eq!(
            denied,
            DutyCycleDenied::LongerThanBudget {
                band: Band::N,
                airtime: secs(4),
                budget: Duration::from_millis(3_600)
            }
        );
        assert_eq!(denied.wait(), None);
    }

    #[test]
    fn usage_and_snapshot_report_headroom() {
        let mut ledger = DutyCycleLedger::new(Region::Eu868);
        let t0 = Instant::now();
        ledger.try_record(P_FREQ, secs(36), t0).unwrap();
        ledger
            .try_record(868_100_000, Duration::from_millis(900), t0)
            .unwrap();
        let now = t0 + secs(60);
        assert_eq!(ledger.usage(Band::P, now), (secs(36), secs(360)));
        let snapshot = ledger.snapshot(now);
        assert_eq!(snapshot.region, Region::Eu868);
        assert_eq!(snapshot.bands.len(), 6);
        let p = snapshot.bands.iter().find(|b| b.band == Band::P).unwrap();
        assert_eq!((p.used_ms, p.budget_ms), (36_000, 360_000));
        assert!((p.used_percent - 10.0).abs() < 1e-9);
        assert!((p.limit_percent - 10.0).abs() < 1e-9);
        let m = snapshot.bands.iter().find(|b| b.band == Band::M).unwrap();
        assert_eq!((m.used_ms, m.budget_ms), (900, 36_000));
        assert!((m.used_percent - 2.5).abs() < 1e-9);
        let k = snapshot.bands.iter().find(|b| b.band == Band::K).unwrap();
        assert_eq!(k.used_ms, 0);
        assert!((k.limit_percent - 0.1).abs() < 1e-9);
    }

    #[test]
    fn an_hour_after_it_ended_a_transmission_no_longer_counts() {
        let mut ledger = DutyCycleLedger::new(Region::Eu868);
        let t0 = Instant::now();
        ledger.try_record(P_FREQ, secs(10), t0).unwrap();
        let end = t0 + secs(10);
        assert_eq!(ledger.usage(Band::P, end + WINDOW - secs(1)).0, secs(10));
        assert_eq!(ledger.usage(Band::P, end + WINDOW).0, Duration::ZERO);
        // Recording prunes what no longer counts, so memory stays bounded.
        ledger.record(P_FREQ, secs(1), end + WINDOW);
        assert_eq!(ledger.entries[Band::P.slot()].len(), 1);
    }

    #[test]
    fn unrestricted_records_but_never_denies() {
        let mut ledger = DutyCycleLedger::new(Region::Unrestricted);
        let t0 = Instant::now();
        assert!(ledger.can_transmit(915_000_000, secs(5), t0).is_ok());
        assert_eq!(ledger.record(915_000_000, secs(5), t0), None);
        for i in 0..10 {
            ledger.try_record(N_FREQ, secs(1), t0 + secs(i)).unwrap();
        }
        assert_eq!(
            ledger.usage(Band::N, t0 + secs(20)),
            (secs(10), Duration::from_millis(3_600))
        );
        let n = ledger.snapshot(t0 + secs(20));
        let n = n.bands.iter().find(|b| b.band == Band::N).unwrap();
        assert!(n.used_percent > 100.0);
    }

    #[test]
    fn entry_count_is_bounded_without_undercounting() {
        let mut ledger = DutyCycleLedger::new(Region::Unrestricted);
        let t0 = Instant::now();
        let n = MAX_ENTRIES_PER_BAND + 1000;
        for i in 0..n {
            ledger.record(
                P_FREQ,
                Duration::from_millis(3),
                t0 + Duration::from_millis(i as u64 * 4),
            );
        }
        assert!(ledger.entries[Band::P.slot()].len() <= MAX_ENTRIES_PER_BAND);
        let now = t0 + Duration::from_millis(n as u64 * 4);
        assert_eq!(
            ledger.usage(Band::P, now).0,
            Duration::from_millis(3 * n as u64)
        );
    }

    #[test]
    fn absurd_airtime_does_not_panic() {
        let mut ledger = DutyCycleLedger::new(Region::Unrestricted);
        let t0 = Instant::now();
        ledger.record(P_FREQ, Duration::MAX, t0);
        assert_eq!(ledger.usage(Band::P, t0).0, Duration::MAX);
        let eu = DutyCycleLedger::new(Region::Eu868);
        assert!(matches!(
            eu.can_transmit(P_FREQ, Duration::MAX, t0),
            Err(DutyCycleDenied::LongerThanBudget { .. })
        ));
    }

    /// A steady flood on band N (1 s every 10 s for three hours): three
    /// transmissions fit per hour, each new one as soon as the oldest has
    /// been out of the window for a moment: at 0, 10, 20 s, then 3610, 3620,
    /// 3630 s (the first ended at 1 s, so it counts until 3601 s), then
    /// 7220, 7230, 7240 s.
    #[test]
    fn a_steady_flood_gets_exactly_the_budget() {
        let mut ledger = DutyCycleLedger::new(Region::Eu868);
        let t0 = Instant::now();
        let mut admitted = Vec::new();
        let mut sent = Vec::new();
        for i in 0..1080u64 {
            let at = 10 * i;
            if ledger.try_record(N_FREQ, secs(1), t0 + secs(at)).is_ok() {
                admitted.push(at);
                sent.push((i128::from(at) * 1000, i128::from(at + 1) * 1000));
            }
        }
        assert_eq!(admitted, [0, 10, 20, 3610, 3620, 3630, 7220, 7230, 7240]);
        assert_eq!(busiest_hour_ms(&sent), 3_000);
    }

    /// One attempt in the flood: wait `gap_ms`, then try `airtime_ms` on a
    /// frequency picked from band `band_slot` (6 = outside every band).
    #[derive(Debug, Clone)]
    struct Attempt {
        gap_ms: u64,
        band_slot: usize,
        freq_offset: u32,
        airtime_ms: u64,
    }

    fn attempt() -> impl Strategy<Value = Attempt> {
        (0u64..=90_000, 0usize..=6, any::<u32>(), 1u64..=4_000).prop_map(
            |(gap_ms, band_slot, freq_offset, airtime_ms)| Attempt {
                gap_ms,
                band_slot,
                freq_offset,
                airtime_ms,
            },
        )
    }

    fn freq_of(attempt: &Attempt) -> u32 {
        match Band::ALL.get(attempt.band_slot) {
            Some(band) => {
                let (low, high) = band.freq_range_hz();
                low + attempt.freq_offset % (high - low)
            }
            None => 868_600_000 + attempt.freq_offset % 100_000,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The project's requirement: under a random flood of attempts over
        /// simulated hours, the airtime on air in ANY rolling one-hour window
        /// never exceeds the band's budget. Also checks that every wait the
        /// ledger announces is exact.
        #[test]
        fn no_hour_ever_exceeds_a_band_budget(attempts in prop::collection::vec(attempt(), 50..400)) {
            let mut ledger = DutyCycleLedger::new(Region::Eu868);
            let t0 = Instant::now();
            let mut clock_ms = 0u64;
            let mut sent: [Vec<(i128, i128)>; 6] = Default::default();
            for attempt in &attempts {
                clock_ms += attempt.gap_ms;
                let now = t0 + Duration::from_millis(clock_ms);
                let freq = freq_of(attempt);
                let airtime = Duration::from_millis(attempt.airtime_ms);
                match ledger.try_record(freq, airtime, now) {
                    Ok(()) => {
                        let band = band_for(freq).expect("allowed only inside a band");
                        let start = i128::from(clock_ms);
                        sent[band.slot()].push((start, start + i128::from(attempt.airtime_ms)));
                    }
                    Err(DutyCycleDenied::OutsideBands { .. }) => prop_assert_eq!(attempt.band_slot, 6),
                    Err(DutyCycleDenied::LongerThanBudget { band, .. }) => {
                        prop_assert!(airtime > band.budget());
                    }
                    Err(DutyCycleDenied::Busy { wait, .. }) => {
                        prop_assert!(!wait.is_zero());
                        prop_assert!(ledger.can_transmit(freq, airtime, now + wait).is_ok());
                        prop_assert!(ledger.can_transmit(freq, airtime, now + wait - Duration::from_nanos(1)).is_err());
                    }
                }
            }
            for band in Band::ALL {
                let worst = busiest_hour_ms(&sent[band.slot()]);
                prop_assert!(
                    worst <= band.budget().as_millis() as i128,
                    "band {:?}: {} ms in one hour, budget {:?}", band, worst, band.budget()
                );
            }
        }
    }
}
