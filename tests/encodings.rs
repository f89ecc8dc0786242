//! Known encodings, per architecture: leaves and tables whose raw `u64` was worked out by hand
//! from the manual's bit table (the sum is in each comment), and decodings of raw entries.

mod common;

use common::Frames;
use memory_addr::{pa, va};
use pagetable::arch::mem_layout::{Mair, Pat, ResetPat};
use pagetable::arch::x86_64::Paging4;
use pagetable::levels::AtMost;
use pagetable::{
    AArch64, AccessState, Arch, Descriptor, El2, El3, EntryKind, Granule4K, HugePages, L1, L2, L3,
    L4, L5, Level, LoongArch64, Lower, MappingFlags as F, MemType, PageSize, PageTable,
    PagingError, PhysAddr, Sv39, Sv48, Sv57, TableFrame, Upper, Va39, Va48, X86, X86_64,
};

const R: F = F::READ;
const W: F = F::WRITE;
const X: F = F::EXECUTE;
const U: F = F::USER;
const G: F = F::GLOBAL;

fn leaf<A: Arch, L: AtMost<A::MaxLeaf>>(pa: usize, flags: F) -> u64 {
    Descriptor::<A, L>::leaf(PhysAddr::from(pa), flags)
        .unwrap()
        .bits()
}

fn decode<A: Arch, L: Level>(bits: u64) -> (usize, F, AccessState) {
    let (pa, flags, state) = Descriptor::<A, L>::from_bits(bits)
        .leaf_info()
        .expect("a leaf");
    (pa.as_usize(), flags, state)
}

fn state(accessed: bool, dirty: bool) -> AccessState {
    AccessState { accessed, dirty }
}

// ---- x86_64: SDM vol. 3A tables 4-15..4-20. P=0 RW=1 US=2 PWT=3 PCD=4 A=5 D=6 PS/PAT=7 G=8
// ---- XD=63; huge PAT=12. PAT index (PAT:PCD:PWT) under Linux's PAT: WB 0, WC 1, UC 3.

#[test]
fn x86_4k_kernel_read_write() {
    // P 0x1 + RW 0x2 + A 0x20 + D 0x40 = 0x63; XD bit 63; address 0x1234_5000.
    assert_eq!(
        leaf::<X86_64, L1>(0x1234_5000, R | W),
        0x8000_0000_1234_5063
    );
}

#[test]
fn x86_4k_user_global_executable() {
    // P 0x1 + US 0x4 + A 0x20 + G 0x100 = 0x125; executable, so no XD.
    assert_eq!(leaf::<X86_64, L1>(0x7000, R | X | U | G), 0x7125);
}

#[test]
fn x86_2m_device() {
    // P 1 + RW 2 + PWT 8 + PCD 0x10 + A 0x20 + D 0x40 + PS 0x80 = 0xfb (PAT index 3, UC).
    assert_eq!(
        leaf::<X86_64, L2>(0x4020_0000, (R | W).with_mem_type(MemType::Device)),
        0x8000_0000_4020_00fb
    );
}

#[test]
fn x86_1g_write_combining() {
    // P 1 + RW 2 + PWT 8 + A 0x20 + D 0x40 + PS 0x80 = 0xeb (PAT index 1, WC).
    assert_eq!(
        leaf::<X86_64, L3>(0x8000_0000, R | W | F::UNCACHED),
        0x8000_0000_8000_00eb
    );
}

#[test]
fn x86_table_entry_allows_everything() {
    // P 1 + RW 2 + US 4: permissions are the leaves' business.
    let l1 = TableFrame::<X86_64, L1>::new(pa!(0x5000)).unwrap();
    assert_eq!(Descriptor::<X86_64, L2>::table(l1).bits(), 0x5007);
}

#[test]
fn x86_decodes_pat_bit_of_4k_leaf() {
    // 0x90b1 = address 0x9000 + P 1 + PCD 0x10 + A 0x20 + PAT(bit 7) 0x80: PAT index 6, UC-.
    let (pa, flags, st) = decode::<X86_64, L1>(0x90b1);
    assert_eq!(pa, 0x9000);
    assert_eq!(flags, (R | X).with_mem_type(MemType::Device));
    assert_eq!(st, state(true, false));
}

