//! The actor's inbox of frames: one queue per peer, served in turn.
//!
//! Each connection's receive loop puts the frames it reads into its peer's queue
//! and waits while that queue is full, so a peer that sends faster than the actor
//! serves it stops being read, and QUIC flow control makes it wait. The actor takes
//! one frame from each non-empty queue in turn: a peer flooding the node delays
//! another peer's frame by at most one of its own frames per turn, however many it
//! sends. A queue holds up to [`PEER_QUEUE_BYTES`] (or one frame, if larger), so
//! the frames waiting in memory are bounded by the number of connections, which
//! the connection table bounds by one per roster key.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use tidings_keys::NodeId;
use tokio::sync::Notify;

use crate::proto::Prechecked;

/// A frame as received, with its records checked ahead (see
/// [`checkers`](crate::net::checkers)): `checked[i]` for the `i`-th record.
#[derive(Debug, Default)]
pub(super) struct Frame {
    pub(super) bytes: Vec<u8>,
    pub(super) checked: Vec<Option<Prechecked>>,
}

impl From<Vec<u8>> for Frame {
    fn from(bytes: Vec<u8>) -> Self {
        Self {
            bytes,
            checked: Vec::new(),
        }
    }
}

/// Bytes of frames one peer may have waiting for the actor (a larger frame is
/// still taken when its queue is empty).
pub const PEER_QUEUE_BYTES: usize = 1024 * 1024;

/// Frames one peer may have waiting for the actor.
pub const PEER_QUEUE_FRAMES: usize = 64;

#[derive(Debug, Default)]
struct Queue {
    frames: VecDeque<Frame>,
    bytes: usize,
}

impl Queue {
    fn has_room_for(&self, len: usize) -> bool {
        self.frames.is_empty()
            || (self.frames.len() < PEER_QUEUE_FRAMES && self.bytes + len <= PEER_QUEUE_BYTES)
    }
}

#[derive(Debug, Default)]
struct Queues {
    by_peer: HashMap<NodeId, Queue>,
    /// Peers with frames waiting, in serving order.
    turn: VecDeque<NodeId>,
    closed: bool,
}

/// Frames from peers, waiting for the actor.
#[derive(Debug, Default)]
pub(super) struct Inbox {
    queues: Mutex<Queues>,
    /// Woken when a frame arrives.
    arrived: Notify,
    /// Woken when a frame is taken (a full queue may have room).
    taken: Notify,
}

/// The inbox is closed: the actor stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Closed;

impl Inbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queues> {
        self.queues
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Queues `frame` from `peer`, waiting while the peer's queue is full.
    pub(super) async fn put(&self, peer: NodeId, frame: Frame) -> Result<(), Closed> {
        loop {
            let taken = self.taken.notified();
            tokio::pin!(taken);
            // Registered before the check, so a frame taken in between still wakes us.
            taken.as_mut().enable();
            {
                let mut queues = self.lock();
                if queues.closed {
                    return Err(Closed);
                }
                let queue = queues.by_peer.entry(peer).or_default();
                if queue.has_room_for(frame.bytes.len()) {
                    let was_empty = queue.frames.is_empty();
                    queue.bytes += frame.bytes.len();
                    queue.frames.push_back(frame);
                    if was_empty {
                        queues.turn.push_back(peer);
                    }
                    drop(queues);
                    self.arrived.notify_one();
                    return Ok(());
                }
            }
            taken.await;
        }
    }

    /// Takes the next frame, from the peer whose turn it is, waiting for one.
    pub(super) async fn take(&self) -> (NodeId, Frame) {
        loop {
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if let Some(next) = self.try_take() {
                return next;
            }
            arrived.await;
        }
    }

    /// Takes the next frame if one is waiting.
    pub(super) fn try_take(&self) -> Option<(NodeId, Frame)> {
        let mut queues = self.lock();
        let peer = queues.turn.pop_front()?;
        let queue = queues.by_peer.get_mut(&peer)?;
        let frame = queue.frames.pop_front()?;
        queue.bytes -= frame.bytes.len();
        if queue.frames.is_empty() {
            queues.by_peer.remove(&peer);
        } else {
            queues.turn.push_back(peer);
        }
        drop(queues);
        self.taken.notify_waiters();
        Some((peer, frame))
    }

    /// Bytes of frames waiting.
    pub(super) fn bytes(&self) -> usize {
        self.lock().by_peer.values().map(|queue| queue.bytes).sum()
    }

    /// Refuses every later frame and wakes the receive loops waiting for room.
    pub(super) fn close(&self) {
        let mut queues = self.lock();
        queues.closed = true;
        queues.by_peer.clear();
        queues.turn.clear();
        drop(queues);
        self.taken.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    fn peer(n: u8) -> NodeId {
        NodeId::from_bytes([n; 32])
    }

    #[tokio::test]
    async fn peers_are_served_in_turn() {
        let inbox = Inbox::default();
        for i in 0..10u8 {
            inbox.put(peer(1), vec![i].into()).await.unwrap();
        }
        inbox.put(peer(2), vec![100].into()).await.unwrap();
        inbox.put(peer(2), vec![101].into()).await.unwrap();
        let order: Vec<(u8, u8)> = (0..5)
            .map(|_| {
                let (from, frame) = inbox.try_take().unwrap();
                (from.as_bytes()[0], frame.bytes[0])
            })
            .collect();
        // Peer 2's frames are not stuck behind peer 1's ten.
        assert_eq!(order, [(1, 0), (2, 100), (1, 1), (2, 101), (1, 2)]);
    }

    #[tokio::test]
    async fn a_full_queue_holds_its_sender_until_a_frame_is_taken() {
        let inbox = Arc::new(Inbox::default());
        let big = vec![0u8; PEER_QUEUE_BYTES / 2];
        inbox.put(peer(1), big.clone().into()).await.unwrap();
        inbox.put(peer(1), big.clone().into()).await.unwrap();
        let sender = {
            let inbox = inbox.clone();
            let big = big.clone();
            tokio::spawn(async move { inbox.put(peer(1), big.into()).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!sender.is_finished(), "the third frame waits");
        assert_eq!(inbox.bytes(), PEER_QUEUE_BYTES);
        // Another peer is not held by peer 1's full queue.
        inbox.put(peer(2), big.clone().into()).await.unwrap();
        let _ = inbox.take().await;
        tokio::time::timeout(Duration::from_secs(5), sender)
            .await
            .expect("room made")
            .unwrap()
            .unwrap();
        // A frame larger than the queue is taken when the queue is empty.
        let inbox = Inbox::default();
        inbox
            .put(peer(3), vec![0; 2 * PEER_QUEUE_BYTES].into())
            .await
            .unwrap();
        assert_eq!(
            inbox.try_take().unwrap().1.bytes.len(),
            2 * PEER_QUEUE_BYTES
        );
    }

    #[tokio::test]
    async fn closing_releases_waiting_senders() {
        let inbox = Arc::new(Inbox::default());
        inbox
            .put(peer(1), vec![0; PEER_QUEUE_BYTES].into())
            .await
            .unwrap();
        let sender = {
            let inbox = inbox.clone();
            tokio::spawn(async move { inbox.put(peer(1), vec![1].into()).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        inbox.close();
        let result = tokio::time::timeout(Duration::from_secs(5), sender)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(result, Err(Closed));
        assert_eq!(inbox.put(peer(2), vec![2].into()).await, Err(Closed));
    }
}
