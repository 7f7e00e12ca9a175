#!/bin/sh
# SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
# The probe Kconfig runs on $(LD) (what the kernel's scripts/ld-version.sh
# does for LLD): take the first line of `LD --version`, find the word "LLD",
# print "LLD <version as 5 or 6 digits>". Exit 1 if there is no such word.
set -e
first=$(LC_ALL=C "$@" --version | sed -n 1p)
set -- $first
while [ $# -gt 1 ] && [ "$1" != LLD ]; do
	shift
done
if [ "$1" != LLD ]; then
	echo "$first: unknown linker" >&2
	exit 1
fi
version=${2%%[!0-9.]*}
IFS=.
set -- $version
echo "LLD $((10000 * $1 + 100 * ${2:-0} + ${3:-0}))"
