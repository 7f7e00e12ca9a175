#!/usr/bin/env python3
"""Predict a vmlinux.o link's wall time on N remote workers from a real one.

    simulate-remote.py --trace TRACE --report REPORT [--index-dir DIR]
                       [--tree DIR] [--mbit 1000 --mbit 10000] [--markdown]

Input: what kdthin-ld recorded of one *cold* local link (no cache hits):
  --trace      KDTHIN_TRACE of it: each backend's measured duration, its
               module and that module's bitcode size; the thin-link and
               final-link spans.
  --report     KDTHIN_REPORT of it (JSON Lines; the line of the same
               output): phase times, backend count, CPUs. Without --trace,
               only the 20 slowest backends are known: the others' times are
               *estimated* (backend phase wall x CPUs, less the slowest,
               shared in proportion to bitcode size; modules found as the
               *.thinlto-native.o files under --tree).
  --tree       the link's directory (default: the report's cwd): module
               bitcode and the native objects kdthin-ld left beside it
               (`foo.thinlto-native.o`, the backends' outputs) are read
               there for their sizes.
  --index-dir  the thin-link's index shards and imports files, laid out as
               `--thinlto-prefix-replace=;DIR/` writes them
               (DIR/<module>.thinlto.bc, DIR/<module>.imports). kdthin-ld
               deletes its own; bench/run re-runs the thin-link to get
               them. Without it, each action's inputs are its own bitcode
               and an index shard of --index-bytes (imports unknown).
  Per-backend fields the trace or report may carry in a later kdthin-ld
  (index_bytes, output_bytes, imports, and the report's remote.uploaded_bytes)
  are used when present.

Output: the predicted link time for 1, 2, 4, ... 512 workers at each
bandwidth given, the bottleneck of each, and the assumptions (printed with
it). The model is a small discrete-event simulation of kdthin-ld's remote
executor:
  - local, as measured: the thin-link, the final link and the rest of
    kdthin-ld's own time outside the backend phase;
  - the client spends --client-ms of CPU per action (--client-warm-ms per
    action-cache hit; bench/run measures both when its remote rows ran)
    and hashes (SHA-256) every input once, then per action: an
    action-cache lookup (miss), FindMissingBlobs, uploads of the blobs not
    yet sent (each blob once per link, through one uplink, in the order
    actions need them), Execute; at most max(workers, 200) actions in flight
    (KDTHIN_REMOTE_JOBS raised to the worker count when above 200);
  - actions start largest bitcode first (kdthin-ld's order) on the first
    free worker; a worker takes the measured backend time x --cpu-ratio
    plus --overhead-ms (queueing, sandbox, input staging, output capture);
  - each native object comes back through one downlink (full duplex);
  - a cold cluster: empty CAS and action cache. Workers fetch inputs from
    the cluster's CAS for free; no compression.
A last row predicts a warm action cache (every action a hit: hash, look up,
download).
"""
import argparse
import heapq
import json
import os
import sys
from pathlib import Path

DEFAULT_JOBS = 200  # KDTHIN_REMOTE_JOBS' default
WORKERS = [2**i for i in range(10)]  # 1 .. 512
RPCS_COLD = 4  # GetActionResult, FindMissingBlobs, Execute, output read
RPCS_WARM = 2  # GetActionResult, output read


def die(msg):
    sys.exit(f"simulate-remote: {msg}")


# ---------------------------------------------------------------------------
# Input


def read_trace(path):
    """(backends, phases, output) of the link in the trace with most
    backends. backends: [{module, seconds, bitcode_bytes, ...args}]."""
    text = Path(path).read_text().strip()
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        obj = json.loads(text.rstrip().rstrip(",") + "]")  # appended form, no "]"
    events = obj["traceEvents"] if isinstance(obj, dict) else obj
    links = {}
    for e in events:
        pid = e.get("pid", 0)
        link = links.setdefault(pid, {"backends": [], "cached": 0, "phases": {}, "output": None})
        if e.get("ph") == "M" and e.get("name") == "process_name":
            name = e.get("args", {}).get("name", "")
            link["output"] = name.removeprefix("kdthin-ld ")
        if e.get("ph") != "X":
            continue
        args = e.get("args", {})
        if e.get("cat") == "cache" or args.get("cached"):
            link["cached"] += 1
        elif e.get("cat") == "backend":
            if args.get("result"):
                die(f"{path}: backend {args.get('module')} {args['result']}: record a link that succeeded")
            link["backends"].append(dict(args, module=args.get("module", e.get("name")), seconds=e["dur"] / 1e6))
        elif e.get("cat") == "link":
            link["phases"][e["name"]] = link["phases"].get(e["name"], 0.0) + e["dur"] / 1e6
    if not links:
        die(f"{path}: no events")
    link = max(links.values(), key=lambda l: len(l["backends"]))
    if link["cached"]:
        die(f"{path}: {link['cached']} backends were cache hits: record a cold link (KDTHIN_CACHE=off or an empty cache)")
    if not link["backends"]:
        die(f"{path}: no backend spans")
    return link


