#!/usr/bin/env bash
# `make install` into a staging root puts exactly the two programs, the
# fork server's shim and the two man pages in place, and the INSTALLED
# kdthin-ld links the mini kbuild fixture's vmlinux.o with distributed
# ThinLTO, its backends forked from a fork server that preloads the
# installed shim. Then `make uninstall` removes everything again.
#
# Needs clang-22, ld.lld-22, llvm-ar-22 and make; without them the check is
# skipped, or fails when KDTHIN_REQUIRE_TOOLS=1 (as in CI). On failure the
# work directory is left in place and named.
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD
MAKE=${MAKE:-make}

missing=()
for tool in clang-22 ld.lld-22 llvm-ar-22 make; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    msg="check-install: not installed: ${missing[*]}"
    if [ "${KDTHIN_REQUIRE_TOOLS:-}" = 1 ]; then echo "$msg" >&2; exit 1; fi
    echo "$msg; SKIP"
    exit 0
fi

tmp=$(mktemp -d /tmp/kdthin-check-install.XXXXXX)
trap 'status=$?; if [ $status -eq 0 ]; then rm -rf "$tmp"; else echo "check-install: FAILED; work left in $tmp" >&2; fi' EXIT
root=$tmp/root
pass=0
check() { # description, command...
    local what=$1; shift
    if "$@"; then pass=$((pass + 1)); else echo "check-install: FAIL: $what" >&2; exit 1; fi
}

"$MAKE" -s -f mk/install.mk install DESTDIR="$root" PREFIX=/usr

expected="usr/bin/kdthin 755
usr/bin/kdthin-ld 755
usr/lib/kdthin-ld/libkdthin-forkserver.so 644
usr/share/man/man1/kdthin-ld.1 644
usr/share/man/man1/kdthin.1 644"
actual=$(cd "$root" && find . -type f -printf '%P %m\n' | sort)
check "installed files and modes:"$'\n'"$actual" [ "$actual" = "$expected" ]
check "installed man pages are the sources" cmp -s docs/kdthin-ld.1 "$root/usr/share/man/man1/kdthin-ld.1"

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
out=$("$root/usr/bin/kdthin" version)
check "kdthin version says $version: $out" [ "$out" = "kdthin $version" ]
# Kconfig's probe: the installed shim answers with the real lld's banner.
banner=$(CC=clang-22 "$root/usr/bin/kdthin-ld" --version)
check "kdthin-ld --version is lld's banner: $banner" grep -q 'LLD 22' <<<"$banner"

# A real ThinLTO link with the installed binary, in a copy of the fixture.
cp -r "$src/kernel-fixtures/mini" "$tmp/mini"
"$MAKE" -s -C "$tmp/mini" clean >/dev/null
log=$tmp/mini.log
# A cache of its own: every backend really runs, and $HOME stays clean.
export KDTHIN_CACHE_DIR=$tmp/cache
report=$tmp/report.jsonl
if ! KDTHIN_REPORT=$report "$MAKE" -C "$tmp/mini" LD="$root/usr/bin/kdthin-ld" vmlinux.o >"$log" 2>&1; then
    cat "$log" >&2
    check "make vmlinux.o with the installed kdthin-ld" false
fi
check "the LTO line in the build log:"$'\n'"$(cat "$log")" grep -qE '^  LTO +vmlinux\.o  [0-9]+ modules, .*[1-9][0-9]* compiled' "$log"
check "vmlinux.o is an ELF object" [ "$(head -c4 "$tmp/mini/vmlinux.o" | od -An -c | tr -d ' ')" = '177ELF' ]
check "native objects beside the bitcode" [ -s "$tmp/mini/init/main.thinlto-native.o" ]
check "no work directory left" [ -z "$(find "$tmp/mini" -name '.tmp_kdthin*')" ]
# Every backend forked from a fork server: the installed shim was found.
forked=$(sed -n 's/.*"forked":\([0-9]*\).*/\1/p' "$report")
compiled=$(sed -n 's/.*"compiled":\([0-9]*\).*/\1/p' "$report")
check "backends forked ($forked): $(cat "$report")" [ "${forked:-0}" -gt 0 ]
check "every backend forked (compiled $compiled, forked $forked)" [ "$forked" = "$compiled" ]

"$MAKE" -s -f mk/install.mk uninstall DESTDIR="$root" PREFIX=/usr
left=$(find "$root" -type f)
check "uninstall leaves no files: $left" [ -z "$left" ]
check "uninstall removes the shim's directory" [ ! -e "$root/usr/lib/kdthin-ld" ]

echo "check-install: $pass passed, 0 failed"
