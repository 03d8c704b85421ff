//! Records: what an origin announces, in its one canonical byte form, signed.
//!
//! The flow of bytes from the network into the directory is a chain of types, each
//! made only by the step before it:
//!
//! ```text
//! bytes ──SignedRecord::decode──▶ SignedRecord ──UnverifiedRecord::parse──▶
//!   UnverifiedRecord (framing, version, federation, canonical form checked)
//!   ──verify──▶ VerifiedRecord (verify_strict passed; the only type the
//!                directory stores or relays)
//! ```
//!
//! The canonical form of a [`Record`] is its postcard encoding. Decoding is done by
//! [`codec`](super::codec) so that limits are enforced before allocation and only
//! canonical bytes are accepted: one record, one byte form, one [`RecordId`].

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use tidings_keys::{Domain, FederationId, Identity, NodeId, Signature, VerifyError};

use super::codec::{write_varint, DecodeError, Field, Reader};
use super::limits::*;

/// The record format this code reads and writes.
pub const RECORD_VERSION: u8 = 1;

/// The identity of a record: `blake3::derive_key("tidings record v1", record_bytes)`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RecordId(pub [u8; 32]);

impl RecordId {
    /// The `prev` of an origin's first record.
    pub const ZERO: RecordId = RecordId([0; 32]);

    /// The id of canonical record bytes.
    pub fn of(record_bytes: &[u8]) -> Self {
        Self(blake3::derive_key("tidings record v1", record_bytes))
    }

    /// The first 12 hex characters, for tables and logs.
    pub fn short(&self) -> String {
        tidings_keys::hex::encode(&self.0[..6])
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&tidings_keys::hex::encode(&self.0))
    }
}

impl fmt::Debug for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecordId({})", self.short())
    }
}

impl std::str::FromStr for RecordId {
    type Err = tidings_keys::hex::HexError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        tidings_keys::hex::decode_exact::<32>(text.trim()).map(Self)
    }
}

impl Serialize for RecordId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> serde::Deserialize<'de> for RecordId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
            text.parse().map_err(serde::de::Error::custom)
        } else {
            <[u8; 32]>::deserialize(deserializer).map(Self)
        }
    }
}

/// One specialist an origin offers: a service, model or agent.
///
/// `Deserialize` is for JSON input (the HTTP API); records are decoded by
/// [`codec`](super::codec), never by serde.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "node", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "node",
    schemars(description = "One specialist an origin offers: a service, model or agent.")
)]
#[serde(deny_unknown_fields)]
pub struct Specialist {
    /// Unique within its record; letters, digits, `.`, `_`, `-`.
    pub name: String,
    /// What it can do, sorted and unique (`translate`, `fr-en`, ...).
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Where to reach it: an http or https URL.
    pub endpoint: String,
    /// Free-form string metadata, sorted by key.
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
}

/// An origin's whole current announcement. The newest record of an origin
/// supersedes all older ones; removal is a next record without the specialist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    /// Format version, [`RECORD_VERSION`].
    pub version: u8,
    /// The federation this record belongs to.
    pub federation: FederationId,
    /// The signer.
    pub origin: NodeId,
    /// 1 for the origin's first record, then +1 each time.
    pub seq: u64,
    /// The id of the record with `seq - 1`; zero for `seq == 1`.
    pub prev: RecordId,
    /// When the origin signed it (milliseconds since the Unix epoch).
    pub issued_at_ms: u64,
    /// When it stops being valid (milliseconds since the Unix epoch).
    pub expires_at_ms: u64,
    /// Where the origin's node accepts connections; empty behind NAT.
    pub addrs: Vec<String>,
    /// The specialists, sorted by name.
    pub specialists: Vec<Specialist>,
}

/// What an origin states about itself in a record: its addresses and specialists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Announcement {
    /// Where the node accepts connections.
    pub addrs: Vec<String>,
    /// The specialists it offers (any order; sorted when signed).
    pub specialists: Vec<Specialist>,
}

impl Announcement {
    /// The form it takes in a signed record: specialists sorted by name, each
    /// one's capabilities sorted without duplicates.
    pub fn canonical(mut self) -> Self {
        normalize_specialists(&mut self.specialists);
        self
    }
}

