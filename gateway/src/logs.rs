//! The gateway's recent log lines, kept in memory for the diagnostic bundle,
//! and the tail of the system log file.
//!
//! A technician who downloads the bundle wants to know what the gateway said
//! lately, but the appliance's stderr goes to syslog, which may be rotated
//! away or not exist on a developer machine. So a [`RingLayer`] beside the
//! stderr formatter keeps the last [`MAX_LINES`] lines (at most
//! [`MAX_BYTES`]) in memory.
//!
//! Logging happens on the hot path (ingest, links), so the layer must never
//! make a task wait: each line is formatted without the lock, and the lock
//! is only tried, a bounded number of times. A line that finds it busy every
//! time is counted as missed instead of waiting; the bundle says how many.
//!
//! Nothing here removes secrets: the bundle does, on the way out
//! ([`redact`]), because only the daemon knows which strings are secret.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, TryLockError};
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

/// Lines kept.
pub const MAX_LINES: usize = 2_000;
/// Bytes kept (sum of line lengths), whichever limit comes first.
pub const MAX_BYTES: usize = 512 * 1024;
/// A longer line is cut here: one huge line must not push out all others.
const MAX_LINE: usize = 4 * 1024;
/// How much of the system log file goes into the bundle.
pub const SYSTEM_LOG_TAIL: u64 = 256 * 1024;
/// Attempts at the lock before a line is counted as missed.
const LOCK_TRIES: usize = 64;

/// A bounded in-memory log.
#[derive(Default)]
pub struct LogRing {
    lines: Mutex<Lines>,
    missed: AtomicU64,
}

#[derive(Default)]
struct Lines {
    lines: VecDeque<String>,
    bytes: usize,
}

impl LogRing {
    /// Adds a line, dropping the oldest ones beyond the limits; never waits.
    pub fn push(&self, mut line: String) {
        if line.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push_str(" …");
        }
        for _ in 0..LOCK_TRIES {
            let mut ring = match self.lines.try_lock() {
                Ok(ring) => ring,
                // A panic while holding the lock leaves plain strings behind.
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
                Err(TryLockError::WouldBlock) => {
                    std::hint::spin_loop();
                    continue;
                }
            };
            ring.bytes += line.len();
            ring.lines.push_back(line);
            while ring.lines.len() > MAX_LINES || ring.bytes > MAX_BYTES {
                match ring.lines.pop_front() {
                    Some(old) => ring.bytes -= old.len(),
                    None => break,
                }
            }
            return;
        }
        self.missed.fetch_add(1, Ordering::Relaxed);
    }

    /// The kept lines, oldest first.
    pub fn lines(&self) -> Vec<String> {
        let ring = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        ring.lines.iter().cloned().collect()
    }

    /// Lines not kept because the ring was busy.
    pub fn missed(&self) -> u64 {
        self.missed.load(Ordering::Relaxed)
    }
}

/// The process's ring, filled once [`RingLayer`] is installed (by
/// `daemon::init_logging`).
pub fn global() -> &'static LogRing {
    static RING: OnceLock<LogRing> = OnceLock::new();
    RING.get_or_init(LogRing::default)
}

/// A tracing layer that writes every event it sees into [`global`].
pub struct RingLayer;

impl<S: Subscriber> Layer<S> for RingLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut line = String::with_capacity(128);
        let _ = write!(
            line,
            "{} {:>5} {}:",
            utc_timestamp(SystemTime::now()),
            meta.level(),
            meta.target()
        );
        event.record(&mut LineVisitor(&mut line));
        global().push(line);
    }
}

/// Appends `message` first, then `key=value` for the other fields.
struct LineVisitor<'a>(&'a mut String);

impl Visit for LineVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value}");
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, " {value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

/// `2024-05-01T12:34:56.789Z`, the same form as the MQTT payloads use.
fn utc_timestamp(t: SystemTime) -> String {
    crate::uplink::payload::rfc3339_utc_millis(radio_bridge::link::unix_millis(t))
}

