/* SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception */
/* The only assembly object (ELF, not bitcode): process entry and the two
 * system calls the fixture program needs. */
	.text
	.globl	_start
	.type	_start, @function
_start:
	xorl	%ebp, %ebp
	andq	$-16, %rsp
	call	start_kernel
	movl	%eax, %edi
	call	mini_exit
	.size	_start, .-_start

	.globl	mini_write
	.type	mini_write, @function
mini_write:			/* long mini_write(int fd, const char *buf, size_t len) */
	movl	$1, %eax	/* __NR_write */
	syscall
	ret
	.size	mini_write, .-mini_write

	.globl	mini_exit
	.type	mini_exit, @function
mini_exit:			/* void mini_exit(int code) */
	movl	$60, %eax	/* __NR_exit */
	syscall
	hlt
	.size	mini_exit, .-mini_exit

	.section .note.GNU-stack,"",@progbits