#[test]
fn x86_decodes_pat_bit_12_of_huge_leaf_as_attribute_not_address() {
    // 2 MiB leaf at 0x4020_0000 with bit 12 (PAT) set: PAT index 4 (WB), P 1 + RW 2 + PS 0x80.
    let (pa, flags, _) = decode::<X86_64, L2>(0x8000_0000_4020_1083);
    assert_eq!(pa, 0x4020_0000);
    assert_eq!(flags, R | W);
}

#[test]
fn x86_refuses_mapping_without_read() {
    assert_eq!(
        Descriptor::<X86_64, L1>::leaf(pa!(0), W),
        Err(PagingError::FlagsNotExpressible(W))
    );
}

#[test]
fn x86_pat_register_value() {
    // Entries 0..7 from the low byte: WB 06, WC 01, UC- 07, UC 00, WB 06, WP 05, UC- 07, WT 04.
    assert_eq!(pagetable::arch::x86_64::PAT, 0x0407_0506_0007_0106);
}

// ---- AArch64 stage 1, 4 KiB granule: valid 0, table/page 1, AttrIndx 2-4, AP[1] 6, AP[2] 7,
// ---- SH 8-9, AF 10, nG 11, DBM 51, PXN 53, UXN 54. MAIR: 0 normal WB, 1 device, 2 normal NC.

#[test]
fn aarch64_4k_kernel_read_write() {
    // valid 1 + page 2 + SH inner 0x300 + AF 0x400 + nG 0x800 = 0xf03; AttrIndx 0;
    // DBM (1<<51) + PXN (1<<53) + UXN (1<<54) = 0x0068 << 48.
    assert_eq!(
        leaf::<AArch64, L1>(0x4000_1000, R | W),
        0x0068_0000_4000_1f03
    );
}

#[test]
fn aarch64_2m_block_kernel_text_global() {
    // valid 1 + AP[2] 0x80 + SH 0x300 + AF 0x400 = 0x781 (block: bit 1 clear; global: nG clear);
    // executable at EL1: UXN only (1<<54).
    assert_eq!(
        leaf::<AArch64, L2>(0x4020_0000, R | X | G),
        0x0040_0000_4020_0781
    );
}

#[test]
fn aarch64_1g_block_read_only() {
    // 0x781 as above, no execute: PXN + UXN = 0x0060 << 48.
    assert_eq!(
        leaf::<AArch64<Va39>, L3>(0x4000_0000, R | G),
        0x0060_0000_4000_0781
    );
}

#[test]
fn aarch64_4k_device() {
    // valid 1 + page 2 + AttrIndx 1 (4) + SH outer 0x200 + AF 0x400 + nG 0x800 = 0xe07.
    assert_eq!(
        leaf::<AArch64, L1>(0x0900_0000, R | W | F::DEVICE),
        0x0068_0000_0900_0e07
    );
}

#[test]
fn aarch64_4k_user_executable() {
    // valid 1 + page 2 + AP[1] 0x40 + AP[2] 0x80 + SH 0x300 + AF 0x400 + nG 0x800 = 0xfc3;
    // executable at EL0 only: PXN (1<<53).
    assert_eq!(
        leaf::<AArch64<Va48, Upper>, L1>(0x4000_2000, R | X | U),
        0x0020_0000_4000_2fc3
    );
}

#[test]
fn aarch64_table_entry() {
    let next = TableFrame::<AArch64, L3>::new(pa!(0x8_0000)).unwrap();
    assert_eq!(Descriptor::<AArch64, L4>::table(next).bits(), 0x8_0003);
}

#[test]
fn aarch64_level0_block_and_level3_bit1_clear_are_invalid() {
    assert_eq!(
        Descriptor::<AArch64, L4>::from_bits(0x4000_0401).kind(),
        EntryKind::Empty
    );
    assert_eq!(
        Descriptor::<AArch64, L1>::from_bits(0x4000_0401).kind(),
        EntryKind::Empty
    );
    assert_eq!(
        Descriptor::<AArch64, L2>::from_bits(0x4000_0401).kind(),
        EntryKind::Leaf
    );
}

