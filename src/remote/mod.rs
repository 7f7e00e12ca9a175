//! Remote execution of backends over the Remote Execution API (REAPI v2):
//! Buildbarn, BuildBuddy, NativeLink, buildbox-casd, ...
//!
//! [`RemoteExecutor`] runs each backend [`Job`] as an Action (see
//! [`action`] for what its input root holds): the action cache first, so a
//! second link only downloads; otherwise the missing blobs are uploaded
//! (once per link, however many backends import a module) and the action
//! executed. A compile error on the worker is a compile error. Any other
//! trouble (server down, timeouts, worker failures) is retried a few times,
//! then that job runs locally, with one warning per link; once the service
//! itself looks down, the remaining jobs go straight to local.
//!
//! Settings (environment):
//! - `KDTHIN_REMOTE=grpc://HOST:PORT` turns it on; `grpcs://HOST:PORT` is
//!   the same over TLS, the server verified against the system's CAs.
//! - `KDTHIN_REMOTE_CA=FILE`: more CAs to trust (PEM), for `grpcs://`.
//! - `KDTHIN_REMOTE_CLIENT_CERT=FILE`, `KDTHIN_REMOTE_CLIENT_KEY=FILE`: a
//!   client certificate and its key (PEM), for mutual TLS.
//! - `KDTHIN_REMOTE_INSTANCE`: the instance name.
//! - `KDTHIN_REMOTE_HEADERS=k=v,k=v`: extra request headers.
//! - `KDTHIN_REMOTE_TOKEN_FILE=PATH`: adds `authorization: Bearer <token>`.
//! - `KDTHIN_REMOTE_PLATFORM=k=v,k=v`: platform properties of every action.
//! - `KDTHIN_REMOTE_JOBS=N`: backends in flight at once (default 200).
//! - `KDTHIN_REMOTE_LOG=FILE`: appends one line per backend: where it ran
//!   (`remote`, `remote-cache`, `local` and why), its label.
//!
//! Mistakes in these settings make the link warn and run its backends
//! locally, except the TLS ones ([`preflight`]): a TLS file that is missing
//! or not PEM, half a client pair, or a TLS variable with `grpc://` stop
//! kdthin-ld before it does anything, since the user asked for a secure
//! connection and would otherwise only get a warning per link.

pub mod action;
mod client;
mod tls;
mod verdict;

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use crate::exec::slots::Slots;
use crate::exec::{signals, Executor, Job, JobError, JobOutcome};
use action::{Digest, NotRemotable, Prepared};
use client::{Client, Headers, RemoteError};
pub use tls::TlsFiles;
use verdict::Verdicts;

const DEFAULT_JOBS: usize = 200;
/// Attempts per job before it runs locally, and the first pause between
/// them (doubling).
const ATTEMPTS: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// The remote settings from the environment, validated, nothing read yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteSettings {
    /// As the user wrote it, for messages.
    pub url: String,
    /// What the gRPC channel connects to (`http://host:port`, or
    /// `https://` for TLS).
    pub endpoint: String,
    /// Set for `grpcs://`.
    pub tls: Option<TlsFiles>,
    pub instance: String,
    pub headers: Vec<(String, String)>,
    pub token_file: Option<PathBuf>,
    pub platform: Vec<(String, String)>,
    pub jobs: usize,
    pub log: Option<PathBuf>,
    /// Where "this endpoint is down" is shared with the build's other
    /// links (see [`verdict`]); None: not shared.
    pub state_dir: Option<PathBuf>,
    /// PATH (the compiler's absolute path for the worker) and
    /// `CCC_OVERRIDE_OPTIONS` (passed on: it edits every clang command).
    pub tools: crate::env::ToolEnv,
}

impl RemoteSettings {
    /// The settings `KDTHIN_REMOTE*` ask for: None when remote execution
    /// is off, `Err` when they are wrong (the caller warns and runs
    /// locally).
    pub fn from_env(env: &crate::env::Env) -> Option<Result<RemoteSettings, String>> {
        Self::from_vars(|k| env.var_os(k))
    }

