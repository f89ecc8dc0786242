//! x86_64 under QEMU `q35`: multiboot boot (32-bit protected mode, paging off) into long mode
//! on boot tables, an IDT whose page-fault entry hands faults to the kernel's fault handler,
//! the probes, IA32_PAT and CR3, the COM1 console (port I/O, not through the tables),
//! ACPI power-off.

use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pagetable::X86_64;

use crate::Access;

/// The paging mode: 4-level.
pub type Mode = X86_64;
/// The RAM the kernel maps, from its image at 2 MiB.
pub const RAM: u64 = 0x20_0000;
/// The local APIC (xAPIC registers), mapped as device memory: IPIs are sent through it. The
/// console is an I/O port.
const LAPIC: u64 = 0xfee0_0000;
pub const DEVICES: &[u64] = &[LAPIC];
/// The root entry the kernel shares with processes (512 GiB, RAM in it), a page the kernel maps
/// in it while a process runs, and a process's own page (the next root entry).
pub const KERNEL_HALF: (u64, u64) = (0, 1 << 39);
pub const KERNEL_EXTRA_VA: u64 = RAM + (256 << 20);
pub const USER_VA: u64 = 1 << 39;
/// The tables a process table with one page in its own root entry has: PML4, PDPT, PD, PT.
pub const PROCESS_TABLES: u64 = 4;
/// The MMU sets A and D itself.
pub const HW_ACCESS_STATE: bool = true;
/// x86 needs no break to split a leaf.
pub const BREAKS_BEFORE_SPLIT: bool = false;
/// A fetch from a no-execute page faults (and the fault is delivered).
pub const NX_FETCH_FAULTS: bool = true;

const COM1: u16 = 0x3f8;

/// CPUs the guest runs on (QEMU `-smp 4`); the others are started with INIT and SIPI.
pub const CPUS: usize = 4;

/// Where the kernel reaches physical memory: one to one.
pub fn phys(pa: u64) -> u64 {
    pa
}

