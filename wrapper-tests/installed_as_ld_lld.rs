//! kdthin-ld installed as `ld.lld` in more than one PATH directory (issue
//! 10, finding 7): two copies used to exec each other forever. Each run has
//! a timeout, so a loop fails the test instead of hanging it.

use crate::support::*;
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Long enough for a mini link on a loaded machine; a loop never ends.
const TIMEOUT: &str = "60";

/// `dir/name`: a copy of kdthin-ld, with `extra` appended (an ELF file runs
/// the same with trailing bytes: another "version" of kdthin-ld).
fn install_copy(dir: &Path, name: &str, extra: &[u8]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(name);
    let mut bytes = std::fs::read(kdthin_ld()).unwrap();
    bytes.extend_from_slice(extra);
    std::fs::write(&p, bytes).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// Where `name` is on the test's own PATH.
fn which(name: &str) -> PathBuf {
    let out = Command::new("sh").args(["-c", &format!("command -v {name}")]).output().unwrap();
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// The directory of the real ld.lld-22 (for PATH).
fn real_lld_dir() -> PathBuf {
    which(LLD).parent().unwrap().to_path_buf()
}

/// `timeout TIMEOUT argv...` in `cwd` with `PATH=path` and `envs`.
fn run_bounded(cwd: &Path, argv: &[OsString], path: &[PathBuf], envs: &[(&str, &str)]) -> Ran {
    let mut cmd = Command::new(which("timeout"));
    clean_env(&mut cmd).current_dir(cwd).env("PATH", std::env::join_paths(path).unwrap()).arg(TIMEOUT).args(argv);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let ran = run(&mut cmd);
    assert_ne!(ran.status.code(), Some(124), "timed out: kdthin-ld copies exec each other\n{}", ran.report());
    ran
}

#[test]
fn two_identical_copies_on_path_find_the_real_ld_lld_later_on_path() {
    require_toolchain!();
    let d = tempfile::tempdir().unwrap();
    let a = install_copy(&d.path().join("a"), "ld.lld", b"");
    install_copy(&d.path().join("b"), "ld.lld", b"");
    let real = d.path().join("real");
    std::fs::create_dir(&real).unwrap();
    std::os::unix::fs::symlink(real_lld_dir().join(LLD), real.join("ld.lld")).unwrap();
    let path = [d.path().join("a"), d.path().join("b"), real];
    // CC=clang: the candidate is plain `ld.lld` on PATH, copies first.
    let ran = run_bounded(d.path(), &[a.into(), "--version".into()], &path, &[("CC", "clang")]).ok();
    assert!(ran.stdout.contains("LLD"), "not ld.lld's banner\n{}", ran.report());
}

#[test]
fn two_different_kdthin_ld_on_path_without_a_real_one_fail_clearly() {
    require_toolchain!();
    let d = tempfile::tempdir().unwrap();
    let a = install_copy(&d.path().join("a"), "ld.lld", b"");
    let b = install_copy(&d.path().join("b"), "ld.lld", b"another version");
    let path = [d.path().join("a"), d.path().join("b")];
    let ran = run_bounded(d.path(), &[a.clone().into(), "--version".into()], &path, &[("CC", "clang")]).failed();
    ran.stderr_contains("cannot find the real ld.lld");
    // It names both kdthin-ld executables of the chain.
    ran.stderr_contains(&a.to_string_lossy());
    ran.stderr_contains(&b.to_string_lossy());
}

#[test]
fn a_distributed_link_works_under_two_different_kdthin_ld_installed_as_the_linker() {
    require_toolchain!();
    let t = Tree::new(CmdFormat::Savedcmd);
    t.make(Linker::Lld, &["objects"]).ok();
    let s = t.scratch();
    // CC=clang-22 (the tree's): the candidate is `ld.lld-22` on PATH, and
    // both dirs hold a kdthin-ld under that name; the second is another
    // "version", so only the chain tells it from a real linker.
    let a = install_copy(&s.join("a"), LLD, b"");
    install_copy(&s.join("b"), LLD, b"another version");
    let mut argv = t.link_argv("vmlinux.o", Linker::Kdthin);
    argv[0] = a.into();
    let sys_path: Vec<PathBuf> = std::env::split_paths(&std::env::var_os("PATH").unwrap()).collect();
    let path: Vec<PathBuf> = [s.join("a"), s.join("b"), real_lld_dir()].into_iter().chain(sys_path).collect();
    let tmp = t.index_tmp();
    let ran = run_bounded(t.root(), &argv, &path, &[("KDTHIN_TMPDIR", tmp.to_str().unwrap())]).ok();
    let lto = ran.lto_line("vmlinux.o");
    assert!(lto.compiled > 0, "not distributed\n{}", ran.report());
    assert!(is_elf(&t.path("vmlinux.o")));
}
