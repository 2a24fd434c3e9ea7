//! The agent's note on `/data`: the update in progress, where it got to.
//!
//! The note is what makes an update survive a restart, a power cut and the
//! reboot into the new system. It is written (atomically: temporary file,
//! fsync, rename, fsync of the directory) before each step it describes, so
//! after any interruption the agent knows what to do next: continue the
//! download, check the bundle and install again, or, after the reboot,
//! check the new system's health — or notice that the bootloader went back
//! to the old slot and report the rollback.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::command::UpdateCommand;

/// How far an update got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Accepted (the command is acknowledged): downloading and checking.
    Accepted,
    /// `rauc install` was started; if we find this after a restart, the
    /// install was interrupted and is done again.
    Installing,
    /// Installed; the gateway is rebooting (or has rebooted) into it.
    Rebooting,
}

/// The update in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateNote {
    pub command: UpdateCommand,
    pub phase: Phase,
    /// The version that was running when the update was accepted.
    pub from_version: String,
    /// Bootname of the slot that was running, and of the slot installed into.
    #[serde(default)]
    pub from_slot: Option<String>,
    #[serde(default)]
    pub target_slot: Option<String>,
    /// Radio links that were up before the reboot: the new system must
    /// bring them up again to be called healthy.
    #[serde(default)]
    pub links_up: Vec<String>,
    /// Whether the MQTT broker was reached before the reboot.
    #[serde(default)]
    pub uplink_connected: bool,
    /// Boots of the new system that failed their health check so far.
    #[serde(default)]
    pub failed_health_checks: u32,
    /// The boot in which the reboot was last asked for. A verdict on the
    /// note (healthy, rolled back) is due only in a later boot: the daemon
    /// can start again before the system goes down, and it must not read
    /// "still on the old slot" as a rollback.
    #[serde(default)]
    pub reboot_asked: Option<RebootAsked>,
}

/// A reboot asked for in one boot of the system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebootAsked {
    /// The kernel's boot id (see [`this_boot`]).
    pub boot: String,
    /// How often in that boot.
    pub times: u32,
}

/// What a gateway that finds a `Rebooting` note at start is to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterRestart {
    /// Still the boot that asked for the reboot: the system has not gone
    /// down (yet). Nothing to judge; the reboot is still owed.
    RebootPending,
    /// Booted from another slot than the update went into (`target`): the
    /// bootloader gave up on it.
    RolledBack { target: String, booted: String },
    /// On the new slot (or the slot cannot be told): judge its health.
    CheckHealth,
}

impl UpdateNote {
    /// Reads the note against the boot we run in (`None`: unknown) and the
    /// slot RAUC says we booted from (`None`: RAUC could not tell).
    pub fn after_restart(&self, this_boot: Option<&str>, booted: Option<&str>) -> AfterRestart {
        let asked_in = self.reboot_asked.as_ref().map(|asked| asked.boot.as_str());
        if this_boot.is_some() && asked_in == this_boot {
            return AfterRestart::RebootPending;
        }
        match (booted, &self.target_slot) {
            (Some(booted), Some(target)) if booted != target => AfterRestart::RolledBack {
                target: target.clone(),
                booted: booted.to_string(),
            },
            _ => AfterRestart::CheckHealth,
        }
    }

    /// Records that the reboot is asked for (again) in `this_boot`; returns
    /// how often in this boot, this time included.
    pub fn ask_reboot(&mut self, this_boot: Option<String>) -> u32 {
        let times = match (&self.reboot_asked, &this_boot) {
            (Some(asked), Some(boot)) if &asked.boot == boot => asked.times + 1,
            _ => 1,
        };
        self.reboot_asked = this_boot.map(|boot| RebootAsked { boot, times });
        times
    }
}

/// The kernel's id of the running boot (`/proc/sys/kernel/random/boot_id`),
/// new at every boot; `None` where there is none to read.
pub fn this_boot() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|id| id.trim().to_string())
        .filter(|id| !id.is_empty())
}

/// Where the note lives.
#[derive(Debug, Clone)]
pub struct NoteFile {
    path: PathBuf,
}

