//! A live progress line for the backend phase:
//!
//! ```text
//!   LTO     vmlinux.o  [123/539] 2 running, 12.3s, ETA 20s
//! ```
//!
//! Only on an interactive terminal ([`progress_enabled`]): logs, CI and
//! `make -s` get nothing but the usual one-line summary. The line is drawn
//! with `\r` + clear-to-end-of-line, at most ten times a second, cut to the
//! terminal's width (a wrapped line could not be erased), and erased again
//! before anything else is printed and at the end, so it leaves no trace.
//!
//! Known limit: make may run other recipes at the same time, writing to the
//! same terminal. Their text then lands after our line; the next redraw
//! starts on a fresh line, so at worst one stale progress line stays above
//! their output. There is no way to own the terminal from inside one recipe.

use std::io::{self, Write};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Erase the current line: back to column 0, clear to its end.
pub const ERASE: &str = "\r\x1b[K";

/// At most this often, so a burst of small backends costs no terminal time.
const REDRAW: Duration = Duration::from_millis(100);

/// Whether to show the line. Pure, so the rules are tested:
/// stderr is a terminal, not CI (`CI` unset, empty, `0` or `false`), not
/// `make -s`, not verbose (full commands are printed then, and a status line
/// between them would be noise).
pub fn progress_enabled(stderr_is_tty: bool, ci_env: Option<&str>, make_silent: bool, verbose: bool) -> bool {
    let ci = ci_env.is_some_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"));
    stderr_is_tty && !ci && !make_silent && !verbose
}

/// stderr is a terminal that understands `ESC [ K` (not `TERM=dumb`).
pub fn stderr_is_tty(term: Option<&str>) -> bool {
    // SAFETY: isatty only inspects the descriptor.
    let tty = unsafe { libc::isatty(libc::STDERR_FILENO) } == 1;
    tty && term != Some("dumb")
}

/// The columns of the terminal on stderr, if it is one.
fn stderr_columns() -> Option<usize> {
    // SAFETY: TIOCGWINSZ writes a winsize into ws; ws lives across the call.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    (ok && ws.ws_col > 0).then_some(ws.ws_col as usize)
}

/// The line's text for the given state.
pub fn render(label: &str, done: usize, total: usize, running: usize, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    let mut line = format!("  {:<7} {label}  [{done}/{total}] {running} running, {secs:.1}s", "LTO");
    // Throughput so far: completions per second of wall time already
    // reflects how many run at once. Largest-first scheduling makes it
    // pessimistic early on, which is the better direction to err in.
    if done > 0 && done < total {
        let eta = secs / done as f64 * (total - done) as f64;
        line.push_str(&format!(", ETA {}", short_duration(eta)));
    }
    line
}

fn short_duration(s: f64) -> String {
    let s = s.round() as u64;
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// Thread-safe: the scheduler's workers report as jobs start and end.
pub struct Progress {
    enabled: bool,
    label: String,
    total: usize,
    start: Instant,
    /// Nothing is drawn before this much time has passed: a link that is
    /// over in a blink should not flash a line.
    show_after: Duration,
    width: Option<usize>,
    state: Mutex<State>,
}

struct State {
    done: usize,
    running: usize,
    last_draw: Option<Instant>,
    /// A line is on screen and must be erased before other output.
    shown: bool,
    out: Box<dyn Write + Send>,
}

impl Progress {
    /// Draws on stderr. `label` is the link's output, e.g. `vmlinux.o`;
    /// `total` the number of backends to run.
    pub fn new(label: &str, total: usize, enabled: bool) -> Progress {
        let mut p = Progress::with_writer(label, total, enabled, Box::new(io::stderr()));
        p.show_after = Duration::from_millis(300);
        p.width = stderr_columns();
        p
    }

    /// Draws on `out` from the first event on, at any width (for tests).
    pub fn with_writer(label: &str, total: usize, enabled: bool, out: Box<dyn Write + Send>) -> Progress {
        Progress {
            enabled,
            label: label.to_string(),
            total,
            start: Instant::now(),
            show_after: Duration::ZERO,
            width: None,
            state: Mutex::new(State { done: 0, running: 0, last_draw: None, shown: false, out }),
        }
    }

    pub fn started(&self) {
        self.update(|st| st.running += 1);
    }

    /// A job ended (whatever its result).
    pub fn finished(&self) {
        self.update(|st| {
            st.running = st.running.saturating_sub(1);
            st.done += 1;
        });
    }

    /// Redraws if due (the elapsed time moves on without events).
    pub fn tick(&self) {
        self.update(|_| {});
    }

    /// Erases the line, if one is shown; call before printing anything.
    /// The next event or tick draws it again.
    pub fn clear(&self) {
        if !self.enabled {
            return;
        }
        let mut st = self.lock();
        if st.shown {
            let _ = st.out.write_all(ERASE.as_bytes());
            let _ = st.out.flush();
            st.shown = false;
        }
    }

    /// Runs `f` (the backend phase) with a ticker redrawing the line, and
    /// erases the line when `f` returns.
    pub fn while_running<R>(&self, f: impl FnOnce() -> R) -> R {
        if !self.enabled {
            return f();
        }
        let stop = (Mutex::new(false), Condvar::new());
        // Stops the ticker even if `f` unwinds, or the scope would wait forever.
        struct StopOnDrop<'a>(&'a (Mutex<bool>, Condvar));
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                *self.0 .0.lock().unwrap_or_else(|e| e.into_inner()) = true;
                self.0 .1.notify_all();
            }
        }
        let result = std::thread::scope(|s| {
            s.spawn(|| {
                let (flag, cv) = &stop;
                let mut stopped = flag.lock().unwrap_or_else(|e| e.into_inner());
                while !*stopped {
                    stopped = cv.wait_timeout(stopped, REDRAW).unwrap_or_else(|e| e.into_inner()).0;
                    if !*stopped {
                        self.tick();
                    }
                }
            });
            let _stop = StopOnDrop(&stop);
            f()
        });
        self.clear();
        result
    }

    fn update(&self, change: impl FnOnce(&mut State)) {
        if !self.enabled {
            return;
        }
        let mut st = self.lock();
        change(&mut st);
        let now = Instant::now();
        let due = !matches!(st.last_draw, Some(t) if now.duration_since(t) < REDRAW);
        if !due || now.duration_since(self.start) < self.show_after {
            return;
        }
        let mut line = render(&self.label, st.done, self.total, st.running, now.duration_since(self.start));
        if let Some(w) = self.width {
            // The last column is left free: writing there wraps on some
            // terminals.
            truncate_chars(&mut line, w.saturating_sub(1));
        }
        let _ = write!(st.out, "{ERASE}{line}");
        let _ = st.out.flush();
        st.last_draw = Some(now);
        st.shown = true;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.clear();
    }
}

