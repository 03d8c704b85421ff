//! The node: one actor task owns the protocol [`State`]; network tasks feed it
//! frames; it acts on every output after each input.
//!
//! ```text
//!  accept task ──┐                              ┌─▶ link task per peer ─▶ its QUIC stream
//!  receive loop  ├─▶ events ─▶ actor (State) ───┼─▶ audit writer thread (sled)
//!  per connection│            (the only clock)  ├─▶ directory store (sled)
//!  handle calls ─┘                              └─▶ subscribers (broadcast)
//! ```
//!
//! - [`startup`]: the data directory lock, opening the store and the audit log
//!   with their cross-checks, and where the node's own chain stands.
//! - [`actor`]: the actor: its loop, and how it acts on each output, keeping the
//!   durability contract (a record the node signed is on disk before anything can
//!   reveal it, and before a command is answered).
//! - [`links`]: connections, one receive loop per connection (backpressure reaches
//!   QUIC flow control), one send task per peer.
//! - [`client`]: [`NodeClient`] and [`NodeHandle`], what the API and the command
//!   line hold, and the views they return.
//! - [`metrics`]: counters and gauges.
//!
//! Nothing but the actor touches the state; links and readers only move bytes.
//! Signals belong to the program that runs the node: the actor stops on
//! [`NodeHandle::shutdown`].
//!
//! [`State`]: crate::proto::State

mod actor;
pub mod client;
mod configured;
mod inbox;
mod links;
pub mod metrics;
mod startup;
mod table;
mod views;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use tidings_audit::AuditConfig;
use tidings_keys::{FederationId, Identity, NodeId, Roster};
use tokio::sync::{broadcast, mpsc, watch};
use tracing::{info, warn};

use super::checkers::Checkers;
use super::clock::{Clock, NodeTime, SystemClock};
use super::transport::{NetError, Transport};
use crate::proto::rate::RateLimit;
use crate::proto::state::GossipConfig;
use crate::proto::{PublishError, Specialist};

pub use client::{
    ForkView, FoundSpecialist, Health, Lookup, Member, NodeClient, NodeHandle, OpView,
    ProposalView, Reach, RosterMember, RosterView, Signing,
};
pub use metrics::{NodeStats, LATENCY_BUCKETS_MS};
pub use startup::NEW_NODE_MARKER;

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
    /// How many records per origin (this node's own included) are accepted.
    pub origin_rate: RateLimit,
    /// Audit checkpoints and retention.
    pub audit: AuditConfig,
    /// The specialists this node announces at start.
    pub specialists: Vec<Specialist>,
    /// Where the node reads time (the system clocks, unless a test steps them).
    pub clock: Arc<dyn Clock>,
    /// The key is new and never signed: with an empty data directory the node
    /// starts its chain at once. Otherwise an empty data directory may mean lost
    /// data, and the node first hears its peers (see `startup`). `tidings init`
    /// says the same with a marker file in the data directory.
    pub new_node: bool,
}

impl NodeConfig {
    /// A node of `federation` with `identity`, keeping its data in `data_dir`,
    /// listening on an ephemeral loopback port, with default settings.
    pub fn new(
        data_dir: PathBuf,
        identity: Arc<Identity>,
        federation: &str,
        roster: Roster,
    ) -> Self {
        Self {
            data_dir,
            identity,
            federation: federation.to_string(),
            roster,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            advertise: None,
            bootstrap: Vec::new(),
            gossip: GossipConfig::default(),
            origin_rate: RateLimit::ORIGIN_DEFAULT,
            audit: AuditConfig::default(),
            specialists: Vec::new(),
            clock: Arc::new(SystemClock::default()),
            new_node: false,
        }
    }
}