def read_report(path, output=None):
    lines = [json.loads(l) for l in Path(path).read_text().splitlines() if l.strip()]
    if output:
        lines = [r for r in lines if r.get("output") == output] or lines
    lines = [r for r in lines if not r.get("passthrough_reason")]
    if not lines:
        die(f"{path}: no distributed link in the report")
    return max(lines, key=lambda r: r.get("compiled", 0))


def size(path):
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def native_of(module):
    base = module[:-2] if module.endswith(".o") else module
    return base + ".thinlto-native.o"


def estimate_from_report(report, tree):
    """Backends of a report without a trace: the slowest as recorded, the
    rest estimated from the phase time (see the module docs)."""
    slow = {b["module"]: b for b in report.get("slowest_backends", [])}
    mods = []
    for root, _, files in os.walk(tree):
        for f in files:
            if f.endswith(".thinlto-native.o"):
                rel = os.path.relpath(os.path.join(root, f), tree)
                mods.append(rel[: -len(".thinlto-native.o")] + ".o")
    mods = [m for m in mods if size(os.path.join(tree, m))]
    if not mods:
        die(f"{tree}: no *.thinlto-native.o beside bitcode: cannot list the modules without a trace")
    want = report.get("used_modules") or report.get("compiled")
    cpus = (report.get("jobs") or {}).get("count") or len(os.sched_getaffinity(0))
    total = report["times"]["backends"] * cpus
    rest = [m for m in mods if m not in slow]
    rest_bytes = sum(size(os.path.join(tree, m)) for m in rest) or 1
    budget = max(total - sum(b["seconds"] for b in slow.values()), 0.0)
    backends = list(slow.values())
    for m in rest:
        b = size(os.path.join(tree, m))
        backends.append({"module": m, "seconds": budget * b / rest_bytes, "bitcode_bytes": b})
    note = (f"backend times: the {len(slow)} slowest as recorded in the report, the other {len(rest)} estimated "
            f"(backend phase {report['times']['backends']:.1f} s x {cpus} CPUs, less the slowest, shared in proportion "
            f"to bitcode size; no per-backend trace)")
    if want and want != len(backends):
        note += f"; found {len(backends)} modules under {tree}, the report says {want}"
    return backends, note


class Job:
    __slots__ = ("module", "seconds", "bitcode", "blobs", "out")


def build_jobs(backends, tree, index_dir, index_bytes):
    """Jobs (in kdthin-ld's dispatch order) and blob sizes. A blob is a
    module's bitcode ("m:<path>") or an index shard ("i:<path>")."""
    blobs = {}
    jobs = []
    missing = {"output": 0, "imports": 0, "index": 0}
    bitcode_of = {b["module"]: b.get("bitcode_bytes") for b in backends}

    def module_blob(m):
        k = "m:" + m
        if k not in blobs:
            s = bitcode_of.get(m) or size(os.path.join(tree, m))
            blobs[k] = s or 0
        return k

    for b in backends:
        j = Job()
        j.module = b["module"]
        j.seconds = b["seconds"]
        j.bitcode = b.get("bitcode_bytes") or size(os.path.join(tree, j.module)) or 0
        j.blobs = [module_blob(j.module)]
        imports = b.get("imports")
        if imports is None and index_dir:
            text = None
            try:
                text = Path(index_dir, j.module + ".imports").read_text()
            except OSError:
                missing["imports"] += 1
            imports = sorted(set(text.split())) if text else []
        for m in imports or []:
            if m != j.module:
                j.blobs.append(module_blob(m))
        ib = b.get("index_bytes")
        if ib is None and index_dir:
            ib = size(os.path.join(index_dir, j.module + ".thinlto.bc"))
            if ib is None:
                missing["index"] += 1
        k = "i:" + j.module
        blobs[k] = ib if ib is not None else index_bytes
        j.blobs.append(k)
        j.out = b.get("output_bytes")
        if j.out is None:
            j.out = size(os.path.join(tree, native_of(j.module)))
        if j.out is None:
            missing["output"] += 1
            j.out = j.bitcode // 2
        jobs.append(j)
    # kdthin-ld's scheduler: largest bitcode first (ties as recorded).
    jobs.sort(key=lambda j: -j.bitcode)
    return jobs, blobs, missing