#[test]
fn aarch64_dirty_state_follows_dbm_and_ap2() {
    // Writable-clean: DBM + AP[2] (0x80). Writable-dirty: DBM, AP[2] clear.
    let clean = 0x0068_0000_4000_1f83;
    assert_eq!(decode::<AArch64, L1>(clean).1, R | W);
    assert_eq!(decode::<AArch64, L1>(clean).2, state(true, false));
    assert_eq!(
        decode::<AArch64, L1>(0x0068_0000_4000_1f03).2,
        state(true, true)
    );
}

#[test]
fn aarch64_mair_value() {
    assert_eq!(pagetable::arch::aarch64::MAIR, 0x0000_0000_0044_04ff);
}

// ---- AArch64 EL2 (without VHE) and EL3: AP[1] (bit 6) RES1, no nG, XN bit 54 (no PXN), NS
// ---- bit 5 at EL3. Every leaf is global; USER has no meaning.

#[test]
fn aarch64_el2_and_el3_leaves() {
    // valid 1 + page 2 + AP[1] 0x40 + SH inner 0x300 + AF 0x400 = 0x743; DBM (1 << 51)
    // + XN (1 << 54) = 0x0048 << 48.
    assert_eq!(
        leaf::<AArch64<Va48, El2>, L1>(0x4000_1000, R | W | G),
        0x0048_0000_4000_1743
    );
    // Read-only and executable: + AP[2] 0x80 = 0x7c3, no DBM, no XN.
    assert_eq!(
        leaf::<AArch64<Va48, El3>, L1>(0x4000_1000, R | X | G),
        0x0000_0000_4000_17c3
    );
    // EL3, non-secure device memory, 2M block: valid 1 + AttrIndx 1 (4) + NS 0x20 + AP[1] 0x40
    // + SH outer 0x200 + AF 0x400 = 0x665; DBM + XN.
    let ns_device = (R | W | G | F::NON_SECURE).with_mem_type(MemType::Device);
    assert_eq!(
        leaf::<AArch64<Va48, El3>, L2>(0x4020_0000, ns_device),
        0x0048_0000_4020_0665
    );
    assert_eq!(
        decode::<AArch64<Va48, El3>, L2>(0x0048_0000_4020_0665).1,
        ns_device
    );
    // Decoded: AP[1] is not EL0 access, the leaf is global, XN is the execute bit.
    assert_eq!(
        decode::<AArch64<Va48, El2>, L1>(0x0048_0000_4000_1743).1,
        R | W | G
    );
    assert_eq!(
        decode::<AArch64<Va48, El2>, L1>(0x0000_0000_4000_17c3).1,
        R | X | G
    );
}

#[test]
fn aarch64_el2_and_el3_refuse_what_they_cannot_express() {
    let refused = |flags: F| Err(PagingError::FlagsNotExpressible(flags));
    // No EL0 in the regime; no non-global leaf without ASIDs; NS only in EL3's secure tables.
    assert_eq!(
        Descriptor::<AArch64<Va48, El2>, L1>::leaf(PhysAddr::from(0x1000), R | U | G)
            .map(|d| d.bits()),
        refused(R | U | G)
    );
    assert_eq!(
        Descriptor::<AArch64<Va48, El3>, L1>::leaf(PhysAddr::from(0x1000), R | W).map(|d| d.bits()),
        refused(R | W)
    );
    let ns = R | G | F::NON_SECURE;
    assert_eq!(
        Descriptor::<AArch64<Va48, El2>, L1>::leaf(PhysAddr::from(0x1000), ns).map(|d| d.bits()),
        refused(ns)
    );
    assert_eq!(
        Descriptor::<AArch64, L1>::leaf(PhysAddr::from(0x1000), ns).map(|d| d.bits()),
        refused(ns)
    );
    assert_eq!(
        Descriptor::<X86_64, L1>::leaf(PhysAddr::from(0x1000), ns).map(|d| d.bits()),
        refused(ns)
    );
    assert_eq!(
        Descriptor::<Sv39, L1>::leaf(PhysAddr::from(0x1000), ns).map(|d| d.bits()),
        refused(ns)
    );
    assert_eq!(
        Descriptor::<LoongArch64, L1>::leaf(PhysAddr::from(0x1000), ns).map(|d| d.bits()),
        refused(ns)
    );
}

