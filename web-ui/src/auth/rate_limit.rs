//! Login attempts are limited per client address and in total.
//!
//! An attempt is counted when it starts, not when it fails: argon2 takes a while, and
//! counting only finished failures would let a burst of parallel guesses all pass the check
//! before the first one is recorded. A successful login forgives that address's attempts.
//! The total limit caps the CPU an attacker on the Wi-Fi can burn on argon2, whatever
//! addresses they use.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Attempts allowed per client address per window.
pub const PER_CLIENT: usize = 5;
/// Attempts allowed from everyone together per window.
pub const OVERALL: usize = 20;
pub const WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at once; beyond this the overall limit still holds.
const MAX_CLIENTS: usize = 1024;

#[derive(Default)]
struct Attempts {
    by_client: HashMap<IpAddr, VecDeque<Instant>>,
    overall: VecDeque<Instant>,
}

pub struct LoginLimiter {
    attempts: Mutex<Attempts>,
}

impl Default for LoginLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl LoginLimiter {
    pub fn new() -> LoginLimiter {
        LoginLimiter {
            attempts: Mutex::new(Attempts::default()),
        }
    }

    /// Records an attempt from `client` if the limits allow one; otherwise returns how long
    /// to wait before trying again.
    pub fn begin(&self, client: IpAddr) -> Result<(), Duration> {
        self.begin_at(client, Instant::now())
    }

    fn begin_at(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut attempts = self.lock();
        let attempts = &mut *attempts;
        forget_before(&mut attempts.overall, now);
        let mine = attempts.by_client.entry(client).or_default();
        forget_before(mine, now);

        if let Some(wait) = wait_for(mine, PER_CLIENT, now) {
            return Err(wait);
        }
        if let Some(wait) = wait_for(&attempts.overall, OVERALL, now) {
            return Err(wait);
        }
        mine.push_back(now);
        attempts.overall.push_back(now);

        if attempts.by_client.len() > MAX_CLIENTS {
            attempts.by_client.retain(|_, times| {
                forget_before(times, now);
                !times.is_empty()
            });
        }
        Ok(())
    }

    /// A correct password: this address starts afresh.
    pub fn forgive(&self, client: IpAddr) {
        self.lock().by_client.remove(&client);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Attempts> {
        self.attempts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn forget_before(times: &mut VecDeque<Instant>, now: Instant) {
    while times
        .front()
        .is_some_and(|&at| now.saturating_duration_since(at) >= WINDOW)
    {
        times.pop_front();
    }
}

/// None if another attempt fits, else the time until the oldest one leaves the window.
fn wait_for(times: &VecDeque<Instant>, limit: usize, now: Instant) -> Option<Duration> {
    if times.len() < limit {
        return None;
    }
    let oldest = times.front().copied().unwrap_or(now);
    Some(WINDOW.saturating_sub(now.saturating_duration_since(oldest)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 168, 4, last))
    }

    #[test]
    fn each_client_gets_five_attempts_a_minute() {
        let limiter = LoginLimiter::new();
        let start = Instant::now();
        for _ in 0..PER_CLIENT {
            assert!(limiter.begin_at(ip(1), start).is_ok());
        }
        let wait = limiter.begin_at(ip(1), start + Duration::from_secs(10));
        assert_eq!(wait, Err(Duration::from_secs(50)));
        assert!(
            limiter.begin_at(ip(2), start).is_ok(),
            "other client blocked"
        );
        assert!(
            limiter.begin_at(ip(1), start + WINDOW).is_ok(),
            "never released"
        );
    }

    #[test]
    fn success_forgives_the_client() {
        let limiter = LoginLimiter::new();
        let start = Instant::now();
        for _ in 0..PER_CLIENT {
            limiter.begin_at(ip(1), start).unwrap();
        }
        limiter.forgive(ip(1));
        assert!(limiter.begin_at(ip(1), start).is_ok());
    }

    #[test]
    fn many_clients_together_hit_the_overall_limit() {
        let limiter = LoginLimiter::new();
        let start = Instant::now();
        for n in 0..OVERALL {
            assert!(limiter.begin_at(ip(n as u8), start).is_ok());
        }
        assert!(limiter.begin_at(ip(200), start).is_err());
        assert!(limiter.begin_at(ip(200), start + WINDOW).is_ok());
    }
}
