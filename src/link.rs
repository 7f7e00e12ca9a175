//! One invocation of kdthin-ld, end to end: decide, then either exec the
//! real ld.lld or run thin-link -> backends -> final link.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, Context, Result};

use crate::args::{ArgKind, CommandLine, OptId};
use crate::backends::Backends;
use crate::cache::Cache;
use crate::env::Env;
use crate::exec::{self, shell_quote, Job, JobError};
use crate::input::{self, FileKind};
use crate::kbuild;
use crate::link_memo::Memo;
use crate::plan::{self, DistPlan, FileFacts, FinalSubst, NewMember, Origin, Passthrough, Plan};
use crate::private_dir;
use crate::report::{names, savedir::SaveDir, summary::Jobs, LinkRecorder};
use crate::settings::Settings;
use crate::thin_archive;
use crate::toolchain::{self, find_real_ld, LookupEnv};

pub fn main() -> i32 {
    match run(Env::capture()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kdthin-ld: error: {e:#}");
            1
        }
    }
}

fn run(mut env: Env) -> Result<i32> {
    let argv = std::mem::take(&mut env.args);
    let self_exe = env.self_exe.clone();
    let lookup = LookupEnv::from_env(&env);
    let real_ld = find_real_ld(&lookup, &self_exe)?;
    // Every child learns which kdthin-ld runs above it: one that is itself
    // a kdthin-ld (two installed as ld.lld) then skips us, so no chain of
    // them loops. Still one thread here, so changing the environment is safe.
    let chain = lookup.chain_with(&self_exe);
    std::env::set_var(toolchain::CHAIN_VAR, &chain);
    env.set(toolchain::CHAIN_VAR, chain);
    if !lookup.chain.is_empty() {
        // Another kdthin-ld ran us as its real linker: be that linker, not
        // a second distributor of its thin-link or final link.
        return exec_real(&real_ld, &argv);
    }
    let settings = Settings::from_env(&env);
    let reporting = settings.report.clone();

    // Anything we cannot read or parse goes to ld.lld unchanged: it is the
    // authority on bad command lines and missing inputs, and its messages
    // are the ones users know.
    let Ok(cl) = CommandLine::parse(&argv) else { return exec_real(&real_ld, &argv) };
    let Ok(inputs) = cl.inputs() else { return exec_real(&real_ld, &argv) };
    let Some(facts) = gather_facts(&inputs) else { return exec_real(&real_ld, &argv) };

    let output = cl.value_of(OptId::Output).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("a.out"));
    // Named now (planning is pure), created only if the link distributes.
    let work = work_dir_for(&output, &private_dir::unique_suffix());
    let index_dir = index_dir_for(&work, &settings);
    let plan = plan::plan(&cl, &inputs, &facts, &work, &index_dir);
    // KDTHIN_SAVE_DIR: a replayable copy of every link that has bitcode.
    let save = match &plan {
        Plan::Passthrough(Passthrough::NoBitcode) => SaveDir::none(),
        _ => SaveDir::new(&settings.save, &output, &real_ld),
    };
    save.inputs(&argv, &cl, &inputs, &facts);
    match plan {
        Plan::Passthrough(Passthrough::NoBitcode) => exec_real(&real_ld, &argv),
        Plan::Passthrough(why @ Passthrough::SharedObject) => {
            if settings.verbose {
                eprintln!("kdthin-ld: {}: linking in-process: {why}", output.display());
            }
            save.finish(&format!("linked in-process: {why}"));
            exec_real(&real_ld, &argv)
        }
        Plan::Passthrough(why) => {
            eprintln!("kdthin-ld: {}: linking in-process: {why}", output.display());
            LinkRecorder::passthrough(&output, &real_ld, &why.to_string(), reporting);
            save.finish(&format!("linked in-process: {why}"));
            exec_real(&real_ld, &argv)
        }
        Plan::Distribute(dist) => {
            for w in &settings.warnings {
                eprintln!("kdthin-ld: warning: {w}");
            }
            // From here on files are created (the cache's probe, the work
            // directory): a signal must clean them up rather than kill us
            // between creating one and registering it.
            exec::signals::install();
            let cwd = env.cwd.as_deref().context("cannot read the current directory")?;
            // Broken TLS settings for remote execution stop the link before
            // any work (remote::preflight), rather than letting every link
            // fall back to local with a warning. Links without bitcode
            // never read them: passthrough stays a plain exec.
            crate::remote::preflight(&env).map_err(|e| anyhow!(e))?;
            // Each bitcode object's own compile flags. Any object without
            // usable ones means the whole link stays in-process: a backend
            // with guessed flags could silently differ.
            let parent = kbuild::ParentRecipe::new(&env.parent, &argv);
            let compiles = match recover_compiles(&dist, &output, &parent, settings.verbose) {
                Ok(c) => c,
                Err(why) => {
                    eprintln!("kdthin-ld: {}: linking in-process: {why}", output.display());
                    LinkRecorder::passthrough(&output, &real_ld, &why, reporting);
                    save.finish(&format!("linked in-process: {why}"));
                    return exec_real(&real_ld, &argv);
                }
            };
            let rec = LinkRecorder::new(&output, &real_ld, reporting);
            // One cache per link: the memo key and the backend keys share
            // its file hashes.
            let cache = Cache::open(&settings.cache).map(Arc::new);
            let memo = match &cache {
                Some(_) if save.is_active() || settings.save_temps => Err("the link is being saved".to_string()),
                Some(c) => Memo::prepare(c, &settings, cwd, &real_ld, &cl, &inputs, &facts, &dist, &compiles),
                None => Err("the cache is off".to_string()),
            };
            let memo = memo
                .map_err(|why| {
                    if settings.verbose {
                        eprintln!("kdthin-ld: {}: whole-link cache not used: {why}", output.display());
                    }
                })
                .ok();
            let link = Link {
                cwd,
                real_ld: &real_ld,
                argv: &argv,
                cl: &cl,
                dist: &dist,
                compiles: std::cell::RefCell::new(compiles),
                output: &output,
                settings: &settings,
                rec: &rec,
                save: &save,
                cache,
                memo,
            };
            distribute(&link)
        }
    }
}

