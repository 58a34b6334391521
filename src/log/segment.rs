//! Segment files in the primary directory: naming, creation (fresh or by
//! reusing a recycled file in place), headers, footers, reading a sealed
//! segment whole (to archive it) and the forward scan that finds the valid
//! end of a segment.
//!
//! Files are named `{seq:016}.seg`; recycled files wait as `free-{n:016}.seg`,
//! and spare files made ahead for segment `seq` as `spare-{seq:016}.seg`.
//! Every segment file is exactly `segment_size` bytes, allocated when created,
//! so appends never change a file's size.

use crate::disk::{Disk, FileIo, Kind, OpenMode};
use crate::error::{Error, Result, io};
use crate::format::record::{FLAG_GROUP_END, RECORD_HEADER_LEN};
use crate::format::segment::{FOOTER_LEN, SEGMENT_HEADER_LEN};
use crate::format::{
    DecodeError, Footer, RecordHeader, RecordView, SegmentHeader, SummaryEntry, VolumeId,
};
use std::path::{Path, PathBuf};

/// How much of a segment the forward scan reads at a time.
const SCAN_CHUNK: usize = 1 << 20;

pub fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:016}.seg"))
}

fn free_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("free-{n:016}.seg"))
}

fn spare_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("spare-{seq:016}.seg"))
}

/// Whether a file of the free pool is a spare: allocated and never
/// written, so its blocks are unwritten extents (see `Tail::zero_ahead`).
pub fn is_spare(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("spare-"))
}

/// The segment files and the free pool (recycled and spare files) found in
/// a primary directory.
#[derive(Debug, Default)]
pub struct Listing {
    /// Sequence numbers, ascending.
    pub segments: Vec<u64>,
    pub free: Vec<PathBuf>,
    /// Segments whose creation was cut short; they hold no acknowledged
    /// record (their name was not durable, so nothing in them was).
    pub staging: Vec<PathBuf>,
}

pub fn list(disk: &dyn Disk, dir: &Path) -> Result<Listing> {
    let mut listing = Listing::default();
    let entries = disk
        .list(dir)
        .map_err(io(format!("cannot list {}", dir.display())))?;
    for (name, kind) in entries {
        let name = name.as_str();
        let ours = name.ends_with(".seg") || name.ends_with(".seg.tmp");
        if ours && kind != Kind::File {
            // A link planted among the segments would be written through.
            return Err(Error::Inconsistent(format!(
                "{} is not a regular file; remove it (lsvfs never makes one)",
                dir.join(name).display()
            )));
        }
        if let Some(n) = name
            .strip_prefix("free-")
            .or_else(|| name.strip_prefix("spare-"))
            .and_then(|n| n.strip_suffix(".seg"))
        {
            if n.parse::<u64>().is_ok() {
                listing.free.push(dir.join(name));
            }
        } else if let Some(seq) = name.strip_suffix(".seg").and_then(|n| n.parse().ok()) {
            listing.segments.push(seq);
        } else if name.ends_with(".seg.tmp") {
            listing.staging.push(dir.join(name));
        }
    }
    listing.segments.sort_unstable();
    listing.free.sort();
    Ok(listing)
}

pub fn fsync_dir(disk: &dyn Disk, dir: &Path) -> Result<()> {
    disk.sync_dir(dir)
        .map_err(io(format!("cannot fsync directory {}", dir.display())))
}