core::arch::global_asm!(
    ".section .text.boot, \"ax\"",
    ".code32",
    ".balign 4",
    // Multiboot v1 header: no flags, the loader reads the ELF32 headers.
    ".long 0x1BADB002",
    ".long 0",
    ".long -0x1BADB002",
    ".global _start",
    "_start:",
    "    cli",
    "    movl $__stack_top, %esp",
    // The other CPUs start in real mode at 0x8000 (SIPI vector 8): the trampoline goes there.
    "    movl $ap_trampoline, %esi",
    "    movl $0x8000, %edi",
    "    movl $(ap_trampoline_end - ap_trampoline), %ecx",
    "    rep movsb",
    // Boot tables: the first 1 GiB one to one in 2 MiB pages (P | RW | PS).
    "    movl $boot_pd, %edi",
    "    xorl %ecx, %ecx",
    "1:  movl %ecx, %eax",
    "    shll $21, %eax",
    "    orl $0x83, %eax",
    "    movl %eax, (%edi,%ecx,8)",
    "    movl $0, 4(%edi,%ecx,8)",
    "    incl %ecx",
    "    cmpl $512, %ecx",
    "    jb 1b",
    "    movl $boot_pd + 3, boot_pdpt",
    "    movl $boot_pdpt + 3, boot_pml4",
    // CR4: PAE | PGE; EFER: LME | NXE; CR0: PG | WP (ring 0 obeys read-only).
    "    movl %cr4, %eax",
    "    orl $((1 << 5) | (1 << 7)), %eax",
    "    movl %eax, %cr4",
    "    movl $boot_pml4, %eax",
    "    movl %eax, %cr3",
    "    movl $0xC0000080, %ecx",
    "    rdmsr",
    "    orl $((1 << 8) | (1 << 11)), %eax",
    "    wrmsr",
    "    movl %cr0, %eax",
    "    orl $((1 << 31) | (1 << 16)), %eax",
    "    movl %eax, %cr0",
    "    lgdt gdt_ptr",
    "    ljmp $0x08, $2f",
    ".code64",
    "2:  movw $0x10, %ax",
    "    movw %ax, %ds",
    "    movw %ax, %es",
    "    movw %ax, %ss",
    "    movw %ax, %fs",
    "    movw %ax, %gs",
    "    movq $__stack_top, %rsp",
    "    call kmain",
    "3:  hlt",
    "    jmp 3b",
    // Another CPU, from real mode straight into long mode on the boot tables (the same CR4,
    // EFER and CR0 bits as the boot CPU), then to `secondary_main` on the stack in `ap_stack`.
    ".code16",
    "ap_trampoline:",
    "    cli",
    "    xorw %ax, %ax",
    "    movw %ax, %ds",
    "    lgdtl (ap_gdt_ptr - ap_trampoline + 0x8000)",
    "    movl %cr4, %eax",
    "    orl $((1 << 5) | (1 << 7)), %eax",
    "    movl %eax, %cr4",
    "    movl $boot_pml4, %eax",
    "    movl %eax, %cr3",
    "    movl $0xC0000080, %ecx",
    "    rdmsr",
    "    orl $((1 << 8) | (1 << 11)), %eax",
    "    wrmsr",
    "    movl %cr0, %eax",
    "    orl $((1 << 31) | (1 << 16) | 1), %eax",
    "    movl %eax, %cr0",
    "    ljmpl $0x08, $ap_long_mode",
    ".balign 8",
    "ap_gdt_ptr:",
    ".word gdt_ptr - gdt - 1",
    ".long gdt",
    "ap_trampoline_end:",
    ".code64",
    "ap_long_mode:",
    "    movw $0x10, %ax",
    "    movw %ax, %ds",
    "    movw %ax, %es",
    "    movw %ax, %ss",
    "    movq ap_stack(%rip), %rsp",
    "    movq $0, ap_stack(%rip)",
    "    call secondary_main",
    "4:  hlt",
    "    jmp 4b",
    // #PF: saves every register a Rust call may clobber and lets the kernel handle the fault
    // with the interrupt frame in hand (it may change RIP and RSP).
    ".text",
    ".global vec_pf",
    "vec_pf:",
    "    pushq %rax",
    "    pushq %rcx",
    "    pushq %rdx",
    "    pushq %rsi",
    "    pushq %rdi",
    "    pushq %r8",
    "    pushq %r9",
    "    pushq %r10",
    "    pushq %r11",
    "    movq %rsp, %rdi",
    "    subq $8, %rsp",
    "    call page_fault",
    "    addq $8, %rsp",
    "    popq %r11",
    "    popq %r10",
    "    popq %r9",
    "    popq %r8",
    "    popq %rdi",
    "    popq %rsi",
    "    popq %rdx",
    "    popq %rcx",
    "    popq %rax",
    "    addq $8, %rsp",
    "    iretq",
    // A shootdown IPI: drops this CPU's translations (a CR3 reload: the kernel's leaves are not
    // global), acknowledges, and signals the end of the interrupt to the local APIC.
    ".global vec_shootdown",
    "vec_shootdown:",
    "    pushq %rax",
    "    movq %cr3, %rax",
    "    movq %rax, %cr3",
    "    lock incq shootdown_acks(%rip)",
    "    movl $0xFEE000B0, %eax",
    "    movl $0, (%rax)",
    "    popq %rax",
    "    iretq",
    // Every other exception: its vector, then a report (no return).
    ".global vec_other",
    "vec_other:",
    ".irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31",
    "    .balign 16",
    "    movq $\\v, %rdi",
    "    movq %rsp, %rsi",
    "    jmp other_exception",
    ".endr",
    // The probes: one access each, at a label the trap entry knows, and the label after it.
    ".global probe_load",
    "probe_load:",
    ".global probe_load_at",
    "probe_load_at:",
    "    movq (%rdi), %rax",
    "    ret",
    ".global probe_store",
    "probe_store:",
    ".global probe_store_at",
    "probe_store_at:",
    "    movq %rsi, (%rdi)",
    "    ret",
    ".global probe_exec",
    "probe_exec:",
    "    jmp *%rdi",
    ".section .rodata",
    ".balign 8",
    "gdt:",
    ".quad 0",
    ".quad 0x00209A0000000000", // 64-bit code
    ".quad 0x0000920000000000", // data
    "gdt_ptr:",
    ".word gdt_ptr - gdt - 1",
    ".long gdt",
    ".section .bss",
    ".balign 4096",
    "boot_pml4: .skip 4096",
    "boot_pdpt: .skip 4096",
    "boot_pd: .skip 4096",
    options(att_syntax),
);

