//! Every limit of the protocol, in one place.
//!
//! Each bound is checked before anything is allocated for the value it bounds:
//! a length prefix is compared with its limit before a buffer of that length is
//! made. Together they bound what one record can cost a node to decode, verify and
//! keep, whatever a peer sends.

/// Largest encoded signed record (record bytes plus signature and framing).
/// A full record (64 specialists with long strings) fits with room to spare.
pub const MAX_SIGNED_RECORD_BYTES: usize = 64 * 1024;

/// Most specialists one origin may announce in one record: a node hosts a handful.
pub const MAX_SPECIALISTS: usize = 64;

/// Most capabilities of one specialist: enough to describe it, not a dictionary.
pub const MAX_CAPABILITIES: usize = 32;

/// Most metadata entries of one specialist.
pub const MAX_META_ENTRIES: usize = 16;

/// Most addresses an origin may list for its node (IPv4, IPv6, a few names).
pub const MAX_ADDRS: usize = 8;

/// Longest specialist name, in bytes.
pub const MAX_NAME_BYTES: usize = 64;

/// Longest capability, in bytes.
pub const MAX_CAPABILITY_BYTES: usize = 64;

/// Longest endpoint URL, in bytes.
pub const MAX_ENDPOINT_BYTES: usize = 512;

/// Longest metadata key, in bytes.
pub const MAX_META_KEY_BYTES: usize = 64;

/// Longest metadata value, in bytes.
pub const MAX_META_VALUE_BYTES: usize = 256;

/// Longest node address (`host:port`), in bytes.
pub const MAX_ADDR_BYTES: usize = 256;

/// Longest a record may live: a day, so a vanished origin is forgotten within one.
pub const MAX_TTL_MS: u64 = 24 * 60 * 60 * 1000;

/// Default record lifetime: five minutes, refreshed at half-life. A node that
/// stopped without leaving is forgotten within it; the refreshes cost each node
/// one signature check per member every two and a half minutes.
pub const DEFAULT_TTL_MS: u64 = 5 * 60 * 1000;

/// How far in the future a record's issue time may lie: tolerated clock skew.
pub const MAX_CLOCK_SKEW_MS: u64 = 60 * 1000;

/// Largest encoded equivocation proof: two signed records.
pub const MAX_PROOF_BYTES: usize = 2 * MAX_SIGNED_RECORD_BYTES + 16;

/// Largest varint: ten bytes encode a u64.
pub const MAX_VARINT_BYTES: usize = 10;

/// Largest wire frame: room for a batch of records, small enough to buffer per peer.
pub const MAX_FRAME_BYTES: usize = 1024 * 1024;

/// Most ranges in one sync message: 32 levels of 16 children is never needed; a
/// reply splits at most this many differing ranges at once.
pub const MAX_SYNC_RANGES: usize = 512;

/// Most holdings listed for one range: ranges larger than a leaf are split instead.
pub const MAX_RANGE_HOLDINGS: usize = 64;

/// Deepest prefix, in 4-bit digits of the origin id.
pub const MAX_PREFIX_DEPTH: u8 = 16;

/// Most records in one message (the frame size bounds the bytes as well).
pub const MAX_RECORDS_PER_MESSAGE: usize = 256;

/// Most origins asked for in one want message.
pub const MAX_WANTS: usize = 1024;

/// Most records announced in one `Have` message.
pub const MAX_ANNOUNCED: usize = 1024;

/// Most proofs in one message.
pub const MAX_PROOFS_PER_MESSAGE: usize = 8;

/// How far ahead of its time line a node's chain jumps after it recovered
/// from a lost history (see
/// [`recovery_seq`](crate::proto::record::recovery_seq)), and how far above
/// a pardoned seq it restarts: a node signs far fewer records than this
/// between the last one its peers saw and a loss.
pub const RECOVERY_SEQ_GAP: u64 = 1_000_000;

/// Most members a roster genesis lists.
pub const MAX_ROSTER_MEMBERS: usize = 65_536;

/// Largest encoded roster genesis.
pub const MAX_GENESIS_BYTES: usize = 8 * 1024 * 1024;

/// Longest member label, in bytes.
pub const MAX_LABEL_BYTES: usize = 64;

/// Most approvals one roster operation carries: a threshold above this cannot be
/// met, so an operation needs at most this many approvers (two operations, a
/// fork proof, then fit in one frame).
pub const MAX_APPROVALS: usize = 4096;

/// Largest unsigned roster operation body.
pub const MAX_OP_BODY_BYTES: usize = 512;

/// Largest signed roster operation: body, countersignature and every approval.
pub const MAX_ROSTER_OP_BYTES: usize = MAX_OP_BODY_BYTES + 80 + MAX_APPROVALS * 96 + 16;

/// Largest roster fork proof (two operations).
pub const MAX_ROSTER_FORK_BYTES: usize = 2 * MAX_ROSTER_OP_BYTES + 16;

/// Most roster operations in one message.
pub const MAX_ROSTER_OPS_PER_MESSAGE: usize = 64;

/// Longest a roster proposal may stay open (issue to expiry).
pub const MAX_PROPOSAL_LIFETIME_MS: u64 = 7 * 24 * 60 * 60 * 1000;

/// Default lifetime of a roster proposal.
pub const DEFAULT_PROPOSAL_LIFETIME_MS: u64 = 24 * 60 * 60 * 1000;

/// Most open proposals one member may have proposed at once.
pub const MAX_PROPOSALS_PER_MEMBER: usize = 4;

/// Most open proposals a node keeps in all.
pub const MAX_PENDING_PROPOSALS: usize = 256;

/// How long after a member's removal relays of its records are ignored rather
/// than blamed on the relaying peer (which may not have heard of the removal).
pub const ROSTER_GRACE_MS: u64 = 10 * 60 * 1000;
