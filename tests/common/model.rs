//! The model behind the property tests and the fuzz targets: a map from each leaf's first
//! address to what it maps, the calls as data ([`Op`]), and [`run`], which plays a sequence of
//! calls on a real table and on the model and checks, after every step:
//!
//! * a successful call did what the model did; a failed call returned one of the errors the
//!   model says its input deserves, and left every table byte and the frame count as they were;
//! * the crate's own walk equals the model;
//! * an independent raw walk of table memory ([`super::raw`], decoding entries from the manuals)
//!   finds exactly the model's leaves, reaches no table twice, and reaches exactly the frames
//!   the handler has out (no leak; the handler panics on a double free);
//! * the frames out are exactly the tables the model's leaves need;
//!
//! and that dropping the table gives every frame back.
#![allow(dead_code)]

use std::collections::BTreeMap;

use pagetable::arch::{level_shift, max_leaf_depth, root_depth};
use pagetable::{
    AArch64, AArch64S2, AccessState, Arch, Cleared, Ept, Granule16K, Granule64K, HugePages, Ipa40,
    Ipa48, Liveness, Lookup, LoongArch64, Lower, Mapping, MappingFlags as F, MemType, PageSize,
    PageTable, PagingError as E, PhysAddr, Sv39, Sv39x4, Sv48, Sv48x4, Sv57, Translation, Upper,
    Va36, Va39, Va42, Va47, Va48, VaSpace, VirtAddr, X86_64, X86_64La57,
};

use super::hw::Hardware;
use super::raw;
use super::{Frames, Plain, Shared, at};

/// Fails the run with a message unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

