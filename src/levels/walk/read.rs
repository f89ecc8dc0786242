//! Reading and tearing down: `query`, the cursor's descent to a last-level table,
//! `for_each_mapping`, the search for a leaf below a table, counting and freeing subtrees.

use core::convert::Infallible;
use core::marker::PhantomData;

use super::map::grant_entry;
use super::{
    AtLevel, Below, CountSlot, Descend, Occupancy, PointStep, PointVisitor, Run, Span, Step,
    Visitor, child, decode, entry_base, into, span,
};
use crate::arch::Arch;
use crate::flags::{AccessState, MappingFlags, PageSize};
use crate::handler::PagingHandler;
use crate::levels::{Descriptor, Entry, EntryKind, HasNext, L1, Leaf, Level, TableRef};

/// A leaf as the walk reports it; `va` is folded.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RawLeaf {
    pub va: u64,
    pub pa: u64,
    pub size: PageSize,
    pub flags: MappingFlags,
    pub state: AccessState,
}

impl RawLeaf {
    /// The leaf entry `pte` at level `L` whose first address is folded `va`, with its own flags
    /// (no table entry on the way restricts them).
    #[inline(always)]
    pub(crate) fn of<A: Arch, L: Level>(va: u64, pte: u64) -> Self {
        RawLeaf {
            va,
            pa: A::leaf_addr::<L>(pte),
            size: PageSize::from_shift(TableRef::<A, L>::SHIFT).unwrap_or(PageSize::SIZE_4K),
            flags: A::leaf_flags::<L>(pte),
            state: A::leaf_state::<L>(pte),
        }
    }

    /// The decoded leaf `leaf` at level `L` whose first address is folded `va`, with the flags
    /// that the table entries folded into `path` let through ([`Arch::path_restrict`]).
    #[inline(always)]
    pub(crate) fn at<A: Arch, L: Level>(va: u64, leaf: Leaf, path: u64) -> Self {
        RawLeaf {
            va,
            pa: leaf.pa.as_usize() as u64,
            size: PageSize::from_shift(TableRef::<A, L>::SHIFT).unwrap_or(PageSize::SIZE_4K),
            flags: if A::TABLE_GATES {
                A::path_restrict(path, leaf.flags)
            } else {
                leaf.flags
            },
            state: leaf.state,
        }
    }

    /// The last-level entry `pte` as a leaf at folded `va`, if it is one.
    #[inline(always)]
    pub(crate) fn last<A: Arch>(va: u64, pte: u64, path: u64) -> Option<Self> {
        match Descriptor::<A, L1>::from_bits(pte).decode() {
            Entry::Leaf(leaf) => Some(Self::at::<A, L1>(va, leaf, path)),
            Entry::Empty | Entry::Marker(_) => None,
            Entry::Table(never) => match never {},
        }
    }
}

/// The leaf translating `va`, if any, with the flags the whole walk lets through; what goes
/// down is the table entries on the way, folded ([`Arch::path_step`]).
struct Query<'a, H> {
    h: &'a H,
    va: u64,
}

impl<A: Arch, H: PagingHandler> PointVisitor<A> for Query<'_, H> {
    type Out = Option<RawLeaf>;
    type Down = u64;
    const OCCUPANCY: Occupancy = Occupancy::Keeps;

    #[inline(always)]
    unsafe fn last(&mut self, t: TableRef<A, L1>, i: usize, path: u64) -> Option<RawLeaf> {
        // SAFETY: in bounds, live table.
        RawLeaf::last::<A>(entry_base::<A, L1>(self.va), unsafe { t.load(i) }, path)
    }

    #[inline(always)]
    unsafe fn entry<L: HasNext>(
        &mut self,
        t: TableRef<A, L>,
        i: usize,
        path: u64,
    ) -> PointStep<A, L::Next, u64, Option<RawLeaf>> {
        // SAFETY: in bounds, live table.
        let pte = unsafe { t.load(i) };
        match decode::<A, L>(pte) {
            Entry::Empty | Entry::Marker(_) => PointStep::Stop(None),
            Entry::Leaf(leaf) => {
                let va = entry_base::<A, L>(self.va);
                PointStep::Stop(Some(RawLeaf::at::<A, L>(va, leaf, path)))
            }
            Entry::Table(frame) => {
                // SAFETY: a decoded table entry's table is live.
                let next = unsafe { into::<A, L::Next, H, _>(self.h, frame, ()) };
                PointStep::Descend(next.table, A::path_step(path, pte))
            }
        }
    }
}

