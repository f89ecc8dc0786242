//! The RISC-V hypervisor in HS-mode (QEMU `virt -bios none -cpu rv64,h=true`), untranslated:
//! M-mode boot that delegates the guest's exits to HS-mode, hgatp with the crate's Sv39x4
//! table, the world switch to the guest in VS-mode (vsatp bare) and back on its `ecall` or a
//! guest-page fault, the NS16550 console, the SiFive test device for power-off.

use core::fmt;

pub use crate::shared::{Console, write_ret};

use pagetable::Sv39x4;

/// The G-stage: Sv39x4, 41-bit guest physical addresses.
pub type Mode = Sv39x4;
/// QEMU virt's RAM.
pub const RAM: u64 = 0x8000_0000;
const TEST_DEVICE: u64 = 0x10_0000;

/// The guest's registers x1-x31 while the hypervisor runs; the hypervisor's stack pointer
/// while the guest runs.
#[unsafe(no_mangle)]
static mut guest_regs: [u64; 31] = [0; 31];
#[unsafe(no_mangle)]
static mut hyp_sp: u64 = 0;

core::arch::global_asm!(
    ".section .text.boot",
    ".global _start",
    "_start:",
    "    csrr t0, mhartid",
    "    bnez t0, 9f",
    "    la sp, __stack_top",
    "    la t0, m_trap",
    "    csrw mtvec, t0",
    "    li t0, -1",
    "    csrw pmpaddr0, t0",
    "    li t0, 0x1f",
    "    csrw pmpcfg0, t0",
    // menvcfg: PBMTE for Svpbmt in the G-stage.
    "    li t0, 1",
    "    slli t0, t0, 62",
    "    csrs 0x30a, t0",
    // The guest's ecall (10) and guest-page faults (20, 21, 23) go to HS-mode.
    "    li t0, (1 << 10) | (1 << 20) | (1 << 21) | (1 << 23)",
    "    csrw medeleg, t0",
    "    la t0, hs_trap",
    "    csrw stvec, t0",
    "    la t0, guest_regs",
    "    csrw sscratch, t0",
    "    csrw satp, zero",
    "    li t0, 3 << 11",
    "    csrc mstatus, t0",
    "    li t0, 1 << 11", // MPP = S, MPV = 0: HS-mode
    "    csrs mstatus, t0",
    "    la t0, hyp_main",
    "    csrw mepc, t0",
    "    mret",
    "9:  wfi",
    "    j 9b",
    ".balign 4",
    "m_trap:",
    "    csrr a0, mcause",
    "    csrr a1, mtval",
    "    csrr a2, mepc",
    "    j m_trap_report",
    // run_guest_asm(): saves the hypervisor's callee-saved registers and stack pointer, loads
    // the guest's registers and enters it (VS-mode); returns when the guest exits for good
    // (its ecall).
    ".global run_guest_asm",
    "run_guest_asm:",
    "    addi sp, sp, -112",
    "    sd ra, 0(sp)",
    "    sd s0, 8(sp)",
    "    sd s1, 16(sp)",
    "    sd s2, 24(sp)",
    "    sd s3, 32(sp)",
    "    sd s4, 40(sp)",
    "    sd s5, 48(sp)",
    "    sd s6, 56(sp)",
    "    sd s7, 64(sp)",
    "    sd s8, 72(sp)",
    "    sd s9, 80(sp)",
    "    sd s10, 88(sp)",
    "    sd s11, 96(sp)",
    "    la t0, hyp_sp",
    "    sd sp, 0(t0)",
    "enter_guest:",
    "    la t0, guest_regs",
    "    ld ra, 0(t0)",
    "    ld sp, 8(t0)",
    "    ld gp, 16(t0)",
    "    ld tp, 24(t0)",
    "    ld t1, 40(t0)",
    "    ld t2, 48(t0)",
    "    ld s0, 56(t0)",
    "    ld s1, 64(t0)",
    "    ld a0, 72(t0)",
    "    ld a1, 80(t0)",
    "    ld a2, 88(t0)",
    "    ld a3, 96(t0)",
    "    ld a4, 104(t0)",
    "    ld a5, 112(t0)",
    "    ld a6, 120(t0)",
    "    ld a7, 128(t0)",
    "    ld s2, 136(t0)",
    "    ld s3, 144(t0)",
    "    ld s4, 152(t0)",
    "    ld s5, 160(t0)",
    "    ld s6, 168(t0)",
    "    ld s7, 176(t0)",
    "    ld s8, 184(t0)",
    "    ld s9, 192(t0)",
    "    ld s10, 200(t0)",
    "    ld s11, 208(t0)",
    "    ld t3, 216(t0)",
    "    ld t4, 224(t0)",
    "    ld t5, 232(t0)",
    "    ld t6, 240(t0)",
    "    ld t0, 32(t0)",
    "    sret",
    // A trap: from the guest (hstatus.SPV) its registers are saved and the hypervisor decides
    // (Rust), then the guest resumes or run_guest_asm returns; from HS-mode itself it is a bug.
    ".balign 4",
    "hs_trap:",
    "    csrrw t0, sscratch, t0",
    "    sd ra, 0(t0)",
    "    sd sp, 8(t0)",
    "    sd gp, 16(t0)",
    "    sd tp, 24(t0)",
    "    sd t1, 40(t0)",
    "    sd t2, 48(t0)",
    "    sd s0, 56(t0)",
    "    sd s1, 64(t0)",
    "    sd a0, 72(t0)",
    "    sd a1, 80(t0)",
    "    sd a2, 88(t0)",
    "    sd a3, 96(t0)",
    "    sd a4, 104(t0)",
    "    sd a5, 112(t0)",
    "    sd a6, 120(t0)",
    "    sd a7, 128(t0)",
    "    sd s2, 136(t0)",
    "    sd s3, 144(t0)",
    "    sd s4, 152(t0)",
    "    sd s5, 160(t0)",
    "    sd s6, 168(t0)",
    "    sd s7, 176(t0)",
    "    sd s8, 184(t0)",
    "    sd s9, 192(t0)",
    "    sd s10, 200(t0)",
    "    sd s11, 208(t0)",
    "    sd t3, 216(t0)",
    "    sd t4, 224(t0)",
    "    sd t5, 232(t0)",
    "    sd t6, 240(t0)",
    "    csrr t1, sscratch",
    "    sd t1, 32(t0)",
    "    csrw sscratch, t0",
    "    la t0, hyp_sp",
    "    ld sp, 0(t0)",
    "    csrr t0, hstatus",
    "    andi t0, t0, 1 << 7", // SPV
    "    beqz t0, 1f",
    "    csrr a0, scause",
    "    csrr a1, stval",
    "    csrr a2, htval",
    "    csrr a3, sepc",
    "    call guest_exit",
    "    beqz a0, enter_guest",
    "    ld ra, 0(sp)",
    "    ld s0, 8(sp)",
    "    ld s1, 16(sp)",
    "    ld s2, 24(sp)",
    "    ld s3, 32(sp)",
    "    ld s4, 40(sp)",
    "    ld s5, 48(sp)",
    "    ld s6, 56(sp)",
    "    ld s7, 64(sp)",
    "    ld s8, 72(sp)",
    "    ld s9, 80(sp)",
    "    ld s10, 88(sp)",
    "    ld s11, 96(sp)",
    "    addi sp, sp, 112",
    "    ret",
    "1:  csrr a0, scause",
    "    csrr a1, stval",
    "    csrr a2, sepc",
    "    j hyp_fault_report",
    // The guest, in VS-mode with vsatp bare: asks for a probe (a0 kind, a1 address, a2
    // value), makes it, hands back the result in a0 with the next ecall.
    ".option push",
    ".option norvc",
    ".global guest_entry",
    "guest_entry:",
    "    li a0, 0",
    "1:  ecall",
    "    li t0, 1",
    "    beq a0, t0, 2f",
    "    li t0, 2",
    "    beq a0, t0, 3f",
    "    li t0, 3",
    "    beq a0, t0, 4f",
    "    j 1b",
    "2:",
    ".global guest_load_at",
    "guest_load_at:",
    "    ld a0, 0(a1)",
    "    j 1b",
    "3:",
    ".global guest_store_at",
    "guest_store_at:",
    "    sd a2, 0(a1)",
    "    li a0, 0",
    "    j 1b",
    "4:  jalr ra, 0(a1)",
    "    li a0, 0",
    "    j 1b",
    ".option pop",
);