fn normalize_specialists(specialists: &mut [Specialist]) {
    specialists.sort_by(|a, b| a.name.cmp(&b.name));
    for specialist in specialists {
        specialist.capabilities.sort();
        specialist.capabilities.dedup();
    }
}

/// The `seq` of the first record after a recovery, found the newest own record
/// peers returned (`found`, 0 for none) at `now_ms`, never below `floor` (a
/// pardon's, or the floor the directory keeps for this origin).
///
/// Recoveries jump to a line that moves with time: the time in microseconds
/// ([`SEQ_LINE_PER_MS`] a millisecond) plus
/// [`RECOVERY_SEQ_GAP`](crate::proto::limits::RECOVERY_SEQ_GAP). Every record
/// a key signs is then below the line at the moment it signs it: ordinary
/// records count up from 1, and jumps made by earlier versions (the time in
/// milliseconds, plus a million or two) are a thousandth of it; after a jump
/// an origin would have to sign more than a thousand records a millisecond
/// to overtake the line; and a chain that starts above it (a pardon's floor,
/// a clock set back) falls below it a second later for every million it is
/// above. So a later recovery lands above every record signed before it,
/// whatever its peers returned, unless the node's clock went back between the
/// two by more than the time between them (its time is the wall clock read at
/// start plus monotonic time, so only across a restart). A jump added to what
/// was found would not: a recovery that found a jumped record would jump
/// ahead of the line, and a later one that found only an older record would
/// land below it, on a seq the key had already signed. A chain found above
/// the line jumps the gap above what was found.
pub fn recovery_seq(found: u64, now_ms: u64, floor: u64) -> u64 {
    use crate::proto::limits::RECOVERY_SEQ_GAP;
    let line = now_ms
        .saturating_mul(SEQ_LINE_PER_MS)
        .saturating_add(RECOVERY_SEQ_GAP);
    let seq = if found < line {
        line
    } else {
        found.saturating_add(RECOVERY_SEQ_GAP)
    };
    seq.max(floor).max(2)
}

/// How fast the line of [`recovery_seq`] moves: this much a millisecond
/// (u64 holds it for some 580,000 years of milliseconds since 1970).
pub const SEQ_LINE_PER_MS: u64 = 1_000;

impl Record {
    /// An origin's first record.
    pub fn first(
        federation: FederationId,
        origin: NodeId,
        announcement: Announcement,
        issued_at_ms: u64,
        ttl_ms: u64,
    ) -> Self {
        Self {
            version: RECORD_VERSION,
            federation,
            origin,
            seq: 1,
            prev: RecordId::ZERO,
            issued_at_ms,
            expires_at_ms: issued_at_ms.saturating_add(ttl_ms),
            addrs: announcement.addrs,
            specialists: announcement.specialists,
        }
    }

    /// The first record a node signs after it recovered from a lost history (or
    /// after its quarantine was pardoned): `seq` from [`recovery_seq`], linked to
    /// `previous` (the newest record of its own it found), or to a marker derived
    /// from the origin.
    pub fn after_recovery(
        federation: FederationId,
        origin: NodeId,
        previous: Option<&VerifiedRecord>,
        seq: u64,
        announcement: Announcement,
        issued_at_ms: u64,
        ttl_ms: u64,
    ) -> Self {
        let prev = match previous {
            Some(previous) => previous.id(),
            None => RecordId(blake3::derive_key(
                "tidings recovered chain v1",
                origin.as_bytes(),
            )),
        };
        Self {
            seq,
            prev,
            ..Self::first(federation, origin, announcement, issued_at_ms, ttl_ms)
        }
    }

    /// The record that follows `previous` in its origin's chain: `seq + 1`,
    /// `prev` = its id.
    pub fn next(
        previous: &VerifiedRecord,
        announcement: Announcement,
        issued_at_ms: u64,
        ttl_ms: u64,
    ) -> Self {
        let before = previous.record();
        Self {
            version: RECORD_VERSION,
            federation: before.federation,
            origin: before.origin,
            seq: before.seq.saturating_add(1),
            prev: previous.id(),
            issued_at_ms,
            expires_at_ms: issued_at_ms.saturating_add(ttl_ms),
            addrs: announcement.addrs,
            specialists: announcement.specialists,
        }
    }

