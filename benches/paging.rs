//! `pagetable` against its peers, side by side in one process, on the same workloads and the
//! same frame pool (a pre-allocated buffer handing out 4 KiB frames in O(1); every crate zeroes
//! its own new tables). Our x86_64 mode runs against page_table_multiarch's x86_64 tables, the
//! x86_64 crate's `OffsetPageTable` and a hand-written loop; our AArch64 mode against
//! aarch64-paging. Every base address, count and flag goes through `black_box`.
//!
//! `cargo bench` runs it all; `scripts/bench-quick` is the short mode; `scripts/icount` counts
//! the instructions of each routine under valgrind (see `support/driver.rs`).

use std::cell::UnsafeCell;
use std::hint::black_box;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

#[path = "support/driver.rs"]
mod driver;
mod replay;
use driver::{Bencher, Group};

const FRAME: usize = 4096;
const POOL_FRAMES: usize = 12 * 1024;
/// Low, so that `virtual - physical` stays positive wherever the pool lands (valgrind maps it low).
const BASE_PA: usize = 0x20_0000;
const GIB: usize = 1 << 30;
const PAGES: usize = GIB / FRAME;
/// Where the workloads map: 256 GiB, to 8 GiB. Both 1 GiB-aligned.
const VA: usize = 0x40_0000_0000;
const PA: usize = 0x2_0000_0000;

/// The frame pool every crate allocates from.
struct Pool {
    mem: *mut u8,
    next: usize,
    free: Vec<u32>,
    /// Freed blocks of more than one frame, by frames per block: their first frame index.
    blocks: Vec<(usize, Vec<usize>)>,
}

struct PoolCell(UnsafeCell<Option<Pool>>);
// SAFETY: the benchmark runs on one thread.
unsafe impl Sync for PoolCell {}
static POOL: PoolCell = PoolCell(UnsafeCell::new(None));

/// `virtual - physical` for every pool frame, set once when the pool is made: a kernel's linear
/// map. Every crate's phys-to-virt hook reads it with one load and one add (the x86_64 crate's
/// `OffsetPageTable` holds the same offset itself).
static POOL_OFFSET: AtomicUsize = AtomicUsize::new(0);

fn virt(pa: usize) -> *mut u8 {
    pa.wrapping_add(POOL_OFFSET.load(Ordering::Relaxed)) as *mut u8
}

fn pool() -> &'static mut Pool {
    // SAFETY: one thread; no reference to the pool outlives a call into it.
    unsafe { (*POOL.0.get()).get_or_insert_with(Pool::new) }
}

impl Pool {
    fn new() -> Self {
        let mem = Box::leak(vec![0u64; POOL_FRAMES * FRAME / 8].into_boxed_slice());
        POOL_OFFSET.store(
            (mem.as_mut_ptr() as usize).wrapping_sub(BASE_PA),
            Ordering::Relaxed,
        );
        Self {
            mem: mem.as_mut_ptr().cast(),
            next: 0,
            free: Vec::with_capacity(POOL_FRAMES),
            blocks: vec![],
        }
    }
    fn alloc(&mut self) -> usize {
        let index = match self.free.pop() {
            Some(i) => i as usize,
            None => {
                assert!(self.next < POOL_FRAMES, "frame pool exhausted");
                self.next += 1;
                self.next - 1
            }
        };
        BASE_PA + index * FRAME
    }
    /// A block of `frames` frames aligned to its size (a 64K-granule table, a concatenated
    /// stage 2 root), cut from the never-used end; the frames skipped to align it go on the
    /// free list.
    fn alloc_block(&mut self, frames: usize) -> usize {
        if let Some(start) = self.block_list(frames).pop() {
            return BASE_PA + start * FRAME;
        }
        let start = self.next.next_multiple_of(frames);
        assert!(start + frames <= POOL_FRAMES, "frame pool exhausted");
        for skipped in self.next..start {
            self.free.push(skipped as u32);
        }
        self.next = start + frames;
        BASE_PA + start * FRAME
    }
    /// Orders the free list so that the next frames handed out are the lowest, in ascending
    /// order: a tree built next gets the same tidy layout whatever ran before it. Workloads
    /// that read a tree built beforehand (query, protect, walk) call it before each build, so
    /// that no crate's tables land scattered by the frees of an earlier benchmark.
    fn tidy(&mut self) {
        self.free.sort_unstable_by(|a, b| b.cmp(a));
        for (_, list) in &mut self.blocks {
            list.sort_unstable_by(|a, b| b.cmp(a));
        }
    }
    fn block_list(&mut self, frames: usize) -> &mut Vec<usize> {
        let at = match self.blocks.iter().position(|(n, _)| *n == frames) {
            Some(at) => at,
            None => {
                self.blocks.push((frames, vec![]));
                self.blocks.len() - 1
            }
        };
        &mut self.blocks[at].1
    }
    fn free_block(&mut self, pa: usize, frames: usize) {
        self.block_list(frames).push((pa - BASE_PA) / FRAME);
    }
    fn free(&mut self, pa: usize) {
        self.free.push(((pa - BASE_PA) / FRAME) as u32);
    }
    fn phys(&self, ptr: *const u8) -> usize {
        ptr as usize - self.mem as usize + BASE_PA
    }
    fn in_use(&self) -> usize {
        let in_blocks: usize = self.blocks.iter().map(|(n, v)| n * v.len()).sum();
        self.next - self.free.len() - in_blocks
    }
}

/// Frees every frame of a 4-level x86 tree rooted at `root` (leaves are not frames of ours).
fn free_x86_tree(root: usize) {
    fn walk(pa: usize, level: u32) {
        if level > 1 {
            // SAFETY: a pool frame holding a table of this tree.
            let table = unsafe { &*virt(pa).cast::<[u64; 512]>() };
            for &e in table.iter() {
                // Present, and not a huge leaf (PS).
                if e & 1 != 0 && (level == 4 || e & 0x80 == 0) {
                    walk((e & 0x000f_ffff_ffff_f000) as usize, level - 1);
                }
            }
        }
        pool().free(pa);
    }
    walk(root, 4);
}

// ---- pagetable

struct OurFrames;

// SAFETY: pool frames are disjoint, never move, and are handed out once until freed.
unsafe impl pagetable::PagingHandler for OurFrames {
    fn alloc_table(&mut self, bytes: usize) -> Option<pagetable::PhysAddr> {
        let pa = if bytes == FRAME {
            pool().alloc()
        } else {
            pool().alloc_block(bytes / FRAME)
        };
        Some(pagetable::PhysAddr::from(pa))
    }
    unsafe fn free_table(&mut self, pa: pagetable::PhysAddr, bytes: usize) {
        if bytes == FRAME {
            pool().free(pa.as_usize());
        } else {
            pool().free_block(pa.as_usize(), bytes / FRAME);
        }
    }
    fn phys_to_virt(&self, pa: pagetable::PhysAddr) -> NonNull<u8> {
        // SAFETY: pool frames lie inside a live allocation, never at address 0.
        unsafe { NonNull::new_unchecked(virt(pa.as_usize())) }
    }
}

type Ours = pagetable::PageTable<pagetable::X86_64, OurFrames>;
/// The stage 2 mode benchmarked: AArch64, 40-bit IPA (a concatenated 8 KiB root).
type S2 = pagetable::AArch64S2<pagetable::Ipa40>;
/// The large-granule mode benchmarked: AArch64, 64 KiB granule, 48-bit VA.
type A64K = pagetable::AArch64<pagetable::Va48, pagetable::Lower, pagetable::Granule64K>;
const RW: pagetable::MappingFlags =
    pagetable::MappingFlags::READ.union(pagetable::MappingFlags::WRITE);

