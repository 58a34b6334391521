//! Archived segments in the backing store: writing a retired segment as one
//! object (compress into independent frames, put, read back, verify) and
//! reading records of retired segments through a bounded cache of
//! decompressed frames. The object format is in `format::archive`; the
//! thread that decides what to retire is in [`archiver`].

mod ahead;
pub mod archiver;
mod background;
mod cache;
mod listing;
pub mod partial;

pub use listing::{sync_points_in, volumes};

use crate::format::archive::{self as object, TAIL_LEN, Trailer};
use crate::format::{DecodeError, Footer, SegmentHeader, SummaryEntry, VolumeId};
use crate::log::recovery::{SegmentRecords, check_summary};
use crate::log::retired::RetiredSegments;
use crate::store::{ArchiveError, BackingStore, StoreError};
use crate::sync::lock;
use ahead::{FetchError, ReadAhead};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Most threads that compress one segment.
const COMPRESS_THREADS: usize = 4;
/// Trailers kept in memory (each holds a segment's summary).
const TRAILERS_MAX: usize = 256;
/// The first trailer read fetches this much of the object's end; later
/// ones as much as the largest trailer seen.
const TAIL_GUESS_FIRST: u64 = 64 << 10;

pub type Result<T> = std::result::Result<T, ArchiveError>;

/// What archiving one segment took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stored {
    pub raw: u64,
    pub stored: u64,
}

pub struct Archive {
    store: Arc<dyn BackingStore>,
    volume_id: VolumeId,
    level: i32,
    /// Threads compressing a segment's frames (they are independent).
    threads: usize,
    /// The frame cache, filled ahead of sequential readers.
    ahead: ReadAhead,
    /// Trailers read, with the name of the object each came from.
    trailers: Mutex<HashMap<u64, (String, Arc<Trailer>)>>,
    /// Archived segments and their object sizes, once listed.
    objects: Mutex<Option<BTreeMap<u64, u64>>>,
    /// Ends of the partial objects of segments not sealed when shipped.
    partials: Mutex<BTreeMap<u64, BTreeSet<u32>>>,
    /// How many bytes of an object's end a trailer read fetches first.
    tail_guess: AtomicU64,
}

impl Archive {
    /// The archive of a volume in `store`, not yet listed: reading objects
    /// by name needs no listing (views); [`Archive::relist`] learns which
    /// segments are archived (the live volume).
    pub fn open(
        store: Arc<dyn BackingStore>,
        volume_id: VolumeId,
        level: i32,
        cache_size: u64,
    ) -> Archive {
        Archive {
            ahead: ReadAhead::new(store.clone(), cache_size, object::FRAME_RAW as u64),
            store,
            volume_id,
            level,
            threads: std::thread::available_parallelism()
                .map_or(1, |n| n.get().min(COMPRESS_THREADS)),
            trailers: Mutex::new(HashMap::new()),
            objects: Mutex::new(None),
            partials: Mutex::new(BTreeMap::new()),
            tail_guess: AtomicU64::new(TAIL_GUESS_FIRST),
        }
    }

    /// Lists the store again. Partial objects of segments stored whole
    /// (left by a crash between the two) are deleted.
    pub fn relist(&self) -> Result<()> {
        let listing = self.store.list()?;
        let objects: BTreeMap<u64, u64> = listing
            .iter()
            .filter_map(|(name, size)| object::seq_of(self.volume_id, name).map(|seq| (seq, *size)))
            .collect();
        let mut partials: BTreeMap<u64, BTreeSet<u32>> = BTreeMap::new();
        for (name, _) in &listing {
            if let Some((seq, end)) = object::partial_of(self.volume_id, name) {
                partials.entry(seq).or_default().insert(end);
            }
        }
        let superseded: Vec<u64> = partials
            .keys()
            .copied()
            .filter(|s| objects.contains_key(s))
            .collect();
        *lock(&self.objects) = Some(objects);
        *lock(&self.partials) = partials;
        for seq in superseded {
            self.drop_partials(seq, u32::MAX);
        }
        Ok(())
    }

