//! Behaviour of the facade that the model test does not reach: frame counts, running out of
//! frames at every point, sharing a kernel half, flush tokens, hardware-set bits, and splits that
//! move attribute bits between entry formats.

mod common;

use common::{Frames, Shared, fails_cleanly_at_every_allocation};
use memory_addr::{pa, va};
use pagetable::{
    AArch64, AccessState, Arch, EntryKind, Flush, HugePages, LoongArch64, MappingFlags as F,
    PageSize, PageTable, PagingError, Sv39, Sv48, Upper, Va48, X86_64,
};

const RW: F = F::READ.union(F::WRITE);
const GIB: usize = 1 << 30;

fn table<A: Arch>(frames: usize) -> PageTable<A, Frames> {
    PageTable::new(Frames::new(frames, 0x10_0000_0000)).unwrap()
}

#[test]
fn map_region_of_1g_in_4k_pages_uses_exactly_515_frames_and_unmap_frees_all_but_the_root() {
    let mut pt = table::<X86_64>(600);
    pt.map_region(
        va!(0x4000_0000),
        pa!(0x8000_0000),
        GIB,
        RW,
        HugePages::Never,
    )
    .unwrap()
    .ignore();
    // Root + 1 PDPT + 1 PD + 512 PTs.
    assert_eq!(pt.handler().live_frames(), 515);
    assert_eq!(pt.table_frames(), 515);
    pt.unmap_region(va!(0x4000_0000), GIB).unwrap().ignore();
    assert_eq!(pt.handler().live_frames(), 1);
    let ledger = pt.handler().ledger();
    drop(pt);
    assert_eq!(ledger.get(), 0);
}

#[test]
fn unmap_of_last_page_frees_the_chain_of_tables_above_it() {
    let mut pt = table::<Sv48>(16);
    pt.map(va!(0x7f00_0000_1000), pa!(0x1000), PageSize::SIZE_4K, RW)
        .unwrap()
        .ignore();
    assert_eq!(pt.handler().live_frames(), 4);
    let (gone, flush) = pt.unmap(va!(0x7f00_0000_1000)).unwrap();
    flush.ignore();
    assert_eq!(
        (gone.pa, gone.size, gone.flags),
        (pa!(0x1000), PageSize::SIZE_4K, RW)
    );
    assert_eq!(pt.handler().live_frames(), 1);
}

#[test]
fn map_region_out_of_frames_at_any_point_changes_nothing() {
    let mut pt = table::<X86_64>(800);
    // Something already there, so the new range shares some tables and needs others.
    pt.map_region(
        va!(0x3fe0_0000),
        pa!(0x1000_0000),
        0x10_0000,
        RW,
        HugePages::Never,
    )
    .unwrap()
    .ignore();
    let needed = fails_cleanly_at_every_allocation(&mut pt, |pt| {
        pt.map_region(
            va!(0x3ff0_0000),
            pa!(0x2000_0000),
            GIB + 0x40_0000,
            RW,
            HugePages::Never,
        )
    });
    // [0x3ff0_0000, 0x8030_0000): the PT of 0x3fe0_0000 and the first PD exist; then a PD and
    // 512 PTs for the second GiB, a PD and two PTs for 0x8000_0000..0x8030_0000.
    assert_eq!(needed, 1 + 512 + 1 + 2);
}

