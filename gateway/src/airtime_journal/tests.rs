use super::*;
use proptest::prelude::*;
use radio_bridge::duty_cycle::{band_for, busiest_hour_ms, Region};
use radio_bridge::link::MAX_TX_HOLD;

const N_FREQ: u32 = 868_900_000;
const P_FREQ: u32 = 869_525_000;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A simulated machine: `true_ms` is real time since the test began,
/// `boot_began_ms` when the running boot started, `t0` the instant of 0.
struct Machine {
    t0: Instant,
    true_ms: u64,
    boot: u32,
    boot_began_ms: u64,
}

impl Machine {
    fn new() -> Machine {
        Machine {
            t0: Instant::now(),
            true_ms: 0,
            boot: 1,
            boot_began_ms: 0,
        }
    }

    fn now(&self) -> Instant {
        self.t0 + ms(self.true_ms)
    }

    fn clock(&self) -> BootClock {
        BootClock {
            boot: Some(format!("boot-{}", self.boot)),
            since_boot: ms(self.true_ms - self.boot_began_ms),
            at: self.now(),
        }
    }

    fn reboot(&mut self, down_ms: u64, boot_ms: u64) {
        self.true_ms += down_ms;
        self.boot += 1;
        self.boot_began_ms = self.true_ms;
        self.true_ms += boot_ms;
    }

    /// A fresh process on this machine: an empty ledger read back from `dir`.
    fn start(&self, dir: &Path) -> (DutyCycleLedger, AirtimeJournal, Restored) {
        let mut ledger = DutyCycleLedger::new(Region::Eu868);
        let (journal, restored) = AirtimeJournal::open(dir, &mut ledger, self.clock()).unwrap();
        (ledger, journal, restored)
    }
}

/// What the scheduler does for one frame: check, charge, journal.
fn send(
    ledger: &mut DutyCycleLedger,
    journal: &mut AirtimeJournal,
    freq: u32,
    airtime: Duration,
    now: Instant,
) -> bool {
    if ledger.can_transmit(freq, airtime, now).is_err() {
        return false;
    }
    let (band, end) = ledger
        .record_delayed(freq, airtime, now, MAX_TX_HOLD)
        .unwrap();
    journal.append(ledger, band, end, airtime).unwrap();
    true
}

#[test]
fn a_restart_in_the_same_boot_keeps_the_exact_usage() {
    let dir = tempfile::tempdir().unwrap();
    let mut machine = Machine::new();
    let (mut ledger, mut journal, restored) = machine.start(dir.path());
    assert_eq!(restored, Restored::default(), "a first start knows nothing");
    for _ in 0..3 {
        assert!(send(
            &mut ledger,
            &mut journal,
            N_FREQ,
            ms(1000),
            machine.now()
        ));
        machine.true_ms += 5_000;
    }
    assert!(!send(
        &mut ledger,
        &mut journal,
        N_FREQ,
        ms(1000),
        machine.now()
    ));
    drop(journal);

    machine.true_ms += 60_000;
    let (ledger, _journal, restored) = machine.start(dir.path());
    assert_eq!((restored.entries, restored.from_earlier_boot), (3, 0));
    assert_eq!(ledger.usage(Band::N, machine.now()).0, ms(3000));
    assert!(ledger
        .can_transmit(N_FREQ, ms(1000), machine.now())
        .is_err());
    assert!(ledger.can_transmit(N_FREQ, ms(600), machine.now()).is_ok());
    // The first one ended at 1 s (+ the hold allowance): an hour later it
    // no longer counts, exactly as if the gateway had never stopped.
    let freed = machine.t0 + ms(1000) + MAX_TX_HOLD + WINDOW;
    assert_eq!(ledger.usage(Band::N, freed - ms(1)).0, ms(3000));
    assert_eq!(ledger.usage(Band::N, freed).0, ms(2000));
}

#[test]
fn after_a_reboot_the_past_counts_as_if_it_ended_when_the_boot_began() {
    let dir = tempfile::tempdir().unwrap();
    let mut machine = Machine::new();
    let (mut ledger, mut journal, _) = machine.start(dir.path());
    assert!(send(
        &mut ledger,
        &mut journal,
        P_FREQ,
        ms(30_000),
        machine.now()
    ));
    drop(journal);
    // Powered off for two hours: the journal cannot know, so it assumes
    // the transmission ended just before this boot (20 s ago).
    machine.reboot(2 * 3600 * 1000, 20_000);
    let (ledger, journal, restored) = machine.start(dir.path());
    assert_eq!((restored.entries, restored.from_earlier_boot), (1, 1));
    let boot_began = machine.t0 + ms(machine.boot_began_ms);
    assert_eq!(ledger.usage(Band::P, machine.now()).0, ms(30_000));
    assert_eq!(ledger.usage(Band::P, boot_began + WINDOW).0, Duration::ZERO);
    drop(journal);
    // A second reboot keeps it conservative: the rewritten entry is now
    // "from boot 2", and boot 3 again counts it up to its own start.
    machine.reboot(1000, 15_000);
    let (ledger, _journal, restored) = machine.start(dir.path());
    assert_eq!(restored.from_earlier_boot, 1);
    assert_eq!(ledger.usage(Band::P, machine.now()).0, ms(30_000));
}

