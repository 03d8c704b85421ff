//! The genesis and roster operations in their one canonical byte form.
//!
//! Everything here is encoded by hand in postcard's conventions (varints, length
//! prefixes, fixed arrays) and decoded by the bounded [`Reader`]: every length is
//! checked against its limit before anything is allocated, and only canonical
//! bytes decode (sorted members, shortest varints, known tags), so one value has
//! one byte form and one id.
//!
//! An operation's id is the hash of its *body* only. Approvals are signatures
//! over the body, so copies of one proposal that gathered different approvals
//! are the same operation and merge; two bodies for one epoch are two operations.

use std::fmt;
use std::sync::Arc;

use tidings_keys::{hex, FederationId, NodeId, Roster, Signature};

use crate::proto::codec::{check_size, write_varint, DecodeError, Field, Reader};
use crate::proto::limits::{
    MAX_APPROVALS, MAX_GENESIS_BYTES, MAX_LABEL_BYTES, MAX_OP_BODY_BYTES, MAX_ROSTER_MEMBERS,
    MAX_ROSTER_OP_BYTES,
};

/// The roster format this code reads and writes.
pub const ROSTER_VERSION: u8 = 1;

/// The id of a roster state: the genesis id at epoch 0, then the id of the
/// operation that made the state. The state is a function of the chain, so the
/// id of its last operation names it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RosterHash(pub [u8; 32]);

impl RosterHash {
    /// The first 12 hex characters, for tables and logs.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }
}

impl fmt::Display for RosterHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

impl fmt::Debug for RosterHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RosterHash({})", self.short())
    }
}

impl std::str::FromStr for RosterHash {
    type Err = hex::HexError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        hex::decode_exact::<32>(text.trim()).map(Self)
    }
}

impl serde::Serialize for RosterHash {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for RosterHash {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// How many approvals an operation needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threshold {
    /// `floor(2n/3) + 1` of the `n` current members, recomputed as `n` changes:
    /// two quorums then share an honest member while fewer than a third of the
    /// members are Byzantine.
    TwoThirds,
    /// A fixed number. It must stay a majority of the members (two quorums share
    /// at least one member) and at most the members there are.
    Fixed(u32),
}

impl Threshold {
    /// The approvals needed among `members` members.
    pub fn of(&self, members: usize) -> usize {
        match self {
            Threshold::TwoThirds => 2 * members / 3 + 1,
            Threshold::Fixed(k) => *k as usize,
        }
    }

    /// Why this threshold cannot govern `members` members, if it cannot.
    pub fn unusable_for(&self, members: usize) -> Option<&'static str> {
        let k = self.of(members);
        if members == 0 {
            Some("a roster needs at least one member")
        } else if k == 0 {
            Some("the threshold must be at least 1")
        } else if k > members {
            Some("the threshold is larger than the number of members")
        } else if 2 * k <= members {
            Some("the threshold must be a majority of the members, or two disjoint quorums could each approve a different operation")
        } else if k > MAX_APPROVALS {
            Some("the threshold is larger than the most approvals an operation can carry")
        } else {
            None
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Threshold::TwoThirds => out.push(0),
            Threshold::Fixed(k) => {
                out.push(1);
                write_varint(out, u64::from(*k));
            }
        }
    }

    fn read(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match reader.u8()? {
            0 => Ok(Threshold::TwoThirds),
            1 => {
                let k = reader.varint()?;
                u32::try_from(k)
                    .map(Threshold::Fixed)
                    .map_err(|_| DecodeError::VarintOverflow)
            }
            _ => Err(invalid(Field::Action, "unknown threshold kind")),
        }
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Threshold::TwoThirds => f.write_str("two-thirds"),
            Threshold::Fixed(k) => write!(f, "{k}"),
        }
    }
}

impl std::str::FromStr for Threshold {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "two-thirds" | "default" => Ok(Threshold::TwoThirds),
            number => number
                .parse::<u32>()
                .map(Threshold::Fixed)
                .map_err(|_| format!("{text:?} is not a number of approvals or \"two-thirds\"")),
        }
    }
}

fn invalid(field: Field, reason: &'static str) -> DecodeError {
    DecodeError::Invalid { field, reason }
}

