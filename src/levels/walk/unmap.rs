//! Unmapping: the apply pass of `unmap_region` (its check pass is [`EditCheck`](super::EditCheck)
//! with holes allowed) and the single-leaf `unmap`.

use core::convert::Infallible;
use core::marker::PhantomData;

use super::edit::split;
use super::{
    Below, Descend, Occupancy, PointStep, PointVisitor, RawLeaf, Run, Span, Stash, Step, Visitor,
    below, child, entry_base, live,
};
use crate::arch::Arch;
use crate::error::PagingError;
use crate::flags::{AccessState, PageSize};
use crate::handler::PagingHandler;
use crate::levels::{EntryKind, HasNext, L1, Level, TableRef};

/// What a range edit does with each entry it clears or rewrites: nothing more (`()`,
/// `unmap_region`, `protect_region`), or hand it to a callback ([`Report`], `unmap_region_with`,
/// `protect_region_with`).
pub(crate) trait Reporter {
    /// Whether leaves are reported. Then every leaf is cleared by a swap, whose result holds
    /// every mark the MMU made (an invalid entry gets no more), and a table the range covers
    /// whole is visited and emptied leaf by leaf, not unlinked unseen.
    const REPORTS: bool;

    /// The leaf at level `L`, first address folded `va`: for an unmap, as the swap that cleared
    /// it returned it; for a rewrite, as the atomic step that rewrote it made it.
    fn leaf<A: Arch, L: Level>(&mut self, va: u64, old: u64);
    /// The marker `old` at folded `va`, just cleared.
    fn marker<A: Arch>(&mut self, va: u64, old: u64);
}

impl Reporter for () {
    const REPORTS: bool = false;

    #[inline(always)]
    fn leaf<A: Arch, L: Level>(&mut self, _: u64, _: u64) {}

    #[inline(always)]
    fn marker<A: Arch>(&mut self, _: u64, _: u64) {}
}

/// What an unmap cleared, as [`Report`] hands it on: a leaf, or a marker's folded address and
/// payload.
pub(crate) enum ClearedRaw {
    Leaf(RawLeaf),
    Marker(u64, u64),
}

/// Reports every leaf and marker an unmap clears to `F`.
pub(crate) struct Report<F>(pub F);

impl<F: FnMut(ClearedRaw)> Reporter for Report<F> {
    const REPORTS: bool = true;

    #[inline(always)]
    fn leaf<A: Arch, L: Level>(&mut self, va: u64, old: u64) {
        (self.0)(ClearedRaw::Leaf(RawLeaf::of::<A, L>(va, old)));
    }

    #[inline(always)]
    fn marker<A: Arch>(&mut self, va: u64, old: u64) {
        (self.0)(ClearedRaw::Marker(
            va,
            crate::arch::marker_payload::<A>(old),
        ));
    }
}

/// Apply pass of `unmap_region`: clears every leaf in the range, splitting leaves at the edges,
/// and unlinks every table that it empties or covers whole (a covered table is not visited,
/// unless leaves are reported), retiring it ([`Stash::retire`]). Where a live table's
/// retirement cannot be recorded (the handler has no frame for the record), a covered table is
/// emptied instead of unlinked, and an emptied one stays linked: still owned, freed later.
struct UnmapApply<'a, A: Arch, H, R> {
    h: &'a mut H,
    stash: &'a mut Stash,
    removed: R,
    _arch: PhantomData<A>,
}