/// Replace this process with the real linker, argv byte for byte.
fn exec_real(real_ld: &Path, argv: &[OsString]) -> Result<i32> {
    // exec keeps the blocked signal mask; a fallback after a distributed
    // attempt must not leave ld.lld deaf to Ctrl-C.
    exec::signals::unblock_for_exec();
    let err = Command::new(real_ld).args(argv).exec();
    Err(anyhow!("cannot run {}: {err}", real_ld.display()))
}

/// Classify every input. None when something cannot be read: ld.lld will
/// report it in its own words.
fn gather_facts(inputs: &[crate::args::InputRef]) -> Option<plan::Facts> {
    let mut facts = plan::Facts::new();
    for i in inputs.iter().filter(|i| !i.is_script) {
        if facts.contains_key(&i.path) {
            continue;
        }
        let f = match input::classify_file(&i.path).ok()? {
            FileKind::Archive { .. } => FileFacts::Archive(input::read_archive(&i.path).ok()?),
            k => FileFacts::Plain(k),
        };
        facts.insert(i.path.clone(), f);
    }
    Some(facts)
}

/// `<dir of output>/.tmp_kdthin.<name>.<unique>`: on the output's file
/// system (renames stay cheap) and matched by `make clean`'s `.tmp_*`
/// pattern. `unique` is [`private_dir::unique_suffix`]: see there why.
pub fn work_dir_for(output: &Path, unique: &str) -> PathBuf {
    let name = output.file_name().unwrap_or(OsStr::new("a.out")).to_string_lossy();
    let dir = output.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    dir.join(format!(".tmp_kdthin.{name}.{unique}"))
}

