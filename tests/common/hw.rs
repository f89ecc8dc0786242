//! How each MMU marks the leaves it uses, from its manual: the "hardware" that the tests and
//! the fuzz targets let loose on table memory behind the library's back.

use pagetable::{
    AArch64, AArch64S2, Ept, Granule16K, Granule64K, Ipa40, Ipa48, LoongArch64, Lower, Sv39,
    Sv39x4, Sv48, Sv48x4, Sv57, Upper, Va36, Va39, Va42, Va47, Va48, X86_64, X86_64La57,
};

use super::raw::Manual;

/// How an MMU marks a leaf (of any size) it translates through.
pub trait Hardware: Manual {
    /// Whether leaves record accesses at all.
    const HAS_ACCESSED: bool = true;
    /// The leaf after a read through it.
    fn mark_read(pte: u64) -> u64;
    /// The leaf after a write through it; only called for a writable leaf.
    fn mark_write(pte: u64) -> u64;
    /// Whether a store through the leaf goes through (and so marks it) rather than faulting.
    fn writable(pte: u64) -> bool;
}

/// SDM 4.8: the processor sets A (bit 5) on any access and D (bit 6) on a write.
fn x86_read(pte: u64) -> u64 {
    pte | 1 << 5
}
fn x86_write(pte: u64) -> u64 {
    pte | 1 << 5 | 1 << 6
}

/// Privileged spec, Svadu: A (bit 6) on any access, D (bit 7) on a write.
fn riscv_read(pte: u64) -> u64 {
    pte | 1 << 6
}
fn riscv_write(pte: u64) -> u64 {
    pte | 1 << 6 | 1 << 7
}

/// Arm ARM D8.4, FEAT_HAFDBS: AF (bit 10) on any access; a write through a leaf with DBM
/// (bit 51) clears AP[2] (bit 7), making it writable and dirty.
fn arm_read(pte: u64) -> u64 {
    pte | 1 << 10
}
fn arm_write(pte: u64) -> u64 {
    assert!(pte >> 51 & 1 == 1, "a writable leaf without DBM: {pte:#x}");
    (pte | 1 << 10) & !(1 << 7)
}

/// Arm ARM D8.5 at stage 2 (VTCR_EL2.HA, HD): AF on any access; a write through a leaf with
/// DBM sets S2AP[1] (bit 7), making it writable and dirty.
fn arm_s2_write(pte: u64) -> u64 {
    assert!(pte >> 51 & 1 == 1, "a writable leaf without DBM: {pte:#x}");
    pte | 1 << 10 | 1 << 7
}

/// SDM 29.3.5, with EPTP bit 6: A (bit 8) on any access, D (bit 9) on a write.
fn ept_read(pte: u64) -> u64 {
    pte | 1 << 8
}
fn ept_write(pte: u64) -> u64 {
    pte | 1 << 8 | 1 << 9
}

/// SDM 4.6: R/W (bit 1). EPT (SDM 29.3.3.2): W (bit 1).
fn bit1(pte: u64) -> bool {
    pte >> 1 & 1 == 1
}
/// Privileged spec 4.3.1: W (bit 2).
fn riscv_writable(pte: u64) -> bool {
    pte >> 2 & 1 == 1
}
/// D8.4 / D8.5: AP[2] (bit 7) clear, or DBM (bit 51), which the MMU uses to clear AP[2].
fn arm_writable(pte: u64) -> bool {
    pte >> 7 & 1 == 0 || pte >> 51 & 1 == 1
}
/// Stage 2: S2AP[1] (bit 7) set, or DBM (bit 51), which the MMU uses to set it.
fn arm_s2_writable(pte: u64) -> bool {
    pte >> 7 & 1 == 1 || pte >> 51 & 1 == 1
}

macro_rules! hardware {
    ($($mode:ty => $read:ident, $write:ident, $writable:ident;)*) => {
        $(impl Hardware for $mode {
            fn mark_read(pte: u64) -> u64 {
                $read(pte)
            }
            fn mark_write(pte: u64) -> u64 {
                $write(pte)
            }
            fn writable(pte: u64) -> bool {
                $writable(pte)
            }
        })*
    };
}

hardware! {
    X86_64 => x86_read, x86_write, bit1;
    X86_64La57 => x86_read, x86_write, bit1;
    AArch64<Va48, Lower> => arm_read, arm_write, arm_writable;
    AArch64<Va48, Upper> => arm_read, arm_write, arm_writable;
    AArch64<Va39, Lower> => arm_read, arm_write, arm_writable;
    AArch64<Va39, Upper> => arm_read, arm_write, arm_writable;
    AArch64<Va48, Lower, Granule16K> => arm_read, arm_write, arm_writable;
    AArch64<Va47, Upper, Granule16K> => arm_read, arm_write, arm_writable;
    AArch64<Va36, Lower, Granule16K> => arm_read, arm_write, arm_writable;
    AArch64<Va48, Lower, Granule64K> => arm_read, arm_write, arm_writable;
    AArch64<Va48, Upper, Granule64K> => arm_read, arm_write, arm_writable;
    AArch64<Va42, Lower, Granule64K> => arm_read, arm_write, arm_writable;
    AArch64S2<Ipa40> => arm_read, arm_s2_write, arm_s2_writable;
    AArch64S2<Ipa48> => arm_read, arm_s2_write, arm_s2_writable;
    Sv39x4 => riscv_read, riscv_write, riscv_writable;
    Sv48x4 => riscv_read, riscv_write, riscv_writable;
    Ept => ept_read, ept_write, bit1;
    Sv39 => riscv_read, riscv_write, riscv_writable;
    Sv48 => riscv_read, riscv_write, riscv_writable;
    Sv57 => riscv_read, riscv_write, riscv_writable;
}

/// LoongArch has no accessed bit, and its MMU writes nothing: the kernel's page-modify
/// exception handler sets D (bit 1) on the first write, which is what is modelled here. Bit 1
/// is D in huge leaves too.
impl Hardware for LoongArch64 {
    const HAS_ACCESSED: bool = false;
    fn mark_read(pte: u64) -> u64 {
        pte
    }
    fn mark_write(pte: u64) -> u64 {
        pte | 1 << 1
    }
    /// W (bit 8): the kernel's handler lets the store through and sets D only where W is set.
    fn writable(pte: u64) -> bool {
        pte >> 8 & 1 == 1
    }
}