/// Creates segment `header.seq` with its header written and durable,
/// reusing a recycled file when one is given, and names it. Returns the
/// open file (read-write). The name is not made durable here: whoever
/// makes records in the file durable fsyncs the directory first (see
/// [`super::tail::TailFile`]), so that the writer's lock is not held for
/// a journal commit at every new segment (measured under pgbench: the
/// directory fsync took p90 8.8 ms, p99 13 ms there).
pub fn create(
    disk: &dyn Disk,
    dir: &Path,
    header: &SegmentHeader,
    reuse: Option<&Path>,
) -> Result<Box<dyn FileIo>> {
    let final_path = segment_path(dir, header.seq);
    let (bytes, _) = header.encode();
    let staging = match reuse {
        Some(p) => p.to_path_buf(),
        None => dir.join(format!("{:016}.seg.tmp", header.seq)),
    };
    let ctx = |what: &str| format!("cannot {what} segment file {}", staging.display());
    // A staging file left by a creation that failed (a full disk) is
    // reused; a symlink in its place fails to open (O_NOFOLLOW).
    let mode = match reuse {
        Some(_) => OpenMode::ReadWrite,
        None => OpenMode::Create,
    };
    let file = disk.open(&staging, mode).map_err(io(ctx("open")))?;
    // A recycled file made by an older version may be readable by others.
    let chmod = file.make_private().map_err(io(ctx("chmod")))?;
    if reuse.is_none() {
        // A full disk shows up here, at creation, not in an append.
        file.allocate(header.segment_size)
            .map_err(io(ctx("allocate")))?;
    }
    file.write_all_at(&bytes, 0)
        .map_err(io(ctx("write header of")))?;
    // A recycled file rewritten in place changes only its data (and its
    // times, which fdatasync leaves to the journal's own pace: under
    // pgbench an fsync here took p50 2.9 ms, p90 8.7 ms, for its journal
    // commit); a new file's allocation or a changed mode needs the fsync.
    match reuse {
        Some(_) if !chmod => file.sync_data(),
        _ => file.sync_all(),
    }
    .map_err(io(ctx("fsync")))?;
    disk.rename(&staging, &final_path)
        .map_err(io(ctx("rename")))?;
    Ok(file)
}

/// Makes a spare file for segment `seq` in the free pool: allocated in
/// full, its header's block written (so that writing the header later
/// converts no unwritten extent), fsynced and named durably, so that
/// creating the segment (under the writer's lock) writes a header,
/// fdatasyncs and renames without a journal commit. Made as a staging
/// file first, so that a crash midway leaves nothing in the pool. Returns
/// its path.
pub fn make_spare(disk: &dyn Disk, dir: &Path, seq: u64, segment_size: u64) -> Result<PathBuf> {
    let path = spare_path(dir, seq);
    let staging = dir.join(format!("spare-{seq:016}.seg.tmp"));
    let ctx = |what: &str| format!("cannot {what} spare segment file {}", staging.display());
    let made = (|| {
        let file = disk
            .open(&staging, OpenMode::CreateNew)
            .map_err(io(ctx("create")))?;
        file.make_private().map_err(io(ctx("chmod")))?;
        file.allocate(segment_size).map_err(io(ctx("allocate")))?;
        file.write_all_at(&[0; SEGMENT_HEADER_LEN], 0)
            .map_err(io(ctx("write")))?;
        file.sync_all().map_err(io(ctx("fsync")))?;
        disk.rename(&staging, &path).map_err(io(ctx("rename")))?;
        fsync_dir(disk, dir)
    })();
    if made.is_err() {
        // A full disk: give the space back now rather than at the next open.
        let _ = disk.remove_file(&staging);
    }
    made.map(|()| path)
}

/// Moves a segment's primary file to the recycle pool; its bytes stay and
/// are overwritten in place when the file is reused.
pub fn recycle(disk: &dyn Disk, dir: &Path, seq: u64) -> Result<PathBuf> {
    let from = segment_path(dir, seq);
    let to = free_path(dir, seq);
    disk.rename(&from, &to)
        .map_err(io(format!("cannot recycle {}", from.display())))?;
    fsync_dir(disk, dir)?;
    Ok(to)
}

pub fn open_read(disk: &dyn Disk, dir: &Path, seq: u64) -> Result<Box<dyn FileIo>> {
    let path = segment_path(dir, seq);
    let file = disk.open(&path, OpenMode::Read).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::SegmentMissing { seq }
        } else {
            Error::Io {
                context: format!("cannot open {}", path.display()),
                source: e,
            }
        }
    })?;
    Ok(file)
}

/// Reads exactly `len` bytes at `offset` into a new buffer.
pub fn read_vec_at(file: &dyn FileIo, seq: u64, len: usize, offset: u64) -> Result<Vec<u8>> {
    file.read_vec_at(len, offset)
        .map_err(io(format!("cannot read segment {seq} at offset {offset}")))
}

pub fn read_exact_at(file: &dyn FileIo, seq: u64, buf: &mut [u8], offset: u64) -> Result<()> {
    file.read_exact_at(buf, offset)
        .map_err(io(format!("cannot read segment {seq} at offset {offset}")))
}

