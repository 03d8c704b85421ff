//! The sans-IO protocol core.
//!
//! Everything here is a pure function of its inputs: time arrives as `now_ms`
//! (milliseconds since the Unix epoch) and randomness as an injected RNG. Nothing
//! here opens a socket, reads a clock, spawns a task or touches a disk, so the same
//! code runs under the network shell and under the deterministic simulator, and it
//! builds with `--no-default-features`.
//!
//! - [`limits`]: every bound, named, checked before allocating.
//! - [`codec`]: bounded, canonical decoding of postcard bytes.
//! - [`record`]: `Record`, `SignedRecord`, `UnverifiedRecord`, `VerifiedRecord`.
//! - [`equivocation`]: self-verifying proofs that an origin forked its history.
//! - [`verdict`]: the typed outcome of receiving a record.
//! - [`rate`]: token buckets.
//! - [`directory`]: current record per origin, and the acceptance rules.
//! - [`wire`]: the messages nodes exchange, framed and bounded.
//! - [`gossip`]: set reconciliation over a prefix trie of fingerprints.
//! - [`spread`]: the fast path of new records, eager pushes along a tree of
//!   neighbour links and announcements on the others.
//! - [`membership`], [`score`], [`budget`]: whom to gossip with; what misbehaviour
//!   costs; what work each peer's input may cause.
//! - [`state`]: the node state machine (`handle_*` in, `poll_output` and
//!   `poll_timeout` out).
//! - [`event`]: what the state machine asks its driver to do, and the durability
//!   contract.
//! - [`clock`]: this node's clock offset from its peers'.

pub mod budget;
pub mod clock;
pub mod codec;
pub mod directory;
pub mod equivocation;
pub mod event;
pub mod gossip;
pub mod limits;
pub mod membership;
pub mod rate;
pub mod record;
pub mod roster;
pub mod score;
pub mod spread;
pub mod state;
pub mod verdict;
pub mod wire;

#[cfg(test)]
pub(crate) mod testkit;

pub use directory::{
    Directory, DirectoryConfig, Entry, Found, Holding, Prechecked, ProofVerdict, Source,
    VerifiedCache,
};
pub use equivocation::{Conflict, EquivocationProof, ProofError, VerifiedProof};
pub use event::{
    AuditEvent, ChainStatus, DirectoryChange, Halt, Output, PublishError, RosterOutcome,
};
pub use record::{
    Announcement, Record, RecordError, RecordId, SignedRecord, Specialist, UnverifiedRecord,
    VerifiedRecord, RECORD_VERSION,
};
pub use state::{Command, GossipConfig, State};
pub use verdict::{Ignored, RecordRef, Rejection, Verdict, VerdictKind};
