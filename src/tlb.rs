//! [`TlbScope`]: which TLB entries a page table's flushes and activation reach: untagged, or
//! tagged with the table's identifier (ASID, PCID, VMID).

/// What a page table's TLB entries are tagged with, as its flushes and its activation need to
/// know: the root, the identifier it runs under (if any), and whether it may hold global leaves.
///
/// Made by [`PageTable::tlb_scope`](crate::PageTable::tlb_scope) and used by
/// [`Flush::flush_in`](crate::Flush::flush_in) (which [`PageTable::flush`](crate::PageTable::flush)
/// calls) and by [`PageTable::activate`](crate::PageTable::activate).
///
/// * **Untagged** (`id` is `None`, the default): flushes use the forms that reach every
///   address space (AArch64 `TLBI VAAE1IS` / `VMALLE1IS`, x86 `invlpg`, RISC-V `sfence.vma va,
///   x0`, LoongArch `invtlb` for the current ASID, EPT all-context `INVEPT`), as before
///   identifiers existed, at no extra cost.
/// * **Tagged** (`id` is `Some`): flushes reach only the entries of that identifier, so other
///   address spaces keep theirs. Leaves that are global are in no address space: a table that
///   may hold one (`global`) has its flushes also drop global entries for the same addresses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TlbScope {
    pub(crate) root: u64,
    pub(crate) id: Option<u16>,
    pub(crate) global: bool,
}

impl TlbScope {
    /// The table's root physical address.
    #[must_use]
    pub const fn root(&self) -> u64 {
        self.root
    }

    /// The identifier the table's entries are tagged with, or `None` when untagged.
    #[must_use]
    pub const fn id(&self) -> Option<u16> {
        self.id
    }

    /// Whether the table may hold global leaves (mapped with
    /// [`MappingFlags::GLOBAL`](crate::MappingFlags::GLOBAL), or an adopted tree whose leaves
    /// the crate has not seen).
    #[must_use]
    pub const fn may_hold_global(&self) -> bool {
        self.global
    }
}
