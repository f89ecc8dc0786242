//! Several CPUs on one table. The other CPUs (workers) keep storing to and reading pages
//! while the boot CPU (the coordinator) edits the table under them with `clear_access_state`,
//! `protect_region` and a live split, each followed by the crate's flush and, where the
//! architecture's invalidation does not reach other CPUs, a shootdown by IPI
//! (`arch::shootdown`). Then:
//!
//! * no mark is lost: the kernel writes back a page's contents after every sample that reports
//!   it dirty (after that sample's flush, as a kernel's write-back does), and at the end every
//!   page's contents are what the last write-back saw; a page no CPU stored to is never
//!   reported dirty;
//! * after the shootdown of a protect, no CPU's store goes through;
//! * readers of a block split live always read its data (faults during a break are retried
//!   as spurious once the edit is done).

use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pagetable::{AccessState, Flush, MappingFlags as F, PageSize, PhysAddr, VirtAddr};

use crate::arch::{self, Console};
use crate::frames;
use crate::{KERNEL, Kernel, RW, read, report, write};

pub const MAX_CPUS: usize = 4;

/// Whether other CPUs run: the fault handler then retries spurious faults.
pub static ACTIVE: AtomicBool = AtomicBool::new(false);

static ROOT: AtomicU64 = AtomicU64::new(0);
static ONLINE: AtomicU64 = AtomicU64::new(0);
static PHASE: AtomicU64 = AtomicU64::new(IDLE);
/// Workers that finished the current step.
static DONE: AtomicU64 = AtomicU64::new(0);

const IDLE: u64 = 0;
const MARKS: u64 = 1;
const PROTECT: u64 = 2;
const SPLIT: u64 = 3;
const PARKED: u64 = 9;

/// Marks: pages, rounds, stores per page per round by its owner.
const PAGES: u64 = 32;
const ROUNDS: u64 = 8;
const REPS: u64 = 64;
const MARKS_VA: u64 = 0x1_0080_0000;
static ROUND: AtomicU64 = AtomicU64::new(0);
/// The CPU that stores to each page this round (0: none).
static OWNER: [AtomicU64; PAGES as usize] = [const { AtomicU64::new(0) }; PAGES as usize];
static STORES: AtomicU64 = AtomicU64::new(0);

/// Protect: pages the workers store to until told the protect is flushed.
const PROTECT_VA: u64 = 0x1_00c0_0000;
const PROTECT_PAGES: u64 = 16;
static PROTECTED: AtomicBool = AtomicBool::new(false);
static PROTECT_STORES: AtomicU64 = AtomicU64::new(0);
static LATE_STORES: AtomicU64 = AtomicU64::new(0);

/// Split: a block of RAM the workers read until told the split is flushed.
static SPLIT_DONE: AtomicBool = AtomicBool::new(false);
static SPLIT_READS: AtomicU64 = AtomicU64::new(0);
static SPLIT_BAD: AtomicU64 = AtomicU64::new(0);
static SPLIT_FAULTED: AtomicU64 = AtomicU64::new(0);
static SPLIT_RO_STORES: AtomicU64 = AtomicU64::new(0);
static SPLIT_NEIGHBOUR_REFUSED: AtomicU64 = AtomicU64::new(0);

fn block() -> u64 {
    crate::SPLIT + (2 << 20)
}

fn va(addr: u64) -> VirtAddr {
    VirtAddr::from(addr as usize)
}

fn workers() -> u64 {
    arch::CPUS as u64 - 1
}

/// Flushes `flush` on every CPU, then frees what it retired.
fn flush_everywhere(pt: &mut Kernel, flush: Flush<arch::Mode>) {
    let range = flush.va_range();
    let mut retired = flush.flush();
    arch::shootdown(range.map(|(va, len)| (va.as_usize() as u64, len as u64)));
    pt.free_retired(&mut retired);
}

