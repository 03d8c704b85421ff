//! Connections to peers: one receive loop per connection, one send task per peer.
//!
//! A receive loop reads its peer's message stream frame by frame and puts each
//! frame in the peer's queue of the actor's [`Inbox`], awaiting room there before
//! it reads the next: when the actor falls behind on a peer, that peer's loop
//! stops reading, QUIC stops granting it stream credit, and its sends wait, while
//! other peers' frames are still served in turn. A stream the peer resets, or a
//! frame that breaks the framing, is reported to the actor, which charges the
//! peer.
//!
//! A send task owns the outgoing message stream to one peer: it dials the peer
//! once if no connection is open (see [`table`](super::table) for which
//! connection is kept when there are two) and writes queued frames in order. Its
//! queue is bounded in bytes ([`SEND_QUEUE_BYTES`]); a frame that does not fit is
//! dropped, and anti-entropy repairs what it carried. A peer that withholds
//! stream credit therefore pins at most the queue and QUIC's send window, and
//! after [`SEND_TIMEOUT`] its connection is closed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tidings_keys::NodeId;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::inbox::{Frame, Inbox};
use super::metrics::Traffic;
use super::table::{Admission, ConnectionTable};
use crate::net::checkers::Checkers;
use crate::net::gate::{Decision, Gate};
use crate::net::tls::Refusal;
use crate::net::transport::{FrameReader, FrameWriter, NetError, Transport};

/// Bytes queued for one peer before new frames are dropped.
pub const SEND_QUEUE_BYTES: usize = 4 * 1024 * 1024;

/// Longest wait for stream credit for one frame before the link gives up.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// A send task with nothing to send for this long ends (it is restarted on demand).
const LINK_IDLE: Duration = Duration::from_secs(60);

/// Connection news queued for the actor (frames go to the [`Inbox`]).
pub(super) const EVENT_QUEUE: usize = 4096;

/// What the network tasks tell the actor, besides frames.
#[derive(Debug)]
pub(super) enum NetEvent {
    /// A frame the transport refused (oversized, truncated, dripped), or a
    /// message stream the peer reset.
    BadFrame { from: NodeId, reason: &'static str },
    /// A dial failed.
    DialFailed(NodeId),
    /// A dial to `peer` at `addr` reached another node, `answered`.
    Misdirected {
        peer: NodeId,
        addr: SocketAddr,
        answered: Option<NodeId>,
    },
    /// A connection is up.
    Connected { peer: NodeId, inbound: bool },
    /// The peer's live connection is down (no other connection with it is open).
    Disconnected { peer: NodeId, why: Departure },
    /// A handshake was refused.
    Refused(Refusal),
}

/// Why a connection went down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Departure {
    /// The peer closed it: it stopped, left, or banned this node.
    ClosedByPeer,
    /// Nothing was heard from the peer for the idle timeout.
    TimedOut,
    /// This node closed it (a ban, a newer connection, a failed send).
    ClosedHere,
    /// Anything else the transport reported (a reset, a protocol error).
    Lost,
}

impl Departure {
    fn of(error: &quinn::ConnectionError) -> Self {
        match error {
            quinn::ConnectionError::ApplicationClosed(_)
            | quinn::ConnectionError::ConnectionClosed(_) => Self::ClosedByPeer,
            quinn::ConnectionError::TimedOut => Self::TimedOut,
            quinn::ConnectionError::LocallyClosed => Self::ClosedHere,
            _ => Self::Lost,
        }
    }

    /// In words, for logs.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::ClosedByPeer => "closed by the peer",
            Self::TimedOut => "nothing heard for the idle timeout",
            Self::ClosedHere => "closed by this node",
            Self::Lost => "lost",
        }
    }
}

/// The queue of one send task.
#[derive(Debug)]
struct Link {
    frames: mpsc::UnboundedSender<Vec<u8>>,
    queued: Arc<AtomicUsize>,
}

/// What the network tasks share.
#[derive(Debug, Clone)]
struct Shared {
    transport: Transport,
    table: Arc<ConnectionTable>,
    events: mpsc::Sender<NetEvent>,
    inbox: Arc<Inbox>,
    traffic: Arc<Traffic>,
    /// Check received records' signatures before the actor takes their frame.
    checkers: Option<Arc<Checkers>>,
    me: NodeId,
}

