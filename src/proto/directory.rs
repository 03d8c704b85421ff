//! The directory: each admitted origin's current record, and the one function that
//! decides whether a received record gets in.
//!
//! [`Directory::ingest`] applies the acceptance rules in order and returns a typed
//! [`Verdict`]. Every check that needs no signature comes before the signature, so
//! a record that would be dropped anyway costs a decode and a hash, not a
//! `verify_strict` (about 45 µs): a peer cannot make the node verify expired,
//! stale, duplicate or rate-limited records.
//!
//! 1. size and decode → `Rejected(Malformed)`
//! 2. federation, version → `Rejected(WrongFederation | UnsupportedVersion)` (read
//!    from the record header, so a record of another version is named as such
//!    rather than as garbage; the rest of the record is decoded after this step)
//! 3. origin admitted, not quarantined → `Rejected(NotAdmitted)` / `Ignored(Quarantined)`
//! 4. time: `Ignored(Expired)`, `Ignored(FutureDated)`, `Rejected(TtlTooLong)`
//! 5. against the origin's current record, by seq and id: `Stale`, `Duplicate`
//! 6. per-origin token bucket (looked at, not yet taken) → `Ignored(RateLimited)`
//! 7. signature (`verify_strict`) → `Rejected(BadSignature)`
//! 8. against the origin's current record, signed: `Equivocation(proof)` (only a
//!    verified record can make a proof)
//! 9. otherwise `Accepted` (the token is taken): it replaces the origin's record.
//!
//! An equivocation quarantines the origin: its record leaves the directory and
//! every later record from it is ignored. Only [`VerifiedRecord`]s are stored.
//! All maps are ordered, so iteration never depends on hashing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};

use tidings_keys::{FederationId, NodeId, Roster};

use super::equivocation::{EquivocationProof, ProofError};
use super::limits::{MAX_CLOCK_SKEW_MS, MAX_TTL_MS};
use super::rate::{RateLimit, TokenBucket};
use super::record::{RecordId, Specialist, UnverifiedRecord, VerifiedRecord};
use super::verdict::{Ignored, RecordRef, Rejection, Verdict};

/// Where an input came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// This node (its own publication, a file, the store on restart).
    Local,
    /// A gossip peer.
    Peer(NodeId),
}

impl Source {
    /// The peer, if the input came from one.
    pub fn peer(&self) -> Option<NodeId> {
        match self {
            Source::Local => None,
            Source::Peer(peer) => Some(*peer),
        }
    }
}

/// The rules a directory applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryConfig {
    /// The only federation whose records are accepted.
    pub federation: FederationId,
    /// How far in the future a record may be issued.
    pub max_clock_skew_ms: u64,
    /// The longest lifetime a record may grant itself.
    pub max_ttl_ms: u64,
    /// How many records per origin are accepted over time.
    pub origin_rate: RateLimit,
}

impl DirectoryConfig {
    /// The default rules for `federation`.
    pub fn new(federation: FederationId) -> Self {
        Self {
            federation,
            max_clock_skew_ms: MAX_CLOCK_SKEW_MS,
            max_ttl_ms: MAX_TTL_MS,
            origin_rate: RateLimit::ORIGIN_DEFAULT,
        }
    }
}

/// An origin's current record and how it reached this node.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The record.
    pub record: VerifiedRecord,
    /// When this node accepted it.
    pub received_at_ms: u64,
    /// Who gave it to this node.
    pub source: Source,
}

/// A specialist found by a query, with the record that announces it.
#[derive(Debug, Clone, Copy)]
pub struct Found<'a> {
    /// The origin that announces it.
    pub origin: NodeId,
    /// The specialist.
    pub specialist: &'a Specialist,
    /// The record it is in.
    pub record: &'a VerifiedRecord,
}

/// The outcome of receiving an equivocation proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProofVerdict {
    /// A new offender: it is now quarantined (and its record, if any, removed).
    Quarantined {
        /// The offender.
        origin: NodeId,
        /// The record that was removed from the directory.
        removed: Option<RecordId>,
    },
    /// A pardon covers the proof: its records are at or below the origin's floor.
    Pardoned(NodeId),
    /// The origin was already quarantined.
    AlreadyQuarantined(NodeId),
    /// A valid proof about an origin outside the roster: nothing to do.
    NotAdmitted(NodeId),
    /// Not a valid proof: the sender is to blame.
    Rejected(ProofError),
}

