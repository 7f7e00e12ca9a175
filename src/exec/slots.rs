//! How many backend jobs may run at once, and the tokens that say so.
//!
//! The limit comes from, in order:
//! 1. `KDTHIN_JOBS=N`: the user said so.
//! 2. GNU make's jobserver, when MAKEFLAGS advertises one *and* it is really
//!    there. make 4.4+ passes `--jobserver-auth=fifo:PATH`, usable by any
//!    child. make 4.3 passes `--jobserver-auth=R,W` (older makes
//!    `--jobserver-fds=R,W`) but closes those fds for recipes that are not
//!    marked recursive, which includes kbuild's LD recipes; the numbers may
//!    then name unrelated files, so they are validated, never trusted.
//! 3. The CPUs we may run on (`sched_getaffinity`).
//!
//! A MAKEFLAGS without jobserver auth (`make -j1`, or plain `make`) means
//! make runs serially, but the link itself is still one job: we use the CPUs
//! rather than run the backends one by one.
//!
//! With a jobserver, make already counted us as one job: we hold one implicit
//! token that is never read from the jobserver. Every further concurrent job
//! needs one byte read from it, and that byte goes back when the job ends.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// Where the concurrency limit came from (for logs and tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobsSource {
    /// `KDTHIN_JOBS`.
    Env(usize),
    /// make's jobserver; `kind` is "fifo" (make >= 4.4) or "pipe".
    Jobserver { kind: &'static str },
    /// The CPUs in our affinity mask.
    Cpus(usize),
}

impl fmt::Display for JobsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobsSource::Env(n) => write!(f, "KDTHIN_JOBS={n}"),
            JobsSource::Jobserver { kind } => write!(f, "make jobserver ({kind})"),
            JobsSource::Cpus(n) => write!(f, "{n} CPUs"),
        }
    }
}

/// A thread-safe pool of job slots. See the module docs.
pub struct Slots {
    /// Slots we hand out without asking anyone: N in counting mode, the
    /// implicit token (0 or 1) with a jobserver.
    free: Mutex<usize>,
    /// Counting mode: signalled when `free` grows.
    freed: Condvar,
    /// Most slots we can ever hold: N in counting mode, make's `-jN` with a
    /// jobserver (no client can hold more tokens than exist), if known.
    limit: Option<usize>,
    jobserver: Option<Jobserver>,
}

/// Permission to run one job. Dropping it gives the slot back.
#[must_use = "the slot is released as soon as the token is dropped"]
pub struct Token<'a> {
    slots: &'a Slots,
    /// The byte read from the jobserver; `None` for a local slot.
    byte: Option<u8>,
}

impl Drop for Token<'_> {
    fn drop(&mut self) {
        match (self.byte, &self.slots.jobserver) {
            (Some(byte), Some(js)) => js.give_back(byte),
            _ => self.slots.release_local(),
        }
    }
}

impl fmt::Debug for Token<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token").field("byte", &self.byte).finish()
    }
}

/// What [`Slots::from_env`] decided, and what to tell the user about it.
pub struct Chosen {
    pub slots: Slots,
    pub source: JobsSource,
    /// A bad `KDTHIN_JOBS`, naming the value and what is used instead: the
    /// user asked for something they do not get, so always shown (like a
    /// bad `KDTHIN_CACHE_SIZE`).
    pub warning: Option<String>,
    /// An advertised jobserver that is not there: common (make 4.3 closes
    /// it for kbuild's LD recipes) and harmless, so shown when verbose.
    pub note: Option<String>,
}