    /// None when `KDTHIN_REMOTE` is unset or empty.
    pub fn from_vars(var: impl Fn(&str) -> Option<OsString>) -> Option<Result<RemoteSettings, String>> {
        let tools = crate::env::ToolEnv { path: var("PATH"), ccc_override: var("CCC_OVERRIDE_OPTIONS") };
        let get = getter(var);
        let url = get("KDTHIN_REMOTE")?;
        Some((|| {
            let (endpoint, tls) = endpoint(&url)?;
            let tls = tls_files(&url, tls, &get)?;
            let jobs = match get("KDTHIN_REMOTE_JOBS") {
                None => DEFAULT_JOBS,
                Some(v) => match v.parse::<usize>() {
                    Ok(n) if n > 0 => n,
                    _ => return Err(format!("KDTHIN_REMOTE_JOBS={v}: not a positive integer")),
                },
            };
            Ok(RemoteSettings {
                url: url.clone(),
                endpoint,
                tls,
                instance: get("KDTHIN_REMOTE_INSTANCE").unwrap_or_default(),
                headers: pairs("KDTHIN_REMOTE_HEADERS", get("KDTHIN_REMOTE_HEADERS").as_deref())?,
                token_file: get("KDTHIN_REMOTE_TOKEN_FILE").map(PathBuf::from),
                platform: pairs("KDTHIN_REMOTE_PLATFORM", get("KDTHIN_REMOTE_PLATFORM").as_deref())?,
                jobs,
                log: get("KDTHIN_REMOTE_LOG").map(PathBuf::from),
                state_dir: verdict::state_dir(&get),
                tools: tools.clone(),
            })
        })())
    }
}

/// The TLS checks that stop a distributed link (and `kdthin distribute`)
/// before it starts any work: with `KDTHIN_REMOTE=grpcs://...`, every file named by
/// `KDTHIN_REMOTE_CA`, `_CLIENT_CERT` and `_CLIENT_KEY` is read and parsed
/// (not the system's CA store: that is read when a link needs it); with
/// `grpc://`, any of them set is an error. Nothing to check when remote
/// execution is off, and other mistakes in `KDTHIN_REMOTE*` are left to
/// the link (a warning, then local backends).
pub fn preflight(env: &crate::env::Env) -> Result<(), String> {
    preflight_vars(|k| env.var_os(k))
}

/// [`preflight`] with the variables from `var`.
pub fn preflight_vars(var: impl Fn(&str) -> Option<OsString>) -> Result<(), String> {
    let get = getter(var);
    let Some(url) = get("KDTHIN_REMOTE") else { return Ok(()) };
    let Ok((_, tls)) = endpoint(&url) else { return Ok(()) };
    match tls_files(&url, tls, &get)? {
        Some(files) => files.check().map(drop),
        None => Ok(()),
    }
}

/// A variable's value, trimmed; None when unset or empty.
fn getter(var: impl Fn(&str) -> Option<OsString>) -> impl Fn(&str) -> Option<String> {
    move |k| var(k).map(|v| v.to_string_lossy().trim().to_string()).filter(|v| !v.is_empty())
}

/// The TLS files for `url` (None without TLS); an error for a TLS
/// variable without TLS, or half a client pair.
fn tls_files(url: &str, tls: bool, get: &impl Fn(&str) -> Option<String>) -> Result<Option<TlsFiles>, String> {
    if !tls {
        let set: Vec<&str> = tls::VARS.into_iter().filter(|k| get(k).is_some()).collect();
        if set.is_empty() {
            return Ok(None);
        }
        return Err(format!(
            "{} set, but KDTHIN_REMOTE={url} is not TLS: use grpcs://, or unset {}",
            if set.len() == 1 { format!("{} is", set[0]) } else { format!("{} are", set.join(" and ")) },
            if set.len() == 1 { "it" } else { "them" }
        ));
    }
    TlsFiles::new(get(tls::CA_VAR), get(tls::CERT_VAR), get(tls::KEY_VAR)).map(Some)
}

/// The channel's endpoint (`http://` or `https://`), and whether it is TLS.
fn endpoint(url: &str) -> Result<(String, bool), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("KDTHIN_REMOTE={url}: expected grpc://HOST:PORT or grpcs://HOST:PORT"))?;
    let tls = match scheme {
        "grpc" | "http" => false,
        "grpcs" | "https" => true,
        _ => {
            return Err(format!(
                "KDTHIN_REMOTE={url}: unknown scheme {scheme:?} (expected grpc://HOST:PORT or grpcs://HOST:PORT)"
            ))
        }
    };
    let hostport = rest.trim_end_matches('/');
    let port_ok = hostport.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
    if !port_ok || hostport.contains('/') {
        return Err(format!("KDTHIN_REMOTE={url}: expected {scheme}://HOST:PORT"));
    }
    Ok((format!("{}://{hostport}", if tls { "https" } else { "http" }), tls))
}

