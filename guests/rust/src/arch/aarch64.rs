//! AArch64 under QEMU `virt` at EL1: boot, the exception vector that hands aborts to the
//! kernel's fault handler, the probes, the MMU registers, the PL011 console, PSCI power-off.

use core::fmt;

use pagetable::arch::mem_layout::Mair;
use pagetable::{AArch64, Granule4K, Lower, Va48};

use crate::Access;

/// The paging mode: 48-bit VA, 4 KiB granule, TTBR0, and a MAIR layout that is not the
/// crate's default: device memory at AttrIndx 0, normal at 1, non-cacheable at 2 (the layout
/// page_table_multiarch's kernels program).
pub type Mode = AArch64<Va48, Lower, Granule4K, Mair<1, 0, 2>>;
/// QEMU virt's RAM.
pub const RAM: u64 = 0x4000_0000;
/// The PL011 UART, mapped as device memory.
pub const DEVICES: &[u64] = &[crate::shared::UART];
pub use crate::shared::{Console, write_ret};
/// The root entry the kernel shares with processes (512 GiB, RAM and the UART in it), a page
/// the kernel maps in it while a process runs, and a process's own page (the next root entry).
pub const KERNEL_HALF: (u64, u64) = (0, 1 << 39);
pub const KERNEL_EXTRA_VA: u64 = RAM + (256 << 20);
pub const USER_VA: u64 = 1 << 39;
/// The tables a process table with one page in its own root entry has: root, L3, L2, L1.
pub const PROCESS_TABLES: u64 = 4;
/// Under `-cpu max` (FEAT_HAFDBS), the MMU sets AF and clears AP[2] of a DBM leaf itself.
pub const HW_ACCESS_STATE: bool = true;
/// Splitting a live block needs break-before-make here.
pub const BREAKS_BEFORE_SPLIT: bool = true;
/// An unaligned access to device memory takes an alignment fault (QEMU models it).
pub const DEVICE_ALIGNMENT_FAULTS: bool = true;

/// Whether `esr` is a data abort that an alignment fault caused (DFSC 0b100001).
pub fn alignment_fault(esr: u64) -> bool {
    esr >> 26 == 0x25 && esr & 0x3f == 0x21
}

/// A fetch from a no-execute page faults (and the fault is delivered).
pub const NX_FETCH_FAULTS: bool = true;

/// CPUs the guest runs on (QEMU `-smp 4`); the others are started with PSCI CPU_ON.
pub const CPUS: usize = 4;

/// Where the kernel reaches physical memory: one to one.
pub fn phys(pa: u64) -> u64 {
    pa
}

