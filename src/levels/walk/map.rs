//! Mapping: the check and apply visitors of `map_region`, and the single-leaf `map`.

use core::convert::Infallible;

use memory_addr::PhysAddr;

use super::Ctx;
use super::read::first_leaf;
use super::stash::alloc_frame;
use super::{
    AtLevel, Below, Descend, Occupancy, PointStep, PointVisitor, Run, Span, Stash, Step, Visitor,
    below, child, entry_base, live,
};
use crate::arch::{self, Arch};
use crate::error::PagingError;
use crate::flags::MappingFlags;
use crate::handler::PagingHandler;
use crate::levels::{Descriptor, EntryKind, HasNext, L1, Level, TableFrame, TableRef};
use crate::liveness::Liveness;
use crate::retired::Chain;
use crate::state::RootRange;

/// What a map asks for.
#[derive(Clone, Copy)]
pub(crate) struct MapReq {
    /// `pa - va` (wrapping), so that `pa = va + delta` for every folded `va` in the range.
    pub delta: u64,
    /// Whether leaves above depth 1 may be used.
    pub huge: bool,
    pub flags: MappingFlags,
    /// For a single-leaf map: the depth the leaf must have (0 for a region).
    pub exact_depth: u8,
    /// Root entries shared with borrowers, which never become leaves.
    pub shared: RootRange,
}

impl MapReq {
    /// Whether `[a, b)` gets one leaf at level `L`.
    #[inline(always)]
    fn leaf_here<A: Arch, L: Level>(&self, a: u64, full: bool) -> bool {
        self.leaf_here_at::<A>(L::DEPTH, a, full)
    }

    /// [`leaf_here`](Self::leaf_here) at a run-time depth (constant where inlined).
    #[inline(always)]
    fn leaf_here_at<A: Arch>(&self, depth: u8, a: u64, full: bool) -> bool {
        if self.exact_depth != 0 {
            return self.exact_depth == depth;
        }
        if depth == arch::root_depth::<A>() && self.shared.contains(arch::index_at::<A>(depth, a)) {
            return false;
        }
        full && (depth == 1
            || (depth <= arch::max_leaf_depth::<A>()
                && self.huge
                && a.wrapping_add(self.delta) % (1 << arch::level_shift::<A>(depth)) == 0))
    }

    /// The depth of the one leaf that a region map of folded `[s, e)` makes, if it makes
    /// just one: `[s, e)` is one entry of a level that may hold this leaf
    /// ([`leaf_here_at`](Self::leaf_here_at)).
    #[inline(always)]
    pub(crate) fn one_leaf<A: Arch>(&self, s: u64, e: u64) -> Option<u8> {
        let len = e.wrapping_sub(s);
        if !len.is_power_of_two() || s % len != 0 {
            return None;
        }
        let depth = (1..=arch::max_leaf_depth::<A>())
            .find(|&d| arch::level_shift::<A>(d) == len.trailing_zeros())?;
        self.leaf_here_at::<A>(depth, s, true).then_some(depth)
    }

    /// The leaf at level `L` that maps folded `va`.
    #[inline(always)]
    fn leaf<A: Arch, L: Level>(&self, va: u64) -> u64 {
        A::leaf_template::<L>(self.flags) | A::leaf_addr_bits::<L>(va.wrapping_add(self.delta))
    }
}

/// Check pass of a map: errors, the tables the map will create, and the (empty) tables its
/// leaves replace. With `refuse`, a leaf over a table that needs break-before-make is refused.
struct MapCheck<'a, A: Arch, H> {
    h: &'a H,
    req: MapReq,
    refuse: bool,
    need: super::EditNeeds,
    _arch: core::marker::PhantomData<A>,
}