impl Slots {
    /// Decides where concurrency comes from; see the module docs for the
    /// order. An empty `KDTHIN_JOBS` counts as unset.
    pub fn from_env(makeflags: Option<&str>, kdthin_jobs: Option<&str>) -> Chosen {
        let mut bad_jobs = None;
        if let Some(v) = kdthin_jobs.map(str::trim).filter(|v| !v.is_empty()) {
            match v.parse::<usize>() {
                Ok(n) if n > 0 => {
                    return Chosen { slots: Slots::counting(n), source: JobsSource::Env(n), warning: None, note: None }
                }
                _ => bad_jobs = Some(v),
            }
        }
        let warning = |using: &str| bad_jobs.map(|v| format!("KDTHIN_JOBS={v}: not a positive integer; using {using}"));
        if let Some(auth) = makeflags.and_then(jobserver_auth) {
            match Jobserver::open(auth) {
                Ok((js, kind)) => {
                    let slots = Slots {
                        free: Mutex::new(1), // the implicit token
                        freed: Condvar::new(),
                        limit: makeflags.and_then(make_jobs),
                        jobserver: Some(js),
                    };
                    let warning = warning("make's jobserver");
                    return Chosen { slots, source: JobsSource::Jobserver { kind }, warning, note: None };
                }
                Err(why) => {
                    let n = available_cpus();
                    return Chosen {
                        slots: Slots::counting(n),
                        source: JobsSource::Cpus(n),
                        warning: warning(&format!("{n} CPUs")),
                        note: Some(format!(
                            "make's jobserver (--jobserver-auth={auth}) is not usable: {why}; using {n} CPUs"
                        )),
                    };
                }
            }
        }
        let n = available_cpus();
        Chosen {
            slots: Slots::counting(n),
            source: JobsSource::Cpus(n),
            warning: warning(&format!("{n} CPUs")),
            note: None,
        }
    }

    /// A plain counting semaphore of `n` slots (at least 1).
    pub fn counting(n: usize) -> Slots {
        let n = n.max(1);
        Slots { free: Mutex::new(n), freed: Condvar::new(), limit: Some(n), jobserver: None }
    }

    /// The most slots this can ever hand out at once, if known: a useful cap
    /// on worker threads. `None` with a jobserver whose `-j` we don't know.
    pub fn limit(&self) -> Option<usize> {
        self.limit
    }

    /// Blocks until a slot is free. With a jobserver, also wakes up when our
    /// implicit token comes back, so a waiter never sleeps on make while a
    /// slot of ours is idle.
    pub fn acquire(&self) -> io::Result<Token<'_>> {
        let Some(js) = &self.jobserver else {
            let mut free = lock(&self.free);
            while *free == 0 {
                free = self.freed.wait(free).unwrap_or_else(PoisonError::into_inner);
            }
            *free -= 1;
            return Ok(self.token(None));
        };
        loop {
            if let Some(token) = self.try_acquire()? {
                return Ok(token);
            }
            js.wait()?;
        }
    }

    /// Takes a slot if one is free right now.
    pub fn try_acquire(&self) -> io::Result<Option<Token<'_>>> {
        {
            let mut free = lock(&self.free);
            if *free > 0 {
                *free -= 1;
                if let Some(js) = &self.jobserver {
                    js.wake_consumed();
                }
                return Ok(Some(self.token(None)));
            }
        }
        match &self.jobserver {
            Some(js) => Ok(js.try_read()?.map(|b| self.token(Some(b)))),
            None => Ok(None),
        }
    }

    fn token(&self, byte: Option<u8>) -> Token<'_> {
        Token { slots: self, byte }
    }

    fn release_local(&self) {
        let mut free = lock(&self.free);
        *free += 1;
        match &self.jobserver {
            Some(js) => js.wake(),
            None => self.freed.notify_one(),
        }
    }
}

/// The value of the last `--jobserver-auth=` (or `--jobserver-fds=`) in
/// MAKEFLAGS. make appends its own, so the last one wins; words after `--`
/// are command-line variable assignments, not flags.
pub fn jobserver_auth(makeflags: &str) -> Option<&str> {
    makeflags
        .split_ascii_whitespace()
        .take_while(|w| *w != "--")
        .filter_map(|w| w.strip_prefix("--jobserver-auth=").or_else(|| w.strip_prefix("--jobserver-fds=")))
        .last()
}

/// make's `-jN` (make >= 4.2 puts it in MAKEFLAGS); `None` if absent or
/// unlimited (`-j`).
fn make_jobs(makeflags: &str) -> Option<usize> {
    makeflags
        .split_ascii_whitespace()
        .take_while(|w| *w != "--")
        .filter_map(|w| w.strip_prefix("-j").or_else(|| w.strip_prefix("--jobs=")))
        .last()?
        .parse()
        .ok()
        .filter(|&n| n > 0)
}

