//! x86-64: 4-level and 5-level (LA57) paging, probed from ring 0.

use pagetable::arch::x86_64::PAT;
use pagetable::{Arch, X86_64, X86_64La57};

use crate::harness::{Platform, qemu_available};
use crate::scenario::{assert_only_corrupted_probe_fails, single};

const X86: Platform = Platform {
    qemu: "qemu-system-x86_64",
    args: &["-M", "q35", "-cpu", "max", "-m", "2G"],
    guest: "x86_64.elf",
    image_base: 0x0800_0000,
    identity: Some((0, 0x1000_0000)),
    // COM1 is port I/O and does not go through the tables; the local APIC's page stands for
    // the device mapping.
    uart_pa: 0xfee0_0000,
    ret: &[0xc3],
    // CR4.SMAP and SMEP are left clear: the supervisor may read and fetch user pages.
    user_read_faults: false,
    user_exec_faults: false,
    nx_fetch_observable: true,
    write_only: false,
    exec_only: false,
    stage2: false,
};

/// CR3 is the root's address.
fn cr3(root: u64) -> (u64, u64) {
    (root, 0)
}

fn x86<A: Arch>(name: &str, la57: bool, corrupt: bool) -> Result<(), String> {
    single::<A>(&X86, name, cr3, (la57 as u64, PAT), &[], corrupt)
}

#[test]
fn qemu_x86_64() {
    if qemu_available(X86.qemu) {
        x86::<X86_64>("x86_64", false, false).unwrap();
    }
}

#[test]
fn qemu_x86_64_la57() {
    if qemu_available(X86.qemu) {
        x86::<X86_64La57>("x86_64-la57", true, false).unwrap();
    }
}

#[test]
fn qemu_negative_control_x86_64() {
    if qemu_available(X86.qemu) {
        assert_only_corrupted_probe_fails(x86::<X86_64>("x86_64-corrupt", false, true));
    }
}
