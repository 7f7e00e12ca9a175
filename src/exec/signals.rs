//! SIGINT/SIGTERM/SIGHUP on the distributed path.
//!
//! While backends run we own child processes and temporary files, so an
//! interrupted link must stop its children and remove its files before it
//! dies. And it must still die *of the signal*: make (and shells) treat
//! "killed by SIGINT" differently from "exited with status 1".
//!
//! Rather than do that work in an async-signal handler, [`install`] blocks
//! the signals and a dedicated thread takes them with `sigwait`, where
//! locks, allocation and printing are all allowed. The mask is inherited by
//! threads created afterwards, so call it before starting any. Spawned
//! children are not affected: `Command::spawn` resets the signal mask in the
//! child. `CommandExt::exec` does *not* (tested below): call
//! [`unblock_for_exec`] before replacing the process with ld.lld.
//!
//! The passthrough path execs ld.lld without any of this.

use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Proc {
    Child(u32),
    PidFd(std::os::fd::RawFd),
}

const HANDLED: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// How long children get to exit after SIGTERM before they get SIGKILL.
const GRACE: Duration = Duration::from_secs(2);

static CANCELLED: AtomicBool = AtomicBool::new(false);
static INSTALLED: AtomicBool = AtomicBool::new(false);
/// Running processes to stop on a signal: our children that have not been
/// reaped yet, and (by pidfd) a fork server's children.
static CHILDREN: Mutex<Vec<Proc>> = Mutex::new(Vec::new());
/// Signalled whenever a child leaves `CHILDREN`.
static CHILD_GONE: Condvar = Condvar::new();
static CLEANUP: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Blocks the handled signals in the calling thread (and so in every thread
/// it starts later) and starts the thread that acts on them. Calling it
/// again only blocks them in the calling thread. Should that thread fail to
/// start, the signals are left alone (with a warning): the link still
/// works, it just cannot clean up when interrupted.
pub fn install() {
    if let Err(e) = try_install() {
        eprintln!("kdthin-ld: warning: cannot handle signals: {e}");
    }
}

fn try_install() -> io::Result<()> {
    let set = handled_set();
    set_mask(libc::SIG_BLOCK, &set)?;
    if INSTALLED.swap(true, SeqCst) {
        return Ok(());
    }
    let spawned = std::thread::Builder::new().name("kdthin-signals".into()).spawn(move || loop {
        let mut sig = 0;
        // SAFETY: set and sig are valid for the call.
        if unsafe { libc::sigwait(&set, &mut sig) } == 0 {
            die_of(sig);
        }
    });
    if let Err(e) = spawned {
        // Nobody would take the signals: blocked, they would be ignored.
        INSTALLED.store(false, SeqCst);
        set_mask(libc::SIG_UNBLOCK, &set)?;
        return Err(e);
    }
    Ok(())
}

/// Unblocks the handled signals in the calling thread. Call right before
/// `CommandExt::exec`, which (unlike `spawn`) keeps the mask: the program
/// would otherwise start deaf to Ctrl-C. A signal arriving in between just
/// ends us, as it should.
pub fn unblock_for_exec() {
    let _ = set_mask(libc::SIG_UNBLOCK, &handled_set());
}

/// True once a signal arrived: start nothing new.
pub fn cancelled() -> bool {
    CANCELLED.load(SeqCst)
}

/// If a signal arrived, waits for the signal thread to end the process.
/// Call before exiting on any path that may have been cut short by one, so
/// the exit status is the signal's, and the cleanup is not cut short.
pub fn park_if_cancelled() {
    if cancelled() {
        loop {
            std::thread::park();
        }
    }
}

/// The signal a child gets when the thread that spawned it dies, e.g. when
/// kdthin-ld is SIGKILLed (the handler above never runs then). SIGTERM,
/// not SIGKILL: clang and ld.lld (LLVM's signal handlers) then remove the
/// temporary files they write outputs through, such as ld.lld's
/// `<output>.tmp*` beside `-o`, and die; SIGKILL would leave those behind.
/// It is also what [`stop_children`] sends.
const PARENT_DEATH_SIGNAL: libc::c_int = libc::SIGTERM;

/// Starts `cmd` as a child that dies with us, recorded so that a signal
/// stops it; wait for it with [`wait_child`]. Once a signal arrived
/// (cleanup began or is about to), nothing is started: `Interrupted`.
///
/// The check and the spawn happen under the lock [`stop_children`]
/// takes, so a child is either seen by it or never started. The
/// parent-death signal covers the death no handler sees (SIGKILL). It
/// fires when the spawning *thread* ends, not the process: spawn from
/// the thread that waits for the child, as every caller does.
pub fn spawn(cmd: &mut Command) -> io::Result<Child> {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: prctl, getppid and the error path are async-signal-safe;
    // nothing is allocated.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, PARENT_DEATH_SIGNAL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // We died between fork and prctl: nobody would send the
            // signal any more, and nobody waits for this child.
            if libc::getppid() != parent {
                libc::_exit(128 + PARENT_DEATH_SIGNAL);
            }
            // Start with nothing blocked whatever the spawning thread had
            // (install() blocks the handled signals in every thread): a
            // child deaf to SIGTERM would outlive us despite the signal.
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            Ok(())
        });
    }
    let mut children = lock(&CHILDREN);
    if cancelled() {
        return Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted by a signal: not started"));
    }
    let child = cmd.spawn()?;
    children.push(Proc::Child(child.id()));
    Ok(child)
}

