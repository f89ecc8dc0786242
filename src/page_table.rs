//! [`PageTable`]: the facade. Argument checks and ownership live here; the walk is in
//! `levels::walk`, the encodings in `arch/`.

use core::fmt;
use core::marker::PhantomData;

use memory_addr::{PhysAddr, VirtAddr};

use crate::arch::{self, Arch, VaSpace};
use crate::error::PagingError;
use crate::flags::{AccessState, MappingFlags, PageSize};
use crate::flush::Flush;
use crate::handler::PagingHandler;
use crate::levels::walk::{self, Ctx, MapReq, Modify, RawLeaf, Stash};
use crate::levels::{Descriptor, EntryKind, HasNext, L1, Table, TableRef};
use crate::liveness::Liveness;
use crate::remembered::Remembered;
use crate::retired::{self, Retired};
use crate::size::{self, HasLeaf, LeafSize};
use crate::state::{RootRange, TableState};

/// Whether [`PageTable::map_region`] may use leaves larger than the granule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HugePages {
    /// Use the largest leaf that the alignment of the virtual and physical addresses allows.
    Allowed,
    /// Use granule-sized leaves (4 KiB) only.
    Never,
}

/// What [`PageTable::query`] finds at an address; `Addr` is the table's input address
/// ([`Arch::Addr`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation<Addr = VirtAddr> {
    /// The physical address the queried address translates to (page offset applied).
    pub pa: PhysAddr,
    /// The flags of the leaf.
    pub flags: MappingFlags,
    /// The size of the leaf.
    pub size: PageSize,
    /// What the hardware recorded in the leaf.
    pub state: AccessState,
    /// The first address of the leaf.
    pub leaf_va: Addr,
}

/// One leaf, as [`PageTable::for_each_mapping`] and [`PageTable::unmap`] report it; `Addr` is
/// the table's input address ([`Arch::Addr`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping<Addr = VirtAddr> {
    /// The first input address of the leaf (sign-extended where the mode is).
    pub va: Addr,
    /// The first physical address of the leaf.
    pub pa: PhysAddr,
    /// The size of the leaf.
    pub size: PageSize,
    /// The flags of the leaf.
    pub flags: MappingFlags,
    /// What the hardware recorded in the leaf.
    pub state: AccessState,
}

/// What [`PageTable::unmap_region_with`] clears: a leaf, or a marker
/// ([`PageTable::set_marker`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cleared<Addr = VirtAddr> {
    /// A leaf, as it was when the swap that cleared it returned it.
    Leaf(Mapping<Addr>),
    /// A marker at this page, with its payload.
    Marker {
        /// The page's first address.
        va: Addr,
        /// What the marker held.
        payload: u64,
    },
}

impl<Addr> Cleared<Addr> {
    /// The leaf, if this is one.
    #[must_use]
    pub fn leaf(self) -> Option<Mapping<Addr>> {
        match self {
            Cleared::Leaf(m) => Some(m),
            Cleared::Marker { .. } => None,
        }
    }
}

impl<Addr: memory_addr::MemoryAddr> Translation<Addr> {
    /// What `leaf` says of folded address `va` inside it.
    pub(crate) fn from_raw<A: Arch<Addr = Addr>>(leaf: RawLeaf, va: u64) -> Self {
        Translation {
            pa: PhysAddr::from((leaf.pa + (va - leaf.va)) as usize),
            flags: leaf.flags,
            size: leaf.size,
            state: leaf.state,
            leaf_va: arch::from_va::<A>(A::unfold(leaf.va)),
        }
    }
}

impl<Addr: memory_addr::MemoryAddr> Mapping<Addr> {
    pub(crate) fn from_raw<A: Arch<Addr = Addr>>(leaf: RawLeaf) -> Self {
        Self {
            va: arch::from_va::<A>(A::unfold(leaf.va)),
            pa: PhysAddr::from(leaf.pa as usize),
            size: leaf.size,
            flags: leaf.flags,
            state: leaf.state,
        }
    }
}

/// A page table of paging mode `A`, whose table frames come from handler `H`.
///
/// The value is the root's physical address, its [`TableState`] (liveness, borrowed and shared
/// root entries), and the handler. Dropping it frees every table frame it
/// owns (never the frames its leaves map).
///
/// Addresses are `start + len` everywhere. Every call that changes the table returns a
/// [`Flush`] token; every call that fails returns a [`PagingError`] and changes nothing.
pub struct PageTable<A: Arch, H: PagingHandler> {
    root: u64,
    pub(crate) state: TableState,
    pub(crate) handler: H,
    /// The flags `map` last made a granule leaf with (checked then) and that leaf's template;
    /// [`MappingFlags::NONE_YET`] and 0 if none yet.
    leaf_cache: (MappingFlags, u64),
    /// The last-level table the fast paths of `map` and `unmap` last walked to: the next
    /// single-page call in its span starts there, not at the root. Every change that may
    /// unlink a table takes its context from [`ctx`](Self::ctx), which forgets it first (as
    /// does [`handler_mut`](Self::handler_mut)), so it only ever names a linked table of ours;
    /// it is never one in a borrowed range.
    last: Remembered<A>,
    _arch: PhantomData<A>,
}

// SAFETY: the value owns its tables exclusively (borrowed ranges are never written or freed
// through it), so moving it to another thread moves that ownership, the pointers into its own
// tables that it remembers (`last`) included; `H: Send` moves with it.
unsafe impl<A: Arch, H: PagingHandler + Send> Send for PageTable<A, H> {}
// SAFETY: `&PageTable` only reads table memory (atomically), which any number of threads may
// do at once, and never writes `last`; `H: Sync` because `&self` methods call
// `H::phys_to_virt`.
unsafe impl<A: Arch, H: PagingHandler + Sync> Sync for PageTable<A, H> {}

impl<A: Arch, H: PagingHandler> PageTable<A, H> {
    const GEOMETRY_OK: () = assert!(
        arch::geometry_ok::<A>(),
        "inconsistent paging-mode geometry"
    );
    const ROOT_BYTES: usize = arch::table_bytes::<A>(arch::root_depth::<A>());
    const PAGE: u64 = 1 << A::PAGE_SHIFT;

    /// An empty page table: one zeroed root table from `handler`.
    ///
    /// # Errors
    ///
    /// * [`PagingError::OutOfFrames`] if the handler has no frame for the root.
    /// * [`PagingError::BadFrame`] if the frame it returns is not aligned to the root's size,
    ///   lies beyond the mode's physical-address width, is reached through a pointer that is
    ///   not 8-aligned, or (LoongArch) is at physical address 0; the frame is given back.
    pub fn new(mut handler: H) -> Result<Self, PagingError> {
        let () = Self::GEOMETRY_OK;
        let root = walk::alloc_frame::<A, H>(&mut handler, Self::ROOT_BYTES)?;
        // SAFETY: the handler just gave us this block; it is linked nowhere.
        unsafe { TableRef::<A, A::Root>::from_pa(&handler, root).zero_fresh() };
        Ok(Self {
            root,
            state: TableState::default(),
            handler,
            leaf_cache: (MappingFlags::NONE_YET, 0),
            last: Remembered::none(),
            _arch: PhantomData,
        })
    }

    /// Takes over the table tree rooted at `root`: from now on it is edited, and freed on drop,
    /// through `handler`. The table starts [`Offline`](Liveness::Offline), borrowing and
    /// sharing nothing; to adopt a tree an MMU is walking (the one a bootloader left in CR3),
    /// call [`set_liveness`](Self::set_liveness) next.
    ///
    /// The tables above the last level are read once, and the hardware-ignored bits in which
    /// this crate counts the live entries of each last-level table ([`Arch::LIVE_COUNT`]: x86
    /// bits 52-61 of a PDE that links a page table) are cleared, atomically, in every entry
    /// that has them set: whatever put them there, this crate does not trust them.
    ///
    /// # Errors
    ///
    /// * [`PagingError::UnalignedPa`] if `root` is not aligned to the root table's size.
    /// * [`PagingError::PaTooWide`] if `root` does not fit the mode's physical-address width.
    /// * [`PagingError::BadFrame`] if `handler` reaches `root` through a pointer that is not
    ///   8-aligned, or (LoongArch) `root` is physical address 0, where no table can be.
    ///
    /// # Safety
    ///
    /// `root` is the root of a tree of mode `A` whose every table was allocated through a
    /// handler equivalent to `handler` (so that [`PagingHandler::free_table`] may take it back)
    /// or is one for which [`PagingHandler::owns_table`] answers `false` (a tree someone else
    /// built: the crate edits it but never frees those tables),
    /// is reachable through `handler.phys_to_virt`, and is owned by nothing else: no other
    /// `PageTable` and no other code will edit or free it.
    pub unsafe fn from_root(root: PhysAddr, handler: H) -> Result<Self, PagingError> {
        // A tree built elsewhere may hold global leaves: tagged flushes reach those too.
        let state = TableState {
            global: true,
            ..TableState::default()
        };
        // SAFETY: forwarded; this state claims no borrowed or shared entries.
        unsafe { Self::from_raw(root, handler, state) }
    }

