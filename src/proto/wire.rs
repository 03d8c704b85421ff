//! Wire messages between nodes: one versioned, length-bounded frame each.
//!
//! A frame is `version (1) ‖ type (1) ‖ payload`, at most
//! [`MAX_FRAME_BYTES`](super::limits::MAX_FRAME_BYTES). Payloads use postcard's
//! encoding conventions (varint lengths and integers) and are decoded by the
//! bounded reader of [`codec`](super::codec): every count is checked against its
//! limit before anything is allocated, and nothing a peer sends can panic.
//!
//! | type | message | payload |
//! |---|---|---|
//! | 1 | `Sync` | ranges, each a prefix and a fingerprint or a list of holdings |
//! | 2 | `Records` | signed records (each its own wire form, checked on ingest) |
//! | 3 | `Want` | origins whose records the sender asks for |
//! | 4 | `Proofs` | equivocation proofs (each its own wire form) |
//! | 5 | `Open` | the sender's clock, then ranges as in `Sync`: the opening of an exchange |
//! | 6 | `RosterHead` | the sender's roster epoch and head, and a digest of its open proposals |
//! | 7 | `RosterOps` | roster operations and proposals (each its own wire form) |
//! | 8 | `RosterWant` | operations after an epoch, and open proposals by id, the sender asks for |
//! | 9 | `RosterFork` | a roster fork proof (its own wire form) |
//! | 10 | `Push` | signed records pushed as news (as in `Records`; see [`spread`](super::spread)) |
//! | 11 | `Have` | announced records: origin, seq and tag each, sorted by origin |
//! | 12 | `Graft` | origins whose announced records the sender asks for (as in `Want`) |
//! | 13 | `Prune` | nothing: the sender wants no more pushes |
//! | 14 | `Leave` | nothing: the sender drops (or refuses) the neighbour link |
//!
//! An exchange opens with `RosterHead` before `Open`: the roster travels ahead
//! of records, so a node behind on the roster catches up before it judges them.
//!
//! Records and proofs travel as opaque bytes: the directory decodes and verifies
//! each one on its own, so one bad record costs only its own verdict. Ranges must
//! come in order and be disjoint, and wanted origins sorted and unique: a request
//! that names one thing many times is malformed rather than served many times.

use std::ops::RangeInclusive;

use tidings_keys::NodeId;

use super::codec::{varint_len, write_varint, DecodeError, Field, Reader};
use super::directory::Holding;
use super::limits::*;
use super::roster::RosterHash;

/// The wire protocol version.
pub const WIRE_VERSION: u8 = 1;

const TYPE_SYNC: u8 = 1;
const TYPE_RECORDS: u8 = 2;
const TYPE_WANT: u8 = 3;
const TYPE_PROOFS: u8 = 4;
const TYPE_OPEN: u8 = 5;
const TYPE_ROSTER_HEAD: u8 = 6;
const TYPE_ROSTER_OPS: u8 = 7;
const TYPE_ROSTER_WANT: u8 = 8;
const TYPE_ROSTER_FORK: u8 = 9;
const TYPE_PUSH: u8 = 10;
const TYPE_HAVE: u8 = 11;
const TYPE_GRAFT: u8 = 12;
const TYPE_PRUNE: u8 = 13;
const TYPE_LEAVE: u8 = 14;

/// A set of origin ids: those whose first `depth` hex digits equal `bits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Prefix {
    depth: u8,
    bits: u64,
}

impl Prefix {
    /// Every origin.
    pub const ROOT: Prefix = Prefix { depth: 0, bits: 0 };

    /// A prefix of `depth` hex digits with value `bits`, if valid.
    pub fn new(depth: u8, bits: u64) -> Option<Self> {
        if depth > MAX_PREFIX_DEPTH {
            return None;
        }
        let fits = depth == MAX_PREFIX_DEPTH || bits < 1u64 << (4 * u32::from(depth));
        fits.then_some(Self { depth, bits })
    }

    /// Number of hex digits fixed.
    pub fn depth(&self) -> u8 {
        self.depth
    }

    /// Whether this prefix can be split further.
    pub fn can_split(&self) -> bool {
        self.depth < MAX_PREFIX_DEPTH
    }

