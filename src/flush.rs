//! [`Flush`]: the TLB work a change leaves behind, as a value that must be used.

use core::fmt;
use core::marker::PhantomData;

use memory_addr::VirtAddr;

use crate::arch::{Arch, VaSpace};

/// A range larger than this many pages is flushed with one flush of everything: past it,
/// page-by-page invalidation costs more than refilling the TLB.
pub const FLUSH_ALL_THRESHOLD: usize = 64;

/// The TLB entries that a change may have left stale.
///
/// Every call that changes a table returns one. Call [`flush`](Self::flush) once the change
/// should be visible to the CPU using the table, or [`ignore`](Self::ignore) when the table is
/// not live (being built, or for another machine). Tokens [`merge`](Self::merge), so a batch of
/// changes can be flushed once; a merged range past [`FLUSH_ALL_THRESHOLD`] pages becomes a
/// flush of everything.
#[must_use = "the TLB may still hold the old translation: call `.flush()`, or `.ignore()` for a table that is not live"]
pub struct Flush<A: Arch> {
    /// Start of the range, folded into the mode's VA space (`u64::MAX` when empty).
    start: u64,
    /// One past the end of the range (`0` when empty).
    end: u64,
    all: bool,
    _arch: PhantomData<A>,
}

impl<A: Arch> Flush<A> {
    /// A token with nothing to flush.
    pub const fn none() -> Self {
        Self {
            start: u64::MAX,
            end: 0,
            all: false,
            _arch: PhantomData,
        }
    }

    /// A token for the folded VA range `[start, end)`.
    pub(crate) const fn range(start: u64, end: u64) -> Self {
        Self {
            start,
            end,
            all: false,
            _arch: PhantomData,
        }
    }

    /// A token that flushes every translation.
    pub const fn all() -> Self {
        Self {
            start: u64::MAX,
            end: 0,
            all: true,
            _arch: PhantomData,
        }
    }

    /// Both tokens' work in one: the smallest range covering both, or everything.
    pub fn merge(self, other: Self) -> Self {
        Self {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
            all: self.all || other.all,
            _arch: PhantomData,
        }
    }

    /// Whether there is nothing to flush.
    pub fn is_empty(&self) -> bool {
        !self.all && self.start >= self.end
    }

    /// Whether flushing will drop every translation rather than the pages of a range: when
    /// asked to, when the mode cannot flush by page (EPT), past [`FLUSH_ALL_THRESHOLD`] pages,
    /// and when the range runs from one half of a sign-extended space into the other (no one
    /// range of addresses holds both halves).
    pub fn is_all(&self) -> bool {
        self.all
            || (!A::PAGE_FLUSH && !self.is_empty())
            || self.pages() > FLUSH_ALL_THRESHOLD as u64
            || (A::VA_SPACE == VaSpace::Canonical
                && !self.is_empty()
                && (self.start ^ (self.end - 1)) >> (A::VA_BITS - 1) != 0)
    }

    /// The virtual range `(start, len)` to flush; `None` when empty or flushing everything.
    pub fn va_range(&self) -> Option<(VirtAddr, usize)> {
        if self.is_empty() || self.is_all() {
            return None;
        }
        Some((A::unfold(self.start), (self.end - self.start) as usize))
    }

    fn pages(&self) -> u64 {
        if self.start >= self.end {
            0
        } else {
            (self.end - self.start) >> A::PAGE_SHIFT
        }
    }

    /// Invalidates the TLB entries this token covers, on the CPU running this code (and, where
    /// the architecture broadcasts invalidations, on the others): per page up to
    /// [`FLUSH_ALL_THRESHOLD`] pages, else everything.
    ///
    /// The instructions are emitted only for bare metal: on a build for another architecture
    /// than `A`'s, or for a hosted target (`target_os` other than `none`, as for host tools
    /// and tests), this does nothing, since no table of this crate can be live on that CPU. A
    /// kernel built for a target whose `target_os` is not `none` enables the `privileged`
    /// feature.
    pub fn flush(self) {
        if self.is_all() {
            A::flush_all();
        } else if !self.is_empty() {
            let mut va = self.start;
            while va < self.end {
                A::flush_page(A::unfold(va));
                va += 1 << A::PAGE_SHIFT;
            }
        }
    }

    /// Drops the token without flushing: for tables that are not live on any CPU.
    pub fn ignore(self) {}
}

impl<A: Arch> fmt::Debug for Flush<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_all() {
            write!(f, "Flush(all)")
        } else if let Some((va, len)) = self.va_range() {
            write!(f, "Flush({va:#x} + {len:#x})")
        } else {
            write!(f, "Flush(none)")
        }
    }
}
