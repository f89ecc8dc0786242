//! Accessed and dirty bits that "hardware" sets behind the library's back survive: they are
//! reported by `query`, kept by `protect_region` (whose fast path must notice leaves the MMU
//! may still mark), and read and cleared by `clear_access_state`. The test marks entries in
//! table memory the way each MMU does, per its manual (`common::hw`), and finds the entries
//! with the independent raw walker.

mod common;

use common::Frames;
use common::hw::Hardware;
use common::raw;
use memory_addr::PhysAddr;
use pagetable::{
    AArch64, AArch64S2, AccessState, Arch, Ept, Granule16K, Granule64K, HugePages, Ipa40,
    LoongArch64, Lower, MappingFlags as F, PageTable, Sv39, Sv39x4, Va48, X86_64,
};

const RW: F = F::READ.union(F::WRITE);
const BASE: usize = 0x1000_0000;

fn state(accessed: bool, dirty: bool) -> AccessState {
    AccessState { accessed, dirty }
}

fn marks_survive<A: Arch + Hardware>() {
    let page = 1usize << A::PAGE_SHIFT;
    let v = |i: usize| A::Addr::from(BASE + i * page);
    let frames = 16 << (A::PAGE_SHIFT - 12);
    let mut pt = PageTable::<A, _>::new(Frames::new(frames, 0x10_0000_0000)).unwrap();
    // Pages 0..8 writable, 8..16 read-only.
    pt.map_region(
        v(0),
        PhysAddr::from(0x8000_0000),
        8 * page,
        RW,
        HugePages::Never,
    )
    .unwrap()
    .ignore();
    pt.map_region(
        v(8),
        PhysAddr::from(0x9000_0000),
        8 * page,
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
            .position(|l| l.0 == (BASE + i * page) as u64)
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
    pt.protect_region(v(0), 16 * page, F::READ)
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

#[test]
fn hardware_marks_survive_in_the_granules_and_stage_2() {
    // AF and DBM at 16K and 64K pages; stage 2 AF and DBM setting S2AP[1] (FEAT_HAFDBS with
    // VTCR_EL2.HA/HD); EPT A and D (bits 8 and 9, EPTP bit 6); G-stage A and D (Svadu).
    marks_survive::<AArch64<Va48, Lower, Granule16K>>();
    marks_survive::<AArch64<Va48, Lower, Granule64K>>();
    marks_survive::<AArch64S2<Ipa40>>();
    marks_survive::<Ept>();
    marks_survive::<Sv39x4>();
}
