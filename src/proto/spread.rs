//! Spread: how a new record reaches every node in a few network hops, whatever
//! the gossip interval.
//!
//! Anti-entropy rounds ([`gossip`](super::gossip)) guarantee that every node ends
//! up with every record, but a record that waits for rounds travels at one hop
//! per interval. Spreading is the fast path beside it, after Plumtree (Leitão,
//! Pereira and Rodrigues, 2007), with changes: the eager floor, and asks that
//! mend links only when the eager path has gone quiet:
//!
//! - each node keeps a small set of **neighbours**: `neighbours` members it chose
//!   at random (each told so by an empty `Graft`, so that it links back, or
//!   answers `Leave` when it has all the links it takes), plus members that
//!   chose it (at most twice as many). The set is stable: a neighbour leaves only
//!   when it is banned, removed, quarantined or cannot be dialled, and its place
//!   is refilled at the next round;
//! - a neighbour link is **eager** or **lazy**. A record this node accepts for
//!   the first time goes in full (`Push`) to every eager neighbour, and as an
//!   announcement (`Have`: origin, seq and tag, 48 bytes) to every lazy one;
//! - a node that receives a `Push` holding nothing new, only records that a
//!   push along another link had already brought, answers `Prune`, and both
//!   ends turn that link lazy. (A record that came first by anti-entropy, from a
//!   random member, prunes nothing: that would cut links at random.) A push that
//!   brings news along a lazy link leaves it lazy, and a pruned
//!   neighbour that still pushes (its pushes were under way, or it missed the
//!   prune) is told again only after [`REPRUNE_MS`]. Before, a news push turned
//!   the link eager again and the next duplicate pruned it again: when every
//!   node published at once (64 processes, 200 ms interval), links flipped at
//!   almost every push and a node sent some 130 prunes per burst; now about 3;
//! - **the eager floor**: no node prunes below [`EAGER_FLOOR`] eager links, and
//!   a node that a prune leaves with fewer turns lazy links eager again, chosen
//!   at random (with an empty `Graft`; taken in table order, the members with
//!   the lowest ids became everyone's eager neighbours). Plumtree prunes down
//!   to a spanning tree; but when many records spread at once, prunes decided
//!   for different records cut different links of one cycle, the tree falls
//!   apart, and each node cut off waits a graft timeout for every record until
//!   grafts have mended it (measured on 16 processes at a 200 ms interval: one
//!   record in five was grafted, and a new record's median time to reach every
//!   node was the graft timeout). With three eager links per node, the eager
//!   graph stays connected through such bursts (a floor of two, tried again
//!   with the rules here at 64 processes: grafts per node rose from about 45
//!   to 115 over 5 single records and 5 bursts, and some single records took
//!   a graft timeout longer);
//! - a node that hears an announcement of a record it lacks waits
//!   `graft_timeout_ms` for the record to arrive on the eager path; if it does
//!   not, it asks the announcer for it. If no push brought this node anything
//!   new for a graft timeout, its eager path looks cut, and the ask is a
//!   `Graft`, which also turns that link eager: the eager graph mends itself
//!   where a link was lost or a neighbour went quiet. If pushes did bring news
//!   meanwhile, the eager path works and the record is only late (the node is
//!   busy, or the record took a longer path): the node waits one graft timeout
//!   more, once, and then asks with a `Want` if pushes still bring news (with
//!   a `Graft` if they stopped), and the links stay as they are. Grafting every
//!   late record's announcer grew the eager graph in each burst, where records
//!   are late because every node is busy, and with it the duplicates: at 64
//!   processes a burst cost each node about 165 duplicate pushes, and about 105
//!   with `Want`. Asking at once with `Want` still cost each node some 10 asks
//!   and answers per burst, for records that were on their way: with the
//!   second wait, about 1 (`tidings bench net` at 64 processes: asks per node
//!   over the run 55-74 before, 11-12 after; bursts within noise). If the announcer
//!   does not deliver either, the next announcer is asked after half a graft
//!   timeout.
//!
//! **Cost.** Once the eager links have thinned out, a node keeps about three
//! and pushes a new record along all but the one it came by: about two full
//! copies per node, one of them a duplicate (a spanning tree would send one
//! copy; flooding the neighbour graph, with some ten links per node, nine).
//! Every other link carries a 48-byte announcement, batched per peer. A
//! duplicate costs its bytes and a hash lookup: it is neither verified again
//! nor audited. The simulator reports the redundancy (payload copies per node
//! reached, minus one), and `tidings bench net` the grafts and prunes per node.
//!
//! **Why this and not a larger random push fanout.** Pushing each new record to
//! `f` random members reaches all N only when `f` grows as ln N, and even then
//! leaves a few nodes out with a probability that does not vanish: they wait a
//! round. Every such push is a full copy, so the redundancy is `f - 1`. Here the
//! eager links carry about two copies per node, and the announcements reach
//! every node that the neighbour graph connects, so none waits for a round.
//!
//! **Byzantine neighbours.** A neighbour that withholds a record (never pushes,
//! or never answers a graft) delays it by a graft timeout (two while other
//! pushes bring news) and half a timeout
//! more for each announcer that does not deliver either (up to
//! [`MAX_ANNOUNCERS`], after which anti-entropy repairs it): the record's
//! announcements come from the other neighbours, and asking one of them brings
//! it. A node whose eager neighbours all withhold hears no news by
//! push, so its asks are grafts and turn the announcers' links eager. Eager
//! neighbours that are all Byzantine and push a trickle of news while
//! withholding the rest keep the node's path looking alive: each withheld
//! record still comes, asked of an announcer, two graft timeouts or more late,
//! but the links are not mended around them. (Mending as well once more
//! records had to be asked for than pushes brought, over the last second,
//! closes that; it made every-node-publishes bursts at 64 processes 5 to 15%
//! slower in six of six interleaved comparisons, and was not kept.) A
//! neighbour that announces records it then does not deliver breaks a promise
//! and is penalised, as for an unanswered `Want`. A `Prune` only stops pushes
//! to its sender. Announcements only name origins on the roster, one entry
//! each, so the table of awaited records is bounded by the roster (and by
//! [`MAX_AWAITED`]). Neighbours are chosen at random by each node,
//! so an adversary cannot make itself anyone's only neighbour, and anti-entropy
//! with random members still repairs anything an eclipse of the neighbour graph
//! withholds.
//!
//! This module owns the neighbour table, the announcement queue and the awaited
//! records; [`State`](super::state::State) decides what to send.

