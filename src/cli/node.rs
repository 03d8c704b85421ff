//! `tidings init DIR` and `tidings run --config FILE`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use rand::rngs::OsRng;
use tidings::keys::{Identity, Roster};
use tidings::net::config::{self, TEMPLATE};
use tidings::net::node::{Node, NEW_NODE_MARKER};

use super::interrupt::{Signals, INTERRUPTED};

/// Arguments of `tidings init`.
#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// The node's directory (created if needed).
    dir: PathBuf,
    /// The federation's name (the same for every node).
    #[arg(long, default_value = "default")]
    federation: String,
    /// UDP address to listen on.
    #[arg(long, default_value = "127.0.0.1:7700")]
    listen: SocketAddr,
    /// Local HTTP API address. Off loopback, a token is generated into
    /// DIR/api.token (mode 0600) and clients must send it.
    #[arg(long, default_value = "127.0.0.1:7800")]
    api: SocketAddr,
    /// Generate an API token (DIR/api.token) even on loopback.
    #[arg(long)]
    api_token: bool,
    /// A peer to contact first, NODE_ID@HOST:PORT. Repeatable.
    #[arg(long = "bootstrap", value_name = "ID@ADDR")]
    bootstrap: Vec<String>,
    /// A roster file shared by the federation: this node's id is added to it
    /// (created if absent). Default: DIR/roster.toml with this node alone.
    #[arg(long, value_name = "FILE")]
    roster: Option<PathBuf>,
    /// Label for this node in the roster (default: the directory's name).
    #[arg(long)]
    label: Option<String>,
    /// Join a federation that already runs: --roster is its genesis, which this
    /// node's key is not added to. The node learns the roster chain from its
    /// bootstrap peers, checks it from that genesis, and publishes once an
    /// operation admits it (`tidings roster countersign`, then a member's
    /// `tidings roster propose add`).
    #[arg(long, requires = "roster", requires = "bootstrap")]
    join: bool,
    /// Replace an existing configuration file (the key is kept).
    #[arg(long)]
    force: bool,
}

/// Arguments of `tidings run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The configuration file (`tidings init` writes one).
    #[arg(long, short, default_value = "tidings.toml", env = "TIDINGS_CONFIG")]
    config: PathBuf,
    /// How log lines are written to standard error: `text` for people, `json`
    /// (one object per line: timestamp, level, target, fields) for log
    /// collectors. Verbosity comes from RUST_LOG, else the configuration's
    /// `log` (re-read on SIGHUP), else info with the storage and QUIC libraries
    /// at warn.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "TIDINGS_LOG_FORMAT")]
    log_format: LogFormat,
}

/// The log line format of `tidings run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The API token file `init` writes, beside the configuration.
const API_TOKEN_FILE: &str = "api.token";