/// `k=v,k=v` (spaces around items ignored).
fn pairs(name: &str, v: Option<&str>) -> Result<Vec<(String, String)>, String> {
    let Some(v) = v else { return Ok(vec![]) };
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|item| match item.split_once('=') {
            Some((k, val)) if !k.trim().is_empty() => Ok((k.trim().to_string(), val.trim().to_string())),
            _ => Err(format!("{name}: {item:?} is not KEY=VALUE")),
        })
        .collect()
}

/// Files a bitcode module's asm makes the assembler read (`.incbin` names
/// as written), or why that cannot be known. See `cache::incbin_files`.
pub type IncbinScan = Arc<dyn Fn(&Path) -> Result<Vec<PathBuf>, String> + Send + Sync>;

/// Counts for the link's summary line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RemoteStats {
    /// Executed by a remote worker.
    pub executed: u64,
    /// Served from the remote action cache.
    pub cache_hits: u64,
    /// Run locally after remote trouble.
    pub fallbacks: u64,
    /// Run locally because the job cannot be expressed as an action.
    pub not_remotable: u64,
    pub uploaded_blobs: u64,
    pub uploaded_bytes: u64,
}

/// Memoised per path, computed outside the map lock.
struct Memo<T>(Mutex<HashMap<PathBuf, Arc<OnceLock<T>>>>);

impl<T: Clone> Memo<T> {
    fn new() -> Self {
        Memo(Mutex::new(HashMap::new()))
    }
    fn get(&self, path: &Path, compute: impl FnOnce() -> T) -> T {
        let cell = self.0.lock().unwrap_or_else(|e| e.into_inner()).entry(path.to_path_buf()).or_default().clone();
        cell.get_or_init(compute).clone()
    }
}

/// A compiler's absolute path, identity and `--version` output.
type Compiler = (PathBuf, String, Arc<Vec<u8>>);

struct LocalFacts {
    cwd: PathBuf,
    digests: Memo<Result<Digest, String>>,
    incbins: Memo<Result<Vec<PathBuf>, String>>,
    scan: IncbinScan,
    compilers: Memo<Result<Compiler, String>>,
    tools: crate::env::ToolEnv,
}

impl action::Facts for LocalFacts {
    fn file_digest(&self, path: &Path) -> Result<Digest, String> {
        self.digests.get(path, || {
            let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(action::digest_of(&data))
        })
    }
    fn incbins(&self, bitcode: &Path) -> Result<Vec<PathBuf>, String> {
        self.incbins.get(&self.cwd.join(bitcode), || (self.scan)(bitcode))
    }
    fn compiler(&self, program: &OsStr) -> Result<(PathBuf, String), String> {
        self.compilers
            .get(Path::new(program), || compiler_identity(program, &self.cwd, &self.tools))
            .map(|(p, id, _)| (p, id))
    }
    fn cwd(&self) -> &Path {
        &self.cwd
    }
    fn env(&self) -> Vec<(String, String)> {
        // Edits every clang command line: the worker must see it too.
        let ccc = self.tools.ccc_override.as_ref().and_then(|v| v.to_str());
        ccc.map(|v| vec![("CCC_OVERRIDE_OPTIONS".to_string(), v.to_string())]).unwrap_or_default()
    }
}

/// The compiler's absolute path (as found in PATH, not canonicalised:
/// clang's driver mode follows its name) and identity: SHA-256 of the
/// resolved binary's canonical path and its `--version` output.
fn compiler_identity(program: &OsStr, cwd: &Path, tools: &crate::env::ToolEnv) -> Result<Compiler, String> {
    let p = Path::new(program);
    let path = if p.as_os_str().to_string_lossy().contains('/') {
        cwd.join(p)
    } else {
        std::env::split_paths(tools.path.as_deref().unwrap_or_default())
            .map(|d| d.join(p))
            .find(|c| std::fs::metadata(c).is_ok_and(|m| m.is_file()))
            .ok_or_else(|| format!("{}: not found in PATH", p.display()))?
    };
    let canonical = path.canonicalize().map_err(|e| format!("{}: {e}", path.display()))?;
    let out = signals::output(std::process::Command::new(&path).arg("--version"))
        .map_err(|e| format!("{} --version: {e}", path.display()))?;
    if !out.status.success() {
        return Err(format!("{} --version failed", path.display()));
    }
    let mut h = Sha256::new();
    for field in [canonical.as_os_str().as_encoded_bytes(), &out.stdout] {
        h.update((field.len() as u64).to_le_bytes());
        h.update(field);
    }
    let id = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok((path, id, Arc::new(out.stdout)))
}