impl<A: Arch, H: PagingHandler> Visitor<A> for MapCheck<'_, A, H> {
    type Err = PagingError;
    type Down = ();
    const OCCUPANCY: Occupancy = Occupancy::Keeps;

    #[inline(always)]
    unsafe fn run(&mut self, t: TableRef<A, L1>, run: Run, (): ()) -> Result<(), PagingError> {
        for k in 0..run.count {
            // SAFETY: the run lies inside the live table.
            let pte = unsafe { t.load(run.first + k) };
            if A::entry_kind::<L1>(pte) != EntryKind::Empty {
                return Err(PagingError::AlreadyMapped(A::unfold(run.va::<A>(k))));
            }
        }
        Ok(())
    }

    #[inline(always)]
    unsafe fn entry<L: HasNext>(
        &mut self,
        t: TableRef<A, L>,
        Span { i, a, b, full }: Span,
        (): (),
    ) -> Result<Step<A, L::Next, ()>, PagingError> {
        // SAFETY: an entry of the live table.
        let pte = unsafe { t.load(i) };
        let leaf_here = self.req.leaf_here::<A, L>(a, full);
        match A::entry_kind::<L>(pte) {
            EntryKind::Empty if leaf_here => {}
            EntryKind::Empty => {
                self.need.tables += 1 + fresh_tables::<A, L::Next>(a, b, &self.req);
            }
            EntryKind::Leaf | EntryKind::Marker => {
                return Err(PagingError::AlreadyMapped(A::unfold(a)));
            }
            EntryKind::Table => {
                // SAFETY: a table entry leads to a live table one down.
                let next = unsafe { below::<A, L, H, ()>(self.h, pte, ()) };
                if !leaf_here {
                    return Ok(Step::Descend(next));
                }
                // A leaf may replace a table only if nothing is mapped below it.
                let base = entry_base::<A, L>(a);
                // SAFETY: `next` is a live table of the tree.
                if let Some(va) = unsafe { first_leaf::<A, L::Next, H>(self.h, next.table, base) } {
                    return Err(PagingError::AlreadyMapped(A::unfold(va)));
                }
                if self.refuse && A::BREAK_BEFORE_MAKE {
                    // Table to block (Arm ARM D8.16.1).
                    return Err(PagingError::NeedsBreak(A::unfold(a)));
                }
                self.need.unlinks += 1;
            }
        }
        Ok(Step::Skip)
    }
}

/// Check pass of a map over folded `[s, e)` from `t`: errors, and what it needs.
///
/// # Safety
///
/// `t` is a live table of the tree reached through `h`, and `[s, e)` lies inside its span.
pub(crate) unsafe fn map_check<A: Arch, L: Level, H: PagingHandler>(
    h: &H,
    t: TableRef<A, L>,
    s: u64,
    e: u64,
    req: &MapReq,
    refuse: bool,
) -> Result<super::EditNeeds, PagingError> {
    let mut v = MapCheck {
        h,
        req: *req,
        refuse,
        need: super::EditNeeds::default(),
        _arch: core::marker::PhantomData,
    };
    // SAFETY: forwarded.
    unsafe { L::range::<A, _>(&mut v, t, s, e, ())? };
    Ok(v.need)
}

/// Tables a map of `[s, e)` creates below a new (empty) table at level `L`.
fn fresh_tables<A: Arch, L: Level>(s: u64, e: u64, req: &MapReq) -> usize {
    if L::DEPTH == 1 {
        return 0;
    }
    let size = TableRef::<A, L>::SIZE;
    let cost = |a: u64, b: u64| {
        let full = a % size == 0 && b - a == size;
        if req.leaf_here::<A, L>(a, full) {
            0
        } else {
            1 + fresh_tables_below::<A, L>(a, b, req)
        }
    };
    let first_end = (entry_base::<A, L>(s) + size).min(e);
    if first_end == e {
        return cost(s, e);
    }
    let last_start = entry_base::<A, L>(e - 1);
    // Entries strictly between the first and the last are covered whole, and all alike: the
    // alignment of `pa` to the entry size is the same for each.
    let middle = ((last_start - first_end) / size) as usize;
    let middle_cost = if middle > 0 {
        middle * cost(first_end, first_end + size)
    } else {
        0
    };
    cost(s, first_end) + middle_cost + cost(last_start, e)
}

/// [`fresh_tables`] one level below `L` (which is above the last level).
#[inline(always)]
fn fresh_tables_below<A: Arch, L: Level>(s: u64, e: u64, req: &MapReq) -> usize {
    struct Below<'a>(u64, u64, &'a MapReq);
    impl<A: Arch> AtLevel<A> for Below<'_> {
        type Out = usize;
        #[inline(always)]
        fn at<L: Level>(self) -> usize {
            fresh_tables::<A, L>(self.0, self.1, self.2)
        }
    }
    // The level below `L`, chosen at compile time once inlined.
    <A::Root as Descend>::at_depth::<A, _>(L::DEPTH - 1, Below(s, e, req))
}

