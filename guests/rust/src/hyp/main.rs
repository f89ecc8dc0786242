//! A bare-metal hypervisor that uses `pagetable` for its guest's second stage: it builds the
//! stage 2 (AArch64, at EL2) or G-stage (RISC-V, in HS-mode) table at boot, runs a guest on
//! it with the guest's own translation off (every guest address is a guest physical one), and
//! edits the table while the guest runs: mapping on the guest's faults, protecting, remapping,
//! unmapping, each followed by the crate's own flush. The guest is a probe loop in the same
//! image: it asks the hypervisor (`hvc` / `ecall`) what to load, store or call next, and hands
//! back the result; an access the stage 2 refuses exits to the hypervisor, which either maps
//! the page and lets it retry or skips it and notes the fault. It prints `guest: ok <check>`
//! per check and `DONE`, as the kernel guest does.

#![no_std]
#![no_main]

#[cfg_attr(target_arch = "aarch64", path = "aarch64.rs")]
#[cfg_attr(target_arch = "riscv64", path = "riscv64.rs")]
mod arch;
#[cfg(target_arch = "aarch64")]
mod el3;
#[cfg_attr(target_arch = "aarch64", path = "../shared/aarch64.rs")]
#[cfg_attr(target_arch = "riscv64", path = "../shared/riscv64.rs")]
mod shared;

use core::fmt::Write;
use core::panic::PanicInfo;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pagetable::{
    GuestPhysAddr, HugePages, Liveness, MappingFlags as F, PageSize, PageTable, PagingHandler,
    PhysAddr, VirtAddr,
};

use arch::Console;

/// Table frames from a bump allocator after the image; freed ones are scribbled over.
static NEXT: AtomicU64 = AtomicU64::new(0);
static FREED: AtomicU64 = AtomicU64::new(0);
static DATA: AtomicU64 = AtomicU64::new(0);

struct Frames;

// SAFETY: every frame is unused RAM above the image, handed out once, aligned to its size, and
// reached at its own physical address (the hypervisor runs untranslated).
unsafe impl PagingHandler for Frames {
    fn alloc_table(&mut self, bytes: usize) -> Option<PhysAddr> {
        let bytes = bytes as u64;
        let pa = NEXT
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |next| {
                let pa = next.next_multiple_of(bytes);
                (pa + bytes <= TABLES_END).then_some(pa + bytes)
            })
            .ok()?;
        Some(PhysAddr::from(pa.next_multiple_of(bytes) as usize))
    }

    unsafe fn free_table(&mut self, pa: PhysAddr, bytes: usize) {
        // SAFETY: a frame no walk reaches any more (contract of `free_table`).
        unsafe { core::ptr::write_bytes(pa.as_usize() as *mut u8, 0xa5, bytes) };
        FREED.fetch_add(1, Ordering::SeqCst);
    }

    fn phys_to_virt(&self, pa: PhysAddr) -> NonNull<u8> {
        NonNull::new(pa.as_usize() as *mut u8).expect("no table at 0")
    }
}

/// The guest's memory: its image and stack, one to one (IPA = PA), in 2 MiB leaves.
const GUEST_RAM_LEN: u64 = 16 << 20;
const TABLES_END: u64 = arch::RAM + (24 << 20);
/// Pages the guest stores to first, mapped on its faults.
const DEMAND_IPA: u64 = 0x1_0000_0000;
const DEMAND_PAGES: u64 = 8;
/// A page for the protect, remap, unmap and execute checks.
const PAGE_IPA: u64 = 0x1_0010_0000;
const CODE_IPA: u64 = 0x1_0020_0000;

type Stage2 = PageTable<arch::Mode, Frames>;
static mut STAGE2: Option<Stage2> = None;
/// Whether the last guest access exited with a fault the hypervisor did not serve.
static FAULTED: AtomicBool = AtomicBool::new(false);
static DEMAND_MAPS: AtomicU64 = AtomicU64::new(0);
/// Guest accesses made for the checks.
static PROBES: AtomicU64 = AtomicU64::new(0);

fn stage2() -> &'static mut Stage2 {
    // SAFETY: one CPU; the hypervisor's code and its exit handler never run at once (the
    // guest runs in between), and neither keeps the reference across a guest entry.
    unsafe { (*(&raw mut STAGE2)).as_mut().expect("the stage 2 table") }
}

pub fn data_page() -> u64 {
    let pa = DATA.fetch_add(0x1000, Ordering::SeqCst);
    // SAFETY: a page of RAM handed out once, untranslated.
    unsafe { core::ptr::write_bytes(pa as *mut u8, 0, 0x1000) };
    pa
}

