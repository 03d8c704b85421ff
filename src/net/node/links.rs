//! Connections to peers: one receive loop per connection, one send task per peer.
//!
//! A receive loop reads its peer's message stream frame by frame and hands each
//! frame to the actor, awaiting room in the actor's queue before it reads the
//! next: when the actor falls behind, the loops stop reading, QUIC stops granting
//! stream credit, and the peers' sends wait. Nothing reads ahead of the actor.
//!
//! A send task owns the outgoing message stream to one peer: it dials the peer
//! once if no connection is open (a newer connection, in either direction,
//! replaces an older one in the table) and writes queued frames in order. Its
//! queue is bounded; a frame that does not fit is dropped, and anti-entropy
//! repairs what it carried.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tidings_keys::NodeId;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::metrics::Traffic;
use crate::net::tls::Refusal;
use crate::net::transport::{FrameReader, FrameWriter, NetError, Transport};

/// Frames queued for one peer before new ones are dropped.
const SEND_QUEUE: usize = 256;

/// Longest wait for stream credit for one frame before the link gives up.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// A send task with nothing to send for this long ends (it is restarted on demand).
const LINK_IDLE: Duration = Duration::from_secs(60);

/// Frames and connection news queued for the actor.
pub(super) const EVENT_QUEUE: usize = 4096;

/// What the network tasks tell the actor.
#[derive(Debug)]
pub(super) enum NetEvent {
    /// A frame from an authenticated peer.
    Frame { from: NodeId, bytes: Vec<u8> },
    /// A frame the transport refused (oversized, truncated, dripped).
    BadFrame { from: NodeId, reason: &'static str },
    /// A dial failed.
    DialFailed(NodeId),
    /// A connection is up.
    Connected { peer: NodeId, inbound: bool },
    /// A handshake was refused.
    Refused(Refusal),
}

type Connections = Arc<Mutex<HashMap<NodeId, quinn::Connection>>>;

/// The connection table and the send tasks.
#[derive(Debug)]
pub(super) struct Links {
    transport: Transport,
    connections: Connections,
    senders: HashMap<NodeId, mpsc::Sender<Vec<u8>>>,
    bootstrap: HashMap<NodeId, SocketAddr>,
    events: mpsc::Sender<NetEvent>,
    traffic: Arc<Traffic>,
}

impl Links {
    /// Starts accepting connections; returns the links and the actor's queue.
    pub(super) fn start(
        transport: Transport,
        bootstrap: HashMap<NodeId, SocketAddr>,
    ) -> (Self, mpsc::Receiver<NetEvent>) {
        let (events, receiver) = mpsc::channel(EVENT_QUEUE);
        let links = Self {
            transport,
            connections: Arc::default(),
            senders: HashMap::new(),
            bootstrap,
            events,
            traffic: Arc::default(),
        };
        tokio::spawn(accept_loop(
            links.transport.clone(),
            links.connections.clone(),
            links.events.clone(),
            links.traffic.clone(),
        ));
        (links, receiver)
    }

    /// Bytes sent and received so far.
    pub(super) fn traffic(&self) -> &Traffic {
        &self.traffic
    }

    /// The address to dial `peer` at: from its record, else from the bootstrap list.
    pub(super) fn bootstrap_address(&self, peer: &NodeId) -> Option<SocketAddr> {
        self.bootstrap.get(peer).copied()
    }

    /// Queues `frame` for `to`, starting its send task (and a dial to `addr`) if
    /// needed. A full queue drops the frame.
    pub(super) fn send(&mut self, to: NodeId, frame: Vec<u8>, addr: Option<SocketAddr>) {
        if let Some(link) = self.senders.get(&to) {
            match link.try_send(frame) {
                Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => return,
                Err(mpsc::error::TrySendError::Closed(returned)) => {
                    self.senders.remove(&to);
                    return self.send(to, returned, addr);
                }
            }
        }
        let (sender, receiver) = mpsc::channel(SEND_QUEUE);
        let _ = sender.try_send(frame);
        tokio::spawn(link_loop(
            to,
            addr,
            self.transport.clone(),
            self.connections.clone(),
            self.events.clone(),
            receiver,
            self.traffic.clone(),
        ));
        self.senders.insert(to, sender);
    }

    /// Drops the send task to `peer`: the next frame starts a fresh one (after a
    /// failed dial, or when the peer connected anew).
    pub(super) fn forget(&mut self, peer: &NodeId) {
        self.senders.remove(peer);
    }

    /// Closes every connection to `peer` (a ban).
    pub(super) fn disconnect(&mut self, peer: &NodeId, reason: &'static [u8]) {
        self.senders.remove(peer);
        let removed = self
            .connections
            .lock()
            .ok()
            .and_then(|mut map| map.remove(peer));
        if let Some(connection) = removed {
            connection.close(1u32.into(), reason);
        }
    }

