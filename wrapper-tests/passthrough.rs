//! Links without bitcode, and the probes Kconfig runs: kdthin-ld must be
//! indistinguishable from ld.lld.

use crate::support::*;
use std::ffi::OsString;
use std::process::Command;

/// Run `args` with ld.lld and with kdthin-ld (outside any tree); both results.
fn both(args: &[&str], envs: &[(&str, Option<&str>)]) -> (Ran, Ran) {
    let go = |linker: Linker| {
        let mut cmd = Command::new(linker.program());
        clean_env(&mut cmd).args(args);
        for (k, v) in envs {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        run(&mut cmd)
    };
    (go(Linker::Lld), go(Linker::Kdthin))
}

#[track_caller]
fn assert_same_result(reference: &Ran, ours: &Ran) {
    let same = reference.status.code() == ours.status.code()
        && reference.stdout == ours.stdout
        && reference.stderr == ours.stderr;
    assert!(same, "kdthin-ld differs from ld.lld\nld.lld:\n{}\nkdthin-ld:\n{}", reference.report(), ours.report());
}

#[test]
fn version_is_ld_lld_s() {
    require_toolchain!();
    for args in [&["--version"][..], &["-v"], &["--version", "-m", "elf_x86_64"]] {
        let (reference, ours) = both(args, &[]);
        assert_same_result(&reference, &ours);
    }
}

#[test]
fn kdthin_ld_env_names_the_real_linker() {
    require_toolchain!();
    // A linker of its own that records each call: PATH's ld.lld gives the
    // same banner, so only the record shows which one ran.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (lld, log) = (dir.path().join("my-ld.lld"), dir.path().join("calls"));
    let real = run(Command::new("sh").args(["-c", "command -v ld.lld-22"])).ok().stdout.trim().to_string();
    let script = format!("#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nexec '{real}' \"$@\"\n", log.display());
    std::fs::write(&lld, script).unwrap();
    std::fs::set_permissions(&lld, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let (reference, ours) = both(&["--version"], &[("KDTHIN_LD", Some(lld.to_str().unwrap())), ("CC", None)]);
    assert_same_result(&reference, &ours);
    let calls = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(calls, "--version\n", "KDTHIN_LD={} was not the linker run\n{}", lld.display(), ours.report());
}

#[test]
fn ld_version_probe_sees_lld() {
    require_toolchain!();
    let t = Tree::new(CmdFormat::Savedcmd);
    let probe = |linker: Linker| {
        let mut cmd = Command::new("sh");
        clean_env(&mut cmd).current_dir(t.root()).arg("scripts/ld-version.sh").arg(linker.program());
        run(&mut cmd).ok().stdout
    };
    let reference = probe(Linker::Lld);
    assert!(reference.starts_with("LLD "), "{reference}");
    assert_eq!(probe(Linker::Kdthin), reference);
}

#[test]
fn native_only_links_are_byte_identical() {
    require_toolchain!();
    let t = Tree::build(CmdFormat::Savedcmd, Linker::Lld);
    let base = ["-m", "elf_x86_64", "-z", "noexecstack"];
    // Like kbuild's native links: a .S object alone, an ELF-only thin
    // archive, and the final vmlinux link, which sees only vmlinux.o.
    let cases: [(&str, &[&str]); 3] = [
        ("head.o", &["-r", "arch/x86/kernel/head_64.o"]),
        ("arch.o", &["-r", "--whole-archive", "arch/x86/kernel/built-in.a", "--no-whole-archive"]),
        ("vmlinux", &["-static", "-nostdlib", "-T", "prog.lds", "--whole-archive", "vmlinux.o", "--no-whole-archive"]),
    ];
    let before = t.snapshot();
    let mut written = Vec::new();
    for (out, args) in cases {
        let mut outputs = Vec::new();
        for linker in [Linker::Lld, Linker::Kdthin] {
            let output = format!("{out}.{linker:?}");
            let argv: Vec<OsString> = std::iter::once(linker.program())
                .chain(base.iter().chain(args).map(OsString::from))
                .chain([OsString::from("-o"), OsString::from(&output)])
                .collect();
            t.run_linker(&argv, &[]).ok();
            outputs.push(t.read(&output));
            written.push(std::path::PathBuf::from(output));
        }
        assert!(outputs[0] == outputs[1], "{out}: kdthin-ld's output differs from ld.lld's (both kept in the tree)");
    }
    t.snapshot().assert_only_changes(&before, |p| written.iter().any(|w| w == p));
    assert_eq!(t.run_program("vmlinux.Kdthin"), PROG_OUTPUT);
}

#[test]
fn errors_of_native_links_are_ld_lld_s() {
    require_toolchain!();
    let t = Tree::build(CmdFormat::Savedcmd, Linker::Lld);
    // An undefined symbol (nothing defines start_kernel) and an unknown option.
    let cases: [&[&str]; 2] = [
        &["-m", "elf_x86_64", "-static", "-o", "bad", "arch/x86/kernel/head_64.o"],
        &["--kdthin-test-no-such-option", "-o", "bad", "arch/x86/kernel/head_64.o"],
    ];
    for args in cases {
        let results: Vec<Ran> = [Linker::Lld, Linker::Kdthin]
            .into_iter()
            .map(|linker| {
                let argv: Vec<OsString> =
                    std::iter::once(linker.program()).chain(args.iter().map(OsString::from)).collect();
                let ran = t.run_linker(&argv, &[]).failed();
                assert!(!t.exists("bad"), "output left after a failed link\n{}", ran.report());
                ran
            })
            .collect();
        assert_eq!(
            results[0].status.code(),
            results[1].status.code(),
            "{}\n{}",
            results[0].report(),
            results[1].report()
        );
        assert_eq!(diagnostics(&results[0].stderr), diagnostics(&results[1].stderr), "{}", results[1].report());
    }
}

/// stderr lines without the program name lld puts before "error:" (which
/// may be kdthin-ld's own name).
fn diagnostics(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .map(|l| ["error: ", "warning: "].iter().find_map(|k| l.find(k).map(|i| &l[i..])).unwrap_or(l))
        .collect()
}
