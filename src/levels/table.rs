//! Typed views of tables and entries: [`TableFrame`], [`Descriptor`], [`Table`], and the raw
//! handle the walk uses.
//!
//! Entries are read and written only through `AtomicU64`: the MMU of another CPU may set
//! accessed and dirty bits in a live entry at any moment, behind the compiler's back, so a
//! `&mut u64` (or a plain load the compiler may split or repeat) would be a lie.

use core::fmt;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicU64, Ordering};

use memory_addr::PhysAddr;

use super::{AtMost, EntryKind, HasNext, Level};
use crate::arch::{self, Arch};
use crate::error::PagingError;
use crate::flags::{AccessState, MappingFlags};
use crate::handler::PagingHandler;
use crate::state::RootRange;

/// The physical address of a table at level `L` of a mode `A`.
pub struct TableFrame<A: Arch, L: Level> {
    pa: PhysAddr,
    _level: PhantomData<(A, L)>,
}

impl<A: Arch, L: Level> TableFrame<A, L> {
    /// Entries in such a table.
    pub const ENTRIES: usize = arch::entries::<A>(L::DEPTH);
    /// Bytes such a table occupies, and is aligned to.
    pub const BYTES: usize = arch::table_bytes::<A>(L::DEPTH);

    /// The frame at `pa`, if `pa` is aligned to [`BYTES`](Self::BYTES) and fits the mode's
    /// physical-address width.
    #[must_use]
    pub fn new(pa: PhysAddr) -> Option<Self> {
        let raw = pa.as_usize() as u64;
        (raw % Self::BYTES as u64 == 0 && raw & !arch::pa_mask::<A>() == 0).then_some(Self {
            pa,
            _level: PhantomData,
        })
    }

    /// The table's physical address.
    #[must_use]
    pub fn pa(self) -> PhysAddr {
        self.pa
    }

    /// The frame at `pa`, unchecked: a table the walk reached through a table entry, or one
    /// the handler gave and [`alloc_frame`](crate::levels::walk::alloc_frame) checked.
    #[inline(always)]
    pub(crate) fn from_raw(pa: u64) -> Self {
        Self {
            pa: PhysAddr::from(pa as usize),
            _level: PhantomData,
        }
    }

    /// The physical address as the walk keeps it.
    #[inline(always)]
    pub(crate) fn raw(self) -> u64 {
        self.pa.as_usize() as u64
    }
}

impl<A: Arch, L: Level> Clone for TableFrame<A, L> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<A: Arch, L: Level> Copy for TableFrame<A, L> {}
impl<A: Arch, L: Level> PartialEq for TableFrame<A, L> {
    fn eq(&self, other: &Self) -> bool {
        self.pa == other.pa
    }
}
impl<A: Arch, L: Level> Eq for TableFrame<A, L> {}

impl<A: Arch, L: Level> fmt::Debug for TableFrame<A, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TableFrame<{}, L{}>({:#x})", A::NAME, L::DEPTH, self.pa)
    }
}

/// One entry of a table at level `L` of mode `A`, as a value.
///
/// Its constructors enforce the tree's shape in the types: [`Descriptor::table`] exists only
/// on levels with a level below and takes a frame of exactly that level and mode, and
/// [`Descriptor::leaf`] exists only where the mode allows a leaf.
///
/// ```compile_fail,E0599
/// # use pagetable::*;
/// # let l1 = TableFrame::<X86_64, L1>::new(memory_addr::pa!(0x1000)).unwrap();
/// // A last-level entry cannot point to a table.
/// let _ = Descriptor::<X86_64, L1>::table(l1);
/// ```
/// ```compile_fail,E0308
/// # use pagetable::*;
/// # let l3 = TableFrame::<X86_64, L3>::new(memory_addr::pa!(0x1000)).unwrap();
/// // A table entry cannot point up a level (or skip one): an L2 entry leads to an L1 table.
/// let _ = Descriptor::<X86_64, L2>::table(l3);
/// ```
/// ```compile_fail,E0277
/// # use pagetable::*;
/// // x86_64 has no 512 GiB pages: no leaf at L4.
/// let _ = Descriptor::<X86_64, L4>::leaf(memory_addr::pa!(0), MappingFlags::READ);
/// ```
/// ```compile_fail,E0308
/// # use pagetable::*;
/// # let l1 = TableFrame::<Sv48, L1>::new(memory_addr::pa!(0x1000)).unwrap();
/// // A RISC-V table cannot hang below an x86 entry.
/// let _ = Descriptor::<X86_64, L2>::table(l1);
/// ```
/// The same calls with the right types compile:
/// ```
/// # use pagetable::*;
/// let l1 = TableFrame::<X86_64, L1>::new(memory_addr::pa!(0x1000)).unwrap();
/// let entry = Descriptor::<X86_64, L2>::table(l1);
/// assert_eq!(entry.next_table().unwrap().pa(), l1.pa());
/// let leaf = Descriptor::<Sv48, L4>::leaf(memory_addr::pa!(0), MappingFlags::READ).unwrap();
/// assert_eq!(leaf.kind(), EntryKind::Leaf);
/// ```
pub struct Descriptor<A: Arch, L: Level> {
    bits: u64,
    _level: PhantomData<(A, L)>,
}

