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

pub mod codec;
pub mod directory;
pub mod equivocation;
pub mod limits;
pub mod rate;
pub mod record;
pub mod verdict;

#[cfg(test)]
pub(crate) mod testkit;

pub use directory::{Directory, DirectoryConfig, Entry, Found, ProofVerdict, Source};
pub use equivocation::{Conflict, EquivocationProof, ProofError, VerifiedProof};
pub use record::{
    Announcement, Record, RecordError, RecordId, SignedRecord, Specialist, UnverifiedRecord,
    VerifiedRecord, RECORD_VERSION,
};
pub use verdict::{Ignored, RecordRef, Rejection, Verdict, VerdictKind};
