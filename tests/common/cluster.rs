//! Real `tidings run` processes on loopback, made with `tidings init`: start,
//! SIGKILL, SIGTERM, restart, and talk to each through its HTTP API. Every process
//! is stopped when the cluster is dropped.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tidings::audit::{AuditLog, Entry, SledStore};
use tidings::keys::{FederationId, NodeId};
use tidings::proto::VerifiedRecord;

/// A port free for both UDP and TCP on loopback, for a node's QUIC socket or
/// its API. It is drawn below the kernel's ephemeral range (32768 and up) and
/// below the range `tidings lab` and `tidings bench net` draw from (10000 to
/// 32000), so neither an outgoing connection of any process nor a fleet started
/// by another test of the same binary can take it between this check and the
/// node's start; no port is handed out twice in one test binary.
pub fn free_port() -> u16 {
    use rand::Rng;
    static TAKEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut taken = TAKEN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut rng = rand::thread_rng();
    for _ in 0..10_000 {
        let port: u16 = rng.gen_range(2_000..10_000);
        if taken.contains(&port) {
            continue;
        }
        let udp = UdpSocket::bind(("127.0.0.1", port)).is_ok();
        let tcp = TcpListener::bind(("127.0.0.1", port)).is_ok();
        if udp && tcp {
            taken.insert(port);
            return port;
        }
    }
    panic!("no free port between 2000 and 10000 on loopback")
}

