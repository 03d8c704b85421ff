//! The node's time: the wall clock read once at start, plus monotonic elapsed time.
//!
//! The protocol state machine needs milliseconds since the Unix epoch (records
//! carry issue and expiry times) that never go backwards: a wall clock stepped
//! back would stall rounds and freeze token buckets and score decay, and stepped
//! forward would expire everything at once. So the node reads the wall clock once,
//! when it starts, and from then on adds the time a monotonic clock says has
//! passed. A wall clock that is later stepped does not move the node's time; the
//! node notices the difference ([`NodeTime::wall_step_ms`]) and warns, and it
//! compares its time with its peers' (see `proto::clock`). One exception: when the
//! wall clock is ahead of the node's time and its peers agree (a machine that was
//! suspended, where the monotonic clock stood still, or a clock set right after
//! the node started), the node moves its time forward ([`NodeTime::advance`]);
//! never backward.
//!
//! [`Clock`] is the source of both readings, so tests can step the wall clock of a
//! running node ([`SteppedClock`]).

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where a node reads time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Milliseconds since the Unix epoch, as the operating system's clock says now.
    fn wall_ms(&self) -> u64;
    /// Time elapsed since an arbitrary fixed origin, never going backwards.
    fn monotonic(&self) -> Duration;
}

/// The operating system's clocks.
#[derive(Debug)]
pub struct SystemClock {
    origin: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn wall_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_millis() as u64
    }

    fn monotonic(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// The system clocks with a wall clock that can be stepped (tests and
/// experiments): what an operator's `date -s` or a bad NTP step does to a node.
#[derive(Debug, Default)]
pub struct SteppedClock {
    system: SystemClock,
    step_ms: AtomicI64,
}

impl SteppedClock {
    /// A clock whose wall reading is off by `offset_ms` from the system's.
    pub fn with_offset(offset_ms: i64) -> Self {
        let clock = Self::default();
        clock.step(offset_ms);
        clock
    }

    /// Steps the wall clock by `delta_ms` (negative: back).
    pub fn step(&self, delta_ms: i64) {
        self.step_ms.fetch_add(delta_ms, Ordering::SeqCst);
    }
}

impl Clock for SteppedClock {
    fn wall_ms(&self) -> u64 {
        self.system
            .wall_ms()
            .saturating_add_signed(self.step_ms.load(Ordering::SeqCst))
    }

    fn monotonic(&self) -> Duration {
        self.system.monotonic()
    }
}

/// A node's time: wall time at start plus monotonic elapsed time.
#[derive(Debug, Clone)]
pub struct NodeTime {
    clock: Arc<dyn Clock>,
    wall_at_start_ms: u64,
    monotonic_at_start: Duration,
}

impl NodeTime {
    /// Starts counting from `clock`'s wall time now.
    pub fn start(clock: Arc<dyn Clock>) -> Self {
        Self {
            wall_at_start_ms: clock.wall_ms(),
            monotonic_at_start: clock.monotonic(),
            clock,
        }
    }

    /// Milliseconds since the Unix epoch, as this node counts them: never going
    /// backwards, unmoved by wall clock steps.
    pub fn now_ms(&self) -> u64 {
        let elapsed = self
            .clock
            .monotonic()
            .saturating_sub(self.monotonic_at_start);
        self.wall_at_start_ms
            .saturating_add(elapsed.as_millis() as u64)
    }

    /// Moves the node's time forward by `ms` (it never moves back).
    pub fn advance(&mut self, ms: u64) {
        self.wall_at_start_ms = self.wall_at_start_ms.saturating_add(ms);
    }

    /// How far the wall clock has moved from the node's time since start
    /// (positive: stepped forward).
    pub fn wall_step_ms(&self) -> i64 {
        let wall = i128::from(self.clock.wall_ms());
        let node = i128::from(self.now_ms());
        (wall - node).clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_steps_move_neither_way_the_node_time() {
        let clock = Arc::new(SteppedClock::default());
        let time = NodeTime::start(clock.clone());
        let before = time.now_ms();
        clock.step(-3_600_000);
        let after_back = time.now_ms();
        assert!(after_back >= before, "never backwards");
        assert!(time.wall_step_ms() <= -3_599_000);
        clock.step(7_200_000);
        let after_forward = time.now_ms();
        assert!(after_forward >= after_back);
        assert!(after_forward - before < 1_000, "no jump forward either");
        assert!(time.wall_step_ms() >= 3_599_000);
        std::thread::sleep(Duration::from_millis(20));
        assert!(time.now_ms() >= after_forward + 15, "it keeps counting");
    }

    #[test]
    fn an_offset_at_start_is_kept() {
        let clock = Arc::new(SteppedClock::with_offset(7_200_000));
        let time = NodeTime::start(clock);
        let wall = SystemClock::default().wall_ms();
        assert!(time.now_ms() >= wall + 7_199_000);
        assert!(time.wall_step_ms().abs() < 1_000);
    }
}