unsafe extern "C" {
    static vec_pf: u8;
    static vec_other: u8;
    static vec_shootdown: u8;
}

/// What `vec_pf` leaves on the stack: the saved registers, the error code, the CPU's frame.
#[repr(C)]
struct Frame {
    regs: [u64; 9],
    error: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

/// The page-fault handler: the kernel's fault handler first; if it did not map the page, the
/// probe is skipped (a fetch returns to its caller). A fault anywhere else ends the run.
/// Whether the page-fault error code `error` is a load's from a non-present entry: P, W/R and
/// I/D all clear (SDM 4.7).
pub fn not_present_load(error: u64) -> bool {
    error & 0b1_0011 == 0
}

#[unsafe(no_mangle)]
extern "C" fn page_fault(frame: &mut Frame) {
    let cr2: u64;
    // SAFETY: reads the faulting address.
    unsafe { core::arch::asm!("mov {}, cr2", out(reg) cr2) };
    crate::note_cause(frame.error);
    let access = if frame.error & (1 << 4) != 0 {
        Access::Fetch
    } else if frame.error & (1 << 1) != 0 {
        Access::Store
    } else {
        Access::Load
    };
    // SAFETY: the interrupted code's stack top, mapped and 8-aligned (this kernel's stacks);
    // it is the caller's return address when the fault is a probe's fetch (from
    // `probe_exec`'s jump), the only case that uses it.
    let link = unsafe { *(frame.rsp as *const u64) };
    // The probes' loads and stores are 3 bytes long (`movq (%rdi), %rax`, `movq %rsi, (%rdi)`).
    match crate::resume(cr2, access, frame.rip, link, 3) {
        Some(rip) if access == Access::Fetch && rip == link && frame.rip == cr2 => {
            frame.rip = rip;
            frame.rsp += 8;
        }
        Some(rip) => frame.rip = rip,
        None => report_unexpected(14, frame.error, cr2, frame.rip),
    }
}

#[unsafe(no_mangle)]
extern "C" fn other_exception(vector: u64, stack: *const u64) -> ! {
    // SAFETY: the stack holds the CPU's frame (after the error code, for the vectors with one).
    let rip = unsafe {
        *stack.add(usize::from(matches!(
            vector,
            8 | 10..=14 | 17 | 21 | 29 | 30
        )))
    };
    report_unexpected(vector, 0, 0, rip)
}

fn report_unexpected(vector: u64, error: u64, cr2: u64, rip: u64) -> ! {
    let _ = fmt::Write::write_fmt(
        &mut Console,
        format_args!(
            "guest: FAIL unexpected exception {vector} error={error:#x} cr2={cr2:#x} rip={rip:#x}\nDONE\n"
        ),
    );
    power_off()
}

/// The IDT: every exception to its report, #PF to `vec_pf` (a trap gate: interrupts stay on,
/// so a CPU waiting in its fault handler for the kernel's lock still takes the shootdown IPI
/// of the CPU holding it), the shootdown vector to `vec_shootdown`.
static mut IDT: [[u64; 2]; 256] = [[0; 2]; 256];
static IDT_FILLED: AtomicBool = AtomicBool::new(false);
const SHOOTDOWN_VECTOR: u64 = 0xf0;

fn gate(handler: u64, kind: u64) -> [u64; 2] {
    let low = (handler & 0xffff) | 0x08 << 16 | kind << 40 | (handler >> 16 & 0xffff) << 48;
    [low, handler >> 32]
}

fn load_idt() {
    let other = &raw const vec_other as u64;
    // SAFETY: the boot CPU fills the IDT once, before any other CPU runs or any exception is
    // expected; every CPU loads it.
    unsafe {
        let idt = &mut *(&raw mut IDT);
        if !IDT_FILLED.swap(true, Ordering::SeqCst) {
            for (v, entry) in idt.iter_mut().take(32).enumerate() {
                *entry = gate(other + 16 * v as u64, 0x8e);
            }
            idt[14] = gate(&raw const vec_pf as u64, 0x8f);
            idt[SHOOTDOWN_VECTOR as usize] = gate(&raw const vec_shootdown as u64, 0x8e);
        }
        let pointer: [u16; 5] = {
            let base = idt.as_ptr() as u64;
            [
                (256 * 16 - 1) as u16,
                base as u16,
                (base >> 16) as u16,
                (base >> 32) as u16,
                (base >> 48) as u16,
            ]
        };
        core::arch::asm!("lidt [{}]", in(reg) pointer.as_ptr());
    }
}

/// The console: COM1, a byte at a time.
pub struct Console;

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            // SAFETY: the UART's transmit register, an I/O port.
            unsafe { core::arch::asm!("out dx, al", in("dx") COM1, in("al") b) };
        }
        Ok(())
    }
}