/// Apply pass of a map; [`map_check`] passed and the stash holds what it counted. What goes
/// down is whether the table is fresh: just taken from the stash and linked nowhere yet, so
/// no walker sees it; it is filled with plain stores, and if the range covers it whole it was
/// not zeroed first (every entry gets written).
struct MapApply<'a, A: Arch, H> {
    h: &'a mut H,
    stash: &'a mut Stash,
    /// A copy, so that the compiler sees it does not change as the table is written.
    req: MapReq,
    /// Scattered frames ([`Scattered`]), or `None`: `pa = va + req.delta`.
    frames: Option<Scattered<'a>>,
    _arch: core::marker::PhantomData<A>,
}

/// The frames of a scattered map: the `k`-th granule page from folded `base` maps `frames[k]`
/// (each checked: aligned, within the width; as many as the range has pages).
#[derive(Clone, Copy)]
pub(crate) struct Scattered<'a> {
    pub frames: &'a [PhysAddr],
    pub base: u64,
}

impl<A: Arch, H: PagingHandler> Visitor<A> for MapApply<'_, A, H> {
    type Err = Infallible;
    type Down = bool;
    const WHOLE_TABLES: bool = true;
    const OCCUPANCY: Occupancy = Occupancy::Counts;

    #[inline(always)]
    unsafe fn run(&mut self, t: TableRef<A, L1>, run: Run, fresh: bool) -> Result<(), Infallible> {
        // One store per page, nothing else: the check pass found every slot empty.
        let template = A::leaf_template::<L1>(self.req.flags);
        if let Some(Scattered { frames, base }) = self.frames {
            let first = ((run.s - base) >> TableRef::<A, L1>::SHIFT) as usize;
            // The facade gave one frame per page of the range, and the run lies inside it.
            let frames = frames.get(first..first + run.count).unwrap_or(&[]);
            debug_assert_eq!(frames.len(), run.count);
            let leaf = |f: &PhysAddr| template | A::leaf_addr_bits::<L1>(f.as_usize() as u64);
            if fresh {
                // SAFETY: a fresh table is ours alone; the run lies inside it.
                unsafe {
                    t.with_words(run.first, run.count, |slots| {
                        for (slot, f) in slots.iter_mut().zip(frames) {
                            *slot = leaf(f);
                        }
                    });
                }
            } else {
                for (k, f) in frames.iter().enumerate() {
                    // SAFETY: in bounds; live table owned by the caller.
                    unsafe { t.store(run.first + k, leaf(f)) };
                }
            }
            return Ok(());
        }
        let pa = run.s.wrapping_add(self.req.delta);
        let leaf = |k: usize| {
            template | A::leaf_addr_bits::<L1>(pa + ((k as u64) << TableRef::<A, L1>::SHIFT))
        };
        if fresh {
            // SAFETY: a fresh table is ours alone; the run lies inside it.
            unsafe {
                t.with_words(run.first, run.count, |slots| {
                    for (k, slot) in slots.iter_mut().enumerate() {
                        *slot = leaf(k);
                    }
                });
            }
        } else {
            for k in 0..run.count {
                // SAFETY: in bounds; live table owned by the caller.
                unsafe { t.store(run.first + k, leaf(k)) };
            }
        }
        Ok(())
    }

    #[inline(always)]
    unsafe fn entry<L: HasNext>(
        &mut self,
        t: TableRef<A, L>,
        Span { i, a, full, .. }: Span,
        fresh: bool,
    ) -> Result<Step<A, L::Next, bool>, Infallible> {
        // A fresh table may hold garbage where the range does not reach: never read it.
        // SAFETY: an entry of the live table.
        let pte = if fresh { 0 } else { unsafe { t.load(i) } };
        let kind = A::entry_kind::<L>(pte);
        if self.req.leaf_here::<A, L>(a, full) {
            let leaf = self.req.leaf::<A, L>(a);
            if kind == EntryKind::Table {
                // The check pass found nothing mapped below, and counted the unlink.
                // SAFETY: live table owned by the caller; once unlinked, the empty subtree
                // is ours alone to retire.
                unsafe { replace_table::<A, L, H>(self.h, self.stash, t, i, a, pte, leaf) };
            } else {
                // SAFETY: live table owned by the caller.
                unsafe { t.store(i, leaf) };
            }
            Ok(Step::Skip)
        } else if kind == EntryKind::Table {
            // SAFETY: live table owned by the caller.
            let pte = unsafe { grant_entry::<A, L>(t, i, pte, self.req.flags) };
            // SAFETY: a table entry leads to a live table one down.
            Ok(Step::Descend(unsafe {
                below::<A, L, H, _>(self.h, pte, false)
            }))
        } else {
            // A child the range covers whole gets every entry written: no zeroing.
            let (frame, table) = self.stash.take::<A, L::Next, H>(self.h, !full);
            Ok(Step::Descend(Below {
                table,
                frame,
                down: true,
            }))
        }
    }

    #[inline(always)]
    unsafe fn ascend<L: HasNext>(
        &mut self,
        t: TableRef<A, L>,
        at: Span,
        below: Below<A, L::Next, bool>,
    ) -> Result<(), Infallible> {
        // Every entry of the range below was empty and now maps a page (the check pass).
        let filled = ((at.b - at.a) >> TableRef::<A, L1>::SHIFT) as usize;
        if below.down {
            // The new table is filled: link it, so that no walker sees it half made.
            let entry = live::fresh::<A, L>(Descriptor::<A, L>::table(below.frame).bits(), filled);
            // SAFETY: live table owned by the caller; the new table is this tree's now.
            unsafe { t.store(at.i, entry) };
        } else {
            // SAFETY: live table owned by the caller; the entry links the table filled.
            unsafe { live::added::<A, L>(t, at.i, filled) };
        }
        Ok(())
    }
}