/// [`spawn`], then collects stdout and stderr (stdin is /dev/null), like
/// `Command::output`.
pub fn output(cmd: &mut Command) -> io::Result<std::process::Output> {
    use std::io::Read;
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = spawn(cmd)?;
    let mut stderr = child.stderr.take();
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(e) = stderr.as_mut() {
            let _ = e.read_to_end(&mut buf);
        }
        buf
    });
    let mut stdout = Vec::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_end(&mut stdout);
    }
    let stderr = err_reader.join().unwrap_or_default();
    let status = wait_child(&mut child)?;
    Ok(std::process::Output { status, stdout, stderr })
}

/// Waits for a child started by [`spawn`], and forgets it.
pub fn wait_child(child: &mut Child) -> io::Result<ExitStatus> {
    // Wait for the exit first without reaping: until it is reaped the pid
    // cannot be reused, so leaving the registry before that means a signal
    // arriving meanwhile never hits a stranger.
    let exited = wait_exit_keep_zombie(child.id());
    unregister_child(child.id());
    let status = child.wait();
    // A child that died of an interrupting signal has most often shared
    // it with us (Ctrl-C reaches the whole process group), and may be
    // reaped before our handler thread ran. Give the handler a moment, so
    // the caller stops as interrupted rather than reporting the child's
    // failure and exiting 130 (bash's wait-and-cooperative-exit).
    if let Ok(st) = &status {
        use std::os::unix::process::ExitStatusExt;
        if matches!(st.signal(), Some(libc::SIGINT | libc::SIGTERM | libc::SIGHUP)) {
            for _ in 0..40 {
                if cancelled() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
    }
    exited.and(status)
}

fn unregister_child(pid: u32) {
    let mut children = lock(&CHILDREN);
    children.retain(|&p| p != Proc::Child(pid));
    CHILD_GONE.notify_all();
}

/// Records a process that is not our child (a fork server's, see
/// [`super::forkserver`]) by its pidfd, so that a signal stops it as it
/// stops our children; forget it with [`unregister_pidfd`] once it has
/// exited, and keep the fd open until then. Once a signal arrived,
/// nothing is recorded: `Interrupted` (stop it yourself).
pub fn register_pidfd(pidfd: std::os::fd::RawFd) -> io::Result<()> {
    let mut children = lock(&CHILDREN);
    if cancelled() {
        return Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted by a signal"));
    }
    children.push(Proc::PidFd(pidfd));
    Ok(())
}

pub fn unregister_pidfd(pidfd: std::os::fd::RawFd) {
    let mut children = lock(&CHILDREN);
    children.retain(|&p| p != Proc::PidFd(pidfd));
    CHILD_GONE.notify_all();
}

/// Sends `sig` to the process of `pidfd` (which names it for as long as
/// the fd is open, whoever reaps it).
pub fn pidfd_kill(pidfd: std::os::fd::RawFd, sig: libc::c_int) {
    // SAFETY: pidfd_send_signal has no memory effects; info may be null.
    unsafe { libc::syscall(libc::SYS_pidfd_send_signal, pidfd, sig, std::ptr::null::<libc::siginfo_t>(), 0) };
}

fn wait_exit_keep_zombie(pid: u32) -> io::Result<()> {
    loop {
        // SAFETY: siginfo_t is plain data that waitid fills in.
        let rc = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(libc::P_PID, pid, &mut info, libc::WEXITED | libc::WNOWAIT)
        };
        if rc == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Asks for `path` (a file, or a directory removed recursively) to be
/// deleted if we are interrupted, or by [`cleanup_now`].
pub fn register_cleanup(path: impl Into<PathBuf>) {
    lock(&CLEANUP).push(path.into());
}

/// Creates `path` with `create` and registers it for cleanup as one step,
/// under the lock cleanup holds: a signal either finds it registered or
/// stops it from being created (`Interrupted`). Registering first and
/// creating after would let a signal clean up before the creation, and
/// creating first would let it clean up before the registration: either
/// way the file would outlive us.
pub fn create_registered<T>(path: &Path, create: impl FnOnce(&Path) -> io::Result<T>) -> io::Result<T> {
    let mut paths = lock(&CLEANUP);
    if cancelled() {
        return Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted by a signal: not created"));
    }
    let made = create(path)?;
    paths.push(path.to_path_buf());
    Ok(made)
}

/// Keeps `path` after all (e.g. it was renamed into place).
pub fn unregister_cleanup(path: &Path) {
    lock(&CLEANUP).retain(|p| p != path);
}

/// Deletes everything registered, for the normal error path. Missing paths
/// are fine; other failures are reported and skipped.
pub fn cleanup_now() {
    // Held throughout so that a signal arriving meanwhile waits for us
    // instead of racing us over the same paths.
    let mut paths = lock(&CLEANUP);
    for path in paths.drain(..) {
        let removed = match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&path),
            Ok(_) => std::fs::remove_file(&path),
            Err(e) => Err(e),
        };
        match removed {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                eprintln!("kdthin-ld: warning: could not remove {}: {e}", path.display());
            }
            _ => {}
        }
    }
}

