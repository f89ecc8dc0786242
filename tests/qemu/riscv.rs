//! RISC-V stage 1: Sv39, Sv48 and Sv57, probed from S-mode.

use pagetable::{PageSize, Sv39, Sv48, Sv57};

use crate::harness::{Platform, qemu_available};
use crate::scenario::{assert_only_corrupted_probe_fails, single};

pub const RISCV: Platform = Platform {
    qemu: "qemu-system-riscv64",
    args: &[
        "-M",
        "virt",
        "-bios",
        "none",
        "-m",
        "2G",
        "-cpu",
        "rv64,svpbmt=true,sv57=true",
    ],
    guest: "riscv64.elf",
    image_base: 0x8800_0000,
    identity: Some((0x8000_0000, 0x1000_0000)),
    uart_pa: 0x1000_0000,
    ret: &[0x67, 0x80, 0x00, 0x00],
    // SUM is clear: S-mode may not touch U pages; and S-mode never executes them.
    user_read_faults: true,
    user_exec_faults: true,
    nx_fetch_observable: true,
    write_only: false,
    exec_only: true,
    stage2: false,
};

/// satp (and hgatp, which has its layout): MODE in bits 60-63 (satp 8 Sv39, 9 Sv48, 10 Sv57;
/// hgatp 8 Sv39x4, 9 Sv48x4), ASID or VMID 0, and the root's PPN.
pub fn satp<const MODE: u64>(root: u64) -> (u64, u64) {
    (MODE << 60 | root >> 12, 0)
}

#[test]
fn qemu_sv39() {
    if qemu_available(RISCV.qemu) {
        single::<Sv39>(&RISCV, "sv39", satp::<8>, (0, 0), &[], false).unwrap();
    }
}

#[test]
fn qemu_sv48() {
    if qemu_available(RISCV.qemu) {
        let huge = [(&[5][..], PageSize::SIZE_512G)];
        single::<Sv48>(&RISCV, "sv48", satp::<9>, (0, 0), &huge, false).unwrap();
    }
}

#[test]
fn qemu_sv57() {
    if qemu_available(RISCV.qemu) {
        let huge = [
            (&[3, 0x0f7][..], PageSize::SIZE_512G),
            (&[5][..], PageSize::SIZE_256T),
        ];
        single::<Sv57>(&RISCV, "sv57", satp::<10>, (0, 0), &huge, false).unwrap();
    }
}

#[test]
fn qemu_negative_control_sv48() {
    if qemu_available(RISCV.qemu) {
        assert_only_corrupted_probe_fails(single::<Sv48>(
            &RISCV,
            "sv48-corrupt",
            satp::<9>,
            (0, 0),
            &[],
            true,
        ));
    }
}
