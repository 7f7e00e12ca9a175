#!/usr/bin/env bash
# The man pages render without a single groff warning, carry the crate's
# version, and document every KDTHIN_* variable the program reads (and only
# those, apart from ones marked "(Planned.)").
#
# Needs groff (Debian: groff-base). Without it the check is skipped, or
# fails when KDTHIN_REQUIRE_TOOLS=1 (as in CI).
set -euo pipefail
cd "$(dirname "$0")/.."

pages=(docs/kdthin-ld.1 docs/kdthin.1)
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { echo "check-man: FAIL: $*" >&2; fail=$((fail + 1)); }

if ! command -v groff >/dev/null; then
    if [ "${KDTHIN_REQUIRE_TOOLS:-}" = 1 ]; then
        echo "check-man: groff is not installed (apt-get install groff-base)" >&2
        exit 1
    fi
    echo "check-man: SKIP: groff is not installed (apt-get install groff-base)"
    exit 0
fi

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)

for page in "${pages[@]}"; do
    # -ww: all warnings; -z: no output, only diagnostics. groff exits 0 on
    # warnings, so its stderr is the verdict.
    if warnings=$(groff -man -Tutf8 -ww -z "$page" 2>&1) && [ -z "$warnings" ]; then
        ok
    else
        bad "$page: groff says:"$'\n'"$warnings"
    fi
    # Rendered for real, the way man(1) would, and not empty.
    lines=$(groff -man -Tutf8 "$page" 2>/dev/null | wc -l)
    if [ "$lines" -gt 20 ]; then ok; else bad "$page renders to $lines lines"; fi
    if grep -q "^\.TH .* \"kdthin-ld $version\" " "$page"; then
        ok
    else
        bad "$page: .TH does not name version $version (Cargo.toml)"
    fi
done

# Variables the program reads: every KDTHIN_* in src/, less the ones only
# tests use (test files, KDTHIN_TEST_*; lld_check.rs is a #[cfg(test)]
# module of its own).
used=$(grep -rhoE --exclude=tests.rs --exclude=testutil.rs --exclude=lld_check.rs 'KDTHIN_[A-Z_]*[A-Z]' src |
    grep -v '^KDTHIN_TEST_' | sort -u)
documented=$(grep -oE 'KDTHIN_[A-Z_]*[A-Z]' docs/kdthin-ld.1 | sort -u)
for v in $used; do
    if grep -qx "$v" <<<"$documented"; then ok; else bad "$v is read by the program but not in docs/kdthin-ld.1"; fi
done
for v in $documented; do
    grep -qx "$v" <<<"$used" && { ok; continue; }
    # Not read anywhere: its entry must say it is planned.
    if grep -A1 -E "^\.BI? ${v}\b" docs/kdthin-ld.1 | grep -q '^(Planned\.)'; then
        ok
    else
        bad "docs/kdthin-ld.1 documents $v, which the program does not read (mark it \"(Planned.)\")"
    fi
done

echo "check-man: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
