#!/usr/bin/env python3
"""A parallel local distributor for ld.lld's DTLTO mode (--thinlto-distributor).

The benchmark's anchor for "lld's own distributed mode". LLVM ships an
equivalent as llvm/utils/dtlto/local.py, which Debian's packages do not
install. ld.lld runs `<distributor> <distributor-args...> <jobs.json>`; each
job is `common.args + job.args`, run in ld.lld's working directory.

usage: dtlto-local.py [-j N] JOBS.json
"""
import argparse
import concurrent.futures
import json
import os
import subprocess
import sys


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-j", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("json")
    a = ap.parse_args()
    with open(a.json) as f:
        d = json.load(f)
    common = d["common"]["args"]

    def run(job):
        return subprocess.run(common + job["args"], stdin=subprocess.DEVNULL).returncode

    with concurrent.futures.ThreadPoolExecutor(max_workers=a.j) as pool:
        codes = list(pool.map(run, d["jobs"]))
    bad = [c for c in codes if c != 0]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
