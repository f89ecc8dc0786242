//! Model-based property tests, one per paging mode: random sequences of every public call
//! (good and hostile inputs alike) run against a simple model, a map from each leaf's first
//! address to what it maps.
//!
//! After every step: a successful call did what the model did; a failed call returned one of
//! the errors the model says its input deserves and left every table byte and the frame count
//! as they were; the full walk equals the model; and the frames the handler has out are exactly
//! the tables the model's leaves need (no leak, and the handler panics on a double free).

mod common;

use std::collections::BTreeMap;

use common::Frames;
use pagetable::arch::{level_shift, max_leaf_depth, root_depth};
use pagetable::{
    AArch64, AccessState, Arch, HugePages, LoongArch64, Lower, Mapping, MappingFlags as F, MemType,
    PageSize, PageTable, PagingError as E, PhysAddr, Sv39, Sv48, Sv57, Translation, Upper, Va39,
    Va48, VaSpace, VirtAddr, X86_64, X86_64La57,
};
use proptest::prelude::*;

const PAGE: u64 = 4096;

#[derive(Clone, Copy, Debug, PartialEq)]
struct Leaf {
    pa: u64,
    shift: u32,
    flags: F,
    state: AccessState,
}

/// What the model knows of an architecture; nothing here comes from the crate's walk.
struct Spec {
    /// For the coverage statistics.
    name: &'static str,
    va_bits: u32,
    pa_bits: u32,
    space: VaSpace,
    /// log2 of each leaf size, smallest first.
    leaf_shifts: Vec<u32>,
    /// log2 of what an entry of each level maps, index 0 = depth 1.
    level_shifts: Vec<u32>,
    expressible: fn(F) -> bool,
    has_accessed_bit: bool,
}

impl Spec {
    fn of<A: Arch>(expressible: fn(F) -> bool, has_accessed_bit: bool) -> Self {
        Self {
            name: A::NAME,
            va_bits: A::VA_BITS,
            pa_bits: A::PA_BITS,
            space: A::VA_SPACE,
            leaf_shifts: (1..=max_leaf_depth::<A>()).map(level_shift::<A>).collect(),
            level_shifts: (1..=root_depth::<A>()).map(level_shift::<A>).collect(),
            expressible,
            has_accessed_bit,
        }
    }

    fn canonical(&self, va: u64) -> bool {
        let n = self.va_bits;
        match self.space {
            VaSpace::Lower => va >> n == 0,
            VaSpace::Upper => va >> n == u64::MAX >> n,
            VaSpace::Canonical => va >> (n - 1) == 0 || va >> (n - 1) == u64::MAX >> (n - 1),
        }
    }

    /// The first address after `va` the table does not translate.
    fn first_outside(&self, va: u64) -> u64 {
        match self.space {
            VaSpace::Lower => 1 << self.va_bits,
            VaSpace::Upper => 0,
            VaSpace::Canonical if va >> 63 == 0 => 1 << (self.va_bits - 1),
            VaSpace::Canonical => 0,
        }
    }

    /// Everything wrong with the range `[va, va + len)` aligned to `align`.
    fn range_errors(&self, va: u64, len: u64, align: u64) -> Vec<E> {
        let mut errs = vec![];
        if len == 0 {
            return vec![E::EmptyRange];
        }
        if va % align != 0 {
            errs.push(E::UnalignedVa(VirtAddr::from(va as usize)));
        }
        if len % align != 0 {
            errs.push(E::UnalignedLen(len as usize));
        }
        let Some(last) = va.checked_add(len - 1) else {
            errs.push(E::RangeWraps);
            return errs;
        };
        if !self.canonical(va) {
            errs.push(E::NotCanonical(VirtAddr::from(va as usize)));
        } else if !self.canonical(last)
            || (self.space == VaSpace::Canonical && (va ^ last) >> 63 != 0)
        {
            errs.push(E::NotCanonical(VirtAddr::from(
                self.first_outside(va) as usize
            )));
        }
        errs
    }

