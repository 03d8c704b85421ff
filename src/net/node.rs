//! The node: one actor task owns the protocol [`State`]; network tasks feed it
//! frames; it drains every output after each input.
//!
//! ```text
//!  accept task ─┐                         ┌─▶ link task per peer ─▶ QUIC streams
//!  reader tasks ├─▶ events ─▶ actor(State) ├─▶ audit writer thread (sled)
//!  handle calls ┘            (only clock)  ├─▶ directory store (sled)
//!                                          └─▶ subscribers (broadcast)
//! ```
//!
//! The actor is the only place that reads the clock. Nothing else touches the
//! state; links and readers only move bytes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::SeedableRng;
use tidings_audit::{AuditConfig, AuditLog, AuditWriter, EntryKind, NewEntry, SledStore};
use tidings_keys::{FederationId, Identity, NodeId, Roster};
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::{debug, info, warn};

use super::store::DirectoryStore;
use super::tls::Refusal;
use super::transport::{self, NetError, Transport};
use crate::proto::directory::DirectoryConfig;
use crate::proto::event::{AuditEvent, DirectoryChange, Output};
use crate::proto::membership::member_list;
use crate::proto::state::{announcement_of, GossipConfig, PublishError, State};
use crate::proto::{Announcement, EquivocationProof, RecordId, Specialist, VerifiedRecord};

/// Everything a node needs to run.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Where the audit log and the directory store live.
    pub data_dir: PathBuf,
    /// The node's key.
    pub identity: Arc<Identity>,
    /// The federation's name.
    pub federation: String,
    /// The admitted keys.
    pub roster: Roster,
    /// The UDP address to listen on.
    pub listen: SocketAddr,
    /// Addresses to put in this node's record (empty: behind NAT). `None`: the
    /// bound address.
    pub advertise: Option<Vec<String>>,
    /// Peers to contact first, with their addresses.
    pub bootstrap: Vec<(NodeId, SocketAddr)>,
    /// Gossip parameters.
    pub gossip: GossipConfig,
    /// Audit checkpoints and retention.
    pub audit: AuditConfig,
    /// The specialists this node announces at start.
    pub specialists: Vec<Specialist>,
}

/// Why a node could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Network setup failed.
    #[error("{0}")]
    Net(#[from] NetError),
    /// The audit log could not be opened or written.
    #[error("audit log: {0}")]
    Audit(String),
    /// The directory store failed.
    #[error("{0}")]
    Store(#[from] super::store::StoreError),
    /// The data directory could not be created.
    #[error("cannot create the data directory {path}: {error}")]
    DataDir {
        path: PathBuf,
        error: std::io::Error,
    },
    /// This node's own key is not on the roster it was given.
    #[error("this node's key {0} is not on the roster; add it there (tidings init writes a roster with it)")]
    NotOnRoster(NodeId),
    /// The node has stopped.
    #[error("the node has stopped")]
    Stopped,
    /// A publication was refused.
    #[error("{0}")]
    Publish(#[from] PublishError),
}

/// A specialist found by a lookup.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FoundSpecialist {
    /// Who announces it.
    pub origin: NodeId,
    /// The record it is in.
    pub record: RecordId,
    /// The specialist.
    pub specialist: Specialist,
}

/// What to look up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lookup {
    /// Only specialists with this capability.
    pub capability: Option<String>,
    /// Only specialists with this name.
    pub name: Option<String>,
}

/// One admitted member as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Member {
    /// Its id.
    pub id: NodeId,
    /// Its roster label.
    pub label: Option<String>,
    /// Its current record, if any: seq and id.
    pub seq: Option<u64>,
    /// The record id.
    pub record: Option<RecordId>,
    /// The addresses its record lists.
    pub addrs: Vec<String>,
    /// Specialists it announces.
    pub specialists: usize,
    /// Whether it is quarantined for equivocation.
    pub quarantined: bool,
    /// Whether this node has banned it.
    pub banned: bool,
    /// Whether a connection to it is open.
    pub connected: bool,
    /// Whether it is this node.
    pub this_node: bool,
}

