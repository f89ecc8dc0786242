//! Unmapping: the apply pass of `unmap_region` (its check pass is [`EditCheck`](super::EditCheck)
//! with holes allowed) and the single-leaf `unmap`.

use core::convert::Infallible;
use core::marker::PhantomData;

use super::edit::split;
use super::{
    Below, PointStep, PointVisitor, RawLeaf, Run, Span, Stash, Step, Visitor, below, child,
};
use crate::arch::Arch;
use crate::flags::AccessState;
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
/// the swap that cleared it found it (with every mark the MMU made), and whether the table it was in is empty
/// now and may go. The topmost table the clear empties is unlinked and retired, with the chain
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
    unsafe fn clear<A: Arch, L: Level>(
        t: TableRef<A, L>,
        i: usize,
        kept: bool,
    ) -> (AccessState, bool) {
        // SAFETY: forwarded.
        let old = unsafe { t.swap(i, 0) };
        // SAFETY: live table.
        (A::leaf_state::<L>(old), !kept && unsafe { t.is_zero() })
    }
}

impl<A: Arch, H: PagingHandler> PointVisitor<A> for UnmapOne<'_, H> {
    type Out = (AccessState, bool);
    type Down = bool;

    #[inline(always)]
    unsafe fn last(&mut self, t: TableRef<A, L1>, i: usize, kept: bool) -> (AccessState, bool) {
        // SAFETY: forwarded.
        unsafe { Self::clear(t, i, kept) }
    }

    #[inline(always)]
    unsafe fn entry<L: HasNext>(
        &mut self,
        t: TableRef<A, L>,
        i: usize,
        kept: bool,
    ) -> PointStep<A, L::Next, bool, (AccessState, bool)> {
        if L::DEPTH == self.depth {
            // SAFETY: forwarded.
            return PointStep::Stop(unsafe { Self::clear(t, i, kept) });
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
        (old, emptied): (AccessState, bool),
    ) -> (AccessState, bool) {
        if !emptied {
            return (old, false);
        }
        // SAFETY: in bounds, live table.
        let only_child =
            (0..TableRef::<A, L>::ENTRIES).all(|k| k == i || unsafe { t.load(k) } == 0);
        if only_child && !kept {
            // This table empties with its child: the level above unlinks both at once.
            return (old, true);
        }
        if self.stash.retire_room::<A, H>(self.h) {
            // SAFETY: live table owned by the caller; the emptied subtree is ours.
            unsafe {
                let pte = t.load(i);
                t.store(i, 0);
                self.stash
                    .retire::<A, L::Next, H>(self.h, A::table_addr(pte));
            }
        }
        (old, false)
    }
}

/// Clears the leaf of `depth` that starts at folded `va` below `t` (`kept` if `t` must stay
/// linked); the leaf's access state as the swap found it, and whether `t` is empty now and may
/// go.
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
) -> (AccessState, bool) {
    let mut v = UnmapOne { h, stash, depth };
    // SAFETY: forwarded.
    unsafe { L::point::<A, _>(&mut v, t, va, kept) }
}
