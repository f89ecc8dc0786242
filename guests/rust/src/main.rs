//! A bare-metal kernel that uses `pagetable` where its users do: it builds its own tables at
//! boot, turns the MMU on with them, and then edits them live, through the CPU, checking each
//! change with loads, stores and instruction fetches that must hit or fault. It prints
//! `guest: ok <check>` or `guest: FAIL <check>` per check and `DONE` at the end;
//! `tests/qemu/rust_guests.rs` runs it under QEMU and wants every check of its plan ok.
//!
//! The checks are written once, here; `arch/<arch>.rs` holds what differs per CPU: boot, the
//! trap entry, the MMU registers, the probe instructions, the console and power-off.

#![no_std]
#![no_main]

mod checks;
mod frames;
mod lock;
mod smp;

#[cfg_attr(target_arch = "aarch64", path = "arch/aarch64.rs")]
#[cfg_attr(target_arch = "riscv64", path = "arch/riscv64.rs")]
#[cfg_attr(target_arch = "loongarch64", path = "arch/loongarch64.rs")]
#[cfg_attr(target_arch = "x86_64", path = "arch/x86_64.rs")]
mod arch;
#[cfg(any(target_arch = "aarch64", target_arch = "riscv64"))]
#[cfg_attr(target_arch = "aarch64", path = "shared/aarch64.rs")]
#[cfg_attr(target_arch = "riscv64", path = "shared/riscv64.rs")]
mod shared;

use core::fmt::Write;
use core::panic::PanicInfo;
use core::sync::atomic::{AtomicU64, Ordering};

use pagetable::{
    AccessState, HugePages, Liveness, MappingFlags as F, PageSize, PageTable, PhysAddr, VirtAddr,
};

use arch::Console;
use frames::Frames;
use lock::Lock;

/// The kernel's own page table, behind the lock its fault handler takes too.
pub type Kernel = PageTable<arch::Mode, Frames>;
pub static KERNEL: Lock<Option<Kernel>> = Lock::new(None);

/// What a faulting access was.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Load,
    Store,
    Fetch,
}

/// Per CPU, the faults the trap entry resolved by skipping the access (the probe reports a
/// fault).
static SKIPPED: [AtomicU64; smp::MAX_CPUS] = [const { AtomicU64::new(0) }; smp::MAX_CPUS];
/// Faults found spurious (another CPU's edit in progress) and retried.
pub static SPURIOUS: AtomicU64 = AtomicU64::new(0);

/// Per CPU, the cause of the last fault, as the architecture reports it (AArch64 ESR, the x86
/// error code, RISC-V scause, LoongArch's exception code); see `arch::not_present_load`.
static LAST_CAUSE: [AtomicU64; smp::MAX_CPUS] = [const { AtomicU64::new(0) }; smp::MAX_CPUS];

/// Records the cause of the fault being handled on this CPU.
pub fn note_cause(cause: u64) {
    LAST_CAUSE[arch::cpu_id()].store(cause, Ordering::SeqCst);
}

/// The cause of this CPU's last fault.
pub fn last_cause() -> u64 {
    LAST_CAUSE[arch::cpu_id()].load(Ordering::SeqCst)
}

fn skipped() -> &'static AtomicU64 {
    &SKIPPED[arch::cpu_id()]
}
/// Probes made (loads, stores and fetches through the CPU that a check looks at), all CPUs.
pub static PROBES: AtomicU64 = AtomicU64::new(0);
/// Faults served by mapping a page (demand paging).
pub static DEMAND_MAPS: AtomicU64 = AtomicU64::new(0);
/// Stores that faulted on a writable, clean page and were let through by marking it dirty
/// (where the hardware leaves dirty marks to software).
pub static SOFT_DIRTY_MARKS: AtomicU64 = AtomicU64::new(0);

/// Where demand paging is on: a fault there maps a fresh zeroed page and retries.
pub const DEMAND_VA: u64 = 0x2_0000_0000;
pub const DEMAND_PAGES: u64 = 16;

