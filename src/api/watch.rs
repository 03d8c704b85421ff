//! Directory changes as events for `GET /v1/watch`.
//!
//! The node reports record-level changes; one task here remembers each origin's
//! specialists and turns an update into what users care about: a specialist
//! `added`, `updated` (same name, other contents) or `removed`, a record `expired`,
//! an origin `quarantined`.

use std::collections::BTreeMap;

use serde::Serialize;
use tidings_keys::NodeId;
use tokio::sync::broadcast;

use crate::net::node::{Lookup, NodeClient};
use crate::proto::{DirectoryChange, RecordId, Specialist, VerifiedRecord};

/// One event of the watch stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WatchEvent {
    /// added, updated, removed, expired or quarantined.
    pub event: &'static str,
    /// The origin.
    pub origin: NodeId,
    /// The record now current (none for expired and quarantined).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<RecordId>,
    /// Its seq.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// The specialist concerned (none for expired and quarantined).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub specialist: Option<Specialist>,
    /// When this node saw the change (milliseconds since the Unix epoch, by
    /// this machine's clock).
    pub at_ms: u64,
}

/// The shared event stream.
#[derive(Debug, Clone)]
pub struct Watch {
    events: broadcast::Sender<WatchEvent>,
}

type Known = BTreeMap<NodeId, BTreeMap<String, Specialist>>;

impl Watch {
    /// Starts following `client`'s directory.
    pub fn start(client: NodeClient) -> Self {
        let (events, _) = broadcast::channel(1024);
        let sender = events.clone();
        let mut changes = client.subscribe();
        tokio::spawn(async move {
            let mut known: Known = BTreeMap::new();
            if let Ok(found) = client.lookup(Lookup::default()).await {
                for item in found {
                    known
                        .entry(item.origin)
                        .or_default()
                        .insert(item.specialist.name.clone(), item.specialist);
                }
            }
            loop {
                match changes.recv().await {
                    Ok(change) => {
                        let at_ms = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |since| since.as_millis() as u64);
                        for mut event in translate(&mut known, change) {
                            event.at_ms = at_ms;
                            let _ = sender.send(event);
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Self { events }
    }

    /// A receiver of events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<WatchEvent> {
        self.events.subscribe()
    }
}

fn event(kind: &'static str, record: &VerifiedRecord, specialist: Specialist) -> WatchEvent {
    WatchEvent {
        event: kind,
        origin: record.origin(),
        record: Some(record.id()),
        seq: Some(record.seq()),
        specialist: Some(specialist),
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
                    None => out.push(event("added", &record, specialist.clone())),
                    Some(old) if old != specialist => {
                        out.push(event("updated", &record, specialist.clone()))
                    }
                    Some(_) => {}
                }
                now.insert(specialist.name.clone(), specialist.clone());
            }
            for (name, specialist) in before {
                if !now.contains_key(&name) {
                    out.push(event("removed", &record, specialist));
                }
            }
            known.insert(record.origin(), now);
        }
        DirectoryChange::LeftRoster(record) => {
            known.remove(&record.origin());
            out.push(WatchEvent {
                event: "left_roster",
                origin: record.origin(),
                record: Some(record.id()),
                seq: Some(record.seq()),
                specialist: None,
                at_ms: 0,
            });
        }
        DirectoryChange::Pardoned { origin, above_seq } => out.push(WatchEvent {
            event: "pardoned",
            origin,
            record: None,
            seq: Some(above_seq),
            specialist: None,
            at_ms: 0,
        }),
        DirectoryChange::Expired(record) => {
            known.remove(&record.origin());
            out.push(WatchEvent {
                event: "expired",
                origin: record.origin(),
                record: Some(record.id()),
                seq: Some(record.seq()),
                specialist: None,
                at_ms: 0,
            });
        }
        DirectoryChange::Quarantined { origin, .. } => {
            known.remove(&origin);
            out.push(WatchEvent {
                event: "quarantined",
                origin,
                record: None,
                seq: None,
                specialist: None,
                at_ms: 0,
            });
        }
    }
    out
}
