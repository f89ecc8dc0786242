//! The [`Arch`] trait that every paging mode implements, and the geometry derived from it.
//!
//! An arch file (one per architecture) holds the mode markers, the PTE bitfield, the flag
//! encoding and TLB maintenance for that architecture; it never walks a table. The walk is
//! generic, in [`crate::levels`].

use core::fmt;

use memory_addr::{MemoryAddr, VirtAddr};

use crate::error::PagingError;
use crate::flags::{AccessState, MappingFlags};
use crate::levels::{EntryKind, HasNext, Level};
use crate::tlb::TlbScope;

pub mod aarch64;
pub mod aarch64_regimes;
pub mod aarch64_regs;
pub mod aarch64_s2;
pub mod loongarch64;
pub mod mem_layout;
pub mod riscv;
pub mod x86_64;
pub mod x86_ept;

/// Which virtual addresses a paging mode's tables translate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VaSpace {
    /// Both halves of a sign-extended address space: `[0, 2^(n-1))` and
    /// `[2^64 - 2^(n-1), 2^64)` for `n` VA bits (x86, RISC-V, LoongArch).
    Canonical,
    /// The lower range `[0, 2^n)` (AArch64 TTBR0).
    Lower,
    /// The upper range `[2^64 - 2^n, 2^64)` (AArch64 TTBR1).
    Upper,
}

pub(crate) mod sealed {
    /// Keeps [`Arch`](super::Arch) and [`Level`](crate::Level) closed to this crate.
    pub trait Sealed {}
}

