//! RISC-V under QEMU `virt` with `-bios none`: M-mode boot (PMP open, page faults delegated,
//! Svpbmt and Svadu enabled), the kernel in S-mode with Sv39, the trap entry that hands page
//! faults to the kernel's fault handler, the probes, the NS16550 console, power-off through
//! the SiFive test device.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use pagetable::Sv39;

use crate::Access;

/// The paging mode.
pub type Mode = Sv39;
/// QEMU virt's RAM.
pub const RAM: u64 = 0x8000_0000;
/// The NS16550 UART and the SiFive test device (power-off), mapped as device memory.
const TEST_DEVICE: u64 = 0x10_0000;
/// The CLINT's machine software-interrupt registers, one 32-bit word per hart: a shootdown
/// IPI is a store there.
const CLINT_MSIP: u64 = 0x200_0000;
pub const DEVICES: &[u64] = &[crate::shared::UART, TEST_DEVICE, CLINT_MSIP];
pub use crate::shared::{Console, write_ret};
/// The root entries the kernel shares with processes: Sv39's are 1 GiB, and the devices (in
/// the first) and RAM (in the third) must both be in the kernel's half.
pub const KERNEL_HALF: (u64, u64) = (0, 3 << 30);
pub const KERNEL_EXTRA_VA: u64 = RAM + (256 << 20);
pub const USER_VA: u64 = 0x20_0000_0000;
/// The tables a process table with one page in its own root entry has: root, L2, L1.
pub const PROCESS_TABLES: u64 = 3;
/// With Svadu (`svadu=true`, menvcfg.ADUE) the MMU sets A and D itself.
pub const HW_ACCESS_STATE: bool = true;
/// RISC-V needs no break to split a leaf.
pub const BREAKS_BEFORE_SPLIT: bool = false;
/// A fetch from a no-execute page faults (and the fault is delivered).
pub const NX_FETCH_FAULTS: bool = true;

/// Harts the guest runs on (QEMU `-smp 4`); the others wait in M-mode for a stack.
pub const CPUS: usize = 4;

/// Where the kernel reaches physical memory: one to one.
pub fn phys(pa: u64) -> u64 {
    pa
}