use std::collections::{BTreeMap, HashMap, VecDeque};

use rand::seq::SliceRandom;
use rand::Rng;
use tidings_keys::NodeId;

use super::directory::Holding;

/// Most records awaited at once after announcements.
pub const MAX_AWAITED: usize = 65_536;

/// Eager links a node keeps: it prunes no link below this many, and turns lazy
/// links eager again when a prune leaves it with fewer.
pub const EAGER_FLOOR: usize = 3;

/// Most announcers remembered per awaited record (each is asked in turn).
const MAX_ANNOUNCERS: usize = 4;

/// How long a pruned neighbour that still pushes is not told again.
pub const REPRUNE_MS: u64 = 1_000;

/// Inbound links a node takes, as a multiple of the neighbours it chooses.
const INBOUND_FACTOR: usize = 2;

/// How long a member that refused or dropped a link is not chosen again.
const REFUSAL_MS: u64 = 30_000;

/// Records remembered as having come first by a push (a duplicate push comes
/// within moments of the first copy, so the latest few hundred suffice).
const PUSHED_REMEMBERED: usize = 512;

/// Spreading parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpreadConfig {
    /// Neighbours this node chooses (0 turns the fast path off: records then
    /// travel by anti-entropy alone). Members that choose this node are
    /// neighbours too, up to as many again.
    pub neighbours: usize,
    /// How long an announced record may take on the eager path before it is
    /// asked of its announcer (twice as long, once, while pushes bring news).
    pub graft_timeout_ms: u64,
    /// How long announcements are gathered before they go out, so that one
    /// `Have` carries many, and so that they leave after the pushes of the
    /// record they announce (whose receivers may then announce it back to
    /// this node first, which spares the announcement).
    pub announce_delay_ms: u64,
}

impl Default for SpreadConfig {
    fn default() -> Self {
        Self {
            neighbours: 5,
            graft_timeout_ms: 100,
            announce_delay_ms: 25,
        }
    }
}

/// One neighbour link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Link {
    /// New records go to it in full (else: announced).
    eager: bool,
    /// This node chose it (else: it chose this node).
    chosen: bool,
    /// When this node last told it `Prune`.
    pruned_ms: Option<u64>,
}

/// A record announced by neighbours and not received yet.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Awaited {
    seq: u64,
    /// Who announced it, in the order heard; the first is asked first.
    announcers: Vec<NodeId>,
    /// When the next announcer is asked.
    due_ms: u64,
    /// Whether its first due time has passed (it was asked, or put off once
    /// because pushes were bringing news): only the first ask is put off.
    past_first_due: bool,
}

