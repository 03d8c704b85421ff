//! One live connection per admitted key.
//!
//! Every connection a key opens costs the node a receive loop and buffers; a key
//! that opens many must not get more than one. When a second connection with the
//! same peer comes up, one of the two is closed at once:
//!
//! - normally the newer one stays and the older one is closed (a peer that
//!   restarted, reconnects, or opens connection after connection);
//! - but when both sides dialled each other at about the same time (the older
//!   connection is younger than [`RACE_WINDOW`] and was opened by the other side),
//!   the one dialled by the smaller node id stays. Both sides apply the same rule,
//!   so they keep the same connection instead of closing each other's.
//!
//! A banned peer's connection is closed, and its new connections are closed as
//! soon as their handshake ends, until the ban is over: its frames are never read.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tidings_keys::NodeId;

use crate::net::transport::IDLE_TIMEOUT;

/// Two connections opened by each side within this time are a race, settled by
/// the node ids; otherwise the newer connection wins.
pub(super) const RACE_WINDOW: Duration = Duration::from_secs(2);

/// What became of a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admission {
    /// It is the peer's live connection now.
    Kept,
    /// The peer's other connection won the race; this one was closed.
    Lost,
    /// The peer is banned; this one was closed.
    Banned,
}

#[derive(Debug)]
struct Live {
    connection: quinn::Connection,
    dialled_by: NodeId,
    since: Instant,
    /// Datagrams received on it when that count was last seen to grow, and when.
    received: (u64, Instant),
}

impl Live {
    /// Whether the peer was heard on this connection (any datagram: frames,
    /// acknowledgements of keep-alive pings) within [`IDLE_TIMEOUT`]. A peer
    /// killed without a goodbye is silent from then on, and shows as not
    /// connected one idle timeout later, even when a keep-alive ping sent after
    /// its death restarted the transport's own idle timer.
    fn heard_lately(&mut self, now: Instant) -> bool {
        let datagrams = self.connection.stats().udp_rx.datagrams;
        if datagrams > self.received.0 {
            self.received = (datagrams, now);
        }
        now.duration_since(self.received.1) < IDLE_TIMEOUT
    }
}

/// The live connection of each peer.
#[derive(Debug)]
pub(super) struct ConnectionTable {
    me: NodeId,
    live: Mutex<HashMap<NodeId, Live>>,
    /// Banned peers and when their ban ends.
    banned: Mutex<HashMap<NodeId, Instant>>,
}

impl ConnectionTable {
    pub(super) fn new(me: NodeId) -> Self {
        Self {
            me,
            live: Mutex::new(HashMap::new()),
            banned: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, Live>> {
        self.live
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Records a new connection with `peer`, opened by `dialled_by`, and closes
    /// whichever of it and an existing one loses.
    pub(super) fn admit(
        &self,
        peer: NodeId,
        connection: quinn::Connection,
        dialled_by: NodeId,
    ) -> Admission {
        if self.is_banned(&peer) {
            connection.close(1u32.into(), b"banned");
            return Admission::Banned;
        }
        let mut live = self.lock();
        let keep_new = match live.get(&peer) {
            None => true,
            Some(old) if old.connection.close_reason().is_some() => true,
            Some(old) if old.dialled_by == dialled_by => true,
            Some(old) if old.since.elapsed() > RACE_WINDOW => true,
            Some(_) => dialled_by == self.me.min(peer),
        };
        if !keep_new {
            connection.close(2u32.into(), b"a connection with this peer is already open");
            return Admission::Lost;
        }
        let now = Instant::now();
        let received = connection.stats().udp_rx.datagrams;
        let replaced = live.insert(
            peer,
            Live {
                connection,
                dialled_by,
                since: now,
                received: (received, now),
            },
        );
        if let Some(old) = replaced {
            old.connection
                .close(2u32.into(), b"replaced by a newer connection");
        }
        Admission::Kept
    }

    /// The open connection with `peer`, if any.
    pub(super) fn current(&self, peer: &NodeId) -> Option<quinn::Connection> {
        self.lock()
            .get(peer)
            .map(|live| live.connection.clone())
            .filter(|connection| connection.close_reason().is_none())
    }

    /// Forgets `connection` if it is still the one recorded for `peer`; returns
    /// whether it was.
    pub(super) fn remove_if_current(&self, peer: &NodeId, connection: &quinn::Connection) -> bool {
        let mut live = self.lock();
        let current = live
            .get(peer)
            .is_some_and(|live| live.connection.stable_id() == connection.stable_id());
        if current {
            live.remove(peer);
        }
        current
    }

    /// Closes and forgets the connection with `peer`.
    pub(super) fn close(&self, peer: &NodeId, reason: &'static [u8]) {
        if let Some(live) = self.lock().remove(peer) {
            live.connection.close(1u32.into(), reason);
        }
    }

    /// Closes the connection with `peer` and refuses its connections for `ban`.
    pub(super) fn ban(&self, peer: &NodeId, ban: Duration) {
        let now = Instant::now();
        {
            let mut banned = self
                .banned
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            banned.retain(|_, until| *until > now);
            banned.insert(*peer, now + ban);
        }
        self.close(peer, b"banned");
    }

    fn is_banned(&self, peer: &NodeId) -> bool {
        self.banned
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .get(peer)
            .is_some_and(|until| *until > Instant::now())
    }

    /// Peers with an open connection on which they were heard within the idle
    /// timeout. Called every 5 s by the links (see `watch_silence`), and
    /// whenever asked, so that when a peer went silent is known to within 5 s.
    pub(super) fn connected(&self) -> Vec<NodeId> {
        let now = Instant::now();
        self.lock()
            .iter_mut()
            .filter(|(_, live)| live.connection.close_reason().is_none())
            .filter_map(|(peer, live)| live.heard_lately(now).then_some(*peer))
            .collect()
    }
}
