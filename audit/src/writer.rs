//! [`AuditWriter`]: the log's own thread, fed through a bounded channel.
//!
//! Senders hand entries to the channel and go on; the thread drains whatever is
//! queued, and what comes within [`LINGER`] of the first entry (up to [`BATCH`]
//! entries), and appends it as one atomic batch. When the thread falls behind
//! and the channel is full, senders **wait**: backpressure, never loss.
//!
//! What is durable when: an entry is in the store once its batch is applied; the
//! writer makes applied batches durable (fsync) [`FLUSH_INTERVAL`] after the
//! oldest entry not yet durable reached it, so that one fsync covers whatever
//! came meanwhile, and a record spreading through the federation is not slowed
//! by every node syncing its log at once as it arrives; [`AuditWriter::flush`]
//! returns only after everything sent before it is on disk, with the index it
//! reached. A crash loses at most what was not yet durable, and always whole
//! batches: the chain and the indexes stay consistent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{
    sync_channel, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError,
};
use std::sync::{Arc, Mutex};
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
/// Nothing waits for an append but readers of the log, and a reader that must
/// see everything handed over calls [`WriterHandle::settle`]; a flush appends
/// at once too. Durability does not
/// wait longer: the sync of an entry starts [`FLUSH_INTERVAL`] after the writer
/// took it at the latest, appended or not.
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

enum Command {
    Append(Box<NewEntry>),
    AppendMany(Vec<NewEntry>),
    Flush(SyncSender<Result<u64, String>>),
    /// Append what is queued now (without waiting out [`LINGER`]) and answer
    /// with the last index written.
    Settle(SyncSender<u64>),
    Shutdown,
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

/// A running audit writer.
pub struct AuditWriter<S: Store> {
    handle: WriterHandle,
    thread: Option<JoinHandle<Result<AuditLog<S>, AuditError>>>,
}

/// A cloneable way to hand entries to a running writer from any thread.
#[derive(Clone)]
pub struct WriterHandle {
    sender: Option<SyncSender<Command>>,
    progress: Arc<Progress>,
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

impl<S: Store> AuditWriter<S> {
    /// Starts the thread; at most `capacity` hand-overs wait in the channel.
    pub fn spawn(log: AuditLog<S>, capacity: usize) -> Result<Self, WriterError> {
        Self::spawn_with(log, capacity, || {})
    }

    /// As [`AuditWriter::spawn`], with `setup` run first on the new thread (for
    /// example to lower the thread's scheduling priority: what the writer does
    /// is owed within [`FLUSH_INTERVAL`], not within the milliseconds a record
    /// takes to reach the node's peers).
    pub fn spawn_with(
        log: AuditLog<S>,
        capacity: usize,
        setup: impl FnOnce() + Send + 'static,
    ) -> Result<Self, WriterError> {
        let (sender, receiver) = sync_channel(capacity.max(1));
        let progress = Arc::new(Progress::default());
        let (written, head) = log.head();
        progress.written.store(written, Ordering::SeqCst);
        progress.durable.store(written, Ordering::SeqCst);
        *progress
            .durable_head
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) = (written, head);
        let shared = progress.clone();
        let thread = std::thread::Builder::new()
            .name("tidings-audit".into())
            .spawn(move || {
                setup();
                run(log, receiver, &shared)
            })
            .map_err(|error| WriterError::Closed(error.to_string()))?;
        Ok(Self {
            handle: WriterHandle {
                sender: Some(sender),
                progress,
            },
            thread: Some(thread),
        })
    }

    /// A cloneable handle on this writer.
    pub fn handle(&self) -> WriterHandle {
        self.handle.clone()
    }