core::arch::global_asm!(
    ".section .text.boot",
    ".global _start",
    "_start:",
    // Every hart: M-mode set up for S-mode (PMP open, Svpbmt and Svadu on, page faults
    // delegated, the machine software interrupt on for shootdowns), its hart number in `tp`.
    "    csrr tp, mhartid",
    "    la t0, m_trap",
    "    csrw mtvec, t0",
    "    la t0, m_save",
    "    slli t1, tp, 5",
    "    add t0, t0, t1",
    "    csrw mscratch, t0",
    "    li t0, -1",
    "    csrw pmpaddr0, t0",
    "    li t0, 0x1f",
    "    csrw pmpcfg0, t0",
    // menvcfg: PBMTE (bit 62) for Svpbmt, ADUE (bit 61) for Svadu.
    "    li t0, 3",
    "    slli t0, t0, 61",
    "    csrs 0x30a, t0",
    // Instruction, load and store page faults go to S-mode.
    "    li t0, (1 << 12) | (1 << 13) | (1 << 15)",
    "    csrw medeleg, t0",
    "    li t0, 1 << 3", // MSIE
    "    csrw mie, t0",
    "    la t0, s_trap",
    "    csrw stvec, t0",
    "    csrw satp, zero",
    "    li t0, 3 << 11",
    "    csrc mstatus, t0",
    "    li t0, 1 << 11", // MPP = S
    "    csrs mstatus, t0",
    "    bnez tp, 2f",
    // Hart 0: the kernel, on the image's stack.
    "    la sp, __stack_top",
    "    la t0, kmain",
    "    csrw mepc, t0",
    "    mret",
    // Any other hart waits for its stack in `start_stacks`, then runs a worker.
    "2:  la t0, start_stacks",
    "    slli t1, tp, 3",
    "    add t0, t0, t1",
    "3:  ld sp, 0(t0)",
    "    beqz sp, 3b",
    "    mv a0, tp",
    "    la t0, secondary_main",
    "    csrw mepc, t0",
    "    mret",
    // S-mode traps: saves every register a Rust call may clobber, lets the kernel handle the
    // fault and resumes where it says.
    ".balign 4",
    "s_trap:",
    "    addi sp, sp, -128",
    "    sd ra, 0(sp)",
    "    sd t0, 8(sp)",
    "    sd t1, 16(sp)",
    "    sd t2, 24(sp)",
    "    sd t3, 32(sp)",
    "    sd t4, 40(sp)",
    "    sd t5, 48(sp)",
    "    sd t6, 56(sp)",
    "    sd a0, 64(sp)",
    "    sd a1, 72(sp)",
    "    sd a2, 80(sp)",
    "    sd a3, 88(sp)",
    "    sd a4, 96(sp)",
    "    sd a5, 104(sp)",
    "    sd a6, 112(sp)",
    "    sd a7, 120(sp)",
    "    csrr a0, scause",
    "    csrr a1, stval",
    "    csrr a2, sepc",
    "    mv a3, ra",
    "    call trap",
    "    csrw sepc, a0",
    "    ld ra, 0(sp)",
    "    ld t0, 8(sp)",
    "    ld t1, 16(sp)",
    "    ld t2, 24(sp)",
    "    ld t3, 32(sp)",
    "    ld t4, 40(sp)",
    "    ld t5, 48(sp)",
    "    ld t6, 56(sp)",
    "    ld a0, 64(sp)",
    "    ld a1, 72(sp)",
    "    ld a2, 80(sp)",
    "    ld a3, 88(sp)",
    "    ld a4, 96(sp)",
    "    ld a5, 104(sp)",
    "    ld a6, 112(sp)",
    "    ld a7, 120(sp)",
    "    addi sp, sp, 128",
    "    sret",
    // M-mode traps: the machine software interrupt is a shootdown (drop every translation of
    // this hart, acknowledge); anything else is not expected: report and stop.
    ".balign 4",
    "m_trap:",
    "    csrrw t0, mscratch, t0",
    "    sd t1, 0(t0)",
    "    sd t2, 8(t0)",
    "    csrr t1, mcause",
    "    li t2, (1 << 63) | 3",
    "    bne t1, t2, 4f",
    "    csrr t1, mhartid",
    "    slli t1, t1, 2",
    "    li t2, 0x2000000", // CLINT msip
    "    add t1, t1, t2",
    "    sw zero, 0(t1)",
    "    sfence.vma",
    "    la t1, shootdown_acks",
    "    li t2, 1",
    ".option push",
    ".option arch, +a",
    "    amoadd.d zero, t2, (t1)",
    ".option pop",
    "    ld t1, 0(t0)",
    "    ld t2, 8(t0)",
    "    csrrw t0, mscratch, t0",
    "    mret",
    "4:  csrr a0, mcause",
    "    csrr a1, mtval",
    "    csrr a2, mepc",
    "    j m_trap_report",
    // The probes: one uncompressed access each, at a label the trap entry knows.
    ".option push",
    ".option norvc",
    ".global probe_load",
    "probe_load:",
    ".global probe_load_at",
    "probe_load_at:",
    "    ld a0, 0(a0)",
    "    ret",
    ".global probe_store",
    "probe_store:",
    ".global probe_store_at",
    "probe_store_at:",
    "    sd a1, 0(a0)",
    "    ret",
    ".global probe_exec",
    "probe_exec:",
    "    jr a0",
    ".option pop",
);

/// The S-mode trap handler: a page fault goes to the kernel's fault handler; it returns where
/// execution resumes (the same instruction when the kernel mapped the page, else past the
/// probe). Anything else ends the run.
/// Whether `scause` is a load page fault (13). RISC-V reports an invalid entry and a
/// permission refusal with the same cause.
pub fn not_present_load(scause: u64) -> bool {
    scause == 13
}

#[unsafe(no_mangle)]
extern "C" fn trap(scause: u64, stval: u64, sepc: u64, ra: u64) -> u64 {
    let access = match scause {
        12 => Access::Fetch,
        13 => Access::Load,
        15 => Access::Store,
        _ => unexpected("S", scause, stval, sepc),
    };
    crate::note_cause(scause);
    crate::resume(stval, access, sepc, ra, 4)
        .unwrap_or_else(|| unexpected("S", scause, stval, sepc))
}

#[unsafe(no_mangle)]
extern "C" fn m_trap_report(mcause: u64, mtval: u64, mepc: u64) -> ! {
    unexpected("M", mcause, mtval, mepc)
}

fn unexpected(mode: &str, cause: u64, tval: u64, epc: u64) -> ! {
    let _ = fmt::Write::write_fmt(
        &mut Console,
        format_args!(
            "guest: FAIL unexpected {mode}-mode trap cause={cause:#x} tval={tval:#x} epc={epc:#x}\nDONE\n"
        ),
    );
    power_off()
}