    /// Sorts specialists by name and capabilities alphabetically, removing duplicate
    /// capabilities, so that a hand-built record takes its canonical form.
    pub fn normalize(&mut self) {
        normalize_specialists(&mut self.specialists);
    }

    /// The canonical bytes (postcard).
    pub fn encode(&self) -> Vec<u8> {
        // Serialising plain structs of strings, integers and arrays into a Vec
        // cannot fail with postcard.
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Decodes and checks canonical record bytes of the current version.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut reader = Reader::new(bytes);
        let version = reader.u8()?;
        if version != RECORD_VERSION {
            return Err(DecodeError::Invalid {
                field: Field::RecordBytes,
                reason: "unsupported record version",
            });
        }
        let federation = FederationId::from_bytes(reader.array()?);
        let origin = NodeId::from_bytes(reader.array()?);
        let seq = reader.varint()?;
        let prev = RecordId(reader.array()?);
        let issued_at_ms = reader.varint()?;
        let expires_at_ms = reader.varint()?;
        let addrs = decode_addrs(&mut reader)?;
        let specialists = decode_specialists(&mut reader)?;
        reader.finish()?;
        let record = Self {
            version,
            federation,
            origin,
            seq,
            prev,
            issued_at_ms,
            expires_at_ms,
            addrs,
            specialists,
        };
        record.check_chain_fields()?;
        Ok(record)
    }

    fn check_chain_fields(&self) -> Result<(), DecodeError> {
        if self.seq == 0 {
            return Err(invalid(Field::Seq, "sequence numbers start at 1"));
        }
        if (self.seq == 1) != (self.prev == RecordId::ZERO) {
            return Err(invalid(
                Field::Prev,
                "only the first record (seq 1) has a zero previous link",
            ));
        }
        if self.expires_at_ms <= self.issued_at_ms {
            return Err(invalid(Field::Lifetime, "expires before it is issued"));
        }
        Ok(())
    }

    /// Lifetime granted by the origin.
    pub fn ttl_ms(&self) -> u64 {
        self.expires_at_ms.saturating_sub(self.issued_at_ms)
    }
}

fn invalid(field: Field, reason: &'static str) -> DecodeError {
    DecodeError::Invalid { field, reason }
}

fn decode_addrs(reader: &mut Reader<'_>) -> Result<Vec<String>, DecodeError> {
    let count = reader.count(Field::Addrs, MAX_ADDRS)?;
    let mut addrs = Vec::with_capacity(count);
    for _ in 0..count {
        let addr = reader.str(Field::Addr, MAX_ADDR_BYTES)?;
        check_printable(Field::Addr, addr)?;
        addrs.push(addr.to_owned());
    }
    Ok(addrs)
}

fn decode_specialists(reader: &mut Reader<'_>) -> Result<Vec<Specialist>, DecodeError> {
    let count = reader.count(Field::Specialists, MAX_SPECIALISTS)?;
    let mut specialists: Vec<Specialist> = Vec::with_capacity(count);
    for _ in 0..count {
        let specialist = decode_specialist(reader)?;
        if let Some(last) = specialists.last() {
            if last.name >= specialist.name {
                return Err(DecodeError::NotSorted {
                    field: Field::Specialists,
                });
            }
        }
        specialists.push(specialist);
    }
    Ok(specialists)
}

