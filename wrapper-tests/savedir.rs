//! KDTHIN_SAVE_DIR: a link saves a reproducer that replays it somewhere
//! else, after the original tree is gone, with the same result.

use crate::support::*;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tree with everything compiled and archived but nothing linked.
fn compiled() -> Tree {
    let t = Tree::new(CmdFormat::Savedcmd);
    t.make(Linker::Lld, &["objects"]).ok();
    t
}

/// A temp dir of its own, away from the test tree (kept on failure).
struct Elsewhere(Option<tempfile::TempDir>);

impl Elsewhere {
    fn new() -> Elsewhere {
        let prefix = format!("{}-elsewhere-", test_name().replace("::", "-"));
        Elsewhere(Some(
            tempfile::Builder::new().prefix(&prefix).tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("create temp dir"),
        ))
    }

    fn path(&self) -> &Path {
        self.0.as_ref().unwrap().path()
    }
}

impl Drop for Elsewhere {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(tmp) = self.0.take() {
                eprintln!("kept reproducer dir: {}", tmp.keep().display());
            }
        }
    }
}

/// The one reproducer in `save` for output `name`.
#[track_caller]
fn saved(save: &Path, name: &str) -> PathBuf {
    let found: Vec<PathBuf> = fs::read_dir(save)
        .unwrap_or_else(|e| panic!("{}: {e}", save.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(&format!("{name}.")))
        .collect();
    assert_eq!(found.len(), 1, "one reproducer for {name} in {}: {found:?}", save.display());
    let dir = found.into_iter().next().unwrap();
    assert!(!dir.join(".incomplete").exists(), "{} is marked incomplete", dir.display());
    dir
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// `run-with <kdthin-ld>` from an unrelated directory, with kbuild's
/// environment but no CC: the script must set it as the link had it.
fn replay(repro: &Path, cwd: &Path) -> Ran {
    let mut cmd = Command::new(repro.join("run-with"));
    clean_env(&mut cmd).env_remove("CC").current_dir(cwd).arg(kdthin_ld());
    run(&mut cmd)
}

/// The reproducer of `target`'s link, moved to a new temp dir (the
/// original tree is deleted after this).
fn save_and_move(t: &Tree, argv: &[OsString], cwd: &Path, name: &str) -> (Ran, Elsewhere, PathBuf) {
    let save = t.scratch().join("save");
    let mut cmd = Command::new(&argv[0]);
    clean_env(&mut cmd).current_dir(cwd).args(&argv[1..]).env("KDTHIN_SAVE_DIR", &save);
    let ran = run(&mut cmd);
    let dir = saved(&save, name);
    ran.stderr_contains(&format!("reproducer saved in {}", dir.display()));
    let away = Elsewhere::new();
    let repro = away.path().join("repro");
    fs::rename(&dir, &repro).unwrap();
    (ran, away, repro)
}

#[test]
fn vmlinux_o_replays_from_a_tarball_elsewhere() {
    require_toolchain!();
    let t = compiled();
    let argv = t.link_argv("vmlinux.o", Linker::Kdthin);
    let (ran, away, repro) = save_and_move(&t, &argv, t.root(), "vmlinux.o");
    let ran = ran.ok();
    ran.lto_line("vmlinux.o");
    let expected = defined_globals(&t.path("vmlinux.o"));
    let sched_cmd_mtime = t.mtime(&Tree::cmd_file("kernel/sched.o"));

    // What a bug report needs, in the documented places.
    for f in [
        "argv.txt",
        "commands.sh",
        "env.txt",
        "versions.txt",
        "outcome.txt",
        "tree/vmlinux.a",
        "tree/lib/lib.a",
        "tree/initcalls.lds",
        "tree/arch/x86/kernel/head_64.o",
        "work/thinlto.list",
        "index/kernel/sched.o.thinlto.bc",
        "index/kernel/sched.o.imports",
    ] {
        assert!(repro.join(f).is_file(), "{f} not saved");
    }
    for obj in VMLINUX_BITCODE.iter().chain(&["lib/unused.o"]) {
        assert!(repro.join("tree").join(obj).is_file(), "{obj} not saved");
        let cmd = Tree::cmd_file(obj);
        assert!(repro.join("tree").join(&cmd).is_file(), "{cmd} not saved");
    }
    let mode = fs::metadata(repro.join("run-with")).unwrap().permissions().mode();
    assert!(mode & 0o111 != 0, "run-with is not executable: {mode:o}");
    assert_eq!(
        fs::metadata(repro.join("tree").join(Tree::cmd_file("kernel/sched.o"))).unwrap().modified().unwrap(),
        sched_cmd_mtime,
        "the .cmd file's mtime is kept"
    );
    let args: Vec<String> = argv[1..].iter().map(|a| shell_quote(a)).collect();
    assert_eq!(read(&repro.join("argv.txt")).lines().collect::<Vec<_>>(), args);
    assert_eq!(read(&repro.join("outcome.txt")), "exit code 0\n");
    let env = read(&repro.join("env.txt"));
    assert!(env.lines().any(|l| l == format!("CC={CLANG}")), "{env}");
    assert!(!env.contains("KDTHIN_SAVE_DIR"), "{env}");
    let versions = read(&repro.join("versions.txt"));
    assert!(versions.contains("LLD") && versions.contains("clang version"), "{versions}");
    let commands = read(&repro.join("commands.sh"));
    assert!(commands.contains("\n# thin-link\n") && commands.contains("\n# final link\n"), "{commands}");
    assert!(commands.contains("--thinlto-index-only=\"$WORK\"/thinlto.list"), "{commands}");
    let backends = commands.lines().filter(|l| l.contains("-fthinlto-index=\"$INDEX\"/")).count();
    assert_eq!(backends, VMLINUX_BITCODE.len(), "one line per backend\n{commands}");

    // Sent as a tarball (whole-second mtimes), unpacked on "another
    // machine" with the original tree gone.
    let tarball = away.path().join("repro.tar.gz");
    run(Command::new("tar").arg("-C").arg(away.path()).arg("-czf").arg(&tarball).arg("repro")).ok();
    fs::remove_dir_all(&repro).unwrap();
    fs::remove_dir_all(t.root()).unwrap();
    let unpacked = away.path().join("unpacked");
    fs::create_dir(&unpacked).unwrap();
    run(Command::new("tar").arg("-C").arg(&unpacked).arg("-xzf").arg(&tarball)).ok();
    let repro = unpacked.join("repro");

    let replayed = replay(&repro, away.path()).ok();
    // Distributed again: the saved .cmd files were found and current.
    replayed.lto_line("vmlinux.o");
    assert!(!replayed.stderr.contains("in-process"), "{}", replayed.report());
    assert_same_lines(
        "defined globals of the replayed vmlinux.o",
        &expected,
        &defined_globals(&repro.join("tree/vmlinux.o")),
    );
}

#[test]
fn one_backend_line_of_commands_sh_runs_on_its_own() {
    require_toolchain!();
    let t = compiled();
    let argv = t.link_argv("vmlinux.o", Linker::Kdthin);
    let (ran, away, repro) = save_and_move(&t, &argv, t.root(), "vmlinux.o");
    ran.ok();
    fs::remove_dir_all(t.root()).unwrap();
    // The header (up to the first heading) and one backend.
    let commands = read(&repro.join("commands.sh"));
    let header: String = commands.split("\n# thin-link\n").next().unwrap().to_string();
    let line =
        commands.lines().find(|l| l.contains("kernel/sched.o.thinlto.bc")).expect("a backend line for kernel/sched.o");
    let script = repro.join("one-backend.sh");
    fs::write(&script, format!("{header}\nset -e\n{line}\n")).unwrap();
    run(Command::new("sh").arg(&script).current_dir(away.path())).ok();
    let native = line.split_whitespace().skip_while(|w| *w != "-o").nth(1).unwrap();
    let native = native.replace("\"$WORK\"", &repro.join("work").to_string_lossy());
    let syms = defined_globals(Path::new(&native));
    assert!(syms.iter().any(|s| s.starts_with("sched_scale ")), "{syms:?}");
}

#[test]
fn module_link_with_a_response_file_replays() {
    require_toolchain!();
    let t = compiled();
    let argv = t.link_argv("mod/foo.o", Linker::Kdthin);
    assert!(argv.iter().any(|a| a == "@mod/foo.mod"), "{argv:?}");
    let (ran, away, repro) = save_and_move(&t, &argv, t.root(), "foo.o");
    ran.ok().lto_line("mod/foo.o");
    let expected = defined_globals(&t.path("mod/foo.o"));
    assert_eq!(read(&repro.join("tree/mod/foo.mod")).as_bytes(), t.read("mod/foo.mod"));
    for obj in FOO_BITCODE {
        assert!(repro.join("tree").join(Tree::cmd_file(obj)).is_file(), "{obj}'s .cmd not saved");
    }
    fs::remove_dir_all(t.root()).unwrap();

    let replayed = replay(&repro, away.path()).ok();
    replayed.lto_line("mod/foo.o");
    assert_same_lines(
        "defined globals of the replayed mod/foo.o",
        &expected,
        &defined_globals(&repro.join("tree/mod/foo.o")),
    );
}

#[test]
fn paths_outside_the_link_directory_are_saved_and_rewritten() {
    require_toolchain!();
    let t = compiled();
    // Linked from mod/: inputs through `..`, lib/lib.a by absolute path
    // (inside what the reproducer mirrors), the script by an absolute path
    // outside the tree altogether.
    let outside = Elsewhere::new();
    let script = outside.path().join("scripts/initcalls.lds");
    fs::create_dir_all(script.parent().unwrap()).unwrap();
    fs::copy(t.path("initcalls.lds"), &script).unwrap();
    let argv: Vec<OsString> = t
        .link_argv("vmlinux.o", Linker::Kdthin)
        .into_iter()
        .map(|a| match a.to_str() {
            Some("vmlinux.a") | Some("vmlinux.o") => OsString::from(format!("../{}", a.to_str().unwrap())),
            Some("lib/lib.a") => t.path("lib/lib.a").into_os_string(),
            Some("initcalls.lds") => script.clone().into_os_string(),
            _ => a,
        })
        .collect();
    let (ran, away, repro) = save_and_move(&t, &argv, &t.path("mod"), "vmlinux.o");
    ran.ok().lto_line("../vmlinux.o");
    let expected = defined_globals(&t.path("vmlinux.o"));
    let run_with = read(&repro.join("run-with"));
    assert!(run_with.contains("cd \"$here\"/tree/mod || exit"), "{run_with}");
    assert!(run_with.contains("\n  ../lib/lib.a \\\n"), "{run_with}");
    assert!(run_with.contains("\n  .kdthin-abs/"), "{run_with}");
    let outside_dir = outside.path().to_string_lossy().into_owned();
    assert!(!run_with.contains(&format!("\n  {outside_dir}")), "{run_with}");
    assert!(repro.join("tree/init/main.o").is_file());
    fs::remove_dir_all(t.root()).unwrap();
    drop(outside);
    assert!(!script.exists());

    let replayed = replay(&repro, away.path()).ok();
    replayed.lto_line("../vmlinux.o");
    assert_same_lines(
        "defined globals of the replayed vmlinux.o",
        &expected,
        &defined_globals(&repro.join("tree/vmlinux.o")),
    );
}

#[test]
fn failing_backend_is_saved_with_its_command() {
    require_toolchain!();
    let t = compiled();
    t.break_backend_of("kernel/sched.o");
    let argv = t.link_argv("vmlinux.o", Linker::Kdthin);
    let (ran, away, repro) = save_and_move(&t, &argv, t.root(), "vmlinux.o");
    ran.failed().stderr_contains("-mcmodel=bogus");
    assert_eq!(read(&repro.join("outcome.txt")), "exit code 1\n");
    let commands = read(&repro.join("commands.sh"));
    assert!(commands.contains("\n# thin-link\n"), "{commands}");
    assert!(!commands.contains("\n# final link\n"), "no final link ran\n{commands}");
    let failing = commands
        .lines()
        .find(|l| l.contains("-mcmodel=bogus"))
        .unwrap_or_else(|| panic!("no backend line with the bad flag\n{commands}"));
    assert!(failing.contains("-fthinlto-index=\"$INDEX\"/kernel/sched.o.thinlto.bc"), "{failing}");
    assert!(repro.join("index/kernel/sched.o.thinlto.bc").is_file());
    fs::remove_dir_all(t.root()).unwrap();

    // The replay fails the same way.
    replay(&repro, away.path()).failed().stderr_contains("-mcmodel=bogus");
}

#[test]
fn link_run_in_process_is_saved_too() {
    require_toolchain!();
    let t = compiled();
    t.remove(&Tree::cmd_file("kernel/sched.o"));
    let argv = t.link_argv("vmlinux.o", Linker::Kdthin);
    let (ran, away, repro) = save_and_move(&t, &argv, t.root(), "vmlinux.o");
    ran.ok().stderr_contains("linking in-process");
    let expected = defined_globals(&t.path("vmlinux.o"));
    let outcome = read(&repro.join("outcome.txt"));
    assert!(outcome.starts_with("linked in-process: ") && outcome.contains("sched.o"), "{outcome}");
    let commands = read(&repro.join("commands.sh"));
    assert!(!commands.contains("\n# thin-link\n"), "no thin-link ran\n{commands}");
    fs::remove_dir_all(t.root()).unwrap();

    let replayed = replay(&repro, away.path()).ok();
    replayed.stderr_contains("linking in-process");
    assert_same_lines(
        "defined globals of the replayed vmlinux.o",
        &expected,
        &defined_globals(&repro.join("tree/vmlinux.o")),
    );
}

#[test]
fn links_without_bitcode_are_not_saved() {
    require_toolchain!();
    let t = compiled();
    let save = t.scratch().join("save");
    let argv: Vec<OsString> = [kdthin_ld().into_os_string()]
        .into_iter()
        .chain(["-r", "-o", "head.o", "arch/x86/kernel/head_64.o"].map(OsString::from))
        .collect();
    t.run_linker(&argv, &[("KDTHIN_SAVE_DIR", save.as_os_str())]).ok();
    let entries = fs::read_dir(&save).map(|d| d.count()).unwrap_or(0);
    assert_eq!(entries, 0, "nothing saved in {}", save.display());
}

#[test]
fn a_save_dir_that_cannot_be_made_is_one_warning() {
    require_toolchain!();
    let t = compiled();
    let file = t.scratch().join("a-file");
    fs::write(&file, "").unwrap();
    let bad = file.join("save");
    let ran = t.link("vmlinux.o", Linker::Kdthin, &[("KDTHIN_SAVE_DIR", bad.as_os_str())]).ok();
    ran.lto_line("vmlinux.o");
    let lines: Vec<&str> = ran.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines.len() == 1 && lines[0].starts_with("kdthin-ld: warning: KDTHIN_SAVE_DIR: "),
        "expected one warning line\n{}",
        ran.report()
    );
    assert!(is_elf(&t.path("vmlinux.o")));
}
