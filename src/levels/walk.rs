//! The walk: every [`PageTable`](crate::PageTable) operation as a recursion over the level
//! types. Each function is generic over the level `L` and calls itself for `L::Below` behind an
//! `if L::DEPTH > 1` on a constant, so each level is its own monomorphized copy, the recursion
//! unrolls at compile time, and no level is matched at run time.
//!
//! Addresses here are folded (see [`Arch::fold`]): `[s, e)` always lies inside the span of the
//! table at hand and is aligned to the granule.
//!
//! Changes come in two passes. A check pass reads the tree, finds every error and counts the
//! table frames the change will need; the caller reserves those frames in a [`Stash`]; then an
//! apply pass, which cannot fail, makes the change. So an error changes nothing.

use memory_addr::PhysAddr;

use super::{EntryKind, Level, TableRef};
use crate::arch::{self, Arch};
use crate::error::PagingError;
use crate::flags::{AccessState, MappingFlags, PageSize};
use crate::handler::PagingHandler;
use crate::retired::{self, Chain};
use crate::state::RootRange;

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
    #[inline(always)]
    pub(crate) fn decode<A: Arch, L: Level>(va: u64, pte: u64) -> Self {
        RawLeaf {
            va,
            pa: A::leaf_addr(pte, L::DEPTH),
            size: PageSize::from_shift(TableRef::<A, L>::SHIFT).unwrap_or(PageSize::SIZE_4K),
            flags: A::leaf_flags(pte, L::DEPTH),
            state: A::leaf_state(pte, L::DEPTH),
        }
    }
}

impl RawLeaf {
    /// The leaf with the flags that the table entries folded into `path` let through.
    #[inline(always)]
    pub(crate) fn through<A: Arch>(mut self, path: u64) -> Self {
        if A::TABLE_GATES {
            self.flags = A::path_restrict(path, self.flags);
        }
        self
    }
}

/// What the apply pass does about a change that needs break-before-make.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Breaks {
    /// The table is offline: write the new entry over the old one.
    InPlace,
    /// Invalid entry, [`PagingHandler::break_flush`], new entry.
    Make,
    /// The check pass refused every such change, so the apply pass meets none.
    Refuse,
}

/// What a change must know of the table besides its tree.
#[derive(Clone, Copy)]
pub(crate) struct Ctx {
    /// What to do about changes that need break-before-make.
    pub breaks: Breaks,
    /// Whether an MMU may walk the table, so that unlinked tables are retired (kept until the
    /// flush) instead of freed at once.
    pub defer: bool,
    /// The root's physical address, which names the table in retire records.
    pub owner: u64,
    /// Root entries shared with borrowers: the tables they link are never unlinked.
    pub shared: RootRange,
}

impl Ctx {
    /// An offline table that shares nothing: entries replaced in place, tables freed at once.
    pub(crate) const OFFLINE: Self = Self {
        breaks: Breaks::InPlace,
        defer: false,
        owner: 0,
        shared: RootRange::new(0, 0),
    };

    /// Whether the table that entry `i` of a level-`L` table links must stay linked.
    #[inline(always)]
    fn keeps<A: Arch, L: Level>(&self, i: usize) -> bool {
        L::DEPTH == arch::root_depth::<A>() && self.shared.contains(i)
    }
}

/// Table frames reserved for a change, chained through their first word (and a second chain
/// of spare frames for retire records), the change's [`Ctx`], and the tables it retired.
pub(crate) struct Stash {
    head: u64,
    count: usize,
    bytes: usize,
    /// Frames reserved for retire records, chained like `head`.
    spare: u64,
    pub(crate) ctx: Ctx,
    /// The tables the change unlinked from a live table, for its `Flush`.
    retired: Chain,
}

const NO_FRAME: u64 = u64::MAX;

/// The first word of the frame at `pa`, through the handler.
fn frame_ptr<H: PagingHandler>(h: &H, pa: u64) -> *mut u64 {
    h.phys_to_virt(PhysAddr::from(pa as usize))
        .as_ptr()
        .cast::<u64>()
}

/// One table frame of `bytes` from the handler, checked before anything uses it: aligned to
/// `bytes`, inside the mode's physical-address width, reached through an 8-aligned pointer, and
/// not at physical address 0 where the mode cannot link a table there.
///
/// # Errors
///
/// [`PagingError::OutOfFrames`] if the handler has none; [`PagingError::BadFrame`] if the frame
/// fails a check, after giving it back.
pub(crate) fn alloc_frame<A: Arch, H: PagingHandler>(
    h: &mut H,
    bytes: usize,
) -> Result<u64, PagingError> {
    let frame = h.alloc_table(bytes).ok_or(PagingError::OutOfFrames)?;
    let pa = frame.as_usize() as u64;
    let fits = pa
        .checked_add(bytes as u64 - 1)
        .is_some_and(|last| last & !arch::pa_mask::<A>() == 0);
    let ok = pa % bytes as u64 == 0
        && fits
        && (A::TABLE_AT_PA_0 || pa != 0)
        && h.phys_to_virt(frame).as_ptr() as usize % 8 == 0;
    if !ok {
        // SAFETY: the frame came from `alloc_table(bytes)` a moment ago and nothing uses it.
        unsafe { h.free_table(frame, bytes) };
        return Err(PagingError::BadFrame(frame));
    }
    Ok(pa)
}

