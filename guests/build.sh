#!/usr/bin/env bash
# Rebuilds the conformance guests in guests/bin/ with LLVM 19 (scripts/install-deps --guests).
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p bin
build() { # name triple extra-mc-flags linker-script
    local name=$1 triple=$2
    llvm-mc-19 --triple="$triple" $3 -filetype=obj -o "bin/$name.o" "$name.S"
    ld.lld-19 -T "$4.ld" -o "bin/$name.elf" "bin/$name.o"
    rm "bin/$name.o"
}
build riscv64 riscv64 "-mattr=+m,+a,+c" riscv64
# The G-stage guest: the same machine, run by a hypervisor in M-mode.
build riscv64_g riscv64 "-mattr=+m,+a,+c,+h" riscv64
for arch in aarch64 loongarch64 x86_64; do
    [ -f "$arch.S" ] || continue
    case $arch in
        aarch64)
            build aarch64 aarch64 "" aarch64
            # The stage 2 guest: the same machine, started at EL2.
            build aarch64_s2 aarch64 "" aarch64
            ;;
        loongarch64) build loongarch64 loongarch64 "-mattr=+d" loongarch64 ;;
        x86_64)
            # Multiboot v1 wants an ELF32 file: link as x86_64, then relabel.
            build x86_64 x86_64 "" x86_64
            llvm-objcopy-19 -I elf64-x86-64 -O elf32-i386 bin/x86_64.elf bin/x86_64.elf
            ;;
    esac
done
ls -l bin
