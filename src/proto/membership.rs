//! Who a node gossips with: uniform choice among admitted members, minus those it
//! cannot or will not reach right now.
//!
//! Membership is the roster (shared, not copied per node) plus sparse state: the
//! members this node knows how to reach (bootstrap peers, peers that contacted it;
//! members with a dialable record are reachable through the directory), peers in
//! dial backoff after failures, and banned peers. A record with no addresses means
//! its origin is behind NAT: it dials out and is served on its own connection.
//! Choice is uniform over the reachable members, so a large roster of keys this
//! node has not heard from does not dilute its gossip.

use std::collections::BTreeMap;
use std::sync::Arc;

use rand::Rng;
use tidings_keys::{NodeId, Roster};

/// The admitted member ids in a shared, indexable list.
pub fn member_list(roster: &Roster) -> Arc<[NodeId]> {
    roster.iter().map(|(id, _)| *id).collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Backoff {
    failures: u32,
    retry_at_ms: u64,
}

/// Exponential dial backoff parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// Wait after the first failure.
    pub base_ms: u64,
    /// Longest wait.
    pub max_ms: u64,
}

/// The members a node may pick, and the exceptions.
#[derive(Debug, Clone)]
pub struct Membership {
    me: NodeId,
    members: Arc<[NodeId]>,
    known: std::collections::BTreeSet<NodeId>,
    everyone_known: bool,
    backoff: BTreeMap<NodeId, Backoff>,
    banned: BTreeMap<NodeId, u64>,
}

impl Membership {
    /// Membership of `me` among `members`.
    pub fn new(me: NodeId, members: Arc<[NodeId]>) -> Self {
        Self {
            me,
            members,
            known: Default::default(),
            everyone_known: false,
            backoff: BTreeMap::new(),
            banned: BTreeMap::new(),
        }
    }

    /// Replaces the admitted members (a roster change); state about keys no
    /// longer admitted is dropped.
    pub fn set_members(&mut self, members: Arc<[NodeId]>) {
        let admitted: std::collections::BTreeSet<NodeId> = members.iter().copied().collect();
        self.known.retain(|id| admitted.contains(id));
        self.backoff.retain(|id, _| admitted.contains(id));
        self.banned.retain(|id, _| admitted.contains(id));
        self.members = members;
    }

    /// All admitted members, this node included.
    pub fn members(&self) -> &Arc<[NodeId]> {
        &self.members
    }

    /// Records a failed dial: the peer is skipped for a growing while, with jitter.
    pub fn dial_failed<R: Rng + ?Sized>(
        &mut self,
        peer: NodeId,
        now_ms: u64,
        policy: BackoffPolicy,
        rng: &mut R,
    ) -> u64 {
        let state = self.backoff.entry(peer).or_insert(Backoff {
            failures: 0,
            retry_at_ms: now_ms,
        });
        state.failures = state.failures.saturating_add(1);
        let exponent = state.failures.saturating_sub(1).min(20);
        let wait = policy
            .base_ms
            .saturating_mul(1u64 << exponent)
            .min(policy.max_ms);
        let jitter = rng.gen_range(0..=wait / 4);
        state.retry_at_ms = now_ms.saturating_add(wait - wait / 8 + jitter);
        state.retry_at_ms
    }

    /// Records a successful contact: the peer is reachable and its backoff cleared.
    pub fn reached(&mut self, peer: &NodeId) {
        self.backoff.remove(peer);
        if !self.everyone_known && self.known.len() < self.members.len() {
            self.known.insert(*peer);
        }
    }

    /// Marks `peer` as reachable (a bootstrap peer).
    pub fn add_known(&mut self, peer: NodeId) {
        self.known.insert(peer);
    }

    /// Treats every member as reachable (Bet 15's setting: the membership is known).
    pub fn assume_everyone_known(&mut self) {
        self.everyone_known = true;
        self.known.clear();
    }

    /// Whether this node knows how to reach `peer` without the directory's help.
    pub fn is_known(&self, peer: &NodeId) -> bool {
        self.everyone_known || self.known.contains(peer)
    }

    /// Bans `peer` until `until_ms`.
    pub fn ban(&mut self, peer: NodeId, until_ms: u64) {
        self.banned.insert(peer, until_ms);
    }

