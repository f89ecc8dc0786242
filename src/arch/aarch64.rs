//! AArch64 stage 1: [`AArch64<V, R, G, M>`](AArch64) for translation granule `G` (4, 16 or
//! 64 KiB), VA size `V`, range `R` (TTBR0_EL1, [`Lower`], or TTBR1_EL1, [`Upper`]) and MAIR
//! layout `M` ([`Mair`], by default `Mair<0, 1, 2>`).
//!
//! | granule | VA sizes | levels | leaves |
//! |---|---|---|---|
//! | [`Granule4K`] | [`Va48`] (levels 0-3), [`Va39`] (levels 1-3) | 512 entries | 4K pages, 2M and 1G blocks |
//! | [`Granule16K`] | [`Va48`] (level 0 of 2 entries), [`Va47`] (levels 1-3), [`Va36`] (levels 2-3) | 2048 entries | 16K pages, 32M blocks |
//! | [`Granule64K`] | [`Va48`] (level 1 of 64 entries), [`Va42`] (levels 2-3) | 8192 entries | 64K pages, 512M blocks |
//!
//! The table shapes are not written here: they follow from the granule's shift (12, 14, 16),
//! its index bits (shift - 3) and the VA size, through the same constants every mode uses
//! ([`crate::arch::level_shift`], [`crate::arch::entries`]). Level-1 blocks of the 16K and 64K
//! granules and level-0 blocks need a 52-bit output address (FEAT_LPA, FEAT_LPA2), which these
//! modes do not use: such an entry is a translation fault, as the MMU takes it.
//!
//! Source: Arm ARM (DDI 0487), D8.2 (translation granules, the levels each VA size starts at),
//! D8.3 "Translation table descriptor formats" (VMSAv8-64 table, block and page descriptors),
//! D8.4 (memory attributes, MAIR), D8.5 (hardware management of the access flag and dirty
//! state).
//!
//! What the tables built here assume of the CPU:
//! * MAIR_EL1 with the mode's layout `M`: by default [`MAIR`], AttrIndx 0 normal write-back,
//!   1 Device-nGnRE, 2 normal non-cacheable; any other [`Mair`] layout with
//!   [`AArch64::mair`];
//! * TCR_EL1: TG0/TG1 = the granule, T0SZ/T1SZ = 64 - VA bits, IPS ≥ 48 bits.
//!
//! Dirty state follows the architecture's DBM scheme (D8.5): a writable leaf has DBM set, and
//! `AP[2]` (read-only) clear means dirty, set means clean; with FEAT_HAFDBS the MMU clears `AP[2]`
//! on the first store, without it that store faults and the kernel clears it. A leaf made
//! read-only keeps its dirtiness in software bit 55, as Linux does.
//!
//! Break-before-make (D8.16.1): changing a live valid entry's output address, its memory type or
//! shareability, its nG bit, or turning a block into a table needs the entry made invalid and
//! its TLB entries invalidated first; [`Arch::needs_break`] says which changes do, and
//! [`Liveness`](crate::Liveness) chooses what the page table does about it.

use core::marker::PhantomData;

use bitfield_struct::bitfield;
use memory_addr::VirtAddr;
use static_assertions::const_assert_eq;

pub use crate::arch::aarch64_regimes::{El2, El3, Lower, Regime, Upper, VaRange};
use crate::arch::aarch64_regimes::{flush_single, set_ttbr_single, tcr_single};
use crate::arch::aarch64_regs::{CpuFeatures, EPD0, EPD1, tcr_common, tcr_half};
use crate::arch::mem_layout::{Mair, MairLayout};
use crate::arch::{self, Arch, VaSpace, sealed::Sealed};
use crate::error::PagingError;
use crate::flags::{AccessState, MappingFlags, MemType};
use crate::levels::{EntryKind, HasNext, L2, L3, L4, Level};
use crate::tlb::TlbScope;

