//! Mutexes that outlive a panicking holder: a panic on one guest's thread must not
//! take every other guest down with a poisoned lock.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, recovering the data if a thread panicked while holding it: every
/// structure guarded here stays consistent between statements.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