/// The leaf translating folded `va`, if any, with the flags the whole walk lets through.
///
/// # Safety
///
/// `t` is a live table of a tree reached through `h` whose span holds `va`.
pub(crate) unsafe fn query<A: Arch, L: Level, H: PagingHandler>(
    h: &H,
    t: TableRef<A, L>,
    va: u64,
) -> Option<RawLeaf> {
    // SAFETY: forwarded.
    unsafe { L::point::<A, _>(&mut Query { h, va }, t, va, A::PATH_START) }
}

/// The physical address `va` translates to and the size of the leaf that maps it, if any:
/// [`Query`] without the flags.
struct Translate<'a, H> {
    h: &'a H,
    va: u64,
}

impl<A: Arch, H: PagingHandler> PointVisitor<A> for Translate<'_, H> {
    type Out = Option<(u64, u32)>;
    type Down = ();
    const OCCUPANCY: Occupancy = Occupancy::Keeps;

    #[inline(always)]
    unsafe fn last(&mut self, t: TableRef<A, L1>, i: usize, (): ()) -> Self::Out {
        // SAFETY: in bounds, live table.
        let pte = unsafe { t.load(i) };
        Self::leaf::<A, L1>(self.va, pte)
    }

    #[inline(always)]
    unsafe fn entry<L: HasNext>(
        &mut self,
        t: TableRef<A, L>,
        i: usize,
        (): (),
    ) -> PointStep<A, L::Next, (), Self::Out> {
        // SAFETY: in bounds, live table.
        let pte = unsafe { t.load(i) };
        if A::entry_kind::<L>(pte) == EntryKind::Table {
            // SAFETY: a table entry of a live table leads to a live table one down.
            PointStep::Descend(unsafe { child::<A, L, H>(self.h, pte) }, ())
        } else {
            PointStep::Stop(Self::leaf::<A, L>(self.va, pte))
        }
    }
}

impl<H> Translate<'_, H> {
    /// What entry `pte` of a level-`L` table translates `va` to, if it is a leaf.
    #[inline(always)]
    fn leaf<A: Arch, L: Level>(va: u64, pte: u64) -> Option<(u64, u32)> {
        if A::entry_kind::<L>(pte) != EntryKind::Leaf {
            return None;
        }
        let shift = TableRef::<A, L>::SHIFT;
        let offset = va & ((1 << shift) - 1);
        Some((A::leaf_addr::<L>(pte) | offset, shift))
    }
}

/// What folded `va` translates to below `t` (its physical address, and the log2 of the leaf's
/// size), if a leaf maps it.
///
/// # Safety
///
/// `t` is a live table of a tree reached through `h` whose span holds `va`.
pub(crate) unsafe fn translate<A: Arch, L: Level, H: PagingHandler>(
    h: &H,
    t: TableRef<A, L>,
    va: u64,
) -> Option<(u64, u32)> {
    // SAFETY: forwarded.
    unsafe { L::point::<A, _>(&mut Translate { h, va }, t, va, ()) }
}

/// The raw entry of the leaf translating an address, if any.
struct LeafEntry<'a, H> {
    h: &'a H,
}

