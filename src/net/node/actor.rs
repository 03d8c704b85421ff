//! The actor: the one task that owns a node's [`State`].
//!
//! It feeds the state one input at a time (a command, a network event, a
//! timeout) and then acts on every output in order ([`Actor::drain`]). The
//! durability contract of [`Output::Persist`] is kept here: the node's own record
//! is written to the store, the audit entries before it are handed to the audit
//! writer, and both are synced (in parallel, off the async runtime) before the
//! actor acts on any later output — before a single byte of it is queued for a
//! peer, before a subscriber hears of it, and before the command that signed it
//! is answered. A record that fails to become durable stops the node.
//!
//! Audit entries are handed to the writer thread without blocking the runtime:
//! when the writer's queue is full the actor waits on a blocking task, which is
//! the backpressure that reaches the network (see `links`).
//!
//! Time: every input is stamped with [`NodeTime`], the wall clock read once at
//! start plus monotonic time. The actor warns once when the system clock has
//! moved away from it, and when peers' clocks are far from it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;
use tidings_audit::{
    AuditWriter, EntryKind, Full, NewEntry, SledStore, TryAppendError, WriterHandle,
};
use tidings_keys::{NodeId, Roster};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tracing::{debug, error, info, warn};

use super::client::{Command as ClientCommand, Health, Signing};
use super::inbox::{Frame, Inbox};
use super::links::{Departure, Links, NetEvent};
use super::metrics::{Latency, NodeStats};
use super::startup::Notes;
use super::NodeError;
use crate::net::clock::NodeTime;
use crate::net::lock::DataDirLock;
use crate::net::store::DirectoryStore;
use crate::net::tls::SharedRoster;
use crate::proto::clock::WARN_OFFSET_MS;
use crate::proto::codec::{DecodeError, Field};
use crate::proto::event::{ChainStatus, DirectoryChange, Halt, Output, PublishError};
use crate::proto::roster::{Received, SignError, SignedOp};
use crate::proto::state::{Command, State};
use crate::proto::VerifiedRecord;
use crate::recording::coalesce::Coalescer;
use crate::recording::entry_for;

/// How often the rest of the store (other origins' records) is synced.
const STORE_FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Most frames handled in a row while a timer is due.
const MAX_FRAMES_BEFORE_TIMERS: u32 = 64;

/// Everything the actor starts with.
pub(super) struct Parts {
    pub(super) state: State,
    pub(super) time: NodeTime,
    pub(super) links: Links,
    pub(super) events: mpsc::Receiver<NetEvent>,
    pub(super) writer: AuditWriter<SledStore>,
    pub(super) store: DirectoryStore,
    pub(super) changes: broadcast::Sender<DirectoryChange>,
    pub(super) health: watch::Sender<Health>,
    /// The roster the TLS verifiers admit; replaced when the roster changes.
    pub(super) roster: SharedRoster,
    pub(super) lock: DataDirLock,
}

type Reply = oneshot::Sender<Result<VerifiedRecord, PublishError>>;

/// Where the answer to a roster command goes.
pub(super) type RosterReply = oneshot::Sender<Result<Box<(SignedOp, Received)>, SignError>>;

pub(super) struct Actor {
    pub(super) state: State,
    time: NodeTime,
    rng: StdRng,
    pub(super) links: Links,
    events: Option<mpsc::Receiver<NetEvent>>,
    writer: Option<AuditWriter<SledStore>>,
    audit: WriterHandle,
    store: DirectoryStore,
    store_dirty: bool,
    changes: broadcast::Sender<DirectoryChange>,
    health: watch::Sender<Health>,
    roster: SharedRoster,
    pub(super) latency: Latency,
    /// Who waits for the answer of the roster command being handled.
    pub(super) roster_reply: Option<RosterReply>,
    /// Audit entries of the current drain, not yet handed to the writer.
    pending: Vec<NewEntry>,
    /// Counts floods of repeated entries.
    coalescer: Coalescer,
    /// Who waits for the answer of the command being handled.
    reply: Option<Reply>,
    pub(super) persisted: u64,
    pub(super) persist_seconds: f64,
    /// Messages handed to the links, by kind.
    sent: std::collections::BTreeMap<&'static str, u64>,
    /// The audit head last written to the store.
    recorded_head: Option<(u64, [u8; 32])>,
    wall_step_warned: bool,
    /// When each peer was last heard from directly (a connection up, a frame).
    pub(super) heard: std::collections::HashMap<tidings_keys::NodeId, u64>,
    /// Set once the node has left: it stops when its last frames are out.
    leaving: Option<Instant>,
    _lock: DataDirLock,
}

