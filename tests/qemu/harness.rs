//! The harness: the image a guest boots with, the probes, the spaces of tables the host builds,
//! running QEMU and checking what the guest printed.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use pagetable::{
    Arch, BufferFrames, Descriptor, Flush, HugePages, L1, MappingFlags as F, PageSize, PageTable,
    PagingError, PhysAddr,
};

pub const MAGIC: u64 = 0x7061_6765_7461_626c;
pub const MIB: u64 = 1 << 20;
/// Image layout, as offsets from the image base.
pub const LISTS: u64 = 0x1000;
pub const TABLES: u64 = MIB;
pub const TABLES_LEN: u64 = 4 * MIB;
pub const DATA: u64 = 6 * MIB;
pub const DATA_LEN: u64 = 2 * MIB;
pub const IMAGE_LEN: u64 = DATA + DATA_LEN;

/// What every word of the data area holds: its own physical address, tagged.
pub fn pattern(pa: u64) -> u64 {
    pa ^ 0xda7a_0000_0000_0000
}

/// How one architecture's guest runs.
pub struct Platform {
    pub qemu: &'static str,
    pub args: &'static [&'static str],
    pub guest: &'static str,
    pub image_base: u64,
    /// The guest's own code, stack and the image: identity-mapped by the crate's tables (not on
    /// LoongArch, whose guest runs in a direct-mapped window).
    pub identity: Option<(u64, u64)>,
    pub uart_pa: u64,
    /// A `ret` instruction.
    pub ret: &'static [u8],
    /// Whether a supervisor read of a user page faults, and a supervisor fetch from one.
    pub user_read_faults: bool,
    pub user_exec_faults: bool,
    /// Whether a fetch from a no-execute page can be observed. QEMU 10.0 cannot deliver
    /// LoongArch's PNX: it re-reads the faulting instruction for BADI, faults again, forever.
    pub nx_fetch_observable: bool,
    /// Whether the mode can map a page write-only (LoongArch, with NR; AArch64 stage 2).
    pub write_only: bool,
    /// Whether the mode can map a page execute-only (RISC-V, AArch64 stage 2).
    pub exec_only: bool,
    /// Whether the tables are a second stage, behind a guest whose own translation is off:
    /// no user or global pages there.
    pub stage2: bool,
}

/// Probe kinds the guests know.
pub const READ: u64 = 1;
pub const WRITE: u64 = 2;
pub const EXEC: u64 = 3;

#[derive(Clone, Debug)]
pub struct Probe {
    pub kind: u64,
    pub va: u64,
    pub value: u64,
    /// The line the guest must print.
    pub expect: String,
    pub what: &'static str,
}

pub fn read(va: u64, pa: u64, what: &'static str) -> Probe {
    Probe {
        kind: READ,
        va,
        value: 0,
        expect: format!("{:016x}", pattern(pa)),
        what,
    }
}
pub fn read_value(va: u64, value: u64, what: &'static str) -> Probe {
    Probe {
        kind: READ,
        va,
        value: 0,
        expect: format!("{value:016x}"),
        what,
    }
}
pub fn write(va: u64, value: u64, ok: bool, what: &'static str) -> Probe {
    Probe {
        kind: WRITE,
        va,
        value,
        expect: if ok { "OK".into() } else { "FAULT".into() },
        what,
    }
}
pub fn exec(va: u64, ok: bool, what: &'static str) -> Probe {
    Probe {
        kind: EXEC,
        va,
        value: 0,
        expect: if ok { "OK".into() } else { "FAULT".into() },
        what,
    }
}
pub fn fault(kind: u64, va: u64, what: &'static str) -> Probe {
    Probe {
        kind,
        va,
        value: 0,
        expect: "FAULT".into(),
        what,
    }
}

/// A flush a token asked for.
pub enum FlushRec {
    All,
    Pages(u64, u64),
}

