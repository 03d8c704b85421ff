//! TLS for QUIC: both sides prove their node key, and only roster keys get in.
//!
//! Each node presents its ed25519 key as an RFC 7250 raw public key: the
//! "certificate" on the wire is exactly a SubjectPublicKeyInfo, 44 bytes, nothing
//! else to parse or to trust. Both sides require raw public keys (a peer offering
//! an X.509 certificate fails the handshake), and the verifiers
//!
//! - read the node id from the SubjectPublicKeyInfo, which must be exactly the
//!   DER of an ed25519 key (RFC 8410): any other byte string is refused;
//! - check the TLS 1.3 handshake signature themselves with `verify_strict`, so the
//!   peer has proven it holds that key's secret (strict checks, no malleability);
//! - on the accepting side, admit only keys on the roster;
//! - on the dialing side, require the key to be the `NodeId` the dialer meant to
//!   reach (carried as the TLS server name: a node id in base32 is a valid DNS
//!   label) and on the roster.
//!
//! TLS 1.3 only, ALPN `tidings/1`, the only signature scheme ed25519. Every refused
//! handshake (a key not on the roster, the wrong key, a handshake signature that
//! does not verify under the key presented) is reported, with the key presented
//! and the reason, through [`Refusals`].

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, RwLock};

use ed25519_dalek::Signature as DalekSignature;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::CertifiedKey;
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

/// The raw public key (RFC 7250) `identity` presents: its SubjectPublicKeyInfo.
pub fn raw_public_key(identity: &Identity) -> CertificateDer<'static> {
    let mut spki = ED25519_SPKI_PREFIX.to_vec();
    spki.extend_from_slice(identity.node_id().as_bytes());
    CertificateDer::from(spki)
}

/// The raw public key and signing key rustls presents for `identity`.
fn certified_key(identity: &Identity) -> Result<Arc<CertifiedKey>, TlsError> {
    let mut pkcs8 = ED25519_PKCS8_PREFIX.to_vec();
    pkcs8.extend_from_slice(identity.seed().as_ref());
    let key = rustls::crypto::ring::sign::any_eddsa_type(&PrivatePkcs8KeyDer::from(pkcs8))
        .map_err(|error| TlsError::Certificate(error.to_string()))?;
    Ok(Arc::new(CertifiedKey::new(
        vec![raw_public_key(identity)],
        key,
    )))
}

/// The node id a raw public key carries: it must be exactly the DER of one
/// ed25519 SubjectPublicKeyInfo (RFC 8410), 44 bytes.
pub fn node_id_of(spki: &[u8]) -> Option<NodeId> {
    let key = spki.strip_prefix(&ED25519_SPKI_PREFIX)?;
    let key: [u8; 32] = key.try_into().ok()?;
    Some(NodeId::from_bytes(key))
}

/// A handshake this node refused, with the key that was presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The key presented, if one could be read.
    pub presented: Option<NodeId>,
    /// Why it was refused.
    pub reason: String,
    /// On a dial: the node that was dialled, when another key answered. The
    /// address was wrong (a record or bootstrap entry pointed at another node);
    /// the node that answered did nothing wrong.
    pub expected: Option<NodeId>,
}

/// Refusals recorded by the verifiers, drained by the node.
#[derive(Debug, Clone, Default)]
pub struct Refusals(Arc<Mutex<VecDeque<Refusal>>>);

impl Refusals {
    fn push(&self, presented: Option<NodeId>, reason: &str) {
        self.record(Refusal {
            presented,
            reason: reason.to_string(),
            expected: None,
        });
    }

