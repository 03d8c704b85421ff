//! Signature checks on every core, ahead of the actor.
//!
//! The actor runs a node's state machine on one thread, and a new record's
//! signature check (`verify_strict`, about 45 µs) is most of what the record
//! costs. So the records of each `Records` or `Push` frame are checked first by
//! a pool of checker threads, one per core: a checker decodes and verifies each
//! record ([`VerifiedCache::check`]), and the frame goes to the actor with its
//! [`VerifiedRecord`](crate::proto::VerifiedRecord)s, which the directory takes
//! without decoding or checking them again. The verified type is still made in
//! one place (`UnverifiedRecord::verify_with_key`). The records travel with their
//! frame, not through the node's [`VerifiedCache`] alone, so however many frames
//! wait in the inbox, none of their checks is evicted and done twice; the cache
//! still spares a check when the same bytes come from several peers.
//!
//! Nothing is decided here. A record that fails its check is left to the
//! directory, which rejects and audits it as before; a record that passes is
//! still judged in full by the directory (admission, chain, rate, time). A check
//! a checker made is counted by the directory that takes the record, so a peer
//! whose records are waste is charged for it as before.
//!
//! Order: a connection's receive loop waits for its frame's checks before it
//! queues the frame and reads the next one. A peer's frames stay in order, the
//! actor serves one frame while the next is checked, and different peers'
//! frames are checked at once. A frame's records are split into one chunk per
//! checker.
//!
//! Cost: what checkers may do for a peer before the actor judges its input is
//! bounded by the frame being checked and the peer's inbox queue (1 MiB), and a
//! peer whose budget is spent is banned and disconnected by the actor.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{mpsc, Arc, Mutex};

use tidings_keys::{FederationId, NodeId};
use tokio::sync::oneshot;

use crate::net::tls::SharedRoster;
use crate::proto::directory::{Prechecked, VerifiedCache};
use crate::proto::wire::Message;

/// Fewest records a frame carries for its checks to go to the checkers: a hop
/// to another thread and back costs the actor more than it saves on a record
/// or two (the pushes that spread a new record carry one or a few), so those
/// are verified by the directory on the actor's thread, as before.
pub const MIN_CHECKED_RECORDS: usize = 4;

/// Most checker threads a pool starts, however many cores there are.
const MAX_CHECKERS: usize = 8;

/// One chunk of a frame's records for one checker.
struct Job {
    records: Arc<Vec<Vec<u8>>>,
    range: Range<usize>,
    done: oneshot::Sender<Vec<Option<Prechecked>>>,
}

/// A pool of checker threads for one node (see the module docs). The threads end
/// when the pool is dropped.
#[derive(Debug)]
pub struct Checkers {
    jobs: mpsc::Sender<Job>,
    threads: usize,
}

/// The checks of one batch of records, under way.
#[derive(Debug)]
pub struct Pending(Vec<(usize, oneshot::Receiver<Vec<Option<Prechecked>>>)>);

impl Pending {
    /// Waits until every chunk is checked; the result has one item per record.
    /// A chunk whose checker stopped (the pool is gone) comes back unchecked:
    /// its records are left to the directory, so nothing is lost.
    pub async fn done(self) -> Vec<Option<Prechecked>> {
        let mut chunks = Vec::with_capacity(self.0.len());
        for (len, chunk) in self.0 {
            chunks.push((len, chunk.await.ok()));
        }
        joined(chunks)
    }

    /// As [`Pending::done`], blocking the thread (not for use within the async
    /// runtime).
    pub fn wait(self) -> Vec<Option<Prechecked>> {
        joined(
            self.0
                .into_iter()
                .map(|(len, chunk)| (len, chunk.blocking_recv().ok()))
                .collect(),
        )
    }
}

/// The chunks' results in order, `len` unchecked items for a chunk that never
/// came back.
fn joined(chunks: Vec<(usize, Option<Vec<Option<Prechecked>>>)>) -> Vec<Option<Prechecked>> {
    let mut checked = Vec::new();
    for (len, chunk) in chunks {
        match chunk {
            Some(chunk) => checked.extend(chunk),
            None => checked.extend(std::iter::repeat_n(None, len)),
        }
    }
    checked
}

impl Checkers {
    /// Starts one checker per core (at most [`MAX_CHECKERS`]) that verifies
    /// records of `federation` from roster members into `cache`.
    pub fn start(
        cache: Arc<VerifiedCache>,
        federation: FederationId,
        roster: SharedRoster,
    ) -> std::io::Result<Self> {
        let threads = std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1)
            .clamp(1, MAX_CHECKERS);
        Self::with_threads(threads, cache, federation, roster)
    }

    /// Starts `threads` checkers.
    pub fn with_threads(
        threads: usize,
        cache: Arc<VerifiedCache>,
        federation: FederationId,
        roster: SharedRoster,
    ) -> std::io::Result<Self> {
        let threads = threads.max(1);
        let (jobs, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        for index in 0..threads {
            let receiver = receiver.clone();
            let cache = cache.clone();
            let roster = roster.clone();
            std::thread::Builder::new()
                .name(format!("tidings-check-{index}"))
                .spawn(move || checker(&receiver, &cache, &federation, &roster))?;
        }
        Ok(Self { jobs, threads })
    }

    /// How many checker threads run.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Starts checking `records`, one chunk per checker.
    pub fn submit(&self, records: Arc<Vec<Vec<u8>>>) -> Pending {
        let len = records.len();
        if len == 0 {
            return Pending(Vec::new());
        }
        let chunk = len.div_ceil(self.threads.min(len));
        let mut pending = Vec::new();
        for start in (0..len).step_by(chunk) {
            let (done, receiver) = oneshot::channel();
            let range = start..(start + chunk).min(len);
            let count = range.len();
            let job = Job {
                records: records.clone(),
                range,
                done,
            };
            // A refused job drops its sender: the chunk comes back unchecked.
            let _ = self.jobs.send(job);
            pending.push((count, receiver));
        }
        Pending(pending)
    }

    /// Checks the records a frame carries, if it is a `Records` or `Push`
    /// frame of at least [`MIN_CHECKED_RECORDS`] records (one item per record);
    /// any other frame (or one that does not decode, which the actor refuses
    /// on its own) has none.
    pub async fn check_frame(&self, frame: &[u8]) -> Vec<Option<Prechecked>> {
        // Most frames are digests and requests: they are not decoded here.
        if !Message::carries_records(frame) {
            return Vec::new();
        }
        match Message::decode(frame) {
            Ok(Message::Records(records) | Message::Push(records))
                if records.len() >= MIN_CHECKED_RECORDS =>
            {
                self.submit(Arc::new(records)).done().await
            }
            _ => Vec::new(),
        }
    }
}