impl<A: Arch, H: PagingHandler> PointVisitor<A> for LeafEntry<'_, H> {
    type Out = Option<u64>;
    type Down = ();
    const OCCUPANCY: Occupancy = Occupancy::Keeps;

    #[inline(always)]
    unsafe fn last(&mut self, t: TableRef<A, L1>, i: usize, (): ()) -> Option<u64> {
        // SAFETY: in bounds, live table.
        let pte = unsafe { t.load(i) };
        (A::entry_kind::<L1>(pte) == EntryKind::Leaf).then_some(pte)
    }

    #[inline(always)]
    unsafe fn entry<L: HasNext>(
        &mut self,
        t: TableRef<A, L>,
        i: usize,
        (): (),
    ) -> PointStep<A, L::Next, (), Option<u64>> {
        // SAFETY: in bounds, live table.
        let pte = unsafe { t.load(i) };
        match A::entry_kind::<L>(pte) {
            // SAFETY: a table entry leads to a live table one down.
            EntryKind::Table => PointStep::Descend(unsafe { child::<A, L, H>(self.h, pte) }, ()),
            EntryKind::Leaf => PointStep::Stop(Some(pte)),
            EntryKind::Empty | EntryKind::Marker => PointStep::Stop(None),
        }
    }
}

/// The raw entry of the leaf translating folded `va`, if any.
///
/// # Safety
///
/// `t` is a live table of a tree reached through `h` whose span holds `va`.
pub(crate) unsafe fn leaf_entry<A: Arch, L: Level, H: PagingHandler>(
    h: &H,
    t: TableRef<A, L>,
    va: u64,
) -> Option<u64> {
    // SAFETY: forwarded.
    unsafe { L::point::<A, _>(&mut LeafEntry { h }, t, va, ()) }
}

/// The last-level table on the way to an address, if every entry down to it is a table entry,
/// with the table entries on the way folded ([`Arch::path_step`]). With `grant`, each of those
/// entries is first made to let through what leaves with those flags allow
/// ([`Arch::table_grant`]); `GRANTS` says whether it does, so that the walk without is a read
/// small enough to inline into a single-page call.
struct LastTable<'a, H, const GRANTS: bool> {
    h: &'a H,
    grant: MappingFlags,
}

impl<A: Arch, H: PagingHandler, const GRANTS: bool> PointVisitor<A> for LastTable<'_, H, GRANTS> {
    type Out = Option<(u64, u64, CountSlot<A>)>;
    type Down = u64;
    const OCCUPANCY: Occupancy = Occupancy::Keeps;

    #[inline(always)]
    unsafe fn last(&mut self, _: TableRef<A, L1>, _: usize, _: u64) -> Self::Out {
        // Only reached from a last-level table itself, which has no last-level table below.
        None
    }

    #[inline(always)]
    unsafe fn entry<L: HasNext>(
        &mut self,
        t: TableRef<A, L>,
        i: usize,
        path: u64,
    ) -> PointStep<A, L::Next, u64, Self::Out> {
        // SAFETY: in bounds, live table.
        let mut pte = unsafe { t.load(i) };
        if A::entry_kind::<L>(pte) != EntryKind::Table {
            return PointStep::Stop(None);
        }
        if GRANTS {
            // SAFETY: live table owned by the caller (who asked for grants).
            pte = unsafe { grant_entry::<A, L>(t, i, pte, self.grant) };
        }
        let path = A::path_step(path, pte);
        if L::DEPTH == 2 {
            // SAFETY: `L` is `L2`.
            let slot = unsafe { CountSlot::new(t, i) };
            return PointStep::Stop(Some((A::table_addr(pte), path, slot)));
        }
        // SAFETY: a table entry leads to a live table one down.
        PointStep::Descend(unsafe { child::<A, L, H>(self.h, pte) }, path)
    }
}

/// The physical address of the last-level table on the way to folded `va`, if every entry
/// from `t` down to it is a table entry, the table entries on the way folded into `path`, and
/// the entry that links it (its live-entry count).
/// Where `grant` is given, each of those entries is first made to let through what leaves
/// with those flags allow, so the walk writes.
///
/// # Safety
///
/// `t` is a live table of a tree reached through `h` whose span holds `va`; with `grant`, the
/// caller owns the tree (`&mut PageTable`).
pub(crate) unsafe fn last_table_pa<A: Arch, L: Level, H: PagingHandler>(
    h: &H,
    t: TableRef<A, L>,
    va: u64,
    grant: Option<MappingFlags>,
) -> Option<(u64, u64, CountSlot<A>)> {
    match grant {
        // SAFETY: forwarded.
        Some(grant) => unsafe {
            L::point::<A, _>(&mut LastTable::<H, true> { h, grant }, t, va, A::PATH_START)
        },
        // SAFETY: forwarded.
        None => unsafe { last_table_read::<A, L, H>(h, t, va) },
    }
}

