//! Sixteen `tidings run` processes on loopback, configured by `tidings init`: an
//! announcement made by the last one to start appears at all the others. The time
//! it takes is printed in gossip intervals. Bounded: the test gives up after 60 s
//! and always stops every process.
#![cfg(unix)]
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const NODES: usize = 16;
const INTERVAL_MS: u64 = 200;

fn tidings(args: &[&str], dir: &Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Running(Vec<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
        }
        for child in &mut self.0 {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn sixteen_processes_spread_an_announcement() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let ports: Vec<u16> = (0..NODES).map(|_| free_port()).collect();
    let mut first_id = String::new();
    for (index, port) in ports.iter().enumerate() {
        let name = format!("n{index:02}");
        let mut args = vec![
            "init".to_string(),
            name.clone(),
            "--federation".into(),
            "multi".into(),
            "--roster".into(),
            "roster.toml".into(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--api".into(),
            format!("127.0.0.1:{}", free_port()),
        ];
        if index > 0 {
            args.push("--bootstrap".into());
            args.push(format!("{first_id}@127.0.0.1:{}", ports[0]));
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        tidings(&refs, path);
        if index == 0 {
            first_id = tidings(&["id", "--key", "n00/node.key"], path)
                .trim()
                .to_string();
        }
        let config = path.join(&name).join("tidings.toml");
        let mut text = std::fs::read_to_string(&config).unwrap();
        text = text.replace(
            "interval_ms = 1000",
            &format!("interval_ms = {INTERVAL_MS}"),
        );
        if index == NODES - 1 {
            text.push_str("\n[[specialist]]\nname = \"needle\"\ncapabilities = [\"find\"]\nendpoint = \"https://needle.example/api\"\n");
        }
        std::fs::write(&config, text).unwrap();
    }
    let (seen, sightings) = mpsc::channel::<usize>();
    let mut running = Running(Vec::new());
    let spawn = |index: usize, running: &mut Running| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tidings"))
            .args(["run", "--config", &format!("n{index:02}/tidings.toml")])
            .current_dir(path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let seen = seen.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("record accepted") && line.contains("needle") {
                    let _ = seen.send(index);
                }
            }
        });
        running.0.push(child);
    };
    for index in 0..NODES - 1 {
        spawn(index, &mut running);
    }
    std::thread::sleep(Duration::from_secs(2));
    let started = Instant::now();
    spawn(NODES - 1, &mut running);
    let mut holders = std::collections::BTreeSet::new();
    while holders.len() < NODES - 1 {
        match sightings.recv_timeout(Duration::from_secs(60).saturating_sub(started.elapsed())) {
            Ok(index) => {
                holders.insert(index);
            }
            Err(_) => panic!(
                "after 60 s only {} of {} nodes hold the announcement",
                holders.len(),
                NODES - 1
            ),
        }
    }
    let elapsed = started.elapsed();
    println!(
        "the announcement reached all {} other processes {:.2} s after its node started: {:.1} gossip intervals of {} ms",
        NODES - 1,
        elapsed.as_secs_f64(),
        elapsed.as_millis() as f64 / INTERVAL_MS as f64,
        INTERVAL_MS
    );
}
