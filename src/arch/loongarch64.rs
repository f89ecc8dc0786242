//! LoongArch64: four levels of 4 KiB tables over a 48-bit VA ([`LoongArch64`]).
//!
//! Source: LoongArch Reference Manual vol. 1, 5.4 (page-table entry format of TLBELO0/1 and
//! of the page tables walked by `lddir` / `ldpte`, huge-page entries) and 7.5 (CSR.PWCL,
//! CSR.PWCH, CSR.PGDL, CSR.PGDH).
//!
//! There is no hardware walker: a TLB-refill handler walks with `lddir` / `ldpte`, and the
//! layout it walks is what [`PWCL`] and [`PWCH`] describe: PT index at `VA[20:12]`, Dir1 at
//! `[29:21]`, Dir2 at `[38:30]`, Dir3 at `[47:39]`. The root goes into PGDL (and PGDH, for the upper
//! half: one table serves both halves of the sign-extended space).
//!
//! * A directory entry holds the bare physical address of the next table, nothing else.
//! * A huge leaf (2 MiB at Dir1, 1 GiB at Dir2) sets HUGE (bit 6) and keeps G in bit 12.
//! * **Empty directory entries are zero.** `lddir` on a zero entry reads the next level from
//!   physical address 0, so the page at physical address 0 must hold only invalid entries (be
//!   zero) for the walk of an unmapped address to end in a page-invalid exception rather than
//!   a stray translation. Linux avoids this with shared "invalid tables"; this crate keeps
//!   empty entries zero on every architecture and documents the requirement instead.
//! * No accessed bit exists, and nothing but software writes a table: `D` is what lets a
//!   store through (a store through a leaf with `D` clear raises a page-modify exception), so
//!   a writable leaf starts with `D` set; a leaf made read-only keeps its dirtiness in
//!   software bit 9.

use bitfield_struct::bitfield;
use memory_addr::VirtAddr;
use static_assertions::const_assert_eq;

use crate::arch::{self, Arch, VaSpace, sealed::Sealed};
use crate::error::PagingError;
use crate::flags::{AccessState, MappingFlags, MemType};
use crate::levels::{EntryKind, HasNext, L3, L4, Level};
use crate::tlb::TlbScope;

/// A LoongArch64 page-table entry (vol. 1, 5.4): the TLBELO layout plus the software bits the
/// walk carries along. Bit 6 and bit 12 change meaning in huge leaves, as their docs say.
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct LoongArchPte {
    /// V (bit 0): valid.
    pub v: bool,
    /// D (bit 1): dirty; stores are allowed only with D set.
    pub d: bool,
    /// PLV (bits 2-3): privilege level; accessible from levels 0..=PLV (or only PLV with RPLV).
    #[bits(2)]
    pub plv: u8,
    /// MAT (bits 4-5): memory access type: 0 SUC, 1 CC, 2 WUC.
    #[bits(2)]
    pub mat: u8,
    /// G (bit 6) in a last-level entry: global. HUGE (bit 6) in a directory-level entry: the
    /// entry is a huge leaf.
    pub g_or_huge: bool,
    /// P (bit 7): the physical page exists (software).
    pub p: bool,
    /// W (bit 8): writable (software).
    pub w: bool,
    /// Bits 9-11: free for software. This crate keeps a dirty bit in bit 9.
    #[bits(3)]
    pub sw: u8,
    /// Bits 12-47 (PALEN = 48): the physical address from bit 12 up. In a huge leaf, bit 12 is
    /// G (HGLOBAL) and the address starts at bit 21 or 30.
    #[bits(36)]
    pub ppn: u64,
    /// Bits 48-60: reserved, zero.
    #[bits(13)]
    pub reserved: u16,
    /// NR (bit 61): not readable.
    pub nr: bool,
    /// NX (bit 62): not executable.
    pub nx: bool,
    /// RPLV (bit 63): restricted privilege level: accessible only at exactly PLV.
    pub rplv: bool,
}

