//! The link driver: one `kdthin-ld` run, in stages.
//!
//! - here: read the environment ([`crate::env::Env`]) and the command
//!   line, decide (pass through, distribute), and the one way out to
//!   ld.lld in-process ([`fall_back`]);
//! - [`distribute`]: thin-link, backends, final link, clean-up;
//! - [`whole_link`]: the whole-link cache (a link replayed from the cache);
//! - [`backends`]: where backend jobs run (local, remote, cached);
//! - [`workdirs`]: the work and index directories;
//! - [`install`]: natives beside their bitcode, thin archives of natives;
//! - [`tools`]: running ld.lld itself;
//! - [`dtlto`]: `kdthin distribute`, ld.lld's DTLTO distributor.
//!
//! Pure decisions are in [`crate::plan`]; `main.rs` maps the `Result` to
//! an exit code.

pub mod backends;
mod distribute;
pub mod dtlto;
mod install;
mod tools;
pub mod whole_link;
pub mod workdirs;

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};

use crate::args::{CommandLine, OptId};
use crate::cache::Cache;
use crate::env::Env;
use crate::exec::{self};
use crate::input::{self, FileKind};
use crate::kbuild;
use crate::plan::Fallback;
use crate::plan::{self, DistPlan, FileFacts, Origin, Passthrough, Plan};
use crate::private_dir;
use crate::report::{savedir::SaveDir, LinkRecorder, ReportSettings};
use crate::settings::Settings;
use crate::toolchain::{self, find_real_ld, LookupEnv};

use whole_link::Memo;
use {distribute::*, workdirs::*};

pub fn main() -> i32 {
    match run(Env::capture()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kdthin-ld: error: {e:#}");
            1
        }
    }
}

pub(super) fn run(mut env: Env) -> Result<i32> {
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
    let in_process = InProcess { output: &output, real_ld: &real_ld, argv: &argv, save: &save, reporting };
    match plan {
        Plan::Passthrough(Passthrough::NoBitcode) => exec_real(&real_ld, &argv),
        Plan::Passthrough(why @ Passthrough::SharedObject) => {
            if settings.verbose {
                eprintln!("kdthin-ld: {}: linking in-process: {why}", output.display());
            }
            save.finish(&format!("linked in-process: {why}"));
            exec_real(&real_ld, &argv)
        }
        Plan::Passthrough(Passthrough::Unsupported(why)) => in_process.fall_back(why, None),
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
                Err(why) => return in_process.fall_back(Fallback::CompileFlags(why), None),
            };
            let rec = LinkRecorder::new(&output, &real_ld, in_process.reporting.clone());
            // One cache per link: the memo key and the backend keys share
            // its file hashes.
            let cache = Cache::open(&settings.cache).map(Arc::new);
            let memo = match &cache {
                Some(_) if save.is_active() || settings.save_temps => Err("the link is being saved".to_string()),
                Some(c) => {
                    Memo::prepare(c, &settings.link_cache, cwd, &real_ld, &cl, &inputs, &facts, &dist, &compiles)
                }
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
                cl: &cl,
                dist: &dist,
                compiles: std::cell::RefCell::new(compiles),
                output: &output,
                settings: &settings,
                rec: &rec,
                save: &save,
                in_process: &in_process,
                cache,
                memo,
            };
            distribute(&link)
        }
    }
}

/// The way out to ld.lld in-process for a link that has bitcode: the one
/// place that says why (one line, always: a silent fallback would hide a
/// slower build), records it in the report and the reproducer, and
/// becomes ld.lld.
pub(super) struct InProcess<'a> {
    pub output: &'a Path,
    pub real_ld: &'a Path,
    pub argv: &'a [OsString],
    pub save: &'a SaveDir,
    pub reporting: ReportSettings,
}

impl InProcess<'_> {
    /// `rec`: the link's recorder once it has one; before that, the
    /// report gets a line of its own.
    pub(super) fn fall_back(&self, why: Fallback, rec: Option<&LinkRecorder>) -> Result<i32> {
        eprintln!("kdthin-ld: {}: linking in-process: {why}", self.output.display());
        match rec {
            Some(r) => r.finish_in_process(&why),
            None => LinkRecorder::passthrough(self.output, self.real_ld, &why, self.reporting.clone()),
        }
        self.save.finish(&format!("linked in-process: {why}"));
        exec_real(self.real_ld, self.argv)
    }
}

/// Replace this process with the real linker, argv byte for byte.
pub(super) fn exec_real(real_ld: &Path, argv: &[OsString]) -> Result<i32> {
    // exec keeps the blocked signal mask; a fallback after a distributed
    // attempt must not leave ld.lld deaf to Ctrl-C.
    exec::signals::unblock_for_exec();
    let err = Command::new(real_ld).args(argv).exec();
    Err(anyhow!("cannot run {}: {err}", real_ld.display()))
}

/// Classify every input. None when something cannot be read: ld.lld will
/// report it in its own words.
pub(super) fn gather_facts(inputs: &[crate::args::InputRef]) -> Option<plan::Facts> {
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

/// The object whose `.cmd` describes a module's compile.
pub(super) fn cmd_object(m: &plan::Module) -> PathBuf {
    match &m.origin {
        Origin::Object => m.path.clone(),
        // A kbuild-like tree keeps the archived object beside the archive.
        Origin::Extracted { archive, member, .. } => archive.with_file_name(member),
    }
}

/// Each module's compile: from its `.cmd` file, or, when that is missing or
/// stale, from the recipe running this link (a single-object module's).
/// With `verbose`, says where the flags came from.
pub(super) fn recover_compiles(
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
