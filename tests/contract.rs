//! What the crate checks of its callers instead of trusting them: the frames and pointers a
//! handler returns, a handler that panics, round trips through raw parts; and the small
//! contracts of its value types (flush ranges, flag unions).

mod common;

use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr::NonNull;
use std::rc::Rc;

use common::Frames;
use memory_addr::{pa, va};
use pagetable::{
    AArch64, AArch64S2, BufferFrames, HugePages, Ipa40, Liveness, MappingFlags as F, MemType,
    PageSize, PageTable, PagingError, PagingHandler, PhysAddr, Sv48, X86_64,
};

const RW: F = F::READ.union(F::WRITE);

/// How a [`Liar`] bends what `Frames` returns.
#[derive(Clone, Copy, PartialEq)]
enum Lie {
    /// A 4 KiB-aligned block that is not aligned to its (larger) size.
    Misaligned,
    /// Pointers one byte past where the block is.
    OddPointer,
}

/// A handler that lies about the frames it hands out, and logs what comes back.
struct Liar {
    frames: Frames,
    lie: Lie,
    given_back: Rc<RefCell<Vec<usize>>>,
}

// SAFETY: not sound as a handler, on purpose: the crate must catch each lie before using it.
// Blocks come from `Frames`; a misaligned one is the upper half of a block twice its size.
unsafe impl PagingHandler for Liar {
    fn alloc_table(&mut self, bytes: usize) -> Option<PhysAddr> {
        match self.lie {
            Lie::Misaligned => Some(self.frames.alloc_table(2 * bytes)? + 4096),
            Lie::OddPointer => self.frames.alloc_table(bytes),
        }
    }
    unsafe fn free_table(&mut self, pa: PhysAddr, _bytes: usize) {
        self.given_back.borrow_mut().push(pa.as_usize());
    }
    fn phys_to_virt(&self, pa: PhysAddr) -> NonNull<u8> {
        let p = self.frames.phys_to_virt(pa);
        match self.lie {
            // SAFETY: one byte further into the same test memory.
            Lie::OddPointer => unsafe { p.add(1) },
            Lie::Misaligned => p,
        }
    }
}

fn liar(lie: Lie) -> (Liar, Rc<RefCell<Vec<usize>>>) {
    let log = Rc::new(RefCell::new(vec![]));
    let liar = Liar {
        frames: Frames::new(16, 0x10_0000),
        lie,
        given_back: log.clone(),
    };
    (liar, log)
}

#[test]
fn new_refuses_a_root_not_aligned_to_its_size() {
    // The 40-bit IPA stage 2 root is 8 KiB: a 4 KiB-aligned one would be walked wrong.
    let (liar, given_back) = liar(Lie::Misaligned);
    let result = PageTable::<AArch64S2<Ipa40>, _>::new(liar);
    assert_eq!(
        result.err(),
        Some(PagingError::BadFrame(pa!(0x10_1000))),
        "an odd root was taken"
    );
    assert_eq!(*given_back.borrow(), [0x10_1000], "and given back");
}

#[test]
fn new_refuses_a_pointer_not_aligned_for_entries() {
    let (liar, given_back) = liar(Lie::OddPointer);
    let result = PageTable::<X86_64, _>::new(liar);
    assert_eq!(
        result.err(),
        Some(PagingError::BadFrame(pa!(0x10_0000))),
        "an odd pointer was used"
    );
    assert_eq!(*given_back.borrow(), [0x10_0000], "and given back");
}

#[test]
fn buffer_frames_never_wrap_past_the_top_of_physical_memory() {
    let mut memory = vec![0u64; 3 * 512];
    assert!(
        BufferFrames::new(&mut memory, pa!(0xffff_ffff_ffff_e000)).is_none(),
        "a buffer that runs past 2^64 was taken"
    );
}

#[test]
fn a_frame_beyond_the_modes_width_is_refused_not_truncated() {
    // Frames at 2^48 - 8 KiB up: the third is at 2^48, which AArch64's 48-bit output address
    // cannot hold.
    let mut memory = vec![0u64; 4 * 512];
    let frames = BufferFrames::new(&mut memory, pa!(0xffff_ffff_e000)).unwrap();
    let mut pt = PageTable::<AArch64, _>::new(frames).unwrap();
    let before = pt.handler().allocated_bytes();
    let result = pt.map(va!(0x1000), pa!(0x5000), PageSize::SIZE_4K, RW);
    assert_eq!(
        result.err(),
        Some(PagingError::BadFrame(pa!(0x1_0000_0000_0000)))
    );
    assert_eq!(
        pt.handler().allocated_bytes(),
        before,
        "every frame given back"
    );
    assert_eq!(
        pt.query(va!(0x1000)).err(),
        Some(PagingError::NotMapped(va!(0x1000)))
    );
    drop(pt);
}

#[test]
fn a_round_trip_through_raw_parts_keeps_the_liveness() {
    let mut pt = PageTable::<AArch64, _>::new(Frames::new(16, 0x10_0000)).unwrap();
    pt.set_liveness(Liveness::Live);
    let (root, frames, state) = pt.into_raw();
    assert_eq!(state.liveness(), Liveness::Live);
    // SAFETY: the tree and its state came from `into_raw`, and nothing else owns them.
    let pt = unsafe { PageTable::<AArch64, _>::from_raw(root, frames, state) }.unwrap();
    assert_eq!(pt.liveness(), Liveness::Live);
}