/// The kernel's fault handler, called by the architecture's trap entry for every translation
/// fault: `true` when the access is to be retried (it mapped the page, or the fault was
/// spurious), `false` when it is to be skipped as a failed probe.
pub fn on_fault(addr: u64, access: Access) -> bool {
    // With other CPUs editing the table, a fault may come from an edit in progress (the break
    // of a break-before-make): once the edit is done (its lock given back), the access is
    // retried if the table allows it. A fault while this CPU holds the lock is not served:
    // the crate itself never faults, so that would be a fault in a half-done edit.
    if smp::ACTIVE.load(Ordering::SeqCst) && !KERNEL.held_here() {
        let kernel = arch::with_interrupts(|| KERNEL.lock());
        let allowed = kernel
            .as_ref()
            .and_then(|pt| pt.query(VirtAddr::from(addr as usize)).ok())
            .is_some_and(|t| match access {
                Access::Load => t.flags.contains(F::READ),
                Access::Store => t.flags.contains(F::WRITE),
                Access::Fetch => t.flags.contains(F::EXECUTE),
            });
        if allowed {
            arch::invalidate_local(addr);
            SPURIOUS.fetch_add(1, Ordering::SeqCst);
            return true;
        }
    }
    if access == Access::Store && !arch::HW_ACCESS_STATE {
        // Software-managed dirty marks (LoongArch: a page-modify exception): a store through a
        // writable leaf that is clean is recorded by marking it dirty, then retried.
        if let Some(mut kernel) = KERNEL.try_lock() {
            if let Some(pt) = kernel.as_mut() {
                let va = VirtAddr::from(addr as usize);
                let clean = pt
                    .query(va)
                    .is_ok_and(|t| t.flags.contains(F::WRITE) && !t.state.dirty);
                if clean {
                    let dirty = AccessState {
                        accessed: true,
                        dirty: true,
                    };
                    if let Ok((_, flush)) = pt.mark_access(va, dirty) {
                        pt.flush(flush);
                        // Retried only if the mark took: else the store would fault forever.
                        if pt.query(va).is_ok_and(|t| t.state.dirty) {
                            SOFT_DIRTY_MARKS.fetch_add(1, Ordering::SeqCst);
                            return true;
                        }
                    }
                }
            }
        }
    }
    let demand = (DEMAND_VA..DEMAND_VA + DEMAND_PAGES * 0x1000).contains(&addr);
    if demand && access != Access::Fetch {
        // A fault taken while the kernel holds its table's lock is not served: the crate
        // itself never faults, so that would be a fault in a half-done edit.
        if let Some(mut kernel) = KERNEL.try_lock() {
            if let Some(pt) = kernel.as_mut() {
                let frame = frames::data_page();
                let page = VirtAddr::from((addr & !0xfff) as usize);
                if let Ok(flush) =
                    pt.map(page, PhysAddr::from(frame as usize), PageSize::SIZE_4K, RW)
                {
                    pt.flush(flush);
                    DEMAND_MAPS.fetch_add(1, Ordering::SeqCst);
                    return true;
                }
            }
        }
    }
    skipped().fetch_add(1, Ordering::SeqCst);
    false
}

pub const RW: F = F::READ.union(F::WRITE);

unsafe extern "C" {
    /// A load from `va` (0 if it faulted), at `probe_load_at`; in the architecture's assembly.
    fn probe_load(va: u64) -> u64;
    /// A store of `value` to `va`, at `probe_store_at`.
    fn probe_store(va: u64, value: u64);
    /// A tail call to `va`, which returns to the caller (directly, or through the trap entry
    /// if the fetch faults).
    fn probe_exec(va: u64);
    static probe_load_at: u8;
    static probe_store_at: u8;
}

/// Where execution resumes after a fault at `addr` taken at `pc` (`link`: the caller's return
/// address): the same instruction if the fault handler served it; after the probe
/// instruction (`probe_len` bytes) if it was a probe's load or store; at `link` if it was a
/// probe's fetch. `None`: a fault nothing expects.
pub fn resume(addr: u64, access: Access, pc: u64, link: u64, probe_len: u64) -> Option<u64> {
    if on_fault(addr, access) {
        return Some(pc);
    }
    match access {
        Access::Fetch if pc == addr => Some(link),
        Access::Load if pc == &raw const probe_load_at as u64 => Some(pc + probe_len),
        Access::Store if pc == &raw const probe_store_at as u64 => Some(pc + probe_len),
        _ => None,
    }
}

