//! What the rest of the program holds of a running node: a cloneable
//! [`NodeClient`] (the API's), the [`NodeHandle`] that also stops it, and the
//! views they return.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tidings_audit::{AuditLog, SledStore, WriterHandle};
use tidings_keys::{FederationId, NodeId};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tracing::debug;

use super::metrics::NodeStats;
use super::NodeError;
use crate::net::socket::SocketClosed;
use crate::proto::roster::{Action, Received, RosterHash, SignedOp};
use crate::proto::state::RosterCommand;
use crate::proto::{DirectoryChange, PublishError, RecordId, Specialist, VerifiedRecord};

/// A specialist found by a lookup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FoundSpecialist {
    /// Who announces it.
    pub origin: NodeId,
    /// The record it is in.
    pub record: RecordId,
    /// The specialist.
    pub specialist: Specialist,
    /// What this node knows of the origin's reachability.
    #[serde(flatten)]
    pub reach: Reach,
}

/// What a node knows of whether another is reachable.
///
/// A node is `live` to this one when it is this node or a connection with it
/// is open now. Connections close after the transport's idle timeout without
/// traffic, so a live lookup first dials the origins it is not connected to
/// (see [`NodeClient::lookup`]); a node that stopped is not connected within
/// one idle timeout, at once if it stopped cleanly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Reach {
    /// Whether a connection with it is open now (always true of this node).
    pub connected: bool,
    /// When this node last heard from it directly (a connection or a frame),
    /// Unix milliseconds; absent if never since this node started.
    #[serde(deserialize_with = "Option::deserialize")]
    pub last_heard_ms: Option<u64>,
}

/// How long a live lookup waits for the origins it dials.
pub const PROBE_WAIT: std::time::Duration = std::time::Duration::from_millis(1500);

/// What to look up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lookup {
    /// Only specialists with this capability.
    pub capability: Option<String>,
    /// Only specialists with this name.
    pub name: Option<String>,
    /// Only specialists of origins connected now (see [`Reach`]).
    pub live: bool,
}

/// One admitted member as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Member {
    /// Its id.
    pub id: NodeId,
    /// Its roster label.
    #[serde(deserialize_with = "Option::deserialize")]
    pub label: Option<String>,
    /// Its current record, if any: seq and id.
    #[serde(deserialize_with = "Option::deserialize")]
    pub seq: Option<u64>,
    /// The record id.
    #[serde(deserialize_with = "Option::deserialize")]
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
    /// When this node last heard from it directly, Unix milliseconds.
    #[serde(deserialize_with = "Option::deserialize")]
    pub last_heard_ms: Option<u64>,
    /// Whether it is this node.
    pub this_node: bool,
}

/// Whether the node may sign its own records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Signing {
    /// It knows its latest record and signs above it.
    #[default]
    Ok,
    /// It lost its history and waits for peers before signing.
    Recovering,
    /// It must not sign (see the problem).
    Halted,
}

/// What a node reports about itself beyond counters: whether it can sign, how
/// its clock compares, and what startup repaired.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Health {
    /// Whether it may sign.
    pub signing: Signing,
    /// Why not, when it may not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// Another process signs with this node's key.
    pub foreign_signer: bool,
    /// This node's key is quarantined.
    pub quarantined: bool,
    /// Peers' clocks minus this node's (median), once a peer was heard.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clock_offset_ms: Option<i64>,
    /// Whether that offset is beyond the warning threshold.
    pub clock_warning: bool,
    /// How far the system clock moved from the node's time since it started.
    pub wall_clock_step_ms: i64,
    /// What startup found damaged or missing and repaired.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub startup_warnings: Vec<String>,
}

pub(super) enum Command {
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
    Leave(oneshot::Sender<Result<VerifiedRecord, PublishError>>),
    /// The names the file owned, and its specialists now.
    Reload(
        BTreeSet<String>,
        Vec<Specialist>,
        oneshot::Sender<Result<Option<VerifiedRecord>, PublishError>>,
    ),
    Probe(Vec<NodeId>, oneshot::Sender<()>),
    Record(NodeId, oneshot::Sender<Option<VerifiedRecord>>),
    Roster(oneshot::Sender<RosterView>),
    RosterExport(oneshot::Sender<String>),
    Govern(RosterCommand, super::actor::RosterReply),
}

