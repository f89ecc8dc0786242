//! The walk: one range traversal and one point descent, written once, monomorphized per level;
//! every [`PageTable`](crate::PageTable) operation is a visitor of one of them. Nothing here
//! knows an architecture's bits: entries are read through [`Arch`].
//!
//! * [`Descend::range`] visits the entries of a table that a folded range `[s, e)` touches. At
//!   the last level ([`L1`]) it hands the visitor the whole run of entries at once
//!   ([`Visitor::run`]), which is where every fast path lives; above it, each entry goes to
//!   [`Visitor::entry`], which may return a table one level down to descend into, and
//!   [`Visitor::ascend`] runs when the descent is back.
//! * [`Descend::point`] follows one address down ([`PointVisitor`]): the single-leaf calls and
//!   the cursor.
//!
//! Only levels with a level below ([`HasNext`]) have an `entry` hook and can be descended
//! from: the last level is its own case in the types, not a level below itself.
//!
//! Addresses here are folded (see [`Arch::fold`]): `[s, e)` always lies inside the span of the
//! table at hand and is aligned to the granule.
//!
//! Changes come in two passes. A check pass reads the tree, finds every error and counts the
//! table frames the change will need; the caller reserves those frames in a [`Stash`]; then an
//! apply pass, which cannot fail, makes the change. So an error changes nothing.

use super::{Descriptor, Entry, HasNext, L1, L2, L3, L4, L5, Level, TableFrame, TableRef};
use crate::arch::Arch;
use crate::handler::PagingHandler;

mod edit;
mod live;
mod map;
mod marker;
mod read;
mod stash;
mod unmap;
mod visit;

pub(crate) use edit::{EditNeeds, Modify, edit_check, edit_one, modify_apply};
pub(crate) use live::{CountSlot, Occupancy, scrub};
pub(crate) use map::{MapReq, Scattered, map_apply, map_check, map_one};
pub(crate) use marker::set_marker;
pub(crate) use read::{
    RawLeaf, count_tables, for_each, free_at_depth, free_subtree, last_table_pa, last_table_read,
    leaf_entry, query, translate,
};
pub(crate) use stash::{Ctx, Stash, alloc_frame};
pub(crate) use unmap::{ClearedRaw, Report, Reporter, unmap_apply, unmap_at, unmap_one};
pub(crate) use visit::visit_apply;

/// One entry of a level-`L` table that a range touches: its index, the part `[a, b)` of the
/// range inside it, and whether that part is the whole entry.
#[derive(Clone, Copy, Debug)]
pub struct Span {
    pub i: usize,
    pub a: u64,
    pub b: u64,
    pub full: bool,
}

/// A run of last-level entries `first .. first + count`, mapping folded `[s, s + count pages)`.
#[derive(Clone, Copy, Debug)]
pub struct Run {
    pub first: usize,
    pub count: usize,
    pub s: u64,
}

impl Run {
    #[inline(always)]
    fn new<A: Arch>(s: u64, e: u64) -> Self {
        Run {
            first: TableRef::<A, L1>::index(s),
            count: ((e - s) >> TableRef::<A, L1>::SHIFT) as usize,
            s,
        }
    }

    /// The folded address of entry `k` of the run.
    #[inline(always)]
    pub fn va<A: Arch>(self, k: usize) -> u64 {
        self.s + ((k as u64) << TableRef::<A, L1>::SHIFT)
    }
}

/// A table one level down to descend into, with its physical address and what the visitor
/// passes down to it.
#[derive(Debug)]
pub struct Below<A: Arch, L: Level, D> {
    pub table: TableRef<A, L>,
    pub frame: TableFrame<A, L>,
    pub down: D,
}

/// What a visitor does after an entry above the last level.
#[derive(Debug)]
pub enum Step<A: Arch, L: Level, D> {
    /// Nothing more below this entry.
    Skip,
    /// Visit the part of the range inside this entry in the table below, then
    /// [`Visitor::ascend`].
    Descend(Below<A, L, D>),
}

