//! Who may use `/admin`, and how hard guessing is made.
//!
//! - [`password`]: argon2 hashing and verification (the PHC string comes from the gateway).
//! - [`session`]: server-side sessions behind a random cookie, each with its CSRF token.
//! - [`rate_limit`]: login attempts per client address and in total.
//! - [`token`]: random tokens, constant-time comparison, and the cookie header plumbing.
//!
//! Everything is in memory: a gateway restart logs the technician out, which is the right
//! failure for a device that may have been restarted because something was wrong.

pub mod password;
pub mod rate_limit;
pub mod session;
pub mod token;

use rate_limit::LoginLimiter;
use session::SessionStore;

/// The login state shared by every admin handler.
pub(crate) struct Auth {
    pub(crate) sessions: SessionStore,
    pub(crate) limiter: LoginLimiter,
}

impl Auth {
    pub(crate) fn new() -> Auth {
        Auth {
            sessions: SessionStore::new(),
            limiter: LoginLimiter::new(),
        }
    }
}
