//! tidings-audit: the tamper-evident audit log of a tidings node.
//!
//! Every verdict a node reaches on gossiped input (accepted, rejected, ignored,
//! equivocation, quarantine), every record it publishes or relays and every
//! connection it accepts or refuses becomes an [`Entry`], hash-chained to the one
//! before; every K entries or T seconds the node signs a [`Checkpoint`] of the
//! running hash. The signed records themselves are kept as evidence, so
//! after an incident a trace can show who signed a false entry and which peers
//! relayed it, and a third party can check an export offline.
//!
//! - [`store`]: the storage trait, with sled (feature `sled`) and in-memory stores.
//! - [`log`]: [`AuditLog`]: append, query, verify, retention.
//! - [`writer`]: [`AuditWriter`], the dedicated thread with backpressure.
//! - [`export`]: JSON-lines export, offline verification, merging exports.
//!
//! This crate needs no async runtime.

#![forbid(unsafe_code)]

pub mod checkpoint;
pub mod entry;
pub mod export;
pub mod layout;
pub mod log;
#[cfg(feature = "schemars")]
mod schema;
pub mod store;
pub mod verify;
pub mod writer;

pub use checkpoint::Checkpoint;
pub use entry::{Entry, EntryKind, NewEntry, RecordKey};
pub use log::{AuditConfig, AuditError, AuditLog, Query, Stats};
pub use store::{MemoryStore, Store, StoreError, Write};
pub use verify::{carries_evidence, check_evidence, EvidenceCheck, Problem, Verified};
pub use writer::{AuditWriter, Full, TryAppendError, WriterError, WriterHandle};

#[cfg(feature = "sled")]
pub use store::{OpenError, SledStore};

#[cfg(test)]
mod tests;
