//! [`LastTableCursor`]: single-page calls that remember the last-level table they went through, so that
//! calls on neighbouring pages skip the descent from the root.

use core::fmt;

use memory_addr::{PhysAddr, VirtAddr};

use crate::arch::{self, Arch};
use crate::error::PagingError;
use crate::flags::{MappingFlags, PageSize};
use crate::flush::Flush;
use crate::handler::PagingHandler;
use crate::levels::walk::{self, CountSlot, RawLeaf};
use crate::levels::{EntryKind, L1, TableRef};
use crate::page_table::{Mapping, PageTable, Translation};
use crate::remembered::Remembered;

/// A cursor over a [`PageTable`], from [`PageTable::cursor`].
///
/// It does what the table's own single-leaf calls do, with the same results and errors, but it
/// remembers the last-level table (the one holding granule-sized leaves) that its last call
/// reached. A call for a page covered by that table reads or writes the entry directly: one
/// load instead of a walk from the root. A loader or a fault handler that maps neighbouring
/// pages one at a time is the case it is for; ranges are faster still through the region calls.
///
/// The memory is sound because the cursor holds the table mutably: nothing else can change the
/// tree meanwhile, and the cursor forgets the table on any call of its own that may free one.
pub struct LastTableCursor<'a, A: Arch, H: PagingHandler> {
    pt: &'a mut PageTable<A, H>,
    /// The remembered table, with the flags its parents were found or made to let through; a
    /// table in a borrowed range is never remembered.
    last: Remembered<A>,
    /// The flags last mapped and their last-level leaf template; `None` before the first map.
    template: Option<(MappingFlags, u64)>,
}

/// A last-level table the cursor reached: the table, whether its span is borrowed, the table
/// entries above it folded, and the entry that links it (its live-entry count).
type Reached<A> = (TableRef<A, L1>, bool, u64, CountSlot<A>);

impl<A: Arch, H: PagingHandler> PageTable<A, H> {
    /// A [`LastTableCursor`] for single-page calls on neighbouring pages.
    pub fn cursor(&mut self) -> LastTableCursor<'_, A, H> {
        LastTableCursor {
            pt: self,
            last: Remembered::none(),
            template: None,
        }
    }
}

