//! Test support: a frame handler that keeps books, and helpers shared by the test files.
#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use pagetable::{PagingHandler, PhysAddr};

pub mod hw;
pub mod mmu;
pub mod model;
pub mod raw;

pub const FRAME: usize = 4096;

/// A handler over a word buffer that stands for physical memory at `base`. It panics on a
/// double free, a free of a frame it never handed out, or a free with the wrong size; it can be
/// told to fail from the N-th allocation on; and it can snapshot every live table.
pub struct Frames {
    /// Atomics: the page table writes through pointers `phys_to_virt` derives from `&self`.
    mem: Box<[AtomicU64]>,
    base: usize,
    /// Offset of the first never-used byte.
    next: usize,
    /// Free blocks by size: bytes -> offsets.
    free: BTreeMap<usize, Vec<usize>>,
    /// Live blocks: offset -> bytes.
    live: BTreeMap<usize, usize>,
    pub allocs: usize,
    pub frees: usize,
    /// Allocation number (0-based, counted from when it was set) from which `alloc_table`
    /// returns `None`.
    fail_from: Option<usize>,
    since_armed: usize,
    /// Frames out, shared so that it can be read after the handler is dropped with its table.
    ledger: Rc<Cell<usize>>,
}

impl Frames {
    pub fn new(frames: usize, base: usize) -> Self {
        assert_eq!(base % FRAME, 0);
        Self {
            mem: zeroed_words(frames * FRAME / 8),
            base,
            next: 0,
            free: BTreeMap::new(),
            live: BTreeMap::new(),
            allocs: 0,
            frees: 0,
            fail_from: None,
            since_armed: 0,
            ledger: Rc::new(Cell::new(0)),
        }
    }

    /// Table frames handed out and not given back.
    pub fn live_frames(&self) -> usize {
        self.live.values().map(|b| b / FRAME).sum()
    }

    /// The physical address of every block out.
    pub fn live_addrs(&self) -> std::collections::BTreeSet<u64> {
        self.live
            .keys()
            .map(|&off| (self.base + off) as u64)
            .collect()
    }

    /// A counter of frames out that outlives the handler.
    pub fn ledger(&self) -> Rc<Cell<usize>> {
        self.ledger.clone()
    }

    pub fn live_blocks(&self) -> usize {
        self.live.len()
    }

    /// From now on, allocation number `n` (0-based) and every one after it fails.
    pub fn fail_from(&mut self, n: Option<usize>) {
        self.fail_from = n;
        self.since_armed = 0;
    }

    /// Every live block's physical address and contents.
    pub fn snapshot(&self) -> Vec<(usize, Vec<u64>)> {
        self.live
            .iter()
            .map(|(&off, &bytes)| {
                (
                    self.base + off,
                    self.mem[off / 8..(off + bytes) / 8]
                        .iter()
                        .map(|w| w.load(Relaxed))
                        .collect(),
                )
            })
            .collect()
    }

    /// A digest of every live block's address and contents: equal digests mean equal
    /// snapshots but for a 64-bit hash collision, with no copy made (the fuzz targets take one
    /// before every call).
    pub fn digest(&self) -> u64 {
        const PRIME: u64 = 0x0000_0100_0000_01b3;
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for (&off, &bytes) in &self.live {
            h = (h ^ (self.base + off) as u64).wrapping_mul(PRIME);
            for w in &self.mem[off / 8..(off + bytes) / 8] {
                h = (h ^ w.load(Relaxed)).wrapping_mul(PRIME);
            }
        }
        h
    }

    /// Whether `[pa, pa + bytes)` lies in a live block.
    pub fn is_live(&self, pa: u64, bytes: usize) -> bool {
        let Some(off) = (pa as usize).checked_sub(self.base) else {
            return false;
        };
        self.live
            .range(..=off)
            .next_back()
            .is_some_and(|(&start, &len)| off + bytes <= start + len)
    }

