//! Locking shared by every layer: a mutex whose holder panicked is still
//! used, because every structure lsvfs guards with one stays consistent
//! between statements (a panic poisons the volume where it matters, not
//! the lock).

use std::sync::{Mutex, MutexGuard};

/// Locks a mutex, carrying on with the data if a panicking thread held it.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