/// A paging mode: the shape of its tables and how its entries encode.
///
/// Implemented by the zero-sized mode types [`X86_64`](crate::X86_64),
/// [`X86_64La57`](crate::X86_64La57), [`AArch64`](crate::AArch64), [`Sv39`](crate::Sv39),
/// [`Sv48`](crate::Sv48), [`Sv57`](crate::Sv57), [`LoongArch64`](crate::LoongArch64) and the
/// stage 2 modes [`AArch64S2`](crate::AArch64S2), [`Sv39x4`](crate::Sv39x4),
/// [`Sv48x4`](crate::Sv48x4) and [`Ept`](crate::Ept); sealed.
///
/// Geometry comes from a few constants: a level at depth `d` (1 for the last level) translates
/// `INDEX_BITS` bits starting at bit `PAGE_SHIFT + (d - 1) * INDEX_BITS`; the root translates
/// the rest, up to `VA_BITS`. Each helper below derives from these, and [`geometry_ok`] checks
/// them at compile time for every mode a [`PageTable`](crate::PageTable) is built for.
///
/// The methods are asked about a level as a type (`entry_kind::<L>`) and work on raw `u64`
/// entries, so that the generic walk stays one piece of code and its hot loops keep
/// precomputed templates; [`Descriptor::decode`](crate::Descriptor::decode) turns an entry
/// into a typed [`Entry`](crate::Entry) through them, and the arch's `Pte` bitfields lay the
/// entries out as the manual does. An entry whose raw value is zero is empty on every
/// architecture, and no entry of the last level is a table.
pub trait Arch: sealed::Sealed + Copy + Default + fmt::Debug + Send + Sync + 'static {
    /// The entry as the architecture manual lays it out.
    type Pte: Copy + fmt::Debug + From<u64> + Into<u64>;
    /// The root level: [`L3`](crate::L3), [`L4`](crate::L4) or [`L5`](crate::L5).
    type Root: HasNext;
    /// The table's input address: [`VirtAddr`] for stage 1,
    /// [`GuestPhysAddr`](crate::GuestPhysAddr) for stage 2. Every call of the facade takes
    /// it, and every address it reports is one.
    type Addr: MemoryAddr + fmt::Debug + Send + Sync + 'static;
    /// The highest level that may hold a leaf; every level below it may too.
    type MaxLeaf: Level;

    /// A short name for the mode, for dumps.
    const NAME: &'static str;
    /// log2 of the smallest page (the translation granule).
    const PAGE_SHIFT: u32 = 12;
    /// Index bits per level below the root.
    const INDEX_BITS: u32 = 9;
    /// Virtual-address bits translated.
    const VA_BITS: u32;
    /// Physical-address bits an entry can hold.
    const PA_BITS: u32;
    /// Which virtual addresses the tables translate.
    const VA_SPACE: VaSpace;
    /// log2 of how many tables the root is made of: 0, or up to 4 for a stage 2 root of
    /// concatenated tables (AArch64 VTCR_EL2.SL0, RISC-V's x4 modes).
    const ROOT_CONCAT_BITS: u32 = 0;

    /// The software bit that tags an inaccessible leaf ([`MappingFlags::INACCESSIBLE`]): the
    /// leaf's entry with its valid bit(s) clear and this bit set, every other bit as the
    /// accessible leaf has it. 0 where the mode has none ([`Ept`](crate::Ept)).
    const INACCESSIBLE_TAG: u64;
    /// The software bit that tags a marker: a last-level entry that is invalid to the MMU and
    /// holds a caller's payload (see [`PageTable::set_marker`](crate::PageTable::set_marker)).
    const MARKER_TAG: u64;
    /// The bits of a marker entry that its payload does not use: the valid bit(s), both tags,
    /// and any bit the hardware reads in an invalid entry. The payload fills the other bits,
    /// lowest first: [`marker_bits`] of them.
    const MARKER_RESERVED: u64;

    /// The bits of a leaf (at any level) that the hardware ignores and this crate leaves to its
    /// caller: read and written with [`PageTable::soft_bits`](crate::PageTable::soft_bits) and
    /// [`set_soft_bits`](crate::PageTable::set_soft_bits), packed lowest first; kept by
    /// `protect`, `remap`, splits and `clear_access_state`.
    const SOFT_BITS: u64;

    /// The bits of a table entry linking a last-level table that the hardware ignores and
    /// this crate uses to count the non-empty entries of that table, so that a single-page
    /// unmap knows without a scan whether the table emptied (see `levels::live`); 0 where the
    /// mode has no room for it, and every such table is scanned instead. The field holds the
    /// count plus one (0: not counted) and must hold every value up to the entries per table
    /// plus one.
    const LIVE_COUNT: u64 = 0;
    /// The bits a counted table entry also carries so that the MMU never writes it (x86: A,
    /// which the processor sets only where it is clear): a plain store of the entry then
    /// cannot lose a hardware update.
    const LIVE_COUNT_SETTLED: u64 = 0;

    /// What a raw entry at level `L` is.
    fn entry_kind<L: Level>(pte: u64) -> EntryKind;
    /// An entry pointing to the next-level table at `pa`.
    fn table_entry(pa: u64) -> u64;
    /// The table address held by a table entry.
    fn table_addr(pte: u64) -> u64;

    /// Whether leaves can map the non-secure physical address space from a secure-world
    /// table ([`MappingFlags::NON_SECURE`]): the AArch64 EL3 regime only.
    const NON_SECURE: bool = false;

    /// Checks that `flags` can be expressed exactly: [`NON_SECURE`](Self::NON_SECURE) where
    /// the mode has it, then the mode's own rules ([`check_mode_flags`](Self::check_mode_flags)).
    ///
    /// # Errors
    ///
    /// [`PagingError::FlagsNotExpressible`] when they cannot.
    #[inline(always)]
    fn check_flags(flags: MappingFlags) -> Result<(), PagingError> {
        if flags.contains(MappingFlags::NON_SECURE) && !Self::NON_SECURE {
            return Err(PagingError::FlagsNotExpressible(flags));
        }
        Self::check_mode_flags(flags)
    }
    /// The mode's own rules for [`check_flags`](Self::check_flags).
    ///
    /// # Errors
    ///
    /// [`PagingError::FlagsNotExpressible`] when the mode cannot express `flags`.
    fn check_mode_flags(flags: MappingFlags) -> Result<(), PagingError>;
    /// A new leaf at level `L` with `flags` (already checked) and no address: OR in
    /// [`leaf_addr_bits`](Self::leaf_addr_bits). New leaves start accessed and, if writable,
    /// dirty (see [`AccessState`]).
    fn leaf_template<L: Level>(flags: MappingFlags) -> u64;
    /// The address field of a leaf at level `L` mapping `pa` (aligned to the leaf size): `pa`
    /// itself unless the arch shifts addresses into the entry.
    #[inline(always)]
    fn leaf_addr_bits<L: Level>(pa: u64) -> u64 {
        pa
    }
    /// The bits of a leaf at level `L` that hold its address.
    fn leaf_addr_mask<L: Level>() -> u64;
    /// The address a leaf at level `L` maps: its address bits, unless the arch shifts them.
    #[inline(always)]
    fn leaf_addr<L: Level>(pte: u64) -> u64 {
        pte & Self::leaf_addr_mask::<L>()
    }
    /// The flags of a leaf at level `L`.
    fn leaf_flags<L: Level>(pte: u64) -> MappingFlags;
    /// What the hardware recorded in a leaf at level `L`.
    fn leaf_state<L: Level>(pte: u64) -> AccessState;
    /// `old` with new `flags` (already checked): the address and the access state stay, except
    /// that a leaf that becomes writable starts dirty, as a new writable leaf does.
    fn leaf_protect<L: Level>(old: u64, flags: MappingFlags) -> u64;
    /// [`leaf_protect`](Self::leaf_protect) with `template` =
    /// [`leaf_template::<L>(flags)`](Self::leaf_template) worked out by the caller: region
    /// loops work it out once, not per leaf.
    #[inline(always)]
    fn leaf_protect_with<L: Level>(old: u64, flags: MappingFlags, template: u64) -> u64 {
        let _ = template;
        Self::leaf_protect::<L>(old, flags)
    }
    /// `old` with the state bits set in `clear` cleared.
    fn leaf_clear_state<L: Level>(old: u64, clear: AccessState) -> u64;
    /// `old` marked as the MMU would mark it, for software that manages the marks itself (a
    /// LoongArch page-modify handler; RISC-V without Svadu; AArch64 without FEAT_HAFDBS):
    /// accessed if `mark.accessed`, dirty if `mark.dirty` and the leaf is writable (a store
    /// through a read-only leaf is refused, not recorded).
    fn leaf_mark<L: Level>(old: u64, mark: AccessState) -> u64;
    /// The template (no address) of the leaves one level down that together map what the leaf
    /// `pte` at level `L` maps, with the same attributes and state.
    fn leaf_split<L: HasNext>(pte: u64) -> u64;
    /// Whether the hardware may still write this leaf (set an accessed or dirty bit), so that a
    /// read-modify-write of it must be atomic. Written without short-circuits: the check pass
    /// folds it over whole runs of leaves.
    fn hw_may_update<L: Level>(pte: u64) -> bool;
    /// Given the AND of a run of last-level entries, and their OR on demand: true only if every
    /// one of them is a leaf that the hardware will not write. A sufficient test, for the common
    /// case; on false the caller looks at the entries one by one.
    fn settled_leaves(all: u64, any: impl FnOnce() -> u64) -> bool;

    /// Whether table entries gate what the leaves below them allow: x86 R/W, U/S and XD,
    /// AArch64 stage 1 APTable, UXNTable and PXNTable, EPT R/W/X. The tables this crate makes
    /// gate nothing; an adopted tree's may. False lets the walk drop every gate check.
    const TABLE_GATES: bool = false;
    /// The start of the fold over the table entries above a leaf ([`path_step`](Self::path_step)).
    const PATH_START: u64 = 0;
    /// The fold `acc` over the table entries above a leaf, one table entry `pte` further down.
    #[inline(always)]
    fn path_step(acc: u64, pte: u64) -> u64 {
        let _ = pte;
        acc
    }
    /// A leaf's `flags` as the table entries folded into `acc` let them through: what the MMU
    /// allows through the whole walk.
    #[inline(always)]
    fn path_restrict(acc: u64, flags: MappingFlags) -> MappingFlags {
        let _ = acc;
        flags
    }
    /// The table entry `pte`, changed so that it lets through everything a leaf below it with
    /// `flags` allows (and nothing is taken from what it let through before). It sets and
    /// clears bits that depend on `flags` alone: `table_grant(pte, f)` is
    /// `(pte | table_grant(0, f)) & table_grant(!0, f)`, which the walk relies on.
    #[inline(always)]
    fn table_grant(pte: u64, flags: MappingFlags) -> u64 {
        let _ = flags;
        pte
    }

    /// Whether a table may sit at physical address 0. False on LoongArch, where an empty
    /// directory entry is zero and `lddir` reads it as a table at 0: a table there could not
    /// be told from no table, so the crate refuses such a frame from the handler.
    const TABLE_AT_PA_0: bool = true;

    /// Whether invalidating a page also drops the cached non-leaf entries used to reach it
    /// (x86 `invlpg`, Arm `TLBI VA*` without "last level", LoongArch has no such caches).
    /// False on RISC-V, where `sfence.vma` with an address orders only leaf entries: a
    /// [`Flush`](crate::Flush) that unlinked tables then flushes everything.
    const PAGE_FLUSH_DROPS_WALKS: bool = true;

    /// Whether the TLB can be invalidated page by page; if not (EPT), every
    /// [`Flush`](crate::Flush) flushes everything.
    const PAGE_FLUSH: bool = true;

    /// Whether any change needs break-before-make in this mode (see
    /// [`needs_break`](Self::needs_break)); false lets the walk drop every check for it.
    const BREAK_BEFORE_MAKE: bool = false;

    /// Whether replacing the valid entry `old` at level `L` by the valid entry `new` in a live
    /// table needs break-before-make: `old` made invalid and its TLB entries invalidated before
    /// `new` is written. True on AArch64 for a change of output address, memory type,
    /// shareability or nG, and between block and table (Arm ARM D8.16.1); false on the other
    /// architectures, whose MMUs tolerate seeing either entry.
    #[inline(always)]
    fn needs_break<L: Level>(old: u64, new: u64) -> bool {
        let _ = (old, new);
        false
    }

    /// Invalidates the TLB entries for the page at `va`. A no-op unless built for this
    /// architecture and for bare metal (`target_os = "none"`, or the `privileged` feature).
    fn flush_page(va: VirtAddr);
    /// Invalidates every TLB entry. A no-op unless built for this architecture and for bare
    /// metal, as for [`flush_page`](Self::flush_page).
    fn flush_all();

    /// Width of the identifier that tags this mode's TLB entries (the [`TlbScope`] id): the
    /// ASID (AArch64 16, of which 8 unless TCR_EL1.AS = 1; RISC-V 16; LoongArch 10), the PCID
    /// (x86, 12), the VMID (AArch64 stage 2 16, of which 8 unless VTCR_EL2.VS = 1; RISC-V
    /// G-stage 14). 0 on EPT, whose translations are tagged by the EPT pointer itself: there
    /// the only identifier is 0, and it selects single-context `INVEPT`.
    const TLB_ID_BITS: u32;
    /// What the identifier is called in this mode's manual: "ASID", "PCID" or "VMID".
    const TLB_ID_NAME: &'static str;

    /// The register value that makes the table rooted at `root` the one walked, tagged with
    /// `id` (0 when untagged): CR3, TTBR0_EL1 / TTBR1_EL1, VTTBR_EL2, satp, hgatp, the EPT
    /// pointer, PGDL / PGDH. The arch file says which fields it sets.
    fn root_register(root: u64, id: u16) -> u64;

    /// Invalidates the TLB entries of `scope` for `pages` pages from `start`, or every entry of
    /// `scope` when `range` is `None`. A no-op where [`flush_page`](Self::flush_page) is.
    /// The default ignores the identifier, for untagged scopes.
    fn flush_in(scope: TlbScope, range: Option<(VirtAddr, usize)>) {
        let _ = scope;
        flush_untagged::<Self>(range);
    }

    /// Makes the table of `scope` the one this CPU's MMU walks for this mode, tagged with the
    /// scope's identifier; an untagged scope also drops this CPU's cached translations that
    /// are not global. Does nothing where [`flush_page`](Self::flush_page) does nothing.
    ///
    /// # Safety
    ///
    /// As [`PageTable::activate`](crate::PageTable::activate) states.
    unsafe fn activate(scope: TlbScope);

    /// `va` folded into the index space `[0, 2^VA_BITS)`, or `None` if the table does not
    /// translate it.
    #[inline]
    fn fold(va: VirtAddr) -> Option<u64> {
        let va = va.as_usize() as u64;
        let low = va & va_mask::<Self>();
        match Self::VA_SPACE {
            VaSpace::Lower => (va >> Self::VA_BITS == 0).then_some(va),
            VaSpace::Upper => (va | va_mask::<Self>() == u64::MAX).then_some(low),
            VaSpace::Canonical => {
                let top = (va as i64) >> (Self::VA_BITS - 1);
                (top == 0 || top == -1).then_some(low)
            }
        }
    }

    /// The virtual address of a folded one.
    #[inline]
    fn unfold(folded: u64) -> VirtAddr {
        let va = match Self::VA_SPACE {
            VaSpace::Lower => folded,
            VaSpace::Upper => folded | !va_mask::<Self>(),
            VaSpace::Canonical => {
                let unused = 64 - Self::VA_BITS;
                (((folded << unused) as i64) >> unused) as u64
            }
        };
        VirtAddr::from(va as usize)
    }
}

