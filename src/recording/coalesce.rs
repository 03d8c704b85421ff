//! Floods become counts: repeated entries of one kind from one peer are logged
//! one by one only up to a small allowance per window, and the rest as one
//! counted entry when the window closes.
//!
//! Without this, a peer sending a stale record a thousand times a second would
//! make the node write a thousand audit entries a second: disk, CPU and, through
//! retention, the space older evidence lives in. With it, each (kind, peer) gets
//! [`FREE_PER_WINDOW`] entries per [`WINDOW_MS`] and one summary ("412 more stale
//! entries from this peer …"), and all peers together get [`FREE_PER_KIND`]
//! entries of a kind per window before the rest of that kind is counted too (a
//! flood spread over many keys, such as handshakes with ever new unknown keys).
//!
//! Only kinds that say nothing new when repeated are coalesced: stale and ignored
//! records, malformed frames, penalties, accepted and refused connections. Every
//! accepted, published, rejected or equivocating record keeps its own entry and
//! evidence: those are bounded by origins' rate limits and by bans.

use std::collections::BTreeMap;

use tidings_audit::{EntryKind, NewEntry};
use tidings_keys::NodeId;

/// Length of a counting window.
pub const WINDOW_MS: u64 = 1000;

/// Entries of one kind from one peer logged one by one per window.
pub const FREE_PER_WINDOW: u64 = 8;

/// Entries of one kind from all peers logged one by one per window.
pub const FREE_PER_KIND: u64 = 16;

/// Whether entries of `kind` are coalesced.
pub fn coalesced(kind: EntryKind) -> bool {
    matches!(
        kind,
        EntryKind::Stale
            | EntryKind::Ignored
            | EntryKind::MalformedFrame
            | EntryKind::Penalised
            | EntryKind::ConnectionAccepted
            | EntryKind::ConnectionRefused
            | EntryKind::StrangerRefused
    )
}

#[derive(Debug, Clone)]
struct Window {
    start_ms: u64,
    logged: u64,
    counted: u64,
    /// Distinct peers among the counted entries (for the all-peers window).
    peers: Vec<NodeId>,
    last_reason: String,
}

impl Window {
    fn new(start_ms: u64) -> Self {
        Self {
            start_ms,
            logged: 0,
            counted: 0,
            peers: Vec::new(),
            last_reason: String::new(),
        }
    }
}

/// Counting windows per (kind, peer), and per kind over all peers.
#[derive(Debug, Default)]
pub struct Coalescer {
    by_peer: BTreeMap<(EntryKind, Option<NodeId>), Window>,
    by_kind: BTreeMap<EntryKind, Window>,
    /// When the oldest open window closes (none open: `None`).
    next_close_ms: Option<u64>,
}

impl Coalescer {
    /// Takes `entry` and returns what to append now: summaries of windows that
    /// have closed, then the entry itself unless it is counted instead.
    pub fn admit(&mut self, entry: NewEntry) -> Vec<NewEntry> {
        let now = entry.at_ms;
        let mut out = self.flush(now);
        if !coalesced(entry.kind) {
            out.push(entry);
            return out;
        }
        let kind = entry.kind;
        let close = now.saturating_add(WINDOW_MS);
        self.next_close_ms = Some(self.next_close_ms.map_or(close, |next| next.min(close)));
        let peer_window = self
            .by_peer
            .entry((kind, entry.peer))
            .or_insert_with(|| Window::new(now));
        if peer_window.logged >= FREE_PER_WINDOW {
            peer_window.counted += 1;
            peer_window.last_reason = entry.reason;
            return out;
        }
        let kind_window = self.by_kind.entry(kind).or_insert_with(|| Window::new(now));
        if kind_window.logged >= FREE_PER_KIND {
            kind_window.counted += 1;
            if let Some(peer) = entry.peer {
                if kind_window.peers.len() < 1024 && !kind_window.peers.contains(&peer) {
                    kind_window.peers.push(peer);
                }
            }
            kind_window.last_reason = entry.reason;
            return out;
        }
        peer_window.logged += 1;
        kind_window.logged += 1;
        out.push(entry);
        out
    }

    /// Whether no window is open (nothing to summarise later).
    pub fn is_idle(&self) -> bool {
        self.next_close_ms.is_none()
    }

