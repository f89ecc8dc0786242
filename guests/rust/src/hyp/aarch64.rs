//! The AArch64 hypervisor at EL2 (QEMU `virt,virtualization=on`), EL2 untranslated: the
//! stage 2 registers, the world switch to the guest at EL1 (its MMU off) and back on its `hvc`
//! or a stage 2 abort, the PL011 console, PSCI power-off.

use core::fmt;

pub use crate::shared::{Console, write_ret};

use pagetable::arch::aarch64::VaRange;
use pagetable::arch::aarch64_regs::CpuFeatures;
use pagetable::{
    AArch64, AArch64S2, El2, El3, HugePages, Ipa40, MappingFlags as F, MemType, PageSize,
    PageTable, PagingHandler, PhysAddr, Va48, VirtAddr,
};

/// Stage 2 with a 40-bit IPA space.
pub type Mode = AArch64S2<Ipa40>;
/// The hypervisor's own translation: the EL2 regime without VHE, 48-bit VA.
pub type El2Mode = AArch64<Va48, El2>;
/// The secure firmware's translation, when the machine starts at EL3.
pub type El3Mode = AArch64<Va48, El3>;
/// QEMU virt's RAM.
pub const RAM: u64 = 0x4000_0000;

/// The guest's registers x0-x30 while the hypervisor runs; the hypervisor's stack pointer and
/// callee-saved registers while the guest runs.
#[unsafe(no_mangle)]
static mut guest_regs: [u64; 31] = [0; 31];
#[unsafe(no_mangle)]
static mut hyp_sp: u64 = 0;

