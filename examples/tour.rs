//! A tour of `pagetable`: for every paging mode, build the address space a small kernel would
//! have, print it, and count the table frames it took; then a hypervisor's second-stage tables
//! for one guest, a live AArch64 table that breaks before it makes, a kernel half shared by
//! two live process tables, a process's memory manager at work (a scattered mapping, PROT_NONE,
//! a page swapped out to a marker and back, munmap over holes), and what is refused.
//!
//! Run it with `cargo run --example tour`.

use std::cell::RefCell;
use std::ptr::NonNull;

use memory_addr::{PhysAddr, VirtAddr};
use pagetable::{
    AArch64, AArch64S2, Arch, BufferFrames, Cleared, Entry, Ept, Granule16K, Granule64K, HugePages,
    Ipa40, Liveness, Lookup, LoongArch64, Lower, MappingFlags as F, PageSize, PageTable,
    PagingError, PagingHandler, Size2M, Sv39, Sv39x4, Sv48, Sv57, Upper, Va39, Va48, X86_64,
    X86_64La57,
};

const MIB: usize = 1 << 20;
const GIB: usize = 1 << 30;

/// Where a kernel puts things, in one paging mode.
struct Layout {
    /// Kernel image: text, rodata and data, each 2 MiB, mapped from `kernel_pa`.
    kernel_va: usize,
    kernel_pa: usize,
    /// The linear map of physical memory.
    linear_va: usize,
    ram_pa: usize,
    ram_len: usize,
    /// One MMIO window (an interrupt controller or UART).
    mmio_va: usize,
    mmio_pa: usize,
    /// A few user pages (code, data, stack), if this table translates user addresses.
    user_va: Option<usize>,
}

fn build<A: Arch>(title: &str, layout: &Layout) -> Result<(), PagingError> {
    // The table lives in a buffer standing for physical memory at 0x1_0000_0000: a host tool
    // building tables for another machine does exactly this.
    let mut memory = vec![0u64; 256 * 512];
    let frames = BufferFrames::new(&mut memory, PhysAddr::from(0x1_0000_0000)).expect("buffer");
    let mut pt = PageTable::<A, _>::new(frames)?;
    let (va, pa) = (|x: usize| A::Addr::from(x), |x: usize| PhysAddr::from(x));
    let kernel = F::GLOBAL;
    let huge = HugePages::Allowed;
    let page = 1usize << A::PAGE_SHIFT;

    // Every change returns a flush token; this table is not live on the CPU running the tour,
    // so the tokens are merged and then ignored rather than flushed.
    let mut flush = pt.map_region(
        va(layout.kernel_va),
        pa(layout.kernel_pa),
        2 * MIB,
        kernel | F::READ | F::EXECUTE,
        huge,
    )?;
    let rodata = (layout.kernel_va + 2 * MIB, layout.kernel_pa + 2 * MIB);
    flush =
        flush.merge(pt.map_region(va(rodata.0), pa(rodata.1), 2 * MIB, kernel | F::READ, huge)?);
    let data = (layout.kernel_va + 4 * MIB, layout.kernel_pa + 4 * MIB);
    flush = flush.merge(pt.map_region(
        va(data.0),
        pa(data.1),
        2 * MIB,
        kernel | F::READ | F::WRITE,
        huge,
    )?);
    flush = flush.merge(pt.map_region(
        va(layout.linear_va),
        pa(layout.ram_pa),
        layout.ram_len,
        kernel | F::READ | F::WRITE,
        huge,
    )?);
    flush = flush.merge(pt.map_region(
        va(layout.mmio_va),
        pa(layout.mmio_pa),
        64 * 1024,
        kernel | F::READ | F::WRITE | F::DEVICE,
        huge,
    )?);
    if let Some(user) = layout.user_va {
        let user_pa = layout.ram_pa + 512 * MIB;
        flush = flush.merge(pt.map_region(
            va(user),
            pa(user_pa),
            4 * page,
            F::USER | F::READ | F::EXECUTE,
            huge,
        )?);
        flush = flush.merge(pt.map_region(
            va(user + 0x10_0000),
            pa(user_pa + 0x10_0000),
            8 * page,
            F::USER | F::READ | F::WRITE,
            huge,
        )?);
    }
    // Make the last page of kernel data read-only: part of a 2 MiB leaf (with 4K pages), so it
    // is split.
    flush = flush.merge(pt.protect_region(va(data.0 + 2 * MIB - page), page, kernel | F::READ)?);
    println!("== {title} ({}) — flush: {flush:?}", A::NAME);
    flush.ignore();

    print!("{pt:?}");
    let frames = pt.table_frames();
    println!(
        "  {frames} tables of {} KiB (the root may be smaller or concatenated)",
        page / 1024
    );
    let probe = layout.linear_va + GIB + 0x1234;
    let t = pt.query(va(probe))?;
    println!(
        "  query {probe:#x} -> {:#x} ({:?}, {} leaf)",
        t.pa, t.flags, t.size
    );
    println!();
    Ok(())
}

