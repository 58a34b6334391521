//! Records committed in groups of bounded size: how clone, rollback and
//! restore write more than one atomic group can hold. Each group is atomic
//! on its own; whoever writes a batch says what a cut between two groups
//! means (a clone is complete only at its sync point, a rollback records
//! its intent first and completes at the next open).

use crate::error::{Error, Result};
use crate::format::Record;
use crate::format::segment::segment_cost;
use crate::log::writer::group_max;
use crate::volume::Volume;

/// Records per group at most: well inside any segment.
const GROUP_BYTES: usize = 1 << 20;

pub struct Batch<'a> {
    vol: &'a Volume,
    records: Vec<Record>,
    bytes: usize,
    limit: usize,
    /// Said after a NoSpace error: what the user can do about it.
    hint: &'static str,
    /// Segment bytes committed so far.
    pub written: u64,
    /// Groups committed so far.
    pub groups: usize,
    /// For crash tests: fail with [`Error::Halted`] once this many groups
    /// are committed.
    pub halt_after: Option<usize>,
}

impl<'a> Batch<'a> {
    pub fn new(vol: &'a Volume, hint: &'static str) -> Self {
        Batch {
            vol,
            records: Vec::new(),
            bytes: 0,
            limit: GROUP_BYTES.min(group_max(vol.policy().segment_size) / 2),
            hint,
            written: 0,
            groups: 0,
            halt_after: None,
        }
    }

    pub fn add(&mut self, record: Record) -> Result<()> {
        let len = segment_cost(&record, record.encoded_len() as u32) as usize;
        if self.bytes + len > self.limit {
            self.flush()?;
        }
        self.bytes += len;
        self.records.push(record);
        Ok(())
    }

    /// Commits what was added since the last group.
    pub fn flush(&mut self) -> Result<()> {
        if self.records.is_empty() {
            return Ok(());
        }
        let records = std::mem::take(&mut self.records);
        self.vol.commit(records).map_err(|e| match e {
            Error::NoSpace(why) => Error::NoSpace(format!("{why}; {}", self.hint)),
            e => e,
        })?;
        self.written += std::mem::take(&mut self.bytes) as u64;
        self.groups += 1;
        if self.halt_after.is_some_and(|n| self.groups >= n) {
            return Err(Error::Halted);
        }
        Ok(())
    }
}