    /// The sixteen prefixes one digit longer (none at the maximum depth).
    pub fn children(&self) -> impl Iterator<Item = Prefix> {
        let (depth, bits) = (self.depth + 1, self.bits << 4);
        let digits = if self.can_split() { 0..16u64 } else { 0..0 };
        digits.map(move |digit| Prefix {
            depth,
            bits: bits | digit,
        })
    }

    /// The first and last origin id with this prefix.
    pub fn range(&self) -> RangeInclusive<NodeId> {
        let mut low = [0u8; 32];
        let mut high = [0xffu8; 32];
        if self.depth > 0 {
            let shift = 64 - 4 * u32::from(self.depth);
            let top = self.bits << shift;
            let mask = if shift == 0 {
                0
            } else {
                u64::MAX >> (64 - shift)
            };
            low[..8].copy_from_slice(&top.to_be_bytes());
            high[..8].copy_from_slice(&(top | mask).to_be_bytes());
        }
        NodeId::from_bytes(low)..=NodeId::from_bytes(high)
    }

    /// Whether `origin` has this prefix.
    pub fn contains(&self, origin: &NodeId) -> bool {
        self.range().contains(origin)
    }
}

/// What one side holds under a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Summary {
    /// XOR of holding fingerprints, and their number.
    Fingerprint {
        /// The fingerprint.
        fingerprint: u64,
        /// The number of holdings.
        count: u32,
    },
    /// Every holding, sorted by origin.
    Holdings(Vec<Holding>),
}

/// A prefix and its summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// Which origins.
    pub prefix: Prefix,
    /// What the sender holds for them.
    pub summary: Summary,
}

/// A message between two nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// The first message of an exchange: the sender's clock (milliseconds since
    /// the Unix epoch, as its state machine sees it), and what it holds, as in
    /// `Sync`. The clock lets each node compare its own with its peers'.
    Open {
        /// The sender's time when it opened the exchange.
        clock_ms: u64,
        /// What the sender holds (the root range when it opens).
        ranges: Vec<Range>,
    },
    /// Set reconciliation: what the sender holds, range by range.
    Sync(Vec<Range>),
    /// Signed records, each in its own wire form.
    Records(Vec<Vec<u8>>),
    /// Origins whose current records (or proofs) the sender asks for.
    Want(Vec<NodeId>),
    /// Equivocation proofs, each in its own wire form.
    Proofs(Vec<Vec<u8>>),
    /// Where the sender's roster stands: sent ahead of `Open`, and answered
    /// (with `reply` set, never answered again) when the two differ.
    RosterHead(RosterHead),
    /// Roster operations and proposals, each in its own wire form.
    RosterOps(Vec<Vec<u8>>),
    /// What the sender asks for: the chain after `after`, and open proposals.
    RosterWant {
        /// The sender's epoch, if it wants the operations after it.
        after: Option<u64>,
        /// Open proposals, sorted and unique.
        proposals: Vec<RosterHash>,
    },
    /// A roster fork proof in its wire form.
    RosterFork(Vec<u8>),
    /// Records pushed as news along an eager link.
    Push(Vec<Vec<u8>>),
    /// Records the sender accepted lately, announced along a lazy link.
    Have(Vec<Holding>),
    /// Announced records the sender asks for; the link turns eager.
    Graft(Vec<NodeId>),
    /// The sender wants no more pushes: the link turns lazy.
    Prune,
    /// The sender drops the neighbour link, or refuses it (it has as many as
    /// it takes): the receiver chooses another neighbour.
    Leave,
}

/// A node's roster position and open proposals, as sent in [`Message::RosterHead`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterHead {
    /// The epoch.
    pub epoch: u64,
    /// The id of the state.
    pub head: RosterHash,
    /// Open proposals and a fingerprint of the approvals held, sorted by id.
    pub pending: Vec<(RosterHash, u64)>,
    /// Whether this answers another head (and must not be answered).
    pub reply: bool,
    /// Whether the sender holds a roster fork proof.
    pub forked: bool,
}