fn main() -> Result<(), PagingError> {
    build::<X86_64>(
        "x86_64, 4-level",
        &Layout {
            kernel_va: 0xffff_ffff_8000_0000,
            kernel_pa: 0x20_0000,
            linear_va: 0xffff_8880_0000_0000,
            ram_pa: 0,
            ram_len: 4 * GIB,
            mmio_va: 0xffff_c900_0000_0000,
            mmio_pa: 0xfee0_0000,
            user_va: Some(0x40_0000),
        },
    )?;
    build::<X86_64La57>(
        "x86_64, 5-level",
        &Layout {
            kernel_va: 0xffff_ffff_8000_0000,
            kernel_pa: 0x20_0000,
            linear_va: 0xff11_0000_0000_0000,
            ram_pa: 0,
            ram_len: 4 * GIB,
            mmio_va: 0xffd2_0000_0000_0000,
            mmio_pa: 0xfee0_0000,
            user_va: Some(0x40_0000),
        },
    )?;
    let arm_kernel = |kernel_va, linear_va, mmio_va| Layout {
        kernel_va,
        kernel_pa: 0x4020_0000,
        linear_va,
        ram_pa: 0x4000_0000,
        ram_len: 4 * GIB,
        mmio_va,
        mmio_pa: 0x0900_0000,
        user_va: None,
    };
    build::<AArch64<Va48, Upper>>(
        "AArch64 48-bit, kernel half (TTBR1)",
        &arm_kernel(
            0xffff_8000_1000_0000,
            0xffff_0000_0000_0000,
            0xffff_fe00_0000_0000,
        ),
    )?;
    build::<AArch64<Va39, Upper>>(
        "AArch64 39-bit, kernel half (TTBR1)",
        &arm_kernel(
            0xffff_ffc0_1000_0000,
            0xffff_ff80_0000_0000,
            0xffff_fffe_0000_0000,
        ),
    )?;
    // The larger granules (Apple silicon runs 16K; many servers 64K): the same calls, and the
    // table shapes follow from the granule (a 2-entry level 0 at 16K; 512M blocks at 64K).
    build::<AArch64<Va48, Upper, Granule16K>>(
        "AArch64 48-bit, 16K granule, kernel half (TTBR1)",
        &arm_kernel(
            0xffff_8000_1000_0000,
            0xffff_0000_0000_0000,
            0xffff_fe00_0000_0000,
        ),
    )?;
    build::<AArch64<Va48, Upper, Granule64K>>(
        "AArch64 48-bit, 64K granule, kernel half (TTBR1)",
        &arm_kernel(
            0xffff_8000_1000_0000,
            0xffff_0000_0000_0000,
            0xffff_fe00_0000_0000,
        ),
    )?;
    // The user half of AArch64 is its own table (TTBR0): one for each process.
    let mut memory = vec![0u64; 16 * 512];
    let frames = BufferFrames::new(&mut memory, PhysAddr::from(0x1_0000_0000)).expect("buffer");
    let mut user = PageTable::<AArch64<Va48, Lower>, _>::new(frames)?;
    user.map(
        VirtAddr::from(0x40_0000),
        PhysAddr::from(0x6000_0000),
        PageSize::SIZE_4K,
        F::USER | F::READ | F::EXECUTE,
    )?
    .ignore();
    // The leaf size as a type: a 2 MiB block, and a size the mode lacks would not compile.
    user.map_page::<Size2M>(
        VirtAddr::from(0x20_0000),
        PhysAddr::from(0x6020_0000),
        F::USER | F::READ | F::WRITE,
    )?
    .ignore();
    println!("== AArch64 48-bit, a process (TTBR0)\n{user:?}");
    // Entries decoded at the arch boundary, level by level: the root's first entry points to
    // a level-1 table (in Arm's numbering), whose first entry points to the table that holds
    // the 2 MiB block.
    let root = user.root();
    if let Some(Entry::Table(l3)) = root.get(0).map(|e| e.decode()) {
        println!("  root entry 0 -> table at {:#x}", l3.pa().as_usize());
    }
    let riscv = |kernel_va, linear_va, mmio_va| Layout {
        kernel_va,
        kernel_pa: 0x8020_0000,
        linear_va,
        ram_pa: 0x8000_0000,
        ram_len: 4 * GIB,
        mmio_va,
        mmio_pa: 0x1000_0000,
        user_va: Some(0x1_0000),
    };
    build::<Sv39>(
        "RISC-V Sv39",
        &riscv(
            0xffff_ffff_8000_0000,
            0xffff_ffc0_0000_0000,
            0xffff_ffe0_0000_0000,
        ),
    )?;
    build::<Sv48>(
        "RISC-V Sv48",
        &riscv(
            0xffff_ffff_8000_0000,
            0xffff_8000_0000_0000,
            0xffff_c000_0000_0000,
        ),
    )?;
    build::<Sv57>(
        "RISC-V Sv57",
        &riscv(
            0xffff_ffff_8000_0000,
            0xff60_0000_0000_0000,
            0xff80_0000_0000_0000,
        ),
    )?;
    build::<LoongArch64>(
        "LoongArch64",
        &Layout {
            kernel_va: 0xffff_ffff_8000_0000,
            kernel_pa: 0x20_0000,
            linear_va: 0xffff_8000_0000_0000,
            ram_pa: 0,
            ram_len: 4 * GIB,
            mmio_va: 0xffff_c000_0000_0000,
            mmio_pa: 0x1fe0_0000,
            user_va: Some(0x1_2000_0000),
        },
    )?;

    // A hypervisor: the same facade builds second-stage tables, where the "virtual" address is
    // the guest's physical one.
    guest::<AArch64S2<Ipa40>>("AArch64 stage 2, 40-bit IPA (VTTBR_EL2)")?;
    guest::<Sv39x4>("RISC-V G-stage Sv39x4 (hgatp)")?;
    guest::<Ept>("x86 EPT (EPTP)")?;

    break_before_make()?;
    kernel_half()?;
    memory_manager()?;

    // What the types and the checks refuse.
    let mut memory = vec![0u64; 8 * 512];
    let frames = BufferFrames::new(&mut memory, PhysAddr::from(0x1_0000_0000)).expect("buffer");
    let mut pt = PageTable::<Sv39, _>::new(frames)?;
    let write_only = pt.map(
        VirtAddr::from(0x1000),
        PhysAddr::from(0x8000_0000),
        PageSize::SIZE_4K,
        F::WRITE,
    );
    println!(
        "== refused\n  Sv39 write-only page: {:?}",
        write_only.map(|f| f.ignore())
    );
    let non_canonical = pt.query(VirtAddr::from(0x0000_8000_0000_0000));
    println!("  Sv39 query of 0x8000_0000_0000: {non_canonical:?}");
    let gib_on_sv39 = pt.map(
        VirtAddr::from(0),
        PhysAddr::from(0),
        PageSize::SIZE_512G,
        F::READ,
    );
    println!("  Sv39 512 GiB leaf: {:?}", gib_on_sv39.map(|f| f.ignore()));
    Ok(())
}

