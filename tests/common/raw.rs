//! An independent walker of raw table memory. Each architecture's entry format is written here
//! again from its manual, apart from the crate's own decoding, so that a bug in one does not
//! hide in the other. It reads "physical memory" through [`Frames::read_phys`] only.

use std::collections::BTreeSet;

use pagetable::{
    AArch64, LoongArch64, Lower, Sv39, Sv48, Sv57, Upper, Va39, Va48, X86_64, X86_64La57,
};

use super::Frames;

/// What one entry is, read by the manual.
#[derive(Debug)]
pub enum Raw {
    Empty,
    Table(u64),
    Leaf(u64),
}

/// Which addresses a root translates, for the sign of the addresses reported.
#[derive(Clone, Copy, PartialEq)]
pub enum Space {
    /// Bits above the top translated bit copy it (x86, RISC-V, LoongArch).
    Canonical,
    /// AArch64 TTBR0: upper bits zero.
    Lower,
    /// AArch64 TTBR1: upper bits one.
    Upper,
}

/// An architecture's entry format, straight from its manual. 4 KiB granule, 512 entries a table.
pub trait Manual {
    /// Levels of tables.
    const LEVELS: u32;
    const SPACE: Space;
    /// The entry `pte` of a table at `depth` (1 = the last level).
    ///
    /// # Errors
    ///
    /// A description, for an entry the crate should never write (a reserved encoding, a
    /// misaligned block, stray bits in a pointer).
    fn read(pte: u64, depth: u32) -> Result<Raw, String>;
}

/// What a raw walk found.
#[derive(Debug, Default)]
pub struct RawTree {
    /// Leaves as (first va as the API writes it, pa, log2 of the size), in walk order.
    pub leaves: Vec<(u64, u64, u32)>,
    /// Every table reached, the root included.
    pub tables: BTreeSet<u64>,
    /// The physical address of each leaf's entry, in the order of `leaves`.
    pub entries: Vec<u64>,
}

/// Walks the tree at `root` in `mem`.
///
/// # Errors
///
/// A malformed entry, or a table reached twice (shared within one tree, or a cycle).
pub fn walk<M: Manual>(mem: &Frames, root: u64) -> Result<RawTree, String> {
    let mut tree = RawTree::default();
    visit::<M>(mem, root, M::LEVELS, 0, &mut tree)?;
    Ok(tree)
}

fn visit<M: Manual>(
    mem: &Frames,
    table: u64,
    depth: u32,
    va: u64,
    tree: &mut RawTree,
) -> Result<(), String> {
    if !mem.is_live(table, 4096) {
        return Err(format!("a table at {table:#x}, which is not a live frame"));
    }
    if !tree.tables.insert(table) {
        return Err(format!("table {table:#x} reached twice"));
    }
    let shift = 12 + 9 * (depth - 1);
    for i in 0..512u64 {
        let pte = mem.read_phys(table + i * 8);
        let at = va | i << shift;
        let raw = M::read(pte, depth)
            .map_err(|e| format!("entry {i} of the depth-{depth} table {table:#x}: {e}"))?;
        match raw {
            Raw::Empty => {}
            Raw::Leaf(pa) => {
                tree.leaves.push((sign::<M>(at), pa, shift));
                tree.entries.push(table + i * 8);
            }
            Raw::Table(next) => visit::<M>(mem, next, depth - 1, at, tree)?,
        }
    }
    Ok(())
}

/// `va` as the API writes it.
fn sign<M: Manual>(va: u64) -> u64 {
    let bits = 12 + 9 * M::LEVELS;
    match M::SPACE {
        Space::Lower => va,
        Space::Upper => va | !((1u64 << bits) - 1),
        Space::Canonical if va >> (bits - 1) & 1 == 1 => va | !((1u64 << bits) - 1),
        Space::Canonical => va,
    }
}

fn misaligned(pa: u64, shift: u32, what: &str) -> Result<Raw, String> {
    if pa & ((1 << shift) - 1) != 0 {
        Err(format!("{what} at {pa:#x} not aligned to 2^{shift}"))
    } else {
        Ok(Raw::Leaf(pa))
    }
}

// ---- x86_64, Intel SDM vol. 3A 4.5: P bit 0, PS bit 7 (PDPTE, PDE), address bits 12..51; in
// ---- a 2M/1G leaf bit 12 is PAT and the bits between it and the leaf size are reserved.

fn x86_read(pte: u64, depth: u32) -> Result<Raw, String> {
    const ADDR: u64 = 0x000f_ffff_ffff_f000;
    if pte & 1 == 0 {
        return Ok(Raw::Empty);
    }
    let ps = pte >> 7 & 1 == 1;
    match depth {
        1 => Ok(Raw::Leaf(pte & ADDR)),
        2 | 3 if ps => {
            let shift = 12 + 9 * (depth - 1);
            let addr = pte & ADDR & !(1 << 12);
            if addr & ((1 << shift) - 1) != 0 {
                return Err(format!("reserved address bits set in huge leaf {pte:#x}"));
            }
            Ok(Raw::Leaf(addr))
        }
        _ if ps => Err(format!("PS set above the PDPT: {pte:#x}")),
        _ => Ok(Raw::Table(pte & ADDR)),
    }
}