/// After leaving, the longest wait for the frames that carry the final record
/// to leave the send queues.
const LEAVE_GRACE: Duration = Duration::from_secs(3);

/// After leaving, once the send queues are empty: time for QUIC to deliver
/// what it holds before the endpoint closes.
const LEAVE_LINGER: Duration = Duration::from_millis(300);

impl Actor {
    pub(super) fn new(parts: Parts) -> Self {
        let audit = parts.writer.handle();
        Self {
            state: parts.state,
            time: parts.time,
            rng: StdRng::from_entropy(),
            links: parts.links,
            events: Some(parts.events),
            writer: Some(parts.writer),
            audit,
            store: parts.store,
            store_dirty: false,
            changes: parts.changes,
            health: parts.health,
            roster: parts.roster,
            latency: Latency::default(),
            roster_reply: None,
            pending: Vec::new(),
            coalescer: Coalescer::default(),
            reply: None,
            persisted: 0,
            persist_seconds: 0.0,
            sent: Default::default(),
            recorded_head: None,
            wall_step_warned: false,
            heard: std::collections::HashMap::new(),
            leaving: None,
            _lock: parts.lock,
        }
    }

    /// Says what startup repaired (log, health, audit) and where signing stands.
    pub(super) fn report_startup(&mut self, notes: &Notes) {
        for warning in &notes.warnings {
            warn!("{warning}");
        }
        let now = self.time.now_ms();
        self.pending
            .extend(notes.entries.iter().cloned().map(|mut entry| {
                entry.at_ms = now;
                entry
            }));
        self.update_health(|health| health.startup_warnings = notes.warnings.clone());
        let status = self.state.chain_status();
        if !matches!(status, ChainStatus::Known) {
            self.chain_status(status);
        }
    }

