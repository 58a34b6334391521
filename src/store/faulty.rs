//! A failure-injecting wrapper around a store, for tests: fail the Nth
//! call, be down for a while, add latency.

use super::{BackingStore, StoreError};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

pub struct Faulty<S> {
    inner: S,
    calls: AtomicU64,
    /// The call number (1-based) that fails, 0 for none.
    fail_at: AtomicU64,
    down: AtomicBool,
    latency: Mutex<Duration>,
}

impl<S: BackingStore> Faulty<S> {
    pub fn new(inner: S) -> Self {
        Faulty {
            inner,
            calls: AtomicU64::new(0),
            fail_at: AtomicU64::new(0),
            down: AtomicBool::new(false),
            latency: Mutex::new(Duration::ZERO),
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The `n`-th call from now fails (1: the next one).
    pub fn fail_nth(&self, n: u64) {
        let now = self.calls.load(Ordering::SeqCst);
        self.fail_at.store(now + n, Ordering::SeqCst);
    }

    /// While down, every call fails.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Every call waits this long first.
    pub fn set_latency(&self, d: Duration) {
        *crate::sync::lock(&self.latency) = d;
    }

    /// Calls made so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    fn enter(&self, op: &'static str, name: &str) -> Result<(), StoreError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let latency = *crate::sync::lock(&self.latency);
        if !latency.is_zero() {
            std::thread::sleep(latency);
        }
        let why = if self.down.load(Ordering::SeqCst) {
            "store down (injected)"
        } else if self.fail_at.load(Ordering::SeqCst) == n {
            "injected failure"
        } else {
            return Ok(());
        };
        Err(StoreError::Io {
            store: self.describe(),
            op,
            name: name.to_string(),
            source: std::io::Error::other(why),
        })
    }
}

impl<S: BackingStore> BackingStore for Faulty<S> {
    fn put(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.enter("put", name)?;
        self.inner.put(name, bytes)
    }

    fn get(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        self.enter("get", name)?;
        self.inner.get(name)
    }

    fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>, StoreError> {
        self.enter("get", name)?;
        self.inner.get_range(name, offset, len)
    }

    fn size(&self, name: &str) -> Result<u64, StoreError> {
        self.enter("stat", name)?;
        self.inner.size(name)
    }

    fn list(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.enter("list", "")?;
        self.inner.list()
    }

    fn delete(&self, name: &str) -> Result<(), StoreError> {
        self.enter("delete", name)?;
        self.inner.delete(name)
    }

    fn describe(&self) -> String {
        format!("faulty({})", self.inner.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Memory;

    #[test]
    fn fails_exactly_the_nth_call() {
        let s = Faulty::new(Memory::new());
        s.put("a", b"1").unwrap();
        s.fail_nth(2);
        s.get("a").unwrap();
        assert!(s.get("a").is_err());
        s.get("a").unwrap();
        assert_eq!(s.calls(), 4);
    }

    #[test]
    fn while_down_everything_fails_and_nothing_is_stored() {
        let s = Faulty::new(Memory::new());
        s.set_down(true);
        assert!(s.put("a", b"1").is_err());
        assert!(s.list().is_err());
        s.set_down(false);
        assert!(s.get("a").unwrap_err().is_not_found());
        s.set_latency(Duration::from_millis(20));
        let t = std::time::Instant::now();
        s.put("a", b"1").unwrap();
        assert!(t.elapsed() >= Duration::from_millis(20));
    }
}