/// Fails the run unless `a == b`, with both in the message.
macro_rules! ensure_eq {
    ($a:expr, $b:expr, $($fmt:tt)+) => {{
        let (a, b) = (&$a, &$b);
        if a != b {
            return Err(format!("{}\n  left: {:?}\n right: {:?}", format!($($fmt)+), a, b));
        }
    }};
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Leaf {
    pub pa: u64,
    pub shift: u32,
    pub flags: F,
    pub state: AccessState,
    /// Software bits, packed.
    pub soft: u64,
}

/// What the model knows of an architecture; nothing here comes from the crate's walk.
#[derive(Clone)]
pub struct Spec {
    /// For the coverage statistics.
    name: &'static str,
    va_bits: u32,
    pa_bits: u32,
    space: VaSpace,
    /// log2 of each leaf size, smallest first.
    leaf_shifts: Vec<u32>,
    /// log2 of what an entry of each level maps, index 0 = depth 1.
    level_shifts: Vec<u32>,
    /// The smallest page (the granule).
    pub page: u64,
    /// Index bits of a table below the root.
    index_bits: u32,
    expressible: fn(F) -> bool,
    has_accessed_bit: bool,
    /// Payload bits of a marker, as the crate documents them per mode.
    marker_bits: u32,
    /// Software bits of a leaf, as the crate documents them per mode.
    soft_bits: u32,
}

impl Spec {
    pub fn of<A: Arch>(
        expressible: fn(F) -> bool,
        has_accessed_bit: bool,
        marker_bits: u32,
        soft_bits: u32,
    ) -> Self {
        Self {
            name: A::NAME,
            va_bits: A::VA_BITS,
            pa_bits: A::PA_BITS,
            space: A::VA_SPACE,
            leaf_shifts: (1..=max_leaf_depth::<A>()).map(level_shift::<A>).collect(),
            level_shifts: (1..=root_depth::<A>()).map(level_shift::<A>).collect(),
            page: 1 << A::PAGE_SHIFT,
            index_bits: A::INDEX_BITS,
            expressible,
            has_accessed_bit,
            marker_bits,
            soft_bits,
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

pub struct Model {
    pub spec: Spec,
    pub leaves: BTreeMap<u64, Leaf>,
    /// Root entries shared (`PageTable::share`), by folded index: the table below each stays.
    pub shared: std::collections::BTreeSet<u64>,
    /// Markers: each page's first address and payload.
    pub markers: BTreeMap<u64, u64>,
}

/// What the model expects of a call: success, or one of these errors.
pub type Expect<T> = Result<T, Vec<E>>;

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

    /// The first address in `[s, e)` that a leaf maps or a marker holds.
    fn first_mapped(&self, s: u64, e: u128) -> Option<u64> {
        if self.leaf_at(s).is_some() {
            return Some(s);
        }
        let leaf = self.leaves.range(s..).next().map(|(&v, _)| v);
        let marker = self.markers.range(s..).next().map(|(&v, _)| v);
        [leaf, marker]
            .into_iter()
            .flatten()
            .min()
            .filter(|&v| (v as u128) < e)
    }

    /// The first unmapped page in `[s, e)`.
    fn first_hole(&self, s: u64, e: u128) -> Option<u64> {
        let mut cursor = s as u128;
        while cursor < e {
            match self.leaf_at(cursor as u64) {
                Some((start, leaf)) => cursor = Self::end(start, &leaf),
                // A marker is kept, not a hole.
                None if self.markers.contains_key(&(cursor as u64)) => {
                    cursor += self.spec.page as u128;
                }
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
            let child = leaf.shift - self.spec.index_bits;
            for i in 0..1u64 << self.spec.index_bits {
                let l = Leaf {
                    pa: leaf.pa + (i << child),
                    shift: child,
                    ..leaf
                };
                self.leaves.insert(start + (i << child), l);
            }
        }
    }

    /// log2 of what one root entry maps.
    fn root_shift(&self) -> u32 {
        *self.spec.level_shifts.last().unwrap()
    }

    /// The folded index of the root entry holding `va`.
    fn root_key(&self, va: u64) -> u64 {
        (va & ((1u64 << self.spec.va_bits) - 1)) >> self.root_shift()
    }

    /// `PageTable::share` of the one root entry that starts at `va`.
    fn share(&mut self, va: u64) -> Expect<()> {
        let len = 1u64 << self.root_shift();
        let errs = self.spec.range_errors(va, len, len);
        if !errs.is_empty() {
            return fail(errs);
        }
        let key = self.root_key(va);
        let (first, last) = (self.shared.first().copied(), self.shared.last().copied());
        if let (Some(first), Some(last)) = (first, last) {
            if key + 1 < first || key > last + 1 {
                return fail(vec![E::Shared(VirtAddr::from(va as usize))]);
            }
        }
        if self
            .leaf_at(va)
            .is_some_and(|(_, l)| l.shift == self.root_shift())
        {
            return fail(vec![E::AlreadyMapped(VirtAddr::from(va as usize))]);
        }
        self.shared.insert(key);
        Ok(())
    }

    /// `borrow_shared` of the root entry that starts at `va` by a fresh table.
    fn borrow(&self, va: u64) -> Expect<()> {
        let len = 1u64 << self.root_shift();
        let errs = self.spec.range_errors(va, len, len);
        if !errs.is_empty() {
            return fail(errs);
        }
        if !self.shared.contains(&self.root_key(va)) {
            return fail(vec![E::NotShared(VirtAddr::from(va as usize))]);
        }
        Ok(())
    }

    /// The leaves a region map creates: at each address, the largest leaf that fits and that
    /// both addresses are aligned to (never a root-level leaf in a shared root entry).
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
                    (huge || 1 << s == self.spec.page)
                        && !(s == self.root_shift()
                            && self.shared.contains(&self.root_key(v as u64)))
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
                    soft: 0,
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
        self.map_errors(va, pa, len, self.spec.page, flags)?;
        let parts = self.decompose(va, pa, len, huge);
        self.insert(parts, flags);
        Ok(())
    }

    fn map_frames(&mut self, va: u64, frames: &[u64], flags: F) -> Expect<()> {
        let page = self.spec.page;
        if frames.is_empty() {
            return fail(vec![E::EmptyRange]);
        }
        let len = frames.len() as u64 * page;
        let mut errs = self.spec.range_errors(va, len, page);
        if errs.is_empty() {
            if let Some(e) = frames
                .iter()
                .map(|&f| self.spec.pa_errors(f, page, page))
                .find(|e| !e.is_empty())
            {
                errs.extend(e);
            }
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
        let shift = page.trailing_zeros();
        let parts = (0..frames.len() as u64)
            .map(|k| (va + k * page, frames[k as usize], shift))
            .collect();
        self.insert(parts, flags);
        Ok(())
    }

    fn map(&mut self, va: u64, pa: u64, shift: u32, flags: F) -> Expect<()> {
        let size = PageSize::from_shift(shift).unwrap();
        if !self.spec.leaf_shifts.contains(&shift) {
            return fail(vec![E::SizeNotSupported(size)]);
        }
        let len = 1u64 << shift;
        if shift == self.root_shift()
            && self.spec.range_errors(va, len, len).is_empty()
            && self.shared.contains(&self.root_key(va))
        {
            return fail(vec![E::Shared(VirtAddr::from(va as usize))]);
        }
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
        let has_accessed_bit = self.spec.has_accessed_bit;
        self.edit_state(va, |leaf| {
            if clear.accessed && has_accessed_bit {
                leaf.state.accessed = false;
            }
            if clear.dirty {
                leaf.state.dirty = false;
            }
        })
    }

    /// `edit` on the leaf that holds `va` (any address inside it); its state before.
    fn edit_state(&mut self, va: u64, edit: impl FnOnce(&mut Leaf)) -> Expect<AccessState> {
        if !self.spec.canonical(va) {
            return fail(vec![E::NotCanonical(VirtAddr::from(va as usize))]);
        }
        let Some((start, _)) = self.leaf_at(va) else {
            return fail(vec![E::NotMapped(VirtAddr::from(va as usize))]);
        };
        let leaf = self.leaves.get_mut(&start).unwrap();
        let before = leaf.state;
        edit(leaf);
        Ok(before)
    }

    /// Unmaps `[va, va + len)`; the leaves removed (the pieces inside the range, once the
    /// leaves at the edges are split) and the markers, in address order.
    fn unmap_region(&mut self, va: u64, len: u64) -> Expect<Vec<Cleared>> {
        let errs = self.spec.range_errors(va, len, self.spec.page);
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
        let mut gone: Vec<(u64, Cleared)> = doomed
            .into_iter()
            .map(|v| {
                let m = to_mapping(v, &self.leaves.remove(&v).expect("a leaf"));
                (v, Cleared::Leaf(m))
            })
            .collect();
        let markers: Vec<u64> = self
            .markers
            .range(va..)
            .map(|(&v, _)| v)
            .take_while(|&v| (v as u128) < end)
            .collect();
        for v in markers {
            let payload = self.markers.remove(&v).unwrap();
            let va = VirtAddr::from(v as usize);
            gone.push((v, Cleared::Marker { va, payload }));
        }
        gone.sort_by_key(|(v, _)| *v);
        Ok(gone.into_iter().map(|(_, c)| c).collect())
    }

    /// `set_marker` at `va`.
    fn set_marker(&mut self, va: u64, payload: u64) -> Expect<()> {
        let page = self.spec.page;
        let mut errs = self.spec.range_errors(va, page, page);
        if errs.is_empty() && payload.checked_shr(self.spec.marker_bits).unwrap_or(0) != 0 {
            errs.push(E::PayloadTooWide(payload));
        }
        if !errs.is_empty() {
            return fail(errs);
        }
        if self.leaf_at(va).is_some() {
            return fail(vec![E::AlreadyMapped(VirtAddr::from(va as usize))]);
        }
        self.markers.insert(va, payload);
        Ok(())
    }

    /// `mark_access` at `va`: accessed, and dirty if writable; the state before.
    fn mark_access(&mut self, va: u64, mark: AccessState) -> Expect<AccessState> {
        self.edit_state(va, |leaf| {
            leaf.state.accessed |= mark.accessed;
            leaf.state.dirty |= mark.dirty && leaf.flags.contains(F::WRITE);
        })
    }

    /// `set_soft_bits` at `va`.
    fn set_soft(&mut self, va: u64, value: u64) -> Expect<()> {
        self.leaf_starting_at(va)?;
        if value.checked_shr(self.spec.soft_bits).unwrap_or(0) != 0 {
            return fail(vec![E::SoftBitsTooWide(value)]);
        }
        self.leaves.get_mut(&va).unwrap().soft = value;
        Ok(())
    }

    /// `soft_bits` at `va`.
    fn soft(&self, va: u64) -> Expect<u64> {
        if !self.spec.canonical(va) {
            return fail(vec![E::NotCanonical(VirtAddr::from(va as usize))]);
        }
        self.leaf_at(va)
            .map(|(_, l)| l.soft)
            .ok_or_else(|| vec![E::NotMapped(VirtAddr::from(va as usize))])
    }

    /// `take_marker` at `va`.
    fn take_marker(&mut self, va: u64) -> Expect<u64> {
        let page = self.spec.page;
        let errs = self.spec.range_errors(va, page, page);
        if !errs.is_empty() {
            return fail(errs);
        }
        self.markers
            .remove(&va)
            .ok_or_else(|| vec![E::NotMarker(VirtAddr::from(va as usize))])
    }

    /// `lookup` at `va`.
    fn lookup(&self, va: u64) -> Expect<Lookup> {
        match self.query(va) {
            Ok(t) => Ok(Lookup::Mapped(t)),
            Err(e) if e.iter().any(|e| matches!(e, E::NotCanonical(_))) => Err(e),
            Err(_) => Ok(self
                .markers
                .get(&(va & !(self.spec.page - 1)))
                .map_or(Lookup::Empty, |&p| Lookup::Marker(p))),
        }
    }

    fn protect_region(&mut self, va: u64, len: u64, flags: F) -> Expect<()> {
        let mut errs = self.spec.range_errors(va, len, self.spec.page);
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

    /// `remap_region`: every leaf of the mapped range (markers kept) split at the edges and
    /// pointed at `pa + (v - va)` with `flags`, each keeping its size.
    fn remap_region(&mut self, va: u64, pa: u64, len: u64, flags: F) -> Expect<()> {
        let page = self.spec.page;
        let mut errs = self.spec.range_errors(va, len, page);
        if errs.is_empty() {
            errs.extend(self.spec.pa_errors(pa, len, page));
        }
        if !(self.spec.expressible)(flags) {
            errs.push(E::FlagsNotExpressible(flags));
        }
        if !errs.is_empty() {
            return fail(errs);
        }
        let end = va as u128 + len as u128;
        let delta = pa.wrapping_sub(va);
        // What fails, in whatever order the walk meets it: a hole, or a leaf (as it is, or a
        // piece of it once split) whose new address is not aligned to it.
        let mut errs = vec![];
        if let Some(hole) = self.first_hole(va, end) {
            errs.push(E::NotMapped(VirtAddr::from(hole as usize)));
        }
        let mut after = Model {
            spec: self.spec.clone(),
            leaves: self.leaves.clone(),
            shared: self.shared.clone(),
            markers: self.markers.clone(),
        };
        after.split_at(va as u128);
        after.split_at(end);
        let inside = |m: &Model| -> Vec<(u64, u32)> {
            m.leaves
                .range(va..)
                .take_while(|(v, _)| (**v as u128) < end)
                .map(|(&v, l)| (v, l.shift))
                .collect()
        };
        let pieces = inside(&after);
        let mut misaligned = false;
        for &(v, shift) in &pieces {
            if v.wrapping_add(delta) & ((1u64 << shift) - 1) != 0 {
                misaligned = true;
                errs.push(E::UnalignedPa(PhysAddr::from(
                    v.wrapping_add(delta) as usize
                )));
            }
        }
        if misaligned {
            // The walk names the leaf before it splits it: its part's first address.
            let first = self.leaf_at(va).map_or(va, |(v, _)| v);
            for (&v, _) in self
                .leaves
                .range(first..)
                .take_while(|(v, _)| (**v as u128) < end)
            {
                let a = v.max(va);
                errs.push(E::UnalignedPa(PhysAddr::from(
                    a.wrapping_add(delta) as usize
                )));
            }
        }
        if !errs.is_empty() {
            return fail(errs);
        }
        *self = after;
        for (&v, leaf) in self
            .leaves
            .range_mut(va..)
            .take_while(|(v, _)| (**v as u128) < end)
        {
            Self::protect_leaf(leaf, flags);
            leaf.pa = v.wrapping_add(delta);
        }
        Ok(())
    }

    /// `modify_range` as `Op::ModifyRange` describes it: the entries seen, as (va, leaf or
    /// marker payload).
    fn modify_range(
        &mut self,
        va: u64,
        len: u64,
        flags: F,
        soft: u64,
        clean: bool,
        bump: u64,
    ) -> Expect<Vec<(u64, Result<Mapping, u64>)>> {
        let errs = self.spec.range_errors(va, len, self.spec.page);
        if !errs.is_empty() {
            return fail(errs);
        }
        let end = va as u128 + len as u128;
        self.split_at(va as u128);
        self.split_at(end);
        let mut seen = vec![];
        let (flags_ok, soft_ok) = (
            (self.spec.expressible)(flags),
            soft.checked_shr(self.spec.soft_bits).unwrap_or(0) == 0,
        );
        let has_accessed_bit = self.spec.has_accessed_bit;
        let _ = has_accessed_bit;
        for (&v, leaf) in self
            .leaves
            .range_mut(va..)
            .take_while(|(v, _)| (**v as u128) < end)
        {
            seen.push((v, Ok(to_mapping(v, leaf))));
            if flags_ok {
                Self::protect_leaf(leaf, flags);
            }
            if soft_ok {
                leaf.soft = soft;
            }
            if clean {
                leaf.state.dirty = false;
            }
        }
        let bits = self.spec.marker_bits;
        for (&v, payload) in self
            .markers
            .range_mut(va..)
            .take_while(|(v, _)| (**v as u128) < end)
        {
            seen.push((v, Err(*payload)));
            let new = payload.wrapping_add(bump);
            if new.checked_shr(bits).unwrap_or(0) == 0 {
                *payload = new;
            }
        }
        seen.sort_by_key(|(v, _)| *v);
        Ok(seen)
    }

    /// `protect_region_with`: holes skipped; the leaves changed, as changed, in address order.
    fn protect_region_with(&mut self, va: u64, len: u64, flags: F) -> Expect<Vec<Mapping>> {
        let mut errs = self.spec.range_errors(va, len, self.spec.page);
        if !(self.spec.expressible)(flags) {
            errs.push(E::FlagsNotExpressible(flags));
        }
        if !errs.is_empty() {
            return fail(errs);
        }
        let end = va as u128 + len as u128;
        self.split_at(va as u128);
        self.split_at(end);
        let mut changed = vec![];
        for (&v, leaf) in self
            .leaves
            .range_mut(va..)
            .take_while(|(v, _)| (**v as u128) < end)
        {
            Self::protect_leaf(leaf, flags);
            changed.push(to_mapping(v, leaf));
        }
        Ok(changed)
    }

    fn for_each_in(&self, va: u64, len: u64) -> Expect<Vec<Mapping>> {
        let errs = self.spec.range_errors(va, len, self.spec.page);
        if !errs.is_empty() {
            return fail(errs);
        }
        let end = va as u128 + len as u128;
        let first = self.leaf_at(va).map_or(va, |(start, _)| start);
        Ok(self
            .leaves
            .range(first..)
            .take_while(|(v, _)| (**v as u128) < end)
            .map(|(&v, l)| to_mapping(v, l))
            .collect())
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
            // Markers sit in last-level tables, as granule pages do.
            let mut spans: std::collections::BTreeSet<u64> = self
                .leaves
                .iter()
                .filter(|(_, l)| l.shift <= shifts[depth - 1])
                .map(|(&v, _)| v)
                .chain(self.markers.keys().copied())
                .map(|v| (v & ((1u64 << self.spec.va_bits) - 1)) >> span)
                .collect();
            if depth == shifts.len() - 1 {
                // The tables below shared root entries stay, empty or not.
                spans.extend(self.shared.iter().copied());
            }
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
pub enum Op {
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
        /// Through `unmap_region_with`, every removed leaf reported.
        report: bool,
    },
    Protect {
        va: VaPick,
        flags: u8,
    },
    ProtectRegion {
        va: VaPick,
        len: LenPick,
        flags: u8,
        /// Through `protect_region_with`: holes skipped, every changed leaf reported.
        report: bool,
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
    /// `for_each_mapping_in`.
    ForEachIn {
        va: VaPick,
        len: LenPick,
    },
    /// Not a call: the MMU reads (or writes) through the leaf at `va`, marking it.
    Touch {
        va: VaPick,
        write: bool,
    },
    /// `set_liveness`: `Live` (breaks made, unlinked tables retired until the flush) or
    /// `Offline`. Every token of the run goes through `PageTable::flush`, so a retired table
    /// still out after it is a leak the frame accounting catches.
    Live {
        on: bool,
    },
    /// `into_raw` then `from_raw`: the table comes back as it was, liveness included.
    RoundTrip,
    /// `share` of the root entry holding `va` (its start).
    Share {
        va: VaPick,
    },
    /// A second table over the same memory borrows that root entry (`borrow_shared`), reads it
    /// through, is refused an edit, releases it and is dropped.
    Borrow {
        va: VaPick,
    },
    /// `unmap` through a cursor.
    CursorUnmap {
        va: VaPick,
    },
    /// `protect` through a cursor.
    CursorProtect {
        va: VaPick,
        flags: u8,
    },
    /// `n` granule pages mapped one at a time through one cursor, each queried through it.
    CursorRun {
        va: VaPick,
        n: u8,
        pa: PaPick,
        flags: u8,
    },
    /// `set_marker` at `va` (mostly a page's start) with a payload of about `width` bits.
    SetMarker {
        va: VaPick,
        payload: u64,
        width: u8,
    },
    /// `take_marker` at `va` (a marker's, if `va` picks a leaf and markers exist).
    TakeMarker {
        va: VaPick,
    },
    /// `lookup` at `va` (a marker's, as for `TakeMarker`).
    Lookup {
        va: VaPick,
    },
    /// `map_frames` of `n` pages at `va` onto frames picked from `pa`, scattered by `scatter`
    /// (now and then one of them unaligned or too wide).
    MapFrames {
        va: VaPick,
        n: u8,
        pa: PaPick,
        flags: u8,
        scatter: u8,
    },
    /// `remap_region` of `len` at `va` to `pa` with `flags`.
    RemapRegion {
        va: VaPick,
        len: LenPick,
        pa: PaPick,
        flags: u8,
    },
    /// `modify_range` over `len` at `va`: every leaf given `flags` and software bits `soft`
    /// (each refused where the mode cannot take it), its dirty bit cleared if `clean`; every
    /// marker's payload plus `bump`. The entries seen are compared with the model's.
    ModifyRange {
        va: VaPick,
        len: LenPick,
        flags: u8,
        soft: u16,
        clean: bool,
        bump: u8,
    },
    /// `mark_access` at `va`: what a software-managed MMU's fault handler records.
    MarkAccess {
        va: VaPick,
        accessed: bool,
        dirty: bool,
    },
    /// `set_soft_bits` at `va`.
    SetSoft {
        va: VaPick,
        value: u16,
    },
}

#[derive(Clone, Debug)]
pub struct VaPick {
    /// Some: an existing leaf (index modulo their number), plus `inside` pages into it.
    pub leaf: Option<(u16, u16)>,
    pub base: u8,
    pub offset: u32,
    pub coarse: bool,
    pub hostile: u8,
}

#[derive(Clone, Debug)]
pub struct LenPick {
    pub kind: u8,
    pub n: u32,
}

#[derive(Clone, Debug)]
pub struct PaPick {
    pub base: u8,
    pub mode: u8,
    pub offset: u32,
}

pub fn flags_of(bits: u8) -> F {
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
    // Now and then EPT's stage 2 attribute, which every other mode refuses; now and then an
    // inaccessible leaf (PROT_NONE), which EPT refuses.
    let stage2 = match bits >> 5 {
        5 => F::IGNORE_PAT,
        6 | 2 => F::INACCESSIBLE,
        _ => F::EMPTY,
    };
    F::from_bits(u16::from(bits & 0x1f))
        .unwrap()
        .union(extra)
        .union(stage2)
        .with_mem_type(mem)
}

impl Model {
    /// A marker's address when `p` picks a leaf and there are markers; else as `pick_va`,
    /// mostly aligned to the page.
    fn pick_marker_va(&self, p: &VaPick) -> u64 {
        if let Some((k, inside)) = p.leaf {
            if k % 2 == 0 && !self.markers.is_empty() {
                let i = (k as usize / 2) % self.markers.len();
                return *self.markers.keys().nth(i).unwrap();
            }
            if k % 4 == 1 && !self.leaves.is_empty() {
                // Just past a leaf: markers among mappings, where range calls meet both.
                let (&start, leaf) = self
                    .leaves
                    .iter()
                    .nth((k as usize / 4) % self.leaves.len())
                    .unwrap();
                return start
                    .wrapping_add(1 << leaf.shift)
                    .wrapping_add(u64::from(inside % 4) * self.spec.page);
            }
        }
        let va = self.pick_va(p).0;
        if p.hostile % 32 < 4 {
            va
        } else {
            va & !(self.spec.page - 1)
        }
    }

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

    /// log2 of what an entry `depth_index` levels above the last maps, or of the root's entries
    /// if the mode has fewer levels.
    fn big(&self, depth_index: usize) -> u32 {
        let shifts = &self.spec.level_shifts;
        shifts[depth_index.min(shifts.len() - 1)]
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
                let pages = (1u64 << leaf.shift) / self.spec.page;
                let offset = if inside % 4 == 0 {
                    (inside as u64 % pages) * self.spec.page
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
            2 => 0u64.wrapping_sub(self.spec.page),
            3 => 1 << n,
            // The base itself: aligned for the largest leaves.
            4..=11 => base,
            _ if p.coarse => {
                base.wrapping_add((p.offset as u64 % 1024) << self.spec.level_shifts[1])
            }
            _ => base.wrapping_add((p.offset as u64 % 2048) * self.spec.page),
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
                2 => (to_end - self.spec.page).max(self.spec.page),
                _ => to_end + (p.n as u64 % 8 + 1) * self.spec.page,
            };
        }
        match p.kind % 16 {
            0..=5 => (p.n as u64 % 64 + 1) * self.spec.page,
            6..=9 => (p.n as u64 % 600 + 1) * self.spec.page,
            10..=12 => (p.n as u64 % 4 + 1) << self.big(1),
            13 if pa_aligned => 1 << self.big(2),
            13 => 1 << self.big(1),
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
            4 | 5 => base + (p.offset as u64 % 4096) * self.spec.page,
            6 => base + 0x100,
            _ => (1u64 << self.spec.pa_bits) - self.spec.page,
        }
    }
}

/// Plays `ops` on a new table of mode `A` and on the model; see the module's documentation.
///
/// # Errors
///
/// What went wrong, at which step.
pub fn run<A: Modeled>(ops: &[Op]) -> Result<(), String> {
    let spec = A::spec();
    let mut model = Model {
        spec,
        leaves: BTreeMap::new(),
        shared: Default::default(),
        markers: BTreeMap::new(),
    };
    let mut pt = PageTable::<A, _>::new(Shared::new(Frames::new(6000, 0x4000_0000))).unwrap();
    let sizes = [12u32, 21, 30, 39, 48, 14, 16, 25, 29, 36, 42];
    for (step, op) in ops.iter().enumerate() {
        let before = pt.handler().0.borrow().digest();
        let frames_before = pt.handler().0.borrow().live_frames();
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
                    at::<A>(va),
                    PhysAddr::from(pa as usize),
                    len as usize,
                    flags,
                    huge_arg,
                );
                let want = model.map_region(va, pa, len, flags, *huge);
                (compare(step, op, got.map(|f| pt.flush(f)), want)?, Some(va))
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
                    at::<A>(va),
                    PhysAddr::from(pa as usize),
                    PageSize::from_shift(shift).unwrap(),
                    flags,
                );
                let want = model.map(va, pa, shift, flags);
                (compare(step, op, got.map(|f| pt.flush(f)), want)?, Some(va))
            }
            Op::Unmap { va } => {
                let va = model.pick_va(va).0;
                let got = pt.unmap(at::<A>(va)).map(|(m, f)| {
                    pt.flush(f);
                    m
                });
                let want = model.unmap(va);
                (compare(step, op, got, want)?, Some(va))
            }
            Op::UnmapRegion { va, len, report } => {
                let (va, run_end) = model.pick_va(va);
                let len = model.pick_len(len, true, va, run_end);
                let want = model.unmap_region(va, len);
                let va = at::<A>(va);
                if *report {
                    let mut gone = vec![];
                    let got = pt.unmap_region_with(va, len as usize, |m| gone.push(m));
                    let got = got.map(|f| pt.flush(f)).map(|()| gone);
                    (compare(step, op, got, want)?, Some(va.into() as u64))
                } else {
                    let got = pt.unmap_region(va, len as usize).map(|f| pt.flush(f));
                    (
                        compare(step, op, got, want.map(|_| ()))?,
                        Some(va.into() as u64),
                    )
                }
            }
            Op::Protect { va, flags } => {
                let va = model.pick_va(va).0;
                let flags = flags_of(*flags);
                let got = pt.protect(at::<A>(va), flags);
                let want = model.protect(va, flags);
                (compare(step, op, got.map(|f| pt.flush(f)), want)?, Some(va))
            }
            Op::ProtectRegion {
                va,
                len,
                flags,
                report,
            } => {
                let (va, run_end) = model.pick_va(va);
                let len = model.pick_len(len, true, va, run_end);
                let flags = flags_of(*flags);
                let at = at::<A>(va);
                if *report {
                    let mut changed = vec![];
                    let got = pt.protect_region_with(at, len as usize, flags, |m| changed.push(m));
                    let got = got.map(|f| pt.flush(f)).map(|()| changed);
                    let want = model.protect_region_with(va, len, flags);
                    (compare(step, op, got, want)?, Some(va))
                } else {
                    let got = pt.protect_region(at, len as usize, flags);
                    let want = model.protect_region(va, len, flags);
                    (compare(step, op, got.map(|f| pt.flush(f)), want)?, Some(va))
                }
            }
            Op::Remap { va, pa } => {
                let picked = model.pick_va(va);
                let va = picked.0;
                let pa = model.pick_pa(pa, picked);
                let got = pt.remap(at::<A>(va), PhysAddr::from(pa as usize));
                let want = model.remap(va, pa);
                (compare(step, op, got.map(|f| pt.flush(f)), want)?, Some(va))
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
                let got = pt.clear_access_state(at::<A>(va), clear).map(|(s, f)| {
                    pt.flush(f);
                    s
                });
                let want = model.clear_state(va, clear);
                (compare(step, op, got, want)?, Some(va))
            }
            Op::SetMarker { va, payload, width } => {
                let va = model.pick_marker_va(va);
                let payload = payload
                    .checked_shr(64 - u32::from(*width % 65))
                    .unwrap_or(0);
                let got = pt.set_marker(at::<A>(va), payload);
                let want = model.set_marker(va, payload);
                (compare(step, op, got, want)?, Some(va))
            }
            Op::TakeMarker { va } => {
                let va = model.pick_marker_va(va);
                let got = pt.take_marker(at::<A>(va)).map(|(p, f)| {
                    pt.flush(f);
                    p
                });
                let want = model.take_marker(va);
                (compare(step, op, got, want)?, Some(va))
            }
            Op::MapFrames {
                va,
                n,
                pa,
                flags,
                scatter,
            } => {
                let picked = model.pick_va(va);
                let va = picked.0;
                let page = model.spec.page;
                let base = model.pick_pa(pa, picked) & !(page - 1);
                let n = u64::from(*n % 40);
                // A permutation of `n` pages from `base` (stride coprime to a power of two
                // spread), with now and then one frame unaligned or beyond the width.
                let stride = u64::from(*scatter | 1);
                let mut frames: Vec<u64> = (0..n)
                    .map(|k| base.wrapping_add((k * stride % n.max(1)) * 7 * page))
                    .collect();
                match scatter % 16 {
                    1 if n > 2 => frames[n as usize / 2] |= 8,
                    2 if n > 1 => frames[n as usize - 1] = 1 << model.spec.pa_bits,
                    _ => {}
                }
                let flags = flags_of(*flags);
                let addrs: Vec<PhysAddr> =
                    frames.iter().map(|&f| PhysAddr::from(f as usize)).collect();
                let got = pt.map_frames(at::<A>(va), &addrs, flags);
                let want = model.map_frames(va, &frames, flags);
                (compare(step, op, got.map(|f| pt.flush(f)), want)?, Some(va))
            }
            Op::RemapRegion { va, len, pa, flags } => {
                let picked = model.pick_va(va);
                let (va, run_end) = picked;
                let len = model.pick_len(len, true, va, run_end);
                let pa = model.pick_pa(pa, picked);
                let flags = flags_of(*flags);
                let got = pt.remap_region(
                    at::<A>(va),
                    PhysAddr::from(pa as usize),
                    len as usize,
                    flags,
                );
                let want = model.remap_region(va, pa, len, flags);
                (compare(step, op, got.map(|f| pt.flush(f)), want)?, Some(va))
            }
            Op::ModifyRange {
                va,
                len,
                flags,
                soft,
                clean,
                bump,
            } => {
                let (va, run_end) = model.pick_va(va);
                let len = model.pick_len(len, true, va, run_end);
                let flags = flags_of(*flags);
                let soft = u64::from(*soft) >> (u32::from(*soft) % 8);
                let bump = u64::from(*bump);
                let mut seen = vec![];
                let got = pt.modify_range(at::<A>(va), len as usize, |e| {
                    let at = e.va().into() as u64;
                    match (e.leaf(), e.marker()) {
                        (Some(l), _) => {
                            seen.push((
                                at,
                                Ok(Mapping {
                                    va: VirtAddr::from(at as usize),
                                    pa: l.pa,
                                    size: e.size(),
                                    flags: l.flags,
                                    state: l.state,
                                }),
                            ));
                            let _ = e.set_flags(flags);
                            let _ = e.set_soft_bits(soft);
                            if *clean {
                                e.clear_state(AccessState {
                                    accessed: false,
                                    dirty: true,
                                });
                            }
                        }
                        (None, Some(payload)) => {
                            seen.push((at, Err(payload)));
                            let _ = e.set_marker(payload.wrapping_add(bump));
                        }
                        (None, None) => seen.push((at, Err(u64::MAX))),
                    }
                });
                let got = got.map(|f| pt.flush(f)).map(|()| seen);
                let want = model.modify_range(va, len, flags, soft, *clean, bump);
                (compare(step, op, got, want)?, Some(va))
            }
            Op::MarkAccess {
                va,
                accessed,
                dirty,
            } => {
                let va = model.pick_va(va).0;
                let mark = AccessState {
                    accessed: *accessed,
                    dirty: *dirty,
                };
                let got = pt.mark_access(at::<A>(va), mark).map(|(s, f)| {
                    pt.flush(f);
                    s
                });
                let want = model.mark_access(va, mark);
                (compare(step, op, got, want)?, Some(va))
            }
            Op::SetSoft { va, value } => {
                let va = model.pick_va(va).0;
                // Mostly within the mode's bits; now and then one too wide.
                let value = u64::from(*value) >> (u32::from(*value) % 8);
                let got = pt.set_soft_bits(at::<A>(va), value);
                let want = model.set_soft(va, value);
                (compare(step, op, got, want)?, Some(va))
            }
            Op::Lookup { va } => {
                let va = model.pick_marker_va(va);
                let got = pt.lookup(at::<A>(va));
                let want = model.lookup(va);
                (compare(step, op, got, want)?, Some(va))
            }
            Op::Query { va } => {
                let va = model.pick_va(va).0;
                let got = pt.query(at::<A>(va));
                let want = model.query(va);
                (compare(step, op, got, want)?, Some(va))
            }
            Op::Live { on } => {
                let liveness = if *on {
                    Liveness::Live
                } else {
                    Liveness::Offline
                };
                pt.set_liveness(liveness);
                (Ok(()), None)
            }
            Op::RoundTrip => {
                let liveness = pt.liveness();
                let (root, frames, state) = pt.into_raw();
                // SAFETY: the tree and its state came from `into_raw` a moment ago.
                pt = unsafe { PageTable::from_raw(root, frames, state) }
                    .map_err(|e| format!("step {step}: from_raw refused its own parts: {e:?}"))?;
                ensure_eq!(
                    pt.liveness(),
                    liveness,
                    "step {}: the round trip lost the liveness",
                    step
                );
                (Ok(()), None)
            }
            Op::Share { va } => {
                let va = model.pick_va(va).0 & !((1u64 << model.root_shift()) - 1);
                let len = 1usize << model.root_shift();
                let got = pt.share(at::<A>(va), len);
                let want = model.share(va);
                (compare(step, op, got.map(|f| pt.flush(f)), want)?, Some(va))
            }
            Op::Borrow { va } => {
                let root_size = 1u64 << model.root_shift();
                let va = model.pick_va(va).0 & !(root_size - 1);
                let mut other = PageTable::<A, _>::new(pt.handler().clone())
                    .map_err(|e| format!("step {step}: no root for the borrower: {e:?}"))?;
                // SAFETY: `other` is dropped in this step, before `pt`; both reach one memory.
                let got = unsafe { other.borrow_shared(&pt, at::<A>(va), root_size as usize) };
                let want = model.borrow(va);
                let what = compare(step, op, got.map(|f| other.flush(f)), want)?;
                if what.is_ok() {
                    // The borrower reads exactly the owner's leaves there, and may not edit them.
                    let mut seen = vec![];
                    other
                        .for_each_mapping_in(at::<A>(va), root_size as usize, |m| seen.push(m))
                        .map_err(|e| format!("step {step}: borrower walk: {e:?}"))?;
                    ensure_eq!(
                        seen.clone().plain(),
                        model.for_each_in(va, root_size).unwrap_or_default(),
                        "step {}: the borrower sees other leaves",
                        step
                    );
                    for m in seen.iter().take(4) {
                        let _ =
                            compare(step, op, other.query(m.va), model.query(m.va.into() as u64))?;
                        ensure_eq!(
                            other.unmap(m.va).map(|(_, f)| f.ignore()).err(),
                            Some(E::Borrowed(VirtAddr::from(m.va.into()))),
                            "step {}: the borrower edited a borrowed leaf",
                            step
                        );
                    }
                    other.release_borrowed().ignore();
                }
                drop(other);
                (what, Some(va))
            }
            Op::CursorUnmap { va } => {
                let va = model.pick_va(va).0;
                let got = pt.cursor().unmap(at::<A>(va)).map(|(m, f)| {
                    pt.flush(f);
                    m
                });
                let want = model.unmap(va);
                (compare(step, op, got, want)?, Some(va))
            }
            Op::CursorProtect { va, flags } => {
                let va = model.pick_va(va).0;
                let flags = flags_of(*flags);
                let got = pt.cursor().protect(at::<A>(va), flags);
                let want = model.protect(va, flags);
                (compare(step, op, got.map(|f| pt.flush(f)), want)?, Some(va))
            }
            Op::Touch { va, write } => {
                let va = model.pick_va(va).0;
                let accessible = |l: &Leaf| !l.flags.contains(F::INACCESSIBLE);
                if let Some((start, leaf)) = model.leaf_at(va).filter(|(_, l)| accessible(l)) {
                    let raw = raw::walk::<A>(
                        &pt.handler().0.borrow(),
                        pt.root_paddr().as_usize() as u64,
                    )?;
                    let k = raw
                        .leaves
                        .iter()
                        .position(|l| l.0 == start)
                        .ok_or_else(|| {
                            format!("step {step}: the raw walk has no leaf at {start:#x}")
                        })?;
                    let writes = *write && leaf.flags.contains(F::WRITE);
                    let mark = if writes { A::mark_write } else { A::mark_read };
                    let at = raw.entries[k];
                    {
                        let mem = pt.handler().0.borrow();
                        mem.write_phys(at, mark(mem.read_phys(at)));
                    }
                    let state = &mut model.leaves.get_mut(&start).unwrap().state;
                    state.accessed = true;
                    state.dirty |= writes;
                }
                (Ok(()), Some(va))
            }
            Op::ForEachIn { va, len } => {
                let (va, run_end) = model.pick_va(va);
                let len = model.pick_len(len, true, va, run_end);
                let mut seen = vec![];
                let got = pt
                    .for_each_mapping_in(at::<A>(va), len as usize, |m| {
                        seen.push(m);
                    })
                    .map(|()| seen);
                let want = model.for_each_in(va, len);
                (compare(step, op, got, want)?, Some(va))
            }
            Op::CursorRun { va, n, pa, flags } => {
                let picked = model.pick_va(va);
                let first = picked.0;
                let first_pa = model.pick_pa(pa, picked);
                let flags = flags_of(*flags);
                let mut c = pt.cursor();
                for k in 0..u64::from(*n % 40) + 1 {
                    let (v, p) = (
                        first.wrapping_add(k * model.spec.page),
                        first_pa.wrapping_add(k * model.spec.page),
                    );
                    let unchanged = c.table().handler().0.borrow().digest();
                    let got = c.map(
                        at::<A>(v),
                        PhysAddr::from(p as usize),
                        PageSize::from_shift(A::PAGE_SHIFT).unwrap(),
                        flags,
                    );
                    let want = model.map(v, p, A::PAGE_SHIFT, flags);
                    if compare(step, op, got.map(|f| f.ignore()), want)?.is_err() {
                        ensure!(
                            c.table().handler().0.borrow().digest() == unchanged,
                            "step {step}: cursor map {k} of {op:?} failed but changed table memory"
                        );
                    }
                    for q in [
                        v,
                        v.wrapping_add(model.spec.page),
                        v.wrapping_sub(model.spec.page),
                    ] {
                        let _ = compare(step, op, c.query(at::<A>(q)), model.query(q))?;
                    }
                }
                (Ok(()), Some(first))
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
            ensure!(
                pt.handler().0.borrow().digest() == before,
                "step {step}: {op:?} failed but changed table memory"
            );
            ensure_eq!(
                pt.handler().0.borrow().live_frames(),
                frames_before,
                "step {}: a failed call changed the frame count",
                step
            );
        }
        // Table memory, read by the manuals alone, holds the model's leaves, and the tables it
        // reaches are exactly the frames out: none twice, none leaked.
        let raw = raw::walk::<A>(&pt.handler().0.borrow(), pt.root_paddr().as_usize() as u64)
            .map_err(|e| format!("step {step}: raw walk after {op:?}: {e}"))?;
        let leaves: Vec<(u64, u64, u32)> = model
            .leaves
            .iter()
            .map(|(&v, l)| (v, l.pa, l.shift))
            .collect();
        ensure_eq!(
            raw.leaves,
            leaves,
            "step {}: raw walk differs from the model after {:?}",
            step,
            op
        );
        let inaccessible: std::collections::BTreeSet<u64> = model
            .leaves
            .iter()
            .filter(|(_, l)| l.flags.contains(F::INACCESSIBLE))
            .map(|(&v, _)| v)
            .collect();
        ensure_eq!(
            raw.inaccessible,
            inaccessible,
            "step {}: inaccessible leaves in memory differ from the model after {:?}",
            step,
            op
        );
        let soft: Vec<u64> = model.leaves.values().map(|l| l.soft).collect();
        ensure_eq!(
            raw.soft,
            soft,
            "step {}: software bits in memory differ from the model after {:?}",
            step,
            op
        );
        let markers: Vec<(u64, u64)> = model.markers.iter().map(|(&v, &p)| (v, p)).collect();
        ensure_eq!(
            raw.markers,
            markers,
            "step {}: markers in memory differ from the model after {:?}",
            step,
            op
        );
        ensure_eq!(
            raw.tables,
            pt.handler().0.borrow().live_addrs(),
            "step {}: tables reached are not the frames out after {:?}",
            step,
            op
        );
        // The whole table agrees with the model, and holds exactly the frames it needs.
        let mut walked = vec![];
        pt.for_each_mapping(|m| walked.push(m.plain()));
        ensure_eq!(
            &walked,
            &model.mappings(),
            "step {}: walk differs from the model after {:?}",
            step,
            op
        );
        ensure_eq!(
            pt.handler().0.borrow().live_blocks(),
            model.tables_needed(),
            "step {}: table blocks out after {:?}",
            step,
            op
        );
        // The root's block (concatenated tables on some stage 2 modes) and one granule each.
        let root_bytes = pagetable::arch::table_bytes::<A>(root_depth::<A>());
        let bytes = root_bytes + (model.tables_needed() - 1) * model.spec.page as usize;
        ensure_eq!(
            pt.handler().0.borrow().live_frames() * super::FRAME,
            bytes,
            "step {}: bytes of table frames out after {:?}",
            step,
            op
        );
        ensure_eq!(
            pt.table_frames(),
            model.tables_needed(),
            "step {}: table_frames after {:?}",
            step,
            op
        );
        if let Some(va) = checked_va {
            for probe in [
                va,
                va.wrapping_add(model.spec.page),
                va.wrapping_add(5 << 20),
            ] {
                let got = pt.query(at::<A>(probe));
                let _ = compare(step, op, got, model.query(probe))?;
                // `translate` is `query`'s address and size.
                let got = pt
                    .translate(at::<A>(probe))
                    .map(|(pa, size)| (pa.as_usize(), size));
                match (got, model.query(probe)) {
                    (Ok(got), Ok(t)) => {
                        ensure_eq!(
                            got,
                            (t.pa.as_usize(), t.size),
                            "step {step}: translate after {op:?}"
                        )
                    }
                    (Err(e), Err(allowed)) => ensure!(
                        allowed.contains(&e),
                        "step {step}: translate after {op:?}: {e:?}, not one of {allowed:?}"
                    ),
                    (got, want) => {
                        return Err(format!(
                            "step {step}: translate after {op:?}: {got:?}, want {want:?}"
                        ));
                    }
                }
                let got = pt.lookup(at::<A>(probe));
                let _ = compare(step, op, got, model.lookup(probe))?;
                let got = pt.soft_bits(at::<A>(probe));
                let _ = compare(step, op, got, model.soft(probe))?;
            }
        }
    }
    // Dropping the table gives back every frame it holds (the handler panics on a double free).
    let ledger = pt.handler().0.borrow().ledger();
    drop(pt);
    ensure_eq!(ledger.get(), 0, "frames leaked by drop");
    Ok(())
}

/// Checks a call's result against the model's expectation; returns the call's outcome.
fn compare<G: Plain<Out = T>, T: PartialEq + std::fmt::Debug>(
    step: usize,
    op: &Op,
    got: Result<G, E>,
    want: Expect<T>,
) -> Result<Result<(), E>, String> {
    match (got.map(Plain::plain), want) {
        (Ok(g), Ok(w)) => {
            ensure_eq!(g, w, "step {}: {:?}", step, op);
            Ok(Ok(()))
        }
        (Err(g), Err(w)) => {
            ensure!(
                w.contains(&g),
                "step {step}: {op:?} returned {g:?}, the model expects one of {w:?}"
            );
            Ok(Err(g))
        }
        (Ok(g), Err(w)) => Err(format!(
            "step {step}: {op:?} succeeded with {g:?}, the model expects {w:?}"
        )),
        (Err(g), Ok(w)) => Err(format!(
            "step {step}: {op:?} failed with {g:?}, the model expects {w:?}"
        )),
    }
}

fn needs_read(f: F) -> bool {
    f.contains(F::READ) && !f.contains(F::IGNORE_PAT)
}

fn riscv_expressible(f: F) -> bool {
    // Something allowed, and no write without read.
    !f.no_access() && (f.contains(F::READ) || !f.contains(F::WRITE)) && !f.contains(F::IGNORE_PAT)
}

fn loongarch_expressible(f: F) -> bool {
    !f.no_access() && !f.contains(F::IGNORE_PAT)
}

/// Stage 2 has no user or global mappings.
fn no_stage1_bits(f: F) -> bool {
    !f.contains(F::USER) && !f.contains(F::GLOBAL)
}

fn g_stage_expressible(f: F) -> bool {
    riscv_expressible(f) && no_stage1_bits(f)
}

/// Any of read, write, execute: stage 2 has write-only and execute-only.
fn arm_s2_expressible(f: F) -> bool {
    !f.no_access() && no_stage1_bits(f) && !f.contains(F::IGNORE_PAT)
}

/// Write without read is an EPT misconfiguration; execute-only is allowed.
fn ept_expressible(f: F) -> bool {
    !f.no_access()
        && (f.contains(F::READ) || !f.contains(F::WRITE))
        && no_stage1_bits(f)
        && !f.contains(F::INACCESSIBLE)
}

/// A paging mode the model knows: its spec, its manual and how its MMU marks leaves.
pub trait Modeled: Arch + Hardware {
    fn spec() -> Spec;
}

macro_rules! modeled {
    ($($arch:ty => $expressible:expr, $accessed:expr, $marker_bits:literal, $soft_bits:literal;)*) => {
        $(impl Modeled for $arch {
            fn spec() -> Spec {
                Spec::of::<$arch>($expressible, $accessed, $marker_bits, $soft_bits)
            }
        })*
    };
}

modeled! {
    X86_64 => needs_read, true, 61, 9;
    X86_64La57 => needs_read, true, 61, 9;
    AArch64<Va48, Lower> => needs_read, true, 61, 2;
    AArch64<Va48, Upper> => needs_read, true, 61, 2;
    AArch64<Va39, Lower> => needs_read, true, 61, 2;
    AArch64<Va39, Upper> => needs_read, true, 61, 2;
    AArch64<Va48, Lower, Granule16K> => needs_read, true, 61, 2;
    AArch64<Va47, Upper, Granule16K> => needs_read, true, 61, 2;
    AArch64<Va36, Lower, Granule16K> => needs_read, true, 61, 2;
    AArch64<Va48, Lower, Granule64K> => needs_read, true, 61, 2;
    AArch64<Va48, Upper, Granule64K> => needs_read, true, 61, 2;
    AArch64<Va42, Lower, Granule64K> => needs_read, true, 61, 2;
    AArch64S2<Ipa40> => arm_s2_expressible, true, 61, 2;
    AArch64S2<Ipa48> => arm_s2_expressible, true, 61, 2;
    Sv39x4 => g_stage_expressible, true, 61, 1;
    Sv48x4 => g_stage_expressible, true, 61, 1;
    Ept => ept_expressible, true, 58, 6;
    Sv39 => riscv_expressible, true, 61, 1;
    Sv48 => riscv_expressible, true, 61, 1;
    Sv57 => riscv_expressible, true, 61, 1;
    LoongArch64 => loongarch_expressible, false, 60, 1;
}

// ---- Calls from raw bytes, for the fuzz targets and for replaying their corpora.

/// Bytes read from the front; `None` once they run out.
pub struct Input<'a>(pub &'a [u8]);

impl Input<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, tail) = self.0.split_first_chunk::<N>()?;
        self.0 = tail;
        Some(*head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|[b]| b)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }
}