impl<A: Arch, H: PagingHandler, R: Reporter> Visitor<A> for UnmapApply<'_, A, H, R> {
    type Err = Infallible;
    type Down = ();
    const OCCUPANCY: Occupancy = Occupancy::Changes;

    #[inline(always)]
    unsafe fn run(&mut self, t: TableRef<A, L1>, run: Run, (): ()) -> Result<(), Infallible> {
        for k in run.first..run.first + run.count {
            // SAFETY: the run lies inside the live table the caller owns.
            unsafe {
                match A::entry_kind::<L1>(t.load(k)) {
                    EntryKind::Leaf if R::REPORTS => {
                        let old = t.swap(k, 0);
                        self.removed.leaf::<A, L1>(run.va::<A>(k - run.first), old);
                    }
                    EntryKind::Marker if R::REPORTS => {
                        // No MMU writes a marker: a plain load and store.
                        let old = t.load(k);
                        t.store(k, 0);
                        self.removed.marker::<A>(run.va::<A>(k - run.first), old);
                    }
                    EntryKind::Leaf | EntryKind::Marker => t.store(k, 0),
                    EntryKind::Empty | EntryKind::Table => {}
                }
            }
        }
        Ok(())
    }

    #[inline(always)]
    unsafe fn entry<L: HasNext>(
        &mut self,
        t: TableRef<A, L>,
        Span { i, a, full, .. }: Span,
        (): (),
    ) -> Result<Step<A, L::Next, ()>, Infallible> {
        // SAFETY: an entry of the live table.
        let pte = unsafe { t.load(i) };
        let table = match A::entry_kind::<L>(pte) {
            // Only last-level entries are markers.
            EntryKind::Empty | EntryKind::Marker => return Ok(Step::Skip),
            EntryKind::Leaf if full => {
                // SAFETY: live table owned by the caller.
                unsafe {
                    if R::REPORTS {
                        let old = t.swap(i, 0);
                        self.removed.leaf::<A, L>(a, old);
                    } else {
                        t.store(i, 0);
                    }
                }
                return Ok(Step::Skip);
            }
            EntryKind::Table
                if full
                    && !R::REPORTS
                    && !self.stash.ctx.keeps::<A, L>(i)
                    && self.stash.retire_room::<A, H>(self.h) =>
            {
                // SAFETY: live table owned by the caller; once unlinked, the subtree is ours
                // alone to retire.
                unsafe {
                    t.store(i, 0);
                    self.stash
                        .retire::<A, L::Next, H>(self.h, A::table_addr(pte));
                }
                return Ok(Step::Skip);
            }
            // SAFETY: live table owned by the caller; the stash holds what the check counted.
            EntryKind::Leaf => unsafe { split::<A, L, H>(self.h, self.stash, t, i, a, pte) },
            // SAFETY: a table entry leads to a live table one down.
            EntryKind::Table => unsafe { below::<A, L, H, ()>(self.h, pte, ()) },
        };
        Ok(Step::Descend(table))
    }

    #[inline(always)]
    unsafe fn ascend<L: HasNext>(
        &mut self,
        t: TableRef<A, L>,
        at: Span,
        below: Below<A, L::Next, ()>,
    ) -> Result<(), Infallible> {
        // If the range emptied the table below, it is unlinked before it is retired.
        // SAFETY: live tables owned by the caller.
        unsafe {
            let entry = t.load(at.i);
            if !self.stash.ctx.keeps::<A, L>(at.i)
                && below.table.is_zero()
                && self.stash.retire_room::<A, H>(self.h)
            {
                t.store(at.i, 0);
                self.stash
                    .retire_empty::<A, L::Next, H>(self.h, A::table_addr(entry));
            }
        }
        Ok(())
    }
}

/// Apply pass of `unmap_region` over folded `[s, e)` from `t`, each cleared leaf handed to
/// `removed`.
///
/// # Safety
///
/// `t` is a live table of the tree the caller owns (`&mut PageTable`), reached through `h`;
/// `[s, e)` lies inside its span; the check pass passed and `stash` holds what it counted.
pub(crate) unsafe fn unmap_apply<A: Arch, L: Level, H: PagingHandler, R: Reporter>(
    h: &mut H,
    stash: &mut Stash,
    t: TableRef<A, L>,
    s: u64,
    e: u64,
    removed: R,
) {
    let mut v = UnmapApply {
        h,
        stash,
        removed,
        _arch: PhantomData,
    };
    // SAFETY: forwarded.
    let Ok(()) = unsafe { L::range::<A, _>(&mut v, t, s, e, ()) };
}

