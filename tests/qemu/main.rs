//! Conformance on a real MMU model: for every paging mode, the host builds page tables with the
//! crate's public API into an image of guest-physical memory, and a bare-metal guest under QEMU
//! (see `guests/`) turns its MMU on with them and touches memory through the mappings.
//!
//! Every expected result comes from the test's own plan (which physical address each probe
//! should reach), never from the crate's `query`. Words of the data area hold `pattern(pa)`, so a
//! read through a wrong translation shows. Phase 2 runs after the host edited the tables
//! (unmap, protect, a split, a remap): the guest applies the edit as a patch of table memory and
//! performs exactly the flushes the crate's tokens asked for, after phase 1 warmed the TLB.
//!
//! Stage 2 modes run behind a hypervisor guest: the guest's own translation is off and the
//! crate's table is the only one (`stage2.rs`). x86 EPT cannot run here: TCG has no VMX.
//!
//! `harness.rs` holds the image, the probes and running QEMU; `scenario.rs` the scenario every
//! 4K mode runs; the other files one architecture (or stage 2) each.
//!
//! Without QEMU 10 this suite does not run under a plain `cargo test` (it says so); under
//! `scripts/test` (`PAGETABLE_REQUIRE_QEMU=1`) a missing QEMU fails it.

mod harness;
mod scenario;

mod aarch64;
mod aarch64_granules;
mod loongarch64;
mod riscv;
mod rust_guests;
mod stage2;
mod x86_64;
