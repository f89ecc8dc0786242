//! x86 EPT (Intel VT-x extended page tables), 4-level: [`Ept`], guest physical to host
//! physical.
//!
//! Source: Intel SDM vol. 3C, 29.3.2 "EPT Translation Mechanism" (tables 29-1 to 29-6: formats
//! of the EPT PML4E, PDPTE, PDE and PTE, for tables, 1 GiB and 2 MiB pages and 4 KiB pages),
//! 29.3.3.1 (EPT misconfigurations: write without read, execute-only without the capability,
//! a reserved memory type), 29.3.5 (accessed and dirty flags), 29.3.7 (EPT and memory typing),
//! 29.4.3 (INVEPT).
//!
//! What the tables built here assume of the CPU: EPTP.MT = 6 (write-back paging structures),
//! EPTP page-walk length 4, and EPTP bit 6 set if accessed and dirty flags are to be kept
//! (without it the MMU writes neither and they read as this crate wrote them). A mapping that
//! may execute without reading needs IA32_VMX_EPT_VPID_CAP bit 0 (execute-only pages).
//!
//! Flags: `READ`, `WRITE`, `EXECUTE` are bits 0, 1, 2 (with mode-based execute control, bit
//! 2 is supervisor execute; bit 10, user execute, is left clear). `USER` and `GLOBAL` are paging
//! notions the EPT has not and are refused, as is write without read (a misconfiguration).
//! Memory type (bits 3-5): normal is WB (6), device UC (0), uncached WC (1); WT (4) and WP (5),
//! which this crate does not write, read back as normal. [`MappingFlags::IGNORE_PAT`] is bit 6.
//!
//! TLB maintenance: INVEPT has no by-address form, so every flush of an EPT table is an
//! all-context INVEPT ([`Arch::PAGE_FLUSH`] is false).

use bitfield_struct::bitfield;
use memory_addr::VirtAddr;
use static_assertions::const_assert_eq;

use crate::arch::{self, Arch, VaSpace, sealed::Sealed};
use crate::error::PagingError;
use crate::flags::{AccessState, MappingFlags, MemType};
use crate::levels::{EntryKind, HasNext, L3, L4, Level};
use crate::tlb::TlbScope;

/// An EPT paging-structure entry (SDM tables 29-1 to 29-6): one layout for every level.
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct EptPte {
    /// Bit 0: reads allowed. An entry with bits 0-2 all clear is not present.
    pub read: bool,
    /// Bit 1: writes allowed.
    pub write: bool,
    /// Bit 2: instruction fetches allowed (supervisor-mode ones, with mode-based execute
    /// control).
    pub execute: bool,
    /// Bits 3-5 (leaves): EPT memory type: 0 UC, 1 WC, 4 WT, 5 WP, 6 WB.
    #[bits(3)]
    pub mem_type: u8,
    /// Bit 6 (leaves): ignore PAT memory type.
    pub ignore_pat: bool,
    /// Bit 7: in a PDPTE or PDE, 1 maps a 1 GiB or 2 MiB page; must be 0 in a PML4E; ignored
    /// in a PTE.
    pub page_size: bool,
    /// Bit 8: accessed (every level, with EPTP bit 6).
    pub accessed: bool,
    /// Bit 9 (leaves): dirty (with EPTP bit 6).
    pub dirty: bool,
    /// Bit 10: user-mode execute (with mode-based execute control), else ignored.
    pub user_execute: bool,
    /// Bit 11: ignored.
    pub ignored: bool,
    /// Bits 12-51: the host physical address from bit 12 up (from bit 21 or 30 in a 2 MiB or
    /// 1 GiB leaf, whose lower bits are reserved, zero).
    #[bits(40)]
    pub addr: u64,
    /// Bits 52-62: ignored, or features this crate leaves clear (verify guest paging,
    /// paging-write access, supervisor shadow stack, sub-page write permissions).
    #[bits(11)]
    pub high: u16,
    /// Bit 63: suppress #VE.
    pub suppress_ve: bool,
}

