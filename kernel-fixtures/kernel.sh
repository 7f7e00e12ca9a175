#!/usr/bin/env bash
# kernel-fixtures/kernel.sh: build real Linux kernels with kdthin-ld and check
# them against ld.lld's own in-process ThinLTO.
#
#   kernel.sh test      what `make kernel-test` (CI) runs: TEST_SPECS below
#                       (x86_64 6.12:22 and 6.1:14, arm64 6.12:22)
#   kernel.sh matrix    every combination (MATRIX_SPECS below: 6.12 with LLVM 22
#                       and 19, 6.1 with LLVM 14, on x86_64 and arm64; 6.12
#                       with LLVM 22 on riscv64); writes docs/KERNEL-MATRIX.md
#   kernel.sh demo      one 6.12 build with kdthin-ld, output live, then a boot
#   kernel.sh run SPEC...   SPEC is ARCH:KERNEL:LLVM:STEPS, e.g.
#                       arm64:6.12:22:ref,kdthin,boot; without ARCH (KERNEL:LLVM:STEPS)
#                       it is x86_64
#   kernel.sh deps      install what the harness needs (apt) and stop
#
# Architectures (ARCH of a SPEC): x86_64, arm64, riscv64. Every kernel is
# cross-built from this machine with `make ARCH=<arch> LLVM=-<N>` (clang and
# lld target every architecture; no GNU cross binutils) and booted in qemu's
# TCG: x86_64 on the pc machine, arm64 on `virt` (cortex-a57, PL011 console
# ttyAMA0), riscv64 on `virt` (Debian's OpenSBI, 8250 console ttyS0).
# Kernels are Debian's linux-source-X packages, configured as the architecture's
# tinyconfig + configs/lto-boot.config (+ configs/<arch>.config when there is
# one), built from scratch with make -j$(nproc).
#
# Steps of a SPEC (run in this order, whatever order they are given in):
#   ref     out-of-tree (O=) build with the real ld.lld: the reference
#   kdthin  out-of-tree build with LD=kdthin-ld
#   intree  in-tree build with LD=kdthin-ld, in a private copy of the source
#           tree (an in-tree build would make the shared tree unusable for O=)
#   boot    boot every kernel of this SPEC in qemu (TCG) with an initramfs
#           holding initramfs/init.c (built for the architecture with clang,
#           no libc) and the modules; passes when
#           init's marker and a successful finit_module of each module show
#           on the serial console within the time limit
# Each kdthin-ld build is checked: every .config option of the fragments set;
# .config identical to the reference's; vmlinux.o and each multi-object module
# went through kdthin-ld's distributed path (its `LTO` lines), single-object
# modules too (their `ld -r` runs inside the compile recipe, before kbuild
# writes their .cmd: kdthin-ld reads the compile from the recipe's script);
# no link fell back to in-process ThinLTO;
# defined global symbols (llvm-nm: name, type) of vmlinux.o and every .ko equal
# the reference's; no objtool/modpost warning the reference lacks; and
# `scripts/extract-ikconfig vmlinux` equals .config (checked for every build).
# kdthin-ld's backend cache (KDTHIN_CACHE_DIR) is private to each build and
# starts empty, so every backend runs.
# Beyond that, the table reports any other difference from ld.lld's output
# (symbol binding/visibility and sizes, vmlinux.o's section count, the final
# vmlinux's global symbols); with KDTHIN_KERNEL_STRICT=1 those fail too.
# Nothing assumes objtool (x86 only): its warnings are compared with the
# reference's like modpost's, and an arm64 build simply has none.
#
# Environment:
#   KDTHIN_BIN               kdthin-ld to test (default: target/release/kdthin-ld);
#                            a bare name (kdthin-ld: the installed package's) is
#                            looked up on PATH, and kbuild gets LD=<name> as given
#   KDTHIN_KERNEL_WORK       work folder (default /var/tmp/kdthin-kernels): sources,
#                            build trees, logs; reused between runs, never committed
#   KDTHIN_KERNEL_SRC_6_12   use this extracted source tree for 6.12 instead of
#                            extracting the Debian tarball (likewise _6_1); it
#                            must be clean, it is only read
#   KDTHIN_KERNEL_REUSE_REF  0: rebuild reference kernels even when an earlier run
#                            built one from the same inputs (default 1: reuse)
#   KDTHIN_KERNEL_JOBS       make -j (default: nproc)
#   KDTHIN_KERNEL_V          kbuild V= (default 0; 1 also logs kdthin-ld's commands)
#   KDTHIN_KERNEL_STRICT     1: any difference from ld.lld's output fails (see above)
#   KDTHIN_BOOT_TIMEOUT      seconds per boot (default 240)
#   KDTHIN_KERNEL_ARCH       the architecture of `demo` (default x86_64); for test
#                            and matrix, run only the SPECs of this architecture
#                            (a matrix run so narrowed does not rewrite the doc)
#   KDTHIN_NO_APT            1: never run apt-get, fail if something is missing

set -Eeuo pipefail
shopt -s nullglob

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
WORK=${KDTHIN_KERNEL_WORK:-/var/tmp/kdthin-kernels}
KDTHIN=${KDTHIN_BIN:-$REPO/target/release/kdthin-ld}
FRAGMENT=$HERE/configs/lto-boot.config
INIT_C=$HERE/initramfs/init.c
JOBS=${KDTHIN_KERNEL_JOBS:-$(nproc)}
KV=${KDTHIN_KERNEL_V:-0}
BOOT_TIMEOUT=${KDTHIN_BOOT_TIMEOUT:-240}
REUSE_REF=${KDTHIN_KERNEL_REUSE_REF:-1}
MATRIX_DOC=$REPO/docs/KERNEL-MATRIX.md