/// A record to announce: what, and the peers known to hold it already (the
/// one it came from, and those that pushed or announced it since): they are
/// not told.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Announcement {
    holding: Holding,
    holders: Vec<NodeId>,
}

/// Most holders remembered per queued announcement.
const MAX_HOLDERS: usize = 16;

/// The neighbour table and the eager/lazy state of each link.
#[derive(Debug, Clone, Default)]
pub struct Spread {
    config: SpreadConfig,
    links: BTreeMap<NodeId, Link>,
    awaited: BTreeMap<NodeId, Awaited>,
    queued: Vec<Announcement>,
    /// When the queued announcements go out.
    announce_at: Option<u64>,
    /// Members that refused or dropped a link lately, and until when they are
    /// not chosen again.
    refused: BTreeMap<NodeId, u64>,
    /// The latest records whose first copy came by a push, and from whom.
    pushed: HashMap<(NodeId, u64), NodeId>,
    pushed_order: VecDeque<(NodeId, u64)>,
    /// When a push last brought this node news.
    news_pushed_ms: Option<u64>,
}

/// Where a new record goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Targets {
    /// Neighbours that get the record in full.
    pub eager: Vec<NodeId>,
    /// Whether lazy neighbours will hear of it (an announcement was queued).
    pub announced: bool,
}

impl Spread {
    /// An empty neighbour table.
    pub fn new(config: SpreadConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// The parameters.
    pub fn config(&self) -> &SpreadConfig {
        &self.config
    }

    /// Whether the fast path is on.
    pub fn enabled(&self) -> bool {
        self.config.neighbours > 0
    }

    /// How many more neighbours this node should choose.
    pub fn wanted(&self) -> usize {
        let chosen = self.links.values().filter(|link| link.chosen).count();
        self.config.neighbours.saturating_sub(chosen)
    }

    /// Every neighbour.
    pub fn neighbours(&self) -> impl Iterator<Item = &NodeId> {
        self.links.keys()
    }

    /// Whether `peer` is a neighbour.
    pub fn is_neighbour(&self, peer: &NodeId) -> bool {
        self.links.contains_key(peer)
    }

    /// Whether this node chose `peer` as a neighbour (rather than accepted it).
    pub fn chose(&self, peer: &NodeId) -> bool {
        self.links.get(peer).is_some_and(|link| link.chosen)
    }

    /// Whether `peer` is an eager neighbour.
    pub fn is_eager(&self, peer: &NodeId) -> bool {
        self.links.get(peer).is_some_and(|link| link.eager)
    }

    /// The number of (eager, lazy) links.
    pub fn link_counts(&self) -> (usize, usize) {
        let eager = self.links.values().filter(|link| link.eager).count();
        (eager, self.links.len() - eager)
    }

    /// Adds a neighbour this node chose; its link starts eager.
    pub fn choose(&mut self, peer: NodeId) {
        let link = self.links.entry(peer).or_insert(Link {
            eager: true,
            chosen: true,
            pruned_ms: None,
        });
        link.chosen = true;
    }

    /// Adds `peer` as a neighbour that chose this node, if there is room.
    fn accept(&mut self, peer: NodeId, eager: bool) -> bool {
        if self.links.contains_key(&peer) {
            return true;
        }
        let inbound = self.links.values().filter(|link| !link.chosen).count();
        if !self.enabled() || inbound >= INBOUND_FACTOR * self.config.neighbours {
            return false;
        }
        self.links.insert(
            peer,
            Link {
                eager,
                chosen: false,
                pruned_ms: None,
            },
        );
        true
    }

    /// `peer` dropped or refused the link: it goes, and is not chosen again
    /// for a while.
    pub fn on_leave(&mut self, peer: &NodeId, now_ms: u64) {
        self.drop_peer(peer);
        self.refused.retain(|_, until| now_ms < *until);
        self.refused
            .insert(*peer, now_ms.saturating_add(REFUSAL_MS));
    }

    /// Whether `peer` refused or dropped a link lately.
    pub fn refused(&self, peer: &NodeId, now_ms: u64) -> bool {
        self.refused.get(peer).is_some_and(|until| now_ms < *until)
    }

    /// The members that refused or dropped a link lately.
    pub fn refusing(&self, now_ms: u64) -> impl Iterator<Item = NodeId> + '_ {
        self.refused
            .iter()
            .filter(move |(_, until)| now_ms < **until)
            .map(|(peer, _)| *peer)
    }