impl<A: Arch, L: Level> Descriptor<A, L> {
    /// The empty entry (all zero on every architecture).
    pub const EMPTY: Self = Self::from_bits(0);

    /// An entry with these raw bits.
    #[must_use]
    pub const fn from_bits(bits: u64) -> Self {
        Self {
            bits,
            _level: PhantomData,
        }
    }

    /// The raw bits.
    #[must_use]
    pub const fn bits(self) -> u64 {
        self.bits
    }

    /// The entry as the arch's bitfield.
    #[must_use]
    pub fn pte(self) -> A::Pte {
        A::Pte::from(self.bits)
    }

    /// What the entry holds.
    #[must_use]
    pub fn kind(self) -> EntryKind {
        A::entry_kind::<L>(self.bits)
    }

    /// A leaf mapping `pa` with `flags`.
    ///
    /// # Errors
    ///
    /// * [`PagingError::UnalignedPa`] if `pa` is not aligned to the leaf size of level `L`.
    /// * [`PagingError::PaTooWide`] if `pa` does not fit the mode's physical-address width.
    /// * [`PagingError::FlagsNotExpressible`] if the mode cannot express `flags`.
    pub fn leaf(pa: PhysAddr, flags: MappingFlags) -> Result<Self, PagingError>
    where
        L: AtMost<A::MaxLeaf>,
    {
        let raw = pa.as_usize() as u64;
        if raw & ((1 << arch::level_shift::<A>(L::DEPTH)) - 1) != 0 {
            return Err(PagingError::UnalignedPa(pa));
        }
        if raw & !arch::pa_mask::<A>() != 0 {
            return Err(PagingError::PaTooWide(pa));
        }
        A::check_flags(flags)?;
        Ok(Self::from_bits(
            A::leaf_template::<L>(flags) | A::leaf_addr_bits::<L>(raw),
        ))
    }

    /// For a leaf: the address it maps, its flags, and its access state.
    #[must_use]
    pub fn leaf_info(self) -> Option<(PhysAddr, MappingFlags, AccessState)> {
        (self.kind() == EntryKind::Leaf).then(|| {
            (
                PhysAddr::from(A::leaf_addr::<L>(self.bits) as usize),
                A::leaf_flags::<L>(self.bits),
                A::leaf_state::<L>(self.bits),
            )
        })
    }
}

impl<A: Arch, L: HasNext> Descriptor<A, L> {
    /// An entry pointing to `next`, a table one level down of the same mode.
    #[must_use]
    pub fn table(next: TableFrame<A, L::Next>) -> Self {
        Self::from_bits(A::table_entry(next.pa.as_usize() as u64))
    }

    /// For a table entry: the table it points to.
    #[must_use]
    pub fn next_table(self) -> Option<TableFrame<A, L::Next>> {
        (self.kind() == EntryKind::Table).then(|| TableFrame {
            pa: PhysAddr::from(A::table_addr(self.bits) as usize),
            _level: PhantomData,
        })
    }
}

impl<A: Arch, L: Level> Clone for Descriptor<A, L> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<A: Arch, L: Level> Copy for Descriptor<A, L> {}
impl<A: Arch, L: Level> PartialEq for Descriptor<A, L> {
    fn eq(&self, other: &Self) -> bool {
        self.bits == other.bits
    }
}
impl<A: Arch, L: Level> Eq for Descriptor<A, L> {}