impl Stash {
    /// Allocates `count` frames of `bytes` for tables of mode `A`, or none at all. Each frame
    /// is checked ([`alloc_frame`]); if the handler panics, what was taken is given back as the
    /// panic unwinds.
    ///
    /// # Errors
    ///
    /// [`PagingError::OutOfFrames`] if the handler runs out, [`PagingError::BadFrame`] if it
    /// returns a frame the mode cannot use; what was taken is given back.
    pub(crate) fn reserve<A: Arch, H: PagingHandler>(
        h: &mut H,
        count: usize,
        bytes: usize,
    ) -> Result<Self, PagingError> {
        /// Gives the frames back if the reservation does not finish.
        struct Unfinished<'h, H: PagingHandler> {
            h: &'h mut H,
            stash: Stash,
        }
        impl<H: PagingHandler> Drop for Unfinished<'_, H> {
            fn drop(&mut self) {
                let bytes = self.stash.bytes;
                let stash = core::mem::replace(&mut self.stash, Stash::empty(bytes));
                stash.release(self.h);
            }
        }
        let mut taking = Unfinished {
            h,
            stash: Self::empty(bytes),
        };
        while taking.stash.count < count {
            let pa = alloc_frame::<A, H>(taking.h, bytes)?;
            let link = taking
                .h
                .phys_to_virt(PhysAddr::from(pa as usize))
                .as_ptr()
                .cast::<u64>();
            // SAFETY: the handler just gave us this frame, checked 8-aligned; its first word is
            // ours to use.
            unsafe { link.write(taking.stash.head) };
            taking.stash.head = pa;
            taking.stash.count += 1;
        }
        Ok(core::mem::replace(&mut taking.stash, Self::empty(bytes)))
    }

    const fn empty(bytes: usize) -> Self {
        Self {
            head: NO_FRAME,
            count: 0,
            bytes,
            spare: NO_FRAME,
            ctx: Ctx::OFFLINE,
            retired: Chain::EMPTY,
        }
    }

    /// The same stash, for a change in `ctx`, with room reserved for recording `unlinks`
    /// retired tables if the change retires rather than frees.
    ///
    /// # Errors
    ///
    /// As for [`reserve`](Self::reserve); the stash is given back first.
    pub(crate) fn for_change<A: Arch, H: PagingHandler>(
        mut self,
        h: &mut H,
        ctx: Ctx,
        unlinks: usize,
    ) -> Result<Self, PagingError> {
        self.ctx = ctx;
        if ctx.defer && unlinks > 0 {
            match Self::reserve::<A, H>(h, unlinks.div_ceil(retired::capacity::<A>()), self.bytes) {
                // The spares' frames move to this stash, which gives them back.
                Ok(spares) => self.spare = spares.head,
                Err(e) => {
                    self.release(h);
                    return Err(e);
                }
            }
        }
        Ok(self)
    }

    /// Room for one more retire record: in the last retire frame, a spare one, or (for a change
    /// that reserved none) a frame taken from the handler now. False if none can be had: the
    /// caller then leaves the table linked.
    fn retire_room<A: Arch, H: PagingHandler>(&mut self, h: &mut H) -> bool {
        if !self.ctx.defer || self.retired.has_room::<A>() {
            return true;
        }
        let pa = if self.spare != NO_FRAME {
            let pa = self.spare;
            // SAFETY: the first word of a stashed frame is its link.
            self.spare = unsafe { frame_ptr(h, pa).read() };
            pa
        } else {
            match alloc_frame::<A, H>(h, self.bytes) {
                Ok(pa) => pa,
                Err(_) => return false,
            }
        };
        // SAFETY: the frame is ours alone (spare or just allocated, checked 8-aligned) and of
        // the size retire frames have.
        unsafe {
            self.retired
                .push_frame(frame_ptr(h, pa), pa, self.ctx.owner)
        };
        true
    }

    /// Hands the table at `pa` (level `L`), just unlinked, to the change's end: freed at once
    /// with everything below it if the table is offline, else recorded for the `Flush`.
    ///
    /// # Safety
    ///
    /// The subtree is owned by the caller and linked from nowhere any more, and
    /// [`retire_room`](Self::retire_room) returned true since the last record.
    unsafe fn retire<A: Arch, L: Level, H: PagingHandler>(&mut self, h: &mut H, pa: u64) {
        if self.ctx.defer {
            // SAFETY: `retire_room` made room (caller).
            unsafe { self.retired.push(pa, L::DEPTH) };
        } else {
            // SAFETY: forwarded from the caller.
            unsafe { free_subtree::<A, L, H>(h, pa) };
        }
    }

    /// [`retire`](Self::retire) for a table known to hold only empty entries: its frame alone
    /// goes, without a look at its entries.
    ///
    /// # Safety
    ///
    /// As for `retire`, and every entry of the table is zero.
    unsafe fn retire_empty<A: Arch, L: Level, H: PagingHandler>(&mut self, h: &mut H, pa: u64) {
        if self.ctx.defer {
            // SAFETY: `retire_room` made room (caller).
            unsafe { self.retired.push(pa, retired::EMPTY | L::DEPTH) };
        } else {
            // SAFETY: the table is unlinked, empty, and came from `alloc_table` with this size.
            unsafe { h.free_table(PhysAddr::from(pa as usize), TableRef::<A, L>::BYTES) };
        }
    }

    /// The tables the change retired, for its `Flush`; the unused frames go back.
    pub(crate) fn finish<H: PagingHandler>(mut self, h: &mut H) -> Chain {
        let retired = self.retired.take();
        self.release(h);
        retired
    }

    /// Takes a reserved frame, zeroed unless the caller will write every entry. The check pass
    /// counted it, so one is there.
    fn take<A: Arch, L: Level, H: PagingHandler>(
        &mut self,
        h: &H,
        zero: bool,
    ) -> (u64, TableRef<A, L>) {
        debug_assert!(
            self.count > 0 && self.head != NO_FRAME,
            "check pass under-counted frames"
        );
        debug_assert_eq!(self.bytes, TableRef::<A, L>::BYTES);
        let pa = self.head;
        // SAFETY: `pa` is a frame this stash holds; nothing else sees it.
        let table = unsafe { TableRef::<A, L>::from_pa(h, pa) };
        // SAFETY: the first word of a stashed frame is its link.
        self.head = unsafe {
            h.phys_to_virt(PhysAddr::from(pa as usize))
                .as_ptr()
                .cast::<u64>()
                .read()
        };
        self.count -= 1;
        if zero {
            // SAFETY: the frame is unlinked and ours.
            unsafe { table.zero_fresh() };
        }
        (pa, table)
    }

    /// Takes a reserved frame for a table at level `L`, zeroed; its address.
    pub(crate) fn take_zeroed<A: Arch, L: Level, H: PagingHandler>(&mut self, h: &H) -> u64 {
        self.take::<A, L, H>(h, true).0
    }

    /// Gives back whatever is left (retired tables are not: see [`finish`](Self::finish)).
    pub(crate) fn release<H: PagingHandler>(mut self, h: &mut H) {
        for head in [&mut self.head, &mut self.spare] {
            while *head != NO_FRAME {
                let pa = *head;
                // SAFETY: the first word of a stashed frame is its link.
                *head = unsafe { frame_ptr(h, pa).read() };
                // SAFETY: the frame came from `alloc_table(self.bytes)` and is referenced
                // nowhere.
                unsafe { h.free_table(PhysAddr::from(pa as usize), self.bytes) };
            }
        }
        self.count = 0;
    }

    /// Whether a change from `old` to `new` at level `L` is made as break-before-make.
    #[inline(always)]
    fn breaking<A: Arch, L: Level>(&self, old: u64, new: u64) -> bool {
        A::BREAK_BEFORE_MAKE
            && self.ctx.breaks == Breaks::Make
            && A::needs_break(old, new, L::DEPTH)
    }

    /// Whether every reserved frame was used.
    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// The part of `[s, e)` inside the entry that holds `a`, and whether it covers that entry.
#[inline(always)]
fn entry_span<A: Arch, L: Level>(a: u64, e: u64) -> (u64, bool) {
    let start = a & !(TableRef::<A, L>::SIZE - 1);
    let end = start + TableRef::<A, L>::SIZE;
    let b = if e < end { e } else { end };
    (b, a == start && b == end)
}

/// One entry of a level-`L` table that a range touches: its index, the part `[a, b)` of the
/// range inside it, and whether that part is the whole entry.
#[derive(Clone, Copy)]
struct Span {
    i: usize,
    a: u64,
    b: u64,
    full: bool,
}

