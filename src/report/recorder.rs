//! The link driver's single point of contact with reporting: it is told
//! about phases and backend events (and, from the scheduler's summary,
//! which backends the cache answered), and feeds the trace, the report and
//! the progress line from them. Everything it does is optional
//! and best effort: a report that cannot be written is a warning, never a
//! failed link.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use serde_json::{json, Map, Value};

use super::names::*;
use super::progress::{progress_enabled, stderr_is_tty, Progress};
use super::summary::{BackendTime, LinkReport};
use super::trace::{worker_lane, Trace, MAIN_LANE};
use crate::exec::scheduler::{Event, Finish, RunSummary};
use crate::exec::Job;
use crate::plan::Fallback;

/// What the environment asks for; read once, like the link's `Settings`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReportSettings {
    /// `KDTHIN_TRACE`: a file all links append to, or a directory.
    pub trace: Option<PathBuf>,
    /// `KDTHIN_REPORT`: a JSON Lines file all links append to.
    pub report: Option<PathBuf>,
    /// Show the progress line.
    pub progress: bool,
}

impl ReportSettings {
    /// `make_silent` and `verbose` as the link's `Settings` decided them.
    pub fn from_env(env: &crate::env::Env, make_silent: bool, verbose: bool) -> ReportSettings {
        let path = |k: &str| env.nonempty(k).map(PathBuf::from);
        ReportSettings {
            trace: path("KDTHIN_TRACE"),
            report: path("KDTHIN_REPORT"),
            progress: progress_enabled(stderr_is_tty(env.str("TERM")), env.str("CI"), make_silent, verbose),
        }
    }
}

/// One distributed link's recorder. Shared by reference with the
/// scheduler's event callback (it is `Sync`).
pub struct LinkRecorder {
    output: PathBuf,
    settings: ReportSettings,
    start: Instant,
    trace: Option<Trace>,
    report: Mutex<LinkReport>,
    backends: Mutex<Backends>,
    /// Created once the number of backends is known.
    progress: OnceLock<Progress>,
}

#[derive(Default)]
struct Backends {
    /// Job id -> (module, bitcode bytes).
    jobs: HashMap<usize, (String, u64)>,
    /// Job id -> when it started.
    started: HashMap<usize, Instant>,
    /// Finished jobs, traced once the phase is over: only then is it known
    /// which were answered by the cache.
    finished: Vec<Done>,
    /// Successful, compiled (not cached) backends' times.
    times: Vec<BackendTime>,
}

struct Done {
    id: usize,
    worker: usize,
    start: Instant,
    end: Instant,
    wall: f64,
    result: Finish,
}

impl LinkRecorder {
    /// Start of the link: the total time is measured from here.
    pub fn new(output: &Path, real_ld: &Path, settings: ReportSettings) -> LinkRecorder {
        let label = output.display().to_string();
        LinkRecorder {
            output: output.to_path_buf(),
            trace: settings.trace.is_some().then(|| Trace::new(&label)),
            settings,
            start: Instant::now(),
            report: Mutex::new(LinkReport::new(output, real_ld)),
            backends: Mutex::default(),
            progress: OnceLock::new(),
        }
    }

    /// A link that runs in-process in ld.lld from the start (we are about
    /// to exec it): one report line saying why. Nothing to trace.
    pub fn passthrough(output: &Path, real_ld: &Path, reason: &Fallback, settings: ReportSettings) {
        let r = LinkRecorder::new(output, real_ld, ReportSettings { trace: None, ..settings });
        r.finish_in_process(reason);
    }

    /// Fills in report fields (counts, jobs, fallbacks...).
    pub fn update(&self, f: impl FnOnce(&mut LinkReport)) {
        f(&mut lock(&self.report));
    }

    /// A step of the link itself, on the main lane. [`THIN_LINK`] and
    /// [`FINAL_LINK`] also count in the report's times.
    pub fn phase(&self, name: &str, start: Instant, end: Instant) {
        let secs = end.saturating_duration_since(start).as_secs_f64();
        self.update(|r| match name {
            THIN_LINK => r.times.thin_link += secs,
            FINAL_LINK => r.times.final_link += secs,
            BACKENDS => r.times.backends += secs,
            _ => {}
        });
        if let Some(t) = &self.trace {
            t.span(name, CAT_LINK, MAIN_LANE, start, end, Map::new());
        }
    }

