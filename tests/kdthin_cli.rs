//! The `kdthin` management command, run as a program: exit statuses and
//! what it prints for a controlled environment.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn kdthin(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kdthin"));
    cmd.args(args);
    for k in ["KDTHIN_LD", "KDTHIN_JOBS", "KDTHIN_TRACE", "KDTHIN_REPORT", "KDTHIN_CACHE", "MAKEFLAGS", "CC"] {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run kdthin")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn usage_errors_exit_2() {
    for args in [&[][..], &["nope"][..], &["report"][..], &["cache", "drop"][..]] {
        let out = kdthin(args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out.stderr));
        assert!(out.stdout.is_empty());
        assert!(text(&out.stderr).contains("Try 'kdthin help'."));
    }
}

#[test]
fn version_is_the_crate_version() {
    let out = kdthin(&["version"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), format!("kdthin {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn config_shows_what_the_environment_selects() {
    let dir = tempfile::tempdir().unwrap();
    let ld = dir.path().join("my-ld.lld");
    std::fs::write(&ld, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&ld, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cache = dir.path().join("cache");
    let out = kdthin(
        &["config"],
        &[
            ("KDTHIN_LD", &ld),
            ("KDTHIN_JOBS", Path::new("3")),
            ("KDTHIN_TRACE", dir.path()),
            ("KDTHIN_REPORT", &dir.path().join("r.jsonl")),
            ("KDTHIN_CACHE_DIR", &cache),
        ],
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    let line = |key: &str| {
        stdout.lines().find(|l| l.starts_with(key)).unwrap_or_else(|| panic!("{key}: {stdout}")).to_string()
    };
    assert!(line("real ld.lld").contains(&format!("{}  (KDTHIN_LD=", ld.display())), "{stdout}");
    assert!(line("jobs").ends_with("KDTHIN_JOBS=3"), "{stdout}");
    assert!(line("trace").contains("one per link"), "{stdout}");
    assert!(line("report").contains("r.jsonl, one JSON line per link"), "{stdout}");
    assert!(line("cache").contains(&format!("on, {}", cache.display())), "{stdout}");
    // build.rs put the shim beside the programs.
    assert!(line("fork server").ends_with("/libkdthin-forkserver.so"), "{stdout}");
    assert!(!cache.exists(), "config only looks");
}

#[test]
fn config_fails_without_a_real_linker() {
    let out = kdthin(&["config"], &[("KDTHIN_LD", Path::new("/nonexistent/ld.lld"))]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("NOT FOUND: KDTHIN_LD=/nonexistent/ld.lld"), "{}", text(&out.stdout));
}

#[test]
fn report_summarises_a_report_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.jsonl");
    let mut r = kdthin::report::LinkReport::new(Path::new("vmlinux.o"), Path::new("/usr/bin/ld.lld"));
    r.modules = 3;
    r.compiled = 3;
    r.append_to(&path).unwrap();
    let out = kdthin(&["report", path.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("1 link, 3 modules, 3 compiled, 0 cache hits\n"), "{}", text(&out.stdout));

    std::fs::write(&path, "garbage\n").unwrap();
    let out = kdthin(&["report", path.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("not a kdthin-ld report"), "{}", text(&out.stderr));
}

#[test]
fn cache_stats_and_clear_on_a_fresh_directory() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("c");
    let out = kdthin(&["cache", "stats"], &[("KDTHIN_CACHE_DIR", &cache)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&cache.display().to_string()), "{}", text(&out.stdout));
    let out = kdthin(&["cache", "clear"], &[("KDTHIN_CACHE_DIR", &cache)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("cleared {}\n", cache.display()));
}
