// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
/* Second object of the multi-object module foo.o. */
#include "mini.h"

int foo_util_value(int x)
{
	return x + sched_scale(x);
}
