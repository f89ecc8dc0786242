//! Break-before-make (Arm ARM D8.16.1): on a live AArch64 table, the changes that need it are
//! made as invalid entry, TLB invalidation, new entry, which the handler sees (at the moment of
//! its `break_flush`, an independent raw walk of table memory must find the address unmapped);
//! on a table that refuses breaks they fail with `NeedsBreak` and change nothing; offline
//! tables, and architectures that need no breaks, replace entries in place.

mod common;
use pagetable::gpa;

use std::marker::PhantomData;
use std::ptr::NonNull;

use common::raw::{self, Manual};
use common::{Frames, at};
use memory_addr::{pa, va};
use pagetable::{
    AArch64, AArch64S2, Arch, Granule64K, HugePages, Ipa40, Liveness, Lower, MappingFlags as F,
    MemType, PageSize, PageTable, PagingError, PagingHandler, PhysAddr, Va48, VirtAddr, X86_64,
};

const RW: F = F::READ.union(F::WRITE);

/// A handler that checks, at each break, that the broken address translates nowhere.
struct Watch<M> {
    frames: Frames,
    root: Option<u64>,
    /// (address, size) of each break, in order.
    breaks: Vec<(usize, usize)>,
    _mode: PhantomData<M>,
}

// SAFETY: every call but `break_flush` is `Frames`'s own.
unsafe impl<M: Manual> PagingHandler for Watch<M> {
    fn alloc_table(&mut self, bytes: usize) -> Option<PhysAddr> {
        let pa = self.frames.alloc_table(bytes)?;
        // The first table a page table allocates is its root.
        self.root.get_or_insert(pa.as_usize() as u64);
        Some(pa)
    }
    unsafe fn free_table(&mut self, pa: PhysAddr, bytes: usize) {
        // SAFETY: forwarded from the caller.
        unsafe { self.frames.free_table(pa, bytes) }
    }
    fn phys_to_virt(&self, pa: PhysAddr) -> NonNull<u8> {
        self.frames.phys_to_virt(pa)
    }
    fn break_flush<A: Arch>(&mut self, va: A::Addr, size: usize) {
        let va = VirtAddr::from(va.into());
        let tree = raw::walk::<M>(&self.frames, self.root.unwrap()).unwrap();
        let (start, end) = (va.as_usize() as u64, va.as_usize() as u64 + size as u64);
        for &(leaf, _, shift) in &tree.leaves {
            assert!(
                leaf + (1 << shift) <= start || leaf >= end,
                "break at {va:#x}: the leaf at {leaf:#x} still maps it"
            );
        }
        self.breaks.push((va.as_usize(), size));
    }
}

fn table<M: Manual + Arch>(liveness: Liveness) -> PageTable<M, Watch<M>> {
    let watch = Watch {
        frames: Frames::new(512, 0x4000_0000),
        root: None,
        breaks: vec![],
        _mode: PhantomData,
    };
    let mut pt = PageTable::new(watch).unwrap();
    pt.set_liveness(liveness);
    assert_eq!(pt.liveness(), liveness);
    pt
}

fn breaks<M: Manual + Arch>(pt: &PageTable<M, Watch<M>>) -> Vec<(usize, usize)> {
    pt.handler().breaks.clone()
}

type A = AArch64<Va48, Lower>;
const M2: usize = 2 << 20;

/// A 2 MiB block at 0x4000_0000 and a 4 KiB page at 0x1000_0000.
fn populated<M: Manual + Arch>(liveness: Liveness) -> PageTable<M, Watch<M>> {
    let mut pt = table::<M>(liveness);
    pt.map_region(
        at::<M>(0x4000_0000),
        pa!(0x8000_0000),
        M2,
        RW,
        HugePages::Allowed,
    )
    .unwrap()
    .ignore();
    pt.map(
        at::<M>(0x1000_0000),
        pa!(0x9000_0000),
        PageSize::SIZE_4K,
        RW,
    )
    .unwrap()
    .ignore();
    pt
}