/// Apply pass of a map over folded `[s, e)` from `t`.
///
/// # Safety
///
/// `t` is a live table of the tree the caller owns (`&mut PageTable`), reached through `h`;
/// `[s, e)` lies inside its span; the check pass passed and `stash` holds what it counted.
pub(crate) unsafe fn map_apply<A: Arch, L: Level, H: PagingHandler>(
    h: &mut H,
    stash: &mut Stash,
    t: TableRef<A, L>,
    s: u64,
    e: u64,
    req: &MapReq,
    frames: Option<Scattered<'_>>,
) {
    let mut v = MapApply {
        h,
        stash,
        req: *req,
        frames,
        _arch: core::marker::PhantomData,
    };
    // SAFETY: forwarded.
    let Ok(()) = unsafe { L::range::<A, _>(&mut v, t, s, e, false) };
}

/// Makes the table entry `pte` (entry `i` of `t`) let through what a leaf below with `flags`
/// allows, atomically (an MMU may set its accessed bit meanwhile); returns the entry as it is
/// now. Nothing happens where the arch's table entries gate nothing or this one lets it
/// through already.
///
/// # Safety
///
/// `t` is live and owned by the caller, `i` in bounds, `pte` a table entry just loaded.
#[inline(always)]
pub(super) unsafe fn grant_entry<A: Arch, L: Level>(
    t: TableRef<A, L>,
    i: usize,
    pte: u64,
    flags: MappingFlags,
) -> u64 {
    // SAFETY: forwarded.
    unsafe { grant_entry_with::<A, L>(t, i, pte, grant_masks::<A>(flags)) }
}

/// What [`Arch::table_grant`] does for `flags`, as the bits it sets and the bits it keeps
/// (its contract: `table_grant(pte, flags) == (pte | set) & keep`): worked out once for a walk
/// instead of once per level.
#[inline(always)]
pub(super) fn grant_masks<A: Arch>(flags: MappingFlags) -> (u64, u64) {
    (A::table_grant(0, flags), A::table_grant(u64::MAX, flags))
}

/// [`grant_entry`] with the masks of [`grant_masks`].
///
/// # Safety
///
/// As for [`grant_entry`].
#[inline(always)]
pub(super) unsafe fn grant_entry_with<A: Arch, L: Level>(
    t: TableRef<A, L>,
    i: usize,
    pte: u64,
    (set, keep): (u64, u64),
) -> u64 {
    if !A::TABLE_GATES {
        return pte;
    }
    let grant = |p: u64| (p | set) & keep;
    if grant(pte) != pte {
        // SAFETY: forwarded.
        let old = unsafe { t.update_loaded(i, pte, grant) };
        grant(old)
    } else {
        pte
    }
}

