//! The sync points prune forgot: kept durably in the volume directory
//! (`forgotten`) and, for a host that has only the backing store, as an
//! object of the store (`{volume id}-forgotten-{generation:016}.lsf`).
//!
//! The catalog and the objects' summaries still hold a forgotten sync
//! point's record (the catalog is append-only and objects are immutable);
//! every listing subtracts this set, and no view of a forgotten sync point
//! is built. Ids are kept as inclusive ranges, since prune forgets runs of
//! consecutive sync points. Layout (little-endian):
//!
//! ```text
//! 0 [8] magic "LSVFSFGT"   8 u16 version (1)   10 u16 zero   12 u32 n
//! 16    n × (u64 first, u64 last)   then u32 CRC-32C of every byte before it
//! ```
//!
//! A newer generation of the store's object is put before the older ones
//! are deleted; a reader takes the newest.

use crate::disk::Disk;
use crate::error::{Error, Result, io};
use crate::format::codec::*;
use crate::format::{DecodeError, VolumeId};
use crate::store::{ArchiveError, BackingStore};
use std::collections::BTreeMap;
use std::path::Path;

/// The file in the volume directory.
pub const FORGOTTEN_FILE: &str = "forgotten";
const MAGIC: &[u8; 8] = b"LSVFSFGT";
const VERSION: u16 = 1;

/// A set of sync-point ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forgotten {
    /// first → last, inclusive; disjoint and not adjacent.
    ranges: BTreeMap<u64, u64>,
}

impl Forgotten {
    pub fn contains(&self, id: u64) -> bool {
        self.ranges
            .range(..=id)
            .next_back()
            .is_some_and(|(_, &last)| id <= last)
    }

    pub fn insert(&mut self, id: u64) {
        if self.contains(id) {
            return;
        }
        let mut first = id;
        let mut last = id;
        if let Some((&f, &l)) = self.ranges.range(..id).next_back()
            && l + 1 == id
        {
            first = f;
        }
        if let Some(&l) = self.ranges.get(&(id + 1)) {
            self.ranges.remove(&(id + 1));
            last = l;
        }
        self.ranges.insert(first, last);
    }

    pub fn len(&self) -> u64 {
        self.ranges.iter().map(|(f, l)| l - f + 1).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut buf = MAGIC.to_vec();
        put_u16(&mut buf, VERSION);
        put_u16(&mut buf, 0);
        put_u32(&mut buf, self.ranges.len() as u32);
        for (&f, &l) in &self.ranges {
            put_u64(&mut buf, f);
            put_u64(&mut buf, l);
        }
        let crc = crc32c::crc32c(&buf);
        put_u32(&mut buf, crc);
        buf
    }

