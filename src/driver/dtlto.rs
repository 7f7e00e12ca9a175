//! Serving as ld.lld's DTLTO distributor (LLVM >= 21):
//!
//! ```text
//! ld.lld ... --thinlto-distributor=/usr/bin/kdthin \
//!            --thinlto-distributor-arg=distribute \
//!            --thinlto-remote-compiler=/usr/bin/clang-22
//! ```
//!
//! ld.lld writes a JSON job list (llvm/docs/DTLTO.rst) and runs
//! `kdthin distribute JOBS.json`. Each job runs through the same executors
//! as kdthin-ld's own backends (local or REAPI, through the backend cache).
//! Where the module is a kbuild object with a usable `.cmd` file, its own
//! compile flags go in first: ld.lld's distributed mode knows none of them
//! and fails on the kernel without e.g. `-fno-pic -mcmodel=kernel`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;

use super::backends::Backends;
use crate::cache::{Cache, CacheSettings};
use crate::env::Env;
use crate::exec::verify::{machine_of_triple, NativeCheck};
use crate::exec::{shell_quote, Command, Job, JobError};
use crate::kbuild::compile::CompileCommand;
use crate::plan::backend::BackendCommand;
use crate::settings::BackendSettings;

#[derive(Debug, Deserialize)]
pub struct JobList {
    pub common: Common,
    pub jobs: Vec<DtltoJob>,
}

