//! The checks, in the order the plan of `tests/qemu/rust_guests.rs` lists them. Each edit is
//! made on the table the MMU is walking and followed by the crate's own flush, and its effect
//! is checked through the CPU.

use core::fmt::Write;
use core::sync::atomic::Ordering;

use pagetable::{
    AccessState, Liveness, Lookup, MappingFlags as F, PageSize, PageTable, PhysAddr, VirtAddr,
};

use crate::arch::Console;
use crate::frames::{self, BREAKS, BREAKS_SEEN, FREED, Frames};
use crate::{KERNEL, RW, arch, exec, last_cause, read, report, write};

/// Test pages, away from RAM, on tables the checks make.
const PAGE: u64 = 0x1_0000_0000;
const CODE: u64 = 0x1_0000_4000;

fn va(addr: u64) -> VirtAddr {
    VirtAddr::from(addr as usize)
}

fn pa(addr: u64) -> PhysAddr {
    PhysAddr::from(addr as usize)
}

/// A load or store of physical memory where the kernel reaches it, not through a probe.
fn peek(pa: u64) -> u64 {
    // SAFETY: a data page of the kernel's, reached where the kernel reaches physical memory.
    unsafe { core::ptr::read_volatile(arch::phys(pa) as *const u64) }
}

fn poke(pa: u64, value: u64) {
    // SAFETY: as for `peek`.
    unsafe { core::ptr::write_volatile(arch::phys(pa) as *mut u64, value) }
}

/// The kernel's table, locked.
fn kernel() -> crate::lock::Guard<'static, Option<crate::Kernel>> {
    KERNEL.lock()
}

macro_rules! pt {
    ($guard:ident) => {
        $guard.as_mut().expect("the kernel's table")
    };
}

pub fn map_protect_remap() {
    let frame = frames::data_page();
    poke(frame, 0x1234_5678_9abc_def0);
    report("an unmapped page faults", read(PAGE).is_none());
    {
        let mut k = kernel();
        let pt = pt!(k);
        let flush = pt
            .map(va(PAGE), pa(frame), PageSize::SIZE_4K, RW)
            .expect("map");
        pt.flush(flush);
    }
    report(
        "a page mapped live reads its frame",
        read(PAGE) == Some(0x1234_5678_9abc_def0),
    );
    report("and takes a store", write(PAGE, 7) && peek(frame) == 7);

    // Negative control: the change without its flush. The CPU still holds the writable
    // translation, so the store goes through: the flushes are what make the changes take
    // effect, and this run would show one that went missing.
    {
        let mut k = kernel();
        pt!(k).protect(va(PAGE), F::READ).expect("protect").ignore();
    }
    report(
        "made read-only but not flushed, a store still goes through",
        write(PAGE, 7),
    );
    {
        let mut k = kernel();
        let pt = pt!(k);
        let flush = pt.protect(va(PAGE), F::READ).expect("protect");
        pt.flush(flush);
    }
    report("flushed, it refuses a store", !write(PAGE, 8));
    report("and still reads", read(PAGE) == Some(7));

    let other = frames::data_page();
    poke(other, 99);
    {
        let mut k = kernel();
        let pt = pt!(k);
        let flush = pt.remap(va(PAGE), pa(other)).expect("remap");
        pt.flush(flush);
    }
    report(
        "remapped live, it reads the new frame",
        read(PAGE) == Some(99),
    );
}

pub fn execute() {
    let code = frames::data_page();
    arch::write_ret(code);
    {
        let mut k = kernel();
        let pt = pt!(k);
        let flush = pt
            .map(va(CODE), pa(code), PageSize::SIZE_4K, F::READ | F::EXECUTE)
            .expect("map code");
        pt.flush(flush);
    }
    report("a page mapped executable runs", exec(CODE));
    {
        let mut k = kernel();
        let pt = pt!(k);
        let flush = pt.protect(va(CODE), F::READ).expect("protect code");
        pt.flush(flush);
    }
    if arch::NX_FETCH_FAULTS {
        report("made non-executable, a fetch faults", !exec(CODE));
    }
    report("and it still reads", read(CODE).is_some());
}