# ---------------------------------------------------------------------------
# The model


def simulate(jobs, blobs, workers, p, warm=False):
    """The backend phase's length (s) for `workers` remote workers."""
    cap = max(workers, p.jobs)
    inflight = []  # client-side completion times of the actions in flight
    free = [0.0] * workers
    client = [0.0] * p.client_cpus  # kdthin-ld's own CPU work per action
    client_s = p.client_warm if warm else p.client
    hash_free = up_free = 0.0
    hashed, uploaded = {}, {}
    ends = []
    rpcs = RPCS_WARM if warm else RPCS_COLD
    for j in jobs:
        t0 = heapq.heappop(inflight) if len(inflight) >= cap else 0.0
        t0 = max(t0, heapq.heappop(client)) + client_s
        heapq.heappush(client, t0)
        for k in j.blobs:
            if k not in hashed:
                hash_free = max(hash_free, t0) + blobs[k] / p.hash_rate
                hashed[k] = hash_free
        known = max([t0] + [hashed[k] for k in j.blobs])  # the action digest
        if warm:
            ends.append(known + p.rtt)  # the lookup hits
            heapq.heappush(inflight, known + p.rtt * rpcs + j.out / p.bw)
            continue
        asked = known + 2 * p.rtt  # action-cache miss, FindMissingBlobs
        for k in j.blobs:
            if k not in uploaded:
                up_free = max(up_free, asked) + blobs[k] / p.bw
                uploaded[k] = up_free
        ready = max([asked] + [uploaded[k] for k in j.blobs]) + p.rtt  # Execute
        w = heapq.heappop(free)
        end = max(ready, w) + p.overhead + j.seconds * p.cpu_ratio
        heapq.heappush(free, end)
        ends.append(end)
        heapq.heappush(inflight, end + p.rtt + j.out / p.bw)
    # Outputs through one downlink, in the order they finish.
    down = 0.0
    for end, j in sorted(zip(ends, jobs), key=lambda x: x[0]):
        down = max(down, end + p.rtt) + j.out / p.bw
    return down, {"up": up_free, "hash": hash_free}


def bottleneck(jobs, blobs, workers, p, span):
    """Name the largest lower bound of the backend phase."""
    work = [p.overhead + j.seconds * p.cpu_ratio for j in jobs]
    bounds = {
        "client CPU": len(jobs) * p.client / p.client_cpus,
        "longest backend": max(work),
        "workers": sum(work) / workers,
        "upload": sum(blobs.values()) / p.bw,
        "download": sum(j.out for j in jobs) / p.bw,
        "client hashing": sum(blobs.values()) / p.hash_rate,
    }
    name, v = max(bounds.items(), key=lambda kv: kv[1])
    return name, v / span if span else 0.0


# ---------------------------------------------------------------------------


def mib(n):
    return n / 2**20


