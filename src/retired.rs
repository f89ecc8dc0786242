//! [`Retired`]: tables unlinked from a live table, kept until the TLB invalidation that covers
//! them is done; and the chain of bookkeeping frames that records them. Nothing else lives here.
//!
//! A table that was linked in a live tree may still be walked, until the next invalidation, by
//! an MMU that cached a pointer to it (x86 paging-structure caches, Arm walk caches, another
//! CPU's refill handler on LoongArch). It is not written or freed before then. Its address is
//! recorded instead in a *retire frame*: a frame of the table's size, reserved with the call's
//! other frames before anything changed, which no MMU ever walks. Its first words are a header
//! (`NEXT`, `SELF`, `OWNER`, `COUNT`), the rest records, each a table's physical address with
//! its depth in the low bits (tables are at least 4 KiB-aligned).

use core::fmt;
use core::marker::PhantomData;

use crate::arch::{self, Arch};

/// Header word: the next retire frame's virtual address, or 0.
const NEXT: usize = 0;
/// Header word: this frame's physical address.
const SELF: usize = 1;
/// Header word: the physical address of the root of the table the records were unlinked from.
const OWNER: usize = 2;
/// Header word: how many records follow.
const COUNT: usize = 3;
const HEADER: usize = 4;

/// Record flag (with the depth in the low bits): the table held only empty entries, so its
/// frame alone is freed.
pub(crate) const EMPTY: u8 = 8;

/// Bytes of a retire frame of mode `A`: one table below the root.
pub(crate) const fn frame_bytes<A: Arch>() -> usize {
    arch::table_bytes::<A>(arch::root_depth::<A>() - 1)
}

/// Records one retire frame holds.
pub(crate) const fn capacity<A: Arch>() -> usize {
    frame_bytes::<A>() / 8 - HEADER
}

/// A chain of retire frames, by virtual address; null when empty.
pub(crate) struct Chain(*mut u64);

impl Chain {
    pub(crate) const EMPTY: Self = Self(core::ptr::null_mut());

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_null()
    }

    /// Starts a new frame at the head of the chain.
    ///
    /// # Safety
    ///
    /// `frame` points to a whole unused retire frame of mode `A` at physical address `pa`,
    /// 8-aligned, which the chain owns from now on.
    pub(crate) unsafe fn push_frame(&mut self, frame: *mut u64, pa: u64, owner: u64) {
        // SAFETY: the caller gives us the frame; the header fits in any table.
        unsafe {
            frame.add(NEXT).write(self.0 as u64);
            frame.add(SELF).write(pa);
            frame.add(OWNER).write(owner);
            frame.add(COUNT).write(0);
        }
        self.0 = frame;
    }

    /// Whether the head frame can take another record.
    pub(crate) fn has_room<A: Arch>(&self) -> bool {
        // SAFETY: a non-null head is a retire frame this chain owns.
        !self.0.is_null() && unsafe { self.0.add(COUNT).read() } < capacity::<A>() as u64
    }

    /// Records the table at `pa`, at `depth`, in the head frame.
    ///
    /// # Safety
    ///
    /// [`has_room`](Self::has_room) is true.
    pub(crate) unsafe fn push(&mut self, pa: u64, depth: u8) {
        // SAFETY: the head frame has room (caller), and the chain owns it.
        unsafe {
            let n = self.0.add(COUNT).read() as usize;
            self.0.add(HEADER + n).write(pa | depth as u64);
            self.0.add(COUNT).write(n as u64 + 1);
        }
    }

    /// Both chains in one.
    pub(crate) fn append(&mut self, other: Chain) {
        if other.is_empty() {
            return;
        }
        let mut tail = other.0;
        // SAFETY: every frame of a chain is a live retire frame it owns; the chains are
        // disjoint, since a frame is owned by one chain at a time.
        unsafe {
            while (*tail.add(NEXT)) != 0 {
                tail = *tail.add(NEXT) as *mut u64;
            }
            tail.add(NEXT).write(self.0 as u64);
        }
        self.0 = other.0;
    }

    /// Takes out every frame recorded for `owner`, in turn: `each(frame_pa, records)`.
    ///
    /// # Safety
    ///
    /// `each` takes ownership of the frame and its records (it frees them).
    pub(crate) unsafe fn drain_owner(&mut self, owner: u64, mut each: impl FnMut(u64, &[u64])) {
        let mut link: *mut *mut u64 = &mut self.0;
        // SAFETY: as for `append`; a frame is unlinked before `each` frees it.
        unsafe {
            while !(*link).is_null() {
                let frame = *link;
                let next = frame.add(NEXT).read() as *mut u64;
                if frame.add(OWNER).read() == owner {
                    *link = next;
                    let n = frame.add(COUNT).read() as usize;
                    let records = core::slice::from_raw_parts(frame.add(HEADER), n);
                    each(frame.add(SELF).read(), records);
                } else {
                    link = frame.add(NEXT).cast::<*mut u64>();
                }
            }
        }
    }

    pub(crate) fn take(&mut self) -> Chain {
        core::mem::replace(self, Chain::EMPTY)
    }

    /// Records in the chain.
    pub(crate) fn len(&self) -> usize {
        let (mut n, mut frame) = (0, self.0);
        while !frame.is_null() {
            // SAFETY: as for `append`.
            unsafe {
                n += frame.add(COUNT).read() as usize;
                frame = frame.add(NEXT).read() as *mut u64;
            }
        }
        n
    }
}

/// Tables unlinked from a live table whose TLB invalidation is done: [`Flush::flush`] returns
/// them once it has invalidated, and [`PageTable::free_retired`] gives them back to the handler.
///
/// Dropping it instead leaks the tables (never frees them early or twice).
///
/// [`Flush::flush`]: crate::Flush::flush
/// [`PageTable::free_retired`]: crate::PageTable::free_retired
#[must_use = "the retired tables leak unless given to `PageTable::free_retired`"]
pub struct Retired<A: Arch> {
    pub(crate) chain: Chain,
    pub(crate) _arch: PhantomData<A>,
}

// SAFETY: the value owns its retire frames exclusively (no other value points to them), so
// moving it to another thread moves that ownership; `&Retired` reads nothing.
unsafe impl<A: Arch> Send for Retired<A> {}
// SAFETY: `&Retired` gives no access to the frames.
unsafe impl<A: Arch> Sync for Retired<A> {}

impl<A: Arch> Retired<A> {
    /// Whether it holds no table.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.chain.is_empty()
    }

    /// How many retired subtrees it holds (each a table and everything below it).
    #[must_use]
    pub fn len(&self) -> usize {
        self.chain.len()
    }
}

impl<A: Arch> fmt::Debug for Retired<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Retired({} subtrees)", self.len())
    }
}