/// Checks a member label: at most [`MAX_LABEL_BYTES`], no control characters.
pub fn check_label(label: &str) -> Result<(), &'static str> {
    if label.len() > MAX_LABEL_BYTES {
        Err("a label is at most 64 bytes")
    } else if label.is_empty() {
        Err("a label is not empty (leave it out instead)")
    } else if label.chars().any(char::is_control) {
        Err("a label has no control characters")
    } else {
        Ok(())
    }
}

fn write_label(out: &mut Vec<u8>, label: &Option<String>) {
    match label {
        None => out.push(0),
        Some(label) => {
            out.push(1);
            write_varint(out, label.len() as u64);
            out.extend_from_slice(label.as_bytes());
        }
    }
}

fn read_label(reader: &mut Reader<'_>) -> Result<Option<String>, DecodeError> {
    match reader.u8()? {
        0 => Ok(None),
        1 => {
            let label = reader.str(Field::Label, MAX_LABEL_BYTES)?;
            check_label(label).map_err(|reason| invalid(Field::Label, reason))?;
            Ok(Some(label.to_owned()))
        }
        _ => Err(invalid(Field::Label, "the option tag is not 0 or 1")),
    }
}

fn read_id(reader: &mut Reader<'_>) -> Result<NodeId, DecodeError> {
    Ok(NodeId::from_bytes(reader.array()?))
}

/// The roster at epoch 0: its members and threshold, made once from a roster
/// file. Its id is the hash of its bytes; nodes are configured with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Genesis {
    /// The federation it governs.
    pub federation: FederationId,
    /// Approvals an operation needs.
    pub threshold: Threshold,
    /// The first members, with their labels (shared: every node of a simulated
    /// federation holds the same genesis).
    pub members: Arc<Roster>,
}

/// Why a roster file cannot be a genesis.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenesisError {
    /// Too many members.
    #[error("a roster genesis has at most {MAX_ROSTER_MEMBERS} members, this one has {0}")]
    TooManyMembers(usize),
    /// A label is not allowed.
    #[error("member {id}: label {label:?}: {reason}")]
    Label {
        /// The member.
        id: NodeId,
        /// The label.
        label: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The threshold cannot govern these members.
    #[error("threshold {threshold} for {members} members: {reason}")]
    Threshold {
        /// The threshold.
        threshold: Threshold,
        /// How many members there are.
        members: usize,
        /// Why not.
        reason: &'static str,
    },
    /// The bytes are not a genesis. The cause is in the message, not a source:
    /// a reader that prints causes would print it twice.
    #[error("malformed roster genesis: {0}")]
    Malformed(DecodeError),
}

impl From<DecodeError> for GenesisError {
    fn from(error: DecodeError) -> Self {
        Self::Malformed(error)
    }
}

impl Genesis {
    /// The genesis of a roster file for `federation`; the file's `threshold`, if
    /// set, is a fixed threshold.
    pub fn from_roster(federation: FederationId, roster: &Roster) -> Result<Self, GenesisError> {
        let threshold = roster
            .threshold()
            .map_or(Threshold::TwoThirds, Threshold::Fixed);
        let mut members = Roster::new();
        for (id, label) in roster.iter() {
            if let Some(label) = label {
                check_label(label).map_err(|reason| GenesisError::Label {
                    id: *id,
                    label: label.to_owned(),
                    reason,
                })?;
            }
            members.insert(*id, label.map(str::to_owned));
        }
        members.set_threshold(roster.threshold());
        let genesis = Self {
            federation,
            threshold,
            members: Arc::new(members),
        };
        genesis.check()?;
        Ok(genesis)
    }

    /// The genesis of a roster too large to govern: its threshold needs more
    /// approvals than one operation carries ([`MAX_APPROVALS`]), so no operation
    /// can ever be valid and the membership is fixed. For simulations and
    /// benchmarks of federations beyond the size governance supports (about
    /// 6,000 members at two thirds); a node never runs on one, since decoding a
    /// genesis checks its threshold (and its size: such a genesis may hold
    /// more than [`MAX_ROSTER_MEMBERS`], the most a node decodes, since it is
    /// never sent).
    pub fn fixed_membership(
        federation: FederationId,
        roster: &Roster,
    ) -> Result<Self, GenesisError> {
        Ok(Self {
            federation,
            threshold: Threshold::TwoThirds,
            members: Arc::new(roster.clone()),
        })
    }