/// Where the thin-link's index files go: `KDTHIN_TMPDIR`, else a tmpfs
/// (`$XDG_RUNTIME_DIR`, `/dev/shm`), else the work directory. Thousands of
/// small files that live for one link cost far less on tmpfs (0.12 s
/// instead of 0.33 s for a tinyconfig thin-link on ext4). Named
/// `kdthin.<name>.<unique>` after the work directory.
pub fn index_dir_for(work: &Path, settings: &Settings) -> PathBuf {
    let name = work.file_name().unwrap_or(OsStr::new(".tmp_kdthin")).to_string_lossy();
    let name = format!("kdthin{}", name.trim_start_matches(".tmp_kdthin"));
    if let Some(dir) = &settings.tmpdir {
        return dir.join(name);
    }
    let candidates = [settings.runtime_dir.clone(), Some(PathBuf::from("/dev/shm"))];
    candidates
        .into_iter()
        .flatten()
        .find(|d| is_writable_tmpfs(d))
        .map(|d| d.join(&name))
        .unwrap_or_else(|| work.join("idx"))
}

/// Creates the index directory, private and locked for this link (see
/// [`private_dir`]). In a shared directory, first removes what killed
/// links left there.
fn create_index_dir(dir: &Path, work: &Path, settings: &Settings) -> Result<private_dir::InUse> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    if !dir.starts_with(work) {
        if settings.tmpdir.is_some() {
            // The user named this directory: it may be made.
            std::fs::create_dir_all(parent)
                .with_context(|| format!("KDTHIN_TMPDIR={}: cannot create", parent.display()))?;
        }
        private_dir::remove_stale(parent, private_dir::INDEX_PREFIX);
    }
    exec::signals::create_registered(dir, private_dir::create_locked)
        .with_context(|| format!("{}: cannot create index directory", dir.display()))
}

/// Creates the work directory beside the output, private and locked for
/// this link, after removing the ones killed links of the same output
/// left there (make clean would, but a relink should not wait for it).
fn create_work_dir(work: &Path) -> std::io::Result<private_dir::InUse> {
    if let (Some(parent), Some(name)) = (work.parent(), work.file_name()) {
        let name = name.to_string_lossy();
        let prefix = &name[..name.rfind('.').map_or(name.len(), |i| i + 1)];
        let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
        private_dir::remove_stale(parent, prefix);
    }
    private_dir::create_locked(work)
}

fn is_writable_tmpfs(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else { return false };
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and a zeroed out-struct.
    let ok = unsafe { libc::statfs(c.as_ptr(), &mut st) } == 0 && st.f_type as i64 == TMPFS_MAGIC;
    // SAFETY: as above; access() only reads the path.
    ok && unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } == 0
}

/// The object whose `.cmd` describes a module's compile.
fn cmd_object(m: &plan::Module) -> PathBuf {
    match &m.origin {
        Origin::Object => m.path.clone(),
        // A kbuild-like tree keeps the archived object beside the archive.
        Origin::Extracted { archive, member, .. } => archive.with_file_name(member),
    }
}

/// Each module's compile: from its `.cmd` file, or, when that is missing or
/// stale, from the recipe running this link (a single-object module's).
/// With `verbose`, says where the flags came from.
fn recover_compiles(
    dist: &DistPlan,
    output: &Path,
    parent: &kbuild::ParentRecipe,
    verbose: bool,
) -> Result<Vec<kbuild::compile::CompileCommand>, String> {
    let mut from_cmd_files = 0;
    let compiles = dist
        .modules
        .iter()
        .map(|m| {
            let obj = cmd_object(m);
            let (cc, source) = kbuild::recover(&obj, parent).map_err(|e| format!("{}: {e}", obj.display()))?;
            match source {
                kbuild::Source::CmdFile(_) => from_cmd_files += 1,
                kbuild::Source::Recipe { .. } if verbose => {
                    eprintln!("kdthin-ld: {}: {}: compile flags from {source}", output.display(), obj.display());
                }
                kbuild::Source::Recipe { .. } => {}
            }
            Ok(cc)
        })
        .collect::<Result<Vec<_>, String>>()?;
    if verbose {
        eprintln!(
            "kdthin-ld: {}: compile flags: {from_cmd_files} from .cmd files, {} from the recipe running this link",
            output.display(),
            compiles.len() - from_cmd_files
        );
    }
    Ok(compiles)
}

