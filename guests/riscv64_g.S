# RISC-V G-stage conformance guest: QEMU -M virt -bios none -cpu rv64,h=true starts it in
# M-mode at 0x8000_0000. M-mode opens PMP, enables Svpbmt for the G-stage, loads hgatp from the
# control block (and checks the hart took its MODE), leaves vsatp bare and mret's into VS-mode,
# so that every access of the probes is a guest physical address that only the crate's G-stage
# table translates (it identity-maps the guest). Guest-page faults are taken to M-mode, which
# notes them and resumes the probe loop; between the phases VS-mode calls M-mode (ecall), which
# patches the table and flushes with hfence.gvma, as a hypervisor would.

.include "riscv64_common.inc"

.section .text.entry, "ax"
.globl _start
_start:
    boot
    csrw    medeleg, zero               # every trap comes to M-mode
    csrw    mideleg, zero
    la      t0, m_trap
    csrw    mtvec, t0
    check_magic
    ld      t0, 8(s0)
    csrw    hgatp, t0
    csrr    t1, hgatp
    bne     t0, t1, bad_hgatp           # an unsupported MODE leaves hgatp unchanged
    hfence.gvma zero, zero
    csrw    vsatp, zero                 # VS-stage bare: guest virtual = guest physical
    li      t0, 3 << 11
    csrc    mstatus, t0
    li      t0, (1 << 11) | (1 << 39)   # MPP = S, MPV = 1: mret enters VS-mode
    csrs    mstatus, t0
    la      t0, vs_main
    csrw    mepc, t0
    mret

bad_hgatp:
    la      a0, msg_hgatp
    call    puts
1:  j       1b

# VS-mode: addresses are guest physical.
vs_main:
    phase1
    ecall                               # M-mode patches the table and flushes
    phase2

# M-mode: an ecall from VS-mode asks for the edits; a guest-page fault of a probe is noted and
# resumed at the probe's recovery point; anything else is unexpected.
.align 4
m_trap:
    addi    sp, sp, -32
    sd      t0, 0(sp)
    sd      t1, 8(sp)
    sd      t2, 16(sp)
    sd      t3, 24(sp)
    csrr    t0, mcause
    li      t1, 10                      # environment call from VS-mode
    beq     t0, t1, edits
    li      t1, 20                      # instruction guest-page fault
    beq     t0, t1, note_fault
    li      t1, 21                      # load guest-page fault
    beq     t0, t1, note_fault
    li      t1, 23                      # store guest-page fault
    beq     t0, t1, note_fault
    la      a0, msg_unexpected
    call    puts
    csrr    a0, mcause
    call    puthex
    la      a0, msg_nl
    call    puts
1:  j       1b

note_fault:
    la      t0, fault
    li      t1, 1
    sd      t1, 0(t0)
    la      t0, recovery
    ld      t0, 0(t0)
    csrw    mepc, t0
    j       m_return

edits:
    # Patches to table memory, at its physical address.
    apply_patches t2, t3
    # Flushes, as the crate's Flush::flush does for the G-stage.
    ld      t2, 80(s0)
    ld      t3, 88(s0)
    add     t3, t3, s0
3:  beqz    t2, 6f
    ld      t0, 0(t3)
    li      t1, 2
    bne     t0, t1, 4f
    hfence.gvma zero, zero
    j       5f
4:  ld      t0, 8(t3)
    ld      t1, 16(t3)
41: beqz    t1, 5f
    srli    a0, t0, 2                   # hfence.gvma takes the address shifted right by 2
    hfence.gvma a0, zero
    li      a0, 4096
    add     t0, t0, a0
    addi    t1, t1, -1
    j       41b
5:  addi    t3, t3, 24
    addi    t2, t2, -1
    j       3b
6:  csrr    t0, mepc
    addi    t0, t0, 4                   # past the ecall
    csrw    mepc, t0

m_return:
    ld      t0, 0(sp)
    ld      t1, 8(sp)
    ld      t2, 16(sp)
    ld      t3, 24(sp)
    addi    sp, sp, 32
    mret

.section .rodata
msg_boot:       .asciz "BOOT riscv64 G-stage\n"
msg_hgatp:      .asciz "HGATP MODE NOT TAKEN\n"
msg_unexpected: .asciz "UNEXPECTED TRAP, MCAUSE "
.include "messages.inc"

.include "globals.inc"
