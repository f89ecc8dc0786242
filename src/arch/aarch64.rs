//! AArch64 stage 1, 4 KiB granule: [`AArch64<Va48>`](AArch64) (levels 0-3) and
//! [`AArch64<Va39>`](AArch64) (levels 1-3), each for the lower range (TTBR0_EL1, [`Lower`]) or
//! the upper one (TTBR1_EL1, [`Upper`]).
//!
//! Source: Arm ARM (DDI 0487), D8.3 "Translation table descriptor formats" (VMSAv8-64
//! table, block and page descriptors), D8.4 (memory attributes, MAIR), D8.5 (hardware
//! management of the access flag and dirty state).
//!
//! What the tables built here assume of the CPU:
//! * MAIR_EL1 = [`MAIR`]: AttrIndx 0 normal write-back, 1 Device-nGnRE, 2 normal
//!   non-cacheable;
//! * TCR_EL1: TG0/TG1 = 4 KiB, T0SZ/T1SZ = 64 - 48 (or 64 - 39), IPS ≥ 48 bits.
//!
//! Dirty state follows the architecture's DBM scheme (D8.5): a writable leaf has DBM set, and
//! `AP[2]` (read-only) clear means dirty, set means clean; with FEAT_HAFDBS the MMU clears `AP[2]`
//! on the first store, without it that store faults and the kernel clears it. A leaf made
//! read-only keeps its dirtiness in software bit 55, as Linux does.

use core::marker::PhantomData;

use bitfield_struct::bitfield;
use memory_addr::VirtAddr;
use static_assertions::const_assert_eq;

use super::{Arch, VaSpace, sealed::Sealed};
use crate::error::PagingError;
use crate::flags::{AccessState, MappingFlags, MemType};
use crate::levels::{EntryKind, L3, L4, Level};

/// A VMSAv8-64 stage 1 descriptor, 4 KiB granule, 48-bit output address (D8.3). One layout
/// serves table, block and page descriptors; the docs say which fields each uses.
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
    /// Bits 12-47: output address (the next table's address in a table descriptor).
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

const VALID: u64 = 1 << AArch64Pte::VALID_OFFSET;
const TABLE_OR_PAGE: u64 = 1 << AArch64Pte::TABLE_OR_PAGE_OFFSET;
const ATTR_INDX: u64 = 0b111 << AArch64Pte::ATTR_INDX_OFFSET;
const AP_EL0: u64 = 1 << AArch64Pte::AP_EL0_OFFSET;
const AP_RO: u64 = 1 << AArch64Pte::AP_RO_OFFSET;
const SH_INNER: u64 = 0b11 << AArch64Pte::SH_OFFSET;
const SH_OUTER: u64 = 0b10 << AArch64Pte::SH_OFFSET;
const AF: u64 = 1 << AArch64Pte::AF_OFFSET;
const NG: u64 = 1 << AArch64Pte::NG_OFFSET;
const OA: u64 = ((1 << AArch64Pte::OA_BITS) - 1) << AArch64Pte::OA_OFFSET;
const DBM: u64 = 1 << AArch64Pte::DBM_OFFSET;
const CONTIGUOUS: u64 = 1 << AArch64Pte::CONTIGUOUS_OFFSET;
const PXN: u64 = 1 << AArch64Pte::PXN_OFFSET;
const UXN: u64 = 1 << AArch64Pte::UXN_OFFSET;
/// This crate's software dirty bit: dirtiness of a leaf that is read-only now.
const SW_DIRTY: u64 = 1 << AArch64Pte::SW_OFFSET;

/// The MAIR_EL1 value the memory-type encoding assumes: Attr0 = 0xff (normal, inner and outer
/// write-back non-transient, read- and write-allocate), Attr1 = 0x04 (Device-nGnRE),
/// Attr2 = 0x44 (normal, inner and outer non-cacheable).
pub const MAIR: u64 = 0x44_04_ff;

const fn attr_index(mem: MemType) -> u64 {
    match mem {
        MemType::Normal => 0,
        MemType::Device => 1,
        MemType::Uncached => 2,
    }
}

/// A VA size of the 4 KiB-granule stage 1 modes; sealed.
pub trait VaSize: Sealed + Copy + Default + core::fmt::Debug + Send + Sync + 'static {
    /// The level the walk starts at.
    type Root: Level;
    /// VA bits (64 - TnSZ).
    const BITS: u32;
}

