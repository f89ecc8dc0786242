//! Changing leaves that exist: the check pass shared by `protect_region` and `unmap_region`,
//! the apply pass of `protect_region`, splits of leaves, and the single-leaf edits (`protect`,
//! `remap`, `clear_access_state`).

use core::convert::Infallible;
use core::marker::PhantomData;

use memory_addr::PhysAddr;

use super::map::grant_entry;
use super::{
    Below, Occupancy, PointStep, PointVisitor, Reporter, Run, Span, Stash, Step, Visitor, below,
    child, entry_base,
};
use crate::arch::{self, Arch};
use crate::error::PagingError;
use crate::flags::{AccessState, MappingFlags};
use crate::handler::PagingHandler;
use crate::levels::{Descriptor, EntryKind, HasNext, L1, Level, TableRef};
use crate::liveness::Liveness;

/// How [`ModifyApply`] changes each leaf.
#[derive(Clone, Copy)]
pub(crate) enum Modify {
    /// New flags (already checked).
    Protect(MappingFlags),
    /// A new address: `pa = va + delta` (wrapping), for folded `va`.
    Remap(u64),
    /// Clear these state bits.
    ClearState(AccessState),
    /// Set the software bits ([`Arch::SOFT_BITS`]) to these (already placed).
    SetSoft(u64),
    /// A new address (`pa = va + delta`, wrapping) and new flags (already checked) at once.
    Replace(u64, MappingFlags),
    /// Mark as the MMU would ([`Arch::leaf_mark`]).
    Mark(AccessState),
}

impl Modify {
    /// The leaf `old` at level `L`, which maps folded `va`, changed.
    #[inline(always)]
    fn apply<A: Arch, L: Level>(self, old: u64, va: u64) -> u64 {
        match self {
            Modify::Protect(flags) => A::leaf_protect::<L>(old, flags),
            Modify::Remap(delta) => {
                (old & !A::leaf_addr_mask::<L>()) | A::leaf_addr_bits::<L>(va.wrapping_add(delta))
            }
            Modify::ClearState(clear) => A::leaf_clear_state::<L>(old, clear),
            Modify::SetSoft(bits) => (old & !A::SOFT_BITS) | bits,
            Modify::Mark(mark) => A::leaf_mark::<L>(old, mark),
            Modify::Replace(delta, flags) => {
                (A::leaf_protect::<L>(old, flags) & !A::leaf_addr_mask::<L>())
                    | A::leaf_addr_bits::<L>(va.wrapping_add(delta))
            }
        }
    }

    /// The table entry `pte` (entry `i` of `t`) on the way down to leaves this changes: made to
    /// let through what the new flags allow, for a protect.
    ///
    /// # Safety
    ///
    /// As for [`grant_entry`].
    #[inline(always)]
    unsafe fn grant<A: Arch, L: Level>(self, t: TableRef<A, L>, i: usize, pte: u64) -> u64 {
        match self {
            // SAFETY: forwarded.
            Modify::Protect(flags) | Modify::Replace(_, flags) => unsafe {
                grant_entry::<A, L>(t, i, pte, flags)
            },
            _ => pte,
        }
    }
}

/// What the check pass of a change found: the tables it needs (new ones, or splits of leaves at
/// the edges), whether the MMU may still set an accessed or dirty bit in a leaf of the range,
/// and how many tables it may unlink.
#[derive(Clone, Copy, Default)]
pub(crate) struct EditNeeds {
    pub tables: usize,
    pub hw_live: bool,
    /// At most how many tables the change unlinks (and so retires, in a live table).
    pub unlinks: usize,
}

/// The error if replacing `old` at level `L`, which maps folded `va`, by `new` needs
/// break-before-make and the table refuses breaks ([`Liveness::LiveNoBreak`]).
#[inline(always)]
fn refused<A: Arch, L: Level>(
    liveness: Liveness,
    old: u64,
    new: u64,
    va: u64,
) -> Result<(), PagingError> {
    if A::BREAK_BEFORE_MAKE && liveness == Liveness::LiveNoBreak && A::needs_break::<L>(old, new) {
        Err(PagingError::NeedsBreak(A::unfold(va)))
    } else {
        Ok(())
    }
}