/// Clears the leaf of `depth` that starts at `va`. The result is the leaf's access state as
/// the swap that cleared it found it (with every mark the MMU made), and what the level above
/// is left to do about the table the leaf was in ([`Emptied`]). The topmost table the clear empties is unlinked and retired, with the chain
/// of emptied tables below it; a kept table (the root, the tables below shared root entries:
/// what goes down) stays linked.
struct UnmapOne<'a, H> {
    h: &'a mut H,
    stash: &'a mut Stash,
    depth: u8,
}

impl<H: PagingHandler> UnmapOne<'_, H> {
    /// Clears leaf `i` of `t`.
    ///
    /// # Safety
    ///
    /// `t` is live and owned by the caller, `i` in bounds.
    #[inline(always)]
    unsafe fn clear<A: Arch, L: Level>(t: TableRef<A, L>, i: usize) -> (AccessState, Emptied) {
        // SAFETY: forwarded.
        let old = unsafe { t.swap(i, 0) };
        (A::leaf_state::<L>(old), Emptied::Maybe)
    }
}

impl<A: Arch, H: PagingHandler> PointVisitor<A> for UnmapOne<'_, H> {
    type Out = (AccessState, Emptied);
    type Down = bool;
    const OCCUPANCY: Occupancy = Occupancy::Counts;

    #[inline(always)]
    unsafe fn last(&mut self, t: TableRef<A, L1>, i: usize, _: bool) -> (AccessState, Emptied) {
        // SAFETY: forwarded.
        unsafe { Self::clear(t, i) }
    }

    #[inline(always)]
    unsafe fn entry<L: HasNext>(
        &mut self,
        t: TableRef<A, L>,
        i: usize,
        _: bool,
    ) -> PointStep<A, L::Next, bool, (AccessState, Emptied)> {
        if L::DEPTH == self.depth {
            // SAFETY: forwarded.
            return PointStep::Stop(unsafe { Self::clear(t, i) });
        }
        // SAFETY: live table; the leaf lies below this table entry (the caller found it).
        let next = unsafe { child::<A, L, H>(self.h, t.load(i)) };
        PointStep::Descend(next, self.stash.ctx.keeps::<A, L>(i))
    }

    #[inline(always)]
    unsafe fn ascend<L: HasNext>(
        &mut self,
        t: TableRef<A, L>,
        i: usize,
        kept: bool,
        (old, below): (AccessState, Emptied),
    ) -> (AccessState, Emptied) {
        // SAFETY: forwarded.
        (old, unsafe {
            after_clear::<A, L, H>(self.h, self.stash, t, i, kept, below)
        })
    }
}

/// What a single-leaf clear leaves the level above to do about the table it was in.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Emptied {
    /// Nothing: the table stays.
    No,
    /// A leaf of the table went: whether that emptied it, its count or a scan tells
    /// ([`live::removed_one`]).
    Maybe,
    /// The table is empty: all it held was an emptied table, left linked to go with it.
    Yes,
}

/// Back at entry `i` of `t` (`kept` if `t` must stay linked) from a single-leaf clear in the
/// subtree it links, which left `below`: if that emptied the table below, it is unlinked and
/// retired, or, if `t` empties with it and may go, left for the level above to unlink with `t`
/// ([`Emptied::Yes`]).
///
/// # Safety
///
/// `t` is live and owned by the caller (`&mut PageTable`), `i` in bounds, and entry `i` links
/// the table the clear reported on.
#[inline(always)]
unsafe fn after_clear<A: Arch, L: HasNext, H: PagingHandler>(
    h: &mut H,
    stash: &mut Stash,
    t: TableRef<A, L>,
    i: usize,
    kept: bool,
    below: Emptied,
) -> Emptied {
    let empty = match below {
        Emptied::No => false,
        Emptied::Maybe => {
            // SAFETY: forwarded. The count goes down even where the table must stay.
            let none_left = unsafe { live::removed_one::<A, L, H>(h, t, i) };
            none_left && !stash.ctx.keeps::<A, L>(i)
        }
        Emptied::Yes => true,
    };
    // SAFETY: forwarded; the table below is empty.
    if empty && unsafe { unlink_emptied::<A, L, H>(h, stash, t, i, kept) } {
        Emptied::Yes
    } else {
        Emptied::No
    }
}

