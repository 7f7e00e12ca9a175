//! Fork servers against exec mode, with the real clang.

use super::*;
use crate::exec::local::{LocalExecutor, FORKED};
use crate::exec::{Executor, Job, JobError};

const CLANG: &str = "clang-22";
/// The shim build.rs made for this build.
const SHIM: &str = concat!(env!("OUT_DIR"), "/libkdthin-forkserver.so");

fn have_clang() -> bool {
    let ok = Command::new(CLANG).arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        if std::env::var_os("KDTHIN_REQUIRE_TOOLS").is_some_and(|v| v == "1") {
            panic!("{CLANG} is not installed (and KDTHIN_REQUIRE_TOOLS=1)");
        }
        eprintln!("skipped: {CLANG} is not installed");
    }
    ok
}

fn job<S: AsRef<OsStr>>(argv: &[S]) -> Job {
    Job::plain(0, "t", argv.iter().map(|a| a.as_ref().to_os_string()).collect())
}

fn forking() -> LocalExecutor {
    LocalExecutor::with_fork_servers(PathBuf::from(SHIM), false)
}

/// A compile, one with a warning and one with a bad flag give the same
/// object, output and status either way; and they really were forked.
#[test]
fn forked_jobs_are_exec_jobs() {
    if !have_clang() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("a.c");
    std::fs::write(&src, "int f(int x) { return x * 3; }\nint g(void) { int unused; return 1; }\n").unwrap();
    let (fork, exec) = (forking(), LocalExecutor::new());
    let cases: [&[&str]; 3] = [&["-O2"], &["-O2", "-Wunused-variable"], &["-fkdthin-no-such-flag"]];
    for (i, flags) in cases.iter().enumerate() {
        let mut objects = vec![];
        let mut results = vec![];
        for (mode, ex) in [("fork", &fork), ("exec", &exec)] {
            let obj = dir.path().join(format!("a{i}.{mode}.o"));
            let mut argv: Vec<OsString> =
                vec![CLANG.into(), "-c".into(), src.clone().into(), "-o".into(), obj.clone().into()];
            argv.extend(flags.iter().map(OsString::from));
            results.push(match ex.run(&job(&argv)) {
                Ok(o) => {
                    assert_eq!(o.ran_on, if mode == "fork" { FORKED } else { "local" });
                    Ok(String::from_utf8(o.stderr).unwrap())
                }
                Err(JobError::Failed { status, stderr }) => Err((status, String::from_utf8(stderr).unwrap())),
                Err(e) => panic!("{mode}: {e:?}"),
            });
            objects.push(std::fs::read(&obj).ok());
        }
        assert_eq!(results[0], results[1], "{flags:?}");
        assert_eq!(objects[0], objects[1], "{flags:?}");
        match (i, &results[0]) {
            (0, Ok(out)) => assert_eq!(out, ""),
            (1, Ok(out)) => assert!(out.contains("warning: unused variable 'unused'"), "{out}"),
            (2, Err((status, out))) => {
                assert_eq!(status, "exit status 1");
                assert!(out.contains("unknown argument: '-fkdthin-no-such-flag'"), "{out}");
            }
            other => panic!("{flags:?}: {other:?}"),
        }
        assert!(objects[0].as_ref().is_some_and(|o| o.starts_with(b"\x7fELF")) || i == 2);
    }
    assert_eq!((fork.forked(), exec.forked()), (3, 0), "every fork-mode job ran in the server's child");
}

/// A compiler that is a script, a wrapper or missing runs by exec
/// (and still works, or fails as exec fails).
#[test]
fn what_cannot_be_served_runs_by_exec() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("clang-22");
    std::fs::write(&script, "#!/bin/sh\necho \"script $*\"\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let fork = forking();
    let out = fork.run(&job(&[script.as_os_str(), OsStr::new("-c")])).unwrap();
    assert_eq!((out.ran_on, &out.stderr[..]), ("local", &b"script -c\n"[..]));
    assert_eq!(why_not_served(script.as_os_str(), &script).as_deref(), Some("not an ELF executable (a script?)"));
    let sh = resolve(OsStr::new("sh")).unwrap();
    assert_eq!(why_not_served(OsStr::new("ccache"), &sh).as_deref(), Some("ccache is a compiler wrapper"));
    let missing = fork.run(&job(&["/nonexistent/clang-99"]));
    assert!(matches!(missing, Err(JobError::Spawn(e)) if e.kind() == io::ErrorKind::NotFound));
    assert_eq!(fork.forked(), 0);
}