/// The connection table and the send tasks.
#[derive(Debug)]
pub(super) struct Links {
    shared: Shared,
    senders: HashMap<NodeId, Link>,
    bootstrap: HashMap<NodeId, SocketAddr>,
    /// When each peer was last probed (see [`Links::probe`]).
    probed: HashMap<NodeId, std::time::Instant>,
    /// Frames dropped because a peer's queue was full.
    pub(super) dropped: u64,
}

/// A peer probed this recently is not probed again.
const PROBE_EVERY: Duration = Duration::from_secs(2);

impl Links {
    /// Starts accepting connections; returns the links and the actor's queue.
    pub(super) fn start(
        me: NodeId,
        transport: Transport,
        bootstrap: HashMap<NodeId, SocketAddr>,
        checkers: Option<Arc<Checkers>>,
    ) -> (Self, mpsc::Receiver<NetEvent>) {
        let (events, receiver) = mpsc::channel(EVENT_QUEUE);
        let shared = Shared {
            transport,
            table: Arc::new(ConnectionTable::new(me)),
            events,
            inbox: Arc::default(),
            traffic: Arc::default(),
            checkers,
            me,
        };
        tokio::spawn(accept_loop(shared.clone()));
        tokio::spawn(watch_silence(Arc::downgrade(&shared.table)));
        let links = Self {
            shared,
            senders: HashMap::new(),
            bootstrap,
            probed: HashMap::new(),
            dropped: 0,
        };
        (links, receiver)
    }

    /// Frames received and not yet taken by the actor.
    pub(super) fn inbox(&self) -> Arc<Inbox> {
        self.shared.inbox.clone()
    }

    /// Bytes queued for all peers and not yet handed to QUIC.
    pub(super) fn queued_bytes(&self) -> usize {
        self.senders
            .values()
            .map(|link| link.queued.load(Ordering::Relaxed))
            .sum()
    }

    /// Bytes sent and received so far.
    pub(super) fn traffic(&self) -> &Traffic {
        &self.shared.traffic
    }

    /// The address to dial `peer` at: from its record, else from the bootstrap list.
    pub(super) fn bootstrap_address(&self, peer: &NodeId) -> Option<SocketAddr> {
        self.bootstrap.get(peer).copied()
    }

    /// Queues `frame` for `to`, starting its send task (and a dial to `addr`,
    /// kept alive while idle if `keep_alive`) if needed. A frame that would take
    /// the queue over its bytes is dropped.
    pub(super) fn send(
        &mut self,
        to: NodeId,
        frame: Vec<u8>,
        addr: Option<SocketAddr>,
        keep_alive: bool,
    ) {
        let length = frame.len();
        if let Some(link) = self.senders.get(&to) {
            if link.queued.load(Ordering::Relaxed) + length > SEND_QUEUE_BYTES {
                self.dropped += 1;
                return;
            }
            link.queued.fetch_add(length, Ordering::Relaxed);
            match link.frames.send(frame) {
                Ok(()) => return,
                Err(mpsc::error::SendError(returned)) => {
                    self.senders.remove(&to);
                    return self.send(to, returned, addr, keep_alive);
                }
            }
        }
        let (frames, receiver) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(length));
        let _ = frames.send(frame);
        tokio::spawn(link_loop(
            to,
            Dial { addr, keep_alive },
            self.shared.clone(),
            receiver,
            queued.clone(),
        ));
        self.senders.insert(to, Link { frames, queued });
    }

    /// Drops the send task to `peer`: it finishes what it has queued, and the
    /// next frame starts a fresh one (after a failed dial, or when the peer
    /// connected anew).
    pub(super) fn forget(&mut self, peer: &NodeId) {
        self.senders.remove(peer);
    }

    /// Closes the connection to `peer` (a ban).
    /// Closes the connection with a banned `peer` and refuses its connections
    /// for `ban`.
    pub(super) fn ban(&mut self, peer: &NodeId, ban: Duration) {
        self.senders.remove(peer);
        self.shared.table.ban(peer, ban);
    }

    /// Closes the connection to a key that left the roster (the TLS verifiers
    /// refuse it from now on).
    /// The connection stays a moment, so that the operation that removed the
    /// key (queued just before) reaches it.
    pub(super) fn close_removed(&mut self, peer: &NodeId) {
        self.senders.remove(peer);
        let shared = self.shared.clone();
        let peer = *peer;
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            shared.table.close(&peer, b"removed from the roster");
        });
    }

    /// Peers with an open connection.
    pub(super) fn connected(&self) -> Vec<NodeId> {
        self.shared.table.connected()
    }

    /// Dials `peer` at `addr` unless a connection is open, a send task will
    /// dial, or it was probed a moment ago: whether it answers shows whether it
    /// is reachable now (a `Connected` or `DialFailed` event follows). The
    /// connection is not kept alive: it closes after the idle timeout.
    pub(super) fn probe(&mut self, peer: NodeId, addr: SocketAddr) {
        let now = std::time::Instant::now();
        self.probed
            .retain(|_, at| now.duration_since(*at) < PROBE_EVERY);
        if self.probed.contains_key(&peer)
            || self.senders.contains_key(&peer)
            || self.shared.table.current(&peer).is_some()
        {
            return;
        }
        self.probed.insert(peer, now);
        let shared = self.shared.clone();
        let target = Dial {
            addr: Some(addr),
            keep_alive: false,
        };
        tokio::spawn(async move {
            dial(peer, target, &shared).await;
        });
    }

    /// Stops every send task and closes the endpoint.
    pub(super) async fn close(&mut self) {
        self.shared.inbox.close();
        self.senders.clear();
        self.shared.transport.close();
        self.shared.transport.wait_idle().await;
    }
}