/// One guest's memory in a second-stage table: RAM, a device page passed through, and a
/// firmware page the guest may run but not read (execute-only, which every second stage can
/// express).
fn guest<A: Arch>(title: &str) -> Result<(), PagingError> {
    let mut memory = vec![0u64; 64 * 512];
    let frames = BufferFrames::new(&mut memory, PhysAddr::from(0x1_0000_0000)).expect("buffer");
    let mut pt = PageTable::<A, _>::new(frames)?;
    let (gpa, hpa) = (|x: usize| A::Addr::from(x), |x: usize| PhysAddr::from(x));
    let ram = F::READ | F::WRITE | F::EXECUTE;
    let flush = pt.map_region(
        gpa(0x8000_0000),
        hpa(0x20_0000_0000),
        2 * GIB + 4 * MIB,
        ram,
        HugePages::Allowed,
    )?;
    let flush = flush.merge(pt.map(
        gpa(0x1000_0000),
        hpa(0x1000_0000),
        PageSize::SIZE_4K,
        F::READ | F::WRITE | F::DEVICE,
    )?);
    let flush = flush.merge(pt.map(
        gpa(0x7fff_f000),
        hpa(0x1f_ffff_f000),
        PageSize::SIZE_4K,
        F::EXECUTE,
    )?);
    println!(
        "== {title} ({}) — a guest's memory, flush: {flush:?}",
        A::NAME
    );
    flush.ignore();
    print!("{pt:?}");
    // Stage 1 notions have no meaning here and are refused.
    let user = pt.map(
        gpa(0x4000_0000),
        hpa(0),
        PageSize::SIZE_4K,
        F::READ | F::USER,
    );
    println!("  a USER page: {:?}", user.map(|f| f.ignore()));
    println!();
    Ok(())
}

