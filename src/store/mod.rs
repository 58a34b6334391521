//! Backing stores: where retired segments are kept, as immutable named
//! objects. The engine sees only [`BackingStore`]; [`LocalDir`] is the
//! default (a directory, possibly on another disk or a network mount),
//! [`Memory`] and [`Faulty`] serve tests and benchmarks.
//!
//! The trait is shaped so that an S3-compatible store can be added without
//! touching the engine: `put` maps to PUT (atomic and durable once it
//! answers), `get_range` to a ranged GET, `size` to HEAD, `list` to
//! ListObjectsV2 (paginated, under a prefix), `delete` to DELETE (which
//! succeeds for a missing key). Object names are short and flat.

mod error;
mod faulty;
mod local;
mod memory;

pub use error::{ArchiveError, StoreError};
pub use faulty::Faulty;
pub use local::LocalDir;
pub use memory::Memory;

pub trait BackingStore: Send + Sync + 'static {
    /// Stores `bytes` under `name`, durably and atomically: once this
    /// answers Ok, `get` gives exactly these bytes, also after a crash; no
    /// reader ever sees part of an object. An existing name is never
    /// replaced: that put fails with [`StoreError::Exists`] (objects are
    /// immutable; two writers of one name must not overwrite each other).
    fn put(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError>;
    fn get(&self, name: &str) -> Result<Vec<u8>, StoreError>;
    /// Exactly `len` bytes from `offset`; a range past the end is an error.
    fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>, StoreError>;
    fn size(&self, name: &str) -> Result<u64, StoreError>;
    /// Every object as (name, size), sorted by name; never a partial put.
    fn list(&self) -> Result<Vec<(String, u64)>, StoreError>;
    /// Deleting a missing object succeeds.
    fn delete(&self, name: &str) -> Result<(), StoreError>;
    /// Where the store is, for messages: a path or a URL.
    fn describe(&self) -> String;
}

/// Object names: 1 to 200 of `[A-Za-z0-9._-]`, not starting with a dot.
pub fn check_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    match ok {
        true => Ok(()),
        false => Err(StoreError::InvalidName(name.to_string())),
    }
}

/// The bytes `[offset, offset + len)` of an object of `size` bytes.
fn range(
    store: &dyn BackingStore,
    name: &str,
    bytes: &[u8],
    offset: u64,
    len: u64,
) -> Result<Vec<u8>, StoreError> {
    let size = bytes.len() as u64;
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(bytes[offset as usize..end as usize].to_vec()),
        _ => Err(StoreError::Range {
            store: store.describe(),
            name: name.to_string(),
            offset,
            len,
            size,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The contract every store keeps.
    fn contract(s: &dyn BackingStore) {
        assert!(s.list().unwrap().is_empty());
        s.put("b.lsa", b"hello world").unwrap();
        s.put("a.lsa", b"").unwrap();
        assert_eq!(s.get("b.lsa").unwrap(), b"hello world");
        assert_eq!(s.get("a.lsa").unwrap(), b"");
        assert_eq!(s.size("b.lsa").unwrap(), 11);
        assert_eq!(s.get_range("b.lsa", 6, 5).unwrap(), b"world");
        assert_eq!(s.get_range("b.lsa", 11, 0).unwrap(), b"");
        for (off, len) in [(6, 6), (12, 0), (u64::MAX, 2)] {
            let e = s.get_range("b.lsa", off, len).unwrap_err();
            assert!(matches!(e, StoreError::Range { .. }), "{e}");
        }
        let e = s.put("b.lsa", b"replaced").unwrap_err();
        assert!(matches!(e, StoreError::Exists { .. }), "{e}");
        assert_eq!(s.get("b.lsa").unwrap(), b"hello world");
        assert_eq!(
            s.list().unwrap(),
            vec![("a.lsa".to_string(), 0), ("b.lsa".to_string(), 11)]
        );
        for e in [
            s.get("nope").unwrap_err(),
            s.get_range("nope", 0, 1).unwrap_err(),
            s.size("nope").unwrap_err(),
        ] {
            assert!(e.is_not_found(), "{e}");
            assert!(e.to_string().contains("nope"), "{e}");
        }
        s.delete("a.lsa").unwrap();
        s.delete("a.lsa").unwrap();
        assert!(s.get("a.lsa").unwrap_err().is_not_found());
        let long = "x".repeat(201);
        for bad in ["", "a/b", "..", ".hidden", long.as_str()] {
            let e = s.put(bad, b"x").unwrap_err();
            assert!(matches!(e, StoreError::InvalidName(_)), "{bad:?}: {e}");
        }
        let big: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 251) as u8).collect();
        s.put("big", &big).unwrap();
        assert_eq!(s.get("big").unwrap(), big);
        assert_eq!(
            s.get_range("big", 1 << 20, 7).unwrap(),
            &big[1 << 20..(1 << 20) + 7]
        );
        assert_eq!(s.list().unwrap().len(), 2);
    }

    #[test]
    fn local_directory_keeps_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        contract(&LocalDir::open(crate::disk::real(), dir.path()).unwrap());
    }

    #[test]
    fn memory_keeps_the_contract() {
        contract(&Memory::new());
    }

    #[test]
    fn faulty_without_faults_keeps_the_contract() {
        contract(&Faulty::new(Memory::new()));
    }
}
