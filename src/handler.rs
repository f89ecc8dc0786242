//! [`PagingHandler`]: the operating system's side of the contract. Nothing else lives here.

use core::ptr::NonNull;

use memory_addr::{PhysAddr, VirtAddr};

use crate::arch::Arch;

/// Where table frames come from and how the CPU running this code reaches physical memory.
///
/// A handler is a value, not a set of static functions, so that a host tool can build tables
/// for another machine inside a buffer (see [`BufferFrames`](crate::BufferFrames)).
///
/// Every table is `bytes` long and aligned to `bytes`, where `bytes` is a power of two no
/// smaller than the paging mode's granule (4 KiB, or 16 or 64 KiB for AArch64's larger granules;
/// 8 or 16 KiB for the concatenated roots of some stage 2 modes).
///
/// Every frame returned is checked before use (aligned to `bytes`, inside the mode's
/// physical-address width, `phys_to_virt` 8-aligned, and on LoongArch not at physical address
/// 0): one that fails is given back and the call fails with
/// [`PagingError::BadFrame`](crate::PagingError::BadFrame).
///
/// # Panics in a handler
///
/// A panic in `alloc_table` while a call reserves its frames unwinds after every frame reserved
/// so far is given back: nothing changed. A panic in `free_table`, `break_flush` or
/// `phys_to_virt` in the middle of a change leaves every entry either as it was or as it was
/// going to be, and every table linked whole (a walk never sees a half-built one), but the
/// change partly made, and the frames it had reserved and not yet used leaked.
///
/// # Safety
///
/// The page table reads and writes table memory through the pointers this trait returns, so an
/// implementation must guarantee:
/// * [`alloc_table`](Self::alloc_table) returns a block of `bytes` bytes, aligned to `bytes`,
///   that nothing else uses until it is given back through [`free_table`](Self::free_table);
///   its physical address fits the architecture's physical-address width.
/// * [`owns_table`](Self::owns_table) answers `true` only for blocks that
///   [`alloc_table`](Self::alloc_table) returned (or that may be given back through
///   [`free_table`](Self::free_table) as if it had).
/// * [`phys_to_virt`](Self::phys_to_virt), for any address inside a block that is allocated
///   (or that was handed to [`PageTable::from_root`](crate::PageTable::from_root)), returns a
///   pointer valid for reads and writes of the rest of that block, aligned to 8 bytes (entries
///   are `AtomicU64`; the crate checks it of every frame it allocates, and refuses one that is
///   not), and the same pointer every time while the block is allocated.
pub unsafe trait PagingHandler {
    /// Allocates one table: `bytes` bytes aligned to `bytes`. Its contents need not be
    /// zeroed; the page table zeroes it. `None` when no memory is left.
    fn alloc_table(&mut self, bytes: usize) -> Option<PhysAddr>;

    /// Gives back a table that [`alloc_table`](Self::alloc_table) returned with the same
    /// `bytes`.
    ///
    /// # Safety
    ///
    /// `pa` came from `alloc_table(bytes)` on this handler and was not freed since; nothing
    /// will touch it through this handler again unless it is allocated anew.
    unsafe fn free_table(&mut self, pa: PhysAddr, bytes: usize);

    /// Where the CPU running this code reaches physical address `pa`.
    fn phys_to_virt(&self, pa: PhysAddr) -> NonNull<u8>;

    /// The middle of a break-before-make in a [live](crate::Liveness::Live) table of mode
    /// `A`: the entry that translates `va` (a page or a block of `size` bytes) has just been
    /// made invalid, and the page table will write its replacement when this returns. It must
    /// not return before no CPU's TLB can hold a translation through the old entry.
    ///
    /// The default invalidates `va` with the mode's own broadcast TLB maintenance
    /// ([`Arch::flush_page`]: on AArch64 `DSB`, `TLBI VAAE1IS` (stage 2: `TLBI IPAS2E1IS` and
    /// `TLBI VMALLE1IS`), `DSB`), which removes a block's entry as well as a page's. Override it
    /// to invalidate by ASID or VMID, or to reach CPUs the broadcast does not.
    fn break_flush<A: Arch>(&mut self, va: A::Addr, size: usize) {
        let _ = size;
        A::flush_page(VirtAddr::from(va.into()));
    }

    /// Whether the table of `bytes` at `pa` is this handler's to take back: one that
    /// [`alloc_table`](Self::alloc_table) returned. The default, `true`, suits a tree the
    /// crate built. A kernel that works on a tree someone else built (the one a bootloader left
    /// in CR3, adopted with [`PageTable::from_root`](crate::PageTable::from_root)) answers
    /// `false` for those tables, and the crate then never passes them to
    /// [`free_table`](Self::free_table): not on drop, not when an edit empties them (a foreign
    /// table unlinked after the flush is left to its owner). The tables the crate allocates in
    /// that tree are freed as usual.
    fn owns_table(&self, pa: PhysAddr, bytes: usize) -> bool {
        let _ = (pa, bytes);
        true
    }
}
