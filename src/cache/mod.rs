//! A content-addressed cache of ThinLTO backend outputs (native objects),
//! outside the build tree and shared by every tree and concurrent link of
//! the user.
//!
//! - `key`: what a backend's output depends on, hashed into a [`Key`].
//!   Modules whose asm `.incbin`s a file get that file's content in their
//!   key (IKCONFIG), or are not cached when it cannot be read.
//! - `bitcode` and `embed`: find those `.incbin`s in the bitcode.
//! - `store`: entries on disk, verified on read, size-bounded (LRU).
//!
//! The cache can never fail a build: any trouble with the cache directory
//! (full disk, read-only, permissions) prints one warning and the link
//! goes on without it.
//!
//! Settings (environment): `KDTHIN_CACHE=off` disables it;
//! `KDTHIN_CACHE_DIR` (default `${XDG_CACHE_HOME:-$HOME/.cache}/kdthin`);
//! `KDTHIN_CACHE_SIZE` (default 5G; K/M/G/T are powers of 1024; 0 = no
//! limit).

use crate::input::{bitcode, embed};
mod key;
mod link_key;
mod store;

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::exec::verify::NativeCheck;
use crate::exec::{Executor, Job, JobError, JobOutcome};
pub use key::{CompilerId, FileHashes, Key, KeyInputs, NotCacheable};
pub use link_key::{LinkKeyInputs, ModuleInputs};
use store::{Lookup, Store};

const DEFAULT_SIZE: u64 = 5 << 30;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheSettings {
    pub enabled: bool,
    /// None when no directory could be derived (no HOME).
    pub dir: Option<PathBuf>,
    /// Bytes; 0 = no limit.
    pub max_size: u64,
    /// A setting we could not use, to print when the cache opens.
    pub warning: Option<String>,
    /// What a compiler's identity depends on besides its binary.
    pub tools: crate::env::ToolEnv,
}

impl CacheSettings {
    pub fn from_env(env: &crate::env::Env) -> CacheSettings {
        let mut s = Self::from_vars(|k| env.var_os(k), env.cwd.as_deref());
        s.tools = crate::env::ToolEnv::from_env(env);
        s
    }

    /// From a variable lookup; `cwd` anchors a relative `KDTHIN_CACHE_DIR`
    /// (links run in different directories, the cache must not move).
    pub fn from_vars(var: impl Fn(&str) -> Option<OsString>, cwd: Option<&Path>) -> CacheSettings {
        let set = |k: &str| var(k).filter(|v| !v.is_empty());
        let mut warnings = vec![];
        let enabled = crate::switch::get("KDTHIN_CACHE", true, &var, &mut warnings);
        let absolute = |p: PathBuf| match cwd {
            Some(c) if p.is_relative() => c.join(p),
            _ => p,
        };
        let dir = set("KDTHIN_CACHE_DIR")
            .map(|d| absolute(PathBuf::from(d)))
            // XDG: a relative XDG_CACHE_HOME is invalid and ignored.
            .or_else(|| set("XDG_CACHE_HOME").map(PathBuf::from).filter(|p| p.is_absolute()).map(|p| p.join("kdthin")))
            .or_else(|| set("HOME").map(|h| PathBuf::from(h).join(".cache/kdthin")));
        let max_size = match set("KDTHIN_CACHE_SIZE") {
            None => DEFAULT_SIZE,
            Some(v) => parse_size(&v.to_string_lossy()).unwrap_or_else(|| {
                warnings
                    .push(format!("KDTHIN_CACHE_SIZE={}: not a size (like 500M or 5G); using 5G", v.to_string_lossy()));
                DEFAULT_SIZE
            }),
        };
        let warning = (!warnings.is_empty()).then(|| warnings.join("; "));
        CacheSettings { enabled, dir, max_size, warning, tools: crate::env::ToolEnv::default() }
    }
}

/// "5G", "500M", "1.5G", "64KiB", "123" (bytes). Binary units.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: f64 = num.parse().ok()?;
    let shift = match unit.trim().to_ascii_uppercase().trim_end_matches('B').trim_end_matches('I') {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return None,
    };
    let bytes = num * (1u64 << shift) as f64;
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// What one link did with the cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub hits: u64,
    pub misses: u64,
    /// Backends whose key could not be formed ([`NotCacheable`]).
    pub uncacheable: u64,
    pub stored: u64,
    pub evicted: u64,
    /// Entries that failed their check (and were removed; also misses).
    pub corrupt: u64,
}

