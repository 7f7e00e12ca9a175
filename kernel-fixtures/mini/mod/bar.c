// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
/* Single-object module: kbuild runs `$(LD) -r` on it right after the
 * compile, before its .cmd file exists. */
#include "mini.h"

int bar_init(void)
{
	printk(KBUILD_MODNAME ": loaded\n");
	return 0;
}