// ---- The memory-type layout a kernel picks (arch::mem_layout): the same flags land on the
// ---- layout's AttrIndx / PAT index, and decode back through it.

/// page_table_multiarch's MAIR: 0 Device-nGnRE, 1 normal write-back, 2 normal non-cacheable.
type Pma = AArch64<Va48, Lower, Granule4K, Mair<1, 0, 2>>;

#[test]
fn aarch64_custom_mair_layout() {
    // Normal: valid 1 + page 2 + AttrIndx 1 (1 << 2 = 4) + SH inner 0x300 + AF 0x400
    // + nG 0x800 = 0xf07; DBM + PXN + UXN = 0x0068 << 48.
    assert_eq!(leaf::<Pma, L1>(0x4000_1000, R | W), 0x0068_0000_4000_1f07);
    // Device: AttrIndx 0 + SH outer 0x200 + valid, page, AF, nG = 0xe03.
    assert_eq!(
        leaf::<Pma, L1>(0x0900_0000, R | W | F::DEVICE),
        0x0068_0000_0900_0e03
    );
    // Non-cacheable: AttrIndx 2 (8) + SH outer 0x200 + 0xc03 = 0xe0b.
    assert_eq!(
        leaf::<Pma, L1>(0x0900_0000, R | W | F::UNCACHED),
        0x0068_0000_0900_0e0b
    );
    // Decoded through the layout: index 1 is normal here, index 0 device.
    assert_eq!(
        decode::<Pma, L1>(0x0068_0000_4000_1f07).1.mem_type(),
        MemType::Normal
    );
    assert_eq!(
        decode::<Pma, L1>(0x0068_0000_0900_0e03).1.mem_type(),
        MemType::Device
    );
    assert_eq!(
        decode::<Pma, L1>(0x0068_0000_0900_0e0b).1.mem_type(),
        MemType::Uncached
    );
    // The default layout reads the same index 1 as device.
    assert_eq!(
        decode::<AArch64, L1>(0x0068_0000_4000_1f07).1.mem_type(),
        MemType::Device
    );
    // MAIR_EL1: Attr0 0x04, Attr1 0xff, Attr2 0x44.
    assert_eq!(Pma::mair(), 0x0000_0000_0044_ff04);
    assert_eq!(
        AArch64::<Va48, Lower>::mair(),
        pagetable::arch::aarch64::MAIR
    );
}

/// IA32_PAT entries from the low byte: WB 06, WT 04, UC- 07, UC 00, WB 06, WC 01, UC- 07,
/// UC 00: write-combining only at index 5 (PAT bit set, PCD clear, PWT set).
type WcAt5 = X86<Paging4, Pat<0x0007_0106_0007_0406>>;

#[test]
fn x86_custom_pat_layout() {
    // 4K WC: P 1 + RW 2 + PWT 8 + A 0x20 + D 0x40 + PAT (bit 7) 0x80 = 0xeb; XD.
    assert_eq!(
        leaf::<WcAt5, L1>(0x1234_5000, R | W | F::UNCACHED),
        0x8000_0000_1234_50eb
    );
    // 2M WC: PAT moves to bit 12 (0x1000); PS 0x80: 0x10eb.
    assert_eq!(
        leaf::<WcAt5, L2>(0x4020_0000, R | W | F::UNCACHED),
        0x8000_0000_4020_10eb
    );
    // Device: the first UC entry, index 3: PWT 8 + PCD 0x10 + 0x63 = 0x7b.
    assert_eq!(
        leaf::<WcAt5, L1>(0x1234_5000, R | W | F::DEVICE),
        0x8000_0000_1234_507b
    );
    assert_eq!(
        decode::<WcAt5, L1>(0x8000_0000_1234_50eb).1.mem_type(),
        MemType::Uncached
    );
    assert_eq!(
        decode::<WcAt5, L2>(0x8000_0000_4020_10eb).1.mem_type(),
        MemType::Uncached
    );
    // Index 1 is WT in this layout (cached): normal. Under Linux's layout it is WC.
    assert_eq!(
        decode::<WcAt5, L1>(0x8000_0000_1234_506b).1.mem_type(),
        MemType::Normal
    );
    assert_eq!(
        decode::<X86_64, L1>(0x8000_0000_1234_506b).1.mem_type(),
        MemType::Uncached
    );
    assert_eq!(WcAt5::ia32_pat(), 0x0007_0106_0007_0406);
}

