//! Directory changes as events for `GET /v1/watch`, kept for a while so that a
//! client that reconnects misses nothing.
//!
//! The node reports record-level changes; one task here remembers each origin's
//! specialists and turns an update into what users care about: a specialist
//! `added`, `updated` (same name, other contents) or `removed`, a record `expired`,
//! an origin `quarantined`, `left_roster` or `pardoned`.
//!
//! Every event gets an id, `BOOT-N`: `BOOT` names this run of the node (random
//! at start), `N` counts its events from 1. The last [`WATCH_WINDOW`] events are
//! kept in a ring. A client that comes back with `Last-Event-ID` is sent what
//! followed that id, from the ring, then the live stream. When that cannot be
//! done without a gap (the id fell out of the ring, names another run of the
//! node, or this task itself fell behind the node's changes) the stream starts
//! with a `reset` event instead: reload the directory, then follow the events.
//! Each stream reads the ring at its own pace, so a slow client costs nobody
//! else anything; if it falls a whole window behind it gets a `reset` too.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tidings_keys::NodeId;
use tokio::sync::{broadcast, watch};

use crate::net::node::{Lookup, NodeClient};
use crate::proto::{DirectoryChange, RecordId, Specialist, VerifiedRecord};

/// Events kept for clients that reconnect.
pub const WATCH_WINDOW: usize = 4096;

/// What an event says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A specialist appeared.
    Added,
    /// A specialist of that name changed.
    Updated,
    /// A specialist is gone from its origin's record.
    Removed,
    /// An origin's record expired.
    Expired,
    /// An origin was caught signing two histories.
    Quarantined,
    /// An origin left the roster.
    LeftRoster,
    /// A quarantined origin was pardoned.
    Pardoned,
    /// Events were missed: reload the directory.
    Reset,
}

impl EventKind {
    /// Its name, as in the JSON and the stream's `event:` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "added",
            Self::Updated => "updated",
            Self::Removed => "removed",
            Self::Expired => "expired",
            Self::Quarantined => "quarantined",
            Self::LeftRoster => "left_roster",
            Self::Pardoned => "pardoned",
            Self::Reset => "reset",
        }
    }
}

/// One event of the watch stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WatchEvent {
    /// What happened.
    pub event: EventKind,
    /// The origin (none for reset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<NodeId>,
    /// The record now current (none for quarantined, pardoned and reset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<RecordId>,
    /// Its seq.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// The specialist concerned (added, updated and removed only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub specialist: Option<Specialist>,
    /// Why the client must reload (reset only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When this node saw the change (milliseconds since the Unix epoch, by
    /// this machine's clock).
    pub at_ms: u64,
}

/// An event with its place in the stream.
#[derive(Debug, Clone)]
pub struct Numbered {
    /// `BOOT-N`, for the SSE `id:` field.
    pub id: String,
    /// The event.
    pub event: WatchEvent,
}

/// The events kept: ids `first ..= first + events.len() - 1`.
#[derive(Debug)]
struct Ring {
    first: u64,
    events: VecDeque<Arc<WatchEvent>>,
}

impl Ring {
    /// The id the next event will get.
    fn next(&self) -> u64 {
        self.first + self.events.len() as u64
    }
}

#[derive(Debug)]
struct Shared {
    boot: String,
    ring: Mutex<Ring>,
    /// The id the next event will get, for streams waiting on it.
    next: watch::Sender<u64>,
}

/// The shared event stream.
#[derive(Debug, Clone)]
pub struct Watch {
    shared: Arc<Shared>,
}

/// Where a new stream starts.
#[derive(Debug)]
pub struct Cursor {
    shared: Arc<Shared>,
    next: u64,
    /// A reset to send first, and why.
    reset: Option<String>,
    waiting: watch::Receiver<u64>,
}

type Known = BTreeMap<NodeId, BTreeMap<String, Specialist>>;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

