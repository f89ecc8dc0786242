//! Conformance on a real MMU model: for every paging mode, the host builds page tables with the
//! crate's public API into an image of guest-physical memory, and a bare-metal guest under QEMU
//! (see `guests/`) turns its MMU on with them and touches memory through the mappings.
//!
//! Every expected result comes from the test's own plan (which physical address each probe
//! should reach), never from the crate's `query`. Words of the data area hold `pattern(pa)`, so a
//! read through a wrong translation shows. Phase 2 runs after the host edited the tables
//! (unmap, protect, a split, a remap): the guest applies the edit as a patch of table memory and
//! performs exactly the flushes the crate's tokens asked for, after phase 1 warmed the TLB.
//!
//! Without QEMU 10 this suite does not run under a plain `cargo test` (it says so); under
//! `scripts/test` (`PAGETABLE_REQUIRE_QEMU=1`) a missing QEMU fails it.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use pagetable::arch::{level_shift, root_depth};
use pagetable::{
    AArch64, Arch, BufferFrames, Descriptor, Flush, Granule16K, Granule64K, HugePages, L1,
    LoongArch64, Lower, MappingFlags as F, PageSize, PageTable, PagingError, PhysAddr, Sv39, Sv48,
    Sv57, Upper, Va36, Va39, Va42, Va48, VaSpace, VirtAddr, X86_64, X86_64La57,
};

const MAGIC: u64 = 0x7061_6765_7461_626c;
const MIB: u64 = 1 << 20;
/// Image layout, as offsets from the image base.
const LISTS: u64 = 0x1000;
const TABLES: u64 = MIB;
const TABLES_LEN: u64 = 4 * MIB;
const DATA: u64 = 6 * MIB;
const DATA_LEN: u64 = 2 * MIB;
const IMAGE_LEN: u64 = DATA + DATA_LEN;

/// What every word of the data area holds: its own physical address, tagged.
fn pattern(pa: u64) -> u64 {
    pa ^ 0xda7a_0000_0000_0000
}

/// How one architecture's guest runs.
struct Platform {
    qemu: &'static str,
    args: &'static [&'static str],
    guest: &'static str,
    image_base: u64,
    /// The guest's own code, stack and the image: identity-mapped by the crate's tables (not on
    /// LoongArch, whose guest runs in a direct-mapped window).
    identity: Option<(u64, u64)>,
    uart_pa: u64,
    /// A `ret` instruction.
    ret: &'static [u8],
    /// Whether a supervisor read of a user page faults, and a supervisor fetch from one.
    user_read_faults: bool,
    user_exec_faults: bool,
    /// Whether a fetch from a no-execute page can be observed. QEMU 10.0 cannot deliver
    /// LoongArch's PNX: it re-reads the faulting instruction for BADI, faults again, forever.
    nx_fetch_observable: bool,
    /// Whether the mode can map a page write-only (LoongArch, with NR).
    write_only: bool,
}

const RISCV: Platform = Platform {
    qemu: "qemu-system-riscv64",
    args: &[
        "-M",
        "virt",
        "-bios",
        "none",
        "-m",
        "2G",
        "-cpu",
        "rv64,svpbmt=true,sv57=true",
    ],
    guest: "riscv64.elf",
    image_base: 0x8800_0000,
    identity: Some((0x8000_0000, 0x1000_0000)),
    uart_pa: 0x1000_0000,
    ret: &[0x67, 0x80, 0x00, 0x00],
    // SUM is clear: S-mode may not touch U pages; and S-mode never executes them.
    user_read_faults: true,
    user_exec_faults: true,
    nx_fetch_observable: true,
    write_only: false,
};

/// Probe kinds the guests know.
const READ: u64 = 1;
const WRITE: u64 = 2;
const EXEC: u64 = 3;

#[derive(Clone, Debug)]
struct Probe {
    kind: u64,
    va: u64,
    value: u64,
    /// The line the guest must print.
    expect: String,
    what: &'static str,
}

fn read(va: u64, pa: u64, what: &'static str) -> Probe {
    Probe {
        kind: READ,
        va,
        value: 0,
        expect: format!("{:016x}", pattern(pa)),
        what,
    }
}
fn read_value(va: u64, value: u64, what: &'static str) -> Probe {
    Probe {
        kind: READ,
        va,
        value: 0,
        expect: format!("{value:016x}"),
        what,
    }
}
fn write(va: u64, value: u64, ok: bool, what: &'static str) -> Probe {
    Probe {
        kind: WRITE,
        va,
        value,
        expect: if ok { "OK".into() } else { "FAULT".into() },
        what,
    }
}
fn exec(va: u64, ok: bool, what: &'static str) -> Probe {
    Probe {
        kind: EXEC,
        va,
        value: 0,
        expect: if ok { "OK".into() } else { "FAULT".into() },
        what,
    }
}
fn fault(kind: u64, va: u64, what: &'static str) -> Probe {
    Probe {
        kind,
        va,
        value: 0,
        expect: "FAULT".into(),
        what,
    }
}

/// A flush a token asked for.
enum FlushRec {
    All,
    Pages(u64, u64),
}

fn record<A: Arch>(flush: Flush<A>, into: &mut Vec<FlushRec>) {
    if flush.is_all() {
        into.push(FlushRec::All);
    } else if let Some((va, len)) = flush.va_range() {
        into.push(FlushRec::Pages(va.as_usize() as u64, len as u64 / 4096));
    }
    flush.ignore();
}

