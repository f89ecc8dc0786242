//! Live tables: what holds while an MMU walks the table being edited. No table that was linked
//! is freed before the flush that covers it; the kernel half that process tables borrow is
//! never freed under them, and nothing a borrower caches outlives a table; parents let through
//! what a leaf mapped under them allows; LoongArch never links a table at physical address 0.

mod common;
use pagetable::gpa;

use common::Frames;
use common::mmu::{Event, Mmu};
use common::raw;
use memory_addr::{pa, va};
use pagetable::arch::level_shift;
use pagetable::{
    AArch64, Arch, Ept, HugePages, Liveness, LoongArch64, MappingFlags as F, PageSize, PageTable,
    PagingError, PagingHandler, Sv39, X86_64,
};

const RW: F = F::READ.union(F::WRITE);

fn live<M: common::hw::Hardware + Arch>() -> PageTable<M, Mmu<M>> {
    let mut pt = PageTable::new(Mmu::<M>::new(1100, 0x10_0000_0000)).unwrap();
    pt.set_liveness(Liveness::Live);
    pt
}

/// Every table a raw walk reaches from the root.
fn tables<M: common::hw::Hardware + Arch>(pt: &PageTable<M, Mmu<M>>) -> Vec<u64> {
    let root = pt.root_paddr().as_usize() as u64;
    raw::walk::<M>(&pt.handler().frames, root)
        .unwrap()
        .tables
        .into_iter()
        .collect()
}

fn frees<M: common::hw::Hardware>(events: &[Event]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Free(pa) => Some(*pa),
            Event::Break(_) => None,
        })
        .collect()
}

/// In a live table, each call that unlinks tables frees none of them before its flush, and
/// `PageTable::flush` frees exactly those.
fn unlinked_tables_outlive_the_call<M: common::hw::Hardware + Arch>() {
    let page = 1usize << M::PAGE_SHIFT;
    let small = PageSize::from_shift(M::PAGE_SHIFT).unwrap();
    let base = M::Addr::from(M::unfold(1 << 30).as_usize());
    let untouched = |pt: &PageTable<M, Mmu<M>>, linked: &[u64], what: &str| {
        assert_eq!(
            frees::<M>(&pt.handler().take_events()),
            [],
            "{}: {what}",
            M::NAME
        );
        for &t in linked {
            assert!(
                pt.handler().frames.is_live(t, page),
                "{}: {what}: {t:#x} freed",
                M::NAME
            );
        }
    };
    // unmap of the last page: the chain of tables above it is unlinked.
    let mut pt = live::<M>();
    pt.map(base, pa!(0x8000_0000), small, RW).unwrap().ignore();
    let linked = tables(&pt);
    let (_, flush) = pt.unmap(base).unwrap();
    untouched(&pt, &linked, "unmap");
    assert!(flush.has_retired());
    flush_frees_them(&mut pt, flush, &linked);
    // unmap_region over many tables.
    let mut pt = live::<M>();
    pt.map_region(base, pa!(0x8000_0000), 64 * page, RW, HugePages::Never)
        .unwrap()
        .ignore();
    let linked = tables(&pt);
    let flush = pt.unmap_region(base, 64 * page).unwrap();
    untouched(&pt, &linked, "unmap_region");
    flush_frees_them(&mut pt, flush, &linked);
    // A huge leaf over an empty table retires the table.
    let mut pt = live::<M>();
    pt.map(base, pa!(0x8000_0000), small, RW).unwrap().ignore();
    let linked = tables(&pt);
    let root = pt.root_paddr().as_usize() as u64;
    let frames = &pt.handler().frames;
    let (entry, _) = common::mmu::leaf_entry::<M>(frames, root, base.into() as u64);
    frames.write_phys(entry, 0);
    let block = 1usize << level_shift::<M>(2);
    let flush = pt
        .map_region(base, pa!(0x8000_0000), block, RW, HugePages::Allowed)
        .unwrap();
    untouched(&pt, &linked, "a huge leaf over an empty table");
    let after = tables(&pt);
    assert_eq!(linked.iter().filter(|t| !after.contains(t)).count(), 1);
    flush_frees_them(&mut pt, flush, &linked);
}