impl fmt::Display for LinkStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} hits, {} misses", self.hits, self.misses)?;
        if self.uncacheable > 0 {
            write!(f, ", {} not cacheable", self.uncacheable)?;
        }
        if self.corrupt > 0 {
            write!(f, ", {} corrupt entries removed", self.corrupt)?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    uncacheable: AtomicU64,
    stored: AtomicU64,
    evicted: AtomicU64,
    corrupt: AtomicU64,
}

/// The cache as one link uses it: shared by the backend threads.
pub struct Cache {
    store: Store,
    dir: PathBuf,
    files: FileHashes,
    /// Compiler identities by argv[0], probed once per link; None when the
    /// probe failed (those backends are not cached).
    compilers: Mutex<HashMap<OsString, Option<Arc<CompilerId>>>>,
    counts: Counters,
    /// Set after the first I/O error with the cache: one warning, then
    /// the rest of the link runs as if there were no cache.
    broken: AtomicBool,
    /// The key each backend of this link was looked up under, by the path
    /// its native is installed at: a whole-link entry records them, so a
    /// later hit can put those natives back (link_memo).
    keys: Mutex<HashMap<PathBuf, Key>>,
    tools: crate::env::ToolEnv,
}

impl Cache {
    /// The cache for this link, or None: off, or unusable (after a
    /// warning on stderr).
    pub fn open(settings: &CacheSettings) -> Option<Cache> {
        if let Some(w) = &settings.warning {
            eprintln!("kdthin-ld: warning: {w}");
        }
        match Cache::try_open(settings) {
            Ok(c) => c,
            Err(e) => {
                let dir = settings.dir.as_deref().map_or("(none)".into(), |d| d.display().to_string());
                eprintln!("kdthin-ld: warning: backend cache {dir} is unusable ({e}); continuing without it");
                None
            }
        }
    }

    /// Like [`Cache::open`] but says why, and prints nothing. Ok(None) when
    /// the cache is off.
    pub fn try_open(settings: &CacheSettings) -> io::Result<Option<Cache>> {
        if !settings.enabled {
            return Ok(None);
        }
        let Some(dir) = &settings.dir else {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no directory: set KDTHIN_CACHE_DIR or HOME"));
        };
        Ok(Some(Cache {
            store: Store::open(dir, settings.max_size)?,
            dir: dir.clone(),
            files: FileHashes::new(),
            compilers: Mutex::new(HashMap::new()),
            counts: Counters::default(),
            broken: AtomicBool::new(false),
            keys: Mutex::new(HashMap::new()),
            tools: settings.tools.clone(),
        }))
    }

