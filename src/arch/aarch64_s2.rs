//! AArch64 stage 2 (the EL1&0 regime's second stage, which a hypervisor at EL2 owns), 4 KiB
//! granule: [`AArch64S2<Ipa40>`](AArch64S2) and [`AArch64S2<Ipa48>`](AArch64S2).
//!
//! | IPA size | VTCR_EL2 | levels | root |
//! |---|---|---|---|
//! | [`Ipa40`] | T0SZ = 24, SL0 = 1 (start at level 1) | 1-3 | two concatenated level-1 tables: 1024 entries, 8 KiB, 8 KiB-aligned |
//! | [`Ipa48`] | T0SZ = 16, SL0 = 2 (start at level 0) | 0-3 | one level-0 table |
//!
//! Leaves: 4K pages, 2M and 1G blocks. Guest physical addresses (IPAs) go where the API says
//! `VirtAddr`; the output is the host physical address.
//!
//! Source: Arm ARM (DDI 0487), D8.2.8 (concatenated translation tables for the initial stage 2
//! lookup), D8.3 (stage 2 block and page descriptors: MemAttr\[3:0\] at bits 2-5, S2AP\[1:0\] at
//! bits 6-7, SH, AF, DBM, XN\[1:0\] at bits 53-54), D8.6.5 (stage 2 memory type encoding with
//! HCR_EL2.FWB = 0), D8.5 (hardware management of the access flag and dirty state at stage 2).
//!
//! Flags: `READ` is S2AP\[0\], `WRITE` S2AP\[1\], `EXECUTE` clears XN (executable at EL0 and
//! EL1); stage 2 can express write-only and execute-only, which stage 1 cannot. `USER` and
//! `GLOBAL` are stage 1 notions and are refused. The memory type is the stage 2 limit, combined
//! with the guest's own stage 1 attributes (the stronger wins): normal write-back (MemAttr
//! 0b1111) lets the guest choose, normal non-cacheable is 0b0101, device is Device-nGnRE
//! (0b0001).
//!
//! Dirty state: a writable leaf has DBM set; S2AP\[1\] set means dirty, clear means clean (with
//! FEAT_HAFDBS and VTCR_EL2.HD the MMU sets it on the first store). A leaf made read-only keeps
//! its dirtiness in software bit 55.

use core::marker::PhantomData;

use bitfield_struct::bitfield;
use memory_addr::VirtAddr;
use static_assertions::const_assert_eq;

use super::aarch64::{
    AF, CONTIGUOUS, DBM, INACCESSIBLE, MARKER, OA, SH_INNER, SH_OUTER, SW, SW_DIRTY, TABLE_OR_PAGE,
    VALID, entry_kind, needs_break,
};
use crate::arch::aarch64_regs::{CpuFeatures, vtcr};
use crate::arch::{self, Arch, VaSpace, sealed::Sealed};
use crate::error::PagingError;
use crate::flags::{AccessState, MappingFlags, MemType};
use crate::levels::{EntryKind, HasNext, L3, L4, Level};
use crate::tlb::TlbScope;

