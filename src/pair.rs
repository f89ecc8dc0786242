//! Both halves of an AArch64 EL1&0 address space behind one value: the TTBR0 table (a
//! process's, below `2^V::BITS`) and the TTBR1 table (the kernel's, the top `2^V::BITS` bytes),
//! with every call routed to the half its address lies in.

use memory_addr::{PhysAddr, VirtAddr};

use crate::arch::aarch64::{Granule, Lower, Upper, VaSize};
use crate::arch::aarch64_regs::{CpuFeatures, tcr_common, tcr_half};
use crate::arch::mem_layout::{Mair, MairLayout};
use crate::{
    AArch64, Flush, Granule4K, HugePages, Lookup, Mapping, MappingFlags, PageSize, PageTable,
    PagingError, PagingHandler, Translation, Va48,
};

/// The two tables of one AArch64 EL1&0 address space, borrowed together: `lower` for TTBR0_EL1,
/// `upper` for TTBR1_EL1. Each call goes to the half that translates its address (bit 63 picks
/// it; the half then refuses an address outside its range with
/// [`PagingError::NotCanonical`]), so a kernel does not keep its own enum over the two modes.
///
/// The pair is a view: the tables stay where the kernel keeps them (the TTBR1 table once,
/// shared by every process; a TTBR0 table per process), and a pair is made for the calls that
/// need both. The halves keep their own handlers (`H`, `K`), identifiers and liveness.
///
/// ```
/// use memory_addr::{pa, va};
/// use pagetable::{AArch64, AArch64Pair, BufferFrames, Lower, MappingFlags as F, PageSize};
/// use pagetable::{PageTable, Upper, Va48};
///
/// let mut memory = vec![0u64; 16 * 512];
/// let (kernel_mem, process_mem) = memory.split_at_mut(8 * 512);
/// let frames = BufferFrames::new(kernel_mem, pa!(0x8000_0000)).unwrap();
/// let mut kernel = PageTable::<AArch64<Va48, Upper>, _>::new(frames).unwrap();
/// let frames = BufferFrames::new(process_mem, pa!(0x9000_0000)).unwrap();
/// let mut process = PageTable::<AArch64<Va48, Lower>, _>::new(frames).unwrap();
///
/// let mut space = AArch64Pair::new(&mut process, &mut kernel);
/// let rw = F::READ | F::WRITE;
/// let flush = space.map(va!(0xffff_0000_0000_0000), pa!(0x4000_0000), PageSize::SIZE_4K, rw)?;
/// space.flush(flush);
/// let flush = space.map(va!(0x40_0000), pa!(0x4100_0000), PageSize::SIZE_4K, rw)?;
/// space.flush(flush);
/// assert_eq!(space.query(va!(0xffff_0000_0000_0000))?.pa, pa!(0x4000_0000));
/// assert_eq!(space.query(va!(0x40_0000))?.pa, pa!(0x4100_0000));
/// // Each landed in its own table.
/// assert!(kernel.query(va!(0xffff_0000_0000_0000)).is_ok());
/// assert!(process.query(va!(0x40_0000)).is_ok());
/// # Ok::<(), pagetable::PagingError>(())
/// ```
pub struct AArch64Pair<
    'a,
    H: PagingHandler,
    K: PagingHandler,
    V: VaSize<G> = Va48,
    G: Granule = Granule4K,
    M: MairLayout = Mair,
> {
    lower: &'a mut PageTable<AArch64<V, Lower, G, M>, H>,
    upper: &'a mut PageTable<AArch64<V, Upper, G, M>, K>,
}

impl<H, K, V, G, M> core::fmt::Debug for AArch64Pair<'_, H, K, V, G, M>
where
    H: PagingHandler,
    K: PagingHandler,
    V: VaSize<G>,
    G: Granule,
    M: MairLayout,
{
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AArch64Pair")
            .field("lower", &self.lower.root_paddr())
            .field("upper", &self.upper.root_paddr())
            .finish()
    }
}

/// The flush of a change made through an [`AArch64Pair`]: the half's own token. Give it to
/// [`AArch64Pair::flush`] (or to the half's [`PageTable::flush`]).
#[must_use = "the change is not in effect on a live table until the TLB is flushed"]
#[derive(Debug)]
pub enum PairFlush<V: VaSize<G> = Va48, G: Granule = Granule4K, M: MairLayout = Mair> {
    /// A change to the TTBR0 table.
    Lower(Flush<AArch64<V, Lower, G, M>>),
    /// A change to the TTBR1 table.
    Upper(Flush<AArch64<V, Upper, G, M>>),
}