/// What a node holds for one origin, as gossip digests describe it: the sequence
/// number and a 64-bit tag of the record, or the quarantine marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Holding {
    /// The origin.
    pub origin: NodeId,
    /// The record's seq, or [`Holding::QUARANTINED`].
    pub seq: u64,
    /// The first 8 bytes of the record id, or a fixed tag for a quarantine.
    pub tag: u64,
}

impl Holding {
    /// The `seq` that stands for "holds an equivocation proof": above every record.
    pub const QUARANTINED: u64 = u64::MAX;

    /// What holding `record` makes.
    pub fn of_record(record: &VerifiedRecord) -> Self {
        Self {
            origin: record.origin(),
            seq: record.seq(),
            tag: tag_of(&record.id().0),
        }
    }

    fn of_quarantine(origin: NodeId) -> Self {
        let key = blake3::derive_key("tidings quarantine v1", origin.as_bytes());
        Self {
            origin,
            seq: Self::QUARANTINED,
            tag: tag_of(&key),
        }
    }

    /// The contribution of this holding to a fingerprint.
    pub fn fingerprint(&self) -> u64 {
        self.tag
    }
}

fn tag_of(bytes: &[u8; 32]) -> u64 {
    let mut tag = [0u8; 8];
    tag.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(tag)
}

