//! Every kind of bad input through the public API, one case each: the exact error, and a table
//! whose bytes and frames are exactly as before the call. The README's bad-input table is this
//! list; `readme_lists_every_case` keeps the two the same.

mod common;

use common::{Frames, addr};
use memory_addr::{pa, va};
use pagetable::arch::level_shift;
use pagetable::arch::mem_layout::ResetPat;
use pagetable::arch::x86_64::Paging4;
use pagetable::{
    AArch64, AArch64S2, Arch, El2, El3, Ept, Granule16K, Granule64K, HugePages, Ipa40, Liveness,
    LoongArch64, Lower, MappingFlags as F, PageSize, PageTable, PagingError as E, PhysAddr, Sv39,
    Sv39x4, Sv48, Va48, VirtAddr, X86, X86_64,
};

const RW: F = F::READ.union(F::WRITE);

/// A table with 64 KiB of pages at 0x1000_0000, a block (2 MiB with 4K pages) at 0x4000_0000
/// and a marker at 0x3000_0000.
fn setup<A: Arch>() -> PageTable<A, Frames> {
    let mut pt = PageTable::new(Frames::new(32 << (A::PAGE_SHIFT - 12), 0x10_0000_0000)).unwrap();
    let block = PageSize::from_shift(level_shift::<A>(2)).unwrap();
    // The regimes with one privilege level (AArch64 EL2, EL3) have global leaves only.
    let rw = if A::check_flags(RW).is_ok() {
        RW
    } else {
        RW | F::GLOBAL
    };
    pt.map_region(
        addr(0x1000_0000),
        pa!(0x8000_0000),
        0x1_0000,
        rw,
        HugePages::Never,
    )
    .unwrap()
    .ignore();
    pt.map(addr(0x4000_0000), PhysAddr::from(block.bytes()), block, rw)
        .unwrap()
        .ignore();
    pt.set_marker(addr(0x3000_0000), 9).unwrap();
    pt
}

/// One bad input: what it is, the call, and the error it must get.
struct Case {
    input: &'static str,
    call: &'static str,
    want: E,
    /// The call's error (or `Ok` if it wrongly succeeded), and whether the table was untouched.
    got: (Result<(), E>, bool),
}

fn run<A: Arch>(
    call: impl FnOnce(&mut PageTable<A, Frames>) -> Result<(), E>,
) -> (Result<(), E>, bool) {
    let mut pt = setup::<A>();
    let (bytes, frames) = (pt.handler().snapshot(), pt.handler().live_frames());
    let got = call(&mut pt);
    let unchanged = pt.handler().snapshot() == bytes && pt.handler().live_frames() == frames;
    (got, unchanged)
}

macro_rules! cases {
    ($($input:literal, $arch:ty, |$pt:ident| $call:expr => $want:expr;)*) => {
        vec![$(Case {
            input: $input,
            call: concat!(stringify!($arch), ": ", stringify!($call)),
            want: $want,
            got: run::<$arch>(|$pt| $call.map(|_| ())),
        }),*]
    };
}

