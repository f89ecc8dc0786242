//! x86_64: 4-level paging ([`X86_64`]) and 5-level paging ([`X86_64La57`]).
//!
//! Source: Intel SDM vol. 3A, chapter 4.5 (4-level and 5-level paging), tables 4-15 to 4-20
//! (formats of PML5E, PML4E, PDPTE, PDE and PTE) and 11.12 (PAT).
//!
//! What the tables built here assume of the CPU:
//! * IA32_EFER.NXE = 1 (bit 63 is XD, not reserved);
//! * IA32_PAT = [`PAT`], the layout Linux programs, so that PAT index 1 is write-combining;
//! * CR4.PGE = 1 for [`MappingFlags::GLOBAL`] to mean anything; CR4.LA57 = 1 for 5-level.

use core::marker::PhantomData;

use bitfield_struct::bitfield;
use memory_addr::VirtAddr;
use static_assertions::const_assert_eq;

use crate::arch::mem_layout::{Pat, PatLayout};
use crate::arch::{self, Arch, VaSpace, sealed::Sealed};
use crate::error::PagingError;
use crate::flags::{AccessState, MappingFlags, MemType};
use crate::levels::{EntryKind, HasNext, L3, L4, L5, Level};
use crate::tlb::TlbScope;

/// An x86_64 paging-structure entry (SDM tables 4-15 to 4-20): one layout for every level;
/// bit 7 and bit 12 change meaning with the level, as their docs say.
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct X86Pte {
    /// P (bit 0): present.
    pub present: bool,
    /// R/W (bit 1): writes allowed.
    pub writable: bool,
    /// U/S (bit 2): user-mode accesses allowed.
    pub user: bool,
    /// PWT (bit 3): page-level write-through; bit 0 of a leaf's PAT index.
    pub pwt: bool,
    /// PCD (bit 4): page-level cache disable; bit 1 of a leaf's PAT index.
    pub pcd: bool,
    /// A (bit 5): accessed.
    pub accessed: bool,
    /// D (bit 6): dirty (leaves only).
    pub dirty: bool,
    /// PS (bit 7) in a PDPTE or PDE: 1 maps a 1 GiB or 2 MiB page. PAT (bit 7) in a PTE: bit 2
    /// of the PAT index.
    pub ps_or_pat: bool,
    /// G (bit 8): global (leaves only).
    pub global: bool,
    /// Bits 9-11: ignored by the hardware.
    #[bits(3)]
    pub avl: u8,
    /// Bits 12-51: the physical address from bit 12 up. In a 1 GiB or 2 MiB leaf, bit 12 is PAT
    /// (bit 2 of the PAT index) and the address starts at bit 30 or 21.
    #[bits(40)]
    pub addr: u64,
    /// Bits 52-58: ignored by the hardware.
    #[bits(7)]
    pub avl_high: u8,
    /// Bits 59-62: protection key (leaves, with CR4.PKE or PKS).
    #[bits(4)]
    pub pk: u8,
    /// XD (bit 63): execute disable.
    pub xd: bool,
}

const_assert_eq!(core::mem::size_of::<X86Pte>(), 8);
const_assert_eq!(X86Pte::PRESENT_OFFSET, 0);
const_assert_eq!(X86Pte::PWT_OFFSET, 3);
const_assert_eq!(X86Pte::PS_OR_PAT_OFFSET, 7);
const_assert_eq!(X86Pte::GLOBAL_OFFSET, 8);
const_assert_eq!(X86Pte::ADDR_OFFSET, 12);
const_assert_eq!(X86Pte::ADDR_OFFSET + X86Pte::ADDR_BITS, 52);
const_assert_eq!(X86Pte::PK_OFFSET, 59);
const_assert_eq!(X86Pte::XD_OFFSET, 63);