    fn pa_errors(&self, pa: u64, len: u64, align: u64) -> Vec<E> {
        let mut errs = vec![];
        if pa % align != 0 {
            errs.push(E::UnalignedPa(PhysAddr::from(pa as usize)));
        }
        match pa.checked_add(len - 1) {
            None => errs.push(E::RangeWraps),
            Some(last) if last >> self.pa_bits != 0 => {
                errs.push(E::PaTooWide(PhysAddr::from(
                    pa.max(1 << self.pa_bits) as usize
                )));
            }
            Some(_) => {}
        }
        errs
    }
}

struct Model {
    spec: Spec,
    leaves: BTreeMap<u64, Leaf>,
}

/// What the model expects of a call: success, or one of these errors.
type Expect<T> = Result<T, Vec<E>>;

fn fail<T>(errs: Vec<E>) -> Expect<T> {
    Err(errs)
}

impl Model {
    fn end(start: u64, leaf: &Leaf) -> u128 {
        start as u128 + (1u128 << leaf.shift)
    }

    /// The leaf that holds `va`.
    fn leaf_at(&self, va: u64) -> Option<(u64, Leaf)> {
        let (&start, &leaf) = self.leaves.range(..=va).next_back()?;
        ((va as u128) < Self::end(start, &leaf)).then_some((start, leaf))
    }

    /// The first mapped address in `[s, e)`.
    fn first_mapped(&self, s: u64, e: u128) -> Option<u64> {
        if self.leaf_at(s).is_some() {
            return Some(s);
        }
        self.leaves
            .range(s..)
            .next()
            .map(|(&v, _)| v)
            .filter(|&v| (v as u128) < e)
    }

    /// The first unmapped page in `[s, e)`.
    fn first_hole(&self, s: u64, e: u128) -> Option<u64> {
        let mut cursor = s as u128;
        while cursor < e {
            match self.leaf_at(cursor as u64) {
                Some((start, leaf)) => cursor = Self::end(start, &leaf),
                None => return Some(cursor as u64),
            }
        }
        None
    }

    /// Splits leaves until one starts at `b` (if `b` is inside a leaf).
    fn split_at(&mut self, b: u128) {
        if b >> 64 != 0 {
            return;
        }
        while let Some((start, leaf)) = self.leaf_at(b as u64) {
            if start == b as u64 {
                return;
            }
            self.leaves.remove(&start);
            let child = leaf.shift - 9;
            for i in 0..512u64 {
                let l = Leaf {
                    pa: leaf.pa + (i << child),
                    shift: child,
                    ..leaf
                };
                self.leaves.insert(start + (i << child), l);
            }
        }
    }

    /// The leaves a region map creates: at each address, the largest leaf that fits and that
    /// both addresses are aligned to.
    fn decompose(&self, va: u64, pa: u64, len: u64, huge: bool) -> Vec<(u64, u64, u32)> {
        let end = va as u128 + len as u128;
        let mut v = va as u128;
        let mut out = vec![];
        while v < end {
            let p = pa + (v - va as u128) as u64;
            let shift = *self
                .spec
                .leaf_shifts
                .iter()
                .rev()
                .find(|&&s| {
                    (huge || s == 12)
                        && v % (1u128 << s) == 0
                        && p % (1 << s) == 0
                        && v + (1u128 << s) <= end
                })
                .unwrap();
            out.push((v as u64, p, shift));
            v += 1u128 << shift;
        }
        out
    }

    fn insert(&mut self, parts: Vec<(u64, u64, u32)>, flags: F) {
        let state = AccessState {
            accessed: true,
            dirty: flags.contains(F::WRITE),
        };
        for (va, pa, shift) in parts {
            self.leaves.insert(
                va,
                Leaf {
                    pa,
                    shift,
                    flags,
                    state,
                },
            );
        }
    }

    fn protect_leaf(leaf: &mut Leaf, flags: F) {
        if flags.contains(F::WRITE) && !leaf.flags.contains(F::WRITE) {
            leaf.state.dirty = true;
        }
        leaf.flags = flags;
    }