#[test]
fn unmap_and_protect_region_that_split_huge_leaves_fail_cleanly_when_out_of_frames() {
    let mut pt = table::<Sv48>(64);
    pt.map(
        va!(0x80_0000_0000),
        pa!(0x80_0000_0000),
        PageSize::SIZE_512G,
        RW,
    )
    .unwrap()
    .ignore();
    // [0x80_4020_1000, 0x80_bfe0_1000): the start cuts 512G -> 1G -> 2M -> 4K (three tables),
    // the end cuts its 1G leaf -> 2M -> 4K (two more).
    let needed = fails_cleanly_at_every_allocation(&mut pt, |pt| {
        pt.unmap_region(va!(0x80_4020_1000), 0x7fc0_0000)
    });
    assert_eq!(needed, 5);
    // The 1G leaf at 0x81_0000_0000 (from the first split) is cut down to one page: two tables.
    let needed = fails_cleanly_at_every_allocation(&mut pt, |pt| {
        pt.protect_region(va!(0x81_0000_3000), 0x1000, F::READ)
    });
    assert_eq!(needed, 2);
    assert_eq!(pt.query(va!(0x81_0000_3000)).unwrap().flags, F::READ);
    assert_eq!(pt.query(va!(0x81_0000_4000)).unwrap().flags, RW);
    assert_eq!(
        pt.query(va!(0x81_0000_4000)).unwrap().size,
        PageSize::SIZE_4K
    );
    assert_eq!(
        pt.query(va!(0x80_4020_1000)).err(),
        Some(PagingError::NotMapped(va!(0x80_4020_1000)))
    );
    assert_eq!(
        pt.query(va!(0x80_4020_0000)).unwrap().size,
        PageSize::SIZE_4K
    );
}

#[test]
fn shared_kernel_half_is_read_through_and_never_freed_by_the_borrower() {
    let memory = Shared::new(Frames::new(64, 0x10_0000_0000));
    let live = || memory.0.borrow().live_frames();
    let mut kernel = PageTable::<Sv48, _>::new(memory.clone()).unwrap();
    let kva = va!(0xffff_8000_0000_0000);
    kernel
        .map_region(
            kva,
            pa!(0x8000_0000),
            4 << 20,
            RW | F::GLOBAL,
            HugePages::Never,
        )
        .unwrap()
        .ignore();
    let kernel_frames = live();

    let mut user = PageTable::<Sv48, _>::new(memory.clone()).unwrap();
    user.map(va!(0x1000), pa!(0x1000), PageSize::SIZE_4K, RW | F::USER)
        .unwrap()
        .ignore();
    // Only what the owner shares can be borrowed.
    // SAFETY: fails before linking anything.
    let unshared = unsafe { user.borrow_shared(&kernel, kva, 1 << 39) };
    assert_eq!(
        unshared.map(|f| f.ignore()),
        Err(PagingError::NotShared(kva))
    );
    let before = live();
    kernel.share(kva, 1 << 39).unwrap().ignore();
    assert_eq!(
        live(),
        before,
        "the table below the shared entry existed already"
    );
    // SAFETY: `kernel` outlives `user`, and both reach the same memory.
    unsafe { user.borrow_shared(&kernel, kva, 1 << 39) }
        .unwrap()
        .ignore();
    assert_eq!(
        user.query(va!(0xffff_8000_0012_3456)).unwrap().pa,
        pa!(0x8012_3456)
    );
    // Edits below the root, made through the owner, show through the borrower.
    kernel
        .protect_region(kva, 0x1000, F::READ | F::GLOBAL)
        .unwrap()
        .ignore();
    assert_eq!(user.query(kva).unwrap().flags, F::READ | F::GLOBAL);
    // The borrower may not edit or free what it borrows.
    assert_eq!(
        user.unmap_region(kva, 0x1000).map(|f| f.ignore()),
        Err(PagingError::Borrowed(kva))
    );
    assert_eq!(
        user.map(
            va!(0xffff_8000_4000_0000),
            pa!(0),
            PageSize::SIZE_4K,
            F::READ
        )
        .map(|f| f.ignore()),
        Err(PagingError::Borrowed(va!(0xffff_8000_4000_0000)))
    );
    // A whole root entry is the unit of sharing.
    // SAFETY: fails before linking anything.
    let partial = unsafe { user.borrow_shared(&kernel, va!(0xffff_8080_0000_0000), 0x1000) };
    assert_eq!(
        partial.map(|f| f.ignore()),
        Err(PagingError::UnalignedLen(0x1000))
    );
    assert_eq!(user.table_frames(), 4);
    drop(user);
    assert_eq!(
        live(),
        kernel_frames,
        "dropping the borrower freed only its own tables"
    );
    assert_eq!(kernel.query(kva).unwrap().pa, pa!(0x8000_0000));
    drop(kernel);
    assert_eq!(live(), 0);
}

