//! Answers to queries, read from the actor's state: lookups and members.

use tidings_keys::NodeId;

use super::actor::Actor;
use super::client::{FoundSpecialist, Lookup, Member};

impl Actor {
    pub(super) fn lookup(&self, query: &Lookup) -> Vec<FoundSpecialist> {
        let directory = self.state.directory();
        let found = match (&query.capability, &query.name) {
            (Some(capability), _) => directory.by_capability(capability),
            (None, Some(name)) => directory.by_name(name),
            (None, None) => directory
                .entries()
                .flat_map(|entry| directory.by_origin(&entry.record.origin()))
                .collect(),
        };
        found
            .into_iter()
            .filter(|found| {
                query
                    .name
                    .as_ref()
                    .is_none_or(|name| &found.specialist.name == name)
            })
            .map(|found| FoundSpecialist {
                origin: found.origin,
                record: found.record.id(),
                specialist: found.specialist.clone(),
            })
            .collect()
    }

    pub(super) fn members(&self, now: u64) -> Vec<Member> {
        let directory = self.state.directory();
        let connected: Vec<NodeId> = self.links.connected();
        directory
            .roster()
            .iter()
            .map(|(id, label)| {
                let entry = directory.entry(id);
                Member {
                    id: *id,
                    label: label.map(String::from),
                    seq: entry.map(|e| e.record.seq()),
                    record: entry.map(|e| e.record.id()),
                    addrs: entry
                        .map(|e| e.record.record().addrs.clone())
                        .unwrap_or_default(),
                    specialists: entry
                        .map(|e| e.record.record().specialists.len())
                        .unwrap_or(0),
                    quarantined: directory.is_quarantined(id),
                    banned: self.state.is_banned(id, now),
                    connected: connected.contains(id),
                    this_node: *id == self.state.node_id(),
                }
            })
            .collect()
    }
}