const_assert_eq!(core::mem::size_of::<LoongArchPte>(), 8);
const_assert_eq!(LoongArchPte::MAT_OFFSET, 4);
const_assert_eq!(LoongArchPte::G_OR_HUGE_OFFSET, 6);
const_assert_eq!(LoongArchPte::W_OFFSET, 8);
const_assert_eq!(LoongArchPte::PPN_OFFSET, 12);
const_assert_eq!(LoongArchPte::PPN_OFFSET + LoongArchPte::PPN_BITS, 48);
const_assert_eq!(LoongArchPte::NR_OFFSET, 61);
const_assert_eq!(LoongArchPte::RPLV_OFFSET, 63);

/// A directory-level entry that maps a huge page (vol. 1, 5.4.2: HUGE set): where it differs
/// from [`LoongArchPte`], bit 6 is HUGE, bit 12 is G (HGLOBAL), and the address starts above
/// it.
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct LoongArchHugePte {
    /// V (bit 0): valid.
    pub v: bool,
    /// D (bit 1): dirty.
    pub d: bool,
    /// PLV (bits 2-3): privilege level.
    #[bits(2)]
    pub plv: u8,
    /// MAT (bits 4-5): memory access type.
    #[bits(2)]
    pub mat: u8,
    /// HUGE (bit 6): 1, this directory entry maps a page.
    pub huge: bool,
    /// P (bit 7): the physical page exists (software).
    pub p: bool,
    /// W (bit 8): writable (software).
    pub w: bool,
    /// Bits 9-11: free for software.
    #[bits(3)]
    pub sw: u8,
    /// G (bit 12, HGLOBAL): global.
    pub g: bool,
    /// Bits 13-47: the physical address from bit 13 up; the bits below the page size (21 or
    /// 30) are zero.
    #[bits(35)]
    pub ppn: u64,
    /// Bits 48-60: reserved, zero.
    #[bits(13)]
    pub reserved: u16,
    /// NR (bit 61): not readable.
    pub nr: bool,
    /// NX (bit 62): not executable.
    pub nx: bool,
    /// RPLV (bit 63): restricted privilege level.
    pub rplv: bool,
}

const_assert_eq!(
    LoongArchHugePte::HUGE_OFFSET,
    LoongArchPte::G_OR_HUGE_OFFSET
);
const_assert_eq!(LoongArchHugePte::G_OFFSET, 12);
const_assert_eq!(
    LoongArchHugePte::PPN_OFFSET + LoongArchHugePte::PPN_BITS,
    48
);
const_assert_eq!(LoongArchHugePte::RPLV_OFFSET, LoongArchPte::RPLV_OFFSET);

const V: u64 = 1 << LoongArchPte::V_OFFSET;
const D: u64 = 1 << LoongArchPte::D_OFFSET;
const PLV_USER: u64 = 3 << LoongArchPte::PLV_OFFSET;
const PLV: u64 = 3 << LoongArchPte::PLV_OFFSET;
const MAT: u64 = 3 << LoongArchPte::MAT_OFFSET;
/// G in a last-level entry.
const G: u64 = 1 << LoongArchPte::G_OR_HUGE_OFFSET;
/// HUGE in a directory-level entry.
const HUGE: u64 = 1 << LoongArchHugePte::HUGE_OFFSET;
/// G in a huge leaf.
const HUGE_G: u64 = 1 << LoongArchHugePte::G_OFFSET;
const P: u64 = 1 << LoongArchPte::P_OFFSET;
const W: u64 = 1 << LoongArchPte::W_OFFSET;
/// This crate's software dirty bit: dirtiness of a leaf that is read-only now.
const SW_DIRTY: u64 = 1 << LoongArchPte::SW_OFFSET;
const SW: u64 = 0b111 << LoongArchPte::SW_OFFSET;
/// Software bit 10: an inaccessible leaf, V clear (this crate's tag).
const INACCESSIBLE: u64 = 2 << LoongArchPte::SW_OFFSET;
/// Software bit 11: a marker, V and bit 10 clear (this crate's tag; a leaf's bit 11 stays the
/// caller's).
const MARKER: u64 = 4 << LoongArchPte::SW_OFFSET;
const PPN: u64 = ((1 << LoongArchPte::PPN_BITS) - 1) << LoongArchPte::PPN_OFFSET;
const NR: u64 = 1 << LoongArchPte::NR_OFFSET;
const NX: u64 = 1 << LoongArchPte::NX_OFFSET;
const RPLV: u64 = 1 << LoongArchPte::RPLV_OFFSET;

