//! RISC-V: [`Sv39`], [`Sv48`] and [`Sv57`] (satp), and the hypervisor extension's G-stage
//! [`Sv39x4`] and [`Sv48x4`] (hgatp).
//!
//! Source: RISC-V privileged specification, 12.4-12.6 (Sv39, Sv48, Sv57 page-table entries,
//! figure "Sv39 page table entry" and its Sv48 / Sv57 counterparts), chapter "Svpbmt" (the PBMT
//! field) and "Svnapot" (the N bit); chapter "Hypervisor Extension", section "Guest Physical
//! Address Translation" (Sv39x4, Sv48x4: the root is 16 KiB, 2048 entries, its index two bits
//! wider; leaves must have U set, as every G-stage access counts as a U-mode one; G is
//! reserved) and HFENCE.GVMA.
//!
//! What the tables built here assume of the CPU: Svpbmt, if a mapping asks for a memory type
//! other than normal (without it, PBMT must be zero). The root goes into satp.PPN with
//! satp.MODE = 8, 9 or 10; a G-stage root (16 KiB-aligned) into hgatp.PPN with hgatp.MODE = 8
//! or 9.

use core::marker::PhantomData;

use bitfield_struct::bitfield;
use memory_addr::VirtAddr;
use static_assertions::const_assert_eq;

use crate::arch::{self, Arch, VaSpace, sealed::Sealed};
use crate::error::PagingError;
use crate::flags::{AccessState, MappingFlags, MemType};
use crate::levels::{EntryKind, HasNext, L3, L4, L5, Level};
use crate::tlb::TlbScope;

/// Not expressible in any RISC-V mode: EPT's attribute.
const NEVER: MappingFlags = MappingFlags::IGNORE_PAT;
/// Not expressible in the G-stage: U is always set there, and G is reserved.
const NOT_IN_G_STAGE: MappingFlags = MappingFlags::USER.union(MappingFlags::GLOBAL);

/// An Sv39 / Sv48 / Sv57 page-table entry: one layout for every level and mode.
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct RiscvPte {
    /// V (bit 0): valid.
    pub v: bool,
    /// R (bit 1): readable.
    pub r: bool,
    /// W (bit 2): writable.
    pub w: bool,
    /// X (bit 3): executable. R = W = X = 0 makes the entry a pointer to the next level.
    pub x: bool,
    /// U (bit 4): accessible to U-mode.
    pub u: bool,
    /// G (bit 5): global mapping.
    pub g: bool,
    /// A (bit 6): accessed.
    pub a: bool,
    /// D (bit 7): dirty.
    pub d: bool,
    /// RSW (bits 8-9): reserved for supervisor software.
    #[bits(2)]
    pub rsw: u8,
    /// PPN (bits 10-53): the physical page number, PPN[0] from bit 10 up. A superpage leaf
    /// has its low PPN fields zero.
    #[bits(44)]
    pub ppn: u64,
    /// Bits 54-60: reserved, zero.
    #[bits(7)]
    pub reserved: u8,
    /// PBMT (bits 61-62): Svpbmt memory type: 0 PMA, 1 NC, 2 IO.
    #[bits(2)]
    pub pbmt: u8,
    /// N (bit 63): Svnapot naturally aligned power-of-two run.
    pub n: bool,
}

const_assert_eq!(core::mem::size_of::<RiscvPte>(), 8);
const_assert_eq!(RiscvPte::D_OFFSET, 7);
const_assert_eq!(RiscvPte::PPN_OFFSET, 10);
const_assert_eq!(RiscvPte::PPN_OFFSET + RiscvPte::PPN_BITS, 54);
const_assert_eq!(RiscvPte::PBMT_OFFSET, 61);
const_assert_eq!(RiscvPte::N_OFFSET, 63);

