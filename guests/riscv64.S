# RISC-V conformance guest: QEMU -M virt -bios none starts it in M-mode at 0x8000_0000.
# M-mode opens PMP, enables Svpbmt, delegates faults to S-mode, loads satp, and mret's into
# S-mode, where the probes run with the crate's tables (the guest is identity-mapped by them).

.include "riscv64_common.inc"

.section .text.entry, "ax"
.globl _start
_start:
    boot
    li      t0, (1 << 1) | (1 << 5) | (1 << 7) | (1 << 12) | (1 << 13) | (1 << 15)
    csrw    medeleg, t0                 # access and page faults go to S-mode
    la      t0, s_trap
    csrw    stvec, t0
    check_magic
    ld      t0, 8(s0)
    csrw    satp, t0                    # takes effect in S-mode
    sfence.vma
    li      t0, 3 << 11
    csrc    mstatus, t0
    li      t0, 1 << 11                 # MPP = S
    csrs    mstatus, t0
    la      t0, s_main
    csrw    mepc, t0
    mret

s_main:
    phase1
    # Patches to table memory, which the crate's tables identity-map.
    apply_patches s1, s2
    # Flushes, as the crate's Flush::flush does on RISC-V.
    ld      s1, 80(s0)
    ld      s2, 88(s0)
    add     s2, s2, s0
3:  beqz    s1, 6f
    ld      t0, 0(s2)
    li      t1, 2
    bne     t0, t1, 4f
    sfence.vma
    j       5f
4:  ld      t0, 8(s2)
    ld      t1, 16(s2)
41: beqz    t1, 5f
    sfence.vma t0, zero
    li      t2, 4096
    add     t0, t0, t2
    addi    t1, t1, -1
    j       41b
5:  addi    s2, s2, 24
    addi    s1, s1, -1
    j       3b
6:  phase2

# A fault in a probe: note it and resume at the recovery point.
.align 4
s_trap:
    addi    sp, sp, -16
    sd      t0, 0(sp)
    sd      t1, 8(sp)
    la      t0, fault
    li      t1, 1
    sd      t1, 0(t0)
    la      t0, recovery
    ld      t0, 0(t0)
    csrw    sepc, t0
    ld      t0, 0(sp)
    ld      t1, 8(sp)
    addi    sp, sp, 16
    sret

.section .rodata
msg_boot:   .asciz "BOOT riscv64\n"
.include "messages.inc"

.include "globals.inc"
