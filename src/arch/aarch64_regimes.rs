//! The AArch64 stage 1 translation regimes a table can serve, as the range parameter `R` of
//! [`AArch64`](super::aarch64::AArch64): which TTBR holds its root, which TLBI instructions
//! reach its entries, and the descriptor rules that differ between them.
//!
//! | marker | regime | root register | ASID | leaf attributes |
//! |---|---|---|---|---|
//! | [`Lower`] | EL1&0 (and EL2&0 under VHE), lower range | TTBR0_EL1 | 16 bits | AP\[1\] = EL0 access, nG, PXN, UXN |
//! | [`Upper`] | EL1&0 (and EL2&0 under VHE), upper range | TTBR1_EL1 | 16 bits | as [`Lower`] |
//! | [`El2`] | EL2 without VHE (HCR_EL2.E2H = 0) | TTBR0_EL2 | none | AP\[1\] RES1, no nG, XN (bit 54) |
//! | [`El3`] | EL3 | TTBR0_EL3 | none | as [`El2`], and NS (bit 5) |
//!
//! Under VHE (HCR_EL2.E2H = 1, TGE = 1) the EL2&0 regime has the EL1&0 descriptor format, both
//! halves and ASIDs; the EL1 register names and TLBI instructions executed at EL2 reach its
//! registers and entries, so [`Lower`] and [`Upper`] tables serve it unchanged.
//!
//! In the regimes with one privilege level there is no EL0 access to grant and no ASID to tag
//! with: a leaf is refused [`USER`](crate::MappingFlags::USER) and must be
//! [`GLOBAL`](crate::MappingFlags::GLOBAL) (the only kind of translation the regime has, so a
//! leaf reads back exactly as it was written); execute-never is the one XN bit. An EL3 leaf may
//! be [`NON_SECURE`](crate::MappingFlags::NON_SECURE): its output address is in the non-secure
//! physical address space.
//!
//! Source: Arm ARM (DDI 0487) D8.1 (translation regimes), D8.4 (stage 1 block and page
//! descriptor attributes: AP\[1\] RES1, XN and PXN in regimes with one privilege level),
//! D8.6 (NS), the TCR_EL2 and TCR_EL3 register descriptions (D23.2), C5.5 (TLBI VAE2IS,
//! VAE3IS, ALLE2IS, ALLE3IS).

use crate::arch::VaSpace;
use crate::arch::aarch64_regs::{CpuFeatures, WALK_ATTRS, tg};
use crate::arch::sealed::Sealed;

/// A stage 1 translation regime; see the [module](self) table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Regime {
    /// EL1&0 (or EL2&0 under VHE): two ranges, ASIDs, EL0 and EL1 permissions.
    El10,
    /// EL2 without VHE: one range, no ASIDs, one privilege level.
    El2,
    /// EL3: one range, no ASIDs, one privilege level, NS.
    El3,
}

impl Regime {
    /// Whether the regime has one privilege level (EL2 without VHE, EL3).
    #[must_use]
    pub const fn single_level(self) -> bool {
        !matches!(self, Regime::El10)
    }
}

/// The range and regime of a stage 1 table: which TTBR it is for; sealed.
pub trait VaRange: Sealed + Copy + Default + core::fmt::Debug + Send + Sync + 'static {
    /// The addresses it translates.
    const SPACE: VaSpace;
    /// The translation regime.
    const REGIME: Regime;
}

/// The lower range, `[0, 2^n)`, translated through TTBR0_EL1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lower;
/// The upper range, `[2^64 - 2^n, 2^64)`, translated through TTBR1_EL1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Upper;
/// The EL2 regime without VHE, `[0, 2^n)`, translated through TTBR0_EL2.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct El2;
/// The EL3 regime, `[0, 2^n)`, translated through TTBR0_EL3.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct El3;

impl Sealed for Lower {}
impl Sealed for Upper {}
impl Sealed for El2 {}
impl Sealed for El3 {}