    /// Summaries of the windows closed by `now_ms` (each window closes
    /// [`WINDOW_MS`] after it opened); quiet windows are dropped.
    pub fn flush(&mut self, now_ms: u64) -> Vec<NewEntry> {
        let mut out = Vec::new();
        if self.next_close_ms.is_none_or(|next| now_ms < next) {
            return out;
        }
        let closed = |window: &Window| now_ms >= window.start_ms.saturating_add(WINDOW_MS);
        let ended: Vec<(EntryKind, Option<NodeId>)> = self
            .by_peer
            .iter()
            .filter(|(_, window)| closed(window))
            .map(|(key, _)| *key)
            .collect();
        for key in ended {
            let Some(window) = self.by_peer.remove(&key) else {
                continue;
            };
            if window.counted > 0 {
                out.push(summary(now_ms, key.0, key.1, &window, "this peer"));
            }
        }
        let ended: Vec<EntryKind> = self
            .by_kind
            .iter()
            .filter(|(_, window)| closed(window))
            .map(|(kind, _)| *kind)
            .collect();
        for kind in ended {
            let Some(window) = self.by_kind.remove(&kind) else {
                continue;
            };
            if window.counted > 0 {
                let from = format!("{} peers", window.peers.len());
                out.push(summary(now_ms, kind, None, &window, &from));
            }
        }
        self.next_close_ms = self
            .by_peer
            .values()
            .chain(self.by_kind.values())
            .map(|window| window.start_ms.saturating_add(WINDOW_MS))
            .min();
        out
    }

    /// Every open window's summary, at `now_ms` (at shutdown).
    pub fn flush_all(&mut self, now_ms: u64) -> Vec<NewEntry> {
        self.flush(u64::MAX)
            .into_iter()
            .map(|entry| NewEntry {
                at_ms: now_ms,
                ..entry
            })
            .collect()
    }
}

fn summary(
    now_ms: u64,
    kind: EntryKind,
    peer: Option<NodeId>,
    window: &Window,
    from: &str,
) -> NewEntry {
    let seconds = now_ms.saturating_sub(window.start_ms).min(WINDOW_MS * 60) as f64 / 1000.0;
    NewEntry {
        at_ms: now_ms,
        kind,
        peer,
        origin: None,
        record: None,
        reason: format!(
            "{} more {kind} entries from {from} within {seconds:.1} s, counted rather than \
             logged one by one (the last: {})",
            window.counted, window.last_reason
        ),
        evidence: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(at_ms: u64, kind: EntryKind, peer: u8) -> NewEntry {
        NewEntry {
            at_ms,
            kind,
            peer: Some(NodeId::from_bytes([peer; 32])),
            origin: None,
            record: None,
            reason: format!("{kind} at {at_ms}"),
            evidence: None,
        }
    }

    #[test]
    fn a_flood_from_one_peer_becomes_a_count() {
        let mut coalescer = Coalescer::default();
        let mut written = Vec::new();
        for i in 0..1000 {
            written.extend(coalescer.admit(entry(i, EntryKind::Stale, 1)));
        }
        assert_eq!(written.len() as u64, FREE_PER_WINDOW);
        // Another peer, and another kind, are not held by peer 1's flood.
        assert_eq!(coalescer.admit(entry(999, EntryKind::Stale, 2)).len(), 1);
        assert_eq!(coalescer.admit(entry(999, EntryKind::Ignored, 1)).len(), 1);
        // The window closes: one counted entry for the rest.
        let summaries = coalescer.flush(1000);
        assert_eq!(summaries.len(), 1);
        assert_eq!(summaries[0].kind, EntryKind::Stale);
        assert!(
            summaries[0]
                .reason
                .starts_with(&format!("{} more stale", 1000 - FREE_PER_WINDOW)),
            "{}",
            summaries[0].reason
        );
        assert!(summaries[0].reason.contains("stale at 999"));
        // A new window starts afresh.
        assert_eq!(coalescer.admit(entry(1500, EntryKind::Stale, 1)).len(), 1);
    }

    #[test]
    fn a_flood_over_many_peers_is_counted_per_kind() {
        let mut coalescer = Coalescer::default();
        let mut written = 0;
        for i in 0..200u64 {
            written += coalescer
                .admit(entry(i, EntryKind::StrangerRefused, i as u8))
                .len() as u64;
        }
        assert_eq!(written, FREE_PER_KIND);
        let summaries = coalescer.flush_all(5000);
        assert_eq!(summaries.len(), 1);
        assert!(summaries[0]
            .reason
            .contains("184 more stranger_refused entries from 184 peers"));
    }

    #[test]
    fn evidence_bearing_kinds_are_never_coalesced() {
        let mut coalescer = Coalescer::default();
        for kind in [
            EntryKind::Accepted,
            EntryKind::Rejected,
            EntryKind::Equivocation,
        ] {
            let written: usize = (0..100)
                .map(|i| coalescer.admit(entry(i, kind, 1)).len())
                .sum();
            assert_eq!(written, 100);
        }
    }
}
