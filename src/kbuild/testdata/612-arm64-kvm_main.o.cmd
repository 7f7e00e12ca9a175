savedcmd_arch/arm64/kvm/../../../virt/kvm/kvm_main.o := clang-22 -Wp,-MMD,arch/arm64/kvm/../../../virt/kvm/.kvm_main.o.d -nostdinc -I/src/linux/arch/arm64/include -I./arch/arm64/include/generated -I/src/linux/include -I./include -I/src/linux/arch/arm64/include/uapi -I./arch/arm64/include/generated/uapi -I/src/linux/include/uapi -I./include/generated/uapi -include /src/linux/include/linux/compiler-version.h -include /src/linux/include/linux/kconfig.h -include /src/linux/include/linux/compiler_types.h -D__KERNEL__ -mlittle-endian --target=aarch64-linux-gnu -fintegrated-as -Werror=unknown-warning-option -Werror=ignored-optimization-argument -Werror=option-ignored -Werror=unused-command-line-argument -fmacro-prefix-map=/src/linux/= -std=gnu11 -fshort-wchar -funsigned-char -fno-common -fno-PIE -fno-strict-aliasing -mgeneral-regs-only -DCONFIG_CC_HAS_K_CONSTRAINT=1 -Wno-psabi -fno-asynchronous-unwind-tables -fno-unwind-tables -mbranch-protection=pac-ret -Wa,-march=armv8.5-a -DARM64_ASM_ARCH='"armv8.5-a"' -DKASAN_SHADOW_SCALE_SHIFT= -fno-delete-null-pointer-checks -O2 -fstack-protector-strong -fno-omit-frame-pointer -fno-optimize-sibling-calls -ftrivial-auto-var-init=zero -fno-stack-clash-protection -fno-lto -flto=thin -fsplit-lto-unit -fvisibility=hidden -fstrict-flex-arrays=3 -fno-strict-overflow -fno-stack-check -Wall -Wundef -Werror=implicit-function-declaration -Werror=date-time -I /src/linux/arch/arm64/kvm -I /src/linux/arch/arm64/kvm/../../../virt/kvm -I ./arch/arm64/kvm  -DKBUILD_MODFILE='"arch/arm64/kvm/kvm"' -DKBUILD_BASENAME='"kvm_main"' -DKBUILD_MODNAME='"kvm"' -D__KBUILD_MODNAME=kmod_kvm -c -o arch/arm64/kvm/../../../virt/kvm/kvm_main.o /src/linux/arch/arm64/kvm/../../../virt/kvm/kvm_main.c  

source_arch/arm64/kvm/../../../virt/kvm/kvm_main.o := /src/linux/arch/arm64/kvm/../../../virt/kvm/kvm_main.c

deps_arch/arm64/kvm/../../../virt/kvm/kvm_main.o := \
  /src/linux/include/linux/compiler-version.h \
    $(wildcard include/config/CC_VERSION_TEXT) \
  /src/linux/include/linux/kvm_host.h \

arch/arm64/kvm/../../../virt/kvm/kvm_main.o: $(deps_arch/arm64/kvm/../../../virt/kvm/kvm_main.o)

$(deps_arch/arm64/kvm/../../../virt/kvm/kvm_main.o):