    /// Takes back a table that [`into_raw`](Self::into_raw) gave up, with everything it knew.
    ///
    /// # Errors
    ///
    /// As for [`from_root`](Self::from_root).
    ///
    /// # Safety
    ///
    /// As for [`from_root`](Self::from_root), and `state` is what `into_raw` returned with
    /// `root` (or [`TableState::default`]): the root entries it says are borrowed still link
    /// their owner's tables, which this table will never free, and those it says are shared
    /// are still linked by whoever borrowed them.
    pub unsafe fn from_raw(
        root: PhysAddr,
        handler: H,
        state: TableState,
    ) -> Result<Self, PagingError> {
        let () = Self::GEOMETRY_OK;
        let raw = root.as_usize() as u64;
        if raw % Self::ROOT_BYTES as u64 != 0 {
            return Err(PagingError::UnalignedPa(root));
        }
        if (raw + Self::ROOT_BYTES as u64 - 1) & !arch::pa_mask::<A>() != 0 {
            return Err(PagingError::PaTooWide(root));
        }
        if (!A::TABLE_AT_PA_0 && raw == 0) || handler.phys_to_virt(root).as_ptr() as usize % 8 != 0
        {
            return Err(PagingError::BadFrame(root));
        }
        // The tree may have been built, or edited, by other code: the bits this crate keeps
        // live-entry counts in may hold anything, so none is trusted.
        // SAFETY: the root is a live tree we own now (caller), reached through `handler`; the
        // borrowed root entries are the only ones that link another table's tree (caller).
        unsafe {
            walk::scrub::<A, H>(&handler, TableRef::from_pa(&handler, raw), state.borrowed);
        }
        Ok(Self {
            root: raw,
            state,
            handler,
            leaf_cache: (MappingFlags::NONE_YET, 0),
            last: Remembered::none(),
            _arch: PhantomData,
        })
    }

    /// Gives up the tree without freeing it: the root's address, the handler, and the
    /// [`TableState`] that [`from_raw`](Self::from_raw) needs to take it back as it was.
    /// Borrowed ranges stay linked.
    #[must_use]
    pub fn into_raw(self) -> (PhysAddr, H, TableState) {
        let this = core::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never used or dropped again, so moving the handler out is a move.
        let handler = unsafe { core::ptr::read(&this.handler) };
        (PhysAddr::from(this.root as usize), handler, this.state)
    }

    /// What the table knows besides its tree.
    #[must_use]
    pub fn state(&self) -> TableState {
        self.state
    }

    /// The physical address of the root table: what goes into CR3, TTBRn_EL1, satp's PPN
    /// field, or PGDL/PGDH.
    #[must_use]
    pub fn root_paddr(&self) -> PhysAddr {
        PhysAddr::from(self.root as usize)
    }

    /// The handler.
    #[must_use]
    pub fn handler(&self) -> &H {
        &self.handler
    }

    /// The handler, to change (refill its pool, arm a test hook, ...).
    ///
    /// # Safety
    ///
    /// The handler must stay one that reaches every table of this tree through
    /// [`PagingHandler::phys_to_virt`] and takes them back through
    /// [`PagingHandler::free_table`]: the caller neither replaces it by one that does not, nor
    /// frees through it a frame the table still uses.
    pub unsafe fn handler_mut(&mut self) -> &mut H {
        // A new handler may reach the tables at other addresses.
        self.last.forget();
        &mut self.handler
    }