/// A VMSAv8-64 stage 2 descriptor, 4 KiB granule, 48-bit output address (D8.3). Table
/// descriptors use only bits 0-1 and the address; their other bits are ignored at stage 2.
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct AArch64S2Pte {
    /// Bit 0: valid.
    pub valid: bool,
    /// Bit 1: table (levels 0-2) or page (level 3); clear for a block.
    pub table_or_page: bool,
    /// MemAttr\[3:0\] (bits 2-5): the stage 2 memory type (HCR_EL2.FWB = 0): \[3:2\] = 0 for
    /// device (\[1:0\] its kind), else outer (\[3:2\]) and inner (\[1:0\]) cacheability.
    #[bits(4)]
    pub mem_attr: u8,
    /// S2AP\[1:0\] (bits 6-7): bit 0 allows reads, bit 1 writes (with DBM: dirty).
    #[bits(2)]
    pub s2ap: u8,
    /// SH\[1:0\] (bits 8-9): shareability.
    #[bits(2)]
    pub sh: u8,
    /// AF (bit 10): access flag.
    pub af: bool,
    /// Bit 11: RES0 (FnXS with FEAT_XS).
    pub fnxs: bool,
    /// Bits 12-47: output address.
    #[bits(36)]
    pub oa: u64,
    /// Bits 48-50: RES0 with a 48-bit output address.
    #[bits(3)]
    pub res0: u8,
    /// DBM (bit 51): dirty bit modifier.
    pub dbm: bool,
    /// Contiguous (bit 52).
    pub contiguous: bool,
    /// XN\[1:0\] (bits 53-54): 0b00 executable; bit 54 set: execute-never at EL0 and EL1
    /// (without FEAT_XNX, bit 54 is XN and bit 53 is RES0).
    #[bits(2)]
    pub xn: u8,
    /// Bits 55-58: reserved for software. This crate keeps a dirty bit in bit 55.
    #[bits(4)]
    pub sw: u8,
    /// Bits 59-63: PBHA and ignored bits.
    #[bits(5)]
    pub upper: u8,
}

const_assert_eq!(core::mem::size_of::<AArch64S2Pte>(), 8);
const_assert_eq!(AArch64S2Pte::MEM_ATTR_OFFSET, 2);
const_assert_eq!(AArch64S2Pte::S2AP_OFFSET, 6);
const_assert_eq!(AArch64S2Pte::SH_OFFSET, 8);
const_assert_eq!(AArch64S2Pte::AF_OFFSET, 10);
const_assert_eq!(AArch64S2Pte::OA_OFFSET, 12);
const_assert_eq!(AArch64S2Pte::DBM_OFFSET, 51);
const_assert_eq!(AArch64S2Pte::XN_OFFSET, 53);
const_assert_eq!(AArch64S2Pte::SW_OFFSET, 55);

const MEM_ATTR: u64 = 0b1111 << AArch64S2Pte::MEM_ATTR_OFFSET;
const S2AP_R: u64 = 1 << AArch64S2Pte::S2AP_OFFSET;
const S2AP_W: u64 = 2 << AArch64S2Pte::S2AP_OFFSET;
const S2AP_W_BIT: u32 = S2AP_W.trailing_zeros();
const DBM_BIT: u32 = DBM.trailing_zeros();
const SW_DIRTY_BIT: u32 = SW_DIRTY.trailing_zeros();
/// XN\[1\]: execute-never at both exception levels.
const XN: u64 = 1 << (AArch64S2Pte::XN_OFFSET + 1);
const XN_BOTH: u64 = 0b11 << AArch64S2Pte::XN_OFFSET;
/// Bits 59-63: ignored in a stage 2 leaf.
const UPPER: u64 = 0x1f << 59;
/// What a stage 2 leaf may change without break-before-make (D8.16.1): S2AP, XN, AF, DBM and
/// the software bits.
const NO_BREAK: u64 = S2AP_R | S2AP_W | XN_BOTH | AF | DBM | SW;

/// MemAttr for each memory type (D8.6.5, FWB = 0).
const fn mem_attr(mem: MemType) -> u64 {
    let code = match mem {
        // Normal, outer and inner write-back.
        MemType::Normal => 0b1111,
        // Normal, outer and inner non-cacheable.
        MemType::Uncached => 0b0101,
        // Device-nGnRE.
        MemType::Device => 0b0001,
    };
    code << AArch64S2Pte::MEM_ATTR_OFFSET
}

/// An IPA size of the stage 2 modes; sealed.
pub trait IpaSize: Sealed + Copy + Default + core::fmt::Debug + Send + Sync + 'static {
    /// The level the walk starts at.
    type Root: HasNext;
    /// IPA bits (64 - VTCR_EL2.T0SZ).
    const BITS: u32;
    /// log2 of the tables concatenated at the root.
    const CONCAT_BITS: u32;
}

/// 40-bit IPA (1 TiB of guest physical memory): starts at level 1 with two concatenated
/// tables.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ipa40;
/// 48-bit IPA: starts at level 0, one table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ipa48;