/// Upper bounds (ms) of the exchange latency histogram buckets.
pub const LATENCY_BUCKETS_MS: [u64; 11] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500];

/// Counters and gauges for metrics.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct NodeStats {
    /// Records held.
    pub records: usize,
    /// Origins quarantined.
    pub quarantined: usize,
    /// Verdicts reached, by kind.
    pub verdicts: Vec<(String, u64)>,
    /// Open connections.
    pub connections: usize,
    /// Frame bytes sent.
    pub bytes_sent: u64,
    /// Frame bytes received.
    pub bytes_received: u64,
    /// Exchanges opened.
    pub exchanges: u64,
    /// Exchange latency: counts per bucket of [`LATENCY_BUCKETS_MS`] (cumulative
    /// counts are computed by the exporter), plus the overflow bucket.
    pub latency_buckets: Vec<u64>,
    /// Sum of observed latencies, seconds.
    pub latency_sum_seconds: f64,
    /// Audit entries written.
    pub audit_entries: u64,
    /// Audit entries queued but not yet written.
    pub audit_lag: u64,
}

#[derive(Debug, Default)]
struct Traffic {
    sent: std::sync::atomic::AtomicU64,
    received: std::sync::atomic::AtomicU64,
}

enum Command {
    Stats(oneshot::Sender<NodeStats>),
    Members(oneshot::Sender<Vec<Member>>),
    Announce(
        Specialist,
        oneshot::Sender<Result<VerifiedRecord, PublishError>>,
    ),
    Withdraw(
        String,
        oneshot::Sender<Result<VerifiedRecord, PublishError>>,
    ),
    Lookup(Lookup, oneshot::Sender<Vec<FoundSpecialist>>),
    Record(NodeId, oneshot::Sender<Option<VerifiedRecord>>),
    Shutdown,
}

enum NetEvent {
    Frame { from: NodeId, bytes: Vec<u8> },
    BadFrame { from: NodeId, reason: &'static str },
    DialFailed(NodeId),
    Connected { peer: NodeId, inbound: bool },
    Refused(Refusal),
}

/// A cloneable way to talk to a running node (what the HTTP API holds).
#[derive(Debug, Clone)]
pub struct NodeClient {
    node_id: NodeId,
    local_addr: SocketAddr,
    federation: FederationId,
    commands: mpsc::Sender<Command>,
    changes: broadcast::Sender<DirectoryChange>,
    audit_db: sled::Db,
    audit_path: PathBuf,
}

/// A running node: its client, and the task to wait for or shut down.
#[derive(Debug)]
pub struct NodeHandle {
    client: NodeClient,
    task: Option<tokio::task::JoinHandle<Result<(), NodeError>>>,
}

impl std::ops::Deref for NodeHandle {
    type Target = NodeClient;

