//! Placing a marker: one descent to a last-level entry, making the tables that are missing on
//! the way.

use super::{Occupancy, PointStep, PointVisitor, Stash, child};
use crate::arch::Arch;
use crate::error::PagingError;
use crate::handler::PagingHandler;
use crate::levels::{Descriptor, EntryKind, HasNext, L1, Level, TableRef};

/// Writes the marker entry `entry` at folded `va`: over an empty entry or another marker. The
/// tables on the way that are missing come from `stash`, zeroed before they are linked; a leaf
/// on the way (a block over `va`, or a page at it) is an error, found before anything is made.
struct SetMarker<'a, H> {
    h: &'a H,
    stash: &'a mut Stash,
    va: u64,
    entry: u64,
}

impl<A: Arch, H: PagingHandler> PointVisitor<A> for SetMarker<'_, H> {
    type Out = Result<(), PagingError>;
    type Down = ();
    const OCCUPANCY: Occupancy = Occupancy::Changes;

    #[inline(always)]
    unsafe fn last(&mut self, t: TableRef<A, L1>, i: usize, (): ()) -> Self::Out {
        // SAFETY: in bounds, live table owned by the caller.
        let old = unsafe { t.load(i) };
        match A::entry_kind::<L1>(old) {
            EntryKind::Empty | EntryKind::Marker => {
                // An invalid entry replaced by an invalid entry: no MMU caches or writes either,
                // so a plain store will do.
                // SAFETY: as above.
                unsafe { t.store(i, self.entry) };
                Ok(())
            }
            EntryKind::Leaf | EntryKind::Table => {
                Err(PagingError::AlreadyMapped(A::unfold(self.va)))
            }
        }
    }

    #[inline(always)]
    unsafe fn entry<L: HasNext>(
        &mut self,
        t: TableRef<A, L>,
        i: usize,
        (): (),
    ) -> PointStep<A, L::Next, (), Self::Out> {
        // SAFETY: in bounds, live table owned by the caller.
        let pte = unsafe { t.load(i) };
        match A::entry_kind::<L>(pte) {
            // SAFETY: a table entry leads to a live table one down.
            EntryKind::Table => PointStep::Descend(unsafe { child::<A, L, H>(self.h, pte) }, ()),
            EntryKind::Empty => {
                let (frame, table) = self.stash.take::<A, L::Next, H>(self.h, true);
                // A zeroed table, linked: every walker that reaches it finds nothing mapped.
                // SAFETY: live table owned by the caller; the new table is this tree's now.
                unsafe { t.store_entry(i, Descriptor::table(frame)) };
                PointStep::Descend(table, ())
            }
            EntryKind::Leaf | EntryKind::Marker => {
                PointStep::Stop(Err(PagingError::AlreadyMapped(A::unfold(self.va))))
            }
        }
    }
}

/// Writes the marker entry `entry` at folded `va` below `t`, making missing tables from
/// `stash`, which holds one frame per level below `t`'s (what is left over stays there).
///
/// # Errors
///
/// [`PagingError::AlreadyMapped`] if a leaf maps `va`; then nothing changed.
///
/// # Safety
///
/// `t` is a live table of the tree the caller owns (`&mut PageTable`), reached through `h`,
/// whose span holds `va`; its frames for tables below the root are of the stash's size.
pub(crate) unsafe fn set_marker<A: Arch, L: Level, H: PagingHandler>(
    h: &H,
    stash: &mut Stash,
    t: TableRef<A, L>,
    va: u64,
    entry: u64,
) -> Result<(), PagingError> {
    let mut v = SetMarker {
        h,
        stash,
        va,
        entry,
    };
    // SAFETY: forwarded.
    unsafe { L::point::<A, _>(&mut v, t, va, ()) }
}
