//! Test support: a frame handler that keeps books, and helpers shared by the test files.
#![allow(dead_code)]

use std::cell::Cell;
use std::collections::BTreeMap;
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use pagetable::{PagingHandler, PhysAddr};

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
    free: Vec<usize>,
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
            mem: (0..frames * FRAME / 8).map(|_| AtomicU64::new(0)).collect(),
            base,
            next: 0,
            free: Vec::new(),
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

    /// Reads a word of "physical memory" directly, as an independent walker would.
    pub fn read_phys(&self, pa: u64) -> u64 {
        self.mem[(pa as usize - self.base) / 8].load(Relaxed)
    }

    /// Writes a word of "physical memory" directly, as hardware setting A/D bits would.
    pub fn write_phys(&self, pa: u64, value: u64) {
        self.mem[(pa as usize - self.base) / 8].store(value, Relaxed);
    }
}

// SAFETY: blocks are disjoint ranges of `mem` (bump-allocated at size alignment, or whole
// frames reused from `free`), tracked in `live` so that none is handed out twice; `mem` never
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
        let off = if bytes == FRAME && !self.free.is_empty() {
            self.free.pop().unwrap()
        } else {
            let start = (self.base + self.next).next_multiple_of(bytes) - self.base;
            if start + bytes > self.mem.len() * 8 {
                return None;
            }
            for skipped in (self.next..start).step_by(FRAME) {
                self.free.push(skipped);
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
        for f in (off..off + bytes).step_by(FRAME) {
            self.free.push(f);
        }
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
