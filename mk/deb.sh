#!/usr/bin/env bash
# mk/deb.sh OUTDIR: a Debian binary package of kdthin-ld, written to
# OUTDIR/kdthin-ld_<version>_<arch>.deb (its path is printed). `make deb`
# runs this; .ci/check-deb.sh tests what it builds.
#
# The package holds exactly what `make install PREFIX=/usr` installs (the
# two programs, the fork server's shim, their man pages), as Debian ships
# it: binaries stripped, man pages gzip -9n, /usr/share/doc/kdthin-ld with
# the copyright file (mk/deb/copyright), a changelog and the README, files
# owned by root. It is built with dpkg-deb from that staging root and a
# generated control file, not with dpkg-buildpackage (no debian/ source tree
# to keep beside the Makefiles) nor cargo-deb (not packaged in Debian; a
# second description of the same package would drift from `make install`):
# nothing beyond dpkg-dev and binutils, and no network.
#
# Built offline from the vendored crates, as a distribution's build daemon
# builds it: vendor/ (`make vendor`, run here first when vendor/ is missing
# or was made from another Cargo.lock: the one step that needs cargo's
# cache or crates.io), then cargo --offline with vendor/config.toml and
# CARGO_NET_OFFLINE, in its own target directory ($CARGO_TARGET_DIR/vendored:
# the vendored sources have other paths than the registry's, so sharing the
# directory with ordinary builds would recompile every crate each time).
# .ci/check-deb.sh builds it with an empty CARGO_HOME to prove that.
#
# Reproducible: SOURCE_DATE_EPOCH (default: the commit time of HEAD) is
# the date of every file and of the changelog entry, so two builds of one
# commit from the same binaries give byte-identical .debs.
#
# Environment: CARGO_TARGET_DIR (its vendored/ is where the package is built), MAKE,
# DEB_MAINTAINER (the Maintainer field; default below), SOURCE_DATE_EPOCH.
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD
MAKE=${MAKE:-make}