    pub(super) async fn run(
        mut self,
        mut commands: mpsc::Receiver<ClientCommand>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), NodeError> {
        let Some(mut events) = self.events.take() else {
            return Err(NodeError::Stopped);
        };
        let inbox = self.links.inbox();
        let mut flush = tokio::time::interval(STORE_FLUSH_EVERY);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut result = self.drain().await;
        let mut flush_armed = false;
        let mut frames_in_a_row = 0;
        while result.is_ok() {
            // The store flush ticks only while there is something to sync: an
            // idle node does not wake for it. Armed anew, it ticks a period later.
            let flush_wanted = self.flush_wanted();
            if flush_wanted && !flush_armed {
                flush.reset();
            }
            flush_armed = flush_wanted;
            let wait =
                Duration::from_millis(self.state.poll_timeout().saturating_sub(self.time.now_ms()));
            if wait.is_zero() && !*shutdown.borrow() {
                // Frames already queued go first, up to MAX_FRAMES_BEFORE_TIMERS
                // in a row: under load a graft timer otherwise fired while the
                // record it awaited sat in the inbox (at 64 processes on two
                // cores, with this rule the grafts per node fell from 91-104
                // to 50-59 over interleaved bench net runs).
                if frames_in_a_row < MAX_FRAMES_BEFORE_TIMERS {
                    if let Some((from, frame)) = inbox.try_take() {
                        frames_in_a_row += 1;
                        result = self.frame(from, frame).await;
                        continue;
                    }
                }
                // Due now (a publication at start, a round): before any command
                // or network event.
                frames_in_a_row = 0;
                result = self.timeout().await;
                tokio::task::yield_now().await;
                continue;
            }
            // Biased: a stop overtakes queued input, and timers are never starved
            // by a busy network. Commands, network events and frames are then
            // served fairly, so neither a busy API nor a busy network starves the
            // other (and the inbox serves peers in turn).
            if let Some(since) = self.leaving {
                let drained = self.links.queued_bytes() == 0;
                if since.elapsed() >= LEAVE_GRACE || (drained && since.elapsed() >= LEAVE_LINGER) {
                    info!("left the directory: stopping");
                    break;
                }
            }
            let wait = match self.leaving {
                Some(_) => wait.min(Duration::from_millis(50)),
                None => wait,
            };
            result = tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                _ = tokio::time::sleep(wait) => self.timeout().await,
                _ = flush.tick(), if flush_wanted => self.flush_store().await,
                input = next_input(&mut commands, &mut events, &inbox) => match input {
                    Some(Input::Command(command)) => self.command(command).await,
                    Some(Input::Event(event)) => self.event(event).await,
                    Some(Input::Frame(from, frame)) => self.frame(from, frame).await,
                    None => break,
                },
            };
        }
        if let Err(error) = &result {
            error!(%error, "the node stops");
        }
        let stopped = self.stop().await;
        result.and(stopped)
    }

    /// Flushes and closes everything, each step even if an earlier one failed;
    /// returns the first failure.
    async fn stop(mut self) -> Result<(), NodeError> {
        let counted = self.coalescer.flush_all(self.time.now_ms());
        self.pending.extend(counted);
        let handed = self.hand_over_audit().await;
        let writer = match self.writer.take() {
            Some(writer) => tokio::task::spawn_blocking(move || writer.shutdown())
                .await
                .map_err(|error| NodeError::Audit(error.to_string()))
                .and_then(|shut| shut.map(drop).map_err(|e| NodeError::Audit(e.to_string()))),
            None => Ok(()),
        };
        let synced = self.sync_store().await;
        self.links.close().await;
        info!(node = %self.state.node_id(), "node stopped");
        handed.and(writer).and(synced)
    }

    async fn timeout(&mut self) -> Result<(), NodeError> {
        let now = self.time.now_ms();
        self.watch_wall_clock();
        self.state.handle_timeout(now, &mut self.rng);
        self.drain().await
    }

    async fn command(&mut self, command: ClientCommand) -> Result<(), NodeError> {
        let now = self.time.now_ms();
        let (command, reply) = match command {
            ClientCommand::Announce(specialist, reply) => (Command::Announce(specialist), reply),
            ClientCommand::Withdraw(name, reply) => (Command::Withdraw(name), reply),
            ClientCommand::Leave(reply) => {
                let (inner, answer) = oneshot::channel();
                self.reply = Some(inner);
                self.state
                    .handle_command(Command::Leave, now, &mut self.rng);
                let drained = self.drain().await;
                let result = answer.await.unwrap_or(Err(PublishError::Recovering));
                if result.is_ok() {
                    info!("left: every specialist withdrawn; stopping once the record is out");
                    self.leaving = Some(Instant::now());
                }
                let _ = reply.send(result);
                return drained;
            }
            ClientCommand::Reload(owned, configured, reply) => {
                let Some(current) = self.state.announcement().cloned() else {
                    let _ = reply.send(Err(PublishError::Recovering));
                    return Ok(());
                };
                let specialists =
                    super::configured::apply(&current.specialists, &owned, &configured);
                // Compared as signed (sorted), so a file whose specialists did not
                // change publishes nothing.
                let unchanged = crate::proto::Announcement {
                    addrs: current.addrs.clone(),
                    specialists: specialists.clone(),
                }
                .canonical();
                if unchanged.specialists == current.clone().canonical().specialists {
                    let _ = reply.send(Ok(None));
                    return Ok(());
                }
                let (inner, answer) = oneshot::channel();
                self.reply = Some(inner);
                self.state.handle_command(
                    Command::Publish(crate::proto::Announcement {
                        addrs: current.addrs,
                        specialists,
                    }),
                    now,
                    &mut self.rng,
                );
                let drained = self.drain().await;
                let result = answer.await.unwrap_or(Err(PublishError::Recovering));
                let _ = reply.send(result.map(Some));
                return drained;
            }
            ClientCommand::Probe(peers, reply) => {
                for peer in peers {
                    if peer == self.state.node_id() {
                        continue;
                    }
                    if let Some(addr) = self.address_of(&peer) {
                        self.links.probe(peer, addr);
                    }
                }
                let _ = reply.send(());
                return Ok(());
            }
            ClientCommand::Lookup(query, reply) => {
                let _ = reply.send(self.lookup(&query));
                return Ok(());
            }
            ClientCommand::Stats(reply) => {
                let _ = reply.send(self.stats());
                return Ok(());
            }
            ClientCommand::Members(reply) => {
                let _ = reply.send(self.members(now));
                return Ok(());
            }
            ClientCommand::Record(origin, reply) => {
                let record = self.state.directory().entry(&origin);
                let _ = reply.send(record.map(|entry| entry.record.clone()));
                return Ok(());
            }
            ClientCommand::Roster(reply) => {
                let _ = reply.send(self.roster_view());
                return Ok(());
            }
            ClientCommand::RosterExport(reply) => {
                let ledger = self.state.ledger();
                let ops: Vec<_> = ledger.chain().iter().map(|op| op.op().clone()).collect();
                let _ = reply.send(crate::proto::roster::export_chain(ledger.genesis(), &ops));
                return Ok(());
            }
            ClientCommand::Govern(command, reply) => {
                self.roster_reply = Some(reply);
                self.state
                    .handle_roster_command(command, now, &mut self.rng);
                return self.drain().await;
            }
        };
        self.reply = Some(reply);
        self.state.handle_command(command, now, &mut self.rng);
        self.drain().await
    }

    async fn frame(&mut self, from: NodeId, frame: Frame) -> Result<(), NodeError> {
        let now = self.time.now_ms();
        self.heard.insert(from, now);
        self.latency.answered(&from);
        self.state
            .handle_checked_frame(from, &frame.bytes, frame.checked, now, &mut self.rng);
        self.drain().await
    }

    async fn event(&mut self, event: NetEvent) -> Result<(), NodeError> {
        let now = self.time.now_ms();
        match event {
            NetEvent::BadFrame { from, reason } => {
                let error = DecodeError::Invalid {
                    field: Field::Frame,
                    reason,
                };
                self.state.handle_bad_frame(from, error, now);
            }
            NetEvent::DialFailed(peer) => {
                self.links.forget(&peer);
                self.state.handle_dial_failed(peer, now, &mut self.rng);
            }
            NetEvent::Disconnected { peer, why } => {
                let peer_name = self.name_of(&peer);
                match why {
                    Departure::ClosedHere => {
                        debug!(peer = %peer_name, "connection down: {}", why.as_str())
                    }
                    // Refused until the peer applies the operation that admits
                    // this node (said once, at startup): not news each retry.
                    _ if !self.admitted() => debug!(
                        peer = %peer_name,
                        "connection down: {} (this node is not admitted yet)",
                        why.as_str()
                    ),
                    _ => info!(peer = %peer_name, "connection down: {}", why.as_str()),
                }
            }
            NetEvent::Connected { peer, inbound } => {
                if !self.state.directory().roster().contains(&peer) {
                    // TLS checks the roster in every handshake; a key off the
                    // roster here means that check was bypassed: close it.
                    warn!(peer = %peer, "a connection with a key off the roster: closed");
                    self.links.close_removed(&peer);
                    return Ok(());
                }
                self.heard.insert(peer, now);
                let direction = if inbound { "inbound" } else { "outbound" };
                if self.admitted() {
                    info!(peer = %self.name_of(&peer), direction, "connection up");
                } else {
                    debug!(peer = %self.name_of(&peer), direction, "connection up");
                }
                if inbound {
                    // The peer may have restarted: its next frames go over this
                    // connection, through a fresh link.
                    self.links.forget(&peer);
                    self.state.handle_connected(&peer);
                    self.record(connection_entry(
                        now,
                        EntryKind::ConnectionAccepted,
                        Some(peer),
                        "mutual TLS with a roster key".into(),
                    ));
                }
            }
            NetEvent::Misdirected {
                peer,
                addr,
                answered,
            } => self.misdirected(peer, addr, answered, now),
            NetEvent::Refused(refusal) => {
                // A roster key refused is an offence kept for the record; a key
                // off the roster (or none) costs its sender nothing to make, so
                // its refusals are routine.
                let member = refusal
                    .presented
                    .is_some_and(|key| self.state.directory().roster().contains(&key));
                let kind = if member {
                    EntryKind::ConnectionRefused
                } else {
                    EntryKind::StrangerRefused
                };
                self.record(connection_entry(
                    now,
                    kind,
                    refusal.presented,
                    refusal.reason,
                ))
            }
        }
        self.drain().await
    }

    /// A dial to `peer` at `addr` reached another node: the address is to blame,
    /// and so whatever listed it (the peer's own record, or the bootstrap list);
    /// never the node that answered. The dial failure backs the peer off.
    fn misdirected(&mut self, peer: NodeId, addr: SocketAddr, answered: Option<NodeId>, now: u64) {
        let answered = answered.map_or_else(|| "an unknown key".to_string(), |id| id.to_string());
        let listed_by_record = self.state.directory().entry(&peer).and_then(|entry| {
            let record = &entry.record;
            record
                .record()
                .addrs
                .iter()
                .any(|listed| listed.parse::<SocketAddr>().ok() == Some(addr))
                .then(|| (record.id(), record.seq()))
        });
        let (record, reason) = match listed_by_record {
            Some((id, seq)) => (
                Some(crate::recording::record_key(&id)),
                format!(
                    "{peer}'s record seq {seq} lists {addr}, where {answered} answered: the \
                     record's address is wrong"
                ),
            ),
            None => (
                None,
                format!(
                    "the bootstrap list puts {peer} at {addr}, where {answered} answered: the \
                     bootstrap entry is wrong"
                ),
            ),
        };
        warn!(peer = %peer, %addr, answered = %answered, "a dial reached another node: {reason}");
        self.record(NewEntry {
            at_ms: now,
            kind: EntryKind::Misdirected,
            peer: Some(peer),
            origin: Some(peer),
            record,
            reason,
            evidence: None,
        });
    }

    /// Acts on every output of the state, in order (see the module docs).
    async fn drain(&mut self) -> Result<(), NodeError> {
        let now = self.time.now_ms();
        while let Some(output) = self.state.poll_output() {
            match output {
                Output::Persist { record, jump_owed } => {
                    self.persist_own(&record, jump_owed).await?
                }
                Output::Send { to, message } => {
                    *self.sent.entry(message.name()).or_default() += 1;
                    let addr = self.address_of(&to);
                    let keep_alive = self.keeps_alive(&to);
                    self.links.send(to, message.encode(), addr, keep_alive);
                }
                Output::ExchangeOpened { peer } => self.latency.opened(peer),
                Output::Audit(event) => {
                    if let Some(entry) = entry_for(&event, now) {
                        self.record(entry);
                    }
                }
                Output::Change(change) => self.change(change),
                Output::CommandResult(result) => match self.reply.take() {
                    Some(reply) => {
                        let _ = reply.send(result);
                    }
                    None => {
                        if let Err(error) = result {
                            debug!(%error, "publication not made");
                        }
                    }
                },
                Output::ChainStatus(status) => self.chain_status(status),
                Output::ClockOffset { offset_ms, warning } => {
                    self.clock_offset(offset_ms, warning, now)
                }
                Output::Disconnect { peer, until_ms } => {
                    let ban = Duration::from_millis(until_ms.saturating_sub(now));
                    self.links.ban(&peer, ban);
                }
                Output::PersistVote { epoch, id } => {
                    self.store.put_vote(epoch, &id.0)?;
                    self.sync_now().await?;
                }
                Output::PersistRosterOp(op) => {
                    self.store.put_roster_op(op.epoch(), &op.op().encode())?;
                    self.sync_now().await?;
                }
                Output::PersistRosterFork(proof) => {
                    error!(
                        epoch = proof.epoch(),
                        "two valid roster operations exist for one epoch: roster changes stop \
                         until the operators agree on a new genesis"
                    );
                    self.store.put_roster_fork(&proof.encode())?;
                    self.sync_now().await?;
                }
                Output::RosterChanged {
                    epoch,
                    roster,
                    added,
                    removed,
                } => self.roster_changed(epoch, &roster, &added, &removed),
                Output::RosterResult(result) => {
                    if let Some(reply) = self.roster_reply.take() {
                        let _ = reply.send(result);
                    }
                }
            }
        }
        self.hand_over_audit().await
    }

    /// Makes the store and the audit entries so far durable before going on
    /// (roster votes and operations: see the durability contract).
    async fn sync_now(&mut self) -> Result<(), NodeError> {
        self.hand_over_audit().await?;
        let store = self.store.clone();
        let audit = self.audit.clone();
        let failed = |error: String| NodeError::Durability(error);
        let (store_synced, audit_synced) = tokio::join!(
            tokio::task::spawn_blocking(move || store.flush()),
            tokio::task::spawn_blocking(move || audit.flush()),
        );
        store_synced
            .map_err(|error| failed(error.to_string()))?
            .map_err(|error| failed(error.to_string()))?;
        audit_synced
            .map_err(|error| failed(error.to_string()))?
            .map_err(|error| failed(error.to_string()))?;
        Ok(())
    }

    /// Admits the new roster in TLS at once and closes removed keys' connections.
    fn roster_changed(
        &mut self,
        epoch: u64,
        roster: &Roster,
        added: &[NodeId],
        removed: &[NodeId],
    ) {
        // Removed keys are named by the labels they had.
        let before = self
            .roster
            .read()
            .map(|old| old.clone())
            .unwrap_or_default();
        if let Ok(mut shared) = self.roster.write() {
            *shared = roster.clone();
        }
        for peer in removed {
            self.links.close_removed(peer);
        }
        let names = |ids: &[NodeId], roster: &Roster| -> String {
            ids.iter()
                .map(|id| match roster.label(id) {
                    Some(label) => format!("{label} ({})", id.short()),
                    None => id.to_string(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        info!(
            epoch,
            members = roster.len(),
            added = %names(added, roster),
            removed = %names(removed, &before),
            "roster changed"
        );
    }

    /// Makes `record` durable as the node's own, with every audit entry before it,
    /// and whether a jump of its chain is still owed (the store's recovering mark:
    /// set before the record is written, cleared after, so a torn sync errs on
    /// the side of recovering again).
    async fn persist_own(
        &mut self,
        record: &VerifiedRecord,
        jump_owed: bool,
    ) -> Result<(), NodeError> {
        let started = Instant::now();
        let failed = |error: String| NodeError::Durability(error);
        if jump_owed {
            self.store
                .mark_recovering()
                .map_err(|error| failed(error.to_string()))?;
        }
        self.store
            .put_own(record.wire_bytes())
            .map_err(|error| failed(error.to_string()))?;
        if !jump_owed {
            self.store
                .clear_recovering()
                .map_err(|error| failed(error.to_string()))?;
        }
        self.sync_now().await?;
        self.persisted += 1;
        self.persist_seconds += started.elapsed().as_secs_f64();
        let (index, hash) = self.audit.durable_head();
        self.store.put_audit_head(index, &hash)?;
        self.recorded_head = Some((index, hash));
        self.store_dirty = true;
        Ok(())
    }

    /// Queues `entry` for the audit log, unless it repeats a flood and is only
    /// counted (see [`coalesce`](crate::recording::coalesce)).
    fn record(&mut self, entry: NewEntry) {
        let admitted = self.coalescer.admit(entry);
        // Offences are logged as the audit log gets them: a flood of
        // penalties is a count there, and so here.
        for entry in &admitted {
            self.log_offence(entry);
        }
        self.pending.extend(admitted);
    }

    /// Hands the pending audit entries to the writer; waits (off the runtime) when
    /// its queue is full.
    async fn hand_over_audit(&mut self) -> Result<(), NodeError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let entries = std::mem::take(&mut self.pending);
        let refused = match self.audit.try_append_batch(entries) {
            Ok(()) => return Ok(()),
            Err(TryAppendError::Full(Full(entries))) => {
                let audit = self.audit.clone();
                match tokio::task::spawn_blocking(move || audit.append_batch(entries)).await {
                    Ok(Ok(())) => return Ok(()),
                    Ok(Err(error)) => error.to_string(),
                    Err(error) => error.to_string(),
                }
            }
            Err(TryAppendError::Closed(error)) => error.to_string(),
        };
        warn!(error = %refused, "audit log unavailable");
        Err(NodeError::Audit(refused))
    }

    /// Whether [`Actor::flush_store`] has anything to do, now or once the audit
    /// writer catches up.
    fn flush_wanted(&self) -> bool {
        self.store_dirty
            || !self.pending.is_empty()
            || !self.coalescer.is_idle()
            || self.audit.lag() > 0
            || self.audit.durable_index() != self.audit.written_index()
            || self.recorded_head.map(|(index, _)| index) != Some(self.audit.durable_index())
    }

    /// Syncs the rest of the store, with the audit log's durable head.
    /// Syncs the store when it changed, or when the audit log's durable head
    /// moved (so the head the store remembers never lags far behind the log).
    async fn flush_store(&mut self) -> Result<(), NodeError> {
        let closed = self.coalescer.flush(self.time.now_ms());
        self.pending.extend(closed);
        self.hand_over_audit().await?;
        let head = self.audit.durable_head();
        if !self.store_dirty && self.recorded_head == Some(head) {
            return Ok(());
        }
        self.sync_store().await?;
        self.store_dirty = false;
        Ok(())
    }

    /// Records the audit log's durable head in the store and syncs the store, off
    /// the runtime.
    async fn sync_store(&mut self) -> Result<(), NodeError> {
        let (index, hash) = self.audit.durable_head();
        self.store.put_audit_head(index, &hash)?;
        self.recorded_head = Some((index, hash));
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.flush())
            .await
            .map_err(|error| NodeError::Audit(error.to_string()))??;
        Ok(())
    }

    fn change(&mut self, change: DirectoryChange) {
        log_change(&change, self.state.directory().roster());
        let result = match &change {
            DirectoryChange::LeftRoster(record) => self.store.remove_record(&record.origin()),
            DirectoryChange::Pardoned { origin, .. } => self.store.remove_proof(origin),
            DirectoryChange::Added(record) | DirectoryChange::Updated { record, .. } => {
                self.store.put_record(&record.origin(), record.wire_bytes())
            }
            DirectoryChange::Expired(record) => self.store.remove_record(&record.origin()),
            DirectoryChange::Quarantined { origin, proof } => {
                self.store.put_proof(origin, &proof.encode())
            }
        };
        match result {
            Ok(()) => self.store_dirty = true,
            Err(error) => warn!(%error, "cannot persist a directory change"),
        }
        let _ = self.changes.send(change);
    }

    fn chain_status(&mut self, status: ChainStatus) {
        let (signing, problem, foreign, quarantined) = match &status {
            ChainStatus::Known => (Signing::Ok, None, false, false),
            ChainStatus::Recovering => (
                Signing::Recovering,
                Some(PublishError::Recovering.to_string()),
                false,
                false,
            ),
            ChainStatus::Halted(halt) => (
                Signing::Halted,
                Some(halt.to_string()),
                matches!(halt, Halt::ForeignSigner(_)),
                matches!(halt, Halt::Quarantined(_)),
            ),
        };
        match &status {
            ChainStatus::Known => info!(
                "this node's own chain is recovered: it signed above everything it found, \
                 and signs again"
            ),
            ChainStatus::Recovering => warn!("{}", PublishError::Recovering),
            ChainStatus::Halted(halt) => error!("{halt}"),
        }
        self.update_health(|health| {
            health.signing = signing;
            health.problem = problem;
            health.foreign_signer = foreign;
            health.quarantined = quarantined;
        });
    }

    fn clock_offset(&mut self, offset_ms: i64, warning: bool, now: u64) {
        let seconds = offset_ms as f64 / 1000.0;
        let reason = if warning {
            let direction = if offset_ms < 0 { "ahead of" } else { "behind" };
            warn!(
                offset_seconds = seconds,
                "this node's clock is {:.0} s {direction} its peers': records will look \
                 expired or future-dated; fix the system clock and restart the node",
                seconds.abs()
            );
            format!(
                "clock {:.1} s {direction} the peers' (median)",
                seconds.abs()
            )
        } else {
            info!(
                offset_seconds = seconds,
                "this node's clock agrees with its peers' again"
            );
            format!("clock within {:.1} s of the peers' again", seconds.abs())
        };
        self.record(connection_entry(now, EntryKind::ClockOffset, None, reason));
        self.update_health(|health| {
            health.clock_offset_ms = Some(offset_ms);
            health.clock_warning = warning;
        });
    }

    /// Follows the system clock forward when peers agree the node is behind (the
    /// machine was suspended, or its clock was set late after the node started);
    /// never backward. Otherwise warns once that the clock moved.
    fn watch_wall_clock(&mut self) {
        let step = self.time.wall_step_ms();
        let offset = self.state.clock_offset_ms();
        let peers_agree = offset.is_some_and(|offset| offset > WARN_OFFSET_MS as i64);
        if step > WARN_OFFSET_MS as i64 && peers_agree {
            self.time.advance(step.unsigned_abs());
            info!(
                forward_seconds = step as f64 / 1000.0,
                "the system clock and this node's peers are ahead of this node's time: it \
                 moves forward to follow them (the machine was suspended, or its clock was \
                 set after the node started)"
            );
            return;
        }
        self.update_health(|health| {
            health.wall_clock_step_ms = step;
            if !health.clock_warning {
                health.clock_offset_ms = offset;
            }
        });
        if step.unsigned_abs() > WARN_OFFSET_MS && !self.wall_step_warned {
            self.wall_step_warned = true;
            warn!(
                step_seconds = step as f64 / 1000.0,
                "the system clock moved by {:.0} s since this node started; the node keeps \
                 counting from its start and is not affected; restart it to adopt the new time",
                step as f64 / 1000.0
            );
        }
    }

    fn update_health(&self, change: impl FnOnce(&mut Health)) {
        self.health.send_if_modified(|health| {
            let before = health.clone();
            change(health);
            *health != before
        });
    }

    /// Whether a dial to `peer` keeps its connection open while idle: a chosen
    /// spreading neighbour's, and every dial of a node that publishes no address
    /// (behind NAT: the peer cannot dial back).
    fn keeps_alive(&self, peer: &NodeId) -> bool {
        self.state.chose_neighbour(peer)
            || self
                .state
                .own_record()
                .is_some_and(|record| record.record().addrs.is_empty())
    }

    /// A peer as logs name it: its roster label and short id, or its id.
    /// A peer's offence, in the operator's log by roster label (the audit log
    /// keeps the details; this says what needs a look).
    fn log_offence(&self, entry: &NewEntry) {
        let Some(peer) = entry.peer else {
            return;
        };
        let reason = entry.reason.as_str();
        match entry.kind {
            EntryKind::Banned => warn!(peer = %self.name_of(&peer), reason, "peer banned"),
            EntryKind::Penalised => info!(peer = %self.name_of(&peer), reason, "peer penalised"),
            EntryKind::Rejected | EntryKind::ProofRejected => {
                info!(peer = %self.name_of(&peer), reason, "refused what a peer sent")
            }
            _ => {}
        }
    }

    pub(super) fn name_of(&self, peer: &NodeId) -> String {
        match self.state.directory().roster().label(peer) {
            Some(label) => format!("{label} ({})", peer.short()),
            None => peer.to_string(),
        }
    }

    /// Whether this node's key is on the roster it holds.
    fn admitted(&self) -> bool {
        self.state
            .directory()
            .roster()
            .contains(&self.state.node_id())
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
        from_record.or_else(|| self.links.bootstrap_address(peer))
    }

    fn stats(&self) -> NodeStats {
        let directory = self.state.directory();
        let counters = self.state.counters();
        let traffic = self.links.traffic();
        let mut stats = NodeStats {
            records: directory.len(),
            quarantined: directory.quarantined().count(),
            verdicts: counters
                .verdicts
                .iter()
                .map(|(kind, count)| (kind.as_str().to_string(), *count))
                .collect(),
            connections: self.links.connected().len(),
            bytes_sent: traffic.sent.load(std::sync::atomic::Ordering::Relaxed),
            bytes_received: traffic.received.load(std::sync::atomic::Ordering::Relaxed),
            exchanges: counters.exchanges_opened,
            links: self.state.link_counts(),
            grafts: counters.grafts,
            pushes_pruned: counters.pushes_pruned,
            audit_entries: self.audit.written_index(),
            audit_lag: self.audit.lag(),
            persisted: self.persisted,
            persist_seconds: self.persist_seconds,
            inbox_bytes: self.links.inbox().bytes(),
            frames_over_budget: counters.frames_flooded,
            send_queue_bytes: self.links.queued_bytes(),
            send_queue_dropped: self.links.dropped,
            signature_checks: directory.signature_checks(),
            messages_sent: self
                .sent
                .iter()
                .map(|(kind, count)| (kind.to_string(), *count))
                .collect(),
            ..NodeStats::default()
        };
        self.latency.fill(&mut stats);
        stats
    }
}

/// One input for the actor.
enum Input {
    Command(ClientCommand),
    Event(NetEvent),
    Frame(NodeId, Frame),
}

/// The next command, network event or frame, whichever is ready, chosen at
/// random when several are; `None` when the node's handles are gone.
async fn next_input(
    commands: &mut mpsc::Receiver<ClientCommand>,
    events: &mut mpsc::Receiver<NetEvent>,
    inbox: &Inbox,
) -> Option<Input> {
    tokio::select! {
        command = commands.recv() => command.map(Input::Command),
        Some(event) = events.recv() => Some(Input::Event(event)),
        (from, bytes) = inbox.take() => Some(Input::Frame(from, bytes)),
    }
}

fn connection_entry(at_ms: u64, kind: EntryKind, peer: Option<NodeId>, reason: String) -> NewEntry {
    NewEntry {
        at_ms,
        kind,
        peer,
        origin: None,
        record: None,
        reason,
        evidence: None,
    }
}

fn log_change(change: &DirectoryChange, roster: &Roster) {
    let names = |record: &VerifiedRecord| -> String {
        let names: Vec<&str> = record
            .record()
            .specialists
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        names.join(",")
    };
    let label = |origin: &NodeId| -> String {
        match roster.label(origin) {
            Some(label) => format!("{label} ({})", origin.short()),
            None => origin.to_string(),
        }
    };
    match change {
        DirectoryChange::Added(record) | DirectoryChange::Updated { record, .. } => {
            info!(origin = %label(&record.origin()), seq = record.seq(), specialists = %names(record), "record accepted");
        }
        DirectoryChange::Expired(record) => {
            info!(origin = %label(&record.origin()), seq = record.seq(), "record expired")
        }
        DirectoryChange::Quarantined { origin, .. } => {
            warn!(origin = %label(origin), "origin quarantined for equivocation")
        }
        DirectoryChange::LeftRoster(record) => {
            info!(origin = %record.origin(), seq = record.seq(), "record dropped: its origin left the roster")
        }
        DirectoryChange::Pardoned { origin, above_seq } => {
            info!(origin = %label(origin), above_seq, "quarantine lifted by a roster pardon")
        }
    }
}