/// CSR.PWCL for this layout: PTbase 12, PTwidth 9, Dir1 base 21 width 9, Dir2 base 30
/// width 9, PTEWidth 0 (64-bit entries).
pub const PWCL: u32 = 12 | 9 << 5 | 21 << 10 | 9 << 15 | 30 << 20 | 9 << 25;
/// CSR.PWCH for this layout: Dir3 base 39 width 9, no Dir4.
pub const PWCH: u32 = 39 | 9 << 6;

/// The G bit of a leaf at level `L`: bit 6 in a page, bit 12 (where a page's G would be
/// address) in a huge page, whose bit 6 is HUGE.
const fn global_bit<L: Level>() -> u64 {
    if L::DEPTH == 1 { G } else { HUGE_G }
}

const fn is_writable(pte: u64) -> bool {
    pte & (W | D) != 0
}

const fn is_dirty(pte: u64) -> bool {
    pte & (D | SW_DIRTY) != 0
}

/// LoongArch64 with 4 KiB pages: 48-bit sign-extended VA, four levels (PT, Dir1, Dir2,
/// Dir3); 4 KiB, 2 MiB and 1 GiB leaves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoongArch64;

impl Sealed for LoongArch64 {}

impl Arch for LoongArch64 {
    type Pte = LoongArchPte;
    type Addr = VirtAddr;
    type Root = L4;
    type MaxLeaf = L3;
    const NAME: &'static str = "loongarch64";
    const VA_BITS: u32 = 48;
    const PA_BITS: u32 = 48;
    const VA_SPACE: VaSpace = VaSpace::Canonical;
    const TABLE_AT_PA_0: bool = false;
    const INACCESSIBLE_TAG: u64 = INACCESSIBLE;
    const MARKER_TAG: u64 = MARKER;
    /// V, the two tags, and G (bit 6): a TLB refill pairs an even and an odd page and makes the
    /// pair global only if both are, so a marker stays non-global. 60 payload bits.
    const MARKER_RESERVED: u64 = V | INACCESSIBLE | MARKER | G;
    /// Bit 11 (9 and 10 are this crate's; P and W, bits 7-8, are the kernel's by convention but
    /// carried by the walk): 1 bit.
    const SOFT_BITS: u64 = SW & !(SW_DIRTY | INACCESSIBLE);

    #[inline(always)]
    fn entry_kind<L: Level>(pte: u64) -> EntryKind {
        // An entry with V clear loads into the TLB as invalid: an access through it raises a
        // page-invalid exception (PIL, PIS, PIF), whatever its other bits hold.
        if L::DEPTH == 1 {
            if pte & V != 0 {
                EntryKind::Leaf
            } else {
                arch::absent_kind(pte, 1, INACCESSIBLE, MARKER, true)
            }
        } else if pte & HUGE != 0 {
            if pte & V != 0 && L::DEPTH <= 3 {
                EntryKind::Leaf
            } else {
                arch::absent_kind(pte, L::DEPTH, INACCESSIBLE, MARKER, L::DEPTH <= 3)
            }
        } else if pte != 0 && pte & !PPN == 0 {
            EntryKind::Table
        } else {
            // Zero, or not a bare address: `lddir` would not walk it to a table of ours.
            EntryKind::Empty
        }
    }

    #[inline(always)]
    fn table_entry(pa: u64) -> u64 {
        pa
    }

    #[inline(always)]
    fn table_addr(pte: u64) -> u64 {
        pte & PPN
    }

    #[inline]
    fn check_mode_flags(flags: MappingFlags) -> Result<(), PagingError> {
        if flags.no_access() || flags.contains(MappingFlags::IGNORE_PAT) {
            Err(PagingError::FlagsNotExpressible(flags))
        } else {
            Ok(())
        }
    }

    #[inline(always)]
    fn leaf_template<L: Level>(flags: MappingFlags) -> u64 {
        let mat = match flags.mem_type() {
            MemType::Device => 0,
            MemType::Normal => 1,
            MemType::Uncached => 2,
        };
        let mut pte = V | P | mat << LoongArchPte::MAT_OFFSET;
        if L::DEPTH > 1 {
            pte |= HUGE;
        }
        if flags.contains(MappingFlags::WRITE) {
            pte |= W | D;
        }
        if !flags.contains(MappingFlags::READ) {
            pte |= NR;
        }
        if !flags.contains(MappingFlags::EXECUTE) {
            pte |= NX;
        }
        if flags.contains(MappingFlags::USER) {
            pte |= PLV_USER;
        }
        if flags.contains(MappingFlags::GLOBAL) {
            pte |= global_bit::<L>();
        }
        if flags.contains(MappingFlags::INACCESSIBLE) {
            pte = (pte & !V) | INACCESSIBLE;
        }
        pte
    }

