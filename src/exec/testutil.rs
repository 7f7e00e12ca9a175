//! Test doubles shared by the exec tests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Mutex;
use std::time::Duration;

use super::{Executor, Job, JobError, JobOutcome};

pub(crate) fn job(id: usize, weight: u64) -> Job {
    Job { weight, ..Job::plain(id, format!("job{id}"), vec!["fake-clang".into(), format!("{id}.o").into()]) }
}

/// Sleeps instead of running anything, and records start order and the
/// highest number of jobs that were running at the same time.
#[derive(Default)]
pub(crate) struct FakeExec {
    pub delay: Duration,
    /// Per-job delays overriding `delay`.
    pub delays: HashMap<usize, Duration>,
    pub fail: Vec<usize>,
    /// Called as each job starts (e.g. to raise a cancel flag).
    pub on_start: Option<Box<dyn Fn(usize) + Sync>>,
    pub running: AtomicUsize,
    pub peak: AtomicUsize,
    pub order: Mutex<Vec<usize>>,
}

impl FakeExec {
    pub fn sleeping(ms: u64) -> FakeExec {
        FakeExec { delay: Duration::from_millis(ms), ..FakeExec::default() }
    }
    pub fn peak(&self) -> usize {
        self.peak.load(SeqCst)
    }
    pub fn order(&self) -> Vec<usize> {
        self.order.lock().unwrap().clone()
    }
}

impl Executor for FakeExec {
    fn run(&self, job: &Job) -> Result<JobOutcome, JobError> {
        self.order.lock().unwrap().push(job.id);
        if let Some(f) = &self.on_start {
            f(job.id);
        }
        let now = self.running.fetch_add(1, SeqCst) + 1;
        self.peak.fetch_max(now, SeqCst);
        std::thread::sleep(*self.delays.get(&job.id).unwrap_or(&self.delay));
        self.running.fetch_sub(1, SeqCst);
        if self.fail.contains(&job.id) {
            return Err(JobError::Failed {
                status: "exit status 1".into(),
                stderr: format!("{} failed\n", job.label).into_bytes(),
            });
        }
        Ok(JobOutcome { already_installed: false, id: job.id, wall: self.delay, ran_on: "fake", stderr: vec![] })
    }
}