/// How often every connection is looked at for silence.
const SILENCE_CHECK: Duration = Duration::from_secs(5);

/// Looks at every connection every [`SILENCE_CHECK`], so that a peer's silence
/// is timed from within that of when it began (see
/// `ConnectionTable::connected`: a dead peer shows as not connected one idle
/// timeout, 45 s, to 50 s after the last traffic heard from it); ends with the
/// node. (Once a second, it was the most frequent wake-up of an idle node.)
async fn watch_silence(table: std::sync::Weak<ConnectionTable>) {
    let mut tick = tokio::time::interval(SILENCE_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match table.upgrade() {
            Some(table) => drop(table.connected()),
            None => return,
        }
    }
}

/// Takes incoming connection attempts through the gate; each admitted handshake
/// runs in its own task, so a slow or silent caller delays nobody else.
async fn accept_loop(shared: Shared) {
    let gate = Gate::default();
    while let Some(incoming) = shared.transport.incoming().await {
        let source = incoming.remote_address();
        let ticket = match gate.admit(source.ip(), incoming.remote_address_validated()) {
            Decision::Accept(ticket) => ticket,
            Decision::Retry => {
                if incoming.retry().is_err() {
                    debug!(%source, "a retried attempt came back unvalidated; ignored");
                }
                continue;
            }
            Decision::Refuse => {
                debug!(%source, pending = gate.pending(), "too many pending handshakes; refused");
                incoming.refuse();
                continue;
            }
        };
        let shared = shared.clone();
        let gate = gate.clone();
        tokio::spawn(async move {
            let result = Transport::handshake(incoming).await;
            drop(ticket);
            match result {
                Ok((peer, connection)) => {
                    match shared.table.admit(peer, connection.clone(), peer) {
                        Admission::Kept => {
                            tokio::spawn(receive_loop(peer, connection, shared.clone()));
                            let connected = NetEvent::Connected {
                                peer,
                                inbound: true,
                            };
                            let _ = shared.events.send(connected).await;
                        }
                        Admission::Lost => {}
                        Admission::Banned => gate.wasted(source.ip()),
                    }
                }
                Err(error) => {
                    debug!(%error, "incoming connection failed");
                    gate.wasted(source.ip());
                }
            }
            let _ = report_refusals(&shared.transport, &shared.events).await;
        });
    }
}

/// The key a refused handshake presented, for logs.
fn presented_key(refusal: &Refusal) -> String {
    refusal
        .presented
        .map_or_else(|| "none".to_string(), |id| id.to_string())
}

async fn report_refusals(
    transport: &Transport,
    events: &mpsc::Sender<NetEvent>,
) -> Result<(), mpsc::error::SendError<NetEvent>> {
    for refusal in transport.refusals() {
        warn!(presented = %presented_key(&refusal), reason = %refusal.reason, "handshake refused");
        events.send(NetEvent::Refused(refusal)).await?;
    }
    Ok(())
}