impl<A: Arch, L: Level> fmt::Debug for Descriptor<A, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind() {
            EntryKind::Empty => write!(f, "Empty({:#x})", self.bits),
            EntryKind::Table => write!(f, "Table({:#x})", A::table_addr(self.bits)),
            EntryKind::Leaf => {
                let (pa, flags, state) = self.leaf_info().unwrap_or_default();
                write!(f, "Leaf({pa:#x}, {flags:?}, {state:?})")
            }
            EntryKind::Marker => write!(
                f,
                "Marker({:#x})",
                crate::arch::marker_payload::<A>(self.bits)
            ),
        }
    }
}

/// A read-only view of one table of a [`PageTable`](crate::PageTable), borrowed from it.
pub struct Table<'a, A: Arch, L: Level, H: PagingHandler> {
    raw: TableRef<A, L>,
    frame: TableFrame<A, L>,
    handler: &'a H,
    /// Entries whose tables this view does not lead into: a root's borrowed entries, whose
    /// tables belong to (and may be freed by) another page table.
    hidden: RootRange,
}

impl<'a, A: Arch, L: Level, H: PagingHandler> Table<'a, A, L, H> {
    /// Entries in the table.
    pub const ENTRIES: usize = arch::entries::<A>(L::DEPTH);

    /// # Safety
    ///
    /// `pa` is a live table of level `L` reached through `handler`, and stays so for `'a`.
    pub(crate) unsafe fn new(handler: &'a H, pa: u64) -> Self {
        // SAFETY: forwarded from the caller.
        let raw = unsafe { TableRef::from_pa(handler, pa) };
        Self {
            raw,
            frame: TableFrame {
                pa: PhysAddr::from(pa as usize),
                _level: PhantomData,
            },
            handler,
            hidden: RootRange::new(0, 0),
        }
    }

    /// The same view, not leading into the tables that entries `hidden` link.
    pub(crate) fn hiding(mut self, hidden: RootRange) -> Self {
        self.hidden = hidden;
        self
    }

    /// Where the table is.
    #[must_use]
    pub fn frame(&self) -> TableFrame<A, L> {
        self.frame
    }

    /// Entry `index`, or `None` past the end.
    #[must_use]
    pub fn get(&self, index: usize) -> Option<Descriptor<A, L>> {
        // SAFETY: the index is in bounds; the table is live for `'a` (see `new`).
        (index < Self::ENTRIES).then(|| Descriptor::from_bits(unsafe { self.raw.load(index) }))
    }

    /// Every entry, in order.
    pub fn entries(&self) -> impl Iterator<Item = Descriptor<A, L>> + '_ {
        (0..Self::ENTRIES).filter_map(|i| self.get(i))
    }
}

impl<'a, A: Arch, L: HasNext, H: PagingHandler> Table<'a, A, L, H> {
    /// The table that entry `index` points to, if it is a table entry, and not one of the
    /// root entries the page table borrows ([`PageTable::borrow_shared`](crate::PageTable::borrow_shared)):
    /// those tables are their owner's, which may free them while this view lives. Read them
    /// through the owner.
    #[must_use]
    pub fn next(&self, index: usize) -> Option<Table<'a, A, L::Next, H>> {
        if self.hidden.contains(index) {
            return None;
        }
        let next = self.get(index)?.next_table()?;
        // SAFETY: a table entry of a live table points to a live table one level down, owned
        // by the same page table, which `'a` borrows.
        Some(unsafe { Table::new(self.handler, next.pa.as_usize() as u64) })
    }
}

impl<A: Arch, L: Level, H: PagingHandler> fmt::Debug for Table<'_, A, L, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_map();
        for (i, entry) in self.entries().enumerate() {
            if entry.kind() != EntryKind::Empty {
                list.entry(&i, &entry);
            }
        }
        list.finish()
    }
}

/// The walk's handle on a table: where its entries are. Copy, unchecked; every use is unsafe
/// and states why the table is live.
pub struct TableRef<A, L> {
    base: *const AtomicU64,
    _level: PhantomData<(A, L)>,
}

impl<A, L> fmt::Debug for TableRef<A, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TableRef({:p})", self.base)
    }
}

impl<A: Arch, L: Level> Clone for TableRef<A, L> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<A: Arch, L: Level> Copy for TableRef<A, L> {}