/// Turns the MMU on with `satp` (the kernel table's `root_register`: Sv39, ASID 0).
///
/// # Safety
///
/// The tables map the running code, its stack, its frames and the devices one to one.
pub unsafe fn mmu_on(satp: u64) {
    // SAFETY: the caller's table translates everything that runs next.
    unsafe { core::arch::asm!("sfence.vma", "csrw satp, {}", "sfence.vma", in(reg) satp) };
}

/// Device memory takes unaligned accesses here (or QEMU does not fault them): the memory-type
/// check runs on AArch64 only.
pub const DEVICE_ALIGNMENT_FAULTS: bool = false;

/// Never asked for here (see `DEVICE_ALIGNMENT_FAULTS`).
pub fn alignment_fault(_cause: u64) -> bool {
    false
}

/// Every CPU of this architecture tags its TLB entries with an address-space identifier.
pub fn tlb_ids() -> bool {
    true
}

/// QEMU's TLB keeps no entry across a satp write (it drops them all), so an entry of one
/// address space surviving a switch cannot be seen here.
pub const TLB_KEEPS_TAGGED_ENTRIES: bool = false;

/// Ends the machine through the SiFive test device.
pub fn power_off() -> ! {
    // SAFETY: the test device's register, mapped as device memory (or not translated).
    unsafe { core::ptr::write_volatile(TEST_DEVICE as *mut u32, 0x5555) };
    loop {
        core::hint::spin_loop();
    }
}

/// M-mode save areas (one per hart, through `mscratch`), the stacks that start the other
/// harts, and the shootdowns acknowledged.
#[unsafe(no_mangle)]
static mut m_save: [[u64; 4]; crate::smp::MAX_CPUS] = [[0; 4]; crate::smp::MAX_CPUS];
#[unsafe(no_mangle)]
static start_stacks: [AtomicU64; crate::smp::MAX_CPUS] =
    [const { AtomicU64::new(0) }; crate::smp::MAX_CPUS];
#[unsafe(no_mangle)]
static shootdown_acks: AtomicU64 = AtomicU64::new(0);

/// This hart's number (kept in `tp` since boot).
pub fn cpu_id() -> usize {
    let hart: usize;
    // SAFETY: reads a register that nothing else writes.
    unsafe { core::arch::asm!("mv {}, tp", out(reg) hart, options(nomem, nostack)) };
    hart
}

/// Starts hart `cpu`, waiting in M-mode, with `stack` as its stack's top.
pub fn start_cpu(cpu: usize, stack: u64) {
    start_stacks[cpu].store(stack, Ordering::SeqCst);
}

#[unsafe(no_mangle)]
extern "C" fn secondary_main(hart: u64) -> ! {
    crate::smp::worker(hart as usize)
}

/// The other harts drop their translations: `sfence.vma` does not reach them, so each gets a
/// machine software interrupt (a store to its CLINT word) whose handler runs `sfence.vma`
/// (everything: the range is not passed) and acknowledges; this waits for every one.
pub fn shootdown(_range: Option<(u64, u64)>) {
    let before = shootdown_acks.load(Ordering::SeqCst);
    let me = cpu_id();
    for hart in (0..CPUS).filter(|&h| h != me) {
        // SAFETY: the hart's CLINT word, mapped as device memory.
        unsafe { core::ptr::write_volatile((CLINT_MSIP + 4 * hart as u64) as *mut u32, 1) };
    }
    while shootdown_acks.load(Ordering::SeqCst) < before + (CPUS as u64 - 1) {
        core::hint::spin_loop();
    }
}

/// Runs `f`, which waits for the kernel's lock, where another CPU's shootdown can still
/// reach this one: the shootdown is a machine-mode interrupt, taken in S-mode whatever its interrupt enable.
pub fn with_interrupts<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Drops this CPU's translation of `va` (a spurious fault's stale entry).
pub fn invalidate_local(va: u64) {
    // SAFETY: a TLB invalidation by VA on this hart only; touches no memory.
    unsafe { core::arch::asm!("sfence.vma {}, zero", in(reg) va) };
}

/// A worker, its MMU on: nothing more to set up here.
pub fn cpu_ready() {}

/// Stops this hart for good.
pub fn park() -> ! {
    loop {
        // SAFETY: waits, nothing else.
        unsafe { core::arch::asm!("wfi") };
    }
}
