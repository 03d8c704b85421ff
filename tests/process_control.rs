//! Ctrl-C: `tidings demo` and `tidings bench net` stop at once wherever they are
//! and leave no temporary directory behind; `tidings run` stops cleanly; a second
//! `tidings run` on a data directory in use exits at once and names the holder.
#![cfg(unix)]
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::cluster::Cluster;

/// Runs `tidings ARGS` with its own temporary directory, interrupts it after
/// `after`, and returns how long it took to exit and its status.
fn interrupt(args: &[&str], after: Duration, tmp: &Path) -> (Duration, Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(args)
        .env("TMPDIR", tmp)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(after);
    assert!(
        child.try_wait().unwrap().is_none(),
        "{args:?} ended before it was interrupted"
    );
    let signalled = Instant::now();
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if signalled.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let took = signalled.elapsed();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (took, status.code(), stderr)
}

fn leftovers(tmp: &Path) -> Vec<String> {
    std::fs::read_dir(tmp)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("tidings-"))
        .collect()
}

#[test]
fn ctrl_c_stops_the_demo_and_the_network_benchmark_at_once() {
    for args in [vec!["demo"], vec!["bench", "net", "--repeat", "50"]] {
        let tmp = tempfile::tempdir().unwrap();
        let (took, status, stderr) = interrupt(&args, Duration::from_secs(3), tmp.path());
        println!(
            "{args:?} stopped {:.0} ms after Ctrl-C",
            took.as_secs_f64() * 1000.0
        );
        assert_eq!(status, Some(130), "{args:?}: {stderr}");
        // Generous for a loaded test machine; the README quotes the measured time.
        assert!(took < Duration::from_secs(3), "{args:?} took {took:?}");
        assert_eq!(leftovers(tmp.path()), Vec::<String>::new(), "{args:?}");
    }
}

#[test]
fn ctrl_c_stops_a_running_node_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::init(dir.path(), 1, 200, &[]);
    cluster.start(0);
    cluster.wait_ready(0, Duration::from_secs(20));
    let (took, status) = cluster.signal(0, "INT", Duration::from_secs(5));
    assert_eq!(status, Some(0), "a clean exit in {took:?}");
    let log = cluster.log_tail(0, 5);
    assert!(log.contains("SIGINT: stopping"), "{log}");
    assert!(log.contains("node stopped"), "{log}");
}

#[test]
fn a_second_run_on_a_data_directory_in_use_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::init(dir.path(), 1, 200, &[]);
    cluster.start(0);
    cluster.wait_ready(0, Duration::from_secs(20));
    let started = Instant::now();
    let second = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(["run", "--config", "n0/tidings.toml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{said}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        said.contains(&format!("pid {}", cluster.pid(0))),
        "names the running process: {said}"
    );
    assert!(
        said.contains("another tidings process is running"),
        "{said}"
    );
    // The first one is unharmed.
    assert_eq!(cluster.health(0).unwrap()["status"], "ok");
}