const V: u64 = 1 << RiscvPte::V_OFFSET;
const R: u64 = 1 << RiscvPte::R_OFFSET;
const W: u64 = 1 << RiscvPte::W_OFFSET;
const X: u64 = 1 << RiscvPte::X_OFFSET;
const U: u64 = 1 << RiscvPte::U_OFFSET;
const G: u64 = 1 << RiscvPte::G_OFFSET;
const A: u64 = 1 << RiscvPte::A_OFFSET;
const D: u64 = 1 << RiscvPte::D_OFFSET;
const RSW: u64 = 0b11 << RiscvPte::RSW_OFFSET;
/// RSW bit 9: an inaccessible leaf, V clear (this crate's tag).
const INACCESSIBLE: u64 = 2 << RiscvPte::RSW_OFFSET;
/// RSW bit 8: a marker, V and bit 9 clear (this crate's tag; a leaf's bit 8 stays the
/// caller's).
const MARKER: u64 = 1 << RiscvPte::RSW_OFFSET;
const PPN: u64 = ((1 << RiscvPte::PPN_BITS) - 1) << RiscvPte::PPN_OFFSET;
const PBMT: u64 = 0b11 << RiscvPte::PBMT_OFFSET;
const N: u64 = 1 << RiscvPte::N_OFFSET;

/// A physical address (page-aligned) as the PPN field.
const fn ppn_bits(pa: u64) -> u64 {
    (pa >> 12) << RiscvPte::PPN_OFFSET
}

const fn ppn_addr(pte: u64) -> u64 {
    ((pte & PPN) >> RiscvPte::PPN_OFFSET) << 12
}

const fn pbmt(mem: MemType) -> u64 {
    let code = match mem {
        MemType::Normal => 0,
        MemType::Uncached => 1,
        MemType::Device => 2,
    };
    code << RiscvPte::PBMT_OFFSET
}

/// The geometry of one RISC-V mode: its levels, address width, and which translation stage
/// (and so which root register) it is for. One marker per mode, each a plain impl below.
pub trait RiscvMode: Sealed + Copy + Default + core::fmt::Debug + Send + Sync + 'static {
    /// The root level.
    type Root: HasNext;
    /// The input address: virtual for satp modes, guest-physical for the G-stage.
    type Addr: memory_addr::MemoryAddr + core::fmt::Debug + Send + Sync + 'static;
    /// The mode's name, for dumps.
    const NAME: &'static str;
    /// Virtual (guest physical, for the G-stage) address bits.
    const VA_BITS: u32;
    /// Whether this is a G-stage (hgatp) mode: U forced, G reserved, a root four times the
    /// size, zero-extended addresses, `hfence.gvma`.
    const G_STAGE: bool;
}

/// A RISC-V paging mode; name it by its alias ([`Sv39`], [`Sv48`], [`Sv57`], [`Sv39x4`],
/// [`Sv48x4`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Riscv<M: RiscvMode>(PhantomData<M>);

impl<M: RiscvMode> Sealed for Riscv<M> {}

/// Sv39: 39-bit VA, 3 levels; 4 KiB, 2 MiB and 1 GiB leaves. satp.MODE = 8.
pub type Sv39 = Riscv<Sv39Mode>;
/// Sv48: 48-bit VA, 4 levels; 4 KiB, 2 MiB, 1 GiB and 512 GiB leaves. satp.MODE = 9.
pub type Sv48 = Riscv<Sv48Mode>;
/// Sv57: 57-bit VA, 5 levels; 4 KiB, 2 MiB, 1 GiB, 512 GiB and 256 TiB leaves. satp.MODE = 10.
pub type Sv57 = Riscv<Sv57Mode>;
/// Sv39x4: the G-stage of the hypervisor extension for 41-bit guest physical addresses
/// (zero-extended); 3 levels, the root 2048 entries (16 KiB); 4 KiB, 2 MiB and 1 GiB leaves,
/// all with U set. hgatp.MODE = 8.
pub type Sv39x4 = Riscv<Sv39x4Mode>;
/// Sv48x4: the G-stage for 50-bit guest physical addresses; 4 levels, the root 2048 entries
/// (16 KiB); 4 KiB, 2 MiB, 1 GiB and 512 GiB leaves, all with U set. hgatp.MODE = 9.
pub type Sv48x4 = Riscv<Sv48x4Mode>;

