//! What a mapping allows ([`MappingFlags`], [`MemType`]), what hardware recorded about it
//! ([`AccessState`]), and how large a leaf is ([`PageSize`]). Encodings live in `arch/`.

use core::fmt;
use core::ops::{BitAnd, BitOr, BitOrAssign, Not};

/// The memory type of a mapping: how the CPU may cache and reorder accesses through it.
///
/// Each architecture encodes it differently; the arch files document the exact encoding
/// (x86 PAT index, AArch64 MAIR index, RISC-V Svpbmt, LoongArch MAT).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum MemType {
    /// Normal memory, write-back cached.
    #[default]
    Normal,
    /// Device (MMIO) memory: uncached, strongly ordered, no speculative access.
    Device,
    /// Normal memory that is not cached; writes may be combined (x86 WC, Arm Normal
    /// Non-cacheable, RISC-V NC, LoongArch WUC). For frame buffers and DMA buffers.
    Uncached,
}

/// The access rights and memory type of a mapping, as the caller asks for them.
///
/// A flag set reads back from [`PageTable::query`](crate::PageTable::query) exactly as it was
/// written; a set that an architecture cannot express is refused with
/// [`PagingError::FlagsNotExpressible`](crate::PagingError::FlagsNotExpressible) rather than
/// mapped as something else.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MappingFlags(u16);

impl MappingFlags {
    /// No access, normal memory. Not mappable by itself; the neutral element of `|`.
    pub const EMPTY: Self = Self(0);
    /// Loads are allowed.
    pub const READ: Self = Self(1 << 0);
    /// Stores are allowed.
    pub const WRITE: Self = Self(1 << 1);
    /// Instruction fetches are allowed.
    pub const EXECUTE: Self = Self(1 << 2);
    /// The mapping is accessible from user mode (and, where the architecture ties execute
    /// rights to the privilege level, executable only there).
    pub const USER: Self = Self(1 << 3);
    /// The translation is global: not tagged with an address-space ID, kept across switches.
    pub const GLOBAL: Self = Self(1 << 4);
    /// Device memory (see [`MemType::Device`]).
    pub const DEVICE: Self = Self(1 << 5);
    /// Uncached normal memory (see [`MemType::Uncached`]).
    pub const UNCACHED: Self = Self(2 << 5);
    /// Stage 2 only, x86 EPT: the mapping's memory type replaces the one the guest's PAT would
    /// give (EPT "ignore PAT", bit 6), instead of combining with it. Every other mode refuses
    /// it.
    pub const IGNORE_PAT: Self = Self(1 << 7);
    /// The leaf exists, keeps its frame and its other flags, and the MMU faults on every
    /// access through it: a kernel's `PROT_NONE` (or a NUMA-hinting fault). Protecting it
    /// again without this flag makes it accessible with the other flags. The entry is
    /// invalid to the MMU, tagged with a software bit ([`Arch::INACCESSIBLE_TAG`]), so nothing
    /// about it is cached in a TLB and the MMU never writes it. Not on [`Ept`](crate::Ept),
    /// whose present bits are its permissions.
    ///
    /// [`Arch::INACCESSIBLE_TAG`]: crate::Arch::INACCESSIBLE_TAG
    pub const INACCESSIBLE: Self = Self(1 << 8);
    /// AArch64 EL3 only ([`El3`](crate::El3)): the leaf maps the non-secure physical address
    /// space (the descriptor's NS bit) from the secure world's table. Every other mode
    /// refuses it.
    pub const NON_SECURE: Self = Self(1 << 9);

    /// Every bit but the memory type: permissions, and the attributes.
    const PERMISSIONS: u16 = 0x39f;
    const MEM_SHIFT: u16 = 5;
    const MEM: u16 = 0x60;