/// The mode's memory-type layout, seen through the CPU: one frame mapped as normal memory
/// and as device memory. An unaligned load goes through normal memory and takes an
/// alignment fault on device memory (where the architecture faults it: `arch::ALIGNMENT_FAULT`
/// is that fault's cause), so a leaf whose AttrIndx named the wrong MAIR entry shows here.
pub fn memory_types() {
    const NORMAL_VA: u64 = PAGE + 0x2000;
    const DEVICE_VA: u64 = PAGE + 0x3000;
    let frame = frames::data_page();
    poke(frame, 0x8877_6655_4433_2211);
    poke(frame + 8, 0xff);
    {
        let mut k = kernel();
        let pt = pt!(k);
        let flush = pt
            .map(va(NORMAL_VA), pa(frame), PageSize::SIZE_4K, RW)
            .expect("map normal");
        pt.flush(flush);
        let flush = pt
            .map(va(DEVICE_VA), pa(frame), PageSize::SIZE_4K, RW | F::DEVICE)
            .expect("map device");
        pt.flush(flush);
    }
    let normal = read(NORMAL_VA + 1);
    let device_aligned = read(DEVICE_VA);
    let device = read(DEVICE_VA + 1);
    let cause = last_cause();
    {
        let mut k = kernel();
        let pt = pt!(k);
        for page in [NORMAL_VA, DEVICE_VA] {
            let (_, flush) = pt.unmap(va(page)).expect("unmap");
            pt.flush(flush);
        }
    }
    report(
        "mapped normal under the kernel's MAIR layout, an unaligned load reads; mapped device, it takes an alignment fault",
        normal == Some(0xff88_7766_5544_3322)
            && device_aligned == Some(0x8877_6655_4433_2211)
            && device.is_none()
            && arch::alignment_fault(cause),
    );
}

/// A load through `va` that must fault on an invalid entry: the probe fails and the cause is
/// the architecture's for a not-present load.
fn faults_not_present(va: u64) -> bool {
    read(va).is_none() && arch::not_present_load(last_cause())
}

/// PROT_NONE and markers: entries the MMU sees as invalid, kept by the crate.
pub fn non_present() {
    // The page of `map_protect_remap`, read-only on the frame holding 99.
    {
        let mut k = kernel();
        let pt = pt!(k);
        let flush = pt
            .protect(va(PAGE), F::READ | F::INACCESSIBLE)
            .expect("protect none");
        pt.flush(flush);
    }
    let kept = {
        let k = kernel();
        k.as_ref()
            .and_then(|pt| pt.query(va(PAGE)).ok())
            .is_some_and(|t| t.flags == F::READ | F::INACCESSIBLE)
    };
    report(
        "made inaccessible (PROT_NONE), a load faults as not present; the leaf keeps its frame and flags",
        faults_not_present(PAGE) && kept,
    );
    {
        let mut k = kernel();
        let pt = pt!(k);
        let flush = pt.protect(va(PAGE), F::READ).expect("protect back");
        pt.flush(flush);
    }
    report(
        "made accessible again, it reads its data",
        read(PAGE) == Some(99),
    );

    let payload = (1 << 59) | 0x5a5a_1234;
    let frame = {
        let mut k = kernel();
        let pt = pt!(k);
        let (page, flush) = pt.unmap(va(PAGE)).expect("unmap");
        pt.flush(flush);
        pt.set_marker(va(PAGE), payload).expect("set marker");
        page.pa.as_usize() as u64
    };
    let found = kernel().as_ref().map(|pt| pt.lookup(va(PAGE)));
    report(
        "a marker faults as not present, and lookup reads its payload back",
        faults_not_present(PAGE) && found == Some(Ok(Lookup::Marker(payload))),
    );
    {
        let mut k = kernel();
        let pt = pt!(k);
        let (got, flush) = pt.take_marker(va(PAGE)).expect("take marker");
        pt.flush(flush);
        assert_eq!(got, payload);
        let flush = pt
            .map(va(PAGE), pa(frame), PageSize::SIZE_4K, F::READ)
            .expect("map again");
        pt.flush(flush);
    }
    report(
        "swapped back in (take_marker, map), it reads its data",
        read(PAGE) == Some(99),
    );

    {
        let mut k = kernel();
        let pt = pt!(k);
        let all = (1 << pagetable::arch::soft_bits::<arch::Mode>()) - 1;
        pt.set_soft_bits(va(PAGE), all).expect("set soft bits");
    }
    // The MMU walks the entry again, software bits and all.
    arch::invalidate_local(PAGE);
    report(
        "with every software bit set, the page reads as before and still refuses a store",
        read(PAGE) == Some(99) && !write(PAGE, 5),
    );
}

