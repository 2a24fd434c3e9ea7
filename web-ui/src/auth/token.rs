//! Random tokens and the small amount of cookie handling the admin pages need.

use axum::http::header::COOKIE;
use axum::http::HeaderMap;

/// 32 bytes from the operating system's random source, as 64 hex digits: unguessable
/// session ids and CSRF tokens. Fails only if the OS cannot supply randomness, in which case
/// no session is better than a predictable one.
pub fn random_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    let mut hex = String::with_capacity(64);
    for byte in bytes {
        hex.push_str(&format!("{byte:02x}"));
    }
    Ok(hex)
}

/// Compares two secrets without returning early at the first difference, so the time taken
/// reveals nothing about how much of a guess was right.
pub fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// The value of cookie `name` from the request's `Cookie` headers.
pub fn read_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_string())
}

/// A `Set-Cookie` value for an admin cookie: unreadable by scripts, never sent from another
/// site, and only sent to `/admin`. Not `Secure`: the appliance serves plain HTTP on the
/// kiosk's local network, where a `Secure` cookie would never come back.
pub fn admin_cookie(name: &str, value: &str) -> String {
    format!("{name}={value}; Path=/admin; HttpOnly; SameSite=Strict")
}

/// A `Set-Cookie` value that deletes an admin cookie.
pub fn expired_admin_cookie(name: &str) -> String {
    format!("{name}=; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn tokens_are_long_and_different() {
        let (a, b) = (random_token().unwrap(), random_token().unwrap());
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn secret_comparison_is_exact() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
        assert!(!same_secret("", "a"));
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_static("a=1; seed_session=xyz"));
        headers.append(COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(
            read_cookie(&headers, "seed_session").as_deref(),
            Some("xyz")
        );
        assert_eq!(read_cookie(&headers, "b").as_deref(), Some("2"));
        assert_eq!(read_cookie(&headers, "seed"), None);
    }
}