    /// Drains the queue, signs a final checkpoint, flushes, and returns the log.
    /// Handles still held elsewhere fail from then on.
    pub fn shutdown(mut self) -> Result<AuditLog<S>, WriterError> {
        if let Some(sender) = self.handle.sender.take() {
            let _ = sender.send(Command::Shutdown);
        }
        let thread = self
            .thread
            .take()
            .ok_or_else(|| WriterError::Closed("already shut down".into()))?;
        match thread.join() {
            Ok(result) => Ok(result?),
            Err(_) => Err(WriterError::Closed("the writer thread panicked".into())),
        }
    }
}

impl<S: Store> Drop for AuditWriter<S> {
    fn drop(&mut self) {
        if let Some(sender) = self.handle.sender.take() {
            let _ = sender.send(Command::Shutdown);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl WriterHandle {
    fn sender(&self) -> Result<&SyncSender<Command>, WriterError> {
        self.sender
            .as_ref()
            .ok_or_else(|| WriterError::Closed("shut down".into()))
    }

    /// Queues `entry`, waiting while the channel is full.
    pub fn append(&self, entry: NewEntry) -> Result<(), WriterError> {
        let sender = self.sender()?;
        // Counted before it is sent: counted after, the writer could append it
        // first, and `lag` would then hide another sender's entries.
        self.progress.sent.fetch_add(1, Ordering::SeqCst);
        sender
            .send(Command::Append(Box::new(entry)))
            .map_err(|_| self.not_sent(1))
    }

    /// Takes back the count of entries that were not sent after all.
    fn not_sent(&self, count: u64) -> WriterError {
        self.progress.sent.fetch_sub(count, Ordering::SeqCst);
        WriterError::Closed("the writer thread ended".into())
    }

    /// Queues several entries with one hand-over (what a node does after each input),
    /// waiting while the channel is full.
    pub fn append_batch(&self, entries: Vec<NewEntry>) -> Result<(), WriterError> {
        if entries.is_empty() {
            return Ok(());
        }
        let count = entries.len() as u64;
        let sender = self.sender()?;
        self.progress.sent.fetch_add(count, Ordering::SeqCst);
        sender
            .send(Command::AppendMany(entries))
            .map_err(|_| self.not_sent(count))
    }

    /// Waits until everything queued before this call is on disk; returns the last
    /// durable index.
    pub fn flush(&self) -> Result<u64, WriterError> {
        self.ask(Command::Flush)?.map_err(WriterError::Closed)
    }

    /// Waits until everything queued before this call is appended (readable
    /// in the store, not necessarily durable); returns the last index written.
    /// At once when nothing is queued.
    pub fn settle(&self) -> Result<u64, WriterError> {
        if self.lag() == 0 {
            return Ok(self.written_index());
        }
        self.ask(Command::Settle)
    }

    /// Sends the command `make` builds around a reply channel, and waits for
    /// the answer.
    fn ask<T>(&self, make: impl FnOnce(SyncSender<T>) -> Command) -> Result<T, WriterError> {
        let ended = || WriterError::Closed("the writer thread ended".into());
        let (reply, answer) = sync_channel(1);
        self.sender()?.send(make(reply)).map_err(|_| ended())?;
        answer.recv().map_err(|_| ended())
    }

    /// Entries queued but not yet appended.
    pub fn lag(&self) -> u64 {
        let sent = self.progress.sent.load(Ordering::SeqCst);
        sent.saturating_sub(self.progress.appended.load(Ordering::SeqCst))
    }

    /// The last index appended to the store.
    pub fn written_index(&self) -> u64 {
        self.progress.written.load(Ordering::SeqCst)
    }

    /// The last index known durable (after a flush).
    pub fn durable_index(&self) -> u64 {
        self.progress.durable.load(Ordering::SeqCst)
    }

    /// Queues `entries` if the channel has room; gives them back if it is full,
    /// so a caller that must not block (an async task) can wait elsewhere.
    pub fn try_append_batch(&self, entries: Vec<NewEntry>) -> Result<(), TryAppendError> {
        if entries.is_empty() {
            return Ok(());
        }
        let count = entries.len() as u64;
        let sender = self.sender()?;
        self.progress.sent.fetch_add(count, Ordering::SeqCst);
        match sender.try_send(Command::AppendMany(entries)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(Command::AppendMany(entries))) => {
                self.progress.sent.fetch_sub(count, Ordering::SeqCst);
                Err(TryAppendError::Full(Full(entries)))
            }
            Err(_) => Err(TryAppendError::Closed(self.not_sent(count))),
        }
    }

    /// The last durable entry's index and chain hash.
    pub fn durable_head(&self) -> (u64, [u8; 32]) {
        *self
            .progress
            .durable_head
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// Why [`WriterHandle::try_append_batch`] did not queue.
#[derive(Debug)]
pub enum TryAppendError {
    /// The channel is full; here are the entries back.
    Full(Full),
    /// The writer has stopped.
    Closed(WriterError),
}

impl From<WriterError> for TryAppendError {
    fn from(error: WriterError) -> Self {
        TryAppendError::Closed(error)
    }
}

fn run<S: Store>(
    mut log: AuditLog<S>,
    receiver: Receiver<Command>,
    progress: &Progress,
) -> Result<AuditLog<S>, AuditError> {
    // When the oldest entry not yet durable reached the writer.
    let mut dirty_since: Option<Instant> = None;
    let mut stopping = false;
    while !stopping {
        // With nothing to make durable, sleep until a command comes: an idle
        // node's writer does not wake.
        let received = match dirty_since {
            Some(since) => receiver.recv_timeout(FLUSH_INTERVAL.saturating_sub(since.elapsed())),
            None => receiver.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        let first = match received {
            Ok(command) => command,
            Err(RecvTimeoutError::Timeout) => {
                if dirty_since.take().is_some() {
                    durable(&mut log, progress)?;
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut batch = Vec::new();
        let mut flushes = Vec::new();
        let mut settles = Vec::new();
        let mut next = Some(first);
        let received_at = Instant::now();
        let due_at = dirty_since.unwrap_or(received_at) + FLUSH_INTERVAL;
        let gather_until = (received_at + LINGER).min(due_at);
        while let Some(command) = next.take() {
            match command {
                Command::Append(entry) => batch.push(*entry),
                Command::AppendMany(entries) => batch.extend(entries),
                Command::Flush(reply) => flushes.push(reply),
                Command::Settle(reply) => settles.push(reply),
                Command::Shutdown => stopping = true,
            }
            if batch.len() < BATCH && !stopping {
                match receiver.try_recv() {
                    Ok(command) => next = Some(command),
                    Err(TryRecvError::Disconnected) => {}
                    // Entries that come one at a time are gathered for up to
                    // LINGER before they are appended, unless a flush waits.
                    Err(TryRecvError::Empty)
                        if flushes.is_empty() && settles.is_empty() && !batch.is_empty() =>
                    {
                        let left = gather_until.saturating_duration_since(Instant::now());
                        if let Ok(command) = receiver.recv_timeout(left) {
                            next = Some(command);
                        }
                    }
                    Err(TryRecvError::Empty) => {}
                }
            }
        }
        if !batch.is_empty() {
            let count = batch.len() as u64;
            let written = log.append(batch)?;
            progress.appended.fetch_add(count, Ordering::SeqCst);
            progress.written.store(written, Ordering::SeqCst);
            dirty_since.get_or_insert(received_at);
        }
        for reply in settles {
            let _ = reply.send(progress.written.load(Ordering::SeqCst));
        }
        let due = dirty_since.is_some_and(|since| since.elapsed() >= FLUSH_INTERVAL);
        if !flushes.is_empty() || due {
            let result = durable(&mut log, progress);
            dirty_since = None;
            for reply in flushes {
                let _ = reply.send(result.as_ref().copied().map_err(|e| e.to_string()));
            }
            // A failed sync stops the writer, whoever asked for it: what it
            // wrote is not durable, and later syncs would not say so.
            result?;
        }
    }
    log.checkpoint_now()?;
    durable(&mut log, progress)?;
    Ok(log)
}

fn durable<S: Store>(log: &mut AuditLog<S>, progress: &Progress) -> Result<u64, AuditError> {
    log.flush()?;
    let (index, hash) = log.head();
    *progress
        .durable_head
        .lock()
        .unwrap_or_else(|poison| poison.into_inner()) = (index, hash);
    progress.durable.store(index, Ordering::SeqCst);
    Ok(index)
}
