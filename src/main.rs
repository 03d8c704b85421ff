//! The `tidings` command line.
//!
//! Exit status: 0 on success, 1 when a checked item is invalid (`verify`),
//! 2 when the command could not run (bad arguments, unreadable files).

#![forbid(unsafe_code)]

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};

/// tidings: a Byzantine-resilient, signed gossip directory of specialists.
///
/// Each node announces its specialists in an ed25519-signed, hash-chained record;
/// every receiver verifies before it stores or relays. Start with `tidings keygen`,
/// then `tidings record sign` and `tidings verify`.
#[derive(Debug, Parser)]
#[command(name = "tidings", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a node key (ed25519) and write it with mode 0600.
    Keygen(cli::keys::KeygenArgs),
    /// Print the node id (public key) of a key file.
    Id(cli::keys::IdArgs),
    /// Create signed records.
    #[command(subcommand)]
    Record(RecordCommand),
    /// Check an exported signed record, equivocation proof, audit export or
    /// roster chain offline.
    ///
    /// For a record or proof: prints the signer, sequence number, record id and
    /// verdict. For an audit export: checks its hash chain, signed checkpoints and
    /// every piece of evidence, and names the first bad entry. For a roster chain
    /// (`tidings roster export`): checks every operation from the genesis and
    /// names the first invalid one; with --roster and --federation, also that the
    /// genesis is that roster file's. Exits 1 when the file is invalid.
    Verify(cli::verify::VerifyArgs),
    /// Create a node directory: key (0600), roster, commented configuration.
    Init(cli::node::InitArgs),
    /// Run a node from its configuration file (stop with Ctrl-C or SIGTERM).
    Run(cli::node::RunArgs),
    /// Announce a specialist on a running node (through its local API).
    Announce(cli::client::AnnounceArgs),
    /// Withdraw a specialist on a running node.
    Withdraw(cli::client::WithdrawArgs),
    /// Find specialists in a running node's directory.
    Lookup(cli::client::LookupArgs),
    /// List the federation's members as a running node sees them: connected now,
    /// last heard from, quarantined, banned.
    Members(cli::client::MembersArgs),
    /// Leave the directory: the running node publishes a record that withdraws
    /// every specialist, sends it to its peers, and stops. Starting it again
    /// announces its configured specialists anew.
    Leave(cli::client::LeaveArgs),
    /// Print a running node's directory changes as they happen: specialists
    /// added, updated, removed; records expired; origins quarantined. Resumes
    /// after a broken connection without missing an event the node still
    /// keeps.
    Watch(cli::watch::WatchArgs),
    /// Provenance of a record (by record id) or of an origin's current record.
    Show(cli::client::ShowArgs),
    /// Govern the roster: create the genesis, show the chain, propose and approve
    /// threshold-signed changes (add, remove, rotate, threshold, relabel,
    /// pardon), export it for `tidings verify`.
    #[command(subcommand)]
    Roster(cli::roster::RosterCommand),
    /// Read a node's audit log: log, trace, verify, export, merge.
    #[command(subcommand)]
    Audit(cli::audit::AuditCommand),
    /// Measure: with no subcommand, every figure in one run (verify and ingest,
    /// digest cost, audit overhead); or one measurement.
    Bench(cli::bench::BenchArgs),
    /// Run the gossip simulator (Bet 15 and beyond).
    #[command(subcommand)]
    Sim(cli::sim::SimCommand),
    /// Run the demonstration (see the README).
    Demo(cli::demo::DemoArgs),
    /// Start a federation of real processes whose links go through a link
    /// emulator (delay, jitter, loss, duplication, reordering, a partition that
    /// heals), and measure how records spread.
    Lab(cli::lab::LabArgs),
    /// Print a shell completion script: `tidings completions bash >
    /// /etc/bash_completion.d/tidings` (or zsh, fish, elvish, powershell).
    Completions(cli::manual::CompletionsArgs),
    /// Print the manual page (roff), or write one page per command with --dir.
    Man(cli::manual::ManArgs),
}

#[derive(Debug, Subcommand)]
enum RecordCommand {
    /// Sign a record announcing specialists, and write it to a file.
    Sign(cli::record::SignArgs),
}

/// Where the node's secret key lives.
#[derive(Debug, Clone, Args)]
pub(crate) struct KeyArg {
    /// Path of the secret key file.
    #[arg(
        long,
        env = "TIDINGS_KEY",
        default_value = "node.key",
        value_name = "PATH"
    )]
    pub(crate) key: PathBuf,
}

/// Output piped into a program that stopped reading (`tidings … | head`) ends the
/// process quietly, as a SIGPIPE would, instead of with a panic message.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.contains("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    quiet_on_broken_pipe();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Keygen(args) => cli::keys::keygen(&args),
        Command::Id(args) => cli::keys::id(&args),
        Command::Record(RecordCommand::Sign(args)) => cli::record::sign(&args),
        Command::Verify(args) => cli::verify::run(&args),
        Command::Init(args) => cli::node::init(&args),
        Command::Announce(args) => cli::client::announce(&args),
        Command::Withdraw(args) => cli::client::withdraw(&args),
        Command::Lookup(args) => cli::client::lookup(&args),
        Command::Members(args) => cli::client::members(&args),
        Command::Leave(args) => cli::client::leave(&args),
        Command::Watch(args) => cli::watch::run(&args),
        Command::Show(args) => cli::client::show(&args),
        Command::Roster(command) => cli::roster::run(&command),
        Command::Run(args) => cli::node::run(&args),
        Command::Audit(command) => cli::audit::run(&command),
        Command::Bench(args) => cli::bench::run_args(&args),
        Command::Sim(command) => cli::sim::run(&command),
        Command::Demo(args) => cli::demo::run(&args),
        Command::Lab(args) => cli::lab::run(&args),
        Command::Completions(args) => cli::manual::completions(Cli::command(), &args),
        Command::Man(args) => cli::manual::man(Cli::command(), &args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}
