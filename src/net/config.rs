//! The node's configuration file (TOML).
//!
//! Every field has a default except what a node must choose: its federation's name
//! and roster. Relative paths are relative to the file's directory. See
//! [`TEMPLATE`] for the commented file `tidings init` writes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use tidings_audit::AuditConfig;
use tidings_keys::{Identity, NodeId, Roster};

use super::node::NodeConfig;
use crate::proto::rate::RateLimit;
use crate::proto::{GossipConfig, Specialist};

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The file is not valid.
    #[error("invalid configuration {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    /// The key file could not be loaded.
    #[error(transparent)]
    Key(#[from] tidings_keys::KeyFileError),
    /// The roster could not be loaded.
    #[error(transparent)]
    Roster(#[from] tidings_keys::RosterError),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default = "default_data_dir")]
    data_dir: PathBuf,
    #[serde(default = "default_key")]
    key: PathBuf,
    #[serde(default = "default_listen")]
    listen: SocketAddr,
    #[serde(default)]
    advertise: Option<Vec<String>>,
    #[serde(default)]
    bootstrap: Vec<String>,
    #[serde(default = "default_api")]
    api: SocketAddr,
    #[serde(default)]
    api_token: Option<String>,
    /// A file holding the token (mode 0600), instead of `api_token`.
    #[serde(default)]
    api_token_file: Option<PathBuf>,
    federation: Federation,
    #[serde(default)]
    gossip: Gossip,
    #[serde(default)]
    audit: Audit,
    #[serde(default)]
    limits: Limits,
    #[serde(default, rename = "specialist")]
    specialists: Vec<SpecialistEntry>,
    /// On Ctrl-C or SIGTERM, withdraw every specialist before stopping.
    #[serde(default)]
    leave_on_shutdown: bool,
    /// Log verbosity, in RUST_LOG's syntax.
    #[serde(default)]
    log: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Federation {
    name: String,
    roster: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Gossip {
    interval_ms: u64,
    fanout: usize,
    /// Called `rumor_fanout` before neighbour spreading replaced random pushes.
    #[serde(alias = "rumor_fanout")]
    neighbours: usize,
    graft_timeout_ms: u64,
    idle_stretch: u32,
    ttl_ms: u64,
}

impl Default for Gossip {
    fn default() -> Self {
        let defaults = GossipConfig::default();
        Self {
            interval_ms: defaults.interval_ms,
            fanout: defaults.fanout,
            neighbours: defaults.spread.neighbours,
            graft_timeout_ms: defaults.spread.graft_timeout_ms,
            idle_stretch: defaults.idle_stretch,
            ttl_ms: defaults.ttl_ms,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Audit {
    max_bytes: u64,
    max_age_days: u64,
    checkpoint_every_entries: u64,
}

impl Default for Audit {
    fn default() -> Self {
        Self {
            max_bytes: 1 << 30,
            max_age_days: 90,
            checkpoint_every_entries: 1024,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Limits {
    origin_burst: u32,
    origin_per_minute: u32,
}

impl Default for Limits {
    fn default() -> Self {
        let defaults = RateLimit::ORIGIN_DEFAULT;
        Self {
            origin_burst: defaults.burst,
            origin_per_minute: defaults.per_minute,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecialistEntry {
    name: String,
    #[serde(default)]
    capabilities: Vec<String>,
    endpoint: String,
    #[serde(default)]
    meta: std::collections::BTreeMap<String, String>,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from(".")
}
fn default_key() -> PathBuf {
    PathBuf::from("node.key")
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7700))
}
fn default_api() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7800))
}

/// A loaded configuration: the node's settings and the local API's.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// What the node runs with.
    pub node: NodeConfig,
    /// The local HTTP API address.
    pub api: SocketAddr,
    /// The API token (required when the API is not on loopback).
    pub api_token: Option<String>,
    /// Withdraw every specialist (`tidings leave`) when stopped by a signal.
    pub leave_on_shutdown: bool,
    /// Log verbosity (RUST_LOG's syntax), if the file sets it.
    pub log: Option<String>,
}

fn parse_bootstrap(entry: &str) -> Result<(NodeId, SocketAddr), String> {
    let (id, addr) = entry
        .split_once('@')
        .ok_or_else(|| format!("bootstrap entry {entry:?} must be NODE_ID@HOST:PORT"))?;
    let id = id
        .parse::<NodeId>()
        .map_err(|error| format!("bootstrap entry {entry:?}: {error}"))?;
    let addr = addr
        .parse::<SocketAddr>()
        .map_err(|error| format!("bootstrap entry {entry:?}: {error}"))?;
    Ok((id, addr))
}

/// Loads a configuration file.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    let invalid = |reason: String| ConfigError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    let file: File = toml::from_str(&text).map_err(|error| invalid(error.to_string()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let identity = Identity::load(&base.join(&file.key))?;
    let roster = Roster::load(&base.join(&file.federation.roster))?;
    let bootstrap = file
        .bootstrap
        .iter()
        .map(|entry| parse_bootstrap(entry))
        .collect::<Result<Vec<_>, _>>()
        .map_err(invalid)?;
    if file.gossip.interval_ms == 0 || file.gossip.fanout == 0 {
        return Err(invalid(
            "gossip.interval_ms and gossip.fanout must be above zero".into(),
        ));
    }
    if file.gossip.neighbours > 64
        || file.gossip.graft_timeout_ms == 0
        || file.gossip.graft_timeout_ms > 60_000
    {
        return Err(invalid(
            "gossip.neighbours must be at most 64, and gossip.graft_timeout_ms between 1 and 60000"
                .into(),
        ));
    }
    if !(1..=64).contains(&file.gossip.idle_stretch) {
        return Err(invalid(
            "gossip.idle_stretch must be between 1 (never stretch) and 64".into(),
        ));
    }
    if file.gossip.ttl_ms == 0 || file.gossip.ttl_ms > crate::proto::limits::MAX_TTL_MS {
        return Err(invalid(
            "gossip.ttl_ms must be above zero and at most one day".into(),
        ));
    }
    let gossip = GossipConfig {
        interval_ms: file.gossip.interval_ms,
        fanout: file.gossip.fanout,
        spread: crate::proto::spread::SpreadConfig {
            neighbours: file.gossip.neighbours,
            graft_timeout_ms: file.gossip.graft_timeout_ms,
            ..Default::default()
        },
        ttl_ms: file.gossip.ttl_ms,
        idle_stretch: file.gossip.idle_stretch,
        ..GossipConfig::default()
    };
    let audit = AuditConfig {
        max_bytes: Some(file.audit.max_bytes),
        max_age_ms: Some(file.audit.max_age_days.saturating_mul(86_400_000)),
        checkpoint_every_entries: file.audit.checkpoint_every_entries.max(1),
        ..AuditConfig::default()
    };
    let specialists = file
        .specialists
        .into_iter()
        .map(|entry| Specialist {
            name: entry.name,
            capabilities: entry.capabilities,
            endpoint: entry.endpoint,
            meta: entry.meta,
        })
        .collect();
    if file.limits.origin_burst == 0 || file.limits.origin_per_minute == 0 {
        return Err(invalid(
            "limits.origin_burst and limits.origin_per_minute must be above zero".into(),
        ));
    }
    let api_token = match (file.api_token, &file.api_token_file) {
        (Some(_), Some(_)) => {
            return Err(invalid("set api_token or api_token_file, not both".into()))
        }
        (Some(token), None) => Some(check_token(token.trim(), "api_token").map_err(invalid)?),
        (None, None) => None,
        (None, Some(token_file)) => Some(read_token(&base.join(token_file)).map_err(invalid)?),
    };
    if !file.api.ip().is_loopback() && api_token.is_none() {
        return Err(invalid(format!(
            "api = {} is not a loopback address: set api_token, or keep the API on 127.0.0.1",
            file.api
        )));
    }
    if let Some(log) = &file.log {
        tracing_subscriber::EnvFilter::try_new(log)
            .map_err(|error| invalid(format!("log = {log:?}: {error}")))?;
    }
    let leave_on_shutdown = file.leave_on_shutdown;
    Ok(Loaded {
        leave_on_shutdown,
        log: file.log,
        node: NodeConfig {
            listen: file.listen,
            advertise: file.advertise,
            bootstrap,
            gossip,
            origin_rate: RateLimit {
                burst: file.limits.origin_burst,
                per_minute: file.limits.origin_per_minute,
            },
            audit,
            specialists,
            ..NodeConfig::new(
                if file.data_dir == Path::new(".") {
                    base.to_path_buf()
                } else {
                    base.join(&file.data_dir)
                },
                Arc::new(identity),
                &file.federation.name,
                roster,
            )
        },
        api: file.api,
        api_token,
    })
}

/// The API token kept in `path`: one line, readable by its owner only.
fn read_token(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("api_token_file {}: {error}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|error| format!("api_token_file {}: {error}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "api_token_file {} has mode {:04o}, so other users can read it; \
                 run `chmod 600 {}`",
                path.display(),
                mode & 0o7777,
                path.display()
            ));
        }
    }
    check_token(text.trim(), &format!("api_token_file {}", path.display()))
}

/// A token of one line and at least 16 characters (`where` names its source).
fn check_token(token: &str, source: &str) -> Result<String, String> {
    if token.len() < 16 || token.contains(['\n', '\r']) {
        return Err(format!(
            "{source} must be one line of at least 16 characters (`tidings init --api-token` \
             writes a random one)"
        ));
    }
    Ok(token.to_string())
}

/// Writes a new random API token to `path` (mode 0600) and returns it.
pub fn write_token(path: &Path) -> std::io::Result<String> {
    use rand::RngCore;
    use std::io::Write;
    let mut bytes = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = tidings_keys::hex::encode(&bytes);
    // A new file only: never through a link planted at the path, never over
    // a token clients already use.
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    writeln!(file, "{token}")?;
    file.sync_all()?;
    Ok(token)
}

/// The commented configuration `tidings init` writes.
pub const TEMPLATE: &str = r#"# tidings node configuration. Relative paths are relative to this file.

# Where the audit log and the directory store live.
data_dir = "{data_dir}"
# This node's secret key (mode 0600; `tidings keygen` makes one).
key = "node.key"
# UDP address for QUIC.
listen = "{listen}"
# Addresses published in this node's record, where others can reach it.
# Leave out to publish the listen address; [] for a node behind NAT (it dials out).
# advertise = ["203.0.113.7:7700"]
# Peers to contact first: "NODE_ID@HOST:PORT".
bootstrap = [{bootstrap}]
# Local HTTP API, and the node's web page at http://ADDRESS/. Without a token it
# must be on loopback, and it answers only requests addressed to this machine (no
# other web page can use it). Off loopback, set a token: clients send
# `Authorization: Bearer TOKEN`; the page asks for it.
api = "{api}"
{api_token}
# On Ctrl-C or SIGTERM, publish a record that withdraws every specialist before
# stopping (as `tidings leave` does), so peers forget them at once instead of
# when the record expires.
leave_on_shutdown = false
# Log verbosity, in RUST_LOG's syntax ("info", "debug", "info,tidings::net=debug");
# RUST_LOG, when set, wins. Re-read on SIGHUP.
# log = "info"

[federation]
# Every node of a federation uses the same name and roster.
name = "{federation}"
roster = "{roster}"

[gossip]
interval_ms = 1000     # time between gossip rounds
fanout = 2             # exchanges per round
neighbours = 5         # chosen neighbours new records spread through at once (0: off)
graft_timeout_ms = 100 # wait for an announced record before asking its announcer (twice, once, while pushes bring news)
idle_stretch = 8       # once nothing is new, one exchange every this many rounds
ttl_ms = 300000        # lifetime of this node's records (a stopped node is forgotten
                       # within it); refreshed at half-life

[audit]
max_bytes = 1073741824 # prune the oldest entries above this size
max_age_days = 90      # and entries older than this

[limits]
origin_burst = 20      # records one origin (this node too) may have accepted at once,
origin_per_minute = 12 # and per minute after that; the whole federation should agree

# The specialists this file announces. Repeat the block for more. The file owns
# them: they are applied at start and on SIGHUP (a block removed is withdrawn),
# and the API cannot withdraw them. Specialists announced through the API are
# kept across restarts until the API withdraws them.
# [[specialist]]
# name = "summarizer"
# capabilities = ["summarize", "en"]
# endpoint = "https://example.org/summarize"
# meta = { model = "small" }
"#;
