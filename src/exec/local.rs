//! Runs jobs as child processes on this machine.

use std::ffi::OsString;
use std::io::{self, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Instant;

use super::forkserver::{ForkServerSetting, ForkServers};
use super::{pipe, signals, Executor, Job, JobError, JobOutcome};

/// Runs each job's argv directly (no shell). stdin is /dev/null; stdout
/// and stderr go to one pipe and come back as `stderr`, in the order the
/// child wrote them, so the caller can print warnings under the job's label
/// and errors after its command. (A backend compile writes nothing to
/// stdout; if something ever does, it is kept rather than lost.)
///
/// With fork servers ([`LocalExecutor::from_env`]), a compiler that can be
/// served is forked from its server ([`forkserver`]); anything else, and
/// any job a server fails, is spawned (exec mode). Same result either way.
#[derive(Default)]
pub struct LocalExecutor {
    forks: Option<ForkServers>,
}

impl LocalExecutor {
    /// Exec mode only.
    pub fn new() -> LocalExecutor {
        LocalExecutor { forks: None }
    }

    /// With fork servers unless `KDTHIN_FORKSERVER=off` or the shim is not
    /// installed (said when verbose).
    pub fn from_settings(fork: &ForkServerSetting, verbose: bool) -> LocalExecutor {
        match fork {
            ForkServerSetting::Off => LocalExecutor::new(),
            ForkServerSetting::On(shim) => LocalExecutor::with_fork_servers(shim.clone(), verbose),
            ForkServerSetting::NoShim(why) => {
                if verbose {
                    eprintln!("kdthin-ld: no fork server: {why}; backends run by exec");
                }
                LocalExecutor::new()
            }
        }
    }

    /// Fork servers preloaded with `shim`.
    pub fn with_fork_servers(shim: PathBuf, verbose: bool) -> LocalExecutor {
        LocalExecutor { forks: Some(ForkServers::new(shim, verbose)) }
    }

    /// How many jobs a fork server ran.
    pub fn forked(&self) -> usize {
        self.forks.as_ref().map_or(0, |f| f.served())
    }

    #[cfg(test)]
    pub(super) fn fork_servers(&self) -> Option<&ForkServers> {
        self.forks.as_ref()
    }
}

impl Executor for LocalExecutor {
    fn run(&self, job: &Job) -> Result<JobOutcome, JobError> {
        if signals::cancelled() {
            return Err(JobError::Cancelled);
        }
        // Rendered once, for either mode.
        let argv = job.command.argv();
        let argv: &[OsString] = &argv;
        let start = Instant::now();
        let (output, status, ran_on) = match self.forks.as_ref().and_then(|f| f.run(argv)) {
            Some(Ok((output, status))) => (output, status, FORKED),
            Some(Err(e)) => return Err(e),
            None => {
                let (output, status) = spawn(argv)?;
                (output, status, "local")
            }
        };

        if status.success() {
            // clang can exit 0 without having compiled anything (verify).
            if let (Some(check), Some(out)) = (&job.check, job.command.output()) {
                if let Err(why) = check.check_file(out, &output) {
                    return Err(JobError::BadOutput { why, stderr: output });
                }
            }
            Ok(JobOutcome { already_installed: false, id: job.id, wall: start.elapsed(), ran_on, stderr: output })
        } else if signals::cancelled() {
            // We killed it (or are about to); its failure is not news.
            Err(JobError::Cancelled)
        } else {
            Err(JobError::Failed { status: describe_status(status), stderr: output })
        }
    }
}

/// `JobOutcome::ran_on` of a job a fork server ran.
pub const FORKED: &str = "forkserver";

/// Exec mode: spawns `argv` and collects its output and status.
fn spawn(argv: &[OsString]) -> Result<(Vec<u8>, ExitStatus), JobError> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| JobError::Spawn(io::Error::new(io::ErrorKind::InvalidInput, "empty command")))?;
    let (mut output_r, output_w) = pipe().map_err(JobError::Spawn)?;
    let mut child = {
        let mut cmd = Command::new(program);
        cmd.args(args).stdin(Stdio::null());
        cmd.stdout(Stdio::from(output_w.try_clone().map_err(JobError::Spawn)?));
        cmd.stderr(Stdio::from(output_w));
        match signals::spawn(&mut cmd) {
            Ok(child) => child,
            Err(_) if signals::cancelled() => return Err(JobError::Cancelled),
            Err(e) => return Err(JobError::Spawn(e)),
        }
        // `cmd` drops here with our copies of the write end, so the read
        // below sees EOF when the child (not us) closes it.
    };
    let mut output = Vec::new();
    let read = output_r.read_to_end(&mut output);
    let status = signals::wait_child(&mut child);
    let status = read.and(status).map_err(JobError::Spawn)?;
    Ok((output, status))
}