    pub fn decode(bytes: &[u8]) -> Result<Forgotten, DecodeError> {
        if bytes.len() < 20 {
            return Err(DecodeError::Truncated {
                needed: 20,
                available: bytes.len(),
            });
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        verify_crc(u32_at(crc, 0), body)?;
        let input = &mut &body[..];
        if take(input, 8)? != MAGIC {
            return Err(DecodeError::Magic);
        }
        match get_u16(input)? {
            VERSION => {}
            v => return Err(DecodeError::Version(v)),
        }
        get_u16(input)?;
        let n = get_u32(input)? as usize;
        if input.len() != n * 16 {
            return Err(DecodeError::Invalid("forgotten ranges length"));
        }
        let mut set = Forgotten::default();
        let mut floor = 0;
        for _ in 0..n {
            let (f, l) = (get_u64(input)?, get_u64(input)?);
            if f > l || (!set.is_empty() && f <= floor) {
                return Err(DecodeError::Invalid("forgotten ranges out of order"));
            }
            floor = l.saturating_add(1);
            set.ranges.insert(f, l);
        }
        Ok(set)
    }

    /// The set recorded in the volume directory `dir` (empty when prune
    /// never forgot anything there).
    pub fn load(disk: &dyn Disk, dir: &Path) -> Result<Forgotten> {
        let path = dir.join(FORGOTTEN_FILE);
        match disk.read(&path) {
            Ok(bytes) => Forgotten::decode(&bytes).map_err(|source| Error::Damaged {
                what: path.display().to_string(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Forgotten::default()),
            Err(e) => Err(io(format!("cannot read {}", path.display()))(e)),
        }
    }

    /// Records the set in the volume directory `dir`, durably.
    pub fn save(&self, disk: &dyn Disk, dir: &Path) -> Result<()> {
        crate::layout::write_durably(disk, &dir.join(FORGOTTEN_FILE), &self.encode())
    }

    /// The set the store records for `volume`, from its newest object, and
    /// the names of all its objects.
    pub fn load_stored(
        store: &dyn BackingStore,
        volume: VolumeId,
    ) -> Result<(Forgotten, Vec<String>)> {
        let mut names: Vec<(u64, String)> = store
            .list()
            .map_err(ArchiveError::from)?
            .into_iter()
            .filter_map(|(name, _)| generation_of(volume, &name).map(|g| (g, name)))
            .collect();
        names.sort_unstable();
        let set = match names.last() {
            None => Forgotten::default(),
            Some((_, name)) => {
                let bytes = store.get(name).map_err(ArchiveError::from)?;
                Forgotten::decode(&bytes).map_err(|source| Error::Damaged {
                    what: format!("object {name} in {}", store.describe()),
                    source,
                })?
            }
        };
        Ok((set, names.into_iter().map(|(_, n)| n).collect()))
    }

    /// Records the set in `store` for `volume` as a new object, then
    /// deletes `older` (the objects [`Forgotten::load_stored`] found).
    pub fn store(
        &self,
        store: &dyn BackingStore,
        volume: VolumeId,
        older: &[String],
    ) -> Result<()> {
        let next = older
            .iter()
            .filter_map(|n| generation_of(volume, n))
            .max()
            .map_or(1, |g| g + 1);
        let name = format!("{}-forgotten-{next:016}.lsf", volume.to_hex());
        store
            .put(&name, &self.encode())
            .map_err(ArchiveError::from)?;
        for old in older {
            store.delete(old).map_err(ArchiveError::from)?;
        }
        Ok(())
    }
}

/// The generation of a forgotten-set object of `volume` (None for other
/// names).
fn generation_of(volume: VolumeId, name: &str) -> Option<u64> {
    let rest = name
        .strip_prefix(&volume.to_hex())?
        .strip_prefix("-forgotten-")?
        .strip_suffix(".lsf")?;
    (rest.len() == 16 && rest.bytes().all(|b| b.is_ascii_digit()))
        .then(|| rest.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Memory;

    #[test]
    fn ranges_merge_and_round_trip() {
        let mut f = Forgotten::default();
        for id in [5, 3, 4, 9, 1, 10, 4] {
            f.insert(id);
        }
        assert_eq!(f.ranges.len(), 3, "{f:?}");
        assert_eq!(f.len(), 6);
        for id in 0..12 {
            assert_eq!(f.contains(id), [1, 3, 4, 5, 9, 10].contains(&id), "{id}");
        }
        assert_eq!(Forgotten::decode(&f.encode()).unwrap(), f);
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let mut f = Forgotten::default();
        f.insert(7);
        f.insert(20);
        let bytes = f.encode();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(Forgotten::decode(&bad).is_err(), "byte {i}");
        }
        assert!(Forgotten::decode(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn the_store_keeps_the_newest_generation_only() {
        let store = Memory::new();
        let (v, other) = (VolumeId([1; 16]), VolumeId([2; 16]));
        let mut f = Forgotten::default();
        f.insert(1);
        Forgotten::default().store(&store, other, &[]).unwrap();
        f.store(&store, v, &[]).unwrap();
        let (got, names) = Forgotten::load_stored(&store, v).unwrap();
        assert_eq!((got, names.len()), (f.clone(), 1));
        f.insert(2);
        f.store(&store, v, &names).unwrap();
        let (got, names) = Forgotten::load_stored(&store, v).unwrap();
        assert_eq!(got, f);
        assert_eq!(names.len(), 1);
        assert!(names[0].ends_with("-forgotten-0000000000000002.lsf"));
        let (theirs, _) = Forgotten::load_stored(&store, other).unwrap();
        assert!(theirs.is_empty(), "another volume's set is its own");
    }
}