/// `PageTable::flush` frees every table the change unlinked (and the frames that recorded
/// them), and nothing the table still links.
fn flush_frees_them<M: common::hw::Hardware + Arch>(
    pt: &mut PageTable<M, Mmu<M>>,
    flush: pagetable::Flush<M>,
    linked_before: &[u64],
) {
    pt.flush(flush);
    let freed = frees::<M>(&pt.handler().take_events());
    let still = tables(pt);
    for t in linked_before.iter().filter(|t| !still.contains(t)) {
        assert!(
            freed.contains(t),
            "{}: {t:#x} not freed after the flush",
            M::NAME
        );
    }
    for t in &still {
        assert!(
            !freed.contains(t),
            "{}: freed {t:#x}, still linked",
            M::NAME
        );
    }
    let out = pt.handler().frames.live_frames() << 12 >> M::PAGE_SHIFT;
    assert_eq!(pt.table_frames(), out, "{}: nothing leaked", M::NAME);
}

#[test]
fn live_tables_free_no_unlinked_table_before_the_flush() {
    unlinked_tables_outlive_the_call::<X86_64>();
    unlinked_tables_outlive_the_call::<AArch64>();
    unlinked_tables_outlive_the_call::<Sv39>();
    unlinked_tables_outlive_the_call::<LoongArch64>();
}

/// The kernel-half pattern: one kernel table, process tables sharing its upper half.
#[test]
fn the_owner_of_a_shared_kernel_half_never_frees_a_table_a_borrower_links() {
    let (memory, mut kernel, user, kva) = common::kernel_and_process();
    let linked = user.root().get(256).unwrap().next_table().unwrap().pa();
    // The kernel unmaps its only page there (a vfree): the table the user links must stay.
    kernel.unmap(kva).unwrap().1.ignore();
    assert!(
        memory.0.borrow().is_live(linked.as_usize() as u64, 4096),
        "the owner freed the table at {linked:#x}, which the borrower still links"
    );
    drop(user);
}

#[test]
fn a_borrowers_cursor_never_reads_a_table_the_owner_freed() {
    let (_memory, mut kernel, mut user, kva) = common::kernel_and_process();
    kernel
        .map(
            va!(0xffff_8000_4000_0000),
            pa!(0x8000_1000),
            PageSize::SIZE_4K,
            RW | F::GLOBAL,
        )
        .unwrap()
        .ignore();
    let mut cursor = user.cursor();
    assert_eq!(cursor.query(kva).unwrap().pa, pa!(0x8000_0000));
    // The owner frees the last-level table (and the one above it), and reuses both frames
    // as last-level tables elsewhere, each with a page at index 0.
    kernel.unmap(kva).unwrap().1.ignore();
    for (at, to) in [
        (0xffff_8000_4020_0000, 0x7000_0000),
        (0xffff_8000_4040_0000, 0x7100_0000),
    ] {
        kernel
            .map(va!(at), pa!(to), PageSize::SIZE_4K, RW | F::GLOBAL)
            .unwrap()
            .ignore();
    }
    assert_eq!(
        cursor.query(kva).err(),
        Some(PagingError::NotMapped(kva)),
        "the cursor read a table its owner freed"
    );
}

/// x86 parents gate U/S, R/W and XD for everything below them: a leaf mapped under an
/// adopted tree (a bootloader's, whose parents are P | R/W) must be reachable as its flags say.
#[test]
fn a_user_page_under_supervisor_parents_is_user_accessible() {
    let mut frames = Frames::new(16, 0x10_0000);
    // P | R/W, supervisor, XD: a kernel's data-only tables, PML4 -> PDPT -> PD.
    let root = adopted_chain(&mut frames, 3, 1 | 2 | 1 << 63);
    let pdpt = frames.read_phys(root) & 0x000f_ffff_ffff_f000;
    // SAFETY: the tree came from `frames` and nothing else owns it.
    let mut pt = unsafe { PageTable::<X86_64, _>::from_root(pa!(root as usize), frames) }.unwrap();
    let user = RW | F::USER | F::EXECUTE;
    pt.map(va!(0x1000), pa!(0x5000), PageSize::SIZE_4K, user)
        .unwrap()
        .ignore();
    for t in [root, pdpt] {
        let entry = pt.handler().read_phys(t);
        assert_eq!(
            entry & 0b111,
            0b111,
            "parent {entry:#x} lets user mode through"
        );
        assert_eq!(entry >> 63, 0, "parent {entry:#x} lets fetches through");
    }
    assert_eq!(pt.query(va!(0x1000)).unwrap().flags, user);
}

