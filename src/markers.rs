//! Markers: last-level entries that the MMU sees as invalid and that hold a caller's payload
//! (a swap slot, a migration or copy-on-write note, a lazily filled area), and
//! [`PageTable::lookup`], which tells them from mappings and holes.

use memory_addr::VirtAddr;

use crate::arch::{self, Arch};
use crate::error::PagingError;
use crate::flush::Flush;
use crate::handler::PagingHandler;
use crate::levels::walk::{self, Stash};
use crate::levels::{EntryKind, HasNext, L1, TableRef};
use crate::page_table::{PageTable, Translation};

/// What [`PageTable::lookup`] finds at an address: what a page-fault handler asks first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup<Addr = VirtAddr> {
    /// A leaf translates the address (it may be
    /// [`INACCESSIBLE`](crate::MappingFlags::INACCESSIBLE)).
    Mapped(Translation<Addr>),
    /// A marker holds the address's page, with this payload.
    Marker(u64),
    /// Nothing: no leaf, no marker.
    Empty,
}

impl<A: Arch, H: PagingHandler> PageTable<A, H> {
    /// Stores `payload` in a marker at the granule-sized page `va`: an entry the MMU faults on
    /// (a translation fault, "page not present"), which [`lookup`](Self::lookup) reads back
    /// and [`take_marker`](Self::take_marker) clears. It replaces a marker there; tables
    /// missing on the way are made. The payload may use the low
    /// [`marker_bits`](arch::marker_bits) bits (61 on x86_64, AArch64 and RISC-V, 60 on
    /// LoongArch, 58 on EPT); the entry keeps the valid bit and this crate's two software tags
    /// clear or set as the mode's [`Arch::MARKER_RESERVED`] says.
    ///
    /// The range calls treat a marker as a page of its own: [`map`](Self::map) and
    /// [`map_region`](Self::map_region) refuse to map over it ([`PagingError::AlreadyMapped`]),
    /// [`protect_region`](Self::protect_region) keeps it as it is,
    /// [`unmap_region`](Self::unmap_region) clears it (and
    /// [`unmap_region_with`](Self::unmap_region_with) reports it), a table holding one is not
    /// empty. [`query`](Self::query) and [`for_each_mapping`](Self::for_each_mapping) do not
    /// see it: it maps nothing.
    ///
    /// No translation existed before or exists after, so there is nothing to invalidate. On
    /// LoongArch the TLB-refill handler loads a marker like any entry; the TLB holds it as
    /// invalid and an access raises a page-invalid exception (PIL, PIS, PIF), whose handler
    /// calls `lookup`. A marker is never global, so a global page that shares a TLB entry pair
    /// with it is refilled per ASID.
    ///
    /// ```
    /// use pagetable::{BufferFrames, Lookup, MappingFlags as F, PageSize, PageTable, Sv39};
    /// use memory_addr::{pa, va};
    ///
    /// let mut memory = vec![0u64; 8 << 9];
    /// let frames = BufferFrames::new(&mut memory, pa!(0x8000_0000)).unwrap();
    /// let mut pt = PageTable::<Sv39, _>::new(frames).unwrap();
    ///
    /// // Swap out: the page goes, a marker with the swap slot takes its place.
    /// pt.map(va!(0x1000), pa!(0x8020_0000), PageSize::SIZE_4K, F::READ | F::WRITE)
    ///     .unwrap()
    ///     .ignore();
    /// let (_page, flush) = pt.unmap(va!(0x1000)).unwrap();
    /// flush.ignore(); // a live table would flush here
    /// pt.set_marker(va!(0x1000), 0x7_1234).unwrap();
    /// assert_eq!(pt.lookup(va!(0x1000)).unwrap(), Lookup::Marker(0x7_1234));
    /// assert!(pt.query(va!(0x1000)).is_err());
    ///
    /// // Swap in, from the page fault: take the marker, map the page again.
    /// let (slot, flush) = pt.take_marker(va!(0x1000)).unwrap();
    /// flush.ignore();
    /// assert_eq!(slot, 0x7_1234);
    /// pt.map(va!(0x1000), pa!(0x8030_0000), PageSize::SIZE_4K, F::READ | F::WRITE)
    ///     .unwrap()
    ///     .ignore();
    /// ```
    ///
    /// # Errors
    ///
    /// * [`PagingError::UnalignedVa`] unless `va` is granule-aligned.
    /// * [`PagingError::NotCanonical`] if the table does not translate `va`.
    /// * [`PagingError::PayloadTooWide`] if `payload` needs more than the mode's marker bits.
    /// * [`PagingError::Borrowed`] if `va` lies in a borrowed range.
    /// * [`PagingError::AlreadyMapped`] if a leaf maps `va`.
    /// * [`PagingError::OutOfFrames`] if a table on the way cannot be allocated.
    pub fn set_marker(&mut self, va: A::Addr, payload: u64) -> Result<(), PagingError> {
        let va = arch::to_va::<A>(va);
        let page = 1u64 << A::PAGE_SHIFT;
        let (s, _) = self.check_range(va, page as usize, page)?;
        let entry = arch::marker_entry::<A>(payload).ok_or(PagingError::PayloadTooWide(payload))?;
        let root = self.root_ref();
        // SAFETY: the root is live and ours; `s` lies in its span.
        let last = unsafe { walk::last_table_pa::<A, A::Root, H>(&self.handler, root, s, None) };
        if let Some((table, _, slot)) = last {
            // The common case, tables there: no reservation.
            // SAFETY: a last-level table of our tree.
            let t = unsafe { TableRef::<A, L1>::from_pa(&self.handler, table) };
            let i = TableRef::<A, L1>::index(s);
            // SAFETY: in bounds of a live table we own.
            return match A::entry_kind::<L1>(unsafe { t.load(i) }) {
                kind @ (EntryKind::Empty | EntryKind::Marker) => {
                    // Invalid over invalid: nothing an MMU caches or writes.
                    // SAFETY: as above.
                    unsafe { t.store(i, entry) };
                    if kind == EntryKind::Empty {
                        // SAFETY: the entry that links `t`, in our tree.
                        unsafe { slot.added(1) };
                    }
                    Ok(())
                }
                EntryKind::Leaf | EntryKind::Table => Err(PagingError::AlreadyMapped(va)),
            };
        }
        let levels = arch::root_depth::<A>() as usize - 1;
        let bytes = TableRef::<A, <A::Root as HasNext>::Next>::BYTES;
        let h = &mut self.handler;
        let mut stash = Stash::reserve::<A, H>(h, levels, bytes)?;
        // SAFETY: the root is live and ours; the stash holds a frame per level below it.
        let result = unsafe { walk::set_marker::<A, A::Root, H>(h, &mut stash, root, s, entry) };
        stash.release(h);
        result
    }