/// The untagged flush of `range` (`pages` pages from a start), or of everything: what
/// [`Arch::flush_in`] does for a scope without an identifier.
pub(crate) fn flush_untagged<A: Arch>(range: Option<(VirtAddr, usize)>) {
    match range {
        None => A::flush_all(),
        Some((start, pages)) => {
            for i in 0..pages {
                A::flush_page(start + (i << A::PAGE_SHIFT));
            }
        }
    }
}

/// What an entry that the MMU sees as invalid holds for this crate, at `depth`: an
/// inaccessible leaf if it carries `inaccessible_tag` and, made valid, would be a leaf there
/// (`leaf_shape`); a marker if it is a last-level entry carrying `marker_tag` alone; else nothing.
#[inline(always)]
pub(crate) const fn absent_kind(
    pte: u64,
    depth: u8,
    inaccessible_tag: u64,
    marker_tag: u64,
    leaf_shape: bool,
) -> EntryKind {
    if pte & inaccessible_tag != 0 {
        if leaf_shape {
            EntryKind::Leaf
        } else {
            EntryKind::Empty
        }
    } else if depth == 1 && pte & marker_tag != 0 {
        EntryKind::Marker
    } else {
        EntryKind::Empty
    }
}

/// How many payload bits a marker holds in mode `A`: at least 50 in every mode (checked at
/// compile time).
pub const fn marker_bits<A: Arch>() -> u32 {
    64 - A::MARKER_RESERVED.count_ones()
}

