//! A bare-metal kernel that uses `pagetable` where its users do: it builds its own tables at
//! boot, turns the MMU on with them, and then edits them live, through the CPU, checking each
//! change with loads that must hit or fault. It prints `guest: ok <check>` or
//! `guest: FAIL <check>` per check and `DONE` at the end; `tests/qemu/rust_guests.rs` runs it
//! under QEMU and wants every check ok.
//!
//! The checks are written once here; `arch/<arch>.rs` holds what differs per CPU: boot, the
//! exception vector that turns a fault into a skipped instruction, the MMU registers, the
//! console and power-off.

#![no_std]
#![no_main]

use core::fmt::Write;
use core::panic::PanicInfo;
use core::ptr::NonNull;

use pagetable::{
    HugePages, Liveness, MappingFlags as F, PageSize, PageTable, PagingHandler, PhysAddr, VirtAddr,
};

#[cfg(target_arch = "aarch64")]
#[path = "arch/aarch64.rs"]
mod arch;

use arch::{Console, Mode, RAM, RAM_LEN};

const RW: F = F::READ.union(F::WRITE);

/// Table frames from a bump allocator over the RAM after the image, reached at their physical
/// address (the kernel maps RAM one to one). A freed frame is scribbled over at once: a walker
/// that still used it would go astray, so a table freed before its flush shows.
struct Frames {
    next: u64,
    end: u64,
    freed: u64,
}

// SAFETY: every frame is unused RAM above the image, handed out once, aligned to its size, and
// reached at its own physical address through an 8-aligned pointer.
unsafe impl PagingHandler for Frames {
    fn alloc_table(&mut self, bytes: usize) -> Option<PhysAddr> {
        let pa = self.next.next_multiple_of(bytes as u64);
        if pa + bytes as u64 > self.end {
            return None;
        }
        self.next = pa + bytes as u64;
        Some(PhysAddr::from(pa as usize))
    }

    unsafe fn free_table(&mut self, pa: PhysAddr, bytes: usize) {
        // SAFETY: the crate gives back a frame no walk reaches any more (contract of
        // `free_table`), identity-mapped RAM of `bytes`.
        unsafe { core::ptr::write_bytes(pa.as_usize() as *mut u8, 0xa5, bytes) };
        self.freed += 1;
    }

    fn phys_to_virt(&self, pa: PhysAddr) -> NonNull<u8> {
        NonNull::new(pa.as_usize() as *mut u8).expect("no table at physical address 0")
    }
}

fn report(what: &str, ok: bool) {
    let _ = writeln!(Console, "guest: {} {what}", if ok { "ok" } else { "FAIL" });
}

/// The kernel, once the boot code has a stack and the exception vector is in place.
#[unsafe(no_mangle)]
extern "C" fn kmain() -> ! {
    let frames = Frames {
        next: arch::frames_start(),
        end: RAM + RAM_LEN / 2,
        freed: 0,
    };
    let mut pt = PageTable::<Mode, _>::new(frames).expect("a root table");
    // RAM one to one in huge leaves, the console page as device memory.
    pt.map_region(
        VirtAddr::from(RAM as usize),
        PhysAddr::from(RAM as usize),
        RAM_LEN as usize,
        RW | F::EXECUTE,
        HugePages::Allowed,
    )
    .expect("RAM mapped")
    .ignore();
    pt.map(
        VirtAddr::from(arch::CONSOLE as usize),
        PhysAddr::from(arch::CONSOLE as usize),
        PageSize::SIZE_4K,
        RW | F::DEVICE,
    )
    .expect("console mapped")
    .ignore();
    pt.set_liveness(Liveness::Live);
    // SAFETY: the tables map this code, its stack, its frames and the console where they are.
    unsafe { arch::mmu_on(pt.root_paddr().as_usize() as u64) };
    report("MMU on with tables the crate built", true);

    // A page far from RAM, on tables the map makes now, in a tree the MMU is walking.
    let va = 0x1_0000_0000u64;
    let frame = RAM + RAM_LEN / 2 + 0x1000;
    // SAFETY: RAM beyond the frames' end, identity-mapped, used by nothing else.
    unsafe { core::ptr::write_volatile(frame as *mut u64, 0x1234_5678_9abc_def0) };
    report("an unmapped page faults", arch::read(va).is_none());
    let flush = pt
        .map(
            VirtAddr::from(va as usize),
            PhysAddr::from(frame as usize),
            PageSize::SIZE_4K,
            RW,
        )
        .expect("map");
    pt.flush(flush);
    report(
        "a page mapped live reads its frame",
        arch::read(va) == Some(0x1234_5678_9abc_def0),
    );
    report(
        "and takes a store",
        arch::write(va, 7) && arch::read(frame) == Some(7),
    );

    // Negative control: the change without its flush. The CPU still holds the writable
    // translation, so the store goes through: the flushes below are what makes the changes
    // take effect, and this run would show one that went missing.
    pt.protect(VirtAddr::from(va as usize), F::READ)
        .expect("protect")
        .ignore();
    report(
        "made read-only but not flushed, a store still goes through",
        arch::write(va, 7),
    );
    let flush = pt
        .protect(VirtAddr::from(va as usize), F::READ)
        .expect("protect");
    pt.flush(flush);
    report("flushed, it refuses a store", !arch::write(va, 8));
    report("and still reads", arch::read(va) == Some(7));

    let other = frame + 0x1000;
    // SAFETY: as for `frame`.
    unsafe { core::ptr::write_volatile(other as *mut u64, 99) };
    let flush = pt
        .remap(VirtAddr::from(va as usize), PhysAddr::from(other as usize))
        .expect("remap");
    pt.flush(flush);
    report(
        "remapped live (break-before-make), it reads the new frame",
        arch::read(va) == Some(99),
    );

    let freed = pt.handler().freed;
    let (_, flush) = pt.unmap(VirtAddr::from(va as usize)).expect("unmap");
    report(
        "the emptied tables wait for the flush",
        pt.handler().freed == freed,
    );
    pt.flush(flush);
    // Two tables (the ones the map made) and the frame that recorded them.
    report(
        "and are freed, and scribbled over, after it",
        pt.handler().freed == freed + 3,
    );
    report("unmapped, the page faults again", arch::read(va).is_none());
    report("the rest of RAM still reads", arch::read(frame) == Some(7));
    let _ = writeln!(Console, "DONE");
    arch::power_off()
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    let _ = writeln!(Console, "guest: FAIL panic: {info}");
    let _ = writeln!(Console, "DONE");
    arch::power_off()
}