/// The roster as this node holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RosterView {
    /// The federation.
    pub federation: FederationId,
    /// The genesis id: which chain.
    pub genesis: RosterHash,
    /// The current epoch.
    pub epoch: u64,
    /// The id of the current state.
    pub head: RosterHash,
    /// The threshold rule (`two-thirds` or a number).
    pub threshold: String,
    /// Approvals an operation needs now.
    pub needed: usize,
    /// The members, in id order.
    pub members: Vec<RosterMember>,
    /// Open proposals.
    pub pending: Vec<ProposalView>,
    /// Applied operations, epoch 1 first.
    pub chain: Vec<OpView>,
    /// Two operations for one epoch, if found: roster changes have stopped.
    #[serde(deserialize_with = "Option::deserialize")]
    pub fork: Option<ForkView>,
    /// What this node signed, per epoch.
    pub votes: Vec<(u64, RosterHash)>,
    /// Quarantined members and the highest seq in the proof against each (what
    /// a pardon's `above_seq` must cover).
    pub quarantined: Vec<(NodeId, u64)>,
}

/// A member of the roster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RosterMember {
    /// Its key.
    pub id: NodeId,
    /// Its label.
    #[serde(deserialize_with = "Option::deserialize")]
    pub label: Option<String>,
}

/// A roster operation, open or applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OpView {
    /// Its id.
    pub id: RosterHash,
    /// The epoch it makes.
    pub epoch: u64,
    /// What it does (`add`, `remove`, ...).
    pub action: String,
    /// What it does, in words.
    pub summary: String,
    /// Who proposed it.
    pub proposer: NodeId,
    /// Who approved it.
    pub approvals: Vec<NodeId>,
    /// When it was proposed, and when it expires unapproved.
    pub issued_at_ms: u64,
    /// Expiry of the proposal.
    pub expires_at_ms: u64,
}

impl OpView {
    /// The view of `op`.
    pub fn of(op: &SignedOp) -> Self {
        Self {
            id: op.id(),
            epoch: op.body.epoch,
            action: op.body.action.name().to_string(),
            summary: op.body.action.to_string(),
            proposer: op.body.proposer,
            approvals: op.approvals.iter().map(|a| a.signer).collect(),
            issued_at_ms: op.body.issued_at_ms,
            expires_at_ms: op.body.expires_at_ms,
        }
    }
}

/// An open proposal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProposalView {
    /// The operation.
    #[serde(flatten)]
    pub op: OpView,
    /// Approvals it needs.
    pub needed: usize,
    /// Whether this node approved it.
    pub approved_here: bool,
    /// Whether this node signed another operation for its epoch (and so cannot
    /// approve this one).
    pub voted_otherwise: bool,
}

/// A roster fork.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ForkView {
    /// The epoch.
    pub epoch: u64,
    /// The two operations.
    pub ops: [RosterHash; 2],
    /// Members who approved both.
    pub double_signers: Vec<NodeId>,
}

/// A cloneable way to talk to a running node (what the HTTP API holds).
#[derive(Debug, Clone)]
pub struct NodeClient {
    node_id: NodeId,
    local_addr: SocketAddr,
    federation: FederationId,
    commands: mpsc::Sender<Command>,
    changes: broadcast::Sender<DirectoryChange>,
    health: watch::Receiver<Health>,
    audit_db: sled::Db,
    audit_path: PathBuf,
    audit_writer: WriterHandle,
    data_dir: PathBuf,
    /// The names of the specialists the configuration file owns (see
    /// `configured`); held across a reload.
    configured: Arc<tokio::sync::Mutex<BTreeSet<String>>>,
}