impl<A: Arch, L: Level> TableRef<A, L> {
    /// Entries in the table.
    pub(crate) const ENTRIES: usize = arch::entries::<A>(L::DEPTH);
    /// Bytes the table occupies.
    pub(crate) const BYTES: usize = arch::table_bytes::<A>(L::DEPTH);
    /// log2 of what one entry maps.
    pub(crate) const SHIFT: u32 = arch::level_shift::<A>(L::DEPTH);
    /// What one entry maps.
    pub(crate) const SIZE: u64 = 1 << Self::SHIFT;

    /// # Safety
    ///
    /// `pa` is a table of this level allocated through (or adopted by) `handler`.
    pub(crate) unsafe fn from_pa<H: PagingHandler>(handler: &H, pa: u64) -> Self {
        let base = handler
            .phys_to_virt(PhysAddr::from(pa as usize))
            .as_ptr()
            .cast::<AtomicU64>();
        Self {
            base,
            _level: PhantomData,
        }
    }

    /// The same table, typed by level `M`, which is `L` under another name (a generic level
    /// known to be that one).
    ///
    /// # Safety
    ///
    /// `M::DEPTH == L::DEPTH`.
    #[inline(always)]
    pub(crate) unsafe fn retyped<M: Level>(self) -> TableRef<A, M> {
        debug_assert_eq!(M::DEPTH, L::DEPTH);
        TableRef {
            base: self.base,
            _level: PhantomData,
        }
    }

    /// The entries from `i` on, as a table whose entry 0 is entry `i` of this one: for a
    /// handle on one entry, read and written only at index 0.
    ///
    /// # Safety
    ///
    /// `i < ENTRIES`.
    #[inline(always)]
    pub(crate) unsafe fn offset(self, i: usize) -> Self {
        debug_assert!(i < Self::ENTRIES);
        Self {
            // SAFETY: in bounds of the table (caller).
            base: unsafe { self.base.add(i) },
            _level: PhantomData,
        }
    }

    /// A reference to no table, as a placeholder; never to be read or written through.
    pub(crate) fn dangling() -> Self {
        Self {
            base: core::ptr::NonNull::dangling().as_ptr(),
            _level: PhantomData,
        }
    }

    /// The index of the entry translating folded address `va`.
    #[inline(always)]
    pub(crate) fn index(va: u64) -> usize {
        (va >> Self::SHIFT) as usize & (Self::ENTRIES - 1)
    }

    /// # Safety
    ///
    /// The table is live and `i < ENTRIES`.
    #[inline(always)]
    pub(crate) unsafe fn load(self, i: usize) -> u64 {
        debug_assert!(i < Self::ENTRIES);
        // SAFETY: the caller keeps the table live and `i` in bounds; the handler's contract
        // makes the pointer valid and 8-aligned.
        unsafe { (*self.base.add(i)).load(Ordering::Relaxed) }
    }

    /// Writes entry `i`. Release ordering: a table entry published this way makes the writes
    /// that filled the table it points to visible first.
    ///
    /// # Safety
    ///
    /// The table is live, `i < ENTRIES`, and the caller owns the table's contents (`&mut` to
    /// the page table).
    #[inline(always)]
    pub(crate) unsafe fn store(self, i: usize, value: u64) {
        debug_assert!(i < Self::ENTRIES);
        // SAFETY: as for `load`.
        unsafe { (*self.base.add(i)).store(value, Ordering::Release) }
    }

    /// [`store`](Self::store) of a typed entry of this table's level.
    ///
    /// # Safety
    ///
    /// As for [`store`](Self::store).
    #[inline(always)]
    pub(crate) unsafe fn store_entry(self, i: usize, entry: Descriptor<A, L>) {
        // SAFETY: forwarded.
        unsafe { self.store(i, entry.bits()) }
    }

    /// Writes entry `i` and returns what it held, in one atomic step: the last value the MMU
    /// could have marked.
    ///
    /// # Safety
    ///
    /// As for [`store`](Self::store).
    #[inline(always)]
    pub(crate) unsafe fn swap(self, i: usize, value: u64) -> u64 {
        debug_assert!(i < Self::ENTRIES);
        // SAFETY: as for `load`.
        unsafe { (*self.base.add(i)).swap(value, Ordering::AcqRel) }
    }

