//! [`Stash`]: the table frames a change reserved before it changed anything, the change's
//! [`Ctx`], and the tables it unlinked; and [`alloc_frame`], the one place a frame from the
//! handler is checked.

use memory_addr::PhysAddr;

use super::super::{Level, TableFrame, TableRef};
use super::read::free_subtree;
use crate::arch::{self, Arch};
use crate::error::PagingError;
use crate::handler::PagingHandler;
use crate::liveness::Liveness;
use crate::retired::{self, Chain};
use crate::state::RootRange;

/// What a change must know of the table besides its tree.
#[derive(Clone, Copy)]
pub(crate) struct Ctx {
    /// Whether an MMU may walk the table: how changes that need break-before-make are made
    /// (in place, as a break, or refused by the check pass), and whether unlinked tables are
    /// retired (kept until the flush) instead of freed at once.
    pub liveness: Liveness,
    /// The root's physical address, which names the table in retire records.
    pub owner: u64,
    /// Root entries shared with borrowers: the tables they link are never unlinked.
    pub shared: RootRange,
}

impl Ctx {
    /// An offline table that shares nothing: entries replaced in place, tables freed at once.
    pub(crate) const OFFLINE: Self = Self {
        liveness: Liveness::Offline,
        owner: 0,
        shared: RootRange::new(0, 0),
    };

    /// Whether unlinked tables wait for the flush.
    #[inline(always)]
    pub(crate) fn defers(&self) -> bool {
        self.liveness != Liveness::Offline
    }

    /// Whether the table that entry `i` of a level-`L` table links must stay linked.
    #[inline(always)]
    pub(super) fn keeps<A: Arch, L: Level>(&self, i: usize) -> bool {
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

    /// A stash holding no frames, for a change in `ctx` that cannot need any: one that only
    /// clears entries (and may unlink tables, whose retire records it takes from the handler
    /// then, or leaves the tables linked if it cannot).
    #[inline(always)]
    pub(crate) const fn none(bytes: usize, ctx: Ctx) -> Self {
        let mut stash = Self::empty(bytes);
        stash.ctx = ctx;
        stash
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
        if ctx.defers() && unlinks > 0 {
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
    pub(super) fn retire_room<A: Arch, H: PagingHandler>(&mut self, h: &mut H) -> bool {
        if !self.ctx.defers() || self.retired.has_room::<A>() {
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
    pub(super) unsafe fn retire<A: Arch, L: Level, H: PagingHandler>(
        &mut self,
        h: &mut H,
        pa: u64,
    ) {
        if self.ctx.defers() {
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
    pub(super) unsafe fn retire_empty<A: Arch, L: Level, H: PagingHandler>(
        &mut self,
        h: &mut H,
        pa: u64,
    ) {
        if self.ctx.defers() {
            // SAFETY: `retire_room` made room (caller).
            unsafe { self.retired.push(pa, retired::EMPTY | L::DEPTH) };
        } else {
            let (pa, bytes) = (PhysAddr::from(pa as usize), TableRef::<A, L>::BYTES);
            if h.owns_table(pa, bytes) {
                // SAFETY: the table is unlinked and empty, and its handler owns it: it came
                // from `alloc_table` with this size.
                unsafe { h.free_table(pa, bytes) };
            }
        }
    }

    /// The tables the change retired, for its `Flush`; the unused frames go back.
    #[inline(always)]
    pub(crate) fn finish<H: PagingHandler>(mut self, h: &mut H) -> Chain {
        let retired = self.retired.take();
        self.release(h);
        retired
    }

    /// Takes a reserved frame for a table of level `L`, zeroed unless the caller will write
    /// every entry. The check pass counted it, so one is there.
    pub(super) fn take<A: Arch, L: Level, H: PagingHandler>(
        &mut self,
        h: &H,
        zero: bool,
    ) -> (TableFrame<A, L>, TableRef<A, L>) {
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
        (TableFrame::from_raw(pa), table)
    }

    /// Takes a reserved frame for a table at level `L`, zeroed.
    pub(crate) fn take_zeroed<A: Arch, L: Level, H: PagingHandler>(
        &mut self,
        h: &H,
    ) -> TableFrame<A, L> {
        self.take::<A, L, H>(h, true).0
    }

    /// Gives back whatever is left (retired tables are not: see [`finish`](Self::finish)).
    #[inline(always)]
    pub(crate) fn release<H: PagingHandler>(self, h: &mut H) {
        // Most single-page changes reserve nothing: no call for them.
        if self.head != NO_FRAME || self.spare != NO_FRAME {
            self.release_frames(h);
        }
    }

    #[inline(never)]
    fn release_frames<H: PagingHandler>(mut self, h: &mut H) {
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
    pub(super) fn breaking<A: Arch, L: Level>(&self, old: u64, new: u64) -> bool {
        A::BREAK_BEFORE_MAKE && self.ctx.liveness == Liveness::Live && A::needs_break::<L>(old, new)
    }

    /// Whether every reserved frame was used.
    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }
}