    /// Drops `peer` from the table (banned, removed, quarantined, unreachable);
    /// it is no longer asked for awaited records either.
    pub fn drop_peer(&mut self, peer: &NodeId) {
        self.links.remove(peer);
        for awaited in self.awaited.values_mut() {
            awaited.announcers.retain(|announcer| announcer != peer);
        }
        self.awaited
            .retain(|_, awaited| !awaited.announcers.is_empty());
    }

    /// Keeps only the neighbours `keep` accepts.
    pub fn retain(&mut self, keep: impl Fn(&NodeId) -> bool) {
        let gone: Vec<NodeId> = self.links.keys().filter(|p| !keep(p)).copied().collect();
        for peer in gone {
            self.drop_peer(&peer);
        }
    }

    /// A `Push` arrived from `peer`; `news` says whether it held any record this
    /// node accepted, `redundant` whether what it held had already come along
    /// another neighbour link. Returns whether to answer `Prune`: a push of
    /// nothing new that another eager path already brought. (A record that
    /// came first by anti-entropy from a random member says nothing about the
    /// neighbour links: it does not prune one.)
    pub fn on_push(&mut self, peer: NodeId, news: bool, redundant: bool, now_ms: u64) -> bool {
        if news || !redundant {
            self.accept(peer, true);
            // Only a neighbour's push says the eager path works: any member
            // may push news, and one that is not a neighbour is not the path.
            if news && self.is_neighbour(&peer) {
                self.news_pushed_ms = Some(now_ms);
            }
            return false;
        }
        // A push of nothing new: the link (made lazy if there was none, so
        // that announcements still flow both ways) is pruned, unless this
        // node is down to its floor of eager links.
        if self.is_eager(&peer) && self.link_counts().0 <= EAGER_FLOOR {
            return false;
        }
        self.accept(peer, false);
        let Some(link) = self.links.get_mut(&peer) else {
            // Not a neighbour (and no room for one): told as before.
            return true;
        };
        let told_lately = !link.eager
            && link
                .pruned_ms
                .is_some_and(|at| now_ms.saturating_sub(at) < REPRUNE_MS);
        link.eager = false;
        if told_lately {
            return false;
        }
        link.pruned_ms = Some(now_ms);
        true
    }

    /// Turns lazy links eager, chosen at random, until this node has its floor
    /// of eager links (or no lazy link is left); returns them, to be told with
    /// an empty `Graft`. (Taking them in table order would make the members
    /// with the lowest ids everyone's eager neighbours, and the copies of each
    /// record they receive, and relay, would grow with the federation.)
    pub fn restore_floor<R: Rng + ?Sized>(
        &mut self,
        except: Option<&NodeId>,
        rng: &mut R,
    ) -> Vec<NodeId> {
        let missing = EAGER_FLOOR.saturating_sub(self.link_counts().0);
        if missing == 0 {
            return Vec::new();
        }
        let lazy: Vec<NodeId> = self
            .links
            .iter()
            .filter(|(peer, link)| !link.eager && Some(*peer) != except)
            .map(|(peer, _)| *peer)
            .collect();
        let promoted: Vec<NodeId> = lazy.choose_multiple(rng, missing).copied().collect();
        for peer in &promoted {
            if let Some(link) = self.links.get_mut(peer) {
                link.eager = true;
            }
        }
        promoted
    }

    /// `peer` showed it holds the record `origin`/`seq` or a newer one (it
    /// pushed or announced it): a queued announcement of it skips `peer`.
    pub fn note_holder(&mut self, peer: NodeId, origin: &NodeId, seq: u64) {
        for item in &mut self.queued {
            if item.holding.origin == *origin
                && item.holding.seq <= seq
                && !item.holders.contains(&peer)
                && item.holders.len() < MAX_HOLDERS
            {
                item.holders.push(peer);
            }
        }
    }

    /// The record `origin`/`seq` was accepted from a push by `peer`.
    pub fn accepted_from_push(&mut self, origin: NodeId, seq: u64, peer: NodeId) {
        if self.pushed_order.len() >= PUSHED_REMEMBERED {
            if let Some(oldest) = self.pushed_order.pop_front() {
                self.pushed.remove(&oldest);
            }
        }
        if self.pushed.insert((origin, seq), peer).is_none() {
            self.pushed_order.push_back((origin, seq));
        }
    }