/// Reads one connection's incoming streams, one frame at a time, each checked by
/// the checkers (see [`checkers`](crate::net::checkers)) and queued in the inbox
/// before the next is read.
async fn receive_loop(peer: NodeId, connection: quinn::Connection, shared: Shared) {
    let ended = read_streams(peer, &connection, &shared).await;
    // The connection is down (or the node stops): if it was the peer's live
    // one, the actor hears that the peer is no longer connected.
    let why = match ended {
        Some(error) => Departure::of(&error),
        None => return,
    };
    if shared.table.remove_if_current(&peer, &connection) {
        let _ = shared
            .events
            .send(NetEvent::Disconnected { peer, why })
            .await;
    }
}

/// Reads the connection's streams until it closes (its error) or the node
/// stops taking frames (`None`).
async fn read_streams(
    peer: NodeId,
    connection: &quinn::Connection,
    shared: &Shared,
) -> Option<quinn::ConnectionError> {
    loop {
        let stream = match connection.accept_uni().await {
            Ok(stream) => stream,
            Err(error) => return Some(error),
        };
        let mut reader = FrameReader::new(stream);
        loop {
            let reason = match reader.next().await {
                Ok(Some(bytes)) => {
                    shared.traffic.add_received(bytes.len() + 4);
                    let checked = match &shared.checkers {
                        Some(checkers) => checkers.check_frame(&bytes).await,
                        None => Vec::new(),
                    };
                    let frame = Frame { bytes, checked };
                    if shared.inbox.put(peer, frame).await.is_err() {
                        return None;
                    }
                    continue;
                }
                Ok(None) => break,
                Err(NetError::BadFrame(reason)) => reason,
                Err(NetError::Reset) => "the peer reset its message stream",
                Err(error) => {
                    debug!(peer = %peer, %error, "a message stream ended");
                    break;
                }
            };
            debug!(peer = %peer, reason, "refused a frame");
            reader.abandon();
            let bad = NetEvent::BadFrame { from: peer, reason };
            if shared.events.send(bad).await.is_err() {
                return None;
            }
            break;
        }
    }
}