/// What the signal thread does: stop, clean up, then die of `sig`.
fn die_of(sig: libc::c_int) -> ! {
    CANCELLED.store(true, SeqCst);
    stop_children();
    cleanup_now();
    let mut only = empty_set();
    // SAFETY: plain libc calls on a local sigset. Every other thread has
    // `sig` blocked, so once we unblock it here it is delivered to us, with
    // the default action: termination, reported to make as the signal.
    unsafe {
        libc::sigaddset(&mut only, sig);
        libc::signal(sig, libc::SIG_DFL);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &only, std::ptr::null_mut());
        libc::raise(sig);
    }
    std::process::exit(128 + sig) // not reached
}

/// SIGTERM to every child, then waits (up to [`GRACE`]) for the threads
/// running them to see them exit, so cleanup does not race a compiler still
/// writing into our temporary directory.
fn stop_children() {
    let deadline = Instant::now() + GRACE;
    let mut children = lock(&CHILDREN);
    for &p in children.iter() {
        stop(p, libc::SIGTERM);
    }
    while !children.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        children = CHILD_GONE.wait_timeout(children, left).unwrap_or_else(PoisonError::into_inner).0;
    }
    for &p in children.iter() {
        stop(p, libc::SIGKILL);
    }
}

fn stop(p: Proc, sig: libc::c_int) {
    match p {
        Proc::Child(pid) => kill(pid, sig),
        Proc::PidFd(fd) => pidfd_kill(fd, sig),
    }
}

