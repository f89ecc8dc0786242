//! The check pass of `protect_region` trusts [`Arch::settled_leaves`] to skip the entry-by-entry
//! look at a run of last-level entries. It must never say "settled" for a run that holds a hole,
//! a non-leaf, or a leaf the MMU may still write: that would skip a `NotMapped` error or lose an
//! accessed or dirty bit. Checked here against the per-entry predicates on random runs built from
//! the bits that matter, for every arch.

use pagetable::{AArch64, Arch, EntryKind, L1, LoongArch64, Sv39, X86_64};
use proptest::prelude::*;

/// Runs of 1..16 entries, each mostly made of low flag bits and the top bits, where the
/// architectures keep their valid, accessed, dirty, writable and DBM bits.
fn runs() -> impl Strategy<Value = Vec<u64>> {
    let entry = (any::<u16>(), any::<u8>(), any::<bool>()).prop_map(|(low, high, bias)| {
        let e = u64::from(low) | u64::from(high) << 50 | 0x1234_5000;
        // Half the entries start from a typical settled leaf, so that runs often pass.
        if bias {
            e | 0xe3 | 0x0c00 | (1 << 51)
        } else {
            e
        }
    });
    prop::collection::vec(entry, 1..16)
}

fn check<A: Arch>(run: &[u64]) {
    let all = run.iter().fold(u64::MAX, |a, &e| a & e);
    let any = run.iter().fold(0, |a, &e| a | e);
    if A::settled_leaves(all, || any) {
        for &e in run {
            assert_eq!(
                A::entry_kind::<L1>(e),
                EntryKind::Leaf,
                "{} {e:#x}",
                A::NAME
            );
            assert!(!A::hw_may_update::<L1>(e), "{} {e:#x}", A::NAME);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]
    #[test]
    fn settled_runs_hold_only_settled_leaves(run in runs()) {
        check::<X86_64>(&run);
        check::<AArch64>(&run);
        check::<Sv39>(&run);
        check::<LoongArch64>(&run);
    }
}

/// The fast path is taken for what `map_region` makes: a run of fresh writable leaves, and of
/// read-only ones, is settled on every arch whose MMU needs no more writes to them.
#[test]
fn fresh_leaves_are_settled() {
    use pagetable::{Descriptor, L1, MappingFlags as F, PhysAddr};
    fn fresh<A: Arch>(flags: F) -> bool {
        let leaves: Vec<u64> = (0..8)
            .map(|i| {
                Descriptor::<A, L1>::leaf(PhysAddr::from(0x20_0000 + i * 0x1000), flags)
                    .unwrap()
                    .bits()
            })
            .collect();
        let all = leaves.iter().fold(u64::MAX, |a, &e| a & e);
        let any = leaves.iter().fold(0, |a, &e| a | e);
        A::settled_leaves(all, || any)
    }
    let rw = F::READ | F::WRITE;
    assert!(fresh::<X86_64>(rw) && fresh::<X86_64>(F::READ));
    assert!(fresh::<Sv39>(rw) && fresh::<Sv39>(F::READ));
    assert!(fresh::<LoongArch64>(rw) && fresh::<LoongArch64>(F::READ));
    // AArch64 keeps a fresh writable leaf dirty (DBM, AP[2] clear) and a read-only one without
    // DBM: both settled.
    assert!(fresh::<AArch64>(rw) && fresh::<AArch64>(F::READ));
}