/// Check pass of a region change over folded `[s, e)` from `t`; see [`EditCheck`].
///
/// # Safety
///
/// `t` is a live table of a tree reached through `h`, and `[s, e)` lies inside its span.
pub(crate) unsafe fn edit_check<A: Arch, L: Level, H: PagingHandler>(
    h: &H,
    t: TableRef<A, L>,
    s: u64,
    e: u64,
    liveness: Liveness,
    rewrite: Option<Modify>,
    holes: bool,
) -> Result<EditNeeds, PagingError> {
    let mut v = EditCheck::<A, H>::new(h, liveness, rewrite, holes);
    // SAFETY: forwarded.
    unsafe { L::range::<A, _>(&mut v, t, s, e, ())? };
    Ok(v.needs)
}

/// Apply pass of `protect_region` (and of range edits) over folded `[s, e)` from `t`; see
/// [`ModifyApply`].
///
/// # Safety
///
/// `t` is a live table of the tree the caller owns (`&mut PageTable`), reached through `h`;
/// `[s, e)` lies inside its span; [`edit_check`] passed without holes, found `hw_live`, and
/// `stash` holds what it counted.
pub(crate) unsafe fn modify_apply<A: Arch, L: Level, H: PagingHandler, R: Reporter>(
    h: &mut H,
    stash: &mut Stash,
    t: TableRef<A, L>,
    (s, e): (u64, u64),
    op: Modify,
    hw_live: bool,
    report: R,
) {
    let mut v = ModifyApply::<A, H, R>::new(h, stash, op, hw_live, report);
    // SAFETY: forwarded.
    let Ok(()) = unsafe { L::range::<A, _>(&mut v, t, s, e, ()) };
}

/// Check pass of a region change that must find everything mapped (`protect_region`) or that
/// skips holes (`unmap_region`): errors, and what the apply pass will need. `hw_live` is only
/// worked out when holes are errors (the edits that rewrite leaves).
struct EditCheck<'a, A: Arch, H> {
    h: &'a H,
    /// Whether breaks are refused.
    liveness: Liveness,
    /// The change made to every leaf, for a change that rewrites leaves; `None` for one that
    /// clears them.
    rewrite: Option<Modify>,
    /// Whether a rewrite skips holes (`protect_region_with`) instead of failing on them; a
    /// clear always does.
    holes: bool,
    needs: EditNeeds,
    _arch: PhantomData<A>,
}

impl<'a, A: Arch, H: PagingHandler> EditCheck<'a, A, H> {
    fn new(h: &'a H, liveness: Liveness, rewrite: Option<Modify>, holes: bool) -> Self {
        Self {
            h,
            liveness,
            rewrite,
            holes,
            needs: EditNeeds::default(),
            _arch: PhantomData,
        }
    }

    /// Whether holes are skipped: for a change that clears leaves, not one that rewrites them.
    #[inline(always)]
    fn holes_ok(&self) -> bool {
        self.rewrite.is_none() || self.holes
    }
}