    /// What is wrong with mapping `[va, va + len)` to `pa`, aligned to `align`, with `flags`.
    fn map_errors(&self, va: u64, pa: u64, len: u64, align: u64, flags: F) -> Expect<()> {
        let mut errs = self.spec.range_errors(va, len, align);
        if errs.is_empty() {
            errs.extend(self.spec.pa_errors(pa, len, align));
        }
        if !(self.spec.expressible)(flags) {
            errs.push(E::FlagsNotExpressible(flags));
        }
        if !errs.is_empty() {
            return fail(errs);
        }
        if let Some(v) = self.first_mapped(va, va as u128 + len as u128) {
            return fail(vec![E::AlreadyMapped(VirtAddr::from(v as usize))]);
        }
        Ok(())
    }

    fn map_region(&mut self, va: u64, pa: u64, len: u64, flags: F, huge: bool) -> Expect<()> {
        self.map_errors(va, pa, len, PAGE, flags)?;
        let parts = self.decompose(va, pa, len, huge);
        self.insert(parts, flags);
        Ok(())
    }

    fn map(&mut self, va: u64, pa: u64, shift: u32, flags: F) -> Expect<()> {
        let size = PageSize::from_shift(shift).unwrap();
        if !self.spec.leaf_shifts.contains(&shift) {
            return fail(vec![E::SizeNotSupported(size)]);
        }
        let len = 1u64 << shift;
        self.map_errors(va, pa, len, len, flags)?;
        self.insert(vec![(va, pa, shift)], flags);
        Ok(())
    }

    /// The leaf that starts at `va`, as the single-leaf calls want it.
    fn leaf_starting_at(&self, va: u64) -> Expect<Leaf> {
        if !self.spec.canonical(va) {
            return fail(vec![E::NotCanonical(VirtAddr::from(va as usize))]);
        }
        match self.leaf_at(va) {
            None => fail(vec![E::NotMapped(VirtAddr::from(va as usize))]),
            Some((start, leaf)) if start != va => fail(vec![E::InsideLeaf {
                leaf: VirtAddr::from(start as usize),
                size: PageSize::from_shift(leaf.shift).unwrap(),
            }]),
            Some((_, leaf)) => Ok(leaf),
        }
    }

    fn unmap(&mut self, va: u64) -> Expect<Mapping> {
        let leaf = self.leaf_starting_at(va)?;
        self.leaves.remove(&va);
        Ok(to_mapping(va, &leaf))
    }

    fn remap(&mut self, va: u64, pa: u64) -> Expect<()> {
        let leaf = self.leaf_starting_at(va)?;
        let errs = self.spec.pa_errors(pa, 1 << leaf.shift, 1 << leaf.shift);
        if !errs.is_empty() {
            return fail(errs);
        }
        self.leaves.get_mut(&va).unwrap().pa = pa;
        Ok(())
    }

    fn protect(&mut self, va: u64, flags: F) -> Expect<()> {
        self.leaf_starting_at(va)?;
        if !(self.spec.expressible)(flags) {
            return fail(vec![E::FlagsNotExpressible(flags)]);
        }
        Self::protect_leaf(self.leaves.get_mut(&va).unwrap(), flags);
        Ok(())
    }

    fn clear_state(&mut self, va: u64, clear: AccessState) -> Expect<AccessState> {
        if !self.spec.canonical(va) {
            return fail(vec![E::NotCanonical(VirtAddr::from(va as usize))]);
        }
        let Some((start, _)) = self.leaf_at(va) else {
            return fail(vec![E::NotMapped(VirtAddr::from(va as usize))]);
        };
        let has_accessed_bit = self.spec.has_accessed_bit;
        let leaf = self.leaves.get_mut(&start).unwrap();
        let before = leaf.state;
        if clear.accessed && has_accessed_bit {
            leaf.state.accessed = false;
        }
        if clear.dirty {
            leaf.state.dirty = false;
        }
        Ok(before)
    }

    fn unmap_region(&mut self, va: u64, len: u64) -> Expect<()> {
        let errs = self.spec.range_errors(va, len, PAGE);
        if !errs.is_empty() {
            return fail(errs);
        }
        let end = va as u128 + len as u128;
        self.split_at(va as u128);
        self.split_at(end);
        let doomed: Vec<u64> = self
            .leaves
            .range(va..)
            .map(|(&v, _)| v)
            .take_while(|&v| (v as u128) < end)
            .collect();
        for v in doomed {
            self.leaves.remove(&v);
        }
        Ok(())
    }

