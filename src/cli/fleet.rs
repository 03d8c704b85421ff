//! A federation of real `tidings run` processes on this machine, for the
//! network benchmarks: keys, roster and configuration files written into a
//! scratch directory, one child process per node, and the clients that drive
//! and observe them through their local APIs.
//!
//! Arrival times come from each node's watch stream (`GET /v1/watch`): the
//! harness holds one stream open per node and stamps each event when it
//! arrives, so a measurement needs no polling of N APIs (which would compete
//! for the same two cores with the nodes it measures).

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tidings::api::answers::{EventKind, SpecialistsAnswer, WatchEvent};
use tidings::keys::{Identity, NodeId, Roster};
use tidings::net::config::TEMPLATE;
use tidings::net::node::NEW_NODE_MARKER;
use tokio::sync::mpsc;

/// What each node of a fleet is configured with.
#[derive(Debug, Clone)]
pub(crate) struct FleetSpec {
    pub(crate) nodes: usize,
    pub(crate) interval_ms: u64,
    /// Text replacements applied to every configuration file.
    pub(crate) edits: Vec<(String, String)>,
}

/// A fleet whose files are written and addresses chosen, not yet started.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) members: Vec<Member>,
    spec: FleetSpec,
    /// The API token, when the APIs listen beyond loopback.
    token: Option<String>,
}

impl Prepared {
    /// Writes each node's configuration and starts the processes. With `faces`,
    /// node `i` is known to the others by `faces[i]` (its published address and
    /// the bootstrap entry), as behind a link emulator; it still listens on its
    /// own address.
    pub(crate) fn launch(self, faces: Option<&[SocketAddr]>) -> anyhow::Result<Fleet> {
        let Self {
            members,
            spec,
            token,
        } = self;
        let token_line = token
            .as_ref()
            .map_or(String::new(), |token| format!("api_token = \"{token}\""));
        let face = |i: usize| faces.map_or(members[i].listen, |faces| faces[i]);
        let bootstrap: Vec<String> = members
            .iter()
            .enumerate()
            .take(2)
            .map(|(i, member)| format!("\"{}@{}\"", member.id, face(i)))
            .collect();
        for (i, member) in members.iter().enumerate() {
            let mut text = TEMPLATE
                .replace("{api_token}", &token_line)
                .replace("{data_dir}", ".")
                .replace("{listen}", &member.listen.to_string())
                .replace("{bootstrap}", &bootstrap.join(", "))
                .replace("{api}", &member.api)
                .replace("{federation}", "fleet")
                .replace("{roster}", "../roster.toml")
                .replace(
                    "interval_ms = 1000",
                    &format!("interval_ms = {}", spec.interval_ms),
                );
            if faces.is_some() {
                let line = "# advertise = [\"203.0.113.7:7700\"]";
                anyhow::ensure!(text.contains(line), "the configuration template changed");
                text = text.replace(line, &format!("advertise = [\"{}\"]", face(i)));
            }
            for (from, to) in &spec.edits {
                anyhow::ensure!(
                    text.contains(from.as_str()),
                    "{from:?} is not in the configuration"
                );
                text = text.replace(from.as_str(), to);
            }
            text.push_str(&specialist_block(&format!("f{i}")));
            std::fs::write(member.dir.join("tidings.toml"), text)?;
        }
        let children = Arc::new(Mutex::new(Vec::new()));
        let on_interrupt = children.clone();
        super::interrupt::on_interrupt(Box::new(move || kill_all(&on_interrupt)));
        let exe = std::env::current_exe().context("cannot find this program's executable")?;
        for member in &members {
            let log = std::fs::File::create(member.dir.join("node.log"))?;
            let mut command = match &member.namespace {
                None => Command::new(&exe),
                Some(namespace) => {
                    // `ip netns exec` execs the program: the child is the node.
                    let mut command = Command::new("ip");
                    command.args(["netns", "exec", namespace]).arg(&exe);
                    command
                }
            };
            let child = command
                .args(["run", "--config", "tidings.toml"])
                .current_dir(&member.dir)
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .context("cannot start a node process")?;
            children
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(child);
        }
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = &token {
            headers.insert(
                reqwest::header::AUTHORIZATION,
                format!("Bearer {token}").parse()?,
            );
        }
        Ok(Fleet {
            members,
            children,
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .default_headers(headers)
                .build()?,
        })
    }
}

/// One running node.
#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) id: NodeId,
    pub(crate) listen: SocketAddr,
    pub(crate) api: String,
    dir: PathBuf,
    /// The network namespace the node runs in, if not this program's.
    namespace: Option<String>,
}

/// The running processes.
#[derive(Debug)]
pub(crate) struct Fleet {
    pub(crate) members: Vec<Member>,
    children: Arc<Mutex<Vec<Child>>>,
    http: reqwest::Client,
}