impl<A: Arch, H: PagingHandler> Visitor<A> for EditCheck<'_, A, H> {
    type Err = PagingError;
    type Down = ();
    const OCCUPANCY: Occupancy = Occupancy::Keeps;

    #[inline(always)]
    unsafe fn run(&mut self, t: TableRef<A, L1>, run: Run, (): ()) -> Result<(), PagingError> {
        // SAFETY: the run lies inside the live table, so every index is in bounds.
        let load = |k: usize| unsafe { t.load(run.first + k) };
        if let Some(op) = self.rewrite {
            if A::BREAK_BEFORE_MAKE && self.liveness == Liveness::LiveNoBreak {
                for k in 0..run.count {
                    let (pte, va) = (load(k), run.va::<A>(k));
                    if A::entry_kind::<L1>(pte) == EntryKind::Leaf {
                        refused::<A, L1>(self.liveness, pte, op.apply::<A, L1>(pte, va), va)?;
                    }
                }
            }
        }
        if self.rewrite.is_some() && self.holes {
            // A rewrite around holes goes entry by entry, skipping what is not a leaf.
            self.needs.hw_live = true;
        }
        // Last-level leaves are never split; only holes matter, and only if they are errors.
        if !self.holes_ok() {
            // The common case in a sweep or two with no branch: fold the run's entries into
            // their AND (and, if the arch asks, their OR), from which the arch can often tell
            // that all of them are leaves the MMU will not write. Otherwise, entry by entry.
            // Offline, nothing else writes the entries: only holes matter, and an OR of 0 (no
            // leaf writable by the MMU) leaves the arch's test at "all of them are leaves".
            let offline = self.liveness == Liveness::Offline;
            let all = if offline {
                // SAFETY: in bounds; offline, no MMU walks the table and we hold it mutably.
                unsafe {
                    t.read_words(run.first, run.count, |words| {
                        words.iter().fold(u64::MAX, |acc, &w| acc & w)
                    })
                }
            } else {
                (0..run.count).fold(u64::MAX, |acc, k| acc & load(k))
            };
            let any = || {
                if offline {
                    0
                } else {
                    (0..run.count).fold(0, |acc, k| acc | load(k))
                }
            };
            if !A::settled_leaves(all, any) {
                for k in 0..run.count {
                    let pte = load(k);
                    match A::entry_kind::<L1>(pte) {
                        EntryKind::Leaf => {
                            self.needs.hw_live |= !offline && A::hw_may_update::<L1>(pte);
                        }
                        // A marker is kept as it is: the apply pass must go entry by entry.
                        EntryKind::Marker => self.needs.hw_live = true,
                        EntryKind::Empty | EntryKind::Table => {
                            return Err(PagingError::NotMapped(A::unfold(run.va::<A>(k))));
                        }
                    }
                }
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
        match A::entry_kind::<L>(pte) {
            // Only last-level entries are markers.
            EntryKind::Marker => {}
            EntryKind::Empty if self.holes_ok() => {}
            EntryKind::Empty => return Err(PagingError::NotMapped(A::unfold(a))),
            EntryKind::Leaf => {
                // A split copies the leaf's state into every new leaf.
                self.needs.hw_live |= A::hw_may_update::<L>(pte);
                if let Some(Modify::Replace(delta, _)) = self.rewrite {
                    replace_aligned::<A>(L::DEPTH, a, b, full, delta)?;
                }
                if !full {
                    // Any table entry will do: a break is about the kind of entry.
                    refused::<A, L>(self.liveness, pte, A::table_entry(0), a)?;
                    self.needs.tables += split_cost::<A>(L::DEPTH, a, b);
                } else if let Some(op) = self.rewrite {
                    refused::<A, L>(self.liveness, pte, op.apply::<A, L>(pte, a), a)?;
                }
            }
            // Unmapping a whole subtree needs no look inside it.
            EntryKind::Table if full && self.rewrite.is_none() => {}
            EntryKind::Table => {
                // SAFETY: a table entry leads to a live table one down.
                return Ok(Step::Descend(unsafe {
                    below::<A, L, H, ()>(self.h, pte, ())
                }));
            }
        }
        Ok(Step::Skip)
    }
}

/// Whether a new address `pa = va + delta` suits the leaf at `depth` that holds `[a, b)` (all
/// of it if `full`): leaves keep their sizes, so the new address of a whole leaf must be
/// aligned to it, and a split at an edge leaves whole leaves one size down (or less) wherever
/// `[a, b)` holds an aligned one, whose new addresses must be aligned to them.
fn replace_aligned<A: Arch>(
    depth: u8,
    a: u64,
    b: u64,
    full: bool,
    delta: u64,
) -> Result<(), PagingError> {
    let whole = |shift: u32| {
        let size = 1u64 << shift;
        full && shift == arch::level_shift::<A>(depth)
            || a.div_ceil(size).saturating_mul(size).saturating_add(size) <= b
    };
    let mut d = depth;
    while d > 1 {
        let shift = arch::level_shift::<A>(d);
        if whole(shift) {
            let pa = a.wrapping_add(delta);
            if delta & ((1 << shift) - 1) != 0 {
                return Err(PagingError::UnalignedPa(PhysAddr::from(pa as usize)));
            }
            break;
        }
        d -= 1;
    }
    Ok(())
}

/// Tables needed to split the leaf at `depth` that holds `[a, b)` (not all of it) until
/// `[a, b)` is made of whole leaves. Run-time depth: arithmetic on the range, run once per
/// leaf at an edge.
fn split_cost<A: Arch>(depth: u8, a: u64, b: u64) -> usize {
    if depth == 1 {
        return 0;
    }
    let below = 1u64 << arch::level_shift::<A>(depth - 1);
    let partial = |x: u64, y: u64| {
        if x % below == 0 && y - x == below {
            0
        } else {
            split_cost::<A>(depth - 1, x, y)
        }
    };
    let first_end = ((a & !(below - 1)) + below).min(b);
    let mut cost = 1 + partial(a, first_end);
    if first_end < b {
        let last_start = (b - 1) & !(below - 1);
        if last_start >= first_end {
            cost += partial(last_start, b);
        }
    }
    cost
}

/// Replaces leaf `i` of `t`, which maps the (folded) address `va`, by a table of leaves one
/// level down with the same attributes and access state; returns the new table.
///
/// # Safety
///
/// `t` is live and owned by the caller, `i` in bounds, `pte` the leaf just loaded there, and
/// the stash holds a frame the check pass counted for this split.
pub(super) unsafe fn split<A: Arch, L: HasNext, H: PagingHandler>(
    h: &mut H,
    stash: &mut Stash,
    t: TableRef<A, L>,
    i: usize,
    va: u64,
    pte: u64,
) -> Below<A, L::Next, ()> {
    let va = entry_base::<A, L>(va);
    let (frame, next) = stash.take::<A, L::Next, H>(h, false);
    let entry = Descriptor::<A, L>::table(frame).bits();
    let fill = |leaf: u64| {
        let template = A::leaf_split::<L>(leaf);
        let base = A::leaf_addr::<L>(leaf);
        for j in 0..TableRef::<A, L::Next>::ENTRIES {
            let leaf_pa = base + j as u64 * TableRef::<A, L::Next>::SIZE;
            // SAFETY: in bounds; `next` is fresh and ours.
            unsafe { next.store(j, template | A::leaf_addr_bits::<L::Next>(leaf_pa)) };
        }
    };
    if stash.breaking::<A, L>(pte, entry) {
        // SAFETY: live table owned by the caller. The swap returns the leaf as last marked by
        // the MMU; once invalid, no MMU marks it again.
        let old = unsafe { t.swap(i, 0) };
        h.break_flush::<A>(
            crate::arch::from_va::<A>(A::unfold(va)),
            TableRef::<A, L>::SIZE as usize,
        );
        fill(old);
        // SAFETY: as above.
        unsafe { t.store(i, entry) };
    } else {
        // Built from the leaf as read; if the MMU marked it (accessed, dirty) meanwhile, the
        // exchange fails and the table is built again from what it wrote, so no mark is lost.
        let mut old = pte;
        loop {
            fill(old);
            // SAFETY: as above.
            match unsafe { t.compare_exchange(i, old, entry) } {
                Ok(()) => break,
                Err(now) => old = now,
            }
        }
    }
    Below {
        table: next,
        frame,
        down: (),
    }
}

/// Writes `change(old)` over the valid leaf `i` of `t`, which maps `[va, va + SIZE)`: in
/// place (atomically if the MMU may mark it), or as break-before-make where the table is [`Liveness::Live`]
/// and the change needs it; returns the leaf as the step that replaced it found it.
///
/// # Safety
///
/// `t` is live and owned by the caller, `i` in bounds, `old` the leaf just loaded there.
#[inline(always)]
pub(super) unsafe fn rewrite_leaf<A: Arch, L: Level, H: PagingHandler>(
    h: &mut H,
    liveness: Liveness,
    t: TableRef<A, L>,
    i: usize,
    va: u64,
    old: u64,
    change: impl Fn(u64) -> u64,
) -> u64 {
    if A::BREAK_BEFORE_MAKE && liveness == Liveness::Live && A::needs_break::<L>(old, change(old)) {
        // SAFETY: live table owned by the caller; see `split`.
        let old = unsafe { t.swap(i, 0) };
        h.break_flush::<A>(
            crate::arch::from_va::<A>(A::unfold(va)),
            TableRef::<A, L>::SIZE as usize,
        );
        // SAFETY: as above.
        unsafe { t.store(i, change(old)) };
        old
    } else {
        // SAFETY: as above.
        unsafe { t.update_loaded(i, old, change) }
    }
}

/// Apply pass of `protect_region`: rewrites every leaf in the range, splitting leaves at the
/// edges. [`EditCheck`] passed without holes and found `hw_live`.
struct ModifyApply<'a, A: Arch, H, R> {
    h: &'a mut H,
    stash: &'a mut Stash,
    op: Modify,
    hw_live: bool,
    report: R,
    _arch: PhantomData<A>,
}

