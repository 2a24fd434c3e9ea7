//! Update bundles on the host: `image/test-keys.sh` and
//! `image/make-bundle.sh` with Debian's `rauc` 1.8, checked the way the
//! gateway checks a download before installing it (`rauc info --keyring`),
//! and the ways a bundle must be refused: signed under another CA, a
//! changed signature, a changed payload.
//!
//! A verity bundle's payload is protected by a hash tree whose root is in
//! the signed manifest; `rauc info` checks only the signature and the
//! manifest, so payload damage shows at `rauc extract` (checked here, in
//! user space, on this host without device-mapper) or `rauc install`
//! (device-mapper verity, in the QEMU guest). A small stand-in root
//! filesystem keeps these tests to seconds; the image's own is bundled in
//! tests/qemu_ota.rs.

use std::path::Path;

use seed_e2e::rauc::{
    ext4_read, extract, flip_byte, info, make_bundle, manifest_of, signature_range, small_rootfs,
    TestKeys, QEMU_COMPATIBLE,
};

/// Keys, a stand-in rootfs at version 1.0.0 and a bundle of it at `version`.
fn signed_bundle(dir: &Path, version: &str) -> (TestKeys, std::path::PathBuf) {
    let keys = TestKeys::generate(&dir.join("keys"));
    let rootfs = small_rootfs(&dir.join("rootfs.ext4"), "1.0.0");
    let bundle = make_bundle(
        &keys,
        QEMU_COMPATIBLE,
        version,
        Some(&rootfs),
        &dir.join("update.raucb"),
    );
    (keys, bundle)
}

#[test]
fn a_bundle_signed_under_the_keyring_is_accepted_and_carries_its_version_inside() {
    let dir = tempfile::tempdir().unwrap();
    let (keys, bundle) = signed_bundle(dir.path(), "2.0.0");

    let checked = info(&keys.ca_cert, &bundle);
    assert!(
        checked.success,
        "rauc info refused a good bundle:\n{}",
        checked.stderr
    );
    assert_eq!(
        manifest_of(&checked),
        (QEMU_COMPATIBLE.to_string(), "2.0.0".to_string())
    );
    assert!(
        checked.stderr.contains("NOT FOR PRODUCTION"),
        "the test signer does not say it is a test key:\n{}",
        checked.stderr
    );

    // The version the manifest announces is the version the box will run:
    // it is stamped into the bundled root filesystem's os-release, and
    // the payload passes the verity check.
    let extracted = dir.path().join("extracted");
    let unpacked = extract(&keys.ca_cert, &bundle, &extracted);
    assert!(
        unpacked.success,
        "rauc extract failed:\n{}",
        unpacked.stderr
    );
    let os_release = ext4_read(&extracted.join("rootfs.ext4"), "/etc/os-release");
    assert!(
        os_release.lines().any(|l| l == "VERSION_ID=2.0.0"),
        "bundled os-release not stamped:\n{os_release}"
    );
    assert!(
        os_release.contains("NAME=\"Seed gateway\""),
        "bundled os-release lost its other lines:\n{os_release}"
    );
    // The source image is left as it was.
    let original = ext4_read(&dir.path().join("rootfs.ext4"), "/etc/os-release");
    assert!(
        original.lines().any(|l| l == "VERSION_ID=1.0.0"),
        "make-bundle.sh changed its input:\n{original}"
    );
}

#[test]
fn a_bundle_signed_under_another_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_, foreign_bundle) = signed_bundle(dir.path(), "2.0.0");
    let ours = TestKeys::generate(&dir.path().join("our-keys"));

    let checked = info(&ours.ca_cert, &foreign_bundle);
    assert!(!checked.success, "a foreign bundle was accepted");
    assert!(
        checked.stderr.contains(
            "signature verification failed: Verify error: unable to get local issuer certificate"
        ),
        "unexpected refusal reason:\n{}",
        checked.stderr
    );
}

#[test]
fn a_bundle_with_a_changed_signature_byte_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (keys, bundle) = signed_bundle(dir.path(), "2.0.0");

    // Inside the signer's RSA signature value, the end of the CMS blob.
    let (start, length) = signature_range(&bundle);
    flip_byte(&bundle, start + length - 16);

    let checked = info(&keys.ca_cert, &bundle);
    assert!(
        !checked.success,
        "a bundle with a changed signature was accepted"
    );
    // OpenSSL names the RSA failure ("bad signature", or "invalid padding",
    // depending on which byte changed).
    assert!(
        checked
            .stderr
            .contains("signature verification failed: error:")
            && checked.stderr.contains(":rsa routines::"),
        "unexpected refusal reason:\n{}",
        checked.stderr
    );
}

#[test]
fn a_bundle_with_a_changed_payload_byte_is_refused_by_extract() {
    let dir = tempfile::tempdir().unwrap();
    let (keys, bundle) = signed_bundle(dir.path(), "2.0.0");

    // Well inside the squashfs payload (the first 64 KiB hold its
    // superblock and tables; the stand-in rootfs makes it > 1 MiB).
    let (signature_start, _) = signature_range(&bundle);
    assert!(signature_start > 1024 * 1024, "payload unexpectedly small");
    flip_byte(&bundle, 512 * 1024);

    // rauc info checks the signature over the manifest only (documented
    // RAUC behaviour for verity bundles): it still accepts this one.
    let checked = info(&keys.ca_cert, &bundle);
    assert!(
        checked.success,
        "rauc info now catches payload damage (update this test and docs/ota.md):\n{}",
        checked.stderr
    );

    let unpacked = extract(&keys.ca_cert, &bundle, &dir.path().join("extracted"));
    assert!(
        !unpacked.success,
        "a bundle with a changed payload was extracted"
    );
    assert!(
        unpacked
            .stderr
            .contains("Failed to extract bundle: bundle payload is corrupted"),
        "unexpected refusal reason:\n{}",
        unpacked.stderr
    );
    assert!(
        unpacked.stderr.contains("Verification failed at position"),
        "the verity check did not say where:\n{}",
        unpacked.stderr
    );
}
