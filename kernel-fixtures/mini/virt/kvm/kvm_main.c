// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
/* Compiled as arch/x86/kvm/../../../virt/kvm/kvm_main.o, like arm64's KVM
 * objects: its .cmd file names the object by that path, the flattened
 * vmlinux.a by virt/kvm/kvm_main.o. */
#include "mini.h"

int kvm_vcpus_per_vm(void)
{
	return 4;
}
