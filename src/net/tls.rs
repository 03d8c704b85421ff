//! TLS for QUIC: both sides prove their node key, and only roster keys get in.
//!
//! Each node presents a self-signed X.509 certificate made from its own ed25519 key
//! (via rcgen). We chose a certificate over RFC 7250 raw public keys because every
//! QUIC and TLS stack in use handles certificates, while raw-key support is newer
//! and uneven; the certificate is only a carrier for the key. Nothing else in it is
//! trusted: the verifiers take the ed25519 public key from the certificate's
//! SubjectPublicKeyInfo and
//!
//! - check the TLS 1.3 handshake signature themselves with `verify_strict`, so the
//!   peer has proven it holds that key's secret (strict checks, no malleability);
//! - on the accepting side, admit only keys on the roster;
//! - on the dialing side, require the key to be the `NodeId` the dialer meant to
//!   reach (carried as the TLS server name: a node id in base32 is a valid DNS
//!   label) and on the roster.
//!
//! TLS 1.3 only, ALPN `tidings/1`, the only signature scheme ed25519. A refused
//! handshake is reported, with the key presented, through [`Refusals`].

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, RwLock};

use ed25519_dalek::Signature as DalekSignature;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use tidings_keys::{Identity, NodeId, Roster};

/// The application protocol.
pub const ALPN: &[u8] = b"tidings/1";

/// DER of an ed25519 SubjectPublicKeyInfo, before the 32 key bytes (RFC 8410).
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// DER of an ed25519 PKCS#8 v1 private key, before the 32 seed bytes (RFC 8410).
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// Why TLS material could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate could not be made.
    #[error("cannot build the node certificate: {0}")]
    Certificate(String),
    /// rustls or quinn refused the configuration.
    #[error("cannot build the TLS configuration: {0}")]
    Config(String),
}

/// A self-signed certificate for `identity`, and its private key.
pub fn certificate(
    identity: &Identity,
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), TlsError> {
    let seed = identity.seed();
    let mut pkcs8 = ED25519_PKCS8_PREFIX.to_vec();
    pkcs8.extend_from_slice(seed.as_ref());
    let der = PrivatePkcs8KeyDer::from(pkcs8);
    let key_pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_ED25519)
        .map_err(|error| TlsError::Certificate(error.to_string()))?;
    let params = rcgen::CertificateParams::new(vec![identity.node_id().to_string()])
        .map_err(|error| TlsError::Certificate(error.to_string()))?;
    let certificate = params
        .self_signed(&key_pair)
        .map_err(|error| TlsError::Certificate(error.to_string()))?;
    Ok((certificate.der().clone(), PrivateKeyDer::Pkcs8(der)))
}

/// The ed25519 key a certificate carries, if it carries exactly one.
pub fn node_id_of(certificate: &[u8]) -> Option<NodeId> {
    let mut found = None;
    for (at, window) in certificate.windows(ED25519_SPKI_PREFIX.len()).enumerate() {
        if window == ED25519_SPKI_PREFIX {
            let start = at + ED25519_SPKI_PREFIX.len();
            let key: [u8; 32] = certificate.get(start..start + 32)?.try_into().ok()?;
            if found.replace(NodeId::from_bytes(key)).is_some() {
                return None;
            }
        }
    }
    found
}

/// A handshake this node refused, with the key that was presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The key presented, if one could be read.
    pub presented: Option<NodeId>,
    /// Why it was refused.
    pub reason: String,
}

/// Refusals recorded by the verifiers, drained by the node.
#[derive(Debug, Clone, Default)]
pub struct Refusals(Arc<Mutex<VecDeque<Refusal>>>);

impl Refusals {
    fn push(&self, presented: Option<NodeId>, reason: &str) {
        let mut queue = self.0.lock().unwrap_or_else(|poison| poison.into_inner());
        if queue.len() < 1024 {
            queue.push_back(Refusal {
                presented,
                reason: reason.to_string(),
            });
        }
    }

    /// Takes every refusal recorded so far.
    pub fn drain(&self) -> Vec<Refusal> {
        let mut queue = self.0.lock().unwrap_or_else(|poison| poison.into_inner());
        queue.drain(..).collect()
    }
}

/// The roster, shared and replaceable while the node runs.
pub type SharedRoster = Arc<RwLock<Roster>>;

fn admitted(roster: &SharedRoster, id: &NodeId) -> bool {
    roster
        .read()
        .map(|roster| roster.contains(id))
        .unwrap_or(false)
}

