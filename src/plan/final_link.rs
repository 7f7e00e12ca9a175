//! Pure pieces of the link after the thin-link: which modules ld.lld used
//! (from its list file), the final link's command line, and the summary
//! line a distributed link prints.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use super::{DistPlan, FinalSubst};
use crate::args::{ArgKind, CommandLine, OptId};

/// Modules ld.lld used, from the text of its list file (`list_file` names
/// it in errors). Lazy members it did not extract get a "skip" index and
/// no list entry: no backend needed.
pub fn used_modules(dist: &DistPlan, text: &str) -> Result<Vec<usize>, String> {
    let list = dist.list_file.display();
    let by_path: HashMap<&OsStr, usize> =
        dist.modules.iter().enumerate().map(|(i, m)| (m.path.as_os_str(), i)).collect();
    let prefix = dist.index_prefix.to_string_lossy();
    let mut used = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let rel = line.strip_prefix(prefix.as_ref()).ok_or_else(|| format!("{list}: unexpected entry {line:?}"))?;
        let n = *by_path
            .get(OsStr::new(rel))
            .ok_or_else(|| format!("{list}: thin-link used a module we did not give it: {rel}"))?;
        used.push(n);
    }
    Ok(used)
}

/// The original command with this link's natives substituted in place
/// (`own`: the natives in the work directory, by module), the archives of
/// bitcode replaced by thin archives of natives, and `-o` pointing at
/// `staged` (kdthin-ld renames it into place after a good link).
pub fn final_link_args(
    cl: &CommandLine,
    dist: &DistPlan,
    own: &HashMap<usize, PathBuf>,
    staged: &Path,
) -> Vec<OsString> {
    let subst: HashMap<usize, &FinalSubst> = dist.final_subst.iter().map(|(i, s)| (*i, s)).collect();
    let mut args = cl.render_flat(&mut |i, arg| {
        if matches!(arg.kind, ArgKind::Opt { id: OptId::Output, .. }) {
            return Some(vec!["-o".into(), staged.as_os_str().to_os_string()]);
        }
        subst.get(&i).map(|s| match s {
            FinalSubst::Module(n) => vec![own.get(n).unwrap_or(&dist.modules[*n].native).clone().into_os_string()],
            FinalSubst::Archive(a) => vec![dist.new_archives[*a].path.clone().into_os_string()],
        })
    });
    if !cl.has(OptId::Output) {
        args.extend(["-o".into(), staged.as_os_str().to_os_string()]);
    }
    args
}

/// kbuild-style summary of a distributed link, e.g.
/// `  LTO     vmlinux.o  597 modules, 586 cached, 11 compiled, 1.1s`
/// (tests and bench/run parse it).
pub fn lto_line(output: &Path, modules: usize, cached: usize, compiled: usize, remote: usize, secs: f64) -> String {
    let remote = if remote > 0 { format!(" ({remote} remote)") } else { String::new() };
    format!(
        "  {:<7} {}  {modules} modules, {cached} cached, {compiled} compiled{remote}, {secs:.1}s",
        "LTO",
        output.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests::{os, plan_for, BC};
    use crate::plan::Plan;

    fn dist(argv: &[&str], facts: Vec<(PathBuf, crate::plan::FileFacts)>) -> (CommandLine, DistPlan) {
        let cl = CommandLine::parse(&os(argv)).unwrap();
        match plan_for(argv, facts) {
            Plan::Distribute(d) => (cl, d),
            other => panic!("{other:?}"),
        }
    }

    fn plain(path: &str) -> (PathBuf, crate::plan::FileFacts) {
        (path.into(), crate::plan::FileFacts::Plain(BC))
    }

    #[test]
    fn final_link_reads_this_links_natives_and_writes_into_the_work_dir() {
        let (cl, d) = dist(&["-r", "-o", "out/m.o", "a.o", "b.o"], vec![plain("a.o"), plain("b.o")]);
        let own: HashMap<usize, PathBuf> = [(0, PathBuf::from("/w/native/0.o"))].into();
        let args = final_link_args(&cl, &d, &own, Path::new("/w/m.o"));
        let s: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        // b.o was not used by the thin-link: it keeps its shared native
        // name; a.o reads this link's own; -o goes into the work dir.
        assert_eq!(s, ["-r", "-o", "/w/m.o", "/w/native/0.o", &d.modules[1].native.to_string_lossy()]);
        // No -o on the command line: one is added.
        let (cl, d) = dist(&["-r", "a.o"], vec![plain("a.o")]);
        let args = final_link_args(&cl, &d, &HashMap::new(), Path::new("/w/a.out"));
        assert_eq!(args[args.len() - 2..], os(&["-o", "/w/a.out"]));
    }

    #[test]
    fn used_modules_come_from_the_list_file() {
        let (_, d) = dist(&["-r", "-o", "m.o", "a.o", "b.o"], vec![plain("a.o"), plain("b.o")]);
        let prefix = d.index_prefix.to_string_lossy().into_owned();
        assert_eq!(used_modules(&d, &format!("{prefix}b.o\n\n")).unwrap(), [1]);
        assert_eq!(used_modules(&d, "").unwrap(), Vec::<usize>::new());
        let e = used_modules(&d, "/elsewhere/a.o\n").unwrap_err();
        assert!(e.contains("unexpected entry"), "{e}");
        let e = used_modules(&d, &format!("{prefix}c.o\n")).unwrap_err();
        assert!(e.contains("did not give it: c.o"), "{e}");
    }

    #[test]
    fn the_lto_line() {
        assert_eq!(
            lto_line(Path::new("vmlinux.o"), 597, 586, 11, 0, 1.14),
            "  LTO     vmlinux.o  597 modules, 586 cached, 11 compiled, 1.1s"
        );
        assert!(lto_line(Path::new("m.o"), 3, 0, 3, 2, 0.0).ends_with("3 compiled (2 remote), 0.0s"));
    }
}