/// A new empty table of mode `A`, its frames from a tidy pool.
fn ours_new<A: pagetable::Arch>() -> pagetable::PageTable<A, OurFrames> {
    pool().tidy();
    pagetable::PageTable::new(OurFrames).unwrap()
}

fn ours_mapped<A: pagetable::Arch>(
    huge: pagetable::HugePages,
) -> pagetable::PageTable<A, OurFrames> {
    let mut pt = ours_new::<A>();
    pt.map_region(va(VA), pa(PA), GIB, RW, huge)
        .unwrap()
        .ignore();
    pt
}

/// Where a workload calls a crate once per page (one-at-a-time map, query), the call goes
/// through this, which is never inlined into the loop: each crate's per-page call is a real
/// call, alike for all, whatever each crate marks `#[inline]`. The hand-written loops stand for
/// the limit and are not wrapped.
#[inline(never)]
fn per_page<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// `x` as the input address the call wants (a `VirtAddr`, or a stage 2 `GuestPhysAddr`).
fn va<T: From<usize>>(x: usize) -> T {
    T::from(black_box(x))
}
fn pa(x: usize) -> pagetable::PhysAddr {
    pagetable::PhysAddr::from(black_box(x))
}

// ---- page_table_multiarch

struct PtmFrames;

impl page_table_multiarch::PagingHandler for PtmFrames {
    fn alloc_frames(num: usize, _align: usize) -> Option<memory_addr::PhysAddr> {
        assert_eq!(num, 1);
        Some(memory_addr::PhysAddr::from(pool().alloc()))
    }
    fn dealloc_frames(pa: memory_addr::PhysAddr, _num: usize) {
        pool().free(pa.as_usize());
    }
    fn phys_to_virt(pa: memory_addr::PhysAddr) -> memory_addr::VirtAddr {
        memory_addr::VirtAddr::from(virt(pa.as_usize()) as usize)
    }
}

type Ptm = page_table_multiarch::x86_64::X64PageTable<PtmFrames>;
const PTM_RW: page_table_multiarch::MappingFlags =
    page_table_multiarch::MappingFlags::READ.union(page_table_multiarch::MappingFlags::WRITE);

/// A new empty page_table_multiarch table, its frames from a tidy pool.
fn ptm_new() -> Ptm {
    pool().tidy();
    Ptm::try_new().unwrap()
}

fn ptm_mapped() -> Ptm {
    let mut pt = ptm_new();
    let (v, p) = (black_box(VA), black_box(PA));
    pt.cursor()
        .map_region(
            v.into(),
            |x: memory_addr::VirtAddr| (x.as_usize() - v + p).into(),
            GIB,
            PTM_RW,
            false,
        )
        .unwrap();
    pt
}

// ---- the x86_64 crate

mod x86 {
    use super::*;
    pub use x86_64::structures::paging::{
        FrameAllocator, FrameDeallocator, Mapper, OffsetPageTable, Page, PageTable, PageTableFlags,
        PhysFrame, Size4KiB, Translate,
    };
    pub use x86_64::{PhysAddr, VirtAddr};

    pub struct Frames;
    // SAFETY: pool frames are unused until handed out.
    unsafe impl FrameAllocator<Size4KiB> for Frames {
        fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
            Some(PhysFrame::containing_address(PhysAddr::new(
                pool().alloc() as u64
            )))
        }
    }
    impl FrameDeallocator<Size4KiB> for Frames {
        unsafe fn deallocate_frame(&mut self, frame: PhysFrame<Size4KiB>) {
            pool().free(frame.start_address().as_u64() as usize);
        }
    }

    /// A table; dropping it gives its frames back.
    pub struct Table {
        pub mapper: OffsetPageTable<'static>,
        pub root: usize,
    }

    impl Drop for Table {
        fn drop(&mut self) {
            free_x86_tree(self.root);
        }
    }

    pub fn new() -> Table {
        pool().tidy();
        new_untidy()
    }

    /// A new table, the pool as it is.
    pub fn new_untidy() -> Table {
        let root = pool().alloc();
        let ptr = virt(root).cast::<PageTable>();
        // SAFETY: a fresh pool frame, all ours.
        let table = unsafe {
            ptr.write(PageTable::new());
            &mut *ptr
        };
        let phys_offset = VirtAddr::new((pool().mem as u64).wrapping_sub(BASE_PA as u64));
        // SAFETY: every frame of the pool is reached at `mem + (pa - BASE_PA)`.
        Table {
            mapper: unsafe { OffsetPageTable::new(table, phys_offset) },
            root,
        }
    }

    pub const RW: PageTableFlags = PageTableFlags::PRESENT.union(PageTableFlags::WRITABLE);

    pub fn map_all(t: &mut Table) {
        for i in 0..black_box(PAGES) {
            let page = Page::<Size4KiB>::containing_address(VirtAddr::new(
                (black_box(VA) + i * FRAME) as u64,
            ));
            let frame =
                PhysFrame::containing_address(PhysAddr::new((black_box(PA) + i * FRAME) as u64));
            // SAFETY: the mapping points at memory nobody touches.
            per_page(|| unsafe { t.mapper.map_to(page, frame, black_box(RW), &mut Frames) })
                .unwrap()
                .ignore();
        }
    }
}

// ---- aarch64-paging

mod arm {
    use super::*;
    pub use aarch64_paging::Mapping;
    pub use aarch64_paging::descriptor::El1Attributes as Attr;
    pub use aarch64_paging::descriptor::PhysicalAddress;
    pub use aarch64_paging::paging::El1And0;
    pub use aarch64_paging::paging::{Constraints, MemoryRegion, PageTable, Translation, VaRange};

    pub struct Frames;
    impl Translation<Attr> for Frames {
        fn allocate_table(&mut self) -> (NonNull<PageTable<Attr>>, PhysicalAddress) {
            let pa = pool().alloc();
            let ptr = virt(pa);
            // SAFETY: a fresh pool frame; the trait wants it zeroed.
            unsafe { ptr.write_bytes(0, FRAME) };
            (NonNull::new(ptr.cast()).unwrap(), PhysicalAddress(pa))
        }
        unsafe fn deallocate_table(&mut self, table: NonNull<PageTable<Attr>>) {
            pool().free(pool().phys(table.as_ptr().cast()));
        }
        fn physical_to_virtual(&self, pa: PhysicalAddress) -> NonNull<PageTable<Attr>> {
            // SAFETY: pool frames lie inside a live allocation, never at address 0.
            unsafe { NonNull::new_unchecked(virt(pa.0).cast()) }
        }
    }

    pub type Table = Mapping<Frames, El1And0>;
    pub const RW: Attr = Attr::VALID
        .union(Attr::ATTRIBUTE_INDEX_0)
        .union(Attr::INNER_SHAREABLE)
        .union(Attr::ACCESSED)
        .union(Attr::NON_GLOBAL);

    pub fn new() -> Table {
        pool().tidy();
        new_untidy()
    }

    /// A new table, the pool as it is.
    pub fn new_untidy() -> Table {
        Mapping::with_asid_and_va_range(Frames, 1, 0, El1And0, VaRange::Lower)
    }

