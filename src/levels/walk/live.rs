//! Live-entry counts: how many non-empty entries a last-level table holds, kept in bits of the
//! table entry that links it which the hardware ignores ([`Arch::LIVE_COUNT`]), so that a
//! single-page unmap learns without a scan whether it emptied the table.
//!
//! The invariant: a counted entry's count is the number of non-zero entries of the table it
//! links. Every walk that can make an entry of a last-level table zero or non-zero says how it
//! keeps that ([`Occupancy`]): it leaves zero-ness alone, it keeps the count itself (the
//! single-page map and unmaps, a map's apply pass), or the walk drops the count of every
//! last-level table it went into ([`forget`]). A table that is not counted is counted by a scan
//! the first time a single-page unmap needs to know, and from then on kept.
//!
//! Counts are this crate's alone: a tree adopted from elsewhere may hold anything in those bits,
//! so adopting one drops every count in it first ([`scrub`]).
//!
//! The count lives in an entry an MMU may be walking. A counted entry also carries
//! [`Arch::LIVE_COUNT_SETTLED`], after which the MMU never writes it, so a plain store of a new
//! count cannot lose a hardware update; the store that first makes an entry counted is atomic.

use core::convert::Infallible;

use super::{Run, Span, Step, Visitor, decode, into};
use crate::arch::{self, Arch};
use crate::handler::PagingHandler;
use crate::levels::{Entry, EntryKind, HasNext, L1, L2, Level, TableRef};
use crate::state::RootRange;

/// What a walk does to whether entries of last-level tables are empty.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Occupancy {
    /// Leaves it alone: reads, protections, access-state edits, remaps.
    Keeps,
    /// Keeps the counts right itself.
    Counts,
    /// May change it: the walk drops the count of every last-level table it goes into.
    Changes,
}

const fn shift<A: Arch>() -> u32 {
    A::LIVE_COUNT.trailing_zeros()
}

/// Whether entries of level-`L` tables link last-level tables and carry counts.
#[inline(always)]
pub(crate) const fn here<A: Arch, L: Level>() -> bool {
    A::LIVE_COUNT != 0 && L::DEPTH == 2
}

/// The count table entry `pte` holds, if it is counted.
#[inline(always)]
fn count<A: Arch>(pte: u64) -> Option<usize> {
    match (pte & A::LIVE_COUNT) >> shift::<A>() {
        0 => None,
        field => Some(field as usize - 1),
    }
}

/// Table entry `pte` counting `n` live entries.
#[inline(always)]
fn with_count<A: Arch>(pte: u64, n: usize) -> u64 {
    (pte & !A::LIVE_COUNT) | ((n as u64 + 1) << shift::<A>()) | A::LIVE_COUNT_SETTLED
}

/// Table entry `pte`, not counted.
#[inline(always)]
fn uncounted<A: Arch>(pte: u64) -> u64 {
    pte & !A::LIVE_COUNT
}

/// Writes `f(entry)` over table entry `i` of `t`, loaded as `pte`: a plain store if the MMU
/// will not write the entry, else an atomic update of what is there.
///
/// # Safety
///
/// `t` is live and owned by the caller, `i` in bounds, `pte` just loaded from it.
#[inline(always)]
unsafe fn put<A: Arch, L: Level>(t: TableRef<A, L>, i: usize, pte: u64, f: impl Fn(u64) -> u64) {
    let settled = A::LIVE_COUNT_SETTLED;
    // SAFETY: forwarded.
    unsafe {
        if pte & settled == settled {
            t.store(i, f(pte));
        } else {
            t.update_loaded(i, pte, f);
        }
    }
}

/// A table entry of a level-`L` table linking a table just filled with `n` non-empty entries
/// and linked nowhere yet: `entry`, counted where the mode counts.
#[inline(always)]
pub(crate) fn fresh<A: Arch, L: Level>(entry: u64, n: usize) -> u64 {
    if here::<A, L>() {
        with_count::<A>(entry, n)
    } else {
        entry
    }
}

/// After `n` empty entries of the last-level table that entry `i` of `t` links became
/// non-empty: its count, if it has one, goes up by `n`.
///
/// # Safety
///
/// `t` is live and owned by the caller, `i` in bounds, and the entry links that table.
#[inline(always)]
pub(crate) unsafe fn added<A: Arch, L: HasNext>(t: TableRef<A, L>, i: usize, n: usize) {
    if !here::<A, L>() {
        return;
    }
    // SAFETY: forwarded.
    let pte = unsafe { t.load(i) };
    if pte & A::LIVE_COUNT != 0 {
        // Counted, so settled (only `with_count` writes counts): a plain store, and the count
        // plus one plus `n` stays inside the field (at most the entries plus one).
        debug_assert!(pte & A::LIVE_COUNT_SETTLED == A::LIVE_COUNT_SETTLED);
        // SAFETY: forwarded.
        unsafe { t.store(i, pte + ((n as u64) << shift::<A>())) };
    }
}