/// Loads the IDT, IA32_PAT with the layout the crate assumes, and CR3 with `cr3` (the kernel
/// table's `root_register`, PCID 0); then turns PCIDs on (CR4.PCIDE) where the CPU has them
/// and INVPCID, which tagged flushes use.
///
/// # Safety
///
/// The tables map the running code, its stack and its frames one to one.
pub unsafe fn mmu_on(cr3: u64) {
    load_idt();
    let pat = Mode::ia32_pat();
    // SAFETY: IA32_PAT is written before any leaf of the crate's is used; the caller's tables
    // translate everything that runs next. CR4.PCIDE is set with CR3's PCID 0, as it must be.
    unsafe {
        core::arch::asm!("wrmsr", in("ecx") 0x277, in("eax") pat as u32, in("edx") (pat >> 32) as u32);
        core::arch::asm!("mov cr3, {}", in(reg) cr3);
        if tlb_ids() {
            core::arch::asm!("mov {t}, cr4", "bts {t}, 17", "mov cr4, {t}", t = out(reg) _);
        }
    }
}

/// Device memory takes unaligned accesses here (or QEMU does not fault them): the memory-type
/// check runs on AArch64 only.
pub const DEVICE_ALIGNMENT_FAULTS: bool = false;

/// Never asked for here (see `DEVICE_ALIGNMENT_FAULTS`).
pub fn alignment_fault(_cause: u64) -> bool {
    false
}

/// Whether the CPU tags TLB entries: PCIDs (CPUID.1:ECX bit 17) and INVPCID
/// (CPUID.(7,0):EBX bit 10). QEMU's TCG models neither (its `-cpu max` reports both bits
/// clear), so under QEMU the address spaces run untagged; a CPU with both runs them tagged.
pub fn tlb_ids() -> bool {
    // SAFETY: CPUID reads identification registers. (Newer toolchains declare the intrinsics
    // safe; older ones, `unsafe`: the block serves both.)
    #[allow(unused_unsafe)]
    let (leaf1, leaf7) = unsafe {
        (
            core::arch::x86_64::__cpuid(1),
            core::arch::x86_64::__cpuid_count(7, 0),
        )
    };
    leaf1.ecx & (1 << 17) != 0 && leaf7.ebx & (1 << 10) != 0
}

/// QEMU's TLB keeps no entry across a CR3 load (it drops them all, whatever the PCID), so an
/// entry of one address space surviving a switch cannot be seen here.
pub const TLB_KEEPS_TAGGED_ENTRIES: bool = false;

/// Writes a `ret` at the start of the data page `pa` (x86 keeps fetches coherent with stores).
pub fn write_ret(pa: u64) {
    // SAFETY: a data page of the kernel's, mapped one to one.
    unsafe { core::ptr::write_volatile(pa as *mut u8, 0xc3) };
}

