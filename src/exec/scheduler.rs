//! Runs a batch of jobs in parallel, largest first, one slot per job.
//!
//! The calling thread is the only one that takes slots: it picks the next
//! job, waits for an idle worker, then for a slot, and hands both over. So
//! the job started is always the largest one left (a worker that waited for
//! a slot never sits on a big job while smaller ones overtake it), and
//! nobody is left blocked on make's jobserver once there is nothing to run.
//! Workers hold the slot from spawn to wait and drop it the moment the job
//! ends.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Mutex;
use std::time::Duration;

use crossbeam_channel as channel;

use super::slots::{Slots, Token};
use super::{signals, Executor, Job, JobError, JobOutcome};

/// Progress, reported from worker threads as it happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Started { id: usize, worker: usize },
    Finished { id: usize, worker: usize, wall: Duration, result: Finish },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    Ok,
    Failed,
    Cancelled,
}

#[derive(Debug, Default)]
pub struct RunSummary {
    /// Successful jobs, in completion order.
    pub succeeded: Vec<JobOutcome>,
    /// Failed (or cancelled) jobs by id, in completion order. The caller
    /// reports each with its command (`shell_quote(&job.argv)`).
    pub failed: Vec<(usize, JobError)>,
    /// Ids of jobs never started because of a failure, a signal or
    /// `slot_error`.
    pub not_started: Vec<usize>,
    /// A signal arrived (see [`signals`]).
    pub cancelled: bool,
    /// Taking a slot failed (the jobserver broke); nothing was started after.
    pub slot_error: Option<io::Error>,
}

impl RunSummary {
    /// Every job ran and succeeded.
    pub fn all_ok(&self) -> bool {
        self.failed.is_empty() && self.not_started.is_empty() && self.slot_error.is_none()
    }
}

/// Runs `jobs` on `exec`, at most `max_parallel` at once (the number of
/// worker threads, further capped by `slots.limit()`) and never more than
/// `slots` allows. After the first
/// failure, or once [`signals::cancelled`], no new job starts; running ones
/// finish.
pub fn run_all(
    jobs: &[Job],
    exec: &dyn Executor,
    slots: &Slots,
    max_parallel: usize,
    on_event: &(dyn Fn(Event) + Sync),
) -> RunSummary {
    let summary = run_until(jobs, exec, slots, max_parallel, on_event, &signals::cancelled);
    // The signal thread is cleaning up and will end the process by the
    // signal; returning would let the caller exit first, with another status.
    signals::park_if_cancelled();
    summary
}