/// The tables of one mode: one table, or (AArch64) a TTBR0 table and a TTBR1 table.
trait Space {
    fn map_region(&mut self, va: u64, pa: u64, len: u64, flags: F);
    fn map(&mut self, va: u64, pa: u64, size: PageSize, flags: F);
    fn edit(&mut self, va: u64, edit: Edit) -> Result<(), PagingError>;
    fn roots(&self) -> (u64, u64);
    fn memory(&self) -> Vec<u8>;
    fn flushes(&mut self) -> Vec<FlushRec>;
    /// The raw 4 KiB leaf this mode makes for `pa` with `flags`, to find it in memory.
    fn leaf_bits(&self, pa: u64, flags: F) -> u64;
}

#[derive(Clone, Copy)]
enum Edit {
    Unmap,
    Protect(F),
    ProtectRegion(u64, F),
    Remap(u64),
    UnmapRegion(u64),
}

fn apply<A: Arch>(
    pt: &mut PageTable<A, BufferFrames<'_>>,
    va: u64,
    edit: Edit,
    flushes: &mut Vec<FlushRec>,
) -> Result<(), PagingError> {
    let v = VirtAddr::from(va as usize);
    let flush = match edit {
        Edit::Unmap => pt.unmap(v)?.1,
        Edit::Protect(flags) => pt.protect(v, flags)?,
        Edit::ProtectRegion(len, flags) => pt.protect_region(v, len as usize, flags)?,
        Edit::Remap(pa) => pt.remap(v, PhysAddr::from(pa as usize))?,
        Edit::UnmapRegion(len) => pt.unmap_region(v, len as usize)?,
    };
    record(flush, flushes);
    Ok(())
}

struct One<'a, A: Arch> {
    pt: PageTable<A, BufferFrames<'a>>,
    flushes: Vec<FlushRec>,
}

impl<A: Arch> Space for One<'_, A> {
    fn map_region(&mut self, va: u64, pa: u64, len: u64, flags: F) {
        let f = self.pt.map_region(
            VirtAddr::from(va as usize),
            PhysAddr::from(pa as usize),
            len as usize,
            flags,
            HugePages::Allowed,
        );
        f.unwrap_or_else(|e| panic!("map_region {va:#x}: {e}"))
            .ignore();
    }
    fn map(&mut self, va: u64, pa: u64, size: PageSize, flags: F) {
        let f = self.pt.map(
            VirtAddr::from(va as usize),
            PhysAddr::from(pa as usize),
            size,
            flags,
        );
        f.unwrap_or_else(|e| panic!("map {va:#x}: {e}")).ignore();
    }
    fn edit(&mut self, va: u64, edit: Edit) -> Result<(), PagingError> {
        apply(&mut self.pt, va, edit, &mut self.flushes)
    }
    fn roots(&self) -> (u64, u64) {
        (self.pt.root_paddr().as_usize() as u64, 0)
    }
    fn memory(&self) -> Vec<u8> {
        self.pt.handler().memory().to_vec()
    }
    fn flushes(&mut self) -> Vec<FlushRec> {
        std::mem::take(&mut self.flushes)
    }
    fn leaf_bits(&self, pa: u64, flags: F) -> u64 {
        Descriptor::<A, L1>::leaf(PhysAddr::from(pa as usize), flags)
            .unwrap()
            .bits()
    }
}

/// AArch64: a TTBR0 table for the lower range and a TTBR1 table for the upper one.
struct Pair<'a, L: Arch, U: Arch> {
    lower: One<'a, L>,
    upper: One<'a, U>,
}

impl<L: Arch, U: Arch> Pair<'_, L, U> {
    fn half(&mut self, va: u64) -> &mut dyn Space {
        if va >> 63 == 0 {
            &mut self.lower
        } else {
            &mut self.upper
        }
    }
}

impl<L: Arch, U: Arch> Space for Pair<'_, L, U> {
    fn map_region(&mut self, va: u64, pa: u64, len: u64, flags: F) {
        self.half(va).map_region(va, pa, len, flags);
    }
    fn map(&mut self, va: u64, pa: u64, size: PageSize, flags: F) {
        self.half(va).map(va, pa, size, flags);
    }
    fn edit(&mut self, va: u64, edit: Edit) -> Result<(), PagingError> {
        self.half(va).edit(va, edit)
    }
    fn roots(&self) -> (u64, u64) {
        (self.lower.roots().0, self.upper.roots().0)
    }
    fn memory(&self) -> Vec<u8> {
        [self.lower.memory(), self.upper.memory()].concat()
    }
    fn flushes(&mut self) -> Vec<FlushRec> {
        // Each token flushes on its own; order between the halves does not matter.
        [self.lower.flushes(), self.upper.flushes()]
            .into_iter()
            .flatten()
            .collect()
    }
    fn leaf_bits(&self, pa: u64, flags: F) -> u64 {
        self.lower.leaf_bits(pa, flags)
    }
}

/// Sign-extends (or, for AArch64's upper range, fills) a folded address of mode `A`.
fn unfold<A: Arch>(folded: u64) -> u64 {
    let n = A::VA_BITS;
    match A::VA_SPACE {
        VaSpace::Lower => folded,
        VaSpace::Upper => folded | !((1 << n) - 1),
        VaSpace::Canonical => (((folded << (64 - n)) as i64) >> (64 - n)) as u64,
    }
}

/// The address with these table indices, root first (missing ones are zero), plus `offset`.
fn va<A: Arch>(indices: &[u64], offset: u64) -> u64 {
    let levels = root_depth::<A>();
    let mut folded = offset;
    for (k, &i) in indices.iter().enumerate() {
        folded |= i << level_shift::<A>(levels - k as u8);
    }
    unfold::<A>(folded)
}

