//! The Rust guest kernels of `guests/rust`: the crate running on the CPU it is for, editing the
//! tables that CPU walks. Each guest is built from source for its bare-metal target with
//! Debian's `rustc-web` and `ld.lld` (`scripts/cross` installs both), run under QEMU, and must
//! report every check of its plan as ok; a missing check, a `FAIL` line or no `DONE` fails.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::harness::qemu_available;

/// What every guest checks, in order: each line must come back as `guest: ok <check>`.
/// `BREAK` and `ACCESS` are checked where the architecture has them (see [`plan`]).
const PLAN: &[&str] = &[
    "MMU on with tables the crate built",
    "an unmapped page faults",
    "a page mapped live reads its frame",
    "and takes a store",
    "made read-only but not flushed, a store still goes through",
    "flushed, it refuses a store",
    "and still reads",
    "remapped live, it reads the new frame",
    "a page mapped executable runs",
    NX,
    "and it still reads",
    MEM_TYPES,
    "made inaccessible (PROT_NONE), a load faults as not present; the leaf keeps its frame and flags",
    "made accessible again, it reads its data",
    "a marker faults as not present, and lookup reads its payload back",
    "swapped back in (take_marker, map), it reads its data",
    "with every software bit set, the page reads as before and still refuses a store",
    "demand paging: each first store faults once, the handler maps a page, the store completes",
    "the stores read back, on zeroed pages, with no further fault",
    "a 2 MiB block split live keeps every page's data",
    "the page made read-only in it refuses a store, its neighbours take one",
    BREAK,
    ACCESS[0],
    ACCESS[1],
    SOFT_DIRTY,
    "a process table that borrows the kernel half runs the kernel and its own page",
    "a page the kernel maps in its half is seen from the process",
    "unmapped by the kernel, it faults from the process; its tables were freed after the flush",
    "back on the kernel table, the process page is not mapped",
    "the process table, dropped, frees its own tables and none of the kernel's",
    "two address spaces under identifiers 1 and 2, switched without a flush, each read their own frame",
    "a change to a switched-out space, flushed under its identifier, is seen when it runs again",
    "a stale entry of the running space is gone after its own tagged flush, kept across the other's",
    SMP[0],
    SMP_MARKS,
    SMP[1],
    SMP[2],
    SMP[3],
    "the emptied tables wait for the flush",
    "and are freed, and scribbled over, after it",
    "unmapped, the page faults again",
    "the rest of RAM still reads",
];

/// A fetch from a no-execute page: not on LoongArch, whose exception QEMU 10 cannot deliver.
const NX: &str = "made non-executable, a fetch faults";
/// The guest's MAIR layout (0 device, 1 normal: not the crate's default) seen through the
/// CPU: AArch64 only, where QEMU faults an unaligned access to device memory.
const MEM_TYPES: &str = "mapped normal under the kernel's MAIR layout, an unaligned load reads; mapped device, it takes an alignment fault";
/// Break-before-make made visible: AArch64 only (elsewhere a split needs no break).
const BREAK: &str = "the split broke the block first: in break_flush, a load from it faults";
/// Accessed and dirty marks set by the MMU: where the hardware manages them.
const ACCESS: [&str; 2] = [
    "cleared, no page is reported accessed or dirty",
    "every store the CPU made is reported dirty once, every page only read clean",
];

/// Dirty marks kept by software, through the crate: where the hardware keeps none.
const SOFT_DIRTY: &str = "software dirty marks: a clean page's first store faults once, the handler marks it dirty through the crate, the store completes";

/// With more than one CPU: the other CPUs touch pages while the boot CPU edits.
const SMP: [&str; 4] = [
    "the other CPUs come up on the kernel's tables",
    "protect_region under stores on the other CPUs: after the flush, no CPU's store goes through",
    "a block split live under reads on the other CPUs: every read saw its data",
    "after the split, the read-only page refuses a store on every CPU, its neighbour takes one",
];
/// With more than one CPU and hardware-managed A/D.
const SMP_MARKS: &str = "no dirty mark is lost under stores on the other CPUs: every page's \
                         contents are what the write-back after its last dirty report saw";

