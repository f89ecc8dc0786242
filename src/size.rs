//! Leaf sizes as types ([`Size4K`] … [`Size256T`]) and which modes have which ([`HasLeaf`]),
//! for the size-typed [`PageTable::map_page`](crate::PageTable::map_page). Nothing else lives
//! here.

use crate::arch::mem_layout::{MairLayout, PatLayout};
use crate::arch::sealed::Sealed;
use crate::arch::{self, Arch};
use crate::flags::PageSize;
use crate::{
    AArch64, AArch64S2, Ept, Granule4K, Granule16K, Granule64K, IpaSize, LoongArch64, Sv39, Sv39x4,
    Sv48, Sv48x4, Sv57, VaRange, VaSize, X86, X86Mode,
};

/// A leaf size as a type.
pub trait LeafSize: Sealed + Copy + Default + core::fmt::Debug + 'static {
    /// The size as a value.
    const SIZE: PageSize;
}

macro_rules! leaf_sizes {
    ($($name:ident = $size:ident, $what:literal;)*) => {$(
        #[doc = concat!("A ", $what, " leaf.")]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct $name;
        impl Sealed for $name {}
        impl LeafSize for $name {
            const SIZE: PageSize = PageSize::$size;
        }
    )*};
}

leaf_sizes! {
    Size4K = SIZE_4K, "4 KiB";
    Size16K = SIZE_16K, "16 KiB";
    Size64K = SIZE_64K, "64 KiB";
    Size2M = SIZE_2M, "2 MiB";
    Size32M = SIZE_32M, "32 MiB";
    Size512M = SIZE_512M, "512 MiB";
    Size1G = SIZE_1G, "1 GiB";
    Size512G = SIZE_512G, "512 GiB";
    Size256T = SIZE_256T, "256 TiB";
}

/// Implemented for a mode that has leaves of size `S`: a size the mode lacks does not compile
/// on the typed calls. Each implementation is checked against the mode's geometry at compile
/// time.
pub trait HasLeaf<S: LeafSize>: Arch {}

/// Whether mode `A` has a leaf of `S`'s size at some level that may hold a leaf.
pub(crate) const fn has_leaf<A: Arch, S: LeafSize>() -> bool {
    let mut depth = 1;
    while depth <= arch::max_leaf_depth::<A>() {
        if arch::level_shift::<A>(depth) == S::SIZE.shift() {
            return true;
        }
        depth += 1;
    }
    false
}

impl<M: X86Mode, T: PatLayout> HasLeaf<Size4K> for X86<M, T> {}
impl<M: X86Mode, T: PatLayout> HasLeaf<Size2M> for X86<M, T> {}
impl<M: X86Mode, T: PatLayout> HasLeaf<Size1G> for X86<M, T> {}

macro_rules! has_leaf {
    ($($mode:ty: $($size:ident)*;)*) => {$($(impl HasLeaf<$size> for $mode {})*)*};
}

has_leaf! {
    Sv39: Size4K Size2M Size1G;
    Sv48: Size4K Size2M Size1G Size512G;
    Sv57: Size4K Size2M Size1G Size512G Size256T;
    Sv39x4: Size4K Size2M Size1G;
    Sv48x4: Size4K Size2M Size1G Size512G;
    LoongArch64: Size4K Size2M Size1G;
    Ept: Size4K Size2M Size1G;
}

impl<I: IpaSize> HasLeaf<Size4K> for AArch64S2<I> {}
impl<I: IpaSize> HasLeaf<Size2M> for AArch64S2<I> {}
impl<I: IpaSize> HasLeaf<Size1G> for AArch64S2<I> {}
/// The leaves of every AArch64 stage 1 mode of a granule, whatever its VA size, regime and
/// memory-type layout.
macro_rules! aarch64_leaves {
    ($($granule:ident: $($size:ident)*;)*) => {$($(
        impl<V: VaSize<$granule>, R: VaRange, M: MairLayout> HasLeaf<$size>
            for AArch64<V, R, $granule, M>
        {
        }
    )*)*};
}

aarch64_leaves! {
    Granule4K: Size4K Size2M Size1G;
    Granule16K: Size16K Size32M;
    Granule64K: Size64K Size512M;
}
