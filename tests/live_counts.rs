//! The live-entry count of each last-level table, as the crate documents it (`Arch::LIVE_COUNT`:
//! on x86, bits 52-61 of the PDE that links a page table, which the processor ignores, hold the
//! number of non-empty entries plus one, 0 for not counted; a counted PDE has A set so the
//! processor never writes it), read straight from table memory.

mod common;

use common::Frames;
use memory_addr::{pa, va};
use pagetable::{HugePages, MappingFlags as F, PageSize, PageTable, X86_64};

const RW: F = F::READ.union(F::WRITE);
const ADDR: u64 = 0x000f_ffff_ffff_f000;

/// The PDE on the way to `va`, read from memory by the SDM's 4-level walk.
fn pde(pt: &PageTable<X86_64, Frames>, va: u64) -> u64 {
    let mem = pt.handler();
    let mut table = pt.root_paddr().as_usize() as u64;
    for shift in [39, 30] {
        let e = mem.read_phys(table + ((va >> shift) & 511) * 8);
        assert_eq!(e & 0x81, 1, "a present table entry above the PD");
        table = e & ADDR;
    }
    mem.read_phys(table + ((va >> 21) & 511) * 8)
}

/// The count field of a PDE: the live entries plus one, or 0.
fn field(pde: u64) -> u64 {
    (pde >> 52) & 0x3ff
}

#[test]
fn single_page_calls_keep_the_count_in_the_pde() {
    let mut pt = PageTable::<X86_64, _>::new(Frames::new(16, 0x10_0000)).unwrap();
    let base = 0x4000_0000u64;
    for k in 0..3 {
        pt.map(
            va!((base + k * 0x1000) as usize),
            pa!(0x8000_0000 + k as usize * 0x1000),
            PageSize::SIZE_4K,
            RW,
        )
        .unwrap()
        .ignore();
    }
    let e = pde(&pt, base);
    assert_eq!(field(e), 4, "3 live entries: {e:#x}");
    assert_eq!(e & 0x20, 0x20, "A set on a counted PDE: {e:#x}");
    // A cursor's maps count too.
    let mut c = pt.cursor();
    for k in 3..5 {
        c.map(
            va!((base + k * 0x1000) as usize),
            pa!(0x8000_0000 + k as usize * 0x1000),
            PageSize::SIZE_4K,
            RW,
        )
        .unwrap()
        .ignore();
    }
    assert_eq!(field(pde(&pt, base)), 6);
    let frames = pt.handler().live_frames();
    for k in 0..4 {
        pt.unmap(va!((base + k * 0x1000) as usize))
            .unwrap()
            .1
            .ignore();
        assert_eq!(field(pde(&pt, base)), 5 - k);
    }
    assert_eq!(pt.handler().live_frames(), frames);
    // The last one empties the table: unlinked and freed (an offline table frees at once).
    pt.unmap(va!((base + 0x4000) as usize)).unwrap().1.ignore();
    assert!(pt.handler().live_frames() < frames);
    assert_eq!(
        pt.query(va!(base as usize)).unwrap_err(),
        pagetable::PagingError::NotMapped(va!(base as usize))
    );
}

#[test]
fn a_region_map_counts_its_pages_and_a_region_unmap_drops_the_count() {
    let mut pt = PageTable::<X86_64, _>::new(Frames::new(16, 0x10_0000)).unwrap();
    let base = 0x4000_0000u64;
    pt.map_region(
        va!(base as usize),
        pa!(0x8000_0000),
        0x7000,
        RW,
        HugePages::Never,
    )
    .unwrap()
    .ignore();
    assert_eq!(field(pde(&pt, base)), 8);
    pt.map_region(
        va!((base + 0x10000) as usize),
        pa!(0x9000_0000),
        0x2000,
        RW,
        HugePages::Never,
    )
    .unwrap()
    .ignore();
    assert_eq!(field(pde(&pt, base)), 10);
    pt.unmap_region(va!(base as usize), 0x1000)
        .unwrap()
        .ignore();
    assert_eq!(
        field(pde(&pt, base)),
        0,
        "not counted after a range walk changed it"
    );
    // The next single-page unmap counts it again: 8 left, 7 after.
    pt.unmap(va!((base + 0x1000) as usize)).unwrap().1.ignore();
    assert_eq!(field(pde(&pt, base)), 8);
}

/// A tree adopted from elsewhere may hold anything in those ignored bits: a PDE claiming one
/// live entry in a page table that holds two must not make the first unmap free the table.
#[test]
fn adopted_counts_are_not_trusted() {
    let mut boot = PageTable::<X86_64, _>::new(Frames::new(16, 0x10_0000)).unwrap();
    let base = 0x4000_0000u64;
    boot.map_region(
        va!(base as usize),
        pa!(0x8000_0000),
        0x2000,
        RW,
        HugePages::Never,
    )
    .unwrap()
    .ignore();
    let at = {
        let mem = boot.handler();
        let mut table = boot.root_paddr().as_usize() as u64;
        for shift in [39, 30] {
            table = mem.read_phys(table + ((base >> shift) & 511) * 8) & ADDR;
        }
        table + ((base >> 21) & 511) * 8
    };
    let (root, frames, _) = boot.into_raw();
    // "The bootloader" kept its own number there: count 1.
    let e = frames.read_phys(at);
    frames.write_phys(at, (e & !(0x3ff << 52)) | (2 << 52));
    // SAFETY: the tree is whole, built through these frames, and nothing else edits it.
    let mut pt = unsafe { PageTable::<X86_64, _>::from_root(root, frames) }.unwrap();
    assert_eq!(field(pde(&pt, base)), 0, "adoption drops every count");
    pt.unmap(va!(base as usize)).unwrap().1.ignore();
    assert_eq!(
        pt.query(va!((base + 0x1000) as usize)).unwrap().pa,
        pa!(0x8000_1000)
    );
    assert_eq!(field(pde(&pt, base)), 2, "counted by a scan: 1 left");
}