#[test]
fn live_splits_and_remaps_break_first() {
    let mut pt = populated::<A>(Liveness::Live);
    // Unmapping a page inside the block splits it: the block goes before the table comes.
    pt.unmap_region(va!(0x4000_1000), 0x1000).unwrap().ignore();
    assert_eq!(breaks(&pt), [(0x4000_0000, M2)]);
    assert_eq!(pt.query(va!(0x4000_2000)).unwrap().pa, pa!(0x8000_2000));
    assert!(pt.query(va!(0x4000_1000)).is_err());
    // A new output address.
    pt.remap(va!(0x1000_0000), pa!(0x9100_0000))
        .unwrap()
        .ignore();
    assert_eq!(breaks(&pt)[1], (0x1000_0000, 0x1000));
    assert_eq!(pt.query(va!(0x1000_0000)).unwrap().pa, pa!(0x9100_0000));
    // A new memory type, and a new nG.
    pt.protect(va!(0x1000_0000), RW.with_mem_type(MemType::Device))
        .unwrap()
        .ignore();
    pt.protect(va!(0x1000_0000), RW | F::GLOBAL)
        .unwrap()
        .ignore();
    assert_eq!(breaks(&pt).len(), 4);
    // Permissions and access state alone: in place.
    pt.protect_region(va!(0x4000_2000), 0x3000, F::READ)
        .unwrap()
        .ignore();
    pt.protect(va!(0x1000_0000), F::READ | F::GLOBAL)
        .unwrap()
        .ignore();
    let (state, flush) = pt
        .clear_access_state(va!(0x1000_0000), pagetable::AccessState::BOTH)
        .unwrap();
    flush.ignore();
    assert!(state.accessed);
    assert_eq!(breaks(&pt).len(), 4);
    let t = pt.query(va!(0x1000_0000)).unwrap();
    assert_eq!((t.pa, t.flags), (pa!(0x9100_0000), F::READ | F::GLOBAL));
}

#[test]
fn refusing_tables_fail_cleanly() {
    let mut pt = populated::<A>(Liveness::LiveNoBreak);
    let before = pt.handler().frames.snapshot();
    assert_eq!(
        pt.unmap_region(va!(0x4000_1000), 0x1000).err(),
        Some(PagingError::NeedsBreak(va!(0x4000_1000)))
    );
    assert_eq!(
        pt.protect_region(va!(0x4010_0000), 0x1000, F::READ).err(),
        Some(PagingError::NeedsBreak(va!(0x4010_0000)))
    );
    assert_eq!(
        pt.remap(va!(0x1000_0000), pa!(0x9100_0000)).err(),
        Some(PagingError::NeedsBreak(va!(0x1000_0000)))
    );
    assert_eq!(
        pt.protect_region(va!(0x1000_0000), 0x1000, F::READ | F::UNCACHED)
            .err(),
        Some(PagingError::NeedsBreak(va!(0x1000_0000)))
    );
    assert!(
        pt.handler().frames.snapshot() == before,
        "a refused change wrote"
    );
    assert!(breaks(&pt).is_empty());
    // What needs no break goes through: whole-block permission changes, unmapping whole leaves.
    pt.protect_region(va!(0x4000_0000), M2, F::READ)
        .unwrap()
        .ignore();
    pt.unmap_region(va!(0x4000_0000), M2).unwrap().ignore();
    pt.protect(va!(0x1000_0000), F::READ).unwrap().ignore();
    assert!(breaks(&pt).is_empty());
    assert_eq!(pt.query(va!(0x1000_0000)).unwrap().flags, F::READ);
}

#[test]
fn offline_tables_and_x86_replace_in_place() {
    let mut pt = populated::<A>(Liveness::Offline);
    pt.unmap_region(va!(0x4000_1000), 0x1000).unwrap().ignore();
    pt.remap(va!(0x1000_0000), pa!(0x9100_0000))
        .unwrap()
        .ignore();
    assert!(breaks(&pt).is_empty());
    let mut pt = populated::<X86_64>(Liveness::LiveNoBreak);
    pt.unmap_region(va!(0x4000_1000), 0x1000).unwrap().ignore();
    pt.remap(va!(0x1000_0000), pa!(0x9100_0000))
        .unwrap()
        .ignore();
    pt.protect(va!(0x1000_0000), F::READ | F::UNCACHED)
        .unwrap()
        .ignore();
    assert!(breaks(&pt).is_empty());
}