#[test]
fn x86_custom_pat_layout_survives_a_split() {
    // A 2M WC leaf split into 4K pages: each page's PAT index stays 5 (PAT bit 7, PWT).
    let mut pt = common::small_table::<WcAt5>();
    pt.map(
        va!(0x4020_0000),
        pa!(0x4020_0000),
        PageSize::SIZE_2M,
        R | W | F::UNCACHED,
    )
    .unwrap()
    .ignore();
    pt.protect_region(va!(0x4020_1000), 0x1000, R | F::UNCACHED)
        .unwrap()
        .ignore();
    // 0xeb as above; the read-only page: 0xe9 (no RW, D kept).
    assert_eq!(common::l1_entry(&pt, 0x4020_0000), 0x8000_0000_4020_00eb);
    assert_eq!(common::l1_entry(&pt, 0x4020_1000), 0x8000_0000_4020_10e9);
}

#[test]
fn x86_reset_pat_layout_has_no_write_combining() {
    // The reset IA32_PAT: WB, WT, UC-, UC, WB, WT, UC-, UC. Device is index 3 (0x7b as above).
    assert_eq!(
        leaf::<X86<Paging4, ResetPat>, L1>(0x1234_5000, R | W | F::DEVICE),
        0x8000_0000_1234_507b
    );
    let mut pt = common::small_table::<X86<Paging4, ResetPat>>();
    assert_eq!(
        pt.map(va!(0x1000), pa!(0x1000), PageSize::SIZE_4K, R | F::UNCACHED)
            .map(|f| f.ignore()),
        Err(PagingError::FlagsNotExpressible(R | F::UNCACHED))
    );
    assert_eq!(X86::<Paging4, ResetPat>::ia32_pat(), 0x0007_0406_0007_0406);
}

// ---- RISC-V: V 0, R 1, W 2, X 3, U 4, G 5, A 6, D 7, RSW 8-9, PPN 10-53, PBMT 61-62, N 63.

#[test]
fn riscv_4k_read_write() {
    // V 1 + R 2 + W 4 + A 0x40 + D 0x80 = 0xc7; PPN 0x80201 << 10 = 0x2008_0400.
    assert_eq!(leaf::<Sv39, L1>(0x8020_1000, R | W), 0x2008_04c7);
}

#[test]
fn riscv_2m_io_global_executable() {
    // V 1 + R 2 + X 8 + G 0x20 + A 0x40 = 0x6b; PPN 0x80200 << 10 = 0x2008_0000; PBMT IO = 2<<61.
    assert_eq!(
        leaf::<Sv48, L2>(0x8020_0000, R | X | G | F::DEVICE),
        0x4000_0000_2008_006b
    );
}

#[test]
fn riscv_4k_user_rwx_non_cacheable() {
    // V 1 + R 2 + W 4 + X 8 + U 0x10 + A 0x40 + D 0x80 = 0xdf; PPN 0x80000 << 10; PBMT NC 1<<61.
    assert_eq!(
        leaf::<Sv39, L1>(0x8000_0000, R | W | X | U | F::UNCACHED),
        0x2000_0000_2000_00df
    );
}

#[test]
fn riscv_execute_only_and_256t_leaf() {
    // V 1 + X 8 + A 0x40 = 0x49.
    assert_eq!(leaf::<Sv39, L1>(0, X), 0x49);
    // A 256 TiB leaf at PA 1<<48: PPN 1<<36, << 10 = 1<<46; V 1 + R 2 + A 0x40 = 0x43.
    assert_eq!(leaf::<Sv57, L5>(1 << 48, R), (1 << 46) | 0x43);
}