/// "exit status 1", "killed by signal 9 (SIGKILL)", with ", core dumped"
/// when it did.
pub fn describe_status(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit status {code}");
    }
    let Some(sig) = status.signal() else {
        return status.to_string();
    };
    let name = match sig {
        libc::SIGHUP => " (SIGHUP)",
        libc::SIGINT => " (SIGINT)",
        libc::SIGQUIT => " (SIGQUIT)",
        libc::SIGILL => " (SIGILL)",
        libc::SIGTRAP => " (SIGTRAP)",
        libc::SIGABRT => " (SIGABRT)",
        libc::SIGBUS => " (SIGBUS)",
        libc::SIGFPE => " (SIGFPE)",
        libc::SIGKILL => " (SIGKILL)",
        libc::SIGSEGV => " (SIGSEGV)",
        libc::SIGPIPE => " (SIGPIPE)",
        libc::SIGTERM => " (SIGTERM)",
        libc::SIGXCPU => " (SIGXCPU)",
        libc::SIGXFSZ => " (SIGXFSZ)",
        _ => "",
    };
    let core = if status.core_dumped() { ", core dumped" } else { "" };
    format!("killed by signal {sig}{name}{core}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::Command;
    use std::os::fd::AsRawFd;

    fn sh(script: &str) -> Job {
        Job::plain(7, "t.o", ["sh", "-c", script].iter().map(OsString::from).collect())
    }

    #[test]
    fn success_keeps_stdout_and_stderr_in_order() {
        let out = LocalExecutor::new().run(&sh("echo one; echo two >&2; echo three")).unwrap();
        assert_eq!(out.id, 7);
        assert_eq!(out.ran_on, "local");
        assert_eq!(out.stderr, b"one\ntwo\nthree\n");
    }

    #[test]
    fn stdin_is_empty() {
        // With an inherited stdin, cat would wait for the terminal.
        let out = LocalExecutor::new().run(&sh("cat; echo done")).unwrap();
        assert_eq!(out.stderr, b"done\n");
    }

    #[test]
    fn failure_has_status_and_output() {
        match LocalExecutor::new().run(&sh("echo 'error: bad' >&2; exit 3")) {
            Err(JobError::Failed { status, stderr }) => {
                assert_eq!(status, "exit status 3");
                assert_eq!(stderr, b"error: bad\n");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn exit_0_without_a_usable_object_is_a_failure() {
        use crate::exec::verify::{BadNative, NativeCheck};
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("x.o");
        let script =
            |s: String| Command::Argv { argv: vec!["sh".into(), "-c".into(), s.into()], output: Some(out.clone()) };
        let mut job = sh("");
        job.command = script(format!("echo \"Error loading index file 'i': No such file\" >&2; : > {}", out.display()));
        // Without a check, the exit status decides (any other command).
        assert!(LocalExecutor::new().run(&job).is_ok());
        job.check = Some(NativeCheck::default());
        match LocalExecutor::new().run(&job) {
            Err(JobError::BadOutput { why: BadNative::Diagnostic(line), stderr }) => {
                assert!(line.starts_with("Error loading index file"), "{line}");
                assert!(stderr.starts_with(b"Error loading index file"));
            }
            other => panic!("{other:?}"),
        }
        // Silent, but the object is empty.
        job.command = script(format!(": > {}", out.display()));
        assert!(matches!(LocalExecutor::new().run(&job), Err(JobError::BadOutput { why: BadNative::Empty, .. })));
        // Silent, and no object at all.
        job.command = script(format!("rm -f {}", out.display()));
        assert!(matches!(
            LocalExecutor::new().run(&job),
            Err(JobError::BadOutput { why: BadNative::Unreadable(_), .. })
        ));
    }

    #[test]
    fn death_by_signal_is_named() {
        match LocalExecutor::new().run(&sh("kill -9 $$")) {
            Err(JobError::Failed { status, .. }) => {
                assert_eq!(status, "killed by signal 9 (SIGKILL)")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let mut job = Job::plain(0, "x", vec!["/nonexistent/clang-99".into(), "-c".into()]);
        match LocalExecutor::new().run(&job) {
            Err(JobError::Spawn(e)) => assert_eq!(e.kind(), io::ErrorKind::NotFound),
            other => panic!("{other:?}"),
        }
        job.command = Command::Argv { argv: vec![], output: None };
        assert!(matches!(LocalExecutor::new().run(&job), Err(JobError::Spawn(_))));
    }

    #[test]
    fn output_pipe_is_close_on_exec() {
        // Otherwise a job spawned concurrently by another thread would
        // inherit our write end, and our read would wait for it to finish.
        let (r, w) = pipe().unwrap();
        for fd in [r.as_raw_fd(), w.as_raw_fd()] {
            // SAFETY: F_GETFD only reads the fd flags.
            assert_ne!(unsafe { libc::fcntl(fd, libc::F_GETFD) } & libc::FD_CLOEXEC, 0);
        }
    }
}
