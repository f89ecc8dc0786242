//! [`Remembered`]: the last-level table a single-page call last walked to, so that the next
//! call in that table's span starts there instead of at the root.

use crate::arch::Arch;
use crate::flags::MappingFlags;
use crate::levels::walk::CountSlot;
use crate::levels::{L1, TableRef};

/// A last-level table of the tree, with what the walk to it learned: the table entries above it
/// folded ([`Arch::path_step`]) and the entry that links it (its live-entry count).
///
/// Plain words, not an `Option` of a struct: the fast paths compare one of them. Whoever keeps
/// one must forget it before anything that may unlink a table of the tree, so that it only ever
/// names a linked table.
#[derive(Clone, Copy)]
pub(crate) struct Remembered<A: Arch> {
    /// The folded address where the table's span starts; [`Self::NONE`] if no table.
    base: u64,
    table: TableRef<A, L1>,
    path: u64,
    slot: CountSlot<A>,
    /// Flags `path` was found to let through ([`Arch::path_restrict`]), or flags no caller
    /// passes.
    lets_through: MappingFlags,
}

impl<A: Arch> Remembered<A> {
    /// No table: not a span base (those are aligned and below 2^57).
    const NONE: u64 = u64::MAX;
    /// What one last-level table spans.
    pub(crate) const SPAN: u64 = TableRef::<A, L1>::SIZE * TableRef::<A, L1>::ENTRIES as u64;

    /// Nothing remembered.
    pub(crate) fn none() -> Self {
        Self {
            base: Self::NONE,
            table: TableRef::dangling(),
            path: A::PATH_START,
            slot: CountSlot::dangling(),
            lets_through: MappingFlags::NONE_YET,
        }
    }

    /// Forgets the table.
    #[inline(always)]
    pub(crate) fn forget(&mut self) {
        self.base = Self::NONE;
    }

    /// `table`, whose span holds folded `va`, reached through the folded `path` and linked by
    /// `slot`.
    #[inline(always)]
    pub(crate) fn new(va: u64, table: TableRef<A, L1>, path: u64, slot: CountSlot<A>) -> Self {
        Self {
            base: va & !(Self::SPAN - 1),
            table,
            path,
            slot,
            lets_through: MappingFlags::NONE_YET,
        }
    }

    /// The folded address where the remembered table's span starts, if there is one.
    pub(crate) fn base(&self) -> Option<u64> {
        (self.base != Self::NONE).then_some(self.base)
    }

    /// Notes that a walk just made the entries above the table let `flags` through.
    #[inline(always)]
    pub(crate) fn granted(&mut self, flags: MappingFlags) {
        self.lets_through = flags;
    }

    /// The remembered table, its path and its slot, if its span holds folded `va`.
    #[inline(always)]
    pub(crate) fn get(&self, va: u64) -> Option<(TableRef<A, L1>, u64, CountSlot<A>)> {
        (va & !(Self::SPAN - 1) == self.base).then_some((self.table, self.path, self.slot))
    }

    /// Whether the table entries above the remembered table let leaves with `flags` through
    /// as they are: worked out once per table and flags.
    #[inline(always)]
    pub(crate) fn lets_through(&mut self, flags: MappingFlags) -> bool {
        if !A::TABLE_GATES || self.lets_through == flags {
            return true;
        }
        let yes = A::path_restrict(self.path, flags) == flags;
        if yes {
            self.lets_through = flags;
        }
        yes
    }
}
