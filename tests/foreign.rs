//! A tree the crate did not build (a bootloader's): adopted with `from_root` and a handler
//! whose `owns_table` says which tables are foreign, it is edited like any other, and no table
//! of the foreign owner is ever freed: not when an edit empties it, not when a range covers it
//! whole, not on drop. The tables the crate allocates in it are freed as usual.

mod common;

use std::collections::BTreeSet;
use std::ptr::NonNull;

use common::{Frames, at};
use memory_addr::pa;
use pagetable::{
    AArch64, Arch, HugePages, Liveness, MappingFlags as F, PageSize, PageTable, PagingHandler,
    PhysAddr, Sv39, X86_64,
};

const RW: F = F::READ.union(F::WRITE);

/// The kernel's allocator (`frames`), which knows the bootloader's tables are not its own.
struct Adopting {
    frames: Frames,
    foreign: BTreeSet<u64>,
}

// SAFETY: every call is `Frames`'s own; `owns_table` answers false only for the tables of the
// tree built before adoption.
unsafe impl PagingHandler for Adopting {
    fn alloc_table(&mut self, bytes: usize) -> Option<PhysAddr> {
        self.frames.alloc_table(bytes)
    }
    unsafe fn free_table(&mut self, pa: PhysAddr, bytes: usize) {
        assert!(
            !self.foreign.contains(&(pa.as_usize() as u64)),
            "freed the foreign table {pa:#x}"
        );
        // SAFETY: forwarded.
        unsafe { self.frames.free_table(pa, bytes) }
    }
    fn phys_to_virt(&self, pa: PhysAddr) -> NonNull<u8> {
        self.frames.phys_to_virt(pa)
    }
    fn owns_table(&self, pa: PhysAddr, _: usize) -> bool {
        !self.foreign.contains(&(pa.as_usize() as u64))
    }
}

/// A tree "the bootloader" built: 64 pages at 1 GiB, 2 pages at 2 GiB.
fn adopted<A: Arch>(liveness: Liveness) -> PageTable<A, Adopting> {
    let mut boot = PageTable::<A, _>::new(Frames::new(256, 0x10_0000_0000)).unwrap();
    boot.map_region(
        at::<A>(0x4000_0000),
        pa!(0x8000_0000),
        0x4_0000,
        RW,
        HugePages::Never,
    )
    .unwrap()
    .ignore();
    boot.map_region(
        at::<A>(0x8000_0000),
        pa!(0x9000_0000),
        0x2000,
        RW,
        HugePages::Never,
    )
    .unwrap()
    .ignore();
    let (root, frames, _) = boot.into_raw();
    let foreign = frames.live_addrs();
    let handler = Adopting { frames, foreign };
    // SAFETY: the tree is whole and nothing else edits it; its tables are marked foreign.
    let mut pt = unsafe { PageTable::from_root(root, handler) }.unwrap();
    pt.set_liveness(liveness);
    pt
}

fn foreign_tables_are_edited_but_never_freed<A: Arch>() {
    for liveness in [Liveness::Live, Liveness::Offline] {
        edit_and_drop::<A>(liveness);
    }
}

fn edit_and_drop<A: Arch>(liveness: Liveness) {
    let mut pt = adopted::<A>(liveness);
    let foreign = pt.handler().foreign.clone();
    // The crate's own tables, at 3 GiB.
    pt.map(
        at::<A>(0xc000_0000),
        pa!(0xa000_0000),
        PageSize::from_shift(A::PAGE_SHIFT).unwrap(),
        RW,
    )
    .unwrap()
    .ignore();
    // Emptying foreign tables: page by page (the last unmap empties them), and a range that
    // covers a whole foreign subtree.
    let (_, flush) = pt.unmap(at::<A>(0x8000_0000)).unwrap();
    pt.flush(flush);
    let flush = pt.unmap_region(at::<A>(0x8000_0000), 0x4000_0000).unwrap();
    pt.flush(flush);
    // A range that empties a foreign table without covering it (its 64 pages), then one that
    // covers what is left of the subtree.
    let flush = pt.unmap_region(at::<A>(0x4000_0000), 0x4_0000).unwrap();
    pt.flush(flush);
    let flush = pt.unmap_region(at::<A>(0x4000_0000), 0x4000_0000).unwrap();
    pt.flush(flush);
    assert!(pt.query(at::<A>(0x4000_1000)).is_err());
    assert_eq!(pt.query(at::<A>(0xc000_0000)).unwrap().pa, pa!(0xa000_0000));
    let ledger = pt.handler().frames.ledger();
    drop(pt);
    // Only the foreign tables are left out: everything the crate allocated came back.
    assert_eq!(ledger.get(), foreign.len(), "{} {liveness:?}", A::NAME);
}

#[test]
fn foreign_tables_are_edited_but_never_freed_x86_64() {
    foreign_tables_are_edited_but_never_freed::<X86_64>();
}

#[test]
fn foreign_tables_are_edited_but_never_freed_aarch64() {
    foreign_tables_are_edited_but_never_freed::<AArch64>();
}

#[test]
fn foreign_tables_are_edited_but_never_freed_sv39() {
    foreign_tables_are_edited_but_never_freed::<Sv39>();
}
