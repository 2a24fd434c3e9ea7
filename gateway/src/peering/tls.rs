//! The secure channel between neighbour gateways: TLS 1.3 (rustls, already
//! built for the MQTT uplink) with RFC 7250 *raw public keys*.
//!
//! Each gateway presents its ed25519 identity key itself, as a bare
//! SubjectPublicKeyInfo, and signs the handshake with it. There are no
//! certificates, no CA and no expiry to manage: a gateway accepts exactly
//! the keys listed in its `[[peer]]` entries, so an operator exchanges two
//! gateway ids and nothing else. The dialling side additionally demands
//! the one key configured for the address it dialled, so a machine that
//! answers on that address with another key is refused with a reason that
//! names both keys.
//!
//! Why not Noise (`snow`): it would add a handshake library, an X25519 key
//! derived from the ed25519 identity, and our own record framing; rustls
//! gives mutual authentication with the identity key as it is, plus
//! framing, through crates the gateway already links.

use std::collections::HashMap;
use std::sync::Arc;

use radio_bridge::identity::Identity;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::AlwaysResolvesClientRawPublicKeys;
use rustls::crypto::{
    verify_tls13_signature_with_raw_key, CryptoProvider, WebPkiSupportedAlgorithms,
};
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, SubjectPublicKeyInfoDer,
    UnixTime,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::AlwaysResolvesServerRawPublicKeys;
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, Error, PeerIncompatible, ServerConfig,
    SignatureScheme,
};

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): the key's 32
/// bytes follow.
const SPKI_ED25519_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
/// DER prefix of an Ed25519 PKCS#8 v1 private key (RFC 8410): the 32-byte
/// seed follows.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// The server name a dialling gateway sends. Raw public keys carry no
/// names; the key decides.
pub const SERVER_NAME: &str = "seed-peer";

/// The SubjectPublicKeyInfo a gateway presents.
pub fn spki_of(key: &[u8; 32]) -> Vec<u8> {
    [&SPKI_ED25519_PREFIX[..], key].concat()
}

/// The ed25519 key inside a presented SubjectPublicKeyInfo, if it is one.
pub fn key_of_spki(spki: &[u8]) -> Option<[u8; 32]> {
    spki.strip_prefix(&SPKI_ED25519_PREFIX[..])?.try_into().ok()
}

/// Short form of a gateway id for sentences: its first 16 hex digits.
pub fn short_id(key: &[u8; 32]) -> String {
    hex::encode(&key[..8])
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certified_key(
    identity: &Identity,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, String> {
    let pkcs8 = [
        &PKCS8_ED25519_PREFIX[..],
        &identity.signing_key().to_bytes(),
    ]
    .concat();
    let signer = provider
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8)))
        .map_err(|e| format!("the gateway key cannot sign TLS handshakes: {e}"))?;
    let spki = spki_of(&identity.device_id());
    Ok(Arc::new(CertifiedKey::new(
        vec![CertificateDer::from(spki)],
        signer,
    )))
}

/// TLS for the side that accepts neighbours: any listed key may connect.
pub fn server_config(
    identity: &Identity,
    peers: &HashMap<[u8; 32], String>,
) -> Result<Arc<ServerConfig>, String> {
    let provider = provider();
    let key = certified_key(identity, &provider)?;
    let verifier = Arc::new(KeyVerifier {
        accepted: peers.keys().copied().collect(),
        dialling: false,
        algorithms: provider.signature_verification_algorithms,
    });
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(AlwaysResolvesServerRawPublicKeys::new(key)));
    Ok(Arc::new(config))
}

/// TLS for dialling one neighbour: only `expected` is accepted.
pub fn client_config(identity: &Identity, expected: [u8; 32]) -> Result<Arc<ClientConfig>, String> {
    let provider = provider();
    let key = certified_key(identity, &provider)?;
    let verifier = Arc::new(KeyVerifier {
        accepted: vec![expected],
        dialling: true,
        algorithms: provider.signature_verification_algorithms,
    });
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(Arc::new(AlwaysResolvesClientRawPublicKeys::new(key)));
    Ok(Arc::new(config))
}

pub fn server_name() -> ServerName<'static> {
    ServerName::try_from(SERVER_NAME).expect("a valid DNS name")
}

/// The error text a refused key produces; the listener recognises it to
/// count the refusal under `unlisted_key`.
pub const UNLISTED: &str = "unlisted gateway id";
/// Likewise for a dialled neighbour presenting another key.
pub const WRONG_KEY: &str = "presented gateway id";

