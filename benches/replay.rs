//! The trace replay: the memory system calls real programs made (`benches/traces/`, recorded
//! with strace), replayed as a kernel with eager population would, through each crate.
//!
//! Each traced thread id is one address space (strace `-f` names threads by their own ids and
//! the trace has no `clone` to group them, so a thread's `munmap` of memory its sibling mapped
//! finds nothing here, and nothing is done for it). What is mapped is worked out once, outside
//! the measurement, into primitive calls on runs that are wholly mapped or wholly unmapped, so
//! every crate gets the same calls and no crate meets a hole:
//!
//! * `mmap` (a successful one): whatever the new region overlaps goes first (as `MAP_FIXED`
//!   does); then the region is mapped, in 4 KiB pages, unless it is `PROT_NONE`;
//! * `munmap`: the mapped pages of the range are unmapped;
//! * `mprotect`: inside the regions the space holds, pages going to `PROT_NONE` are unmapped,
//!   pages coming from it are mapped, the others get the new flags;
//! * `brk`: growth maps the new heap pages, shrinking unmaps them (`brk(NULL)` only says where
//!   the break is);
//! * `mremap`: the old range goes and the new one is mapped with the old protection.
//!
//! A page maps `pa = va` (the frames are never touched). `PROT_READ`, `PROT_WRITE` and
//! `PROT_EXEC` become read, write and execute for user mode; write or execute imply read, as
//! on x86. Leaves are 4 KiB only: a huge-leaf variant would need every peer to split a huge
//! leaf under a partial `munmap` or `mprotect`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};

/// Protection bits: read, write, execute.
pub const R: u8 = 1;
pub const W: u8 = 2;
pub const X: u8 = 4;

/// One primitive call on a page-aligned run `[va, va + len)`.
#[derive(Clone, Copy, Debug)]
pub enum Prim {
    /// A page fault on the unmapped page at `va`: map that one page with these protection
    /// bits (the demand-paging replay; a kernel's fault path maps one page at a time).
    Fault(usize, u8),
    /// Map the unmapped run with these protection bits.
    Map(usize, usize, u8),
    /// Give the mapped run these protection bits.
    Protect(usize, usize, u8),
    /// Unmap the mapped run.
    Unmap(usize, usize),
}

/// A trace, worked out: each address space's primitive calls, in order.
pub struct Trace {
    pub name: &'static str,
    pub spaces: Vec<Vec<Prim>>,
    /// The memory system calls in the trace.
    pub calls: usize,
    /// Primitive calls, and the pages they touch.
    pub prims: usize,
    pub pages: usize,
    /// The pages the `Map` runs map.
    pub mapped: usize,
}

const PAGE: usize = 4096;

fn up(x: usize) -> usize {
    x.div_ceil(PAGE) * PAGE
}

/// One address space: its regions (first page -> end, protection; 0 for `PROT_NONE`) and the
/// primitive calls so far.
#[derive(Default)]
struct Space {
    regions: BTreeMap<usize, (usize, u8)>,
    brk: Option<usize>,
    out: Vec<Prim>,
}

impl Space {
    /// Cuts the regions at `a` and at `b`, so that each region lies wholly inside or outside.
    fn cut(&mut self, a: usize, b: usize) {
        for at in [a, b] {
            let hit = self
                .regions
                .range(..at)
                .next_back()
                .map(|(&s, &(e, p))| (s, e, p));
            if let Some((s, e, p)) = hit {
                if e > at {
                    self.regions.insert(s, (at, p));
                    self.regions.insert(at, (e, p));
                }
            }
        }
    }

    /// The regions inside `[a, b)`, after a cut.
    fn inside(&self, a: usize, b: usize) -> Vec<(usize, usize, u8)> {
        self.regions
            .range(a..b)
            .map(|(&s, &(e, p))| (s, e, p))
            .collect()
    }

    fn unmap(&mut self, a: usize, b: usize) {
        self.cut(a, b);
        for (s, e, p) in self.inside(a, b) {
            if p != 0 {
                self.out.push(Prim::Unmap(s, e - s));
            }
            self.regions.remove(&s);
        }
    }

    fn map(&mut self, a: usize, b: usize, p: u8) {
        if a >= b {
            return;
        }
        self.unmap(a, b);
        self.regions.insert(a, (b, p));
        if p != 0 {
            self.out.push(Prim::Map(a, b - a, p));
        }
    }