/// A live AArch64 table: a block split makes an invalid entry, flushes, then writes the new
/// table (break-before-make); told the caller cannot break, the table refuses instead.
fn break_before_make() -> Result<(), PagingError> {
    let mut memory = vec![0u64; 16 * 512];
    let frames = BufferFrames::new(&mut memory, PhysAddr::from(0x1_0000_0000)).expect("buffer");
    let mut pt = PageTable::<AArch64<Va48, Lower>, _>::new(frames)?;
    pt.map(
        VirtAddr::from(0x4000_0000),
        PhysAddr::from(0x8000_0000),
        PageSize::SIZE_2M,
        F::READ | F::WRITE,
    )?
    .ignore();
    pt.set_liveness(Liveness::LiveNoBreak);
    let refused = pt.unmap_region(VirtAddr::from(0x4000_1000), 0x1000);
    println!(
        "== break-before-make\n  live, no breaks allowed, split of a 2M block: {:?}",
        refused.map(|f| f.ignore())
    );
    // `Live`: the block's entry goes invalid, the handler's `break_flush` runs (by default the
    // mode's broadcast TLBI on AArch64; nothing on the host running this tour), then the new
    // table is linked.
    pt.set_liveness(Liveness::Live);
    let flush = pt.unmap_region(VirtAddr::from(0x4000_1000), 0x1000)?;
    println!("  live: split done, then {flush:?}");
    flush.ignore();
    print!("{pt:?}");
    println!();
    Ok(())
}

/// One frame pool for several tables, as a kernel's page allocator is.
#[derive(Clone, Copy)]
struct Pool<'p, 'b>(&'p RefCell<BufferFrames<'b>>);

// SAFETY: every call forwards to the one `BufferFrames`, whose contract it keeps; the
// `RefCell` borrow ends inside each call.
unsafe impl PagingHandler for Pool<'_, '_> {
    fn alloc_table(&mut self, bytes: usize) -> Option<PhysAddr> {
        self.0.borrow_mut().alloc_table(bytes)
    }
    unsafe fn free_table(&mut self, pa: PhysAddr, bytes: usize) {
        // SAFETY: forwarded from the caller.
        unsafe { self.0.borrow_mut().free_table(pa, bytes) }
    }
    fn phys_to_virt(&self, pa: PhysAddr) -> NonNull<u8> {
        self.0.borrow().phys_to_virt(pa)
    }
}

/// The kernel half: one kernel table shares its upper half, every process table borrows it.
/// The kernel maps and unmaps there (a vmalloc, a vfree) and each process sees it at once;
/// since the tables are live, a table an unmap empties is freed only after the flush.
fn kernel_half() -> Result<(), PagingError> {
    let mut memory = vec![0u64; 64 * 512];
    let pool = RefCell::new(
        BufferFrames::new(&mut memory, PhysAddr::from(0x1_0000_0000)).expect("buffer"),
    );
    let frames_out = || pool.borrow().allocated_bytes() / 4096;
    let half = VirtAddr::from(0xffff_8000_0000_0000);
    let mut kernel = PageTable::<Sv48, _>::new(Pool(&pool))?;
    kernel.set_liveness(Liveness::Live);
    // One root entry (512 GiB) is the kernel's here; a real kernel shares all 256.
    kernel.share(half, 1 << 39)?.ignore();
    let mut processes = [
        PageTable::<Sv48, _>::new(Pool(&pool))?,
        PageTable::<Sv48, _>::new(Pool(&pool))?,
    ];
    for p in &mut processes {
        p.set_liveness(Liveness::Live);
        // SAFETY: `kernel` outlives both processes (they are dropped first, below), all three
        // reach the same memory, and nothing here reads through a process while the kernel
        // changes its half.
        unsafe { p.borrow_shared(&kernel, half, 1 << 39) }?.ignore();
    }
    println!(
        "== a kernel half shared by two live process tables ({} frames out)",
        frames_out()
    );
    let vmalloc = VirtAddr::from(0xffff_8000_1234_5000);
    let flush = kernel.map(
        vmalloc,
        PhysAddr::from(0x9000_0000),
        PageSize::SIZE_4K,
        F::READ | F::WRITE | F::GLOBAL,
    )?;
    kernel.flush(flush);
    for p in &processes {
        println!(
            "  process sees the kernel's new page: {:#x}",
            p.query(vmalloc)?.pa
        );
    }
    let (gone, flush) = kernel.unmap(vmalloc)?;
    println!(
        "  vfree: unmapped {:#x}; the tables it emptied wait for the flush ({} frames out)",
        gone.pa,
        frames_out()
    );
    kernel.flush(flush);
    println!("  after the flush: {} frames out", frames_out());
    for p in &processes {
        println!("  process: {:?}", p.query(vmalloc).err());
    }
    drop(processes);
    drop(kernel);
    println!();
    Ok(())
}

