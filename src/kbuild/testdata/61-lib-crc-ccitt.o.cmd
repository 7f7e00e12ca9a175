cmd_lib/crc-ccitt.o := clang-14 -Wp,-MMD,lib/.crc-ccitt.o.d -nostdinc -I/var/tmp/kdthin-kernels/src/linux-source-6.1/arch/x86/include -I./arch/x86/include/generated -I/var/tmp/kdthin-kernels/src/linux-source-6.1/include -I./include -I/var/tmp/kdthin-kernels/src/linux-source-6.1/arch/x86/include/uapi -I./arch/x86/include/generated/uapi -I/var/tmp/kdthin-kernels/src/linux-source-6.1/include/uapi -I./include/generated/uapi -include /var/tmp/kdthin-kernels/src/linux-source-6.1/include/linux/compiler-version.h -include /var/tmp/kdthin-kernels/src/linux-source-6.1/include/linux/kconfig.h -include /var/tmp/kdthin-kernels/src/linux-source-6.1/include/linux/compiler_types.h -D__KERNEL__ --target=x86_64-linux-gnu -fintegrated-as -Werror=unknown-warning-option -Werror=ignored-optimization-argument -Qunused-arguments -fmacro-prefix-map=/var/tmp/kdthin-kernels/src/linux-source-6.1/= -Wall -Wundef -Werror=strict-prototypes -Wno-trigraphs -fno-strict-aliasing -fno-common -fshort-wchar -fno-PIE -Werror=implicit-function-declaration -Werror=implicit-int -Werror=return-type -Wno-format-security -std=gnu11 -mno-sse -mno-mmx -mno-sse2 -mno-3dnow -mno-avx -fcf-protection=none -m64 -falign-loops=1 -mno-80387 -mno-fp-ret-in-387 -mstack-alignment=8 -mskip-rax-setup -mtune=generic -mno-red-zone -mcmodel=kernel -Wno-sign-compare -fno-asynchronous-unwind-tables -fno-delete-null-pointer-checks -Wno-frame-address -Wno-address-of-packed-member -Os -Wframe-larger-than=2048 -fno-stack-protector -Wno-gnu -Wno-unused-but-set-variable -Wno-unused-const-variable -fomit-frame-pointer -ftrivial-auto-var-init=zero -enable-trivial-auto-var-init-zero-knowing-it-will-be-removed-from-clang -fno-stack-clash-protection -fno-lto -flto=thin -fsplit-lto-unit -fvisibility=hidden -Wvla -Wno-pointer-sign -Wcast-function-type -Wimplicit-fallthrough -fno-strict-overflow -fno-stack-check -Werror=date-time -Werror=incompatible-pointer-types -fno-builtin-wcslen -Wno-initializer-overrides -Wno-format -Wformat-extra-args -Wformat-invalid-specifier -Wformat-zero-length -Wnonnull -Wformat-insufficient-args -Wno-sign-compare -Wno-pointer-to-enum-cast -Wno-tautological-constant-out-of-range-compare -Wno-unaligned-access -Wno-enum-compare-conditional -I /var/tmp/kdthin-kernels/src/linux-source-6.1/lib -I ./lib  -DMODULE  -DKBUILD_BASENAME='"crc_ccitt"' -DKBUILD_MODNAME='"crc_ccitt"' -D__KBUILD_MODNAME=kmod_crc_ccitt -c -o lib/crc-ccitt.o /var/tmp/kdthin-kernels/src/linux-source-6.1/lib/crc-ccitt.c  ; /tmp/tgt-k/release/kdthin-ld -m elf_x86_64 -mllvm -import-instr-limit=5 -z noexecstack   -r -o lib/.tmp_crc-ccitt.o lib/crc-ccitt.o; mv lib/.tmp_crc-ccitt.o lib/crc-ccitt.o  ; ./tools/objtool/objtool --hacks=jump_label --hacks=noinstr --static-call --uaccess  --link  --module lib/crc-ccitt.o

source_lib/crc-ccitt.o := /var/tmp/kdthin-kernels/src/linux-source-6.1/lib/crc-ccitt.c

deps_lib/crc-ccitt.o := \
  /var/tmp/kdthin-kernels/src/linux-source-6.1/include/linux/compiler-version.h \
    $(wildcard include/config/CC_VERSION_TEXT) \
  /var/tmp/kdthin-kernels/src/linux-source-6.1/include/linux/kconfig.h

lib/crc-ccitt.o: $(deps_lib/crc-ccitt.o)

$(deps_lib/crc-ccitt.o):

lib/crc-ccitt.o: $(wildcard ./tools/objtool/objtool)
#SYMVER crc_ccitt_table 0x7f03b6a9
#SYMVER crc_ccitt_false_table 0x44469a76
#SYMVER crc_ccitt 0x52ecbc75
#SYMVER crc_ccitt_false 0x0cc4b4b6