/// The entries of a level-`L` table that `[s, e)` touches, in order.
#[inline(always)]
fn spans<A: Arch, L: Level>(s: u64, e: u64) -> impl Iterator<Item = Span> {
    let mut a = s;
    core::iter::from_fn(move || {
        (a < e).then(|| {
            let (b, full) = entry_span::<A, L>(a, e);
            let span = Span {
                i: TableRef::<A, L>::index(a),
                a,
                b,
                full,
            };
            a = b;
            span
        })
    })
}

/// # Safety (for every `unsafe fn` below that takes a `TableRef`)
///
/// The table is live, reached through `h`, at level `L` of a tree that the caller owns
/// (`&mut PageTable` for functions that write), and `[s, e)` lies inside its span.
#[inline(always)]
unsafe fn child<A: Arch, L: Level, H: PagingHandler>(h: &H, pte: u64) -> TableRef<A, L::Below> {
    // SAFETY: `pte` is a table entry of a live table, so it points to a live table one down.
    unsafe { TableRef::from_pa(h, A::table_addr(pte)) }
}

/// The leaf translating `va`, if any, with the flags the whole walk lets through.
pub(crate) unsafe fn query<A: Arch, L: Level, H: PagingHandler>(
    h: &H,
    t: TableRef<A, L>,
    va: u64,
) -> Option<RawLeaf> {
    // SAFETY: forwarded.
    unsafe { query_from::<A, L, H>(h, t, va, A::PATH_START) }
}

/// [`query`] below table entries folded into `path` ([`Arch::path_step`]).
unsafe fn query_from<A: Arch, L: Level, H: PagingHandler>(
    h: &H,
    t: TableRef<A, L>,
    va: u64,
    path: u64,
) -> Option<RawLeaf> {
    // SAFETY: the index is masked into bounds; the table is live (function contract).
    let pte = unsafe { t.load(TableRef::<A, L>::index(va)) };
    match A::entry_kind(pte, L::DEPTH) {
        EntryKind::Empty => None,
        EntryKind::Leaf => Some(
            RawLeaf::decode::<A, L>(va & !(TableRef::<A, L>::SIZE - 1), pte).through::<A>(path),
        ),
        // SAFETY: a table entry at depth > 1 leads to a live table one down.
        EntryKind::Table if L::DEPTH > 1 => unsafe {
            query_from::<A, L::Below, H>(h, child::<A, L, H>(h, pte), va, A::path_step(path, pte))
        },
        EntryKind::Table => None,
    }
}

/// The physical address of the last-level table on the way to folded `va`, if every entry
/// from `t` down to it is a table entry, and the table entries on the way folded into `path`
/// ([`Arch::path_step`]). `t` is at depth 2 or more. Where `grant` is given, each of those
/// entries is first made to let through what leaves with those flags allow
/// ([`Arch::table_grant`]), so the walk writes: the caller owns the tree.
pub(crate) unsafe fn last_table_pa<A: Arch, L: Level, H: PagingHandler>(
    h: &H,
    t: TableRef<A, L>,
    va: u64,
    path: u64,
    grant: Option<MappingFlags>,
) -> Option<(u64, u64)> {
    let i = TableRef::<A, L>::index(va);
    // SAFETY: masked index, live table.
    let mut pte = unsafe { t.load(i) };
    if L::DEPTH < 2 || A::entry_kind(pte, L::DEPTH) != EntryKind::Table {
        return None;
    }
    if let Some(flags) = grant {
        // SAFETY: masked index, live table owned by the caller (who asked for grants).
        pte = unsafe { grant_entry::<A, L>(t, i, pte, flags) };
    }
    let path = A::path_step(path, pte);
    if L::DEPTH == 2 {
        return Some((A::table_addr(pte), path));
    }
    // SAFETY: a table entry leads to a live table one down.
    unsafe { last_table_pa::<A, L::Below, H>(h, child::<A, L, H>(h, pte), va, path, grant) }
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
unsafe fn grant_entry<A: Arch, L: Level>(
    t: TableRef<A, L>,
    i: usize,
    pte: u64,
    flags: MappingFlags,
) -> u64 {
    if A::TABLE_GATES && A::table_grant(pte, flags) != pte {
        // SAFETY: forwarded.
        let old = unsafe { t.update_loaded(i, pte, |p| A::table_grant(p, flags)) };
        A::table_grant(old, flags)
    } else {
        pte
    }
}

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
        if self.exact_depth != 0 {
            return self.exact_depth == L::DEPTH;
        }
        if L::DEPTH == arch::root_depth::<A>() && self.shared.contains(TableRef::<A, L>::index(a)) {
            return false;
        }
        full && (L::DEPTH == 1
            || (TableRef::<A, L>::LEAF_OK
                && self.huge
                && a.wrapping_add(self.delta) % TableRef::<A, L>::SIZE == 0))
    }
}

/// Check pass of a map: errors, the number of tables the map will create, and the number of
/// (empty) tables its leaves replace. `refuse` refuses a leaf over a table where that needs
/// break-before-make.
pub(crate) unsafe fn map_check<A: Arch, L: Level, H: PagingHandler>(
    h: &H,
    t: TableRef<A, L>,
    s: u64,
    e: u64,
    req: &MapReq,
    refuse: bool,
) -> Result<EditNeeds, PagingError> {
    let mut need = EditNeeds::default();
    for Span { i, a, b, full } in spans::<A, L>(s, e) {
        // SAFETY: masked index, live table.
        let pte = unsafe { t.load(i) };
        let leaf_here = req.leaf_here::<A, L>(a, full);
        match A::entry_kind(pte, L::DEPTH) {
            EntryKind::Empty if leaf_here || L::DEPTH == 1 => {}
            EntryKind::Empty => need.tables += 1 + fresh_tables::<A, L::Below>(a, b, req),
            EntryKind::Leaf => return Err(PagingError::AlreadyMapped(A::unfold(a))),
            EntryKind::Table if L::DEPTH == 1 => {
                return Err(PagingError::AlreadyMapped(A::unfold(a)));
            }
            EntryKind::Table => {
                // SAFETY: a table entry leads to a live table one down.
                let next = unsafe { child::<A, L, H>(h, pte) };
                if leaf_here {
                    // A leaf may replace a table only if nothing is mapped below it.
                    // SAFETY: as above.
                    if let Some(va) = unsafe { first_leaf::<A, L::Below, H>(h, next, a) } {
                        return Err(PagingError::AlreadyMapped(A::unfold(va)));
                    }
                    if refuse && A::BREAK_BEFORE_MAKE {
                        // Table to block (Arm ARM D8.16.1).
                        return Err(PagingError::NeedsBreak(A::unfold(a)));
                    }
                    need.unlinks += 1;
                } else {
                    // SAFETY: as above.
                    need.add(unsafe { map_check::<A, L::Below, H>(h, next, a, b, req, refuse)? });
                }
            }
        }
    }
    Ok(need)
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
            1 + fresh_tables::<A, L::Below>(a, b, req)
        }
    };
    let (first_end, _) = entry_span::<A, L>(s, e);
    if first_end == e {
        return cost(s, e);
    }
    let last_start = (e - 1) & !(size - 1);
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