    /// Whether the store could be listed (else `contains` knows nothing).
    pub fn listed(&self) -> bool {
        lock(&self.objects).is_some()
    }

    /// The name of segment `seq`'s object in the store.
    pub fn object_name(&self, seq: u64) -> String {
        object::object_name(self.volume_id, seq)
    }

    pub fn volume_id(&self) -> VolumeId {
        self.volume_id
    }

    pub fn store(&self) -> &dyn BackingStore {
        &*self.store
    }

    /// Archived segments with their object sizes, ascending (empty until
    /// the store could be listed).
    pub fn objects(&self) -> Vec<(u64, u64)> {
        lock(&self.objects)
            .iter()
            .flatten()
            .map(|(&s, &n)| (s, n))
            .collect()
    }

    /// Of the sealed segments `oldest..=sealed` (none when `oldest` is
    /// None), those with no object in the store as last listed (all of them
    /// until the store could be listed).
    pub fn unshipped(&self, oldest: Option<u64>, sealed: u64) -> u64 {
        let Some(oldest) = oldest else { return 0 };
        let objects = lock(&self.objects);
        (oldest..=sealed)
            .filter(|s| !objects.as_ref().is_some_and(|o| o.contains_key(s)))
            .count() as u64
    }

    fn damaged(&self, seq: u64) -> impl FnOnce(DecodeError) -> ArchiveError + '_ {
        move |source| ArchiveError::Damaged {
            seq,
            object: self.object_name(seq),
            store: self.store.describe(),
            source,
        }
    }

    /// Stores sealed segment `seq` (its bytes `[0, records_end)`, footer
    /// and summary), then reads the object back and checks that it
    /// decodes to exactly these bytes. Only then is it counted as archived,
    /// and the partial objects of the segment are deleted.
    pub fn put_segment(
        &self,
        seq: u64,
        raw: &[u8],
        footer: &Footer,
        summary: &[u8],
    ) -> Result<Stored> {
        let name = self.object_name(seq);
        let stored = match self.put_checked(seq, &name, raw, footer, summary)? {
            Some(size) => size,
            // Stored before a crash cut the retire short, or another
            // volume's: only the same bytes count as stored.
            None if self.holds_segment(seq, raw)? => self.store.size(&name)?,
            None => {
                return Err(ArchiveError::Conflict {
                    seq,
                    object: name,
                    store: self.store.describe(),
                });
            }
        };
        if let Some(o) = lock(&self.objects).as_mut() {
            o.insert(seq, stored);
        }
        self.drop_partials(seq, u32::MAX);
        Ok(Stored {
            raw: raw.len() as u64,
            stored,
        })
    }

    /// Stores the first `footer.records_end` bytes of segment `seq`, not
    /// sealed yet, as a partial object (verified as `put_segment` does),
    /// and deletes the older partial objects of the segment.
    pub fn put_partial(
        &self,
        seq: u64,
        raw: &[u8],
        footer: &Footer,
        summary: &[u8],
    ) -> Result<Stored> {
        let end = footer.records_end;
        let name = object::partial_name(self.volume_id, seq, end);
        let stored = match self.put_checked(seq, &name, raw, footer, summary)? {
            Some(size) => size,
            // Shipped before a crash: the same prefix of the same segment.
            None => self.store.size(&name)?,
        };
        lock(&self.partials).entry(seq).or_default().insert(end);
        self.drop_partials(seq, end);
        Ok(Stored {
            raw: raw.len() as u64,
            stored,
        })
    }

    /// Deletes the partial objects of segment `seq` that end before
    /// `end`. A failed delete is only logged: an extra partial object is
    /// never read once a newer one or the whole segment is there.
    fn drop_partials(&self, seq: u64, end: u32) {
        let older: Vec<u32> = {
            let mut partials = lock(&self.partials);
            let Some(ends) = partials.get_mut(&seq) else {
                return;
            };
            let older = ends.iter().copied().filter(|e| *e < end).collect();
            ends.retain(|e| *e >= end);
            if ends.is_empty() {
                partials.remove(&seq);
            }
            older
        };
        for e in older {
            let name = object::partial_name(self.volume_id, seq, e);
            if let Err(err) = self.store.delete(&name) {
                log::warn!("cannot delete the superseded partial object {name}: {err}");
            }
        }
    }

    /// Encodes and puts an object named `name`, reads it back and checks
    /// it decodes to `raw`. Its size, or `None` if the name was taken.
    fn put_checked(
        &self,
        seq: u64,
        name: &str,
        raw: &[u8],
        footer: &Footer,
        summary: &[u8],
    ) -> Result<Option<u64>> {
        let bytes = object::encode(raw, footer, summary, self.level, self.threads)
            .map_err(|source| ArchiveError::Compress { seq, source })?;
        match self.store.put(name, &bytes) {
            Err(StoreError::Exists { .. }) => return Ok(None),
            other => other?,
        }
        let mismatch = || ArchiveError::Mismatch {
            seq,
            store: self.store.describe(),
        };
        let back = self.store.get(name)?;
        let trailer = object::verify(&back, raw).map_err(|_| mismatch())?;
        if trailer.header.seq != seq || trailer.header.volume_id != self.volume_id {
            return Err(mismatch());
        }
        Ok(Some(bytes.len() as u64))
    }

    /// The object that holds segment `seq` for reading: the whole
    /// segment's, else its newest partial object.
    pub fn name_of(&self, seq: u64) -> String {
        let whole = lock(&self.objects)
            .as_ref()
            .is_some_and(|o| o.contains_key(&seq));
        match lock(&self.partials).get(&seq).and_then(|e| e.last()) {
            Some(&end) if !whole => object::partial_name(self.volume_id, seq, end),
            _ => self.object_name(seq),
        }
    }

    /// Segments with partial objects and no whole one, ascending.
    pub fn partial_segments(&self) -> Vec<u64> {
        let objects = lock(&self.objects);
        let whole = |s: &u64| objects.as_ref().is_some_and(|o| o.contains_key(s));
        let partials = lock(&self.partials);
        partials.keys().copied().filter(|s| !whole(s)).collect()
    }

    /// The end of the newest partial object of segment `seq`, if any.
    pub fn partial_end(&self, seq: u64) -> Option<u32> {
        lock(&self.partials)
            .get(&seq)
            .and_then(|e| e.last().copied())
    }

    /// Whether the stored object of segment `seq` holds exactly `raw` (the
    /// segment's bytes, its header with the volume id and creation time
    /// included). False for damaged or foreign bytes; an error only when
    /// the store cannot be read.
    pub fn holds_segment(&self, seq: u64, raw: &[u8]) -> Result<bool> {
        let bytes = self.store.get(&self.object_name(seq))?;
        Ok(object::verify(&bytes, raw)
            .is_ok_and(|t| t.header.seq == seq && t.header.volume_id == self.volume_id))
    }

    /// The trailer of archived segment `seq`: header, footer, summary and
    /// frame table, fetched with one ranged read (two for one larger than
    /// any seen before) and kept.
    pub fn trailer(&self, seq: u64) -> Result<Arc<Trailer>> {
        Ok(self.held(seq)?.1)
    }

    /// The trailer of segment `seq` and the object it was read from.
    fn held(&self, seq: u64) -> Result<(String, Arc<Trailer>)> {
        if let Some(held) = lock(&self.trailers).get(&seq) {
            return Ok(held.clone());
        }
        let name = self.name_of(seq);
        let trailer = match self.fetch_trailer(seq, &name) {
            Err(e) if self.superseded(seq, &name, &e) => {
                let name = self.name_of(seq);
                (name.clone(), self.fetch_trailer(seq, &name)?)
            }
            other => (name, other?),
        };
        let trailer = (trailer.0, Arc::new(trailer.1));
        let mut trailers = lock(&self.trailers);
        if trailers.len() >= TRAILERS_MAX {
            trailers.clear();
        }
        trailers.insert(seq, trailer.clone());
        Ok(trailer)
    }

    /// Whether `failure`, reading object `name` of segment `seq`, says that
    /// a newer object replaced it: a partial object is deleted once a
    /// longer prefix or the whole segment is stored (by the volume's
    /// archiver, while this reads the store). Then the store is listed
    /// again and the segment's trailer forgotten, so that a second try
    /// reads the newer object, which holds the same bytes and more.
    fn superseded(&self, seq: u64, name: &str, failure: &ArchiveError) -> bool {
        let gone = match failure {
            ArchiveError::Lost { .. } => true,
            ArchiveError::Store(e) => e.is_not_found(),
            _ => false,
        };
        if !gone || name == self.object_name(seq) || self.relist().is_err() {
            return false;
        }
        lock(&self.trailers).remove(&seq);
        self.name_of(seq) != name
    }

    /// Reads and checks the trailer of object `name`, segment `seq`'s.
    fn fetch_trailer(&self, seq: u64, name: &str) -> Result<Trailer> {
        // A whole object's size is known from the listing: no HEAD.
        let listed = match name == self.object_name(seq) {
            true => lock(&self.objects)
                .as_ref()
                .and_then(|o| o.get(&seq).copied()),
            false => None,
        };
        let size = listed.map_or_else(|| self.store.size(name), Ok);
        let size = size.map_err(|e| match e.is_not_found() {
            true => ArchiveError::Lost {
                seq,
                object: name.to_string(),
                store: self.store.describe(),
            },
            false => e.into(),
        })?;
        if size < TAIL_LEN as u64 {
            return Err(self.damaged(seq)(DecodeError::Invalid("object too short")));
        }
        let bytes = self.trailer_bytes(seq, name, size)?;
        let trailer = Trailer::decode(&bytes).map_err(self.damaged(seq))?;
        if trailer.header.seq != seq || trailer.header.volume_id != self.volume_id {
            return Err(ArchiveError::Foreign {
                seq,
                object: name.to_string(),
                store: self.store.describe(),
            });
        }
        Ok(trailer)
    }

    /// The trailer bytes of object `name` of `size` bytes: one ranged read
    /// of the object's end, as long as the largest trailer seen so far (so
    /// that it usually holds the whole trailer), and a second for the part
    /// it missed.
    fn trailer_bytes(&self, seq: u64, name: &str, size: u64) -> Result<Vec<u8>> {
        let guess = self.tail_guess.load(Ordering::Relaxed).min(size);
        let end = self.store.get_range(name, size - guess, guess)?;
        let tail = &end[end.len() - TAIL_LEN..];
        let (at, len) = object::trailer_range(size, tail).map_err(self.damaged(seq))?;
        self.tail_guess
            .fetch_max(len + TAIL_LEN as u64, Ordering::Relaxed);
        let from = size - guess;
        let mut bytes = match at.checked_sub(from) {
            Some(skip) => return Ok(end[skip as usize..(skip + len) as usize].to_vec()),
            None => self.store.get_range(name, at, from - at)?,
        };
        bytes.extend_from_slice(&end[..(at + len - from) as usize]);
        Ok(bytes)
    }

    /// The records of archived segment `seq` as the backward scan needs them.
    fn segment_records(&self, seq: u64) -> crate::error::Result<SegmentRecords> {
        let t = self.trailer(seq)?;
        let entries = SummaryEntry::decode_all(&t.summary).map_err(self.damaged(seq))?;
        check_summary(&t.header, &t.footer, &entries)?;
        Ok(SegmentRecords {
            header: t.header,
            header_crc: t.header_crc,
            entries,
            scan: None,
        })
    }

    /// The segment header of archived segment `seq`.
    pub fn header(&self, seq: u64) -> Result<SegmentHeader> {
        Ok(self.trailer(seq)?.header)
    }

    /// Frame `i` of object `name`, whose trailer is `t`.
    fn frame(&self, seq: u64, name: &str, t: &Arc<Trailer>, i: usize) -> Result<Arc<Vec<u8>>> {
        let key = (seq, t.raw_len, i);
        self.ahead.reading(name, seq, t, i);
        if let Some(f) = self.ahead.cached(key) {
            return Ok(f);
        }
        let frame = Arc::new(self.fetch_frame(seq, name, t, i)?);
        self.ahead.cache().insert(key, frame.clone());
        Ok(frame)
    }

    /// Frame `i` of object `name` (segment `seq`'s, whose trailer is `t`)
    /// fetched from the store and checked, past the cache: what `lsvfs
    /// verify --read-data` reads once each.
    pub fn fetch_frame(&self, seq: u64, name: &str, t: &Trailer, i: usize) -> Result<Vec<u8>> {
        match ahead::fetch(&*self.store, name, t, i) {
            Ok(frame) => Ok(frame),
            Err(FetchError::Store(e)) => Err(e.into()),
            Err(FetchError::Damaged(e)) => Err(self.damaged(seq)(e)),
        }
    }

    /// Up to `len` bytes of archived segment `seq` from `offset`, fewer if
    /// its records end first.
    pub fn read(&self, seq: u64, offset: u64, len: usize) -> Result<Vec<u8>> {
        let (name, t) = self.held(seq)?;
        match self.read_object(seq, &name, &t, offset, len) {
            Err(e) if self.superseded(seq, &name, &e) => {
                let (name, t) = self.held(seq)?;
                self.read_object(seq, &name, &t, offset, len)
            }
            other => other,
        }
    }

    /// Up to `len` bytes from `offset` of object `name`, segment `seq`'s.
    fn read_object(
        &self,
        seq: u64,
        name: &str,
        t: &Arc<Trailer>,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>> {
        let end = (offset + len as u64).min(t.raw_len);
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        let mut pos = offset;
        while pos < end {
            let i = t.frame_of(pos);
            let (start, _) = t.raw_span(i);
            let frame = self.frame(seq, name, t, i)?;
            let from = (pos - start) as usize;
            let to = ((end - start) as usize).min(frame.len());
            out.extend_from_slice(&frame[from..to]);
            pos = start + to as u64;
        }
        Ok(out)
    }
}

