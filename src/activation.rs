//! A page table's address-space identity: the identifier its TLB entries carry, the register
//! value that makes it the table walked, and loading it.

use crate::arch::Arch;
use crate::error::PagingError;
use crate::flags::MappingFlags;
use crate::handler::PagingHandler;
use crate::page_table::PageTable;
use crate::tlb::TlbScope;

impl<A: Arch, H: PagingHandler> PageTable<A, H> {
    /// Tags the table's TLB entries with `id` (an ASID, PCID or VMID, [`Arch::TLB_ID_NAME`]),
    /// or untags them (`None`, the default). From then on [`flush`](Self::flush) uses the
    /// tagged invalidations, which leave other address spaces' translations alone, and
    /// [`root_register`](Self::root_register) and [`activate`](Self::activate) load the
    /// identifier with the root.
    ///
    /// The identifier is the kernel's to allocate: two live tables must not share one, and one
    /// taken from a table that ran under it must be flushed (all of it) on every CPU before
    /// another table uses it. Changing a live table's identifier leaves its entries under the
    /// old one cached: flush them with the old scope first.
    ///
    /// ```
    /// use pagetable::{BufferFrames, PageTable, PagingError, X86_64};
    /// use memory_addr::pa;
    ///
    /// let mut memory = vec![0u64; 4 << 9];
    /// let frames = BufferFrames::new(&mut memory, pa!(0x10_0000)).unwrap();
    /// let mut pt = PageTable::<X86_64, _>::new(frames).unwrap();
    /// pt.set_tlb_id(Some(5)).unwrap();
    /// // CR3: the root and PCID 5.
    /// assert_eq!(pt.root_register(), 0x10_0005);
    /// // A PCID has 12 bits.
    /// assert_eq!(pt.set_tlb_id(Some(0x1000)), Err(PagingError::TlbIdTooWide { id: 0x1000, bits: 12 }));
    /// ```
    ///
    /// # Errors
    ///
    /// [`PagingError::TlbIdTooWide`] if `id` needs more than [`Arch::TLB_ID_BITS`] bits; the
    /// table keeps its identifier.
    pub fn set_tlb_id(&mut self, id: Option<u16>) -> Result<(), PagingError> {
        if let Some(id) = id {
            if u32::from(id) >> A::TLB_ID_BITS != 0 {
                return Err(PagingError::TlbIdTooWide {
                    id,
                    bits: A::TLB_ID_BITS,
                });
            }
        }
        self.state.tlb_id = id;
        Ok(())
    }

    /// The identifier the table's TLB entries are tagged with; `None` if untagged.
    #[must_use]
    pub fn tlb_id(&self) -> Option<u16> {
        self.state.tlb_id
    }

    /// What the table's flushes and activation reach: its root, its identifier, and whether
    /// it may hold global leaves (a leaf was ever mapped or changed with
    /// [`MappingFlags::GLOBAL`], or the tree was adopted with
    /// [`from_root`](Self::from_root)). For a caller that flushes in two steps:
    /// `token.flush_in(pt.tlb_scope())`.
    #[must_use]
    pub fn tlb_scope(&self) -> TlbScope {
        TlbScope {
            root: self.root_paddr().as_usize() as u64,
            id: self.state.tlb_id,
            global: self.state.global,
        }
    }

    /// The value of the register that makes this table the one walked, with its identifier
    /// (0 if untagged): CR3 (PCID in bits 11:0), TTBR0_EL1 / TTBR1_EL1 (ASID in bits 63:48),
    /// VTTBR_EL2 (VMID), satp (MODE, ASID, PPN), hgatp (MODE, VMID, PPN), the EPT pointer
    /// (write-back, 4 levels, accessed and dirty flags on), PGDL / PGDH (the root; the ASID
    /// goes into CSR.ASID). Each arch file's `root_register` gives the fields.
    #[must_use]
    pub fn root_register(&self) -> u64 {
        A::root_register(
            self.root_paddr().as_usize() as u64,
            self.state.tlb_id.unwrap_or(0),
        )
    }

    /// Makes this table the one the running CPU's MMU walks for its mode: writes
    /// [`root_register`](Self::root_register) to CR3 (bit 63 set when tagged, keeping the
    /// PCID's entries), TTBR0_EL1 or TTBR1_EL1 (by the mode's half), VTTBR_EL2, satp, hgatp,
    /// the VMCS's EPT pointer, or PGDL and PGDH (and the ASID to CSR.ASID). Untagged, the
    /// CPU's cached non-global translations are dropped after the switch; tagged, they are
    /// kept, being the identifier's own.
    ///
    /// Only on bare metal for this architecture (`target_os = "none"` or the `privileged`
    /// feature, as for [`Flush::flush`](crate::Flush::flush)); elsewhere it does nothing.
    ///
    /// # Safety
    ///
    /// * The CPU runs at the level the register belongs to: ring 0; EL1 for TTBRn_EL1 and EL2
    ///   for VTTBR_EL2; S-mode for satp and HS-mode for hgatp; PLV0; VMX root operation with
    ///   a current VMCS for EPT.
    /// * The control registers are set as the mode's arch file says its tables assume (for
    ///   example [`AArch64::tcr`](crate::AArch64::tcr) and the mode's MAIR; CR4.PAE
    ///   and IA32_PAT; PWCL and PWCH), and, when tagged, identifiers are on with at least the
    ///   identifier's width (CR4.PCIDE = 1; TCR_EL1.AS or VTCR_EL2.VS for identifiers above
    ///   255; an ASIDLEN or VMIDLEN that holds it).
    /// * Everything the CPU touches after the switch (its code, stack, data, the handler's
    ///   frames) is mapped by this table, where the old one mapped it, with the access the
    ///   code needs; for a stage 2 table, the guest it translates is not running on this CPU.
    /// * The table stays alive, and [`Live`](crate::Liveness::Live) (or `LiveNoBreak`), for
    ///   as long as any CPU may walk it.
    /// * Tagged: the translations this CPU holds under the identifier are this table's and
    ///   current (the identifier was not used by another table since its last full flush).
    pub unsafe fn activate(&self) {
        // SAFETY: forwarded: the caller's contract above.
        unsafe { A::activate(self.tlb_scope()) }
    }

    /// Records that a leaf with `flags` may now be in the table: a global one widens the
    /// tagged flushes (see [`TlbScope`]).
    #[inline(always)]
    pub(crate) fn note_flags(&mut self, flags: MappingFlags) {
        self.state.global |= flags.contains(MappingFlags::GLOBAL);
    }
}