/// An event a node's watch stream reported: which node, which specialist, and
/// when the node saw it (its `at_ms`, milliseconds by this machine's clock,
/// which every process here shares).
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) node: usize,
    pub(crate) name: String,
    pub(crate) at_ms: u64,
}

/// This machine's clock in milliseconds since the Unix epoch, as the nodes
/// stamp their watch events.
pub(crate) fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

/// A port free for both UDP and TCP on loopback, below the kernel's usual
/// ephemeral range (32768 and up), so that no outgoing connection of this
/// program (the harness holds one watch stream per node) takes it between
/// the check and the node's start.
fn free_port(taken: &mut std::collections::HashSet<u16>) -> anyhow::Result<u16> {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    for _ in 0..10_000 {
        let port: u16 = rng.gen_range(10_000..32_000);
        if taken.contains(&port) {
            continue;
        }
        let udp = UdpSocket::bind(("127.0.0.1", port)).is_ok();
        let tcp = std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
        if udp && tcp {
            taken.insert(port);
            return Ok(port);
        }
    }
    bail!("no free port found between 10000 and 32000")
}

/// The specialist block every node of a fleet announces from its config.
fn specialist_block(name: &str) -> String {
    format!(
        "\n[[specialist]]\nname = \"{name}\"\ncapabilities = [\"fleet\"]\nendpoint = \"https://{name}.example/api\"\n"
    )
}

impl Fleet {
    /// Writes the keys, roster and configuration of `spec.nodes` nodes under
    /// `root` (every node bootstraps from the first two) and starts them.
    pub(crate) fn start(root: &Path, spec: &FleetSpec) -> anyhow::Result<Self> {
        Self::prepare(root, spec)?.launch(None)
    }

    /// Makes the keys, roster and addresses of `spec.nodes` nodes under `root`;
    /// nothing runs yet (see [`Prepared::launch`]).
    pub(crate) fn prepare(root: &Path, spec: &FleetSpec) -> anyhow::Result<Prepared> {
        anyhow::ensure!(spec.nodes >= 2, "a fleet needs at least 2 nodes");
        let identities: Vec<Identity> = (0..spec.nodes as u64)
            .map(|i| {
                Identity::from_seed(&blake3::derive_key("tidings fleet node", &i.to_le_bytes()))
            })
            .collect();
        let mut roster = Roster::new();
        for (i, identity) in identities.iter().enumerate() {
            roster.insert(identity.node_id(), Some(format!("f{i}")));
        }
        std::fs::write(root.join("roster.toml"), roster.to_toml())?;
        let mut members = Vec::new();
        let mut taken = std::collections::HashSet::new();
        for (i, identity) in identities.iter().enumerate() {
            let dir = root.join(format!("f{i}"));
            std::fs::create_dir_all(&dir)?;
            identity.save(&dir.join("node.key"), false)?;
            std::fs::write(dir.join(NEW_NODE_MARKER), "new\n")?;
            members.push(Member {
                id: identity.node_id(),
                listen: format!("127.0.0.1:{}", free_port(&mut taken)?).parse()?,
                api: format!("127.0.0.1:{}", free_port(&mut taken)?),
                dir,
                namespace: None,
            });
        }
        Ok(Prepared {
            members,
            spec: spec.clone(),
            token: None,
        })
    }

    /// As [`Fleet::prepare`], with node `i` to run in network namespace
    /// `namespaces[i]` at `addresses[i]` (gossip and API on fixed ports there;
    /// the APIs take a token, being off loopback).
    pub(crate) fn prepare_in_namespaces(
        root: &Path,
        spec: &FleetSpec,
        namespaces: Vec<(String, std::net::Ipv4Addr)>,
    ) -> anyhow::Result<Prepared> {
        anyhow::ensure!(namespaces.len() == spec.nodes, "one namespace per node");
        let mut prepared = Self::prepare(root, spec)?;
        for (member, (namespace, address)) in prepared.members.iter_mut().zip(namespaces) {
            member.listen = SocketAddr::from((address, super::netns::GOSSIP_PORT));
            member.api = format!("{address}:{}", super::netns::API_PORT);
            member.namespace = Some(namespace);
        }
        // The APIs are reached from the hub namespace, so not on loopback: a
        // fresh random token for this fleet.
        prepared.token = Some(format!("{:032x}", rand::random::<u128>()));
        Ok(prepared)
    }

    /// The URL of `path` on node `i`'s API.
    fn url(&self, i: usize, path: &str) -> String {
        format!("http://{}{path}", self.members[i].api)
    }

