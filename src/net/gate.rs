//! Which incoming handshakes a node takes on, before any cryptography.
//!
//! A QUIC handshake costs the accepting node state and a signature before it
//! knows who is calling, and anyone who can send UDP can start one. So handshakes
//! run concurrently, each bounded by [`HANDSHAKE_TIMEOUT`] (a silent caller delays
//! nobody but itself), and the gate bounds how many are pending:
//!
//! - at most [`PER_SOURCE`] from one IP address and [`TOTAL`] in all;
//! - above [`VALIDATE_ABOVE`] pending in all, or above the per-address bound, a
//!   caller whose address QUIC has not yet validated gets a Retry (a stateless
//!   round trip that proves it receives at its address) instead of state;
//! - beyond the bounds, validated or not, the attempt is refused at once;
//! - an address whose handshakes keep coming to nothing (they fail, present a key
//!   off the roster, or a banned key) is refused at once beyond
//!   [`WASTED_BURST`] such handshakes, then admitted [`WASTED_PER_SECOND`] times
//!   a second: a banned key that dials again and again costs a few handshakes a
//!   second, not a core. Honest nodes behind the same address share its budget,
//!   but they keep their connections open and rarely dial.
//!
//! An admitted peer's own handshake therefore never waits behind unanswered ones,
//! and a flood from spoofed addresses costs the node nothing but Retry packets.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest a handshake may take before it is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);

/// Handshakes pending at once from one IP address.
pub const PER_SOURCE: usize = 16;

/// Handshakes pending at once in all.
pub const TOTAL: usize = 256;

/// Pending handshakes above which unvalidated addresses must answer a Retry.
pub const VALIDATE_ABOVE: usize = 32;

/// Handshakes from one address that may come to nothing at once.
pub const WASTED_BURST: u32 = 16;

/// Handshakes from one address that may come to nothing per second, after the burst.
pub const WASTED_PER_SECOND: u32 = 2;

/// Addresses whose wasted handshakes are remembered; beyond it the oldest
/// memories are dropped (a spoofed-address flood never reaches here: it gets
/// Retry packets).
const WASTED_REMEMBERED: usize = 4096;

/// What to do with an incoming attempt.
#[derive(Debug)]
pub enum Decision {
    /// Take it on; the ticket counts it as pending until dropped.
    Accept(Ticket),
    /// Ask it to prove its address first (QUIC Retry).
    Retry,
    /// Turn it away.
    Refuse,
}

#[derive(Debug, Default)]
struct Pending {
    total: usize,
    by_source: HashMap<IpAddr, usize>,
    /// Per address: wasted-handshake allowance left (in thousandths), and when.
    wasted: HashMap<IpAddr, (u64, Instant)>,
}

impl Pending {
    fn allowance(&self, source: &IpAddr, now: Instant) -> u64 {
        let full = u64::from(WASTED_BURST) * 1000;
        match self.wasted.get(source) {
            None => full,
            Some((left, at)) => {
                let gained = now.saturating_duration_since(*at).as_millis() as u64
                    * u64::from(WASTED_PER_SECOND);
                left.saturating_add(gained).min(full)
            }
        }
    }
}

/// The pending-handshake counters.
#[derive(Debug, Clone, Default)]
pub struct Gate {
    pending: Arc<Mutex<Pending>>,
}

/// One pending handshake; released when dropped.
#[derive(Debug)]
pub struct Ticket {
    gate: Gate,
    source: IpAddr,
}

impl Gate {
    /// Decides on an attempt from `source`, whose address QUIC has validated or not.
    pub fn admit(&self, source: IpAddr, validated: bool) -> Decision {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if pending.allowance(&source, Instant::now()) < 1000 {
            return Decision::Refuse;
        }
        let from_source = pending.by_source.get(&source).copied().unwrap_or(0);
        let crowded = from_source >= PER_SOURCE || pending.total >= VALIDATE_ABOVE;
        if pending.total >= TOTAL || (crowded && validated && from_source >= PER_SOURCE) {
            return Decision::Refuse;
        }
        if crowded && !validated {
            return Decision::Retry;
        }
        pending.total += 1;
        *pending.by_source.entry(source).or_insert(0) += 1;
        Decision::Accept(Ticket {
            gate: self.clone(),
            source,
        })
    }

    /// Notes that a handshake from `source` came to nothing: it failed, or
    /// presented a key that is not admitted or is banned.
    pub fn wasted(&self, source: IpAddr) {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let now = Instant::now();
        let left = pending.allowance(&source, now).saturating_sub(1000);
        if pending.wasted.len() >= WASTED_REMEMBERED && !pending.wasted.contains_key(&source) {
            let full = u64::from(WASTED_BURST) * 1000;
            let refilled: Vec<IpAddr> = pending
                .wasted
                .keys()
                .filter(|ip| pending.allowance(ip, now) >= full)
                .copied()
                .collect();
            for ip in refilled {
                pending.wasted.remove(&ip);
            }
            if pending.wasted.len() >= WASTED_REMEMBERED {
                return;
            }
        }
        pending.wasted.insert(source, (left, now));
    }

    /// Handshakes pending now.
    pub fn pending(&self) -> usize {
        self.pending
            .lock()
            .map(|pending| pending.total)
            .unwrap_or(0)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut pending = self
            .gate
            .pending
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        pending.total = pending.total.saturating_sub(1);
        if let Some(count) = pending.by_source.get_mut(&self.source) {
            *count -= 1;
            if *count == 0 {
                pending.by_source.remove(&self.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn one_source_is_bounded_and_others_still_get_in() {
        let gate = Gate::default();
        let mut tickets = Vec::new();
        for _ in 0..PER_SOURCE {
            match gate.admit(ip(1), true) {
                Decision::Accept(ticket) => tickets.push(ticket),
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(gate.admit(ip(1), false), Decision::Retry));
        assert!(matches!(gate.admit(ip(1), true), Decision::Refuse));
        assert!(matches!(gate.admit(ip(2), true), Decision::Accept(_)));
        drop(tickets.pop());
        assert!(matches!(gate.admit(ip(1), true), Decision::Accept(_)));
    }

    #[test]
    fn an_address_whose_handshakes_come_to_nothing_is_slowed() {
        let gate = Gate::default();
        for _ in 0..WASTED_BURST {
            assert!(matches!(gate.admit(ip(1), true), Decision::Accept(_)));
            gate.wasted(ip(1));
        }
        assert!(matches!(gate.admit(ip(1), true), Decision::Refuse));
        assert!(matches!(gate.admit(ip(2), true), Decision::Accept(_)));
        std::thread::sleep(Duration::from_millis(
            1000 / u64::from(WASTED_PER_SECOND) + 50,
        ));
        assert!(matches!(gate.admit(ip(1), true), Decision::Accept(_)));
    }

    #[test]
    fn under_load_unvalidated_addresses_are_asked_to_retry() {
        let gate = Gate::default();
        let tickets: Vec<Ticket> = (0..VALIDATE_ABOVE as u8)
            .map(|n| match gate.admit(ip(n), false) {
                Decision::Accept(ticket) => ticket,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(gate.pending(), VALIDATE_ABOVE);
        assert!(matches!(gate.admit(ip(200), false), Decision::Retry));
        assert!(matches!(gate.admit(ip(200), true), Decision::Accept(_)));
        drop(tickets);
        assert_eq!(gate.pending(), 0);
        assert!(matches!(gate.admit(ip(200), false), Decision::Accept(_)));
    }
}