#[derive(Debug, Deserialize)]
pub struct Common {
    pub args: Vec<String>,
    #[serde(default)]
    pub inputs: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct DtltoJob {
    pub args: Vec<String>,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
}

pub fn parse(json: &str) -> Result<JobList> {
    let list: JobList = serde_json::from_str(json).context("not a DTLTO job list")?;
    if list.common.args.is_empty() {
        bail!("DTLTO job list: common.args is empty (no compiler)");
    }
    Ok(list)
}

/// The jobs to run. Pure: `own_flags` gives an object's recovered compile
/// command, if any.
///
/// ld.lld's common arguments (target, -O, sections) become the link's
/// flags: after the object's, so they win where both speak. A job's own
/// arguments are its module, `-fthinlto-index=INDEX` and `-o OUTPUT`, read
/// into their fields; its `inputs` are the module, the index and the
/// modules it imports from. Anything else is an error rather than an
/// argument silently dropped or guessed at.
pub fn plan(list: &JobList, own_flags: &dyn Fn(&Path) -> Option<CompileCommand>) -> Result<Vec<Job>> {
    let (compiler, common) = list.common.args.split_first().expect("checked by parse");
    // ld.lld names the target in the common arguments (`--target=TRIPLE`).
    let machine = common.iter().find_map(|a| a.strip_prefix("--target=")).and_then(machine_of_triple);
    let check = NativeCheck { machine };
    // `-c` is part of every rendered backend already.
    let link_flags: Arc<[OsString]> = common.iter().filter(|a| *a != "-c").map(OsString::from).collect();
    list.jobs
        .iter()
        .enumerate()
        .map(|(id, j)| {
            let module = j.inputs.first().ok_or_else(|| anyhow!("DTLTO job {id} has no inputs"))?;
            let (mut index, mut output) = (None, None);
            let mut args = j.args.iter();
            while let Some(a) = args.next() {
                if a == module {
                    continue;
                } else if let Some(i) = a.strip_prefix("-fthinlto-index=") {
                    index = Some(PathBuf::from(i));
                } else if a == "-o" {
                    output =
                        Some(PathBuf::from(args.next().ok_or_else(|| anyhow!("DTLTO job {id}: -o without a value"))?));
                } else {
                    bail!("DTLTO job {id} ({module}): unexpected argument {a:?}");
                }
            }
            let index = index.ok_or_else(|| anyhow!("DTLTO job {id} ({module}): no -fthinlto-index="))?;
            let output = output.ok_or_else(|| anyhow!("DTLTO job {id} ({module}): no -o"))?;
            if !j.outputs.iter().any(|o| Path::new(o) == output) {
                bail!("DTLTO job {id} ({module}): -o {} is not among its outputs", output.display());
            }
            let imports = j.inputs[1..].iter().map(PathBuf::from).filter(|p| *p != index).collect();
            let object_flags = own_flags(Path::new(module)).map(|cc| cc.flags).unwrap_or_default();
            let weight = std::fs::metadata(module).map(|m| m.len()).unwrap_or(0);
            let command = BackendCommand {
                compiler: compiler.into(),
                object_flags,
                link_flags: link_flags.clone(),
                index,
                bitcode: module.into(),
                imports,
                output,
            };
            Ok(Job { weight, check: Some(check), command: Command::Backend(command), ..Job::plain(id, module, vec![]) })
        })
        .collect()
}

/// `kdthin distribute JOBS.json`: run every job; 0 when all succeeded.
pub fn run(env: &Env, json_path: &Path) -> Result<i32> {
    let text = std::fs::read_to_string(json_path).with_context(|| format!("{}: cannot read", json_path.display()))?;
    let list = parse(&text).with_context(|| json_path.display().to_string())?;
    let own = |obj: &Path| crate::kbuild::compile::lookup(obj).ok();
    let jobs = plan(&list, &own)?;
    crate::exec::signals::install();
    let cwd = env.cwd.as_deref().context("cannot read the current directory")?;
    let settings = BackendSettings::from_env(env);
    let cache = Cache::open(&CacheSettings::from_env(env)).map(Arc::new);
    let backends = Backends::with_cache(&settings, cwd, cache);
    let summary = backends.run(&jobs, &|_| {});
    crate::exec::signals::park_if_cancelled();
    let mut failed = false;
    for (id, err) in &summary.failed {
        let job = &jobs[*id];
        match err {
            JobError::Cancelled => continue,
            JobError::Failed { status, stderr } => {
                let _ = std::io::Write::write_all(&mut std::io::stderr(), stderr);
                eprintln!("kdthin: error: ThinLTO backend for {} failed ({status}); command:", job.label);
            }
            JobError::BadOutput { why, stderr } => {
                let _ = std::io::Write::write_all(&mut std::io::stderr(), stderr);
                eprintln!("kdthin: error: ThinLTO backend for {} exited 0 but failed: {why}; command:", job.label);
            }
            JobError::Spawn(e) => eprintln!("kdthin: error: ThinLTO backend for {}: {e}; command:", job.label),
        }
        eprintln!("  {}", shell_quote(&job.command.argv()));
        failed = true;
    }
    for ok in &summary.succeeded {
        let _ = std::io::Write::write_all(&mut std::io::stderr(), &ok.stderr);
    }
    Ok(if failed || !summary.not_started.is_empty() { 1 } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: &str = r#"{
      "common": { "linker_output": "dt.o",
        "args": ["/usr/bin/clang-22", "-c", "--target=x86_64-pc-linux-gnu", "-O2", "-ffunction-sections"],
        "inputs": [] },
      "jobs": [
        { "args": ["a.o", "-fthinlto-index=a.1.native.o.thinlto.bc", "-o", "a.1.native.o"],
          "inputs": ["a.o", "a.1.native.o.thinlto.bc", "b.o"], "outputs": ["a.1.native.o"] },
        { "args": ["b.o", "-fthinlto-index=b.2.native.o.thinlto.bc", "-o", "b.2.native.o"],
          "inputs": ["b.o", "b.2.native.o.thinlto.bc"], "outputs": ["b.2.native.o"] }
      ] }"#;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn objects_with_a_cmd_file_get_their_own_flags_first() {
        let list = parse(JSON).unwrap();
        let own = |p: &Path| {
            (p == Path::new("a.o")).then(|| CompileCommand {
                compiler: "clang-22".into(),
                flags: os(&["-mcmodel=kernel", "-fno-pic", "-flto=thin"]),
                source: "a.c".into(),
                output: "a.o".into(),
            })
        };
        let jobs = plan(&list, &own).unwrap();
        let a = jobs[0].command.backend().unwrap();
        assert_eq!(a.object_flags, os(&["-mcmodel=kernel", "-fno-pic", "-flto=thin"]));
        assert_eq!(&*a.link_flags, os(&["--target=x86_64-pc-linux-gnu", "-O2", "-ffunction-sections"]));
        assert_eq!(
            (a.bitcode.as_path(), a.index.as_path(), a.output.as_path()),
            (Path::new("a.o"), Path::new("a.1.native.o.thinlto.bc"), Path::new("a.1.native.o"))
        );
        assert_eq!(a.imports, [PathBuf::from("b.o")]);
        assert_eq!(
            jobs[0].command.argv(),
            os(&[
                "/usr/bin/clang-22",
                "-mcmodel=kernel",
                "-fno-pic",
                "-flto=thin",
                "--target=x86_64-pc-linux-gnu",
                "-O2",
                "-ffunction-sections",
                "-Wno-unused-command-line-argument",
                "-x",
                "ir",
                "-fno-lto",
                "-fthinlto-index=a.1.native.o.thinlto.bc",
                "-c",
                "-o",
                "a.1.native.o",
                "a.o",
            ])
        );
        // No .cmd: ld.lld's own arguments only.
        let b = jobs[1].command.backend().unwrap();
        assert!(b.object_flags.is_empty() && b.imports.is_empty());
    }

    #[test]
    fn malformed_lists_are_errors() {
        assert!(parse("{}").is_err());
        assert!(parse(r#"{"common":{"args":[]},"jobs":[]}"#).is_err());
        let list = parse(r#"{"common":{"args":["cc"]},"jobs":[{"args":[],"inputs":[],"outputs":[]}]}"#).unwrap();
        assert!(plan(&list, &|_| None).is_err());
        // A job argument we do not know is not dropped silently.
        let odd = JSON.replace(r#""-o", "a.1.native.o"]"#, r#""-o", "a.1.native.o", "-fnew-option"]"#);
        let e = plan(&parse(&odd).unwrap(), &|_| None).unwrap_err();
        assert!(e.to_string().contains("-fnew-option"), "{e}");
        let no_index = JSON.replace(r#""-fthinlto-index=a.1.native.o.thinlto.bc", "#, "");
        assert!(plan(&parse(&no_index).unwrap(), &|_| None).is_err());
    }
}