/// An operation over a range: what it does with each kind of entry it meets.
pub trait Visitor<A: Arch> {
    /// What stops the traversal (`Infallible` for an apply pass).
    type Err;
    /// What each descent hands the table below (a path of table entries, freshness).
    type Down: Copy;
    /// Whether the traversal should loop over a table the range covers whole without working
    /// out each entry's edges: true for visitors that mostly see whole tables (building,
    /// freeing, counting them). A measured choice: for some visitors the compiler makes a
    /// slower inner loop of the specialised one.
    const WHOLE_TABLES: bool = false;
    /// What the visitor does to whether last-level entries are empty, which decides who keeps
    /// the live-entry counts right (see [`Occupancy`]). No default: every visitor says.
    const OCCUPANCY: Occupancy;

    /// The last-level entries of `t` in `run`.
    ///
    /// # Safety
    ///
    /// `t` is a live table of the visited tree, the run lies inside it, and the visitor's own
    /// contract (who owns the tree, what the check pass found) holds.
    unsafe fn run(
        &mut self,
        t: TableRef<A, L1>,
        run: Run,
        down: Self::Down,
    ) -> Result<(), Self::Err>;

    /// Entry `at.i` of `t`, a table above the last level.
    ///
    /// # Safety
    ///
    /// As for [`run`](Self::run); `at` is an entry of `t` inside the range.
    unsafe fn entry<L: HasNext>(
        &mut self,
        t: TableRef<A, L>,
        at: Span,
        down: Self::Down,
    ) -> Result<Step<A, L::Next, Self::Down>, Self::Err>;

    /// Back from the table below entry `at.i` of `t`.
    ///
    /// # Safety
    ///
    /// As for [`entry`](Self::entry); `below` is what `entry` returned.
    #[inline(always)]
    unsafe fn ascend<L: HasNext>(
        &mut self,
        t: TableRef<A, L>,
        at: Span,
        below: Below<A, L::Next, Self::Down>,
    ) -> Result<(), Self::Err> {
        let _ = (t, at, below);
        Ok(())
    }
}

/// What a point visitor does at an entry above the last level.
#[derive(Debug)]
pub enum PointStep<A: Arch, L: Level, D, O> {
    /// The descent ends here with this result.
    Stop(O),
    /// Go on into the table below, then [`PointVisitor::ascend`].
    Descend(TableRef<A, L>, D),
}

/// An operation on the one entry per level that translates an address.
pub trait PointVisitor<A: Arch> {
    /// The result.
    type Out;
    /// What each descent hands the table below.
    type Down: Copy;
    /// As for [`Visitor::OCCUPANCY`].
    const OCCUPANCY: Occupancy;

    /// Entry `i` of the last-level table `t`.
    ///
    /// # Safety
    ///
    /// `t` is a live table of the visited tree and `i` in bounds; the visitor's own contract
    /// holds.
    unsafe fn last(&mut self, t: TableRef<A, L1>, i: usize, down: Self::Down) -> Self::Out;

    /// Entry `i` of `t`, above the last level.
    ///
    /// # Safety
    ///
    /// As for [`last`](Self::last).
    unsafe fn entry<L: HasNext>(
        &mut self,
        t: TableRef<A, L>,
        i: usize,
        down: Self::Down,
    ) -> PointStep<A, L::Next, Self::Down, Self::Out>;

    /// Back from the table below entry `i` of `t` (reached with `down`) with `out`.
    ///
    /// # Safety
    ///
    /// As for [`entry`](Self::entry).
    #[inline(always)]
    unsafe fn ascend<L: HasNext>(
        &mut self,
        t: TableRef<A, L>,
        i: usize,
        down: Self::Down,
        out: Self::Out,
    ) -> Self::Out {
        let _ = (t, i, down);
        out
    }
}

/// Something to do with a level type chosen at run time ([`Descend::at_depth`]).
pub trait AtLevel<A: Arch> {
    /// The result.
    type Out;
    /// Does it at level `L`.
    fn at<L: Level>(self) -> Self::Out;
}

/// How the walk goes through a table of a level: implemented for every level, the last one on
/// its own ([`L1`] has no entries that lead anywhere).
pub trait Descend: Sized {
    /// Visits the entries of `t` that folded `[s, e)` touches.
    ///
    /// # Safety
    ///
    /// `t` is a live table of this level, `[s, e)` lies inside its span, and the visitor's
    /// contract holds.
    unsafe fn range<A: Arch, V: Visitor<A>>(
        v: &mut V,
        t: TableRef<A, Self>,
        s: u64,
        e: u64,
        down: V::Down,
    ) -> Result<(), V::Err>;