    /// The raw bits: permissions in bits 0-4, the memory type in bits 5-6, `IGNORE_PAT` in
    /// bit 7, `INACCESSIBLE` in bit 8, `NON_SECURE` in bit 9.
    #[must_use]
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// Flags no caller can pass (every bit set, where [`from_bits`](Self::from_bits) takes
    /// only known ones and every operator keeps to them): a cache's "nothing yet".
    pub(crate) const NONE_YET: Self = Self(u16::MAX);

    /// Builds flags from [`bits`](Self::bits); `None` if a bit is unknown or the memory-type
    /// field holds no [`MemType`].
    #[must_use]
    pub const fn from_bits(bits: u16) -> Option<Self> {
        if bits & !(Self::PERMISSIONS | Self::MEM) != 0 || (bits & Self::MEM) >> Self::MEM_SHIFT > 2
        {
            None
        } else {
            Some(Self(bits))
        }
    }

    /// Flags from [`bits`](Self::bits) known to be valid (the arch decoders build them so).
    #[inline]
    pub(crate) const fn from_bits_valid(bits: u16) -> Self {
        Self(bits)
    }

    /// Whether every permission bit of `other` is set here and the memory types agree when
    /// `other` names one other than [`MemType::Normal`].
    #[must_use]
    pub const fn contains(self, other: Self) -> bool {
        let perms = other.0 & Self::PERMISSIONS;
        let mem_ok = other.0 & Self::MEM == 0 || other.0 & Self::MEM == self.0 & Self::MEM;
        self.0 & perms == perms && mem_ok
    }

    /// Whether any permission or attribute bit of `other` is set here (memory types aside).
    #[must_use]
    pub const fn intersects(self, other: Self) -> bool {
        self.0 & other.0 & Self::PERMISSIONS != 0
    }

    /// Both flag sets' permissions, and the stronger of their memory types: device over
    /// uncached over normal. So `|` is commutative and associative, and a memory type once
    /// asked for is never weakened by adding permissions.
    #[must_use]
    pub const fn union(self, other: Self) -> Self {
        const fn strength(flags: MappingFlags) -> u8 {
            match flags.mem_type() {
                MemType::Normal => 0,
                MemType::Uncached => 1,
                MemType::Device => 2,
            }
        }
        let mem = if strength(other) > strength(self) {
            other.0
        } else {
            self.0
        } & Self::MEM;
        Self(((self.0 | other.0) & Self::PERMISSIONS) | mem)
    }

    /// The memory type.
    #[must_use]
    pub const fn mem_type(self) -> MemType {
        match (self.0 & Self::MEM) >> Self::MEM_SHIFT {
            0 => MemType::Normal,
            1 => MemType::Device,
            _ => MemType::Uncached,
        }
    }

    /// The same permissions with another memory type.
    #[must_use]
    pub const fn with_mem_type(self, mem: MemType) -> Self {
        let code = match mem {
            MemType::Normal => 0,
            MemType::Device => 1,
            MemType::Uncached => 2,
        };
        Self((self.0 & Self::PERMISSIONS) | code << Self::MEM_SHIFT)
    }

    /// These flags without the permissions of `other`; the memory type stays.
    #[must_use]
    pub(crate) const fn without(self, other: Self) -> Self {
        Self(self.0 & !(other.0 & Self::PERMISSIONS))
    }

    /// Whether `READ`, `WRITE` and `EXECUTE` are all clear.
    #[must_use]
    pub const fn no_access(self) -> bool {
        self.0 & 0b111 == 0
    }
}

impl BitOr for MappingFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        self.union(rhs)
    }
}

impl BitOrAssign for MappingFlags {
    fn bitor_assign(&mut self, rhs: Self) {
        *self = self.union(rhs);
    }
}

impl BitAnd for MappingFlags {
    type Output = Self;
    /// The permissions both have; the memory type if both agree, else normal.
    fn bitand(self, rhs: Self) -> Self {
        let mem = if self.0 & Self::MEM == rhs.0 & Self::MEM {
            self.0 & Self::MEM
        } else {
            0
        };
        Self((self.0 & rhs.0 & Self::PERMISSIONS) | mem)
    }
}

