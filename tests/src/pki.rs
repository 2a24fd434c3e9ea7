//! A throw-away certificate authority for TLS tests, made with the `openssl`
//! command-line tool: a CA, a server certificate for `localhost` and
//! `127.0.0.1`, and a client certificate. EC P-256 keys in PKCS#8 PEM.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The files of one test PKI.
#[derive(Debug, Clone)]
pub struct TestPki {
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    ca_key: PathBuf,
}

/// Extensions of a client certificate.
const CLIENT_EXT: &str = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
                          extendedKeyUsage=clientAuth\n";

impl TestPki {
    /// Generates everything under `dir` (file names start with `name`, so
    /// two PKIs can share a directory). Panics with openssl's output on
    /// failure.
    pub fn generate(dir: &Path, name: &str) -> TestPki {
        let path = |file: &str| dir.join(format!("{name}-{file}"));
        let pki = TestPki {
            ca_cert: path("ca.crt"),
            server_cert: path("server.crt"),
            server_key: path("server.key"),
            client_cert: path("client.crt"),
            client_key: path("client.key"),
            ca_key: path("ca.key"),
        };
        let ca_key = &pki.ca_key;
        new_key_and_request(
            ca_key,
            &pki.ca_cert,
            &format!("seed test CA {name}"),
            &[
                "-x509",
                "-days",
                "2",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        pki.issue(
            &pki.server_cert,
            &pki.server_key,
            "localhost",
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
            "2",
        );
        pki.issue(
            &pki.client_cert,
            &pki.client_key,
            "seed-gateway-test",
            CLIENT_EXT,
            "2",
        );
        pki
    }

    /// A client certificate from this CA that expired yesterday:
    /// `(certificate, key)`, next to the others.
    pub fn expired_client(&self) -> (PathBuf, PathBuf) {
        let cert = self.client_cert.with_file_name(format!(
            "expired-{}",
            self.client_cert
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("client.crt")
        ));
        let key = cert.with_extension("key");
        // Valid from now until a day ago: expired whatever the clock says.
        self.issue(&cert, &key, "seed-gateway-expired", CLIENT_EXT, "-1");
        (cert, key)
    }

    /// A new key and a certificate for it signed by this CA, valid `days`.
    fn issue(&self, cert: &Path, key: &Path, cn: &str, ext: &str, days: &str) {
        let csr = cert.with_extension("csr");
        let ext_file = cert.with_extension("ext");
        std::fs::write(&ext_file, ext).expect("write extension file");
        new_key_and_request(key, &csr, cn, &[]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            s(&csr),
            "-CA",
            s(&self.ca_cert),
            "-CAkey",
            s(&self.ca_key),
            "-set_serial",
            &format!("{}", rand_serial()),
            "-days",
            days,
            "-out",
            s(cert),
            "-extfile",
            s(&ext_file),
        ]);
    }
}

/// `openssl req`: a new EC P-256 key in `key` and, for common name `cn`, a
/// signing request in `out` (a self-signed certificate with `-x509` in
/// `extra`).
fn new_key_and_request(key: &Path, out: &Path, cn: &str, extra: &[&str]) {
    let subject = format!("/CN={cn}");
    let mut args = vec![
        "req",
        "-new",
        "-nodes",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-keyout",
        s(key),
        "-out",
        s(out),
        "-subj",
        &subject,
    ];
    args.extend_from_slice(extra);
    openssl(&args);
}

fn s(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

fn rand_serial() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    nanos | 1
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl (apt-get install -y openssl)");
    assert!(
        out.status.success(),
        "openssl {} failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}