impl<A: Arch, H: PagingHandler> LastTableCursor<'_, A, H> {
    const PAGE: u64 = 1 << A::PAGE_SHIFT;

    /// The last-level table on the way to folded `va`, whether its span is borrowed, and the
    /// table entries above it folded ([`Arch::path_step`]), if the walk reaches one:
    /// remembered, or found by one descent and then remembered. With `grant`, the entries on
    /// the way are made to let through leaves with those flags ([`Arch::table_grant`]) first,
    /// unless the remembered path was granted them already.
    fn last_table(&mut self, va: u64, grant: Option<MappingFlags>) -> Option<Reached<A>> {
        if let Some((table, path, slot)) = self.last.get(va) {
            if grant.is_none_or(|flags| self.last.lets_through(flags)) {
                return Some((table, false, path, slot));
            }
        }
        let base = va & !(Remembered::<A>::SPAN - 1);
        let root = self.pt.root_ref();
        let handler = self.pt.handler();
        // SAFETY: the root is live and ours; with `grant`, the caller holds the table mutably
        // (it is mapping, in a range it checked is not borrowed).
        let (pa, path, slot) =
            unsafe { walk::last_table_pa::<A, A::Root, H>(handler, root, va, grant) }?;
        // SAFETY: a table entry leads to a live table; we hold the page table mutably, so it
        // stays live until a call of ours that may free it, which forgets it.
        let table = unsafe { TableRef::<A, L1>::from_pa(handler, pa) };
        if self
            .pt
            .check_not_borrowed(base, base + Remembered::<A>::SPAN)
            .is_err()
        {
            // A borrowed table is its owner's, which may free it between two calls here: used
            // for this call only, never remembered.
            return Some((table, true, path, slot));
        }
        self.last = Remembered::new(va, table, path, slot);
        if let Some(flags) = grant {
            self.last.granted(flags);
        }
        Some((table, false, path, slot))
    }

    /// Forgets the remembered table.
    fn forget(&mut self) {
        self.last.forget();
    }

    /// The leaf template for `flags`, checked; the last one is kept.
    fn template(&mut self, flags: MappingFlags) -> Result<u64, PagingError> {
        match &self.template {
            Some((f, t)) if *f == flags => Ok(*t),
            _ => {
                A::check_flags(flags)?;
                self.pt.note_flags(flags);
                let t = A::leaf_template::<L1>(flags);
                self.template = Some((flags, t));
                Ok(t)
            }
        }
    }

    /// The page table, to read.
    #[must_use]
    pub fn table(&self) -> &PageTable<A, H> {
        self.pt
    }

    /// [`PageTable::map`], one load for a granule-sized page next to the last one.
    ///
    /// # Errors
    ///
    /// As for [`PageTable::map`].
    pub fn map(
        &mut self,
        va: A::Addr,
        pa: PhysAddr,
        size: PageSize,
        flags: MappingFlags,
    ) -> Result<Flush<A>, PagingError> {
        let raw = arch::to_va::<A>(va);
        // The fast path: a granule page in the remembered table's span, with the flags the
        // cursor mapped last (checked then), an aligned frame that fits the width, and an empty
        // slot. Each test only picks the path: anything else goes the general way, which makes
        // every check in `PageTable::map`'s order.
        if let (true, Some(s), Some((f, template))) = (
            size.bytes() as u64 == Self::PAGE,
            A::fold(raw),
            self.template,
        ) {
            let pa_raw = pa.as_usize() as u64;
            let pa_ok = PageTable::<A, H>::page_frame_ok(pa_raw);
            if let (Some((t, _, slot)), true) = (self.last.get(s), s % Self::PAGE == 0 && pa_ok) {
                if f == flags && self.last.lets_through(flags) {
                    let i = TableRef::<A, L1>::index(s);
                    // SAFETY: masked index; the remembered table is live and ours
                    // (`last_table`).
                    let old = unsafe { t.load(i) };
                    if A::entry_kind::<L1>(old) == EntryKind::Empty {
                        // SAFETY: as above.
                        unsafe { t.store(i, template | A::leaf_addr_bits::<L1>(pa_raw)) };
                        // SAFETY: the entry that links the remembered table, in our tree.
                        unsafe { slot.added(1) };
                        return Ok(Flush::range(s, s + Self::PAGE));
                    }
                }
            }
        }
        self.map_general(raw, pa, size, flags)
    }

    /// [`map`](Self::map) off its fast path.
    #[inline(never)]
    fn map_general(
        &mut self,
        va: VirtAddr,
        pa: PhysAddr,
        size: PageSize,
        flags: MappingFlags,
    ) -> Result<Flush<A>, PagingError> {
        if size.bytes() as u64 == Self::PAGE {
            // An aligned address in the remembered, unborrowed span passes every check of
            // `PageTable::map` on the virtual side; the others follow in its order.
            let remembered = A::fold(va)
                .filter(|s| s % Self::PAGE == 0)
                .and_then(|s| Some((s, self.last.get(s)?)));
            let s = match remembered {
                Some((s, _)) => s,
                None => self.pt.check_range(va, Self::PAGE as usize, Self::PAGE)?.0,
            };
            let raw_pa = self.pt.check_pa(pa, Self::PAGE as usize, Self::PAGE)?;
            let template = self.template(flags)?;
            // Read-only first: nothing changes before the slot is known to be free.
            let table = match remembered {
                Some((_, (t, path, slot))) => Some((t, false, path, slot)),
                None => self.last_table(s, None),
            };
            if let Some((t, _, path, slot)) = table {
                let i = TableRef::<A, L1>::index(s);
                // SAFETY: masked index; the table is live and ours (see `last_table`).
                let old = unsafe { t.load(i) };
                if A::entry_kind::<L1>(old) != EntryKind::Empty {
                    // A leaf, or a marker.
                    return Err(PagingError::AlreadyMapped(A::unfold(s)));
                }
                let (t, slot) = if !A::TABLE_GATES || A::path_restrict(path, flags) == flags {
                    (t, slot)
                } else {
                    // The map will succeed: now the entries on the way are widened for it.
                    match self.last_table(s, Some(flags)) {
                        Some((t, _, _, slot)) => (t, slot),
                        None => return self.pt.map(arch::from_va::<A>(va), pa, size, flags),
                    }
                };
                // SAFETY: as above.
                unsafe { t.store(i, template | A::leaf_addr_bits::<L1>(raw_pa)) };
                // SAFETY: the entry that links `t`, in our tree (see `last_table`).
                unsafe { slot.added(1) };
                return Ok(Flush::range(s, s + Self::PAGE));
            }
            return self.pt.map(arch::from_va::<A>(va), pa, size, flags);
        }
        // A larger leaf may replace an empty table, which is then freed: forget it.
        self.forget();
        self.pt.map(arch::from_va::<A>(va), pa, size, flags)
    }

    /// [`PageTable::query`], one load for an address next to the last one.
    ///
    /// # Errors
    ///
    /// As for [`PageTable::query`].
    pub fn query(&mut self, va: A::Addr) -> Result<Translation<A::Addr>, PagingError> {
        let va = arch::to_va::<A>(va);
        let folded = A::fold(va).ok_or(PagingError::NotCanonical(va))?;
        let Some((t, _, path, _)) = self.last_table(folded, None) else {
            return self.pt.query(arch::from_va::<A>(va));
        };
        // SAFETY: masked index; the table is live (see `last_table`).
        let pte = unsafe { t.load(TableRef::<A, L1>::index(folded)) };
        let leaf = RawLeaf::last::<A>(folded & !(Self::PAGE - 1), pte, path)
            .ok_or(PagingError::NotMapped(va))?;
        Ok(Translation::from_raw::<A>(leaf, folded))
    }

    /// [`PageTable::unmap`]; forgets the remembered table, which the unmap may have freed.
    ///
    /// # Errors
    ///
    /// As for [`PageTable::unmap`].
    pub fn unmap(&mut self, va: A::Addr) -> Result<(Mapping<A::Addr>, Flush<A>), PagingError> {
        let va = arch::to_va::<A>(va);
        self.forget();
        self.pt.unmap(arch::from_va::<A>(va))
    }

    /// [`PageTable::protect`].
    ///
    /// # Errors
    ///
    /// As for [`PageTable::protect`].
    pub fn protect(&mut self, va: A::Addr, flags: MappingFlags) -> Result<Flush<A>, PagingError> {
        let va = arch::to_va::<A>(va);
        self.pt.protect(arch::from_va::<A>(va), flags)
    }
}

impl<A: Arch, H: PagingHandler> fmt::Debug for LastTableCursor<'_, A, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LastTableCursor")
            .field("mode", &A::NAME)
            .field("last_table_span", &self.last.base().map(A::unfold))
            .finish_non_exhaustive()
    }
}
