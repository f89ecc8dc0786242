//! [`BufferFrames`]: a [`PagingHandler`] that hands out table frames from a caller's buffer, for
//! host tools that build another machine's tables and for tests. Nothing else lives here.

use core::fmt;
use core::ptr::NonNull;

use memory_addr::PhysAddr;

use crate::handler::PagingHandler;

const FRAME: usize = 4096;

/// Hands out 4 KiB-aligned table frames from a byte buffer that stands for physical memory
/// starting at a chosen address, in O(1): freed frames go on a list threaded through the frames
/// themselves, new ones are cut from the unused end.
///
/// Blocks larger than 4 KiB (roots of some modes) are cut from the unused end and, when freed,
/// go back on the list as single frames.
pub struct BufferFrames<'a> {
    base: NonNull<u8>,
    len: usize,
    base_pa: usize,
    /// Offset of the first never-allocated byte.
    next: usize,
    /// Offset of the first free 4 KiB frame, or `usize::MAX`.
    free: usize,
    allocated: usize,
    _buffer: core::marker::PhantomData<&'a mut [u64]>,
}

// SAFETY: `BufferFrames` owns its exclusive borrow of the buffer; moving it to another thread
// moves that borrow, which `&mut [u8]` allows.
unsafe impl Send for BufferFrames<'_> {}

impl<'a> BufferFrames<'a> {
    /// Frames from `buffer`, which stands for physical memory starting at `base_pa`: byte `i`
    /// of the buffer is physical address `base_pa + i`. Words make the buffer 8-byte aligned,
    /// as table entries must be; tables are aligned in physical addresses.
    ///
    /// `None` if `base_pa` is not 4 KiB-aligned or no whole frame fits.
    pub fn new(buffer: &'a mut [u64], base_pa: PhysAddr) -> Option<Self> {
        let len = buffer.len() * 8 / FRAME * FRAME;
        if base_pa.as_usize() % FRAME != 0 || len == 0 {
            return None;
        }
        Some(Self {
            base: NonNull::from(buffer).cast::<u8>(),
            len,
            base_pa: base_pa.as_usize(),
            next: 0,
            free: usize::MAX,
            allocated: 0,
            _buffer: core::marker::PhantomData,
        })
    }

    /// Bytes allocated and not freed.
    #[must_use]
    pub fn allocated_bytes(&self) -> usize {
        self.allocated
    }

    /// The physical address of the buffer's first byte.
    #[must_use]
    pub fn base_pa(&self) -> PhysAddr {
        PhysAddr::from(self.base_pa)
    }

    /// The buffer as bytes of physical memory from [`base_pa`](Self::base_pa), whole frames
    /// only.
    #[must_use]
    pub fn memory(&self) -> &[u8] {
        // SAFETY: `base..base + len` lies in the buffer this value borrows exclusively; `&self`
        // keeps table writes (which need `&mut` to the page table owning this) away meanwhile.
        unsafe { core::slice::from_raw_parts(self.base.as_ptr(), self.len) }
    }

    fn push_free(&mut self, offset: usize) {
        // SAFETY: `offset` is a whole frame inside the buffer that nothing uses now; the first
        // 8 bytes of a free frame hold the link, 8-aligned because frames are.
        unsafe {
            self.base
                .as_ptr()
                .add(offset)
                .cast::<usize>()
                .write(self.free)
        };
        self.free = offset;
    }
}

// SAFETY: blocks are cut from disjoint parts of the buffer (or are frames from the free list,
// which holds only frames given back), aligned to their size in physical addresses because
// cuts round up to `bytes`; every pointer is 8-aligned because the buffer is made of words and
// blocks start at multiples of 4 KiB from it.
// `phys_to_virt` maps each physical address to the one byte of the buffer standing for it.
unsafe impl PagingHandler for BufferFrames<'_> {
    fn alloc_table(&mut self, bytes: usize) -> Option<PhysAddr> {
        if !bytes.is_power_of_two() || bytes < FRAME {
            return None;
        }
        let offset = if bytes == FRAME && self.free != usize::MAX {
            let offset = self.free;
            // SAFETY: `offset` is on the free list, so its first 8 bytes hold the next link.
            self.free = unsafe { self.base.as_ptr().add(offset).cast::<usize>().read() };
            offset
        } else {
            let start = (self.base_pa + self.next).next_multiple_of(bytes) - self.base_pa;
            if start.checked_add(bytes)? > self.len {
                return None;
            }
            // The frames skipped to reach the alignment are not lost: they go on the list.
            for skipped in (self.next..start).step_by(FRAME) {
                self.push_free(skipped);
            }
            self.next = start + bytes;
            start
        };
        self.allocated += bytes;
        Some(PhysAddr::from(self.base_pa + offset))
    }

    unsafe fn free_table(&mut self, pa: PhysAddr, bytes: usize) {
        let offset = pa.as_usize() - self.base_pa;
        for frame in (offset..offset + bytes).step_by(FRAME) {
            self.push_free(frame);
        }
        self.allocated -= bytes;
    }

    fn phys_to_virt(&self, pa: PhysAddr) -> NonNull<u8> {
        let offset = pa.as_usize().wrapping_sub(self.base_pa);
        assert!(
            offset < self.len,
            "physical address {pa:#x} is outside the buffer"
        );
        // SAFETY: `offset < len`, so the pointer stays inside the buffer.
        unsafe { self.base.add(offset) }
    }
}

impl fmt::Debug for BufferFrames<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferFrames")
            .field("base_pa", &format_args!("{:#x}", self.base_pa))
            .field("len", &format_args!("{:#x}", self.len))
            .field("allocated", &format_args!("{:#x}", self.allocated))
            .finish()
    }
}
