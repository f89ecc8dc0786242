//! Non-present entries: inaccessible leaves (`MappingFlags::INACCESSIBLE`, a kernel's
//! PROT_NONE) and markers with a payload. Raw entries are worked out by hand from the manuals'
//! valid bits and the software bits the crate documents (the sum is in each comment); the
//! range calls are checked to treat both as the docs say.

mod common;
use pagetable::gpa;

use common::{Frames, at};
use memory_addr::{pa, va};
use pagetable::arch::marker_bits;
use pagetable::{
    AArch64, Arch, Cleared, Descriptor, Ept, HugePages, L1, L2, Lookup, LoongArch64,
    MappingFlags as F, PageSize, PageTable, PagingError as E, Sv39, VirtAddr, X86_64,
};

const RW: F = F::READ.union(F::WRITE);
const NONE: F = F::INACCESSIBLE;

use common::{l1_entry, small_table as table};

#[test]
fn marker_payload_widths_are_as_documented() {
    assert_eq!(marker_bits::<X86_64>(), 61);
    assert_eq!(marker_bits::<AArch64>(), 61);
    assert_eq!(marker_bits::<Sv39>(), 61);
    assert_eq!(marker_bits::<LoongArch64>(), 60);
    assert_eq!(marker_bits::<Ept>(), 58);
}

#[test]
fn x86_inaccessible_leaf_is_the_leaf_with_p_clear_and_bit_11_set() {
    // The RW leaf 0x8000_0000_1234_5063 (P 1, RW 2, A 0x20, D 0x40, XD); P cleared, bit 11
    // (0x800) set: 0x8000_0000_1234_5862.
    let d = Descriptor::<X86_64, L1>::leaf(pa!(0x1234_5000), RW | NONE).unwrap();
    assert_eq!(d.bits(), 0x8000_0000_1234_5862);
    assert_eq!(d.leaf_info().unwrap().1, RW | NONE);
}

#[test]
fn aarch64_inaccessible_block_is_the_block_with_bit_0_clear_and_bit_56_set() {
    let rw = Descriptor::<AArch64, L2>::leaf(pa!(0x4020_0000), RW)
        .unwrap()
        .bits();
    let none = Descriptor::<AArch64, L2>::leaf(pa!(0x4020_0000), RW | NONE)
        .unwrap()
        .bits();
    assert_eq!(rw & 1, 1);
    assert_eq!(none, (rw & !1) | 1 << 56);
}

#[test]
fn riscv_and_loongarch_inaccessible_pages_clear_v_and_set_their_tag() {
    let rv = Descriptor::<Sv39, L1>::leaf(pa!(0x8000_0000), RW)
        .unwrap()
        .bits();
    let rv_none = Descriptor::<Sv39, L1>::leaf(pa!(0x8000_0000), RW | NONE)
        .unwrap()
        .bits();
    assert_eq!(rv_none, (rv & !1) | 1 << 9);
    let la = Descriptor::<LoongArch64, L1>::leaf(pa!(0x8000_0000), RW)
        .unwrap()
        .bits();
    let la_none = Descriptor::<LoongArch64, L1>::leaf(pa!(0x8000_0000), RW | NONE)
        .unwrap()
        .bits();
    assert_eq!(la_none, (la & !1) | 1 << 10);
}

fn inaccessible_round_trip<A: Arch<Root = pagetable::L4>>() {
    let mut pt = table::<A>();
    pt.map(
        at::<A>(0x20_0000),
        pa!(0x8000_0000),
        PageSize::from_shift(A::PAGE_SHIFT).unwrap(),
        RW,
    )
    .unwrap()
    .ignore();
    let before = l1_entry(&pt, 0x20_0000);
    pt.protect(at::<A>(0x20_0000), RW | NONE).unwrap().ignore();
    let t = pt.query(at::<A>(0x20_0010)).unwrap();
    assert_eq!(
        (t.pa, t.flags),
        (pa!(0x8000_0010), RW | NONE),
        "{}",
        A::NAME
    );
    assert_eq!(pt.lookup(at::<A>(0x20_0010)).unwrap(), Lookup::Mapped(t));
    let none = l1_entry(&pt, 0x20_0000);
    assert_eq!(none & 1, 0, "{}: valid bit still set", A::NAME);
    pt.protect(at::<A>(0x20_0000), RW).unwrap().ignore();
    assert_eq!(
        l1_entry(&pt, 0x20_0000),
        before,
        "{}: not restored",
        A::NAME
    );
}