/// A PDPTE or PDE that maps a 1 GiB or 2 MiB page (PS = 1; SDM tables 4-17 and 4-19): where it
/// differs from [`X86Pte`], bit 12 is PAT and the address starts above it.
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct X86HugePte {
    /// P (bit 0): present.
    pub present: bool,
    /// R/W (bit 1): writes allowed.
    pub writable: bool,
    /// U/S (bit 2): user-mode accesses allowed.
    pub user: bool,
    /// PWT (bit 3): bit 0 of the PAT index.
    pub pwt: bool,
    /// PCD (bit 4): bit 1 of the PAT index.
    pub pcd: bool,
    /// A (bit 5): accessed.
    pub accessed: bool,
    /// D (bit 6): dirty.
    pub dirty: bool,
    /// PS (bit 7): 1, this entry maps a page.
    pub ps: bool,
    /// G (bit 8): global.
    pub global: bool,
    /// Bits 9-11: ignored by the hardware.
    #[bits(3)]
    pub avl: u8,
    /// PAT (bit 12): bit 2 of the PAT index.
    pub pat: bool,
    /// Bits 13-51: the physical address from bit 13 up; the bits below the page size (21 or
    /// 30) are reserved, zero.
    #[bits(39)]
    pub addr: u64,
    /// Bits 52-58: ignored by the hardware.
    #[bits(7)]
    pub avl_high: u8,
    /// Bits 59-62: protection key.
    #[bits(4)]
    pub pk: u8,
    /// XD (bit 63): execute disable.
    pub xd: bool,
}

const_assert_eq!(X86HugePte::PS_OFFSET, X86Pte::PS_OR_PAT_OFFSET);
const_assert_eq!(X86HugePte::PAT_OFFSET, 12);
const_assert_eq!(X86HugePte::ADDR_OFFSET + X86HugePte::ADDR_BITS, 52);
const_assert_eq!(X86HugePte::XD_OFFSET, X86Pte::XD_OFFSET);

const P: u64 = 1 << X86Pte::PRESENT_OFFSET;
const RW: u64 = 1 << X86Pte::WRITABLE_OFFSET;
const US: u64 = 1 << X86Pte::USER_OFFSET;
const PWT: u64 = 1 << X86Pte::PWT_OFFSET;
const PCD: u64 = 1 << X86Pte::PCD_OFFSET;
const A: u64 = 1 << X86Pte::ACCESSED_OFFSET;
const D: u64 = 1 << X86Pte::DIRTY_OFFSET;
/// PS in a PDPTE or PDE; PAT in a PTE.
const PS: u64 = 1 << X86Pte::PS_OR_PAT_OFFSET;
const PAT_4K: u64 = PS;
/// PAT in a 1 GiB or 2 MiB leaf.
const PAT_HUGE: u64 = 1 << X86HugePte::PAT_OFFSET;
const G: u64 = 1 << X86Pte::GLOBAL_OFFSET;
const XD: u64 = 1 << X86Pte::XD_OFFSET;
/// Bit 11 (software): an inaccessible leaf, P clear (this crate's tag).
const INACCESSIBLE: u64 = 1 << (X86Pte::AVL_OFFSET + 2);
/// Bit 10 (software): a marker, P and bit 11 clear (this crate's tag; a leaf's bit 10 stays
/// the caller's).
const MARKER: u64 = 1 << (X86Pte::AVL_OFFSET + 1);
/// Bits 9-11, ignored by the hardware: software's.
const AVL: u64 = ((1 << X86Pte::AVL_BITS) - 1) << X86Pte::AVL_OFFSET;
/// Bits 52-58, ignored by the hardware: software's.
const AVL_HIGH: u64 = ((1 << X86Pte::AVL_HIGH_BITS) - 1) << X86Pte::AVL_HIGH_OFFSET;
/// Bits 52-61 of a paging-structure entry that references a table (SDM 4.5, the formats of a
/// PML5E, PML4E, PDPTE and PDE that reference a table: bits 62:52 ignored): in a PDE, the
/// live-entry count of the page table it links ([`Arch::LIVE_COUNT`]), 0 (not counted) or
/// 1 to 513 (0 to 512 entries).
const LIVE: u64 = ((1 << 10) - 1) << 52;
/// Bits 59-62: the protection key.
const PK: u64 = ((1 << X86Pte::PK_BITS) - 1) << X86Pte::PK_OFFSET;
const ADDR: u64 = ((1 << X86Pte::ADDR_BITS) - 1) << X86Pte::ADDR_OFFSET;

/// The IA32_PAT value the default layout ([`Pat`]) assumes (Linux's), entry 0 in the low
/// byte: WB, WC, UC-, UC, WB, WP, UC-, WT.
pub const PAT: u64 = 0x0407_0506_0007_0106;

// SDM table 13-10 memory-type encodings: UC 0, WC 1, WT 4, WP 5, WB 6, UC- 7.
const_assert_eq!(PAT & 0xff, 6);
const_assert_eq!((PAT >> 8) & 0xff, 1);
const_assert_eq!((PAT >> 24) & 0xff, 0);
const_assert_eq!(PAT, <Pat as PatLayout>::VALUE);