fn wait_for(what: &AtomicU64, value: u64) {
    while what.load(Ordering::SeqCst) < value {
        core::hint::spin_loop();
    }
}

/// The coordinator: brings the workers up, runs the three steps, parks the workers.
pub fn run(root: u64) {
    ROOT.store(root, Ordering::SeqCst);
    ACTIVE.store(true, Ordering::SeqCst);
    for cpu in 1..arch::CPUS {
        // 16 KiB of stack each, from consecutive data pages.
        let stack = (0..4).map(|_| frames::data_page()).last().expect("a stack") + 0x1000;
        arch::start_cpu(cpu, arch::phys(stack));
    }
    let mut waited = 0u64;
    while ONLINE.load(Ordering::SeqCst) < workers() && waited < 1 << 28 {
        waited += 1;
        core::hint::spin_loop();
    }
    report(
        "the other CPUs come up on the kernel's tables",
        ONLINE.load(Ordering::SeqCst) == workers(),
    );
    if arch::HW_ACCESS_STATE {
        marks();
    }
    protect();
    split();
    PHASE.store(PARKED, Ordering::SeqCst);
    ACTIVE.store(false, Ordering::SeqCst);
}

/// Reads a page's contents (every CPU's slot) where the kernel reaches physical memory.
fn contents(page: u64) -> [u64; MAX_CPUS] {
    let pa = page_pa(page);
    // SAFETY: a data page of the kernel's.
    core::array::from_fn(|cpu| unsafe {
        core::ptr::read_volatile(arch::phys(pa + 8 * cpu as u64) as *const u64)
    })
}

static MARK_FRAMES: AtomicU64 = AtomicU64::new(0);

fn page_pa(page: u64) -> u64 {
    MARK_FRAMES.load(Ordering::SeqCst) + page * 0x1000
}

fn marks() {
    {
        let mut k = KERNEL.lock();
        let pt = k.as_mut().expect("the kernel's table");
        let first = frames::data_page();
        for _ in 1..PAGES {
            frames::data_page();
        }
        MARK_FRAMES.store(first, Ordering::SeqCst);
        let flush = pt
            .map_region(
                va(MARKS_VA),
                PhysAddr::from(first as usize),
                (PAGES * 0x1000) as usize,
                RW,
                pagetable::HugePages::Never,
            )
            .expect("map the pages");
        flush_everywhere(pt, flush);
    }
    let sample = |page: u64| -> bool {
        let mut k = KERNEL.lock();
        let pt = k.as_mut().expect("the kernel's table");
        let clear = AccessState {
            accessed: false,
            dirty: true,
        };
        let (state, flush) = pt
            .clear_access_state(va(MARKS_VA + page * 0x1000), clear)
            .expect("clear");
        flush_everywhere(pt, flush);
        state.dirty
    };
    for page in 0..PAGES {
        sample(page);
    }
    let mut backup = [[0u64; MAX_CPUS]; PAGES as usize];
    let (mut dirty_reports, mut lost, mut bogus, mut samples) = (0u64, 0u64, 0u64, 0u64);
    PHASE.store(MARKS, Ordering::SeqCst);
    for round in 1..=ROUNDS {
        for page in 0..PAGES {
            // Most pages to a worker, some to none.
            let owner = (page * 7 + round * 3) % (workers() + 2);
            OWNER[page as usize].store(if owner > workers() { 0 } else { owner }, Ordering::SeqCst);
        }
        DONE.store(0, Ordering::SeqCst);
        ROUND.store(round, Ordering::SeqCst);
        let mut dirty = [false; PAGES as usize];
        let mut last = false;
        loop {
            for page in 0..PAGES {
                samples += 1;
                if sample(page) {
                    dirty[page as usize] = true;
                    dirty_reports += 1;
                    backup[page as usize] = contents(page);
                }
            }
            if last {
                break;
            }
            last = DONE.load(Ordering::SeqCst) == workers();
        }
        for page in 0..PAGES {
            let owned = OWNER[page as usize].load(Ordering::SeqCst) != 0;
            lost += u64::from(
                contents(page) != backup[page as usize] || owned && !dirty[page as usize],
            );
            bogus += u64::from(!owned && dirty[page as usize]);
        }
    }
    let stores = STORES.load(Ordering::SeqCst);
    let _ = writeln!(
        Console,
        "guest: info marks: {} CPUs stored {stores} times to {PAGES} pages over {ROUNDS} rounds; \
         {samples} samples, {dirty_reports} dirty reports, {lost} lost, {bogus} without a store \
         (expected {} stores)",
        workers(),
        REPS * owned_pages()
    );
    report(
        "no dirty mark is lost under stores on the other CPUs: every page's contents are what \
         the write-back after its last dirty report saw",
        lost == 0 && bogus == 0 && stores == REPS * owned_pages(),
    );
}

