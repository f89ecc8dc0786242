//! [`Flush`]: the TLB work a change leaves behind, as a value that must be used.

use core::fmt;
use core::marker::PhantomData;

use crate::arch::{Arch, VaSpace};
use crate::retired::{Chain, Retired};
use crate::tlb::TlbScope;

/// A range larger than this many pages is flushed with one flush of everything: past it,
/// page-by-page invalidation costs more than refilling the TLB.
pub const FLUSH_ALL_THRESHOLD: usize = 64;

/// The TLB entries that a change may have left stale, and the tables it unlinked from a live
/// table, which may not be freed until those entries are gone.
///
/// Every call that changes a table returns one. Once the change should be visible, give it to
/// [`PageTable::flush`](crate::PageTable::flush), which invalidates and then frees the tables
/// the change retired; or call [`flush`](Self::flush) and hand what it returns to
/// [`PageTable::free_retired`](crate::PageTable::free_retired) (the same, in two steps); or,
/// after a shootdown of your own, [`into_retired`](Self::into_retired). [`ignore`](Self::ignore)
/// it when the table is not live (being built, or for another machine). Tokens
/// [`merge`](Self::merge), so a batch of changes can be flushed once; a merged range past
/// [`FLUSH_ALL_THRESHOLD`] pages becomes a flush of everything.
///
/// Only a table whose [`Liveness`](crate::Liveness) is not `Offline` retires tables: an
/// offline one frees them in the call. A token dropped with retired tables leaks them; it never
/// frees them early.
#[must_use = "the TLB may still hold the old translation: give it to `PageTable::flush`, or `.ignore()` it for a table that is not live"]
pub struct Flush<A: Arch> {
    /// Start of the range, folded into the mode's VA space (`u64::MAX` when empty).
    start: u64,
    /// One past the end of the range (`0` when empty).
    end: u64,
    all: bool,
    /// Tables unlinked by the change, to free after the invalidation.
    retired: Chain,
    _arch: PhantomData<A>,
}

// SAFETY: the token owns its retire frames exclusively, so moving it to another thread (to the
// CPU that does the shootdown, say) moves that ownership; `&Flush` only reads its range.
unsafe impl<A: Arch> Send for Flush<A> {}
// SAFETY: as above: shared references never reach the retire frames.
unsafe impl<A: Arch> Sync for Flush<A> {}

impl<A: Arch> Flush<A> {
    /// A token with nothing to flush.
    pub const fn none() -> Self {
        Self {
            start: u64::MAX,
            end: 0,
            all: false,
            retired: Chain::EMPTY,
            _arch: PhantomData,
        }
    }

    /// A token for the folded VA range `[start, end)`.
    pub(crate) const fn range(start: u64, end: u64) -> Self {
        Self {
            start,
            end,
            all: false,
            retired: Chain::EMPTY,
            _arch: PhantomData,
        }
    }

    /// The same token, owning the tables a change retired.
    pub(crate) fn with_retired(mut self, retired: Chain) -> Self {
        self.retired.append(retired);
        self
    }

    /// A token that flushes every translation.
    pub const fn all() -> Self {
        Self {
            start: u64::MAX,
            end: 0,
            all: true,
            retired: Chain::EMPTY,
            _arch: PhantomData,
        }
    }

    /// Both tokens' work in one: the smallest range covering both, or everything.
    ///
    /// The merged token owns both tokens' retired tables. Merge tokens of different page
    /// tables only if each gets its own back: [`PageTable::flush`](crate::PageTable::flush)
    /// frees only the tables of the page table it is called on.
    pub fn merge(mut self, other: Self) -> Self {
        self.retired.append(other.retired);
        Self {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
            all: self.all || other.all,
            retired: self.retired,
            _arch: PhantomData,
        }
    }

    /// Whether the token holds tables that the change unlinked from a live table.
    pub fn has_retired(&self) -> bool {
        !self.retired.is_empty()
    }

    /// Whether there is nothing to flush.
    pub fn is_empty(&self) -> bool {
        !self.all && self.start >= self.end
    }

