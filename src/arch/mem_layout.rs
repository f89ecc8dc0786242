//! The memory-type layout a kernel programs, as a zero-sized parameter of its mode: which
//! MAIR attribute index (AArch64 stage 1) or which PAT entry (x86) holds normal write-back,
//! device and normal non-cacheable memory. The crate encodes [`MemType`](crate::MemType) into
//! a leaf through the layout and decodes it back the same way, so a kernel keeps the MAIR or
//! IA32_PAT its boot code already writes.
//!
//! * [`Mair<NORMAL, DEVICE, UNCACHED>`](Mair): AttrIndx of each type; the default
//!   `Mair<0, 1, 2>` is the layout of [`aarch64::MAIR`](crate::arch::aarch64::MAIR), and
//!   `Mair<1, 0, 2>` is the one page_table_multiarch's kernels program (0 device, 1 normal,
//!   2 non-cacheable).
//! * [`Pat<VALUE>`](Pat): the IA32_PAT value itself; the crate finds the first write-back,
//!   uncacheable and write-combining entries in it. The default is Linux's layout
//!   ([`x86_64::PAT`](crate::arch::x86_64::PAT)); [`ResetPat`] is the value the CPU comes out
//!   of reset with (no write-combining entry: [`MemType::Uncached`](crate::MemType) is then
//!   refused as [`FlagsNotExpressible`](crate::PagingError::FlagsNotExpressible)).
//!
//! A layout that cannot work (two types on one index, an index past 7, an IA32_PAT without a
//! write-back or an uncacheable entry, or with a reserved encoding) fails to compile where a
//! table of that mode is used:
//!
//! ```compile_fail,E0080
//! use pagetable::arch::mem_layout::{Mair, MairLayout};
//! // Normal and device memory on one index.
//! let _ = <Mair<0, 0, 2> as MairLayout>::NORMAL;
//! ```
//!
//! ```compile_fail,E0080
//! use pagetable::arch::mem_layout::{Pat, PatLayout};
//! // Every entry write-combining: no write-back entry.
//! let _ = <Pat<0x0101_0101_0101_0101> as PatLayout>::NORMAL;
//! ```
//!
//! Source: Arm ARM (DDI 0487) D8.6.2 (MAIR_ELx attribute encodings: 0xff normal inner and
//! outer write-back non-transient read/write-allocate, 0x44 normal inner and outer
//! non-cacheable, 0x04 Device-nGnRE); Intel SDM vol. 3A 13.12.2-3 (IA32_PAT entries, memory
//! type encodings UC 0, WC 1, WT 4, WP 5, WB 6, UC- 7; PAT:PCD:PWT select the entry).

use core::fmt::Debug;

use crate::arch::sealed::Sealed;

/// A MAIR attribute-index layout; sealed, implemented by [`Mair`].
pub trait MairLayout: Sealed + Copy + Default + Debug + Send + Sync + 'static {
    /// AttrIndx of normal write-back memory.
    const NORMAL: u8;
    /// AttrIndx of Device-nGnRE memory.
    const DEVICE: u8;
    /// AttrIndx of normal non-cacheable memory.
    const UNCACHED: u8;
    /// A MAIR_ELx value with these attributes at these indices (0xff, 0x04, 0x44) and
    /// Device-nGnRnE (0x00) at the other five.
    const VALUE: u64;
}

/// The MAIR layout with normal write-back memory at AttrIndx `NORMAL`, Device-nGnRE at
/// `DEVICE` and normal non-cacheable at `UNCACHED`: three distinct indices below 8.
///
/// ```
/// use pagetable::arch::mem_layout::{Mair, MairLayout};
/// // page_table_multiarch's layout: 0 device, 1 normal, 2 non-cacheable.
/// assert_eq!(<Mair<1, 0, 2> as MairLayout>::VALUE, 0x44_ff_04);
/// assert_eq!(<Mair as MairLayout>::VALUE, pagetable::arch::aarch64::MAIR);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mair<const NORMAL: u8 = 0, const DEVICE: u8 = 1, const UNCACHED: u8 = 2>;

impl<const N: u8, const D: u8, const U: u8> Sealed for Mair<N, D, U> {}

impl<const N: u8, const D: u8, const U: u8> Mair<N, D, U> {
    /// Evaluated wherever an index is used: a layout that cannot work does not compile.
    const VALID: () = assert!(
        N < 8 && D < 8 && U < 8 && N != D && N != U && D != U,
        "a MAIR layout needs three distinct attribute indices below 8"
    );
}