    /// Reads a word of "physical memory" directly, as an independent walker would.
    pub fn read_phys(&self, pa: u64) -> u64 {
        self.mem[(pa as usize - self.base) / 8].load(Relaxed)
    }

    /// Writes a word of "physical memory" directly, as hardware setting A/D bits would.
    pub fn write_phys(&self, pa: u64, value: u64) {
        self.mem[(pa as usize - self.base) / 8].store(value, Relaxed);
    }
}

/// `n` zero words, from a zeroed allocation: the pages are only touched when used, so a large
/// test memory costs nothing until the table grows into it (the fuzz targets make one per run).
fn zeroed_words(n: usize) -> Box<[AtomicU64]> {
    let layout = std::alloc::Layout::array::<AtomicU64>(n).expect("test memory size");
    // SAFETY: the layout is not empty (n > 0 for every handler made), and an all-zero
    // `AtomicU64` is a valid zero; the box takes the allocation with the same layout.
    unsafe {
        let ptr = std::alloc::alloc_zeroed(layout).cast::<AtomicU64>();
        assert!(!ptr.is_null(), "out of memory for test frames");
        Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, n))
    }
}

// SAFETY: blocks are disjoint ranges of `mem` (bump-allocated at size alignment, or whole
// blocks reused from `free`, each on the list of its own size), tracked in `live` so that none is handed out twice; `mem` never
// moves or shrinks, so `phys_to_virt` pointers stay valid.
unsafe impl PagingHandler for Frames {
    fn alloc_table(&mut self, bytes: usize) -> Option<PhysAddr> {
        assert!(
            bytes.is_power_of_two() && bytes >= FRAME,
            "odd table size {bytes}"
        );
        if let Some(n) = self.fail_from {
            if self.since_armed >= n {
                return None;
            }
        }
        self.since_armed += 1;
        let reused = self.free.get_mut(&bytes).and_then(Vec::pop);
        let off = if let Some(off) = reused {
            off
        } else {
            let start = (self.base + self.next).next_multiple_of(bytes) - self.base;
            if start + bytes > self.mem.len() * 8 {
                return None;
            }
            for skipped in (self.next..start).step_by(FRAME) {
                self.free.entry(FRAME).or_default().push(skipped);
            }
            self.next = start + bytes;
            start
        };
        // Poison: the page table must zero what it gets.
        self.mem[off / 8..(off + bytes) / 8]
            .iter()
            .for_each(|w| w.store(0xdead_beef_dead_beef, Relaxed));
        assert!(self.live.insert(off, bytes).is_none());
        self.allocs += 1;
        self.ledger.set(self.ledger.get() + bytes / FRAME);
        Some(PhysAddr::from(self.base + off))
    }

    unsafe fn free_table(&mut self, pa: PhysAddr, bytes: usize) {
        let off = pa
            .as_usize()
            .checked_sub(self.base)
            .expect("free below the buffer");
        match self.live.remove(&off) {
            Some(b) if b == bytes => {}
            Some(b) => panic!("frame {pa:#x} freed with size {bytes}, allocated with {b}"),
            None => panic!("double free or foreign free of {pa:#x}"),
        }
        // Poison again, so that a use after free shows.
        self.mem[off / 8..(off + bytes) / 8]
            .iter()
            .for_each(|w| w.store(0x5a5a_5a5a_5a5a_5a5a, Relaxed));
        self.free.entry(bytes).or_default().push(off);
        self.frees += 1;
        self.ledger.set(self.ledger.get() - bytes / FRAME);
    }

    fn phys_to_virt(&self, pa: PhysAddr) -> NonNull<u8> {
        let off = pa.as_usize() - self.base;
        assert!(off < self.mem.len() * 8, "{pa:#x} outside test memory");
        // Derived from the whole slice, so the pointer may reach the rest of the block.
        NonNull::new(self.mem.as_ptr().wrapping_add(off / 8).cast_mut())
            .unwrap()
            .cast::<u8>()
    }
}

