//! Levels as types ([`L1`] … [`L5`]), the typed entry and table views built on them, and the
//! walk (in `walk`) that every [`PageTable`](crate::PageTable) operation is made of.
//!
//! Depth 1 is the last level (4 KiB leaves on every 4 KiB-granule mode); the root is at depth
//! 3, 4 or 5. In Arm's numbering, `L4` … `L1` are levels 0 … 3; in Intel's, PML4, PDPT, PD and
//! PT; on RISC-V, `VPN[3]` … `VPN[0]`.

use core::fmt::Debug;

use crate::arch::sealed::Sealed;

mod entry;
mod table;
pub(crate) mod walk;

use walk::Descend;

pub use entry::{Entry, Leaf, NoTable};
pub(crate) use table::TableRef;
pub use table::{Descriptor, Table, TableFrame};

/// A level of the table tree. Only a level with a level below ([`HasNext`]) has entries that
/// lead anywhere: [`L1`], the last level, has none, and nothing descends from it.
///
/// ```compile_fail,E0277
/// # use pagetable::{levels::HasNext, *};
/// // Going one level down is defined only where there is a level below, so code that would
/// // descend from the last level does not compile.
/// fn frame_below<L: HasNext>(pa: PhysAddr) -> Option<TableFrame<X86_64, L::Next>> {
///     TableFrame::new(pa)
/// }
/// let _ = frame_below::<L1>(memory_addr::pa!(0x1000));
/// ```
/// Nor is there a "level below" of any level, as there was (`Level::Below`, with `L1` below
/// itself):
/// ```compile_fail,E0220
/// # use pagetable::*;
/// fn frame_below<L: Level>(pa: PhysAddr) -> Option<TableFrame<X86_64, L::Below>> {
///     TableFrame::new(pa)
/// }
/// let _ = frame_below::<L1>(memory_addr::pa!(0x1000));
/// ```
/// The same descent from `L2` compiles:
/// ```
/// # use pagetable::{levels::HasNext, *};
/// # fn frame_below<L: HasNext>(pa: PhysAddr) -> Option<TableFrame<X86_64, L::Next>> {
/// #     TableFrame::new(pa)
/// # }
/// let l1: Option<TableFrame<X86_64, L1>> = frame_below::<L2>(memory_addr::pa!(0x1000));
/// assert!(l1.is_some());
/// ```
pub trait Level: Sealed + Descend + Copy + Default + Debug + Send + Sync + 'static {
    /// 1 for the last level, up to 5.
    const DEPTH: u8;
}

/// A level whose entries may point to a table one level down: every level but [`L1`].
pub trait HasNext: Level {
    /// The level its table entries point to.
    type Next: Level;
}

/// Implemented for a level `Self` at or below level `M`: where `M` is an arch's
/// [`MaxLeaf`](crate::Arch::MaxLeaf), a leaf may sit at `Self`.
pub trait AtMost<M: Level>: Level {}

/// What an entry holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// Nothing: the hardware faults on a translation through it.
    Empty,
    /// A pointer to a table one level down.
    Table,
    /// A leaf: a page or block mapping (or an inaccessible one, which the MMU sees as invalid).
    Leaf,
    /// A marker: a last-level entry that the MMU sees as invalid, holding a caller's payload.
    Marker,
}

macro_rules! levels {
    ($($name:ident = $depth:literal;)*) => {$(
        #[doc = concat!("The level at depth ", $depth, ".")]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct $name;
        impl Sealed for $name {}
        impl Level for $name {
            const DEPTH: u8 = $depth;
        }
    )*};
}

levels! {
    L1 = 1;
    L2 = 2;
    L3 = 3;
    L4 = 4;
    L5 = 5;
}

impl HasNext for L2 {
    type Next = L1;
}
impl HasNext for L3 {
    type Next = L2;
}
impl HasNext for L4 {
    type Next = L3;
}
impl HasNext for L5 {
    type Next = L4;
}

macro_rules! at_most {
    ($($low:ident: $($high:ident)*;)*) => {$($(impl AtMost<$high> for $low {})*)*};
}

// Every level is at least `L1`: generic code may build a 4 KiB leaf for any mode.
impl<M: Level> AtMost<M> for L1 {}

at_most! {
    L2: L2 L3 L4 L5;
    L3: L3 L4 L5;
    L4: L4 L5;
    L5: L5;
}