/// One checker thread: takes chunks until the pool is dropped.
fn checker(
    jobs: &Mutex<mpsc::Receiver<Job>>,
    cache: &VerifiedCache,
    federation: &FederationId,
    roster: &SharedRoster,
) {
    let mut keys: HashMap<NodeId, ed25519_dalek::VerifyingKey> = HashMap::new();
    loop {
        let job = {
            let jobs = jobs.lock().unwrap_or_else(|poison| poison.into_inner());
            match jobs.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        let admitted = |origin: &NodeId| {
            roster
                .read()
                .map(|roster| roster.contains(origin))
                .unwrap_or(false)
        };
        let checked = job.records[job.range.clone()]
            .iter()
            .map(|bytes| cache.check(bytes, federation, &mut keys, admitted))
            .collect();
        let _ = job.done.send(checked);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Announcement, Record, VerifiedRecord};
    use std::sync::RwLock;
    use tidings_keys::{Identity, Roster};

    fn signed(identity: &Identity, federation: FederationId, name: &str) -> Vec<u8> {
        let announcement = Announcement {
            addrs: vec![],
            specialists: vec![crate::proto::Specialist {
                name: name.into(),
                capabilities: vec!["test".into()],
                endpoint: format!("https://{name}.example"),
                meta: Default::default(),
            }],
        };
        let record = Record::first(federation, identity.node_id(), announcement, 1_000, 60_000);
        VerifiedRecord::sign(identity, record)
            .expect("a well-formed record")
            .wire_bytes()
            .to_vec()
    }

    #[test]
    fn checkers_cache_good_records_and_leave_the_rest_to_the_directory() {
        let federation = FederationId::from_name("checkers");
        let members: Vec<Identity> = (0..5u8).map(|i| Identity::from_seed(&[i; 32])).collect();
        let stranger = Identity::from_seed(&[9; 32]);
        let roster: Roster = members.iter().map(Identity::node_id).collect();
        let cache = Arc::new(VerifiedCache::new(64));
        let checkers =
            Checkers::with_threads(2, cache.clone(), federation, Arc::new(RwLock::new(roster)))
                .expect("threads");
        let mut records: Vec<Vec<u8>> = members
            .iter()
            .map(|member| signed(member, federation, "good"))
            .collect();
        let mut forged = signed(&members[0], federation, "forged");
        *forged.last_mut().expect("bytes") ^= 1;
        records.push(forged);
        records.push(signed(&stranger, federation, "stranger"));
        records.push(signed(
            &members[1],
            FederationId::from_name("elsewhere"),
            "elsewhere",
        ));
        records.push(vec![1, 2, 3]);
        let checked = checkers.submit(Arc::new(records.clone())).wait();
        assert_eq!(checked.len(), records.len());
        for (index, (bytes, checked)) in records.iter().zip(&checked).enumerate() {
            match checked {
                // The five good records, each checked and verified from its bytes.
                Some(prechecked) => {
                    assert!(index < 5, "record {index} passed");
                    assert!(prechecked.checked);
                    assert_eq!(prechecked.record.wire_bytes(), &bytes[..]);
                }
                // The forged, the stranger's, the other federation's, the garbage.
                None => assert!(index >= 5, "record {index} failed"),
            }
        }
        // The good ones are cached: a second look makes no check.
        assert_eq!(cache.len(), 5);
        let mut keys = HashMap::new();
        let again = cache
            .check(&records[0], &federation, &mut keys, |_| true)
            .expect("cached");
        assert!(!again.checked);
    }

    #[tokio::test]
    async fn only_record_frames_are_checked() {
        let federation = FederationId::from_name("checkers");
        let member = Identity::from_seed(&[1; 32]);
        let roster: Roster = [member.node_id()].into_iter().collect();
        let cache = Arc::new(VerifiedCache::new(64));
        let checkers =
            Checkers::with_threads(1, cache.clone(), federation, Arc::new(RwLock::new(roster)))
                .expect("threads");
        let record = signed(&member, federation, "one");
        let want = Message::Want(vec![member.node_id()]).encode();
        assert!(checkers.check_frame(&want).await.is_empty());
        assert!(checkers.check_frame(&[0xff, 0, 1]).await.is_empty());
        assert!(cache.is_empty());
        // A push of one record is left to the actor; one of four is checked.
        let one = Message::Push(vec![record.clone()]).encode();
        assert!(checkers.check_frame(&one).await.is_empty());
        assert!(cache.is_empty());
        let four = vec![record.clone(), vec![0; 8], vec![1; 8], vec![2; 8]];
        let checked = checkers.check_frame(&Message::Push(four).encode()).await;
        assert!(matches!(&checked[..], [Some(_), None, None, None]));
        assert_eq!(cache.len(), 1);
    }
}