/// Reads the first `len` bytes of segment `seq` into `buf`, whose memory
/// is reused: a buffer the size of a segment, allocated afresh, costs a
/// page fault and a zeroed page for every 4 KiB read into it (a tenth of
/// the daemon's CPU under pgbench, when the archiver did so per segment).
pub fn read_prefix_into(
    file: &dyn FileIo,
    seq: u64,
    mut buf: Vec<u8>,
    len: usize,
) -> Result<Vec<u8>> {
    // Zeroes only what this read reaches past the buffer's last length.
    buf.resize(len, 0);
    read_exact_at(file, seq, &mut buf, 0)?;
    Ok(buf)
}

fn corrupt(seq: u64, offset: u64, what: &'static str) -> impl FnOnce(DecodeError) -> Error {
    move |source| Error::Corrupt {
        seq,
        offset,
        what,
        source,
    }
}

/// Reads and checks a segment's header: it must be segment `seq` of this volume.
pub fn read_header(
    file: &dyn FileIo,
    seq: u64,
    volume: VolumeId,
    dir: &Path,
) -> Result<(SegmentHeader, u32)> {
    let mut buf = vec![0u8; SEGMENT_HEADER_LEN];
    read_exact_at(file, seq, &mut buf, 0)?;
    let (header, crc) = SegmentHeader::decode(&buf).map_err(corrupt(seq, 0, "segment header"))?;
    if header.volume_id != volume {
        return Err(Error::ForeignSegment {
            seq,
            path: segment_path(dir, seq),
        });
    }
    if header.seq != seq {
        return Err(Error::Corrupt {
            seq,
            offset: 0,
            what: "segment header",
            source: DecodeError::Invalid("sequence number differs from file name"),
        });
    }
    Ok((header, crc))
}

/// A sealed segment's footer and summary, when it has a valid footer.
/// A footer that is absent or left from a previous use of the file means the
/// segment was never sealed: `Ok(None)`. A valid footer whose summary fails
/// its checksum is corruption.
pub fn read_sealed(
    file: &dyn FileIo,
    header: &SegmentHeader,
) -> Result<Option<(Footer, Vec<SummaryEntry>)>> {
    let seq = header.seq;
    let footer_at = header.segment_size - FOOTER_LEN as u64;
    let mut buf = vec![0u8; FOOTER_LEN];
    read_exact_at(file, seq, &mut buf, footer_at)?;
    let footer = match Footer::decode(&buf) {
        Ok(f) if f.seq == seq => f,
        _ => return Ok(None),
    };
    let summary_at = footer.records_end as u64;
    if summary_at + footer.summary_len as u64 > footer_at {
        return Err(corrupt(seq, footer_at, "segment footer")(
            DecodeError::Invalid("summary past footer"),
        ));
    }
    let mut summary = vec![0u8; footer.summary_len as usize];
    read_exact_at(file, seq, &mut summary, summary_at)?;
    crate::format::codec::verify_crc(footer.summary_crc, &summary).map_err(corrupt(
        seq,
        summary_at,
        "segment summary",
    ))?;
    let entries =
        SummaryEntry::decode_all(&summary).map_err(corrupt(seq, summary_at, "segment summary"))?;
    Ok(Some((footer, entries)))
}

/// A sealed segment read whole from primary storage, to be archived.
pub struct SealedSegment {
    /// The open file (the archiver holds it until the segment is recycled).
    pub file: Box<dyn FileIo>,
    pub footer: Footer,
    pub entries: Vec<SummaryEntry>,
    /// The segment's bytes up to the end of its records.
    pub raw: Vec<u8>,
}

impl SealedSegment {
    /// Reads segment `seq` of `volume` in `dir` into `buf` (see
    /// [`read_prefix_into`]), checking that its summary tiles its records;
    /// `Ok(None)` when it is not sealed.
    pub fn read(
        disk: &dyn Disk,
        dir: &Path,
        seq: u64,
        volume: VolumeId,
        buf: Vec<u8>,
    ) -> Result<Option<Self>> {
        let file = open_read(disk, dir, seq)?;
        let (header, _) = read_header(&*file, seq, volume, dir)?;
        let Some((footer, entries)) = read_sealed(&*file, &header)? else {
            return Ok(None);
        };
        crate::log::recovery::check_summary(&header, &footer, &entries)?;
        let raw = read_prefix_into(&*file, seq, buf, footer.records_end as usize)?;
        Ok(Some(SealedSegment {
            file,
            footer,
            entries,
            raw,
        }))
    }

