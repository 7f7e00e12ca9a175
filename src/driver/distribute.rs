//! The distributed link: thin-link, backends in parallel, final link,
//! and what is kept or removed afterwards.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, Context, Result};

use crate::args::CommandLine;
use crate::cache::Cache;
use crate::exec::{self, shell_quote, Job, JobError};
use crate::kbuild;
use crate::plan::final_link::lto_line;
use crate::plan::Fallback;
use crate::plan::{self, DistPlan};
use crate::private_dir;
use crate::report::{names, savedir::SaveDir, summary::Jobs, LinkRecorder};
use crate::settings::Settings;

use super::backends::Backends;
use super::whole_link::Memo;
use super::{install::*, tools::*, workdirs::*};

/// Everything one distributed link needs, decided before it starts.
pub(super) struct Link<'a> {
    /// The working directory: where backends run.
    pub(super) cwd: &'a Path,
    pub(super) real_ld: &'a Path,
    pub(super) cl: &'a CommandLine,
    pub(super) dist: &'a DistPlan,
    /// One per module, in `dist.modules` order; taken (moved into the
    /// backend command lines) when the backends are planned.
    pub(super) compiles: std::cell::RefCell<Vec<kbuild::compile::CompileCommand>>,
    pub(super) output: &'a Path,
    pub(super) settings: &'a Settings,
    pub(super) rec: &'a LinkRecorder,
    pub(super) save: &'a SaveDir,
    pub(super) in_process: &'a super::InProcess<'a>,
    pub(super) cache: Option<Arc<Cache>>,
    /// The whole link's entry in the cache, when it may have one.
    pub(super) memo: Option<Memo>,
}

pub(super) fn distribute(link: &Link) -> Result<i32> {
    let Link { dist, output, settings, rec, save, .. } = *link;
    let t0 = Instant::now();
    exec::signals::install();
    if let Some(meta) = link.memo.as_ref().and_then(|m| m.restore(output)) {
        let _ = std::io::stderr().write_all(&meta.stderr);
        if !settings.silent {
            println!(
                "{} (whole link cached)",
                lto_line(output, meta.used, meta.used, 0, 0, t0.elapsed().as_secs_f64())
            );
        }
        rec.update(|r| {
            (r.modules, r.used_modules, r.cache_hits) = (dist.modules.len(), meta.used, meta.used);
            r.link_cached = true;
        });
        rec.finish(0);
        save.finish("whole link from the cache");
        return Ok(0);
    }
    // Beside the output, so ld.lld needs this directory as much as we do:
    // when it cannot be made (a missing `nodir/`, no write permission),
    // ld.lld says why in its own words. Never a parent created: that
    // would make a link succeed that ld.lld refuses. Created and
    // registered for cleanup in one step (signals), so a signal either
    // finds it registered or stops its creation.
    let work_in_use = match exec::signals::create_registered(&dist.work, create_work_dir) {
        Ok(l) => l,
        Err(e) => {
            exec::signals::park_if_cancelled();
            let why = format!("cannot create work directory {}: {e}", dist.work.display());
            return link.in_process.fall_back(Fallback::WorkDir(why), Some(rec));
        }
    };
    let in_use = match create_index_dir(&dist.index_dir, &dist.work, settings) {
        Ok(l) => l,
        Err(e) => {
            exec::signals::park_if_cancelled();
            let _ = std::fs::remove_dir_all(&dist.work);
            exec::signals::unregister_cleanup(&dist.work);
            rec.finish(1);
            save.finish(&format!("error: {e:#}"));
            return Err(e);
        }
    };
    let result = distribute_in(link);
    if let (Ok(r), Some(m)) = (&result, &link.memo) {
        if r.code == 0 && r.fallback.is_none() {
            m.store(output, r.modules, &r.natives, r.stderr.clone());
        }
    }
    if let Ok(r) = &result {
        if r.code == 0 && r.fallback.is_none() && !settings.silent {
            println!("{}", lto_line(output, r.modules, r.cached, r.compiled, r.remote, t0.elapsed().as_secs_f64()));
        }
    }
    let keep: HashSet<PathBuf> = match &result {
        Ok(r) => r.keep.iter().cloned().collect(),
        Err(_) => HashSet::new(),
    };
    let dirs: Vec<&Path> =
        if dist.index_dir.starts_with(&dist.work) { vec![&dist.work] } else { vec![&dist.work, &dist.index_dir] };
    if settings.save_temps {
        for d in &dirs {
            private_dir::mark_kept(d);
            eprintln!("kdthin-ld: work files kept in {}", d.display());
        }
    } else if keep.is_empty() {
        for d in &dirs {
            let _ = std::fs::remove_dir_all(d);
        }
    } else {
        for d in &dirs {
            prune_except(d, &keep);
        }
        private_dir::mark_kept(&dist.index_dir);
        eprintln!("kdthin-ld: the index files the failed backends need are kept in {}", dist.index_dir.display());
    }
    for d in [&dist.work, &dist.index_dir] {
        exec::signals::unregister_cleanup(d);
    }
    drop((in_use, work_in_use));
    let r = match result {
        Ok(r) => r,
        Err(e) => {
            rec.finish(1);
            save.finish(&format!("error: {e:#}"));
            return Err(e);
        }
    };
    if let Some(why) = r.fallback {
        return link.in_process.fall_back(why, Some(rec));
    }
    rec.finish(r.code);
    save.finish(&format!("exit code {}", r.code));
    Ok(r.code)
}