impl Message {
    /// A short name for logs and counters.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Open { .. } => "open",
            Message::Sync(_) => "sync",
            Message::Records(_) => "records",
            Message::Want(_) => "want",
            Message::Proofs(_) => "proofs",
            Message::RosterHead(_) => "roster-head",
            Message::RosterOps(_) => "roster-ops",
            Message::RosterWant { .. } => "roster-want",
            Message::RosterFork(_) => "roster-fork",
            Message::Push(_) => "push",
            Message::Have(_) => "have",
            Message::Graft(_) => "graft",
            Message::Prune => "prune",
            Message::Leave => "leave",
        }
    }

    /// The frame bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![WIRE_VERSION];
        match self {
            Message::Open { clock_ms, ranges } => {
                out.push(TYPE_OPEN);
                write_varint(&mut out, *clock_ms);
                encode_ranges(&mut out, ranges);
            }
            Message::Sync(ranges) => {
                out.push(TYPE_SYNC);
                encode_ranges(&mut out, ranges);
            }
            Message::Records(items)
            | Message::Push(items)
            | Message::Proofs(items)
            | Message::RosterOps(items) => {
                out.push(match self {
                    Message::Records(_) => TYPE_RECORDS,
                    Message::Push(_) => TYPE_PUSH,
                    Message::Proofs(_) => TYPE_PROOFS,
                    _ => TYPE_ROSTER_OPS,
                });
                write_varint(&mut out, items.len() as u64);
                for item in items {
                    write_varint(&mut out, item.len() as u64);
                    out.extend_from_slice(item);
                }
            }
            Message::Want(origins) | Message::Graft(origins) => {
                out.push(if matches!(self, Message::Want(_)) {
                    TYPE_WANT
                } else {
                    TYPE_GRAFT
                });
                write_varint(&mut out, origins.len() as u64);
                for origin in origins {
                    out.extend_from_slice(origin.as_bytes());
                }
            }
            Message::RosterHead(head) => {
                out.push(TYPE_ROSTER_HEAD);
                write_varint(&mut out, head.epoch);
                out.extend_from_slice(&head.head.0);
                out.push(u8::from(head.reply) | (u8::from(head.forked) << 1));
                write_varint(&mut out, head.pending.len() as u64);
                for (id, fingerprint) in &head.pending {
                    out.extend_from_slice(&id.0);
                    out.extend_from_slice(&fingerprint.to_le_bytes());
                }
            }
            Message::RosterWant { after, proposals } => {
                out.push(TYPE_ROSTER_WANT);
                match after {
                    None => out.push(0),
                    Some(epoch) => {
                        out.push(1);
                        write_varint(&mut out, *epoch);
                    }
                }
                write_varint(&mut out, proposals.len() as u64);
                for id in proposals {
                    out.extend_from_slice(&id.0);
                }
            }
            Message::RosterFork(proof) => {
                out.push(TYPE_ROSTER_FORK);
                write_varint(&mut out, proof.len() as u64);
                out.extend_from_slice(proof);
            }
            Message::Have(holdings) => {
                out.push(TYPE_HAVE);
                write_varint(&mut out, holdings.len() as u64);
                for holding in holdings {
                    encode_holding(&mut out, holding);
                }
            }
            Message::Prune => out.push(TYPE_PRUNE),
            Message::Leave => out.push(TYPE_LEAVE),
        }
        out
    }

    /// Whether `frame` says it is a `Records` or `Push` message (its version
    /// and type bytes only; nothing else is checked).
    pub fn carries_records(frame: &[u8]) -> bool {
        frame.first() == Some(&WIRE_VERSION)
            && matches!(frame.get(1), Some(&TYPE_RECORDS | &TYPE_PUSH))
    }

    /// Decodes one frame.
    pub fn decode(frame: &[u8]) -> Result<Self, DecodeError> {
        if frame.len() > MAX_FRAME_BYTES {
            return Err(DecodeError::Oversized {
                field: Field::Frame,
                max: MAX_FRAME_BYTES,
                found: frame.len(),
            });
        }
        let mut reader = Reader::new(frame);
        let version = reader.u8()?;
        if version != WIRE_VERSION {
            return Err(DecodeError::UnsupportedWireVersion(version));
        }
        let message = match reader.u8()? {
            TYPE_OPEN => Message::Open {
                clock_ms: reader.varint()?,
                ranges: decode_ranges(&mut reader)?,
            },
            TYPE_SYNC => Message::Sync(decode_ranges(&mut reader)?),
            TYPE_RECORDS => Message::Records(decode_blobs(
                &mut reader,
                Field::Records,
                MAX_RECORDS_PER_MESSAGE,
                MAX_SIGNED_RECORD_BYTES,
            )?),
            TYPE_WANT => Message::Want(decode_origins(&mut reader)?),
            TYPE_GRAFT => Message::Graft(decode_origins(&mut reader)?),
            TYPE_PUSH => Message::Push(decode_blobs(
                &mut reader,
                Field::Records,
                MAX_RECORDS_PER_MESSAGE,
                MAX_SIGNED_RECORD_BYTES,
            )?),
            TYPE_HAVE => {
                let count = reader.count(Field::Announced, MAX_ANNOUNCED)?;
                let mut holdings: Vec<Holding> = Vec::with_capacity(count);
                for _ in 0..count {
                    let holding = decode_holding(&mut reader)?;
                    if holdings
                        .last()
                        .is_some_and(|last| last.origin >= holding.origin)
                    {
                        return Err(DecodeError::NotSorted {
                            field: Field::Announced,
                        });
                    }
                    holdings.push(holding);
                }
                Message::Have(holdings)
            }
            TYPE_PRUNE => Message::Prune,
            TYPE_LEAVE => Message::Leave,
            TYPE_PROOFS => Message::Proofs(decode_blobs(
                &mut reader,
                Field::Proofs,
                MAX_PROOFS_PER_MESSAGE,
                MAX_PROOF_BYTES,
            )?),
            TYPE_ROSTER_HEAD => {
                let epoch = reader.varint()?;
                let head = RosterHash(reader.array()?);
                let flags = reader.u8()?;
                if flags > 3 {
                    return Err(DecodeError::Invalid {
                        field: Field::RosterOps,
                        reason: "unknown roster head flags",
                    });
                }
                let count = reader.count(Field::RosterOps, MAX_PENDING_PROPOSALS)?;
                let mut pending: Vec<(RosterHash, u64)> = Vec::with_capacity(count);
                for _ in 0..count {
                    let id = RosterHash(reader.array()?);
                    if pending.last().is_some_and(|(last, _)| *last >= id) {
                        return Err(DecodeError::NotSorted {
                            field: Field::RosterOps,
                        });
                    }
                    pending.push((id, u64::from_le_bytes(reader.array()?)));
                }
                Message::RosterHead(RosterHead {
                    epoch,
                    head,
                    pending,
                    reply: flags & 1 == 1,
                    forked: flags & 2 == 2,
                })
            }
            TYPE_ROSTER_OPS => Message::RosterOps(decode_blobs(
                &mut reader,
                Field::RosterOps,
                MAX_ROSTER_OPS_PER_MESSAGE,
                MAX_ROSTER_OP_BYTES,
            )?),
            TYPE_ROSTER_WANT => {
                let after = match reader.u8()? {
                    0 => None,
                    1 => Some(reader.varint()?),
                    _ => {
                        return Err(DecodeError::Invalid {
                            field: Field::RosterOps,
                            reason: "the option tag is not 0 or 1",
                        })
                    }
                };
                let count = reader.count(Field::RosterOps, MAX_PENDING_PROPOSALS)?;
                let mut proposals: Vec<RosterHash> = Vec::with_capacity(count);
                for _ in 0..count {
                    let id = RosterHash(reader.array()?);
                    if proposals.last().is_some_and(|last| *last >= id) {
                        return Err(DecodeError::NotSorted {
                            field: Field::RosterOps,
                        });
                    }
                    proposals.push(id);
                }
                Message::RosterWant { after, proposals }
            }
            TYPE_ROSTER_FORK => Message::RosterFork(
                reader
                    .bytes(Field::RosterFork, MAX_ROSTER_FORK_BYTES)?
                    .to_vec(),
            ),
            other => return Err(DecodeError::UnknownMessageType(other)),
        };
        reader.finish()?;
        Ok(message)
    }
}

