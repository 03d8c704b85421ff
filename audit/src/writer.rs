//! [`AuditWriter`]: the log's own thread, fed through a bounded queue.
//!
//! Senders hand entries to the queue and go on; the thread appends what is
//! queued [`LINGER`] after the first entry came (in atomic batches of up to
//! [`BATCH`] entries). When the queue is full, senders **wait**:
//! backpressure, never loss. A hand-over does not wake the thread: only the
//! first entry after an append, a full queue and a shutdown do.
//!
//! What is durable when: an entry is in the store once its batch is applied; the
//! writer makes applied batches durable (fsync) [`FLUSH_INTERVAL`] after the
//! oldest entry not yet durable was handed over, so that one fsync covers
//! whatever came meanwhile, and a record spreading through the federation is
//! not slowed by every node syncing its log at once as it arrives. A crash
//! loses at most what was not yet durable, and always whole batches: the chain
//! and the indexes stay consistent.
//!
//! Whoever waits does the work. [`WriterHandle::flush`] (a node publishing its
//! own record, whose audit entry must be durable with it) and
//! [`WriterHandle::settle`] (a reader) append what is queued, and sync, on the
//! caller's own thread, under the lock the writer thread appends under: they
//! return only after everything sent before them is appended (and, for a
//! flush, on disk), and wait for the writer thread only to finish an append or
//! a sync it is in the middle of. The writer thread runs at a low priority (see
//! [`AuditWriter::spawn_with`]); a caller that waited for it to get a core
//! waited behind every busier thread of the machine.
//!
//! A failed append or sync stops the log for everyone, whoever ran it: it is
//! recorded under the same lock, so no later append or sync follows it (a
//! sync after a failed one could say that data is durable that is not), and
//! every call after it fails. So does a thread that panicked while it held the
//! log. A hand-over is never split between two appends. When every node of 64
//! processes on two cores published at once, the last node answered its
//! publication after a median of 580-650 ms when the writer appended and synced
//! for it, and 306-333 ms with the writer at the normal priority (three
//! interleaved pairs of `tidings bench net`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::entry::NewEntry;
use crate::log::{AuditError, AuditLog};
use crate::store::Store;

/// Most entries appended in one batch.
pub const BATCH: usize = 1024;

/// Longest time the first entry of a batch waits for more before the batch is
/// appended (never past the moment the oldest entry handed over is due to be
/// durable). An append rewrites the block of 64 entries it ends in and the
/// store writes it out again, so the fewer appends, the less is written: when
/// every node of 64 processes on two cores published at once, appending after
/// 20 ms left the log and its store a fifth of the burst's CPU (entries written
/// one by one, 20 ms apart, were each written 32 times on average), and
/// appending after 250 ms instead made bursts 10 to 21% faster (two
/// interleaved pairs of the whole `tidings bench net`, at 200 ms and 1 s).
/// Nothing waits for an append but readers of the log (a reader that must see
/// everything handed over calls [`WriterHandle::settle`]), flushes, and
/// senders that find the queue full (the writer thread then appends at once).
/// Durability does not wait longer: the sync of an entry starts
/// [`FLUSH_INTERVAL`] after it was handed over at the latest (as soon as the
/// writer thread gets a core), whoever appended it.
pub const LINGER: Duration = Duration::from_millis(250);

/// Longest time an applied batch waits before it is made durable.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(500);

/// Why the writer cannot take more.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    /// The writer thread has stopped (after a storage error, or at shutdown).
    #[error("the audit writer has stopped: {0}")]
    Closed(String),
    /// The log failed.
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// What senders handed over and the log has not taken yet.
#[derive(Default)]
struct Queue {
    /// The hand-overs, oldest first (one is never split between appends).
    handed: Vec<Vec<NewEntry>>,
    /// The entries in `handed`.
    count: usize,
    /// When the oldest queued entry was handed over.
    since: Option<Instant>,
    /// When the oldest entry taken from the queue and not yet durable was
    /// handed over (set as it is taken, so the writer thread times its sync
    /// even while someone else appends it).
    dirty_since: Option<Instant>,
    /// A sender found the queue full: the writer thread appends now.
    room_wanted: bool,
    /// Set at shutdown ([`SHUT_DOWN`]) or when the log failed (with why): no
    /// hand-over is taken any more.
    closed: Option<String>,
}

