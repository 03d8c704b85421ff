//! The QUIC endpoint: dialling and accepting authenticated connections, and
//! moving frames over them.
//!
//! Each wire message travels on its own unidirectional stream as a 4-byte
//! big-endian length and the frame. Streams are cheap in QUIC, and one per message
//! keeps a slow or lost message from holding up the next (the protocol needs no
//! ordering between messages: every reply depends only on the message and the
//! directory). Limits: at most [`MAX_STREAMS`] concurrent incoming streams per
//! connection, frames of at most `MAX_FRAME_BYTES`, every read bounded by
//! [`READ_TIMEOUT`], idle connections closed after [`IDLE_TIMEOUT`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tidings_keys::{Identity, NodeId};

use super::tls::{self, Refusals, SharedRoster};
use crate::proto::limits::MAX_FRAME_BYTES;

/// Incoming handshakes in progress at once.
pub const MAX_PENDING_HANDSHAKES: usize = 256;
/// Concurrent incoming streams allowed per connection.
pub const MAX_STREAMS: u32 = 64;
/// Longest wait for a frame's bytes once its stream opened.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection with no traffic for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Keep-alive interval (keeps NAT bindings and idle connections open).
pub const KEEP_ALIVE: Duration = Duration::from_secs(5);
/// Longest wait for a dial to complete.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a network operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// TLS material could not be built.
    #[error("{0}")]
    Tls(#[from] tls::TlsError),
    /// The UDP socket could not be bound.
    #[error("cannot listen on {addr}: {error}")]
    Bind {
        addr: SocketAddr,
        error: std::io::Error,
    },
    /// A dial failed (unreachable, refused handshake, timeout).
    #[error("cannot reach {peer} at {addr}: {reason}")]
    Dial {
        peer: NodeId,
        addr: SocketAddr,
        reason: String,
    },
    /// A frame could not be sent or read.
    #[error("stream error: {0}")]
    Stream(String),
    /// A frame broke the framing rules.
    #[error("bad frame: {0}")]
    BadFrame(&'static str),
}

/// A bound QUIC endpoint that dials and accepts node connections.
#[derive(Debug, Clone)]
pub struct Transport {
    endpoint: quinn::Endpoint,
    refusals: Refusals,
}

fn transport_config() -> Arc<quinn::TransportConfig> {
    let mut config = quinn::TransportConfig::default();
    config
        .max_concurrent_uni_streams(MAX_STREAMS.into())
        .max_concurrent_bidi_streams(0u32.into())
        .keep_alive_interval(Some(KEEP_ALIVE));
    if let Ok(idle) = quinn::IdleTimeout::try_from(IDLE_TIMEOUT) {
        config.max_idle_timeout(Some(idle));
    }
    Arc::new(config)
}

impl Transport {
    /// Binds `listen` for `identity`, admitting the keys of `roster`.
    pub fn bind(
        identity: &Identity,
        roster: SharedRoster,
        listen: SocketAddr,
    ) -> Result<Self, NetError> {
        let refusals = Refusals::default();
        let (server, client) = tls::configs(identity, roster, refusals.clone())?;
        let quic_server = quinn::crypto::rustls::QuicServerConfig::try_from(server)
            .map_err(|error| tls::TlsError::Config(error.to_string()))?;
        let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(quic_server));
        server_config.transport_config(transport_config());
        // Handshakes in progress at once; established connections are bounded by
        // the roster (one kept per admitted key).
        server_config.max_incoming(MAX_PENDING_HANDSHAKES);
        let quic_client = quinn::crypto::rustls::QuicClientConfig::try_from(client)
            .map_err(|error| tls::TlsError::Config(error.to_string()))?;
        let mut client_config = quinn::ClientConfig::new(Arc::new(quic_client));
        client_config.transport_config(transport_config());
        let mut endpoint =
            quinn::Endpoint::server(server_config, listen).map_err(|error| NetError::Bind {
                addr: listen,
                error,
            })?;
        endpoint.set_default_client_config(client_config);
        Ok(Self { endpoint, refusals })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.endpoint.local_addr().ok()
    }

    /// Handshakes refused so far (drained).
    pub fn refusals(&self) -> Vec<tls::Refusal> {
        self.refusals.drain()
    }

    /// Dials `peer` at `addr`; fails unless the far end proves it is `peer`.
    pub async fn dial(
        &self,
        peer: NodeId,
        addr: SocketAddr,
    ) -> Result<quinn::Connection, NetError> {
        let dial_error = |reason: String| NetError::Dial { peer, addr, reason };
        let connecting = self
            .endpoint
            .connect(addr, &peer.to_string())
            .map_err(|error| dial_error(error.to_string()))?;
        match tokio::time::timeout(DIAL_TIMEOUT, connecting).await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(error)) => Err(dial_error(error.to_string())),
            Err(_) => Err(dial_error("timed out".into())),
        }
    }

    /// The next incoming connection that completes its handshake, with the peer's
    /// id; `None` when the endpoint is closed. Failed handshakes are skipped (and
    /// recorded in [`Transport::refusals`] when the key was refused).
    pub async fn accept(&self) -> Option<Result<(NodeId, quinn::Connection), NetError>> {
        let incoming = self.endpoint.accept().await?;
        let remote = incoming.remote_address();
        Some(match tokio::time::timeout(DIAL_TIMEOUT, incoming).await {
            Ok(Ok(connection)) => match peer_of(&connection) {
                Some(peer) => Ok((peer, connection)),
                None => Err(NetError::Stream("a connection without a peer key".into())),
            },
            Ok(Err(error)) => Err(NetError::Stream(format!(
                "handshake from {remote} failed: {error}"
            ))),
            Err(_) => Err(NetError::Stream(format!(
                "handshake from {remote} timed out"
            ))),
        })
    }

    /// Stops accepting and closes every connection.
    pub fn close(&self) {
        self.endpoint.close(0u32.into(), b"shutdown");
    }

    /// Waits until closed connections have said goodbye.
    pub async fn wait_idle(&self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
    }
}