pub(super) struct Outcome {
    code: i32,
    /// Modules the link used (lazy archive members it did not pull in are
    /// not counted: they need no backend).
    modules: usize,
    cached: usize,
    compiled: usize,
    /// Of `compiled`, how many ran on a remote worker.
    remote: usize,
    /// Files to keep on failure (index files of failed backends).
    keep: Vec<PathBuf>,
    /// Found out after the thin-link that the link must run in-process.
    fallback: Option<Fallback>,
    /// Native objects installed beside their bitcode, with this link's own
    /// copy of each (for the link memo).
    natives: Vec<(PathBuf, PathBuf)>,
    /// What the thin-link, the backends and the final link printed on
    /// stderr (already shown; kept for the link memo).
    stderr: Vec<u8>,
}

impl Outcome {
    fn new(dist: &DistPlan) -> Self {
        Outcome {
            code: 0,
            modules: dist.modules.len(),
            cached: 0,
            compiled: 0,
            remote: 0,
            keep: vec![],
            fallback: None,
            natives: vec![],
            stderr: vec![],
        }
    }
}

pub(super) fn distribute_in(link: &Link) -> Result<Outcome> {
    let Link { real_ld, cl, dist, settings, rec, save, output, .. } = *link;
    extract_members(dist)?;

    // 1. Thin-link: index and imports files only.
    let args = maybe_rsp(&dist.work, "thin-link.rsp", dist.thin_link.clone())?;
    save.thin_link(dist);
    let t = Instant::now();
    let mut stderr = Vec::new();
    let st = run_tool(settings, real_ld, &args, link.memo.as_ref().map(|_| &mut stderr))?;
    save.thin_link_outputs(dist);
    rec.phase(names::THIN_LINK, t, Instant::now());
    if !st.success() {
        let mut all = vec![real_ld.as_os_str().to_os_string()];
        all.extend(args);
        eprintln!("kdthin-ld: error: thin-link failed ({st}):\n  {}", shell_quote(&all));
        return Ok(Outcome { code: exit_code(st).max(1), ..Outcome::new(dist) });
    }
    if !dist.index_dir.is_dir() {
        return Err(index_dir_removed(dist));
    }
    let used = used_modules(dist)?;
    rec.update(|r| (r.modules, r.used_modules) = (dist.modules.len(), used.len()));
    if let Some(why) = not_thin_lto(dist, &used) {
        return Ok(Outcome { fallback: Some(why), ..Outcome::new(dist) });
    }

    // 2. Backends, in parallel.
    let native_dir = dist.work.join("native");
    std::fs::create_dir_all(&native_dir)?;
    let mut compiles = link.compiles.take();
    let mut jobs = Vec::with_capacity(used.len());
    // This link's own natives, in its work directory: what its final link
    // reads. Copies beside the bitcode are shared by every link of those
    // objects (make runs links of one object into several modules at
    // once), so they are only ever written, after the link succeeded.
    let own: HashMap<usize, PathBuf> =
        used.iter().map(|&n| (n, own_native(&native_dir, n, &dist.modules[n]))).collect();
    let link_flags: Arc<[OsString]> = dist.backend_extra.iter().cloned().collect();
    for &n in &used {
        let m = &dist.modules[n];
        let files = kbuild::BackendFiles {
            index: m.index.clone(),
            bitcode: m.path.clone(),
            imports: read_imports(&m.imports)?,
            output: own[&n].clone(),
        };
        let command = std::mem::take(&mut compiles[n]).into_backend(link_flags.clone(), files);
        save.backend(&command);
        jobs.push(Job {
            id: n,
            label: m.path.display().to_string(),
            command: exec::Command::Backend(command),
            weight: std::fs::metadata(&m.path).map(|md| md.len()).unwrap_or(0),
            install: Some(m.native.clone()),
            check: Some(dist.native_check),
        });
    }
    drop(compiles);
    let by_id: HashMap<usize, &Job> = jobs.iter().map(|j| (j.id, j)).collect();
    let backends = Backends::with_cache(&settings.backends, link.cwd, link.cache.clone());
    if let Some(note) = &backends.note {
        if settings.verbose {
            eprintln!("kdthin-ld: {note}");
        }
    }
    rec.update(|r| r.jobs = Jobs::new(&backends.source, backends.limit()));
    let verbose = settings.verbose;
    let on_event = move |ev: exec::scheduler::Event| {
        rec.on_event(ev);
        if verbose {
            if let exec::scheduler::Event::Started { id, .. } = ev {
                if let Some(j) = by_id.get(&id) {
                    println!("  {}", shell_quote(&j.command.argv()));
                }
            }
        }
    };
    let summary = rec.backends(&jobs, || backends.run(&jobs, &on_event));
    if let Some(c) = &backends.cache {
        rec.update(|r| r.cache_misses = c.link_stats().misses as usize);
    }
    let cached = summary.succeeded.iter().filter(|o| o.from_cache()).count();
    let remote_ran = summary.succeeded.iter().filter(|o| o.ran_on == "remote").count();
    exec::signals::park_if_cancelled();
    let jobs_by_id: HashMap<usize, &Job> = jobs.iter().map(|j| (j.id, j)).collect();
    // Warnings from successful backends: clang's own lines name the file.
    for ok in &summary.succeeded {
        let _ = std::io::stderr().write_all(&ok.stderr);
        stderr.extend_from_slice(&ok.stderr);
    }
    if !summary.failed.is_empty() {
        let mut keep = Vec::new();
        for (id, err) in &summary.failed {
            let job = jobs_by_id[id];
            match err {
                JobError::Cancelled => continue,
                JobError::Failed { status, stderr } => {
                    let _ = std::io::stderr().write_all(stderr);
                    eprintln!("kdthin-ld: error: ThinLTO backend for {} failed ({status}); command:", job.label);
                }
                JobError::BadOutput { why, stderr } => {
                    let _ = std::io::stderr().write_all(stderr);
                    eprintln!(
                        "kdthin-ld: error: ThinLTO backend for {} failed although it exited 0: {why}; command:",
                        job.label
                    );
                }
                JobError::Spawn(e) => {
                    eprintln!(
                        "kdthin-ld: error: ThinLTO backend for {}: cannot start {}: {e}; command:",
                        job.label,
                        job.command.program().to_string_lossy()
                    );
                }
            }
            eprintln!("  {}", shell_quote(&job.command.argv()));
            keep.push(dist.modules[*id].index.clone());
        }
        if !dist.index_dir.is_dir() {
            eprintln!("kdthin-ld: error: {:#}", index_dir_removed(dist));
        }
        return Ok(Outcome { code: 1, compiled: summary.succeeded.len(), keep, ..Outcome::new(dist) });
    }

    // Natives a cache hit found already installed with the same content.
    let installed: HashSet<usize> = summary.succeeded.iter().filter(|o| o.already_installed).map(|o| o.id).collect();
    // Thousands of backend command lines are not needed past this point;
    // free them before the archives are written.
    drop((jobs_by_id, summary, on_event));
    drop(jobs);

    // 3. Archives that held bitcode become thin archives of native objects.
    for na in &dist.new_archives {
        write_thin_archive(link.cwd, &na.path, &na.members, &own)?;
    }

    // 4. The original command, this link's natives substituted in place,
    // writing into the work directory: ld.lld's own temporary output
    // (`<-o>.tmpXXXXXXX`, renamed at its end) then lives there too, so a
    // link killed at any point leaves nothing beside the output that the
    // next link's sweep of dead work directories does not remove.
    let staged = dist.work.join(output.file_name().unwrap_or(OsStr::new("a.out")));
    let final_args = plan::final_link::final_link_args(cl, dist, &own, &staged);
    save.final_link(&final_args);
    let final_args = maybe_rsp(&dist.work, "final-link.rsp", final_args)?;
    let t = Instant::now();
    let st = run_tool(settings, real_ld, &final_args, link.memo.as_ref().map(|_| &mut stderr))?;
    rec.phase(names::FINAL_LINK, t, Instant::now());
    let mut code = exit_code(st);
    if st.code().is_none() {
        // ld.lld prints nothing of its own then (SIGBUS writing -o on a
        // full tmpfs, say): the line that says what failed is ours.
        eprintln!("kdthin-ld: error: the final link ({}) {}", real_ld.display(), exec::local::describe_status(st));
    }
    // Into place as ld.lld would have put it: one rename, same file system.
    if code == 0 {
        if let Err(e) = std::fs::rename(&staged, output) {
            eprintln!("kdthin-ld: error: cannot open output file {}: {e}", output.display());
            code = 1;
        }
    }

    // 5. After a good link only: its natives beside their bitcode (for
    // objtool and livepatch tooling), each replaced atomically.
    if code == 0 {
        for &n in used.iter().filter(|n| !installed.contains(n)) {
            install_native(&own[&n], &dist.modules[n].native)?;
        }
    }
    Ok(Outcome {
        code,
        modules: used.len(),
        compiled: used.len() - cached,
        cached,
        remote: remote_ran,
        natives: used.iter().map(|&n| (dist.modules[n].native.clone(), own[&n].clone())).collect(),
        stderr,
        ..Outcome::new(dist)
    })
}