/// A VA range of the stage 1 modes: which TTBR the table serves; sealed.
pub trait VaRange: Sealed + Copy + Default + core::fmt::Debug + Send + Sync + 'static {
    /// The addresses it translates.
    const SPACE: VaSpace;
}

/// 48-bit VA: four levels, starting at level 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Va48;
/// 39-bit VA: three levels, starting at level 1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Va39;
/// The lower range, `[0, 2^n)`, translated through TTBR0_EL1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lower;
/// The upper range, `[2^64 - 2^n, 2^64)`, translated through TTBR1_EL1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Upper;

impl Sealed for Va48 {}
impl Sealed for Va39 {}
impl Sealed for Lower {}
impl Sealed for Upper {}

impl VaSize for Va48 {
    type Root = L4;
    const BITS: u32 = 48;
}
impl VaSize for Va39 {
    type Root = L3;
    const BITS: u32 = 39;
}
impl VaRange for Lower {
    const SPACE: VaSpace = VaSpace::Lower;
}
impl VaRange for Upper {
    const SPACE: VaSpace = VaSpace::Upper;
}

/// AArch64 stage 1 translation with the 4 KiB granule, for VA size `V` ([`Va48`] or [`Va39`])
/// and range `R` ([`Lower`] for TTBR0, [`Upper`] for TTBR1). Leaves: 4 KiB pages, 2 MiB and
/// 1 GiB blocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AArch64<V: VaSize = Va48, R: VaRange = Lower>(PhantomData<(V, R)>);

impl<V: VaSize, R: VaRange> Sealed for AArch64<V, R> {}

const fn leaf_shift(depth: u8) -> u32 {
    12 + 9 * (depth as u32 - 1)
}

const fn leaf_addr_mask(depth: u8) -> u64 {
    OA & !((1 << leaf_shift(depth)) - 1)
}

const fn is_writable(pte: u64) -> bool {
    pte & DBM != 0 || pte & AP_RO == 0
}

const fn is_dirty(pte: u64) -> bool {
    pte & SW_DIRTY != 0 || pte & AP_RO == 0
}

