//! A spin lock: the kernel's table is shared between its code and its fault handler (and, with
//! more CPUs, between CPUs); whoever holds the guard edits it.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicUsize, Ordering};

/// The lock, and which CPU holds it (0: free, else the CPU's number plus one).
pub struct Lock<T> {
    held: AtomicUsize,
    value: UnsafeCell<T>,
}

// SAFETY: the value is reached only through a guard, and one guard exists at a time (`held`
// is taken with an acquire compare-exchange and given back with a release store).
unsafe impl<T> Sync for Lock<T> {}

impl<T> Lock<T> {
    pub const fn new(value: T) -> Self {
        Self {
            held: AtomicUsize::new(0),
            value: UnsafeCell::new(value),
        }
    }

    pub fn lock(&self) -> Guard<'_, T> {
        loop {
            if let Some(guard) = self.try_lock() {
                return guard;
            }
            core::hint::spin_loop();
        }
    }

    pub fn try_lock(&self) -> Option<Guard<'_, T>> {
        let me = crate::arch::cpu_id() + 1;
        self.held
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
            // `then`, not `then_some`: a guard built and dropped on failure would give back
            // the lock its holder still has.
            .then(|| Guard { lock: self })
    }

    /// Whether the CPU running this holds the lock.
    pub fn held_here(&self) -> bool {
        self.held.load(Ordering::Relaxed) == crate::arch::cpu_id() + 1
    }
}

pub struct Guard<'a, T> {
    lock: &'a Lock<T>,
}

impl<T> Deref for Guard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this guard is the only one (see `Sync`).
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as for `deref`, and the guard is borrowed mutably.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for Guard<'_, T> {
    fn drop(&mut self) {
        self.lock.held.store(0, Ordering::Release);
    }
}
