//! What the log needs of segments that have left primary storage. The log
//! reads them through this trait and knows nothing of how or where they
//! are kept; the archive (`crate::archive::Archive`) is the implementation.

use super::recovery::SegmentRecords;
use crate::error::{Error, Result};

pub trait RetiredSegments: Send + Sync {
    /// The records of retired segment `seq` as the backward scan needs them.
    fn records(&self, seq: u64) -> Result<SegmentRecords>;
    /// Up to `len` bytes of retired segment `seq` from `offset`, fewer if
    /// its records end first.
    fn read(&self, seq: u64, offset: u64, len: usize) -> Result<Vec<u8>>;
    /// Whether segment `seq` is known to be retired; `None` while that is
    /// unknown (the store could not be listed).
    fn contains(&self, seq: u64) -> Option<bool>;
    /// The newest retired segment, if any is known.
    fn newest(&self) -> Option<u64>;
    /// The error for a segment that is neither in primary nor retired.
    fn lost(&self, seq: u64) -> Error;
}