    /// Whether `peer` is banned at `now_ms` (expired bans are forgotten lazily).
    pub fn is_banned(&self, peer: &NodeId, now_ms: u64) -> bool {
        self.banned.get(peer).is_some_and(|until| now_ms < *until)
    }

    /// Forgets bans and backoffs that have run out.
    pub fn expire(&mut self, now_ms: u64) {
        self.banned.retain(|_, until| now_ms < *until);
    }

    fn available(&self, peer: &NodeId, now_ms: u64) -> bool {
        *peer != self.me
            && !self.is_banned(peer, now_ms)
            && self
                .backoff
                .get(peer)
                .is_none_or(|state| now_ms >= state.retry_at_ms)
    }

    /// Up to `count` distinct members, uniformly at random among those available and
    /// accepted by `eligible`.
    pub fn pick<R: Rng + ?Sized>(
        &self,
        count: usize,
        now_ms: u64,
        rng: &mut R,
        eligible: impl Fn(&NodeId) -> bool,
    ) -> Vec<NodeId> {
        let mut chosen: Vec<NodeId> = Vec::with_capacity(count);
        if count == 0 || self.members.is_empty() {
            return chosen;
        }
        let ok = |peer: &NodeId| self.available(peer, now_ms) && eligible(peer);
        // Rejection sampling is O(count) when most members are available.
        for _ in 0..(16 * count + 64) {
            let peer = self.members[rng.gen_range(0..self.members.len())];
            if !chosen.contains(&peer) && ok(&peer) {
                chosen.push(peer);
                if chosen.len() == count {
                    return chosen;
                }
            }
        }
        // Few are available: choose among all of them explicitly.
        let rest: Vec<NodeId> = self
            .members
            .iter()
            .filter(|peer| !chosen.contains(peer) && ok(peer))
            .copied()
            .collect();
        let needed = count - chosen.len();
        chosen.extend(
            rand::seq::index::sample(rng, rest.len(), needed.min(rest.len()))
                .iter()
                .map(|i| rest[i]),
        );
        chosen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn ids(count: u8) -> Arc<[NodeId]> {
        (0..count).map(|i| NodeId::from_bytes([i; 32])).collect()
    }

    #[test]
    fn picks_distinct_available_members_uniformly() {
        let members = ids(10);
        let me = members[0];
        let mut membership = Membership::new(me, members.clone());
        membership.ban(members[1], 1000);
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut counts = [0u32; 10];
        for _ in 0..4000 {
            let picked = membership.pick(2, 0, &mut rng, |peer| *peer != members[2]);
            assert_eq!(picked.len(), 2);
            assert_ne!(picked[0], picked[1]);
            for peer in picked {
                counts[peer.as_bytes()[0] as usize] += 1;
            }
        }
        assert_eq!(
            counts[0] + counts[1] + counts[2],
            0,
            "self, banned, ineligible"
        );
        // 8000 picks over 7 members: about 1143 each.
        for count in &counts[3..] {
            assert!((1000..1300).contains(count), "{counts:?}");
        }
        // The ban runs out.
        assert!(membership
            .pick(9, 1000, &mut rng, |_| true)
            .contains(&members[1]));
    }

    #[test]
    fn backoff_grows_and_clears() {
        let members = ids(3);
        let mut membership = Membership::new(members[0], members.clone());
        let policy = BackoffPolicy {
            base_ms: 1000,
            max_ms: 8000,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let first = membership.dial_failed(members[1], 0, policy, &mut rng);
        assert!((875..=1250).contains(&first), "{first}");
        let mut retry = first;
        for _ in 0..6 {
            retry = membership.dial_failed(members[1], 0, policy, &mut rng);
        }
        assert!((7000..=10_000).contains(&retry), "capped: {retry}");
        assert!(membership.pick(2, 0, &mut rng, |_| true) == vec![members[2]]);
        membership.reached(&members[1]);
        assert_eq!(membership.pick(2, 0, &mut rng, |_| true).len(), 2);
        // Nothing available at all.
        let lonely = Membership::new(members[0], Arc::from(vec![members[0]]));
        assert!(lonely.pick(2, 0, &mut rng, |_| true).is_empty());
    }
}