/// What every hypervisor checks, in order: the guest's stage 2 edited while the guest runs.
const HYP_PLAN: &[&str] = &[
    "stage 2 on with the crate's table: the guest runs on it",
    "the guest's first store to each of 8 unmapped pages exits, the hypervisor maps the page, the store completes",
    "the guest reads its stores back, with no further exit",
    HYP_PROTECT,
    "remapped to another frame, the guest reads the new frame",
    "code mapped executable runs in the guest; made non-executable, its fetch exits",
    "unmapped while the guest runs, its load exits again; emptied tables are freed only after the flush",
];
/// The AArch64 hypervisor's own translation, before the plan: EL2 (without VHE) on a table
/// of the crate's.
const EL2_OWN: &str = "EL2's own MMU on a table the crate built (AArch64<Va48, El2>): a page remapped live reads its new frame; unmapped, it reads until the crate's TLBI VAE2IS, then faults";
/// Started at EL3: the secure firmware's checks, before the hypervisor's.
const EL3_PLAN: &[&str] = &[
    "EL3's MMU on a table the crate built (AArch64<Va48, El3>): the firmware runs on it",
    "at EL3, a page remapped live reads its new frame; unmapped, it reads until the crate's TLBI VAE3IS, then faults",
    "secure-only RAM reads through a secure leaf and faults through a NON_SECURE one (NS bit 5)",
];
const HYP_PROTECT: &str =
    "made read-only in stage 2 while the guest runs, the guest's store exits and its load works";

/// The plan of a guest: every check, less those its architecture does not have.
fn plan(g: &Guest) -> Vec<&'static str> {
    PLAN.iter()
        .copied()
        .filter(|&c| {
            (g.nx || c != NX)
                && (g.arch == "aarch64" || c != MEM_TYPES)
                && (g.breaks || c != BREAK)
                && (g.access || !ACCESS.contains(&c))
                && (!g.access || c != SOFT_DIRTY)
                && (g.cpus > 1 || !SMP.contains(&c))
                && (g.cpus > 1 && g.access || c != SMP_MARKS)
        })
        .collect()
}

/// Debian's toolchain for bare-metal builds: the `ld.lld` of rustc's LLVM, if it is all there.
fn toolchain() -> Option<String> {
    let llvm = Command::new("/usr/bin/rustc")
        .arg("-vV")
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            let line = text
                .lines()
                .find(|l| l.starts_with("LLVM version: "))?
                .to_owned();
            line["LLVM version: ".len()..]
                .split('.')
                .next()
                .map(str::to_owned)
        });
    let lld = llvm.map(|major| format!("ld.lld-{major}"));
    let ok = lld.as_ref().is_some_and(|lld| {
        Command::new(lld)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }) && Path::new("/usr/bin/cargo").exists()
        && Path::new("/usr/lib/rustlib/src/rust/library/core").exists();
    if !ok {
        let why = "Debian's rustc-web, cargo-web, rust-web-src or the matching ld.lld is missing; \
                   scripts/cross installs them";
        if std::env::var_os("PAGETABLE_REQUIRE_QEMU").is_some() {
            panic!("the Rust guests are required here: {why}");
        }
        eprintln!("NOTE: the Rust guests did NOT run: {why}.");
        return None;
    }
    lld
}

/// One architecture's guest: how it is built and run, and which checks it has.
struct Guest {
    arch: &'static str,
    /// `pagetable-guest` (the kernel, stage 1) or `pagetable-hyp` (the hypervisor, stage 2).
    bin: &'static str,
    target: &'static str,
    script: &'static str,
    rustflags: &'static str,
    /// QEMU's multiboot loader takes ELF32 only (x86): the same image, in a 32-bit container.
    elf32: bool,
    qemu: &'static str,
    machine: &'static [&'static str],
    nx: bool,
    breaks: bool,
    access: bool,
    /// CPUs the guest runs on (`-smp`, with multi-threaded TCG).
    cpus: usize,
}

