//! [`Liveness`]: whether an MMU may be walking a table while it changes, and what to do about
//! changes the architecture allows only with break-before-make. Nothing else lives here.

/// Whether an MMU may be using the table: how changes that the architecture allows on a live
/// table only through break-before-make are made, and whether unlinked tables wait for the
/// flush.
///
/// Only AArch64 (stage 1 and stage 2) has such changes ([`Arch::needs_break`](crate::Arch::needs_break)):
/// replacing a valid entry by another valid one with a different output address, memory type,
/// shareability or nG bit, or a block by a table. The calls that can make them are
/// [`remap`](crate::PageTable::remap), [`protect`](crate::PageTable::protect) and
/// [`protect_region`](crate::PageTable::protect_region) when the memory type or
/// [`GLOBAL`](crate::MappingFlags::GLOBAL) changes, and the splits of a block that
/// [`unmap_region`](crate::PageTable::unmap_region) and `protect_region` cover in part.
///
/// Safe on a live table without it, and done in place in every liveness: mapping into empty
/// entries, unmapping (a valid entry made invalid is the "break" itself), changing only access
/// permissions (read, write, execute, user), and clearing or setting the access flag and dirty
/// state. x86, RISC-V and LoongArch need no break for any change.
///
/// On every architecture, a table that is not `Offline` also retires the tables a change
/// unlinks instead of freeing them: the returned [`Flush`](crate::Flush) owns them until the
/// TLB invalidation that covers them is done ([`PageTable::flush`](crate::PageTable::flush)),
/// since an MMU that cached a pointer to one may still walk it until then.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Liveness {
    /// No MMU walks the table (it is being built, or is for another machine): entries are
    /// replaced in place and unlinked tables freed at once. The default for a new table.
    #[default]
    Offline = 0,
    /// An MMU may walk the table: a change that needs it is made as break-before-make. The old
    /// entry is made invalid, [`PagingHandler::break_flush`](crate::PagingHandler::break_flush)
    /// invalidates its TLB entries, and only then is the new entry written; a CPU touching the
    /// address meanwhile takes a translation fault, which the kernel's handler must retry.
    Live = 1,
    /// An MMU may walk the table and no address may fault on the way: a change that needs a
    /// break fails with [`PagingError::NeedsBreak`](crate::PagingError::NeedsBreak) and the
    /// table is left as it was.
    LiveNoBreak = 2,
}
