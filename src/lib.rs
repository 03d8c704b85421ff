//! tidings: a Byzantine-resilient, signed gossip directory of specialists.
//!
//! A federation of nodes keeps a shared directory of specialists (services,
//! models, agents) with no central server. Each node announces its own
//! specialists in an ed25519-signed, blake3 hash-chained record; every receiver
//! verifies a record before it stores or relays it.
//!
//! - [`proto`]: the sans-IO protocol core: records, verdicts, the directory.
//!   It takes `now` and an RNG as arguments and owns no socket, clock or thread,
//!   and it builds without the `node` feature.
//! - [`sim`]: the deterministic simulator that runs N protocol states (also
//!   sans-IO).
//! - [`recording`], [`trace`]: what the audit log records for each protocol event,
//!   and the provenance of a record read back from it.
//! - [`export`]: the file format of exported records and equivocation proofs,
//!   checked offline by `tidings verify`.

#![forbid(unsafe_code)]

#[cfg(feature = "node")]
pub mod api;
pub mod export;
#[cfg(feature = "node")]
pub mod net;
pub mod proto;
pub mod recording;
pub mod sim;
pub mod trace;
pub mod utc;

pub use tidings_audit as audit;
pub use tidings_keys as keys;