/// Where the hardware leaves dirty marks to software: a clean writable page's first store
/// faults, the fault handler marks the page dirty through the crate (`mark_access`), and the
/// store completes.
pub fn software_dirty() {
    const DIRTY_VA: u64 = 0x1_0000_8000;
    let frame = frames::data_page();
    {
        let mut k = kernel();
        let pt = pt!(k);
        let flush = pt
            .map(va(DIRTY_VA), pa(frame), PageSize::SIZE_4K, RW)
            .expect("map");
        pt.flush(flush);
        let (_, flush) = pt
            .clear_access_state(va(DIRTY_VA), AccessState::BOTH)
            .expect("clean");
        pt.flush(flush);
    }
    let before = crate::SOFT_DIRTY_MARKS.load(Ordering::SeqCst);
    let first = write(DIRTY_VA, 0x77) && peek(frame) == 0x77;
    let marked = crate::SOFT_DIRTY_MARKS.load(Ordering::SeqCst) - before;
    let second = write(DIRTY_VA, 0x78);
    let after = crate::SOFT_DIRTY_MARKS.load(Ordering::SeqCst) - before;
    let dirty = kernel()
        .as_ref()
        .and_then(|pt| pt.query(va(DIRTY_VA)).ok())
        .is_some_and(|t| t.state.dirty);
    report(
        "software dirty marks: a clean page's first store faults once, the handler marks it dirty through the crate, the store completes",
        first && marked == 1 && second && after == 1 && dirty,
    );
    // Gone again, so that the tables of the test pages empty when `unmap_and_free` expects.
    let mut k = kernel();
    let pt = pt!(k);
    let (_, flush) = pt.unmap(va(DIRTY_VA)).expect("unmap");
    pt.flush(flush);
}

pub fn demand_paging() {
    let before = crate::DEMAND_MAPS.load(Ordering::SeqCst);
    let mut stored = true;
    for i in 0..crate::DEMAND_PAGES {
        stored &= write(crate::DEMAND_VA + i * 0x1000 + 8 + 8 * i, 0xd00d_0000 + i);
    }
    let maps = crate::DEMAND_MAPS.load(Ordering::SeqCst) - before;
    report(
        "demand paging: each first store faults once, the handler maps a page, the store completes",
        stored && maps == crate::DEMAND_PAGES,
    );
    let back = (0..crate::DEMAND_PAGES)
        .all(|i| read(crate::DEMAND_VA + i * 0x1000 + 8 + 8 * i) == Some(0xd00d_0000 + i));
    let first = (0..crate::DEMAND_PAGES).all(|i| read(crate::DEMAND_VA + i * 0x1000) == Some(0));
    report(
        "the stores read back, on zeroed pages, with no further fault",
        back && first && crate::DEMAND_MAPS.load(Ordering::SeqCst) - before == maps,
    );
}