# CI: both .cmd formats (6.12 `savedcmd_`, 6.1 `cmd_`), an in-tree build,
# one boot of each linker's kernel, and a cross-built arm64 kernel; six
# tinyconfig builds (references are reused between runs, see ref_key).
TEST_SPECS=("x86_64:6.12:22:ref,kdthin,boot" "x86_64:6.1:14:ref,intree" "arm64:6.12:22:ref,kdthin,boot")
MATRIX_SPECS=("x86_64:6.12:22:ref,kdthin,boot" "x86_64:6.12:19:ref,kdthin,boot" "x86_64:6.1:14:ref,kdthin,intree,boot"
	"arm64:6.12:22:ref,kdthin,boot" "arm64:6.1:14:ref,kdthin,boot" "riscv64:6.12:22:ref,kdthin,boot")
ARCHES=(x86_64 arm64 riscv64)
STEP_ORDER=(ref kdthin intree boot)
# Modules the fragment builds and init loads; path without .ko, in the object tree.
BOOT_MODULES=(fs/configfs/configfs lib/crc-ccitt)
INIT_MARK='KDTHIN-INIT:'

# What the kernel targets need beyond the toolchains and each
# architecture's qemu (QEMU_PKG, the `boot` lines): the `kernel` lines of
# mk/deps.txt, the list every dependency of the tests is declared in.
mapfile -t BASE_PACKAGES < <(sed 's/#.*//' "$REPO/mk/deps.txt" | awk '$1 == "kernel" { print $2 }')
((${#BASE_PACKAGES[@]})) || { echo "kernel.sh: $REPO/mk/deps.txt declares no kernel packages" >&2; exit 1; }

# A parent make (`make kernel-test -s V=1 ...`) must not leak its flags, its
# jobserver or its command-line variables into the kernel's make: `-s` would
# also silence kdthin-ld's LTO lines the checks look for.
unset MAKEFLAGS MFLAGS MAKEOVERRIDES MAKELEVEL GNUMAKEFLAGS
unset KBUILD_OUTPUT KCONFIG_CONFIG ARCH SRCARCH CROSS_COMPILE LLVM CC LD HOSTCC O V KDTHIN_LD

# ---------------------------------------------------------------------------
# Messages, failure context, results

# What is running now; printed when something fails.
CUR_ARCH=- CUR_KVER=- CUR_LLVM=- CUR_NAME=- CUR_STEP=setup CUR_TREE=- CUR_LOGS=-
RESULTS=$WORK/results

say() { printf '%s\n' "kernel.sh: $*"; }

# Store one field of the current build's results row.
record() {
	[[ $CUR_NAME != - ]] || return 0
	mkdir -p "$RESULTS"
	printf '%s\n' "$2" >"$RESULTS/$CUR_NAME.$1"
}

report_failure() {
	{
		echo
		echo "kernel.sh: FAILED: $CUR_ARCH kernel $CUR_KVER, clang-$CUR_LLVM, build $CUR_NAME, step $CUR_STEP"
		echo "  $*"
		echo "  build tree kept: $CUR_TREE"
		echo "  logs: $CUR_LOGS"
	} >&2
	record result "FAIL: $CUR_STEP"
}

fail() {
	report_failure "$*"
	exit 1
}

err_trap() { trap 'report_failure "command failed (exit $?): $BASH_COMMAND (line $LINENO)"' ERR; }
err_trap

step() {
	CUR_STEP=$1
	say "[$CUR_NAME] $1"
}

now() { printf '%s' "$EPOCHREALTIME"; }

# Seconds since $1 as e.g. "2m05s".
elapsed() {
	local s
	s=$(awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%d", b - a + 0.5 }')
	printf '%dm%02ds' $((s / 60)) $((s % 60))
}

# Run a command with its output appended to a log; on failure show the tail.
logged() {
	local log=$1
	shift
	printf '+ %s\n' "$*" >>"$log"
	if ! "$@" >>"$log" 2>&1; then
		echo "---- last 40 lines of $log ----" >&2
		tail -n 40 "$log" >&2
		fail "failed: $*"
	fi
}

# ---------------------------------------------------------------------------
# Packages and sources

need_root() {
	if [[ $EUID -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

APT_UPDATED=0
ensure_packages() {
	local missing=() p
	for p in "$@"; do
		dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
	done
	((${#missing[@]})) || return 0
	[[ ${KDTHIN_NO_APT:-0} != 1 ]] || fail "missing packages (KDTHIN_NO_APT=1): ${missing[*]}"
	say "installing: ${missing[*]}"
	if ! need_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"; then
		((APT_UPDATED == 0)) || fail "apt-get install ${missing[*]} failed"
		APT_UPDATED=1
		need_root apt-get update
		need_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" ||
			fail "apt-get install ${missing[*]} failed"
	fi
}

# ensure_toolchain LLVM [more packages]
ensure_toolchain() { ensure_packages "clang-$1" "lld-$1" "llvm-$1" "${@:2}"; }

# The pristine source tree of a kernel version, extracted on first use from
# Debian's linux-source-X package (or the tree named by KDTHIN_KERNEL_SRC_X_Y).
source_tree() {
	local kver=$1 var dir tarball
	var=KDTHIN_KERNEL_SRC_${kver//./_}
	if [[ -n ${!var:-} ]]; then
		[[ -f ${!var}/Makefile ]] || fail "$var=${!var}: not a kernel source tree"
		printf '%s\n' "${!var}"
		return
	fi
	dir=$WORK/src/linux-source-$kver
	if [[ ! -f $dir/Makefile ]]; then
		tarball=/usr/src/linux-source-$kver.tar.xz
		[[ -f $tarball ]] || ensure_packages "linux-source-$kver" >&2
		[[ -f $tarball ]] || fail "$tarball missing after installing linux-source-$kver"
		say "extracting $tarball into $WORK/src" >&2
		rm -rf "$dir.tmp"
		mkdir -p "$dir.tmp"
		tar -C "$dir.tmp" -xf "$tarball"
		mv "$dir.tmp/linux-source-$kver" "$dir"
		rmdir "$dir.tmp"
	fi
	printf '%s\n' "$dir"
}

# ---------------------------------------------------------------------------
# Architectures

# Set by arch_setup: kbuild's ARCH=, the image qemu boots (in the object
# tree), clang's target for init, qemu (binary, its Debian package, machine
# options, console) and the extra config fragment, if any. The virt
# machines get `-nic none`: their default virtio NIC wants an option ROM
# (efi-virtio.rom) from ipxe-qemu, which qemu only recommends, and the
# harness has no use for a network.
K_ARCH='' IMAGE='' CLANG_TARGET='' QEMU='' CONSOLE='' QEMU_PKGS=() QEMU_MACHINE=() FRAGMENTS=()

arch_setup() {
	CUR_ARCH=$1
	FRAGMENTS=("$FRAGMENT")
	QEMU_MACHINE=()
	case $1 in
	x86_64)
		K_ARCH=x86_64 IMAGE=arch/x86/boot/bzImage CLANG_TARGET=x86_64-linux-gnu
		QEMU=qemu-system-x86_64 CONSOLE=ttyS0
		QEMU_PKGS=(qemu-system-x86)
		;;
	arm64)
		K_ARCH=arm64 IMAGE=arch/arm64/boot/Image CLANG_TARGET=aarch64-linux-gnu
		QEMU=qemu-system-aarch64 CONSOLE=ttyAMA0
		QEMU_PKGS=(qemu-system-arm)
		QEMU_MACHINE=(-M virt -cpu cortex-a57 -nic none)
		FRAGMENTS+=("$HERE/configs/arm64.config")
		;;
	riscv64)
		# Debian's qemu-system-misc has no OpenSBI of its own: the
		# opensbi package's firmware is named with -bios.
		K_ARCH=riscv IMAGE=arch/riscv/boot/Image CLANG_TARGET=riscv64-linux-gnu
		QEMU=qemu-system-riscv64 CONSOLE=ttyS0
		QEMU_PKGS=(qemu-system-misc opensbi)
		QEMU_MACHINE=(-M virt -bios /usr/lib/riscv64-linux-gnu/opensbi/generic/fw_dynamic.bin -nic none)
		FRAGMENTS+=("$HERE/configs/riscv64.config")
		;;
	*) fail "unknown architecture '$1' (known: ${ARCHES[*]})" ;;
	esac
}

# parse_spec SPEC: SP_ARCH SP_KVER SP_LLVM SP_STEPS. ARCH:KERNEL:LLVM:STEPS, or
# KERNEL:LLVM:STEPS for x86_64 (the form from before there were others).
SP_ARCH='' SP_KVER='' SP_LLVM='' SP_STEPS=''
parse_spec() {
	local a b c d
	IFS=: read -r a b c d <<<"$1"
	if [[ -z $d ]]; then
		SP_ARCH=x86_64 SP_KVER=$a SP_LLVM=$b SP_STEPS=$c
	else
		SP_ARCH=$a SP_KVER=$b SP_LLVM=$c SP_STEPS=$d
	fi
	[[ -n $SP_ARCH && -n $SP_KVER && -n $SP_LLVM && -n $SP_STEPS ]] ||
		fail "bad SPEC '$1' (want ARCH:KERNEL:LLVM:STEPS, e.g. arm64:6.12:22:ref,kdthin,boot)"
	[[ " ${ARCHES[*]} " == *" $SP_ARCH "* ]] || fail "unknown architecture '$SP_ARCH' in '$1' (known: ${ARCHES[*]})"
}

# The name of a build (its tree, logs and results): the architecture first,
# so that two architectures' builds of one kernel never share a tree.
build_name() { printf '%s-%s-llvm%s-%s' "$1" "$2" "$3" "$4"; }

# ---------------------------------------------------------------------------
# Building

# Set by setup_build for the build named $CUR_NAME.
SRC='' OBJ='' LOGS='' KIND='' LLVM_N='' CACHE='' KMAKE=()

# setup_build ARCH KVER LLVM KIND: names, trees and the kernel make command line.
setup_build() {
	local arch=$1 kver=$2 llvm=$3 kind=$4
	arch_setup "$arch"
	KIND=$kind LLVM_N=$llvm
	CUR_KVER=$kver CUR_LLVM=$llvm CUR_NAME=$(build_name "$arch" "$kver" "$llvm" "$kind")
	SRC=$(source_tree "$kver")
	OBJ=$WORK/build/$CUR_NAME
	LOGS=$WORK/logs/$CUR_NAME
	CUR_TREE=$OBJ CUR_LOGS=$LOGS
	# kdthin-ld's backend cache: private to the build and emptied before it
	# (see build), so every backend really runs and runs do not depend on
	# what ~/.cache/kdthin holds.
	CACHE=$WORK/cache/$CUR_NAME
	KMAKE=(env "KDTHIN_CACHE_DIR=$CACHE" make -j"$JOBS" "ARCH=$K_ARCH" "LLVM=-$llvm" "V=$KV")
	case $kind in
	ref) KMAKE+=(-C "$SRC" "O=$OBJ") ;;
	kdthin) KMAKE+=(-C "$SRC" "O=$OBJ" "LD=$KDTHIN_LD_ARG") ;;
	intree) KMAKE+=(-C "$OBJ" "LD=$KDTHIN_LD_ARG") ;;
	*) fail "unknown build kind $kind" ;;
	esac
}

# What a reference build depends on; equal keys let a later run reuse it.
ref_key() {
	{
		echo "reference format 2" # bump when configure/build change meaning
		echo "ARCH=$K_ARCH"
		cat "${FRAGMENTS[@]}" | sha256sum
		stat -L -c '%n %s %Y' "$SRC/Makefile" "$SRC/scripts/Makefile.build"
		"clang-$LLVM_N" --version | head -n 1
		"ld.lld-$LLVM_N" --version
	} 2>&1 | sha256sum | cut -d' ' -f1
}

fresh_tree() {
	rm -rf "$OBJ" "$CACHE"
	if [[ $KIND == intree ]]; then
		# A private copy: an in-tree build leaves .config and objects in the
		# source tree, after which kbuild refuses O= builds from it.
		rm -rf "$OBJ.tmp"
		mkdir -p "$OBJ.tmp"
		cp -a "$SRC/." "$OBJ.tmp/"
		mv "$OBJ.tmp" "$OBJ"
	else
		mkdir -p "$OBJ"
	fi
}

# Every line of the fragment must hold in .config.
verify_fragment() {
	local config=$1 fragment=$2 line sym bad=()
	while IFS= read -r line; do
		if [[ $line =~ ^(CONFIG_[A-Za-z0-9_]+)=(.*)$ ]]; then
			grep -qxF -- "$line" "$config" || bad+=("$line (got: $(grep -E "^(# )?${BASH_REMATCH[1]}[= ]" "$config" || echo unset))")
		elif [[ $line =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
			sym=${BASH_REMATCH[1]}
			! grep -q "^$sym=" "$config" || bad+=("$line (got: $(grep "^$sym=" "$config"))")
		fi
	done <"$fragment"
	((${#bad[@]} == 0)) || fail "options of $fragment not in effect after olddefconfig: ${bad[*]}"
}

configure() {
	step configure
	logged "$LOGS/config.log" "${KMAKE[@]}" tinyconfig
	logged "$LOGS/config.log" "$SRC/scripts/kconfig/merge_config.sh" -m -O "$OBJ" "$OBJ/.config" "${FRAGMENTS[@]}"
	logged "$LOGS/config.log" "${KMAKE[@]}" olddefconfig
	local f
	for f in "${FRAGMENTS[@]}"; do verify_fragment "$OBJ/.config" "$f"; done
}

compile_kernel() {
	local t0
	step build
	t0=$(now)
	logged "$LOGS/build.log" "${KMAKE[@]}" all
	record time "$(elapsed "$t0")"
	[[ -f $OBJ/$IMAGE ]] || fail "no $IMAGE"
}

# build ARCH KVER LLVM KIND: configure and build from scratch (a reference build
# may be reused, see ref_key), then the checks every build gets.
build() {
	setup_build "$@"
	local key=
	if [[ $KIND == ref ]]; then
		key=$(ref_key)
		if [[ $REUSE_REF != 0 && -f $OBJ/.kdthin-harness-ok && $(cat "$OBJ/.kdthin-harness-ok") == "$key" ]]; then
			say "[$CUR_NAME] reusing the reference build in $OBJ (KDTHIN_KERNEL_REUSE_REF=0 rebuilds)"
			rm -f "$RESULTS/$CUR_NAME".*
			record time "$(cat "$LOGS/time" 2>/dev/null || echo '?') (reused)"
			check_ikconfig
			record result ok
			return
		fi
	fi
	say "[$CUR_NAME] tree $OBJ, logs $LOGS"
	rm -rf "$LOGS"
	mkdir -p "$LOGS"
	rm -f "$RESULTS/$CUR_NAME".*
	fresh_tree
	configure
	compile_kernel
	check_ikconfig
	cp "$RESULTS/$CUR_NAME.time" "$LOGS/time"
	[[ -z $key ]] || printf '%s\n' "$key" >"$OBJ/.kdthin-harness-ok"
	record result ok
}

# ---------------------------------------------------------------------------
# Checks

check_ikconfig() {
	step "check extract-ikconfig"
	"$SRC/scripts/extract-ikconfig" "$OBJ/vmlinux" >"$LOGS/ikconfig.txt" 2>"$LOGS/ikconfig.err" ||
		fail "scripts/extract-ikconfig vmlinux failed: $(cat "$LOGS/ikconfig.err")"
	cmp -s "$LOGS/ikconfig.txt" "$OBJ/.config" ||
		fail "the configuration embedded in vmlinux differs from .config: diff $LOGS/ikconfig.txt $OBJ/.config"
	record ikconfig "= .config"
}

# Object paths (foo/bar.o) of the modules of a build tree, sorted.
module_objects() {
	sed -e 's/\.ko$/.o/' "$1/modules.order" | LC_ALL=C sort
}

# The `LTO` line kdthin-ld prints for OUTPUT: "  LTO     OUTPUT  N modules, M compiled, Ts".
lto_line() {
	awk -v out="$2" '$1 == "LTO" && $2 == out { sub(/^ *LTO +[^ ]+ +/, ""); print; found = 1; exit }
		END { exit !found }' "$1"
}

# kdthin-ld's messages about OUTPUT, for error messages.
said_about() {
	grep -F "kdthin-ld: $2: " "$1" || echo "nothing"
}

# The distributed path took vmlinux.o, every multi-object module and every
# single-object module (whose `ld -r` runs inside its compile recipe, before
# kbuild writes its .cmd: kdthin-ld takes the compile from the recipe), and
# nothing fell back in-process.
check_lto_lines() {
	step "check kdthin-ld LTO lines"
	local log=$LOGS/build.log line o mod n tmp multi=0 single=0
	grep -n '^kdthin-ld: error' "$log" && fail "kdthin-ld reported errors (see $log)"
	line=$(lto_line "$log" vmlinux.o) ||
		fail "no '  LTO     vmlinux.o ...' line in $log: vmlinux.o was not linked by the distributed path; kdthin-ld said: $(said_about "$log" vmlinux.o)"
	record vmlinux "$line"
	while read -r o; do
		mod=${o%.o}.mod
		[[ -f $OBJ/$mod ]] || fail "$mod missing"
		n=$(grep -c . "$OBJ/$mod")
		if ((n > 1)); then
			lto_line "$log" "$o" >/dev/null ||
				fail "no LTO line for the multi-object module $o ($n objects, $mod); kdthin-ld said: $(said_about "$log" "$o")"
			multi=$((multi + 1))
		else
			# Linked as `ld -r -o <dir>/.tmp_<name>.o <dir>/<name>.o`.
			tmp=$(dirname "$o")/.tmp_$(basename "$o")
			lto_line "$log" "$tmp" >/dev/null ||
				fail "no LTO line for the single-object module $o (linked as $tmp): its compile was not taken from the recipe; kdthin-ld said: $(said_about "$log" "$tmp")"
			single=$((single + 1))
		fi
	done < <(module_objects "$OBJ")
	# Any fallback is a regression.
	local fallbacks
	fallbacks=$(grep 'linking in-process' "$log" || true)
	[[ -z $fallbacks ]] || fail "unexpected in-process fallbacks:"$'\n'"$fallbacks"
	record multi "$multi/$multi via LTO"
	record single "$single/$single via LTO"
}

# Symbol listings compared with the reference, one line per defined
# non-local symbol, sorted. In-tree objects are compared with .llvm.<hash>
# suffixes masked: ThinLTO derives that hash from the bitcode, which holds
# the source path (relative in-tree, absolute with O=).
mask_hashes() {
	if [[ $KIND == intree ]]; then sed -E 's/\.llvm\.[0-9]+( |$)/.llvm.HASH\1/'; else cat; fi
}

# "name type" from llvm-nm: the required check.
nm_symbols() {
	"llvm-nm-$LLVM_N" --defined-only -g -P "$1" | awk '{ print $1, $2 }' | mask_hashes | LC_ALL=C sort -u
}

# "name type binding visibility" from the ELF symbol table.
elf_symbols() {
	"llvm-readelf-$LLVM_N" -sW "$1" |
		awk '$1 ~ /^[0-9]+:$/ && $5 != "LOCAL" && $7 != "UND" && NF >= 8 { print $8, $4, $5, $6 }' |
		mask_hashes | LC_ALL=C sort -u
}

# "name size" of defined non-local functions and objects.
elf_sizes() {
	"llvm-readelf-$LLVM_N" -sW "$1" |
		awk '$1 ~ /^[0-9]+:$/ && $5 != "LOCAL" && $7 != "UND" && NF >= 8 { print $8, $3 }' |
		mask_hashes | LC_ALL=C sort -u
}

section_count() {
	"llvm-readelf-$LLVM_N" -SW "$1" | grep -c '^ *\[ *[0-9]'
}

# compare_listing LISTER REF_FILE FILE: 0 when equal; the diff is kept in
# $LOGS/syms/<file>.<lister>.diff. Prints the number of differing names.
compare_listing() {
	local lister=$1 ref=$2 f=$3 out
	out=$LOGS/syms/${f//\//_}.$lister
	"$lister" "$ref/$f" >"$out.ref"
	"$lister" "$OBJ/$f" >"$out"
	[[ -s $out ]] || fail "$f: no defined global symbols"
	if diff -u "$out.ref" "$out" >"$out.diff"; then
		echo 0
	else
		grep -E '^[-+][^-+]' "$out.diff" | cut -c2- | cut -d' ' -f1 | sort -u | grep -c . || true
	fi
}

# The required check: defined global symbols (llvm-nm, name and type) of
# vmlinux.o and every .ko equal the reference's.
check_symbols() {
	local ref=$1 f n files=0 bad=()
	step "check symbols against $(basename "$ref")"
	mkdir -p "$LOGS/syms"
	cmp -s "$ref/.config" "$OBJ/.config" || fail ".config differs from the reference's: diff $ref/.config $OBJ/.config"
	diff <(module_objects "$ref") <(module_objects "$OBJ") >"$LOGS/modules.diff" ||
		fail "not the same modules as the reference: $LOGS/modules.diff"
	for f in vmlinux.o $(module_objects "$OBJ" | sed 's/\.o$/.ko/'); do
		n=$(compare_listing nm_symbols "$ref" "$f")
		if ((n != 0)); then
			bad+=("$f")
			head -n 30 "$LOGS/syms/${f//\//_}.nm_symbols.diff" >&2
		fi
		files=$((files + 1))
	done
	((${#bad[@]} == 0)) || fail "defined global symbols differ from the reference in: ${bad[*]} (diffs in $LOGS/syms/*.diff)"
	record symbols "= ref ($files files)"
}

# Beyond the required check: is the output the same as ld.lld's own? Symbol
# binding/visibility and sizes in vmlinux.o and the .ko files, the number of
# sections of vmlinux.o, and the global symbols of the final vmlinux.
# Reported in the table; fails the build only with KDTHIN_KERNEL_STRICT=1.
check_exact() {
	local ref=$1 f n diffs=() a b
	step "compare output details with $(basename "$ref")"
	for f in vmlinux.o $(module_objects "$OBJ" | sed 's/\.o$/.ko/'); do
		n=$(compare_listing elf_symbols "$ref" "$f")
		((n == 0)) || diffs+=("$f: $n binding/visibility")
		n=$(compare_listing elf_sizes "$ref" "$f")
		((n == 0)) || diffs+=("$f: $n sizes")
	done
	a=$(section_count "$ref/vmlinux.o") b=$(section_count "$OBJ/vmlinux.o")
	[[ $a == "$b" ]] || diffs+=("vmlinux.o: $b sections, ref $a")
	n=$(compare_listing nm_symbols "$ref" vmlinux)
	((n == 0)) || diffs+=("vmlinux: $n global symbols")
	if ((${#diffs[@]} == 0)); then
		record exact identical
		return
	fi
	local all
	all=$(printf '%s; ' "${diffs[@]}")
	all=${all%; }
	record exact "$all"
	say "[$CUR_NAME] output differs from ld.lld's beyond the required checks: $all (diffs in $LOGS/syms)"
	[[ ${KDTHIN_KERNEL_STRICT:-0} == 0 ]] || fail "output differs from ld.lld's (KDTHIN_KERNEL_STRICT=1): $all"
}

# objtool and modpost warnings; the build fails on their errors.
tool_warnings() {
	grep -E 'objtool:|WARNING: modpost:|^WARNING: ' "$1" | sed -E 's/[[:space:]]+$//' | LC_ALL=C sort -u || true
}

check_warnings() {
	local ref=$1 new
	step "check objtool/modpost warnings"
	tool_warnings "$WORK/logs/$(basename "$ref")/build.log" >"$LOGS/warnings.ref"
	tool_warnings "$LOGS/build.log" >"$LOGS/warnings"
	new=$(LC_ALL=C comm -13 "$LOGS/warnings.ref" "$LOGS/warnings")
	[[ -z $new ]] || fail "objtool/modpost warnings the reference build does not have:"$'\n'"$new"
	record warnings "$(grep -c . "$LOGS/warnings" || true)"
}

# check_kdthin_build ARCH KVER LLVM KIND: after a kdthin-ld build.
check_kdthin_build() {
	local ref
	ref=$WORK/build/$(build_name "$1" "$2" "$3" ref)
	setup_build "$@"
	check_lto_lines
	if [[ -f $ref/.kdthin-harness-ok ]]; then
		check_symbols "$ref"
		check_exact "$ref"
		check_warnings "$ref"
	else
		record symbols "(no reference)"
	fi
	record result ok
}

# ---------------------------------------------------------------------------
# Booting

# /init for the architecture of the current build, with the build's clang
# and lld: freestanding, no libc (none is installed for the other
# architectures; init.c makes its system calls itself).
INIT_BIN=
build_init() {
	INIT_BIN=$WORK/initramfs/init-$CUR_ARCH
	mkdir -p "$WORK/initramfs"
	"clang-$LLVM_N" --target="$CLANG_TARGET" -nostdlib -static -ffreestanding -fno-pic -fno-stack-protector \
		-Os -Wall -Werror "--ld-path=/usr/bin/ld.lld-$LLVM_N" -o "$INIT_BIN.tmp" "$INIT_C" ||
		fail "cannot build $INIT_C for $CLANG_TARGET with clang-$LLVM_N"
	mv "$INIT_BIN.tmp" "$INIT_BIN"
}

# initramfs: /init and the modules, as a newc cpio (the kernel's built-in
# initramfs already provides /dev/console).
make_initramfs() {
	local out=$1 stage m
	stage=$LOGS/initramfs
	rm -rf "$stage"
	mkdir -p "$stage/modules"
	cp "$INIT_BIN" "$stage/init"
	for m in "${BOOT_MODULES[@]}"; do
		cp "$OBJ/$m.ko" "$stage/modules/" || fail "$m.ko not built"
	done
	(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >"$out"
}

# Run qemu until init's poweroff (or a panic, or the time limit); the
# serial console goes to $1.
run_qemu() {
	local serial=$1 initrd=$2 pid deadline st=0
	: >"$serial"
	timeout -k 5 "$BOOT_TIMEOUT" "$QEMU" "${QEMU_MACHINE[@]}" -accel tcg -m 256M -smp 1 \
		-nographic -no-reboot -monitor none -serial stdio \
		-kernel "$OBJ/$IMAGE" -initrd "$initrd" \
		-append "console=$CONSOLE panic=-1 oops=panic" </dev/null >"$serial" 2>&1 &
	pid=$!
	deadline=$((SECONDS + BOOT_TIMEOUT + 10))
	# Without ACPI (x86_64), power-off halts the CPU and qemu keeps running: stop it
	# once the kernel says it is done.
	while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
		# kernel/reboot.c's last words: "reboot: Power down", "reboot: Power
		# off not available: System halted instead", "reboot: Restarting system".
		if grep -qE '^reboot: |Kernel panic|Rebooting in' "$serial"; then
			sleep 1
			kill "$pid" 2>/dev/null || true
			break
		fi
		sleep 0.5
	done
	wait "$pid" || st=$?
	# timeout(1) exits 124 when the time limit ended qemu.
	((st != 124)) || echo "kernel.sh: time limit of ${BOOT_TIMEOUT}s reached" >>"$serial"
}

boot_fail() {
	echo "---- last 50 lines of the serial console ($1) ----" >&2
	tr -d '\r' <"$1" | tail -n 50 >&2
	fail "$2"
}

boot_kernel() {
	setup_build "$@"
	local serial=$LOGS/serial.log t0 release m
	step boot
	[[ -f $OBJ/$IMAGE ]] || fail "no kernel to boot ($IMAGE)"
	build_init
	make_initramfs "$LOGS/initramfs.cpio"
	t0=$(now)
	run_qemu "$serial" "$LOGS/initramfs.cpio"
	tr -d '\r' <"$serial" >"$serial.txt"
	release=$(cat "$OBJ/include/config/kernel.release")
	grep -qxF "$INIT_MARK hello from init, kernel $release" "$serial.txt" ||
		boot_fail "$serial" "init's marker (kernel $release) did not appear within ${BOOT_TIMEOUT}s"
	for m in "${BOOT_MODULES[@]}"; do
		grep -qxF "$INIT_MARK finit_module $(basename "$m").ko: ok" "$serial.txt" ||
			boot_fail "$serial" "module $(basename "$m").ko did not load"
	done
	grep -qE "^$INIT_MARK /proc/modules: configfs " "$serial.txt" || boot_fail "$serial" "configfs missing from /proc/modules"
	grep -qxF "$INIT_MARK all modules loaded" "$serial.txt" || boot_fail "$serial" "init did not finish"
	record boot "ok, ${#BOOT_MODULES[@]} modules loaded ($(elapsed "$t0"))"
}

# ---------------------------------------------------------------------------
# Specs, table

has_step() { [[ ,$1, == *,$2,* ]]; }

run_spec() {
	local arch kver llvm steps s kind
	parse_spec "$1"
	arch=$SP_ARCH kver=$SP_KVER llvm=$SP_LLVM steps=$SP_STEPS
	for s in ${steps//,/ }; do
		[[ " ${STEP_ORDER[*]} " == *" $s "* ]] || fail "unknown step '$s' in '$1' (steps: ${STEP_ORDER[*]})"
	done
	arch_setup "$arch"
	CUR_KVER=$kver CUR_LLVM=$llvm
	if has_step "$steps" boot; then
		ensure_toolchain "$llvm" "${QEMU_PKGS[@]}"
	else
		ensure_toolchain "$llvm"
	fi
	if has_step "$steps" ref; then
		build "$arch" "$kver" "$llvm" ref
	fi
	for kind in kdthin intree; do
		if has_step "$steps" "$kind"; then
			build "$arch" "$kver" "$llvm" "$kind"
			check_kdthin_build "$arch" "$kver" "$llvm" "$kind"
		fi
	done
	for kind in ref kdthin intree; do
		if has_step "$steps" boot && has_step "$steps" "$kind"; then
			boot_kernel "$arch" "$kver" "$llvm" "$kind"
		fi
	done
}

field() { cat "$RESULTS/$1.$2" 2>/dev/null || echo -; }

# Markdown table of the builds of the given specs.
table() {
	local spec kind name label
	echo "| arch | kernel | LLVM | build | time | vmlinux.o via kdthin-ld | multi-object modules | single-object modules | symbols | other differences from ld.lld | ikconfig | boot | result |"
	echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
	for spec in "$@"; do
		parse_spec "$spec"
		for kind in ref kdthin intree; do
			has_step "$SP_STEPS" "$kind" || continue
			name=$(build_name "$SP_ARCH" "$SP_KVER" "$SP_LLVM" "$kind")
			case $kind in
			ref) label="ld.lld, O=" ;; kdthin) label="kdthin-ld, O=" ;; intree) label="kdthin-ld, in-tree" ;;
			esac
			printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$SP_ARCH" "$SP_KVER" "$SP_LLVM" "$label" \
				"$(field "$name" time)" "$(field "$name" vmlinux)" "$(field "$name" multi)" \
				"$(field "$name" single)" "$(field "$name" symbols)" "$(field "$name" exact)" "$(field "$name" ikconfig)" \
				"$(field "$name" boot)" "$(field "$name" result)"
		done
	done
}

# Wipe the result fields of the builds a run is about to make (kept for
# reused reference builds until build() decides).
reset_results() {
	local spec kind
	for spec in "$@"; do
		parse_spec "$spec"
		for kind in kdthin intree; do rm -f "$RESULTS/$(build_name "$SP_ARCH" "$SP_KVER" "$SP_LLVM" "$kind")".*; done
	done
}

# The SPECs of the architecture KDTHIN_KERNEL_ARCH names (all when unset),
# one per line.
select_specs() {
	local spec
	for spec in "$@"; do
		parse_spec "$spec"
		[[ -z ${KDTHIN_KERNEL_ARCH:-} || $SP_ARCH == "$KDTHIN_KERNEL_ARCH" ]] && printf '%s\n' "$spec"
	done
	return 0
}

machine_info() {
	local v spec arches=() llvms=() kvers=()
	for spec in "$@"; do
		parse_spec "$spec"
		arches+=("$SP_ARCH") llvms+=("$SP_LLVM") kvers+=("$SP_KVER")
	done
	echo "- machine: $(uname -srm), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM"
	echo "- OS: $(sed -n 's/^PRETTY_NAME="\(.*\)"$/\1/p' /etc/os-release); $(make --version | head -n 1)"
	for v in $(printf '%s\n' "${arches[@]}" | sort -u); do
		arch_setup "$v"
		echo "- $v: \`ARCH=$K_ARCH\`, booted with $({ "$QEMU" --version 2>/dev/null || echo "$QEMU (not installed)"; } | head -n 1) (\`$QEMU${QEMU_MACHINE[*]:+ ${QEMU_MACHINE[*]}}\`, console $CONSOLE)"
	done
	for v in $(printf '%s\n' "${llvms[@]}" | sort -un); do
		echo "- LLVM $v: $("clang-$v" --version | head -n 1); $("ld.lld-$v" --version)"
	done
	for v in $(printf '%s\n' "${kvers[@]}" | sort -u); do
		echo "- Linux $v: $(make -s -C "$(source_tree "$v")" kernelversion 2>/dev/null) (Debian linux-source-$v $(dpkg-query -W -f='${Version}' "linux-source-$v" 2>/dev/null || echo '?'))"
	done
	echo "- kdthin-ld: $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo '?') ($(sha256sum "$KDTHIN" | cut -c1-12))"
}

write_matrix_doc() {
	{
		echo "# kdthin-ld on real kernels"
		echo
		echo "Written by \`make kernel-matrix\` (kernel-fixtures/kernel.sh) on $(date -u '+%Y-%m-%d %H:%M UTC'). Do not edit by hand."
		echo
		echo "Each kernel: its architecture's \`tinyconfig\` + kernel-fixtures/configs/lto-boot.config"
		echo "(+ configs/<arch>.config where there is one; ThinLTO, serial console, initrd,"
		echo "modules with MODVERSIONS, IKCONFIG; configfs=m from 6 objects, crc-ccitt=m from"
		echo "one), cross-built on this x86_64 machine with \`make ARCH=<arch> LLVM=-<N> -j$JOBS\`. \"symbols\": defined"
		echo "global symbols (name, type) of vmlinux.o, vmlinux and every .ko equal those of the"
		echo "ld.lld build. \"boot\": qemu TCG, init loads the modules with finit_module."
		echo "Times are whole kernel builds (configure excluded)."
		echo
		machine_info "$@"
		echo
		table "$@"
	} >"$MATRIX_DOC.tmp"
	mv "$MATRIX_DOC.tmp" "$MATRIX_DOC"
	say "wrote $MATRIX_DOC"
}

# run_specs SPEC...: each spec in a subshell, so one failing does not stop
# the others; the table at the end; FAILED=1 when any failed.
# (Not `(run_spec) || ...`: bash ignores set -e inside anything run as the
# left side of || or &&, however deep.)
FAILED=0
run_specs() {
	local spec st t0
	t0=$(now)
	reset_results "$@"
	for spec in "$@"; do
		say "=== $spec"
		set +e
		trap - ERR
		(
			set -e
			err_trap
			run_spec "$spec"
		)
		st=$?
		err_trap
		set -e
		((st == 0)) || FAILED=1
	done
	echo
	table "$@" | tee "$RESULTS/table.md"
	echo
	say "total $(elapsed "$t0"); logs under $WORK/logs, build trees under $WORK/build"
	((FAILED == 0)) || say "FAILED (see the messages above)"
}

preflight() {
	if [[ $KDTHIN == */* ]]; then
		[[ -x $KDTHIN ]] || fail "$KDTHIN: not built (make build, or set KDTHIN_BIN)"
		KDTHIN=$(readlink -f "$KDTHIN")
		KDTHIN_LD_ARG=$KDTHIN
	else
		# As a user of the package writes it: kbuild runs LD=kdthin-ld from PATH.
		KDTHIN_LD_ARG=$KDTHIN
		KDTHIN=$(command -v "$KDTHIN_LD_ARG") || fail "KDTHIN_BIN=$KDTHIN_LD_ARG: not on PATH ($PATH)"
		KDTHIN=$(readlink -f "$KDTHIN")
	fi
	ensure_packages "${BASE_PACKAGES[@]}"
	mkdir -p "$WORK"
	# Two runs in one work folder would delete each other's build trees.
	exec 9>"$WORK/.lock"
	flock -n 9 || fail "another kernel.sh run is using $WORK (wait for it, or set KDTHIN_KERNEL_WORK to another folder)"
}

# demo: a kdthin-ld build with its output on the terminal, then a boot
# with the serial console shown.
demo() {
	local arch=${KDTHIN_KERNEL_ARCH:-x86_64} kver=6.12 llvm=22
	arch_setup "$arch"
	ensure_toolchain "$llvm" "${QEMU_PKGS[@]}"
	setup_build "$arch" "$kver" "$llvm" kdthin
	mkdir -p "$LOGS"
	fresh_tree
	configure
	step "build (kdthin-ld's lines are the ones starting with LTO or kdthin-ld)"
	if ! "${KMAKE[@]}" all 2>&1 | tee "$LOGS/build.log" |
		{ grep -E --line-buffered '^  (LTO|LD|MODPOST|LD \[M\]|BUILD) |^kdthin-ld' || true; }; then
		fail "kernel build failed; see $LOGS/build.log"
	fi
	check_lto_lines
	boot_kernel "$arch" "$kver" "$llvm" kdthin
	tr -d '\r' <"$LOGS/serial.log" | tail -n 20
}

usage() { sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; }

main() {
	local cmd=${1:-} specs=()
	[[ $# -eq 0 ]] || shift
	[[ -z ${KDTHIN_KERNEL_ARCH:-} || " ${ARCHES[*]} " == *" $KDTHIN_KERNEL_ARCH "* ]] ||
		fail "KDTHIN_KERNEL_ARCH=$KDTHIN_KERNEL_ARCH: unknown architecture (known: ${ARCHES[*]})"
	case $cmd in
	test)
		preflight
		mapfile -t specs < <(select_specs "${TEST_SPECS[@]}")
		run_specs "${specs[@]}"
		;;
	matrix)
		preflight
		mapfile -t specs < <(select_specs "${MATRIX_SPECS[@]}")
		run_specs "${specs[@]}"
		if [[ -z ${KDTHIN_KERNEL_ARCH:-} ]]; then
			write_matrix_doc "${specs[@]}"
		else
			say "not rewriting $MATRIX_DOC: KDTHIN_KERNEL_ARCH=$KDTHIN_KERNEL_ARCH ran only part of the matrix (table in $RESULTS/table.md)"
		fi
		;;
	run)
		(($#)) || { usage >&2; exit 2; }
		preflight
		run_specs "$@"
		;;
	demo)
		preflight
		demo
		;;
	deps)
		preflight
		local spec
		for spec in "${MATRIX_SPECS[@]}"; do
			parse_spec "$spec"
			arch_setup "$SP_ARCH"
			ensure_toolchain "$SP_LLVM" "linux-source-$SP_KVER" "${QEMU_PKGS[@]}"
		done
		;;
	-h | --help | help) usage ;;
	*) usage >&2; exit 2 ;;
	esac
	exit "$FAILED"
}

# Sourcing the file (for trying a function by hand) runs nothing.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
	main "$@"
fi
