/* SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception */
/* Shared declarations for the mini kbuild-like fixture. No libc: output goes
 * through mini_write() in arch/x86/kernel/head_64.S. */
#ifndef MINI_H
#define MINI_H

typedef unsigned long size_t;
typedef int (*initcall_t)(void);

#ifndef pr_fmt
#define pr_fmt(fmt) fmt
#endif

#define __stringify_1(x) #x
#define __stringify(x) __stringify_1(x)

/* Like the kernel's LTO-safe initcalls: one uniquely named section per
 * object and function, ordered by initcalls.lds / prog.lds. */
#define device_initcall(fn)                                                  \
	static initcall_t __initcall_##fn __attribute__((used,               \
		section(".initcall6.init.." __stringify(__KBUILD_MODNAME) "_" #fn))) = fn

/* arch/x86/kernel/head_64.S */
long mini_write(int fd, const char *buf, size_t len);
void mini_exit(int code) __attribute__((noreturn));

/* kernel/printk.c */
void printk(const char *s);
void printk_num(const char *label, long v);
#define pr_info(s) printk(pr_fmt(s))

/* kernel/sched.c */
int sched_scale(int x);
int sched_ticks(void);

/* mm/slab.c */
int slab_objects(int n);
const char *slab_tag(void);

/* arch/x86/kvm/x86.c, virt/kvm/kvm_main.c */
int kvm_arch_vcpus(void);
int kvm_vcpus_per_vm(void);

/* lib/string.c (lazy archive member, used) */
size_t mini_strlen(const char *s);
char *mini_utoa(unsigned long v, char *end);

/* lib/unused.c (lazy archive member, never pulled in) */
int unused_helper(int x);

#endif