/// A VMSAv8-64 stage 1 descriptor, 48-bit output address (D8.3). One layout serves table,
/// block and page descriptors of every granule; the docs say which fields each uses.
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct AArch64Pte {
    /// Bit 0: valid.
    pub valid: bool,
    /// Bit 1: 1 for a table descriptor (levels 0-2) or a page descriptor (level 3); 0 for a
    /// block descriptor (levels 1-2).
    pub table_or_page: bool,
    /// AttrIndx[2:0] (bits 2-4): index into MAIR_EL1.
    #[bits(3)]
    pub attr_indx: u8,
    /// NS (bit 5): non-secure output address (Secure state only).
    pub ns: bool,
    /// AP[1] (bit 6): EL0 may access.
    pub ap_el0: bool,
    /// AP[2] (bit 7): read-only (with DBM set: clean).
    pub ap_ro: bool,
    /// SH[1:0] (bits 8-9): shareability; 0b11 inner, 0b10 outer.
    #[bits(2)]
    pub sh: u8,
    /// AF (bit 10): access flag.
    pub af: bool,
    /// nG (bit 11): not global (tagged with the ASID).
    pub ng: bool,
    /// Bits 12-47: output address (the next table's address in a table descriptor). With the
    /// 16K and 64K granules its low 2 or 4 bits are zero (for 64K, bits 12-15 would hold
    /// OA\[51:48\] with a 52-bit output address, not used here).
    #[bits(36)]
    pub oa: u64,
    /// Bits 48-49: RES0 with a 48-bit output address.
    #[bits(2)]
    pub res0: u8,
    /// GP (bit 50): guarded page (FEAT_BTI).
    pub gp: bool,
    /// DBM (bit 51): dirty bit modifier (FEAT_HAFDBS).
    pub dbm: bool,
    /// Contiguous (bit 52): one of a run of entries the TLB may cache as one.
    pub contiguous: bool,
    /// PXN (bit 53): privileged execute never.
    pub pxn: bool,
    /// UXN (bit 54): unprivileged execute never.
    pub uxn: bool,
    /// Bits 55-58: reserved for software. This crate keeps a dirty bit in bit 55.
    #[bits(4)]
    pub sw: u8,
    /// Bits 59-63: PXNTable, UXNTable, APTable[1:0], NSTable in a table descriptor; ignored in
    /// block and page descriptors.
    #[bits(5)]
    pub upper: u8,
}

const_assert_eq!(core::mem::size_of::<AArch64Pte>(), 8);
const_assert_eq!(AArch64Pte::ATTR_INDX_OFFSET, 2);
const_assert_eq!(AArch64Pte::AP_EL0_OFFSET, 6);
const_assert_eq!(AArch64Pte::SH_OFFSET, 8);
const_assert_eq!(AArch64Pte::AF_OFFSET, 10);
const_assert_eq!(AArch64Pte::OA_OFFSET, 12);
const_assert_eq!(AArch64Pte::OA_OFFSET + AArch64Pte::OA_BITS, 48);
const_assert_eq!(AArch64Pte::DBM_OFFSET, 51);
const_assert_eq!(AArch64Pte::UXN_OFFSET, 54);
const_assert_eq!(AArch64Pte::SW_OFFSET, 55);

pub(super) const VALID: u64 = 1 << AArch64Pte::VALID_OFFSET;
pub(super) const TABLE_OR_PAGE: u64 = 1 << AArch64Pte::TABLE_OR_PAGE_OFFSET;
const ATTR_INDX: u64 = 0b111 << AArch64Pte::ATTR_INDX_OFFSET;
const AP_EL0: u64 = 1 << AArch64Pte::AP_EL0_OFFSET;
const AP_RO: u64 = 1 << AArch64Pte::AP_RO_OFFSET;
pub(super) const SH_INNER: u64 = 0b11 << AArch64Pte::SH_OFFSET;
pub(super) const SH_OUTER: u64 = 0b10 << AArch64Pte::SH_OFFSET;
pub(super) const AF: u64 = 1 << AArch64Pte::AF_OFFSET;
const NG: u64 = 1 << AArch64Pte::NG_OFFSET;
const NS: u64 = 1 << AArch64Pte::NS_OFFSET;
const GP: u64 = 1 << AArch64Pte::GP_OFFSET;
/// PXNTable (bit 59 of a table descriptor): no privileged fetch below.
const PXN_TABLE: u64 = 1 << 59;
/// UXNTable (bit 60): no unprivileged fetch below.
const UXN_TABLE: u64 = 1 << 60;
/// APTable\[0\] (bit 61): no EL0 access below.
const AP_TABLE_NO_EL0: u64 = 1 << 61;
/// APTable\[1\] (bit 62): no write below.
const AP_TABLE_RO: u64 = 1 << 62;
/// Bits 59-63: ignored in a leaf; APTable, XNTable, NSTable in a table descriptor.
const UPPER: u64 = ((1 << AArch64Pte::UPPER_BITS) - 1) << AArch64Pte::UPPER_OFFSET;
pub(super) const OA: u64 = ((1 << AArch64Pte::OA_BITS) - 1) << AArch64Pte::OA_OFFSET;
pub(super) const DBM: u64 = 1 << AArch64Pte::DBM_OFFSET;
pub(super) const CONTIGUOUS: u64 = 1 << AArch64Pte::CONTIGUOUS_OFFSET;
const PXN: u64 = 1 << AArch64Pte::PXN_OFFSET;
const UXN: u64 = 1 << AArch64Pte::UXN_OFFSET;
/// This crate's software dirty bit: dirtiness of a leaf that is read-only now.
pub(super) const SW_DIRTY: u64 = 1 << AArch64Pte::SW_OFFSET;
/// How far AP\[2\] (read-only) lies below [`SW_DIRTY`].
const DIRTY_FROM_AP_RO: u32 = AArch64Pte::SW_OFFSET as u32 - AArch64Pte::AP_RO_OFFSET as u32;
const_assert_eq!(AP_RO << DIRTY_FROM_AP_RO, SW_DIRTY);
/// How far AP\[2\] lies below DBM.
const DBM_ABOVE_AP_RO: u32 = AArch64Pte::DBM_OFFSET as u32 - AArch64Pte::AP_RO_OFFSET as u32;
const_assert_eq!(AP_RO << DBM_ABOVE_AP_RO, DBM);
/// Software bit 56: an inaccessible leaf, valid bit clear (this crate's tag).
pub(super) const INACCESSIBLE: u64 = 1 << (AArch64Pte::SW_OFFSET + 1);
/// Software bit 57: a marker, valid bit and bit 56 clear (this crate's tag; a leaf's bit 57
/// stays the caller's).
pub(super) const MARKER: u64 = 1 << (AArch64Pte::SW_OFFSET + 2);

