//! A second CPU for the tests: a handler over [`Frames`] whose `phys_to_virt` plays another
//! CPU's MMU storing through a leaf at a chosen moment of a call (every table access the crate
//! makes goes through `phys_to_virt` first, so sweeping the moment over every call of it
//! puts the store in every gap between two of the call's table accesses), and which logs when
//! frames come back and when breaks are made.

use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::ptr::NonNull;

use pagetable::{Arch, PagingHandler, PhysAddr};

use super::Frames;
use super::hw::Hardware;
use super::raw::{self, Raw};

/// What the handler saw, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// `free_table` of this frame.
    Free(u64),
    /// `break_flush` of this address.
    Break(u64),
}

/// The second MMU: at `phys_to_virt` call number `at`, if the entry at `entry` (a table at
/// depth `depth`) is a leaf the manual lets a store through, it stores through it.
pub struct Mmu<M> {
    pub frames: Frames,
    calls: Cell<usize>,
    armed: Cell<Option<(usize, u64, u32)>>,
    marked: Cell<bool>,
    pub events: RefCell<Vec<Event>>,
    _mode: PhantomData<M>,
}

impl<M: Hardware> Mmu<M> {
    pub fn new(frames: usize, base: usize) -> Self {
        Self {
            frames: Frames::new(frames, base),
            calls: Cell::new(0),
            armed: Cell::new(None),
            marked: Cell::new(false),
            events: RefCell::new(vec![]),
            _mode: PhantomData,
        }
    }

    /// From now on, count `phys_to_virt` calls from 0 and store through the leaf entry at
    /// `entry` (of a table at `depth`) on call `at`.
    pub fn arm(&self, at: usize, entry: u64, depth: u32) {
        self.calls.set(0);
        self.marked.set(false);
        self.armed.set(Some((at, entry, depth)));
    }

    /// Stops; returns whether the store happened, and how many calls were counted.
    pub fn disarm(&self) -> (bool, usize) {
        self.armed.set(None);
        (self.marked.get(), self.calls.get())
    }

    /// Frames given back since the log was last taken.
    pub fn take_events(&self) -> Vec<Event> {
        std::mem::take(&mut *self.events.borrow_mut())
    }
}

// SAFETY: table memory is `Frames`'s own; the extra store is an atomic write of one word that
// the crate reads only through atomics, as a real MMU's would be.
unsafe impl<M: Hardware> PagingHandler for Mmu<M> {
    fn alloc_table(&mut self, bytes: usize) -> Option<PhysAddr> {
        self.frames.alloc_table(bytes)
    }
    unsafe fn free_table(&mut self, pa: PhysAddr, bytes: usize) {
        self.events
            .borrow_mut()
            .push(Event::Free(pa.as_usize() as u64));
        // SAFETY: forwarded from the caller.
        unsafe { self.frames.free_table(pa, bytes) }
    }
    fn phys_to_virt(&self, pa: PhysAddr) -> NonNull<u8> {
        let n = self.calls.get();
        self.calls.set(n + 1);
        if let Some((at, entry, depth)) = self.armed.get() {
            let pte = self.frames.read_phys(entry);
            if n == at && matches!(M::read(pte, depth), Ok(Raw::Leaf(_))) && M::writable(pte) {
                self.frames.write_phys(entry, M::mark_write(pte));
                self.marked.set(true);
            }
        }
        self.frames.phys_to_virt(pa)
    }
    fn break_flush<A: Arch>(&mut self, va: A::Addr, _size: usize) {
        self.events
            .borrow_mut()
            .push(Event::Break(va.into() as u64));
    }
}

/// The physical address of the entry of the leaf that maps `va`, and the depth of its table,
/// by an independent raw walk.
pub fn leaf_entry<M: Hardware>(mem: &Frames, root: u64, va: u64) -> (u64, u32) {
    let tree = raw::walk::<M>(mem, root).expect("raw walk");
    for (k, &(leaf, _, shift)) in tree.leaves.iter().enumerate() {
        if va.wrapping_sub(leaf) < 1 << shift {
            let depth = (shift - M::GRANULE) / (M::GRANULE - 3) + 1;
            return (tree.entries[k], depth);
        }
    }
    panic!("no leaf maps {va:#x}");
}