/// The log, and whoever holds it appends.
struct Owned<S: Store> {
    log: Option<AuditLog<S>>,
    /// Why the log failed: nothing is appended or synced after a failure.
    failed: Option<String>,
}

#[derive(Debug, Default)]
struct Progress {
    sent: AtomicU64,
    appended: AtomicU64,
    written: AtomicU64,
    durable: AtomicU64,
    /// The last durable entry's index and chain hash.
    durable_head: Mutex<(u64, [u8; 32])>,
}

/// The queue and what is known of the log's progress: all a handle needs
/// besides the log itself.
struct Feed {
    queue: Mutex<Queue>,
    /// Wakes the writer thread: a first entry, a full queue, a shutdown.
    work: Condvar,
    /// Wakes senders waiting for room.
    room: Condvar,
    progress: Progress,
    capacity: usize,
}

struct Shared<S: Store> {
    feed: Feed,
    owned: Mutex<Owned<S>>,
}

/// What a handle asks of the log, whatever its store.
trait Catch: Send + Sync {
    fn feed(&self) -> &Feed;
    /// Appends everything queued now; with `sync`, makes everything appended
    /// durable. Returns the last index written (or made durable).
    fn catch_up(&self, sync: bool) -> Result<u64, String>;
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

impl<S: Store> Catch for Shared<S> {
    fn feed(&self) -> &Feed {
        &self.feed
    }

    fn catch_up(&self, sync: bool) -> Result<u64, String> {
        self.append_queued(sync).map_err(|error| error.to_string())
    }
}

impl<S: Store> Shared<S> {
    /// Locks the log. A thread that panicked holding it may have left a batch
    /// half done: that is a failure like any other.
    fn lock_owned(&self) -> MutexGuard<'_, Owned<S>> {
        match self.owned.lock() {
            Ok(owned) => owned,
            Err(poisoned) => {
                let mut owned = poisoned.into_inner();
                if owned.failed.is_none() {
                    self.fail(
                        &mut owned,
                        "a thread panicked while it wrote the log".into(),
                    );
                }
                owned
            }
        }
    }

    /// Records that the log failed, while its lock is held, so that no one
    /// appends or syncs after it (a sync after a failed one would say that
    /// data is durable that is not), and turns every sender away.
    fn fail(&self, owned: &mut Owned<S>, reason: String) {
        owned.failed.get_or_insert_with(|| reason.clone());
        let mut queue = lock(&self.feed.queue);
        // The first failure is the one to tell (later ones only repeat it).
        if queue
            .closed
            .as_deref()
            .is_none_or(|closed| !log_failed(closed))
        {
            queue.closed = Some(reason);
        }
        self.feed.work.notify_all();
        self.feed.room.notify_all();
    }

    /// Appends what is queued and, with `sync` or when due, syncs; returns
    /// the last index written (or made durable).
    fn append_queued(&self, sync: bool) -> Result<u64, AuditError> {
        let mut owned = self.lock_owned();
        if let Some(reason) = &owned.failed {
            return Err(closed_error(reason));
        }
        let result = self.append_locked(&mut owned, sync);
        if let Err(error) = &result {
            self.fail(&mut owned, error.to_string());
        }
        result
    }

    fn append_locked(&self, owned: &mut Owned<S>, sync: bool) -> Result<u64, AuditError> {
        let Some(log) = owned.log.as_mut() else {
            return Err(closed_error(SHUT_DOWN));
        };
        let handed = {
            let mut queue = lock(&self.feed.queue);
            if let Some(since) = queue.since.take() {
                queue.dirty_since.get_or_insert(since);
            }
            queue.count = 0;
            queue.room_wanted = false;
            self.feed.room.notify_all();
            std::mem::take(&mut queue.handed)
        };
        let mut batch = Vec::new();
        let mut handed = handed.into_iter().peekable();
        while let Some(entries) = handed.next() {
            batch.extend(entries);
            if batch.len() >= BATCH || handed.peek().is_none() {
                let count = batch.len() as u64;
                let written = log.append(std::mem::take(&mut batch))?;
                // Written first: `settle` answers from `written` once `lag`
                // (from `appended`) says nothing waits.
                self.feed.progress.written.store(written, Ordering::SeqCst);
                self.feed
                    .progress
                    .appended
                    .fetch_add(count, Ordering::SeqCst);
            }
        }
        let due = {
            let mut queue = lock(&self.feed.queue);
            let due = queue
                .dirty_since
                .is_some_and(|since| since.elapsed() >= FLUSH_INTERVAL);
            if sync || due {
                queue.dirty_since = None;
            }
            due
        };
        if !(sync || due) {
            return Ok(self.feed.progress.written.load(Ordering::SeqCst));
        }
        durable(log, &self.feed.progress)
    }