impl NoteFile {
    pub fn new(dir: &Path) -> NoteFile {
        NoteFile {
            path: dir.join("update.json"),
        }
    }

    /// The note, if an update is in progress. A note we cannot read is
    /// reported and treated as none: a stuck note must never stop updates.
    pub fn load(&self) -> Result<Option<UpdateNote>, String> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                format!(
                    "{} is damaged ({e}); the update it described is abandoned",
                    self.path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read {}: {e}", self.path.display())),
        }
    }

    pub fn save(&self, note: &UpdateNote) -> Result<(), String> {
        let text = serde_json::to_vec_pretty(note).map_err(|e| e.to_string())?;
        write_durably(&self.path, &text)
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()))
    }

    pub fn remove(&self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("cannot remove {}: {e}", self.path.display());
            }
        }
    }
}

pub(crate) fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note() -> UpdateNote {
        UpdateNote {
            command: UpdateCommand {
                id: "r1".into(),
                url: "http://h/b".into(),
                version: "2.0.0".into(),
                sha256: "0".repeat(64),
                allow_downgrade: false,
            },
            phase: Phase::Rebooting,
            from_version: "1.0.0".into(),
            from_slot: Some("A".into()),
            target_slot: Some("B".into()),
            links_up: vec!["rnode0".into()],
            uplink_connected: true,
            failed_health_checks: 0,
            reboot_asked: None,
        }
    }

    #[test]
    fn a_note_survives_save_and_load_and_can_be_removed() {
        let dir = tempfile::tempdir().unwrap();
        let file = NoteFile::new(&dir.path().join("ota"));
        assert_eq!(file.load().unwrap(), None);
        file.save(&note()).unwrap();
        assert_eq!(file.load().unwrap(), Some(note()));
        file.remove();
        assert_eq!(file.load().unwrap(), None);
    }

    #[test]
    fn a_damaged_note_is_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let file = NoteFile::new(dir.path());
        std::fs::write(dir.path().join("update.json"), b"{half").unwrap();
        assert!(file.load().unwrap_err().contains("damaged"));
    }

    #[test]
    fn only_a_later_boot_judges_the_update() {
        let mut n = note();
        assert_eq!(n.ask_reboot(Some("boot-1".into())), 1);
        // Restarted before the system went down, still on the old slot A.
        assert_eq!(
            n.after_restart(Some("boot-1"), Some("A")),
            AfterRestart::RebootPending
        );
        // A later boot on A: the bootloader went back.
        assert_eq!(
            n.after_restart(Some("boot-2"), Some("A")),
            AfterRestart::RolledBack {
                target: "B".into(),
                booted: "A".into()
            }
        );
        assert_eq!(
            n.after_restart(Some("boot-2"), Some("B")),
            AfterRestart::CheckHealth
        );
        // RAUC cannot tell the slot: the health check says so.
        assert_eq!(
            n.after_restart(Some("boot-2"), None),
            AfterRestart::CheckHealth
        );
    }

    #[test]
    fn reboots_are_counted_per_boot() {
        let mut n = note();
        assert_eq!(n.ask_reboot(Some("boot-1".into())), 1);
        assert_eq!(n.ask_reboot(Some("boot-1".into())), 2);
        assert_eq!(n.ask_reboot(Some("boot-2".into())), 1);
        // Without a boot id, every start counts as a new boot: a note from
        // a system without /proc never waits for a reboot it cannot see.
        assert_eq!(n.ask_reboot(None), 1);
        assert_eq!(
            n.after_restart(None, Some("A")),
            AfterRestart::RolledBack {
                target: "B".into(),
                booted: "A".into()
            }
        );
    }

    #[test]
    fn a_note_from_before_the_boot_id_is_read_as_from_an_earlier_boot() {
        let mut json = serde_json::to_value(note()).unwrap();
        json.as_object_mut().unwrap().remove("reboot_asked");
        let old: UpdateNote = serde_json::from_value(json).unwrap();
        assert_eq!(old.reboot_asked, None);
        assert_eq!(
            old.after_restart(Some("boot-9"), Some("B")),
            AfterRestart::CheckHealth
        );
    }
}