    #[inline(always)]
    fn leaf_addr_mask<L: Level>() -> u64 {
        PPN & !arch::leaf_offset_mask::<Self, L>()
    }

    #[inline]
    fn leaf_flags<L: Level>(pte: u64) -> MappingFlags {
        let mut flags = MappingFlags::EMPTY;
        if pte & NR == 0 {
            flags |= MappingFlags::READ;
        }
        if is_writable(pte) {
            flags |= MappingFlags::WRITE;
        }
        if pte & NX == 0 {
            flags |= MappingFlags::EXECUTE;
        }
        if pte & PLV == PLV_USER {
            flags |= MappingFlags::USER;
        }
        if pte & global_bit::<L>() != 0 {
            flags |= MappingFlags::GLOBAL;
        }
        if pte & INACCESSIBLE != 0 {
            flags |= MappingFlags::INACCESSIBLE;
        }
        let mem = match (pte & MAT) >> LoongArchPte::MAT_OFFSET {
            1 => MemType::Normal,
            2 => MemType::Uncached,
            // SUC, and the reserved encoding 3.
            _ => MemType::Device,
        };
        flags.with_mem_type(mem)
    }

    #[inline(always)]
    fn leaf_state<L: Level>(pte: u64) -> AccessState {
        AccessState {
            accessed: true,
            dirty: is_dirty(pte),
        }
    }

    #[inline]
    fn leaf_protect<L: Level>(old: u64, flags: MappingFlags) -> u64 {
        // Keep the address, RPLV and the software bits other than this crate's.
        let keep = Self::leaf_addr_mask::<L>() | RPLV | (SW & !(SW_DIRTY | INACCESSIBLE));
        let mut new = (old & keep) | (Self::leaf_template::<L>(flags) & !D);
        if flags.contains(MappingFlags::WRITE) {
            // Stays clean only if it was writable and clean; one becoming writable starts dirty.
            if is_dirty(old) || !is_writable(old) {
                new |= D;
            }
        } else if is_dirty(old) {
            new |= SW_DIRTY;
        }
        new
    }

    #[inline]
    fn leaf_clear_state<L: Level>(old: u64, clear: AccessState) -> u64 {
        if clear.dirty {
            old & !(D | SW_DIRTY)
        } else {
            old
        }
    }

    #[inline]
    fn leaf_mark<L: Level>(old: u64, mark: AccessState) -> u64 {
        // No accessed bit; D is what lets a store through, set by the page-modify handler.
        if mark.dirty && is_writable(old) {
            old | D
        } else {
            old
        }
    }

    #[inline]
    fn leaf_split<L: HasNext>(pte: u64) -> u64 {
        let mut template = pte & !Self::leaf_addr_mask::<L>();
        if L::DEPTH == 2 {
            // 2 MiB to 4 KiB: no HUGE, and G moves from bit 12 to bit 6.
            let global = template & HUGE_G != 0;
            template &= !(HUGE | HUGE_G);
            if global {
                template |= G;
            }
        }
        template
    }

    #[inline(always)]
    fn hw_may_update<L: Level>(_pte: u64) -> bool {
        // `lddir` and `ldpte` only read: nothing but software writes a table.
        false
    }

    #[inline(always)]
    fn settled_leaves(all: u64, _any: impl FnOnce() -> u64) -> bool {
        // Valid is a leaf at the last level, and the hardware writes nothing.
        all & V != 0
    }

    const TLB_ID_BITS: u32 = 10;
    const TLB_ID_NAME: &'static str = "ASID";

    /// PGDL and PGDH: the root's physical address (one table serves both halves). The ASID
    /// is not part of it: it goes into CSR.ASID (bits 9:0), as [`activate`](Arch::activate)
    /// does.
    #[inline]
    fn root_register(root: u64, id: u16) -> u64 {
        let _ = id;
        root
    }