/// Apply pass of a map; [`map_check`] passed and `stash` holds what it counted.
///
/// A `fresh` table was just taken from the stash and is linked nowhere yet: no walker sees it,
/// so it is filled with plain stores, and if the range covers it whole it was not zeroed first
/// (every entry gets written).
pub(crate) unsafe fn map_apply<A: Arch, L: Level, H: PagingHandler>(
    h: &mut H,
    stash: &mut Stash,
    t: TableRef<A, L>,
    s: u64,
    e: u64,
    req: &MapReq,
    fresh: bool,
) {
    let template = A::leaf_template(req.flags, L::DEPTH);
    if L::DEPTH == 1 {
        // The last level: one store per page, nothing else. The check pass found every slot
        // empty.
        let first = TableRef::<A, L>::index(s);
        let count = ((e - s) >> TableRef::<A, L>::SHIFT) as usize;
        let pa = s.wrapping_add(req.delta);
        if fresh {
            // SAFETY: a fresh table is ours alone; `first + count <= ENTRIES` since `[s, e)`
            // lies inside it.
            unsafe {
                t.with_words(first, count, |slots| {
                    for (k, slot) in slots.iter_mut().enumerate() {
                        let at = pa + ((k as u64) << TableRef::<A, L>::SHIFT);
                        *slot = template | A::leaf_addr_bits(at, 1);
                    }
                });
            }
        } else {
            for k in 0..count {
                let leaf =
                    template | A::leaf_addr_bits(pa + ((k as u64) << TableRef::<A, L>::SHIFT), 1);
                // SAFETY: in bounds as above; live table owned by the caller.
                unsafe { t.store(first + k, leaf) };
            }
        }
        return;
    }
    for Span { i, a, b, full } in spans::<A, L>(s, e) {
        // A fresh table may hold garbage where the range does not reach: never read it.
        // SAFETY: masked index, live table.
        let pte = if fresh { 0 } else { unsafe { t.load(i) } };
        let kind = A::entry_kind(pte, L::DEPTH);
        if req.leaf_here::<A, L>(a, full) {
            let leaf = template | A::leaf_addr_bits(a.wrapping_add(req.delta), L::DEPTH);
            if kind == EntryKind::Table {
                // The check pass found nothing mapped below, and counted the unlink.
                // SAFETY: masked index, live table owned by the caller; once unlinked, the
                // empty subtree is ours alone to retire.
                unsafe { replace_table::<A, L, H>(h, stash, t, i, a, pte, leaf) };
            } else {
                // SAFETY: masked index, live table owned by the caller.
                unsafe { t.store(i, leaf) };
            }
        } else if kind == EntryKind::Table {
            // SAFETY: masked index, live table owned by the caller.
            let pte = unsafe { grant_entry::<A, L>(t, i, pte, req.flags) };
            // SAFETY: a table entry leads to a live table one down.
            let next = unsafe { child::<A, L, H>(h, pte) };
            // SAFETY: as above.
            unsafe { map_apply::<A, L::Below, H>(h, stash, next, a, b, req, false) };
        } else {
            // A child the range covers whole gets every entry written: no zeroing.
            let (pa, next) = stash.take::<A, L::Below, H>(h, !full);
            // Fill the new table before linking it, so that no walker sees it half made.
            // SAFETY: `next` is a fresh table this tree now owns.
            unsafe { map_apply::<A, L::Below, H>(h, stash, next, a, b, req, true) };
            // SAFETY: masked index, live table owned by the caller.
            unsafe { t.store(i, A::table_entry(pa)) };
        }
    }
}

/// Writes `leaf` over entry `i` of `t`, a table entry `pte` for `[va, va + SIZE)` whose subtree
/// maps nothing, and retires the subtree: as break-before-make where the stash says so (table
/// to block, Arm ARM D8.16.1). If no retire record can be had (it was reserved, so only a
/// broken handler gets here), the empty subtree leaks rather than being freed under a walker.
///
/// # Safety
///
/// `t` is live and owned by the caller, `i` in bounds, and the subtree maps nothing.
unsafe fn replace_table<A: Arch, L: Level, H: PagingHandler>(
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
        let va = va & !(TableRef::<A, L>::SIZE - 1);
        h.break_flush::<A>(A::unfold(va), TableRef::<A, L>::SIZE as usize);
    }
    // SAFETY: masked index, live table owned by the caller.
    unsafe { t.store(i, leaf) };
    if room {
        // SAFETY: the entry no longer links the subtree, which this tree owned.
        unsafe { stash.retire::<A, L::Below, H>(h, A::table_addr(pte)) };
    }
}

/// A single-leaf map in one descent: through the tables that exist, checking for conflicts on
/// the way; at the first missing one, the tables below are reserved (all or none) and made.
/// Returns what it retired (an empty table a huge leaf replaced).
pub(crate) unsafe fn map_one<A: Arch, L: Level, H: PagingHandler>(
    h: &mut H,
    ctx: Ctx,
    t: TableRef<A, L>,
    s: u64,
    e: u64,
    req: &MapReq,
) -> Result<Chain, PagingError> {
    let i = TableRef::<A, L>::index(s);
    // SAFETY: masked index, live table.
    let pte = unsafe { t.load(i) };
    let kind = A::entry_kind(pte, L::DEPTH);
    let leaf = || {
        A::leaf_template(req.flags, L::DEPTH)
            | A::leaf_addr_bits(s.wrapping_add(req.delta), L::DEPTH)
    };
    if L::DEPTH == req.exact_depth {
        if kind == EntryKind::Leaf {
            return Err(PagingError::AlreadyMapped(A::unfold(s)));
        }
        if kind == EntryKind::Table && L::DEPTH > 1 {
            // A leaf may replace a table only if nothing is mapped below it.
            // SAFETY: a table entry leads to a live table one down.
            let found = unsafe { first_leaf::<A, L::Below, H>(h, child::<A, L, H>(h, pte), s) };
            if let Some(va) = found {
                return Err(PagingError::AlreadyMapped(A::unfold(va)));
            }
            if A::BREAK_BEFORE_MAKE && ctx.breaks == Breaks::Refuse {
                return Err(PagingError::NeedsBreak(A::unfold(s)));
            }
            let mut stash = Stash::reserve::<A, H>(h, 0, TableRef::<A, L::Below>::BYTES)?
                .for_change::<A, H>(h, ctx, 1)?;
            // SAFETY: masked index, live table owned by the caller; the subtree is empty.
            unsafe { replace_table::<A, L, H>(h, &mut stash, t, i, s, pte, leaf()) };
            return Ok(stash.finish(h));
        }
        // SAFETY: masked index, live table owned by the caller.
        unsafe { t.store(i, leaf()) };
        return Ok(Chain::EMPTY);
    }
    match kind {
        EntryKind::Leaf => Err(PagingError::AlreadyMapped(A::unfold(s))),
        // SAFETY: masked index, live table owned by the caller; a table entry leads to a live
        // table one down.
        EntryKind::Table => unsafe {
            let pte = grant_entry::<A, L>(t, i, pte, req.flags);
            map_one::<A, L::Below, H>(h, ctx, child::<A, L, H>(h, pte), s, e, req)
        },
        EntryKind::Empty => {
            let need = (L::DEPTH - req.exact_depth) as usize;
            let mut stash = Stash::reserve::<A, H>(h, need, TableRef::<A, L::Below>::BYTES)?;
            // SAFETY: live table owned by the caller; the stash holds one table per level
            // between here and the leaf.
            unsafe { map_apply::<A, L, H>(h, &mut stash, t, s, e, req, false) };
            debug_assert!(stash.is_empty());
            stash.release(h);
            Ok(Chain::EMPTY)
        }
    }
}

