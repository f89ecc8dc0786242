//! Software bits on leaves: where each mode keeps them (worked out from the manuals' "ignored"
//! bits, less the ones the crate documents as its own), and that edits keep them.

mod common;

use memory_addr::{pa, va};
use pagetable::arch::soft_bits;
use pagetable::{
    AArch64, Arch, Ept, HugePages, LoongArch64, MappingFlags as F, PageSize, PagingError as E,
    Sv39, X86_64,
};

const RW: F = F::READ.union(F::WRITE);

use common::{at, l1_entry, small_table as table};

/// The bits that setting every software bit changes in the page at 0x1000.
fn all_soft_bits<A: Arch<Root = pagetable::L4>>() -> u64 {
    let mut pt = table::<A>();
    pt.map(at::<A>(0x1000), pa!(0x5000), PageSize::SIZE_4K, RW)
        .unwrap()
        .ignore();
    let before = l1_entry(&pt, 0x1000);
    let all = (1 << soft_bits::<A>()) - 1;
    pt.set_soft_bits(at::<A>(0x1000), all).unwrap();
    assert_eq!(pt.soft_bits(at::<A>(0x1000)).unwrap(), all, "{}", A::NAME);
    l1_entry(&pt, 0x1000) ^ before
}

#[test]
fn software_bits_sit_where_the_hardware_ignores_them() {
    // x86: 9-10 (0x600) and 52-58 (0x07f0_0000_0000_0000); bit 11 is the crate's.
    assert_eq!(all_soft_bits::<X86_64>(), 0x07f0_0000_0000_0600);
    // AArch64: 57-58; 55 (dirty) and 56 (inaccessible) are the crate's.
    assert_eq!(all_soft_bits::<AArch64>(), 0x0600_0000_0000_0000);
    // LoongArch: bit 11; 9 (dirty) and 10 (inaccessible) are the crate's.
    assert_eq!(all_soft_bits::<LoongArch64>(), 0x800);
    // EPT: ignored bit 11 and 52-56.
    assert_eq!(all_soft_bits::<Ept>(), 0x01f0_0000_0000_0800);
    assert_eq!(soft_bits::<Sv39>(), 1);
}

#[test]
fn protect_split_remap_and_state_clearing_keep_software_bits() {
    let mut pt = table::<X86_64>();
    pt.map_region(
        va!(0x4000_0000),
        pa!(0x4000_0000),
        0x20_0000,
        RW,
        HugePages::Allowed,
    )
    .unwrap()
    .ignore();
    pt.set_soft_bits(va!(0x4000_0000), 0b1_0100_0001).unwrap();
    // A protect of one page splits the block: every piece keeps the bits.
    pt.protect_region(va!(0x4000_3000), 0x1000, F::READ)
        .unwrap()
        .ignore();
    for page in [0x4000_0000usize, 0x4000_3000, 0x401f_f000] {
        assert_eq!(
            pt.soft_bits(page.into()).unwrap(),
            0b1_0100_0001,
            "{page:#x}"
        );
    }
    pt.remap(va!(0x4000_3000), pa!(0x9000_0000))
        .unwrap()
        .ignore();
    let both = pagetable::AccessState::BOTH;
    pt.clear_access_state(va!(0x4000_3000), both)
        .unwrap()
        .1
        .ignore();
    pt.protect(va!(0x4000_3000), RW | F::INACCESSIBLE)
        .unwrap()
        .ignore();
    assert_eq!(pt.soft_bits(va!(0x4000_3000)).unwrap(), 0b1_0100_0001);
}

#[test]
fn too_many_software_bits_are_refused_and_change_nothing() {
    let mut pt = table::<AArch64>();
    pt.map(va!(0x1000), pa!(0x5000), PageSize::SIZE_4K, RW)
        .unwrap()
        .ignore();
    let before = l1_entry(&pt, 0x1000);
    assert_eq!(
        pt.set_soft_bits(va!(0x1000), 0b100),
        Err(E::SoftBitsTooWide(0b100))
    );
    assert_eq!(l1_entry(&pt, 0x1000), before);
}