/// [`run_all`] with the cancellation check passed in, so tests need not
/// touch the process-wide flag.
fn run_until(
    jobs: &[Job],
    exec: &dyn Executor,
    slots: &Slots,
    max_parallel: usize,
    on_event: &(dyn Fn(Event) + Sync),
    cancelled: &(dyn Fn() -> bool + Sync),
) -> RunSummary {
    // The biggest backends bound the critical path; ties keep plan order so
    // runs are reproducible. Borrowed, not copied: a defconfig link has
    // thousands of jobs with ~150 arguments each.
    let mut jobs: Vec<&Job> = jobs.iter().collect();
    jobs.sort_by(|a, b| b.weight.cmp(&a.weight).then(a.id.cmp(&b.id)));
    // More workers than slots could ever exist would only sit idle.
    let workers = max_parallel.min(slots.limit().unwrap_or(usize::MAX)).clamp(1, jobs.len().max(1));
    let failed = AtomicBool::new(false);
    let results = Mutex::new(RunSummary::default());
    let mut not_started = Vec::new();
    let mut slot_error = None;

    // Zero capacity: a send completes only when an idle worker takes it.
    let (work_tx, work_rx) = channel::bounded::<(&Job, Token)>(0);
    let (idle_tx, idle_rx) = channel::unbounded::<()>();
    std::thread::scope(|s| {
        for worker in 0..workers {
            let (work_rx, idle_tx, failed, results) = (work_rx.clone(), idle_tx.clone(), &failed, &results);
            s.spawn(move || {
                while idle_tx.send(()).is_ok() {
                    let Ok((job, token)) = work_rx.recv() else {
                        break;
                    };
                    let id = job.id;
                    on_event(Event::Started { id, worker });
                    let started = std::time::Instant::now();
                    let result = exec.run(job);
                    let wall = started.elapsed();
                    // Before the slot goes back: the scheduler may be waiting
                    // for it and must see the failure once it has it.
                    if result.is_err() {
                        failed.store(true, SeqCst);
                    }
                    drop(token);
                    let finish = match &result {
                        Ok(_) => Finish::Ok,
                        Err(JobError::Cancelled) => Finish::Cancelled,
                        Err(_) => Finish::Failed,
                    };
                    {
                        let mut r = results.lock().unwrap_or_else(|e| e.into_inner());
                        match result {
                            Ok(outcome) => r.succeeded.push(outcome),
                            Err(error) => r.failed.push((id, error)),
                        }
                    }
                    on_event(Event::Finished { id, worker, wall, result: finish });
                }
            });
        }
        // Only workers may keep these alive, so that their exit is visible.
        drop((work_rx, idle_tx));

        let stop = || failed.load(SeqCst) || cancelled();
        let mut queue = jobs.into_iter();
        for job in queue.by_ref() {
            if stop() || idle_rx.recv().is_err() {
                not_started.push(job.id);
                break;
            }
            let token = match slots.acquire() {
                Ok(token) => token,
                Err(e) => {
                    slot_error = Some(e);
                    not_started.push(job.id);
                    break;
                }
            };
            // Waiting for the slot may have taken a while.
            if stop() {
                not_started.push(job.id);
                break;
            }
            if let Err(channel::SendError((job, _token))) = work_tx.send((job, token)) {
                not_started.push(job.id); // all workers gone (a panic)
                break;
            }
        }
        not_started.extend(queue.map(|job| job.id));
        drop(work_tx);
    });

    let mut summary = results.into_inner().unwrap_or_else(|e| e.into_inner());
    summary.not_started = not_started;
    summary.slot_error = slot_error;
    summary.cancelled = cancelled();
    summary
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::testutil::{job, FakeExec};
    use std::collections::HashMap;

    fn never() -> bool {
        false
    }

    fn run(jobs: Vec<Job>, exec: &FakeExec, slots: &Slots, max_parallel: usize) -> RunSummary {
        run_until(&jobs, exec, slots, max_parallel, &|_| {}, &never)
    }

    fn ids_of(outcomes: &[JobOutcome]) -> Vec<usize> {
        let mut ids: Vec<usize> = outcomes.iter().map(|o| o.id).collect();
        ids.sort();
        ids
    }

    #[test]
    fn starts_largest_first_ties_in_plan_order() {
        let exec = FakeExec::sleeping(1);
        let weights = [5, 50, 5, 7, 100];
        let jobs = weights.iter().enumerate().map(|(i, &w)| job(i, w)).collect();
        let summary = run(jobs, &exec, &Slots::counting(1), 4);
        assert!(summary.all_ok(), "{summary:?}");
        assert_eq!(exec.order(), [4, 1, 3, 0, 2]);
        assert_eq!(exec.peak(), 1);
    }

    #[test]
    fn never_more_running_than_slots() {
        let exec = FakeExec::sleeping(30);
        let summary = run((0..12).map(|i| job(i, 1)).collect(), &exec, &Slots::counting(3), 8);
        assert!(summary.all_ok(), "{summary:?}");
        assert_eq!(ids_of(&summary.succeeded), (0..12).collect::<Vec<_>>());
        assert_eq!(exec.peak(), 3);
    }

    #[test]
    fn never_more_running_than_max_parallel() {
        let exec = FakeExec::sleeping(30);
        let summary = run((0..8).map(|i| job(i, 1)).collect(), &exec, &Slots::counting(10), 2);
        assert!(summary.all_ok());
        assert_eq!(exec.peak(), 2);
    }

    #[test]
    fn first_failure_stops_new_jobs() {
        let exec = FakeExec { fail: vec![2], ..FakeExec::sleeping(1) };
        let summary = run((0..6).map(|i| job(i, 1)).collect(), &exec, &Slots::counting(1), 3);
        assert_eq!(exec.order(), [0, 1, 2]);
        assert_eq!(ids_of(&summary.succeeded), [0, 1]);
        assert_eq!(summary.failed.len(), 1);
        let (id, err) = &summary.failed[0];
        assert_eq!(*id, 2);
        assert!(
            matches!(err, JobError::Failed { status, stderr } if status == "exit status 1" && stderr == b"job2 failed\n"),
            "{err:?}"
        );
        assert_eq!(summary.not_started, [3, 4, 5]);
        assert!(!summary.all_ok() && !summary.cancelled);
    }

    #[test]
    fn running_jobs_finish_after_a_failure() {
        // Job 0 is long and fine; job 1 fails at once while 0 still runs.
        let exec = FakeExec {
            delays: HashMap::from([(0, Duration::from_millis(200)), (1, Duration::ZERO)]),
            fail: vec![1],
            ..FakeExec::sleeping(10)
        };
        let mut jobs: Vec<Job> = (2..8).map(|i| job(i, 1)).collect();
        jobs.extend([job(0, 10), job(1, 9)]);
        let summary = run(jobs, &exec, &Slots::counting(2), 4);
        assert_eq!(ids_of(&summary.succeeded), [0]);
        assert_eq!(summary.failed.iter().map(|f| f.0).collect::<Vec<_>>(), [1]);
        assert_eq!(summary.not_started, [2, 3, 4, 5, 6, 7]);
    }

    #[test]
    fn cancellation_stops_new_jobs() {
        let flag = std::sync::Arc::new(AtomicBool::new(false));
        let raise = flag.clone();
        let exec = FakeExec {
            on_start: Some(Box::new(move |id| {
                if id == 1 {
                    raise.store(true, SeqCst);
                }
            })),
            ..FakeExec::sleeping(1)
        };
        let cancelled = || flag.load(SeqCst);
        let jobs: Vec<Job> = (0..5).map(|i| job(i, 1)).collect();
        let summary = run_until(&jobs, &exec, &Slots::counting(1), 2, &|_| {}, &cancelled);
        assert_eq!(exec.order(), [0, 1]);
        assert!(summary.cancelled);
        assert_eq!(summary.not_started, [2, 3, 4]);
    }

    #[test]
    fn events_pair_up_per_job_and_name_a_worker() {
        let events = Mutex::new(Vec::new());
        let exec = FakeExec { fail: vec![3], ..FakeExec::sleeping(5) };
        let jobs: Vec<Job> = (0..4).map(|i| job(i, 10 - i as u64)).collect();
        run_until(&jobs, &exec, &Slots::counting(2), 2, &|e| events.lock().unwrap().push(e), &never);
        let events = events.into_inner().unwrap();
        assert_eq!(events.len(), 8);
        for id in 0..4 {
            let started = events.iter().position(|e| matches!(e, Event::Started { id: i, .. } if *i == id));
            let finished = events.iter().position(|e| matches!(e, Event::Finished { id: i, .. } if *i == id));
            let (s, f) = (started.expect("started"), finished.expect("finished"));
            assert!(s < f);
            let (Event::Started { worker: ws, .. }, Event::Finished { worker: wf, result, .. }) =
                (events[s], events[f])
            else {
                unreachable!()
            };
            assert!(ws == wf && ws < 2);
            assert_eq!(result, if id == 3 { Finish::Failed } else { Finish::Ok });
        }
    }

    #[test]
    fn no_jobs_is_fine() {
        let exec = FakeExec::default();
        let summary = run(vec![], &exec, &Slots::counting(1), 0);
        assert!(summary.all_ok());
        assert!(summary.succeeded.is_empty());
    }
}