impl RetiredSegments for Archive {
    fn records(&self, seq: u64) -> crate::error::Result<SegmentRecords> {
        self.segment_records(seq)
    }

    fn read(&self, seq: u64, offset: u64, len: usize) -> crate::error::Result<Vec<u8>> {
        Ok(Archive::read(self, seq, offset, len)?)
    }

    fn contains(&self, seq: u64) -> Option<bool> {
        lock(&self.objects).as_ref().map(|o| o.contains_key(&seq))
    }

    fn newest(&self) -> Option<u64> {
        lock(&self.objects)
            .as_ref()
            .and_then(|o| o.last_key_value().map(|(&s, _)| s))
    }

    fn lost(&self, seq: u64) -> crate::error::Error {
        ArchiveError::Lost {
            seq,
            object: self.object_name(seq),
            store: self.store.describe(),
        }
        .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Faulty, Memory};

    /// An object of `frames` bytes, then a trailer of `len` bytes, then the
    /// tail; the trailer's bytes count from 0 so that a misplaced slice shows.
    fn object_with_trailer(frames: usize, len: usize) -> (Vec<u8>, Vec<u8>) {
        let trailer: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut bytes = vec![0xEE; frames];
        bytes.extend_from_slice(&trailer);
        bytes.extend_from_slice(&(len as u64).to_le_bytes());
        bytes.extend_from_slice(b"LSVFSTRL");
        (bytes, trailer)
    }