/// The PAT index (PAT:PCD:PWT) of `mem` under layout `T`, as a leaf's PWT, PCD and PAT bits
/// at level `L` (under the default layout: WB 0, WC 1, UC 3, PAT bit clear).
#[inline(always)]
fn pat_bits<T: PatLayout, L: Level>(mem: MemType) -> u64 {
    // Three constants per layout and level, worked out at compile time: the walk's hot loops
    // see a choice between constants, as with a fixed layout.
    match mem {
        MemType::Normal => PatBits::<T, L>::NORMAL,
        MemType::Uncached => PatBits::<T, L>::UNCACHED,
        MemType::Device => PatBits::<T, L>::DEVICE,
    }
}

/// PWT (index bit 0), PCD (bit 1) and the level's PAT bit (bit 2) of a PAT index.
const fn index_bits<L: Level>(index: u8) -> u64 {
    (if index & 1 != 0 { PWT } else { 0 })
        | (if index & 2 != 0 { PCD } else { 0 })
        | (if index & 4 != 0 { pat_bit::<L>() } else { 0 })
}

/// The leaf bits of each memory type under layout `T` at level `L`.
struct PatBits<T, L>(PhantomData<(T, L)>);

impl<T: PatLayout, L: Level> PatBits<T, L> {
    const NORMAL: u64 = index_bits::<L>(T::NORMAL);
    const DEVICE: u64 = index_bits::<L>(T::DEVICE);
    const UNCACHED: u64 = index_bits::<L>(T::UNCACHED);
}

/// The PAT bit of a leaf at level `L`: bit 7 in a PTE, bit 12 in a 2 MiB or 1 GiB leaf.
const fn pat_bit<L: Level>() -> u64 {
    if L::DEPTH == 1 { PAT_4K } else { PAT_HUGE }
}

/// What an entry at `depth` is: PS in a PDPTE or PDE makes a 1 GiB or 2 MiB page.
///
/// The depth is a value here on purpose: optimized on its own and inlined into each level of
/// the walk, this stays two branches; written against the level type, the compiler turns it
/// into arithmetic on PS that the walk then has to decode again (+15 instructions per
/// `query`, `scripts/icount`).
#[inline]
fn entry_kind(pte: u64, depth: u8) -> EntryKind {
    if pte & P == 0 {
        // SDM 4.5.4: with P clear every other bit is ignored.
        let leaf_shape = depth == 1 || (depth <= 3 && pte & PS != 0);
        arch::absent_kind(pte, depth, INACCESSIBLE, MARKER, leaf_shape)
    } else if depth == 1 || (depth <= 3 && pte & PS != 0) {
        EntryKind::Leaf
    } else {
        EntryKind::Table
    }
}

/// The paging structures of one x86_64 mode: how many levels (CR4.LA57).
pub trait X86Mode: Sealed + Copy + Default + core::fmt::Debug + Send + Sync + 'static {
    /// The root level: PML4 or PML5.
    type Root: HasNext;
    /// The mode's name, for dumps.
    const NAME: &'static str;
    /// Linear-address bits.
    const VA_BITS: u32;
}

/// An x86_64 paging mode `M`, with the IA32_PAT layout `T` its kernel programs ([`Pat`],
/// Linux's by default); name the default by its alias ([`X86_64`], [`X86_64La57`]).
///
/// ```
/// use pagetable::arch::mem_layout::ResetPat;
/// use pagetable::arch::x86_64::Paging4;
/// use pagetable::X86;
/// // A kernel that keeps IA32_PAT as the CPU reset it.
/// type Kernel = X86<Paging4, ResetPat>;
/// assert_eq!(Kernel::ia32_pat(), 0x0007_0406_0007_0406);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct X86<M: X86Mode, T: PatLayout = Pat>(PhantomData<(M, T)>);

impl<M: X86Mode, T: PatLayout> Sealed for X86<M, T> {}

impl<M: X86Mode, T: PatLayout> X86<M, T> {
    /// IA32_PAT for this mode's layout: the layout's value ([`PAT`] by default).
    #[must_use]
    pub const fn ia32_pat() -> u64 {
        T::VALUE
    }
}

/// x86_64 4-level paging: 48-bit canonical VA, PML4 root, 4 KiB, 2 MiB and 1 GiB leaves.
pub type X86_64 = X86<Paging4>;
/// x86_64 5-level paging (CR4.LA57): 57-bit canonical VA, PML5 root, 4 KiB, 2 MiB and 1 GiB
/// leaves.
pub type X86_64La57 = X86<Paging5>;