/// The MAIR_EL1 value the default layout (`Mair<0, 1, 2>`) assumes: Attr0 = 0xff (normal,
/// inner and outer write-back non-transient, read- and write-allocate), Attr1 = 0x04
/// (Device-nGnRE), Attr2 = 0x44 (normal, inner and outer non-cacheable).
pub const MAIR: u64 = 0x44_04_ff;
const_assert_eq!(MAIR, <Mair as MairLayout>::VALUE);

/// The AttrIndx of each memory type under layout `M`.
#[inline(always)]
const fn attr_index<M: MairLayout>(mem: MemType) -> u64 {
    (match mem {
        MemType::Normal => M::NORMAL,
        MemType::Device => M::DEVICE,
        MemType::Uncached => M::UNCACHED,
    }) as u64
}

/// A translation granule; sealed. Its shift sets every level's size, its index bits are
/// `SHIFT - 3` (a table is one granule of 8-byte entries).
pub trait Granule: Sealed + Copy + Default + core::fmt::Debug + Send + Sync + 'static {
    /// The highest level that may hold a block with a 48-bit output address.
    type MaxLeaf: Level;
    /// log2 of the granule.
    const SHIFT: u32;
}

/// The 4 KiB granule: 512-entry tables; 4K pages, 2M and 1G blocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Granule4K;
/// The 16 KiB granule: 2048-entry tables; 16K pages and 32M blocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Granule16K;
/// The 64 KiB granule: 8192-entry tables; 64K pages and 512M blocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Granule64K;

impl Sealed for Granule4K {}
impl Sealed for Granule16K {}
impl Sealed for Granule64K {}

impl Granule for Granule4K {
    type MaxLeaf = L3;
    const SHIFT: u32 = 12;
}
impl Granule for Granule16K {
    type MaxLeaf = L2;
    const SHIFT: u32 = 14;
}
impl Granule for Granule64K {
    type MaxLeaf = L2;
    const SHIFT: u32 = 16;
}

/// A VA size that granule `G` supports, and the level its walk starts at; sealed. A VA size is
/// implemented only for the granules this crate supports it with: `AArch64<Va36, Lower,
/// Granule4K>` does not compile.
///
/// ```compile_fail,E0277
/// # use pagetable::*;
/// // 36-bit VA is a 16K-granule size here.
/// let _ = PageTable::<AArch64<Va36, Lower, Granule4K>, BufferFrames>::new;
/// ```
pub trait VaSize<G: Granule>:
    Sealed + Copy + Default + core::fmt::Debug + Send + Sync + 'static
{
    /// The level the walk starts at.
    type Root: HasNext;
    /// VA bits (64 - TnSZ).
    const BITS: u32;
}