/// Why a node could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Network setup failed.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The audit log could not be opened or written.
    #[error("audit log: {0}")]
    Audit(String),
    /// The directory store failed.
    #[error(transparent)]
    Store(#[from] super::store::StoreError),
    /// The data directory is in use by another process, or cannot be locked.
    #[error(transparent)]
    Lock(#[from] super::lock::LockError),
    /// The data directory could not be created or a damaged part moved aside.
    #[error("data directory {path}: {reason}")]
    DataDir {
        /// The path involved.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// This node's own key is not on the roster, and it has no peer to learn a
    /// later roster from.
    #[error("this node's key {0} is not on the roster, and no bootstrap peer is configured to learn a later roster from; add it to the roster file (tidings init writes one with it), or have the federation propose it (tidings roster propose add) and configure a bootstrap peer")]
    NotOnRoster(NodeId),
    /// The roster file is not a valid genesis, or the stored chain does not apply.
    #[error("roster: {0}")]
    Roster(String),
    /// This node will not sign a roster operation.
    #[error(transparent)]
    Sign(#[from] crate::proto::roster::SignError),
    /// A record this node signed could not be made durable: it stops rather
    /// than send what a crash could make it sign twice.
    #[error("cannot make this node's own record durable: {0}")]
    Durability(String),
    /// The node has stopped.
    #[error("the node has stopped")]
    Stopped,
    /// The threads that check signatures could not be started.
    #[error("cannot start the signature checker threads: {0}")]
    Threads(std::io::Error),
    /// A publication was refused.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// The API may not change a specialist the configuration file owns.
    #[error("the specialist {0:?} comes from this node's configuration file: edit the file, then reload it (SIGHUP) or restart the node")]
    Configured(String),
}

/// Starts nodes.
#[derive(Debug)]
pub struct Node;

impl Node {
    /// Locks and opens the data directory, binds the endpoint, restores the
    /// directory and the node's own chain, and starts the node (within a tokio
    /// runtime).
    pub async fn spawn(config: NodeConfig) -> Result<NodeHandle, NodeError> {
        let node_id = config.identity.node_id();
        if !config.roster.contains(&node_id) && config.bootstrap.is_empty() {
            return Err(NodeError::NotOnRoster(node_id));
        }
        let time = NodeTime::start(config.clock.clone());
        let federation = FederationId::from_name(&config.federation);
        let shared_roster = Arc::new(RwLock::new(config.roster.clone()));
        let opened = startup::open(&config, federation, time.now_ms())?;
        let transport = Transport::bind(&config.identity, shared_roster.clone(), config.listen)?;
        let local_addr = transport.local_addr().unwrap_or(config.listen);
        let socket = transport.closed();
        let advertised = config
            .advertise
            .clone()
            .unwrap_or_else(|| vec![local_addr.to_string()]);
        let restored = startup::restore(&config, federation, opened, advertised, time.now_ms())?;
        // The roster the stored chain reached; a joining node that is not on
        // it yet waits to learn the chain that admits it from its peers.
        let roster = (**restored.state.ledger().state().members()).clone();
        if let Ok(mut shared) = shared_roster.write() {
            *shared = roster.clone();
        }
        if !roster.contains(&node_id) {
            warn!(node = %node_id, "this node's key is not on the roster yet: it learns the roster from its bootstrap peers and publishes once admitted");
        }
        let (commands, command_rx) = mpsc::channel(256);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (changes, _) = broadcast::channel(1024);
        let (health, health_rx) = watch::channel(Health::default());
        let checkers = Checkers::start(restored.cache.clone(), federation, shared_roster.clone())
            .map_err(NodeError::Threads)?;
        let (links, events) = links::Links::start(
            node_id,
            transport,
            config.bootstrap.iter().copied().collect(),
            Some(Arc::new(checkers)),
        );
        let audit_db = restored.audit_db.clone();
        let audit_writer = restored.writer.handle();
        let mut actor = actor::Actor::new(actor::Parts {
            state: restored.state,
            time,
            links,
            events,
            writer: restored.writer,
            store: restored.store,
            changes: changes.clone(),
            health,
            roster: shared_roster,
            lock: restored.lock,
        });
        actor.report_startup(&restored.notes);
        info!(node = %node_id, addr = %local_addr, "node started");
        let task = tokio::spawn(actor.run(command_rx, shutdown_rx));
        Ok(NodeHandle::new(
            NodeClient::new(
                node_id,
                local_addr,
                federation,
                commands,
                changes,
                health_rx,
                audit_db,
                audit_writer,
                config.data_dir.clone(),
                configured::names(&config.specialists),
            ),
            task,
            shutdown,
            socket,
        ))
    }
}