/// Indices below the root for a 4 KiB probe slot `l1`: distinct at every level, and different
/// from the physical address's.
fn slot<A: Arch>(root: u64, l1: u64) -> Vec<u64> {
    let tail = [0x011, 0x0ab, 0x0cd];
    let below = root_depth::<A>() as usize - 1;
    let mut v = vec![root];
    v.extend_from_slice(&tail[tail.len() - (below - 1)..]);
    v.push(l1);
    v
}

struct Scenario {
    p1: Vec<Probe>,
    p2: Vec<Probe>,
}

/// Maps the scenario into `space` and returns the probes. `lower` and `upper` are root indices
/// for test mappings in each half, whose modes are `A` and `B` (the same mode but for AArch64); `huge_extra` lists the mode's leaves above 1 GiB as
/// (indices, size).
fn build_with_hook<A: Arch, B: Arch>(
    space: &mut dyn Space,
    p: &Platform,
    lower: u64,
    upper: u64,
    huge_extra: &[(&[u64], PageSize)],
    between: &mut dyn FnMut(&dyn Space),
) -> Scenario {
    let base = p.image_base;
    let data = base + DATA;
    let (r, rw, rx) = (F::READ, F::READ | F::WRITE, F::READ | F::EXECUTE);
    let mut p1 = vec![];
    let mut p2 = vec![];

    // 4 KiB leaves in both halves, VA and PA differing in every index and in the page offset.
    let low4k = va::<A>(&slot::<A>(lower, 0x0ef), 0);
    space.map(low4k, data + 0x3000, PageSize::SIZE_4K, r);
    p1.push(read(low4k + 0x568, data + 0x3568, "4K leaf, lower half"));
    let up4k = va::<B>(&slot::<B>(upper, 0x0e1), 0);
    space.map(up4k, data + 0x5000, PageSize::SIZE_4K, r);
    p1.push(read(up4k + 0x9a8, data + 0x59a8, "4K leaf, upper half"));

    // A 2 MiB leaf over the data area.
    let mut idx = slot::<A>(lower, 0);
    let l2 = idx.len() - 2;
    idx[l2] = 0x0d1;
    let v2m = va::<A>(&idx, 0);
    space.map(v2m, data, PageSize::SIZE_2M, rw);
    p1.push(read(v2m + 0x12_3458, data + 0x12_3458, "2M leaf"));

    // A 1 GiB leaf over the gigabyte that holds the image.
    let g1 = base & !((1 << 30) - 1);
    let v1g = if root_depth::<A>() == 3 {
        va::<A>(&[lower + 2], 0)
    } else {
        let mut idx = slot::<A>(lower, 0);
        idx.truncate(idx.len() - 2);
        let last = idx.len() - 1;
        idx[last] = 0x0e5;
        va::<A>(&idx, 0)
    };
    space.map(v1g, g1, PageSize::SIZE_1G, rw);
    p1.push(read(
        v1g + (data - g1) + 0x1_0008,
        data + 0x1_0008,
        "1G leaf",
    ));

    for &(indices, size) in huge_extra {
        let v = va::<A>(indices, 0);
        space.map(v, 0, size, r);
        p1.push(read(
            v + data + 0x2_0010,
            data + 0x2_0010,
            if size == PageSize::SIZE_512G {
                "512G leaf"
            } else {
                "256T leaf"
            },
        ));
    }

    // A store through a writable leaf, read back through a read-only alias in the other half.
    let w = va::<A>(&slot::<A>(lower, 0x101), 0);
    let alias = va::<B>(&slot::<B>(upper, 0x103), 0);
    space.map(w, data + 0x7000, PageSize::SIZE_4K, rw);
    space.map(alias, data + 0x7000, PageSize::SIZE_4K, r);
    p1.push(write(
        w + 0x20,
        0x1122_3344_5566_7788,
        true,
        "store through a writable leaf",
    ));
    p1.push(read_value(
        alias + 0x20,
        0x1122_3344_5566_7788,
        "the store, through an alias",
    ));

    // Read-only, no-execute, execute, unmapped.
    let ro = va::<A>(&slot::<A>(lower, 0x105), 0);
    space.map(ro, data + 0x8000, PageSize::SIZE_4K, r);
    p1.push(write(ro + 0x30, 1, false, "store to a read-only leaf"));
    p1.push(read(ro + 0x30, data + 0x8030, "read of the read-only leaf"));
    let code = data + 0x9000;
    let nx = va::<A>(&slot::<A>(lower, 0x107), 0);
    let x = va::<B>(&slot::<B>(upper, 0x109), 0);
    space.map(nx, code, PageSize::SIZE_4K, r);
    space.map(x, code, PageSize::SIZE_4K, rx);
    if p.nx_fetch_observable {
        p1.push(exec(nx, false, "fetch from a no-execute leaf"));
    }
    if p.write_only {
        let wo = va::<A>(&slot::<A>(lower, 0x111), 0);
        space.map(wo, data + 0xb000, PageSize::SIZE_4K, F::WRITE);
        p1.push(fault(READ, wo + 0x18, "read of a write-only leaf"));
        p1.push(write(wo + 0x18, 0x5555, true, "store to a write-only leaf"));
        p1.push(read_value(
            v2m + 0xb018,
            0x5555,
            "the store, through the 2M leaf",
        ));
    }
    p1.push(exec(x, true, "fetch from an executable leaf"));
    p1.push(fault(
        READ,
        va::<A>(&slot::<A>(lower, 0x10b), 0),
        "unmapped page in a populated table",
    ));
    p1.push(fault(
        READ,
        va::<A>(&[lower + 4], 0x40),
        "unmapped root entry",
    ));

    // User pages, touched from the supervisor.
    let user = va::<A>(&slot::<A>(lower, 0x10d), 0);
    let user_x = va::<A>(&slot::<A>(lower, 0x10f), 0);
    space.map(user, data + 0xa000, PageSize::SIZE_4K, rw | F::USER);
    space.map(user_x, code, PageSize::SIZE_4K, rx | F::USER);
    p1.push(if p.user_read_faults {
        fault(READ, user + 8, "supervisor read of a user page")
    } else {
        read(user + 8, data + 0xa008, "supervisor read of a user page")
    });
    p1.push(exec(
        user_x,
        !p.user_exec_faults,
        "supervisor fetch from a user page",
    ));

    // Phase 2: the edits, then the same addresses again.
    between(space);
    space.edit(low4k, Edit::Unmap).unwrap();
    p2.push(fault(READ, low4k + 0x568, "after unmap"));
    space.edit(w, Edit::Protect(r)).unwrap();
    p2.push(write(
        w + 0x28,
        2,
        false,
        "store after protect to read-only",
    ));
    space
        .edit(v2m + 0x1_3000, Edit::ProtectRegion(0x1000, r))
        .unwrap();
    p2.push(write(
        v2m + 0x1_3010,
        3,
        false,
        "store to a page made read-only inside a split 2M leaf",
    ));
    p2.push(write(
        v2m + 0x1_4010,
        0x4444,
        true,
        "store to its writable neighbour",
    ));
    p2.push(read_value(v2m + 0x1_4010, 0x4444, "read back"));
    p2.push(read(
        v2m + 0x12_3458,
        data + 0x12_3458,
        "the rest of the split leaf",
    ));
    space.edit(up4k, Edit::Remap(data + 0x6000)).unwrap();
    p2.push(read(up4k + 0x9a8, data + 0x69a8, "after remap"));
    space
        .edit(v1g + 2 * MIB, Edit::UnmapRegion(2 * MIB))
        .unwrap();
    p2.push(fault(
        READ,
        v1g + 2 * MIB + 8,
        "inside a 2M hole cut out of the 1G leaf",
    ));
    p2.push(read(
        v1g + (data - g1) + 0x1_0008,
        data + 0x1_0008,
        "the rest of the 1G leaf",
    ));
    Scenario { p1, p2 }
}