/// The node id a connection's peer proved in its handshake.
pub fn peer_of(connection: &quinn::Connection) -> Option<NodeId> {
    let identity = connection.peer_identity()?;
    let certificates = identity
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    tls::node_id_of(certificates.first()?)
}

/// Sends one frame on a new stream.
pub async fn send_frame(connection: &quinn::Connection, frame: &[u8]) -> Result<(), NetError> {
    if frame.len() > MAX_FRAME_BYTES {
        return Err(NetError::BadFrame("frame larger than the limit"));
    }
    let stream_error = |error: String| NetError::Stream(error);
    let mut stream = connection
        .open_uni()
        .await
        .map_err(|e| stream_error(e.to_string()))?;
    stream
        .write_all(&(frame.len() as u32).to_be_bytes())
        .await
        .map_err(|e| stream_error(e.to_string()))?;
    stream
        .write_all(frame)
        .await
        .map_err(|e| stream_error(e.to_string()))?;
    stream.finish().map_err(|e| stream_error(e.to_string()))?;
    Ok(())
}

/// Reads one frame from an incoming stream, bounded in size and time.
pub async fn read_frame(mut stream: quinn::RecvStream) -> Result<Vec<u8>, NetError> {
    let read = tokio::time::timeout(READ_TIMEOUT, stream.read_to_end(MAX_FRAME_BYTES + 4)).await;
    let bytes = match read {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(quinn::ReadToEndError::TooLong)) => {
            return Err(NetError::BadFrame("frame larger than the limit"))
        }
        Ok(Err(error)) => return Err(NetError::Stream(error.to_string())),
        Err(_) => return Err(NetError::BadFrame("frame not delivered in time")),
    };
    let (length, frame) = bytes
        .split_at_checked(4)
        .ok_or(NetError::BadFrame("truncated length"))?;
    let length = u32::from_be_bytes([length[0], length[1], length[2], length[3]]) as usize;
    if length != frame.len() {
        return Err(NetError::BadFrame("length prefix does not match the frame"));
    }
    Ok(frame.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::RwLock;
    use tidings_keys::Roster;

    fn identity(seed: u8) -> Identity {
        Identity::from_seed(&[seed; 32])
    }

    fn roster(ids: &[&Identity]) -> SharedRoster {
        Arc::new(RwLock::new(
            ids.iter().map(|i| i.node_id()).collect::<Roster>(),
        ))
    }

    fn local() -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }

    #[tokio::test]
    async fn admitted_nodes_connect_and_exchange_frames() {
        let (a, b) = (identity(1), identity(2));
        let shared = roster(&[&a, &b]);
        let server = Transport::bind(&a, shared.clone(), local()).unwrap();
        let client = Transport::bind(&b, shared, local()).unwrap();
        let addr = server.local_addr().unwrap();
        let accept = tokio::spawn({
            let server = server.clone();
            async move {
                let (peer, connection) = server.accept().await.unwrap().unwrap();
                let stream = connection.accept_uni().await.unwrap();
                (peer, read_frame(stream).await.unwrap())
            }
        });
        let connection = client.dial(a.node_id(), addr).await.unwrap();
        assert_eq!(peer_of(&connection), Some(a.node_id()));
        send_frame(&connection, b"hello").await.unwrap();
        let (peer, frame) = accept.await.unwrap();
        assert_eq!(peer, b.node_id());
        assert_eq!(frame, b"hello");
    }

    #[tokio::test]
    async fn an_unadmitted_key_is_refused_and_recorded() {
        let (a, stranger) = (identity(1), identity(3));
        let server = Transport::bind(&a, roster(&[&a]), local()).unwrap();
        // The stranger admits the server, but the server does not admit it.
        let client = Transport::bind(&stranger, roster(&[&a, &stranger]), local()).unwrap();
        let addr = server.local_addr().unwrap();
        let accept = tokio::spawn({
            let server = server.clone();
            async move { server.accept().await.unwrap() }
        });
        let _ = client.dial(a.node_id(), addr).await;
        let accepted = accept.await.unwrap();
        assert!(accepted.is_err(), "the server must refuse the handshake");
        let refusals = server.refusals();
        assert_eq!(refusals.len(), 1, "{refusals:?}");
        assert_eq!(refusals[0].presented, Some(stranger.node_id()));
    }

    #[tokio::test]
    async fn a_peer_impersonating_another_node_is_refused() {
        let (a, b, c) = (identity(1), identity(2), identity(3));
        let shared = roster(&[&a, &b, &c]);
        let server = Transport::bind(&a, shared.clone(), local()).unwrap();
        let client = Transport::bind(&b, shared, local()).unwrap();
        let addr = server.local_addr().unwrap();
        tokio::spawn({
            let server = server.clone();
            async move { server.accept().await }
        });
        // b believes c lives at a's address; a answers with its own key.
        let result = client.dial(c.node_id(), addr).await;
        assert!(matches!(result, Err(NetError::Dial { .. })), "{result:?}");
        let refusals = client.refusals();
        assert_eq!(refusals[0].presented, Some(a.node_id()));
        assert!(refusals[0].reason.contains("impersonation"));
    }
}