    fn record(&self, refusal: Refusal) {
        let mut queue = self.0.lock().unwrap_or_else(|poison| poison.into_inner());
        if queue.len() < 1024 {
            queue.push_back(refusal);
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

/// Checks the handshake signature, and records a refusal, with the key
/// presented, when it does not hold.
fn verify_signature(
    refusals: &Refusals,
    message: &[u8],
    certificate: &CertificateDer<'_>,
    scheme: SignatureScheme,
    signature: &[u8],
) -> Result<HandshakeSignatureValid, Error> {
    let checked = check_signature(message, certificate, scheme, signature);
    if checked.is_err() {
        refusals.push(
            node_id_of(certificate),
            "the handshake signature does not verify under the key presented",
        );
    }
    checked
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
        refusals.push(None, "the peer presented no ed25519 public key");
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
                .push(None, "the peer presented no ed25519 public key");
            return Err(Error::InvalidCertificate(CertificateError::BadEncoding));
        };
        let expected = match server_name {
            ServerName::DnsName(name) => name.as_ref().parse::<NodeId>().ok(),
            _ => None,
        };
        if expected != Some(presented) {
            self.refusals.record(Refusal {
                presented: Some(presented),
                reason: "another node answered at the address dialled".into(),
                expected,
            });
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
        verify_signature(
            &self.refusals,
            message,
            certificate,
            signed.scheme,
            signed.signature(),
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
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
        verify_signature(
            &self.refusals,
            message,
            certificate,
            signed.scheme,
            signed.signature(),
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
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
    let key = certified_key(identity)?;
    let config_error = |error: Error| TlsError::Config(error.to_string());
    let accept = Arc::new(AcceptVerifier {
        roster: roster.clone(),
        refusals: refusals.clone(),
    });
    let mut server = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config_error)?
        .with_client_cert_verifier(accept)
        .with_cert_resolver(Arc::new(
            rustls::server::AlwaysResolvesServerRawPublicKeys::new(key.clone()),
        ));
    server.alpn_protocols = vec![ALPN.to_vec()];
    // No session resumption, either way: a resumed handshake carries the peer's
    // key from the session it resumes and skips the verifiers, so a key removed
    // from the roster since would be admitted again. Every handshake is a full
    // one, checked against the roster as it is now.
    server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    server.send_tls13_tickets = 0;
    let dial = Arc::new(DialVerifier { roster, refusals });
    let mut client = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config_error)?
        .dangerous()
        .with_custom_certificate_verifier(dial)
        .with_client_cert_resolver(Arc::new(
            rustls::client::AlwaysResolvesClientRawPublicKeys::new(key),
        ));
    client.alpn_protocols = vec![ALPN.to_vec()];
    client.resumption = rustls::client::Resumption::disabled();
    Ok((server, client))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_public_keys_carry_exactly_the_node_key() {
        let identity = Identity::from_seed(&[5; 32]);
        let spki = raw_public_key(&identity);
        assert_eq!(spki.len(), 44);
        assert_eq!(node_id_of(&spki), Some(identity.node_id()));
        // Anything else is refused: a key with trailing bytes, a truncated one, a
        // key of another algorithm, an X.509 certificate that contains the key.
        let mut longer = spki.to_vec();
        longer.push(0);
        assert_eq!(node_id_of(&longer), None);
        assert_eq!(node_id_of(&spki[..43]), None);
        let mut other_algorithm = spki.to_vec();
        other_algorithm[8] = 0x71;
        assert_eq!(node_id_of(&other_algorithm), None);
        let mut wrapped = vec![0x30, 0x82, 0x01, 0x00];
        wrapped.extend_from_slice(&spki);
        assert_eq!(node_id_of(&wrapped), None);
        assert_eq!(node_id_of(b"not a key"), None);
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
        let stranger = raw_public_key(&Identity::from_seed(&[7; 32]));
        assert!(verifier
            .verify_client_cert(&stranger, &[], UnixTime::now())
            .is_err());
        assert!(verifier
            .verify_client_cert(&raw_public_key(&member), &[], UnixTime::now())
            .is_ok());
        let recorded = refusals.drain();
        assert_eq!(recorded.len(), 2);
        assert_eq!(recorded[0].presented, None);
        assert!(recorded[0].reason.contains("no ed25519 public key"));
        assert_eq!(
            recorded[1].presented,
            Some(Identity::from_seed(&[7; 32]).node_id())
        );
    }

    #[test]
    fn handshake_signatures_are_checked_strictly() {
        let identity = Identity::from_seed(&[8; 32]);
        let cert = raw_public_key(&identity);
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
        // A signature that fails is recorded with the key presented.
        let refusals = Refusals::default();
        let ed25519 = SignatureScheme::ED25519;
        assert!(verify_signature(&refusals, message, &cert, ed25519, &other.0).is_err());
        let recorded = refusals.drain();
        assert_eq!(recorded[0].presented, Some(identity.node_id()));
        assert!(recorded[0].reason.contains("does not verify"));
        let key = ed25519_dalek::SigningKey::from_bytes(&identity.seed());
        let good = ed25519_dalek::Signer::sign(&key, message).to_bytes();
        assert!(verify_signature(&refusals, message, &cert, ed25519, &good).is_ok());
        assert!(refusals.drain().is_empty());
    }
}