/// AArch64: the hypervisor's own EL2 translation on a table the crate built, from here on;
/// a page remapped live through it, seen through EL2's MMU.
#[cfg(target_arch = "aarch64")]
fn el2_translation() {
    let mut own = PageTable::<arch::El2Mode, Frames>::new(Frames).expect("an EL2 root");
    arch::map_own(&mut own);
    let (old, new) = (data_page(), data_page());
    // SAFETY: the hypervisor's data pages, untranslated still.
    unsafe {
        core::ptr::write_volatile(old as *mut u64, 0x2121);
        core::ptr::write_volatile(new as *mut u64, 0x2222);
    }
    const PAGE_VA: u64 = 0x2_0000_0000;
    own.map(va(PAGE_VA), pa(old), PageSize::SIZE_4K, F::READ | F::GLOBAL)
        .expect("the page")
        .ignore();
    own.set_liveness(Liveness::Live);
    // SAFETY: the table maps the code, stack, data, frames and console one to one, and is
    // leaked below: it stays as long as EL2 runs translated.
    unsafe { arch::el2_mmu_on(&own) };
    let first = arch::read(PAGE_VA);
    // Break-before-make (a new output address): the break's flush is the crate's TLBI VAE2IS.
    let flush = own.remap(va(PAGE_VA), pa(new)).expect("remap");
    own.flush(flush);
    let moved = arch::read(PAGE_VA);
    let (_, flush) = own.unmap(va(PAGE_VA)).expect("unmap");
    let stale = arch::read(PAGE_VA);
    own.flush(flush);
    let gone = arch::read(PAGE_VA);
    report(
        "EL2's own MMU on a table the crate built (AArch64<Va48, El2>): a page remapped live reads its new frame; unmapped, it reads until the crate's TLBI VAE2IS, then faults",
        first == Some(0x2121) && moved == Some(0x2222) && stale == Some(0x2222) && gone.is_none(),
    );
    core::mem::forget(own);
}

#[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
pub fn va(addr: u64) -> VirtAddr {
    VirtAddr::from(addr as usize)
}

fn ipa(addr: u64) -> GuestPhysAddr {
    GuestPhysAddr::from(addr as usize)
}

pub fn pa(addr: u64) -> PhysAddr {
    PhysAddr::from(addr as usize)
}

/// The hypervisor's answer to a stage 2 fault at `ipa`: maps a page in the demand range and
/// has the access retried (`true`), or notes the fault and has the access skipped.
pub fn on_stage2_fault(ipa_addr: u64) -> bool {
    if (DEMAND_IPA..DEMAND_IPA + DEMAND_PAGES * 0x1000).contains(&ipa_addr) {
        let pt = stage2();
        let flush = pt
            .map(
                ipa(ipa_addr & !0xfff),
                pa(data_page()),
                PageSize::SIZE_4K,
                F::READ | F::WRITE,
            )
            .expect("map on fault");
        pt.flush(flush);
        DEMAND_MAPS.fetch_add(1, Ordering::SeqCst);
        return true;
    }
    FAULTED.store(true, Ordering::SeqCst);
    false
}

/// What the guest does next.
#[derive(Clone, Copy)]
#[repr(u64)]
pub enum Probe {
    Load = 1,
    Store = 2,
    Call = 3,
}

/// Has the guest make one access at guest physical `addr`; what it loaded (or 0), or `None`
/// if the access exited with a fault the hypervisor did not serve.
fn guest(probe: Probe, addr: u64, value: u64) -> Option<u64> {
    PROBES.fetch_add(1, Ordering::Relaxed);
    FAULTED.store(false, Ordering::SeqCst);
    let result = arch::run_guest(probe as u64, addr, value);
    (!FAULTED.load(Ordering::SeqCst)).then_some(result)
}

pub fn report(what: &str, ok: bool) {
    let _ = writeln!(Console, "guest: {} {what}", if ok { "ok" } else { "FAIL" });
}

