#!/usr/bin/env python3
"""Predict a distributed link's wall time on N remote workers from a real one.

Input: a KDTHIN_TRACE file of a *cold* link (KDTHIN_CACHE=off), which holds
each backend's measured duration and bitcode size plus the thin-link and
final-link spans. Output: a table of predicted wall time for 1..512 remote
workers at a given bandwidth, with the bottleneck of each row.

Model (stated so it can be argued with):
  T(N) = thin_link + upload + makespan(N) + final_link
  - thin_link, final_link: as measured (they stay local).
  - upload: every module's bitcode once (a module imported by 500 backends
    is still sent once) plus one index shard per backend (INDEX_BYTES each),
    at the given bandwidth, before the first action runs (no overlap:
    pessimistic; FindMissingBlobs against a warm cluster makes it ~0).
  - makespan(N): backends scheduled largest first (as kdthin-ld does) onto N
    workers; each costs its measured duration x CPU_RATIO (worker speed
    relative to this machine) + per-action overhead (queueing, sandbox
    setup, two round trips) + downloading its native object (OUT_RATIO x
    bitcode size) at the bandwidth. The aggregate of all downloads through
    one link bounds it from below.
  - Remote action-cache hits, compression and worker-side input caching are
    ignored (each would only lower the figures).

usage: simulate-remote.py TRACE.json [--mbit 1000] [--overhead-ms 50]
       [--rtt-ms 1] [--cpu-ratio 1.0] [--out-ratio 0.5] [--markdown]
"""
import argparse
import heapq
import json
import sys

INDEX_BYTES = 4096


def load(path):
    text = open(path).read().strip()
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        # Several links appended to one file: an array without its "]".
        obj = json.loads(text.rstrip(",") + "]")
    events = obj["traceEvents"] if isinstance(obj, dict) else obj
    backends, phases = [], {}
    for e in events:
        if e.get("ph") != "X":
            continue
        if e.get("cat") == "backend":
            if e.get("args", {}).get("cached"):
                sys.exit("trace has cache hits: record a cold link (KDTHIN_CACHE=off)")
            backends.append((e["dur"] / 1e6, e["args"].get("bitcode_bytes", 0)))
        elif e.get("cat") == "link":
            phases[e["name"]] = phases.get(e["name"], 0) + e["dur"] / 1e6
    if not backends:
        sys.exit("no backend spans in the trace")
    return backends, phases


def makespan(jobs, workers):
    heap = [0.0] * min(workers, len(jobs))
    for cost in sorted(jobs, reverse=True):
        t = heapq.heappop(heap)
        heapq.heappush(heap, t + cost)
    return max(heap)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("trace")
    ap.add_argument("--mbit", type=float, default=1000.0, help="network bandwidth, Mbit/s")
    ap.add_argument("--overhead-ms", type=float, default=50.0, help="per action: queue, sandbox, RPCs")
    ap.add_argument("--rtt-ms", type=float, default=1.0)
    ap.add_argument("--cpu-ratio", type=float, default=1.0, help="worker time / this machine's time")
    ap.add_argument("--out-ratio", type=float, default=0.5, help="native object size / bitcode size")
    ap.add_argument("--markdown", action="store_true")
    a = ap.parse_args()

    backends, phases = load(a.trace)
    bw = a.mbit * 1e6 / 8  # bytes/s
    thin = phases.get("thin-link", 0.0)
    final = phases.get("final link", phases.get("final-link", 0.0))
    measured = phases.get("link", thin + phases.get("backends", 0.0) + final)
    cpu = sum(d for d, _ in backends)
    up_bytes = sum(b for _, b in backends) + INDEX_BYTES * len(backends)
    upload = up_bytes / bw
    down_total = sum(b * a.out_ratio for _, b in backends) / bw
    per_job = [d * a.cpu_ratio + (a.overhead_ms + 2 * a.rtt_ms) / 1e3 + b * a.out_ratio / bw for d, b in backends]

    sep = "|" if a.markdown else " "
    print(f"# {len(backends)} backends, {cpu:.1f} s backend CPU, thin-link {thin:.2f} s, final link {final:.2f} s,"
          f" measured link {measured:.1f} s")
    print(f"# upload {up_bytes / 2**20:.1f} MiB ({upload:.2f} s at {a.mbit:g} Mbit/s), overhead {a.overhead_ms:g} ms/action,"
          f" worker speed x{1 / a.cpu_ratio:g}")
    head = ["workers", "predicted s", "vs measured", "bottleneck"]
    if a.markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
    else:
        print(f"{head[0]:>8} {head[1]:>12} {head[2]:>12}  {head[3]}")
    n = 1
    while n <= 512:
        span = max(makespan(per_job, n), down_total)
        total = thin + upload + span + final
        longest = max(per_job)
        if span <= longest * 1.05:
            neck = "longest backend"
        elif span == down_total:
            neck = "download bandwidth"
        else:
            neck = "workers"
        if upload > span:
            neck = "upload bandwidth"
        row = [str(n), f"{total:.2f}", f"{total / measured:.2f}x" if measured else "-", neck]
        if a.markdown:
            print("| " + " | ".join(row) + " |")
        else:
            print(f"{row[0]:>8} {row[1]:>12} {row[2]:>12}  {row[3]}")
        n *= 2


if __name__ == "__main__":
    main()
