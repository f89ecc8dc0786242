//! Both AArch64 halves through one `AArch64Pair`: each call lands in the table of its address's
//! half and nowhere else, addresses in neither half are refused with the tables untouched, and
//! the flush goes back through the half that made the change.

mod common;

use common::Frames;
use memory_addr::{pa, va};
use pagetable::arch::aarch64_regs::CpuFeatures;
use pagetable::{
    AArch64, AArch64Pair, HugePages, Lookup, Lower, MappingFlags as F, PageSize, PageTable,
    PagingError, PairFlush, Upper, Va39, Va48,
};

const RW: F = F::READ.union(F::WRITE);
const KERNEL: usize = 0xffff_0000_0000_0000;

type Process = PageTable<AArch64<Va48, Lower>, Frames>;
type Kernel = PageTable<AArch64<Va48, Upper>, Frames>;

fn tables() -> (Process, Kernel) {
    (
        PageTable::new(Frames::new(32, 0x10_0000_0000)).unwrap(),
        PageTable::new(Frames::new(32, 0x20_0000_0000)).unwrap(),
    )
}

#[test]
fn each_call_goes_to_the_half_of_its_address() {
    let (mut process, mut kernel) = tables();
    let mut space = AArch64Pair::new(&mut process, &mut kernel);
    let f = space
        .map(va!(KERNEL), pa!(0x4000_0000), PageSize::SIZE_4K, RW)
        .unwrap();
    assert!(matches!(f, PairFlush::Upper(_)));
    space.flush(f);
    let f = space
        .map_region(
            va!(0x20_0000),
            pa!(0x5000_0000),
            0x3000,
            RW,
            HugePages::Never,
        )
        .unwrap();
    assert!(matches!(f, PairFlush::Lower(_)));
    space.flush(f);
    assert_eq!(space.query(va!(KERNEL)).unwrap().pa, pa!(0x4000_0000));
    assert_eq!(space.query(va!(0x20_1000)).unwrap().pa, pa!(0x5000_1000));
    space.protect(va!(KERNEL), F::READ).unwrap().ignore();
    space
        .protect_region(va!(0x20_0000), 0x2000, F::READ)
        .unwrap()
        .ignore();
    space
        .remap(va!(0x20_2000), pa!(0x6000_0000))
        .unwrap()
        .ignore();
    assert!(matches!(space.lookup(va!(KERNEL)), Ok(Lookup::Mapped(_))));

    // The kernel's page is in the TTBR1 table only, the process's in the TTBR0 table only.
    assert_eq!(kernel.query(va!(KERNEL)).unwrap().flags, F::READ);
    assert_eq!(
        process.query(va!(KERNEL)),
        Err(PagingError::NotCanonical(va!(KERNEL)))
    );
    assert_eq!(process.query(va!(0x20_0000)).unwrap().flags, F::READ);
    assert_eq!(process.query(va!(0x20_2000)).unwrap().pa, pa!(0x6000_0000));
    assert!(kernel.query(va!(0x20_0000)).is_err());

    let mut space = AArch64Pair::new(&mut process, &mut kernel);
    let (gone, f) = space.unmap(va!(KERNEL)).unwrap();
    assert_eq!(gone.pa, pa!(0x4000_0000));
    assert!(matches!(f, PairFlush::Upper(_)));
    space.flush(f);
    let f = space.unmap_region(va!(0x20_0000), 0x3000).unwrap();
    assert!(matches!(f, PairFlush::Lower(_)));
    space.flush(f);
    // Every table below the roots went back to its own handler.
    assert_eq!(process.handler().live_frames(), 1);
    assert_eq!(kernel.handler().live_frames(), 1);
}

#[test]
fn an_address_in_neither_half_is_refused_and_changes_nothing() {
    let (mut process, mut kernel) = tables();
    let before = (process.handler().snapshot(), kernel.handler().snapshot());
    let mut space = AArch64Pair::new(&mut process, &mut kernel);
    // Above the 48-bit TTBR0 range, and below the TTBR1 range.
    for hole in [
        0x0001_0000_0000_0000_usize,
        0x8000_0000_0000_0000,
        0xfffe_f000_0000_0000,
    ] {
        assert_eq!(
            space
                .map(va!(hole), pa!(0x4000_0000), PageSize::SIZE_4K, RW)
                .map(PairFlush::ignore),
            Err(PagingError::NotCanonical(va!(hole)))
        );
        assert_eq!(
            space.query(va!(hole)),
            Err(PagingError::NotCanonical(va!(hole)))
        );
    }
    // A region that starts in the lower half and runs past its top: the first address outside
    // is named.
    assert_eq!(
        space
            .map_region(
                va!(0xffff_ffff_f000),
                pa!(0x4000_0000),
                0x2000,
                RW,
                HugePages::Never
            )
            .map(PairFlush::ignore),
        Err(PagingError::NotCanonical(va!(0x0001_0000_0000_0000)))
    );
    assert_eq!(
        (process.handler().snapshot(), kernel.handler().snapshot()),
        before
    );
}

#[test]
fn tcr_el1_of_both_halves() {
    let (mut process, mut kernel) = tables();
    let space = AArch64Pair::new(&mut process, &mut kernel);
    // T0SZ 16 (0x10) | walks 0x3500 | TG0 4K (0); T1SZ 16 << 16 | 0x3500 << 16 | TG1 4K
    // (2 << 30); IPS 48 bits (5 << 32); no EPD bit.
    assert_eq!(space.tcr_el1(CpuFeatures::BASE), 0x5_b510_3510);
    // 39-bit halves: T0SZ = T1SZ = 25 (0x19).
    let mut lower = PageTable::<AArch64<Va39, Lower>, _>::new(Frames::new(4, 0x1000_0000)).unwrap();
    let mut upper = PageTable::<AArch64<Va39, Upper>, _>::new(Frames::new(4, 0x2000_0000)).unwrap();
    let space = AArch64Pair::new(&mut lower, &mut upper);
    assert_eq!(space.tcr_el1(CpuFeatures::BASE), 0x5_b519_3519);
}