/// Judges the key the other side presents; one type for both roles so the
/// two trait impls below are only delegation.
#[derive(Debug)]
struct KeyVerifier {
    /// Dialling: the one key configured for the address. Listening: every
    /// listed key.
    accepted: Vec<[u8; 32]>,
    dialling: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl KeyVerifier {
    fn check(&self, presented: &CertificateDer<'_>) -> Result<(), Error> {
        let Some(key) = key_of_spki(presented) else {
            return Err(Error::General(
                "the neighbour presented no ed25519 key".into(),
            ));
        };
        if self.accepted.contains(&key) {
            return Ok(());
        }
        Err(Error::General(
            match (self.dialling, self.accepted.first()) {
                (true, Some(expected)) => format!(
                    "{WRONG_KEY} {} instead of the configured {}",
                    hex::encode(key),
                    hex::encode(expected)
                ),
                _ => format!("{UNLISTED} {}", hex::encode(key)),
            },
        ))
    }

    fn tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        let spki = SubjectPublicKeyInfoDer::from(cert.as_ref());
        verify_tls13_signature_with_raw_key(message, &spki, dss, &self.algorithms)
    }
}

/// Both configs offer TLS 1.3 only; this is never reached.
fn no_tls12() -> Result<HandshakeSignatureValid, Error> {
    Err(Error::PeerIncompatible(
        PeerIncompatible::Tls13RequiredForQuic,
    ))
}

impl ServerCertVerifier for KeyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        self.check(end_entity)
            .map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        no_tls12()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

impl ClientCertVerifier for KeyVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        self.check(end_entity)
            .map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        no_tls12()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Runs one handshake over loopback; returns the client's and the
    /// server's outcome.
    async fn handshake(
        client: &Identity,
        expected: [u8; 32],
        server: &Identity,
        listed: &[[u8; 32]],
    ) -> (Result<(), String>, Result<[u8; 32], String>) {
        let listed: HashMap<_, _> = listed.iter().map(|k| (*k, "peer".to_string())).collect();
        let acceptor = tokio_rustls::TlsAcceptor::from(server_config(server, &listed).unwrap());
        let connector = tokio_rustls::TlsConnector::from(client_config(client, expected).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server_side = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
            let key = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| key_of_spki(c))
                .ok_or("no key")?;
            let mut byte = [0u8; 1];
            tls.read_exact(&mut byte).await.map_err(|e| e.to_string())?;
            Ok::<_, String>(key)
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let client_result = async {
            let mut tls = connector
                .connect(server_name(), tcp)
                .await
                .map_err(|e| e.to_string())?;
            tls.write_all(b"x").await.map_err(|e| e.to_string())?;
            tls.flush().await.map_err(|e| e.to_string())?;
            Ok(())
        }
        .await;
        (client_result, server_side.await.unwrap())
    }

    #[test]
    fn spki_round_trip() {
        let key = Identity::from_seed([7; 32]).device_id();
        assert_eq!(key_of_spki(&spki_of(&key)), Some(key));
        assert_eq!(key_of_spki(&spki_of(&key)[1..]), None);
    }

    #[tokio::test]
    async fn listed_keys_meet_and_learn_each_other() {
        let (a, b) = (Identity::from_seed([1; 32]), Identity::from_seed([2; 32]));
        let (client, server) = handshake(&a, b.device_id(), &b, &[a.device_id()]).await;
        client.unwrap();
        assert_eq!(server.unwrap(), a.device_id());
    }

    #[tokio::test]
    async fn an_unlisted_gateway_is_refused_with_its_id() {
        let (a, b, c) = (
            Identity::from_seed([1; 32]),
            Identity::from_seed([2; 32]),
            Identity::from_seed([3; 32]),
        );
        // In TLS 1.3 the client is done before the server has judged its
        // key, so only the server's side can tell.
        let (_, server) = handshake(&c, b.device_id(), &b, &[a.device_id()]).await;
        let error = server.unwrap_err();
        assert!(
            error.contains(UNLISTED) && error.contains(&c.id_hex()),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_neighbour_with_another_key_is_refused_by_the_dialler() {
        let (a, b, c) = (
            Identity::from_seed([1; 32]),
            Identity::from_seed([2; 32]),
            Identity::from_seed([3; 32]),
        );
        // `c` answers on the address where `b` is expected, and would even
        // accept `a`.
        let (client, server) = handshake(&a, b.device_id(), &c, &[a.device_id()]).await;
        let error = client.unwrap_err();
        assert!(
            error.contains(WRONG_KEY) && error.contains(&c.id_hex()),
            "{error}"
        );
        assert!(server.is_err());
    }
}
