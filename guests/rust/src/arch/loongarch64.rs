//! LoongArch64 under QEMU `virt` (la464) at PLV0. The kernel's code, data and frames are
//! reached through the direct-mapped window DMW0 (cached), the UART through DMW1 (uncached);
//! everything else goes through the crate's tables, which the TLB-refill handler here walks
//! with `lddir`/`ldpte` as PWCL/PWCH describe. The general exception entry hands page faults
//! to the kernel's fault handler.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use pagetable::LoongArch64;

use crate::Access;

/// The paging mode: 4 levels, 48-bit VA, 4 KiB pages.
pub type Mode = LoongArch64;
/// The RAM the kernel maps, from its image at 2 MiB.
pub const RAM: u64 = 0x20_0000;
/// No device memory through the tables: the UART is reached through DMW1.
pub const DEVICES: &[u64] = &[];
/// The root entry the kernel shares with processes (512 GiB, RAM in it), a page the kernel maps
/// in it while a process runs, and a process's own page (the next root entry).
pub const KERNEL_HALF: (u64, u64) = (0, 1 << 39);
pub const KERNEL_EXTRA_VA: u64 = RAM + (256 << 20);
pub const USER_VA: u64 = 1 << 39;
/// The tables a process table with one page in its own root entry has: Dir3, Dir2, Dir1, PT.
pub const PROCESS_TABLES: u64 = 4;
/// LoongArch has no accessed bit, and its dirty bit is the write permission the kernel sets.
pub const HW_ACCESS_STATE: bool = false;
/// A split needs no break here: the TLB holds only what the refill handler loaded.
pub const BREAKS_BEFORE_SPLIT: bool = false;
/// QEMU 10 cannot deliver LoongArch's page-not-executable exception (it re-reads the
/// faulting instruction for BADI, faults again, forever): no fetch from an NX page is tried.
pub const NX_FETCH_FAULTS: bool = false;

/// DMW0: cached, PLV0, the window at 0x9000_...; DMW1: strongly-ordered uncached, 0x8000_....
const DMW0: u64 = 0x9000_0000_0000_0000;
const DMW1: u64 = 0x8000_0000_0000_0000;
const UART: u64 = DMW1 | 0x1fe0_01e0;

/// CPUs the guest runs on (QEMU `-smp 4`); the others wait in QEMU's boot code for a mailbox
/// address and an IPI.
pub const CPUS: usize = 4;

/// Where the kernel reaches physical memory: through DMW0.
pub fn phys(pa: u64) -> u64 {
    DMW0 | pa
}

