// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
/* Built with -DSCALE=3 (so sched_scale(7) is 21) and -ffunction-sections,
 * a codegen flag that bitcode does not record: only a backend compile
 * that got this object's own flags puts sched_scale in .text.sched_scale. */
#include "mini.h"

#ifndef SCALE
#define SCALE 1
#endif

static int ticks;

int sched_scale(int x)
{
	return x * SCALE;
}

int sched_ticks(void)
{
	return ticks;
}

static int sched_init(void)
{
	ticks += 100;
	pr_info("sched: init\n");
	return 1;
}
device_initcall(sched_init);