macro_rules! va_sizes {
    ($($(#[$doc:meta])* $name:ident = $bits:literal: $($granule:ident => $root:ident),*;)*) => {$(
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct $name;
        impl Sealed for $name {}
        $(impl VaSize<$granule> for $name {
            type Root = $root;
            const BITS: u32 = $bits;
        })*
    )*};
}

va_sizes! {
    /// 48-bit VA: four levels from level 0 (4K, 16K: a level-0 table of 2 entries), or three
    /// from level 1 (64K: a level-1 table of 64 entries).
    Va48 = 48: Granule4K => L4, Granule16K => L4, Granule64K => L3;
    /// 47-bit VA, 16K granule: three levels from level 1.
    Va47 = 47: Granule16K => L3;
    /// 42-bit VA, 64K granule: two levels from level 2.
    Va42 = 42: Granule64K => L2;
    /// 39-bit VA, 4K granule: three levels from level 1.
    Va39 = 39: Granule4K => L3;
    /// 36-bit VA, 16K granule: two levels from level 2.
    Va36 = 36: Granule16K => L2;
}

/// AArch64 stage 1 translation with granule `G` ([`Granule4K`] by default), VA size `V`
/// ([`Va48`] by default), range `R` ([`Lower`] for TTBR0, [`Upper`] for TTBR1) and MAIR layout
/// `M` (which AttrIndx holds each memory type; [`Mair`]`<0, 1, 2>` by default).
///
/// ```
/// use pagetable::arch::mem_layout::Mair;
/// use pagetable::{AArch64, Granule4K, Lower, Va48};
/// // A kernel whose MAIR_EL1 holds device memory at index 0 and normal memory at 1.
/// type Kernel = AArch64<Va48, Lower, Granule4K, Mair<1, 0, 2>>;
/// assert_eq!(Kernel::mair(), 0x44_ff_04);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AArch64<
    V: VaSize<G> = Va48,
    R: VaRange = Lower,
    G: Granule = Granule4K,
    M: MairLayout = Mair,
>(PhantomData<(V, R, G, M)>);

impl<V: VaSize<G>, R: VaRange, G: Granule, M: MairLayout> Sealed for AArch64<V, R, G, M> {}

/// What a descriptor at `depth` is, where blocks may sit up to `max_leaf` (stage 1 and 2 alike).
#[inline(always)]
pub(super) const fn entry_kind(pte: u64, depth: u8, max_leaf: u8) -> EntryKind {
    if pte & VALID == 0 {
        // D8.3: an invalid descriptor's other bits are ignored.
        let leaf_shape = if depth == 1 {
            pte & TABLE_OR_PAGE != 0
        } else {
            pte & TABLE_OR_PAGE == 0 && depth <= max_leaf
        };
        arch::absent_kind(pte, depth, INACCESSIBLE, MARKER, leaf_shape)
    } else if depth == 1 {
        // At level 3, bit 1 clear is reserved: it translates as invalid.
        if pte & TABLE_OR_PAGE != 0 {
            EntryKind::Leaf
        } else {
            EntryKind::Empty
        }
    } else if pte & TABLE_OR_PAGE != 0 {
        EntryKind::Table
    } else if depth <= max_leaf {
        EntryKind::Leaf
    } else {
        // A block where the granule and output size allow none: a translation fault.
        EntryKind::Empty
    }
}

/// Whether replacing a valid `old` by a valid `new` needs break-before-make (Arm ARM D8.16.1),
/// stated as an allow-list: a change of any bit outside `no_break` (the stage's access
/// permissions, AF, DBM and the software bits) needs one. That covers block to table and table
/// to block (bit 1, and the output address), the output address, memory attributes,
/// shareability, nG, NS, GP and the Contiguous hint, and any bit nobody thought to list.
#[inline(always)]
pub(super) const fn needs_break(old: u64, new: u64, no_break: u64) -> bool {
    let both_valid = old & new & VALID != 0;
    both_valid && (old ^ new) & !no_break != 0
}

/// The software bits, 55-58, in a block or page descriptor (stage 1 and 2 alike).
pub(super) const SW: u64 = 0b1111 << AArch64Pte::SW_OFFSET;

/// The table descriptor bit that forbids fetches below for a leaf of `user`'s privilege:
/// UXNTable (bit 60) for EL0, PXNTable (bit 59) for EL1; in a regime with one privilege level
/// bit 60 is XNTable and bit 59 RES0.
const fn exec_table_bit(user: bool, regime: Regime) -> u64 {
    if user || regime.single_level() {
        UXN_TABLE
    } else {
        PXN_TABLE
    }
}

/// What a stage 1 leaf may change without break-before-make: AP[2:1], PXN, UXN, AF, DBM and the
/// software bits.
const NO_BREAK: u64 = AP_EL0 | AP_RO | PXN | UXN | AF | DBM | SW;

const fn is_writable(pte: u64) -> bool {
    pte & DBM != 0 || pte & AP_RO == 0
}

const fn is_dirty(pte: u64) -> bool {
    pte & SW_DIRTY != 0 || pte & AP_RO == 0
}

const fn name(granule: u32, bits: u32, upper: bool, regime: Regime) -> &'static str {
    match (regime, granule, bits) {
        (Regime::El2, 12, 48) => return "aarch64-48-el2",
        (Regime::El2, 12, 39) => return "aarch64-39-el2",
        (Regime::El2, ..) => return "aarch64-el2",
        (Regime::El3, 12, 48) => return "aarch64-48-el3",
        (Regime::El3, 12, 39) => return "aarch64-39-el3",
        (Regime::El3, ..) => return "aarch64-el3",
        (Regime::El10, ..) => {}
    }
    match (granule, bits, upper) {
        (12, 48, false) => "aarch64-48-ttbr0",
        (12, 48, true) => "aarch64-48-ttbr1",
        (12, 39, false) => "aarch64-39-ttbr0",
        (12, 39, true) => "aarch64-39-ttbr1",
        (14, 48, false) => "aarch64-16k-48-ttbr0",
        (14, 48, true) => "aarch64-16k-48-ttbr1",
        (14, 47, false) => "aarch64-16k-47-ttbr0",
        (14, 47, true) => "aarch64-16k-47-ttbr1",
        (14, 36, false) => "aarch64-16k-36-ttbr0",
        (14, 36, true) => "aarch64-16k-36-ttbr1",
        (16, 48, false) => "aarch64-64k-48-ttbr0",
        (16, 48, true) => "aarch64-64k-48-ttbr1",
        (16, 42, false) => "aarch64-64k-42-ttbr0",
        (16, 42, true) => "aarch64-64k-42-ttbr1",
        _ => "aarch64",
    }
}

