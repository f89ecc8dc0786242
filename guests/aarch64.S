// AArch64 conformance guest: QEMU -M virt -cpu cortex-a57 starts it at EL1 at its entry, MMU
// off. It loads MAIR_EL1, TCR_EL1, TTBR0_EL1 and TTBR1_EL1 from the control block, turns the
// MMU on (the crate's TTBR0 table identity-maps the guest), and runs the probes.

.include "aarch64_common.inc"

.section .text.entry, "ax"
.globl _start
_start:
    boot    vbar_el1, vectors
    check_magic
    ldr     x0, [x19, #32]
    msr     mair_el1, x0
    ldr     x0, [x19, #24]
    msr     tcr_el1, x0
    ldr     x0, [x19, #8]
    msr     ttbr0_el1, x0
    ldr     x0, [x19, #16]
    msr     ttbr1_el1, x0
    isb
    tlbi    vmalle1
    dsb     ish
    isb
    mrs     x0, sctlr_el1
    orr     x0, x0, #1                  // M
    orr     x0, x0, #(1 << 2)           // C
    orr     x0, x0, #(1 << 12)          // I
    bic     x0, x0, #(1 << 19)          // WXN off: the identity map is RWX
    msr     sctlr_el1, x0
    isb
    phase1
    // Patches to table memory, which the crate's TTBR0 table identity-maps.
    apply_patches
    // Flushes, as the crate's Flush::flush does on AArch64.
    ldr     x20, [x19, #80]
    ldr     x21, [x19, #88]
    add     x21, x21, x19
3:  cbz     x20, 6f
    ldr     x0, [x21]
    cmp     x0, #2
    b.ne    4f
    dsb     ishst
    tlbi    vmalle1is
    dsb     ish
    isb
    b       5f
4:  ldr     x0, [x21, #8]
    ldr     x1, [x21, #16]
41: cbz     x1, 5f
    ubfx    x2, x0, #12, #44
    dsb     ishst
    tlbi    vaae1is, x2
    dsb     ish
    isb
    add     x0, x0, #4096
    sub     x1, x1, #1
    b       41b
5:  add     x21, x21, #24
    sub     x20, x20, #1
    b       3b
6:  phase2

// A fault in a probe: note it and resume at the recovery point.
sync_handler:
    stp     x0, x1, [sp, #-16]!
    ldr     x0, =fault
    mov     x1, #1
    str     x1, [x0]
    ldr     x0, =recovery
    ldr     x0, [x0]
    msr     elr_el1, x0
    ldp     x0, x1, [sp], #16
    eret

.ltorg

.balign 2048
vectors:
.rept 16
    b       sync_handler
.balign 128
.endr

.section .rodata
msg_boot:   .asciz "BOOT aarch64\n"
.include "messages.inc"

.include "globals.inc"