/// ACPI S5 through QEMU's PM1a control register, else halts.
pub fn power_off() -> ! {
    // SAFETY: an I/O port write; QEMU powers off, or nothing happens.
    unsafe { core::arch::asm!("out dx, ax", in("dx") 0x604u16, in("ax") 0x2000u16) };
    loop {
        // SAFETY: waits with interrupts off.
        unsafe { core::arch::asm!("cli", "hlt") };
    }
}

/// The stack of the CPU being started (it takes it and sets this back to 0), and the
/// shootdowns acknowledged.
#[unsafe(no_mangle)]
static ap_stack: AtomicU64 = AtomicU64::new(0);
#[unsafe(no_mangle)]
static shootdown_acks: AtomicU64 = AtomicU64::new(0);

/// This CPU's number: its initial APIC ID (QEMU numbers them 0, 1, ...).
pub fn cpu_id() -> usize {
    (core::arch::x86_64::__cpuid(1).ebx >> 24) as usize
}

fn lapic(register: u64) -> *mut u32 {
    (LAPIC + register) as *mut u32
}

/// Starts CPU `cpu` (APIC ID) with `stack` as its stack's top: INIT, then a start-up IPI to
/// the trampoline at 0x8000; waits until it has taken the stack.
pub fn start_cpu(cpu: usize, stack: u64) {
    ap_stack.store(stack, Ordering::SeqCst);
    // SAFETY: the local APIC's interrupt command register, mapped as device memory.
    unsafe {
        core::ptr::write_volatile(lapic(0x310), (cpu as u32) << 24);
        core::ptr::write_volatile(lapic(0x300), 0x4500); // INIT
        for _ in 0..2 {
            core::ptr::write_volatile(lapic(0x310), (cpu as u32) << 24);
            core::ptr::write_volatile(lapic(0x300), 0x4608); // SIPI, vector 8: 0x8000
        }
    }
    while ap_stack.load(Ordering::SeqCst) != 0 {
        core::hint::spin_loop();
    }
}

#[unsafe(no_mangle)]
extern "C" fn secondary_main() -> ! {
    crate::smp::worker(cpu_id())
}

/// A worker, its MMU on: its local APIC takes interrupts, and interrupts are on.
pub fn cpu_ready() {
    // SAFETY: the spurious-interrupt register's enable bit; then interrupts on, with the IDT
    // loaded.
    unsafe {
        core::ptr::write_volatile(lapic(0xf0), 0x1ff);
        core::arch::asm!("sti");
    }
}

/// The other CPUs drop their translations: `invlpg` does not reach them, so each gets the
/// shootdown IPI (all but this one), whose handler reloads CR3 (everything: the range is not
/// passed) and acknowledges; this waits for every one.
pub fn shootdown(_range: Option<(u64, u64)>) {
    let before = shootdown_acks.load(Ordering::SeqCst);
    // SAFETY: the interrupt command register: fixed vector, all excluding self.
    unsafe { core::ptr::write_volatile(lapic(0x300), 0xc_0000 | SHOOTDOWN_VECTOR as u32) };
    while shootdown_acks.load(Ordering::SeqCst) < before + (CPUS as u64 - 1) {
        core::hint::spin_loop();
    }
}

/// Runs `f`, which waits for the kernel's lock, where another CPU's shootdown can still
/// reach this one: #PF is a trap gate: interrupts stay as they were, on in a worker.
pub fn with_interrupts<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Drops this CPU's translation of `va` (a spurious fault's stale entry).
pub fn invalidate_local(va: u64) {
    // SAFETY: a TLB invalidation on this CPU only; touches no memory.
    unsafe { core::arch::asm!("invlpg [{}]", in(reg) va) };
}

/// Stops this CPU for good (interrupts off: no shootdown reaches it any more).
pub fn park() -> ! {
    loop {
        // SAFETY: halts with interrupts off.
        unsafe { core::arch::asm!("cli", "hlt") };
    }
}