/// [`last_table_pa`] without grants, inlined.
///
/// # Safety
///
/// `t` is a live table of a tree reached through `h` whose span holds `va`.
#[inline(always)]
pub(crate) unsafe fn last_table_read<A: Arch, L: Level, H: PagingHandler>(
    h: &H,
    t: TableRef<A, L>,
    va: u64,
) -> Option<(u64, u64, CountSlot<A>)> {
    // SAFETY: forwarded.
    let mut v = LastTable::<H, false> {
        h,
        grant: MappingFlags::EMPTY,
    };
    // SAFETY: forwarded; no grants, a read.
    unsafe { L::point::<A, _>(&mut v, t, va, A::PATH_START) }
}

/// Calls `f` for every leaf of the range, in address order; what goes down is the table
/// entries on the way, folded.
struct ForEach<'a, A, H, F> {
    h: &'a H,
    f: &'a mut F,
    _arch: PhantomData<A>,
}

impl<A: Arch, H: PagingHandler, F: FnMut(RawLeaf)> Visitor<A> for ForEach<'_, A, H, F> {
    type Err = Infallible;
    type Down = u64;
    const OCCUPANCY: Occupancy = Occupancy::Keeps;

    #[inline(always)]
    unsafe fn run(&mut self, t: TableRef<A, L1>, run: Run, path: u64) -> Result<(), Infallible> {
        let f = &mut *self.f;
        for k in 0..run.count {
            // SAFETY: the run lies inside the live table.
            let pte = unsafe { t.load(run.first + k) };
            if let Some(leaf) = RawLeaf::last::<A>(run.va::<A>(k), pte, path) {
                f(leaf);
            }
        }
        Ok(())
    }

    #[inline(always)]
    unsafe fn entry<L: HasNext>(
        &mut self,
        t: TableRef<A, L>,
        at: Span,
        path: u64,
    ) -> Result<Step<A, L::Next, u64>, Infallible> {
        // SAFETY: an entry of the live table.
        let pte = unsafe { t.load(at.i) };
        match decode::<A, L>(pte) {
            Entry::Empty | Entry::Marker(_) => {}
            Entry::Leaf(leaf) => {
                (self.f)(RawLeaf::at::<A, L>(entry_base::<A, L>(at.a), leaf, path))
            }
            Entry::Table(frame) => {
                let down = A::path_step(path, pte);
                // SAFETY: a decoded table entry's table is live.
                return Ok(Step::Descend(unsafe {
                    into::<A, L::Next, H, _>(self.h, frame, down)
                }));
            }
        }
        Ok(Step::Skip)
    }
}

/// Calls `f` for every leaf that overlaps folded `[s, e)`, in address order.
///
/// # Safety
///
/// `t` is a live table of a tree reached through `h`, and `[s, e)` lies inside its span.
pub(crate) unsafe fn for_each<A: Arch, L: Level, H: PagingHandler>(
    h: &H,
    t: TableRef<A, L>,
    s: u64,
    e: u64,
    f: &mut impl FnMut(RawLeaf),
) {
    let mut v = ForEach {
        h,
        f,
        _arch: PhantomData,
    };
    // SAFETY: forwarded.
    let Ok(()) = unsafe { L::range::<A, _>(&mut v, t, s, e, A::PATH_START) };
}

/// Stops at the first leaf or marker: its folded address is the error.
struct FirstLeaf<'a, A, H> {
    h: &'a H,
    _arch: PhantomData<A>,
}