core::arch::global_asm!(
    ".section .text.boot",
    ".global _start",
    "_start:",
    "    ldr x30, =__stack_top",
    "    mov sp, x30",
    // Started at EL3 (QEMU `secure=on`, loaded as firmware): the EL3 checks on the EL3 table
    // first, then down to EL2 (non-secure, AArch64, HVC enabled) where the hypervisor starts.
    "    mrs x0, CurrentEL",
    "    cmp x0, #(3 << 2)",
    "    b.ne el2_start",
    "    adr x0, el3_vectors",
    "    msr vbar_el3, x0",
    "    isb",
    "    bl el3_main",
    "    mov x0, #0x531", // SCR_EL3: NS, RES1 bits 4 and 5, HCE, RW
    "    msr scr_el3, x0",
    "    mov x0, #0x3c9", // SPSR_EL3: EL2h, DAIF masked
    "    msr spsr_el3, x0",
    "    adr x0, el2_start",
    "    msr elr_el3, x0",
    "    isb",
    "    eret",
    "el2_start:",
    "    ldr x30, =__stack_top",
    "    mov sp, x30",
    "    adr x0, hyp_vectors",
    "    msr vbar_el2, x0",
    "    isb",
    "    bl hyp_main",
    "1:  wfe",
    "    b 1b",
    // EL3's vectors: a synchronous exception at EL3 is a probe's fault (`probe`): noted, and
    // the probe's load skipped.
    ".balign 2048",
    "el3_vectors:",
    ".rept 4",
    ".balign 128",
    "b .",
    ".endr",
    ".balign 128",
    "    adr x16, probe_faulted",
    "    mov x17, #1",
    "    str x17, [x16]",
    "    mrs x16, elr_el3",
    "    add x16, x16, #4",
    "    msr elr_el3, x16",
    "    eret",
    ".rept 3",
    ".balign 128",
    "b .",
    ".endr",
    ".rept 8",
    ".balign 128",
    "b .",
    ".endr",
    // probe(addr): the load at `addr` (at `probe_at`), or 0 if it faulted; EL2 and EL3.
    ".global probe",
    "probe:",
    "    mov x1, x0",
    "    mov x0, #0",
    "probe_at:",
    "    ldr x0, [x1]",
    "    ret",
    ".balign 2048",
    "hyp_vectors:",
    ".rept 4",
    ".balign 128",
    "b .",
    ".endr",
    // Current EL with SP_EL2: an exception of the hypervisor's own is a bug.
    ".balign 128",
    "b hyp_fault",
    ".rept 3",
    ".balign 128",
    "b .",
    ".endr",
    // Lower EL, AArch64: synchronous, the guest's exits.
    ".balign 128",
    "b from_guest",
    ".rept 3",
    ".balign 128",
    "b .",
    ".endr",
    ".rept 4",
    ".balign 128",
    "b .",
    ".endr",
    // run_guest_asm(): saves the hypervisor's callee-saved registers and stack pointer, loads
    // the guest's registers and enters it; returns when the guest exits for good (its hvc).
    ".global run_guest_asm",
    "run_guest_asm:",
    "    stp x19, x20, [sp, #-96]!",
    "    stp x21, x22, [sp, #16]",
    "    stp x23, x24, [sp, #32]",
    "    stp x25, x26, [sp, #48]",
    "    stp x27, x28, [sp, #64]",
    "    stp x29, x30, [sp, #80]",
    "    adr x0, hyp_sp",
    "    mov x1, sp",
    "    str x1, [x0]",
    "enter_guest:",
    "    adr x30, guest_regs",
    "    ldp x0, x1, [x30, #0]",
    "    ldp x2, x3, [x30, #16]",
    "    ldp x4, x5, [x30, #32]",
    "    ldp x6, x7, [x30, #48]",
    "    ldp x8, x9, [x30, #64]",
    "    ldp x10, x11, [x30, #80]",
    "    ldp x12, x13, [x30, #96]",
    "    ldp x14, x15, [x30, #112]",
    "    ldp x16, x17, [x30, #128]",
    "    ldp x18, x19, [x30, #144]",
    "    ldp x20, x21, [x30, #160]",
    "    ldp x22, x23, [x30, #176]",
    "    ldp x24, x25, [x30, #192]",
    "    ldp x26, x27, [x30, #208]",
    "    ldp x28, x29, [x30, #224]",
    "    ldr x30, [x30, #240]",
    "    eret",
    // An exit: the guest's registers saved, the hypervisor decides (Rust), then either the
    // guest resumes or run_guest_asm returns.
    "from_guest:",
    "    stp x29, x30, [sp, #-16]!",
    "    adr x30, guest_regs",
    "    stp x0, x1, [x30, #0]",
    "    stp x2, x3, [x30, #16]",
    "    stp x4, x5, [x30, #32]",
    "    stp x6, x7, [x30, #48]",
    "    stp x8, x9, [x30, #64]",
    "    stp x10, x11, [x30, #80]",
    "    stp x12, x13, [x30, #96]",
    "    stp x14, x15, [x30, #112]",
    "    stp x16, x17, [x30, #128]",
    "    stp x18, x19, [x30, #144]",
    "    stp x20, x21, [x30, #160]",
    "    stp x22, x23, [x30, #176]",
    "    stp x24, x25, [x30, #192]",
    "    stp x26, x27, [x30, #208]",
    "    ldp x0, x1, [sp], #16",
    "    stp x28, x0, [x30, #224]",
    "    str x1, [x30, #240]",
    "    mrs x0, esr_el2",
    "    mrs x1, far_el2",
    "    mrs x2, hpfar_el2",
    "    mrs x3, elr_el2",
    "    bl guest_exit",
    "    cbz x0, enter_guest",
    "    adr x0, hyp_sp",
    "    ldr x0, [x0]",
    "    mov sp, x0",
    "    ldp x21, x22, [sp, #16]",
    "    ldp x23, x24, [sp, #32]",
    "    ldp x25, x26, [sp, #48]",
    "    ldp x27, x28, [sp, #64]",
    "    ldp x29, x30, [sp, #80]",
    "    ldp x19, x20, [sp], #96",
    "    ret",
    // An exception of the hypervisor's own: a probe's fault (noted, the load skipped), or a
    // bug.
    "hyp_fault:",
    "    stp x16, x17, [sp, #-16]!",
    "    adr x16, probe_at",
    "    mrs x17, elr_el2",
    "    cmp x16, x17",
    "    b.ne 1f",
    "    adr x16, probe_faulted",
    "    mov x17, #1",
    "    str x17, [x16]",
    "    mrs x16, elr_el2",
    "    add x16, x16, #4",
    "    msr elr_el2, x16",
    "    ldp x16, x17, [sp], #16",
    "    eret",
    "1:  ldp x16, x17, [sp], #16",
    "    mrs x0, esr_el2",
    "    mrs x1, far_el2",
    "    mrs x2, elr_el2",
    "    b hyp_fault_report",
    // The guest, at EL1 with its MMU off: asks for a probe (x0 kind, x1 address, x2 value),
    // makes it, hands back the result in x0 with the next hvc.
    ".global guest_entry",
    "guest_entry:",
    "    mov x0, #0",
    "1:  hvc #0",
    "    cmp x0, #1",
    "    b.eq 2f",
    "    cmp x0, #2",
    "    b.eq 3f",
    "    cmp x0, #3",
    "    b.eq 4f",
    "    b 1b",
    "2:",
    ".global guest_load_at",
    "guest_load_at:",
    "    ldr x0, [x1]",
    "    b 1b",
    "3:",
    ".global guest_store_at",
    "guest_store_at:",
    "    str x2, [x1]",
    "    mov x0, #0",
    "    b 1b",
    "4:  blr x1",
    "    mov x0, #0",
    "    b 1b",
);

