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
    "demand paging: each first store faults once, the handler maps a page, the store completes",
    "the stores read back, on zeroed pages, with no further fault",
    "a 2 MiB block split live keeps every page's data",
    "the page made read-only in it refuses a store, its neighbours take one",
    BREAK,
    ACCESS[0],
    ACCESS[1],
    "a process table that borrows the kernel half runs the kernel and its own page",
    "a page the kernel maps in its half is seen from the process",
    "unmapped by the kernel, it faults from the process; its tables were freed after the flush",
    "back on the kernel table, the process page is not mapped",
    "the process table, dropped, frees its own tables and none of the kernel's",
    "the emptied tables wait for the flush",
    "and are freed, and scribbled over, after it",
    "unmapped, the page faults again",
    "the rest of RAM still reads",
];

/// A fetch from a no-execute page: not on LoongArch, whose exception QEMU 10 cannot deliver.
const NX: &str = "made non-executable, a fetch faults";
/// Break-before-make made visible: AArch64 only (elsewhere a split needs no break).
const BREAK: &str = "the split broke the block first: in break_flush, a load from it faults";
/// Accessed and dirty marks set by the MMU: where the hardware manages them.
const ACCESS: [&str; 2] = [
    "cleared, no page is reported accessed or dirty",
    "every store the CPU made is reported dirty once, every page only read clean",
];

/// The plan of a guest: every check, less those its architecture does not have.
fn plan(nx: bool, breaks: bool, access: bool) -> Vec<&'static str> {
    PLAN.iter()
        .copied()
        .filter(|&c| (nx || c != NX) && (breaks || c != BREAK) && (access || !ACCESS.contains(&c)))
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

/// Builds the guest for `target`, linked by `lld` with `script` (and `flags` added to the
/// compiler's); the kernel's path.
fn build(target: &str, lld: &str, script: &str, flags: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("guests/rust");
    let out = root.join("target/rust-guests");
    let linker_var = format!(
        "CARGO_TARGET_{}_LINKER",
        target.to_uppercase().replace('-', "_")
    );
    let status = Command::new("/usr/bin/cargo")
        .current_dir(&dir)
        .args(["build", "--quiet", "--release", "--target", target])
        .args([
            "-Zbuild-std=core",
            "-Zbuild-std-features=compiler-builtins-mem",
        ])
        .arg("--target-dir")
        .arg(&out)
        .env("RUSTC", "/usr/bin/rustc")
        .env("RUSTC_BOOTSTRAP", "1")
        .env(linker_var, lld)
        .env("RUSTFLAGS", format!("-D warnings -C link-arg=-T{script} {flags}"))
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .expect("running Debian's cargo");
    assert!(status.success(), "the {target} guest did not build");
    out.join(target).join("release/pagetable-guest")
}

/// Runs `kernel` under `qemu` and returns what it printed up to `DONE`.
fn run(qemu: &str, machine: &[&str], kernel: &Path) -> Vec<String> {
    let mut child = Command::new(qemu)
        .args(machine)
        .args([
            "-display",
            "none",
            "-serial",
            "stdio",
            "-monitor",
            "none",
            "-no-reboot",
        ])
        .arg("-kernel")
        .arg(kernel)
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
    loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) if line == "DONE" => break,
            Ok(line) => lines.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!("no DONE from the guest; it printed {lines:#?}");
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    lines
}

/// Every check of the plan came back ok, and nothing failed.
fn assert_plan(arch: &str, plan: &[&str], lines: &[String]) {
    let failed: Vec<_> = lines
        .iter()
        .filter(|l| !l.starts_with("guest: ok "))
        .collect();
    assert!(
        failed.is_empty(),
        "{arch} guest: {failed:#?}\nall: {lines:#?}"
    );
    let want: Vec<String> = plan.iter().map(|c| format!("guest: ok {c}")).collect();
    assert_eq!(lines, want, "{arch} guest: not its plan");
}

#[test]
fn rust_guest_aarch64_edits_the_tables_its_own_cpu_walks() {
    if !qemu_available("qemu-system-aarch64") {
        return;
    }
    let Some(lld) = toolchain() else { return };
    let kernel = build("aarch64-unknown-none-softfloat", &lld, "aarch64.ld", "");
    // `-cpu max`: FEAT_HAFDBS, so the MMU sets the access flag and dirty state itself.
    let lines = run("qemu-system-aarch64", &["-M", "virt", "-cpu", "max"], &kernel);
    assert_plan("aarch64", &plan(true, true, true), &lines);
}

#[test]
fn rust_guest_riscv64_edits_the_tables_its_own_cpu_walks() {
    if !qemu_available("qemu-system-riscv64") {
        return;
    }
    let Some(lld) = toolchain() else { return };
    let kernel = build("riscv64imac-unknown-none-elf", &lld, "riscv64.ld", "");
    // Svadu: the MMU sets A and D itself; Svpbmt: the console's device type.
    let lines = run(
        "qemu-system-riscv64",
        &["-M", "virt", "-bios", "none", "-cpu", "rv64,svadu=true,svpbmt=true"],
        &kernel,
    );
    assert_plan("riscv64", &plan(true, false, true), &lines);
}

#[test]
fn rust_guest_x86_64_edits_the_tables_its_own_cpu_walks() {
    if !qemu_available("qemu-system-x86_64") {
        return;
    }
    let Some(lld) = toolchain() else { return };
    let elf = build(
        "x86_64-unknown-none",
        &lld,
        "x86_64.ld",
        "-C relocation-model=static",
    );
    // QEMU's multiboot loader takes ELF32 only: the same image, in a 32-bit container.
    let kernel = elf.with_extension("elf32");
    let status = Command::new("objcopy")
        .args(["-O", "elf32-i386"])
        .arg(&elf)
        .arg(&kernel)
        .status()
        .expect("running binutils' objcopy");
    assert!(status.success(), "objcopy to ELF32 failed");
    let lines = run("qemu-system-x86_64", &["-M", "q35", "-cpu", "max"], &kernel);
    assert_plan("x86_64", &plan(true, false, true), &lines);
}

#[test]
fn rust_guest_loongarch64_edits_the_tables_its_own_cpu_walks() {
    if !qemu_available("qemu-system-loongarch64") {
        return;
    }
    let Some(lld) = toolchain() else { return };
    let kernel = build(
        "loongarch64-unknown-none-softfloat",
        &lld,
        "loongarch64.ld",
        "",
    );
    let lines = run(
        "qemu-system-loongarch64",
        &["-M", "virt", "-cpu", "la464", "-m", "1G"],
        &kernel,
    );
    assert_plan("loongarch64", &plan(false, false, false), &lines);
}
