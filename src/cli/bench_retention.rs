//! How long evidence survives in the audit log under a flood at full rate.
//!
//! Not a timing: a replay of what the node's audit path does with a flood, in
//! simulated time. Entries go through the node's [`Coalescer`] and into an
//! [`AuditLog`] with the node's default retention rules but a small size limit;
//! at time zero the log holds an accepted record's evidence and a rejected
//! forgery's entry, then every simulated millisecond the flood brings one stale
//! and one ignored record from each of 64 admitted peers in turn, and (in the
//! second flood) one refused handshake with a key never seen before. The
//! arrival rate is above what coalescing logs one by one, so it is "full rate":
//! more input changes nothing in the log. Survival at the default limit is the
//! simulated survival scaled by the ratio of the limits (entries are of constant
//! size, so the log fills in proportion).

use serde::Serialize;
use tidings_audit::{AuditConfig, AuditLog, EntryKind, MemoryStore, NewEntry, Query, RecordKey};
use tidings_keys::{FederationId, Identity, NodeId};

use tidings::recording::coalesce::Coalescer;

/// The size limit the flood is replayed against.
const SMALL_LIMIT: u64 = 4 * 1024 * 1024;

/// Simulated time after which a replay stops (the default age limit).
const AGE_LIMIT_MS: u64 = 90 * 24 * 3600 * 1000;

/// One flood's outcome.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Survival {
    /// What the flood sends.
    pub(crate) flood: &'static str,
    /// Simulated seconds the evidence lasted at [`SMALL_LIMIT`] (`None`: it
    /// outlived the replay).
    pub(crate) seconds_at_small_limit: Option<f64>,
    /// How many times over the flood filled the small limit meanwhile.
    pub(crate) limit_filled_times: f64,
    /// The same, scaled to the default limit, in hours.
    pub(crate) hours_at_default_limit: Option<f64>,
}

/// Both floods' outcomes.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct EvidenceSurvival {
    pub(crate) small_limit_bytes: u64,
    pub(crate) default_limit_bytes: u64,
    pub(crate) floods: Vec<Survival>,
}

fn key(n: u64) -> NodeId {
    Identity::from_seed(&blake3::hash(&n.to_le_bytes()).into()).node_id()
}

fn entry(
    at_ms: u64,
    kind: EntryKind,
    peer: NodeId,
    record: Option<RecordKey>,
    reason: &str,
) -> NewEntry {
    NewEntry {
        at_ms,
        kind,
        peer: Some(peer),
        origin: Some(peer),
        record,
        reason: reason.to_string(),
        evidence: None,
    }
}

