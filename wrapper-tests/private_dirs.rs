//! Temporary directories and output paths (issue 10, findings 5 and 9): a
//! link's work and index directories are its own (fresh, 0700, never a
//! directory someone planted at a name they guessed), dead links' index
//! directories are swept, and a missing output directory fails as in
//! ld.lld instead of being created.

use crate::support::*;
use std::ffi::OsString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

/// A tree with everything compiled and archived but nothing linked.
fn compiled() -> Tree {
    let t = Tree::new(CmdFormat::Savedcmd);
    t.make(Linker::Lld, &["objects"]).ok();
    t
}

/// Runs `argv` in the tree through `sh -c 'SCRIPT; exec "$@"'`: the script
/// runs with the pid kdthin-ld will have (`$$`), so it can plant files at
/// the names a pid-based scheme would pick.
fn run_after(t: &Tree, script: &str, argv: &[OsString], envs: &[(&str, &Path)]) -> Ran {
    let mut cmd = Command::new("sh");
    clean_env(&mut cmd)
        .current_dir(t.root())
        .env("KDTHIN_TMPDIR", t.index_tmp())
        .arg("-c")
        .arg(format!("{script}\nexec \"$@\""))
        .arg("sh")
        .args(argv);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    run(&mut cmd)
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    v.sort();
    v
}

/// The directories a `KDTHIN_SAVE_TEMPS=1` link says it kept.
fn kept_dirs(ran: &Ran, root: &Path) -> Vec<PathBuf> {
    ran.stderr
        .lines()
        .filter_map(|l| l.strip_prefix("kdthin-ld: work files kept in "))
        .map(|p| root.join(p.trim()))
        .collect()
}

#[test]
fn planted_directories_and_symlinks_at_guessable_names_are_never_used() {
    require_toolchain!();
    let t = compiled();
    let tmp = t.index_tmp();
    std::fs::create_dir_all(&tmp).unwrap();
    // Another user's directories, where the symlinks lead.
    let victim_index = t.scratch().join("victim-index");
    let victim_work = t.scratch().join("victim-work");
    std::fs::create_dir(&victim_index).unwrap();
    std::fs::create_dir(&victim_work).unwrap();
    // Every name the pid-based scheme would have used, planted before
    // kdthin-ld starts: a symlink as the index directory, a world-writable
    // directory as the work directory.
    let script = format!(
        "ln -s {vi} {tmp}/kdthin.vmlinux.o.$$ && ln -s {vw} .tmp_kdthin.vmlinux.o.$$.link && \
         mkdir -m 777 .tmp_kdthin.vmlinux.o.$$ {tmp}/kdthin.vmlinux.o.$$.d",
        vi = shell_quote(victim_index.as_os_str()),
        vw = shell_quote(victim_work.as_os_str()),
        tmp = shell_quote(tmp.as_os_str()),
    );
    let argv = t.link_argv("vmlinux.o", Linker::Kdthin);
    let ran = run_after(&t, &script, &argv, &[("KDTHIN_SAVE_TEMPS", Path::new("1"))]).ok();
    assert!(is_elf(&t.path("vmlinux.o")), "no output\n{}", ran.report());
    assert_eq!(entries(&victim_index), Vec::<PathBuf>::new(), "index files written through a planted symlink");
    assert_eq!(entries(&victim_work), Vec::<PathBuf>::new(), "work files written through a planted symlink");
    // The planted world-writable directories stay empty.
    let planted: Vec<PathBuf> = t
        .work_dirs()
        .into_iter()
        .map(|p| t.root().join(p))
        .chain(entries(&tmp))
        .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir() && m.mode() & 0o777 == 0o777))
        .collect();
    assert_eq!(planted.len(), 2, "the two planted directories\n{}", ran.report());
    for p in &planted {
        assert_eq!(entries(p), Vec::<PathBuf>::new(), "{}: a planted directory was used", p.display());
    }
    // The directories it did use: new, real directories, 0700.
    let kept = kept_dirs(&ran, t.root());
    assert_eq!(kept.len(), 2, "a work and an index directory\n{}", ran.report());
    for d in &kept {
        let md = std::fs::symlink_metadata(d).unwrap();
        assert!(md.is_dir(), "{} is not a directory", d.display());
        assert_eq!(md.permissions().mode() & 0o7777, 0o700, "{}", d.display());
        assert!(!entries(d).is_empty(), "{} was not used", d.display());
    }
    assert!(kept.iter().any(|d| d.starts_with(&tmp)), "the index directory is in KDTHIN_TMPDIR\n{}", ran.report());
    assert!(
        kept.iter().any(|d| d.file_name().unwrap().to_string_lossy().starts_with(".tmp_kdthin.vmlinux.o.")),
        "the work directory keeps make clean's .tmp_ prefix\n{}",
        ran.report()
    );
}