impl Sealed for Ipa40 {}
impl Sealed for Ipa48 {}
impl IpaSize for Ipa40 {
    type Root = L3;
    const BITS: u32 = 40;
    const CONCAT_BITS: u32 = 1;
}
impl IpaSize for Ipa48 {
    type Root = L4;
    const BITS: u32 = 48;
    const CONCAT_BITS: u32 = 0;
}

/// AArch64 stage 2 translation (IPA to PA), 4 KiB granule, for IPA size `I`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AArch64S2<I: IpaSize = Ipa40>(PhantomData<I>);

impl<I: IpaSize> Sealed for AArch64S2<I> {}

const fn is_writable(pte: u64) -> bool {
    pte & (DBM | S2AP_W) != 0
}

const fn is_dirty(pte: u64) -> bool {
    pte & (SW_DIRTY | S2AP_W) != 0
}

impl<I: IpaSize> Arch for AArch64S2<I> {
    type Pte = AArch64S2Pte;
    type Addr = crate::GuestPhysAddr;
    type Root = I::Root;
    type MaxLeaf = L3;
    const NAME: &'static str = if I::BITS == 40 {
        "aarch64-s2-40"
    } else {
        "aarch64-s2-48"
    };
    const VA_BITS: u32 = I::BITS;
    const PA_BITS: u32 = 48;
    const VA_SPACE: VaSpace = VaSpace::Lower;
    const ROOT_CONCAT_BITS: u32 = I::CONCAT_BITS;
    const BREAK_BEFORE_MAKE: bool = true;
    const INACCESSIBLE_TAG: u64 = INACCESSIBLE;
    const MARKER_TAG: u64 = MARKER;
    /// The valid bit and the two tags: 61 payload bits.
    const MARKER_RESERVED: u64 = VALID | INACCESSIBLE | MARKER;
    /// Bits 57-58 (55 and 56 are this crate's): 2 bits.
    const SOFT_BITS: u64 = SW & !(SW_DIRTY | INACCESSIBLE);

    #[inline(always)]
    fn entry_kind<L: Level>(pte: u64) -> EntryKind {
        entry_kind(pte, L::DEPTH, 3)
    }

    #[inline(always)]
    fn table_entry(pa: u64) -> u64 {
        pa | VALID | TABLE_OR_PAGE
    }

    #[inline(always)]
    fn table_addr(pte: u64) -> u64 {
        pte & OA
    }

    #[inline]
    fn check_mode_flags(flags: MappingFlags) -> Result<(), PagingError> {
        let stage1_only = MappingFlags::USER | MappingFlags::GLOBAL | MappingFlags::IGNORE_PAT;
        if flags.no_access() || flags.intersects(stage1_only) {
            Err(PagingError::FlagsNotExpressible(flags))
        } else {
            Ok(())
        }
    }

    #[inline(always)]
    fn leaf_template<L: Level>(flags: MappingFlags) -> u64 {
        let mem = flags.mem_type();
        let mut pte = VALID | AF | mem_attr(mem);
        pte |= if mem == MemType::Normal {
            SH_INNER
        } else {
            SH_OUTER
        };
        if L::DEPTH == 1 {
            pte |= TABLE_OR_PAGE;
        }
        if flags.contains(MappingFlags::READ) {
            pte |= S2AP_R;
        }
        // Writable leaves start dirty: DBM and S2AP[1] set.
        if flags.contains(MappingFlags::WRITE) {
            pte |= DBM | S2AP_W;
        }
        if !flags.contains(MappingFlags::EXECUTE) {
            pte |= XN;
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
        let mut flags = MappingFlags::EMPTY;
        if pte & S2AP_R != 0 {
            flags |= MappingFlags::READ;
        }
        if is_writable(pte) {
            flags |= MappingFlags::WRITE;
        }
        // XN[1:0] = 0b01 and 0b11 (FEAT_XNX: executable at one level only) read as not
        // executable: this crate writes neither.
        if pte & XN_BOTH == 0 {
            flags |= MappingFlags::EXECUTE;
        }
        let attr = (pte & MEM_ATTR) >> AArch64S2Pte::MEM_ATTR_OFFSET;
        let mem = if attr >> 2 == 0 {
            MemType::Device
        } else if attr == 0b0101 {
            MemType::Uncached
        } else {
            // Write-back, and the write-through mixes this crate does not write.
            MemType::Normal
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
        // Keep the address, AF, the other software bits and the ignored ones; the contiguous
        // hint goes, since a protect may cover part of a run.
        let keep = Self::leaf_addr_mask::<L>() | AF | (SW & !(SW_DIRTY | INACCESSIBLE)) | UPPER;
        let mut new = (old & keep) | (Self::leaf_template::<L>(flags) & !AF);
        // Shifts and masks instead of branches on `old`, so that a run of leaves vectorizes.
        if flags.contains(MappingFlags::WRITE) {
            // Stays clean (S2AP[1] clear) only if it was writable and clean: DBM set, S2AP[1]
            // and the software dirty bit clear.
            let clean = (old >> DBM_BIT) & !(old >> S2AP_W_BIT) & !(old >> SW_DIRTY_BIT) & 1;
            new &= !(clean << S2AP_W_BIT);
        } else {
            // Dirty (S2AP[1] or already the software bit) goes to the software bit.
            new |= (old | old << (SW_DIRTY_BIT - S2AP_W_BIT)) & SW_DIRTY;
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
                new = (new | DBM) & !S2AP_W;
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
            // Writable-dirty: S2AP[1] set, as a store with FEAT_HAFDBS leaves it.
            new |= S2AP_W;
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
        // The MMU sets AF, and S2AP[1] of a DBM leaf on a store (VTCR_EL2.HA, HD).
        (pte & VALID != 0) & ((pte & AF == 0) | (pte & (DBM | S2AP_W) == DBM))
    }

    #[inline(always)]
    fn settled_leaves(all: u64, any: impl FnOnce() -> u64) -> bool {
        // All valid pages with AF set, and either all dirty or none with DBM.
        all & (VALID | TABLE_OR_PAGE | AF) == VALID | TABLE_OR_PAGE | AF
            && (all & S2AP_W != 0 || any() & DBM == 0)
    }

    #[inline(always)]
    fn needs_break<L: Level>(old: u64, new: u64) -> bool {
        needs_break(old, new, NO_BREAK)
    }

    const TLB_ID_BITS: u32 = 16;
    const TLB_ID_NAME: &'static str = "VMID";

    /// VTTBR_EL2: BADDR (bits 47:1) = `root`, VMID (bits 63:48; 55:48 with 8-bit VMIDs) =
    /// `id`, CnP clear.
    #[inline]
    fn root_register(root: u64, id: u16) -> u64 {
        root | (id as u64) << 48
    }

    /// Tagged: the invalidations act on the VMID in VTTBR_EL2, so the flush loads the table's
    /// VTTBR_EL2 value for their duration and puts the previous value back after (safe at
    /// EL2, where VTTBR_EL2 translates nothing the running code uses); untagged, on whatever
    /// VMID is loaded.
    fn flush_in(scope: TlbScope, range: Option<(VirtAddr, usize)>) {
        match scope.id {
            Some(vmid) => flush_vmid(Self::root_register(scope.root, vmid), range),
            None => arch::flush_untagged::<Self>(range),
        }
    }

    unsafe fn activate(scope: TlbScope) {
        let vttbr = Self::root_register(scope.root, scope.id.unwrap_or(0));
        #[cfg(all(
            target_arch = "aarch64",
            any(target_os = "none", feature = "privileged")
        ))]
        // SAFETY: at EL2 (the caller's contract): VTTBR_EL2 translates the guest, not this
        // code; untagged, the guest's stale entries of the loaded VMID are dropped.
        unsafe {
            core::arch::asm!("dsb ish", "msr vttbr_el2, {}", "isb", in(reg) vttbr, options(nostack, preserves_flags));
            if scope.id.is_none() {
                core::arch::asm!(
                    "tlbi vmalls12e1",
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
        let _ = vttbr;
    }

    fn flush_page(va: VirtAddr) {
        #[cfg(all(
            target_arch = "aarch64",
            any(target_os = "none", feature = "privileged")
        ))]
        // SAFETY: at EL2, with the guest's VMID in VTTBR_EL2: barriers, the stage 2 entries for
        // the IPA, then every combined stage 1+2 entry of the VMID (they may hold the old
        // output address); no memory is touched.
        unsafe {
            core::arch::asm!(
                "dsb ishst",
                "tlbi ipas2e1is, {ipa}",
                "dsb ish",
                "tlbi vmalle1is",
                "dsb ish",
                "isb",
                ipa = in(reg) (va.as_usize() >> 12) & ((1 << 36) - 1),
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
        #[cfg(all(
            target_arch = "aarch64",
            any(target_os = "none", feature = "privileged")
        ))]
        // SAFETY: at EL2: every stage 1 and stage 2 entry of the current VMID.
        unsafe {
            core::arch::asm!(
                "dsb ishst",
                "tlbi vmalls12e1is",
                "dsb ish",
                "isb",
                options(nostack, preserves_flags)
            );
        }
    }
}