/// Runs backends remotely; see the module docs. One per link.
pub struct RemoteExecutor {
    settings: RemoteSettings,
    rt: Option<tokio::runtime::Runtime>,
    client: Client,
    facts: LocalFacts,
    local: Arc<dyn Executor + Send + Sync>,
    /// Local fallback runs hold one of these (CPU slots or make's
    /// jobserver), unlike remote jobs.
    local_slots: Slots,
    /// Per compiler (absolute path): does the worker run the same one?
    toolchains: Memo<Result<(), String>>,
    /// The service failed a job after retries: the rest run locally.
    down: AtomicBool,
    /// Another link found the service down (a fresh verdict): why.
    down_elsewhere: Option<verdict::Down>,
    verdicts: Verdicts,
    warned: AtomicBool,
    executed: AtomicU64,
    cache_hits: AtomicU64,
    fallbacks: AtomicU64,
    not_remotable: AtomicU64,
    log: Option<Mutex<std::fs::File>>,
}

impl RemoteExecutor {
    /// `cwd`: where backends run. `local` runs the jobs that fall back (or
    /// cannot be sent), each holding one of `local_slots` (remote jobs do
    /// not). `scan` finds `.incbin`s (`cache::incbin_files`). Nothing is
    /// sent yet: an unreachable server shows up as fallbacks.
    pub fn new(
        settings: RemoteSettings,
        cwd: PathBuf,
        local: Arc<dyn Executor + Send + Sync>,
        local_slots: Slots,
        scan: IncbinScan,
    ) -> Result<RemoteExecutor, String> {
        let mut headers = settings.headers.clone();
        if let Some(f) = &settings.token_file {
            let token =
                std::fs::read_to_string(f).map_err(|e| format!("KDTHIN_REMOTE_TOKEN_FILE={}: {e}", f.display()))?;
            headers.push(("authorization".into(), format!("Bearer {}", token.trim())));
        }
        let headers = Headers::new(&headers).map_err(|e| format!("KDTHIN_REMOTE_HEADERS: {e}"))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kdthin-remote")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the remote client: {e}"))?;
        let tls = match &settings.tls {
            Some(files) => Some(files.client_config().map_err(|e| format!("{}: {e}", settings.url))?),
            None => None,
        };
        let client = {
            let _guard = rt.enter();
            Client::new(&settings.endpoint, tls, &settings.instance, headers)?
        };
        let log = match &settings.log {
            Some(p) => Some(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| format!("KDTHIN_REMOTE_LOG={}: {e}", p.display()))?,
            )),
            None => None,
        };
        let verdicts = Verdicts::new(settings.state_dir.as_deref(), &settings.url);
        let down_elsewhere = verdicts.down();
        let tools = settings.tools.clone();
        Ok(RemoteExecutor {
            down: AtomicBool::new(down_elsewhere.is_some()),
            down_elsewhere,
            verdicts,
            settings,
            rt: Some(rt),
            client,
            facts: LocalFacts { cwd, digests: Memo::new(), incbins: Memo::new(), scan, compilers: Memo::new(), tools },
            local,
            local_slots,
            toolchains: Memo::new(),
            warned: AtomicBool::new(false),
            executed: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
            not_remotable: AtomicU64::new(0),
            log,
        })
    }

    /// How many jobs to keep in flight: schedule remote jobs with
    /// `Slots::counting(jobs())`, not with local CPU slots.
    pub fn jobs(&self) -> usize {
        self.settings.jobs
    }

    pub fn url(&self) -> &str {
        &self.settings.url
    }

    pub fn stats(&self) -> RemoteStats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RemoteStats {
            executed: g(&self.executed),
            cache_hits: g(&self.cache_hits),
            fallbacks: g(&self.fallbacks),
            not_remotable: g(&self.not_remotable),
            uploaded_blobs: g(&self.client.uploads.uploaded_blobs),
            uploaded_bytes: g(&self.client.uploads.uploaded_bytes),
        }
    }

    fn note(&self, ran_on: &str, job: &Job, why: &str) {
        if let Some(f) = &self.log {
            let mut f = f.lock().unwrap_or_else(|e| e.into_inner());
            let _ = writeln!(f, "{ran_on}\t{}\t{why}", job.label);
        }
    }

    fn run_local(&self, job: &Job) -> Result<JobOutcome, JobError> {
        let _token = self.local_slots.acquire().map_err(JobError::Spawn)?;
        self.local.run(job)
    }

    /// The whole service is unusable: the rest of this link, and the
    /// build's other links for a while, run locally.
    fn mark_down(&self, e: &RemoteError) {
        self.down.store(true, Ordering::Relaxed);
        self.verdicts.record(&e.to_string());
    }

    fn fall_back(&self, job: &Job, e: &RemoteError) -> Result<JobOutcome, JobError> {
        if e.service_down {
            self.mark_down(e);
        }
        if !self.warned.swap(true, Ordering::Relaxed) {
            eprintln!(
                "kdthin-ld: warning: remote execution at {} failed ({e}); falling back to local",
                self.settings.url
            );
        }
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
        self.note("local", job, &format!("fallback: {e}"));
        self.run_local(job)
    }

    /// One attempt: the action cache, else upload and execute; then the
    /// output and logs are fetched.
    async fn attempt(&self, p: &Prepared, job: &Job) -> Result<Result<JobOutcome, JobError>, RemoteError> {
        let start = Instant::now();
        let (result, cached) = match self.client.cached_result(&p.action_digest).await? {
            Some(r) => (r, true),
            None => {
                self.client.ensure_blobs(&p.blobs).await?;
                // Our own lookup just missed (or found a failure we want
                // re-run): no need for the server to look again.
                let f = self.client.execute(&p.action_digest, true).await?;
                (f.result, f.cached)
            }
        };
        let mut output = self.fetch_log(&result.stdout_raw, result.stdout_digest.as_ref()).await?;
        output.extend(self.fetch_log(&result.stderr_raw, result.stderr_digest.as_ref()).await?);
        if result.exit_code != 0 {
            return Ok(Err(JobError::Failed {
                status: format!("exit status {} on the remote worker", result.exit_code),
                stderr: output,
            }));
        }
        let file = result
            .output_files
            .iter()
            .find(|f| f.path == p.output)
            .ok_or_else(|| RemoteError::other(format!("the remote result has no {}", p.output)))?;
        let digest = file.digest.clone().ok_or_else(|| RemoteError::other("output without a digest"))?;
        let data = self.client.read(&digest).await?;
        // A worker's clang exits 0 on some failures too (exec::verify); an
        // action cache can hold such a result. Either way: not used, and
        // the backend runs here instead.
        if let Some(check) = &job.check {
            check.check(&data, &output).map_err(|why| RemoteError::other(format!("unusable remote result: {why}")))?;
        }
        let dest = job.command.output().ok_or_else(|| RemoteError::other("a job without an output"))?;
        std::fs::write(dest, &data).map_err(|e| RemoteError {
            msg: format!("{}: {e}", dest.display()),
            retry: false,
            blobs_lost: false,
            service_down: false,
        })?;
        Ok(Ok(JobOutcome {
            id: job.id,
            wall: start.elapsed(),
            ran_on: if cached { "remote-cache" } else { "remote" },
            stderr: output,
            already_installed: false,
        }))
    }

    /// Once per compiler and link: runs `COMPILER --version` remotely
    /// and compares it with the local answer, so that a worker without
    /// this toolchain (or with another build of it at the same path) is
    /// found before its failures look like compile errors.
    fn check_toolchain(&self, job: &Job) -> Result<(), String> {
        let program = job.command.program();
        let (path, id, local_version) = self
            .facts
            .compilers
            .get(Path::new(program), || compiler_identity(program, &self.facts.cwd, &self.facts.tools))?;
        self.toolchains.get(&path, || {
            let mut last = String::new();
            for _ in 0..ATTEMPTS {
                let p = action::version_probe(&path, &id, &self.settings.platform)?;
                let result = self.block_on(async {
                    let r = match self.client.cached_result(&p.action_digest).await? {
                        Some(r) => r,
                        None => {
                            self.client.ensure_blobs(&p.blobs).await?;
                            self.client.execute(&p.action_digest, true).await?.result
                        }
                    };
                    let out = self.fetch_log(&r.stdout_raw, r.stdout_digest.as_ref()).await?;
                    let err = self.fetch_log(&r.stderr_raw, r.stderr_digest.as_ref()).await?;
                    Ok::<_, RemoteError>((r.exit_code, out, err))
                });
                match result {
                    None => return Err("cancelled".into()),
                    Some(Ok((0, out, _))) if out == *local_version => return Ok(()),
                    Some(Ok((code, out, err))) => {
                        let first =
                            |b: &[u8]| String::from_utf8_lossy(b).lines().next().unwrap_or("").trim().to_string();
                        let said = if code == 0 { first(&out) } else { first(&err) };
                        return Err(format!(
                            "the worker's {} is not the local compiler (`--version`: exit status {code}, {said:?})",
                            path.display()
                        ));
                    }
                    Some(Err(e)) if e.retry && !e.service_down => last = e.to_string(),
                    Some(Err(e)) => {
                        if e.service_down {
                            self.mark_down(&e);
                        }
                        return Err(format!("failed ({e})"));
                    }
                }
                std::thread::sleep(FIRST_BACKOFF);
            }
            Err(format!("failed ({last})"))
        })
    }

    async fn fetch_log(&self, raw: &[u8], digest: Option<&Digest>) -> Result<Vec<u8>, RemoteError> {
        match digest {
            Some(d) if raw.is_empty() && d.size_bytes > 0 => self.client.read(d).await,
            _ => Ok(raw.to_vec()),
        }
    }

    /// Runs `fut` to completion on the runtime, or gives up when the link
    /// is cancelled (a signal): the process is about to end.
    fn block_on<T>(&self, fut: impl std::future::Future<Output = T>) -> Option<T> {
        let rt = self.rt.as_ref().expect("runtime lives as long as the executor");
        rt.block_on(async {
            tokio::select! {
                v = fut => Some(v),
                _ = async {
                    loop {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        if signals::cancelled() {
                            break;
                        }
                    }
                } => None,
            }
        })
    }
}