    /// Follows folded `va` down from `t`.
    ///
    /// # Safety
    ///
    /// `t` is a live table of this level whose span holds `va`, and the visitor's contract
    /// holds.
    unsafe fn point<A: Arch, V: PointVisitor<A>>(
        v: &mut V,
        t: TableRef<A, Self>,
        va: u64,
        down: V::Down,
    ) -> V::Out;

    /// `f` at the level of `depth`: this one, or one below it (the last level if none is).
    fn at_depth<A: Arch, F: AtLevel<A>>(depth: u8, f: F) -> F::Out;
}

impl Descend for L1 {
    #[inline]
    fn at_depth<A: Arch, F: AtLevel<A>>(_: u8, f: F) -> F::Out {
        f.at::<L1>()
    }

    #[inline]
    unsafe fn range<A: Arch, V: Visitor<A>>(
        v: &mut V,
        t: TableRef<A, L1>,
        s: u64,
        e: u64,
        down: V::Down,
    ) -> Result<(), V::Err> {
        // SAFETY: forwarded; the run is `[s, e)`, inside the table.
        unsafe { v.run(t, Run::new::<A>(s, e), down) }
    }

    #[inline]
    unsafe fn point<A: Arch, V: PointVisitor<A>>(
        v: &mut V,
        t: TableRef<A, L1>,
        va: u64,
        down: V::Down,
    ) -> V::Out {
        // SAFETY: forwarded; the index is masked into bounds.
        unsafe { v.last(t, TableRef::<A, L1>::index(va), down) }
    }
}

/// [`Descend::range`] of a level above the last: the one loop over entries.
#[inline(always)]
unsafe fn range_above<A: Arch, L: HasNext, V: Visitor<A>>(
    v: &mut V,
    t: TableRef<A, L>,
    s: u64,
    e: u64,
    down: V::Down,
) -> Result<(), V::Err> {
    let size = TableRef::<A, L>::SIZE;
    if V::WHOLE_TABLES && e - s == span::<A, L>() {
        // The whole table: every entry covered whole, no edges to work out.
        for i in 0..TableRef::<A, L>::ENTRIES {
            let a = s + i as u64 * size;
            let at = Span {
                i,
                a,
                b: a + size,
                full: true,
            };
            // SAFETY: forwarded; `at` is an entry of `t` inside the range.
            unsafe { visit_entry::<A, L, V>(v, t, at, down)? };
        }
        return Ok(());
    }
    let mut a = s;
    while a < e {
        let start = a & !(size - 1);
        let b = if e < start + size { e } else { start + size };
        let at = Span {
            i: TableRef::<A, L>::index(a),
            a,
            b,
            full: a == start && b == start + size,
        };
        // SAFETY: forwarded; `at` is an entry of `t` inside the range.
        unsafe { visit_entry::<A, L, V>(v, t, at, down)? };
        a = b;
    }
    Ok(())
}

/// One entry of [`range_above`]: the visitor's hook, and the descent it asks for.
#[inline(always)]
unsafe fn visit_entry<A: Arch, L: HasNext, V: Visitor<A>>(
    v: &mut V,
    t: TableRef<A, L>,
    at: Span,
    down: V::Down,
) -> Result<(), V::Err> {
    // SAFETY: `at` is an entry of `t` inside the range (forwarded contract).
    match unsafe { v.entry::<L>(t, at, down) } {
        Ok(Step::Skip) => Ok(()),
        Ok(Step::Descend(below)) => {
            // SAFETY: the visitor hands out a live table one level down, for `[a, b)`.
            unsafe { L::Next::range::<A, V>(v, below.table, at.a, at.b, below.down)? };
            if V::OCCUPANCY == Occupancy::Changes {
                // SAFETY: an entry of `t`, which the visitor may change (forwarded contract).
                unsafe { live::forget::<A, L>(t, at.i) };
            }
            // SAFETY: as for `entry`.
            unsafe { v.ascend::<L>(t, at, below) }
        }
        Err(err) => Err(err),
    }
}

/// What one table of level `L` spans.
pub(crate) const fn span<A: Arch, L: Level>() -> u64 {
    TableRef::<A, L>::SIZE * TableRef::<A, L>::ENTRIES as u64
}