    /// An archive of volume [3; 16] holding segment 9 of `frames` frames,
    /// listed, and its store.
    fn archived(frames: usize) -> (Archive, Arc<Faulty<Memory>>, u64) {
        let store = Arc::new(Faulty::new(Memory::new()));
        let archive = Archive::open(store.clone(), VolumeId([3; 16]), 1, 64 << 20);
        let blocks = (frames - 1) * object::FRAME_RAW / 4096 + 10;
        let (raw, footer, summary) = crate::format::archive::tests::segment(blocks as u32);
        archive.put_segment(9, &raw, &footer, &summary).unwrap();
        archive.relist().unwrap();
        assert_eq!(archive.trailer(9).unwrap().frames(), frames);
        (archive, store, raw.len() as u64)
    }

    fn has_frame(archive: &Archive, i: usize) -> bool {
        let t = archive.trailer(9).unwrap();
        archive.ahead.cache().contains((9, t.raw_len, i))
    }

    #[test]
    fn a_sequential_reader_finds_the_next_frames_fetched_and_each_is_fetched_once() {
        let (archive, store, len) = archived(4);
        let step = object::FRAME_RAW;
        let (first, second) = (
            archive.read(9, 0, step).unwrap(),
            archive.read(9, step as u64, step),
        );
        assert_eq!(first.len(), step);
        assert_eq!(second.unwrap().len(), step);
        // Frame 0, then frame 1: frames 2 and 3 come without being asked.
        let start = std::time::Instant::now();
        while !(2..4).all(|i| has_frame(&archive, i)) {
            assert!(
                start.elapsed().as_secs() < 10,
                "frames 2-3 never fetched ahead"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let calls = store.calls();
        let mut at = 2 * step as u64;
        while at < len {
            at += archive.read(9, at, step).unwrap().len() as u64;
        }
        assert_eq!(store.calls(), calls, "every frame was there already");
    }

    #[test]
    fn random_reads_fetch_only_what_they_read() {
        let (archive, store, _) = archived(4);
        let calls = store.calls();
        // Frame 0 read again and again (a view's metadata) is no sequence.
        for i in [2u64, 0, 0, 0, 3] {
            archive.read(9, i * object::FRAME_RAW as u64, 100).unwrap();
        }
        assert_eq!(store.calls() - calls, 3, "one ranged GET per frame read");
        assert!(!has_frame(&archive, 1));
    }

    #[test]
    fn a_trailer_is_read_whole_with_one_read_once_one_as_large_was_seen() {
        let store = Arc::new(Faulty::new(Memory::new()));
        let archive = Archive::open(store.clone(), VolumeId([7; 16]), 3, 1 << 20);
        let lens = [300, 200 << 10, 70 << 10, 64 << 10, 1 << 20, 5000, 300 << 10];
        let mut objects = Vec::new();
        for (i, &len) in lens.iter().enumerate() {
            let (bytes, trailer) = object_with_trailer(1000 * i, len);
            let name = format!("o{i}");
            store.put(&name, &bytes).unwrap();
            objects.push((name, bytes.len() as u64, trailer));
        }
        let mut largest = TAIL_GUESS_FIRST;
        for (i, (name, size, trailer)) in objects.iter().enumerate() {
            let before = store.calls();
            let read = archive.trailer_bytes(i as u64, name, *size).unwrap();
            assert_eq!(&read, trailer, "{name}");
            let reads = store.calls() - before;
            let fits = trailer.len() as u64 + TAIL_LEN as u64 <= largest;
            assert_eq!(reads, if fits { 1 } else { 2 }, "{name}");
            largest = largest.max(trailer.len() as u64 + TAIL_LEN as u64);
        }
    }
}