#[test]
fn a_round_trip_of_a_borrower_does_not_free_what_it_borrows() {
    let (memory, kernel, user, _) = common::kernel_and_process();
    let kernel_frames = memory.0.borrow().live_frames() - user.table_frames();
    let (root, handler, state) = user.into_raw();
    assert_eq!(state.borrowed(), 256..257);
    // SAFETY: the tree and its state came from `into_raw`; the borrowed part stays the
    // kernel's, which outlives `user`.
    let user = unsafe { PageTable::<Sv48, _>::from_raw(root, handler, state) }.unwrap();
    drop(user);
    assert_eq!(memory.0.borrow().live_frames(), kernel_frames);
    drop(kernel);
}

#[test]
fn a_flush_across_the_canonical_hole_covers_both_pages() {
    let mut pt = PageTable::<X86_64, _>::new(Frames::new(16, 0x10_0000)).unwrap();
    let low = pt
        .map(va!(0x7fff_ffff_f000), pa!(0x1000), PageSize::SIZE_4K, RW)
        .unwrap();
    let high = pt
        .map(
            va!(0xffff_8000_0000_0000),
            pa!(0x2000),
            PageSize::SIZE_4K,
            RW,
        )
        .unwrap();
    let both = low.merge(high);
    let covers = |va: usize| {
        both.is_all()
            || both
                .va_range()
                .is_some_and(|(s, len)| (s.as_usize()..s.as_usize() + len).contains(&va))
    };
    assert!(
        covers(0x7fff_ffff_f000) && covers(0xffff_8000_0000_0000),
        "{both:?}"
    );
    both.ignore();
}

/// A handler that panics on its N-th allocation.
struct Panicky {
    frames: Frames,
    panic_at: Cell<Option<usize>>,
}

// SAFETY: `Frames`'s own, but for the panic.
unsafe impl PagingHandler for Panicky {
    fn alloc_table(&mut self, bytes: usize) -> Option<PhysAddr> {
        if let Some(n) = self.panic_at.get() {
            if n == 0 {
                panic!("the allocator panicked");
            }
            self.panic_at.set(Some(n - 1));
        }
        self.frames.alloc_table(bytes)
    }
    unsafe fn free_table(&mut self, pa: PhysAddr, bytes: usize) {
        // SAFETY: forwarded.
        unsafe { self.frames.free_table(pa, bytes) }
    }
    fn phys_to_virt(&self, pa: PhysAddr) -> NonNull<u8> {
        self.frames.phys_to_virt(pa)
    }
}

#[test]
fn a_panic_in_alloc_table_gives_back_the_frames_reserved_so_far() {
    let mut pt = PageTable::<X86_64, _>::new(Panicky {
        frames: Frames::new(64, 0x10_0000),
        panic_at: Cell::new(None),
    })
    .unwrap();
    for n in 0..6 {
        let before = pt.handler().frames.live_frames();
        pt.handler().panic_at.set(Some(n));
        let result = catch_unwind(AssertUnwindSafe(|| {
            pt.map_region(va!(0x4000_0000), pa!(0), 8 << 20, RW, HugePages::Never)
        }));
        pt.handler().panic_at.set(None);
        assert!(result.is_err(), "allocation {n} panicked");
        assert_eq!(
            pt.handler().frames.live_frames(),
            before,
            "allocation {n}: frames leaked"
        );
    }
}

#[test]
fn the_memory_type_of_a_union_does_not_depend_on_the_order() {
    let all: Vec<F> = (0..=0x1ffu16).filter_map(F::from_bits).collect();
    for &a in &all {
        for &b in &all {
            assert_eq!(a | b, b | a, "{a:?} | {b:?}");
            assert_eq!(a & b, b & a, "{a:?} & {b:?}");
        }
    }
    // The stronger type wins: device over uncached over normal.
    assert_eq!((F::DEVICE | F::UNCACHED).mem_type(), MemType::Device);
    assert_eq!((F::UNCACHED | F::READ).mem_type(), MemType::Uncached);
    for &a in &all {
        for &b in all.iter().step_by(7) {
            for &c in all.iter().step_by(11) {
                assert_eq!((a | b) | c, a | (b | c), "{a:?} {b:?} {c:?}");
            }
        }
    }
}

#[test]
fn the_page_table_value_is_root_state_and_handler() {
    // The root's address (8 bytes), the `TableState` (liveness, borrowed and shared
    // root-entry ranges, the TLB identifier and the may-hold-global bit: 24 bytes), the
    // leaf template of the flags `map` last used (its flags and the template: 16 bytes) and
    // the last-level table `map` and `unmap` last walked to (its span, address, folded path,
    // linking entry and the flags that path was found to let through: 40 bytes), 88 in all,
    // beside the handler.
    assert_eq!(
        std::mem::size_of::<PageTable<X86_64, pagetable::BufferFrames<'static>>>()
            - std::mem::size_of::<pagetable::BufferFrames<'static>>(),
        88
    );
    assert_eq!(std::mem::size_of::<pagetable::TableState>(), 24);
}
