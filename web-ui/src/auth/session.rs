//! Server-side admin sessions.
//!
//! The browser holds only a random id (cookie `seed_session`); the session's CSRF token and
//! its one-shot message live here. Sessions end after a quiet spell or a fixed lifetime,
//! whichever comes first, and the store holds a bounded number so that logging in in a loop
//! cannot grow memory on the appliance.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::token::{random_token, same_secret};

pub const SESSION_COOKIE: &str = "seed_session";

/// Logged out after this long without a request.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Logged out after this long regardless.
const MAX_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);
/// A kiosk has one or two technicians; the oldest sessions make room for new ones.
const MAX_SESSIONS: usize = 32;

/// A message shown once on the next admin page (the result of an action).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    pub ok: bool,
    pub text: String,
}

struct Session {
    csrf: String,
    created: Instant,
    last_used: Instant,
    flash: Option<Flash>,
}

/// What a handler learns about a valid session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub id: String,
    pub csrf: String,
}

/// The result of checking a form's CSRF token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Csrf {
    Valid,
    /// The session exists but the token is wrong: a forged or stale form.
    Invalid,
    /// No (live) session: the user must log in.
    NoSession,
}

pub struct SessionStore {
    sessions: Mutex<HashMap<String, Session>>,
}

impl Default for SessionStore {
    fn default() -> Self {
        Self::new()
    }
}

impl SessionStore {
    pub fn new() -> SessionStore {
        SessionStore {
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// Starts a session; returns its id for the cookie.
    pub fn create(&self) -> Result<String, getrandom::Error> {
        self.create_at(Instant::now())
    }

    fn create_at(&self, now: Instant) -> Result<String, getrandom::Error> {
        let id = random_token()?;
        let csrf = random_token()?;
        let mut sessions = self.lock();
        sessions.retain(|_, session| is_live(session, now));
        while sessions.len() >= MAX_SESSIONS {
            let oldest = sessions
                .iter()
                .min_by_key(|(_, session)| session.last_used)
                .map(|(id, _)| id.clone());
            match oldest {
                Some(oldest) => sessions.remove(&oldest),
                None => break,
            };
        }
        sessions.insert(
            id.clone(),
            Session {
                csrf,
                created: now,
                last_used: now,
                flash: None,
            },
        );
        Ok(id)
    }

    /// Looks up a live session and marks it used.
    pub fn open(&self, id: &str) -> Option<SessionInfo> {
        self.open_at(id, Instant::now())
    }

    fn open_at(&self, id: &str, now: Instant) -> Option<SessionInfo> {
        let mut sessions = self.lock();
        let live = sessions
            .get(id)
            .is_some_and(|session| is_live(session, now));
        if !live {
            sessions.remove(id);
            return None;
        }
        let session = sessions.get_mut(id)?;
        session.last_used = now;
        Some(SessionInfo {
            id: id.to_string(),
            csrf: session.csrf.clone(),
        })
    }

    /// Hands over the session's pending message, once.
    pub fn take_flash(&self, id: &str) -> Option<Flash> {
        self.lock().get_mut(id)?.flash.take()
    }

    /// Checks a submitted CSRF token against the session's own.
    pub fn check_csrf(&self, id: &str, token: &str) -> Csrf {
        self.check_csrf_at(id, token, Instant::now())
    }

    fn check_csrf_at(&self, id: &str, token: &str, now: Instant) -> Csrf {
        let mut sessions = self.lock();
        match sessions.get_mut(id) {
            Some(session) if is_live(session, now) => {
                session.last_used = now;
                if same_secret(&session.csrf, token) {
                    Csrf::Valid
                } else {
                    Csrf::Invalid
                }
            }
            Some(_) => {
                sessions.remove(id);
                Csrf::NoSession
            }
            None => Csrf::NoSession,
        }
    }

    /// Leaves a message for the session's next page.
    pub fn set_flash(&self, id: &str, flash: Flash) {
        if let Some(session) = self.lock().get_mut(id) {
            session.flash = Some(flash);
        }
    }

    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A panic while holding this lock leaves plain data behind, still consistent.
        self.sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn is_live(session: &Session, now: Instant) -> bool {
    now.saturating_duration_since(session.last_used) < IDLE_TIMEOUT
        && now.saturating_duration_since(session.created) < MAX_LIFETIME
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_opens_and_checks_its_own_token() {
        let store = SessionStore::new();
        let id = store.create().unwrap();
        let info = store.open(&id).unwrap();
        assert_eq!(store.check_csrf(&id, &info.csrf), Csrf::Valid);
        assert_eq!(store.check_csrf(&id, "forged"), Csrf::Invalid);
        assert_eq!(store.check_csrf("unknown", &info.csrf), Csrf::NoSession);
        assert!(store.open("unknown").is_none());
        store.remove(&id);
        assert!(store.open(&id).is_none());
    }

    #[test]
    fn flash_is_shown_once() {
        let store = SessionStore::new();
        let id = store.create().unwrap();
        let flash = Flash {
            ok: true,
            text: "done".into(),
        };
        store.set_flash(&id, flash.clone());
        assert!(store.open(&id).is_some());
        assert_eq!(store.take_flash(&id), Some(flash));
        assert_eq!(store.take_flash(&id), None);
    }

    #[test]
    fn sessions_expire_when_idle_and_when_old() {
        let store = SessionStore::new();
        let start = Instant::now();
        let id = store.create_at(start).unwrap();
        let idle = start + IDLE_TIMEOUT;
        assert!(store.open_at(&id, idle).is_none(), "idle session survived");

        let id = store.create_at(start).unwrap();
        let mut now = start;
        while now < start + MAX_LIFETIME - IDLE_TIMEOUT / 2 {
            now += IDLE_TIMEOUT / 2;
            assert!(
                store.open_at(&id, now).is_some(),
                "active session ended early"
            );
        }
        now += IDLE_TIMEOUT / 2;
        assert!(
            store.open_at(&id, now).is_none(),
            "session outlived its lifetime"
        );
    }

    #[test]
    fn the_store_stays_bounded() {
        let store = SessionStore::new();
        let start = Instant::now();
        let first = store.create_at(start).unwrap();
        for i in 1..=MAX_SESSIONS as u32 {
            store
                .create_at(start + Duration::from_millis(u64::from(i)))
                .unwrap();
        }
        assert_eq!(store.lock().len(), MAX_SESSIONS);
        assert!(!store.lock().contains_key(&first), "oldest session kept");
    }
}
