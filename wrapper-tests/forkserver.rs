//! Backends forked from a fork server (src/exec/forkserver.rs) against
//! backends started by exec (`KDTHIN_FORKSERVER=off`): the same natives,
//! the same failures, and exec whenever a server cannot be used.

use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use crate::support::*;

const OFF: (&str, &str) = ("KDTHIN_FORKSERVER", "off");

/// The one report line of a link run with `KDTHIN_REPORT` = `path`.
fn report(path: &std::path::Path) -> serde_json::Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1, "{text}");
    fs::remove_file(path).unwrap();
    lines.remove(0)
}

/// Links vmlinux.o (removed first, natives too, so all are made anew)
/// with `envs` plus a report, which it returns with the run.
fn link(t: &Tree, envs: &[(&str, &OsStr)]) -> (Ran, serde_json::Value) {
    for obj in VMLINUX_BITCODE {
        let _ = fs::remove_file(t.path(&native_object(obj)));
    }
    let _ = fs::remove_file(t.path("vmlinux.o"));
    let path = t.scratch().join("report.jsonl");
    let mut all = vec![("KDTHIN_REPORT", path.as_os_str())];
    all.extend_from_slice(envs);
    let ran = t.link("vmlinux.o", Linker::Kdthin, &all);
    let r = if ran.success() || path.exists() { report(&path) } else { serde_json::Value::Null };
    (ran, r)
}

fn natives(t: &Tree) -> Vec<(String, Vec<u8>)> {
    VMLINUX_BITCODE.iter().map(|o| (native_object(o), t.read(&native_object(o)))).collect()
}

/// The pid in kdthin-ld's verbose line "fork server for X: pid N".
fn server_pid(stderr: &str) -> Option<i32> {
    stderr.lines().find_map(|l| l.split_once("fork server for ")?.1.split_once(": pid ")?.1.trim().parse().ok())
}

fn alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
}

/// Every native of a real multi-module link is the same bytes whether its
/// backend was forked from a server or started by exec, and the forked
/// link really forked every backend (the report counts them), from a
/// server that ended with the link.
#[test]
fn natives_are_the_same_bytes_as_with_exec() {
    require_toolchain!();
    let t = Tree::new(CmdFormat::Savedcmd);
    t.make(Linker::Lld, &["objects"]).ok();
    let (ran, r) = link(&t, &[("KDTHIN_VERBOSE", OsStr::new("1"))]);
    let ran = ran.ok();
    assert_distributed(&t, &ran, &VMLINUX_O);
    let n = VMLINUX_BITCODE.len() as u64;
    assert_eq!((r["compiled"].as_u64(), r["forked"].as_u64()), (Some(n), Some(n)), "{r}");
    let pid = server_pid(&ran.stderr).unwrap_or_else(|| panic!("no fork server line\n{}", ran.report()));
    // It ends when the link closes its socket, or dies with kdthin-ld: a
    // moment after kdthin-ld at most.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while alive(pid) {
        assert!(std::time::Instant::now() < deadline, "the fork server {pid} outlived its link");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let (forked, forked_out) = (natives(&t), t.read("vmlinux.o"));

    let (ran, r) = link(&t, &[(OFF.0, OsStr::new(OFF.1)), ("KDTHIN_VERBOSE", OsStr::new("1"))]);
    let ran = ran.ok();
    assert_distributed(&t, &ran, &VMLINUX_O);
    assert_eq!((r["compiled"].as_u64(), r["forked"].as_u64()), (Some(n), Some(0)), "{r}");
    assert_eq!(server_pid(&ran.stderr), None, "{}", ran.report());
    for ((name, a), (_, b)) in forked.iter().zip(natives(&t)) {
        assert!(*a == b, "{name} differs between fork server and exec");
    }
    assert!(forked_out == t.read("vmlinux.o"), "vmlinux.o differs between fork server and exec");
}

/// A compiler that is a shell script runs by exec, says so when verbose,
/// and the link works.
#[test]
fn a_script_compiler_runs_by_exec() {
    require_toolchain!();
    let t = Tree::new(CmdFormat::Savedcmd);
    t.make(Linker::Lld, &["objects"]).ok();
    let script = t.scratch().join("bin/clang-22");
    fs::create_dir_all(script.parent().unwrap()).unwrap();
    let real = which(CLANG);
    fs::write(&script, format!("#!/bin/sh\nexec '{}' \"$@\"\n", real.display())).unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    for obj in VMLINUX_BITCODE {
        t.edit(&Tree::cmd_file(obj), |s| s.replacen(" := clang-22 ", &format!(" := {} ", script.display()), 1));
    }
    let (ran, r) = link(&t, &[("KDTHIN_VERBOSE", OsStr::new("1"))]);
    let ran = ran.ok();
    assert_distributed(&t, &ran, &VMLINUX_O);
    assert_eq!(r["forked"].as_u64(), Some(0), "{r}");
    let line =
        format!("{}: no fork server, its backends run by exec: not an ELF executable (a script?)", script.display());
    assert_eq!(ran.stderr.matches(&line).count(), 1, "one verbose line\n{}", ran.report());
}

