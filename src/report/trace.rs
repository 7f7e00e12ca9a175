//! A Chrome trace (Trace Event Format) of one link, for Perfetto
//! (ui.perfetto.dev) or chrome://tracing.
//!
//! Layout: one *process* per link (our pid, named `kdthin-ld <output>`), one
//! *lane* (thread) for the link's own steps (thin-link, final link, cache
//! look-ups) and one per scheduler worker, so the backends show as a Gantt
//! chart and the long poles stand out.
//!
//! Timestamps are CLOCK_MONOTONIC microseconds, a clock every process on
//! the machine shares: traces of links that ran at the same time line up
//! when they are merged into one file.
//!
//! Several links, one `KDTHIN_TRACE` (see [`Trace::save`]):
//! - a directory: one complete trace per link,
//!   `<dir>/<output name>.<pid>.trace.json`, written atomically;
//! - anything else: a file all links append to, under an exclusive
//!   `flock`. It uses the JSON Array Format without the closing `]`, which
//!   the format allows precisely so that traces can be appended to; Perfetto
//!   and chrome://tracing load it, and `kdthin report` reads it. Remove the
//!   file before a build to get that build alone.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use serde_json::{json, Map, Value};

/// The lane of the link's own steps.
pub const MAIN_LANE: u32 = 0;

/// The lane of scheduler worker `worker` (lane 0 is the link itself).
pub fn worker_lane(worker: usize) -> u32 {
    u32::try_from(worker).unwrap_or(u32::MAX - 1) + 1
}

/// Thread-safe recorder; events arrive from worker threads.
pub struct Trace {
    pid: u32,
    /// The same moment on both clocks, so an `Instant` can be placed on the
    /// machine-wide monotonic clock.
    anchor: Instant,
    anchor_us: i64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    events: Vec<Value>,
    named_lanes: BTreeSet<u32>,
}

impl Trace {
    /// `label` names the process row, e.g. the link's output `vmlinux.o`.
    pub fn new(label: &str) -> Trace {
        let t = Trace {
            pid: std::process::id(),
            anchor: Instant::now(),
            anchor_us: monotonic_us(),
            state: Mutex::new(State::default()),
        };
        t.lock().events.push(json!({
            "ph": "M", "name": "process_name", "pid": t.pid, "tid": MAIN_LANE,
            "args": { "name": format!("kdthin-ld {label}") },
        }));
        t.name_lane(MAIN_LANE, "kdthin-ld");
        t
    }

    /// Names a lane (`thread_name`) and keeps lanes in numeric order
    /// (`thread_sort_index`). Lanes used without a name get a default one.
    pub fn name_lane(&self, lane: u32, name: &str) {
        self.name_lane_in(&mut self.lock(), lane, name);
    }

    fn name_lane_in(&self, st: &mut State, lane: u32, name: &str) {
        st.named_lanes.insert(lane);
        for (meta, args) in
            [("thread_name", json!({ "name": name })), ("thread_sort_index", json!({ "sort_index": lane }))]
        {
            st.events.push(json!({ "ph": "M", "name": meta, "pid": self.pid, "tid": lane, "args": args }));
        }
    }

    /// A complete event (`ph: X`) from `start` to `end`.
    pub fn span(&self, name: &str, category: &str, lane: u32, start: Instant, end: Instant, args: Map<String, Value>) {
        let ts = self.ts(start);
        let dur = (self.ts(end) - ts).max(0);
        self.push_on(
            lane,
            json!({
                "ph": "X", "name": name, "cat": category, "pid": self.pid, "tid": lane,
                "ts": ts, "dur": dur, "args": args,
            }),
        );
    }

    /// A thread-scoped instant event (`ph: i`), e.g. a cache hit.
    pub fn instant(&self, name: &str, category: &str, lane: u32, at: Instant, args: Map<String, Value>) {
        self.push_on(
            lane,
            json!({
                "ph": "i", "s": "t", "name": name, "cat": category, "pid": self.pid, "tid": lane,
                "ts": self.ts(at), "args": args,
            }),
        );
    }

    /// Every event recorded so far, metadata first.
    pub fn events(&self) -> Vec<Value> {
        self.lock().events.clone()
    }

    /// The whole trace as one JSON object (the JSON Object Format).
    pub fn to_json(&self) -> Value {
        json!({ "traceEvents": self.events(), "displayTimeUnit": "ms" })
    }

    /// Writes the trace to `path` through a temporary file and a rename, so
    /// a reader never sees half a trace.
    pub fn write_atomic(&self, path: &Path) -> io::Result<()> {
        let mut tmp = path.as_os_str().to_os_string();
        tmp.push(format!(".tmp{}", self.pid));
        let tmp = PathBuf::from(tmp);
        let text = serde_json::to_vec(&self.to_json()).map_err(io::Error::other)?;
        let written = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }

    /// Appends this trace's events to the shared file `path` (see the module
    /// docs), starting the array if the file is new.
    pub fn append_to(&self, path: &Path) -> io::Result<()> {
        let mut text = String::new();
        for e in self.events() {
            text.push_str(&e.to_string());
            text.push_str(",\n");
        }
        // Concurrent links: whoever finds the file empty writes the `[`, and
        // nobody's events may land before it.
        append_locked(path, |mut file| {
            if file.metadata()?.len() == 0 {
                text.insert_str(0, "[\n");
            }
            file.write_all(text.as_bytes())
        })
    }