    fn deref(&self) -> &NodeClient {
        &self.client
    }
}

/// Starts nodes.
#[derive(Debug)]
pub struct Node;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

type Connections = Arc<Mutex<HashMap<NodeId, quinn::Connection>>>;

impl Node {
    /// Opens the data directory, binds the endpoint, restores the directory, and
    /// starts the node (within a tokio runtime).
    pub async fn spawn(config: NodeConfig) -> Result<NodeHandle, NodeError> {
        if !config.roster.contains(&config.identity.node_id()) {
            return Err(NodeError::NotOnRoster(config.identity.node_id()));
        }
        std::fs::create_dir_all(&config.data_dir).map_err(|error| NodeError::DataDir {
            path: config.data_dir.clone(),
            error,
        })?;
        let federation = FederationId::from_name(&config.federation);
        let roster = Arc::new(RwLock::new(config.roster.clone()));
        let transport = Transport::bind(&config.identity, roster, config.listen)?;
        let local_addr = transport.local_addr().unwrap_or(config.listen);
        let audit_path = config.data_dir.join("audit");
        let audit_store =
            SledStore::open(&audit_path).map_err(|e| NodeError::Audit(e.to_string()))?;
        let writer_db = audit_store.db().clone();
        let log = AuditLog::open(
            audit_store,
            config.identity.clone(),
            federation,
            config.audit,
        )
        .map_err(|e| NodeError::Audit(e.to_string()))?;
        let writer = AuditWriter::spawn(log, 8192).map_err(|e| NodeError::Audit(e.to_string()))?;
        let audit_db = writer_db.clone();
        let store = DirectoryStore::open(&config.data_dir.join("store"))?;
        let roster = Arc::new(config.roster.clone());
        let mut state = State::new(
            config.identity.clone(),
            DirectoryConfig::new(federation),
            config.gossip.clone(),
            roster.clone(),
            member_list(&roster),
            now_ms(),
        );
        restore(&mut state, &store, federation)?;
        state.add_bootstrap(config.bootstrap.iter().map(|(peer, _)| *peer));
        let (commands, command_rx) = mpsc::channel(256);
        let (events, event_rx) = mpsc::channel(4096);
        let (changes, _) = broadcast::channel(1024);
        let connections: Connections = Arc::default();
        let traffic = Arc::new(Traffic::default());
        tokio::spawn(accept_loop(
            transport.clone(),
            connections.clone(),
            events.clone(),
            traffic.clone(),
        ));
        let node_id = config.identity.node_id();
        let mut actor = Actor {
            state,
            transport,
            connections,
            events,
            links: HashMap::new(),
            writer: Some(writer),
            store,
            changes: changes.clone(),
            rng: StdRng::from_entropy(),
            bootstrap: config.bootstrap.iter().copied().collect(),
            store_dirty: false,
            traffic,
            opened: HashMap::new(),
            latency: vec![0; LATENCY_BUCKETS_MS.len() + 1],
            latency_sum: 0.0,
            roster_labels: config.roster.clone(),
            initial: None,
        };
        let mut announcement = Announcement {
            addrs: config
                .advertise
                .clone()
                .unwrap_or_else(|| vec![local_addr.to_string()]),
            specialists: config.specialists.clone(),
        };
        if let Some(own) = actor.state.own_record() {
            // Keep what was announced before the restart unless the config names specialists.
            if announcement.specialists.is_empty() {
                announcement.specialists = announcement_of(own).specialists;
            }
        }
        let now = now_ms();
        // Refuse an announcement peers would refuse, now rather than later.
        VerifiedRecord::sign(
            &config.identity,
            crate::proto::Record::first(
                federation,
                node_id,
                announcement.clone(),
                now,
                config.gossip.ttl_ms,
            ),
        )
        .map_err(|error| NodeError::Publish(PublishError::Invalid(error)))?;
        if actor.state.own_record().is_none() && !config.bootstrap.is_empty() {
            // Nothing of our own on disk: first hear from peers, who may hold our
            // latest record (a lost data directory), so the chain continues rather
            // than forks into a second seq 1.
            actor.initial = Some((announcement, now + 2 * config.gossip.interval_ms));
        } else {
            actor.state.publish(announcement, now, &mut actor.rng)?;
            actor.drain(now);
        }
        info!(node = %node_id, addr = %local_addr, "node started");
        let task = tokio::spawn(actor.run(command_rx, event_rx));
        Ok(NodeHandle {
            client: NodeClient {
                node_id,
                local_addr,
                federation,
                commands,
                changes,
                audit_db,
                audit_path,
            },
            task: Some(task),
        })
    }
}

fn restore(
    state: &mut State,
    store: &DirectoryStore,
    federation: FederationId,
) -> Result<(), NodeError> {
    let loaded = store.load()?;
    let now = now_ms();
    if let Some(own) = loaded
        .own
        .and_then(|bytes| VerifiedRecord::from_bytes(&bytes, Some(&federation)).ok())
    {
        state.restore_own(own, now);
    }
    let mut kept = 0;
    for (origin, bytes) in loaded.records {
        let verdict = VerifiedRecord::from_bytes(&bytes, Some(&federation))
            .map(|record| state.restore(record, now));
        match verdict {
            Ok(crate::proto::Verdict::Accepted { .. } | crate::proto::Verdict::Duplicate(_)) => {
                kept += 1
            }
            _ => store.remove_record(&origin)?,
        }
    }
    for bytes in loaded.proofs {
        if let Ok(proof) = EquivocationProof::decode(&bytes) {
            state.restore_proof(&proof);
        }
    }
    let _ = state.drain_outputs().count();
    debug!(records = kept, "directory restored");
    Ok(())
}

async fn accept_loop(
    transport: Transport,
    connections: Connections,
    events: mpsc::Sender<NetEvent>,
    traffic: Arc<Traffic>,
) {
    while let Some(result) = transport.accept().await {
        match result {
            Ok((peer, connection)) => {
                if let Ok(mut map) = connections.lock() {
                    map.insert(peer, connection.clone());
                }
                tokio::spawn(read_loop(peer, connection, events.clone(), traffic.clone()));
                if events
                    .send(NetEvent::Connected {
                        peer,
                        inbound: true,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(error) => {
                debug!(%error, "incoming connection failed");
            }
        }
        for refusal in transport.refusals() {
            warn!(presented = ?refusal.presented.map(|id| id.to_string()), reason = %refusal.reason, "handshake refused");
            if events.send(NetEvent::Refused(refusal)).await.is_err() {
                return;
            }
        }
    }
}

async fn read_loop(
    peer: NodeId,
    connection: quinn::Connection,
    events: mpsc::Sender<NetEvent>,
    traffic: Arc<Traffic>,
) {
    while let Ok(stream) = connection.accept_uni().await {
        let events = events.clone();
        let traffic = traffic.clone();
        tokio::spawn(async move {
            match transport::read_frame(stream).await {
                Ok(bytes) => {
                    traffic
                        .received
                        .fetch_add(bytes.len() as u64 + 4, std::sync::atomic::Ordering::Relaxed);
                    let _ = events.send(NetEvent::Frame { from: peer, bytes }).await;
                }
                Err(NetError::BadFrame(reason)) => {
                    debug!(peer = %peer, reason, "refused a frame");
                    let _ = events.send(NetEvent::BadFrame { from: peer, reason }).await;
                }
                Err(error) => debug!(peer = %peer, %error, "dropped a frame"),
            }
        });
    }
}

/// The open connection to `peer`, if any.
fn current(connections: &Connections, peer: &NodeId) -> Option<quinn::Connection> {
    connections
        .lock()
        .ok()
        .and_then(|map| map.get(peer).cloned())
        .filter(|connection| connection.close_reason().is_none())
}

/// Sends queued frames to one peer over its current connection (a newer inbound
/// connection replaces an older one), dialling it once if there is none.
async fn link_loop(
    peer: NodeId,
    addr: Option<SocketAddr>,
    transport: Transport,
    connections: Connections,
    events: mpsc::Sender<NetEvent>,
    mut frames: mpsc::Receiver<Vec<u8>>,
    traffic: Arc<Traffic>,
) {
    let mut dialled = false;
    while let Ok(Some(frame)) = tokio::time::timeout(Duration::from_secs(60), frames.recv()).await {
        let connection = match current(&connections, &peer) {
            Some(connection) => connection,
            None if !dialled => {
                dialled = true;
                let dialled = match addr {
                    Some(addr) => transport.dial(peer, addr).await,
                    None => Err(NetError::Stream("no known address".into())),
                };
                match dialled {
                    Ok(connection) => {
                        if let Ok(mut map) = connections.lock() {
                            map.insert(peer, connection.clone());
                        }
                        tokio::spawn(read_loop(
                            peer,
                            connection.clone(),
                            events.clone(),
                            traffic.clone(),
                        ));
                        let _ = events
                            .send(NetEvent::Connected {
                                peer,
                                inbound: false,
                            })
                            .await;
                        connection
                    }
                    Err(error) => {
                        debug!(peer = %peer, %error, "dial failed");
                        for refusal in transport.refusals() {
                            warn!(presented = ?refusal.presented.map(|id| id.to_string()), reason = %refusal.reason, "handshake refused");
                            let _ = events.send(NetEvent::Refused(refusal)).await;
                        }
                        let _ = events.send(NetEvent::DialFailed(peer)).await;
                        return;
                    }
                }
            }
            None => return,
        };
        traffic
            .sent
            .fetch_add(frame.len() as u64 + 4, std::sync::atomic::Ordering::Relaxed);
        if let Err(error) = transport::send_frame(&connection, &frame).await {
            debug!(peer = %peer, %error, "send failed");
            if let Ok(mut map) = connections.lock() {
                if map
                    .get(&peer)
                    .is_some_and(|c| c.stable_id() == connection.stable_id())
                {
                    map.remove(&peer);
                }
            }
            return;
        }
    }
}

struct Actor {
    state: State,
    transport: Transport,
    connections: Connections,
    events: mpsc::Sender<NetEvent>,
    links: HashMap<NodeId, mpsc::Sender<Vec<u8>>>,
    writer: Option<AuditWriter<SledStore>>,
    store: DirectoryStore,
    changes: broadcast::Sender<DirectoryChange>,
    rng: StdRng,
    bootstrap: HashMap<NodeId, SocketAddr>,
    store_dirty: bool,
    traffic: Arc<Traffic>,
    opened: HashMap<NodeId, std::time::Instant>,
    latency: Vec<u64>,
    latency_sum: f64,
    roster_labels: Roster,
    /// The first publication, held back until peers were heard (see `spawn`).
    initial: Option<(Announcement, u64)>,
}

impl Actor {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut events: mpsc::Receiver<NetEvent>,
    ) -> Result<(), NodeError> {
        let mut flush = tokio::time::interval(Duration::from_secs(1));
        loop {
            let now = now_ms();
            let deadline = match &self.initial {
                Some((_, at)) => self.state.poll_timeout().min(*at),
                None => self.state.poll_timeout(),
            };
            let wait = Duration::from_millis(deadline.saturating_sub(now));
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Shutdown) | None => break,
                    Some(command) => self.command(command),
                },
                Some(event) = events.recv() => self.event(event),
                _ = tokio::time::sleep(wait) => {
                    let now = now_ms();
                    if self.initial.as_ref().is_some_and(|(_, at)| now >= *at) {
                        self.publish_initial(now);
                    }
                    self.state.handle_timeout(now, &mut self.rng);
                }
                _ = flush.tick() => {
                    if self.store_dirty {
                        self.store.flush()?;
                        self.store_dirty = false;
                    }
                }
                _ = shutdown_signal() => break,
            }
            self.drain(now_ms());
        }
        self.stop().await
    }