    fn protect(&mut self, a: usize, b: usize, p: u8) {
        self.cut(a, b);
        for (s, e, q) in self.inside(a, b) {
            match (q, p) {
                _ if q == p => {}
                (0, _) => self.out.push(Prim::Map(s, e - s, p)),
                (_, 0) => self.out.push(Prim::Unmap(s, e - s)),
                _ => self.out.push(Prim::Protect(s, e - s, p)),
            }
            self.regions.insert(s, (e, p));
        }
    }

    fn prot_at(&self, a: usize) -> u8 {
        self.regions
            .range(..=a)
            .next_back()
            .filter(|(_, (e, _))| *e > a)
            .map_or(R | W, |(_, &(_, p))| p)
    }
}

fn prot(s: &str) -> u8 {
    let mut p = 0;
    if s.contains("PROT_READ") {
        p |= R;
    }
    if s.contains("PROT_WRITE") {
        p |= R | W;
    }
    if s.contains("PROT_EXEC") {
        p |= R | X;
    }
    p
}

fn num(s: &str) -> Option<usize> {
    let s = s.trim();
    if s == "NULL" {
        return Some(0);
    }
    match s.strip_prefix("0x") {
        Some(hex) => usize::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Reads and works out the trace `benches/traces/{name}.txt.gz`.
pub fn load(name: &'static str) -> Trace {
    let path = format!(
        "{}/benches/traces/{name}.txt.gz",
        env!("CARGO_MANIFEST_DIR")
    );
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let lines = BufReader::new(flate2::read::GzDecoder::new(file)).lines();
    let mut spaces: BTreeMap<u32, Space> = BTreeMap::new();
    let mut pending: BTreeMap<u32, String> = BTreeMap::new();
    let mut calls = 0;
    for line in lines {
        let line = line.expect("a readable trace");
        let Some((pid, rest)) = line.split_once(' ') else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        let rest = rest.trim_start();
        // `-f` splits a call another thread interrupts: "<unfinished ...>", then
        // "<... name resumed>" with the rest.
        if let Some(head) = rest.strip_suffix("<unfinished ...>") {
            pending.insert(pid, head.trim_end().to_string());
            continue;
        }
        let call = match rest.strip_prefix("<... ") {
            Some(resumed) => {
                let tail = resumed.split_once("resumed>").map_or("", |(_, t)| t);
                format!("{}{tail}", pending.remove(&pid).unwrap_or_default())
            }
            None => rest.to_string(),
        };
        let Some((name, tail)) = call.split_once('(') else {
            continue;
        };
        let Some((args, ret)) = tail.rsplit_once(") = ").or_else(|| {
            // strace pads short calls: "brk(NULL)                  = 0x..."
            let (a, r) = tail.rsplit_once('=')?;
            Some((a.trim_end().strip_suffix(')')?, r))
        }) else {
            continue;
        };
        let ret = ret.split_whitespace().next().unwrap_or("");
        if ret.starts_with('-') {
            continue; // failed: nothing changed
        }
        let Some(ret) = num(ret) else { continue };
        let a: Vec<&str> = args.split(", ").collect();
        let sp = spaces.entry(pid).or_default();
        calls += 1;
        match name {
            "mmap" if a.len() >= 3 => {
                let Some(len) = num(a[1]) else { continue };
                sp.map(ret, ret + up(len), prot(a[2]));
            }
            "munmap" if a.len() >= 2 => {
                let (Some(at), Some(len)) = (num(a[0]), num(a[1])) else {
                    continue;
                };
                sp.unmap(at, at + up(len));
            }
            "mprotect" if a.len() >= 3 => {
                let (Some(at), Some(len)) = (num(a[0]), num(a[1])) else {
                    continue;
                };
                sp.protect(at, at + up(len), prot(a[2]));
            }
            "brk" => {
                // `brk(NULL)` asks where the break is (after an `execve`, somewhere new).
                let asked = a.first().and_then(|x| num(x)) == Some(0);
                match sp.brk.filter(|_| !asked) {
                    Some(cur) if up(ret) > up(cur) => sp.map(up(cur), up(ret), R | W),
                    Some(cur) if up(ret) < up(cur) => sp.unmap(up(ret), up(cur)),
                    _ => {}
                }
                sp.brk = Some(ret);
            }
            "mremap" if a.len() >= 3 => {
                let (Some(old), Some(old_len), Some(new_len)) = (num(a[0]), num(a[1]), num(a[2]))
                else {
                    continue;
                };
                let p = sp.prot_at(old);
                sp.unmap(old, old + up(old_len));
                sp.map(ret, ret + up(new_len), p);
            }
            _ => calls -= 1,
        }
    }
    finish(name, spaces.into_values().map(|s| s.out), calls)
}

/// The trace `name` from its spaces' calls.
fn finish(name: &'static str, spaces: impl Iterator<Item = Vec<Prim>>, calls: usize) -> Trace {
    let spaces: Vec<Vec<Prim>> = spaces.filter(|o| !o.is_empty()).collect();
    let prims = spaces.iter().map(Vec::len).sum();
    let pages = spaces
        .iter()
        .flatten()
        .map(|p| match *p {
            Prim::Map(_, len, _) | Prim::Protect(_, len, _) | Prim::Unmap(_, len) => len / PAGE,
            Prim::Fault(..) => 1,
        })
        .sum();
    let mapped = spaces
        .iter()
        .flatten()
        .map(|p| match *p {
            Prim::Map(_, len, _) => len / PAGE,
            Prim::Fault(..) => 1,
            _ => 0,
        })
        .sum();
    Trace {
        name,
        spaces,
        calls,
        prims,
        pages,
        mapped,
    }
}

/// One address space of the demand-paging replay: its regions (as [`Space`]'s) and the pages
/// that faulted in, and the primitive calls so far.
#[derive(Default)]
struct Demand {
    regions: Space,
    pages: std::collections::BTreeSet<usize>,
    /// Each thread's system call in flight: its number and arguments.
    entered: BTreeMap<u32, (u32, [usize; 6])>,
}

impl Demand {
    /// The mapped pages of `[a, b)` as runs of consecutive pages.
    fn runs(&self, a: usize, b: usize) -> Vec<(usize, usize)> {
        let mut runs: Vec<(usize, usize)> = vec![];
        for &p in self.pages.range(a..b) {
            match runs.last_mut() {
                Some((_, e)) if *e == p => *e += PAGE,
                _ => runs.push((p, p + PAGE)),
            }
        }
        runs
    }

    fn unmap(&mut self, a: usize, b: usize) {
        for (s, e) in self.runs(a, b) {
            self.regions.out.push(Prim::Unmap(s, e - s));
        }
        let gone: Vec<usize> = self.pages.range(a..b).copied().collect();
        for p in gone {
            self.pages.remove(&p);
        }
    }

    fn protect(&mut self, a: usize, b: usize, p: u8) {
        if p == 0 {
            self.unmap(a, b);
        } else {
            for (s, e) in self.runs(a, b) {
                self.regions.out.push(Prim::Protect(s, e - s, p));
            }
        }
    }

    /// A region `[a, b)` with protection `p`, replacing what was there.
    fn region(&mut self, a: usize, b: usize, p: u8) {
        self.unmap(a, b);
        self.regions.cut(a, b);
        for (s, _, _) in self.regions.inside(a, b) {
            self.regions.regions.remove(&s);
        }
        if a < b {
            self.regions.regions.insert(a, (b, p));
        }
    }

    fn fault(&mut self, addr: usize) {
        let page = addr & !(PAGE - 1);
        if self.pages.contains(&page) {
            return; // a write or protection fault on a mapped page: no new entry
        }
        // Outside every region the program mapped: what the kernel set up (the stack, the
        // executable, the loader), read-write here.
        let p = match self.regions.regions.range(..=page).next_back() {
            Some((_, &(e, p))) if e > page => p,
            _ => R | W,
        };
        if p == 0 {
            return; // PROT_NONE: the program takes a signal, nothing is mapped
        }
        self.pages.insert(page);
        self.regions.out.push(Prim::Fault(page, p));
    }
}

/// Reads and works out the page-fault trace `benches/traces/{name}.txt.gz`: `perf record -c 1
/// -e page-faults -d` with the memory system calls as `raw_syscalls` events, printed by `perf
/// script -F pid,tid,event,addr,trace`. Each process id is one address space; a fault on a
/// page not mapped yet maps it (with its region's protection), `munmap` and `mprotect` unmap
/// or protect the pages that faulted in, `mremap` moves them, `mmap` and `brk` only make
/// regions.
pub fn load_faults(name: &'static str) -> Trace {
    let path = format!(
        "{}/benches/traces/{name}.txt.gz",
        env!("CARGO_MANIFEST_DIR")
    );
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let lines = BufReader::new(flate2::read::GzDecoder::new(file)).lines();
    let mut spaces: BTreeMap<u32, Demand> = BTreeMap::new();
    let mut calls = 0;
    let hex = |s: &str| usize::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok();
    for line in lines {
        let line = line.expect("a readable trace");
        let mut words = line.split_whitespace();
        let Some((pid, tid)) = words.next().and_then(|w| w.split_once('/')) else {
            continue;
        };
        let (Ok(pid), Ok(tid)) = (pid.parse::<u32>(), tid.parse::<u32>()) else {
            continue;
        };
        let space = spaces.entry(pid).or_default();
        match words.next() {
            Some("page-faults:") => {
                if let Some(addr) = words.next().and_then(hex) {
                    calls += 1;
                    space.fault(addr);
                }
            }
            Some("raw_syscalls:sys_enter:") => {
                // "NR 9 (0, 2000, 3, 22, ffffffff, 0)"
                let rest: Vec<&str> = words.collect();
                let Some(nr) = rest.get(1).and_then(|n| n.parse::<u32>().ok()) else {
                    continue;
                };
                let args = rest[2..].join(" ");
                let args = args.trim_start_matches('(');
                let args = args.split(')').next().unwrap_or("");
                let mut a = [0usize; 6];
                for (slot, v) in a.iter_mut().zip(args.split(',')) {
                    *slot = hex(v).unwrap_or(0);
                }
                space.entered.insert(tid, (nr, a));
            }
            Some("raw_syscalls:sys_exit:") => {
                // "NR 9 = 140269730791424"
                let rest: Vec<&str> = words.collect();
                let Some(ret) = rest.get(3).and_then(|r| r.parse::<i64>().ok()) else {
                    continue;
                };
                let Some((nr, a)) = space.entered.remove(&tid) else {
                    continue;
                };
                if ret < 0 {
                    continue; // failed: nothing changed
                }
                calls += 1;
                let ret = ret as usize;
                let prot_bits = |p: usize| {
                    let mut bits = 0;
                    if p & 1 != 0 {
                        bits |= R;
                    }
                    if p & 2 != 0 {
                        bits |= R | W;
                    }
                    if p & 4 != 0 {
                        bits |= R | X;
                    }
                    bits
                };
                match nr {
                    // mmap(addr, len, prot, ...) = start
                    9 => space.region(ret, ret + up(a[1]), prot_bits(a[2])),
                    // mprotect(start, len, prot)
                    10 => {
                        let (s, e) = (a[0], a[0] + up(a[1]));
                        space.protect(s, e, prot_bits(a[2]));
                        space.regions.cut(s, e);
                        for (rs, re, _) in space.regions.inside(s, e) {
                            space.regions.regions.insert(rs, (re, prot_bits(a[2])));
                        }
                    }
                    // munmap(start, len)
                    11 => space.region(a[0], a[0] + up(a[1]), 0),
                    // brk(end) = new end: a shrink unmaps, growth makes heap
                    12 if a[0] != 0 => {
                        let cur = space.regions.brk.unwrap_or(ret);
                        if up(ret) < up(cur) {
                            space.unmap(up(ret), up(cur));
                        } else {
                            space.region(up(cur), up(ret), R | W);
                        }
                        space.regions.brk = Some(ret);
                    }
                    12 => space.regions.brk = Some(ret),
                    // mremap(old, old_len, new_len, ...) = new: the pages move
                    25 => {
                        let (old, old_len, new_len) = (a[0], up(a[1]), up(a[2]));
                        let p = space.regions.prot_at(old);
                        let moved: Vec<usize> = space
                            .pages
                            .range(old..old + old_len.min(new_len))
                            .map(|&q| q - old)
                            .collect();
                        space.region(old, old + old_len, 0);
                        space.region(ret, ret + new_len, p);
                        for off in moved {
                            space.pages.insert(ret + off);
                        }
                        for (s, e) in space.runs(ret, ret + new_len) {
                            space.regions.out.push(Prim::Map(s, e - s, p));
                        }
                    }
                    _ => calls -= 1,
                }
            }
            _ => {}
        }
    }
    finish(name, spaces.into_values().map(|d| d.regions.out), calls)
}
