//! tidings-audit: the tamper-evident audit log of a tidings node.
//!
//! Every verdict a node reaches on gossiped input (accepted, rejected, ignored,
//! equivocation, quarantine), every record it publishes or relays and every
//! connection it accepts or refuses becomes an entry here, hash-chained to the one
//! before and periodically covered by a checkpoint signed with the node's key. The
//! signed records themselves are kept once each as evidence, so that after an
//! incident `trace` can show who signed a false entry and which peers relayed it.
//!
//! The log lives in sled and is written by a dedicated thread with backpressure;
//! the protocol core depends only on a storage trait, never on sled. This crate is
//! the home of that log; its implementation arrives with the audit work.

#![forbid(unsafe_code)]