    pub fn region(start: usize, len: usize) -> MemoryRegion {
        MemoryRegion::new(black_box(start), black_box(start + len))
    }

    pub fn mapped(constraints: Constraints) -> Table {
        let mut t = new();
        t.map_range(
            &region(VA, GIB),
            PhysicalAddress(black_box(PA)),
            RW,
            constraints,
        )
        .unwrap();
        t
    }
}

// ---- the hand-written limit: one arch, no API, straight loops over a 4-level x86 tree.

mod hand {
    use super::*;

    const P_RW: u64 = 0b11;

    fn table(pa: usize) -> &'static mut [u64; 512] {
        // SAFETY: `pa` is a pool frame the caller owns.
        unsafe { &mut *virt(pa).cast::<[u64; 512]>() }
    }

    fn fresh() -> usize {
        let pa = pool().alloc();
        table(pa).fill(0);
        pa
    }

    /// Root, PDPT, PD: the tree above the 512 PTs of one GiB at `VA`. Dropping it frees it.
    pub struct Tree {
        pub root: usize,
        pub pd: usize,
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            free_x86_tree(self.root);
        }
    }

    /// Maps 1 GiB of 4K pages: 512 PTs written entry by entry, linked into a new PD.
    pub fn map_gib(va: usize, pa: usize) -> Tree {
        let root = fresh();
        let pdpt = fresh();
        let pd = fresh();
        table(root)[(va >> 39) & 511] = pdpt as u64 | P_RW;
        table(pdpt)[(va >> 30) & 511] = pd as u64 | P_RW;
        let mut frame = pa as u64 | P_RW;
        for slot in table(pd).iter_mut() {
            let pt = pool().alloc();
            for e in table(pt).iter_mut() {
                *e = frame;
                frame += FRAME as u64;
            }
            *slot = pt as u64 | P_RW;
        }
        Tree { root, pd }
    }

    pub fn query(t: &Tree, va: usize) -> u64 {
        let mut entry = t.root as u64;
        for shift in [39, 30, 21, 12] {
            entry = table((entry & 0x000f_ffff_ffff_f000) as usize)[(va >> shift) & 511];
        }
        (entry & 0x000f_ffff_ffff_f000) | (va as u64 & 0xfff)
    }

    pub fn protect(t: &Tree, clear: u64) {
        for &pt in table(t.pd).iter() {
            for e in table((pt & !0xfff) as usize).iter_mut() {
                *e &= !clear;
            }
        }
    }

    pub fn walk(t: &Tree) -> u64 {
        let mut sum = 0;
        for &pt in table(t.pd).iter() {
            for &e in table((pt & !0xfff) as usize).iter() {
                sum += e & 1;
            }
        }
        sum
    }

    /// The sum of the addresses of every present 4K page of the GiB at `va`.
    pub fn walk_addresses(t: &Tree, va: usize) -> u64 {
        let mut sum = 0u64;
        for (i, &pt) in table(t.pd).iter().enumerate() {
            for (j, &e) in table((pt & !0xfff) as usize).iter().enumerate() {
                if e & 1 != 0 {
                    sum = sum.wrapping_add((va + (i << 21) + (j << 12)) as u64);
                }
            }
        }
        sum
    }

    /// Maps 1 GiB of 4K pages at `va` onto `frames` (one per page): the same loops, each entry
    /// from the list.
    pub fn map_gib_frames(va: usize, frames: &[usize]) -> Tree {
        let root = fresh();
        let pdpt = fresh();
        let pd = fresh();
        table(root)[(va >> 39) & 511] = pdpt as u64 | P_RW;
        table(pdpt)[(va >> 30) & 511] = pd as u64 | P_RW;
        for (slot, chunk) in table(pd).iter_mut().zip(frames.chunks_exact(512)) {
            let pt = pool().alloc();
            for (e, &f) in table(pt).iter_mut().zip(chunk) {
                *e = f as u64 | P_RW;
            }
            *slot = pt as u64 | P_RW;
        }
        Tree { root, pd }
    }

    /// Unmaps the GiB: every PT freed without a look inside, then the PD.
    pub fn unmap(t: &Tree) {
        for slot in table(t.pd).iter_mut() {
            pool().free((*slot & !0xfff) as usize);
            *slot = 0;
        }
    }
}

/// Random page-aligned addresses in the mapped GiB (a fixed LCG: the same list every run).
fn random_vas(n: usize) -> Vec<usize> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            VA + ((x >> 20) as usize % PAGES) * FRAME + 0x123
        })
        .collect()
}