/// CPUs in our affinity mask (taskset, cpusets), at least 1.
pub fn available_cpus() -> usize {
    // SAFETY: cpu_set_t is plain data; the kernel fills at most its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0 {
            return (libc::CPU_COUNT(&set) as usize).max(1);
        }
    }
    // More CPUs than a cpu_set_t holds (EINVAL): let std ask another way.
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A validated connection to make's jobserver.
struct Jobserver {
    /// Our own non-blocking open file description: other clients share the
    /// pipe, so poll() saying "readable" does not mean our read will get the
    /// byte, and a blocking read could then not be woken up.
    read: File,
    write: File,
    /// Self-pipe that holds one byte exactly while our implicit token is
    /// free, so waiters can poll on it next to the jobserver.
    wake_r: File,
    wake_w: File,
}

impl Jobserver {
    /// Opens what `auth` names, or says why not.
    fn open(auth: &str) -> Result<(Jobserver, &'static str), String> {
        let (read, write, kind) = if let Some(path) = auth.strip_prefix("fifo:") {
            // O_RDWR never blocks on a fifo, and keeps it open even if make
            // closed its end; non-blocking for the reason given on `read`.
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(path)
                .map_err(|e| format!("cannot open {path}: {e}"))?;
            if !is_fifo(&fstat(f.as_raw_fd()).map_err(|e| e.to_string())?) {
                return Err(format!("{path} is not a fifo"));
            }
            let w = f.try_clone().map_err(|e| e.to_string())?;
            (f, w, "fifo")
        } else {
            let (r, w) = parse_fds(auth).ok_or("expected R,W file descriptor numbers")?;
            validate_pipe(r, w)?;
            // Reopening the read end through /proc gives a new open file
            // description of the same pipe that we may make non-blocking
            // without changing make's.
            let read = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(format!("/proc/self/fd/{r}"))
                .map_err(|e| format!("cannot reopen fd {r} through /proc: {e}"))?;
            // SAFETY: w was validated as an open pipe end; F_DUPFD_CLOEXEC
            // returns a new fd we own (or -1).
            let dup = unsafe { libc::fcntl(w, libc::F_DUPFD_CLOEXEC, 3) };
            if dup < 0 {
                return Err(format!("cannot dup fd {w}: {}", io::Error::last_os_error()));
            }
            // SAFETY: dup is a fresh fd owned by nobody else.
            (read, unsafe { File::from_raw_fd(dup) }, "pipe")
        };
        let (wake_r, wake_w) = nonblocking_pipe().map_err(|e| format!("pipe: {e}"))?;
        let js = Jobserver { read, write, wake_r, wake_w };
        js.wake(); // the implicit token starts free
        Ok((js, kind))
    }

    fn try_read(&self) -> io::Result<Option<u8>> {
        let mut byte = [0u8];
        loop {
            return match (&self.read).read(&mut byte) {
                Ok(1) => Ok(Some(byte[0])),
                // We hold a write end ourselves, so EOF means something is
                // badly wrong rather than "no token yet".
                Ok(_) => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "jobserver closed")),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
                Err(e) => Err(e),
            };
        }
    }

    /// Writes a token back. Failure here loses make a slot for the rest of
    /// the build, which is worth a warning but not worth failing the link.
    fn give_back(&self, byte: u8) {
        loop {
            match (&self.write).write(&[byte]) {
                Ok(1) => return,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Only possible on our non-blocking fifo fd with 64 KiB of
                // tokens in it; wait for room.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let _ = poll(&[self.write.as_raw_fd()], libc::POLLOUT);
                }
                Err(e) => {
                    eprintln!("kdthin-ld: warning: could not return a jobserver token: {e}");
                    return;
                }
            }
        }
    }

    /// Sleeps until a token may be available from make or from ourselves.
    fn wait(&self) -> io::Result<()> {
        poll(&[self.read.as_raw_fd(), self.wake_r.as_raw_fd()], libc::POLLIN)
    }

    /// The implicit token became free (called with `Slots::free` locked).
    fn wake(&self) {
        let _ = (&self.wake_w).write(b"+");
    }

    /// The implicit token was taken (called with `Slots::free` locked):
    /// empty the self-pipe so pollers go back to sleep.
    fn wake_consumed(&self) {
        let mut buf = [0u8; 8];
        while matches!((&self.wake_r).read(&mut buf), Ok(n) if n > 0) {}
    }
}

fn parse_fds(auth: &str) -> Option<(RawFd, RawFd)> {
    let (r, w) = auth.split_once(',')?;
    let (r, w) = (r.parse::<RawFd>().ok()?, w.parse::<RawFd>().ok()?);
    (r >= 0 && w >= 0).then_some((r, w))
}