impl VaPick {
    fn decode(i: &mut Input<'_>) -> Option<Self> {
        let tag = i.u8()?;
        let leaf = if tag & 1 == 1 {
            Some((i.u16()?, i.u16()?))
        } else {
            None
        };
        Some(VaPick {
            leaf,
            base: i.u8()?,
            offset: i.u32()?,
            coarse: tag & 2 != 0,
            hostile: tag >> 2,
        })
    }
}

impl LenPick {
    fn decode(i: &mut Input<'_>) -> Option<Self> {
        Some(LenPick {
            kind: i.u8()?,
            n: i.u32()?,
        })
    }
}

impl PaPick {
    fn decode(i: &mut Input<'_>) -> Option<Self> {
        Some(PaPick {
            base: i.u8()?,
            mode: i.u8()?,
            offset: i.u32()?,
        })
    }
}

impl Op {
    /// One call from the front of `i`, weighted as the property tests weigh them.
    pub fn decode(i: &mut Input<'_>) -> Option<Self> {
        let tag = i.u8()? % 32;
        Some(match tag {
            0..=5 => Op::MapRegion {
                va: VaPick::decode(i)?,
                len: LenPick::decode(i)?,
                pa: PaPick::decode(i)?,
                flags: i.u8()?,
                huge: i.u8()? & 1 == 1,
            },
            6 | 7 => Op::Map {
                va: VaPick::decode(i)?,
                size: i.u8()?,
                pa: PaPick::decode(i)?,
                flags: i.u8()?,
            },
            8 | 9 => Op::Unmap {
                va: VaPick::decode(i)?,
            },
            10 | 11 => Op::UnmapRegion {
                va: VaPick::decode(i)?,
                len: LenPick::decode(i)?,
                report: tag == 11,
            },
            12 => Op::Protect {
                va: VaPick::decode(i)?,
                flags: i.u8()?,
            },
            13..=15 => Op::ProtectRegion {
                va: VaPick::decode(i)?,
                len: LenPick::decode(i)?,
                flags: i.u8()?,
                report: tag == 15,
            },
            16 => Op::Remap {
                va: VaPick::decode(i)?,
                pa: PaPick::decode(i)?,
            },
            17 => {
                let (va, bits) = (VaPick::decode(i)?, i.u8()?);
                Op::ClearState {
                    va,
                    accessed: bits & 1 == 1,
                    dirty: bits & 2 == 2,
                }
            }
            18 => Op::Query {
                va: VaPick::decode(i)?,
            },
            19 => Op::ForEachIn {
                va: VaPick::decode(i)?,
                len: LenPick::decode(i)?,
            },
            20 => {
                let (va, bits) = (VaPick::decode(i)?, i.u8()?);
                match bits % 8 {
                    0 => Op::Live { on: bits & 8 != 0 },
                    1 if bits & 8 != 0 => Op::Share { va },
                    6 if bits & 8 != 0 => Op::Borrow { va },
                    1 => Op::RoundTrip,
                    2 | 3 => Op::CursorUnmap { va },
                    4 | 5 => Op::CursorProtect { va, flags: bits },
                    _ => Op::Touch {
                        va,
                        write: bits & 8 != 0,
                    },
                }
            }
            24 => Op::SetMarker {
                va: VaPick::decode(i)?,
                payload: u64::from(i.u32()?) << 32 | u64::from(i.u32()?),
                width: i.u8()?,
            },
            25 => Op::TakeMarker {
                va: VaPick::decode(i)?,
            },
            26 => Op::Lookup {
                va: VaPick::decode(i)?,
            },
            27 => Op::SetSoft {
                va: VaPick::decode(i)?,
                value: i.u16()?,
            },
            31 => {
                let (va, bits) = (VaPick::decode(i)?, i.u8()?);
                Op::MarkAccess {
                    va,
                    accessed: bits & 1 == 1,
                    dirty: bits & 2 == 2,
                }
            }
            30 => Op::ModifyRange {
                va: VaPick::decode(i)?,
                len: LenPick::decode(i)?,
                flags: i.u8()?,
                soft: i.u16()?,
                clean: i.u8()? & 1 == 1,
                bump: i.u8()?,
            },
            29 => Op::RemapRegion {
                va: VaPick::decode(i)?,
                len: LenPick::decode(i)?,
                pa: PaPick::decode(i)?,
                flags: i.u8()?,
            },
            28 => Op::MapFrames {
                va: VaPick::decode(i)?,
                n: i.u8()?,
                pa: PaPick::decode(i)?,
                flags: i.u8()?,
                scatter: i.u8()?,
            },
            _ => Op::CursorRun {
                va: VaPick::decode(i)?,
                n: i.u8()?,
                pa: PaPick::decode(i)?,
                flags: i.u8()?,
            },
        })
    }
}

