// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
/* lib/lib.a member that the link pulls in lazily. */
#include "mini.h"

size_t mini_strlen(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	return n;
}

/* Writes v in decimal ending just before `end`; returns its first char. */
char *mini_utoa(unsigned long v, char *end)
{
	do {
		*--end = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	return end;
}