impl Executor for RemoteExecutor {
    fn run(&self, job: &Job) -> Result<JobOutcome, JobError> {
        if signals::cancelled() {
            return Err(JobError::Cancelled);
        }
        if self.down.load(Ordering::Relaxed) {
            if let Some(d) = &self.down_elsewhere {
                if !self.warned.swap(true, Ordering::Relaxed) {
                    eprintln!(
                        "kdthin-ld: warning: remote execution at {} failed {}s ago in another link ({}); \
                         running locally",
                        self.settings.url,
                        d.age.as_secs(),
                        d.why
                    );
                }
            }
            self.fallbacks.fetch_add(1, Ordering::Relaxed);
            self.note(
                "local",
                job,
                if self.down_elsewhere.is_some() { "remote is down (shared verdict)" } else { "remote is down" },
            );
            return self.run_local(job);
        }
        let prepared = match action::prepare(job, &self.facts, &self.settings.platform) {
            Ok(p) => p,
            Err(NotRemotable(why)) => {
                self.not_remotable.fetch_add(1, Ordering::Relaxed);
                self.note("local", job, &format!("not remotable: {why}"));
                return self.run_local(job);
            }
        };
        if let Err(why) = self.check_toolchain(job) {
            self.down.store(true, Ordering::Relaxed);
            if !self.warned.swap(true, Ordering::Relaxed) {
                eprintln!(
                    "kdthin-ld: warning: remote execution at {}: {why}; falling back to local",
                    self.settings.url
                );
            }
            self.fallbacks.fetch_add(1, Ordering::Relaxed);
            self.note("local", job, &why);
            return self.run_local(job);
        }
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            let Some(result) = self.block_on(self.attempt(&prepared, job)) else { return Err(JobError::Cancelled) };
            match result {
                Ok(Ok(outcome)) => {
                    let counter = if outcome.ran_on == "remote-cache" { &self.cache_hits } else { &self.executed };
                    counter.fetch_add(1, Ordering::Relaxed);
                    self.note(outcome.ran_on, job, &prepared.action_digest.hash);
                    return Ok(outcome);
                }
                // A compile error: the same on any machine.
                Ok(Err(failed)) => {
                    self.note("remote", job, "compile failed");
                    return Err(failed);
                }
                Err(e) if e.retry && attempt < ATTEMPTS && !self.down.load(Ordering::Relaxed) => {
                    if e.blobs_lost {
                        self.client.uploads.forget();
                    }
                    std::thread::sleep(backoff);
                    backoff *= 2;
                    attempt += 1;
                }
                Err(e) => return self.fall_back(job, &e),
            }
        }
    }
}

impl Drop for RemoteExecutor {
    fn drop(&mut self) {
        // Do not wait for the connection's background tasks.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests;
