//! Differential fuzzing of the x86 paging modes (EPT is in `stage2`): the input's first byte picks the mode, the
//! rest decodes into up to 64 calls (every public mutating and reading call, hostile input
//! included), each checked against the model, an independent raw walk of table memory and the
//! frame accounting (see `tests/common/model.rs`).
#![no_main]

#[path = "../../tests/common/mod.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(e) = common::model::run_bytes(data, common::model::X86_MODES) {
        panic!("{e}");
    }
});