impl<V: VaSize, R: VaRange> Arch for AArch64<V, R> {
    type Pte = AArch64Pte;
    type Root = V::Root;
    type MaxLeaf = L3;
    const NAME: &'static str = if V::BITS == 48 {
        if matches!(R::SPACE, VaSpace::Lower) {
            "aarch64-48-ttbr0"
        } else {
            "aarch64-48-ttbr1"
        }
    } else if matches!(R::SPACE, VaSpace::Lower) {
        "aarch64-39-ttbr0"
    } else {
        "aarch64-39-ttbr1"
    };
    const VA_BITS: u32 = V::BITS;
    const PA_BITS: u32 = 48;
    const VA_SPACE: VaSpace = R::SPACE;

    #[inline(always)]
    fn entry_kind(pte: u64, depth: u8) -> EntryKind {
        if pte & VALID == 0 {
            EntryKind::Empty
        } else if depth == 1 {
            // At level 3, bit 1 clear is reserved: it translates as invalid.
            if pte & TABLE_OR_PAGE != 0 {
                EntryKind::Leaf
            } else {
                EntryKind::Empty
            }
        } else if pte & TABLE_OR_PAGE != 0 {
            EntryKind::Table
        } else if depth <= 3 {
            EntryKind::Leaf
        } else {
            // No level-0 blocks with the 4 KiB granule and a 48-bit OA: a translation fault.
            EntryKind::Empty
        }
    }

    #[inline(always)]
    fn table_entry(pa: u64) -> u64 {
        // No hierarchical restrictions (APTable, XNTable all zero): the leaves decide.
        pa | VALID | TABLE_OR_PAGE
    }

    #[inline(always)]
    fn table_addr(pte: u64) -> u64 {
        pte & OA
    }

    #[inline]
    fn check_flags(flags: MappingFlags) -> Result<(), PagingError> {
        // EL1 can always read a valid stage 1 mapping: there is no write- or execute-only.
        if flags.contains(MappingFlags::READ) {
            Ok(())
        } else {
            Err(PagingError::FlagsNotExpressible(flags))
        }
    }

    #[inline(always)]
    fn leaf_template(flags: MappingFlags, depth: u8) -> u64 {
        let mem = flags.mem_type();
        let mut pte = VALID | AF | attr_index(mem) << AArch64Pte::ATTR_INDX_OFFSET;
        pte |= if mem == MemType::Normal {
            SH_INNER
        } else {
            SH_OUTER
        };
        if depth == 1 {
            pte |= TABLE_OR_PAGE;
        }
        let user = flags.contains(MappingFlags::USER);
        if user {
            pte |= AP_EL0;
        }
        // Writable leaves start dirty: DBM set, AP[2] clear.
        pte |= if flags.contains(MappingFlags::WRITE) {
            DBM
        } else {
            AP_RO
        };
        if !flags.contains(MappingFlags::GLOBAL) {
            pte |= NG;
        }
        // Execute rights belong to one privilege level: EL0 for user leaves, EL1 otherwise.
        pte |= match (flags.contains(MappingFlags::EXECUTE), user) {
            (false, _) => PXN | UXN,
            (true, true) => PXN,
            (true, false) => UXN,
        };
        pte
    }

    #[inline(always)]
    fn leaf_addr_mask(depth: u8) -> u64 {
        leaf_addr_mask(depth)
    }

    #[inline]
    fn leaf_flags(pte: u64, _depth: u8) -> MappingFlags {
        let mut flags = MappingFlags::READ;
        let user = pte & AP_EL0 != 0;
        if is_writable(pte) {
            flags |= MappingFlags::WRITE;
        }
        if user {
            flags |= MappingFlags::USER;
        }
        if pte & NG == 0 {
            flags |= MappingFlags::GLOBAL;
        }
        if pte & if user { UXN } else { PXN } == 0 {
            flags |= MappingFlags::EXECUTE;
        }
        let mem = match (pte & ATTR_INDX) >> AArch64Pte::ATTR_INDX_OFFSET {
            0 => MemType::Normal,
            2 => MemType::Uncached,
            // Attr1 and the indices this crate does not define.
            _ => MemType::Device,
        };
        flags.with_mem_type(mem)
    }

    #[inline(always)]
    fn leaf_state(pte: u64, _depth: u8) -> AccessState {
        AccessState {
            accessed: pte & AF != 0,
            dirty: is_dirty(pte),
        }
    }

    #[inline]
    fn leaf_protect(old: u64, flags: MappingFlags, depth: u8) -> u64 {
        // Keep the address, AF, and the bits flags do not speak for; the contiguous hint goes,
        // since a protect may cover part of a run.
        let keep = leaf_addr_mask(depth)
            | AF
            | (0b1110 << AArch64Pte::SW_OFFSET)
            | (0x1f << 59)
            | (1 << 50)
            | (1 << 5);
        let mut new = (old & keep) | (Self::leaf_template(flags, depth) & !AF);
        if flags.contains(MappingFlags::WRITE) {
            // Stays clean only if it was writable and clean; a leaf becoming writable starts
            // dirty like a new one.
            if is_writable(old) && !is_dirty(old) {
                new |= AP_RO;
            }
        } else if is_dirty(old) {
            new |= SW_DIRTY;
        }
        new
    }

    #[inline]
    fn leaf_clear_state(old: u64, clear: AccessState, _depth: u8) -> u64 {
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
    fn leaf_split(pte: u64, depth: u8) -> u64 {
        let mut template = pte & !leaf_addr_mask(depth) & !CONTIGUOUS;
        if depth == 2 {
            template |= TABLE_OR_PAGE;
        }
        template
    }

    #[inline(always)]
    fn hw_may_update(pte: u64, _depth: u8) -> bool {
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

    fn flush_page(va: VirtAddr) {
        #[cfg(target_arch = "aarch64")]
        // SAFETY: barriers and a TLB invalidation by VA, all ASIDs, EL1, inner shareable: they
        // drop cached translations and touch no memory.
        unsafe {
            core::arch::asm!(
                "dsb ishst",
                "tlbi vaae1is, {page}",
                "dsb ish",
                "isb",
                page = in(reg) (va.as_usize() >> 12) & ((1 << 44) - 1),
                options(nostack, preserves_flags),
            );
        }
        #[cfg(not(target_arch = "aarch64"))]
        let _ = va;
    }

    fn flush_all() {
        #[cfg(target_arch = "aarch64")]
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
