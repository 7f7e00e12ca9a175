// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
/* Console output. Compiled with -fno-inline (see the Makefile). */
#include "mini.h"

void printk(const char *s)
{
	mini_write(1, s, mini_strlen(s));
}

void printk_num(const char *label, long v)
{
	char buf[24];
	char *end = buf + sizeof(buf);
	char *p;

	printk(label);
	printk(" = ");
	if (v < 0) {
		printk("-");
		v = -v;
	}
	p = mini_utoa((unsigned long)v, end - 1);
	end[-1] = '\0';
	printk(p);
	printk("\n");
}