pub fn split_live_block() {
    // A 2 MiB block of RAM that the kernel maps one to one, with a pattern in every page.
    for page in 0..512 {
        poke(crate::SPLIT + page * 0x1000, 0x5151_0000 + page);
    }
    let target = crate::SPLIT + 0x3000;
    let (breaks, seen) = (
        BREAKS.load(Ordering::SeqCst),
        BREAKS_SEEN.load(Ordering::SeqCst),
    );
    {
        let mut k = kernel();
        let pt = pt!(k);
        let flush = pt
            .protect_region(va(target), 0x1000, F::READ)
            .expect("protect one page of a block");
        pt.flush(flush);
    }
    let kept = (0..512).all(|page| read(crate::SPLIT + page * 0x1000) == Some(0x5151_0000 + page));
    report("a 2 MiB block split live keeps every page's data", kept);
    report(
        "the page made read-only in it refuses a store, its neighbours take one",
        !write(target, 1) && write(target - 0x1000, 2) && write(target + 0x1000, 3),
    );
    if arch::BREAKS_BEFORE_SPLIT {
        let (made, seen) = (
            BREAKS.load(Ordering::SeqCst) - breaks,
            BREAKS_SEEN.load(Ordering::SeqCst) - seen,
        );
        report(
            "the split broke the block first: in break_flush, a load from it faults",
            made == 1 && seen == made,
        );
    }
}

/// The accessed and dirty marks the MMU sets, sampled with `clear_access_state`: every page
/// stored to is reported dirty exactly once, every page only read accessed and clean.
pub fn access_state() {
    const PAGES: u64 = 16;
    const BASE: u64 = 0x1_0040_0000;
    {
        let mut k = kernel();
        let pt = pt!(k);
        for i in 0..PAGES {
            let flush = pt
                .map(
                    va(BASE + i * 0x1000),
                    pa(frames::data_page()),
                    PageSize::SIZE_4K,
                    RW,
                )
                .expect("map");
            pt.flush(flush);
        }
    }
    // New leaves start accessed and dirty: clear them, then two rounds of stores.
    let sample = |i: u64| -> AccessState {
        let mut k = kernel();
        let pt = pt!(k);
        let (state, flush) = pt
            .clear_access_state(va(BASE + i * 0x1000), AccessState::BOTH)
            .expect("clear");
        pt.flush(flush);
        state
    };
    for i in 0..PAGES {
        sample(i);
    }
    let untouched = (0..PAGES).all(|i| sample(i) == AccessState::default());
    report("cleared, no page is reported accessed or dirty", untouched);
    let (mut stores, mut marks, mut wrong, mut expected) = (0, 0, 0, 0);
    for pattern in [0b1011_0110_0101_1001u64, 0b0110_1001_1110_0011] {
        expected += u64::from(pattern.count_ones());
        for i in 0..PAGES {
            if pattern >> i & 1 != 0 {
                stores += u64::from(write(BASE + i * 0x1000, pattern));
            } else {
                wrong += u64::from(read(BASE + i * 0x1000).is_none());
            }
        }
        for i in 0..PAGES {
            let state = sample(i);
            let stored = pattern >> i & 1 != 0;
            marks += u64::from(state.dirty);
            wrong += u64::from(state.dirty != stored || !state.accessed);
        }
    }
    report(
        "every store the CPU made is reported dirty once, every page only read clean",
        stores == expected && marks == stores && wrong == 0,
    );
}

