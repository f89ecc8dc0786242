//! AArch64 under QEMU `virt` at EL1: boot, an exception vector that turns a data abort into a
//! skipped instruction, the MMU registers, the PL011 console, PSCI power-off.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use pagetable::{AArch64, Lower, Va48};

/// The paging mode: 48-bit VA, 4 KiB granule, TTBR0.
pub type Mode = AArch64<Va48, Lower>;
/// QEMU virt's RAM, and how much of it the kernel maps (QEMU's default is 128 MiB).
pub const RAM: u64 = 0x4000_0000;
pub const RAM_LEN: u64 = 128 << 20;
/// The PL011 UART's data register.
pub const CONSOLE: u64 = 0x0900_0000;

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
    // Saves every register a Rust call may clobber, reports, skips the faulting instruction.
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
    "    bl on_sync",
    "    mrs x0, elr_el1",
    "    add x0, x0, #4",
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
);

/// Data aborts taken so far, and the address of the last one.
static FAULTS: AtomicU64 = AtomicU64::new(0);
static LAST_FAR: AtomicU64 = AtomicU64::new(0);

/// The synchronous exception handler: a data abort from EL1 (EC 0x25) is counted and skipped;
/// anything else ends the run.
#[unsafe(no_mangle)]
extern "C" fn on_sync(esr: u64, far: u64) {
    if esr >> 26 != 0x25 {
        let _ = fmt::Write::write_fmt(
            &mut super::Console,
            format_args!("guest: FAIL unexpected exception esr={esr:#x} far={far:#x}\nDONE\n"),
        );
        power_off();
    }
    LAST_FAR.store(far, Ordering::SeqCst);
    FAULTS.fetch_add(1, Ordering::SeqCst);
}

/// The console: QEMU virt's PL011, written a byte at a time.
pub struct Console;

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            // SAFETY: the PL011 data register, mapped one to one (or the MMU is off).
            unsafe { core::ptr::write_volatile(CONSOLE as *mut u8, b) };
        }
        Ok(())
    }
}

/// The first free frame after the image and its stack.
pub fn frames_start() -> u64 {
    unsafe extern "C" {
        static __frames: u8;
    }
    // Only the symbol's address is taken; the linker script places it.
    &raw const __frames as u64
}

/// Turns the MMU on with the table at `root` in TTBR0_EL1, with the MAIR layout the crate
/// assumes.
///
/// # Safety
///
/// The tables map the running code, its stack, its frames and the console one to one.
pub unsafe fn mmu_on(root: u64) {
    let tcr: u64 = 16 // T0SZ: 48-bit VA
        | 1 << 8 | 1 << 10 | 3 << 12 // IRGN0, ORGN0 write-back; SH0 inner shareable
        | 1 << 23 // EPD1: no TTBR1 walks
        | 2 << 32; // IPS: 40-bit PA
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
            mair = in(reg) pagetable::arch::aarch64::MAIR,
            tcr = in(reg) tcr,
            root = in(reg) root,
            t = out(reg) _,
        )
    };
}

/// A load from `va`, or `None` if it faulted.
pub fn read(va: u64) -> Option<u64> {
    let before = FAULTS.load(Ordering::SeqCst);
    let mut value: u64 = 0;
    // SAFETY: a load that may fault; the vector then skips it and `value` stays as it was.
    unsafe { core::arch::asm!("ldr {v}, [{a}]", a = in(reg) va, v = inout(reg) value) };
    (FAULTS.load(Ordering::SeqCst) == before).then_some(value)
}

/// A store of `value` to `va`; whether it went through.
pub fn write(va: u64, value: u64) -> bool {
    let before = FAULTS.load(Ordering::SeqCst);
    // SAFETY: a store that may fault; the vector then skips it. Only a page the kernel maps
    // for this purpose is written.
    unsafe { core::arch::asm!("str {v}, [{a}]", a = in(reg) va, v = in(reg) value) };
    FAULTS.load(Ordering::SeqCst) == before
}

/// PSCI SYSTEM_OFF; QEMU virt's conduit at EL1 is HVC.
pub fn power_off() -> ! {
    // SAFETY: ends the machine.
    unsafe { core::arch::asm!("hvc #0", in("x0") 0x8400_0008u64, options(noreturn)) }
}
