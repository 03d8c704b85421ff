//! The QUIC endpoint: dialling and accepting authenticated connections, and
//! moving frames over them.
//!
//! Stream layout: on each connection, each side sends all its messages on one
//! unidirectional stream of its own, opened with its first message, as a sequence
//! of frames (a 4-byte big-endian length, then the frame). One stream per
//! direction keeps a peer's messages in the order it sent them (a flood of
//! records arrives as sent, not shuffled into stale verdicts), costs no stream
//! set-up per message, and puts QUIC's flow control in charge of backpressure: the
//! receiver reads the next frame only once the node took the last one, so a
//! sender that outruns the receiver waits for stream credit. A stream that breaks
//! (a frame over the limit, a reset) is abandoned and the sender opens a fresh
//! one. Limits: at most [`MAX_STREAMS`] incoming streams open per connection,
//! frames of at most `MAX_FRAME_BYTES`, a frame's bytes must arrive within
//! [`READ_TIMEOUT`] of its length, idle connections close after [`IDLE_TIMEOUT`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tidings_keys::{Identity, NodeId};

use super::socket::{self, SocketClosed};
use super::tls::{self, Refusals, SharedRoster};
use crate::proto::limits::MAX_FRAME_BYTES;

/// Incoming handshakes in progress at once.
pub const MAX_PENDING_HANDSHAKES: usize = 256;
/// Incoming streams a peer may have open at once on one connection: its message
/// stream, and room to replace it after a reset.
pub const MAX_STREAMS: u32 = 4;
/// Bytes a peer may have in flight on one stream (one largest frame and its length).
pub const STREAM_WINDOW: u32 = (MAX_FRAME_BYTES + 64 * 1024) as u32;
/// Bytes this node keeps unacknowledged for one connection: what a peer that
/// withholds credit can make it hold, besides its send queue.
pub const SEND_WINDOW: u64 = 2 * STREAM_WINDOW as u64;
/// Longest wait for a frame's bytes once its stream opened.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection with no traffic for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(45);
/// Keep-alive interval of the connections that ask for it: one that sent
/// nothing for this long sends a ping, which keeps NAT bindings (commonly 30 s
/// or more for UDP) and the connection open. Only the dialler of a connection
/// that must stay up while idle asks (a node's chosen spreading neighbours, and
/// every dial of a node behind NAT, which cannot be dialled back): with every
/// connection kept alive, a converged node of a 64-member federation spent most
/// of its idle time on pings to all 63 peers. Other connections close after
/// [`IDLE_TIMEOUT`] without traffic and are dialled again when needed.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Longest wait for a dial to complete.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(5);
/// The round-trip time assumed before a connection has measured one (QUIC's
/// default is 333 ms). A connection closed before it measured one drains for
/// three probe timeouts computed from this: about 3 s with the default, which
/// held a stopping node's port that long whenever a dial to a peer that had
/// just stopped was in flight. With 100 ms it drains within the second the
/// node waits for its connections; a dial over a longer path sends its first
/// packet once more before the answer comes.
pub const INITIAL_RTT: Duration = Duration::from_millis(100);

/// Why a network operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// TLS material could not be built.
    #[error(transparent)]
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
    /// The peer reset the stream it was sending on.
    #[error("the peer reset its stream")]
    Reset,
}

/// A bound QUIC endpoint that dials and accepts node connections.
#[derive(Debug, Clone)]
pub struct Transport {
    endpoint: quinn::Endpoint,
    /// The client configuration of dials that keep their connection alive.
    kept_alive: quinn::ClientConfig,
    refusals: Refusals,
    closed: SocketClosed,
}