    /// Saves per `KDTHIN_TRACE=target` (see the module docs) and returns the
    /// file written. `output` is the link's output, for the per-link name.
    pub fn save(&self, target: &Path, output: &Path) -> io::Result<PathBuf> {
        if target.is_dir() {
            let name = output.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "a.out".into());
            let path = target.join(format!("{name}.{}.trace.json", self.pid));
            self.write_atomic(&path)?;
            Ok(path)
        } else {
            self.append_to(target)?;
            Ok(target.to_path_buf())
        }
    }

    fn ts(&self, t: Instant) -> i64 {
        let delta = match t.checked_duration_since(self.anchor) {
            Some(after) => i64::try_from(after.as_micros()).unwrap_or(i64::MAX),
            None => -i64::try_from(self.anchor.duration_since(t).as_micros()).unwrap_or(i64::MAX),
        };
        self.anchor_us.saturating_add(delta)
    }

    /// Records `event` on `lane`, naming the lane first if nobody has.
    fn push_on(&self, lane: u32, event: Value) {
        let mut st = self.lock();
        if !st.named_lanes.contains(&lane) {
            let name = if lane == MAIN_LANE { "kdthin-ld".to_string() } else { format!("worker {}", lane - 1) };
            self.name_lane_in(&mut st, lane, &name);
        }
        st.events.push(event);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere must not cost us the trace of what happened.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// CLOCK_MONOTONIC in microseconds (what `Instant` reads on Linux, but as a
/// number other processes can compare with).
fn monotonic_us() -> i64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    // time_t and c_long are i32 on 32-bit targets.
    #[allow(clippy::useless_conversion)]
    let us = i64::from(ts.tv_sec) * 1_000_000 + i64::from(ts.tv_nsec) / 1_000;
    us
}

/// Append to a file shared by concurrent links (make runs several): opened
/// in append mode, created world-writable as the umask allows, and `write`
/// runs under an exclusive lock so one link's lines never interleave with
/// another's.
pub(crate) fn append_locked(path: &Path, write: impl FnOnce(&File) -> io::Result<()>) -> io::Result<()> {
    let file = OpenOptions::new().create(true).append(true).mode(0o666).open(path)?;
    let _lock = Flock::exclusive(&file)?;
    write(&file)
}

/// An exclusive advisory lock, released on drop (and by the kernel if we die).
pub(crate) struct Flock<'a>(&'a File);