    /// A read-only view of the root table. It does not lead into borrowed root entries
    /// ([`Table::next`]).
    #[must_use]
    pub fn root(&self) -> Table<'_, A, A::Root, H> {
        // SAFETY: the root is live while `self` is borrowed.
        unsafe { Table::new(&self.handler, self.root) }.hiding(self.state.borrowed)
    }

    pub(crate) fn root_ref(&self) -> TableRef<A, A::Root> {
        // SAFETY: the root is a live table reached through our handler.
        unsafe { TableRef::from_pa(&self.handler, self.root) }
    }

    /// The number of table frames this table owns, the root included (borrowed ranges not).
    #[must_use]
    pub fn table_frames(&self) -> usize {
        let root = self.root_ref();
        let mut n = 1;
        for i in 0..TableRef::<A, A::Root>::ENTRIES {
            // SAFETY: in bounds, live root.
            let pte = unsafe { root.load(i) };
            if !self.is_borrowed(i) && A::entry_kind::<A::Root>(pte) == EntryKind::Table {
                // SAFETY: a table entry of our root leads to a live table we own.
                n += unsafe { count_below_root::<A, H>(&self.handler, pte) };
            }
        }
        n
    }

    /// The leaf that translates `va`.
    ///
    /// # Errors
    ///
    /// * [`PagingError::NotCanonical`] if the table does not translate `va`.
    /// * [`PagingError::NotMapped`] if no leaf translates it.
    pub fn query(&self, va: A::Addr) -> Result<Translation<A::Addr>, PagingError> {
        let va = arch::to_va::<A>(va);
        let folded = A::fold(va).ok_or(PagingError::NotCanonical(va))?;
        // SAFETY: the root is live and ours (or borrowed, which we may read).
        let leaf = unsafe { walk::query::<A, A::Root, H>(&self.handler, self.root_ref(), folded) }
            .ok_or(PagingError::NotMapped(va))?;
        Ok(Translation::from_raw::<A>(leaf, folded))
    }

    /// The physical address `va` translates to and the size of the leaf that maps it: what
    /// [`query`](Self::query) reports as `pa` and `size`, without working out the flags and
    /// access state (a page-fault path or a DMA setup that needs the frame alone). As `query`,
    /// it finds [`INACCESSIBLE`](MappingFlags::INACCESSIBLE) leaves too, and says nothing of
    /// whether an access would be allowed.
    ///
    /// ```
    /// use pagetable::{BufferFrames, MappingFlags, PageSize, PageTable, X86_64};
    /// use memory_addr::{pa, va};
    ///
    /// let mut memory = vec![0u64; 8 << 9];
    /// let frames = BufferFrames::new(&mut memory, pa!(0x10_0000)).unwrap();
    /// let mut pt = PageTable::<X86_64, _>::new(frames).unwrap();
    /// pt.map(va!(0x20_0000), pa!(0x8000_0000), PageSize::SIZE_2M, MappingFlags::READ)
    ///     .unwrap()
    ///     .ignore();
    /// assert_eq!(
    ///     pt.translate(va!(0x20_1234)).unwrap(),
    ///     (pa!(0x8000_1234), PageSize::SIZE_2M)
    /// );
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`query`](Self::query): [`PagingError::NotCanonical`] if the table does not
    /// translate `va`, [`PagingError::NotMapped`] if no leaf maps it.
    #[inline]
    pub fn translate(&self, va: A::Addr) -> Result<(PhysAddr, PageSize), PagingError> {
        let va = arch::to_va::<A>(va);
        let folded = A::fold(va).ok_or(PagingError::NotCanonical(va))?;
        // SAFETY: the root is live and ours (or borrowed, which we may read).
        let (pa, shift) =
            unsafe { walk::translate::<A, A::Root, H>(&self.handler, self.root_ref(), folded) }
                .ok_or(PagingError::NotMapped(va))?;
        let size = PageSize::from_shift(shift).ok_or(PagingError::NotMapped(va))?;
        Ok((PhysAddr::from(pa as usize), size))
    }

    /// Maps one leaf of `size` at `va` to `pa`.
    ///
    /// # Errors
    ///
    /// * [`PagingError::SizeNotSupported`] if the mode has no leaf of `size`.
    /// * [`PagingError::UnalignedVa`] / [`PagingError::UnalignedPa`] unless both are aligned
    ///   to `size`.
    /// * [`PagingError::NotCanonical`], [`PagingError::RangeWraps`] if `[va, va + size)` is not
    ///   inside the table's address space.
    /// * [`PagingError::PaTooWide`] if `pa + size - 1` does not fit the physical-address width.
    /// * [`PagingError::FlagsNotExpressible`] if the mode cannot express `flags`.
    /// * [`PagingError::Borrowed`] if `va` lies in a borrowed range.
    /// * [`PagingError::AlreadyMapped`] if anything in `[va, va + size)` is mapped.
    /// * [`PagingError::OutOfFrames`] if a table on the way cannot be allocated.
    #[inline(always)]
    pub fn map(
        &mut self,
        va: A::Addr,
        pa: PhysAddr,
        size: PageSize,
        flags: MappingFlags,
    ) -> Result<Flush<A>, PagingError> {
        let va = arch::to_va::<A>(va);
        if size.bytes() as u64 == Self::PAGE {
            if let Some(flush) = self.map_page_fast(va, pa, flags) {
                return Ok(flush);
            }
        }
        self.map_general(va, pa, size, flags)
    }

    /// [`map`](Self::map) of a granule page where every table on the way exists and already
    /// lets the flags through, with the flags the last such map used: one walk, a load and a
    /// store. Each test only picks the path; `None` sends the call the general way
    /// ([`map_general`](Self::map_general)), which makes every check in the documented order.
    #[inline(always)]
    fn map_page_fast(
        &mut self,
        va: VirtAddr,
        pa: PhysAddr,
        flags: MappingFlags,
    ) -> Option<Flush<A>> {
        let (cached, template) = self.leaf_cache;
        let s = A::fold(va)?;
        let pa = pa.as_usize() as u64;
        let pa_ok = Self::page_frame_ok(pa);
        if cached != flags || s % Self::PAGE != 0 || !pa_ok {
            return None;
        }
        let (t, _, slot) = self.last_table::<true>(s)?;
        if !self.last.lets_through(flags) {
            return None; // a table entry on the way must be made to let the flags through
        }
        let i = TableRef::<A, L1>::index(s);
        // SAFETY: masked index, live table.
        if A::entry_kind::<L1>(unsafe { t.load(i) }) != EntryKind::Empty {
            return None;
        }
        // SAFETY: as above; the table is ours (`&mut self`) and the slot empty.
        unsafe { t.store(i, template | A::leaf_addr_bits::<L1>(pa)) };
        // SAFETY: the entry that links `t`, in our tree.
        unsafe { slot.added(1) };
        Some(Flush::range(s, s + Self::PAGE))
    }

    /// The last-level table on the way to folded `s`, with the table entries above it folded
    /// and the entry that links it: the remembered one if its span holds `s`, else found by a
    /// read-only walk and remembered if `REMEMBER`. `None` if `s` lies in a borrowed range
    /// (the remembered table never does: borrowing and releasing forget it) or the walk
    /// reaches no last-level table.
    #[inline(always)]
    fn last_table<const REMEMBER: bool>(
        &mut self,
        s: u64,
    ) -> Option<(TableRef<A, L1>, u64, walk::CountSlot<A>)> {
        if let Some(found) = self.last.get(s) {
            return Some(found);
        }
        let root_index = TableRef::<A, A::Root>::index(s);
        if self.state.borrowed.meets(root_index, root_index + 1) {
            return None;
        }
        // SAFETY: the root is live and ours; reading only (no grant).
        let (table, path, slot) =
            unsafe { walk::last_table_read::<A, A::Root, H>(&self.handler, self.root_ref(), s) }?;
        // SAFETY: a last-level table of our tree, linked until a change that may unlink it,
        // which forgets it first (`ctx`).
        let t = unsafe { TableRef::<A, L1>::from_pa(&self.handler, table) };
        if REMEMBER {
            self.last = Remembered::new(s, t, path, slot);
        }
        Some((t, path, slot))
    }

    /// Whether a granule page at physical address `pa` passes `map`'s checks of its frame:
    /// aligned, and inside the physical-address width.
    #[inline(always)]
    pub(crate) fn page_frame_ok(pa: u64) -> bool {
        pa % Self::PAGE == 0 && (pa | (Self::PAGE - 1)) & !arch::pa_mask::<A>() == 0
    }

    /// [`map`](Self::map), the general way.
    #[inline(never)]
    fn map_general(
        &mut self,
        va: VirtAddr,
        pa: PhysAddr,
        size: PageSize,
        flags: MappingFlags,
    ) -> Result<Flush<A>, PagingError> {
        let depth = leaf_depth::<A>(size).ok_or(PagingError::SizeNotSupported(size))?;
        let (s, e) = self.check_range(va, size.bytes(), size.bytes() as u64)?;
        if depth == arch::root_depth::<A>()
            && self.state.shared.contains(TableRef::<A, A::Root>::index(s))
        {
            return Err(PagingError::Shared(va));
        }
        let delta = self
            .check_pa(pa, size.bytes(), size.bytes() as u64)?
            .wrapping_sub(s);
        A::check_flags(flags)?;
        self.note_flags(flags);
        if depth == 1 {
            self.leaf_cache = (flags, A::leaf_template::<L1>(flags));
        }
        let req = MapReq {
            delta,
            huge: true,
            flags,
            exact_depth: depth,
            shared: self.state.shared,
        };
        self.map_leaf(s, e, req)
    }

    /// Maps folded `[s, e)`, inside the space and not borrowed, as the one leaf of
    /// `req.exact_depth`: in one descent, or, where a table entry on the way must be widened
    /// for the flags, by the two passes, which check everything before they widen it.
    fn map_leaf(&mut self, s: u64, e: u64, req: MapReq) -> Result<Flush<A>, PagingError> {
        let (root, ctx) = (self.root_ref(), self.ctx());
        // SAFETY: the root is live and ours; the range is inside the space and not borrowed.
        match unsafe { walk::map_one::<A, A::Root, H>(&mut self.handler, ctx, root, s, e, &req)? } {
            Some(retired) => Ok(Flush::range(s, e).with_retired(retired)),
            None => self.map_folded(s, e, req),
        }
    }

    /// [`map`](Self::map) with the leaf size as a type (the x86_64 crate's `Page<S>` idea): a
    /// size the mode does not have is a compile error, not a
    /// [`SizeNotSupported`](PagingError::SizeNotSupported).
    ///
    /// ```
    /// use pagetable::{BufferFrames, MappingFlags as F, PageTable, Size2M, X86_64};
    /// use memory_addr::{pa, va};
    ///
    /// let mut memory = vec![0u64; 8 << 9];
    /// let frames = BufferFrames::new(&mut memory, pa!(0x10_0000)).unwrap();
    /// let mut pt = PageTable::<X86_64, _>::new(frames).unwrap();
    /// pt.map_page::<Size2M>(va!(0x20_0000), pa!(0x4000_0000), F::READ).unwrap().ignore();
    /// assert_eq!(pt.query(va!(0x20_1000)).unwrap().pa, pa!(0x4000_1000));
    /// ```
    /// ```compile_fail,E0277
    /// # use pagetable::{BufferFrames, MappingFlags as F, PageTable, Size512G, X86_64};
    /// # use memory_addr::{pa, va};
    /// # let mut memory = vec![0u64; 8 << 9];
    /// # let frames = BufferFrames::new(&mut memory, pa!(0x10_0000)).unwrap();
    /// # let mut pt = PageTable::<X86_64, _>::new(frames).unwrap();
    /// // x86_64 has no 512 GiB leaves (Sv48 has).
    /// let _ = pt.map_page::<Size512G>(va!(0), pa!(0), F::READ);
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`map`](Self::map), but never [`PagingError::SizeNotSupported`].
    pub fn map_page<S: LeafSize>(
        &mut self,
        va: A::Addr,
        pa: PhysAddr,
        flags: MappingFlags,
    ) -> Result<Flush<A>, PagingError>
    where
        A: HasLeaf<S>,
    {
        let va = arch::to_va::<A>(va);
        const {
            assert!(
                size::has_leaf::<A, S>(),
                "HasLeaf implemented for a size the mode lacks"
            )
        };
        self.map(arch::from_va::<A>(va), pa, S::SIZE, flags)
    }

    /// Maps `[va, va + len)` to `[pa, pa + len)`, with the largest leaves that alignment allows
    /// when `huge` is [`HugePages::Allowed`]. Descends once per table, not once per page.
    ///
    /// # Errors
    ///
    /// * [`PagingError::EmptyRange`] if `len` is 0.
    /// * [`PagingError::UnalignedVa`], [`PagingError::UnalignedPa`],
    ///   [`PagingError::UnalignedLen`] unless `va`, `pa` and `len` are granule-aligned.
    /// * [`PagingError::RangeWraps`] if `va + len` or `pa + len` overflows.
    /// * [`PagingError::NotCanonical`] if the range leaves the table's address space.
    /// * [`PagingError::PaTooWide`] if `pa + len - 1` does not fit the physical-address width.
    /// * [`PagingError::FlagsNotExpressible`] if the mode cannot express `flags`.
    /// * [`PagingError::Borrowed`] if the range meets a borrowed range.
    /// * [`PagingError::AlreadyMapped`] if anything in the range is mapped.
    /// * [`PagingError::OutOfFrames`] if the tables it needs cannot all be allocated; they are
    ///   reserved before anything changes.
    pub fn map_region(
        &mut self,
        va: A::Addr,
        pa: PhysAddr,
        len: usize,
        flags: MappingFlags,
        huge: HugePages,
    ) -> Result<Flush<A>, PagingError> {
        let va = arch::to_va::<A>(va);
        let (s, e) = self.check_range(va, len, Self::PAGE)?;
        let delta = self.check_pa(pa, len, Self::PAGE)?.wrapping_sub(s);
        A::check_flags(flags)?;
        self.note_flags(flags);
        let mut req = MapReq {
            delta,
            huge: huge == HugePages::Allowed,
            flags,
            exact_depth: 0,
            shared: self.state.shared,
        };
        if let Some(depth) = req.one_leaf::<A>(s, e) {
            // The region is the one leaf the two passes would make: the single-leaf walk makes
            // it, with the same checks (it replaces an empty table as they would).
            req.exact_depth = depth;
            return self.map_leaf(s, e, req);
        }
        self.map_folded(s, e, req)
    }

    fn map_folded(&mut self, s: u64, e: u64, req: MapReq) -> Result<Flush<A>, PagingError> {
        self.map_folded_with(s, e, req, None)
    }

    /// Maps `frames`, one granule page each, from `va` on, in one descent per table: a range
    /// whose pages are scattered in physical memory (an anonymous region the kernel filled from
    /// its allocator, a user buffer pinned for a device). All or nothing, as
    /// [`map_region`](Self::map_region): every frame is checked, every table reserved, before
    /// the first entry is written.
    ///
    /// ```
    /// use pagetable::{BufferFrames, MappingFlags as F, PageTable, PhysAddr, Sv48};
    /// use memory_addr::{pa, va};
    ///
    /// let mut memory = vec![0u64; 8 << 9];
    /// let frames = BufferFrames::new(&mut memory, pa!(0x8000_0000)).unwrap();
    /// let mut pt = PageTable::<Sv48, _>::new(frames).unwrap();
    /// let pages = [pa!(0x9000_3000), pa!(0x9100_0000), pa!(0x9000_1000)];
    /// pt.map_frames(va!(0x10_0000), &pages, F::READ | F::WRITE).unwrap().ignore();
    /// assert_eq!(pt.query(va!(0x10_1008)).unwrap().pa, pa!(0x9100_0008));
    /// ```
    ///
    /// # Errors
    ///
    /// * [`PagingError::EmptyRange`] if `frames` is empty.
    /// * [`PagingError::UnalignedVa`], [`PagingError::RangeWraps`],
    ///   [`PagingError::NotCanonical`], [`PagingError::Borrowed`] for a bad range, as for
    ///   [`map_region`](Self::map_region) (its length is the frames' count in pages).
    /// * [`PagingError::UnalignedPa`] for the first frame not aligned to the granule.
    /// * [`PagingError::PaTooWide`] for the first frame whose page does not fit the
    ///   physical-address width.
    /// * [`PagingError::FlagsNotExpressible`] if the mode cannot express `flags`.
    /// * [`PagingError::AlreadyMapped`] if anything in the range is mapped.
    /// * [`PagingError::OutOfFrames`] if the tables it needs cannot all be allocated.
    pub fn map_frames(
        &mut self,
        va: A::Addr,
        frames: &[PhysAddr],
        flags: MappingFlags,
    ) -> Result<Flush<A>, PagingError> {
        let va = arch::to_va::<A>(va);
        let len = frames
            .len()
            .checked_mul(Self::PAGE as usize)
            .ok_or(PagingError::RangeWraps)?;
        let (s, e) = self.check_range(va, len, Self::PAGE)?;
        // One OR over every frame finds both faults at once: an aligned frame's page fits the
        // width exactly when the frame has no bit above it. No branch per frame; on a fault,
        // a second look names the first bad frame.
        let all = frames.iter().fold(0, |acc, f| acc | f.as_usize() as u64);
        if all & ((Self::PAGE - 1) | !arch::pa_mask::<A>()) != 0 {
            for &f in frames {
                self.check_pa(f, Self::PAGE as usize, Self::PAGE)?;
            }
        }
        A::check_flags(flags)?;
        self.note_flags(flags);
        let req = MapReq {
            delta: 0,
            huge: false,
            flags,
            exact_depth: 0,
            shared: self.state.shared,
        };
        self.map_folded_with(s, e, req, Some(walk::Scattered { frames, base: s }))
    }

    fn map_folded_with(
        &mut self,
        s: u64,
        e: u64,
        req: MapReq,
        frames: Option<walk::Scattered<'_>>,
    ) -> Result<Flush<A>, PagingError> {
        let (root, ctx) = (self.root_ref(), self.ctx());
        let refuse = ctx.liveness == Liveness::LiveNoBreak;
        // SAFETY: the root is live and ours; the range is inside the space and not borrowed.
        let need =
            unsafe { walk::map_check::<A, A::Root, H>(&self.handler, root, s, e, &req, refuse)? };
        let h = &mut self.handler;
        let mut stash = Stash::reserve::<A, H>(h, need.tables, TableRef::<A, NonRoot<A>>::BYTES)?
            .for_change::<A, H>(h, ctx, need.unlinks)?;
        // SAFETY: as above; the check pass passed and the stash holds what it counted.
        unsafe { walk::map_apply::<A, A::Root, H>(h, &mut stash, root, s, e, &req, frames) };
        debug_assert!(stash.is_empty());
        Ok(Flush::range(s, e).with_retired(stash.finish(h)))
    }

    /// What a changing walk must know of this table besides its tree. Every change that may
    /// unlink a table takes it from here, so this is where the fast paths' remembered table is
    /// forgotten.
    pub(crate) fn ctx(&mut self) -> Ctx {
        self.last.forget();
        Ctx {
            liveness: self.state.liveness,
            owner: self.root,
            shared: self.state.shared,
        }
    }

    /// Unmaps the leaf that starts at `va`, unlinks the tables that this empties, and returns
    /// what the leaf mapped, with its access state as the atomic exchange that cleared it found
    /// it: a store another CPU made up to that moment is reported dirty.
    ///
    /// On an [`Offline`](Liveness::Offline) table the emptied tables are freed at once; on a
    /// live one the returned [`Flush`] owns them until the TLB invalidation is done (if the
    /// handler has no frame to record them in, they stay linked, empty, and are freed later).
    ///
    /// # Errors
    ///
    /// * [`PagingError::NotCanonical`] if the table does not translate `va`.
    /// * [`PagingError::NotMapped`] if nothing is mapped at `va`.
    /// * [`PagingError::InsideLeaf`] if `va` lies inside a leaf that starts elsewhere.
    /// * [`PagingError::Borrowed`] if `va` lies in a borrowed range.
    #[inline]
    pub fn unmap(&mut self, va: A::Addr) -> Result<(Mapping<A::Addr>, Flush<A>), PagingError> {
        let va = arch::to_va::<A>(va);
        if let Some(done) = self.unmap_page_fast(va) {
            return Ok(done);
        }
        self.unmap_general(va)
    }

    /// [`unmap`](Self::unmap) of a granule leaf whose last-level table is counted and keeps
    /// other entries (so nothing is unlinked): one walk, the clear, the count one lower. Each
    /// test only picks the path; `None` sends the call the general way, having changed
    /// nothing.
    #[inline(always)]
    fn unmap_page_fast(&mut self, va: VirtAddr) -> Option<(Mapping<A::Addr>, Flush<A>)> {
        let s = A::fold(va)?;
        if s % Self::PAGE != 0 {
            return None;
        }
        // Remembered, but not remembering: unmaps of single pages are as often scattered
        // (reclaim) as neighbours, and a miss would cost a store of the walk's result.
        let (t, path, slot) = self.last_table::<false>(s)?;
        let i = TableRef::<A, L1>::index(s);
        // SAFETY: masked index, live table.
        let pte = unsafe { t.load(i) };
        // SAFETY: the entry that links `t`, which we own; the leaf at `i` is cleared next.
        if A::entry_kind::<L1>(pte) != EntryKind::Leaf || !unsafe { slot.removed_one_of_many() } {
            return None;
        }
        // The state as the clear found it: an atomic swap where an MMU may still mark the leaf.
        // SAFETY: as above.
        let old = unsafe {
            if self.state.liveness == Liveness::Offline || !A::hw_may_update::<L1>(pte) {
                t.store(i, 0);
                pte
            } else {
                t.swap(i, 0)
            }
        };
        let mut leaf = RawLeaf::of::<A, L1>(s, old);
        if A::TABLE_GATES {
            leaf.flags = A::path_restrict(path, leaf.flags);
        }
        Some((
            Mapping::from_raw::<A>(leaf),
            Flush::range(s, s + Self::PAGE),
        ))
    }

    /// [`unmap`](Self::unmap), the general way.
    #[inline(never)]
    fn unmap_general(&mut self, va: VirtAddr) -> Result<(Mapping<A::Addr>, Flush<A>), PagingError> {
        let folded = A::fold(va).ok_or(PagingError::NotCanonical(va))?;
        // A leaf lies inside one root entry (a root-level leaf is one).
        let root_index = TableRef::<A, A::Root>::index(folded);
        let borrowed = self.state.borrowed.meets(root_index, root_index + 1);
        let (root, ctx) = (self.root_ref(), self.ctx());
        let h = &mut self.handler;
        // Clearing one whole leaf splits nothing: no frames reserved.
        let mut stash = Stash::none(TableRef::<A, NonRoot<A>>::BYTES, ctx);
        // One walk finds the leaf, checks it and clears it.
        // SAFETY: the root is live and ours and its span holds `folded`.
        match unsafe { walk::unmap_at::<A, H>(h, &mut stash, root, folded, borrowed) } {
            Ok(gone) => {
                let (s, e) = (gone.va, gone.va + gone.size.bytes() as u64);
                Ok((
                    Mapping::from_raw::<A>(gone),
                    Flush::range(s, e).with_retired(stash.finish(h)),
                ))
            }
            Err(err) => {
                stash.release(h);
                Err(err)
            }
        }
    }

    /// Points the leaf that starts at `va` at `pa`, keeping its flags and access state. To
    /// change the flags with the address, or a range of leaves at once, see
    /// [`remap_region`](Self::remap_region).
    ///
    /// # Errors
    ///
    /// * [`PagingError::NotCanonical`], [`PagingError::NotMapped`],
    ///   [`PagingError::InsideLeaf`], [`PagingError::Borrowed`] as for [`unmap`](Self::unmap).
    /// * [`PagingError::UnalignedPa`] unless `pa` is aligned to the leaf's size.
    /// * [`PagingError::PaTooWide`] if the leaf would reach past the physical-address width.
    pub fn remap(&mut self, va: A::Addr, pa: PhysAddr) -> Result<Flush<A>, PagingError> {
        let va = arch::to_va::<A>(va);
        let leaf = self.leaf_at(va)?;
        let (s, e) = (leaf.va, leaf.va + leaf.size.bytes() as u64);
        self.check_not_borrowed(s, e)?;
        let delta = self
            .check_pa(pa, leaf.size.bytes(), leaf.size.bytes() as u64)?
            .wrapping_sub(s);
        self.edit_leaf(&leaf, Modify::Remap(delta))?;
        Ok(Flush::range(s, e))
    }

    /// `op` on the leaf `leaf` in one atomic step; its access state as that step found it.
    fn edit_leaf(&mut self, leaf: &RawLeaf, op: Modify) -> Result<AccessState, PagingError> {
        let depth = leaf_depth::<A>(leaf.size).ok_or(PagingError::NotMapped(A::unfold(leaf.va)))?;
        let (root, liveness) = (self.root_ref(), self.state.liveness);
        // SAFETY: the root is live and ours; `leaf` is a leaf of `depth` starting at its `va`.
        unsafe {
            walk::edit_one::<A, A::Root, H>(&mut self.handler, liveness, root, leaf.va, depth, op)
        }
    }

    /// Gives the leaf that starts at `va` new flags. Its address and access state stay (a leaf
    /// that becomes writable starts dirty, as a new writable leaf does).
    ///
    /// # Errors
    ///
    /// * [`PagingError::NotCanonical`], [`PagingError::NotMapped`],
    ///   [`PagingError::InsideLeaf`], [`PagingError::Borrowed`] as for [`unmap`](Self::unmap).
    /// * [`PagingError::FlagsNotExpressible`] if the mode cannot express `flags`.
    pub fn protect(&mut self, va: A::Addr, flags: MappingFlags) -> Result<Flush<A>, PagingError> {
        let va = arch::to_va::<A>(va);
        let leaf = self.leaf_at(va)?;
        let (s, e) = (leaf.va, leaf.va + leaf.size.bytes() as u64);
        self.check_not_borrowed(s, e)?;
        A::check_flags(flags)?;
        self.note_flags(flags);
        self.edit_leaf(&leaf, Modify::Protect(flags))?;
        Ok(Flush::range(s, e))
    }

    /// Clears the state bits set in `clear` in the leaf that translates `va`, and returns the
    /// state before, as the atomic update that cleared it found it. This is how a kernel samples
    /// accessed and dirty bits for reclaim and dirty tracking: a store another CPU makes is
    /// either in the state returned or left in the leaf, never lost.
    ///
    /// # Errors
    ///
    /// * [`PagingError::NotCanonical`], [`PagingError::NotMapped`], [`PagingError::Borrowed`]
    ///   as for [`unmap`](Self::unmap) (any address inside the leaf will do).
    pub fn clear_access_state(
        &mut self,
        va: A::Addr,
        clear: AccessState,
    ) -> Result<(AccessState, Flush<A>), PagingError> {
        let va = arch::to_va::<A>(va);
        self.edit_state(va, Modify::ClearState(clear))
    }

    /// `op` (a change of access state) on the leaf that translates `va`, any address inside
    /// it; the state before, as the atomic step found it.
    fn edit_state(
        &mut self,
        va: VirtAddr,
        op: Modify,
    ) -> Result<(AccessState, Flush<A>), PagingError> {
        let folded = A::fold(va).ok_or(PagingError::NotCanonical(va))?;
        // SAFETY: the root is live and ours.
        let leaf = unsafe { walk::query::<A, A::Root, H>(&self.handler, self.root_ref(), folded) }
            .ok_or(PagingError::NotMapped(va))?;
        let (s, e) = (leaf.va, leaf.va + leaf.size.bytes() as u64);
        self.check_not_borrowed(s, e)?;
        let old = self.edit_leaf(&leaf, op)?;
        Ok((old, Flush::range(s, e)))
    }

    /// The software bits ([`Arch::SOFT_BITS`]) of the leaf that translates `va`, packed lowest
    /// first: [`arch::soft_bits`] of them (9 on x86_64, 2 on AArch64, 1 on RISC-V and
    /// LoongArch, 6 on EPT).
    ///
    /// # Errors
    ///
    /// [`PagingError::NotCanonical`], [`PagingError::NotMapped`] as for
    /// [`query`](Self::query).
    pub fn soft_bits(&self, va: A::Addr) -> Result<u64, PagingError> {
        let va = arch::to_va::<A>(va);
        let folded = A::fold(va).ok_or(PagingError::NotCanonical(va))?;
        // SAFETY: the root is live; reading is allowed anywhere in it.
        let bits =
            unsafe { walk::leaf_entry::<A, A::Root, H>(&self.handler, self.root_ref(), folded) }
                .ok_or(PagingError::NotMapped(va))?;
        Ok(arch::extract(bits, A::SOFT_BITS))
    }

    /// Sets the software bits of the leaf that starts at `va` to `value` (packed as
    /// [`soft_bits`](Self::soft_bits) reads them), in one atomic update that keeps every mark
    /// the MMU makes meanwhile. The MMU ignores these bits, so nothing needs invalidating.
    ///
    /// ```
    /// use pagetable::{BufferFrames, MappingFlags as F, PageSize, PageTable, X86_64};
    /// use memory_addr::{pa, va};
    ///
    /// let mut memory = vec![0u64; 8 << 9];
    /// let frames = BufferFrames::new(&mut memory, pa!(0x10_0000)).unwrap();
    /// let mut pt = PageTable::<X86_64, _>::new(frames).unwrap();
    /// pt.map(va!(0x1000), pa!(0x2000), PageSize::SIZE_4K, F::READ).unwrap().ignore();
    /// pt.set_soft_bits(va!(0x1000), 0b1_0000_0011).unwrap(); // bits 9, 10 and 58
    /// assert_eq!(pt.soft_bits(va!(0x1000)).unwrap(), 0b1_0000_0011);
    /// pt.protect(va!(0x1000), F::READ | F::WRITE).unwrap().ignore(); // kept
    /// assert_eq!(pt.soft_bits(va!(0x1000)).unwrap(), 0b1_0000_0011);
    /// ```
    ///
    /// # Errors
    ///
    /// * [`PagingError::NotCanonical`], [`PagingError::NotMapped`],
    ///   [`PagingError::InsideLeaf`], [`PagingError::Borrowed`] as for [`unmap`](Self::unmap).
    /// * [`PagingError::SoftBitsTooWide`] if `value` has a bit set at or above
    ///   [`arch::soft_bits`].
    pub fn set_soft_bits(&mut self, va: A::Addr, value: u64) -> Result<(), PagingError> {
        let va = arch::to_va::<A>(va);
        let leaf = self.leaf_at(va)?;
        let (s, e) = (leaf.va, leaf.va + leaf.size.bytes() as u64);
        self.check_not_borrowed(s, e)?;
        if value >> arch::soft_bits::<A>() != 0 {
            return Err(PagingError::SoftBitsTooWide(value));
        }
        self.edit_leaf(&leaf, Modify::SetSoft(arch::deposit(value, A::SOFT_BITS)))?;
        Ok(())
    }

    /// Marks the leaf that translates `va` accessed and, if `mark.dirty` and the leaf is
    /// writable, dirty, as an MMU that manages the marks would, in one atomic update; returns
    /// the state before. For hardware that leaves the marks to software: LoongArch's
    /// page-modify handler (a store through a writable leaf whose D is clear: mark it dirty,
    /// flush, retry), RISC-V without Svadu, AArch64 without FEAT_HAFDBS. The returned
    /// [`Flush`] drops the TLB entry that still holds the unmarked leaf.
    ///
    /// ```
    /// use pagetable::{AccessState, BufferFrames, LoongArch64, MappingFlags as F, PageSize, PageTable};
    /// use memory_addr::{pa, va};
    ///
    /// let mut memory = vec![0u64; 8 << 9];
    /// let frames = BufferFrames::new(&mut memory, pa!(0x10_0000)).unwrap();
    /// let mut pt = PageTable::<LoongArch64, _>::new(frames).unwrap();
    /// pt.map(va!(0x1000), pa!(0x2000), PageSize::SIZE_4K, F::READ | F::WRITE).unwrap().ignore();
    /// // Dirty tracking: start clean, so that the next store raises a page-modify exception.
    /// pt.clear_access_state(va!(0x1000), AccessState::BOTH).unwrap().1.ignore();
    /// // The page-modify handler:
    /// let dirty = AccessState { accessed: true, dirty: true };
    /// let (before, flush) = pt.mark_access(va!(0x1008), dirty).unwrap();
    /// flush.ignore(); // a live table: pt.flush(flush), then retry the store
    /// assert!(!before.dirty && pt.query(va!(0x1000)).unwrap().state.dirty);
    /// ```
    ///
    /// # Errors
    ///
    /// [`PagingError::NotCanonical`], [`PagingError::NotMapped`], [`PagingError::Borrowed`] as
    /// for [`clear_access_state`](Self::clear_access_state).
    pub fn mark_access(
        &mut self,
        va: A::Addr,
        mark: AccessState,
    ) -> Result<(AccessState, Flush<A>), PagingError> {
        let va = arch::to_va::<A>(va);
        self.edit_state(va, Modify::Mark(mark))
    }

    /// Unmaps everything in `[va, va + len)`. Holes are skipped; a leaf that the range covers
    /// only in part is split into leaves one size down (again, until the edges fit), and every
    /// table the range empties is freed (a table the range covers whole is freed without its
    /// leaves being visited).
    ///
    /// # Errors
    ///
    /// * [`PagingError::EmptyRange`], [`PagingError::UnalignedVa`],
    ///   [`PagingError::UnalignedLen`], [`PagingError::RangeWraps`],
    ///   [`PagingError::NotCanonical`] for a bad range, as for
    ///   [`map_region`](Self::map_region).
    /// * [`PagingError::Borrowed`] if the range meets a borrowed range.
    /// * [`PagingError::OutOfFrames`] if splitting the leaves at the edges needs tables that
    ///   cannot be allocated.
    pub fn unmap_region(&mut self, va: A::Addr, len: usize) -> Result<Flush<A>, PagingError> {
        let va = arch::to_va::<A>(va);
        self.unmap_range(va, len, ())
    }

    /// [`unmap_region`](Self::unmap_region), calling `removed` for every leaf and every marker
    /// ([`set_marker`](Self::set_marker)) it clears, in address order: a kernel's `munmap`, which frees the frames and writes back the dirty
    /// pages in the same pass. Each [`Mapping`] is the leaf as it was (its own flags), with the
    /// access state that the atomic swap clearing it returned: every mark the MMU made is in
    /// it, none can come later. A leaf that the range covers only in part is split first, and
    /// only the pieces inside the range are reported and cleared. Holes are skipped.
    ///
    /// Unlike `unmap_region`, a table that the range covers whole is emptied entry by entry
    /// before it goes (so that each leaf is reported), which costs a visit of its leaves.
    ///
    /// ```
    /// use pagetable::{BufferFrames, HugePages, MappingFlags as F, PageSize, PageTable, X86_64};
    /// use memory_addr::{pa, va};
    ///
    /// let mut memory = vec![0u64; 16 << 9];
    /// let frames = BufferFrames::new(&mut memory, pa!(0x10_0000)).unwrap();
    /// let mut pt = PageTable::<X86_64, _>::new(frames).unwrap();
    /// let rw = F::READ | F::WRITE;
    /// pt.map_region(va!(0x20_0000), pa!(0x4000_0000), 0x20_0000, rw, HugePages::Allowed)
    ///     .unwrap()
    ///     .ignore();
    /// pt.map(va!(0x40_3000), pa!(0x5000_0000), PageSize::SIZE_4K, F::READ).unwrap().ignore();
    ///
    /// // munmap of 2 MiB + 16 KiB, holes and all: the block, then the one page.
    /// let mut gone = vec![];
    /// pt.unmap_region_with(va!(0x20_0000), 0x20_4000, |c| gone.extend(c.leaf())).unwrap().ignore();
    /// assert_eq!(gone.len(), 2);
    /// assert_eq!((gone[0].size, gone[0].state.dirty), (PageSize::SIZE_2M, true));
    /// assert_eq!((gone[1].va, gone[1].pa), (va!(0x40_3000), pa!(0x5000_0000)));
    /// assert!(pt.query(va!(0x40_3000)).is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`unmap_region`](Self::unmap_region); on an error nothing is cleared and
    /// `removed` is not called.
    pub fn unmap_region_with(
        &mut self,
        va: A::Addr,
        len: usize,
        mut removed: impl FnMut(Cleared<A::Addr>),
    ) -> Result<Flush<A>, PagingError> {
        let va = arch::to_va::<A>(va);
        self.unmap_range(
            va,
            len,
            walk::Report(|cleared| {
                removed(match cleared {
                    walk::ClearedRaw::Leaf(leaf) => Cleared::Leaf(Mapping::from_raw::<A>(leaf)),
                    walk::ClearedRaw::Marker(va, payload) => Cleared::Marker {
                        va: arch::from_va::<A>(A::unfold(va)),
                        payload,
                    },
                })
            }),
        )
    }

    /// `unmap_region`, each cleared leaf handed to `removed`.
    fn unmap_range<R: walk::Reporter>(
        &mut self,
        va: VirtAddr,
        len: usize,
        removed: R,
    ) -> Result<Flush<A>, PagingError> {
        let (s, e) = self.check_range(va, len, Self::PAGE)?;
        let root = self.root_ref();
        // SAFETY: the root is live and ours; the range is inside the space and not borrowed.
        let need = unsafe {
            walk::edit_check::<A, A::Root, H>(
                &self.handler,
                root,
                s,
                e,
                self.state.liveness,
                None,
                true,
            )?
        };
        let (bytes, ctx, h) = (
            TableRef::<A, NonRoot<A>>::BYTES,
            self.ctx(),
            &mut self.handler,
        );
        let mut stash =
            Stash::reserve::<A, H>(h, need.tables, bytes)?.for_change::<A, H>(h, ctx, 0)?;
        // SAFETY: as above; the stash holds what the check pass counted.
        unsafe { walk::unmap_apply::<A, A::Root, H, R>(h, &mut stash, root, s, e, removed) };
        debug_assert!(stash.is_empty());
        Ok(Flush::range(s, e).with_retired(stash.finish(h)))
    }

    /// Gives every leaf in `[va, va + len)` new flags, splitting leaves that the range covers
    /// only in part. Addresses and access states stay, as for [`protect`](Self::protect).
    ///
    /// # Errors
    ///
    /// * [`PagingError::EmptyRange`], [`PagingError::UnalignedVa`],
    ///   [`PagingError::UnalignedLen`], [`PagingError::RangeWraps`],
    ///   [`PagingError::NotCanonical`] for a bad range, as for
    ///   [`map_region`](Self::map_region).
    /// * [`PagingError::FlagsNotExpressible`] if the mode cannot express `flags`.
    /// * [`PagingError::Borrowed`] if the range meets a borrowed range.
    /// * [`PagingError::NotMapped`] if any page of the range is not mapped (the address is the
    ///   first such page).
    /// * [`PagingError::OutOfFrames`] if splitting the leaves at the edges needs tables that
    ///   cannot be allocated.
    pub fn protect_region(
        &mut self,
        va: A::Addr,
        len: usize,
        flags: MappingFlags,
    ) -> Result<Flush<A>, PagingError> {
        let va = arch::to_va::<A>(va);
        let (s, e) = self.check_range(va, len, Self::PAGE)?;
        A::check_flags(flags)?;
        self.note_flags(flags);
        self.modify_leaves(s, e, Modify::Protect(flags), false, ())?;
        Ok(Flush::range(s, e))
    }

    /// Points every leaf in `[va, va + len)` at `[pa, pa + len)` and gives it `flags`, in
    /// place: a firmware remapping part of its image, a kernel moving a range of its linear
    /// map. The range must be mapped (as for [`protect_region`](Self::protect_region)); leaves
    /// the range covers in part are split, and every leaf keeps its size, so `pa` must suit the
    /// leaves (a whole 2 MiB leaf needs a 2 MiB-aligned new address). Each leaf changes in one
    /// step; on a [`Live`](Liveness::Live) AArch64 table a change of output address or memory
    /// type is made as break-before-make (the leaf invalid and flushed before the new one is
    /// written), on [`LiveNoBreak`](Liveness::LiveNoBreak) it is refused. The other
    /// architectures take the new entry in one store. Access states carry over.
    ///
    /// ```
    /// use pagetable::{BufferFrames, HugePages, MappingFlags as F, PageTable, AArch64};
    /// use memory_addr::{pa, va};
    ///
    /// let mut memory = vec![0u64; 16 << 9];
    /// let frames = BufferFrames::new(&mut memory, pa!(0x10_0000)).unwrap();
    /// let mut pt = PageTable::<AArch64, _>::new(frames).unwrap();
    /// let rx = F::READ | F::EXECUTE;
    /// pt.map_region(va!(0x4000_0000), pa!(0x4000_0000), 0x40_0000, rx, HugePages::Allowed)
    ///     .unwrap()
    ///     .ignore();
    /// // Move 16 KiB in the middle of the first block to a fresh copy, read-write.
    /// pt.remap_region(va!(0x4010_0000), pa!(0x8000_0000), 0x4000, F::READ | F::WRITE)
    ///     .unwrap()
    ///     .ignore();
    /// assert_eq!(pt.query(va!(0x4010_2000)).unwrap().pa, pa!(0x8000_2000));
    /// assert_eq!(pt.query(va!(0x4010_4000)).unwrap().pa, pa!(0x4010_4000));
    /// ```
    ///
    /// # Errors
    ///
    /// * A bad range, as for [`map_region`](Self::map_region): [`PagingError::EmptyRange`],
    ///   [`PagingError::UnalignedVa`], [`PagingError::UnalignedLen`],
    ///   [`PagingError::RangeWraps`], [`PagingError::NotCanonical`], [`PagingError::Borrowed`].
    /// * [`PagingError::UnalignedPa`] if `pa` is not granule-aligned, or not aligned to a leaf
    ///   that keeps its size; [`PagingError::PaTooWide`] if `pa + len - 1` does not fit.
    /// * [`PagingError::FlagsNotExpressible`] if the mode cannot express `flags`.
    /// * [`PagingError::NotMapped`] if any page of the range is not mapped.
    /// * [`PagingError::NeedsBreak`] on a [`LiveNoBreak`](Liveness::LiveNoBreak) table, if a
    ///   change needs break-before-make.
    /// * [`PagingError::OutOfFrames`] if the splits at the edges need tables that cannot be
    ///   allocated.
    pub fn remap_region(
        &mut self,
        va: A::Addr,
        pa: PhysAddr,
        len: usize,
        flags: MappingFlags,
    ) -> Result<Flush<A>, PagingError> {
        let va = arch::to_va::<A>(va);
        let (s, e) = self.check_range(va, len, Self::PAGE)?;
        let delta = self.check_pa(pa, len, Self::PAGE)?.wrapping_sub(s);
        A::check_flags(flags)?;
        self.note_flags(flags);
        self.modify_leaves(s, e, Modify::Replace(delta, flags), false, ())?;
        Ok(Flush::range(s, e))
    }

    /// [`protect_region`](Self::protect_region) over a partly mapped range, a kernel's
    /// `mprotect`: holes (and markers) are skipped, the leaves at the edges split, and `changed`
    /// is called for every leaf given the new flags, in address order, as the atomic step that
    /// changed it made it: its new flags, and the access state the step carried over, so a page
    /// another CPU dirtied up to that instant is reported dirty (and, made read-only, gets no
    /// later mark).
    ///
    /// ```
    /// use pagetable::{BufferFrames, MappingFlags as F, PageSize, PageTable, Sv48};
    /// use memory_addr::{pa, va};
    ///
    /// let mut memory = vec![0u64; 8 << 9];
    /// let frames = BufferFrames::new(&mut memory, pa!(0x8000_0000)).unwrap();
    /// let mut pt = PageTable::<Sv48, _>::new(frames).unwrap();
    /// let rw = F::READ | F::WRITE;
    /// pt.map(va!(0x1000), pa!(0x9000_0000), PageSize::SIZE_4K, rw).unwrap().ignore();
    /// pt.map(va!(0x5000), pa!(0x9000_8000), PageSize::SIZE_4K, rw).unwrap().ignore();
    /// let mut dirty = vec![];
    /// let flush = pt
    ///     .protect_region_with(va!(0), 0x8000, F::READ, |m| {
    ///         if m.state.dirty {
    ///             dirty.push(m.va); // write-protected for writeback: clean once written back
    ///         }
    ///     })
    ///     .unwrap();
    /// flush.ignore(); // a live table would flush here
    /// assert_eq!(dirty, [va!(0x1000), va!(0x5000)]);
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`protect_region`](Self::protect_region), but never [`PagingError::NotMapped`];
    /// on an error nothing changed and `changed` was not called.
    pub fn protect_region_with(
        &mut self,
        va: A::Addr,
        len: usize,
        flags: MappingFlags,
        mut changed: impl FnMut(Mapping<A::Addr>),
    ) -> Result<Flush<A>, PagingError> {
        let va = arch::to_va::<A>(va);
        let (s, e) = self.check_range(va, len, Self::PAGE)?;
        A::check_flags(flags)?;
        self.note_flags(flags);
        let report = walk::Report(|c| {
            if let walk::ClearedRaw::Leaf(leaf) = c {
                changed(Mapping::from_raw::<A>(leaf));
            }
        });
        self.modify_leaves(s, e, Modify::Protect(flags), true, report)?;
        Ok(Flush::range(s, e))
    }

    fn modify_leaves<R: walk::Reporter>(
        &mut self,
        s: u64,
        e: u64,
        op: Modify,
        holes: bool,
        report: R,
    ) -> Result<(), PagingError> {
        let root = self.root_ref();
        // SAFETY: the root is live and ours; the range is inside the space and not borrowed.
        let need = unsafe {
            walk::edit_check::<A, A::Root, H>(
                &self.handler,
                root,
                s,
                e,
                self.state.liveness,
                Some(op),
                holes,
            )?
        };
        let (bytes, ctx, handler) = (
            TableRef::<A, NonRoot<A>>::BYTES,
            self.ctx(),
            &mut self.handler,
        );
        let mut stash = Stash::reserve::<A, H>(handler, need.tables, bytes)?
            .for_change::<A, H>(handler, ctx, 0)?;
        // SAFETY: as above; the stash holds what the check pass counted, and the MMU can only
        // make leaves more settled between the two passes, so `hw_live` still holds.
        unsafe {
            walk::modify_apply::<A, A::Root, H, R>(
                handler,
                &mut stash,
                root,
                (s, e),
                op,
                need.hw_live,
                report,
            )
        };
        debug_assert!(stash.is_empty());
        stash.release(&mut self.handler);
        Ok(())
    }

    /// Calls `f` for every leaf that overlaps `[va, va + len)`, in address order, with
    /// sign-extended addresses where the mode sign-extends.
    ///
    /// # Errors
    ///
    /// A bad range, as for [`unmap_region`](Self::unmap_region): [`PagingError::EmptyRange`],
    /// [`PagingError::UnalignedVa`], [`PagingError::UnalignedLen`],
    /// [`PagingError::RangeWraps`], [`PagingError::NotCanonical`].
    pub fn for_each_mapping_in(
        &self,
        va: A::Addr,
        len: usize,
        mut f: impl FnMut(Mapping<A::Addr>),
    ) -> Result<(), PagingError> {
        let va = arch::to_va::<A>(va);
        let (s, e) = self.check_range_shape(va, len, Self::PAGE)?;
        // SAFETY: the root is live; reading borrowed ranges is allowed.
        unsafe {
            walk::for_each::<A, A::Root, H>(&self.handler, self.root_ref(), s, e, &mut |leaf| {
                f(Mapping::from_raw::<A>(leaf));
            });
        }
        Ok(())
    }

    /// Calls `f` for every leaf of the table, in address order (for a sign-extended mode, the
    /// lower half first).
    pub fn for_each_mapping(&self, mut f: impl FnMut(Mapping<A::Addr>)) {
        // SAFETY: the root is live; reading borrowed ranges is allowed.
        unsafe {
            walk::for_each::<A, A::Root, H>(
                &self.handler,
                self.root_ref(),
                0,
                1 << A::VA_BITS,
                &mut |leaf| {
                    f(Mapping::from_raw::<A>(leaf));
                },
            );
        }
    }

    /// Links the root entries of `other` that cover `[va, va + len)` into this table, so both
    /// translate that range through the same tables (a kernel half shared by every address
    /// space). The range must be whole root entries and empty here.
    ///
    /// The range becomes *borrowed*: this table reads through it but never edits or frees it
    /// (calls that would return [`PagingError::Borrowed`]); edits made through `other` below
    /// the root are seen by both. A table borrows at most one contiguous range of root
    /// entries.
    ///
    /// # Errors
    ///
    /// * A bad range, as for [`unmap_region`](Self::unmap_region).
    /// * [`PagingError::UnalignedVa`] / [`PagingError::UnalignedLen`] unless the range is
    ///   whole root entries.
    /// * [`PagingError::NotShared`] if `other` does not share the whole range
    ///   ([`share`](Self::share)).
    /// * [`PagingError::AlreadyMapped`] if a root entry in the range is not empty here.
    /// * [`PagingError::Borrowed`] if this table already borrows a range that this one would
    ///   not extend to one contiguous range.
    ///
    /// # Safety
    ///
    /// * `other` outlives the borrow: it is not dropped (which frees the shared tables) until
    ///   this table has called [`release_borrowed`](Self::release_borrowed) or been dropped.
    ///   While it lives, `other` itself never unlinks the tables below a shared root entry.
    /// * This table's handler reaches `other`'s tables through
    ///   [`PagingHandler::phys_to_virt`] for as long.
    /// * Reads of the borrowed range through this table (`query`, `for_each_mapping`, a
    ///   `LastTableCursor`) do not run at the same time as changes made through `other` (the kernel's
    ///   lock on its half serialises them): the tables deeper down are `other`'s to free.
    pub unsafe fn borrow_shared(
        &mut self,
        other: &Self,
        va: A::Addr,
        len: usize,
    ) -> Result<Flush<A>, PagingError> {
        // The fast paths skip the borrowed check for the table they remember.
        self.last.forget();
        let va = arch::to_va::<A>(va);
        let root_size = TableRef::<A, A::Root>::SIZE;
        let (s, e) = self.check_range_shape(va, len, root_size)?;
        let (lo, hi) = (
            TableRef::<A, A::Root>::index(s),
            TableRef::<A, A::Root>::index(e - 1) + 1,
        );
        let Some(borrowed) = self.state.borrowed.joined(lo, hi) else {
            return Err(PagingError::Borrowed(va));
        };
        let (ours, theirs) = (self.root_ref(), other.root_ref());
        for i in lo..hi {
            // SAFETY: in bounds; our root is live.
            if unsafe { ours.load(i) } != 0 {
                return Err(PagingError::AlreadyMapped(A::unfold(
                    s + (i - lo) as u64 * root_size,
                )));
            }
        }
        if !other.state.shared.covers(lo, hi) {
            return Err(PagingError::NotShared(va));
        }
        for i in lo..hi {
            // SAFETY: in bounds; both roots are live; the caller keeps `other`'s tables alive.
            unsafe { ours.store(i, theirs.load(i)) };
        }
        self.state.borrowed = borrowed;
        Ok(Flush::range(s, e))
    }

    /// Invalidates what `token` covers ([`Flush::flush`]) and then frees the tables the change
    /// retired, through this table's handler: the end of every change to a live table.
    ///
    /// Retired tables of other page tables (in a token merged from several) are not freed here:
    /// for those, call [`Flush::flush`] and give the [`Retired`] to each table's
    /// [`free_retired`](Self::free_retired).
    ///
    /// The invalidation is the one the table's [`tlb_scope`](Self::tlb_scope) calls for:
    /// untagged by default, or tagged with the identifier given to
    /// [`set_tlb_id`](Self::set_tlb_id).
    pub fn flush(&mut self, token: Flush<A>) {
        let mut retired = token.flush_in(self.tlb_scope());
        self.free_retired(&mut retired);
    }

    /// Gives the tables in `retired` that this table retired back to its handler (and the
    /// frames that recorded them), leaving those of other tables in `retired`.
    pub fn free_retired(&mut self, retired: &mut Retired<A>) {
        let h = &mut self.handler;
        // SAFETY: every record of this owner is a subtree this table unlinked and owns alone
        // (the TLB invalidation that covers it is done: `Retired` comes from `Flush::flush` or
        // `into_retired`); each retire frame came from this handler with the size of a table
        // below the root.
        unsafe {
            retired.chain.drain_owner(self.root, |frame, records| {
                for &record in records {
                    let (pa, tag) = (record & !0xfff, (record & 0xfff) as u8);
                    let depth = tag & !retired::EMPTY;
                    if tag & retired::EMPTY != 0 {
                        let (pa, bytes) =
                            (PhysAddr::from(pa as usize), arch::table_bytes::<A>(depth));
                        // A table someone else built is left to its owner.
                        if h.owns_table(pa, bytes) {
                            h.free_table(pa, bytes);
                        }
                    } else {
                        walk::free_at_depth::<A, NonRoot<A>, H>(h, pa, depth);
                    }
                }
                h.free_table(PhysAddr::from(frame as usize), retired::frame_bytes::<A>());
            });
        }
    }

    /// Marks the root entries covering `[va, va + len)` as shared, so that other tables may
    /// borrow them ([`borrow_shared`](Self::borrow_shared)): each gets a table below it now if it has
    /// none, and from now on the tables directly below shared root entries are never unlinked
    /// or freed while this table lives (emptied, they stay linked), nor replaced by a root-level
    /// leaf. Every borrower then sees, through the same tables, every change made here below
    /// the root. This is the kernel half that every process table links.
    ///
    /// ```
    /// use pagetable::{BufferFrames, MappingFlags as F, PageSize, PageTable, Sv48};
    /// use memory_addr::{pa, va};
    ///
    /// let mut memory = vec![0u64; 16 << 9];
    /// let frames = BufferFrames::new(&mut memory, pa!(0x8000_0000)).unwrap();
    /// let mut kernel = PageTable::<Sv48, _>::new(frames).unwrap();
    /// let half = va!(0xffff_8000_0000_0000);
    /// kernel.share(half, 1 << 39).unwrap().ignore(); // one root entry, its table made now
    /// kernel.map(half, pa!(0x1000), PageSize::SIZE_4K, F::READ | F::GLOBAL).unwrap().ignore();
    /// kernel.unmap(half).unwrap().1.ignore();
    /// // The emptied tables below it went, but not the one a borrower links.
    /// assert_eq!(kernel.table_frames(), 2);
    /// ```
    ///
    /// # Errors
    ///
    /// * A bad range, as for [`unmap_region`](Self::unmap_region).
    /// * [`PagingError::UnalignedVa`] / [`PagingError::UnalignedLen`] unless the range is
    ///   whole root entries.
    /// * [`PagingError::Borrowed`] if the range meets a range this table borrows.
    /// * [`PagingError::AlreadyMapped`] if a root entry in the range is a leaf.
    /// * [`PagingError::Shared`] if this table already shares a range that this one would not
    ///   extend to one contiguous range.
    /// * [`PagingError::OutOfFrames`] or [`PagingError::BadFrame`] if the tables for the empty
    ///   root entries cannot be had; nothing changes.
    pub fn share(&mut self, va: A::Addr, len: usize) -> Result<Flush<A>, PagingError> {
        let va = arch::to_va::<A>(va);
        let root_size = TableRef::<A, A::Root>::SIZE;
        let (s, e) = self.check_range_shape(va, len, root_size)?;
        self.check_not_borrowed(s, e)?;
        let (lo, hi) = (
            TableRef::<A, A::Root>::index(s),
            TableRef::<A, A::Root>::index(e - 1) + 1,
        );
        let shared = self
            .state
            .shared
            .joined(lo, hi)
            .ok_or(PagingError::Shared(va))?;
        let root = self.root_ref();
        let mut empty = 0;
        for i in lo..hi {
            // SAFETY: in bounds; our root is live.
            let pte = unsafe { root.load(i) };
            match A::entry_kind::<A::Root>(pte) {
                EntryKind::Empty => empty += 1,
                EntryKind::Table => {}
                EntryKind::Leaf | EntryKind::Marker => {
                    return Err(PagingError::AlreadyMapped(A::unfold(
                        s + (i - lo) as u64 * root_size,
                    )));
                }
            }
        }
        let bytes = TableRef::<A, NonRoot<A>>::BYTES;
        let mut stash = Stash::reserve::<A, H>(&mut self.handler, empty, bytes)?;
        for i in lo..hi {
            // SAFETY: in bounds; our root is live.
            if unsafe { root.load(i) } == 0 {
                let frame = stash.take_zeroed::<A, NonRoot<A>, H>(&self.handler);
                // SAFETY: a fresh, zeroed table linked into our root.
                unsafe { root.store_entry(i, Descriptor::table(frame)) };
            }
        }
        stash.release(&mut self.handler);
        self.state.shared = shared;
        Ok(Flush::range(s, e))
    }

    /// Unlinks the borrowed range (without freeing anything) and returns its flush.
    pub fn release_borrowed(&mut self) -> Flush<A> {
        self.last.forget();
        let (lo, hi) = self.borrowed_range();
        let root = self.root_ref();
        for i in lo..hi {
            // SAFETY: in bounds; our root is live; the borrowed tables are not ours to free.
            unsafe { root.store(i, 0) };
        }
        self.set_borrowed(0, 0);
        if lo == hi {
            Flush::none()
        } else {
            let size = TableRef::<A, A::Root>::SIZE;
            Flush::range(lo as u64 * size, hi as u64 * size)
        }
    }

    fn borrowed_range(&self) -> (usize, usize) {
        (
            self.state.borrowed.lo as usize,
            self.state.borrowed.hi as usize,
        )
    }

    fn set_borrowed(&mut self, lo: usize, hi: usize) {
        self.state.borrowed = RootRange::new(lo, hi);
    }

    /// Whether an MMU may be walking this table, which decides how changes that need
    /// break-before-make are made ([`Liveness`]).
    #[must_use]
    pub fn liveness(&self) -> Liveness {
        self.state.liveness
    }

    /// Tells the table whether an MMU may be walking it: set [`Liveness::Live`] (or
    /// [`LiveNoBreak`](Liveness::LiveNoBreak)) before loading the root into a translation
    /// base register, [`Offline`](Liveness::Offline) once no CPU uses it.
    pub fn set_liveness(&mut self, liveness: Liveness) {
        self.state.liveness = liveness;
    }

    fn is_borrowed(&self, root_index: usize) -> bool {
        self.state.borrowed.contains(root_index)
    }

    pub(crate) fn check_not_borrowed(&self, s: u64, e: u64) -> Result<(), PagingError> {
        let (first, last) = (
            TableRef::<A, A::Root>::index(s),
            TableRef::<A, A::Root>::index(e - 1),
        );
        if self.state.borrowed.meets(first, last + 1) {
            let lo = self.state.borrowed.lo as usize;
            let at = (first.max(lo) as u64 * TableRef::<A, A::Root>::SIZE).max(s);
            return Err(PagingError::Borrowed(A::unfold(at)));
        }
        Ok(())
    }

    /// The leaf that starts at `va`.
    fn leaf_at(&self, va: VirtAddr) -> Result<RawLeaf, PagingError> {
        let folded = A::fold(va).ok_or(PagingError::NotCanonical(va))?;
        // SAFETY: the root is live and ours.
        let leaf = unsafe { walk::query::<A, A::Root, H>(&self.handler, self.root_ref(), folded) }
            .ok_or(PagingError::NotMapped(va))?;
        if leaf.va != folded {
            return Err(PagingError::InsideLeaf {
                leaf: A::unfold(leaf.va),
                size: leaf.size,
            });
        }
        Ok(leaf)
    }

    /// Checks a range that will be changed: its shape, and that it borrows nothing.
    pub(crate) fn check_range(
        &self,
        va: VirtAddr,
        len: usize,
        align: u64,
    ) -> Result<(u64, u64), PagingError> {
        let (s, e) = self.check_range_shape(va, len, align)?;
        self.check_not_borrowed(s, e)?;
        Ok((s, e))
    }

    /// `[va, va + len)` folded, if it is a non-empty, `align`-aligned range inside the space.
    fn check_range_shape(
        &self,
        va: VirtAddr,
        len: usize,
        align: u64,
    ) -> Result<(u64, u64), PagingError> {
        let raw = va.as_usize() as u64;
        if len == 0 {
            return Err(PagingError::EmptyRange);
        }
        if raw % align != 0 {
            return Err(PagingError::UnalignedVa(va));
        }
        if len as u64 % align != 0 {
            return Err(PagingError::UnalignedLen(len));
        }
        let last = raw
            .checked_add(len as u64 - 1)
            .ok_or(PagingError::RangeWraps)?;
        let s = A::fold(va).ok_or(PagingError::NotCanonical(va))?;
        let l = A::fold(VirtAddr::from(last as usize))
            .ok_or_else(|| PagingError::NotCanonical(first_outside::<A>(raw)))?;
        if A::VA_SPACE == VaSpace::Canonical && (raw ^ last) >> 63 != 0 {
            // From the lower half into the upper one: the hole lies between.
            return Err(PagingError::NotCanonical(first_outside::<A>(raw)));
        }
        Ok((s, l + 1))
    }

    /// `pa` as a raw address, if `[pa, pa + len)` is `align`-aligned and fits the width.
    pub(crate) fn check_pa(
        &self,
        pa: PhysAddr,
        len: usize,
        align: u64,
    ) -> Result<u64, PagingError> {
        let raw = pa.as_usize() as u64;
        if raw % align != 0 {
            return Err(PagingError::UnalignedPa(pa));
        }
        let last = raw
            .checked_add(len as u64 - 1)
            .ok_or(PagingError::RangeWraps)?;
        if last & !arch::pa_mask::<A>() != 0 {
            let first_wide = raw.max(arch::pa_mask::<A>() + 1);
            return Err(PagingError::PaTooWide(PhysAddr::from(first_wide as usize)));
        }
        Ok(raw)
    }
}