/// Sets a directory's mtime (an open directory accepts futimens).
fn age(dir: &Path, by: Duration) {
    let f = std::fs::File::open(dir).unwrap();
    f.set_modified(SystemTime::now() - by).unwrap();
}

#[test]
fn index_directories_of_dead_links_are_removed_live_ones_kept() {
    require_toolchain!();
    let t = compiled();
    let tmp = t.index_tmp();
    std::fs::create_dir_all(&tmp).unwrap();
    let dead = tmp.join("kdthin.vmlinux.o.deadlinkxxxx");
    let live = tmp.join("kdthin.vmlinux.o.livelinkxxxx");
    let kept = tmp.join("kdthin.vmlinux.o.keptlinkxxxx");
    for d in [&dead, &live, &kept] {
        std::fs::create_dir(d).unwrap();
        std::fs::write(d.join("init_main.o.thinlto.bc"), "index").unwrap();
    }
    // What a kept directory (KDTHIN_SAVE_TEMPS, failed backends) carries.
    std::fs::write(kept.join(".kdthin-kept"), "").unwrap();
    // A live link holds its directory locked, as this test does now.
    let lock = std::fs::File::open(&live).unwrap();
    // SAFETY: a valid descriptor, held until the end of the test.
    assert_eq!(unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) }, 0);
    for d in [&dead, &live, &kept] {
        age(d, Duration::from_secs(3600));
    }
    let ran = t.link("vmlinux.o", Linker::Kdthin, &[]).ok();
    assert!(!dead.exists(), "a dead link's index directory was not removed\n{}", ran.report());
    assert!(live.join("init_main.o.thinlto.bc").exists(), "a live link's index directory was touched");
    assert!(kept.join("init_main.o.thinlto.bc").exists(), "a kept index directory was removed");
    // The link's own directory is gone too: only the two above remain.
    assert_eq!(entries(&tmp), vec![kept.clone(), live.clone()]);
    drop(lock);
}

#[test]
fn missing_output_directory_fails_like_ld_lld_in_every_mode() {
    require_toolchain!();
    let t = compiled();
    let to_nodir = |linker: Linker| -> Vec<OsString> {
        let mut argv = t.link_argv("vmlinux.o", linker);
        let o = argv.iter().position(|a| a == "-o").expect("-o in the link command");
        argv[o + 1] = "nodir/vmlinux.o".into();
        argv
    };
    let lld = t.run_linker(&to_nodir(Linker::Lld), &[]).failed();
    lld.stderr_contains("cannot open output file");
    assert!(!t.exists("nodir"));
    // A warm whole-link cache for the same inputs must not serve it either.
    let cache = t.scratch().join("cache");
    t.link("vmlinux.o", Linker::Kdthin, &[("KDTHIN_CACHE", "on".as_ref()), ("KDTHIN_CACHE_DIR", cache.as_os_str())])
        .ok();
    let modes: [(&str, &[(&str, &std::ffi::OsStr)]); 3] = [
        ("distributed", &[]),
        ("cached", &[("KDTHIN_CACHE", "on".as_ref()), ("KDTHIN_CACHE_DIR", cache.as_os_str())]),
        ("save-temps", &[("KDTHIN_SAVE_TEMPS", "1".as_ref())]),
    ];
    for (mode, envs) in modes {
        let ran = t.run_linker(&to_nodir(Linker::Kdthin), envs).failed();
        assert_eq!(ran.status.code(), lld.status.code(), "{mode}: exit status differs from ld.lld's\n{}", ran.report());
        ran.stderr_contains("cannot open output file");
        assert!(!t.exists("nodir"), "{mode}: kdthin-ld created nodir/\n{}", ran.report());
    }
}
