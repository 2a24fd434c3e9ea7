//! Comparing release versions, to refuse a downgrade.
//!
//! Versions are dotted numbers with an optional pre-release after `-`
//! (`1.4.2`, `2.0.0-rc.1`), as `VERSION_ID` in `/etc/os-release` and a RAUC
//! manifest's `version` carry them. Numeric parts compare as numbers
//! (`1.10 > 1.9`), other parts as text; a missing part counts as 0; a
//! release is newer than its own pre-releases. Build metadata after `+` is
//! ignored, as semantic versioning says.

use std::cmp::Ordering;

/// Orders two version strings.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (a_core, a_pre) = split(a);
    let (b_core, b_pre) = split(b);
    let by_core = compare_dotted(a_core, b_core);
    if by_core != Ordering::Equal {
        return by_core;
    }
    match (a_pre, b_pre) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => compare_dotted(x, y),
    }
}

fn split(version: &str) -> (&str, Option<&str>) {
    let version = version.trim();
    let version = version.split_once('+').map_or(version, |(v, _)| v);
    match version.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (version, None),
    }
}

fn compare_dotted(a: &str, b: &str) -> Ordering {
    let mut a_parts = a.split('.');
    let mut b_parts = b.split('.');
    loop {
        match (a_parts.next(), b_parts.next()) {
            (None, None) => return Ordering::Equal,
            (x, y) => {
                let order = compare_part(x.unwrap_or("0"), y.unwrap_or("0"));
                if order != Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

fn compare_part(a: &str, b: &str) -> Ordering {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        // Semantic versioning: numeric identifiers sort before text ones.
        (Ok(_), Err(_)) => Ordering::Less,
        (Err(_), Ok(_)) => Ordering::Greater,
        (Err(_), Err(_)) => a.cmp(b),
    }
}

#[cfg(test)]
mod tests {
    use super::compare;
    use std::cmp::Ordering::{Equal, Greater, Less};

    #[test]
    fn numeric_parts_compare_as_numbers() {
        assert_eq!(compare("1.10.0", "1.9.9"), Greater);
        assert_eq!(compare("2.0", "2.0.0"), Equal);
        assert_eq!(compare("0.1.0", "0.2.0"), Less);
    }

    #[test]
    fn a_release_is_newer_than_its_pre_releases() {
        assert_eq!(compare("2.0.0", "2.0.0-rc.1"), Greater);
        assert_eq!(compare("2.0.0-rc.2", "2.0.0-rc.10"), Less);
        assert_eq!(compare("2.0.0-alpha", "2.0.0-beta"), Less);
        assert_eq!(compare("1.9.0", "2.0.0-rc.1"), Less);
    }

    #[test]
    fn build_metadata_is_ignored() {
        assert_eq!(compare("1.2.3+git.abc", "1.2.3"), Equal);
    }
}