#[test]
fn stage2_and_64k_blocks_break_too() {
    let mut pt = populated::<AArch64S2<Ipa40>>(Liveness::Live);
    pt.protect_region(gpa!(0x4000_0000), 0x1000, F::READ)
        .unwrap()
        .ignore();
    assert_eq!(breaks(&pt), [(0x4000_0000, M2)]);

    type A64 = AArch64<Va48, Lower, Granule64K>;
    let mut pt = table::<A64>(Liveness::Live);
    pt.map_region(
        va!(0x2000_0000),
        pa!(0x8000_0000),
        512 << 20,
        RW,
        HugePages::Allowed,
    )
    .unwrap()
    .ignore();
    pt.unmap_region(va!(0x2001_0000), 0x1_0000)
        .unwrap()
        .ignore();
    assert_eq!(breaks(&pt), [(0x2000_0000, 512 << 20)]);
    assert_eq!(pt.query(va!(0x2002_0000)).unwrap().size, PageSize::SIZE_64K);
}

/// A 4 KiB page at 0x4020_0000 whose leaf is then zeroed behind the library's back (as in an
/// adopted tree): its last-level table is linked and empty.
fn with_empty_table(liveness: Liveness) -> PageTable<A, Watch<A>> {
    let mut pt = populated::<A>(liveness);
    pt.map(va!(0x4020_0000), pa!(0x9200_0000), PageSize::SIZE_4K, RW)
        .unwrap()
        .ignore();
    let root = pt.root_paddr().as_usize() as u64;
    let tree = raw::walk::<A>(&pt.handler().frames, root).unwrap();
    let k = tree.leaves.iter().position(|l| l.0 == 0x4020_0000).unwrap();
    pt.handler().frames.write_phys(tree.entries[k], 0);
    pt
}

#[test]
fn a_block_over_a_table_breaks_first_or_is_refused() {
    // Table to block: the table entry goes invalid and is flushed before the block is written.
    let mut pt = with_empty_table(Liveness::Live);
    pt.map_region(
        va!(0x4020_0000),
        pa!(0xa000_0000),
        M2,
        RW,
        HugePages::Allowed,
    )
    .unwrap()
    .ignore();
    assert_eq!(breaks(&pt), [(0x4020_0000, M2)]);
    assert_eq!(pt.query(va!(0x4020_0000)).unwrap().size, PageSize::SIZE_2M);
    let mut pt = with_empty_table(Liveness::Live);
    pt.map(va!(0x4020_0000), pa!(0xa000_0000), PageSize::SIZE_2M, RW)
        .unwrap()
        .ignore();
    assert_eq!(breaks(&pt), [(0x4020_0000, M2)]);
    // Refused where no address may fault, with nothing changed.
    let mut pt = with_empty_table(Liveness::LiveNoBreak);
    let before = pt.handler().frames.snapshot();
    assert_eq!(
        pt.map_region(
            va!(0x4020_0000),
            pa!(0xa000_0000),
            M2,
            RW,
            HugePages::Allowed
        )
        .err(),
        Some(PagingError::NeedsBreak(va!(0x4020_0000)))
    );
    assert_eq!(
        pt.map(va!(0x4020_0000), pa!(0xa000_0000), PageSize::SIZE_2M, RW)
            .err(),
        Some(PagingError::NeedsBreak(va!(0x4020_0000)))
    );
    assert!(pt.handler().frames.snapshot() == before);
    assert!(breaks(&pt).is_empty());
}

#[test]
fn a_change_of_the_contiguous_bit_breaks_first_or_is_refused() {
    for liveness in [Liveness::Live, Liveness::LiveNoBreak] {
        let mut pt = populated::<A>(liveness);
        // An adopted leaf with the Contiguous hint (bit 52); a protect drops it.
        let root = pt.root_paddr().as_usize() as u64;
        let tree = raw::walk::<A>(&pt.handler().frames, root).unwrap();
        let k = tree.leaves.iter().position(|l| l.0 == 0x1000_0000).unwrap();
        let entry = tree.entries[k];
        let pte = pt.handler().frames.read_phys(entry);
        pt.handler().frames.write_phys(entry, pte | 1 << 52);
        let result = pt.protect(va!(0x1000_0000), F::READ).map(|f| f.ignore());
        if liveness == Liveness::Live {
            assert_eq!(result, Ok(()));
            assert_eq!(breaks(&pt), [(0x1000_0000, 0x1000)]);
        } else {
            assert_eq!(result, Err(PagingError::NeedsBreak(va!(0x1000_0000))));
            assert_eq!(pt.handler().frames.read_phys(entry), pte | 1 << 52);
        }
    }
}

