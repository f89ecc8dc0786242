//! No accessed/dirty mark is lost, whenever the MMU of another CPU makes it: a second MMU
//! (`common::mmu`) stores through the leaf at every moment of each call that reports or keeps
//! the access state, in every mode, and the store must then be in the state the call reported
//! or in the entry it left. A state a call reports is the one the atomic operation that changed
//! the entry returned, not one read before it.

mod common;

use common::at;
use common::hw::Hardware;
use common::mmu::{Mmu, leaf_entry};
use pagetable::arch::level_shift;
use pagetable::{
    AArch64, AArch64S2, AccessState, Arch, Ept, Granule16K, Granule64K, HugePages, Ipa40, Ipa48,
    Liveness, LoongArch64, Lower, MappingFlags as F, PageTable, PhysAddr, Sv39, Sv39x4, Sv48,
    Sv48x4, Sv57, Upper, Va36, Va39, Va42, Va47, Va48, X86_64, X86_64La57,
};

const RW: F = F::READ.union(F::WRITE);

type Pt<M> = PageTable<M, Mmu<M>>;

/// Where each test maps: a folded address aligned to every block size here, unfolded.
fn base<M: Arch>() -> u64 {
    M::unfold(1 << 30).as_usize() as u64
}

fn page<M: Arch>() -> u64 {
    1 << M::PAGE_SHIFT
}

fn block<M: Arch>() -> u64 {
    1 << level_shift::<M>(2)
}

/// A table with one writable leaf at `base()` (a page, or a level-2 block if `huge`), made
/// clean, so that a store through it is a new mark.
fn clean_table<M: Hardware + Arch>(liveness: Liveness, huge: bool) -> Pt<M> {
    let mut pt = PageTable::new(Mmu::<M>::new(256, 0x10_0000_0000)).unwrap();
    pt.set_liveness(liveness);
    let (len, hp) = if huge {
        (block::<M>(), HugePages::Allowed)
    } else {
        (page::<M>(), HugePages::Never)
    };
    pt.map_region(
        at::<M>(base::<M>()),
        PhysAddr::from(0x8000_0000),
        len as usize,
        RW,
        hp,
    )
    .unwrap()
    .ignore();
    let (state, flush) = pt
        .clear_access_state(at::<M>(base::<M>()), AccessState::BOTH)
        .unwrap();
    flush.ignore();
    assert!(state.dirty, "{}: a new writable leaf starts dirty", M::NAME);
    assert!(
        !pt.query(at::<M>(base::<M>())).unwrap().state.dirty,
        "{}: cleared",
        M::NAME
    );
    pt
}

/// Runs `op` on a fresh clean table once for each moment of it, with the second MMU storing
/// through the leaf at that moment. `op` returns the dirty state it reported, if it reports
/// one; `kept` reads the dirty state left in the table. Whenever the store happened, one of
/// the two must show it.
fn sweep<M: Hardware + Arch>(
    what: &str,
    liveness: Liveness,
    huge: bool,
    op: impl Fn(&mut Pt<M>) -> Option<bool>,
    kept: impl Fn(&Pt<M>) -> bool,
) {
    for at in 0.. {
        let mut pt = clean_table::<M>(liveness, huge);
        let root = pt.root_paddr().as_usize() as u64;
        let (entry, depth) = leaf_entry::<M>(&pt.handler().frames, root, base::<M>());
        pt.handler().arm(at, entry, depth);
        let reported = op(&mut pt);
        let (marked, calls) = pt.handler().disarm();
        if marked {
            assert!(
                reported == Some(true) || kept(&pt),
                "{}, {what}: a store at moment {at} of {calls} was lost (reported {reported:?}, \
                 not kept in the table)",
                M::NAME
            );
        } else if at >= calls {
            assert!(at > 0, "{}, {what}: the call reads no table", M::NAME);
            return;
        }
    }
}

fn dirty_at<M: Hardware + Arch>(pt: &Pt<M>, addr: u64) -> bool {
    pt.query(at::<M>(addr)).is_ok_and(|t| t.state.dirty)
}

