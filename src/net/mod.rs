//! The network shell: QUIC (quinn) with mutual TLS pinned to node keys.
//!
//! - [`tls`]: certificates from node keys, verifiers that admit only roster keys.
//! - [`transport`]: the endpoint, dialling and accepting, framing.
//! - [`socket`]: the endpoint's UDP socket, which says when it is closed.
//! - [`gate`]: which incoming handshakes are taken on, before any cryptography.
//! - [`checkers`]: signature checks of received records on every core, ahead of the actor.
//! - [`node`]: the actor that owns the protocol state; [`Node::spawn`](node::Node::spawn).
//! - [`store`]: the directory persisted in sled, restored on restart.
//! - [`lock`]: one process per data directory.
//! - [`priority`]: background threads yield the cores to the network thread.
//! - [`clock`]: the node's monotonic time.
//! - [`config`]: the configuration file.

pub mod checkers;
pub mod clock;
pub mod config;
pub mod gate;
pub mod lock;
pub mod node;
pub mod priority;
pub mod socket;
pub mod store;
pub mod tls;
pub mod transport;