    /// Whether the record `origin`/`seq` came first by a push from a peer
    /// other than `peer`.
    pub fn pushed_by_another(&self, origin: &NodeId, seq: u64, peer: &NodeId) -> bool {
        self.pushed
            .get(&(*origin, seq))
            .is_some_and(|first| first != peer)
    }

    /// `peer` asked for no more pushes. Returns the lazy links turned eager
    /// if that left this node below its floor of eager links (to be told with
    /// an empty `Graft`).
    pub fn on_prune<R: Rng + ?Sized>(&mut self, peer: &NodeId, rng: &mut R) -> Vec<NodeId> {
        match self.links.get_mut(peer) {
            Some(link) if link.eager => link.eager = false,
            _ => return Vec::new(),
        }
        self.restore_floor(Some(peer), rng)
    }

    /// `peer` asked for records it heard announced, or (an empty graft)
    /// chose this node as a neighbour: its link turns eager. Returns false if
    /// there is no room for it (the driver answers `Leave`).
    pub fn on_graft(&mut self, peer: NodeId) -> bool {
        if !self.accept(peer, true) {
            return false;
        }
        if let Some(link) = self.links.get_mut(&peer) {
            link.eager = true;
        }
        true
    }

    /// `peer` announced `holding`, which this node lacks: it is awaited, and
    /// asked of `peer` if it has not arrived by the graft timeout. Returns
    /// whether it was noted (false when the table is full).
    pub fn on_announced(&mut self, peer: NodeId, holding: &Holding, now_ms: u64) -> bool {
        self.accept(peer, false);
        if let Some(awaited) = self.awaited.get_mut(&holding.origin) {
            if holding.seq > awaited.seq {
                awaited.seq = holding.seq;
            }
            if !awaited.announcers.contains(&peer) && awaited.announcers.len() < MAX_ANNOUNCERS {
                awaited.announcers.push(peer);
            }
            return true;
        }
        if self.awaited.len() >= MAX_AWAITED {
            return false;
        }
        self.awaited.insert(
            holding.origin,
            Awaited {
                seq: holding.seq,
                announcers: vec![peer],
                due_ms: now_ms.saturating_add(self.config.graft_timeout_ms),
                past_first_due: false,
            },
        );
        true
    }

    /// A record of `origin` at `seq` arrived (by any path): it is no longer
    /// awaited unless a newer one was announced.
    pub fn received(&mut self, origin: &NodeId, seq: u64) {
        if self.awaited.get(origin).is_some_and(|a| a.seq <= seq) {
            self.awaited.remove(origin);
        }
    }

    /// Where a record this node just accepted goes: its eager neighbours (except
    /// `source` and the record's origin), and an announcement queued for the lazy
    /// ones, sent at [`Spread::take_announcements`].
    pub fn targets(&mut self, holding: Holding, source: Option<NodeId>, now_ms: u64) -> Targets {
        let skip = |peer: &NodeId| Some(*peer) == source || *peer == holding.origin;
        let eager: Vec<NodeId> = self
            .links
            .iter()
            .filter(|(peer, link)| link.eager && !skip(peer))
            .map(|(peer, _)| *peer)
            .collect();
        let announced = self
            .links
            .iter()
            .any(|(peer, link)| !link.eager && !skip(peer));
        if announced {
            self.queued.push(Announcement {
                holding,
                holders: source.into_iter().collect(),
            });
            self.announce_at
                .get_or_insert(now_ms.saturating_add(self.config.announce_delay_ms));
        }
        Targets { eager, announced }
    }

    /// The announcements due by `now_ms`, per lazy neighbour: what each should
    /// hear (sorted by origin, the newest per origin, none it sent or authored).
    pub fn take_announcements(&mut self, now_ms: u64) -> Vec<(NodeId, Vec<Holding>)> {
        if self.announce_at.is_none_or(|at| now_ms < at) {
            return Vec::new();
        }
        self.announce_at = None;
        let queued = std::mem::take(&mut self.queued);
        let mut out = Vec::new();
        for (peer, link) in &self.links {
            if link.eager {
                continue;
            }
            let mut newest: BTreeMap<NodeId, Holding> = BTreeMap::new();
            for item in &queued {
                if item.holders.contains(peer) || item.holding.origin == *peer {
                    continue;
                }
                let slot = newest.entry(item.holding.origin).or_insert(item.holding);
                if item.holding.seq > slot.seq {
                    *slot = item.holding;
                }
            }
            if !newest.is_empty() {
                out.push((*peer, newest.into_values().collect()));
            }
        }
        out
    }