/// [`Sv39`]'s geometry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sv39Mode;
/// [`Sv48`]'s geometry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sv48Mode;
/// [`Sv57`]'s geometry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sv57Mode;
/// [`Sv39x4`]'s geometry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sv39x4Mode;
/// [`Sv48x4`]'s geometry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sv48x4Mode;

impl Sealed for Sv39Mode {}
impl Sealed for Sv48Mode {}
impl Sealed for Sv57Mode {}
impl Sealed for Sv39x4Mode {}
impl Sealed for Sv48x4Mode {}

impl RiscvMode for Sv39Mode {
    type Addr = VirtAddr;
    type Root = L3;
    const NAME: &'static str = "sv39";
    const VA_BITS: u32 = 39;
    const G_STAGE: bool = false;
}

impl RiscvMode for Sv48Mode {
    type Addr = VirtAddr;
    type Root = L4;
    const NAME: &'static str = "sv48";
    const VA_BITS: u32 = 48;
    const G_STAGE: bool = false;
}

impl RiscvMode for Sv57Mode {
    type Addr = VirtAddr;
    type Root = L5;
    const NAME: &'static str = "sv57";
    const VA_BITS: u32 = 57;
    const G_STAGE: bool = false;
}

impl RiscvMode for Sv39x4Mode {
    type Addr = crate::GuestPhysAddr;
    type Root = L3;
    const NAME: &'static str = "sv39x4";
    /// Sv39 plus the two bits of the root's wider index.
    const VA_BITS: u32 = 41;
    const G_STAGE: bool = true;
}

impl RiscvMode for Sv48x4Mode {
    type Addr = crate::GuestPhysAddr;
    type Root = L4;
    const NAME: &'static str = "sv48x4";
    const VA_BITS: u32 = 50;
    const G_STAGE: bool = true;
}

/// The G-stage's U bit: set in every G-stage leaf, as every guest access counts as a U-mode
/// one there.
const fn g_stage_user<M: RiscvMode>() -> u64 {
    if M::G_STAGE { U } else { 0 }
}

impl<M: RiscvMode> Arch for Riscv<M> {
    type Pte = RiscvPte;
    type Addr = M::Addr;
    type Root = M::Root;
    /// Every level may hold a leaf.
    type MaxLeaf = M::Root;
    const NAME: &'static str = M::NAME;
    const VA_BITS: u32 = M::VA_BITS;
    const PA_BITS: u32 = 56;
    const VA_SPACE: VaSpace = if M::G_STAGE {
        VaSpace::Lower
    } else {
        VaSpace::Canonical
    };
    const PAGE_FLUSH_DROPS_WALKS: bool = false;
    /// The G-stage root is four tables (16 KiB, 2048 entries).
    const ROOT_CONCAT_BITS: u32 = if M::G_STAGE { 2 } else { 0 };

    const INACCESSIBLE_TAG: u64 = INACCESSIBLE;
    const MARKER_TAG: u64 = MARKER;
    /// V and the two tags: 61 payload bits.
    const MARKER_RESERVED: u64 = V | INACCESSIBLE | MARKER;
    /// RSW bit 8 (bit 9 is this crate's): 1 bit.
    const SOFT_BITS: u64 = RSW & !INACCESSIBLE;

    #[inline(always)]
    fn entry_kind<L: Level>(pte: u64) -> EntryKind {
        if pte & V == 0 {
            // Privileged spec 12.3.1: with V clear, all other bits are don't-cares for software.
            arch::absent_kind(pte, L::DEPTH, INACCESSIBLE, MARKER, pte & (R | W | X) != 0)
        } else if pte & (R | W | X) != 0 {
            EntryKind::Leaf
        } else if L::DEPTH > 1 {
            EntryKind::Table
        } else {
            // A pointer at the last level is a page fault.
            EntryKind::Empty
        }
    }