/// 4-level paging (CR4.LA57 = 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Paging4;
/// 5-level paging (CR4.LA57 = 1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Paging5;

impl Sealed for Paging4 {}
impl Sealed for Paging5 {}

impl X86Mode for Paging4 {
    type Root = L4;
    const NAME: &'static str = "x86_64";
    const VA_BITS: u32 = 48;
}

impl X86Mode for Paging5 {
    type Root = L5;
    const NAME: &'static str = "x86_64-la57";
    const VA_BITS: u32 = 57;
}

impl<M: X86Mode, T: PatLayout> Arch for X86<M, T> {
    type Pte = X86Pte;
    type Addr = VirtAddr;
    type Root = M::Root;
    /// PDPTEs (1 GiB), PDEs (2 MiB) and PTEs may map pages.
    type MaxLeaf = L3;
    const NAME: &'static str = M::NAME;
    const VA_BITS: u32 = M::VA_BITS;
    /// MAXPHYADDR is at most 52.
    const PA_BITS: u32 = 52;
    const VA_SPACE: VaSpace = VaSpace::Canonical;
    const INACCESSIBLE_TAG: u64 = INACCESSIBLE;
    const MARKER_TAG: u64 = MARKER;
    /// P and the two tags: 61 payload bits.
    const MARKER_RESERVED: u64 = P | INACCESSIBLE | MARKER;
    /// Bits 9-10 and 52-58 (bit 11 is this crate's): 9 bits.
    const SOFT_BITS: u64 = (AVL & !INACCESSIBLE) | AVL_HIGH;

    const LIVE_COUNT: u64 = LIVE;
    /// SDM 4.8: the processor sets A in a paging-structure entry it uses unless it is set.
    const LIVE_COUNT_SETTLED: u64 = A;

    #[inline(always)]
    fn entry_kind<L: Level>(pte: u64) -> EntryKind {
        entry_kind(pte, L::DEPTH)
    }

    #[inline(always)]
    fn table_entry(pa: u64) -> u64 {
        // Permissions are decided by the leaves: tables allow everything.
        pa | P | RW | US
    }

    #[inline(always)]
    fn table_addr(pte: u64) -> u64 {
        pte & ADDR
    }

    const TABLE_GATES: bool = true;
    const PATH_START: u64 = u64::MAX;

    #[inline(always)]
    fn path_step(acc: u64, pte: u64) -> u64 {
        // R/W and U/S allow when set in every entry, XD forbids when set in any: AND them all,
        // XD inverted.
        acc & (pte ^ XD)
    }

    /// SDM 4.6.1: a user-mode access needs U/S in every entry of the walk, a write R/W in
    /// every entry (CR0.WP = 1), a fetch XD clear in every entry. `acc` is the AND of the table
    /// entries, XD inverted.
    #[inline(always)]
    fn path_restrict(acc: u64, flags: MappingFlags) -> MappingFlags {
        if acc & (RW | US | XD) == RW | US | XD {
            // Every entry on the way allows everything, as every table this crate makes does.
            return flags;
        }
        let mut gone = MappingFlags::EMPTY;
        if acc & RW == 0 {
            gone |= MappingFlags::WRITE;
        }
        if acc & US == 0 {
            gone |= MappingFlags::USER;
        }
        if acc & XD == 0 {
            gone |= MappingFlags::EXECUTE;
        }
        flags.without(gone)
    }

    #[inline(always)]
    fn table_grant(pte: u64, flags: MappingFlags) -> u64 {
        let mut pte = pte;
        if flags.contains(MappingFlags::WRITE) {
            pte |= RW;
        }
        if flags.contains(MappingFlags::USER) {
            pte |= US;
        }
        if flags.contains(MappingFlags::EXECUTE) {
            pte &= !XD;
        }
        pte
    }

    fn check_mode_flags(flags: MappingFlags) -> Result<(), PagingError> {
        // A present entry is always readable; IGNORE_PAT is EPT's; uncached (write-combining)
        // memory needs a WC entry in the layout.
        let no_wc = T::UNCACHED > 7 && flags.mem_type() == MemType::Uncached;
        if flags.contains(MappingFlags::READ) && !flags.contains(MappingFlags::IGNORE_PAT) && !no_wc
        {
            Ok(())
        } else {
            Err(PagingError::FlagsNotExpressible(flags))
        }
    }