/// The server dies while a job runs (the job waits on a FIFO it reads):
/// the job is run again by exec and succeeds, and so is the next job.
#[test]
fn a_server_killed_mid_job_falls_back_to_exec() {
    if !have_clang() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("in.c");
    let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let fork = forking();
    let quick = job(&[CLANG, "--version"]);
    assert_eq!(fork.run(&quick).unwrap().ran_on, FORKED);
    let server = fork_server_pid(&fork);
    let blocked = job(&[OsStr::new(CLANG), OsStr::new("-E"), OsStr::new("-P"), fifo.as_os_str()]);
    std::thread::scope(|s| {
        let running = s.spawn(|| fork.run(&blocked));
        // The child is blocked opening the FIFO: kill its server.
        wait_until(|| children_of(server).len() == 1);
        let forked = children_of(server)[0];
        // SAFETY: plain kill of a process this test started.
        unsafe { libc::kill(server as i32, libc::SIGKILL) };
        // Its child dies with it; the job then runs by exec (our child),
        // which blocks on the FIFO in turn, until we write it. Written
        // earlier, the FIFO could feed the dying child instead.
        wait_until(|| !alive(forked));
        let me = std::process::id();
        wait_until(|| children_of(me).into_iter().any(|p| alive(p) && cmdline_has(p, fifo.as_os_str().as_bytes())));
        std::fs::write(&fifo, "int from_the_fifo;\n").unwrap();
        let out = running.join().unwrap().unwrap();
        assert_eq!(out.ran_on, "local");
        assert!(String::from_utf8_lossy(&out.stderr).contains("int from_the_fifo;"), "{out:?}");
    });
    assert_eq!(fork.run(&quick).unwrap().ran_on, "local", "a retired server is not used again");
    assert_eq!(fork.forked(), 1);
}

/// The compiler is replaced on disk: its server refuses, and exits.
#[test]
fn a_changed_compiler_is_not_served() {
    if !have_clang() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("clang-22");
    std::fs::copy(resolve(OsStr::new(CLANG)).unwrap(), &copy).unwrap();
    let fork = forking();
    let version = job(&[copy.as_os_str(), OsStr::new("--version")]);
    assert_eq!(fork.run(&version).unwrap().ran_on, FORKED);
    let server = fork_server_pid(&fork);
    // A new file of the same name, as an upgrade installs it.
    let new = dir.path().join("new");
    std::fs::copy(&copy, &new).unwrap();
    std::fs::rename(&new, &copy).unwrap();
    let out = fork.run(&version).unwrap();
    assert_eq!(out.ran_on, "local");
    assert!(String::from_utf8_lossy(&out.stderr).contains("clang version"), "{out:?}");
    wait_until(|| !alive(server));
}

fn fork_server_pid(ex: &LocalExecutor) -> u32 {
    let forks = ex.fork_servers().unwrap();
    let state = forks.state.lock().unwrap();
    let pids: Vec<u32> = state.servers.values().flatten().map(|s| s.pid).collect();
    assert_eq!(pids.len(), 1, "one server");
    pids[0]
}

