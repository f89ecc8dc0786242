//! [`Entry`]: one table entry decoded at the arch boundary (empty, a table one level down, or
//! a leaf with its address, flags and access state), and [`NoTable`], what a last-level entry
//! cannot point to.

use memory_addr::PhysAddr;

use super::{Descriptor, EntryKind, HasNext, L1, Level, TableFrame};
use crate::arch::Arch;
use crate::flags::{AccessState, MappingFlags};

/// What an entry holds, decoded: `T` is what a table entry points to
/// ([`TableFrame`] of the level below, or [`NoTable`] at the last level).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry<T> {
    /// Nothing: the hardware faults on a translation through it.
    Empty,
    /// A table one level down.
    Table(T),
    /// A page or block mapping (or an inaccessible one: see
    /// [`MappingFlags::INACCESSIBLE`]).
    Leaf(Leaf),
    /// A marker's payload (last level only): an entry the MMU faults on, holding what the
    /// caller stored with [`PageTable::set_marker`](crate::PageTable::set_marker).
    Marker(u64),
}

/// A leaf as [`Descriptor::decode`] reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// The first physical address it maps.
    pub pa: PhysAddr,
    /// What it allows, and its memory type.
    pub flags: MappingFlags,
    /// What the hardware recorded in it.
    pub state: AccessState,
}

/// What a last-level entry points to: nothing. No value of it exists, so
/// `Entry::<NoTable>::Table` cannot be built or matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoTable {}

/// The leaf `pte` at level `L`, decoded.
#[inline(always)]
fn leaf<A: Arch, L: Level>(pte: u64) -> Leaf {
    Leaf {
        pa: PhysAddr::from(A::leaf_addr::<L>(pte) as usize),
        flags: A::leaf_flags::<L>(pte),
        state: A::leaf_state::<L>(pte),
    }
}

impl<A: Arch, L: HasNext> Descriptor<A, L> {
    /// The entry decoded: empty, the table one level down it points to, or a leaf.
    ///
    /// ```
    /// use pagetable::{Descriptor, Entry, L1, L2, MappingFlags, TableFrame, X86_64};
    /// use memory_addr::pa;
    ///
    /// let l1 = TableFrame::<X86_64, L1>::new(pa!(0x5000)).unwrap();
    /// assert_eq!(Descriptor::<X86_64, L2>::table(l1).decode(), Entry::Table(l1));
    /// let block = Descriptor::<X86_64, L2>::leaf(pa!(0x20_0000), MappingFlags::READ).unwrap();
    /// let Entry::Leaf(leaf) = block.decode() else { panic!() };
    /// assert_eq!(leaf.pa, pa!(0x20_0000));
    /// ```
    #[inline(always)]
    #[must_use]
    pub fn decode(self) -> Entry<TableFrame<A, L::Next>> {
        let pte = self.bits();
        match A::entry_kind::<L>(pte) {
            EntryKind::Empty => Entry::Empty,
            EntryKind::Table => Entry::Table(TableFrame::from_raw(A::table_addr(pte))),
            EntryKind::Leaf => Entry::Leaf(leaf::<A, L>(pte)),
            EntryKind::Marker => Entry::Marker(crate::arch::marker_payload::<A>(pte)),
        }
    }
}

impl<A: Arch> Descriptor<A, L1> {
    /// The last-level entry decoded: empty, a leaf or a marker (no entry of the last level points to a
    /// table; [`Arch::entry_kind`] never says so there).
    ///
    /// ```
    /// use pagetable::{Descriptor, Entry, L1, MappingFlags, Sv39};
    /// use memory_addr::pa;
    ///
    /// let page = Descriptor::<Sv39, L1>::leaf(pa!(0x8000_1000), MappingFlags::READ).unwrap();
    /// match page.decode() {
    ///     Entry::Leaf(leaf) => assert_eq!(leaf.pa, pa!(0x8000_1000)),
    ///     Entry::Empty | Entry::Marker(_) => unreachable!(),
    ///     Entry::Table(never) => match never {},
    /// }
    /// ```
    #[inline(always)]
    #[must_use]
    pub fn decode(self) -> Entry<NoTable> {
        let pte = self.bits();
        match A::entry_kind::<L1>(pte) {
            EntryKind::Leaf => Entry::Leaf(leaf::<A, L1>(pte)),
            EntryKind::Marker => Entry::Marker(crate::arch::marker_payload::<A>(pte)),
            EntryKind::Empty | EntryKind::Table => Entry::Empty,
        }
    }
}