/// What the guest loads into its MMU registers.
struct Boot {
    roots: (u64, u64),
    regs: (u64, u64),
    uart_va: u64,
}

/// Writes the image and the control block: tables as before the edits, the edits as patches.
fn image(
    p: &Platform,
    tables_before: &[u8],
    tables_after: &[u8],
    boot: &Boot,
    s: &Scenario,
    flushes: &[FlushRec],
) -> Vec<u8> {
    let mut img = vec![0u8; IMAGE_LEN as usize];
    let put = |img: &mut Vec<u8>, off: u64, v: u64| {
        img[off as usize..off as usize + 8].copy_from_slice(&v.to_le_bytes())
    };
    // Data area: every word its pattern; a `ret` at the code frame.
    for off in (DATA..DATA + DATA_LEN).step_by(8) {
        put(&mut img, off, pattern(p.image_base + off));
    }
    let code = (DATA + 0x9000) as usize;
    img[code..code + p.ret.len()].copy_from_slice(p.ret);
    img[TABLES as usize..(TABLES as usize + tables_before.len())].copy_from_slice(tables_before);
    // Lists.
    let mut cursor = LISTS;
    let mut list = |img: &mut Vec<u8>, words: Vec<u64>| {
        let at = cursor;
        for (i, w) in words.iter().enumerate() {
            put(img, at + 8 * i as u64, *w);
        }
        cursor += 8 * words.len() as u64;
        assert!(cursor < TABLES, "lists overflow");
        at
    };
    let probes = |ps: &[Probe]| {
        ps.iter()
            .flat_map(|p| [p.kind, p.va, p.value, 0])
            .collect::<Vec<_>>()
    };
    let p1 = list(&mut img, probes(&s.p1));
    let p2 = list(&mut img, probes(&s.p2));
    let mut patches = vec![];
    for (i, (b, a)) in tables_before
        .chunks(8)
        .zip(tables_after.chunks(8))
        .enumerate()
    {
        if b != a {
            patches.extend([
                p.image_base + TABLES + 8 * i as u64,
                u64::from_le_bytes(a.try_into().unwrap()),
            ]);
        }
    }
    let npatches = patches.len() as u64 / 2;
    let patch_at = list(&mut img, patches);
    let fl: Vec<u64> = flushes
        .iter()
        .flat_map(|f| match *f {
            FlushRec::All => [2, 0, 0],
            FlushRec::Pages(va, n) => [1, va, n],
        })
        .collect();
    let flush_at = list(&mut img, fl);
    let header = [
        MAGIC,
        boot.roots.0,
        boot.roots.1,
        boot.regs.0,
        boot.regs.1,
        boot.uart_va,
        s.p1.len() as u64,
        p1,
        npatches,
        patch_at,
        flushes.len() as u64,
        flush_at,
        s.p2.len() as u64,
        p2,
    ];
    for (i, w) in header.iter().enumerate() {
        put(&mut img, 8 * i as u64, *w);
    }
    img
}

/// Whether QEMU can run; panics if it cannot and the suite is required.
fn qemu_available(bin: &str) -> bool {
    let ok = Command::new(bin)
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .nth(3)
                .and_then(|v| v.split('.').next()?.parse::<u32>().ok())
                .is_some_and(|major| major >= 10)
        })
        .unwrap_or(false);
    if !ok {
        if std::env::var_os("PAGETABLE_REQUIRE_QEMU").is_some() {
            panic!(
                "{bin} (QEMU >= 10) is missing: the conformance suite is required here; run scripts/install-deps"
            );
        }
        eprintln!(
            "NOTE: the QEMU conformance suite did NOT run: {bin} >= 10 is missing. \
             Run scripts/test (as root it installs QEMU) or scripts/install-deps, then cargo test."
        );
    }
    ok
}

