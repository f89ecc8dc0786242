//! Out-of-frames injection, in every mode: a handler that fails from the N-th allocation on,
//! for every N until the call succeeds, over `map_region` (tables at every level, huge leaves
//! and 4K edges), `unmap_region`, `unmap_region_with` and `protect_region` that split huge
//! leaves at both ends, `map_region` of exactly one leaf (the single-leaf walk), and
//! `borrow_shared`. Every failure must return `OutOfFrames`, leave every table byte as it was, and
//! leak no frame; the call that finally succeeds must do the whole change. The sizes are the
//! mode's own: its page, the leaf one level up, and the one above that (a run of blocks where
//! the mode has no leaf there: the 16K and 64K granules).

mod common;

use common::{Frames, fails_cleanly_at_every_allocation, set_fail_from};
use memory_addr::PhysAddr;
use pagetable::arch::{level_shift, max_leaf_depth, root_depth};
use pagetable::{
    AArch64, AArch64S2, Arch, Ept, Granule16K, Granule64K, HugePages, Ipa40, Ipa48, LoongArch64,
    Lower, MappingFlags as F, PageSize, PageTable, Sv39, Sv39x4, Sv48, Sv48x4, Sv57, Upper, Va36,
    Va39, Va42, Va47, Va48, X86_64, X86_64La57,
};

const RW: F = F::READ.union(F::WRITE);

/// The largest size the scenario uses: the level-3 leaf, or 8 blocks where there is none.
fn big<A: Arch>() -> usize {
    if max_leaf_depth::<A>() >= 3 {
        1 << level_shift::<A>(3)
    } else {
        8 << level_shift::<A>(2)
    }
}

/// The scenario in the lower part of a mode's address space.
fn low<A: Arch>() -> usize {
    scenario::<A>(4 * big::<A>())
}

/// The scenario in the upper (TTBR1) range of an AArch64 mode.
fn high<A: Arch>() -> usize {
    scenario::<A>((!0usize << A::VA_BITS) + 4 * big::<A>())
}

