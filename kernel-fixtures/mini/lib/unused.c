// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
/* lib/lib.a member that nothing references: a lazy member the link must
 * leave out. */
#include "mini.h"

int unused_helper(int x)
{
	return x * 42 + 1;
}