/// A process table that borrows the kernel's half: the kernel keeps editing its half while the
/// CPU walks the process table.
pub fn shared_kernel_half() {
    let (half, half_len) = arch::KERNEL_HALF;
    let mut proc = PageTable::<arch::Mode, Frames>::new(Frames).expect("process root");
    {
        let mut k = kernel();
        let pt = pt!(k);
        let flush = pt.share(va(half), half_len as usize).expect("share");
        pt.flush(flush);
        // SAFETY: the kernel's table lives as long as the kernel, and the process table is
        // dropped (after `release_borrowed`) before the kernel's half is edited unlocked.
        unsafe { proc.borrow_shared(pt, va(half), half_len as usize) }
            .expect("borrow")
            .ignore();
    }
    let user = frames::data_page();
    poke(user, 0x0_5e55_10e5);
    proc.map(va(arch::USER_VA), pa(user), PageSize::SIZE_4K, RW)
        .expect("user page")
        .ignore();
    proc.set_liveness(Liveness::Live);
    // SAFETY: the process table maps the kernel's half, where this code, its stack and the
    // devices are; it stays alive and live until the kernel's table is back.
    unsafe { proc.activate() };
    report(
        "a process table that borrows the kernel half runs the kernel and its own page",
        read(arch::USER_VA) == Some(0x0_5e55_10e5) && read(crate::DATA).is_some(),
    );

    let kpage = frames::data_page();
    poke(kpage, 0x4b);
    let kva = arch::KERNEL_EXTRA_VA;
    {
        let mut k = kernel();
        let pt = pt!(k);
        let flush = pt
            .map(va(kva), pa(kpage), PageSize::SIZE_4K, RW)
            .expect("kernel page");
        pt.flush(flush);
    }
    report(
        "a page the kernel maps in its half is seen from the process",
        read(kva) == Some(0x4b),
    );
    let freed = FREED.load(Ordering::SeqCst);
    let waited;
    {
        let mut k = kernel();
        let pt = pt!(k);
        let (_, flush) = pt.unmap(va(kva)).expect("kernel unmap");
        waited = FREED.load(Ordering::SeqCst) == freed;
        pt.flush(flush);
    }
    report(
        "unmapped by the kernel, it faults from the process; its tables were freed after the flush",
        waited && FREED.load(Ordering::SeqCst) > freed && read(kva).is_none(),
    );
    activate_kernel();
    report(
        "back on the kernel table, the process page is not mapped",
        read(arch::USER_VA).is_none() && read(crate::DATA).is_some(),
    );
    let _ = proc.release_borrowed();
    let freed = FREED.load(Ordering::SeqCst);
    drop(proc);
    let own = FREED.load(Ordering::SeqCst) - freed;
    report(
        "the process table, dropped, frees its own tables and none of the kernel's",
        own == arch::PROCESS_TABLES && read(crate::SPLIT).is_some(),
    );
}

/// Makes the kernel's own table (untagged) the one walked again.
fn activate_kernel() {
    // SAFETY: the kernel's table maps everything this code uses and lives as long as the
    // kernel.
    let mut k = kernel();
    unsafe { pt!(k).activate() };
}

/// A process table under identifier `id` (ASID, PCID) that borrows the kernel's half and maps
/// `USER_VA` to a page holding `value`.
fn process(id: u16, value: u64) -> crate::Kernel {
    let (half, half_len) = arch::KERNEL_HALF;
    let mut proc = PageTable::<arch::Mode, Frames>::new(Frames).expect("process root");
    proc.set_tlb_id(arch::tlb_ids().then_some(id))
        .expect("an identifier the mode has");
    {
        let mut k = kernel();
        // SAFETY: the kernel's table outlives the process table, which gives the half back
        // (`release_borrowed`) before it is dropped.
        unsafe { proc.borrow_shared(pt!(k), va(half), half_len as usize) }
            .expect("borrow")
            .ignore();
    }
    let page = frames::data_page();
    poke(page, value);
    proc.map(va(arch::USER_VA), pa(page), PageSize::SIZE_4K, RW)
        .expect("user page")
        .ignore();
    proc.set_liveness(Liveness::Live);
    proc
}