    /// The awaited records due by `now_ms`, grouped by the announcer to ask
    /// (origins sorted); each is due again after half a graft timeout, with its
    /// next announcer, and forgotten when none is left (anti-entropy repairs it).
    /// A record first due while [`Spread::eager_path_alive`] is not asked yet:
    /// it is due again a graft timeout later (once).
    /// `still_missing` says whether the record is still lacking. The
    /// announcers' links turn eager only when [`Spread::eager_path_alive`] is
    /// false at `now_ms`, which is also what the caller asks to choose between
    /// `Graft` and `Want`.
    pub fn take_grafts(
        &mut self,
        now_ms: u64,
        still_missing: impl Fn(&NodeId, u64) -> bool,
    ) -> Vec<(NodeId, Vec<NodeId>)> {
        let mut asks: BTreeMap<NodeId, Vec<NodeId>> = BTreeMap::new();
        let retry = (self.config.graft_timeout_ms / 2).max(1);
        // A record late while pushes bring news is on its way: wait once more.
        let alive = self.eager_path_alive(now_ms);
        let timeout = self.config.graft_timeout_ms;
        self.awaited.retain(|origin, awaited| {
            if now_ms < awaited.due_ms {
                return true;
            }
            if !still_missing(origin, awaited.seq) || awaited.announcers.is_empty() {
                return false;
            }
            if alive && !awaited.past_first_due {
                awaited.past_first_due = true;
                awaited.due_ms = now_ms.saturating_add(timeout);
                return true;
            }
            let announcer = awaited.announcers.remove(0);
            asks.entry(announcer).or_default().push(*origin);
            awaited.past_first_due = true;
            awaited.due_ms = now_ms.saturating_add(retry);
            true
        });
        if !self.eager_path_alive(now_ms) {
            for peer in asks.keys() {
                if let Some(link) = self.links.get_mut(peer) {
                    link.eager = true;
                }
            }
        }
        asks.into_iter().collect()
    }

    /// Whether a push brought news within the last graft timeout: the eager
    /// links deliver, and a record they have not brought yet is late, not cut
    /// off (the node is busy, or the record took a longer path).
    pub fn eager_path_alive(&self, now_ms: u64) -> bool {
        self.news_pushed_ms
            .is_some_and(|at| now_ms.saturating_sub(at) < self.config.graft_timeout_ms)
    }

