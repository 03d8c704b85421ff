//! Fixtures shared by the fuzz targets: a small federation with fixed keys.

use std::sync::Arc;

use tidings::keys::{FederationId, Identity, NodeId, Roster};
use tidings::proto::{Announcement, Record, Specialist, VerifiedRecord};

/// A fixed "now".
pub const NOW: u64 = 1_700_000_000_000;

/// Four members with fixed keys.
pub struct Fixture {
    /// The federation.
    pub federation: FederationId,
    /// The members' keys.
    pub members: Vec<Identity>,
    /// The roster.
    pub roster: Arc<Roster>,
}

impl Fixture {
    /// The fixture.
    pub fn new() -> Self {
        let members: Vec<Identity> = (1..=4u8).map(|seed| Identity::from_seed(&[seed; 32])).collect();
        let roster = Arc::new(members.iter().map(Identity::node_id).collect());
        Self { federation: FederationId::from_name("fuzz"), members, roster }
    }

    /// The roster chain at this fixture's genesis (threshold 3 of 4).
    pub fn ledger(&self) -> tidings::proto::roster::Ledger {
        let genesis = tidings::proto::roster::Genesis::from_roster(self.federation, &self.roster)
            .expect("the fixture roster is a genesis");
        tidings::proto::roster::Ledger::new(genesis)
    }

    /// Member `index % 4`'s id.
    pub fn id(&self, index: u8) -> NodeId {
        self.members[usize::from(index) % 4].node_id()
    }

    /// A valid record of member `index % 4` with sequence number `seq` (1 to 8).
    pub fn record(&self, index: u8, seq: u8, variant: u8) -> Option<VerifiedRecord> {
        let member = &self.members[usize::from(index) % 4];
        let announcement = Announcement {
            addrs: vec!["127.0.0.1:7700".into()],
            specialists: vec![Specialist {
                name: format!("s{variant}"),
                capabilities: vec!["fuzz".into()],
                endpoint: "https://fuzz.example/api".into(),
                meta: Default::default(),
            }],
        };
        let mut record = Record::first(self.federation, member.node_id(), announcement, NOW, 3_600_000);
        record.seq = u64::from(seq % 8) + 1;
        if record.seq > 1 {
            record.prev = tidings::proto::RecordId([seq; 32]);
        }
        VerifiedRecord::sign(member, record).ok()
    }
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}