/// Records already verified, keyed by the blake3 hash of their exact wire bytes.
///
/// Identical bytes always earn the same decoding and signature outcome, so a hit
/// may skip steps 1 and 4; every other step still runs. One cache can be shared by
/// many directories (the simulator shares one across all its nodes, so each unique
/// record is verified and stored once), and by the checkers that verify records
/// on other cores before the state machine sees them ([`VerifiedCache::check`]).
///
/// Eviction is by generation: when the current generation is full it becomes
/// the previous one and the oldest is dropped, so the last `capacity` records
/// are always kept.
#[derive(Debug)]
pub struct VerifiedCache {
    generations: Mutex<Generations>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Generations {
    current: HashMap<[u8; 32], VerifiedRecord>,
    previous: HashMap<[u8; 32], VerifiedRecord>,
}

/// A received record checked ahead of the state machine, handed to it with its
/// frame ([`Directory::ingest_prechecked`]).
#[derive(Debug, Clone)]
pub struct Prechecked {
    /// The record, verified.
    pub record: VerifiedRecord,
    /// Whether a signature check was made for it (not found in the cache): the
    /// directory that takes it counts the check as its own, so a peer whose
    /// records are waste is charged for the checks they caused.
    pub checked: bool,
}

impl VerifiedCache {
    /// A cache holding at least the last `capacity` records (and at most twice
    /// as many).
    pub fn new(capacity: usize) -> Self {
        Self {
            generations: Mutex::new(Generations::default()),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        self.generations
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn get(&self, key: &[u8; 32]) -> Option<VerifiedRecord> {
        let generations = self.lock();
        generations
            .current
            .get(key)
            .or_else(|| generations.previous.get(key))
            .cloned()
    }

    fn put(&self, key: [u8; 32], record: VerifiedRecord) {
        let mut generations = self.lock();
        if generations.current.len() >= self.capacity {
            generations.previous = std::mem::take(&mut generations.current);
        }
        generations.current.insert(key, record);
    }

    /// Decodes and verifies one signed record of `federation` ahead of the state
    /// machine (on any thread), and caches it when its signature holds. Records
    /// of origins `admitted` refuses are not checked (the directory refuses them
    /// before any signature check). `keys` keeps decoded origin keys between
    /// calls (a checker thread's own). `None`: the record is left for the
    /// directory to reject (and audit) on its own.
    ///
    /// The [`VerifiedRecord`] is made by the one path every record takes
    /// ([`UnverifiedRecord::verify_with_key`]); nothing else is decided here.
    pub fn check(
        &self,
        bytes: &[u8],
        federation: &FederationId,
        keys: &mut HashMap<NodeId, ed25519_dalek::VerifyingKey>,
        admitted: impl Fn(&NodeId) -> bool,
    ) -> Option<Prechecked> {
        let key = *blake3::hash(bytes).as_bytes();
        if let Some(record) = self.get(&key) {
            return Some(Prechecked {
                record,
                checked: false,
            });
        }
        let unverified = UnverifiedRecord::parse(bytes, Some(federation)).ok()?;
        let origin = *unverified.origin();
        if !admitted(&origin) {
            return None;
        }
        let verifying_key = match keys.get(&origin) {
            Some(verifying_key) => *verifying_key,
            None => {
                let verifying_key = origin.verifying_key().ok()?;
                if keys.len() >= MAX_CHECKER_KEYS {
                    keys.clear();
                }
                keys.insert(origin, verifying_key);
                verifying_key
            }
        };
        let record = unverified.verify_with_key(&verifying_key).ok()?;
        self.put(key, record.clone());
        Some(Prechecked {
            record,
            checked: true,
        })
    }

    /// Number of cached records.
    pub fn len(&self) -> usize {
        let generations = self.lock();
        generations.current.len() + generations.previous.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Origin keys one checker keeps decoded before it starts over.
const MAX_CHECKER_KEYS: usize = 1 << 16;

/// Each admitted origin's current record, the quarantine set and rate limits.
#[derive(Debug, Clone)]
pub struct Directory {
    cache: Option<Arc<VerifiedCache>>,
    /// Decoded and checked keys of admitted origins (at most one per roster member).
    keys: BTreeMap<NodeId, ed25519_dalek::VerifyingKey>,
    config: DirectoryConfig,
    roster: Arc<Roster>,
    entries: BTreeMap<NodeId, Entry>,
    quarantine: BTreeMap<NodeId, EquivocationProof>,
    buckets: BTreeMap<NodeId, TokenBucket>,
    /// Per origin, the highest seq that stays stale: set by a key rotation (the
    /// new key continues the old key's chain) and a pardon (the chain restarts
    /// above the proof).
    floors: BTreeMap<NodeId, u64>,
    /// XOR of the fingerprints of every holding, kept up to date on each change.
    fingerprint: u64,
    /// Every held record's expiry, earliest first (kept with `entries`).
    expiries: BTreeSet<(u64, NodeId)>,
    /// Signatures checked so far (cache hits are not checks).
    signature_checks: u64,
}

impl Directory {
    /// An empty directory that admits the origins on `roster`.
    pub fn new(config: DirectoryConfig, roster: Arc<Roster>) -> Self {
        Self {
            cache: None,
            keys: BTreeMap::new(),
            config,
            roster,
            entries: BTreeMap::new(),
            quarantine: BTreeMap::new(),
            buckets: BTreeMap::new(),
            floors: BTreeMap::new(),
            fingerprint: 0,
            expiries: BTreeSet::new(),
            signature_checks: 0,
        }
    }

    /// Shares `cache` of verified records with other directories.
    pub fn with_cache(mut self, cache: Arc<VerifiedCache>) -> Self {
        self.set_cache(cache);
        self
    }

    /// Shares `cache` of verified records with other directories.
    pub fn set_cache(&mut self, cache: Arc<VerifiedCache>) {
        self.cache = Some(cache);
    }

    /// How many signatures [`Directory::ingest`] has checked: what received
    /// records have cost (a caller charges the difference to their sender).
    pub fn signature_checks(&self) -> u64 {
        self.signature_checks
    }

    /// The rules in force.
    pub fn config(&self) -> &DirectoryConfig {
        &self.config
    }

    /// The admitted origins.
    pub fn roster(&self) -> &Arc<Roster> {
        &self.roster
    }

    /// Decides on a received signed record (steps 1 to 9) and applies the verdict.
    pub fn ingest(&mut self, bytes: &[u8], source: Source, now_ms: u64) -> Verdict {
        let cache_key = self.cache.as_ref().map(|_| *blake3::hash(bytes).as_bytes());
        if let (Some(cache), Some(key)) = (&self.cache, &cache_key) {
            if let Some(record) = cache.get(key) {
                return self.ingest_verified(record, source, now_ms);
            }
        }
        let unverified = match UnverifiedRecord::parse(bytes, Some(&self.config.federation)) {
            Ok(unverified) => unverified,
            Err(error) => return Verdict::Rejected(error.into()),
        };
        let origin = *unverified.origin();
        if let Some(verdict) = self.check_admission(&origin) {
            return verdict;
        }
        let reference = RecordRef {
            origin,
            seq: unverified.record().seq,
            id: unverified.id(),
        };
        if let Some(verdict) = self.check_unsigned(unverified.record(), reference, now_ms) {
            return verdict;
        }
        let key = match self.keys.get(&origin) {
            Some(key) => Ok(*key),
            None => origin.verifying_key(),
        };
        self.signature_checks += 1;
        let verified = match key {
            Ok(key) => {
                self.keys.insert(origin, key);
                unverified.verify_with_key(&key)
            }
            Err(_) => unverified.verify(),
        };
        match verified {
            Ok(record) => {
                if let (Some(cache), Some(key)) = (&self.cache, cache_key) {
                    cache.put(key, record.clone());
                }
                self.decide(record, source, now_ms)
            }
            Err(error) => Verdict::Rejected(error.into()),
        }
    }

    /// Decides on a received signed record that may have been checked ahead
    /// ([`VerifiedCache::check`]): a record checked from exactly these bytes
    /// skips decoding and the signature check (which is still counted if one
    /// was made for it); anything else takes the full path of
    /// [`Directory::ingest`].
    pub fn ingest_prechecked(
        &mut self,
        bytes: &[u8],
        prechecked: Option<Prechecked>,
        source: Source,
        now_ms: u64,
    ) -> Verdict {
        match prechecked {
            Some(prechecked) if prechecked.record.wire_bytes() == bytes => {
                self.signature_checks += u64::from(prechecked.checked);
                self.ingest_verified(prechecked.record, source, now_ms)
            }
            _ => self.ingest(bytes, source, now_ms),
        }
    }

    /// Steps 4 to 6, on what a record claims before its signature is checked.
    fn check_unsigned(
        &mut self,
        record: &crate::proto::record::Record,
        reference: RecordRef,
        now_ms: u64,
    ) -> Option<Verdict> {
        if let Some(verdict) = self.check_time(record, reference, now_ms) {
            return Some(verdict);
        }
        if let Some(verdict) = self.check_floor(reference) {
            return Some(verdict);
        }
        if let Some(current) = self.entries.get(&reference.origin) {
            let current = &current.record;
            if reference.seq < current.seq() {
                return Some(Verdict::Stale {
                    record: reference,
                    current_seq: current.seq(),
                });
            }
            if reference.id == current.id() {
                return Some(Verdict::Duplicate(reference));
            }
        }
        let limit = self.config.origin_rate;
        let has_token = self
            .buckets
            .entry(reference.origin)
            .or_insert_with(|| TokenBucket::full(limit, now_ms))
            .has_token(limit, now_ms);
        (!has_token).then_some(Verdict::Ignored(Ignored::RateLimited(reference)))
    }

    /// Decides on a record that was already verified (a local publication, a
    /// record restored from storage): steps 2, 3 and 5 to 8.
    pub fn ingest_verified(
        &mut self,
        record: VerifiedRecord,
        source: Source,
        now_ms: u64,
    ) -> Verdict {
        if record.record().federation != self.config.federation {
            return Verdict::Rejected(Rejection::WrongFederation(record.record().federation));
        }
        if let Some(verdict) = self.check_admission(&record.origin()) {
            return verdict;
        }
        self.decide(record, source, now_ms)
    }

    fn check_admission(&self, origin: &NodeId) -> Option<Verdict> {
        if !self.roster.contains(origin) {
            Some(Verdict::Rejected(Rejection::NotAdmitted(*origin)))
        } else if self.quarantine.contains_key(origin) {
            Some(Verdict::Ignored(Ignored::Quarantined(*origin)))
        } else {
            None
        }
    }

    /// A record at or below its origin's floor is stale (see `floors`).
    fn check_floor(&self, reference: RecordRef) -> Option<Verdict> {
        let floor = *self.floors.get(&reference.origin)?;
        (reference.seq <= floor).then_some(Verdict::Stale {
            record: reference,
            current_seq: floor,
        })
    }

    /// Steps 4 to 9 for a verified record of an admitted, unquarantined origin.
    fn decide(&mut self, record: VerifiedRecord, source: Source, now_ms: u64) -> Verdict {
        if let Some(verdict) = self.check_time(record.record(), RecordRef::from(&record), now_ms) {
            return verdict;
        }
        if let Some(verdict) = self.check_floor(RecordRef::from(&record)) {
            return verdict;
        }
        let origin = record.origin();
        let current = self.entries.get(&origin).map(|entry| entry.record.clone());
        let replaced = match current {
            None => None,
            Some(current) => match self.check_chain(&current, &record) {
                Ok(()) => Some(current),
                Err(verdict) => return verdict,
            },
        };
        let limit = self.config.origin_rate;
        let bucket = self
            .buckets
            .entry(origin)
            .or_insert_with(|| TokenBucket::full(limit, now_ms));
        if !bucket.try_take(limit, now_ms) {
            return Verdict::Ignored(Ignored::RateLimited(RecordRef::from(&record)));
        }
        self.put_entry(Entry {
            record: record.clone(),
            received_at_ms: now_ms,
            source,
        });
        Verdict::Accepted { record, replaced }
    }

    fn check_time(
        &self,
        fields: &crate::proto::record::Record,
        reference: RecordRef,
        now_ms: u64,
    ) -> Option<Verdict> {
        if fields.expires_at_ms <= now_ms {
            return Some(Verdict::Ignored(Ignored::Expired(reference)));
        }
        let ahead_ms = fields.issued_at_ms.saturating_sub(now_ms);
        if ahead_ms > self.config.max_clock_skew_ms {
            return Some(Verdict::Ignored(Ignored::FutureDated {
                record: reference,
                ahead_ms,
            }));
        }
        let ttl_ms = fields.ttl_ms();
        if ttl_ms > self.config.max_ttl_ms {
            return Some(Verdict::Rejected(Rejection::TtlTooLong {
                record: reference,
                ttl_ms,
            }));
        }
        None
    }

    /// Compares a new record with the origin's current one; on equivocation the
    /// origin is quarantined here.
    fn check_chain(
        &mut self,
        current: &VerifiedRecord,
        new: &VerifiedRecord,
    ) -> Result<(), Verdict> {
        if new.seq() < current.seq() {
            return Err(Verdict::Stale {
                record: RecordRef::from(new),
                current_seq: current.seq(),
            });
        }
        if new.id() == current.id() {
            return Err(Verdict::Duplicate(RecordRef::from(new)));
        }
        if let Some(proof) = EquivocationProof::from_conflict(current, new) {
            self.put_quarantine(new.origin(), proof.clone());
            return Err(Verdict::Equivocation(Box::new(proof)));
        }
        Ok(())
    }

    /// Checks a received equivocation proof and quarantines its origin.
    ///
    /// A proof about an origin that is not admitted, or already quarantined,
    /// changes nothing: it is answered before its two signatures are checked.
    pub fn ingest_proof(&mut self, proof: &EquivocationProof) -> ProofVerdict {
        if let Some(origin) = proof.claimed_origin() {
            if !self.roster.contains(&origin) {
                return ProofVerdict::NotAdmitted(origin);
            }
            if self.quarantine.contains_key(&origin) {
                return ProofVerdict::AlreadyQuarantined(origin);
            }
            if self.is_pardoned(&origin, proof) {
                return ProofVerdict::Pardoned(origin);
            }
        }
        self.signature_checks += 2;
        let verified = match proof.verify(Some(&self.config.federation)) {
            Ok(verified) => verified,
            Err(error) => return ProofVerdict::Rejected(error),
        };
        let origin = verified.origin;
        if !self.roster.contains(&origin) {
            return ProofVerdict::NotAdmitted(origin);
        }
        if self.quarantine.contains_key(&origin) {
            return ProofVerdict::AlreadyQuarantined(origin);
        }
        let removed = self.put_quarantine(origin, proof.clone());
        ProofVerdict::Quarantined { origin, removed }
    }

    /// Whether a pardon covers `proof`: both its records are at or below the
    /// origin's floor (a later fork is a new offence).
    fn is_pardoned(&self, origin: &NodeId, proof: &EquivocationProof) -> bool {
        self.floors
            .get(origin)
            .is_some_and(|floor| proof.highest_seq().is_some_and(|seq| seq <= *floor))
    }

    /// Admits the origins of `roster` from now on. Records of origins no longer
    /// on it leave the directory (returned), with their quarantines and floors.
    pub fn set_roster(&mut self, roster: Arc<Roster>) -> Vec<VerifiedRecord> {
        let gone: Vec<NodeId> = self
            .entries
            .keys()
            .chain(self.quarantine.keys())
            .filter(|origin| !roster.contains(origin))
            .copied()
            .collect();
        let mut removed = Vec::new();
        for origin in gone {
            if let Some(entry) = self.remove_entry(&origin) {
                removed.push(entry.record);
            }
            if self.quarantine.remove(&origin).is_some() {
                self.fingerprint ^= Holding::of_quarantine(origin).fingerprint();
            }
            self.keys.remove(&origin);
            self.buckets.remove(&origin);
        }
        self.floors.retain(|origin, _| roster.contains(origin));
        self.roster = roster;
        removed
    }

    /// Carries `from`'s chain over to `to` (a key rotation, applied before the
    /// roster without `from`): `to`'s records must have a seq above the highest
    /// this directory saw of `from`.
    pub fn carry_chain(&mut self, from: &NodeId, to: NodeId) {
        let mut floor = self.floors.get(from).copied().unwrap_or(0);
        if let Some(entry) = self.entries.get(from) {
            floor = floor.max(entry.record.seq());
        }
        if let Some(seq) = self.quarantine.get(from).and_then(|p| p.highest_seq()) {
            floor = floor.max(seq);
        }
        if floor > 0 {
            let slot = self.floors.entry(to).or_insert(0);
            *slot = (*slot).max(floor);
        }
    }

    /// Lifts `origin`'s quarantine; its chain restarts above `above_seq`.
    /// Returns whether it was quarantined here.
    pub fn pardon(&mut self, origin: &NodeId, above_seq: u64) -> bool {
        let slot = self.floors.entry(*origin).or_insert(0);
        *slot = (*slot).max(above_seq);
        let lifted = self.quarantine.remove(origin).is_some();
        if lifted {
            self.fingerprint ^= Holding::of_quarantine(*origin).fingerprint();
        }
        lifted
    }

    /// The highest seq that stays stale for `origin` (after a rotation or pardon).
    pub fn floor(&self, origin: &NodeId) -> Option<u64> {
        self.floors.get(origin).copied()
    }

    /// Removes every record expired at `now_ms` and returns them.
    pub fn sweep_expired(&mut self, now_ms: u64) -> Vec<VerifiedRecord> {
        let expired: Vec<NodeId> = self
            .expiries
            .iter()
            .take_while(|(expiry, _)| *expiry <= now_ms)
            .map(|(_, origin)| *origin)
            .collect();
        expired
            .into_iter()
            .filter_map(|origin| self.remove_entry(&origin))
            .map(|entry| entry.record)
            .collect()
    }

    fn put_entry(&mut self, entry: Entry) {
        self.fingerprint ^= Holding::of_record(&entry.record).fingerprint();
        let origin = entry.record.origin();
        self.expiries
            .insert((entry.record.record().expires_at_ms, origin));
        if let Some(old) = self.entries.insert(origin, entry) {
            self.fingerprint ^= Holding::of_record(&old.record).fingerprint();
            let (old_expiry, new_expiry) = (
                old.record.record().expires_at_ms,
                self.entries[&origin].record.record().expires_at_ms,
            );
            if old_expiry != new_expiry {
                self.expiries.remove(&(old_expiry, origin));
            }
        }
    }

    fn remove_entry(&mut self, origin: &NodeId) -> Option<Entry> {
        let removed = self.entries.remove(origin)?;
        self.fingerprint ^= Holding::of_record(&removed.record).fingerprint();
        self.expiries
            .remove(&(removed.record.record().expires_at_ms, *origin));
        Some(removed)
    }

    /// Quarantines `origin` with `proof`; returns the id of the record withdrawn.
    fn put_quarantine(&mut self, origin: NodeId, proof: EquivocationProof) -> Option<RecordId> {
        let removed = self.remove_entry(&origin).map(|entry| entry.record.id());
        if self.quarantine.insert(origin, proof).is_none() {
            self.fingerprint ^= Holding::of_quarantine(origin).fingerprint();
        }
        removed
    }

    /// XOR of the fingerprints of every holding: equal on two nodes that hold the
    /// same records and quarantines (with overwhelming probability).
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// Number of holdings: records plus quarantined origins.
    pub fn holdings_count(&self) -> usize {
        self.entries.len() + self.quarantine.len()
    }

    /// What this node holds for origins in `range`, in origin order.
    pub fn holdings_in(&self, range: RangeInclusive<NodeId>) -> Vec<Holding> {
        let mut holdings: Vec<Holding> = self
            .entries
            .range(range.clone())
            .map(|(_, entry)| Holding::of_record(&entry.record))
            .collect();
        holdings.extend(
            self.quarantine
                .range(range)
                .map(|(origin, _)| Holding::of_quarantine(*origin)),
        );
        holdings.sort_unstable();
        holdings
    }

    /// Fingerprint and count of the holdings in `range`.
    pub fn summarize(&self, range: RangeInclusive<NodeId>) -> (u64, u32) {
        let mut fingerprint = 0;
        let mut count = 0u32;
        for (_, entry) in self.entries.range(range.clone()) {
            fingerprint ^= Holding::of_record(&entry.record).fingerprint();
            count += 1;
        }
        for (origin, _) in self.quarantine.range(range) {
            fingerprint ^= Holding::of_quarantine(*origin).fingerprint();
            count += 1;
        }
        (fingerprint, count)
    }

    /// What this node holds for `origin`.
    pub fn holding(&self, origin: &NodeId) -> Option<Holding> {
        if self.quarantine.contains_key(origin) {
            return Some(Holding::of_quarantine(*origin));
        }
        self.entries
            .get(origin)
            .map(|entry| Holding::of_record(&entry.record))
    }

    /// The proof against a quarantined origin.
    pub fn proof(&self, origin: &NodeId) -> Option<&EquivocationProof> {
        self.quarantine.get(origin)
    }

    /// The earliest expiry among held records, for scheduling the next sweep.
    pub fn next_expiry_ms(&self) -> Option<u64> {
        self.expiries.first().map(|(expiry, _)| *expiry)
    }

    /// The current record of `origin`.
    pub fn entry(&self, origin: &NodeId) -> Option<&Entry> {
        self.entries.get(origin)
    }

    /// Every current record, by origin.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// Number of origins with a current record.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `origin` is quarantined.
    pub fn is_quarantined(&self, origin: &NodeId) -> bool {
        self.quarantine.contains_key(origin)
    }

    /// The quarantined origins and the proof against each.
    pub fn quarantined(&self) -> impl Iterator<Item = (&NodeId, &EquivocationProof)> {
        self.quarantine.iter()
    }

    /// Specialists that offer `capability`.
    pub fn by_capability(&self, capability: &str) -> Vec<Found<'_>> {
        self.find(|specialist| specialist.capabilities.iter().any(|c| c == capability))
    }

    /// Specialists named `name` (one per origin at most).
    pub fn by_name(&self, name: &str) -> Vec<Found<'_>> {
        self.find(|specialist| specialist.name == name)
    }

    /// Every specialist of `origin`.
    pub fn by_origin(&self, origin: &NodeId) -> Vec<Found<'_>> {
        self.entries
            .get(origin)
            .map(|entry| {
                entry
                    .record
                    .record()
                    .specialists
                    .iter()
                    .map(|specialist| Found {
                        origin: *origin,
                        specialist,
                        record: &entry.record,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn find(&self, matches: impl Fn(&Specialist) -> bool) -> Vec<Found<'_>> {
        let mut found = Vec::new();
        for (origin, entry) in &self.entries {
            for specialist in &entry.record.record().specialists {
                if matches(specialist) {
                    found.push(Found {
                        origin: *origin,
                        specialist,
                        record: &entry.record,
                    });
                }
            }
        }
        found
    }
}

#[cfg(test)]
mod tests;
