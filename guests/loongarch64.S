# LoongArch64 conformance guest: QEMU -M virt starts it in direct-address mode at its ELF
# entry (linked in the 0x9000... window, loaded at the low physical address). Its own code, data
# and the image are reached through DMW0; everything else, the UART included, through the
# crate's tables, walked by the TLB-refill handler with lddir/ldpte.

.equ IMAGE_BASE, 0x9000000008000000     # through DMW0
.equ DMW_BASE,   0x9000000000000000
.equ UART_PA,    0x1fe001e0

.section .text.entry, "ax"
.globl _start
_start:
    li.d        $t0, 0x9000000000000011     # DMW0: VSEG 9, cached, PLV0
    csrwr       $t0, 0x180
    la.pcrel    $sp, stack_top
    la.pcrel    $t0, exc_handler
    csrwr       $t0, 0xc                    # EENTRY
    la.pcrel    $t0, refill_handler
    bstrpick.d  $t0, $t0, 47, 0
    csrwr       $t0, 0x88                   # TLBRENTRY: a physical address
    csrwr       $zero, 0x4                  # ECFG: one entry, no interrupts
    li.d        $t0, UART_PA
    la.pcrel    $t1, uart
    st.d        $t0, $t1, 0
    # The walk of an empty (zero) directory entry reads physical page 0: keep it zero.
    li.d        $t0, DMW_BASE
    li.d        $t1, 512
1:  st.d        $zero, $t0, 0
    addi.d      $t0, $t0, 8
    addi.d      $t1, $t1, -1
    bnez        $t1, 1b
    la.pcrel    $a0, msg_boot
    bl          puts
    li.d        $s0, IMAGE_BASE
    ld.d        $t0, $s0, 0
    li.d        $t1, 0x706167657461626c
    bne         $t0, $t1, bad_magic
    ld.d        $t0, $s0, 8
    csrwr       $t0, 0x19                   # PGDL
    ld.d        $t0, $s0, 16
    csrwr       $t0, 0x1a                   # PGDH
    ld.d        $t0, $s0, 24
    csrwr       $t0, 0x1c                   # PWCL
    ld.d        $t0, $s0, 32
    csrwr       $t0, 0x1d                   # PWCH
    li.d        $t0, 12
    csrwr       $t0, 0x1e                   # STLBPS: 4 KiB
    li.d        $t0, 12
    csrwr       $t0, 0x8e                   # TLBREHI.PS (bits 5:0)
    csrwr       $zero, 0x18                 # ASID 0
    invtlb      0x0, $zero, $zero
    li.d        $t0, 0xb0                   # CRMD: PG, DATF = DATM = cached, PLV0
    csrwr       $t0, 0x0
    ld.d        $t0, $s0, 40                # the UART, through the crate's device mapping
    la.pcrel    $t1, uart
    st.d        $t0, $t1, 0
    la.pcrel    $a0, msg_mmu
    bl          puts
    ld.d        $a0, $s0, 48
    ld.d        $a1, $s0, 56
    bl          run_probes
    # Patches: table memory is reached through DMW0.
    ld.d        $s1, $s0, 64
    ld.d        $s2, $s0, 72
    add.d       $s2, $s2, $s0
    li.d        $t2, DMW_BASE
1:  beqz        $s1, 2f
    ld.d        $t0, $s2, 0
    ld.d        $t1, $s2, 8
    or          $t0, $t0, $t2
    st.d        $t1, $t0, 0
    addi.d      $s2, $s2, 16
    addi.d      $s1, $s1, -1
    b           1b
2:  # Flushes, as the crate's Flush::flush does on LoongArch.
    dbar        0
    ld.d        $s1, $s0, 80
    ld.d        $s2, $s0, 88
    add.d       $s2, $s2, $s0
3:  beqz        $s1, 6f
    ld.d        $t0, $s2, 0
    li.d        $t1, 2
    bne         $t0, $t1, 4f
    invtlb      0x0, $zero, $zero
    b           5f
4:  ld.d        $t0, $s2, 8
    ld.d        $t1, $s2, 16
41: beqz        $t1, 5f
    invtlb      0x6, $zero, $t0
    lu12i.w     $t2, 1
    add.d       $t0, $t0, $t2
    addi.d      $t1, $t1, -1
    b           41b
5:  addi.d      $s2, $s2, 24
    addi.d      $s1, $s1, -1
    b           3b
6:  la.pcrel    $a0, msg_phase2
    bl          puts
    ld.d        $a0, $s0, 96
    ld.d        $a1, $s0, 104
    bl          run_probes
    la.pcrel    $a0, msg_done
    bl          puts
7:  idle        0
    b           7b

bad_magic:
    la.pcrel    $a0, msg_magic
    bl          puts
1:  b           1b

# run_probes($a0 = count, $a1 = offset from IMAGE_BASE)
run_probes:
    addi.d      $sp, $sp, -48
    st.d        $ra, $sp, 0
    st.d        $s1, $sp, 8
    st.d        $s2, $sp, 16
    st.d        $s3, $sp, 24
    move        $s1, $a0
    add.d       $s2, $a1, $s0
