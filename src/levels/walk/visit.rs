//! The apply pass of `modify_range`: every leaf and marker of a range handed to the caller's
//! closure as an [`EntryEdit`], and what it asks for written back, one atomic step per entry.

use core::convert::Infallible;
use core::marker::PhantomData;

use super::edit::{rewrite_leaf, split};
use super::{Occupancy, Run, Span, Stash, Step, Visitor, below, entry_base};
use crate::arch::Arch;
use crate::entry_edit::EntryEdit;
use crate::handler::PagingHandler;
use crate::levels::{EntryKind, HasNext, L1, Level, TableRef};

/// See the module; [`EditCheck`](super::EditCheck) passed (holes allowed, splits counted).
struct VisitApply<'a, A: Arch, H, F> {
    h: &'a mut H,
    stash: &'a mut Stash,
    f: F,
    _arch: PhantomData<A>,
}

impl<A: Arch, H: PagingHandler, F: FnMut(&mut EntryEdit<A>)> VisitApply<'_, A, H, F> {
    /// Entry `i` of `t`, at folded `va`: handed to the closure, and rewritten as it asks.
    ///
    /// # Safety
    ///
    /// `t` is live and owned by the caller, `i` in bounds, and the entry maps `va`'s span.
    #[inline(always)]
    unsafe fn visit<L: Level>(&mut self, t: TableRef<A, L>, i: usize, va: u64) {
        // SAFETY: forwarded.
        let old = unsafe { t.load(i) };
        let kind = A::entry_kind::<L>(old);
        if !matches!(kind, EntryKind::Leaf | EntryKind::Marker) {
            return;
        }
        let liveness = self.stash.ctx.liveness;
        let mut edit = EntryEdit::<A>::new::<L>(va, old, kind, liveness);
        (self.f)(&mut edit);
        if !edit.changes() {
            return;
        }
        if kind == EntryKind::Marker {
            // No MMU writes a marker: a plain store of the new one.
            // SAFETY: forwarded.
            unsafe { t.store(i, edit.apply::<L>(old)) };
        } else {
            // SAFETY: forwarded; a break is made where the table is live and the change needs
            // one (the edit refused such changes on a table that refuses breaks).
            unsafe {
                rewrite_leaf::<A, L, H>(self.h, liveness, t, i, va, old, |cur| edit.apply::<L>(cur))
            };
        }
    }
}

impl<A: Arch, H: PagingHandler, F: FnMut(&mut EntryEdit<A>)> Visitor<A>
    for VisitApply<'_, A, H, F>
{
    type Err = Infallible;
    type Down = ();
    const OCCUPANCY: Occupancy = Occupancy::Changes;

    #[inline(always)]
    unsafe fn run(&mut self, t: TableRef<A, L1>, run: Run, (): ()) -> Result<(), Infallible> {
        for k in 0..run.count {
            // SAFETY: the run lies inside the live table the caller owns.
            unsafe { self.visit::<L1>(t, run.first + k, run.va::<A>(k)) };
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
            EntryKind::Empty | EntryKind::Marker => return Ok(Step::Skip),
            EntryKind::Leaf if full => {
                // SAFETY: live table owned by the caller; the leaf maps the entry's span.
                unsafe { self.visit::<L>(t, i, entry_base::<A, L>(a)) };
                return Ok(Step::Skip);
            }
            // SAFETY: live table owned by the caller; the stash holds what the check counted.
            EntryKind::Leaf => unsafe { split::<A, L, H>(self.h, self.stash, t, i, a, pte) },
            // SAFETY: a table entry leads to a live table one down.
            EntryKind::Table => unsafe { below::<A, L, H, ()>(self.h, pte, ()) },
        };
        Ok(Step::Descend(table))
    }
}

/// The apply pass of `modify_range` over folded `[s, e)` from `t`.
///
/// # Safety
///
/// `t` is a live table of the tree the caller owns (`&mut PageTable`), reached through `h`;
/// `[s, e)` lies inside its span; the check pass passed (holes allowed) and `stash` holds what
/// it counted.
pub(crate) unsafe fn visit_apply<A: Arch, L: Level, H: PagingHandler>(
    h: &mut H,
    stash: &mut Stash,
    t: TableRef<A, L>,
    (s, e): (u64, u64),
    f: impl FnMut(&mut EntryEdit<A>),
) {
    let mut v = VisitApply {
        h,
        stash,
        f,
        _arch: PhantomData,
    };
    // SAFETY: forwarded.
    let Ok(()) = unsafe { L::range::<A, _>(&mut v, t, s, e, ()) };
}