/// Runs the guest on `img` and returns the probe lines it printed, or why it failed.
fn run_guest(p: &Platform, name: &str, img: &[u8]) -> Result<Vec<String>, String> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(format!("image-{name}.bin"));
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(img))
        .map_err(|e| e.to_string())?;
    let guest = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("guests/bin")
        .join(p.guest);
    let mut child = Command::new(p.qemu)
        .args(p.args)
        .args([
            "-display",
            "none",
            "-serial",
            "stdio",
            "-monitor",
            "none",
            "-no-reboot",
            "-kernel",
        ])
        .arg(&guest)
        .arg("-device")
        .arg(format!(
            "loader,file={},addr={:#x},force-raw=on",
            path.display(),
            p.image_base
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", p.qemu))?;
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let done = line == "DONE";
            if tx.send(line).is_err() || done {
                break;
            }
        }
    });
    let mut lines = vec![];
    let outcome = loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line == "DONE" => break Ok(()),
            Ok(line) => lines.push(line),
            Err(_) => break Err("no DONE from the guest"),
        }
    };
    let _ = child.kill();
    let output = child.wait_with_output().map_err(|e| e.to_string())?;
    match outcome {
        Ok(()) => Ok(lines),
        Err(why) => Err(format!(
            "{why}; guest printed {lines:?}; qemu stderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )),
    }
}

/// Compares the guest's probe lines with the plan: every line, in order.
fn check(s: &Scenario, lines: &[String]) -> Result<(), String> {
    let got: Vec<&str> = lines.iter().filter_map(|l| l.strip_prefix("P ")).collect();
    let want: Vec<&Probe> = s.p1.iter().chain(&s.p2).collect();
    let mut errors = vec![];
    if got.len() != want.len() {
        errors.push(format!(
            "{} probe lines, expected {}: {lines:?}",
            got.len(),
            want.len()
        ));
    }
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        if *g != w.expect {
            errors.push(format!(
                "probe {i} ({}, va {:#x}): got {g}, expected {}",
                w.what, w.va, w.expect
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n"))
    }
}

/// Builds the space of a mode over the table area of the image (its words, and their physical
/// address).
type MakeSpace = dyn for<'a> Fn(&'a mut [u64], u64) -> Box<dyn Space + 'a>;

/// Builds, runs and checks one mode; with `corrupt`, first points the lower-half 4 KiB leaf at
/// the wrong frame and returns the check's verdict instead of asserting it.
///
/// `A` and `B` are the modes of the lower and upper halves; `make` builds the space over the
/// table area of the image (words, and their physical address).
#[allow(clippy::too_many_arguments)]
fn conform<A: Arch, B: Arch>(
    p: &Platform,
    name: &str,
    make: &MakeSpace,
    regs: (u64, u64),
    uart_va: u64,
    lower: u64,
    upper: u64,
    huge_extra: &[(&[u64], PageSize)],
    corrupt: bool,
) -> Result<(), String> {
    let build = |space: &mut dyn Space, hook: &mut dyn FnMut(&dyn Space)| {
        build_with_hook::<A, B>(space, p, lower, upper, huge_extra, hook)
    };
    conform_with::<A>(p, name, make, regs, uart_va, &build, corrupt)
}

/// The probes of a scenario, mapped into a space; the hook sees the space between the phases.
type Build<'b> = dyn Fn(&mut dyn Space, &mut dyn FnMut(&dyn Space)) -> Scenario + 'b;

/// [`conform`] with any scenario; `A` is the mode of the lower half, whose granule the guest's
/// own mappings use.
fn conform_with<A: Arch>(
    p: &Platform,
    name: &str,
    make: &MakeSpace,
    regs: (u64, u64),
    uart_va: u64,
    build: &Build<'_>,
    corrupt: bool,
) -> Result<(), String> {
    let page = 1u64 << A::PAGE_SHIFT;
    let mut words = vec![0u64; (TABLES_LEN / 8) as usize];
    let mut space = make(&mut words, p.image_base + TABLES);
    if let Some((pa, len)) = p.identity {
        space.map_region(pa, pa, len, F::READ | F::WRITE | F::EXECUTE | F::GLOBAL);
    }
    // The UART's page, as device memory; the guest gets the address of its registers.
    space.map(
        uart_va,
        p.uart_pa & !(page - 1),
        PageSize::from_shift(A::PAGE_SHIFT).unwrap(),
        F::READ | F::WRITE | F::DEVICE | F::GLOBAL,
    );
    let uart_va = uart_va + (p.uart_pa & (page - 1));
    let mut before = None;
    let scenario = build(&mut *space, &mut |s: &dyn Space| {
        before = Some(s.memory());
    });
    let mut before = before.expect("phase-1 snapshot");
    let after = space.memory();
    let flushes = space.flushes();
    if corrupt {
        let leaf = space.leaf_bits(p.image_base + DATA + 0x3000, F::READ);
        let wrong = space.leaf_bits(p.image_base + DATA + 0x4000, F::READ);
        let at = before
            .chunks(8)
            .position(|w| u64::from_le_bytes(w.try_into().unwrap()) == leaf)
            .expect("the 4K leaf is in table memory");
        before[8 * at..8 * at + 8].copy_from_slice(&wrong.to_le_bytes());
    }
    let boot = Boot {
        roots: space.roots(),
        regs,
        uart_va,
    };
    let img = image(p, &before, &after, &boot, &scenario, &flushes);
    let lines = run_guest(p, name, &img)?;
    check(&scenario, &lines)
}

fn one<A: Arch>(words: &mut [u64], pa: u64) -> Box<dyn Space + '_> {
    let frames = BufferFrames::new(words, PhysAddr::from(pa as usize)).unwrap();
    Box::new(One::<A> {
        pt: PageTable::new(frames).unwrap(),
        flushes: vec![],
    })
}

fn pair<L: Arch, U: Arch>(words: &mut [u64], pa: u64) -> Box<dyn Space + '_> {
    let half = words.len() / 2;
    let (low, high) = words.split_at_mut(half);
    let low = BufferFrames::new(low, PhysAddr::from(pa as usize)).unwrap();
    let high = BufferFrames::new(high, PhysAddr::from(pa as usize + half * 8)).unwrap();
    Box::new(Pair::<L, U> {
        lower: One {
            pt: PageTable::new(low).unwrap(),
            flushes: vec![],
        },
        upper: One {
            pt: PageTable::new(high).unwrap(),
            flushes: vec![],
        },
    })
}