/// The length of the `Records` (or `Push`) frame that carries records of
/// these lengths, without building it: the simulator's federation-scale engine
/// counts the bytes of frames it does not copy.
pub fn records_frame_len(lens: impl IntoIterator<Item = usize>) -> usize {
    let (count, body) = lens.into_iter().fold((0u64, 0usize), |(count, body), len| {
        (count + 1, body + varint_len(len as u64) + len)
    });
    2 + varint_len(count) + body
}

fn encode_holding(out: &mut Vec<u8>, holding: &Holding) {
    out.extend_from_slice(holding.origin.as_bytes());
    write_varint(out, holding.seq);
    out.extend_from_slice(&holding.tag.to_le_bytes());
}

fn decode_holding(reader: &mut Reader<'_>) -> Result<Holding, DecodeError> {
    Ok(Holding {
        origin: NodeId::from_bytes(reader.array()?),
        seq: reader.varint()?,
        tag: u64::from_le_bytes(reader.array()?),
    })
}

/// Origins, sorted and unique: asking twice for one record gets it once.
fn decode_origins(reader: &mut Reader<'_>) -> Result<Vec<NodeId>, DecodeError> {
    let count = reader.count(Field::Wants, MAX_WANTS)?;
    let mut origins: Vec<NodeId> = Vec::with_capacity(count);
    for _ in 0..count {
        let origin = NodeId::from_bytes(reader.array()?);
        if origins.last().is_some_and(|last| *last >= origin) {
            return Err(DecodeError::NotSorted {
                field: Field::Wants,
            });
        }
        origins.push(origin);
    }
    Ok(origins)
}