/// The first leaf at or after folded `base` in the subtree `t`, if any.
unsafe fn first_leaf<A: Arch, L: Level, H: PagingHandler>(
    h: &H,
    t: TableRef<A, L>,
    base: u64,
) -> Option<u64> {
    for i in 0..TableRef::<A, L>::ENTRIES {
        // SAFETY: in bounds, live table.
        let pte = unsafe { t.load(i) };
        let va = base + i as u64 * TableRef::<A, L>::SIZE;
        match A::entry_kind(pte, L::DEPTH) {
            EntryKind::Empty => {}
            EntryKind::Leaf => return Some(va),
            EntryKind::Table if L::DEPTH > 1 => {
                // SAFETY: a table entry leads to a live table one down.
                let found =
                    unsafe { first_leaf::<A, L::Below, H>(h, child::<A, L, H>(h, pte), va) };
                if found.is_some() {
                    return found;
                }
            }
            EntryKind::Table => {}
        }
    }
    None
}

/// Frees the table at `pa` (level `L`) and every table below it, without visiting the entries
/// of last-level tables.
///
/// # Safety
///
/// The subtree is owned by the caller and linked from nowhere any more.
pub(crate) unsafe fn free_subtree<A: Arch, L: Level, H: PagingHandler>(h: &mut H, pa: u64) {
    if L::DEPTH > 1 {
        // SAFETY: the caller owns the live subtree.
        let t = unsafe { TableRef::<A, L>::from_pa(h, pa) };
        for i in 0..TableRef::<A, L>::ENTRIES {
            // SAFETY: in bounds.
            let pte = unsafe { t.load(i) };
            if A::entry_kind(pte, L::DEPTH) == EntryKind::Table {
                // SAFETY: the child belongs to the subtree being freed.
                unsafe { free_subtree::<A, L::Below, H>(h, A::table_addr(pte)) };
            }
        }
    }
    // SAFETY: every table of the tree came from `alloc_table` with this size.
    unsafe { h.free_table(PhysAddr::from(pa as usize), TableRef::<A, L>::BYTES) };
}