fn riscv<A: Arch>(
    name: &str,
    mode: u64,
    huge_extra: &[(&[u64], PageSize)],
    corrupt: bool,
) -> Result<(), String> {
    let entries = 1u64 << (A::VA_BITS - level_shift::<A>(root_depth::<A>()));
    let uart_va = va::<A>(&[entries - 1, 0x1fe], 0) & !0xfff;
    conform::<A, A>(
        &RISCV,
        name,
        &move |words, pa| {
            // satp: MODE and the root's PPN.
            let roots = Box::new(move |root: u64| (mode << 60 | root >> 12, 0));
            Box::new(Roots {
                inner: one::<A>(words, pa),
                roots,
            })
        },
        (0, 0),
        uart_va,
        3,
        entries - 3,
        huge_extra,
        corrupt,
    )
}

#[test]
fn qemu_sv39() {
    if qemu_available(RISCV.qemu) {
        riscv::<Sv39>("sv39", 8, &[], false).unwrap();
    }
}

#[test]
fn qemu_sv48() {
    if qemu_available(RISCV.qemu) {
        riscv::<Sv48>("sv48", 9, &[(&[5], PageSize::SIZE_512G)], false).unwrap();
    }
}

#[test]
fn qemu_sv57() {
    if qemu_available(RISCV.qemu) {
        riscv::<Sv57>(
            "sv57",
            10,
            &[
                (&[3, 0x0f7], PageSize::SIZE_512G),
                (&[5], PageSize::SIZE_256T),
            ],
            false,
        )
        .unwrap();
    }
}

#[test]
fn qemu_negative_control_sv48() {
    if qemu_available(RISCV.qemu) {
        let verdict = riscv::<Sv48>("sv48-corrupt", 9, &[], true);
        let err = verdict.expect_err("a leaf pointed at the wrong frame must fail the suite");
        assert!(err.contains("probe 0 (4K leaf, lower half"), "{err}");
        assert_eq!(
            err.lines().count(),
            1,
            "only the corrupted probe fails: {err}"
        );
    }
}

/// A space whose roots the guest wants in another form (RISC-V: satp with MODE; LoongArch: the
/// same root in PGDL and PGDH).
struct Roots<'a> {
    inner: Box<dyn Space + 'a>,
    roots: Box<dyn Fn(u64) -> (u64, u64)>,
}

impl Space for Roots<'_> {
    fn map_region(&mut self, va: u64, pa: u64, len: u64, flags: F) {
        self.inner.map_region(va, pa, len, flags);
    }
    fn map(&mut self, va: u64, pa: u64, size: PageSize, flags: F) {
        self.inner.map(va, pa, size, flags);
    }
    fn edit(&mut self, va: u64, edit: Edit) -> Result<(), PagingError> {
        self.inner.edit(va, edit)
    }
    fn roots(&self) -> (u64, u64) {
        (self.roots)(self.inner.roots().0)
    }
    fn memory(&self) -> Vec<u8> {
        self.inner.memory()
    }
    fn flushes(&mut self) -> Vec<FlushRec> {
        self.inner.flushes()
    }
    fn leaf_bits(&self, pa: u64, flags: F) -> u64 {
        self.inner.leaf_bits(pa, flags)
    }
}

const AARCH64: Platform = Platform {
    qemu: "qemu-system-aarch64",
    args: &["-M", "virt", "-cpu", "cortex-a57", "-m", "2G"],
    guest: "aarch64.elf",
    image_base: 0x4800_0000,
    identity: Some((0x4000_0000, 0x1000_0000)),
    uart_pa: 0x0900_0000,
    ret: &[0xc0, 0x03, 0x5f, 0xd6],
    // Cortex-A57 has no PAN: EL1 may read EL0 pages. The crate sets PXN on every user leaf.
    user_read_faults: false,
    user_exec_faults: true,
    nx_fetch_observable: true,
    write_only: false,
};

/// TCR_EL1 for both halves with `bits` of VA: TnSZ = 64 - bits, 4 KiB granules (TG0 0, TG1 2),
/// inner-shareable write-back walks, IPS 48 bits.
fn tcr(bits: u64) -> u64 {
    let half = |tsz: u64| tsz | 1 << 8 | 1 << 10 | 3 << 12;
    half(64 - bits) | half(64 - bits) << 16 | 2 << 30 | 5 << 32
}

fn aarch64<L: Arch, U: Arch>(name: &str, corrupt: bool) -> Result<(), String> {
    let entries = 1u64 << (L::VA_BITS - level_shift::<L>(root_depth::<L>()));
    let uart_va = va::<U>(&[entries - 1, 0x1fe], 0) & !0xfff;
    conform::<L, U>(
        &AARCH64,
        name,
        &|words, pa| pair::<L, U>(words, pa),
        (tcr(L::VA_BITS as u64), pagetable::arch::aarch64::MAIR),
        uart_va,
        3,
        entries - 3,
        &[],
        corrupt,
    )
}