fn map_one_by_one(c: &mut Criterion) {
    let mut g = Group::new(c, "map_4k_one_at_a_time");
    g.sample_size(10);
    g.throughput(Throughput::Elements(PAGES as u64));
    g.bench_function("pagetable", |b| {
        b.iter_batched(
            ours_new::<pagetable::X86_64>,
            |mut pt| {
                // A cursor, as page_table_multiarch's run below uses its own.
                let mut c = pt.cursor();
                for i in 0..black_box(PAGES) {
                    let (v, p) = (va(VA + i * FRAME), pa(PA + i * FRAME));
                    per_page(|| c.map(v, p, pagetable::PageSize::SIZE_4K, black_box(RW)))
                        .unwrap()
                        .ignore();
                }
                pt
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("pagetable_plain", |b| {
        b.iter_batched(
            ours_new::<pagetable::X86_64>,
            |mut pt| {
                // `PageTable::map` itself, a walk from the root for every page.
                for i in 0..black_box(PAGES) {
                    let (v, p) = (va(VA + i * FRAME), pa(PA + i * FRAME));
                    per_page(|| pt.map(v, p, pagetable::PageSize::SIZE_4K, black_box(RW)))
                        .unwrap()
                        .ignore();
                }
                pt
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("page_table_multiarch", |b| {
        b.iter_batched(
            ptm_new,
            |mut pt| {
                {
                    let mut c = pt.cursor();
                    for i in 0..black_box(PAGES) {
                        let v = memory_addr::VirtAddr::from(black_box(VA) + i * FRAME);
                        let p = memory_addr::PhysAddr::from(black_box(PA) + i * FRAME);
                        per_page(|| {
                            c.map(
                                v,
                                p,
                                page_table_multiarch::PageSize::Size4K,
                                black_box(PTM_RW),
                            )
                        })
                        .unwrap();
                    }
                }
                pt
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("x86_64", |b| {
        b.iter_batched(
            x86::new,
            |mut t| {
                x86::map_all(&mut t);
                t
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

/// `map_region` of `len` at `VA` into a new table of mode `A`.
fn ours_map_region<A: pagetable::Arch>(b: &mut Bencher<'_, '_>, len: usize, huge: bool) {
    let h = if huge {
        pagetable::HugePages::Allowed
    } else {
        pagetable::HugePages::Never
    };
    b.iter_batched(
        ours_new::<A>,
        |mut pt| {
            pt.map_region(va(VA), pa(PA), black_box(len), black_box(RW), h)
                .unwrap()
                .ignore();
            pt
        },
        BatchSize::PerIteration,
    )
}

fn map_region(c: &mut Criterion) {
    for (name, huge, len) in [
        ("map_region_4k_1g", false, GIB),
        ("map_region_huge_1g", true, GIB),
        ("map_region_huge_64g", true, 64 * GIB),
    ] {
        let mut g = Group::new(c, name);
        g.sample_size(10);
        g.throughput(Throughput::Elements((len / FRAME) as u64));
        g.bench_function("pagetable", |b| {
            ours_map_region::<pagetable::X86_64>(b, len, huge)
        });
        g.bench_function("pagetable_aarch64_s2", |b| {
            ours_map_region::<S2>(b, len, huge)
        });
        g.bench_function("pagetable_aarch64_64k", |b| {
            ours_map_region::<A64K>(b, len, huge)
        });
        g.bench_function("pagetable_aarch64", |b| {
            ours_map_region::<pagetable::AArch64>(b, len, huge)
        });
        g.bench_function("page_table_multiarch", |b| {
            b.iter_batched(
                ptm_new,
                |mut pt| {
                    let (v, p) = (black_box(VA), black_box(PA));
                    pt.cursor()
                        .map_region(
                            v.into(),
                            |x: memory_addr::VirtAddr| (x.as_usize() - v + p).into(),
                            black_box(len),
                            PTM_RW,
                            huge,
                        )
                        .unwrap();
                    pt
                },
                BatchSize::PerIteration,
            )
        });
        g.bench_function("aarch64_paging", |b| {
            let constraints = if huge {
                arm::Constraints::empty()
            } else {
                arm::Constraints::NO_BLOCK_MAPPINGS
            };
            b.iter_batched(
                arm::new,
                |mut t| {
                    t.map_range(
                        &arm::region(VA, len),
                        arm::PhysicalAddress(black_box(PA)),
                        arm::RW,
                        constraints,
                    )
                    .unwrap();
                    t
                },
                BatchSize::PerIteration,
            )
        });
        if !huge {
            g.bench_function("hand_written", |b| {
                b.iter_batched(
                    || pool().tidy(),
                    |()| hand::map_gib(black_box(VA), black_box(PA)),
                    BatchSize::PerIteration,
                )
            });
        }
        g.finish();
    }
}

/// One frame per page of the mapped GiB, scattered: page `k` gets frame `k * 7919 mod PAGES`
/// from `PA` (7919 is prime, so this is a permutation).
fn scattered_frames() -> Vec<usize> {
    (0..PAGES)
        .map(|k| PA + (k * 7919 % PAGES) * FRAME)
        .collect()
}

fn ours_map_frames<A: pagetable::Arch>(b: &mut Bencher<'_, '_>, frames: &[pagetable::PhysAddr]) {
    b.iter_batched(
        ours_new::<A>,
        |mut pt| {
            pt.map_frames(va(VA), black_box(frames), black_box(RW))
                .unwrap()
                .ignore();
            pt
        },
        BatchSize::PerIteration,
    )
}

/// 1 GiB of 4K pages onto scattered frames: each crate as its docs advise for a list of frames.
fn map_scattered(c: &mut Criterion) {
    let frames = scattered_frames();
    let ours: Vec<pagetable::PhysAddr> = frames
        .iter()
        .map(|&f| pagetable::PhysAddr::from(f))
        .collect();
    let mut g = Group::new(c, "map_scattered_4k_1g");
    g.sample_size(10);
    g.throughput(Throughput::Elements(PAGES as u64));
    g.bench_function("pagetable", |b| {
        ours_map_frames::<pagetable::X86_64>(b, &ours)
    });
    g.bench_function("pagetable_aarch64", |b| {
        ours_map_frames::<pagetable::AArch64>(b, &ours)
    });
    g.bench_function("page_table_multiarch", |b| {
        // `map_region` with a `get_paddr` closure that looks the frame up.
        b.iter_batched(
            ptm_new,
            |mut pt| {
                let (v, list) = (black_box(VA), black_box(&frames));
                pt.cursor()
                    .map_region(
                        v.into(),
                        |x: memory_addr::VirtAddr| list[(x.as_usize() - v) / FRAME].into(),
                        GIB,
                        PTM_RW,
                        false,
                    )
                    .unwrap();
                pt
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("x86_64", |b| {
        // `map_to` per page, its only way.
        b.iter_batched(
            x86::new,
            |mut t| {
                for (i, &f) in black_box(&frames).iter().enumerate() {
                    let page = x86::Page::<x86::Size4KiB>::containing_address(x86::VirtAddr::new(
                        (VA + i * FRAME) as u64,
                    ));
                    let frame = x86::PhysFrame::containing_address(x86::PhysAddr::new(f as u64));
                    // SAFETY: the mapping points at memory nobody touches.
                    per_page(|| unsafe {
                        x86::Mapper::map_to(
                            &mut t.mapper,
                            page,
                            frame,
                            black_box(x86::RW),
                            &mut x86::Frames,
                        )
                    })
                    .unwrap()
                    .ignore();
                }
                t
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("aarch64_paging", |b| {
        // `map_range` per page: a range maps one contiguous run of physical memory.
        b.iter_batched(
            arm::new,
            |mut t| {
                for (i, &f) in black_box(&frames).iter().enumerate() {
                    per_page(|| {
                        t.map_range(
                            &arm::region(VA + i * FRAME, FRAME),
                            arm::PhysicalAddress(f),
                            arm::RW,
                            arm::Constraints::NO_BLOCK_MAPPINGS,
                        )
                    })
                    .unwrap();
                }
                t
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("hand_written", |b| {
        b.iter_batched(
            || pool().tidy(),
            |()| hand::map_gib_frames(black_box(VA), black_box(&frames)),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

/// Half of the GiB mapped: runs of 16 pages (64 KiB) mapped, 16 not, alternating.
const RUN: usize = 16 * FRAME;

fn half_mapped_runs() -> impl Iterator<Item = usize> {
    (0..GIB / RUN).step_by(2).map(|r| r * RUN)
}

fn ours_unmap_half<A: pagetable::Arch>(b: &mut Bencher<'_, '_>) {
    b.iter_batched(
        || {
            let mut pt = ours_new::<A>();
            for r in half_mapped_runs() {
                let h = pagetable::HugePages::Never;
                pt.map_region(va(VA + r), pa(PA + r), RUN, RW, h)
                    .unwrap()
                    .ignore();
            }
            pt
        },
        |mut pt| {
            // Holes are skipped.
            pt.unmap_region(va(VA), black_box(GIB)).unwrap().ignore();
            pt
        },
        BatchSize::PerIteration,
    )
}

/// `munmap` of a half-mapped GiB: each crate skipping holes as its docs and users do.
fn unmap_half_mapped(c: &mut Criterion) {
    let runs = half_mapped_runs;
    let mut g = Group::new(c, "unmap_half_mapped_1g");
    g.sample_size(10);
    g.throughput(Throughput::Elements(PAGES as u64));
    g.bench_function("pagetable", ours_unmap_half::<pagetable::X86_64>);
    g.bench_function("pagetable_aarch64", ours_unmap_half::<pagetable::AArch64>);
    g.bench_function("page_table_multiarch", |b| {
        // `unmap_region` stops at the first hole: page by page, a hole's error skipped (as
        // ArceOS's `axmm` unmaps a lazily populated area).
        b.iter_batched(
            || {
                let mut pt = ptm_new();
                for r in runs() {
                    let (v, p) = (VA + r, PA + r);
                    pt.cursor()
                        .map_region(
                            v.into(),
                            |x: memory_addr::VirtAddr| (x.as_usize() - v + p).into(),
                            RUN,
                            PTM_RW,
                            false,
                        )
                        .unwrap();
                }
                pt
            },
            |mut pt| {
                let mut cursor = pt.cursor();
                for i in 0..black_box(PAGES) {
                    let _ = per_page(|| cursor.unmap((VA + i * FRAME).into()));
                }
                drop(cursor);
                pt
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("x86_64", |b| {
        b.iter_batched(
            || {
                let mut t = x86::new();
                for r in runs() {
                    for i in 0..RUN / FRAME {
                        let page = x86::Page::<x86::Size4KiB>::containing_address(
                            x86::VirtAddr::new((VA + r + i * FRAME) as u64),
                        );
                        let frame = x86::PhysFrame::containing_address(x86::PhysAddr::new(
                            (PA + r + i * FRAME) as u64,
                        ));
                        // SAFETY: the mapping points at memory nobody touches.
                        unsafe {
                            x86::Mapper::map_to(
                                &mut t.mapper,
                                page,
                                frame,
                                x86::RW,
                                &mut x86::Frames,
                            )
                        }
                        .unwrap()
                        .ignore();
                    }
                }
                t
            },
            |mut t| {
                // `unmap` per page, a hole's `PageNotMapped` skipped.
                for i in 0..black_box(PAGES) {
                    let page = x86::Page::<x86::Size4KiB>::containing_address(x86::VirtAddr::new(
                        (VA + i * FRAME) as u64,
                    ));
                    if let Ok((_, flush)) = per_page(|| x86::Mapper::unmap(&mut t.mapper, page)) {
                        flush.ignore();
                    }
                }
                t
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("aarch64_paging", |b| {
        b.iter_batched(
            || {
                let mut t = arm::new();
                for r in runs() {
                    t.map_range(
                        &arm::region(VA + r, RUN),
                        arm::PhysicalAddress(PA + r),
                        arm::RW,
                        arm::Constraints::NO_BLOCK_MAPPINGS,
                    )
                    .unwrap();
                }
                t
            },
            |mut t| {
                // aarch64-paging's unmap: invalid descriptors over the range, holes and all,
                // then the emptied tables freed.
                t.map_range(
                    &arm::region(VA, GIB),
                    arm::PhysicalAddress(0),
                    arm::Attr::empty(),
                    arm::Constraints::NO_BLOCK_MAPPINGS,
                )
                .unwrap();
                t.compact_subtables();
                t
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn query(c: &mut Criterion) {
    use x86::Translate;
    let vas = random_vas(4096);
    let mut g = Group::new(c, "query_random_warm");
    g.sample_size(10);
    g.throughput(Throughput::Elements(vas.len() as u64));
    let ours = ours_mapped::<pagetable::X86_64>(pagetable::HugePages::Never);
    g.bench_function("pagetable", |b| {
        b.iter(|| {
            let mut sum = 0;
            for &v in black_box(&vas) {
                sum += per_page(|| ours.query(pagetable::VirtAddr::from(v)))
                    .unwrap()
                    .pa
                    .as_usize();
            }
            sum
        })
    });
    g.bench_function("pagetable_translate", |b| {
        b.iter(|| {
            let mut sum = 0;
            for &v in black_box(&vas) {
                sum += per_page(|| ours.translate(pagetable::VirtAddr::from(v)))
                    .unwrap()
                    .0
                    .as_usize();
            }
            sum
        })
    });
    let ptm = ptm_mapped();
    g.bench_function("page_table_multiarch", |b| {
        b.iter(|| {
            let mut sum = 0;
            for &v in black_box(&vas) {
                sum += per_page(|| ptm.query(memory_addr::VirtAddr::from(v)))
                    .unwrap()
                    .0
                    .as_usize();
            }
            sum
        })
    });
    let mut x = x86::new();
    x86::map_all(&mut x);
    g.bench_function("x86_64", |b| {
        b.iter(|| {
            let mut sum = 0;
            for &v in black_box(&vas) {
                sum += per_page(|| x.mapper.translate_addr(x86::VirtAddr::new(v as u64)))
                    .unwrap()
                    .as_u64();
            }
            sum
        })
    });
    pool().tidy();
    let tree = hand::map_gib(VA, PA);
    g.bench_function("hand_written", |b| {
        b.iter(|| {
            let mut sum = 0;
            for &v in black_box(&vas) {
                sum += hand::query(&tree, v);
            }
            sum
        })
    });
    g.finish();
}

/// `unmap_region` of the whole GiB of 4K pages, in a table of mode `A` mapped beforehand.
fn ours_unmap_region<A: pagetable::Arch>(b: &mut Bencher<'_, '_>) {
    b.iter_batched(
        || ours_mapped::<A>(pagetable::HugePages::Never),
        |mut pt| {
            pt.unmap_region(va(VA), black_box(GIB)).unwrap().ignore();
            pt
        },
        BatchSize::PerIteration,
    )
}

fn unmap_region(c: &mut Criterion) {
    let mut g = Group::new(c, "unmap_region_4k_1g");
    g.sample_size(10);
    // Each iteration needs a 1 GiB map as (untimed) setup, and the timed part takes microseconds:
    // keep criterion from asking for hundreds of thousands of them.
    g.timing(|g| {
        g.warm_up_time(std::time::Duration::from_millis(20));
        g.measurement_time(std::time::Duration::from_millis(200));
        g.sampling_mode(criterion::SamplingMode::Flat);
    });
    g.throughput(Throughput::Elements(PAGES as u64));
    g.bench_function("pagetable", ours_unmap_region::<pagetable::X86_64>);
    g.bench_function("pagetable_aarch64", |b| {
        ours_unmap_region::<pagetable::AArch64>(b)
    });
    g.bench_function("pagetable_aarch64_s2", ours_unmap_region::<S2>);
    g.bench_function("pagetable_aarch64_64k", ours_unmap_region::<A64K>);
    g.bench_function("page_table_multiarch", |b| {
        b.iter_batched(
            ptm_mapped,
            |mut pt| {
                pt.cursor()
                    .unmap_region(black_box(VA).into(), black_box(GIB))
                    .unwrap();
                pt
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("aarch64_paging", |b| {
        b.iter_batched(
            || arm::mapped(arm::Constraints::NO_BLOCK_MAPPINGS),
            |mut t| {
                // aarch64-paging's unmap: invalid descriptors, then free the emptied tables.
                t.map_range(
                    &arm::region(VA, GIB),
                    arm::PhysicalAddress(0),
                    arm::Attr::empty(),
                    arm::Constraints::NO_BLOCK_MAPPINGS,
                )
                .unwrap();
                t.compact_subtables();
                t
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("hand_written", |b| {
        b.iter_batched(
            || {
                pool().tidy();
                hand::map_gib(VA, PA)
            },
            |t| {
                hand::unmap(&t);
                t
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

/// Our `protect_region` over the mapped GiB, alternating read-only and read-write; `n` counts
/// the calls of the whole group, so every crate flips the same way.
fn ours_protect_region<A: pagetable::Arch>(
    b: &mut Bencher<'_, '_>,
    pt: &mut pagetable::PageTable<A, OurFrames>,
    n: &mut usize,
) {
    let flip = [pagetable::MappingFlags::READ, RW];
    b.iter(|| {
        *n += 1;
        pt.protect_region(va(VA), black_box(GIB), black_box(flip[*n & 1]))
            .unwrap()
            .ignore();
    })
}

fn protect_region(c: &mut Criterion) {
    let mut g = Group::new(c, "protect_region_4k_1g");
    g.sample_size(10);
    g.throughput(Throughput::Elements(PAGES as u64));
    let mut ours = ours_mapped::<pagetable::X86_64>(pagetable::HugePages::Never);
    let mut n = 0;
    g.bench_function("pagetable", |b| ours_protect_region(b, &mut ours, &mut n));
    drop(ours);
    let mut a64 = ours_mapped::<pagetable::AArch64>(pagetable::HugePages::Never);
    g.bench_function("pagetable_aarch64", |b| {
        ours_protect_region(b, &mut a64, &mut n)
    });
    drop(a64);
    let mut s2 = ours_mapped::<S2>(pagetable::HugePages::Never);
    g.bench_function("pagetable_aarch64_s2", |b| {
        ours_protect_region(b, &mut s2, &mut n)
    });
    drop(s2);
    let mut a64k = ours_mapped::<A64K>(pagetable::HugePages::Never);
    g.bench_function("pagetable_aarch64_64k", |b| {
        ours_protect_region(b, &mut a64k, &mut n)
    });
    drop(a64k);
    let mut ptm = ptm_mapped();
    let ptm_flip = [page_table_multiarch::MappingFlags::READ, PTM_RW];
    g.bench_function("page_table_multiarch", |b| {
        b.iter(|| {
            n += 1;
            ptm.cursor()
                .protect_region(
                    black_box(VA).into(),
                    black_box(GIB),
                    black_box(ptm_flip[n & 1]),
                )
                .unwrap();
        })
    });
    let mut arm_t = arm::mapped(arm::Constraints::NO_BLOCK_MAPPINGS);
    g.bench_function("aarch64_paging", |b| {
        b.iter(|| {
            n += 1;
            let ro = n & 1 == 1;
            arm_t
                .modify_range(&arm::region(VA, GIB), &|_, d| {
                    let (set, clear) = if ro {
                        (arm::Attr::READ_ONLY, arm::Attr::empty())
                    } else {
                        (arm::Attr::empty(), arm::Attr::READ_ONLY)
                    };
                    d.modify_flags(set, clear)
                })
                .unwrap();
        })
    });
    pool().tidy();
    let tree = hand::map_gib(VA, PA);
    g.bench_function("hand_written", |b| {
        b.iter(|| {
            n += 1;
            hand::protect(&tree, black_box((n & 1) as u64) << 1);
        })
    });
    g.finish();
}

fn walk(c: &mut Criterion) {
    let mut g = Group::new(c, "walk_1g_of_4k");
    g.sample_size(10);
    g.throughput(Throughput::Elements(PAGES as u64));
    let ours = ours_mapped::<pagetable::X86_64>(pagetable::HugePages::Never);
    g.bench_function("pagetable", |b| {
        b.iter(|| {
            let mut n = 0usize;
            ours.for_each_mapping_in(va(VA), black_box(GIB), |m| n += m.size.bytes() / FRAME)
                .unwrap();
            n
        })
    });
    let ptm = ptm_mapped();
    g.bench_function("page_table_multiarch", |b| {
        b.iter(|| {
            let n = std::cell::Cell::new(0usize);
            let f = |level: usize,
                     _i: usize,
                     _v: memory_addr::VirtAddr,
                     e: &page_table_entry::x86_64::X64PTE| {
                if level == 3 && page_table_entry::GenericPTE::is_present(e) {
                    n.set(n.get() + 1);
                }
            };
            ptm.walk(usize::MAX, Some(&f), None);
            n.get()
        })
    });
    let arm_t = arm::mapped(arm::Constraints::NO_BLOCK_MAPPINGS);
    g.bench_function("aarch64_paging", |b| {
        b.iter(|| {
            let mut n = 0usize;
            arm_t
                .walk_range(&arm::region(VA, GIB), &mut |_, d, level| {
                    if level == 3 && d.is_valid() {
                        n += 1;
                    }
                    Ok(())
                })
                .unwrap();
            n
        })
    });
    pool().tidy();
    let tree = hand::map_gib(VA, PA);
    g.bench_function("hand_written", |b| b.iter(|| hand::walk(black_box(&tree))));
    g.finish();
    // The same walks with a closure that reads each mapping's address (a kernel's fork or
    // `/proc/PID/pagemap`), which every crate works out for it.
    let mut g = Group::new(c, "walk_1g_of_4k_addresses");
    g.sample_size(10);
    g.throughput(Throughput::Elements(PAGES as u64));
    g.bench_function("pagetable", |b| {
        b.iter(|| {
            let mut sum = 0usize;
            ours.for_each_mapping_in(va(VA), black_box(GIB), |m| {
                sum = sum.wrapping_add(m.va.as_usize())
            })
            .unwrap();
            sum
        })
    });
    g.bench_function("page_table_multiarch", |b| {
        b.iter(|| {
            let sum = std::cell::Cell::new(0usize);
            let f = |level: usize,
                     _i: usize,
                     v: memory_addr::VirtAddr,
                     e: &page_table_entry::x86_64::X64PTE| {
                if level == 3 && page_table_entry::GenericPTE::is_present(e) {
                    sum.set(sum.get().wrapping_add(v.as_usize()));
                }
            };
            ptm.walk(usize::MAX, Some(&f), None);
            sum.get()
        })
    });
    g.bench_function("aarch64_paging", |b| {
        b.iter(|| {
            let mut sum = 0usize;
            arm_t
                .walk_range(&arm::region(VA, GIB), &mut |r, d, level| {
                    if level == 3 && d.is_valid() {
                        sum = sum.wrapping_add(r.start().0);
                    }
                    Ok(())
                })
                .unwrap();
            sum
        })
    });
    g.bench_function("hand_written", |b| {
        b.iter(|| hand::walk_addresses(black_box(&tree), VA))
    });
    g.finish();
}

/// One step of the mixed trace.
#[derive(Clone, Copy)]
enum Step {
    Map(usize, usize),
    Protect(usize, usize, bool),
    Unmap(usize, usize),
}

/// A kernel-like trace: map, protect and unmap of 4 KiB to 2 MiB ranges at random 2 MiB slots of
/// the GiB, always valid (a slot is mapped before it is protected or unmapped). Leaves are 4 KiB
/// for every crate: page_table_multiarch cannot put a 2 MiB leaf where it left an emptied table.
fn trace(n: usize) -> Vec<Step> {
    let sizes = [FRAME, 4 * FRAME, 16 * FRAME, 64 * FRAME, 512 * FRAME];
    let mut slots = vec![0usize; 512];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) as usize
    };
    (0..n)
        .map(|_| {
            let slot = next() % 512;
            let base = VA + slot * (2 << 20);
            match slots[slot] {
                0 => {
                    slots[slot] = sizes[next() % sizes.len()];
                    Step::Map(base, slots[slot])
                }
                len if next() % 2 == 0 => Step::Protect(base, len, next() % 2 == 0),
                len => {
                    slots[slot] = 0;
                    Step::Unmap(base, len)
                }
            }
        })
        .collect()
}

fn mixed_trace(c: &mut Criterion) {
    let steps = trace(4000);
    let mut g = Group::new(c, "mixed_trace");
    g.sample_size(10);
    g.throughput(Throughput::Elements(steps.len() as u64));
    fn ours_run<A: pagetable::Arch>(steps: &[Step]) -> pagetable::PageTable<A, OurFrames> {
        let mut pt = ours_new::<A>();
        for &step in black_box(steps) {
            let f = match step {
                Step::Map(v, len) => {
                    pt.map_region(va(v), pa(v - VA + PA), len, RW, pagetable::HugePages::Never)
                }
                Step::Protect(v, len, ro) => pt.protect_region(
                    va(v),
                    len,
                    if ro {
                        pagetable::MappingFlags::READ
                    } else {
                        RW
                    },
                ),
                Step::Unmap(v, len) => pt.unmap_region(va(v), len),
            };
            f.unwrap().ignore();
        }
        pt
    }
    g.bench_function("pagetable", |b| {
        b.iter_batched(
            || (),
            |()| ours_run::<pagetable::X86_64>(&steps),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("pagetable_aarch64", |b| {
        b.iter_batched(
            || (),
            |()| ours_run::<pagetable::AArch64>(&steps),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("page_table_multiarch", |b| {
        b.iter_batched(
            || (),
            |()| {
                let mut pt = ptm_new();
                {
                    let mut c = pt.cursor();
                    for &step in black_box(&steps) {
                        match step {
                            Step::Map(v, len) => c.map_region(
                                v.into(),
                                |x: memory_addr::VirtAddr| (x.as_usize() - VA + PA).into(),
                                len,
                                PTM_RW,
                                false,
                            ),
                            Step::Protect(v, len, ro) => c.protect_region(
                                v.into(),
                                len,
                                if ro {
                                    page_table_multiarch::MappingFlags::READ
                                } else {
                                    PTM_RW
                                },
                            ),
                            Step::Unmap(v, len) => c.unmap_region(v.into(), len),
                        }
                        .unwrap();
                    }
                }
                pt
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("aarch64_paging", |b| {
        b.iter_batched(
            arm::new,
            |mut t| {
                for &step in black_box(&steps) {
                    match step {
                        Step::Map(v, len) => t.map_range(
                            &arm::region(v, len),
                            arm::PhysicalAddress(v - VA + PA),
                            arm::RW,
                            arm::Constraints::NO_BLOCK_MAPPINGS,
                        ),
                        Step::Protect(v, len, ro) => {
                            t.modify_range(&arm::region(v, len), &|_, d| {
                                let (set, clear) = if ro {
                                    (arm::Attr::READ_ONLY, arm::Attr::empty())
                                } else {
                                    (arm::Attr::empty(), arm::Attr::READ_ONLY)
                                };
                                d.modify_flags(set, clear)
                            })
                        }
                        Step::Unmap(v, len) => {
                            let r = t.map_range(
                                &arm::region(v, len),
                                arm::PhysicalAddress(0),
                                arm::Attr::empty(),
                                arm::Constraints::empty(),
                            );
                            t.compact_subtables();
                            r
                        }
                    }
                    .unwrap();
                }
                t
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

/// The memory system calls of real programs (`benches/traces/`), replayed as a kernel with
/// eager population would (see `replay.rs`): one group per trace, per system call.
fn trace_replay(c: &mut Criterion) {
    use replay::{Prim, R, W, X};
    fn ours_flags(p: u8) -> pagetable::MappingFlags {
        use pagetable::MappingFlags as F;
        let mut f = F::USER | F::READ;
        if p & W != 0 {
            f |= F::WRITE;
        }
        if p & X != 0 {
            f |= F::EXECUTE;
        }
        f
    }
    fn ours_run<A: pagetable::Arch>(spaces: &[Vec<Prim>]) {
        for space in black_box(spaces) {
            let mut pt = pagetable::PageTable::<A, _>::new(OurFrames).unwrap();
            for &p in space {
                match p {
                    Prim::Fault(v, p) => {
                        pt.map(va(v), pa(v), pagetable::PageSize::SIZE_4K, ours_flags(p))
                    }
                    Prim::Map(v, len, p) => pt.map_region(
                        va(v),
                        pa(v),
                        len,
                        ours_flags(p),
                        pagetable::HugePages::Never,
                    ),
                    Prim::Protect(v, len, p) => pt.protect_region(va(v), len, ours_flags(p)),
                    Prim::Unmap(v, len) => pt.unmap_region(va(v), len),
                }
                .unwrap()
                .ignore();
            }
        }
    }
    fn ptm_flags(p: u8) -> page_table_multiarch::MappingFlags {
        use page_table_multiarch::MappingFlags as F;
        let mut f = F::USER | F::READ;
        if p & W != 0 {
            f |= F::WRITE;
        }
        if p & X != 0 {
            f |= F::EXECUTE;
        }
        f
    }
    fn ptm_run(spaces: &[Vec<Prim>]) {
        for space in black_box(spaces) {
            let mut pt = Ptm::try_new().unwrap();
            {
                let mut c = pt.cursor();
                for &p in space {
                    match p {
                        Prim::Fault(v, p) => c.map(
                            v.into(),
                            v.into(),
                            page_table_multiarch::PageSize::Size4K,
                            ptm_flags(p),
                        ),
                        Prim::Map(v, len, p) => c.map_region(
                            v.into(),
                            |x: memory_addr::VirtAddr| x.as_usize().into(),
                            len,
                            ptm_flags(p),
                            false,
                        ),
                        Prim::Protect(v, len, p) => c.protect_region(v.into(), len, ptm_flags(p)),
                        Prim::Unmap(v, len) => c.unmap_region(v.into(), len),
                    }
                    .unwrap();
                }
            }
        }
    }
    fn x86_flags(p: u8) -> x86::PageTableFlags {
        use x86::PageTableFlags as F;
        let mut f = F::PRESENT | F::USER_ACCESSIBLE;
        if p & W != 0 {
            f |= F::WRITABLE;
        }
        if p & X == 0 {
            f |= F::NO_EXECUTE;
        }
        f
    }
    fn x86_run(spaces: &[Vec<Prim>]) {
        use x86::{Mapper, Page, PhysAddr, PhysFrame, Size4KiB, VirtAddr};
        for space in black_box(spaces) {
            let mut t = x86::new_untidy();
            for &p in space {
                let (v, len) = match p {
                    Prim::Map(v, len, _) | Prim::Protect(v, len, _) | Prim::Unmap(v, len) => {
                        (v, len)
                    }
                    Prim::Fault(v, _) => (v, FRAME),
                };
                for a in (v..v + len).step_by(FRAME) {
                    let page = Page::<Size4KiB>::containing_address(VirtAddr::new(a as u64));
                    match p {
                        Prim::Map(_, _, p) | Prim::Fault(_, p) => {
                            let frame = PhysFrame::containing_address(PhysAddr::new(a as u64));
                            // SAFETY: the mapping points at memory nobody touches.
                            unsafe { t.mapper.map_to(page, frame, x86_flags(p), &mut x86::Frames) }
                                .unwrap()
                                .ignore();
                        }
                        Prim::Protect(_, _, p) => {
                            // SAFETY: as above.
                            unsafe { t.mapper.update_flags(page, x86_flags(p)) }
                                .unwrap()
                                .ignore();
                        }
                        Prim::Unmap(..) => t.mapper.unmap(page).unwrap().1.ignore(),
                    }
                }
            }
        }
    }
    fn arm_attrs(p: u8) -> arm::Attr {
        let mut a = arm::RW | arm::Attr::USER | arm::Attr::PXN;
        if p & W == 0 {
            a |= arm::Attr::READ_ONLY;
        }
        if p & X == 0 {
            a |= arm::Attr::UXN;
        }
        a
    }
    fn arm_run(spaces: &[Vec<Prim>], compact: bool) {
        for space in black_box(spaces) {
            let mut t = arm::new_untidy();
            for &p in space {
                match p {
                    Prim::Fault(v, p) => t.map_range(
                        &arm::region(v, FRAME),
                        arm::PhysicalAddress(v),
                        arm_attrs(p),
                        arm::Constraints::NO_BLOCK_MAPPINGS,
                    ),
                    Prim::Map(v, len, p) => t.map_range(
                        &arm::region(v, len),
                        arm::PhysicalAddress(v),
                        arm_attrs(p),
                        arm::Constraints::NO_BLOCK_MAPPINGS,
                    ),
                    Prim::Protect(v, len, p) => t.modify_range(&arm::region(v, len), &|_, d| {
                        let want = arm_attrs(p);
                        let bits = arm::Attr::READ_ONLY | arm::Attr::UXN;
                        d.modify_flags(want & bits, !want & bits)
                    }),
                    Prim::Unmap(v, len) => {
                        let r = t.map_range(
                            &arm::region(v, len),
                            arm::PhysicalAddress(0),
                            arm::Attr::empty(),
                            arm::Constraints::empty(),
                        );
                        if compact {
                            t.compact_subtables();
                        }
                        r
                    }
                }
                .unwrap();
            }
        }
    }
    let _ = R;
    let traces = [
        ("python_tests", false),
        ("cargo_build", false),
        ("cargo_release_tests", false),
        ("python_tests_faults", true),
    ];
    for (name, faults) in traces {
        let trace = if faults {
            replay::load_faults(name)
        } else {
            replay::load(name)
        };
        println!(
            "trace {}: {} system calls, {} address spaces, {} runs of {} pages ({} mapped)",
            trace.name,
            trace.calls,
            trace.spaces.len(),
            trace.prims,
            trace.pages,
            trace.mapped
        );
        let spaces = &trace.spaces;
        let mut g = Group::new(c, &format!("trace_{name}"));
        g.sample_size(10);
        g.throughput(Throughput::Elements(trace.calls as u64));
        g.bench_function("pagetable", |b| {
            pool().tidy();
            b.iter(|| ours_run::<pagetable::X86_64>(spaces))
        });
        g.bench_function("pagetable_aarch64", |b| {
            pool().tidy();
            b.iter(|| ours_run::<pagetable::AArch64>(spaces))
        });
        g.bench_function("page_table_multiarch", |b| {
            pool().tidy();
            b.iter(|| ptm_run(spaces))
        });
        g.bench_function("x86_64", |b| {
            pool().tidy();
            b.iter(|| x86_run(spaces))
        });
        g.bench_function("aarch64_paging", |b| {
            pool().tidy();
            b.iter(|| arm_run(spaces, false))
        });
        g.bench_function("aarch64_paging_compact", |b| {
            pool().tidy();
            b.iter(|| arm_run(spaces, true))
        });
        g.finish();
    }
}

/// The `PageTable` value's size and the frames 1 GiB of 4K pages takes, printed with the run.
fn footprint(_: &mut Criterion) {
    let before = pool().in_use();
    let mut pt = ours_mapped::<pagetable::X86_64>(pagetable::HugePages::Never);
    let mapped = pool().in_use() - before;
    pt.unmap_region(va(VA), GIB).unwrap().ignore();
    drop(pt);
    println!(
        "footprint: size_of::<PageTable<X86_64, _>>() = {} bytes (handler is a ZST); 1 GiB of 4K pages = {mapped} frames; after unmap_region and drop = {}",
        std::mem::size_of::<Ours>(),
        pool().in_use() - before
    );
}

/// 64 Ki distinct random pages of the GiB (a quarter of its slots), and a second random order of
/// the same pages: a page-fault workload's mapping and its later munmap, page by page.
fn random_pages() -> (Vec<usize>, Vec<usize>) {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 16) as usize
    };
    let mut slots: Vec<usize> = (0..PAGES).collect();
    for i in (1..PAGES).rev() {
        slots.swap(i, next() % (i + 1));
    }
    let mapped: Vec<usize> = slots[..PAGES / 4].iter().map(|s| VA + s * FRAME).collect();
    let mut order = mapped.clone();
    for i in (1..order.len()).rev() {
        order.swap(i, next() % (i + 1));
    }
    (mapped, order)
}

/// Single-page unmaps in random order of 64 Ki random pages of a GiB: every crate's plain
/// one-page unmap, as a kernel's munmap of faulted-in pages calls it. Ours frees each
/// last-level table the moment it empties (and the tables above it); page_table_multiarch and
/// the x86_64 crate leave emptied tables in place, as their docs say.
fn unmap_random_order(c: &mut Criterion) {
    let (mapped, order) = random_pages();
    let mut g = Group::new(c, "unmap_4k_random_order");
    g.sample_size(10);
    g.throughput(Throughput::Elements(order.len() as u64));
    let ours = || {
        let mut pt = ours_new::<pagetable::X86_64>();
        for &v in &mapped {
            pt.map(va(v), pa(v - VA + PA), pagetable::PageSize::SIZE_4K, RW)
                .unwrap()
                .ignore();
        }
        pt
    };
    g.bench_function("pagetable", |b| {
        b.iter_batched(
            ours,
            |mut pt| {
                for &v in black_box(&order) {
                    per_page(|| pt.unmap(va(v))).unwrap().1.ignore();
                }
                pt
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("pagetable_cursor", |b| {
        b.iter_batched(
            ours,
            |mut pt| {
                let mut c = pt.cursor();
                for &v in black_box(&order) {
                    per_page(|| c.unmap(va(v))).unwrap().1.ignore();
                }
                pt
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("page_table_multiarch", |b| {
        b.iter_batched(
            || {
                let mut pt = ptm_new();
                for &v in &mapped {
                    pt.cursor()
                        .map(
                            memory_addr::VirtAddr::from(v),
                            memory_addr::PhysAddr::from(v - VA + PA),
                            page_table_multiarch::PageSize::Size4K,
                            PTM_RW,
                        )
                        .unwrap();
                }
                pt
            },
            |mut pt| {
                {
                    let mut c = pt.cursor();
                    for &v in black_box(&order) {
                        per_page(|| c.unmap(memory_addr::VirtAddr::from(v))).unwrap();
                    }
                }
                pt
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("x86_64", |b| {
        b.iter_batched(
            || {
                use x86::Mapper;
                let mut t = x86::new();
                for &v in &mapped {
                    let page = x86::Page::<x86::Size4KiB>::containing_address(x86::VirtAddr::new(
                        v as u64,
                    ));
                    let frame = x86::PhysFrame::containing_address(x86::PhysAddr::new(
                        (v - VA + PA) as u64,
                    ));
                    // SAFETY: the mapping points at memory nobody touches.
                    unsafe { t.mapper.map_to(page, frame, x86::RW, &mut x86::Frames) }
                        .unwrap()
                        .ignore();
                }
                t
            },
            |mut t| {
                use x86::Mapper;
                for &v in black_box(&order) {
                    let page = x86::Page::<x86::Size4KiB>::containing_address(x86::VirtAddr::new(
                        v as u64,
                    ));
                    per_page(|| t.mapper.unmap(page)).unwrap().1.ignore();
                }
                t
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(
    benches,
    footprint,
    map_region,
    map_scattered,
    unmap_half_mapped,
    query,
    unmap_region,
    protect_region,
    walk,
    mixed_trace,
    map_one_by_one,
    unmap_random_order,
    trace_replay
);
criterion_main!(benches);