/// Children of any thread of `pid` (a fork server is spawned by a thread
/// of its own).
fn children_of(pid: u32) -> Vec<u32> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten();
    tasks
        .flat_map(|t| {
            std::fs::read_to_string(t.path().join("children"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

fn cmdline_has(pid: u32, needle: &[u8]) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.windows(needle.len()).any(|w| w == needle))
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
}

/// `holder` has a pidfd open for `pid` (its fdinfo says `Pid:\t<pid>`).
fn holds_pidfd(holder: u32, pid: u32) -> bool {
    let want = format!("Pid:\t{pid}\n");
    std::fs::read_dir(format!("/proc/{holder}/fdinfo"))
        .map(|d| d.flatten().any(|e| std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains(&want))))
        .unwrap_or(false)
}

fn wait_until(mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// SIGINT while a forked backend runs: kdthin-ld stops it (it is the
/// server's child, not ours), dies of SIGINT, and leaves neither the
/// backend nor its server running. In a child process (the helper below),
/// which the signal kills.
#[test]
fn sigint_stops_forked_backends() {
    if !have_clang() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "exec::forkserver::tests::helper_for_sigint", "--ignored", "--nocapture"])
        .args(["--test-threads=1"])
        .env("KDTHIN_TEST_FORK_DIR", dir.path())
        .stdout(Stdio::null());
    // Blocked from the start, as main() does with signals::install():
    // libtest's own threads must not take the SIGINT.
    // SAFETY: sigset calls on a local set, and pthread_sigmask, are
    // async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                libc::sigaddset(&mut set, sig);
            }
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
    let mut helper = Reaper(cmd.spawn().unwrap());
    let helper = &mut helper.0;
    // The helper's fork server, then the backend it forked (blocked on the
    // FIFO, which nobody writes).
    let mut server = None;
    wait_until(|| {
        server = children_of(helper.id()).into_iter().find(|&p| cmdline_has(p, SERVER_ARG.as_bytes()));
        server.is_some_and(|s| children_of(s).len() == 1)
    });
    let server = server.unwrap();
    let backend = children_of(server)[0];
    // The server reports the backend's pid after the fork: a SIGINT
    // before kdthin-ld holds its pidfd would test the parent-death chain
    // (asynchronous), not kdthin-ld stopping and waiting for it.
    wait_until(|| holds_pidfd(helper.id(), backend));
    // SAFETY: plain kill of our own child.
    unsafe { libc::kill(helper.id() as i32, libc::SIGINT) };
    let status = helper.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGINT), "{status}");
    // Gone already: kdthin-ld waits for the backends it stops (through
    // the pidfd the server gave it) before it cleans up and dies.
    assert!(!alive(backend), "the backend {backend} outlived kdthin-ld");
    assert!(!alive(server), "the fork server {server} outlived kdthin-ld");
}

/// Not a test by itself: run by the one above, in its own process.
#[test]
#[ignore = "run by sigint_stops_forked_backends"]
fn helper_for_sigint() {
    let Some(dir) = std::env::var_os("KDTHIN_TEST_FORK_DIR").map(PathBuf::from) else {
        return;
    };
    signals::install();
    let fifo = dir.join("in.c");
    let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let fork = forking();
    let result = fork.run(&job(&[OsStr::new(CLANG), OsStr::new("-E"), fifo.as_os_str()]));
    signals::park_if_cancelled();
    panic!("the job ended without a signal: {result:?}");
}

/// Kills the helper process should the test fail half-way.
struct Reaper(std::process::Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Without the shim the compiler runs as a plain compiler and rejects the
/// server's arguments: no server, every job by exec, and it works.
#[test]
fn a_server_that_cannot_start_means_exec() {
    if !have_clang() {
        return;
    }
    let fork = LocalExecutor::with_fork_servers(PathBuf::from("/nonexistent/libkdthin-forkserver.so"), false);
    for _ in 0..2 {
        let out = fork.run(&job(&[CLANG, "--version"])).unwrap();
        assert_eq!(out.ran_on, "local");
        assert!(String::from_utf8_lossy(&out.stderr).contains("clang version"), "{out:?}");
    }
    let state = fork.fork_servers().unwrap().state.lock().unwrap();
    let servers: Vec<bool> = state.servers.values().map(Option::is_some).collect();
    assert_eq!(servers, [false], "tried once, then exec");
}

#[test]
fn the_switch_turns_it_off_and_a_bad_value_keeps_it_on() {
    let setting = |v: &str| {
        let mut env = Env::from_vars([(ENV_SWITCH, v)]);
        env.self_exe = PathBuf::from(SHIM).with_file_name("kdthin-ld");
        let mut warnings = vec![];
        (ForkServerSetting::from_env(&env, &mut warnings), warnings)
    };
    assert_eq!(setting("off"), (ForkServerSetting::Off, vec![]));
    assert_eq!(setting("0"), (ForkServerSetting::Off, vec![]));
    assert_eq!(setting("on"), (ForkServerSetting::On(PathBuf::from(SHIM)), vec![]));
    let (s, w) = setting("of");
    assert_eq!(s, ForkServerSetting::On(PathBuf::from(SHIM)), "the default");
    assert!(w.len() == 1 && w[0].starts_with("KDTHIN_FORKSERVER=of: not on or off"), "{w:?}");
    let mut env = Env::from_vars([(ENV_SWITCH, "")]);
    env.self_exe = PathBuf::from("/nonexistent/bin/kdthin-ld");
    assert!(
        matches!(ForkServerSetting::from_env(&env, &mut vec![]), ForkServerSetting::NoShim(why) if why.contains("not installed beside /nonexistent/bin/kdthin-ld"))
    );
}
