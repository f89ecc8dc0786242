# x86_64 conformance guest: QEMU -kernel boots it as multiboot v1 (an ELF32 file, 32-bit
# protected mode, paging off). It identity-maps the low 4 GiB with its own boot tables, enters
# long mode (5-level if the control block asks), sets IA32_PAT and loads the crate's root into
# CR3. Output goes to COM1 (port I/O: not through the tables).

.set IMAGE_BASE, 0x08000000
.set COM1, 0x3f8

.section .text.entry, "ax"
.code32
.balign 4
mb_header:
    .long 0x1BADB002
    .long 0
    .long -0x1BADB002

.globl _start
_start:
    cli
    movl    $stack_top, %esp
    # Boot tables: 2048 PD entries of 2 MiB pages for 4 GiB, P | RW | PS.
    movl    $boot_pd, %edi
    xorl    %ecx, %ecx
1:  movl    %ecx, %eax
    shll    $21, %eax
    orl     $0x83, %eax
    movl    %eax, (%edi,%ecx,8)
    movl    $0, 4(%edi,%ecx,8)
    incl    %ecx
    cmpl    $2048, %ecx
    jb      1b
    movl    $boot_pdpt, %edi
    movl    $boot_pd + 3, %eax
    xorl    %ecx, %ecx
2:  movl    %eax, (%edi,%ecx,8)
    movl    $0, 4(%edi,%ecx,8)
    addl    $4096, %eax
    incl    %ecx
    cmpl    $4, %ecx
    jb      2b
    movl    $boot_pdpt + 3, boot_pml4
    movl    $boot_pml4 + 3, boot_pml5
    # CR4: PAE | PGE, and LA57 before paging is on if the control block asks for 5 levels.
    movl    %cr4, %eax
    orl     $((1 << 5) | (1 << 7)), %eax
    movl    $boot_pml4, %ebx
    cmpl    $0, IMAGE_BASE + 24
    je      3f
    orl     $(1 << 12), %eax
    movl    $boot_pml5, %ebx
3:  movl    %eax, %cr4
    movl    %ebx, %cr3
    movl    $0xC0000080, %ecx           # EFER: LME | NXE
    rdmsr
    orl     $((1 << 8) | (1 << 11)), %eax
    wrmsr
    movl    %cr0, %eax
    orl     $((1 << 31) | (1 << 16)), %eax  # PG | WP: supervisor writes obey R/W
    movl    %eax, %cr0
    lgdt    gdt_ptr
    ljmp    $0x08, $long_mode

.code64
long_mode:
    movw    $0x10, %ax
    movw    %ax, %ds
    movw    %ax, %es
    movw    %ax, %ss
    movw    %ax, %fs
    movw    %ax, %gs
    movq    $stack_top, %rsp
    call    setup_idt
    lidt    idt_ptr(%rip)
    leaq    msg_boot(%rip), %rdi
    call    puts
    movq    $IMAGE_BASE, %r15
    movq    (%r15), %rax
    movq    $0x706167657461626c, %rbx
    cmpq    %rbx, %rax
    jne     bad_magic
    movq    32(%r15), %rax              # IA32_PAT
    movq    %rax, %rdx
    shrq    $32, %rdx
    movl    $0x277, %ecx
    wrmsr
    movq    8(%r15), %rax               # the crate's root
    movq    %rax, %cr3
    leaq    msg_mmu(%rip), %rdi
    call    puts
    movq    48(%r15), %rdi
    movq    56(%r15), %rsi
    call    run_probes
    # Patches: stores to table memory, identity-mapped by the crate's tables.
    movq    64(%r15), %r12
    movq    72(%r15), %r13
    addq    %r15, %r13
1:  testq   %r12, %r12
    jz      2f
    movq    (%r13), %rax
    movq    8(%r13), %rdx
    movq    %rdx, (%rax)
    addq    $16, %r13
    decq    %r12
    jmp     1b
2:  # Flushes, as the crate's Flush::flush does on x86_64.
    movq    80(%r15), %r12
    movq    88(%r15), %r13
    addq    %r15, %r13
3:  testq   %r12, %r12
    jz      6f
    cmpq    $2, (%r13)
    jne     4f
    movq    %cr4, %rax                  # everything, global entries too: toggle PGE
    movq    %rax, %rdx
    xorq    $0x80, %rdx
    movq    %rdx, %cr4
    movq    %rax, %cr4
    jmp     5f
4:  movq    8(%r13), %rax
    movq    16(%r13), %rcx
41: testq   %rcx, %rcx
    jz      5f
    invlpg  (%rax)
    addq    $4096, %rax
    decq    %rcx
    jmp     41b
5:  addq    $24, %r13
    decq    %r12
    jmp     3b
6:  leaq    msg_phase2(%rip), %rdi
    call    puts
    movq    96(%r15), %rdi
    movq    104(%r15), %rsi
    call    run_probes
    leaq    msg_done(%rip), %rdi
    call    puts
7:  hlt
    jmp     7b