    /// Clears the marker at `va` and returns its payload, unlinking the tables this empties
    /// (freed once the returned [`Flush`] is done, as for [`unmap`](Self::unmap)).
    ///
    /// # Errors
    ///
    /// * [`PagingError::UnalignedVa`] unless `va` is granule-aligned.
    /// * [`PagingError::NotCanonical`] if the table does not translate `va`.
    /// * [`PagingError::Borrowed`] if `va` lies in a borrowed range.
    /// * [`PagingError::NotMarker`] if no marker is there.
    pub fn take_marker(&mut self, va: A::Addr) -> Result<(u64, Flush<A>), PagingError> {
        let va = arch::to_va::<A>(va);
        let page = 1u64 << A::PAGE_SHIFT;
        let (s, e) = self.check_range(va, page as usize, page)?;
        let Lookup::Marker(payload) = self.lookup(arch::from_va::<A>(va))? else {
            return Err(PagingError::NotMarker(va));
        };
        let (root, ctx) = (self.root_ref(), self.ctx());
        let h = &mut self.handler;
        // Clearing one entry splits nothing: no frames reserved, so this cannot fail.
        let bytes = TableRef::<A, <A::Root as HasNext>::Next>::BYTES;
        let mut stash = Stash::none(bytes, ctx);
        // SAFETY: the root is live and ours; a marker, an entry of depth 1, is at `s`.
        unsafe { walk::unmap_one::<A, A::Root, H>(h, &mut stash, root, s, 1, true) };
        Ok((payload, Flush::range(s, e).with_retired(stash.finish(h))))
    }

    /// What is at `va`: the leaf that translates it (as [`query`](Self::query) reports it), the
    /// marker that holds its page, or nothing.
    ///
    /// # Errors
    ///
    /// [`PagingError::NotCanonical`] if the table does not translate `va`.
    pub fn lookup(&self, va: A::Addr) -> Result<Lookup<A::Addr>, PagingError> {
        let va = arch::to_va::<A>(va);
        match self.query(arch::from_va::<A>(va)) {
            Ok(t) => return Ok(Lookup::Mapped(t)),
            Err(PagingError::NotMapped(_)) => {}
            Err(e) => return Err(e),
        }
        let folded = A::fold(va).ok_or(PagingError::NotCanonical(va))?;
        let root = self.root_ref();
        // SAFETY: the root is live; reading is allowed anywhere in it.
        let Some((table, _, _)) =
            (unsafe { walk::last_table_pa::<A, A::Root, H>(&self.handler, root, folded, None) })
        else {
            return Ok(Lookup::Empty);
        };
        // SAFETY: a last-level table of the tree.
        let t = unsafe { TableRef::<A, L1>::from_pa(&self.handler, table) };
        // SAFETY: in bounds of a live table.
        let pte = unsafe { t.load(TableRef::<A, L1>::index(folded)) };
        Ok(match A::entry_kind::<L1>(pte) {
            EntryKind::Marker => Lookup::Marker(arch::marker_payload::<A>(pte)),
            _ => Lookup::Empty,
        })
    }
}