/// `value`'s low bits placed, lowest first, at the set bits of `mask` (a software PDEP); bits
/// of `value` beyond `mask`'s count are dropped.
#[inline]
pub(crate) const fn deposit(mut value: u64, mut mask: u64) -> u64 {
    let mut out = 0;
    while mask != 0 {
        let bit = mask & mask.wrapping_neg();
        if value & 1 != 0 {
            out |= bit;
        }
        value >>= 1;
        mask &= mask - 1;
    }
    out
}

/// The bits of `pte` at the set bits of `mask`, packed lowest first ([`deposit`] undone).
#[inline]
pub(crate) const fn extract(pte: u64, mut mask: u64) -> u64 {
    let mut out = 0;
    let mut k = 0;
    while mask != 0 {
        let bit = mask & mask.wrapping_neg();
        if pte & bit != 0 {
            out |= 1 << k;
        }
        k += 1;
        mask &= mask - 1;
    }
    out
}

/// The marker entry holding `payload`, or `None` if it needs more than [`marker_bits`] bits.
/// The payload's bits fill the entry's unreserved bits, lowest first.
#[inline]
pub(crate) const fn marker_entry<A: Arch>(payload: u64) -> Option<u64> {
    if marker_bits::<A>() < 64 && payload >> marker_bits::<A>() != 0 {
        return None;
    }
    Some(deposit(payload, !A::MARKER_RESERVED) | A::MARKER_TAG)
}