    /// Appends what is left, signs a final checkpoint, syncs, and takes the
    /// log out (later calls on handles fail).
    fn finish(&self) -> Result<AuditLog<S>, AuditError> {
        let mut owned = self.lock_owned();
        if let Some(reason) = &owned.failed {
            return Err(closed_error(reason));
        }
        let result = self.append_locked(&mut owned, false).and_then(|_| {
            let log = owned.log.as_mut().ok_or_else(|| closed_error(SHUT_DOWN))?;
            log.checkpoint_now()?;
            durable(log, &self.feed.progress)
        });
        if let Err(error) = result {
            self.fail(&mut owned, error.to_string());
            return Err(error);
        }
        owned.log.take().ok_or_else(|| closed_error(SHUT_DOWN))
    }
}

/// Whether `reason` says the log failed (rather than that it shut down).
fn log_failed(reason: &str) -> bool {
    reason != SHUT_DOWN
}

const SHUT_DOWN: &str = "the writer has shut down";

/// The error of a log that failed earlier, or has shut down.
fn closed_error(reason: &str) -> AuditError {
    AuditError::Stopped(reason.to_string())
}

/// A running audit writer.
pub struct AuditWriter<S: Store> {
    handle: WriterHandle,
    shared: Arc<Shared<S>>,
    thread: Option<JoinHandle<Result<(), AuditError>>>,
}

/// A cloneable way to hand entries to a running writer from any thread.
#[derive(Clone)]
pub struct WriterHandle {
    shared: Arc<dyn Catch>,
}

impl std::fmt::Debug for WriterHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterHandle")
            .field("lag", &self.lag())
            .finish()
    }
}

/// The queue was full: the entries come back, for the caller to wait elsewhere.
#[derive(Debug)]
pub struct Full(pub Vec<NewEntry>);

impl<S: Store> std::fmt::Debug for AuditWriter<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditWriter")
            .field("lag", &self.lag())
            .finish()
    }
}

impl<S: Store> std::ops::Deref for AuditWriter<S> {
    type Target = WriterHandle;

    fn deref(&self) -> &WriterHandle {
        &self.handle
    }
}

