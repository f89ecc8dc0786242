//! AArch64 control-register values for the tables this crate builds: TCR_EL1 (stage 1),
//! VTCR_EL2 (stage 2), and the CPU features they may turn on.
//!
//! Source: Arm ARM (DDI 0487), D19.2: TCR_EL1 (T0SZ 5:0, EPD0 7, IRGN0 9:8, ORGN0 11:10, SH0
//! 13:12, TG0 15:14, T1SZ 21:16, A1 22, EPD1 23, IRGN1 25:24, ORGN1 27:26, SH1 29:28, TG1 31:30,
//! IPS 34:32, AS 36, HA 39, HD 40); VTCR_EL2 (T0SZ 5:0, SL0 7:6, IRGN0 9:8, ORGN0 11:10, SH0
//! 13:12, TG0 15:14, PS 18:16, VS 19, HA 21, HD 22, bit 31 RES1); ID_AA64MMFR0_EL1 (PARange
//! 3:0, ASIDBits 7:4) and ID_AA64MMFR1_EL1 (HAFDBS 3:0, VMIDBits 7:4).
//!
//! Both registers get: walks through write-back, read- and write-allocate cacheable memory
//! (IRGN = ORGN = 0b01), inner shareable (SH = 0b11), the granule the mode uses, the VA or IPA
//! size it translates, and an output size of at most 48 bits (the tables hold 48-bit
//! addresses). TCR_EL1.A1 stays 0: the ASID comes from TTBR0_EL1.

/// What a CPU offers that TCR_EL1 and VTCR_EL2 may turn on: read from its ID registers with
/// [`from_id_regs`](Self::from_id_regs), or [`BASE`](Self::BASE) for what every ARMv8.0 CPU
/// with a 48-bit physical address space has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuFeatures {
    /// ID_AA64MMFR0_EL1.PARange: the physical-address size, encoded as IPS / PS are (0b000 32
    /// bits, 0b001 36, 0b010 40, 0b011 42, 0b100 44, 0b101 48, 0b110 52). The registers get the
    /// smaller of this and 48 bits.
    pub pa_range: u8,
    /// 16-bit ASIDs (ID_AA64MMFR0_EL1.ASIDBits = 0b0010): sets TCR_EL1.AS.
    pub asid16: bool,
    /// 16-bit VMIDs (ID_AA64MMFR1_EL1.VMIDBits = 0b0010): sets VTCR_EL2.VS.
    pub vmid16: bool,
    /// Hardware access flag (HAFDBS ≥ 1): sets HA.
    pub hw_access: bool,
    /// Hardware dirty state (HAFDBS ≥ 2): sets HD.
    pub hw_dirty: bool,
}

impl CpuFeatures {
    /// A 48-bit physical address space, 8-bit ASIDs and VMIDs, access flag and dirty state
    /// kept by software.
    pub const BASE: Self = Self {
        pa_range: PA_48,
        asid16: false,
        vmid16: false,
        hw_access: false,
        hw_dirty: false,
    };

    /// The features ID_AA64MMFR0_EL1 (`mmfr0`) and ID_AA64MMFR1_EL1 (`mmfr1`) report.
    #[must_use]
    pub const fn from_id_regs(mmfr0: u64, mmfr1: u64) -> Self {
        let hafdbs = mmfr1 & 0xf;
        Self {
            pa_range: (mmfr0 & 0xf) as u8,
            asid16: (mmfr0 >> 4) & 0xf == 0b0010,
            vmid16: (mmfr1 >> 4) & 0xf == 0b0010,
            hw_access: hafdbs >= 1,
            hw_dirty: hafdbs >= 2,
        }
    }

    /// IPS / PS: the CPU's size, at most 48 bits.
    pub(crate) const fn ps(self) -> u64 {
        if self.pa_range > PA_48 {
            PA_48 as u64
        } else {
            self.pa_range as u64
        }
    }
}

impl Default for CpuFeatures {
    fn default() -> Self {
        Self::BASE
    }
}

/// The IPS / PS encoding of 48 bits.
const PA_48: u8 = 0b101;
/// IRGN = ORGN = write-back read- and write-allocate, SH = inner shareable: the walk
/// attributes of one half, at the half's offset.
pub(crate) const WALK_ATTRS: u64 = 0b01 << 8 | 0b01 << 10 | 0b11 << 12;

/// TCR_EL1.TG0 (granule shift 12, 14, 16 → 0b00, 0b10, 0b01) and TG1 (→ 0b10, 0b01, 0b11).
pub(crate) const fn tg(shift: u32, upper: bool) -> u64 {
    match (shift, upper) {
        (12, false) => 0b00,
        (14, false) => 0b10,
        (16, false) => 0b01,
        (12, true) => 0b10,
        (14, true) => 0b01,
        _ => 0b11,
    }
}

/// The TCR_EL1 fields of one half: TnSZ, IRGNn, ORGNn, SHn, TGn for `va_bits` of VA and a
/// granule of `2^shift`; TTBR1's half is the same shifted up by 16 bits.
pub(crate) const fn tcr_half(va_bits: u32, shift: u32, upper: bool) -> u64 {
    let fields = (64 - va_bits) as u64 | WALK_ATTRS | tg(shift, upper) << 14;
    if upper { fields << 16 } else { fields }
}

/// EPD0 (bit 7) and EPD1 (bit 23): no walks through that half's TTBR.
pub(crate) const EPD0: u64 = 1 << 7;
pub(crate) const EPD1: u64 = 1 << 23;

/// The TCR_EL1 fields common to both halves: IPS, AS, HA, HD.
pub(crate) const fn tcr_common(f: CpuFeatures) -> u64 {
    f.ps() << 32 | (f.asid16 as u64) << 36 | (f.hw_access as u64) << 39 | (f.hw_dirty as u64) << 40
}

/// VTCR_EL2 for the 4 KiB granule, `ipa_bits` of IPA and a root at `root_depth` (4 for level
/// 0, 3 for level 1: SL0 = depth - 2).
pub(crate) const fn vtcr(ipa_bits: u32, root_depth: u8, f: CpuFeatures) -> u64 {
    (64 - ipa_bits) as u64
        | ((root_depth - 2) as u64) << 6
        | WALK_ATTRS
        | f.ps() << 16
        | (f.vmid16 as u64) << 19
        | (f.hw_access as u64) << 21
        | (f.hw_dirty as u64) << 22
        | 1 << 31
}
