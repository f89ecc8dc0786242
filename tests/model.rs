//! Model-based property tests, one per paging mode: random sequences of every public call
//! (good and hostile inputs alike) run against the model of `common::model`, which checks after
//! every step the results, the untouched bytes of failed calls, the crate's walk, an independent
//! raw walk of table memory, and the frames out. Also replays the fuzz targets' corpora, so that
//! every input committed there (seeds and crashes found) stays a regression test.

mod common;

use common::model::*;
use pagetable::{
    AArch64, AArch64S2, Ept, Granule16K, Granule64K, Ipa40, Ipa48, LoongArch64, Lower, Sv39,
    Sv39x4, Sv48, Sv48x4, Sv57, Upper, Va36, Va39, Va42, Va47, Va48, X86_64, X86_64La57,
};
use proptest::prelude::*;

fn va_pick() -> impl Strategy<Value = VaPick> {
    (
        prop::option::weighted(0.5, (any::<u16>(), any::<u16>())),
        any::<u8>(),
        any::<u32>(),
        any::<bool>(),
        any::<u8>(),
    )
        .prop_map(|(leaf, base, offset, coarse, hostile)| VaPick {
            leaf,
            base,
            offset,
            coarse,
            hostile,
        })
}

fn len_pick() -> impl Strategy<Value = LenPick> {
    (any::<u8>(), any::<u32>()).prop_map(|(kind, n)| LenPick { kind, n })
}

fn pa_pick() -> impl Strategy<Value = PaPick> {
    (any::<u8>(), any::<u8>(), any::<u32>()).prop_map(|(base, mode, offset)| PaPick {
        base,
        mode,
        offset,
    })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (va_pick(), len_pick(), pa_pick(), any::<u8>(), any::<bool>())
            .prop_map(|(va, len, pa, flags, huge)| Op::MapRegion { va, len, pa, flags, huge }),
        2 => (va_pick(), any::<u8>(), pa_pick(), any::<u8>()).prop_map(|(va, size, pa, flags)| Op::Map { va, size, pa, flags }),
        2 => va_pick().prop_map(|va| Op::Unmap { va }),
        2 => (va_pick(), len_pick(), any::<bool>()).prop_map(|(va, len, report)| Op::UnmapRegion { va, len, report }),
        1 => (va_pick(), any::<u8>()).prop_map(|(va, flags)| Op::Protect { va, flags }),
        3 => (va_pick(), len_pick(), any::<u8>(), any::<bool>()).prop_map(|(va, len, flags, report)| Op::ProtectRegion { va, len, flags, report }),
        1 => (va_pick(), pa_pick()).prop_map(|(va, pa)| Op::Remap { va, pa }),
        1 => (va_pick(), any::<bool>(), any::<bool>()).prop_map(|(va, accessed, dirty)| Op::ClearState { va, accessed, dirty }),
        1 => va_pick().prop_map(|va| Op::Query { va }),
        1 => (va_pick(), len_pick()).prop_map(|(va, len)| Op::ForEachIn { va, len }),
        2 => (va_pick(), any::<bool>()).prop_map(|(va, write)| Op::Touch { va, write }),
        1 => any::<bool>().prop_map(|on| Op::Live { on }),
        1 => Just(Op::RoundTrip),
        1 => va_pick().prop_map(|va| Op::Share { va }),
        1 => va_pick().prop_map(|va| Op::Borrow { va }),
        1 => va_pick().prop_map(|va| Op::CursorUnmap { va }),
        1 => (va_pick(), any::<u8>()).prop_map(|(va, flags)| Op::CursorProtect { va, flags }),
        2 => (va_pick(), any::<u8>(), pa_pick(), any::<u8>()).prop_map(|(va, n, pa, flags)| Op::CursorRun { va, n, pa, flags }),
        2 => (va_pick(), any::<u64>(), any::<u8>()).prop_map(|(va, payload, width)| Op::SetMarker { va, payload, width }),
        1 => va_pick().prop_map(|va| Op::TakeMarker { va }),
        1 => va_pick().prop_map(|va| Op::Lookup { va }),
        2 => (va_pick(), any::<u16>()).prop_map(|(va, value)| Op::SetSoft { va, value }),
        1 => (va_pick(), any::<bool>(), any::<bool>()).prop_map(|(va, accessed, dirty)| Op::MarkAccess { va, accessed, dirty }),
        2 => (va_pick(), len_pick(), pa_pick(), any::<u8>())
            .prop_map(|(va, len, pa, flags)| Op::RemapRegion { va, len, pa, flags }),
        2 => (va_pick(), len_pick(), any::<u8>(), any::<u16>(), any::<bool>(), any::<u8>())
            .prop_map(|(va, len, flags, soft, clean, bump)| Op::ModifyRange { va, len, flags, soft, clean, bump }),
        3 => (va_pick(), any::<u8>(), pa_pick(), any::<u8>(), any::<u8>())
            .prop_map(|(va, n, pa, flags, scatter)| Op::MapFrames { va, n, pa, flags, scatter }),
    ]
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64)
}

