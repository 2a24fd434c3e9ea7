//! The EU868 airtime ledger on disk, so that no sequence of restarts or
//! power cuts lets the gateway exceed a sub-band's hourly budget.
//!
//! Every transmission the scheduler admits is appended to
//! `airtime.journal` in the data directory and fsynced *before* the frame
//! is handed to the radio: a crash between the two over-counts (airtime
//! recorded, nothing sent), never the reverse. At start the journal is
//! read back into the [`DutyCycleLedger`] and rewritten with only what
//! still counts.
//!
//! # Time across restarts
//!
//! A kiosk without internet or a real-time clock cannot trust its wall
//! clock after a power cut, so the journal does not use it. Each line
//! records when the transmission ends on the kernel's boot clock
//! (`CLOCK_BOOTTIME`, which also runs during suspend) together with the
//! boot's id (`/proc/sys/kernel/random/boot_id`):
//! - written in *this* boot (the process was restarted): the boot clock
//!   says exactly how long ago the transmission ended;
//! - written in an *earlier* boot: all that is certain is that it ended
//!   before this boot began, so it is taken to have ended at this boot's
//!   start (an unknown past counts as used). Rewritten at start, such
//!   entries carry this boot's id and a boot-clock time of 0, and stay
//!   conservative through further reboots;
//! - written or read where the kernel names no boot: it may be this very
//!   boot, so it is taken to have ended just now.
//!
//! # What cannot be read
//!
//! A line that is not valid and is not the torn last line of a write that
//! never finished (so never reached the radio) means the past is unknown:
//! every band is charged its whole budget, ending now, and the gateway
//! transmits nothing for an hour. A missing journal is a first start (or
//! an upgrade from a version without one); the docs say so.
//!
//! In [`Region::Unrestricted`](radio_bridge::duty_cycle::Region) nothing is
//! denied, so nothing is written.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use radio_bridge::duty_cycle::{Band, DutyCycleLedger, WINDOW};

/// The journal's file name in the data directory.
pub const JOURNAL_FILE: &str = "airtime.journal";

/// The boot name of lines written where the kernel names no boot; such
/// lines read back as ending at the moment of reading.
const UNNAMED_BOOT: &str = "unknown";

/// Lines appended since the last rewrite beyond which the journal is
/// rewritten with only the entries that still count.
const REWRITE_AFTER_LINES: usize = 20_000;

/// Where this process stands on the boot clock, to turn `Instant`s into
/// boot-clock times and back.
#[derive(Debug, Clone)]
pub struct BootClock {
    /// The running boot's id, if the kernel names it.
    pub boot: Option<String>,
    /// Boot-clock reading at `at`.
    pub since_boot: Duration,
    pub at: Instant,
}

impl BootClock {
    /// The running system's boot clock, read now.
    pub fn now() -> BootClock {
        let at = Instant::now();
        let ts = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
        let since_boot = Duration::new(
            u64::try_from(ts.tv_sec).unwrap_or(0),
            u32::try_from(ts.tv_nsec).unwrap_or(0),
        );
        BootClock {
            boot: crate::ota::note::this_boot(),
            since_boot,
            at,
        }
    }

    /// Boot-clock time of `instant`, in whole milliseconds rounded up (an
    /// entry must never end earlier on disk than in memory).
    fn ms_of(&self, instant: Instant) -> i128 {
        let micros = if instant >= self.at {
            (self.since_boot + (instant - self.at)).as_micros() as i128
        } else {
            self.since_boot.as_micros() as i128 - (self.at - instant).as_micros() as i128
        };
        (micros + 999).div_euclid(1000)
    }

    /// The instant at boot-clock time `ms` of this boot; `None` when it lies
    /// so far back that this process's clock cannot express it.
    fn instant_of(&self, ms: i128) -> Option<Instant> {
        let now_ms = self.since_boot.as_millis() as i128;
        let ahead = ms - now_ms;
        if ahead >= 0 {
            self.at
                .checked_add(Duration::from_millis(u64::try_from(ahead).ok()?))
        } else {
            self.at
                .checked_sub(Duration::from_millis(u64::try_from(-ahead).ok()?))
        }
    }
}

/// One line: `<boot id> <end, boot-clock ms> <band> <airtime µs>`.
#[derive(Debug, Clone, PartialEq)]
struct Line {
    boot: String,
    end_ms: i128,
    band: Band,
    airtime_us: u64,
}

impl Line {
    fn parse(text: &str) -> Option<Line> {
        let mut fields = text.split(' ');
        let boot = fields.next()?.to_string();
        let end_ms = fields.next()?.parse().ok()?;
        let band = match fields.next()? {
            "K" => Band::K,
            "L" => Band::L,
            "M" => Band::M,
            "N" => Band::N,
            "P" => Band::P,
            "Q" => Band::Q,
            _ => return None,
        };
        let airtime_us = fields.next()?.parse().ok()?;
        if boot.is_empty() || fields.next().is_some() {
            return None;
        }
        Some(Line {
            boot,
            end_ms,
            band,
            airtime_us,
        })
    }

    fn render(&self) -> String {
        format!(
            "{} {} {:?} {}\n",
            self.boot, self.end_ms, self.band, self.airtime_us
        )
    }
}

