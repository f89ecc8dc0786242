//! Known encodings of the AArch64 16K and 64K granules and of the stage 2 modes (AArch64 stage
//! 2, RISC-V G-stage, x86 EPT): entries whose raw `u64` was worked out by hand from the
//! manual's bit table (the sum is in each comment), decodings of raw entries, table shapes, and
//! the flags each mode refuses.

mod common;

use common::Frames;
use memory_addr::{pa, va};
use pagetable::gpa;
use pagetable::levels::AtMost;
use pagetable::{
    AArch64, AArch64S2, AccessState, Arch, Descriptor, EntryKind, Ept, Granule16K, Granule64K,
    Ipa40, Ipa48, L1, L2, L3, L4, Level, Lower, MappingFlags as F, MemType, PageSize, PageTable,
    PagingError, PhysAddr, Sv39x4, Sv48x4, TableFrame, Va36, Va42, Va47, Va48,
};

const R: F = F::READ;
const W: F = F::WRITE;
const X: F = F::EXECUTE;
const U: F = F::USER;
const G: F = F::GLOBAL;

type A16 = AArch64<Va48, Lower, Granule16K>;
type A64 = AArch64<Va48, Lower, Granule64K>;
type S2 = AArch64S2<Ipa40>;

fn leaf<A: Arch, L: AtMost<A::MaxLeaf>>(pa: usize, flags: F) -> u64 {
    Descriptor::<A, L>::leaf(PhysAddr::from(pa), flags)
        .unwrap()
        .bits()
}

fn refused<A: Arch>(flags: F) -> bool {
    Descriptor::<A, L1>::leaf(pa!(0), flags) == Err(PagingError::FlagsNotExpressible(flags))
}

fn decode<A: Arch, L: Level>(bits: u64) -> (usize, F, AccessState) {
    let (pa, flags, state) = Descriptor::<A, L>::from_bits(bits)
        .leaf_info()
        .expect("a leaf");
    (pa.as_usize(), flags, state)
}

// ---- Table shapes, Arm ARM D8.2 and the H extension: entries and bytes per level.

#[test]
fn granule_and_stage2_table_shapes() {
    // 16K, 48-bit: level 0 resolves VA[47] only (2 entries), then 2048-entry tables.
    assert_eq!(TableFrame::<A16, L4>::ENTRIES, 2);
    assert_eq!(TableFrame::<A16, L4>::BYTES, 16 << 10);
    assert_eq!(TableFrame::<A16, L3>::ENTRIES, 2048);
    assert_eq!(
        TableFrame::<AArch64<Va47, Lower, Granule16K>, L3>::ENTRIES,
        2048
    );
    assert_eq!(
        TableFrame::<AArch64<Va36, Lower, Granule16K>, L2>::ENTRIES,
        2048
    );
    // 64K, 48-bit: level 1 resolves VA[47:42] (64 entries, one 64K granule), then 8192.
    assert_eq!(TableFrame::<A64, L3>::ENTRIES, 64);
    assert_eq!(TableFrame::<A64, L3>::BYTES, 64 << 10);
    assert_eq!(TableFrame::<A64, L2>::ENTRIES, 8192);
    assert_eq!(
        TableFrame::<AArch64<Va42, Lower, Granule64K>, L2>::ENTRIES,
        8192
    );
    // Stage 2, 40-bit IPA from level 1: two concatenated tables, 8 KiB aligned to 8 KiB.
    assert_eq!(TableFrame::<S2, L3>::ENTRIES, 1024);
    assert_eq!(TableFrame::<S2, L3>::BYTES, 8 << 10);
    assert_eq!(TableFrame::<AArch64S2<Ipa48>, L4>::ENTRIES, 512);
    // G-stage x4: a 16 KiB root of 2048 entries.
    assert_eq!(TableFrame::<Sv39x4, L3>::ENTRIES, 2048);
    assert_eq!(TableFrame::<Sv39x4, L3>::BYTES, 16 << 10);
    assert_eq!(TableFrame::<Sv48x4, L4>::ENTRIES, 2048);
    assert_eq!(TableFrame::<Sv48x4, L3>::ENTRIES, 512);
    assert_eq!(TableFrame::<Ept, L4>::ENTRIES, 512);
    // A root must be aligned to its size: 16 KiB for the x4 roots.
    assert!(TableFrame::<Sv39x4, L3>::new(pa!(0x8000_2000)).is_none());
    assert!(TableFrame::<Sv39x4, L3>::new(pa!(0x8000_4000)).is_some());
}