    async fn stop(mut self) -> Result<(), NodeError> {
        self.links.clear();
        if let Some(writer) = self.writer.take() {
            writer
                .shutdown()
                .map_err(|e| NodeError::Audit(e.to_string()))?;
        }
        self.store.flush()?;
        self.transport.close();
        self.transport.wait_idle().await;
        info!(node = %self.state.node_id(), "node stopped");
        Ok(())
    }

    /// Publishes the held-back first announcement, continuing our own chain if a
    /// peer gave it back meanwhile.
    fn publish_initial(&mut self, now: u64) {
        let Some((mut announcement, _)) = self.initial.take() else {
            return;
        };
        if announcement.specialists.is_empty() {
            if let Some(own) = self.state.own_record() {
                announcement.specialists = announcement_of(own).specialists;
            }
        }
        if let Err(error) = self.state.publish(announcement, now, &mut self.rng) {
            warn!(%error, "the first publication failed");
        }
    }

    fn command(&mut self, command: Command) {
        let now = now_ms();
        if matches!(command, Command::Announce(..) | Command::Withdraw(..)) {
            self.publish_initial(now);
        }
        match command {
            Command::Announce(specialist, reply) => {
                let mut announcement = self.state.announcement().cloned().unwrap_or_default();
                announcement
                    .specialists
                    .retain(|s| s.name != specialist.name);
                announcement.specialists.push(specialist);
                let _ = reply.send(self.state.publish(announcement, now, &mut self.rng));
            }
            Command::Withdraw(name, reply) => {
                let _ = reply.send(self.state.withdraw(&name, now, &mut self.rng));
            }
            Command::Lookup(query, reply) => {
                let _ = reply.send(self.lookup(&query));
            }
            Command::Stats(reply) => {
                let _ = reply.send(self.stats());
            }
            Command::Members(reply) => {
                let _ = reply.send(self.members(now));
            }
            Command::Record(origin, reply) => {
                let _ = reply.send(
                    self.state
                        .directory()
                        .entry(&origin)
                        .map(|entry| entry.record.clone()),
                );
            }
            Command::Shutdown => {}
        }
    }