fn transport_config(keep_alive: bool) -> Arc<quinn::TransportConfig> {
    let mut config = quinn::TransportConfig::default();
    config
        .max_concurrent_uni_streams(MAX_STREAMS.into())
        .max_concurrent_bidi_streams(0u32.into())
        .stream_receive_window(STREAM_WINDOW.into())
        .receive_window((2 * STREAM_WINDOW).into())
        .send_window(SEND_WINDOW)
        .initial_rtt(INITIAL_RTT)
        .keep_alive_interval(keep_alive.then_some(KEEP_ALIVE));
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
        server_config.transport_config(transport_config(false));
        // Handshakes in progress at once; established connections are bounded by
        // the roster (one kept per admitted key).
        server_config.max_incoming(MAX_PENDING_HANDSHAKES);
        let quic_client = quinn::crypto::rustls::QuicClientConfig::try_from(client)
            .map_err(|error| tls::TlsError::Config(error.to_string()))?;
        let quic_client = Arc::new(quic_client);
        let mut client_config = quinn::ClientConfig::new(quic_client.clone());
        client_config.transport_config(transport_config(false));
        let mut kept_alive = quinn::ClientConfig::new(quic_client);
        kept_alive.transport_config(transport_config(true));
        let bind_error = |error| NetError::Bind {
            addr: listen,
            error,
        };
        let socket = std::net::UdpSocket::bind(listen).map_err(bind_error)?;
        let (socket, closed) = socket::wrap(socket).map_err(bind_error)?;
        let mut endpoint = quinn::Endpoint::new_with_abstract_socket(
            quinn::EndpointConfig::default(),
            Some(server_config),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(bind_error)?;
        endpoint.set_default_client_config(client_config);
        Ok(Self {
            endpoint,
            kept_alive,
            refusals,
            closed,
        })
    }

    /// Resolves once the UDP socket is closed: after this endpoint and every
    /// clone of it are dropped and its connections have drained.
    pub fn closed(&self) -> SocketClosed {
        self.closed.clone()
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
    /// The connection closes after [`IDLE_TIMEOUT`] without traffic.
    pub async fn dial(
        &self,
        peer: NodeId,
        addr: SocketAddr,
    ) -> Result<quinn::Connection, NetError> {
        self.dial_with(peer, addr, false).await
    }

    /// Dials `peer` at `addr` as [`Transport::dial`] does, and keeps the
    /// connection open while idle with a ping every [`KEEP_ALIVE`].
    pub async fn dial_kept_alive(
        &self,
        peer: NodeId,
        addr: SocketAddr,
    ) -> Result<quinn::Connection, NetError> {
        self.dial_with(peer, addr, true).await
    }

    async fn dial_with(
        &self,
        peer: NodeId,
        addr: SocketAddr,
        keep_alive: bool,
    ) -> Result<quinn::Connection, NetError> {
        let dial_error = |reason: String| NetError::Dial { peer, addr, reason };
        let name = peer.to_string();
        let connecting = if keep_alive {
            self.endpoint
                .connect_with(self.kept_alive.clone(), addr, &name)
        } else {
            self.endpoint.connect(addr, &name)
        }
        .map_err(|error| dial_error(error.to_string()))?;
        match tokio::time::timeout(DIAL_TIMEOUT, connecting).await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(error)) => Err(dial_error(error.to_string())),
            Err(_) => Err(dial_error("timed out".into())),
        }
    }

    /// The next incoming connection attempt, before any handshake work; `None`
    /// when the endpoint is closed. See [`gate`](super::gate) for what to do with it.
    pub async fn incoming(&self) -> Option<quinn::Incoming> {
        self.endpoint.accept().await
    }

    /// Completes the handshake of `incoming` within
    /// [`HANDSHAKE_TIMEOUT`](super::gate::HANDSHAKE_TIMEOUT): the peer's id and the
    /// connection. A refused key is recorded in [`Transport::refusals`].
    pub async fn handshake(
        incoming: quinn::Incoming,
    ) -> Result<(NodeId, quinn::Connection), NetError> {
        let remote = incoming.remote_address();
        let connecting = incoming
            .accept()
            .map_err(|error| NetError::Stream(format!("handshake from {remote}: {error}")))?;
        match tokio::time::timeout(super::gate::HANDSHAKE_TIMEOUT, connecting).await {
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
        }
    }

    /// The next incoming connection that completes its handshake, one at a time
    /// (tests and tools; a node runs handshakes concurrently through its gate).
    pub async fn accept(&self) -> Option<Result<(NodeId, quinn::Connection), NetError>> {
        let incoming = self.incoming().await?;
        Some(Self::handshake(incoming).await)
    }

    /// Stops accepting and closes every connection.
    pub fn close(&self) {
        self.endpoint.close(0u32.into(), b"shutdown");
    }

    /// Waits until closed connections have said goodbye.
    pub async fn wait_idle(&self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
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

/// Sends one frame on a stream of its own, then finishes it (for tools and tests
/// that speak as a peer; nodes keep one stream, see [`FrameWriter`]).
pub async fn send_frame(connection: &quinn::Connection, frame: &[u8]) -> Result<(), NetError> {
    let mut writer = FrameWriter::open(connection).await?;
    writer.send(frame).await?;
    writer
        .stream
        .finish()
        .map_err(|error| NetError::Stream(error.to_string()))
}

/// The sending half of a connection's message stream.
#[derive(Debug)]
pub struct FrameWriter {
    stream: quinn::SendStream,
}

impl FrameWriter {
    /// Opens this side's message stream on `connection`.
    pub async fn open(connection: &quinn::Connection) -> Result<Self, NetError> {
        let stream = connection
            .open_uni()
            .await
            .map_err(|error| NetError::Stream(error.to_string()))?;
        Ok(Self { stream })
    }

    /// Sends one frame (waiting for flow-control credit when the peer is behind).
    pub async fn send(&mut self, frame: &[u8]) -> Result<(), NetError> {
        if frame.len() > MAX_FRAME_BYTES {
            return Err(NetError::BadFrame("frame larger than the limit"));
        }
        let stream_error = |error: quinn::WriteError| NetError::Stream(error.to_string());
        self.stream
            .write_all(&(frame.len() as u32).to_be_bytes())
            .await
            .map_err(stream_error)?;
        self.stream.write_all(frame).await.map_err(stream_error)
    }

    /// Ends the stream after what was written (the peer reads it to the end).
    pub fn finish(&mut self) {
        let _ = self.stream.finish();
    }
}

/// The receiving half of a peer's message stream.
#[derive(Debug)]
pub struct FrameReader {
    stream: quinn::RecvStream,
}

impl FrameReader {
    /// Reads frames from `stream`.
    pub fn new(stream: quinn::RecvStream) -> Self {
        Self { stream }
    }

    /// The next frame; `None` when the peer finished the stream. A length over the
    /// limit is refused before anything is allocated, and the frame's bytes must
    /// follow its length within [`READ_TIMEOUT`]. After an error the stream is
    /// unusable (framing is lost): drop it.
    pub async fn next(&mut self) -> Result<Option<Vec<u8>>, NetError> {
        let mut length = [0u8; 4];
        match self.stream.read_exact(&mut length).await {
            Ok(()) => {}
            Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
            Err(quinn::ReadExactError::FinishedEarly(_)) => {
                return Err(NetError::BadFrame("truncated length"))
            }
            Err(quinn::ReadExactError::ReadError(quinn::ReadError::Reset(_))) => {
                return Err(NetError::Reset)
            }
            Err(quinn::ReadExactError::ReadError(error)) => {
                return Err(NetError::Stream(error.to_string()))
            }
        }
        let length = u32::from_be_bytes(length) as usize;
        if length > MAX_FRAME_BYTES {
            return Err(NetError::BadFrame("frame larger than the limit"));
        }
        let mut frame = vec![0u8; length];
        match tokio::time::timeout(READ_TIMEOUT, self.stream.read_exact(&mut frame)).await {
            Ok(Ok(())) => Ok(Some(frame)),
            Ok(Err(quinn::ReadExactError::FinishedEarly(_))) => {
                Err(NetError::BadFrame("length prefix does not match the frame"))
            }
            Ok(Err(quinn::ReadExactError::ReadError(quinn::ReadError::Reset(_)))) => {
                Err(NetError::Reset)
            }
            Ok(Err(quinn::ReadExactError::ReadError(error))) => {
                Err(NetError::Stream(error.to_string()))
            }
            Err(_) => Err(NetError::BadFrame("frame not delivered in time")),
        }
    }

    /// Tells the peer this stream is no longer read.
    pub fn abandon(&mut self) {
        let _ = self.stream.stop(1u32.into());
    }
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

    /// Two admitted endpoints (seeds 1 and 2): the server, its address, the client.
    fn pair() -> (Identity, Identity, Transport, SocketAddr, Transport) {
        let (a, b) = (identity(1), identity(2));
        let shared = roster(&[&a, &b]);
        let server = Transport::bind(&a, shared.clone(), local()).unwrap();
        let client = Transport::bind(&b, shared, local()).unwrap();
        let addr = server.local_addr().unwrap();
        (a, b, server, addr, client)
    }

    #[tokio::test]
    async fn admitted_nodes_connect_and_exchange_frames() {
        let (a, b, server, addr, client) = pair();
        let accept = tokio::spawn({
            let server = server.clone();
            async move {
                let (peer, connection) = server.accept().await.unwrap().unwrap();
                let mut reader = FrameReader::new(connection.accept_uni().await.unwrap());
                let mut frames = Vec::new();
                while let Some(frame) = reader.next().await.unwrap() {
                    frames.push(frame);
                }
                (peer, frames)
            }
        });
        let connection = client.dial(a.node_id(), addr).await.unwrap();
        assert_eq!(peer_of(&connection), Some(a.node_id()));
        let mut writer = FrameWriter::open(&connection).await.unwrap();
        writer.send(b"hello").await.unwrap();
        writer.send(b"").await.unwrap();
        writer.send(&[7; 70_000]).await.unwrap();
        writer.finish();
        let (peer, frames) = accept.await.unwrap();
        assert_eq!(peer, b.node_id());
        assert_eq!(
            frames,
            vec![b"hello".to_vec(), vec![], vec![7; 70_000]],
            "in order"
        );
    }

    #[tokio::test]
    async fn an_oversized_length_is_refused_before_reading_it() {
        let (a, _, server, addr, client) = pair();
        let accept = tokio::spawn({
            let server = server.clone();
            async move {
                let (_, connection) = server.accept().await.unwrap().unwrap();
                let mut reader = FrameReader::new(connection.accept_uni().await.unwrap());
                reader.next().await
            }
        });
        let connection = client.dial(a.node_id(), addr).await.unwrap();
        let mut stream = connection.open_uni().await.unwrap();
        stream.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        let result = accept.await.unwrap();
        assert!(
            matches!(
                result,
                Err(NetError::BadFrame("frame larger than the limit"))
            ),
            "{result:?}"
        );
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
    async fn a_key_removed_from_the_roster_cannot_come_back_by_resuming_a_session() {
        let (a, b) = (identity(1), identity(2));
        let server_roster = roster(&[&a, &b]);
        let server = Transport::bind(&a, server_roster.clone(), local()).unwrap();
        let client = Transport::bind(&b, roster(&[&a, &b]), local()).unwrap();
        let addr = server.local_addr().unwrap();
        let accept = |server: &Transport| {
            let server = server.clone();
            tokio::spawn(async move { server.accept().await.unwrap() })
        };
        // Admitted: the handshake completes (and a resumable session would now
        // be held by both sides).
        let first = accept(&server);
        let connection = client.dial(a.node_id(), addr).await.unwrap();
        let (peer, accepted) = first.await.unwrap().unwrap();
        assert_eq!(peer, b.node_id());
        // Let the server's session tickets arrive, then close.
        tokio::time::sleep(Duration::from_millis(100)).await;
        connection.close(0u32.into(), b"done");
        accepted.close(0u32.into(), b"done");
        // b is removed from a's roster; its next handshake must be refused.
        *server_roster.write().unwrap() = roster(&[&a]).read().unwrap().clone();
        let second = accept(&server);
        let _ = client.dial(a.node_id(), addr).await;
        let accepted = second.await.unwrap();
        assert!(
            accepted.is_err(),
            "a removed key was admitted again: {accepted:?}"
        );
        let refusals = server.refusals();
        assert!(
            refusals.iter().any(|r| r.presented == Some(b.node_id())),
            "{refusals:?}"
        );
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
        assert_eq!(refusals[0].expected, Some(c.node_id()), "{refusals:?}");
    }
}