    #[inline(always)]
    fn table_entry(pa: u64) -> u64 {
        // A, D and U are reserved in pointers and must be zero.
        ppn_bits(pa) | V
    }

    #[inline(always)]
    fn table_addr(pte: u64) -> u64 {
        ppn_addr(pte)
    }

    fn check_mode_flags(flags: MappingFlags) -> Result<(), PagingError> {
        // R = W = X = 0 is a pointer, and W without R is reserved.
        let readable = flags.contains(MappingFlags::READ);
        if flags.no_access()
            || (flags.contains(MappingFlags::WRITE) && !readable)
            || flags.intersects(NEVER)
            || (M::G_STAGE && flags.intersects(NOT_IN_G_STAGE))
        {
            Err(PagingError::FlagsNotExpressible(flags))
        } else {
            Ok(())
        }
    }

    #[inline(always)]
    fn leaf_template<L: Level>(flags: MappingFlags) -> u64 {
        let set = |flag: MappingFlags, bits: u64| if flags.contains(flag) { bits } else { 0 };
        let pte = g_stage_user::<M>()
            | V
            | A
            | set(MappingFlags::READ, R)
            | set(MappingFlags::WRITE, W | D)
            | set(MappingFlags::EXECUTE, X)
            | set(MappingFlags::USER, U)
            | set(MappingFlags::GLOBAL, G)
            | pbmt(flags.mem_type());
        if flags.contains(MappingFlags::INACCESSIBLE) {
            (pte & !V) | INACCESSIBLE
        } else {
            pte
        }
    }

    #[inline(always)]
    fn leaf_addr_bits<L: Level>(pa: u64) -> u64 {
        ppn_bits(pa)
    }

    #[inline(always)]
    fn leaf_addr_mask<L: Level>() -> u64 {
        PPN
    }

    #[inline(always)]
    fn leaf_addr<L: Level>(pte: u64) -> u64 {
        ppn_addr(pte)
    }

    #[inline(always)]
    fn leaf_flags<L: Level>(pte: u64) -> MappingFlags {
        let set = |bit: u64, flag: MappingFlags| {
            if pte & bit != 0 {
                flag
            } else {
                MappingFlags::EMPTY
            }
        };
        let mem = match (pte & PBMT) >> RiscvPte::PBMT_OFFSET {
            0 => MemType::Normal,
            1 => MemType::Uncached,
            _ => MemType::Device,
        };
        // In the G-stage, U is forced and says nothing.
        let user = if M::G_STAGE { 0 } else { U };
        (set(R, MappingFlags::READ)
            | set(W, MappingFlags::WRITE)
            | set(X, MappingFlags::EXECUTE)
            | set(user, MappingFlags::USER)
            | set(G, MappingFlags::GLOBAL)
            | set(INACCESSIBLE, MappingFlags::INACCESSIBLE))
        .with_mem_type(mem)
    }

    #[inline(always)]
    fn leaf_state<L: Level>(pte: u64) -> AccessState {
        let leaf = RiscvPte::from(pte);
        AccessState {
            accessed: leaf.a(),
            dirty: leaf.d(),
        }
    }

    #[inline(always)]
    fn leaf_protect<L: Level>(old: u64, flags: MappingFlags) -> u64 {
        // Keep the address, the access state and the software bits; a Svnapot run goes, since
        // a protect may cover part of it.
        let keep = PPN | A | D | (RSW & !INACCESSIBLE);
        let mut new = (old & keep) | (Self::leaf_template::<L>(flags) & !(A | D));
        if flags.contains(MappingFlags::WRITE) && old & W == 0 {
            new |= D;
        }
        new
    }

    #[inline(always)]
    fn leaf_clear_state<L: Level>(old: u64, clear: AccessState) -> u64 {
        old & !(if clear.accessed { A } else { 0 } | if clear.dirty { D } else { 0 })
    }

    #[inline(always)]
    fn leaf_mark<L: Level>(old: u64, mark: AccessState) -> u64 {
        let dirty = mark.dirty && old & W != 0;
        old | if mark.accessed { A } else { 0 } | if dirty { D } else { 0 }
    }

