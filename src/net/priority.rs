//! Background threads yield the cores to the network thread.
//!
//! A node's audit writer appends what the node saw, and makes it durable
//! within [`FLUSH_INTERVAL`](tidings_audit::writer::FLUSH_INTERVAL); nothing waits for
//! an append except that bound (and an explicit flush). The network thread
//! instead is on the path of every record spreading through the federation: a
//! record reaches the last of 64 processes after 7 or 8 hops, and each hop is
//! a wake-up of the next node's network thread. When the cores are saturated
//! (64 processes on 2 cores, every node just reached by the same record), the
//! audit writers of the nodes a record has already reached competed with the
//! network threads of the nodes it was reaching: the writer's appends (a
//! B-tree insert in sled, and the log writes they seal) cost more CPU per
//! record than the signature check.
//!
//! So the writer thread lowers its own priority to [`BACKGROUND_NICE`]. It
//! still runs whenever a core is free, and on a saturated core it gets about a
//! tenth of a normal thread's share; if it falls behind, its bounded queue
//! makes the node wait for it (backpressure, never loss). What the node waits
//! for (its own record's audit entry made durable before the record leaves)
//! is done on the waiting thread, at its priority, not by the writer thread
//! (see `tidings_audit::writer`). Measured with `tidings bench net` at 64 processes, runs of the
//! same binary interleaved with the writer's priority put back for the control:
//! one new record reached every node in medians of 21-23 ms instead of 30-37 ms
//! (200 ms and 1 s intervals), with every node publishing at once unchanged
//! within noise.
//!
//! Only Linux has per-thread nice values (`setpriority` on the calling thread's
//! id); elsewhere the call would lower the whole process, so it does nothing.
//! A failure (a sandbox that forbids it) is reported and otherwise ignored: the
//! node is then as fast as before, never wrong.

/// The nice value background threads take (0 is the default, 19 the lowest).
pub const BACKGROUND_NICE: i32 = 10;

/// Lowers the calling thread's scheduling priority to [`BACKGROUND_NICE`], if
/// it is not that low already (Linux only; see the module documentation).
pub fn lower_this_thread() -> Result<(), String> {
    #[cfg(target_os = "linux")]
    {
        // On Linux, PRIO_PROCESS with no id (0) names the calling thread alone.
        // A thread already as low (a node started under `nice`) stays as it is:
        // this only ever lowers.
        let now = rustix::process::getpriority_process(None).map_err(|e| e.to_string())?;
        if now >= BACKGROUND_NICE {
            return Ok(());
        }
        rustix::process::setpriority_process(None, BACKGROUND_NICE)
            .map_err(|error| error.to_string())
    }
    #[cfg(not(target_os = "linux"))]
    {
        Ok(())
    }
}

/// Lowers the calling thread's priority, saying so in the log when it cannot
/// (what a background thread runs first; see the module documentation).
pub fn background() {
    if let Err(error) = lower_this_thread() {
        tracing::debug!(%error, "this thread keeps the normal scheduling priority");
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn nice_of_this_thread() -> i32 {
        rustix::process::getpriority_process(None).expect("getpriority on this thread")
    }

    #[test]
    fn a_background_thread_is_lowered_and_no_other_thread_is() {
        let before = nice_of_this_thread();
        let lowered = std::thread::spawn(|| {
            lower_this_thread().expect("lowering one's own priority needs no privilege");
            nice_of_this_thread()
        })
        .join()
        .expect("the lowered thread ran");
        // Lowering is allowed without privileges; raising back is not, so the
        // thread that ran it is gone and the test thread must be untouched.
        assert_eq!(lowered, BACKGROUND_NICE.max(before));
        assert_eq!(
            nice_of_this_thread(),
            before,
            "the call lowered another thread than the one that made it"
        );
        let sibling = std::thread::spawn(nice_of_this_thread)
            .join()
            .expect("the sibling thread ran");
        assert_eq!(
            sibling, before,
            "threads started later inherited the nice value"
        );
    }
}