#[test]
fn new_roots_are_allocated_at_their_size() {
    let pt = PageTable::<Sv48x4, _>::new(Frames::new(16, 0x8000_1000)).unwrap();
    assert_eq!(pt.root_paddr().as_usize() % (16 << 10), 0);
    assert_eq!(pt.handler().live_frames(), 4);
    let pt = PageTable::<S2, _>::new(Frames::new(16, 0x8000_1000)).unwrap();
    assert_eq!(pt.root_paddr().as_usize() % (8 << 10), 0);
    assert_eq!(pt.handler().live_frames(), 2);
    let pt = PageTable::<A64, _>::new(Frames::new(64, 0x8000_0000)).unwrap();
    assert_eq!(pt.handler().live_frames(), 16);
}

// ---- AArch64 16K and 64K granules, D8.3: valid 0, table/page 1, AttrIndx 2-4, AP[1] 6,
// ---- AP[2] 7, SH 8-9, AF 10, nG 11, OA 12-47 (low bits zero below the granule), DBM 51,
// ---- PXN 53, UXN 54.

#[test]
fn aarch64_16k_page_kernel_read_write() {
    // 1 + 2 + SH 0x300 + AF 0x400 + nG 0x800 = 0xf03; DBM, PXN, UXN = 0x0068 << 48.
    assert_eq!(leaf::<A16, L1>(0x1234_4000, R | W), 0x0068_0000_1234_4f03);
}

#[test]
fn aarch64_16k_32m_block_global_device_read_only() {
    // 1 + AttrIndx 1 (4) + AP[2] 0x80 + SH outer 0x200 + AF 0x400 = 0x685; PXN, UXN.
    assert_eq!(
        leaf::<A16, L2>(0x4200_0000, R.with_mem_type(MemType::Device) | G),
        0x0060_0000_4200_0685
    );
    assert_eq!(
        Descriptor::<A16, L2>::leaf(pa!(0x4000_4000), R),
        Err(PagingError::UnalignedPa(pa!(0x4000_4000)))
    );
}

#[test]
fn aarch64_64k_page_user_executable() {
    // 3 + AP[1] 0x40 + AP[2] 0x80 + SH 0x300 + AF 0x400 + nG 0x800 = 0xfc3; PXN only.
    assert_eq!(
        leaf::<A64, L1>(0x3_0001_0000, R | X | U),
        0x0020_0003_0001_0fc3
    );
}

#[test]
fn aarch64_64k_512m_block_and_table() {
    // 1 + SH 0x300 + AF 0x400 = 0x701, global; DBM, PXN, UXN.
    assert_eq!(
        leaf::<A64, L2>(0x6000_0000, R | W | G),
        0x0068_0000_6000_0701
    );
    let l1 = TableFrame::<A64, L1>::new(pa!(0x5_0000)).unwrap();
    assert_eq!(Descriptor::<A64, L2>::table(l1).bits(), 0x5_0003);
    assert!(TableFrame::<A64, L1>::new(pa!(0x5_4000)).is_none());
}

#[test]
fn aarch64_large_granules_have_no_level1_blocks() {
    // A block descriptor at level 1 needs a 52-bit OA with 16K and 64K: a translation fault.
    let block = 0x40_0000_0000u64 | 0x701;
    assert_eq!(
        Descriptor::<A16, L3>::from_bits(block).kind(),
        EntryKind::Empty
    );
    assert_eq!(
        Descriptor::<A64, L3>::from_bits(block).kind(),
        EntryKind::Empty
    );
    assert_eq!(
        Descriptor::<A64, L2>::from_bits(0x6000_0701).kind(),
        EntryKind::Leaf
    );
}

