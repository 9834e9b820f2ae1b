//! Synchronisation primitives of the index: `loom`'s under `cfg(dinomo_loom)` (model checking),
//! the standard library's otherwise. The index's accesses to pool memory go through the pmem
//! `Backend` trait, so a model swaps in a backend built on `loom` atomics too.

#[cfg(dinomo_loom)]
pub(crate) use loom::sync::{
    Mutex, MutexGuard, RwLock,
    atomic::{AtomicI64, AtomicU64, Ordering},
};
#[cfg(not(dinomo_loom))]
pub(crate) use std::sync::{
    Mutex, MutexGuard, RwLock,
    atomic::{AtomicI64, AtomicU64, Ordering},
};

/// Locks a mutex, taking the data even if a thread panicked while holding it: every structure
/// the index guards with a mutex stays consistent across a panic (allocation lists, caches).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Takes a read lock, ignoring poisoning (the lock guards no data).
pub(crate) fn read<T>(l: &RwLock<T>) -> impl std::ops::Deref<Target = T> + '_ {
    l.read().unwrap_or_else(|p| p.into_inner())
}

/// Takes a write lock, ignoring poisoning (the lock guards no data).
pub(crate) fn write<T>(l: &RwLock<T>) -> impl std::ops::Deref<Target = T> + '_ {
    l.write().unwrap_or_else(|p| p.into_inner())
}