fn verify_signature(
    message: &[u8],
    certificate: &CertificateDer<'_>,
    signed: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, Error> {
    check_signature(message, certificate, signed.scheme, signed.signature())
}

/// The handshake signature check: ed25519 only, with `verify_strict`, under the key
/// the certificate carries.
fn check_signature(
    message: &[u8],
    certificate: &CertificateDer<'_>,
    scheme: SignatureScheme,
    signature: &[u8],
) -> Result<HandshakeSignatureValid, Error> {
    if scheme != SignatureScheme::ED25519 {
        return Err(Error::PeerMisbehaved(
            rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme,
        ));
    }
    let id =
        node_id_of(certificate).ok_or(Error::InvalidCertificate(CertificateError::BadEncoding))?;
    let key = id
        .verifying_key()
        .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
    let signature: [u8; 64] = signature
        .try_into()
        .map_err(|_| Error::InvalidCertificate(CertificateError::BadSignature))?;
    key.verify_strict(message, &DalekSignature::from_bytes(&signature))
        .map_err(|_| Error::InvalidCertificate(CertificateError::BadSignature))?;
    Ok(HandshakeSignatureValid::assertion())
}

/// The key `end_entity` carries, if it is a single ed25519 key on the roster;
/// a refusal is recorded otherwise.
fn admitted_key(
    roster: &SharedRoster,
    refusals: &Refusals,
    end_entity: &CertificateDer<'_>,
) -> Result<NodeId, Error> {
    let Some(presented) = node_id_of(end_entity) else {
        refusals.push(None, "the peer's certificate carries no single ed25519 key");
        return Err(Error::InvalidCertificate(CertificateError::BadEncoding));
    };
    if !admitted(roster, &presented) {
        refusals.push(Some(presented), "the peer's key is not on the roster");
        return Err(Error::InvalidCertificate(
            CertificateError::ApplicationVerificationFailure,
        ));
    }
    Ok(presented)
}

/// Verifies the server a node dialled.
#[derive(Debug)]
struct DialVerifier {
    roster: SharedRoster,
    refusals: Refusals,
}

impl ServerCertVerifier for DialVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let Some(presented) = node_id_of(end_entity) else {
            self.refusals
                .push(None, "the peer's certificate carries no single ed25519 key");
            return Err(Error::InvalidCertificate(CertificateError::BadEncoding));
        };
        let expected = match server_name {
            ServerName::DnsName(name) => name.as_ref().parse::<NodeId>().ok(),
            _ => None,
        };
        if expected != Some(presented) {
            self.refusals.push(
                Some(presented),
                "the peer is not the node that was dialled (impersonation)",
            );
            return Err(Error::InvalidCertificate(CertificateError::NotValidForName));
        }
        if !admitted(&self.roster, &presented) {
            self.refusals
                .push(Some(presented), "the peer's key is not on the roster");
            return Err(Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Err(Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signed: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_signature(message, certificate, signed)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// Verifies a node that dialled this one.
#[derive(Debug)]
struct AcceptVerifier {
    roster: SharedRoster,
    refusals: Refusals,
}

impl ClientCertVerifier for AcceptVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        admitted_key(&self.roster, &self.refusals, end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Err(Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signed: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_signature(message, certificate, signed)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls configurations of one node, for quinn.
pub fn configs(
    identity: &Identity,
    roster: SharedRoster,
    refusals: Refusals,
) -> Result<(rustls::ServerConfig, rustls::ClientConfig), TlsError> {
    let (certificate, key) = certificate(identity)?;
    let config_error = |error: Error| TlsError::Config(error.to_string());
    let accept = Arc::new(AcceptVerifier {
        roster: roster.clone(),
        refusals: refusals.clone(),
    });
    let mut server = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config_error)?
        .with_client_cert_verifier(accept)
        .with_single_cert(vec![certificate.clone()], key.clone_key())
        .map_err(config_error)?;
    server.alpn_protocols = vec![ALPN.to_vec()];
    let dial = Arc::new(DialVerifier { roster, refusals });
    let mut client = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config_error)?
        .dangerous()
        .with_custom_certificate_verifier(dial)
        .with_client_auth_cert(vec![certificate], key)
        .map_err(config_error)?;
    client.alpn_protocols = vec![ALPN.to_vec()];
    Ok((server, client))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_carry_exactly_the_node_key() {
        let identity = Identity::from_seed(&[5; 32]);
        let (certificate, _) = certificate(&identity).unwrap();
        assert_eq!(node_id_of(&certificate), Some(identity.node_id()));
        // A blob carrying two keys is refused.
        let mut doubled = certificate.to_vec();
        doubled.extend_from_slice(&ED25519_SPKI_PREFIX);
        doubled.extend_from_slice(&[1; 32]);
        assert_eq!(node_id_of(&doubled), None);
        assert_eq!(node_id_of(b"not a certificate"), None);
    }

    #[test]
    fn a_bad_certificate_is_refused_and_recorded() {
        let member = Identity::from_seed(&[6; 32]);
        let roster: SharedRoster = Arc::new(RwLock::new([member.node_id()].into_iter().collect()));
        let refusals = Refusals::default();
        let verifier = AcceptVerifier {
            roster,
            refusals: refusals.clone(),
        };
        let garbage = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
        assert!(verifier
            .verify_client_cert(&garbage, &[], UnixTime::now())
            .is_err());
        let (stranger_certificate, _) = certificate(&Identity::from_seed(&[7; 32])).unwrap();
        assert!(verifier
            .verify_client_cert(&stranger_certificate, &[], UnixTime::now())
            .is_err());
        let (member_certificate, _) = certificate(&member).unwrap();
        assert!(verifier
            .verify_client_cert(&member_certificate, &[], UnixTime::now())
            .is_ok());
        let recorded = refusals.drain();
        assert_eq!(recorded.len(), 2);
        assert_eq!(recorded[0].presented, None);
        assert!(recorded[0].reason.contains("no single ed25519 key"));
        assert_eq!(
            recorded[1].presented,
            Some(Identity::from_seed(&[7; 32]).node_id())
        );
    }

    #[test]
    fn handshake_signatures_are_checked_strictly() {
        let identity = Identity::from_seed(&[8; 32]);
        let (cert, _) = certificate(&identity).unwrap();
        let message = b"transcript";
        let federation = tidings_keys::FederationId::from_name("x");
        let other = identity.sign(tidings_keys::Domain::Record, &federation, b"other");
        assert!(
            check_signature(message, &cert, SignatureScheme::ED25519, &other.0).is_err(),
            "a signature over other bytes"
        );
        assert!(check_signature(
            message,
            &cert,
            SignatureScheme::ECDSA_NISTP256_SHA256,
            &[0; 64]
        )
        .is_err());
        assert!(
            check_signature(message, &cert, SignatureScheme::ED25519, &[0; 10]).is_err(),
            "truncated"
        );
    }
}