/// After one non-empty entry of the table below table entry `i` of `t` became empty: whether
/// that table is empty now. A counted entry's count goes down; one that is not counted is
/// counted now, by a scan. Where the mode does not count, a scan.
///
/// # Safety
///
/// `t` is live, owned by the caller and reached through `h`, `i` in bounds, and the entry a
/// table entry.
#[inline(always)]
pub(crate) unsafe fn removed_one<A: Arch, L: HasNext, H: PagingHandler>(
    h: &H,
    t: TableRef<A, L>,
    i: usize,
) -> bool {
    // SAFETY: forwarded.
    let pte = unsafe { t.load(i) };
    // SAFETY: a table entry of a live table leads to a live table one down.
    let child = unsafe { super::child::<A, L, H>(h, pte) };
    if !here::<A, L>() {
        // SAFETY: live table.
        return unsafe { child.is_zero() };
    }
    match count::<A>(pte) {
        // One of the `c` it counted went: `c` is at least 1 (the invariant; a count of 0
        // here would be a broken one, and is not trusted).
        Some(c) if c > 0 => {
            // Counted, so settled: a plain store of the count one lower.
            debug_assert!(pte & A::LIVE_COUNT_SETTLED == A::LIVE_COUNT_SETTLED);
            // SAFETY: forwarded.
            unsafe { t.store(i, pte - (1 << shift::<A>())) };
            c == 1
        }
        _ => {
            // SAFETY: live table.
            let n = unsafe { child.live_entries() };
            // SAFETY: forwarded.
            unsafe { put(t, i, pte, |p| with_count::<A>(p, n)) };
            n == 0
        }
    }
}

/// The table entry that links a last-level table: where its count is kept.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CountSlot<A: Arch> {
    /// The table, offset to the entry: its entry 0 is the slot.
    entry: TableRef<A, L2>,
}

impl<A: Arch> CountSlot<A> {
    /// Entry `i` of `t`, a level-2 table.
    ///
    /// # Safety
    ///
    /// `L` is [`L2`].
    #[inline(always)]
    pub(crate) unsafe fn new<L: Level>(t: TableRef<A, L>, i: usize) -> Self {
        Self {
            // SAFETY: `L` is `L2` (forwarded), and entry `i` is in bounds of `t`.
            entry: unsafe { t.retyped::<L2>().offset(i) },
        }
    }

    /// A placeholder that is never used.
    pub(crate) fn dangling() -> Self {
        Self {
            entry: TableRef::dangling(),
        }
    }

    /// Counts one entry of the linked table down, if the count shows it keeps another one
    /// after (so that no table empties): true if it did. False (nothing changed) where the
    /// table is not counted or the entry is its last.
    ///
    /// # Safety
    ///
    /// The slot's table is live and owned by the caller, its entry links a table, and the
    /// caller is about to clear a non-empty entry of that table.
    #[inline(always)]
    pub(crate) unsafe fn removed_one_of_many(self) -> bool {
        if !here::<A, L2>() {
            return false;
        }
        // SAFETY: forwarded.
        let pte = unsafe { self.entry.load(0) };
        match count::<A>(pte) {
            Some(c) if c >= 2 => {
                // Counted, so settled: a plain store.
                // SAFETY: forwarded.
                unsafe { self.entry.store(0, pte - (1 << shift::<A>())) };
                true
            }
            _ => false,
        }
    }

    /// [`added`] at this entry.
    ///
    /// # Safety
    ///
    /// As for [`added`]: the slot's table is live and owned by the caller, and its entry still
    /// links the table whose entries were filled.
    #[inline(always)]
    pub(crate) unsafe fn added(self, n: usize) {
        // SAFETY: forwarded.
        unsafe { added::<A, L2>(self.entry, 0, n) }
    }
}

/// Drops the count of entry `i` of `t`, if it is a table entry linking a last-level table and
/// has one: a walk that went into that table may have changed which of its entries are empty.
///
/// # Safety
///
/// `t` is live and owned by the caller, `i` in bounds.
#[inline(always)]
pub(crate) unsafe fn forget<A: Arch, L: HasNext>(t: TableRef<A, L>, i: usize) {
    if !here::<A, L>() {
        return;
    }
    // SAFETY: forwarded.
    let pte = unsafe { t.load(i) };
    // Only a table entry: a leaf's bits there are its own (x86: soft bits, protection key).
    if pte & A::LIVE_COUNT != 0 && A::entry_kind::<L>(pte) == EntryKind::Table {
        // SAFETY: forwarded.
        unsafe { put(t, i, pte, uncounted::<A>) };
    }
}

/// Drops every count in the tree below `t` (the root), but not below the root entries in
/// `borrowed`, which link another table's tree.
struct Scrub<'a, H> {
    h: &'a H,
    borrowed: RootRange,
}

impl<A: Arch, H: PagingHandler> Visitor<A> for Scrub<'_, H> {
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
        if L::DEPTH == arch::root_depth::<A>() && self.borrowed.contains(at.i) {
            return Ok(Step::Skip);
        }
        if L::DEPTH == 2 {
            // SAFETY: an entry of a live table the caller owns.
            unsafe { forget::<A, L>(t, at.i) };
            return Ok(Step::Skip);
        }
        // SAFETY: an entry of the live table.
        let Entry::Table(frame) = decode::<A, L>(unsafe { t.load(at.i) }) else {
            return Ok(Step::Skip);
        };
        // SAFETY: a decoded table entry's table is live.
        Ok(Step::Descend(unsafe {
            into::<A, L::Next, H, ()>(self.h, frame, ())
        }))
    }
}

/// Drops every count in the tree at root `t` except below the root entries in `borrowed`.
///
/// # Safety
///
/// `t` is the live root of a tree the caller owns, reached through `h`, and the root entries
/// in `borrowed` are the only ones that link tables of another tree.
pub(crate) unsafe fn scrub<A: Arch, H: PagingHandler>(
    h: &H,
    t: TableRef<A, A::Root>,
    borrowed: RootRange,
) {
    if A::LIVE_COUNT == 0 {
        return;
    }
    let mut v = Scrub { h, borrowed };
    // SAFETY: forwarded; the root's whole span.
    let Ok(()) = unsafe {
        <A::Root as super::Descend>::range::<A, _>(&mut v, t, 0, super::span::<A, A::Root>(), ())
    };
}
