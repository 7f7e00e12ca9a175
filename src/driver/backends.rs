//! Where backend jobs run: locally or on a REAPI cluster (`KDTHIN_REMOTE`),
//! through the backend cache when it is on. Shared by the link driver and
//! the DTLTO distributor entry (`kdthin distribute`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cache::{self, Cache};
use crate::exec::scheduler::{self, Event, RunSummary};
use crate::exec::slots::{Chosen, JobsSource, Slots};
use crate::exec::{local::LocalExecutor, Executor, Job};
use crate::remote::{self, RemoteExecutor};
use crate::settings::BackendSettings;

pub struct Backends {
    pub cache: Option<Arc<Cache>>,
    remote: Option<RemoteExecutor>,
    local: Arc<LocalExecutor>,
    slots: Slots,
    /// Where the local CPU budget came from (make's jobserver, CPUs, env).
    pub source: JobsSource,
    /// Set when make advertised a jobserver we could not use.
    pub note: Option<String>,
    cwd: PathBuf,
}

impl Backends {
    /// Remote jobs take no CPU slot: they get counting slots of their own,
    /// and the local slots go to the remote executor for the jobs that
    /// fall back. `cache` is open already (the link driver opens it early
    /// for the whole-link cache; one cache per link shares the file hashes).
    pub fn with_cache(settings: &BackendSettings, cwd: &Path, cache: Option<Arc<Cache>>) -> Backends {
        let Chosen { slots, source, warning, note } = settings.slots();
        if let Some(w) = warning {
            eprintln!("kdthin-ld: warning: {w}");
        }
        for w in &settings.warnings {
            eprintln!("kdthin-ld: warning: {w}");
        }
        let local = Arc::new(LocalExecutor::from_settings(&settings.forkserver, settings.verbose));
        let (remote, slots) = remote_executor(settings, cwd, &local, slots);
        Backends { cache, remote, local, slots, source, note, cwd: cwd.to_path_buf() }
    }

    /// The scheduling limit, for reports.
    pub fn limit(&self) -> Option<usize> {
        self.slots.limit()
    }

    pub fn run(&self, jobs: &[Job], on_event: &(dyn Fn(Event) + Sync)) -> RunSummary {
        let base: &dyn Executor = match &self.remote {
            Some(r) => r,
            None => &*self.local,
        };
        let max_parallel = self.remote.as_ref().map_or(256, |r| r.jobs());
        match &self.cache {
            Some(c) => {
                let caching = cache::CachingExecutor { inner: base, cache: &**c, cwd: self.cwd.clone() };
                scheduler::run_all(jobs, &caching, &self.slots, max_parallel, on_event)
            }
            None => scheduler::run_all(jobs, base, &self.slots, max_parallel, on_event),
        }
    }
}

/// The REAPI executor when `KDTHIN_REMOTE` is set and usable, with the
/// slots to schedule by: remote ones if so, else the local ones unchanged.
fn remote_executor(
    backend: &BackendSettings,
    cwd: &Path,
    local: &Arc<LocalExecutor>,
    local_slots: Slots,
) -> (Option<RemoteExecutor>, Slots) {
    let Some(settings) = backend.remote.clone() else { return (None, local_slots) };
    let scan: remote::IncbinScan = Arc::new(|p: &Path| cache::incbin_files(p).map_err(|e| e.0));
    let made = settings.and_then(|s| {
        let jobs = s.jobs;
        RemoteExecutor::new(s, cwd.to_path_buf(), local.clone(), local_slots, scan).map(|r| (r, jobs))
    });
    match made {
        Ok((r, jobs)) => (Some(r), Slots::counting(jobs)),
        Err(e) => {
            eprintln!("kdthin-ld: warning: {e}; running backends locally");
            (None, backend.slots().slots)
        }
    }
}
