//! Is the system we just updated to healthy? Judged only after an update,
//! against what worked before it.
//!
//! "Radio links up as configured" is read as "every link that was up
//! before the update is up again": the default configuration names both an
//! RNode and a concentrator HAT, and a box that has only one of them must
//! still be able to update. Likewise the broker must be reached again only
//! if it was reached before; a gateway that had no uplink (or had it down)
//! is honestly uplink-less and that is not the update's fault. The store
//! must accept a write: without it nothing can be acknowledged.

use super::note::UpdateNote;

/// What the running system shows right now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthFacts {
    pub store_writable: bool,
    /// Names of the radio links that are up.
    pub links_up: Vec<String>,
    /// Whether an `[mqtt]` section exists, and whether its broker is connected.
    pub uplink_configured: bool,
    pub uplink_connected: bool,
}

/// What is still wrong, as sentences; empty means healthy.
pub fn problems(note: &UpdateNote, facts: &HealthFacts) -> Vec<String> {
    let mut problems = Vec::new();
    if !facts.store_writable {
        problems.push("the store cannot be written".to_string());
    }
    for link in &note.links_up {
        if !facts.links_up.contains(link) {
            problems.push(format!(
                "radio link {link} (up before the update) is not up"
            ));
        }
    }
    if note.uplink_connected && facts.uplink_configured && !facts.uplink_connected {
        problems.push("the MQTT broker (reached before the update) has not been reached".into());
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ota::command::UpdateCommand;
    use crate::ota::note::Phase;

    fn note(links: &[&str], uplink: bool) -> UpdateNote {
        UpdateNote {
            command: UpdateCommand {
                id: "r".into(),
                url: "http://h/b".into(),
                version: "2".into(),
                sha256: "0".repeat(64),
                allow_downgrade: false,
            },
            phase: Phase::Rebooting,
            from_version: "1".into(),
            from_slot: None,
            target_slot: None,
            links_up: links.iter().map(|l| l.to_string()).collect(),
            uplink_connected: uplink,
            failed_health_checks: 0,
            reboot_asked: None,
        }
    }

    fn facts(links: &[&str], configured: bool, connected: bool) -> HealthFacts {
        HealthFacts {
            store_writable: true,
            links_up: links.iter().map(|l| l.to_string()).collect(),
            uplink_configured: configured,
            uplink_connected: connected,
        }
    }

    #[test]
    fn what_worked_before_must_work_again() {
        let n = note(&["rnode0"], true);
        assert!(problems(&n, &facts(&["rnode0"], true, true)).is_empty());
        let p = problems(&n, &facts(&[], true, false));
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("rnode0"));
        assert!(p[1].contains("broker"));
    }

    #[test]
    fn what_was_absent_before_is_not_required() {
        // Only an RNode worked before; the SX1302 HAT named in the config was
        // never there, and there was no broker.
        let n = note(&["rnode0"], false);
        assert!(problems(&n, &facts(&["rnode0"], true, false)).is_empty());
        // The uplink was configured away meanwhile: honestly absent.
        let n = note(&[], true);
        assert!(problems(&n, &facts(&[], false, false)).is_empty());
    }

    #[test]
    fn an_unwritable_store_is_never_healthy() {
        let n = note(&[], false);
        let f = HealthFacts {
            store_writable: false,
            ..HealthFacts::default()
        };
        assert_eq!(
            problems(&n, &f),
            vec!["the store cannot be written".to_string()]
        );
    }
}