/// Sends queued frames to one peer, in order, on its message stream over the
/// current connection (reopened when a newer connection replaced it), dialling
/// once if there is none. The stream is finished when the task ends.
async fn link_loop(
    peer: NodeId,
    target: Dial,
    shared: Shared,
    mut frames: mpsc::UnboundedReceiver<Vec<u8>>,
    queued: Arc<AtomicUsize>,
) {
    // Whatever is still queued when the task ends is dropped with the queue.
    let _emptied = Emptied(queued.clone());
    let mut dialled = false;
    let mut writer: Option<(usize, FrameWriter)> = None;
    while let Ok(Some(frame)) = tokio::time::timeout(LINK_IDLE, frames.recv()).await {
        queued.fetch_sub(frame.len(), Ordering::Relaxed);
        let connection = match shared.table.current(&peer) {
            Some(connection) => connection,
            None if !dialled => {
                dialled = true;
                match dial(peer, target, &shared).await {
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
            if let Some((_, mut old)) = writer.take() {
                old.finish();
            }
            match FrameWriter::open(&connection).await {
                Ok(opened) => writer = Some((connection.stable_id(), opened)),
                Err(error) => {
                    debug!(peer = %peer, %error, "cannot open a message stream");
                    shared.table.remove_if_current(&peer, &connection);
                    connection.close(3u32.into(), b"cannot open a stream");
                    return;
                }
            }
        }
        let Some((_, stream)) = writer.as_mut() else {
            return;
        };
        shared.traffic.add_sent(frame.len() + 4);
        let sent = tokio::time::timeout(SEND_TIMEOUT, stream.send(&frame)).await;
        if !matches!(sent, Ok(Ok(()))) {
            debug!(peer = %peer, "send failed or timed out: closing the connection");
            shared.table.remove_if_current(&peer, &connection);
            connection.close(3u32.into(), b"send failed or timed out");
            return;
        }
    }
    if let Some((_, mut stream)) = writer {
        stream.finish();
    }
}

/// Zeroes a send queue's byte count when its task ends.
struct Emptied(Arc<AtomicUsize>);

impl Drop for Emptied {
    fn drop(&mut self) {
        self.0.store(0, Ordering::Relaxed);
    }
}

/// Where and how a send task dials.
#[derive(Debug, Clone, Copy)]
struct Dial {
    addr: Option<SocketAddr>,
    keep_alive: bool,
}

async fn dial(peer: NodeId, target: Dial, shared: &Shared) -> Option<quinn::Connection> {
    let addr = target.addr;
    let dialled = match addr {
        Some(addr) if target.keep_alive => shared.transport.dial_kept_alive(peer, addr).await,
        Some(addr) => shared.transport.dial(peer, addr).await,
        None => Err(NetError::Stream("no known address".into())),
    };
    match dialled {
        Ok(connection) => {
            match shared.table.admit(peer, connection.clone(), shared.me) {
                Admission::Kept => {}
                // The peer's own connection to us won the tie-break; use it.
                Admission::Lost => return shared.table.current(&peer),
                Admission::Banned => return None,
            }
            tokio::spawn(receive_loop(peer, connection.clone(), shared.clone()));
            let _ = shared
                .events
                .send(NetEvent::Connected {
                    peer,
                    inbound: false,
                })
                .await;
            Some(connection)
        }
        Err(error) => {
            debug!(peer = %peer, %error, "dial failed");
            for refusal in shared.transport.refusals() {
                let event = match (refusal.expected, addr) {
                    (Some(expected), Some(addr)) if expected == peer => NetEvent::Misdirected {
                        peer,
                        addr,
                        answered: refusal.presented,
                    },
                    _ => {
                        warn!(presented = %presented_key(&refusal), reason = %refusal.reason, "handshake refused");
                        NetEvent::Refused(refusal)
                    }
                };
                let _ = shared.events.send(event).await;
            }
            let _ = shared.events.send(NetEvent::DialFailed(peer)).await;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::RwLock;

    use tidings_keys::{Identity, Roster};

    use super::*;
    use crate::net::transport::{SEND_WINDOW, STREAM_WINDOW};
    use crate::proto::limits::MAX_FRAME_BYTES;

    /// A peer that completes handshakes and then never reads: it grants the
    /// initial stream credit and no more.
    async fn withholding_peer(transport: Transport) {
        let mut held = Vec::new();
        while let Some(incoming) = transport.incoming().await {
            if let Ok((_, connection)) = Transport::handshake(incoming).await {
                held.push(connection);
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_peer_that_withholds_stream_credit_pins_a_bounded_amount() {
        let (me, them) = (Identity::from_seed(&[1; 32]), Identity::from_seed(&[2; 32]));
        let roster: Roster = [me.node_id(), them.node_id()].into_iter().collect();
        let shared = Arc::new(RwLock::new(roster));
        let local = "127.0.0.1:0".parse().unwrap();
        let victim = Transport::bind(&me, shared.clone(), local).unwrap();
        let attacker = Transport::bind(&them, shared, local).unwrap();
        let address = attacker.local_addr();
        tokio::spawn(withholding_peer(attacker));
        let (mut links, _events) = Links::start(me.node_id(), victim, HashMap::new(), None);

        // The node tries to send 64 MiB of largest frames.
        for _ in 0..64 {
            links.send(them.node_id(), vec![7u8; MAX_FRAME_BYTES], address, false);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let queued = links.queued_bytes();
        let handed = links.traffic().sent.load(Ordering::Relaxed) as usize;
        // Pinned: the queue, the frame being written, and what QUIC holds
        // unacknowledged (at most what the peer's stream credit allowed).
        let pinned = queued + MAX_FRAME_BYTES + handed.min(SEND_WINDOW as usize);
        println!(
            "credit withheld: {} frames dropped, {queued} bytes queued, {handed} bytes handed to QUIC, \
             at most {:.1} MiB pinned",
            links.dropped,
            pinned as f64 / (1024.0 * 1024.0)
        );
        assert!(queued <= SEND_QUEUE_BYTES, "{queued} bytes queued");
        assert!(links.dropped >= 56, "only {} frames dropped", links.dropped);
        assert!(
            handed <= 2 * (MAX_FRAME_BYTES + 4) && handed >= STREAM_WINDOW as usize / 2,
            "{handed} bytes handed to QUIC"
        );
        assert!(pinned < 16 * 1024 * 1024, "{pinned} bytes pinned");

        // After the send timeout the connection is closed and the queue freed.
        let deadline = std::time::Instant::now() + SEND_TIMEOUT + Duration::from_secs(5);
        while links.queued_bytes() > 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(links.queued_bytes(), 0, "the stalled queue was freed");
        assert!(links.shared.table.current(&them.node_id()).is_none());
    }
}
