//! What the agent asks of RAUC and of the running system, through RAUC's
//! command-line interface (`rauc info`, `install`, `status`, `mark-good`)
//! and two files of the root filesystem.
//!
//! The command line rather than RAUC's D-Bus API: it is the interface RAUC
//! documents for scripts, it is what a technician types to check the same
//! thing, and it keeps a D-Bus library out of the gateway. Every failure
//! comes back as RAUC's own sentence (its `rauc-Message:` chatter removed),
//! because that is what explains a refused bundle.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// The RAUC command and the keyring bundles are checked against.
#[derive(Debug, Clone)]
pub struct Rauc {
    pub command: PathBuf,
    pub keyring: PathBuf,
}

/// What a bundle's signed manifest says.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BundleInfo {
    pub compatible: String,
    #[serde(default)]
    pub version: Option<String>,
}

/// One slot as `rauc status` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub name: String,
    pub class: String,
    pub bootname: Option<String>,
    /// `good` or `bad` as the bootloader sees it.
    pub boot_status: Option<String>,
}

/// `rauc status`: which slot is running, and the slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemStatus {
    /// Bootname of the running slot (`A`, `B`).
    pub booted: String,
    pub slots: Vec<Slot>,
}

impl SystemStatus {
    /// The root filesystem slot that is not running: where an update goes.
    pub fn other_rootfs(&self) -> Option<&Slot> {
        self.slots.iter().find(|s| {
            s.class == "rootfs"
                && s.bootname.is_some()
                && s.bootname.as_deref() != Some(&self.booted)
        })
    }
}

impl Rauc {
    /// Checks a bundle's signature against the keyring and reads its
    /// manifest. For a verity bundle this does not read the payload: a
    /// damaged payload is caught by the SHA-256 of the download and by
    /// `install`, which checks every block.
    pub async fn info(&self, bundle: &Path) -> Result<BundleInfo, String> {
        let out = self
            .run(&[
                "info".as_ref(),
                "--keyring".as_ref(),
                self.keyring.as_os_str(),
                "--output-format=json".as_ref(),
                bundle.as_os_str(),
            ])
            .await?;
        serde_json::from_str(&out).map_err(|e| format!("rauc info gave output we cannot read: {e}"))
    }

    /// Installs a bundle into the other slot, calling `progress` with each
    /// percentage RAUC prints.
    pub async fn install(&self, bundle: &Path, mut progress: impl FnMut(u8)) -> Result<(), String> {
        let mut child = Command::new(&self.command)
            .arg("install")
            .arg(bundle)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.command.display()))?;
        let stderr = child.stderr.take();
        let collect_errors = tokio::spawn(async move {
            let mut text = String::new();
            if let Some(stderr) = stderr {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    text.push_str(&line);
                    text.push('\n');
                }
            }
            text
        });
        // RAUC prints why an installation failed on stdout (`LastError: …`)
        // between its progress lines; keep those for the reason.
        let mut said = String::new();
        if let Some(stdout) = child.stdout.take() {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match percent_in(&line) {
                    Some(percent) => progress(percent),
                    None => {
                        said.push_str(&line);
                        said.push('\n');
                    }
                }
            }
        }
        let status = child
            .wait()
            .await
            .map_err(|e| format!("rauc install: {e}"))?;
        let errors = collect_errors.await.unwrap_or_default();
        if status.success() {
            return Ok(());
        }
        // Where RAUC puts the cause differs between its versions (stdout
        // `LastError: …`, or stderr); take every sentence it said.
        let all = format!("{said}{errors}");
        let sentences: Vec<&str> = all
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("rauc-Message:"))
            .map(|l| l.strip_prefix("LastError:").map_or(l, str::trim))
            .collect();
        if sentences.is_empty() {
            Err("rauc install failed".into())
        } else {
            Err(sentences.join("; "))
        }
    }

    /// Which slot is running and what the slots are.
    pub async fn status(&self) -> Result<SystemStatus, String> {
        let out = self
            .run(&["status".as_ref(), "--output-format=json".as_ref()])
            .await?;
        parse_status(&out)
    }

    /// Tells the bootloader the running slot is good: it stays.
    pub async fn mark_good(&self) -> Result<(), String> {
        self.run(&["status".as_ref(), "mark-good".as_ref()])
            .await
            .map(|_| ())
    }

    async fn run(&self, args: &[&std::ffi::OsStr]) -> Result<String, String> {
        let output = Command::new(&self.command)
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| format!("cannot run {}: {e}", self.command.display()))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            let what = format!("rauc {} failed", args[0].to_string_lossy());
            Err(reason(&String::from_utf8_lossy(&output.stderr), &what))
        }
    }
}

/// RAUC's error sentences, without its informational `rauc-Message:` lines.
fn reason(stderr: &str, fallback: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("rauc-Message:"))
        .collect();
    if lines.is_empty() {
        fallback.to_string()
    } else {
        lines.join("; ")
    }
}

