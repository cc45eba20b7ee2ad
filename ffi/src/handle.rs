//! The handles the C ABI gives out: numbers dressed as pointers, never pointers to memory.
//!
//! A host may close a handle while other threads are inside calls on it, or call it after
//! closing it. So an `IntentkitHandle *` is a token: a number, never reused in the process, that
//! [`Handles`] maps to the open value. Nothing ever dereferences it, so a stale or made-up
//! token cannot reach freed memory: it is simply not in the table.
//!
//! Invariants:
//! - a call holds a [`Lease`] (a clone of the value's `Arc`) for as long as it runs; the table
//!   holds the only other reference;
//! - [`Handles::close`] takes the value out of the table first (later calls find nothing), then
//!   waits until every lease has been dropped, and only then hands the value back to be shut
//!   down, on the closing thread;
//! - a lease drops its `Arc` before it wakes the closers, so a closer that sees the count at one
//!   owns the value.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use safer_ffi::prelude::*;

/// An open intentkit. Opaque: the pointer is a token the library looks up, never memory to
/// read or free.
#[derive_ReprC]
#[repr(opaque)]
pub struct IntentkitHandle {
    // Never constructed: only its pointer type is used.
    _never: (),
}

/// The open values by token, and the condition closers wait on.
pub(crate) struct Handles<T> {
    table: Mutex<Table<T>>,
    /// Signalled whenever a lease is dropped.
    left: Condvar,
}

struct Table<T> {
    /// The last token given out; tokens start at 1 (0 is NULL) and only grow.
    last: usize,
    open: BTreeMap<usize, Arc<T>>,
}

impl<T> Handles<T> {
    pub(crate) const fn new() -> Self {
        Handles {
            table: Mutex::new(Table {
                last: 0,
                open: BTreeMap::new(),
            }),
            left: Condvar::new(),
        }
    }

    /// The lock, even after a panic elsewhere: every change to the table is a single
    /// insert or remove, so a poisoned table is still consistent.
    fn lock(&self) -> MutexGuard<'_, Table<T>> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores `value` under a new token, or hands it back once the tokens are exhausted
    /// (`usize::MAX` opens in one process), to be shut down outside the lock.
    pub(crate) fn insert(&self, value: T) -> Result<*mut IntentkitHandle, T> {
        let mut table = self.lock();
        let Some(token) = table.last.checked_add(1) else {
            return Err(value);
        };
        table.last = token;
        table.open.insert(token, Arc::new(value));
        Ok(std::ptr::without_provenance_mut(token))
    }

    /// The value behind `handle`, held until the lease is dropped; `None` when `handle` is
    /// NULL, closed, or was never given out.
    pub(crate) fn lease(&self, handle: *const IntentkitHandle) -> Option<Lease<'_, T>> {
        let value = self.lock().open.get(&handle.addr())?.clone();
        Some(Lease {
            value,
            _left: Departure(self),
        })
    }

    /// Takes the value behind `handle` out of the table, waits until no call holds it, and
    /// returns it. `None` when `handle` is NULL, already closed (or being closed by another
    /// thread), or was never given out.
    pub(crate) fn close(&self, handle: *mut IntentkitHandle) -> Option<T> {
        let mut table = self.lock();
        let value = table.open.remove(&handle.addr())?;
        while Arc::strong_count(&value) > 1 {
            table = self
                .left
                .wait(table)
                .unwrap_or_else(PoisonError::into_inner);
        }
        drop(table);
        Arc::into_inner(value)
    }
}

/// A call's hold on an open value.
pub(crate) struct Lease<'a, T> {
    // Fields drop in declaration order: the `Arc` first, then `Departure` wakes the closers,
    // who find the count already lowered.
    value: Arc<T>,
    _left: Departure<'a, T>,
}

impl<T> Deref for Lease<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

struct Departure<'a, T>(&'a Handles<T>);

impl<T> Drop for Departure<'_, T> {
    fn drop(&mut self) {
        // Under the lock, so that a closer between its check and its wait cannot miss it.
        let _table = self.0.lock();
        self.0.left.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_never_reused_and_a_closed_one_is_not_found() {
        let handles = Handles::new();
        let a = handles.insert("a").unwrap();
        assert_eq!(*handles.lease(a).unwrap(), "a");
        assert_eq!(handles.close(a), Some("a"));
        assert!(handles.lease(a).is_none());
        assert_eq!(handles.close(a), None, "a second close finds nothing");
        let b = handles.insert("b").unwrap();
        assert_ne!(a, b);
        assert!(handles.lease(std::ptr::null()).is_none());
        assert_eq!(handles.close(std::ptr::null_mut()), None);
    }

    #[test]
    fn close_waits_for_the_lease_in_flight() {
        static HANDLES: Handles<&str> = Handles::new();
        let token = HANDLES.insert("open").unwrap().addr();
        let lease = HANDLES.lease(std::ptr::without_provenance(token)).unwrap();
        let closer =
            std::thread::spawn(move || HANDLES.close(std::ptr::without_provenance_mut(token)));
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            !closer.is_finished(),
            "close returned while a call held the handle"
        );
        assert!(
            HANDLES.lease(std::ptr::without_provenance(token)).is_none(),
            "a call that starts while close waits is refused"
        );
        drop(lease);
        assert_eq!(closer.join().unwrap(), Some("open"));
    }
}
