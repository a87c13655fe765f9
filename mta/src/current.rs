//! [`Current`]: a value in force that a configuration reload replaces whole. Readers
//! take an `Arc` of it once, when their unit of work starts (a session, a delivery
//! attempt), and keep that snapshot to the end; the reload swaps the pointer and
//! never touches a snapshot in use.
//!
//! A `RwLock<Arc<T>>` rather than a lock-free swap: a read is one uncontended
//! atomic and an `Arc` clone, taken once per session or connection attempt, never
//! per command or byte; a write happens once per SIGHUP. That is below anything the
//! hot path measures, and needs no crate of its own.

use std::sync::{Arc, PoisonError, RwLock};

pub struct Current<T>(RwLock<Arc<T>>);

impl<T> Current<T> {
    pub fn new(value: Arc<T>) -> Current<T> {
        Current(RwLock::new(value))
    }

    /// The value in force now.
    pub fn get(&self) -> Arc<T> {
        // Under the lock only a pointer is read or replaced: nothing can panic
        // half-way, so a poisoned lock still holds a whole value.
        Arc::clone(&self.0.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Puts `value` in force for every later [`get`](Self::get).
    pub fn set(&self, value: Arc<T>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = value;
    }
}