unsafe extern "C" {
    fn run_guest_asm();
    static guest_entry: u8;
    static guest_load_at: u8;
    static guest_store_at: u8;
}

/// A guest exit: its `ecall` (back to the hypervisor: 1), or a guest-page fault, which the
/// hypervisor serves (the guest retries) or skips (the guest goes on past the access): 0.
#[unsafe(no_mangle)]
extern "C" fn guest_exit(scause: u64, stval: u64, htval: u64, sepc: u64) -> u64 {
    let resume = match scause {
        10 => {
            // SAFETY: past the guest's ecall.
            unsafe { core::arch::asm!("csrw sepc, {}", in(reg) sepc + 4) };
            return 1;
        }
        20 | 21 | 23 => {
            if crate::on_stage2_fault(htval << 2 | (stval & 3)) {
                return 0;
            }
            // SAFETY: the hypervisor's copy of the guest's registers (x1, ra, first).
            let ra = unsafe { (*(&raw const guest_regs))[0] };
            if scause == 20 {
                ra
            } else if sepc == &raw const guest_load_at as u64
                || sepc == &raw const guest_store_at as u64
            {
                sepc + 4
            } else {
                report_unexpected("guest fault", scause, stval, sepc)
            }
        }
        _ => report_unexpected("guest exit", scause, stval, sepc),
    };
    // SAFETY: where the guest resumes.
    unsafe { core::arch::asm!("csrw sepc, {}", in(reg) resume) };
    0
}