    /// Waits until every node holds at least `count` specialists.
    pub(crate) async fn wait_converged(
        &self,
        count: usize,
        limit: Duration,
    ) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let mut pending: Vec<usize> = (0..self.members.len()).collect();
        while !pending.is_empty() {
            let mut still = Vec::new();
            for &i in &pending {
                let held = self.specialists(i).await.unwrap_or(0);
                if held < count {
                    still.push(i);
                }
            }
            pending = still;
            if pending.is_empty() {
                break;
            }
            if started.elapsed() > limit {
                bail!(
                    "{} of {} nodes did not hold {count} specialists within {limit:?}; first: f{} (its log: {})",
                    pending.len(),
                    self.members.len(),
                    pending[0],
                    self.members[pending[0]].dir.join("node.log").display()
                );
            }
            self.check_alive()?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(started.elapsed())
    }

    async fn specialists(&self, i: usize) -> anyhow::Result<usize> {
        let found: SpecialistsAnswer = self
            .http
            .get(self.url(i, "/v1/specialists"))
            .timeout(Duration::from_secs(5))
            .send()
            .await?
            .json()
            .await?;
        Ok(found.specialists.len())
    }

    /// Fails if a node process has exited.
    pub(crate) fn check_alive(&self) -> anyhow::Result<()> {
        let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        for (i, child) in children.iter_mut().enumerate() {
            if let Some(status) = child.try_wait()? {
                let log = std::fs::read_to_string(self.members[i].dir.join("node.log"))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                bail!(
                    "node f{i} exited ({status}); the end of its log:\n{}",
                    tail.join("\n")
                );
            }
        }
        Ok(())
    }

    /// Has node `i` announce a specialist `name`; returns once it answered
    /// (the record is durable and spreading).
    pub(crate) async fn announce(&self, i: usize, name: &str) -> anyhow::Result<()> {
        let body = serde_json::json!({
            "name": name,
            "capabilities": ["fleet"],
            "endpoint": format!("https://{name}.example/api"),
        });
        let response = self
            .http
            .post(self.url(i, "/v1/specialists"))
            .json(&body)
            .timeout(Duration::from_secs(10))
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "node f{i} refused the announcement: {}",
            response.text().await.unwrap_or_default()
        );
        Ok(())
    }

    /// Opens every node's watch stream; events arrive on the returned channel.
    pub(crate) async fn watch(&self) -> anyhow::Result<mpsc::UnboundedReceiver<Seen>> {
        let (sender, receiver) = mpsc::unbounded_channel();
        for i in 0..self.members.len() {
            let response = self
                .http
                .get(self.url(i, "/v1/watch"))
                .send()
                .await
                .with_context(|| format!("cannot open node f{i}'s watch stream"))?;
            anyhow::ensure!(
                response.status().is_success(),
                "node f{i} refused a watch stream"
            );
            tokio::spawn(follow(i, response, sender.clone()));
        }
        Ok(receiver)
    }

    /// CPU time every node process has used so far, in seconds (from
    /// `/proc/PID/task/*/schedstat`, nanoseconds, summed over its threads; the
    /// clock-tick counts of `/proc/PID/stat` are too coarse for short windows).
    pub(crate) fn cpu_seconds(&self) -> Vec<f64> {
        let children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        children
            .iter()
            .map(|child| process_cpu_ns(child.id()).map_or(f64::NAN, |ns| ns as f64 / 1e9))
            .collect()
    }

    /// Bytes node `i` has sent (QUIC frames, from its metrics).
    pub(crate) async fn bytes_sent(&self, i: usize) -> anyhow::Result<f64> {
        self.metric(i, "tidings_bytes_sent_total").await
    }

    /// A metric of node `i` (the first line that starts with `name `).
    pub(crate) async fn metric(&self, i: usize, name: &str) -> anyhow::Result<f64> {
        let prefix = format!("{name} ");
        let text = self.metrics_text(i).await?;
        text.lines()
            .find_map(|line| line.strip_prefix(prefix.as_str()))
            .and_then(|value| value.trim().parse().ok())
            .with_context(|| format!("no {name} in node f{i}'s metrics"))
    }

    /// Every series of the labelled metric `name` of node `i`: the value of its
    /// label `label` and the metric's value.
    pub(crate) async fn labelled(
        &self,
        i: usize,
        name: &str,
        label: &str,
    ) -> anyhow::Result<Vec<(String, f64)>> {
        let prefix = format!("{name}{{{label}=\"");
        let text = self.metrics_text(i).await?;
        Ok(text
            .lines()
            .filter_map(|line| {
                let (kind, rest) = line.strip_prefix(prefix.as_str())?.split_once("\"}")?;
                Some((kind.to_string(), rest.trim().parse().ok()?))
            })
            .collect())
    }

    async fn metrics_text(&self, i: usize) -> anyhow::Result<String> {
        Ok(self
            .http
            .get(self.url(i, "/metrics"))
            .timeout(Duration::from_secs(5))
            .send()
            .await?
            .text()
            .await?)
    }

    /// Stops every node (SIGKILL: the scratch directory goes with it).
    pub(crate) fn stop(self) {
        kill_all(&self.children);
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        kill_all(&self.children);
    }
}