#[test]
fn riscv_table_entry() {
    // V 1; PPN 0x80003 << 10 = 0x2000_0c00.
    let l1 = TableFrame::<Sv39, L1>::new(pa!(0x8000_3000)).unwrap();
    assert_eq!(Descriptor::<Sv39, L2>::table(l1).bits(), 0x2000_0c01);
}

#[test]
fn riscv_refuses_write_without_read_and_no_access() {
    assert_eq!(
        Descriptor::<Sv39, L1>::leaf(pa!(0), W | X),
        Err(PagingError::FlagsNotExpressible(W | X))
    );
    assert_eq!(
        Descriptor::<Sv39, L1>::leaf(pa!(0), U),
        Err(PagingError::FlagsNotExpressible(U))
    );
}

#[test]
fn riscv_refuses_misaligned_superpage() {
    assert_eq!(
        Descriptor::<Sv39, L2>::leaf(pa!(0x8000_1000), R),
        Err(PagingError::UnalignedPa(pa!(0x8000_1000)))
    );
}

// ---- LoongArch64: V 0, D 1, PLV 2-3, MAT 4-5, G/HUGE 6, P 7, W 8, PPN 12-47, huge G 12,
// ---- NR 61, NX 62, RPLV 63. MAT: 0 SUC, 1 CC, 2 WUC.

#[test]
fn loongarch_4k_kernel_read_write() {
    // V 1 + D 2 + MAT CC 0x10 + P 0x80 + W 0x100 = 0x193; NX 1<<62.
    assert_eq!(
        leaf::<LoongArch64, L1>(0x9000_0000, R | W),
        0x4000_0000_9000_0193
    );
}

#[test]
fn loongarch_2m_huge_global_device() {
    // V 1 + MAT SUC 0 + HUGE 0x40 + P 0x80 + huge G 0x1000 = 0x10c1; executable, readable.
    assert_eq!(
        leaf::<LoongArch64, L2>(0x9020_0000, R | X | G | F::DEVICE),
        0x9020_10c1
    );
}

#[test]
fn loongarch_4k_user_read_only() {
    // V 1 + PLV 3 (0xc) + MAT CC 0x10 + P 0x80 = 0x9d; NX 1<<62.
    assert_eq!(
        leaf::<LoongArch64, L1>(0x9000_1000, R | U),
        0x4000_0000_9000_109d
    );
}

#[test]
fn loongarch_write_only_uses_nr() {
    // 0x193 as above; NR 1<<61 + NX 1<<62.
    assert_eq!(
        leaf::<LoongArch64, L1>(0x9000_2000, W),
        0x6000_0000_9000_2193
    );
}

#[test]
fn loongarch_global_bit_moves_to_6_in_4k_leaves() {
    // V 1 + MAT CC 0x10 + G 0x40 + P 0x80 = 0xd1, NX.
    assert_eq!(
        leaf::<LoongArch64, L1>(0x9000_3000, R | G),
        0x4000_0000_9000_30d1
    );
}

#[test]
fn loongarch_directory_entry_is_bare_address() {
    let l1 = TableFrame::<LoongArch64, L1>::new(pa!(0x9000_5000)).unwrap();
    assert_eq!(Descriptor::<LoongArch64, L2>::table(l1).bits(), 0x9000_5000);
    assert_eq!(
        Descriptor::<LoongArch64, L2>::from_bits(0x9000_5000).kind(),
        EntryKind::Table
    );
    assert_eq!(
        Descriptor::<LoongArch64, L2>::from_bits(0).kind(),
        EntryKind::Empty
    );
}

#[test]
fn loongarch_page_walk_registers() {
    // PWCL: PTbase 12 | PTwidth 9<<5 (0x120) | Dir1base 21<<10 (0x5400) | Dir1width 9<<15
    // (0x48000) | Dir2base 30<<20 (0x1e0_0000) | Dir2width 9<<25 (0x1200_0000) = 0x13e4_d52c.
    assert_eq!(pagetable::arch::loongarch64::PWCL, 0x13e4_d52c);
    // PWCH: Dir3base 39 | Dir3width 9<<6 (0x240) = 0x267.
    assert_eq!(pagetable::arch::loongarch64::PWCH, 0x267);
}