impl NodeClient {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        node_id: NodeId,
        local_addr: SocketAddr,
        federation: FederationId,
        commands: mpsc::Sender<Command>,
        changes: broadcast::Sender<DirectoryChange>,
        health: watch::Receiver<Health>,
        audit_db: sled::Db,
        audit_writer: WriterHandle,
        data_dir: PathBuf,
        configured: BTreeSet<String>,
    ) -> Self {
        Self {
            node_id,
            local_addr,
            federation,
            commands,
            changes,
            health,
            audit_db,
            audit_path: data_dir.join("audit"),
            audit_writer,
            data_dir,
            configured: Arc::new(tokio::sync::Mutex::new(configured)),
        }
    }

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

    /// Adds (or replaces, by name) a specialist and publishes the new record. The
    /// answer comes once the record is durable.
    ///
    /// This does not refuse a specialist the configuration file owns (the HTTP
    /// API does, see [`Self::is_configured`]): a program that embeds the node
    /// may replace it, until the next reload of the file.
    pub async fn announce(&self, specialist: Specialist) -> Result<VerifiedRecord, NodeError> {
        Ok(self
            .ask(|reply| Command::Announce(specialist, reply))
            .await??)
    }

    /// Withdraws a specialist by name and publishes the new record (durable when
    /// answered).
    pub async fn withdraw(&self, name: &str) -> Result<VerifiedRecord, NodeError> {
        let name = name.to_string();
        Ok(self.ask(|reply| Command::Withdraw(name, reply)).await??)
    }

    /// Whether the configuration file owns the specialist `name`: the HTTP API
    /// refuses to withdraw or replace it.
    pub async fn is_configured(&self, name: &str) -> bool {
        self.configured.lock().await.contains(name)
    }

    /// Applies the configuration file's specialists anew (after an edit): a
    /// block added is announced, one changed updated, one removed withdrawn;
    /// what the API announced stays. The new record once durable, or none when
    /// nothing changed.
    pub async fn reload_specialists(
        &self,
        specialists: Vec<Specialist>,
    ) -> Result<Option<VerifiedRecord>, NodeError> {
        let mut configured = self.configured.lock().await;
        let owned = configured.clone();
        let names = super::configured::names(&specialists);
        let record = self
            .ask(|reply| Command::Reload(owned, specialists, reply))
            .await??;
        super::configured::write(&self.data_dir, &names).map_err(|error| NodeError::DataDir {
            path: self.data_dir.join(super::configured::FILE),
            reason: error.to_string(),
        })?;
        *configured = names;
        Ok(record)
    }

    /// Specialists in this node's directory.
    ///
    /// A live lookup (`query.live`) first dials the origins of the matches
    /// that no connection is open with, and waits up to [`PROBE_WAIT`] for
    /// them to answer: an origin idle for a while is live when it answers, one
    /// that stopped is not.
    pub async fn lookup(&self, query: Lookup) -> Result<Vec<FoundSpecialist>, NodeError> {
        if !query.live {
            return self.ask(|reply| Command::Lookup(query, reply)).await;
        }
        let unreached = |found: &[FoundSpecialist]| -> Vec<NodeId> {
            let mut origins: Vec<NodeId> = found
                .iter()
                .filter(|found| !found.reach.connected)
                .map(|found| found.origin)
                .collect();
            origins.sort();
            origins.dedup();
            origins
        };
        let every = Lookup {
            live: false,
            ..query.clone()
        };
        let found = self
            .ask(|reply| Command::Lookup(every.clone(), reply))
            .await?;
        let mut waiting = unreached(&found);
        if !waiting.is_empty() {
            self.ask(|reply| Command::Probe(waiting.clone(), reply))
                .await?;
            let deadline = tokio::time::Instant::now() + PROBE_WAIT;
            while !waiting.is_empty() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                let found = self
                    .ask(|reply| Command::Lookup(every.clone(), reply))
                    .await?;
                let still = unreached(&found);
                waiting.retain(|origin| still.contains(origin));
            }
        }
        self.ask(|reply| Command::Lookup(query, reply)).await
    }

    /// Leaves the directory: publishes a record that withdraws every specialist
    /// (durable when answered); the node then stops as soon as the frames that
    /// carry it are out (at most a few seconds).
    pub async fn leave(&self) -> Result<VerifiedRecord, NodeError> {
        Ok(self.ask(Command::Leave).await??)
    }

    /// The current record of `origin`.
    pub async fn record(&self, origin: NodeId) -> Result<Option<VerifiedRecord>, NodeError> {
        self.ask(|reply| Command::Record(origin, reply)).await
    }

    /// The roster: members, chain, open proposals, votes.
    pub async fn roster(&self) -> Result<RosterView, NodeError> {
        self.ask(Command::Roster).await
    }

    /// The roster chain as an export (see [`crate::proto::roster::export_chain`]).
    pub async fn roster_export(&self) -> Result<String, NodeError> {
        self.ask(Command::RosterExport).await
    }

    /// Proposes `action` for the next epoch, approved by this node (durable when
    /// answered).
    pub async fn propose(
        &self,
        action: Action,
        countersignature: Option<tidings_keys::Signature>,
        lifetime_ms: u64,
    ) -> Result<(SignedOp, Received), NodeError> {
        let command = RosterCommand::Propose {
            action,
            countersignature,
            lifetime_ms,
        };
        let answer = self.ask(|reply| Command::Govern(command, reply)).await??;
        Ok(*answer)
    }

    /// Approves an open proposal (durable when answered).
    pub async fn approve(&self, id: RosterHash) -> Result<(SignedOp, Received), NodeError> {
        let answer = self
            .ask(|reply| Command::Govern(RosterCommand::Approve(id), reply))
            .await??;
        Ok(*answer)
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

    /// Whether the node can sign, its clock, and what startup repaired. Answered
    /// without waiting for the node's actor, so it works while the node is busy.
    pub fn health(&self) -> Health {
        self.health.borrow().clone()
    }

    /// Waits until the node knows its own chain and may sign (a node that lost
    /// its history, or starts fresh with bootstrap peers, first hears its peers);
    /// returns the health then, which says if it must not sign at all.
    pub async fn ready(&self) -> Result<Health, NodeError> {
        let mut health = self.health.clone();
        let ready = health
            .wait_for(|health| health.signing != Signing::Recovering)
            .await
            .map_err(|_| NodeError::Stopped)?;
        Ok(ready.clone())
    }

    /// Every admitted member, as this node sees it.
    pub async fn members(&self) -> Result<Vec<Member>, NodeError> {
        self.ask(Command::Members).await
    }

    /// Waits until every entry the node had handed to its audit writer when
    /// this was called is appended; returns the last index written. Blocks:
    /// call it off the async runtime's threads.
    pub fn settle_audit(&self) -> Result<u64, NodeError> {
        self.audit_writer
            .settle()
            .map_err(|error| NodeError::Audit(error.to_string()))
    }

    /// A read-only view of this node's audit log, holding every entry the node
    /// had handed to its writer when this was called (it waits for them to be
    /// appended: the writer gathers entries for up to a quarter of a second).
    /// Blocks: call it off the async runtime's threads.
    pub fn audit_log(&self) -> Result<AuditLog<SledStore>, NodeError> {
        // A stopped writer appends nothing more: what it wrote is still read.
        let _ = self.audit_writer.settle();
        AuditLog::open_read_only(SledStore::from_db(self.audit_db.clone(), &self.audit_path))
            .map_err(|error| NodeError::Audit(error.to_string()))
    }
}