#[test]
fn qemu_aarch64_48() {
    if qemu_available(AARCH64.qemu) {
        aarch64::<AArch64<Va48, Lower>, AArch64<Va48, Upper>>("aarch64-48", false).unwrap();
    }
}

#[test]
fn qemu_aarch64_39() {
    if qemu_available(AARCH64.qemu) {
        aarch64::<AArch64<Va39, Lower>, AArch64<Va39, Upper>>("aarch64-39", false).unwrap();
    }
}

#[test]
fn qemu_negative_control_aarch64() {
    if qemu_available(AARCH64.qemu) {
        let err = aarch64::<AArch64<Va48, Lower>, AArch64<Va48, Upper>>("aarch64-corrupt", true)
            .expect_err("a leaf pointed at the wrong frame must fail the suite");
        assert!(err.contains("probe 0 (4K leaf, lower half"), "{err}");
        assert_eq!(
            err.lines().count(),
            1,
            "only the corrupted probe fails: {err}"
        );
    }
}

/// `-cpu max`: the 16K and 64K granules (Cortex-A57 has no 16K granule).
const AARCH64_MAX: Platform = Platform {
    args: &["-M", "virt", "-cpu", "max", "-m", "2G"],
    ..AARCH64
};

/// TCR_EL1 for both halves with `bits` of VA and granule `2^shift`: TG0 (bits 14-15) 4K 0,
/// 64K 1, 16K 2; TG1 (bits 30-31) 16K 1, 4K 2, 64K 3.
fn tcr_granule(bits: u64, shift: u32) -> u64 {
    let (tg0, tg1) = match shift {
        12 => (0, 2),
        14 => (2, 1),
        _ => (1, 3),
    };
    (tcr(bits) & !(3 << 14 | 3 << 30)) | tg0 << 14 | tg1 << 30
}

/// Pages and blocks of a large granule in both halves, then edits on them: a page inside a
/// block unmapped (the block split into a table of pages), a page made read-only, a page
/// remapped. Expected values come from the plan, as in `build_with_hook`.
fn build_granule<A: Arch, B: Arch>(
    space: &mut dyn Space,
    p: &Platform,
    between: &mut dyn FnMut(&dyn Space),
) -> Scenario {
    let page = 1u64 << A::PAGE_SHIFT;
    let block = 1u64 << level_shift::<A>(2);
    let size = |shift| PageSize::from_shift(shift).unwrap();
    let data = p.image_base + DATA;
    assert_eq!(data % page, 0);
    let (r, rw, rx) = (F::READ, F::READ | F::WRITE, F::READ | F::EXECUTE);
    let (mut p1, mut p2) = (vec![], vec![]);
    let low = 0x1_0000_0000u64 + 5 * block;
    let up = unfold::<B>(0) + 3 * block;

    // Pages in both halves, VA and PA differing above the page offset.
    space.map(low + 3 * page, data + page, size(A::PAGE_SHIFT), rw);
    p1.push(read(
        low + 3 * page + 0x1238,
        data + page + 0x1238,
        "page, lower half",
    ));
    space.map(up + 7 * page, data + 2 * page, size(B::PAGE_SHIFT), r);
    p1.push(read(
        up + 7 * page + 0x2a8,
        data + 2 * page + 0x2a8,
        "page, upper half",
    ));
    p1.push(write(
        low + 3 * page + 0x40,
        0x5eed,
        true,
        "store through a writable page",
    ));
    p1.push(read_value(
        low + 3 * page + 0x40,
        0x5eed,
        "the store landed",
    ));
    p1.push(write(
        up + 7 * page,
        1,
        false,
        "store through a read-only page",
    ));

    // A block over the part of the image that holds the data area.
    let block_pa = data & !(block - 1);
    let vb = low + 8 * block;
    space.map(vb, block_pa, size(level_shift::<A>(2)), rw);
    let inside = data - block_pa;
    p1.push(read(vb + inside + 0x18, data + 0x18, "block"));
    p1.push(read(
        vb + inside + 4 * page + 8,
        data + 4 * page + 8,
        "block, a later page",
    ));

    // An executable page over the `ret` at DATA + 0x9000, and a fetch from a non-executable one.
    let ret = data + 0x9000;
    let code = ret & !(page - 1);
    space.map(low + 11 * page, code, size(A::PAGE_SHIFT), rx);
    p1.push(exec(
        low + 11 * page + (ret - code),
        true,
        "fetch from an executable page",
    ));
    p1.push(exec(
        low + 3 * page,
        false,
        "fetch from a non-executable page",
    ));

    between(space);
    space
        .edit(vb + inside + page, Edit::UnmapRegion(page))
        .unwrap();
    p2.push(fault(
        READ,
        vb + inside + page + 8,
        "a page cut out of the block",
    ));
    p2.push(read(
        vb + inside + 8,
        data + 8,
        "the block's page before it",
    ));
    p2.push(read(
        vb + inside + 2 * page,
        data + 2 * page,
        "the block's page after it",
    ));
    space.edit(low + 3 * page, Edit::Protect(r)).unwrap();
    p2.push(write(
        low + 3 * page + 0x40,
        2,
        false,
        "store after protect to read-only",
    ));
    space
        .edit(up + 7 * page, Edit::Remap(data + 3 * page))
        .unwrap();
    p2.push(read(
        up + 7 * page + 0x10,
        data + 3 * page + 0x10,
        "remapped page",
    ));
    Scenario { p1, p2 }
}