impl<S: Store + 'static> AuditWriter<S> {
    /// Starts the thread; a hand-over waits while the queue holds entries and
    /// would then hold more than `capacity` (a larger one waits for an empty
    /// queue), so at most `capacity` entries wait besides one larger hand-over
    /// and a batch being appended.
    pub fn spawn(log: AuditLog<S>, capacity: usize) -> Result<Self, WriterError> {
        Self::spawn_with(log, capacity, || {})
    }

    /// As [`AuditWriter::spawn`], with `setup` run first on the new thread (for
    /// example to lower the thread's scheduling priority: what the writer does
    /// on its own is owed within [`FLUSH_INTERVAL`], not within the
    /// milliseconds a record takes to reach the node's peers; whoever waits
    /// for the log does the work on its own thread).
    pub fn spawn_with(
        log: AuditLog<S>,
        capacity: usize,
        setup: impl FnOnce() + Send + 'static,
    ) -> Result<Self, WriterError> {
        let progress = Progress::default();
        let (written, head) = log.head();
        progress.written.store(written, Ordering::SeqCst);
        progress.durable.store(written, Ordering::SeqCst);
        *lock(&progress.durable_head) = (written, head);
        let shared = Arc::new(Shared {
            feed: Feed {
                queue: Mutex::new(Queue::default()),
                work: Condvar::new(),
                room: Condvar::new(),
                progress,
                capacity: capacity.max(1),
            },
            owned: Mutex::new(Owned {
                log: Some(log),
                failed: None,
            }),
        });
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("tidings-audit".into())
            .spawn(move || {
                setup();
                let result =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&thread_shared)))
                        .unwrap_or_else(|_| Err(closed_error("the writer thread panicked")));
                // However it stopped, senders must not wait for it.
                if let Err(error) = &result {
                    let mut owned = thread_shared.lock_owned();
                    thread_shared.fail(&mut owned, error.to_string());
                }
                result
            })
            .map_err(|error| WriterError::Closed(error.to_string()))?;
        Ok(Self {
            handle: WriterHandle {
                shared: shared.clone(),
            },
            shared,
            thread: Some(thread),
        })
    }

    /// A cloneable handle on this writer.
    pub fn handle(&self) -> WriterHandle {
        self.handle.clone()
    }

    /// Appends what is queued, signs a final checkpoint, flushes, and returns
    /// the log. Handles still held elsewhere fail from then on.
    pub fn shutdown(mut self) -> Result<AuditLog<S>, WriterError> {
        self.stop()?;
        Ok(self.shared.finish()?)
    }

    /// Closes the queue and waits for the thread.
    fn stop(&mut self) -> Result<(), WriterError> {
        {
            let mut queue = lock(&self.shared.feed.queue);
            queue.closed.get_or_insert_with(|| SHUT_DOWN.to_string());
            self.shared.feed.work.notify_all();
            self.shared.feed.room.notify_all();
        }
        let thread = self
            .thread
            .take()
            .ok_or_else(|| WriterError::Closed(SHUT_DOWN.into()))?;
        match thread.join() {
            Ok(result) => Ok(result?),
            Err(_) => Err(WriterError::Closed("the writer thread panicked".into())),
        }
    }
}

impl<S: Store> Drop for AuditWriter<S> {
    fn drop(&mut self) {
        // As `shutdown`, when it was not called: what was handed over is
        // appended, checkpointed and synced, unless the log failed.
        if self.thread.is_some() && self.stop().is_ok() {
            let _ = self.shared.finish();
        }
    }
}

impl WriterHandle {
    /// Queues `entry`, waiting while the queue is full.
    pub fn append(&self, entry: NewEntry) -> Result<(), WriterError> {
        self.append_batch(vec![entry])
    }

    /// Queues several entries with one hand-over (what a node does after each
    /// input), waiting while the queue is full.
    pub fn append_batch(&self, entries: Vec<NewEntry>) -> Result<(), WriterError> {
        match self.hand_over(entries, true) {
            Ok(()) => Ok(()),
            Err(TryAppendError::Closed(error)) => Err(error),
            // A waiting hand-over is never given back.
            Err(TryAppendError::Full(_)) => Err(WriterError::Closed(
                "the queue stayed full for a waiting sender".into(),
            )),
        }
    }

    /// Queues `entries` if the queue has room; gives them back if it is full,
    /// so a caller that must not block (an async task) can wait elsewhere.
    pub fn try_append_batch(&self, entries: Vec<NewEntry>) -> Result<(), TryAppendError> {
        self.hand_over(entries, false)
    }

    fn hand_over(&self, entries: Vec<NewEntry>, wait: bool) -> Result<(), TryAppendError> {
        if entries.is_empty() {
            return Ok(());
        }
        let feed = self.shared.feed();
        let mut queue = lock(&feed.queue);
        loop {
            if let Some(reason) = &queue.closed {
                return Err(TryAppendError::Closed(WriterError::Closed(reason.clone())));
            }
            let queued = queue.count;
            if queued == 0 || queued + entries.len() <= feed.capacity {
                break;
            }
            // Full: the writer appends now rather than when its batch is due.
            queue.room_wanted = true;
            feed.work.notify_all();
            if !wait {
                return Err(TryAppendError::Full(Full(entries)));
            }
            queue = feed
                .room
                .wait(queue)
                .unwrap_or_else(|poison| poison.into_inner());
        }
        // Counted while the queue is locked: the entries are in it before
        // anyone can take them, so `lag` never hides them.
        feed.progress
            .sent
            .fetch_add(entries.len() as u64, Ordering::SeqCst);
        let first = queue.count == 0;
        if first {
            queue.since = Some(Instant::now());
        }
        queue.count += entries.len();
        queue.handed.push(entries);
        if first || queue.count >= BATCH {
            feed.work.notify_all();
        }
        Ok(())
    }