    fn check(&self) -> Result<(), GenesisError> {
        let count = self.members.len();
        if count > MAX_ROSTER_MEMBERS {
            return Err(GenesisError::TooManyMembers(count));
        }
        if let Some(reason) = self.threshold.unusable_for(count) {
            return Err(GenesisError::Threshold {
                threshold: self.threshold,
                members: count,
                reason,
            });
        }
        Ok(())
    }

    /// The canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![ROSTER_VERSION];
        out.extend_from_slice(self.federation.as_bytes());
        self.threshold.write(&mut out);
        write_varint(&mut out, self.members.len() as u64);
        for (id, label) in self.members.iter() {
            out.extend_from_slice(id.as_bytes());
            write_label(&mut out, &label.map(str::to_owned));
        }
        out
    }

    /// Decodes canonical genesis bytes (members in id order, each once, with
    /// usable keys, and a threshold that can govern them).
    pub fn decode(bytes: &[u8]) -> Result<Self, GenesisError> {
        check_size(Field::RosterGenesis, MAX_GENESIS_BYTES, bytes.len())
            .map_err(GenesisError::from)?;
        let mut reader = Reader::new(bytes);
        let version = reader.u8()?;
        if version != ROSTER_VERSION {
            return Err(invalid(Field::RosterGenesis, "unsupported roster version").into());
        }
        let federation = FederationId::from_bytes(reader.array()?);
        let threshold = Threshold::read(&mut reader)?;
        let count = reader.count(Field::Members, MAX_ROSTER_MEMBERS)?;
        let mut members = Roster::new();
        let mut last: Option<NodeId> = None;
        for _ in 0..count {
            let id = read_id(&mut reader)?;
            if last.is_some_and(|last| last >= id) {
                return Err(DecodeError::NotSorted {
                    field: Field::Members,
                }
                .into());
            }
            if id.verifying_key().is_err() {
                return Err(invalid(Field::Members, "a member's key is not usable").into());
            }
            last = Some(id);
            members.insert(id, read_label(&mut reader)?);
        }
        reader.finish()?;
        if let Threshold::Fixed(k) = threshold {
            members.set_threshold(Some(k));
        }
        let genesis = Self {
            federation,
            threshold,
            members: Arc::new(members),
        };
        genesis.check()?;
        Ok(genesis)
    }

    /// The genesis id: `blake3::derive_key("tidings roster genesis v1", bytes)`.
    pub fn id(&self) -> RosterHash {
        RosterHash(blake3::derive_key(
            "tidings roster genesis v1",
            &self.encode(),
        ))
    }
}

/// What an operation changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Admit a new key (it countersigns the operation).
    Add {
        /// The new member.
        member: NodeId,
        /// Its label.
        label: Option<String>,
    },
    /// Remove a member: its connections close and its records leave.
    Remove {
        /// The member.
        member: NodeId,
    },
    /// Replace a member's key (the new key countersigns); its record chain
    /// continues under the new key, above the old key's highest seq.
    Rotate {
        /// The member's current key.
        from: NodeId,
        /// Its new key.
        to: NodeId,
    },
    /// Change the threshold.
    Threshold(Threshold),
    /// Set or clear a member's label.
    Relabel {
        /// The member.
        member: NodeId,
        /// The new label.
        label: Option<String>,
    },
    /// Lift an origin's quarantine; its chain restarts above `above_seq` (the
    /// highest seq in the proof that quarantined it, or higher).
    Pardon {
        /// The quarantined member.
        origin: NodeId,
        /// Records at or below this seq stay stale.
        above_seq: u64,
    },
}

const ACTION_ADD: u8 = 1;
const ACTION_REMOVE: u8 = 2;
const ACTION_ROTATE: u8 = 3;
const ACTION_THRESHOLD: u8 = 4;
const ACTION_RELABEL: u8 = 5;
const ACTION_PARDON: u8 = 6;

