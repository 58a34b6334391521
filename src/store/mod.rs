//! Backing stores: where retired segments are kept, as immutable named
//! objects. The engine sees only [`BackingStore`]; [`LocalDir`] is the
//! default (a directory, possibly on another disk or a network mount),
//! [`S3Store`] an S3-compatible bucket (`s3://BUCKET/PREFIX`), [`Memory`]
//! and [`Faulty`] serve tests and benchmarks. Every one of them passes the
//! same [`contract`].
//!
//! The trait maps onto S3 without touching the engine: `put` is a
//! conditional PUT (atomic, never replacing, durable once it answers),
//! `get_range` a ranged GET, `size` HEAD, `list` ListObjectsV2 (paginated,
//! under a prefix), `delete` DELETE (which succeeds for a missing key).
//! Object names are short and flat.

#[doc(hidden)]
pub mod contract;
mod error;
mod faulty;
mod local;
mod memory;
mod s3;

pub use error::{ArchiveError, StoreError};
pub use faulty::Faulty;
pub use local::LocalDir;
pub use memory::Memory;
pub use s3::{PART_SIZE, S3Store};

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
    use super::contract::contract;
    use super::*;

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
