//! The Buildroot tree's own promises, checked without Buildroot: the
//! seed-gateway package fetches the tarball `make-tarball.sh` makes, and its
//! `.hash` pins that file; the docs name the Buildroot the tree is checked
//! against. The check against a real Buildroot is
//! `buildroot/check-against-buildroot.sh` (docs/image.md), not run here.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo().join(relative))
        .unwrap_or_else(|e| panic!("{relative} is readable: {e}"))
}

/// The value of `NAME = value` in a Buildroot `.mk` file, if assigned;
/// continuation lines (ending in `\`) joined with spaces.
fn mk_variable(mk: &str, name: &str) -> Option<String> {
    let joined = mk.replace("\\\n", " ");
    joined.lines().find_map(|line| {
        let (lhs, rhs) = line.split_once('=')?;
        (lhs.trim() == name).then(|| rhs.split_whitespace().collect::<Vec<_>>().join(" "))
    })
}

/// The value of `NAME=value` in a shell script, if assigned.
fn shell_variable(script: &str, name: &str) -> Option<String> {
    script
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name}=")))
        .map(str::to_string)
}

#[test]
fn seed_gateway_package_fetches_the_tarball_make_tarball_makes() {
    let mk = read("buildroot/package/seed-gateway/seed-gateway.mk");
    let version =
        mk_variable(&mk, "SEED_GATEWAY_VERSION").expect("the .mk sets SEED_GATEWAY_VERSION");
    // Left unset, Buildroot's cargo infrastructure makes the name up as
    // seed-gateway-VERSION-cargoN.tar.gz, with N changing between releases.
    let source = mk_variable(&mk, "SEED_GATEWAY_SOURCE")
        .expect("the .mk sets SEED_GATEWAY_SOURCE (the cargo infrastructure's default name is not the tarball's)")
        .replace("$(SEED_GATEWAY_VERSION)", &version);

    let output = Command::new("bash")
        .arg(repo().join("buildroot/package/seed-gateway/make-tarball.sh"))
        .arg("--print-name")
        .output()
        .expect("bash runs make-tarball.sh");
    assert!(
        output.status.success(),
        "make-tarball.sh --print-name failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let made = String::from_utf8(output.stdout).expect("the name is UTF-8");
    assert_eq!(
        source,
        made.trim(),
        "SEED_GATEWAY_SOURCE must name the tarball make-tarball.sh makes"
    );

    let hash = read("buildroot/package/seed-gateway/seed-gateway.hash");
    let hashed: Vec<&str> = hash
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(
            |line| match line.split_whitespace().collect::<Vec<_>>()[..] {
                ["sha256", digest, file] if digest.len() == 64 => Some(file),
                _ => None,
            },
        )
        .collect();
    assert_eq!(
        hashed,
        [source.as_str()],
        "seed-gateway.hash must pin exactly the tarball Buildroot fetches \
         (BR2_DOWNLOAD_FORCE_CHECK_HASHES is on in every defconfig)"
    );
}

#[test]
fn every_defconfig_forces_hash_checks() {
    let configs =
        std::fs::read_dir(repo().join("buildroot/configs")).expect("buildroot/configs is readable");
    let mut checked = 0;
    for entry in configs {
        let path = entry.expect("a directory entry").path();
        let defconfig = std::fs::read_to_string(&path).expect("a defconfig is readable");
        assert!(
            defconfig.lines().any(|l| l == "BR2_DOWNLOAD_FORCE_CHECK_HASHES=y"),
            "{} must set BR2_DOWNLOAD_FORCE_CHECK_HASHES=y: the .hash files are what pins our tarball",
            path.display()
        );
        checked += 1;
    }
    assert!(
        checked >= 3,
        "expected the three board defconfigs, found {checked}"
    );
}

#[test]
fn docs_name_the_buildroot_the_check_is_pinned_to() {
    let script = read("buildroot/check-against-buildroot.sh");
    let version = shell_variable(&script, "PINNED_BUILDROOT_VERSION")
        .expect("the check script pins a version");
    let commit =
        shell_variable(&script, "PINNED_BUILDROOT_COMMIT").expect("the check script pins a commit");
    assert_eq!(
        commit.len(),
        40,
        "the pinned commit is a full git hash: {commit}"
    );
    let tag_is_a_release = version
        .split('.')
        .map(|part| part.parse::<u32>().is_ok())
        .collect::<Vec<_>>();
    assert!(
        tag_is_a_release.len() >= 2 && tag_is_a_release.iter().all(|ok| *ok),
        "the pinned Buildroot is a release tag such as 2026.05.1, not {version}"
    );
    let doc = read("docs/image.md");
    assert!(
        doc.contains(&version) && doc.contains(&commit),
        "docs/image.md must name the pinned Buildroot {version} ({commit})"
    );
}

/// Buildroot's cargo infrastructure overrides the release profile's LTO,
/// codegen units and opt-level from the environment; the package puts ours
/// back, and they must be the workspace's, or the appliance gets a binary
/// nobody measured.
#[test]
fn buildroot_builds_the_gateway_with_the_workspace_release_profile() {
    let cargo_toml = read("Cargo.toml");
    let release: Vec<(String, String)> = cargo_toml
        .lines()
        .skip_while(|line| line.trim() != "[profile.release]")
        .skip(1)
        .take_while(|line| !line.starts_with('['))
        .filter_map(|line| {
            let (key, value) = line.split_once('=')?;
            Some((
                key.trim().to_string(),
                value.trim().trim_matches('"').to_string(),
            ))
        })
        .collect();
    let mk = read("buildroot/package/seed-gateway/seed-gateway.mk");
    let env =
        mk_variable(&mk, "SEED_GATEWAY_CARGO_ENV").expect("the .mk sets SEED_GATEWAY_CARGO_ENV");
    for (key, variable) in [
        ("lto", "CARGO_PROFILE_RELEASE_LTO"),
        ("codegen-units", "CARGO_PROFILE_RELEASE_CODEGEN_UNITS"),
        ("opt-level", "CARGO_PROFILE_RELEASE_OPT_LEVEL"),
    ] {
        let ours = release
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("[profile.release] in Cargo.toml sets {key}"));
        let expected = format!("{variable}={ours}");
        assert!(
            env.split_whitespace()
                .any(|assignment| assignment == expected),
            "SEED_GATEWAY_CARGO_ENV must set {expected} (it says: {env})"
        );
    }
}