impl Watch {
    /// Starts following `client`'s directory.
    pub fn start(client: NodeClient) -> Self {
        let watch = Self::new();
        let feeder = watch.clone();
        let mut changes = client.subscribe();
        tokio::spawn(async move {
            let mut known = current(&client).await;
            loop {
                match changes.recv().await {
                    Ok(change) => {
                        let at_ms = now_ms();
                        for mut event in translate(&mut known, change) {
                            event.at_ms = at_ms;
                            feeder.push(event);
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        // Changes were lost between the node and this task:
                        // what clients hold may be wrong, and so is `known`.
                        feeder.push(reset(format!(
                            "this node's event stream fell {missed} changes behind its directory"
                        )));
                        known = current(&client).await;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        watch
    }

    /// An empty stream with a new boot name.
    fn new() -> Self {
        let (next, _) = watch::channel(1);
        Self {
            shared: Arc::new(Shared {
                boot: format!("{:08x}", rand::random::<u32>()),
                ring: Mutex::new(Ring {
                    first: 1,
                    events: VecDeque::with_capacity(WATCH_WINDOW),
                }),
                next,
            }),
        }
    }

    fn push(&self, event: WatchEvent) {
        let next = {
            let mut ring = self.shared.ring.lock().unwrap_or_else(|e| e.into_inner());
            if ring.events.len() == WATCH_WINDOW {
                ring.events.pop_front();
                ring.first += 1;
            }
            ring.events.push_back(Arc::new(event));
            ring.next()
        };
        self.shared.next.send_replace(next);
    }

    /// Where a stream for a client that last saw `last_event_id` (none: a new
    /// client) starts.
    pub fn resume(&self, last_event_id: Option<&str>) -> Cursor {
        let ring = self.shared.ring.lock().unwrap_or_else(|e| e.into_inner());
        let (first, next) = (ring.first, ring.next());
        drop(ring);
        let (start, reset) = match last_event_id.map(|id| self.position(id)) {
            None => (next, None),
            Some(Ok(seen)) if seen + 1 >= first && seen < next => (seen + 1, None),
            Some(Ok(seen)) if seen >= next => (
                next,
                Some(format!("event {seen} has not happened on this node yet")),
            ),
            Some(Ok(seen)) => (
                next,
                Some(format!(
                    "{} events since {seen} are more than the {WATCH_WINDOW} kept",
                    next - seen - 1
                )),
            ),
            Some(Err(why)) => (next, Some(why)),
        };
        Cursor {
            shared: self.shared.clone(),
            next: start,
            reset,
            waiting: self.shared.next.subscribe(),
        }
    }

    /// The number `N` of an id `BOOT-N` of this run.
    fn position(&self, id: &str) -> Result<u64, String> {
        let Some((boot, number)) = id.trim().split_once('-') else {
            return Err(format!("{id:?} is not an event id of this node (BOOT-N)"));
        };
        if boot != self.shared.boot {
            return Err("the node restarted since that event".to_string());
        }
        number
            .parse()
            .map_err(|_| format!("{id:?} is not an event id of this node (BOOT-N)"))
    }
}

impl Cursor {
    /// The next event for this stream, waiting for one if the client is up to
    /// date; none once the node has stopped.
    pub async fn next(&mut self) -> Option<Numbered> {
        loop {
            if let Some(reason) = self.reset.take() {
                return Some(self.numbered(self.next - 1, Arc::new(reset(reason))));
            }
            {
                let ring = self.shared.ring.lock().unwrap_or_else(|e| e.into_inner());
                if self.next < ring.first {
                    let missed = ring.first - self.next;
                    self.next = ring.next();
                    self.reset = Some(format!(
                        "this stream fell {missed} events behind, more than the {WATCH_WINDOW} kept"
                    ));
                    continue;
                }
                if let Some(event) = ring.events.get((self.next - ring.first) as usize) {
                    let event = event.clone();
                    drop(ring);
                    self.next += 1;
                    return Some(self.numbered(self.next - 1, event));
                }
            }
            let next = self.next;
            if self
                .waiting
                .wait_for(|&latest| latest > next)
                .await
                .is_err()
            {
                return None;
            }
        }
    }

    fn numbered(&self, number: u64, event: Arc<WatchEvent>) -> Numbered {
        Numbered {
            id: format!("{}-{number}", self.shared.boot),
            event: Arc::unwrap_or_clone(event),
        }
    }
}

/// Each origin's specialists as the directory holds them now.
async fn current(client: &NodeClient) -> Known {
    let mut known: Known = BTreeMap::new();
    if let Ok(found) = client.lookup(Lookup::default()).await {
        for item in found {
            known
                .entry(item.origin)
                .or_default()
                .insert(item.specialist.name.clone(), item.specialist);
        }
    }
    known
}

fn reset(reason: String) -> WatchEvent {
    WatchEvent {
        event: EventKind::Reset,
        origin: None,
        record: None,
        seq: None,
        specialist: None,
        reason: Some(reason),
        at_ms: now_ms(),
    }
}

fn event(kind: EventKind, record: &VerifiedRecord, specialist: Specialist) -> WatchEvent {
    WatchEvent {
        event: kind,
        origin: Some(record.origin()),
        record: Some(record.id()),
        seq: Some(record.seq()),
        specialist: Some(specialist),
        reason: None,
        at_ms: 0,
    }
}

fn translate(known: &mut Known, change: DirectoryChange) -> Vec<WatchEvent> {
    let mut out = Vec::new();
    match change {
        DirectoryChange::Added(record) | DirectoryChange::Updated { record, .. } => {
            let before = known.remove(&record.origin()).unwrap_or_default();
            let mut now = BTreeMap::new();
            for specialist in &record.record().specialists {
                match before.get(&specialist.name) {
                    None => out.push(event(EventKind::Added, &record, specialist.clone())),
                    Some(old) if old != specialist => {
                        out.push(event(EventKind::Updated, &record, specialist.clone()))
                    }
                    Some(_) => {}
                }
                now.insert(specialist.name.clone(), specialist.clone());
            }
            for (name, specialist) in before {
                if !now.contains_key(&name) {
                    out.push(event(EventKind::Removed, &record, specialist));
                }
            }
            known.insert(record.origin(), now);
        }
        DirectoryChange::LeftRoster(record) => {
            known.remove(&record.origin());
            out.push(WatchEvent {
                event: EventKind::LeftRoster,
                origin: Some(record.origin()),
                record: Some(record.id()),
                seq: Some(record.seq()),
                specialist: None,
                reason: None,
                at_ms: 0,
            });
        }
        DirectoryChange::Pardoned { origin, above_seq } => out.push(WatchEvent {
            event: EventKind::Pardoned,
            origin: Some(origin),
            record: None,
            seq: Some(above_seq),
            specialist: None,
            reason: None,
            at_ms: 0,
        }),
        DirectoryChange::Expired(record) => {
            known.remove(&record.origin());
            out.push(WatchEvent {
                event: EventKind::Expired,
                origin: Some(record.origin()),
                record: Some(record.id()),
                seq: Some(record.seq()),
                specialist: None,
                reason: None,
                at_ms: 0,
            });
        }
        DirectoryChange::Quarantined { origin, .. } => {
            known.remove(&origin);
            out.push(WatchEvent {
                event: EventKind::Quarantined,
                origin: Some(origin),
                record: None,
                seq: None,
                specialist: None,
                reason: None,
                at_ms: 0,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbered(n: u64) -> WatchEvent {
        WatchEvent {
            seq: Some(n),
            ..reset(String::new())
        }
    }

    #[tokio::test]
    async fn a_stream_resumes_within_the_window_and_resets_beyond_it() {
        let watch = Watch::new();
        let total = WATCH_WINDOW as u64 + 100;
        for n in 1..=total {
            watch.push(numbered(n));
        }
        let boot = watch.shared.boot.clone();
        // Within the window: the events after the one named, in order.
        let mut cursor = watch.resume(Some(&format!("{boot}-{}", total - 3)));
        for n in total - 2..=total {
            let event = cursor.next().await.unwrap();
            assert_eq!(event.id, format!("{boot}-{n}"));
            assert_eq!(event.event.seq, Some(n));
        }
        // The oldest kept: everything kept follows it.
        let oldest = total - WATCH_WINDOW as u64 + 1;
        let mut cursor = watch.resume(Some(&format!("{boot}-{}", oldest - 1)));
        assert_eq!(cursor.next().await.unwrap().event.seq, Some(oldest));
        // Fell out of the window, another boot, garbage, the future: a reset
        // named as the last event so far, then live events.
        for stale in [
            format!("{boot}-{}", oldest - 2),
            format!("{boot}-1"),
            format!("x{boot}-{total}"),
            "no-dash-number".to_string(),
            format!("{boot}-{}", total + 5),
        ] {
            let mut cursor = watch.resume(Some(&stale));
            let reset = cursor.next().await.unwrap();
            assert_eq!(reset.event.event, EventKind::Reset, "{stale}");
            assert_eq!(reset.id, format!("{boot}-{total}"), "{stale}");
        }
        // A stream that falls a whole window behind while reading.
        let mut slow = watch.resume(None);
        for n in 0..WATCH_WINDOW as u64 + 1 {
            watch.push(numbered(total + 1 + n));
        }
        let reset = slow.next().await.unwrap();
        assert_eq!(reset.event.event, EventKind::Reset);
        watch.push(numbered(0));
        assert_eq!(slow.next().await.unwrap().event.seq, Some(0));
    }
}