    fn protect_region(&mut self, va: u64, len: u64, flags: F) -> Expect<()> {
        let mut errs = self.spec.range_errors(va, len, PAGE);
        if !(self.spec.expressible)(flags) {
            errs.push(E::FlagsNotExpressible(flags));
        }
        if !errs.is_empty() {
            return fail(errs);
        }
        let end = va as u128 + len as u128;
        if let Some(hole) = self.first_hole(va, end) {
            return fail(vec![E::NotMapped(VirtAddr::from(hole as usize))]);
        }
        self.split_at(va as u128);
        self.split_at(end);
        for (_, leaf) in self
            .leaves
            .range_mut(va..)
            .take_while(|(v, _)| (**v as u128) < end)
        {
            Self::protect_leaf(leaf, flags);
        }
        Ok(())
    }

    fn query(&self, va: u64) -> Expect<Translation> {
        if !self.spec.canonical(va) {
            return fail(vec![E::NotCanonical(VirtAddr::from(va as usize))]);
        }
        let Some((start, leaf)) = self.leaf_at(va) else {
            return fail(vec![E::NotMapped(VirtAddr::from(va as usize))]);
        };
        Ok(Translation {
            pa: PhysAddr::from((leaf.pa + (va - start)) as usize),
            flags: leaf.flags,
            size: PageSize::from_shift(leaf.shift).unwrap(),
            state: leaf.state,
            leaf_va: VirtAddr::from(start as usize),
        })
    }

    /// The tables the leaves need: the root, and at each lower depth one table per span that
    /// holds a leaf at that depth or below.
    fn tables_needed(&self) -> usize {
        let shifts = &self.spec.level_shifts;
        let mut n = 1;
        for depth in 1..shifts.len() {
            // A table at `depth` spans what one entry one level up maps.
            let span = shifts[depth];
            let mut spans: Vec<u64> = self
                .leaves
                .iter()
                .filter(|(_, l)| l.shift <= shifts[depth - 1])
                .map(|(&v, _)| v >> span)
                .collect();
            spans.dedup();
            n += spans.len();
        }
        n
    }

    fn mappings(&self) -> Vec<Mapping> {
        self.leaves.iter().map(|(&v, l)| to_mapping(v, l)).collect()
    }
}

fn to_mapping(va: u64, leaf: &Leaf) -> Mapping {
    Mapping {
        va: VirtAddr::from(va as usize),
        pa: PhysAddr::from(leaf.pa as usize),
        size: PageSize::from_shift(leaf.shift).unwrap(),
        flags: leaf.flags,
        state: leaf.state,
    }
}

/// A call, with raw numbers that `Picker` turns into addresses for the mode at hand.
#[derive(Clone, Debug)]
enum Op {
    MapRegion {
        va: VaPick,
        len: LenPick,
        pa: PaPick,
        flags: u8,
        huge: bool,
    },
    Map {
        va: VaPick,
        size: u8,
        pa: PaPick,
        flags: u8,
    },
    Unmap {
        va: VaPick,
    },
    UnmapRegion {
        va: VaPick,
        len: LenPick,
    },
    Protect {
        va: VaPick,
        flags: u8,
    },
    ProtectRegion {
        va: VaPick,
        len: LenPick,
        flags: u8,
    },
    Remap {
        va: VaPick,
        pa: PaPick,
    },
    ClearState {
        va: VaPick,
        accessed: bool,
        dirty: bool,
    },
    Query {
        va: VaPick,
    },
}

#[derive(Clone, Debug)]
struct VaPick {
    /// Some: an existing leaf (index modulo their number), plus `inside` pages into it.
    leaf: Option<(u16, u16)>,
    base: u8,
    offset: u32,
    coarse: bool,
    hostile: u8,
}

#[derive(Clone, Debug)]
struct LenPick {
    kind: u8,
    n: u32,
}

#[derive(Clone, Debug)]
struct PaPick {
    base: u8,
    mode: u8,
    offset: u32,
}