/// Run a command, echoing it first when verbose. With `capture`, its
/// stderr also goes there (still shown as it comes).
fn run_tool(
    settings: &Settings,
    argv0: &Path,
    args: &[OsString],
    capture: Option<&mut Vec<u8>>,
) -> Result<std::process::ExitStatus> {
    use std::io::Read;
    if settings.verbose {
        let mut all = vec![argv0.as_os_str().to_os_string()];
        all.extend_from_slice(args);
        println!("  {}", shell_quote(&all));
    }
    let mut cmd = Command::new(argv0);
    cmd.args(args);
    if capture.is_some() {
        cmd.stderr(std::process::Stdio::piped());
    }
    // Registered, so a SIGTERM from outside stops it before the work
    // directory it reads is removed; and never started once one arrived.
    let spawned = exec::signals::spawn(&mut cmd);
    if spawned.is_err() {
        exec::signals::park_if_cancelled();
    }
    let mut child = spawned.with_context(|| format!("cannot run {}", argv0.display()))?;
    let tee = child.stderr.take().map(|mut pipe| {
        std::thread::spawn(move || {
            let (mut all, mut buf) = (Vec::new(), [0u8; 8192]);
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let _ = std::io::stderr().write_all(&buf[..n]);
                all.extend_from_slice(&buf[..n]);
            }
            all
        })
    });
    let st = exec::signals::wait_child(&mut child).with_context(|| format!("waiting for {}", argv0.display()));
    if let (Some(t), Some(out)) = (tee, capture) {
        out.extend(t.join().unwrap_or_default());
    }
    exec::signals::park_if_cancelled();
    st
}

/// Arguments too long for one exec go through a response file.
fn maybe_rsp(work: &Path, name: &str, args: Vec<OsString>) -> Result<Vec<OsString>> {
    let total: usize = args.iter().map(|a| a.len() + 1).sum();
    if total < 100_000 {
        return Ok(args);
    }
    // An argument a response file cannot carry (empty, NUL, not UTF-8):
    // pass them directly and let the kernel judge the length.
    let Ok(text) = crate::args::rsp::try_write_rsp(&args) else { return Ok(args) };
    let p = work.join(name);
    std::fs::write(&p, text).with_context(|| format!("{}: cannot write", p.display()))?;
    let mut at = OsString::from("@");
    at.push(&p);
    Ok(vec![at])
}

fn exit_code(st: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(1))
}

/// Everything one distributed link needs, decided before it starts.
struct Link<'a> {
    /// The working directory: where backends run.
    cwd: &'a Path,
    real_ld: &'a Path,
    /// The original argv, for a fallback to in-process.
    argv: &'a [OsString],
    cl: &'a CommandLine,
    dist: &'a DistPlan,
    /// One per module, in `dist.modules` order; taken (moved into the
    /// backend command lines) when the backends are planned.
    compiles: std::cell::RefCell<Vec<kbuild::compile::CompileCommand>>,
    output: &'a Path,
    settings: &'a Settings,
    rec: &'a LinkRecorder,
    save: &'a SaveDir,
    cache: Option<Arc<Cache>>,
    /// The whole link's entry in the cache, when it may have one.
    memo: Option<Memo>,
}