fn decode_specialist(reader: &mut Reader<'_>) -> Result<Specialist, DecodeError> {
    let name = reader.str(Field::Name, MAX_NAME_BYTES)?;
    check_name(Field::Name, name)?;
    let count = reader.count(Field::Capabilities, MAX_CAPABILITIES)?;
    let mut capabilities: Vec<String> = Vec::with_capacity(count);
    for _ in 0..count {
        let capability = reader.str(Field::Capability, MAX_CAPABILITY_BYTES)?;
        check_capability(capability)?;
        if capabilities
            .last()
            .is_some_and(|last| last.as_str() >= capability)
        {
            return Err(DecodeError::NotSorted {
                field: Field::Capabilities,
            });
        }
        capabilities.push(capability.to_owned());
    }
    let endpoint = reader.str(Field::Endpoint, MAX_ENDPOINT_BYTES)?;
    check_endpoint(endpoint)?;
    let count = reader.count(Field::Meta, MAX_META_ENTRIES)?;
    let mut meta = BTreeMap::new();
    let mut last_key: Option<&str> = None;
    for _ in 0..count {
        let key = reader.str(Field::MetaKey, MAX_META_KEY_BYTES)?;
        check_name(Field::MetaKey, key)?;
        if last_key.is_some_and(|last| last >= key) {
            return Err(DecodeError::NotSorted { field: Field::Meta });
        }
        last_key = Some(key);
        let value = reader.str(Field::MetaValue, MAX_META_VALUE_BYTES)?;
        if value.chars().any(char::is_control) {
            return Err(invalid(Field::MetaValue, "contains a control character"));
        }
        meta.insert(key.to_owned(), value.to_owned());
    }
    Ok(Specialist {
        name: name.to_owned(),
        capabilities,
        endpoint: endpoint.to_owned(),
        meta,
    })
}

/// Checks a specialist name or metadata key: 1 or more of `A-Z a-z 0-9 . _ -`,
/// starting with a letter or digit.
pub fn check_name(field: Field, name: &str) -> Result<(), DecodeError> {
    let mut characters = name.chars();
    match characters.next() {
        None => Err(invalid(field, "is empty")),
        Some(first) if !first.is_ascii_alphanumeric() => {
            Err(invalid(field, "must start with a letter or digit"))
        }
        Some(_) if !characters.all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) => Err(
            invalid(field, "may contain only letters, digits, '.', '_' and '-'"),
        ),
        Some(_) => Ok(()),
    }
}

fn check_capability(capability: &str) -> Result<(), DecodeError> {
    if capability.is_empty() {
        return Err(invalid(Field::Capability, "is empty"));
    }
    if !capability
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-:/+".contains(c))
    {
        return Err(invalid(
            Field::Capability,
            "may contain only letters, digits and . _ - : / +",
        ));
    }
    Ok(())
}

/// An endpoint is an http or https URL with a host: what a directory user
/// can call. Anything else (`file:///etc/passwd`, `javascript:`) is refused
/// when announced and when received.
fn check_endpoint(endpoint: &str) -> Result<(), DecodeError> {
    check_printable(Field::Endpoint, endpoint)?;
    let Some((scheme, rest)) = endpoint.split_once("://") else {
        return Err(invalid(
            Field::Endpoint,
            "must be an http or https URL (https://host/...)",
        ));
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(invalid(
            Field::Endpoint,
            "must be an http or https URL (https://host/...)",
        ));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if host.is_empty() || host.starts_with(':') {
        return Err(invalid(
            Field::Endpoint,
            "must name a host (https://host/...)",
        ));
    }
    Ok(())
}

fn check_printable(field: Field, text: &str) -> Result<(), DecodeError> {
    if text.is_empty() {
        return Err(invalid(field, "is empty"));
    }
    if text.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(invalid(field, "contains whitespace or a control character"));
    }
    Ok(())
}

/// The first bytes of every record, whatever its version: enough to tell a record
/// of another federation or version apart before decoding the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Format version.
    pub version: u8,
    /// Federation.
    pub federation: FederationId,
}

impl RecordHeader {
    /// Reads the header of record bytes.
    pub fn peek(record_bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut reader = Reader::new(record_bytes);
        Ok(Self {
            version: reader.u8()?,
            federation: FederationId::from_bytes(reader.array()?),
        })
    }
}

/// Record bytes and the origin's signature over them, as carried on the wire.
///
/// Encoded as postcard encodes `struct { record: Vec<u8>, signature: [u8; 64] }`:
/// a varint length, the record bytes, then the 64 signature bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedRecord {
    record_bytes: Vec<u8>,
    signature: Signature,
}

impl fmt::Debug for SignedRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedRecord")
            .field("id", &RecordId::of(&self.record_bytes))
            .field("bytes", &self.record_bytes.len())
            .finish()
    }
}