#[test]
fn remap_region_breaks_each_moved_leaf_or_is_refused() {
    // Live: the block is split (one break), then every page moved breaks on its own.
    let mut pt = populated::<A>(Liveness::Live);
    pt.remap_region(va!(0x4000_1000), pa!(0xa000_0000), 0x2000, RW)
        .unwrap()
        .ignore();
    assert_eq!(
        breaks(&pt),
        [
            (0x4000_0000, M2),
            (0x4000_1000, 0x1000),
            (0x4000_2000, 0x1000)
        ]
    );
    assert_eq!(pt.query(va!(0x4000_2008)).unwrap().pa, pa!(0xa000_1008));
    assert_eq!(pt.query(va!(0x4000_3000)).unwrap().pa, pa!(0x8000_3000));
    // Refusing breaks: nothing written.
    let mut pt = populated::<A>(Liveness::LiveNoBreak);
    let before = pt.handler().frames.snapshot();
    assert_eq!(
        pt.remap_region(va!(0x1000_0000), pa!(0xa000_0000), 0x1000, RW)
            .err(),
        Some(PagingError::NeedsBreak(va!(0x1000_0000)))
    );
    assert!(
        pt.handler().frames.snapshot() == before,
        "a refused change wrote"
    );
    // x86 needs none: the new entry in one store.
    let mut pt = populated::<X86_64>(Liveness::LiveNoBreak);
    pt.remap_region(va!(0x4000_0000), pa!(0xa000_0000), M2, F::READ)
        .unwrap()
        .ignore();
    assert!(breaks(&pt).is_empty());
    let t = pt.query(va!(0x4000_5000)).unwrap();
    assert_eq!(
        (t.pa, t.flags, t.size),
        (pa!(0xa000_5000), F::READ, PageSize::SIZE_2M)
    );
}

#[test]
fn modify_range_edits_break_where_needed_and_refuse_on_no_break_tables() {
    let device = RW.with_mem_type(MemType::Device);
    // Live: a new memory type is made as a break, a permission change in place.
    let mut pt = populated::<A>(Liveness::Live);
    pt.modify_range(va!(0x1000_0000), 0x1000, |e| e.set_flags(device).unwrap())
        .unwrap()
        .ignore();
    assert_eq!(breaks(&pt), [(0x1000_0000, 0x1000)]);
    pt.modify_range(va!(0x1000_0000), 0x1000, |e| {
        e.set_flags(F::READ.with_mem_type(MemType::Device)).unwrap()
    })
    .unwrap()
    .ignore();
    assert_eq!(breaks(&pt).len(), 1);
    assert_eq!(
        pt.query(va!(0x1000_0000)).unwrap().flags,
        F::READ.with_mem_type(MemType::Device)
    );
    // Refusing breaks: the edit says so to the closure, and nothing is written.
    let mut pt = populated::<A>(Liveness::LiveNoBreak);
    let before = pt.handler().frames.snapshot();
    let mut refused = vec![];
    pt.modify_range(va!(0x1000_0000), 0x1000, |e| {
        refused.push(e.set_flags(device))
    })
    .unwrap()
    .ignore();
    assert_eq!(refused, [Err(PagingError::NeedsBreak(va!(0x1000_0000)))]);
    assert!(
        pt.handler().frames.snapshot() == before,
        "a refused edit wrote"
    );
    // And a split at an edge that needs a break is refused before the closure runs.
    let mut called = false;
    assert_eq!(
        pt.modify_range(va!(0x4000_1000), 0x1000, |_| called = true)
            .err(),
        Some(PagingError::NeedsBreak(va!(0x4000_1000)))
    );
    assert!(!called);
    assert!(pt.handler().frames.snapshot() == before);
}