fn distribute(link: &Link) -> Result<i32> {
    let Link { real_ld, argv, dist, output, settings, rec, save, .. } = *link;
    let t0 = Instant::now();
    exec::signals::install();
    if let Some(meta) = link.memo.as_ref().and_then(|m| m.restore(output)) {
        let _ = std::io::stderr().write_all(&meta.stderr);
        if !settings.silent {
            println!("{} (whole link cached)", lto_line(output, meta.used, meta.used, 0, 0, t0));
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
            eprintln!("kdthin-ld: {}: linking in-process: {why}", output.display());
            rec.finish_in_process(&why);
            save.finish(&format!("linked in-process: {why}"));
            return exec_real(real_ld, argv);
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
            println!("{}", lto_line(output, r.modules, r.cached, r.compiled, r.remote, t0));
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
        eprintln!("kdthin-ld: {}: linking in-process: {why}", output.display());
        rec.finish_in_process(&why);
        save.finish(&format!("linked in-process: {why}"));
        return exec_real(real_ld, argv);
    }
    rec.finish(r.code);
    save.finish(&format!("exit code {}", r.code));
    Ok(r.code)
}

/// kbuild-style summary of a distributed link, e.g.
/// `  LTO     vmlinux.o  597 modules, 586 cached, 11 compiled, 1.1s`
/// (tests and bench/run parse it).
fn lto_line(output: &Path, modules: usize, cached: usize, compiled: usize, remote: usize, t0: Instant) -> String {
    let remote = if remote > 0 { format!(" ({remote} remote)") } else { String::new() };
    format!(
        "  {:<7} {}  {modules} modules, {cached} cached, {compiled} compiled{remote}, {:.1}s",
        "LTO",
        output.display(),
        t0.elapsed().as_secs_f64()
    )
}

struct Outcome {
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
    fallback: Option<String>,
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

fn distribute_in(link: &Link) -> Result<Outcome> {
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
    let subst: HashMap<usize, &FinalSubst> = dist.final_subst.iter().map(|(i, s)| (*i, s)).collect();
    let mut final_args = cl.render_flat(&mut |i, arg| {
        if matches!(arg.kind, ArgKind::Opt { id: OptId::Output, .. }) {
            return Some(vec!["-o".into(), staged.clone().into_os_string()]);
        }
        subst.get(&i).map(|s| match s {
            FinalSubst::Module(n) => vec![own.get(n).unwrap_or(&dist.modules[*n].native).clone().into_os_string()],
            FinalSubst::Archive(a) => vec![dist.new_archives[*a].path.clone().into_os_string()],
        })
    });
    if !cl.has(OptId::Output) {
        final_args.extend(["-o".into(), staged.clone().into_os_string()]);
    }
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
fn index_dir_removed(dist: &DistPlan) -> anyhow::Error {
    anyhow!(
        "the index directory {} was removed while the link ran; nothing was installed or cached from it",
        dist.index_dir.display()
    )
}

/// Module `n`'s native in this link's work directory, named after the
/// installed one so that lld's messages stay readable.
fn own_native(native_dir: &Path, n: usize, m: &plan::Module) -> PathBuf {
    let name = m.native.file_name().unwrap_or(OsStr::new("native.o")).to_string_lossy();
    native_dir.join(format!("{n}-{name}"))
}

/// ld.lld leaves regular (full) LTO modules out of the list and gives them
/// an empty index; unused lazy members get a non-empty "skip" index. Full
/// LTO cannot be split into per-module backends: that link runs in-process.
fn not_thin_lto(dist: &DistPlan, used: &[usize]) -> Option<String> {
    let used: HashSet<usize> = used.iter().copied().collect();
    dist.modules.iter().enumerate().filter(|(i, _)| !used.contains(i)).find_map(|(_, m)| {
        let empty = std::fs::metadata(&m.index).map(|md| md.len() == 0).unwrap_or(true);
        empty.then(|| format!("{} is not ThinLTO bitcode (full LTO?)", m.path.display()))
    })
}

/// Modules ld.lld actually used, from its list file. Lazy members it did
/// not extract get a "skip" index and no list entry: no backend needed.
fn used_modules(dist: &DistPlan) -> Result<Vec<usize>> {
    let text = std::fs::read_to_string(&dist.list_file)
        .with_context(|| format!("{}: thin-link wrote no module list", dist.list_file.display()))?;
    let by_path: HashMap<&OsStr, usize> =
        dist.modules.iter().enumerate().map(|(i, m)| (m.path.as_os_str(), i)).collect();
    let prefix = dist.index_prefix.to_string_lossy();
    let mut used = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let rel = line
            .strip_prefix(prefix.as_ref())
            .ok_or_else(|| anyhow!("{}: unexpected entry {line:?}", dist.list_file.display()))?;
        let n = *by_path.get(OsStr::new(rel)).ok_or_else(|| {
            anyhow!("{}: thin-link used a module we did not give it: {rel}", dist.list_file.display())
        })?;
        used.push(n);
    }
    Ok(used)
}

fn read_imports(path: &Path) -> Result<Vec<PathBuf>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("{}: cannot read imports list", path.display()))?;
    Ok(text.lines().filter(|l| !l.is_empty()).map(PathBuf::from).collect())
}

