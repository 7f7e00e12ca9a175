//! Side effects: running backend jobs in parallel.
//!
//! Execution sits behind [`Executor`] so that planning and scheduling can be
//! tested without processes, and so that a remote executor (REAPI) can stand
//! in for the local one later. Concurrency comes from [`slots`]: make's
//! jobserver when it is really there, otherwise the CPUs we may run on.

pub mod local;
pub mod scheduler;
pub mod signals;
pub mod slots;
#[cfg(test)]
mod testutil;
pub mod verify;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// One backend compile: a command plus what it reads and writes.
#[derive(Clone, Debug)]
pub struct Job {
    /// Stable index (position in the plan).
    pub id: usize,
    /// Human label, e.g. the bitcode object path.
    pub label: String,
    /// `argv[0]` is the program.
    pub argv: Vec<OsString>,
    /// Files the command reads (bitcode, imported bitcode, index). Used by
    /// remote executors to build an input root; local ignores it.
    pub inputs: Vec<PathBuf>,
    /// Files the command writes (temp paths; the caller renames them).
    pub outputs: Vec<PathBuf>,
    /// Scheduling weight (bitcode size): largest first.
    pub weight: u64,
    /// Where the caller will install a copy of `outputs[0]` after success.
    /// An executor that finds the result already there (a cache hit
    /// identical to the installed file) may make `outputs[0]` a hard link
    /// to it instead of writing it, and say so: rewriting hundreds of
    /// unchanged objects is most of a no-op relink's cost. `outputs[0]`
    /// exists either way.
    pub install: Option<PathBuf>,
    /// What `outputs[0]` must be for the job to count as done: set for
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
    /// The result is already at `Job::install` (`outputs[0]` is a hard
    /// link to it): no need to install it again.
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