fn truncate_chars(s: &mut String, max: usize) {
    if let Some((i, _)) = s.char_indices().nth(max) {
        s.truncate(i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A writer the test can read back after the progress is gone.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    impl Shared {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    /// What a terminal would show once every `\r` and `ESC [ K` is applied
    /// (single line, as ours).
    fn screen(out: &str) -> String {
        let mut line = String::new();
        for (i, part) in out.split('\r').enumerate() {
            if i > 0 {
                line.clear(); // back to column 0; our \r is always followed by ESC[K
            }
            line.push_str(&part.replace("\x1b[K", ""));
        }
        line
    }

    #[test]
    fn enabled_only_on_a_quiet_interactive_terminal() {
        assert!(progress_enabled(true, None, false, false));
        assert!(progress_enabled(true, Some(""), false, false));
        assert!(progress_enabled(true, Some("false"), false, false));
        assert!(progress_enabled(true, Some("0"), false, false));
        assert!(!progress_enabled(false, None, false, false), "not a tty");
        assert!(!progress_enabled(true, Some("true"), false, false), "CI");
        assert!(!progress_enabled(true, Some("1"), false, false), "CI");
        assert!(!progress_enabled(true, None, true, false), "make -s");
        assert!(!progress_enabled(true, None, false, true), "verbose");
    }

    #[test]
    fn renders_counts_time_and_eta() {
        let s = Duration::from_secs_f64;
        assert_eq!(render("vmlinux.o", 0, 539, 2, s(0.4)), "  LTO     vmlinux.o  [0/539] 2 running, 0.4s");
        assert_eq!(
            render("vmlinux.o", 123, 539, 2, s(12.3)),
            "  LTO     vmlinux.o  [123/539] 2 running, 12.3s, ETA 42s"
        );
        assert_eq!(render("m.o", 1, 10, 1, s(20.0)), "  LTO     m.o  [1/10] 1 running, 20.0s, ETA 3m00s");
        assert_eq!(render("m.o", 10, 10, 0, s(20.0)), "  LTO     m.o  [10/10] 0 running, 20.0s");
    }

    #[test]
    fn line_is_drawn_then_fully_erased() {
        let out = Shared::default();
        let p = Progress::with_writer("vmlinux.o", 3, true, Box::new(out.clone()));
        let r = p.while_running(|| {
            p.started();
            assert!(screen(&out.text()).starts_with("  LTO     vmlinux.o  [0/3] 1 running, 0."), "{:?}", out.text());
            std::thread::sleep(Duration::from_millis(250)); // the ticker redraws
            p.finished();
            42
        });
        assert_eq!(r, 42);
        let text = out.text();
        assert!(text.matches(ERASE).count() >= 3, "drawn more than once: {text:?}");
        assert!(text.ends_with(ERASE), "erased at the end: {text:?}");
        assert_eq!(screen(&text), "", "nothing left on the line");
        assert!(!text.contains('\n'), "never a new line: {text:?}");
    }

    #[test]
    fn clear_before_other_output_and_redraw_after() {
        let out = Shared::default();
        let p = Progress::with_writer("x.o", 2, true, Box::new(out.clone()));
        p.started();
        p.clear();
        assert_eq!(screen(&out.text()), "");
        let before = out.text().len();
        p.clear(); // nothing shown: nothing written
        assert_eq!(out.text().len(), before);
        std::thread::sleep(REDRAW);
        p.finished();
        let shown = screen(&out.text());
        assert!(shown.starts_with("  LTO     x.o  [1/2] 0 running, ") && shown.contains("s, ETA "), "{shown:?}");
        drop(p);
        assert_eq!(screen(&out.text()), "", "dropping erases");
    }

    #[test]
    fn redraws_are_throttled() {
        let out = Shared::default();
        let p = Progress::with_writer("x.o", 1000, true, Box::new(out.clone()));
        for _ in 0..1000 {
            p.started();
            p.finished();
        }
        assert_eq!(out.text().matches(ERASE).count(), 1, "one draw within 100 ms");
    }

    #[test]
    fn disabled_writes_nothing() {
        let out = Shared::default();
        let p = Progress::with_writer("x.o", 2, false, Box::new(out.clone()));
        assert_eq!(
            p.while_running(|| {
                p.started();
                p.finished();
                7
            }),
            7
        );
        drop(p);
        assert_eq!(out.text(), "");
    }

    #[test]
    fn cut_to_the_terminal_width() {
        let out = Shared::default();
        let mut p = Progress::with_writer("drivers/gpu/drm/amd/amdgpu/amdgpu.o", 9, true, Box::new(out.clone()));
        p.width = Some(20);
        p.started();
        assert_eq!(screen(&out.text()).chars().count(), 19);
    }
}
