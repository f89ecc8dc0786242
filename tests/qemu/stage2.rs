//! Second-stage tables, as a hypervisor uses them: the guest's own translation is off, so every
//! address a probe touches is a guest physical address that only the crate's table translates.
//! AArch64 stage 2 probes from EL1 with EL2 owning VTTBR_EL2; RISC-V G-stage probes from
//! VS-mode with M-mode owning hgatp. The scenario is the stage 1 one without user or global
//! pages, plus execute-only leaves (and, on AArch64, write-only ones), which only a second
//! stage can express on these architectures. Test mappings in the upper root indices sit in
//! the second (AArch64 40-bit IPA) or fourth (RISC-V x4) table of the concatenated root, and
//! above the stage 1 mode's address width.
//!
//! What QEMU cannot show: on RISC-V it flushes its whole TLB whenever the virtualization mode
//! changes, and every trap out of VS-mode changes it, so the G-stage runs prove the encodings and
//! the edits but not that the crate asked for the right `hfence.gvma`s (the model tests and the
//! AArch64 stage 2 runs, where a missing flush shows as a stale translation, cover that).
//!
//! x86 EPT is not here: QEMU's software emulation (TCG) does not implement VMX.

use pagetable::{AArch64S2, Ipa40, Ipa48, PageSize, Sv39x4, Sv48x4};

use crate::aarch64::AARCH64;
use crate::harness::{Platform, qemu_available};
use crate::riscv::{RISCV, satp};
use crate::scenario::{assert_only_corrupted_probe_fails, single};

/// `virtualization=on`: the guest starts at EL2. `-cpu max` has the 48-bit physical address
/// range that VTCR_EL2.PS = 48 bits needs (Cortex-A57 has 44).
const AARCH64_S2: Platform = Platform {
    args: &["-M", "virt,virtualization=on", "-cpu", "max", "-m", "2G"],
    guest: "aarch64_s2.elf",
    // Stage 2 has S2AP = 0b10 (write-only) and XN clear with S2AP = 0b00 (execute-only).
    write_only: true,
    exec_only: true,
    stage2: true,
    ..AARCH64
};

/// VTCR_EL2 (Arm ARM D19, VTCR_EL2) for the 4 KiB granule and `ipa_bits` of IPA: T0SZ =
/// 64 - bits; SL0 (bits 6-7) 1 to start at level 1 (40 bits), 2 at level 0 (48 bits);
/// IRGN0, ORGN0 (bits 8-11) write-back; SH0 (bits 12-13) inner shareable; TG0 (bits 14-15) 0
/// for 4K; PS (bits 16-18) 0b010 for 40 bits, 0b101 for 48; bit 31 RES1.
fn vtcr(ipa_bits: u64) -> u64 {
    let (sl0, ps) = if ipa_bits == 40 {
        (1, 0b010)
    } else {
        (2, 0b101)
    };
    (64 - ipa_bits) | sl0 << 6 | 1 << 8 | 1 << 10 | 3 << 12 | ps << 16 | 1 << 31
}

/// VTTBR_EL2: VMID 0 and the root's address.
fn vttbr(root: u64) -> (u64, u64) {
    (root, 0)
}

#[test]
fn qemu_aarch64_s2_ipa40() {
    if qemu_available(AARCH64_S2.qemu) {
        let regs = (vtcr(40), 0);
        single::<AArch64S2<Ipa40>>(&AARCH64_S2, "aarch64-s2-40", vttbr, regs, &[], false).unwrap();
    }
}

#[test]
fn qemu_aarch64_s2_ipa48() {
    if qemu_available(AARCH64_S2.qemu) {
        let regs = (vtcr(48), 0);
        single::<AArch64S2<Ipa48>>(&AARCH64_S2, "aarch64-s2-48", vttbr, regs, &[], false).unwrap();
    }
}

#[test]
fn qemu_negative_control_aarch64_s2() {
    if qemu_available(AARCH64_S2.qemu) {
        let regs = (vtcr(40), 0);
        assert_only_corrupted_probe_fails(single::<AArch64S2<Ipa40>>(
            &AARCH64_S2,
            "aarch64-s2-corrupt",
            vttbr,
            regs,
            &[],
            true,
        ));
    }
}

/// The hypervisor extension; the guest runs the probes in VS-mode.
const RISCV_H: Platform = Platform {
    args: &[
        "-M",
        "virt",
        "-bios",
        "none",
        "-m",
        "2G",
        "-cpu",
        "rv64,h=true,svpbmt=true",
    ],
    guest: "riscv64_g.elf",
    // W without R stays reserved in the G-stage; X alone is an execute-only leaf.
    write_only: false,
    exec_only: true,
    stage2: true,
    ..RISCV
};

#[test]
fn qemu_sv39x4() {
    if qemu_available(RISCV_H.qemu) {
        single::<Sv39x4>(&RISCV_H, "sv39x4", satp::<8>, (0, 0), &[], false).unwrap();
    }
}

#[test]
fn qemu_sv48x4() {
    if qemu_available(RISCV_H.qemu) {
        let huge = [(&[5][..], PageSize::SIZE_512G)];
        single::<Sv48x4>(&RISCV_H, "sv48x4", satp::<9>, (0, 0), &huge, false).unwrap();
    }
}

#[test]
fn qemu_negative_control_sv39x4() {
    if qemu_available(RISCV_H.qemu) {
        assert_only_corrupted_probe_fails(single::<Sv39x4>(
            &RISCV_H,
            "sv39x4-corrupt",
            satp::<8>,
            (0, 0),
            &[],
            true,
        ));
    }
}