    /// The key of one backend, or why it is not cached. Hashes each file
    /// once per link however many backends read it.
    pub fn key(&self, inputs: &KeyInputs) -> Result<Key, NotCacheable> {
        let result = self.compiler(&inputs.command.compiler).and_then(|cc| Key::compute(inputs, &cc, &self.files));
        if result.is_err() {
            self.counts.uncacheable.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// The key of a whole link (see `link_key`), or why it has none.
    /// Shares this link's file hashes with the backend keys.
    pub fn link_key(&self, linker: &Path, inputs: &LinkKeyInputs) -> Result<Key, NotCacheable> {
        let linker = self.compiler(linker.as_os_str())?;
        Key::for_link(inputs, &linker, &self.files, &|p| self.compiler(p))
    }

    /// A whole link's output stored under `key`, copied to `dest`; returns
    /// what was stored with it. Never an entry that failed its check.
    pub fn get_link(&self, key: &Key, dest: &Path) -> Option<Vec<u8>> {
        if self.broken.load(Ordering::Relaxed) {
            return None;
        }
        match self.store.get_file(key, dest) {
            Ok(Lookup::Hit { stderr, .. }) => Some(stderr),
            Ok(Lookup::Corrupt) => {
                self.counts.corrupt.fetch_add(1, Ordering::Relaxed);
                None
            }
            Ok(Lookup::Miss) => None,
            Err(e) => {
                self.fail(&e);
                None
            }
        }
    }

    /// Stores a link's output (streamed: it can be hundreds of MB).
    pub fn put_link(&self, key: &Key, output: &Path, meta: &[u8]) {
        if self.broken.load(Ordering::Relaxed) {
            return;
        }
        match self.store.put_file(key, output, meta) {
            Ok(evicted) => {
                self.counts.evicted.fetch_add(evicted, Ordering::Relaxed);
            }
            Err(e) => self.fail(&e),
        }
    }

    fn compiler(&self, program: &OsStr) -> Result<Arc<CompilerId>, NotCacheable> {
        // Held across the probe: the first backend thread runs `--version`,
        // the others wait for its answer instead of running their own.
        let mut map = self.compilers.lock().unwrap_or_else(|e| e.into_inner());
        let id = map
            .entry(program.to_os_string())
            .or_insert_with(|| CompilerId::probe(program, &self.tools).ok().map(Arc::new));
        id.clone().ok_or_else(|| NotCacheable(format!("cannot identify the compiler {}", Path::new(program).display())))
    }

    /// On a hit, writes the cached object to `dest` (unless `installed`
    /// already holds it) and returns the stderr its compile printed
    /// (warnings, to show again). Never returns an entry that failed its
    /// check.
    ///
    /// With `check`, an entry whose object fails it (an empty object stored
    /// by an older kdthin-ld, say) counts as corrupt: removed, and a miss.
    pub fn get(&self, key: &Key, dest: &Path, installed: Option<&Path>, check: Option<&NativeCheck>) -> Option<Hit> {
        if self.broken.load(Ordering::Relaxed) {
            return None;
        }
        let usable = |obj: &[u8], stderr: &[u8]| check.is_none_or(|c| c.check(obj, stderr).is_ok());
        let found = self.store.get(key, dest, installed, &usable).unwrap_or_else(|e| {
            self.fail(&e);
            Lookup::Miss
        });
        let c = &self.counts;
        match found {
            Lookup::Hit { stderr, unchanged } => {
                c.hits.fetch_add(1, Ordering::Relaxed);
                return Some(Hit { stderr, unchanged });
            }
            Lookup::Corrupt => c.corrupt.fetch_add(1, Ordering::Relaxed),
            Lookup::Miss => 0,
        };
        c.misses.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// Stores the object a backend just produced. Only call it for a
    /// backend that succeeded.
    pub fn put(&self, key: &Key, native: &Path, stderr: &[u8]) {
        if self.broken.load(Ordering::Relaxed) {
            return;
        }
        // An object we cannot read back is the build's problem, not ours.
        let Ok(data) = std::fs::read(native) else { return };
        match self.store.put(key, &data, stderr) {
            Ok(evicted) => {
                self.counts.stored.fetch_add(1, Ordering::Relaxed);
                self.counts.evicted.fetch_add(evicted, Ordering::Relaxed);
            }
            Err(e) => self.fail(&e),
        }
    }

    /// The key of the backend whose native is installed at `installed`,
    /// if one was looked up in this link.
    pub fn key_of(&self, installed: &Path) -> Option<Key> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner()).get(installed).cloned()
    }

    fn fail(&self, e: &io::Error) {
        if !self.broken.swap(true, Ordering::Relaxed) {
            eprintln!("kdthin-ld: warning: backend cache {}: {e}; continuing without it", self.dir.display());
        }
    }

    pub fn link_stats(&self) -> LinkStats {
        let c = &self.counts;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        LinkStats {
            hits: get(&c.hits),
            misses: get(&c.misses),
            uncacheable: get(&c.uncacheable),
            stored: get(&c.stored),
            evicted: get(&c.evicted),
            corrupt: get(&c.corrupt),
        }
    }
}

impl Drop for Cache {
    /// Adds this link's counts to the persisted totals, once.
    fn drop(&mut self) {
        let s = self.link_stats();
        let _ = self.store.add_stats(&[s.hits, s.misses, s.uncacheable, s.stored, s.evicted]);
    }
}

/// The cache's state, for `kdthin-ld`'s management command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheStats {
    pub dir: PathBuf,
    pub enabled: bool,
    pub max_size: u64,
    /// From the shard counters: cheap, may be slightly off until the next
    /// cleanup of a shard recounts it.
    pub size: u64,
    pub files: u64,
    pub hits: u64,
    pub misses: u64,
    pub uncacheable: u64,
    pub stored: u64,
    pub evicted: u64,
}

