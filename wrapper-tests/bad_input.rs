//! Broken inputs, unusable .cmd files and failing backends. A failure must
//! be loud (non-zero exit, the culprit named) and clean (no output, inputs
//! untouched, no temporaries); an unusable .cmd must only cost speed.

use crate::support::*;
use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

/// A tree with everything compiled and archived but nothing linked.
fn compiled() -> Tree {
    let t = Tree::new(CmdFormat::Savedcmd);
    t.make(Linker::Lld, &["objects"]).ok();
    t
}

/// Link `target` with kdthin-ld (argv changed by `edit`) and expect a clean
/// failure: non-zero exit, no output file, nothing in the tree changed but
/// native objects of backends that did finish and what `also_allowed` lets by.
fn link_fails_leaving(
    t: &Tree,
    target: &str,
    edit: impl FnOnce(&mut Vec<OsString>),
    also_allowed: impl Fn(&Path) -> bool,
) -> Ran {
    let before = t.snapshot();
    let mut argv = t.link_argv(target, Linker::Kdthin);
    edit(&mut argv);
    let ran = t.run_linker(&argv, &[]).failed();
    assert!(!t.exists(target), "{target} left behind by a failed link");
    t.snapshot().assert_only_changes(&before, |p| is_native_object(p) || also_allowed(p));
    ran
}

/// A failure that leaves no temporaries at all.
fn link_fails(t: &Tree, target: &str, edit: impl FnOnce(&mut Vec<OsString>)) -> Ran {
    link_fails_leaving(t, target, edit, |_| false)
}

/// A failed backend: stderr shows its full command, and kdthin-ld may keep
/// the index files that command needs (and nothing else) if it says where.
fn backend_fails(t: &Tree) -> Ran {
    let in_work_dir =
        |p: &Path| p.components().next().is_some_and(|c| c.as_os_str().to_string_lossy().starts_with(".tmp_kdthin"));
    let ran = link_fails_leaving(
        t,
        "vmlinux.o",
        |_| {},
        |p| in_work_dir(p) && (t.root().join(p).is_dir() || p.to_string_lossy().ends_with(".thinlto.bc")),
    );
    ran.stderr_contains("-fthinlto-index=");
    let index =
        ran.stderr.split_whitespace().find_map(|w| w.trim_matches('\'').strip_prefix("-fthinlto-index=")).unwrap();
    assert!(
        t.root().join(index).is_file(),
        "the printed backend command needs {index}, which is gone\n{}",
        ran.report()
    );
    for dir in t.work_dirs() {
        let name = dir.to_string_lossy();
        ran.stderr_contains(&name);
    }
    ran
}

#[test]
fn truncated_bitcode_in_an_archive() {
    require_toolchain!();
    let t = compiled();
    t.tamper("kernel/sched.o", |b| b[..b.len() / 2].to_vec());
    link_fails(&t, "vmlinux.o", |_| {}).stderr_contains("sched.o");
}

#[test]
fn truncated_bitcode_in_a_response_file() {
    require_toolchain!();
    let t = compiled();
    t.tamper("mod/foo_util.o", |b| b[..b.len() / 2].to_vec());
    link_fails(&t, "mod/foo.o", |_| {}).stderr_contains("mod/foo_util.o");
}

#[test]
fn missing_input() {
    require_toolchain!();
    let t = compiled();
    link_fails(&t, "vmlinux.o", |argv| argv.push("mod/kdthin-test-missing.o".into()))
        .stderr_contains("mod/kdthin-test-missing.o");
}

#[test]
fn missing_thin_archive_member() {
    require_toolchain!();
    let t = compiled();
    t.remove("kernel/printk.o");
    link_fails(&t, "vmlinux.o", |_| {}).stderr_contains("kernel/printk.o");
}

#[test]
fn undefined_symbol_in_a_bitcode_link() {
    require_toolchain!();
    let t = compiled();
    // prog without lib/lib.a: nothing defines mini_strlen.
    link_fails(&t, "prog", |argv| argv.retain(|a| a != "lib/lib.a")).stderr_contains("mini_strlen");
}

#[test]
fn failing_backend_shows_its_command() {
    require_toolchain!();
    let t = Tree::new(CmdFormat::Savedcmd);
    // Bitcode keeps inline asm as text: this compiles, and only the backend
    // (code generation) finds the bad instruction.
    t.edit("kernel/sched.c", |s| {
        format!(
            "{s}\nint sched_bad_asm(void)\n{{\n\tasm volatile(\"kdthin_not_an_instruction %eax\");\n\treturn 0;\n}}\n"
        )
    });
    t.make(Linker::Lld, &["objects"]).ok();
    backend_fails(&t).stderr_contains("kernel/sched.o").stderr_contains("kdthin_not_an_instruction");
}

#[test]
fn failing_backend_from_a_flag_in_the_cmd_file() {
    require_toolchain!();
    let t = compiled();
    t.break_backend_of("kernel/sched.o");
    backend_fails(&t).stderr_contains("-mcmodel=bogus");
}

