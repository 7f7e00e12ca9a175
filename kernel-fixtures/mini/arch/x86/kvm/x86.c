// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
/* Built into arch/x86/kvm/built-in.a together with virt/kvm/kvm_main.o,
 * which kbuild names through this directory (see the Makefile). */
#include "mini.h"

int kvm_arch_vcpus(void)
{
	return kvm_vcpus_per_vm() * 2;
}