    /// Appends everything queued before this call and makes it durable, on
    /// this thread; returns the last durable index.
    pub fn flush(&self) -> Result<u64, WriterError> {
        self.shared.catch_up(true).map_err(WriterError::Closed)
    }

    /// Appends everything queued before this call, on this thread (readable in
    /// the store, not necessarily durable); returns the last index written. At
    /// once when nothing is queued.
    pub fn settle(&self) -> Result<u64, WriterError> {
        if self.lag() == 0 {
            return Ok(self.written_index());
        }
        self.shared.catch_up(false).map_err(WriterError::Closed)
    }

    /// Entries queued but not yet appended.
    pub fn lag(&self) -> u64 {
        let progress = &self.shared.feed().progress;
        let sent = progress.sent.load(Ordering::SeqCst);
        sent.saturating_sub(progress.appended.load(Ordering::SeqCst))
    }

    /// The last index appended to the store.
    pub fn written_index(&self) -> u64 {
        self.shared.feed().progress.written.load(Ordering::SeqCst)
    }

    /// The last index known durable (after a flush).
    pub fn durable_index(&self) -> u64 {
        self.shared.feed().progress.durable.load(Ordering::SeqCst)
    }

    /// The last durable entry's index and chain hash.
    pub fn durable_head(&self) -> (u64, [u8; 32]) {
        *lock(&self.shared.feed().progress.durable_head)
    }
}

/// Why [`WriterHandle::try_append_batch`] did not queue.
#[derive(Debug)]
pub enum TryAppendError {
    /// The queue is full; here are the entries back.
    Full(Full),
    /// The writer has stopped.
    Closed(WriterError),
}

impl From<WriterError> for TryAppendError {
    fn from(error: WriterError) -> Self {
        TryAppendError::Closed(error)
    }
}

/// The writer thread: appends what is queued [`LINGER`] after the first entry
/// came (at once when the queue fills), and syncs [`FLUSH_INTERVAL`] after
/// the oldest entry not yet durable was handed over. Returns at shutdown, or
/// with the error that stopped the log.
fn run<S: Store>(shared: &Shared<S>) -> Result<(), AuditError> {
    let mut queue = lock(&shared.feed.queue);
    loop {
        if let Some(reason) = &queue.closed {
            return if log_failed(reason) {
                Err(closed_error(reason))
            } else {
                Ok(())
            };
        }
        let now = Instant::now();
        let durable_at = queue.dirty_since.map(|since| since + FLUSH_INTERVAL);
        // Never later than the sync it would then hold up.
        let append_at = queue
            .since
            .map(|since| (since + LINGER).min(durable_at.unwrap_or(since + FLUSH_INTERVAL)));
        let next = match (append_at, durable_at) {
            (Some(a), Some(d)) => Some(a.min(d)),
            (a, d) => a.or(d),
        };
        let full = queue.count >= BATCH || queue.count >= shared.feed.capacity || queue.room_wanted;
        if full || next.is_some_and(|at| at <= now) {
            drop(queue);
            shared.append_queued(false)?;
            queue = lock(&shared.feed.queue);
            continue;
        }
        queue = match next {
            Some(at) => {
                shared
                    .feed
                    .work
                    .wait_timeout(queue, at - now)
                    .unwrap_or_else(|poison| poison.into_inner())
                    .0
            }
            None => shared
                .feed
                .work
                .wait(queue)
                .unwrap_or_else(|poison| poison.into_inner()),
        };
    }
}

fn durable<S: Store>(log: &mut AuditLog<S>, progress: &Progress) -> Result<u64, AuditError> {
    log.flush()?;
    let (index, hash) = log.head();
    *lock(&progress.durable_head) = (index, hash);
    progress.durable.store(index, Ordering::SeqCst);
    Ok(index)
}
