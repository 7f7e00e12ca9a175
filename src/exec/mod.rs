//! Side effects: running backend jobs in parallel.
//!
//! Execution sits behind [`Executor`] so that planning and scheduling can be
//! tested without processes, and so that a remote executor (REAPI) can stand
//! in for the local one later. Concurrency comes from [`slots`]: make's
//! jobserver when it is really there, otherwise the CPUs we may run on.

pub mod forkserver;
pub mod local;
pub mod scheduler;
pub mod signals;
pub mod slots;
#[cfg(test)]
mod testutil;
pub mod verify;

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::plan::backend::BackendCommand;

/// What a job runs.
#[derive(Clone, Debug)]
pub enum Command {
    /// A ThinLTO backend: the cache, the remote executor and the
    /// reproducer read its fields; an executor renders it.
    Backend(BackendCommand),
    /// Any other program, run locally as it is (tests, tools). `output`
    /// is what [`Job::check`] applies to.
    Argv { argv: Vec<OsString>, output: Option<PathBuf> },
}

impl Command {
    /// The command line, `argv[0]` the program: rendered here, at the edge.
    pub fn argv(&self) -> Vec<OsString> {
        match self {
            Command::Backend(b) => b.argv(),
            Command::Argv { argv, .. } => argv.clone(),
        }
    }

    /// The program as given (not resolved in PATH).
    pub fn program(&self) -> &OsStr {
        match self {
            Command::Backend(b) => &b.compiler,
            Command::Argv { argv, .. } => argv.first().map(OsString::as_os_str).unwrap_or_default(),
        }
    }

    /// The file the job must leave behind, if any.
    pub fn output(&self) -> Option<&Path> {
        match self {
            Command::Backend(b) => Some(&b.output),
            Command::Argv { output, .. } => output.as_deref(),
        }
    }

    pub fn backend(&self) -> Option<&BackendCommand> {
        match self {
            Command::Backend(b) => Some(b),
            Command::Argv { .. } => None,
        }
    }
}

impl Job {
    /// A job that runs `argv` as it is, with no output to check.
    pub fn plain(id: usize, label: impl Into<String>, argv: Vec<OsString>) -> Job {
        Job {
            id,
            label: label.into(),
            command: Command::Argv { argv, output: None },
            weight: 0,
            install: None,
            check: None,
        }
    }
}

/// One job: a command, with what the scheduler and the caller need to know
/// about it.
#[derive(Clone, Debug)]
pub struct Job {
    /// Stable index (position in the plan).
    pub id: usize,
    /// Human label, e.g. the bitcode object path.
    pub label: String,
    pub command: Command,
    /// Scheduling weight (bitcode size): largest first.
    pub weight: u64,
    /// Where the caller will install a copy of the output after success.
    /// An executor that finds the result already there (a cache hit
    /// identical to the installed file) may make the output a hard link
    /// to it instead of writing it, and say so: rewriting hundreds of
    /// unchanged objects is most of a no-op relink's cost. The output
    /// exists either way.
    pub install: Option<PathBuf>,
    /// What the output must be for the job to count as done: set for
    /// backend compiles, whose exit status alone proves nothing
    /// ([`verify`]). None: the exit status decides.
    pub check: Option<verify::NativeCheck>,
}

#[derive(Clone, Debug)]
pub struct JobOutcome {
    pub id: usize,
    pub wall: Duration,
    /// Where it ran ("local", later a remote worker).
    pub ran_on: &'static str,
    /// stderr of a successful job (warnings), passed on to the user.
    pub stderr: Vec<u8>,
    /// The result is already at `Job::install` (the output is a hard link
    /// to it): no need to install it again.
    pub already_installed: bool,
}

impl JobOutcome {
    /// Served from a cache (ours, or a REAPI action cache) rather than
    /// compiled for this link.
    pub fn from_cache(&self) -> bool {
        matches!(self.ran_on, "cache" | "remote-cache")
    }
}

#[derive(Debug)]
pub enum JobError {
    /// The command ran and failed (exit status or signal), with its stderr.
    Failed { status: String, stderr: Vec<u8> },
    /// The command exited 0, but what it left is not a usable object
    /// ([`verify::BadNative`]), with its output.
    BadOutput { why: verify::BadNative, stderr: Vec<u8> },
    /// The command could not be started.
    Spawn(std::io::Error),
    /// We were told to stop.
    Cancelled,
}

/// Runs one job to completion. Must be callable from many threads at once.
pub trait Executor: Sync {
    fn run(&self, job: &Job) -> Result<JobOutcome, JobError>;
}

/// An executor chosen at run time (local or remote) can be wrapped by
/// another one (the cache) without naming its type.
impl<E: Executor + ?Sized> Executor for &E {
    fn run(&self, job: &Job) -> Result<JobOutcome, JobError> {
        (**self).run(job)
    }
}

/// A close-on-exec pipe: children we spawn concurrently must not inherit
/// another job's write end, or that job's read would wait for them too.
pub(crate) fn pipe() -> std::io::Result<(std::fs::File, std::os::fd::OwnedFd)> {
    let mut fds = [0 as std::os::fd::RawFd; 2];
    // SAFETY: pipe2 fills two new fds on success; we own them from then on.
    unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        use std::os::fd::FromRawFd;
        Ok((std::fs::File::from_raw_fd(fds[0]), std::os::fd::OwnedFd::from_raw_fd(fds[1])))
    }
}

/// Quote argv for a shell so a printed command can be pasted and re-run.
pub fn shell_quote(argv: &[OsString]) -> String {
    let mut out = String::new();
    for (i, a) in argv.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let s = a.to_string_lossy();
        let safe = !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
        if safe {
            out.push_str(&s);
        } else {
            out.push('\'');
            out.push_str(&s.replace('\'', "'\\''"));
            out.push('\'');
        }
    }
    out
}
