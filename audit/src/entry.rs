//! Audit entries and how they chain.
//!
//! Each entry's hash is `blake3::derive_key("tidings audit entry v1", previous hash
//! ‖ postcard(entry))`, so changing, removing or reordering any entry changes every
//! hash after it; checkpoints sign the running hash.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tidings_keys::NodeId;

/// The id of a signed record (the protocol's `RecordId`), as the log stores it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RecordKey(pub [u8; 32]);

impl fmt::Display for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&tidings_keys::hex::encode(&self.0))
    }
}

impl fmt::Debug for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecordKey({})", tidings_keys::hex::encode(&self.0[..6]))
    }
}

impl FromStr for RecordKey {
    type Err = tidings_keys::hex::HexError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        tidings_keys::hex::decode_exact::<32>(text.trim()).map(Self)
    }
}

/// 32 bytes as hex in text formats, raw in binary ones.
pub(crate) mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(
        bytes: &[u8; 32],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&tidings_keys::hex::encode(bytes))
        } else {
            serde::Serialize::serialize(bytes, serializer)
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<[u8; 32], D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            tidings_keys::hex::decode_exact::<32>(&text).map_err(serde::de::Error::custom)
        } else {
            <[u8; 32]>::deserialize(deserializer)
        }
    }
}

impl Serialize for RecordKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        hex32::serialize(&self.0, serializer)
    }
}

impl<'de> Deserialize<'de> for RecordKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        hex32::deserialize(deserializer).map(Self)
    }
}

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A received record was accepted.
    Accepted,
    /// A received record was older than the one held.
    Stale,
    /// A received record was dropped without blame (expired, future-dated,
    /// rate-limited, quarantined origin).
    Ignored,
    /// A received record was refused; the sending peer is blamed.
    Rejected,
    /// Two conflicting records of one origin were found (evidence: the proof).
    Equivocation,
    /// An origin was quarantined on a received proof.
    Quarantine,
    /// A received proof proved nothing; the sending peer is blamed.
    ProofRejected,
    /// A frame did not decode.
    MalformedFrame,
    /// This node published a record.
    Published,
    /// This node sent a record to a peer.
    Relayed,
    /// A connection was accepted.
    ConnectionAccepted,
    /// A connection was refused (unknown or unexpected key, bad certificate).
    ConnectionRefused,
    /// A peer lost score.
    Penalised,
    /// A peer was banned.
    Banned,
    /// A record expired.
    Expired,
    /// This node took back its own latest record after losing its history
    /// (evidence: the record).
    Recovered,
    /// This node stopped signing: another process signs with its key, or its key
    /// is quarantined (evidence: the record or proof that showed it).
    Halted,
    /// This node's clock is off from its peers' beyond the warning threshold, or
    /// back within it.
    ClockOffset,
    /// The log continues a previous log that was lost or damaged; the reason says
    /// what is known of it. The entries before this one are not in this log.
    LogResumed,
    /// A dial reached another node than the one dialled: the address came from a
    /// record (the entry names the record and its origin) or from the bootstrap
    /// list. The node that answered is not to blame.
    Misdirected,
    /// A handshake presented no key, or a key not on the roster. Anyone who can
    /// send UDP can cause these in bulk with fresh keys, so they are routine;
    /// refusals of roster keys are `ConnectionRefused`.
    StrangerRefused,
    /// A roster proposal was seen, or gained approvals (the reason says which
    /// operation and how many approvals it holds).
    RosterProposal,
    /// This node proposed or approved a roster operation.
    RosterSigned,
    /// A roster operation reached its threshold and was applied.
    RosterApplied,
    /// A roster operation or proposal was refused (the reason names the rule).
    RosterRefused,
    /// Two valid roster operations for one epoch: roster changes stop.
    RosterFork,
}

impl EntryKind {
    /// Every kind.
    pub const ALL: [EntryKind; 26] = [
        EntryKind::Accepted,
        EntryKind::Stale,
        EntryKind::Ignored,
        EntryKind::Rejected,
        EntryKind::Equivocation,
        EntryKind::Quarantine,
        EntryKind::ProofRejected,
        EntryKind::MalformedFrame,
        EntryKind::Published,
        EntryKind::Relayed,
        EntryKind::ConnectionAccepted,
        EntryKind::ConnectionRefused,
        EntryKind::Penalised,
        EntryKind::Banned,
        EntryKind::Expired,
        EntryKind::Recovered,
        EntryKind::Halted,
        EntryKind::ClockOffset,
        EntryKind::LogResumed,
        EntryKind::Misdirected,
        EntryKind::StrangerRefused,
        EntryKind::RosterProposal,
        EntryKind::RosterSigned,
        EntryKind::RosterApplied,
        EntryKind::RosterRefused,
        EntryKind::RosterFork,
    ];

