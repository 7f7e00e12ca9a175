//! `kdthin distribute` as ld.lld's own DTLTO distributor
//! (`--thinlto-distributor`): same symbols and program output as
//! in-process ThinLTO, with the objects' own `.cmd` flags added.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::support::*;

fn kdthin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kdthin"))
}

/// The fixture's link of `target` with ld.lld in distributor mode, its
/// output renamed to `<target>.dt`.
fn distributed_argv(t: &Tree, target: &str) -> Vec<OsString> {
    let mut argv = t.link_argv(target, Linker::Lld);
    let o = argv.iter().position(|a| a == "-o").expect("link has -o");
    argv[o + 1] = format!("{target}.dt").into();
    argv.push(format!("--thinlto-distributor={}", kdthin().display()).into());
    argv.push("--thinlto-distributor-arg=distribute".into());
    argv.push(format!("--thinlto-remote-compiler={}", which(CLANG).display()).into());
    argv
}

fn which(prog: &str) -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join(prog))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{prog} not on PATH"))
}

#[test]
fn lld_distributor_mode_through_kdthin() {
    require_toolchain!();
    let t = Tree::build(CmdFormat::Savedcmd, Linker::Lld);
    for target in ["vmlinux.o", "prog"] {
        t.run_linker(&distributed_argv(&t, target), &[]).ok();
    }
    assert_same_lines(
        "defined globals of vmlinux.o (in-process vs distributor)",
        &defined_globals(&t.path("vmlinux.o")),
        &defined_globals(&t.path("vmlinux.o.dt")),
    );
    assert_eq!(t.run_program("prog"), t.run_program("prog.dt"));
}

#[test]
fn a_failing_job_fails_the_link_and_shows_its_command() {
    require_toolchain!();
    let t = Tree::build(CmdFormat::Savedcmd, Linker::Lld);
    // Only a flag recovered from this object's .cmd can break its job.
    t.break_backend_of("kernel/sched.o");
    let ran = t.run_linker(&distributed_argv(&t, "vmlinux.o"), &[]).failed();
    ran.stderr_contains("kernel/sched.o").stderr_contains("-mcmodel=bogus");
    assert!(!t.exists("vmlinux.o.dt"), "no output from a failed link");
}