/// The payload of the marker entry `pte` ([`marker_entry`] undone).
#[inline]
pub(crate) const fn marker_payload<A: Arch>(pte: u64) -> u64 {
    extract(pte, !A::MARKER_RESERVED)
}

/// How many software bits a leaf of mode `A` offers its caller ([`Arch::SOFT_BITS`]).
pub const fn soft_bits<A: Arch>() -> u32 {
    A::SOFT_BITS.count_ones()
}

/// Mask of the folded VA bits.
pub const fn va_mask<A: Arch>() -> u64 {
    (1 << A::VA_BITS) - 1
}

/// Depth of the root level.
pub const fn root_depth<A: Arch>() -> u8 {
    <A::Root as Level>::DEPTH
}

/// Depth of the highest level that may hold a leaf.
pub const fn max_leaf_depth<A: Arch>() -> u8 {
    <A::MaxLeaf as Level>::DEPTH
}

/// log2 of what one entry at `depth` maps.
pub const fn level_shift<A: Arch>(depth: u8) -> u32 {
    A::PAGE_SHIFT + (depth as u32 - 1) * A::INDEX_BITS
}

/// Index bits of a table at `depth`: `INDEX_BITS`, or what is left of the VA at the root.
pub const fn index_bits<A: Arch>(depth: u8) -> u32 {
    if depth == root_depth::<A>() {
        A::VA_BITS - level_shift::<A>(depth)
    } else {
        A::INDEX_BITS
    }
}