pub(crate) fn init(args: &InitArgs) -> anyhow::Result<ExitCode> {
    let dir = &args.dir;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let config_path = dir.join("tidings.toml");
    if config_path.exists() && !args.force {
        bail!(
            "{} already exists (pass --force to rewrite it; the key is kept)",
            config_path.display()
        );
    }
    let key_path = dir.join("node.key");
    let identity = if key_path.exists() {
        println!("using the existing key {}", key_path.display());
        Identity::load(&key_path)?
    } else {
        let identity = Identity::generate(&mut OsRng);
        identity.save(&key_path, false)?;
        // A key made here has signed nothing: its first start needs no recovery.
        let marker = dir.join(NEW_NODE_MARKER);
        std::fs::write(
            &marker,
            "this node's key was made by `tidings init` and has signed nothing yet; the node \
             removes this file when it first starts\n",
        )
        .with_context(|| format!("cannot write {}", marker.display()))?;
        identity
    };
    let label = args.label.clone().unwrap_or_else(|| {
        dir.file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| "node".into())
    });
    let roster_path = args
        .roster
        .clone()
        .unwrap_or_else(|| dir.join("roster.toml"));
    let mut roster = if roster_path.exists() {
        Roster::load(&roster_path)?
    } else if args.join {
        bail!(
            "--join needs the federation's genesis roster: {} does not exist",
            roster_path.display()
        );
    } else {
        Roster::new()
    };
    if !args.join {
        roster.insert(identity.node_id(), Some(label.clone()));
        std::fs::write(&roster_path, roster.to_toml())
            .with_context(|| format!("cannot write {}", roster_path.display()))?;
    }
    let roster_in_config = relative_to(&roster_path, dir)?;
    let bootstrap: Vec<String> = args
        .bootstrap
        .iter()
        .map(|entry| format!("\"{entry}\""))
        .collect();
    let token_path = dir.join(API_TOKEN_FILE);
    let token_line = if args.api_token || !args.api.ip().is_loopback() {
        if token_path.exists() {
            println!("using the existing API token {}", token_path.display());
        } else {
            config::write_token(&token_path)
                .with_context(|| format!("cannot write {}", token_path.display()))?;
        }
        format!("api_token_file = \"{API_TOKEN_FILE}\"")
    } else {
        format!("# api_token_file = \"{API_TOKEN_FILE}\"   # or api_token = \"...\"")
    };
    let text = TEMPLATE
        .replace("{api_token}", &token_line)
        .replace("{data_dir}", ".")
        .replace("{listen}", &args.listen.to_string())
        .replace("{bootstrap}", &bootstrap.join(", "))
        .replace("{api}", &args.api.to_string())
        .replace("{federation}", &args.federation)
        .replace("{roster}", &roster_in_config);
    std::fs::write(&config_path, text)
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    config::load(&config_path).context("the written configuration does not load (a bug)")?;
    println!("node {label}: {}", identity.node_id());
    println!("  key     {}", key_path.display());
    println!(
        "  roster  {} ({})",
        roster_path.display(),
        super::format::counted(roster.len() as u64, "member", "members")
    );
    println!("  config  {}", config_path.display());
    if args.join {
        println!(
            "  joining: this key is not on the genesis roster; have it admitted with\n    \
             tidings roster countersign --key {} --federation {} --label {label}\n  \
             and give the output to a member, who proposes it",
            key_path.display(),
            args.federation
        );
    }
    if args.api_token || !args.api.ip().is_loopback() {
        println!(
            "  token   {} (mode 0600): the API on {} answers only `Authorization: Bearer <token>`",
            token_path.display(),
            args.api
        );
        if !args.api.ip().is_loopback() {
            eprintln!(
                "warning: the API listens on {}, off loopback: anyone who can reach it and \
                 holds the token can sign as this node; serve it behind TLS if it leaves this host",
                args.api
            );
        }
    }
    println!(
        "next: add specialists to the config, then `tidings run --config {}`",
        config_path.display()
    );
    if !args.join {
        println!(
            "other nodes can bootstrap from it with --bootstrap {}@{}",
            identity.node_id(),
            args.listen
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `path` as the configuration in `base` should name it: relative to `base`
/// (`roster.toml`, `../roster.toml`), so the node's files can move together;
/// absolute only when they share no prefix but the root.
fn relative_to(path: &Path, base: &Path) -> anyhow::Result<String> {
    let path = std::fs::canonicalize(path)
        .with_context(|| format!("cannot resolve {}", path.display()))?;
    let base = std::fs::canonicalize(base)
        .with_context(|| format!("cannot resolve {}", base.display()))?;
    Ok(relative_path(&path, &base)
        .unwrap_or(path)
        .display()
        .to_string())
}

/// `path` relative to directory `base`, both absolute and canonical; none when
/// they have nothing in common below the root.
fn relative_path(path: &Path, base: &Path) -> Option<PathBuf> {
    let path: Vec<_> = path.components().collect();
    let base: Vec<_> = base.components().collect();
    let common = path.iter().zip(&base).take_while(|(a, b)| a == b).count();
    if common <= 1 {
        return None;
    }
    let mut relative = PathBuf::new();
    for _ in common..base.len() {
        relative.push("..");
    }
    for component in &path[common..] {
        relative.push(component);
    }
    Some(relative)
}

/// Swaps the log filter of a running process (on SIGHUP).
type LogHandle =
    tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;

/// The log filter: RUST_LOG when set, else the configuration's `log`, else
/// info with the storage and QUIC libraries at warn.
fn log_filter(configured: Option<&str>) -> tracing_subscriber::EnvFilter {
    const DEFAULT: &str = "info";
    let asked = std::env::var("RUST_LOG")
        .ok()
        .filter(|text| !text.trim().is_empty())
        .or(configured.map(str::to_string));
    let directives = quiet_libraries(asked.as_deref().unwrap_or(DEFAULT));
    tracing_subscriber::EnvFilter::try_new(&directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(quiet_libraries(DEFAULT)))
}

/// `directives` with the storage and QUIC libraries kept at warn unless they
/// name them: their debug lines are many and about themselves, so
/// `RUST_LOG=debug` shows the node's (`sled=debug` asks for the library's).
fn quiet_libraries(directives: &str) -> String {
    let mut out = directives.trim().to_string();
    for library in ["sled", "quinn", "quinn_proto", "quinn_udp", "rustls"] {
        let named = directives.split(',').any(|directive| {
            let target = directive.split(['=', '[']).next().unwrap_or("").trim();
            target == library || target.starts_with(&format!("{library}::"))
        });
        if !named {
            out.push_str(&format!(",{library}=warn"));
        }
    }
    out
}

fn start_logging(format: LogFormat, configured: Option<&str>) -> LogHandle {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let (filter, handle) = tracing_subscriber::reload::Layer::new(log_filter(configured));
    let logs = tracing_subscriber::registry().with(filter);
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs
            .with(layer.with_ansi(std::io::stderr().is_terminal()))
            .init(),
        LogFormat::Json => logs.with(layer.json().flatten_event(true)).init(),
    }
    handle
}

/// SIGHUP: reads the configuration again and applies its specialists and log
/// level. Other settings take effect at the next start. A file that does not
/// load changes nothing.
async fn reload(path: &Path, client: &tidings::net::node::NodeClient, logs: &LogHandle) {
    let loaded = match config::load(path) {
        Ok(loaded) => loaded,
        Err(error) => {
            tracing::warn!("SIGHUP: {error}; nothing changed");
            return;
        }
    };
    if let Err(error) = logs.reload(log_filter(loaded.log.as_deref())) {
        tracing::warn!("SIGHUP: cannot change the log level: {error}");
    }
    let count = super::format::counted(
        loaded.node.specialists.len() as u64,
        "specialist",
        "specialists",
    );
    match client.reload_specialists(loaded.node.specialists).await {
        Ok(Some(record)) => tracing::info!(
            seq = record.seq(),
            "SIGHUP: {} reloaded; {count} from the file, published",
            path.display()
        ),
        Ok(None) => tracing::info!(
            "SIGHUP: {} reloaded; its {count} announced as they are",
            path.display()
        ),
        Err(error) => tracing::warn!("SIGHUP: the file's specialists were not applied: {error}"),
    }
}

pub(crate) fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let loaded = config::load(&args.config)?;
    let logs = start_logging(args.log_format, loaded.log.as_deref());
    let runtime = super::node_runtime()?;
    runtime.block_on(async move {
        // Listening before anything starts: a signal during start-up is not lost.
        let mut signals = Signals::install()?;
        #[cfg(unix)]
        let mut hangups =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .context("cannot listen for SIGHUP")?;
        let mut node = Node::spawn(loaded.node).await?;
        let api = tidings::api::serve(node.client(), loaded.api, loaded.api_token).await?;
        println!(
            "node {} listening on {}; API on http://{} (stop with Ctrl-C, reload the configuration's specialists and log level with SIGHUP)",
            node.node_id(),
            node.local_addr(),
            api.local_addr()
        );
        let client = node.client();
        let signal = loop {
            #[cfg(unix)]
            let hangup = hangups.recv();
            #[cfg(not(unix))]
            let hangup = std::future::pending::<Option<()>>();
            tokio::select! {
                stopped = node.wait() => {
                    api.shutdown().await;
                    return stopped.context("the node stopped");
                }
                signal = signals.next() => break signal,
                _ = hangup => reload(&args.config, &client, &logs).await,
            }
        };
        tracing::info!("{signal}: stopping (a second signal exits at once)");
        tokio::spawn(async move {
            let again = signals.next().await;
            eprintln!("{again} again: exiting without a clean stop");
            std::process::exit(INTERRUPTED);
        });
        if loaded.leave_on_shutdown {
            match node.leave().await {
                Ok(record) => {
                    tracing::info!(seq = record.seq(), "left the directory before stopping");
                    // The node stops by itself once the record is out.
                    let left = tokio::time::timeout(Duration::from_secs(10), node.wait()).await;
                    if let Ok(stopped) = left {
                        api.shutdown().await;
                        return stopped.context("the node did not stop cleanly");
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "could not leave the directory; stopping anyway")
                }
            }
        }
        let (stopped, ()) = tokio::join!(node.shutdown(), api.shutdown());
        stopped.context("the node did not stop cleanly")
    })?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libraries_stay_at_warn_unless_named() {
        assert_eq!(
            quiet_libraries("debug"),
            "debug,sled=warn,quinn=warn,quinn_proto=warn,quinn_udp=warn,rustls=warn"
        );
        let named = quiet_libraries("info,sled=debug,quinn_proto::connection=trace");
        assert!(named.starts_with("info,sled=debug,quinn_proto::connection=trace,quinn=warn,"));
        assert!(!named.contains("sled=warn") && !named.contains("quinn_proto=warn"));
        // Every result is a filter tracing accepts.
        for asked in ["debug", "info,sled=debug", "tidings=trace"] {
            assert!(tracing_subscriber::EnvFilter::try_new(quiet_libraries(asked)).is_ok());
        }
    }

    #[test]
    fn paths_in_the_configuration_are_relative_to_it() {
        let relative = |path: &str, base: &str| {
            relative_path(Path::new(path), Path::new(base)).map(|p| p.display().to_string())
        };
        assert_eq!(
            relative("/a/fed/n/roster.toml", "/a/fed/n").unwrap(),
            "roster.toml"
        );
        assert_eq!(
            relative("/a/fed/roster.toml", "/a/fed/n").unwrap(),
            "../roster.toml"
        );
        assert_eq!(
            relative("/a/shared/r.toml", "/a/fed/n").unwrap(),
            "../../shared/r.toml"
        );
        assert_eq!(relative("/etc/roster.toml", "/home/n"), None);
    }
}