impl<const N: u8, const D: u8, const U: u8> MairLayout for Mair<N, D, U> {
    const NORMAL: u8 = {
        let () = Self::VALID;
        N
    };
    const DEVICE: u8 = {
        let () = Self::VALID;
        D
    };
    const UNCACHED: u8 = {
        let () = Self::VALID;
        U
    };
    const VALUE: u64 = {
        let () = Self::VALID;
        0xff << (8 * N as u32) | 0x04 << (8 * D as u32) | 0x44 << (8 * U as u32)
    };
}

/// An IA32_PAT layout; sealed, implemented by [`Pat`].
pub trait PatLayout: Sealed + Copy + Default + Debug + Send + Sync + 'static {
    /// The IA32_PAT value, entry 0 in the low byte.
    const VALUE: u64;
    /// PAT index (PAT:PCD:PWT) of the first write-back entry.
    const NORMAL: u8;
    /// PAT index of the first uncacheable entry (UC, else UC-).
    const DEVICE: u8;
    /// PAT index of the first write-combining entry, or 8 where there is none.
    const UNCACHED: u8;
    /// The [`MemType`](crate::MemType) each index decodes to, as the memory-type field of
    /// [`MappingFlags`](crate::MappingFlags) (0 normal, 1 device, 2 uncached): WB, WT and WP
    /// read as normal, WC as uncached, UC and UC- as device.
    const MEM_TYPE: [u8; 8];
}

/// The IA32_PAT layout `VALUE` (entry 0 in the low byte), by default Linux's:
/// WB, WC, UC-, UC, WB, WP, UC-, WT.
///
/// ```
/// use pagetable::arch::mem_layout::{Pat, PatLayout, ResetPat};
/// assert_eq!((<Pat as PatLayout>::NORMAL, <Pat as PatLayout>::DEVICE), (0, 3));
/// assert_eq!(<Pat as PatLayout>::UNCACHED, 1);
/// // The reset value (WB, WT, UC-, UC, ...) has no write-combining entry.
/// assert_eq!(<ResetPat as PatLayout>::DEVICE, 3);
/// assert_eq!(<ResetPat as PatLayout>::UNCACHED, 8);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pat<const VALUE: u64 = 0x0407_0506_0007_0106>;

/// The IA32_PAT value at reset (Intel SDM 13.12.4): WB, WT, UC-, UC, WB, WT, UC-, UC. A kernel
/// that never writes IA32_PAT runs with this layout.
pub type ResetPat = Pat<0x0007_0406_0007_0406>;

impl<const V: u64> Sealed for Pat<V> {}

/// SDM table 13-10: UC 0, WC 1, WT 4, WP 5, WB 6, UC- 7.
const UC: u8 = 0;
const WC: u8 = 1;
const WB: u8 = 6;
const UC_MINUS: u8 = 7;

/// The first index of `value` holding memory type `ty`, or 8.
const fn find(value: u64, ty: u8) -> u8 {
    let mut i = 0;
    while i < 8 {
        if (value >> (8 * i)) as u8 == ty {
            return i;
        }
        i += 1;
    }
    8
}

impl<const V: u64> Pat<V> {
    /// Evaluated wherever the layout is used: a value that cannot work does not compile.
    const VALID: () = {
        let mut i = 0;
        while i < 8 {
            let ty = (V >> (8 * i)) as u8;
            assert!(
                matches!(ty, 0 | 1 | 4..=7),
                "an IA32_PAT entry holds a reserved memory type (SDM table 13-10)"
            );
            i += 1;
        }
        assert!(
            find(V, WB) < 8,
            "an IA32_PAT layout needs a write-back entry"
        );
        assert!(
            find(V, UC) < 8 || find(V, UC_MINUS) < 8,
            "an IA32_PAT layout needs an uncacheable entry"
        );
    };
}

impl<const V: u64> PatLayout for Pat<V> {
    const VALUE: u64 = {
        let () = Self::VALID;
        V
    };
    const NORMAL: u8 = {
        let () = Self::VALID;
        find(V, WB)
    };
    const DEVICE: u8 = {
        let () = Self::VALID;
        if find(V, UC) < 8 {
            find(V, UC)
        } else {
            find(V, UC_MINUS)
        }
    };
    const UNCACHED: u8 = {
        let () = Self::VALID;
        find(V, WC)
    };
    const MEM_TYPE: [u8; 8] = {
        let () = Self::VALID;
        let mut types = [0; 8];
        let mut i = 0;
        while i < 8 {
            types[i] = match (V >> (8 * i)) as u8 {
                WC => 2,
                UC | UC_MINUS => 1,
                _ => 0,
            };
            i += 1;
        }
        types
    };
}
