//! A user-space link emulator for UDP: every datagram between the nodes of a
//! lab goes through it, and it delays, jitters, loses, duplicates and
//! reorders them, and cuts the links between the two sides of a partition.
//!
//! Node `j` listens on its own address `R_j` and is known to the others by a
//! *face* `A_j`, a socket of the emulator (the address in its record and in the
//! bootstrap lists). A node reaches the emulator only through faces, and the
//! emulator tells the two directions of each link apart by two sockets per node:
//!
//! - a datagram from `R_i` arriving on face `A_j` is on link `i → j`: it is sent
//!   on to `R_j` from `S_i`, node `i`'s *source* socket, so `j` sees it come from
//!   `S_i` and answers there;
//! - a datagram from `R_j` arriving on source socket `S_i` is the answer on link
//!   `j → i`: it is sent on to `R_i` from face `A_j`, the address `i` dialled.
//!
//! Both directions of every link are thus told apart with 2·N sockets, not N².
//! Datagrams from any other address are dropped. Each datagram that survives
//! loss and partition is sent after `delay ± jitter` (uniform), plus one more
//! delay with the reorder probability; a duplicate is sent with its own delay.
//! The kernel here has no netem, hence all of this in user space.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use rand::Rng;
use serde::Serialize;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// The largest datagram forwarded (QUIC's are at most about 1,500 bytes here).
const MAX_DATAGRAM: usize = 65_535;

/// What every link does to the datagrams it carries.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct LinkProfile {
    /// One-way delay, milliseconds.
    pub(crate) delay_ms: u64,
    /// The delay varies uniformly by up to this much either way.
    pub(crate) jitter_ms: u64,
    /// Probability that a datagram is lost.
    pub(crate) loss: f64,
    /// Probability that a datagram is sent twice.
    pub(crate) duplicate: f64,
    /// Probability that a datagram is held back one more delay (and so
    /// overtaken by later ones).
    pub(crate) reorder: f64,
}

impl LinkProfile {
    /// Checks that the probabilities are probabilities and the jitter fits.
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        for (name, p) in [
            ("loss", self.loss),
            ("duplicate", self.duplicate),
            ("reorder", self.reorder),
        ] {
            anyhow::ensure!(
                (0.0..1.0).contains(&p),
                "--{name} must be at least 0 and below 1 (got {p})"
            );
        }
        anyhow::ensure!(
            self.jitter_ms <= self.delay_ms,
            "--jitter-ms must not exceed --delay-ms"
        );
        anyhow::ensure!(self.delay_ms <= 10_000, "--delay-ms must be at most 10000");
        Ok(())
    }

    /// How long one datagram waits, drawn with `rng`.
    fn draw_delay(&self, rng: &mut impl Rng) -> Duration {
        let low = self.delay_ms - self.jitter_ms;
        let high = self.delay_ms + self.jitter_ms;
        let mut ms = rng.gen_range(low..=high);
        if self.reorder > 0.0 && rng.gen_bool(self.reorder) {
            ms += self.delay_ms.max(1);
        }
        Duration::from_millis(ms)
    }
}

/// Datagrams counted by the emulator since it started.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub(crate) struct LinkCounts {
    pub(crate) forwarded: u64,
    pub(crate) lost: u64,
    pub(crate) duplicated: u64,
    pub(crate) partitioned: u64,
    pub(crate) strangers: u64,
}

#[derive(Debug, Default)]
struct Counters {
    forwarded: AtomicU64,
    lost: AtomicU64,
    duplicated: AtomicU64,
    partitioned: AtomicU64,
    strangers: AtomicU64,
}

#[derive(Debug)]
struct Shared {
    profile: LinkProfile,
    /// Each node's own address.
    real: Vec<SocketAddr>,
    by_real: HashMap<SocketAddr, usize>,
    faces: Vec<Arc<UdpSocket>>,
    sources: Vec<Arc<UdpSocket>>,
    /// The side of each node while a partition lasts.
    sides: RwLock<Option<Vec<bool>>>,
    counters: Counters,
}