impl fmt::Display for CacheStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        let max = if self.max_size == 0 { "no limit".to_string() } else { format!("{:.2} GiB", gib(self.max_size)) };
        let lookups = self.hits + self.misses;
        let rate = if lookups == 0 { 0.0 } else { 100.0 * self.hits as f64 / lookups as f64 };
        writeln!(f, "cache directory   {}{}", self.dir.display(), if self.enabled { "" } else { " (disabled)" })?;
        writeln!(f, "size              {:.2} GiB of {max}, {} entries", gib(self.size), self.files)?;
        writeln!(f, "hits              {} ({rate:.1}%)", self.hits)?;
        writeln!(f, "misses            {}", self.misses)?;
        writeln!(f, "not cacheable     {}", self.uncacheable)?;
        writeln!(f, "stored            {}", self.stored)?;
        writeln!(f, "evicted           {}", self.evicted)
    }
}

/// Totals and size of the cache `settings` names (zeros if it does not
/// exist yet). Reads counters only: fast on any cache size.
pub fn stats(settings: &CacheSettings) -> io::Result<CacheStats> {
    let dir = settings.dir.clone().ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no cache directory"))?;
    let store = Store::at(&dir, settings.max_size);
    let [hits, misses, uncacheable, stored, evicted] = store.read_stats();
    let (size, files) = store.size();
    Ok(CacheStats {
        dir,
        enabled: settings.enabled,
        max_size: settings.max_size,
        size,
        files,
        hits,
        misses,
        uncacheable,
        stored,
        evicted,
    })
}

/// Removes every entry; the totals are kept (see [`zero_stats`]).
pub fn clear(settings: &CacheSettings) -> io::Result<()> {
    let dir = settings.dir.as_deref().ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no cache directory"))?;
    Store::at(dir, settings.max_size).clear()
}

/// Resets the persisted totals.
pub fn zero_stats(settings: &CacheSettings) -> io::Result<()> {
    let dir = settings.dir.as_deref().ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no cache directory"))?;
    Store::at(dir, settings.max_size).zero_stats()
}

/// Runs jobs through the cache: a hit writes the object without running
/// anything; a miss runs `inner` and stores what it made.
///
/// Only backend jobs ([`Command::Backend`]) are cached; any other job just
/// runs.
pub struct CachingExecutor<'a, E> {
    pub inner: E,
    pub cache: &'a Cache,
    /// Where the backends run (the process's working directory).
    pub cwd: PathBuf,
}

/// Files a module's inline asm pulls in with `.incbin`, for executors that
/// must ship them with the compile (remote execution).
pub fn incbin_files(bitcode: &Path) -> Result<Vec<PathBuf>, NotCacheable> {
    let data = std::fs::read(bitcode).map_err(|e| NotCacheable(format!("{}: {e}", bitcode.display())))?;
    let asm = bitcode::inline_asm(&data).map_err(|e| NotCacheable(format!("{}: {e}", bitcode.display())))?;
    match embed::embedded_files(&asm) {
        embed::Embeds::Files(f) => Ok(f),
        embed::Embeds::Unknown(why) => Err(NotCacheable(format!("{}: {why}", bitcode.display()))),
    }
}

/// A verified cache hit.
#[derive(Debug, PartialEq, Eq)]
pub struct Hit {
    pub stderr: Vec<u8>,
    /// The installed file already held the object: the destination is a
    /// hard link to it, nothing was written.
    pub unchanged: bool,
}

impl<E: Executor> Executor for CachingExecutor<'_, E> {
    fn run(&self, job: &Job) -> Result<JobOutcome, JobError> {
        let Some(command) = job.command.backend() else {
            return self.inner.run(job);
        };
        let native = &command.output;
        let inputs = KeyInputs { command, cwd: &self.cwd };
        let Ok(key) = self.cache.key(&inputs) else { return self.inner.run(job) };
        if let Some(installed) = &job.install {
            self.cache.keys.lock().unwrap_or_else(|e| e.into_inner()).insert(installed.clone(), key.clone());
        }
        let start = Instant::now();
        if let Some(hit) = self.cache.get(&key, native, job.install.as_deref(), job.check.as_ref()) {
            return Ok(JobOutcome {
                id: job.id,
                wall: start.elapsed(),
                ran_on: "cache",
                stderr: hit.stderr,
                already_installed: hit.unchanged,
            });
        }
        // The inner executors check what they produce (`Job::check`): only a
        // verified object gets here, so nothing unusable is ever stored.
        let outcome = self.inner.run(job)?;
        self.cache.put(&key, native, &outcome.stderr);
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests;
