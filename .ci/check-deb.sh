#!/usr/bin/env bash
# .ci/check-deb.sh: the .deb of `make deb`, as a user of it gets it.
#   - compiled offline from vendor/: built with an empty CARGO_HOME, which
#     must still have no registry afterwards, and the binaries name the
#     vendored sources, not cargo's registry
#   - built twice (the second time later, in another directory, under
#     umask 077): the two .debs are byte-identical
#   - lintian finds no error or warning (mk/deb/lintian-overrides says why
#     for what it accepts); its control fields and its files are the ones
#     `make install` installs, plus the documentation policy asks for
#   - installed with `apt-get install ./kdthin-ld_*.deb`: kdthin-ld and
#     kdthin are found on PATH in /usr/bin, `man -w` finds both man pages,
#     dpkg --verify passes, and the installed kdthin-ld, run as LD=kdthin-ld,
#     links the mini kbuild fixture with distributed ThinLTO (its LTO line,
#     natives beside the bitcode) into a program that prints what the same
#     program linked by ld.lld-22 prints
#   - purged: every file it listed (dpkg -L) is gone, and no path named
#     *kdthin* under /usr, /etc or dpkg's database differs from before
#
# .ci/check-deb.sh --with CMD...: build and install the .deb, run CMD with
# it installed (`make test DEB=1`: the kernel test with LD=kdthin-ld), then
# purge it and check as above; exits with CMD's status.
#
# The package is installed into this machine's /usr for real (a scratch
# root with dpkg --root would test neither PATH, nor man, nor apt's
# resolution of Depends). So that nothing there is overwritten, it refuses
# to start when the kdthin-ld package is installed or any file it would
# install exists (say, from `make install PREFIX=/usr`), and it purges the
# package again whenever it installed it, also on failure.
#
# Needs root or sudo, and clang-22, ld.lld-22, llvm-ar-22, make, lintian,
# dpkg-shlibdeps, strip and man (mk/deps.txt); without them the check is
# skipped, or fails when KDTHIN_REQUIRE_TOOLS=1 (as in CI). On failure the
# work directory is left in place and named.
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD
MAKE=${MAKE:-make}
package=kdthin-ld