macro_rules! model_test {
    ($name:ident, $arch:ty) => {
        proptest! {
            #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 2000, ..ProptestConfig::default() })]
            #[test]
            fn $name(ops in prop::collection::vec(op(), 1..64)) {
                run::<$arch>(&ops).map_err(TestCaseError::fail)?;
            }
        }
    };
}

model_test!(model_x86_64, X86_64);
model_test!(model_x86_64_la57, X86_64La57);
model_test!(model_aarch64_48_ttbr0, AArch64<Va48, Lower>);
model_test!(model_aarch64_48_ttbr1, AArch64<Va48, Upper>);
model_test!(model_aarch64_39_ttbr0, AArch64<Va39, Lower>);
model_test!(model_aarch64_39_ttbr1, AArch64<Va39, Upper>);
model_test!(model_sv39, Sv39);
model_test!(model_sv48, Sv48);
model_test!(model_sv57, Sv57);
model_test!(model_loongarch64, LoongArch64);
model_test!(model_aarch64_16k_48_ttbr0, AArch64<Va48, Lower, Granule16K>);
model_test!(model_aarch64_16k_47_ttbr1, AArch64<Va47, Upper, Granule16K>);
model_test!(model_aarch64_16k_36_ttbr0, AArch64<Va36, Lower, Granule16K>);
model_test!(model_aarch64_64k_48_ttbr0, AArch64<Va48, Lower, Granule64K>);
model_test!(model_aarch64_64k_48_ttbr1, AArch64<Va48, Upper, Granule64K>);
model_test!(model_aarch64_64k_42_ttbr0, AArch64<Va42, Lower, Granule64K>);
model_test!(model_aarch64_s2_ipa40, AArch64S2<Ipa40>);
model_test!(model_aarch64_s2_ipa48, AArch64S2<Ipa48>);
model_test!(model_sv39x4, Sv39x4);
model_test!(model_sv48x4, Sv48x4);
model_test!(model_x86_ept, Ept);

/// Every file under `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/`, played as the
/// fuzz target plays it.
fn replay(target: &str, modes: &[Mode]) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut played = 0;
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            if let Err(e) = run_bytes(&data, modes) {
                panic!("{}: {e}", path.display());
            }
            played += 1;
        }
    }
    assert!(played > 0, "no corpus for fuzz target {target}");
}

#[test]
fn fuzz_corpus_x86() {
    replay("x86", X86_MODES);
}

#[test]
fn fuzz_corpus_aarch64() {
    replay("aarch64", AARCH64_MODES);
}

#[test]
fn fuzz_corpus_riscv() {
    replay("riscv", RISCV_MODES);
}

#[test]
fn fuzz_corpus_stage2() {
    replay("stage2", STAGE2_MODES);
}

#[test]
fn fuzz_corpus_loongarch() {
    replay("loongarch", LOONGARCH_MODES);
}