    #[inline(always)]
    fn leaf_template<L: Level>(flags: MappingFlags) -> u64 {
        let mut pte = P | A | pat_bits::<T, L>(flags.mem_type());
        if flags.contains(MappingFlags::WRITE) {
            pte |= RW | D;
        }
        if flags.contains(MappingFlags::USER) {
            pte |= US;
        }
        if flags.contains(MappingFlags::GLOBAL) {
            pte |= G;
        }
        if !flags.contains(MappingFlags::EXECUTE) {
            pte |= XD;
        }
        if L::DEPTH > 1 {
            pte |= PS;
        }
        if flags.contains(MappingFlags::INACCESSIBLE) {
            pte = (pte & !P) | INACCESSIBLE;
        }
        pte
    }

    #[inline(always)]
    fn leaf_addr_mask<L: Level>() -> u64 {
        ADDR & !arch::leaf_offset_mask::<Self, L>()
    }

    #[inline(always)]
    fn leaf_flags<L: Level>(pte: u64) -> MappingFlags {
        // Branch-free: READ always; WRITE from R/W, EXECUTE from !XD, USER from U/S, GLOBAL from G.
        let bit = |mask: u64| (pte & mask != 0) as u8;
        let perms = 1 | bit(RW) << 1 | (1 - bit(XD)) << 2 | bit(US) << 3 | bit(G) << 4;
        let index = bit(PWT) | bit(PCD) << 1 | bit(pat_bit::<L>()) << 2;
        let attrs = (bit(INACCESSIBLE) as u16) << 8;
        MappingFlags::from_bits_valid((perms | T::MEM_TYPE[index as usize] << 5) as u16 | attrs)
    }

    #[inline(always)]
    fn leaf_state<L: Level>(pte: u64) -> AccessState {
        // A and D sit at the same bits in every leaf format.
        let leaf = X86Pte::from(pte);
        AccessState {
            accessed: leaf.accessed(),
            dirty: leaf.dirty(),
        }
    }

    #[inline(always)]
    fn leaf_protect<L: Level>(old: u64, flags: MappingFlags) -> u64 {
        Self::leaf_protect_with::<L>(old, flags, Self::leaf_template::<L>(flags))
    }

    #[inline(always)]
    fn leaf_protect_with<L: Level>(old: u64, flags: MappingFlags, template: u64) -> u64 {
        // Keep the address, the access state, and the bits flags do not speak for (software
        // bits but this crate's tag, protection key).
        let keep = Self::leaf_addr_mask::<L>() | A | D | (AVL & !INACCESSIBLE) | AVL_HIGH | PK;
        let mut new = (old & keep) | (template & !(A | D));
        if flags.contains(MappingFlags::WRITE) && old & RW == 0 {
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
        let dirty = mark.dirty && old & RW != 0;
        old | if mark.accessed { A } else { 0 } | if dirty { D } else { 0 }
    }

    #[inline(always)]
    fn leaf_split<L: HasNext>(pte: u64) -> u64 {
        let mut template = pte & !Self::leaf_addr_mask::<L>();
        if L::DEPTH == 2 {
            // 2 MiB to 4 KiB: PAT moves from bit 12 to bit 7, which was PS.
            let pat = template & PAT_HUGE != 0;
            template &= !(PS | PAT_HUGE);
            if pat {
                template |= PAT_4K;
            }
        }
        template
    }

    #[inline(always)]
    fn hw_may_update<L: Level>(pte: u64) -> bool {
        // The MMU sets A, and D on a store through a writable leaf; it never clears them.
        (pte & P != 0) & ((pte & A == 0) | (pte & (RW | D) == RW))
    }

    #[inline(always)]
    fn settled_leaves(all: u64, any: impl FnOnce() -> u64) -> bool {
        // All present and accessed, and all dirty or none writable.
        all & (P | A) == P | A && (all & D != 0 || any() & RW == 0)
    }

    const TLB_ID_BITS: u32 = 12;
    const TLB_ID_NAME: &'static str = "PCID";

    /// CR3: the PML4 / PML5 address (bits 51:12) and, with CR4.PCIDE = 1, the PCID (bits
    /// 11:0); bit 63 (keep the PCID's cached translations) is left to
    /// [`activate`](Arch::activate). With CR4.PCIDE = 0 use `id` 0: bits 3 and 4 are then PWT
    /// and PCD, left clear (the root's walks are write-back).
    #[inline]
    fn root_register(root: u64, id: u16) -> u64 {
        root | id as u64
    }

    /// Tagged: `INVPCID` type 0 (one address, one PCID) per page or type 1 (the whole PCID),
    /// which both keep global translations; a table that may hold global leaves adds `invlpg`
    /// per page (it drops global entries of the page) or flushes everything (type 2).
    /// Needs INVPCID (CPUID.7.0:EBX bit 10).
    fn flush_in(scope: TlbScope, range: Option<(VirtAddr, usize)>) {
        let Some(pcid) = scope.id else {
            return arch::flush_untagged::<Self>(range);
        };
        match range {
            None if scope.global => invpcid(2, 0, 0),
            None => invpcid(1, pcid, 0),
            Some((start, pages)) => {
                for i in 0..pages {
                    let va = start + (i << 12);
                    invpcid(0, pcid, va.as_usize() as u64);
                    if scope.global {
                        flush_page(va);
                    }
                }
            }
        }
    }

    /// Loads CR3; tagged, with bit 63 set so that the PCID's cached translations stay (they
    /// are current: every flush of a tagged table reaches its PCID, loaded or not).
    unsafe fn activate(scope: TlbScope) {
        let keep = if scope.id.is_some() { 1 << 63 } else { 0 };
        let cr3 = Self::root_register(scope.root, scope.id.unwrap_or(0)) | keep;
        #[cfg(all(
            target_arch = "x86_64",
            any(target_os = "none", feature = "privileged")
        ))]
        // SAFETY: the caller's table maps everything that runs next (its contract), and a
        // tagged scope needs CR4.PCIDE = 1, which the caller set.
        unsafe {
            core::arch::asm!("mov cr3, {}", in(reg) cr3, options(nostack, preserves_flags));
        }
        #[cfg(not(all(
            target_arch = "x86_64",
            any(target_os = "none", feature = "privileged")
        )))]
        let _ = cr3;
    }

    fn flush_page(va: VirtAddr) {
        flush_page(va);
    }

    fn flush_all() {
        flush_all();
    }
}