#[test]
fn flush_tokens_merge_and_become_flush_all_past_the_threshold() {
    let a: Flush<X86_64> = Flush::none();
    assert!(a.is_empty());
    let mut pt = table::<X86_64>(16);
    let f1 = pt
        .map(va!(0xffff_8000_0000_0000), pa!(0), PageSize::SIZE_4K, RW)
        .unwrap();
    let f2 = pt
        .map(va!(0xffff_8000_0000_3000), pa!(0), PageSize::SIZE_4K, RW)
        .unwrap();
    let merged = a.merge(f1).merge(f2);
    assert_eq!(
        merged.va_range(),
        Some((va!(0xffff_8000_0000_0000), 0x4000))
    );
    assert!(!merged.is_all());
    let big = pt
        .map(va!(0xffff_8000_4000_0000), pa!(0), PageSize::SIZE_1G, RW)
        .unwrap();
    let merged = merged.merge(big);
    assert!(merged.is_all());
    assert_eq!(merged.va_range(), None);
    merged.ignore();
}

#[test]
fn hardware_set_accessed_and_dirty_bits_survive_protect_and_can_be_cleared() {
    let mut pt = table::<X86_64>(16);
    pt.map(va!(0x1000), pa!(0x5000), PageSize::SIZE_4K, F::READ)
        .unwrap()
        .ignore();
    pt.clear_access_state(va!(0x1000), AccessState::BOTH)
        .unwrap()
        .1
        .ignore();
    assert_eq!(pt.query(va!(0x1000)).unwrap().state, AccessState::default());
    // "Hardware" sets A and D in the PTE behind the library's back.
    let pte_pa = pt
        .root()
        .next(0)
        .unwrap()
        .next(0)
        .unwrap()
        .next(0)
        .unwrap()
        .frame()
        .pa()
        .as_usize() as u64
        + 8;
    let pte = pt.handler().read_phys(pte_pa);
    pt.handler().write_phys(pte_pa, pte | 0x60);
    pt.protect(va!(0x1000), F::READ | F::EXECUTE)
        .unwrap()
        .ignore();
    let t = pt.query(va!(0x1000)).unwrap();
    assert_eq!(
        t.state,
        AccessState {
            accessed: true,
            dirty: true
        }
    );
    assert_eq!(t.flags, F::READ | F::EXECUTE);
    let (before, flush) = pt
        .clear_access_state(
            va!(0x1000),
            AccessState {
                accessed: false,
                dirty: true,
            },
        )
        .unwrap();
    flush.ignore();
    assert_eq!(
        before,
        AccessState {
            accessed: true,
            dirty: true
        }
    );
    assert_eq!(
        pt.query(va!(0x1000)).unwrap().state,
        AccessState {
            accessed: true,
            dirty: false
        }
    );
}

#[test]
fn aarch64_protect_to_read_only_keeps_dirtiness_in_the_software_bit() {
    let mut pt = table::<AArch64>(16);
    pt.map(va!(0x1000), pa!(0x5000), PageSize::SIZE_4K, RW)
        .unwrap()
        .ignore();
    pt.protect(va!(0x1000), F::READ).unwrap().ignore();
    let t = pt.query(va!(0x1000)).unwrap();
    assert_eq!((t.flags, t.state.dirty), (F::READ, true));
    let raw = pt
        .root()
        .next(0)
        .unwrap()
        .next(0)
        .unwrap()
        .next(0)
        .unwrap()
        .get(1)
        .unwrap()
        .bits();
    // AP[2] set (read-only), DBM clear, software bit 55 set.
    assert_eq!(raw & (1 << 7 | 1 << 51 | 1 << 55), 1 << 7 | 1 << 55);
}

