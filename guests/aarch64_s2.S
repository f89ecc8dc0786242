// AArch64 stage 2 conformance guest: QEMU -M virt,virtualization=on starts it at EL2 at its
// entry, MMU off. EL2 loads VTCR_EL2 and VTTBR_EL2 from the control block, sets HCR_EL2.VM and
// drops to EL1 with the EL1 MMU off, so that every EL1 access is an intermediate physical
// address that only the crate's stage 2 table translates (it identity-maps the guest). The
// probes run at EL1; stage 2 faults are taken to EL2, which notes them and resumes the probe
// loop. Between the phases EL1 calls EL2 (hvc), which patches the table and flushes, as a
// hypervisor would.

.include "aarch64_common.inc"

.section .text.entry, "ax"
.globl _start
_start:
    boot    vbar_el2, el2_vectors
    mrs     x0, CurrentEL
    cmp     x0, #(2 << 2)
    b.ne    not_el2
    check_magic
    ldr     x0, [x19, #24]
    msr     vtcr_el2, x0
    ldr     x0, [x19, #8]               // VMID 0, the root's address
    msr     vttbr_el2, x0
    isb
    tlbi    vmalls12e1
    dsb     ish
    isb
    mov     x0, #1                      // VM: stage 2 on
    orr     x0, x0, #(1 << 31)          // RW: EL1 is AArch64
    msr     hcr_el2, x0
    ldr     x0, =0x30d00800             // SCTLR_EL1: RES1 bits, MMU and caches off
    msr     sctlr_el1, x0
    ldr     x0, =el1_vectors
    msr     vbar_el1, x0
    ldr     x0, =stack_el1_top
    msr     sp_el1, x0
    ldr     x0, =el1_main
    msr     elr_el2, x0
    mov     x0, #0x3c5                  // EL1h, interrupts masked
    msr     spsr_el2, x0
    isb
    eret

not_el2:
    ldr     x0, =msg_not_el2
    bl      puts
1:  b       1b

// EL1, stage 1 off: addresses are IPAs.
el1_main:
    ldr     x19, =IMAGE_BASE
    phase1
    hvc     #0                          // EL2 patches the table and flushes
    phase2

// EL2, from EL1: an hvc asks for the edits; anything else is a stage 2 fault of a probe, noted
// and resumed at the probe's recovery point.
el2_from_el1:
    stp     x0, x1, [sp, #-16]!
    mrs     x0, esr_el2
    lsr     x0, x0, #26                 // EC
    cmp     x0, #0x16                   // HVC from AArch64
    b.eq    1f
    ldr     x0, =fault
    mov     x1, #1
    str     x1, [x0]
    ldr     x0, =recovery
    ldr     x0, [x0]
    msr     elr_el2, x0
    ldp     x0, x1, [sp], #16
    eret
1:  ldp     x0, x1, [sp], #16
    stp     x20, x21, [sp, #-16]!
    stp     x0, x1, [sp, #-16]!
    stp     x2, x3, [sp, #-16]!
    // Patches to table memory, at its physical address (the EL2 MMU is off).
    apply_patches
    // Flushes, as the crate's Flush::flush does for stage 2.
    ldr     x20, [x19, #80]
    ldr     x21, [x19, #88]
    add     x21, x21, x19
4:  cbz     x20, 8f
    ldr     x0, [x21]
    cmp     x0, #2
    b.ne    5f
    dsb     ishst
    tlbi    vmalls12e1is
    dsb     ish
    isb
    b       7f
5:  ldr     x0, [x21, #8]
    ldr     x1, [x21, #16]
6:  cbz     x1, 61f
    ubfx    x2, x0, #12, #36
    dsb     ishst
    tlbi    ipas2e1is, x2
    dsb     ish
    tlbi    vmalle1is
    dsb     ish
    isb
    add     x0, x0, #4096
    sub     x1, x1, #1
    b       6b
61:
7:  add     x21, x21, #24
    sub     x20, x20, #1
    b       4b
8:  ldp     x2, x3, [sp], #16
    ldp     x0, x1, [sp], #16
    ldp     x20, x21, [sp], #16
    eret

// An exception the guest does not expect: say which, and stop.
el2_unexpected:
    ldr     x0, =msg_el2
    b       unexpected
el1_unexpected:
    ldr     x0, =msg_el1
unexpected:
    bl      puts
    mrs     x0, CurrentEL
    cmp     x0, #(2 << 2)
    b.ne    1f
    mrs     x0, esr_el2
    b       2f
1:  mrs     x0, esr_el1
2:  bl      puthex
    ldr     x0, =msg_nl
    bl      puts
3:  b       3b

.ltorg

// VBAR_EL2: the four entries from a lower EL using AArch64 (offset 0x400) go to the handler;
// the rest are unexpected.
.balign 2048
el2_vectors:
.rept 8
    b       el2_unexpected
.balign 128
.endr
    b       el2_from_el1
.balign 128
.rept 7
    b       el2_unexpected
.balign 128
.endr

.balign 2048
el1_vectors:
.rept 16
    b       el1_unexpected
.balign 128
.endr

.section .rodata
msg_boot:    .asciz "BOOT aarch64 stage 2\n"
msg_not_el2: .asciz "NOT AT EL2\n"
msg_el2:     .asciz "UNEXPECTED EL2 EXCEPTION, ESR "
msg_el1:     .asciz "UNEXPECTED EL1 EXCEPTION, ESR "
.include "messages.inc"

.include "globals.inc"
.section .bss
.balign 4096
stack_el1:   .space 16384
stack_el1_top:
