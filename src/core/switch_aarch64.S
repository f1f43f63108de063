/*
 * switch_aarch64.S — the context switch between tasks, AAPCS64.
 *
 * void ctrio__switch(void **save_sp, void *new_sp)
 *   Saves x19-x29, lr (x30), d8-d15 (the callee-saved registers) and FPCR in
 *   a 176-byte frame on the current stack, stores sp in *save_sp, loads
 *   new_sp and restores the same frame from there. FPCR (rounding mode,
 *   flush-to-zero, default NaN) is a thread-wide mode in the ABI; keeping it
 *   per task, as MXCSR and the x87 control word are on x86-64, means a task
 *   that changes its rounding mode changes nobody else's. It is written only
 *   when the two tasks' values differ (msr fpcr may serialise).
 *
 * Frame: x19..x30 at 0..95, d8..d15 at 96..159, FPCR at 160, 8 bytes pad.
 */
    .text
    .globl  ctrio__switch
    .hidden ctrio__switch
    .type   ctrio__switch, %function
    .p2align 4
ctrio__switch:
    .cfi_startproc
    sub     sp, sp, #176
    .cfi_def_cfa_offset 176
    stp     x19, x20, [sp, #0]
    stp     x21, x22, [sp, #16]
    stp     x23, x24, [sp, #32]
    stp     x25, x26, [sp, #48]
    stp     x27, x28, [sp, #64]
    stp     x29, x30, [sp, #80]
    .cfi_offset x19, -176
    .cfi_offset x20, -168
    .cfi_offset x21, -160
    .cfi_offset x22, -152
    .cfi_offset x23, -144
    .cfi_offset x24, -136
    .cfi_offset x25, -128
    .cfi_offset x26, -120
    .cfi_offset x27, -112
    .cfi_offset x28, -104
    .cfi_offset x29, -96
    .cfi_offset x30, -88
    stp     d8, d9, [sp, #96]
    stp     d10, d11, [sp, #112]
    stp     d12, d13, [sp, #128]
    stp     d14, d15, [sp, #144]
    mrs     x10, fpcr
    str     x10, [sp, #160]
    mov     x9, sp
    str     x9, [x0]
    mov     sp, x1
    ldr     x11, [sp, #160]
    cmp     x10, x11
    b.eq    1f
    msr     fpcr, x11
1:  ldp     d8, d9, [sp, #96]
    ldp     d10, d11, [sp, #112]
    ldp     d12, d13, [sp, #128]
    ldp     d14, d15, [sp, #144]
    ldp     x19, x20, [sp, #0]
    ldp     x21, x22, [sp, #16]
    ldp     x23, x24, [sp, #32]
    ldp     x25, x26, [sp, #48]
    ldp     x27, x28, [sp, #64]
    ldp     x29, x30, [sp, #80]
    add     sp, sp, #176
    .cfi_def_cfa_offset 0
    ret
    .cfi_endproc
    .size   ctrio__switch, .-ctrio__switch

/* The first frame of every task: entry function in x19, argument in x20. */
    .globl  ctrio__trampoline
    .hidden ctrio__trampoline
    .type   ctrio__trampoline, %function
    .p2align 4
ctrio__trampoline:
    .cfi_startproc
    .cfi_undefined x30
    mov     x29, #0
    mov     x0, x20
    blr     x19
    brk     #0
    .cfi_endproc
    .size   ctrio__trampoline, .-ctrio__trampoline

    .section .note.GNU-stack,"",%progbits