/// Pages a worker owned, over all rounds (as `marks` assigns them).
fn owned_pages() -> u64 {
    (1..=ROUNDS)
        .map(|round| {
            (0..PAGES)
                .filter(|page| (page * 7 + round * 3) % (workers() + 2) <= workers())
                .filter(|page| (page * 7 + round * 3) % (workers() + 2) != 0)
                .count() as u64
        })
        .sum()
}

fn protect() {
    {
        let mut k = KERNEL.lock();
        let pt = k.as_mut().expect("the kernel's table");
        for i in 0..PROTECT_PAGES {
            let flush = pt
                .map(
                    va(PROTECT_VA + i * 0x1000),
                    PhysAddr::from(frames::data_page() as usize),
                    PageSize::SIZE_4K,
                    RW,
                )
                .expect("map");
            flush_everywhere(pt, flush);
        }
    }
    DONE.store(0, Ordering::SeqCst);
    PHASE.store(PROTECT, Ordering::SeqCst);
    // Let the workers store for a while, then protect under them.
    wait_for(&PROTECT_STORES, 1000 * workers());
    {
        let mut k = KERNEL.lock();
        let pt = k.as_mut().expect("the kernel's table");
        let flush = pt
            .protect_region(va(PROTECT_VA), (PROTECT_PAGES * 0x1000) as usize, F::READ)
            .expect("protect");
        flush_everywhere(pt, flush);
    }
    PROTECTED.store(true, Ordering::SeqCst);
    wait_for(&DONE, workers());
    report(
        "protect_region under stores on the other CPUs: after the flush, no CPU's store goes through",
        LATE_STORES.load(Ordering::SeqCst) == 0,
    );
}

fn split() {
    let block = block();
    for page in 0..512 {
        // SAFETY: RAM of the kernel's, mapped one to one in a 2 MiB leaf, used by nothing else.
        unsafe { core::ptr::write_volatile(arch::phys(block + page * 0x1000) as *mut u64, page) };
    }
    DONE.store(0, Ordering::SeqCst);
    PHASE.store(SPLIT, Ordering::SeqCst);
    wait_for(&SPLIT_READS, 1000 * workers());
    let spurious = crate::SPURIOUS.load(Ordering::SeqCst);
    {
        let mut k = KERNEL.lock();
        let pt = k.as_mut().expect("the kernel's table");
        let flush = pt
            .protect_region(va(block + 0x3000), 0x1000, F::READ)
            .expect("split");
        flush_everywhere(pt, flush);
    }
    SPLIT_DONE.store(true, Ordering::SeqCst);
    wait_for(&DONE, workers());
    let _ = writeln!(
        Console,
        "guest: info split: {} reads on {} CPUs, {} wrong, {} faulted, {} faults retried as spurious",
        SPLIT_READS.load(Ordering::SeqCst),
        workers(),
        SPLIT_BAD.load(Ordering::SeqCst),
        SPLIT_FAULTED.load(Ordering::SeqCst),
        crate::SPURIOUS.load(Ordering::SeqCst) - spurious
    );
    report(
        "a block split live under reads on the other CPUs: every read saw its data",
        SPLIT_BAD.load(Ordering::SeqCst) == 0 && SPLIT_FAULTED.load(Ordering::SeqCst) == 0,
    );
    report(
        "after the split, the read-only page refuses a store on every CPU, its neighbour takes one",
        SPLIT_RO_STORES.load(Ordering::SeqCst) == 0
            && SPLIT_NEIGHBOUR_REFUSED.load(Ordering::SeqCst) == 0
            && !write(block + 0x3000 + 0x800, 1)
            && write(block + 0x2000 + 0x800, 1),
    );
}

