//! The kernel's physical memory: table frames from a bump allocator over the RAM after the
//! image, data pages after them. A freed table frame is scribbled over at once: a walker that
//! still used it would go astray, so a table freed before its flush shows.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};

use pagetable::{Arch, PagingHandler, PhysAddr, VirtAddr};

static NEXT: AtomicU64 = AtomicU64::new(0);
static END: AtomicU64 = AtomicU64::new(0);
static DATA_NEXT: AtomicU64 = AtomicU64::new(0);
static DATA_END: AtomicU64 = AtomicU64::new(0);
/// Table frames given back, and scribbled over.
pub static FREED: AtomicU64 = AtomicU64::new(0);
/// Breaks of break-before-make, and how many of them a load of the broken address faulted in.
pub static BREAKS: AtomicU64 = AtomicU64::new(0);
pub static BREAKS_SEEN: AtomicU64 = AtomicU64::new(0);

/// Table frames in `[tables, tables_end)`, data pages in `[data, data_end)` (physical).
pub fn init(tables: u64, tables_end: u64, data: u64, data_end: u64) {
    NEXT.store(tables, Ordering::SeqCst);
    END.store(tables_end, Ordering::SeqCst);
    DATA_NEXT.store(data, Ordering::SeqCst);
    DATA_END.store(data_end, Ordering::SeqCst);
}

/// The physical address of the first free frame after the image and its stack (the linker
/// script's `__frames`). The image runs one to one everywhere but on LoongArch, where it runs in
/// a direct-mapped window whose address bits above the 48 physical ones select it.
pub fn image_end() -> u64 {
    unsafe extern "C" {
        static __frames: u8;
    }
    // Only the symbol's address is taken.
    &raw const __frames as u64 & ((1 << 48) - 1)
}

/// A fresh zeroed data page (physical address).
pub fn data_page() -> u64 {
    let pa = DATA_NEXT.fetch_add(0x1000, Ordering::SeqCst);
    assert!(pa < DATA_END.load(Ordering::SeqCst), "out of data pages");
    // SAFETY: a page of RAM handed out once, reached where the kernel reaches physical memory.
    unsafe { core::ptr::write_bytes(crate::arch::phys(pa) as *mut u8, 0, 0x1000) };
    pa
}

/// The handler every page table of the kernel uses: all of them draw on the same pool.
pub struct Frames;

// SAFETY: every frame is unused RAM above the image, handed out once (an atomic bump), aligned
// to its size, and reached through `arch::phys`, which is 8-aligned for an aligned frame and
// the same every time.
unsafe impl PagingHandler for Frames {
    fn alloc_table(&mut self, bytes: usize) -> Option<PhysAddr> {
        let bytes = bytes as u64;
        let end = END.load(Ordering::SeqCst);
        NEXT.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |next| {
            let pa = next.next_multiple_of(bytes);
            (pa + bytes <= end).then_some(pa + bytes)
        })
        .ok()
        .map(|next| PhysAddr::from((next.next_multiple_of(bytes)) as usize))
    }

    unsafe fn free_table(&mut self, pa: PhysAddr, bytes: usize) {
        // SAFETY: the crate gives back a frame no walk reaches any more (contract of
        // `free_table`), RAM of `bytes` reached through `arch::phys`.
        unsafe {
            core::ptr::write_bytes(
                crate::arch::phys(pa.as_usize() as u64) as *mut u8,
                0xa5,
                bytes,
            )
        };
        FREED.fetch_add(1, Ordering::SeqCst);
    }

    fn phys_to_virt(&self, pa: PhysAddr) -> NonNull<u8> {
        NonNull::new(crate::arch::phys(pa.as_usize() as u64) as *mut u8).expect("no table at 0")
    }

    /// The crate's own invalidation, then a load of the broken address: it must fault, since
    /// the entry is invalid and no TLB may hold it any more.
    fn break_flush<A: Arch>(&mut self, va: A::Addr, size: usize) {
        let _ = size;
        let va = VirtAddr::from(va.into());
        A::flush_page(va);
        BREAKS.fetch_add(1, Ordering::SeqCst);
        if crate::read(va.as_usize() as u64).is_none() {
            BREAKS_SEEN.fetch_add(1, Ordering::SeqCst);
        }
    }
}