#[test]
fn protecting_an_inaccessible_leaf_back_restores_its_exact_entry() {
    inaccessible_round_trip::<X86_64>();
    inaccessible_round_trip::<AArch64>();
    inaccessible_round_trip::<LoongArch64>();
}

#[test]
fn an_inaccessible_block_split_by_a_range_gives_inaccessible_pages() {
    let mut pt = table::<X86_64>();
    pt.map(va!(0x4000_0000), pa!(0x4000_0000), PageSize::SIZE_2M, RW)
        .unwrap()
        .ignore();
    pt.protect(va!(0x4000_0000), RW | NONE).unwrap().ignore();
    // mprotect of one page back to read-write splits the block: the rest stays PROT_NONE.
    pt.protect_region(va!(0x4000_1000), 0x1000, RW)
        .unwrap()
        .ignore();
    let flags = |va: usize| pt.query(VirtAddr::from(va)).unwrap().flags;
    assert_eq!(flags(0x4000_0000), RW | NONE);
    assert_eq!(flags(0x4000_1000), RW);
    assert_eq!(flags(0x401f_f000), RW | NONE);
    assert_eq!(pt.query(va!(0x401f_f000)).unwrap().pa, pa!(0x401f_f000));
}

#[test]
fn ept_refuses_inaccessible_leaves() {
    let mut pt = table::<Ept>();
    let got = pt.map(gpa!(0x1000), pa!(0x1000), PageSize::SIZE_4K, RW | NONE);
    assert_eq!(got.unwrap_err(), E::FlagsNotExpressible(RW | NONE));
}

#[test]
fn markers_encode_as_documented() {
    // x86: payload 0x7ff; bits 0, 10, 11 reserved: payload bits 0-8 at 1-9 (0x3fe), 9-10 at
    // 12-13 (0x3000), tag bit 10 (0x400): 0x37fe.
    let mut pt = table::<X86_64>();
    pt.set_marker(va!(0x5000), 0x7ff).unwrap();
    assert_eq!(l1_entry(&pt, 0x5000), 0x37fe);
    // AArch64: payload bit 55 skips bits 56-57 to bit 58, tag bit 57: 0x0600_0000_0000_0000.
    let mut pt = table::<AArch64>();
    pt.set_marker(va!(0x5000), 1 << 55).unwrap();
    assert_eq!(l1_entry(&pt, 0x5000), 0x0600_0000_0000_0000);
    // LoongArch: payload 0x3f; bits 0, 6, 10, 11 reserved: bits 0-4 at 1-5 (0x3e), bit 5 at
    // 7 (0x80), tag bit 11 (0x800): 0x8be.
    let mut pt = table::<LoongArch64>();
    pt.set_marker(va!(0x5000), 0x3f).unwrap();
    assert_eq!(l1_entry(&pt, 0x5000), 0x8be);
    // EPT: every payload bit; bits 0-2, 10, 11 and 63 reserved, tag bit 11:
    // 0x7fff_ffff_ffff_f3f8 | 0x800.
    let mut pt = table::<Ept>();
    pt.set_marker(gpa!(0x5000), (1 << 58) - 1).unwrap();
    assert_eq!(l1_entry(&pt, 0x5000), 0x7fff_ffff_ffff_fbf8);
    assert_eq!(
        pt.lookup(gpa!(0x5000)).unwrap(),
        Lookup::Marker((1 << 58) - 1)
    );
}

