//! The rustls client configuration for `mqtts://` brokers.
//!
//! Built with the ring provider passed explicitly (rumqttc is compiled with
//! `use-rustls-no-provider`, and we do not rely on a process-wide default).
//! The files are read again on every connection attempt, so a technician can
//! fix a certificate without restarting the daemon; a bad file shows up as the
//! uplink's `last_error`, never as a crash.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use super::config::MqttConfig;

/// Builds the TLS client config; the error is a sentence for the status page.
pub fn client_config(config: &MqttConfig) -> Result<Arc<ClientConfig>, String> {
    let roots = match &config.ca_file {
        Some(path) => roots_from_file(path)?,
        None => system_roots().map_err(|e| format!("{e}; set mqtt.ca_file to the broker's CA"))?,
    };
    let builder = builder_with_roots(roots)?;
    let client_config = match (&config.cert_file, &config.key_file) {
        (Some(cert_path), Some(key_path)) => {
            let chain = certs_from_file(cert_path, "cert_file")?;
            let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| {
                format!(
                    "mqtt.key_file {}: no usable private key ({e})",
                    key_path.display()
                )
            })?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                format!(
                    "mqtt.cert_file/key_file {} / {}: {e}",
                    cert_path.display(),
                    key_path.display()
                )
            })?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(client_config))
}

fn certs_from_file(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("mqtt.{key} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "mqtt.{key} {}: no PEM certificate in the file",
            path.display()
        ));
    }
    Ok(certs)
}

fn roots_from_file(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(certs_from_file(path, "ca_file")?);
    if added == 0 {
        return Err(format!(
            "mqtt.ca_file {}: none of its {ignored} certificate(s) is usable as a CA",
            path.display()
        ));
    }
    Ok(roots)
}

/// A client config builder on ring with safe defaults, trusting `roots`.
fn builder_with_roots(
    roots: RootCertStore,
) -> Result<rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_root_certificates(roots))
}

/// The client config for https downloads (update bundles): the system's
/// CA certificates, no client certificate.
pub(crate) fn https_client_config() -> Result<Arc<ClientConfig>, String> {
    Ok(Arc::new(
        builder_with_roots(system_roots()?)?.with_no_client_auth(),
    ))
}

/// The operating system's CA certificates.
fn system_roots() -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        let why = found
            .errors
            .first()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        return Err(format!("no system CA certificates found{why}"));
    }
    Ok(roots)
}