    fn stats(&self) -> NodeStats {
        let directory = self.state.directory();
        let counters = self.state.counters();
        let connections = self
            .connections
            .lock()
            .map(|map| map.values().filter(|c| c.close_reason().is_none()).count())
            .unwrap_or(0);
        NodeStats {
            records: directory.len(),
            quarantined: directory.quarantined().count(),
            verdicts: counters
                .verdicts
                .iter()
                .map(|(kind, count)| (kind.as_str().to_string(), *count))
                .collect(),
            connections,
            bytes_sent: self.traffic.sent.load(std::sync::atomic::Ordering::Relaxed),
            bytes_received: self
                .traffic
                .received
                .load(std::sync::atomic::Ordering::Relaxed),
            exchanges: counters.exchanges_opened,
            latency_buckets: self.latency.clone(),
            latency_sum_seconds: self.latency_sum,
            audit_entries: self.writer.as_ref().map(|w| w.written_index()).unwrap_or(0),
            audit_lag: self.writer.as_ref().map(|w| w.lag()).unwrap_or(0),
        }
    }

    fn members(&self, now: u64) -> Vec<Member> {
        let directory = self.state.directory();
        let connected: Vec<NodeId> = self
            .connections
            .lock()
            .map(|map| map.keys().copied().collect())
            .unwrap_or_default();
        self.roster_labels
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

    fn observe_reply(&mut self, from: &NodeId) {
        if let Some(opened) = self.opened.remove(from) {
            let elapsed = opened.elapsed();
            let ms = elapsed.as_millis() as u64;
            let bucket = LATENCY_BUCKETS_MS
                .iter()
                .position(|&bound| ms <= bound)
                .unwrap_or(LATENCY_BUCKETS_MS.len());
            self.latency[bucket] += 1;
            self.latency_sum += elapsed.as_secs_f64();
        }
    }

    fn lookup(&self, query: &Lookup) -> Vec<FoundSpecialist> {
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

    fn event(&mut self, event: NetEvent) {
        let now = now_ms();
        match event {
            NetEvent::Frame { from, bytes } => {
                self.observe_reply(&from);
                self.state.handle_frame(from, &bytes, now, &mut self.rng);
            }
            NetEvent::BadFrame { from, reason } => {
                let error = crate::proto::codec::DecodeError::Invalid {
                    field: crate::proto::codec::Field::Frame,
                    reason,
                };
                self.state.report_bad_frame(from, error, now);
            }
            NetEvent::DialFailed(peer) => {
                self.links.remove(&peer);
                self.state.dial_failed(peer, now, &mut self.rng);
            }
            NetEvent::Connected { peer, inbound } => {
                debug!(peer = %peer, inbound, "connected");
                if inbound {
                    // The peer may have restarted: its next frames go over this
                    // connection, through a fresh link.
                    self.links.remove(&peer);
                    self.state.reached(&peer);
                }
                if inbound {
                    self.audit(vec![NewEntry {
                        at_ms: now,
                        kind: EntryKind::ConnectionAccepted,
                        peer: Some(peer),
                        origin: None,
                        record: None,
                        reason: "mutual TLS with a roster key".into(),
                        evidence: None,
                    }]);
                }
            }
            NetEvent::Refused(refusal) => self.audit(vec![NewEntry {
                at_ms: now,
                kind: EntryKind::ConnectionRefused,
                peer: refusal.presented,
                origin: None,
                record: None,
                reason: refusal.reason,
                evidence: None,
            }]),
        }
    }

    fn audit(&self, entries: Vec<NewEntry>) {
        if let Some(writer) = &self.writer {
            if let Err(error) = writer.append_batch(entries) {
                warn!(%error, "audit log unavailable");
            }
        }
    }

    fn address_of(&self, peer: &NodeId) -> Option<SocketAddr> {
        let from_record = self.state.directory().entry(peer).and_then(|entry| {
            entry
                .record
                .record()
                .addrs
                .iter()
                .find_map(|addr| addr.parse::<SocketAddr>().ok())
        });
        from_record.or_else(|| self.bootstrap.get(peer).copied())
    }

    fn send(&mut self, to: NodeId, frame: Vec<u8>) {
        if let Some(link) = self.links.get(&to) {
            match link.try_send(frame) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(_)) => return, // anti-entropy repairs drops
                Err(mpsc::error::TrySendError::Closed(returned)) => {
                    self.links.remove(&to);
                    return self.send(to, returned);
                }
            }
        }
        let (sender, receiver) = mpsc::channel(256);
        let _ = sender.try_send(frame);
        let addr = self.address_of(&to);
        tokio::spawn(link_loop(
            to,
            addr,
            self.transport.clone(),
            self.connections.clone(),
            self.events.clone(),
            receiver,
            self.traffic.clone(),
        ));
        self.links.insert(to, sender);
    }