/// A backend that fails gives the same messages and exit status as with
/// exec (only the work directory's random name differs).
#[test]
fn a_failing_backend_fails_as_with_exec() {
    require_toolchain!();
    let t = Tree::new(CmdFormat::Savedcmd);
    t.make(Linker::Lld, &["objects"]).ok();
    t.break_backend_of("kernel/sched.o");
    let (forked, _) = link(&t, &[]);
    let (exec, _) = link(&t, &[(OFF.0, OsStr::new(OFF.1))]);
    let (forked, exec) = (forked.failed(), exec.failed());
    assert_eq!(forked.status.code(), exec.status.code());
    assert!(
        forked.stderr.contains("error: ThinLTO backend for kernel/sched.o failed (exit status 1)"),
        "{}",
        forked.report()
    );
    assert!(forked.stderr.contains("bogus"), "clang's own message\n{}", forked.report());
    assert_eq!(without_work_names(&forked.stderr), without_work_names(&exec.stderr));
}

/// `kdthin.vmlinux.o.RANDOM` and `.tmp_kdthin.vmlinux.o.RANDOM` with the
/// random part replaced.
fn without_work_names(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("vmlinux.o.") {
        let (head, tail) = rest.split_at(i + "vmlinux.o.".len());
        out.push_str(head);
        let name_len = tail.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(tail.len());
        out.push('*');
        rest = &tail[name_len..];
    }
    out.push_str(rest);
    out
}

/// The fork server is killed as soon as it started, while backends are
/// being given to it: the jobs it had and the later ones run by exec, and
/// the link succeeds with the same natives.
#[test]
fn killing_the_server_mid_link_falls_back_to_exec() {
    require_toolchain!();
    let t = Tree::new(CmdFormat::Savedcmd);
    t.make(Linker::Lld, &["objects"]).ok();
    let (_, _) = link(&t, &[(OFF.0, OsStr::new(OFF.1))]);
    let exec = natives(&t);
    for obj in VMLINUX_BITCODE {
        fs::remove_file(t.path(&native_object(obj))).unwrap();
    }
    fs::remove_file(t.path("vmlinux.o")).unwrap();

    let argv = t.link_argv("vmlinux.o", Linker::Kdthin);
    let report_path = t.scratch().join("report.jsonl");
    let mut cmd = Command::new(&argv[0]);
    clean_env(&mut cmd)
        .current_dir(t.root())
        .env("KDTHIN_TMPDIR", t.index_tmp())
        .env("KDTHIN_VERBOSE", "1")
        .env("KDTHIN_JOBS", "1")
        .env("KDTHIN_REPORT", &report_path)
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let cmdline = command_line(&cmd);
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let out_reader = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    let mut stderr = String::new();
    let mut killed = None;
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        if killed.is_none() {
            if let Some(pid) = server_pid(&line) {
                // SAFETY: plain kill; the pid is kdthin-ld's live child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                killed = Some(pid);
            }
        }
        stderr.push_str(&line);
        stderr.push('\n');
    }
    let status = child.wait().unwrap();
    let ran = Ran { cmdline, status, stdout: out_reader.join().unwrap(), stderr };
    eprintln!("{}", ran.report());
    let ran = ran.ok();
    assert!(killed.is_some(), "no fork server started\n{}", ran.report());
    assert_distributed(&t, &ran, &VMLINUX_O);
    let r = report(&report_path);
    let n = VMLINUX_BITCODE.len() as u64;
    assert_eq!(r["compiled"].as_u64(), Some(n), "{r}");
    assert!(r["forked"].as_u64().unwrap() < n, "the server was killed, yet forked every backend: {r}");
    assert!(ran.stderr.contains("its backends run by exec from now on"), "{}", ran.report());
    for ((name, a), (_, b)) in exec.iter().zip(natives(&t)) {
        assert!(*a == b, "{name} differs from exec mode");
    }
}

fn which(prog: &str) -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{prog} not on PATH"))
}