#[test]
fn a_query_under_restricting_parents_reports_what_the_walk_allows() {
    let mut pt = PageTable::<X86_64, _>::new(Frames::new(16, 0x10_0000)).unwrap();
    pt.map(
        va!(0x1000),
        pa!(0x5000),
        PageSize::SIZE_4K,
        RW | F::USER | F::EXECUTE,
    )
    .unwrap()
    .ignore();
    // A parent made supervisor-only and read-only behind the library's back.
    let root = pt.root_paddr().as_usize() as u64;
    let pml4e = pt.handler().read_phys(root);
    pt.handler().write_phys(root, pml4e & !0b110);
    assert_eq!(pt.query(va!(0x1000)).unwrap().flags, F::READ | F::EXECUTE);
}

/// A map that fails changes nothing, not even the parents it would have had to widen: a
/// parent made supervisor-only and read-only stays so for every leaf below it, through `map`
/// and the cursor, whether the walk stops at the leaf's own slot, at a 2M leaf on the way, or
/// where the one table it would add cannot be had.
#[test]
fn a_failed_map_leaves_restricting_parents_alone() {
    let user = RW | F::USER;
    for cursor in [false, true] {
        let mut pt = PageTable::<X86_64, _>::new(Frames::new(16, 0x10_0000)).unwrap();
        pt.map(va!(0x1000), pa!(0x5000), PageSize::SIZE_4K, RW)
            .unwrap()
            .ignore();
        pt.map(va!(0x40_0000), pa!(0x20_0000), PageSize::SIZE_2M, RW)
            .unwrap()
            .ignore();
        let root = pt.root_paddr().as_usize() as u64;
        let pml4e = pt.handler().read_phys(root);
        pt.handler().write_phys(root, pml4e & !0b110);
        let before = pt.handler().snapshot();
        let map = |pt: &mut PageTable<X86_64, Frames>, v: usize| {
            let (v, p) = (va!(v), pa!(0x9000));
            if cursor {
                pt.cursor()
                    .map(v, p, PageSize::SIZE_4K, user)
                    .map(|f| f.ignore())
            } else {
                pt.map(v, p, PageSize::SIZE_4K, user).map(|f| f.ignore())
            }
        };
        let cases = [
            (0x1000, PagingError::AlreadyMapped(va!(0x1000))),
            (0x40_1000, PagingError::AlreadyMapped(va!(0x40_1000))),
            (0x80_0000, PagingError::OutOfFrames),
        ];
        for (v, err) in cases {
            common::set_fail_from(&mut pt, Some(0));
            assert_eq!(map(&mut pt, v), Err(err));
            assert!(
                pt.handler().snapshot() == before,
                "cursor {cursor}: a failed map at {v:#x} changed the tables"
            );
        }
        assert_eq!(pt.query(va!(0x1000)).unwrap().flags, F::READ);
    }
}

/// A tree of `levels` tables from `frames`, each linking the next through entry 0 with
/// `parent | next` (the last one left empty), as an adopted tree would be; its root.
fn adopted_chain(frames: &mut Frames, levels: usize, parent: u64) -> u64 {
    let tables: Vec<u64> = (0..levels)
        .map(|_| frames.alloc_table(4096).unwrap().as_usize() as u64)
        .collect();
    for &t in &tables {
        for i in 0..512 {
            frames.write_phys(t + 8 * i, 0);
        }
    }
    for w in tables.windows(2) {
        frames.write_phys(w[0], w[1] | parent);
    }
    tables[0]
}