const_assert_eq!(core::mem::size_of::<EptPte>(), 8);
const_assert_eq!(EptPte::MEM_TYPE_OFFSET, 3);
const_assert_eq!(EptPte::IGNORE_PAT_OFFSET, 6);
const_assert_eq!(EptPte::PAGE_SIZE_OFFSET, 7);
const_assert_eq!(EptPte::ACCESSED_OFFSET, 8);
const_assert_eq!(EptPte::DIRTY_OFFSET, 9);
const_assert_eq!(EptPte::ADDR_OFFSET, 12);
const_assert_eq!(EptPte::ADDR_OFFSET + EptPte::ADDR_BITS, 52);
const_assert_eq!(EptPte::SUPPRESS_VE_OFFSET, 63);

const R: u64 = 1 << EptPte::READ_OFFSET;
const W: u64 = 1 << EptPte::WRITE_OFFSET;
const X: u64 = 1 << EptPte::EXECUTE_OFFSET;
const RWX: u64 = R | W | X;
const MEM_TYPE: u64 = 0b111 << EptPte::MEM_TYPE_OFFSET;
const IGNORE_PAT: u64 = 1 << EptPte::IGNORE_PAT_OFFSET;
const PS: u64 = 1 << EptPte::PAGE_SIZE_OFFSET;
const A: u64 = 1 << EptPte::ACCESSED_OFFSET;
const D: u64 = 1 << EptPte::DIRTY_OFFSET;
const ADDR: u64 = ((1 << EptPte::ADDR_BITS) - 1) << EptPte::ADDR_OFFSET;
/// Bit 10: user-mode execute with mode-based execute control, which makes an entry present.
const USER_EXECUTE: u64 = 1 << 10;
/// Bit 11 (ignored): a marker, bits 2:0 and 10 clear (this crate's tag; a leaf's bit 11
/// stays the caller's).
const MARKER: u64 = 1 << 11;
/// Bit 63: suppress #VE, which the CPU reads in a not-present entry too.
const SUPPRESS_VE: u64 = 1 << EptPte::SUPPRESS_VE_OFFSET;
/// Bits a protect keeps: ignored bit 11, bits 52-63.
const KEEP: u64 = (1 << 11) | (0xfff << 52);

/// The EPT memory type of each [`MemType`] (SDM 29.3.7, table 11-10's encodings).
const fn ept_mem_type(mem: MemType) -> u64 {
    let code = match mem {
        MemType::Normal => 6,
        MemType::Device => 0,
        MemType::Uncached => 1,
    };
    code << EptPte::MEM_TYPE_OFFSET
}

/// x86 EPT with a 4-level walk: 48-bit guest physical addresses (zero-extended), PML4 root;
/// 4 KiB, 2 MiB and 1 GiB leaves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ept;

impl Sealed for Ept {}

impl Arch for Ept {
    type Pte = EptPte;
    type Addr = crate::GuestPhysAddr;
    type Root = L4;
    type MaxLeaf = L3;
    const NAME: &'static str = "x86-ept";
    const VA_BITS: u32 = 48;
    const PA_BITS: u32 = 52;
    const VA_SPACE: VaSpace = VaSpace::Lower;
    const PAGE_FLUSH: bool = false;
    /// None: an EPT entry's present bits are its permissions, so an inaccessible leaf could not
    /// keep them.
    const INACCESSIBLE_TAG: u64 = 0;
    const MARKER_TAG: u64 = MARKER;
    /// Bits 2:0, bit 10 (present under mode-based execute control), the tag, and bit 63
    /// (suppress #VE, read on an EPT violation): 58 payload bits.
    const MARKER_RESERVED: u64 = RWX | USER_EXECUTE | MARKER | SUPPRESS_VE;
    /// Bit 11 and bits 52-56, ignored with every EPT feature this crate leaves off (57-62 are
    /// features' when enabled): 6 bits.
    const SOFT_BITS: u64 = MARKER | (0x1f << 52);

    #[inline(always)]
    fn entry_kind<L: Level>(pte: u64) -> EntryKind {
        if pte & RWX == 0 {
            // SDM 29.3.2: an entry with bits 2:0 clear is not present (bit 10 too, under
            // mode-based execute control, which a marker keeps clear).
            arch::absent_kind(pte, L::DEPTH, 0, MARKER, false)
        } else if L::DEPTH == 1 || (L::DEPTH <= 3 && pte & PS != 0) {
            EntryKind::Leaf
        } else if L::DEPTH == 4 && pte & PS != 0 {
            // Bit 7 of a PML4E is reserved: a misconfiguration, never a translation.
            EntryKind::Empty
        } else {
            EntryKind::Table
        }
    }

