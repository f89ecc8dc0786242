//! [`PagingError`]: every way a page-table call can fail. Nothing else lives here.

use core::fmt;

use memory_addr::{PhysAddr, VirtAddr};

use crate::flags::{MappingFlags, PageSize};

/// Why a page-table call failed.
///
/// Whatever the variant, the call that returned it changed nothing: the table's memory is as it
/// was before the call and no frame was allocated or freed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PagingError {
    /// The [`PagingHandler`](crate::PagingHandler) had no frame for a table the call needs.
    OutOfFrames,
    /// A virtual address is not aligned to the page size the call works in.
    UnalignedVa(VirtAddr),
    /// A physical address is not aligned to the page size the call works in.
    UnalignedPa(PhysAddr),
    /// A length is not a multiple of the page size the call works in.
    UnalignedLen(usize),
    /// A region of length zero.
    EmptyRange,
    /// `start + len` runs past the top of the 64-bit address space.
    RangeWraps,
    /// A virtual address outside the paging mode's address space: not canonical (x86, RISC-V,
    /// LoongArch), or outside the half that this table translates (AArch64 TTBR0 / TTBR1).
    NotCanonical(VirtAddr),
    /// A physical address wider than the architecture's output address.
    PaTooWide(PhysAddr),
    /// Part of the range is already mapped; the address is the first mapped one found.
    AlreadyMapped(VirtAddr),
    /// The address is not mapped.
    NotMapped(VirtAddr),
    /// The address lies inside a larger leaf that starts elsewhere; a single-leaf call must
    /// name the leaf's first address (region calls split leaves instead).
    InsideLeaf {
        /// The first address of the leaf that holds the address.
        leaf: VirtAddr,
        /// The leaf's size.
        size: PageSize,
    },
    /// The architecture cannot express this combination of flags (write-only on RISC-V,
    /// a mapping without READ on x86, ...): mapping it would give a different mapping.
    FlagsNotExpressible(MappingFlags),
    /// The paging mode has no leaf of this size.
    SizeNotSupported(PageSize),
    /// The address lies in a range this table borrows from another one
    /// ([`PageTable::borrow_shared`](crate::PageTable::borrow_shared)): edit it through its owner.
    Borrowed(VirtAddr),
    /// The change at this address would replace a valid entry in a way the architecture allows
    /// only with break-before-make (AArch64: a new output address, memory type, shareability or
    /// nG, or a block split into a table), and the table is
    /// [`Liveness::LiveNoBreak`](crate::Liveness::LiveNoBreak).
    NeedsBreak(VirtAddr),
    /// The [`PagingHandler`](crate::PagingHandler) returned a frame the mode cannot use: not
    /// aligned to the table's size, beyond the mode's physical-address width, reached through a
    /// pointer that is not 8-byte aligned, or (LoongArch) at physical address 0. The frame was
    /// given back to the handler.
    BadFrame(PhysAddr),
    /// The address lies in a range this table shares with borrowers
    /// ([`PageTable::share`](crate::PageTable::share)), where the change would replace the
    /// table below a root entry (a root-level leaf); or a second shared range was asked for
    /// that would not make one contiguous range with the first.
    Shared(VirtAddr),
    /// [`PageTable::borrow_shared`](crate::PageTable::borrow_shared) of a range the other table does
    /// not share ([`PageTable::share`](crate::PageTable::share)).
    NotShared(VirtAddr),
    /// A marker's payload needs more bits than the mode's markers hold
    /// ([`marker_bits`](crate::arch::marker_bits)).
    PayloadTooWide(u64),
    /// No marker at the address ([`PageTable::take_marker`](crate::PageTable::take_marker)).
    NotMarker(VirtAddr),
    /// A value for a leaf's software bits with a bit the mode does not offer
    /// ([`arch::soft_bits`](crate::arch::soft_bits)).
    SoftBitsTooWide(u64),
    /// An ASID, PCID or VMID wider than the mode's identifiers
    /// ([`Arch::TLB_ID_BITS`](crate::Arch::TLB_ID_BITS)).
    TlbIdTooWide {
        /// The identifier asked for.
        id: u16,
        /// How many bits the mode's identifiers have.
        bits: u32,
    },
}

impl fmt::Display for PagingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::OutOfFrames => write!(f, "out of frames for page tables"),
            Self::UnalignedVa(va) => write!(f, "virtual address {va:#x} is not aligned"),
            Self::UnalignedPa(pa) => write!(f, "physical address {pa:#x} is not aligned"),
            Self::UnalignedLen(len) => {
                write!(f, "length {len:#x} is not a multiple of the page size")
            }
            Self::EmptyRange => write!(f, "the range is empty"),
            Self::RangeWraps => write!(f, "the range wraps past the top of the address space"),
            Self::NotCanonical(va) => {
                write!(f, "virtual address {va:#x} is outside the address space")
            }
            Self::PaTooWide(pa) => write!(
                f,
                "physical address {pa:#x} is wider than the architecture allows"
            ),
            Self::AlreadyMapped(va) => write!(f, "virtual address {va:#x} is already mapped"),
            Self::NotMapped(va) => write!(f, "virtual address {va:#x} is not mapped"),
            Self::InsideLeaf { leaf, size } => {
                write!(f, "the address lies inside the {size} leaf at {leaf:#x}")
            }
            Self::FlagsNotExpressible(flags) => {
                write!(
                    f,
                    "flags {flags:?} cannot be expressed by this architecture"
                )
            }
            Self::SizeNotSupported(size) => write!(f, "no {size} leaves in this paging mode"),
            Self::Borrowed(va) => write!(f, "virtual address {va:#x} is in a borrowed range"),
            Self::Shared(va) => write!(f, "virtual address {va:#x} is in a shared range"),
            Self::NotShared(va) => {
                write!(
                    f,
                    "virtual address {va:#x} is not in a range the other table shares"
                )
            }
            Self::PayloadTooWide(payload) => write!(
                f,
                "marker payload {payload:#x} is wider than this mode's markers hold"
            ),
            Self::NotMarker(va) => write!(f, "no marker at virtual address {va:#x}"),
            Self::SoftBitsTooWide(value) => write!(
                f,
                "software bits {value:#x} are more than this mode's leaves offer"
            ),
            Self::TlbIdTooWide { id, bits } => write!(
                f,
                "TLB identifier {id:#x} is wider than this mode's {bits} bits"
            ),
            Self::BadFrame(pa) => write!(
                f,
                "the handler returned the frame {pa:#x}, which the mode cannot use as a table"
            ),
            Self::NeedsBreak(va) => write!(
                f,
                "the change at {va:#x} needs break-before-make, which the table's liveness forbids"
            ),
        }
    }
}

impl core::error::Error for PagingError {}