    fn drain(&mut self, now: u64) {
        let outputs: Vec<Output> = self.state.drain_outputs().collect();
        let mut entries = Vec::new();
        for output in outputs {
            match output {
                Output::Send { to, message } => {
                    let opening = matches!(&message, crate::proto::wire::Message::Sync(ranges)
                        if ranges.len() == 1 && ranges[0].prefix == crate::proto::wire::Prefix::ROOT);
                    if opening {
                        self.opened
                            .entry(to)
                            .or_insert_with(std::time::Instant::now);
                    }
                    self.send(to, message.encode());
                }
                Output::Audit(event) => {
                    if let AuditEvent::Published(record) = &event {
                        if self.store.put_own(record.wire_bytes()).is_ok() {
                            self.store_dirty = true;
                        }
                    }
                    entries.extend(crate::recording::entry_for(&event, now));
                }
                Output::Change(change) => {
                    log_change(&change);
                    self.persist(&change);
                    let _ = self.changes.send(change);
                }
                Output::Disconnect { peer, .. } => {
                    self.links.remove(&peer);
                    if let Some(connection) = self
                        .connections
                        .lock()
                        .ok()
                        .and_then(|mut map| map.remove(&peer))
                    {
                        connection.close(1u32.into(), b"banned");
                    }
                }
                Output::CommandFailed(error) => debug!(%error, "command failed"),
            }
        }
        if !entries.is_empty() {
            self.audit(entries);
        }
    }