    #[inline(always)]
    fn table_entry(pa: u64) -> u64 {
        // Permissions AND down the walk: a pointer allows everything, the leaf decides.
        pa | RWX
    }

    const TABLE_GATES: bool = true;
    const PATH_START: u64 = u64::MAX;

    #[inline(always)]
    fn path_step(acc: u64, pte: u64) -> u64 {
        // SDM 29.3.3.2: an access needs its R, W or X bit in every entry of the walk.
        acc & pte
    }

    #[inline]
    fn path_restrict(acc: u64, flags: MappingFlags) -> MappingFlags {
        let mut gone = MappingFlags::EMPTY;
        for (bit, flag) in [
            (R, MappingFlags::READ),
            (W, MappingFlags::WRITE),
            (X, MappingFlags::EXECUTE),
        ] {
            if acc & bit == 0 {
                gone |= flag;
            }
        }
        flags.without(gone)
    }

    #[inline]
    fn table_grant(pte: u64, flags: MappingFlags) -> u64 {
        let mut pte = pte;
        for (bit, flag) in [
            (R, MappingFlags::READ),
            (W, MappingFlags::WRITE),
            (X, MappingFlags::EXECUTE),
        ] {
            if flags.contains(flag) {
                pte |= bit;
            }
        }
        pte
    }

    #[inline(always)]
    fn table_addr(pte: u64) -> u64 {
        pte & ADDR
    }

    #[inline]
    fn check_mode_flags(flags: MappingFlags) -> Result<(), PagingError> {
        let not_ept = MappingFlags::USER | MappingFlags::GLOBAL | MappingFlags::INACCESSIBLE;
        let write_only = flags.contains(MappingFlags::WRITE) && !flags.contains(MappingFlags::READ);
        if flags.no_access() || write_only || flags.intersects(not_ept) {
            Err(PagingError::FlagsNotExpressible(flags))
        } else {
            Ok(())
        }
    }

    #[inline(always)]
    fn leaf_template<L: Level>(flags: MappingFlags) -> u64 {
        let set = |flag: MappingFlags, bits: u64| if flags.contains(flag) { bits } else { 0 };
        let size = if L::DEPTH > 1 { PS } else { 0 };
        A | size
            | set(MappingFlags::READ, R)
            | set(MappingFlags::WRITE, W | D)
            | set(MappingFlags::EXECUTE, X)
            | set(MappingFlags::IGNORE_PAT, IGNORE_PAT)
            | ept_mem_type(flags.mem_type())
    }

    #[inline(always)]
    fn leaf_addr_mask<L: Level>() -> u64 {
        ADDR & !arch::leaf_offset_mask::<Self, L>()
    }

    #[inline]
    fn leaf_flags<L: Level>(pte: u64) -> MappingFlags {
        let set = |bit: u64, flag: MappingFlags| {
            if pte & bit != 0 {
                flag
            } else {
                MappingFlags::EMPTY
            }
        };
        let mem = match (pte & MEM_TYPE) >> EptPte::MEM_TYPE_OFFSET {
            0 => MemType::Device,
            1 => MemType::Uncached,
            // WB, and the cached WT and WP this crate does not write.
            _ => MemType::Normal,
        };
        (set(R, MappingFlags::READ)
            | set(W, MappingFlags::WRITE)
            | set(X, MappingFlags::EXECUTE)
            | set(IGNORE_PAT, MappingFlags::IGNORE_PAT))
        .with_mem_type(mem)
    }

    #[inline(always)]
    fn leaf_state<L: Level>(pte: u64) -> AccessState {
        let leaf = EptPte::from(pte);
        AccessState {
            accessed: leaf.accessed(),
            dirty: leaf.dirty(),
        }
    }

    #[inline]
    fn leaf_protect<L: Level>(old: u64, flags: MappingFlags) -> u64 {
        let keep = Self::leaf_addr_mask::<L>() | A | D | KEEP;
        let mut new = (old & keep) | (Self::leaf_template::<L>(flags) & !(A | D));
        if flags.contains(MappingFlags::WRITE) && old & W == 0 {
            new |= D;
        }
        new
    }