fn encode_ranges(out: &mut Vec<u8>, ranges: &[Range]) {
    write_varint(out, ranges.len() as u64);
    for range in ranges {
        encode_range(out, range);
    }
}

fn encode_range(out: &mut Vec<u8>, range: &Range) {
    out.push(range.prefix.depth);
    write_varint(out, range.prefix.bits);
    match &range.summary {
        Summary::Fingerprint { fingerprint, count } => {
            out.push(0);
            out.extend_from_slice(&fingerprint.to_le_bytes());
            out.extend_from_slice(&count.to_le_bytes());
        }
        Summary::Holdings(holdings) => {
            out.push(1);
            write_varint(out, holdings.len() as u64);
            for holding in holdings {
                encode_holding(out, holding);
            }
        }
    }
}

fn decode_ranges(reader: &mut Reader<'_>) -> Result<Vec<Range>, DecodeError> {
    let count = reader.count(Field::Ranges, MAX_SYNC_RANGES)?;
    let mut ranges = Vec::with_capacity(count);
    for _ in 0..count {
        let depth = reader.u8()?;
        let bits = reader.varint()?;
        let prefix = Prefix::new(depth, bits).ok_or(DecodeError::Invalid {
            field: Field::Prefix,
            reason: "digits beyond the prefix depth",
        })?;
        let summary = match reader.u8()? {
            0 => Summary::Fingerprint {
                fingerprint: u64::from_le_bytes(reader.array()?),
                count: u32::from_le_bytes(reader.array()?),
            },
            1 => Summary::Holdings(decode_holdings(reader, &prefix)?),
            _ => {
                return Err(DecodeError::Invalid {
                    field: Field::Ranges,
                    reason: "unknown summary kind",
                })
            }
        };
        // Sorted and disjoint: no origin is described twice in one message.
        if ranges
            .last()
            .is_some_and(|last: &Range| last.prefix.range().end() >= prefix.range().start())
        {
            return Err(DecodeError::NotSorted {
                field: Field::Ranges,
            });
        }
        ranges.push(Range { prefix, summary });
    }
    Ok(ranges)
}

fn decode_holdings(reader: &mut Reader<'_>, prefix: &Prefix) -> Result<Vec<Holding>, DecodeError> {
    let count = reader.count(Field::Holdings, MAX_RANGE_HOLDINGS)?;
    let mut holdings: Vec<Holding> = Vec::with_capacity(count);
    for _ in 0..count {
        let holding = decode_holding(reader)?;
        if !prefix.contains(&holding.origin) {
            return Err(DecodeError::Invalid {
                field: Field::Holdings,
                reason: "origin outside the range's prefix",
            });
        }
        if holdings
            .last()
            .is_some_and(|last| last.origin >= holding.origin)
        {
            return Err(DecodeError::NotSorted {
                field: Field::Holdings,
            });
        }
        holdings.push(holding);
    }
    Ok(holdings)
}

