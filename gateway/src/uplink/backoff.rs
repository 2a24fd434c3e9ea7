//! Exponential reconnect backoff with jitter.
//!
//! Why jitter: after a broker restart every gateway of a fleet notices at the
//! same moment; without it they would all knock again at the same instants.
//! The delay for attempt `n` is drawn uniformly from `[base/2, base]` where
//! `base = min(max, min * 2^n)` ("equal jitter"), so it still grows
//! reliably and never exceeds `max`.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        let min = min.max(Duration::from_millis(1));
        Backoff {
            min,
            max: max.max(min),
            attempt: 0,
        }
    }

    /// The wait before the next attempt; each call grows the next one.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.base();
        self.attempt = self.attempt.saturating_add(1);
        let half = base / 2;
        let spread = (base - half).as_millis() as u64;
        half + Duration::from_millis(rand::random_range(0..=spread))
    }

    /// After a successful connection: start again from `min`.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    fn base(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.min.saturating_mul(factor).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_and_stays_within_bounds() {
        let min = Duration::from_millis(1000);
        let max = Duration::from_millis(60_000);
        let mut b = Backoff::new(min, max);
        let mut bases = Vec::new();
        for _ in 0..40 {
            let base = b.base();
            let d = b.next_delay();
            assert!(
                d >= base / 2 && d <= base,
                "{d:?} outside [{:?}, {base:?}]",
                base / 2
            );
            assert!(d <= max);
            bases.push(base.as_millis());
        }
        assert_eq!(&bases[..7], &[1000, 2000, 4000, 8000, 16000, 32000, 60000]);
        assert!(bases[7..].iter().all(|&b| b == 60_000));
        b.reset();
        assert!(b.next_delay() <= min);
    }
}