impl Action {
    /// The key that must countersign: the one being admitted.
    pub fn new_key(&self) -> Option<NodeId> {
        match self {
            Action::Add { member, .. } => Some(*member),
            Action::Rotate { to, .. } => Some(*to),
            _ => None,
        }
    }

    /// A short name: `add`, `remove`, `rotate`, `threshold`, `relabel`, `pardon`.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Add { .. } => "add",
            Action::Remove { .. } => "remove",
            Action::Rotate { .. } => "rotate",
            Action::Threshold(_) => "threshold",
            Action::Relabel { .. } => "relabel",
            Action::Pardon { .. } => "pardon",
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Action::Add { member, label } => {
                out.push(ACTION_ADD);
                out.extend_from_slice(member.as_bytes());
                write_label(out, label);
            }
            Action::Remove { member } => {
                out.push(ACTION_REMOVE);
                out.extend_from_slice(member.as_bytes());
            }
            Action::Rotate { from, to } => {
                out.push(ACTION_ROTATE);
                out.extend_from_slice(from.as_bytes());
                out.extend_from_slice(to.as_bytes());
            }
            Action::Threshold(threshold) => {
                out.push(ACTION_THRESHOLD);
                threshold.write(out);
            }
            Action::Relabel { member, label } => {
                out.push(ACTION_RELABEL);
                out.extend_from_slice(member.as_bytes());
                write_label(out, label);
            }
            Action::Pardon { origin, above_seq } => {
                out.push(ACTION_PARDON);
                out.extend_from_slice(origin.as_bytes());
                write_varint(out, *above_seq);
            }
        }
    }

    fn read(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match reader.u8()? {
            ACTION_ADD => Action::Add {
                member: read_id(reader)?,
                label: read_label(reader)?,
            },
            ACTION_REMOVE => Action::Remove {
                member: read_id(reader)?,
            },
            ACTION_ROTATE => Action::Rotate {
                from: read_id(reader)?,
                to: read_id(reader)?,
            },
            ACTION_THRESHOLD => Action::Threshold(Threshold::read(reader)?),
            ACTION_RELABEL => Action::Relabel {
                member: read_id(reader)?,
                label: read_label(reader)?,
            },
            ACTION_PARDON => Action::Pardon {
                origin: read_id(reader)?,
                above_seq: reader.varint()?,
            },
            _ => return Err(invalid(Field::Action, "unknown action")),
        })
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = |label: &Option<String>| match label {
            Some(label) => format!(" ({label})"),
            None => String::new(),
        };
        match self {
            Action::Add { member, label: l } => write!(f, "add {member}{}", label(l)),
            Action::Remove { member } => write!(f, "remove {member}"),
            Action::Rotate { from, to } => write!(f, "rotate {from} to {to}"),
            Action::Threshold(threshold) => write!(f, "threshold {threshold}"),
            Action::Relabel { member, label: l } => match l {
                Some(l) => write!(f, "relabel {member} as {l}"),
                None => write!(f, "clear the label of {member}"),
            },
            Action::Pardon { origin, above_seq } => {
                write!(
                    f,
                    "pardon {origin} (its chain restarts above seq {above_seq})"
                )
            }
        }
    }
}

/// What an operation says, without its signatures: this is what approvals and
/// the countersignature sign, and its hash is the operation's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpBody {
    /// The federation.
    pub federation: FederationId,
    /// The epoch this operation makes: the previous state's plus one.
    pub epoch: u64,
    /// The id of the state it changes.
    pub prev: RosterHash,
    /// The member who proposed it (it must approve it too).
    pub proposer: NodeId,
    /// When it was proposed (milliseconds since the Unix epoch).
    pub issued_at_ms: u64,
    /// After this, members no longer approve it and nodes drop it unapproved.
    pub expires_at_ms: u64,
    /// What it changes.
    pub action: Action,
}