impl SignedRecord {
    /// Pairs record bytes with a signature (not checked: see [`UnverifiedRecord`]).
    pub fn new(record_bytes: Vec<u8>, signature: Signature) -> Self {
        Self {
            record_bytes,
            signature,
        }
    }

    /// The signed record bytes.
    pub fn record_bytes(&self) -> &[u8] {
        &self.record_bytes
    }

    /// The signature.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The id of the record bytes.
    pub fn id(&self) -> RecordId {
        RecordId::of(&self.record_bytes)
    }

    /// Appends the wire form.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        write_varint(out, self.record_bytes.len() as u64);
        out.extend_from_slice(&self.record_bytes);
        out.extend_from_slice(&self.signature.0);
    }

    /// The wire form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.record_bytes.len() + 72);
        self.encode_into(&mut out);
        out
    }

    /// Decodes exactly one signed record from `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_SIGNED_RECORD_BYTES {
            return Err(DecodeError::Oversized {
                field: Field::SignedRecord,
                max: MAX_SIGNED_RECORD_BYTES,
                found: bytes.len(),
            });
        }
        let mut reader = Reader::new(bytes);
        let signed = Self::read(&mut reader)?;
        reader.finish()?;
        Ok(signed)
    }

    /// Reads one signed record from a reader (inside a larger message).
    pub fn read(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let record_bytes = reader
            .bytes(Field::RecordBytes, MAX_SIGNED_RECORD_BYTES)?
            .to_vec();
        let signature = Signature(reader.array()?);
        Ok(Self {
            record_bytes,
            signature,
        })
    }
}

/// Why bytes are not a record of this federation that its origin signed.
///
/// Each variant is an offence by whoever sent the bytes: an honest peer checks
/// what it relays.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Not a well-formed, canonical record.
    #[error("malformed record: {0}")]
    Malformed(DecodeError),
    /// Signed for another federation.
    #[error("record belongs to another federation ({found})")]
    WrongFederation { found: FederationId },
    /// A format version this node does not read.
    #[error("unsupported record version {0}")]
    UnsupportedVersion(u8),
    /// The signature does not verify under the origin's key.
    #[error("bad signature by {origin} on seq {seq}: {reason}")]
    BadSignature {
        /// The origin the record claims.
        origin: NodeId,
        /// The seq it claims.
        seq: u64,
        /// The id of its record bytes.
        id: RecordId,
        /// Why the signature does not verify.
        reason: VerifyError,
    },
}

impl From<DecodeError> for RecordError {
    fn from(error: DecodeError) -> Self {
        Self::Malformed(error)
    }
}

/// A decoded record of the expected federation and version whose signature has
/// not been checked yet. It cannot enter the directory.
#[derive(Debug, Clone)]
pub struct UnverifiedRecord {
    signed: SignedRecord,
    record: Record,
    id: RecordId,
}

impl UnverifiedRecord {
    /// Decodes and checks framing, federation, version and canonical form, in that
    /// order. With `federation == None`, the record's own federation is taken.
    pub fn parse(bytes: &[u8], federation: Option<&FederationId>) -> Result<Self, RecordError> {
        Self::from_signed(SignedRecord::decode(bytes)?, federation)
    }

    /// Checks an already framed signed record.
    pub fn from_signed(
        signed: SignedRecord,
        federation: Option<&FederationId>,
    ) -> Result<Self, RecordError> {
        let header = RecordHeader::peek(&signed.record_bytes)?;
        if let Some(expected) = federation {
            if header.federation != *expected {
                return Err(RecordError::WrongFederation {
                    found: header.federation,
                });
            }
        }
        if header.version != RECORD_VERSION {
            return Err(RecordError::UnsupportedVersion(header.version));
        }
        let record = Record::decode(&signed.record_bytes)?;
        let id = signed.id();
        Ok(Self { signed, record, id })
    }

    /// The claimed origin (not yet proven).
    pub fn origin(&self) -> &NodeId {
        &self.record.origin
    }

    /// The decoded record.
    pub fn record(&self) -> &Record {
        &self.record
    }

    /// The record id.
    pub fn id(&self) -> RecordId {
        self.id
    }

