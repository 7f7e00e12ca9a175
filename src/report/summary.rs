//! The machine-readable per-link report (`KDTHIN_REPORT=FILE`) and the
//! summariser behind `kdthin report`.
//!
//! One make runs several distributed links (vmlinux.o, multi-object
//! modules), often at the same time, all with the same `KDTHIN_REPORT`. The
//! file is therefore JSON Lines: one [`LinkReport`] object per line,
//! appended with `O_APPEND` in a single `write()` under an exclusive `flock`
//! (the lock keeps lines whole even where a plain append is not atomic, such
//! as large lines or NFS). Lines are never rewritten: remove the file before
//! a build to get that build alone. `jq -s` reads it as an array.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::trace;
use crate::exec::slots::JobsSource;

/// How many backends the report lists by time.
pub const SLOWEST: usize = 20;

/// One link, as `kdthin-ld` saw it. Times are in seconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LinkReport {
    pub output: String,
    pub cwd: String,
    /// Tells concurrent links apart; the same pid as in the trace.
    pub pid: u32,
    /// Bitcode modules in the link.
    pub modules: usize,
    /// Modules the thin-link kept (lazy archive members may drop out).
    pub used_modules: usize,
    pub cache_hits: usize,
    pub cache_misses: usize,
    /// Backends that ran (and succeeded).
    pub compiled: usize,
    /// Of `compiled`, those forked from a fork server rather than started
    /// (src/exec/forkserver.rs).
    #[serde(default)]
    pub forked: usize,
    /// Objects that could not be distributed, and why.
    pub fallbacks: Vec<Fallback>,
    /// Set when the whole link ran in-process in ld.lld.
    pub passthrough_reason: Option<String>,
    /// Its category ([`crate::plan::Fallback::category`]).
    pub fallback_category: Option<String>,
    /// The [`SLOWEST`] slowest backends, slowest first.
    pub slowest_backends: Vec<BackendTime>,
    pub times: Times,
    pub jobs: Jobs,
    pub real_ld: String,
    pub kdthin_version: String,
    /// `None` when the link ended by executing ld.lld (passthrough), whose
    /// status make sees but we do not.
    pub exit_code: Option<i32>,
    /// Peak resident memory of kdthin-ld's own process (not its children),
    /// in KiB, when the report was written.
    #[serde(default)]
    pub self_max_rss_kib: u64,
    /// The whole output came from the cache (the link memo): no thin-link,
    /// no backends, no final link ran.
    #[serde(default)]
    pub link_cached: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Fallback {
    pub object: String,
    pub reason: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BackendTime {
    pub module: String,
    pub seconds: f64,
    pub bitcode_bytes: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Times {
    pub thin_link: f64,
    pub backends: f64,
    pub final_link: f64,
    pub total: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Jobs {
    /// The most backends that could run at once; `None` with a jobserver
    /// whose `-j` is not in MAKEFLAGS.
    pub count: Option<usize>,
    /// "jobserver(fifo)", "jobserver(pipe)", "cpus" or "env".
    pub source: String,
}

impl Jobs {
    /// `limit` is `Slots::limit()`.
    pub fn new(source: &JobsSource, limit: Option<usize>) -> Jobs {
        let (count, source) = match source {
            JobsSource::Env(n) => (Some(*n), "env".to_string()),
            JobsSource::Cpus(n) => (Some(*n), "cpus".to_string()),
            JobsSource::Jobserver { kind } => (limit, format!("jobserver({kind})")),
        };
        Jobs { count, source }
    }
}

impl LinkReport {
    /// A report with the fields every link has filled in.
    pub fn new(output: &Path, real_ld: &Path) -> LinkReport {
        LinkReport {
            output: output.display().to_string(),
            cwd: std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default(),
            pid: std::process::id(),
            real_ld: real_ld.display().to_string(),
            kdthin_version: env!("CARGO_PKG_VERSION").to_string(),
            ..LinkReport::default()
        }
    }

    /// Keeps the [`SLOWEST`] of `all`, slowest first.
    pub fn set_slowest(&mut self, mut all: Vec<BackendTime>) {
        all.sort_by(|a, b| b.seconds.total_cmp(&a.seconds).then_with(|| a.module.cmp(&b.module)));
        all.truncate(SLOWEST);
        self.slowest_backends = all;
    }

    /// Appends this report as one line of `path` (see the module docs).
    pub fn append_to(&self, path: &Path) -> io::Result<()> {
        let mut line = serde_json::to_string(self).map_err(io::Error::other)?;
        line.push('\n');
        trace::append_locked(path, |mut file| file.write_all(line.as_bytes()))
    }
}

/// Every report in a JSON Lines file (blank lines skipped).
pub fn read_reports(text: &str) -> Result<Vec<LinkReport>> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| serde_json::from_str(l).with_context(|| format!("line {}", n + 1)))
        .collect()
}

/// One row of the per-link table.
#[derive(Debug, Default, PartialEq)]
struct Row {
    output: String,
    modules: usize,
    compiled: usize,
    hits: usize,
    times: Times,
    /// `None` when the source does not say (traces).
    exit: Option<i32>,
    note: Option<String>,
    /// Why it ran in-process, by category (reports only).
    category: Option<String>,
}

/// Reads a report (JSON Lines) or a trace file and renders the per-link
/// totals and the slowest backends as text tables.
pub fn summarize(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let (rows, slowest) = if looks_like_trace(&text) {
        from_trace(&text).with_context(|| format!("{}: not a kdthin-ld trace", path.display()))?
    } else {
        from_reports(&read_reports(&text).with_context(|| format!("{}: not a kdthin-ld report", path.display()))?)
    };
    if rows.is_empty() {
        bail!("{}: no links recorded", path.display());
    }
    Ok(render(&rows, &slowest))
}

/// A trace starts with `[` or holds `traceEvents`; a report line never does.
fn looks_like_trace(text: &str) -> bool {
    let t = text.trim_start();
    t.starts_with('[') || t.lines().next().is_some_and(|l| l.contains("\"traceEvents\""))
}

/// Per-link rows, and every timed backend with the link it belongs to.
type Tables = (Vec<Row>, Vec<(BackendTime, String)>);

fn from_reports(reports: &[LinkReport]) -> Tables {
    let rows = reports
        .iter()
        .map(|r| Row {
            output: r.output.clone(),
            modules: r.modules,
            compiled: r.compiled,
            hits: r.cache_hits,
            times: r.times.clone(),
            exit: r.exit_code,
            note: r.passthrough_reason.as_ref().map(|why| format!("in-process: {why}")),
            category: r.passthrough_reason.as_ref().map(|_| r.fallback_category.clone().unwrap_or("other".into())),
        })
        .collect();
    let slowest =
        reports.iter().flat_map(|r| r.slowest_backends.iter().map(|b| (b.clone(), r.output.clone()))).collect();
    (rows, slowest)
}

/// Rebuilds per-link rows from the span names the recorder uses
/// (see `super::names`).
fn from_trace(text: &str) -> Result<Tables> {
    use super::names::*;
    let events = trace::read_events(text)?;
    let secs = |us: &Value| us.as_f64().unwrap_or(0.0) / 1e6;
    // pid -> (row, first ts, last end)
    let mut links: BTreeMap<u64, (Row, f64, f64)> = BTreeMap::new();
    let mut slowest = Vec::new();
    let mut backend_spans: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
    for e in &events {
        let pid = e["pid"].as_u64().unwrap_or(0);
        let entry = links.entry(pid).or_insert_with(|| (Row::default(), f64::MAX, f64::MIN));
        let (row, first, last) = entry;
        match e["ph"].as_str() {
            Some("M") if e["name"] == "process_name" => {
                let name = e["args"]["name"].as_str().unwrap_or("");
                row.output = name.strip_prefix("kdthin-ld ").unwrap_or(name).to_string();
            }
            Some("X") => {
                let (ts, dur) = (secs(&e["ts"]), secs(&e["dur"]));
                *first = first.min(ts);
                *last = last.max(ts + dur);
                let args = &e["args"];
                match (e["cat"].as_str(), e["name"].as_str()) {
                    (Some(CAT_LINK), Some(LINK)) => {
                        row.times.total = dur;
                        row.exit = args["exit_code"].as_i64().map(|c| c as i32);
                        row.note = args["passthrough_reason"].as_str().map(|why| format!("in-process: {why}"));
                    }
                    (Some(CAT_LINK), Some(THIN_LINK)) => row.times.thin_link += dur,
                    (Some(CAT_LINK), Some(FINAL_LINK)) => row.times.final_link += dur,
                    (Some(CAT_LINK), Some(BACKENDS)) => row.times.backends += dur,
                    (Some(CAT_BACKEND), _) => {
                        row.modules += 1;
                        if args["cached"] == true {
                            row.hits += 1;
                        } else if args.get("result").is_none() {
                            // Failed and cancelled backends carry a result.
                            row.compiled += 1;
                        }
                        let span = backend_spans.entry(pid).or_insert((f64::MAX, f64::MIN));
                        *span = (span.0.min(ts), span.1.max(ts + dur));
                        let module = args["module"].as_str().or(e["name"].as_str()).unwrap_or("?").to_string();
                        let bitcode_bytes = args["bitcode_bytes"].as_u64().unwrap_or(0);
                        slowest.push((BackendTime { module, seconds: dur, bitcode_bytes }, pid));
                    }
                    (Some(CAT_CACHE), _) => {
                        row.modules += 1;
                        row.hits += 1;
                    }
                    _ => {}
                }
            }
            Some("i") if e["cat"] == CAT_CACHE => row.hits += 1,
            _ => {}
        }
    }
    let mut rows = Vec::new();
    let mut names = BTreeMap::new();
    for (pid, (mut row, first, last)) in links {
        if last < first {
            continue; // metadata only
        }
        if row.times.total == 0.0 {
            row.times.total = last - first; // a trace without a link span
        }
        // A trace without a backends phase span: its backends' extent.
        if row.times.backends == 0.0 {
            if let Some((a, b)) = backend_spans.get(&pid) {
                row.times.backends = b - a;
            }
        }
        if row.output.is_empty() {
            row.output = format!("pid {pid}");
        }
        names.insert(pid, row.output.clone());
        rows.push(row);
    }
    let slowest = slowest.into_iter().map(|(b, pid)| (b, names.get(&pid).cloned().unwrap_or_default())).collect();
    Ok((rows, slowest))
}

fn render(rows: &[Row], slowest: &[(BackendTime, String)]) -> String {
    let mut out = String::new();
    let sum = |f: fn(&Row) -> usize| rows.iter().map(f).sum::<usize>();
    let in_process = rows.iter().filter(|r| r.note.is_some()).count();
    let _ = write!(
        out,
        "{} link{}, {} modules, {} compiled, {} cache hits",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" },
        sum(|r| r.modules),
        sum(|r| r.compiled),
        sum(|r| r.hits),
    );
    if in_process > 0 {
        let _ = write!(out, ", {in_process} in-process");
        // By category, when the source says (a report; a trace does not).
        let mut by: std::collections::BTreeMap<&str, usize> = Default::default();
        for c in rows.iter().filter_map(|r| r.category.as_deref()) {
            *by.entry(c).or_default() += 1;
        }
        if !by.is_empty() {
            let parts: Vec<String> = by.iter().map(|(c, n)| format!("{n} {c}")).collect();
            let _ = write!(out, " ({})", parts.join(", "));
        }
    }
    out.push_str("\n\n");

    let w = rows.iter().map(|r| r.output.len()).max().unwrap_or(0).max("link".len());
    let _ = writeln!(
        out,
        "{:<w$}  {:>7}  {:>8}  {:>4}  {:>9}  {:>8}  {:>6}  {:>7}  {:>4}",
        "link", "modules", "compiled", "hits", "thin-link", "backends", "final", "total", "exit"
    );
    for r in rows {
        let exit = r.exit.map_or("-".to_string(), |c| c.to_string());
        let t = &r.times;
        let _ = writeln!(
            out,
            "{:<w$}  {:>7}  {:>8}  {:>4}  {:>9}  {:>8}  {:>6}  {:>7}  {:>4}",
            r.output,
            r.modules,
            r.compiled,
            r.hits,
            seconds(t.thin_link),
            seconds(t.backends),
            seconds(t.final_link),
            seconds(t.total),
            exit
        );
        if let Some(note) = &r.note {
            let _ = writeln!(out, "  ({note})");
        }
    }

    let mut slowest: Vec<&(BackendTime, String)> = slowest.iter().collect();
    slowest.sort_by(|a, b| b.0.seconds.total_cmp(&a.0.seconds).then_with(|| a.0.module.cmp(&b.0.module)));
    slowest.truncate(SLOWEST);
    if !slowest.is_empty() {
        let mw = slowest.iter().map(|(b, _)| b.module.len()).max().unwrap_or(0).max("module".len());
        let _ = writeln!(out, "\nslowest backends\n{:>8}  {:>9}  {:<mw$}  link", "time", "bitcode", "module");
        for (b, link) in slowest {
            let _ =
                writeln!(out, "{:>8}  {:>9}  {:<mw$}  {link}", seconds(b.seconds), bytes(b.bitcode_bytes), b.module);
        }
    }
    out
}

fn seconds(s: f64) -> String {
    if s >= 59.95 {
        let whole = s.round() as u64;
        format!("{}m{:02}s", whole / 60, whole % 60)
    } else {
        format!("{s:.1}s")
    }
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / (1 << 10) as f64),
        n => format!("{n} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(output: &str, n: usize) -> LinkReport {
        let mut r = LinkReport::new(Path::new(output), Path::new("/usr/bin/ld.lld-22"));
        r.modules = n;
        r.used_modules = n;
        r.compiled = n - 1;
        r.cache_hits = 1;
        r.cache_misses = n - 1;
        r.times = Times { thin_link: 1.5, backends: 20.25, final_link: 2.0, total: 24.0 };
        r.jobs = Jobs::new(&JobsSource::Jobserver { kind: "fifo" }, Some(8));
        r.exit_code = Some(0);
        r.set_slowest(
            (0..n)
                .map(|i| BackendTime {
                    module: format!("{output}-m{i}.o"),
                    seconds: i as f64,
                    bitcode_bytes: 1000 * i as u64,
                })
                .collect(),
        );
        r
    }

    #[test]
    fn report_round_trips_with_the_documented_fields() {
        let r = report("vmlinux.o", 30);
        let line = serde_json::to_string(&r).unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        for key in [
            "output",
            "cwd",
            "pid",
            "modules",
            "used_modules",
            "cache_hits",
            "cache_misses",
            "compiled",
            "fallbacks",
            "passthrough_reason",
            "slowest_backends",
            "times",
            "jobs",
            "real_ld",
            "kdthin_version",
            "exit_code",
        ] {
            assert!(v.get(key).is_some(), "missing {key}: {line}");
        }
        assert_eq!(v["jobs"], serde_json::json!({ "count": 8, "source": "jobserver(fifo)" }));
        assert_eq!(v["times"]["backends"], 20.25);
        assert_eq!(v["slowest_backends"].as_array().unwrap().len(), SLOWEST);
        assert_eq!(v["slowest_backends"][0]["module"], "vmlinux.o-m29.o");
        assert_eq!(v["kdthin_version"], env!("CARGO_PKG_VERSION"));
        let back: LinkReport = serde_json::from_str(&line).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn jobs_source_names() {
        let name = |s, l| Jobs::new(&s, l);
        assert_eq!(name(JobsSource::Env(3), None), Jobs { count: Some(3), source: "env".into() });
        assert_eq!(name(JobsSource::Cpus(16), Some(16)), Jobs { count: Some(16), source: "cpus".into() });
        assert_eq!(
            name(JobsSource::Jobserver { kind: "pipe" }, None),
            Jobs { count: None, source: "jobserver(pipe)".into() }
        );
    }

    #[test]
    fn reports_from_two_threads_stay_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.jsonl");
        // Big lines (long fallback reasons) so a torn write would show.
        let big = |name: &str| {
            let mut r = report(name, 25);
            r.fallbacks =
                (0..50).map(|i| Fallback { object: format!("{name}/{i}.o"), reason: "x".repeat(500) }).collect();
            r
        };
        let (a, b) = (big("vmlinux.o"), big("mod/foo.o"));
        assert!(serde_json::to_string(&a).unwrap().len() > 16 * 1024);
        std::thread::scope(|s| {
            for r in [&a, &b] {
                s.spawn(|| {
                    for _ in 0..20 {
                        r.append_to(&path).unwrap();
                    }
                });
            }
        });
        let text = std::fs::read_to_string(&path).unwrap();
        let all = read_reports(&text).unwrap();
        assert_eq!(all.len(), 40);
        assert_eq!(all.iter().filter(|r| **r == a).count(), 20);
        assert_eq!(all.iter().filter(|r| **r == b).count(), 20);
    }

    #[test]
    fn summary_of_reports() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        report("vmlinux.o", 30).append_to(&path).unwrap();
        report("mod/foo.o", 3).append_to(&path).unwrap();
        let mut pass = LinkReport::new(Path::new("mod/bar.o"), Path::new("ld.lld"));
        pass.passthrough_reason = Some("mod/bar.o: no .cmd file".into());
        pass.fallback_category = Some("compile-flags".into());
        pass.times.total = 0.25;
        pass.append_to(&path).unwrap();

        let text = summarize(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0], "3 links, 33 modules, 31 compiled, 2 cache hits, 1 in-process (1 compile-flags)",
            "{text}"
        );
        assert!(lines[2].starts_with("link ") && lines[2].ends_with("exit"), "{text}");
        let vm = lines.iter().find(|l| l.starts_with("vmlinux.o")).unwrap();
        assert_eq!(
            vm.split_whitespace().collect::<Vec<_>>(),
            ["vmlinux.o", "30", "29", "1", "1.5s", "20.2s", "2.0s", "24.0s", "0"]
        );
        assert!(text.contains("  (in-process: mod/bar.o: no .cmd file)"), "{text}");
        // Slowest across links, slowest first, capped.
        let slow: Vec<&str> = text.lines().skip_while(|l| *l != "slowest backends").skip(2).collect();
        assert_eq!(slow.len(), SLOWEST, "{text}");
        assert_eq!(
            slow[0].split_whitespace().collect::<Vec<_>>(),
            ["29.0s", "28.3", "KiB", "vmlinux.o-m29.o", "vmlinux.o"]
        );
        assert!(slow.iter().all(|l| !l.contains("mod/foo.o-m")), "foo's are all faster: {text}");
    }

    #[test]
    fn summary_of_a_trace() {
        use super::super::names::*;
        use super::super::trace::{worker_lane, Trace, MAIN_LANE};
        use serde_json::{json, Map};
        use std::time::{Duration, Instant};
        let t = Trace::new("vmlinux.o");
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let be = |module: &str, bytes: u64, cached: bool| {
            let mut m = Map::new();
            m.insert("module".into(), json!(module));
            m.insert("bitcode_bytes".into(), json!(bytes));
            m.insert("cached".into(), json!(cached));
            m
        };
        t.span(THIN_LINK, CAT_LINK, MAIN_LANE, t0, ms(100), Map::new());
        t.span("kernel/sched.o", CAT_BACKEND, worker_lane(0), ms(100), ms(1600), be("kernel/sched.o", 3 << 20, false));
        t.span("mm/slab.o", CAT_BACKEND, worker_lane(1), ms(100), ms(400), be("mm/slab.o", 2048, false));
        t.instant(CACHE_HIT, CAT_CACHE, MAIN_LANE, ms(100), be("init/main.o", 10, true));
        t.span(FINAL_LINK, CAT_LINK, MAIN_LANE, ms(1600), ms(2000), Map::new());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        t.append_to(&path).unwrap();

        let text = summarize(&path).unwrap();
        assert!(text.starts_with("1 link, 2 modules, 2 compiled, 1 cache hits\n"), "{text}");
        let vm = text.lines().find(|l| l.starts_with("vmlinux.o")).unwrap();
        assert_eq!(
            vm.split_whitespace().collect::<Vec<_>>(),
            ["vmlinux.o", "2", "2", "1", "0.1s", "1.5s", "0.4s", "2.0s", "-"]
        );
        let slow: Vec<&str> = text.lines().skip_while(|l| *l != "slowest backends").skip(2).collect();
        assert_eq!(
            slow[0].split_whitespace().collect::<Vec<_>>(),
            ["1.5s", "3.0", "MiB", "kernel/sched.o", "vmlinux.o"]
        );
        assert_eq!(slow.len(), 2);

        // The per-link file form reads the same.
        t.write_atomic(&path).unwrap();
        assert_eq!(summarize(&path).unwrap(), text);
    }

    #[test]
    fn summary_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        std::fs::write(&path, "not json\n").unwrap();
        let e = format!("{:#}", summarize(&path).unwrap_err());
        assert!(e.contains("x: not a kdthin-ld report: line 1"), "{e}");
        std::fs::write(&path, "").unwrap();
        assert!(format!("{:#}", summarize(&path).unwrap_err()).contains("no links recorded"));
        assert!(format!("{:#}", summarize(&dir.path().join("missing")).unwrap_err()).contains("cannot read"));
    }

    #[test]
    fn human_units() {
        assert_eq!(seconds(0.04), "0.0s");
        assert_eq!(seconds(59.94), "59.9s");
        assert_eq!(seconds(59.97), "1m00s");
        assert_eq!(seconds(125.0), "2m05s");
        assert_eq!(seconds(119.7), "2m00s");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
    }
}