core::arch::global_asm!(
    ".section .text.boot, \"ax\"",
    ".global _start",
    "_start:",
    "    li.d $t0, 0x9000000000000011", // DMW0: VSEG 9, cached, PLV0
    "    csrwr $t0, 0x180",
    "    li.d $t0, 0x8000000000000001", // DMW1: VSEG 8, strongly-ordered uncached, PLV0
    "    csrwr $t0, 0x181",
    "    la.pcrel $sp, __stack_top",
    "    la.pcrel $t0, exception_entry",
    "    csrwr $t0, 0xc", // EENTRY
    "    la.pcrel $t0, refill_entry",
    "    bstrpick.d $t0, $t0, 47, 0",
    "    csrwr $t0, 0x88",  // TLBRENTRY: a physical address
    "    csrwr $zero, 0x4", // ECFG: one entry, no interrupts
    // The walk of an empty directory entry reads physical page 0: keep it zero.
    "    li.d $t0, 0x9000000000000000",
    "    li.d $t1, 512",
    "1:  st.d $zero, $t0, 0",
    "    addi.d $t0, $t0, 8",
    "    addi.d $t1, $t1, -1",
    "    bnez $t1, 1b",
    "    bl kmain",
    "2:  idle 0",
    "    b 2b",
    // Another CPU, sent here (direct-address mode) by the mailbox: the same windows and
    // entries as the boot CPU, its stack from `start_stacks`.
    ".global secondary_start",
    "secondary_start:",
    "    li.d $t0, 0x9000000000000011",
    "    csrwr $t0, 0x180",
    "    li.d $t0, 0x8000000000000001",
    "    csrwr $t0, 0x181",
    "    la.pcrel $t0, exception_entry",
    "    csrwr $t0, 0xc",
    "    la.pcrel $t0, refill_entry",
    "    bstrpick.d $t0, $t0, 47, 0",
    "    csrwr $t0, 0x88",
    "    csrwr $zero, 0x4",
    "    csrrd $a0, 0x20", // CPUID
    "    andi $a0, $a0, 0x1ff",
    "    la.pcrel $t0, start_stacks",
    "    slli.d $t1, $a0, 3",
    "    add.d $t0, $t0, $t1",
    "    ld.d $sp, $t0, 0",
    "    bl secondary_main",
    "3:  idle 0",
    "    b 3b",
    // General exceptions: saves every register a Rust call may clobber, lets the kernel
    // handle the fault and resumes where it says.
    ".balign 4096",
    "exception_entry:",
    "    addi.d $sp, $sp, -160",
    "    st.d $ra, $sp, 0",
    "    st.d $a0, $sp, 8",
    "    st.d $a1, $sp, 16",
    "    st.d $a2, $sp, 24",
    "    st.d $a3, $sp, 32",
    "    st.d $a4, $sp, 40",
    "    st.d $a5, $sp, 48",
    "    st.d $a6, $sp, 56",
    "    st.d $a7, $sp, 64",
    "    st.d $t0, $sp, 72",
    "    st.d $t1, $sp, 80",
    "    st.d $t2, $sp, 88",
    "    st.d $t3, $sp, 96",
    "    st.d $t4, $sp, 104",
    "    st.d $t5, $sp, 112",
    "    st.d $t6, $sp, 120",
    "    st.d $t7, $sp, 128",
    "    st.d $t8, $sp, 136",
    "    csrrd $t0, 0x1", // PRMD: kept across a nested interrupt
    "    st.d $t0, $sp, 144",
    "    csrrd $a0, 0x5", // ESTAT
    "    csrrd $a1, 0x7", // BADV
    "    csrrd $a2, 0x6", // ERA
    "    move $a3, $ra",
    "    bl trap",
    "    csrwr $a0, 0x6",
    "    ld.d $t0, $sp, 144",
    "    csrwr $t0, 0x1",
    "    ld.d $ra, $sp, 0",
    "    ld.d $a0, $sp, 8",
    "    ld.d $a1, $sp, 16",
    "    ld.d $a2, $sp, 24",
    "    ld.d $a3, $sp, 32",
    "    ld.d $a4, $sp, 40",
    "    ld.d $a5, $sp, 48",
    "    ld.d $a6, $sp, 56",
    "    ld.d $a7, $sp, 64",
    "    ld.d $t0, $sp, 72",
    "    ld.d $t1, $sp, 80",
    "    ld.d $t2, $sp, 88",
    "    ld.d $t3, $sp, 96",
    "    ld.d $t4, $sp, 104",
    "    ld.d $t5, $sp, 112",
    "    ld.d $t6, $sp, 120",
    "    ld.d $t7, $sp, 128",
    "    ld.d $t8, $sp, 136",
    "    addi.d $sp, $sp, 160",
    "    ertn",
    // TLB refill: runs in direct-address mode at its physical address. Walks the root (PGDL
    // or PGDH by the address) through Dir3, Dir2 and Dir1 with lddir. A huge leaf goes
    // through ldpte; a page table's even/odd pair of entries is loaded here instead (QEMU's
    // ldpte masks what it loads to the physical-address width, dropping NR, NX and RPLV; the
    // entry format is TLBELO's, so this is the architecture's walk too), software bits 7-11
    // cleared on the way.
    ".balign 4096",
    "refill_entry:",
    "    csrwr $t0, 0x8b", // TLBRSAVE
    "    csrwr $t1, 0x32", // KS2
    "    csrrd $t0, 0x1b", // PGD
    "    lddir $t0, $t0, 3",
    "    lddir $t0, $t0, 2",
    "    lddir $t0, $t0, 1",
    "    andi $t1, $t0, 0x40", // HUGE
    "    bnez $t1, 1f",
    "    csrrd $t1, 0x89",             // TLBRBADV
    "    bstrpick.d $t1, $t1, 20, 13", // the even/odd pair
    "    slli.d $t1, $t1, 4",
    "    add.d $t0, $t0, $t1",
    "    ld.d $t1, $t0, 0",
    "    bstrins.d $t1, $zero, 11, 7",
    "    csrwr $t1, 0x8c", // TLBRELO0
    "    ld.d $t1, $t0, 8",
    "    bstrins.d $t1, $zero, 11, 7",
    "    csrwr $t1, 0x8d", // TLBRELO1
    "    li.d $t0, 0x3f",
    "    li.d $t1, 12",
    "    csrxchg $t1, $t0, 0x8e", // TLBREHI.PS = 4 KiB
    "    b 2f",
    "1:  ldpte $t0, 0",
    "    ldpte $t0, 1",
    "2:  tlbfill",
    "    csrrd $t0, 0x8b",
    "    csrrd $t1, 0x32",
    "    ertn",
    // The probes: one access each, at a label the trap entry knows.
    ".text",
    ".global probe_load",
    "probe_load:",
    ".global probe_load_at",
    "probe_load_at:",
    "    ld.d $a0, $a0, 0",
    "    ret",
    ".global probe_store",
    "probe_store:",
    ".global probe_store_at",
    "probe_store_at:",
    "    st.d $a1, $a0, 0",
    "    ret",
    ".global probe_exec",
    "probe_exec:",
    "    jr $a0",
);