/// Runs the `tidings` binary in `dir` and returns its output; panics on failure.
pub fn tidings(dir: &Path, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(args)
        .current_dir(dir)
        .env_remove("TIDINGS_API")
        .env_remove("TIDINGS_CONFIG")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "tidings {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// One node of the cluster.
pub struct Member {
    pub name: String,
    pub id: NodeId,
    /// Its QUIC address.
    pub listen: std::net::SocketAddr,
    pub api: String,
    pub dir: PathBuf,
    child: Option<Child>,
    /// Everything it wrote to standard error, across restarts.
    pub log: Arc<Mutex<Vec<String>>>,
}

/// A federation of processes.
pub struct Cluster {
    pub root: PathBuf,
    pub members: Vec<Member>,
    pub federation: FederationId,
    http: reqwest::blocking::Client,
}

impl Cluster {
    /// Initialises `count` nodes named n0, n1, … in `root` (n0 first; the others
    /// bootstrap from it) and applies `edits` (text replacements) to every
    /// configuration file.
    pub fn init(root: &Path, count: usize, interval_ms: u64, edits: &[(&str, &str)]) -> Self {
        let mut members = Vec::new();
        let mut first: Option<(NodeId, u16)> = None;
        for index in 0..count {
            let name = format!("n{index}");
            let port = free_port();
            let api = free_port();
            let mut args = vec![
                "init".to_string(),
                name.clone(),
                "--federation".into(),
                "cluster".into(),
                "--roster".into(),
                "roster.toml".into(),
                "--listen".into(),
                format!("127.0.0.1:{port}"),
                "--api".into(),
                format!("127.0.0.1:{api}"),
            ];
            if let Some((id, port)) = first {
                args.push("--bootstrap".into());
                args.push(format!("{id}@127.0.0.1:{port}"));
            }
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            tidings(root, &refs);
            let key = format!("{name}/node.key");
            let id: NodeId = tidings(root, &["id", "--key", &key])
                .trim()
                .parse()
                .unwrap();
            if first.is_none() {
                first = Some((id, port));
            }
            let config = root.join(&name).join("tidings.toml");
            let mut text = std::fs::read_to_string(&config).unwrap();
            text = text.replace(
                "interval_ms = 1000",
                &format!("interval_ms = {interval_ms}"),
            );
            for (from, to) in edits {
                assert!(text.contains(from), "{from:?} is not in the configuration");
                text = text.replace(from, to);
            }
            std::fs::write(&config, text).unwrap();
            members.push(Member {
                dir: root.join(&name),
                name,
                id,
                listen: format!("127.0.0.1:{port}").parse().unwrap(),
                api: format!("http://127.0.0.1:{api}"),
                child: None,
                log: Arc::default(),
            });
        }
        Self {
            root: root.to_path_buf(),
            members,
            federation: FederationId::from_name("cluster"),
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        }
    }

    /// Initialises one more node, `name`, that joins the running federation:
    /// its key is not on the genesis roster (`tidings init --join`); it
    /// bootstraps from n0. Returns its index.
    pub fn join(&mut self, name: &str, interval_ms: u64) -> usize {
        let port = free_port();
        let api = free_port();
        let first = &self.members[0];
        let listen = format!("127.0.0.1:{port}");
        let api_addr = format!("127.0.0.1:{api}");
        let bootstrap = format!("{}@{}", first.id, first.listen);
        tidings(
            &self.root,
            &[
                "init",
                name,
                "--federation",
                "cluster",
                "--roster",
                "roster.toml",
                "--join",
                "--listen",
                &listen,
                "--api",
                &api_addr,
                "--bootstrap",
                &bootstrap,
            ],
        );
        let id: NodeId = tidings(&self.root, &["id", "--key", &format!("{name}/node.key")])
            .trim()
            .parse()
            .unwrap();
        let config = self.root.join(name).join("tidings.toml");
        let text = std::fs::read_to_string(&config).unwrap().replace(
            "interval_ms = 1000",
            &format!("interval_ms = {interval_ms}"),
        );
        std::fs::write(&config, text).unwrap();
        self.members.push(Member {
            dir: self.root.join(name),
            name: name.to_string(),
            id,
            listen: listen.parse().unwrap(),
            api: format!("http://{api_addr}"),
            child: None,
            log: Arc::default(),
        });
        self.members.len() - 1
    }

    /// Runs `tidings ARGS --api <member's API>` and returns its output.
    pub fn cli(&self, index: usize, args: &[&str]) -> String {
        let mut all: Vec<&str> = args.to_vec();
        let api = self.members[index].api.clone();
        all.extend(["--api", &api]);
        tidings(&self.root, &all)
    }

    /// Starts member `index` (`tidings run`).
    pub fn start(&mut self, index: usize) {
        let member = &mut self.members[index];
        assert!(member.child.is_none(), "{} is running", member.name);
        let mut child = Command::new(env!("CARGO_BIN_EXE_tidings"))
            .args(["run", "--config", &format!("{}/tidings.toml", member.name)])
            .current_dir(&self.root)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = member.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log.lock().unwrap().push(line);
            }
        });
        member.child = Some(child);
    }

    /// Starts every member.
    pub fn start_all(&mut self) {
        for index in 0..self.members.len() {
            self.start(index);
        }
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.members[index].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits up to `limit` for a clean exit; returns how long it
    /// took and the exit status (`None`: it had to be killed).
    pub fn terminate(&mut self, index: usize, limit: Duration) -> (Duration, Option<i32>) {
        self.signal(index, "TERM", limit)
    }

    /// Sends `signal` (`TERM`, `INT`, …), then waits up to `limit` for the exit.
    pub fn signal(
        &mut self,
        index: usize,
        signal: &str,
        limit: Duration,
    ) -> (Duration, Option<i32>) {
        let Some(mut child) = self.members[index].child.take() else {
            return (Duration::ZERO, Some(0));
        };
        let started = Instant::now();
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status();
        while started.elapsed() < limit {
            if let Ok(Some(status)) = child.try_wait() {
                return (started.elapsed(), status.code());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        (started.elapsed(), None)
    }

    /// The process id of running member `index`.
    pub fn pid(&self, index: usize) -> u32 {
        self.members[index].child.as_ref().unwrap().id()
    }

    /// Waits for member `index`'s process, killed from elsewhere, to end.
    pub fn reap(&mut self, index: usize) {
        if let Some(mut child) = self.members[index].child.take() {
            let _ = child.wait();
        }
    }

    /// How member `index`'s process ended, if it has (it is then no longer
    /// counted as running).
    pub fn exited(&mut self, index: usize) -> Option<std::process::ExitStatus> {
        let child = self.members[index].child.as_mut()?;
        let status = child.try_wait().ok()??;
        self.members[index].child = None;
        Some(status)
    }

    /// Which members' processes have ended on their own, with how, and the
    /// last lines each logged; empty when all are running.
    pub fn casualties(&mut self) -> String {
        let mut out = String::new();
        for index in 0..self.members.len() {
            if let Some(status) = self.exited(index) {
                out += &format!(
                    "{} exited ({status}); its last lines:\n{}\n",
                    self.members[index].name,
                    self.log_tail(index, 10)
                );
            }
        }
        out
    }

    pub fn is_running(&self, index: usize) -> bool {
        self.members[index].child.is_some()
    }

    pub fn get(&self, index: usize, path: &str) -> Option<serde_json::Value> {
        let url = format!("{}{path}", self.members[index].api);
        let response = match self.http.get(&url).send() {
            Ok(response) => response,
            Err(error) => {
                eprintln!("GET {url}: {error:?}");
                return None;
            }
        };
        response.json().ok()
    }

    /// The value of metric `name` (without labels) at member `index`.
    pub fn metric(&self, index: usize, name: &str) -> Option<f64> {
        let url = format!("{}/metrics", self.members[index].api);
        let text = self.http.get(url).send().ok()?.text().ok()?;
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }

    /// The node's health document, once its API answers.
    pub fn health(&self, index: usize) -> Option<serde_json::Value> {
        self.get(index, "/v1/health")
    }

    /// Waits until member `index` answers with status `ok` (it may sign).
    pub fn wait_ready(&self, index: usize, limit: Duration) {
        let started = Instant::now();
        loop {
            if let Some(health) = self.health(index) {
                if health["status"] == "ok" {
                    return;
                }
            }
            assert!(
                started.elapsed() < limit,
                "{} not ready within {limit:?}: {:?}\n{}",
                self.members[index].name,
                self.health(index),
                self.log_tail(index, 20)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Announces a specialist; the record's `(seq, id)` on a 201, `None` otherwise
    /// (a refusal or a dead node).
    pub fn announce(&self, index: usize, name: &str, endpoint: &str) -> Option<(u64, String)> {
        let url = format!("{}/v1/specialists", self.members[index].api);
        let body = serde_json::json!({
            "name": name,
            "capabilities": ["crash"],
            "endpoint": endpoint,
        });
        let response = self.http.post(url).json(&body).send().ok()?;
        if response.status().as_u16() != 201 {
            return None;
        }
        let value: serde_json::Value = response.json().ok()?;
        Some((
            value["seq"].as_u64()?,
            value["record"].as_str()?.to_string(),
        ))
    }

    /// The last `lines` lines member `index` logged.
    pub fn log_tail(&self, index: usize, lines: usize) -> String {
        let log = self.members[index].log.lock().unwrap();
        let start = log.len().saturating_sub(lines);
        log[start..].join("\n")
    }

    /// Every audit entry of member `index` (stopped) with its decoded evidence.
    pub fn audit(&self, index: usize) -> Vec<(Entry, Option<VerifiedRecord>)> {
        let path = self.members[index].dir.join("audit");
        let log = AuditLog::open_read_only(SledStore::open(&path).unwrap()).unwrap();
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let page = log
                .query(&tidings::audit::Query {
                    after_index: after,
                    limit: 4096,
                    ..Default::default()
                })
                .unwrap();
            let Some(last) = page.last() else { break };
            after = last.index;
            for entry in page {
                let evidence = entry
                    .record
                    .and_then(|key| log.evidence(&key).unwrap())
                    .and_then(|bytes| {
                        VerifiedRecord::from_bytes(&bytes, Some(&self.federation)).ok()
                    });
                out.push((entry, evidence));
            }
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Signal every process first, then wait: they stop in parallel.
        for member in &self.members {
            if let Some(child) = &member.child {
                let _ = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for member in &mut self.members {
            if let Some(mut child) = member.child.take() {
                while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