    /// Whether flushing will drop every translation rather than the pages of a range: when
    /// asked to, when the mode cannot flush by page (EPT), when tables were unlinked and a
    /// flush by page does not drop cached walks (RISC-V, where `sfence.vma` with an address
    /// orders only leaf entries), past [`FLUSH_ALL_THRESHOLD`] pages, and when the range runs from one half of a sign-extended space into the other (no one
    /// range of addresses holds both halves).
    pub fn is_all(&self) -> bool {
        self.all
            || (!A::PAGE_FLUSH_DROPS_WALKS && self.has_retired())
            || (!A::PAGE_FLUSH && !self.is_empty())
            || self.pages() > FLUSH_ALL_THRESHOLD as u64
            || (A::VA_SPACE == VaSpace::Canonical
                && !self.is_empty()
                && (self.start ^ (self.end - 1)) >> (A::VA_BITS - 1) != 0)
    }

    /// The input range `(start, len)` to flush (virtual for stage 1, guest-physical for
    /// stage 2); `None` when empty or flushing everything.
    pub fn va_range(&self) -> Option<(A::Addr, usize)> {
        if self.is_empty() || self.is_all() {
            return None;
        }
        Some((
            crate::arch::from_va::<A>(A::unfold(self.start)),
            (self.end - self.start) as usize,
        ))
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
    /// [`FLUSH_ALL_THRESHOLD`] pages, else everything. Returns the tables the change retired,
    /// now safe to free: give them to
    /// [`PageTable::free_retired`](crate::PageTable::free_retired).
    ///
    /// Where invalidations do not reach every CPU (x86 without a shootdown, RISC-V, LoongArch),
    /// the other CPUs that use the table must be invalidated too before the tables are freed:
    /// do that with [`va_range`](Self::va_range) and [`into_retired`](Self::into_retired)
    /// instead.
    ///
    /// The instructions are emitted only for bare metal: on a build for another architecture
    /// than `A`'s, or for a hosted target (`target_os` other than `none`, as for host tools
    /// and tests), this does nothing, since no table of this crate can be live on that CPU. A
    /// kernel built for a target whose `target_os` is not `none` enables the `privileged`
    /// feature.
    pub fn flush(self) -> Retired<A> {
        if self.is_all() {
            A::flush_all();
        } else if !self.is_empty() {
            let mut va = self.start;
            while va < self.end {
                A::flush_page(A::unfold(va));
                va += 1 << A::PAGE_SHIFT;
            }
        }
        Retired {
            chain: self.retired,
            _arch: PhantomData,
        }
    }

    /// [`flush`](Self::flush) for the TLB entries of `scope` only: the invalidations tagged
    /// with the scope's identifier (see [`TlbScope`]), or, for an untagged scope, exactly what
    /// `flush` does. [`PageTable::flush`](crate::PageTable::flush) calls this with the table's
    /// own [`tlb_scope`](crate::PageTable::tlb_scope).
    pub fn flush_in(self, scope: TlbScope) -> Retired<A> {
        if scope.id.is_none() {
            return self.flush();
        }
        if self.is_all() {
            A::flush_in(scope, None);
        } else if let Some((start, len)) = self.va_range() {
            let start = memory_addr::VirtAddr::from(start.into());
            A::flush_in(scope, Some((start, len >> A::PAGE_SHIFT)));
        }
        Retired {
            chain: self.retired,
            _arch: PhantomData,
        }
    }

    /// The tables the change retired, without flushing: for a caller that invalidates the
    /// token's range itself (an inter-processor shootdown, a tagged invalidation).
    ///
    /// # Safety
    ///
    /// Before the returned tables are given to
    /// [`PageTable::free_retired`](crate::PageTable::free_retired), no CPU's TLB or walk cache
    /// may hold anything from the token's range any more: every CPU that may use the table has
    /// invalidated [`va_range`](Self::va_range) (everything, when it is `None` and the token is
    /// not empty), including cached non-leaf entries (on RISC-V, `sfence.vma` with `rs1 = x0`).
    /// Otherwise an MMU may walk a freed frame.
    pub unsafe fn into_retired(self) -> Retired<A> {
        Retired {
            chain: self.retired,
            _arch: PhantomData,
        }
    }

    /// Drops the token without flushing: for tables that are not live on any CPU. Tables it
    /// retired (a live table's) leak.
    pub fn ignore(self) {}
}

impl<A: Arch> fmt::Debug for Flush<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_all() {
            write!(f, "Flush(all)")
        } else if let Some((va, len)) = self.va_range() {
            let va: usize = va.into();
            write!(f, "Flush({va:#x} + {len:#x})")
        } else {
            write!(f, "Flush(none)")
        }
    }
}