fn kill(pid: u32, sig: libc::c_int) {
    // SAFETY: kill has no memory effects. The pid is an unreaped child of
    // ours (see wait_child), so it cannot name another process.
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}

fn handled_set() -> libc::sigset_t {
    let mut set = empty_set();
    for sig in HANDLED {
        // SAFETY: set is initialised; sig is valid.
        unsafe { libc::sigaddset(&mut set, sig) };
    }
    set
}

fn empty_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set it is given.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        set
    }
}

fn set_mask(how: libc::c_int, set: &libc::sigset_t) -> io::Result<()> {
    // SAFETY: set is a valid sigset; the old mask is not wanted.
    match unsafe { libc::pthread_sigmask(how, set, std::ptr::null_mut()) } {
        0 => Ok(()),
        rc => Err(io::Error::from_raw_os_error(rc)),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::local::LocalExecutor;
    use crate::exec::{Executor, Job};
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    use std::process::Command;

    fn sh(script: &str) -> Job {
        Job::plain(0, "sh", vec!["sh".into(), "-c".into(), script.into()])
    }

    /// The blocked-signal mask from /proc/*/status text (possibly preceded
    /// on its line by libtest's unterminated "test ... ").
    fn sig_blk(status: &str) -> u64 {
        let (_, rest) = status.split_once("SigBlk:").expect("a SigBlk line");
        let hex = rest.lines().next().unwrap_or("").trim();
        u64::from_str_radix(hex, 16).unwrap()
    }

    /// We block signals in every thread; the compilers we start must not
    /// inherit that, or Ctrl-C would not stop them.
    #[test]
    fn children_start_with_nothing_blocked() {
        std::thread::spawn(|| {
            set_mask(libc::SIG_BLOCK, &handled_set()).unwrap();
            let ours = std::fs::read_to_string("/proc/thread-self/status").unwrap();
            assert_eq!(sig_blk(&ours) & (1 << (libc::SIGINT - 1)), 1 << (libc::SIGINT - 1));
            // grep itself, not through a shell: dash restores the mask it
            // started with before exec, hiding what we gave it.
            let job = Job::plain(0, "grep", ["grep", "SigBlk", "/proc/self/status"].iter().map(Into::into).collect());
            let out = LocalExecutor::new().run(&job).unwrap();
            assert_eq!(sig_blk(&String::from_utf8(out.stderr).unwrap()), 0);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn cleanup_now_removes_files_and_trees() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("a/b")).unwrap();
        std::fs::write(tree.join("a/b/x.o"), "x").unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "y").unwrap();
        let kept = dir.path().join("kept");
        std::fs::write(&kept, "z").unwrap();
        register_cleanup(&tree);
        register_cleanup(&file);
        register_cleanup(&kept);
        register_cleanup(dir.path().join("never-created"));
        unregister_cleanup(&kept);
        cleanup_now();
        assert!(!tree.exists() && !file.exists());
        assert!(kept.exists());
    }

    /// `exec` (the fallback to in-process ld.lld) keeps our blocked mask
    /// unless we unblock first. Checked in a child process of ours, which
    /// then execs `grep SigBlk /proc/self/status`.
    #[test]
    fn exec_keeps_the_mask_unless_unblocked() {
        for (mode, blocked) in [("keep", true), ("unblock", false)] {
            let mut cmd = Command::new(std::env::current_exe().unwrap());
            cmd.args(["--exact", "exec::signals::tests::helper_for_exec", "--ignored"])
                .args(["--nocapture", "--test-threads=1"])
                .env("KDTHIN_TEST_EXEC", mode);
            // SAFETY: pthread_sigmask is async-signal-safe.
            unsafe {
                cmd.pre_exec(|| set_mask(libc::SIG_BLOCK, &handled_set()));
            }
            let out = cmd.output().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            let mask = sig_blk(&stdout);
            assert_eq!(mask & (1 << (libc::SIGINT - 1)) != 0, blocked, "{mode}: {stdout}");
        }
    }

    #[test]
    #[ignore = "run by exec_keeps_the_mask_unless_unblocked"]
    fn helper_for_exec() {
        let Ok(mode) = std::env::var("KDTHIN_TEST_EXEC") else {
            return;
        };
        if mode == "unblock" {
            unblock_for_exec();
        }
        let e = Command::new("grep").args(["SigBlk", "/proc/self/status"]).exec();
        panic!("exec: {e}");
    }

    /// The whole path, in a child process so that the signal kills that one:
    /// SIGINT stops the running compiler, removes registered files, and the
    /// process dies *of SIGINT*.
    #[test]
    fn sigint_stops_children_cleans_up_and_dies_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir_all(work.join("sub")).unwrap();
        std::fs::write(work.join("sub/a.native.o"), "partial").unwrap();
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", "exec::signals::tests::helper_for_signals", "--ignored", "--nocapture"])
            .args(["--test-threads=1"])
            .env("KDTHIN_TEST_SIGNAL_DIR", dir.path())
            .stdout(std::process::Stdio::null()); // libtest's chatter
                                                  // Block the signals from the very start, as main() will via
                                                  // install(): libtest's own threads must not take the SIGINT.
                                                  // SAFETY: pthread_sigmask is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| set_mask(libc::SIG_BLOCK, &handled_set()));
        }
        let mut helper = cmd.spawn().unwrap();

        let pid_file = dir.path().join("child.pid");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !pid_file.exists() {
            assert!(Instant::now() < deadline, "helper did not start its child");
            std::thread::sleep(Duration::from_millis(20));
        }
        let child: libc::pid_t = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();

        let sent = Instant::now();
        // SAFETY: plain kill of our own child.
        unsafe { libc::kill(helper.id() as libc::pid_t, libc::SIGINT) };
        let status = helper.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGINT), "{status}");
        // The compiler stand-in got SIGTERM (it says so), well before its
        // 30 s would have run out.
        assert_eq!(std::fs::read_to_string(dir.path().join("got")).ok().as_deref(), Some("TERM\n"));
        assert!(sent.elapsed() < Duration::from_secs(20), "{:?}", sent.elapsed());
        assert!(!work.exists(), "registered directory removed");
        // Once its parent is gone, init reaps the child's zombie in its own
        // time: give it a moment before calling the child a survivor.
        let deadline = Instant::now() + Duration::from_secs(5);
        // SAFETY: signal 0 only checks for existence.
        while unsafe { libc::kill(child, 0) } == 0 {
            assert!(Instant::now() < deadline, "child {child} still running");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Not a test by itself: run by the one above, in its own process.
    #[test]
    #[ignore = "run by sigint_stops_children_cleans_up_and_dies_of_it"]
    fn helper_for_signals() {
        let Some(dir) = std::env::var_os("KDTHIN_TEST_SIGNAL_DIR").map(PathBuf::from) else {
            return;
        };
        install();
        register_cleanup(dir.join("work"));
        // The stand-in records which signal reached it, so the test can
        // tell SIGTERM from the grace-period SIGKILL without timing it.
        let script = format!(
            "trap 'echo TERM > {0}/got; kill $!; exit 143' TERM; \
             echo $$ > {0}/pid.tmp && mv {0}/pid.tmp {0}/child.pid; \
             sleep 30 & wait",
            dir.display()
        );
        let result = LocalExecutor::new().run(&sh(&script));
        park_if_cancelled();
        panic!("the job ended without a signal: {result:?}");
    }
}
