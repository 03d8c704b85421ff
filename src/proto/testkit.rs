//! Test fixtures shared by the protocol tests: a small federation with known keys,
//! and helpers that sign well-formed or deliberately bad records.

use std::collections::BTreeMap;
use std::sync::Arc;

use tidings_keys::{Domain, FederationId, Identity, NodeId, Roster};

use super::directory::{Directory, DirectoryConfig};
use super::limits::DEFAULT_TTL_MS;
use super::record::{Announcement, Record, SignedRecord, Specialist, VerifiedRecord};

/// A fixed "now": 2023-11-14T22:13:20Z.
pub(crate) const NOW: u64 = 1_700_000_000_000;

/// A federation of `members` known identities (seeds 1, 2, ...), all admitted.
pub(crate) struct Federation {
    pub(crate) id: FederationId,
    pub(crate) members: Vec<Identity>,
    pub(crate) roster: Arc<Roster>,
}

impl Federation {
    pub(crate) fn new(members: usize) -> Self {
        let members: Vec<Identity> = (1..=members)
            .map(|seed| Identity::from_seed(&[seed as u8; 32]))
            .collect();
        let roster = members.iter().map(Identity::node_id).collect();
        Self {
            id: FederationId::from_name("testnet"),
            members,
            roster: Arc::new(roster),
        }
    }

    /// The roster chain at the genesis of this federation's roster.
    pub(crate) fn ledger(&self) -> super::roster::Ledger {
        super::roster::Ledger::new(
            super::roster::Genesis::from_roster(self.id, &self.roster).expect("a test roster"),
        )
    }

    pub(crate) fn node(&self, index: usize) -> NodeId {
        self.members[index].node_id()
    }

    pub(crate) fn directory(&self) -> Directory {
        Directory::new(DirectoryConfig::new(self.id), self.roster.clone())
    }

    /// The first record of member `index`, announcing `specialists`.
    pub(crate) fn first(&self, index: usize, specialists: &[&str]) -> Record {
        Record::first(
            self.id,
            self.node(index),
            announcement(specialists),
            NOW,
            DEFAULT_TTL_MS,
        )
    }

    /// Signs a well-formed record as member `index`.
    pub(crate) fn sign(&self, index: usize, record: Record) -> VerifiedRecord {
        VerifiedRecord::sign(&self.members[index], record).expect("well-formed record")
    }

    /// The successor of `previous`, announcing `specialists`, issued `later_ms` after it.
    pub(crate) fn next(
        &self,
        index: usize,
        previous: &VerifiedRecord,
        specialists: &[&str],
        later_ms: u64,
    ) -> VerifiedRecord {
        let issued = previous.record().issued_at_ms + later_ms;
        let record = Record::next(previous, announcement(specialists), issued, DEFAULT_TTL_MS);
        self.sign(index, record)
    }
}

/// Signs whatever `record` encodes to, without any check: for malformed inputs.
pub(crate) fn sign_unchecked(identity: &Identity, record: &Record) -> Vec<u8> {
    let bytes = postcard::to_allocvec(record).expect("encode");
    sign_bytes(identity, &record.federation, bytes)
}

/// Signs raw record bytes and returns the wire form of the signed record.
pub(crate) fn sign_bytes(
    identity: &Identity,
    federation: &FederationId,
    bytes: Vec<u8>,
) -> Vec<u8> {
    let signature = identity.sign(Domain::Record, federation, &bytes);
    SignedRecord::new(bytes, signature).encode()
}

/// A specialist named `name` with one capability derived from it.
pub(crate) fn specialist(name: &str) -> Specialist {
    Specialist {
        name: name.to_string(),
        capabilities: vec![format!("cap-{name}"), "generic".to_string()],
        endpoint: format!("https://{name}.example/api"),
        meta: BTreeMap::from([("region".to_string(), "eu".to_string())]),
    }
}

pub(crate) fn announcement(names: &[&str]) -> Announcement {
    Announcement {
        addrs: vec!["127.0.0.1:7700".to_string()],
        specialists: names.iter().map(|name| specialist(name)).collect(),
    }
}