    fn persist(&mut self, change: &DirectoryChange) {
        let result = match change {
            DirectoryChange::Added(record) | DirectoryChange::Updated { record, .. } => {
                self.store.put_record(&record.origin(), record.wire_bytes())
            }
            DirectoryChange::Expired(record) => self.store.remove_record(&record.origin()),
            DirectoryChange::Quarantined { origin } => match self.state.directory().proof(origin) {
                Some(proof) => self.store.put_proof(origin, &proof.encode()),
                None => self.store.remove_record(origin),
            },
        };
        match result {
            Ok(()) => self.store_dirty = true,
            Err(error) => warn!(%error, "cannot persist a directory change"),
        }
    }
}

fn log_change(change: &DirectoryChange) {
    let names = |record: &VerifiedRecord| -> String {
        let names: Vec<&str> = record
            .record()
            .specialists
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        names.join(",")
    };
    match change {
        DirectoryChange::Added(record) | DirectoryChange::Updated { record, .. } => {
            info!(origin = %record.origin(), seq = record.seq(), specialists = %names(record), "record accepted");
        }
        DirectoryChange::Expired(record) => {
            info!(origin = %record.origin(), seq = record.seq(), "record expired")
        }
        DirectoryChange::Quarantined { origin } => {
            warn!(origin = %origin, "origin quarantined for equivocation")
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut terminate) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

impl NodeClient {
    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NodeError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| NodeError::Stopped)?;
        answer.await.map_err(|_| NodeError::Stopped)
    }

    /// Adds (or replaces, by name) a specialist and publishes the new record.
    pub async fn announce(&self, specialist: Specialist) -> Result<VerifiedRecord, NodeError> {
        Ok(self
            .ask(|reply| Command::Announce(specialist, reply))
            .await??)
    }

    /// Withdraws a specialist by name and publishes the new record.
    pub async fn withdraw(&self, name: &str) -> Result<VerifiedRecord, NodeError> {
        let name = name.to_string();
        Ok(self.ask(|reply| Command::Withdraw(name, reply)).await??)
    }

    /// Specialists in this node's directory.
    pub async fn lookup(&self, query: Lookup) -> Result<Vec<FoundSpecialist>, NodeError> {
        self.ask(|reply| Command::Lookup(query, reply)).await
    }

    /// The current record of `origin`.
    pub async fn record(&self, origin: NodeId) -> Result<Option<VerifiedRecord>, NodeError> {
        self.ask(|reply| Command::Record(origin, reply)).await
    }

    /// A stream of directory changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<DirectoryChange> {
        self.changes.subscribe()
    }

    /// The federation this node belongs to.
    pub fn federation(&self) -> FederationId {
        self.federation
    }

    /// Counters and gauges.
    pub async fn stats(&self) -> Result<NodeStats, NodeError> {
        self.ask(Command::Stats).await
    }

    /// Every admitted member, as this node sees it.
    pub async fn members(&self) -> Result<Vec<Member>, NodeError> {
        self.ask(Command::Members).await
    }

    /// A read-only view of this node's audit log (what the writer has written).
    pub fn audit_log(&self) -> Result<AuditLog<SledStore>, NodeError> {
        AuditLog::open_read_only(SledStore::from_db(self.audit_db.clone(), &self.audit_path))
            .map_err(|error| NodeError::Audit(error.to_string()))
    }
}

impl NodeHandle {
    /// A cloneable client of this node.
    pub fn client(&self) -> NodeClient {
        self.client.clone()
    }

    /// Stops the node: flushes the audit log (with a final checkpoint) and the store.
    pub async fn shutdown(mut self) -> Result<(), NodeError> {
        let _ = self.client.commands.send(Command::Shutdown).await;
        match self.task.take() {
            Some(task) => task.await.map_err(|_| NodeError::Stopped)?,
            None => Ok(()),
        }
    }

    /// Waits until the node stops by itself (a signal).
    pub async fn wait(mut self) -> Result<(), NodeError> {
        match self.task.take() {
            Some(task) => task.await.map_err(|_| NodeError::Stopped)?,
            None => Ok(()),
        }
    }
}