/// Entry `i` of `t` leads to a table the clear of a single leaf just emptied: unlinks and
/// retires it, or, if `t` empties with it and may go (not `kept`), leaves both for the level
/// above to unlink at once (`true`).
///
/// # Safety
///
/// `t` is live and owned by the caller (`&mut PageTable`), `i` in bounds, and the table entry
/// `i` leads to is empty and the caller's.
#[inline(always)]
unsafe fn unlink_emptied<A: Arch, L: HasNext, H: PagingHandler>(
    h: &mut H,
    stash: &mut Stash,
    t: TableRef<A, L>,
    i: usize,
    kept: bool,
) -> bool {
    // SAFETY: in bounds, live table.
    let only_child = (0..TableRef::<A, L>::ENTRIES).all(|k| k == i || unsafe { t.load(k) } == 0);
    if only_child && !kept {
        // This table empties with its child: the level above unlinks both at once.
        return true;
    }
    if stash.retire_room::<A, H>(h) {
        // SAFETY: live table owned by the caller; the emptied subtree is ours.
        unsafe {
            let pte = t.load(i);
            t.store(i, 0);
            stash.retire::<A, L::Next, H>(h, A::table_addr(pte));
        }
    }
    false
}

/// Clears the leaf of `depth` that starts at folded `va` below `t` (`kept` if `t` must stay
/// linked); the leaf's access state as the swap found it.
///
/// # Safety
///
/// `t` is a live table of the tree the caller owns (`&mut PageTable`), reached through `h`,
/// and a leaf of `depth` starts at `va` below it.
pub(crate) unsafe fn unmap_one<A: Arch, L: Level, H: PagingHandler>(
    h: &mut H,
    stash: &mut Stash,
    t: TableRef<A, L>,
    va: u64,
    depth: u8,
    kept: bool,
) -> AccessState {
    let mut v = UnmapOne { h, stash, depth };
    // SAFETY: forwarded.
    unsafe { L::point::<A, _>(&mut v, t, va, kept) }.0
}

/// Finds the leaf that starts at folded `va` and clears it, in one walk: the leaf as the swap
/// that cleared it returned it (its flags as the walk lets them through), and whether the
/// table it was in is empty now and may go. Nothing changes on an error: no leaf translates
/// `va` ([`PagingError::NotMapped`]), the leaf starts elsewhere
/// ([`PagingError::InsideLeaf`]), or it lies in a borrowed root entry (`borrowed`:
/// [`PagingError::Borrowed`]), checked in that order, as a query followed by the unmap would.
struct UnmapAt<'a, H> {
    h: &'a mut H,
    stash: &'a mut Stash,
    /// The address as the caller gave it, for the errors.
    at: u64,
    borrowed: bool,
}

type UnmapAtOut = Result<(RawLeaf, Emptied), PagingError>;

