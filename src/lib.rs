//! Typed hardware page tables for x86_64, AArch64, RISC-V and LoongArch64.
//!
//! `pagetable` builds, reads and edits the page tables that an MMU walks. One facade,
//! [`PageTable<A, H>`], serves every paging mode; the mode `A` is a zero-sized marker type
//! (stage 1: [`X86_64`], [`X86_64La57`], [`AArch64`] with any granule, [`Sv39`], [`Sv48`],
//! [`Sv57`], [`LoongArch64`]; stage 2: [`AArch64S2`], [`Sv39x4`], [`Sv48x4`], [`Ept`]) and `H`
//! is the operating system's [`PagingHandler`]: where table frames come from and how a physical
//! address is reached. [`Liveness`] says whether an MMU walks the table, which decides how
//! AArch64's break-before-make changes are made.
//!
//! * Levels are types ([`L1`] … [`L5`]): the walk for each operation is unrolled per level at
//!   compile time, and the typed [`Descriptor`] API rejects a table entry that points anywhere
//!   but one level down, or a leaf at a level that cannot hold one.
//! * Every change returns a [`Flush`] token that must be used: forgetting a TLB flush is a
//!   compile-time warning.
//! * Every failure is a [`PagingError`], and a failed call leaves the table exactly as it was and
//!   leaks no frame: range operations reserve every frame they need before they change anything.
//!
//! ```
//! use pagetable::{BufferFrames, HugePages, MappingFlags, PageTable, Sv48};
//! use memory_addr::{pa, va};
//!
//! // A host tool building tables for another machine: frames come from a buffer that stands
//! // for the guest's physical memory at 0x8000_0000.
//! let mut memory = vec![0u64; 64 << 9];
//! let frames = BufferFrames::new(&mut memory, pa!(0x8000_0000)).unwrap();
//! let mut pt = PageTable::<Sv48, _>::new(frames).unwrap();
//!
//! let rw = MappingFlags::READ | MappingFlags::WRITE;
//! pt.map_region(va!(0xffff_ffc0_0000_0000), pa!(0x8000_0000), 1 << 30, rw, HugePages::Allowed)
//!     .unwrap()
//!     .ignore(); // not a live table: nothing to flush
//! let t = pt.query(va!(0xffff_ffc0_1234_5678)).unwrap();
//! assert_eq!(t.pa, pa!(0x9234_5678));
//! assert_eq!(t.flags, rw);
//! ```
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![deny(missing_debug_implementations)]
#![warn(missing_docs)]

#[cfg(test)]
extern crate std;

mod activation;
mod addr;
pub mod arch;
mod cursor;
mod entry_edit;
mod error;
mod flags;
mod flush;
mod frames;
mod handler;
pub mod levels;
mod liveness;
mod markers;
mod page_table;
mod pair;
mod remembered;
mod retired;
mod size;
mod state;
mod tlb;

pub use addr::GuestPhysAddr;
pub use arch::aarch64::{
    AArch64, El2, El3, Granule, Granule4K, Granule16K, Granule64K, Lower, Regime, Upper, Va36,
    Va39, Va42, Va47, Va48, VaRange, VaSize,
};
pub use arch::aarch64_s2::{AArch64S2, Ipa40, Ipa48, IpaSize};
pub use arch::loongarch64::LoongArch64;
pub use arch::riscv::{Riscv, RiscvMode, Sv39, Sv39x4, Sv48, Sv48x4, Sv57};
pub use arch::x86_64::{X86, X86_64, X86_64La57, X86Mode};
pub use arch::x86_ept::Ept;
pub use arch::{Arch, VaSpace};
pub use cursor::LastTableCursor;
pub use entry_edit::EntryEdit;
pub use error::PagingError;
pub use flags::{AccessState, MappingFlags, MemType, PageSize};
pub use flush::{FLUSH_ALL_THRESHOLD, Flush};
pub use frames::BufferFrames;
pub use handler::PagingHandler;
pub use levels::{
    Descriptor, Entry, EntryKind, L1, L2, L3, L4, L5, Leaf, Level, NoTable, Table, TableFrame,
};
pub use liveness::Liveness;
pub use markers::Lookup;
pub use page_table::{Cleared, HugePages, Mapping, PageTable, Translation};
pub use pair::{AArch64Pair, PairFlush};
pub use retired::Retired;
pub use size::{
    HasLeaf, LeafSize, Size1G, Size2M, Size4K, Size16K, Size32M, Size64K, Size256T, Size512G,
    Size512M,
};
pub use state::TableState;
pub use tlb::TlbScope;

/// Re-exported so that callers name the same address types the API takes.
pub use memory_addr::{PhysAddr, VirtAddr};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

// The crate does address arithmetic in `usize` (memory_addr's representation) and PTEs are
// 64-bit: every supported architecture is 64-bit, and so must be the host that builds tables.
static_assertions::const_assert_eq!(core::mem::size_of::<usize>(), 8);