    /// Tagged: `invtlb 0x5` (non-global, this ASID, this address) per page or `invtlb 0x4`
    /// (non-global, this ASID); a table that may hold global leaves uses `invtlb 0x6` (global
    /// or this ASID, this address) and `invtlb 0x0` (everything).
    fn flush_in(scope: TlbScope, range: Option<(VirtAddr, usize)>) {
        let Some(asid) = scope.id else {
            return arch::flush_untagged::<Self>(range);
        };
        match range {
            None if scope.global => Self::flush_all(),
            None => invtlb_asid::<0x4>(asid, 0),
            Some((start, pages)) => {
                for i in 0..pages {
                    let va = (start + (i << 12)).as_usize() as u64;
                    if scope.global {
                        invtlb_asid::<0x6>(asid, va);
                    } else {
                        invtlb_asid::<0x5>(asid, va);
                    }
                }
            }
        }
    }

    /// Writes PGDL and PGDH, and CSR.ASID with the scope's ASID (0 untagged); untagged,
    /// `invtlb 0x3` then drops every non-global entry.
    unsafe fn activate(scope: TlbScope) {
        let asid = scope.id.unwrap_or(0) as u64;
        #[cfg(all(
            target_arch = "loongarch64",
            any(target_os = "none", feature = "privileged")
        ))]
        // SAFETY: the caller's table maps everything that runs next (its contract); `dbar 0`
        // orders the table writes first. CSR.ASID's other fields are read-only.
        unsafe {
            core::arch::asm!(
                "dbar 0",
                "csrwr {pgdl}, 0x19",
                "csrwr {pgdh}, 0x1a",
                "csrwr {asid}, 0x18",
                pgdl = inout(reg) scope.root => _,
                pgdh = inout(reg) scope.root => _,
                asid = inout(reg) asid => _,
                options(nostack, preserves_flags),
            );
            if scope.id.is_none() {
                core::arch::asm!(
                    "invtlb 0x3, $zero, $zero",
                    options(nostack, preserves_flags)
                );
            }
        }
        #[cfg(not(all(
            target_arch = "loongarch64",
            any(target_os = "none", feature = "privileged")
        )))]
        let _ = asid;
    }

    fn flush_page(va: VirtAddr) {
        #[cfg(all(
            target_arch = "loongarch64",
            any(target_os = "none", feature = "privileged")
        ))]
        // SAFETY: `dbar 0` orders the table writes; `invtlb 0x6` drops the TLB entries for `va`
        // that are global or tagged with the current ASID (read from CSR.ASID). No memory is
        // touched.
        unsafe {
            core::arch::asm!(
                "dbar 0",
                "csrrd {asid}, 0x18",
                "andi {asid}, {asid}, 0x3ff",
                "invtlb 0x6, {asid}, {va}",
                asid = out(reg) _,
                va = in(reg) va.as_usize(),
                options(nostack, preserves_flags),
            );
        }
        #[cfg(not(all(
            target_arch = "loongarch64",
            any(target_os = "none", feature = "privileged")
        )))]
        let _ = va;
    }

    fn flush_all() {
        #[cfg(all(
            target_arch = "loongarch64",
            any(target_os = "none", feature = "privileged")
        ))]
        // SAFETY: as above; `invtlb 0x0` drops every TLB entry.
        unsafe {
            core::arch::asm!(
                "dbar 0",
                "invtlb 0x0, $zero, $zero",
                options(nostack, preserves_flags)
            );
        }
    }
}

/// `invtlb OP, asid, va` after `dbar 0`.
fn invtlb_asid<const OP: u32>(asid: u16, va: u64) {
    #[cfg(all(
        target_arch = "loongarch64",
        any(target_os = "none", feature = "privileged")
    ))]
    // SAFETY: `dbar 0` orders the table writes; `invtlb` drops TLB entries and touches no
    // memory.
    unsafe {
        core::arch::asm!(
            "dbar 0",
            "invtlb {op}, {asid}, {va}",
            op = const OP,
            asid = in(reg) asid as u64,
            va = in(reg) va,
            options(nostack, preserves_flags),
        );
    }
    #[cfg(not(all(
        target_arch = "loongarch64",
        any(target_os = "none", feature = "privileged")
    )))]
    let _ = (asid, va);
}
