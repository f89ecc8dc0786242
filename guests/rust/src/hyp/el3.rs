//! AArch64 only: when the machine starts at EL3 (QEMU `virt,secure=on`, the image loaded as
//! firmware), the secure firmware's checks on an EL3 table the crate built, before the drop
//! to EL2 where the hypervisor starts.

use core::fmt::Write;

use pagetable::{BufferFrames, Liveness, MappingFlags as F, PageSize, PageTable};

use crate::arch::{self, Console, El3Mode};
use crate::{pa, report, va};

/// QEMU virt's secure-only RAM (`secure=on`): in the secure physical address space only.
const SECURE_RAM: u64 = 0x0e00_0000;
/// Where EL3 reaches it: through a secure leaf, and through a NON_SECURE one.
const SECURE_VA: u64 = 0x3_0000_0000;
const NS_VA: u64 = 0x3_0000_1000;
/// A page remapped live.
const PAGE_VA: u64 = 0x2_0000_0000;

/// The EL3 table's frames: a buffer in the image (zeroed RAM), one to one.
#[repr(C, align(4096))]
struct Tables([u64; 16 * 512]);
static mut TABLES: Tables = Tables([0; 16 * 512]);
/// Two data pages of EL3's.
#[repr(C, align(4096))]
struct Pages([u64; 2 * 512]);
static mut PAGES: Pages = Pages([0; 2 * 512]);

#[unsafe(no_mangle)]
extern "C" fn el3_main() {
    let _ = writeln!(Console, "guest: info started at EL3");
    // SAFETY: EL3 runs alone, once; nothing else touches the buffer.
    let buffer = unsafe { &mut (*(&raw mut TABLES)).0 };
    let base = buffer.as_ptr() as usize;
    let frames = BufferFrames::new(buffer, pa(base as u64)).expect("EL3's frames");
    let mut pt = PageTable::<El3Mode, _>::new(frames).expect("an EL3 root");
    arch::map_own(&mut pt);
    let rw = F::READ | F::WRITE | F::GLOBAL;
    pt.map(va(SECURE_VA), pa(SECURE_RAM), PageSize::SIZE_4K, rw)
        .expect("secure RAM")
        .ignore();
    pt.map(
        va(NS_VA),
        pa(SECURE_RAM),
        PageSize::SIZE_4K,
        rw | F::NON_SECURE,
    )
    .expect("secure RAM, non-secure leaf")
    .ignore();
    // SAFETY: EL3 runs alone; the pages are EL3's.
    let pages = unsafe { &mut (*(&raw mut PAGES)).0 };
    pages[0] = 0x3131;
    pages[512] = 0x3232;
    let (old, new) = (pages.as_ptr() as u64, pages.as_ptr() as u64 + 0x1000);
    pt.map(va(PAGE_VA), pa(old), PageSize::SIZE_4K, rw)
        .expect("the page")
        .ignore();
    pt.set_liveness(Liveness::Live);
    // SAFETY: the table maps this code, its stack, its data and the console one to one, and
    // is leaked below: it stays as long as EL3 runs translated.
    unsafe { arch::el3_mmu_on(&pt) };
    report(
        "EL3's MMU on a table the crate built (AArch64<Va48, El3>): the firmware runs on it",
        true,
    );

    let first = arch::read(PAGE_VA);
    let flush = pt.remap(va(PAGE_VA), pa(new)).expect("remap");
    pt.flush(flush);
    let moved = arch::read(PAGE_VA);
    let (_, flush) = pt.unmap(va(PAGE_VA)).expect("unmap");
    let stale = arch::read(PAGE_VA);
    pt.flush(flush);
    let gone = arch::read(PAGE_VA);
    report(
        "at EL3, a page remapped live reads its new frame; unmapped, it reads until the crate's TLBI VAE3IS, then faults",
        first == Some(0x3131) && moved == Some(0x3232) && stale == Some(0x3232) && gone.is_none(),
    );

    // SAFETY: secure RAM, through EL3's secure leaf.
    unsafe { core::ptr::write_volatile(SECURE_VA as *mut u64, 0x5ec0) };
    let secure = arch::read(SECURE_VA);
    let non_secure = arch::read(NS_VA);
    report(
        "secure-only RAM reads through a secure leaf and faults through a NON_SECURE one (NS bit 5)",
        secure == Some(0x5ec0) && non_secure.is_none(),
    );
    core::mem::forget(pt);
}
