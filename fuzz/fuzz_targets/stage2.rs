//! Differential fuzzing of the stage 2 modes (AArch64 stage 2 with a 40- and a 48-bit IPA,
//! RISC-V Sv39x4 and Sv48x4, x86 EPT): the input's first byte picks the mode, the rest decodes
//! into up to 64 calls, each checked against the model, an independent raw walk of table memory
//! and the frame accounting (see `tests/common/model.rs`).
#![no_main]

#[path = "../../tests/common/mod.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(e) = common::model::run_bytes(data, common::model::STAGE2_MODES) {
        panic!("{e}");
    }
});
