//! Subcommands of the `tidings` binary. Each returns the process exit code, or an
//! error that `main` prints and turns into exit status 2.

pub(crate) mod audit;
pub(crate) mod bench;
pub(crate) mod bench_announce;
pub(crate) mod bench_bulk;
pub(crate) mod bench_load;
pub(crate) mod bench_net;
pub(crate) mod bench_retention;
pub(crate) mod client;
pub(crate) mod demo;
pub(crate) mod fleet;
pub(crate) mod format;
pub(crate) mod interrupt;
pub(crate) mod keys;
pub(crate) mod lab;
pub(crate) mod linkemu;
pub(crate) mod manual;
pub(crate) mod netns;
pub(crate) mod node;
pub(crate) mod record;
pub(crate) mod roster;
pub(crate) mod sim;
pub(crate) mod verify;
pub(crate) mod watch;

/// The async runtime of `tidings run`: one thread. A node's async work is
/// short steps (QUIC packets, one state machine input at a time); what takes
/// longer runs off it already (signature checks of bulk frames on the checker
/// threads, audit appends on the writer thread, syncs and audit queries on
/// blocking tasks). One thread spares the wake-ups of a second worker stealing
/// every step: with 64 processes on 2 cores at a 1 s interval, every node
/// publishing at once completed in a median of 890 ms against 1,120 ms with
/// two workers (interleaved runs of `tidings bench net`).
pub(crate) fn node_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// The async runtime of the commands that run several nodes or a harness in
/// one process (demo, lab, benchmarks): two workers, as the machines this runs
/// on have few cores.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}