const AARCH64: Guest = Guest {
    bin: "pagetable-guest",
    arch: "aarch64",
    target: "aarch64-unknown-none-softfloat",
    script: "aarch64.ld",
    rustflags: "",
    elf32: false,
    qemu: "qemu-system-aarch64",
    // `-cpu max`: FEAT_HAFDBS, so the MMU sets the access flag and dirty state itself.
    machine: &["-M", "virt", "-cpu", "max"],
    nx: true,
    breaks: true,
    access: true,
    cpus: 4,
};

const RISCV64: Guest = Guest {
    bin: "pagetable-guest",
    arch: "riscv64",
    target: "riscv64imac-unknown-none-elf",
    script: "riscv64.ld",
    rustflags: "",
    elf32: false,
    qemu: "qemu-system-riscv64",
    // Svadu: the MMU sets A and D itself; Svpbmt: the console's device type.
    machine: &[
        "-M",
        "virt",
        "-bios",
        "none",
        "-cpu",
        "rv64,svadu=true,svpbmt=true",
    ],
    nx: true,
    breaks: false,
    access: true,
    cpus: 4,
};

const X86_64: Guest = Guest {
    bin: "pagetable-guest",
    arch: "x86_64",
    target: "x86_64-unknown-none",
    script: "x86_64.ld",
    rustflags: "-C relocation-model=static",
    elf32: true,
    qemu: "qemu-system-x86_64",
    machine: &["-M", "q35", "-cpu", "max"],
    nx: true,
    breaks: false,
    access: true,
    cpus: 4,
};

const LOONGARCH64: Guest = Guest {
    bin: "pagetable-guest",
    arch: "loongarch64",
    target: "loongarch64-unknown-none-softfloat",
    script: "loongarch64.ld",
    rustflags: "",
    elf32: false,
    qemu: "qemu-system-loongarch64",
    machine: &["-M", "virt", "-cpu", "la464", "-m", "1G"],
    nx: false,
    breaks: false,
    access: false,
    cpus: 4,
};

/// The AArch64 hypervisor at EL2, its guest at EL1 on the crate's stage 2 (40-bit IPA).
const AARCH64_HYP: Guest = Guest {
    arch: "aarch64-el2",
    bin: "pagetable-hyp",
    machine: &["-M", "virt,virtualization=on", "-cpu", "max"],
    cpus: 1,
    ..AARCH64
};

/// The same hypervisor started at EL3 (`secure=on`, loaded as firmware with QEMU's generic
/// loader, so the CPU starts in its reset state): its EL3 checks, then down to EL2.
const AARCH64_EL3: Guest = Guest {
    arch: "aarch64-el3",
    machine: &["-M", "virt,virtualization=on,secure=on", "-cpu", "max"],
    ..AARCH64_HYP
};

/// The RISC-V hypervisor in HS-mode, its guest in VS-mode on the crate's Sv39x4 G-stage.
const RISCV64_HYP: Guest = Guest {
    arch: "riscv64-hs",
    bin: "pagetable-hyp",
    machine: &[
        "-M",
        "virt",
        "-bios",
        "none",
        "-cpu",
        "rv64,h=true,svpbmt=true",
    ],
    cpus: 1,
    ..RISCV64
};

impl Guest {
    /// Builds the guest in `dir` (a copy of the crate's `guests/rust`, or that itself) into
    /// `out`, with `lld`; the kernel's path, ready for QEMU.
    fn build(&self, dir: &Path, bin: &str, out: &Path, lld: &str) -> PathBuf {
        let linker_var = format!(
            "CARGO_TARGET_{}_LINKER",
            self.target.to_uppercase().replace('-', "_")
        );
        let status = Command::new("/usr/bin/cargo")
            .current_dir(dir)
            .args(["build", "--quiet", "--release", "--target", self.target])
            .args(["--bin", bin])
            .args([
                "-Zbuild-std=core",
                "-Zbuild-std-features=compiler-builtins-mem",
            ])
            .arg("--target-dir")
            .arg(out)
            .env("RUSTC", "/usr/bin/rustc")
            .env("RUSTC_BOOTSTRAP", "1")
            .env(linker_var, lld)
            .env(
                "RUSTFLAGS",
                format!(
                    "-D warnings -C link-arg=-T{} {}",
                    self.script, self.rustflags
                ),
            )
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("RUSTC_WRAPPER")
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("CARGO_BUILD_TARGET")
            .status()
            .expect("running Debian's cargo");
        assert!(status.success(), "the {} guest did not build", self.arch);
        let elf = out.join(self.target).join("release").join(bin);
        if !self.elf32 {
            return elf;
        }
        let kernel = elf.with_extension("elf32");
        let status = Command::new("objcopy")
            .args(["-O", "elf32-i386"])
            .arg(&elf)
            .arg(&kernel)
            .status()
            .expect("running binutils' objcopy");
        assert!(status.success(), "objcopy to ELF32 failed");
        kernel
    }