#[test]
fn aarch64_hierarchical_controls_let_a_new_leaf_through() {
    let mut frames = Frames::new(16, 0x10_0000);
    // Valid table descriptors with PXNTable, UXNTable, APTable = 0b11 (no EL0, no write).
    let root = adopted_chain(&mut frames, 3, 0b11 | 0b1111 << 59);
    // SAFETY: the tree came from `frames` and nothing else owns it.
    let mut pt = unsafe { PageTable::<AArch64, _>::from_root(pa!(root as usize), frames) }.unwrap();
    let user = RW | F::USER | F::EXECUTE;
    assert_eq!(
        pt.map(va!(0x1000), pa!(0x5000), PageSize::SIZE_4K, user)
            .map(|f| f.ignore()),
        Ok(())
    );
    let root_entry = pt.handler().read_phys(root);
    assert_eq!(
        root_entry >> 59 & 0b1111,
        0b0001,
        "{root_entry:#x}: only PXNTable stays"
    );
    assert_eq!(pt.query(va!(0x1000)).unwrap().flags, user);
    // A kernel leaf next to it: PXNTable goes too.
    pt.map(va!(0x2000), pa!(0x6000), PageSize::SIZE_4K, RW | F::EXECUTE)
        .unwrap()
        .ignore();
    assert_eq!(pt.handler().read_phys(root) >> 59 & 0b1111, 0);
    // Set APTable[1] again behind the library's back: the walk reports no write.
    pt.handler()
        .write_phys(root, pt.handler().read_phys(root) | 1 << 62);
    assert_eq!(
        pt.query(va!(0x1000)).unwrap().flags,
        F::READ | F::USER | F::EXECUTE
    );
}

#[test]
fn ept_parents_that_allow_only_reads_let_a_new_leaf_through() {
    let mut frames = Frames::new(16, 0x10_0000);
    let root = adopted_chain(&mut frames, 3, 0b001);
    // SAFETY: the tree came from `frames` and nothing else owns it.
    let mut pt = unsafe { PageTable::<Ept, _>::from_root(pa!(root as usize), frames) }.unwrap();
    let rwx = RW | F::EXECUTE;
    pt.map(gpa!(0x1000), pa!(0x5000), PageSize::SIZE_4K, rwx)
        .unwrap()
        .ignore();
    assert_eq!(pt.handler().read_phys(root) & 0b111, 0b111);
    assert_eq!(pt.query(gpa!(0x1000)).unwrap().flags, rwx);
}

#[test]
fn a_cursor_lets_its_pages_through_supervisor_parents_too() {
    let mut frames = Frames::new(16, 0x10_0000);
    let root = adopted_chain(&mut frames, 4, 1 | 2 | 1 << 63);
    // SAFETY: the tree came from `frames` and nothing else owns it.
    let mut pt = unsafe { PageTable::<X86_64, _>::from_root(pa!(root as usize), frames) }.unwrap();
    let user = RW | F::USER | F::EXECUTE;
    let mut cursor = pt.cursor();
    // The walk finds the last-level table first, for kernel pages.
    cursor
        .map(va!(0x1000), pa!(0x5000), PageSize::SIZE_4K, F::READ)
        .unwrap()
        .ignore();
    assert_eq!(cursor.query(va!(0x1000)).unwrap().flags, F::READ);
    cursor
        .map(va!(0x2000), pa!(0x6000), PageSize::SIZE_4K, user)
        .unwrap()
        .ignore();
    assert_eq!(cursor.query(va!(0x2000)).unwrap().flags, user);
    assert_eq!(pt.query(va!(0x2000)).unwrap().flags, user);
    assert_eq!(pt.handler().read_phys(root) & 0b111, 0b111);
}

/// `lddir` reads an empty (zero) directory entry as a table at physical address 0, so a table
/// there would read as unlinked: a handler's frame at 0 is refused and given back.
#[test]
fn loongarch_refuses_a_table_frame_at_physical_address_0() {
    let mut frames = Frames::new(16, 0);
    let zero = frames.alloc_table(4096).unwrap();
    assert_eq!(zero, pa!(0));
    let pt = PageTable::<LoongArch64, _>::new(frames).unwrap();
    // Frame 0 goes back to the handler, to be the next one it hands out.
    let mut pt = pt;
    // SAFETY: `zero` came from this handler and nothing uses it.
    unsafe { pt.handler_mut().free_table(zero, 4096) };
    let before = pt.handler().snapshot();
    let result = pt.map(va!(0x1000), pa!(0x5000), PageSize::SIZE_4K, RW);
    assert_eq!(
        result.err(),
        Some(PagingError::BadFrame(pa!(0))),
        "a table at 0 was linked"
    );
    assert!(pt.handler().snapshot() == before);
    assert_eq!(
        pt.handler().live_frames(),
        1,
        "the frame at 0 was given back"
    );
}