/// Make kernel/sched.o's .cmd unusable with `spoil`, then link vmlinux.o
/// and prog with kdthin-ld: both must succeed through ld.lld's in-process
/// ThinLTO, say so in one line naming the .cmd file, and give the
/// reference results.
fn falls_back(spoil: impl FnOnce(&Tree, &str)) {
    let t = Tree::build(CmdFormat::Savedcmd, Linker::Lld);
    let reference = LinkResults::of(&t);
    for out in LINK_OUTPUTS {
        t.remove(out);
    }
    let cmd = Tree::cmd_file("kernel/sched.o");
    spoil(&t, &cmd);
    let before = t.snapshot();
    let report = t.scratch().join("fallbacks.jsonl");
    for target in ["vmlinux.o", "prog"] {
        let ran = t.link(target, Linker::Kdthin, &[("KDTHIN_REPORT", report.as_os_str())]).ok();
        let lines: Vec<&str> = ran.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(
            lines.len() == 1 && lines[0].contains(&cmd),
            "expected one line on stderr naming {cmd}\n{}",
            ran.report()
        );
    }
    // The report counts the fallback by its category, with the same reason.
    let text = std::fs::read_to_string(&report).unwrap();
    let links: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(links.len(), 2, "{text}");
    for l in &links {
        assert_eq!(l["fallback_category"], "compile-flags", "{l}");
        assert!(l["passthrough_reason"].as_str().is_some_and(|r| r.contains(&cmd)), "{l}");
    }
    assert_same_lines("defined globals of vmlinux.o", &reference.vmlinux_o, &defined_globals(&t.path("vmlinux.o")));
    assert_eq!(t.run_program("prog"), reference.prog_stdout);
    t.snapshot().assert_only_changes(&before, is_link_product);
    assert_no_litter(&t);
}

/// Replace a .cmd file, keeping it newer than its object as kbuild would.
fn replace_cmd(t: &Tree, cmd: &str, contents: &str) {
    t.write(cmd, contents);
    t.set_mtime(cmd, t.mtime("kernel/sched.o") + Duration::from_secs(5));
}

#[test]
fn cmd_file_with_garbage_falls_back() {
    require_toolchain!();
    falls_back(|t, cmd| replace_cmd(t, cmd, "\u{1}\u{2} this is {{ not a kbuild .cmd file\n"));
}

#[test]
fn cmd_file_with_unterminated_quote_falls_back() {
    require_toolchain!();
    falls_back(|t, cmd| {
        let s = String::from_utf8(t.read(cmd)).unwrap();
        replace_cmd(t, cmd, &s.replace(" -DSCALE=3 ", " -D'SCALE=3 "));
    });
}

#[test]
fn unreadable_cmd_file_falls_back() {
    require_toolchain!();
    // Tests may run as root, where permissions do not stop reads: a
    // directory in the file's place does.
    falls_back(|t, cmd| {
        t.remove(cmd);
        std::fs::create_dir(t.path(cmd)).unwrap();
    });
}

#[test]
fn missing_cmd_file_falls_back() {
    require_toolchain!();
    falls_back(|t, cmd| t.remove(cmd));
}

#[test]
fn stale_cmd_file_falls_back() {
    require_toolchain!();
    // kbuild writes the .cmd after the compile: an older one describes an
    // earlier compile.
    falls_back(|t, cmd| t.set_mtime(cmd, t.mtime("kernel/sched.o") - Duration::from_secs(60)));
}

#[test]
fn single_object_module_rebuilt_over_its_old_cmd_file() {
    require_toolchain!();
    // The realistic stale case: on a rebuild of mod/bar.o, `$(LD) -r` runs
    // after the compile and before make rewrites the old .bar.o.cmd.
    let t = Tree::build(CmdFormat::Savedcmd, Linker::Kdthin);
    t.edit("mod/bar.c", |s| s.replace("return 0;", "return 7;"));
    t.make(Linker::Kdthin, &["mod/bar.o"]).ok();
    assert!(is_elf(&t.path("mod/bar.o")), "mod/bar.o should be ELF");
    let syms = defined_globals(&t.path("mod/bar.o"));
    assert!(syms.iter().any(|s| s == "bar_init T"), "{syms:?}");
    assert_no_litter(&t);
}

/// A failing link whose stderr is a closed pipe (make's output piped into
/// something that went away) still fails with exit status 1 and cleans
/// up. std's eprintln! panics when stderr cannot be written: with the
/// release profile's `panic = "abort"` that was SIGABRT (status 134, or
/// 101 in a debug build) with the work directory left in the tree.
#[test]
fn failing_link_with_a_closed_stderr_exits_1_and_cleans_up() {
    require_toolchain!();
    use std::os::fd::FromRawFd;
    let t = Tree::new(CmdFormat::Savedcmd);
    t.make(Linker::Lld, &["objects"]).ok();
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: fresh descriptors from pipe(); each owned once.
    let (read, write) = unsafe { (std::fs::File::from_raw_fd(fds[0]), std::fs::File::from_raw_fd(fds[1])) };
    drop(read);
    let argv = t.link_argv("vmlinux.o", Linker::Kdthin);
    let mut cmd = std::process::Command::new(&argv[0]);
    clean_env(&mut cmd)
        .current_dir(t.root())
        .args(&argv[1..])
        .env("KDTHIN_TMPDIR", t.index_tmp())
        // Every backend fails (an option clang does not know).
        .env("CCC_OVERRIDE_OPTIONS", "+-mllvm +-kdthin-no-such-option")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(write);
    let status = cmd.status().expect("start kdthin-ld");
    assert_eq!(status.code(), Some(1), "{}\n$ {}", describe_status(status), command_line(&cmd));
    assert!(!t.exists("vmlinux.o"));
    assert_no_litter(&t);
    // What a failed backend keeps on purpose (its index files, and the
    // marker that tells later links it was kept), nothing else.
    let mut kept = vec![];
    let mut dirs = vec![t.index_tmp()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().unwrap().is_dir() {
                dirs.push(e.path());
            } else {
                kept.push(e.path().display().to_string());
            }
        }
    }
    let expected = |p: &String| p.ends_with(".thinlto.bc") || p.ends_with(".imports") || p.ends_with("/.kdthin-kept");
    assert!(kept.iter().all(expected), "left: {kept:?}");
}
