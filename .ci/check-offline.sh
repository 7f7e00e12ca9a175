#!/usr/bin/env bash
# The vendored sources are complete: `make vendor`, then a release build
# with --offline --locked, a fresh target directory and an EMPTY cargo home
# (so no registry cache can fill a gap), and the result runs.
#
# `make vendor` needs the crates once (from cargo's cache or crates.io);
# everything after that is offline. It all happens in a copy of the source
# tree, as in a source tarball; the work tree is not touched. On failure
# the work directory is left in place and named.
set -euo pipefail
cd "$(dirname "$0")/.."
MAKE=${MAKE:-make}

tmp=$(mktemp -d /tmp/kdthin-check-offline.XXXXXX)
trap 'status=$?; if [ $status -eq 0 ]; then rm -rf "$tmp"; else echo "check-offline: FAILED; work left in $tmp" >&2; fi' EXIT
mkdir "$tmp/src"
tar -C . --exclude=./target --exclude=./vendor --exclude=./.git -cf - . | tar -C "$tmp/src" -xf -
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
cd "$tmp/src"

"$MAKE" -s -f mk/install.mk vendor
test -s vendor/config.toml
grep -q '^directory = "vendor"$' vendor/config.toml

# rustup's proxies find the toolchain through RUSTUP_HOME, not CARGO_HOME.
export RUSTUP_HOME=${RUSTUP_HOME:-$HOME/.rustup}
CARGO_HOME="$tmp/cargo-home" "$MAKE" -s -f mk/install.mk offline-build CARGO_TARGET_DIR="$tmp/target"
if [ -n "$(ls -A "$tmp/cargo-home/registry" 2>/dev/null)" ]; then
    echo "check-offline: FAIL: the offline build used a registry" >&2
    exit 1
fi

bin=$tmp/target/release
out=$("$bin/kdthin" version)
[ "$out" = "kdthin $version" ] || { echo "check-offline: FAIL: kdthin version: $out" >&2; exit 1; }
# kdthin-ld --version is the real linker's banner: it needs one.
if ld=$(command -v ld.lld-22 || command -v ld.lld); then
    out=$(KDTHIN_LD="$ld" "$bin/kdthin-ld" --version)
    grep -q 'LLD ' <<<"$out" || { echo "check-offline: FAIL: kdthin-ld --version: $out" >&2; exit 1; }
else
    echo "check-offline: no ld.lld installed; kdthin-ld --version not checked"
fi
echo "check-offline: passed"
