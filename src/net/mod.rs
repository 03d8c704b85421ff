//! The network shell: QUIC (quinn) with mutual TLS pinned to node keys.
//!
//! - [`tls`]: certificates from node keys, verifiers that admit only roster keys.
//! - [`transport`]: the endpoint, dialling and accepting, framing.

pub mod tls;
pub mod transport;