/// `rauc install` prints progress as lines like `installing  40% Copying image`.
fn percent_in(line: &str) -> Option<u8> {
    line.split_whitespace()
        .find_map(|word| word.strip_suffix('%')?.parse::<u8>().ok())
        .filter(|p| *p <= 100)
}

fn parse_status(json: &str) -> Result<SystemStatus, String> {
    let value: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| format!("rauc status gave output we cannot read: {e}"))?;
    let booted = value
        .get("booted")
        .and_then(|b| b.as_str())
        .ok_or("rauc status does not say which slot is running")?
        .to_string();
    let mut slots = Vec::new();
    // `slots` is a list of one-entry objects: [{"rootfs.0": {...}}, …].
    for entry in value
        .get("slots")
        .and_then(|s| s.as_array())
        .into_iter()
        .flatten()
    {
        let Some(object) = entry.as_object() else {
            continue;
        };
        for (name, slot) in object {
            let text = |key: &str| slot.get(key).and_then(|v| v.as_str()).map(str::to_string);
            slots.push(Slot {
                name: name.clone(),
                class: text("class").unwrap_or_default(),
                bootname: text("bootname"),
                boot_status: text("boot_status"),
            });
        }
    }
    Ok(SystemStatus { booted, slots })
}

/// `compatible=` of the `[system]` section of RAUC's system.conf.
pub fn system_compatible(system_conf: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(system_conf)
        .map_err(|e| format!("cannot read {}: {e}", system_conf.display()))?;
    let mut in_system = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_system = line == "[system]";
        } else if let (true, Some((key, value))) = (in_system, line.split_once('=')) {
            if key.trim() == "compatible" {
                return Ok(value.trim().to_string());
            }
        }
    }
    Err(format!(
        "{} has no [system] compatible=",
        system_conf.display()
    ))
}

/// `VERSION_ID=` of an os-release file: the running system's version.
pub fn running_version(release_file: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(release_file)
        .map_err(|e| format!("cannot read {}: {e}", release_file.display()))?;
    text.lines()
        .find_map(|l| l.trim().strip_prefix("VERSION_ID="))
        .map(|v| v.trim().trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("{} has no VERSION_ID=", release_file.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_json_of_rauc_1_8_is_read() {
        let json = r#"{"compatible":"seed-gateway-qemu-x86_64","variant":"","booted":"A","boot_primary":"rootfs.0",
            "slots":[{"rootfs.0":{"class":"rootfs","device":"/dev/vda1","type":"ext4","bootname":"A","state":"booted","parent":null,"mountpoint":"/","boot_status":"good","slot_status":{}}},
                     {"rootfs.1":{"class":"rootfs","device":"/dev/vda2","type":"ext4","bootname":"B","state":"inactive","parent":null,"mountpoint":null,"boot_status":"bad","slot_status":{}}}]}"#;
        let status = parse_status(json).unwrap();
        assert_eq!(status.booted, "A");
        let other = status.other_rootfs().unwrap();
        assert_eq!(other.name, "rootfs.1");
        assert_eq!(other.bootname.as_deref(), Some("B"));
        assert_eq!(other.boot_status.as_deref(), Some("bad"));
    }

    #[test]
    fn rauc_chatter_is_dropped_from_reasons() {
        let stderr = "rauc-Message: 21:09:01.358: Reading bundle: /b\nrauc-Message: Verifying\nsignature verification failed: Verify error: unable to get local issuer certificate\n";
        assert_eq!(
            reason(stderr, "x"),
            "signature verification failed: Verify error: unable to get local issuer certificate"
        );
        assert_eq!(
            reason("rauc-Message: only chatter\n", "fallback"),
            "fallback"
        );
    }

    #[test]
    fn install_progress_percentages_are_found() {
        assert_eq!(
            percent_in("installing  40% Copying image to rootfs.1"),
            Some(40)
        );
        assert_eq!(percent_in("100% Installing done."), Some(100));
        assert_eq!(percent_in("Checking bundle"), None);
    }

    #[test]
    fn system_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("system.conf");
        std::fs::write(&conf, "[system]\ncompatible=seed-gateway-rpi4\nbootloader=uboot\n[keyring]\npath=/etc/rauc/keyring.pem\n").unwrap();
        assert_eq!(system_compatible(&conf).unwrap(), "seed-gateway-rpi4");
        let release = dir.path().join("os-release");
        std::fs::write(&release, "NAME=\"Seed gateway\"\nVERSION_ID=\"1.2.0\"\n").unwrap();
        assert_eq!(running_version(&release).unwrap(), "1.2.0");
        std::fs::write(&release, "NAME=x\n").unwrap();
        assert!(running_version(&release)
            .unwrap_err()
            .contains("VERSION_ID"));
    }
}