    /// The summary as stored after the records.
    pub fn summary(&self) -> Vec<u8> {
        let mut summary = Vec::new();
        for e in &self.entries {
            e.encode(&mut summary);
        }
        summary
    }
}

/// What a forward scan found in an unsealed segment.
#[derive(Debug)]
pub struct Scan {
    /// Entries of the records in complete groups, in log order.
    pub entries: Vec<SummaryEntry>,
    /// End of the last complete group: where the next append goes.
    pub valid_end: u32,
    /// crc of the last record in a complete group (the header's crc if none).
    pub last_crc: u32,
    /// Where and why the scan stopped before the end of the file, if it found
    /// bytes that are not a valid continuation of the log.
    pub stopped: Option<(u32, String)>,
}

/// Reads a segment file in large chunks for the forward scan.
struct ChunkReader<'a> {
    file: &'a dyn FileIo,
    seq: u64,
    limit: u64,
    buf: Vec<u8>,
    at: u64,
}

impl ChunkReader<'_> {
    /// The bytes `[pos, pos + n)`, or `None` if they run past the limit.
    fn get(&mut self, pos: u64, n: usize) -> Result<Option<&[u8]>> {
        let end = pos + n as u64;
        if end > self.limit {
            return Ok(None);
        }
        if pos < self.at || end > self.at + self.buf.len() as u64 {
            let want = (n.max(SCAN_CHUNK) as u64).min(self.limit - pos) as usize;
            self.buf.resize(want, 0);
            read_exact_at(self.file, self.seq, &mut self.buf, pos)?;
            self.at = pos;
        }
        let start = (pos - self.at) as usize;
        Ok(Some(&self.buf[start..start + n]))
    }
}

/// Reads records from the start of a segment until the first one that is
/// torn, fails its checksum or does not chain to its predecessor. Records
/// of a group that never got its GROUP_END are not part of the log.
pub fn scan_forward(file: &dyn FileIo, header: &SegmentHeader, header_crc: u32) -> Result<Scan> {
    let mut reader = ChunkReader {
        file,
        seq: header.seq,
        limit: header.segment_size - FOOTER_LEN as u64,
        buf: Vec::new(),
        at: 0,
    };
    let mut scan = Scan {
        entries: Vec::new(),
        valid_end: SEGMENT_HEADER_LEN as u32,
        last_crc: header_crc,
        stopped: None,
    };
    let mut group = Vec::new();
    let mut prev = header_crc;
    let mut pos = SEGMENT_HEADER_LEN as u64;
    let stop = loop {
        let Some(head) = reader.get(pos, RECORD_HEADER_LEN)? else {
            break None;
        };
        if head.iter().all(|&b| b == 0) {
            break Some("zeros".to_string());
        }
        let len = match RecordHeader::decode(head) {
            Ok(h) => h.len as usize,
            Err(e) => break Some(e.to_string()),
        };
        let Some(bytes) = reader.get(pos, len)? else {
            break Some("record runs past the end of the segment".to_string());
        };
        let view = match RecordView::parse(bytes) {
            Ok(v) => v,
            Err(e) => break Some(e.to_string()),
        };
        if view.header.prev != prev {
            break Some("record does not follow its predecessor".to_string());
        }
        group.push(SummaryEntry::of(pos as u32, &view));
        prev = view.header.crc;
        pos += len as u64;
        if view.header.flags & FLAG_GROUP_END != 0 {
            scan.entries.append(&mut group);
            scan.valid_end = pos as u32;
            scan.last_crc = prev;
        }
    };
    if let Some(reason) = stop {
        scan.stopped = Some((pos as u32, reason));
    }
    if !group.is_empty() {
        scan.stopped = Some((
            scan.valid_end,
            "a group of records was cut short".to_string(),
        ));
    }
    Ok(scan)
}
