//! RAUC update bundles made and checked on the host, with the repository's
//! scripts and Debian's `rauc` (1.8): what the A/B update tests build and
//! tamper with.
//!
//! - [`TestKeys`]: a test CA and signing key from `image/test-keys.sh` (a
//!   fresh pair, or the one the QEMU image's keyring was made from).
//! - [`make_bundle`] runs `image/make-bundle.sh`, which stamps the version
//!   into a copy of the root filesystem and signs a verity bundle.
//! - [`info`] and [`extract`] run `rauc info` / `rauc extract` against a
//!   keyring and return what RAUC said, success or not: a test asserts the
//!   reason of a refusal, not only that there was one.
//! - [`ext4_read`] / [`ext4_replace`] read and change files inside an ext4
//!   image with `debugfs`, without mounting it (no root or loop devices
//!   needed); [`small_rootfs`] makes a small stand-in root filesystem.
//! - [`flip_byte`] and [`signature_range`] damage a bundle on purpose.
//! - [`pretend_system`]: the system.conf and os-release of a pretend system,
//!   for the gateway's OTA agent on the host.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::qemu::{image_dir, repo_root, Arch};

/// The `[system] compatible=` of the x86_64 QEMU test image (each
/// architecture's: [`Arch::compatible`]).
pub const QEMU_COMPATIBLE: &str = Arch::X86_64.compatible();

/// A test CA and a signing certificate it issued (`image/test-keys.sh`).
#[derive(Debug, Clone)]
pub struct TestKeys {
    pub ca_cert: PathBuf,
    pub signing_cert: PathBuf,
    pub signing_key: PathBuf,
}

impl TestKeys {
    fn in_dir(dir: &Path) -> TestKeys {
        TestKeys {
            ca_cert: dir.join("test-ca.cert.pem"),
            signing_cert: dir.join("test-signing.cert.pem"),
            signing_key: dir.join("test-signing.key.pem"),
        }
    }