fn aarch64_granule<L: Arch, U: Arch>(name: &str) -> Result<(), String> {
    let uart_va = unfold::<U>(0) + (1 << level_shift::<U>(2));
    conform_with::<L>(
        &AARCH64_MAX,
        name,
        &|words, pa| pair::<L, U>(words, pa),
        (
            tcr_granule(L::VA_BITS as u64, L::PAGE_SHIFT),
            pagetable::arch::aarch64::MAIR,
        ),
        uart_va,
        &|space, hook| build_granule::<L, U>(space, &AARCH64_MAX, hook),
        false,
    )
}

#[test]
fn qemu_aarch64_16k_48() {
    if qemu_available(AARCH64.qemu) {
        type G = Granule16K;
        aarch64_granule::<AArch64<Va48, Lower, G>, AArch64<Va48, Upper, G>>("aarch64-16k-48")
            .unwrap();
    }
}

#[test]
fn qemu_aarch64_16k_36() {
    if qemu_available(AARCH64.qemu) {
        type G = Granule16K;
        aarch64_granule::<AArch64<Va36, Lower, G>, AArch64<Va36, Upper, G>>("aarch64-16k-36")
            .unwrap();
    }
}

#[test]
fn qemu_aarch64_64k_48() {
    if qemu_available(AARCH64.qemu) {
        type G = Granule64K;
        aarch64_granule::<AArch64<Va48, Lower, G>, AArch64<Va48, Upper, G>>("aarch64-64k-48")
            .unwrap();
    }
}

#[test]
fn qemu_aarch64_64k_42() {
    if qemu_available(AARCH64.qemu) {
        type G = Granule64K;
        aarch64_granule::<AArch64<Va42, Lower, G>, AArch64<Va42, Upper, G>>("aarch64-64k-42")
            .unwrap();
    }
}

const LOONGARCH: Platform = Platform {
    qemu: "qemu-system-loongarch64",
    args: &["-M", "virt", "-cpu", "la464", "-m", "1G"],
    guest: "loongarch64.elf",
    image_base: 0x0800_0000,
    // The guest runs in a direct-mapped window (DMW0); the tables hold only the test mappings.
    identity: None,
    uart_pa: 0x1fe0_01e0,
    ret: &[0x20, 0x00, 0x00, 0x4c],
    // PLV3 pages are accessible from PLV0 unless RPLV is set, which the crate leaves clear.
    user_read_faults: false,
    user_exec_faults: false,
    nx_fetch_observable: false,
    write_only: true,
};

fn loongarch(name: &str, corrupt: bool) -> Result<(), String> {
    type A = LoongArch64;
    let uart_va = va::<A>(&[511, 0x1fe], 0);
    conform::<A, A>(
        &LOONGARCH,
        name,
        &|words, pa| {
            // One table serves both halves, through PGDL and PGDH.
            Box::new(Roots {
                inner: one::<A>(words, pa),
                roots: Box::new(|root| (root, root)),
            })
        },
        (
            pagetable::arch::loongarch64::PWCL as u64,
            pagetable::arch::loongarch64::PWCH as u64,
        ),
        uart_va,
        3,
        509,
        &[],
        corrupt,
    )
}

#[test]
fn qemu_loongarch64() {
    if qemu_available(LOONGARCH.qemu) {
        loongarch("loongarch64", false).unwrap();
    }
}

#[test]
fn qemu_negative_control_loongarch64() {
    if qemu_available(LOONGARCH.qemu) {
        let err = loongarch("loongarch64-corrupt", true)
            .expect_err("a leaf pointed at the wrong frame must fail the suite");
        assert!(err.contains("probe 0 (4K leaf, lower half"), "{err}");
        assert_eq!(
            err.lines().count(),
            1,
            "only the corrupted probe fails: {err}"
        );
    }
}

const X86: Platform = Platform {
    qemu: "qemu-system-x86_64",
    args: &["-M", "q35", "-cpu", "max", "-m", "2G"],
    guest: "x86_64.elf",
    image_base: 0x0800_0000,
    identity: Some((0, 0x1000_0000)),
    // COM1 is port I/O and does not go through the tables; the local APIC's page stands for
    // the device mapping.
    uart_pa: 0xfee0_0000,
    ret: &[0xc3],
    // CR4.SMAP and SMEP are left clear: the supervisor may read and fetch user pages.
    user_read_faults: false,
    user_exec_faults: false,
    nx_fetch_observable: true,
    write_only: false,
};

fn x86<A: Arch>(name: &str, la57: bool, corrupt: bool) -> Result<(), String> {
    let entries = 512;
    let uart_va = va::<A>(&[entries - 1, 0x1fe], 0);
    conform::<A, A>(
        &X86,
        name,
        &|words, pa| one::<A>(words, pa),
        (la57 as u64, pagetable::arch::x86_64::PAT),
        uart_va,
        3,
        entries - 3,
        &[],
        corrupt,
    )
}

#[test]
fn qemu_x86_64() {
    if qemu_available(X86.qemu) {
        x86::<X86_64>("x86_64", false, false).unwrap();
    }
}

#[test]
fn qemu_x86_64_la57() {
    if qemu_available(X86.qemu) {
        x86::<X86_64La57>("x86_64-la57", true, false).unwrap();
    }
}

#[test]
fn qemu_negative_control_x86_64() {
    if qemu_available(X86.qemu) {
        let err = x86::<X86_64>("x86_64-corrupt", false, true)
            .expect_err("a leaf pointed at the wrong frame must fail the suite");
        assert!(err.contains("probe 0 (4K leaf, lower half"), "{err}");
        assert_eq!(
            err.lines().count(),
            1,
            "only the corrupted probe fails: {err}"
        );
    }
}