[ $# = 1 ] || { echo "usage: mk/deb.sh OUTDIR" >&2; exit 2; }
out=$1
mkdir -p "$out"
out=$(cd "$out" && pwd)

package=kdthin-ld
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
[ -n "$version" ] || { echo "mk/deb.sh: Cargo.toml: no version line" >&2; exit 1; }
arch=$(dpkg --print-architecture)
maintainer=${DEB_MAINTAINER:-kdthin-ld developers <maintainers@users.noreply.r-seed-38e44921.example>}
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
    SOURCE_DATE_EPOCH=$(git -C "$src" log -1 --format=%ct 2>/dev/null) ||
        { echo "mk/deb.sh: not a git checkout: set SOURCE_DATE_EPOCH (the release's date, seconds since 1970)" >&2; exit 1; }
fi
commit=$(git -C "$src" describe --always --dirty --abbrev=12 2>/dev/null || echo unknown)

if [ ! -f vendor/config.toml ] || ! sha256sum --status -c vendor/Cargo.lock.sha256 2>/dev/null; then
    echo "mk/deb.sh: vendoring the crates of Cargo.lock into vendor/ (from cargo's cache or crates.io)" >&2
    "$MAKE" -s -f mk/install.mk vendor >&2
fi
export CARGO_NET_OFFLINE=true
export CARGO_TARGET_DIR=$(realpath -m "${CARGO_TARGET_DIR:-target}")/vendored

# dpkg-shlibdeps wants a debian/control and the files under debian/<package>.
work=$out/.work
rm -rf "$work"
root=$work/debian/$package
mkdir -p "$root"
"$MAKE" -s -f mk/install.mk install DESTDIR="$root" PREFIX=/usr VENDORED=1

# Only now: ring's build script reads SOURCE_DATE_EPOCH, so cargo would
# rebuild it and all that depends on it, and again at the next `make build`.
export SOURCE_DATE_EPOCH

# As dh_strip does for executables.
for p in "$root"/usr/bin/*; do
    strip --remove-section=.comment --remove-section=.note "$p"
done
# And for shared libraries (the fork server's shim).
strip --remove-section=.comment --remove-section=.note --strip-unneeded "$root"/usr/lib/kdthin-ld/*.so
gzip -9n "$root"/usr/share/man/man1/*.1

doc=$root/usr/share/doc/$package
install -d "$doc"
install -m 0644 mk/deb/copyright "$doc/copyright"
# Policy 12.3: documents over 4 kB are compressed.
gzip -9nc README.md >"$doc/README.md.gz"
# Policy 12.7: a native package (its version has no Debian revision) has
# changelog.gz. The history itself is git's; this names the commit built.
{
    echo "$package ($version) unstable; urgency=medium"
    echo
    echo "  * Built from kdthin-ld git commit $commit."
    echo
    echo " -- $maintainer  $(date -u -R -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n >"$doc/changelog.gz"
# The crates linked into the binaries, with their licences (see copyright):
# normal dependencies of the package, less proc-macros (run by the
# compiler, not linked).
"${CARGO:-cargo}" tree --locked --offline --config vendor/config.toml -e normal --prefix none -f '{p} {l}' |
    grep -v -e '(proc-macro)' -e '^kdthin-ld ' | sed 's/ (\*)$//' | LC_ALL=C sort -u >"$work/crates"
[ -s "$work/crates" ] || { echo "mk/deb.sh: cargo tree listed no crates" >&2; exit 1; }
{
    echo "# The Rust crates statically linked into kdthin-ld and kdthin: name, version, licence."
    cat "$work/crates"
} | gzip -9n >"$doc/crates.gz"
install -D -m 0644 mk/deb/lintian-overrides "$root/usr/share/lintian/overrides/$package"

# Installed-Size as dpkg-gencontrol counts it: each file in KiB rounded up,
# each directory or link 1 (not du, which depends on the file system).
size=$(find "$root" -mindepth 1 -printf '%y %s\n' | awk '{ n += $1 == "f" ? int(($2 + 1023) / 1024) : 1 } END { print n }')

# dpkg-shlibdeps finds the package root by its DEBIAN directory.
install -d "$root/DEBIAN"
printf 'Source: %s\n\nPackage: %s\nArchitecture: any\n' "$package" "$package" >"$work/debian/control"
depends=$(cd "$work" && dpkg-shlibdeps -O -e"debian/$package/usr/bin/kdthin-ld" -e"debian/$package/usr/bin/kdthin" \
    -e"debian/$package/usr/lib/kdthin-ld/libkdthin-forkserver.so" |
    sed -n 's/^shlibs:Depends=//p')
[ -n "$depends" ] || { echo "mk/deb.sh: dpkg-shlibdeps found no shared libraries in the binaries" >&2; exit 1; }

# Recommends: kdthin-ld execs the real ld.lld (KDTHIN_LD, else the ld.lld-N
# of CC=clang-N, else ld.lld on PATH, else the only ld.lld-N there) and the
# backends run the clang of each object's compile command; any LLVM the
# kernel supports will do, so neither is a hard dependency. Debian 12's
# lld and clang are LLVM 14; the versioned names, LLVM 19 to 22
# (docs/KERNEL-MATRIX.md tests 14, 19 and 22).
recommends=
for tool in lld clang; do
    alternatives=$tool
    for v in 22 21 20 19; do alternatives="$alternatives | $tool-$v"; done
    recommends="$recommends$alternatives, "
done
recommends="${recommends}make"
cat >"$root/DEBIAN/control" <<EOF
Package: $package
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $size
Depends: $depends
Recommends: $recommends
Section: devel
Priority: optional
Description: distributed ThinLTO for the Linux kernel, as a drop-in linker
 kdthin-ld stands in for ld.lld as the kernel's linker (make LLVM=1
 LD=kdthin-ld). Links with ThinLTO bitcode become a thin-link, one backend
 compile per module run in parallel under make's jobserver (and cached),
 and a native final link. Every other link goes to ld.lld unchanged.
 .
 It needs the kernel's LLVM toolchain at run time: the real ld.lld (the
 ld.lld-N beside CC=clang-N, or ld.lld on PATH, or KDTHIN_LD) and the clang
 that compiled each object.
EOF
# dpkg-deb takes modes from the files; make them what policy says,
# whatever the umask of the build.
find "$root" -type d -exec chmod 0755 {} +
find "$root/usr/share" "$root/DEBIAN" -type f -exec chmod 0644 {} +

(cd "$root" && find usr -type f | LC_ALL=C sort | xargs md5sum) >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/md5sums"

deb=$out/${package}_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
rm -rf "$work"
echo "$deb"