/// A running node: its client, and the task to wait for or stop.
#[derive(Debug)]
pub struct NodeHandle {
    client: NodeClient,
    task: Option<tokio::task::JoinHandle<Result<(), NodeError>>>,
    shutdown: watch::Sender<bool>,
    socket: SocketClosed,
}

/// After the node's task ends, the longest wait for its UDP socket to close
/// (quinn closes it once the connections closed at shutdown have drained).
const SOCKET_CLOSE_WAIT: Duration = Duration::from_secs(2);

impl std::ops::Deref for NodeHandle {
    type Target = NodeClient;

    fn deref(&self) -> &NodeClient {
        &self.client
    }
}

impl NodeHandle {
    pub(super) fn new(
        client: NodeClient,
        task: tokio::task::JoinHandle<Result<(), NodeError>>,
        shutdown: watch::Sender<bool>,
        socket: SocketClosed,
    ) -> Self {
        Self {
            client,
            task: Some(task),
            shutdown,
            socket,
        }
    }

    /// A cloneable client of this node.
    pub fn client(&self) -> NodeClient {
        self.client.clone()
    }

    /// Stops the node: it takes no further input, flushes its audit log (with a
    /// final signed checkpoint) and its store, and closes its connections. The
    /// stop overtakes queued input, so it is prompt under load. When it
    /// returns, the node's UDP port is free for a node started on it again.
    pub async fn shutdown(mut self) -> Result<(), NodeError> {
        let _ = self.shutdown.send(true);
        self.join().await
    }

    /// Waits until the node stops by itself (an error it cannot go on from).
    pub async fn wait(&mut self) -> Result<(), NodeError> {
        self.join().await
    }

    async fn join(&mut self) -> Result<(), NodeError> {
        match self.task.as_mut() {
            Some(task) => {
                let result = task.await.map_err(|_| NodeError::Stopped)?;
                self.task = None;
                // Its port is free when this returns, unless a closed
                // connection is still draining after the wait.
                let closed = self.socket.clone().wait();
                if tokio::time::timeout(SOCKET_CLOSE_WAIT, closed)
                    .await
                    .is_err()
                {
                    debug!(node = %self.client.node_id(), "the UDP socket is still open after the node stopped");
                }
                result
            }
            None => Ok(()),
        }
    }
}