fn extract_members(dist: &DistPlan) -> Result<()> {
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

/// Puts a copy of `from` (kept: the link's own) at `to` so that `to` is
/// always either the old file or the complete new one: a second hard link
/// to `from`, made in the work directory and renamed over `to` (one file
/// system, as a build tree is), so a link killed meanwhile leaves nothing
/// beside `to`. Across file systems: a copy beside `to`, renamed.
fn install_native(from: &Path, to: &Path) -> Result<()> {
    let mut staged = from.as_os_str().to_os_string();
    staged.push(".install");
    let staged = PathBuf::from(staged);
    let _ = std::fs::remove_file(&staged);
    let linked = std::fs::hard_link(from, &staged).and_then(|()| std::fs::rename(&staged, to));
    match linked {
        Ok(()) => return Ok(()),
        // Only another file system calls for a copy: anything else (the
        // work directory gone under a signal's cleanup) is an error.
        Err(e) if e.raw_os_error() != Some(libc::EXDEV) => {
            let _ = std::fs::remove_file(&staged);
            return Err(e).with_context(|| format!("{}: cannot write", to.display()));
        }
        Err(_) => {
            let _ = std::fs::remove_file(&staged);
        }
    }
    let mut tmp = to.as_os_str().to_os_string();
    tmp.push(format!(".tmp_kdthin.{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    // Registered as it is created: a signal's cleanup removes it.
    let copied = exec::signals::create_registered(&tmp, |t| std::fs::copy(from, t));
    let result = copied.and_then(|_| std::fs::rename(&tmp, to));
    exec::signals::unregister_cleanup(&tmp);
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("{}: cannot write", to.display()))
}

fn absolute(cwd: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        cwd.join(p)
    }
}

/// A thin archive of native objects with a symbol table, in the work dir.
/// `own` holds the natives of the modules the thin-link used.
fn write_thin_archive(cwd: &Path, path: &Path, members: &[NewMember], own: &HashMap<usize, PathBuf>) -> Result<()> {
    let mut list = Vec::with_capacity(members.len());
    for m in members {
        let p = match m {
            NewMember::Native(p) => p,
            NewMember::Module(n) => match own.get(n) {
                Some(p) => p,
                // Not extracted by the thin-link: the final link would not
                // extract its (empty) native object either.
                None => continue,
            },
        };
        let name = absolute(cwd, p).to_string_lossy().into_owned();
        list.push(thin_archive::Member::from_file(p, name).with_context(|| format!("{}: cannot read", p.display()))?);
    }
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    let f = std::fs::File::create(path).with_context(|| format!("{}: cannot create", path.display()))?;
    let mut w = std::io::BufWriter::new(f);
    thin_archive::write(&mut w, &list)
        .and_then(|()| w.flush())
        .with_context(|| format!("{}: cannot write archive", path.display()))?;
    Ok(())
}

/// Remove everything under `dir` except `keep` (and the directories that
/// lead to them).
fn prune_except(dir: &Path, keep: &HashSet<PathBuf>) {
    fn walk(d: &Path, keep: &HashSet<PathBuf>) -> bool {
        let mut kept_any = false;
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                let p = e.path();
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    if walk(&p, keep) {
                        kept_any = true;
                    } else {
                        let _ = std::fs::remove_dir(&p);
                    }
                } else if keep.contains(&p) {
                    kept_any = true;
                } else {
                    let _ = std::fs::remove_file(&p);
                }
            }
        }
        kept_any
    }
    if !walk(dir, keep) {
        let _ = std::fs::remove_dir_all(dir);
    }
}