    /// Runs the backend phase `run` (the scheduler) for `jobs`, with the
    /// progress line on while it runs and a [`BACKENDS`] span around it.
    /// `Job::label` is taken as the module name, `Job::weight` as its
    /// bitcode size. Sets the report's `compiled` and `cache_hits`.
    pub fn backends(&self, jobs: &[Job], run: impl FnOnce() -> RunSummary) -> RunSummary {
        lock(&self.backends).jobs = jobs.iter().map(|j| (j.id, (j.label.clone(), j.weight))).collect();
        let progress = self
            .progress
            .get_or_init(|| Progress::new(&self.output.display().to_string(), jobs.len(), self.settings.progress));
        let start = Instant::now();
        let summary = progress.while_running(run);
        self.phase(BACKENDS, start, Instant::now());
        let cached: HashSet<usize> = summary.succeeded.iter().filter(|o| o.from_cache()).map(|o| o.id).collect();
        let mut b = lock(&self.backends);
        let finished = std::mem::take(&mut b.finished);
        for d in &finished {
            let (module, bytes) = b.jobs.get(&d.id).cloned().unwrap_or_else(|| (format!("job {}", d.id), 0));
            let hit = cached.contains(&d.id);
            if d.result == Finish::Ok && !hit {
                b.times.push(BackendTime { module: module.clone(), seconds: d.wall, bitcode_bytes: bytes });
            }
            if let Some(t) = &self.trace {
                let mut args = backend_args(&module, bytes, hit);
                if d.result != Finish::Ok {
                    args.insert("result".into(), json!(format!("{:?}", d.result).to_lowercase()));
                }
                let cat = if hit { CAT_CACHE } else { CAT_BACKEND };
                t.span(&module, cat, worker_lane(d.worker), d.start, d.end, args);
            }
        }
        let ok = finished.iter().filter(|d| d.result == Finish::Ok).count();
        let forked = summary.succeeded.iter().filter(|o| o.ran_on == crate::exec::local::FORKED).count();
        drop(b);
        self.update(|r| {
            r.forked += forked;
            r.cache_hits += cached.len();
            r.compiled += ok - cached.len().min(ok);
        });
        summary
    }

    /// The scheduler's event callback: `&|ev| recorder.on_event(ev)`.
    pub fn on_event(&self, ev: Event) {
        let now = Instant::now();
        match ev {
            Event::Started { id, .. } => {
                lock(&self.backends).started.insert(id, now);
                if let Some(p) = self.progress.get() {
                    p.started();
                }
            }
            Event::Finished { id, worker, wall, result } => {
                {
                    let mut b = lock(&self.backends);
                    let start = b.started.remove(&id).unwrap_or_else(|| now.checked_sub(wall).unwrap_or(now));
                    b.finished.push(Done { id, worker, start, end: now, wall: wall.as_secs_f64(), result });
                }
                if let Some(p) = self.progress.get() {
                    p.finished();
                }
            }
        }
    }

    /// Erases the progress line; call before printing while backends run.
    pub fn clear_progress(&self) {
        if let Some(p) = self.progress.get() {
            p.clear();
        }
    }

    /// End of a distributed link that exits with `exit_code`: writes the
    /// report line and the trace, if asked for. Problems are warnings on
    /// stderr.
    pub fn finish(&self, exit_code: i32) {
        self.write(Some(exit_code), None);
    }

    /// End of a link that goes on in-process in ld.lld (exec follows):
    /// the report says why, and the trace shows the time spent before.
    pub fn finish_in_process(&self, reason: &Fallback) {
        self.write(None, Some(reason));
    }

    fn write(&self, exit_code: Option<i32>, in_process: Option<&Fallback>) {
        self.clear_progress();
        let report = {
            let mut r = lock(&self.report);
            r.exit_code = exit_code;
            r.self_max_rss_kib = self_max_rss_kib();
            if let Some(why) = in_process {
                r.passthrough_reason = Some(why.to_string());
                r.fallback_category = Some(why.category().to_string());
            }
            r.times.total = self.start.elapsed().as_secs_f64();
            r.set_slowest(std::mem::take(&mut lock(&self.backends).times));
            r.clone()
        };
        if let Some(t) = &self.trace {
            // The whole link as one span, the phases nested in it.
            let mut args = Map::new();
            args.insert("output".into(), json!(report.output));
            args.insert("exit_code".into(), json!(report.exit_code));
            args.insert("modules".into(), json!(report.modules));
            args.insert("passthrough_reason".into(), json!(report.passthrough_reason));
            t.span(LINK, CAT_LINK, MAIN_LANE, self.start, Instant::now(), args);
        }
        if let Some(path) = &self.settings.report {
            if let Err(e) = report.append_to(path) {
                eprintln!("kdthin-ld: warning: KDTHIN_REPORT={}: cannot write: {e}", path.display());
            }
        }
        if let (Some(t), Some(target)) = (&self.trace, &self.settings.trace) {
            if let Err(e) = t.save(target, &self.output) {
                eprintln!("kdthin-ld: warning: KDTHIN_TRACE={}: cannot write: {e}", target.display());
            }
        }
    }