impl<'a, A: Arch, H: PagingHandler, R: Reporter> ModifyApply<'a, A, H, R> {
    fn new(h: &'a mut H, stash: &'a mut Stash, op: Modify, hw_live: bool, report: R) -> Self {
        Self {
            h,
            stash,
            op,
            hw_live,
            report,
            _arch: PhantomData,
        }
    }
}

impl<A: Arch, H: PagingHandler, R: Reporter> Visitor<A> for ModifyApply<'_, A, H, R> {
    type Err = Infallible;
    type Down = ();
    const OCCUPANCY: Occupancy = Occupancy::Keeps;

    #[inline(always)]
    unsafe fn run(&mut self, t: TableRef<A, L1>, run: Run, (): ()) -> Result<(), Infallible> {
        let (op, liveness) = (self.op, self.stash.ctx.liveness);
        if R::REPORTS || (A::BREAK_BEFORE_MAKE && liveness == Liveness::Live) {
            // Entry by entry: each leaf reported as its atomic step made it; on a live AArch64
            // table, each change that needs it made as a break.
            for k in 0..run.count {
                let va = run.va::<A>(k);
                // SAFETY: in bounds of the live table the caller owns.
                let old = unsafe { t.load(run.first + k) };
                if A::entry_kind::<L1>(old) == EntryKind::Leaf {
                    // SAFETY: as above.
                    let prev = unsafe {
                        rewrite_leaf::<A, L1, H>(self.h, liveness, t, run.first + k, va, old, |o| {
                            op.apply::<A, L1>(o, va)
                        })
                    };
                    self.report.leaf::<A, L1>(va, op.apply::<A, L1>(prev, va));
                }
            }
            return Ok(());
        }
        // One loop per kind of change, so that the change is worked out once, not per page.
        let hw_live = self.hw_live;
        match op {
            Modify::Protect(flags) => {
                let template = A::leaf_template::<L1>(flags);
                // SAFETY: the run lies inside the live table the caller owns.
                unsafe {
                    modify_leaves::<A>(t, run, hw_live, |old, _| {
                        A::leaf_protect_with::<L1>(old, flags, template)
                    })
                }
            }
            Modify::Remap(delta) => {
                let remap = |old: u64, va: u64| {
                    (old & !A::leaf_addr_mask::<L1>())
                        | A::leaf_addr_bits::<L1>(va.wrapping_add(delta))
                };
                // SAFETY: as above.
                unsafe { modify_leaves::<A>(t, run, hw_live, remap) }
            }
            Modify::ClearState(clear) => {
                // SAFETY: as above.
                unsafe {
                    modify_leaves::<A>(t, run, hw_live, |old, _| {
                        A::leaf_clear_state::<L1>(old, clear)
                    })
                }
            }
            Modify::SetSoft(bits) => {
                // SAFETY: as above.
                unsafe {
                    modify_leaves::<A>(t, run, hw_live, |old, _| (old & !A::SOFT_BITS) | bits)
                }
            }
            Modify::Mark(mark) => {
                // SAFETY: as above.
                unsafe {
                    modify_leaves::<A>(t, run, hw_live, |old, _| A::leaf_mark::<L1>(old, mark))
                }
            }
            Modify::Replace(..) => {
                // SAFETY: as above.
                unsafe { modify_leaves::<A>(t, run, hw_live, |old, va| op.apply::<A, L1>(old, va)) }
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
        let op = self.op;
        let table = match A::entry_kind::<L>(pte) {
            EntryKind::Empty | EntryKind::Marker => return Ok(Step::Skip),
            EntryKind::Leaf if full => {
                let liveness = self.stash.ctx.liveness;
                // SAFETY: live table owned by the caller.
                let prev = unsafe {
                    rewrite_leaf::<A, L, H>(self.h, liveness, t, i, a, pte, |old| {
                        op.apply::<A, L>(old, a)
                    })
                };
                self.report.leaf::<A, L>(a, op.apply::<A, L>(prev, a));
                return Ok(Step::Skip);
            }
            // SAFETY: live table owned by the caller; the stash holds what the check counted.
            EntryKind::Leaf => unsafe { split::<A, L, H>(self.h, self.stash, t, i, a, pte) },
            // SAFETY: live table owned by the caller; a table entry leads to a live table.
            EntryKind::Table => unsafe {
                below::<A, L, H, ()>(self.h, op.grant::<A, L>(t, i, pte), ())
            },
        };
        Ok(Step::Descend(table))
    }
}

/// Rewrites every leaf of the last-level table `t` in `run` by `f(old, va)`.
///
/// # Safety
///
/// The run lies inside the live table `t`, which the caller owns, and holds leaves and markers
/// only (the check pass found no holes). `hw_live` is false only if the run holds leaves only
/// and the MMU can set no accessed or dirty bit in any of them.
#[inline(always)]
unsafe fn modify_leaves<A: Arch>(
    t: TableRef<A, L1>,
    run: Run,
    hw_live: bool,
    f: impl Fn(u64, u64) -> u64,
) {
    if !hw_live {
        // Every bit the MMU could set is set already, so it will not write these entries: a
        // plain loop the compiler may vectorize, with no compare-and-swap.
        // SAFETY: in bounds, the table is ours, and the MMU will not write these entries.
        unsafe {
            t.with_words(run.first, run.count, |words| {
                for (k, pte) in words.iter_mut().enumerate() {
                    *pte = f(*pte, run.va::<A>(k));
                }
            });
        }
        return;
    }
    for k in 0..run.count {
        // SAFETY: in bounds; markers are skipped (the check pass found no holes).
        unsafe {
            let old = t.load(run.first + k);
            if A::entry_kind::<L1>(old) == EntryKind::Leaf {
                t.update_loaded(run.first + k, old, |old| f(old, run.va::<A>(k)));
            }
        }
    }
}

/// A single-leaf edit: `op` on the leaf of `depth` that starts at folded `va`, in one atomic
/// step (or as break-before-make where the table is [`Liveness::Live`] and the change needs it). The result
/// is the leaf as the operation that changed it found it, with every mark the MMU made.
struct EditOne<'a, H> {
    h: &'a mut H,
    liveness: Liveness,
    va: u64,
    depth: u8,
    op: Modify,
}