fn kill_all(children: &Mutex<Vec<Child>>) {
    let mut children = children.lock().unwrap_or_else(|p| p.into_inner());
    for child in children.iter_mut() {
        let _ = child.kill();
    }
    for child in children.iter_mut() {
        let _ = child.wait();
    }
    children.clear();
}

/// Reads one watch stream, sending each added or updated specialist.
async fn follow(node: usize, mut response: reqwest::Response, sender: mpsc::UnboundedSender<Seen>) {
    let mut buffer = String::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            for data in event.lines().filter_map(|line| line.strip_prefix("data:")) {
                let Ok(event) = serde_json::from_str::<WatchEvent>(data.trim()) else {
                    continue;
                };
                if !matches!(event.event, EventKind::Added | EventKind::Updated) {
                    continue;
                }
                if let Some(specialist) = event.specialist {
                    let seen = Seen {
                        node,
                        name: specialist.name,
                        at_ms: event.at_ms,
                    };
                    if sender.send(seen).is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// Announces `name` on node `announcer`; returns the milliseconds until the
/// last node saw it.
pub(crate) async fn time_one(
    fleet: &Fleet,
    events: &mut mpsc::UnboundedReceiver<Seen>,
    announcer: usize,
    name: &str,
    limit: Duration,
) -> anyhow::Result<Timed> {
    let started = wall_ms();
    fleet.announce(announcer, name).await?;
    let answered = wall_ms();
    let nodes = fleet.members.len();
    let last = wait_seen(events, nodes, &[name.to_string()], limit).await?;
    Ok(Timed {
        answered_ms: answered.saturating_sub(started) as f64,
        all_ms: last[0].saturating_sub(started) as f64,
    })
}

/// The times of new records (one, or one per node at once), from the requests
/// to their nodes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timed {
    /// Until the node (the last node) answered: its record and audit entry
    /// were durable (a record leaves its node only then).
    pub(crate) answered_ms: f64,
    /// Until the last node's watch stream reported it (every one of them).
    pub(crate) all_ms: f64,
}

/// Every node announces `{label}-f{i}` at once; returns when every node had
/// answered and when every node saw every announcement.
pub(crate) async fn time_burst(
    fleet: &Fleet,
    events: &mut mpsc::UnboundedReceiver<Seen>,
    label: &str,
    limit: Duration,
) -> anyhow::Result<Timed> {
    let nodes = fleet.members.len();
    let names: Vec<String> = (0..nodes).map(|i| format!("{label}-f{i}")).collect();
    let started = wall_ms();
    let announced = futures_join(
        names
            .iter()
            .enumerate()
            .map(|(i, name)| fleet.announce(i, name)),
    )
    .await;
    for result in announced {
        result?;
    }
    let answered = wall_ms();
    let last = wait_seen(events, nodes, &names, limit).await?;
    let done = last.iter().max().copied().unwrap_or(started);
    Ok(Timed {
        answered_ms: answered.saturating_sub(started) as f64,
        all_ms: done.saturating_sub(started) as f64,
    })
}

/// Runs every future at once and returns their outputs in order.
async fn futures_join<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = futures.map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in pinned.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs
        .into_iter()
        .map(|o| o.expect("every future finished"))
        .collect()
}

/// Collects watch events until every node has seen every name in `names`;
/// returns, per name, when the last node saw it (`at_ms`).
pub(crate) async fn wait_seen(
    events: &mut mpsc::UnboundedReceiver<Seen>,
    nodes: usize,
    names: &[String],
    limit: Duration,
) -> anyhow::Result<Vec<u64>> {
    let mut seen: HashMap<&str, Vec<Option<u64>>> = names
        .iter()
        .map(|name| (name.as_str(), vec![None; nodes]))
        .collect();
    let mut missing = nodes * names.len();
    let deadline = tokio::time::Instant::now() + limit;
    while missing > 0 {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .map_err(|_| anyhow::anyhow!("{missing} arrivals still missing after {limit:?}"))?
            .context("every watch stream ended")?;
        if let Some(slot) = seen
            .get_mut(event.name.as_str())
            .and_then(|slots| slots.get_mut(event.node))
        {
            if slot.is_none() {
                *slot = Some(event.at_ms);
                missing -= 1;
            }
        }
    }
    Ok(names
        .iter()
        .map(|name| {
            seen[name.as_str()]
                .iter()
                .flatten()
                .max()
                .copied()
                .expect("every node saw it")
        })
        .collect())
}

/// Nanoseconds on CPU of every thread of process `pid`.
pub(crate) fn process_cpu_ns(pid: u32) -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = task.ok()?.path().join("schedstat");
        // A thread may end between the listing and the read.
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        total += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}