fn every_call_keeps_or_reports_a_store_at_every_moment<M: Hardware + Arch>() {
    let b = base::<M>();
    sweep::<M>(
        "clear_access_state",
        Liveness::Offline,
        false,
        |pt| {
            let (state, flush) = pt
                .clear_access_state(at::<M>(b), AccessState::BOTH)
                .unwrap();
            flush.ignore();
            Some(state.dirty)
        },
        |pt| dirty_at(pt, b),
    );
    sweep::<M>(
        "unmap",
        Liveness::Offline,
        false,
        |pt| {
            let (gone, flush) = pt.unmap(at::<M>(b)).unwrap();
            flush.ignore();
            Some(gone.state.dirty)
        },
        |_| false,
    );
    for liveness in [Liveness::Offline, Liveness::Live] {
        sweep::<M>(
            "unmap_region_with",
            liveness,
            false,
            |pt| {
                let mut dirty = None;
                pt.unmap_region_with(at::<M>(b), page::<M>() as usize, |c| {
                    dirty = Some(c.leaf().expect("a leaf").state.dirty);
                })
                .unwrap()
                .ignore();
                dirty
            },
            |_| false,
        );
        sweep::<M>(
            "protect_region_with to read-only",
            liveness,
            false,
            |pt| {
                let mut dirty = None;
                pt.protect_region_with(at::<M>(b), page::<M>() as usize, F::READ, |m| {
                    dirty = Some(m.state.dirty);
                })
                .unwrap()
                .ignore();
                dirty
            },
            |pt| dirty_at(pt, b),
        );
        sweep::<M>(
            "unmap_region_with splitting a block",
            liveness,
            true,
            |pt| {
                let mut dirty = None;
                pt.unmap_region_with(at::<M>(b), page::<M>() as usize, |c| {
                    let m = c.leaf().expect("a leaf");
                    assert_eq!(m.va, at::<M>(b), "{}: the page unmapped", M::NAME);
                    dirty = Some(m.state.dirty);
                })
                .unwrap()
                .ignore();
                dirty
            },
            |pt| dirty_at(pt, b + page::<M>()),
        );
        sweep::<M>(
            "protect to read-only",
            liveness,
            false,
            |pt| {
                pt.protect(at::<M>(b), F::READ).unwrap().ignore();
                None
            },
            |pt| dirty_at(pt, b),
        );
        sweep::<M>(
            "remap",
            liveness,
            false,
            |pt| {
                pt.remap(at::<M>(b), PhysAddr::from(0x9000_0000))
                    .unwrap()
                    .ignore();
                None
            },
            |pt| dirty_at(pt, b),
        );
        sweep::<M>(
            "protect_region splitting a block",
            liveness,
            true,
            |pt| {
                pt.protect_region(at::<M>(b), page::<M>() as usize, F::READ)
                    .unwrap()
                    .ignore();
                None
            },
            |pt| dirty_at(pt, b) && dirty_at(pt, b + page::<M>()),
        );
        sweep::<M>(
            "unmap_region splitting a block",
            liveness,
            true,
            |pt| {
                pt.unmap_region(at::<M>(b), page::<M>() as usize)
                    .unwrap()
                    .ignore();
                None
            },
            |pt| dirty_at(pt, b + page::<M>()),
        );
    }
}

macro_rules! every_mode {
    ($($name:ident: $mode:ty;)*) => {$(
        #[test]
        fn $name() {
            every_call_keeps_or_reports_a_store_at_every_moment::<$mode>();
        }
    )*};
}

every_mode! {
    x86_64: X86_64;
    x86_64_la57: X86_64La57;
    aarch64_48_lower: AArch64<Va48, Lower>;
    aarch64_48_upper: AArch64<Va48, Upper>;
    aarch64_39_lower: AArch64<Va39, Lower>;
    aarch64_39_upper: AArch64<Va39, Upper>;
    aarch64_16k_48: AArch64<Va48, Lower, Granule16K>;
    aarch64_16k_47_upper: AArch64<Va47, Upper, Granule16K>;
    aarch64_16k_36: AArch64<Va36, Lower, Granule16K>;
    aarch64_64k_48: AArch64<Va48, Lower, Granule64K>;
    aarch64_64k_48_upper: AArch64<Va48, Upper, Granule64K>;
    aarch64_64k_42: AArch64<Va42, Lower, Granule64K>;
    aarch64_s2_ipa40: AArch64S2<Ipa40>;
    aarch64_s2_ipa48: AArch64S2<Ipa48>;
    sv39: Sv39;
    sv48: Sv48;
    sv57: Sv57;
    sv39x4: Sv39x4;
    sv48x4: Sv48x4;
    ept: Ept;
    loongarch64: LoongArch64;
}