#[test]
fn aarch64_64k_map_region_uses_512m_blocks() {
    let mut pt = PageTable::<A64, _>::new(Frames::new(256, 0x8000_0000)).unwrap();
    pt.map_region(
        va!(0x2000_0000),
        pa!(0x4000_0000),
        3 << 29,
        R | W,
        pagetable::HugePages::Allowed,
    )
    .unwrap()
    .ignore();
    let t = pt.query(va!(0x4123_4567)).unwrap();
    assert_eq!(t.size, PageSize::SIZE_512M);
    assert_eq!(t.pa, pa!(0x6123_4567));
    // A 64K page at a 64K boundary, not a 4K one.
    assert_eq!(
        pt.map(va!(0x1_0000_1000), pa!(0x1000), PageSize::SIZE_64K, R)
            .err(),
        Some(PagingError::UnalignedVa(va!(0x1_0000_1000)))
    );
    assert_eq!(
        pt.map(va!(0x1_0000_0000), pa!(0x1000), PageSize::SIZE_4K, R)
            .err(),
        Some(PagingError::SizeNotSupported(PageSize::SIZE_4K))
    );
}

// ---- AArch64 stage 2, D8.3: MemAttr 2-5 (FWB = 0: 0b1111 WB, 0b0101 NC, 0b0001
// ---- Device-nGnRE), S2AP 6-7 (bit 6 read, bit 7 write), SH 8-9, AF 10, DBM 51, XN[1] 54.

#[test]
fn aarch64_s2_page_read_write() {
    // 1 + 2 + MemAttr 0x3c + S2AP 0xc0 + SH 0x300 + AF 0x400 = 0x7ff; DBM, XN = 0x0048 << 48.
    assert_eq!(leaf::<S2, L1>(0x8000_1000, R | W), 0x0048_0000_8000_17ff);
}

#[test]
fn aarch64_s2_block_device() {
    // 1 + MemAttr 0b0001 (4) + S2AP 0xc0 + SH outer 0x200 + AF 0x400 = 0x6c5; DBM, XN.
    assert_eq!(
        leaf::<S2, L2>(0x0900_0000, (R | W).with_mem_type(MemType::Device)),
        0x0048_0000_0900_06c5
    );
}

#[test]
fn aarch64_s2_execute_only_and_write_only() {
    // Execute-only 1G block: 1 + MemAttr 0x3c + SH 0x300 + AF 0x400 = 0x73d, no XN.
    assert_eq!(leaf::<S2, L3>(0x4000_0000, X), 0x4000_073d);
    // Write-only uncached page: 3 + MemAttr 0b0101 (0x14) + S2AP[1] 0x80 + SH 0x200 + AF 0x400
    // = 0x697; DBM, XN.
    assert_eq!(
        leaf::<S2, L1>(0x1000, W | F::UNCACHED),
        0x0048_0000_0000_1697
    );
    assert_eq!(decode::<S2, L3>(0x4000_073d).1, X);
}

#[test]
fn aarch64_s2_refuses_stage1_flags_and_decodes_clean_writable() {
    assert!(refused::<S2>(R | U));
    assert!(refused::<S2>(R | G));
    assert!(refused::<S2>(R | F::IGNORE_PAT));
    assert!(refused::<S2>(F::EMPTY));
    // DBM set and S2AP[1] clear: writable, clean (the MMU sets S2AP[1] on the first store).
    let clean = 0x0048_0000_8000_17ff & !0x80;
    assert_eq!(
        decode::<S2, L1>(clean),
        (
            0x8000_1000,
            R | W,
            AccessState {
                accessed: true,
                dirty: false
            }
        )
    );
}

// ---- RISC-V G-stage: the Sv39/Sv48 entry (V 0, R 1, W 2, X 3, U 4, G 5, A 6, D 7, PPN from
// ---- bit 10) with U set in every leaf.

#[test]
fn g_stage_leaf_has_u() {
    // V 1 + R 2 + W 4 + U 0x10 + A 0x40 + D 0x80 = 0xd7; PPN 0x80002 << 10 = 0x2000_0800.
    assert_eq!(leaf::<Sv39x4, L1>(0x8000_2000, R | W), 0x2000_08d7);
    // U reads back as nothing: every G-stage leaf has it.
    assert_eq!(decode::<Sv39x4, L1>(0x2000_08d7).1, R | W);
    assert!(refused::<Sv39x4>(R | U));
    assert!(refused::<Sv48x4>(R | G));
    assert!(refused::<Sv48x4>(W));
}

