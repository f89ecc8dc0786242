//! Out-of-frames injection, in every mode: a handler that fails from the N-th allocation on,
//! for every N until the call succeeds, over `map_region` (tables at every level, huge leaves
//! and 4K edges), `unmap_region` and `protect_region` that split huge leaves at both ends, and
//! `copy_from`. Every failure must return `OutOfFrames`, leave every table byte as it was, and
//! leak no frame; the call that finally succeeds must do the whole change.

mod common;

use common::{Frames, fails_cleanly_at_every_allocation, set_fail_from};
use memory_addr::{PhysAddr, VirtAddr};
use pagetable::arch::{level_shift, max_leaf_depth, root_depth};
use pagetable::{
    AArch64, Arch, HugePages, LoongArch64, Lower, MappingFlags as F, PageSize, PageTable, Sv39,
    Sv48, Sv57, Upper, Va39, Va48, X86_64, X86_64La57,
};

const RW: F = F::READ.union(F::WRITE);
const K4: usize = 0x1000;
const M2: usize = 0x20_0000;
const G1: usize = 0x4000_0000;

/// Runs the scenario in mode `A` from `base` (1 GiB-aligned, 4 GiB of room after it); returns
/// the injection points tried.
fn scenario<A: Arch>(base: usize) -> usize {
    assert!(
        max_leaf_depth::<A>() >= 3,
        "{}: the scenario wants 1 GiB leaves",
        A::NAME
    );
    let v = |off: usize| VirtAddr::from(base.wrapping_add(off));
    // Physical addresses with the virtual ones' alignment modulo 1 GiB, so huge leaves fit.
    let p = |off: usize| PhysAddr::from(0x80_0000_0000 + off);
    let mut pt = PageTable::<A, _>::new(Frames::new(64, 0x1_0000_0000)).unwrap();
    let mut tried = 0;

    // Some 4K pages first, so the big map shares their tables and needs new ones beside.
    pt.map_region(v(0), p(0), M2 + 2 * K4, RW, HugePages::Never)
        .unwrap()
        .ignore();
    // 4K up to 4M, 2M leaves up to 1G, one 1G leaf, 2M leaves, then 4K at the end.
    let len = 2 * G1 + 2 * M2 - K4;
    tried += fails_cleanly_at_every_allocation(&mut pt, |pt| {
        pt.map_region(v(M2 + 2 * K4), p(M2 + 2 * K4), len, RW, HugePages::Allowed)
    }) + 1;
    let size = |off| pt.query(v(off)).unwrap().size;
    assert_eq!(size(M2 + 2 * K4), PageSize::SIZE_4K);
    assert_eq!(size(4 * M2), PageSize::SIZE_2M);
    assert_eq!(size(G1 + 5 * K4), PageSize::SIZE_1G);
    assert_eq!(size(2 * G1 + M2), PageSize::SIZE_2M);
    assert_eq!(size(2 * G1 + 3 * M2), PageSize::SIZE_4K);

    // Cut a 2M leaf at the start and the 1G leaf at the end (1G -> 2M -> 4K: two tables).
    tried +=
        fails_cleanly_at_every_allocation(&mut pt, |pt| pt.unmap_region(v(G1 - M2 + K4), 2 * M2))
            + 1;
    assert!(pt.query(v(G1 - M2 + K4)).is_err());
    assert!(pt.query(v(G1 + M2)).is_err());
    assert_eq!(pt.query(v(G1 - M2)).unwrap().size, PageSize::SIZE_4K);
    assert_eq!(pt.query(v(G1 + M2 + K4)).unwrap().pa, p(G1 + M2 + K4));

    // Protect across the cut 1G leaf's remaining 2M leaves into one cut in the middle.
    tried += fails_cleanly_at_every_allocation(&mut pt, |pt| {
        pt.protect_region(v(G1 + M2 + K4), 3 * M2, F::READ)
    }) + 1;
    assert_eq!(pt.query(v(G1 + M2 + K4)).unwrap().flags, F::READ);
    assert_eq!(pt.query(v(G1 + 4 * M2)).unwrap().flags, F::READ);
    assert_eq!(pt.query(v(G1 + 4 * M2 + K4)).unwrap().flags, RW);

    // A second table borrows the root entry holding all of it: no frame needed, so it works
    // with a handler that refuses every allocation.
    let root_size = 1usize << level_shift::<A>(root_depth::<A>());
    let entry = base & !(root_size - 1);
    let mut other = PageTable::<A, _>::new(Frames::new(4, 0x2_0000_0000)).unwrap();
    set_fail_from(&mut other, Some(0));
    let frames = other.handler().live_frames();
    // SAFETY: `pt` outlives the borrow, which is released before either is dropped. `other`'s
    // handler cannot reach `pt`'s frames, so nothing reads through the borrowed entry here.
    unsafe { other.copy_from(&pt, VirtAddr::from(entry), root_size) }
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
    let ttbr1_48 = 0xffff_0000_0000_0000 + 4 * G1;
    let ttbr1_39 = 0xffff_ff80_0000_0000 + 4 * G1;
    let mut tried = 0;
    tried += scenario::<X86_64>(4 * G1);
    tried += scenario::<X86_64La57>(4 * G1);
    tried += scenario::<AArch64<Va48, Lower>>(4 * G1);
    tried += scenario::<AArch64<Va48, Upper>>(ttbr1_48);
    tried += scenario::<AArch64<Va39, Lower>>(4 * G1);
    tried += scenario::<AArch64<Va39, Upper>>(ttbr1_39);
    tried += scenario::<Sv39>(4 * G1);
    tried += scenario::<Sv48>(4 * G1);
    tried += scenario::<Sv57>(4 * G1);
    tried += scenario::<LoongArch64>(4 * G1);
    // Printed for the README's figures (`cargo test --test out_of_frames -- --nocapture`).
    println!("injection points tried: {tried}");
}