    /// Checks the origin's signature with `verify_strict`.
    pub fn verify(self) -> Result<VerifiedRecord, RecordError> {
        match self.record.origin.verifying_key() {
            Ok(key) => self.verify_with_key(&key),
            Err(reason) => Err(RecordError::BadSignature {
                origin: self.record.origin,
                seq: self.record.seq,
                id: self.id,
                reason: VerifyError::WeakKey(reason),
            }),
        }
    }

    /// Checks the origin's signature with `verify_strict`, under the origin's key
    /// already decoded and checked (a directory keeps those of its roster).
    pub fn verify_with_key(
        self,
        key: &ed25519_dalek::VerifyingKey,
    ) -> Result<VerifiedRecord, RecordError> {
        if key.as_bytes() != self.record.origin.as_bytes() {
            return Err(RecordError::BadSignature {
                origin: self.record.origin,
                seq: self.record.seq,
                id: self.id,
                reason: VerifyError::BadSignature,
            });
        }
        tidings_keys::verify_with_key(
            key,
            Domain::Record,
            &self.record.federation,
            &self.signed.record_bytes,
            &self.signed.signature,
        )
        .map_err(|reason| RecordError::BadSignature {
            origin: self.record.origin,
            seq: self.record.seq,
            id: self.id,
            reason,
        })?;
        Ok(VerifiedRecord(Arc::new(VerifiedInner {
            wire: self.signed.encode(),
            signed: self.signed,
            record: self.record,
            id: self.id,
        })))
    }
}

/// A record whose origin's signature has been checked. Only
/// [`UnverifiedRecord::verify`] makes one; cloning is cheap (shared).
#[derive(Clone)]
pub struct VerifiedRecord(Arc<VerifiedInner>);

struct VerifiedInner {
    signed: SignedRecord,
    record: Record,
    id: RecordId,
    wire: Vec<u8>,
}

impl fmt::Debug for VerifiedRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedRecord")
            .field("origin", &self.0.record.origin)
            .field("seq", &self.0.record.seq)
            .field("id", &self.0.id)
            .finish()
    }
}

impl PartialEq for VerifiedRecord {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for VerifiedRecord {}

impl VerifiedRecord {
    /// Decodes and verifies a signed record in one step.
    pub fn from_bytes(
        bytes: &[u8],
        federation: Option<&FederationId>,
    ) -> Result<Self, RecordError> {
        UnverifiedRecord::parse(bytes, federation)?.verify()
    }

    /// Signs `record` as `identity` after checking it is well-formed.
    ///
    /// The record is normalized first; the signed bytes are then decoded and
    /// verified by the same path as any received record, so nothing can be signed
    /// that peers would refuse as malformed.
    pub fn sign(identity: &Identity, mut record: Record) -> Result<Self, RecordError> {
        record.normalize();
        let record_bytes = record.encode();
        let signature = identity.sign(Domain::Record, &record.federation, &record_bytes);
        let signed = SignedRecord::new(record_bytes, signature);
        if signed.encode().len() > MAX_SIGNED_RECORD_BYTES {
            return Err(RecordError::Malformed(DecodeError::Oversized {
                field: Field::SignedRecord,
                max: MAX_SIGNED_RECORD_BYTES,
                found: signed.encode().len(),
            }));
        }
        UnverifiedRecord::from_signed(signed, Some(&record.federation))?.verify()
    }

    /// The record id.
    pub fn id(&self) -> RecordId {
        self.0.id
    }

    /// The decoded record.
    pub fn record(&self) -> &Record {
        &self.0.record
    }

    /// The signer.
    pub fn origin(&self) -> NodeId {
        self.0.record.origin
    }

    /// The sequence number.
    pub fn seq(&self) -> u64 {
        self.0.record.seq
    }

    /// The signed form.
    pub fn signed(&self) -> &SignedRecord {
        &self.0.signed
    }

    /// The wire encoding of the signed record, ready to relay.
    pub fn wire_bytes(&self) -> &[u8] {
        &self.0.wire
    }

    /// Whether the record has expired at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        now_ms >= self.0.record.expires_at_ms
    }
}

#[cfg(test)]
pub(crate) mod tests;