    /// A new, unrelated CA and signing key in `dir`.
    pub fn generate(dir: &Path) -> TestKeys {
        let output = Command::new("bash")
            .arg(repo_root().join("image/test-keys.sh"))
            .arg(dir)
            .output()
            .expect("run image/test-keys.sh");
        assert!(
            output.status.success(),
            "image/test-keys.sh failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        TestKeys::in_dir(dir)
    }

    /// The keys whose CA `image/build.sh` baked into the keyring of `arch`'s
    /// QEMU image (made by the build; call [`crate::qemu::ensure_image`]
    /// first).
    pub fn of_test_image(arch: Arch) -> TestKeys {
        let keys = TestKeys::in_dir(&image_dir(arch).join("test-keys"));
        assert!(
            keys.signing_key.exists(),
            "no {}: the test image was built with SEED_RAUC_KEYRING, whose key the tests do not have",
            keys.signing_key.display()
        );
        keys
    }
}

/// What a command printed and whether it succeeded.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    fn of(output: std::process::Output) -> Outcome {
        Outcome {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// `image/make-bundle.sh`: a signed verity bundle of `rootfs` (the image's
/// `rootfs.ext4` when `None`) at `out`, its manifest and its root
/// filesystem's `/etc/os-release` saying `version`. Panics with the
/// script's output when it fails.
pub fn make_bundle(
    keys: &TestKeys,
    compatible: &str,
    version: &str,
    rootfs: Option<&Path>,
    out: &Path,
) -> PathBuf {
    let mut command = Command::new("bash");
    command
        .arg(repo_root().join("image/make-bundle.sh"))
        .arg("--cert")
        .arg(&keys.signing_cert)
        .arg("--key")
        .arg(&keys.signing_key)
        .arg("--compatible")
        .arg(compatible)
        .arg("--version")
        .arg(version);
    if let Some(rootfs) = rootfs {
        command.arg("--rootfs").arg(rootfs);
    }
    let outcome = Outcome::of(command.arg(out).output().expect("run image/make-bundle.sh"));
    assert!(
        outcome.success,
        "image/make-bundle.sh failed:\n{}{}",
        outcome.stdout, outcome.stderr
    );
    out.to_path_buf()
}

/// `rauc info --keyring KEYRING --output-format=json BUNDLE`.
pub fn info(keyring: &Path, bundle: &Path) -> Outcome {
    Outcome::of(
        Command::new("rauc")
            .arg("info")
            .arg("--keyring")
            .arg(keyring)
            .arg("--output-format=json")
            .arg(bundle)
            .output()
            .expect("run rauc (Debian: rauc)"),
    )
}

/// `rauc extract --keyring KEYRING BUNDLE DIR`: checks the signature and,
/// for a verity bundle, every payload block against the signed hash tree
/// (in user space; installing checks the same through device-mapper).
pub fn extract(keyring: &Path, bundle: &Path, dir: &Path) -> Outcome {
    Outcome::of(
        Command::new("rauc")
            .arg("extract")
            .arg("--keyring")
            .arg(keyring)
            .arg(bundle)
            .arg(dir)
            .output()
            .expect("run rauc (Debian: rauc)"),
    )
}

/// The manifest `rauc info --output-format=json` printed: (compatible,
/// version).
pub fn manifest_of(info: &Outcome) -> (String, String) {
    let json: serde_json::Value = serde_json::from_str(info.stdout.trim())
        .unwrap_or_else(|e| panic!("rauc info printed no JSON ({e}): {}", info.stdout));
    let field = |name: &str| {
        json[name]
            .as_str()
            .unwrap_or_else(|| panic!("no {name} in rauc info's JSON: {json}"))
            .to_string()
    };
    (field("compatible"), field("version"))
}

/// A file inside an ext4 image (`debugfs -R "cat PATH"`).
pub fn ext4_read(image: &Path, path: &str) -> String {
    let output = Command::new("debugfs")
        .arg("-R")
        .arg(format!("cat {path}"))
        .arg(image)
        .output()
        .expect("run debugfs (Debian: e2fsprogs)");
    assert!(output.status.success(), "debugfs cat {path} failed");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Replaces (or creates) `path` inside an ext4 image with `contents`, mode
/// `mode`, owned by root. The parent directory must exist.
pub fn ext4_replace(image: &Path, path: &str, contents: &[u8], mode: u32) {
    let staging = tempfile::NamedTempFile::new().expect("temp file for debugfs");
    std::fs::write(staging.path(), contents).expect("write the new file's contents");
    let script = format!(
        "rm {path}\nwrite {} {path}\nsif {path} mode 0{:o}\nsif {path} uid 0\nsif {path} gid 0\n",
        staging.path().display(),
        0o100000 | mode
    );
    let mut child = Command::new("debugfs")
        .args(["-w", "-f", "-"])
        .arg(image)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run debugfs (Debian: e2fsprogs)");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(script.as_bytes())
        .expect("write the debugfs script");
    let output = child.wait_with_output().expect("wait for debugfs");
    assert!(output.status.success(), "debugfs failed");
    assert_eq!(
        ext4_read(image, path).as_bytes(),
        contents,
        "{path} in {} was not replaced: {}",
        image.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A small ext4 root filesystem that stands in for the image's in host-only
/// tests: `/etc/os-release` (VERSION_ID=`version`) and `/usr/bin/marker`.
pub fn small_rootfs(path: &Path, version: &str) -> PathBuf {
    let staging = tempfile::tempdir().expect("temp dir for the rootfs contents");
    let etc = staging.path().join("etc");
    std::fs::create_dir_all(&etc).expect("mkdir etc");
    std::fs::create_dir_all(staging.path().join("usr/bin")).expect("mkdir usr/bin");
    std::fs::write(
        etc.join("os-release"),
        format!(
            "NAME=\"Seed gateway\"\nID=seed-gateway\nVERSION=\"{version}\"\nVERSION_ID={version}\nPRETTY_NAME=\"Seed gateway {version}\"\n"
        ),
    )
    .expect("write os-release");
    // Incompressible bytes, so the payload spans many verity blocks.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let noise: Vec<u8> = (0..2 * 1024 * 1024)
        .map(|_| {
            // xorshift64: cheap bytes no compressor shrinks.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    std::fs::write(staging.path().join("usr/bin/marker"), noise).expect("write marker");
    crate::qemu::ext4_image_of(staging.path(), path, "rootfs", "16M");
    path.to_path_buf()
}

/// Changes the byte at `offset` in `path` (flips its lowest bit): the
/// smallest damage a download or a forger could do.
pub fn flip_byte(path: &Path, offset: u64) {
    let mut bytes = std::fs::read(path).expect("read the file to damage");
    let index = usize::try_from(offset).expect("offset fits in memory");
    bytes[index] ^= 0x01;
    std::fs::write(path, bytes).expect("write the damaged file");
}

/// Where a bundle's signature is: RAUC appends the CMS signature after the
/// payload, then its size as a big-endian u64. Returns (offset, length).
/// The signer's signature value is the last element of the CMS structure,
/// so a byte a little before `offset + length` lies inside it.
pub fn signature_range(bundle: &Path) -> (u64, u64) {
    let bytes = std::fs::read(bundle).expect("read the bundle");
    let size_field: [u8; 8] = bytes[bytes.len() - 8..]
        .try_into()
        .expect("8 bytes at the end");
    let length = u64::from_be_bytes(size_field);
    let end = bytes.len() as u64 - 8;
    assert!(
        length > 0 && length < end,
        "no signature size at the end of {}",
        bundle.display()
    );
    (end - length, length)
}

/// A pretend system for the gateway's OTA agent on the host: RAUC's
/// system.conf with `compatible`, and an os-release with
/// `VERSION_ID=version`. Returns (system.conf, os-release).
pub fn pretend_system(dir: &Path, compatible: &str, version: &str) -> (PathBuf, PathBuf) {
    let conf = dir.join("system.conf");
    std::fs::write(
        &conf,
        format!("[system]\ncompatible={compatible}\nbootloader=custom\n"),
    )
    .expect("system.conf written");
    let release = dir.join("os-release");
    std::fs::write(
        &release,
        format!("NAME=\"Seed gateway\"\nVERSION_ID={version}\n"),
    )
    .expect("os-release written");
    (conf, release)
}

/// The `[ota]` section of a host test gateway for a [`pretend_system`]:
/// Debian's `rauc`, the given keyring, and a reboot that never happens.
pub fn ota_section(system_conf: &Path, os_release: &Path, keyring: &Path) -> String {
    format!(
        "[ota]\nrauc = \"rauc\"\nsystem_conf = {system_conf:?}\nkeyring = {keyring:?}\nrelease_file = {os_release:?}\nreboot_command = [\"false\"]\n"
    )
}