// ---- AArch64, Arm ARM D8.3 (VMSAv8-64, 4K granule, 48-bit OA): bit 0 valid; bit 1 set is a
// ---- table above level 3 and a page at level 3 (clear there is reserved: invalid); blocks at
// ---- levels 1 and 2 only; output address bits 12..47.

fn arm_read(pte: u64, depth: u32) -> Result<Raw, String> {
    const OA: u64 = 0x0000_ffff_ffff_f000;
    if pte & 1 == 0 {
        return Ok(Raw::Empty);
    }
    let bit1 = pte >> 1 & 1 == 1;
    match depth {
        1 if bit1 => Ok(Raw::Leaf(pte & OA)),
        1 => Err(format!("reserved level-3 descriptor {pte:#x}")),
        _ if bit1 => Ok(Raw::Table(pte & OA)),
        2 | 3 => misaligned(pte & OA, 12 + 9 * (depth - 1), "block"),
        _ => Err(format!("level-0 block {pte:#x}")),
    }
}

// ---- RISC-V, privileged spec 12.3 (Sv39/48/57): V bit 0, R W X bits 1-3 (all clear: a
// ---- pointer; W without R reserved), A/D/U reserved in pointers, PPN bits 10..53; a superpage
// ---- with low PPN bits set is misaligned.

fn riscv_read(pte: u64, depth: u32) -> Result<Raw, String> {
    if pte & 1 == 0 {
        return Ok(Raw::Empty);
    }
    let (r, w, x) = (pte >> 1 & 1, pte >> 2 & 1, pte >> 3 & 1);
    let pa = (pte >> 10 & ((1 << 44) - 1)) << 12;
    if r == 0 && w == 1 {
        return Err(format!("W without R {pte:#x}"));
    }
    if r | w | x != 0 {
        return misaligned(pa, 12 + 9 * (depth - 1), "superpage");
    }
    if depth == 1 {
        return Err(format!("pointer at the last level {pte:#x}"));
    }
    if pte & 0xd0 != 0 {
        return Err(format!("A, D or U set in a pointer {pte:#x}"));
    }
    Ok(Raw::Table(pa))
}

/// Modes whose entries read by one function of this file.
macro_rules! manual {
    ($($mode:ty => $levels:literal, $space:ident, $read:ident;)*) => {
        $(impl Manual for $mode {
            const LEVELS: u32 = $levels;
            const SPACE: Space = Space::$space;
            fn read(pte: u64, depth: u32) -> Result<Raw, String> {
                $read(pte, depth)
            }
        })*
    };
}

manual! {
    X86_64 => 4, Canonical, x86_read;
    X86_64La57 => 5, Canonical, x86_read;
    AArch64<Va48, Lower> => 4, Lower, arm_read;
    AArch64<Va48, Upper> => 4, Upper, arm_read;
    AArch64<Va39, Lower> => 3, Lower, arm_read;
    AArch64<Va39, Upper> => 3, Upper, arm_read;
    Sv39 => 3, Canonical, riscv_read;
    Sv48 => 4, Canonical, riscv_read;
    Sv57 => 5, Canonical, riscv_read;
}

// ---- LoongArch64, reference manual vol. 1 5.4 / 7.5: a directory entry is the next table's
// ---- address; a last-level entry is valid with bit 0; above the last level bit 6 marks a huge
// ---- page (valid with bit 0), whose bit 12 is its global bit. PALEN 48: address bits 12..47.

impl Manual for LoongArch64 {
    const LEVELS: u32 = 4;
    const SPACE: Space = Space::Canonical;
    fn read(pte: u64, depth: u32) -> Result<Raw, String> {
        const PA: u64 = 0x0000_ffff_ffff_f000;
        if depth == 1 {
            return Ok(if pte & 1 == 1 {
                Raw::Leaf(pte & PA)
            } else {
                Raw::Empty
            });
        }
        if pte >> 6 & 1 == 1 {
            if depth > 3 {
                return Err(format!("huge page in the root {pte:#x}"));
            }
            if pte & 1 == 0 {
                return Ok(Raw::Empty);
            }
            return misaligned(pte & PA & !(1 << 12), 12 + 9 * (depth - 1), "huge page");
        }
        match pte {
            0 => Ok(Raw::Empty),
            _ if pte & !PA == 0 => Ok(Raw::Table(pte)),
            _ => Err(format!("directory entry with stray bits {pte:#x}")),
        }
    }
}