unsafe extern "C" {
    fn run_guest_asm();
    static guest_entry: u8;
    static guest_load_at: u8;
    static guest_store_at: u8;
}

/// A guest exit: its `hvc` (back to the hypervisor: 1), or a stage 2 abort, which the
/// hypervisor serves (the guest retries) or skips (the guest goes on past the access): 0.
#[unsafe(no_mangle)]
extern "C" fn guest_exit(esr: u64, far: u64, hpfar: u64, elr: u64) -> u64 {
    let class = esr >> 26;
    if class == 0x16 {
        return 1;
    }
    if class != 0x24 && class != 0x20 {
        report_unexpected("guest exit", esr, far, elr);
    }
    let ipa = (hpfar >> 4) << 12 | (far & 0xfff);
    if crate::on_stage2_fault(ipa) {
        return 0;
    }
    // SAFETY: the hypervisor's copy of the guest's registers, not in use by anything else.
    let lr = unsafe { (*(&raw const guest_regs))[30] };
    let resume = if class == 0x20 {
        lr
    } else if elr == &raw const guest_load_at as u64 || elr == &raw const guest_store_at as u64 {
        elr + 4
    } else {
        report_unexpected("guest abort", esr, far, elr)
    };
    // SAFETY: where the guest resumes.
    unsafe { core::arch::asm!("msr elr_el2, {}", in(reg) resume) };
    0
}

#[unsafe(no_mangle)]
extern "C" fn hyp_fault_report(esr: u64, far: u64, elr: u64) -> ! {
    report_unexpected("hypervisor exception", esr, far, elr)
}

fn report_unexpected(what: &str, esr: u64, far: u64, elr: u64) -> ! {
    let _ = fmt::Write::write_fmt(
        &mut Console,
        format_args!("guest: FAIL {what} esr={esr:#x} far={far:#x} elr={elr:#x}\nDONE\n"),
    );
    power_off()
}

/// Runs the guest for one probe; the value it hands back.
pub fn run_guest(kind: u64, addr: u64, value: u64) -> u64 {
    // SAFETY: the guest is not running: its registers are the hypervisor's to set.
    unsafe {
        let regs = &mut *(&raw mut guest_regs);
        regs[0] = kind;
        regs[1] = addr;
        regs[2] = value;
        run_guest_asm();
        (*(&raw const guest_regs))[0]
    }
}

/// Enters the guest for the first time, at EL1 with its MMU off; whether it came back with
/// its first `hvc`.
pub fn start_guest() -> bool {
    let stack = crate::data_page() + 0x1000;
    // SAFETY: the guest's entry, state (EL1h, interrupts masked, MMU and caches off) and stack,
    // all in memory the stage 2 maps.
    unsafe {
        core::arch::asm!(
            "msr sctlr_el1, {sctlr}",
            "msr sp_el1, {stack}",
            "msr elr_el2, {entry}",
            "msr spsr_el2, {spsr}",
            "isb",
            sctlr = in(reg) 0x30d0_0800u64,
            stack = in(reg) stack,
            entry = in(reg) &raw const guest_entry as u64,
            spsr = in(reg) 0x3c5u64,
        );
        run_guest_asm();
    }
    true
}