    /// The report as it stands (for tests and the driver's own summary).
    pub fn report(&self) -> LinkReport {
        lock(&self.report).clone()
    }
}

fn backend_args(module: &str, bitcode_bytes: u64, cached: bool) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("module".into(), json!(module));
    m.insert("bitcode_bytes".into(), json!(bitcode_bytes));
    m.insert("cached".into(), json!(cached));
    m
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Reporting must survive a panic elsewhere.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// ru_maxrss of this process alone (children are RUSAGE_CHILDREN's).
fn self_max_rss_kib() -> u64 {
    // SAFETY: getrusage fills a zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0;
    }
    ru.ru_maxrss.max(0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::{JobError, JobOutcome};
    use crate::report::summary::read_reports;
    use crate::report::trace::read_events;
    use std::time::Duration;

    fn job(id: usize, label: &str, weight: u64) -> Job {
        Job { weight, ..Job::plain(id, label, vec![]) }
    }

    fn outcome(id: usize, ran_on: &'static str) -> JobOutcome {
        JobOutcome { id, wall: Duration::ZERO, ran_on, stderr: vec![], already_installed: false }
    }

    /// Plays the scheduler: each worker runs its (id, ms, result, ran_on)
    /// list, reporting events as run_all would.
    fn play(rec: &LinkRecorder, workers: Vec<Vec<(usize, u64, Finish, &'static str)>>) -> RunSummary {
        let summary = Mutex::new(RunSummary::default());
        std::thread::scope(|s| {
            for (worker, list) in workers.into_iter().enumerate() {
                let summary = &summary;
                s.spawn(move || {
                    for (id, ms, result, ran_on) in list {
                        rec.on_event(Event::Started { id, worker });
                        std::thread::sleep(Duration::from_millis(ms));
                        match result {
                            Finish::Ok => summary.lock().unwrap().succeeded.push(outcome(id, ran_on)),
                            _ => summary.lock().unwrap().failed.push((id, JobError::Cancelled)),
                        }
                        rec.on_event(Event::Finished { id, worker, wall: Duration::from_millis(ms), result });
                    }
                });
            }
        });
        summary.into_inner().unwrap()
    }

    fn settings(dir: &Path) -> ReportSettings {
        ReportSettings { trace: Some(dir.join("t.json")), report: Some(dir.join("r.jsonl")), progress: false }
    }

    /// A whole link as link.rs drives it.
    #[test]
    fn a_link_leaves_a_report_line_and_a_trace() {
        let dir = tempfile::tempdir().unwrap();
        let rec = LinkRecorder::new(Path::new("vmlinux.o"), Path::new("/usr/bin/ld.lld-22"), settings(dir.path()));
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_millis(30));
        rec.phase(THIN_LINK, t0, t0 + Duration::from_millis(30));
        let jobs = [
            job(0, "kernel/sched.o", 5000),
            job(1, "mm/slab.o", 300),
            job(2, "lib/string.o", 10),
            job(3, "init/main.o", 100),
            job(4, "lib/ctype.o", 50),
        ];
        let summary = rec.backends(&jobs, || {
            play(
                &rec,
                vec![
                    vec![(0, 25, Finish::Ok, "local"), (4, 0, Finish::Ok, "remote-cache")],
                    vec![(3, 0, Finish::Ok, "cache"), (1, 5, Finish::Ok, "local"), (2, 5, Finish::Failed, "local")],
                ],
            )
        });
        assert_eq!(summary.succeeded.len(), 4, "the scheduler's summary is passed through");
        let f0 = Instant::now();
        std::thread::sleep(Duration::from_millis(7));
        rec.phase(FINAL_LINK, f0, Instant::now());
        rec.update(|r| {
            r.modules = 4;
            r.used_modules = 4;
            r.cache_misses = 3;
        });
        rec.finish(1);

        let reports = read_reports(&std::fs::read_to_string(dir.path().join("r.jsonl")).unwrap()).unwrap();
        assert_eq!(reports.len(), 1);
        let r = &reports[0];
        assert_eq!((r.output.as_str(), r.exit_code, r.modules), ("vmlinux.o", Some(1), 4));
        // Our cache and a REAPI action cache both count as hits.
        assert_eq!((r.compiled, r.cache_hits), (2, 2));
        assert_eq!(r.real_ld, "/usr/bin/ld.lld-22");
        assert!((r.times.thin_link - 0.03).abs() < 1e-6 && r.times.final_link >= 0.007, "{:?}", r.times);
        assert!(r.times.backends >= 0.025 && r.times.total >= r.times.backends, "{:?}", r.times);
        let slow: Vec<(&str, f64)> = r.slowest_backends.iter().map(|b| (b.module.as_str(), b.seconds)).collect();
        assert_eq!(slow, [("kernel/sched.o", 0.025), ("mm/slab.o", 0.005)], "compiled ones only, slowest first");
        assert_eq!(r.slowest_backends[0].bitcode_bytes, 5000);

        let events = read_events(&std::fs::read_to_string(dir.path().join("t.json")).unwrap()).unwrap();
        let spans: Vec<&Value> = events.iter().filter(|e| e["ph"] == "X").collect();
        let find = |name: &str| {
            spans.iter().find(|e| e["name"] == name).copied().unwrap_or_else(|| panic!("{name}: {spans:?}"))
        };
        assert_eq!(find(THIN_LINK)["tid"], 0);
        let link = find(LINK);
        assert_eq!((link["args"]["exit_code"].as_i64(), link["args"]["output"].as_str()), (Some(1), Some("vmlinux.o")));
        let ends = |e: &Value| e["ts"].as_i64().unwrap() + e["dur"].as_i64().unwrap();
        assert!(
            spans.iter().all(|e| e["ts"].as_i64() >= link["ts"].as_i64() && ends(e) <= ends(link)),
            "everything nests in the link span"
        );
        assert_eq!(find(BACKENDS)["cat"], CAT_LINK);
        assert_eq!(find("kernel/sched.o")["tid"], 1, "worker 0's lane");
        assert_eq!(find("kernel/sched.o")["cat"], CAT_BACKEND);
        assert_eq!(find("kernel/sched.o")["args"]["bitcode_bytes"], 5000);
        assert_eq!(find("mm/slab.o")["tid"], 2);
        assert!(find("kernel/sched.o")["dur"].as_i64().unwrap() >= 25_000);
        assert_eq!(find("lib/string.o")["args"]["result"], "failed");
        assert_eq!(find("init/main.o")["cat"], CAT_CACHE);
        assert_eq!(find("init/main.o")["args"]["cached"], true);
        assert_eq!(find("init/main.o")["tid"], 2);

        // The summariser reads both back.
        let text = crate::report::summarize(&dir.path().join("r.jsonl")).unwrap();
        assert!(text.contains("kernel/sched.o"), "{text}");
        let text = crate::report::summarize(&dir.path().join("t.json")).unwrap();
        assert!(text.starts_with("1 link, 5 modules, 2 compiled, 2 cache hits"), "{text}");
        let row = text.lines().find(|l| l.starts_with("vmlinux.o")).unwrap();
        assert_eq!(row.split_whitespace().last(), Some("1"), "exit status from the link span: {text}");
    }

    #[test]
    fn passthrough_writes_only_a_report_line() {
        let dir = tempfile::tempdir().unwrap();
        let why = Fallback::CompileFlags("no .cmd file".into());
        LinkRecorder::passthrough(Path::new("mod/bar.o"), Path::new("ld.lld"), &why, settings(dir.path()));
        let reports = read_reports(&std::fs::read_to_string(dir.path().join("r.jsonl")).unwrap()).unwrap();
        assert_eq!(reports[0].passthrough_reason.as_deref(), Some("no .cmd file"));
        assert_eq!(reports[0].fallback_category.as_deref(), Some("compile-flags"));
        assert_eq!(reports[0].exit_code, None, "ld.lld's to tell");
        assert!(!dir.path().join("t.json").exists());
    }

    #[test]
    fn nothing_asked_nothing_written() {
        let dir = tempfile::tempdir().unwrap();
        let rec = LinkRecorder::new(&dir.path().join("x.o"), Path::new("ld.lld"), ReportSettings::default());
        rec.backends(&[job(0, "a.o", 1)], || play(&rec, vec![vec![(0, 0, Finish::Ok, "local")]]));
        rec.finish(0);
        assert_eq!(rec.report().compiled, 1);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn unwritable_report_is_only_a_warning() {
        let settings = ReportSettings { report: Some("/nonexistent/dir/r.jsonl".into()), ..Default::default() };
        let rec = LinkRecorder::new(Path::new("x.o"), Path::new("ld.lld"), settings);
        rec.finish(0); // must not panic
    }
}
