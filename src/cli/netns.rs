//! Linux network namespaces for `tidings lab --netns`: every node in a
//! namespace of its own, as if on a machine of its own.
//!
//! The layout, for a lab of N nodes with prefix `P` (`tl` and this process's
//! id, so that two labs never meet):
//!
//! - a hub namespace `P-hub` holding a bridge `br0` with address
//!   [`HUB_ADDRESS`]; the link emulator and the lab's measuring process run
//!   there;
//! - for each node `i`, a namespace `P-i` with one end of a veth pair (`eth0`,
//!   address [`node_address`]`(i)`), the other end a port of the bridge.
//!
//! Every address is inside a namespace: the host's own interfaces, routes and
//! addresses are not touched. A node's QUIC datagrams leave its namespace only
//! through its veth, to the emulator's sockets on the hub, which pass them on
//! (delayed, lost, reordered) to the other nodes, so no datagram between two
//! nodes skips the emulator. The API of each node listens on its namespace's
//! address with a token, since the lab reaches it from the hub.
//!
//! Making namespaces needs root and the `ip` command of iproute2; [`check`]
//! says which is missing, and the lab falls back to loopback. [`Namespaces`]
//! deletes everything it made when dropped, and on Ctrl-C through the
//! interrupt hooks (deleting a namespace deletes the veth ends and the bridge
//! inside it).

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context};

/// The hub's address on the lab's bridge: the link emulator's sockets.
pub(crate) const HUB_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 1);

/// The port every node listens on for gossip (each in its own namespace).
pub(crate) const GOSSIP_PORT: u16 = 7700;

/// The port of every node's API.
pub(crate) const API_PORT: u16 = 7780;

/// Most nodes the address plan holds (10.201.1.1 to 10.201.254.254).
pub(crate) const MAX_NODES: usize = 254 * 254;

/// Node `i`'s address inside its namespace.
pub(crate) fn node_address(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 201, (1 + i / 254) as u8, (1 + i % 254) as u8)
}

/// Whether this machine can make namespaces: root and `ip`. The error says
/// what is missing.
pub(crate) fn check() -> Result<(), String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|error| format!("cannot read /proc/self/status ({error})"))?;
    let root = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .is_some_and(|effective| effective == "0");
    if !root {
        return Err("it needs root".into());
    }
    let ip = Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match ip {
        Ok(status) if status.success() => Ok(()),
        _ => Err("it needs the `ip` command (iproute2)".into()),
    }
}

/// The namespaces of one lab; deleted when dropped.
#[derive(Debug)]
pub(crate) struct Namespaces {
    prefix: String,
    nodes: usize,
    made: Arc<Mutex<Vec<String>>>,
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("cannot run `ip`")?;
    if !output.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

fn delete_all(made: &Mutex<Vec<String>>) {
    let names = std::mem::take(&mut *made.lock().unwrap_or_else(|p| p.into_inner()));
    for name in names.iter().rev() {
        let _ = ip(&["netns", "del", name]);
    }
}

impl Namespaces {
    /// Makes the hub and `nodes` node namespaces, wired to the hub's bridge.
    pub(crate) fn create(nodes: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(
            nodes <= MAX_NODES,
            "--netns holds at most {MAX_NODES} nodes"
        );
        let prefix = format!("tl{}", std::process::id());
        let made = Arc::new(Mutex::new(Vec::new()));
        let on_interrupt = made.clone();
        super::interrupt::on_interrupt(Box::new(move || delete_all(&on_interrupt)));
        let namespaces = Self {
            prefix,
            nodes,
            made,
        };
        namespaces.wire()?;
        Ok(namespaces)
    }

    fn add(&self, name: &str) -> anyhow::Result<()> {
        ip(&["netns", "add", name])?;
        self.made
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(name.to_string());
        ip(&["-n", name, "link", "set", "lo", "up"])
    }

    fn wire(&self) -> anyhow::Result<()> {
        let hub = self.hub();
        self.add(&hub)?;
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        let hub_address = format!("{HUB_ADDRESS}/16");
        ip(&["-n", &hub, "addr", "add", &hub_address, "dev", "br0"])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        for i in 0..self.nodes {
            let name = self.node(i);
            self.add(&name)?;
            let port = format!("p{i}");
            ip(&[
                "link", "add", "eth0", "netns", &name, "type", "veth", "peer", "name", &port,
                "netns", &hub,
            ])?;
            let address = format!("{}/16", node_address(i));
            ip(&["-n", &name, "addr", "add", &address, "dev", "eth0"])?;
            ip(&["-n", &name, "link", "set", "eth0", "up"])?;
            ip(&["-n", &hub, "link", "set", &port, "master", "br0"])?;
            ip(&["-n", &hub, "link", "set", &port, "up"])?;
        }
        Ok(())
    }

    /// The hub namespace's name.
    pub(crate) fn hub(&self) -> String {
        format!("{}-hub", self.prefix)
    }

    /// Node `i`'s namespace's name.
    pub(crate) fn node(&self, i: usize) -> String {
        format!("{}-{i}", self.prefix)
    }

    /// The prefix, which names every namespace of this lab.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        delete_all(&self.made);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_addresses_are_distinct_and_never_the_hub() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..MAX_NODES {
            let address = node_address(i);
            assert_ne!(address, HUB_ADDRESS);
            let [_, _, third, fourth] = address.octets();
            assert!(
                (1..=254).contains(&third) && (1..=254).contains(&fourth),
                "{address}"
            );
            assert!(seen.insert(address), "{address} twice");
        }
    }
}
