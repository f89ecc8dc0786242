//! [`TableState`]: what a [`PageTable`](crate::PageTable) knows beyond its tree (liveness, the
//! root entries it borrows, the root entries it shares), kept across a raw round trip.

use core::ops::Range;

use crate::liveness::Liveness;

/// A run `[lo, hi)` of root-entry indices; empty when `lo == hi`. Root indices fit 32 bits (a
/// root has at most 2^17 entries, `geometry_ok`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RootRange {
    pub lo: u32,
    pub hi: u32,
}

impl RootRange {
    pub(crate) const fn new(lo: usize, hi: usize) -> Self {
        Self {
            lo: lo as u32,
            hi: hi as u32,
        }
    }

    pub(crate) const fn is_empty(self) -> bool {
        self.lo >= self.hi
    }

    pub(crate) const fn contains(self, i: usize) -> bool {
        self.lo as usize <= i && i < self.hi as usize
    }

    /// Whether `[lo, hi)` meets this run.
    pub(crate) const fn meets(self, lo: usize, hi: usize) -> bool {
        !self.is_empty() && lo < self.hi as usize && hi > self.lo as usize
    }

    /// Whether `[lo, hi)` lies inside this run.
    pub(crate) const fn covers(self, lo: usize, hi: usize) -> bool {
        self.lo as usize <= lo && hi <= self.hi as usize && lo < hi
    }

    /// This run grown by `[lo, hi)`, if the two make one run (or this one is empty).
    pub(crate) fn joined(self, lo: usize, hi: usize) -> Option<Self> {
        if self.is_empty() {
            Some(Self::new(lo, hi))
        } else if hi >= self.lo as usize && lo <= self.hi as usize {
            Some(Self::new(
                lo.min(self.lo as usize),
                hi.max(self.hi as usize),
            ))
        } else {
            None
        }
    }

    pub(crate) fn range(self) -> Range<usize> {
        self.lo as usize..self.hi as usize
    }
}

/// Everything a [`PageTable`](crate::PageTable) keeps besides its root and handler, as
/// [`PageTable::into_raw`](crate::PageTable::into_raw) hands it out and
/// [`PageTable::from_raw`](crate::PageTable::from_raw) takes it back: the round trip loses
/// nothing (a table that forgot it borrows would free its owner's tables; one that forgot it is
/// live would stop making break-before-make).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableState {
    pub(crate) liveness: Liveness,
    pub(crate) borrowed: RootRange,
    pub(crate) shared: RootRange,
    /// The identifier the table's TLB entries are tagged with ([`TlbScope`](crate::TlbScope)).
    pub(crate) tlb_id: Option<u16>,
    /// Whether a global leaf may be in the table (sticky).
    pub(crate) global: bool,
}

impl TableState {
    /// Whether an MMU may walk the table.
    #[must_use]
    pub fn liveness(&self) -> Liveness {
        self.liveness
    }

    /// The root-entry indices this table borrows from another
    /// ([`PageTable::borrow_shared`](crate::PageTable::borrow_shared)); empty if none.
    #[must_use]
    pub fn borrowed(&self) -> Range<usize> {
        self.borrowed.range()
    }

    /// The root-entry indices this table shares with borrowers
    /// ([`PageTable::share`](crate::PageTable::share)); empty if none.
    #[must_use]
    pub fn shared(&self) -> Range<usize> {
        self.shared.range()
    }

    /// The identifier (ASID, PCID, VMID) the table's TLB entries are tagged with
    /// ([`PageTable::set_tlb_id`](crate::PageTable::set_tlb_id)); `None` if untagged.
    #[must_use]
    pub fn tlb_id(&self) -> Option<u16> {
        self.tlb_id
    }
}