bad_magic:
    leaq    msg_magic(%rip), %rdi
    call    puts
1:  hlt
    jmp     1b

# run_probes(rdi = count, rsi = offset from IMAGE_BASE)
run_probes:
    pushq   %r12
    pushq   %r13
    pushq   %r14
    movq    %rdi, %r12
    leaq    (%rsi,%r15), %r13
1:  testq   %r12, %r12
    jz      9f
    movq    $0, fault(%rip)
    leaq    8f(%rip), %rax
    movq    %rax, recovery(%rip)
    movq    %rsp, saved_rsp(%rip)
    movq    (%r13), %rax                # kind
    movq    8(%r13), %rbx               # va
    movq    16(%r13), %rcx              # value
    xorq    %r14, %r14
    cmpq    $1, %rax
    je      2f
    cmpq    $2, %rax
    je      3f
    call    *%rbx                       # 3: execute
    jmp     8f
2:  movq    (%rbx), %r14                # 1: read
    jmp     8f
3:  movq    %rcx, (%rbx)                # 2: write
8:  movq    saved_rsp(%rip), %rsp       # a faulting call left its return address behind
    leaq    msg_p(%rip), %rdi
    call    puts
    cmpq    $0, fault(%rip)
    jne     81f
    cmpq    $1, (%r13)
    jne     82f
    movq    %r14, %rdi
    call    puthex
    jmp     83f
81: leaq    msg_fault(%rip), %rdi
    call    puts
    jmp     83f
82: leaq    msg_ok(%rip), %rdi
    call    puts
83: leaq    msg_nl(%rip), %rdi
    call    puts
    addq    $32, %r13
    decq    %r12
    jmp     1b
9:  popq    %r14
    popq    %r13
    popq    %r12
    ret

# Every exception: note it and resume at the recovery point. #GP and #PF push an error code.
fault_err:
    addq    $8, %rsp
fault_noerr:
    movq    $1, fault(%rip)
    pushq   %rax
    movq    recovery(%rip), %rax
    movq    %rax, 8(%rsp)               # the saved RIP
    popq    %rax
    iretq

setup_idt:
    leaq    idt(%rip), %rdi
    xorl    %ecx, %ecx
1:  leaq    fault_noerr(%rip), %rax
    cmpl    $13, %ecx
    je      2f
    cmpl    $14, %ecx
    jne     3f
2:  leaq    fault_err(%rip), %rax
3:  movq    %rax, %rdx
    andq    $0xffff, %rdx
    orq     $(0x08 << 16), %rdx         # selector
    movq    $0x8E, %r8                  # present interrupt gate
    shlq    $40, %r8
    orq     %r8, %rdx
    movq    %rax, %r8
    shrq    $16, %r8
    andq    $0xffff, %r8
    shlq    $48, %r8
    orq     %r8, %rdx
    movq    %rdx, (%rdi)
    shrq    $32, %rax
    movq    %rax, 8(%rdi)
    addq    $16, %rdi
    incl    %ecx
    cmpl    $32, %ecx
    jb      1b
    ret

# puts(rdi = NUL-terminated string); uses rax, rcx, rdx, rdi.
puts:
1:  movzbl  (%rdi), %ecx
    testl   %ecx, %ecx
    jz      3f
    movw    $COM1 + 5, %dx
2:  inb     %dx, %al
    testb   $0x20, %al
    jz      2b
    movw    $COM1, %dx
    movl    %ecx, %eax
    outb    %al, %dx
    incq    %rdi
    jmp     1b
3:  ret

# puthex(rdi): 16 hex digits; uses rax, rcx, rdx, rsi, rdi.
puthex:
    movl    $60, %esi
1:  movq    %rdi, %rax
    movl    %esi, %ecx
    shrq    %cl, %rax
    andl    $15, %eax
    cmpl    $10, %eax
    jb      2f
    addl    $('a' - 10 - '0'), %eax
2:  addl    $'0', %eax
    movl    %eax, %ecx
    movw    $COM1 + 5, %dx
3:  inb     %dx, %al
    testb   $0x20, %al
    jz      3b
    movw    $COM1, %dx
    movl    %ecx, %eax
    outb    %al, %dx
    subl    $4, %esi
    jns     1b
    ret

.section .rodata
.balign 16
gdt:
    .quad   0
    .quad   0x00209A0000000000          # 64-bit code
    .quad   0x0000920000000000          # data
gdt_end:
gdt_ptr:
    .word   gdt_end - gdt - 1
    .long   gdt
idt_ptr:
    .word   32 * 16 - 1
    .quad   idt
msg_boot:   .asciz "BOOT x86_64\n"
.include "messages.inc"

.section .bss
.balign 4096
boot_pml5:  .space 4096
boot_pml4:  .space 4096
boot_pdpt:  .space 4096
boot_pd:    .space 4 * 4096
idt:        .space 32 * 16
fault:      .quad 0
recovery:   .quad 0
saved_rsp:  .quad 0
.balign 4096
stack:      .space 16384
stack_top:
