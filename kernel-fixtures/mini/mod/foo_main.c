// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
/* First object of the multi-object module foo.o (linked from foo.mod). */
#include "mini.h"

int foo_util_value(int x);

int foo_init(void)
{
	printk(KBUILD_MODNAME ": loaded\n");
	return foo_util_value(5);
}