/// Runs `op` with the handler failing from the n-th allocation on, for every n until it
/// succeeds: each failure must be `OutOfFrames` with every table byte and frame as before.
pub fn fails_cleanly_at_every_allocation<A: pagetable::Arch>(
    pt: &mut pagetable::PageTable<A, Frames>,
    mut op: impl FnMut(
        &mut pagetable::PageTable<A, Frames>,
    ) -> Result<pagetable::Flush<A>, pagetable::PagingError>,
) -> usize {
    for n in 0.. {
        let before = pt.handler().snapshot();
        let frames = pt.handler().live_frames();
        set_fail_from(pt, Some(n));
        let result = op(pt);
        set_fail_from(pt, None);
        match result {
            Ok(flush) => {
                flush.ignore();
                return n;
            }
            Err(e) => {
                assert_eq!(e, pagetable::PagingError::OutOfFrames, "allocation {n}");
                assert!(
                    pt.handler().snapshot() == before,
                    "allocation {n}: table bytes changed"
                );
                assert_eq!(
                    pt.handler().live_frames(),
                    frames,
                    "allocation {n}: frames leaked"
                );
            }
        }
    }
    unreachable!()
}

/// Arms (or disarms) the test handler's allocation failures.
pub fn set_fail_from<A: pagetable::Arch>(
    pt: &mut pagetable::PageTable<A, Frames>,
    n: Option<usize>,
) {
    // SAFETY: only the failure point changes; the handler stays the one that owns the tree.
    unsafe { pt.handler_mut() }.fail_from(n);
}

/// Several tables over one test memory (a kernel table and process tables that borrow from it).
#[derive(Clone)]
pub struct Shared(pub Rc<RefCell<Frames>>);

impl Shared {
    pub fn new(frames: Frames) -> Self {
        Self(Rc::new(RefCell::new(frames)))
    }
}