/// `invlpg`: drops the translations of the page at `va`, global ones included.
fn flush_page(va: VirtAddr) {
    #[cfg(all(
        target_arch = "x86_64",
        any(target_os = "none", feature = "privileged")
    ))]
    // SAFETY: `invlpg` only drops TLB entries; it reads no memory. It is privileged: a user-mode
    // caller faults, which is the documented contract of flushing a live table.
    unsafe {
        core::arch::asm!("invlpg [{}]", in(reg) va.as_usize(), options(nostack, preserves_flags));
    }
    #[cfg(not(all(
        target_arch = "x86_64",
        any(target_os = "none", feature = "privileged")
    )))]
    let _ = va;
}

/// Drops every translation, global ones included: toggling CR4.PGE does that (a CR3 reload
/// would keep global entries); without PGE, a CR3 reload.
fn flush_all() {
    #[cfg(all(
        target_arch = "x86_64",
        any(target_os = "none", feature = "privileged")
    ))]
    // SAFETY: rewriting CR4 with PGE toggled and back, or CR3 with its own value, changes no
    // translation, only drops cached ones. Privileged, as above.
    unsafe {
        core::arch::asm!(
            "mov {cr4}, cr4",
            "test {cr4}, 0x80",
            "jz 2f",
            "mov {tmp}, {cr4}",
            "xor {tmp}, 0x80",
            "mov cr4, {tmp}",
            "mov cr4, {cr4}",
            "jmp 3f",
            "2:",
            "mov {tmp}, cr3",
            "mov cr3, {tmp}",
            "3:",
            cr4 = out(reg) _,
            tmp = out(reg) _,
            options(nostack),
        );
    }
}

/// `INVPCID` of `kind` (0 one address in one PCID, 1 one PCID, 2 everything with globals) with
/// the descriptor {`pcid`, `va`}.
fn invpcid(kind: u64, pcid: u16, va: u64) {
    #[cfg(all(
        target_arch = "x86_64",
        any(target_os = "none", feature = "privileged")
    ))]
    {
        let descriptor = [pcid as u64, va];
        // SAFETY: INVPCID reads the 16-byte descriptor and drops TLB entries; privileged, and
        // it needs the INVPCID feature, which the contract of flushing a tagged table states.
        unsafe {
            core::arch::asm!(
                "invpcid {kind}, [{desc}]",
                kind = in(reg) kind,
                desc = in(reg) descriptor.as_ptr(),
                options(nostack, readonly, preserves_flags),
            );
        }
    }
    #[cfg(not(all(
        target_arch = "x86_64",
        any(target_os = "none", feature = "privileged")
    )))]
    let _ = (kind, pcid, va);
}