/// [`Descend::point`] of a level above the last.
#[inline(always)]
unsafe fn point_above<A: Arch, L: HasNext, V: PointVisitor<A>>(
    v: &mut V,
    t: TableRef<A, L>,
    va: u64,
    down: V::Down,
) -> V::Out {
    let i = TableRef::<A, L>::index(va);
    // SAFETY: masked index; forwarded contract.
    match unsafe { v.entry::<L>(t, i, down) } {
        PointStep::Stop(out) => out,
        PointStep::Descend(next, below) => {
            // SAFETY: the visitor hands out a live table one level down, whose span holds `va`.
            let out = unsafe { L::Next::point::<A, V>(v, next, va, below) };
            if V::OCCUPANCY == Occupancy::Changes {
                // SAFETY: an entry of `t`, which the visitor may change (forwarded contract).
                unsafe { live::forget::<A, L>(t, i) };
            }
            // SAFETY: as for `entry`.
            unsafe { v.ascend::<L>(t, i, down, out) }
        }
    }
}

macro_rules! descend_above {
    ($($level:ident)*) => {$(
        impl Descend for $level {
            #[inline]
            fn at_depth<A: Arch, F: AtLevel<A>>(depth: u8, f: F) -> F::Out {
                if depth == $level::DEPTH {
                    f.at::<$level>()
                } else {
                    <$level as HasNext>::Next::at_depth::<A, F>(depth, f)
                }
            }

            #[inline]
            unsafe fn range<A: Arch, V: Visitor<A>>(
                v: &mut V,
                t: TableRef<A, $level>,
                s: u64,
                e: u64,
                down: V::Down,
            ) -> Result<(), V::Err> {
                // SAFETY: forwarded.
                unsafe { range_above::<A, $level, V>(v, t, s, e, down) }
            }

            #[inline]
            unsafe fn point<A: Arch, V: PointVisitor<A>>(
                v: &mut V,
                t: TableRef<A, $level>,
                va: u64,
                down: V::Down,
            ) -> V::Out {
                // SAFETY: forwarded.
                unsafe { point_above::<A, $level, V>(v, t, va, down) }
            }
        }
    )*};
}

descend_above!(L2 L3 L4 L5);

/// The table below the table entry `pte` of a level-`L` table.
///
/// # Safety
///
/// `pte` is a table entry of a live table of the tree reached through `h`.
#[inline(always)]
pub(crate) unsafe fn child<A: Arch, L: HasNext, H: PagingHandler>(
    h: &H,
    pte: u64,
) -> TableRef<A, L::Next> {
    // SAFETY: a table entry of a live table points to a live table one down.
    unsafe { TableRef::from_pa(h, A::table_addr(pte)) }
}

/// The table below the table entry `pte` of a level-`L` table, to descend into with `down`.
///
/// # Safety
///
/// As for [`child`].
#[inline(always)]
pub(crate) unsafe fn below<A: Arch, L: HasNext, H: PagingHandler, D>(
    h: &H,
    pte: u64,
    down: D,
) -> Below<A, L::Next, D> {
    // SAFETY: forwarded.
    unsafe { into::<A, L::Next, H, D>(h, TableFrame::from_raw(A::table_addr(pte)), down) }
}

/// The table `frame`, to descend into with `down`.
///
/// # Safety
///
/// `frame` is a live table of the tree reached through `h` (a decoded table entry's).
#[inline(always)]
pub(crate) unsafe fn into<A: Arch, L: Level, H: PagingHandler, D>(
    h: &H,
    frame: TableFrame<A, L>,
    down: D,
) -> Below<A, L, D> {
    Below {
        // SAFETY: forwarded.
        table: unsafe { TableRef::from_pa(h, frame.raw()) },
        frame,
        down,
    }
}

/// Entry `pte` of a level-`L` table, decoded at the arch boundary ([`Descriptor::decode`]).
#[inline(always)]
pub(crate) fn decode<A: Arch, L: HasNext>(pte: u64) -> Entry<TableFrame<A, L::Next>> {
    Descriptor::<A, L>::from_bits(pte).decode()
}

/// The span of the entry of a level-`L` table that holds folded `a`: `[start, start + SIZE)`.
#[inline(always)]
pub(crate) fn entry_base<A: Arch, L: Level>(a: u64) -> u64 {
    a & !(TableRef::<A, L>::SIZE - 1)
}
