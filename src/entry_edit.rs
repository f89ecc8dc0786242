//! [`EntryEdit`], the typed, updatable view of one leaf or marker that
//! [`PageTable::modify_range`] hands its closure, and the call itself.

use core::fmt;
use core::marker::PhantomData;

use memory_addr::PhysAddr;

use crate::arch::{self, Arch};
use crate::error::PagingError;
use crate::flags::{AccessState, MappingFlags, PageSize};
use crate::flush::Flush;
use crate::handler::PagingHandler;
use crate::levels::walk::{self, Stash};
use crate::levels::{EntryKind, HasNext, Leaf, Level, TableRef};
use crate::liveness::Liveness;
use crate::page_table::PageTable;

/// One leaf or marker of a [`modify_range`](PageTable::modify_range) call: what the entry
/// holds (as the walk found it), and the changes asked for, which the crate writes back in one
/// atomic step once the closure returns (keeping every accessed or dirty mark the MMU makes
/// meanwhile), as break-before-make where a live AArch64 table needs one.
pub struct EntryEdit<A: Arch> {
    va: u64,
    shift: u32,
    old: u64,
    kind: EntryKind,
    /// The leaf decoded (for a marker, unused).
    decoded: Leaf,
    liveness: Liveness,
    /// The entry's level's `leaf_protect` and `needs_break`.
    protect: fn(u64, MappingFlags) -> u64,
    needs_break: fn(u64, u64) -> bool,
    flags: Option<MappingFlags>,
    soft: Option<u64>,
    clear: AccessState,
    mark: AccessState,
    marker: Option<u64>,
    _arch: PhantomData<A>,
}

impl<A: Arch> EntryEdit<A> {
    /// The view of entry `old` (a leaf or a marker) at level `L`, first address folded `va`.
    pub(crate) fn new<L: Level>(va: u64, old: u64, kind: EntryKind, liveness: Liveness) -> Self {
        Self {
            va,
            shift: TableRef::<A, L>::SHIFT,
            old,
            kind,
            decoded: Leaf {
                pa: PhysAddr::from(A::leaf_addr::<L>(old) as usize),
                flags: A::leaf_flags::<L>(old),
                state: A::leaf_state::<L>(old),
            },
            liveness,
            protect: A::leaf_protect::<L>,
            needs_break: A::needs_break::<L>,
            flags: None,
            soft: None,
            clear: AccessState::default(),
            mark: AccessState::default(),
            marker: None,
            _arch: PhantomData,
        }
    }

    /// The first address of the entry's span.
    #[must_use]
    pub fn va(&self) -> A::Addr {
        arch::from_va::<A>(A::unfold(self.va))
    }

    /// The size the entry maps (a marker: one granule page).
    #[must_use]
    pub fn size(&self) -> PageSize {
        PageSize::from_shift(self.shift).unwrap_or(PageSize::SIZE_4K)
    }

    /// The leaf, as the walk found it: its frame, flags and access state; `None` for a marker.
    #[must_use]
    pub fn leaf(&self) -> Option<Leaf> {
        (self.kind == EntryKind::Leaf).then_some(self.decoded)
    }

    /// The marker's payload; `None` for a leaf.
    #[must_use]
    pub fn marker(&self) -> Option<u64> {
        (self.kind == EntryKind::Marker).then(|| arch::marker_payload::<A>(self.old))
    }

    /// The leaf's software bits ([`PageTable::soft_bits`]); 0 for a marker.
    #[must_use]
    pub fn soft_bits(&self) -> u64 {
        if self.kind == EntryKind::Leaf {
            arch::extract(self.old, A::SOFT_BITS)
        } else {
            0
        }
    }

