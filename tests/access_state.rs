//! Accessed and dirty bits that "hardware" sets behind the library's back survive: they are
//! reported by `query`, kept by `protect_region` (whose fast path must notice leaves the MMU
//! may still mark), and read and cleared by `clear_access_state`. The test marks entries in
//! table memory the way each MMU does, per its manual (`common::hw`), and finds the entries
//! with the independent raw walker.

mod common;

use common::Frames;
use common::hw::Hardware;
use common::raw;
use memory_addr::{PhysAddr, VirtAddr};
use pagetable::{
    AArch64, AccessState, Arch, HugePages, LoongArch64, MappingFlags as F, PageTable, Sv39, X86_64,
};

const RW: F = F::READ.union(F::WRITE);
const PAGE: usize = 0x1000;
const BASE: usize = 0x1000_0000;

fn state(accessed: bool, dirty: bool) -> AccessState {
    AccessState { accessed, dirty }
}

fn marks_survive<A: Arch + Hardware>() {
    let v = |i: usize| VirtAddr::from(BASE + i * PAGE);
    let mut pt = PageTable::<A, _>::new(Frames::new(16, 0x10_0000_0000)).unwrap();
    // Pages 0..8 writable, 8..16 read-only.
    pt.map_region(
        v(0),
        PhysAddr::from(0x8000_0000),
        8 * PAGE,
        RW,
        HugePages::Never,
    )
    .unwrap()
    .ignore();
    pt.map_region(
        v(8),
        PhysAddr::from(0x9000_0000),
        8 * PAGE,
        F::READ,
        HugePages::Never,
    )
    .unwrap()
    .ignore();
    // Every page starts clean and, where the arch can tell, unaccessed.
    for i in 0..16 {
        pt.clear_access_state(v(i), AccessState::BOTH)
            .unwrap()
            .1
            .ignore();
        assert_eq!(
            pt.query(v(i)).unwrap().state,
            state(!A::HAS_ACCESSED, false)
        );
    }
    // The MMU reads pages 0..4 and 8..12 and writes pages 0 and 1.
    let tree = raw::walk::<A>(pt.handler(), pt.root_paddr().as_usize() as u64).unwrap();
    let entry = |i: usize| {
        let k = tree
            .leaves
            .iter()
            .position(|l| l.0 == (BASE + i * PAGE) as u64)
            .unwrap();
        tree.entries[k]
    };
    let mark = |i: usize, f: fn(u64) -> u64| {
        let at = entry(i);
        pt.handler().write_phys(at, f(pt.handler().read_phys(at)));
    };
    for i in (0..4).chain(8..12) {
        mark(i, A::mark_read);
    }
    mark(0, A::mark_write);
    mark(1, A::mark_write);
    let expected = |i: usize| {
        let read = (0..4).contains(&i) || (8..12).contains(&i);
        state(read || !A::HAS_ACCESSED, i < 2)
    };
    for i in 0..16 {
        assert_eq!(
            pt.query(v(i)).unwrap().state,
            expected(i),
            "{} page {i}",
            A::NAME
        );
    }
    // Protecting everything read-only keeps every mark, the dirty ones included.
    pt.protect_region(v(0), 16 * PAGE, F::READ)
        .unwrap()
        .ignore();
    for i in 0..16 {
        let t = pt.query(v(i)).unwrap();
        assert_eq!(
            (t.flags, t.state),
            (F::READ, expected(i)),
            "{} page {i}",
            A::NAME
        );
    }
    // Read and cleared through the API: dirty of page 0 only.
    let (before, flush) = pt.clear_access_state(v(0), state(false, true)).unwrap();
    flush.ignore();
    assert_eq!(before, expected(0));
    assert_eq!(pt.query(v(0)).unwrap().state, state(true, false));
    assert_eq!(pt.query(v(1)).unwrap().state, expected(1));
}

#[test]
fn hardware_marks_survive_in_every_arch() {
    marks_survive::<X86_64>();
    marks_survive::<Sv39>();
    marks_survive::<AArch64>();
    marks_survive::<LoongArch64>();
}