impl<H: PagingHandler> EditOne<'_, H> {
    /// `op` on the leaf `i` of `t`.
    ///
    /// # Safety
    ///
    /// `t` is live and owned by the caller, `i` in bounds, and entry `i` is the leaf.
    #[inline(always)]
    unsafe fn edit<A: Arch, L: Level>(
        &mut self,
        t: TableRef<A, L>,
        i: usize,
    ) -> Result<AccessState, PagingError> {
        // SAFETY: forwarded.
        let pte = unsafe { t.load(i) };
        let (va, op) = (self.va, self.op);
        if self.liveness == Liveness::LiveNoBreak
            && A::BREAK_BEFORE_MAKE
            && A::needs_break::<L>(pte, op.apply::<A, L>(pte, va))
        {
            return Err(PagingError::NeedsBreak(A::unfold(va)));
        }
        // SAFETY: forwarded.
        let old = unsafe {
            rewrite_leaf::<A, L, H>(self.h, self.liveness, t, i, va, pte, |old| {
                op.apply::<A, L>(old, va)
            })
        };
        Ok(A::leaf_state::<L>(old))
    }
}

impl<A: Arch, H: PagingHandler> PointVisitor<A> for EditOne<'_, H> {
    type Out = Result<AccessState, PagingError>;
    type Down = ();
    const OCCUPANCY: Occupancy = Occupancy::Keeps;

    #[inline(always)]
    unsafe fn last(&mut self, t: TableRef<A, L1>, i: usize, (): ()) -> Self::Out {
        // SAFETY: forwarded: the leaf lies here.
        unsafe { self.edit::<A, L1>(t, i) }
    }

    #[inline(always)]
    unsafe fn entry<L: HasNext>(
        &mut self,
        t: TableRef<A, L>,
        i: usize,
        (): (),
    ) -> PointStep<A, L::Next, (), Self::Out> {
        if L::DEPTH == self.depth {
            // SAFETY: forwarded: the leaf lies here.
            return PointStep::Stop(unsafe { self.edit::<A, L>(t, i) });
        }
        // SAFETY: live table owned by the caller; the leaf lies below this table entry.
        let pte = unsafe { self.op.grant::<A, L>(t, i, t.load(i)) };
        // SAFETY: as above.
        PointStep::Descend(unsafe { child::<A, L, H>(self.h, pte) }, ())
    }
}

/// `op` on the leaf of `depth` that starts at folded `va`; the leaf as the step that changed
/// it found it.
///
/// # Errors
///
/// [`PagingError::NeedsBreak`] if the change needs a break and the table is [`Liveness::LiveNoBreak`]; nothing
/// changed.
///
/// # Safety
///
/// `t` is a live table of the tree the caller owns (`&mut PageTable`), reached through `h`, and
/// a leaf of `depth` starts at `va` below it.
pub(crate) unsafe fn edit_one<A: Arch, L: Level, H: PagingHandler>(
    h: &mut H,
    liveness: Liveness,
    t: TableRef<A, L>,
    va: u64,
    depth: u8,
    op: Modify,
) -> Result<AccessState, PagingError> {
    let mut v = EditOne {
        h,
        liveness,
        va,
        depth,
        op,
    };
    // SAFETY: forwarded.
    unsafe { L::point::<A, _>(&mut v, t, va, ()) }
}