#[unsafe(no_mangle)]
extern "C" fn hyp_fault_report(scause: u64, stval: u64, sepc: u64) -> ! {
    report_unexpected("hypervisor trap", scause, stval, sepc)
}

#[unsafe(no_mangle)]
extern "C" fn m_trap_report(mcause: u64, mtval: u64, mepc: u64) -> ! {
    report_unexpected("M-mode trap", mcause, mtval, mepc)
}

fn report_unexpected(what: &str, cause: u64, tval: u64, epc: u64) -> ! {
    let _ = fmt::Write::write_fmt(
        &mut Console,
        format_args!("guest: FAIL {what} cause={cause:#x} tval={tval:#x} epc={epc:#x}\nDONE\n"),
    );
    power_off()
}

/// Runs the guest for one probe; the value it hands back.
pub fn run_guest(kind: u64, addr: u64, value: u64) -> u64 {
    // SAFETY: the guest is not running: its registers are the hypervisor's to set.
    unsafe {
        let regs = &mut *(&raw mut guest_regs);
        regs[9] = kind; // a0
        regs[10] = addr; // a1
        regs[11] = value; // a2
        run_guest_asm();
        (*(&raw const guest_regs))[9]
    }
}

/// Enters the guest for the first time, in VS-mode with vsatp bare; whether it came back with
/// its first `ecall`.
pub fn start_guest() -> bool {
    // SAFETY: the guest's entry and mode (hstatus.SPV, sstatus.SPP: sret enters VS-mode),
    // in memory the G-stage maps.
    unsafe {
        core::arch::asm!(
            "csrw vsatp, zero",
            "csrs hstatus, {spv}",
            "csrs sstatus, {spp}",
            "csrw sepc, {entry}",
            spv = in(reg) 1u64 << 7,
            spp = in(reg) 1u64 << 8,
            entry = in(reg) &raw const guest_entry as u64,
        );
        run_guest_asm();
    }
    true
}

/// The G-stage on with `hgatp` (the table's `root_register`: MODE 8 for Sv39x4, its VMID and
/// root).
///
/// # Safety
///
/// The table maps the guest's code where it is.
pub unsafe fn stage2_on(hgatp: u64) {
    // SAFETY: only the guest's translation changes; HS-mode stays untranslated.
    unsafe {
        core::arch::asm!(
            "csrw hgatp, {}",
            ".insn r 0x73, 0, 0x31, x0, x0, x0", // hfence.gvma
            in(reg) hgatp,
        )
    };
}

/// The first free frame after the image and its stack.
pub fn image_end() -> u64 {
    unsafe extern "C" {
        static __frames: u8;
    }
    // Only the symbol's address is taken.
    &raw const __frames as u64
}

/// Ends the machine through the SiFive test device.
pub fn power_off() -> ! {
    // SAFETY: the test device's register.
    unsafe { core::ptr::write_volatile(TEST_DEVICE as *mut u32, 0x5555) };
    loop {
        core::hint::spin_loop();
    }
}