/// A running emulator; its tasks stop when it is dropped.
#[derive(Debug)]
pub(crate) struct LinkEmulator {
    shared: Arc<Shared>,
    faces: Vec<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

impl LinkEmulator {
    /// Binds a face and a source socket on `at` (loopback, or the hub's
    /// address in namespaces) for each node in `real` (the nodes' own
    /// addresses) and starts forwarding.
    pub(crate) async fn start(
        real: Vec<SocketAddr>,
        profile: LinkProfile,
        at: std::net::IpAddr,
    ) -> anyhow::Result<Self> {
        profile.validate()?;
        let mut faces = Vec::with_capacity(real.len());
        let mut sources = Vec::with_capacity(real.len());
        for _ in &real {
            let bind = |what: &'static str| async move {
                UdpSocket::bind((at, 0))
                    .await
                    .with_context(|| format!("cannot bind a {what} socket of the link emulator"))
            };
            faces.push(Arc::new(bind("face").await?));
            sources.push(Arc::new(bind("source").await?));
        }
        let face_addrs = faces
            .iter()
            .map(|socket| socket.local_addr())
            .collect::<Result<Vec<_>, _>>()?;
        let by_real = real
            .iter()
            .enumerate()
            .map(|(i, addr)| (*addr, i))
            .collect();
        let shared = Arc::new(Shared {
            profile,
            real,
            by_real,
            faces,
            sources,
            sides: RwLock::new(None),
            counters: Counters::default(),
        });
        let mut tasks = Vec::new();
        for node in 0..shared.real.len() {
            tasks.push(tokio::spawn(forward(shared.clone(), node, Socket::Face)));
            tasks.push(tokio::spawn(forward(shared.clone(), node, Socket::Source)));
        }
        Ok(Self {
            shared,
            faces: face_addrs,
            tasks,
        })
    }

    /// The address by which the others know node `i`.
    pub(crate) fn face(&self, i: usize) -> SocketAddr {
        self.faces[i]
    }

    /// Cuts every link between nodes on different sides (`sides[i]` is node
    /// `i`'s side) until [`LinkEmulator::heal`].
    pub(crate) fn partition(&self, sides: Vec<bool>) {
        *self
            .shared
            .sides
            .write()
            .unwrap_or_else(|poison| poison.into_inner()) = Some(sides);
    }

    /// Ends the partition.
    pub(crate) fn heal(&self) {
        *self
            .shared
            .sides
            .write()
            .unwrap_or_else(|poison| poison.into_inner()) = None;
    }

    /// Datagrams counted so far.
    pub(crate) fn counts(&self) -> LinkCounts {
        let c = &self.shared.counters;
        LinkCounts {
            forwarded: c.forwarded.load(Ordering::Relaxed),
            lost: c.lost.load(Ordering::Relaxed),
            duplicated: c.duplicated.load(Ordering::Relaxed),
            partitioned: c.partitioned.load(Ordering::Relaxed),
            strangers: c.strangers.load(Ordering::Relaxed),
        }
    }
}

