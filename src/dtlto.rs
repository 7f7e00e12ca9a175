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

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;

use crate::backends::Backends;
use crate::exec::verify::{machine_of_triple, NativeCheck};
use crate::exec::{shell_quote, Job, JobError};
use crate::kbuild::compile::CompileCommand;

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
/// command, if any. Job inputs are [module, index, imports...] as ld.lld
/// lists them, which is also the layout the cache and REAPI expect.
pub fn plan(list: &JobList, own_flags: &dyn Fn(&Path) -> Option<CompileCommand>) -> Result<Vec<Job>> {
    let (compiler, common) = list.common.args.split_first().expect("checked by parse");
    // ld.lld names the target in the common arguments (`--target=TRIPLE`).
    let machine = common.iter().find_map(|a| a.strip_prefix("--target=")).and_then(machine_of_triple);
    let check = NativeCheck { machine };
    list.jobs
        .iter()
        .enumerate()
        .map(|(id, j)| {
            let module = j.inputs.first().ok_or_else(|| anyhow!("DTLTO job {id} has no inputs"))?;
            let mut argv: Vec<OsString> = vec![compiler.into()];
            if let Some(cc) = own_flags(Path::new(module)) {
                argv.extend(cc.flags);
            }
            // ld.lld's own settings (target, -O, sections) after the
            // object's, so they win where both speak; -fno-lto overrides
            // the object's -flto=thin; -x ir because the module is a .o.
            argv.extend(common.iter().map(OsString::from));
            argv.extend(["-Wno-unused-command-line-argument", "-fno-lto", "-x", "ir"].map(OsString::from));
            argv.extend(j.args.iter().map(OsString::from));
            let weight = std::fs::metadata(module).map(|m| m.len()).unwrap_or(0);
            Ok(Job {
                id,
                label: module.clone(),
                argv,
                inputs: j.inputs.iter().map(PathBuf::from).collect(),
                outputs: j.outputs.iter().map(PathBuf::from).collect(),
                weight,
                install: None,
                check: Some(check),
            })
        })
        .collect()
}

/// `kdthin distribute JOBS.json`: run every job; 0 when all succeeded.
pub fn run(json_path: &Path) -> Result<i32> {
    let text = std::fs::read_to_string(json_path).with_context(|| format!("{}: cannot read", json_path.display()))?;
    let list = parse(&text).with_context(|| json_path.display().to_string())?;
    let own = |obj: &Path| crate::kbuild::compile::lookup(obj).ok();
    let jobs = plan(&list, &own)?;
    crate::exec::signals::install();
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let backends = Backends::from_env(&cwd);
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
        eprintln!("  {}", shell_quote(&job.argv));
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
        assert_eq!(
            jobs[0].argv,
            os(&[
                "/usr/bin/clang-22",
                "-mcmodel=kernel",
                "-fno-pic",
                "-flto=thin",
                "-c",
                "--target=x86_64-pc-linux-gnu",
                "-O2",
                "-ffunction-sections",
                "-Wno-unused-command-line-argument",
                "-fno-lto",
                "-x",
                "ir",
                "a.o",
                "-fthinlto-index=a.1.native.o.thinlto.bc",
                "-o",
                "a.1.native.o",
            ])
        );
        assert_eq!(jobs[0].inputs, vec![PathBuf::from("a.o"), "a.1.native.o.thinlto.bc".into(), "b.o".into()]);
        assert_eq!(jobs[0].outputs, vec![PathBuf::from("a.1.native.o")]);
        // No .cmd: ld.lld's own arguments only.
        assert_eq!(jobs[1].argv[1], OsString::from("-c"));
    }

    #[test]
    fn malformed_lists_are_errors() {
        assert!(parse("{}").is_err());
        assert!(parse(r#"{"common":{"args":[]},"jobs":[]}"#).is_err());
        let list = parse(r#"{"common":{"args":["cc"]},"jobs":[{"args":[],"inputs":[],"outputs":[]}]}"#).unwrap();
        assert!(plan(&list, &|_| None).is_err());
    }
}
