//! [`BufferFrames`]: a [`PagingHandler`] that hands out table frames from a caller's buffer, for
//! host tools that build another machine's tables and for tests. Nothing else lives here.

use core::fmt;
use core::ptr::NonNull;

use memory_addr::PhysAddr;

use crate::handler::PagingHandler;

const FRAME: usize = 4096;
/// Free lists kept: one per block size 4 KiB << k, for k below this (up to 128 KiB).
const SIZES: usize = 6;

/// Hands out table blocks (4 KiB-aligned or larger, aligned to their size) from a byte buffer
/// that stands for physical memory starting at a chosen address, in O(1): freed blocks go on a
/// list for their size threaded through the blocks themselves, new ones are cut from the unused
/// end. Each size up to 128 KiB has its list (tables of 16 KiB and 64 KiB granules, and
/// concatenated stage 2 roots, are reused as such); a larger freed block goes back as frames.
pub struct BufferFrames<'a> {
    base: NonNull<u8>,
    len: usize,
    base_pa: usize,
    /// Offset of the first never-allocated byte.
    next: usize,
    /// Per size `FRAME << k`: offset of the first free block, or `usize::MAX`.
    free: [usize; SIZES],
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
    /// `None` if `base_pa` is not 4 KiB-aligned, no whole frame fits, or the buffer would
    /// reach past the top of the 64-bit physical address space.
    pub fn new(buffer: &'a mut [u64], base_pa: PhysAddr) -> Option<Self> {
        let len = buffer.len() * 8 / FRAME * FRAME;
        if base_pa.as_usize() % FRAME != 0 || len == 0 {
            return None;
        }
        base_pa.as_usize().checked_add(len - 1)?;
        Some(Self {
            base: NonNull::from(buffer).cast::<u8>(),
            len,
            base_pa: base_pa.as_usize(),
            next: 0,
            free: [usize::MAX; SIZES],
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

    /// Puts the free block at `offset` on the list of size `FRAME << k`.
    fn push_free(&mut self, offset: usize, k: usize) {
        // SAFETY: `offset` is a whole block inside the buffer that nothing uses now; the first
        // 8 bytes of a free block hold the link, 8-aligned because blocks are.
        unsafe {
            self.base
                .as_ptr()
                .add(offset)
                .cast::<usize>()
                .write(self.free[k])
        };
        self.free[k] = offset;
    }

    /// Takes a block off the list of size `FRAME << k`.
    fn pop_free(&mut self, k: usize) -> Option<usize> {
        let offset = self.free[k];
        if offset == usize::MAX {
            return None;
        }
        // SAFETY: `offset` is on the list, so its first 8 bytes hold the next link.
        self.free[k] = unsafe { self.base.as_ptr().add(offset).cast::<usize>().read() };
        Some(offset)
    }
}

// SAFETY: blocks are cut from disjoint parts of the buffer (or are blocks from a free list,
// which holds only blocks given back, each on the list of its own size), aligned to their size in physical addresses because
// cuts round up to `bytes`; every pointer is 8-aligned because the buffer is made of words and
// blocks start at multiples of 4 KiB from it.
// `phys_to_virt` maps each physical address to the one byte of the buffer standing for it.
unsafe impl PagingHandler for BufferFrames<'_> {
    fn alloc_table(&mut self, bytes: usize) -> Option<PhysAddr> {
        if !bytes.is_power_of_two() || bytes < FRAME {
            return None;
        }
        let k = (bytes / FRAME).trailing_zeros() as usize;
        let reused = if k < SIZES { self.pop_free(k) } else { None };
        let offset = if let Some(offset) = reused {
            offset
        } else {
            // `base_pa + len - 1` fits (see `new`), so only the rounding up can overflow.
            let start = (self.base_pa + self.next).checked_next_multiple_of(bytes)? - self.base_pa;
            if start.checked_add(bytes)? > self.len {
                return None;
            }
            // The frames skipped to reach the alignment are not lost: they go on the list.
            for skipped in (self.next..start).step_by(FRAME) {
                self.push_free(skipped, 0);
            }
            self.next = start + bytes;
            start
        };
        self.allocated += bytes;
        Some(PhysAddr::from(self.base_pa + offset))
    }

    unsafe fn free_table(&mut self, pa: PhysAddr, bytes: usize) {
        let offset = pa.as_usize() - self.base_pa;
        let k = (bytes / FRAME).trailing_zeros() as usize;
        if k < SIZES {
            self.push_free(offset, k);
        } else {
            for frame in (offset..offset + bytes).step_by(FRAME) {
                self.push_free(frame, 0);
            }
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