with=()
if [ "${1:-}" = --with ]; then
    shift
    [ $# -gt 0 ] || { echo "usage: .ci/check-deb.sh [--with CMD...]" >&2; exit 2; }
    with=("$@")
fi

skip() {
    # --with never skips: CMD would silently not run.
    if [ "${KDTHIN_REQUIRE_TOOLS:-}" = 1 ] || [ ${#with[@]} -gt 0 ]; then echo "check-deb: $*" >&2; exit 1; fi
    echo "check-deb: $*; SKIP"
    exit 0
}
missing=()
for tool in clang-22 ld.lld-22 llvm-ar-22 make lintian dpkg-shlibdeps strip man; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
[ ${#missing[@]} -eq 0 ] || skip "not installed: ${missing[*]} (make deps)"
sudo=
if [ "$(id -u)" != 0 ]; then
    sudo -n true 2>/dev/null || skip "installing a package needs root, or sudo without a password"
    sudo=sudo
fi

tmp=$(mktemp -d /tmp/kdthin-check-deb.XXXXXX)
# apt-get reads a local .deb as the _apt user.
chmod 0755 "$tmp"
installed=0 finished=0
cleanup() {
    local status=$?
    if [ $installed = 1 ]; then
        echo "check-deb: purging the $package package it installed" >&2
        $sudo apt-get purge -y -qq -o DPkg::Lock::Timeout=300 "$package" >/dev/null || true
    fi
    # --with: CMD's failure is its own, reported by it.
    if [ $status -eq 0 ] || [ $finished = 1 ]; then rm -rf "$tmp"; else echo "check-deb: FAILED; work left in $tmp" >&2; fi
}
trap cleanup EXIT
pass=0
check() { # description, command...
    local what=$1
    shift
    if "$@"; then pass=$((pass + 1)); else
        echo "check-deb: FAIL: $what" >&2
        exit 1
    fi
}

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
arch=$(dpkg --print-architecture)
# vendor/ with cargo's own cache (the one step that may need crates.io);
# then the package with an empty cargo home: no registry to fall back on.
"$MAKE" -s -f mk/install.mk vendor >"$tmp/vendor.log" 2>&1 || { cat "$tmp/vendor.log" >&2; check "make vendor" false; }
mkdir "$tmp/cargo-home"
# rustup's proxies find the toolchain through RUSTUP_HOME, not CARGO_HOME.
CARGO_HOME=$tmp/cargo-home RUSTUP_HOME=${RUSTUP_HOME:-$HOME/.rustup} "$MAKE" -s deb DEB_DIR="$tmp/a" >"$tmp/build-a.log" 2>&1 ||
    { cat "$tmp/build-a.log" >&2; check "make deb" false; }
deb=$tmp/a/${package}_${version}_${arch}.deb
check "make deb wrote $deb" [ -s "$deb" ]
check "make deb used no crate registry: $(ls -A "$tmp/cargo-home/registry" 2>/dev/null | tr '\n' ' ')" \
    [ -z "$(ls -A "$tmp/cargo-home/registry" 2>/dev/null)" ]
# Panic locations keep the source paths of the crates compiled in.
dpkg-deb -x "$deb" "$tmp/x"
check "the packaged kdthin-ld was compiled from $src/vendor/" grep -qF "$src/vendor/" "$tmp/x/usr/bin/kdthin-ld"
check "the packaged kdthin-ld names no registry source" sh -c "! grep -qF '/registry/src/' '$tmp/x/usr/bin/kdthin-ld'"

# What the package holds: regular files of its data archive, /-rooted.
files=$(dpkg-deb --fsys-tarfile "$deb" | tar -tvf - | awk '$1 ~ /^-/ { sub(/^\./, "", $6); print $6 }' | sort)

# A path of the package that exists already belongs to someone else.
not_installed() { # dpkg-query's Status of the package, or nothing
    [ -z "$1" ] || [ "${1%not-installed}" != "$1" ]
}
state=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
if ! not_installed "$state"; then
    echo "check-deb: the $package package is on this machine already ($state, $(dpkg-query -W -f='${Version}' "$package")): this check would replace it and then purge it. Remove it first (apt-get purge $package), or run the check on another machine" >&2
    exit 1
fi
for f in $files; do
    if [ -e "$f" ] || [ -L "$f" ]; then
        owner=$(dpkg -S "$f" 2>/dev/null | cut -d: -f1 || true)
        echo "check-deb: $f exists (${owner:+from the package $owner}${owner:-installed by no package, e.g. make install PREFIX=/usr}): this check installs the $package package over it and purges it again. Remove it first, or run the check on another machine" >&2
        exit 1
    fi
done
# Paths of ours before, to compare with after the purge.
ours() {
    find /usr /etc /var/lib/dpkg/info -name '*kdthin*' 2>/dev/null | LC_ALL=C sort
}
before=$(ours)

install_deb() {
    installed=1
    if ! $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -o DPkg::Lock::Timeout=300 "$deb" >"$tmp/install.log" 2>&1; then
        cat "$tmp/install.log" >&2
        check "apt-get install $deb" false
    fi
    check "dpkg says $package $version is installed: $(dpkg-query -W -f='${Status} ${Version}' "$package" 2>&1)" \
        [ "$(dpkg-query -W -f='${Status} ${Version}' "$package" 2>/dev/null)" = "install ok installed $version" ]
    check "kdthin-ld on PATH is the package's: $(command -v kdthin-ld || echo none)" \
        [ "$(command -v kdthin-ld)" = /usr/bin/kdthin-ld ]
}

purge_deb() {
    local listed left=() p after
    listed=$(dpkg -L "$package")
    $sudo apt-get purge -y -qq -o DPkg::Lock::Timeout=300 "$package" >"$tmp/purge.log" 2>&1 ||
        { cat "$tmp/purge.log" >&2; check "apt-get purge $package" false; }
    installed=0
    st=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
    check "dpkg has no $package any more: $st" not_installed "$st"
    # A directory dpkg listed stays only when another package has it too.
    while IFS= read -r p; do
        [ "$p" = /. ] && continue
        if [ -d "$p" ] && [ ! -L "$p" ]; then
            dpkg -S "$p" >/dev/null 2>&1 || left+=("$p")
        elif [ -e "$p" ] || [ -L "$p" ]; then
            left+=("$p")
        fi
    done <<<"$listed"
    check "the purge removed everything dpkg -L listed; left: ${left[*]}" [ ${#left[@]} -eq 0 ]
    after=$(ours)
    check "paths named *kdthin* after the purge equal those before:"$'\n'"$(diff <(echo "$before") <(echo "$after"))" \
        [ "$before" = "$after" ]
}

if [ ${#with[@]} -gt 0 ]; then
    install_deb
    echo "check-deb: $package $version installed; running: ${with[*]}"
    status=0
    "${with[@]}" || status=$?
    purge_deb
    finished=1
    echo "check-deb: $package purged, nothing left ($pass checks passed); ${with[0]} exited with $status"
    exit $status
fi

# Reproducible: later, elsewhere, another umask, the same bytes.
sleep 1
(umask 077 && "$MAKE" -s deb DEB_DIR="$tmp/b") >"$tmp/build-b.log" 2>&1 || { cat "$tmp/build-b.log" >&2; check "second make deb" false; }
check "two builds of one commit give the same .deb: $deb and $tmp/b/${deb##*/} differ" cmp -s "$deb" "$tmp/b/${deb##*/}"

# lintian: --fail-on makes warnings fail too; infos and overridden tags
# are shown, so that what is accepted stays in sight.
if ! lintian --fail-on error,warning --display-info --show-overrides "$deb" >"$tmp/lintian.log" 2>&1; then
    cat "$tmp/lintian.log" >&2
    check "lintian $deb: errors or warnings (fix them, or override with a reason in mk/deb/lintian-overrides)" false
fi
pass=$((pass + 1))
sed -n 's/^\([EWIXPO]: \)/check-deb: lintian: \1/p' "$tmp/lintian.log"

field() { dpkg-deb -f "$deb" "$1"; }
check "Version $(field Version) is Cargo.toml's $version" [ "$(field Version)" = "$version" ]
check "Architecture $(field Architecture) is dpkg's $arch" [ "$(field Architecture)" = "$arch" ]
check "Depends has libc6 from dpkg-shlibdeps: $(field Depends)" grep -qE '(^|, )libc6 \(>= [0-9.]+\)' <<<"$(field Depends)"
check "Recommends an ld.lld and a clang: $(field Recommends)" grep -qE '(^|, )lld \|.*(, )clang \|' <<<"$(field Recommends)"
check "Section devel, Priority optional" [ "$(field Section) $(field Priority)" = "devel optional" ]

expected="/usr/bin/kdthin
/usr/bin/kdthin-ld
/usr/lib/kdthin-ld/libkdthin-forkserver.so
/usr/share/doc/kdthin-ld/README.md.gz
/usr/share/doc/kdthin-ld/changelog.gz
/usr/share/doc/kdthin-ld/copyright
/usr/share/doc/kdthin-ld/crates.gz
/usr/share/lintian/overrides/kdthin-ld
/usr/share/man/man1/kdthin-ld.1.gz
/usr/share/man/man1/kdthin.1.gz"
check "the files of the .deb:"$'\n'"$files" [ "$files" = "$expected" ]
# `make install`'s files are all in it (its list is in mk/install.mk).
"$MAKE" -s -f mk/install.mk install DESTDIR="$tmp/stage" PREFIX=/usr >/dev/null 2>&1
staged=$(cd "$tmp/stage" && find . -type f | sed 's/^\.//; s/\.1$/.1.gz/' | sort)
check "make install's files are in the .deb: $staged" [ -z "$(comm -23 <(echo "$staged") <(echo "$files"))" ]

install_deb
check "kdthin on PATH is the package's: $(command -v kdthin || echo none)" [ "$(command -v kdthin)" = /usr/bin/kdthin ]
check "dpkg --verify $package: the installed files are the package's" $sudo dpkg --verify "$package"
out=$(kdthin version)
check "kdthin version says $version: $out" [ "$out" = "kdthin $version" ]
# Kconfig's probe: the installed kdthin-ld answers with the real lld's banner.
banner=$(CC=clang-22 kdthin-ld --version)
check "kdthin-ld --version is lld's banner: $banner" grep -q 'LLD 22' <<<"$banner"
stripped() { # section list of llvm-readelf -S
    grep -q ' \.text ' <<<"$1" && ! grep -q ' \.symtab ' <<<"$1"
}
for p in /usr/bin/kdthin-ld /usr/bin/kdthin; do
    sections=$(llvm-readelf-22 -S "$p" 2>&1 || true)
    check "$p is a stripped ELF executable (.text, no .symtab):"$'\n'"$sections" stripped "$sections"
done
for page in kdthin-ld kdthin; do
    where=$(man -w "$page" 2>&1 || true)
    check "man -w $page finds the package's page: $where" [ "$where" = "/usr/share/man/man1/$page.1.gz" ]
    check "the installed $page(1) is docs/$page.1" cmp -s <(zcat "$where") "docs/$page.1"
done

# A real ThinLTO link by the installed kdthin-ld, found on PATH the way
# `make LLVM=1 LD=kdthin-ld` finds it, and the same link by ld.lld-22.
for linker in kdthin-ld ld.lld-22; do
    cp -r "$src/kernel-fixtures/mini" "$tmp/$linker"
    "$MAKE" -s -C "$tmp/$linker" clean >/dev/null
    if ! KDTHIN_CACHE_DIR=$tmp/cache "$MAKE" -C "$tmp/$linker" LD="$linker" vmlinux.o prog >"$tmp/$linker.log" 2>&1; then
        cat "$tmp/$linker.log" >&2
        check "make vmlinux.o prog with LD=$linker" false
    fi
done
log=$tmp/kdthin-ld.log
check "the LTO line of vmlinux.o in the build log:"$'\n'"$(cat "$log")" \
    grep -qE '^  LTO +vmlinux\.o  [0-9]+ modules, .*[1-9][0-9]* compiled' "$log"
check "the LTO line of prog in the build log:"$'\n'"$(cat "$log")" grep -qE '^  LTO +prog  [1-9][0-9]* modules, ' "$log"
check "no LTO line from ld.lld-22's build" sh -c "! grep -q '^  LTO ' '$tmp/ld.lld-22.log'"
check "native objects beside the bitcode" [ -s "$tmp/kdthin-ld/init/main.thinlto-native.o" ]
"$tmp/kdthin-ld/prog" >"$tmp/prog.out" 2>&1 || check "prog linked by kdthin-ld runs" false
"$tmp/ld.lld-22/prog" >"$tmp/prog.ref" 2>&1 || check "prog linked by ld.lld-22 runs" false
check "prog prints what ld.lld-22's prints:"$'\n'"$(diff "$tmp/prog.ref" "$tmp/prog.out")" \
    sh -c "cmp -s '$tmp/prog.ref' '$tmp/prog.out' && grep -q 'initcalls = 3' '$tmp/prog.out'"

purge_deb
echo "check-deb: $pass passed, 0 failed"