    /// Gives the leaf new flags, as [`PageTable::protect`] would (with
    /// [`MappingFlags::INACCESSIBLE`], the leaf becomes non-present and keeps its frame).
    ///
    /// # Errors
    ///
    /// * [`PagingError::FlagsNotExpressible`] if the mode cannot express `flags`.
    /// * [`PagingError::NotMapped`] for a marker.
    /// * [`PagingError::NeedsBreak`] if the table is [`LiveNoBreak`](Liveness::LiveNoBreak)
    ///   and the change needs break-before-make (a new memory type on AArch64); nothing is
    ///   asked for then.
    pub fn set_flags(&mut self, flags: MappingFlags) -> Result<(), PagingError> {
        if self.kind != EntryKind::Leaf {
            return Err(PagingError::NotMapped(A::unfold(self.va)));
        }
        A::check_flags(flags)?;
        let new = (self.protect)(self.old, flags);
        if A::BREAK_BEFORE_MAKE
            && self.liveness == Liveness::LiveNoBreak
            && (self.needs_break)(self.old, new)
        {
            return Err(PagingError::NeedsBreak(A::unfold(self.va)));
        }
        self.flags = Some(flags);
        Ok(())
    }

    /// Sets the leaf's software bits ([`PageTable::set_soft_bits`]).
    ///
    /// # Errors
    ///
    /// * [`PagingError::SoftBitsTooWide`] beyond the mode's [`arch::soft_bits`].
    /// * [`PagingError::NotMapped`] for a marker.
    pub fn set_soft_bits(&mut self, value: u64) -> Result<(), PagingError> {
        if self.kind != EntryKind::Leaf {
            return Err(PagingError::NotMapped(A::unfold(self.va)));
        }
        if value >> arch::soft_bits::<A>() != 0 {
            return Err(PagingError::SoftBitsTooWide(value));
        }
        self.soft = Some(arch::deposit(value, A::SOFT_BITS));
        Ok(())
    }

    /// Clears the leaf's state bits set in `clear`, as
    /// [`PageTable::clear_access_state`] would (a marker has none: nothing happens).
    pub fn clear_state(&mut self, clear: AccessState) {
        self.clear.accessed |= clear.accessed;
        self.clear.dirty |= clear.dirty;
    }

    /// Marks the leaf as [`PageTable::mark_access`] would (after any clearing asked for; a
    /// marker has no marks: nothing happens).
    pub fn mark(&mut self, mark: AccessState) {
        self.mark.accessed |= mark.accessed;
        self.mark.dirty |= mark.dirty;
    }

    /// Replaces the marker's payload.
    ///
    /// # Errors
    ///
    /// * [`PagingError::PayloadTooWide`] beyond the mode's [`arch::marker_bits`].
    /// * [`PagingError::NotMarker`] for a leaf.
    pub fn set_marker(&mut self, payload: u64) -> Result<(), PagingError> {
        if self.kind != EntryKind::Marker {
            return Err(PagingError::NotMarker(A::unfold(self.va)));
        }
        let entry = arch::marker_entry::<A>(payload).ok_or(PagingError::PayloadTooWide(payload))?;
        self.marker = Some(entry);
        Ok(())
    }

    /// Whether anything was asked for.
    pub(crate) fn changes(&self) -> bool {
        self.flags.is_some()
            || self.soft.is_some()
            || self.clear.accessed
            || self.clear.dirty
            || self.mark.accessed
            || self.mark.dirty
            || self.marker.is_some()
    }

    /// What was asked for, applied to the entry `cur` at level `L` as it is now.
    pub(crate) fn apply<L: Level>(&self, cur: u64) -> u64 {
        if let Some(entry) = self.marker {
            return entry;
        }
        let mut new = cur;
        if let Some(flags) = self.flags {
            new = A::leaf_protect::<L>(new, flags);
        }
        if let Some(bits) = self.soft {
            new = (new & !A::SOFT_BITS) | bits;
        }
        if self.clear.accessed || self.clear.dirty {
            new = A::leaf_clear_state::<L>(new, self.clear);
        }
        if self.mark.accessed || self.mark.dirty {
            new = A::leaf_mark::<L>(new, self.mark);
        }
        new
    }
}

impl<A: Arch> fmt::Debug for EntryEdit<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntryEdit")
            .field("va", &self.va())
            .field("size", &self.size())
            .field("entry", &format_args!("{:#x}", self.old))
            .finish_non_exhaustive()
    }
}