impl Drop for LinkEmulator {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Socket {
    Face,
    Source,
}

/// Receives on node `node`'s face or source socket and forwards each datagram
/// along its link (see the module docs).
async fn forward(shared: Arc<Shared>, node: usize, socket: Socket) {
    let receiver = match socket {
        Socket::Face => shared.faces[node].clone(),
        Socket::Source => shared.sources[node].clone(),
    };
    let mut buffer = vec![0u8; MAX_DATAGRAM];
    loop {
        let Ok((length, from)) = receiver.recv_from(&mut buffer).await else {
            // An ICMP error from a node that stopped: keep serving the others.
            continue;
        };
        let Some(&peer) = shared.by_real.get(&from) else {
            shared.counters.strangers.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        // (link from, link to, send on, deliver to)
        let (sender, receiver_node, out) = match socket {
            Socket::Face => (peer, node, shared.sources[peer].clone()),
            Socket::Source => (peer, node, shared.faces[peer].clone()),
        };
        let destination = shared.real[receiver_node];
        if cut(&shared, sender, receiver_node) {
            shared.counters.partitioned.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let delays: Vec<Duration> = {
            let mut rng = rand::thread_rng();
            let profile = &shared.profile;
            if profile.loss > 0.0 && rng.gen_bool(profile.loss) {
                shared.counters.lost.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let copies = if profile.duplicate > 0.0 && rng.gen_bool(profile.duplicate) {
                shared.counters.duplicated.fetch_add(1, Ordering::Relaxed);
                2
            } else {
                1
            };
            (0..copies).map(|_| profile.draw_delay(&mut rng)).collect()
        };
        let datagram: Arc<[u8]> = Arc::from(&buffer[..length]);
        for delay in delays {
            let out = out.clone();
            let datagram = datagram.clone();
            let shared = shared.clone();
            tokio::spawn(async move {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                if out.send_to(&datagram, destination).await.is_ok() {
                    shared.counters.forwarded.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    }
}

/// Whether a partition cuts the link between `a` and `b`.
fn cut(shared: &Shared, a: usize, b: usize) -> bool {
    let sides = shared
        .sides
        .read()
        .unwrap_or_else(|poison| poison.into_inner());
    sides
        .as_ref()
        .is_some_and(|sides| sides.get(a) != sides.get(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(loss: f64) -> LinkProfile {
        LinkProfile {
            delay_ms: 5,
            jitter_ms: 2,
            loss,
            duplicate: 0.0,
            reorder: 0.0,
        }
    }

    /// Two plain UDP sockets standing in for nodes 0 and 1.
    async fn pair(profile: LinkProfile) -> (LinkEmulator, UdpSocket, UdpSocket) {
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let real = vec![a.local_addr().unwrap(), b.local_addr().unwrap()];
        let emulator = LinkEmulator::start(real, profile, std::net::Ipv4Addr::LOCALHOST.into())
            .await
            .unwrap();
        (emulator, a, b)
    }

    async fn receive(socket: &UdpSocket) -> Option<(Vec<u8>, SocketAddr)> {
        let mut buffer = [0u8; 64];
        let received =
            tokio::time::timeout(Duration::from_millis(300), socket.recv_from(&mut buffer)).await;
        let (length, from) = received.ok()?.ok()?;
        Some((buffer[..length].to_vec(), from))
    }

    #[tokio::test]
    async fn both_directions_of_a_link_pass_through_the_right_sockets() {
        let (emulator, a, b) = pair(profile(0.0)).await;
        a.send_to(b"hello", emulator.face(1)).await.unwrap();
        let (bytes, from) = receive(&b).await.expect("forwarded to node 1");
        assert_eq!(bytes, b"hello");
        // Node 1 answers where the datagram came from; node 0 sees the answer
        // come from the face it dialled.
        b.send_to(b"back", from).await.unwrap();
        let (bytes, from) = receive(&a).await.expect("answer forwarded to node 0");
        assert_eq!(bytes, b"back");
        assert_eq!(from, emulator.face(1));
        assert_eq!(emulator.counts().forwarded, 2);
    }

    #[tokio::test]
    async fn strangers_are_dropped_and_partitions_cut_until_healed() {
        let (emulator, a, b) = pair(profile(0.0)).await;
        let stranger = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        stranger.send_to(b"x", emulator.face(1)).await.unwrap();
        assert!(receive(&b).await.is_none());
        assert_eq!(emulator.counts().strangers, 1);
        emulator.partition(vec![false, true]);
        a.send_to(b"cut", emulator.face(1)).await.unwrap();
        assert!(receive(&b).await.is_none());
        assert_eq!(emulator.counts().partitioned, 1);
        emulator.heal();
        a.send_to(b"healed", emulator.face(1)).await.unwrap();
        assert_eq!(
            receive(&b).await.map(|(bytes, _)| bytes),
            Some(b"healed".to_vec())
        );
    }

    #[tokio::test]
    async fn loss_drops_about_its_share() {
        let (emulator, a, b) = pair(profile(0.5)).await;
        for _ in 0..400 {
            a.send_to(b"p", emulator.face(1)).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut received = 0;
        while receive(&b).await.is_some() {
            received += 1;
        }
        let counts = emulator.counts();
        assert_eq!(counts.lost + counts.forwarded, 400);
        assert_eq!(received, counts.forwarded);
        // Binomial(400, 0.5): outside 120..280 has a probability below 1e-15.
        assert!((120..280).contains(&received), "{received} of 400 passed");
    }

    #[test]
    fn profiles_are_checked() {
        assert!(profile(1.0).validate().is_err());
        assert!(LinkProfile {
            jitter_ms: 9,
            ..profile(0.0)
        }
        .validate()
        .is_err());
        assert!(profile(0.05).validate().is_ok());
    }
}