#[test]
fn g_stage_addresses_are_41_and_50_bits_zero_extended() {
    let mut pt = PageTable::<Sv39x4, _>::new(Frames::new(16, 0x8000_0000)).unwrap();
    let top = gpa!((1 << 41) - 0x1000);
    pt.map(top, pa!(0x1000), PageSize::SIZE_4K, R)
        .unwrap()
        .ignore();
    assert_eq!(pt.query(top).unwrap().pa, pa!(0x1000));
    assert_eq!(
        pt.map(gpa!(1 << 41), pa!(0x1000), PageSize::SIZE_4K, R)
            .err(),
        Some(PagingError::NotCanonical(va!(1 << 41)))
    );
    // The root index is 11 bits: the top page is entry 2047 of the root.
    assert_ne!(pt.root().get(2047).unwrap().bits(), 0);
    let pt = PageTable::<Sv48x4, _>::new(Frames::new(16, 0x8000_0000)).unwrap();
    assert!(
        pt.query(gpa!((1 << 50) - 1))
            .is_err_and(|e| e == PagingError::NotMapped(va!((1 << 50) - 1)))
    );
}

// ---- x86 EPT, SDM 3C tables 29-1..29-6: R 0, W 1, X 2, memory type 3-5 (UC 0, WC 1, WT 4,
// ---- WP 5, WB 6), ignore PAT 6, large page 7, A 8, D 9, address 12-51.

#[test]
fn ept_4k_read_write_write_back() {
    // R 1 + W 2 + WB 6 << 3 (0x30) + A 0x100 + D 0x200 = 0x333.
    assert_eq!(leaf::<Ept, L1>(0x1234_5000, R | W), 0x1234_5333);
}

#[test]
fn ept_2m_device_ignore_pat_and_1g_execute_only_wc() {
    // R 1 + X 4 + UC 0 + IPAT 0x40 + PS 0x80 + A 0x100 = 0x1c5.
    assert_eq!(
        leaf::<Ept, L2>(
            0x4020_0000,
            (R | X | F::IGNORE_PAT).with_mem_type(MemType::Device)
        ),
        0x4020_01c5
    );
    // X 4 + WC 1 << 3 (8) + PS 0x80 + A 0x100 = 0x18c.
    assert_eq!(leaf::<Ept, L3>(0x8000_0000, X | F::UNCACHED), 0x8000_018c);
    assert_eq!(decode::<Ept, L3>(0x8000_018c).1, X | F::UNCACHED);
}

#[test]
fn ept_table_entry_and_decoding() {
    let l1 = TableFrame::<Ept, L1>::new(pa!(0x5000)).unwrap();
    assert_eq!(Descriptor::<Ept, L2>::table(l1).bits(), 0x5007);
    // Bit 7 in a PML4E is reserved: not a translation. Accessed set by the CPU in a table entry
    // leaves it a table.
    assert_eq!(
        Descriptor::<Ept, L4>::from_bits(0x5087).kind(),
        EntryKind::Empty
    );
    assert_eq!(
        Descriptor::<Ept, L3>::from_bits(0x5107).kind(),
        EntryKind::Table
    );
    // WT (4) reads as normal (cached); not present when R, W, X are all clear.
    assert_eq!(decode::<Ept, L1>(0x7121).1, R);
    assert_eq!(
        Descriptor::<Ept, L1>::from_bits(0x7330).kind(),
        EntryKind::Empty
    );
}

#[test]
fn ept_refuses_write_only_user_and_global() {
    assert!(refused::<Ept>(W));
    assert!(refused::<Ept>(R | U));
    assert!(refused::<Ept>(R | G));
    assert!(!refused::<Ept>(X));
    // IGNORE_PAT is EPT's alone.
    assert!(refused::<pagetable::X86_64>(R | F::IGNORE_PAT));
    assert!(refused::<A16>(R | F::IGNORE_PAT));
}