impl VaRange for Lower {
    const SPACE: VaSpace = VaSpace::Lower;
    const REGIME: Regime = Regime::El10;
}
impl VaRange for Upper {
    const SPACE: VaSpace = VaSpace::Upper;
    const REGIME: Regime = Regime::El10;
}
impl VaRange for El2 {
    const SPACE: VaSpace = VaSpace::Lower;
    const REGIME: Regime = Regime::El2;
}
impl VaRange for El3 {
    const SPACE: VaSpace = VaSpace::Lower;
    const REGIME: Regime = Regime::El3;
}

/// TCR_EL2 (without VHE) and TCR_EL3 share one layout: T0SZ (bits 5:0), IRGN0, ORGN0, SH0
/// (bits 13:8), TG0 (15:14), PS (18:16), HA (21), HD (22), and bits 23 and 31 RES1.
pub(crate) const fn tcr_single(va_bits: u32, shift: u32, f: CpuFeatures) -> u64 {
    (64 - va_bits) as u64
        | WALK_ATTRS
        | tg(shift, false) << 14
        | f.ps() << 16
        | (f.hw_access as u64) << 21
        | (f.hw_dirty as u64) << 22
        | 1 << 23
        | 1 << 31
}

/// `TLBI VAE2IS` / `VAE3IS` for `page` (a TLBI page operand), or `ALLE2IS` / `ALLE3IS` for
/// `None`, between a barrier that makes the table writes visible and one that waits for the
/// invalidation everywhere.
pub(crate) fn flush_single(regime: Regime, page: Option<u64>) {
    #[cfg(all(
        target_arch = "aarch64",
        any(target_os = "none", feature = "privileged")
    ))]
    // SAFETY: barriers and TLB invalidations of the regime the caller runs in (the contract of
    // flushing a live table); they drop cached translations and touch no memory.
    unsafe {
        core::arch::asm!("dsb ishst", options(nostack, preserves_flags));
        match (regime, page) {
            (Regime::El3, Some(p)) => {
                core::arch::asm!("tlbi vae3is, {}", in(reg) p, options(nostack, preserves_flags))
            }
            (Regime::El3, None) => {
                core::arch::asm!("tlbi alle3is", options(nostack, preserves_flags))
            }
            (_, Some(p)) => {
                core::arch::asm!("tlbi vae2is, {}", in(reg) p, options(nostack, preserves_flags))
            }
            (_, None) => core::arch::asm!("tlbi alle2is", options(nostack, preserves_flags)),
        }
        core::arch::asm!("dsb ish", "isb", options(nostack, preserves_flags));
    }
    #[cfg(not(all(
        target_arch = "aarch64",
        any(target_os = "none", feature = "privileged")
    )))]
    let _ = (regime, page);
}

/// Writes `ttbr` to TTBR0_EL2 or TTBR0_EL3, then drops this CPU's translations of the regime.
///
/// # Safety
///
/// As [`PageTable::activate`](crate::PageTable::activate) states, run at the regime's
/// exception level.
pub(crate) unsafe fn set_ttbr_single(regime: Regime, ttbr: u64) {
    #[cfg(all(
        target_arch = "aarch64",
        any(target_os = "none", feature = "privileged")
    ))]
    // SAFETY: the caller's table translates everything that runs next at this level (its
    // contract); the barrier makes its table writes visible to the walk first.
    unsafe {
        core::arch::asm!("dsb ish", options(nostack, preserves_flags));
        if regime == Regime::El3 {
            core::arch::asm!(
                "msr ttbr0_el3, {}",
                "isb",
                "tlbi alle3",
                "dsb nsh",
                "isb",
                in(reg) ttbr,
                options(nostack, preserves_flags)
            );
        } else {
            core::arch::asm!(
                "msr ttbr0_el2, {}",
                "isb",
                "tlbi alle2",
                "dsb nsh",
                "isb",
                in(reg) ttbr,
                options(nostack, preserves_flags)
            );
        }
    }
    #[cfg(not(all(
        target_arch = "aarch64",
        any(target_os = "none", feature = "privileged")
    )))]
    let _ = (regime, ttbr);
}
