//! The input address of a table: a virtual address for stage 1, a guest-physical one for
//! stage 2 ([`Arch::Addr`](crate::Arch::Addr)), so that a hypervisor's calls on a stage 2
//! table cannot be handed a virtual address by mistake, nor a kernel's a guest-physical one.
//!
//! ```
//! use memory_addr::pa;
//! use pagetable::{AArch64S2, BufferFrames, Ipa40, MappingFlags as F, PageSize, PageTable, gpa};
//! let mut memory = vec![0u64; 8 * 512];
//! let frames = BufferFrames::new(&mut memory, pa!(0x8000_0000)).unwrap();
//! let mut stage2 = PageTable::<AArch64S2<Ipa40>, _>::new(frames)?;
//! stage2.map(gpa!(0x4000_0000), pa!(0x2_0000_0000), PageSize::SIZE_4K, F::READ)?.ignore();
//! let t = stage2.query(gpa!(0x4000_0123))?;
//! assert_eq!((t.pa, t.leaf_va), (pa!(0x2_0000_0123), gpa!(0x4000_0000)));
//! # Ok::<(), pagetable::PagingError>(())
//! ```
//!
//! A virtual address is refused at compile time:
//!
//! ```compile_fail,E0308
//! use memory_addr::{pa, va};
//! use pagetable::{AArch64S2, BufferFrames, Ipa40, PageTable};
//! let mut memory = vec![0u64; 8 * 512];
//! let frames = BufferFrames::new(&mut memory, pa!(0x8000_0000)).unwrap();
//! let stage2 = PageTable::<AArch64S2<Ipa40>, _>::new(frames).unwrap();
//! let _ = stage2.query(va!(0x4000_0000));
//! ```
//!
//! Errors ([`PagingError`](crate::PagingError)) carry the address as the number it is, in a
//! `VirtAddr`, whatever the stage.

memory_addr::def_usize_addr! {
    /// A guest-physical address: the input of a stage 2 table ([`AArch64S2`](crate::AArch64S2),
    /// [`Sv39x4`](crate::Sv39x4), [`Sv48x4`](crate::Sv48x4), [`Ept`](crate::Ept)). Build one
    /// with [`gpa!`](crate::gpa) or `GuestPhysAddr::from(usize)`.
    pub type GuestPhysAddr;
}

memory_addr::def_usize_addr_formatter! {
    GuestPhysAddr = "GPA:{}";
}

/// A [`GuestPhysAddr`] from a `usize` expression, as `memory_addr::va!` builds a `VirtAddr`.
///
/// ```
/// use pagetable::{GuestPhysAddr, gpa};
/// assert_eq!(gpa!(0x4000_0000), GuestPhysAddr::from(0x4000_0000));
/// ```
#[macro_export]
macro_rules! gpa {
    ($addr:expr) => {
        $crate::GuestPhysAddr::from_usize($addr)
    };
}