/// The general exception handler: a page fault goes to the kernel's fault handler; it returns
/// where execution resumes (the same instruction when the kernel mapped the page, else past
/// the probe). Anything else ends the run.
#[unsafe(no_mangle)]
extern "C" fn trap(estat: u64, badv: u64, era: u64, ra: u64) -> u64 {
    if estat >> 16 & 0x3f == 0 && estat & (1 << 12) != 0 {
        shootdown_ipi();
        return era;
    }
    let access = match estat >> 16 & 0x3f {
        0x1 | 0x5 => Access::Load,  // PIL, PNR
        0x2 | 0x4 => Access::Store, // PIS, PME
        0x3 | 0x6 => Access::Fetch, // PIF, PNX
        _ => unexpected(estat, badv, era),
    };
    crate::note_cause(estat >> 16 & 0x3f);
    crate::resume(badv, access, era, ra, 4).unwrap_or_else(|| unexpected(estat, badv, era))
}

/// Whether the exception code is PIL (1): a load through a TLB entry with V clear.
pub fn not_present_load(ecode: u64) -> bool {
    ecode == 1
}

fn unexpected(estat: u64, badv: u64, era: u64) -> ! {
    let _ = fmt::Write::write_fmt(
        &mut Console,
        format_args!(
            "guest: FAIL unexpected exception estat={estat:#x} badv={badv:#x} era={era:#x}\nDONE\n"
        ),
    );
    power_off()
}

/// The console: QEMU virt's NS16550 through DMW1, a byte at a time.
pub struct Console;

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            // SAFETY: the UART's transmit register, in the uncached window.
            unsafe { core::ptr::write_volatile(UART as *mut u8, b) };
        }
        Ok(())
    }
}

