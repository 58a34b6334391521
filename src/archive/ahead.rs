//! Read-ahead of archived frames: a reader that goes through an object's
//! frames in order (a clone, `cp` out of a view, a database replaying its
//! log from a view) would otherwise wait for one ranged GET after another,
//! so a store's latency, not its bandwidth, would bound a restore. When a
//! reader takes frame `i` of a segment right after frame `i - 1`, the next
//! few frames are fetched by background threads into the frame cache; a
//! reader that needs a frame being fetched waits for it rather than
//! fetching it twice. Random reads fetch nothing extra, nor do reads that
//! come back to one frame (a view reading inode records: each sits in a
//! 4 MiB frame of its own segment, and fetching the frames after it would
//! cost a view's first `ls` four times as much).

use super::cache::{FrameCache, FrameKey};
use crate::format::archive::Trailer;
use crate::store::BackingStore;
use crate::sync::lock;
use crossbeam_channel::{Sender, bounded};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

/// Most frames fetched ahead of one sequential reader.
const AHEAD_MAX: usize = 4;
/// Threads fetching ahead (per archive, started on first use).
const THREADS: usize = 4;
/// Segments whose last frame read is remembered, to tell sequential reads.
const STREAMS_MAX: usize = 64;

/// One frame to fetch: the object, its trailer and the frame's number.
struct Job {
    name: String,
    seq: u64,
    trailer: Arc<Trailer>,
    frame: usize,
}

struct State {
    store: Arc<dyn BackingStore>,
    cache: FrameCache,
    /// Frames being fetched ahead; `landed` is told when one is done.
    inflight: Mutex<HashSet<FrameKey>>,
    landed: Condvar,
    /// The last frame read of each recently read segment.
    recent: Mutex<HashMap<u64, usize>>,
}

pub struct ReadAhead {
    state: Arc<State>,
    /// Frames ahead of a sequential reader that the cache has room for.
    ahead: usize,
    jobs: OnceLock<Sender<Job>>,
}

/// Fetches frame `i` of object `name` (whose trailer is `t`) and
/// decompresses it; a decompression failure is given as `Err(Ok(..))`.
pub fn fetch(
    store: &dyn BackingStore,
    name: &str,
    t: &Trailer,
    i: usize,
) -> Result<Vec<u8>, FetchError> {
    let (at, len) = t.frame_span(i);
    let compressed = store.get_range(name, at, len).map_err(FetchError::Store)?;
    t.decompress_frame(i, &compressed)
        .map_err(FetchError::Damaged)
}

pub enum FetchError {
    Store(crate::store::StoreError),
    Damaged(crate::format::DecodeError),
}

impl ReadAhead {
    pub fn new(store: Arc<dyn BackingStore>, cache_size: u64, frame_raw: u64) -> ReadAhead {
        ReadAhead {
            ahead: ((cache_size / 4) / frame_raw.max(1)).min(AHEAD_MAX as u64) as usize,
            state: Arc::new(State {
                store,
                cache: FrameCache::new(cache_size),
                inflight: Mutex::new(HashSet::new()),
                landed: Condvar::new(),
                recent: Mutex::new(HashMap::new()),
            }),
            jobs: OnceLock::new(),
        }
    }

    pub fn cache(&self) -> &FrameCache {
        &self.state.cache
    }

    /// Frame `key` from the cache, waiting for it first if it is being
    /// fetched ahead; None if the caller must fetch it.
    pub fn cached(&self, key: FrameKey) -> Option<Arc<Vec<u8>>> {
        let s = &self.state;
        if let Some(f) = s.cache.get(key) {
            return Some(f);
        }
        let mut inflight = lock(&s.inflight);
        while inflight.contains(&key) {
            inflight = s.landed.wait(inflight).unwrap_or_else(|p| p.into_inner());
        }
        drop(inflight);
        s.cache.get(key)
    }

    /// Notes that frame `i` of object `name` is being read; if the reader
    /// goes through the segment in order, queues the next frames.
    pub fn reading(&self, name: &str, seq: u64, t: &Arc<Trailer>, i: usize) {
        let previous = {
            let mut recent = lock(&self.state.recent);
            if recent.len() >= STREAMS_MAX {
                recent.clear();
            }
            recent.insert(seq, i)
        };
        let sequential = previous.is_some_and(|p| p + 1 == i);
        if !sequential || self.ahead == 0 {
            return;
        }
        let last = (i + self.ahead).min(t.frames() - 1);
        for frame in i + 1..=last {
            let key = (seq, t.raw_len, frame);
            if self.state.cache.contains(key) || !lock(&self.state.inflight).insert(key) {
                continue;
            }
            let job = Job {
                name: name.to_string(),
                seq,
                trailer: t.clone(),
                frame,
            };
            if self.jobs().try_send(job).is_err() {
                self.state.done(key);
            }
        }
    }

    fn jobs(&self) -> &Sender<Job> {
        self.jobs.get_or_init(|| {
            let (tx, rx) = bounded::<Job>(THREADS * AHEAD_MAX);
            for n in 0..THREADS {
                let (rx, state) = (rx.clone(), self.state.clone());
                let spawned = std::thread::Builder::new()
                    .name(format!("lsvfs-ahead-{n}"))
                    .spawn(move || {
                        for job in rx {
                            state.run(job);
                        }
                    });
                if let Err(e) = spawned {
                    log::warn!("no read-ahead thread: {e}");
                }
            }
            tx
        })
    }
}

impl State {
    /// Fetches one frame into the cache. A failure is left to the reader,
    /// which fetches the frame itself and reports what it meets.
    fn run(&self, job: Job) {
        let key = (job.seq, job.trailer.raw_len, job.frame);
        // Readers waiting for the frame are released however this ends,
        // a panic included.
        let _done = Done(self, key);
        if !self.cache.contains(key)
            && let Ok(frame) = fetch(&*self.store, &job.name, &job.trailer, job.frame)
        {
            self.cache.insert(key, Arc::new(frame));
        }
    }

    fn done(&self, key: FrameKey) {
        lock(&self.inflight).remove(&key);
        self.landed.notify_all();
    }
}

/// Marks a frame no longer in flight when dropped.
struct Done<'a>(&'a State, FrameKey);

impl Drop for Done<'_> {
    fn drop(&mut self) {
        self.0.done(self.1);
    }
}
