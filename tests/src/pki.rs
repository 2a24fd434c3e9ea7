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
}

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
        };
        let ca_key = path("ca.key");
        openssl(&[
            "req",
            "-x509",
            "-new",
            "-nodes",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-keyout",
            s(&ca_key),
            "-out",
            s(&pki.ca_cert),
            "-days",
            "2",
            "-subj",
            &format!("/CN=seed test CA {name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        let leaf = |cert: &Path, key: &Path, cn: &str, ext: &str| {
            let csr = cert.with_extension("csr");
            let ext_file = cert.with_extension("ext");
            std::fs::write(&ext_file, ext).expect("write extension file");
            openssl(&[
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
                s(&csr),
                "-subj",
                &format!("/CN={cn}"),
            ]);
            openssl(&[
                "x509",
                "-req",
                "-in",
                s(&csr),
                "-CA",
                s(&pki.ca_cert),
                "-CAkey",
                s(&ca_key),
                "-set_serial",
                &format!("{}", rand_serial()),
                "-days",
                "2",
                "-out",
                s(cert),
                "-extfile",
                s(&ext_file),
            ]);
        };
        leaf(
            &pki.server_cert,
            &pki.server_key,
            "localhost",
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
        );
        leaf(
            &pki.client_cert,
            &pki.client_key,
            "seed-gateway-test",
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=clientAuth\n",
        );
        pki
    }
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