fn va_pick() -> impl Strategy<Value = VaPick> {
    (
        prop::option::weighted(0.5, (any::<u16>(), any::<u16>())),
        any::<u8>(),
        any::<u32>(),
        any::<bool>(),
        any::<u8>(),
    )
        .prop_map(|(leaf, base, offset, coarse, hostile)| VaPick {
            leaf,
            base,
            offset,
            coarse,
            hostile,
        })
}

fn len_pick() -> impl Strategy<Value = LenPick> {
    (any::<u8>(), any::<u32>()).prop_map(|(kind, n)| LenPick { kind, n })
}

fn pa_pick() -> impl Strategy<Value = PaPick> {
    (any::<u8>(), any::<u8>(), any::<u32>()).prop_map(|(base, mode, offset)| PaPick {
        base,
        mode,
        offset,
    })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (va_pick(), len_pick(), pa_pick(), any::<u8>(), any::<bool>())
            .prop_map(|(va, len, pa, flags, huge)| Op::MapRegion { va, len, pa, flags, huge }),
        2 => (va_pick(), any::<u8>(), pa_pick(), any::<u8>()).prop_map(|(va, size, pa, flags)| Op::Map { va, size, pa, flags }),
        2 => va_pick().prop_map(|va| Op::Unmap { va }),
        2 => (va_pick(), len_pick()).prop_map(|(va, len)| Op::UnmapRegion { va, len }),
        1 => (va_pick(), any::<u8>()).prop_map(|(va, flags)| Op::Protect { va, flags }),
        3 => (va_pick(), len_pick(), any::<u8>()).prop_map(|(va, len, flags)| Op::ProtectRegion { va, len, flags }),
        1 => (va_pick(), pa_pick()).prop_map(|(va, pa)| Op::Remap { va, pa }),
        1 => (va_pick(), any::<bool>(), any::<bool>()).prop_map(|(va, accessed, dirty)| Op::ClearState { va, accessed, dirty }),
        1 => va_pick().prop_map(|va| Op::Query { va }),
    ]
}

fn flags_of(bits: u8) -> F {
    let mem = [
        MemType::Normal,
        MemType::Normal,
        MemType::Device,
        MemType::Uncached,
    ][(bits >> 5) as usize & 3];
    // Mostly readable: most of the calls should get past the flag check.
    let extra = if bits & 0xe0 == 0xe0 {
        F::EMPTY
    } else {
        F::READ
    };
    F::from_bits(bits & 0x1f)
        .unwrap()
        .union(extra)
        .with_mem_type(mem)
}

impl Model {
    fn bases(&self) -> Vec<u64> {
        let n = self.spec.va_bits;
        let g = 1u64 << 30;
        match self.spec.space {
            VaSpace::Lower => vec![0, g, 3 * g, (1 << n) - 2 * g],
            VaSpace::Upper => {
                let low = 0u64.wrapping_sub(1 << n);
                vec![low, low + g, low + 3 * g, 0u64.wrapping_sub(2 * g)]
            }
            VaSpace::Canonical => {
                let upper = 0u64.wrapping_sub(1 << (n - 1));
                vec![
                    0,
                    g,
                    3 * g,
                    (1 << (n - 1)) - 2 * g,
                    upper,
                    upper + g,
                    0u64.wrapping_sub(2 * g),
                ]
            }
        }
    }