#[test]
fn without_a_boot_id_the_past_counts_as_just_ended() {
    let dir = tempfile::tempdir().unwrap();
    let mut machine = Machine::new();
    let unnamed = |machine: &Machine| BootClock {
        boot: None,
        ..machine.clock()
    };
    let mut ledger = DutyCycleLedger::new(Region::Eu868);
    let (mut journal, _) =
        AirtimeJournal::open(dir.path(), &mut ledger, unnamed(&machine)).unwrap();
    assert!(send(
        &mut ledger,
        &mut journal,
        N_FREQ,
        ms(1000),
        machine.now()
    ));
    drop(journal);
    machine.true_ms += 30 * 60 * 1000;
    // Read back with a boot id now: the line names none, so it counts as
    // having ended at the restart, not at some earlier boot's end.
    let (ledger, _journal, restored) = machine.start(dir.path());
    assert_eq!((restored.entries, restored.from_earlier_boot), (1, 0));
    assert_eq!(
        ledger.usage(Band::N, machine.now() + WINDOW - ms(1)).0,
        ms(1000)
    );
}

#[test]
fn a_torn_last_line_is_ignored_and_a_bad_line_charges_every_band() {
    let dir = tempfile::tempdir().unwrap();
    let machine = Machine::new();
    let path = dir.path().join(JOURNAL_FILE);
    // A write cut short before its fsync never reached the radio.
    std::fs::write(&path, "boot-1 5000 N 1000000\nboot-1 6000 N 10").unwrap();
    let (ledger, _journal, restored) = machine.start(dir.path());
    assert_eq!(restored.entries, 1);
    assert_eq!(restored.unreadable, None);
    assert_eq!(ledger.usage(Band::N, machine.now()).0, ms(1000));
    assert_eq!(
        std::fs::read_to_string(&path).unwrap().lines().count(),
        1,
        "rewritten without the torn line"
    );

    std::fs::write(&path, "boot-1 5000 N 1000000\ngarbage\n").unwrap();
    let (ledger, _journal, restored) = machine.start(dir.path());
    assert_eq!(
        restored.unreadable.as_deref(),
        Some("line 2 is not a journal entry")
    );
    for band in Band::ALL {
        let (used, budget) = ledger.usage(band, machine.now());
        assert!(used >= budget, "{band:?}: {used:?} of {budget:?}");
    }
    // ... and stays so across the next restart: the rewrite kept it.
    drop(_journal);
    let (ledger, _journal, restored) = machine.start(dir.path());
    assert_eq!(restored.unreadable, None);
    assert!(ledger.can_transmit(P_FREQ, ms(100), machine.now()).is_err());
}

/// One step of a run: wait, then try a frame; or restart the process; or
/// power-cycle the machine.
#[derive(Debug, Clone)]
enum Step {
    Send {
        gap_ms: u64,
        band_slot: usize,
        airtime_ms: u64,
        /// How late the link actually sends it, as a share of the hold.
        delay_share: u8,
        /// The process dies after the journal entry, before the radio.
        crash_before_radio: bool,
    },
    Restart {
        gap_ms: u64,
    },
    Reboot {
        down_ms: u64,
        boot_ms: u64,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (0u64..=60_000, 0usize..6, 1u64..=4_000, any::<u8>(), prop::bool::weighted(0.05))
            .prop_map(|(gap_ms, band_slot, airtime_ms, delay_share, crash_before_radio)| Step::Send {
                gap_ms, band_slot, airtime_ms, delay_share, crash_before_radio,
            }),
        1 => (0u64..=120_000).prop_map(|gap_ms| Step::Restart { gap_ms }),
        1 => (0u64..=600_000, 5_000u64..=60_000)
            .prop_map(|(down_ms, boot_ms)| Step::Reboot { down_ms, boot_ms }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Whatever the restart points (process restarts, power cuts, crashes
    /// between journal and radio, frames sent late by a holding link), no
    /// rolling hour ever carries more than a band's budget.
    #[test]
    fn no_sequence_of_restarts_exceeds_a_band_budget(steps in prop::collection::vec(step(), 50..300)) {
        let dir = tempfile::tempdir().unwrap();
        let mut machine = Machine::new();
        let (mut ledger, mut journal, _) = machine.start(dir.path());
        let mut on_air: [Vec<(i128, i128)>; 6] = Default::default();
        for step in steps {
            match step {
                Step::Send { gap_ms, band_slot, airtime_ms, delay_share, crash_before_radio } => {
                    machine.true_ms += gap_ms;
                    let band = Band::ALL[band_slot];
                    let (low, high) = band.freq_range_hz();
                    let freq = low + (high - low) / 2;
                    prop_assert_eq!(band_for(freq), Some(band));
                    let airtime = ms(airtime_ms);
                    if !send(&mut ledger, &mut journal, freq, airtime, machine.now()) {
                        continue;
                    }
                    if crash_before_radio {
                        machine.true_ms += 1;
                        drop(journal);
                        (ledger, journal, _) = machine.start(dir.path());
                        continue;
                    }
                    let delay = MAX_TX_HOLD.as_millis() as u64 * u64::from(delay_share) / 255;
                    let start = i128::from(machine.true_ms + delay);
                    on_air[band_slot].push((start, start + i128::from(airtime_ms)));
                }
                Step::Restart { gap_ms } => {
                    drop(journal);
                    machine.true_ms += gap_ms;
                    (ledger, journal, _) = machine.start(dir.path());
                }
                Step::Reboot { down_ms, boot_ms } => {
                    drop(journal);
                    machine.reboot(down_ms, boot_ms);
                    (ledger, journal, _) = machine.start(dir.path());
                }
            }
        }
        for band in Band::ALL {
            let worst = busiest_hour_ms(&on_air[band as usize]);
            prop_assert!(
                worst <= band.budget().as_millis() as i128,
                "band {:?}: {} ms in one hour, budget {:?}", band, worst, band.budget()
            );
        }
    }
}