1:  beqz        $s1, 9f
    la.pcrel    $t0, fault
    st.d        $zero, $t0, 0
    la.pcrel    $t0, recovery
    la.pcrel    $t1, 8f
    st.d        $t1, $t0, 0
    ld.d        $t0, $s2, 0                 # kind
    ld.d        $t1, $s2, 8                 # va
    ld.d        $t2, $s2, 16                # value
    move        $s3, $zero
    li.d        $t3, 1
    beq         $t0, $t3, 2f
    li.d        $t3, 2
    beq         $t0, $t3, 3f
    jirl        $ra, $t1, 0                 # 3: execute
    b           8f
2:  ld.d        $s3, $t1, 0                 # 1: read
    b           8f
3:  st.d        $t2, $t1, 0                 # 2: write
8:  la.pcrel    $a0, msg_p
    bl          puts
    la.pcrel    $t0, fault
    ld.d        $t0, $t0, 0
    bnez        $t0, 81f
    ld.d        $t0, $s2, 0
    li.d        $t3, 1
    bne         $t0, $t3, 82f
    move        $a0, $s3
    bl          puthex
    b           83f
81: la.pcrel    $a0, msg_fault
    bl          puts
    b           83f
82: la.pcrel    $a0, msg_ok
    bl          puts
83: la.pcrel    $a0, msg_nl
    bl          puts
    addi.d      $s2, $s2, 32
    addi.d      $s1, $s1, -1
    b           1b
9:  ld.d        $ra, $sp, 0
    ld.d        $s1, $sp, 8
    ld.d        $s2, $sp, 16
    ld.d        $s3, $sp, 24
    addi.d      $sp, $sp, 48
    jr          $ra

# puts($a0 = NUL-terminated string); uses $a0, $t4-$t6.
puts:
    la.pcrel    $t4, uart
    ld.d        $t4, $t4, 0
1:  ld.bu       $t5, $a0, 0
    beqz        $t5, 3f
2:  ld.bu       $t6, $t4, 5                 # LSR
    andi        $t6, $t6, 0x20              # THR empty
    beqz        $t6, 2b
    st.b        $t5, $t4, 0
    addi.d      $a0, $a0, 1
    b           1b
3:  jr          $ra

# puthex($a0): 16 hex digits; uses $a0, $t4-$t8.
puthex:
    la.pcrel    $t4, uart
    ld.d        $t4, $t4, 0
    li.d        $t7, 60
1:  srl.d       $t5, $a0, $t7
    andi        $t5, $t5, 15
    li.d        $t8, 10
    blt         $t5, $t8, 2f
    addi.d      $t5, $t5, 39                # 'a' - 10 - '0'
2:  addi.d      $t5, $t5, 48                # '0'
3:  ld.bu       $t6, $t4, 5
    andi        $t6, $t6, 0x20
    beqz        $t6, 3b
    st.b        $t5, $t4, 0
    addi.d      $t7, $t7, -4
    bge         $t7, $zero, 1b
    jr          $ra

# A fault in a probe (page invalid, modify, not-executable, privilege): note it and resume at
# the recovery point.
.balign 4096
exc_handler:
    csrwr       $t0, 0x30                   # KS0
    csrwr       $t1, 0x31                   # KS1
    la.pcrel    $t0, fault
    li.d        $t1, 1
    st.d        $t1, $t0, 0
    la.pcrel    $t0, recovery
    ld.d        $t0, $t0, 0
    csrwr       $t0, 0x6                    # ERA
    csrrd       $t0, 0x30
    csrrd       $t1, 0x31
    ertn

# TLB refill: runs in direct-address mode at its physical address. Walks PGD (PGDL or PGDH
# by the faulting address) through Dir3, Dir2 and Dir1 with lddir, as PWCL/PWCH describe.
# A huge leaf goes through ldpte. A page table's even/odd pair of entries is loaded here
# instead: QEMU 10.0's ldpte masks what it loads to the physical-address width, dropping NR, NX
# and RPLV (bits 61-63), and the entry format is the TLBELO format, so loading it directly is
# the architecture's walk too (software bits 7-11 are cleared on the way).
.balign 4096
refill_handler:
    csrwr       $t0, 0x8b                   # TLBRSAVE
    csrwr       $t1, 0x32                   # KS2
    csrrd       $t0, 0x1b                   # PGD
    lddir       $t0, $t0, 3
    lddir       $t0, $t0, 2
    lddir       $t0, $t0, 1
    andi        $t1, $t0, 0x40              # HUGE
    bnez        $t1, 1f
    csrrd       $t1, 0x89                   # TLBRBADV
    bstrpick.d  $t1, $t1, 20, 13            # index of the even/odd pair
    slli.d      $t1, $t1, 4
    add.d       $t0, $t0, $t1
    ld.d        $t1, $t0, 0
    bstrins.d   $t1, $zero, 11, 7
    csrwr       $t1, 0x8c                   # TLBRELO0
    ld.d        $t1, $t0, 8
    bstrins.d   $t1, $zero, 11, 7
    csrwr       $t1, 0x8d                   # TLBRELO1
    li.d        $t0, 0x3f
    li.d        $t1, 12
    csrxchg     $t1, $t0, 0x8e              # TLBREHI.PS = 4 KiB
    b           2f
1:  ldpte       $t0, 0
    ldpte       $t0, 1
2:  tlbfill
    csrrd       $t0, 0x8b
    csrrd       $t1, 0x32
    ertn

.section .rodata
msg_boot:   .asciz "BOOT loongarch64\n"
.include "messages.inc"

.include "globals.inc"