#[test]
fn splitting_an_x86_2m_leaf_moves_the_pat_bit_from_12_to_7() {
    let mut pt = table::<X86_64>(16);
    pt.map(va!(0x20_0000), pa!(0x4020_0000), PageSize::SIZE_2M, RW)
        .unwrap()
        .ignore();
    let pd = pt.root().next(0).unwrap().next(0).unwrap();
    let slot = pd.frame().pa().as_usize() as u64 + 8;
    // Set PAT (bit 12) in the 2 MiB leaf: PAT index 4, WB under the crate's PAT.
    let pte = pt.handler().read_phys(slot);
    pt.handler().write_phys(slot, pte | 1 << 12);
    assert_eq!(pt.query(va!(0x20_0000)).unwrap().pa, pa!(0x4020_0000));
    pt.unmap_region(va!(0x20_0000), 0x1000).unwrap().ignore();
    let pt_table = pt.root().next(0).unwrap().next(0).unwrap().next(1).unwrap();
    let child = pt_table.get(1).unwrap().bits();
    assert_eq!(child & 0x000f_ffff_ffff_f000, 0x4020_1000, "address intact");
    assert_ne!(child & 1 << 7, 0, "PAT moved to bit 7");
    assert_eq!(pt.query(va!(0x20_1000)).unwrap().flags, RW);
}

#[test]
fn splitting_a_loongarch_huge_leaf_moves_global_from_12_to_6() {
    let mut pt = table::<LoongArch64>(16);
    pt.map(
        va!(0x20_0000),
        pa!(0x9020_0000),
        PageSize::SIZE_2M,
        RW | F::GLOBAL,
    )
    .unwrap()
    .ignore();
    pt.protect_region(va!(0x20_0000), 0x1000, F::READ | F::GLOBAL)
        .unwrap()
        .ignore();
    let leaves = pt.root().next(0).unwrap().next(0).unwrap().next(1).unwrap();
    // The entry for 0x9020_2000: bit 12 of its address is clear, so bit 12 is free to show.
    let child = leaves.get(2).unwrap().bits();
    assert_eq!(child & (1 << 6 | 1 << 12), 1 << 6);
    assert_eq!(child & 0xffff_ffff_f000, 0x9020_2000);
    assert_eq!(pt.query(va!(0x20_1000)).unwrap().flags, RW | F::GLOBAL);
    assert_eq!(pt.query(va!(0x20_0000)).unwrap().flags, F::READ | F::GLOBAL);
}

#[test]
fn a_huge_leaf_replaces_an_empty_table_and_frees_it() {
    let mut pt = table::<X86_64>(16);
    pt.map(va!(0x20_0000), pa!(0x1000), PageSize::SIZE_4K, RW)
        .unwrap()
        .ignore();
    // Empty the page table behind the library's back, as an adopted tree might be.
    let leaf_table = pt
        .root()
        .next(0)
        .unwrap()
        .next(0)
        .unwrap()
        .next(1)
        .unwrap()
        .frame()
        .pa()
        .as_usize() as u64;
    pt.handler().write_phys(leaf_table, 0);
    assert_eq!(pt.handler().live_frames(), 4);
    pt.map_region(
        va!(0x20_0000),
        pa!(0x4000_0000),
        0x20_0000,
        RW,
        HugePages::Allowed,
    )
    .unwrap()
    .ignore();
    assert_eq!(pt.query(va!(0x20_0000)).unwrap().size, PageSize::SIZE_2M);
    assert_eq!(pt.handler().live_frames(), 3);
}

#[test]
fn walk_reports_sign_extended_upper_half_addresses_after_lower_ones() {
    let mut pt = table::<Sv48>(32);
    pt.map(
        va!(0xffff_ffff_ffff_f000),
        pa!(0x1000),
        PageSize::SIZE_4K,
        F::READ,
    )
    .unwrap()
    .ignore();
    pt.map(va!(0x1000), pa!(0x2000), PageSize::SIZE_4K, F::READ)
        .unwrap()
        .ignore();
    let mut seen = vec![];
    pt.for_each_mapping(|m| seen.push(m.va));
    assert_eq!(seen, [va!(0x1000), va!(0xffff_ffff_ffff_f000)]);
    // The very top page ends the address space: a range ending at 2^64 is fine.
    pt.unmap_region(va!(0xffff_ffff_ffff_f000), 0x1000)
        .unwrap()
        .ignore();
    assert_eq!(
        pt.unmap_region(va!(0xffff_ffff_ffff_f000), 0x2000)
            .map(|f| f.ignore()),
        Err(PagingError::RangeWraps)
    );
}