/// A tmpfs cleaned under a running link (`$XDG_RUNTIME_DIR` goes when its
/// user's last session ends) takes the index files with it.
pub(super) fn index_dir_removed(dist: &DistPlan) -> anyhow::Error {
    anyhow!(
        "the index directory {} was removed while the link ran; nothing was installed or cached from it",
        dist.index_dir.display()
    )
}

/// Module `n`'s native in this link's work directory, named after the
/// installed one so that lld's messages stay readable.
pub(super) fn own_native(native_dir: &Path, n: usize, m: &plan::Module) -> PathBuf {
    let name = m.native.file_name().unwrap_or(OsStr::new("native.o")).to_string_lossy();
    native_dir.join(format!("{n}-{name}"))
}

/// ld.lld leaves regular (full) LTO modules out of the list and gives them
/// an empty index; unused lazy members get a non-empty "skip" index. Full
/// LTO cannot be split into per-module backends: that link runs in-process.
pub(super) fn not_thin_lto(dist: &DistPlan, used: &[usize]) -> Option<Fallback> {
    let used: HashSet<usize> = used.iter().copied().collect();
    dist.modules.iter().enumerate().filter(|(i, _)| !used.contains(i)).find_map(|(_, m)| {
        let empty = std::fs::metadata(&m.index).map(|md| md.len() == 0).unwrap_or(true);
        empty.then(|| Fallback::NotThinLto(format!("{} is not ThinLTO bitcode (full LTO?)", m.path.display())))
    })
}

