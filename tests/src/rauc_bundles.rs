//! RAUC bundles for tests, made with Debian's `rauc` and `openssl`: a test
//! CA and signing certificate (the extensions RAUC 1.8 wants, see
//! ../shared/reference.md), a system.conf and os-release describing a
//! pretend system, and verity bundles of a small payload. Every key made
//! here is a throw-away test key.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A CA and a signing certificate issued by it.
#[derive(Debug, Clone)]
pub struct SigningKeys {
    pub ca_cert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

const EXTENSIONS: &str = "[req]\ndistinguished_name=dn\n[dn]\n\
[ca]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n\
[signer]\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n";

impl SigningKeys {
    /// Generates a CA and a signer under `dir`, file names starting with `name`.
    pub fn generate(dir: &Path, name: &str) -> SigningKeys {
        let path = |file: &str| dir.join(format!("{name}-{file}"));
        let config = path("openssl.cnf");
        std::fs::write(&config, EXTENSIONS).expect("openssl config written");
        let keys = SigningKeys {
            ca_cert: path("ca.pem"),
            cert: path("signer.pem"),
            key: path("signer.key"),
        };
        let ca_key = path("ca.key");
        let csr = path("signer.csr");
        let subject =
            |role: &str| format!("/O=Seed gateway TEST ONLY/CN={name} {role} NOT FOR PRODUCTION");
        run(
            "openssl",
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                s(&ca_key),
                "-out",
                s(&keys.ca_cert),
                "-days",
                "3650",
                "-subj",
                &subject("CA"),
                "-config",
                s(&config),
                "-extensions",
                "ca",
            ],
        );
        run(
            "openssl",
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                s(&keys.key),
                "-out",
                s(&csr),
                "-subj",
                &subject("signer"),
                "-config",
                s(&config),
            ],
        );
        run(
            "openssl",
            &[
                "x509",
                "-req",
                "-in",
                s(&csr),
                "-CA",
                s(&keys.ca_cert),
                "-CAkey",
                s(&ca_key),
                "-CAcreateserial",
                "-out",
                s(&keys.cert),
                "-days",
                "3650",
                "-extfile",
                s(&config),
                "-extensions",
                "signer",
            ],
        );
        keys
    }
}

/// Builds a verity bundle of `payload` as image `rootfs.img`, signed by
/// `keys`, at `out`.
pub fn build_bundle(
    out: &Path,
    keys: &SigningKeys,
    compatible: &str,
    version: &str,
    payload: &[u8],
) {
    let content = out.with_extension("content");
    let _ = std::fs::remove_dir_all(&content);
    std::fs::create_dir_all(&content).expect("bundle content dir");
    std::fs::write(content.join("rootfs.img"), payload).expect("payload written");
    std::fs::write(
        content.join("manifest.raucm"),
        format!("[update]\ncompatible={compatible}\nversion={version}\n\n[bundle]\nformat=verity\n\n[image.rootfs]\nfilename=rootfs.img\n"),
    )
    .expect("manifest written");
    let _ = std::fs::remove_file(out);
    run(
        "rauc",
        &[
            "bundle",
            "--cert",
            s(&keys.cert),
            "--key",
            s(&keys.key),
            s(&content),
            s(out),
        ],
    );
}

/// A pretend system for the OTA agent: RAUC system.conf with `compatible`,
/// and an os-release with `VERSION_ID=version`. Returns (system.conf, os-release).
pub fn pretend_system(dir: &Path, compatible: &str, version: &str) -> (PathBuf, PathBuf) {
    let conf = dir.join("system.conf");
    std::fs::write(
        &conf,
        format!("[system]\ncompatible={compatible}\nbootloader=custom\n\n[keyring]\npath=/nonexistent\n"),
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

fn s(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

fn run(program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