fn decode_blobs(
    reader: &mut Reader<'_>,
    field: Field,
    max_count: usize,
    max_bytes: usize,
) -> Result<Vec<Vec<u8>>, DecodeError> {
    let count = reader.count(field, max_count)?;
    let mut blobs = Vec::with_capacity(count);
    for _ in 0..count {
        blobs.push(reader.bytes(field, max_bytes)?.to_vec());
    }
    Ok(blobs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_records_frame_length_is_that_of_the_encoded_frame() {
        for lens in [vec![], vec![0], vec![3, 200], vec![127, 128, 70_000]] {
            let items: Vec<Vec<u8>> = lens.iter().map(|&len| vec![7; len]).collect();
            assert_eq!(
                records_frame_len(lens.iter().copied()),
                Message::Records(items.clone()).encode().len()
            );
            assert_eq!(
                records_frame_len(lens.iter().copied()),
                Message::Push(items).encode().len()
            );
        }
    }

    fn holding(first: u8, seq: u64) -> Holding {
        let mut origin = [first; 32];
        origin[1] = seq as u8;
        Holding {
            origin: NodeId::from_bytes(origin),
            seq,
            tag: seq * 7,
        }
    }

    #[test]
    fn prefixes_split_the_id_space() {
        let root = Prefix::ROOT;
        assert_eq!(
            root.range(),
            NodeId::from_bytes([0; 32])..=NodeId::from_bytes([0xff; 32])
        );
        let children: Vec<Prefix> = root.children().collect();
        assert_eq!(children.len(), 16);
        let id = NodeId::from_bytes([0xa7; 32]);
        assert!(children[0xa].contains(&id));
        assert!(!children[0xb].contains(&id));
        let grandchild = children[0xa].children().nth(7).unwrap();
        assert!(grandchild.contains(&id));
        let deepest = Prefix::new(MAX_PREFIX_DEPTH, u64::MAX).unwrap();
        assert!(!deepest.can_split());
        assert!(deepest.contains(&NodeId::from_bytes([0xff; 32])));
        assert!(Prefix::new(1, 16).is_none());
        assert!(Prefix::new(MAX_PREFIX_DEPTH + 1, 0).is_none());
    }

    #[test]
    fn every_message_round_trips() {
        let messages = [
            Message::Sync(vec![
                Range {
                    prefix: Prefix::new(1, 0x3).unwrap(),
                    summary: Summary::Fingerprint {
                        fingerprint: 0xdead_beef,
                        count: 3,
                    },
                },
                Range {
                    prefix: Prefix::new(1, 0xa).unwrap(),
                    summary: Summary::Holdings(vec![holding(0xa0, 1), holding(0xa0, 2)]),
                },
            ]),
            Message::Open {
                clock_ms: 1_763_700_000_000,
                ranges: vec![Range {
                    prefix: Prefix::ROOT,
                    summary: Summary::Fingerprint {
                        fingerprint: 7,
                        count: 1,
                    },
                }],
            },
            Message::Records(vec![vec![1, 2, 3], vec![]]),
            Message::Want(vec![NodeId::from_bytes([4; 32])]),
            Message::Proofs(vec![vec![9; 10]]),
            Message::Push(vec![vec![5; 3]]),
            Message::Have(vec![holding(0x10, 1), holding(0xa0, 1 << 40)]),
            Message::Graft(vec![
                NodeId::from_bytes([1; 32]),
                NodeId::from_bytes([2; 32]),
            ]),
            Message::Graft(vec![]),
            Message::Prune,
            Message::Leave,
        ];
        for message in messages {
            assert_eq!(Message::decode(&message.encode()).unwrap(), message);
        }
    }

    #[test]
    fn bad_frames_are_typed_errors() {
        assert_eq!(Message::decode(&[]), Err(DecodeError::Truncated));
        assert_eq!(
            Message::decode(&[2, 1, 0]),
            Err(DecodeError::UnsupportedWireVersion(2))
        );
        assert_eq!(
            Message::decode(&[1, 99]),
            Err(DecodeError::UnknownMessageType(99))
        );
        assert!(matches!(
            Message::decode(&vec![1; MAX_FRAME_BYTES + 1]),
            Err(DecodeError::Oversized { .. })
        ));
        // A sync claiming a million ranges is refused on the count.
        let mut frame = vec![1, TYPE_SYNC];
        write_varint(&mut frame, 1_000_000);
        assert!(matches!(
            Message::decode(&frame),
            Err(DecodeError::TooMany { .. })
        ));
        // Holdings outside their prefix, or out of order.
        let outside = Message::Sync(vec![Range {
            prefix: Prefix::new(1, 0xb).unwrap(),
            summary: Summary::Holdings(vec![holding(0xa0, 1)]),
        }]);
        assert!(matches!(
            Message::decode(&outside.encode()),
            Err(DecodeError::Invalid { .. })
        ));
        let unsorted = Message::Sync(vec![Range {
            prefix: Prefix::ROOT,
            summary: Summary::Holdings(vec![holding(0xa0, 2), holding(0xa0, 1)]),
        }]);
        assert!(matches!(
            Message::decode(&unsorted.encode()),
            Err(DecodeError::NotSorted { .. })
        ));
        // A want naming one origin twice, or out of order; overlapping or
        // repeated ranges.
        let twice = Message::Want(vec![
            NodeId::from_bytes([4; 32]),
            NodeId::from_bytes([4; 32]),
        ]);
        assert!(matches!(
            Message::decode(&twice.encode()),
            Err(DecodeError::NotSorted { .. })
        ));
        let nothing = Range {
            prefix: Prefix::ROOT,
            summary: Summary::Holdings(vec![]),
        };
        let repeated = Message::Sync(vec![nothing.clone(), nothing.clone()]);
        assert!(matches!(
            Message::decode(&repeated.encode()),
            Err(DecodeError::NotSorted { .. })
        ));
        let nested = Message::Sync(vec![
            nothing,
            Range {
                prefix: Prefix::new(1, 3).unwrap(),
                summary: Summary::Holdings(vec![]),
            },
        ]);
        assert!(matches!(
            Message::decode(&nested.encode()),
            Err(DecodeError::NotSorted { .. })
        ));
        // Announcements out of order or repeated; a graft naming one origin twice.
        let unsorted = Message::Have(vec![holding(0xa0, 1), holding(0x10, 1)]);
        assert!(matches!(
            Message::decode(&unsorted.encode()),
            Err(DecodeError::NotSorted { .. })
        ));
        let repeated = Message::Have(vec![holding(0xa0, 1), holding(0xa0, 1)]);
        assert!(matches!(
            Message::decode(&repeated.encode()),
            Err(DecodeError::NotSorted { .. })
        ));
        let twice = Message::Graft(vec![NodeId::from_bytes([4; 32]); 2]);
        assert!(matches!(
            Message::decode(&twice.encode()),
            Err(DecodeError::NotSorted { .. })
        ));
        let mut frame = vec![1, TYPE_HAVE];
        write_varint(&mut frame, (MAX_ANNOUNCED + 1) as u64);
        assert!(matches!(
            Message::decode(&frame),
            Err(DecodeError::TooMany { .. })
        ));
        let mut prune = Message::Prune.encode();
        prune.push(0);
        assert!(matches!(
            Message::decode(&prune),
            Err(DecodeError::TrailingBytes { .. })
        ));
        let mut trailing = Message::Want(vec![]).encode();
        trailing.push(0);
        assert!(matches!(
            Message::decode(&trailing),
            Err(DecodeError::TrailingBytes { .. })
        ));
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_frames_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = Message::decode(&bytes);
        }

        #[test]
        fn decoding_mutated_frames_never_panics(position in 0usize..200, value in any::<u8>()) {
            let message = Message::Sync(vec![Range {
                prefix: Prefix::new(2, 0xab).unwrap(),
                summary: Summary::Holdings(vec![holding(0xab, 1), holding(0xab, 2)]),
            }]);
            let mut frame = message.encode();
            let at = position % frame.len();
            frame[at] = value;
            let _ = Message::decode(&frame);
        }
    }
}
