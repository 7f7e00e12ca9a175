// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
/* The "kernel" entry: runs the initcalls, then prints values computed in
 * other translation units (small enough for ThinLTO to import and inline). */
#include "mini.h"

extern initcall_t __initcall_start[], __initcall_end[];

static int run_initcalls(void)
{
	int sum = 0;
	for (initcall_t *fn = __initcall_start; fn < __initcall_end; fn++)
		sum += (*fn)();
	return sum;
}

int start_kernel(void)
{
	printk("mini kernel booting\n");
	printk_num("initcalls", run_initcalls());
	printk_num("sched_scale(7)", sched_scale(7));
	printk_num("slab_objects(4)", slab_objects(4));
	printk("slab tag: ");
	printk(slab_tag());
	printk("\n");
	printk_num("ticks", sched_ticks());
	printk_num("kvm vcpus", kvm_arch_vcpus());
	return 0;
}
