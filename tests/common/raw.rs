//! An independent walker of raw table memory. Each architecture's entry format is written here
//! again from its manual, apart from the crate's own decoding, so that a bug in one does not
//! hide in the other. It reads "physical memory" through [`Frames::read_phys`] only.

use std::collections::BTreeSet;

use pagetable::{
    AArch64, AArch64S2, Ept, Granule16K, Granule64K, Ipa40, Ipa48, LoongArch64, Lower, Sv39,
    Sv39x4, Sv48, Sv48x4, Sv57, Upper, Va36, Va39, Va42, Va47, Va48, X86_64, X86_64La57,
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

/// An architecture's entry format, straight from its manual, and its table shape: tables of
/// one granule of 8-byte entries, but the root, which translates what is left of the VA.
pub trait Manual {
    /// Levels of tables.
    const LEVELS: u32;
    const SPACE: Space;
    /// log2 of the granule (the smallest page).
    const GRANULE: u32 = 12;
    /// Address bits translated.
    const VA_BITS: u32 = Self::GRANULE + (Self::GRANULE - 3) * Self::LEVELS;
    /// The entry `pte` of a table at `depth` (1 = the last level).
    ///
    /// # Errors
    ///
    /// A description, for an entry the crate should never write (a reserved encoding, a
    /// misaligned block, stray bits in a pointer).
    fn read(pte: u64, depth: u32) -> Result<Raw, String>;
    /// The crate's software encodings of invalid entries, from its documentation (not its
    /// code): the bits that make an entry valid, the tag of an inaccessible leaf (its valid
    /// entry with those bits cleared and the tag set; 0 if the mode has none), the tag of a
    /// marker, and the bits a marker's payload skips.
    const SOFT: Soft;
    /// Where the crate documents it counts the live entries of a last-level table in the
    /// entry that links it (`Arch::LIVE_COUNT`: the count plus one, 0 for not counted); 0
    /// where it does not.
    const LIVE_COUNT: u64 = 0;
}

/// See [`Manual::SOFT`].
pub struct Soft {
    pub valid: u64,
    pub inaccessible: u64,
    pub marker: u64,
    pub reserved: u64,
    /// The software bits a leaf leaves to the caller.
    pub leaf: u64,
}

const X86_SOFT: Soft = Soft {
    valid: 1,
    inaccessible: 1 << 11,
    marker: 1 << 10,
    reserved: 1 | 1 << 10 | 1 << 11,
    leaf: 0b11 << 9 | 0x7f << 52,
};
const ARM_SOFT: Soft = Soft {
    valid: 1,
    inaccessible: 1 << 56,
    marker: 1 << 57,
    reserved: 1 | 1 << 56 | 1 << 57,
    leaf: 0b11 << 57,
};
const RISCV_SOFT: Soft = Soft {
    valid: 1,
    inaccessible: 1 << 9,
    marker: 1 << 8,
    reserved: 1 | 1 << 8 | 1 << 9,
    leaf: 1 << 8,
};
const EPT_SOFT: Soft = Soft {
    valid: 0b111,
    inaccessible: 0,
    marker: 1 << 11,
    reserved: 0b111 | 1 << 10 | 1 << 11 | 1 << 63,
    leaf: 1 << 11 | 0x1f << 52,
};
const LOONGARCH_SOFT: Soft = Soft {
    valid: 1,
    inaccessible: 1 << 10,
    marker: 1 << 11,
    reserved: 1 | 1 << 6 | 1 << 10 | 1 << 11,
    leaf: 1 << 11,
};

/// The payload of a marker entry: its unreserved bits, lowest first, one at a time.
pub fn payload(pte: u64, reserved: u64) -> u64 {
    let mut out = 0;
    let mut k = 0;
    for bit in 0..64 {
        if reserved >> bit & 1 == 0 {
            out |= (pte >> bit & 1) << k;
            k += 1;
        }
    }
    out
}

/// An entry read with the crate's encodings of invalid entries: an inaccessible leaf reads as
/// its valid self would, a marker as its payload.
fn read_soft<M: Manual>(pte: u64, depth: u32) -> Result<(Raw, Invalid), String> {
    let soft = M::SOFT;
    if pte == 0 || pte & soft.valid != 0 {
        return Ok((M::read(pte, depth)?, Invalid::No));
    }
    if soft.inaccessible != 0 && pte & soft.inaccessible != 0 {
        // Made valid again, with the first valid bit (EPT: R, which every inaccessible leaf
        // would have; EPT has none).
        let valid = (pte & !soft.inaccessible) | (soft.valid & soft.valid.wrapping_neg());
        return match M::read(valid, depth)? {
            Raw::Leaf(pa) => Ok((Raw::Leaf(pa), Invalid::Inaccessible)),
            other => Err(format!(
                "an inaccessible entry that is no leaf: {pte:#x} ({other:?})"
            )),
        };
    }
    if depth == 1 && pte & soft.marker != 0 {
        return Ok((Raw::Empty, Invalid::Marker(payload(pte, soft.reserved))));
    }
    // Neither: the manual decides (a LoongArch directory entry has no valid bit).
    Ok((M::read(pte, depth)?, Invalid::No))
}

/// What an invalid entry held.
enum Invalid {
    No,
    Inaccessible,
    Marker(u64),
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
    /// The first addresses of the inaccessible leaves.
    pub inaccessible: BTreeSet<u64>,
    /// Markers as (va as the API writes it, payload), in walk order.
    pub markers: Vec<(u64, u64)>,
    /// Each leaf's software bits, packed, in the order of `leaves`.
    pub soft: Vec<u64>,
    /// How many last-level tables carry a live-entry count (each checked right).
    pub counted: usize,
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
    let shift = M::GRANULE + (M::GRANULE - 3) * (depth - 1);
    let entries: u64 = if depth == M::LEVELS {
        1 << (M::VA_BITS - shift)
    } else {
        1 << (M::GRANULE - 3)
    };
    // A table fills at least a granule and is aligned to its size (a concatenated root too).
    let bytes = (entries * 8).max(1 << M::GRANULE);
    if table % bytes != 0 {
        return Err(format!(
            "a table at {table:#x}, not aligned to its {bytes:#x} bytes"
        ));
    }
    if !mem.is_live(table, bytes as usize) {
        return Err(format!(
            "a table at {table:#x}, which is not a live block of {bytes:#x}"
        ));
    }
    if !tree.tables.insert(table) {
        return Err(format!("table {table:#x} reached twice"));
    }
    for i in 0..entries {
        let pte = mem.read_phys(table + i * 8);
        let at = va | i << shift;
        let (raw, invalid) = read_soft::<M>(pte, depth)
            .map_err(|e| format!("entry {i} of the depth-{depth} table {table:#x}: {e}"))?;
        match invalid {
            Invalid::No => {}
            Invalid::Inaccessible => {
                tree.inaccessible.insert(sign::<M>(at));
            }
            Invalid::Marker(payload) => tree.markers.push((sign::<M>(at), payload)),
        }
        match raw {
            Raw::Empty => {}
            Raw::Leaf(pa) => {
                tree.leaves.push((sign::<M>(at), pa, shift));
                tree.entries.push(table + i * 8);
                tree.soft.push(payload(pte, !M::SOFT.leaf));
            }
            Raw::Table(next) => {
                let field = (pte & M::LIVE_COUNT)
                    .checked_shr(M::LIVE_COUNT.trailing_zeros())
                    .unwrap_or(0);
                if depth == 2 && field != 0 {
                    let bytes = 1u64 << M::GRANULE;
                    let live = (0..bytes / 8)
                        .filter(|k| {
                            mem.is_live(next, bytes as usize) && mem.read_phys(next + k * 8) != 0
                        })
                        .count() as u64;
                    if field - 1 != live {
                        return Err(format!(
                            "entry {i} of the depth-2 table {table:#x} counts {} live entries \
                             in the table it links, which holds {live}",
                            field - 1
                        ));
                    }
                    tree.counted += 1;
                }
                visit::<M>(mem, next, depth - 1, at, tree)?
            }
        }
    }
    Ok(())
}

/// `va` as the API writes it.
fn sign<M: Manual>(va: u64) -> u64 {
    let bits = M::VA_BITS;
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

/// Bits 52-61 of a PDE that references a page table (ignored by the processor): the crate's
/// live-entry count of that table, as its documentation of `Arch::LIVE_COUNT` says.
const X86_LIVE: u64 = 0x3ff << 52;

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

// ---- AArch64, Arm ARM D8.3 (VMSAv8-64, 48-bit OA; stage 1 and stage 2 alike): bit 0 valid;
// ---- bit 1 set is a table above level 3 and a page at level 3 (clear there is reserved:
// ---- invalid); output address bits 12..47, whose bits below the granule must be zero (with
// ---- 64K they would be OA[51:48]). Blocks: levels 1 and 2 with the 4K granule, level 2 only
// ---- with 16K and 64K (D8.2: larger blocks need a 52-bit OA).

fn arm_read<const GRANULE: u32>(pte: u64, depth: u32) -> Result<Raw, String> {
    const OA: u64 = 0x0000_ffff_ffff_f000;
    if pte & 1 == 0 {
        return Ok(Raw::Empty);
    }
    let bit1 = pte >> 1 & 1 == 1;
    let oa = pte & OA;
    if oa & ((1 << GRANULE) - 1) != 0 {
        return Err(format!("address bits below the granule set in {pte:#x}"));
    }
    let max_block_depth = if GRANULE == 12 { 3 } else { 2 };
    match depth {
        1 if bit1 => Ok(Raw::Leaf(oa)),
        1 => Err(format!("reserved level-3 descriptor {pte:#x}")),
        _ if bit1 => Ok(Raw::Table(oa)),
        d if d <= max_block_depth => misaligned(oa, GRANULE + (GRANULE - 3) * (depth - 1), "block"),
        _ => Err(format!("a block where the granule allows none: {pte:#x}")),
    }
}

// ---- RISC-V G-stage (hypervisor extension, Sv39x4 / Sv48x4): the same entries, and every
// ---- leaf must have U set (G-stage accesses are U-mode ones); G is reserved.

fn g_stage_read(pte: u64, depth: u32) -> Result<Raw, String> {
    let raw = riscv_read(pte, depth)?;
    if let Raw::Leaf(_) = raw {
        if pte >> 4 & 1 == 0 {
            return Err(format!("G-stage leaf without U: {pte:#x}"));
        }
        if pte >> 5 & 1 == 1 {
            return Err(format!("G-stage leaf with the reserved G bit: {pte:#x}"));
        }
    }
    Ok(raw)
}

// ---- x86 EPT, SDM vol. 3C 29.3.2: present if any of bits 0-2 (R, W, X); W without R is a
// ---- misconfiguration; bit 7 makes a PDPTE or PDE a 1G or 2M leaf and is reserved in a
// ---- PML4E; leaves' memory type (bits 3-5) must not be 2, 3 or 7; address bits 12..51, the
// ---- bits below a large page's size reserved (zero).

fn ept_read(pte: u64, depth: u32) -> Result<Raw, String> {
    const ADDR: u64 = 0x000f_ffff_ffff_f000;
    if pte & 0b111 == 0 {
        return Ok(Raw::Empty);
    }
    if pte & 0b011 == 0b010 {
        return Err(format!("write without read {pte:#x}"));
    }
    let large = pte >> 7 & 1 == 1;
    let leaf = depth == 1 || (large && depth <= 3);
    if large && depth == 4 {
        return Err(format!("bit 7 set in a PML4E {pte:#x}"));
    }
    if !leaf {
        return Ok(Raw::Table(pte & ADDR));
    }
    if matches!(pte >> 3 & 0b111, 2 | 3 | 7) {
        return Err(format!("reserved EPT memory type in {pte:#x}"));
    }
    misaligned(pte & ADDR, 12 + 9 * (depth - 1), "large page")
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
    ($($mode:ty => $levels:literal, $space:ident, $read:expr, $soft:expr $(, granule $g:literal, va $va:literal)? $(, live $live:expr)?;)*) => {
        $(impl Manual for $mode {
            const LEVELS: u32 = $levels;
            const SPACE: Space = Space::$space;
            $(const GRANULE: u32 = $g;
            const VA_BITS: u32 = $va;)?
            fn read(pte: u64, depth: u32) -> Result<Raw, String> {
                $read(pte, depth)
            }
            const SOFT: Soft = $soft;
            $(const LIVE_COUNT: u64 = $live;)?
        })*
    };
}

manual! {
    X86_64 => 4, Canonical, x86_read, X86_SOFT, live X86_LIVE;
    X86_64La57 => 5, Canonical, x86_read, X86_SOFT, live X86_LIVE;
    AArch64<Va48, Lower> => 4, Lower, arm_read::<12>, ARM_SOFT;
    AArch64<Va48, Upper> => 4, Upper, arm_read::<12>, ARM_SOFT;
    AArch64<Va39, Lower> => 3, Lower, arm_read::<12>, ARM_SOFT;
    AArch64<Va39, Upper> => 3, Upper, arm_read::<12>, ARM_SOFT;
    AArch64<Va48, Lower, Granule16K> => 4, Lower, arm_read::<14>, ARM_SOFT, granule 14, va 48;
    AArch64<Va47, Upper, Granule16K> => 3, Upper, arm_read::<14>, ARM_SOFT, granule 14, va 47;
    AArch64<Va36, Lower, Granule16K> => 2, Lower, arm_read::<14>, ARM_SOFT, granule 14, va 36;
    AArch64<Va48, Lower, Granule64K> => 3, Lower, arm_read::<16>, ARM_SOFT, granule 16, va 48;
    AArch64<Va48, Upper, Granule64K> => 3, Upper, arm_read::<16>, ARM_SOFT, granule 16, va 48;
    AArch64<Va42, Lower, Granule64K> => 2, Lower, arm_read::<16>, ARM_SOFT, granule 16, va 42;
    // D8.2.8: a 40-bit IPA starting at level 1 concatenates two level-1 tables.
    AArch64S2<Ipa40> => 3, Lower, arm_read::<12>, ARM_SOFT, granule 12, va 40;
    AArch64S2<Ipa48> => 4, Lower, arm_read::<12>, ARM_SOFT;
    Sv39 => 3, Canonical, riscv_read, RISCV_SOFT;
    Sv48 => 4, Canonical, riscv_read, RISCV_SOFT;
    Sv57 => 5, Canonical, riscv_read, RISCV_SOFT;
    // Hypervisor extension: the x4 roots are 2048 entries, two more GPA bits.
    Sv39x4 => 3, Lower, g_stage_read, RISCV_SOFT, granule 12, va 41;
    Sv48x4 => 4, Lower, g_stage_read, RISCV_SOFT, granule 12, va 50;
    Ept => 4, Lower, ept_read, EPT_SOFT;
}

// ---- LoongArch64, reference manual vol. 1 5.4 / 7.5: a directory entry is the next table's
// ---- address; a last-level entry is valid with bit 0; above the last level bit 6 marks a huge
// ---- page (valid with bit 0), whose bit 12 is its global bit. PALEN 48: address bits 12..47.

impl Manual for LoongArch64 {
    const LEVELS: u32 = 4;
    const SPACE: Space = Space::Canonical;
    const SOFT: Soft = LOONGARCH_SOFT;
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