    #[inline(always)]
    fn leaf_split<L: HasNext>(pte: u64) -> u64 {
        pte & !PPN & !N
    }

    #[inline(always)]
    fn hw_may_update<L: Level>(pte: u64) -> bool {
        // With Svadu the MMU sets A, and D on a store through a writable leaf.
        (pte & V != 0) & ((pte & A == 0) | (pte & (W | D) == W))
    }

    #[inline(always)]
    fn settled_leaves(all: u64, any: impl FnOnce() -> u64) -> bool {
        // All valid leaves (one of R, W, X common to all) and accessed, and all dirty or none
        // writable.
        all & (V | A) == V | A && all & (R | W | X) != 0 && (all & D != 0 || any() & W == 0)
    }

    /// ASID in satp (bits 59:44, up to 16 bits; the CPU may implement fewer: write all ones
    /// and read back to find ASIDLEN), VMID in hgatp (bits 57:44, up to 14 bits on RV64).
    const TLB_ID_BITS: u32 = if M::G_STAGE { 14 } else { 16 };
    const TLB_ID_NAME: &'static str = if M::G_STAGE { "VMID" } else { "ASID" };

    /// satp / hgatp: MODE (bits 63:60: 8 for Sv39 and Sv39x4, 9 for Sv48 and Sv48x4, 10 for
    /// Sv57), the ASID or VMID (bits 59:44), the root's PPN (bits 43:0).
    #[inline]
    fn root_register(root: u64, id: u16) -> u64 {
        let mode = <M::Root as Level>::DEPTH as u64 + 5;
        mode << 60 | (id as u64) << 44 | root >> 12
    }

    /// Tagged: `sfence.vma va, asid` per page or `sfence.vma x0, asid`, which skip global
    /// mappings, so a table that may hold global leaves uses the untagged forms; G-stage:
    /// `hfence.gvma gpa, vmid` or `hfence.gvma x0, vmid`.
    fn flush_in(scope: TlbScope, range: Option<(VirtAddr, usize)>) {
        match scope.id {
            Some(id) if !scope.global => {
                let flush_one = |va: Option<VirtAddr>| {
                    if M::G_STAGE {
                        hfence_gvma_vmid(va, id);
                    } else {
                        sfence_vma_asid(va, id);
                    }
                };
                match range {
                    None => flush_one(None),
                    Some((start, pages)) => {
                        for i in 0..pages {
                            flush_one(Some(start + (i << 12)));
                        }
                    }
                }
            }
            _ => arch::flush_untagged::<Self>(range),
        }
    }

    /// Writes satp (or hgatp for a G-stage table); untagged, then `sfence.vma` (or
    /// `hfence.gvma`) drops this hart's cached translations.
    unsafe fn activate(scope: TlbScope) {
        let value = Self::root_register(scope.root, scope.id.unwrap_or(0));
        #[cfg(all(
            target_arch = "riscv64",
            any(target_os = "none", feature = "privileged")
        ))]
        // SAFETY: the caller's table maps everything that runs next (its contract); the fence
        // before orders the table writes ahead of the walks under the new root.
        unsafe {
            if M::G_STAGE {
                core::arch::asm!("csrw 0x680, {}", in(reg) value, options(nostack, preserves_flags));
            } else {
                core::arch::asm!("sfence.vma zero, zero", "csrw satp, {}", in(reg) value, options(nostack, preserves_flags));
            }
        }
        #[cfg(not(all(
            target_arch = "riscv64",
            any(target_os = "none", feature = "privileged")
        )))]
        let _ = value;
        if scope.id.is_none() {
            Self::flush_all();
        }
    }

    fn flush_page(va: VirtAddr) {
        if M::G_STAGE {
            hfence_gvma(Some(va));
        } else {
            sfence_vma(Some(va));
        }
    }

    fn flush_all() {
        if M::G_STAGE {
            hfence_gvma(None);
        } else {
            sfence_vma(None);
        }
    }
}