impl OpBody {
    /// The canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![ROSTER_VERSION];
        out.extend_from_slice(self.federation.as_bytes());
        write_varint(&mut out, self.epoch);
        out.extend_from_slice(&self.prev.0);
        out.extend_from_slice(self.proposer.as_bytes());
        write_varint(&mut out, self.issued_at_ms);
        write_varint(&mut out, self.expires_at_ms);
        self.action.write(&mut out);
        out
    }

    /// Decodes canonical body bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        check_size(Field::RosterOp, MAX_OP_BODY_BYTES, bytes.len())?;
        let mut reader = Reader::new(bytes);
        let version = reader.u8()?;
        if version != ROSTER_VERSION {
            return Err(invalid(Field::RosterOp, "unsupported roster version"));
        }
        let body = Self {
            federation: FederationId::from_bytes(reader.array()?),
            epoch: reader.varint()?,
            prev: RosterHash(reader.array()?),
            proposer: read_id(&mut reader)?,
            issued_at_ms: reader.varint()?,
            expires_at_ms: reader.varint()?,
            action: Action::read(&mut reader)?,
        };
        reader.finish()?;
        Ok(body)
    }

    /// The canonical bytes of an action alone (what a new key countersigns).
    pub fn action_bytes(action: &Action) -> Vec<u8> {
        let mut out = Vec::new();
        action.write(&mut out);
        out
    }

    /// The operation id: `blake3::derive_key("tidings roster op v1", body)`.
    pub fn id(&self) -> RosterHash {
        RosterHash(blake3::derive_key("tidings roster op v1", &self.encode()))
    }
}

/// One member's signature over an operation's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Approval {
    /// The member.
    pub signer: NodeId,
    /// Its signature (domain `RosterOp`).
    pub signature: Signature,
}

/// An operation as it travels: body, the new key's countersignature (for add
/// and rotate), and the approvals gathered so far, in signer order. Nothing
/// here is checked but the encoding; [`super::RosterState::check`] checks the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedOp {
    /// What it says.
    pub body: OpBody,
    /// The new key's signature over the body (domain `RosterKey`).
    pub countersignature: Option<Signature>,
    /// Members' signatures over the body, in signer order (a signer listed twice
    /// is kept, so that validation can name it).
    pub approvals: Vec<Approval>,
}

impl SignedOp {
    /// The operation id (of its body).
    pub fn id(&self) -> RosterHash {
        self.body.id()
    }

    /// The canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        let body = self.body.encode();
        let mut out = Vec::with_capacity(body.len() + 80 + self.approvals.len() * 96);
        write_varint(&mut out, body.len() as u64);
        out.extend_from_slice(&body);
        match &self.countersignature {
            None => out.push(0),
            Some(signature) => {
                out.push(1);
                out.extend_from_slice(&signature.0);
            }
        }
        write_varint(&mut out, self.approvals.len() as u64);
        for approval in &self.approvals {
            out.extend_from_slice(approval.signer.as_bytes());
            out.extend_from_slice(&approval.signature.0);
        }
        out
    }

    /// Decodes an operation; approvals must come in signer order.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        check_size(Field::RosterOp, MAX_ROSTER_OP_BYTES, bytes.len())?;
        let mut reader = Reader::new(bytes);
        let op = Self::read(&mut reader)?;
        reader.finish()?;
        Ok(op)
    }

    /// Reads an operation from inside a larger value.
    pub fn read(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let body = OpBody::decode(reader.bytes(Field::RosterOp, MAX_OP_BODY_BYTES)?)?;
        let countersignature = match reader.u8()? {
            0 => None,
            1 => Some(Signature(reader.array()?)),
            _ => return Err(invalid(Field::RosterOp, "the option tag is not 0 or 1")),
        };
        let count = reader.count(Field::Approvals, MAX_APPROVALS)?;
        let mut approvals: Vec<Approval> = Vec::with_capacity(count);
        for _ in 0..count {
            let approval = Approval {
                signer: read_id(reader)?,
                signature: Signature(reader.array()?),
            };
            if approvals
                .last()
                .is_some_and(|last| last.signer > approval.signer)
            {
                return Err(DecodeError::NotSorted {
                    field: Field::Approvals,
                });
            }
            approvals.push(approval);
        }
        Ok(Self {
            body,
            countersignature,
            approvals,
        })
    }
}