// SAFETY: forwards to `Frames`, whose memory never moves; `RefCell` borrows end within each
// call.
unsafe impl PagingHandler for Shared {
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

/// A kernel table (Sv48) with one page at the start of its upper half, the root entry there
/// shared, and a process table borrowing it, over one memory: the kernel-half pattern.
pub fn kernel_and_process() -> (
    Shared,
    pagetable::PageTable<pagetable::Sv48, Shared>,
    pagetable::PageTable<pagetable::Sv48, Shared>,
    pagetable::VirtAddr,
) {
    use pagetable::{MappingFlags as F, PageSize, PageTable, Sv48, VirtAddr};
    let memory = Shared::new(Frames::new(64, 0x10_0000_0000));
    let mut kernel = PageTable::<Sv48, _>::new(memory.clone()).unwrap();
    let kva = VirtAddr::from(0xffff_8000_0000_0000);
    kernel
        .map(
            kva,
            PhysAddr::from(0x8000_0000),
            PageSize::SIZE_4K,
            F::READ | F::WRITE | F::GLOBAL,
        )
        .unwrap()
        .ignore();
    kernel.share(kva, 1 << 39).unwrap().ignore();
    let mut process = PageTable::<Sv48, _>::new(memory.clone()).unwrap();
    // SAFETY: every caller drops `process` before `kernel`; both reach the same memory.
    unsafe { process.borrow_shared(&kernel, kva, 1 << 39) }
        .unwrap()
        .ignore();
    (memory, kernel, process, kva)
}

/// A fresh table of mode `A` on 64 frames.
pub fn small_table<A: pagetable::Arch>() -> pagetable::PageTable<A, Frames> {
    pagetable::PageTable::new(Frames::new(64, 0x10_0000_0000)).unwrap()
}

/// The raw last-level entry translating `va` in a 4-level table of 4 KiB tables.
pub fn l1_entry<A: pagetable::Arch<Root = pagetable::L4>>(
    pt: &pagetable::PageTable<A, Frames>,
    va: usize,
) -> u64 {
    let i = |shift: u32| (va >> shift) & 511;
    pt.root()
        .next(i(39))
        .and_then(|t| t.next(i(30)))
        .and_then(|t| t.next(i(21)))
        .and_then(|t| t.get(i(12)))
        .expect("a last-level table")
        .bits()
}

/// Results of a table of any mode with their addresses as plain `VirtAddr` numbers (a stage 2
/// table reports `GuestPhysAddr`s), so one model and one set of expectations serve every mode.
pub trait Plain {
    /// The same result, addresses as `VirtAddr`.
    type Out;
    /// Converts.
    fn plain(self) -> Self::Out;
}

fn plain_va<G: Into<usize>>(a: G) -> pagetable::VirtAddr {
    pagetable::VirtAddr::from(a.into())
}

impl<G: Into<usize>> Plain for pagetable::Mapping<G> {
    type Out = pagetable::Mapping;
    fn plain(self) -> pagetable::Mapping {
        pagetable::Mapping {
            va: plain_va(self.va),
            pa: self.pa,
            size: self.size,
            flags: self.flags,
            state: self.state,
        }
    }
}

impl<G: Into<usize>> Plain for pagetable::Translation<G> {
    type Out = pagetable::Translation;
    fn plain(self) -> pagetable::Translation {
        pagetable::Translation {
            pa: self.pa,
            flags: self.flags,
            size: self.size,
            state: self.state,
            leaf_va: plain_va(self.leaf_va),
        }
    }
}

impl<G: Into<usize>> Plain for pagetable::Cleared<G> {
    type Out = pagetable::Cleared;
    fn plain(self) -> pagetable::Cleared {
        match self {
            pagetable::Cleared::Leaf(m) => pagetable::Cleared::Leaf(m.plain()),
            pagetable::Cleared::Marker { va, payload } => pagetable::Cleared::Marker {
                va: plain_va(va),
                payload,
            },
        }
    }
}

impl<G: Into<usize>> Plain for pagetable::Lookup<G> {
    type Out = pagetable::Lookup;
    fn plain(self) -> pagetable::Lookup {
        match self {
            pagetable::Lookup::Mapped(t) => pagetable::Lookup::Mapped(t.plain()),
            pagetable::Lookup::Marker(p) => pagetable::Lookup::Marker(p),
            pagetable::Lookup::Empty => pagetable::Lookup::Empty,
        }
    }
}

macro_rules! plain_as_is {
    ($($t:ty),*) => {$(
        impl Plain for $t {
            type Out = $t;
            fn plain(self) -> $t {
                self
            }
        }
    )*};
}
plain_as_is!((), u64, pagetable::AccessState);

impl<T: Plain, U: Plain> Plain for (T, U) {
    type Out = (T::Out, U::Out);
    fn plain(self) -> Self::Out {
        (self.0.plain(), self.1.plain())
    }
}

impl<T: Plain> Plain for Vec<T> {
    type Out = Vec<T::Out>;
    fn plain(self) -> Vec<T::Out> {
        self.into_iter().map(Plain::plain).collect()
    }
}

impl<T: Plain, E> Plain for Result<T, E> {
    type Out = Result<T::Out, E>;
    fn plain(self) -> Result<T::Out, E> {
        self.map(Plain::plain)
    }
}

/// The input address `x` of a table of mode `A` (a `VirtAddr`, or a `GuestPhysAddr` for
/// stage 2).
pub fn at<A: pagetable::Arch>(x: u64) -> A::Addr {
    A::Addr::from(x as usize)
}

/// The address `x` as whatever input address the call it is passed to wants (a table's
/// `VirtAddr` or `GuestPhysAddr`), inferred from the call.
pub fn addr<T: From<usize>>(x: usize) -> T {
    T::from(x)
}