    /// A virtual address, and the end of the run of leaves it was picked from (if it was).
    fn pick_va(&self, p: &VaPick) -> (u64, Option<u128>) {
        if let Some((i, inside)) = p.leaf {
            if !self.leaves.is_empty() {
                let (&start, leaf) = self
                    .leaves
                    .iter()
                    .nth(i as usize % self.leaves.len())
                    .unwrap();
                // Mostly the leaf's start; sometimes a page inside it.
                let pages = (1u64 << leaf.shift) / PAGE;
                let offset = if inside % 4 == 0 {
                    (inside as u64 % pages) * PAGE
                } else {
                    0
                };
                // The end of the mapped run that starts with this leaf.
                let mut end = Self::end(start, leaf);
                while let Some((s, l)) = self.leaf_at(end as u64).filter(|_| end >> 64 == 0) {
                    end = Self::end(s, &l);
                }
                return (start + offset, Some(end));
            }
        }
        let n = self.spec.va_bits;
        let bases = self.bases();
        let base = bases[p.base as usize % bases.len()];
        let va = match p.hostile % 32 {
            0 => bases[0] + 0x800,
            1 => 1 << (n - 1),
            2 => 0u64.wrapping_sub(PAGE),
            3 => 1 << n,
            // The base itself: aligned for the largest leaves.
            4..=11 => base,
            _ if p.coarse => base.wrapping_add((p.offset as u64 % 1024) << 21),
            _ => base.wrapping_add((p.offset as u64 % 2048) * PAGE),
        };
        (va, None)
    }

    /// A length; for an address picked from a run of leaves, often one that ends at, inside, or
    /// just past the run's end.
    fn pick_len(&self, p: &LenPick, pa_aligned: bool, va: u64, run_end: Option<u128>) -> u64 {
        if let Some(end) = run_end.filter(|_| p.kind % 2 == 0) {
            let to_end = (end - va as u128).min(1 << 40) as u64;
            return match (p.kind / 2) % 4 {
                0 | 1 => to_end,
                2 => (to_end - PAGE).max(PAGE),
                _ => to_end + (p.n as u64 % 8 + 1) * PAGE,
            };
        }
        match p.kind % 16 {
            0..=5 => (p.n as u64 % 64 + 1) * PAGE,
            6..=9 => (p.n as u64 % 600 + 1) * PAGE,
            10..=12 => (p.n as u64 % 4 + 1) << 21,
            13 if pa_aligned => 1 << 30,
            13 => 1 << 21,
            14 => 0,
            _ => 0x1800,
        }
    }

    fn pick_pa(&self, p: &PaPick, (va, _): (u64, Option<u128>)) -> u64 {
        // 1 << 48 is past the width of the 48-bit modes: rarer.
        let bases = [
            0x8000_0000u64,
            1 << 40,
            0,
            0x8000_0000,
            1 << 40,
            0,
            0x1_0000_0000,
            1 << 48,
        ];
        let base = bases[p.base as usize % bases.len()];
        match p.mode % 8 {
            // Same alignment as the VA, up to the base's own alignment: huge leaves fit.
            0..=3 => {
                let align_bits = if base == 0 {
                    47
                } else {
                    base.trailing_zeros().min(47)
                };
                base + (va & ((1 << align_bits) - 1))
            }
            4 | 5 => base + (p.offset as u64 % 4096) * PAGE,
            6 => base + 0x100,
            _ => (1u64 << self.spec.pa_bits) - PAGE,
        }
    }
}