/// Replays one flood until the evidence is gone, the flood has filled the limit
/// `max_fills` times, or the age limit passes.
fn replay(refused_handshakes: bool, max_fills: f64) -> anyhow::Result<Survival> {
    let identity = std::sync::Arc::new(Identity::from_seed(&[9; 32]));
    let config = AuditConfig {
        max_bytes: Some(SMALL_LIMIT),
        ..AuditConfig::default()
    };
    let mut log = AuditLog::open(
        MemoryStore::new(),
        identity,
        FederationId::from_name("bench"),
        config,
    )?;
    let peers: Vec<NodeId> = (0..64).map(key).collect();
    let accepted = RecordKey([1; 32]);
    let forged = RecordKey([2; 32]);
    let start = 1_700_000_000_000u64;
    log.append(vec![
        NewEntry {
            evidence: Some(vec![7; 300]),
            ..entry(
                start,
                EntryKind::Accepted,
                peers[0],
                Some(accepted),
                "accepted seq 2",
            )
        },
        entry(
            start,
            EntryKind::Rejected,
            peers[1],
            Some(forged),
            "bad_signature",
        ),
    ])?;
    let survives = |log: &AuditLog<MemoryStore>| -> anyhow::Result<bool> {
        let forged_entry = !log
            .query(&Query {
                record: Some(forged),
                limit: 1,
                ..Query::default()
            })?
            .is_empty();
        Ok(forged_entry && log.evidence(&accepted)?.is_some())
    };
    let mut coalescer = Coalescer::default();
    let mut written: u64 = 0;
    let mut fresh_keys = 1_000_000u64;
    let mut batch = Vec::new();
    let mut now = start;
    loop {
        now += 1;
        let peer = peers[(now % 64) as usize];
        let mut arrivals = vec![
            entry(
                now,
                EntryKind::Stale,
                peer,
                Some(RecordKey([3; 32])),
                "stale: seq 1 is older than the held seq 2",
            ),
            entry(
                now,
                EntryKind::Ignored,
                peer,
                Some(RecordKey([4; 32])),
                "ignored: record seq 3 has expired",
            ),
        ];
        if refused_handshakes {
            fresh_keys += 1;
            arrivals.push(NewEntry {
                origin: None,
                record: None,
                ..entry(
                    now,
                    EntryKind::StrangerRefused,
                    key(fresh_keys),
                    None,
                    "key not on the roster",
                )
            });
        }
        for arrival in arrivals {
            batch.extend(coalescer.admit(arrival));
        }
        if now.is_multiple_of(1000) {
            let before = log.stats()?.logical_bytes;
            let count = batch.len();
            log.append(std::mem::take(&mut batch))?;
            let after = log.stats()?.logical_bytes;
            // What this second added, as the log counts it (pruning may have
            // removed more meanwhile): at least its entries at their size.
            written += after.saturating_sub(before).max(count as u64 * 120);
            let fills = written as f64 / SMALL_LIMIT as f64;
            let seconds = (now - start) as f64 / 1000.0;
            if !survives(&log)? {
                let scale = (AuditConfig::default().max_bytes.unwrap_or(SMALL_LIMIT)) as f64
                    / SMALL_LIMIT as f64;
                return Ok(Survival {
                    flood: flood_name(refused_handshakes),
                    seconds_at_small_limit: Some(seconds),
                    limit_filled_times: fills,
                    hours_at_default_limit: Some(seconds * scale / 3600.0),
                });
            }
            if fills >= max_fills || now - start >= AGE_LIMIT_MS {
                return Ok(Survival {
                    flood: flood_name(refused_handshakes),
                    seconds_at_small_limit: None,
                    limit_filled_times: fills,
                    hours_at_default_limit: None,
                });
            }
        }
    }
}

fn flood_name(refused_handshakes: bool) -> &'static str {
    if refused_handshakes {
        "stale and ignored records from 64 peers, and handshakes with new unknown keys"
    } else {
        "stale and ignored records from 64 peers"
    }
}

/// Replays both floods.
pub(crate) fn run() -> anyhow::Result<EvidenceSurvival> {
    Ok(EvidenceSurvival {
        small_limit_bytes: SMALL_LIMIT,
        default_limit_bytes: AuditConfig::default().max_bytes.unwrap_or(0),
        floods: vec![replay(false, 20.0)?, replay(true, 20.0)?],
    })
}

impl EvidenceSurvival {
    pub(crate) fn print(&self) {
        println!(
            "evidence survival under a full-rate flood (replayed in simulated time at a {} MiB limit, scaled to {} MiB)",
            self.small_limit_bytes >> 20,
            self.default_limit_bytes >> 20
        );
        for flood in &self.floods {
            match (flood.seconds_at_small_limit, flood.hours_at_default_limit) {
                (Some(seconds), Some(hours)) => println!(
                    "  {}: evidence lasted {seconds:.0} s ({:.1}x the limit written); at the default limit about {hours:.0} hours",
                    flood.flood, flood.limit_filled_times
                ),
                _ => println!(
                    "  {}: evidence still there after the flood wrote {:.0}x the limit (routine entries are pruned first)",
                    flood.flood, flood.limit_filled_times
                ),
            }
        }
    }
}