def bw_name(mbit):
    return f"{mbit / 1000:g} Gbit/s" if mbit >= 1000 else f"{mbit:g} Mbit/s"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("trace_pos", nargs="?", help=argparse.SUPPRESS)
    ap.add_argument("--trace", help="KDTHIN_TRACE of a cold link")
    ap.add_argument("--report", help="KDTHIN_REPORT of the same link")
    ap.add_argument("--tree", help="the link's directory (default: the report's cwd, else .)")
    ap.add_argument("--index-dir", help="the thin-link's index shards and .imports files")
    ap.add_argument("--mbit", type=float, action="append", help="bandwidth in Mbit/s, each way (repeatable; default 1000 and 10000)")
    ap.add_argument("--overhead-ms", type=float, default=50.0, help="per action on the worker: queue, sandbox, staging (default 50)")
    ap.add_argument("--rtt-ms", type=float, default=1.0, help="round trip per RPC (default 1)")
    ap.add_argument("--cpu-ratio", type=float, default=1.0, help="worker time / this machine's time per backend (default 1)")
    ap.add_argument("--hash-mbyte-s", type=float, default=1000.0, help="client SHA-256 MB/s per CPU (default 1000)")
    ap.add_argument("--client-ms", type=float, default=5.0,
                    help="kdthin-ld's CPU per executed action besides hashing: protos, RPCs, writing the output (default 5)")
    ap.add_argument("--client-warm-ms", type=float, default=1.0, help="the same per action-cache hit (default 1)")
    ap.add_argument("--client-source", default="assumed", help="where the client figures come from, for the output")
    ap.add_argument("--client-cpus", type=int, default=len(os.sched_getaffinity(0)), help="CPUs hashing on the client (default: this machine's)")
    ap.add_argument("--jobs", type=int, default=DEFAULT_JOBS, help="KDTHIN_REMOTE_JOBS (default 200; raised to the worker count)")
    ap.add_argument("--index-bytes", type=int, default=4096, help="index shard size when not known (default 4096)")
    ap.add_argument("--inproc-s", type=float, help="ld.lld in-process link time, for a ratio column")
    ap.add_argument("--markdown", action="store_true")
    a = ap.parse_args()
    a.trace = a.trace or a.trace_pos
    if not a.trace and not a.report:
        ap.error("need --trace (and --report), or --report alone")
    mbits = a.mbit or [1000.0, 10000.0]

    report = read_report(a.report) if a.report else None
    link = read_trace(a.trace) if a.trace else None
    tree = a.tree or (report or {}).get("cwd") or "."
    if report and link and link["output"]:
        report = read_report(a.report, link["output"])
    notes = []
    if link:
        backends = link["backends"]
        ph = link["phases"]
        thin, final = ph.get("thin-link", 0.0), ph.get("final link", 0.0)
        phase = ph.get("backends", 0.0)
        measured = ph.get("link") or (report or {}).get("times", {}).get("total")
        source = f"trace {a.trace}"
    else:
        if report.get("cache_hits"):
            die(f"{a.report}: {report['cache_hits']} cache hits: record a cold link")
        backends, note = estimate_from_report(report, tree)
        notes.append(note)
        thin, final = report["times"]["thin_link"], report["times"]["final_link"]
        phase, measured = report["times"]["backends"], report["times"]["total"]
        source = f"report {a.report}"
    if report:
        t = report["times"]
        thin, final = t.get("thin_link", thin), t.get("final_link", final)
        phase, measured = t.get("backends", phase), t.get("total", measured)
    # kdthin-ld's own time outside the three phases (planning, reading
    # .cmd files, writing archives, installing outputs): stays as measured.
    other = max((measured or 0.0) - thin - phase - final, 0.0)
    local = thin + final + other
    cpus = ((report or {}).get("jobs") or {}).get("count")

    jobs, blobs, missing = build_jobs(backends, tree, a.index_dir, a.index_bytes)
    named = sum(blobs[k] for j in jobs for k in j.blobs)
    uniq = sum(blobs.values())
    bc = sum(v for k, v in blobs.items() if k.startswith("m:"))
    idx = sum(v for k, v in blobs.items() if k.startswith("i:"))
    out = sum(j.out for j in jobs)
    cpu = sum(j.seconds for j in jobs)
    imports = sum(len(j.blobs) - 2 for j in jobs)
    reported_up = ((report or {}).get("remote") or {}).get("uploaded_bytes")
    if not a.index_dir and not any("imports" in b for b in backends):
        notes.append(f"imports and index shards unknown (no --index-dir): each action's inputs are its own bitcode "
                     f"and a {a.index_bytes}-byte shard; the upload total is unaffected (every module is some action's own input)")
    for what, n in missing.items():
        if n:
            notes.append(f"{n} backends without a {what} file: "
                         + {"output": "output taken as half the bitcode", "imports": "no imports",
                            "index": f"shard taken as {a.index_bytes} bytes"}[what])

    class P:
        pass

    p = P()
    p.overhead, p.rtt, p.cpu_ratio, p.jobs = a.overhead_ms / 1e3, a.rtt_ms / 1e3, a.cpu_ratio, a.jobs
    p.hash_rate = a.hash_mbyte_s * 1e6 * max(a.client_cpus, 1)
    p.client_cpus, p.client, p.client_warm = max(a.client_cpus, 1), a.client_ms / 1e3, a.client_warm_ms / 1e3

    rows = []
    for n in WORKERS:
        row = [n]
        for mbit in mbits:
            p.bw = mbit * 1e6 / 8
            span, _ = simulate(jobs, blobs, n, p)
            neck, share = bottleneck(jobs, blobs, n, p, span)
            row.append((local + span, span, neck, share))
        rows.append(row)
    warm = []
    for mbit in mbits:
        p.bw = mbit * 1e6 / 8
        span, _ = simulate(jobs, blobs, 1, p, warm=True)
        warm.append(local + span)

    # -- output
    md = a.markdown
    li = "- " if md else "  - "
    lines = []
    head = (f"Predicted from the {source}: {len(jobs)} backends, {cpu:.1f} s of backend time"
            + (f" (a local cold link of {measured:.2f} s on {cpus} CPUs" if measured else "")
            + (f"; ld.lld in-process {a.inproc_s:.2f} s)" if a.inproc_s and measured else (")" if measured else "")) + ".")
    lines.append(head if md else "# " + head)
    lines.append("" if md else "#")
    lines.append("Assumptions:" if md else "# Assumptions:")
    assume = [
        f"the thin-link ({thin:.2f} s), the final link ({final:.2f} s) and the rest of kdthin-ld's own work "
        f"(planning, archives, installing outputs: {other:.2f} s) stay local, as measured; so does hashing "
        f"every input once (SHA-256, {a.hash_mbyte_s:g} MB/s on each of {a.client_cpus} client CPUs) and kdthin-ld's "
        f"other work per action on those CPUs: {a.client_ms:g} ms per executed action, {a.client_warm_ms:g} ms per "
        f"action-cache hit ({a.client_source})",
        f"workers {'as fast as this machine' if a.cpu_ratio == 1 else f'{1 / a.cpu_ratio:g}x as fast as this machine'}: "
        f"each backend takes its measured time x {a.cpu_ratio:g}, plus {a.overhead_ms:g} ms per action on the worker "
        f"(queueing, sandbox, input staging, output capture); workers fetch inputs from the cluster's CAS for free",
        f"{a.rtt_ms:g} ms per RPC round trip, {RPCS_COLD} per action (action-cache miss, FindMissingBlobs, Execute, output read); "
        f"max(workers, {a.jobs}) actions in flight (KDTHIN_REMOTE_JOBS, default {DEFAULT_JOBS}: raise it above 200 workers)",
        f"uploads deduplicated once per link, through one link of the stated bandwidth (full duplex), in the order "
        f"actions need them: {mib(uniq):.1f} MiB unique (bitcode {mib(bc):.1f} MiB of {sum(1 for k in blobs if k.startswith('m:'))} modules, "
        f"index shards {mib(idx):.1f} MiB) of the {mib(named):.1f} MiB the actions name "
        + (f"({imports} imports)" if a.index_dir or imports else "(imports unknown)")
        + (f"; kdthin-ld reported {mib(reported_up):.1f} MiB uploaded" if reported_up is not None else ""),
        f"outputs downloaded once each: {mib(out):.1f} MiB of native objects",
        "an empty cluster (no blob already in its CAS, no action-cache entry); no compression; "
        "actions start largest bitcode first, as kdthin-ld sends them, on the first free worker",
    ]
    lines += [li + x for x in assume + notes]
    lines.append("")
    ref = [("× local", measured)] + ([("× in-process", a.inproc_s)] if a.inproc_s else [])
    cols = ["workers"]
    for mbit in mbits:
        cols += [f"{bw_name(mbit)}: link s"] + [r[0] for r in ref] + ["bottleneck"]
    if md:
        lines.append("| " + " | ".join(cols) + " |")
        lines.append("|---:|" + ("---:|" * (1 + len(ref)) + "---|") * len(mbits))
    else:
        lines.append("  ".join(f"{c:>12}" for c in cols))

    def fmt_row(first, cells):
        out_cells = [first]
        for total, neck in cells:
            out_cells.append(f"{total:.2f}")
            out_cells += [f"{total / r:.3f}" if r else "—" for _, r in ref]
            out_cells.append(neck)
        return "| " + " | ".join(out_cells) + " |" if md else "  ".join(f"{c:>12}" for c in out_cells)

    for row in rows:
        lines.append(fmt_row(str(row[0]), [(t, f"{neck} ({share:.0%})") for t, _, neck, share in row[1:]]))
    lines.append(fmt_row("warm action cache", [(t, "client + download") for t in warm]))
    lines.append("")
    lines.append(("" if md else "# ") + "bottleneck: the largest lower bound of the backend phase (longest backend, "
                 "backend time ÷ workers, upload, download, client hashing, client CPU per action) and its share of "
                 "the simulated phase.")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