fn run<A: Arch>(spec: Spec, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut model = Model {
        spec,
        leaves: BTreeMap::new(),
    };
    let mut pt = PageTable::<A, _>::new(Frames::new(6000, 0x4000_0000)).unwrap();
    let sizes = [12u32, 21, 30, 39, 48, 14];
    for (step, op) in ops.iter().enumerate() {
        let before = pt.handler().snapshot();
        let frames_before = pt.handler().live_frames();
        let (what, checked_va): (Result<(), E>, Option<u64>) = match op {
            Op::MapRegion {
                va,
                len,
                pa,
                flags,
                huge,
            } => {
                let picked = model.pick_va(va);
                let va = picked.0;
                let aligned = pa.mode % 8 <= 3;
                let len = model.pick_len(len, aligned && *huge, va, None);
                let pa = model.pick_pa(pa, picked);
                let flags = flags_of(*flags);
                let huge_arg = if *huge {
                    HugePages::Allowed
                } else {
                    HugePages::Never
                };
                let got = pt.map_region(
                    VirtAddr::from(va as usize),
                    PhysAddr::from(pa as usize),
                    len as usize,
                    flags,
                    huge_arg,
                );
                let want = model.map_region(va, pa, len, flags, *huge);
                (compare(step, op, got.map(|f| f.ignore()), want)?, Some(va))
            }
            Op::Map {
                va,
                size,
                pa,
                flags,
            } => {
                let picked = model.pick_va(va);
                let shift = sizes[*size as usize % sizes.len()];
                // Mostly aligned to the size asked for (hostile picks stay as they are).
                let align = |x: u64, keep: bool| if keep { x } else { x & !((1u64 << shift) - 1) };
                let va = align(picked.0, va.hostile % 32 < 4 || va.leaf.is_some());
                let pa = align(model.pick_pa(pa, (va, None)), pa.mode % 8 >= 6);
                let flags = flags_of(*flags);
                let got = pt.map(
                    VirtAddr::from(va as usize),
                    PhysAddr::from(pa as usize),
                    PageSize::from_shift(shift).unwrap(),
                    flags,
                );
                let want = model.map(va, pa, shift, flags);
                (compare(step, op, got.map(|f| f.ignore()), want)?, Some(va))
            }
            Op::Unmap { va } => {
                let va = model.pick_va(va).0;
                let got = pt.unmap(VirtAddr::from(va as usize)).map(|(m, f)| {
                    f.ignore();
                    m
                });
                let want = model.unmap(va);
                (compare(step, op, got, want)?, Some(va))
            }
            Op::UnmapRegion { va, len } => {
                let (va, run_end) = model.pick_va(va);
                let len = model.pick_len(len, true, va, run_end);
                let got = pt.unmap_region(VirtAddr::from(va as usize), len as usize);
                let want = model.unmap_region(va, len);
                (compare(step, op, got.map(|f| f.ignore()), want)?, Some(va))
            }
            Op::Protect { va, flags } => {
                let va = model.pick_va(va).0;
                let flags = flags_of(*flags);
                let got = pt.protect(VirtAddr::from(va as usize), flags);
                let want = model.protect(va, flags);
                (compare(step, op, got.map(|f| f.ignore()), want)?, Some(va))
            }
            Op::ProtectRegion { va, len, flags } => {
                let (va, run_end) = model.pick_va(va);
                let len = model.pick_len(len, true, va, run_end);
                let flags = flags_of(*flags);
                let got = pt.protect_region(VirtAddr::from(va as usize), len as usize, flags);
                let want = model.protect_region(va, len, flags);
                (compare(step, op, got.map(|f| f.ignore()), want)?, Some(va))
            }
            Op::Remap { va, pa } => {
                let picked = model.pick_va(va);
                let va = picked.0;
                let pa = model.pick_pa(pa, picked);
                let got = pt.remap(VirtAddr::from(va as usize), PhysAddr::from(pa as usize));
                let want = model.remap(va, pa);
                (compare(step, op, got.map(|f| f.ignore()), want)?, Some(va))
            }
            Op::ClearState {
                va,
                accessed,
                dirty,
            } => {
                let va = model.pick_va(va).0;
                let clear = AccessState {
                    accessed: *accessed,
                    dirty: *dirty,
                };
                let got = pt
                    .clear_access_state(VirtAddr::from(va as usize), clear)
                    .map(|(s, f)| {
                        f.ignore();
                        s
                    });
                let want = model.clear_state(va, clear);
                (compare(step, op, got, want)?, Some(va))
            }
            Op::Query { va } => {
                let va = model.pick_va(va).0;
                let got = pt.query(VirtAddr::from(va as usize));
                let want = model.query(va);
                (compare(step, op, got, want)?, Some(va))
            }
        };
        if std::env::var_os("MODEL_STATS").is_some() {
            // Coverage check by hand: `MODEL_STATS=1 cargo test --test model -- --nocapture`.
            let kind = format!("{op:?}")
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
            let outcome = what.as_ref().map_or_else(
                |e| {
                    format!("{e:?}")
                        .split(|c: char| !c.is_alphanumeric())
                        .next()
                        .unwrap_or_default()
                        .to_string()
                },
                |()| "ok".into(),
            );
            let sizes: std::collections::BTreeSet<u32> =
                model.leaves.values().map(|l| l.shift).collect();
            eprintln!(
                "STAT {} {kind} {outcome} leaves={} sizes={sizes:?}",
                model.spec.name,
                model.leaves.len()
            );
        }
        if what.is_err() {
            prop_assert!(
                pt.handler().snapshot() == before,
                "step {step}: {op:?} failed but changed table memory"
            );
            prop_assert_eq!(
                pt.handler().live_frames(),
                frames_before,
                "step {}: a failed call changed the frame count",
                step
            );
        }
        // The whole table agrees with the model, and holds exactly the frames it needs.
        let mut walked = vec![];
        pt.for_each_mapping(|m| walked.push(m));
        prop_assert_eq!(
            &walked,
            &model.mappings(),
            "step {}: walk differs from the model after {:?}",
            step,
            op
        );
        prop_assert_eq!(
            pt.handler().live_frames(),
            model.tables_needed(),
            "step {}: frames after {:?}",
            step,
            op
        );
        prop_assert_eq!(
            pt.table_frames(),
            model.tables_needed(),
            "step {}: table_frames after {:?}",
            step,
            op
        );
        if let Some(va) = checked_va {
            for probe in [va, va.wrapping_add(PAGE), va.wrapping_add(5 << 20)] {
                let got = pt.query(VirtAddr::from(probe as usize));
                let _ = compare(step, op, got, model.query(probe))?;
            }
        }
    }
    // Dropping the table gives back every frame it holds (the handler panics on a double free).
    let ledger = pt.handler().ledger();
    drop(pt);
    prop_assert_eq!(ledger.get(), 0, "frames leaked by drop");
    Ok(())
}