    #[inline]
    fn leaf_clear_state<L: Level>(old: u64, clear: AccessState) -> u64 {
        old & !(if clear.accessed { A } else { 0 } | if clear.dirty { D } else { 0 })
    }

    #[inline(always)]
    fn leaf_mark<L: Level>(old: u64, mark: AccessState) -> u64 {
        let dirty = mark.dirty && old & W != 0;
        old | if mark.accessed { A } else { 0 } | if dirty { D } else { 0 }
    }

    #[inline]
    fn leaf_split<L: HasNext>(pte: u64) -> u64 {
        let template = pte & !Self::leaf_addr_mask::<L>();
        // A 2 MiB leaf becomes 4 KiB ones, where bit 7 means nothing: cleared.
        if L::DEPTH == 2 {
            template & !PS
        } else {
            template
        }
    }

    #[inline(always)]
    fn hw_may_update<L: Level>(pte: u64) -> bool {
        // With EPTP bit 6 the MMU sets A, and D on a write through a writable leaf.
        (pte & RWX != 0) & ((pte & A == 0) | (pte & (W | D) == W))
    }

    #[inline(always)]
    fn settled_leaves(all: u64, any: impl FnOnce() -> u64) -> bool {
        // All present (one of R, W, X common to all) and accessed, and all dirty or none
        // writable.
        all & A != 0 && all & RWX != 0 && (all & D != 0 || any() & W == 0)
    }

    const TLB_ID_BITS: u32 = 0;
    const TLB_ID_NAME: &'static str = "EPTP";

    /// The EPT pointer: memory type write-back (6, bits 2:0), page-walk length 4 (3 in bits
    /// 5:3), accessed and dirty flags on (bit 6), the PML4 address (bits 51:12). `id` is 0.
    #[inline]
    fn root_register(root: u64, id: u16) -> u64 {
        let _ = id;
        root | 6 | 3 << 3 | 1 << 6
    }

    /// Tagged (id 0): single-context `INVEPT` (type 1) for this table's EPT pointer, which
    /// leaves other guests' translations alone; needs IA32_VMX_EPT_VPID_CAP bit 25.
    fn flush_in(scope: TlbScope, range: Option<(VirtAddr, usize)>) {
        match scope.id {
            Some(_) => invept(1, Self::root_register(scope.root, 0)),
            None => arch::flush_untagged::<Self>(range),
        }
    }

    /// Writes the EPT pointer into the current VMCS (field 0x201A) with `VMWRITE`.
    unsafe fn activate(scope: TlbScope) {
        let eptp = Self::root_register(scope.root, 0);
        #[cfg(all(
            target_arch = "x86_64",
            any(target_os = "none", feature = "privileged")
        ))]
        // SAFETY: in VMX root operation with a current VMCS (the caller's contract); VMWRITE
        // writes that VMCS only.
        unsafe {
            core::arch::asm!("vmwrite {field}, {value}", field = in(reg) 0x201au64, value = in(reg) eptp, options(nostack));
        }
        #[cfg(not(all(
            target_arch = "x86_64",
            any(target_os = "none", feature = "privileged")
        )))]
        let _ = eptp;
    }

    fn flush_page(va: VirtAddr) {
        // No by-address INVEPT: `PAGE_FLUSH` is false, so `Flush` calls `flush_all` instead.
        let _ = va;
        Self::flush_all();
    }

    fn flush_all() {
        invept(2, 0);
    }
}

/// `INVEPT` of `kind` (1 single context, 2 all contexts) with the descriptor {`eptp`, 0}.
fn invept(kind: u64, eptp: u64) {
    #[cfg(all(
        target_arch = "x86_64",
        any(target_os = "none", feature = "privileged")
    ))]
    {
        let descriptor = [eptp, 0];
        // SAFETY: INVEPT with a 128-bit descriptor it only reads; it drops cached EPT
        // translations. It runs in VMX root operation only: elsewhere it faults, which is the
        // contract of flushing a live EPT table.
        unsafe {
            core::arch::asm!(
                "invept {kind}, [{desc}]",
                kind = in(reg) kind,
                desc = in(reg) descriptor.as_ptr(),
                options(nostack, readonly),
            );
        }
    }
    #[cfg(not(all(
        target_arch = "x86_64",
        any(target_os = "none", feature = "privileged")
    )))]
    let _ = (kind, eptp);
}