#[test]
fn debug_dump_coalesces_runs() {
    let mut pt = table::<AArch64<Va48, Upper>>(16);
    pt.map_region(
        va!(0xffff_0000_0000_0000),
        pa!(0x4000_0000),
        0x10_0000,
        RW,
        HugePages::Never,
    )
    .unwrap()
    .ignore();
    pt.map(
        va!(0xffff_0000_4000_0000),
        pa!(0x900_0000),
        PageSize::SIZE_4K,
        RW | F::DEVICE,
    )
    .unwrap()
    .ignore();
    let dump = format!("{pt:?}");
    let lines: Vec<&str> = dump.lines().collect();
    assert_eq!(lines.len(), 3, "{dump}");
    assert!(
        lines[1].contains("256 x 4K") && lines[1].contains("RW---"),
        "{dump}"
    );
    assert!(lines[2].contains("device"), "{dump}");
}

#[test]
fn from_root_rejects_a_root_that_no_table_of_the_mode_could_have() {
    let frames = Frames::new(4, 0x10_0000_0000);
    // SAFETY: the call fails before it could take anything over.
    let unaligned = unsafe { PageTable::<X86_64, _>::from_root(pa!(0x10_0000_0800), frames) };
    assert_eq!(
        unaligned.err(),
        Some(PagingError::UnalignedPa(pa!(0x10_0000_0800)))
    );
    let frames = Frames::new(4, 0x10_0000_0000);
    // SAFETY: as above.
    let wide = unsafe { PageTable::<Sv39, _>::from_root(pa!(1 << 56), frames) };
    assert_eq!(wide.err(), Some(PagingError::PaTooWide(pa!(1 << 56))));
}

#[test]
fn new_table_has_an_all_empty_root() {
    let pt = table::<AArch64<Va48>>(4);
    assert!(pt.root().entries().all(|e| e.kind() == EntryKind::Empty));
    assert_eq!(pt.table_frames(), 1);
}

/// A cursor's calls give exactly what the table's own calls give, on the same sequence: maps
/// on neighbouring pages across table boundaries, collisions, bad input, queries of holes and
/// huge leaves, unmaps that free the table it remembers.
fn cursor_agrees_with_the_table<A: Arch>(base: usize) {
    let at = |v: usize| A::Addr::from(base.wrapping_add(v));
    let mut a = table::<A>(64);
    let mut b = table::<A>(64);
    for pt in [&mut a, &mut b] {
        pt.map_region(
            at(0x40_0000),
            pa!(0x4000_0000),
            0x20_0000,
            RW,
            HugePages::Allowed,
        )
        .unwrap()
        .ignore();
    }
    let mut c = a.cursor();
    let pages = (0x1f_c000..0x20_4000).step_by(0x1000).chain([
        0x1f_d000, // already mapped by this run
        0x40_1000, // inside the huge leaf
        0x1f_e800, // unaligned
        1 << 50,   // outside every mode here
        0x60_0000, // a new table
        0x60_1000,
    ]);
    for (i, v) in pages.enumerate() {
        let (v, p) = (at(v), pa!(0x1000_0000 + i * 0x1000));
        let flags = if i % 3 == 0 { F::READ } else { RW };
        assert_eq!(
            c.map(v, p, PageSize::SIZE_4K, flags).map(Flush::ignore),
            b.map(v, p, PageSize::SIZE_4K, flags).map(Flush::ignore),
            "map {v:?}"
        );
        for q in [
            v,
            A::Addr::from(Into::<usize>::into(v) + 0x1000),
            A::Addr::from(0x40_2000),
            A::Addr::from(0x80_0000),
        ] {
            assert_eq!(c.query(q), b.query(q), "query {q:?}");
        }
    }
    // Unmap every page of the table the cursor remembers (it is freed), then map through it.
    for v in (0x20_0000..0x20_4000).step_by(0x1000) {
        assert_eq!(c.query(at(v)), b.query(at(v)));
        let (m, f) = c.unmap(at(v)).unwrap();
        f.ignore();
        assert_eq!(
            Ok(m),
            b.unmap(at(v)).map(|(m, f)| {
                f.ignore();
                m
            })
        );
        assert_eq!(c.query(at(v)), b.query(at(v)));
    }
    for v in [0x20_0000, 0x20_1000] {
        let got = c.map(at(v), pa!(0x7000_0000), PageSize::SIZE_4K, RW);
        let want = b.map(at(v), pa!(0x7000_0000), PageSize::SIZE_4K, RW);
        assert_eq!(got.map(Flush::ignore), want.map(Flush::ignore));
        assert_eq!(c.query(at(v)), b.query(at(v)));
    }

    let (mut wa, mut wb) = (vec![], vec![]);
    a.for_each_mapping(|m| wa.push(m));
    b.for_each_mapping(|m| wb.push(m));
    assert_eq!(wa, wb);
    assert_eq!(a.handler().live_frames(), b.handler().live_frames());
}