/// Writes `leaf` over entry `i` of `t`, a table entry `pte` for the entry holding `va` whose
/// subtree maps nothing, and retires the subtree: as break-before-make where the stash says so
/// (table to block, Arm ARM D8.16.1). If no retire record can be had (it was reserved, so only
/// a broken handler gets here), the empty subtree leaks rather than being freed under a walker.
///
/// # Safety
///
/// `t` is live and owned by the caller, `i` in bounds, and the subtree maps nothing.
unsafe fn replace_table<A: Arch, L: HasNext, H: PagingHandler>(
    h: &mut H,
    stash: &mut Stash,
    t: TableRef<A, L>,
    i: usize,
    va: u64,
    pte: u64,
    leaf: u64,
) {
    let room = stash.retire_room::<A, H>(h);
    if stash.breaking::<A, L>(pte, leaf) {
        // SAFETY: as for `store`.
        unsafe { t.swap(i, 0) };
        h.break_flush::<A>(
            crate::arch::from_va::<A>(A::unfold(entry_base::<A, L>(va))),
            TableRef::<A, L>::SIZE as usize,
        );
    }
    // SAFETY: live table owned by the caller.
    unsafe { t.store(i, leaf) };
    if room {
        // SAFETY: the entry no longer links the subtree, which this tree owned.
        unsafe { stash.retire::<A, L::Next, H>(h, A::table_addr(pte)) };
    }
}

/// A single-leaf map in one descent: through the tables that exist, checking for conflicts on
/// the way; at the first missing one, the tables below are reserved (all or none) and made.
/// The result is what it retired (an empty table a huge leaf replaced), or `None` where a
/// table entry on the way must first be made to let the flags through: it changes nothing
/// before it knows the map succeeds, and a gate widened for a map that then fails would stay
/// wide for every leaf below it, so that case is left to the two passes.
struct MapOne<'a, A: Arch, H> {
    h: &'a mut H,
    ctx: Ctx,
    s: u64,
    e: u64,
    req: &'a MapReq,
    _arch: core::marker::PhantomData<A>,
}

impl<A: Arch, H: PagingHandler> MapOne<'_, A, H> {
    /// The last table on the way: entry `i` of `t` takes the leaf.
    #[inline(always)]
    unsafe fn store_leaf<L: Level>(
        &mut self,
        t: TableRef<A, L>,
        i: usize,
        pte: u64,
    ) -> Result<Option<Chain>, PagingError> {
        if A::entry_kind::<L>(pte) != EntryKind::Empty {
            return Err(PagingError::AlreadyMapped(A::unfold(self.s)));
        }
        // SAFETY: live table owned by the caller.
        unsafe { t.store(i, self.req.leaf::<A, L>(self.s)) };
        Ok(Some(Chain::EMPTY))
    }
}