/// `sfence.vma` for `va`, or for every address.
fn sfence_vma(va: Option<VirtAddr>) {
    #[cfg(all(
        any(target_arch = "riscv64", target_arch = "riscv32"),
        any(target_os = "none", feature = "privileged")
    ))]
    // SAFETY: `sfence.vma` orders earlier table writes before later walks and drops cached
    // translations; it touches no memory.
    unsafe {
        match va {
            Some(va) => {
                core::arch::asm!("sfence.vma {}, zero", in(reg) va.as_usize(), options(nostack, preserves_flags))
            }
            None => core::arch::asm!("sfence.vma", options(nostack, preserves_flags)),
        }
    }
    #[cfg(not(all(
        any(target_arch = "riscv64", target_arch = "riscv32"),
        any(target_os = "none", feature = "privileged")
    )))]
    let _ = va;
}

/// `hfence.gvma` for guest physical address `gpa`, or for every one (HS-mode, H extension).
fn hfence_gvma(gpa: Option<VirtAddr>) {
    #[cfg(all(
        target_arch = "riscv64",
        any(target_os = "none", feature = "privileged")
    ))]
    // SAFETY: `hfence.gvma` (written as `.insn` so that no `h` target feature is needed) orders
    // earlier G-stage table writes before later walks and drops cached G-stage translations;
    // its rs1 holds the guest physical address shifted right by 2. It touches no memory.
    unsafe {
        match gpa {
            Some(gpa) => {
                core::arch::asm!(".insn r 0x73, 0, 0x31, x0, {}, x0", in(reg) gpa.as_usize() >> 2, options(nostack, preserves_flags))
            }
            None => core::arch::asm!(
                ".insn r 0x73, 0, 0x31, x0, x0, x0",
                options(nostack, preserves_flags)
            ),
        }
    }
    #[cfg(not(all(
        target_arch = "riscv64",
        any(target_os = "none", feature = "privileged")
    )))]
    let _ = gpa;
}

/// `sfence.vma` for `va` (or every address) in address space `asid` only.
fn sfence_vma_asid(va: Option<VirtAddr>, asid: u16) {
    #[cfg(all(
        target_arch = "riscv64",
        any(target_os = "none", feature = "privileged")
    ))]
    // SAFETY: as for `sfence_vma`, for the non-global translations of one ASID.
    unsafe {
        match va {
            Some(va) => core::arch::asm!(
                "sfence.vma {}, {}",
                in(reg) va.as_usize(),
                in(reg) asid as usize,
                options(nostack, preserves_flags)
            ),
            None => core::arch::asm!(
                "sfence.vma zero, {}",
                in(reg) asid as usize,
                options(nostack, preserves_flags)
            ),
        }
    }
    #[cfg(not(all(
        target_arch = "riscv64",
        any(target_os = "none", feature = "privileged")
    )))]
    let _ = (va, asid);
}

/// `hfence.gvma` for guest physical address `gpa` (or every one) of VMID `vmid` only.
fn hfence_gvma_vmid(gpa: Option<VirtAddr>, vmid: u16) {
    #[cfg(all(
        target_arch = "riscv64",
        any(target_os = "none", feature = "privileged")
    ))]
    // SAFETY: as for `hfence_gvma`, with rs2 holding the VMID.
    unsafe {
        match gpa {
            Some(gpa) => core::arch::asm!(
                ".insn r 0x73, 0, 0x31, x0, {}, {}",
                in(reg) gpa.as_usize() >> 2,
                in(reg) vmid as usize,
                options(nostack, preserves_flags)
            ),
            None => core::arch::asm!(
                ".insn r 0x73, 0, 0x31, x0, x0, {}",
                in(reg) vmid as usize,
                options(nostack, preserves_flags)
            ),
        }
    }
    #[cfg(not(all(
        target_arch = "riscv64",
        any(target_os = "none", feature = "privileged")
    )))]
    let _ = (gpa, vmid);
}