#[test]
fn cursor_agrees_with_the_table_in_every_mode() {
    cursor_agrees_with_the_table::<X86_64>(0);
    cursor_agrees_with_the_table::<AArch64>(0);
    cursor_agrees_with_the_table::<AArch64<Va48, Upper>>(0xffff_0000_0000_0000);
    cursor_agrees_with_the_table::<Sv39>(0);
    cursor_agrees_with_the_table::<Sv48>(0xffff_8000_0000_0000);
    cursor_agrees_with_the_table::<LoongArch64>(0);
}

/// A huge map through the cursor may replace the empty table it remembers; the cursor must not
/// use the freed table afterwards (the test handler poisons freed frames).
#[test]
fn cursor_forgets_a_table_that_a_huge_map_replaced() {
    let mut pt = table::<X86_64>(16);
    let mut c = pt.cursor();
    c.map(va!(0x20_0000), pa!(0x1000), PageSize::SIZE_4K, RW)
        .unwrap()
        .ignore();
    assert!(c.query(va!(0x20_0000)).is_ok());

    let leaf_table = pt.root().next(0).unwrap().next(0).unwrap().next(1).unwrap();
    let leaf_table = leaf_table.frame().pa().as_usize() as u64;
    pt.handler().write_phys(leaf_table, 0);
    let mut c = pt.cursor();
    assert_eq!(
        c.query(va!(0x20_0000)),
        Err(PagingError::NotMapped(va!(0x20_0000)))
    );
    c.map(va!(0x20_0000), pa!(0x4000_0000), PageSize::SIZE_2M, RW)
        .unwrap()
        .ignore();
    let t = c.query(va!(0x20_1000)).unwrap();
    assert_eq!((t.size, t.pa), (PageSize::SIZE_2M, pa!(0x4000_1000)));
    assert_eq!(
        c.map(va!(0x20_3000), pa!(0x3000), PageSize::SIZE_4K, RW)
            .map(Flush::ignore),
        Err(PagingError::AlreadyMapped(va!(0x20_3000)))
    );
}

/// Maps one leaf of each size type the mode has with `map_page` and checks that `query`
/// reports exactly that size (1 << shift, written out) at the address mapped.
macro_rules! typed_sizes_map_as_their_page_size {
    ($mode:ty: $($size:ident = $shift:literal),*) => {{
        let mut pt = table::<$mode>(64);
        $(
            let bytes = 1usize << $shift;
            // Each leaf at twice its size: leaves of different sizes never overlap.
            let at = bytes * 2;
            pt.map_page::<pagetable::$size>(<$mode as Arch>::Addr::from(at), pa!(bytes), F::READ).unwrap().ignore();
            let t = pt.query(<$mode as Arch>::Addr::from(at)).unwrap();
            let what = (<$mode as Arch>::NAME, stringify!($size));
            assert_eq!((t.size.bytes(), t.pa), (bytes, pa!(bytes)), "{what:?}");
        )*
    }};
}