impl<V: VaSize<G>, G: Granule, M: MairLayout> PairFlush<V, G, M> {
    /// Drops the token without flushing: for tables no MMU walks (see [`Flush::ignore`]).
    pub fn ignore(self) {
        match self {
            Self::Lower(f) => f.ignore(),
            Self::Upper(f) => f.ignore(),
        }
    }
}

/// Runs `$call` on the half that translates `$va`, wrapping a flush token in [`PairFlush`].
macro_rules! route {
    ($self:ident, $va:expr, |$t:ident| $call:expr) => {
        if $va.as_usize() as u64 >> 63 == 0 {
            let $t = &mut *$self.lower;
            $call.map(PairFlush::Lower)
        } else {
            let $t = &mut *$self.upper;
            $call.map(PairFlush::Upper)
        }
    };
}

impl<'a, H, K, V, G, M> AArch64Pair<'a, H, K, V, G, M>
where
    H: PagingHandler,
    K: PagingHandler,
    V: VaSize<G>,
    G: Granule,
    M: MairLayout,
{
    /// The address space made of `lower` (TTBR0_EL1) and `upper` (TTBR1_EL1).
    pub fn new(
        lower: &'a mut PageTable<AArch64<V, Lower, G, M>, H>,
        upper: &'a mut PageTable<AArch64<V, Upper, G, M>, K>,
    ) -> Self {
        Self { lower, upper }
    }

    /// The TTBR0 table.
    pub fn lower(&mut self) -> &mut PageTable<AArch64<V, Lower, G, M>, H> {
        self.lower
    }

    /// The TTBR1 table.
    pub fn upper(&mut self) -> &mut PageTable<AArch64<V, Upper, G, M>, K> {
        self.upper
    }

    /// TCR_EL1 for both halves: T0SZ and T1SZ, TG0 and TG1, write-back inner-shareable walks
    /// for each, and IPS, AS, HA and HD from `features`. A1 is 0: the ASID is TTBR0_EL1's,
    /// the lower table's [`tlb_id`](PageTable::tlb_id).
    ///
    /// ```
    /// # use pagetable::{AArch64, AArch64Pair, BufferFrames, Lower, PageTable, Upper, Va48};
    /// # use pagetable::arch::aarch64_regs::CpuFeatures;
    /// # use memory_addr::pa;
    /// # let mut memory = vec![0u64; 4 * 512];
    /// # let (a, b) = memory.split_at_mut(2 * 512);
    /// # let mut lower = PageTable::<AArch64<Va48, Lower>, _>::new(BufferFrames::new(a, pa!(0x8000_0000)).unwrap()).unwrap();
    /// # let mut upper = PageTable::<AArch64<Va48, Upper>, _>::new(BufferFrames::new(b, pa!(0x9000_0000)).unwrap()).unwrap();
    /// let space = AArch64Pair::new(&mut lower, &mut upper);
    /// // T0SZ 16, walks 0x3500, TG0 4K; T1SZ 16 << 16, walks 0x3500 << 16, TG1 4K (2 << 30);
    /// // IPS 48 bits (5 << 32).
    /// assert_eq!(space.tcr_el1(CpuFeatures::BASE), 0x5_b510_3510);
    /// ```
    #[must_use]
    pub fn tcr_el1(&self, features: CpuFeatures) -> u64 {
        tcr_half(V::BITS, G::SHIFT, false)
            | tcr_half(V::BITS, G::SHIFT, true)
            | tcr_common(features)
    }

    /// Loads both halves: TTBR1_EL1 with the upper table, then TTBR0_EL1 with the lower one
    /// (see [`PageTable::activate`]).
    ///
    /// # Safety
    ///
    /// Everything [`PageTable::activate`] asks, of both tables, and TCR_EL1 holds
    /// [`tcr_el1`](Self::tcr_el1) (both halves' walks enabled): the code that runs next, its
    /// stack and its data are mapped in one of the halves, and both tables stay alive and
    /// live while the CPU may walk them.
    pub unsafe fn activate(&self) {
        // SAFETY: the caller's contract covers both tables.
        unsafe {
            self.upper.activate();
            self.lower.activate();
        }
    }

    /// The leaf that translates `va`, from its half (see [`PageTable::query`]).
    ///
    /// # Errors
    ///
    /// As [`PageTable::query`] of the half.
    pub fn query(&self, va: VirtAddr) -> Result<Translation, PagingError> {
        if va.as_usize() as u64 >> 63 == 0 {
            self.lower.query(va)
        } else {
            self.upper.query(va)
        }
    }

    /// What the entry for `va` holds, from its half (see [`PageTable::lookup`]).
    ///
    /// # Errors
    ///
    /// As [`PageTable::lookup`] of the half.
    pub fn lookup(&self, va: VirtAddr) -> Result<Lookup, PagingError> {
        if va.as_usize() as u64 >> 63 == 0 {
            self.lower.lookup(va)
        } else {
            self.upper.lookup(va)
        }
    }

    /// Maps one leaf in the half of `va` (see [`PageTable::map`]).
    ///
    /// # Errors
    ///
    /// As [`PageTable::map`] of the half.
    pub fn map(
        &mut self,
        va: VirtAddr,
        pa: PhysAddr,
        size: PageSize,
        flags: MappingFlags,
    ) -> Result<PairFlush<V, G, M>, PagingError> {
        route!(self, va, |t| t.map(va, pa, size, flags))
    }

    /// Maps a region in the half of `va` (see [`PageTable::map_region`]); the region must lie
    /// in that half.
    ///
    /// # Errors
    ///
    /// As [`PageTable::map_region`] of the half.
    pub fn map_region(
        &mut self,
        va: VirtAddr,
        pa: PhysAddr,
        len: usize,
        flags: MappingFlags,
        huge: HugePages,
    ) -> Result<PairFlush<V, G, M>, PagingError> {
        route!(self, va, |t| t.map_region(va, pa, len, flags, huge))
    }

    /// Unmaps the leaf at `va` in its half (see [`PageTable::unmap`]).
    ///
    /// # Errors
    ///
    /// As [`PageTable::unmap`] of the half.
    pub fn unmap(&mut self, va: VirtAddr) -> Result<(Mapping, PairFlush<V, G, M>), PagingError> {
        if va.as_usize() as u64 >> 63 == 0 {
            let (m, f) = self.lower.unmap(va)?;
            Ok((m, PairFlush::Lower(f)))
        } else {
            let (m, f) = self.upper.unmap(va)?;
            Ok((m, PairFlush::Upper(f)))
        }
    }

    /// Unmaps a region in the half of `va` (see [`PageTable::unmap_region`]).
    ///
    /// # Errors
    ///
    /// As [`PageTable::unmap_region`] of the half.
    pub fn unmap_region(
        &mut self,
        va: VirtAddr,
        len: usize,
    ) -> Result<PairFlush<V, G, M>, PagingError> {
        route!(self, va, |t| t.unmap_region(va, len))
    }

    /// Gives the leaf at `va` new flags, in its half (see [`PageTable::protect`]).
    ///
    /// # Errors
    ///
    /// As [`PageTable::protect`] of the half.
    pub fn protect(
        &mut self,
        va: VirtAddr,
        flags: MappingFlags,
    ) -> Result<PairFlush<V, G, M>, PagingError> {
        route!(self, va, |t| t.protect(va, flags))
    }

    /// Gives a region new flags, in the half of `va` (see [`PageTable::protect_region`]).
    ///
    /// # Errors
    ///
    /// As [`PageTable::protect_region`] of the half.
    pub fn protect_region(
        &mut self,
        va: VirtAddr,
        len: usize,
        flags: MappingFlags,
    ) -> Result<PairFlush<V, G, M>, PagingError> {
        route!(self, va, |t| t.protect_region(va, len, flags))
    }

    /// Points the leaf at `va` at `pa`, in its half (see [`PageTable::remap`]).
    ///
    /// # Errors
    ///
    /// As [`PageTable::remap`] of the half.
    pub fn remap(&mut self, va: VirtAddr, pa: PhysAddr) -> Result<PairFlush<V, G, M>, PagingError> {
        route!(self, va, |t| t.remap(va, pa))
    }

    /// Flushes a change made through the pair, through the half that made it (its
    /// identifier, then its retired tables back to its handler; see [`PageTable::flush`]).
    pub fn flush(&mut self, token: PairFlush<V, G, M>) {
        match token {
            PairFlush::Lower(f) => self.lower.flush(f),
            PairFlush::Upper(f) => self.upper.flush(f),
        }
    }
}