/// Stage 2 on for EL1&0 with `vttbr` (the table's `root_register`: its root and VMID), VTCR_EL2
/// as the crate composes it for this CPU's features, HCR_EL2.VM and RW.
///
/// # Safety
///
/// The table maps the guest's code and stack where they are.
pub unsafe fn stage2_on(vttbr: u64) {
    let (mmfr0, mmfr1): (u64, u64);
    // SAFETY: reads ID registers.
    unsafe {
        core::arch::asm!("mrs {}, id_aa64mmfr0_el1", "mrs {}, id_aa64mmfr1_el1", out(reg) mmfr0, out(reg) mmfr1)
    };
    let features = pagetable::arch::aarch64_regs::CpuFeatures::from_id_regs(mmfr0, mmfr1);
    // SAFETY: only the guest's regime changes; EL2 stays untranslated.
    unsafe {
        core::arch::asm!(
            "msr vtcr_el2, {vtcr}",
            "msr vttbr_el2, {root}",
            "isb",
            "tlbi vmalls12e1",
            "dsb ish",
            "msr hcr_el2, {hcr}",
            "isb",
            vtcr = in(reg) Mode::vtcr_el2(features),
            root = in(reg) vttbr,
            hcr = in(reg) 1u64 | 1 << 31,
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

/// PSCI SYSTEM_OFF; at EL2 QEMU's conduit is SMC.
pub fn power_off() -> ! {
    // SAFETY: ends the machine.
    unsafe { core::arch::asm!("smc #0", in("x0") 0x8400_0008u64, options(noreturn)) }
}

/// This CPU's translation features, from its ID registers.
pub fn features() -> CpuFeatures {
    let (mmfr0, mmfr1): (u64, u64);
    // SAFETY: reads ID registers.
    unsafe {
        core::arch::asm!("mrs {}, id_aa64mmfr0_el1", "mrs {}, id_aa64mmfr1_el1", out(reg) mmfr0, out(reg) mmfr1)
    };
    CpuFeatures::from_id_regs(mmfr0, mmfr1)
}

/// `$name(pt)`: turns the MMU of exception level `$el` on with `pt`, of mode `$mode`: MAIR_ELx
/// and TCR_ELx as the crate composes them, then the table's `activate` (TTBR0_ELx, that
/// level's TLB dropped), then SCTLR_ELx.M, C and I.
macro_rules! mmu_on {
    ($(#[$doc:meta])* $name:ident, $mode:ty, $el:literal) => {
        $(#[$doc])*
        pub unsafe fn $name<H: PagingHandler>(pt: &PageTable<$mode, H>) {
            // SAFETY: the caller's table translates everything that runs next, at the same
            // address.
            unsafe {
                core::arch::asm!(
                    concat!("msr mair_", $el, ", {mair}"),
                    concat!("msr tcr_", $el, ", {tcr}"),
                    "isb",
                    mair = in(reg) <$mode>::mair(),
                    tcr = in(reg) <$mode>::tcr(features()),
                );
                pt.activate();
                core::arch::asm!(
                    concat!("mrs {t}, sctlr_", $el),
                    "orr {t}, {t}, #1",
                    "orr {t}, {t}, #(1 << 2)",
                    "orr {t}, {t}, #(1 << 12)",
                    concat!("msr sctlr_", $el, ", {t}"),
                    "isb",
                    t = out(reg) _,
                );
            }
        }
    };
}

mmu_on!(
    /// EL2's own MMU on with `pt` (see `mmu_on!`).
    ///
    /// # Safety
    ///
    /// At EL2; `pt` maps the hypervisor's code, stack, data, frames and console one to one,
    /// and stays alive and live as long as EL2 runs translated.
    el2_mmu_on,
    El2Mode,
    "el2"
);
mmu_on!(
    /// EL3's MMU on with `pt` (see `mmu_on!`).
    ///
    /// # Safety
    ///
    /// At EL3; `pt` maps the code, stack, data and console one to one and stays alive and
    /// live while EL3 runs translated.
    el3_mmu_on,
    El3Mode,
    "el3"
);

/// Set by the vector (EL2's or EL3's) when a probe faulted.
#[unsafe(no_mangle)]
static mut probe_faulted: u64 = 0;

unsafe extern "C" {
    fn probe(addr: u64) -> u64;
}

/// A load from `addr` at EL2 or EL3, or `None` if it faulted.
pub fn read(addr: u64) -> Option<u64> {
    // SAFETY: the flag is only written by the vector, while this code waits on the probe.
    unsafe { core::ptr::write_volatile(&raw mut probe_faulted, 0) };
    // SAFETY: a fault of the probe's load is caught by the vector, which skips it.
    let value = unsafe { probe(addr) };
    // SAFETY: as above.
    (unsafe { core::ptr::read_volatile(&raw const probe_faulted) } == 0).then_some(value)
}

/// Maps, one to one in `pt` (the hypervisor's or the firmware's own table): QEMU virt's first
/// GiB of RAM (the image, its frames, the guest's RAM; read, write, execute) and the console
/// (device memory). Global: the EL2 and EL3 regimes have no other kind of leaf.
pub fn map_own<R: VaRange, H: PagingHandler>(pt: &mut PageTable<AArch64<Va48, R>, H>) {
    let (va, pa) = (
        |a: u64| VirtAddr::from(a as usize),
        |a: u64| PhysAddr::from(a as usize),
    );
    let rwx = F::READ | F::WRITE | F::EXECUTE | F::GLOBAL;
    pt.map_region(va(RAM), pa(RAM), 1 << 30, rwx, HugePages::Allowed)
        .expect("RAM")
        .ignore();
    let device = (F::READ | F::WRITE | F::GLOBAL).with_mem_type(MemType::Device);
    pt.map(
        va(crate::shared::UART),
        pa(crate::shared::UART),
        PageSize::SIZE_4K,
        device,
    )
    .expect("the console")
    .ignore();
}