/// Accepts R,W only if they are the read and write ends of one pipe.
/// This is the whole defence against make 4.3 having closed them (EBADF)
/// or the numbers having been reused for something else since.
fn validate_pipe(r: RawFd, w: RawFd) -> Result<(), String> {
    let not_open = |fd: RawFd, e: io::Error| {
        format!("fd {fd} is not open: {e} (make 4.3 keeps it open only for recipes marked recursive with '+')")
    };
    let sr = fstat(r).map_err(|e| not_open(r, e))?;
    let sw = fstat(w).map_err(|e| not_open(w, e))?;
    for (fd, st) in [(r, &sr), (w, &sw)] {
        if !is_fifo(st) {
            return Err(format!("fd {fd} is not a pipe"));
        }
    }
    // Both ends of a pipe share one pipefs inode.
    if (sr.st_dev, sr.st_ino) != (sw.st_dev, sw.st_ino) {
        return Err(format!("fds {r} and {w} are not the two ends of one pipe"));
    }
    let mode = |fd| {
        // SAFETY: F_GETFL only reads flags; fd was just fstat'ed.
        unsafe { libc::fcntl(fd, libc::F_GETFL) & libc::O_ACCMODE }
    };
    if mode(r) == libc::O_WRONLY {
        return Err(format!("fd {r} is not open for reading"));
    }
    if mode(w) == libc::O_RDONLY {
        return Err(format!("fd {w} is not open for writing"));
    }
    Ok(())
}

fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    // SAFETY: fstat writes a stat struct; an invalid fd is just EBADF.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd, &mut st) == 0 {
            Ok(st)
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

fn is_fifo(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFIFO
}

fn nonblocking_pipe() -> io::Result<(File, File)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 fills two fds on success; we own them from then on.
    unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])))
    }
}