#[test]
fn riscv_marker_skips_the_rsw_bits() {
    // Payload 0xff: bits 0-6 at 1-7 (0xfe), bit 7 at 10 (0x400), tag bit 8 (0x100): 0x5fe.
    let mut pt = table::<Sv39>();
    pt.set_marker(va!(0x5000), 0xff).unwrap();
    let e = pt
        .root()
        .next(0)
        .and_then(|t| t.next(0))
        .and_then(|t| t.get(5))
        .unwrap()
        .bits();
    assert_eq!(e, 0x5fe);
}

/// 16 pages at 0x10_0000, the sixth swapped out: a marker in its place.
fn swapped<A: Arch>() -> PageTable<A, Frames> {
    let mut pt = table::<A>();
    pt.map_region(
        at::<A>(0x10_0000),
        pa!(0x8000_0000),
        0x1_0000,
        RW,
        HugePages::Never,
    )
    .unwrap()
    .ignore();
    pt.unmap(at::<A>(0x10_5000)).unwrap().1.ignore();
    pt.set_marker(at::<A>(0x10_5000), 0xabcd).unwrap();
    pt
}

#[test]
fn protect_region_keeps_a_marker_among_settled_leaves() {
    let mut pt = swapped::<X86_64>();
    let before = l1_entry(&pt, 0x10_5000);
    pt.protect_region(va!(0x10_0000), 0x1_0000, F::READ)
        .unwrap()
        .ignore();
    assert_eq!(l1_entry(&pt, 0x10_5000), before);
    assert_eq!(pt.lookup(va!(0x10_5000)).unwrap(), Lookup::Marker(0xabcd));
    assert_eq!(pt.query(va!(0x10_6000)).unwrap().flags, F::READ);
}

#[test]
fn nothing_maps_over_a_marker() {
    let mut pt = swapped::<X86_64>();
    let got = pt.map(va!(0x10_5000), pa!(0x9000_0000), PageSize::SIZE_4K, RW);
    assert_eq!(got.unwrap_err(), E::AlreadyMapped(va!(0x10_5000)));
    let got = pt
        .cursor()
        .map(va!(0x10_5000), pa!(0x9000_0000), PageSize::SIZE_4K, RW);
    assert_eq!(got.unwrap_err(), E::AlreadyMapped(va!(0x10_5000)));
    // A table that holds only a marker is not empty: no block replaces it.
    pt.set_marker(va!(0x60_0000), 7).unwrap();
    let got = pt.map(va!(0x60_0000), pa!(0x4000_0000), PageSize::SIZE_2M, RW);
    assert_eq!(got.unwrap_err(), E::AlreadyMapped(va!(0x60_0000)));
    assert_eq!(pt.lookup(va!(0x60_0000)).unwrap(), Lookup::Marker(7));
}

#[test]
fn unmap_region_with_reports_markers_in_address_order() {
    let mut pt = swapped::<AArch64>();
    let mut gone = vec![];
    pt.unmap_region_with(va!(0x10_4000), 0x3000, |c| gone.push(c))
        .unwrap()
        .ignore();
    assert_eq!(gone.len(), 3);
    assert!(matches!(gone[0], Cleared::Leaf(m) if m.va == va!(0x10_4000)));
    assert_eq!(
        gone[1],
        Cleared::Marker {
            va: va!(0x10_5000),
            payload: 0xabcd
        }
    );
    assert!(matches!(gone[2], Cleared::Leaf(m) if m.va == va!(0x10_6000)));
    assert_eq!(pt.lookup(va!(0x10_5000)).unwrap(), Lookup::Empty);
}

#[test]
fn taking_the_last_marker_frees_its_tables() {
    let mut pt = table::<X86_64>();
    let frames = pt.handler().live_frames();
    pt.set_marker(va!(0x7000_0000), 3).unwrap();
    assert_eq!(pt.table_frames(), 4);
    let (payload, flush) = pt.take_marker(va!(0x7000_0000)).unwrap();
    pt.flush(flush);
    assert_eq!(payload, 3);
    assert_eq!(pt.handler().live_frames(), frames);
}