// ---- Whole tables: where the walk puts entries.

#[test]
fn sv39_upper_half_entries_land_at_hand_computed_indices() {
    // VA 0xffff_ffc0_0020_1000: VPN[2] = bits 38:30 = 0x100, VPN[1] = 1, VPN[0] = 1.
    let mut pt = PageTable::<Sv39, _>::new(Frames::new(16, 0x8000_0000)).unwrap();
    pt.map(
        va!(0xffff_ffc0_0020_1000),
        pa!(0x8765_4000),
        pagetable::PageSize::SIZE_4K,
        R | W,
    )
    .unwrap()
    .ignore();
    let root = pt.root();
    let populated: Vec<usize> = (0..512)
        .filter(|&i| root.get(i).unwrap().kind() != EntryKind::Empty)
        .collect();
    assert_eq!(populated, [0x100]);
    let l2 = root.next(0x100).unwrap();
    let l1 = l2.next(1).unwrap();
    // V 1 + R 2 + W 4 + A 0x40 + D 0x80 = 0xc7; PPN 0x87654 << 10 = 0x21d9_5000.
    assert_eq!(l1.get(1).unwrap().bits(), 0x21d9_50c7);
    assert_eq!(
        l1.entries()
            .filter(|e| e.kind() != EntryKind::Empty)
            .count(),
        1
    );
}

#[test]
fn x86_huge_region_uses_one_1g_leaf_at_pdpt() {
    // VA 0x40_0000_0000 (256 GiB): PML4 index 0, PDPT index 256.
    let mut pt = PageTable::<X86_64, _>::new(Frames::new(16, 0)).unwrap();
    pt.map_region(
        va!(0x40_0000_0000),
        pa!(0x1_4000_0000),
        1 << 30,
        R | W | G,
        HugePages::Allowed,
    )
    .unwrap()
    .ignore();
    assert_eq!(pt.table_frames(), 2);
    let pdpt = pt.root().next(0).unwrap();
    // P 1 + RW 2 + A 0x20 + D 0x40 + PS 0x80 + G 0x100 = 0x1e3; XD.
    assert_eq!(pdpt.get(256).unwrap().bits(), 0x8000_0001_4000_01e3);
}

#[test]
fn sv57_maps_a_256t_leaf_in_the_root() {
    let mut pt = PageTable::<Sv57, _>::new(Frames::new(4, 0)).unwrap();
    pt.map(va!(0), pa!(1 << 48), pagetable::PageSize::SIZE_256T, R)
        .unwrap()
        .ignore();
    assert_eq!(pt.root().get(0).unwrap().bits(), (1 << 46) | 0x43);
    let t = pt.query(va!(0x1234_5678_9abc)).unwrap();
    assert_eq!(t.pa, pa!((1 << 48) + 0x1234_5678_9abc));
    assert_eq!(t.size, pagetable::PageSize::SIZE_256T);
}

#[test]
fn x86_5_level_root_index_uses_bits_56_48() {
    // VA 0x0001_0000_0000_0000 (2^48): PML5 index 1 under LA57; not canonical under 4-level.
    let mut pt5 = PageTable::<pagetable::X86_64La57, _>::new(Frames::new(16, 0)).unwrap();
    pt5.map(va!(1 << 48), pa!(0x1000), pagetable::PageSize::SIZE_4K, R)
        .unwrap()
        .ignore();
    assert_eq!(pt5.root().get(1).unwrap().kind(), EntryKind::Table);
    let mut pt4 = PageTable::<X86_64, _>::new(Frames::new(16, 0)).unwrap();
    assert_eq!(
        pt4.map(va!(1 << 48), pa!(0x1000), pagetable::PageSize::SIZE_4K, R)
            .map(|f| f.ignore()),
        Err(PagingError::NotCanonical(va!(1 << 48)))
    );
}