    /// Builds the guest against the crate as it is and runs it: every check of its plan must
    /// come back ok.
    fn passes_its_plan(&self) {
        if !qemu_available(self.qemu) {
            return;
        }
        let Some(lld) = toolchain() else { return };
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let kernel = self.build(
            &root.join("guests/rust"),
            self.bin,
            &root.join("target/rust-guests"),
            &lld,
        );
        let (lines, done) = run(self.qemu, self.machine, self.cpus, &kernel);
        assert!(done, "{} guest: no DONE; it printed {lines:#?}", self.arch);
        let plan = if self.bin == "pagetable-hyp" {
            let mut plan = vec![];
            if self.machine.iter().any(|m| m.contains("secure=on")) {
                plan.extend_from_slice(EL3_PLAN);
            }
            if self.target.starts_with("aarch64") {
                plan.push(EL2_OWN);
            }
            plan.extend_from_slice(HYP_PLAN);
            plan
        } else {
            plan(self)
        };
        assert_plan(self.arch, &plan, &lines);
    }

    /// Negative control: builds the guest against a copy of the crate and the guest in which
    /// `needle`, found exactly once in `file` (relative to the crate's root), is replaced by
    /// `with` (a flush, a break or a shootdown taken out), runs it, and wants the guest to
    /// report `check` as failed.
    fn fails_without(&self, name: &str, file: &str, needle: &str, with: &str, check: &str) {
        if !qemu_available(self.qemu) {
            return;
        }
        let Some(lld) = toolchain() else { return };
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let copy = root.join("target/mutants").join(name);
        let _ = std::fs::remove_dir_all(&copy);
        copy_tree(&root.join("src"), &copy.join("src"));
        copy_tree(&root.join("guests/rust/src"), &copy.join("guests/rust/src"));
        // The guest's binaries renamed after the mutant: it builds in the same target directory
        // as the real guests (sharing their `core`), and its kernel lands beside theirs, not
        // over them.
        let mutant = format!("{name}-{}", self.bin);
        let guest_manifest = std::fs::read_to_string(root.join("guests/rust/Cargo.toml"))
            .expect("the guest's Cargo.toml")
            .replace(
                &format!("name = \"{}\"", self.bin),
                &format!("name = \"{mutant}\""),
            );
        std::fs::create_dir_all(copy.join("guests/rust")).expect("creating the copy");
        std::fs::write(copy.join("guests/rust/Cargo.toml"), guest_manifest)
            .expect("writing the guest's Cargo.toml");
        for f in ["Cargo.lock", self.script] {
            std::fs::copy(
                root.join("guests/rust").join(f),
                copy.join("guests/rust").join(f),
            )
            .expect("copying the guest");
        }
        // The crate's manifest, without its benchmarks (not copied, not needed).
        let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
        let manifest = manifest.replace("[[bench]]\nname = \"paging\"\nharness = false\n", "");
        std::fs::write(copy.join("Cargo.toml"), manifest).expect("writing Cargo.toml");
        let path = copy.join(file);
        let source = std::fs::read_to_string(&path).expect("the file to mutate");
        assert_eq!(
            source.matches(needle).count(),
            1,
            "{name}: `{needle}` must occur exactly once in {file}"
        );
        std::fs::write(&path, source.replace(needle, with)).expect("writing the mutant");
        let kernel = self.build(
            &copy.join("guests/rust"),
            &mutant,
            &root.join("target/rust-guests"),
            &lld,
        );
        let (lines, _) = run(self.qemu, self.machine, self.cpus, &kernel);
        let want = format!("guest: FAIL {check}");
        assert!(
            lines.contains(&want),
            "{name}: the {} guest did not notice; it printed {lines:#?}",
            self.arch
        );
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("creating a directory");
    for entry in std::fs::read_dir(from).expect("reading a directory") {
        let entry = entry.expect("a directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("a file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copying a file");
        }
    }
}

/// Runs `kernel` under `qemu` and returns what it printed up to `DONE`, and whether `DONE` came
/// (within a minute of silence).
fn run(qemu: &str, machine: &[&str], cpus: usize, kernel: &Path) -> (Vec<String>, bool) {
    let mut child = Command::new(qemu)
        .args(machine)
        .args(["-smp", &cpus.to_string(), "-accel", "tcg,thread=multi"])
        .args([
            "-display",
            "none",
            "-serial",
            "stdio",
            "-monitor",
            "none",
            "-no-reboot",
        ])
        // `secure=on`: loaded as firmware, so the CPU starts at EL3 (`-kernel` would start it
        // at EL2, as a boot loader would).
        .args(if machine.iter().any(|m| m.contains("secure=on")) {
            vec![
                "-device".to_string(),
                format!("loader,file={},cpu-num=0", kernel.display()),
            ]
        } else {
            vec!["-kernel".to_string(), kernel.display().to_string()]
        })
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting QEMU");
    let stdout = child.stdout.take().expect("QEMU's stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = vec![];
    let done = loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) if line == "DONE" => break true,
            Ok(line) => lines.push(line),
            Err(_) => break false,
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    (lines, done)
}

/// Every check of the plan came back ok, and nothing failed.
fn assert_plan(arch: &str, plan: &[&str], lines: &[String]) {
    // Figures the guest measured (stores, marks, spurious faults): shown, not checked here.
    for line in lines.iter().filter(|l| l.starts_with("guest: info ")) {
        eprintln!("{arch}: {line}");
    }
    let lines: Vec<&String> = lines
        .iter()
        .filter(|l| !l.starts_with("guest: info "))
        .collect();
    let failed: Vec<_> = lines
        .iter()
        .filter(|l| !l.starts_with("guest: ok "))
        .collect();
    assert!(
        failed.is_empty(),
        "{arch} guest: {failed:#?}\nall: {lines:#?}"
    );
    let want: Vec<String> = plan.iter().map(|c| format!("guest: ok {c}")).collect();
    let want: Vec<&String> = want.iter().collect();
    assert_eq!(lines, want, "{arch} guest: not its plan");
}

#[test]
fn rust_guest_aarch64_edits_the_tables_its_own_cpu_walks() {
    AARCH64.passes_its_plan();
}

#[test]
fn rust_guest_riscv64_edits_the_tables_its_own_cpu_walks() {
    RISCV64.passes_its_plan();
}

#[test]
fn rust_guest_x86_64_edits_the_tables_its_own_cpu_walks() {
    X86_64.passes_its_plan();
}

#[test]
fn rust_guest_loongarch64_edits_the_tables_its_own_cpu_walks() {
    LOONGARCH64.passes_its_plan();
}

// Negative controls: the same guests against a crate with one flush or one break taken out.
// Each must fail the check that shows it.

const REFUSES: &str = "flushed, it refuses a store";

#[test]
fn rust_guest_aarch64_fails_without_the_crates_tlbi() {
    AARCH64.fails_without(
        "aarch64-no-tlbi",
        "src/arch/aarch64.rs",
        "\"tlbi vaae1is, {page}\",",
        "\"orr xzr, xzr, {page}\",",
        REFUSES,
    );
}

#[test]
fn rust_guest_aarch64_fails_without_the_break_of_a_split() {
    AARCH64.fails_without(
        "aarch64-no-break",
        "src/levels/walk/edit.rs",
        "if stash.breaking::<A, L>(pte, entry) {",
        "if false && stash.breaking::<A, L>(pte, entry) {",
        BREAK,
    );
}

#[test]
fn rust_guest_riscv64_fails_without_the_crates_sfence() {
    RISCV64.fails_without(
        "riscv64-no-sfence",
        "src/arch/riscv.rs",
        "\"sfence.vma {}, zero\"",
        "\"add zero, zero, {}\"",
        REFUSES,
    );
}

#[test]
fn rust_guest_x86_64_fails_without_the_crates_invlpg() {
    X86_64.fails_without(
        "x86_64-no-invlpg",
        "src/arch/x86_64.rs",
        "\"invlpg [{}]\"",
        "\"/* {} */\"",
        REFUSES,
    );
}

#[test]
fn rust_guest_loongarch64_fails_without_the_crates_invtlb() {
    LOONGARCH64.fails_without(
        "loongarch64-no-invtlb",
        "src/arch/loongarch64.rs",
        "\"invtlb 0x6, {asid}, {va}\",",
        "\"or $zero, {asid}, {va}\",",
        // The TLB keeps the invalid entry the refill loaded before the map: even a new page
        // needs its flush here.
        "a page mapped live reads its frame",
    );
}

// The shootdown is the kernel's, not the crate's: where invalidation is local, a guest whose
// shootdown handler does not invalidate must fail the checks made on the other CPUs.

const NO_CPU_STORES: &str =
    "protect_region under stores on the other CPUs: after the flush, no CPU's store goes through";

#[test]
fn rust_guest_riscv64_fails_without_its_shootdown() {
    RISCV64.fails_without(
        "riscv64-no-shootdown",
        "guests/rust/src/arch/riscv64.rs",
        "    \"    sfence.vma\",\n    \"    la t1, shootdown_acks\",",
        "    \"    la t1, shootdown_acks\",",
        NO_CPU_STORES,
    );
}

#[test]
fn rust_guest_x86_64_fails_without_its_shootdown() {
    X86_64.fails_without(
        "x86_64-no-shootdown",
        "guests/rust/src/arch/x86_64.rs",
        "\"    movq %rax, %cr3\",\n    \"    lock incq",
        "\"    lock incq",
        NO_CPU_STORES,
    );
}

#[test]
fn rust_guest_loongarch64_fails_without_its_shootdown() {
    LOONGARCH64.fails_without(
        "loongarch64-no-shootdown",
        "guests/rust/src/arch/loongarch64.rs",
        "\"dbar 0\", \"invtlb 0x0, $zero, $zero\")",
        "\"dbar 0\")",
        NO_CPU_STORES,
    );
}

#[test]
fn rust_hypervisor_aarch64_edits_the_stage_2_its_guest_runs_on() {
    AARCH64_HYP.passes_its_plan();
}

#[test]
fn rust_firmware_aarch64_runs_on_an_el3_table_then_the_hypervisor_at_el2() {
    AARCH64_EL3.passes_its_plan();
}

#[test]
fn rust_hypervisor_riscv64_edits_the_g_stage_its_guest_runs_on() {
    RISCV64_HYP.passes_its_plan();
}

#[test]
fn rust_hypervisor_aarch64_fails_without_the_crates_stage_2_tlbi() {
    AARCH64_HYP.fails_without(
        "aarch64-s2-no-tlbi",
        "src/arch/aarch64_s2.rs",
        // The tagged flush the guest's table (VMID 1) takes: by IPA, then the combined entries.
        "\"tlbi ipas2e1is, {}\", in(reg) ipa, options(nostack, preserves_flags));\n                }\n                core::arch::asm!(\n                    \"dsb ish\",\n                    \"tlbi vmalle1is\",",
        "\"orr xzr, xzr, {}\", in(reg) ipa, options(nostack, preserves_flags));\n                }\n                core::arch::asm!(\n                    \"dsb ish\",",
        HYP_PROTECT,
    );
}

// No such control for the RISC-V G-stage: QEMU flushes a hart's TLB on every change of
// virtualization mode, so the guest's exit to the hypervisor and the return already drop what
// a missing `hfence.gvma` would leave (tried: with it taken out, every check still passes).