impl<V: VaSize<G>, R: VaRange, G: Granule, M: MairLayout> Arch for AArch64<V, R, G, M> {
    type Pte = AArch64Pte;
    type Addr = VirtAddr;
    type Root = V::Root;
    type MaxLeaf = G::MaxLeaf;
    const NAME: &'static str = name(
        G::SHIFT,
        V::BITS,
        matches!(R::SPACE, VaSpace::Upper),
        R::REGIME,
    );
    const NON_SECURE: bool = matches!(R::REGIME, Regime::El3);
    const PAGE_SHIFT: u32 = G::SHIFT;
    const INDEX_BITS: u32 = G::SHIFT - 3;
    const BREAK_BEFORE_MAKE: bool = true;
    const VA_BITS: u32 = V::BITS;
    const PA_BITS: u32 = 48;
    const VA_SPACE: VaSpace = R::SPACE;
    const INACCESSIBLE_TAG: u64 = INACCESSIBLE;
    const MARKER_TAG: u64 = MARKER;
    /// The valid bit and the two tags: 61 payload bits.
    const MARKER_RESERVED: u64 = VALID | INACCESSIBLE | MARKER;
    /// Bits 57-58 (55 and 56 are this crate's): 2 bits.
    const SOFT_BITS: u64 = SW & !(SW_DIRTY | INACCESSIBLE);

    #[inline(always)]
    fn entry_kind<L: Level>(pte: u64) -> EntryKind {
        entry_kind(pte, L::DEPTH, <G::MaxLeaf as Level>::DEPTH)
    }

    #[inline(always)]
    fn table_entry(pa: u64) -> u64 {
        // No hierarchical restrictions (APTable, XNTable all zero): the leaves decide.
        pa | VALID | TABLE_OR_PAGE
    }

    #[inline(always)]
    fn table_addr(pte: u64) -> u64 {
        pte & OA & !((1 << G::SHIFT) - 1)
    }

    const TABLE_GATES: bool = true;

    #[inline(always)]
    fn path_step(acc: u64, pte: u64) -> u64 {
        // The hierarchical controls forbid when set in any table descriptor of the walk.
        acc | pte
    }

    #[inline]
    fn path_restrict(acc: u64, flags: MappingFlags) -> MappingFlags {
        if acc & (AP_TABLE_NO_EL0 | AP_TABLE_RO | UXN_TABLE | PXN_TABLE) == 0 {
            // No table on the way restricts, as none this crate makes does.
            return flags;
        }
        let user = flags.contains(MappingFlags::USER);
        let mut gone = MappingFlags::EMPTY;
        if acc & AP_TABLE_NO_EL0 != 0 {
            gone |= MappingFlags::USER;
        }
        if acc & AP_TABLE_RO != 0 {
            gone |= MappingFlags::WRITE;
        }
        if acc & exec_table_bit(user, R::REGIME) != 0 {
            gone |= MappingFlags::EXECUTE;
        }
        flags.without(gone)
    }

    #[inline]
    fn table_grant(pte: u64, flags: MappingFlags) -> u64 {
        let user = flags.contains(MappingFlags::USER);
        let mut pte = pte;
        if user {
            pte &= !AP_TABLE_NO_EL0;
        }
        if flags.contains(MappingFlags::WRITE) {
            pte &= !AP_TABLE_RO;
        }
        if flags.contains(MappingFlags::EXECUTE) {
            pte &= !exec_table_bit(user, R::REGIME);
        }
        pte
    }

    #[inline]
    fn check_mode_flags(flags: MappingFlags) -> Result<(), PagingError> {
        // EL1 can always read a valid stage 1 mapping: there is no write- or execute-only.
        // IGNORE_PAT is EPT's. A regime with one privilege level has no EL0 access and no
        // ASIDs: its leaves are global, and only global leaves read back as written.
        let single = R::REGIME.single_level();
        let regime_ok = !single
            || (!flags.contains(MappingFlags::USER) && flags.contains(MappingFlags::GLOBAL));
        if flags.contains(MappingFlags::READ)
            && !flags.contains(MappingFlags::IGNORE_PAT)
            && regime_ok
        {
            Ok(())
        } else {
            Err(PagingError::FlagsNotExpressible(flags))
        }
    }

    #[inline(always)]
    fn leaf_template<L: Level>(flags: MappingFlags) -> u64 {
        let mem = flags.mem_type();
        let mut pte = VALID | AF | attr_index::<M>(mem) << AArch64Pte::ATTR_INDX_OFFSET;
        pte |= if mem == MemType::Normal {
            SH_INNER
        } else {
            SH_OUTER
        };
        if L::DEPTH == 1 {
            pte |= TABLE_OR_PAGE;
        }
        // Writable leaves start dirty: DBM set, AP[2] clear.
        pte |= if flags.contains(MappingFlags::WRITE) {
            DBM
        } else {
            AP_RO
        };
        let execute = flags.contains(MappingFlags::EXECUTE);
        if R::REGIME.single_level() {
            // AP[1] is RES1; no nG (no ASIDs); one execute-never bit, XN (bit 54); NS at EL3.
            pte |= AP_EL0;
            if !execute {
                pte |= UXN;
            }
            if flags.contains(MappingFlags::NON_SECURE) {
                pte |= NS;
            }
        } else {
            let user = flags.contains(MappingFlags::USER);
            if user {
                pte |= AP_EL0;
            }
            if !flags.contains(MappingFlags::GLOBAL) {
                pte |= NG;
            }
            // Execute rights belong to one privilege level: EL0 for user leaves, EL1 otherwise.
            pte |= match (execute, user) {
                (false, _) => PXN | UXN,
                (true, true) => PXN,
                (true, false) => UXN,
            };
        }
        if flags.contains(MappingFlags::INACCESSIBLE) {
            pte = (pte & !VALID) | INACCESSIBLE;
        }
        pte
    }

    #[inline(always)]
    fn leaf_addr_mask<L: Level>() -> u64 {
        // The OA field above the leaf's size.
        OA & !arch::leaf_offset_mask::<Self, L>()
    }

    #[inline]
    fn leaf_flags<L: Level>(pte: u64) -> MappingFlags {
        let mut flags = MappingFlags::READ;
        if is_writable(pte) {
            flags |= MappingFlags::WRITE;
        }
        if R::REGIME.single_level() {
            // Every leaf of the regime is global; AP[1] is RES1, not EL0 access.
            flags |= MappingFlags::GLOBAL;
            if pte & UXN == 0 {
                flags |= MappingFlags::EXECUTE;
            }
            if Self::NON_SECURE && pte & NS != 0 {
                flags |= MappingFlags::NON_SECURE;
            }
        } else {
            let user = pte & AP_EL0 != 0;
            if user {
                flags |= MappingFlags::USER;
            }
            if pte & NG == 0 {
                flags |= MappingFlags::GLOBAL;
            }
            if pte & if user { UXN } else { PXN } == 0 {
                flags |= MappingFlags::EXECUTE;
            }
        }
        let index = (pte & ATTR_INDX) >> AArch64Pte::ATTR_INDX_OFFSET;
        // The device index and the indices the layout does not define read as device.
        let mem = if index == M::NORMAL as u64 {
            MemType::Normal
        } else if index == M::UNCACHED as u64 {
            MemType::Uncached
        } else {
            MemType::Device
        };
        if pte & INACCESSIBLE != 0 {
            flags |= MappingFlags::INACCESSIBLE;
        }
        flags.with_mem_type(mem)
    }

    #[inline(always)]
    fn leaf_state<L: Level>(pte: u64) -> AccessState {
        AccessState {
            accessed: pte & AF != 0,
            dirty: is_dirty(pte),
        }
    }

    #[inline]
    fn leaf_protect<L: Level>(old: u64, flags: MappingFlags) -> u64 {
        Self::leaf_protect_with::<L>(old, flags, Self::leaf_template::<L>(flags))
    }

    #[inline]
    fn leaf_protect_with<L: Level>(old: u64, flags: MappingFlags, template: u64) -> u64 {
        // Keep the address, AF, and the bits flags do not speak for; the contiguous hint goes,
        // since a protect may cover part of a run.
        // NS is the caller's at EL3 (NON_SECURE), kept as found elsewhere.
        let ns = if Self::NON_SECURE { 0 } else { NS };
        let keep =
            Self::leaf_addr_mask::<L>() | AF | (SW & !(SW_DIRTY | INACCESSIBLE)) | UPPER | GP | ns;
        let mut new = (old & keep) | (template & !AF);
        if flags.contains(MappingFlags::WRITE) {
            // Stays clean only if it was writable and clean; a leaf becoming writable starts
            // dirty like a new one. Writable and clean is DBM and AP[2] set and SW_DIRTY
            // clear: both moved down onto AP[2] (shifts, no compare, as below).
            new |= (old >> DBM_ABOVE_AP_RO) & old & (!old >> DIRTY_FROM_AP_RO) & AP_RO;
        } else {
            // SW_DIRTY if `is_dirty(old)`: kept if set, or AP[2] clear moved up into it (one
            // shift, no compare, so that a run of leaves compiles to vector operations).
            new |= (old & SW_DIRTY) | ((!old & AP_RO) << DIRTY_FROM_AP_RO);
        }
        new
    }

    #[inline]
    fn leaf_clear_state<L: Level>(old: u64, clear: AccessState) -> u64 {
        let mut new = old;
        if clear.accessed {
            new &= !AF;
        }
        if clear.dirty {
            new &= !SW_DIRTY;
            if is_writable(old) {
                // Writable-clean: the next store sets AP[2] clear again (by hardware or fault).
                new |= DBM | AP_RO;
            }
        }
        new
    }

    #[inline]
    fn leaf_mark<L: Level>(old: u64, mark: AccessState) -> u64 {
        let mut new = old;
        if mark.accessed {
            new |= AF;
        }
        if mark.dirty && is_writable(old) {
            // Writable-dirty: AP[2] clear, as a store with FEAT_HAFDBS leaves it.
            new &= !AP_RO;
        }
        new
    }

    #[inline]
    fn leaf_split<L: HasNext>(pte: u64) -> u64 {
        let mut template = pte & !Self::leaf_addr_mask::<L>() & !CONTIGUOUS;
        if L::DEPTH == 2 {
            template |= TABLE_OR_PAGE;
        }
        template
    }

    #[inline(always)]
    fn hw_may_update<L: Level>(pte: u64) -> bool {
        // With FEAT_HAFDBS the MMU sets AF, and clears `AP[2]` of a DBM leaf on a store.
        (pte & VALID != 0) & ((pte & AF == 0) | (pte & (DBM | AP_RO) == DBM | AP_RO))
    }

    #[inline(always)]
    fn settled_leaves(all: u64, any: impl FnOnce() -> u64) -> bool {
        // All valid pages with AF set, and no leaf both DBM and read-only (a clean writable
        // leaf, which the MMU makes dirty by clearing `AP[2]`).
        all & (VALID | TABLE_OR_PAGE | AF) == VALID | TABLE_OR_PAGE | AF && {
            let any = any();
            any & DBM == 0 || any & AP_RO == 0
        }
    }

    #[inline(always)]
    fn needs_break<L: Level>(old: u64, new: u64) -> bool {
        needs_break(old, new, NO_BREAK)
    }

    const TLB_ID_BITS: u32 = if R::REGIME.single_level() { 0 } else { 16 };
    const TLB_ID_NAME: &'static str = "ASID";

    /// TTBR0_EL1 / TTBR1_EL1: BADDR (bits 47:1) = `root`, ASID (bits 63:48) = `id`, CnP clear.
    /// TTBR0_EL2 / TTBR0_EL3 (no ASID): BADDR alone.
    #[inline]
    fn root_register(root: u64, id: u16) -> u64 {
        root | (id as u64) << 48
    }

    fn flush_in(scope: TlbScope, range: Option<(VirtAddr, usize)>) {
        match scope.id {
            // A table that may hold global leaves flushes them, for every ASID.
            Some(asid) if !scope.global && !R::REGIME.single_level() => flush_asid(asid, range),
            _ => arch::flush_untagged::<Self>(range),
        }
    }

    unsafe fn activate(scope: TlbScope) {
        let ttbr = Self::root_register(scope.root, scope.id.unwrap_or(0));
        if R::REGIME.single_level() {
            // SAFETY: forwarded: the caller's contract (`PageTable::activate`), at the
            // regime's exception level.
            return unsafe { set_ttbr_single(R::REGIME, ttbr) };
        }
        // SAFETY: forwarded: the caller's contract (`PageTable::activate`).
        unsafe { set_ttbr_el1(ttbr, R::SPACE == VaSpace::Upper, scope.id.is_some()) }
    }

    fn flush_page(va: VirtAddr) {
        if R::REGIME.single_level() {
            // VA[55:12], as every TLBI by VA takes it.
            let page = (va.as_usize() as u64 >> 12) & ((1 << 44) - 1);
            return flush_single(R::REGIME, Some(page));
        }
        #[cfg(all(
            target_arch = "aarch64",
            any(target_os = "none", feature = "privileged")
        ))]
        // SAFETY: barriers and a TLB invalidation by VA, all ASIDs, EL1, inner shareable: they
        // drop cached translations and touch no memory.
        unsafe {
            core::arch::asm!(
                "dsb ishst",
                "tlbi vaae1is, {page}",
                "dsb ish",
                "isb",
                page = in(reg) tlbi_page(va),
                options(nostack, preserves_flags),
            );
        }
        #[cfg(not(all(
            target_arch = "aarch64",
            any(target_os = "none", feature = "privileged")
        )))]
        let _ = va;
    }

    fn flush_all() {
        if R::REGIME.single_level() {
            flush_single(R::REGIME, None);
        } else {
            #[cfg(all(
                target_arch = "aarch64",
                any(target_os = "none", feature = "privileged")
            ))]
            // SAFETY: as for `flush_page`, for every EL1 translation.
            unsafe {
                core::arch::asm!(
                    "dsb ishst",
                    "tlbi vmalle1is",
                    "dsb ish",
                    "isb",
                    options(nostack, preserves_flags)
                );
            }
        }
    }
}