impl<A: Arch, H: PagingHandler> Visitor<A> for FirstLeaf<'_, A, H> {
    type Err = u64;
    type Down = ();
    const WHOLE_TABLES: bool = true;
    const OCCUPANCY: Occupancy = Occupancy::Keeps;

    #[inline(always)]
    unsafe fn run(&mut self, t: TableRef<A, L1>, run: Run, (): ()) -> Result<(), u64> {
        for k in 0..run.count {
            // SAFETY: the run lies inside the live table.
            let kind = A::entry_kind::<L1>(unsafe { t.load(run.first + k) });
            if matches!(kind, EntryKind::Leaf | EntryKind::Marker) {
                return Err(run.va::<A>(k));
            }
        }
        Ok(())
    }

    #[inline(always)]
    unsafe fn entry<L: HasNext>(
        &mut self,
        t: TableRef<A, L>,
        at: Span,
        (): (),
    ) -> Result<Step<A, L::Next, ()>, u64> {
        // SAFETY: an entry of the live table.
        match decode::<A, L>(unsafe { t.load(at.i) }) {
            Entry::Empty => Ok(Step::Skip),
            Entry::Leaf(_) | Entry::Marker(_) => Err(at.a),
            // SAFETY: a decoded table entry's table is live.
            Entry::Table(frame) => Ok(Step::Descend(unsafe {
                into::<A, L::Next, H, ()>(self.h, frame, ())
            })),
        }
    }
}

/// The first leaf in the subtree `t`, whose span starts at folded `base`, if any.
///
/// # Safety
///
/// `t` is a live table of a tree reached through `h`.
pub(crate) unsafe fn first_leaf<A: Arch, L: Level, H: PagingHandler>(
    h: &H,
    t: TableRef<A, L>,
    base: u64,
) -> Option<u64> {
    let mut v = FirstLeaf {
        h,
        _arch: PhantomData,
    };
    // SAFETY: forwarded; the table's whole span.
    unsafe { L::range::<A, _>(&mut v, t, base, base + span::<A, L>(), ()) }.err()
}

/// What [`TablesBelow`] does with each table it finds, and the handler it reads them through.
trait TableSink {
    /// The handler.
    type H: PagingHandler;
    /// The handler that reaches the tables.
    fn handler(&self) -> &Self::H;
    /// The table at `pa` of `bytes`, after every table below it.
    ///
    /// # Safety
    ///
    /// A table of the visited subtree, whose tables below were all handed over already.
    unsafe fn table(&mut self, pa: u64, bytes: usize);
}

/// Hands every table below the range to a [`TableSink`], each after the tables below it;
/// last-level tables without a look at their entries.
struct TablesBelow<A, S> {
    sink: S,
    _arch: PhantomData<A>,
}

impl<A: Arch, S: TableSink> Visitor<A> for TablesBelow<A, S> {
    type Err = Infallible;
    type Down = ();
    const WHOLE_TABLES: bool = true;
    const OCCUPANCY: Occupancy = Occupancy::Keeps;

    #[inline(always)]
    unsafe fn run(&mut self, _: TableRef<A, L1>, _: Run, (): ()) -> Result<(), Infallible> {
        Ok(())
    }

    #[inline(always)]
    unsafe fn entry<L: HasNext>(
        &mut self,
        t: TableRef<A, L>,
        at: Span,
        (): (),
    ) -> Result<Step<A, L::Next, ()>, Infallible> {
        // SAFETY: an entry of the live table.
        let Entry::Table(frame) = decode::<A, L>(unsafe { t.load(at.i) }) else {
            return Ok(Step::Skip);
        };
        if L::DEPTH == 2 {
            // A last-level table has no tables below it: no need to go in.
            // SAFETY: a table of the subtree, with none below it.
            unsafe { self.sink.table(frame.raw(), TableRef::<A, L::Next>::BYTES) };
            return Ok(Step::Skip);
        }
        // SAFETY: a decoded table entry's table is live.
        Ok(Step::Descend(unsafe {
            into::<A, L::Next, S::H, ()>(self.sink.handler(), frame, ())
        }))
    }