/// A level below the root: every non-root table has its frame size.
type NonRoot<A> = <<A as Arch>::Root as HasNext>::Next;

/// The first address after `va` that the table does not translate (for error reports).
fn first_outside<A: Arch>(va: u64) -> VirtAddr {
    let half = 1u64 << (A::VA_BITS - 1);
    let first = match A::VA_SPACE {
        VaSpace::Lower => 1 << A::VA_BITS,
        VaSpace::Upper => 0,
        VaSpace::Canonical if va < half => half,
        VaSpace::Canonical => 0,
    };
    VirtAddr::from(first as usize)
}

/// The depth whose leaves have `size`, if the mode has such leaves.
fn leaf_depth<A: Arch>(size: PageSize) -> Option<u8> {
    (1..=arch::max_leaf_depth::<A>()).find(|&d| arch::level_shift::<A>(d) == size.shift())
}

/// Tables below the root reached through root entry `pte`.
unsafe fn count_below_root<A: Arch, H: PagingHandler>(h: &H, pte: u64) -> usize {
    // SAFETY: forwarded: `pte` is a table entry of a live root.
    unsafe { walk::count_tables::<A, NonRoot<A>, H>(h, TableRef::from_pa(h, A::table_addr(pte))) }
}

impl<A: Arch, H: PagingHandler> Drop for PageTable<A, H> {
    fn drop(&mut self) {
        let _unlinked = self.release_borrowed();
        // SAFETY: we own the whole tree now that borrowed entries are unlinked; nothing uses it
        // after drop.
        unsafe { walk::free_subtree::<A, A::Root, H>(&mut self.handler, self.root) };
    }
}