/// A worker, once its architecture's entry has a stack and its trap entry.
pub fn worker(cpu: usize) -> ! {
    // SAFETY: the kernel's table maps this code, its stack and the devices where they are.
    unsafe { arch::mmu_on(ROOT.load(Ordering::SeqCst)) };
    arch::cpu_ready();
    ONLINE.fetch_add(1, Ordering::SeqCst);
    let me = cpu as u64;
    let mut round = 0;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ me;
    let mut random = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    loop {
        match PHASE.load(Ordering::SeqCst) {
            MARKS => {
                let now = ROUND.load(Ordering::SeqCst);
                if now == round {
                    continue;
                }
                round = now;
                let mut stores = 0;
                for rep in 0..REPS {
                    for page in 0..PAGES {
                        if OWNER[page as usize].load(Ordering::SeqCst) == me {
                            stores += u64::from(write(
                                MARKS_VA + page * 0x1000 + 8 * me,
                                round << 32 | rep,
                            ));
                        }
                    }
                }
                STORES.fetch_add(stores, Ordering::SeqCst);
                DONE.fetch_add(1, Ordering::SeqCst);
            }
            PROTECT if DONE.load(Ordering::SeqCst) < workers() => {
                if PROTECTED.load(Ordering::SeqCst) {
                    let late = (0..PROTECT_PAGES)
                        .filter(|i| write(PROTECT_VA + i * 0x1000 + 8 * me, 2))
                        .count();
                    LATE_STORES.fetch_add(late as u64, Ordering::SeqCst);
                    DONE.fetch_add(1, Ordering::SeqCst);
                    while PHASE.load(Ordering::SeqCst) == PROTECT {
                        core::hint::spin_loop();
                    }
                } else {
                    let page = random() % PROTECT_PAGES;
                    write(PROTECT_VA + page * 0x1000 + 8 * me, 1);
                    PROTECT_STORES.fetch_add(1, Ordering::SeqCst);
                }
            }
            SPLIT if DONE.load(Ordering::SeqCst) < workers() => {
                let block = block();
                if SPLIT_DONE.load(Ordering::SeqCst) {
                    SPLIT_RO_STORES.fetch_add(
                        u64::from(write(block + 0x3000 + 0x800 + 8 * me, 1)),
                        Ordering::SeqCst,
                    );
                    SPLIT_NEIGHBOUR_REFUSED.fetch_add(
                        u64::from(!write(block + 0x4000 + 0x800 + 8 * me, 1)),
                        Ordering::SeqCst,
                    );
                    DONE.fetch_add(1, Ordering::SeqCst);
                    while PHASE.load(Ordering::SeqCst) == SPLIT {
                        core::hint::spin_loop();
                    }
                } else {
                    let page = random() % 512;
                    match read(block + page * 0x1000) {
                        Some(value) if value == page => {}
                        Some(_) => _ = SPLIT_BAD.fetch_add(1, Ordering::SeqCst),
                        None => _ = SPLIT_FAULTED.fetch_add(1, Ordering::SeqCst),
                    }
                    SPLIT_READS.fetch_add(1, Ordering::SeqCst);
                }
            }
            PARKED => arch::park(),
            _ => core::hint::spin_loop(),
        }
    }
}