/// A process's memory manager: an anonymous region filled from the frame allocator (scattered
/// frames, one call), `mprotect(PROT_NONE)` on part of it, a page swapped out to a marker and
/// faulted back in, and `munmap` over the whole area, holes and markers included.
fn memory_manager() -> Result<(), PagingError> {
    let mut memory = vec![0u64; 16 * 512];
    let frames = BufferFrames::new(&mut memory, PhysAddr::from(0x1_0000_0000)).expect("buffer");
    let mut mm = PageTable::<X86_64, _>::new(frames)?;
    mm.set_liveness(Liveness::Live);
    let heap = 0x5555_0000_0000usize;
    let rw = F::READ | F::WRITE | F::USER;
    // Eight pages from wherever the allocator had them.
    let pages: Vec<PhysAddr> = [7, 3, 12, 4, 30, 31, 9, 2]
        .iter()
        .map(|&n| PhysAddr::from(0x8000_0000 + n * 0x1000))
        .collect();
    let flush = mm.map_frames(VirtAddr::from(heap), &pages, rw)?;
    mm.flush(flush);
    println!("== a process's memory manager (x86_64, live)");
    println!(
        "  anonymous region of 8 scattered pages: page 2 is frame {:#x}",
        mm.query(VirtAddr::from(heap + 0x2000))?.pa
    );
    // A guard: PROT_NONE keeps the frame, faults on every access, and comes back as it was.
    let flush = mm.protect_region(VirtAddr::from(heap + 0x6000), 0x2000, rw | F::INACCESSIBLE)?;
    mm.flush(flush);
    let t = mm.query(VirtAddr::from(heap + 0x7000))?;
    println!(
        "  PROT_NONE page: frame {:#x} kept, flags {:?}",
        t.pa, t.flags
    );
    // Reclaim: the page goes to swap slot 0x51; a marker holds the slot in its entry.
    let (page, flush) = mm.unmap(VirtAddr::from(heap + 0x1000))?;
    mm.flush(flush);
    mm.set_marker(VirtAddr::from(heap + 0x1000), 0x51)?;
    println!(
        "  swapped out (dirty: {}): lookup finds {:?}",
        page.state.dirty,
        mm.lookup(VirtAddr::from(heap + 0x1000))?
    );
    // The fault path: lookup says which case it is.
    if let Lookup::Marker(slot) = mm.lookup(VirtAddr::from(heap + 0x1000))? {
        let (_, flush) = mm.take_marker(VirtAddr::from(heap + 0x1000))?;
        mm.flush(flush);
        let flush = mm.map(
            VirtAddr::from(heap + 0x1000),
            PhysAddr::from(0x9000_0000),
            PageSize::SIZE_4K,
            rw,
        )?;
        mm.flush(flush);
        println!("  page fault: swapped slot {slot:#x} back in at frame 0x90000000");
    }
    // Another page goes to swap and stays there.
    let (_, flush) = mm.unmap(VirtAddr::from(heap + 0x4000))?;
    mm.flush(flush);
    mm.set_marker(VirtAddr::from(heap + 0x4000), 0x52)?;
    // munmap of the area and the hole after it: frames to free, swap slots to release.
    let mut freed = 0;
    let mut slots = 0;
    let flush = mm.unmap_region_with(VirtAddr::from(heap), 0x10_000, |gone| match gone {
        Cleared::Leaf(_) => freed += 1,
        Cleared::Marker { .. } => slots += 1,
    })?;
    mm.flush(flush);
    println!(
        "  munmap over holes: {freed} pages to free, {slots} swap slots, {} table frames left",
        mm.table_frames()
    );
    println!();
    Ok(())
}