#[unsafe(no_mangle)]
extern "C" fn hyp_main() -> ! {
    let image_end = arch::image_end();
    NEXT.store(image_end, Ordering::SeqCst);
    DATA.store(TABLES_END, Ordering::SeqCst);
    #[cfg(target_arch = "aarch64")]
    el2_translation();
    let mut pt = Stage2::new(Frames).expect("a stage 2 root");
    pt.map_region(
        ipa(arch::RAM),
        pa(arch::RAM),
        GUEST_RAM_LEN as usize,
        F::READ | F::WRITE | F::EXECUTE,
        HugePages::Allowed,
    )
    .expect("the guest's RAM")
    .ignore();
    pt.set_liveness(Liveness::Live);
    // VMID 1: every flush of the guest's stage 2 is tagged with it (AArch64: `TLBI IPAS2E1IS`
    // with VTTBR_EL2 holding it; RISC-V: `hfence.gvma` with it in rs2).
    pt.set_tlb_id(Some(1)).expect("a VMID");
    let root = pt.root_register();
    // SAFETY: one CPU, before any guest runs.
    unsafe { *(&raw mut STAGE2) = Some(pt) };
    // SAFETY: the table maps the guest's code and stack where they are.
    unsafe { arch::stage2_on(root) };
    report(
        "stage 2 on with the crate's table: the guest runs on it",
        arch::start_guest(),
    );

    let before = DEMAND_MAPS.load(Ordering::SeqCst);
    let stored = (0..DEMAND_PAGES).all(|i| {
        guest(
            Probe::Store,
            DEMAND_IPA + i * 0x1000 + 8 * i,
            0xbeef_0000 + i,
        )
        .is_some()
    });
    report(
        "the guest's first store to each of 8 unmapped pages exits, the hypervisor maps the page, the store completes",
        stored && DEMAND_MAPS.load(Ordering::SeqCst) - before == DEMAND_PAGES,
    );
    let back = (0..DEMAND_PAGES)
        .all(|i| guest(Probe::Load, DEMAND_IPA + i * 0x1000 + 8 * i, 0) == Some(0xbeef_0000 + i));
    report(
        "the guest reads its stores back, with no further exit",
        back && DEMAND_MAPS.load(Ordering::SeqCst) - before == DEMAND_PAGES,
    );

    let frame = data_page();
    // SAFETY: a data page of the hypervisor's.
    unsafe { core::ptr::write_volatile(frame as *mut u64, 41) };
    let flush = stage2()
        .map(
            ipa(PAGE_IPA),
            pa(frame),
            PageSize::SIZE_4K,
            F::READ | F::WRITE,
        )
        .expect("map");
    stage2().flush(flush);
    let took = guest(Probe::Store, PAGE_IPA, 42).is_some();
    let flush = stage2().protect(ipa(PAGE_IPA), F::READ).expect("protect");
    stage2().flush(flush);
    report(
        "made read-only in stage 2 while the guest runs, the guest's store exits and its load works",
        took && guest(Probe::Store, PAGE_IPA, 43).is_none()
            && guest(Probe::Load, PAGE_IPA, 0) == Some(42),
    );
    let other = data_page();
    // SAFETY: as above.
    unsafe { core::ptr::write_volatile(other as *mut u64, 77) };
    let flush = stage2().remap(ipa(PAGE_IPA), pa(other)).expect("remap");
    stage2().flush(flush);
    report(
        "remapped to another frame, the guest reads the new frame",
        guest(Probe::Load, PAGE_IPA, 0) == Some(77),
    );

    let code = data_page();
    arch::write_ret(code);
    let flush = stage2()
        .map(
            ipa(CODE_IPA),
            pa(code),
            PageSize::SIZE_4K,
            F::READ | F::EXECUTE,
        )
        .expect("map code");
    stage2().flush(flush);
    let ran = guest(Probe::Call, CODE_IPA, 0).is_some();
    let flush = stage2()
        .protect(ipa(CODE_IPA), F::READ)
        .expect("protect code");
    stage2().flush(flush);
    report(
        "code mapped executable runs in the guest; made non-executable, its fetch exits",
        ran && guest(Probe::Call, CODE_IPA, 0).is_none(),
    );

    let freed = FREED.load(Ordering::SeqCst);
    let (_, flush) = stage2().unmap(ipa(CODE_IPA)).expect("unmap code");
    let waited = FREED.load(Ordering::SeqCst) == freed;
    stage2().flush(flush);
    let (_, flush) = stage2().unmap(ipa(PAGE_IPA)).expect("unmap");
    stage2().flush(flush);
    report(
        "unmapped while the guest runs, its load exits again; emptied tables are freed only after the flush",
        waited
            && FREED.load(Ordering::SeqCst) > freed
            && guest(Probe::Load, PAGE_IPA, 0).is_none()
            && guest(Probe::Load, DEMAND_IPA + 0x1008, 0) == Some(0xbeef_0001),
    );
    let _ = writeln!(
        Console,
        "guest: info {} guest probes, {} stage 2 faults served by mapping",
        PROBES.load(Ordering::SeqCst),
        DEMAND_MAPS.load(Ordering::SeqCst)
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