    /// Whether entries of this kind are routine: what any peer's ordinary or cheap
    /// traffic produces in bulk (stale and ignored records, relays, accepted
    /// connections, expiries, handshakes from keys off the roster). Retention removes routine entries first; the others
    /// (every record accepted or published and its evidence, every offence, ban,
    /// refusal and incident) stay as long as the log's limits allow once routine
    /// entries are gone (see [`crate::log`]).
    pub fn is_routine(self) -> bool {
        matches!(
            self,
            EntryKind::Stale
                | EntryKind::Ignored
                | EntryKind::Relayed
                | EntryKind::ConnectionAccepted
                | EntryKind::Expired
                | EntryKind::StrangerRefused
                | EntryKind::RosterProposal
        )
    }

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Accepted => "accepted",
            EntryKind::Stale => "stale",
            EntryKind::Ignored => "ignored",
            EntryKind::Rejected => "rejected",
            EntryKind::Equivocation => "equivocation",
            EntryKind::Quarantine => "quarantine",
            EntryKind::ProofRejected => "proof_rejected",
            EntryKind::MalformedFrame => "malformed_frame",
            EntryKind::Published => "published",
            EntryKind::Relayed => "relayed",
            EntryKind::ConnectionAccepted => "connection_accepted",
            EntryKind::ConnectionRefused => "connection_refused",
            EntryKind::Penalised => "penalised",
            EntryKind::Banned => "banned",
            EntryKind::Expired => "expired",
            EntryKind::Recovered => "recovered",
            EntryKind::Halted => "halted",
            EntryKind::ClockOffset => "clock_offset",
            EntryKind::LogResumed => "log_resumed",
            EntryKind::Misdirected => "misdirected",
            EntryKind::StrangerRefused => "stranger_refused",
            EntryKind::RosterProposal => "roster_proposal",
            EntryKind::RosterSigned => "roster_signed",
            EntryKind::RosterApplied => "roster_applied",
            EntryKind::RosterRefused => "roster_refused",
            EntryKind::RosterFork => "roster_fork",
        }
    }
}

impl fmt::Display for EntryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EntryKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        EntryKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = EntryKind::ALL.iter().map(|kind| kind.as_str()).collect();
                format!("unknown entry kind {text:?}; one of: {}", names.join(", "))
            })
    }
}

/// Longest reason kept, in bytes (longer ones are cut at a character boundary).
pub const MAX_REASON_BYTES: usize = 256;

/// Longest evidence kept, in bytes (two signed records of the largest size).
pub const MAX_EVIDENCE_BYTES: usize = 160 * 1024;

/// An entry to append: what happened, and the signed bytes that prove it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    /// When it happened (milliseconds since the Unix epoch).
    pub at_ms: u64,
    /// What happened.
    pub kind: EntryKind,
    /// The peer involved.
    pub peer: Option<NodeId>,
    /// The origin whose record it concerns.
    pub origin: Option<NodeId>,
    /// The record it concerns.
    pub record: Option<RecordKey>,
    /// Why, in words.
    pub reason: String,
    /// The signed record (or proof) bytes, stored with the entry.
    pub evidence: Option<Vec<u8>>,
}

/// An entry as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct Entry {
    /// Position in the log, from 1.
    pub index: u64,
    /// When it happened; never decreases along the log.
    pub at_ms: u64,
    /// What happened.
    pub kind: EntryKind,
    /// The peer involved.
    pub peer: Option<NodeId>,
    /// The origin whose record it concerns.
    pub origin: Option<NodeId>,
    /// The record it concerns.
    pub record: Option<RecordKey>,
    /// Why, in words.
    pub reason: String,
    /// The chain hash up to and including this entry.
    #[serde(with = "hex32")]
    #[cfg_attr(feature = "schemars", schemars(with = "crate::schema::ChainHash"))]
    pub hash: [u8; 32],
}

#[derive(Serialize)]
struct HashedFields<'a> {
    index: u64,
    at_ms: u64,
    kind: EntryKind,
    peer: &'a Option<NodeId>,
    origin: &'a Option<NodeId>,
    record: &'a Option<RecordKey>,
    reason: &'a str,
}

impl Entry {
    /// The chain hash of this entry after `previous`.
    pub fn chain_hash(&self, previous: &[u8; 32]) -> [u8; 32] {
        let fields = HashedFields {
            index: self.index,
            at_ms: self.at_ms,
            kind: self.kind,
            peer: &self.peer,
            origin: &self.origin,
            record: &self.record,
            reason: &self.reason,
        };
        let bytes = postcard::to_allocvec(&fields).unwrap_or_default();
        let mut hasher = blake3::Hasher::new_derive_key("tidings audit entry v1");
        hasher.update(previous);
        hasher.update(&bytes);
        *hasher.finalize().as_bytes()
    }
}

/// Cuts `reason` to [`MAX_REASON_BYTES`] at a character boundary.
pub(crate) fn bounded_reason(mut reason: String) -> String {
    if reason.len() > MAX_REASON_BYTES {
        let mut cut = MAX_REASON_BYTES;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
    }
    reason
}