impl<A: Arch, H: PagingHandler> fmt::Debug for PageTable<A, H> {
    /// The mappings as coalesced runs: leaves of one size with the same flags whose virtual and
    /// physical addresses both continue the run print as one line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "PageTable<{}> root {:#x}, {} table frames",
            A::NAME,
            self.root,
            self.table_frames()
        )?;
        let mut run: Option<(Mapping, usize)> = None;
        let mut result = Ok(());
        let print = |f: &mut fmt::Formatter<'_>, (m, n): (Mapping, usize)| {
            let end =
                m.va.as_usize()
                    .wrapping_add(n * m.size.bytes())
                    .wrapping_sub(1);
            let (va, pa) = (m.va.as_usize(), m.pa.as_usize());
            writeln!(
                f,
                "  {va:#018x}..={end:#018x} -> {pa:#014x} {:?} {n} x {}",
                m.flags, m.size
            )
        };
        self.for_each_mapping(|m| {
            if let Some((first, n)) = &mut run {
                let offset = *n * first.size.bytes();
                if first.size == m.size
                    && first.flags == m.flags
                    && first.va.as_usize().wrapping_add(offset) == m.va.into()
                    && first.pa.as_usize() + offset == m.pa.as_usize()
                {
                    *n += 1;
                    return;
                }
                if result.is_ok() {
                    result = print(f, (*first, *n));
                }
            }
            let m = Mapping {
                va: arch::to_va::<A>(m.va),
                pa: m.pa,
                size: m.size,
                flags: m.flags,
                state: m.state,
            };
            run = Some((m, 1));
        });
        result?;
        match run {
            Some(last) => print(f, last),
            None => writeln!(f, "  (nothing mapped)"),
        }
    }
}