/// The last [`SYSTEM_LOG_TAIL`] bytes of a log file, starting at a whole
/// line; or one line saying why there is none.
pub fn system_log_tail(path: &Path) -> String {
    let read = || -> std::io::Result<String> {
        let mut file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        let start = len.saturating_sub(SYSTEM_LOG_TAIL);
        file.seek(SeekFrom::Start(start))?;
        let mut bytes = Vec::with_capacity((len - start) as usize);
        file.take(SYSTEM_LOG_TAIL).read_to_end(&mut bytes)?;
        let mut text = String::from_utf8_lossy(&bytes).into_owned();
        if start > 0 {
            // The cut fell inside a line; drop its remainder.
            let first_newline = text.find('\n').map_or(text.len(), |i| i + 1);
            text.drain(..first_newline);
        }
        Ok(text)
    };
    match read() {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            format!("(no system log: {} does not exist)\n", path.display())
        }
        Err(e) => format!("(system log {} unreadable: {e})\n", path.display()),
    }
}

/// `text` with every occurrence of each secret (and of its percent-encoded
/// form, as it appears in URLs) replaced by `(removed)`.
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(secret, "(removed)");
        let encoded = percent_encode(secret);
        if encoded != *secret {
            out = out.replace(&encoded, "(removed)");
        }
    }
    out
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_newest_lines_within_both_limits() {
        let ring = LogRing::default();
        for i in 0..(MAX_LINES + 10) {
            ring.push(format!("line {i}"));
        }
        let lines = ring.lines();
        assert_eq!(lines.len(), MAX_LINES);
        assert_eq!(lines[0], "line 10");
        assert_eq!(lines.last().unwrap(), &format!("line {}", MAX_LINES + 9));

        let ring = LogRing::default();
        for _ in 0..1000 {
            ring.push("x".repeat(10_000));
        }
        let lines = ring.lines();
        let bytes: usize = lines.iter().map(String::len).sum();
        assert!(bytes <= MAX_BYTES, "{bytes} bytes kept");
        assert!(
            lines.iter().all(|l| l.len() <= MAX_LINE + 4),
            "long lines are cut"
        );
        assert_eq!(ring.missed(), 0);
    }

    #[test]
    fn a_busy_ring_counts_the_line_instead_of_waiting() {
        let ring = LogRing::default();
        let held = ring.lines.lock().unwrap();
        ring.push("while held".into());
        drop(held);
        assert_eq!(ring.missed(), 1);
        assert!(ring.lines().is_empty());
    }

    #[test]
    fn secrets_are_removed_plain_and_percent_encoded() {
        let text = "login with hunter2/x; url mqtt://u:hunter2%2Fx@h:1883";
        let out = redact(text, &["hunter2/x", ""]);
        assert!(!out.contains("hunter2"), "{out}");
        assert_eq!(out.matches("(removed)").count(), 2);
    }

    #[test]
    fn timestamps_are_utc() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_714_566_896_789);
        assert_eq!(utc_timestamp(t), "2024-05-01T12:34:56.789Z");
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(951_782_400);
        assert_eq!(utc_timestamp(t), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn the_system_log_tail_starts_at_a_whole_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("messages");
        let line = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd\n";
        let mut text = String::new();
        while text.len() < (SYSTEM_LOG_TAIL as usize) + 1000 {
            text.push_str(line);
        }
        text.push_str("the last line\n");
        std::fs::write(&path, &text).unwrap();
        let tail = system_log_tail(&path);
        assert!(tail.len() <= SYSTEM_LOG_TAIL as usize);
        assert!(tail.starts_with("0123"), "{}", &tail[..80]);
        assert!(tail.ends_with("the last line\n"));
        let missing = system_log_tail(&dir.path().join("nope"));
        assert!(missing.contains("does not exist"), "{missing}");
    }
}
