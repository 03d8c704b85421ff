//! tidings-keys: who a node is, and how it signs.
//!
//! - [`Identity`]: a node's ed25519 secret key, generated from an injected RNG or
//!   loaded from a key file written 0600 (looser files are refused).
//! - [`NodeId`]: the public key, the name of a node everywhere in tidings; shown in
//!   lowercase base32.
//! - [`FederationId`] and [`Domain`]: every signature covers
//!   `domain label ‖ federation id ‖ message`, so a signature can be used for
//!   nothing but what it was made for.
//! - [`verify`]: ed25519 `verify_strict` after refusing weak or non-canonical keys.
//! - [`Roster`]: the keys a federation admits, from a TOML file.
//!
//! This crate does no networking and needs no async runtime.

#![forbid(unsafe_code)]

pub mod base32;
pub mod hex;
mod identity;
mod node_id;
mod roster;
#[cfg(feature = "schemars")]
mod schema;
#[cfg(feature = "schemars")]
#[doc(hidden)]
pub use schemars;
mod signing;

pub use identity::{Identity, KeyFileError};
pub use node_id::{NodeId, ParseNodeIdError, WeakKeyError};
pub use roster::{Roster, RosterError};
pub use signing::{
    signed_message, verify, verify_with_key, Domain, FederationId, Signature, VerifyError,
};