/// The page number field of a TLBI operand for `va` (bits 43:0 = VA[55:12]).
#[cfg(all(
    target_arch = "aarch64",
    any(target_os = "none", feature = "privileged")
))]
#[inline(always)]
pub(super) fn tlbi_page(va: VirtAddr) -> u64 {
    (va.as_usize() as u64 >> 12) & ((1 << 44) - 1)
}

/// `TLBI VAE1IS` (ASID in bits 63:48) for each page of `range`, or `TLBI ASIDE1IS` for every
/// non-global entry of the ASID, between the barriers the untagged forms use.
fn flush_asid(asid: u16, range: Option<(VirtAddr, usize)>) {
    #[cfg(all(
        target_arch = "aarch64",
        any(target_os = "none", feature = "privileged")
    ))]
    {
        let tag = (asid as u64) << 48;
        // SAFETY: a barrier so the table writes are seen before the invalidation; TLB
        // invalidations tagged with one ASID, broadcast to the inner shareable domain; no
        // memory is touched.
        unsafe { core::arch::asm!("dsb ishst", options(nostack, preserves_flags)) };
        match range {
            None => {
                // SAFETY: as above.
                unsafe {
                    core::arch::asm!("tlbi aside1is, {}", in(reg) tag, options(nostack, preserves_flags))
                }
            }
            Some((start, pages)) => {
                for i in 0..pages {
                    let op = tag | tlbi_page(start + (i << 12));
                    // SAFETY: as above.
                    unsafe {
                        core::arch::asm!("tlbi vae1is, {}", in(reg) op, options(nostack, preserves_flags))
                    }
                }
            }
        }
        // SAFETY: waits for the invalidations on every CPU, then resynchronizes this one.
        unsafe { core::arch::asm!("dsb ish", "isb", options(nostack, preserves_flags)) };
    }
    #[cfg(not(all(
        target_arch = "aarch64",
        any(target_os = "none", feature = "privileged")
    )))]
    let _ = (asid, range);
}