/// Tables needed to split the leaf at level `L` that holds `[a, b)` (not all of it) until
/// `[a, b)` is made of whole leaves.
fn split_cost<A: Arch, L: Level>(a: u64, b: u64) -> usize {
    if L::DEPTH == 1 {
        return 0;
    }
    let below = TableRef::<A, L::Below>::SIZE;
    let partial = |x: u64, y: u64| {
        if x % below == 0 && y - x == below {
            0
        } else {
            split_cost::<A, L::Below>(x, y)
        }
    };
    let (first_end, _) = entry_span::<A, L::Below>(a, b);
    let mut cost = 1 + partial(a, first_end);
    if first_end < b {
        let last_start = (b - 1) & !(below - 1);
        if last_start >= first_end {
            cost += partial(last_start, b);
        }
    }
    cost
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

impl EditNeeds {
    fn add(&mut self, other: EditNeeds) {
        self.tables += other.tables;
        self.hw_live |= other.hw_live;
        self.unlinks += other.unlinks;
    }
}

/// Which changes the check pass refuses because they need break-before-make
/// ([`Liveness::LiveNoBreak`](crate::Liveness::LiveNoBreak)).
#[derive(Clone, Copy)]
pub(crate) enum Refuse {
    /// None: the table is offline, or breaks are made.
    Nothing,
    /// Splits of blocks into tables (`unmap_region`).
    Splits,
    /// Splits, and leaves that this change would rewrite.
    SplitsAnd(Modify),
}

impl Refuse {
    /// The error if replacing `old` at level `L`, which maps folded `va`, by `new` is refused.
    #[inline(always)]
    fn check<A: Arch, L: Level>(self, old: u64, new: u64, va: u64) -> Result<(), PagingError> {
        if A::BREAK_BEFORE_MAKE
            && !matches!(self, Refuse::Nothing)
            && A::needs_break(old, new, L::DEPTH)
        {
            Err(PagingError::NeedsBreak(A::unfold(va)))
        } else {
            Ok(())
        }
    }
}

/// Check pass of a region change that must find everything mapped (`protect_region`) or that
/// skips holes (`unmap_region`): errors, and what the apply pass will need.
///
/// `hw_live` is only worked out when holes are errors (the edits that rewrite leaves).
pub(crate) unsafe fn edit_check<A: Arch, L: Level, H: PagingHandler>(
    h: &H,
    t: TableRef<A, L>,
    s: u64,
    e: u64,
    holes_ok: bool,
    refuse: Refuse,
) -> Result<EditNeeds, PagingError> {
    let mut needs = EditNeeds::default();
    if L::DEPTH == 1 {
        if let Refuse::SplitsAnd(op) = refuse {
            if A::BREAK_BEFORE_MAKE {
                let first = TableRef::<A, L>::index(s);
                for k in 0..((e - s) >> TableRef::<A, L>::SHIFT) as usize {
                    let va = s + ((k as u64) << TableRef::<A, L>::SHIFT);
                    // SAFETY: `[s, e)` lies inside the live table.
                    let pte = unsafe { t.load(first + k) };
                    if A::entry_kind(pte, 1) == EntryKind::Leaf {
                        refuse.check::<A, L>(pte, op.apply::<A, L>(pte, va), va)?;
                    }
                }
            }
        }
        // Last-level leaves are never split; only holes matter, and only if they are errors.
        if !holes_ok {
            let first = TableRef::<A, L>::index(s);
            let count = ((e - s) >> TableRef::<A, L>::SHIFT) as usize;
            // The common case in a sweep or two with no branch: fold the run's entries into
            // their AND (and, if the arch asks, their OR), from which the arch can often tell
            // that all of them are leaves the MMU will not write. Otherwise, entry by entry.
            // SAFETY: `[s, e)` lies inside the live table, so every index is in bounds.
            let load = |k: usize| unsafe { t.load(first + k) };
            let all = (0..count).fold(u64::MAX, |acc, k| acc & load(k));
            let any = || (0..count).fold(0, |acc, k| acc | load(k));
            if !A::settled_leaves(all, any) {
                for k in 0..count {
                    let pte = load(k);
                    if A::entry_kind(pte, 1) != EntryKind::Leaf {
                        let va = s + ((k as u64) << TableRef::<A, L>::SHIFT);
                        return Err(PagingError::NotMapped(A::unfold(va)));
                    }
                    needs.hw_live |= A::hw_may_update(pte, 1);
                }
            }
        }
        return Ok(needs);
    }
    for Span { i, a, b, full } in spans::<A, L>(s, e) {
        // SAFETY: masked index, live table.
        let pte = unsafe { t.load(i) };
        match A::entry_kind(pte, L::DEPTH) {
            EntryKind::Empty if holes_ok => {}
            EntryKind::Empty => return Err(PagingError::NotMapped(A::unfold(a))),
            EntryKind::Leaf => {
                // A split copies the leaf's state into every new leaf.
                needs.hw_live |= A::hw_may_update(pte, L::DEPTH);
                if !full {
                    // Any table entry will do: a break is about the kind of entry.
                    refuse.check::<A, L>(pte, A::table_entry(0), a)?;
                    needs.tables += split_cost::<A, L>(a, b);
                } else if let Refuse::SplitsAnd(op) = refuse {
                    refuse.check::<A, L>(pte, op.apply::<A, L>(pte, a), a)?;
                }
            }
            // A table entry in a last-level table is malformed; treat it as a hole.
            EntryKind::Table if L::DEPTH == 1 && holes_ok => {}
            EntryKind::Table if L::DEPTH == 1 => return Err(PagingError::NotMapped(A::unfold(a))),
            // Unmapping a whole subtree needs no look inside it.
            EntryKind::Table if full && holes_ok => {}
            EntryKind::Table => {
                // SAFETY: a table entry leads to a live table one down.
                needs.add(unsafe {
                    edit_check::<A, L::Below, H>(
                        h,
                        child::<A, L, H>(h, pte),
                        a,
                        b,
                        holes_ok,
                        refuse,
                    )?
                });
            }
        }
    }
    Ok(needs)
}

/// Replaces leaf `i` of `t`, which maps the (folded) address `va`, by a table of leaves one
/// level down with the same attributes and access state; returns the new table.
unsafe fn split<A: Arch, L: Level, H: PagingHandler>(
    h: &mut H,
    stash: &mut Stash,
    t: TableRef<A, L>,
    i: usize,
    va: u64,
    pte: u64,
) -> TableRef<A, L::Below> {
    let va = va & !(TableRef::<A, L>::SIZE - 1);
    let (pa, next) = stash.take::<A, L::Below, H>(h, false);
    let entry = A::table_entry(pa);
    let fill = |leaf: u64| {
        let template = A::leaf_split(leaf, L::DEPTH);
        let base = A::leaf_addr(leaf, L::DEPTH);
        for j in 0..TableRef::<A, L::Below>::ENTRIES {
            let leaf_pa = base + j as u64 * TableRef::<A, L::Below>::SIZE;
            // SAFETY: in bounds; `next` is fresh and ours.
            unsafe { next.store(j, template | A::leaf_addr_bits(leaf_pa, L::DEPTH - 1)) };
        }
    };
    if stash.breaking::<A, L>(pte, entry) {
        // SAFETY: masked index, live table owned by the caller. The swap returns the leaf as
        // last marked by the MMU; once invalid, no MMU marks it again.
        let old = unsafe { t.swap(i, 0) };
        h.break_flush::<A>(A::unfold(va), TableRef::<A, L>::SIZE as usize);
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
    next
}

/// Writes `change(old)` over the valid leaf `i` of `t`, which maps `[va, va + SIZE)`: in
/// place (atomically if the MMU may mark it), or as break-before-make if the stash says so and
/// the change needs it.
#[inline(always)]
unsafe fn rewrite_leaf<A: Arch, L: Level, H: PagingHandler>(
    h: &mut H,
    stash: &Stash,
    t: TableRef<A, L>,
    i: usize,
    va: u64,
    old: u64,
    change: impl Fn(u64) -> u64,
) {
    if stash.breaking::<A, L>(old, change(old)) {
        // SAFETY: masked index, live table owned by the caller; see `split`.
        let old = unsafe { t.swap(i, 0) };
        h.break_flush::<A>(A::unfold(va), TableRef::<A, L>::SIZE as usize);
        // SAFETY: as above.
        unsafe { t.store(i, change(old)) };
    } else {
        // SAFETY: as above.
        unsafe { t.update_loaded(i, old, change) };
    }
}

/// Apply pass of `unmap_region`: clears every leaf in `[s, e)`, splitting leaves at the edges,
/// and unlinks every table below `t` that it empties or covers whole (a covered table is not
/// visited), retiring it ([`Stash::retire`]). Where a live table's retirement cannot be recorded
/// (the handler has no frame for the record), a covered table is emptied instead of unlinked,
/// and an emptied one stays linked: still owned, freed later.
pub(crate) unsafe fn unmap_apply<A: Arch, L: Level, H: PagingHandler>(
    h: &mut H,
    stash: &mut Stash,
    t: TableRef<A, L>,
    s: u64,
    e: u64,
) {
    for Span { i, a, b, full } in spans::<A, L>(s, e) {
        // SAFETY: masked index, live table.
        let pte = unsafe { t.load(i) };
        let kind = A::entry_kind(pte, L::DEPTH);
        let unlinkable = L::DEPTH > 1 && kind == EntryKind::Table && !stash.ctx.keeps::<A, L>(i);
        match kind {
            EntryKind::Empty => {}
            // SAFETY: masked index, live table owned by the caller.
            EntryKind::Leaf if full => unsafe { t.store(i, 0) },
            EntryKind::Table if L::DEPTH == 1 => {}
            EntryKind::Table if full && unlinkable && stash.retire_room::<A, H>(h) => {
                // SAFETY: masked index, live table owned by the caller; once unlinked, the
                // subtree is ours alone to retire.
                unsafe {
                    t.store(i, 0);
                    stash.retire::<A, L::Below, H>(h, A::table_addr(pte));
                }
            }
            kind => {
                let next = if kind == EntryKind::Leaf {
                    // SAFETY: as above; the stash holds what `edit_check` counted.
                    unsafe { split::<A, L, H>(h, stash, t, i, a, pte) }
                } else {
                    // SAFETY: a table entry leads to a live table one down.
                    unsafe { child::<A, L, H>(h, pte) }
                };
                // SAFETY: `next` is live and owned by the caller. If the range emptied it, it is
                // unlinked before it is retired.
                unsafe {
                    unmap_apply::<A, L::Below, H>(h, stash, next, a, b);
                    let entry = t.load(i);
                    if !stash.ctx.keeps::<A, L>(i) && next.is_zero() && stash.retire_room::<A, H>(h)
                    {
                        t.store(i, 0);
                        stash.retire_empty::<A, L::Below, H>(h, A::table_addr(entry));
                    }
                }
            }
        }
    }
}

/// Clears the leaf of depth `depth` that starts at folded `va` and returns it as the swap
/// that cleared it found it (with every mark the MMU made), and whether `t` is empty now and
/// may go. The topmost table the clear empties is unlinked and retired, with the chain of
/// emptied tables below it; a `kept` table (the root, the tables below shared root entries)
/// stays linked.
pub(crate) unsafe fn unmap_one<A: Arch, L: Level, H: PagingHandler>(
    h: &mut H,
    stash: &mut Stash,
    t: TableRef<A, L>,
    va: u64,
    depth: u8,
    kept: bool,
) -> (u64, bool) {
    let i = TableRef::<A, L>::index(va);
    if L::DEPTH == depth || L::DEPTH == 1 {
        // SAFETY: masked index, live table owned by the caller.
        let old = unsafe { t.swap(i, 0) };
        // SAFETY: live table.
        return (old, !kept && unsafe { t.is_zero() });
    }
    // SAFETY: masked index, live table; the leaf lies below a table entry (the caller found it).
    let pte = unsafe { t.load(i) };
    // SAFETY: a table entry leads to a live table one down.
    let next = unsafe { child::<A, L, H>(h, pte) };
    let child_kept = stash.ctx.keeps::<A, L>(i);
    // SAFETY: forwarded.
    let (old, emptied) =
        unsafe { unmap_one::<A, L::Below, H>(h, stash, next, va, depth, child_kept) };
    if !emptied {
        return (old, false);
    }
    // SAFETY: in bounds, live table.
    let only_child = (0..TableRef::<A, L>::ENTRIES).all(|k| k == i || unsafe { t.load(k) } == 0);
    if only_child && !kept {
        // This table empties with its child: the level above unlinks both at once.
        return (old, true);
    }
    if stash.retire_room::<A, H>(h) {
        // SAFETY: masked index, live table owned by the caller; the emptied subtree is ours.
        unsafe {
            t.store(i, 0);
            stash.retire::<A, L::Below, H>(h, A::table_addr(pte));
        }
    }
    (old, false)
}

/// How [`modify_apply`] changes each leaf.
#[derive(Clone, Copy)]
pub(crate) enum Modify {
    /// New flags (already checked).
    Protect(MappingFlags),
    /// A new address: `pa = va + delta` (wrapping), for folded `va`.
    Remap(u64),
    /// Clear these state bits.
    ClearState(AccessState),
}

impl Modify {
    /// The leaf `old` at level `L`, which maps folded `va`, changed.
    #[inline(always)]
    fn apply<A: Arch, L: Level>(self, old: u64, va: u64) -> u64 {
        match self {
            Modify::Protect(flags) => A::leaf_protect(old, flags, L::DEPTH),
            Modify::Remap(delta) => {
                (old & !A::leaf_addr_mask(L::DEPTH))
                    | A::leaf_addr_bits(va.wrapping_add(delta), L::DEPTH)
            }
            Modify::ClearState(clear) => A::leaf_clear_state(old, clear, L::DEPTH),
        }
    }
}

/// Apply pass of `protect_region` and the single-leaf edits: rewrites every leaf in `[s, e)`,
/// splitting leaves at the edges. [`edit_check`] passed without holes and found `hw_live`.
pub(crate) unsafe fn modify_apply<A: Arch, L: Level, H: PagingHandler>(
    h: &mut H,
    stash: &mut Stash,
    t: TableRef<A, L>,
    s: u64,
    e: u64,
    op: Modify,
    hw_live: bool,
) {
    if L::DEPTH == 1 && stash.ctx.breaks == Breaks::Make && A::BREAK_BEFORE_MAKE {
        // A live AArch64 table: entry by entry, each change that needs it made as a break.
        let first = TableRef::<A, L>::index(s);
        let count = ((e - s) >> TableRef::<A, L>::SHIFT) as usize;
        for k in 0..count {
            let va = s + ((k as u64) << TableRef::<A, L>::SHIFT);
            // SAFETY: in bounds of the live table the caller owns.
            let old = unsafe { t.load(first + k) };
            if A::entry_kind(old, 1) == EntryKind::Leaf {
                // SAFETY: as above.
                unsafe {
                    rewrite_leaf::<A, L, H>(h, stash, t, first + k, va, old, |o| {
                        op.apply::<A, L>(o, va)
                    })
                };
            }
        }
        return;
    }
    if L::DEPTH == 1 {
        // One loop per kind of change, so that the change is worked out once, not per page.
        match op {
            Modify::Protect(flags) => {
                // SAFETY: `[s, e)` lies inside the live table the caller owns.
                unsafe {
                    modify_leaves::<A, L>(t, s, e, hw_live, |old, _| A::leaf_protect(old, flags, 1))
                }
            }
            Modify::Remap(delta) => {
                let remap = |old: u64, va: u64| {
                    (old & !A::leaf_addr_mask(1)) | A::leaf_addr_bits(va.wrapping_add(delta), 1)
                };
                // SAFETY: as above.
                unsafe { modify_leaves::<A, L>(t, s, e, hw_live, remap) }
            }
            Modify::ClearState(clear) => {
                // SAFETY: as above.
                unsafe {
                    modify_leaves::<A, L>(t, s, e, hw_live, |old, _| {
                        A::leaf_clear_state(old, clear, 1)
                    })
                }
            }
        }
        return;
    }
    for Span { i, a, b, full } in spans::<A, L>(s, e) {
        // SAFETY: masked index, live table.
        let pte = unsafe { t.load(i) };
        match A::entry_kind(pte, L::DEPTH) {
            EntryKind::Empty => {}
            EntryKind::Leaf if full => {
                // SAFETY: masked index, live table owned by the caller.
                unsafe {
                    rewrite_leaf::<A, L, H>(h, stash, t, i, a, pte, |old| op.apply::<A, L>(old, a))
                };
            }
            EntryKind::Table if L::DEPTH == 1 => {}
            kind => {
                let next = if kind == EntryKind::Leaf {
                    // SAFETY: as above; the stash holds what `edit_check` counted.
                    unsafe { split::<A, L, H>(h, stash, t, i, a, pte) }
                } else {
                    let pte = match op {
                        // SAFETY: masked index, live table owned by the caller.
                        Modify::Protect(flags) => unsafe { grant_entry::<A, L>(t, i, pte, flags) },
                        _ => pte,
                    };
                    // SAFETY: a table entry leads to a live table one down.
                    unsafe { child::<A, L, H>(h, pte) }
                };
                // SAFETY: `next` is live and owned by the caller.
                unsafe { modify_apply::<A, L::Below, H>(h, stash, next, a, b, op, hw_live) };
            }
        }
    }
}

/// Rewrites every leaf of the last-level table `t` in `[s, e)` by `f(old, va)`.
///
/// # Safety
///
/// `[s, e)` lies inside the live table `t`, which the caller owns, and holds leaves only (the
/// check pass found no holes). `hw_live` is false only if the MMU can set no accessed or dirty
/// bit in any of them.
#[inline(always)]
unsafe fn modify_leaves<A: Arch, L: Level>(
    t: TableRef<A, L>,
    s: u64,
    e: u64,
    hw_live: bool,
    f: impl Fn(u64, u64) -> u64,
) {
    let first = TableRef::<A, L>::index(s);
    let count = ((e - s) >> TableRef::<A, L>::SHIFT) as usize;
    let va = |k: usize| s + ((k as u64) << TableRef::<A, L>::SHIFT);
    if !hw_live {
        // Every bit the MMU could set is set already, so it will not write these entries: a
        // plain loop the compiler may vectorize, with no compare-and-swap.
        // SAFETY: in bounds, the table is ours, and the MMU will not write these entries.
        unsafe {
            t.with_words(first, count, |run| {
                for (k, pte) in run.iter_mut().enumerate() {
                    *pte = f(*pte, va(k));
                }
            });
        }
        return;
    }
    for k in 0..count {
        // SAFETY: in bounds; a leaf only (the check pass found no holes).
        unsafe {
            let old = t.load(first + k);
            if A::entry_kind(old, 1) == EntryKind::Leaf {
                t.update_loaded(first + k, old, |old| f(old, va(k)));
            }
        }
    }
}

/// Calls `f` for every leaf that overlaps `[s, e)`, in address order.
pub(crate) unsafe fn for_each<A: Arch, L: Level, H: PagingHandler>(
    h: &H,
    t: TableRef<A, L>,
    s: u64,
    e: u64,
    f: &mut impl FnMut(RawLeaf),
) {
    // SAFETY: forwarded.
    unsafe { for_each_from::<A, L, H>(h, t, s, e, A::PATH_START, f) }
}

/// [`for_each`] below table entries folded into `path`; each leaf with the flags the walk
/// lets through.
unsafe fn for_each_from<A: Arch, L: Level, H: PagingHandler>(
    h: &H,
    t: TableRef<A, L>,
    s: u64,
    e: u64,
    path: u64,
    f: &mut impl FnMut(RawLeaf),
) {
    if L::DEPTH == 1 {
        let first = TableRef::<A, L>::index(s);
        for k in 0..((e - s) >> TableRef::<A, L>::SHIFT) as usize {
            // SAFETY: `[s, e)` lies inside the live table.
            let pte = unsafe { t.load(first + k) };
            if A::entry_kind(pte, 1) == EntryKind::Leaf {
                let va = s + ((k as u64) << TableRef::<A, L>::SHIFT);
                f(RawLeaf::decode::<A, L>(va, pte).through::<A>(path));
            }
        }
        return;
    }
    for Span { i, a, b, .. } in spans::<A, L>(s, e) {
        // SAFETY: masked index, live table.
        let pte = unsafe { t.load(i) };
        match A::entry_kind(pte, L::DEPTH) {
            EntryKind::Empty => {}
            EntryKind::Leaf => {
                let va = a & !(TableRef::<A, L>::SIZE - 1);
                f(RawLeaf::decode::<A, L>(va, pte).through::<A>(path));
            }
            // SAFETY: a table entry leads to a live table one down.
            EntryKind::Table if L::DEPTH > 1 => unsafe {
                let next = child::<A, L, H>(h, pte);
                for_each_from::<A, L::Below, H>(h, next, a, b, A::path_step(path, pte), f);
            },
            EntryKind::Table => {}
        }
    }
}

/// Frees the subtree at `pa`, whose root is at `depth` (at or below level `L`).
///
/// # Safety
///
/// As for [`free_subtree`].
pub(crate) unsafe fn free_at_depth<A: Arch, L: Level, H: PagingHandler>(
    h: &mut H,
    pa: u64,
    depth: u8,
) {
    if L::DEPTH == depth {
        // SAFETY: forwarded.
        unsafe { free_subtree::<A, L, H>(h, pa) };
    } else if L::DEPTH > 1 {
        // SAFETY: forwarded.
        unsafe { free_at_depth::<A, L::Below, H>(h, pa, depth) };
    }
}

/// A single-leaf edit: `op` on the leaf of depth `depth` that starts at folded `va`, in one
/// atomic step (or as break-before-make where `breaks` says so and the change needs it).
/// Returns the leaf as the operation that changed it found it, with every mark the MMU made.
///
/// # Errors
///
/// [`PagingError::NeedsBreak`] if the change needs a break and `breaks` refuses it; nothing
/// changed.
pub(crate) unsafe fn edit_one<A: Arch, L: Level, H: PagingHandler>(
    h: &mut H,
    breaks: Breaks,
    t: TableRef<A, L>,
    va: u64,
    depth: u8,
    op: Modify,
) -> Result<u64, PagingError> {
    let i = TableRef::<A, L>::index(va);
    // SAFETY: masked index, live table.
    let pte = unsafe { t.load(i) };
    if L::DEPTH == depth || L::DEPTH == 1 {
        let new = op.apply::<A, L>(pte, va);
        if A::BREAK_BEFORE_MAKE && breaks != Breaks::InPlace && A::needs_break(pte, new, L::DEPTH) {
            if breaks == Breaks::Refuse {
                return Err(PagingError::NeedsBreak(A::unfold(va)));
            }
            // SAFETY: masked index, live table owned by the caller. The swap returns the leaf
            // as last marked; once invalid, no MMU marks it again.
            let old = unsafe { t.swap(i, 0) };
            h.break_flush::<A>(A::unfold(va), TableRef::<A, L>::SIZE as usize);
            // SAFETY: as above.
            unsafe { t.store(i, op.apply::<A, L>(old, va)) };
            return Ok(old);
        }
        // SAFETY: as above.
        return Ok(unsafe { t.update_loaded(i, pte, |old| op.apply::<A, L>(old, va)) });
    }
    let pte = match op {
        // SAFETY: masked index, live table owned by the caller.
        Modify::Protect(flags) => unsafe { grant_entry::<A, L>(t, i, pte, flags) },
        _ => pte,
    };
    // SAFETY: the leaf lies below this table entry (the caller found it); forwarded.
    unsafe { edit_one::<A, L::Below, H>(h, breaks, child::<A, L, H>(h, pte), va, depth, op) }
}

/// Counts the tables of the subtree at `t`, itself included.
pub(crate) unsafe fn count_tables<A: Arch, L: Level, H: PagingHandler>(
    h: &H,
    t: TableRef<A, L>,
) -> usize {
    let mut n = 1;
    if L::DEPTH > 1 {
        for i in 0..TableRef::<A, L>::ENTRIES {
            // SAFETY: in bounds, live table.
            let pte = unsafe { t.load(i) };
            if A::entry_kind(pte, L::DEPTH) == EntryKind::Table {
                // SAFETY: a table entry leads to a live table one down.
                n += unsafe { count_tables::<A, L::Below, H>(h, child::<A, L, H>(h, pte)) };
            }
        }
    }
    n
}