/// What was read back at start, for the log and the status page.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Restored {
    /// Entries that still count, charged to the ledger.
    pub entries: usize,
    /// Of those, entries from an earlier boot, taken to have ended at this
    /// boot's start.
    pub from_earlier_boot: usize,
    /// The journal could not be read: every band was charged in full.
    pub unreadable: Option<String>,
}

/// The open journal; the scheduler appends to it before each transmission.
pub struct AirtimeJournal {
    path: PathBuf,
    file: File,
    clock: BootClock,
    appended: usize,
}

impl AirtimeJournal {
    /// Reads `dir`'s journal into `ledger` (which should be empty), rewrites
    /// it with what still counts, and opens it for appending.
    pub fn open(
        dir: &Path,
        ledger: &mut DutyCycleLedger,
        clock: BootClock,
    ) -> io::Result<(AirtimeJournal, Restored)> {
        let path = dir.join(JOURNAL_FILE);
        let restored = match std::fs::read(&path) {
            Ok(bytes) => restore(&bytes, ledger, &clock),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Restored::default(),
            Err(e) => {
                charge_everything(ledger, clock.at);
                Restored {
                    unreadable: Some(e.to_string()),
                    ..Restored::default()
                }
            }
        };
        let file = rewrite(&path, &clock, ledger, clock.at)?;
        let journal = AirtimeJournal {
            path,
            file,
            clock,
            appended: 0,
        };
        Ok((journal, restored))
    }

    /// Records durably that `band` carries `airtime` ending by `end`. Only
    /// after this returns may the frame go to the radio.
    pub fn append(
        &mut self,
        ledger: &DutyCycleLedger,
        band: Band,
        end: Instant,
        airtime: Duration,
    ) -> io::Result<()> {
        let line = Line {
            boot: boot_name(&self.clock),
            end_ms: self.clock.ms_of(end),
            band,
            airtime_us: micros_up(airtime),
        };
        self.file.write_all(line.render().as_bytes())?;
        self.file.sync_data()?;
        self.appended += 1;
        if self.appended > REWRITE_AFTER_LINES {
            self.file = rewrite(&self.path, &self.clock, ledger, end)?;
            self.appended = 0;
        }
        Ok(())
    }
}

/// This boot's name in the journal ([`UNNAMED_BOOT`] without a boot id).
fn boot_name(clock: &BootClock) -> String {
    clock.boot.clone().unwrap_or_else(|| UNNAMED_BOOT.into())
}

/// Airtime in whole microseconds, rounded up.
fn micros_up(airtime: Duration) -> u64 {
    u64::try_from(airtime.as_nanos().div_ceil(1000)).unwrap_or(u64::MAX)
}

/// Replaces the journal with `ledger`'s live entries, atomically, and opens
/// it for appending.
fn rewrite(
    path: &Path,
    clock: &BootClock,
    ledger: &DutyCycleLedger,
    now: Instant,
) -> io::Result<File> {
    let boot = boot_name(clock);
    let text: String = ledger
        .entries(now)
        .into_iter()
        .map(|(band, end, airtime)| {
            Line {
                boot: boot.clone(),
                end_ms: clock.ms_of(end),
                band,
                airtime_us: micros_up(airtime),
            }
            .render()
        })
        .collect();
    crate::ota::note::write_durably(path, text.as_bytes())?;
    OpenOptions::new().append(true).open(path)
}

/// Charges `ledger` with every valid line of `bytes` (see the module docs).
fn restore(bytes: &[u8], ledger: &mut DutyCycleLedger, clock: &BootClock) -> Restored {
    let now = clock.at;
    let mut restored = Restored::default();
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            charge_everything(ledger, now);
            restored.unreadable = Some(format!("not text: {e}"));
            return restored;
        }
    };
    // Only the last line may lack its newline: a write cut short by a
    // crash, before its fsync, so before the frame reached the radio.
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    let boot_start = clock.instant_of(0).unwrap_or(now);
    for (number, raw) in complete.lines().enumerate() {
        let Some(line) = Line::parse(raw) else {
            charge_everything(ledger, now);
            restored.unreadable = Some(format!("line {} is not a journal entry", number + 1));
            return restored;
        };
        let end = match clock.boot.as_deref() {
            Some(boot) if boot == line.boot => match clock.instant_of(line.end_ms) {
                Some(end) => end,
                // Too far back for this process's clock: long over.
                None if line.end_ms
                    < clock.since_boot.as_millis() as i128 - WINDOW.as_millis() as i128 =>
                {
                    continue
                }
                None => now,
            },
            // Written or read where the boot has no name: it may be this
            // very boot, so only "just now" is safe.
            Some(_) if line.boot == UNNAMED_BOOT => now,
            None => now,
            Some(_) => {
                if boot_start
                    .checked_add(WINDOW)
                    .is_some_and(|expiry| expiry <= now)
                {
                    continue;
                }
                restored.from_earlier_boot += 1;
                boot_start
            }
        };
        let airtime = Duration::from_micros(line.airtime_us);
        if end.checked_add(WINDOW).is_some_and(|expiry| expiry <= now) {
            continue;
        }
        ledger.restore(line.band, end, airtime, now);
        restored.entries += 1;
    }
    restored
}

/// The unknown past counts as used: every band full, until an hour from now.
fn charge_everything(ledger: &mut DutyCycleLedger, now: Instant) {
    for band in Band::ALL {
        ledger.restore(band, now, band.budget(), now);
    }
}

#[cfg(test)]
mod tests;