/// Writes `ttbr` to TTBR1_EL1 (`upper`) or TTBR0_EL1; unless `tagged`, then drops this CPU's
/// EL1 translations (the new table's addresses may be cached from the old one).
///
/// # Safety
///
/// As [`PageTable::activate`](crate::PageTable::activate) states.
unsafe fn set_ttbr_el1(ttbr: u64, upper: bool, tagged: bool) {
    #[cfg(all(
        target_arch = "aarch64",
        any(target_os = "none", feature = "privileged")
    ))]
    // SAFETY: the caller's table translates everything that runs next (its contract); the
    // barrier makes its table writes visible to the walk first.
    unsafe {
        core::arch::asm!("dsb ish", options(nostack, preserves_flags));
        if upper {
            core::arch::asm!("msr ttbr1_el1, {}", "isb", in(reg) ttbr, options(nostack, preserves_flags));
        } else {
            core::arch::asm!("msr ttbr0_el1, {}", "isb", in(reg) ttbr, options(nostack, preserves_flags));
        }
        if !tagged {
            core::arch::asm!(
                "tlbi vmalle1",
                "dsb nsh",
                "isb",
                options(nostack, preserves_flags)
            );
        }
    }
    #[cfg(not(all(
        target_arch = "aarch64",
        any(target_os = "none", feature = "privileged")
    )))]
    let _ = (ttbr, upper, tagged);
}

