// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
/* Built with shell-quoted defines holding spaces, '$' and '#':
 *   -D'pr_fmt(fmt)="slab: " fmt' -D'SLAB_TAG="$tag #1"'
 * which kbuild's .cmd stores as $$tag and $(pound)1. */
#include "mini.h"

#ifndef SLAB_TAG
#define SLAB_TAG "untagged"
#endif

int slab_objects(int n)
{
	return n * 16 + sched_scale(1);
}

const char *slab_tag(void)
{
	return SLAB_TAG;
}

static int slab_init(void)
{
	pr_info("init\n");
	return 2;
}
device_initcall(slab_init);