/// A mode's run, for dispatch by the first input byte.
pub type Mode = fn(&[Op]) -> Result<(), String>;

/// Up to 64 calls from `data`.
pub fn decode_ops(data: &[u8]) -> Vec<Op> {
    let mut input = Input(data);
    std::iter::from_fn(|| Op::decode(&mut input))
        .take(64)
        .collect()
}

/// Plays `data` on the mode its first byte picks among `modes`.
///
/// # Errors
///
/// As for [`run`].
pub fn run_bytes(data: &[u8], modes: &[Mode]) -> Result<(), String> {
    let Some((&which, rest)) = data.split_first() else {
        return Ok(());
    };
    modes[which as usize % modes.len()](&decode_ops(rest))
}

/// The modes of each fuzz target's family.
pub const X86_MODES: &[Mode] = &[run::<X86_64>, run::<X86_64La57>];
pub const AARCH64_MODES: &[Mode] = &[
    run::<AArch64<Va48, Lower>>,
    run::<AArch64<Va48, Upper>>,
    run::<AArch64<Va39, Lower>>,
    run::<AArch64<Va39, Upper>>,
    run::<AArch64<Va48, Lower, Granule16K>>,
    run::<AArch64<Va47, Upper, Granule16K>>,
    run::<AArch64<Va36, Lower, Granule16K>>,
    run::<AArch64<Va48, Lower, Granule64K>>,
    run::<AArch64<Va48, Upper, Granule64K>>,
    run::<AArch64<Va42, Lower, Granule64K>>,
];
/// Stage 2 modes: AArch64, the RISC-V G-stage, x86 EPT.
pub const STAGE2_MODES: &[Mode] = &[
    run::<AArch64S2<Ipa40>>,
    run::<AArch64S2<Ipa48>>,
    run::<Sv39x4>,
    run::<Sv48x4>,
    run::<Ept>,
];
pub const RISCV_MODES: &[Mode] = &[run::<Sv39>, run::<Sv48>, run::<Sv57>];
pub const LOONGARCH_MODES: &[Mode] = &[run::<LoongArch64>];