    /// Writes `new` into entry `i` if it still holds `old`; else returns what it holds.
    ///
    /// # Safety
    ///
    /// As for [`store`](Self::store).
    #[inline(always)]
    pub(crate) unsafe fn compare_exchange(self, i: usize, old: u64, new: u64) -> Result<(), u64> {
        debug_assert!(i < Self::ENTRIES);
        // SAFETY: as for `load`.
        unsafe {
            (*self.base.add(i)).compare_exchange(old, new, Ordering::AcqRel, Ordering::Relaxed)
        }
        .map(|_| ())
    }

    /// Replaces the leaf `i`, which the caller just loaded as `old`, by `f(old)`, atomically if
    /// the hardware may write it meanwhile; returns the value it replaced.
    ///
    /// # Safety
    ///
    /// As for [`store`](Self::store).
    #[inline(always)]
    pub(crate) unsafe fn update_loaded(self, i: usize, old: u64, f: impl Fn(u64) -> u64) -> u64 {
        // SAFETY: as for `load`.
        let entry = unsafe { &*self.base.add(i) };
        if !A::hw_may_update::<L>(old) {
            // No hardware writer left: a plain store cannot lose an accessed or dirty bit, and
            // `old` is still the entry.
            entry.store(f(old), Ordering::Release);
            old
        } else {
            match entry.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |old| Some(f(old))) {
                Ok(replaced) | Err(replaced) => replaced,
            }
        }
    }

    /// How many entries are not zero.
    ///
    /// # Safety
    ///
    /// The table is live.
    pub(crate) unsafe fn live_entries(self) -> usize {
        // SAFETY: every index is in bounds.
        (0..Self::ENTRIES)
            .filter(|&i| unsafe { self.load(i) } != 0)
            .count()
    }

    /// Whether every entry is zero.
    ///
    /// # Safety
    ///
    /// The table is live.
    pub(crate) unsafe fn is_zero(self) -> bool {
        // SAFETY: every index is in bounds.
        (0..Self::ENTRIES).all(|i| unsafe { self.load(i) } == 0)
    }

    /// Calls `f` with entries `first..first + count` as plain words, which the compiler may
    /// vectorize; the slice lives for the call only. Two cases are sound: a table just
    /// allocated and not linked anywhere (no one else sees it), and a run of leaves the MMU will
    /// not write because every accessed or dirty bit it could set is set already (it never
    /// clears one). In the second the MMU may still read the entries meanwhile; every
    /// architecture here makes an aligned 8-byte store, and each 8-byte lane of a vector
    /// store, single-copy atomic, so a walk sees each entry either old or new.
    ///
    /// # Safety
    ///
    /// `first + count <= ENTRIES`, the caller owns the table (`&mut` to the page table), and it
    /// is one of the two cases above: nothing but `f` writes these entries during the call.
    #[inline(always)]
    pub(crate) unsafe fn with_words(self, first: usize, count: usize, f: impl FnOnce(&mut [u64])) {
        debug_assert!(first + count <= Self::ENTRIES);
        // SAFETY: in bounds (above); `AtomicU64` and `u64` share a layout; the slice does not
        // outlive `f`, and no one else writes the entries meanwhile.
        f(unsafe {
            core::slice::from_raw_parts_mut(self.base.cast_mut().cast::<u64>().add(first), count)
        })
    }

    /// `f` of entries `first..first + count` read as plain words, which the compiler may
    /// vectorize: for a table no MMU walks and no one else writes (an
    /// [`Offline`](crate::Liveness::Offline) table the caller holds mutably).
    ///
    /// # Safety
    ///
    /// `first + count <= ENTRIES`, and nothing writes these entries during the call.
    #[inline(always)]
    pub(crate) unsafe fn read_words<R>(
        self,
        first: usize,
        count: usize,
        f: impl FnOnce(&[u64]) -> R,
    ) -> R {
        debug_assert!(first + count <= Self::ENTRIES);
        // SAFETY: in bounds (above); `AtomicU64` and `u64` share a layout; the slice does not
        // outlive `f`, and no one writes the entries meanwhile, so plain reads race with
        // nothing.
        f(unsafe { core::slice::from_raw_parts(self.base.cast::<u64>().add(first), count) })
    }

    /// Zeroes a table that nothing else sees yet.
    ///
    /// # Safety
    ///
    /// The table was just allocated and is not linked anywhere.
    pub(crate) unsafe fn zero_fresh(self) {
        // SAFETY: the caller owns the whole unlinked table; `BYTES` is its size.
        unsafe { core::ptr::write_bytes(self.base.cast_mut().cast::<u8>(), 0, Self::BYTES) };
    }
}