#[test]
fn aarch64_ttbr1_table_translates_only_upper_range() {
    let mut pt = PageTable::<AArch64<Va48, Upper>, _>::new(Frames::new(16, 0)).unwrap();
    assert_eq!(
        pt.map(va!(0x1000), pa!(0x1000), pagetable::PageSize::SIZE_4K, R)
            .map(|f| f.ignore()),
        Err(PagingError::NotCanonical(va!(0x1000)))
    );
    pt.map(
        va!(0xffff_0000_0000_0000),
        pa!(0x1000),
        pagetable::PageSize::SIZE_4K,
        R,
    )
    .unwrap()
    .ignore();
    // The lowest upper address indexes entry 0 of the level-0 table.
    assert_eq!(pt.root().get(0).unwrap().kind(), EntryKind::Table);
}

/// Every entry value a last-level table could hold, in one mode: the low 16 bits (every flag
/// bit of every architecture here, and the low address bits) in every combination, each with
/// the top bits clear, all set, and one in between.
fn no_last_level_entry_is_a_table<A: Arch>() {
    for low in 0..=u64::from(u16::MAX) {
        for high in [0, u64::MAX << 48, 0x5a5a << 48] {
            let pte = high | (0x1234_5000 & !0xffff) | low;
            assert_ne!(
                A::entry_kind::<L1>(pte),
                EntryKind::Table,
                "{} {pte:#x}",
                A::NAME
            );
        }
    }
}

#[test]
fn a_last_level_entry_is_never_a_table_in_any_mode() {
    no_last_level_entry_is_a_table::<X86_64>();
    no_last_level_entry_is_a_table::<pagetable::X86_64La57>();
    no_last_level_entry_is_a_table::<AArch64>();
    no_last_level_entry_is_a_table::<
        pagetable::AArch64<pagetable::Va48, pagetable::Lower, pagetable::Granule64K>,
    >();
    no_last_level_entry_is_a_table::<Sv39>();
    no_last_level_entry_is_a_table::<pagetable::Sv39x4>();
    no_last_level_entry_is_a_table::<LoongArch64>();
    no_last_level_entry_is_a_table::<pagetable::AArch64S2<pagetable::Ipa40>>();
    no_last_level_entry_is_a_table::<pagetable::Ept>();
}

/// `Arch::table_grant` sets and clears bits that depend on the flags alone, as its
/// documentation says and the walk relies on (it works the two masks out once per walk):
/// checked for every mode, every flag combination the API has, and entries with every pattern
/// of bits.
#[test]
fn table_grant_is_two_masks_of_the_flags() {
    fn check<A: Arch>() {
        let bits = [
            F::READ,
            F::WRITE,
            F::EXECUTE,
            F::USER,
            F::GLOBAL,
            F::DEVICE,
            F::INACCESSIBLE,
        ];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for combo in 0..1u32 << bits.len() {
            let flags = bits
                .iter()
                .enumerate()
                .filter(|(k, _)| combo >> k & 1 == 1)
                .fold(F::EMPTY, |f, (_, &b)| f | b);
            let (set, keep) = (A::table_grant(0, flags), A::table_grant(u64::MAX, flags));
            for pte in [
                0,
                u64::MAX,
                A::table_entry(0x1000),
                A::table_entry(0x1000) | 1 << 63,
            ] {
                assert_eq!(
                    A::table_grant(pte, flags),
                    (pte | set) & keep,
                    "{} {flags:?}",
                    A::NAME
                );
            }
            for _ in 0..64 {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                assert_eq!(
                    A::table_grant(x, flags),
                    (x | set) & keep,
                    "{} {flags:?}",
                    A::NAME
                );
            }
        }
    }
    check::<X86_64>();
    check::<pagetable::X86_64La57>();
    check::<pagetable::Ept>();
    check::<AArch64>();
    check::<pagetable::AArch64<pagetable::Va48, pagetable::Upper>>();
    check::<pagetable::AArch64<pagetable::Va48, pagetable::El2>>();
    check::<pagetable::AArch64<pagetable::Va48, pagetable::El3>>();
    check::<pagetable::AArch64S2<pagetable::Ipa40>>();
    check::<pagetable::Sv39>();
    check::<pagetable::Sv48x4>();
    check::<pagetable::LoongArch64>();
}
