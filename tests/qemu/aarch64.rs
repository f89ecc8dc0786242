//! AArch64 stage 1, 4 KiB granule, 48- and 39-bit VA: a TTBR0 table and a TTBR1 table, probed
//! from EL1.

use pagetable::arch::aarch64::MAIR;
use pagetable::arch::{level_shift, root_depth};
use pagetable::{AArch64, Arch, Lower, Upper, Va39, Va48};

use crate::harness::{Platform, pair, qemu_available};
use crate::scenario::{assert_only_corrupted_probe_fails, conform, va};

pub const AARCH64: Platform = Platform {
    qemu: "qemu-system-aarch64",
    args: &["-M", "virt", "-cpu", "cortex-a57", "-m", "2G"],
    guest: "aarch64.elf",
    image_base: 0x4800_0000,
    identity: Some((0x4000_0000, 0x1000_0000)),
    uart_pa: 0x0900_0000,
    ret: &[0xc0, 0x03, 0x5f, 0xd6],
    // Cortex-A57 has no PAN: EL1 may read EL0 pages. The crate sets PXN on every user leaf.
    user_read_faults: false,
    user_exec_faults: true,
    nx_fetch_observable: true,
    write_only: false,
    exec_only: false,
    stage2: false,
};

/// TCR_EL1 for both halves with `bits` of VA: TnSZ = 64 - bits, 4 KiB granules (TG0 0, TG1 2),
/// inner-shareable write-back walks, IPS 48 bits.
pub fn tcr(bits: u64) -> u64 {
    let half = |tsz: u64| tsz | 1 << 8 | 1 << 10 | 3 << 12;
    half(64 - bits) | half(64 - bits) << 16 | 2 << 30 | 5 << 32
}

fn aarch64<L: Arch, U: Arch>(name: &str, corrupt: bool) -> Result<(), String> {
    let entries = 1u64 << (L::VA_BITS - level_shift::<L>(root_depth::<L>()));
    let uart_va = va::<U>(&[entries - 1, 0x1fe], 0) & !0xfff;
    conform::<L, U>(
        &AARCH64,
        name,
        &|words, pa| pair::<L, U>(words, pa),
        (tcr(L::VA_BITS as u64), MAIR),
        uart_va,
        3,
        entries - 3,
        &[],
        corrupt,
    )
}

#[test]
fn qemu_aarch64_48() {
    if qemu_available(AARCH64.qemu) {
        aarch64::<AArch64<Va48, Lower>, AArch64<Va48, Upper>>("aarch64-48", false).unwrap();
    }
}

#[test]
fn qemu_aarch64_39() {
    if qemu_available(AARCH64.qemu) {
        aarch64::<AArch64<Va39, Lower>, AArch64<Va39, Upper>>("aarch64-39", false).unwrap();
    }
}

#[test]
fn qemu_negative_control_aarch64() {
    if qemu_available(AARCH64.qemu) {
        assert_only_corrupted_probe_fails(aarch64::<AArch64<Va48, Lower>, AArch64<Va48, Upper>>(
            "aarch64-corrupt",
            true,
        ));
    }
}