/// A load from `va`, or `None` if it faulted.
pub fn read(va: u64) -> Option<u64> {
    PROBES.fetch_add(1, Ordering::Relaxed);
    let before = skipped().load(Ordering::SeqCst);
    // SAFETY: the probe instruction's faults are caught by the trap entry, which skips it.
    let value = unsafe { probe_load(va) };
    (skipped().load(Ordering::SeqCst) == before).then_some(value)
}

/// A store of `value` to `va`; whether it went through. Only pages the checks map for the
/// purpose are written.
pub fn write(va: u64, value: u64) -> bool {
    PROBES.fetch_add(1, Ordering::Relaxed);
    let before = skipped().load(Ordering::SeqCst);
    // SAFETY: as for `read`.
    unsafe { probe_store(va, value) };
    skipped().load(Ordering::SeqCst) == before
}

/// Calls the code at `va` (a page holding a return instruction); whether the fetch worked.
pub fn exec(va: u64) -> bool {
    PROBES.fetch_add(1, Ordering::Relaxed);
    let before = skipped().load(Ordering::SeqCst);
    // SAFETY: the page holds `arch::RET` only; a fetch fault returns to the caller's link.
    unsafe { probe_exec(va) };
    skipped().load(Ordering::SeqCst) == before
}

pub fn report(what: &str, ok: bool) {
    let _ = writeln!(Console, "guest: {} {what}", if ok { "ok" } else { "FAIL" });
}

/// Physical memory the kernel maps one to one and what it holds: the image and its stack at
/// the start, table frames up to `TABLES_END`, data pages after, a block to split at `SPLIT`.
pub const RAM_LEN: u64 = 32 << 20;
pub const TABLES_END: u64 = arch::RAM + (16 << 20);
pub const DATA: u64 = arch::RAM + (16 << 20);
pub const SPLIT: u64 = arch::RAM + (24 << 20);

/// The kernel, once the boot code has a stack and the trap entry is in place.
#[unsafe(no_mangle)]
extern "C" fn kmain() -> ! {
    frames::init(frames::image_end(), TABLES_END, DATA + (64 << 12), SPLIT);
    let mut pt = Kernel::new(Frames).expect("a root table");
    // RAM one to one in huge leaves, the devices as device memory.
    pt.map_region(
        VirtAddr::from(arch::RAM as usize),
        PhysAddr::from(arch::RAM as usize),
        RAM_LEN as usize,
        RW | F::EXECUTE,
        HugePages::Allowed,
    )
    .expect("RAM mapped")
    .ignore();
    for &device in arch::DEVICES {
        pt.map(
            VirtAddr::from(device as usize),
            PhysAddr::from(device as usize),
            PageSize::SIZE_4K,
            RW | F::DEVICE,
        )
        .expect("device mapped")
        .ignore();
    }
    pt.set_liveness(Liveness::Live);
    // The register value the crate composes for the root (CR3, TTBR0_EL1, satp, PGDL).
    let root = pt.root_register();
    *KERNEL.lock() = Some(pt);
    // SAFETY: the tables map this code, its stack, its frames and the devices where they are.
    unsafe { arch::mmu_on(root) };
    report("MMU on with tables the crate built", true);

    checks::map_protect_remap();
    checks::execute();
    if arch::DEVICE_ALIGNMENT_FAULTS {
        checks::memory_types();
    }
    checks::non_present();
    checks::demand_paging();
    checks::split_live_block();
    if arch::HW_ACCESS_STATE {
        checks::access_state();
    } else {
        checks::software_dirty();
    }
    checks::shared_kernel_half();
    checks::address_spaces();
    if arch::CPUS > 1 {
        smp::run(root);
    }
    checks::unmap_and_free();
    let _ = writeln!(
        Console,
        "guest: info {} probes on {} CPUs, {} faults served by demand paging, {} table frames freed",
        PROBES.load(Ordering::SeqCst),
        arch::CPUS,
        DEMAND_MAPS.load(Ordering::SeqCst),
        frames::FREED.load(Ordering::SeqCst),
    );
    let _ = writeln!(Console, "DONE");
    arch::power_off()
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    let _ = writeln!(Console, "guest: FAIL panic: {info}");
    let _ = writeln!(Console, "DONE");
    arch::power_off()
}