fn cases() -> Vec<Case> {
    let high = 0xffff_8000_0000_0000usize;
    cases! {
        "unaligned virtual address", X86_64,
            |pt| pt.map_region(addr(0x2000_0800), pa!(0x1000), 0x1000, RW, HugePages::Never)
            => E::UnalignedVa(va!(0x2000_0800));
        "unaligned physical address", X86_64,
            |pt| pt.map_region(addr(0x2000_0000), pa!(0x1008), 0x1000, RW, HugePages::Never)
            => E::UnalignedPa(pa!(0x1008));
        "unaligned length", X86_64,
            |pt| pt.map_region(addr(0x2000_0000), pa!(0x1000), 0x1800, RW, HugePages::Never)
            => E::UnalignedLen(0x1800);
        "zero length", X86_64,
            |pt| pt.unmap_region(addr(0x1000_0000), 0)
            => E::EmptyRange;
        "virtual address not canonical", X86_64,
            |pt| pt.query(addr(0x8000_0000_0000))
            => E::NotCanonical(va!(0x8000_0000_0000));
        "virtual address beyond the mode's width", Sv39,
            |pt| pt.map(addr(0x40_0000_0000), pa!(0), PageSize::SIZE_4K, RW)
            => E::NotCanonical(va!(0x40_0000_0000));
        "range running off the lower half", X86_64,
            |pt| pt.protect_region(addr(0x7fff_ffff_f000), 0x2000, F::READ)
            => E::NotCanonical(va!(0x8000_0000_0000));
        "range running past the end of the TTBR0 space", AArch64,
            |pt| pt.unmap_region(addr(0xffff_ffff_f000), 0x2000)
            => E::NotCanonical(va!(0x1_0000_0000_0000));
        "virtual range wrapping past the top", X86_64,
            |pt| pt.unmap_region(addr(0xffff_ffff_ffff_f000), 0x2000)
            => E::RangeWraps;
        "physical range wrapping past the top", X86_64,
            |pt| pt.map_region(addr(0x2000_0000), PhysAddr::from(usize::MAX - 0xfff), 0x2000, RW, HugePages::Never)
            => E::RangeWraps;
        "physical address beyond the mode's width", X86_64,
            |pt| pt.map(addr(0x2000_0000), pa!(1 << 52), PageSize::SIZE_4K, RW)
            => E::PaTooWide(pa!(1 << 52));
        "physical range ending beyond the width", LoongArch64,
            |pt| pt.map_region(addr(0x2000_0000), pa!(0xffff_ffff_f000), 0x2000, RW, HugePages::Never)
            => E::PaTooWide(pa!(0x1_0000_0000_0000));
        "overlapping an existing mapping", X86_64,
            |pt| pt.map_region(addr(0x0fff_e000), pa!(0), 0x4000, RW, HugePages::Never)
            => E::AlreadyMapped(va!(0x1000_0000));
        "overlapping a huge leaf from inside", X86_64,
            |pt| pt.map(addr(0x4010_0000), pa!(0), PageSize::SIZE_4K, RW)
            => E::AlreadyMapped(va!(0x4010_0000));
        "huge leaf over a table that maps something", X86_64,
            |pt| pt.map(addr(0x1000_0000), pa!(0), PageSize::SIZE_2M, RW)
            => E::AlreadyMapped(va!(0x1000_0000));
        "huge leaf at a 4K-aligned physical address", X86_64,
            |pt| pt.map(addr(0x6000_0000), pa!(0x1000), PageSize::SIZE_2M, RW)
            => E::UnalignedPa(pa!(0x1000));
        "huge leaf at a 4K-aligned virtual address", X86_64,
            |pt| pt.map(addr(0x6000_1000), pa!(0), PageSize::SIZE_2M, RW)
            => E::UnalignedVa(va!(0x6000_1000));
        "leaf size the mode does not have", X86_64,
            |pt| pt.map(addr(0), pa!(0), PageSize::SIZE_512G, RW)
            => E::SizeNotSupported(PageSize::SIZE_512G);
        "leaf size that is not a level's", Sv39,
            |pt| pt.map(addr(0), pa!(0), PageSize::from_shift(14).unwrap(), RW)
            => E::SizeNotSupported(PageSize::from_shift(14).unwrap());
        "flags without read on x86 (present means readable)", X86_64,
            |pt| pt.map(addr(0x2000_0000), pa!(0), PageSize::SIZE_4K, F::WRITE)
            => E::FlagsNotExpressible(F::WRITE);
        "write without read on RISC-V (reserved)", Sv39,
            |pt| pt.protect(addr(0x1000_0000), F::WRITE)
            => E::FlagsNotExpressible(F::WRITE);
        "no access at all on LoongArch", LoongArch64,
            |pt| pt.protect_region(addr(0x1000_0000), 0x1000, F::EMPTY)
            => E::FlagsNotExpressible(F::EMPTY);
        "guest physical address beyond a 40-bit IPA", AArch64S2<Ipa40>,
            |pt| pt.map(addr(1 << 40), pa!(0), PageSize::SIZE_4K, RW)
            => E::NotCanonical(va!(1 << 40));
        "guest physical address beyond Sv39x4's 41 bits", Sv39x4,
            |pt| pt.map_region(addr(0x1ff_ffff_f000), pa!(0), 0x2000, RW, HugePages::Never)
            => E::NotCanonical(va!(0x200_0000_0000));
        "a stage 1 flag at stage 2", AArch64S2<Ipa40>,
            |pt| pt.map(addr(0x2000_0000), pa!(0), PageSize::SIZE_4K, RW | F::USER)
            => E::FlagsNotExpressible(RW | F::USER);
        "global in the G-stage", Sv39x4,
            |pt| pt.protect_region(addr(0x1000_0000), 0x1000, RW | F::GLOBAL)
            => E::FlagsNotExpressible(RW | F::GLOBAL);
        "write-only in EPT (a misconfiguration)", Ept,
            |pt| pt.protect(addr(0x1000_0000), F::WRITE)
            => E::FlagsNotExpressible(F::WRITE);
        "EPT's ignore-PAT in a stage 1 mode", X86_64,
            |pt| pt.map(addr(0x2000_0000), pa!(0), PageSize::SIZE_4K, RW | F::IGNORE_PAT)
            => E::FlagsNotExpressible(RW | F::IGNORE_PAT);
        "a 4K-granule size in the 16K granule", AArch64<Va48, Lower, Granule16K>,
            |pt| pt.map(addr(0x8000_0000), pa!(0), PageSize::SIZE_2M, RW)
            => E::SizeNotSupported(PageSize::SIZE_2M);
        "a page smaller than the 64K granule's", AArch64<Va48, Lower, Granule64K>,
            |pt| pt.map_region(addr(0x2000_0000), pa!(0), 0x1000, RW, HugePages::Never)
            => E::UnalignedLen(0x1000);
        "a block split in a live table that refuses breaks", AArch64,
            |pt| {
                pt.set_liveness(Liveness::LiveNoBreak);
                pt.unmap_region(addr(0x4000_1000), 0x1000)
            }
            => E::NeedsBreak(va!(0x4000_1000));
        "unmap of an unmapped page", X86_64,
            |pt| pt.unmap(addr(0x2000_0000))
            => E::NotMapped(va!(0x2000_0000));
        "remap of an unmapped page", X86_64,
            |pt| pt.remap(addr(0x2000_0000), pa!(0))
            => E::NotMapped(va!(0x2000_0000));
        "protect of an unmapped page", Sv39,
            |pt| pt.protect(addr(0x2000_0000), RW)
            => E::NotMapped(va!(0x2000_0000));
        "protect_region over a hole", X86_64,
            |pt| pt.protect_region(addr(0x1000_0000), 0x2_0000, F::READ)
            => E::NotMapped(va!(0x1001_0000));
        "access-state clear of an unmapped page", AArch64,
            |pt| pt.clear_access_state(addr(0x2000_0000), pagetable::AccessState { accessed: true, dirty: true })
            => E::NotMapped(va!(0x2000_0000));
        "single-leaf call inside a huge leaf", X86_64,
            |pt| pt.unmap(addr(0x4000_1000))
            => E::InsideLeaf { leaf: va!(0x4000_0000), size: PageSize::SIZE_2M };
        "marker payload wider than the mode's marker bits", X86_64,
            |pt| pt.set_marker(addr(0x2000_0000), 1 << 61)
            => E::PayloadTooWide(1 << 61);
        "marker payload wider than EPT's 58 bits", Ept,
            |pt| pt.set_marker(addr(0x2000_0000), 1 << 58)
            => E::PayloadTooWide(1 << 58);
        "marker at an unaligned address", Sv39,
            |pt| pt.set_marker(addr(0x2000_0800), 1)
            => E::UnalignedVa(va!(0x2000_0800));
        "marker where a leaf maps", X86_64,
            |pt| pt.set_marker(addr(0x1000_1000), 1)
            => E::AlreadyMapped(va!(0x1000_1000));
        "marker inside a huge leaf", AArch64,
            |pt| pt.set_marker(addr(0x4000_3000), 1)
            => E::AlreadyMapped(va!(0x4000_3000));
        "taking a marker from a leaf (a non-present entry expected)", X86_64,
            |pt| pt.take_marker(addr(0x1000_0000))
            => E::NotMarker(va!(0x1000_0000));
        "taking a marker from a hole", LoongArch64,
            |pt| pt.take_marker(addr(0x2000_0000))
            => E::NotMarker(va!(0x2000_0000));
        "unmap of a marker (a leaf expected)", X86_64,
            |pt| pt.unmap(addr(0x3000_0000))
            => E::NotMapped(va!(0x3000_0000));
        "protect of a marker (a leaf expected)", AArch64,
            |pt| pt.protect(addr(0x3000_0000), RW)
            => E::NotMapped(va!(0x3000_0000));
        "an inaccessible leaf on EPT (its present bits are its permissions)", Ept,
            |pt| pt.protect(addr(0x1000_0000), RW | F::INACCESSIBLE)
            => E::FlagsNotExpressible(RW | F::INACCESSIBLE);
        "software bits beyond the mode's (RISC-V has one)", Sv39,
            |pt| pt.set_soft_bits(addr(0x1000_0000), 0b10)
            => E::SoftBitsTooWide(0b10);
        "scattered frames, one unaligned", X86_64,
            |pt| pt.map_frames(addr(0x2000_0000), &[pa!(0x5000), pa!(0x7008), pa!(0x9000)], RW)
            => E::UnalignedPa(pa!(0x7008));
        "scattered frames, one beyond the width", Sv39,
            |pt| pt.map_frames(addr(0x2000_0000), &[pa!(0x5000), pa!(1 << 56)], RW)
            => E::PaTooWide(pa!(1 << 56));
        "scattered frames, none", X86_64,
            |pt| pt.map_frames(addr(0x2000_0000), &[], RW)
            => E::EmptyRange;
        "scattered frames over a mapping", AArch64,
            |pt| pt.map_frames(addr(0x0fff_f000), &[pa!(0x5000), pa!(0x9000)], RW)
            => E::AlreadyMapped(va!(0x1000_0000));
        "remap_region of a block to an address unaligned for it", X86_64,
            |pt| pt.remap_region(addr(0x4000_0000), pa!(0x7000_1000), 0x20_0000, RW)
            => E::UnalignedPa(pa!(0x7000_1000));
        "remap_region over a hole", Sv39,
            |pt| pt.remap_region(addr(0x1000_f000), pa!(0x7000_0000), 0x2000, RW)
            => E::NotMapped(va!(0x1001_0000));
        "remap to an address unaligned for the leaf", X86_64,
            |pt| pt.remap(addr(0x4000_0000), pa!(0x1000))
            => E::UnalignedPa(pa!(0x1000));
        "borrow of less than a root entry", X86_64,
            |pt| {
                let other = setup::<X86_64>();
                // SAFETY: the call fails before anything is borrowed.
                unsafe { pt.borrow_shared(&other, VirtAddr::from(high), 0x1000) }
            }
            => E::UnalignedLen(0x1000);
        "borrow over a root entry in use", X86_64,
            |pt| {
                let other = setup::<X86_64>();
                // SAFETY: the call fails before anything is borrowed.
                unsafe { pt.borrow_shared(&other, addr(0), 1 << 39) }
            }
            => E::AlreadyMapped(va!(0));
        "borrow of a range the owner does not share", X86_64,
            |pt| {
                let other = setup::<X86_64>();
                // SAFETY: the call fails before anything is borrowed.
                unsafe { pt.borrow_shared(&other, VirtAddr::from(high), 1 << 39) }
            }
            => E::NotShared(VirtAddr::from(high));
        "a root-level leaf in a shared range", Sv48,
            |pt| {
                // Root entry 0 holds a table already: sharing it changes no byte.
                pt.share(addr(0), 1 << 39).unwrap().ignore();
                pt.map(addr(0), pa!(0), PageSize::SIZE_512G, RW)
            }
            => E::Shared(va!(0));
        "map into a borrowed range", X86_64,
            |pt| {
                let mut other = setup::<X86_64>();
                other.share(VirtAddr::from(high), 1 << 39).unwrap().ignore();
                // SAFETY: `other` outlives the borrow, which is released before it is dropped.
                unsafe { pt.borrow_shared(&other, VirtAddr::from(high), 1 << 39) }.unwrap().ignore();
                let got = pt.map(VirtAddr::from(high), pa!(0), PageSize::SIZE_4K, RW).map(|f| f.ignore());
                pt.release_borrowed().ignore();
                got
            }
            => E::Borrowed(VirtAddr::from(0xffff_8000_0000_0000usize));
        "walk of a bad range", X86_64,
            |pt| pt.for_each_mapping_in(addr(0x1000), 0x800, |_| {})
            => E::UnalignedLen(0x800);
        "adopting a root that is not table-aligned", X86_64,
            |_pt| {
                // SAFETY: the call fails before it could take anything over.
                unsafe { PageTable::<X86_64, _>::from_root(pa!(0x10_0000_0800), Frames::new(1, 0x10_0000_0000)) }
            }
            => E::UnalignedPa(pa!(0x10_0000_0800));
        "a PCID wider than 12 bits", X86_64,
            |pt| pt.set_tlb_id(Some(0x1000))
            => E::TlbIdTooWide { id: 0x1000, bits: 12 };
        "a LoongArch ASID wider than 10 bits", LoongArch64,
            |pt| pt.set_tlb_id(Some(0x400))
            => E::TlbIdTooWide { id: 0x400, bits: 10 };
        "a G-stage VMID wider than 14 bits", Sv39x4,
            |pt| pt.set_tlb_id(Some(0x4000))
            => E::TlbIdTooWide { id: 0x4000, bits: 14 };
        "an ASID in the EL2 regime (it has none)", AArch64<Va48, El2>,
            |pt| pt.set_tlb_id(Some(1))
            => E::TlbIdTooWide { id: 1, bits: 0 };
        "an EPT identifier (EPTP is the context)", Ept,
            |pt| pt.set_tlb_id(Some(1))
            => E::TlbIdTooWide { id: 1, bits: 0 };
        "EL0 access at EL3 (one privilege level)", AArch64<Va48, El3>,
            |pt| pt.map(addr(0x2000_0000), pa!(0), PageSize::SIZE_4K, RW | F::GLOBAL | F::USER)
            => E::FlagsNotExpressible(RW | F::GLOBAL | F::USER);
        "a non-global leaf at EL2 (no ASIDs)", AArch64<Va48, El2>,
            |pt| pt.map(addr(0x2000_0000), pa!(0), PageSize::SIZE_4K, RW)
            => E::FlagsNotExpressible(RW);
        "a non-secure leaf outside EL3", AArch64<Va48, El2>,
            |pt| pt.map(addr(0x2000_0000), pa!(0), PageSize::SIZE_4K, RW | F::GLOBAL | F::NON_SECURE)
            => E::FlagsNotExpressible(RW | F::GLOBAL | F::NON_SECURE);
        "write-combining where IA32_PAT has no WC entry", X86<Paging4, ResetPat>,
            |pt| pt.protect(addr(0x1000_0000), RW | F::UNCACHED)
            => E::FlagsNotExpressible(RW | F::UNCACHED);
        "adopting a root beyond the mode's physical width", Sv39,
            |_pt| {
                // SAFETY: as above.
                unsafe { PageTable::<Sv39, _>::from_root(pa!(1 << 56), Frames::new(1, 0x10_0000_0000)) }
            }
            => E::PaTooWide(pa!(1 << 56));
    }
}

#[test]
fn every_bad_input_gets_its_error_and_changes_nothing() {
    let cases = cases();
    for c in &cases {
        assert_eq!(c.got.0, Err(c.want), "{}: {}", c.input, c.call);
        assert!(c.got.1, "{}: {} changed the table", c.input, c.call);
    }
    println!("bad inputs tried: {}", cases.len());
}

/// The README's table, between its markers, is exactly this list.
#[test]
fn readme_lists_every_case() {
    let mut table = String::from("| bad input | mode | error |\n|---|---|---|\n");
    for c in cases() {
        let mode = c.call.split(':').next().unwrap();
        let error = format!("{:?}", c.want);
        let variant = error.split(['(', ' ']).next().unwrap();
        table += &format!("| {} | {mode} | `{variant}` |\n", c.input);
    }
    let readme = include_str!("../README.md");
    let start = "<!-- bad-input table: tests/bad_input.rs -->\n";
    let found = readme
        .split_once(start)
        .and_then(|(_, rest)| rest.split_once("<!-- end -->"))
        .map(|(t, _)| t);
    assert_eq!(
        found,
        Some(table.as_str()),
        "README's bad-input table is out of date; it should be:\n{table}"
    );
}