pub fn record<A: Arch>(flush: Flush<A>, into: &mut Vec<FlushRec>) {
    if flush.is_all() {
        into.push(FlushRec::All);
    } else if let Some((va, len)) = flush.va_range() {
        into.push(FlushRec::Pages(
            Into::<usize>::into(va) as u64,
            len as u64 / 4096,
        ));
    }
    flush.ignore();
}

/// The tables of one mode: one table, or (AArch64) a TTBR0 table and a TTBR1 table.
pub trait Space {
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
pub enum Edit {
    Unmap,
    Protect(F),
    ProtectRegion(u64, F),
    Remap(u64),
    UnmapRegion(u64),
}

pub fn apply<A: Arch>(
    pt: &mut PageTable<A, BufferFrames<'_>>,
    va: u64,
    edit: Edit,
    flushes: &mut Vec<FlushRec>,
) -> Result<(), PagingError> {
    let v = A::Addr::from(va as usize);
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

pub struct One<'a, A: Arch> {
    pub pt: PageTable<A, BufferFrames<'a>>,
    pub flushes: Vec<FlushRec>,
}

impl<A: Arch> Space for One<'_, A> {
    fn map_region(&mut self, va: u64, pa: u64, len: u64, flags: F) {
        let f = self.pt.map_region(
            A::Addr::from(va as usize),
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
            A::Addr::from(va as usize),
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
pub struct Pair<'a, L: Arch, U: Arch> {
    pub lower: One<'a, L>,
    pub upper: One<'a, U>,
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

pub struct Scenario {
    pub p1: Vec<Probe>,
    pub p2: Vec<Probe>,
}

/// What the guest loads into its MMU registers.
pub struct Boot {
    pub roots: (u64, u64),
    pub regs: (u64, u64),
    pub uart_va: u64,
}

/// Writes the image and the control block: tables as before the edits, the edits as patches.
pub fn image(
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
pub fn qemu_available(bin: &str) -> bool {
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
pub fn run_guest(p: &Platform, name: &str, img: &[u8]) -> Result<Vec<String>, String> {
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
pub fn check(s: &Scenario, lines: &[String]) -> Result<(), String> {
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
pub type MakeSpace = dyn for<'a> Fn(&'a mut [u64], u64) -> Box<dyn Space + 'a>;

/// The probes of a scenario, mapped into a space; the hook sees the space between the phases.
pub type Build<'b> = dyn Fn(&mut dyn Space, &mut dyn FnMut(&dyn Space)) -> Scenario + 'b;

/// [`conform`] with any scenario; `A` is the mode of the lower half, whose granule the guest's
/// own mappings use.
pub fn conform_with<A: Arch>(
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
    // Stage 1 maps the guest's own pages global; a second stage has no such notion.
    let global = if p.stage2 { F::EMPTY } else { F::GLOBAL };
    if let Some((pa, len)) = p.identity {
        space.map_region(pa, pa, len, F::READ | F::WRITE | F::EXECUTE | global);
    }
    // The UART's page, as device memory; the guest gets the address of its registers.
    space.map(
        uart_va,
        p.uart_pa & !(page - 1),
        PageSize::from_shift(A::PAGE_SHIFT).unwrap(),
        F::READ | F::WRITE | F::DEVICE | global,
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

pub fn one<A: Arch>(words: &mut [u64], pa: u64) -> Box<dyn Space + '_> {
    let frames = BufferFrames::new(words, PhysAddr::from(pa as usize)).unwrap();
    Box::new(One::<A> {
        pt: PageTable::new(frames).unwrap(),
        flushes: vec![],
    })
}

pub fn pair<L: Arch, U: Arch>(words: &mut [u64], pa: u64) -> Box<dyn Space + '_> {
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

/// A space whose roots the guest wants in another form (RISC-V: satp with MODE; LoongArch: the
/// same root in PGDL and PGDH).
pub struct Roots<'a> {
    pub inner: Box<dyn Space + 'a>,
    pub roots: Box<dyn Fn(u64) -> (u64, u64)>,
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