impl<V: VaSize<G>, R: VaRange, G: Granule, M: MairLayout> AArch64<V, R, G, M> {
    /// MAIR_EL1 for this mode's layout: normal write-back (0xff), Device-nGnRE (0x04) and
    /// normal non-cacheable (0x44) at the layout's indices, Device-nGnRnE (0x00) at the rest.
    /// [`MAIR`] for the default layout.
    #[must_use]
    pub const fn mair() -> u64 {
        M::VALUE
    }

    /// The translation control register of the table's regime.
    ///
    /// * [`Lower`], [`Upper`]: TCR_EL1 for this table's half alone: its TnSZ, TGn and walk
    ///   attributes, the other half's walks disabled (EPDn), and IPS, AS, HA and HD from
    ///   `features` (see [`aarch64_regs`](crate::arch::aarch64_regs)). For both halves,
    ///   [`AArch64Pair::tcr_el1`](crate::AArch64Pair::tcr_el1).
    /// * [`El2`], [`El3`]: TCR_EL2 (without VHE) or TCR_EL3: T0SZ, walk attributes, TG0, PS,
    ///   HA and HD from `features`, and the RES1 bits 23 and 31.
    ///
    /// ```
    /// use pagetable::arch::aarch64_regs::CpuFeatures;
    /// use pagetable::{AArch64, El3, Lower, Va48};
    /// // T0SZ 16, write-back inner-shareable walks, TG0 4K; EPD1 (TG1 4K); IPS 48 bits.
    /// assert_eq!(AArch64::<Va48, Lower>::tcr(CpuFeatures::BASE), 0x5_8080_3510);
    /// // T0SZ 16, walks 0x3500, TG0 4K, PS 48 bits (5 << 16), RES1 bits 23 and 31.
    /// assert_eq!(AArch64::<Va48, El3>::tcr(CpuFeatures::BASE), 0x8085_3510);
    /// ```
    #[must_use]
    pub const fn tcr(features: CpuFeatures) -> u64 {
        if R::REGIME.single_level() {
            return tcr_single(V::BITS, G::SHIFT, features);
        }
        let upper = matches!(R::SPACE, VaSpace::Upper);
        let other = if upper {
            EPD0 | tcr_half(V::BITS, G::SHIFT, false) & (3 << 14)
        } else {
            EPD1 | tcr_half(V::BITS, G::SHIFT, true) & (3 << 30)
        };
        tcr_half(V::BITS, G::SHIFT, upper) | other | tcr_common(features)
    }
}