core::arch::global_asm!(
    ".section .text.boot",
    ".global _start",
    "_start:",
    "    ldr x30, =__stack_top",
    "    mov sp, x30",
    "    adr x0, vectors",
    "    msr vbar_el1, x0",
    "    isb",
    "    bl kmain",
    "1:  wfe",
    "    b 1b",
    // A secondary CPU, started by PSCI CPU_ON with its stack's top as the context.
    ".global secondary_start",
    "secondary_start:",
    "    mov sp, x0",
    "    adr x1, vectors",
    "    msr vbar_el1, x1",
    "    isb",
    "    mrs x0, mpidr_el1",
    "    and x0, x0, #0xff",
    "    bl secondary_main",
    "2:  wfe",
    "    b 2b",
    ".balign 2048",
    "vectors:",
    // Current EL with SP_EL0: not used.
    ".rept 4",
    ".balign 128",
    "b .",
    ".endr",
    // Current EL with SP_ELx: synchronous, then IRQ, FIQ, SError (not used).
    ".balign 128",
    "b sync_current",
    ".rept 3",
    ".balign 128",
    "b .",
    ".endr",
    // Lower EL, AArch64 and AArch32: not used.
    ".rept 8",
    ".balign 128",
    "b .",
    ".endr",
    // Saves every register a Rust call may clobber, lets the kernel handle the fault and
    // resumes where it says.
    "sync_current:",
    "    sub sp, sp, #176",
    "    stp x0, x1, [sp, #0]",
    "    stp x2, x3, [sp, #16]",
    "    stp x4, x5, [sp, #32]",
    "    stp x6, x7, [sp, #48]",
    "    stp x8, x9, [sp, #64]",
    "    stp x10, x11, [sp, #80]",
    "    stp x12, x13, [sp, #96]",
    "    stp x14, x15, [sp, #112]",
    "    stp x16, x17, [sp, #128]",
    "    stp x18, x29, [sp, #144]",
    "    str x30, [sp, #160]",
    "    mrs x0, esr_el1",
    "    mrs x1, far_el1",
    "    mrs x2, elr_el1",
    "    mov x3, x30",
    "    bl trap",
    "    msr elr_el1, x0",
    "    ldp x0, x1, [sp, #0]",
    "    ldp x2, x3, [sp, #16]",
    "    ldp x4, x5, [sp, #32]",
    "    ldp x6, x7, [sp, #48]",
    "    ldp x8, x9, [sp, #64]",
    "    ldp x10, x11, [sp, #80]",
    "    ldp x12, x13, [sp, #96]",
    "    ldp x14, x15, [sp, #112]",
    "    ldp x16, x17, [sp, #128]",
    "    ldp x18, x29, [sp, #144]",
    "    ldr x30, [sp, #160]",
    "    add sp, sp, #176",
    "    eret",
    // The probes: one access each, at a label the trap entry knows.
    ".global probe_load",
    "probe_load:",
    ".global probe_load_at",
    "probe_load_at:",
    "    ldr x0, [x0]",
    "    ret",
    ".global probe_store",
    "probe_store:",
    ".global probe_store_at",
    "probe_store_at:",
    "    str x1, [x0]",
    "    ret",
    ".global probe_exec",
    "probe_exec:",
    "    br x0",
);

unsafe extern "C" {
    static secondary_start: u8;
}

/// This CPU's number (MPIDR_EL1.Aff0: QEMU virt numbers CPUs 0, 1, ...).
pub fn cpu_id() -> usize {
    let mpidr: u64;
    // SAFETY: reads an ID register.
    unsafe { core::arch::asm!("mrs {}, mpidr_el1", out(reg) mpidr, options(nomem, nostack)) };
    (mpidr & 0xff) as usize
}

/// Starts CPU `cpu` at `secondary_start` with `stack` as its stack's top (PSCI CPU_ON).
pub fn start_cpu(cpu: usize, stack: u64) {
    let result: u64;
    // SAFETY: PSCI starts the CPU at an entry that sets up its stack and vector first.
    unsafe {
        core::arch::asm!(
            "hvc #0",
            inout("x0") 0xc400_0003u64 => result,
            in("x1") cpu as u64,
            in("x2") &raw const secondary_start as u64,
            in("x3") stack,
        )
    };
    assert_eq!(result, 0, "PSCI CPU_ON failed");
}

#[unsafe(no_mangle)]
extern "C" fn secondary_main(cpu: u64) -> ! {
    crate::smp::worker(cpu as usize)
}

/// Invalidation on the other CPUs: nothing to do, the crate's `TLBI ...IS` is broadcast to
/// the inner-shareable domain and its `DSB ISH` waits for every CPU.
pub fn shootdown(_range: Option<(u64, u64)>) {}

/// Runs `f`, which waits for the kernel's lock, where another CPU's shootdown can still
/// reach this one: no IPIs here: the crate's invalidation is broadcast.
pub fn with_interrupts<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Drops this CPU's translation of `va` (a spurious fault's stale entry).
pub fn invalidate_local(va: u64) {
    // SAFETY: a TLB invalidation by VA on this CPU only; touches no memory.
    unsafe {
        core::arch::asm!("tlbi vaae1, {}", "dsb nsh", "isb", in(reg) (va >> 12) & ((1 << 44) - 1))
    };
}