impl<A: Arch, H: PagingHandler> PointVisitor<A> for MapOne<'_, A, H> {
    type Out = Result<Option<Chain>, PagingError>;
    type Down = ();
    const OCCUPANCY: Occupancy = Occupancy::Counts;

    #[inline(always)]
    unsafe fn last(&mut self, t: TableRef<A, L1>, i: usize, (): ()) -> Self::Out {
        // SAFETY: masked index, live table.
        let pte = unsafe { t.load(i) };
        // SAFETY: forwarded.
        unsafe { self.store_leaf::<L1>(t, i, pte) }
    }

    #[inline(always)]
    unsafe fn ascend<L: HasNext>(
        &mut self,
        t: TableRef<A, L>,
        i: usize,
        (): (),
        out: Self::Out,
    ) -> Self::Out {
        if let Ok(Some(_)) = out {
            // A leaf went into the empty entry of the table below.
            // SAFETY: live table owned by the caller; the entry links the table below.
            unsafe { live::added::<A, L>(t, i, 1) };
        }
        out
    }

    #[inline(always)]
    unsafe fn entry<L: HasNext>(
        &mut self,
        t: TableRef<A, L>,
        i: usize,
        (): (),
    ) -> PointStep<A, L::Next, (), Self::Out> {
        // SAFETY: masked index, live table.
        let pte = unsafe { t.load(i) };
        let kind = A::entry_kind::<L>(pte);
        let stop = PointStep::Stop;
        if L::DEPTH == self.req.exact_depth {
            if kind != EntryKind::Table {
                // SAFETY: forwarded.
                return stop(unsafe { self.store_leaf::<L>(t, i, pte) });
            }
            // A leaf may replace a table only if nothing is mapped below it.
            // SAFETY: a table entry leads to a live table one down.
            let found = unsafe {
                first_leaf::<A, L::Next, H>(self.h, child::<A, L, H>(self.h, pte), self.s)
            };
            if let Some(va) = found {
                return stop(Err(PagingError::AlreadyMapped(A::unfold(va))));
            }
            if A::BREAK_BEFORE_MAKE && self.ctx.liveness == Liveness::LiveNoBreak {
                return stop(Err(PagingError::NeedsBreak(A::unfold(self.s))));
            }
            let h = &mut *self.h;
            let stash = Stash::reserve::<A, H>(h, 0, TableRef::<A, L::Next>::BYTES)
                .and_then(|stash| stash.for_change::<A, H>(h, self.ctx, 1));
            let mut stash = match stash {
                Ok(stash) => stash,
                Err(e) => return stop(Err(e)),
            };
            let leaf = self.req.leaf::<A, L>(self.s);
            // SAFETY: live table owned by the caller; the subtree is empty.
            unsafe { replace_table::<A, L, H>(h, &mut stash, t, i, self.s, pte, leaf) };
            return stop(Ok(Some(stash.finish(h))));
        }
        match kind {
            EntryKind::Leaf | EntryKind::Marker => {
                stop(Err(PagingError::AlreadyMapped(A::unfold(self.s))))
            }
            EntryKind::Table => {
                if A::TABLE_GATES && A::table_grant(pte, self.req.flags) != pte {
                    return stop(Ok(None));
                }
                // SAFETY: a table entry leads to a live table one down.
                PointStep::Descend(unsafe { child::<A, L, H>(self.h, pte) }, ())
            }
            EntryKind::Empty if L::DEPTH - self.req.exact_depth == 1 => {
                // One new table, holding the leaf: its frame is the whole reservation.
                let bytes = TableRef::<A, L::Next>::BYTES;
                let pa = match alloc_frame::<A, H>(self.h, bytes) {
                    Ok(pa) => pa,
                    Err(e) => return stop(Err(e)),
                };
                // SAFETY: a frame just allocated and checked, linked nowhere: ours alone.
                let table = unsafe { TableRef::<A, L::Next>::from_pa(self.h, pa) };
                // SAFETY: as above; the index is masked into bounds.
                unsafe {
                    table.zero_fresh();
                    table.store(
                        TableRef::<A, L::Next>::index(self.s),
                        self.req.leaf::<A, L::Next>(self.s),
                    );
                }
                // Linked once filled, so that no walker sees it half made.
                let link = Descriptor::<A, L>::table(TableFrame::from_raw(pa)).bits();
                // SAFETY: live table owned by the caller; the new table is this tree's now.
                unsafe { t.store(i, live::fresh::<A, L>(link, 1)) };
                stop(Ok(Some(Chain::EMPTY)))
            }
            EntryKind::Empty => {
                let need = (L::DEPTH - self.req.exact_depth) as usize;
                let mut stash =
                    match Stash::reserve::<A, H>(self.h, need, TableRef::<A, L::Next>::BYTES) {
                        Ok(stash) => stash,
                        Err(e) => return stop(Err(e)),
                    };
                // SAFETY: live table owned by the caller; the stash holds one table per level
                // between here and the leaf.
                unsafe {
                    map_apply::<A, L, H>(self.h, &mut stash, t, self.s, self.e, self.req, None)
                };
                debug_assert!(stash.is_empty());
                stash.release(self.h);
                stop(Ok(Some(Chain::EMPTY)))
            }
        }
    }
}

/// A single-leaf map of folded `[s, e)` (one leaf of `req.exact_depth`) from `t`; what it
/// retired, or `None` (having changed nothing) where a table entry on the way must be widened
/// first: then [`map_check`] and [`map_apply`] do it, checking before they change anything.
///
/// # Safety
///
/// `t` is a live table of the tree the caller owns (`&mut PageTable`), reached through `h`,
/// whose span holds `[s, e)`.
pub(crate) unsafe fn map_one<A: Arch, L: Level, H: PagingHandler>(
    h: &mut H,
    ctx: Ctx,
    t: TableRef<A, L>,
    s: u64,
    e: u64,
    req: &MapReq,
) -> Result<Option<Chain>, PagingError> {
    let mut v = MapOne {
        h,
        ctx,
        s,
        e,
        req,
        _arch: core::marker::PhantomData,
    };
    // SAFETY: forwarded.
    unsafe { L::point::<A, _>(&mut v, t, s, ()) }
}