/// Two address spaces under identifiers 1 and 2 map the same address to different frames:
/// activated with their identifiers (no flush on the switch), each reads its own frame; a
/// change to one, flushed under its identifier while the other runs, is seen when it runs
/// again; where the TLB keeps tagged entries across a switch, a stale entry of the running
/// space survives a switch and the other identifier's flushes, and goes with its own.
pub fn address_spaces() {
    if !arch::tlb_ids() {
        let _ = writeln!(
            Console,
            "guest: info this CPU has no TLB identifiers: the address spaces run untagged"
        );
    }
    let mut one = process(1, 0x1111);
    let mut two = process(2, 0x2222);
    // SAFETY (every `activate` below): both tables borrow the kernel's half, where this code,
    // its stack and the devices are, and stay alive and live until the kernel's table is back.
    unsafe { one.activate() };
    let first = read(arch::USER_VA);
    unsafe { two.activate() };
    let second = read(arch::USER_VA);
    unsafe { one.activate() };
    let again = read(arch::USER_VA);
    report(
        "two address spaces under identifiers 1 and 2, switched without a flush, each read their own frame",
        first == Some(0x1111) && second == Some(0x2222) && again == Some(0x1111),
    );

    // Space 2 changes while space 1 runs: its flush is tagged with identifier 2.
    let moved = frames::data_page();
    poke(moved, 0x3333);
    let flush = two.remap(va(arch::USER_VA), pa(moved)).expect("remap");
    two.flush(flush);
    let running = read(arch::USER_VA);
    unsafe { two.activate() };
    let changed = read(arch::USER_VA);
    report(
        "a change to a switched-out space, flushed under its identifier, is seen when it runs again",
        running == Some(0x1111) && changed == Some(0x3333),
    );

    // Space 1 runs and reads its page (the TLB holds it under identifier 1); its leaf moves
    // without a flush, then space 2 runs and flushes under identifier 2; back on space 1, a TLB
    // that keeps tagged entries still translates to the old frame, until space 1's own flush.
    unsafe { one.activate() };
    let cached = read(arch::USER_VA);
    let newer = frames::data_page();
    poke(newer, 0x4444);
    let stale = one.remap(va(arch::USER_VA), pa(newer)).expect("remap");
    unsafe { two.activate() };
    let flush = two.protect(va(arch::USER_VA), F::READ).expect("protect");
    two.flush(flush);
    unsafe { one.activate() };
    let kept = read(arch::USER_VA);
    one.flush(stale);
    let after = read(arch::USER_VA);
    match kept {
        Some(v) => {
            let _ = writeln!(
                Console,
                "guest: info after a switch and identifier 2's flush, space 1 read {v:#x} (old frame 0x1111, new 0x4444)"
            );
        }
        None => {
            let _ = writeln!(
                Console,
                "guest: info after a switch and identifier 2's flush, space 1 faulted"
            );
        }
    }
    report(
        "a stale entry of the running space is gone after its own tagged flush, kept across the other's",
        cached == Some(0x1111)
            && after == Some(0x4444)
            && (!arch::TLB_KEEPS_TAGGED_ENTRIES || kept == Some(0x1111)),
    );

    activate_kernel();
    for mut proc in [one, two] {
        let _ = proc.release_borrowed();
        drop(proc);
    }
}

pub fn unmap_and_free() {
    let (freed, flush);
    {
        let mut k = kernel();
        let pt = pt!(k);
        let (_, code) = pt.unmap(va(CODE)).expect("unmap code");
        pt.flush(code);
        freed = FREED.load(Ordering::SeqCst);
        flush = pt.unmap(va(PAGE)).expect("unmap").1;
    }
    report(
        "the emptied tables wait for the flush",
        FREED.load(Ordering::SeqCst) == freed,
    );
    {
        let mut k = kernel();
        pt!(k).flush(flush);
    }
    report(
        "and are freed, and scribbled over, after it",
        FREED.load(Ordering::SeqCst) > freed,
    );
    report("unmapped, the page faults again", read(PAGE).is_none());
    report("the rest of RAM still reads", read(crate::DATA).is_some());
}