impl Not for MappingFlags {
    type Output = Self;
    /// The other permissions, normal memory.
    fn not(self) -> Self {
        Self(!self.0 & Self::PERMISSIONS)
    }
}

impl fmt::Debug for MappingFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bit = |flag: Self, c: char| if self.contains(flag) { c } else { '-' };
        write!(
            f,
            "{}{}{}{}{}",
            bit(Self::READ, 'R'),
            bit(Self::WRITE, 'W'),
            bit(Self::EXECUTE, 'X'),
            bit(Self::USER, 'U'),
            bit(Self::GLOBAL, 'G'),
        )?;
        if self.contains(Self::IGNORE_PAT) {
            f.write_str(" ignore-pat")?;
        }
        if self.contains(Self::INACCESSIBLE) {
            f.write_str(" inaccessible")?;
        }
        if self.contains(Self::NON_SECURE) {
            f.write_str(" non-secure")?;
        }
        match self.mem_type() {
            MemType::Normal => Ok(()),
            MemType::Device => f.write_str(" device"),
            MemType::Uncached => f.write_str(" uncached"),
        }
    }
}

/// What the hardware recorded about a leaf: whether it was accessed, and written.
///
/// New leaves start accessed and, if writable, dirty, so that hardware that does not manage
/// these bits itself (RISC-V without Svadu, AArch64 without FEAT_HAFDBS, LoongArch) takes no
/// fault on first touch; clear them with
/// [`PageTable::clear_access_state`](crate::PageTable::clear_access_state) to start tracking.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct AccessState {
    /// The leaf was used for a translation since the bit was last cleared. LoongArch has no
    /// accessed bit and always reports `true`.
    pub accessed: bool,
    /// A store went through the leaf since the bit was last cleared.
    pub dirty: bool,
}

impl AccessState {
    /// Both bits set: the state of a new writable leaf, and the argument that clears both.
    pub const BOTH: Self = Self {
        accessed: true,
        dirty: true,
    };
}

/// The size of a leaf: a power of two, stored as its base-2 logarithm.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PageSize(u8);

impl PageSize {
    /// 4 KiB.
    pub const SIZE_4K: Self = Self(12);
    /// 2 MiB.
    pub const SIZE_2M: Self = Self(21);
    /// 1 GiB.
    pub const SIZE_1G: Self = Self(30);
    /// 16 KiB (AArch64 16K granule).
    pub const SIZE_16K: Self = Self(14);
    /// 64 KiB (AArch64 64K granule).
    pub const SIZE_64K: Self = Self(16);
    /// 32 MiB (AArch64 16K granule, level 2).
    pub const SIZE_32M: Self = Self(25);
    /// 512 MiB (AArch64 64K granule, level 2).
    pub const SIZE_512M: Self = Self(29);
    /// 512 GiB (RISC-V Sv48 and Sv57).
    pub const SIZE_512G: Self = Self(39);
    /// 256 TiB (RISC-V Sv57).
    pub const SIZE_256T: Self = Self(48);

    /// The size `1 << shift`; `None` unless `shift` is at most 63.
    #[must_use]
    pub const fn from_shift(shift: u32) -> Option<Self> {
        if shift < 64 {
            Some(Self(shift as u8))
        } else {
            None
        }
    }

    /// The size in bytes.
    #[must_use]
    pub const fn bytes(self) -> usize {
        1 << self.0
    }

    /// The base-2 logarithm of the size.
    #[must_use]
    pub const fn shift(self) -> u32 {
        self.0 as u32
    }
}

impl fmt::Display for PageSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 7] = ["B", "K", "M", "G", "T", "P", "E"];
        let unit = self.0 / 10;
        write!(f, "{}{}", 1u64 << (self.0 % 10), UNITS[unit as usize])
    }
}

impl fmt::Debug for PageSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