/// With `vttbr` loaded: `TLBI IPAS2E1IS` for each page of `range` and then `TLBI VMALLE1IS`
/// (combined entries may hold the old output), or `TLBI VMALLS12E1IS`; then the previous
/// VTTBR_EL2 back.
fn flush_vmid(vttbr: u64, range: Option<(VirtAddr, usize)>) {
    #[cfg(all(
        target_arch = "aarch64",
        any(target_os = "none", feature = "privileged")
    ))]
    // SAFETY: at EL2 (the contract of flushing a live stage 2 table): VTTBR_EL2 is swapped for
    // the duration, which changes no translation of EL2's own; the invalidations touch no
    // memory.
    unsafe {
        let saved: u64;
        core::arch::asm!("mrs {}, vttbr_el2", out(reg) saved, options(nostack, preserves_flags));
        core::arch::asm!("dsb ishst", "msr vttbr_el2, {}", "isb", in(reg) vttbr, options(nostack, preserves_flags));
        match range {
            None => core::arch::asm!("tlbi vmalls12e1is", options(nostack, preserves_flags)),
            Some((start, pages)) => {
                for i in 0..pages {
                    let ipa = super::aarch64::tlbi_page(start + (i << 12)) & ((1 << 36) - 1);
                    core::arch::asm!("tlbi ipas2e1is, {}", in(reg) ipa, options(nostack, preserves_flags));
                }
                core::arch::asm!(
                    "dsb ish",
                    "tlbi vmalle1is",
                    options(nostack, preserves_flags)
                );
            }
        }
        core::arch::asm!("dsb ish", "msr vttbr_el2, {}", "isb", in(reg) saved, options(nostack, preserves_flags));
    }
    #[cfg(not(all(
        target_arch = "aarch64",
        any(target_os = "none", feature = "privileged")
    )))]
    let _ = (vttbr, range);
}

impl<I: IpaSize> AArch64S2<I> {
    /// VTCR_EL2 for these tables: T0SZ and SL0 for the IPA size and root level, the 4 KiB
    /// granule, write-back inner-shareable walks, bit 31 (RES1), and PS, VS, HA and HD from
    /// `features` (see [`aarch64_regs`](crate::arch::aarch64_regs)).
    ///
    /// ```
    /// use pagetable::arch::aarch64_regs::CpuFeatures;
    /// use pagetable::{AArch64S2, Ipa40};
    /// // T0SZ 24, SL0 1 (level 1), walk attributes 0x3500, PS 48 bits, RES1.
    /// assert_eq!(AArch64S2::<Ipa40>::vtcr_el2(CpuFeatures::BASE), 0x8005_3558);
    /// ```
    #[must_use]
    pub const fn vtcr_el2(features: CpuFeatures) -> u64 {
        vtcr(I::BITS, <I::Root as Level>::DEPTH, features)
    }
}
