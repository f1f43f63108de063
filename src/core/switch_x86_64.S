/*
 * switch_x86_64.S — the context switch between tasks, System V x86-64.
 *
 * void ctrio__switch(void **save_sp, void *new_sp)
 *   Pushes the callee-saved registers (rbp rbx r12-r15), MXCSR and the x87
 *   control word on the current stack, stores the stack pointer in *save_sp,
 *   loads new_sp and pops the same frame from there. Nothing else: no signal
 *   mask (swapcontext makes a system call for it), no floating-point state
 *   beyond the two control words the ABI says are callee-saved.
 *
 * The CFI below describes that frame, which has the same shape on both
 * stacks, so a debugger can unwind through a switch; ctrio__trampoline marks
 * the outermost frame of a task (undefined return address) so backtraces
 * stop there.
 */
    .text
    .globl  ctrio__switch
    .hidden ctrio__switch
    .type   ctrio__switch, @function
    .p2align 4
ctrio__switch:
    .cfi_startproc
    pushq   %rbp
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %rbp, 0
    pushq   %rbx
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %rbx, 0
    pushq   %r12
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %r12, 0
    pushq   %r13
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %r13, 0
    pushq   %r14
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %r14, 0
    pushq   %r15
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %r15, 0
    subq    $8, %rsp
    .cfi_adjust_cfa_offset 8
    stmxcsr (%rsp)
    fnstcw  4(%rsp)
    movq    (%rsp), %rax
    movq    %rsp, (%rdi)
    movq    %rsi, %rsp
    /* Reload MXCSR and the x87 control word only when the control bits
     * differ: ldmxcsr and fldcw serialise, and the MXCSR status flags (bits
     * 0-5, not preserved by the ABI) differ between tasks all the time. */
    xorq    (%rsp), %rax
    movabsq $0x0000ffffffffffc0, %rdx
    testq   %rdx, %rax
    jnz     2f
    .cfi_remember_state
1:  addq    $8, %rsp
    .cfi_adjust_cfa_offset -8
    popq    %r15
    .cfi_adjust_cfa_offset -8
    .cfi_restore %r15
    popq    %r14
    .cfi_adjust_cfa_offset -8
    .cfi_restore %r14
    popq    %r13
    .cfi_adjust_cfa_offset -8
    .cfi_restore %r13
    popq    %r12
    .cfi_adjust_cfa_offset -8
    .cfi_restore %r12
    popq    %rbx
    .cfi_adjust_cfa_offset -8
    .cfi_restore %rbx
    popq    %rbp
    .cfi_adjust_cfa_offset -8
    .cfi_restore %rbp
    ret
2:  .cfi_restore_state
    ldmxcsr (%rsp)
    fldcw   4(%rsp)
    jmp     1b
    .cfi_endproc
    .size   ctrio__switch, .-ctrio__switch

/*
 * The first frame of every task: ctrio__switch "returns" here with the
 * entry function in r12 and its argument in r13 (see ctrio__context_init).
 * The entry function never returns.
 */
    .globl  ctrio__trampoline
    .hidden ctrio__trampoline
    .type   ctrio__trampoline, @function
    .p2align 4
ctrio__trampoline:
    .cfi_startproc
    .cfi_undefined %rip
    xorl    %ebp, %ebp
    movq    %r13, %rdi
    callq   *%r12
    ud2
    .cfi_endproc
    .size   ctrio__trampoline, .-ctrio__trampoline

    .section .note.GNU-stack,"",@progbits
