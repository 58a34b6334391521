//! Replies the writer and the syncer owe to requesters, answered together:
//! with their values once their batch is written or durable, or all as
//! poisoned when it failed.

use super::catalog::SyncPoint;
use crate::error::{Error, Result};
use crate::format::Lsn;
use crossbeam_channel::Sender;

pub type Reply<T> = Sender<Result<T>>;

/// Replies owed by one batch: appends and copies are answered when it is
/// written, syncs, sync points and close when it is durable.
#[derive(Default)]
pub struct Owed {
    pub appends: Vec<(Reply<Vec<Lsn>>, Vec<Lsn>)>,
    pub copies: Vec<(Reply<u64>, u64)>,
    pub syncs: Vec<Reply<()>>,
    pub points: Vec<(Reply<SyncPoint>, SyncPoint)>,
    pub close: Option<Reply<Lsn>>,
}

impl Owed {
    /// The replies that wait for durability, taken out of `self`.
    pub fn take_durable(&mut self) -> Owed {
        Owed {
            syncs: std::mem::take(&mut self.syncs),
            points: std::mem::take(&mut self.points),
            close: self.close.take(),
            ..Owed::default()
        }
    }

    /// Answers every reply: with its value (close with the log's `end`),
    /// or, when `outcome` is a failure, all as poisoned by it.
    pub fn settle(self, outcome: std::result::Result<Lsn, &str>) {
        fn send<T>(reply: Reply<T>, ok: T, outcome: &std::result::Result<Lsn, &str>) {
            let _ = reply.send(match outcome {
                Ok(_) => Ok(ok),
                Err(why) => poisoned(why),
            });
        }
        for (r, lsns) in self.appends {
            send(r, lsns, &outcome);
        }
        for (r, n) in self.copies {
            send(r, n, &outcome);
        }
        for r in self.syncs {
            send(r, (), &outcome);
        }
        for (r, p) in self.points {
            send(r, p, &outcome);
        }
        if let Some(r) = self.close {
            let end = outcome.unwrap_or(Lsn { seq: 0, offset: 0 });
            send(r, end, &outcome);
        }
    }
}

/// The answer to a request refused because the volume is poisoned.
pub fn poisoned<T>(why: &str) -> Result<T> {
    Err(Error::Poisoned(why.to_string()))
}
