//! Known encodings of the address-space registers: the root register with its identifier
//! (CR3, TTBRn_EL1, VTTBR_EL2, satp, hgatp, EPTP, PGDL) for every mode, TCR_EL1 and VTCR_EL2
//! from CPU features, and the identifier widths. Each expected value was worked out by hand
//! from the manual's field table (the sum is in the comment); none is computed by the crate.

use memory_addr::{pa, va};
use pagetable::arch::aarch64_regs::CpuFeatures;
use pagetable::{
    AArch64, AArch64S2, Arch, BufferFrames, El2, El3, Ept, Granule16K, Granule64K, HugePages,
    Ipa40, Ipa48, LoongArch64, Lower, MappingFlags as F, PageSize, PageTable, PagingError, Sv39,
    Sv39x4, Sv48, Sv48x4, Sv57, Upper, Va39, Va42, Va47, Va48, X86_64, X86_64La57,
};

/// Where the tables' memory starts: aligned for every root (16 KiB for the x4 modes).
const BASE: usize = 0x8000_0000;

/// `f` on a fresh table of mode `A` whose root is at `BASE`.
fn with_table<A: Arch, R>(f: impl FnOnce(&mut PageTable<A, BufferFrames<'_>>) -> R) -> R {
    let mut memory = vec![0u64; 16 << 9];
    let frames = BufferFrames::new(&mut memory, pa!(BASE)).unwrap();
    let mut pt = PageTable::<A, _>::new(frames).unwrap();
    assert_eq!(pt.root_paddr(), pa!(BASE), "{}", A::NAME);
    f(&mut pt)
}

/// The root register of a table at `BASE` tagged with `id` (and untagged).
fn root_register<A: Arch>(id: u16) -> (u64, u64) {
    with_table::<A, _>(|pt| {
        let untagged = pt.root_register();
        pt.set_tlb_id(Some(id)).unwrap();
        assert_eq!(pt.tlb_id(), Some(id));
        (untagged, pt.root_register())
    })
}

#[test]
fn root_registers_carry_the_root_and_the_identifier() {
    // CR3: PML4 address | PCID (bits 11:0).
    assert_eq!(root_register::<X86_64>(0x123), (0x8000_0000, 0x8000_0123));
    assert_eq!(
        root_register::<X86_64La57>(0xfff),
        (0x8000_0000, 0x8000_0fff)
    );
    // TTBRn_EL1: BADDR | ASID << 48.
    assert_eq!(
        root_register::<AArch64<Va48, Lower>>(0xabcd),
        (0x8000_0000, 0xabcd_0000_8000_0000)
    );
    assert_eq!(
        root_register::<AArch64<Va39, Upper>>(0x42),
        (0x8000_0000, 0x0042_0000_8000_0000)
    );
    // VTTBR_EL2: BADDR | VMID << 48.
    assert_eq!(
        root_register::<AArch64S2<Ipa40>>(7),
        (0x8000_0000, 0x0007_0000_8000_0000)
    );
    // satp: MODE << 60 | ASID << 44 | PPN; PPN = 0x8000_0000 >> 12 = 0x8_0000,
    // ASID 0x55 << 44 = 0x0005_5000_0000_0000; MODE 8 (Sv39), 9 (Sv48), 10 (Sv57).
    assert_eq!(
        root_register::<Sv39>(0x55),
        (0x8000_0000_0008_0000, 0x8005_5000_0008_0000)
    );
    assert_eq!(
        root_register::<Sv48>(0x55),
        (0x9000_0000_0008_0000, 0x9005_5000_0008_0000)
    );
    assert_eq!(
        root_register::<Sv57>(0xffff),
        (0xa000_0000_0008_0000, 0xafff_f000_0008_0000)
    );
    // hgatp: MODE << 60 | VMID << 44 | PPN; VMID 0x3fff << 44 = 0x03ff_f000_0000_0000.
    assert_eq!(
        root_register::<Sv39x4>(0x3fff),
        (0x8000_0000_0008_0000, 0x83ff_f000_0008_0000)
    );
    assert_eq!(
        root_register::<Sv48x4>(1),
        (0x9000_0000_0008_0000, 0x9000_1000_0008_0000)
    );
    // EPTP: WB (6) | walk length 4 (3 << 3 = 0x18) | A/D (0x40) = 0x5e, then the PML4.
    assert_eq!(root_register::<Ept>(0), (0x8000_005e, 0x8000_005e));
    // PGDL / PGDH: the root alone (the ASID goes into CSR.ASID).
    assert_eq!(
        root_register::<LoongArch64>(0x3ff),
        (0x8000_0000, 0x8000_0000)
    );
}

/// `set_tlb_id` with `id` refused, the table's identifier unchanged.
fn refused<A: Arch>(id: u16, bits: u32) {
    with_table::<A, _>(|pt| {
        pt.set_tlb_id(Some(1 % (1 << bits.min(15)))).unwrap_or(());
        let before = pt.tlb_id();
        assert_eq!(
            pt.set_tlb_id(Some(id)),
            Err(PagingError::TlbIdTooWide { id, bits }),
            "{}",
            A::NAME
        );
        assert_eq!(pt.tlb_id(), before, "{}", A::NAME);
    });
}

#[test]
fn identifiers_wider_than_the_mode_are_refused() {
    // PCID: 12 bits; LoongArch ASID: 10; RISC-V VMID (hgatp bits 57:44): 14; EPT: none.
    refused::<X86_64>(0x1000, 12);
    refused::<X86_64La57>(0xffff, 12);
    refused::<LoongArch64>(0x400, 10);
    refused::<Sv39x4>(0x4000, 14);
    refused::<Sv48x4>(0x8000, 14);
    refused::<Ept>(1, 0);
    // The widest that fit.
    assert!(with_table::<X86_64, _>(|pt| pt.set_tlb_id(Some(0xfff))).is_ok());
    assert!(with_table::<LoongArch64, _>(|pt| pt.set_tlb_id(Some(0x3ff))).is_ok());
    assert!(with_table::<Sv39, _>(|pt| pt.set_tlb_id(Some(0xffff))).is_ok());
    assert!(with_table::<AArch64<Va48, Lower>, _>(|pt| pt.set_tlb_id(Some(0xffff))).is_ok());
    assert!(with_table::<AArch64S2<Ipa48>, _>(|pt| pt.set_tlb_id(Some(0xffff))).is_ok());
    assert_eq!(
        (X86_64::TLB_ID_NAME, Sv39::TLB_ID_NAME, Sv39x4::TLB_ID_NAME),
        ("PCID", "ASID", "VMID")
    );
}

#[test]
fn tcr_el1_for_each_half_and_granule() {
    let base = CpuFeatures::BASE;
    // T0SZ 16 (0x10) | IRGN0 1, ORGN0 1, SH0 3 (0x3500) | TG0 4K (0) | EPD1 (0x80_0000)
    // | TG1 4K (2 << 30 = 0x8000_0000) | IPS 48 (5 << 32).
    assert_eq!(AArch64::<Va48, Lower>::tcr(base), 0x5_8080_3510);
    // T1SZ 16 << 16 | walk attributes << 16 (0x3500_0000) | TG1 4K (0x8000_0000) | EPD0 (0x80)
    // | IPS 48.
    assert_eq!(AArch64::<Va48, Upper>::tcr(base), 0x5_b510_0080);
    // T0SZ 17 | 0x3500 | TG0 16K (2 << 14 = 0x8000) | EPD1 | TG1 16K (1 << 30) | IPS 48.
    assert_eq!(AArch64::<Va47, Lower, Granule16K>::tcr(base), 0x5_4080_b511);
    // T1SZ 22 << 16 (0x16_0000) | 0x3500_0000 | TG1 64K (3 << 30) | EPD0 | TG0 64K (1 << 14)
    // | IPS 48.
    assert_eq!(AArch64::<Va42, Upper, Granule64K>::tcr(base), 0x5_f516_4080);
    // 40-bit PA (IPS 2), 16-bit ASIDs (AS, bit 36), HA (39), HD (40):
    // 0x19 | 0x3500 | EPD1 | TG1 4K | 2 << 32 | 1 << 36 | 1 << 39 | 1 << 40.
    let all = CpuFeatures {
        pa_range: 2,
        asid16: true,
        vmid16: false,
        hw_access: true,
        hw_dirty: true,
    };
    assert_eq!(AArch64::<Va39, Lower>::tcr(all), 0x192_8080_3519);
}

#[test]
fn tcr_el2_and_tcr_el3_for_the_single_level_regimes() {
    // T0SZ 16 | 0x3500 | TG0 4K | PS 48 (5 << 16) | RES1 bit 23 (0x80_0000) | RES1 bit 31.
    assert_eq!(AArch64::<Va48, El2>::tcr(CpuFeatures::BASE), 0x8085_3510);
    assert_eq!(AArch64::<Va48, El3>::tcr(CpuFeatures::BASE), 0x8085_3510);
    // 40-bit PA (PS 2 << 16), HA (bit 21), HD (bit 22), T0SZ 25, TG0 64K (1 << 14):
    // 0x19 | 0x3500 | 0x4000 | 0x2_0000 | 0x20_0000 | 0x40_0000 | 0x80_0000 | 0x8000_0000.
    let f = CpuFeatures {
        pa_range: 2,
        asid16: true,
        vmid16: false,
        hw_access: true,
        hw_dirty: true,
    };
    assert_eq!(AArch64::<Va42, El2, Granule64K>::tcr(f), 0x80e2_7516);
    assert_eq!(AArch64::<Va39, El3>::tcr(f), 0x80e2_3519);
}

#[test]
fn the_single_level_regimes_have_no_asid() {
    // TTBR0_EL2 / TTBR0_EL3: the root alone.
    assert_eq!(root_register::<AArch64<Va48, El2>>(0).0, 0x8000_0000);
    assert_eq!(
        (
            AArch64::<Va48, El2>::TLB_ID_BITS,
            AArch64::<Va48, El3>::TLB_ID_BITS
        ),
        (0, 0)
    );
    with_table::<AArch64<Va48, El3>, _>(|pt| {
        assert_eq!(
            pt.set_tlb_id(Some(1)),
            Err(PagingError::TlbIdTooWide { id: 1, bits: 0 })
        );
        assert_eq!(pt.tlb_id(), None);
    });
    assert_eq!(
        (AArch64::<Va48, El2>::NAME, AArch64::<Va48, El3>::NAME),
        ("aarch64-48-el2", "aarch64-48-el3")
    );
}

#[test]
fn cpu_features_from_the_id_registers() {
    // ID_AA64MMFR0_EL1: PARange 6 (52 bits), ASIDBits 2 (16); ID_AA64MMFR1_EL1: HAFDBS 1
    // (access flag only), VMIDBits 2 (16).
    let f = CpuFeatures::from_id_regs(0x26, 0x21);
    assert_eq!(
        f,
        CpuFeatures {
            pa_range: 6,
            asid16: true,
            vmid16: true,
            hw_access: true,
            hw_dirty: false,
        }
    );
    // PARange 52 bits is clamped to 48 (IPS 5): the tables hold 48-bit addresses.
    assert_eq!(AArch64::<Va48, Lower>::tcr(f) >> 32 & 7, 5);
    assert!(CpuFeatures::from_id_regs(0, 0x2).hw_dirty);
    assert_eq!(CpuFeatures::default(), CpuFeatures::BASE);
}

#[test]
fn vtcr_el2_for_each_ipa_size() {
    // T0SZ 24 (0x18) | SL0 1 (0x40) | 0x3500 | TG0 4K | PS 48 (5 << 16) | RES1 bit 31.
    assert_eq!(AArch64S2::<Ipa40>::vtcr_el2(CpuFeatures::BASE), 0x8005_3558);
    // PS 40 bits: the value the hypervisor guest wrote by hand before
    // (24 | 1 << 6 | 1 << 8 | 1 << 10 | 3 << 12 | 0b010 << 16 | 1 << 31).
    let pa40 = CpuFeatures {
        pa_range: 2,
        ..CpuFeatures::BASE
    };
    assert_eq!(AArch64S2::<Ipa40>::vtcr_el2(pa40), 0x8002_3558);
    // T0SZ 16 | SL0 2 (0x80) | 0x3500 | PS 40 (2 << 16) | VS (1 << 19) | HA (1 << 21)
    // | HD (1 << 22) | bit 31.
    let f = CpuFeatures {
        pa_range: 2,
        asid16: false,
        vmid16: true,
        hw_access: true,
        hw_dirty: true,
    };
    assert_eq!(AArch64S2::<Ipa48>::vtcr_el2(f), 0x806a_3590);
}

#[test]
fn a_global_leaf_widens_the_tagged_flushes_for_good() {
    let rw = F::READ | F::WRITE;
    with_table::<X86_64, _>(|pt| {
        pt.set_tlb_id(Some(3)).unwrap();
        pt.map(va!(0x1000), pa!(0x1000), PageSize::SIZE_4K, rw)
            .unwrap()
            .ignore();
        assert!(!pt.tlb_scope().may_hold_global());
        pt.map(va!(0x2000), pa!(0x2000), PageSize::SIZE_4K, rw | F::GLOBAL)
            .unwrap()
            .ignore();
        assert!(pt.tlb_scope().may_hold_global());
        // Unmapping it does not forget: the TLB may still hold the global entry.
        let (_, flush) = pt.unmap(va!(0x2000)).unwrap();
        flush.ignore();
        assert!(pt.tlb_scope().may_hold_global());
        assert_eq!(pt.tlb_scope().id(), Some(3));
        assert_eq!(pt.tlb_scope().root(), BASE as u64);
    });
    // Through a region call, a protect, the cursor and `modify_range`.
    let paths: [fn(&mut PageTable<X86_64, BufferFrames<'_>>); 4] = [
        |pt| {
            pt.map_region(
                va!(0x20_0000),
                pa!(0),
                0x20_0000,
                F::READ | F::GLOBAL,
                HugePages::Allowed,
            )
            .unwrap()
            .ignore()
        },
        |pt| {
            pt.map(va!(0x1000), pa!(0x1000), PageSize::SIZE_4K, F::READ)
                .unwrap()
                .ignore();
            assert!(!pt.tlb_scope().may_hold_global());
            pt.protect(va!(0x1000), F::READ | F::GLOBAL)
                .unwrap()
                .ignore();
        },
        |pt| {
            // The first map walks (through the table's own `map`); the second takes the
            // cursor's own path, on the table it remembers.
            let mut cursor = pt.cursor();
            cursor
                .map(va!(0x1000), pa!(0x1000), PageSize::SIZE_4K, F::READ)
                .unwrap()
                .ignore();
            assert!(!cursor.table().tlb_scope().may_hold_global());
            cursor
                .map(
                    va!(0x2000),
                    pa!(0x2000),
                    PageSize::SIZE_4K,
                    F::READ | F::GLOBAL,
                )
                .unwrap()
                .ignore();
        },
        |pt| {
            pt.map(va!(0x1000), pa!(0x1000), PageSize::SIZE_4K, F::READ)
                .unwrap()
                .ignore();
            assert!(!pt.tlb_scope().may_hold_global());
            pt.modify_range(va!(0x1000), 0x1000, |e| {
                e.set_flags(F::READ | F::GLOBAL).unwrap()
            })
            .unwrap()
            .ignore();
        },
    ];
    for (i, path) in paths.iter().enumerate() {
        with_table::<X86_64, _>(|pt| {
            path(pt);
            assert!(pt.tlb_scope().may_hold_global(), "path {i}");
        });
    }
}

#[test]
fn the_identifier_survives_a_raw_round_trip_and_an_adopted_tree_may_hold_globals() {
    let mut memory = vec![0u64; 4 << 9];
    let frames = BufferFrames::new(&mut memory, pa!(BASE)).unwrap();
    let mut pt = PageTable::<Sv48, _>::new(frames).unwrap();
    pt.set_tlb_id(Some(9)).unwrap();
    let (root, frames, state) = pt.into_raw();
    assert_eq!(state.tlb_id(), Some(9));
    // SAFETY: the tree `into_raw` gave up, with its handler and state.
    let pt = unsafe { PageTable::<Sv48, _>::from_raw(root, frames, state) }.unwrap();
    assert_eq!(pt.tlb_id(), Some(9));
    assert!(!pt.tlb_scope().may_hold_global());
    let (root, frames, _) = pt.into_raw();
    // SAFETY: as above; `from_root` knows nothing of the tree's leaves.
    let pt = unsafe { PageTable::<Sv48, _>::from_root(root, frames) }.unwrap();
    assert!(pt.tlb_scope().may_hold_global());
    assert_eq!(pt.tlb_id(), None);
}