/// Checks a call's result against the model's expectation; returns the call's outcome.
fn compare<T: PartialEq + std::fmt::Debug>(
    step: usize,
    op: &Op,
    got: Result<T, E>,
    want: Expect<T>,
) -> Result<Result<(), E>, TestCaseError> {
    match (got, want) {
        (Ok(g), Ok(w)) => {
            prop_assert_eq!(g, w, "step {}: {:?}", step, op);
            Ok(Ok(()))
        }
        (Err(g), Err(w)) => {
            prop_assert!(
                w.contains(&g),
                "step {step}: {op:?} returned {g:?}, the model expects one of {w:?}"
            );
            Ok(Err(g))
        }
        (Ok(g), Err(w)) => Err(TestCaseError::fail(format!(
            "step {step}: {op:?} succeeded with {g:?}, the model expects {w:?}"
        ))),
        (Err(g), Ok(w)) => Err(TestCaseError::fail(format!(
            "step {step}: {op:?} failed with {g:?}, the model expects {w:?}"
        ))),
    }
}

fn needs_read(f: F) -> bool {
    f.contains(F::READ)
}

fn riscv_expressible(f: F) -> bool {
    // Something allowed, and no write without read.
    !f.no_access() && (f.contains(F::READ) || !f.contains(F::WRITE))
}

fn loongarch_expressible(f: F) -> bool {
    !f.no_access()
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64)
}

macro_rules! model_test {
    ($name:ident, $arch:ty, $expressible:expr, $accessed:expr) => {
        proptest! {
            #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 2000, ..ProptestConfig::default() })]
            #[test]
            fn $name(ops in prop::collection::vec(op(), 1..64)) {
                run::<$arch>(Spec::of::<$arch>($expressible, $accessed), &ops)?;
            }
        }
    };
}

model_test!(model_x86_64, X86_64, needs_read, true);
model_test!(model_x86_64_la57, X86_64La57, needs_read, true);
model_test!(model_aarch64_48_ttbr0, AArch64<Va48, Lower>, needs_read, true);
model_test!(model_aarch64_48_ttbr1, AArch64<Va48, Upper>, needs_read, true);
model_test!(model_aarch64_39_ttbr0, AArch64<Va39, Lower>, needs_read, true);
model_test!(model_aarch64_39_ttbr1, AArch64<Va39, Upper>, needs_read, true);
model_test!(model_sv39, Sv39, riscv_expressible, true);
model_test!(model_sv48, Sv48, riscv_expressible, true);
model_test!(model_sv57, Sv57, riscv_expressible, true);
model_test!(model_loongarch64, LoongArch64, loongarch_expressible, false);