/// Entries in a table at `depth`.
pub const fn entries<A: Arch>(depth: u8) -> usize {
    1 << index_bits::<A>(depth)
}

/// The index of the entry translating folded `va` in a table at `depth`.
#[inline(always)]
pub const fn index_at<A: Arch>(depth: u8, va: u64) -> usize {
    (va >> level_shift::<A>(depth)) as usize & (entries::<A>(depth) - 1)
}

/// The offset bits of a leaf at level `L`: what lies below its size.
#[inline(always)]
pub const fn leaf_offset_mask<A: Arch, L: Level>() -> u64 {
    (1 << level_shift::<A>(L::DEPTH)) - 1
}

/// Bytes a table at `depth` occupies (and is aligned to): at least one granule.
pub const fn table_bytes<A: Arch>(depth: u8) -> usize {
    let bytes = entries::<A>(depth) * 8;
    let granule = 1 << A::PAGE_SHIFT;
    if bytes > granule { bytes } else { granule }
}

/// Mask of the physical-address bits an entry can hold.
pub const fn pa_mask<A: Arch>() -> u64 {
    (1 << A::PA_BITS) - 1
}

/// Whether a mode's constants describe a table tree the walk can handle; checked at compile
/// time by `const { assert!(geometry_ok::<A>()) }` wherever a table is built.
pub const fn geometry_ok<A: Arch>() -> bool {
    let root = root_depth::<A>();
    let max_leaf = max_leaf_depth::<A>();
    root >= 2
        && root <= 5
        && max_leaf <= root
        && A::PAGE_SHIFT >= 12
        && A::VA_BITS > level_shift::<A>(root)
        // A root of concatenated tables only where the mode says so, and at most 16 (stage 2).
        && index_bits::<A>(root) >= 1
        && A::ROOT_CONCAT_BITS <= 4
        && index_bits::<A>(root) <= A::INDEX_BITS + A::ROOT_CONCAT_BITS
        && A::VA_BITS <= 60
        && A::PA_BITS <= 56
        && A::PA_BITS > A::PAGE_SHIFT
        // Markers: a payload of at least 50 bits, tags among the reserved bits, the tags apart.
        && marker_bits::<A>() >= 50
        && A::MARKER_TAG.count_ones() == 1
        && A::MARKER_RESERVED & A::MARKER_TAG != 0
        && A::MARKER_RESERVED & A::INACCESSIBLE_TAG == A::INACCESSIBLE_TAG
        && A::MARKER_TAG & A::INACCESSIBLE_TAG == 0
}

/// The table's input address `addr` as the walk's `VirtAddr` (the same number).
#[inline(always)]
pub(crate) fn to_va<A: Arch>(addr: A::Addr) -> VirtAddr {
    VirtAddr::from(addr.into())
}

/// A walk's `VirtAddr` as the table's input address (the same number).
#[inline(always)]
pub(crate) fn from_va<A: Arch>(va: VirtAddr) -> A::Addr {
    A::Addr::from(va.as_usize())
}
