//! LoongArch64: 4-level tables walked by the hardware page-table walker, probed from PLV0.

use pagetable::LoongArch64;
use pagetable::arch::loongarch64::{PWCH, PWCL};

use crate::harness::{Platform, qemu_available};
use crate::scenario::{assert_only_corrupted_probe_fails, single};

const LOONGARCH: Platform = Platform {
    qemu: "qemu-system-loongarch64",
    args: &["-M", "virt", "-cpu", "la464", "-m", "1G"],
    guest: "loongarch64.elf",
    image_base: 0x0800_0000,
    // The guest runs in a direct-mapped window (DMW0); the tables hold only the test mappings.
    identity: None,
    uart_pa: 0x1fe0_01e0,
    ret: &[0x20, 0x00, 0x00, 0x4c],
    // PLV3 pages are accessible from PLV0 unless RPLV is set, which the crate leaves clear.
    user_read_faults: false,
    user_exec_faults: false,
    nx_fetch_observable: false,
    write_only: true,
    exec_only: false,
    stage2: false,
};

/// One table serves both halves, through PGDL and PGDH.
fn pgd(root: u64) -> (u64, u64) {
    (root, root)
}

fn loongarch(name: &str, corrupt: bool) -> Result<(), String> {
    let regs = (PWCL as u64, PWCH as u64);
    single::<LoongArch64>(&LOONGARCH, name, pgd, regs, &[], corrupt)
}

#[test]
fn qemu_loongarch64() {
    if qemu_available(LOONGARCH.qemu) {
        loongarch("loongarch64", false).unwrap();
    }
}

#[test]
fn qemu_negative_control_loongarch64() {
    if qemu_available(LOONGARCH.qemu) {
        assert_only_corrupted_probe_fails(loongarch("loongarch64-corrupt", true));
    }
}