impl<'a> Flock<'a> {
    pub(crate) fn exclusive(file: &'a File) -> io::Result<Self> {
        loop {
            // SAFETY: flock on an fd we own for the guard's lifetime.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(Flock(file));
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

impl Drop for Flock<'_> {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// Reads a trace file in any of the forms above: the object format, a
/// complete array, or an appended array without its `]`.
pub fn read_events(text: &str) -> Result<Vec<Value>, serde_json::Error> {
    let t = text.trim_start();
    if t.starts_with('{') {
        let v: Value = serde_json::from_str(t)?;
        return Ok(match v.get("traceEvents") {
            Some(Value::Array(a)) => a.clone(),
            _ => Vec::new(),
        });
    }
    let body = t.trim_end();
    let body = body.strip_suffix(']').unwrap_or(body).trim_end();
    let body = body.strip_suffix(',').unwrap_or(body);
    let closed = format!("{body}]");
    serde_json::from_str(&closed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn args(pairs: &[(&str, Value)]) -> Map<String, Value> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    fn sample() -> (Trace, Instant) {
        let t = Trace::new("vmlinux.o");
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        t.span("thin-link", "link", MAIN_LANE, t0, ms(100), Map::new());
        t.span(
            "init/main.o",
            "backend",
            worker_lane(1),
            ms(100),
            ms(350),
            args(&[("module", json!("init/main.o")), ("bitcode_bytes", json!(4096)), ("cached", json!(false))]),
        );
        t.instant("cache hit", "cache", MAIN_LANE, ms(120), args(&[("module", json!("mm/slab.o"))]));
        (t, t0)
    }

    fn of_phase<'a>(events: &'a [Value], ph: &str) -> Vec<&'a Value> {
        events.iter().filter(|e| e["ph"] == ph).collect()
    }

    #[test]
    fn events_have_the_trace_event_format_fields() {
        let (t, _) = sample();
        let text = serde_json::to_string(&t.to_json()).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        let events = v["traceEvents"].as_array().unwrap();
        let pid = std::process::id();
        assert!(events.iter().all(|e| e["pid"] == pid), "{events:?}");

        let spans = of_phase(events, "X");
        assert_eq!(spans.len(), 2);
        let (thin, be) = (spans[0], spans[1]);
        assert_eq!(
            (thin["name"].as_str(), thin["cat"].as_str(), thin["tid"].as_u64()),
            (Some("thin-link"), Some("link"), Some(0))
        );
        assert_eq!(thin["dur"].as_i64(), Some(100_000), "microseconds");
        assert_eq!(be["tid"].as_u64(), Some(2), "worker 1 is lane 2");
        assert_eq!(be["dur"].as_i64(), Some(250_000));
        assert_eq!(be["ts"].as_i64().unwrap() - thin["ts"].as_i64().unwrap(), 100_000);
        assert_eq!(be["args"]["bitcode_bytes"], 4096);
        assert_eq!(be["args"]["cached"], false);

        let instants = of_phase(events, "i");
        assert_eq!(instants.len(), 1);
        assert_eq!(instants[0]["s"], "t");
        assert!(instants[0]["ts"].is_i64());

        // Timestamps are on the machine-wide monotonic clock.
        let now = monotonic_us();
        let ts = thin["ts"].as_i64().unwrap();
        assert!(ts <= now && now - ts < 60_000_000, "{ts} vs {now}");
    }

    #[test]
    fn lanes_are_named_and_ordered() {
        let (t, _) = sample();
        let events = t.events();
        let meta = of_phase(&events, "M");
        let thread_name = |tid: u64| {
            meta.iter()
                .find(|e| e["name"] == "thread_name" && e["tid"] == tid)
                .map(|e| e["args"]["name"].as_str().unwrap().to_owned())
        };
        assert_eq!(thread_name(0).as_deref(), Some("kdthin-ld"));
        assert_eq!(thread_name(2).as_deref(), Some("worker 1"));
        assert_eq!(thread_name(1), None, "unused lanes stay out");
        let process = meta.iter().find(|e| e["name"] == "process_name").unwrap();
        assert_eq!(process["args"]["name"], "kdthin-ld vmlinux.o");
        assert!(meta.iter().any(|e| e["name"] == "thread_sort_index" && e["tid"] == 2 && e["args"]["sort_index"] == 2));
        // Each lane is named once, however many spans it has.
        t.span("x", "backend", worker_lane(1), Instant::now(), Instant::now(), Map::new());
        let names = t.events().iter().filter(|e| e["name"] == "thread_name" && e["tid"] == 2).count();
        assert_eq!(names, 1);
    }

    #[test]
    fn explicit_lane_names_win() {
        let t = Trace::new("x");
        t.name_lane(worker_lane(0), "remote 0");
        t.span("a", "backend", worker_lane(0), Instant::now(), Instant::now(), Map::new());
        let names: Vec<_> = t
            .events()
            .iter()
            .filter(|e| e["name"] == "thread_name" && e["tid"] == 1)
            .map(|e| e["args"]["name"].clone())
            .collect();
        assert_eq!(names, [json!("remote 0")]);
    }

    #[test]
    fn span_before_the_recorder_existed_is_placed_correctly() {
        let early = Instant::now();
        std::thread::sleep(Duration::from_millis(5));
        let t = Trace::new("x");
        t.span("thin-link", "link", MAIN_LANE, early, Instant::now(), Map::new());
        let e = of_phase(&t.events(), "X")[0].clone();
        assert!(e["dur"].as_i64().unwrap() >= 5_000, "{e}");
    }

    #[test]
    fn write_atomic_leaves_one_valid_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        let (t, _) = sample();
        t.write_atomic(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["traceEvents"].as_array().unwrap().len(), t.events().len());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary left");
    }

    #[test]
    fn links_append_to_one_file_from_many_threads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("build.trace.json");
        let per_trace = sample().0.events().len();
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| sample().0.append_to(&path).unwrap());
            }
        });
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("[\n{"), "{text:.40}");
        assert_eq!(text.matches("[\n").count(), 1, "one array start");
        let events = read_events(&text).unwrap();
        assert_eq!(events.len(), 8 * per_trace);
        // Every line is one whole event.
        for line in text.lines().skip(1) {
            let ev = line.strip_suffix(',').expect("event line ends with a comma");
            serde_json::from_str::<Value>(ev).unwrap();
        }
    }

    #[test]
    fn save_picks_per_link_files_in_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let (t, _) = sample();
        let written = t.save(dir.path(), Path::new("mod/foo.o")).unwrap();
        assert_eq!(written, dir.path().join(format!("foo.o.{}.trace.json", std::process::id())));
        assert!(read_events(&std::fs::read_to_string(&written).unwrap()).unwrap().len() > 3);

        let file = dir.path().join("all.json");
        assert_eq!(t.save(&file, Path::new("vmlinux.o")).unwrap(), file);
        assert!(std::fs::read_to_string(&file).unwrap().starts_with("[\n"));
    }

    #[test]
    fn read_events_accepts_every_form() {
        let e = r#"{"ph":"X","name":"a","ts":1,"dur":2,"pid":1,"tid":0}"#;
        for text in
            [format!(r#"{{"traceEvents":[{e}]}}"#), format!("[{e}]"), format!("[\n{e},\n"), format!("[\n{e},\n]\n")]
        {
            assert_eq!(read_events(&text).unwrap().len(), 1, "{text}");
        }
        assert_eq!(read_events("[\n").unwrap().len(), 0);
        assert!(read_events("[{nope").is_err());
    }
}