/// Waits until one of `fds` has `events` (or an error/hangup, which the
/// caller's next read or write will report). EINTR just returns.
fn poll(fds: &[RawFd], events: libc::c_short) -> io::Result<()> {
    let mut pfds: Vec<libc::pollfd> = fds.iter().map(|&fd| libc::pollfd { fd, events, revents: 0 }).collect();
    // SAFETY: pfds is a valid array of pfds.len() entries.
    let rc = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, -1) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::process::Command;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::time::Duration;

    /// Highest number of tokens held at once by `threads` threads that
    /// each take one, hold it a while, and give it back.
    fn peak_concurrency(slots: &Slots, threads: usize) -> usize {
        let (running, peak) = (AtomicUsize::new(0), AtomicUsize::new(0));
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    let _token = slots.acquire().unwrap();
                    peak.fetch_max(running.fetch_add(1, SeqCst) + 1, SeqCst);
                    std::thread::sleep(Duration::from_millis(60));
                    running.fetch_sub(1, SeqCst);
                });
            }
        });
        peak.into_inner()
    }

    /// A pipe as make creates it, pre-loaded with `tokens` bytes.
    fn make_pipe(tokens: usize) -> (OwnedFd, OwnedFd) {
        let (r, w) = nonblocking_pipe().unwrap();
        // The ends make hands out are blocking; clear O_NONBLOCK.
        for f in [&r, &w] {
            // SAFETY: plain fcntl on fds we own.
            unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETFL, 0) };
        }
        (&w).write_all(&b"+".repeat(tokens)).unwrap();
        (r.into(), w.into())
    }

    /// Bytes waiting in a pipe or fifo, without taking them.
    fn queued(fd: RawFd) -> usize {
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int.
        assert_eq!(unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) }, 0);
        n as usize
    }

    fn auth(r: &OwnedFd, w: &OwnedFd) -> String {
        format!("rR -j3 --jobserver-auth={},{} -- V=1", r.as_raw_fd(), w.as_raw_fd())
    }

    #[test]
    fn last_jobserver_auth_wins_and_assignments_are_not_flags() {
        assert_eq!(jobserver_auth("-j8 --jobserver-auth=3,4"), Some("3,4"));
        assert_eq!(jobserver_auth("--jobserver-fds=5,6 -j"), Some("5,6"));
        assert_eq!(
            jobserver_auth("--jobserver-auth=3,4 --jobserver-auth=fifo:/tmp/GMfifo1"),
            Some("fifo:/tmp/GMfifo1")
        );
        assert_eq!(jobserver_auth("rR -j8 -- X=--jobserver-auth=7,8"), None);
        assert_eq!(jobserver_auth("-j1"), None);
        assert_eq!(jobserver_auth(""), None);
    }

    #[test]
    fn make_jobs_from_makeflags() {
        assert_eq!(make_jobs("rR -j8 --jobserver-auth=3,4 -- X=-j2"), Some(8));
        assert_eq!(make_jobs("--jobs=4"), Some(4));
        assert_eq!(make_jobs("-j --jobserver-auth=3,4"), None, "unlimited");
        assert_eq!(make_jobs("rR --jobserver-auth=3,4"), None);
    }

    #[test]
    fn counting_slots_are_a_semaphore() {
        let slots = Slots::counting(2);
        assert_eq!(slots.limit(), Some(2));
        let a = slots.try_acquire().unwrap().expect("first");
        let b = slots.try_acquire().unwrap().expect("second");
        assert!(slots.try_acquire().unwrap().is_none());
        drop(a);
        let c = slots.try_acquire().unwrap().expect("after a release");
        drop((b, c));
        assert_eq!(peak_concurrency(&slots, 8), 2);
    }

    #[test]
    fn cpus_are_the_fallback() {
        let (slots, source, note) = parts(Slots::from_env(None, None));
        let n = available_cpus();
        assert!(n >= 1);
        assert_eq!(source, JobsSource::Cpus(n));
        assert_eq!(slots.limit(), Some(n));
        assert_eq!(note, None);
        // Serial make without a jobserver: still the CPUs, and nothing to say.
        let (_, source, note) = parts(Slots::from_env(Some("rR -j1 -- LLVM=1"), None));
        assert_eq!((source, note), (JobsSource::Cpus(n), None));
    }

    #[test]
    fn kdthin_jobs_overrides_everything() {
        let (r, w) = make_pipe(7);
        let (slots, source, note) = parts(Slots::from_env(Some(&auth(&r, &w)), Some("5")));
        assert_eq!((source, note), (JobsSource::Env(5), None));
        assert_eq!(slots.limit(), Some(5));
        assert_eq!(peak_concurrency(&slots, 10), 5);
        assert_eq!(queued(r.as_raw_fd()), 7, "the jobserver was not touched");
    }

    /// The note of a decision (the warning is checked where it matters).
    fn parts(c: Chosen) -> (Slots, JobsSource, Option<String>) {
        (c.slots, c.source, c.note)
    }

    #[test]
    fn bad_kdthin_jobs_is_a_warning_naming_it_and_what_is_used() {
        let n = available_cpus();
        for bad in ["0", "-1", "abc", "1.5", "4x"] {
            let c = Slots::from_env(None, Some(bad));
            assert_eq!(c.source, JobsSource::Cpus(n), "{bad}");
            assert_eq!(c.warning, Some(format!("KDTHIN_JOBS={bad}: not a positive integer; using {n} CPUs")));
            assert_eq!(c.note, None, "{bad}: said once, as a warning");
        }
        // With a usable jobserver, that is what is used instead.
        let (r, w) = make_pipe(3);
        let c = Slots::from_env(Some(&auth(&r, &w)), Some("abc"));
        assert_eq!(c.source, JobsSource::Jobserver { kind: "pipe" });
        assert_eq!(c.warning.as_deref(), Some("KDTHIN_JOBS=abc: not a positive integer; using make's jobserver"));
        // An unusable jobserver stays a note (verbose only); the bad value
        // is still a warning.
        let c = Slots::from_env(Some("--jobserver-auth=fifo:/nonexistent/GMfifo"), Some("-1"));
        assert_eq!(c.source, JobsSource::Cpus(n));
        assert!(c.warning.as_deref().is_some_and(|w| w.starts_with("KDTHIN_JOBS=-1: ")), "{:?}", c.warning);
        assert!(c.note.as_deref().is_some_and(|m| m.starts_with("make's jobserver")), "{:?}", c.note);
        // Empty means unset: nothing to say.
        let c = Slots::from_env(None, Some(" "));
        assert_eq!((c.warning, c.note), (None, None));
        // Good values say nothing either.
        assert_eq!(Slots::from_env(None, Some("3")).warning, None);
    }

    #[test]
    fn pipe_jobserver_gives_implicit_plus_queued_tokens() {
        let (r, w) = make_pipe(2);
        let (slots, source, note) = parts(Slots::from_env(Some(&auth(&r, &w)), None));
        assert_eq!((source, note), (JobsSource::Jobserver { kind: "pipe" }, None));
        assert_eq!(slots.limit(), Some(3), "make's -j3");

        let implicit = slots.try_acquire().unwrap().expect("implicit");
        assert_eq!(queued(r.as_raw_fd()), 2, "the implicit token is not read");
        let t2 = slots.try_acquire().unwrap().expect("byte");
        let _t3 = slots.try_acquire().unwrap().expect("byte");
        assert_eq!(queued(r.as_raw_fd()), 0);
        assert!(slots.try_acquire().unwrap().is_none());
        drop(t2);
        assert_eq!(queued(r.as_raw_fd()), 1, "the byte went back");
        drop(implicit);
        drop(_t3);

        assert_eq!(peak_concurrency(&slots, 12), 3);
        assert_eq!(queued(r.as_raw_fd()), 2, "every token returned");
    }

    #[test]
    fn waiter_wakes_when_our_implicit_token_comes_back() {
        let (r, w) = make_pipe(0);
        let (slots, _, _) = parts(Slots::from_env(Some(&auth(&r, &w)), None));
        let held = slots.acquire().unwrap();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| slots.acquire().map(|t| t.byte));
            std::thread::sleep(Duration::from_millis(100));
            assert!(!waiter.is_finished(), "no slot was free");
            drop(held);
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while !waiter.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if !waiter.is_finished() {
                (&File::from(w.try_clone().unwrap())).write_all(b"x").unwrap(); // let it go
                panic!("the waiter slept on make while our implicit token was free");
            }
            assert_eq!(waiter.join().unwrap().unwrap(), None, "got the implicit token");
        });
    }

    #[test]
    fn waiter_wakes_when_make_puts_a_token_back() {
        let (r, w) = make_pipe(0);
        let (slots, _, _) = parts(Slots::from_env(Some(&auth(&r, &w)), None));
        let _held = slots.acquire().unwrap();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| slots.acquire().unwrap().byte);
            std::thread::sleep(Duration::from_millis(100));
            assert!(!waiter.is_finished());
            (&File::from(w.try_clone().unwrap())).write_all(b"x").unwrap();
            assert_eq!(waiter.join().unwrap(), Some(b'x'));
        });
        assert_eq!(queued(r.as_raw_fd()), 1, "the same byte went back");
    }

    #[test]
    fn fifo_jobserver() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("GMfifo");
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: c is a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // make's own end, holding two tokens.
        let make_end = OpenOptions::new().read(true).write(true).open(&path).unwrap();
        (&make_end).write_all(b"++").unwrap();

        let flags = format!("--jobserver-auth=fifo:{}", path.display());
        let (slots, source, note) = parts(Slots::from_env(Some(&flags), None));
        assert_eq!((source, note), (JobsSource::Jobserver { kind: "fifo" }, None));
        assert_eq!(slots.limit(), None, "no -j in MAKEFLAGS");
        assert_eq!(peak_concurrency(&slots, 12), 3);
        assert_eq!(queued(make_end.as_raw_fd()), 2);
    }

    fn rejected(makeflags: &str) -> String {
        let (slots, source, note) = parts(Slots::from_env(Some(makeflags), None));
        assert_eq!(source, JobsSource::Cpus(available_cpus()), "{makeflags}");
        assert_eq!(slots.limit(), Some(available_cpus()));
        let note = note.expect("a note");
        assert!(note.starts_with("make's jobserver") && note.ends_with("CPUs"), "{note}");
        note
    }

    #[test]
    fn fifo_that_is_missing_or_not_a_fifo_is_rejected() {
        let note = rejected("--jobserver-auth=fifo:/nonexistent/GMfifo");
        assert!(note.contains("cannot open /nonexistent/GMfifo"), "{note}");
        let file = tempfile::NamedTempFile::new().unwrap();
        let note = rejected(&format!("--jobserver-auth=fifo:{}", file.path().display()));
        assert!(note.contains("is not a fifo"), "{note}");
    }

    #[test]
    fn ends_of_two_different_pipes_are_rejected() {
        let (r1, _w1) = make_pipe(1);
        let (_r2, w2) = make_pipe(1);
        let note = rejected(&auth(&r1, &w2));
        assert!(note.contains("not the two ends of one pipe"), "{note}");
    }

    #[test]
    fn swapped_ends_are_rejected() {
        let (r, w) = make_pipe(1);
        let note = rejected(&auth(&w, &r));
        assert!(note.contains("not open for reading"), "{note}");
    }

    #[test]
    fn closed_fds_are_rejected() {
        // Far above anything this test process opens, so surely closed
        // (a closed-then-reused number could be reopened by a parallel test).
        let note = rejected("-j4 --jobserver-auth=4000,4001");
        assert!(note.contains("fd 4000 is not open"), "{note}");
        assert!(note.contains("recursive"), "{note}");
    }

    #[test]
    fn fds_that_are_not_pipes_are_rejected() {
        let f = tempfile::tempfile().unwrap();
        let fd = f.as_raw_fd();
        let note = rejected(&format!("--jobserver-auth={fd},{fd}"));
        assert!(note.contains(&format!("fd {fd} is not a pipe")), "{note}");
        let note = rejected("--jobserver-auth=three,four");
        assert!(note.contains("expected R,W"), "{note}");
    }

    /// Real GNU make: a recursive (`+`) recipe gets a working jobserver that
    /// bounds us at -j; a plain recipe (like kbuild's LD ones) gets, with
    /// make 4.3, closed fds that we must refuse.
    #[test]
    fn under_real_make() {
        let Ok(version) = Command::new("make").arg("--version").output() else {
            eprintln!("skipping: no `make` in PATH");
            return;
        };
        let version = String::from_utf8_lossy(&version.stdout).lines().next().unwrap_or("").to_owned();
        let dir = tempfile::tempdir().unwrap();
        let helper = format!(
            "{} --exact exec::slots::tests::helper_for_make --ignored --nocapture --test-threads=1",
            std::env::current_exe().unwrap().display()
        );
        std::fs::write(
            dir.path().join("Makefile"),
            "rec:\n\t+@KDTHIN_TEST_MAKE_OUT=rec.txt $(HELPER)\n\
             plain:\n\t@KDTHIN_TEST_MAKE_OUT=plain.txt $(HELPER)\n",
        )
        .unwrap();
        for target in ["rec", "plain"] {
            let out = Command::new("make")
                .args(["-s", "-j3", target, &format!("HELPER={helper}")])
                .current_dir(dir.path())
                .env_remove("MAKEFLAGS")
                .env_remove("MFLAGS")
                .env_remove("MAKELEVEL")
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "make {target}: {stderr}");
            // make checks at exit that every token came back.
            assert!(!stderr.contains("INTERNAL"), "{stderr}");
        }
        let rec = std::fs::read_to_string(dir.path().join("rec.txt")).unwrap();
        let plain = std::fs::read_to_string(dir.path().join("plain.txt")).unwrap();
        assert!(rec.contains("peak=3\n"), "{version}: {rec}");
        if rec.contains("Jobserver { kind: \"pipe\" }") {
            // make 4.3 (or 4.4+ with --jobserver-style=pipe)
            assert!(plain.contains("source=Cpus("), "{version}: {plain}");
            assert!(plain.contains("is not usable"), "{version}: {plain}");
        } else {
            assert!(rec.contains("Jobserver { kind: \"fifo\" }"), "{version}: {rec}");
            assert!(plain.contains("Jobserver { kind: \"fifo\" }"), "{version}: {plain}");
        }
    }

    /// Not a test by itself: `under_real_make` runs it from make recipes.
    #[test]
    #[ignore = "run by under_real_make"]
    fn helper_for_make() {
        let Some(out) = std::env::var_os("KDTHIN_TEST_MAKE_OUT") else {
            return;
        };
        let makeflags = std::env::var("MAKEFLAGS").ok();
        let (slots, source, note) = parts(Slots::from_env(makeflags.as_deref(), None));
        let peak = peak_concurrency(&slots, 9);
        let report = format!("source={source:?}\npeak={peak}\nnote={note:?}\nMAKEFLAGS={makeflags:?}\n");
        std::fs::write(out, report).unwrap();
    }
}