impl<H: PagingHandler> UnmapAt<'_, H> {
    /// Leaf `i` of `t`, whose entry is `pte` and whose first address is `base`: cleared, or
    /// the error that leaves it.
    ///
    /// # Safety
    ///
    /// `t` is live and owned by the caller, `i` in bounds, `pte` a leaf entry loaded from it.
    #[inline(always)]
    unsafe fn clear<A: Arch, L: Level>(
        &self,
        t: TableRef<A, L>,
        i: usize,
        base: u64,
        (_, path): (bool, u64),
    ) -> UnmapAtOut {
        if base != self.at {
            return Err(PagingError::InsideLeaf {
                leaf: A::unfold(base),
                size: PageSize::from_shift(TableRef::<A, L>::SHIFT).unwrap_or(PageSize::SIZE_4K),
            });
        }
        if self.borrowed {
            return Err(PagingError::Borrowed(A::unfold(base)));
        }
        // SAFETY: forwarded.
        let old = unsafe { t.swap(i, 0) };
        let mut leaf = RawLeaf::of::<A, L>(base, old);
        if A::TABLE_GATES {
            leaf.flags = A::path_restrict(path, leaf.flags);
        }
        Ok((leaf, Emptied::Maybe))
    }
}

impl<A: Arch, H: PagingHandler> PointVisitor<A> for UnmapAt<'_, H> {
    type Out = UnmapAtOut;
    type Down = (bool, u64);
    const OCCUPANCY: Occupancy = Occupancy::Counts;

    #[inline(always)]
    unsafe fn last(&mut self, t: TableRef<A, L1>, i: usize, down: (bool, u64)) -> UnmapAtOut {
        // SAFETY: in bounds, live table.
        let pte = unsafe { t.load(i) };
        if A::entry_kind::<L1>(pte) != EntryKind::Leaf {
            return Err(PagingError::NotMapped(A::unfold(self.at)));
        }
        // SAFETY: forwarded.
        unsafe { self.clear(t, i, entry_base::<A, L1>(self.at), down) }
    }

    #[inline(always)]
    unsafe fn entry<L: HasNext>(
        &mut self,
        t: TableRef<A, L>,
        i: usize,
        down: (bool, u64),
    ) -> PointStep<A, L::Next, (bool, u64), UnmapAtOut> {
        // SAFETY: in bounds, live table.
        let pte = unsafe { t.load(i) };
        match A::entry_kind::<L>(pte) {
            EntryKind::Leaf => {
                // SAFETY: forwarded; `pte` is a leaf entry loaded from `t`.
                PointStep::Stop(unsafe { self.clear(t, i, entry_base::<A, L>(self.at), down) })
            }
            EntryKind::Table => {
                // SAFETY: a table entry of a live table leads to a live table one down.
                let next = unsafe { child::<A, L, H>(self.h, pte) };
                let kept = self.stash.ctx.keeps::<A, L>(i);
                PointStep::Descend(next, (kept, A::path_step(down.1, pte)))
            }
            EntryKind::Empty | EntryKind::Marker => {
                PointStep::Stop(Err(PagingError::NotMapped(A::unfold(self.at))))
            }
        }
    }

    #[inline(always)]
    unsafe fn ascend<L: HasNext>(
        &mut self,
        t: TableRef<A, L>,
        i: usize,
        (kept, _): (bool, u64),
        out: UnmapAtOut,
    ) -> UnmapAtOut {
        let (leaf, below) = out?;
        // SAFETY: forwarded.
        Ok((leaf, unsafe {
            after_clear::<A, L, H>(self.h, self.stash, t, i, kept, below)
        }))
    }
}

/// Clears the leaf that starts at folded `va` below the root `t`, found by the same walk; see
/// [`UnmapAt`]. `borrowed`: whether `va`'s root entry is borrowed.
///
/// # Safety
///
/// `t` is the live root of the tree the caller owns (`&mut PageTable`), reached through `h`,
/// and its span holds `va`.
pub(crate) unsafe fn unmap_at<A: Arch, H: PagingHandler>(
    h: &mut H,
    stash: &mut Stash,
    t: TableRef<A, A::Root>,
    va: u64,
    borrowed: bool,
) -> Result<RawLeaf, PagingError> {
    let mut v = UnmapAt {
        h,
        stash,
        at: va,
        borrowed,
    };
    // SAFETY: forwarded; the root is kept.
    unsafe { <A::Root as Descend>::point::<A, _>(&mut v, t, va, (true, A::PATH_START)) }
        .map(|(leaf, _)| leaf)
}