    /// Peers with an open connection.
    pub(super) fn connected(&self) -> Vec<NodeId> {
        self.connections
            .lock()
            .map(|map| {
                map.iter()
                    .filter(|(_, connection)| connection.close_reason().is_none())
                    .map(|(peer, _)| *peer)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Stops every send task and closes the endpoint.
    pub(super) async fn close(&mut self) {
        self.senders.clear();
        self.transport.close();
        self.transport.wait_idle().await;
    }
}

async fn accept_loop(
    transport: Transport,
    connections: Connections,
    events: mpsc::Sender<NetEvent>,
    traffic: Arc<Traffic>,
) {
    while let Some(result) = transport.accept().await {
        match result {
            Ok((peer, connection)) => {
                if let Ok(mut map) = connections.lock() {
                    map.insert(peer, connection.clone());
                }
                tokio::spawn(receive_loop(
                    peer,
                    connection,
                    events.clone(),
                    traffic.clone(),
                ));
                let connected = NetEvent::Connected {
                    peer,
                    inbound: true,
                };
                if events.send(connected).await.is_err() {
                    return;
                }
            }
            Err(error) => debug!(%error, "incoming connection failed"),
        }
        if report_refusals(&transport, &events).await.is_err() {
            return;
        }
    }
}

async fn report_refusals(
    transport: &Transport,
    events: &mpsc::Sender<NetEvent>,
) -> Result<(), mpsc::error::SendError<NetEvent>> {
    for refusal in transport.refusals() {
        warn!(presented = ?refusal.presented.map(|id| id.to_string()), reason = %refusal.reason, "handshake refused");
        events.send(NetEvent::Refused(refusal)).await?;
    }
    Ok(())
}

/// Reads one connection's incoming streams, one frame at a time, each handed to
/// the actor before the next is read.
async fn receive_loop(
    peer: NodeId,
    connection: quinn::Connection,
    events: mpsc::Sender<NetEvent>,
    traffic: Arc<Traffic>,
) {
    while let Ok(stream) = connection.accept_uni().await {
        let mut reader = FrameReader::new(stream);
        loop {
            match reader.next().await {
                Ok(Some(bytes)) => {
                    traffic.add_received(bytes.len() + 4);
                    if events
                        .send(NetEvent::Frame { from: peer, bytes })
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Ok(None) => break,
                Err(NetError::BadFrame(reason)) => {
                    debug!(peer = %peer, reason, "refused a frame");
                    reader.abandon();
                    if events
                        .send(NetEvent::BadFrame { from: peer, reason })
                        .await
                        .is_err()
                    {
                        return;
                    }
                    break;
                }
                Err(error) => {
                    debug!(peer = %peer, %error, "a message stream ended");
                    break;
                }
            }
        }
    }
}

/// The open connection to `peer`, if any.
fn current(connections: &Connections, peer: &NodeId) -> Option<quinn::Connection> {
    connections
        .lock()
        .ok()
        .and_then(|map| map.get(peer).cloned())
        .filter(|connection| connection.close_reason().is_none())
}

fn drop_connection(connections: &Connections, peer: &NodeId, connection: &quinn::Connection) {
    if let Ok(mut map) = connections.lock() {
        if map
            .get(peer)
            .is_some_and(|c| c.stable_id() == connection.stable_id())
        {
            map.remove(peer);
        }
    }
}

/// Sends queued frames to one peer, in order, on its message stream over the
/// current connection (reopened when a newer connection replaced it), dialling
/// once if there is none.
async fn link_loop(
    peer: NodeId,
    addr: Option<SocketAddr>,
    transport: Transport,
    connections: Connections,
    events: mpsc::Sender<NetEvent>,
    mut frames: mpsc::Receiver<Vec<u8>>,
    traffic: Arc<Traffic>,
) {
    let mut dialled = false;
    let mut writer: Option<(usize, FrameWriter)> = None;
    while let Ok(Some(frame)) = tokio::time::timeout(LINK_IDLE, frames.recv()).await {
        let connection = match current(&connections, &peer) {
            Some(connection) => connection,
            None if !dialled => {
                dialled = true;
                match dial(peer, addr, &transport, &connections, &events, &traffic).await {
                    Some(connection) => connection,
                    None => return,
                }
            }
            None => return,
        };
        if writer
            .as_ref()
            .is_none_or(|(id, _)| *id != connection.stable_id())
        {
            match FrameWriter::open(&connection).await {
                Ok(opened) => writer = Some((connection.stable_id(), opened)),
                Err(error) => {
                    debug!(peer = %peer, %error, "cannot open a message stream");
                    drop_connection(&connections, &peer, &connection);
                    return;
                }
            }
        }
        let Some((_, stream)) = writer.as_mut() else {
            return;
        };
        traffic.add_sent(frame.len() + 4);
        let sent = tokio::time::timeout(SEND_TIMEOUT, stream.send(&frame)).await;
        if !matches!(sent, Ok(Ok(()))) {
            debug!(peer = %peer, "send failed or timed out");
            drop_connection(&connections, &peer, &connection);
            return;
        }
    }
}

async fn dial(
    peer: NodeId,
    addr: Option<SocketAddr>,
    transport: &Transport,
    connections: &Connections,
    events: &mpsc::Sender<NetEvent>,
    traffic: &Arc<Traffic>,
) -> Option<quinn::Connection> {
    let dialled = match addr {
        Some(addr) => transport.dial(peer, addr).await,
        None => Err(NetError::Stream("no known address".into())),
    };
    match dialled {
        Ok(connection) => {
            if let Ok(mut map) = connections.lock() {
                map.insert(peer, connection.clone());
            }
            tokio::spawn(receive_loop(
                peer,
                connection.clone(),
                events.clone(),
                traffic.clone(),
            ));
            let _ = events
                .send(NetEvent::Connected {
                    peer,
                    inbound: false,
                })
                .await;
            Some(connection)
        }
        Err(error) => {
            debug!(peer = %peer, %error, "dial failed");
            let _ = report_refusals(transport, events).await;
            let _ = events.send(NetEvent::DialFailed(peer)).await;
            None
        }
    }
}