    #[inline(always)]
    unsafe fn ascend<L: HasNext>(
        &mut self,
        _: TableRef<A, L>,
        _: Span,
        below: Below<A, L::Next, ()>,
    ) -> Result<(), Infallible> {
        // SAFETY: the tables below this one were handed over in the descent.
        unsafe {
            self.sink
                .table(below.frame.raw(), TableRef::<A, L::Next>::BYTES)
        };
        Ok(())
    }
}

/// Hands `t`'s subtree below it to `sink`.
///
/// # Safety
///
/// `t` is a live table of the tree the sink's handler reaches, and the sink's own contract
/// holds for every table below it.
unsafe fn tables_below<A: Arch, L: Level, S: TableSink>(t: TableRef<A, L>, sink: S) -> S {
    let mut v = TablesBelow::<A, S> {
        sink,
        _arch: PhantomData,
    };
    // SAFETY: forwarded; the table's whole span.
    let Ok(()) = unsafe { L::range::<A, _>(&mut v, t, 0, span::<A, L>(), ()) };
    v.sink
}

/// Counts the tables of the subtree at `t`, itself included.
///
/// # Safety
///
/// `t` is a live table of a tree reached through `h`.
pub(crate) unsafe fn count_tables<A: Arch, L: Level, H: PagingHandler>(
    h: &H,
    t: TableRef<A, L>,
) -> usize {
    struct Count<'a, H>(&'a H, usize);
    impl<H: PagingHandler> TableSink for Count<'_, H> {
        type H = H;
        fn handler(&self) -> &H {
            self.0
        }
        unsafe fn table(&mut self, _: u64, _: usize) {
            self.1 += 1;
        }
    }
    // SAFETY: forwarded; counting reads nothing more.
    unsafe { tables_below::<A, L, _>(t, Count(h, 1)) }.1
}

/// Gives a table back to the handler.
struct Free<'a, H>(&'a mut H);

impl<H: PagingHandler> TableSink for Free<'_, H> {
    type H = H;
    fn handler(&self) -> &H {
        self.0
    }
    unsafe fn table(&mut self, pa: u64, bytes: usize) {
        let pa = memory_addr::PhysAddr::from(pa as usize);
        // A table someone else built is left to its owner.
        if self.0.owns_table(pa, bytes) {
            // SAFETY: a table of a subtree being freed (contract of `free_subtree`), none below
            // it left; its handler owns it, so it came from `alloc_table` with this size.
            unsafe { self.0.free_table(pa, bytes) };
        }
    }
}

/// Frees the table at `pa` (level `L`) and every table below it, without visiting the entries
/// of last-level tables.
///
/// # Safety
///
/// The subtree is owned by the caller and linked from nowhere any more.
pub(crate) unsafe fn free_subtree<A: Arch, L: Level, H: PagingHandler>(h: &mut H, pa: u64) {
    // SAFETY: the caller owns the live subtree.
    let t = unsafe { TableRef::<A, L>::from_pa(h, pa) };
    // SAFETY: as above: every table below goes, each after those below it.
    let Free(h) = unsafe { tables_below::<A, L, _>(t, Free(h)) };
    // SAFETY: the root of the subtree, last.
    unsafe { Free(h).table(pa, TableRef::<A, L>::BYTES) };
}

/// Frees the subtree at `pa`, whose root is at `depth`, at or below level `L`.
///
/// # Safety
///
/// As for [`free_subtree`].
pub(crate) unsafe fn free_at_depth<A: Arch, L: Level, H: PagingHandler>(
    h: &mut H,
    pa: u64,
    depth: u8,
) {
    struct Free<'a, H> {
        h: &'a mut H,
        pa: u64,
    }
    impl<A: Arch, H: PagingHandler> AtLevel<A> for Free<'_, H> {
        type Out = ();
        fn at<L: Level>(self) {
            // SAFETY: forwarded from `free_at_depth`'s caller.
            unsafe { free_subtree::<A, L, H>(self.h, self.pa) }
        }
    }
    <L as Descend>::at_depth::<A, _>(depth, Free { h, pa });
}