impl<A: Arch, H: PagingHandler> PageTable<A, H> {
    /// Calls `f` with every leaf and marker of `[va, va + len)`, in address order, as an
    /// [`EntryEdit`] it may change: new flags (inaccessible included), software bits, cleared
    /// access state, a marker's payload. Holes are skipped, and a leaf the range covers only in
    /// part is split first, so that only what lies inside is seen. Each entry's changes are
    /// written in one atomic step when `f` returns (the crate keeps the MMU's marks and makes
    /// the breaks a live AArch64 table needs; a change a [`LiveNoBreak`](Liveness::LiveNoBreak)
    /// table would need a break for is refused by the edit, to `f`).
    ///
    /// ```
    /// use pagetable::{BufferFrames, HugePages, MappingFlags as F, PageTable, X86_64};
    /// use memory_addr::{pa, va};
    ///
    /// let mut memory = vec![0u64; 16 << 9];
    /// let frames = BufferFrames::new(&mut memory, pa!(0x10_0000)).unwrap();
    /// let mut pt = PageTable::<X86_64, _>::new(frames).unwrap();
    /// let rw = F::READ | F::WRITE;
    /// pt.map_region(va!(0x40_0000), pa!(0x4000_0000), 0x8000, rw, HugePages::Never)
    ///     .unwrap()
    ///     .ignore();
    /// // Write-protect the dirty pages for copy-on-write, and tag them in a software bit.
    /// pt.modify_range(va!(0x40_0000), 0x8000, |e| {
    ///     if e.leaf().is_some_and(|l| l.state.dirty) {
    ///         e.set_flags(F::READ).unwrap();
    ///         e.set_soft_bits(1).unwrap();
    ///     }
    /// })
    /// .unwrap()
    /// .ignore(); // a live table would flush here
    /// assert_eq!(pt.query(va!(0x40_3000)).unwrap().flags, F::READ);
    /// assert_eq!(pt.soft_bits(va!(0x40_3000)).unwrap(), 1);
    /// ```
    ///
    /// # Errors
    ///
    /// * A bad range, as for [`unmap_region`](Self::unmap_region): [`PagingError::EmptyRange`],
    ///   [`PagingError::UnalignedVa`], [`PagingError::UnalignedLen`],
    ///   [`PagingError::RangeWraps`], [`PagingError::NotCanonical`], [`PagingError::Borrowed`].
    /// * [`PagingError::NeedsBreak`] if splitting a leaf at an edge needs a break the table
    ///   refuses; [`PagingError::OutOfFrames`] if the splits need tables that cannot be
    ///   allocated. Then `f` is not called and nothing changed.
    pub fn modify_range(
        &mut self,
        va: A::Addr,
        len: usize,
        f: impl FnMut(&mut EntryEdit<A>),
    ) -> Result<Flush<A>, PagingError> {
        let va = arch::to_va::<A>(va);
        let page = 1u64 << A::PAGE_SHIFT;
        let (s, e) = self.check_range(va, len, page)?;
        let root = self.root_ref();
        // A rewrite that changes nothing: the check counts the splits at the edges and refuses
        // the ones that need a break the table refuses, skipping holes.
        let none = walk::Modify::ClearState(AccessState::default());
        // SAFETY: the root is live and ours; the range is inside the space and not borrowed.
        let need = unsafe {
            walk::edit_check::<A, A::Root, H>(
                &self.handler,
                root,
                s,
                e,
                self.liveness(),
                Some(none),
                true,
            )?
        };
        let (bytes, ctx, h) = (
            TableRef::<A, <A::Root as HasNext>::Next>::BYTES,
            self.ctx(),
            &mut self.handler,
        );
        let mut stash =
            Stash::reserve::<A, H>(h, need.tables, bytes)?.for_change::<A, H>(h, ctx, 0)?;
        // A leaf given global flags widens the table's tagged flushes from now on.
        let mut global = false;
        let mut f = f;
        let visit = |edit: &mut EntryEdit<A>| {
            f(edit);
            global |= edit.flags.is_some_and(|f| f.contains(MappingFlags::GLOBAL));
        };
        // SAFETY: as above; the stash holds what the check pass counted.
        unsafe { walk::visit_apply::<A, A::Root, H>(h, &mut stash, root, (s, e), visit) };
        debug_assert!(stash.is_empty());
        stash.release(h);
        self.state.global |= global;
        Ok(Flush::range(s, e))
    }
}