#[test]
fn map_page_maps_one_leaf_of_the_typed_size_in_every_mode_family() {
    typed_sizes_map_as_their_page_size!(X86_64: Size4K = 12, Size2M = 21, Size1G = 30);
    typed_sizes_map_as_their_page_size!(Sv48: Size4K = 12, Size2M = 21, Size1G = 30, Size512G = 39);
    typed_sizes_map_as_their_page_size!(pagetable::Sv57: Size4K = 12, Size256T = 48);
    typed_sizes_map_as_their_page_size!(LoongArch64: Size4K = 12, Size2M = 21, Size1G = 30);
    typed_sizes_map_as_their_page_size!(AArch64: Size4K = 12, Size2M = 21, Size1G = 30);
    typed_sizes_map_as_their_page_size!(
        AArch64<Va48, pagetable::Lower, pagetable::Granule16K>: Size16K = 14, Size32M = 25
    );
    typed_sizes_map_as_their_page_size!(
        AArch64<Va48, pagetable::Lower, pagetable::Granule64K>: Size64K = 16, Size512M = 29
    );
    typed_sizes_map_as_their_page_size!(pagetable::AArch64S2<pagetable::Ipa48>: Size4K = 12, Size2M = 21, Size1G = 30);
    typed_sizes_map_as_their_page_size!(pagetable::Ept: Size4K = 12, Size2M = 21, Size1G = 30);
    typed_sizes_map_as_their_page_size!(pagetable::Sv48x4: Size4K = 12, Size512G = 39);
}

/// `map` and `unmap` remember the last-level table they last walked to; every call that may
/// free that table makes them forget it, so the next single-page call in its span finds the
/// table that is linked there now, not the freed one.
#[test]
fn single_page_calls_never_reach_a_freed_table() {
    let (a, b, c) = (0x4000_0000usize, 0x4000_1000usize, 0x4000_2000usize);
    type Free = fn(&mut PageTable<X86_64, Frames>);
    let ways: [(&str, Free); 3] = [
        ("unmap of the last page", |pt| {
            pt.unmap(va!(0x4000_1000)).unwrap().1.ignore();
        }),
        ("unmap_region", |pt| {
            pt.unmap_region(va!(0x4000_0000), 0x20_0000)
                .unwrap()
                .ignore();
        }),
        ("take_marker", |pt| {
            pt.set_marker(va!(0x4000_3000), 7).unwrap();
            pt.unmap(va!(0x4000_1000)).unwrap().1.ignore();
            pt.take_marker(va!(0x4000_3000)).unwrap().1.ignore();
        }),
    ];
    for (way, free) in ways {
        let mut pt = table::<X86_64>(16);
        for v in [a, b] {
            pt.map(va!(v), pa!(0x9000_0000 + v - a), PageSize::SIZE_4K, RW)
                .unwrap()
                .ignore();
        }
        // The fast path now remembers the table; empty it by a fast unmap, then free it.
        pt.unmap(va!(a)).unwrap().1.ignore();
        free(&mut pt);
        // The tables above it emptied too: only the root is left.
        assert_eq!(
            pt.table_frames(),
            1,
            "{way}: the last-level table was freed"
        );
        assert_eq!(
            pt.unmap(va!(b)).map(|(m, f)| (m, f.ignore())),
            Err(PagingError::NotMapped(va!(b))),
            "{way}"
        );
        pt.map(va!(c), pa!(0x9000_2000), PageSize::SIZE_4K, RW)
            .unwrap()
            .ignore();
        assert_eq!(pt.query(va!(c)).unwrap().pa, pa!(0x9000_2000), "{way}");
        assert_eq!(pt.table_frames(), 4, "{way}");
        assert_eq!(pt.unmap(va!(c)).unwrap().0.pa, pa!(0x9000_2000), "{way}");
        assert!(pt.query(va!(c)).is_err(), "{way}");
        assert_eq!(pt.table_frames(), 1, "{way}");
    }
}