/// Runs the scenario in mode `A` from `base` (aligned to the largest size, 4 of them of room
/// after it; `4 * big::<A>()` in the lower half); returns the injection points tried.
fn scenario<A: Arch>(base: usize) -> usize {
    // K4, M2, G1 of the 4K granule: the page, the block, and a leaf or a run of blocks above.
    let size = |depth| 1usize << level_shift::<A>(depth);
    let (k4, m2, g1) = (size(1), size(2), big::<A>());
    let top = PageSize::from_shift(level_shift::<A>(max_leaf_depth::<A>().min(3))).unwrap();
    let v = |off: usize| A::Addr::from(base.wrapping_add(off));
    // Physical addresses with the virtual ones' alignment modulo the largest size, so huge
    // leaves fit.
    let p = |off: usize| PhysAddr::from(0x80_0000_0000 + off);
    let pool = 64 << (A::PAGE_SHIFT - 12);
    let mut pt = PageTable::<A, _>::new(Frames::new(pool, 0x1_0000_0000)).unwrap();
    let mut tried = 0;

    // Some 4K pages first, so the big map shares their tables and needs new ones beside.
    pt.map_region(v(0), p(0), m2 + 2 * k4, RW, HugePages::Never)
        .unwrap()
        .ignore();
    // 4K up to 4M, 2M leaves up to 1G, one 1G leaf, 2M leaves, then 4K at the end.
    let len = 2 * g1 + 2 * m2 - k4;
    tried += fails_cleanly_at_every_allocation(&mut pt, |pt| {
        pt.map_region(v(m2 + 2 * k4), p(m2 + 2 * k4), len, RW, HugePages::Allowed)
    }) + 1;
    let size = |off| pt.query(v(off)).unwrap().size;
    let page = PageSize::from_shift(level_shift::<A>(1)).unwrap();
    let block = PageSize::from_shift(level_shift::<A>(2)).unwrap();
    assert_eq!(size(m2 + 2 * k4), page);
    assert_eq!(size(4 * m2), block);
    assert_eq!(size(g1 + 5 * k4), top);
    assert_eq!(size(2 * g1 + m2), block);
    assert_eq!(size(2 * g1 + 3 * m2), page);

    // Regions of exactly one leaf take the single-leaf walk: a block whose table is new, then
    // a page whose table is new below it.
    tried += fails_cleanly_at_every_allocation(&mut pt, |pt| {
        pt.map_region(v(3 * g1), p(3 * g1), m2, RW, HugePages::Allowed)
    }) + 1;
    tried += fails_cleanly_at_every_allocation(&mut pt, |pt| {
        pt.map_region(v(3 * g1 + m2), p(3 * g1 + m2), k4, RW, HugePages::Allowed)
    }) + 1;
    assert_eq!(pt.query(v(3 * g1 + k4)).unwrap().size, block);
    assert_eq!(pt.query(v(3 * g1 + m2)).unwrap().size, page);
    assert!(pt.query(v(3 * g1 + m2 + k4)).is_err());

    // Cut a 2M leaf at the start and the 1G leaf at the end (1G -> 2M -> 4K: two tables; one
    // where the "1G leaf" is a run of blocks).
    tried +=
        fails_cleanly_at_every_allocation(&mut pt, |pt| pt.unmap_region(v(g1 - m2 + k4), 2 * m2))
            + 1;
    assert!(pt.query(v(g1 - m2 + k4)).is_err());
    assert!(pt.query(v(g1 + m2)).is_err());
    assert_eq!(pt.query(v(g1 - m2)).unwrap().size, page);
    assert_eq!(pt.query(v(g1 + m2 + k4)).unwrap().pa, p(g1 + m2 + k4));

    // Protect across the cut 1G leaf's remaining 2M leaves into one cut in the middle.
    tried += fails_cleanly_at_every_allocation(&mut pt, |pt| {
        pt.protect_region(v(g1 + m2 + k4), 3 * m2, F::READ)
    }) + 1;
    assert_eq!(pt.query(v(g1 + m2 + k4)).unwrap().flags, F::READ);
    assert_eq!(pt.query(v(g1 + 4 * m2)).unwrap().flags, F::READ);
    assert_eq!(pt.query(v(g1 + 4 * m2 + k4)).unwrap().flags, RW);

    // unmap_region_with across the protected run's first cut and the next 2M leaf: the
    // callback hears nothing from a call that fails, and on success exactly the pieces
    // inside the range, in order.
    let (from, len) = (g1 + 2 * m2 - k4, m2 + 2 * k4);
    let mut reported = vec![];
    tried += fails_cleanly_at_every_allocation(&mut pt, |pt| {
        reported.clear();
        let mut seen = vec![];
        let result = pt.unmap_region_with(v(from), len, |c| seen.extend(c.leaf()));
        if result.is_err() {
            assert!(
                seen.is_empty(),
                "a failed unmap_region_with reported {seen:?}"
            );
        }
        reported = seen;
        result
    }) + 1;
    let covered: usize = reported.iter().map(|m| m.size.bytes()).sum();
    assert_eq!(covered, len, "{}: the pieces cover the range", A::NAME);
    assert_eq!(reported[0].va, v(from));
    assert!(
        reported
            .windows(2)
            .all(|w| w[0].va.into() + w[0].size.bytes() == w[1].va.into())
    );
    assert!(
        reported
            .iter()
            .all(|m| m.pa == p(Into::<usize>::into(m.va).wrapping_sub(base)))
    );
    assert!(pt.query(v(from)).is_err() && pt.query(v(from + len - k4)).is_err());
    assert!(pt.query(v(from - k4)).is_ok() && pt.query(v(from + len)).is_ok());

    // A second table borrows the root entry holding all of it: no frame needed, so it works
    // with a handler that refuses every allocation.
    let root_size = 1usize << level_shift::<A>(root_depth::<A>());
    let entry = base & !(root_size - 1);
    pt.share(A::Addr::from(entry), root_size).unwrap().ignore();
    let mut other = PageTable::<A, _>::new(Frames::new(pool, 0x2_0000_0000)).unwrap();
    set_fail_from(&mut other, Some(0));
    let frames = other.handler().live_frames();
    // SAFETY: `pt` outlives the borrow, which is released before either is dropped. `other`'s
    // handler cannot reach `pt`'s frames, so nothing reads through the borrowed entry here.
    unsafe { other.borrow_shared(&pt, A::Addr::from(entry), root_size) }
        .unwrap()
        .ignore();
    tried += 1;
    assert_eq!(other.handler().live_frames(), frames);
    other.release_borrowed().ignore();

    let ledger = pt.handler().ledger();
    drop(pt);
    assert_eq!(ledger.get(), 0, "{}: frames leaked by drop", A::NAME);
    tried
}

#[test]
fn every_mode_fails_cleanly_at_every_allocation() {
    let tried = [
        low::<X86_64>(),
        low::<X86_64La57>(),
        low::<AArch64<Va48, Lower>>(),
        high::<AArch64<Va48, Upper>>(),
        low::<AArch64<Va39, Lower>>(),
        high::<AArch64<Va39, Upper>>(),
        low::<Sv39>(),
        low::<Sv48>(),
        low::<Sv57>(),
        low::<LoongArch64>(),
    ];
    // Printed for the README's figures (`cargo test --test out_of_frames -- --nocapture`).
    println!("injection points tried: {}", tried.iter().sum::<usize>());
}

#[test]
fn granules_fail_cleanly_at_every_allocation() {
    let tried = [
        low::<AArch64<Va48, Lower, Granule16K>>(),
        high::<AArch64<Va47, Upper, Granule16K>>(),
        low::<AArch64<Va36, Lower, Granule16K>>(),
        low::<AArch64<Va48, Lower, Granule64K>>(),
        high::<AArch64<Va48, Upper, Granule64K>>(),
        low::<AArch64<Va42, Lower, Granule64K>>(),
    ];
    println!("injection points tried: {}", tried.iter().sum::<usize>());
}

#[test]
fn stage2_modes_fail_cleanly_at_every_allocation() {
    let tried = [
        low::<AArch64S2<Ipa40>>(),
        low::<AArch64S2<Ipa48>>(),
        low::<Sv39x4>(),
        low::<Sv48x4>(),
        low::<Ept>(),
    ];
    println!("injection points tried: {}", tried.iter().sum::<usize>());
}