/// Modules ld.lld actually used, from its list file.
pub(super) fn used_modules(dist: &DistPlan) -> Result<Vec<usize>> {
    let text = std::fs::read_to_string(&dist.list_file)
        .with_context(|| format!("{}: thin-link wrote no module list", dist.list_file.display()))?;
    plan::final_link::used_modules(dist, &text).map_err(|e| anyhow!(e))
}

pub(super) fn read_imports(path: &Path) -> Result<Vec<PathBuf>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("{}: cannot read imports list", path.display()))?;
    Ok(text.lines().filter(|l| !l.is_empty()).map(PathBuf::from).collect())
}

pub(super) fn extract_members(dist: &DistPlan) -> Result<()> {
    let mut cache: HashMap<&Path, memmap2::Mmap> = HashMap::new();
    for (archive, (off, len), dest) in &dist.extract {
        if !cache.contains_key(archive.as_path()) {
            let f = std::fs::File::open(archive).with_context(|| format!("{}: cannot open", archive.display()))?;
            // Safety: read-only map of an input we never write; a concurrent
            // writer would be a build-system bug either way.
            let map =
                unsafe { memmap2::Mmap::map(&f) }.with_context(|| format!("{}: cannot map", archive.display()))?;
            cache.insert(archive.as_path(), map);
        }
        let data = &cache[archive.as_path()];
        let bytes = data
            .get(*off as usize..(*off + *len) as usize)
            .ok_or_else(|| anyhow!("{}: member extends past the end of the file", archive.display()))?;
        if let Some(d) = dest.parent() {
            std::fs::create_dir_all(d)?;
        }
        std::fs::write(dest, bytes).with_context(|| format!("{}: cannot write", dest.display()))?;
    }
    Ok(())
}