/// Sets the walker up as the crate's tables are laid out (PWCL, PWCH, 4 KiB pages), loads
/// `root` (the kernel table's `root_register`) into PGDL and PGDH and turns paging on.
///
/// # Safety
///
/// The code, its stack and its frames are reached through DMW0, so only the addresses the
/// tables map change meaning.
pub unsafe fn mmu_on(root: u64) {
    use pagetable::arch::loongarch64::{PWCH, PWCL};
    // SAFETY: the direct-mapped windows keep everything the kernel uses where it is.
    unsafe {
        core::arch::asm!(
            "csrwr {pwcl}, 0x1c",
            "csrwr {pwch}, 0x1d",
            "li.d {t}, 12",
            "csrwr {t}, 0x1e", // STLBPS: 4 KiB
            "li.d {t}, 12",
            "csrwr {t}, 0x8e", // TLBREHI.PS
            "csrwr $zero, 0x18", // ASID 0
            "csrwr {root}, 0x19", // PGDL
            "csrwr {high}, 0x1a", // PGDH
            "invtlb 0x0, $zero, $zero",
            "li.d {t}, 0xb0", // CRMD: PG, DATF = DATM = cached, PLV0
            "csrwr {t}, 0x0",
            pwcl = inout(reg) u64::from(PWCL) => _,
            pwch = inout(reg) u64::from(PWCH) => _,
            root = inout(reg) root => _,
            high = inout(reg) root => _,
            t = out(reg) _,
        )
    };
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

/// The architectural TLB that QEMU models is tagged: entries of one ASID stay while another
/// runs, so a stale entry of a switched-out address space can be seen when it comes back.
pub const TLB_KEEPS_TAGGED_ENTRIES: bool = true;

/// Writes a `ret` at the start of the data page `pa` and makes it visible to fetches.
pub fn write_ret(pa: u64) {
    // SAFETY: a data page of the kernel's, reached through DMW0; `ibar` orders fetches.
    unsafe {
        core::ptr::write_volatile(phys(pa) as *mut u32, 0x4c00_0020); // jirl $zero, $ra, 0
        core::arch::asm!("ibar 0");
    }
}

/// Waits to be stopped: the test ends QEMU after `DONE`.
pub fn power_off() -> ! {
    loop {
        // SAFETY: waits, nothing else.
        unsafe { core::arch::asm!("idle 0") };
    }
}

/// The stacks that start the other CPUs, and the shootdowns acknowledged.
#[unsafe(no_mangle)]
static start_stacks: [AtomicU64; crate::smp::MAX_CPUS] =
    [const { AtomicU64::new(0) }; crate::smp::MAX_CPUS];
static SHOOTDOWN_ACKS: AtomicU64 = AtomicU64::new(0);

unsafe extern "C" {
    static secondary_start: u8;
}

/// IOCSR registers of the inter-processor interrupt block: this CPU's status, enable and
/// clear words, and the send registers.
const IPI_STATUS: u64 = 0x1000;
const IPI_ENABLE: u64 = 0x1004;
const IPI_CLEAR: u64 = 0x100c;
const IPI_SEND: u64 = 0x1040;
const MAIL_SEND: u64 = 0x1048;

fn iocsr_write(register: u64, value: u64) {
    // SAFETY: a write to an IPI register of the IOCSR space; no memory is touched.
    unsafe { core::arch::asm!("iocsrwr.d {}, {}", in(reg) value, in(reg) register) };
}

fn iocsr_write32(register: u64, value: u32) {
    // SAFETY: as for `iocsr_write`.
    unsafe { core::arch::asm!("iocsrwr.w {}, {}", in(reg) value, in(reg) register) };
}

fn iocsr_read32(register: u64) -> u32 {
    let value: u32;
    // SAFETY: a read of an IPI register.
    unsafe { core::arch::asm!("iocsrrd.w {}, {}", out(reg) value, in(reg) register) };
    value
}

/// This CPU's number (CSR.CPUID).
pub fn cpu_id() -> usize {
    let id: u64;
    // SAFETY: reads a CSR.
    unsafe { core::arch::asm!("csrrd {}, 0x20", out(reg) id, options(nomem, nostack)) };
    (id & 0x1ff) as usize
}

/// Starts CPU `cpu`, waiting in QEMU's boot code, with `stack` as its stack's top: the entry
/// address goes into its mailbox (high word first: the boot code wakes on a non-zero low
/// word), then an IPI wakes it.
pub fn start_cpu(cpu: usize, stack: u64) {
    start_stacks[cpu].store(stack, Ordering::SeqCst);
    let entry = &raw const secondary_start as u64;
    let to = (cpu as u64) << 16;
    iocsr_write(MAIL_SEND, (entry >> 32) << 32 | to | 4);
    iocsr_write(MAIL_SEND, (entry & 0xffff_ffff) << 32 | to);
    iocsr_write(IPI_SEND, to);
}

#[unsafe(no_mangle)]
extern "C" fn secondary_main(cpu: u64) -> ! {
    crate::smp::worker(cpu as usize)
}

/// A worker, its MMU on: its IPIs enabled, and interrupts on.
pub fn cpu_ready() {
    iocsr_write32(IPI_ENABLE, u32::MAX);
    // SAFETY: ECFG.LIE bit 12 (IPI), then CRMD.IE; the exception entry handles the IPI.
    unsafe {
        core::arch::asm!(
            "li.d {t}, 1 << 12",
            "csrxchg {t}, {t}, 0x4",
            "li.d {t}, 1 << 2",
            "csrxchg {t}, {t}, 0x0",
            t = out(reg) _,
        )
    };
}

/// The shootdown IPI on a worker: acknowledge the interrupt, drop every translation (the
/// range is not passed), count it.
fn shootdown_ipi() {
    iocsr_write32(IPI_CLEAR, iocsr_read32(IPI_STATUS));
    // SAFETY: drops this CPU's TLB entries; touches no memory.
    unsafe { core::arch::asm!("dbar 0", "invtlb 0x0, $zero, $zero") };
    SHOOTDOWN_ACKS.fetch_add(1, Ordering::SeqCst);
}

/// The other CPUs drop their translations: `invtlb` does not reach them, so each gets an IPI
/// whose handler runs `invtlb` and acknowledges; this waits for every one.
pub fn shootdown(_range: Option<(u64, u64)>) {
    let before = SHOOTDOWN_ACKS.load(Ordering::SeqCst);
    let me = cpu_id();
    for cpu in (0..CPUS).filter(|&c| c != me) {
        iocsr_write(IPI_SEND, (cpu as u64) << 16);
    }
    while SHOOTDOWN_ACKS.load(Ordering::SeqCst) < before + (CPUS as u64 - 1) {
        core::hint::spin_loop();
    }
}

/// Runs `f` with interrupts on: a CPU waiting in its fault handler for the kernel's lock must
/// still take the shootdown IPI of the CPU holding it (the exception entry saves ERA and PRMD,
/// so the nested interrupt loses nothing).
pub fn with_interrupts<R>(f: impl FnOnce() -> R) -> R {
    let crmd: u64;
    // SAFETY: sets CRMD.IE, keeping what it was.
    unsafe {
        core::arch::asm!("li.d {t}, 1 << 2", "csrxchg {t}, {t}, 0x0", t = inout(reg) 0u64 => crmd)
    };
    let result = f();
    // SAFETY: puts CRMD.IE back.
    unsafe {
        core::arch::asm!("li.d {m}, 1 << 2", "csrxchg {v}, {m}, 0x0", v = inout(reg) crmd => _, m = out(reg) _)
    };
    result
}

/// Drops this CPU's translation of `va` (a spurious fault's stale entry).
pub fn invalidate_local(va: u64) {
    // SAFETY: a TLB invalidation on this CPU only; touches no memory.
    unsafe { core::arch::asm!("invtlb 0x5, $zero, {}", in(reg) va) };
}

/// Stops this CPU for good.
pub fn park() -> ! {
    power_off()
}