/// A worker, its MMU on: nothing more to set up here.
pub fn cpu_ready() {}

/// Stops this CPU for good.
pub fn park() -> ! {
    loop {
        // SAFETY: waits for an event, nothing else.
        unsafe { core::arch::asm!("wfe") };
    }
}

/// The synchronous exception handler: a data or instruction abort from EL1 goes to the
/// kernel's fault handler; it returns where execution resumes (the same instruction when the
/// kernel mapped the page, else past the probe). Anything else ends the run.
#[unsafe(no_mangle)]
extern "C" fn trap(esr: u64, far: u64, elr: u64, lr: u64) -> u64 {
    let access = match esr >> 26 {
        0x25 if esr & (1 << 6) != 0 => Access::Store,
        0x25 => Access::Load,
        0x21 => Access::Fetch,
        _ => unexpected(esr, far, elr),
    };
    crate::note_cause(esr);
    crate::resume(far, access, elr, lr, 4).unwrap_or_else(|| unexpected(esr, far, elr))
}

/// Whether `esr` is a data abort from a load that a translation fault caused (DFSC 0b0001xx,
/// at any level): the entry was invalid.
pub fn not_present_load(esr: u64) -> bool {
    esr >> 26 == 0x25 && esr & (1 << 6) == 0 && esr & 0x3c == 0x04
}

fn unexpected(esr: u64, far: u64, elr: u64) -> ! {
    let _ = fmt::Write::write_fmt(
        &mut Console,
        format_args!(
            "guest: FAIL unexpected exception esr={esr:#x} far={far:#x} elr={elr:#x}\nDONE\n"
        ),
    );
    power_off()
}

/// Turns the MMU on with `ttbr0` (the kernel table's `root_register`), TCR_EL1 and MAIR_EL1 as
/// the crate composes them for this CPU's features (hardware access flag and dirty state where
/// it has them, 16-bit ASIDs).
///
/// # Safety
///
/// The tables map the running code, its stack, its frames and the console one to one.
pub unsafe fn mmu_on(ttbr0: u64) {
    let (mmfr0, mmfr1): (u64, u64);
    // SAFETY: reads ID registers.
    unsafe {
        core::arch::asm!("mrs {}, id_aa64mmfr0_el1", "mrs {}, id_aa64mmfr1_el1", out(reg) mmfr0, out(reg) mmfr1)
    };
    let features = pagetable::arch::aarch64_regs::CpuFeatures::from_id_regs(mmfr0, mmfr1);
    // SAFETY: the caller's tables translate everything that runs next, at the same address.
    unsafe {
        core::arch::asm!(
            "msr mair_el1, {mair}",
            "msr tcr_el1, {tcr}",
            "msr ttbr0_el1, {root}",
            "isb",
            "tlbi vmalle1",
            "dsb sy",
            "isb",
            "mrs {t}, sctlr_el1",
            "orr {t}, {t}, #1", // M
            "orr {t}, {t}, #(1 << 2)", // C
            "orr {t}, {t}, #(1 << 12)", // I
            "msr sctlr_el1, {t}",
            "isb",
            mair = in(reg) Mode::mair(),
            tcr = in(reg) Mode::tcr(features),
            root = in(reg) ttbr0,
            t = out(reg) _,
        )
    };
}

/// Every CPU of this architecture tags its TLB entries with an address-space identifier.
pub fn tlb_ids() -> bool {
    true
}

/// QEMU's TLB keeps no entry across a change of ASID (it drops them all), so an entry of one
/// address space surviving a switch cannot be seen here.
pub const TLB_KEEPS_TAGGED_ENTRIES: bool = false;

/// PSCI SYSTEM_OFF; QEMU virt's conduit at EL1 is HVC.
pub fn power_off() -> ! {
    // SAFETY: ends the machine.
    unsafe { core::arch::asm!("hvc #0", in("x0") 0x8400_0008u64, options(noreturn)) }
}