    /// The next time there is spreading work to do.
    pub fn next_deadline(&self) -> Option<u64> {
        let graft = self.awaited.values().map(|awaited| awaited.due_ms).min();
        match (graft, self.announce_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// How many records are awaited.
    pub fn awaited_count(&self) -> usize {
        self.awaited.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(byte: u8) -> NodeId {
        NodeId::from_bytes([byte; 32])
    }

    fn holding(origin: u8, seq: u64) -> Holding {
        Holding {
            origin: id(origin),
            seq,
            tag: u64::from(origin) * 1000 + seq,
        }
    }

    fn spread() -> Spread {
        Spread::new(SpreadConfig {
            neighbours: 3,
            graft_timeout_ms: 100,
            announce_delay_ms: 5,
        })
    }

    /// A table with neighbours 1 to `count`, all chosen by this node (eager).
    fn chosen(count: u8) -> Spread {
        let mut spread = spread();
        for peer in 1..=count {
            spread.choose(id(peer));
        }
        spread
    }

    fn rng() -> rand_chacha::ChaCha8Rng {
        rand::SeedableRng::seed_from_u64(7)
    }

    #[test]
    fn a_duplicate_push_turns_the_link_lazy_and_only_a_graft_turns_it_eager() {
        let mut spread = spread();
        let mut rng = rng();
        spread.choose(id(1));
        assert!(spread.is_eager(&id(1)));
        assert!(
            !spread.on_push(id(1), false, false, 0),
            "a record that came first by anti-entropy prunes nothing"
        );
        assert!(spread.is_eager(&id(1)));
        assert!(
            !spread.on_push(id(1), false, true, 0),
            "not below the floor of eager links"
        );
        for peer in 2..=5 {
            spread.choose(id(peer));
        }
        assert!(
            spread.on_push(id(1), false, true, 0),
            "a duplicate of another eager path is pruned"
        );
        assert!(!spread.is_eager(&id(1)));
        assert!(
            spread.on_prune(&id(2), &mut rng).is_empty(),
            "3 eager links left"
        );
        assert_eq!(
            spread.on_prune(&id(3), &mut rng),
            vec![id(1)],
            "below the floor, a lazy link turns eager"
        );
        spread.on_prune(&id(1), &mut rng);
        assert!(!spread.is_eager(&id(1)));
        assert!(!spread.on_push(id(1), true, false, 10));
        assert!(
            !spread.is_eager(&id(1)),
            "news along a pruned link leaves it lazy"
        );
        spread.on_graft(id(1));
        assert!(spread.is_eager(&id(1)));
    }

    #[test]
    fn a_pruned_neighbour_that_still_pushes_is_told_again_only_after_a_while() {
        let mut spread = chosen(5);
        assert!(spread.on_push(id(1), false, true, 1_000));
        assert!(!spread.is_eager(&id(1)));
        assert!(
            !spread.on_push(id(1), false, true, 1_000 + REPRUNE_MS - 1),
            "its pushes were under way: not told twice"
        );
        assert!(
            spread.on_push(id(1), false, true, 1_000 + REPRUNE_MS),
            "still pushing a while later: told again"
        );
        assert!(!spread.is_eager(&id(1)));
    }

    #[test]
    fn the_floor_is_restored_with_lazy_links_chosen_at_random() {
        let mut rng = rng();
        let mut promoted = BTreeMap::new();
        for _ in 0..200 {
            let mut spread = chosen(8);
            // Five pruned (links 1 to 5 lazy), then a sixth: one of the five
            // turns eager again to keep the floor.
            for peer in 1..=5 {
                assert!(spread.on_prune(&id(peer), &mut rng).is_empty());
            }
            let restored = spread.on_prune(&id(6), &mut rng);
            assert_eq!(restored.len(), 1);
            assert_eq!(spread.link_counts(), (EAGER_FLOOR, 8 - EAGER_FLOOR));
            *promoted.entry(restored[0]).or_insert(0) += 1;
        }
        // Taken in table order, link 1 would be promoted every time.
        assert_eq!(promoted.len(), 5, "{promoted:?}");
        assert!(promoted.values().all(|count| *count >= 20), "{promoted:?}");
    }

    #[test]
    fn new_records_go_eager_in_full_and_lazy_as_batched_announcements() {
        let mut spread = chosen(3);
        spread.on_prune(&id(3), &mut rng());
        // From neighbour 1, by origin 9: pushed to 2, announced to 3.
        let targets = spread.targets(holding(9, 1), Some(id(1)), 0);
        assert_eq!(targets.eager, vec![id(2)]);
        assert!(targets.announced);
        // A record of neighbour 3's own is not announced back to it.
        spread.targets(holding(3, 4), None, 1);
        spread.targets(holding(9, 2), None, 2);
        spread.targets(holding(7, 1), None, 2);
        // Neighbour 3 pushed or announced origin 7's record: it is not told.
        spread.note_holder(id(3), &id(7), 1);
        assert!(spread.take_announcements(4).is_empty(), "not due yet");
        assert_eq!(spread.next_deadline(), Some(5));
        let due = spread.take_announcements(5);
        assert_eq!(due, vec![(id(3), vec![holding(9, 2)])]);
        assert!(spread.take_announcements(100).is_empty());
    }

    #[test]
    fn an_announced_record_is_grafted_from_each_announcer_in_turn() {
        let mut spread = spread();
        spread.choose(id(1));
        spread.on_prune(&id(1), &mut rng());
        assert!(spread.on_announced(id(1), &holding(9, 3), 0));
        assert!(spread.on_announced(id(2), &holding(9, 3), 10));
        assert_eq!(spread.next_deadline(), Some(100));
        assert!(spread.take_grafts(99, |_, _| true).is_empty());
        assert!(!spread.eager_path_alive(100), "no push brought news");
        assert_eq!(
            spread.take_grafts(100, |_, _| true),
            vec![(id(1), vec![id(9)])]
        );
        assert!(spread.is_eager(&id(1)), "a graft turns the link eager");
        assert_eq!(
            spread.take_grafts(150, |_, _| true),
            vec![(id(2), vec![id(9)])]
        );
        // No announcer left: forgotten, anti-entropy repairs it.
        assert!(spread.take_grafts(200, |_, _| true).is_empty());
        assert_eq!(spread.awaited_count(), 0);
    }

    #[test]
    fn a_late_record_is_awaited_once_more_then_asked_without_changing_links_while_pushes_bring_news(
    ) {
        let mut spread = chosen(4);
        spread.on_prune(&id(4), &mut rng());
        assert!(!spread.is_eager(&id(4)));
        assert!(spread.on_announced(id(4), &holding(9, 3), 0));
        // Neighbour 1 pushed another record that was news, 50 ms ago.
        assert!(!spread.on_push(id(1), true, false, 50));
        assert!(spread.eager_path_alive(100));
        assert!(
            spread.take_grafts(100, |_, _| true).is_empty(),
            "pushes bring news: the record is on its way, wait once more"
        );
        assert_eq!(spread.awaited_count(), 1);
        assert!(!spread.on_push(id(1), true, false, 150));
        assert!(spread.take_grafts(199, |_, _| true).is_empty());
        assert_eq!(
            spread.take_grafts(200, |_, _| true),
            vec![(id(4), vec![id(9)])],
            "asked after the second wait"
        );
        assert!(
            !spread.is_eager(&id(4)),
            "the eager path works: the record is only late"
        );
        assert!(!spread.eager_path_alive(250), "a graft timeout of silence");
    }

    #[test]
    fn a_record_awaited_once_more_is_grafted_when_pushes_have_stopped() {
        let mut spread = chosen(4);
        spread.on_prune(&id(4), &mut rng());
        assert!(spread.on_announced(id(4), &holding(9, 3), 0));
        assert!(!spread.on_push(id(1), true, false, 50));
        assert!(spread.take_grafts(100, |_, _| true).is_empty());
        // No push since: by the second due time the eager path is quiet.
        assert_eq!(
            spread.take_grafts(200, |_, _| true),
            vec![(id(4), vec![id(9)])]
        );
        assert!(spread.is_eager(&id(4)), "a quiet path is mended");
        // Put off once only: the next announcer is asked half a timeout later
        // even while pushes bring news.
        assert!(spread.on_announced(id(3), &holding(9, 3), 210));
        assert!(!spread.on_push(id(1), true, false, 240));
        assert_eq!(
            spread.take_grafts(250, |_, _| true),
            vec![(id(3), vec![id(9)])]
        );
    }

    #[test]
    fn only_the_first_ask_is_put_off() {
        let mut spread = chosen(4);
        spread.on_prune(&id(4), &mut rng());
        spread.on_prune(&id(3), &mut rng());
        assert!(spread.on_announced(id(4), &holding(9, 3), 0));
        assert!(spread.on_announced(id(3), &holding(9, 3), 10));
        // The path is quiet at the first due time: asked at once.
        assert_eq!(
            spread.take_grafts(100, |_, _| true),
            vec![(id(4), vec![id(9)])]
        );
        // Pushes bring news again: the next announcer is still asked half a
        // timeout later, not put off.
        assert!(!spread.on_push(id(1), true, false, 120));
        assert!(spread.eager_path_alive(150));
        assert_eq!(
            spread.take_grafts(150, |_, _| true),
            vec![(id(3), vec![id(9)])]
        );
    }

    #[test]
    fn a_record_that_arrives_is_not_grafted() {
        let mut spread = spread();
        spread.on_announced(id(1), &holding(9, 3), 0);
        spread.received(&id(9), 2);
        assert_eq!(
            spread.awaited_count(),
            1,
            "an older record does not settle it"
        );
        spread.received(&id(9), 3);
        assert_eq!(spread.awaited_count(), 0);
        spread.on_announced(id(1), &holding(8, 3), 0);
        assert!(spread.take_grafts(500, |_, _| false).is_empty());
        assert_eq!(spread.awaited_count(), 0);
    }

    #[test]
    fn inbound_neighbours_are_bounded_and_dropped_peers_forgotten() {
        let mut spread = spread();
        for peer in 1..=10 {
            assert_eq!(spread.on_graft(id(peer)), peer <= 6);
        }
        assert_eq!(
            spread.neighbours().count(),
            6,
            "twice as many inbound as chosen"
        );
        spread.choose(id(20));
        assert_eq!(spread.wanted(), 2);
        spread.on_announced(id(1), &holding(9, 1), 0);
        spread.drop_peer(&id(1));
        assert!(!spread.is_neighbour(&id(1)));
        assert_eq!(spread.awaited_count(), 0);
        spread.retain(|peer| *peer != id(20));
        assert_eq!(spread.wanted(), 3);
        spread.choose(id(21));
        spread.on_leave(&id(21), 0);
        assert!(!spread.is_neighbour(&id(21)));
        assert!(spread.refused(&id(21), REFUSAL_MS - 1));
        assert!(!spread.refused(&id(21), REFUSAL_MS));
    }
}
